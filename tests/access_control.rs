//! The recipe's `accessControl` is enough for everything the component does, and no more:
//! with the emulated nucleus enforcing it strictly, the component subscribes, runs jobs and
//! reaches a worker component, both with and without `{iot:thingName}` interpolation, while
//! anything outside its policy is refused with UnauthorizedError.

mod common;

use common::device::{component_command, start_component};
use common::*;
use greengrass_jobs_handler::emulator::cloud::jobs_service::NewJob;
use greengrass_jobs_handler::emulator::Emulator;
use greengrass_jobs_handler::ipc::model::{PublishMessage, Qos, SubscriptionResponseMessage};
use greengrass_jobs_handler::ipc::{ClientOptions, IpcClient};
use greengrass_jobs_handler::jobs::messages::JobStatus;
use serde_json::{json, Value};
use std::time::Duration;

const THING: &str = "acl-core";

/// The recipe's DefaultConfiguration, as the nucleus would hold it (YAML read by PyYAML).
fn recipe_defaults() -> Value {
    let python = std::env::var("GGJH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let recipe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipe.yaml");
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&recipe)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "PyYAML needed ({python}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).replace("{COMPONENT_NAME}", COMPONENT);
    let recipe: Value = serde_json::from_str(&text).unwrap();
    recipe["ComponentConfiguration"]["DefaultConfiguration"].clone()
}

async fn scenario(interpolate: bool) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipc.socket");
    let emulator = Emulator::with_thing(THING, true);
    emulator.nucleus().set_strict_access_control(true);
    emulator
        .nucleus()
        .set_interpolation(interpolate.then_some(THING));
    let mut config = recipe_defaults();
    config["jitterMaxMs"] = json!("0");
    config["workerOperations"] = json!(["remote"]);
    emulator.nucleus().register(COMPONENT, TOKEN, config);
    emulator.nucleus().register(
        "Worker",
        "worker-token",
        json!({"accessControl": {"aws.greengrass.ipc.pubsub": {"Worker:1": {
            "operations": ["aws.greengrass#SubscribeToTopic", "aws.greengrass#PublishToTopic"],
            "resources": ["greengrass-jobs-handler/request/remote", "greengrass-jobs-handler/reply/*"]}}}}),
    );
    let _server = emulator.serve_ipc(&socket).unwrap();

    let worker = IpcClient::connect(&socket, "worker-token", ClientOptions::default())
        .await
        .unwrap();
    let mut requests = worker
        .subscribe_to_topic("greengrass-jobs-handler/request/remote", None)
        .await
        .unwrap();
    let replier = worker.clone();
    tokio::spawn(async move {
        while let Some(SubscriptionResponseMessage::JsonMessage(m)) = requests.recv().await {
            let r = m.message.unwrap_or_default();
            let reply = json!({"correlationId": r["correlationId"], "status": "SUCCEEDED", "statusDetails": {"by": "worker"}});
            let _ = replier
                .publish_to_topic(
                    r["replyTopic"].as_str().unwrap_or_default(),
                    PublishMessage::json(reply),
                )
                .await;
        }
    });

    let work = tempfile::tempdir().unwrap();
    let _handler = start_component(&emulator, component_command(&socket, work.path(), THING)).await;
    for (job, doc) in [
        ("local", json!({"operation": "add", "a": 1, "b": 2})),
        ("remote", json!({"operation": "remote"})),
    ] {
        emulator
            .world()
            .create_job(NewJob {
                job_id: job.into(),
                targets: vec![THING.into()],
                document: doc,
                ..NewJob::default()
            })
            .unwrap();
        within(&format!("{job} succeeded"), async {
            while emulator
                .world()
                .with_jobs(|j| j.execution(job, THING, None).map(|e| e.status))
                != Some(JobStatus::Succeeded)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    // Anything else with the component's token is refused.
    let client = IpcClient::connect(&socket, TOKEN, ClientOptions::default())
        .await
        .unwrap();
    let denied = client
        .publish_to_iot_core(
            &format!("$aws/things/{THING}/shadow/update"),
            Qos::AtLeastOnce,
            b"{}".to_vec(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        denied.service_code(),
        Some("UnauthorizedError"),
        "{denied:?}"
    );
    let denied = client
        .subscribe_to_iot_core("#", Qos::AtMostOnce)
        .await
        .unwrap_err();
    assert_eq!(denied.service_code(), Some("UnauthorizedError"));
    let denied = client
        .publish_to_topic("some/local/topic", PublishMessage::json(json!({})))
        .await
        .unwrap_err();
    assert_eq!(denied.service_code(), Some("UnauthorizedError"));
    client
        .publish_to_iot_core(
            &format!("$aws/things/{THING}/jobs/get"),
            Qos::AtLeastOnce,
            b"{}".to_vec(),
        )
        .await
        .expect("inside the policy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_policy_suffices_without_interpolation() {
    scenario(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_policy_suffices_with_interpolation() {
    scenario(true).await;
}
