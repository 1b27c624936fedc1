//! The job callback function of `recipe/cloud/job-callback.yaml`: its inline code, run by the
//! Python interpreter of `$GGJH_PYTHON` (a venv with boto3 and PyYAML, as `.ci/run` makes),
//! answers Step Functions for job execution events (`tests/peers/job_callback.py`): events of
//! the documented shape, and events the emulator published for jobs the component ran, picked
//! by the template's own rule SQL.

mod common;

use common::device::{component_command, start_component};
use common::*;
use greengrass_jobs_handler::emulator::cloud::jobs_service::NewJob;
use greengrass_jobs_handler::emulator::cloud::rules::Rule;
use greengrass_jobs_handler::emulator::Emulator;
use greengrass_jobs_handler::ipc::model::MqttMessage;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const THING: &str = "callback-core";

fn run_function_checks(events: Option<&Path>) {
    let python = std::env::var("GGJH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/job_callback.py");
    let mut command = Command::new(&python);
    command.arg(script);
    if let Some(path) = events {
        command.env("GGJH_JOB_EVENTS", path);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "job_callback.py failed (needs boto3 and PyYAML: run `bash .ci/run` or set GGJH_PYTHON)\n{stderr}"
    );
    assert!(stderr.contains("Ran 5 tests"), "{stderr}");
}

#[test]
fn the_callback_function_answers_documented_events() {
    run_function_checks(None);
}

/// The rule's SQL from the template, with the default job id prefix.
fn template_sql() -> String {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("recipe/cloud/job-callback.yaml"),
    )
    .expect("read the template");
    let line = template
        .lines()
        .find_map(|l| l.trim().strip_prefix("Sql: !Sub "))
        .expect("the rule's Sql line");
    line.trim_matches('"')
        .replace("${JobIdPrefix}", "callback-")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_function_answers_the_emulators_events_of_jobs_the_component_ran() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipc.socket");
    let emulator = Arc::new(Emulator::with_thing(THING, true));
    emulator
        .nucleus()
        .register(COMPONENT, TOKEN, json!({"jitterMaxMs": 0}));
    let _server = emulator.serve_ipc(&socket).unwrap();
    let world = emulator.world();
    world
        .jobs_control(|jobs, now| {
            jobs.update_event_configurations(&[("JOB_EXECUTION".to_owned(), true)], now)
                .map(|()| Vec::new())
        })
        .unwrap();
    let rule = Rule::parse("callback", &template_sql(), "callback/events", 0).unwrap();
    world.with(|w| w.put_rule(rule));
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let _tap = world.tap().subscribe(
        "callback/events",
        0,
        false,
        Box::new(move |_topic, m: &MqttMessage| {
            if let Ok(event) = serde_json::from_slice(m.payload()) {
                sink.lock().unwrap().push(event);
            }
            true
        }),
    );
    let _handler = start_component(&emulator, component_command(&socket, dir.path(), THING)).await;
    for (job_id, document) in [
        (
            "other-1",
            json!({"operation": "echo", "taskToken": "not-ours"}),
        ),
        (
            "callback-add-1",
            json!({"operation": "add", "a": 15, "b": 42, "taskToken": "tok-add"}),
        ),
        (
            "callback-fail-1",
            json!({"operation": "fail", "message": "disk full", "taskToken": "tok-fail"}),
        ),
    ] {
        world
            .create_job(NewJob {
                job_id: job_id.to_owned(),
                targets: vec![THING.to_owned()],
                document,
                ..NewJob::default()
            })
            .unwrap();
    }
    let finished = |job: &str| {
        world.with_jobs(|j| {
            j.execution(job, THING, None)
                .is_some_and(|e| e.status.is_terminal())
        })
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        while !(finished("other-1") && finished("callback-add-1") && finished("callback-fail-1")) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the component finished the three jobs");
    let events = seen.lock().unwrap().clone();
    let by_job: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["jobId"].as_str().unwrap_or_default(),
                e["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        by_job,
        [
            ("callback-add-1", "SUCCEEDED"),
            ("callback-fail-1", "FAILED")
        ],
        "the rule passes the callback jobs' terminal events only: {events:?}"
    );
    assert_eq!(events[0]["statusDetails"]["result"], "57", "{events:?}");
    assert_eq!(events[0]["eventType"], "JOB_EXECUTION");
    let path = dir.path().join("events.jsonl");
    let lines: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(&path, lines).unwrap();
    run_function_checks(Some(&path));
}
