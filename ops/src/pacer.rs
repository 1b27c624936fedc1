//! Pacing of requests to a steady rate, so that filling a large group stays under the
//! account's API limits instead of leaning on throttling and retries.
//!
//! Owns: the schedule (pure: the slot of the n-th request from a start instant). Must not
//! know: which requests are paced.

use std::time::{Duration, Instant};

/// Hands out one slot per request, `1 / rate` apart. Call contract: [`Pacer::next_slot`] once
/// per request; the caller waits until the slot before sending.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    interval: Duration,
    issued: u32,
}

impl Pacer {
    /// A pacer of `per_second` requests a second (> 0), starting at `start`.
    pub fn new(start: Instant, per_second: f64) -> Self {
        Self {
            start,
            interval: Duration::from_secs_f64(1.0 / per_second),
            issued: 0,
        }
    }

    /// When the next request may go.
    pub fn next_slot(&mut self) -> Instant {
        let slot = self.start + self.interval * self.issued;
        self.issued = self.issued.saturating_add(1);
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_evenly_spaced_at_the_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 20.0);
        let slots: Vec<u128> = (0..4).map(|_| (p.next_slot() - t0).as_millis()).collect();
        assert_eq!(slots, [0, 50, 100, 150]);
    }
}
