//! The invariants a simulated run must keep, checked against the cloud's executions and the
//! devices' record of what really happened.
//!
//! Owns: the last state seen of every execution on the simulated devices' things, and the
//! checks on each change (statuses only a device sets must match work that happened; versions
//! never go back; no foreign execution is touched; work runs at most once per execution unless
//! it was cut short) and at the end of a run (every job of ours terminal, no engine timer when
//! idle, journals settled).
//! Must not know: the event queue, the fault plan or how the devices are driven.

use super::device::Device;
use super::device::WorkRecord;
use crate::emulator::world::World;
use crate::jobs::document::{classify, Ownership};
use crate::jobs::messages::JobStatus;
use std::collections::{BTreeMap, BTreeSet};

/// Whose a job's document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ours,
    OursMalformed,
    Foreign,
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub at: u64,
    pub thing: String,
    pub job_id: String,
    pub execution_number: i64,
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "t={} {} {}#{}: {}",
            self.at, self.thing, self.job_id, self.execution_number, self.what
        )
    }
}

#[derive(Debug, Clone)]
struct Seen {
    status: JobStatus,
    version: i64,
}

/// The checker. Call contract: [`Audit::observe`] after everything that may change an
/// execution (each event, each scenario step); [`Audit::check_settled`] once the run has
/// healed and gone quiet.
#[derive(Debug, Default)]
pub struct Audit {
    seen: BTreeMap<(String, String, i64), Seen>,
    kinds: BTreeMap<String, Kind>,
    /// What had happened to an execution's work when the cloud deleted it: the service may
    /// reuse a deleted execution's number, and the new execution starts from there.
    baselines: BTreeMap<(String, String, i64), WorkRecord>,
    violations: Vec<Violation>,
    /// (thing, job, execution, what) already reported: each broken invariant is listed once.
    reported: BTreeSet<(String, String, i64, String)>,
    /// Changes checked.
    pub transitions: u64,
}

impl Audit {
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    fn kind(&mut self, world: &World, job_id: &str) -> Kind {
        if let Some(k) = self.kinds.get(job_id) {
            return *k;
        }
        let kind = match world.jobs().job(job_id) {
            Some(job) => match classify(Some(&job.document)) {
                Ownership::Ours(_) => Kind::Ours,
                Ownership::OursMalformed(_) => Kind::OursMalformed,
                Ownership::Foreign => Kind::Foreign,
            },
            None => Kind::Foreign,
        };
        self.kinds.insert(job_id.to_owned(), kind);
        kind
    }

    fn violation(&mut self, at: u64, thing: &str, job_id: &str, n: i64, what: String) {
        let category: String = what.split(" (").next().unwrap_or_default().to_owned();
        let key = (thing.to_owned(), job_id.to_owned(), n, category);
        if !self.reported.insert(key) {
            return;
        }
        self.violations.push(Violation {
            at,
            thing: thing.to_owned(),
            job_id: job_id.to_owned(),
            execution_number: n,
            what,
        });
    }

    /// Checks every change since the last call.
    pub fn observe(&mut self, now: u64, world: &World, devices: &[Device]) {
        for device in devices {
            let thing = device.thing();
            let mut present = Vec::new();
            for e in world.jobs().executions_for_thing(thing) {
                let key = (thing.to_owned(), e.job_id.clone(), e.execution_number);
                present.push(key.clone());
                let before = self.seen.get(&key).cloned().unwrap_or(Seen {
                    status: JobStatus::Queued,
                    version: 0,
                });
                if before.status == e.status && before.version == e.version_number {
                    continue;
                }
                self.transitions += 1;
                if e.version_number < before.version
                    && e.version_number == 1
                    && e.status == JobStatus::Queued
                {
                    // Deleted and queued anew under the same number between two looks.
                    let raw = device
                        .work_records()
                        .get(&(e.job_id.clone(), e.execution_number))
                        .cloned()
                        .unwrap_or_default();
                    self.baselines.insert(key.clone(), raw);
                    self.seen.insert(
                        key,
                        Seen {
                            status: e.status,
                            version: e.version_number,
                        },
                    );
                    continue;
                }
                self.seen.insert(
                    key,
                    Seen {
                        status: e.status,
                        version: e.version_number,
                    },
                );
                if e.version_number < before.version
                    || (e.version_number == before.version && e.status != before.status)
                {
                    self.violation(
                        now,
                        thing,
                        &e.job_id,
                        e.execution_number,
                        format!(
                            "version went from {} ({}) to {} ({})",
                            before.version, before.status, e.version_number, e.status
                        ),
                    );
                }
                if before.status == e.status {
                    continue;
                }
                let kind = self.kind(world, &e.job_id);
                let record = self.record(device, &e.job_id, e.execution_number);
                let reason = e.status_details.get("reason").cloned().unwrap_or_default();
                let problem = match (e.status, kind) {
                    // The cloud's own transitions.
                    (
                        JobStatus::Queued
                        | JobStatus::Canceled
                        | JobStatus::TimedOut
                        | JobStatus::Removed,
                        _,
                    ) => None,
                    (_, Kind::Foreign) => Some(format!(
                        "a foreign job was moved to {} by the device",
                        e.status
                    )),
                    (JobStatus::InProgress, Kind::OursMalformed) => {
                        Some("a malformed document was started".to_owned())
                    }
                    (JobStatus::InProgress, Kind::Ours) => None,
                    (JobStatus::Rejected, Kind::OursMalformed) => None,
                    (JobStatus::Rejected, Kind::Ours) => {
                        Some(format!("a runnable job was REJECTED: {reason}"))
                    }
                    (JobStatus::Succeeded, Kind::Ours) => {
                        (!record.completed.contains(&JobStatus::Succeeded))
                            .then(|| format!("SUCCEEDED without completed work ({record:?})"))
                    }
                    (JobStatus::Failed, Kind::Ours) if reason.starts_with("interrupted") => {
                        (record.interrupted + record.results_lost == 0).then(|| {
                            format!("FAILED {reason:?} but no run was cut short ({record:?})")
                        })
                    }
                    (JobStatus::Failed, Kind::Ours) => {
                        (!record.completed.contains(&JobStatus::Failed))
                            .then(|| format!("FAILED {reason:?} without failed work ({record:?})"))
                    }
                    (status, Kind::OursMalformed) => Some(format!(
                        "a malformed document was reported {status}: {reason}"
                    )),
                };
                if let Some(what) = problem {
                    self.violation(now, thing, &e.job_id, e.execution_number, what);
                }
            }
            let gone: Vec<_> = self
                .seen
                .range((thing.to_owned(), String::new(), i64::MIN)..)
                .take_while(|(k, _)| k.0 == thing)
                .map(|(k, _)| k.clone())
                .filter(|k| !present.contains(k))
                .collect();
            for key in gone {
                self.seen.remove(&key);
                let raw = device
                    .work_records()
                    .get(&(key.1.clone(), key.2))
                    .cloned()
                    .unwrap_or_default();
                self.baselines.insert(key, raw);
            }
            let keys: Vec<_> = device.work_records().keys().cloned().collect();
            for (job_id, n) in keys {
                let record = self.record(device, &job_id, n);
                if self.kind(world, &job_id) != Kind::Ours {
                    self.violation(
                        now,
                        thing,
                        &job_id,
                        n,
                        "work ran for a job that is not runnable here".to_owned(),
                    );
                }
                if record.runs > 1 + record.interrupted {
                    self.violation(
                        now,
                        thing,
                        &job_id,
                        n,
                        format!("work ran more than once ({record:?})"),
                    );
                }
            }
        }
    }

    /// What happened to the work of the execution the cloud has now under this number (runs
    /// of a deleted execution of the same number not counted).
    fn record(&self, device: &Device, job_id: &str, n: i64) -> WorkRecord {
        let raw = device
            .work_records()
            .get(&(job_id.to_owned(), n))
            .cloned()
            .unwrap_or_default();
        let key = (device.thing().to_owned(), job_id.to_owned(), n);
        let Some(base) = self.baselines.get(&key) else {
            return raw;
        };
        WorkRecord {
            runs: raw.runs.saturating_sub(base.runs),
            completed: raw
                .completed
                .get(base.completed.len()..)
                .unwrap_or_default()
                .to_vec(),
            interrupted: raw.interrupted.saturating_sub(base.interrupted),
            canceled: raw.canceled.saturating_sub(base.canceled),
            results_lost: raw.results_lost.saturating_sub(base.results_lost),
        }
    }

    /// After healing and running on: every job of ours is terminal, every device idle with no
    /// timer (unless `safety_poll`), and its journal holds nothing.
    pub fn check_settled(
        &mut self,
        now: u64,
        world: &World,
        devices: &[Device],
        safety_poll: bool,
    ) {
        self.observe(now, world, devices);
        for device in devices {
            let thing = device.thing();
            for e in world.jobs().executions_for_thing(thing) {
                let kind = self.kind(world, &e.job_id);
                if kind != Kind::Foreign && !e.status.is_terminal() {
                    self.violation(
                        now,
                        thing,
                        &e.job_id,
                        e.execution_number,
                        format!("still {} after healing", e.status),
                    );
                }
            }
            if !device.is_up() {
                self.violation(now, thing, "-", 0, "component not running".to_owned());
            } else if !safety_poll && device.engine_deadline().is_some() {
                self.violation(
                    now,
                    thing,
                    "-",
                    0,
                    format!("engine timer while idle: {:?}", device.engine_deadline()),
                );
            }
            for entry in device.shell_journal().entries() {
                self.violation(
                    now,
                    thing,
                    &entry.job_id,
                    entry.execution_number,
                    format!("journal entry left behind (phase {:?})", entry.phase()),
                );
            }
        }
    }
}
