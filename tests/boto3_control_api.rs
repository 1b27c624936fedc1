//! boto3 (the real AWS SDK for Python) against the emulator's listeners, with the component
//! running: a job created through boto3 is executed by the handler and read back through boto3;
//! then boto3's `iot`, `iot-data`, `iot-jobs-data` and `s3` clients drive every other route.
//!
//! The Python interpreter is `$GGJH_PYTHON` (`.ci/run` points it at a venv with boto3).

mod common;

use common::device::{component_command, start_component};
use common::*;
use greengrass_jobs_handler::emulator::http;
use greengrass_jobs_handler::emulator::Emulator;
use serde_json::{json, Value};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

const THING: &str = "boto3-core";

fn python() -> String {
    std::env::var("GGJH_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_the_emulator_and_sees_the_handler_run_its_job() {
    let probe = std::process::Command::new(python())
        .args(["-c", "import boto3"])
        .output()
        .expect("run python");
    assert!(
        probe.status.success(),
        "boto3 is not importable by {}; run `bash .ci/run` or set GGJH_PYTHON",
        python()
    );
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipc.socket");
    let emulator = Arc::new(Emulator::with_thing(THING, true));
    emulator
        .nucleus()
        .register(COMPONENT, TOKEN, json!({"jitterMaxMs": 0}));
    let _server = emulator.serve_ipc(&socket).unwrap();
    let state = http::HttpState::new(Arc::clone(&emulator));
    let any_port = "127.0.0.1:0".parse().unwrap();
    let (addr, _api) = http::serve_control(Arc::clone(&state), any_port)
        .await
        .unwrap();
    let (jobs_data, _jobs_data) = http::serve_jobs_data(Arc::clone(&state), any_port)
        .await
        .unwrap();
    let (s3, _s3) = http::serve_s3(Arc::clone(&state), any_port).await.unwrap();
    let _handler = start_component(&emulator, component_command(&socket, dir.path(), THING)).await;

    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/boto3_control.py");
    let child = tokio::process::Command::new(python())
        .arg(script)
        .env("GGJH_CONTROL_URL", format!("http://{addr}"))
        .env("GGJH_JOBS_DATA_URL", format!("http://{jobs_data}"))
        .env("GGJH_S3_URL", format!("http://{s3}"))
        .env("GGJH_THING", THING)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("boto3 script finished in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let context = format!(
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let steps: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for expected in [
        "create_thing",
        "create_job",
        "job_executed_by_component",
        "list_job_executions_for_thing",
        "cancel_job",
        "continuous_job_on_group_join",
        "not_found_error",
        "already_exists_error",
        "describe_thing",
        "list_things",
        "list_jobs",
        "update_job",
        "delete_job_needs_force",
        "delete_job",
        "describe_endpoint",
        "job_templates",
        "managed_job_templates",
        "get_pending_job_executions",
        "start_next_pending_job_execution",
        "describe_job_execution_data",
        "update_job_execution_version_checked",
        "update_job_execution",
        "jobs_data_not_found",
        "topic_rules_and_publish",
        "s3_put_get",
        "s3_no_such_bucket",
        "update_thing",
        "indexing_configuration",
        "thing_shadow",
        "search_index",
        "search_index_invalid_query",
        "dynamic_thing_group",
        "thing_shadow_deleted",
        "event_configurations",
        "job_rollout_abort_scheduling",
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
}
