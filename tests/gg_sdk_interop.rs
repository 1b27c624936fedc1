//! Interop with a second, independent IPC client: aws-greengrass-component-sdk (gg-sdk, C with
//! Rust bindings), built as `tests/peers/gg-sdk-peer` and run against the emulator. gg-sdk
//! sends no `:content-type`, orders headers its own way, and refuses error payloads without
//! `_errorCode`, so it checks different things than awsiotsdk does.
//!
//! `.ci/run` builds the peer (it needs libclang for bindgen) and runs this test with
//! `GGJH_GG_SDK_PEER` pointing at it.

mod common;

use common::*;
use greengrass_jobs_handler::ipc::model::MqttMessage;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn run_peer(socket: &std::path::Path, args: &[&str]) -> (bool, Vec<Value>, String) {
    let peer = std::env::var("GGJH_GG_SDK_PEER").expect("GGJH_GG_SDK_PEER");
    let child = tokio::process::Command::new(peer)
        .args(args)
        .env(
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
            socket,
        )
        .env("SVCUID", TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // gg-sdk calls block without a timeout: bound the whole run.
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("gg-sdk peer finished")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let steps = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let context = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), steps, context)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs GGJH_GG_SDK_PEER (bash .ci/run builds tests/peers/gg-sdk-peer and sets it)"]
async fn gg_sdk_client_speaks_to_the_emulator() {
    let env = start_emulator(json!({"greeting": "hi"}));
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let _cloud = env.emulator.iot().subscribe(
        "ggsdk/#",
        0,
        false,
        Box::new(move |topic, _m: &MqttMessage| {
            sink.lock().unwrap().push(topic.to_owned());
            true
        }),
    );
    let (ok, steps, context) = run_peer(&env.socket, &[]).await;
    for expected in [
        "connect",
        "subscribe_to_iot_core",
        "publish_to_iot_core",
        "receive_iot_core",
        "update_state",
        "get_configuration",
        "configuration_not_found",
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
    assert!(ok, "{context}");
    assert_eq!(
        env.emulator.nucleus().component_state(COMPONENT).as_deref(),
        Some("RUNNING")
    );
    assert!(seen.lock().unwrap().contains(&"ggsdk/hello".to_owned()));

    let (ok, steps, context) = run_peer(&env.socket, &["reject"]).await;
    assert!(
        ok && steps
            .iter()
            .any(|s| s["step"] == "rejected_token" && s["ok"] == true),
        "{context}"
    );
}
