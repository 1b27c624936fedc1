//! The emulated AWS side, as seen from one Greengrass core device.
//!
//! Owns: wiring the broker, the Jobs service and the rules together; the nucleus's own MQTT
//! connection (client id = thing name) with its subscriptions, its resubscribe-per-topic on a
//! clean reconnect, and its spooler for publishes made while offline; delivering what IoT Core
//! sends the nucleus to the IPC side; and the timer that fires Jobs deadlines.
//! Must not know: IPC frames or sessions.

pub mod iot_core;
pub mod job_templates;
pub mod jobs_service;
pub mod rules;
pub mod s3;

use super::nucleus::bus::TopicBus;
use crate::clock::epoch_ms;
use crate::ipc::model::MqttMessage;
use crate::topic;
use iot_core::{Broker, Delivery, Publication, MAX_SUBSCRIPTIONS};
use jobs_service::{ControlError, JobsService, NewJob, Output};
use rules::Rule;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

struct State {
    broker: Broker,
    jobs: JobsService,
    rules: Vec<Rule>,
    /// Filters the nucleus has subscribed on IoT Core, in order, with the index of the
    /// connection holding each (0: `<thing>`, n: `<thing>#<n+1>`).
    nucleus_filters: Vec<(String, u8, usize)>,
    /// Publishes made while the nucleus was offline (its spooler).
    spool: Vec<Publication>,
}

/// IoT Core, the Jobs service and the rules, plus the nucleus's connection to them.
pub struct Cloud {
    thing_name: String,
    state: Mutex<State>,
    /// What IoT Core delivers to the nucleus; the IPC side fans it out to components.
    nucleus_inbox: Arc<TopicBus<MqttMessage>>,
    /// Every message IoT Core receives or sends (device requests, Jobs replies, lifecycle
    /// events, rule output, notifications), for observers: tests, the demo, the CLI.
    tap: Arc<TopicBus<MqttMessage>>,
    changed: Notify,
}

/// Stored messages are replayed to a resumed session at most 10 a second.
pub const REPLAY_INTERVAL: Duration = Duration::from_millis(100);

/// Client id used for messages the operator publishes from the cloud side.
pub const OPERATOR_CLIENT: &str = "emulator-operator";

impl Cloud {
    /// A cloud with `thing_name` registered and the nucleus connected (persistent session).
    pub fn new(
        thing_name: &str,
        nucleus_inbox: Arc<TopicBus<MqttMessage>>,
        with_reconnect_rule: bool,
    ) -> Self {
        let mut jobs = JobsService::default();
        if let Err(e) = jobs.create_thing(thing_name) {
            tracing::error!(error = %e, "invalid thing name for the emulator");
        }
        let cloud = Self {
            thing_name: thing_name.to_owned(),
            state: Mutex::new(State {
                broker: Broker::default(),
                jobs,
                rules: if with_reconnect_rule {
                    vec![Rule::reconnect()]
                } else {
                    Vec::new()
                },
                nucleus_filters: Vec::new(),
                spool: Vec::new(),
            }),
            nucleus_inbox,
            tap: Arc::default(),
            changed: Notify::new(),
        };
        {
            let now = epoch_ms();
            let mut state = cloud.lock();
            let connected = state.broker.connect(thing_name, false, now);
            for event in connected.events {
                cloud.route(&mut state, event, now, 0);
            }
        }
        cloud
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn thing_name(&self) -> &str {
        &self.thing_name
    }

    /// Every message IoT Core receives or sends, for observers. Callbacks run while the cloud
    /// is locked: they must not call back into the cloud.
    pub fn tap(&self) -> &Arc<TopicBus<MqttMessage>> {
        &self.tap
    }

    /// Reads the Jobs service (for inspection).
    pub fn with_jobs<T>(&self, f: impl FnOnce(&JobsService) -> T) -> T {
        f(&self.lock().jobs)
    }

    pub fn nucleus_connected(&self) -> bool {
        self.lock().broker.is_connected(&self.thing_name)
    }

    // ---- what the nucleus does for its components -----------------------------------

    /// PublishToIoTCore: sent on the nucleus's connection, or spooled while it is offline.
    pub fn publish_from_nucleus(&self, message: &MqttMessage, qos: u8) {
        let now = epoch_ms();
        let publication = Publication {
            topic: message.topic_name.clone(),
            payload: message.payload().to_vec(),
            qos,
        };
        let mut state = self.lock();
        if state.broker.is_connected(&self.thing_name) {
            self.client_publish(&mut state, &self.thing_name, publication, now);
        } else {
            tracing::debug!(topic = %publication.topic, "nucleus offline: publish spooled");
            state.spool.push(publication);
        }
        drop(state);
        self.changed.notify_one();
    }

    /// SubscribeToIoTCore: the nucleus subscribes on IoT Core unless an existing subscription
    /// already covers the filter.
    ///
    /// Like the nucleus, it holds at most [`MAX_SUBSCRIPTIONS`] per connection and opens
    /// `<thing>#2`, `<thing>#3`, … for the rest. AWS IoT sends no lifecycle events for those
    /// client ids, so a reconnect topic subscribed there never fires the reconnect rule.
    pub fn subscribe_from_nucleus(&self, filter: &str, qos: u8) {
        let now = epoch_ms();
        let mut state = self.lock();
        let covered = state.nucleus_filters.iter().any(|(f, q, _)| {
            *q >= qos
                && (f == filter || (!filter.contains(['+', '#']) && topic::matches(f, filter)))
        });
        if covered {
            return;
        }
        let mut index = 0;
        while state
            .nucleus_filters
            .iter()
            .filter(|(_, _, c)| *c == index)
            .count()
            >= MAX_SUBSCRIPTIONS
        {
            index += 1;
        }
        let client = self.connection_id(index);
        state.nucleus_filters.push((filter.to_owned(), qos, index));
        let online = state.broker.is_connected(&self.thing_name);
        if online && index > 0 && !state.broker.is_connected(&client) {
            tracing::info!(client_id = %client, "nucleus opens another MQTT connection (50 subscriptions each)");
            let connected = state.broker.connect(&client, false, now);
            for event in connected.events {
                self.route(&mut state, event, now, 0);
            }
        }
        if online {
            let events = state
                .broker
                .subscribe(&client, &[(filter.to_owned(), qos)], now);
            for event in events {
                self.route(&mut state, event, now, 0);
            }
        }
    }

    /// Client id of the nucleus's connection `index`.
    fn connection_id(&self, index: usize) -> String {
        if index == 0 {
            self.thing_name.clone()
        } else {
            format!("{}#{}", self.thing_name, index + 1)
        }
    }

    /// Client ids of the nucleus's connections, and the filters each holds.
    pub fn nucleus_connections(&self) -> Vec<(String, Vec<String>)> {
        let state = self.lock();
        let count = state
            .nucleus_filters
            .iter()
            .map(|(_, _, c)| c + 1)
            .max()
            .unwrap_or(1);
        (0..count)
            .map(|i| {
                let filters = state
                    .nucleus_filters
                    .iter()
                    .filter(|(_, _, c)| *c == i)
                    .map(|(f, _, _)| f.clone())
                    .collect();
                (self.connection_id(i), filters)
            })
            .collect()
    }

    // ---- connection control ---------------------------------------------------------

    /// The nucleus's connection drops (network loss).
    pub fn disconnect_nucleus(&self) {
        let now = epoch_ms();
        let mut state = self.lock();
        let connections = state
            .nucleus_filters
            .iter()
            .map(|(_, _, c)| c + 1)
            .max()
            .unwrap_or(1);
        for index in 0..connections {
            let client = self.connection_id(index);
            let events = state
                .broker
                .disconnect(&client, "CONNECTION_LOST", false, now);
            for event in events {
                self.route(&mut state, event, now, 0);
            }
        }
        tracing::info!(client_id = %self.thing_name, "nucleus MQTT connection dropped");
    }

    /// The nucleus reconnects. With `clean`, the session and everything queued in it is gone,
    /// and the nucleus resubscribes each topic with its own SUBSCRIBE.
    pub fn reconnect_nucleus(&self, clean: bool) {
        let now = epoch_ms();
        let mut state = self.lock();
        let connections = state
            .nucleus_filters
            .iter()
            .map(|(_, _, c)| c + 1)
            .max()
            .unwrap_or(1);
        for index in 0..connections {
            let client = self.connection_id(index);
            let connected = state.broker.connect(&client, clean, now);
            tracing::info!(
                client_id = %client,
                clean,
                session_present = connected.session_present,
                replayed = connected.replayed.len(),
                "nucleus MQTT connection back"
            );
            for event in connected.events {
                self.route(&mut state, event, now, 0);
            }
            self.replay(connected.replayed);
            if !connected.session_present {
                // One SUBSCRIBE per topic, as the nucleus resubscribes.
                let filters: Vec<(String, u8)> = state
                    .nucleus_filters
                    .iter()
                    .filter(|(_, _, c)| *c == index)
                    .map(|(f, q, _)| (f.clone(), *q))
                    .collect();
                for filter in filters {
                    let events = state.broker.subscribe(&client, &[filter], now);
                    for event in events {
                        self.route(&mut state, event, now, 0);
                    }
                }
            }
        }
        let spooled = std::mem::take(&mut state.spool);
        for publication in spooled {
            self.client_publish(&mut state, &self.thing_name, publication, now);
        }
        drop(state);
        self.changed.notify_one();
    }

    /// Publishes from the cloud side (as another MQTT client would).
    pub fn operator_publish(&self, topic: &str, payload: &[u8], qos: u8) {
        let now = epoch_ms();
        let mut state = self.lock();
        let publication = Publication {
            topic: topic.to_owned(),
            payload: payload.to_vec(),
            qos,
        };
        self.route(&mut state, publication, now, 0);
    }

    // ---- jobs control plane ---------------------------------------------------------

    pub fn create_thing(&self, thing_name: &str) -> Result<(), ControlError> {
        self.lock().jobs.create_thing(thing_name)
    }

    pub fn create_job(&self, job: NewJob) -> Result<(), ControlError> {
        self.control(|jobs, now| jobs.create_job(job, now))
    }

    pub fn cancel_job(
        &self,
        job_id: &str,
        force: bool,
        reason: Option<&str>,
    ) -> Result<(), ControlError> {
        self.control(|jobs, now| jobs.cancel_job(job_id, force, reason, now))
    }

    pub fn cancel_job_execution(
        &self,
        job_id: &str,
        thing: &str,
        force: bool,
    ) -> Result<(), ControlError> {
        self.control(|jobs, now| jobs.cancel_job_execution(job_id, thing, force, now))
    }

    pub fn delete_job_execution(
        &self,
        job_id: &str,
        thing: &str,
        execution_number: i64,
        force: bool,
    ) -> Result<(), ControlError> {
        self.control(|jobs, now| {
            jobs.delete_job_execution(job_id, thing, execution_number, force, now)
        })
    }

    pub fn create_thing_group(&self, group: &str) -> Result<(), ControlError> {
        self.lock().jobs.create_thing_group(group)
    }

    pub fn add_thing_to_thing_group(&self, group: &str, thing: &str) -> Result<(), ControlError> {
        self.control(|jobs, now| jobs.add_thing_to_thing_group(group, thing, now))
    }

    pub fn remove_thing_from_thing_group(
        &self,
        group: &str,
        thing: &str,
    ) -> Result<(), ControlError> {
        self.control(|jobs, now| jobs.remove_thing_from_thing_group(group, thing, now))
    }

    pub fn throttle(&self, thing: &str, count: u32) {
        self.lock().jobs.throttle(thing, count);
    }

    fn control(
        &self,
        f: impl FnOnce(&mut JobsService, u64) -> Result<Vec<Output>, ControlError>,
    ) -> Result<(), ControlError> {
        let now = epoch_ms();
        let mut state = self.lock();
        let outputs = f(&mut state.jobs, now)?;
        self.outputs(&mut state, None, outputs, now);
        drop(state);
        self.changed.notify_one();
        Ok(())
    }

    // ---- timers ---------------------------------------------------------------------

    /// Fires Jobs deadlines (step and in-progress timeouts) until the cloud is dropped.
    /// Sleeps only while a deadline exists.
    pub async fn run_timers(self: Arc<Self>) {
        loop {
            let deadline = self.lock().jobs.next_deadline();
            let wait = deadline.map(|d| Duration::from_millis(d.saturating_sub(epoch_ms())));
            match wait {
                Some(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {
                            let now = epoch_ms();
                            let mut state = self.lock();
                            let outputs = state.jobs.tick(now);
                            self.outputs(&mut state, None, outputs, now);
                        }
                        _ = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }

    // ---- routing --------------------------------------------------------------------

    fn client_publish(
        &self,
        state: &mut State,
        client_id: &str,
        publication: Publication,
        now: u64,
    ) {
        let jobs_prefix = format!("$aws/things/{}/jobs/", self.thing_name);
        if let Some(rest) = publication.topic.strip_prefix(&jobs_prefix) {
            self.observe(&publication.topic, &publication.payload);
            let outputs =
                state
                    .jobs
                    .handle_device_request(&self.thing_name, rest, &publication.payload, now);
            self.outputs(state, Some(client_id), outputs, now);
            return;
        }
        if publication.topic.starts_with("$aws/things/") && publication.topic.contains("/jobs/") {
            // Another thing's jobs topics: not this client's to use.
            tracing::warn!(topic = %publication.topic, "publish to another thing's jobs topic dropped");
            return;
        }
        self.route(state, publication, now, 0);
    }

    fn outputs(&self, state: &mut State, requester: Option<&str>, outputs: Vec<Output>, now: u64) {
        for output in outputs {
            match output {
                Output::Reply { topic, payload } => {
                    self.observe(&topic, &payload);
                    // Only the requesting connection gets */accepted and */rejected.
                    if let Some(client) = requester.filter(|c| state.broker.is_connected(c)) {
                        self.deliver(&Delivery {
                            client_id: client.to_owned(),
                            topic,
                            payload,
                            qos: 1,
                        });
                    }
                }
                Output::Publish(publication) => self.route(state, publication, now, 0),
            }
        }
    }

    fn route(&self, state: &mut State, publication: Publication, now: u64, depth: u32) {
        self.observe(&publication.topic, &publication.payload);
        for delivery in state.broker.route(&publication, now) {
            self.deliver(&delivery);
        }
        if depth > 4 {
            tracing::warn!(topic = %publication.topic, "rule loop cut off");
            return;
        }
        let republished: Vec<Publication> = state
            .rules
            .iter()
            .filter_map(|r| r.evaluate(&publication))
            .collect();
        for out in republished {
            tracing::debug!(from = %publication.topic, to = %out.topic, "rule republished");
            self.route(state, out, now, depth + 1);
        }
    }

    /// Messages stored for a persistent session reach the client at most 10 a second.
    fn replay(&self, stored: Vec<Delivery>) {
        let mut stored = stored.into_iter();
        let Some(first) = stored.next() else { return };
        self.deliver(&first);
        let rest: Vec<Delivery> = stored.collect();
        if rest.is_empty() {
            return;
        }
        let inbox = Arc::clone(&self.nucleus_inbox);
        let deliver_later = move |d: &Delivery| {
            inbox.publish(
                &d.topic,
                0,
                &MqttMessage::new(d.topic.clone(), d.payload.clone()),
            );
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    for delivery in rest {
                        tokio::time::sleep(REPLAY_INTERVAL).await;
                        deliver_later(&delivery);
                    }
                });
            }
            Err(_) => rest.iter().for_each(deliver_later),
        }
    }

    /// Shows a message to the tap's observers; nothing is copied when there are none.
    fn observe(&self, topic: &str, payload: &[u8]) {
        if self.tap.subscription_count() > 0 {
            self.tap
                .publish(topic, 0, &MqttMessage::new(topic, payload.to_vec()));
        }
    }

    fn deliver(&self, delivery: &Delivery) {
        let nucleus = delivery.client_id == self.thing_name
            || delivery
                .client_id
                .strip_prefix(self.thing_name.as_str())
                .is_some_and(|rest| rest.starts_with('#'));
        if nucleus {
            let message = MqttMessage::new(delivery.topic.clone(), delivery.payload.clone());
            self.nucleus_inbox.publish(&delivery.topic, 0, &message);
        }
    }
}
