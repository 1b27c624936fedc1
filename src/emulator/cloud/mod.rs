//! The emulated AWS side: each service a state machine that takes time as a value.
//!
//! Owns: IoT Core's broker ([`iot_core`], its subscription index [`subscription_tree`]), the
//! Jobs service ([`jobs_service`]) and its templates ([`job_templates`]), the rules engine
//! ([`rules`]), S3 with presigned URLs ([`s3`]), and the account's event configuration with
//! the Jobs events' payloads ([`job_events`]), device shadows ([`shadows`]), and the fleet
//! index ([`fleet_index`]) with its query language ([`index_query`]).
//! Must not know: the nucleus, IPC, sockets or the wall clock; [`crate::emulator::world`]
//! wires these together with the cores' connections.

pub mod fleet_index;
pub mod index_query;
pub mod iot_core;
pub mod job_events;
pub mod job_templates;
pub mod jobs_service;
pub mod rules;
pub mod s3;
pub mod shadows;
pub mod subscription_tree;
