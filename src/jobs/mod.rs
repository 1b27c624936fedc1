//! AWS IoT Jobs on the device: the API's messages and topics, job documents, and the engine.

pub mod document;
pub mod engine;
pub mod job;
pub mod messages;
pub mod status_details;
pub mod topics;
pub mod undecodable;
