//! The local emulator: everything a component talks to, without a Greengrass core or AWS.
//!
//! [`Emulator`] ties together the emulated nucleus ([`nucleus`]) and its IPC server
//! ([`ipc_server`], [`ipc_session`], [`ipc_services`]), local pub/sub ([`bus`]), and the AWS
//! side ([`cloud`]: the IoT Core broker in [`iot_core`], the Jobs service in [`jobs_service`],
//! the rules engine in [`rules`]).

pub mod cloud;
pub mod control_api;
pub mod nucleus;

use crate::ipc::model::{MqttMessage, PublishMessage};
use cloud::Cloud;
use nucleus::bus::TopicBus;
use nucleus::ipc_server::IpcServer;
use nucleus::ipc_services::Services;
use nucleus::Nucleus;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// Thing name of the emulated core device unless another is given.
pub const DEFAULT_THING: &str = "emulated-core";

/// A running emulator.
pub struct Emulator {
    services: Arc<Services>,
    timers: Mutex<Option<JoinHandle<()>>>,
}

impl Default for Emulator {
    fn default() -> Self {
        Self::new()
    }
}

impl Emulator {
    /// An emulator for the core device [`DEFAULT_THING`], with the reconnect rule installed.
    pub fn new() -> Self {
        Self::with_thing(DEFAULT_THING, true)
    }

    /// An emulator for core device `thing_name`; `reconnect_rule` installs the IoT rule that
    /// republishes `subscribed` events to `reconnect/<clientId>`.
    pub fn with_thing(thing_name: &str, reconnect_rule: bool) -> Self {
        let iot = Arc::new(TopicBus::default());
        let cloud = Arc::new(Cloud::new(thing_name, Arc::clone(&iot), reconnect_rule));
        Self {
            services: Arc::new(Services {
                nucleus: Arc::new(Nucleus::default()),
                local: Arc::new(TopicBus::default()),
                iot,
                cloud,
            }),
            timers: Mutex::new(None),
        }
    }

    pub fn nucleus(&self) -> &Arc<Nucleus> {
        &self.services.nucleus
    }

    /// What IoT Core delivers to the nucleus (before it reaches subscribed components).
    pub fn iot(&self) -> &Arc<TopicBus<MqttMessage>> {
        &self.services.iot
    }

    pub fn local_pubsub(&self) -> &Arc<TopicBus<PublishMessage>> {
        &self.services.local
    }

    /// The AWS side: IoT Core, the Jobs service and the rules.
    pub fn cloud(&self) -> &Arc<Cloud> {
        &self.services.cloud
    }

    /// Starts serving IPC on `socket_path`, and the cloud's timers. Must be called inside a
    /// tokio runtime.
    pub fn serve_ipc(&self, socket_path: &Path) -> std::io::Result<IpcServer> {
        let mut timers = self.timers.lock().unwrap_or_else(|p| p.into_inner());
        if timers.is_none() {
            *timers = Some(tokio::spawn(Arc::clone(&self.services.cloud).run_timers()));
        }
        IpcServer::bind(socket_path, Arc::clone(&self.services))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(t) = self.timers.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}
