//! The candidate walk and ownership: which pending executions are looked at, one describe at a
//! time, and which of them are ours to start.
//!
//! Owns: the pending list's candidates, the executions known to be foreign, judging a
//! described document (ours, ours but malformed, foreign), the conditional start with
//! `expectedVersion`, `notify-next` and `notify`, and the warning when the API's list limit
//! hides our jobs. Must not know: tokens, retries or how a job runs.

use super::active::{Active, ActivePhase};
use super::query::QueryState;
use super::requests::Request;
use super::{Action, Engine, Record};
use crate::jobs::document::{classify, Ownership};
use crate::jobs::job::{Millis, Recovered};
use crate::jobs::messages::*;
use std::collections::{BTreeSet, VecDeque};

/// How long a `notify` waits for notify-next to show what it listed before querying.
pub(super) const NOTIFY_SETTLE_MS: Millis = 1_000;

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Considered {
    Started,
    Skipped,
}

/// The most queued executions GetPendingJobExecutions and `notify` list: with this many
/// foreign jobs queued ahead, ours are invisible until those move.
pub const MAX_LISTED_QUEUED: usize = 10;

impl Engine {
    pub(super) fn on_pending_list(
        &mut self,
        now: Millis,
        list: GetPendingAccepted,
        out: &mut Vec<Action>,
    ) {
        let listed: BTreeSet<(String, i64)> = list
            .in_progress_jobs
            .iter()
            .chain(list.queued_jobs.iter())
            .map(|s| (s.job_id.clone(), s.execution_number))
            .collect();
        // Foreign executions that are no longer pending need not be remembered.
        self.foreign.retain(|k| listed.contains(k));
        self.settle_recovered(&listed, out);
        self.keep_set_aside(&listed.iter().map(|(job, _)| job.clone()).collect());

        let mut candidates = VecDeque::new();
        for s in list.in_progress_jobs.iter().chain(list.queued_jobs.iter()) {
            let known_foreign = self
                .foreign
                .contains(&(s.job_id.clone(), s.execution_number));
            if !known_foreign && !self.is_active(&s.job_id) && !self.is_set_aside(now, &s.job_id) {
                candidates.push_back(s.job_id.clone());
            }
        }
        tracing::info!(
            in_progress = list.in_progress_jobs.len(),
            queued = list.queued_jobs.len(),
            to_check = candidates.len(),
            "pending jobs listed"
        );
        self.candidates = candidates;
        self.full_list = if list.queued_jobs.len() >= MAX_LISTED_QUEUED {
            list.queued_jobs
                .iter()
                .map(|s| (s.job_id.clone(), s.execution_number))
                .collect()
        } else {
            Vec::new()
        };
        self.next_candidate(now, out);
    }

    /// Warns when a full list (the API lists at most [`MAX_LISTED_QUEUED`] queued executions)
    /// held only foreign jobs: jobs of ours queued behind them cannot be seen.
    pub(super) fn warn_if_hidden(&mut self, listed: &[(String, i64)], source: &str) {
        if listed.len() >= MAX_LISTED_QUEUED && listed.iter().all(|k| self.foreign.contains(k)) {
            tracing::warn!(
                queued = listed.len(),
                %source,
                "the Jobs API lists at most 10 queued executions and all of them are foreign: jobs of ours queued behind them are invisible until those move"
            );
        }
    }

    pub(super) fn next_candidate(&mut self, now: Millis, out: &mut Vec<Action>) {
        if self.at_capacity() {
            // Busy: the rest waits for the query after a job ends.
            self.candidates.clear();
        }
        match self.candidates.pop_front() {
            Some(job_id) => self.send(now, Request::Describe { job_id }, 0, out),
            None => {
                let full_list = std::mem::take(&mut self.full_list);
                self.warn_if_hidden(&full_list, "GetPendingJobExecutions");
                self.query = QueryState::Idle;
                if std::mem::take(&mut self.requery) {
                    self.schedule_query(now, false);
                    self.start_due_query(now, out);
                }
            }
        }
    }

    /// A described candidate: run it if it is ours and queued.
    pub(super) fn on_candidate(
        &mut self,
        now: Millis,
        job_id: &str,
        execution: Option<JobExecution>,
        out: &mut Vec<Action>,
    ) {
        let Some(execution) = execution else {
            return self.next_candidate(now, out);
        };
        match self.consider(now, execution, out) {
            Considered::Started if !self.at_capacity() => self.next_candidate(now, out),
            Considered::Started => {
                // The rest of the queue is looked at again once a job is reported.
                self.candidates.clear();
                self.query = QueryState::Idle;
            }
            Considered::Skipped => {
                tracing::debug!(job_id = %job_id, "candidate skipped");
                self.next_candidate(now, out);
            }
        }
    }

    /// A describe answer that does not decode (e.g. a document nested deeper than the JSON
    /// parser allows). The execution is read again without decoding its document; when the
    /// document may be ours it is judged malformed (REJECTED with the reason), otherwise the
    /// candidate is skipped as before.
    pub(super) fn on_undecodable_candidate(
        &mut self,
        now: Millis,
        job_id: &str,
        payload: &[u8],
        error: &serde_json::Error,
        out: &mut Vec<Action>,
    ) {
        tracing::error!(job_id = %job_id, %error, "undecodable describe response");
        let Some((execution, document)) = crate::jobs::undecodable::read(payload) else {
            tracing::error!(job_id = %job_id, "describe response unreadable even without its document; skipping the candidate");
            return self.next_candidate(now, out);
        };
        if execution.job_id != job_id || !crate::jobs::undecodable::may_be_ours(document.get()) {
            tracing::info!(job_id = %job_id, "undecodable document is not of our forms; leaving the job alone");
            return self.next_candidate(now, out);
        }
        let reason = format!("the job document cannot be parsed: {error}");
        self.on_judged_candidate(now, execution, Ownership::OursMalformed(reason), out);
    }

    /// [`Self::on_candidate`] for an execution already judged.
    pub(super) fn on_judged_candidate(
        &mut self,
        now: Millis,
        execution: JobExecution,
        ownership: Ownership,
        out: &mut Vec<Action>,
    ) {
        match self.judged(now, execution, ownership, out) {
            Considered::Started if !self.at_capacity() => self.next_candidate(now, out),
            Considered::Started => {
                self.candidates.clear();
                self.query = QueryState::Idle;
            }
            Considered::Skipped => self.next_candidate(now, out),
        }
    }

    /// Decides what to do with one execution seen in a describe or notify-next.
    pub(super) fn consider(
        &mut self,
        now: Millis,
        e: JobExecution,
        out: &mut Vec<Action>,
    ) -> Considered {
        if e.job_document.is_none() {
            // Without its document a job cannot be judged: never mark it foreign on that basis.
            tracing::debug!(job_id = %e.job_id, "execution without its document; not judged");
            return Considered::Skipped;
        }
        let ownership = classify(e.job_document.as_ref());
        self.judged(now, e, ownership, out)
    }

    /// Acts on an execution whose document has been judged.
    pub(super) fn judged(
        &mut self,
        now: Millis,
        e: JobExecution,
        ownership: Ownership,
        out: &mut Vec<Action>,
    ) -> Considered {
        self.seen(&e.job_id, e.execution_number);
        if self.is_active(&e.job_id) {
            return Considered::Skipped;
        }
        if ownership == Ownership::Foreign {
            tracing::info!(job_id = %e.job_id, "job is not ours (unknown document format); leaving it alone");
            self.foreign.insert((e.job_id, e.execution_number));
            return Considered::Skipped;
        }
        if self.at_capacity() {
            return Considered::Skipped;
        }
        match (e.status, ownership) {
            (JobStatus::Queued, Ownership::Ours(document)) => {
                tracing::info!(job_id = %e.job_id, execution_number = e.execution_number, "starting job");
                self.start_job(now, e, document, out);
                Considered::Started
            }
            (JobStatus::Queued, Ownership::OursMalformed(reason)) => {
                tracing::error!(job_id = %e.job_id, %reason, "job document is malformed; rejecting the job");
                self.report_directly(now, e, JobStatus::Rejected, &[("reason", &reason)], out);
                Considered::Started
            }
            (JobStatus::InProgress, ownership) => {
                self.in_progress_not_running(now, e, ownership, out)
            }
            _ => Considered::Skipped,
        }
    }

    /// Starts execution `e` of ours (QUEUED, or IN_PROGRESS from a start of an earlier process
    /// that never ran): `{jobId}/update` IN_PROGRESS with the version it was seen at, marked,
    /// and its record for the journal.
    pub(super) fn start_job(
        &mut self,
        now: Millis,
        e: JobExecution,
        document: crate::jobs::document::JobDocument,
        out: &mut Vec<Action>,
    ) {
        if let Some((_, number)) = self.unconfirmed_starts.remove(&e.job_id) {
            if number != e.execution_number {
                // That start was for an execution the cloud has ended since (a retry
                // or a new member's execution replaces it): its journal entry can go.
                out.push(Action::Forget {
                    job_id: e.job_id.clone(),
                    execution_number: number,
                });
            }
        }
        let key = (e.job_id.clone(), e.execution_number);
        // A start of an earlier process may still land: this one carries the same
        // marker, so the journal's one marker names every start of this execution and
        // recognises whichever lands, also after further crashes.
        let mut earlier_marker = None;
        match self.recovered.remove(&key) {
            Some(Recovered::NotStarted { marker }) => {
                self.earlier_starts.insert(e.job_id.clone(), marker.clone());
                earlier_marker = Some(marker);
            }
            // The journal says the work ran: a QUEUED status is an old view (e.g. a
            // notification kept while offline). The start meets a VersionMismatch, and
            // the re-read must still find what the journal says.
            Some(ran) => {
                self.recovered.insert(key, ran);
            }
            None => {}
        }
        // Usually one job at a time: room for one, not a vector's first four.
        self.active.reserve_exact(1);
        self.active.push(Active::of(&e, ActivePhase::Starting));
        let marker = earlier_marker.unwrap_or_else(|| self.new_marker());
        let record = Record::Starting {
            job_id: e.job_id.clone(),
            execution_number: e.execution_number,
            marker: marker.clone(),
        };
        let request = Request::Start {
            job_id: e.job_id,
            execution_number: e.execution_number,
            version: e.version_number,
            document: Box::new(document),
            marker,
        };
        if self.installation.is_empty() {
            // Without an installation id only the record tells a later process that the start
            // was its own: the record first.
            out.push(Action::Record(record));
            self.send(now, request, 0, out);
        } else {
            // The marker names the installation: the start goes out at once, and the record
            // is on disk before the job runs (its answer comes in a later batch).
            self.send(now, request, 0, out);
            out.push(Action::Record(record));
        }
    }

    /// A start marker of this process, named after the token its first attempt carries
    /// (unique to this process), behind the installation id (`<installation>/<token>`) when
    /// the journal has one.
    fn new_marker(&self) -> String {
        let token = format!("{}-{}", self.token_prefix, self.next_token + 1);
        if self.installation.is_empty() {
            token
        } else {
            format!("{}/{token}", self.installation)
        }
    }

    pub(super) fn on_notify_next(&mut self, now: Millis, payload: &[u8], out: &mut Vec<Action>) {
        let notification = match serde_json::from_slice::<ExecutionResponse>(payload) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "undecodable notify-next; querying instead");
                self.schedule_query(now, false);
                return;
            }
        };
        // Running jobs that notify-next no longer names may have been canceled: check them,
        // without assuming.
        let head = notification.execution.as_ref().map(|e| e.job_id.clone());
        let to_check: Vec<String> = self
            .active
            .iter()
            .filter(|a| {
                a.phase == ActivePhase::Running && head.as_deref() != Some(a.job_id.as_str())
            })
            .map(|a| a.job_id.clone())
            .collect();
        for job_id in to_check {
            let checking = self
                .in_flight
                .values()
                .any(|f| matches!(&f.request, Request::CheckActive { job_id: j } if *j == job_id));
            if !checking {
                self.send(now, Request::CheckActive { job_id }, 0, out);
            }
        }
        if self.at_capacity() {
            return;
        }
        match notification.execution {
            None => tracing::info!("notify-next: no pending jobs"),
            Some(execution) => {
                let job_id = execution.job_id.clone();
                if self
                    .foreign
                    .contains(&(job_id.clone(), execution.execution_number))
                {
                    tracing::debug!(job_id = %job_id, "notify-next names a job that is not ours");
                    return;
                }
                tracing::info!(job_id = %job_id, status = %execution.status, "notify-next: next job announced");
                if execution.job_document.is_none() {
                    // Read it with its document through the query.
                    self.schedule_query(now, false);
                    return;
                }
                if self.query == QueryState::Running {
                    self.requery = true;
                    return;
                }
                if self.consider(now, execution, out) == Considered::Skipped {
                    // A foreign head hides the jobs behind it from notify-next; `notify`
                    // announces those, so there is nothing more to do here.
                    tracing::debug!(job_id = %job_id, "head job not runnable here");
                }
            }
        }
    }

    /// `notify`: the pending list changed. A job we have not looked at yet may be queued
    /// behind a foreign head, where notify-next never announces it: then query at once.
    /// Otherwise notify-next announces the head (the service sends both at the same moment, in
    /// either order) and each job after it as the one before ends, so the query waits
    /// [`NOTIFY_SETTLE_MS`] and goes out only for what nothing has shown by then (a lost
    /// notify-next, or a head that turned out not to be ours). A new job thus starts from its
    /// notify-next, without a pending-list round trip first.
    pub(super) fn on_notify(&mut self, now: Millis, payload: &[u8]) {
        let notify = match serde_json::from_slice::<Notify>(payload) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable notify ignored");
                return;
            }
        };
        if let Some(queued) = notify.jobs.get("QUEUED") {
            let listed: Vec<(String, i64)> = queued
                .iter()
                .map(|s| (s.job_id.clone(), s.execution_number))
                .collect();
            self.warn_if_hidden(&listed, "notify");
        }
        if self.at_capacity() {
            return;
        }
        let listed = || {
            notify
                .jobs
                .values()
                .flatten()
                .map(|s| (s.job_id.clone(), s.execution_number))
        };
        let unseen: Vec<(String, i64)> = listed()
            .filter(|key| !self.foreign.contains(key) && !self.is_active(&key.0))
            .collect();
        if unseen.is_empty() {
            return;
        }
        if listed().any(|key| self.foreign.contains(&key)) {
            tracing::info!(
                "notify: the pending list changed behind a job that is not ours; querying"
            );
            self.schedule_query(now, false);
            return;
        }
        let (at, waiting) = self
            .notified
            .get_or_insert_with(|| (now + NOTIFY_SETTLE_MS, Vec::new()));
        *at = (*at).min(now + NOTIFY_SETTLE_MS);
        for key in unseen {
            if !waiting.contains(&key) {
                waiting.push(key);
            }
        }
    }

    /// An execution was looked at (announced, described or listed): a `notify` naming it
    /// needs no query for it.
    pub(super) fn seen(&mut self, job_id: &str, execution_number: i64) {
        if let Some((_, waiting)) = self.notified.as_mut() {
            waiting.retain(|(j, n)| !(j == job_id && *n == execution_number));
        }
    }

    /// Queries for what a `notify` listed and nothing showed within [`NOTIFY_SETTLE_MS`].
    pub(super) fn notified_due(&mut self, now: Millis) {
        let Some((at, _)) = self.notified else {
            return;
        };
        if at > now {
            return;
        }
        let Some((_, waiting)) = self.notified.take() else {
            return;
        };
        let unshown: Vec<&(String, i64)> = waiting
            .iter()
            .filter(|(job, _)| !self.is_active(job))
            .collect();
        if !unshown.is_empty() {
            tracing::info!(jobs = ?unshown, "notify: listed jobs no notify-next has shown; querying");
            self.schedule_query(now, false);
        }
    }
}
