//! Errors of the IPC layer: the modeled error payload on the wire, and what a caller sees.
//!
//! Owns: the JSON of APPLICATION_ERROR payloads (`_errorCode`, `_message`, `_service`, `message`)
//! and [`IpcError`], the client's error type.
//! Must not know: sockets or particular operations.

use super::codec::FrameError;
use super::model::SERVICE_NAME;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

/// Modeled error codes of the Greengrass IPC service (each is `aws.greengrass#<code>`).
pub mod code {
    pub const SERVICE_ERROR: &str = "ServiceError";
    pub const UNAUTHORIZED_ERROR: &str = "UnauthorizedError";
    pub const RESOURCE_NOT_FOUND_ERROR: &str = "ResourceNotFoundError";
    pub const INVALID_ARGUMENTS_ERROR: &str = "InvalidArgumentsError";
}

/// The JSON body of an APPLICATION_ERROR, as the Java nucleus writes it.
///
/// `_errorCode` is mandatory for some clients (aws-greengrass-component-sdk refuses a payload
/// without it), so it is always written. Extra members of a shape (`resourceName`, …) are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorPayload {
    #[serde(rename = "_service", default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(rename = "_message", default, skip_serializing_if = "Option::is_none")]
    pub internal_message: Option<String>,
    #[serde(
        rename = "_errorCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ErrorPayload {
    pub fn new(error_code: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            service: Some(SERVICE_NAME.to_owned()),
            internal_message: Some(message.clone()),
            error_code: Some(error_code.to_owned()),
            message: Some(message),
            extra: Map::new(),
        }
    }

    pub fn with_member(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    /// The `service-model-type` header for this error.
    pub fn model_type(&self) -> String {
        format!(
            "aws.greengrass#{}",
            self.error_code.as_deref().unwrap_or(code::SERVICE_ERROR)
        )
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A map of strings and JSON values always serialises.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// Everything an IPC call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("environment variable {0} is not set (is this running under the Greengrass nucleus?)")]
    MissingEnv(&'static str),
    #[error("cannot reach the nucleus socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("IPC framing error: {0}")]
    Frame(#[from] FrameError),
    #[error("the nucleus refused the connection (invalid or expired SVCUID token)")]
    ConnectionRejected,
    #[error("the IPC connection is closed")]
    ConnectionClosed,
    #[error("{operation} got no response within {after:?}")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    #[error("{operation} failed with {code}: {message}")]
    Service {
        operation: &'static str,
        code: String,
        message: String,
        payload: Box<ErrorPayload>,
    },
    #[error("{operation}: stream closed by the server ({detail})")]
    StreamClosed {
        operation: &'static str,
        detail: String,
    },
    #[error("IPC protocol violation: {0}")]
    Protocol(String),
    #[error("{operation}: undecodable response: {source}")]
    BadResponse {
        operation: &'static str,
        source: serde_json::Error,
    },
}

impl IpcError {
    /// The modeled error code (`UnauthorizedError`, …) when the server sent one.
    pub fn service_code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => Some(code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_payload_carries_error_code_and_extra_members() {
        let p = ErrorPayload::new(code::RESOURCE_NOT_FOUND_ERROR, "no such key")
            .with_member("resourceName", "a.b");
        let v: Value = serde_json::from_slice(&p.to_json()).unwrap();
        assert_eq!(v["_errorCode"], "ResourceNotFoundError");
        assert_eq!(v["_service"], SERVICE_NAME);
        assert_eq!(v["_message"], "no such key");
        assert_eq!(v["message"], "no such key");
        assert_eq!(v["resourceName"], "a.b");
        assert_eq!(p.model_type(), "aws.greengrass#ResourceNotFoundError");
        let back: ErrorPayload = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }
}
