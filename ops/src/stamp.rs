//! Shadow stamping: the rollout's key written into the reported shadow of every thing the
//! target query matches, so that each joins the dynamic group at once (the group's query has
//! `OR shadow.reported.<key>:<value>`) instead of when the fleet index gets round to it.
//!
//! Owns: the key and value's syntax, the search for things not yet stamped (so an interrupted
//! stamping resumes where it was) and the paced shadow updates through `iot-data`. Must not
//! know: the groups or the job.

use crate::connection::Iot;
use crate::error::{from_sdk, OpsError};
use crate::pacer::Pacer;
use std::time::Instant;
use tokio::task::JoinSet;

/// Most UpdateThingShadow requests in flight at once.
const IN_FLIGHT: usize = 8;

/// The reported-shadow key and value a rollout stamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub key: String,
    pub value: String,
}

impl Stamp {
    /// A stamp whose key and value can stand unquoted in a fleet-index query.
    pub fn new(key: &str, value: &str) -> Result<Self, String> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        };
        if !plain(key) || key.starts_with('-') {
            return Err(format!(
                "shadow key {key:?}: letters, digits, '_' and '-' only, at most 128"
            ));
        }
        if !plain(value) {
            return Err(format!(
                "shadow value {value:?}: letters, digits, '_' and '-' only, at most 128"
            ));
        }
        Ok(Self {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }

    /// The query term a stamped thing matches.
    pub fn clause(&self) -> String {
        format!("shadow.reported.{}:{}", self.key, self.value)
    }

    /// The shadow document that stamps a thing (only the key: nothing else is touched).
    pub fn document(&self) -> Vec<u8> {
        serde_json::json!({"state": {"reported": {&self.key: &self.value}}})
            .to_string()
            .into_bytes()
    }
}

/// What stamping did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamped {
    pub stamped: usize,
}

/// Every thing `query` matches and not stamped yet, by name, in the index's order.
async fn unstamped(iot: &Iot, query: &str, stamp: &Stamp) -> Result<Vec<String>, OpsError> {
    let query = format!("({query}) AND NOT {}", stamp.clause());
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = iot
            .client
            .search_index()
            .index_name("AWS_Things")
            .query_string(&query)
            .max_results(500)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| from_sdk("SearchIndex", || format!("query {query}"), iot.attempts, e))?;
        names.extend(
            page.things()
                .iter()
                .filter_map(|t| t.thing_name().map(str::to_owned)),
        );
        match page.next_token {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => return Ok(names),
        }
    }
}

/// Stamps every thing `query` matches that does not carry the stamp yet, at most
/// `per_second` shadow updates a second.
pub async fn stamp(
    iot: &Iot,
    query: &str,
    stamp: &Stamp,
    per_second: f64,
) -> Result<Stamped, OpsError> {
    // All names first: stamping a thing takes it out of the search's results, which would
    // shift the pages still to come.
    let names = unstamped(iot, query, stamp).await?;
    if names.is_empty() {
        return Ok(Stamped::default());
    }
    let data = iot.data_plane().await?;
    let document = stamp.document();
    let mut done = Stamped::default();
    let mut pacer = Pacer::new(Instant::now(), per_second);
    let mut in_flight = JoinSet::new();
    for name in names {
        if in_flight.len() >= IN_FLIGHT {
            if let Some(finished) = in_flight.join_next().await {
                record(finished, &mut done)?;
            }
        }
        tokio::time::sleep_until(pacer.next_slot().into()).await;
        let (data, attempts, document) = (data.clone(), iot.attempts, document.clone());
        in_flight.spawn(async move {
            data.update_thing_shadow()
                .thing_name(&name)
                .payload(document.into())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| from_sdk("UpdateThingShadow", || format!("thing {name}"), attempts, e))
        });
    }
    while let Some(finished) = in_flight.join_next().await {
        record(finished, &mut done)?;
    }
    Ok(done)
}

fn record(
    finished: Result<Result<(), OpsError>, tokio::task::JoinError>,
    done: &mut Stamped,
) -> Result<(), OpsError> {
    match finished {
        Ok(Ok(())) => done.stamped += 1,
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(OpsError::Input(format!("a shadow update stopped: {e}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_is_a_query_term_and_a_reported_document() {
        let s = Stamp::new("ggjhRollout", "fw-2_1").unwrap();
        assert_eq!(s.clause(), "shadow.reported.ggjhRollout:fw-2_1");
        let doc: serde_json::Value = serde_json::from_slice(&s.document()).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"state": {"reported": {"ggjhRollout": "fw-2_1"}}})
        );
    }

    #[test]
    fn keys_and_values_that_would_break_the_query_are_refused() {
        assert!(Stamp::new("a.b", "v").is_err());
        assert!(Stamp::new("k", "x OR *").is_err());
        assert!(Stamp::new("", "v").is_err());
        assert!(Stamp::new("k", "").is_err());
    }
}
