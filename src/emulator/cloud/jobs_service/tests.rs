//! The Jobs service against the checklist of the device-side API, with virtual time.

use super::*;
use crate::jobs::messages::JobStatus;
use serde_json::{json, Value};

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
