//! The fleet report: every scenario of [`scenario`] under every strategy of [`strategy`],
//! each run a whole fleet through the emulated world in virtual time, measured as
//! [`metrics::RunMetrics`] and written up as Markdown by [`markdown`].
//!
//! Owns: the report's settings ([`ReportConfig`]), one run's timeline (boot the fleet spread
//! over a boot window, let it settle, create the job for every core with the scenario's
//! rollout, carry out the scenario's fleet events, sample the fleet every second of virtual
//! time until the horizon) and turning the simulation's counters into metrics.
//! Must not know: the wall clock, files, plotting or the process's memory (the shell measures
//! wall time and RSS around [`run`] and draws the plots): the same settings give the same
//! metrics.

pub mod markdown;
pub mod metrics;
pub mod run_record;
pub mod scenario;
pub mod strategy;

use crate::emulator::cloud::jobs_service::NewJob;
use crate::emulator::world::Millis;
use crate::jobs::engine::EngineConfig;
use crate::jobs::messages::JobStatus;
use crate::sim::device::WorkModel;
use crate::sim::{SimConfig, Simulation};
use metrics::{first_reaching, ninety_nine_percent, peak_per_minute, RunMetrics, Sample};
use scenario::{FleetEvent, Scenario, ScenarioParams, Selection};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use strategy::Strategy;

const SECOND_MS: Millis = 1_000;
const MINUTE_MS: Millis = 60_000;
/// The job every run creates.
pub const JOB_ID: &str = "fleet-report";

/// The report's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportConfig {
    pub devices: usize,
    pub seed: u64,
    /// `maximumPerMinute` of every scenario's rollout.
    pub rate_per_minute: u32,
    /// The account's Jobs requests per second before RequestThrottled.
    pub quota_per_second: u32,
    /// One-way latency between a core and IoT Core.
    pub latency_ms: Millis,
    /// How long a job's work takes on a device.
    pub work_ms: Millis,
    /// The fleet's cores start spread evenly over this window (a safety poll keeps the phase
    /// its device booted at).
    pub boot_window_ms: Millis,
    /// Idle time between the last boot and the job's creation.
    pub settle_ms: Millis,
    /// (c)'s outage.
    pub outage_ms: Millis,
    /// (d)'s offline period.
    pub offline_ms: Millis,
    /// The query jitter (`jitterMaxMs`) of the rule strategies.
    pub rule_jitter_ms: Millis,
    /// Virtual time after the later of the rollout's ideal end and the last fleet event,
    /// before the run ends (at least the longest poll period, so a poll can catch up).
    pub tail_ms: Millis,
    /// Every how many seconds a sample is kept for the plots (metrics use every second).
    pub series_every_s: u64,
}

impl ReportConfig {
    /// The report's defaults for a fleet of `devices`: rate 1,000/min, quota 200 requests/s,
    /// 40 ms latency, 30 s of work, boots over 10 minutes, a 10-minute outage in (c), an hour
    /// offline in (d), the rule's jitter sized so that the fleet's queries spread at the
    /// quota (devices / quota seconds, at least the component's default 3 s), 65 minutes of
    /// tail.
    pub fn new(devices: usize) -> Self {
        let quota_per_second = 200;
        Self {
            devices,
            seed: 2026,
            rate_per_minute: 1000,
            quota_per_second,
            latency_ms: 40,
            work_ms: 30 * SECOND_MS,
            boot_window_ms: 10 * MINUTE_MS,
            settle_ms: 2 * MINUTE_MS,
            outage_ms: 10 * MINUTE_MS,
            offline_ms: 60 * MINUTE_MS,
            rule_jitter_ms: sized_jitter_ms(devices, quota_per_second),
            tail_ms: 65 * MINUTE_MS,
            series_every_s: 30,
        }
    }

    pub fn scenario_params(&self) -> ScenarioParams {
        ScenarioParams {
            devices: self.devices,
            rate_per_minute: self.rate_per_minute,
            outage_ms: self.outage_ms,
            offline_ms: self.offline_ms,
        }
    }

    /// How long a run lasts after the job's creation.
    pub fn horizon_ms(&self, scenario: Scenario) -> Millis {
        let p = self.scenario_params();
        scenario.ideal_ms(&p).max(scenario.last_event_ms(&p)) + self.tail_ms
    }
}

/// A jitter that spreads `devices` queries at `quota` per second (at least 3 s).
pub fn sized_jitter_ms(devices: usize, quota_per_second: u32) -> Millis {
    let spread = (devices as u64 * SECOND_MS) / u64::from(quota_per_second.max(1));
    spread.max(3 * SECOND_MS)
}

/// The thing name of device `index`.
pub fn thing_name(index: usize) -> String {
    format!("core-{index:07}")
}

/// Runs one scenario under one strategy and measures it (wall time and RSS left `None`).
pub fn run(config: &ReportConfig, scenario: Scenario, strategy: Strategy) -> RunMetrics {
    let mut sim_config = SimConfig {
        seed: config.seed,
        latency_ms: config.latency_ms,
        nucleus_jobs: true,
        log: false,
        ..SimConfig::default()
    };
    strategy.apply_to_sim(&mut sim_config);
    let mut sim = Simulation::new(sim_config);
    sim.world_mut()
        .set_jobs_rate_quota(Some(config.quota_per_second));
    let jitter = Duration::from_millis(config.rule_jitter_ms);
    let boot_start = sim.now();
    let n = config.devices;
    for i in 0..n {
        let boot_at = boot_start + config.boot_window_ms * i as u64 / n.max(1) as u64;
        sim.run_until(boot_at);
        let mut engine = EngineConfig::new(&thing_name(i));
        strategy.apply_to_engine(&mut engine, jitter);
        sim.add_device(
            engine,
            WorkModel {
                duration_ms: config.work_ms,
                status: JobStatus::Succeeded,
            },
        );
    }
    let t0 = boot_start + config.boot_window_ms + config.settle_ms;
    sim.run_until(t0);

    let params = config.scenario_params();
    let horizon = config.horizon_ms(scenario);
    let mut events = scenario.events(&params).into_iter().peekable();
    // Events at the job's creation (an offline part of the fleet) come first.
    while let Some((0, event)) = events.peek().copied() {
        apply(&mut sim, event, n);
        events.next();
    }
    let requests_before = sim.stats().jobs_requests;
    let throttled_before = sim.world().quota_refusals();
    let mqtt_before = sim.world().mqtt_counts();
    let job = NewJob {
        job_id: JOB_ID.into(),
        targets: (0..n).map(thing_name).collect(),
        document: json!({"operation": "echo", "version": "2"}),
        rollout: scenario.rollout(&params),
        ..NewJob::default()
    };
    if let Err(e) = sim
        .world_mut()
        .jobs_control(|jobs, now| jobs.create_job(job, now))
    {
        tracing::error!(error = %e, "the report's job was not created");
    }
    sim.carry();

    let mut series = Vec::new();
    let mut all = vec![Sample {
        at_ms: 0,
        succeeded: 0,
    }];
    let mut at = 0;
    while at < horizon {
        at += SECOND_MS;
        while let Some((when, event)) = events.peek().copied() {
            if when > at {
                break;
            }
            sim.run_until(t0 + when);
            apply(&mut sim, event, n);
            events.next();
        }
        sim.run_until(t0 + at);
        let succeeded = sim
            .world()
            .jobs()
            .job_counts(JOB_ID)
            .of(JobStatus::Succeeded);
        let sample = Sample {
            at_ms: at,
            succeeded,
        };
        all.push(sample);
        if (at / SECOND_MS) % config.series_every_s.max(1) == 0 {
            series.push(sample);
        }
    }
    let stranded = (0..n)
        .filter(|&i| {
            let thing = thing_name(i);
            let world = sim.world();
            let terminal = world
                .jobs()
                .execution(JOB_ID, &thing, None)
                .is_some_and(|e| e.status.is_terminal());
            world.core_connected(&thing) && !terminal
        })
        .count();
    let counts = sim.world().jobs().job_counts(JOB_ID);
    let mqtt = sim.world().mqtt_counts();
    let peak_requests_per_second = sim
        .stats()
        .jobs_requests_per_second
        .range(t0..)
        .map(|(_, c)| *c)
        .max()
        .unwrap_or(0);
    let succeeded = counts.of(JobStatus::Succeeded);
    RunMetrics {
        devices: n,
        horizon_ms: horizon,
        ideal_ms: scenario.ideal_ms(&params),
        stranded,
        succeeded,
        t99_ms: first_reaching(&all, ninety_nine_percent(n)),
        t100_ms: first_reaching(&all, n),
        jobs_requests: sim.stats().jobs_requests - requests_before,
        peak_requests_per_second,
        throttled: sim.world().quota_refusals() - throttled_before,
        quota_per_second: config.quota_per_second,
        mqtt_messages: (mqtt.from_cores - mqtt_before.from_cores)
            + (mqtt.to_cores - mqtt_before.to_cores),
        succeeded_series: series,
        peak_requests_per_minute: peak_per_minute(&sim.stats().jobs_requests_per_second, t0),
        wall: None,
        peak_rss_bytes: None,
    }
}

/// Carries out one fleet event at the simulation's current time.
fn apply(sim: &mut Simulation, event: FleetEvent, devices: usize) {
    let (selection, action): (Selection, Option<bool>) = match event {
        FleetEvent::Disconnect(s) => (s, None),
        FleetEvent::Reconnect {
            selection,
            sessions_lost,
        } => (selection, Some(sessions_lost)),
    };
    for i in (0..devices).filter(|&i| selection.contains(i)) {
        let thing = thing_name(i);
        match action {
            None => sim.world_mut().core_disconnect(&thing),
            Some(lost) => sim.world_mut().core_reconnect(&thing, lost),
        }
        sim.carry();
    }
}
