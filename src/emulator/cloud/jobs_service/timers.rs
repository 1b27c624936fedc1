//! Step and in-progress timeouts, and job timers (rollout releases, scheduled starts and
//! ends).
//!
//! Owns: when the next timer falls due and firing due timers in a defined order (deadline;
//! at equal deadlines execution timers first, in creation order of the execution, then job
//! timers by jobId): a timed-out execution goes TIMED_OUT, may be retried, and its thing is
//! notified; a job timer starts a scheduled job, acts on its end time, or releases the next
//! things of its rollout. Each job has at most one entry in the job-timer index, refiled by
//! [`JobsService::reschedule_job`] whenever what it waits for changes. Must not know: clocks
//! (time is passed in) or what drives the ticks.

use super::{JobState, JobsService, Output};
use crate::jobs::messages::JobStatus;

impl JobsService {
    /// The earliest step, in-progress or job deadline (epoch ms).
    pub fn next_deadline(&self) -> Option<u64> {
        let job = self.job_timers.first().map(|(at, _)| *at);
        match (self.executions.next_deadline(), job) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires every timer due at or before `now_ms`, earliest first. Each costs O(log n).
    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        loop {
            let execution = self
                .executions
                .first_due(now_ms)
                .and_then(|id| self.executions.get(id).map(|e| (id, e.deadline())));
            let job = self
                .job_timers
                .first()
                .filter(|(at, _)| *at <= now_ms)
                .cloned();
            match (execution, job) {
                (Some((id, at)), Some((job_at, _))) if at.unwrap_or(0) <= job_at => {
                    if !self.time_out(id, now_ms, &mut out) {
                        break;
                    }
                }
                (Some((id, _)), None) => {
                    if !self.time_out(id, now_ms, &mut out) {
                        break;
                    }
                }
                (_, Some((at, job_id))) => {
                    out.extend(self.fire_job_timer(&job_id, at, now_ms));
                    if self.job_timer_at.get(&job_id) == Some(&at) {
                        tracing::error!(job_id, "job timer did not move; dropped");
                        self.job_timers.remove(&(at, job_id.clone()));
                        self.job_timer_at.remove(&job_id);
                    }
                }
                (None, None) => break,
            }
        }
        out
    }

    /// Times out execution `id`; false when the index is out of step (stop ticking).
    fn time_out(&mut self, id: super::ExecId, now_ms: u64, out: &mut Vec<Output>) -> bool {
        let Some((thing, job_id)) = self
            .executions
            .get(id)
            .map(|e| (e.thing_name.clone(), e.job_id.clone()))
        else {
            return false;
        };
        tracing::info!(job_id = %job_id, thing = %thing, "execution timed out");
        let before = self.snapshot(&thing);
        self.end_execution(id, JobStatus::TimedOut, None, now_ms);
        out.extend(self.notifications(&thing, before, now_ms));
        if self.executions.first_due(now_ms) == Some(id) {
            // Ending an execution clears its timers; a deadline that stays is a broken
            // index, and firing it again would never end.
            tracing::error!(job_id = %job_id, thing = %thing, "timer index out of step");
            return false;
        }
        true
    }

    fn fire_job_timer(&mut self, job_id: &str, _at: u64, now_ms: u64) -> Vec<Output> {
        let Some(job) = self.jobs.get(job_id) else {
            self.reschedule_job(job_id);
            return Vec::new();
        };
        let schedule = job.scheduling.as_ref();
        let start = schedule.and_then(|s| s.start_ms());
        let end = schedule.and_then(|s| s.end_ms());
        let ended = self.rollouts.get(job_id).is_some_and(|r| r.ended);
        let mut out = Vec::new();
        if job.state == JobState::Scheduled && start.is_some_and(|s| s <= now_ms) {
            out.extend(self.start_scheduled_job(job_id, now_ms));
        }
        if !ended && end.is_some_and(|e| e <= now_ms) {
            out.extend(self.end_scheduled_job(job_id, now_ms));
        }
        out.extend(self.release_due(job_id, now_ms));
        self.reschedule_job(job_id);
        out
    }

    /// Files `job_id`'s next timer: its start while SCHEDULED; while IN_PROGRESS the earlier
    /// of its end time (until acted on) and its next rollout release. None otherwise.
    pub(super) fn reschedule_job(&mut self, job_id: &str) {
        if let Some(at) = self.job_timer_at.remove(job_id) {
            self.job_timers.remove(&(at, job_id.to_owned()));
        }
        let Some(job) = self.jobs.get(job_id) else {
            return;
        };
        let schedule = job.scheduling.as_ref();
        let next = match job.state {
            JobState::Scheduled => schedule.and_then(|s| s.start_ms()),
            JobState::InProgress => {
                let ended = self.rollouts.get(job_id).is_none_or(|r| r.ended);
                let end = schedule.and_then(|s| s.end_ms()).filter(|_| !ended);
                match (end, self.release_slot(job_id)) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            JobState::Canceled | JobState::Completed => None,
        };
        if let Some(at) = next {
            self.job_timers.insert((at, job_id.to_owned()));
            self.job_timer_at.insert(job_id.to_owned(), at);
        }
    }
}
