//! Silence: IoT Core messages stop reaching the component although its requests go out.
//!
//! Nucleus lite's ggipcd closes a component's IoT Core subscriptions without a word when its
//! iotcored restarts: the streams stay open and nothing arrives any more. The check rides on
//! requests the engine makes anyway (queries, retries, the optional safety poll); there is no
//! polling of its own. A request is *silent* when its response timeout passes and no message
//! of any kind (on any of the engine's topics) has arrived since it was sent. After
//! [`EngineConfig::deaf_after`] silent requests in a row the engine asks the shell to drop and
//! re-create every subscription ([`Action::Resubscribe`]), once per silence. If as many silent
//! requests follow, it asks the shell to exit ([`Action::Exit`]) so that the nucleus restarts
//! the component, but only when all of these hold:
//!
//! - the core's IoT Core connection is not reported DISCONNECTED (an offline core is silent
//!   and that is no fault: the engine never exits while DISCONNECTED, and silence while
//!   offline does not count);
//! - nothing has been heard for [`EngineConfig::deaf_exit_after`] with ConnectionStatus
//!   CONNECTED, or for [`EngineConfig::deaf_exit_unknown_after`] where the nucleus does not
//!   report the connection (an offline core then looks the same as a deaf one);
//! - no job's work is running (its result would be lost to a restart).
//!
//! The silence is measured from the start of the process, so a restarted component must itself
//! stay silent that long before it exits again: at most one exit per that period, never a
//! restart loop.
//!
//! Owns: the connection state as reported, the time anything was last heard, the count of
//! silent requests, and the resubscribe and exit decisions. Must not know: how subscriptions
//! are made or how the process ends (the shell's).
//!
//! [`EngineConfig::deaf_after`]: super::EngineConfig::deaf_after
//! [`EngineConfig::deaf_exit_after`]: super::EngineConfig::deaf_exit_after
//! [`EngineConfig::deaf_exit_unknown_after`]: super::EngineConfig::deaf_exit_unknown_after

use super::active::ActivePhase;
use super::{ms, Action, Engine};
use crate::jobs::job::Millis;

/// The core's IoT Core connection, as SubscribeToIoTCoreConnectionStatus reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Connection {
    /// Not reported (yet, or by this nucleus at all).
    Unknown,
    Up,
    Down,
}

/// What the engine knows about messages reaching it.
#[derive(Debug, Clone)]
pub(super) struct Silence {
    pub(super) connection: Connection,
    /// When a message last arrived, or the silence was last excused (start, reconnect).
    pub(super) last_heard: Millis,
    /// Silent requests in a row since then (or since the resubscribe).
    pub(super) silent: u32,
    pub(super) resubscribed: bool,
}

impl Silence {
    pub(super) fn new() -> Self {
        Self {
            connection: Connection::Unknown,
            last_heard: 0,
            silent: 0,
            resubscribed: false,
        }
    }

    /// Silence is counted afresh from `now`.
    fn excuse(&mut self, now: Millis) {
        self.last_heard = now;
        self.silent = 0;
        self.resubscribed = false;
    }
}

impl Engine {
    /// The engine starts listening at `now`.
    pub(super) fn listening_from(&mut self, now: Millis) {
        self.silence.excuse(now);
    }

    /// A message arrived: the subscriptions work.
    pub(super) fn heard(&mut self, now: Millis) {
        if self.silence.resubscribed {
            tracing::info!("messages reach the component again after resubscribing");
        }
        self.silence.excuse(now);
    }

    /// The core's IoT Core connection as reported now. Coming back up, silence is counted
    /// afresh: what was missed while offline is no sign of deafness.
    pub(super) fn connection_reported(&mut self, now: Millis, connection: Connection) {
        if connection == Connection::Up && self.silence.connection != Connection::Up {
            self.silence.excuse(now);
        }
        self.silence.connection = connection;
    }

    /// Whether the core's IoT Core connection is reported down now.
    pub(super) fn link_reported_down(&self) -> bool {
        self.silence.connection == Connection::Down
    }

    /// A request sent at `sent_at` got no answer in time.
    pub(super) fn unanswered(&mut self, now: Millis, sent_at: Millis, out: &mut Vec<Action>) {
        let s = &mut self.silence;
        if s.connection == Connection::Down || s.last_heard > sent_at {
            return;
        }
        s.silent += 1;
        if s.silent < self.config.deaf_after.max(1) {
            return;
        }
        if !s.resubscribed {
            tracing::warn!(
                silent_requests = s.silent,
                silent_for_s = (now - s.last_heard) / 1000,
                "no message of any kind reaches the component although its requests go out; re-creating the IoT Core subscriptions"
            );
            s.resubscribed = true;
            s.silent = 0;
            out.push(Action::Resubscribe);
            // What was missed meanwhile is looked for once the subscriptions are back.
            self.schedule_query(now, false);
            return;
        }
        let limit = match s.connection {
            Connection::Up => self.config.deaf_exit_after,
            _ => self.config.deaf_exit_unknown_after,
        };
        let silent_for = now - s.last_heard;
        if silent_for < ms(limit) {
            return;
        }
        if self.active.iter().any(|a| a.phase == ActivePhase::Running) {
            tracing::warn!("still no message after resubscribing; not restarting while a job runs");
            return;
        }
        let reason = format!(
            "no message for {} s and {} requests unanswered after resubscribing (connection status: {:?})",
            silent_for / 1000,
            s.silent,
            s.connection
        );
        tracing::error!(%reason, "exiting so that the nucleus restarts the component");
        out.push(Action::Exit { reason });
    }
}
