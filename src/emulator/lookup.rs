//! Hash maps for lookups by name where a fleet holds many names (sessions, cores, a topic
//! level with one child per thing): one hash instead of a B-tree walk of string comparisons.
//!
//! Owns: [`LookupMap`], a `HashMap` with a fixed hasher (foldhash's fixed state: fast on
//! short names, and not seeded per process), so a run does not depend on a random seed.
//! Must not know: what is stored. Code that iterates a map in an order that reaches outputs
//! must use an ordered map instead: a hash map's iteration order is unspecified.

use std::collections::HashMap;

/// A hash map for get/insert/remove only; never iterated where the order matters.
pub type LookupMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
