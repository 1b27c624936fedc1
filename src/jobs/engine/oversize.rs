//! Answers too large to reach the core: a describe that never arrives while the link works.
//!
//! Nucleus lite's MQTT client announces a maximum packet size of about 5,000 bytes, so IoT Core
//! drops every larger message to the core without a word; a describe answer carrying a large
//! job document never arrives. After [`EngineConfig::oversize_after`] unanswered describes of
//! one job, a describe without the document (`SizeProbe`) tells the two cases apart: unanswered,
//! it is silence (see `silence`) and the describe is retried as before; answered, the full
//! answer may be too large, and the job is set aside and looked at again later (with a query).
//!
//! A lossy link also loses three answers in a row now and then, so one such round is no proof:
//! the job is set aside for [`FIRST_SET_ASIDE`] only, and each further round in a row doubles
//! the time, up to [`EngineConfig::oversize_backoff`]. An answer too large never arrives, so the
//! rounds of a really oversized job go on and its looks grow rare; a job whose full answer
//! arrives once (on time or late) starts again from the shortest time. The WARN that names the
//! cause waits for the second round in a row, the evidence a lossy link rarely gives. A job
//! set aside is never given up: it is looked at again for as long as it is pending.
//!
//! Owns: the jobs set aside as too large, the rounds in a row of each, and when to look at them
//! again. Must not know: tokens, packet sizes of particular runtimes beyond the warning's
//! wording.
//!
//! [`EngineConfig::oversize_after`]: super::EngineConfig::oversize_after
//! [`EngineConfig::oversize_backoff`]: super::EngineConfig::oversize_backoff

use super::requests::{InFlight, Request};
use super::{ms, Action, Engine};
use crate::jobs::job::Millis;
use std::collections::BTreeSet;

/// How long a job is set aside after its first round of unanswered describes and an answered
/// probe (at most [`super::EngineConfig::oversize_backoff`]).
pub(super) const FIRST_SET_ASIDE: Millis = 60_000;

/// Rounds in a row before the WARN names the packet limit as the likely cause.
const WARN_AFTER_ROUNDS: u32 = 2;

impl Engine {
    /// The describe without its document was answered, the ones with it not: set the job
    /// aside for a time that grows with the rounds in a row, and go on with the walk.
    pub(super) fn answer_too_large(&mut self, now: Millis, job_id: &str, out: &mut Vec<Action>) {
        let rounds = self.oversize_rounds.entry(job_id.to_owned()).or_insert(0);
        *rounds = rounds.saturating_add(1);
        let rounds = *rounds;
        let cap = ms(self.config.oversize_backoff);
        let wait = FIRST_SET_ASIDE
            .saturating_mul(1u64 << (rounds - 1).min(20))
            .min(cap);
        if rounds >= WARN_AFTER_ROUNDS && self.oversize_warned.insert(job_id.to_owned()) {
            tracing::warn!(
                job_id = %job_id,
                rounds,
                retry_in_s = wait / 1000,
                "the job's description never reaches the component although smaller answers do: most likely a message over the core's MQTT packet limit (about 5,000 bytes on nucleus lite); job documents must stay under it there. Looking at the job again later"
            );
        } else {
            tracing::info!(job_id = %job_id, rounds, retry_in_s = wait / 1000, "the job's description did not reach the component although a smaller answer did; looking again later");
        }
        self.set_aside.insert(job_id.to_owned(), now + wait);
        self.next_candidate(now, out);
    }

    /// A full description of `job_id` arrived (on time or late): it is not too large. The
    /// describes still to come start counting unanswered attempts afresh, and a later round
    /// sets the job aside for the shortest time again.
    pub(super) fn description_arrived(&mut self, job_id: &str) {
        self.oversize_rounds.remove(job_id);
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

    /// The walk's describe of `job_id` still waiting for an answer (in flight, as a probe, or
    /// waiting out its back-off), taken out of the tables: a late full answer to an earlier
    /// attempt answers it as well.
    pub(super) fn take_walk_describe(&mut self, job_id: &str) -> Option<InFlight> {
        let walks = |r: &Request| matches!(r, Request::Describe { job_id: j } | Request::SizeProbe { job_id: j } if j == job_id);
        let token = self
            .in_flight
            .iter()
            .find(|(_, f)| walks(&f.request))
            .map(|(t, _)| *t);
        if let Some(token) = token {
            let f = self.in_flight.remove(&token)?;
            return Some(InFlight {
                request: Request::Describe {
                    job_id: job_id.to_owned(),
                },
                ..f
            });
        }
        let pos = self.retries.iter().position(|r| walks(&r.request))?;
        let r = self.retries.remove(pos);
        Some(InFlight {
            request: Request::Describe {
                job_id: job_id.to_owned(),
            },
            attempt: r.attempt,
            sent_at: r.at,
            deadline: r.at,
            timeouts: 0,
        })
    }

    /// Whether `job_id` is set aside at `now`.
    pub(super) fn is_set_aside(&self, now: Millis, job_id: &str) -> bool {
        self.set_aside.get(job_id).is_some_and(|until| *until > now)
    }

    /// Jobs no longer pending need not be looked at again.
    pub(super) fn keep_set_aside(&mut self, listed: &BTreeSet<String>) {
        self.set_aside.retain(|job, _| listed.contains(job));
        self.oversize_rounds.retain(|job, _| listed.contains(job));
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
