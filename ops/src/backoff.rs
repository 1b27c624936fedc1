//! The delays between two looks at a job while waiting for it: doubling from a first delay up
//! to a ceiling, never past a deadline.
//!
//! Owns: the schedule only (pure: the caller measures time and sleeps). Must not know: the
//! AWS API or what is being waited for.

use std::time::Duration;

/// A doubling delay. Call contract: [`Backoff::next_delay`] once per look, with the time still
/// left before the caller's deadline; a look that saw progress may [`Backoff::reset`] it.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    next: Duration,
    ceiling: Duration,
}

impl Backoff {
    pub fn new(first: Duration, ceiling: Duration) -> Self {
        Self {
            first,
            next: first,
            ceiling: ceiling.max(first),
        }
    }

    /// The delay before the next look: the current step, cut to `left`; the step then doubles
    /// up to the ceiling.
    pub fn next_delay(&mut self, left: Duration) -> Duration {
        let delay = self.next.min(left);
        self.next = (self.next * 2).min(self.ceiling);
        delay
    }

    /// Back to the first step.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_ceiling_and_never_past_the_deadline() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(2));
        let far = Duration::from_secs(60);
        let delays: Vec<u128> = (0..6).map(|_| b.next_delay(far).as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 2000, 2000]);
        assert_eq!(
            b.next_delay(Duration::from_millis(300)),
            Duration::from_millis(300)
        );
        b.reset();
        assert_eq!(b.next_delay(far), Duration::from_millis(250));
    }
}
