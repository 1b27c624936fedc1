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

/// Ticks until the describe of `job` with its document has gone unanswered three times and the
/// describe without it goes out; answers that one (small) and returns the time of the answer
/// and what the engine did then.
fn round_of_lost_describes(e: &mut Engine, job: &str) -> (Millis, Vec<Action>) {
    let mut with_document = 1; // the first one went out before
    loop {
        let at = e.next_deadline().expect("a retry or the probe is due");
        for (t, body) in publishes(&e.handle(at, Input::Tick)) {
            if t != format!("{P}{job}/get") {
                continue;
            }
            if body["includeJobDocument"] == false {
                assert_eq!(with_document, 3, "three describes with the document first");
                let token = body["clientToken"].as_str().unwrap();
                let small_answer = json!({"clientToken": token, "execution": {"jobId": job,
                    "status": "QUEUED", "versionNumber": 1, "executionNumber": 1,
                    "queuedAt": 1, "lastUpdatedAt": 1}});
                let acts = reply(e, at + 5, &format!("{P}{job}/get/accepted"), small_answer);
                return (at + 5, acts);
            }
            with_document += 1;
        }
    }
}

/// Ticks until the next query goes out; answers it with `jobs` and returns when it went out.
fn next_query(e: &mut Engine, jobs: &[&str]) -> Millis {
    loop {
        let at = e.next_deadline().expect("a wake-up to look again");
        let out = publishes(&e.handle(at, Input::Tick));
        if let Some((_, body)) = out.into_iter().find(|(t, _)| t == &format!("{P}get")) {
            let token = body["clientToken"].as_str().unwrap().to_owned();
            reply(e, at + 5, &format!("{P}get/accepted"), list(&token, jobs));
            return at;
        }
    }
}

#[test]
fn a_description_that_does_not_arrive_sets_the_job_aside_for_growing_times_and_the_walk_goes_on() {
    let mut e = engine();
    let (topic, first) = listed(&mut e, &["big", "other"]);
    assert_eq!(topic, format!("{P}big/get"));
    assert_eq!(first["includeJobDocument"], true);
    // Three describes with the document go unanswered; the one without it is answered.
    let (answered, acts) = round_of_lost_describes(&mut e, "big");
    // The walk goes on with the next candidate.
    let (topic, describe) = publishes(&acts).remove(0);
    assert_eq!(topic, format!("{P}other/get"));
    let token = describe["clientToken"].as_str().unwrap();
    let foreign = json!({"clientToken": token, "execution": {"jobId": "other", "status": "QUEUED",
        "versionNumber": 1, "executionNumber": 1, "queuedAt": 1, "lastUpdatedAt": 1,
        "jobDocument": {"agent": "other"}}});
    reply(
        &mut e,
        answered + 10,
        &format!("{P}other/get/accepted"),
        foreign,
    );
    // One round is what a lossy link also does: no WARN yet, and the job is set aside for a
    // minute only.
    assert!(e.oversize_warned.is_empty(), "no warning after one round");
    assert_eq!(e.set_aside.get("big"), Some(&(answered + 60_000)));
    // Each further round in a row doubles the time, up to an hour; the WARN comes with the
    // second round; the job is looked at again for as long as it is pending.
    let mut set_aside_at = answered;
    let mut waits = Vec::new();
    for _ in 0..8 {
        let looked = next_query(&mut e, &["big"]);
        waits.push(looked - set_aside_at);
        set_aside_at = round_of_lost_describes(&mut e, "big").0;
    }
    let minute = 60_000;
    let expected = [1, 2, 4, 8, 16, 32, 60, 60].map(|m| m * minute);
    for (wait, want) in waits.iter().zip(expected) {
        assert!(
            (want..want + 1_000).contains(wait),
            "waits {waits:?}, expected about {expected:?}"
        );
    }
    assert_eq!(
        e.oversize_warned.len(),
        1,
        "one WARN, after the second round"
    );
    assert!(e.next_deadline().is_some(), "never given up while pending");
}

#[test]
fn a_full_description_arriving_starts_the_set_aside_time_afresh() {
    let mut e = engine();
    listed(&mut e, &["big"]);
    let (answered, _) = round_of_lost_describes(&mut e, "big");
    next_query(&mut e, &["big"]);
    let (second, _) = round_of_lost_describes(&mut e, "big");
    assert_eq!(e.set_aside.get("big"), Some(&(second + 120_000)));
    // Looked at again, the describe is answered this time.
    let looked = next_query(&mut e, &["big"]);
    assert!(looked >= answered + 60_000);
    let describe = loop {
        let at = e.next_deadline().unwrap();
        if let Some(p) = publishes(&e.handle(at, Input::Tick))
            .into_iter()
            .find(|(t, _)| t == &format!("{P}big/get"))
        {
            break (at, p.1);
        }
    };
    let token = describe.1["clientToken"].as_str().unwrap();
    let foreign = json!({"clientToken": token, "execution": {"jobId": "big", "status": "QUEUED",
        "versionNumber": 1, "executionNumber": 1, "queuedAt": 1, "lastUpdatedAt": 1,
        "jobDocument": {"agent": "other"}}});
    reply(
        &mut e,
        describe.0 + 5,
        &format!("{P}big/get/accepted"),
        foreign,
    );
    assert!(e.oversize_rounds.is_empty(), "{:?}", e.oversize_rounds);
}

#[test]
fn a_late_full_answer_is_the_describe_the_walk_waits_for() {
    let mut e = engine();
    let (_, first) = listed(&mut e, &["job"]);
    let first_token = first["clientToken"].as_str().unwrap().to_owned();
    // The describes go unanswered until the probe is out.
    let probe = loop {
        let at = e.next_deadline().unwrap();
        let out = publishes(&e.handle(at, Input::Tick));
        if let Some((_, body)) = out
            .into_iter()
            .find(|(_, b)| b["includeJobDocument"] == false)
        {
            break (at, body);
        }
    };
    // The answer to the very first describe arrives now, late: the job is started.
    let late = json!({"clientToken": first_token, "execution": execution("job")});
    let acts = reply(&mut e, probe.0 + 1, &format!("{P}job/get/accepted"), late);
    assert!(
        publishes(&acts)
            .iter()
            .any(|(t, b)| t == &format!("{P}job/update") && b["status"] == "IN_PROGRESS"),
        "{acts:?}"
    );
    // The probe's answer, after it, sets nothing aside.
    let token = probe.1["clientToken"].as_str().unwrap();
    let small = json!({"clientToken": token, "execution": {"jobId": "job", "status": "QUEUED",
        "versionNumber": 1, "executionNumber": 1, "queuedAt": 1, "lastUpdatedAt": 1}});
    reply(&mut e, probe.0 + 2, &format!("{P}job/get/accepted"), small);
    assert!(e.set_aside.is_empty(), "{:?}", e.set_aside);
}

/// How many of `done`'s publishes are size probes (describes without the document).
fn size_probes(done: &[(Millis, Action)]) -> usize {
    done.iter()
        .filter(|(_, a)| {
            matches!(a, Action::Publish { payload, .. }
            if serde_json::from_slice::<Value>(payload).unwrap()["includeJobDocument"] == false)
        })
        .count()
}

#[test]
fn describes_missed_while_the_core_is_offline_are_no_sign_of_size() {
    let mut e = engine();
    listed(&mut e, &["job"]);
    e.handle(20, Input::IotConnection { connected: false });
    let done = run_until(&mut e, 30 * 60_000);
    let probes = size_probes(&done);
    assert_eq!(probes, 0, "no size check while offline: {done:?}");
}

#[test]
fn a_probe_that_is_not_answered_either_is_silence_not_size() {
    let mut e = engine();
    listed(&mut e, &["big"]);
    let done = run_until(&mut e, 120_000);
    let probes = size_probes(&done);
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
