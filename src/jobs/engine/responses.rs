//! Incoming messages: the reconnect topic, the notifications, and the accepted answers to our
//! requests, each matched to its request by client token.
//!
//! Owns: routing a message by topic, telling our answers from other clients' (the nucleus uses
//! the same thing's jobs topics for deployments), and dispatching an accepted answer to the
//! concept it concerns. Must not know: the rejection table (that is [`super::rejections`]).

use super::requests::{InFlight, Request};
use super::{Action, Engine};
use crate::jobs::job::Millis;
use crate::jobs::messages::*;
use crate::jobs::topics::ResponseTopic;

/// Whether a describe answer carries the job's document (only a full describe asks for it).
fn carries_document(payload: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Execution {
        #[serde(rename = "jobDocument")]
        job_document: Option<serde::de::IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        execution: Option<Execution>,
    }
    serde_json::from_slice::<Answer>(payload)
        .ok()
        .and_then(|a| a.execution)
        .is_some_and(|e| e.job_document.is_some())
}

impl Engine {
    pub(super) fn on_message(
        &mut self,
        now: Millis,
        topic: &str,
        payload: &[u8],
        out: &mut Vec<Action>,
    ) {
        // Whatever it is, a message shows that the subscriptions work.
        self.heard(now);
        if topic == self.config.reconnect_topic {
            tracing::info!(%topic, "reconnect message: the connection came back, re-querying jobs");
            self.schedule_query(now, true);
            self.bring_retries_forward(now);
            return;
        }
        let Some(kind) = self.topics.parse(topic) else {
            tracing::debug!(%topic, "message on an unexpected topic ignored");
            return;
        };
        if kind == ResponseTopic::NotifyNext {
            return self.on_notify_next(now, payload, out);
        }
        if kind == ResponseTopic::Notify {
            return self.on_notify(now, payload);
        }
        let token = client_token_of(payload);
        if !self.owns_token(token.as_deref()) {
            // Responses to the nucleus (deployments) or other clients of this thing.
            tracing::debug!(%topic, "response to another client's request ignored");
            return;
        }
        let Some(token) = token else { return };
        let seq = self.token_seq(&token);
        if let (Some(seq), ResponseTopic::UpdateAccepted(job_id)) = (seq, &kind) {
            if !self.in_flight.contains_key(&seq)
                && self.late_start_accepted(now, seq, job_id, payload, out)
            {
                return;
            }
        }
        let Some(flight) = seq.and_then(|seq| self.in_flight.remove(&seq)) else {
            if let ResponseTopic::DescribeAccepted(job_id) = kind {
                if carries_document(payload) {
                    // A full description of this job did reach us, only late: it is not too
                    // large, and when the walk still waits on this job it is the answer.
                    self.description_arrived(job_id);
                    if let Some(flight) = self.take_walk_describe(job_id) {
                        tracing::debug!(%topic, client_token = %token, "late description taken as the answer the walk waits for");
                        return self.on_accepted(now, flight, payload, out);
                    }
                }
            }
            tracing::debug!(%topic, client_token = %token, "duplicate or late response ignored");
            return;
        };
        let accepted = matches!(
            kind,
            ResponseTopic::GetAccepted
                | ResponseTopic::StartNextAccepted
                | ResponseTopic::DescribeAccepted(_)
                | ResponseTopic::UpdateAccepted(_)
        );
        if accepted {
            self.throttle_level = self.throttle_level.saturating_sub(1);
            self.on_accepted(now, flight, payload, out);
        } else {
            match serde_json::from_slice::<Rejected>(payload) {
                Ok(rejected) => self.on_rejected(now, flight, rejected, out),
                Err(e) => {
                    tracing::error!(%topic, error = %e, "undecodable rejection; retrying the request");
                    self.retry_later(now, flight.request, flight.attempt);
                }
            }
        }
    }

    pub(super) fn on_accepted(
        &mut self,
        now: Millis,
        flight: InFlight,
        payload: &[u8],
        out: &mut Vec<Action>,
    ) {
        match flight.request {
            Request::GetPending => match serde_json::from_slice::<GetPendingAccepted>(payload) {
                Ok(list) => self.on_pending_list(now, list, out),
                Err(e) => {
                    tracing::error!(error = %e, "undecodable get/accepted; retrying");
                    self.retry_later(now, Request::GetPending, flight.attempt);
                }
            },
            Request::Describe { job_id } => {
                match serde_json::from_slice::<ExecutionResponse>(payload) {
                    Ok(r) => {
                        self.description_arrived(&job_id);
                        self.on_candidate(now, &job_id, r.execution, out)
                    }
                    Err(e) => self.on_undecodable_candidate(now, &job_id, payload, &e, out),
                }
            }
            Request::SizeProbe { job_id } => self.answer_too_large(now, &job_id, out),
            Request::Progress { job_id, .. } => {
                let state = serde_json::from_slice::<UpdateAccepted>(payload)
                    .ok()
                    .and_then(|u| u.execution_state);
                if let (Some(a), Some(state)) = (self.active_mut(&job_id), state) {
                    a.version = state.version_number;
                }
                self.send_pending_progress(now, &job_id, out);
            }
            Request::CheckActive { job_id } => {
                let execution = serde_json::from_slice::<ExecutionResponse>(payload)
                    .ok()
                    .and_then(|r| r.execution);
                match execution {
                    Some(e) if e.status.is_terminal() => self.cloud_ended_active(
                        now,
                        &job_id,
                        &format!("the job is {} in the cloud", e.status),
                        out,
                    ),
                    Some(e) => {
                        if let Some(a) = self.active_mut(&job_id) {
                            a.version = a.version.max(e.version_number);
                        }
                    }
                    None => self.cloud_ended_active(
                        now,
                        &job_id,
                        "the job no longer exists in the cloud",
                        out,
                    ),
                }
            }
            Request::Start {
                job_id,
                execution_number,
                version,
                document,
                ..
            } => {
                let state = serde_json::from_slice::<UpdateAccepted>(payload)
                    .ok()
                    .and_then(|u| u.execution_state);
                let version = state.map_or(version + 1, |s| s.version_number);
                self.started(&job_id, execution_number, version, *document, out);
            }
            Request::Finish {
                job_id,
                execution_number,
                outcome,
                ..
            } => {
                if !self.is_active_execution(&job_id, execution_number) {
                    tracing::info!(job_id = %job_id, execution_number, "result of an execution no longer active acknowledged");
                    return;
                }
                tracing::info!(job_id = %job_id, status = %outcome.status, "job result reported");
                if let Some(a) = self.take_active(&job_id) {
                    out.push(Action::Forget {
                        job_id: a.job_id,
                        execution_number: a.execution_number,
                    });
                }
                self.schedule_query(now, false);
            }
        }
    }
}
