//! The broker's subscription index: which clients' filters match a topic, in time that does not
//! grow with the number of clients.
//!
//! Owns: a tree of topic levels with `+` and `#` branches, each node holding the clients
//! subscribed there and their QoS; matching a topic name against every filter at once; MQTT's
//! rule that a wildcard in the first level does not match a `$` topic.
//! Must not know: sessions, connections, delivery or time.
//!
//! Written by hand: the crates that have a topic tree are whole MQTT brokers; this is a small
//! trie. Lookup costs O(levels × matching wildcard branches), independent of how many other
//! clients subscribe elsewhere, which a fleet of 100,000 cores needs.

use crate::emulator::lookup::LookupMap;

/// A node's exact next levels: a short sorted vector while there are few (most nodes of a
/// fleet's tree have one or two children; it grows one slot at a time, as a vector's doubling
/// would leave most of a fleet's nodes with room for four), a hash map once there are many
/// (the level of thing names under `$aws/things` has one child per thing). Matching only
/// looks children up, so the hash map's order never shows.
#[derive(Debug)]
enum Children {
    Few(Vec<(Box<str>, Node)>),
    Many(LookupMap<Box<str>, Node>),
}

/// Above this many children a node switches to a hash map.
const FEW_CHILDREN: usize = 16;

impl Default for Children {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl Children {
    fn is_empty(&self) -> bool {
        match self {
            Self::Few(v) => v.is_empty(),
            Self::Many(m) => m.is_empty(),
        }
    }

    fn get(&self, level: &str) -> Option<&Node> {
        match self {
            Self::Few(v) => v
                .binary_search_by(|(l, _)| (**l).cmp(level))
                .ok()
                .map(|i| &v[i].1),
            Self::Many(m) => m.get(level),
        }
    }

    fn get_mut(&mut self, level: &str) -> Option<&mut Node> {
        match self {
            Self::Few(v) => match v.binary_search_by(|(l, _)| (**l).cmp(level)) {
                Ok(i) => Some(&mut v[i].1),
                Err(_) => None,
            },
            Self::Many(m) => m.get_mut(level),
        }
    }

    fn entry(&mut self, level: &str) -> &mut Node {
        if let Self::Few(v) = self {
            if v.len() >= FEW_CHILDREN && v.binary_search_by(|(l, _)| (**l).cmp(level)).is_err() {
                *self = Self::Many(std::mem::take(v).into_iter().collect());
            }
        }
        match self {
            Self::Few(v) => {
                let i = match v.binary_search_by(|(l, _)| (**l).cmp(level)) {
                    Ok(i) => i,
                    Err(i) => {
                        v.reserve_exact(1);
                        v.insert(i, (level.into(), Node::default()));
                        i
                    }
                };
                &mut v[i].1
            }
            Self::Many(m) => m.entry(level.into()).or_default(),
        }
    }

    fn remove(&mut self, level: &str) {
        match self {
            Self::Few(v) => {
                if let Ok(i) = v.binary_search_by(|(l, _)| (**l).cmp(level)) {
                    v.remove(i);
                }
            }
            Self::Many(m) => {
                m.remove(level);
            }
        }
    }
}

/// One topic level. Client lists are small sorted vectors: a fleet has millions of nodes,
/// most with one child and one client, and a B-tree allocates room for eleven entries however
/// few it holds.
#[derive(Debug, Default)]
struct Node {
    /// Exact next levels.
    children: Children,
    /// The `+` branch.
    plus: Option<Box<Node>>,
    /// Clients whose filter ends here with `/#` (or is `#`): they match this level and below.
    hash: Clients,
    /// Clients whose filter ends exactly here.
    here: Clients,
}

/// Clients with their QoS, sorted by client id.
#[derive(Debug, Default)]
struct Clients(Vec<(Box<str>, u8)>);

impl Clients {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Inserts or updates; true when the client is new here.
    fn insert(&mut self, client: &str, qos: u8) -> bool {
        match self.0.binary_search_by(|(c, _)| (**c).cmp(client)) {
            Ok(i) => {
                self.0[i].1 = qos;
                false
            }
            Err(i) => {
                // Most nodes hold one client: grow a slot at a time.
                self.0.reserve_exact(1);
                self.0.insert(i, (client.into(), qos));
                true
            }
        }
    }

    fn remove(&mut self, client: &str) -> bool {
        match self.0.binary_search_by(|(c, _)| (**c).cmp(client)) {
            Ok(i) => {
                self.0.remove(i);
                if self.0.is_empty() {
                    self.0 = Vec::new();
                }
                true
            }
            Err(_) => false,
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&str, u8)> {
        self.0.iter().map(|(c, q)| (&**c, *q))
    }
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_empty()
            && self.here.is_empty()
    }
}

/// Filters of many clients, matched against topic names.
///
/// Call contract: filters are valid MQTT filters (see [`crate::topic::validate_filter`]); one
/// client holds a filter at most once (inserting again replaces its QoS).
#[derive(Debug, Default)]
pub struct SubscriptionTree {
    root: Node,
    len: usize,
}

impl SubscriptionTree {
    /// Number of (client, filter) pairs held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `client`'s `filter` with `qos` (replacing the QoS if it is there already).
    pub fn insert(&mut self, filter: &str, client: &str, qos: u8) {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                if node.hash.insert(client, qos) {
                    self.len += 1;
                }
                return;
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(level)
            };
        }
        if node.here.insert(client, qos) {
            self.len += 1;
        }
    }

    /// Removes `client`'s `filter`; returns whether it was there. Empty branches are pruned.
    pub fn remove(&mut self, filter: &str, client: &str) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = remove_at(&mut self.root, &levels, client);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Every client with a filter matching `topic`, with the highest QoS among its matching
    /// filters, in client-id order, written into `out` (cleared first; a caller that keeps the
    /// vector allocates nothing per match).
    pub fn matches_into<'a>(&'a self, topic: &str, out: &mut Vec<(&'a str, u8)>) {
        out.clear();
        collect(&self.root, Some(topic), !topic.starts_with('$'), out);
        if out.len() > 1 {
            // Highest QoS first within a client, so dedup keeps it.
            out.sort_unstable_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
            out.dedup_by(|later, kept| later.0 == kept.0);
        }
    }

    /// [`SubscriptionTree::matches_into`] into a new vector.
    pub fn matches(&self, topic: &str) -> Vec<(&str, u8)> {
        let mut out = Vec::new();
        self.matches_into(topic, &mut out);
        out
    }
}

/// Matches `rest` (the levels still to match; `None` once every level has been consumed)
/// below `node`. `wildcards` is false only at the first level of a `$` topic: wildcards there
/// never match it (MQTT 3.1.1 §4.7.2).
fn collect<'a>(node: &'a Node, rest: Option<&str>, wildcards: bool, out: &mut Vec<(&'a str, u8)>) {
    if wildcards {
        // `a/#` matches `a` itself and everything below it.
        out.extend(node.hash.iter());
    }
    let Some(rest) = rest else {
        out.extend(node.here.iter());
        return;
    };
    let (level, after) = match rest.split_once('/') {
        Some((level, after)) => (level, Some(after)),
        None => (rest, None),
    };
    if let Some(child) = node.children.get(level) {
        collect(child, after, true, out);
    }
    if wildcards {
        if let Some(plus) = &node.plus {
            collect(plus, after, true, out);
        }
    }
}

fn remove_at(node: &mut Node, levels: &[&str], client: &str) -> bool {
    match levels {
        [] => node.here.remove(client),
        ["#"] => node.hash.remove(client),
        [level, rest @ ..] => {
            if *level == "+" {
                let Some(plus) = node.plus.as_mut() else {
                    return false;
                };
                let removed = remove_at(plus, rest, client);
                if plus.is_empty() {
                    node.plus = None;
                }
                removed
            } else {
                let Some(child) = node.children.get_mut(level) else {
                    return false;
                };
                let removed = remove_at(child, rest, client);
                if child.is_empty() {
                    node.children.remove(level);
                }
                removed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic;

    #[test]
    fn agrees_with_the_topic_matcher() {
        let filters = [
            "a/b",
            "a/+",
            "a/#",
            "#",
            "+/+",
            "a/+/c",
            "a/b/#",
            "$aws/things/+/jobs/notify",
            "$aws/#",
            "+/things/t",
            "/",
            "+",
            "a//b",
        ];
        let names = [
            "a",
            "a/b",
            "a/b/c",
            "a/c",
            "/b",
            "$aws/things/t/jobs/notify",
            "$aws/things/t",
            "x/things/t",
            "/",
            "a//b",
            "b",
        ];
        let mut tree = SubscriptionTree::default();
        for (i, f) in filters.iter().enumerate() {
            tree.insert(f, &format!("c{i:02}"), 1);
        }
        for name in names {
            let expected: Vec<String> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| topic::matches(f, name))
                .map(|(i, _)| format!("c{i:02}"))
                .collect();
            let got: Vec<String> = tree
                .matches(name)
                .into_iter()
                .map(|(c, _)| c.to_owned())
                .collect();
            assert_eq!(got, expected, "topic {name:?}");
        }
    }

    #[test]
    fn highest_qos_wins_and_removal_prunes() {
        let mut tree = SubscriptionTree::default();
        tree.insert("a/+", "dev", 0);
        tree.insert("a/b", "dev", 1);
        assert_eq!(tree.matches("a/b"), vec![("dev", 1)]);
        assert_eq!(tree.len(), 2);
        assert!(tree.remove("a/b", "dev"));
        assert!(!tree.remove("a/b", "dev"));
        assert_eq!(tree.matches("a/b"), vec![("dev", 0)]);
        assert!(tree.remove("a/+", "dev"));
        assert!(tree.is_empty());
        assert!(tree.root.is_empty(), "branches are pruned");
    }
}
