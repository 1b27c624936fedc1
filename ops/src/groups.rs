//! Thing-group membership, read page by page.
//!
//! Owns: the listing of a group's members. Must not know: why the members are wanted (the
//! exclude fill skips them, the rollout's watch counts them).

use crate::connection::Iot;
use crate::error::{from_sdk, OpsError};
use std::collections::BTreeSet;

/// The names of every thing in `group`.
pub async fn members(iot: &Iot, group: &str) -> Result<BTreeSet<String>, OpsError> {
    let mut members = BTreeSet::new();
    let mut pages = iot
        .client
        .list_things_in_thing_group()
        .thing_group_name(group)
        .max_results(250)
        .into_paginator()
        .items()
        .send();
    while let Some(name) = pages.next().await {
        members.insert(name.map_err(|e| {
            from_sdk(
                "ListThingsInThingGroup",
                || format!("thing group {group}"),
                iot.attempts,
                e,
            )
        })?);
    }
    Ok(members)
}
