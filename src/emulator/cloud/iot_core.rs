//! The emulated AWS IoT Core message broker.
//!
//! Owns: client sessions (clean or persistent, with expiry), subscriptions per session, QoS 1
//! messages queued for a disconnected persistent session, delivery to connected clients, and
//! the lifecycle events (`$aws/events/presence/...`, `$aws/events/subscriptions/...`) with
//! AWS's payload shapes. Must not know: jobs, rules, IPC or real time (time is passed in as
//! epoch milliseconds).

use crate::topic;
use serde_json::json;
use std::collections::{HashMap, VecDeque};

/// Subscriptions one connection may hold; AWS silently ignores the rest.
pub const MAX_SUBSCRIPTIONS: usize = 50;
/// Default persistent-session expiry.
pub const DEFAULT_SESSION_EXPIRY_MS: u64 = 3_600_000;

/// A message the broker hands to one client.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub client_id: String,
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
}

/// A message published into the broker (by a client, a service or a rule).
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
}

#[derive(Debug)]
struct Session {
    connected: bool,
    persistent: bool,
    subscriptions: Vec<(String, u8)>,
    queued: VecDeque<Delivery>,
    /// When a disconnected persistent session is discarded.
    expires_at: Option<u64>,
    session_identifier: u64,
}

/// The broker.
#[derive(Debug)]
pub struct Broker {
    sessions: HashMap<String, Session>,
    /// Per-client presence `versionNumber`, monotonic.
    versions: HashMap<String, u64>,
    next_session_id: u64,
    pub session_expiry_ms: u64,
}

impl Default for Broker {
    fn default() -> Self {
        Self {
            sessions: HashMap::new(),
            versions: HashMap::new(),
            next_session_id: 1,
            session_expiry_ms: DEFAULT_SESSION_EXPIRY_MS,
        }
    }
}

/// Client ids with `#` or `+` get no lifecycle events.
fn emits_lifecycle(client_id: &str) -> bool {
    !client_id.contains(['#', '+'])
}

/// Result of a CONNECT.
#[derive(Debug, Default)]
pub struct Connected {
    pub session_present: bool,
    /// Lifecycle events to publish.
    pub events: Vec<Publication>,
    /// Messages stored while the client was away, now delivered.
    pub replayed: Vec<Delivery>,
}

impl Broker {
    pub fn is_connected(&self, client_id: &str) -> bool {
        self.sessions.get(client_id).is_some_and(|s| s.connected)
    }

    pub fn subscriptions(&self, client_id: &str) -> Vec<String> {
        self.sessions
            .get(client_id)
            .map(|s| s.subscriptions.iter().map(|(f, _)| f.clone()).collect())
            .unwrap_or_default()
    }

    pub fn queued_count(&self, client_id: &str) -> usize {
        self.sessions.get(client_id).map_or(0, |s| s.queued.len())
    }

    /// CONNECT with `clean` = cleanSession/Clean Start.
    pub fn connect(&mut self, client_id: &str, clean: bool, now_ms: u64) -> Connected {
        let mut out = Connected::default();
        self.expire(now_ms);
        if self.is_connected(client_id) {
            // The same client id again: the old connection is dropped.
            out.events
                .extend(self.disconnect(client_id, "DUPLICATE_CLIENTID", false, now_ms));
        }
        let resumable = !clean && self.sessions.get(client_id).is_some_and(|s| s.persistent);
        let session_id = self.next_session_id;
        self.next_session_id += 1;
        if resumable {
            if let Some(s) = self.sessions.get_mut(client_id) {
                s.connected = true;
                s.expires_at = None;
                s.session_identifier = session_id;
                out.session_present = true;
                out.replayed = s.queued.drain(..).collect();
            }
        } else {
            self.sessions.insert(
                client_id.to_owned(),
                Session {
                    connected: true,
                    persistent: !clean,
                    subscriptions: Vec::new(),
                    queued: VecDeque::new(),
                    expires_at: None,
                    session_identifier: session_id,
                },
            );
        }
        if emits_lifecycle(client_id) {
            let version = self.versions.entry(client_id.to_owned()).or_insert(0);
            *version += 1;
            out.events.push(Publication {
                topic: format!("$aws/events/presence/connected/{client_id}"),
                payload: json!({
                    "clientId": client_id,
                    "timestamp": now_ms,
                    "eventType": "connected",
                    "sessionIdentifier": format!("{session_id:08x}-0000-4000-8000-000000000000"),
                    "principalIdentifier": "emulated-certificate",
                    "ipAddress": "127.0.0.1",
                    "versionNumber": *version,
                })
                .to_string()
                .into_bytes(),
                qos: 0,
            });
        }
        out
    }

    /// The connection ends; returns the presence event to publish.
    pub fn disconnect(
        &mut self,
        client_id: &str,
        reason: &str,
        client_initiated: bool,
        now_ms: u64,
    ) -> Vec<Publication> {
        let expiry = self.session_expiry_ms;
        let Some(s) = self.sessions.get_mut(client_id).filter(|s| s.connected) else {
            return Vec::new();
        };
        s.connected = false;
        let session_id = s.session_identifier;
        if s.persistent {
            s.expires_at = Some(now_ms + expiry);
        } else {
            self.sessions.remove(client_id);
        }
        if !emits_lifecycle(client_id) {
            return Vec::new();
        }
        let version = self.versions.get(client_id).copied().unwrap_or(0);
        vec![Publication {
            topic: format!("$aws/events/presence/disconnected/{client_id}"),
            payload: json!({
                "clientId": client_id,
                "timestamp": now_ms,
                "eventType": "disconnected",
                "clientInitiatedDisconnect": client_initiated,
                "sessionIdentifier": format!("{session_id:08x}-0000-4000-8000-000000000000"),
                "principalIdentifier": "emulated-certificate",
                "disconnectReason": reason,
                "versionNumber": version,
            })
            .to_string()
            .into_bytes(),
            qos: 0,
        }]
    }

    /// One SUBSCRIBE packet; returns the `subscribed` event (one per packet).
    pub fn subscribe(
        &mut self,
        client_id: &str,
        filters: &[(String, u8)],
        now_ms: u64,
    ) -> Vec<Publication> {
        let Some(s) = self.sessions.get_mut(client_id).filter(|s| s.connected) else {
            return Vec::new();
        };
        for (filter, qos) in filters {
            if topic::validate_filter(filter).is_err() {
                continue;
            }
            if let Some(existing) = s.subscriptions.iter_mut().find(|(f, _)| f == filter) {
                existing.1 = *qos;
            } else if s.subscriptions.len() < MAX_SUBSCRIPTIONS {
                s.subscriptions.push((filter.clone(), (*qos).min(1)));
            } else {
                tracing::warn!(client_id, filter = %filter, "over {MAX_SUBSCRIPTIONS} subscriptions: silently ignored, as AWS IoT does");
            }
        }
        if !emits_lifecycle(client_id) {
            return Vec::new();
        }
        let topics: Vec<&str> = filters.iter().map(|(f, _)| f.as_str()).collect();
        vec![Publication {
            topic: format!("$aws/events/subscriptions/subscribed/{client_id}"),
            payload: json!({
                "clientId": client_id,
                "timestamp": now_ms,
                "eventType": "subscribed",
                "sessionIdentifier": format!("{:08x}-0000-4000-8000-000000000000", s.session_identifier),
                "principalIdentifier": "emulated-certificate",
                "topics": topics,
            })
            .to_string()
            .into_bytes(),
            qos: 0,
        }]
    }

    /// Routes a publication: delivered to connected subscribers, queued (QoS 1) for
    /// disconnected persistent ones.
    pub fn route(&mut self, publication: &Publication, now_ms: u64) -> Vec<Delivery> {
        self.expire(now_ms);
        let mut out = Vec::new();
        for (client_id, s) in &mut self.sessions {
            let Some(qos) = s
                .subscriptions
                .iter()
                .filter(|(f, _)| topic::matches(f, &publication.topic))
                .map(|(_, q)| *q)
                .max()
            else {
                continue;
            };
            let delivery = Delivery {
                client_id: client_id.clone(),
                topic: publication.topic.clone(),
                payload: publication.payload.clone(),
                qos: qos.min(publication.qos),
            };
            if s.connected {
                out.push(delivery);
            } else if s.persistent && delivery.qos == 1 {
                s.queued.push_back(delivery);
            }
        }
        out
    }

    fn expire(&mut self, now_ms: u64) {
        self.sessions
            .retain(|_, s| s.connected || s.expires_at.is_none_or(|at| at > now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn publication(topic: &str, qos: u8) -> Publication {
        Publication {
            topic: topic.into(),
            payload: b"m".to_vec(),
            qos,
        }
    }

    fn subs(f: &str) -> Vec<(String, u8)> {
        vec![(f.to_owned(), 1)]
    }

    #[test]
    fn persistent_session_queues_qos1_and_clean_session_drops_it() {
        let mut b = Broker::default();
        b.connect("dev", false, 0);
        b.subscribe("dev", &subs("a/#"), 0);
        b.disconnect("dev", "CONNECTION_LOST", false, 10);
        assert!(b.route(&publication("a/1", 1), 11).is_empty());
        assert!(b.route(&publication("a/2", 0), 12).is_empty());
        assert_eq!(b.queued_count("dev"), 1, "only QoS 1 is stored");
        let c = b.connect("dev", false, 20);
        assert!(c.session_present);
        assert_eq!(c.replayed.len(), 1);
        assert_eq!(b.subscriptions("dev"), vec!["a/#".to_owned()]);

        b.disconnect("dev", "CONNECTION_LOST", false, 30);
        b.route(&publication("a/3", 1), 31);
        let c = b.connect("dev", true, 40);
        assert!(!c.session_present);
        assert!(c.replayed.is_empty(), "clean session loses queued messages");
        assert!(b.subscriptions("dev").is_empty(), "and its subscriptions");
    }

    #[test]
    fn session_expires() {
        let mut b = Broker {
            session_expiry_ms: 1000,
            ..Broker::default()
        };
        b.connect("dev", false, 0);
        b.subscribe("dev", &subs("a"), 0);
        b.disconnect("dev", "CONNECTION_LOST", false, 0);
        let c = b.connect("dev", false, 1001);
        assert!(!c.session_present);
    }

    #[test]
    fn lifecycle_events_have_aws_shapes() {
        let mut b = Broker::default();
        let c = b.connect("dev", true, 1_700_000_000_000);
        let e: Value = serde_json::from_slice(&c.events[0].payload).unwrap();
        assert_eq!(c.events[0].topic, "$aws/events/presence/connected/dev");
        assert_eq!(e["eventType"], "connected");
        assert_eq!(e["versionNumber"], 1);
        assert_eq!(e["timestamp"], 1_700_000_000_000u64);
        let s = b.subscribe("dev", &subs("reconnect/dev"), 5);
        let e: Value = serde_json::from_slice(&s[0].payload).unwrap();
        assert_eq!(s[0].topic, "$aws/events/subscriptions/subscribed/dev");
        assert_eq!(e["topics"], serde_json::json!(["reconnect/dev"]));
        assert!(e.get("versionNumber").is_none());
        // Duplicate client id kicks the old connection.
        let c = b.connect("dev", true, 6);
        let kicked: Value = serde_json::from_slice(&c.events[0].payload).unwrap();
        assert_eq!(kicked["disconnectReason"], "DUPLICATE_CLIENTID");
        // No lifecycle events for client ids with '#'.
        assert!(b.connect("dev#2", true, 7).events.is_empty());
        assert!(b.subscribe("dev#2", &subs("x"), 7).is_empty());
    }

    #[test]
    fn subscription_limit_is_silent() {
        let mut b = Broker::default();
        b.connect("dev", true, 0);
        for i in 0..60 {
            b.subscribe("dev", &subs(&format!("t/{i}")), 0);
        }
        assert_eq!(b.subscriptions("dev").len(), MAX_SUBSCRIPTIONS);
        assert!(b.route(&publication("t/55", 1), 0).is_empty());
    }
}
