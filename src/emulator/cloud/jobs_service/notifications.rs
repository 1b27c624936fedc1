//! `notify` and `notify-next`, and the wire views of an execution they share with responses.
//!
//! Owns: when each notification fires (the pending set changed → `notify`; the head of the
//! queue changed → `notify-next`) and building them, and every execution view as a
//! [`crate::jobs::messages`] type (JobExecution, JobExecutionSummary, JobExecutionState).
//! Must not know: requests, topics of responses, or how executions are stored beyond the
//! store's queries.

use super::store::{ExecId, Execution};
use super::Publication;
use super::{secs, JobsService, Output, MAX_LISTED};
use crate::jobs::messages::{
    JobExecution, JobExecutionState, JobExecutionSummary, Notify, NotifyNext, Timestamp,
};
use std::collections::BTreeMap;

/// What a thing's notifications depend on, taken before a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Snapshot {
    head: Option<ExecId>,
    pending_changes: u64,
}

fn seconds(ms: u64) -> Option<Timestamp> {
    Some(secs(ms) as Timestamp)
}

/// A JobExecutionSummary (no status, no document).
pub(super) fn summary(e: &Execution) -> JobExecutionSummary {
    JobExecutionSummary {
        job_id: e.job_id.clone(),
        queued_at: seconds(e.queued_at_ms),
        started_at: e.started_at_ms.and_then(seconds),
        last_updated_at: seconds(e.last_updated_at_ms),
        version_number: e.version_number,
        execution_number: e.execution_number,
    }
}

/// A JobExecutionState.
pub(super) fn execution_state(e: &Execution) -> JobExecutionState {
    JobExecutionState {
        status: e.status,
        status_details: (!e.status_details.is_empty()).then(|| e.status_details.clone()),
        version_number: e.version_number,
    }
}

impl JobsService {
    pub(super) fn snapshot(&self, thing: &str) -> Snapshot {
        Snapshot {
            head: self.executions.head(thing),
            pending_changes: self.executions.pending_changes(thing),
        }
    }

    /// A JobExecution, with the job document when `include_document`.
    pub(super) fn job_execution(
        &self,
        e: &Execution,
        include_document: bool,
        now_ms: u64,
    ) -> JobExecution {
        JobExecution {
            job_id: e.job_id.clone(),
            thing_name: Some(e.thing_name.clone()),
            job_document: include_document
                .then(|| {
                    self.jobs
                        .get(&e.job_id)
                        .map(|j| self.device_document(j, now_ms))
                })
                .flatten(),
            status: e.status,
            status_details: (!e.status_details.is_empty()).then(|| e.status_details.clone()),
            queued_at: seconds(e.queued_at_ms),
            started_at: e.started_at_ms.and_then(seconds),
            last_updated_at: seconds(e.last_updated_at_ms),
            approximate_seconds_before_timed_out: e
                .deadline()
                .map(|d| (d.saturating_sub(now_ms) / 1000) as i64),
            version_number: e.version_number,
            execution_number: e.execution_number,
        }
    }

    /// IN_PROGRESS and QUEUED summaries of `thing`, at most [`MAX_LISTED`] of each.
    pub(super) fn pending_summaries(
        &self,
        thing: &str,
    ) -> (Vec<JobExecutionSummary>, Vec<JobExecutionSummary>) {
        let in_progress = self
            .executions
            .in_progress(thing)
            .take(MAX_LISTED)
            .map(summary)
            .collect();
        let queued = self
            .executions
            .queued(thing)
            .take(MAX_LISTED)
            .map(summary)
            .collect();
        (in_progress, queued)
    }

    /// `notify` when the set of pending executions changed since `before`; `notify-next` when
    /// the head did.
    pub(super) fn notifications(&self, thing: &str, before: Snapshot, now_ms: u64) -> Vec<Output> {
        let after = self.snapshot(thing);
        let mut out = Vec::new();
        if before.pending_changes != after.pending_changes {
            let (in_progress, queued) = self.pending_summaries(thing);
            let mut jobs = BTreeMap::new();
            if !in_progress.is_empty() {
                jobs.insert("IN_PROGRESS".to_owned(), in_progress);
            }
            if !queued.is_empty() {
                jobs.insert("QUEUED".to_owned(), queued);
            }
            let notify = Notify {
                timestamp: seconds(now_ms),
                jobs,
            };
            out.push(publish(thing, "notify", &notify));
        }
        if before.head != after.head {
            let next = NotifyNext {
                execution: after
                    .head
                    .and_then(|id| self.executions.get(id))
                    .map(|e| self.job_execution(e, true, now_ms)),
                timestamp: seconds(now_ms),
                client_token: None,
            };
            out.push(publish(thing, "notify-next", &next));
        }
        out
    }
}

fn publish(thing: &str, name: &str, message: &impl serde::Serialize) -> Output {
    Output::Publish(Publication {
        topic: format!("$aws/things/{thing}/jobs/{name}"),
        payload: to_payload(message),
        qos: 1,
    })
}

/// Serializes a wire message. The message types hold only strings, numbers, maps and JSON
/// values, which always serialize; should one ever fail, the failure is logged and an empty
/// object is sent rather than panicking.
pub(super) fn to_payload(message: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(message).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a Jobs message could not be serialized");
        b"{}".to_vec()
    })
}
