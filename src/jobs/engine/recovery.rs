//! Recovery: IN_PROGRESS executions of our forms that this process is not running.
//!
//! Owns: what the journal of an earlier run says (from [`super::Input::Recovered`]), deciding
//! whether an IN_PROGRESS job was started by us (the start marker), by an earlier process of
//! this installation that ended before the start's record (the marker's installation id: the
//! work never began, so the job is claimed again), or by another instance of the handler,
//! reporting a recovered job honestly, and settling journal entries of jobs the cloud no longer
//! lists. Must not know: how the journal is stored or how processes are killed
//! (the shell does both).

use super::active::{Active, ActivePhase};
use super::candidates::Considered;
use super::{Action, Engine, START_MARKER_KEY};
use crate::jobs::document::Ownership;
use crate::jobs::job::{Millis, Recovered};
use crate::jobs::messages::*;
use std::collections::BTreeSet;

impl Engine {
    /// Notes what the journal of an earlier run holds about one job (before [`super::Input::Started`]).
    pub(super) fn remember_recovered(
        &mut self,
        job_id: &str,
        execution_number: i64,
        recovery: Recovered,
    ) {
        self.recovered
            .insert((job_id.to_owned(), execution_number), recovery);
    }

    /// Journal entries of jobs the cloud no longer lists as pending are settled: forgotten.
    pub(super) fn settle_recovered(
        &mut self,
        listed: &BTreeSet<(String, i64)>,
        out: &mut Vec<Action>,
    ) {
        let settled: Vec<(String, i64)> = self
            .recovered
            .keys()
            .filter(|k| !listed.contains(*k))
            .cloned()
            .collect();
        for (job_id, execution_number) in settled {
            tracing::info!(job_id = %job_id, "interrupted job is no longer pending in the cloud; forgetting it");
            self.recovered.remove(&(job_id.clone(), execution_number));
            out.push(Action::Forget {
                job_id,
                execution_number,
            });
        }
    }

    /// Every journal entry of `job_id` from an earlier run is settled: the cloud says the job's
    /// latest execution has ended or is gone.
    pub(super) fn settle_recovered_job(&mut self, job_id: &str, out: &mut Vec<Action>) {
        let settled: Vec<(String, i64)> = self
            .recovered
            .keys()
            .filter(|(j, _)| j == job_id)
            .cloned()
            .collect();
        for key in settled {
            tracing::info!(job_id = %job_id, execution_number = key.1, "job from before the restart has ended in the cloud; forgetting it");
            self.recovered.remove(&key);
            out.push(Action::Forget {
                job_id: key.0,
                execution_number: key.1,
            });
        }
    }

    /// An IN_PROGRESS job of our forms that is not running in this process. It is ours only
    /// when this handler started it: a start of this process whose answer was lost (the
    /// cloud shows its marker), a job the journal of an earlier run holds, or a start of an
    /// earlier process of this installation that the journal never recorded. Anything else
    /// was started by another instance of the handler on this thing and is left to it.
    pub(super) fn in_progress_not_running(
        &mut self,
        now: Millis,
        e: JobExecution,
        ownership: Ownership,
        out: &mut Vec<Action>,
    ) -> Considered {
        let key = (e.job_id.clone(), e.execution_number);
        let recovered_marker = match self.recovered.get(&key) {
            Some(Recovered::NotStarted { marker }) => Some(marker.clone()),
            _ => None,
        };
        let ours = [
            recovered_marker,
            self.unconfirmed_starts
                .get(&e.job_id)
                .map(|(marker, _)| marker.clone()),
            self.earlier_starts.get(&e.job_id).cloned(),
        ]
        .into_iter()
        .flatten()
        .any(|m| holds_start(e.status, e.status_details.as_ref(), &m));
        if ours {
            self.recovered.remove(&key);
            return match ownership {
                Ownership::Ours(document) => {
                    tracing::info!(job_id = %e.job_id, "the cloud holds our start; running the job");
                    self.active.push(Active::of(&e, ActivePhase::Starting));
                    self.started(
                        &e.job_id,
                        e.execution_number,
                        e.version_number,
                        document,
                        out,
                    );
                    Considered::Started
                }
                Ownership::OursMalformed(reason) => {
                    self.report_directly(now, e, JobStatus::Rejected, &[("reason", &reason)], out);
                    Considered::Started
                }
                Ownership::Foreign => Considered::Skipped,
            };
        }
        let earlier_start = e
            .status_details
            .as_ref()
            .and_then(|d| d.get(START_MARKER_KEY))
            .is_some_and(|m| self.marked_by_earlier_process(m));
        if earlier_start && !self.recovered.contains_key(&key) {
            return self.unrecorded_start(now, e, ownership, out);
        }
        match self.recovered.remove(&key) {
            Some(Recovered::Ended(outcome)) => {
                tracing::warn!(job_id = %e.job_id, status = %outcome.status, "our job from before the restart is IN_PROGRESS; reporting how the journal says it ended");
                self.report_outcome(now, e, outcome, out);
                Considered::Started
            }
            recovered => {
                tracing::info!(job_id = %e.job_id, "IN_PROGRESS job not started by this handler (another instance on this thing?); leaving it to its owner");
                self.earlier_starts.remove(&e.job_id);
                let ours_journaled =
                    self.unconfirmed_starts.remove(&e.job_id).is_some() || recovered.is_some();
                if ours_journaled {
                    // Our start lost the race: its journal entry can go.
                    out.push(Action::Forget {
                        job_id: e.job_id.clone(),
                        execution_number: e.execution_number,
                    });
                }
                self.foreign.insert(key);
                Considered::Skipped
            }
        }
    }

    /// An IN_PROGRESS execution that an earlier process of this installation started (its
    /// marker says so) and that the journal holds no record of. Starts go out before their
    /// record, and a job runs only once its record is on disk: the earlier process ended
    /// between the two, so the work never began and the job is claimed again, conditionally
    /// (the version it was seen at; a view from before a later change meets a
    /// VersionMismatch). A journal with a damaged part may have lost the record of work that
    /// did run: then the job is reported FAILED, never run twice.
    fn unrecorded_start(
        &mut self,
        now: Millis,
        e: JobExecution,
        ownership: Ownership,
        out: &mut Vec<Action>,
    ) -> Considered {
        let (status, reason) = match ownership {
            Ownership::Foreign => return Considered::Skipped,
            Ownership::Ours(document) if self.journal_intact => {
                tracing::warn!(job_id = %e.job_id, "IN_PROGRESS job of an earlier process that ended before the start's journal record: the work never began; claiming it again");
                self.start_job(now, e, document, out);
                return Considered::Started;
            }
            Ownership::Ours(_) => (
                JobStatus::Failed,
                "the handler restarted and its journal was damaged: whether the work ran is unknown"
                    .to_owned(),
            ),
            Ownership::OursMalformed(reason) => (JobStatus::Rejected, reason),
        };
        tracing::error!(job_id = %e.job_id, %status, %reason, "IN_PROGRESS job of an earlier process; reporting it");
        self.report_directly(now, e, status, &[("reason", &reason)], out);
        Considered::Started
    }

    /// Whether a start marker was set by an earlier process of this installation (not this
    /// one, whose starts the engine tracks itself).
    fn marked_by_earlier_process(&self, marker: &str) -> bool {
        !self.installation.is_empty()
            && marker
                .strip_prefix(self.installation.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|token| !self.owns_token(Some(token)))
    }
}

/// Whether an execution's state shows the start marked `marker`.
pub(super) fn holds_start(
    status: JobStatus,
    details: Option<&StatusDetails>,
    marker: &str,
) -> bool {
    status == JobStatus::InProgress
        && details
            .and_then(|d| d.get(START_MARKER_KEY))
            .is_some_and(|m| m == marker)
}
