//! The device-side Jobs API as typed calls: GetPendingJobExecutions, DescribeJobExecution,
//! StartNextPendingJobExecution and UpdateJobExecution.
//!
//! Owns: admission (injected throttling, unknown things), request validation (statusDetails,
//! step timeouts, statuses a device may set, expected versions), each operation's effect and
//! response, its error codes, and the notifications each change causes. Both the MQTT topics
//! (`mqtt`) and an HTTP `iot-jobs-data` plane call these. Must not know: topics, payload
//! parsing, `clientToken` (the caller echoes it) or transports.

use super::notifications::{execution_state, Snapshot};
use super::store::ExecId;
use super::{secs, JobsService, Output};
use crate::jobs::messages::{
    DescribeJobExecutionResponse, ErrorCode, GetPendingJobExecutionsResponse, JobExecutionState,
    JobStatus, StartNextPendingJobExecutionResponse, StatusDetails, Timestamp,
    UpdateJobExecutionResponse, UpdateRequest,
};

/// A refused data-plane request: the code and message of `*/rejected`, and the execution's
/// state where AWS includes it (VersionMismatch, InvalidStateTransition).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
    pub execution_state: Option<JobExecutionState>,
}

fn reject(code: ErrorCode, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
        execution_state: None,
    }
}

fn invalid(message: impl Into<String>) -> Rejection {
    reject(ErrorCode::InvalidRequest, message)
}

/// A response and the notifications the request caused (to publish after the response).
pub type Answer<T> = Result<(T, Vec<Output>), Rejection>;

fn timestamp(now_ms: u64) -> Option<Timestamp> {
    Some(secs(now_ms) as Timestamp)
}

impl JobsService {
    /// Every request first: an injected RequestThrottled, then an unknown thing.
    fn admit(&mut self, thing: &str) -> Result<(), Rejection> {
        if let Some(left) = self.throttled.get_mut(thing) {
            *left -= 1;
            if *left == 0 {
                self.throttled.remove(thing);
            }
            return Err(reject(
                ErrorCode::RequestThrottled,
                "the request was throttled",
            ));
        }
        if !self.registry.contains_thing(thing) {
            return Err(reject(
                ErrorCode::ResourceNotFound,
                format!("thing {thing} does not exist"),
            ));
        }
        Ok(())
    }

    /// GetPendingJobExecutions: IN_PROGRESS and QUEUED summaries, at most 10 of each.
    pub fn get_pending_job_executions(
        &mut self,
        thing: &str,
        now_ms: u64,
    ) -> Answer<GetPendingJobExecutionsResponse> {
        self.admit(thing)?;
        let (in_progress_jobs, queued_jobs) = self.pending_summaries(thing);
        let response = GetPendingJobExecutionsResponse {
            in_progress_jobs,
            queued_jobs,
            timestamp: timestamp(now_ms),
            client_token: None,
        };
        Ok((response, Vec::new()))
    }

    /// DescribeJobExecution of `job_id` (or `$next`: the head of the queue, an empty response
    /// when nothing is pending); `execution_number` none means the latest one.
    pub fn describe_job_execution(
        &mut self,
        thing: &str,
        job_id: &str,
        execution_number: Option<i64>,
        include_document: bool,
        now_ms: u64,
    ) -> Answer<DescribeJobExecutionResponse> {
        self.admit(thing)?;
        let id = if job_id == "$next" {
            self.executions.head(thing)
        } else {
            let id = self
                .executions
                .find(thing, job_id, execution_number)
                .ok_or_else(|| {
                    reject(
                        ErrorCode::ResourceNotFound,
                        format!("no execution of job {job_id} on {thing}"),
                    )
                })?;
            match self.executions.get(id).map(|e| e.status) {
                Some(status) if status.is_terminal() => {
                    return Err(reject(
                        ErrorCode::TerminalStateReached,
                        format!("the execution is {status}"),
                    ))
                }
                _ => Some(id),
            }
        };
        let response = DescribeJobExecutionResponse {
            execution: id
                .and_then(|id| self.executions.get(id))
                .map(|e| self.job_execution(e, include_document, now_ms)),
            timestamp: timestamp(now_ms),
            client_token: None,
        };
        Ok((response, Vec::new()))
    }

    /// StartNextPendingJobExecution: a QUEUED head goes IN_PROGRESS (statusDetails replaced
    /// when given); an IN_PROGRESS head is returned unchanged; nothing pending gives an empty
    /// response.
    pub fn start_next_pending_job_execution(
        &mut self,
        thing: &str,
        status_details: Option<StatusDetails>,
        step_timeout_in_minutes: Option<i64>,
        now_ms: u64,
    ) -> Answer<StartNextPendingJobExecutionResponse> {
        self.admit(thing)?;
        validate_status_details(status_details.as_ref())?;
        validate_step_timeout(step_timeout_in_minutes, false)?;
        let before = self.snapshot(thing);
        let head = self.executions.head(thing);
        if let Some(id) = head {
            if self.executions.get(id).map(|e| e.status) == Some(JobStatus::Queued) {
                self.start_execution(id, status_details, step_timeout_in_minutes, now_ms);
            }
        }
        let response = StartNextPendingJobExecutionResponse {
            execution: head
                .and_then(|id| self.executions.get(id))
                .map(|e| self.job_execution(e, true, now_ms)),
            timestamp: timestamp(now_ms),
            client_token: None,
        };
        Ok((response, self.notifications(thing, before, now_ms)))
    }

    /// UpdateJobExecution: a device sets IN_PROGRESS, SUCCEEDED, FAILED or REJECTED, with an
    /// optional `expectedVersion` check; a terminal execution cannot change.
    pub fn update_job_execution(
        &mut self,
        thing: &str,
        job_id: &str,
        request: &UpdateRequest,
        now_ms: u64,
    ) -> Answer<UpdateJobExecutionResponse> {
        self.admit(thing)?;
        if !matches!(
            request.status,
            JobStatus::InProgress | JobStatus::Succeeded | JobStatus::Failed | JobStatus::Rejected
        ) {
            return Err(invalid(
                "status must be IN_PROGRESS, SUCCEEDED, FAILED or REJECTED",
            ));
        }
        validate_status_details(request.status_details.as_ref())?;
        validate_step_timeout(request.step_timeout_in_minutes, true)?;
        let id = self
            .executions
            .find(thing, job_id, request.execution_number)
            .ok_or_else(|| {
                reject(
                    ErrorCode::ResourceNotFound,
                    format!("no execution of job {job_id} on {thing}"),
                )
            })?;
        self.check_version_and_state(id, request.expected_version)?;
        let before: Snapshot = self.snapshot(thing);
        self.report_status(
            id,
            request.status,
            request.status_details.clone(),
            request.step_timeout_in_minutes,
            now_ms,
        );
        let state = self.executions.get(id).map(execution_state);
        let response = UpdateJobExecutionResponse {
            execution_state: state.filter(|_| request.include_job_execution_state == Some(true)),
            job_document: self
                .jobs
                .get(job_id)
                .filter(|_| request.include_job_document == Some(true))
                .map(|j| self.device_document(j, now_ms)),
            timestamp: timestamp(now_ms),
            client_token: None,
        };
        Ok((response, self.notifications(thing, before, now_ms)))
    }

    /// VersionMismatch before InvalidStateTransition, both carrying the execution's state.
    fn check_version_and_state(
        &self,
        id: ExecId,
        expected_version: Option<i64>,
    ) -> Result<(), Rejection> {
        let Some(e) = self.executions.get(id) else {
            return Err(reject(ErrorCode::ResourceNotFound, "no such execution"));
        };
        let with_state = |code, message: String| Rejection {
            code,
            message,
            execution_state: Some(execution_state(e)),
        };
        if expected_version.is_some_and(|v| v != e.version_number) {
            return Err(with_state(
                ErrorCode::VersionMismatch,
                "expectedVersion does not match the execution's version".into(),
            ));
        }
        if e.status.is_terminal() {
            return Err(with_state(
                ErrorCode::InvalidStateTransition,
                format!("cannot update an execution that is {}", e.status),
            ));
        }
        Ok(())
    }
}

/// statusDetails: keys 1–128 of `[a-zA-Z0-9:_-]`, values 1–1024 without control characters.
fn validate_status_details(details: Option<&StatusDetails>) -> Result<(), Rejection> {
    for (k, v) in details.into_iter().flatten() {
        let key_ok = (1..=128).contains(&k.chars().count())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'));
        if !key_ok {
            return Err(invalid(format!(
                "statusDetails key {k:?} must be 1-128 characters of [a-zA-Z0-9:_-]"
            )));
        }
        let value_ok = (1..=1024).contains(&v.chars().count()) && !v.chars().any(char::is_control);
        if !value_ok {
            return Err(invalid(format!(
                "statusDetails value of {k:?} must be 1-1024 characters without control characters"
            )));
        }
    }
    Ok(())
}

/// stepTimeoutInMinutes: 1–10080, and −1 (clear) on update.
fn validate_step_timeout(minutes: Option<i64>, allow_clear: bool) -> Result<(), Rejection> {
    match minutes {
        None => Ok(()),
        Some(-1) if allow_clear => Ok(()),
        Some(m) if (1..=10_080).contains(&m) => Ok(()),
        Some(_) => Err(invalid(
            "stepTimeoutInMinutes must be 1 to 10080 (or -1 on update)",
        )),
    }
}
