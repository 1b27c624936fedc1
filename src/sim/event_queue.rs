//! The simulation's queue of due events: earliest first, and in the order they were queued
//! when due at the same millisecond.
//!
//! Owns: [`EventQueue`], one FIFO bucket per millisecond that has something due, the buckets
//! in a B-tree by time. A fleet queues millions of events over a few thousand distinct
//! instants (most arrive one link latency after something else), so a push appends to a
//! bucket and a pop takes the front of the first one: no sift through a heap of millions,
//! whose scattered entries were the simulation's largest cache-miss cost.
//! Must not know: what the events are.

use std::collections::{BTreeMap, VecDeque};

/// Events by due time (ms).
///
/// Call contract: [`EventQueue::pop`] returns the entry with the smallest time; among entries
/// with the same time, the one pushed first. The order is total and the same on every run.
#[derive(Debug)]
pub struct EventQueue<T> {
    buckets: BTreeMap<u64, VecDeque<T>>,
    len: usize,
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        Self {
            buckets: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<T> EventQueue<T> {
    /// Queues `item`, due at `at`.
    pub fn push(&mut self, at: u64, item: T) {
        self.buckets.entry(at).or_default().push_back(item);
        self.len += 1;
    }

    /// When the earliest entry is due.
    pub fn next_at(&self) -> Option<u64> {
        self.buckets.keys().next().copied()
    }

    /// Takes the earliest entry (the first pushed among equals).
    pub fn pop(&mut self) -> Option<(u64, T)> {
        let mut first = self.buckets.first_entry()?;
        let at = *first.key();
        let item = first.get_mut().pop_front();
        if first.get().is_empty() {
            first.remove();
        }
        let item = item?;
        self.len -= 1;
        Some((at, item))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_in_the_order_pushed() {
        let mut q = EventQueue::default();
        q.push(30, "c");
        q.push(10, "a1");
        q.push(20, "b");
        q.push(10, "a2");
        q.push(10, "a3");
        assert_eq!(q.len(), 5);
        assert_eq!(q.next_at(), Some(10));
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order,
            vec![(10, "a1"), (10, "a2"), (10, "a3"), (20, "b"), (30, "c")]
        );
        assert!(q.is_empty());
        assert_eq!(q.next_at(), None);
    }

    #[test]
    fn matches_a_heap_ordered_by_time_and_sequence() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut q = EventQueue::default();
        let mut reference = std::collections::BinaryHeap::new();
        let mut seq = 0u64;
        let mut now = 0u64;
        for _ in 0..5_000 {
            if rng.u8(..) < 150 {
                let at = now + rng.u64(0..50);
                seq += 1;
                q.push(at, seq);
                reference.push(std::cmp::Reverse((at, seq)));
            } else {
                let got = q.pop();
                let want = reference.pop().map(|std::cmp::Reverse(e)| e);
                assert_eq!(got, want);
                if let Some((at, _)) = got {
                    now = at;
                }
            }
        }
    }
}
