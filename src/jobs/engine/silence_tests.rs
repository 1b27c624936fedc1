//! Engine tests in virtual time for answers that never come: a description too large for the
//! core, and silence (subscriptions that died, or a core that is offline).

use super::*;
use crate::jobs::messages::JobStatus;
use serde_json::{json, Value};

const P: &str = "$aws/things/dev-1/jobs/";
const HOUR: Millis = 3_600_000;

fn engine() -> Engine {
    let mut config = EngineConfig::new("dev-1");
    config.max_jitter = Duration::ZERO;
    Engine::new(config, 3)
}

/// Every publish in `actions`: (topic, payload as JSON).
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

/// Ticks at every deadline up to `until`; returns (time, action) for everything done.
fn run_until(e: &mut Engine, until: Millis) -> Vec<(Millis, Action)> {
    let mut done = Vec::new();
    while let Some(at) = e.next_deadline().filter(|at| *at <= until) {
        done.extend(e.handle(at, Input::Tick).into_iter().map(|a| (at, a)));
    }
    done
}

fn list(token: &str, jobs: &[&str]) -> Value {
    let queued: Vec<Value> = jobs
        .iter()
        .map(|j| json!({"jobId": j, "executionNumber": 1, "versionNumber": 1, "queuedAt": 1}))
        .collect();
    json!({"clientToken": token, "inProgressJobs": [], "queuedJobs": queued})
}

fn execution(job: &str) -> Value {
    json!({"jobId": job, "status": "QUEUED", "versionNumber": 1, "executionNumber": 1,
           "queuedAt": 1, "lastUpdatedAt": 1, "jobDocument": {"operation": "echo"}})
}

/// Starts the engine and answers its query with `jobs`; returns the first describe.
fn listed(e: &mut Engine, jobs: &[&str]) -> (String, Value) {
    let get = publishes(&e.handle(0, Input::Started));
    let token = get[0].1["clientToken"].as_str().unwrap().to_owned();
    let acts = reply(e, 10, &format!("{P}get/accepted"), list(&token, jobs));
    publishes(&acts).remove(0)
}

#[test]
fn a_description_too_large_for_the_core_is_set_aside_for_an_hour_and_the_walk_goes_on() {
    let mut config = EngineConfig::new("dev-1");
    config.max_jitter = Duration::ZERO;
    // Room for `big` while `small` is still being started.
    config.max_concurrent_jobs = 2;
    let mut e = Engine::new(config, 3);
    let (topic, first) = listed(&mut e, &["big", "small"]);
    assert_eq!(topic, format!("{P}big/get"));
    assert_eq!(first["includeJobDocument"], true);
    // The describe with the document never arrives; each retry goes out, three in all, then
    // one without the document.
    let mut sent = vec![first];
    let mut now = 10;
    let probe = loop {
        let at = e.next_deadline().unwrap();
        assert!(at < now + 60_000, "retries stay fast until the probe");
        now = at;
        let out = publishes(&e.handle(now, Input::Tick));
        if let Some((t, body)) = out.into_iter().next() {
            assert_eq!(t, format!("{P}big/get"));
            if body["includeJobDocument"] == false {
                break body;
            }
            sent.push(body);
        }
    };
    assert_eq!(sent.len(), 3, "three describes with the document: {sent:?}");
    // A small answer arrives: the link works, the full answer is too large.
    let token = probe["clientToken"].as_str().unwrap();
    let small_answer = json!({"clientToken": token, "execution": {"jobId": "big", "status": "QUEUED",
        "versionNumber": 1, "executionNumber": 1, "queuedAt": 1, "lastUpdatedAt": 1}});
    let acts = reply(
        &mut e,
        now + 5,
        &format!("{P}big/get/accepted"),
        small_answer,
    );
    let (topic, _) = publishes(&acts).remove(0);
    assert_eq!(topic, format!("{P}small/get"), "the walk goes on");
    assert_eq!(e.oversize_warned.len(), 1);
    // Nothing about `big` for an hour; `small` runs meanwhile.
    let (_, describe) = publishes(&acts).remove(0);
    let token = describe["clientToken"].as_str().unwrap();
    let acts = reply(
        &mut e,
        now + 6,
        &format!("{P}small/get/accepted"),
        json!({"clientToken": token, "execution": execution("small")}),
    );
    assert!(publishes(&acts)[0].0.ends_with("small/update"));
    let later = run_until(&mut e, now + HOUR - 1_000);
    assert!(
        later
            .iter()
            .all(|(_, a)| !matches!(a, Action::Publish { topic, .. } if topic.contains("big"))),
        "{later:?}"
    );
    // An hour on, a query looks again; `big` is described again.
    let (at, token) = loop {
        let at = e.next_deadline().expect("a wake-up to look again");
        let out = publishes(&e.handle(at, Input::Tick));
        if let Some((_, body)) = out.into_iter().find(|(t, _)| t == &format!("{P}get")) {
            assert!(at >= now + 5 + HOUR, "not before the hour: {at}");
            break (at, body["clientToken"].as_str().unwrap().to_owned());
        }
    };
    let acts = reply(
        &mut e,
        at + 5,
        &format!("{P}get/accepted"),
        list(&token, &["big"]),
    );
    assert!(
        publishes(&acts)
            .iter()
            .any(|(t, _)| t == &format!("{P}big/get")),
        "{acts:?}"
    );
}

#[test]
fn a_probe_that_is_not_answered_either_is_silence_not_size() {
    let mut e = engine();
    listed(&mut e, &["big"]);
    let done = run_until(&mut e, 120_000);
    let probes = done
        .iter()
        .filter(|(_, a)| {
            matches!(a, Action::Publish { payload, .. }
            if serde_json::from_slice::<Value>(payload).unwrap()["includeJobDocument"] == false)
        })
        .count();
    assert!(probes >= 1);
    assert!(
        e.set_aside.is_empty(),
        "nothing set aside without an answer"
    );
    // Describes with the document go on being retried.
    let describes_after_probe = done
        .iter()
        .skip_while(|(_, a)| {
            !matches!(a, Action::Publish { payload, .. }
            if serde_json::from_slice::<Value>(payload).unwrap()["includeJobDocument"] == false)
        })
        .filter(|(_, a)| {
            matches!(a, Action::Publish { payload, .. }
            if serde_json::from_slice::<Value>(payload).unwrap()["includeJobDocument"] == true)
        })
        .count();
    assert!(describes_after_probe >= 1, "{done:?}");
}

fn resubscribes(done: &[(Millis, Action)]) -> Vec<Millis> {
    done.iter()
        .filter(|(_, a)| matches!(a, Action::Resubscribe))
        .map(|(t, _)| *t)
        .collect()
}

fn exits(done: &[(Millis, Action)]) -> Vec<Millis> {
    done.iter()
        .filter(|(_, a)| matches!(a, Action::Exit { .. }))
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn silent_subscriptions_are_recreated_then_the_process_exits_after_an_hour_of_silence() {
    let mut e = engine();
    e.handle(0, Input::IotConnection { connected: true });
    e.handle(0, Input::Started);
    let done = run_until(&mut e, 3 * HOUR);
    let resub = resubscribes(&done);
    assert_eq!(resub.len(), 1, "once per silence: {resub:?}");
    assert!(
        resub[0] < 120_000,
        "four silent requests take well under two minutes: {resub:?}"
    );
    let exit = exits(&done);
    assert!(!exit.is_empty(), "an exit after resubscribing did not help");
    assert!(exit[0] >= HOUR, "not before an hour of silence: {exit:?}");
    assert!(exit[0] < HOUR + 600_000, "soon after the hour: {exit:?}");
}

#[test]
fn a_message_after_resubscribing_ends_the_silence() {
    let mut e = engine();
    e.handle(0, Input::IotConnection { connected: true });
    e.handle(0, Input::Started);
    let done = run_until(&mut e, 120_000);
    let at = resubscribes(&done)[0];
    // The resubscribed topics deliver: the reconnect message, say.
    reply(&mut e, at + 1, "reconnect/dev-1", json!({}));
    let done = run_until(&mut e, 4 * HOUR);
    // A new silence starts at the message: one more resubscribe, the exit an hour after it.
    assert_eq!(resubscribes(&done).len(), 1, "{:?}", resubscribes(&done));
    let exit = exits(&done);
    assert!(
        exit.first().is_some_and(|t| *t >= at + 1 + HOUR),
        "{exit:?}"
    );
}

#[test]
fn an_offline_core_never_resubscribes_or_exits() {
    let mut e = engine();
    e.handle(0, Input::IotConnection { connected: false });
    e.handle(0, Input::Started);
    let done = run_until(&mut e, 48 * HOUR);
    assert!(!publishes(&done.iter().map(|(_, a)| a.clone()).collect::<Vec<_>>()).is_empty());
    assert!(resubscribes(&done).is_empty(), "{:?}", resubscribes(&done));
    assert!(exits(&done).is_empty());
}

#[test]
fn without_connection_status_the_exit_waits_six_hours_of_silence() {
    let mut e = engine();
    e.handle(0, Input::IotConnectionUnknown);
    e.handle(0, Input::Started);
    let done = run_until(&mut e, 12 * HOUR);
    assert_eq!(resubscribes(&done).len(), 1);
    let exit = exits(&done);
    assert!(!exit.is_empty());
    assert!(exit[0] >= 6 * HOUR, "{exit:?}");
}

#[test]
fn silence_while_disconnected_does_not_count_once_the_connection_is_back() {
    let mut e = engine();
    e.handle(0, Input::IotConnection { connected: false });
    e.handle(0, Input::Started);
    assert!(exits(&run_until(&mut e, 5 * HOUR)).is_empty());
    let back = 5 * HOUR + 1;
    e.handle(back, Input::IotConnection { connected: true });
    let done = run_until(&mut e, 8 * HOUR);
    let exit = exits(&done);
    assert!(!exit.is_empty());
    assert!(
        exit[0] >= back + HOUR,
        "silence counts from the reconnect: {exit:?}"
    );
}

#[test]
fn no_exit_while_a_job_runs() {
    let mut e = engine();
    let (_, describe) = listed(&mut e, &["j"]);
    e.handle(15, Input::IotConnection { connected: true });
    let token = describe["clientToken"].as_str().unwrap();
    let acts = reply(
        &mut e,
        20,
        &format!("{P}j/get/accepted"),
        json!({"clientToken": token, "execution": execution("j")}),
    );
    let (_, start) = publishes(&acts).remove(0);
    let token = start["clientToken"].as_str().unwrap();
    let acts = reply(
        &mut e,
        30,
        &format!("{P}j/update/accepted"),
        json!({"clientToken": token, "executionState": {"status": "IN_PROGRESS", "versionNumber": 2}}),
    );
    assert!(acts.iter().any(|a| matches!(a, Action::Run(_))));
    // While the work runs, a notify-next without it makes the engine check the job: silence.
    reply(&mut e, 40, &format!("{P}notify-next"), json!({}));
    let done = run_until(&mut e, 3 * HOUR);
    assert!(
        exits(&done).is_empty(),
        "the work's result would be lost to a restart"
    );
    // Once it ends, the result's report goes unanswered too: now the exit may come.
    let outcome = JobOutcome {
        status: JobStatus::Succeeded,
        status_details: Default::default(),
    };
    e.handle(
        3 * HOUR,
        Input::JobFinished {
            job_id: "j",
            execution_number: 1,
            outcome,
        },
    );
    let done = run_until(&mut e, 4 * HOUR);
    assert!(!exits(&done).is_empty());
}
