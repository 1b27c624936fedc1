//! The project's central scenario in virtual time through the full world: each core's
//! component engine, the nucleus's MQTT connection, IoT Core with a session lost while the
//! core was away, the reconnect rule and the Jobs service, for several core devices at once.

use greengrass_jobs_handler::emulator::cloud::jobs_service::NewJob;
use greengrass_jobs_handler::jobs::engine::EngineConfig;
use greengrass_jobs_handler::jobs::messages::JobStatus;
use greengrass_jobs_handler::sim::device::WorkModel;
use greengrass_jobs_handler::sim::{SimConfig, Simulation};
use serde_json::json;
use std::time::Duration;

const CORES: [&str; 3] = ["core-a", "core-b", "core-c"];
const SECOND: u64 = 1_000;

fn engine(thing: &str) -> EngineConfig {
    let mut c = EngineConfig::new(thing);
    c.max_jitter = Duration::from_millis(500);
    c
}

fn job(sim: &mut Simulation, id: &str, things: &[&str]) {
    let job = NewJob {
        job_id: id.into(),
        targets: things.iter().map(|t| t.to_string()).collect(),
        document: json!({"operation": "echo", "n": id}),
        ..NewJob::default()
    };
    sim.world_mut()
        .jobs_control(|jobs, now| jobs.create_job(job, now))
        .expect("job created");
    sim.carry();
}

fn status(sim: &Simulation, id: &str, thing: &str) -> Option<JobStatus> {
    sim.world()
        .jobs()
        .execution(id, thing, None)
        .map(|e| e.status)
}

/// Runs the scenario; returns the simulation at its end.
fn central_scenario(seed: u64, reconnect_rule: bool) -> Simulation {
    let mut sim = Simulation::new(SimConfig {
        seed,
        reconnect_rule,
        log: true,
        ..SimConfig::default()
    });
    for core in CORES {
        sim.add_device(engine(core), WorkModel::default());
    }
    let t0 = sim.now();
    job(&mut sim, "first", &CORES);
    sim.run_until(t0 + 10 * SECOND);
    // core-a's connection drops; a job is queued while it is away; when it comes back the
    // broker has lost its session, so the notify-next queued for it is gone with it.
    sim.world_mut().core_disconnect("core-a");
    sim.carry();
    job(&mut sim, "while-away", &["core-a", "core-b"]);
    sim.run_until(t0 + 20 * SECOND);
    sim.world_mut().core_reconnect("core-a", true);
    sim.carry();
    sim.run_until(t0 + 40 * SECOND);
    sim
}

#[test]
fn a_job_queued_while_a_core_was_away_is_recovered_through_the_reconnect_rule() {
    let sim = central_scenario(7, true);
    for core in CORES {
        assert_eq!(
            status(&sim, "first", core),
            Some(JobStatus::Succeeded),
            "{core}"
        );
    }
    assert_eq!(
        status(&sim, "while-away", "core-b"),
        Some(JobStatus::Succeeded)
    );
    assert_eq!(
        status(&sim, "while-away", "core-a"),
        Some(JobStatus::Succeeded),
        "recovered after the session was lost"
    );
    let log = sim.log();
    assert!(
        log.iter().any(|l| l.contains("iot reconnect/core-a ")),
        "the rule republished core-a's subscribed event"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("iot $aws/events/subscriptions/subscribed/core-a")),
        "the nucleus resubscribed with its own SUBSCRIBE"
    );
    for device in sim.devices() {
        assert!(device.idle(), "{}: nothing left in flight", device.thing());
    }
}

#[test]
fn without_the_rule_the_job_stays_stranded() {
    let sim = central_scenario(7, false);
    assert_eq!(
        status(&sim, "while-away", "core-b"),
        Some(JobStatus::Succeeded)
    );
    assert_eq!(
        status(&sim, "while-away", "core-a"),
        Some(JobStatus::Queued),
        "nothing tells core-a's component to look again"
    );
}

#[test]
fn one_seed_gives_one_event_log() {
    let a = central_scenario(42, true);
    let b = central_scenario(42, true);
    assert!(a.log().len() > 100, "a real run: {} events", a.log().len());
    assert_eq!(a.log(), b.log(), "same seed, same event log, byte for byte");
    let c = central_scenario(43, true);
    assert_ne!(a.log(), c.log(), "the seed reaches the engines' jitter");
}
