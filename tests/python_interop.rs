//! Interop with the real Python Greengrass IPC client (awsiotsdk `GreengrassCoreIPCClientV2`)
//! against the emulator's IPC server.
//!
//! The Python interpreter is `$GGJH_PYTHON` (`.ci/run` points it at a venv with awsiotsdk),
//! else `python3`. Without awsiotsdk the test fails and says how to install it.

mod common;

use common::*;
use greengrass_jobs_handler::ipc::model::MqttMessage;
use serde_json::{json, Value};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// (topic, payload) of a message seen on the cloud side.
type Published = (String, Vec<u8>);

fn python() -> String {
    std::env::var("GGJH_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awsiotsdk_client_v2_speaks_to_the_emulator() {
    let probe = std::process::Command::new(python())
        .args(["-c", "import awsiot.greengrasscoreipc.clientv2"])
        .output()
        .expect("run python");
    assert!(
        probe.status.success(),
        "awsiotsdk is not importable by {}: {}\nRun `bash .ci/run` (it creates a venv with awsiotsdk) \
         or set GGJH_PYTHON to a Python that has it.",
        python(),
        String::from_utf8_lossy(&probe.stderr)
    );

    let env = start_emulator(json!({"greeting": "hi"}));
    // The cloud side sees what the Python component publishes.
    let seen: Arc<Mutex<Vec<Published>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let _cloud = env.emulator.iot().subscribe(
        "interop/#",
        0,
        false,
        Box::new(move |topic, m: &MqttMessage| {
            sink.lock()
                .unwrap()
                .push((topic.to_owned(), m.payload().to_vec()));
            true
        }),
    );

    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/python_ipc_peer.py");
    let child = tokio::process::Command::new(python())
        .arg(script)
        .env(
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
            &env.socket,
        )
        .env("SVCUID", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python");
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("python peer finished in time")
        .expect("python output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let steps: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let context = format!(
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "connect",
        "subscribe_to_iot_core",
        "publish_to_iot_core",
        "receive_iot_core",
        "update_state",
        "get_configuration",
        "configuration_not_found",
        "local_pubsub",
        "connection_status",
        "rejected_token",
    ] {
        let step = steps
            .iter()
            .find(|s| s["step"] == expected)
            .unwrap_or_else(|| panic!("step {expected} missing\n{context}"));
        assert_eq!(
            step["ok"], true,
            "step {expected} failed: {step}\n{context}"
        );
    }
    assert!(output.status.success(), "{context}");

    assert_eq!(
        env.emulator.nucleus().component_state(COMPONENT).as_deref(),
        Some("RUNNING")
    );
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![("interop/python".to_owned(), b"hello from python".to_vec())]
    );
}
