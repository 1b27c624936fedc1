//! Greengrass IPC: the eventstream RPC protocol spoken over the nucleus's Unix socket.
//!
//! Layers, bottom up: [`codec`] (frames), [`rpc`] (RPC messages and their headers),
//! [`model`] (operation shapes), [`error`] (error payloads and [`IpcError`]), [`client`].
//! The emulator's server reuses every layer below the client.

pub mod client;
pub mod codec;
pub mod error;
pub mod model;
pub mod rpc;

pub use client::{ClientOptions, IpcClient, Subscription};
pub use error::IpcError;
