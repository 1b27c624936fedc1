//! One simulated core device: the component's real engine with a model of its shell.
//!
//! Owns: the engine, the topics the component subscribed, the jobs it is running and how long
//! their work takes, the shell's journal ([`ShellJournal`]) and what a crash does to it, the
//! engine's clock (the world's plus any forward jumps), when the engine wants to be woken, and
//! the observer's record of the work that really began, completed, was cut short or canceled
//! on this device ([`WorkRecord`], which survives crashes: it is the truth statuses are checked
//! against, not the device's state).
//! Must not know: the world, the event queue, other devices or the fault plan (the simulation
//! carries messages and time, and decides when a fault strikes).

use super::shell_journal::{ShellJournal, BOOT_ID};
use crate::jobs::document::JobDocument;
use crate::jobs::engine::{Action, Engine, EngineConfig, Input, JobOutcome, Record};
use crate::jobs::messages::{JobStatus, StatusDetails};
use crate::journal;
use crate::topic;
use std::collections::BTreeMap;

/// How long a job's work takes and how it ends. A document's own `simDurationMs` (a number)
/// and `simOutcome` (`"SUCCEEDED"` or `"FAILED"`) override these for that job.
#[derive(Debug, Clone)]
pub struct WorkModel {
    pub duration_ms: u64,
    pub status: JobStatus,
}

impl Default for WorkModel {
    fn default() -> Self {
        Self {
            duration_ms: 1_000,
            status: JobStatus::Succeeded,
        }
    }
}

/// What a device asks the simulation to do.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceAction {
    /// PublishToIoTCore.
    Publish { topic: String, payload: Vec<u8> },
    /// A job's work started; it ends after `duration_ms` unless `run` is stopped first.
    Work {
        job_id: String,
        execution_number: i64,
        duration_ms: u64,
        run: u64,
        /// How the work ends when it reaches its end.
        status: JobStatus,
    },
}

/// What really happened to one execution's work on a device, across every run of the
/// component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkRecord {
    /// Times the work began.
    pub runs: u32,
    /// How each run that reached its end ended.
    pub completed: Vec<JobStatus>,
    /// Runs cut short by a crash of the component.
    pub interrupted: u32,
    /// Runs stopped because the cloud ended the job.
    pub canceled: u32,
    /// Runs whose work ended but whose result died with the component before it was durable
    /// (a crash during the journal write of the result): to the journal, the run was cut short.
    pub results_lost: u32,
}

/// A crash the device is armed with: the next non-empty batch of actions is cut at index
/// `cut % len`; with `torn`, a journal write at that index is lost too (otherwise it is
/// durable and the crash follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArmedCrash {
    pub cut: u64,
    pub torn: bool,
}

/// A device. Call contract: [`Device::start`] once (after its subscriptions are in place),
/// then messages, finished work and due ticks in time order; after each call,
/// [`Device::arm_tick`] says whether a new wake-up is needed and [`Device::take_crashed`]
/// whether an armed crash struck. After [`Device::crash`] nothing reaches the device until
/// [`Device::restart`] and then [`Device::start`].
pub struct Device {
    /// The engine; its config (thing name included) is the one a restart starts from.
    engine: Engine,
    subscriptions: Vec<String>,
    /// Per subscription: whether it holds a wildcard (the others match one topic exactly).
    wildcard: Vec<bool>,
    work: WorkModel,
    /// Running jobs: (job id, execution number) → run id.
    running: BTreeMap<(String, i64), u64>,
    next_run: u64,
    /// The wake-up already queued (world time).
    tick_at: Option<u64>,
    /// Jobs whose work ran to the end, in order.
    completed: Vec<(String, i64)>,
    /// What the engine asked the shell to journal, in order, over every run of the component.
    journal: Vec<Record>,
    shell_journal: ShellJournal,
    work_records: BTreeMap<(String, i64), WorkRecord>,
    up: bool,
    restarts: u32,
    /// The engine's clock minus the world's (forward jumps only: the shell's clock is
    /// monotonic).
    clock_offset: u64,
    armed_crash: Option<ArmedCrash>,
    crashed: bool,
}

impl Device {
    pub fn new(config: EngineConfig, seed: u64, work: WorkModel) -> Self {
        let mut engine = Engine::new(config, seed);
        let installation = engine.config().thing_name.clone();
        let _ = engine.handle(0, journal_input(&installation));
        let subscriptions = engine.subscriptions();
        let wildcard = subscriptions
            .iter()
            .map(|f| f.contains(['+', '#']))
            .collect();
        Self {
            engine,
            subscriptions,
            wildcard,
            work,
            running: BTreeMap::new(),
            next_run: 0,
            tick_at: None,
            completed: Vec::new(),
            journal: Vec::new(),
            shell_journal: ShellJournal::default(),
            work_records: BTreeMap::new(),
            up: true,
            restarts: 0,
            clock_offset: 0,
            armed_crash: None,
            crashed: false,
        }
    }

    pub fn thing(&self) -> &str {
        &self.engine.config().thing_name
    }

    pub fn subscriptions(&self) -> &[String] {
        &self.subscriptions
    }

    /// Jobs whose work ran to the end on this device.
    pub fn completed(&self) -> &[(String, i64)] {
        &self.completed
    }

    /// What the engine asked the shell to journal, in order.
    pub fn journal(&self) -> &[Record] {
        &self.journal
    }

    /// The shell's journal as it is now.
    pub fn shell_journal(&self) -> &ShellJournal {
        &self.shell_journal
    }

    /// What really happened to each execution's work here.
    pub fn work_records(&self) -> &BTreeMap<(String, i64), WorkRecord> {
        &self.work_records
    }

    /// Whether the component is running.
    pub fn is_up(&self) -> bool {
        self.up
    }

    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The engine's next deadline on its own clock (`None`: no timer).
    pub fn engine_deadline(&self) -> Option<u64> {
        self.engine.next_deadline()
    }

    /// Whether the engine has nothing in flight and nothing scheduled.
    pub fn idle(&self) -> bool {
        self.up && self.engine.next_deadline().is_none() && self.running.is_empty()
    }

    /// Whether a message on `topic` reaches this component (one of its filters matches).
    pub fn wants(&self, topic: &str) -> bool {
        // Most filters are exact topics: comparing bytes is far cheaper than matching levels.
        self.up
            && self
                .subscriptions
                .iter()
                .zip(&self.wildcard)
                .any(|(f, wildcard)| {
                    if *wildcard {
                        topic::matches(f, topic)
                    } else {
                        f == topic
                    }
                })
    }

    fn engine_now(&self, now: u64) -> u64 {
        now.saturating_add(self.clock_offset)
    }

    /// The shell's clock leaps forward by `ms` (e.g. the device was suspended).
    pub fn jump_clock(&mut self, ms: u64) {
        self.clock_offset = self.clock_offset.saturating_add(ms);
    }

    /// Arms a crash for the next batch of actions.
    pub fn arm_crash(&mut self, crash: ArmedCrash) {
        if self.up {
            self.armed_crash = Some(crash);
        }
    }

    /// Whether an armed crash struck during the last call (once).
    pub fn take_crashed(&mut self) -> bool {
        std::mem::take(&mut self.crashed)
    }

    /// The component dies: its work dies with it (containment), its journal stays.
    pub fn crash(&mut self) {
        if !self.up {
            return;
        }
        self.up = false;
        self.armed_crash = None;
        self.tick_at = None;
        for key in std::mem::take(&mut self.running).into_keys() {
            self.work_records.entry(key).or_default().interrupted += 1;
        }
    }

    /// A new process of the component: a fresh engine told what the journal holds, as
    /// `src/handler.rs` does at start-up. [`Device::start`] follows once it is subscribed.
    pub fn restart(&mut self, now: u64, seed: u64) -> Vec<DeviceAction> {
        if self.up {
            return Vec::new();
        }
        self.up = true;
        self.restarts += 1;
        self.engine = Engine::new(self.engine.config().clone(), seed);
        let now = self.engine_now(now);
        let installation = self.engine.config().thing_name.clone();
        let mut actions = self.engine.handle(now, journal_input(&installation));
        for entry in self.shell_journal.entries().to_vec() {
            let recovery = journal::recover(&entry, BOOT_ID, false);
            actions.extend(self.engine.handle(
                now,
                Input::Recovered {
                    job_id: &entry.job_id,
                    execution_number: entry.execution_number,
                    recovery: recovery.recovered,
                },
            ));
        }
        self.carry(now, actions)
    }

    pub fn start(&mut self, now: u64) -> Vec<DeviceAction> {
        if !self.up {
            return Vec::new();
        }
        let now = self.engine_now(now);
        let actions = self.engine.handle(now, Input::Started);
        self.carry(now, actions)
    }

    pub fn message(&mut self, now: u64, topic: &str, payload: &[u8]) -> Vec<DeviceAction> {
        if !self.up {
            return Vec::new();
        }
        let now = self.engine_now(now);
        let actions = self.engine.handle(now, Input::Message { topic, payload });
        self.carry(now, actions)
    }

    /// The core's IoT Core connection changed (the nucleus's ConnectionStatus stream).
    pub fn connection(&mut self, now: u64, connected: bool) -> Vec<DeviceAction> {
        if !self.up {
            return Vec::new();
        }
        let now = self.engine_now(now);
        let actions = self.engine.handle(now, Input::IotConnection { connected });
        self.carry(now, actions)
    }

    /// The work of run `run` ended (ignored when that run was stopped or died).
    pub fn work_done(
        &mut self,
        now: u64,
        job_id: &str,
        execution_number: i64,
        run: u64,
        status: JobStatus,
    ) -> Vec<DeviceAction> {
        let key = (job_id.to_owned(), execution_number);
        if !self.up || self.running.get(&key) != Some(&run) {
            return Vec::new();
        }
        self.running.remove(&key);
        self.completed.push(key.clone());
        self.work_records
            .entry(key)
            .or_default()
            .completed
            .push(status);
        let mut status_details = StatusDetails::new();
        status_details.insert("result".into(), "done".into());
        let outcome = JobOutcome {
            status,
            status_details,
        };
        let now = self.engine_now(now);
        let actions = self.engine.handle(
            now,
            Input::JobFinished {
                job_id,
                execution_number,
                outcome,
            },
        );
        self.carry(now, actions)
    }

    /// Whether a queued wake-up at `now` is still the one the engine wants.
    pub fn tick_due(&mut self, now: u64) -> bool {
        if self.up && self.tick_at == Some(now) {
            self.tick_at = None;
            return true;
        }
        false
    }

    pub fn tick(&mut self, now: u64) -> Vec<DeviceAction> {
        if !self.up {
            return Vec::new();
        }
        let now = self.engine_now(now);
        let actions = self.engine.handle(now, Input::Tick);
        self.carry(now, actions)
    }

    /// A new wake-up to queue (world time, not before `now`), if the engine's deadline moved.
    pub fn arm_tick(&mut self, now: u64) -> Option<u64> {
        if !self.up {
            return None;
        }
        let deadline = self
            .engine
            .next_deadline()?
            .saturating_sub(self.clock_offset)
            .max(now);
        if self.tick_at.is_some_and(|t| t <= deadline) {
            return None;
        }
        self.tick_at = Some(deadline);
        Some(deadline)
    }

    /// How long a job's work takes and how it ends.
    fn work_of(&self, document: &JobDocument) -> (u64, JobStatus) {
        let mut duration = self.work.duration_ms;
        let mut status = self.work.status;
        if let JobDocument::Operation { arguments, .. } = document {
            if let Some(d) = arguments.get("simDurationMs").and_then(|v| v.as_u64()) {
                duration = d;
            }
            match arguments.get("simOutcome").and_then(|v| v.as_str()) {
                Some("FAILED") => status = JobStatus::Failed,
                Some("SUCCEEDED") => status = JobStatus::Succeeded,
                _ => {}
            }
        }
        (duration, status)
    }

    /// Carries out the engine's actions as the shell does, in order; an armed crash cuts the
    /// batch.
    fn carry(&mut self, now: u64, actions: Vec<Action>) -> Vec<DeviceAction> {
        let cut = match self.armed_crash {
            Some(c) if !actions.is_empty() => {
                self.armed_crash = None;
                Some((
                    usize::try_from(c.cut % actions.len() as u64).unwrap_or(0),
                    c.torn,
                ))
            }
            _ => None,
        };
        let mut out = Vec::new();
        for (i, action) in actions.into_iter().enumerate() {
            let crash_here = cut.filter(|(at, _)| *at == i);
            if let Some((_, torn)) = crash_here {
                // A journal write (or a run's write and spawn) either happened whole or not.
                if let (
                    true,
                    Action::Record(Record::Finished {
                        job_id,
                        execution_number,
                        ..
                    }),
                ) = (torn, &action)
                {
                    let key = (job_id.clone(), *execution_number);
                    self.work_records.entry(key).or_default().results_lost += 1;
                }
                if !torn {
                    match action {
                        Action::Record(record) => {
                            self.shell_journal.record(&record, now);
                            self.journal.push(record);
                        }
                        Action::Run(run) => {
                            let _ = self.begin_run(now, run);
                        }
                        _ => {}
                    }
                }
                self.crash();
                self.crashed = true;
                break;
            }
            match action {
                Action::Publish { topic, payload } => {
                    out.push(DeviceAction::Publish { topic, payload });
                }
                Action::Run(run) => out.push(self.begin_run(now, run)),
                Action::Cancel {
                    job_id,
                    execution_number,
                    ..
                } => {
                    let key = (job_id, execution_number);
                    if self.running.remove(&key).is_some() {
                        self.work_records.entry(key).or_default().canceled += 1;
                    }
                }
                Action::Forget {
                    job_id,
                    execution_number,
                } => self.shell_journal.forget(&job_id, execution_number),
                // The world keeps a device's subscriptions for its whole life.
                Action::Subscribe { .. } | Action::Resubscribe | Action::Exit { .. } => {}
                // The shell writes these to its journal before it sends what follows.
                Action::Record(record) => {
                    self.shell_journal.record(&record, now);
                    self.journal.push(record);
                }
            }
        }
        out
    }

    fn begin_run(&mut self, now: u64, run: crate::jobs::engine::JobRun) -> DeviceAction {
        self.next_run += 1;
        let run_id = self.next_run;
        let label = format!("{}-run-{run_id}", self.thing());
        self.shell_journal.run(&run, &label, now);
        let key = (run.job_id.clone(), run.execution_number);
        self.running.insert(key.clone(), run_id);
        self.work_records.entry(key).or_default().runs += 1;
        let (duration_ms, status) = self.work_of(&run.document);
        DeviceAction::Work {
            job_id: run.job_id,
            execution_number: run.execution_number,
            duration_ms,
            run: run_id,
            status,
        }
    }
}

/// What the shell tells a new engine about its journal: the device's installation id (its
/// thing name's, the same for every process on it) and a journal read whole.
fn journal_input(installation: &str) -> Input<'_> {
    Input::Journal {
        installation,
        intact: true,
    }
}
