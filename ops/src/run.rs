//! `ggjh-ops run`: one job on one thing, waited for, its statusDetails printed.
//!
//! Owns: creating the one-thing job, polling DescribeJobExecution with back-off until a
//! terminal status or the timeout, and canceling the job when the thing never finished it.
//! Must not know: how the result is printed or which exit status it gets (main's).

use crate::backoff::Backoff;
use crate::connection::Iot;
use crate::error::{from_sdk, OpsError};
use aws_sdk_iot::types::{JobExecutionStatus, TargetSelection};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What `run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub thing: String,
    /// The job document, JSON text.
    pub document: String,
    pub timeout: Duration,
    /// The job's id; a fresh one when absent.
    pub job_id: Option<String>,
}

/// How the job ended on the thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub job_id: String,
    /// The terminal status, as AWS names it (`SUCCEEDED`, `FAILED`, …).
    pub status: String,
    pub status_details: BTreeMap<String, String>,
}

impl RunOutcome {
    pub fn succeeded(&self) -> bool {
        self.status == "SUCCEEDED"
    }
}

/// Whether an execution in `status` will change no more.
pub fn is_terminal(status: &JobExecutionStatus) -> bool {
    matches!(
        status,
        JobExecutionStatus::Succeeded
            | JobExecutionStatus::Failed
            | JobExecutionStatus::Rejected
            | JobExecutionStatus::TimedOut
            | JobExecutionStatus::Canceled
            | JobExecutionStatus::Removed
    )
}

fn fresh_job_id(thing: &str) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let safe: String = thing
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    format!("run-{safe}-{millis}-{}", std::process::id())
}

/// Creates the job and waits for its execution on the thing to end.
pub async fn run(iot: &Iot, request: &RunRequest) -> Result<RunOutcome, OpsError> {
    match serde_json::from_str::<serde_json::Value>(&request.document) {
        Ok(serde_json::Value::Object(_)) => {}
        Ok(_) => return Err(OpsError::Input("--document must be a JSON object".into())),
        Err(e) => {
            return Err(OpsError::Input(format!(
                "--document is not valid JSON: {e}"
            )))
        }
    }
    let thing = &request.thing;
    let described = iot
        .client
        .describe_thing()
        .thing_name(thing)
        .send()
        .await
        .map_err(|e| {
            from_sdk(
                "DescribeThing",
                || format!("thing {thing}"),
                iot.attempts,
                e,
            )
        })?;
    let Some(thing_arn) = described.thing_arn() else {
        return Err(OpsError::Input(format!(
            "DescribeThing answered no thingArn for {thing}"
        )));
    };
    let job_id = request
        .job_id
        .clone()
        .unwrap_or_else(|| fresh_job_id(thing));
    iot.client
        .create_job()
        .job_id(&job_id)
        .targets(thing_arn)
        .document(&request.document)
        .target_selection(TargetSelection::Snapshot)
        .description(format!("ggjh-ops run on {thing}"))
        .send()
        .await
        .map_err(|e| from_sdk("CreateJob", || format!("thing {thing}"), iot.attempts, e))?;

    let deadline = Instant::now() + request.timeout;
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    let mut last_status = "QUEUED".to_owned();
    loop {
        let answer = iot
            .client
            .describe_job_execution()
            .job_id(&job_id)
            .thing_name(thing)
            .send()
            .await;
        match answer {
            Ok(out) => {
                if let Some(execution) = out.execution() {
                    let status = execution
                        .status()
                        .cloned()
                        .unwrap_or(JobExecutionStatus::Queued);
                    if status.as_str() != last_status {
                        last_status = status.as_str().to_owned();
                        backoff.reset();
                    }
                    if is_terminal(&status) {
                        let status_details = execution
                            .status_details()
                            .and_then(|d| d.details_map())
                            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                            .unwrap_or_default();
                        return Ok(RunOutcome {
                            job_id,
                            status: status.as_str().to_owned(),
                            status_details,
                        });
                    }
                }
            }
            // Just after CreateJob the execution may not be readable yet.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => {
                return Err(from_sdk(
                    "DescribeJobExecution",
                    || format!("execution of job {job_id} on {thing}"),
                    iot.attempts,
                    e,
                ))
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            iot.client
                .cancel_job()
                .job_id(&job_id)
                .comment("ggjh-ops run: the thing did not finish in time")
                .send()
                .await
                .map_err(|e| from_sdk("CancelJob", || format!("job {job_id}"), iot.attempts, e))?;
            return Err(OpsError::Timeout {
                thing: thing.clone(),
                job_id,
                seconds: request.timeout.as_secs(),
                status: last_status,
            });
        }
        tokio::time::sleep(backoff.next_delay(left)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_job_ids_are_valid_job_ids() {
        let id = fresh_job_id("arn:weird/name with spaces");
        assert!(id.len() <= 64, "{id}");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{id}"
        );
        assert!(id.starts_with("run-arn_weird_name_with_spaces-"), "{id}");
    }

    #[test]
    fn terminal_statuses() {
        assert!(is_terminal(&JobExecutionStatus::Succeeded));
        assert!(is_terminal(&JobExecutionStatus::Removed));
        assert!(!is_terminal(&JobExecutionStatus::InProgress));
        assert!(!is_terminal(&JobExecutionStatus::Queued));
    }
}
