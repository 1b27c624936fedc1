//! The world's shell for the emulator process and its tests: the [`World`] behind a lock, on
//! the emulator's clock, with its outputs carried to each core's nucleus.
//!
//! Owns: bringing the world's time up to the clock before every call, firing its deadlines on
//! the wall clock (a task that sleeps until the next one), moving the clock for the control
//! API, and carrying outputs: deliveries to a core's IoT Core inbox, connection status to its
//! watchers, the event log to the tap. Must not know: what the world does inside, IPC frames.
//!
//! Outputs are carried while the world is locked, so they reach their receivers in the
//! world's order. Receivers (bus callbacks, tap observers) must not call back into the world.

use super::clock::{ClockMode, EmulatorClock};
use super::cloud::jobs_service::{ControlError, JobsService, NewJob, Output as JobsOutput};
use super::nucleus::bus::TopicBus;
use super::nucleus::connection_status::ConnectionStatus;
use super::nucleus::profile::publish_packet_size;
use super::world::{Millis, Output, World};
use crate::ipc::model::MqttMessage;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Where a core's share of the world's outputs goes.
#[derive(Clone)]
pub struct CoreEndpoints {
    /// What IoT Core delivers to the core's nucleus; the IPC side fans it out to components.
    pub inbox: Arc<TopicBus<MqttMessage>>,
    /// Whether the core's IoT Core connection is up.
    pub status: watch::Sender<ConnectionStatus>,
    /// The largest MQTT packet the core's client accepts; IoT Core drops larger messages to it
    /// without a word (nucleus lite announces 5,000 bytes).
    pub max_inbound_packet: Option<usize>,
}

struct Inner {
    world: World,
    cores: BTreeMap<String, CoreEndpoints>,
}

/// The world, shared by the IPC servers, the control API and the timer task.
pub struct SharedWorld {
    inner: Mutex<Inner>,
    clock: EmulatorClock,
    default_core: String,
    /// Every message IoT Core receives or sends, for observers: tests, the demo, the CLI.
    tap: Arc<TopicBus<MqttMessage>>,
    changed: Notify,
}

/// Client id used for messages the operator publishes from the cloud side.
pub const OPERATOR_CLIENT: &str = "emulator-operator";

impl SharedWorld {
    /// A shell around `world` on `clock`; `default_core` is the core the single-core
    /// conveniences act on.
    pub fn new(world: World, clock: EmulatorClock, default_core: &str) -> Self {
        Self {
            inner: Mutex::new(Inner {
                world,
                cores: BTreeMap::new(),
            }),
            clock,
            default_core: default_core.to_owned(),
            tap: Arc::default(),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the world at the clock's time and carries out what it produced.
    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let mut inner = self.lock();
        inner.world.set_observing(self.tap.subscription_count() > 0);
        if self.clock.mode() == ClockMode::Wall {
            let now = self.clock.now();
            inner.world.advance_to(now);
        }
        let value = f(&mut inner.world);
        let outputs = inner.world.take_outputs();
        self.carry(&inner, outputs);
        drop(inner);
        self.changed.notify_one();
        value
    }

    fn carry(&self, inner: &Inner, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Deliver {
                    core,
                    topic,
                    payload,
                } => {
                    if let Some(c) = inner.cores.get(&core) {
                        let size = publish_packet_size(&topic, payload.len());
                        if c.max_inbound_packet.is_some_and(|max| size > max) {
                            tracing::info!(%core, %topic, size, "message over the core's maximum packet size dropped");
                            continue;
                        }
                        let message = MqttMessage::new(topic.clone(), payload);
                        c.inbox.publish(&topic, 0, &message);
                    }
                }
                Output::ConnectionStatus { core, connected } => {
                    if let Some(c) = inner.cores.get(&core) {
                        c.status.send_if_modified(|s| s.set(connected));
                    }
                }
                Output::Observed { topic, payload, .. } => {
                    self.tap
                        .publish(&topic, 0, &MqttMessage::new(topic.clone(), payload));
                }
            }
        }
    }

    /// Adds core device `thing` with its endpoints (and its thing, if new).
    pub fn add_core(
        &self,
        thing: &str,
        endpoints: CoreEndpoints,
        nucleus_jobs: bool,
    ) -> Result<(), ControlError> {
        self.lock().cores.insert(thing.to_owned(), endpoints);
        self.with(|w| w.add_core(thing, nucleus_jobs))
    }

    /// The emulator's time (epoch ms).
    pub fn now(&self) -> Millis {
        match self.clock.mode() {
            ClockMode::Wall => self.clock.now(),
            ClockMode::Manual => self.with(|w| w.now()),
        }
    }

    pub fn clock_mode(&self) -> ClockMode {
        self.clock.mode()
    }

    /// Moves the clock forward by `ms` and fires everything that falls due, in order.
    pub fn advance(&self, ms: u64) -> Millis {
        self.clock.advance(ms);
        let now = self.clock.now();
        self.with(|w| {
            w.advance_to(now);
            w.now()
        })
    }

    /// Fires deadlines on the wall clock until dropped; returns at once on a manual clock
    /// (there only [`SharedWorld::advance`] moves time). Sleeps only while a deadline exists.
    pub async fn run_timers(self: Arc<Self>) {
        if self.clock.mode() == ClockMode::Manual {
            return;
        }
        loop {
            let deadline = self.lock().world.next_deadline();
            match deadline {
                Some(at) => {
                    let wait = Duration::from_millis(at.saturating_sub(self.clock.now()));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => self.with(|_| ()),
                        _ = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }

    /// Every message IoT Core receives or sends, for observers. Callbacks run while the world
    /// is locked: they must not call back into it.
    pub fn tap(&self) -> &Arc<TopicBus<MqttMessage>> {
        &self.tap
    }

    /// The core the single-core conveniences act on.
    pub fn thing_name(&self) -> &str {
        &self.default_core
    }

    /// Reads the Jobs service (for inspection).
    pub fn with_jobs<T>(&self, f: impl FnOnce(&JobsService) -> T) -> T {
        self.with(|w| f(w.jobs()))
    }

    // ---- a core's nucleus -----------------------------------------------------------

    pub fn core_connected(&self, core: &str) -> bool {
        self.with(|w| w.core_connected(core))
    }

    pub fn nucleus_connected(&self) -> bool {
        self.core_connected(&self.default_core)
    }

    /// PublishToIoTCore on `core`.
    pub fn publish_from_core(&self, core: &str, message: &MqttMessage, qos: u8) {
        let payload = message.payload().to_vec();
        self.with(|w| w.core_publish(core, &message.topic_name, payload, qos));
    }

    /// SubscribeToIoTCore on `core`.
    pub fn subscribe_from_core(&self, core: &str, filter: &str, qos: u8) {
        self.with(|w| w.core_subscribe(core, filter, qos));
    }

    /// A SubscribeToIoTCore stream on `core` ended.
    pub fn unsubscribe_from_core(&self, core: &str, filter: &str) {
        self.with(|w| w.core_unsubscribe(core, filter));
    }

    /// Client ids of the core's connections, and the filters each holds.
    pub fn core_connections(&self, core: &str) -> Vec<(String, Vec<String>)> {
        self.with(|w| w.core_connections(core))
    }

    /// [`SharedWorld::core_connections`] of the default core.
    pub fn nucleus_connections(&self) -> Vec<(String, Vec<String>)> {
        self.core_connections(&self.default_core)
    }

    /// The core's network drops.
    pub fn disconnect_core(&self, core: &str) {
        self.with(|w| w.core_disconnect(core));
    }

    /// The core's network is back; with `session_lost` the broker lost its sessions meanwhile.
    pub fn reconnect_core(&self, core: &str, session_lost: bool) {
        self.with(|w| w.core_reconnect(core, session_lost));
    }

    pub fn disconnect_nucleus(&self) {
        self.disconnect_core(&self.default_core);
    }

    pub fn reconnect_nucleus(&self, clean: bool) {
        self.reconnect_core(&self.default_core, clean);
    }

    /// Publishes from the cloud side (as another MQTT client or the iot-data API would).
    pub fn operator_publish(&self, topic: &str, payload: &[u8], qos: u8) {
        self.with(|w| w.cloud_publish(topic, payload.to_vec(), qos));
    }

    // ---- jobs control plane ---------------------------------------------------------

    /// Runs a Jobs control operation and sends what it publishes.
    pub fn jobs_control(
        &self,
        f: impl FnOnce(&mut JobsService, Millis) -> Result<Vec<JobsOutput>, ControlError>,
    ) -> Result<(), ControlError> {
        self.with(|w| w.jobs_control(f))
    }

    pub fn create_thing(&self, thing_name: &str) -> Result<(), ControlError> {
        self.with(|w| w.jobs_mut().create_thing(thing_name))
    }

    pub fn create_job(&self, job: NewJob) -> Result<(), ControlError> {
        self.jobs_control(|jobs, now| jobs.create_job(job, now))
    }

    pub fn cancel_job(
        &self,
        job_id: &str,
        force: bool,
        reason: Option<&str>,
    ) -> Result<(), ControlError> {
        self.jobs_control(|jobs, now| jobs.cancel_job(job_id, force, reason, now))
    }

    pub fn cancel_job_execution(
        &self,
        job_id: &str,
        thing: &str,
        force: bool,
    ) -> Result<(), ControlError> {
        self.jobs_control(|jobs, now| jobs.cancel_job_execution(job_id, thing, force, now))
    }

    pub fn delete_job_execution(
        &self,
        job_id: &str,
        thing: &str,
        execution_number: i64,
        force: bool,
    ) -> Result<(), ControlError> {
        self.jobs_control(|jobs, now| {
            jobs.delete_job_execution(job_id, thing, execution_number, force, now)
        })
    }

    pub fn create_thing_group(&self, group: &str) -> Result<(), ControlError> {
        self.with(|w| w.jobs_mut().create_thing_group(group))
    }

    pub fn add_thing_to_thing_group(&self, group: &str, thing: &str) -> Result<(), ControlError> {
        self.jobs_control(|jobs, now| jobs.add_thing_to_thing_group(group, thing, now))
    }

    pub fn remove_thing_from_thing_group(
        &self,
        group: &str,
        thing: &str,
    ) -> Result<(), ControlError> {
        self.jobs_control(|jobs, now| jobs.remove_thing_from_thing_group(group, thing, now))
    }

    pub fn throttle(&self, thing: &str, count: u32) {
        self.with(|w| w.jobs_mut().throttle(thing, count));
    }
}
