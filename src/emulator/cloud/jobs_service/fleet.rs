//! The fleet side of the control plane: UpdateThing, the indexing configuration,
//! SearchIndex, dynamic thing groups, DescribeThingGroup and ListThingsInThingGroup, and
//! shadow changes reaching the index.
//!
//! Owns: carrying the registry's dynamic-group joins into the Jobs rules (a join is as a
//! static join: continuous jobs on the group give the thing an execution; a leave changes
//! nothing, as AWS keeps the executions of things that leave a dynamic group), and paging of
//! the group and search listings (by thing name). Must not know: HTTP shapes, the shadow
//! documents themselves (it is handed flattened reported state) or how the index stores.

use super::registry::{page_size, Attributes, MembershipChange};
use super::{control, ControlError, JobsService, Output, Page};
use crate::emulator::cloud::fleet_index::{IndexedThing, IndexingMode};
use std::collections::BTreeMap;

/// The largest page of SearchIndex.
pub const MAX_SEARCH_RESULTS: usize = 500;

/// What DescribeThingGroup reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    /// The query of a dynamic group.
    pub query: Option<String>,
    pub members: usize,
}

impl JobsService {
    pub(super) fn apply_membership_changes(&mut self, now_ms: u64) -> Vec<Output> {
        let changes: Vec<MembershipChange> = self.registry.take_membership_changes();
        let mut out = Vec::new();
        for (group, thing, joined) in changes {
            tracing::debug!(group, thing, joined, "dynamic group membership changed");
            if joined {
                out.extend(self.continuous_join(&group, &thing, now_ms));
            }
        }
        out
    }

    /// For calls that return no outputs: what the membership changes send is queued.
    pub(super) fn queue_membership_changes(&mut self) {
        // Queued sends carry the time of the change that caused them; callers without a time
        // (CreateThing) use the job service's latest.
        let now = self.latest_ms();
        let out = self.apply_membership_changes(now);
        self.queued.extend(out);
    }

    fn latest_ms(&self) -> u64 {
        self.jobs
            .values()
            .map(|j| j.last_updated_at_ms)
            .max()
            .unwrap_or(0)
    }

    /// UpdateThing (`attributePayload`, `merge`, `expectedVersion`).
    pub fn update_thing(
        &mut self,
        thing: &str,
        attributes: Attributes,
        merge: bool,
        expected_version: Option<i64>,
        now_ms: u64,
    ) -> Result<Vec<Output>, ControlError> {
        self.registry
            .update_attributes(thing, attributes, merge, expected_version)?;
        Ok(self.apply_membership_changes(now_ms))
    }

    /// A thing's classic shadow now reports `reported` (flattened leaves).
    pub fn set_shadow_reported(
        &mut self,
        thing: &str,
        reported: BTreeMap<String, Vec<String>>,
        now_ms: u64,
    ) -> Vec<Output> {
        self.registry.set_reported(thing, reported);
        self.apply_membership_changes(now_ms)
    }

    pub fn indexing_mode(&self) -> IndexingMode {
        self.registry.index().mode
    }

    /// UpdateIndexingConfiguration.
    pub fn set_indexing_mode(
        &mut self,
        mode: IndexingMode,
        now_ms: u64,
    ) -> Result<Vec<Output>, ControlError> {
        self.registry.set_indexing_mode(mode)?;
        Ok(self.apply_membership_changes(now_ms))
    }

    /// SearchIndex: one page of matching things in name order; the token is the last name.
    pub fn search_index(
        &self,
        query: &str,
        max_results: Option<usize>,
        next_token: Option<&str>,
    ) -> Result<Page<&IndexedThing>, ControlError> {
        let max = page_size(max_results, MAX_SEARCH_RESULTS)?;
        let names = self.registry.search(query)?;
        let mut rest = names
            .iter()
            .filter(|n| next_token.is_none_or(|t| n.as_str() > t))
            .filter_map(|n| self.registry.index().get(n));
        let items: Vec<&IndexedThing> = rest.by_ref().take(max).collect();
        let next_token = match (items.last(), rest.next()) {
            (Some(last), Some(_)) => Some(last.name.clone()),
            _ => None,
        };
        Ok(Page { items, next_token })
    }

    /// Whether shadow fields are indexed (and so shown by SearchIndex).
    pub fn shadows_indexed(&self) -> bool {
        self.indexing_mode() == IndexingMode::RegistryAndShadow
    }

    /// CreateDynamicThingGroup; continuous jobs never target a group before it exists, so
    /// nothing is sent.
    pub fn create_dynamic_thing_group(
        &mut self,
        group: &str,
        query: &str,
        now_ms: u64,
    ) -> Result<Vec<Output>, ControlError> {
        self.registry.create_dynamic_group(group, query)?;
        tracing::info!(group, query, "dynamic thing group created");
        Ok(self.apply_membership_changes(now_ms))
    }

    /// DescribeThingGroup.
    pub fn describe_thing_group(&self, group: &str) -> Result<GroupInfo, ControlError> {
        if !self.registry.contains_group(group) {
            return Err(control(
                "ResourceNotFoundException",
                format!("thing group {group} does not exist"),
            ));
        }
        Ok(GroupInfo {
            name: group.to_owned(),
            query: self.registry.dynamic_query(group).map(str::to_owned),
            members: self.registry.members(group).count(),
        })
    }

    /// ListThingsInThingGroup: member names in order; the token is the last name.
    pub fn list_things_in_thing_group(
        &self,
        group: &str,
        max_results: Option<usize>,
        next_token: Option<&str>,
    ) -> Result<Page<String>, ControlError> {
        self.describe_thing_group(group)?;
        let max = page_size(max_results, 250)?;
        let mut rest = self
            .registry
            .members(group)
            .filter(|n| next_token.is_none_or(|t| n.as_str() > t));
        let items: Vec<String> = rest.by_ref().take(max).cloned().collect();
        let next_token = match (items.last(), rest.next()) {
            (Some(last), Some(_)) => Some(last.clone()),
            _ => None,
        };
        Ok(Page { items, next_token })
    }

    /// Static groups of `thing` (SearchIndex's `thingGroupNames`).
    pub fn thing_groups_of(&self, thing: &str) -> Vec<String> {
        self.registry.groups_of(thing)
    }
}
