//! The emulated AWS side: each service a state machine that takes time as a value.
//!
//! Owns: IoT Core's broker ([`iot_core`], its subscription index [`subscription_tree`]), the
//! Jobs service ([`jobs_service`]) and the rules engine ([`rules`]).
//! Must not know: the nucleus, IPC, sockets or the wall clock; [`crate::emulator::world`]
//! wires these together with the cores' connections.

pub mod iot_core;
pub mod jobs_service;
pub mod rules;
pub mod subscription_tree;
