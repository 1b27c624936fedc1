//! The fleet index: what SearchIndex and dynamic thing groups query — each registered thing's
//! name, attributes, static groups and (with REGISTRY_AND_SHADOW) reported shadow state.
//!
//! Owns: the indexing mode, one record per thing, and posting lists from (field, value) to
//! things, so that a term costs O(log n + its answer) (a prefix wildcard is a range of the
//! postings; other wildcards scan that field's values), `AND` filters its left side's answer
//! by the right side, `OR` unions, and only `NOT` at the top of a query walks every thing.
//! Updates are immediate: a change is in the index when the call that made it returns (AWS
//! indexes within seconds). Must not know: jobs, groups' targets, HTTP or the shadow service
//! (it is handed flattened reported values).

use super::index_query::{Field, Pattern, Query, ThingView};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// `thingIndexingMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexingMode {
    #[default]
    Off,
    Registry,
    RegistryAndShadow,
}

impl IndexingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "OFF",
            Self::Registry => "REGISTRY",
            Self::RegistryAndShadow => "REGISTRY_AND_SHADOW",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Off, Self::Registry, Self::RegistryAndShadow]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// One thing as indexed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexedThing {
    pub name: String,
    pub attributes: BTreeMap<String, String>,
    /// Reported leaves by dot-joined path (several values for an array).
    pub reported: BTreeMap<String, Vec<String>>,
    /// Static groups.
    pub groups: BTreeSet<String>,
}

/// A record seen through the mode (shadow fields hidden unless shadows are indexed).
pub struct View<'a> {
    pub thing: &'a IndexedThing,
    pub shadow: bool,
}

impl ThingView for View<'_> {
    fn name(&self) -> &str {
        &self.thing.name
    }
    fn attribute(&self, key: &str) -> Option<&str> {
        self.thing.attributes.get(key).map(String::as_str)
    }
    fn reported(&self, path: &str) -> Vec<&str> {
        if !self.shadow {
            return Vec::new();
        }
        self.thing
            .reported
            .get(path)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }
    fn groups(&self) -> Vec<&str> {
        self.thing.groups.iter().map(String::as_str).collect()
    }
}

type Key = (String, String);

/// The index. Call contract: every change to a thing goes through one of the `set_*` /
/// `*_group` methods, which keep the postings true.
#[derive(Debug, Default)]
pub struct FleetIndex {
    pub mode: IndexingMode,
    things: BTreeMap<String, IndexedThing>,
    postings: BTreeMap<Key, BTreeSet<String>>,
}

fn field_key(field: &Field) -> String {
    match field {
        Field::ThingName => "thingName".into(),
        Field::Attribute(k) => format!("attributes.{k}"),
        Field::Reported(p) => format!("shadow.reported.{p}"),
        Field::ThingGroupNames => "thingGroupNames".into(),
    }
}

fn keys_of(t: &IndexedThing) -> Vec<Key> {
    let mut keys = Vec::new();
    for (k, v) in &t.attributes {
        keys.push((format!("attributes.{k}"), v.clone()));
    }
    for (p, vs) in &t.reported {
        for v in vs {
            keys.push((format!("shadow.reported.{p}"), v.clone()));
        }
    }
    for g in &t.groups {
        keys.push(("thingGroupNames".into(), g.clone()));
    }
    keys
}

impl FleetIndex {
    pub fn get(&self, name: &str) -> Option<&IndexedThing> {
        self.things.get(name)
    }

    pub fn view<'a>(&self, thing: &'a IndexedThing) -> View<'a> {
        View {
            thing,
            shadow: self.mode == IndexingMode::RegistryAndShadow,
        }
    }

    fn change(&mut self, name: &str, f: impl FnOnce(&mut IndexedThing)) {
        let thing = self
            .things
            .entry(name.to_owned())
            .or_insert_with(|| IndexedThing {
                name: name.to_owned(),
                ..IndexedThing::default()
            });
        let before = keys_of(thing);
        f(thing);
        let after = keys_of(thing);
        for k in before {
            if let Some(set) = self.postings.get_mut(&k) {
                set.remove(name);
                if set.is_empty() {
                    self.postings.remove(&k);
                }
            }
        }
        for k in after {
            self.postings.entry(k).or_default().insert(name.to_owned());
        }
    }

    pub fn set_attributes(&mut self, name: &str, attributes: &BTreeMap<String, String>) {
        self.change(name, |t| t.attributes = attributes.clone());
    }

    pub fn set_reported(&mut self, name: &str, reported: BTreeMap<String, Vec<String>>) {
        if self.things.contains_key(name) {
            self.change(name, |t| t.reported = reported);
        }
    }

    pub fn add_group(&mut self, name: &str, group: &str) {
        self.change(name, |t| {
            t.groups.insert(group.to_owned());
        });
    }

    pub fn remove_group(&mut self, name: &str, group: &str) {
        self.change(name, |t| {
            t.groups.remove(group);
        });
    }

    /// Whether `name` matches `query` now.
    pub fn matches(&self, name: &str, query: &Query) -> bool {
        self.things
            .get(name)
            .is_some_and(|t| query.matches(&self.view(t)))
    }

    /// Every thing matching `query`, in name order.
    pub fn search(&self, query: &Query) -> BTreeSet<String> {
        match query {
            Query::Term(field, pattern) => self.term(field, pattern),
            Query::And(a, b) => {
                let (first, filter) = match (a.as_ref(), b.as_ref()) {
                    (Query::Not(_), _) => (b, a),
                    _ => (a, b),
                };
                self.search(first)
                    .into_iter()
                    .filter(|n| self.matches(n, filter))
                    .collect()
            }
            Query::Or(a, b) => {
                let mut s = self.search(a);
                s.extend(self.search(b));
                s
            }
            Query::Not(q) => self
                .things
                .values()
                .filter(|t| !q.matches(&self.view(t)))
                .map(|t| t.name.clone())
                .collect(),
        }
    }

    fn term(&self, field: &Field, pattern: &Pattern) -> BTreeSet<String> {
        if matches!(field, Field::Reported(_)) && self.mode != IndexingMode::RegistryAndShadow {
            return BTreeSet::new();
        }
        let prefix = pattern.prefix();
        if *field == Field::ThingName {
            return self
                .things
                .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(n, _)| n.starts_with(prefix))
                .filter(|(n, _)| pattern.matches(n))
                .map(|(n, _)| n.clone())
                .collect();
        }
        let key = field_key(field);
        if let Pattern::Exact(v) = pattern {
            return self
                .postings
                .get(&(key, v.clone()))
                .cloned()
                .unwrap_or_default();
        }
        let start = (key.clone(), prefix.to_owned());
        self.postings
            .range(start..)
            .take_while(|((k, v), _)| *k == key && v.starts_with(prefix))
            .filter(|((_, v), _)| pattern.matches(v))
            .flat_map(|(_, things)| things.iter().cloned())
            .collect()
    }
}

/// Flattens a reported state object into dot-joined leaf paths; scalars as text (strings
/// without quotes), array elements under their array's path.
pub fn flatten_reported(state: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, Vec<String>>) {
        use serde_json::Value;
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, v, out);
                }
            }
            Value::Array(items) => {
                for i in items {
                    walk(prefix, i, out);
                }
            }
            Value::Null => {}
            Value::String(s) => out.entry(prefix.to_owned()).or_default().push(s.clone()),
            other => out
                .entry(prefix.to_owned())
                .or_default()
                .push(other.to_string()),
        }
    }
    let mut out = BTreeMap::new();
    walk("", state, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn index() -> FleetIndex {
        let mut ix = FleetIndex {
            mode: IndexingMode::Registry,
            ..FleetIndex::default()
        };
        for i in 0..20 {
            let name = format!("dev-{i:02}");
            let site = if i % 2 == 0 { "north" } else { "south" };
            ix.set_attributes(&name, &BTreeMap::from([("site".into(), site.into())]));
            if i < 5 {
                ix.add_group(&name, "exclude");
            }
            ix.set_reported(
                &name,
                flatten_reported(&json!({"fw": {"v": i}, "tags": ["a", "b"]})),
            );
        }
        ix
    }

    fn names(ix: &FleetIndex, q: &str) -> Vec<String> {
        ix.search(&Query::parse(q).unwrap()).into_iter().collect()
    }

    #[test]
    fn searches_follow_the_postings() {
        let mut ix = index();
        assert_eq!(
            names(&ix, "attributes.site:north AND NOT thingGroupNames:exclude").len(),
            7
        );
        assert_eq!(names(&ix, "thingName:dev-1*").len(), 10);
        assert_eq!(names(&ix, "thingName:*9"), ["dev-09", "dev-19"]);
        assert!(
            names(&ix, "shadow.reported.fw.v:3").is_empty(),
            "shadows not indexed"
        );
        ix.mode = IndexingMode::RegistryAndShadow;
        assert_eq!(names(&ix, "shadow.reported.fw.v:3"), ["dev-03"]);
        assert_eq!(names(&ix, "shadow.reported.tags:b").len(), 20);
        ix.remove_group("dev-00", "exclude");
        ix.set_attributes("dev-02", &BTreeMap::new());
        assert_eq!(
            names(&ix, "NOT thingGroupNames:exclude AND attributes.site:nor*")[..2],
            ["dev-00".to_owned(), "dev-06".to_owned()][..],
            "dev-02 lost its attribute, dev-00 left the group, dev-04 is still in it"
        );
        assert!(names(&ix, "attributes.site:north").len() == 9);
    }
}
