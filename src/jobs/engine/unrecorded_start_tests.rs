//! Engine tests for starts that go out before their journal record (the journal has an
//! installation id): the order of the actions, and what a later process does with a start of
//! an earlier one that the journal never recorded.

use super::*;
use crate::jobs::messages::JobStatus;
use serde_json::{json, Value};

const P: &str = "$aws/things/dev-1/jobs/";
const INSTALLATION: &str = "5f0c2a9e13d4b786";

fn engine(seed: u64, installation: &str, intact: bool) -> Engine {
    let mut config = EngineConfig::new("dev-1");
    config.max_jitter = Duration::ZERO;
    let mut e = Engine::new(config, seed);
    let acts = e.handle(
        0,
        Input::Journal {
            installation,
            intact,
        },
    );
    assert!(acts.is_empty(), "{acts:?}");
    e
}

fn publishes(actions: &[Action]) -> Vec<(String, Value)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish { topic, payload } => {
                Some((topic.clone(), serde_json::from_slice(payload).unwrap()))
            }
            _ => None,
        })
        .collect()
}

fn only_publish(actions: &[Action]) -> (String, Value) {
    let mut p = publishes(actions);
    assert_eq!(p.len(), 1, "{actions:?}");
    p.remove(0)
}

fn reply(e: &mut Engine, now: Millis, topic: &str, body: Value) -> Vec<Action> {
    let bytes = serde_json::to_vec(&body).unwrap();
    e.handle(
        now,
        Input::Message {
            topic,
            payload: &bytes,
        },
    )
}

fn token(v: &Value) -> String {
    v["clientToken"].as_str().unwrap().to_owned()
}

/// Started → GetPending answered with `job` in `status` → its describe, answered with the
/// execution at `version` and `details`: the actions the describe's answer gives.
fn describe_answered(
    e: &mut Engine,
    job: &str,
    status: &str,
    version: i64,
    details: Value,
) -> Vec<Action> {
    let (_, get) = only_publish(&e.handle(0, Input::Started));
    let summary =
        json!([{"jobId": job, "executionNumber": 1, "versionNumber": version, "queuedAt": 100}]);
    let (in_progress, queued) = if status == "IN_PROGRESS" {
        (summary, json!([]))
    } else {
        (json!([]), summary)
    };
    let acts = reply(
        e,
        1,
        &format!("{P}get/accepted"),
        json!({"clientToken": token(&get), "inProgressJobs": in_progress, "queuedJobs": queued}),
    );
    let (topic, describe) = only_publish(&acts);
    assert_eq!(topic, format!("{P}{job}/get"));
    reply(
        e,
        2,
        &format!("{P}{job}/get/accepted"),
        json!({"clientToken": token(&describe), "execution": {
            "jobId": job, "status": status, "versionNumber": version, "executionNumber": 1,
            "queuedAt": 100, "lastUpdatedAt": 100, "statusDetails": details,
            "jobDocument": {"operation": "add", "a": 2, "b": 3}}}),
    )
}

/// The marker of a start that a process of `installation` sent for a QUEUED `j1` before it
/// ended (its record never written).
fn marker_of_an_ended_process(installation: &str) -> String {
    let mut earlier = engine(11, installation, true);
    starting_marker(&describe_answered(
        &mut earlier,
        "j1",
        "QUEUED",
        1,
        json!({}),
    ))
    .expect("the start is recorded")
}

/// What a new process of [`INSTALLATION`] does when `j1` is IN_PROGRESS with `marker`.
fn in_progress_with(marker: &str, intact: bool) -> (Engine, Vec<Action>) {
    let mut e = engine(12, INSTALLATION, intact);
    let acts = describe_answered(
        &mut e,
        "j1",
        "IN_PROGRESS",
        2,
        json!({START_MARKER_KEY: marker}),
    );
    (e, acts)
}

fn starting_marker(actions: &[Action]) -> Option<String> {
    actions.iter().find_map(|a| match a {
        Action::Record(Record::Starting { marker, .. }) => Some(marker.clone()),
        _ => None,
    })
}

#[test]
fn with_an_installation_id_the_start_goes_out_before_its_record_and_names_the_installation() {
    let mut e = engine(7, INSTALLATION, true);
    let acts = describe_answered(&mut e, "j1", "QUEUED", 1, json!({}));
    assert!(
        matches!(
            &acts[..],
            [
                Action::Publish { .. },
                Action::Record(Record::Starting { .. })
            ]
        ),
        "{acts:?}"
    );
    let (topic, start) = only_publish(&acts);
    assert_eq!(topic, format!("{P}j1/update"));
    let marker = starting_marker(&acts).unwrap();
    assert!(marker.starts_with(&format!("{INSTALLATION}/")), "{marker}");
    assert_eq!(start["statusDetails"][START_MARKER_KEY], marker.as_str());

    // Without one, the record comes first (only it tells a later process the start was its own).
    let mut e = engine(7, "", true);
    let acts = describe_answered(&mut e, "j1", "QUEUED", 1, json!({}));
    assert!(
        matches!(
            &acts[..],
            [
                Action::Record(Record::Starting { .. }),
                Action::Publish { .. }
            ]
        ),
        "{acts:?}"
    );
}

#[test]
fn a_start_of_an_earlier_process_that_the_journal_never_recorded_is_claimed_again_and_run() {
    // The earlier process (another seed, the same installation) sent its start and ended
    // before the record reached the disk.
    let mut earlier = engine(11, INSTALLATION, true);
    let earlier_marker = starting_marker(&describe_answered(
        &mut earlier,
        "j1",
        "QUEUED",
        1,
        json!({}),
    ))
    .unwrap();

    let mut e = engine(12, INSTALLATION, true);
    let acts = describe_answered(
        &mut e,
        "j1",
        "IN_PROGRESS",
        2,
        json!({START_MARKER_KEY: earlier_marker}),
    );
    let (topic, claim) = only_publish(&acts);
    assert_eq!(topic, format!("{P}j1/update"));
    assert_eq!(claim["status"], "IN_PROGRESS");
    // Conditional on the version it was seen at: a view from before a later change fails.
    assert_eq!(claim["expectedVersion"], 2);
    let marker = starting_marker(&acts).expect("the claim is recorded before the job runs");
    assert_ne!(marker, earlier_marker);
    assert!(marker.starts_with(&format!("{INSTALLATION}/")));
    let acts = reply(
        &mut e,
        3,
        &format!("{P}j1/update/accepted"),
        json!({"clientToken": token(&claim), "executionState": {"status": "IN_PROGRESS", "versionNumber": 3}}),
    );
    assert!(
        matches!(&acts[..], [Action::Run(run)] if run.job_id == "j1"),
        "{acts:?}"
    );
}

#[test]
fn after_a_damaged_journal_such_a_start_is_reported_failed_never_run_twice() {
    let mut earlier = engine(11, INSTALLATION, true);
    let earlier_marker = starting_marker(&describe_answered(
        &mut earlier,
        "j1",
        "QUEUED",
        1,
        json!({}),
    ))
    .unwrap();
    let mut e = engine(12, INSTALLATION, false);
    let acts = describe_answered(
        &mut e,
        "j1",
        "IN_PROGRESS",
        2,
        json!({START_MARKER_KEY: earlier_marker}),
    );
    assert!(!acts.iter().any(|a| matches!(a, Action::Run(_))));
    let (topic, report) = only_publish(&acts);
    assert_eq!(topic, format!("{P}j1/update"));
    assert_eq!(report["status"], JobStatus::Failed.as_str());
    let reason = report["statusDetails"]["reason"].as_str().unwrap();
    assert!(reason.contains("journal was damaged"), "{reason}");
}

#[test]
fn a_start_of_another_installation_is_left_to_its_owner() {
    let other_marker = marker_of_an_ended_process("0123456789abcdef");
    for intact in [true, false] {
        let (_, acts) = in_progress_with(&other_marker, intact);
        assert!(publishes(&acts).is_empty(), "{acts:?}");
        assert!(!acts.iter().any(|a| matches!(a, Action::Run(_))));
    }
}
