//! The thing registry: things with their attributes, and static thing groups with members.
//!
//! Owns: thing and group names and their validation, thing attributes and the thing's
//! registry version, group membership, and ListThings filtering and paging (by name).
//! Must not know: jobs, executions or the Jobs rules that follow membership changes.

use super::{control, ControlError, Page};
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
}

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
        self.things.insert(
            name.to_owned(),
            Thing {
                thing_name: name.to_owned(),
                attributes,
                version: 1,
            },
        );
        Ok(())
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
        Ok(self.group_mut(group)?.insert(thing.to_owned()))
    }

    /// Removes `thing` from `group`; false when it was not a member.
    pub fn remove_member(&mut self, group: &str, thing: &str) -> Result<bool, ControlError> {
        Ok(self.group_mut(group)?.remove(thing))
    }

    fn group_mut(&mut self, group: &str) -> Result<&mut BTreeSet<String>, ControlError> {
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
