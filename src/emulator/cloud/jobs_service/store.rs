//! The store of job executions and the indexes that keep every lookup O(log n).
//!
//! Owns: every execution, keyed by an [`ExecId`] given in creation order; per thing its history
//! (creation order), its executions by job and execution number, and its pending queue
//! (IN_PROGRESS by queue time, then QUEUED in creation order) with a counter that moves
//! whenever the set of pending executions changes; per job its executions and how many are
//! pending; and one deadline index over step and in-progress timers, ordered by (deadline,
//! [`ExecId`]). Every change to an execution goes through [`Store::modify`], which keeps the
//! indexes true. Must not know: the Jobs rules (who may change what, notifications, retries),
//! jobs' documents, wire formats or time sources.

use crate::emulator::lookup::LookupMap;
use crate::jobs::messages::{JobStatus, StatusDetails};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// Identity of an execution inside the service: unique, never reused, increasing in creation
/// order (so it also breaks ties between equal deadlines and queue times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExecId(pub u64);

/// One execution of a job on a thing.
#[derive(Debug, Clone)]
pub struct Execution {
    pub job_id: String,
    pub thing_name: String,
    pub execution_number: i64,
    pub status: JobStatus,
    pub status_details: StatusDetails,
    pub queued_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub last_updated_at_ms: u64,
    pub version_number: i64,
    /// 0 for the first execution, n for the n-th retry.
    pub retry_attempt: u32,
    pub(super) id: ExecId,
    pub(super) step_deadline_ms: Option<u64>,
    pub(super) in_progress_deadline_ms: Option<u64>,
}

impl Execution {
    /// The earlier of the step and in-progress deadlines.
    pub fn deadline(&self) -> Option<u64> {
        match (self.step_deadline_ms, self.in_progress_deadline_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The position used in paging tokens of execution lists.
    pub fn id(&self) -> ExecId {
        self.id
    }
}

#[derive(Debug, Default)]
struct ThingIndex {
    history: BTreeSet<ExecId>,
    by_job: BTreeMap<String, BTreeMap<i64, ExecId>>,
    in_progress: BTreeSet<(u64, ExecId)>,
    queued: BTreeSet<ExecId>,
    /// Moves whenever an execution enters or leaves the pending set.
    pending_changes: u64,
}

#[derive(Debug, Default)]
struct JobIndex {
    executions: BTreeSet<ExecId>,
    pending: usize,
}

/// What of an execution the indexes depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    status: JobStatus,
    queued_at_ms: u64,
    deadline: Option<u64>,
}

impl Slot {
    fn of(e: &Execution) -> Self {
        Self {
            status: e.status,
            queued_at_ms: e.queued_at_ms,
            deadline: e.deadline(),
        }
    }

    fn pending(self) -> bool {
        !self.status.is_terminal()
    }

    fn unindex(
        self,
        id: ExecId,
        thing: Option<&mut ThingIndex>,
        job: Option<&mut JobIndex>,
        deadlines: &mut BTreeSet<(u64, ExecId)>,
    ) {
        if let Some(t) = thing {
            match self.status {
                JobStatus::InProgress => {
                    t.in_progress.remove(&(self.queued_at_ms, id));
                }
                JobStatus::Queued => {
                    t.queued.remove(&id);
                }
                _ => {}
            }
        }
        if let Some(j) = job.filter(|_| self.pending()) {
            j.pending = j.pending.saturating_sub(1);
        }
        if let Some(d) = self.deadline {
            deadlines.remove(&(d, id));
        }
    }

    fn index(
        self,
        id: ExecId,
        thing: Option<&mut ThingIndex>,
        job: Option<&mut JobIndex>,
        deadlines: &mut BTreeSet<(u64, ExecId)>,
    ) {
        if let Some(t) = thing {
            match self.status {
                JobStatus::InProgress => {
                    t.in_progress.insert((self.queued_at_ms, id));
                }
                JobStatus::Queued => {
                    t.queued.insert(id);
                }
                _ => {}
            }
        }
        if let Some(j) = job.filter(|_| self.pending()) {
            j.pending += 1;
        }
        if let Some(d) = self.deadline {
            deadlines.insert((d, id));
        }
    }
}

/// The executions and their indexes.
///
/// Call contract: executions are created by [`Store::insert`], changed only through
/// [`Store::modify`] and dropped by [`Store::remove`]; reads never change anything.
#[derive(Debug, Default)]
pub struct Store {
    next_id: u64,
    all: BTreeMap<ExecId, Execution>,
    /// Per thing (looked up only, never iterated).
    things: LookupMap<String, ThingIndex>,
    jobs: BTreeMap<String, JobIndex>,
    deadlines: BTreeSet<(u64, ExecId)>,
}

impl Store {
    /// Queues a new execution of `job_id` on `thing` under the next execution number.
    pub fn insert(&mut self, job_id: &str, thing: &str, retry_attempt: u32, now_ms: u64) -> ExecId {
        self.next_id += 1;
        let id = ExecId(self.next_id);
        let index = self.things.entry(thing.to_owned()).or_default();
        let numbers = index.by_job.entry(job_id.to_owned()).or_default();
        let execution_number = numbers.last_key_value().map_or(0, |(n, _)| *n) + 1;
        numbers.insert(execution_number, id);
        index.history.insert(id);
        let execution = Execution {
            job_id: job_id.to_owned(),
            thing_name: thing.to_owned(),
            execution_number,
            status: JobStatus::Queued,
            status_details: StatusDetails::new(),
            queued_at_ms: now_ms,
            started_at_ms: None,
            last_updated_at_ms: now_ms,
            version_number: 1,
            retry_attempt,
            id,
            step_deadline_ms: None,
            in_progress_deadline_ms: None,
        };
        self.jobs
            .entry(job_id.to_owned())
            .or_default()
            .executions
            .insert(id);
        Slot::of(&execution).index(
            id,
            self.things.get_mut(thing),
            self.jobs.get_mut(job_id),
            &mut self.deadlines,
        );
        if let Some(t) = self.things.get_mut(thing) {
            t.pending_changes += 1;
        }
        self.all.insert(id, execution);
        id
    }

    pub fn get(&self, id: ExecId) -> Option<&Execution> {
        self.all.get(&id)
    }

    /// Changes one execution and brings the indexes up to date. `f` must not change the
    /// execution's job, thing or execution number.
    pub fn modify<R>(&mut self, id: ExecId, f: impl FnOnce(&mut Execution) -> R) -> Option<R> {
        let e = self.all.get_mut(&id)?;
        let before = Slot::of(e);
        let result = f(e);
        let after = Slot::of(e);
        if before != after {
            let (thing, job) = (
                self.things.get_mut(&e.thing_name),
                self.jobs.get_mut(&e.job_id),
            );
            before.unindex(id, thing, job, &mut self.deadlines);
            let (thing, job) = (
                self.things.get_mut(&e.thing_name),
                self.jobs.get_mut(&e.job_id),
            );
            after.index(id, thing, job, &mut self.deadlines);
            if before.pending() != after.pending() {
                if let Some(t) = self.things.get_mut(&e.thing_name) {
                    t.pending_changes += 1;
                }
            }
        }
        Some(result)
    }

    /// Drops an execution from the store and every index.
    pub fn remove(&mut self, id: ExecId) -> Option<Execution> {
        let e = self.all.remove(&id)?;
        let slot = Slot::of(&e);
        slot.unindex(
            id,
            self.things.get_mut(&e.thing_name),
            self.jobs.get_mut(&e.job_id),
            &mut self.deadlines,
        );
        if let Some(t) = self.things.get_mut(&e.thing_name) {
            if slot.pending() {
                t.pending_changes += 1;
            }
            t.history.remove(&id);
            if let Some(numbers) = t.by_job.get_mut(&e.job_id) {
                numbers.remove(&e.execution_number);
                if numbers.is_empty() {
                    t.by_job.remove(&e.job_id);
                }
            }
        }
        if let Some(j) = self.jobs.get_mut(&e.job_id) {
            j.executions.remove(&id);
            if j.executions.is_empty() {
                self.jobs.remove(&e.job_id);
            }
        }
        Some(e)
    }

    /// The execution of `job_id` on `thing` with `execution_number`, or the latest one.
    pub fn find(&self, thing: &str, job_id: &str, execution_number: Option<i64>) -> Option<ExecId> {
        let numbers = self.things.get(thing)?.by_job.get(job_id)?;
        match execution_number {
            Some(n) => numbers.get(&n).copied(),
            None => numbers.last_key_value().map(|(_, id)| *id),
        }
    }

    /// Executions of `job_id` on `thing`, by execution number.
    pub fn of_job_on_thing<'a>(
        &'a self,
        thing: &str,
        job_id: &str,
    ) -> impl Iterator<Item = &'a Execution> + 'a {
        self.things
            .get(thing)
            .and_then(|t| t.by_job.get(job_id))
            .into_iter()
            .flat_map(|numbers| numbers.values())
            .filter_map(|id| self.all.get(id))
    }

    /// The head of `thing`'s queue: IN_PROGRESS first (by queue time), then QUEUED in
    /// creation order.
    pub fn head(&self, thing: &str) -> Option<ExecId> {
        let t = self.things.get(thing)?;
        t.in_progress
            .first()
            .map(|(_, id)| *id)
            .or_else(|| t.queued.first().copied())
    }

    /// IN_PROGRESS executions of `thing`, by queue time.
    pub fn in_progress<'a>(&'a self, thing: &str) -> impl Iterator<Item = &'a Execution> + 'a {
        self.things
            .get(thing)
            .into_iter()
            .flat_map(|t| t.in_progress.iter())
            .filter_map(|(_, id)| self.all.get(id))
    }

    /// QUEUED executions of `thing`, in creation order.
    pub fn queued<'a>(&'a self, thing: &str) -> impl Iterator<Item = &'a Execution> + 'a {
        self.things
            .get(thing)
            .into_iter()
            .flat_map(|t| t.queued.iter())
            .filter_map(|id| self.all.get(id))
    }

    /// A counter that moves whenever `thing`'s set of pending executions changes.
    pub fn pending_changes(&self, thing: &str) -> u64 {
        self.things.get(thing).map_or(0, |t| t.pending_changes)
    }

    /// Every execution of `thing` in creation order, from just after `after`.
    pub fn of_thing<'a>(
        &'a self,
        thing: &str,
        after: Option<ExecId>,
    ) -> impl Iterator<Item = &'a Execution> + 'a {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.things
            .get(thing)
            .into_iter()
            .flat_map(move |t| t.history.range((start, Bound::Unbounded)))
            .filter_map(|id| self.all.get(id))
    }

    /// Every execution of `job_id` in creation order, from just after `after`.
    pub fn of_job<'a>(
        &'a self,
        job_id: &str,
        after: Option<ExecId>,
    ) -> impl Iterator<Item = &'a Execution> + 'a {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.jobs
            .get(job_id)
            .into_iter()
            .flat_map(move |j| j.executions.range((start, Bound::Unbounded)))
            .filter_map(|id| self.all.get(id))
    }

    /// How many executions of `job_id` are QUEUED or IN_PROGRESS.
    pub fn pending_of_job(&self, job_id: &str) -> usize {
        self.jobs.get(job_id).map_or(0, |j| j.pending)
    }

    /// The earliest step or in-progress deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// The first execution (by deadline, then [`ExecId`]) whose deadline is at or before
    /// `now_ms`.
    pub fn first_due(&self, now_ms: u64) -> Option<ExecId> {
        self.deadlines
            .first()
            .filter(|(d, _)| *d <= now_ms)
            .map(|(_, id)| *id)
    }

    /// How many executions are stored.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}
