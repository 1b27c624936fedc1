//! Active jobs: the executions this process is starting, running or reporting.
//!
//! Owns: a job's phase from the start request to its acknowledged result, progress reports
//! (one in flight per job), the result report, and stopping the work when the cloud has ended
//! the job. Must not know: how the work runs (the shell's executor) or the rejection table.

use super::requests::Request;
use super::{Action, Engine, Record};
use crate::jobs::document::JobDocument;
use crate::jobs::job::{JobOutcome, JobRun, Millis};
use crate::jobs::messages::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ActivePhase {
    Starting,
    Running,
    Finishing,
}

#[derive(Debug, Clone)]
pub(super) struct Active {
    pub(super) job_id: String,
    pub(super) execution_number: i64,
    pub(super) version: i64,
    pub(super) phase: ActivePhase,
    /// Progress to report once the update in flight is answered.
    pub(super) pending_progress: Option<StatusDetails>,
}

impl Active {
    /// Execution `e`, at the version it was seen at, entering `phase`.
    pub(super) fn of(e: &JobExecution, phase: ActivePhase) -> Self {
        Self {
            job_id: e.job_id.clone(),
            execution_number: e.execution_number,
            version: e.version_number,
            phase,
            pending_progress: None,
        }
    }
}

impl Engine {
    pub(super) fn at_capacity(&self) -> bool {
        self.active.len() >= self.config.max_concurrent_jobs.max(1)
    }

    pub(super) fn active_mut(&mut self, job_id: &str) -> Option<&mut Active> {
        self.active.iter_mut().find(|a| a.job_id == job_id)
    }

    pub(super) fn take_active(&mut self, job_id: &str) -> Option<Active> {
        let pos = self.active.iter().position(|a| a.job_id == job_id)?;
        Some(self.active.remove(pos))
    }

    /// Whether execution `execution_number` of `job_id` is the active one: an answer about an
    /// earlier execution of the same job (a retry, or a continuous job's new member) must not
    /// settle the one running now.
    pub(super) fn is_active_execution(&self, job_id: &str, execution_number: i64) -> bool {
        self.active
            .iter()
            .any(|a| a.job_id == job_id && a.execution_number == execution_number)
    }

    pub(super) fn is_active(&self, job_id: &str) -> bool {
        self.active.iter().any(|a| a.job_id == job_id)
    }

    /// The cloud holds our start: the work runs. Every other attempt of this start is dropped.
    pub(super) fn started(
        &mut self,
        job_id: &str,
        execution_number: i64,
        version: i64,
        document: JobDocument,
        out: &mut Vec<Action>,
    ) {
        self.in_flight
            .retain(|_, f| !matches!(&f.request, Request::Start { job_id: j, .. } if j == job_id));
        self.retries
            .retain(|r| !matches!(&r.request, Request::Start { job_id: j, .. } if j == job_id));
        self.start_tokens.retain(|_, j| j != job_id);
        self.unconfirmed_starts.remove(job_id);
        self.earlier_starts.remove(job_id);
        let Some(active) = self.active_mut(job_id) else {
            return;
        };
        active.version = version;
        active.phase = ActivePhase::Running;
        tracing::info!(job_id = %job_id, execution_number, work = %document.label(), "job started");
        out.push(Action::Run(JobRun {
            job_id: job_id.to_owned(),
            execution_number,
            version_number: version,
            document,
        }));
    }

    /// An `update/accepted` for an earlier attempt of a start still being tried: the start
    /// went through. Returns whether the message was that.
    pub(super) fn late_start_accepted(
        &mut self,
        _now: Millis,
        seq: u64,
        job_id: &str,
        payload: &[u8],
        out: &mut Vec<Action>,
    ) -> bool {
        if self.start_tokens.get(&seq).map(String::as_str) != Some(job_id) {
            return false;
        }
        let starting = self
            .active
            .iter()
            .any(|a| a.job_id == job_id && a.phase == ActivePhase::Starting);
        // The request being tried (in flight or waiting out a back-off) has what to run.
        let pending = self
            .in_flight
            .values()
            .map(|f| &f.request)
            .chain(self.retries.iter().map(|r| &r.request))
            .find_map(|r| match r {
                Request::Start {
                    job_id: j,
                    execution_number,
                    version,
                    document,
                    ..
                } if j == job_id => Some((*execution_number, *version, document.clone())),
                _ => None,
            });
        let (true, Some((execution_number, version, document))) = (starting, pending) else {
            return false;
        };
        tracing::info!(job_id = %job_id, "late acceptance of an earlier start attempt: the job is started");
        let state = serde_json::from_slice::<UpdateAccepted>(payload)
            .ok()
            .and_then(|u| u.execution_state);
        let version = state.map_or(version + 1, |s| s.version_number);
        self.started(job_id, execution_number, version, *document, out);
        true
    }

    pub(super) fn finish_done(
        &mut self,
        now: Millis,
        job_id: &str,
        note: &str,
        out: &mut Vec<Action>,
    ) {
        tracing::warn!(job_id = %job_id, "{note}");
        if let Some(a) = self.take_active(job_id) {
            out.push(Action::Forget {
                job_id: a.job_id,
                execution_number: a.execution_number,
            });
        }
        self.schedule_query(now, false);
    }

    pub(super) fn cloud_ended_active(
        &mut self,
        now: Millis,
        job_id: &str,
        reason: &str,
        out: &mut Vec<Action>,
    ) {
        let Some(active) = self.take_active(job_id) else {
            return;
        };
        tracing::warn!(job_id = %job_id, %reason, "stopping the job");
        out.push(Action::Forget {
            job_id: active.job_id.clone(),
            execution_number: active.execution_number,
        });
        if active.phase == ActivePhase::Running {
            out.push(Action::Cancel {
                job_id: active.job_id,
                execution_number: active.execution_number,
                reason: reason.to_owned(),
            });
        }
        // Nothing more is sent about this execution, whether under way or waiting to be retried.
        let about_it = |r: &Request| match r {
            Request::Finish { job_id: j, .. }
            | Request::Progress { job_id: j, .. }
            | Request::CheckActive { job_id: j } => j == job_id,
            _ => false,
        };
        self.in_flight.retain(|_, f| !about_it(&f.request));
        self.retries.retain(|r| !about_it(&r.request));
        self.schedule_query(now, false);
    }

    /// Reports a terminal status for a job that never ran here.
    pub(super) fn report_directly(
        &mut self,
        now: Millis,
        e: JobExecution,
        status: JobStatus,
        details: &[(&str, &str)],
        out: &mut Vec<Action>,
    ) {
        let outcome = JobOutcome {
            status,
            status_details: details
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        self.report_outcome(now, e, outcome, out);
    }

    pub(super) fn report_outcome(
        &mut self,
        now: Millis,
        e: JobExecution,
        outcome: JobOutcome,
        out: &mut Vec<Action>,
    ) {
        self.active.push(Active::of(&e, ActivePhase::Finishing));
        let request = Request::Finish {
            job_id: e.job_id,
            execution_number: e.execution_number,
            outcome,
            details_rejected: false,
        };
        self.send(now, request, 0, out);
    }

    /// A step started: report it unless a report for this job is already on its way (then the
    /// newest one goes once that is answered).
    pub(super) fn on_progress(
        &mut self,
        now: Millis,
        job_id: &str,
        execution_number: i64,
        details: StatusDetails,
        out: &mut Vec<Action>,
    ) {
        let in_flight = self
            .in_flight
            .values()
            .any(|f| matches!(&f.request, Request::Progress { job_id: j, .. } if j == job_id));
        let Some(active) = self.active.iter_mut().find(|a| {
            a.job_id == job_id
                && a.execution_number == execution_number
                && a.phase == ActivePhase::Running
        }) else {
            return;
        };
        if in_flight {
            active.pending_progress = Some(details);
            return;
        }
        let request = Request::Progress {
            job_id: job_id.to_owned(),
            details,
        };
        self.send(now, request, 0, out);
    }

    pub(super) fn send_pending_progress(
        &mut self,
        now: Millis,
        job_id: &str,
        out: &mut Vec<Action>,
    ) {
        let Some(details) = self
            .active
            .iter_mut()
            .find(|a| a.job_id == job_id && a.phase == ActivePhase::Running)
            .and_then(|a| a.pending_progress.take())
        else {
            return;
        };
        self.send(
            now,
            Request::Progress {
                job_id: job_id.to_owned(),
                details,
            },
            0,
            out,
        );
    }

    pub(super) fn on_job_finished(
        &mut self,
        now: Millis,
        job_id: &str,
        execution_number: i64,
        outcome: JobOutcome,
        out: &mut Vec<Action>,
    ) {
        let matches = self.active.iter().any(|a| {
            a.job_id == job_id
                && a.execution_number == execution_number
                && a.phase == ActivePhase::Running
        });
        if !matches {
            tracing::debug!(
                job_id,
                "finished job is no longer tracked (canceled); nothing to report"
            );
            return;
        }
        if let Some(a) = self.active_mut(job_id) {
            a.phase = ActivePhase::Finishing;
        }
        tracing::info!(job_id, status = %outcome.status, "job finished; reporting the result");
        out.push(Action::Record(Record::Finished {
            job_id: job_id.to_owned(),
            execution_number,
            outcome: outcome.clone(),
        }));
        let request = Request::Finish {
            job_id: job_id.to_owned(),
            execution_number,
            outcome,
            details_rejected: false,
        };
        self.send(now, request, 0, out);
    }
}
