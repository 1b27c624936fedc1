//! The account's event configuration (UpdateEventConfigurations /
//! DescribeEventConfigurations) and the payloads of the Jobs events it turns on.
//!
//! Owns: which event types exist and which are enabled (all off, as on a new account), and
//! the shapes of `$aws/events/job/<jobId>/<operation>` (`eventType` `JOB`) and
//! `$aws/events/jobExecution/<jobId>/<operation>` (`eventType` `JOB_EXECUTION`) with the fields
//! of the developer guide's examples; timestamps in epoch seconds, as there. Event ids are
//! UUID-shaped and drawn from a counter, so a run repeats. Must not know: the Jobs rules that
//! decide when an event happens, the broker or HTTP.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Every event type UpdateEventConfigurations accepts.
pub const EVENT_TYPES: [&str; 11] = [
    "THING",
    "THING_GROUP",
    "THING_TYPE",
    "THING_GROUP_MEMBERSHIP",
    "THING_GROUP_HIERARCHY",
    "THING_TYPE_ASSOCIATION",
    "JOB",
    "JOB_EXECUTION",
    "POLICY",
    "CERTIFICATE",
    "CA_CERTIFICATE",
];

/// Which events are enabled, and when the configuration was made and last changed.
///
/// Call contract: [`EventConfigurations::update`] changes only the types it names and
/// refuses unknown ones as a whole.
#[derive(Debug, Clone, Default)]
pub struct EventConfigurations {
    enabled: BTreeMap<&'static str, bool>,
    pub created_ms: Option<u64>,
    pub last_modified_ms: Option<u64>,
}

impl EventConfigurations {
    pub fn is_enabled(&self, event_type: &str) -> bool {
        self.enabled.get(event_type).copied().unwrap_or(false)
    }

    /// Applies `{"JOB": true, …}`; an unknown type is refused with its name.
    pub fn update(&mut self, changes: &[(String, bool)], now_ms: u64) -> Result<(), String> {
        let mut resolved = Vec::new();
        for (name, on) in changes {
            let Some(known) = EVENT_TYPES.iter().find(|t| **t == name.as_str()) else {
                return Err(format!("unknown event type {name:?}"));
            };
            resolved.push((*known, *on));
        }
        for (t, on) in resolved {
            self.enabled.insert(t, on);
        }
        self.created_ms.get_or_insert(now_ms);
        self.last_modified_ms = Some(now_ms);
        Ok(())
    }

    /// `eventConfigurations` of DescribeEventConfigurations: every type with `Enabled`.
    pub fn describe(&self) -> Value {
        let map: Map<String, Value> = EVENT_TYPES
            .iter()
            .map(|t| ((*t).to_owned(), json!({"Enabled": self.is_enabled(t)})))
            .collect();
        Value::Object(map)
    }
}

/// A UUID-shaped id for event number `n`.
pub fn event_id(n: u64) -> String {
    let h = crc32fast::hash(&n.to_be_bytes());
    format!(
        "{h:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (n >> 48) & 0xffff,
        (n >> 36) & 0xfff,
        (n >> 24) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

/// What a job event says about its job.
#[derive(Debug, Clone)]
pub struct JobEventFields<'a> {
    pub job_id: &'a str,
    pub status: &'a str,
    pub target_selection: &'a str,
    pub targets: Vec<String>,
    pub description: Option<&'a str>,
    pub created_at_ms: u64,
    pub last_updated_at_ms: u64,
    pub completed_at_ms: Option<u64>,
    /// `numberOf…Things` counts.
    pub process_details: Value,
}

/// `$aws/events/job/<jobId>/<operation>` and its payload.
pub fn job_event(operation: &str, f: &JobEventFields<'_>, id: u64, now_ms: u64) -> (String, Value) {
    let mut v = json!({
        "eventType": "JOB",
        "eventId": event_id(id),
        "timestamp": now_ms / 1000,
        "operation": operation,
        "jobId": f.job_id,
        "status": f.status,
        "targetSelection": f.target_selection,
        "targets": f.targets,
        "createdAt": f.created_at_ms / 1000,
        "lastUpdatedAt": f.last_updated_at_ms / 1000,
        "jobProcessDetails": f.process_details,
    });
    if let Some(d) = f.description {
        v["description"] = json!(d);
    }
    if let Some(c) = f.completed_at_ms {
        v["completedAt"] = json!(c / 1000);
    }
    (format!("$aws/events/job/{}/{operation}", f.job_id), v)
}

/// `$aws/events/jobExecution/<jobId>/<operation>` and its payload.
pub fn execution_event(
    operation: &str,
    job_id: &str,
    thing_arn: &str,
    status: &str,
    status_details: &BTreeMap<String, String>,
    id: u64,
    now_ms: u64,
) -> (String, Value) {
    let v = json!({
        "eventType": "JOB_EXECUTION",
        "eventId": event_id(id),
        "timestamp": now_ms / 1000,
        "operation": operation,
        "jobId": job_id,
        "thingArn": thing_arn,
        "status": status,
        "statusDetails": status_details,
    });
    (format!("$aws/events/jobExecution/{job_id}/{operation}"), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_start_off_and_refuse_unknown_types() {
        let mut c = EventConfigurations::default();
        assert!(!c.is_enabled("JOB"));
        assert_eq!(c.describe()["JOB_EXECUTION"], json!({"Enabled": false}));
        c.update(&[("JOB".into(), true)], 5_000).unwrap();
        assert!(c.is_enabled("JOB") && !c.is_enabled("JOB_EXECUTION"));
        let e = c.update(
            &[("JOB_EXECUTION".into(), true), ("NOPE".into(), true)],
            6_000,
        );
        assert!(e.unwrap_err().contains("NOPE"));
        assert!(
            !c.is_enabled("JOB_EXECUTION"),
            "a refused update changes nothing"
        );
        assert_eq!(
            (c.created_ms, c.last_modified_ms),
            (Some(5_000), Some(5_000))
        );
    }

    #[test]
    fn event_ids_are_distinct_and_uuid_shaped() {
        let (a, b) = (event_id(1), event_id(2));
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
