//! `ggjh-ops rollout` end to end against the emulator: a 1,000-thing fleet with a 100-thing
//! exclude list at maximumPerMinute 100 on the manual clock, the targets' shadows stamped;
//! resuming; a differing job; a
//! watched rollout to real components that succeeds, and one whose abort criteria fire.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

async fn executed_things(iot: &aws_sdk_iot::Client, job_id: &str) -> Vec<String> {
    let mut pages = iot
        .list_job_executions_for_job()
        .job_id(job_id)
        .max_results(250)
        .into_paginator()
        .items()
        .send();
    let mut things = Vec::new();
    while let Some(summary) = pages.next().await {
        let summary = summary.expect("ListJobExecutionsForJob");
        let arn = summary.thing_arn().unwrap_or_default();
        things.push(
            arn.rsplit_once(":thing/")
                .map_or(arn, |(_, n)| n)
                .to_owned(),
        );
    }
    things
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_things_minus_a_hundred_at_a_hundred_a_minute() {
    let emulator = Emulator::start("core-1", &[], "manual").await;
    let iot = emulator.iot().await;
    let names: Vec<String> = (0..1000).map(|i| format!("dev-{i:04}")).collect();
    for name in &names {
        iot.create_thing()
            .thing_name(name)
            .attribute_payload(
                aws_sdk_iot::types::AttributePayload::builder()
                    .attributes("fleet", "blue")
                    .build(),
            )
            .send()
            .await
            .expect("CreateThing");
    }
    let excluded: BTreeSet<String> = names[..100].iter().cloned().collect();
    let csv = emulator.dir.path().join("exclude.csv");
    let mut listing = String::from("thingName\n");
    for name in &excluded {
        listing.push_str(name);
        listing.push('\n');
    }
    std::fs::write(&csv, listing).expect("write exclude list");
    let document = emulator.dir.path().join("doc.json");
    std::fs::write(&document, r#"{"operation":"echo","build":"42"}"#).expect("write document");
    let (csv, document) = (csv.display().to_string(), document.display().to_string());
    let rollout = |rate: &'static str| {
        ops(
            &emulator.control,
            &[
                "rollout",
                "--job-id",
                "fleet-1",
                "--query",
                "attributes.fleet:blue",
                "--exclude",
                &csv,
                "--max-per-minute",
                rate,
                "--document",
                &document,
                "--registry-rate",
                "500",
                "--no-wait",
            ],
            &[],
        )
    };
    let out = finish(rollout("100"), LIMIT).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("exclude group fleet-1-exclude: 100 added, 0 already in"),
        "{stderr}"
    );
    assert!(stderr.contains("job fleet-1: created"), "{stderr}");
    assert!(
        stderr.contains("shadows: 900 stamped with shadow.reported.ggjhRollout:fleet-1"),
        "{stderr}"
    );
    let data = emulator.data().await;
    let reported =
        |shadow: aws_sdk_iotdataplane::operation::get_thing_shadow::GetThingShadowOutput| {
            let bytes = shadow.payload.expect("a shadow document").into_inner();
            let doc: serde_json::Value = serde_json::from_slice(&bytes).expect("shadow JSON");
            doc["state"]["reported"]["ggjhRollout"].clone()
        };
    let target = data.get_thing_shadow().thing_name("dev-0500").send().await;
    assert_eq!(reported(target.expect("a target's shadow")), "fleet-1");
    // An excluded thing's shadow is left alone: it has none.
    let excluded_shadow = data.get_thing_shadow().thing_name("dev-0050").send().await;
    assert!(
        excluded_shadow
            .as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{excluded_shadow:?}"
    );

    let mut reached_at = None;
    for minute in 1..=12_u64 {
        emulator.advance(60).await;
        let n = executed_things(&iot, "fleet-1").await.len() as u64;
        assert!(n <= 100 * (minute + 1), "minute {minute}: {n} executions");
        assert!(
            n <= 900,
            "minute {minute}: {n} executions, beyond the 900 targets"
        );
        if n == 900 && reached_at.is_none() {
            reached_at = Some(minute);
        }
    }
    let reached_at = reached_at.expect("the 900 targets reached");
    assert!(
        (8..=10).contains(&reached_at),
        "900 reached at minute {reached_at}"
    );
    let things: BTreeSet<String> = executed_things(&iot, "fleet-1").await.into_iter().collect();
    assert_eq!(things.len(), 900);
    assert!(
        things.is_disjoint(&excluded),
        "an excluded thing got the job"
    );

    // The same command again resumes: everything is found in place.
    let out = finish(rollout("100"), LIMIT).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("0 added, 100 already in"), "{stderr}");
    assert!(
        stderr.contains("target group fleet-1-targets: reused"),
        "{stderr}"
    );
    assert!(stderr.contains("job fleet-1: reused"), "{stderr}");
    assert!(stderr.contains("shadows: 0 stamped"), "{stderr}");
    // A differing job under the same id is refused.
    let out = finish(rollout("200"), LIMIT).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).lines().last(),
        Some("ggjh-ops: job fleet-1 already exists with a different jobExecutionsRolloutConfig; choose another --job-id, or delete the job first")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_rollout_to_components_finishes_and_one_that_fails_is_aborted() {
    let mut emulator = Emulator::start("core-1", &["core-2", "core-3"], "wall").await;
    for core in ["core-1", "core-2", "core-3"] {
        emulator.run_component(core);
    }
    let dir = emulator.dir.path().to_owned();
    let rollout = |job: &str, document: &str, extra: &[&str]| {
        let path = dir.join(format!("{job}.json"));
        std::fs::write(&path, document).expect("write document");
        let path = path.display().to_string();
        let mut args = vec![
            "rollout",
            "--job-id",
            job,
            "--query",
            "thingName:core-*",
            "--max-per-minute",
            "1000",
            "--poll-seconds",
            "0.2",
            "--document",
        ];
        args.push(&path);
        args.extend_from_slice(extra);
        let command = ops(&emulator.control, &args, &[]);
        drop(args);
        command
    };
    let out = finish(
        rollout("echo-all", r#"{"operation":"echo","v":"1"}"#, &[]),
        LIMIT,
    )
    .await;
    assert_eq!(
        (text(&out.stdout).as_str(), out.status.code()),
        (
            "job echo-all: every target finished; queued 0, in progress 0, succeeded 3, failed 0, rejected 0, timed out 0, canceled 0, removed 0\n",
            Some(0)
        ),
        "{}",
        text(&out.stderr)
    );

    let abort = ["--abort-failed-percent", "50", "--abort-min-executed", "1"];
    let out = finish(
        rollout(
            "fail-all",
            r#"{"operation":"fail","message":"bad build"}"#,
            &abort,
        ),
        LIMIT,
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        text(&out.stdout).starts_with("job fail-all: canceled; "),
        "{}",
        text(&out.stdout)
    );
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("ggjh-ops: job fail-all was canceled: ")),
        "{stderr}"
    );
    // status names the failures and their reason.
    let out = finish(
        ops(&emulator.control, &["status", "--job-id", "fail-all"], &[]),
        LIMIT,
    )
    .await;
    let report = text(&out.stdout);
    assert!(
        report.starts_with("job fail-all: CANCELED (CONTINUOUS)\n"),
        "{report}"
    );
    assert!(report.contains(" FAILED #1: bad build\n"), "{report}");
}
