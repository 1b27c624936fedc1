//! The rejection reconciliation table: what each rejection code means for each request.
//!
//! Owns: deciding, from a `*/rejected` answer and the execution state it carries, whether a
//! request is retried, resent, settled or dropped, and whether the cloud has ended a job.
//! Must not know: topics, tokens or the wire format of requests.

use super::query::QueryState;
use super::recovery::holds_start;
use super::requests::{InFlight, Request};
use super::{Action, Engine};
use crate::jobs::job::Millis;
use crate::jobs::messages::*;

impl Engine {
    pub(super) fn on_rejected(
        &mut self,
        now: Millis,
        flight: InFlight,
        rejected: Rejected,
        out: &mut Vec<Action>,
    ) {
        let code = rejected.code.clone();
        let message = rejected.message.clone().unwrap_or_default();
        let retryable = matches!(code, ErrorCode::RequestThrottled | ErrorCode::InternalError);
        if retryable {
            tracing::warn!(request = flight.request.label(), ?code, %message, "request refused for now; backing off");
            self.retry_throttled(now, flight.request, flight.attempt);
            return;
        }
        match flight.request {
            Request::GetPending => {
                tracing::error!(?code, %message, "GetPendingJobExecutions rejected; retrying later");
                self.retry_later(now, Request::GetPending, flight.attempt);
            }
            Request::Describe { job_id } | Request::SizeProbe { job_id } => {
                tracing::info!(job_id = %job_id, ?code, "candidate cannot be described; skipping it");
                if matches!(
                    code,
                    ErrorCode::TerminalStateReached | ErrorCode::ResourceNotFound
                ) {
                    // A start of ours that lost to a cancel or delete: its journal entry can go.
                    self.earlier_starts.remove(&job_id);
                    if let Some((_, execution_number)) = self.unconfirmed_starts.remove(&job_id) {
                        self.start_tokens.retain(|_, j| *j != job_id);
                        out.push(Action::Forget {
                            job_id: job_id.clone(),
                            execution_number,
                        });
                    }
                    // The journal's entries of this job from an earlier run: the cloud ended
                    // the job (the latest execution, so every earlier one too), and a pending
                    // list that still named it was older than this answer.
                    self.settle_recovered_job(&job_id, out);
                }
                self.next_candidate(now, out);
            }
            Request::Progress { job_id, .. } => match (&code, rejected.execution_state.clone()) {
                (ErrorCode::VersionMismatch, Some(state)) if !state.status.is_terminal() => {
                    if let Some(a) = self.active_mut(&job_id) {
                        a.version = state.version_number;
                    }
                    self.send_pending_progress(now, &job_id, out);
                }
                (
                    ErrorCode::VersionMismatch
                    | ErrorCode::InvalidStateTransition
                    | ErrorCode::TerminalStateReached,
                    state,
                ) => {
                    let was = state.map_or("terminal".to_owned(), |s| s.status.to_string());
                    self.cloud_ended_active(
                        now,
                        &job_id,
                        &format!("the job is {was} in the cloud"),
                        out,
                    )
                }
                (ErrorCode::ResourceNotFound, _) => self.cloud_ended_active(
                    now,
                    &job_id,
                    "the job no longer exists in the cloud",
                    out,
                ),
                _ => tracing::debug!(job_id = %job_id, ?code, "progress report refused"),
            },
            Request::CheckActive { job_id } => match code {
                ErrorCode::ResourceNotFound => {
                    self.cloud_ended_active(now, &job_id, "the job was deleted in the cloud", out)
                }
                ErrorCode::TerminalStateReached => self.cloud_ended_active(
                    now,
                    &job_id,
                    "the job reached a terminal state in the cloud",
                    out,
                ),
                _ => {
                    tracing::warn!(job_id = %job_id, ?code, %message, "could not check the running job")
                }
            },
            Request::Start {
                job_id,
                execution_number,
                document,
                marker,
                ..
            } => match code {
                ErrorCode::VersionMismatch => {
                    let state = rejected.execution_state.clone();
                    let earlier = self.earlier_starts.get(&job_id).cloned();
                    if let Some(s) = state.filter(|s| {
                        holds_start(s.status, s.status_details.as_ref(), &marker)
                            || earlier.as_deref().is_some_and(|m| {
                                holds_start(s.status, s.status_details.as_ref(), m)
                            })
                    }) {
                        // An earlier attempt of this start went through (its answer was lost).
                        tracing::info!(job_id = %job_id, "the cloud holds our start; the job is started");
                        return self.started(
                            &job_id,
                            execution_number,
                            s.version_number,
                            *document,
                            out,
                        );
                    }
                    // Someone changed the execution since we read it: read it again. The
                    // re-read may still show our start (an attempt whose answer was lost).
                    tracing::info!(job_id = %job_id, "version changed before start; re-reading the execution");
                    self.take_active(&job_id);
                    // Lists seen while this start was under way were dropped (no capacity):
                    // once the re-read is done, look again.
                    self.requery = true;
                    self.unconfirmed_starts
                        .insert(job_id.clone(), (marker, execution_number));
                    self.candidates.push_front(job_id);
                    self.query = QueryState::Running;
                    self.next_candidate(now, out);
                }
                _ => {
                    tracing::warn!(job_id = %job_id, execution_number, ?code, %message, "job could not be started; looking for others");
                    self.take_active(&job_id);
                    self.requery = true;
                    self.start_tokens.retain(|_, j| *j != job_id);
                    out.push(Action::Forget {
                        job_id,
                        execution_number,
                    });
                    self.query = QueryState::Running;
                    self.next_candidate(now, out);
                }
            },
            Request::Finish {
                job_id,
                execution_number,
                outcome,
                details_rejected,
            } if self.is_active_execution(&job_id, execution_number) => {
                let state = rejected.execution_state.clone();
                match (&code, state) {
                    (ErrorCode::VersionMismatch, Some(s)) if s.status == outcome.status => {
                        self.finish_done(now, &job_id, "result already recorded", out)
                    }
                    (ErrorCode::VersionMismatch, Some(s)) if s.status.is_terminal() => self
                        .finish_done(
                            now,
                            &job_id,
                            &format!(
                                "the cloud already ended the job as {}; result discarded",
                                s.status
                            ),
                            out,
                        ),
                    (ErrorCode::VersionMismatch, Some(s)) if s.status == JobStatus::Queued => {
                        // Ours was IN_PROGRESS and never goes back to QUEUED: the service has
                        // a new execution under this number (a deleted one's number is reused).
                        self.finish_done(
                            now,
                            &job_id,
                            "the execution was replaced in the cloud; result discarded",
                            out,
                        )
                    }
                    (ErrorCode::VersionMismatch, Some(s)) => {
                        tracing::info!(job_id = %job_id, version = s.version_number, "version moved on; reporting the result again");
                        if let Some(a) = self.active_mut(&job_id) {
                            a.version = s.version_number;
                        }
                        let request = Request::Finish {
                            job_id,
                            execution_number,
                            outcome,
                            details_rejected,
                        };
                        self.send(now, request, flight.attempt + 1, out);
                    }
                    (
                        ErrorCode::InvalidStateTransition | ErrorCode::TerminalStateReached,
                        Some(s),
                    ) if s.status == outcome.status => {
                        // The first report went through; its acceptance was lost.
                        self.finish_done(now, &job_id, "result already recorded", out)
                    }
                    (ErrorCode::InvalidStateTransition | ErrorCode::TerminalStateReached, s) => {
                        let was = s.map_or("terminal".to_owned(), |s| s.status.to_string());
                        self.finish_done(
                            now,
                            &job_id,
                            &format!("the cloud already ended the job as {was}; result discarded"),
                            out,
                        )
                    }
                    (ErrorCode::ResourceNotFound, _) => self.finish_done(
                        now,
                        &job_id,
                        "the job was deleted in the cloud; result discarded",
                        out,
                    ),
                    (ErrorCode::InvalidRequest | ErrorCode::InvalidJson, _)
                        if !details_rejected =>
                    {
                        tracing::error!(job_id = %job_id, ?code, %message, "result rejected; reporting the status without its details");
                        let request = Request::Finish {
                            job_id,
                            execution_number,
                            outcome,
                            details_rejected: true,
                        };
                        self.send(now, request, 0, out);
                    }
                    _ => {
                        tracing::error!(job_id = %job_id, ?code, %message, "result rejected; retrying later");
                        let request = Request::Finish {
                            job_id,
                            execution_number,
                            outcome,
                            details_rejected,
                        };
                        self.retry_later(now, request, flight.attempt);
                    }
                }
            }
            Request::Finish {
                job_id,
                execution_number,
                ..
            } => {
                tracing::info!(job_id = %job_id, execution_number, ?code, "refused result of an execution no longer active dropped");
            }
        }
    }
}
