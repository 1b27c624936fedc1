//! Inputs the fuzz targets (fuzz/) found breaking a promise, each kept as a test of the public
//! API so that the fix stays in place. The raw fuzzer inputs are in fuzz/findings/.

use greengrass_jobs_handler::config::settings;
use greengrass_jobs_handler::jobs::document::{classify, JobDocument, Ownership};
use greengrass_jobs_handler::topic;
use serde_json::{json, Value};

/// A thing name outside AWS IoT's pattern `[a-zA-Z0-9:_-]+` built the Jobs topics and the
/// default reconnect topic from it: `t1a/+` gave `reconnect/t1a/+` (not a topic name) and
/// `$aws/things/t1a/+/jobs/...` subscriptions that match other things' jobs.
#[test]
fn a_thing_name_outside_the_service_pattern_is_refused() {
    for bad in [
        "t1a/+",
        "t{iot:thingName}1",
        "a#",
        "two words",
        &"x".repeat(129),
    ] {
        let s = settings(&json!({"thingName": bad}), Some("core-1")).expect("settings");
        assert_eq!(s.engine.thing_name, "core-1", "{bad:?} was used");
        assert_eq!(s.engine.reconnect_topic, "reconnect/core-1");
        assert!(topic::validate_name(&s.engine.reconnect_topic).is_ok());
        assert!(
            settings(&json!({}), Some(bad)).is_err(),
            "{bad:?} from the nucleus was used"
        );
    }
    let s = settings(&json!({"thingName": "Core_1:a-b"}), None).expect("settings");
    assert_eq!(s.engine.thing_name, "Core_1:a-b");
}

/// A number in a job document (or a configuration value) was read one ULP away from its
/// value: serde_json's default float parsing is not correctly rounded, so
/// `-1.8377491590808977e-175` became `-1.8377491590808975e-175` and handlers and workers got
/// another number than the job gave.
#[test]
fn numbers_in_job_documents_reach_the_work_unchanged() {
    for text in [
        "-1.8377491590808977e-175",
        "2.2250738585072011e-308",
        "0.30000000000000004",
    ] {
        let document = format!(r#"{{"operation":"echo","x":{text}}}"#);
        let value: Value = serde_json::from_str(&document).expect("JSON");
        let Ownership::Ours(JobDocument::Operation { arguments, .. }) = classify(Some(&value))
        else {
            panic!("ours");
        };
        let exact: f64 = text.parse().expect("a float");
        assert_eq!(
            arguments["x"].as_f64().map(f64::to_bits),
            Some(exact.to_bits()),
            "{text}"
        );
    }
}

/// `safetyPollSeconds` had no upper bound: 184467440737095516150 became u64::MAX seconds, and
/// the engine's next poll time `now + period` overflowed (a panic in debug builds, a poll at
/// once and forever after in release builds).
#[test]
fn a_huge_safety_poll_period_is_capped() {
    use greengrass_jobs_handler::jobs::engine::{Engine, Input};
    let s = settings(
        &serde_json::from_str(r#"{"safetyPollSeconds": 184467440737095516150}"#).expect("JSON"),
        Some("core-1"),
    )
    .expect("settings");
    let period = s.engine.safety_poll.expect("a safety poll");
    assert!(
        period <= std::time::Duration::from_secs(7 * 86_400),
        "{period:?}"
    );
    let mut engine = Engine::new(s.engine, 1);
    engine.handle(5_000, Input::Started);
    let deadline = engine.next_deadline().expect("a query is due");
    engine.handle(deadline, Input::Tick);
}
