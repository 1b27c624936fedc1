//! The Jobs MQTT topics around the typed data plane.
//!
//! Owns: mapping `$aws/things/<thing>/jobs/<rest>` (plain and `namespace-<ns>` forms) to an
//! operation, parsing payloads into the request types of [`crate::jobs::messages`]
//! (InvalidTopic, InvalidJson, InvalidRequest), `clientToken` (its limit, and its echo in every
//! reply), the MQTT defaults (`includeJobDocument` true on describe), the `accepted` /
//! `rejected` reply topics, and the RequestThrottled answer to a request over the account's
//! rate (the caller counts the rate). Must not know: the Jobs rules (the data plane's).

use super::data_plane::{Answer, Rejection};
use super::notifications::to_payload;
use super::{secs, JobsService, Output, MAX_CLIENT_TOKEN};
use crate::jobs::messages::{
    client_token_of, DescribeRequest, ErrorCode, ErrorResponse, GetPendingRequest,
    StartNextRequest, Timestamp, UpdateRequest,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// What a device request asks for.
enum DeviceRequest<'a> {
    GetPending,
    StartNext,
    Describe(&'a str),
    Update(&'a str),
}

impl<'a> DeviceRequest<'a> {
    /// `rest` is the topic after `$aws/things/<thing>/jobs/`.
    fn of_topic(rest: &'a str) -> Option<Self> {
        let levels: Vec<&str> = rest.split('/').collect();
        let namespaced = |ns: &str| ns.starts_with("namespace-");
        match levels.as_slice() {
            ["get"] => Some(Self::GetPending),
            ["start-next"] => Some(Self::StartNext),
            [job, "get"] => Some(Self::Describe(job)),
            [job, ns, "get"] if namespaced(ns) => Some(Self::Describe(job)),
            [job, "update"] => Some(Self::Update(job)),
            [job, ns, "update"] if namespaced(ns) => Some(Self::Update(job)),
            _ => None,
        }
    }
}

/// The request's payload, as a type of the wire schema.
fn parse<T: DeserializeOwned>(body: Value) -> Result<T, Rejection> {
    serde_json::from_value(body).map_err(|e| Rejection {
        code: ErrorCode::InvalidRequest,
        message: format!("invalid request: {e}"),
        execution_state: None,
    })
}

/// A response with the request's `clientToken`.
trait WithToken: Serialize {
    fn set_client_token(&mut self, token: Option<String>);
}

macro_rules! with_token {
    ($($t:ty),*) => {$(
        impl WithToken for $t {
            fn set_client_token(&mut self, token: Option<String>) {
                self.client_token = token;
            }
        }
    )*};
}

with_token!(
    crate::jobs::messages::GetPendingJobExecutionsResponse,
    crate::jobs::messages::ExecutionResponse,
    crate::jobs::messages::UpdateJobExecutionResponse
);

impl JobsService {
    /// A request on `$aws/things/<thing>/jobs/<rest>` over the account's request quota: the
    /// service answers RequestThrottled (with the request's `clientToken`) and does nothing
    /// else. A topic that maps to no Jobs API is answered as [`Self::handle_device_request`]
    /// answers it. Cheap on purpose: a fleet over its quota sends most of its requests here.
    pub fn refuse_over_quota(
        &mut self,
        thing: &str,
        rest: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Vec<Output> {
        if DeviceRequest::of_topic(rest).is_none() {
            return self.handle_device_request(thing, rest, payload, now_ms);
        }
        reply_rejected(
            &format!("$aws/things/{thing}/jobs/{rest}"),
            client_token_of(payload),
            now_ms,
            Rejection {
                code: ErrorCode::RequestThrottled,
                message: "the request was throttled: over the account's request rate".into(),
                execution_state: None,
            },
        )
    }

    /// Handles a publish on `$aws/things/<thing>/jobs/<rest>`: the reply for the requesting
    /// client first, then the notifications the request caused.
    pub fn handle_device_request(
        &mut self,
        thing: &str,
        rest: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Vec<Output> {
        let topic = format!("$aws/things/{thing}/jobs/{rest}");
        let body = serde_json::from_slice::<Value>(payload).ok();
        let token = body
            .as_ref()
            .and_then(|b| b.get("clientToken"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(request) = DeviceRequest::of_topic(rest) else {
            return reply_rejected(
                &topic,
                token,
                now_ms,
                Rejection {
                    code: ErrorCode::InvalidTopic,
                    message: "the topic does not map to a Jobs API".into(),
                    execution_state: None,
                },
            );
        };
        let Some(body) = body.filter(Value::is_object) else {
            return reply_rejected(
                &topic,
                token,
                now_ms,
                Rejection {
                    code: ErrorCode::InvalidJson,
                    message: "the payload is not a valid JSON object".into(),
                    execution_state: None,
                },
            );
        };
        if token.as_ref().is_some_and(|t| t.len() > MAX_CLIENT_TOKEN) {
            return reply_rejected(
                &topic,
                token,
                now_ms,
                Rejection {
                    code: ErrorCode::InvalidRequest,
                    message: format!("clientToken is longer than {MAX_CLIENT_TOKEN} bytes"),
                    execution_state: None,
                },
            );
        }
        let (topic, token) = (topic.as_str(), token.clone());
        match request {
            DeviceRequest::GetPending => answer(
                topic,
                token,
                now_ms,
                parse::<GetPendingRequest>(body)
                    .and_then(|_| self.get_pending_job_executions(thing, now_ms)),
            ),
            DeviceRequest::StartNext => answer(
                topic,
                token,
                now_ms,
                parse::<StartNextRequest>(body).and_then(|r| {
                    self.start_next_pending_job_execution(
                        thing,
                        r.status_details,
                        r.step_timeout_in_minutes,
                        now_ms,
                    )
                }),
            ),
            DeviceRequest::Describe(job_id) => answer(
                topic,
                token,
                now_ms,
                parse::<DescribeRequest>(body).and_then(|r| {
                    self.describe_job_execution(
                        thing,
                        job_id,
                        r.execution_number,
                        r.include_job_document.unwrap_or(true),
                        now_ms,
                    )
                }),
            ),
            DeviceRequest::Update(job_id) => answer(
                topic,
                token,
                now_ms,
                parse::<UpdateRequest>(body)
                    .and_then(|r| self.update_job_execution(thing, job_id, &r, now_ms)),
            ),
        }
    }
}

fn answer<T: WithToken>(
    topic: &str,
    token: Option<String>,
    now_ms: u64,
    result: Answer<T>,
) -> Vec<Output> {
    match result {
        Ok((mut response, notifications)) => {
            response.set_client_token(token);
            let mut out = Vec::with_capacity(1 + notifications.len());
            out.push(Output::Reply {
                topic: format!("{topic}/accepted"),
                payload: to_payload(&response),
            });
            out.extend(notifications);
            out
        }
        Err(rejection) => reply_rejected(topic, token, now_ms, rejection),
    }
}

fn reply_rejected(
    topic: &str,
    token: Option<String>,
    now_ms: u64,
    rejection: Rejection,
) -> Vec<Output> {
    let response = ErrorResponse {
        code: rejection.code,
        message: Some(rejection.message),
        client_token: token,
        timestamp: Some(secs(now_ms) as Timestamp),
        execution_state: rejection.execution_state,
    };
    vec![Output::Reply {
        topic: format!("{topic}/rejected"),
        payload: to_payload(&response),
    }]
}
