//! Answers too large to reach the core: a describe that never arrives while the link works.
//!
//! Nucleus lite's MQTT client announces a maximum packet size of about 5,000 bytes, so IoT Core
//! drops every larger message to the core without a word; a describe answer carrying a large
//! job document never arrives. After [`EngineConfig::oversize_after`] unanswered describes of
//! one job, a describe without the document (`SizeProbe`) tells the two cases apart: answered,
//! the full answer is too large, so one WARN names the cause and the job is described again only
//! after [`EngineConfig::oversize_backoff`] (with the query then); unanswered, it is silence
//! (see `silence`) and the describe is retried as before.
//!
//! Owns: the jobs set aside as too large, and when to look at them again. Must not know:
//! tokens, packet sizes of particular runtimes beyond the warning's wording.
//!
//! [`EngineConfig::oversize_after`]: super::EngineConfig::oversize_after
//! [`EngineConfig::oversize_backoff`]: super::EngineConfig::oversize_backoff

use super::requests::Request;
use super::{ms, Action, Engine};
use crate::jobs::job::Millis;
use std::collections::BTreeSet;

impl Engine {
    /// The describe without its document was answered, the one with it never: set the job
    /// aside and go on with the walk.
    pub(super) fn answer_too_large(&mut self, now: Millis, job_id: &str, out: &mut Vec<Action>) {
        let until = now + ms(self.config.oversize_backoff);
        if self.oversize_warned.insert(job_id.to_owned()) {
            tracing::warn!(
                job_id = %job_id,
                retry_in_s = self.config.oversize_backoff.as_secs(),
                "the job's description never reaches the component although smaller answers do: most likely a message over the core's MQTT packet limit (about 5,000 bytes on nucleus lite); job documents must stay under it there. Looking at the job again later"
            );
        } else {
            tracing::info!(job_id = %job_id, "the job's description still does not reach the component; looking again later");
        }
        self.set_aside.insert(job_id.to_owned(), until);
        self.next_candidate(now, out);
    }

    /// A late answer to an earlier describe of `job_id` arrived: the describes still to come
    /// start counting unanswered attempts afresh, so a slow link is not taken for an answer
    /// too large to arrive.
    pub(super) fn description_arrived(&mut self, job_id: &str) {
        let describes = |r: &Request| matches!(r, Request::Describe { job_id: j } if j == job_id);
        for f in self
            .in_flight
            .values_mut()
            .filter(|f| describes(&f.request))
        {
            f.timeouts = 0;
        }
        for r in self.retries.iter_mut().filter(|r| describes(&r.request)) {
            r.timeouts = 0;
        }
    }

    /// Whether `job_id` is set aside at `now`.
    pub(super) fn is_set_aside(&self, now: Millis, job_id: &str) -> bool {
        self.set_aside.get(job_id).is_some_and(|until| *until > now)
    }

    /// Jobs no longer pending need not be looked at again.
    pub(super) fn keep_set_aside(&mut self, listed: &BTreeSet<String>) {
        self.set_aside.retain(|job, _| listed.contains(job));
    }

    /// When a job set aside is due to be looked at again.
    pub(super) fn next_look_again(&self) -> Option<Millis> {
        self.set_aside.values().min().copied()
    }

    /// Queries again once a job set aside is due.
    pub(super) fn look_again_due(&mut self, now: Millis) {
        let due: Vec<String> = self
            .set_aside
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(job, _)| job.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        for job in &due {
            self.set_aside.remove(job);
        }
        tracing::info!(jobs = ?due, "looking again at jobs whose description was too large");
        self.schedule_query(now, false);
    }
}
