//! Query scheduling: when GetPendingJobExecutions goes out.
//!
//! Owns: the query's state (idle, scheduled, running), the random jitter that spreads a fleet's
//! queries, collapsing bursts into one query, the optional safety poll, and the order in which
//! due work is done on each input. Must not know: what the list holds (the candidate walk) or
//! how a request is matched to its answer.

use super::requests::Request;
use super::{ms, Action, Engine};
use crate::jobs::job::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QueryState {
    Idle,
    Scheduled(Millis),
    /// A GetPending or the candidate walk after it is under way.
    Running,
}

impl Engine {
    pub(super) fn jitter(&mut self) -> Millis {
        let max = ms(self.config.max_jitter);
        if max == 0 {
            0
        } else {
            self.rng.u64(0..=max)
        }
    }

    /// Asks for a query; bursts collapse into one.
    pub(super) fn schedule_query(&mut self, now: Millis, with_jitter: bool) {
        match self.query {
            QueryState::Idle => {
                let at = now + if with_jitter { self.jitter() } else { 0 };
                if at > now {
                    tracing::info!(delay_ms = at - now, "pending-jobs query scheduled");
                }
                self.query = QueryState::Scheduled(at);
            }
            QueryState::Scheduled(at) if !with_jitter && at > now => {
                self.query = QueryState::Scheduled(now);
            }
            QueryState::Scheduled(_) => {
                tracing::debug!("query already scheduled; request collapsed");
            }
            QueryState::Running => self.requery = true,
        }
    }

    /// Does whatever is due at `now`, in a fixed order: the safety poll, the scheduled query,
    /// expired requests, then due retries.
    pub(super) fn run_due(&mut self, now: Millis, out: &mut Vec<Action>) {
        if let Some(at) = self.next_safety_poll {
            if at <= now {
                if let Some(every) = self.config.safety_poll {
                    self.next_safety_poll = Some(now + ms(every));
                }
                tracing::info!("safety poll");
                self.schedule_query(now, false);
            }
        }
        // Expiry first: a silence it detects asks for a query now, which must go out in
        // this same call rather than leave a deadline that has already passed.
        self.expire_requests(now, out);
        self.look_again_due(now);
        self.notified_due(now);
        self.start_due_query(now, out);
        self.send_due_retries(now, out);
    }

    /// Sends the scheduled query once its time has come.
    pub(super) fn start_due_query(&mut self, now: Millis, out: &mut Vec<Action>) {
        if let QueryState::Scheduled(at) = self.query {
            if at <= now {
                self.query = QueryState::Running;
                self.requery = false;
                // The pending list it reads covers whatever a notify listed before.
                self.notified = None;
                tracing::info!("querying pending jobs");
                self.send(now, Request::GetPending, 0, out);
            }
        }
    }
}
