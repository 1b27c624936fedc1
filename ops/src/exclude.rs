//! The exclude list: thing names read from a CSV, put into the static group `<job>-exclude`
//! at a paced rate, skipping those already in (so an interrupted fill resumes where it was).
//!
//! Owns: the CSV's syntax (one name per line or comma-separated; a `thingName` header, blank
//! lines and `#` comments skipped) and the fill. Must not know: the dynamic group or the job.

use crate::connection::Iot;
use crate::error::{from_sdk, OpsError};
use crate::pacer::Pacer;
use std::collections::BTreeSet;
use std::time::Instant;
use tokio::task::JoinSet;

/// Most AddThingToThingGroup requests in flight at once.
const IN_FLIGHT: usize = 8;

/// Thing names in the CSV, in order, each once.
pub fn parse_thing_names(csv: &str) -> Result<Vec<String>, String> {
    let mut seen = BTreeSet::new();
    let mut names = Vec::new();
    for (number, line) in csv.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        for field in line.split(',') {
            let name = field.trim().trim_matches('"');
            if name.is_empty() || (number == 0 && name.eq_ignore_ascii_case("thingName")) {
                continue;
            }
            let valid = name.len() <= 128
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'));
            if !valid {
                return Err(format!(
                    "exclude list line {}: {name:?} is not a thing name (letters, digits, ':', '_', '-', at most 128)",
                    number + 1
                ));
            }
            if seen.insert(name.to_owned()) {
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}

/// What filling the group did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filled {
    pub already_in: usize,
    pub added: usize,
    /// Names that are no thing of the account (nothing to exclude).
    pub unknown: Vec<String>,
}

/// Adds every name not yet in `group` to it, at most `per_second` requests a second.
pub async fn fill(
    iot: &Iot,
    group: &str,
    names: &[String],
    per_second: f64,
) -> Result<Filled, OpsError> {
    let members = crate::groups::members(iot, group).await?;
    let mut filled = Filled::default();
    let mut pacer = Pacer::new(Instant::now(), per_second);
    let mut in_flight = JoinSet::new();
    for name in names {
        if members.contains(name) {
            filled.already_in += 1;
            continue;
        }
        if in_flight.len() >= IN_FLIGHT {
            if let Some(done) = in_flight.join_next().await {
                record(done, &mut filled)?;
            }
        }
        tokio::time::sleep_until(pacer.next_slot().into()).await;
        let client = iot.client.clone();
        let attempts = iot.attempts;
        let (group, name) = (group.to_owned(), name.clone());
        in_flight.spawn(async move {
            let answer = client
                .add_thing_to_thing_group()
                .thing_group_name(&group)
                .thing_name(&name)
                .send()
                .await;
            match answer {
                Ok(_) => Ok(Ok(())),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) =>
                {
                    Ok(Err(name))
                }
                Err(e) => Err(from_sdk(
                    "AddThingToThingGroup",
                    || format!("thing {name} or group {group}"),
                    attempts,
                    e,
                )),
            }
        });
    }
    while let Some(done) = in_flight.join_next().await {
        record(done, &mut filled)?;
    }
    filled.unknown.sort();
    Ok(filled)
}

type AddResult = Result<Result<(), String>, OpsError>;

fn record(
    done: Result<AddResult, tokio::task::JoinError>,
    filled: &mut Filled,
) -> Result<(), OpsError> {
    match done {
        Ok(Ok(Ok(()))) => filled.added += 1,
        Ok(Ok(Err(unknown))) => filled.unknown.push(unknown),
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(OpsError::Input(format!("a group request stopped: {e}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_lines_and_commas_once_each() {
        let csv = "thingName\n# lab devices\ncore-1\n\ncore-2, core-3\n\"core-1\"\n";
        assert_eq!(
            parse_thing_names(csv),
            Ok(vec!["core-1".into(), "core-2".into(), "core-3".into()])
        );
    }

    #[test]
    fn a_bad_name_is_refused_with_its_line() {
        let e = parse_thing_names("core-1\ncore 2\n").err();
        assert_eq!(
            e.as_deref(),
            Some("exclude list line 2: \"core 2\" is not a thing name (letters, digits, ':', '_', '-', at most 128)")
        );
    }
}
