//! The emulator's clock: the wall clock (plus an offset the control API can move forward), or
//! a manual clock that only the control API moves.
//!
//! Owns: reading the emulator's current time and moving it forward. Must not know: what falls
//! due (the world's) or how waiting is done (the shell's).

use crate::clock::epoch_ms;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which clock the emulator runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClockMode {
    /// Real time, plus whatever has been advanced.
    #[default]
    Wall,
    /// Time stands still until advanced.
    Manual,
}

impl std::str::FromStr for ClockMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "wall" => Ok(Self::Wall),
            "manual" => Ok(Self::Manual),
            other => Err(format!("unknown clock {other:?} (wall or manual)")),
        }
    }
}

/// The emulator's clock, shared by its shells.
///
/// Call contract: [`EmulatorClock::now`] never goes back; [`EmulatorClock::advance`] only
/// moves forward.
#[derive(Debug)]
pub struct EmulatorClock {
    mode: ClockMode,
    /// Wall: milliseconds added to the wall clock. Manual: the current time.
    value: AtomicU64,
    /// The latest time read, so that a wall clock set back is not seen.
    latest: AtomicU64,
}

impl EmulatorClock {
    /// A clock in `mode`; a manual clock starts at `start` (epoch ms).
    pub fn new(mode: ClockMode, start: u64) -> Self {
        let value = match mode {
            ClockMode::Wall => 0,
            ClockMode::Manual => start,
        };
        Self {
            mode,
            value: AtomicU64::new(value),
            latest: AtomicU64::new(0),
        }
    }

    pub fn mode(&self) -> ClockMode {
        self.mode
    }

    /// The emulator's time, epoch milliseconds.
    pub fn now(&self) -> u64 {
        let raw = match self.mode {
            ClockMode::Wall => epoch_ms().saturating_add(self.value.load(Ordering::SeqCst)),
            ClockMode::Manual => self.value.load(Ordering::SeqCst),
        };
        self.latest.fetch_max(raw, Ordering::SeqCst).max(raw)
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.value.fetch_add(ms, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_time_moves_only_when_advanced() {
        let c = EmulatorClock::new(ClockMode::Manual, 1_000);
        assert_eq!(c.now(), 1_000);
        c.advance(60_000);
        assert_eq!(c.now(), 61_000);
    }

    #[test]
    fn wall_time_adds_the_offset() {
        let c = EmulatorClock::new(ClockMode::Wall, 0);
        let before = epoch_ms();
        c.advance(3_600_000);
        assert!(c.now() >= before + 3_600_000);
    }
}
