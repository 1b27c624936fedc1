//! Engine tests on plain values and virtual time.

use super::candidates::NOTIFY_SETTLE_MS;
use super::*;
use crate::jobs::messages::JobStatus;
use serde_json::{json, Value};

const THING: &str = "dev-1";
const P: &str = "$aws/things/dev-1/jobs/";

fn engine(jitter_ms: u64) -> Engine {
    let mut config = EngineConfig::new(THING);
    config.max_jitter = Duration::from_millis(jitter_ms);
    config.response_timeout = Duration::from_secs(10);
    config.base_backoff = Duration::from_secs(1);
    config.max_backoff = Duration::from_secs(60);
    Engine::new(config, 7)
}

/// The only publish in `actions`: (topic, payload as JSON).
fn published(actions: &[Action]) -> (String, Value) {
    let publishes: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish { topic, payload } => {
                Some((topic.clone(), serde_json::from_slice(payload).unwrap()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(publishes.len(), 1, "expected one publish in {actions:?}");
    publishes.into_iter().next().unwrap()
}

fn token(v: &Value) -> String {
    v["clientToken"].as_str().unwrap().to_owned()
}

fn msg<'a>(topic: &'a str, payload: &'a [u8]) -> Input<'a> {
    Input::Message { topic, payload }
}

fn reply(e: &mut Engine, now: Millis, topic: &str, body: Value) -> Vec<Action> {
    let bytes = serde_json::to_vec(&body).unwrap();
    e.handle(now, msg(topic, &bytes))
}

fn ours(op: &str) -> Value {
    json!({"operation": op, "a": 2, "b": 3})
}

fn execution(job: &str, status: &str, version: i64, doc: Value) -> Value {
    json!({"jobId": job, "status": status, "versionNumber": version, "executionNumber": 1,
           "queuedAt": 100, "lastUpdatedAt": 100, "jobDocument": doc})
}

/// Drives start → get → describe → start of one queued job; returns the engine at Run.
fn run_one(e: &mut Engine, job: &str) -> Vec<Action> {
    let (topic, get) = published(&e.handle(0, Input::Started));
    assert_eq!(topic, format!("{P}get"));
    let acts = reply(
        e,
        1,
        &format!("{P}get/accepted"),
        json!({
            "clientToken": token(&get), "inProgressJobs": [],
            "queuedJobs": [{"jobId": job, "executionNumber": 1, "versionNumber": 1, "queuedAt": 100}]
        }),
    );
    let (topic, describe) = published(&acts);
    assert_eq!(topic, format!("{P}{job}/get"));
    assert_eq!(describe["includeJobDocument"], true);
    let acts = reply(
        e,
        2,
        &format!("{P}{job}/get/accepted"),
        json!({
            "clientToken": token(&describe), "execution": execution(job, "QUEUED", 1, ours("add"))
        }),
    );
    let (topic, start) = published(&acts);
    assert_eq!(topic, format!("{P}{job}/update"));
    assert_eq!(start["status"], "IN_PROGRESS");
    assert_eq!(start["expectedVersion"], 1);
    let acts = reply(
        e,
        3,
        &format!("{P}{job}/update/accepted"),
        json!({
            "clientToken": token(&start), "executionState": {"status": "IN_PROGRESS", "versionNumber": 2}
        }),
    );
    assert!(
        matches!(&acts[..], [Action::Run(run)] if run.job_id == job && run.document.label() == "add")
    );
    acts
}

/// Tells the engine what the journal holds about a job of an earlier run.
fn recover(e: &mut Engine, job: &str, execution_number: i64, outcome: JobOutcome) {
    let acts = e.handle(
        0,
        Input::Recovered {
            job_id: job,
            execution_number,
            recovery: Recovered::Ended(outcome),
        },
    );
    assert!(acts.is_empty(), "{acts:?}");
}

fn finish(e: &mut Engine, now: Millis, job: &str, status: JobStatus) -> Value {
    let outcome = JobOutcome {
        status,
        status_details: [("result".to_owned(), "5".to_owned())].into(),
    };
    let acts = e.handle(
        now,
        Input::JobFinished {
            job_id: job,
            execution_number: 1,
            outcome,
        },
    );
    let (topic, update) = published(&acts);
    assert_eq!(topic, format!("{P}{job}/update"));
    update
}

#[test]
fn idle_engine_has_no_deadline() {
    let e = engine(0);
    assert_eq!(e.next_deadline(), None);
    assert!(e.subscriptions().contains(&"reconnect/dev-1".to_owned()));
    assert_eq!(
        e.subscriptions().last().map(String::as_str),
        Some("reconnect/dev-1")
    );
}

#[test]
fn full_happy_path_then_idle_without_timers() {
    let mut e = engine(0);
    run_one(&mut e, "job1");
    let update = finish(&mut e, 10, "job1", JobStatus::Succeeded);
    assert_eq!(update["status"], "SUCCEEDED");
    assert_eq!(update["expectedVersion"], 2);
    assert_eq!(update["statusDetails"], json!({"result": "5"}));
    let acts = reply(
        &mut e,
        11,
        &format!("{P}job1/update/accepted"),
        json!({"clientToken": token(&update)}),
    );
    // Reported: look for the next job at once.
    let (topic, get) = published(&acts);
    assert_eq!(topic, format!("{P}get"));
    let acts = reply(
        &mut e,
        12,
        &format!("{P}get/accepted"),
        json!({"clientToken": token(&get), "inProgressJobs": [], "queuedJobs": []}),
    );
    assert!(acts.is_empty());
    assert!(!e.busy());
    assert_eq!(e.next_deadline(), None, "idle: no timer at all");
}

#[test]
fn reconnect_bursts_collapse_into_one_jittered_query() {
    let mut e = engine(3000);
    for i in 0..5 {
        assert!(e
            .handle(i, msg("reconnect/dev-1", br#"{"clientId":"dev-1"}"#))
            .is_empty());
    }
    let at = e.next_deadline().expect("a query is scheduled");
    assert!(at <= 3000, "jitter within bound: {at}");
    let mut publishes = 0;
    for t in 0..=3000 {
        publishes += e.handle(t, Input::Tick).len();
    }
    assert_eq!(publishes, 1);
    // A reconnect while the query runs asks for one more afterwards, not a parallel one.
    assert!(e.handle(3001, msg("reconnect/dev-1", b"{}")).is_empty());
}

#[test]
fn jitter_spreads_a_fleet() {
    let mut times = std::collections::BTreeSet::new();
    for seed in 0..50 {
        let mut config = EngineConfig::new(THING);
        config.max_jitter = Duration::from_secs(5);
        let mut e = Engine::new(config, seed);
        e.handle(0, msg("reconnect/dev-1", b"{}"));
        let at = e.next_deadline().unwrap();
        assert!(at <= 5000);
        times.insert(at);
    }
    assert!(
        times.len() > 40,
        "fleet queries spread out: {}",
        times.len()
    );
}

#[test]
fn responses_to_other_clients_and_duplicates_are_ignored() {
    let mut e = engine(0);
    let (_, get) = published(&e.handle(0, Input::Started));
    // The nucleus's own traffic on the same thing.
    let foreign = reply(
        &mut e,
        1,
        &format!("{P}get/accepted"),
        json!({"clientToken": "nucleus-1", "queuedJobs": [{"jobId": "x", "executionNumber": 1, "versionNumber": 1}]}),
    );
    assert!(foreign.is_empty());
    let no_token = reply(
        &mut e,
        1,
        &format!("{P}get/accepted"),
        json!({"queuedJobs": []}),
    );
    assert!(no_token.is_empty());
    let body = json!({"clientToken": token(&get), "inProgressJobs": [], "queuedJobs": []});
    assert!(reply(&mut e, 2, &format!("{P}get/accepted"), body.clone()).is_empty());
    // The same response again (QoS 1 duplicate) does nothing.
    assert!(reply(&mut e, 3, &format!("{P}get/accepted"), body).is_empty());
    assert_eq!(e.next_deadline(), None);
}

#[test]
fn foreign_jobs_are_never_started_or_updated() {
    let mut e = engine(0);
    let (_, get) = published(&e.handle(0, Input::Started));
    let acts = reply(
        &mut e,
        1,
        &format!("{P}get/accepted"),
        json!({
            "clientToken": token(&get), "inProgressJobs": [],
            "queuedJobs": [{"jobId": "deploy-1", "executionNumber": 1, "versionNumber": 1}, {"jobId": "mine", "executionNumber": 1, "versionNumber": 1}]
        }),
    );
    let (topic, d1) = published(&acts);
    assert_eq!(topic, format!("{P}deploy-1/get"));
    let deployment = json!({"deploymentId": "abc", "components": {"aws.greengrass.Cli": {}}});
    let acts = reply(
        &mut e,
        2,
        &format!("{P}deploy-1/get/accepted"),
        json!({"clientToken": token(&d1), "execution": execution("deploy-1", "QUEUED", 1, deployment.clone())}),
    );
    // Skipped: the next candidate is described, the deployment is never updated.
    let (topic, d2) = published(&acts);
    assert_eq!(topic, format!("{P}mine/get"));
    let acts = reply(
        &mut e,
        3,
        &format!("{P}mine/get/accepted"),
        json!({"clientToken": token(&d2), "execution": execution("mine", "QUEUED", 1, ours("echo"))}),
    );
    assert_eq!(published(&acts).0, format!("{P}mine/update"));
    // A notify-next announcing the deployment as head changes nothing for it.
    let notify =
        json!({"timestamp": 5, "execution": execution("deploy-1", "QUEUED", 1, deployment)});
    let acts = reply(&mut e, 4, &format!("{P}notify-next"), notify);
    assert!(acts
        .iter()
        .all(|a| !matches!(a, Action::Publish { topic, .. } if topic.contains("deploy-1/update"))));
}

#[test]
fn missing_response_is_retried_with_back_off_and_a_fresh_token() {
    let mut e = engine(0);
    let (_, first) = published(&e.handle(0, Input::Started));
    assert_eq!(e.next_deadline(), Some(10_000));
    assert!(e.handle(9_999, Input::Tick).is_empty());
    assert!(
        e.handle(10_000, Input::Tick).is_empty(),
        "timed out; retry waits for back-off"
    );
    let retry_at = e.next_deadline().unwrap();
    assert!((11_000..=11_500).contains(&retry_at), "{retry_at}");
    let (topic, second) = published(&e.handle(retry_at, Input::Tick));
    assert_eq!(topic, format!("{P}get"));
    assert_ne!(token(&first), token(&second));
    // A late answer to the first attempt is ignored; the second is used.
    let late = reply(
        &mut e,
        retry_at + 1,
        &format!("{P}get/accepted"),
        json!({"clientToken": token(&first), "queuedJobs": [{"jobId": "j", "executionNumber": 1, "versionNumber": 1}]}),
    );
    assert!(late.is_empty());
    // Back-off grows: the next timeout waits about twice as long.
    e.handle(retry_at + 10_000, Input::Tick);
    let third_at = e.next_deadline().unwrap();
    assert!(
        (retry_at + 12_000..=retry_at + 13_000).contains(&third_at),
        "{third_at}"
    );
}

#[test]
fn throttled_and_internal_errors_back_off() {
    for code in ["RequestThrottled", "InternalError"] {
        let mut e = engine(0);
        let (_, get) = published(&e.handle(0, Input::Started));
        let acts = reply(
            &mut e,
            1,
            &format!("{P}get/rejected"),
            json!({"clientToken": token(&get), "code": code, "message": "slow down"}),
        );
        assert!(acts.is_empty());
        let at = e.next_deadline().unwrap();
        assert!((2..=1001).contains(&at), "{code}: {at}");
        assert_eq!(published(&e.handle(at, Input::Tick)).0, format!("{P}get"));
    }
}

/// Over many seeds: the GetPending is refused `refusals` times, then answered with one job;
/// the describe that follows is refused once. Returns how long each describe's retry waits.
fn describe_retry_waits(refusals: usize) -> Vec<Millis> {
    (0..200)
        .map(|seed| {
            let mut config = EngineConfig::new(THING);
            config.max_jitter = Duration::ZERO;
            let mut e = Engine::new(config, seed);
            let mut now = 0;
            let mut acts = e.handle(now, Input::Started);
            for _ in 0..refusals {
                let (_, get) = published(&acts);
                let refusal = json!({"clientToken": token(&get), "code": "RequestThrottled"});
                assert!(reply(&mut e, now, &format!("{P}get/rejected"), refusal).is_empty());
                now = e.next_deadline().unwrap();
                acts = e.handle(now, Input::Tick);
            }
            let (_, get) = published(&acts);
            let list = json!({"clientToken": token(&get),
                "queuedJobs": [{"jobId": "job1", "executionNumber": 1, "versionNumber": 1}]});
            let (topic, describe) =
                published(&reply(&mut e, now, &format!("{P}get/accepted"), list));
            assert_eq!(topic, format!("{P}job1/get"));
            let refusal = json!({"clientToken": token(&describe), "code": "RequestThrottled"});
            assert!(reply(&mut e, now, &format!("{P}job1/get/rejected"), refusal).is_empty());
            e.next_deadline().unwrap() - now
        })
        .collect()
}

#[test]
fn a_request_refused_after_earlier_refusals_waits_from_the_window_they_reached() {
    // Alone, a first refusal waits up to base_backoff (1 s).
    assert!(describe_retry_waits(0).iter().all(|w| *w <= 1_000));
    // After six refusals of the query (window 64 s) and its acceptance (one step back: 32 s),
    // the describe's first refusal waits over the larger window, not within a second.
    let waits = describe_retry_waits(6);
    assert!(waits.iter().all(|w| *w <= 32_000), "{waits:?}");
    let mean = waits.iter().sum::<u64>() / waits.len() as u64;
    assert!((10_000..=22_000).contains(&mean), "mean wait {mean} ms");
}

#[test]
fn version_mismatch_on_result_reconciles() {
    let mut e = engine(0);
    run_one(&mut e, "job1");
    let update = finish(&mut e, 10, "job1", JobStatus::Succeeded);
    let acts = reply(
        &mut e,
        11,
        &format!("{P}job1/update/rejected"),
        json!({
            "clientToken": token(&update), "code": "VersionMismatch",
            "executionState": {"status": "IN_PROGRESS", "versionNumber": 5}
        }),
    );
    let (_, again) = published(&acts);
    assert_eq!(again["expectedVersion"], 5);
    assert_eq!(again["status"], "SUCCEEDED");
    // Already recorded (the first acceptance was lost): done, no more updates.
    let acts = reply(
        &mut e,
        12,
        &format!("{P}job1/update/rejected"),
        json!({
            "clientToken": token(&again), "code": "VersionMismatch",
            "executionState": {"status": "SUCCEEDED", "versionNumber": 6}
        }),
    );
    assert!(!e.busy());
    assert_eq!(published(&acts).0, format!("{P}get"));
}

#[test]
fn terminal_state_codes_end_the_report() {
    for (code, state, expect_busy) in [
        (
            "InvalidStateTransition",
            json!({"status": "SUCCEEDED", "versionNumber": 3}),
            false,
        ),
        (
            "InvalidStateTransition",
            json!({"status": "CANCELED", "versionNumber": 3}),
            false,
        ),
        ("TerminalStateReached", Value::Null, false),
        ("ResourceNotFound", Value::Null, false),
    ] {
        let mut e = engine(0);
        run_one(&mut e, "job1");
        let update = finish(&mut e, 10, "job1", JobStatus::Succeeded);
        let mut body = json!({"clientToken": token(&update), "code": code});
        if !state.is_null() {
            body["executionState"] = state;
        }
        let acts = reply(&mut e, 11, &format!("{P}job1/update/rejected"), body);
        assert_eq!(e.busy(), expect_busy, "{code}");
        // No retry of the update: the next thing published is a fresh query.
        assert_eq!(published(&acts).0, format!("{P}get"), "{code}");
    }
}

#[test]
fn invalid_request_resends_the_status_without_details() {
    let mut e = engine(0);
    run_one(&mut e, "job1");
    let update = finish(&mut e, 10, "job1", JobStatus::Failed);
    let acts = reply(
        &mut e,
        11,
        &format!("{P}job1/update/rejected"),
        json!({"clientToken": token(&update), "code": "InvalidRequest", "message": "bad statusDetails"}),
    );
    let (_, again) = published(&acts);
    assert_eq!(again["status"], "FAILED");
    assert_eq!(
        again["statusDetails"],
        json!({"reason": "the service rejected this job's result details"})
    );
}

#[test]
fn start_version_mismatch_rereads_the_execution() {
    let mut e = engine(0);
    let (_, get) = published(&e.handle(0, Input::Started));
    let acts = reply(
        &mut e,
        1,
        &format!("{P}get/accepted"),
        json!({"clientToken": token(&get), "queuedJobs": [{"jobId": "j", "executionNumber": 1, "versionNumber": 1}]}),
    );
    let (_, d) = published(&acts);
    let acts = reply(
        &mut e,
        2,
        &format!("{P}j/get/accepted"),
        json!({"clientToken": token(&d), "execution": execution("j", "QUEUED", 1, ours("echo"))}),
    );
    let (_, start) = published(&acts);
    let acts = reply(
        &mut e,
        3,
        &format!("{P}j/update/rejected"),
        json!({"clientToken": token(&start), "code": "VersionMismatch", "executionState": {"status": "QUEUED", "versionNumber": 2}}),
    );
    let (topic, d2) = published(&acts);
    assert_eq!(topic, format!("{P}j/get"));
    let acts = reply(
        &mut e,
        4,
        &format!("{P}j/get/accepted"),
        json!({"clientToken": token(&d2), "execution": execution("j", "QUEUED", 2, ours("echo"))}),
    );
    assert_eq!(published(&acts).1["expectedVersion"], 2);
}

#[test]
fn notify_next_starts_a_job_when_idle_and_empty_notify_is_fine() {
    let mut e = engine(0);
    let acts = reply(
        &mut e,
        0,
        &format!("{P}notify-next"),
        json!({"timestamp": 1}),
    );
    assert!(acts.is_empty());
    let acts = reply(
        &mut e,
        1,
        &format!("{P}notify-next"),
        json!({"timestamp": 2, "execution": execution("n1", "QUEUED", 1, ours("echo"))}),
    );
    let (topic, start) = published(&acts);
    assert_eq!(topic, format!("{P}n1/update"));
    assert_eq!(start["status"], "IN_PROGRESS");
    // A duplicate notify-next while starting does not start it twice.
    let acts = reply(
        &mut e,
        2,
        &format!("{P}notify-next"),
        json!({"timestamp": 2, "execution": execution("n1", "QUEUED", 1, ours("echo"))}),
    );
    assert!(acts
        .iter()
        .all(|a| !matches!(a, Action::Publish { topic, .. } if topic.ends_with("n1/update"))));
}

#[test]
fn cancellation_in_the_cloud_stops_the_running_job() {
    let mut e = engine(0);
    run_one(&mut e, "job1");
    // notify-next no longer names our job: check it.
    let acts = reply(
        &mut e,
        20,
        &format!("{P}notify-next"),
        json!({"timestamp": 20}),
    );
    let (topic, check) = published(&acts);
    assert_eq!(topic, format!("{P}job1/get"));
    let acts = reply(
        &mut e,
        21,
        &format!("{P}job1/get/accepted"),
        json!({"clientToken": token(&check), "execution": execution("job1", "CANCELED", 3, ours("add"))}),
    );
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Cancel { job_id, .. } if job_id == "job1")));
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Forget { job_id, execution_number: 1 } if job_id == "job1")));
    assert!(!e.busy());
    // The work's late result is not reported.
    let outcome = JobOutcome {
        status: JobStatus::Succeeded,
        status_details: StatusDetails::new(),
    };
    let acts = e.handle(
        30,
        Input::JobFinished {
            job_id: "job1",
            execution_number: 1,
            outcome,
        },
    );
    assert!(acts
        .iter()
        .all(|a| !matches!(a, Action::Publish { topic, .. } if topic.ends_with("job1/update"))));
}

#[test]
fn deleted_job_while_running_is_canceled() {
    let mut e = engine(0);
    run_one(&mut e, "job1");
    let acts = reply(
        &mut e,
        20,
        &format!("{P}notify-next"),
        json!({"timestamp": 20, "execution": execution("other", "QUEUED", 1, ours("echo"))}),
    );
    let (_, check) = published(&acts);
    let acts = reply(
        &mut e,
        21,
        &format!("{P}job1/get/rejected"),
        json!({"clientToken": token(&check), "code": "ResourceNotFound"}),
    );
    assert!(acts.iter().any(|a| matches!(a, Action::Cancel { .. })));
}

/// Query → describe (IN_PROGRESS, with `details`) of one job; returns the actions after the
/// describe answer.
fn find_in_progress(e: &mut Engine, job: &str, version: i64, details: Value) -> Vec<Action> {
    let (_, get) = published(&e.handle(0, Input::Started));
    let acts = reply(
        e,
        1,
        &format!("{P}get/accepted"),
        json!({"clientToken": token(&get), "inProgressJobs": [{"jobId": job, "executionNumber": 1, "versionNumber": version}], "queuedJobs": []}),
    );
    let (_, d) = published(&acts);
    let mut state = execution(job, "IN_PROGRESS", version, ours("echo"));
    state["statusDetails"] = details;
    reply(
        e,
        2,
        &format!("{P}{job}/get/accepted"),
        json!({"clientToken": token(&d), "execution": state}),
    )
}

#[test]
fn an_in_progress_job_is_reported_interrupted_only_when_the_journal_holds_it() {
    let mut e = engine(0);
    let interrupted = JobOutcome {
        status: JobStatus::Failed,
        status_details: [(
            "reason".to_owned(),
            "interrupted: the handler stopped".to_owned(),
        )]
        .into(),
    };
    recover(&mut e, "old", 1, interrupted);
    let acts = find_in_progress(&mut e, "old", 2, json!({"step": "1/2"}));
    let (topic, update) = published(&acts);
    assert_eq!(topic, format!("{P}old/update"));
    assert_eq!(update["status"], "FAILED");
    assert_eq!(update["expectedVersion"], 2);
    assert!(update["statusDetails"]["reason"]
        .as_str()
        .unwrap()
        .contains("interrupted"));
    // Without a journal entry it was started elsewhere (another instance on this thing): left
    // alone, never reported.
    let mut e = engine(0);
    let acts = find_in_progress(&mut e, "theirs", 2, json!({"startedBy": "ggjh-other-1"}));
    assert!(acts.is_empty(), "{acts:?}");
    assert!(!e.busy());
    assert_eq!(e.next_deadline(), None);
}

/// Describes and starts one queued job; returns the start request (unanswered).
fn send_start(e: &mut Engine, job: &str) -> Value {
    let (_, get) = published(&e.handle(0, Input::Started));
    let acts = reply(
        e,
        1,
        &format!("{P}get/accepted"),
        json!({"clientToken": token(&get), "queuedJobs": [{"jobId": job, "executionNumber": 1, "versionNumber": 1}]}),
    );
    let (_, d) = published(&acts);
    let acts = reply(
        e,
        2,
        &format!("{P}{job}/get/accepted"),
        json!({"clientToken": token(&d), "execution": execution(job, "QUEUED", 1, ours("echo"))}),
    );
    // Journal before the start goes out.
    assert!(
        matches!(&acts[..], [Action::Record(Record::Starting { job_id, .. }), Action::Publish { .. }] if job_id == job),
        "{acts:?}"
    );
    let (_, start) = published(&acts);
    assert_eq!(
        start["statusDetails"][START_MARKER_KEY],
        start_marker(&acts)
    );
    start
}

fn start_marker(actions: &[Action]) -> String {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Record(Record::Starting { marker, .. }) => Some(marker.clone()),
            _ => None,
        })
        .expect("a Starting record")
}

fn runs(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Run(_)))
        .count()
}

/// Lets the start time out and be sent again; returns the second attempt.
fn start_retried(e: &mut Engine, first: &Value) -> Value {
    let timeout = e.next_deadline().unwrap();
    assert!(e.handle(timeout, Input::Tick).is_empty());
    let at = e.next_deadline().unwrap();
    let (topic, again) = published(&e.handle(at, Input::Tick));
    assert!(topic.ends_with("/update"));
    assert_ne!(token(first), token(&again));
    assert_eq!(
        again["statusDetails"], first["statusDetails"],
        "one marker for every attempt"
    );
    again
}

#[test]
fn a_lost_start_answer_then_version_mismatch_runs_the_job_instead_of_failing_it() {
    let mut e = engine(0);
    let first = send_start(&mut e, "j");
    let again = start_retried(&mut e, &first);
    // The first attempt went through (version 2, our marker); the second is refused.
    let acts = reply(
        &mut e,
        30_000,
        &format!("{P}j/update/rejected"),
        json!({"clientToken": token(&again), "code": "VersionMismatch",
               "executionState": {"status": "IN_PROGRESS", "versionNumber": 2, "statusDetails": first["statusDetails"]}}),
    );
    assert_eq!(runs(&acts), 1, "{acts:?}");
    assert!(
        acts.iter().all(|a| !matches!(a, Action::Publish { .. })),
        "nothing reported: {acts:?}"
    );
    // The result then goes with the version the start produced.
    let update = finish(&mut e, 40_000, "j", JobStatus::Succeeded);
    assert_eq!(
        (
            update["status"].as_str(),
            update["expectedVersion"].as_i64()
        ),
        (Some("SUCCEEDED"), Some(2))
    );
}

#[test]
fn a_version_mismatch_without_state_rereads_and_finds_our_start() {
    let mut e = engine(0);
    let first = send_start(&mut e, "j");
    let again = start_retried(&mut e, &first);
    let acts = reply(
        &mut e,
        30_000,
        &format!("{P}j/update/rejected"),
        json!({"clientToken": token(&again), "code": "VersionMismatch"}),
    );
    let (topic, d) = published(&acts);
    assert_eq!(topic, format!("{P}j/get"));
    let mut state = execution("j", "IN_PROGRESS", 2, ours("echo"));
    state["statusDetails"] = first["statusDetails"].clone();
    let acts = reply(
        &mut e,
        30_001,
        &format!("{P}j/get/accepted"),
        json!({"clientToken": token(&d), "execution": state}),
    );
    assert_eq!(runs(&acts), 1, "{acts:?}");
    assert!(
        acts.iter().all(|a| !matches!(a, Action::Publish { .. })),
        "{acts:?}"
    );
}

#[test]
fn a_late_acceptance_of_an_earlier_start_attempt_counts() {
    let mut e = engine(0);
    let first = send_start(&mut e, "j");
    let again = start_retried(&mut e, &first);
    let acts = reply(
        &mut e,
        30_000,
        &format!("{P}j/update/accepted"),
        json!({"clientToken": token(&first), "executionState": {"status": "IN_PROGRESS", "versionNumber": 2}}),
    );
    assert_eq!(runs(&acts), 1, "{acts:?}");
    // The answer to the second attempt changes nothing, and nothing is retried.
    let acts = reply(
        &mut e,
        30_001,
        &format!("{P}j/update/rejected"),
        json!({"clientToken": token(&again), "code": "VersionMismatch",
               "executionState": {"status": "IN_PROGRESS", "versionNumber": 2}}),
    );
    assert!(acts.is_empty(), "{acts:?}");
    assert_eq!(e.next_deadline(), None);
    assert!(e.busy());
}

#[test]
fn two_instances_on_one_thing_never_fail_each_others_jobs() {
    let (mut a, mut b) = (
        Engine::new(EngineConfig::new(THING), 1),
        Engine::new(EngineConfig::new(THING), 2),
    );
    for e in [&mut a, &mut b] {
        let mut c = EngineConfig::new(THING);
        c.max_jitter = Duration::ZERO;
        e.handle(0, Input::Reconfigure(c));
    }
    let start_a = send_start(&mut a, "j");
    let start_b = send_start(&mut b, "j");
    // A wins; B's start is refused with the state A's start produced.
    let acts = reply(
        &mut a,
        3,
        &format!("{P}j/update/accepted"),
        json!({"clientToken": token(&start_a), "executionState": {"status": "IN_PROGRESS", "versionNumber": 2}}),
    );
    assert_eq!(runs(&acts), 1);
    let state = json!({"status": "IN_PROGRESS", "versionNumber": 2, "statusDetails": start_a["statusDetails"]});
    let acts = reply(
        &mut b,
        3,
        &format!("{P}j/update/rejected"),
        json!({"clientToken": token(&start_b), "code": "VersionMismatch", "executionState": state}),
    );
    let (topic, d) = published(&acts);
    assert_eq!(topic, format!("{P}j/get"));
    let mut seen = execution("j", "IN_PROGRESS", 2, ours("echo"));
    seen["statusDetails"] = start_a["statusDetails"].clone();
    let acts = reply(
        &mut b,
        4,
        &format!("{P}j/get/accepted"),
        json!({"clientToken": token(&d), "execution": seen}),
    );
    assert!(
        acts.iter().all(
            |a| !matches!(a, Action::Publish { topic, .. } if topic.ends_with("j/update"))
                && !matches!(a, Action::Run(_))
        ),
        "B neither runs nor reports A's job: {acts:?}"
    );
    // B's starting record is released.
    assert_eq!(forgets(&acts), ["j"]);
    assert!(!b.busy());
}

#[test]
fn after_a_restart_a_start_the_journal_holds_runs_when_the_cloud_shows_it() {
    let mut e = engine(0);
    let acts = e.handle(
        0,
        Input::Recovered {
            job_id: "j",
            execution_number: 1,
            recovery: Recovered::NotStarted {
                marker: "ggjh-earlier-7".into(),
            },
        },
    );
    assert!(acts.is_empty());
    let acts = find_in_progress(&mut e, "j", 2, json!({"startedBy": "ggjh-earlier-7"}));
    assert_eq!(runs(&acts), 1, "{acts:?}");
    // Another marker: not our start; left alone.
    let mut e = engine(0);
    e.handle(
        0,
        Input::Recovered {
            job_id: "j",
            execution_number: 1,
            recovery: Recovered::NotStarted {
                marker: "ggjh-earlier-7".into(),
            },
        },
    );
    let acts = find_in_progress(&mut e, "j", 2, json!({"startedBy": "ggjh-someone-1"}));
    assert_eq!(forgets(&acts), ["j"], "{acts:?}");
    assert!(
        acts.iter().all(|a| matches!(a, Action::Forget { .. })),
        "{acts:?}"
    );
}

#[test]
fn the_result_is_journaled_before_it_is_reported() {
    let mut e = engine(0);
    run_one(&mut e, "job1");
    let outcome = JobOutcome {
        status: JobStatus::Succeeded,
        status_details: [("result".to_owned(), "5".to_owned())].into(),
    };
    let acts = e.handle(
        10,
        Input::JobFinished {
            job_id: "job1",
            execution_number: 1,
            outcome: outcome.clone(),
        },
    );
    assert!(
        matches!(&acts[..], [Action::Record(Record::Finished { job_id, outcome: o, .. }), Action::Publish { .. }] if job_id == "job1" && *o == outcome),
        "{acts:?}"
    );
}

#[test]
fn malformed_document_of_ours_is_rejected_with_a_reason() {
    let mut e = engine(0);
    let acts = reply(
        &mut e,
        0,
        &format!("{P}notify-next"),
        json!({"execution": execution("bad", "QUEUED", 1, json!({"operation": 42}))}),
    );
    let (_, update) = published(&acts);
    assert_eq!(update["status"], "REJECTED");
    assert!(update["statusDetails"]["reason"]
        .as_str()
        .unwrap()
        .contains("operation"));
}

#[test]
fn garbage_payloads_never_panic() {
    let mut e = engine(0);
    let (_, get) = published(&e.handle(0, Input::Started));
    for topic in [
        "notify-next",
        "get/accepted",
        "get/rejected",
        "x/get/accepted",
        "x/update/rejected",
        "start-next/accepted",
    ] {
        let t = format!("{P}{topic}");
        e.handle(1, msg(&t, b"\xff\xfe not json"));
        e.handle(1, msg(&t, b"[]"));
        e.handle(1, msg(&t, b"{\"clientToken\": 5}"));
    }
    // Our token with a body of the wrong shape: retried, not lost.
    let bad = json!({"clientToken": token(&get), "queuedJobs": "nope"});
    reply(&mut e, 2, &format!("{P}get/accepted"), bad);
    assert!(e.next_deadline().is_some());
}

#[test]
fn safety_poll_is_off_by_default_and_periodic_when_set() {
    let mut config = EngineConfig::new(THING);
    config.max_jitter = Duration::ZERO;
    config.safety_poll = Some(Duration::from_secs(60));
    let mut e = Engine::new(config, 1);
    let (_, get) = published(&e.handle(0, Input::Started));
    reply(
        &mut e,
        1,
        &format!("{P}get/accepted"),
        json!({"clientToken": token(&get)}),
    );
    assert_eq!(e.next_deadline(), Some(60_000));
    assert_eq!(
        published(&e.handle(60_000, Input::Tick)).0,
        format!("{P}get")
    );
}

#[test]
fn notify_listing_an_unseen_job_behind_a_foreign_head_triggers_a_query() {
    let mut e = engine(0);
    let (_, get) = published(&e.handle(0, Input::Started));
    let acts = reply(
        &mut e,
        1,
        &format!("{P}get/accepted"),
        json!({"clientToken": token(&get), "queuedJobs": [{"jobId": "deploy", "executionNumber": 1, "versionNumber": 1}]}),
    );
    let (_, d) = published(&acts);
    let acts = reply(
        &mut e,
        2,
        &format!("{P}deploy/get/accepted"),
        json!({"clientToken": token(&d), "execution": execution("deploy", "QUEUED", 1, json!({"deploymentId": "x"}))}),
    );
    assert!(acts.is_empty());
    // Only the foreign job pending: nothing to do.
    let only_foreign = json!({"timestamp": 3, "jobs": {"QUEUED": [{"jobId": "deploy", "executionNumber": 1, "versionNumber": 1}]}});
    assert!(reply(&mut e, 3, &format!("{P}notify"), only_foreign).is_empty());
    // A new job behind it: query.
    let with_new = json!({"timestamp": 4, "jobs": {"QUEUED": [{"jobId": "deploy", "executionNumber": 1, "versionNumber": 1}, {"jobId": "mine", "executionNumber": 1, "versionNumber": 1}]}});
    assert_eq!(
        published(&reply(&mut e, 4, &format!("{P}notify"), with_new)).0,
        format!("{P}get")
    );
}

/// An engine that queried at start and found nothing pending.
fn idle_engine() -> Engine {
    let mut e = engine(0);
    let (_, get) = published(&e.handle(0, Input::Started));
    reply(
        &mut e,
        1,
        &format!("{P}get/accepted"),
        json!({"clientToken": token(&get)}),
    );
    e
}

#[test]
fn a_new_job_starts_from_its_notify_next_even_when_notify_comes_first() {
    let mut e = idle_engine();
    // The service sends both for a new job; here notify arrives first.
    let notify = json!({"timestamp": 10, "jobs": {"QUEUED": [{"jobId": "mine", "executionNumber": 1, "versionNumber": 1}]}});
    assert!(
        reply(&mut e, 10, &format!("{P}notify"), notify).is_empty(),
        "no pending-list query ahead of notify-next"
    );
    let acts = reply(
        &mut e,
        11,
        &format!("{P}notify-next"),
        json!({"execution": execution("mine", "QUEUED", 1, ours("echo"))}),
    );
    let (topic, start) = published(&acts);
    assert_eq!(topic, format!("{P}mine/update"));
    assert_eq!(start["status"], "IN_PROGRESS");
    // Nothing is left to query for once the settle time has passed.
    let later = 11 + NOTIFY_SETTLE_MS;
    let acts = e.handle(later, Input::Tick);
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, Action::Publish { topic, .. } if *topic == format!("{P}get"))),
        "{acts:?}"
    );
}

#[test]
fn a_notify_that_no_notify_next_follows_is_queried_after_the_settle_time() {
    let mut e = idle_engine();
    let notify = json!({"timestamp": 10, "jobs": {"QUEUED": [{"jobId": "mine", "executionNumber": 1, "versionNumber": 1}]}});
    assert!(reply(&mut e, 10, &format!("{P}notify"), notify).is_empty());
    assert_eq!(e.next_deadline(), Some(10 + NOTIFY_SETTLE_MS));
    assert_eq!(
        published(&e.handle(10 + NOTIFY_SETTLE_MS, Input::Tick)).0,
        format!("{P}get"),
        "a lost notify-next does not strand the job"
    );
}

#[test]
fn a_foreign_head_announced_after_notify_leaves_the_jobs_behind_it_to_a_query() {
    let mut e = idle_engine();
    let notify = json!({"timestamp": 10, "jobs": {"QUEUED": [
        {"jobId": "deploy", "executionNumber": 1, "versionNumber": 1},
        {"jobId": "mine", "executionNumber": 1, "versionNumber": 1}]}});
    assert!(reply(&mut e, 10, &format!("{P}notify"), notify).is_empty());
    let acts = reply(
        &mut e,
        11,
        &format!("{P}notify-next"),
        json!({"execution": execution("deploy", "QUEUED", 1, json!({"deploymentId": "x"}))}),
    );
    assert!(acts.is_empty(), "{acts:?}");
    assert_eq!(
        published(&e.handle(10 + NOTIFY_SETTLE_MS, Input::Tick)).0,
        format!("{P}get"),
        "the job behind the foreign head is looked up"
    );
}

fn forgets(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Forget { job_id, .. } => Some(job_id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn reported_results_release_the_journal_entry() {
    let mut e = engine(0);
    run_one(&mut e, "job1");
    let update = finish(&mut e, 10, "job1", JobStatus::Succeeded);
    let acts = reply(
        &mut e,
        11,
        &format!("{P}job1/update/accepted"),
        json!({"clientToken": token(&update)}),
    );
    assert_eq!(forgets(&acts), ["job1"]);
    // Also when the cloud already had a final state.
    let mut e = engine(0);
    run_one(&mut e, "job2");
    let update = finish(&mut e, 10, "job2", JobStatus::Succeeded);
    let acts = reply(
        &mut e,
        11,
        &format!("{P}job2/update/rejected"),
        json!({"clientToken": token(&update), "code": "TerminalStateReached"}),
    );
    assert_eq!(forgets(&acts), ["job2"]);
}

#[test]
fn journal_outcomes_are_reported_for_interrupted_jobs_and_settled_ones_forgotten() {
    let mut e = engine(0);
    let rebooted = JobOutcome {
        status: JobStatus::Succeeded,
        status_details: [("reboot".to_owned(), "completed".to_owned())].into(),
    };
    recover(&mut e, "reboot-job", 1, rebooted);
    recover(
        &mut e,
        "gone-job",
        4,
        JobOutcome {
            status: JobStatus::Failed,
            status_details: StatusDetails::new(),
        },
    );
    let (_, get) = published(&e.handle(0, Input::Started));
    let acts = reply(
        &mut e,
        1,
        &format!("{P}get/accepted"),
        json!({"clientToken": token(&get),
        "inProgressJobs": [{"jobId": "reboot-job", "executionNumber": 1, "versionNumber": 2}], "queuedJobs": []}),
    );
    // gone-job is no longer pending in the cloud: its entry is dropped.
    assert_eq!(forgets(&acts), ["gone-job"]);
    let (_, d) = published(&acts);
    let acts = reply(
        &mut e,
        2,
        &format!("{P}reboot-job/get/accepted"),
        json!({"clientToken": token(&d), "execution": execution("reboot-job", "IN_PROGRESS", 2, ours("reboot"))}),
    );
    let (_, update) = published(&acts);
    assert_eq!(update["status"], "SUCCEEDED");
    assert_eq!(update["statusDetails"], json!({"reboot": "completed"}));
    let acts = reply(
        &mut e,
        3,
        &format!("{P}reboot-job/update/accepted"),
        json!({"clientToken": token(&update)}),
    );
    assert_eq!(forgets(&acts), ["reboot-job"]);
}

/// The pending list still names the job of an earlier run, but it ends in the cloud (e.g. its
/// in-progress timeout) before the describe: the describe's refusal settles the journal entry.
#[test]
fn a_journaled_job_that_ends_before_its_describe_is_forgotten() {
    for code in ["TerminalStateReached", "ResourceNotFound"] {
        let mut e = engine(0);
        let cut_short = JobOutcome {
            status: JobStatus::Failed,
            status_details: StatusDetails::new(),
        };
        recover(&mut e, "timed-out", 1, cut_short);
        let (_, get) = published(&e.handle(0, Input::Started));
        let acts = reply(
            &mut e,
            1,
            &format!("{P}get/accepted"),
            json!({"clientToken": token(&get),
            "inProgressJobs": [{"jobId": "timed-out", "executionNumber": 1, "versionNumber": 2}], "queuedJobs": []}),
        );
        assert!(forgets(&acts).is_empty(), "still listed: {acts:?}");
        let (_, d) = published(&acts);
        let acts = reply(
            &mut e,
            2,
            &format!("{P}timed-out/get/rejected"),
            json!({"clientToken": token(&d), "code": code}),
        );
        assert_eq!(forgets(&acts), ["timed-out"], "{code}");
        assert_eq!(e.next_deadline(), None, "{code}: idle");
    }
}

#[test]
fn concurrency_is_one_by_default_and_configurable() {
    for (max, expect_started) in [(1usize, 1usize), (2, 2)] {
        let mut config = EngineConfig::new(THING);
        config.max_jitter = Duration::ZERO;
        config.max_concurrent_jobs = max;
        let mut e = Engine::new(config, 3);
        let (_, get) = published(&e.handle(0, Input::Started));
        let queued: Vec<Value> = ["a", "b", "c"]
            .iter()
            .map(|j| json!({"jobId": j, "executionNumber": 1, "versionNumber": 1}))
            .collect();
        let acts = reply(
            &mut e,
            1,
            &format!("{P}get/accepted"),
            json!({"clientToken": token(&get), "queuedJobs": queued}),
        );
        let mut pending: std::collections::VecDeque<Action> = acts.into();
        let mut started = Vec::new();
        let mut t = 2;
        // Answer every describe and start until the engine stops asking.
        while let Some(action) = pending.pop_front() {
            let Action::Publish { topic, payload } = action else {
                continue;
            };
            let body: Value = serde_json::from_slice(&payload).unwrap();
            let job = topic
                .trim_start_matches(P)
                .split('/')
                .next()
                .unwrap()
                .to_owned();
            let acts = if topic.ends_with("/get") {
                reply(
                    &mut e,
                    t,
                    &format!("{topic}/accepted"),
                    json!({"clientToken": token(&body), "execution": execution(&job, "QUEUED", 1, ours("echo"))}),
                )
            } else if topic.ends_with("/update") {
                started.push(job.clone());
                reply(
                    &mut e,
                    t,
                    &format!("{topic}/accepted"),
                    json!({"clientToken": token(&body), "executionState": {"status": "IN_PROGRESS", "versionNumber": 2}}),
                )
            } else {
                Vec::new()
            };
            pending.extend(acts);
            t += 1;
        }
        assert_eq!(started.len(), expect_started, "max {max}: {started:?}");
    }
}

#[test]
fn random_payloads_on_every_topic_never_panic_or_lose_the_running_job() {
    let mut e = engine(0);
    run_one(&mut e, "job1");
    let mut rng = fastrand::Rng::with_seed(42);
    let topics = [
        "notify-next",
        "notify",
        "get/accepted",
        "get/rejected",
        "start-next/accepted",
        "job1/get/accepted",
        "job1/update/rejected",
        "x/update/accepted",
    ];
    let fragments = [
        r#"{"clientToken":"#,
        r#""ggjh-"#,
        r#"{"execution":{"jobId":"job1","status":"CANCELED"}}"#,
        "null",
        "[",
        "}",
        r#"{"jobs":{"QUEUED":[{"jobId":"z"}]}}"#,
        "\u{0}",
        "é",
    ];
    for t in 0..5_000u64 {
        let topic = format!("{P}{}", topics[rng.usize(0..topics.len())]);
        let payload: String = (0..rng.usize(0..4))
            .map(|_| fragments[rng.usize(0..fragments.len())])
            .collect();
        e.handle(100 + t, msg(&topic, payload.as_bytes()));
    }
    // Whatever arrived, the running job is still tracked and its result still reported.
    let update = finish(&mut e, 10_000, "job1", JobStatus::Succeeded);
    assert_eq!(update["status"], "SUCCEEDED");
}

#[test]
fn an_execution_without_its_document_is_never_judged_foreign() {
    let mut e = engine(0);
    let mut bare = execution("mine", "QUEUED", 1, Value::Null);
    bare.as_object_mut().unwrap().remove("jobDocument");
    // notify-next without the document: look it up instead of guessing.
    let acts = reply(
        &mut e,
        0,
        &format!("{P}notify-next"),
        json!({"execution": bare}),
    );
    let (topic, get) = published(&acts);
    assert_eq!(topic, format!("{P}get"));
    let acts = reply(
        &mut e,
        1,
        &format!("{P}get/accepted"),
        json!({"clientToken": token(&get), "queuedJobs": [{"jobId": "mine", "executionNumber": 1, "versionNumber": 1}]}),
    );
    let (_, d) = published(&acts);
    let acts = reply(
        &mut e,
        2,
        &format!("{P}mine/get/accepted"),
        json!({"clientToken": token(&d), "execution": execution("mine", "QUEUED", 1, ours("echo"))}),
    );
    assert_eq!(
        published(&acts).0,
        format!("{P}mine/update"),
        "started once the document is known"
    );
}

fn progress(e: &mut Engine, now: Millis, job: &str, step: &str) -> Vec<Action> {
    let details: StatusDetails = [("step".to_owned(), step.to_owned())].into();
    e.handle(
        now,
        Input::Progress {
            job_id: job,
            execution_number: 1,
            status_details: details,
        },
    )
}

#[test]
fn step_progress_is_reported_one_at_a_time_with_the_newest_last() {
    let mut e = engine(0);
    run_one(&mut e, "job1");
    let (topic, first) = published(&progress(&mut e, 10, "job1", "1/3"));
    assert_eq!(topic, format!("{P}job1/update"));
    assert_eq!(
        (
            first["status"].as_str(),
            first["statusDetails"]["step"].as_str()
        ),
        (Some("IN_PROGRESS"), Some("1/3"))
    );
    assert_eq!(first["expectedVersion"], 2);
    // Two more steps while the first report is in flight: only the newest is sent after it.
    assert!(progress(&mut e, 11, "job1", "2/3").is_empty());
    assert!(progress(&mut e, 12, "job1", "3/3").is_empty());
    let acts = reply(
        &mut e,
        13,
        &format!("{P}job1/update/accepted"),
        json!({"clientToken": token(&first), "executionState": {"status": "IN_PROGRESS", "versionNumber": 3}}),
    );
    let (_, next) = published(&acts);
    assert_eq!(
        (
            next["statusDetails"]["step"].as_str(),
            next["expectedVersion"].as_i64()
        ),
        (Some("3/3"), Some(3))
    );
    let acts = reply(
        &mut e,
        14,
        &format!("{P}job1/update/accepted"),
        json!({"clientToken": token(&next), "executionState": {"status": "IN_PROGRESS", "versionNumber": 4}}),
    );
    assert!(acts.is_empty());
    // The result goes with the version the progress reports moved to.
    let update = finish(&mut e, 20, "job1", JobStatus::Succeeded);
    assert_eq!(update["expectedVersion"], 4);
}

#[test]
fn a_progress_report_refused_as_terminal_stops_the_job() {
    for (code, state) in [
        ("TerminalStateReached", Value::Null),
        (
            "InvalidStateTransition",
            json!({"status": "CANCELED", "versionNumber": 3}),
        ),
        (
            "VersionMismatch",
            json!({"status": "TIMED_OUT", "versionNumber": 3}),
        ),
        ("ResourceNotFound", Value::Null),
    ] {
        let mut e = engine(0);
        run_one(&mut e, "job1");
        let (_, report) = published(&progress(&mut e, 10, "job1", "1/2"));
        let mut body = json!({"clientToken": token(&report), "code": code});
        if !state.is_null() {
            body["executionState"] = state;
        }
        let acts = reply(&mut e, 11, &format!("{P}job1/update/rejected"), body);
        assert!(
            acts.iter()
                .any(|a| matches!(a, Action::Cancel { job_id, .. } if job_id == "job1")),
            "{code}: {acts:?}"
        );
        assert!(!e.busy(), "{code}");
    }
}

#[test]
fn every_rejection_code_on_a_result_has_a_defined_reaction() {
    // (code, what must follow): resend without details, back off and retry, or done.
    for (code, expect) in [
        ("InvalidJson", "resend-plain"),
        ("InvalidRequest", "resend-plain"),
        ("InvalidTopic", "retry"),
        ("InternalError", "retry"),
        ("RequestThrottled", "retry"),
        ("SomethingNew", "retry"),
        ("ResourceNotFound", "done"),
        ("TerminalStateReached", "done"),
        ("InvalidStateTransition", "done"),
    ] {
        let mut e = engine(0);
        run_one(&mut e, "job1");
        let update = finish(&mut e, 10, "job1", JobStatus::Succeeded);
        let acts = reply(
            &mut e,
            11,
            &format!("{P}job1/update/rejected"),
            json!({"clientToken": token(&update), "code": code}),
        );
        match expect {
            "resend-plain" => {
                let (_, again) = published(&acts);
                assert_eq!(
                    again["statusDetails"]["reason"],
                    "the service rejected this job's result details",
                    "{code}"
                );
            }
            "retry" => {
                assert!(acts.is_empty(), "{code}");
                assert!(e.busy(), "{code}: the result is still to be reported");
                let at = e.next_deadline().unwrap();
                let (topic, again) = published(&e.handle(at, Input::Tick));
                assert_eq!(
                    (topic, again["status"].as_str()),
                    (format!("{P}job1/update"), Some("SUCCEEDED")),
                    "{code}"
                );
            }
            _ => {
                assert!(!e.busy(), "{code}");
                assert_eq!(published(&acts).0, format!("{P}get"), "{code}");
            }
        }
    }
}

/// Starts every job in `jobs` (concurrency permitting), answering describes and starts.
fn run_many(e: &mut Engine, jobs: &[&str]) -> Vec<Action> {
    let (_, get) = published(&e.handle(0, Input::Started));
    let queued: Vec<Value> = jobs
        .iter()
        .map(|j| json!({"jobId": j, "executionNumber": 1, "versionNumber": 1}))
        .collect();
    let mut pending: VecDeque<Action> = reply(
        e,
        1,
        &format!("{P}get/accepted"),
        json!({"clientToken": token(&get), "queuedJobs": queued}),
    )
    .into();
    let mut all = Vec::new();
    while let Some(action) = pending.pop_front() {
        all.push(action.clone());
        let Action::Publish { topic, payload } = action else {
            continue;
        };
        let body: Value = serde_json::from_slice(&payload).unwrap();
        let job = topic
            .trim_start_matches(P)
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let acts = if topic.ends_with("/get") {
            reply(
                e,
                2,
                &format!("{topic}/accepted"),
                json!({"clientToken": token(&body), "execution": execution(&job, "QUEUED", 1, ours("echo"))}),
            )
        } else if topic.ends_with("/update") {
            reply(
                e,
                2,
                &format!("{topic}/accepted"),
                json!({"clientToken": token(&body), "executionState": {"status": "IN_PROGRESS", "versionNumber": 2}}),
            )
        } else {
            Vec::new()
        };
        pending.extend(acts);
    }
    all
}

/// Eight running jobs are checked at once; every check times out at the same moment.
fn simultaneous_timeouts(seed: u64) -> Vec<Action> {
    let mut config = EngineConfig::new(THING);
    config.max_jitter = Duration::ZERO;
    config.max_concurrent_jobs = 8;
    config.base_backoff = Duration::from_millis(1);
    let mut e = Engine::new(config, seed);
    let jobs = ["j1", "j2", "j3", "j4", "j5", "j6", "j7", "j8"];
    let mut all = run_many(&mut e, &jobs);
    assert_eq!(
        all.iter().filter(|a| matches!(a, Action::Run(_))).count(),
        8
    );
    all.extend(reply(
        &mut e,
        10,
        &format!("{P}notify-next"),
        json!({"timestamp": 10}),
    ));
    let timeout = e.next_deadline().unwrap();
    all.extend(e.handle(timeout, Input::Tick));
    let retry = e.next_deadline().unwrap();
    all.extend(e.handle(retry, Input::Tick));
    all
}

fn described(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish { topic, .. }
                if topic.ends_with("/get") && topic != &format!("{P}get") =>
            {
                Some(
                    topic
                        .trim_start_matches(P)
                        .trim_end_matches("/get")
                        .to_owned(),
                )
            }
            _ => None,
        })
        .collect()
}

#[test]
fn simultaneous_timeouts_retry_in_the_order_the_requests_were_sent() {
    let first = simultaneous_timeouts(11);
    assert_eq!(first, simultaneous_timeouts(11), "same seed, same actions");
    let checks = described(&first);
    // 8 describes while starting, 8 checks, 8 retried checks.
    let retried = &checks[checks.len() - 8..];
    assert_eq!(retried, &checks[checks.len() - 16..checks.len() - 8]);
    assert_eq!(retried, ["j1", "j2", "j3", "j4", "j5", "j6", "j7", "j8"]);
}

#[test]
fn settled_journal_entries_are_forgotten_in_a_defined_order() {
    let mut e = engine(0);
    let names: Vec<String> = (0..20)
        .map(|i| format!("old-{:02}", (i * 7) % 20))
        .collect();
    for name in &names {
        recover(
            &mut e,
            name,
            1,
            JobOutcome {
                status: JobStatus::Failed,
                status_details: StatusDetails::new(),
            },
        );
    }
    let (_, get) = published(&e.handle(0, Input::Started));
    let acts = reply(
        &mut e,
        1,
        &format!("{P}get/accepted"),
        json!({"clientToken": token(&get)}),
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(forgets(&acts), sorted);
}

/// A describe answer for `job` whose document is `{<members>, "deep": [[[...]]]}`, nested far
/// deeper than the JSON parser's recursion limit.
fn deep_describe(token: &str, job: &str, members: &str) -> Vec<u8> {
    let deep = format!("{}1{}", "[".repeat(130), "]".repeat(130));
    format!(
        r#"{{"clientToken": "{token}", "execution": {{"jobId": "{job}", "status": "QUEUED", "versionNumber": 1, "executionNumber": 1, "jobDocument": {{{members}, "deep": {deep}}}}}}}"#
    )
    .into_bytes()
}

#[test]
fn an_undecodable_document_that_may_be_ours_is_rejected_and_a_foreign_one_left_alone() {
    let mut e = engine(0);
    let (_, get) = published(&e.handle(0, Input::Started));
    let acts = reply(
        &mut e,
        1,
        &format!("{P}get/accepted"),
        json!({"clientToken": token(&get), "queuedJobs": [
            {"jobId": "deploy", "executionNumber": 1, "versionNumber": 1},
            {"jobId": "deep", "executionNumber": 1, "versionNumber": 1}]}),
    );
    let (_, d1) = published(&acts);
    let topic = format!("{P}deploy/get/accepted");
    let body = deep_describe(&token(&d1), "deploy", r#""deploymentId": "d1""#);
    let acts = e.handle(2, msg(&topic, &body));
    // The foreign one is skipped: the next candidate is described, nothing is updated.
    let (topic, d2) = published(&acts);
    assert_eq!(topic, format!("{P}deep/get"));
    let body = deep_describe(&token(&d2), "deep", r#""operation": "echo""#);
    let acts = e.handle(3, msg(&format!("{P}deep/get/accepted"), &body));
    let (topic, update) = published(&acts);
    assert_eq!(topic, format!("{P}deep/update"));
    assert_eq!(update["status"], "REJECTED");
    assert_eq!(update["expectedVersion"], 1);
    let reason = update["statusDetails"]["reason"].as_str().unwrap();
    assert!(reason.contains("cannot be parsed"), "{reason}");
}

/// A scripted Jobs service for one thing: `jobs` queued (documents of ours), every request
/// answered RequestThrottled until `throttle` answers have been given. Returns the time of
/// the last throttled answer and the time each job was run.
fn throttling_storm(config: EngineConfig, jobs: usize, throttle: usize) -> (Millis, Vec<Millis>) {
    let mut e = Engine::new(config, 5);
    let mut versions: BTreeMap<String, (String, i64)> = (0..jobs)
        .map(|i| (format!("job{i}"), ("QUEUED".to_owned(), 1)))
        .collect();
    let mut throttled = 0;
    let mut recovered_at = 0;
    let mut runs = Vec::new();
    let mut now = 0;
    let mut pending: VecDeque<Action> = e.handle(now, Input::Started).into();
    for _ in 0..100_000 {
        let Some(action) = pending.pop_front() else {
            match e.next_deadline() {
                Some(at) => {
                    now = now.max(at);
                    pending.extend(e.handle(now, Input::Tick));
                    continue;
                }
                None => break,
            }
        };
        let (topic, payload) = match action {
            Action::Publish { topic, payload } => (topic, payload),
            Action::Run(run) => {
                runs.push(now);
                let outcome = JobOutcome {
                    status: JobStatus::Succeeded,
                    status_details: StatusDetails::new(),
                };
                pending.extend(e.handle(
                    now,
                    Input::JobFinished {
                        job_id: &run.job_id,
                        execution_number: 1,
                        outcome,
                    },
                ));
                continue;
            }
            _ => continue,
        };
        let body: Value = serde_json::from_slice(&payload).unwrap();
        let t = token(&body);
        if throttled < throttle {
            throttled += 1;
            recovered_at = now;
            let answer = json!({"clientToken": t, "code": "RequestThrottled", "message": "rate"});
            pending.extend(reply(&mut e, now, &format!("{topic}/rejected"), answer));
            continue;
        }
        let rest = topic.trim_start_matches(P);
        let answer = if rest == "get" {
            let queued: Vec<Value> = versions
                .iter()
                .filter(|(_, (s, _))| s == "QUEUED" || s == "IN_PROGRESS")
                .map(|(j, (_, v))| json!({"jobId": j, "executionNumber": 1, "versionNumber": v}))
                .collect();
            (
                format!("{topic}/accepted"),
                json!({"clientToken": t, "queuedJobs": queued}),
            )
        } else {
            let job = rest.split('/').next().unwrap().to_owned();
            let (status, version) = versions[&job].clone();
            if rest.ends_with("/get") {
                (
                    format!("{topic}/accepted"),
                    json!({"clientToken": t, "execution": execution(&job, &status, version, ours("echo"))}),
                )
            } else {
                let next = body["status"].as_str().unwrap().to_owned();
                versions.insert(job, (next.clone(), version + 1));
                (
                    format!("{topic}/accepted"),
                    json!({"clientToken": t, "executionState": {"status": next, "versionNumber": version + 1}}),
                )
            }
        };
        pending.extend(reply(&mut e, now, &answer.0, answer.1));
    }
    (recovered_at, runs)
}

#[test]
fn after_a_throttling_storm_queued_jobs_start_within_a_minute_of_recovery() {
    // The production defaults: no-response back-off up to 300 s, throttling back-off 30 s.
    let (recovered_at, runs) = throttling_storm(EngineConfig::new(THING), 5, 20);
    assert_eq!(runs.len(), 5, "{runs:?}");
    for run in &runs {
        assert!(
            *run <= recovered_at + 60_000,
            "job run at {run} ms, service recovered at {recovered_at} ms"
        );
    }
    // The storm itself was not hammered: 20 answers took at least a few minutes.
    assert!(recovered_at >= 60_000, "{recovered_at}");
}

/// Log lines written while `f` runs.
fn logs_of<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
    (result, text)
}

#[test]
fn a_full_list_of_foreign_jobs_is_warned_about() {
    const HIDDEN: &str = "all of them are foreign";
    let deployments: Vec<Value> = (0..10)
        .map(|i| json!({"jobId": format!("deploy-{i}"), "executionNumber": 1, "versionNumber": 1}))
        .collect();
    let walk = |e: &mut Engine, list: &[Value]| {
        let (_, get) = published(&e.handle(0, Input::Started));
        let mut acts = reply(
            e,
            1,
            &format!("{P}get/accepted"),
            json!({"clientToken": token(&get), "queuedJobs": list}),
        );
        while let Some(Action::Publish { topic, payload }) = acts.first().cloned() {
            let body: Value = serde_json::from_slice(&payload).unwrap();
            let job = topic
                .trim_start_matches(P)
                .trim_end_matches("/get")
                .to_owned();
            let doc = json!({"deploymentId": job});
            acts = reply(
                e,
                2,
                &format!("{topic}/accepted"),
                json!({"clientToken": token(&body), "execution": execution(&job, "QUEUED", 1, doc)}),
            );
        }
    };
    let (_, logs) = logs_of(|| walk(&mut engine(0), &deployments));
    assert!(logs.contains(HIDDEN), "{logs}");
    // Nine foreign jobs: the list is not full, nothing can hide behind them.
    let (_, logs) = logs_of(|| walk(&mut engine(0), &deployments[..9]));
    assert!(!logs.contains(HIDDEN), "{logs}");
    // notify lists at most 10 as well.
    let mut e = engine(0);
    walk(&mut e, &deployments);
    let notify = json!({"timestamp": 3, "jobs": {"QUEUED": deployments}});
    let (_, logs) = logs_of(|| reply(&mut e, 3, &format!("{P}notify"), notify));
    assert!(logs.contains(HIDDEN), "{logs}");
}

#[test]
fn a_connected_status_queries_like_a_reconnect_message() {
    let mut e = engine(3000);
    assert!(e
        .handle(0, Input::IotConnection { connected: false })
        .is_empty());
    assert_eq!(e.next_deadline(), None, "disconnected: nothing to do");
    for t in 0..3 {
        assert!(e
            .handle(t, Input::IotConnection { connected: true })
            .is_empty());
        assert!(e.handle(t, msg("reconnect/dev-1", b"{}")).is_empty());
    }
    let at = e.next_deadline().expect("a jittered query");
    assert!(at <= 3000, "{at}");
    let mut publishes = Vec::new();
    for t in 0..=3000 {
        publishes.extend(e.handle(t, Input::Tick));
    }
    assert_eq!(
        published(&publishes).0,
        format!("{P}get"),
        "one query for the burst"
    );
}

/// A silence found when requests time out asks for a query at once; that query goes out in
/// the same call, so the engine never leaves a deadline that has already passed (found by the
/// `jobs_responses` fuzz target).
#[test]
fn a_silence_found_at_a_timeout_queries_in_the_same_tick() {
    let mut config = EngineConfig::new(THING);
    config.max_jitter = Duration::from_millis(16_899);
    config.response_timeout = Duration::from_millis(4_177);
    config.max_concurrent_jobs = 2;
    let mut e = Engine::new(config, 13_903_686_705_562_789_157);
    let mut now = 1_000_000;
    e.handle(now, Input::Started);
    let bad = json!({"version": "1.0", "steps": [
        {"action": {"type": "runHandler", "input": {"handler": "../x"}}}]});
    for (job, doc) in [("ours-echo", ours("echo")), ("bad-steps", bad)] {
        let mut execution = execution(job, "QUEUED", 27, doc);
        execution["executionNumber"] = json!(2);
        reply(
            &mut e,
            now,
            &format!("{P}notify-next"),
            json!({"timestamp": 1, "execution": execution}),
        );
    }
    // Nothing answers: every request times out until the silence is noticed.
    let mut resubscribed = false;
    for _ in 0..6 {
        now = now.max(e.next_deadline().expect("requests are outstanding"));
        let actions = e.handle(now, Input::Tick);
        resubscribed |= actions.iter().any(|a| matches!(a, Action::Resubscribe));
        let deadline = e.next_deadline().expect("requests are outstanding");
        assert!(deadline > now, "deadline {deadline} is not after now {now}");
    }
    assert!(resubscribed, "the silence was never noticed");
}

#[test]
fn a_reconnect_sends_a_result_whose_answer_went_missing_without_waiting_out_its_back_off() {
    for signal in ["reconnect message", "CONNECTED"] {
        let mut config = EngineConfig::new(THING);
        config.max_jitter = Duration::ZERO;
        config.response_timeout = Duration::from_secs(10);
        config.base_backoff = Duration::from_secs(60);
        config.max_backoff = Duration::from_secs(300);
        let mut e = Engine::new(config, 7);
        run_one(&mut e, "j");
        let result = finish(&mut e, 10, "j", JobStatus::Succeeded);
        // No answer: the result waits a minute or more before its retry.
        e.handle(10_010, Input::Tick);
        let retry_at = e.next_deadline().unwrap();
        assert!(retry_at >= 70_010, "{signal}: {retry_at}");
        let acts = match signal {
            "reconnect message" => e.handle(
                20_000,
                msg(&format!("reconnect/{THING}"), br#"{"clientId":"core-1"}"#),
            ),
            _ => e.handle(20_000, Input::IotConnection { connected: true }),
        };
        let updates: Vec<Value> = acts
            .iter()
            .filter_map(|a| match a {
                Action::Publish { topic, payload } if *topic == format!("{P}j/update") => {
                    serde_json::from_slice(payload).ok()
                }
                _ => None,
            })
            .collect();
        assert_eq!(updates.len(), 1, "{signal}: {acts:?}");
        assert_eq!(updates[0]["status"], result["status"], "{signal}");
        assert_ne!(
            token(&updates[0]),
            token(&result),
            "{signal}: a fresh token"
        );
    }
}
