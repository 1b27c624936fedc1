//! The local emulator: everything a component talks to, without a Greengrass core or AWS.
//!
//! [`Emulator`] ties together the emulated nucleus ([`nucleus`]), its IPC server
//! ([`ipc_server`], [`ipc_session`], [`ipc_services`]) and the topic buses for local pub/sub
//! and IoT Core ([`bus`]). IoT Core topics are looped back in-process for now.

pub mod bus;
pub mod iot_core;
pub mod ipc_server;
pub mod ipc_services;
pub mod ipc_session;
pub mod jobs_service;
pub mod nucleus;
pub mod rules;

use crate::ipc::model::{MqttMessage, PublishMessage};
use bus::TopicBus;
use ipc_server::IpcServer;
use ipc_services::Services;
use nucleus::Nucleus;
use std::path::Path;
use std::sync::Arc;

/// A running emulator.
pub struct Emulator {
    services: Arc<Services>,
}

impl Default for Emulator {
    fn default() -> Self {
        Self::new()
    }
}

impl Emulator {
    pub fn new() -> Self {
        Self {
            services: Arc::new(Services {
                nucleus: Arc::new(Nucleus::default()),
                local: Arc::new(TopicBus::default()),
                iot: Arc::new(TopicBus::default()),
            }),
        }
    }

    pub fn nucleus(&self) -> &Arc<Nucleus> {
        &self.services.nucleus
    }

    /// The IoT Core side: subscribe here to see what components publish, publish to reach them.
    pub fn iot(&self) -> &Arc<TopicBus<MqttMessage>> {
        &self.services.iot
    }

    pub fn local_pubsub(&self) -> &Arc<TopicBus<PublishMessage>> {
        &self.services.local
    }

    /// Starts serving IPC on `socket_path`. Must be called inside a tokio runtime.
    pub fn serve_ipc(&self, socket_path: &Path) -> std::io::Result<IpcServer> {
        IpcServer::bind(socket_path, Arc::clone(&self.services))
    }
}
