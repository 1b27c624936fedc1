//! The emulated world: the AWS side and every core device's MQTT connection, as one
//! deterministic state machine.
//!
//! Owns: the world's clock (a value that only [`World::advance_to`] moves), its one seeded
//! random generator, IoT Core ([`Broker`]), the Jobs service, the emulated S3 store (whose
//! presigned URLs the Jobs service puts in documents), the rules, each core's nucleus
//! MQTT client ([`NucleusMqtt`]) and the traffic between them: device requests to the Jobs
//! service (for any thing), replies to the requesting connection only, notifications and
//! lifecycle events through the broker and the rules, stored messages replayed at most 10 a
//! second, Jobs deadlines, the account's Jobs request rate, and the event log.
//! Must not know: sockets, IPC, tokio or the wall clock. Shells (the emulator process, tests,
//! the fleet simulation) feed it calls and carry out its [`Output`]s.
//!
//! Call contract: every call may queue outputs; take them with [`World::take_outputs`] after
//! each call, in order. Time never moves by itself: a shell calls [`World::advance_to`], which
//! fires everything due up to that instant in time order (ties in the order they were
//! scheduled). The same seed and the same calls give the same outputs, byte for byte.

use super::cloud::iot_core::{Broker, Delivery, Publication};
use super::cloud::jobs_service::{ControlError, JobsService, Output as JobsOutput};
use super::cloud::rules::Rule;
use super::cloud::s3::S3;
use super::cloud::shadows::{ShadowError, Shadows};
use super::lookup::LookupMap;
use super::nucleus::mqtt_connection::{MqttCommand, NucleusMqtt};
use std::collections::{BTreeMap, VecDeque};

/// Milliseconds since the Unix epoch, on the world's clock.
pub type Millis = u64;

/// Stored messages reach a resumed session at most 10 a second.
pub const REPLAY_INTERVAL_MS: Millis = 100;

/// Rules republishing into each other stop after this many hops.
const MAX_RULE_DEPTH: u32 = 4;

/// What the world asks its shell to do or show.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// IoT Core delivers a message to a core's nucleus (any of its connections).
    Deliver {
        core: String,
        topic: String,
        payload: Vec<u8>,
    },
    /// A core's IoT Core connection went up or down.
    ConnectionStatus { core: String, connected: bool },
    /// A message IoT Core received or sent (only while observing): the event log.
    Observed {
        at: Millis,
        topic: String,
        payload: Vec<u8>,
    },
}

#[derive(Debug)]
enum Timer {
    /// A stored message replayed to a resumed session.
    Replay(Delivery),
}

#[derive(Debug)]
struct Core {
    mqtt: NucleusMqtt,
    /// The connection status last reported.
    reported_online: bool,
}

/// The account's Jobs data-plane request quota: requests per second across all things.
#[derive(Debug, Clone, Copy)]
struct RateQuota {
    per_second: u32,
    window: (Millis, u32),
}

/// The world. See the module doc for the call contract.
#[derive(Debug)]
pub struct World {
    now: Millis,
    rng: fastrand::Rng,
    broker: Broker,
    jobs: JobsService,
    s3: S3,
    shadows: Shadows,
    rules: BTreeMap<String, Rule>,
    /// Cores by thing name (looked up only; [`World::cores`] sorts the names).
    cores: LookupMap<String, Core>,
    /// Client id → the core whose nucleus holds that connection.
    client_core: LookupMap<String, String>,
    timers: BTreeMap<(Millis, u64), Timer>,
    seq: u64,
    observing: bool,
    jobs_quota: Option<RateQuota>,
    /// Jobs requests refused for the account quota.
    quota_refusals: u64,
    mqtt_counts: MqttCounts,
    outputs: Vec<Output>,
}

/// PUBLISH packets between the cores' nuclei and IoT Core, every connection of every core
/// (the components' messages and the nuclei's own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MqttCounts {
    /// Sent by a core's nucleus to IoT Core.
    pub from_cores: u64,
    /// Delivered by IoT Core to a core's nucleus.
    pub to_cores: u64,
}

impl World {
    /// An empty world whose clock reads `start` (epoch ms), with one random generator seeded
    /// from `seed`.
    pub fn new(seed: u64, start: Millis) -> Self {
        // The S3 signing key comes from the seed without drawing from the world's generator.
        let s3 = S3::new(fastrand::Rng::with_seed(seed ^ 0x5333_5333_5333_5333).u64(..));
        let mut jobs = JobsService::default();
        jobs.set_presigner(Some(s3.presigner(None)));
        Self {
            now: start,
            rng: fastrand::Rng::with_seed(seed),
            broker: Broker::default(),
            jobs,
            s3,
            shadows: Shadows::default(),
            rules: BTreeMap::new(),
            cores: LookupMap::default(),
            client_core: LookupMap::default(),
            timers: BTreeMap::new(),
            seq: 0,
            observing: false,
            jobs_quota: None,
            quota_refusals: 0,
            mqtt_counts: MqttCounts::default(),
            outputs: Vec::new(),
        }
    }

    pub fn now(&self) -> Millis {
        self.now
    }

    /// The world's random generator (for shells that need randomness in the same seed).
    pub fn rng(&mut self) -> &mut fastrand::Rng {
        &mut self.rng
    }

    /// Whether [`Output::Observed`] entries are produced (off by default: a fleet has no
    /// observer, and copying every message would cost).
    pub fn set_observing(&mut self, on: bool) {
        self.observing = on;
    }

    /// The outputs queued since the last call, in order.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// Appends the queued outputs to `into` (no allocation when the caller reuses a buffer).
    pub fn drain_outputs(&mut self, into: &mut Vec<Output>) {
        into.append(&mut self.outputs);
    }

    pub fn jobs(&self) -> &JobsService {
        &self.jobs
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    pub fn broker_mut(&mut self) -> &mut Broker {
        &mut self.broker
    }

    /// Refuses Jobs requests over `per_second` across the account with RequestThrottled
    /// (`None`: no quota).
    pub fn set_jobs_rate_quota(&mut self, per_second: Option<u32>) {
        self.jobs_quota = per_second.map(|per_second| RateQuota {
            per_second,
            window: (0, 0),
        });
    }

    /// PUBLISH packets between the cores and IoT Core so far.
    pub fn mqtt_counts(&self) -> MqttCounts {
        self.mqtt_counts
    }

    /// Jobs requests refused with RequestThrottled for the account quota so far.
    pub fn quota_refusals(&self) -> u64 {
        self.quota_refusals
    }

    // ---- time -----------------------------------------------------------------------

    /// The next instant something is due, if anything is.
    pub fn next_deadline(&self) -> Option<Millis> {
        let timer = self.timers.keys().next().map(|(at, _)| *at);
        match (timer, self.jobs.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves the clock to `to` (never back), firing everything due on the way in time order.
    pub fn advance_to(&mut self, to: Millis) {
        while let Some(at) = self.next_deadline().filter(|at| *at <= to) {
            self.now = self.now.max(at);
            let timer = self
                .timers
                .first_key_value()
                .map(|((t, seq), _)| (*t, *seq))
                .filter(|(t, _)| *t <= at);
            match timer {
                Some(key) => {
                    if let Some(timer) = self.timers.remove(&key) {
                        self.fire(timer);
                    }
                }
                None => {
                    let outputs = self.jobs.tick(self.now);
                    self.jobs_outputs(None, outputs);
                }
            }
        }
        self.now = self.now.max(to);
    }

    fn schedule(&mut self, at: Millis, timer: Timer) {
        self.seq += 1;
        self.timers.insert((at, self.seq), timer);
    }

    fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::Replay(delivery) => {
                if self.broker.is_connected(&delivery.client_id) {
                    self.deliver(delivery);
                } else {
                    self.broker.requeue(delivery);
                }
            }
        }
    }

    // ---- rules ----------------------------------------------------------------------

    /// Adds or replaces a topic rule.
    pub fn put_rule(&mut self, rule: Rule) {
        self.rules.insert(rule.name.clone(), rule);
    }

    pub fn delete_rule(&mut self, name: &str) -> Option<Rule> {
        self.rules.remove(name)
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.values()
    }

    // ---- core devices ---------------------------------------------------------------

    /// Registers `thing` (if new) and brings up its core's nucleus connection; `own_jobs`
    /// adds the nucleus's deployment-jobs traffic. A core already present is left as it is.
    pub fn add_core(&mut self, thing: &str, own_jobs: bool) -> Result<(), ControlError> {
        if self.cores.contains_key(thing) {
            return Ok(());
        }
        self.jobs.create_thing(thing)?;
        let mut mqtt = NucleusMqtt::new(thing, own_jobs);
        let start = mqtt.start();
        self.client_core.insert(thing.to_owned(), thing.to_owned());
        self.cores.insert(
            thing.to_owned(),
            Core {
                mqtt,
                reported_online: false,
            },
        );
        self.run(thing, start);
        Ok(())
    }

    pub fn has_core(&self, thing: &str) -> bool {
        self.cores.contains_key(thing)
    }

    /// The cores' thing names, in name order.
    pub fn cores(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = self.cores.keys().map(String::as_str).collect();
        names.sort_unstable();
        names.into_iter()
    }

    pub fn core_connected(&self, core: &str) -> bool {
        self.cores.get(core).is_some_and(|c| c.mqtt.is_online())
    }

    /// A core's connections (client ids) and the filters each holds.
    pub fn core_connections(&self, core: &str) -> Vec<(String, Vec<String>)> {
        let Some(c) = self.cores.get(core) else {
            return Vec::new();
        };
        (0..c.mqtt.connection_count())
            .map(|i| (c.mqtt.client_id(i), c.mqtt.filters_on(i)))
            .collect()
    }

    /// Whether a core's nucleus holds `filter` on IoT Core.
    pub fn core_holds(&self, core: &str, filter: &str) -> bool {
        self.cores.get(core).is_some_and(|c| c.mqtt.holds(filter))
    }

    /// A component on `core` published (PublishToIoTCore).
    pub fn core_publish(
        &mut self,
        core: &str,
        topic: impl Into<String>,
        payload: Vec<u8>,
        qos: u8,
    ) {
        let publication = Publication {
            topic: topic.into(),
            payload,
            qos,
        };
        let Some(c) = self.cores.get_mut(core) else {
            return;
        };
        let cmds = c.mqtt.publish(publication);
        self.run(core, cmds);
    }

    /// A component on `core` subscribed (SubscribeToIoTCore).
    pub fn core_subscribe(&mut self, core: &str, filter: &str, qos: u8) {
        let Some(c) = self.cores.get_mut(core) else {
            return;
        };
        let cmds = c.mqtt.subscribe(filter, qos);
        self.run(core, cmds);
    }

    /// A component's subscription on `core` ended.
    pub fn core_unsubscribe(&mut self, core: &str, filter: &str) {
        let Some(c) = self.cores.get_mut(core) else {
            return;
        };
        let cmds = c.mqtt.unsubscribe(filter);
        self.run(core, cmds);
    }

    /// The core's network drops every connection.
    pub fn core_disconnect(&mut self, core: &str) {
        let Some(c) = self.cores.get_mut(core) else {
            return;
        };
        let clients: Vec<String> = (0..c.mqtt.connection_count())
            .map(|i| c.mqtt.client_id(i))
            .collect();
        c.mqtt.on_connection_lost();
        for client in clients {
            let events = self
                .broker
                .disconnect(&client, "CONNECTION_LOST", false, self.now);
            for e in events {
                self.route(e, 0);
            }
        }
        tracing::info!(client_id = %core, "nucleus MQTT connection dropped");
        self.report_status(core);
    }

    /// The core's network is back. With `session_lost`, the broker has lost the core's
    /// sessions meanwhile (as after an expiry): the nucleus's persistent reconnect finds none,
    /// and it resubscribes each topic with its own SUBSCRIBE.
    pub fn core_reconnect(&mut self, core: &str, session_lost: bool) {
        if self.core_connected(core) {
            self.core_disconnect(core);
        }
        let Some(c) = self.cores.get_mut(core) else {
            return;
        };
        let cmds = c.mqtt.reconnect();
        if session_lost {
            for cmd in &cmds {
                if let MqttCommand::Connect { connection, .. } = cmd {
                    let client = c.mqtt.client_id(*connection);
                    self.broker.discard_session(&client);
                }
            }
        }
        self.run(core, cmds);
    }

    /// Runs a core's MQTT commands against the broker, in order, feeding CONNACKs back.
    fn run(&mut self, core: &str, cmds: Vec<MqttCommand>) {
        let mut queue: VecDeque<MqttCommand> = cmds.into();
        while let Some(cmd) = queue.pop_front() {
            let Some(c) = self.cores.get(core) else {
                return;
            };
            match cmd {
                MqttCommand::Connect { connection, clean } => {
                    let client = c.mqtt.client_id(connection);
                    self.client_core.insert(client.clone(), core.to_owned());
                    let connected = self.broker.connect(&client, clean, self.now);
                    tracing::debug!(client_id = %client, clean, session_present = connected.session_present, replayed = connected.replayed.len(), "nucleus connected");
                    for e in connected.events {
                        self.route(e, 0);
                    }
                    let mut replay = connected.replayed.into_iter();
                    if let Some(first) = replay.next() {
                        self.deliver(first);
                    }
                    for (i, d) in replay.enumerate() {
                        let at = self.now + REPLAY_INTERVAL_MS * (i as u64 + 1);
                        self.schedule(at, Timer::Replay(d));
                    }
                    let more = self
                        .cores
                        .get_mut(core)
                        .map(|c| c.mqtt.on_connack(connection, connected.session_present))
                        .unwrap_or_default();
                    for (i, m) in more.into_iter().enumerate() {
                        queue.insert(i, m);
                    }
                }
                MqttCommand::Disconnect { connection } => {
                    let client = c.mqtt.client_id(connection);
                    let events = self.broker.disconnect(
                        &client,
                        "CLIENT_INITIATED_DISCONNECT",
                        true,
                        self.now,
                    );
                    for e in events {
                        self.route(e, 0);
                    }
                }
                MqttCommand::Subscribe {
                    connection,
                    filter,
                    qos,
                } => {
                    let client = c.mqtt.client_id(connection);
                    let events = self.broker.subscribe(&client, &[(filter, qos)], self.now);
                    for e in events {
                        self.route(e, 0);
                    }
                }
                MqttCommand::Unsubscribe { connection, filter } => {
                    let client = c.mqtt.client_id(connection);
                    let events = self.broker.unsubscribe(&client, &[filter], self.now);
                    for e in events {
                        self.route(e, 0);
                    }
                }
                MqttCommand::Publish {
                    connection,
                    publication,
                } => {
                    let client = c.mqtt.client_id(connection);
                    self.mqtt_counts.from_cores += 1;
                    self.client_publish(&client, publication);
                }
            }
        }
        self.report_status(core);
    }

    fn report_status(&mut self, core: &str) {
        let Some(c) = self.cores.get_mut(core) else {
            return;
        };
        let online = c.mqtt.is_online();
        if online != c.reported_online {
            c.reported_online = online;
            self.outputs.push(Output::ConnectionStatus {
                core: core.to_owned(),
                connected: online,
            });
        }
    }

    // ---- the cloud side -------------------------------------------------------------

    /// A publish from the cloud side (the `iot-data` Publish API, an operator, a service).
    pub fn cloud_publish(&mut self, topic: &str, payload: Vec<u8>, qos: u8) {
        self.route(
            Publication {
                topic: topic.to_owned(),
                payload,
                qos,
            },
            0,
        );
    }

    /// Runs a Jobs control-plane operation at the world's time and sends what it publishes.
    pub fn jobs_control(
        &mut self,
        f: impl FnOnce(&mut JobsService, Millis) -> Result<Vec<JobsOutput>, ControlError>,
    ) -> Result<(), ControlError> {
        let outputs = f(&mut self.jobs, self.now)?;
        self.jobs_outputs(None, outputs);
        Ok(())
    }

    /// Runs a Jobs control-plane operation that returns a value with what it publishes.
    pub fn jobs_call<T>(
        &mut self,
        f: impl FnOnce(&mut JobsService, Millis) -> Result<(T, Vec<JobsOutput>), ControlError>,
    ) -> Result<T, ControlError> {
        let (value, outputs) = f(&mut self.jobs, self.now)?;
        self.jobs_outputs(None, outputs);
        Ok(value)
    }

    /// UpdateThingShadow (`name` "" for the classic shadow): the response document. The
    /// classic shadow's reported state reaches the fleet index (and dynamic groups), and
    /// `…/shadow[/name/<name>]/update/accepted` is published.
    pub fn update_thing_shadow(
        &mut self,
        thing: &str,
        name: &str,
        payload: &[u8],
    ) -> Result<serde_json::Value, ShadowError> {
        let response = self.shadows.update(thing, name, payload, self.now)?;
        let base = if name.is_empty() {
            format!("$aws/things/{thing}/shadow")
        } else {
            format!("$aws/things/{thing}/shadow/name/{name}")
        };
        self.cloud_publish(
            &format!("{base}/update/accepted"),
            response.to_string().into_bytes(),
            0,
        );
        if name.is_empty() {
            let reported =
                super::cloud::fleet_index::flatten_reported(&self.shadows.reported(thing, ""));
            let outputs = self.jobs.set_shadow_reported(thing, reported, self.now);
            self.jobs_outputs(None, outputs);
        }
        Ok(response)
    }

    /// GetThingShadow.
    pub fn get_thing_shadow(
        &self,
        thing: &str,
        name: &str,
    ) -> Result<serde_json::Value, ShadowError> {
        self.shadows.get(thing, name, self.now)
    }

    /// DeleteThingShadow (the classic one's reported state leaves the index).
    pub fn delete_thing_shadow(
        &mut self,
        thing: &str,
        name: &str,
    ) -> Result<serde_json::Value, ShadowError> {
        let response = self.shadows.delete(thing, name, self.now)?;
        if name.is_empty() {
            let outputs = self
                .jobs
                .set_shadow_reported(thing, Default::default(), self.now);
            self.jobs_outputs(None, outputs);
        }
        Ok(response)
    }

    /// The Jobs service, for operations that publish nothing.
    pub fn jobs_mut(&mut self) -> &mut JobsService {
        &mut self.jobs
    }

    pub fn s3(&self) -> &S3 {
        &self.s3
    }

    pub fn s3_mut(&mut self) -> &mut S3 {
        &mut self.s3
    }

    /// Where the S3 listener is (`http://host:port`): documents read from now on carry
    /// presigned URLs to it. `None` (no listener) leaves their placeholders as they are.
    pub fn set_s3_base_url(&mut self, base_url: Option<String>) {
        let presigner = self.s3.presigner(base_url);
        self.jobs.set_presigner(Some(presigner));
    }

    // ---- routing --------------------------------------------------------------------

    /// A PUBLISH from a connected client.
    fn client_publish(&mut self, client: &str, publication: Publication) {
        if !self.broker.admit_publish(client, self.now) {
            return;
        }
        if let Some((thing, rest)) = jobs_request(&publication.topic) {
            self.observe(&publication.topic, &publication.payload);
            let outputs = if self.over_jobs_quota() {
                self.quota_refusals += 1;
                self.jobs
                    .refuse_over_quota(thing, rest, &publication.payload, self.now)
            } else {
                self.jobs
                    .handle_device_request(thing, rest, &publication.payload, self.now)
            };
            self.jobs_outputs(Some(client), outputs);
            return;
        }
        self.route(publication, 0);
    }

    fn over_jobs_quota(&mut self) -> bool {
        let now = self.now;
        let Some(q) = self.jobs_quota.as_mut() else {
            return false;
        };
        let second = now / 1000;
        if q.window.0 != second {
            q.window = (second, 0);
        }
        q.window.1 += 1;
        q.window.1 > q.per_second
    }

    fn jobs_outputs(&mut self, requester: Option<&str>, mut outputs: Vec<JobsOutput>) {
        // Effects beyond the call's own (abort cancellations, job events) go after it.
        outputs.append(&mut self.jobs.take_queued_outputs());
        for output in outputs {
            match output {
                JobsOutput::Reply { topic, payload } => {
                    self.observe(&topic, &payload);
                    // Only the requesting connection gets */accepted and */rejected.
                    if let Some(client) = requester.filter(|c| self.broker.is_connected(c)) {
                        self.deliver(Delivery {
                            client_id: client.to_owned(),
                            topic,
                            payload,
                            qos: 1,
                        });
                    }
                }
                JobsOutput::Publish(publication) => self.route(publication, 0),
            }
        }
    }

    fn route(&mut self, publication: Publication, depth: u32) {
        self.observe(&publication.topic, &publication.payload);
        for delivery in self.broker.route(&publication, self.now) {
            self.deliver(delivery);
        }
        if depth > MAX_RULE_DEPTH {
            tracing::warn!(topic = %publication.topic, "rule loop cut off");
            return;
        }
        let republished: Vec<Publication> = self
            .rules
            .values()
            .filter_map(|r| r.evaluate(&publication))
            .collect();
        for out in republished {
            tracing::debug!(from = %publication.topic, to = %out.topic, "rule republished");
            self.route(out, depth + 1);
        }
    }

    fn deliver(&mut self, delivery: Delivery) {
        if let Some(core) = self.client_core.get(&delivery.client_id) {
            self.mqtt_counts.to_cores += 1;
            self.outputs.push(Output::Deliver {
                core: core.clone(),
                topic: delivery.topic,
                payload: delivery.payload,
            });
        }
    }

    fn observe(&mut self, topic: &str, payload: &[u8]) {
        if self.observing {
            self.outputs.push(Output::Observed {
                at: self.now,
                topic: topic.to_owned(),
                payload: payload.to_vec(),
            });
        }
    }
}

/// `$aws/things/<thing>/jobs/<rest>` → (thing, rest).
fn jobs_request(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix("$aws/things/")?;
    let (thing, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("jobs/")?;
    Some((thing, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replies `core` got since the last call: (topic, payload as JSON).
    fn replies(world: &mut World) -> Vec<(String, serde_json::Value)> {
        world
            .take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Deliver { topic, payload, .. } => {
                    Some((topic, serde_json::from_slice(&payload).ok()?))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_request_over_the_account_quota_is_refused_alone_and_leaves_nothing_behind() {
        let mut world = World::new(1, 1_000_000);
        world.add_core("core-1", false).unwrap();
        world.set_jobs_rate_quota(Some(1));
        let get = "$aws/things/core-1/jobs/get";
        world.core_publish("core-1", get, br#"{"clientToken":"a"}"#.to_vec(), 1);
        world.take_outputs();
        // Over the quota: refused with the request's token.
        world.core_publish("core-1", get, br#"{"clientToken":"b"}"#.to_vec(), 1);
        let refused = replies(&mut world);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, format!("{get}/rejected"));
        assert_eq!(refused[0].1["code"], "RequestThrottled");
        assert_eq!(refused[0].1["clientToken"], "b");
        // Over the quota on a topic that is no Jobs API: InvalidTopic, and no refusal owed
        // to the thing's next request.
        let bogus = "$aws/things/core-1/jobs/no/such/api";
        world.core_publish("core-1", bogus, b"{}".to_vec(), 1);
        let invalid = replies(&mut world);
        assert_eq!(invalid[0].1["code"], "InvalidTopic");
        assert_eq!(world.quota_refusals(), 2);
        world.advance_to(world.now() + 1_000);
        world.core_publish("core-1", get, b"{}".to_vec(), 1);
        let next = replies(&mut world);
        assert_eq!(next[0].0, format!("{get}/accepted"), "{next:?}");
    }
}
