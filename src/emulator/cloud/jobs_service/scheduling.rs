//! `schedulingConfig`: a job's start and end time, what happens at the end, and the
//! maintenance windows its rollout is confined to.
//!
//! Owns: parsing and validating the configuration (times as `yyyy-MM-dd'T'HH:mm` in UTC;
//! startTime at least 30 minutes and at most a year ahead; endTime at least 30 minutes after
//! startTime and at most two years ahead; windows of 1–1430 minutes on [`Cron`] starts), and
//! whether an instant falls in a window. A scheduled job is SCHEDULED until its start, with no
//! executions (so none are listed); at its start its targets are resolved and its rollout
//! begins; at its end `STOP_ROLLOUT` notifies no one more, `CANCEL` cancels it as CancelJob
//! does and `FORCE_CANCEL` cancels IN_PROGRESS executions too. Outside its windows a rollout
//! pauses; executions already notified go on. Must not know: wire formats or clocks.

use super::cron::Cron;
use super::{control, ControlError, JobState, JobsService, Output};
use time::macros::format_description;
use time::PrimitiveDateTime;

const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 86_400_000;

/// `endBehavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndBehavior {
    #[default]
    StopRollout,
    Cancel,
    ForceCancel,
}

impl EndBehavior {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StopRollout => "STOP_ROLLOUT",
            Self::Cancel => "CANCEL",
            Self::ForceCancel => "FORCE_CANCEL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::StopRollout, Self::Cancel, Self::ForceCancel]
            .into_iter()
            .find(|b| b.as_str() == s)
    }
}

/// One of `maintenanceWindows`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    pub start: Cron,
    pub duration_minutes: u32,
}

/// `schedulingConfig`, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SchedulingConfig {
    /// `startTime` as given, and as epoch ms.
    pub start_time: Option<(String, u64)>,
    pub end_time: Option<(String, u64)>,
    pub end_behavior: Option<EndBehavior>,
    pub maintenance_windows: Vec<MaintenanceWindow>,
}

fn invalid(message: impl Into<String>) -> ControlError {
    control("InvalidRequestException", message)
}

/// `yyyy-MM-dd'T'HH:mm` (UTC) to epoch ms.
pub fn parse_time(text: &str) -> Result<u64, ControlError> {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let t = PrimitiveDateTime::parse(text, &format).map_err(|e| {
        invalid(format!(
            "{text:?} is not a time of the form yyyy-MM-ddTHH:mm: {e}"
        ))
    })?;
    u64::try_from(t.assume_utc().unix_timestamp())
        .map(|s| s * 1000)
        .map_err(|_| invalid(format!("{text:?} is before 1970")))
}

impl SchedulingConfig {
    /// Builds and validates the configuration against the time of CreateJob.
    pub fn new(
        start_time: Option<&str>,
        end_time: Option<&str>,
        end_behavior: Option<&str>,
        windows: &[(String, u32)],
        now_ms: u64,
    ) -> Result<Self, ControlError> {
        let start_time = start_time
            .map(|s| parse_time(s).map(|ms| (s.to_owned(), ms)))
            .transpose()?;
        let end_time = end_time
            .map(|s| parse_time(s).map(|ms| (s.to_owned(), ms)))
            .transpose()?;
        if let Some((text, at)) = &start_time {
            if *at < now_ms + 30 * MINUTE_MS || *at > now_ms + 366 * DAY_MS {
                return Err(invalid(format!(
                    "startTime {text} must be at least 30 minutes and at most a year ahead"
                )));
            }
        }
        if let Some((text, at)) = &end_time {
            let Some((_, start)) = &start_time else {
                return Err(invalid("endTime needs a startTime"));
            };
            if *at < start + 30 * MINUTE_MS || *at > now_ms + 2 * 366 * DAY_MS {
                return Err(invalid(format!(
                    "endTime {text} must be at least 30 minutes after startTime and at most two years ahead"
                )));
            }
        }
        let end_behavior = end_behavior
            .map(|b| {
                EndBehavior::parse(b).ok_or_else(|| {
                    invalid(format!(
                        "endBehavior must be STOP_ROLLOUT, CANCEL or FORCE_CANCEL, got {b:?}"
                    ))
                })
            })
            .transpose()?;
        if end_behavior.is_some() && end_time.is_none() {
            return Err(invalid("endBehavior needs an endTime"));
        }
        let mut maintenance_windows = Vec::new();
        for (cron, minutes) in windows {
            if !(1..=1430).contains(minutes) {
                return Err(invalid(format!(
                    "durationInMinutes must be 1 to 1430, got {minutes}"
                )));
            }
            let start = Cron::parse(cron)
                .map_err(|e| invalid(format!("maintenance window startTime: {e}")))?;
            maintenance_windows.push(MaintenanceWindow {
                start,
                duration_minutes: *minutes,
            });
        }
        Ok(Self {
            start_time,
            end_time,
            end_behavior,
            maintenance_windows,
        })
    }

    pub fn start_ms(&self) -> Option<u64> {
        self.start_time.as_ref().map(|(_, ms)| *ms)
    }

    pub fn end_ms(&self) -> Option<u64> {
        self.end_time.as_ref().map(|(_, ms)| *ms)
    }

    /// The first instant at or after `at` inside a maintenance window (`at` itself when no
    /// windows are configured).
    pub fn window_open_at_or_after(&self, at: u64) -> Option<u64> {
        if self.maintenance_windows.is_empty() {
            return Some(at);
        }
        self.maintenance_windows
            .iter()
            .filter_map(|w| {
                let length = u64::from(w.duration_minutes) * MINUTE_MS;
                // A window open at `at` started in (at − length, at].
                let opened = w.start.next_at_or_after((at + 1).saturating_sub(length))?;
                Some(if opened <= at { at } else { opened })
            })
            .min()
    }
}

impl JobsService {
    /// The start time of a SCHEDULED job came: its targets are resolved now and its rollout
    /// begins.
    pub(super) fn start_scheduled_job(&mut self, job_id: &str, now_ms: u64) -> Vec<Output> {
        let Some(job) = self
            .jobs
            .get_mut(job_id)
            .filter(|j| j.state == JobState::Scheduled)
        else {
            return Vec::new();
        };
        job.state = JobState::InProgress;
        job.last_updated_at_ms = now_ms;
        tracing::info!(job_id, "scheduled job started");
        self.begin_rollout(job_id, now_ms);
        self.release_due(job_id, now_ms)
    }

    /// The end time of a job came: its end behaviour.
    pub(super) fn end_scheduled_job(&mut self, job_id: &str, now_ms: u64) -> Vec<Output> {
        let Some(behavior) = self
            .jobs
            .get(job_id)
            .and_then(|j| j.scheduling.as_ref())
            .map(|s| s.end_behavior.unwrap_or_default())
        else {
            return Vec::new();
        };
        if let Some(r) = self.rollouts.get_mut(job_id) {
            r.ended = true;
            r.stop();
        }
        let state = self.jobs.get(job_id).map(|j| j.state);
        tracing::info!(
            job_id,
            behavior = behavior.as_str(),
            "scheduled job reached its end time"
        );
        let out = match (behavior, state) {
            (_, Some(JobState::Canceled | JobState::Completed) | None) => Vec::new(),
            (EndBehavior::StopRollout, _) => {
                self.complete_job_if_done(job_id, now_ms);
                Vec::new()
            }
            (EndBehavior::Cancel | EndBehavior::ForceCancel, _) => self
                .cancel_job(job_id, behavior == EndBehavior::ForceCancel, None, now_ms)
                .unwrap_or_default(),
        };
        self.reschedule_job(job_id);
        out
    }

    /// Whether a job's executions may still be created (its rollout has not been stopped).
    pub(super) fn rollout_open(&self, job_id: &str) -> bool {
        self.rollouts.get(job_id).is_none_or(|r| !r.stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEC_1: u64 = 1_796_083_200_000;

    #[test]
    fn times_and_ranges_are_checked() {
        assert_eq!(parse_time("2026-12-01T00:00"), Ok(DEC_1));
        assert!(parse_time("2026-12-01 00:00").is_err());
        let ok = SchedulingConfig::new(
            Some("2026-12-01T01:00"),
            Some("2026-12-01T02:00"),
            Some("FORCE_CANCEL"),
            &[("cron(0 0 ? * SUN *)".into(), 60)],
            DEC_1,
        )
        .unwrap();
        assert_eq!(ok.start_ms(), Some(DEC_1 + 60 * MINUTE_MS));
        assert_eq!(ok.end_behavior, Some(EndBehavior::ForceCancel));
        for (start, end, behavior, windows) in [
            (Some("2026-12-01T00:10"), None, None, vec![]),
            (Some("2028-12-01T00:00"), None, None, vec![]),
            (
                Some("2026-12-01T01:00"),
                Some("2026-12-01T01:10"),
                None,
                vec![],
            ),
            (None, Some("2026-12-01T05:00"), None, vec![]),
            (
                Some("2026-12-01T01:00"),
                Some("2026-12-01T05:00"),
                Some("LATER"),
                vec![],
            ),
            (
                None,
                None,
                None,
                vec![("cron(0 0 ? * SUN *)".to_owned(), 0)],
            ),
            (
                None,
                None,
                None,
                vec![("cron(0 0 ? * SUN *)".to_owned(), 1431)],
            ),
            (None, None, None, vec![("0 0 * * *".to_owned(), 10)]),
        ] {
            let r = SchedulingConfig::new(start, end, behavior, &windows, DEC_1);
            assert_eq!(
                r.map_err(|e| e.code),
                Err("InvalidRequestException"),
                "{start:?} {end:?} {behavior:?} {windows:?}"
            );
        }
    }

    #[test]
    fn windows_open_and_close() {
        // Every day 02:00–03:00.
        let s = SchedulingConfig::new(None, None, None, &[("cron(0 2 * * ? *)".into(), 60)], DEC_1)
            .unwrap();
        let h = 60 * MINUTE_MS;
        assert_eq!(s.window_open_at_or_after(DEC_1), Some(DEC_1 + 2 * h));
        assert_eq!(
            s.window_open_at_or_after(DEC_1 + 2 * h + 5),
            Some(DEC_1 + 2 * h + 5)
        );
        assert_eq!(
            s.window_open_at_or_after(DEC_1 + 3 * h),
            Some(DEC_1 + DAY_MS + 2 * h),
            "the window is closed at its end"
        );
    }
}
