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
//! execution state machine: start, end, retry, job completion), `notifications`, `data_plane`
//! (typed device-side entry points), `mqtt` (the MQTT topics around them), `control_plane`,
//! [`rollout`] (the rate executions are created at, account quotas), [`scheduling`] (start,
//! end and maintenance windows, on [`cron`] expressions), [`abort`] (failure criteria that
//! cancel a job), `progress` (per-job status counts and job events) and `timers`.
//!
//! Some effects reach past the request that caused them (an abort cancels other things'
//! executions, job events go to the broker); they are queued and taken with
//! [`JobsService::take_queued_outputs`] after each call, as the world does.

pub mod abort;
mod control_plane;
pub mod cron;
mod data_plane;
pub mod fleet;
mod lifecycle;
mod mqtt;
mod notifications;
mod progress;
pub mod registry;
pub mod rollout;
pub mod scheduling;
pub mod store;
mod timers;

pub use abort::{AbortCriterion, FailureType};
pub use control_plane::{JobFilter, JobUpdate, TargetSelection};
pub use data_plane::Rejection;
pub use progress::StatusCounts;
pub use registry::{Attributes, Thing, ThingFilter};
pub use rollout::{AccountQuotas, ExponentialRate, RateIncreaseCriteria, RolloutConfig};
pub use scheduling::{EndBehavior, MaintenanceWindow, SchedulingConfig};
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
    /// `jobExecutionsRolloutConfig`.
    pub rollout: RolloutConfig,
    /// `abortConfig.criteriaList`.
    pub abort: Vec<AbortCriterion>,
    /// `schedulingConfig`.
    pub scheduling: Option<SchedulingConfig>,
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
    /// Waiting for its `schedulingConfig.startTime`: no executions yet.
    Scheduled,
    InProgress,
    Canceled,
    Completed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "SCHEDULED",
            Self::InProgress => "IN_PROGRESS",
            Self::Canceled => "CANCELED",
            Self::Completed => "COMPLETED",
        }
    }

    /// Reads a ListJobs `status` filter.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Scheduled,
            Self::InProgress,
            Self::Canceled,
            Self::Completed,
        ]
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
    pub state: JobState,
    pub created_at_ms: u64,
    pub last_updated_at_ms: u64,
    pub force_canceled: bool,
    pub rollout: RolloutConfig,
    pub abort: Vec<AbortCriterion>,
    pub scheduling: Option<SchedulingConfig>,
    /// Why the job was canceled (CancelJob's `reasonCode`, or the abort's).
    pub reason_code: Option<String>,
    pub comment: Option<String>,
    pub completed_at_ms: Option<u64>,
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
    /// Per job: the things still to be notified and the rate they are released at.
    rollouts: BTreeMap<String, rollout::Rollout>,
    /// Job timers (rollout releases, scheduled start and end), by (deadline, jobId).
    job_timers: std::collections::BTreeSet<(u64, String)>,
    /// Each job's entry in `job_timers`.
    job_timer_at: BTreeMap<String, u64>,
    quotas: AccountQuotas,
    /// The earliest instant the account quota lets the next execution out.
    account_next_release_ms: u64,
    /// Per job: executions by status, and things notified.
    counts: BTreeMap<String, StatusCounts>,
    events: crate::emulator::cloud::job_events::EventConfigurations,
    event_seq: u64,
    /// Effects to send after the current call (see the module doc).
    queued: Vec<Output>,
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

    /// What the last calls queued beyond their own outputs (abort cancellations, job
    /// events), in order. Call after every call and send them after its outputs.
    pub fn take_queued_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.queued)
    }

    /// The account's quotas.
    pub fn quotas(&self) -> AccountQuotas {
        self.quotas
    }

    /// Sets the account's quotas (MaximumJobExecutionsPerMinute, concurrent jobs).
    pub fn set_quotas(&mut self, quotas: AccountQuotas) -> Result<(), ControlError> {
        quotas.validate()?;
        self.quotas = quotas;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fleet;
