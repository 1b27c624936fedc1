//! Request tracking: client tokens, what each request puts on the wire, the requests awaiting an
//! answer and their response timeouts, and the retries after a missing or refused answer.
//!
//! Owns: [`Request`], the in-flight table (ordered by the token's sequence number) and the
//! retry queue, the back-off rules. Must not know: what an answer means for a job (the
//! responses, rejections and active jobs do) or when to query.

use super::{ms, Engine};
use super::{Action, START_MARKER_KEY};
use crate::jobs::document::JobDocument;
use crate::jobs::job::{JobOutcome, Millis};
use crate::jobs::messages::*;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Request {
    GetPending,
    /// Describe a candidate while looking for a job to run.
    Describe {
        job_id: String,
    },
    /// Move our job to IN_PROGRESS; `marker` goes into the statusDetails.
    Start {
        job_id: String,
        execution_number: i64,
        version: i64,
        /// Boxed: a document is large and most requests carry none.
        document: Box<JobDocument>,
        marker: String,
    },
    /// Report a terminal status.
    Finish {
        job_id: String,
        execution_number: i64,
        outcome: JobOutcome,
        details_rejected: bool,
    },
    /// Check whether the running job still exists in the cloud.
    CheckActive {
        job_id: String,
    },
    /// Describe a candidate without its document, after its describe went unanswered
    /// [`super::EngineConfig::oversize_after`] times in a row: an answer shows that the link
    /// works, so the full answer may be too large to reach the core (see `oversize`).
    SizeProbe {
        job_id: String,
    },
    /// IN_PROGRESS with the running job's progress in statusDetails.
    Progress {
        job_id: String,
        details: StatusDetails,
    },
}

impl Request {
    pub(super) fn label(&self) -> &'static str {
        match self {
            Self::GetPending => "GetPendingJobExecutions",
            Self::Describe { .. } | Self::CheckActive { .. } => "DescribeJobExecution",
            Self::SizeProbe { .. } => "DescribeJobExecution(without document)",
            Self::Start { .. } => "UpdateJobExecution(IN_PROGRESS)",
            Self::Finish { .. } => "UpdateJobExecution(result)",
            Self::Progress { .. } => "UpdateJobExecution(progress)",
        }
    }
}

pub(super) struct InFlight {
    pub(super) request: Request,
    pub(super) attempt: u32,
    pub(super) sent_at: Millis,
    pub(super) deadline: Millis,
    /// Attempts of this request before this one that got no answer at all, in a row.
    pub(super) timeouts: u32,
}

pub(super) struct Retry {
    pub(super) at: Millis,
    pub(super) request: Request,
    pub(super) attempt: u32,
    pub(super) timeouts: u32,
    /// The last attempt got no usable answer (rather than a refusal for now): a reconnect
    /// may be what it was waiting for.
    pub(super) unanswered: bool,
}

/// Longest `clientToken` the service accepts.
const MAX_CLIENT_TOKEN: usize = 64;

pub(super) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings and numbers always serialise.
    serde_json::to_vec(value).unwrap_or_default()
}

impl Engine {
    /// Retries after a missing or unusable response: the delay doubles per attempt up to
    /// `max_backoff`, plus up to half of it again at random.
    pub(super) fn retry_later(&mut self, now: Millis, request: Request, attempt: u32) {
        self.retry_unanswered(now, request, attempt, 0);
    }

    /// [`Self::retry_later`] for a request whose attempts got no answer `timeouts` times in a
    /// row.
    fn retry_unanswered(&mut self, now: Millis, request: Request, attempt: u32, timeouts: u32) {
        let base = ms(self.config.base_backoff).max(1);
        let cap = ms(self.config.max_backoff).max(base);
        let delay = base.saturating_mul(1u64 << attempt.min(20)).min(cap);
        let spread = self.rng.u64(0..=delay / 2);
        self.retries.push(Retry {
            at: now + delay + spread,
            request,
            attempt,
            timeouts,
            unanswered: true,
        });
    }

    /// Retries after the service refused for now (RequestThrottled, InternalError): full
    /// jitter over a window that doubles per refusal up to `max_throttle_backoff`. The
    /// doubling is the engine's, not the request's: a request refused while the service is
    /// busy starts from the window its predecessors reached (less one step per accepted
    /// answer since), so a fleet over the account's quota keeps spreading its requests
    /// instead of every new request retrying within a second.
    pub(super) fn retry_throttled(&mut self, now: Millis, request: Request, attempt: u32) {
        let base = ms(self.config.base_backoff).max(1);
        let cap = ms(self.config.max_throttle_backoff).max(base);
        let level = attempt.max(self.throttle_level).min(20);
        self.throttle_level = level + 1;
        let window = base.saturating_mul(1u64 << level).min(cap);
        let wait = self.rng.u64(0..=window).max(1);
        self.retries.push(Retry {
            at: now + wait,
            request,
            attempt: level,
            timeouts: 0,
            unanswered: false,
        });
    }

    /// The connection came back (a reconnect message, or CONNECTED): a request whose answer
    /// went missing most likely went missing with the connection, so its retry goes out
    /// after the reconnect's jitter instead of waiting out its back-off. Refusals for now
    /// (throttling) keep their back-off; the attempt count is kept either way.
    pub(super) fn bring_retries_forward(&mut self, now: Millis) {
        for i in 0..self.retries.len() {
            if !self.retries[i].unanswered {
                continue;
            }
            let soon = now + self.jitter();
            let retry = &mut self.retries[i];
            retry.at = retry.at.min(soon);
        }
    }

    pub(super) fn token(&mut self) -> String {
        self.next_token += 1;
        let token = format!("{}-{}", self.token_prefix, self.next_token);
        debug_assert!(token.len() <= MAX_CLIENT_TOKEN);
        token
    }

    pub(super) fn owns_token(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| t.starts_with(&self.token_prefix))
    }

    /// The sequence number of one of our tokens (`<prefix>-<n>`).
    pub(super) fn token_seq(&self, token: &str) -> Option<u64> {
        token
            .strip_prefix(&self.token_prefix)?
            .strip_prefix('-')?
            .parse()
            .ok()
    }

    pub(super) fn send(
        &mut self,
        now: Millis,
        request: Request,
        attempt: u32,
        out: &mut Vec<Action>,
    ) {
        self.send_counted(now, request, attempt, 0, out);
    }

    /// [`Self::send`] for a request whose earlier attempts got no answer `timeouts` times in a
    /// row.
    fn send_counted(
        &mut self,
        now: Millis,
        request: Request,
        attempt: u32,
        timeouts: u32,
        out: &mut Vec<Action>,
    ) {
        let token = self.token();
        let (topic, payload) = match &request {
            Request::GetPending => (
                self.topics.get(),
                to_json(&GetPendingRequest {
                    client_token: Some(token.clone()),
                }),
            ),
            Request::Describe { job_id } => (
                self.topics.describe(job_id),
                to_json(&DescribeRequest {
                    execution_number: None,
                    include_job_document: Some(true),
                    client_token: Some(token.clone()),
                }),
            ),
            // Neither needs the document, and without it the answer is always small.
            Request::CheckActive { job_id } | Request::SizeProbe { job_id } => (
                self.topics.describe(job_id),
                to_json(&DescribeRequest {
                    // A running job is checked by its own execution, not the latest one.
                    execution_number: match &request {
                        Request::CheckActive { .. } => self
                            .active
                            .iter()
                            .find(|a| &a.job_id == job_id)
                            .map(|a| a.execution_number),
                        _ => None,
                    },
                    include_job_document: Some(false),
                    client_token: Some(token.clone()),
                }),
            ),
            Request::Start {
                job_id,
                execution_number,
                version,
                marker,
                ..
            } => (
                self.topics.update(job_id),
                to_json(&UpdateRequest {
                    status: JobStatus::InProgress,
                    status_details: Some([(START_MARKER_KEY.to_owned(), marker.clone())].into()),
                    expected_version: Some(*version),
                    // Every update names its execution: without it the service applies it to
                    // the latest one, which may be a retry that never ran here.
                    execution_number: Some(*execution_number),
                    include_job_execution_state: Some(true),
                    include_job_document: None,
                    step_timeout_in_minutes: self.config.step_timeout_minutes,
                    client_token: Some(token.clone()),
                }),
            ),
            Request::Progress { job_id, details } => {
                let active = self.active.iter().find(|a| &a.job_id == job_id);
                let version = active.map(|a| a.version);
                let execution_number = active.map(|a| a.execution_number);
                (
                    self.topics.update(job_id),
                    to_json(&UpdateRequest {
                        status: JobStatus::InProgress,
                        status_details: Some(crate::jobs::status_details::bounded(details)),
                        expected_version: version,
                        execution_number,
                        include_job_execution_state: Some(true),
                        include_job_document: None,
                        step_timeout_in_minutes: None,
                        client_token: Some(token.clone()),
                    }),
                )
            }
            Request::Finish {
                job_id,
                execution_number,
                outcome,
                details_rejected,
            } => {
                let version = self
                    .active
                    .iter()
                    .find(|a| &a.job_id == job_id)
                    .map(|a| a.version);
                let details = if *details_rejected {
                    let mut d = StatusDetails::new();
                    d.insert(
                        "reason".into(),
                        "the service rejected this job's result details".into(),
                    );
                    d
                } else {
                    crate::jobs::status_details::bounded(&outcome.status_details)
                };
                (
                    self.topics.update(job_id),
                    to_json(&UpdateRequest {
                        status: outcome.status,
                        status_details: (!details.is_empty()).then_some(details),
                        expected_version: version,
                        execution_number: Some(*execution_number),
                        include_job_execution_state: Some(true),
                        include_job_document: None,
                        step_timeout_in_minutes: None,
                        client_token: Some(token.clone()),
                    }),
                )
            }
        };
        tracing::debug!(request = request.label(), %topic, client_token = %token, "publishing request");
        if let Request::Start { job_id, .. } = &request {
            self.start_tokens.insert(self.next_token, job_id.clone());
        }
        out.push(Action::Publish { topic, payload });
        self.in_flight.insert(
            self.next_token,
            InFlight {
                request,
                attempt,
                sent_at: now,
                deadline: now + ms(self.config.response_timeout),
                timeouts,
            },
        );
    }

    /// Requests whose response did not come in time: retried after back-off (a progress
    /// report is not: a newer one or the result follows).
    pub(super) fn expire_requests(&mut self, now: Millis, out: &mut Vec<Action>) {
        // Requests whose response did not come: retry after back-off.
        let expired: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for token in expired {
            if let Some(f) = self.in_flight.remove(&token) {
                if let Request::Progress { job_id, .. } = &f.request {
                    // Best effort: a newer report (or the result) follows.
                    let job_id = job_id.clone();
                    self.send_pending_progress(now, &job_id, out);
                    continue;
                }
                tracing::warn!(
                    request = f.request.label(),
                    attempt = f.attempt + 1,
                    "no response in time; will retry"
                );
                self.unanswered(now, f.sent_at, out);
                // An answer missed while the core is reported offline says nothing about its
                // size: only attempts that timed out while the link was not known down count.
                let timeouts = if self.link_reported_down() {
                    f.timeouts
                } else {
                    f.timeouts + 1
                };
                match f.request {
                    // The one answer that carries a job document: too large for the core?
                    Request::Describe { job_id } if timeouts >= self.config.oversize_after => {
                        self.send(now, Request::SizeProbe { job_id }, 0, out);
                    }
                    Request::SizeProbe { job_id } => {
                        self.retry_later(now, Request::Describe { job_id }, f.attempt);
                    }
                    request => self.retry_unanswered(now, request, f.attempt, timeouts),
                }
            }
        }
    }

    /// Sends the retries whose back-off has run out, in (time, order of scheduling).
    pub(super) fn send_due_retries(&mut self, now: Millis, out: &mut Vec<Action>) {
        let (mut due, later): (Vec<Retry>, Vec<Retry>) = std::mem::take(&mut self.retries)
            .into_iter()
            .partition(|r| r.at <= now);
        self.retries = later;
        // Stable: equal times keep the order they were scheduled in.
        due.sort_by_key(|r| r.at);
        for r in due {
            self.send_counted(now, r.request, r.attempt + 1, r.timeouts, out);
        }
    }
}
