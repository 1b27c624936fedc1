//! The table of requests sent and not yet answered, keyed by their client token's sequence
//! number.
//!
//! Owns: keeping the requests in the order they were sent, and finding one by its number.
//! Must not know: what a request is for, deadlines or retries.
//!
//! A sorted vector, not a B-tree: an engine has a handful of requests in flight, and a
//! B-tree allocates room for eleven however few it holds (a fleet simulation keeps one engine
//! per device).

use super::requests::InFlight;

/// Requests in flight, in the order of their sequence numbers (the order they were sent).
#[derive(Default)]
pub(super) struct InFlightTable(Vec<(u64, InFlight)>);

impl InFlightTable {
    fn position(&self, seq: u64) -> Result<usize, usize> {
        self.0.binary_search_by_key(&seq, |(s, _)| *s)
    }

    /// Adds (or replaces) the request sent with sequence number `seq`.
    pub(super) fn insert(&mut self, seq: u64, flight: InFlight) {
        match self.position(seq) {
            Ok(i) => self.0[i].1 = flight,
            Err(i) => self.0.insert(i, (seq, flight)),
        }
    }

    pub(super) fn remove(&mut self, seq: &u64) -> Option<InFlight> {
        let i = self.position(*seq).ok()?;
        Some(self.0.remove(i).1)
    }

    pub(super) fn contains_key(&self, seq: &u64) -> bool {
        self.position(*seq).is_ok()
    }

    /// (sequence number, request), in the order they were sent.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&u64, &InFlight)> {
        self.0.iter().map(|(s, f)| (s, f))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &InFlight> {
        self.0.iter().map(|(_, f)| f)
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut InFlight> {
        self.0.iter_mut().map(|(_, f)| f)
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(&u64, &mut InFlight) -> bool) {
        self.0.retain_mut(|(s, f)| keep(s, f));
    }
}
