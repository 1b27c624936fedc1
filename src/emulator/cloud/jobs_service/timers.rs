//! Step and in-progress timeouts.
//!
//! Owns: when the next timer falls due and firing due timers in a defined order (deadline,
//! then creation order of the execution): the execution goes TIMED_OUT, may be retried, and
//! its thing is notified. Must not know: clocks (time is passed in) or what drives the ticks.

use super::{JobsService, Output};
use crate::jobs::messages::JobStatus;

impl JobsService {
    /// The earliest step or in-progress deadline (epoch ms).
    pub fn next_deadline(&self) -> Option<u64> {
        self.executions.next_deadline()
    }

    /// Times out every execution whose deadline is at or before `now_ms`, earliest first.
    /// Each costs O(log n).
    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        while let Some(id) = self.executions.first_due(now_ms) {
            let Some((thing, job_id)) = self
                .executions
                .get(id)
                .map(|e| (e.thing_name.clone(), e.job_id.clone()))
            else {
                break;
            };
            tracing::info!(job_id = %job_id, thing = %thing, "execution timed out");
            let before = self.snapshot(&thing);
            self.end_execution(id, JobStatus::TimedOut, None, now_ms);
            out.extend(self.notifications(&thing, before, now_ms));
            if self.executions.first_due(now_ms) == Some(id) {
                // Ending an execution clears its timers; a deadline that stays is a broken
                // index, and firing it again would never end.
                tracing::error!(job_id = %job_id, thing = %thing, "timer index out of step");
                break;
            }
        }
        out
    }
}
