//! The emulated AWS IoT Jobs service: control plane and device-side data plane.
//!
//! Owns: things, jobs and their executions (status, statusDetails, versions, execution numbers,
//! timestamps), the Jobs data-plane requests, responses and error codes, `notify` and
//! `notify-next` by the service's rules, step and in-progress timers (TIMED_OUT), cancellation,
//! deletion, retries, continuous jobs on thing groups, and injected throttling. Must not know:
//! the broker, connections, HTTP or real time (epoch milliseconds are passed in).
//!
//! Every device request and timer costs O(log n) in stored things, jobs and executions: the
//! [`store`] indexes executions per thing (by queue position), per job and by deadline, and no
//! request scans a thing's history. Responses and notifications are the serde types of
//! [`crate::jobs::messages`], the ones the engine parses.
//!
//! Behaviour follows the device-side Jobs API documentation. Where AWS leaves a point open:
//! jobs of every namespace (Greengrass deployments use `aws-gg-deployment`) are visible through
//! the plain `get`, `$next` and notification topics, which is the hardest case for a handler
//! that must leave foreign jobs alone; and QUEUED may go straight to a terminal status.
//!
//! Parts: [`registry`] (things, groups), [`store`] (executions and indexes), `lifecycle` (the
//! execution state machine: start, end, retry, job completion), `notifications`, `documents`
//! (the document a device reads, with fresh presigned URLs), `data_plane`
//! (typed device-side entry points), `mqtt` (the MQTT topics around them), `control_plane`
//! and `timers`.

mod control_plane;
mod data_plane;
mod documents;
mod lifecycle;
mod mqtt;
mod notifications;
pub mod registry;
pub mod store;
mod timers;

pub use control_plane::{JobFilter, JobUpdate, TargetSelection};
pub use data_plane::Rejection;
pub use documents::PresignedUrlConfig;
pub use registry::{Attributes, Thing, ThingFilter};
pub use store::{ExecId, Execution};

use super::iot_core::Publication;
use registry::Registry;
use serde_json::Value;
use std::collections::BTreeMap;
use store::Store;

/// Entries in `get/accepted` lists and `notify`.
pub const MAX_LISTED: usize = 10;
pub const MAX_CLIENT_TOKEN: usize = 64;
pub const MAX_DOCUMENT_CHARS: usize = 32_768;

/// Something the service sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A response for the requesting client only (`*/accepted`, `*/rejected`).
    Reply { topic: String, payload: Vec<u8> },
    /// A notification published through the broker.
    Publish(Publication),
}

/// A control-plane failure, named like the AWS exception.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ControlError {
    pub code: &'static str,
    pub message: String,
}

fn control(code: &'static str, message: impl Into<String>) -> ControlError {
    ControlError {
        code,
        message: message.into(),
    }
}

/// One page of a control-plane listing; `next_token` asks for the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

/// What CreateJob takes.
#[derive(Debug, Clone, Default)]
pub struct NewJob {
    pub job_id: String,
    pub targets: Vec<String>,
    pub document: Value,
    pub description: Option<String>,
    pub namespace_id: Option<String>,
    pub in_progress_timeout_minutes: Option<i64>,
    pub retry: RetryConfig,
    /// Thing groups targeted (their members get executions).
    pub target_groups: Vec<String>,
    /// `targetSelection: CONTINUOUS`: things that join a targeted group later get an
    /// execution, things that leave it have their pending one REMOVED.
    pub continuous: bool,
    /// `presignedUrlConfig`: required (its `roleArn`) when the document has presigned-URL
    /// placeholders.
    pub presigned_url: Option<PresignedUrlConfig>,
}

/// `jobExecutionsRetryConfig`: how often a FAILED or TIMED_OUT execution is queued again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryConfig {
    pub failed: u32,
    pub timed_out: u32,
}

/// At most this many retries per device, across failure types.
pub const MAX_RETRIES: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    InProgress,
    Canceled,
    Completed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Canceled => "CANCELED",
            Self::Completed => "COMPLETED",
        }
    }

    /// Reads a ListJobs `status` filter.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::InProgress, Self::Canceled, Self::Completed]
            .into_iter()
            .find(|j| j.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub job_id: String,
    pub document: Value,
    pub targets: Vec<String>,
    pub description: Option<String>,
    pub namespace_id: Option<String>,
    pub in_progress_timeout_minutes: Option<i64>,
    pub retry: RetryConfig,
    pub target_groups: Vec<String>,
    pub continuous: bool,
    pub presigned_url: Option<PresignedUrlConfig>,
    pub state: JobState,
    pub created_at_ms: u64,
    pub last_updated_at_ms: u64,
    pub force_canceled: bool,
}

/// Epoch milliseconds to the epoch seconds of the device-side API.
fn secs(ms: u64) -> u64 {
    ms / 1000
}

/// The service.
///
/// Call contract: every method takes the current time as epoch milliseconds (never earlier than
/// a time passed before) and returns what must be sent, in order; nothing is sent by the
/// service itself. Same calls, same outputs.
#[derive(Debug, Default)]
pub struct JobsService {
    registry: Registry,
    jobs: BTreeMap<String, Job>,
    executions: Store,
    /// Requests still to be refused with RequestThrottled, per thing.
    throttled: BTreeMap<String, u32>,
    /// Issues the presigned URLs of documents read by devices (see `documents`).
    presigner: Option<super::s3::Presigner>,
}

impl JobsService {
    /// Makes the next `count` device requests of `thing` fail with RequestThrottled.
    pub fn throttle(&mut self, thing: &str, count: u32) {
        if count == 0 {
            self.throttled.remove(thing);
        } else {
            self.throttled.insert(thing.to_owned(), count);
        }
    }

    /// How many executions are stored (every status, every thing).
    pub fn execution_count(&self) -> usize {
        self.executions.len()
    }
}

#[cfg(test)]
mod tests;
