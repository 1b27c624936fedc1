//! The thing registry: things with their attributes, and static thing groups with members.
//!
//! Owns: thing and group names and their validation, thing attributes and the thing's
//! registry version, group membership (static, and dynamic groups whose members are the
//! things matching their query), the fleet index kept in step with every change, and
//! ListThings filtering and paging (by name). A dynamic group is re-evaluated for a thing
//! whenever that thing's attributes, static groups or indexed shadow change (O(dynamic groups)
//! per change), and for every thing when it is created or the indexing mode changes; its
//! joins and leaves are queued for the Jobs rules ([`Registry::take_membership_changes`]).
//! A dynamic group's query sees static groups only. Must not know: jobs, executions or the
//! Jobs rules that follow membership changes.

use super::{control, ControlError, Page};
use crate::emulator::cloud::fleet_index::{FleetIndex, IndexingMode};
use crate::emulator::cloud::index_query::Query;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// Thing attributes: names to values.
pub type Attributes = BTreeMap<String, String>;

/// At most this many attributes per thing.
pub const MAX_ATTRIBUTES: usize = 50;
/// The largest page ListThings returns.
pub const MAX_THINGS_PER_PAGE: usize = 250;

/// A registered thing (DescribeThing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thing {
    pub thing_name: String,
    pub attributes: Attributes,
    /// 1 when created; the registry's version of the thing.
    pub version: i64,
}

/// What ListThings filters by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThingFilter {
    pub attribute_name: Option<String>,
    pub attribute_value: Option<String>,
    /// `usePrefixAttributeValue`: the value only has to start with `attribute_value`.
    pub use_prefix_attribute_value: bool,
    pub max_results: Option<usize>,
    pub next_token: Option<String>,
}

/// Things and groups.
///
/// Call contract: names are validated here; every listing is in name order.
#[derive(Debug, Default)]
pub struct Registry {
    things: BTreeMap<String, Thing>,
    groups: BTreeMap<String, BTreeSet<String>>,
    /// Dynamic groups' queries (their members are in `groups` too).
    dynamic: BTreeMap<String, (String, Query)>,
    index: FleetIndex,
    /// (group, thing, joined) of dynamic groups, for the Jobs rules.
    changes: Vec<(String, String, bool)>,
}

/// A membership change of a dynamic group.
pub type MembershipChange = (String, String, bool);

impl Registry {
    /// CreateThing: idempotent for the same attributes; a thing that exists with other
    /// attributes is refused with ResourceAlreadyExistsException, as AWS does.
    pub fn create_thing(&mut self, name: &str, attributes: Attributes) -> Result<(), ControlError> {
        if !valid_name(name) {
            return Err(control(
                "InvalidRequestException",
                format!("invalid thing name {name:?}"),
            ));
        }
        validate_attributes(&attributes)?;
        if let Some(existing) = self.things.get(name) {
            if existing.attributes == attributes {
                return Ok(());
            }
            return Err(control(
                "ResourceAlreadyExistsException",
                format!("thing {name} already exists with different attributes"),
            ));
        }
        self.index.set_attributes(name, &attributes);
        self.things.insert(
            name.to_owned(),
            Thing {
                thing_name: name.to_owned(),
                attributes,
                version: 1,
            },
        );
        self.reevaluate(name);
        Ok(())
    }

    /// UpdateThing's attributePayload: `merge` adds to the attributes (an empty value removes
    /// one), otherwise they are replaced; `expected_version` must match.
    pub fn update_attributes(
        &mut self,
        name: &str,
        attributes: Attributes,
        merge: bool,
        expected_version: Option<i64>,
    ) -> Result<(), ControlError> {
        let thing = self.things.get_mut(name).ok_or_else(|| {
            control(
                "ResourceNotFoundException",
                format!("thing {name} does not exist"),
            )
        })?;
        if expected_version.is_some_and(|v| v != thing.version) {
            return Err(control(
                "VersionConflictException",
                format!("thing {name} is at version {}", thing.version),
            ));
        }
        let mut next = if merge {
            thing.attributes.clone()
        } else {
            Attributes::new()
        };
        for (k, v) in attributes {
            if v.is_empty() {
                next.remove(&k);
            } else {
                next.insert(k, v);
            }
        }
        validate_attributes(&next)?;
        thing.attributes = next;
        thing.version += 1;
        let attrs = thing.attributes.clone();
        self.index.set_attributes(name, &attrs);
        self.reevaluate(name);
        Ok(())
    }

    /// The thing's reported shadow state changed (flattened leaves).
    pub fn set_reported(&mut self, name: &str, reported: BTreeMap<String, Vec<String>>) {
        if self.things.contains_key(name) {
            self.index.set_reported(name, reported);
            self.reevaluate(name);
        }
    }

    pub fn index(&self) -> &FleetIndex {
        &self.index
    }

    /// UpdateIndexingConfiguration's thingIndexingMode; every dynamic group is re-evaluated.
    pub fn set_indexing_mode(&mut self, mode: IndexingMode) -> Result<(), ControlError> {
        if mode == IndexingMode::Off && !self.dynamic.is_empty() {
            return Err(control(
                "InvalidRequestException",
                "indexing cannot be turned off while dynamic thing groups exist",
            ));
        }
        self.index.mode = mode;
        let names: Vec<String> = self.things.keys().cloned().collect();
        for n in names {
            self.reevaluate(&n);
        }
        Ok(())
    }

    /// SearchIndex: things matching `query` in name order, from after `after`.
    pub fn search(&self, query: &str) -> Result<BTreeSet<String>, ControlError> {
        if self.index.mode == IndexingMode::Off {
            return Err(control(
                "IndexNotReadyException",
                "fleet indexing is off (UpdateIndexingConfiguration)",
            ));
        }
        let q = Query::parse(query).map_err(|e| control("InvalidQueryException", e.0))?;
        Ok(self.index.search(&q))
    }

    /// CreateDynamicThingGroup: members are the things matching `query`, now and later.
    pub fn create_dynamic_group(&mut self, group: &str, query: &str) -> Result<(), ControlError> {
        if !valid_name(group) {
            return Err(control(
                "InvalidRequestException",
                format!("invalid thing group name {group:?}"),
            ));
        }
        if self.groups.contains_key(group) {
            return Err(control(
                "ResourceAlreadyExistsException",
                format!("thing group {group} already exists"),
            ));
        }
        if self.index.mode == IndexingMode::Off {
            return Err(control(
                "InvalidRequestException",
                "dynamic thing groups need fleet indexing (UpdateIndexingConfiguration)",
            ));
        }
        let q = Query::parse(query).map_err(|e| control("InvalidQueryException", e.0))?;
        let members = self.index.search(&q);
        for t in &members {
            self.changes.push((group.to_owned(), t.clone(), true));
        }
        self.groups.insert(group.to_owned(), members);
        self.dynamic.insert(group.to_owned(), (query.to_owned(), q));
        Ok(())
    }

    /// A dynamic group's query string (`None` for a static or unknown group).
    pub fn dynamic_query(&self, group: &str) -> Option<&str> {
        self.dynamic.get(group).map(|(q, _)| q.as_str())
    }

    /// Static groups of `thing`, in name order.
    pub fn groups_of(&self, thing: &str) -> Vec<String> {
        self.index
            .get(thing)
            .map(|t| t.groups.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The dynamic groups' joins and leaves since the last call, in order.
    pub fn take_membership_changes(&mut self) -> Vec<MembershipChange> {
        std::mem::take(&mut self.changes)
    }

    fn reevaluate(&mut self, thing: &str) {
        for (group, (_, q)) in &self.dynamic {
            let now = self.index.matches(thing, q);
            let Some(members) = self.groups.get_mut(group) else {
                continue;
            };
            let was = members.contains(thing);
            if now && !was {
                members.insert(thing.to_owned());
                self.changes.push((group.clone(), thing.to_owned(), true));
            } else if was && !now {
                members.remove(thing);
                self.changes.push((group.clone(), thing.to_owned(), false));
            }
        }
    }

    pub fn contains_thing(&self, name: &str) -> bool {
        self.things.contains_key(name)
    }

    /// DescribeThing.
    pub fn thing(&self, name: &str) -> Result<&Thing, ControlError> {
        self.things.get(name).ok_or_else(|| {
            control(
                "ResourceNotFoundException",
                format!("thing {name} does not exist"),
            )
        })
    }

    /// ListThings: things in name order matching the attribute filter, one page at a time.
    /// The token is the name of the last thing of the previous page.
    pub fn list_things(&self, filter: &ThingFilter) -> Result<Page<&Thing>, ControlError> {
        let max = page_size(filter.max_results, MAX_THINGS_PER_PAGE)?;
        if filter.attribute_value.is_some() && filter.attribute_name.is_none() {
            return Err(control(
                "InvalidRequestException",
                "attributeValue needs attributeName",
            ));
        }
        let start = filter
            .next_token
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let matches = |t: &Thing| match (&filter.attribute_name, &filter.attribute_value) {
            (None, _) => true,
            (Some(name), None) => t.attributes.contains_key(name),
            (Some(name), Some(value)) => t.attributes.get(name).is_some_and(|v| {
                if filter.use_prefix_attribute_value {
                    v.starts_with(value.as_str())
                } else {
                    v == value
                }
            }),
        };
        let mut items = Vec::new();
        let mut rest = self
            .things
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(_, t)| t)
            .filter(|t| matches(t));
        for t in rest.by_ref().take(max) {
            items.push(t);
        }
        let next_token = match (items.last(), rest.next()) {
            (Some(last), Some(_)) => Some(last.thing_name.clone()),
            _ => None,
        };
        Ok(Page { items, next_token })
    }

    pub fn create_group(&mut self, group: &str) -> Result<(), ControlError> {
        if !valid_name(group) {
            return Err(control(
                "InvalidRequestException",
                format!("invalid thing group name {group:?}"),
            ));
        }
        if self.dynamic.contains_key(group) {
            return Err(control(
                "ResourceAlreadyExistsException",
                format!("{group} is a dynamic thing group"),
            ));
        }
        self.groups.entry(group.to_owned()).or_default();
        Ok(())
    }

    pub fn contains_group(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// Members of `group` in name order (none for an unknown group).
    pub fn members<'a>(&'a self, group: &str) -> impl Iterator<Item = &'a String> + 'a {
        self.groups.get(group).into_iter().flatten()
    }

    /// Adds `thing` to `group`; false when it already was a member.
    pub fn add_member(&mut self, group: &str, thing: &str) -> Result<bool, ControlError> {
        if !self.things.contains_key(thing) {
            return Err(control(
                "ResourceNotFoundException",
                format!("thing {thing} does not exist"),
            ));
        }
        let added = self.group_mut(group)?.insert(thing.to_owned());
        if added {
            self.index.add_group(thing, group);
            self.reevaluate(thing);
        }
        Ok(added)
    }

    /// Removes `thing` from `group`; false when it was not a member.
    pub fn remove_member(&mut self, group: &str, thing: &str) -> Result<bool, ControlError> {
        let removed = self.group_mut(group)?.remove(thing);
        if removed {
            self.index.remove_group(thing, group);
            self.reevaluate(thing);
        }
        Ok(removed)
    }

    fn group_mut(&mut self, group: &str) -> Result<&mut BTreeSet<String>, ControlError> {
        if self.dynamic.contains_key(group) {
            return Err(control(
                "InvalidRequestException",
                format!("{group} is a dynamic thing group: its members follow its query"),
            ));
        }
        self.groups.get_mut(group).ok_or_else(|| {
            control(
                "ResourceNotFoundException",
                format!("thing group {group} does not exist"),
            )
        })
    }
}

/// `maxResults`: 1 to `max`, `max` when not given.
pub(super) fn page_size(requested: Option<usize>, max: usize) -> Result<usize, ControlError> {
    match requested {
        None => Ok(max),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(control(
            "InvalidRequestException",
            format!("maxResults {n} is outside 1..={max}"),
        )),
    }
}

/// Thing and group names: 1–128 characters of `[a-zA-Z0-9:_-]`.
fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'))
}

/// Attribute names: 1–128 of `[a-zA-Z0-9_.,@/:#-]`; values up to 800 of the same plus `=[]`.
fn validate_attributes(attributes: &Attributes) -> Result<(), ControlError> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(control(
            "InvalidRequestException",
            format!("at most {MAX_ATTRIBUTES} attributes"),
        ));
    }
    let name_char = |c: char| c.is_ascii_alphanumeric() || "_.,@/:#-".contains(c);
    for (name, value) in attributes {
        if !(1..=128).contains(&name.len()) || !name.chars().all(name_char) {
            return Err(control(
                "InvalidRequestException",
                format!("invalid attribute name {name:?}"),
            ));
        }
        if value.len() > 800 || !value.chars().all(|c| name_char(c) || "=[]".contains(c)) {
            return Err(control(
                "InvalidRequestException",
                format!("invalid value of attribute {name:?}"),
            ));
        }
    }
    Ok(())
}
