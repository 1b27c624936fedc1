//! `ggjh-ops run` and `status` end to end: the emulator process with the real component
//! connected as core-1 (core-2 has no component: a device that never answers).

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_status_against_the_emulator_and_the_component() {
    let mut emulator = Emulator::start("core-1", &["core-2"], "wall").await;
    emulator.run_component("core-1");
    let control = emulator.control.clone();

    // The documented example: the component adds, the result comes back as statusDetails.
    let out = finish(
        ops(
            &control,
            &[
                "run",
                "--thing",
                "core-1",
                "--document",
                r#"{"operation":"add","a":15,"b":42}"#,
                "--timeout",
                "60",
                "--job-id",
                "add-1",
            ],
            &[],
        ),
        LIMIT,
    )
    .await;
    assert_eq!(
        (text(&out.stdout).as_str(), out.status.code()),
        ("{\"result\":\"57\"}\n", Some(0)),
        "stderr: {}",
        text(&out.stderr)
    );

    // A failing job: its statusDetails on stdout, its reason on stderr, exit status 1; the
    // global option also after the subcommand.
    let mut failing = ops_command(&[]);
    failing.args([
        "run",
        "--thing",
        "core-1",
        "--document",
        r#"{"operation":"fail","message":"disk full"}"#,
        "--job-id",
        "fail-1",
        "--endpoint-url",
        &control,
    ]);
    let out = finish(failing, LIMIT).await;
    let details: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        details["reason"],
        "disk full",
        "stdout: {}",
        text(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "ggjh-ops: job fail-1 on core-1 ended FAILED: disk full\n"
    );

    // status: the counts and the failed execution with its reason.
    let out = finish(ops(&control, &["status", "--job-id", "fail-1"], &[]), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "job fail-1: COMPLETED (SNAPSHOT)\nqueued 0, in progress 0, succeeded 0, failed 1, rejected 0, timed out 0, canceled 0, removed 0\nnot succeeded:\n  core-1 FAILED #1: disk full\n"
    );
    let out = finish(
        ops(&control, &["status", "--job-id", "add-1", "--json"], &[]),
        LIMIT,
    )
    .await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        (&report["counts"]["succeeded"], &report["failures"]),
        (&json!(1), &json!([])),
        "{report}"
    );

    // A thing that does not exist, and a job that does not: one line each, exit status 2.
    let out = finish(
        ops(
            &control,
            &["run", "--thing", "nobody", "--document", "{}"],
            &[],
        ),
        LIMIT,
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.starts_with("ggjh-ops: thing nobody does not exist (DescribeThing: ")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    let out = finish(ops(&control, &["status", "--job-id", "nope"], &[]), LIMIT).await;
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("ggjh-ops: job nope does not exist (DescribeJob: ")
            && stderr.lines().count() == 1,
        "{stderr}"
    );

    // A device that never takes the job: one line after the timeout, and the job is canceled.
    let out = finish(
        ops(
            &control,
            &[
                "run",
                "--thing",
                "core-2",
                "--document",
                r#"{"operation":"echo"}"#,
                "--job-id",
                "offline-1",
                "--timeout",
                "1",
            ],
            &[],
        ),
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "ggjh-ops: thing core-2 did not finish job offline-1 within 1 s (its execution is QUEUED: is the device online?); job offline-1 was canceled\n"
    );
    let out = finish(
        ops(
            &control,
            &["status", "--job-id", "offline-1", "--json"],
            &[],
        ),
        LIMIT,
    )
    .await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        (&report["status"], &report["counts"]["canceled"]),
        (&json!("CANCELED"), &json!(1)),
        "{report}"
    );
}

#[tokio::test]
async fn without_credentials_the_operator_is_told_what_to_set() {
    let mut command = ops("http://127.0.0.1:9", &["status", "--job-id", "j"], &[]);
    command
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let out = finish(command, LIMIT).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.starts_with(
            "ggjh-ops: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for http://127.0.0.1:9; the emulator does not check them, any values do ("
        ) && stderr.lines().count() == 1,
        "{stderr}"
    );
}
