//! Per-job progress: executions by status and things notified, kept as counters on every
//! transition (so DescribeJob and the abort check cost O(1), not a scan of the job), and the
//! job and job-execution events those transitions publish when enabled.
//!
//! Owns: [`StatusCounts`], `jobProcessDetails`, and queuing `$aws/events/job/…` and
//! `$aws/events/jobExecution/…` through [`crate::emulator::cloud::job_events`]. Must not know:
//! the broker, rules or transports (events are queued as [`Output::Publish`]).

use super::store::ExecId;
use super::{JobState, JobsService, Output};
use crate::emulator::cloud::iot_core::Publication;
use crate::emulator::cloud::job_events::{self, EventConfigurations, JobEventFields};
use crate::jobs::messages::JobStatus;
use serde_json::{json, Value};

const STATUSES: [JobStatus; 8] = [
    JobStatus::Queued,
    JobStatus::InProgress,
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::TimedOut,
    JobStatus::Rejected,
    JobStatus::Removed,
    JobStatus::Canceled,
];

fn slot(status: JobStatus) -> usize {
    STATUSES.iter().position(|s| *s == status).unwrap_or(0)
}

/// A job's executions by status, and how many things were notified (executions created).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    by_status: [usize; 8],
    pub notified: usize,
}

impl StatusCounts {
    pub fn of(&self, status: JobStatus) -> usize {
        self.by_status[slot(status)]
    }

    /// DescribeJob's `jobProcessDetails` (without `processingTargets`).
    pub fn process_details(&self) -> Value {
        json!({
            "numberOfCanceledThings": self.of(JobStatus::Canceled),
            "numberOfSucceededThings": self.of(JobStatus::Succeeded),
            "numberOfFailedThings": self.of(JobStatus::Failed),
            "numberOfRejectedThings": self.of(JobStatus::Rejected),
            "numberOfQueuedThings": self.of(JobStatus::Queued),
            "numberOfInProgressThings": self.of(JobStatus::InProgress),
            "numberOfRemovedThings": self.of(JobStatus::Removed),
            "numberOfTimedOutThings": self.of(JobStatus::TimedOut),
        })
    }
}

/// The operation part of a job-execution event's topic.
fn execution_operation(status: JobStatus) -> Option<&'static str> {
    Some(match status {
        JobStatus::Succeeded => "succeeded",
        JobStatus::Failed => "failed",
        JobStatus::Rejected => "rejected",
        JobStatus::Canceled => "canceled",
        JobStatus::TimedOut => "timed_out",
        JobStatus::Removed => "removed",
        JobStatus::Queued | JobStatus::InProgress => return None,
    })
}

impl JobsService {
    /// `job_id`'s counts (all zero for an unknown job).
    pub fn job_counts(&self, job_id: &str) -> StatusCounts {
        self.counts.get(job_id).copied().unwrap_or_default()
    }

    /// An execution of `job_id` moved from `from` to `to` (`None`: created or deleted).
    pub(super) fn recount(&mut self, job_id: &str, from: Option<JobStatus>, to: Option<JobStatus>) {
        let c = self.counts.entry(job_id.to_owned()).or_default();
        if let Some(f) = from {
            c.by_status[slot(f)] = c.by_status[slot(f)].saturating_sub(1);
        }
        if let Some(t) = to {
            c.by_status[slot(t)] += 1;
        }
        if from.is_none() && to.is_some() {
            c.notified += 1;
        }
    }

    /// UpdateEventConfigurations.
    pub fn update_event_configurations(
        &mut self,
        changes: &[(String, bool)],
        now_ms: u64,
    ) -> Result<(), super::ControlError> {
        self.events
            .update(changes, now_ms)
            .map_err(|m| super::control("InvalidRequestException", m))
    }

    /// DescribeEventConfigurations.
    pub fn event_configurations(&self) -> &EventConfigurations {
        &self.events
    }

    fn queue_event(&mut self, topic: String, payload: &Value) {
        self.queued.push(Output::Publish(Publication {
            topic,
            payload: payload.to_string().into_bytes(),
            qos: 1,
        }));
    }

    /// A job-execution event for `id` (terminal statuses, or `deleted`).
    pub(super) fn execution_event(&mut self, id: ExecId, deleted: bool, now_ms: u64) {
        if !self.events.is_enabled("JOB_EXECUTION") {
            return;
        }
        let Some(e) = self.executions.get(id) else {
            return;
        };
        let operation = if deleted {
            "deleted"
        } else {
            match execution_operation(e.status) {
                Some(op) => op,
                None => return,
            }
        };
        self.event_seq += 1;
        let (topic, payload) = job_events::execution_event(
            operation,
            &e.job_id,
            &thing_arn(&e.thing_name),
            e.status.as_str(),
            &e.status_details,
            self.event_seq,
            now_ms,
        );
        self.queue_event(topic, &payload);
    }

    /// A job event (`completed`, `canceled`, `deleted`, `cancellation_in_progress`,
    /// `deletion_in_progress`).
    pub(super) fn job_event(&mut self, job_id: &str, operation: &str, now_ms: u64) {
        if !self.events.is_enabled("JOB") {
            return;
        }
        let Some(job) = self.jobs.get(job_id) else {
            return;
        };
        let counts = self.job_counts(job_id);
        let targets = job
            .targets
            .iter()
            .map(|t| thing_arn(t))
            .chain(job.target_groups.iter().map(|g| group_arn(g)))
            .collect();
        let status = match operation {
            "deleted" | "deletion_in_progress" => "DELETION_IN_PROGRESS",
            _ => job.state.as_str(),
        };
        let fields = JobEventFields {
            job_id,
            status,
            target_selection: if job.continuous {
                "CONTINUOUS"
            } else {
                "SNAPSHOT"
            },
            targets,
            description: job.description.as_deref(),
            created_at_ms: job.created_at_ms,
            last_updated_at_ms: job.last_updated_at_ms,
            completed_at_ms: job
                .completed_at_ms
                .filter(|_| job.state == JobState::Completed),
            process_details: counts.process_details(),
        };
        self.event_seq += 1;
        let (topic, payload) = job_events::job_event(operation, &fields, self.event_seq, now_ms);
        self.queue_event(topic, &payload);
    }
}

/// The thing ARN events carry (the emulator's one account and region).
pub fn thing_arn(thing: &str) -> String {
    format!("arn:aws:iot:us-east-1:123456789012:thing/{thing}")
}

pub fn group_arn(group: &str) -> String {
    format!("arn:aws:iot:us-east-1:123456789012:thinggroup/{group}")
}
