//! `abortConfig.criteriaList`: failure criteria that cancel a job.
//!
//! Owns: the criteria, their validation (the API's ranges) and the check made after every
//! execution that ends: once at least `minNumberOfExecutedThings` things were notified and
//! the executions of `failureType` make up at least `thresholdPercentage` of the things
//! notified, the job is canceled: status CANCELED, `reasonCode` `ABORTED` and a `comment`
//! naming the criterion (AWS's own wording is not documented), QUEUED executions CANCELED,
//! things still waiting for the rollout never notified, IN_PROGRESS executions left to finish
//! and retries not queued. Must not know: wire formats, devices or timers.

use super::{control, ControlError, JobState, JobsService, Output};
use crate::jobs::messages::JobStatus;

/// `failureType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureType {
    Failed,
    Rejected,
    TimedOut,
    All,
}

impl FailureType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "FAILED",
            Self::Rejected => "REJECTED",
            Self::TimedOut => "TIMED_OUT",
            Self::All => "ALL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Failed, Self::Rejected, Self::TimedOut, Self::All]
            .into_iter()
            .find(|f| f.as_str() == s)
    }

    fn statuses(self) -> &'static [JobStatus] {
        match self {
            Self::Failed => &[JobStatus::Failed],
            Self::Rejected => &[JobStatus::Rejected],
            Self::TimedOut => &[JobStatus::TimedOut],
            Self::All => &[JobStatus::Failed, JobStatus::Rejected, JobStatus::TimedOut],
        }
    }
}

/// One abort criterion (the only action is CANCEL).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AbortCriterion {
    pub failure_type: FailureType,
    pub threshold_percentage: f64,
    pub min_number_of_executed_things: u32,
}

/// The reasonCode of a job the abort criteria canceled.
pub const ABORTED: &str = "ABORTED";

impl AbortCriterion {
    pub fn validate(&self) -> Result<(), ControlError> {
        let p = self.threshold_percentage;
        if !(p > 0.0 && p <= 100.0) || ((p * 100.0).round() - p * 100.0).abs() > 1e-6 {
            return Err(control(
                "InvalidRequestException",
                format!("thresholdPercentage must be above 0, at most 100, with at most two decimals; got {p}"),
            ));
        }
        if self.min_number_of_executed_things < 1 {
            return Err(control(
                "InvalidRequestException",
                "minNumberOfExecutedThings must be at least 1",
            ));
        }
        Ok(())
    }
}

impl JobsService {
    /// Cancels `job_id` when one of its abort criteria is met; what that sends is queued.
    pub(super) fn check_abort(&mut self, job_id: &str, now_ms: u64) {
        let Some(job) = self
            .jobs
            .get(job_id)
            .filter(|j| j.state == JobState::InProgress && !j.abort.is_empty())
        else {
            return;
        };
        let counts = self.job_counts(job_id);
        let notified = counts.notified;
        let met = job.abort.iter().find(|c| {
            let failures: usize = c
                .failure_type
                .statuses()
                .iter()
                .map(|s| counts.of(*s))
                .sum();
            notified >= c.min_number_of_executed_things as usize
                && notified > 0
                && failures as f64 * 100.0 >= c.threshold_percentage * notified as f64
        });
        let Some(criterion) = met.copied() else {
            return;
        };
        let comment = format!(
            "aborted: {} executions reached {}% of {} things notified (at least {})",
            criterion.failure_type.as_str(),
            criterion.threshold_percentage,
            notified,
            criterion.min_number_of_executed_things
        );
        tracing::info!(job_id, %comment, "abort criteria met");
        let out: Vec<Output> = self
            .cancel_job(job_id, false, Some(ABORTED), now_ms)
            .unwrap_or_default();
        if let Some(job) = self.jobs.get_mut(job_id) {
            job.comment = Some(comment);
        }
        self.queued.extend(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_are_validated() {
        let ok = AbortCriterion {
            failure_type: FailureType::All,
            threshold_percentage: 10.55,
            min_number_of_executed_things: 1,
        };
        assert!(ok.validate().is_ok());
        for bad in [
            AbortCriterion {
                threshold_percentage: 100.5,
                ..ok
            },
            AbortCriterion {
                threshold_percentage: 10.555,
                ..ok
            },
            AbortCriterion {
                threshold_percentage: 0.0,
                ..ok
            },
            AbortCriterion {
                min_number_of_executed_things: 0,
                ..ok
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert_eq!(FailureType::parse("TIMED_OUT"), Some(FailureType::TimedOut));
        assert_eq!(FailureType::parse("CANCELED"), None);
    }
}
