//! The JSON payloads of the AWS IoT Jobs device-side MQTT API.
//!
//! Owns: requests the device publishes, responses and notifications the service publishes, and
//! the error codes of `*/rejected`. Shared by the engine (which reads responses) and the
//! emulator (which writes them). Must not know: topics, connections or time sources.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `statusDetails`: string keys to string values.
pub type StatusDetails = BTreeMap<String, String>;

/// A time field. The service documents epoch seconds but examples show milliseconds, so both
/// integers and floats are accepted and the unit is not assumed. A whole value is written as an
/// integer (the emulated service sends integer epoch seconds, as AWS does).
pub type Timestamp = f64;

/// Writes a time field as an integer when it is whole, as a float otherwise.
fn whole_seconds<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        // Below 2^53 every whole f64 is an exact integer.
        Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => s.serialize_i64(*v as i64),
        Some(v) => s.serialize_f64(*v),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    TimedOut,
    Rejected,
    Removed,
    Canceled,
}

impl JobStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::InProgress)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::InProgress => "IN_PROGRESS",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Rejected => "REJECTED",
            Self::Removed => "REMOVED",
            Self::Canceled => "CANCELED",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `get` request (GetPendingJobExecutions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPendingRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `start-next` request (StartNextPendingJobExecution).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartNextRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<StatusDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout_in_minutes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `{jobId}/get` request (DescribeJobExecution).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_job_document: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `{jobId}/update` request (UpdateJobExecution).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRequest {
    pub status: JobStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<StatusDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_job_execution_state: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_job_document: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout_in_minutes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `JobExecutionSummary` (in `get/accepted` and `notify`): no status, no document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionSummary {
    pub job_id: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_seconds"
    )]
    pub queued_at: Option<Timestamp>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_seconds"
    )]
    pub started_at: Option<Timestamp>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_seconds"
    )]
    pub last_updated_at: Option<Timestamp>,
    #[serde(default)]
    pub version_number: i64,
    #[serde(default)]
    pub execution_number: i64,
}

/// `JobExecution` (in `start-next/accepted`, `{jobId}/get/accepted`, `notify-next`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecution {
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_document: Option<Value>,
    pub status: JobStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<StatusDetails>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_seconds"
    )]
    pub queued_at: Option<Timestamp>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_seconds"
    )]
    pub started_at: Option<Timestamp>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_seconds"
    )]
    pub last_updated_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approximate_seconds_before_timed_out: Option<i64>,
    #[serde(default)]
    pub version_number: i64,
    #[serde(default)]
    pub execution_number: i64,
}

/// `JobExecutionState` (in `update/accepted` and some rejections).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionState {
    pub status: JobStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<StatusDetails>,
    #[serde(default)]
    pub version_number: i64,
}

/// `get/accepted` (GetPendingJobExecutions): IN_PROGRESS and QUEUED summaries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPendingJobExecutionsResponse {
    #[serde(default)]
    pub in_progress_jobs: Vec<JobExecutionSummary>,
    #[serde(default)]
    pub queued_jobs: Vec<JobExecutionSummary>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_seconds"
    )]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `get/accepted` as the engine reads it.
pub type GetPendingAccepted = GetPendingJobExecutionsResponse;

/// `start-next/accepted`, `{jobId}/get/accepted` and `notify-next`: an optional execution.
/// The three share one shape; the aliases below name each use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<JobExecution>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_seconds"
    )]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `{jobId}/get/accepted` (DescribeJobExecution).
pub type DescribeJobExecutionResponse = ExecutionResponse;
/// `start-next/accepted` (StartNextPendingJobExecution).
pub type StartNextPendingJobExecutionResponse = ExecutionResponse;
/// `notify-next` (NextJobExecutionChanged): no `clientToken`; no `execution` when nothing is
/// pending.
pub type NotifyNext = ExecutionResponse;

/// `{jobId}/update/accepted` (UpdateJobExecution): `executionState` and `jobDocument` only when
/// asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateJobExecutionResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_state: Option<JobExecutionState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_document: Option<Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_seconds"
    )]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `{jobId}/update/accepted` as the engine reads it.
pub type UpdateAccepted = UpdateJobExecutionResponse;

/// `notify` (JobExecutionsChanged): pending executions by status (`IN_PROGRESS`, `QUEUED`);
/// empty lists are left out, so nothing pending is `"jobs": {}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Notify {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_seconds"
    )]
    pub timestamp: Option<Timestamp>,
    #[serde(default)]
    pub jobs: BTreeMap<String, Vec<JobExecutionSummary>>,
}

/// Error codes of `*/rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    InvalidTopic,
    InvalidJson,
    InvalidRequest,
    InvalidStateTransition,
    ResourceNotFound,
    VersionMismatch,
    InternalError,
    RequestThrottled,
    TerminalStateReached,
    /// A code this version does not know; kept so that it can be logged.
    #[serde(untagged)]
    Other(String),
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidTopic => "InvalidTopic",
            Self::InvalidJson => "InvalidJson",
            Self::InvalidRequest => "InvalidRequest",
            Self::InvalidStateTransition => "InvalidStateTransition",
            Self::ResourceNotFound => "ResourceNotFound",
            Self::VersionMismatch => "VersionMismatch",
            Self::InternalError => "InternalError",
            Self::RequestThrottled => "RequestThrottled",
            Self::TerminalStateReached => "TerminalStateReached",
            Self::Other(code) => code,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `*/rejected` payload. `executionState` only with VersionMismatch and
/// InvalidStateTransition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    pub code: ErrorCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_seconds"
    )]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_state: Option<JobExecutionState>,
}

/// `*/rejected` as the engine reads it.
pub type Rejected = ErrorResponse;

/// Reads the `clientToken` of any payload without parsing the rest.
pub fn client_token_of(payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Token {
        #[serde(rename = "clientToken")]
        client_token: Option<String>,
    }
    serde_json::from_slice::<Token>(payload)
        .ok()
        .and_then(|t| t.client_token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_service_examples() {
        let notify_next: ExecutionResponse = serde_json::from_value(json!({
            "timestamp": 1517016948,
            "execution": {"jobId": "job1", "status": "QUEUED", "queuedAt": 1517016947,
                "lastUpdatedAt": 1517016947, "versionNumber": 1, "executionNumber": 1,
                "jobDocument": {"operation": "echo"}}
        }))
        .unwrap();
        let e = notify_next.execution.unwrap();
        assert_eq!(
            (e.job_id.as_str(), e.status, e.version_number),
            ("job1", JobStatus::Queued, 1)
        );
        let bare: ExecutionResponse =
            serde_json::from_value(json!({"timestamp": 1517189551})).unwrap();
        assert!(bare.execution.is_none());
        let rejected: Rejected = serde_json::from_value(json!({
            "code": "VersionMismatch", "message": "m", "clientToken": "t", "timestamp": 1489096425069u64,
            "executionState": {"status": "IN_PROGRESS", "versionNumber": 3}
        }))
        .unwrap();
        assert_eq!(rejected.code, ErrorCode::VersionMismatch);
        let odd: Rejected = serde_json::from_value(json!({"code": "SomethingNew"})).unwrap();
        assert_eq!(odd.code, ErrorCode::Other("SomethingNew".into()));
    }

    fn execution() -> JobExecution {
        JobExecution {
            job_id: "j".into(),
            thing_name: Some("t".into()),
            job_document: Some(json!({"operation": "echo"})),
            status: JobStatus::InProgress,
            status_details: Some(StatusDetails::from([("k".into(), "v".into())])),
            queued_at: Some(1.0),
            started_at: Some(2.0),
            last_updated_at: Some(3.0),
            approximate_seconds_before_timed_out: Some(60),
            version_number: 2,
            execution_number: 1,
        }
    }

    fn summary() -> JobExecutionSummary {
        JobExecutionSummary {
            job_id: "j".into(),
            queued_at: Some(1.0),
            started_at: Some(2.0),
            last_updated_at: Some(3.0),
            version_number: 2,
            execution_number: 1,
        }
    }

    fn state() -> JobExecutionState {
        JobExecutionState {
            status: JobStatus::Failed,
            status_details: Some(StatusDetails::from([("k".into(), "v".into())])),
            version_number: 4,
        }
    }

    /// Every field of every response and notification, written with the AWS names of the
    /// device-side API reference: a misspelt or missing rename fails here.
    #[test]
    fn responses_use_the_aws_field_names() {
        let execution_json = json!({
            "jobId": "j", "thingName": "t", "jobDocument": {"operation": "echo"},
            "status": "IN_PROGRESS", "statusDetails": {"k": "v"}, "queuedAt": 1, "startedAt": 2,
            "lastUpdatedAt": 3, "approximateSecondsBeforeTimedOut": 60, "versionNumber": 2,
            "executionNumber": 1
        });
        let summary_json = json!({"jobId": "j", "queuedAt": 1, "startedAt": 2,
            "lastUpdatedAt": 3, "versionNumber": 2, "executionNumber": 1});
        let state_json =
            json!({"status": "FAILED", "statusDetails": {"k": "v"}, "versionNumber": 4});
        let cases: Vec<(Value, Value)> = vec![
            (
                serde_json::to_value(GetPendingJobExecutionsResponse {
                    in_progress_jobs: vec![summary()],
                    queued_jobs: vec![summary()],
                    timestamp: Some(7.0),
                    client_token: Some("c".into()),
                })
                .unwrap(),
                json!({"inProgressJobs": [summary_json], "queuedJobs": [summary_json],
                    "timestamp": 7, "clientToken": "c"}),
            ),
            (
                serde_json::to_value(DescribeJobExecutionResponse {
                    execution: Some(execution()),
                    timestamp: Some(7.0),
                    client_token: Some("c".into()),
                })
                .unwrap(),
                json!({"execution": execution_json, "timestamp": 7, "clientToken": "c"}),
            ),
            (
                serde_json::to_value(UpdateJobExecutionResponse {
                    execution_state: Some(state()),
                    job_document: Some(json!({"operation": "echo"})),
                    timestamp: Some(7.0),
                    client_token: Some("c".into()),
                })
                .unwrap(),
                json!({"executionState": state_json, "jobDocument": {"operation": "echo"},
                    "timestamp": 7, "clientToken": "c"}),
            ),
            (
                serde_json::to_value(ErrorResponse {
                    code: ErrorCode::VersionMismatch,
                    message: Some("m".into()),
                    client_token: Some("c".into()),
                    timestamp: Some(7.0),
                    execution_state: Some(state()),
                })
                .unwrap(),
                json!({"code": "VersionMismatch", "message": "m", "clientToken": "c",
                    "timestamp": 7, "executionState": state_json}),
            ),
            (
                serde_json::to_value(Notify {
                    timestamp: Some(7.0),
                    jobs: BTreeMap::from([("QUEUED".into(), vec![summary()])]),
                })
                .unwrap(),
                json!({"timestamp": 7, "jobs": {"QUEUED": [summary_json]}}),
            ),
            (
                serde_json::to_value(NotifyNext {
                    execution: None,
                    timestamp: Some(7.5),
                    client_token: None,
                })
                .unwrap(),
                json!({"timestamp": 7.5}),
            ),
        ];
        for (written, aws) in cases {
            assert_eq!(written, aws);
        }
        for code in [
            "InvalidTopic",
            "InvalidJson",
            "InvalidRequest",
            "InvalidStateTransition",
            "ResourceNotFound",
            "VersionMismatch",
            "InternalError",
            "RequestThrottled",
            "TerminalStateReached",
        ] {
            let parsed: ErrorCode = serde_json::from_value(json!(code)).unwrap();
            assert_eq!(
                (parsed.as_str(), serde_json::to_value(&parsed).unwrap()),
                (code, json!(code))
            );
            assert!(
                !matches!(parsed, ErrorCode::Other(_)),
                "{code} is a known code"
            );
        }
    }

    #[test]
    fn client_token_is_read_from_any_payload() {
        assert_eq!(
            client_token_of(br#"{"clientToken":"abc","x":[1]}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(client_token_of(b"{}"), None);
        assert_eq!(client_token_of(b"not json"), None);
    }
}
