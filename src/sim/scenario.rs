//! Seeded fault scenarios: a small fleet, a mix of jobs, and a schedule of faults, drawn from
//! one seed; run, healed and audited.
//!
//! Owns: drawing a [`Scenario`] from the simulation's random generator (so one seed is one
//! run), carrying out its steps at their times (jobs created; connections dropped and resumed
//! with or without their sessions; crashes, torn journal writes and clock jumps; throttling
//! and rate-quota storms; cancel, force-cancel, delete; continuous-group membership), healing
//! every fault and running on, and the [`Outcome`] with the audit's violations.
//! Must not know: the engine's insides or how the world routes messages.

use super::device::{ArmedCrash, WorkModel};
use super::faults::{FaultKind, HopFaults};
use super::{SimConfig, SimStats, Simulation};
use crate::emulator::cloud::jobs_service::{NewJob, RetryConfig};
use crate::emulator::world::Millis;
use crate::jobs::engine::EngineConfig;
use serde_json::json;
use std::time::Duration;

const SECOND: Millis = 1_000;
/// The thing group continuous jobs target.
pub const GROUP: &str = "sim-fleet";

/// What a job's document is.
#[derive(Debug, Clone, PartialEq)]
pub enum JobKind {
    /// Ours: its work takes `duration_ms` and fails when `fails`.
    Ours { duration_ms: u64, fails: bool },
    /// Of our form but unrunnable.
    Malformed,
    /// A Greengrass deployment (namespace aws-gg-deployment).
    Deployment,
    /// A document of another agent.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct JobSpec {
    pub job_id: String,
    pub kind: JobKind,
    /// Indexes of the target cores (none for a continuous job: its group decides).
    pub targets: Vec<usize>,
    pub retry: RetryConfig,
    pub in_progress_timeout_minutes: Option<i64>,
    pub continuous: bool,
}

/// One scheduled step.
#[derive(Debug, Clone)]
pub enum Step {
    CreateJob(usize),
    Drop {
        core: usize,
    },
    Resume {
        core: usize,
        session_lost: bool,
    },
    Crash {
        core: usize,
        armed: Option<ArmedCrash>,
    },
    ClockJump {
        core: usize,
        ms: Millis,
    },
    Throttle {
        core: usize,
        count: u32,
    },
    Quota(Option<u32>),
    Cancel {
        job: usize,
        force: bool,
    },
    Delete {
        job: usize,
        core: usize,
    },
    JoinGroup {
        core: usize,
    },
    LeaveGroup {
        core: usize,
    },
}

/// A whole scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub cores: Vec<String>,
    pub max_concurrent: Vec<usize>,
    pub jobs: Vec<JobSpec>,
    /// (offset from the start, step), in time order.
    pub steps: Vec<(Millis, Step)>,
    pub hop: HopFaults,
    pub restart_delay_ms: (Millis, Millis),
    /// Faults stop here (offset); then the run heals and goes on for `settle_ms`.
    pub fault_window_ms: Millis,
    pub settle_ms: Millis,
}

fn chance(rng: &mut fastrand::Rng, per_mille: u32) -> bool {
    rng.u32(0..1000) < per_mille
}

impl Scenario {
    /// Draws a scenario.
    pub fn generate(rng: &mut fastrand::Rng) -> Self {
        let core_count = rng.usize(1..=3);
        let cores: Vec<String> = (0..core_count).map(|i| format!("core-{i}")).collect();
        let max_concurrent = (0..core_count).map(|_| rng.usize(1..=2)).collect();
        let fault_window_ms = rng.u64(30..=240) * SECOND;
        let mut jobs = Vec::new();
        let mut steps = Vec::new();
        let job_count = rng.usize(1..=6);
        for i in 0..job_count {
            let kind = match rng.u32(0..100) {
                0..=69 => JobKind::Ours {
                    duration_ms: rng.u64(1..=90) * SECOND,
                    fails: chance(rng, 250),
                },
                70..=79 => JobKind::Malformed,
                80..=89 => JobKind::Deployment,
                _ => JobKind::Unknown,
            };
            let continuous = i == 0 && chance(rng, 200);
            let targets = if continuous {
                Vec::new()
            } else {
                let mut t: Vec<usize> = (0..core_count).filter(|_| chance(rng, 700)).collect();
                if t.is_empty() {
                    t.push(rng.usize(0..core_count));
                }
                t
            };
            let retry = RetryConfig {
                failed: if chance(rng, 300) { rng.u32(1..=2) } else { 0 },
                timed_out: if chance(rng, 200) { 1 } else { 0 },
            };
            let in_progress_timeout_minutes = chance(rng, 200).then_some(1);
            jobs.push(JobSpec {
                job_id: format!("job-{i}"),
                kind,
                targets,
                retry,
                in_progress_timeout_minutes,
                continuous,
            });
            steps.push((rng.u64(0..fault_window_ms), Step::CreateJob(i)));
        }
        let fault_count = rng.usize(0..=12);
        for _ in 0..fault_count {
            let at = rng.u64(0..fault_window_ms);
            let core = rng.usize(0..core_count);
            let step = match rng.u32(0..11) {
                0 | 1 => {
                    let back = at + rng.u64(1..=60) * SECOND;
                    steps.push((
                        back,
                        Step::Resume {
                            core,
                            session_lost: chance(rng, 400),
                        },
                    ));
                    Step::Drop { core }
                }
                2 | 3 => Step::Crash {
                    core,
                    armed: chance(rng, 600).then(|| ArmedCrash {
                        cut: rng.u64(..),
                        torn: chance(rng, 500),
                    }),
                },
                4 => Step::ClockJump {
                    core,
                    ms: rng.u64(1..=600) * SECOND,
                },
                5 => Step::Throttle {
                    core,
                    count: rng.u32(1..=25),
                },
                6 => {
                    steps.push((at + rng.u64(1..=30) * SECOND, Step::Quota(None)));
                    Step::Quota(Some(rng.u32(0..=2)))
                }
                7 => Step::Cancel {
                    job: rng.usize(0..job_count),
                    force: chance(rng, 500),
                },
                8 => Step::Delete {
                    job: rng.usize(0..job_count),
                    core,
                },
                9 => Step::JoinGroup { core },
                _ => Step::LeaveGroup { core },
            };
            steps.push((at, step));
        }
        for core in 0..core_count {
            if chance(rng, 500) {
                steps.push((0, Step::JoinGroup { core }));
            }
        }
        steps.sort_by_key(|(at, _)| *at);
        let hop = if chance(rng, 800) {
            HopFaults {
                loss_per_mille: rng.u32(0..=60),
                duplicate_per_mille: rng.u32(0..=60),
                reorder_ms: rng.u64(0..=400),
                delay_per_mille: rng.u32(0..=40),
                delay_max_ms: rng.u64(1..=30) * SECOND,
            }
        } else {
            HopFaults::default()
        };
        Self {
            cores,
            max_concurrent,
            jobs,
            steps,
            hop,
            restart_delay_ms: (100, rng.u64(1..=30) * SECOND),
            fault_window_ms,
            settle_ms: 20 * 60 * SECOND,
        }
    }

    fn document(&self, job: &JobSpec) -> (serde_json::Value, Option<String>) {
        match &job.kind {
            JobKind::Ours { duration_ms, fails } => (
                json!({
                    "operation": "sim-work",
                    "simDurationMs": duration_ms,
                    "simOutcome": if *fails { "FAILED" } else { "SUCCEEDED" },
                }),
                None,
            ),
            JobKind::Malformed => (json!({"operation": 5}), None),
            JobKind::Deployment => (
                json!({
                    "deploymentId": format!("d-{}", job.job_id),
                    "components": {"aws.greengrass.Cli": {"version": "2.13.0"}},
                }),
                Some("aws-gg-deployment".to_owned()),
            ),
            JobKind::Unknown => (json!({"agent": "other", "command": "reboot"}), None),
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub seed: u64,
    pub scenario: Scenario,
    pub violations: Vec<super::audit::Violation>,
    pub stats: SimStats,
    /// Changes of execution state the audit checked.
    pub transitions: u64,
    /// The event log (only when asked for).
    pub log: Vec<String>,
}

/// Draws the scenario of `seed`, runs it with every fault, heals, runs on and audits.
pub fn run(seed: u64, log: bool) -> Outcome {
    let mut sim = Simulation::new(SimConfig {
        seed,
        log,
        ..SimConfig::default()
    });
    let scenario = Scenario::generate(sim.world_mut().rng());
    sim.set_hop_faults(scenario.hop);
    sim.set_restart_delay(scenario.restart_delay_ms.0, scenario.restart_delay_ms.1);
    sim.enable_audit();
    let _ = sim.world_mut().jobs_mut().create_thing_group(GROUP);
    for (i, core) in scenario.cores.iter().enumerate() {
        let mut config = EngineConfig::new(core);
        config.max_jitter = Duration::from_millis(500);
        config.max_concurrent_jobs = scenario.max_concurrent[i];
        sim.add_device(config, WorkModel::default());
    }
    let t0 = sim.now();
    for (offset, step) in &scenario.steps {
        sim.run_until(t0 + offset);
        apply(&mut sim, &scenario, step);
        sim.carry();
        sim.observe();
    }
    sim.run_until(t0 + scenario.fault_window_ms);
    heal(&mut sim, &scenario);
    sim.run_until(t0 + scenario.fault_window_ms + scenario.settle_ms);
    sim.check_settled(false);
    let audit = sim.audit();
    Outcome {
        seed,
        violations: audit.map(|a| a.violations().to_vec()).unwrap_or_default(),
        transitions: audit.map_or(0, |a| a.transitions),
        stats: sim.stats().clone(),
        log: sim.log().to_vec(),
        scenario,
    }
}

fn apply(sim: &mut Simulation, scenario: &Scenario, step: &Step) {
    let core = |i: &usize| scenario.cores[*i].clone();
    match step {
        Step::CreateJob(i) => {
            let spec = &scenario.jobs[*i];
            let (document, namespace_id) = scenario.document(spec);
            if !matches!(spec.kind, JobKind::Ours { .. }) {
                sim.count(if spec.kind == JobKind::Malformed {
                    FaultKind::MalformedDocuments
                } else {
                    FaultKind::ForeignJobs
                });
            }
            if spec.retry != RetryConfig::default() {
                sim.count(FaultKind::Retries);
            }
            if spec.in_progress_timeout_minutes.is_some() {
                sim.count(FaultKind::CloudTimeout);
            }
            let job = NewJob {
                job_id: spec.job_id.clone(),
                targets: spec.targets.iter().map(core).collect(),
                document,
                namespace_id,
                in_progress_timeout_minutes: spec.in_progress_timeout_minutes,
                retry: spec.retry,
                target_groups: if spec.continuous {
                    vec![GROUP.to_owned()]
                } else {
                    Vec::new()
                },
                continuous: spec.continuous,
                ..NewJob::default()
            };
            if let Err(e) = sim
                .world_mut()
                .jobs_control(|jobs, now| jobs.create_job(job, now))
            {
                tracing::warn!(error = %e, "scenario job not created");
            }
        }
        Step::Drop { core: i } => {
            sim.world_mut().core_disconnect(&core(i));
        }
        Step::Resume {
            core: i,
            session_lost,
        } => {
            let c = core(i);
            if !sim.world().core_connected(&c) {
                sim.count(if *session_lost {
                    FaultKind::DropSessionLost
                } else {
                    FaultKind::DropPersistentResume
                });
                sim.world_mut().core_reconnect(&c, *session_lost);
            }
        }
        Step::Crash { core: i, armed } => {
            if armed.is_some_and(|a| a.torn) {
                sim.count(FaultKind::TornJournalWrite);
            }
            if let Some(index) = sim.device_index(&core(i)) {
                sim.crash_device(index, *armed);
            }
        }
        Step::ClockJump { core: i, ms } => {
            if let Some(index) = sim.device_index(&core(i)) {
                sim.jump_clock(index, *ms);
            }
        }
        Step::Throttle { core: i, count } => {
            sim.count(FaultKind::ThrottleStorm);
            sim.world_mut().jobs_mut().throttle(&core(i), *count);
        }
        Step::Quota(quota) => {
            if quota.is_some() {
                sim.count(FaultKind::RateQuotaStorm);
            }
            sim.world_mut().set_jobs_rate_quota(*quota);
        }
        Step::Cancel { job, force } => {
            sim.count(if *force {
                FaultKind::CloudForceCancel
            } else {
                FaultKind::CloudCancel
            });
            let id = scenario.jobs[*job].job_id.clone();
            let _ = sim
                .world_mut()
                .jobs_control(|jobs, now| jobs.cancel_job(&id, *force, Some("sim"), now));
        }
        Step::Delete { job, core: i } => {
            let id = scenario.jobs[*job].job_id.clone();
            let thing = core(i);
            let number = sim
                .world()
                .jobs()
                .execution(&id, &thing, None)
                .map(|e| e.execution_number);
            if let Some(n) = number {
                sim.count(FaultKind::CloudDelete);
                let _ = sim
                    .world_mut()
                    .jobs_control(|jobs, now| jobs.delete_job_execution(&id, &thing, n, true, now));
            }
        }
        Step::JoinGroup { core: i } => {
            sim.count(FaultKind::ContinuousMembership);
            let thing = core(i);
            let _ = sim
                .world_mut()
                .jobs_control(|jobs, now| jobs.add_thing_to_thing_group(GROUP, &thing, now));
        }
        Step::LeaveGroup { core: i } => {
            sim.count(FaultKind::ContinuousMembership);
            let thing = core(i);
            let _ = sim
                .world_mut()
                .jobs_control(|jobs, now| jobs.remove_thing_from_thing_group(GROUP, &thing, now));
        }
    }
}

/// Every fault stops: messages flow again, quotas and throttling end, and every core's
/// connection comes back without its session (so the nucleus resubscribes and the reconnect
/// rule tells each component to look again, as after any outage).
fn heal(sim: &mut Simulation, scenario: &Scenario) {
    sim.set_hop_faults(HopFaults::default());
    sim.world_mut().set_jobs_rate_quota(None);
    for core in &scenario.cores {
        sim.world_mut().jobs_mut().throttle(core, 0);
        sim.world_mut().core_reconnect(core, true);
        sim.carry();
    }
    sim.observe();
}
