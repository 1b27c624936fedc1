//! `ggjh-ops status`: a job's counts by execution status and the executions that did not
//! succeed, with their reasons.
//!
//! Owns: reading DescribeJob's jobProcessDetails and listing FAILED, REJECTED and TIMED_OUT
//! executions (each described for its statusDetails), and their text and JSON forms. Must not
//! know: how the job was created.

use crate::connection::Iot;
use crate::error::{from_sdk, OpsError};
use aws_sdk_iot::types::{JobExecutionStatus, JobProcessDetails};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Executions in each status, as DescribeJob counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub queued: i64,
    pub in_progress: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub rejected: i64,
    pub timed_out: i64,
    pub canceled: i64,
    pub removed: i64,
}

impl Counts {
    pub fn from_details(d: Option<&JobProcessDetails>) -> Self {
        let n = |v: Option<i32>| i64::from(v.unwrap_or(0));
        let Some(d) = d else {
            return Self::default();
        };
        Self {
            queued: n(d.number_of_queued_things()),
            in_progress: n(d.number_of_in_progress_things()),
            succeeded: n(d.number_of_succeeded_things()),
            failed: n(d.number_of_failed_things()),
            rejected: n(d.number_of_rejected_things()),
            timed_out: n(d.number_of_timed_out_things()),
            canceled: n(d.number_of_canceled_things()),
            removed: n(d.number_of_removed_things()),
        }
    }

    /// Executions that reached a status they will not leave.
    pub fn finished(&self) -> i64 {
        self.succeeded + self.unsuccessful() + self.canceled + self.removed
    }

    /// FAILED, REJECTED and TIMED_OUT together.
    pub fn unsuccessful(&self) -> i64 {
        self.failed + self.rejected + self.timed_out
    }

    pub fn to_json(self) -> Value {
        json!({
            "queued": self.queued,
            "inProgress": self.in_progress,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "rejected": self.rejected,
            "timedOut": self.timed_out,
            "canceled": self.canceled,
            "removed": self.removed,
        })
    }

    /// One line: `queued 3, in progress 1, succeeded 5, failed 1, rejected 0, timed out 0, canceled 0, removed 0`.
    pub fn line(&self) -> String {
        format!(
            "queued {}, in progress {}, succeeded {}, failed {}, rejected {}, timed out {}, canceled {}, removed {}",
            self.queued,
            self.in_progress,
            self.succeeded,
            self.failed,
            self.rejected,
            self.timed_out,
            self.canceled,
            self.removed
        )
    }
}

/// One execution that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub thing: String,
    pub status: String,
    pub execution_number: Option<i64>,
    pub status_details: BTreeMap<String, String>,
}

impl Failure {
    /// The reason the device gave (`reason`, else every detail), or a placeholder.
    pub fn reason(&self) -> String {
        if let Some(r) = self.status_details.get("reason") {
            return r.clone();
        }
        if self.status_details.is_empty() {
            return "(no statusDetails)".to_owned();
        }
        self.status_details
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What `status` reports.
#[derive(Debug, Clone)]
pub struct JobReport {
    pub job_id: String,
    pub status: String,
    pub target_selection: String,
    pub reason_code: Option<String>,
    pub comment: Option<String>,
    pub counts: Counts,
    pub failures: Vec<Failure>,
    /// Unsuccessful executions beyond those listed.
    pub more_failures: i64,
}

impl JobReport {
    pub fn to_json(&self) -> Value {
        let failures: Vec<Value> = self
            .failures
            .iter()
            .map(|f| {
                json!({
                    "thingName": f.thing,
                    "status": f.status,
                    "executionNumber": f.execution_number,
                    "statusDetails": f.status_details,
                })
            })
            .collect();
        json!({
            "jobId": self.job_id,
            "status": self.status,
            "targetSelection": self.target_selection,
            "reasonCode": self.reason_code,
            "comment": self.comment,
            "counts": self.counts.to_json(),
            "failures": failures,
            "moreFailures": self.more_failures,
        })
    }

    pub fn text(&self) -> String {
        let mut out = format!(
            "job {}: {} ({})\n{}\n",
            self.job_id,
            self.status,
            self.target_selection,
            self.counts.line()
        );
        if let Some(code) = &self.reason_code {
            out.push_str(&format!("reason code: {code}\n"));
        }
        if let Some(comment) = &self.comment {
            out.push_str(&format!("comment: {comment}\n"));
        }
        if !self.failures.is_empty() {
            out.push_str("not succeeded:\n");
            for f in &self.failures {
                let number = f
                    .execution_number
                    .map_or(String::new(), |n| format!(" #{n}"));
                out.push_str(&format!(
                    "  {} {}{}: {}\n",
                    f.thing,
                    f.status,
                    number,
                    f.reason()
                ));
            }
        }
        if self.more_failures > 0 {
            out.push_str(&format!("  … and {} more\n", self.more_failures));
        }
        out
    }
}

/// The thing name at the end of a thing ARN (`arn:aws:iot:r:a:thing/NAME`).
pub fn thing_of_arn(arn: &str) -> &str {
    arn.rsplit_once(":thing/").map_or(arn, |(_, name)| name)
}

/// Reads the job's status and counts, and describes at most `max_failures` executions that
/// did not succeed.
pub async fn status(iot: &Iot, job_id: &str, max_failures: usize) -> Result<JobReport, OpsError> {
    let described = iot
        .client
        .describe_job()
        .job_id(job_id)
        .send()
        .await
        .map_err(|e| from_sdk("DescribeJob", || format!("job {job_id}"), iot.attempts, e))?;
    let Some(job) = described.job() else {
        return Err(OpsError::Input(format!(
            "DescribeJob answered no job for {job_id}"
        )));
    };
    let counts = Counts::from_details(job.job_process_details());
    let mut failures = Vec::new();
    let mut listed = 0_i64;
    for wanted in [
        JobExecutionStatus::Failed,
        JobExecutionStatus::Rejected,
        JobExecutionStatus::TimedOut,
    ] {
        let mut pages = iot
            .client
            .list_job_executions_for_job()
            .job_id(job_id)
            .status(wanted.clone())
            .max_results(250)
            .into_paginator()
            .items()
            .send();
        while let Some(summary) = pages.next().await {
            let summary = summary.map_err(|e| {
                from_sdk(
                    "ListJobExecutionsForJob",
                    || format!("job {job_id}"),
                    iot.attempts,
                    e,
                )
            })?;
            listed += 1;
            if failures.len() >= max_failures {
                continue;
            }
            let thing = thing_of_arn(summary.thing_arn().unwrap_or_default()).to_owned();
            let number = summary
                .job_execution_summary()
                .and_then(|s| s.execution_number());
            let mut describe = iot
                .client
                .describe_job_execution()
                .job_id(job_id)
                .thing_name(&thing);
            if let Some(n) = number {
                describe = describe.execution_number(n);
            }
            let execution = describe.send().await.map_err(|e| {
                from_sdk(
                    "DescribeJobExecution",
                    || format!("execution of job {job_id} on {thing}"),
                    iot.attempts,
                    e,
                )
            })?;
            let status_details = execution
                .execution()
                .and_then(|e| e.status_details())
                .and_then(|d| d.details_map())
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            failures.push(Failure {
                thing,
                status: wanted.as_str().to_owned(),
                execution_number: number,
                status_details,
            });
        }
    }
    Ok(JobReport {
        job_id: job_id.to_owned(),
        status: job.status().map_or("UNKNOWN", |s| s.as_str()).to_owned(),
        target_selection: job
            .target_selection()
            .map_or("SNAPSHOT", |s| s.as_str())
            .to_owned(),
        reason_code: job.reason_code().map(str::to_owned),
        comment: job.comment().map(str::to_owned),
        counts,
        more_failures: listed - failures.len() as i64,
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_text_names_each_failure_and_its_reason() {
        let report = JobReport {
            job_id: "j".into(),
            status: "IN_PROGRESS".into(),
            target_selection: "SNAPSHOT".into(),
            reason_code: None,
            comment: None,
            counts: Counts {
                succeeded: 2,
                failed: 1,
                rejected: 1,
                ..Counts::default()
            },
            failures: vec![
                Failure {
                    thing: "t1".into(),
                    status: "FAILED".into(),
                    execution_number: Some(1),
                    status_details: [("reason".to_owned(), "boom".to_owned())].into(),
                },
                Failure {
                    thing: "t2".into(),
                    status: "REJECTED".into(),
                    execution_number: None,
                    status_details: [("a".to_owned(), "1".to_owned())].into(),
                },
            ],
            more_failures: 3,
        };
        assert_eq!(
            report.text(),
            "job j: IN_PROGRESS (SNAPSHOT)\nqueued 0, in progress 0, succeeded 2, failed 1, rejected 1, timed out 0, canceled 0, removed 0\nnot succeeded:\n  t1 FAILED #1: boom\n  t2 REJECTED: a=1\n  … and 3 more\n"
        );
        assert_eq!(report.counts.finished(), 4);
        assert_eq!(
            report.to_json()["failures"][0]["statusDetails"]["reason"],
            "boom"
        );
    }

    #[test]
    fn thing_names_come_from_arns() {
        assert_eq!(
            thing_of_arn("arn:aws:iot:us-east-1:1:thing/core-1"),
            "core-1"
        );
        assert_eq!(thing_of_arn("core-1"), "core-1");
    }
}
