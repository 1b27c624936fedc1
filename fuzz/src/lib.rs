//! Fuzz targets of greengrass-jobs-handler: one module per target, each a `check(&[u8])` that
//! panics when the code under test breaks one of its promises.
//!
//! Owns: turning fuzzer bytes into inputs for the public API and the properties each target
//! asserts beyond "no panic". Must not know: how the bytes are produced (AFL++ in
//! `src/bin/*.rs`, the corpus replay in `tests/replay.rs`).

pub mod config;
pub mod document;
pub mod frame;
pub mod ipc_session;
pub mod jobs_responses;
pub mod journal;
pub mod json;
pub mod rpc_client;

/// A target's check: panics when the code under test breaks a promise.
pub type Check = fn(&[u8]);

/// Every target: its name (the binary, the corpus directory) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("frame", frame::check),
    ("rpc_client", rpc_client::check),
    ("ipc_session", ipc_session::check),
    ("jobs_responses", jobs_responses::check),
    ("document", document::check),
    ("config", config::check),
    ("journal", journal::check),
];

/// The check of target `name`.
pub fn target(name: &str) -> Option<Check> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
