//! The execution state machine: queueing, starting, status changes, ending, retries, and a
//! job's completion.
//!
//! Owns: what each transition does to an execution (status, version, timestamps, statusDetails,
//! timers) and to its job (COMPLETED once nothing is pending or waiting for the rollout), when
//! a FAILED or TIMED_OUT execution is queued again, and the hooks every transition feeds (status
//! counts, events, the abort check, the exponential rollout rate). Must not know: who asked for the change (device, operator or
//! timer), wire formats, or notifications.

use super::store::ExecId;
use super::{JobState, JobsService, MAX_RETRIES};
use crate::jobs::messages::{JobStatus, StatusDetails};

/// The minutes of a `stepTimeoutInMinutes` to milliseconds.
const MINUTE_MS: u64 = 60_000;

impl JobsService {
    /// Queues a new execution of `job_id` on `thing` (the next execution number).
    pub(super) fn queue_execution(
        &mut self,
        job_id: &str,
        thing: &str,
        retry_attempt: u32,
        now_ms: u64,
    ) -> ExecId {
        self.recount(job_id, None, Some(JobStatus::Queued));
        self.executions.insert(job_id, thing, retry_attempt, now_ms)
    }

    /// QUEUED → IN_PROGRESS: `startedAt`, the job's in-progress timer and the step timer.
    pub(super) fn start_execution(
        &mut self,
        id: ExecId,
        details: Option<StatusDetails>,
        step_minutes: Option<i64>,
        now_ms: u64,
    ) {
        let in_progress_minutes = self
            .executions
            .get(id)
            .and_then(|e| self.jobs.get(&e.job_id))
            .and_then(|j| j.in_progress_timeout_minutes);
        if let Some((job_id, from)) = self
            .executions
            .get(id)
            .map(|e| (e.job_id.clone(), e.status))
        {
            self.recount(&job_id, Some(from), Some(JobStatus::InProgress));
        }
        self.executions.modify(id, |e| {
            e.status = JobStatus::InProgress;
            e.started_at_ms = Some(now_ms);
            e.version_number += 1;
            e.last_updated_at_ms = now_ms;
            if let Some(d) = details {
                e.status_details = d;
            }
            e.in_progress_deadline_ms =
                in_progress_minutes.map(|m| now_ms + m.unsigned_abs() * MINUTE_MS);
            apply_step_timeout(&mut e.step_deadline_ms, step_minutes, now_ms);
        });
    }

    /// A device's update of a pending execution to `status` (IN_PROGRESS again, or a terminal
    /// status): details replaced when given, the step timer re-armed or cleared.
    pub(super) fn report_status(
        &mut self,
        id: ExecId,
        status: JobStatus,
        details: Option<StatusDetails>,
        step_minutes: Option<i64>,
        now_ms: u64,
    ) {
        let Some((current, job_id)) = self
            .executions
            .get(id)
            .map(|e| (e.status, e.job_id.clone()))
        else {
            return;
        };
        if status == JobStatus::InProgress && current == JobStatus::Queued {
            self.start_execution(id, details, step_minutes, now_ms);
            return;
        }
        self.recount(&job_id, Some(current), Some(status));
        self.executions.modify(id, |e| {
            e.status = status;
            e.version_number += 1;
            e.last_updated_at_ms = now_ms;
            if let Some(d) = details {
                e.status_details = d;
            }
            if status.is_terminal() {
                e.step_deadline_ms = None;
                e.in_progress_deadline_ms = None;
            } else {
                apply_step_timeout(&mut e.step_deadline_ms, step_minutes, now_ms);
            }
        });
        if status.is_terminal() {
            self.after_end(id, now_ms);
        }
    }

    /// Ends a pending execution from the service's side (CANCELED, REMOVED, TIMED_OUT), with
    /// an optional `reasonCode`.
    pub(super) fn end_execution(
        &mut self,
        id: ExecId,
        status: JobStatus,
        reason: Option<&str>,
        now_ms: u64,
    ) {
        if let Some((job_id, from)) = self
            .executions
            .get(id)
            .map(|e| (e.job_id.clone(), e.status))
        {
            self.recount(&job_id, Some(from), Some(status));
        }
        self.executions.modify(id, |e| {
            e.status = status;
            e.version_number += 1;
            e.last_updated_at_ms = now_ms;
            e.step_deadline_ms = None;
            e.in_progress_deadline_ms = None;
            if let Some(r) = reason {
                e.status_details.insert("reasonCode".into(), r.to_owned());
            }
        });
        self.after_end(id, now_ms);
    }

    /// The execution's event, the abort check, a retry when the job's configuration allows
    /// one, the exponential rate, then the job's completion.
    fn after_end(&mut self, id: ExecId, now_ms: u64) {
        let Some((job_id, status)) = self
            .executions
            .get(id)
            .map(|e| (e.job_id.clone(), e.status))
        else {
            return;
        };
        self.execution_event(id, false, now_ms);
        if matches!(
            status,
            JobStatus::Failed | JobStatus::Rejected | JobStatus::TimedOut
        ) {
            self.check_abort(&job_id, now_ms);
        }
        if status == JobStatus::Succeeded {
            self.rollout_on_success(&job_id);
        }
        self.maybe_retry(id, now_ms);
        self.complete_job_if_done(&job_id, now_ms);
    }

    /// Queues the job again (executionNumber + 1) when its retry configuration allows it.
    fn maybe_retry(&mut self, id: ExecId, now_ms: u64) {
        let Some(ended) = self.executions.get(id) else {
            return;
        };
        let Some(retry) = self
            .jobs
            .get(&ended.job_id)
            .filter(|j| j.state == JobState::InProgress)
            .map(|j| j.retry)
        else {
            return;
        };
        let attempts = |status: JobStatus| {
            self.executions
                .of_job_on_thing(&ended.thing_name, &ended.job_id)
                .filter(|e| e.status == status)
                .count() as u32
        };
        let allowed = match ended.status {
            JobStatus::Failed => attempts(JobStatus::Failed) <= retry.failed,
            JobStatus::TimedOut => attempts(JobStatus::TimedOut) <= retry.timed_out,
            _ => false,
        };
        let attempt = ended.retry_attempt + 1;
        if !allowed || attempt > MAX_RETRIES {
            return;
        }
        let (job_id, thing) = (ended.job_id.clone(), ended.thing_name.clone());
        let next = self.queue_execution(&job_id, &thing, attempt, now_ms);
        tracing::info!(
            job_id,
            thing,
            execution_number = self.executions.get(next).map(|e| e.execution_number),
            attempt,
            "execution queued again (retry)"
        );
    }

    /// A snapshot job whose executions are all terminal, with no thing still waiting for
    /// the rollout, is COMPLETED. A continuous job stays IN_PROGRESS: things may still join
    /// its groups.
    pub(super) fn complete_job_if_done(&mut self, job_id: &str, now_ms: u64) {
        let done = self.executions.pending_of_job(job_id) == 0 && self.rollout_waiting(job_id) == 0;
        let Some(job) = self
            .jobs
            .get_mut(job_id)
            .filter(|j| j.state == JobState::InProgress && !j.continuous && done)
        else {
            return;
        };
        job.state = JobState::Completed;
        job.last_updated_at_ms = now_ms;
        job.completed_at_ms = Some(now_ms);
        tracing::info!(job_id, "job completed");
        self.job_event(job_id, "completed", now_ms);
        self.reschedule_job(job_id);
    }
}

/// `stepTimeoutInMinutes`: a positive value (re)arms the step timer from now, −1 clears it,
/// nothing leaves it as it is.
fn apply_step_timeout(deadline: &mut Option<u64>, step_minutes: Option<i64>, now_ms: u64) {
    match step_minutes {
        Some(-1) => *deadline = None,
        Some(m) if m > 0 => *deadline = Some(now_ms + m.unsigned_abs() * MINUTE_MS),
        _ => {}
    }
}
