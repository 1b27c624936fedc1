//! The fleet report's logic at a small scale: every scenario, the strategies whose difference
//! the report is about, and facts about the outcome that a regression would break (no timing).

use greengrass_jobs_handler::sim::report::markdown::{self, ReportedRun, ScenarioSection};
use greengrass_jobs_handler::sim::report::metrics::RunMetrics;
use greengrass_jobs_handler::sim::report::run_record::Provenance;
use greengrass_jobs_handler::sim::report::scenario::Scenario;
use greengrass_jobs_handler::sim::report::strategy::Strategy;
use greengrass_jobs_handler::sim::report::{run, ReportConfig};

const DEVICES: usize = 300;
const MINUTE: u64 = 60_000;

/// 300 devices at 100 things a minute (a three-minute rollout), booted over a minute; the
/// tail is long enough for a 5-minute poll to catch up.
fn config() -> ReportConfig {
    let mut c = ReportConfig::new(DEVICES);
    c.rate_per_minute = 100;
    c.boot_window_ms = MINUTE;
    c.settle_ms = MINUTE;
    c.outage_ms = 2 * MINUTE;
    c.tail_ms = 8 * MINUTE;
    c
}

fn assert_completes_no_faster_than_ideal(m: &RunMetrics) {
    let t100 = m.t100_ms.expect("every device SUCCEEDED");
    assert!(
        t100 >= m.ideal_ms,
        "100 % after {t100} ms, below the rollout's ideal {} ms",
        m.ideal_ms
    );
    let t99 = m.t99_ms.expect("99 % SUCCEEDED");
    assert!(t99 <= t100);
    assert!(m.mqtt_per_device() > 0.0 && m.mqtt_per_device_per_day() > m.mqtt_per_device());
}

#[test]
fn a_mid_rollout_clean_reconnect_strands_notify_next_only_but_not_the_rule() {
    let c = config();
    let flawed = run(&c, Scenario::CleanReconnect, Strategy::NotifyNextOnly);
    let fixed = run(
        &c,
        Scenario::CleanReconnect,
        Strategy::RuleAndConnectionStatus,
    );
    let polled = run(&c, Scenario::CleanReconnect, Strategy::Poll { minutes: 5 });
    // The outage covers most of the rollout: everything released meanwhile is lost.
    assert!(
        flawed.stranded > DEVICES / 4,
        "notify-next only stranded {} of {DEVICES}",
        flawed.stranded
    );
    assert_eq!(flawed.t100_ms, None);
    assert_eq!(flawed.succeeded + flawed.stranded, DEVICES);
    for m in [&fixed, &polled] {
        assert_eq!(m.stranded, 0);
        assert_eq!(m.succeeded, DEVICES);
        assert_completes_no_faster_than_ideal(m);
    }
    // Polling pays for its recovery in requests.
    assert!(polled.jobs_requests > flawed.jobs_requests);
}

#[test]
fn an_hour_offline_strands_only_the_offline_devices_without_a_signal() {
    let c = config();
    let flawed = run(&c, Scenario::OfflineHour, Strategy::NotifyNextOnly);
    let fixed = run(&c, Scenario::OfflineHour, Strategy::Rule);
    // Every hundredth device was offline past its session's expiry.
    let offline = DEVICES.div_ceil(100);
    assert!(
        (1..=offline).contains(&flawed.stranded),
        "stranded {} (offline {offline})",
        flawed.stranded
    );
    assert_eq!(fixed.stranded, 0);
    assert_completes_no_faster_than_ideal(&fixed);
    // The offline devices finish only after they are back.
    assert!(fixed.t100_ms.is_some_and(|t| t >= c.offline_ms));
}

#[test]
fn rollouts_finish_everywhere_and_not_before_their_rate_allows() {
    let c = config();
    let fixed_rate = run(&c, Scenario::Rollout, Strategy::NotifyNextOnly);
    let exponential = run(&c, Scenario::Exponential, Strategy::NotifyNextOnly);
    for m in [&fixed_rate, &exponential] {
        assert_eq!(m.stranded, 0);
        assert_completes_no_faster_than_ideal(m);
        assert!(m.peak_requests_per_second > 0);
    }
    // The exponential rate starts slower than the maximum.
    assert!(exponential.ideal_ms > fixed_rate.ideal_ms);
    assert!(exponential.t100_ms > fixed_rate.t100_ms);
    // Same settings, same run.
    assert_eq!(
        run(&c, Scenario::Rollout, Strategy::NotifyNextOnly),
        fixed_rate
    );

    let made_by = |command: &str| Provenance {
        machine: "nproc: 1".into(),
        command: command.into(),
        load_at_start: "0.10 0.20 0.30".into(),
        load_at_end: "0.90 0.40 0.35".into(),
    };
    let text = markdown::render(
        &c,
        &[
            ScenarioSection {
                scenario: Scenario::Rollout,
                runs: vec![ReportedRun {
                    strategy: Strategy::NotifyNextOnly,
                    metrics: fixed_rate.clone(),
                    provenance: made_by("cargo bench --bench fleet_report"),
                }],
                plots: vec!["rollout-succeeded.svg".into()],
            },
            ScenarioSection {
                scenario: Scenario::Exponential,
                runs: vec![ReportedRun {
                    strategy: Strategy::NotifyNextOnly,
                    metrics: exponential.clone(),
                    provenance: made_by(
                        "GGJH_REPORT_SCENARIOS=exponential cargo bench --bench fleet_report",
                    ),
                }],
                plots: vec![],
            },
        ],
    );
    assert!(text.contains("| notify-next only | 0 | 300 |"), "{text}");
    assert!(text.contains("![rollout-succeeded.svg](rollout-succeeded.svg)"));
    // Runs made by different commands are told apart, each with the loads around it.
    assert!(text.contains("### Source 1") && text.contains("### Source 2"));
    // One machine: described once.
    assert_eq!(text.matches("```text\nnproc: 1\n```").count(), 1, "{text}");
    assert!(text.contains("\n```sh\nGGJH_REPORT_SCENARIOS=exponential cargo bench"));
    assert!(text.contains("- exponential / notify-next only: 0.10 0.20 0.30 → 0.90 0.40 0.35"));
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| notify-next only |"))
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0].ends_with("| 1 |") && rows[1].ends_with("| 2 |"),
        "{rows:?}"
    );
}

/// The simulation's ConnectionStatus knob: without the rule, only the nucleus's CONNECTED
/// event tells the component to look again after a clean reconnect.
#[test]
fn connection_status_alone_recovers_a_job_lost_with_the_session() {
    use greengrass_jobs_handler::emulator::cloud::jobs_service::NewJob;
    use greengrass_jobs_handler::jobs::engine::EngineConfig;
    use greengrass_jobs_handler::jobs::messages::JobStatus;
    use greengrass_jobs_handler::sim::device::WorkModel;
    use greengrass_jobs_handler::sim::{SimConfig, Simulation};

    let outcome = |connection_status: bool| {
        let mut sim = Simulation::new(SimConfig {
            reconnect_rule: false,
            connection_status,
            ..SimConfig::default()
        });
        sim.add_device(EngineConfig::new("core-1"), WorkModel::default());
        let t = sim.now() + MINUTE;
        sim.run_until(t);
        sim.world_mut().core_disconnect("core-1");
        sim.carry();
        let job = NewJob {
            job_id: "j1".into(),
            targets: vec!["core-1".into()],
            document: serde_json::json!({"operation": "echo"}),
            ..NewJob::default()
        };
        sim.world_mut()
            .jobs_control(|jobs, now| jobs.create_job(job, now))
            .expect("job created");
        sim.carry();
        sim.world_mut().core_reconnect("core-1", true);
        sim.carry();
        let t = sim.now() + 5 * MINUTE;
        sim.run_until(t);
        sim.world()
            .jobs()
            .execution("j1", "core-1", None)
            .map(|e| e.status)
    };
    assert_eq!(outcome(true), Some(JobStatus::Succeeded));
    assert_eq!(outcome(false), Some(JobStatus::Queued));
}

#[test]
fn a_fleet_over_the_accounts_quota_backs_off_instead_of_storming() {
    // 300 devices polling every 5 minutes (1 request a second) in a 15-minute rollout (about
    // 5 requests per device: 1.7 a second) against 3 requests a second: in the rollout's
    // bursts the fleet asks for more than the account grants, as 50,000 devices polling every
    // 5 minutes in a rollout at 1,000 a minute do against 200 a second. Throttled devices must
    // spread their retries, not start every new request's back-off again at a second (a
    // per-request back-off had 76 % of the requests refused here and a peak of 42 a second,
    // and 88 % at 50,000 devices).
    let mut c = config();
    c.quota_per_second = 3;
    c.rate_per_minute = 20;
    c.tail_ms = 30 * MINUTE;
    let m = run(&c, Scenario::Rollout, Strategy::Poll { minutes: 5 });
    assert_eq!(m.stranded, 0);
    assert_eq!(m.succeeded, DEVICES);
    assert!(
        m.throttled * 3 <= m.jobs_requests * 2,
        "{} of {} requests throttled",
        m.throttled,
        m.jobs_requests
    );
    assert!(
        m.peak_requests_per_second <= 10 * u64::from(c.quota_per_second),
        "peak {} requests/s against a quota of {}",
        m.peak_requests_per_second,
        c.quota_per_second
    );
}
