//! The Jobs service against the checklist of the device-side API, with virtual time.

use super::*;
use crate::jobs::messages::{ErrorCode, JobStatus, Notify};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const T: &str = "dev-1";
const P: &str = "$aws/things/dev-1/jobs/";
const MIN: u64 = 60_000;

fn service() -> JobsService {
    let mut s = JobsService::default();
    s.create_thing(T).unwrap();
    s
}

fn job(s: &mut JobsService, id: &str, now: u64) -> Vec<Output> {
    s.create_job(
        NewJob {
            job_id: id.into(),
            targets: vec![T.into()],
            document: json!({"operation": "echo", "id": id}),
            ..NewJob::default()
        },
        now,
    )
    .unwrap()
}

fn request(s: &mut JobsService, rest: &str, body: Value, now: u64) -> (String, Value, Vec<Output>) {
    let out = s.handle_device_request(T, rest, body.to_string().as_bytes(), now);
    let (topic, payload) = out
        .iter()
        .find_map(|o| match o {
            Output::Reply { topic, payload } => {
                Some((topic.clone(), serde_json::from_slice(payload).unwrap()))
            }
            _ => None,
        })
        .expect("a reply");
    let notes = out
        .into_iter()
        .filter(|o| matches!(o, Output::Publish(_)))
        .collect();
    (topic, payload, notes)
}

fn topics(notes: &[Output]) -> Vec<String> {
    notes
        .iter()
        .map(|o| match o {
            Output::Publish(p) => p.topic.trim_start_matches(P).to_owned(),
            Output::Reply { topic, .. } => topic.clone(),
        })
        .collect()
}

fn payload(notes: &[Output], suffix: &str) -> Value {
    notes
        .iter()
        .find_map(|o| match o {
            Output::Publish(p) if p.topic.ends_with(suffix) => {
                Some(serde_json::from_slice(&p.payload).unwrap())
            }
            _ => None,
        })
        .unwrap()
}

#[test]
fn get_lists_summaries_without_status_in_order() {
    let mut s = service();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        job(&mut s, id, 1000 * i as u64);
    }
    request(&mut s, "b/update", json!({"status": "IN_PROGRESS"}), 5000);
    let (topic, r, _) = request(&mut s, "get", json!({"clientToken": "t1"}), 6000);
    assert_eq!(topic, format!("{P}get/accepted"));
    assert_eq!(r["clientToken"], "t1");
    assert_eq!(r["timestamp"], 6);
    assert_eq!(r["inProgressJobs"][0]["jobId"], "b");
    assert_eq!(
        r["queuedJobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["jobId"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert!(r["queuedJobs"][0].get("status").is_none());
    for i in 0..12 {
        job(&mut s, &format!("m{i}"), 7000);
    }
    let (_, r, _) = request(&mut s, "get", json!({}), 8000);
    assert_eq!(r["queuedJobs"].as_array().unwrap().len(), MAX_LISTED);
}

#[test]
fn start_next_empty_queued_and_in_progress_head() {
    let mut s = service();
    let (topic, r, _) = request(&mut s, "start-next", json!({"clientToken": "x"}), 0);
    assert_eq!(topic, format!("{P}start-next/accepted"));
    assert!(r.get("execution").is_none());
    job(&mut s, "a", 0);
    let (_, r, notes) = request(
        &mut s,
        "start-next",
        json!({"statusDetails": {"k": "v"}}),
        2000,
    );
    let e = &r["execution"];
    assert_eq!(
        (
            e["status"].as_str(),
            e["versionNumber"].as_i64(),
            e["startedAt"].as_i64()
        ),
        (Some("IN_PROGRESS"), Some(2), Some(2))
    );
    assert_eq!(e["statusDetails"], json!({"k": "v"}));
    assert_eq!(e["jobDocument"]["operation"], "echo");
    assert!(
        notes.is_empty(),
        "the head going IN_PROGRESS publishes nothing"
    );
    let (_, r, _) = request(
        &mut s,
        "start-next",
        json!({"statusDetails": {"k": "other"}}),
        3000,
    );
    assert_eq!(
        r["execution"]["versionNumber"], 2,
        "an IN_PROGRESS head is unchanged"
    );
    assert_eq!(r["execution"]["statusDetails"], json!({"k": "v"}));
}

#[test]
fn describe_next_and_job_document_defaults() {
    let mut s = service();
    let (topic, r, _) = request(&mut s, "$next/get", json!({}), 0);
    assert_eq!(topic, format!("{P}$next/get/accepted"));
    assert!(r.get("execution").is_none());
    job(&mut s, "a", 0);
    let (_, r, _) = request(&mut s, "$next/get", json!({}), 0);
    assert!(r["execution"]["jobDocument"].is_object());
    let (_, r, _) = request(&mut s, "a/get", json!({"includeJobDocument": false}), 0);
    assert!(r["execution"].get("jobDocument").is_none());
    let (topic, r, _) = request(&mut s, "zzz/get", json!({"clientToken": "c"}), 0);
    assert_eq!(topic, format!("{P}zzz/get/rejected"));
    assert_eq!(
        (r["code"].as_str(), r["clientToken"].as_str()),
        (Some("ResourceNotFound"), Some("c"))
    );
}

#[test]
fn update_errors_follow_the_api() {
    let mut s = service();
    job(&mut s, "a", 0);
    let (_, r, _) = request(
        &mut s,
        "a/update",
        json!({"status": "IN_PROGRESS", "expectedVersion": 7}),
        0,
    );
    assert_eq!(r["code"], "VersionMismatch");
    assert_eq!(
        r["executionState"],
        json!({"status": "QUEUED", "versionNumber": 1})
    );
    let (_, r, _) = request(
        &mut s,
        "a/update",
        json!({"status": "IN_PROGRESS", "expectedVersion": 1, "includeJobExecutionState": true}),
        0,
    );
    assert_eq!(r["executionState"]["versionNumber"], 2);
    assert!(r.get("jobDocument").is_none());
    let (_, r, _) = request(
        &mut s,
        "a/update",
        json!({"status": "SUCCEEDED", "includeJobDocument": true}),
        0,
    );
    assert!(r.get("executionState").is_none());
    assert_eq!(r["jobDocument"]["operation"], "echo");
    let (_, r, _) = request(&mut s, "a/update", json!({"status": "IN_PROGRESS"}), 0);
    assert_eq!(r["code"], "InvalidStateTransition");
    assert_eq!(r["executionState"]["status"], "SUCCEEDED");
    let (_, r, _) = request(&mut s, "a/get", json!({}), 0);
    assert_eq!(r["code"], "TerminalStateReached");
    for (body, why) in [
        (json!({}), "missing status"),
        (
            json!({"status": "TIMED_OUT"}),
            "device may not set TIMED_OUT",
        ),
        (
            json!({"status": "IN_PROGRESS", "statusDetails": {"bad key!": "v"}}),
            "key pattern",
        ),
        (
            json!({"status": "IN_PROGRESS", "statusDetails": {"k": ""}}),
            "empty value",
        ),
        (
            json!({"status": "IN_PROGRESS", "statusDetails": {"k": "a\u{7}b"}}),
            "control character",
        ),
        (
            json!({"status": "IN_PROGRESS", "statusDetails": {"k": 5}}),
            "non-string value",
        ),
        (
            json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 0}),
            "step timeout range",
        ),
        (
            json!({"status": "IN_PROGRESS", "clientToken": "x".repeat(65)}),
            "long client token",
        ),
    ] {
        job(&mut s, "b", 0);
        let (_, r, _) = request(&mut s, "b/update", body, 0);
        assert_eq!(r["code"], "InvalidRequest", "{why}");
        s.delete_job("b", true, 0).unwrap();
    }
    let out = s.handle_device_request(T, "a/update", b"{not json", 0);
    assert!(
        matches!(&out[0], Output::Reply { payload, .. } if String::from_utf8_lossy(payload).contains("InvalidJson"))
    );
    let out = s.handle_device_request(T, "a/frobnicate", b"{}", 0);
    assert!(
        matches!(&out[0], Output::Reply { topic, payload } if topic.ends_with("a/frobnicate/rejected") && String::from_utf8_lossy(payload).contains("InvalidTopic"))
    );
}

#[test]
fn notifications_follow_the_walkthrough() {
    let mut s = service();
    // 1. queued → notify, and notify-next because it is the new head.
    let notes = job(&mut s, "job1", 1000);
    assert_eq!(topics(&notes), ["notify", "notify-next"]);
    assert_eq!(
        payload(&notes, "notify")["jobs"]["QUEUED"][0]["jobId"],
        "job1"
    );
    // A second job is not the head: notify only.
    let notes = job(&mut s, "job2", 2000);
    assert_eq!(topics(&notes), ["notify"]);
    // 2. head QUEUED → IN_PROGRESS: nothing.
    let (_, _, notes) = request(
        &mut s,
        "job1/update",
        json!({"status": "IN_PROGRESS"}),
        3000,
    );
    assert!(notes.is_empty());
    // 5. head details change: nothing.
    let (_, _, notes) = request(
        &mut s,
        "job1/update",
        json!({"status": "IN_PROGRESS", "statusDetails": {"p": "50"}}),
        3500,
    );
    assert!(notes.is_empty());
    // 4. head terminal → notify and notify-next with the next one.
    let (_, _, notes) = request(&mut s, "job1/update", json!({"status": "SUCCEEDED"}), 4000);
    assert_eq!(topics(&notes), ["notify", "notify-next"]);
    assert_eq!(payload(&notes, "notify-next")["execution"]["jobId"], "job2");
    // Last one done: notify with "jobs": {} and a bare notify-next.
    let (_, _, notes) = request(&mut s, "job2/update", json!({"status": "FAILED"}), 5000);
    assert_eq!(payload(&notes, "notify")["jobs"], json!({}));
    assert_eq!(payload(&notes, "notify-next"), json!({"timestamp": 5}));
}

#[test]
fn non_head_going_in_progress_only_moves_notify_next() {
    let mut s = service();
    job(&mut s, "a", 0);
    job(&mut s, "b", 1000);
    let (_, _, notes) = request(&mut s, "b/update", json!({"status": "IN_PROGRESS"}), 2000);
    assert_eq!(topics(&notes), ["notify-next"]);
    assert_eq!(payload(&notes, "notify-next")["execution"]["jobId"], "b");
}

#[test]
fn step_timer_times_out_rearms_and_clears() {
    let mut s = service();
    job(&mut s, "a", 0);
    request(
        &mut s,
        "a/update",
        json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 5}),
        0,
    );
    assert_eq!(s.next_deadline(), Some(5 * MIN));
    let (_, r, _) = request(&mut s, "a/get", json!({}), 2 * MIN);
    assert_eq!(r["execution"]["approximateSecondsBeforeTimedOut"], 180);
    request(
        &mut s,
        "a/update",
        json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 10}),
        3 * MIN,
    );
    assert_eq!(
        s.next_deadline(),
        Some(13 * MIN),
        "re-arming replaces the timer"
    );
    request(
        &mut s,
        "a/update",
        json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": -1}),
        4 * MIN,
    );
    assert_eq!(s.next_deadline(), None, "-1 clears it");
    request(
        &mut s,
        "a/update",
        json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 1}),
        5 * MIN,
    );
    assert!(s.tick(6 * MIN - 1).is_empty());
    let notes = s.tick(6 * MIN);
    assert_eq!(topics(&notes), ["notify", "notify-next"]);
    assert_eq!(
        s.execution("a", T, None).unwrap().status,
        JobStatus::TimedOut
    );
    let (_, r, _) = request(&mut s, "a/update", json!({"status": "SUCCEEDED"}), 7 * MIN);
    assert_eq!(r["code"], "InvalidStateTransition");
}

#[test]
fn step_timer_is_capped_by_the_in_progress_timeout() {
    let mut s = service();
    s.create_job(
        NewJob {
            job_id: "a".into(),
            targets: vec![T.into()],
            document: json!({}),
            in_progress_timeout_minutes: Some(20),
            ..NewJob::default()
        },
        0,
    )
    .unwrap();
    request(&mut s, "a/update", json!({"status": "IN_PROGRESS"}), 0);
    request(
        &mut s,
        "a/update",
        json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 9}),
        13 * MIN,
    );
    assert_eq!(s.next_deadline(), Some(20 * MIN));
}

#[test]
fn cancellation_and_deletion() {
    let mut s = service();
    job(&mut s, "q", 0);
    job(&mut s, "p", 0);
    request(&mut s, "p/update", json!({"status": "IN_PROGRESS"}), 0);
    let notes = s.cancel_job("p", false, None, 1000).unwrap();
    assert!(
        notes.is_empty(),
        "IN_PROGRESS survives a cancel without force"
    );
    assert_eq!(
        s.execution("p", T, None).unwrap().status,
        JobStatus::InProgress
    );
    assert_eq!(
        s.cancel_job_execution("p", T, false, 1000)
            .unwrap_err()
            .code,
        "InvalidStateTransitionException"
    );
    let notes = s.cancel_job("p", true, None, 2000).unwrap();
    assert_eq!(topics(&notes), ["notify", "notify-next"]);
    let (_, r, _) = request(&mut s, "p/update", json!({"status": "SUCCEEDED"}), 3000);
    assert_eq!(
        (r["code"].as_str(), r["executionState"]["status"].as_str()),
        (Some("InvalidStateTransition"), Some("CANCELED"))
    );
    s.cancel_job("q", false, None, 4000).unwrap();
    assert_eq!(
        s.execution("q", T, None).unwrap().status,
        JobStatus::Canceled
    );
    job(&mut s, "d", 5000);
    s.delete_job_execution("d", T, 1, false, 6000).unwrap();
    let (_, r, _) = request(&mut s, "d/get", json!({}), 7000);
    assert_eq!(r["code"], "ResourceNotFound");
}

#[test]
fn throttling_is_injectable() {
    let mut s = service();
    s.throttle(T, 2);
    for _ in 0..2 {
        let (_, r, _) = request(&mut s, "get", json!({"clientToken": "t"}), 0);
        assert_eq!(r["code"], "RequestThrottled");
        assert_eq!(r["clientToken"], "t");
    }
    let (topic, _, _) = request(&mut s, "get", json!({}), 0);
    assert!(topic.ends_with("get/accepted"));
}

#[test]
fn control_plane_validation() {
    let mut s = service();
    let new = |id: &str, targets: Vec<String>, doc: Value| NewJob {
        job_id: id.into(),
        targets,
        document: doc,
        ..NewJob::default()
    };
    assert_eq!(
        s.create_job(new("bad id!", vec![T.into()], json!({})), 0)
            .unwrap_err()
            .code,
        "InvalidRequestException"
    );
    assert_eq!(
        s.create_job(new("a", vec!["ghost".into()], json!({})), 0)
            .unwrap_err()
            .code,
        "ResourceNotFoundException"
    );
    assert_eq!(
        s.create_job(new("a", vec![T.into()], json!("text")), 0)
            .unwrap_err()
            .code,
        "InvalidRequestException"
    );
    let huge = json!({"x": "y".repeat(MAX_DOCUMENT_CHARS)});
    assert_eq!(
        s.create_job(new("a", vec![T.into()], huge), 0)
            .unwrap_err()
            .code,
        "InvalidRequestException"
    );
    s.create_job(new("a", vec![T.into()], json!({})), 0)
        .unwrap();
    assert_eq!(
        s.create_job(new("a", vec![T.into()], json!({})), 0)
            .unwrap_err()
            .code,
        "ResourceAlreadyExistsException"
    );
    assert!(s.create_thing("bad thing").is_err());
}

#[test]
fn failed_and_timed_out_executions_are_retried_as_configured() {
    let mut s = service();
    let retry = RetryConfig {
        failed: 1,
        timed_out: 1,
    };
    s.create_job(
        NewJob {
            job_id: "r".into(),
            targets: vec![T.into()],
            document: json!({}),
            in_progress_timeout_minutes: Some(1),
            retry,
            ..NewJob::default()
        },
        0,
    )
    .unwrap();
    request(&mut s, "r/update", json!({"status": "IN_PROGRESS"}), 0);
    let (_, _, notes) = request(&mut s, "r/update", json!({"status": "FAILED"}), 1000);
    let e = s.execution("r", T, None).unwrap();
    assert_eq!(
        (e.execution_number, e.status, e.retry_attempt),
        (2, JobStatus::Queued, 1)
    );
    assert_eq!(
        payload(&notes, "notify")["jobs"]["QUEUED"][0]["executionNumber"],
        2
    );
    // The retry times out: one TIMED_OUT retry is allowed.
    request(&mut s, "r/update", json!({"status": "IN_PROGRESS"}), 2000);
    s.tick(2000 + MIN);
    assert_eq!(s.execution("r", T, None).unwrap().execution_number, 3);
    // A second failure exceeds the FAILED budget: no more executions.
    request(
        &mut s,
        "r/update",
        json!({"status": "IN_PROGRESS"}),
        3 * MIN,
    );
    request(&mut s, "r/update", json!({"status": "FAILED"}), 3 * MIN + 1);
    let e = s.execution("r", T, None).unwrap();
    assert_eq!((e.execution_number, e.status), (3, JobStatus::Failed));
    // REJECTED is never retried.
    s.create_job(
        NewJob {
            job_id: "n".into(),
            targets: vec![T.into()],
            document: json!({}),
            retry,
            ..NewJob::default()
        },
        0,
    )
    .unwrap();
    request(&mut s, "n/update", json!({"status": "REJECTED"}), 10);
    assert_eq!(s.execution("n", T, None).unwrap().execution_number, 1);
}

#[test]
fn continuous_jobs_follow_group_membership() {
    let mut s = service();
    s.create_thing("other").unwrap();
    s.create_thing_group("fleet").unwrap();
    s.add_thing_to_thing_group("fleet", "other", 0).unwrap();
    let new = NewJob {
        job_id: "c".into(),
        target_groups: vec!["fleet".into()],
        continuous: true,
        document: json!({}),
        ..NewJob::default()
    };
    s.create_job(new, 0).unwrap();
    assert!(
        s.execution("c", "other", None).is_some(),
        "members at creation get an execution"
    );
    assert!(s.execution("c", T, None).is_none());
    // Joining: an execution, with notify and notify-next.
    let notes = s.add_thing_to_thing_group("fleet", T, 1000).unwrap();
    assert_eq!(topics(&notes), ["notify", "notify-next"]);
    assert_eq!(s.execution("c", T, None).unwrap().status, JobStatus::Queued);
    // Leaving: the pending execution is REMOVED.
    s.remove_thing_from_thing_group("fleet", T, 2000).unwrap();
    assert_eq!(
        s.execution("c", T, None).unwrap().status,
        JobStatus::Removed
    );
    // Rejoining: a new execution number.
    s.add_thing_to_thing_group("fleet", T, 3000).unwrap();
    let e = s.execution("c", T, None).unwrap();
    assert_eq!((e.execution_number, e.status), (2, JobStatus::Queued));
    // A snapshot job does not follow membership.
    s.create_thing("late").unwrap();
    let snap = NewJob {
        job_id: "s".into(),
        target_groups: vec!["fleet".into()],
        document: json!({}),
        ..NewJob::default()
    };
    s.create_job(snap, 4000).unwrap();
    s.add_thing_to_thing_group("fleet", "late", 5000).unwrap();
    assert!(s.execution("s", "late", None).is_none());
    assert!(s.execution("c", "late", None).is_some());
    assert_eq!(
        s.create_job(
            NewJob {
                job_id: "x".into(),
                target_groups: vec!["nope".into()],
                document: json!({}),
                ..NewJob::default()
            },
            0
        )
        .unwrap_err()
        .code,
        "ResourceNotFoundException"
    );
}

// ---- one wire schema --------------------------------------------------------------------

/// The AWS field names each message may carry (device-side API reference).
fn allowed_fields(topic: &str) -> &'static [&'static str] {
    if topic.ends_with("/rejected") {
        &[
            "code",
            "message",
            "clientToken",
            "timestamp",
            "executionState",
        ]
    } else if topic.ends_with("jobs/get/accepted") {
        &["inProgressJobs", "queuedJobs", "timestamp", "clientToken"]
    } else if topic.ends_with("/update/accepted") {
        &["executionState", "jobDocument", "timestamp", "clientToken"]
    } else if topic.ends_with("/notify") {
        &["timestamp", "jobs"]
    } else if topic.ends_with("/notify-next") {
        &["timestamp", "execution"]
    } else {
        &["execution", "timestamp", "clientToken"]
    }
}

const EXECUTION_FIELDS: &[&str] = &[
    "jobId",
    "thingName",
    "jobDocument",
    "status",
    "statusDetails",
    "queuedAt",
    "startedAt",
    "lastUpdatedAt",
    "approximateSecondsBeforeTimedOut",
    "versionNumber",
    "executionNumber",
];
const SUMMARY_FIELDS: &[&str] = &[
    "jobId",
    "queuedAt",
    "startedAt",
    "lastUpdatedAt",
    "versionNumber",
    "executionNumber",
];
const STATE_FIELDS: &[&str] = &["status", "statusDetails", "versionNumber"];

fn assert_fields(what: &str, v: &Value, allowed: &[&str]) {
    for key in v.as_object().expect("an object").keys() {
        assert!(
            allowed.contains(&key.as_str()),
            "{what}: unexpected field {key:?}"
        );
    }
}

/// Parses a payload with the type the engine parses it with, writes it again, and checks that
/// nothing was lost or renamed, and that every field is one AWS documents.
fn round_trip(topic: &str, payload: &[u8]) {
    use crate::jobs::messages::{ExecutionResponse, GetPendingAccepted, Rejected, UpdateAccepted};
    let raw: Value = serde_json::from_slice(payload).unwrap();
    let again = if topic.ends_with("/rejected") {
        serde_json::to_value(serde_json::from_slice::<Rejected>(payload).unwrap())
    } else if topic.ends_with("jobs/get/accepted") {
        serde_json::to_value(serde_json::from_slice::<GetPendingAccepted>(payload).unwrap())
    } else if topic.ends_with("/update/accepted") {
        serde_json::to_value(serde_json::from_slice::<UpdateAccepted>(payload).unwrap())
    } else if topic.ends_with("/notify") {
        serde_json::to_value(serde_json::from_slice::<Notify>(payload).unwrap())
    } else {
        serde_json::to_value(serde_json::from_slice::<ExecutionResponse>(payload).unwrap())
    }
    .unwrap();
    assert_eq!(raw, again, "{topic}: the engine's type keeps every field");
    assert_fields(topic, &raw, allowed_fields(topic));
    if let Some(e) = raw.get("execution") {
        assert_fields(topic, e, EXECUTION_FIELDS);
    }
    if let Some(s) = raw.get("executionState") {
        assert_fields(topic, s, STATE_FIELDS);
    }
    let lists = ["inProgressJobs", "queuedJobs"]
        .iter()
        .filter_map(|k| raw.get(*k))
        .chain(
            raw.get("jobs")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|m| m.values()),
        );
    for list in lists {
        for s in list.as_array().expect("a list") {
            assert_fields(topic, s, SUMMARY_FIELDS);
        }
    }
}

#[test]
fn every_response_and_notification_round_trips_through_the_engine_types() {
    let mut s = service();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut check = |out: Vec<Output>| {
        for o in out {
            let (topic, payload) = match o {
                Output::Reply { topic, payload } => (topic, payload),
                Output::Publish(p) => (p.topic, p.payload),
            };
            round_trip(&topic, &payload);
            seen.insert(topic.trim_start_matches(P).to_owned());
        }
    };
    check(job(&mut s, "a", 1000));
    check(job(&mut s, "b", 1000));
    let requests: &[(&str, Value)] = &[
        ("get", json!({"clientToken": "t"})),
        ("$next/get", json!({})),
        (
            "start-next",
            json!({"statusDetails": {"k": "v"}, "stepTimeoutInMinutes": 5}),
        ),
        ("a/get", json!({"executionNumber": 1})),
        (
            "a/update",
            json!({"status": "IN_PROGRESS", "expectedVersion": 9, "clientToken": "t"}),
        ),
        (
            "a/update",
            json!({"status": "SUCCEEDED", "includeJobExecutionState": true, "includeJobDocument": true}),
        ),
        ("a/update", json!({"status": "FAILED"})),
        ("zzz/get", json!({})),
        ("a/frobnicate", json!({})),
    ];
    for (rest, body) in requests {
        check(s.handle_device_request(T, rest, body.to_string().as_bytes(), 2000));
    }
    check(s.handle_device_request(T, "get", b"not json", 2000));
    check(s.handle_device_request(T, "b/update", br#"{"status": "REJECTED"}"#, 3000));
    for topic in [
        "get/accepted",
        "$next/get/accepted",
        "start-next/accepted",
        "a/get/accepted",
        "a/update/rejected",
        "a/update/accepted",
        "zzz/get/rejected",
        "a/frobnicate/rejected",
        "get/rejected",
        "notify",
        "notify-next",
    ] {
        assert!(seen.contains(topic), "{topic} was exercised: {seen:?}");
    }
}

#[test]
fn timestamps_are_integer_epoch_seconds() {
    let mut s = service();
    job(&mut s, "a", 1_700_000_000_123);
    let (_, r, _) = request(&mut s, "$next/get", json!({}), 1_700_000_001_999);
    assert!(r["timestamp"].is_u64(), "{r}");
    assert_eq!(r["timestamp"], 1_700_000_001u64);
    assert_eq!(r["execution"]["queuedAt"], 1_700_000_000u64);
}

// ---- typed data plane ---------------------------------------------------------------------

#[test]
fn typed_entry_points_answer_like_the_topics() {
    let mut s = service();
    job(&mut s, "a", 0);
    let (pending, notes) = s.get_pending_job_executions(T, 1000).unwrap();
    assert!(notes.is_empty());
    assert_eq!(pending.queued_jobs[0].job_id, "a");
    let (described, _) = s.describe_job_execution(T, "a", None, false, 1000).unwrap();
    let e = described.execution.unwrap();
    assert_eq!((e.status, e.job_document), (JobStatus::Queued, None));
    let (started, notes) = s
        .start_next_pending_job_execution(T, None, Some(3), 2000)
        .unwrap();
    assert_eq!(started.execution.unwrap().status, JobStatus::InProgress);
    assert!(notes.is_empty());
    let update = crate::jobs::messages::UpdateRequest {
        status: JobStatus::Succeeded,
        status_details: None,
        expected_version: Some(1),
        execution_number: None,
        include_job_execution_state: None,
        include_job_document: None,
        step_timeout_in_minutes: None,
        client_token: None,
    };
    let refused = s.update_job_execution(T, "a", &update, 3000).unwrap_err();
    assert_eq!(refused.code, ErrorCode::VersionMismatch);
    assert_eq!(refused.execution_state.unwrap().version_number, 2);
    let update = crate::jobs::messages::UpdateRequest {
        expected_version: Some(2),
        ..update
    };
    let (_, notes) = s.update_job_execution(T, "a", &update, 3000).unwrap();
    assert_eq!(topics(&notes), ["notify", "notify-next"]);
    assert_eq!(
        s.describe_job_execution("ghost", "a", None, true, 0)
            .unwrap_err()
            .code,
        ErrorCode::ResourceNotFound
    );
}

#[test]
fn a_malformed_field_is_an_invalid_request_with_the_token() {
    let mut s = service();
    job(&mut s, "a", 0);
    for (rest, body) in [
        (
            "a/update",
            json!({"status": "IN_PROGRESS", "expectedVersion": "1", "clientToken": "c"}),
        ),
        ("a/update", json!({"status": "DONE", "clientToken": "c"})),
        (
            "a/get",
            json!({"executionNumber": "one", "clientToken": "c"}),
        ),
        (
            "start-next",
            json!({"statusDetails": ["x"], "clientToken": "c"}),
        ),
    ] {
        let (topic, r, notes) = request(&mut s, rest, body, 0);
        assert!(topic.ends_with("/rejected"), "{rest}");
        assert_eq!(
            (r["code"].as_str(), r["clientToken"].as_str()),
            (Some("InvalidRequest"), Some("c"))
        );
        assert!(notes.is_empty());
    }
    assert_eq!(
        s.execution("a", T, None).unwrap().version_number,
        1,
        "nothing changed"
    );
}

// ---- cost independent of history, determinism --------------------------------------------

#[test]
fn pending_lists_ignore_a_long_terminal_history() {
    let mut s = service();
    for i in 0..300 {
        let id = format!("old-{i:03}");
        job(&mut s, &id, i);
        request(
            &mut s,
            &format!("{id}/update"),
            json!({"status": "SUCCEEDED"}),
            i,
        );
    }
    job(&mut s, "new", 1000);
    let (_, r, _) = request(&mut s, "get", json!({}), 2000);
    assert_eq!(r["queuedJobs"].as_array().unwrap().len(), 1);
    assert_eq!(r["queuedJobs"][0]["jobId"], "new");
    let (_, r, _) = request(&mut s, "$next/get", json!({}), 2000);
    assert_eq!(r["execution"]["jobId"], "new");
    assert_eq!(s.executions_for_thing(T).len(), 301);
}

#[test]
fn timers_fire_by_deadline_then_creation_order() {
    let mut s = JobsService::default();
    for t in ["t-b", "t-a", "t-c"] {
        s.create_thing(t).unwrap();
    }
    s.create_job(
        NewJob {
            job_id: "j".into(),
            targets: vec!["t-b".into(), "t-a".into(), "t-c".into()],
            document: json!({}),
            ..NewJob::default()
        },
        0,
    )
    .unwrap();
    // t-c gets the earliest deadline; t-b and t-a share one (t-a's execution was created
    // first: targets are queued in name order).
    for (thing, minutes) in [("t-b", 2), ("t-a", 2), ("t-c", 1)] {
        s.handle_device_request(
            thing,
            "j/update",
            json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": minutes})
                .to_string()
                .as_bytes(),
            0,
        );
    }
    assert_eq!(s.next_deadline(), Some(MIN));
    let order: Vec<String> = s
        .tick(10 * MIN)
        .iter()
        .filter_map(|o| match o {
            Output::Publish(p) if p.topic.ends_with("/notify") => Some(p.topic.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            "$aws/things/t-c/jobs/notify",
            "$aws/things/t-a/jobs/notify",
            "$aws/things/t-b/jobs/notify"
        ]
    );
    assert_eq!(s.next_deadline(), None);
}

/// Applies seeded random operations and checks every answer against a model computed from
/// the plain execution list, and that one seed gives one output log.
fn random_run(seed: u64) -> Vec<Output> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let things = ["d-0", "d-1", "d-2"];
    let mut s = JobsService::default();
    for t in things {
        s.create_thing(t).unwrap();
    }
    let mut log = Vec::new();
    let mut now = 0u64;
    for step in 0..600 {
        now += rng.u64(0..90_000);
        let thing = things[rng.usize(0..things.len())];
        let job_id = format!("j{}", rng.usize(0..8));
        let out = match rng.u8(0..10) {
            0 => s
                .create_job(
                    NewJob {
                        job_id: format!("j{step}"),
                        targets: things.iter().map(|t| t.to_string()).collect(),
                        document: json!({}),
                        in_progress_timeout_minutes: rng.bool().then_some(3),
                        retry: RetryConfig {
                            failed: rng.u32(0..2),
                            timed_out: rng.u32(0..2),
                        },
                        ..NewJob::default()
                    },
                    now,
                )
                .unwrap_or_default(),
            1 => s
                .cancel_job(&job_id, rng.bool(), None, now)
                .unwrap_or_default(),
            2 => s
                .delete_job_execution(&job_id, thing, rng.i64(1..3), rng.bool(), now)
                .unwrap_or_default(),
            3 => s.tick(now),
            4 => {
                s.handle_device_request(thing, "start-next", b"{\"stepTimeoutInMinutes\": 1}", now)
            }
            _ => {
                let status = ["IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED"][rng.usize(0..4)];
                let body = json!({"status": status, "stepTimeoutInMinutes": rng.i64(1..3)});
                s.handle_device_request(
                    thing,
                    &format!("{job_id}/update"),
                    body.to_string().as_bytes(),
                    now,
                )
            }
        };
        log.extend(out);
        for t in things {
            check_against_model(&mut s, t, now);
        }
        let model_deadline = things
            .iter()
            .flat_map(|t| s.executions_for_thing(t))
            .filter_map(|e| e.deadline())
            .min();
        assert_eq!(s.next_deadline(), model_deadline);
    }
    log
}

fn check_against_model(s: &mut JobsService, thing: &str, now: u64) {
    let all: Vec<Execution> = s.executions_for_thing(thing).into_iter().cloned().collect();
    let mut in_progress: Vec<&Execution> = all
        .iter()
        .filter(|e| e.status == JobStatus::InProgress)
        .collect();
    in_progress.sort_by_key(|e| e.queued_at_ms);
    let queued: Vec<&Execution> = all
        .iter()
        .filter(|e| e.status == JobStatus::Queued)
        .collect();
    let (pending, _) = s.get_pending_job_executions(thing, now).unwrap();
    let ids = |v: &[&Execution]| -> Vec<(String, i64)> {
        v.iter()
            .take(MAX_LISTED)
            .map(|e| (e.job_id.clone(), e.execution_number))
            .collect()
    };
    let got = |v: &[crate::jobs::messages::JobExecutionSummary]| -> Vec<(String, i64)> {
        v.iter()
            .map(|e| (e.job_id.clone(), e.execution_number))
            .collect()
    };
    assert_eq!(got(&pending.in_progress_jobs), ids(&in_progress));
    assert_eq!(got(&pending.queued_jobs), ids(&queued));
    let head = in_progress.iter().chain(queued.iter()).next();
    let (next, _) = s
        .describe_job_execution(thing, "$next", None, false, now)
        .unwrap();
    assert_eq!(
        next.execution.map(|e| (e.job_id, e.execution_number)),
        head.map(|e| (e.job_id.clone(), e.execution_number))
    );
}

#[test]
fn random_operations_match_the_model_and_repeat_exactly() {
    for seed in [1, 2, 3] {
        let first = random_run(seed);
        assert!(!first.is_empty());
        assert_eq!(first, random_run(seed), "seed {seed} gives one run");
    }
}

// ---- control plane ------------------------------------------------------------------------

#[test]
fn cancel_job_reaches_executions_of_group_members() {
    let mut s = service();
    s.create_thing_group("g").unwrap();
    s.add_thing_to_thing_group("g", T, 0).unwrap();
    s.create_job(
        NewJob {
            job_id: "g-job".into(),
            target_groups: vec!["g".into()],
            document: json!({}),
            ..NewJob::default()
        },
        0,
    )
    .unwrap();
    let notes = s.cancel_job("g-job", false, Some("stop"), 1000).unwrap();
    assert_eq!(topics(&notes), ["notify", "notify-next"]);
    let e = s.execution("g-job", T, None).unwrap();
    assert_eq!(e.status, JobStatus::Canceled);
    assert_eq!(
        e.status_details.get("reasonCode").map(String::as_str),
        Some("stop")
    );
}

#[test]
fn a_continuous_job_stays_open_for_later_members() {
    let mut s = service();
    s.create_thing("late").unwrap();
    s.create_thing_group("g").unwrap();
    s.add_thing_to_thing_group("g", T, 0).unwrap();
    s.create_job(
        NewJob {
            job_id: "c".into(),
            target_groups: vec!["g".into()],
            continuous: true,
            document: json!({}),
            ..NewJob::default()
        },
        0,
    )
    .unwrap();
    request(&mut s, "c/update", json!({"status": "SUCCEEDED"}), 1000);
    assert_eq!(s.job("c").unwrap().state, JobState::InProgress);
    s.add_thing_to_thing_group("g", "late", 2000).unwrap();
    assert_eq!(
        s.execution("c", "late", None).unwrap().status,
        JobStatus::Queued
    );
}

#[test]
fn delete_job_needs_force_while_in_progress_and_removes_executions() {
    let mut s = service();
    job(&mut s, "a", 0);
    job(&mut s, "b", 0);
    assert_eq!(
        s.delete_job("a", false, 1000).unwrap_err().code,
        "InvalidStateTransitionException"
    );
    let notes = s.delete_job("a", true, 1000).unwrap();
    assert_eq!(topics(&notes), ["notify", "notify-next"]);
    assert_eq!(payload(&notes, "notify-next")["execution"]["jobId"], "b");
    assert!(s.job("a").is_none());
    assert!(s.execution("a", T, None).is_none());
    let (_, r, _) = request(&mut s, "a/update", json!({"status": "SUCCEEDED"}), 2000);
    assert_eq!(r["code"], "ResourceNotFound");
    s.cancel_job("b", false, None, 3000).unwrap();
    assert!(
        s.delete_job("b", false, 3000).is_ok(),
        "a CANCELED job needs no force"
    );
    assert_eq!(
        s.delete_job("b", false, 3000).unwrap_err().code,
        "ResourceNotFoundException"
    );
    assert_eq!(s.execution_count(), 0);
}

#[test]
fn list_jobs_filters_and_pages_in_job_id_order() {
    let mut s = service();
    s.create_thing_group("g").unwrap();
    for id in ["e", "a", "d", "b", "c"] {
        job(&mut s, id, 0);
    }
    s.create_job(
        NewJob {
            job_id: "f".into(),
            target_groups: vec!["g".into()],
            continuous: true,
            document: json!({}),
            ..NewJob::default()
        },
        0,
    )
    .unwrap();
    s.cancel_job("d", false, None, 0).unwrap();
    let ids = |p: &Page<&Job>| p.items.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>();
    let mut filter = JobFilter {
        max_results: Some(2),
        ..JobFilter::default()
    };
    let mut all = Vec::new();
    loop {
        let page = s.list_jobs(&filter).unwrap();
        all.extend(ids(&page));
        match page.next_token {
            Some(t) => filter.next_token = Some(t),
            None => break,
        }
    }
    assert_eq!(all, ["a", "b", "c", "d", "e", "f"]);
    let only = |f: JobFilter| ids(&s.list_jobs(&f).unwrap());
    assert_eq!(
        only(JobFilter {
            status: Some(JobState::Canceled),
            ..JobFilter::default()
        }),
        ["d"]
    );
    assert_eq!(
        only(JobFilter {
            target_selection: Some(TargetSelection::Continuous),
            ..JobFilter::default()
        }),
        ["f"]
    );
    assert_eq!(
        only(JobFilter {
            thing_group_name: Some("g".into()),
            ..JobFilter::default()
        }),
        ["f"]
    );
    assert_eq!(
        s.list_jobs(&JobFilter {
            max_results: Some(0),
            ..JobFilter::default()
        })
        .unwrap_err()
        .code,
        "InvalidRequestException"
    );
}

#[test]
fn update_job_changes_later_executions() {
    let mut s = service();
    job(&mut s, "a", 0);
    s.update_job(
        "a",
        JobUpdate {
            description: Some("new".into()),
            in_progress_timeout_minutes: Some(2),
            retry: Some(RetryConfig {
                failed: 0,
                timed_out: 1,
            }),
        },
        1000,
    )
    .unwrap();
    let j = s.job("a").unwrap();
    assert_eq!(
        (
            j.description.as_deref(),
            j.in_progress_timeout_minutes,
            j.last_updated_at_ms
        ),
        (Some("new"), Some(2), 1000)
    );
    request(&mut s, "a/update", json!({"status": "IN_PROGRESS"}), 0);
    assert_eq!(s.next_deadline(), Some(2 * MIN));
    s.tick(2 * MIN);
    let e = s.execution("a", T, None).unwrap();
    assert_eq!(
        (e.execution_number, e.status),
        (2, JobStatus::Queued),
        "retried once"
    );
    for bad in [
        JobUpdate {
            in_progress_timeout_minutes: Some(0),
            ..JobUpdate::default()
        },
        JobUpdate {
            retry: Some(RetryConfig {
                failed: 6,
                timed_out: 5,
            }),
            ..JobUpdate::default()
        },
    ] {
        assert_eq!(
            s.update_job("a", bad, 0).unwrap_err().code,
            "InvalidRequestException"
        );
    }
    assert_eq!(
        s.update_job("nope", JobUpdate::default(), 0)
            .unwrap_err()
            .code,
        "ResourceNotFoundException"
    );
}

#[test]
fn things_have_attributes_and_list_in_name_order() {
    let mut s = JobsService::default();
    let attrs = |pairs: &[(&str, &str)]| -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    s.create_thing_with_attributes("c", attrs(&[("color", "red")]))
        .unwrap();
    s.create_thing_with_attributes("a", attrs(&[("color", "reddish")]))
        .unwrap();
    s.create_thing("b").unwrap();
    s.create_thing_with_attributes("c", attrs(&[("color", "red")]))
        .expect("the same thing again is fine");
    assert_eq!(
        s.create_thing_with_attributes("c", attrs(&[("color", "blue")]))
            .unwrap_err()
            .code,
        "ResourceAlreadyExistsException"
    );
    assert_eq!(
        s.create_thing_with_attributes("d", attrs(&[("bad name!", "x")]))
            .unwrap_err()
            .code,
        "InvalidRequestException"
    );
    let thing = s.describe_thing("c").unwrap();
    assert_eq!(
        (
            thing.attributes.get("color").map(String::as_str),
            thing.version
        ),
        (Some("red"), 1)
    );
    assert_eq!(
        s.describe_thing("zz").unwrap_err().code,
        "ResourceNotFoundException"
    );
    let names = |f: ThingFilter| -> (Vec<String>, Option<String>) {
        let p = s.list_things(&f).unwrap();
        (
            p.items.iter().map(|t| t.thing_name.clone()).collect(),
            p.next_token,
        )
    };
    assert_eq!(names(ThingFilter::default()).0, ["a", "b", "c"]);
    let (first, token) = names(ThingFilter {
        max_results: Some(2),
        ..ThingFilter::default()
    });
    assert_eq!(first, ["a", "b"]);
    let (rest, token) = names(ThingFilter {
        max_results: Some(2),
        next_token: token,
        ..ThingFilter::default()
    });
    assert_eq!((rest, token), (vec!["c".to_owned()], None));
    let red = ThingFilter {
        attribute_name: Some("color".into()),
        attribute_value: Some("red".into()),
        ..ThingFilter::default()
    };
    assert_eq!(names(red.clone()).0, ["c"]);
    assert_eq!(
        names(ThingFilter {
            use_prefix_attribute_value: true,
            ..red
        })
        .0,
        ["a", "c"]
    );
}

#[test]
fn execution_listings_page_in_creation_order() {
    let mut s = service();
    s.create_thing("other").unwrap();
    for id in ["x", "y", "z"] {
        job(&mut s, id, 0);
    }
    request(&mut s, "y/update", json!({"status": "SUCCEEDED"}), 0);
    let page = s
        .list_job_executions_for_thing(T, None, None, Some(2), None)
        .unwrap();
    let ids = |p: &Page<&Execution>| p.items.iter().map(|e| e.job_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&page), ["x", "y"]);
    let rest = s
        .list_job_executions_for_thing(T, None, None, Some(2), page.next_token.as_deref())
        .unwrap();
    assert_eq!((ids(&rest), rest.next_token), (vec!["z".to_owned()], None));
    let done = s
        .list_job_executions_for_thing(T, Some(JobStatus::Succeeded), None, None, None)
        .unwrap();
    assert_eq!(ids(&done), ["y"]);
    let of_z = s
        .list_job_executions_for_thing(T, None, Some("z"), None, None)
        .unwrap();
    assert_eq!(ids(&of_z), ["z"]);
    let for_job = s
        .list_job_executions_for_job("x", None, Some(1), None)
        .unwrap();
    assert_eq!((for_job.items.len(), for_job.next_token), (1, None));
    assert_eq!(
        s.list_job_executions_for_job("x", None, None, Some("garbage"))
            .unwrap_err()
            .code,
        "InvalidRequestException"
    );
    assert_eq!(s.execution_counts("y"), vec![(JobStatus::Succeeded, 1)]);
}
