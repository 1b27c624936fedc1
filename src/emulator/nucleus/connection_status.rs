//! A core's IoT Core connection status as the nucleus's ConnectionStatus streams read it.
//!
//! Owns: the status value with a count of its changes, and which events a stream owes after
//! missing some changes. Must not know: IPC framing, the world, or how streams are served.

/// The status of a core's IoT Core connection, and how many times it has changed. Call
/// contract: [`ConnectionStatus::set`] on every report of the connection (it counts only real
/// changes); a reader keeps the value it last sent from and asks
/// [`ConnectionStatus::events_since`] what to send next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStatus {
    /// Whether the connection is up.
    pub connected: bool,
    changes: u64,
}

impl ConnectionStatus {
    /// Records `connected`; returns whether the status changed.
    pub fn set(&mut self, connected: bool) -> bool {
        if self.connected == connected {
            return false;
        }
        self.connected = connected;
        self.changes += 1;
        true
    }

    /// The events a stream that last sent from `earlier` owes, oldest first: one per change
    /// when it missed none, or else a shortened history that keeps what matters to a reader —
    /// a drop and a return are both seen, and the last event is the current status.
    pub fn events_since(self, earlier: ConnectionStatus) -> Vec<bool> {
        let missed = self.changes.saturating_sub(earlier.changes);
        match missed {
            0 => Vec::new(),
            1 => vec![self.connected],
            _ if self.connected == earlier.connected => vec![!self.connected, self.connected],
            _ => vec![self.connected, !self.connected, self.connected],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(changes: &[bool]) -> ConnectionStatus {
        let mut s = ConnectionStatus::default();
        for c in changes {
            s.set(*c);
        }
        s
    }

    #[test]
    fn only_real_changes_count() {
        let mut s = ConnectionStatus::default();
        assert!(!s.set(false));
        assert!(s.set(true));
        assert!(!s.set(true));
        assert_eq!(s.events_since(ConnectionStatus::default()), vec![true]);
    }

    #[test]
    fn a_drop_and_return_missed_by_a_reader_are_both_sent() {
        let up = after(&[true]);
        let again = after(&[true, false, true]);
        assert_eq!(again.events_since(up), vec![false, true]);
        let down_after_flaps = after(&[true, false, true, false]);
        assert_eq!(down_after_flaps.events_since(up), vec![false, true, false]);
        assert_eq!(up.events_since(up), Vec::<bool>::new());
    }
}
