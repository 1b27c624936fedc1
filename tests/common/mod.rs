//! Helpers shared by the integration tests: an emulator on a temporary socket.

#![allow(dead_code)]

pub mod device;

use greengrass_jobs_handler::emulator::nucleus::ipc_server::IpcServer;
use greengrass_jobs_handler::emulator::Emulator;
use std::path::PathBuf;
use std::time::Duration;

pub const COMPONENT: &str = "GreengrassJobsHandler";
pub const TOKEN: &str = "test-svcuid-token";

pub struct Running {
    pub emulator: Emulator,
    pub server: IpcServer,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts an emulator with one registered component and the given configuration.
pub fn start_emulator(configuration: serde_json::Value) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("ipc.socket");
    let emulator = Emulator::new();
    emulator.nucleus().register(COMPONENT, TOKEN, configuration);
    let server = emulator.serve_ipc(&socket).expect("bind IPC socket");
    Running {
        emulator,
        server,
        socket,
        _dir: dir,
    }
}

/// Bounds a test step so that a hang fails the test instead of stalling CI.
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}
