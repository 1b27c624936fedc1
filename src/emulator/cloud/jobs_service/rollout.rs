//! The rate a job's executions are created (and their things notified) at:
//! `jobExecutionsRolloutConfig` (`maximumPerMinute`, `exponentialRate`) under the account's
//! quota (MaximumJobExecutionsPerMinute), on the service's timer index.
//!
//! Owns: the rollout configuration and its validation (the API reference's ranges), the
//! account quotas, and per job the things still waiting to be notified (in name order) and
//! when the next one may go. Releases are spaced evenly: at `r` per minute the k-th thing of a
//! rollout goes `k × 60000 / r` ms after the first, so no 60-second window holds more than
//! `r`. The account quota spaces releases across every job the same way. An exponential rate
//! starts at `baseRatePerMinute` and is multiplied by `incrementFactor` each time another
//! `numberOfNotifiedThings` were notified (or `numberOfSucceededThings` succeeded), up to
//! `maximumPerMinute` when given, else 1000. As the developer guide says, the rate applies to
//! the things targeted when the job starts; a thing that joins a continuous job's group later
//! gets its execution at once. Without a rate and without an account quota every target is
//! notified at once. Must not know: wire formats, devices or what drives the clock.

use super::{control, ControlError, JobState, JobsService, Output};
use std::collections::BTreeSet;

/// The API's ceiling for `maximumPerMinute` and `baseRatePerMinute`.
pub const MAX_RATE_PER_MINUTE: u32 = 1000;
const MINUTE_MS: f64 = 60_000.0;

/// What the rate goes up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateIncreaseCriteria {
    /// `numberOfNotifiedThings`.
    NotifiedThings(u32),
    /// `numberOfSucceededThings`.
    SucceededThings(u32),
}

/// `exponentialRate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialRate {
    pub base_rate_per_minute: u32,
    pub increment_factor: f64,
    pub criteria: RateIncreaseCriteria,
}

/// `jobExecutionsRolloutConfig`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RolloutConfig {
    pub maximum_per_minute: Option<u32>,
    pub exponential: Option<ExponentialRate>,
}

impl RolloutConfig {
    /// The ranges of the API reference (JobExecutionsRolloutConfig, ExponentialRolloutRate,
    /// RateIncreaseCriteria).
    pub fn validate(&self) -> Result<(), ControlError> {
        if let Some(m) = self.maximum_per_minute {
            if !(1..=MAX_RATE_PER_MINUTE).contains(&m) {
                return Err(invalid(format!(
                    "maximumPerMinute must be 1 to {MAX_RATE_PER_MINUTE}, got {m}"
                )));
            }
        }
        if let Some(e) = self.exponential {
            if !(1..=MAX_RATE_PER_MINUTE).contains(&e.base_rate_per_minute) {
                return Err(invalid(format!(
                    "baseRatePerMinute must be 1 to {MAX_RATE_PER_MINUTE}, got {}",
                    e.base_rate_per_minute
                )));
            }
            let f = e.increment_factor;
            let tenths = (f * 10.0).round();
            if !(1.1..=5.0).contains(&f) || (f * 10.0 - tenths).abs() > 1e-9 {
                return Err(invalid(format!(
                    "incrementFactor must be 1.1 to 5 with one decimal place, got {f}"
                )));
            }
            let n = match e.criteria {
                RateIncreaseCriteria::NotifiedThings(n)
                | RateIncreaseCriteria::SucceededThings(n) => n,
            };
            if n < 1 {
                return Err(invalid("rateIncreaseCriteria values must be at least 1"));
            }
        }
        Ok(())
    }

    /// The rate a rollout starts at (`None`: no limit of its own).
    fn initial_rate(&self) -> Option<f64> {
        match (self.exponential, self.maximum_per_minute) {
            (Some(e), Some(m)) => Some(f64::from(e.base_rate_per_minute.min(m))),
            (Some(e), None) => Some(f64::from(e.base_rate_per_minute)),
            (None, m) => m.map(f64::from),
        }
    }

    fn ceiling(&self) -> f64 {
        f64::from(self.maximum_per_minute.unwrap_or(MAX_RATE_PER_MINUTE))
    }
}

/// The account's limits, as configurable values (`None`: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountQuotas {
    /// MaximumJobExecutionsPerMinute: executions created per minute across every job.
    pub max_job_executions_per_minute: Option<u32>,
    /// Jobs IN_PROGRESS or SCHEDULED at once; CreateJob beyond it is LimitExceededException.
    pub max_concurrent_jobs: Option<usize>,
}

impl AccountQuotas {
    pub fn validate(&self) -> Result<(), ControlError> {
        if self.max_job_executions_per_minute == Some(0) || self.max_concurrent_jobs == Some(0) {
            return Err(invalid("a quota must be at least 1"));
        }
        Ok(())
    }
}

fn invalid(message: impl Into<String>) -> ControlError {
    control("InvalidRequestException", message)
}

fn interval_ms(rate_per_minute: f64) -> u64 {
    (MINUTE_MS / rate_per_minute).ceil() as u64
}

/// One job's rollout: who is still to be notified, and when the next one may go.
#[derive(Debug, Default)]
pub(super) struct Rollout {
    waiting: BTreeSet<String>,
    rate_per_minute: Option<f64>,
    next_release_ms: u64,
    last_release_ms: u64,
    /// Notified or succeeded (by the criteria) since the rate last went up.
    since_increase: u32,
    /// No more releases (the schedule's STOP_ROLLOUT, a cancel, an abort).
    pub(super) stopped: bool,
    /// The scheduled end has been acted on.
    pub(super) ended: bool,
}

impl Rollout {
    pub(super) fn new(config: &RolloutConfig, things: BTreeSet<String>, now_ms: u64) -> Self {
        Self {
            waiting: things,
            rate_per_minute: config.initial_rate(),
            next_release_ms: now_ms,
            last_release_ms: now_ms,
            ..Self::default()
        }
    }

    pub(super) fn has_waiting(&self) -> bool {
        !self.stopped && !self.waiting.is_empty()
    }

    pub(super) fn waiting_count(&self) -> usize {
        if self.stopped {
            0
        } else {
            self.waiting.len()
        }
    }

    pub(super) fn is_waiting(&self, thing: &str) -> bool {
        !self.stopped && self.waiting.contains(thing)
    }

    /// Drops `thing` from the waiting set (it left the targeted groups before its turn).
    pub(super) fn forget(&mut self, thing: &str) -> bool {
        self.waiting.remove(thing)
    }

    pub(super) fn stop(&mut self) {
        self.stopped = true;
        self.waiting.clear();
    }

    fn increase(&mut self, config: &RolloutConfig) {
        let Some(e) = config.exponential else {
            return;
        };
        let rate = self
            .rate_per_minute
            .unwrap_or(f64::from(e.base_rate_per_minute));
        let raised = (rate * e.increment_factor).min(config.ceiling());
        tracing::debug!(from = rate, to = raised, "rollout rate increased");
        self.rate_per_minute = Some(raised);
        self.since_increase = 0;
        self.next_release_ms = self.last_release_ms + interval_ms(raised);
    }
}

impl JobsService {
    /// The earliest instant `job_id`'s next waiting thing may be notified, by its rate, the
    /// account quota and its maintenance windows (`None`: nothing to release).
    pub(super) fn release_slot(&self, job_id: &str) -> Option<u64> {
        let rollout = self.rollouts.get(job_id).filter(|r| r.has_waiting())?;
        let job = self
            .jobs
            .get(job_id)
            .filter(|j| j.state == JobState::InProgress)?;
        let mut at = rollout.next_release_ms;
        if self.quotas.max_job_executions_per_minute.is_some() {
            at = at.max(self.account_next_release_ms);
        }
        match &job.scheduling {
            Some(s) if !s.maintenance_windows.is_empty() => s.window_open_at_or_after(at),
            _ => Some(at),
        }
    }

    /// Notifies as many of `job_id`'s waiting things as its rate allows at `now_ms`, then
    /// files its next timer.
    pub(super) fn release_due(&mut self, job_id: &str, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        while let Some(at) = self.release_slot(job_id).filter(|at| *at <= now_ms) {
            let Some(rollout) = self.rollouts.get_mut(job_id) else {
                break;
            };
            let Some(thing) = rollout.waiting.pop_first() else {
                break;
            };
            // Spaced from the instant of release, so a slot that fell due earlier (a rate
            // just raised, a coarse tick) never lets a burst out.
            let at = at.max(now_ms);
            rollout.last_release_ms = at;
            rollout.next_release_ms = match rollout.rate_per_minute {
                Some(rate) => at + interval_ms(rate),
                None => at,
            };
            if let Some(q) = self.quotas.max_job_executions_per_minute {
                self.account_next_release_ms = at + interval_ms(f64::from(q));
            }
            let before = self.snapshot(&thing);
            self.queue_execution(job_id, &thing, 0, now_ms);
            out.extend(self.notifications(&thing, before, now_ms));
            if let Some(RateIncreaseCriteria::NotifiedThings(n)) = self
                .jobs
                .get(job_id)
                .and_then(|j| j.rollout.exponential)
                .map(|e| e.criteria)
            {
                self.bump_rate(job_id, n);
            }
        }
        self.complete_job_if_done(job_id, now_ms);
        self.reschedule_job(job_id);
        out
    }

    /// One more thing counted towards the exponential rate's next increase.
    fn bump_rate(&mut self, job_id: &str, every: u32) {
        let Some(config) = self.jobs.get(job_id).map(|j| j.rollout) else {
            return;
        };
        if let Some(r) = self.rollouts.get_mut(job_id) {
            r.since_increase += 1;
            if r.since_increase >= every {
                r.increase(&config);
            }
        }
    }

    /// An execution of `job_id` succeeded: counts towards `numberOfSucceededThings`.
    pub(super) fn rollout_on_success(&mut self, job_id: &str) {
        if let Some(RateIncreaseCriteria::SucceededThings(n)) = self
            .jobs
            .get(job_id)
            .and_then(|j| j.rollout.exponential)
            .map(|e| e.criteria)
        {
            self.bump_rate(job_id, n);
            self.reschedule_job(job_id);
        }
    }

    /// Whether `job_id` still has things to notify (so a snapshot job is not complete yet).
    pub(super) fn rollout_waiting(&self, job_id: &str) -> usize {
        self.rollouts.get(job_id).map_or(0, Rollout::waiting_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_the_api_ranges() {
        let ok = RolloutConfig {
            maximum_per_minute: Some(1000),
            exponential: Some(ExponentialRate {
                base_rate_per_minute: 1,
                increment_factor: 1.1,
                criteria: RateIncreaseCriteria::NotifiedThings(1),
            }),
        };
        assert!(ok.validate().is_ok());
        let bad = [
            RolloutConfig {
                maximum_per_minute: Some(0),
                exponential: None,
            },
            RolloutConfig {
                maximum_per_minute: Some(1001),
                exponential: None,
            },
            RolloutConfig {
                exponential: Some(ExponentialRate {
                    increment_factor: 1.15,
                    ..ok.exponential.unwrap()
                }),
                ..ok
            },
            RolloutConfig {
                exponential: Some(ExponentialRate {
                    increment_factor: 5.1,
                    ..ok.exponential.unwrap()
                }),
                ..ok
            },
            RolloutConfig {
                exponential: Some(ExponentialRate {
                    base_rate_per_minute: 0,
                    ..ok.exponential.unwrap()
                }),
                ..ok
            },
            RolloutConfig {
                exponential: Some(ExponentialRate {
                    criteria: RateIncreaseCriteria::SucceededThings(0),
                    ..ok.exponential.unwrap()
                }),
                ..ok
            },
        ];
        for b in bad {
            assert_eq!(
                b.validate().map_err(|e| e.code),
                Err("InvalidRequestException"),
                "{b:?}"
            );
        }
    }

    #[test]
    fn exponential_rate_rises_by_the_factor_up_to_the_ceiling() {
        let config = RolloutConfig {
            maximum_per_minute: Some(30),
            exponential: Some(ExponentialRate {
                base_rate_per_minute: 10,
                increment_factor: 2.0,
                criteria: RateIncreaseCriteria::NotifiedThings(5),
            }),
        };
        let mut r = Rollout::new(&config, BTreeSet::new(), 0);
        assert_eq!(r.rate_per_minute, Some(10.0));
        r.increase(&config);
        assert_eq!(r.rate_per_minute, Some(20.0));
        r.increase(&config);
        assert_eq!(r.rate_per_minute, Some(30.0), "capped by maximumPerMinute");
        assert_eq!(r.next_release_ms, 2_000);
    }
}
