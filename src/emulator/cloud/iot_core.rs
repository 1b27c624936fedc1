//! The emulated AWS IoT Core message broker.
//!
//! Owns: client sessions (clean or persistent, with expiry), subscriptions per session, QoS 1
//! messages queued for a disconnected persistent session, delivery to connected clients, and
//! the lifecycle events (`$aws/events/presence/...`, `$aws/events/subscriptions/...`) with
//! AWS's payload shapes. Must not know: jobs, rules, IPC or real time (time is passed in as
//! epoch milliseconds).

use super::subscription_tree::SubscriptionTree;
use crate::emulator::lookup::LookupMap;
use crate::topic;
use std::collections::{BTreeSet, VecDeque};

/// Subscriptions one connection may hold; AWS silently ignores the rest.
pub const MAX_SUBSCRIPTIONS: usize = 50;
/// Default persistent-session expiry.
pub const DEFAULT_SESSION_EXPIRY_MS: u64 = 3_600_000;
/// The longest persistent-session expiry an account can be given.
pub const MAX_SESSION_EXPIRY_MS: u64 = 604_800_000;
/// Publishes one connection may make per second; the rest are dropped.
pub const MAX_PUBLISHES_PER_SECOND: u32 = 100;

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
    /// Filters in the order they were first subscribed, with their QoS.
    subscriptions: Vec<(String, u8)>,
    queued: VecDeque<Delivery>,
    /// When a disconnected persistent session is discarded.
    expires_at: Option<u64>,
    session_identifier: u64,
    /// Publishes in the current second: (second, count).
    publish_window: (u64, u32),
}

/// The broker.
///
/// Call contract: time comes in as epoch milliseconds and never goes back between calls; every
/// call costs O(log n) in the number of sessions (plus the matching subscribers of a route).
#[derive(Debug)]
pub struct Broker {
    /// Sessions by client id (looked up only; expiry keeps its own ordered index).
    sessions: LookupMap<String, Session>,
    /// Every session's filters, for routing.
    tree: SubscriptionTree,
    /// Disconnected persistent sessions by expiry time.
    expiry: BTreeSet<(u64, String)>,
    /// Per-client presence `versionNumber`, monotonic.
    versions: LookupMap<String, u64>,
    next_session_id: u64,
    session_expiry_ms: u64,
}

impl Default for Broker {
    fn default() -> Self {
        Self {
            sessions: LookupMap::default(),
            tree: SubscriptionTree::default(),
            expiry: BTreeSet::new(),
            versions: LookupMap::default(),
            next_session_id: 1,
            session_expiry_ms: DEFAULT_SESSION_EXPIRY_MS,
        }
    }
}

/// Client ids with `#` or `+` get no lifecycle events.
fn emits_lifecycle(client_id: &str) -> bool {
    !client_id.contains(['#', '+'])
}

/// The principal every emulated client connects as.
const PRINCIPAL: &str = "emulated-certificate";

/// A presence event (`connected`, `disconnected`). Fields in name order, as AWS's samples
/// and the event log have them.
#[cfg_attr(test, derive(serde::Serialize))]
#[cfg_attr(test, serde(rename_all = "camelCase"))]
struct PresenceEvent<'a> {
    client_id: &'a str,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    client_initiated_disconnect: Option<bool>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    disconnect_reason: Option<&'a str>,
    event_type: &'a str,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    ip_address: Option<&'a str>,
    principal_identifier: &'a str,
    session_identifier: String,
    timestamp: u64,
    version_number: u64,
}

/// A subscription event (`subscribed`, `unsubscribed`), fields in name order.
#[cfg_attr(test, derive(serde::Serialize))]
#[cfg_attr(test, serde(rename_all = "camelCase"))]
struct SubscriptionEvent<'a> {
    client_id: &'a str,
    event_type: &'a str,
    principal_identifier: &'a str,
    session_identifier: String,
    timestamp: u64,
    topics: Vec<&'a str>,
}

/// Lifecycle events are written directly: a fleet's reconnect makes one per SUBSCRIBE, and
/// the generic serializer spent most of their cost escaping constant keys. The bytes are
/// those `serde_json` writes for the same struct (compact, fields in order, strings escaped
/// the same way); a test compares the two.
struct JsonObject {
    out: Vec<u8>,
    first: bool,
}

impl JsonObject {
    fn new() -> Self {
        let mut out = Vec::with_capacity(256);
        out.push(b'{');
        Self { out, first: true }
    }

    /// `key` is a plain ASCII name that needs no escaping.
    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        push_json_str(&mut self.out, value);
    }

    fn u64(&mut self, key: &str, value: u64) {
        self.key(key);
        self.out.extend_from_slice(value.to_string().as_bytes());
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn strs(&mut self, key: &str, values: &[&str]) {
        self.key(key);
        self.out.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            push_json_str(&mut self.out, v);
        }
        self.out.push(b']');
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}

/// A JSON string: copied as it is when nothing in it needs escaping (`"`, `\\`, control
/// characters, as `serde_json` escapes), else written by `serde_json`.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        // Writing a string into a vector cannot fail; should it, the value is left empty.
        tracing::error!("a lifecycle event's string could not be written");
        out.extend_from_slice(b"\"\"");
    }
}

impl PresenceEvent<'_> {
    fn payload(&self) -> Vec<u8> {
        let mut o = JsonObject::new();
        o.str("clientId", self.client_id);
        if let Some(v) = self.client_initiated_disconnect {
            o.bool("clientInitiatedDisconnect", v);
        }
        if let Some(v) = self.disconnect_reason {
            o.str("disconnectReason", v);
        }
        o.str("eventType", self.event_type);
        if let Some(v) = self.ip_address {
            o.str("ipAddress", v);
        }
        o.str("principalIdentifier", self.principal_identifier);
        o.str("sessionIdentifier", &self.session_identifier);
        o.u64("timestamp", self.timestamp);
        o.u64("versionNumber", self.version_number);
        o.finish()
    }
}

impl SubscriptionEvent<'_> {
    fn payload(&self) -> Vec<u8> {
        let mut o = JsonObject::new();
        o.str("clientId", self.client_id);
        o.str("eventType", self.event_type);
        o.str("principalIdentifier", self.principal_identifier);
        o.str("sessionIdentifier", &self.session_identifier);
        o.u64("timestamp", self.timestamp);
        o.strs("topics", &self.topics);
        o.finish()
    }
}

fn session_uuid(id: u64) -> String {
    format!("{id:08x}-0000-4000-8000-000000000000")
}

/// Result of a CONNECT.
#[derive(Debug, Default)]
pub struct Connected {
    pub session_present: bool,
    /// Lifecycle events to publish.
    pub events: Vec<Publication>,
    /// Messages stored while the client was away, to be delivered (at most 10 a second).
    pub replayed: Vec<Delivery>,
}

impl Broker {
    /// Sets how long a disconnected persistent session is kept (capped at 7 days, as AWS caps
    /// the account setting).
    pub fn set_session_expiry_ms(&mut self, ms: u64) {
        self.session_expiry_ms = ms.min(MAX_SESSION_EXPIRY_MS);
    }

    pub fn session_expiry_ms(&self) -> u64 {
        self.session_expiry_ms
    }

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

    /// Number of sessions held (connected or stored).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
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
                if let Some(at) = s.expires_at.take() {
                    self.expiry.remove(&(at, client_id.to_owned()));
                }
                s.connected = true;
                s.session_identifier = session_id;
                out.session_present = true;
                out.replayed = s.queued.drain(..).collect();
            }
        } else {
            self.drop_session(client_id);
            self.sessions.insert(
                client_id.to_owned(),
                Session {
                    connected: true,
                    persistent: !clean,
                    subscriptions: Vec::new(),
                    queued: VecDeque::new(),
                    expires_at: None,
                    session_identifier: session_id,
                    publish_window: (0, 0),
                },
            );
        }
        if emits_lifecycle(client_id) {
            let version = self.versions.entry(client_id.to_owned()).or_insert(0);
            *version += 1;
            out.events.push(Publication {
                topic: format!("$aws/events/presence/connected/{client_id}"),
                payload: PresenceEvent {
                    client_id,
                    client_initiated_disconnect: None,
                    disconnect_reason: None,
                    event_type: "connected",
                    ip_address: Some("127.0.0.1"),
                    principal_identifier: PRINCIPAL,
                    session_identifier: session_uuid(session_id),
                    timestamp: now_ms,
                    version_number: *version,
                }
                .payload(),
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
            let at = now_ms + expiry;
            s.expires_at = Some(at);
            self.expiry.insert((at, client_id.to_owned()));
        } else {
            self.drop_session(client_id);
        }
        if !emits_lifecycle(client_id) {
            return Vec::new();
        }
        let version = self.versions.get(client_id).copied().unwrap_or(0);
        vec![Publication {
            topic: format!("$aws/events/presence/disconnected/{client_id}"),
            payload: PresenceEvent {
                client_id,
                client_initiated_disconnect: Some(client_initiated),
                disconnect_reason: Some(reason),
                event_type: "disconnected",
                ip_address: None,
                principal_identifier: PRINCIPAL,
                session_identifier: session_uuid(session_id),
                timestamp: now_ms,
                version_number: version,
            }
            .payload(),
            qos: 0,
        }]
    }

    /// The broker loses a stored session (expiry, a broker-side failure): the next CONNECT
    /// finds no session, whatever its clean flag. A connected session is not touched.
    pub fn discard_session(&mut self, client_id: &str) {
        if !self.is_connected(client_id) {
            self.drop_session(client_id);
        }
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
            let qos = (*qos).min(1);
            if let Some(existing) = s.subscriptions.iter_mut().find(|(f, _)| f == filter) {
                existing.1 = qos;
                self.tree.insert(filter, client_id, qos);
            } else if s.subscriptions.len() < MAX_SUBSCRIPTIONS {
                // One session per core of a fleet: grow the list a slot at a time.
                s.subscriptions.reserve_exact(1);
                s.subscriptions.push((filter.clone(), qos));
                self.tree.insert(filter, client_id, qos);
            } else {
                tracing::warn!(client_id, filter = %filter, "over {MAX_SUBSCRIPTIONS} subscriptions: silently ignored, as AWS IoT does");
            }
        }
        let session_id = s.session_identifier;
        subscription_event(client_id, "subscribed", session_id, filters, now_ms)
    }

    /// One UNSUBSCRIBE packet; returns the `unsubscribed` event (one per packet).
    pub fn unsubscribe(
        &mut self,
        client_id: &str,
        filters: &[String],
        now_ms: u64,
    ) -> Vec<Publication> {
        let Some(s) = self.sessions.get_mut(client_id).filter(|s| s.connected) else {
            return Vec::new();
        };
        for filter in filters {
            if let Some(i) = s.subscriptions.iter().position(|(f, _)| f == filter) {
                s.subscriptions.remove(i);
                self.tree.remove(filter, client_id);
            }
        }
        let session_id = s.session_identifier;
        let listed: Vec<(String, u8)> = filters.iter().map(|f| (f.clone(), 0)).collect();
        subscription_event(client_id, "unsubscribed", session_id, &listed, now_ms)
    }

    /// Counts one PUBLISH from `client_id`; false when it is over the per-connection rate and
    /// must be dropped.
    pub fn admit_publish(&mut self, client_id: &str, now_ms: u64) -> bool {
        let Some(s) = self.sessions.get_mut(client_id).filter(|s| s.connected) else {
            return false;
        };
        let second = now_ms / 1000;
        if s.publish_window.0 != second {
            s.publish_window = (second, 0);
        }
        s.publish_window.1 += 1;
        if s.publish_window.1 > MAX_PUBLISHES_PER_SECOND {
            tracing::warn!(
                client_id,
                "over {MAX_PUBLISHES_PER_SECOND} publishes a second on one connection: dropped"
            );
            return false;
        }
        true
    }

    /// Routes a publication: delivered to connected subscribers, queued (QoS 1) for
    /// disconnected persistent ones. Deliveries come in client-id order.
    pub fn route(&mut self, publication: &Publication, now_ms: u64) -> Vec<Delivery> {
        self.expire(now_ms);
        let mut out = Vec::new();
        for (client_id, qos) in self.tree.matches(&publication.topic) {
            let Some(s) = self.sessions.get_mut(client_id) else {
                continue;
            };
            let delivery = Delivery {
                client_id: client_id.to_owned(),
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

    /// Puts a stored message back at the head of a session's queue (its replay found the
    /// client gone again). Dropped when the session is gone.
    pub fn requeue(&mut self, delivery: Delivery) {
        if let Some(s) = self
            .sessions
            .get_mut(&delivery.client_id)
            .filter(|s| s.persistent && !s.connected)
        {
            s.queued.push_front(delivery);
        }
    }

    fn drop_session(&mut self, client_id: &str) {
        if let Some(s) = self.sessions.remove(client_id) {
            for (filter, _) in &s.subscriptions {
                self.tree.remove(filter, client_id);
            }
            if let Some(at) = s.expires_at {
                self.expiry.remove(&(at, client_id.to_owned()));
            }
        }
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some((at, client)) = self.expiry.first().cloned() {
            if at > now_ms {
                break;
            }
            self.expiry.pop_first();
            tracing::debug!(client_id = %client, "persistent session expired");
            self.drop_session(&client);
            // AWS resets the presence version after a session ends.
            self.versions.remove(&client);
        }
    }
}

fn subscription_event(
    client_id: &str,
    event_type: &str,
    session_id: u64,
    filters: &[(String, u8)],
    now_ms: u64,
) -> Vec<Publication> {
    if !emits_lifecycle(client_id) {
        return Vec::new();
    }
    let topics: Vec<&str> = filters.iter().map(|(f, _)| f.as_str()).collect();
    vec![Publication {
        topic: format!("$aws/events/subscriptions/{event_type}/{client_id}"),
        payload: SubscriptionEvent {
            client_id,
            event_type,
            principal_identifier: PRINCIPAL,
            session_identifier: session_uuid(session_id),
            timestamp: now_ms,
            topics,
        }
        .payload(),
        qos: 0,
    }]
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
    fn lifecycle_payloads_are_what_serde_json_writes() {
        let presence = [
            PresenceEvent {
                client_id: "core-1",
                client_initiated_disconnect: None,
                disconnect_reason: None,
                event_type: "connected",
                ip_address: Some("127.0.0.1"),
                principal_identifier: PRINCIPAL,
                session_identifier: session_uuid(7),
                timestamp: 1_700_000_000_123,
                version_number: 3,
            },
            PresenceEvent {
                client_id: "odd \"id\"\\\n\u{7}é",
                client_initiated_disconnect: Some(false),
                disconnect_reason: Some("CONNECTION_LOST"),
                event_type: "disconnected",
                ip_address: None,
                principal_identifier: PRINCIPAL,
                session_identifier: session_uuid(u64::MAX),
                timestamp: 0,
                version_number: u64::MAX,
            },
        ];
        for e in &presence {
            assert_eq!(e.payload(), serde_json::to_vec(e).unwrap());
        }
        let subscription = [
            SubscriptionEvent {
                client_id: "core-1#2",
                event_type: "subscribed",
                principal_identifier: PRINCIPAL,
                session_identifier: session_uuid(1),
                timestamp: 5,
                topics: vec!["reconnect/core-1", "a/\"b\"/\t#"],
            },
            SubscriptionEvent {
                client_id: "c",
                event_type: "unsubscribed",
                principal_identifier: PRINCIPAL,
                session_identifier: session_uuid(2),
                timestamp: 6,
                topics: Vec::new(),
            },
        ];
        for e in &subscription {
            assert_eq!(e.payload(), serde_json::to_vec(e).unwrap());
        }
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
        let mut b = Broker::default();
        b.set_session_expiry_ms(1000);
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

    #[test]
    fn unsubscribe_emits_an_event_and_stops_delivery() {
        let mut b = Broker::default();
        b.connect("dev", false, 0);
        b.subscribe("dev", &subs("a/#"), 0);
        let e = b.unsubscribe("dev", &["a/#".to_owned()], 5);
        assert_eq!(e[0].topic, "$aws/events/subscriptions/unsubscribed/dev");
        let v: Value = serde_json::from_slice(&e[0].payload).unwrap();
        assert_eq!(v["eventType"], "unsubscribed");
        assert_eq!(v["topics"], serde_json::json!(["a/#"]));
        assert!(b.route(&publication("a/1", 1), 6).is_empty());
    }

    #[test]
    fn a_discarded_session_is_not_resumed() {
        let mut b = Broker::default();
        b.connect("dev", false, 0);
        b.subscribe("dev", &subs("a"), 0);
        b.disconnect("dev", "CONNECTION_LOST", false, 1);
        b.route(&publication("a", 1), 2);
        b.discard_session("dev");
        let c = b.connect("dev", false, 3);
        assert!(!c.session_present);
        assert!(c.replayed.is_empty());
        assert!(
            b.route(&publication("a", 1), 4).is_empty(),
            "the filters went with it"
        );
    }

    #[test]
    fn expiry_costs_no_scan_and_forgets_the_filters() {
        let mut b = Broker::default();
        b.set_session_expiry_ms(1000);
        for i in 0..100 {
            let id = format!("dev{i}");
            b.connect(&id, false, 0);
            b.subscribe(&id, &subs("a"), 0);
            b.disconnect(&id, "CONNECTION_LOST", false, i);
        }
        b.route(&publication("a", 1), 1049);
        assert_eq!(
            b.session_count(),
            50,
            "sessions expire in order of their deadline"
        );
        b.route(&publication("a", 1), 2000);
        assert_eq!(b.session_count(), 0);
        assert!(b.tree.is_empty());
    }

    #[test]
    fn publishes_over_the_per_connection_rate_are_refused() {
        let mut b = Broker::default();
        b.connect("dev", false, 0);
        let admitted = (0..150).filter(|_| b.admit_publish("dev", 500)).count();
        assert_eq!(admitted, MAX_PUBLISHES_PER_SECOND as usize);
        assert!(
            b.admit_publish("dev", 1000),
            "a new second, a new allowance"
        );
    }
}
