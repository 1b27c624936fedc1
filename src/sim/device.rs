//! One simulated core device: the component's real engine with a model of its shell.
//!
//! Owns: the engine, the topics the component subscribed, the jobs it is running and how long
//! their work takes, and when the engine wants to be woken. Must not know: the world, the event
//! queue or other devices (the simulation carries messages and time).

use crate::jobs::engine::{Action, Engine, EngineConfig, Input, JobOutcome, Record};
use crate::jobs::messages::{JobStatus, StatusDetails};
use crate::topic;
use std::collections::BTreeMap;

/// How long a job's work takes and how it ends.
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
    /// A job's work started; it ends after `duration_ms`.
    Work {
        job_id: String,
        execution_number: i64,
        duration_ms: u64,
    },
}

/// A device. Call contract: [`Device::start`] once (after its subscriptions are in place),
/// then messages, finished work and due ticks in time order; after each call,
/// [`Device::arm_tick`] says whether a new wake-up is needed.
pub struct Device {
    engine: Engine,
    thing: String,
    subscriptions: Vec<String>,
    /// Per subscription: whether it holds a wildcard (the others match one topic exactly).
    wildcard: Vec<bool>,
    work: WorkModel,
    /// Running jobs: (job id, execution number) → cancelled.
    running: BTreeMap<(String, i64), bool>,
    /// The wake-up already queued.
    tick_at: Option<u64>,
    /// Jobs whose work ran to the end, in order.
    completed: Vec<(String, i64)>,
    /// What the shell journaled, in order.
    journal: Vec<Record>,
}

impl Device {
    pub fn new(config: EngineConfig, seed: u64, work: WorkModel) -> Self {
        let thing = config.thing_name.clone();
        let engine = Engine::new(config, seed);
        let subscriptions = engine.subscriptions();
        let wildcard = subscriptions
            .iter()
            .map(|f| f.contains(['+', '#']))
            .collect();
        Self {
            engine,
            thing,
            subscriptions,
            wildcard,
            work,
            running: BTreeMap::new(),
            tick_at: None,
            completed: Vec::new(),
            journal: Vec::new(),
        }
    }

    pub fn thing(&self) -> &str {
        &self.thing
    }

    pub fn subscriptions(&self) -> &[String] {
        &self.subscriptions
    }

    /// Jobs whose work ran to the end on this device.
    pub fn completed(&self) -> &[(String, i64)] {
        &self.completed
    }

    /// What the shell journaled, in order.
    pub fn journal(&self) -> &[Record] {
        &self.journal
    }

    /// Whether the engine has nothing in flight and nothing scheduled.
    pub fn idle(&self) -> bool {
        self.engine.next_deadline().is_none() && self.running.is_empty()
    }

    /// Whether a message on `topic` reaches this component (one of its filters matches).
    pub fn wants(&self, topic: &str) -> bool {
        // Most filters are exact topics: comparing bytes is far cheaper than matching levels.
        self.subscriptions
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

    pub fn start(&mut self, now: u64) -> Vec<DeviceAction> {
        let actions = self.engine.handle(now, Input::Started);
        self.carry(actions)
    }

    pub fn message(&mut self, now: u64, topic: &str, payload: &[u8]) -> Vec<DeviceAction> {
        let actions = self.engine.handle(now, Input::Message { topic, payload });
        self.carry(actions)
    }

    pub fn work_done(
        &mut self,
        now: u64,
        job_id: &str,
        execution_number: i64,
    ) -> Vec<DeviceAction> {
        let Some(cancelled) = self.running.remove(&(job_id.to_owned(), execution_number)) else {
            return Vec::new();
        };
        if cancelled {
            return Vec::new();
        }
        self.completed.push((job_id.to_owned(), execution_number));
        let mut status_details = StatusDetails::new();
        status_details.insert("result".into(), "done".into());
        let outcome = JobOutcome {
            status: self.work.status,
            status_details,
        };
        let actions = self.engine.handle(
            now,
            Input::JobFinished {
                job_id,
                execution_number,
                outcome,
            },
        );
        self.carry(actions)
    }

    /// Whether a queued wake-up at `now` is still the one the engine wants.
    pub fn tick_due(&mut self, now: u64) -> bool {
        if self.tick_at == Some(now) {
            self.tick_at = None;
            return true;
        }
        false
    }

    pub fn tick(&mut self, now: u64) -> Vec<DeviceAction> {
        let actions = self.engine.handle(now, Input::Tick);
        self.carry(actions)
    }

    /// A new wake-up to queue, if the engine's deadline moved.
    pub fn arm_tick(&mut self) -> Option<u64> {
        let deadline = self.engine.next_deadline()?;
        if self.tick_at.is_some_and(|t| t <= deadline) {
            return None;
        }
        self.tick_at = Some(deadline);
        Some(deadline)
    }

    fn carry(&mut self, actions: Vec<Action>) -> Vec<DeviceAction> {
        let mut out = Vec::new();
        for action in actions {
            match action {
                Action::Publish { topic, payload } => {
                    out.push(DeviceAction::Publish { topic, payload });
                }
                Action::Run(run) => {
                    self.running
                        .insert((run.job_id.clone(), run.execution_number), false);
                    out.push(DeviceAction::Work {
                        job_id: run.job_id,
                        execution_number: run.execution_number,
                        duration_ms: self.work.duration_ms,
                    });
                }
                Action::Cancel {
                    job_id,
                    execution_number,
                    ..
                } => {
                    if let Some(c) = self.running.get_mut(&(job_id, execution_number)) {
                        *c = true;
                    }
                }
                Action::Forget { .. } => {}
                // The world keeps a device's subscriptions for its whole life.
                Action::Subscribe { .. } | Action::Resubscribe | Action::Exit { .. } => {}
                // The shell writes these to its journal before it sends what follows.
                Action::Record(record) => self.journal.push(record),
            }
        }
        out
    }
}
