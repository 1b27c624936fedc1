//! Target `config`: the component configuration ([`settings`]) from arbitrary JSON, and the
//! engine running with what it produced.
//!
//! Input: JSON text; its first byte also decides whether the nucleus gave a thing name.
//! Properties:
//! - the only error is a missing thing name, and only when neither the configuration nor the
//!   nucleus gives one;
//! - every setting is within its documented range (jitter ≤ 1 h, response timeout 100 ms to
//!   10 min, back-off ≥ 1 s, safety poll off or ≥ 60 s, 1 to 16 concurrent jobs, step and job
//!   limits 1 s to 7 days), the reconnect topic is a valid topic name without `{iot:thingName}`;
//! - an engine built from those settings starts, schedules and retries without overflowing its
//!   clock arithmetic, and reconfiguring it with them changes nothing it must not change.

use greengrass_jobs_handler::config::settings;
use greengrass_jobs_handler::jobs::engine::{Action, Engine, Input};
use greengrass_jobs_handler::topic;
use serde_json::Value;
use std::time::Duration;

pub fn check(data: &[u8]) {
    let Some((&first, _)) = data.split_first() else {
        return;
    };
    let Ok(config) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let env_thing = (first & 1 == 0).then_some("core-1");
    let Ok(s) = settings(&config, env_thing) else {
        assert!(
            env_thing.is_none(),
            "settings failed although the nucleus gave a thing name"
        );
        return;
    };
    let e = &s.engine;
    assert!(!e.thing_name.is_empty());
    assert!(e.max_jitter <= Duration::from_secs(3600));
    assert!(e.response_timeout >= Duration::from_millis(100));
    assert!(e.response_timeout <= Duration::from_secs(600));
    assert!(e.max_backoff >= Duration::from_secs(1));
    assert!(e.safety_poll.is_none_or(|p| p >= Duration::from_secs(60)));
    assert!((1..=16).contains(&e.max_concurrent_jobs));
    assert!(e
        .step_timeout_minutes
        .is_none_or(|m| (1..=10_080).contains(&m)));
    assert!(
        topic::validate_name(&e.reconnect_topic).is_ok(),
        "{:?}",
        e.reconnect_topic
    );
    assert!(!e.reconnect_topic.contains("{iot:thingName}"));
    let week = Duration::from_secs(7 * 86_400);
    for limit in [
        s.exec.limits.step_timeout,
        s.exec.limits.job_timeout,
        s.exec.reboot_wait,
    ] {
        assert!(
            limit >= Duration::from_secs(1) && limit <= week,
            "{limit:?}"
        );
    }
    if let Some(b) = &s.bridge {
        assert!(!b.operations.is_empty());
        assert!(!b.reply_topic.contains("{iot:thingName}"));
    }

    // The engine with these settings: start, let the query and a few retries come due.
    let mut engine = Engine::new(e.clone(), u64::from(first));
    let mut now = 5_000;
    let mut requests = 0;
    let mut actions = engine.handle(now, Input::Started);
    for _ in 0..6 {
        requests += actions
            .iter()
            .filter(|a| matches!(a, Action::Publish { .. }))
            .count();
        let Some(deadline) = engine.next_deadline() else {
            break;
        };
        assert!(deadline > now, "deadline {deadline} not after {now}");
        now = deadline;
        actions = engine.handle(now, Input::Tick);
    }
    assert!(requests >= 1, "the engine never queried");
    assert!(
        !engine
            .handle(now, Input::Reconfigure(e.clone()))
            .iter()
            .any(|a| matches!(a, Action::Subscribe { .. })),
        "same settings changed the topic"
    );
    assert_eq!(engine.config().thing_name, e.thing_name);
}
