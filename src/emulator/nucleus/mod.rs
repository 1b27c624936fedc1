//! The emulated Greengrass nucleus: what a component on a core device talks to.
//!
//! Owns: the components' registry, tokens, configuration and lifecycle state ([`components`]),
//! the IPC server and its protocol rules ([`ipc_server`], [`ipc_session`]), the IPC operations
//! ([`ipc_services`]), access control ([`access_control`]), local pub/sub ([`bus`]) and the runtime differences it
//! models ([`profile`]).
//! Must not know: how the AWS side works inside (it only calls the cloud's entry points).

pub mod access_control;
pub mod bus;
pub mod components;
pub mod connection_status;
pub mod ipc_server;
pub mod ipc_services;
pub mod ipc_session;
pub mod mqtt_connection;
pub mod profile;

pub use components::Nucleus;
