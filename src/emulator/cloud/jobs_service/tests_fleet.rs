//! Rollout rates, account quotas, abort criteria and schedules, on virtual time.

use super::*;
use crate::jobs::messages::JobStatus;
use serde_json::json;
use std::collections::BTreeMap;

const MIN: u64 = 60_000;
/// 2026-12-01T00:00Z.
const T0: u64 = 1_796_083_200_000;

fn fleet(n: usize) -> (JobsService, Vec<String>) {
    let mut s = JobsService::default();
    let things: Vec<String> = (0..n).map(|i| format!("t-{i:04}")).collect();
    for t in &things {
        s.create_thing(t).unwrap();
    }
    (s, things)
}

fn new_job(id: &str, things: &[String]) -> NewJob {
    NewJob {
        job_id: id.into(),
        targets: things.to_vec(),
        document: json!({"operation": "echo"}),
        ..NewJob::default()
    }
}

/// Fires every timer up to `to`, at its own instant.
fn advance(s: &mut JobsService, to: u64) {
    while let Some(at) = s.next_deadline().filter(|at| *at <= to) {
        s.tick(at);
    }
}

fn notified(s: &JobsService, job: &str) -> usize {
    s.job_counts(job).notified
}

fn update(s: &mut JobsService, thing: &str, job: &str, status: &str, now: u64) {
    let body = json!({"status": status}).to_string();
    let out = s.handle_device_request(thing, &format!("{job}/update"), body.as_bytes(), now);
    assert!(
        matches!(out.first(), Some(Output::Reply { topic, .. }) if topic.ends_with("/accepted")),
        "{thing} {job} {status}: {out:?}"
    );
}

#[test]
fn maximum_per_minute_spaces_notifications_evenly() {
    let (mut s, things) = fleet(250);
    let job = NewJob {
        rollout: RolloutConfig {
            maximum_per_minute: Some(100),
            exponential: None,
        },
        ..new_job("r", &things)
    };
    s.create_job(job, T0).unwrap();
    assert_eq!(notified(&s, "r"), 1, "the first at once");
    advance(&mut s, T0 + MIN - 1);
    assert_eq!(notified(&s, "r"), 100, "100 in the first minute");
    advance(&mut s, T0 + 2 * MIN - 1);
    assert_eq!(notified(&s, "r"), 200);
    advance(&mut s, T0 + 10 * MIN);
    assert_eq!(notified(&s, "r"), 250);
    assert_eq!(s.next_deadline(), None, "nothing left to release");
    assert_eq!(s.job("r").map(|j| j.state), Some(JobState::InProgress));
    for t in &things {
        update(&mut s, t, "r", "SUCCEEDED", T0 + 11 * MIN);
    }
    assert_eq!(s.job("r").map(|j| j.state), Some(JobState::Completed));
}

#[test]
fn a_snapshot_job_is_not_complete_while_things_wait_for_the_rollout() {
    let (mut s, things) = fleet(3);
    let job = NewJob {
        rollout: RolloutConfig {
            maximum_per_minute: Some(1),
            exponential: None,
        },
        ..new_job("slow", &things)
    };
    s.create_job(job, T0).unwrap();
    update(&mut s, &things[0], "slow", "SUCCEEDED", T0 + 1);
    assert_eq!(s.job("slow").map(|j| j.state), Some(JobState::InProgress));
    assert_eq!(s.next_deadline(), Some(T0 + MIN));
}

#[test]
fn exponential_rate_grows_with_notified_things() {
    let (mut s, things) = fleet(100);
    let job = NewJob {
        rollout: RolloutConfig {
            maximum_per_minute: Some(40),
            exponential: Some(ExponentialRate {
                base_rate_per_minute: 10,
                increment_factor: 2.0,
                criteria: RateIncreaseCriteria::NotifiedThings(10),
            }),
        },
        ..new_job("e", &things)
    };
    s.create_job(job, T0).unwrap();
    // 10 at 6 s apart (0..54 s), then 10 at 3 s, then 1.5 s capped at 40/min.
    advance(&mut s, T0 + 54_000);
    assert_eq!(notified(&s, "e"), 10);
    advance(&mut s, T0 + 54_000 + 30_000);
    assert_eq!(notified(&s, "e"), 20);
    advance(&mut s, T0 + 84_000 + 15_000);
    assert_eq!(notified(&s, "e"), 30);
    advance(&mut s, T0 + 99_000 + 15_000);
    assert_eq!(notified(&s, "e"), 40, "the rate stays at maximumPerMinute");
}

#[test]
fn exponential_rate_on_succeeded_things() {
    let (mut s, things) = fleet(50);
    let job = NewJob {
        rollout: RolloutConfig {
            maximum_per_minute: None,
            exponential: Some(ExponentialRate {
                base_rate_per_minute: 1,
                increment_factor: 5.0,
                criteria: RateIncreaseCriteria::SucceededThings(1),
            }),
        },
        ..new_job("es", &things)
    };
    s.create_job(job, T0).unwrap();
    advance(&mut s, T0 + 30_000);
    assert_eq!(notified(&s, "es"), 1, "1 a minute");
    update(&mut s, &things[0], "es", "SUCCEEDED", T0 + 30_000);
    // Now 5 a minute: the slot 12 s after the first has passed, so one goes now (as the
    // world ticks: at its own time, never in the past), the next 12 s later.
    s.tick(T0 + 30_000);
    assert_eq!(notified(&s, "es"), 2);
    advance(&mut s, T0 + 42_000);
    assert_eq!(notified(&s, "es"), 3);
}

#[test]
fn the_account_quota_spaces_every_job_and_limits_concurrent_jobs() {
    let (mut s, things) = fleet(20);
    s.set_quotas(AccountQuotas {
        max_job_executions_per_minute: Some(10),
        max_concurrent_jobs: Some(2),
    })
    .unwrap();
    s.create_job(new_job("a", &things[..10]), T0).unwrap();
    s.create_job(new_job("b", &things[10..]), T0).unwrap();
    advance(&mut s, T0 + MIN - 1);
    assert_eq!(
        notified(&s, "a") + notified(&s, "b"),
        10,
        "10 a minute across jobs"
    );
    let third = s.create_job(new_job("c", &things[..1]), T0 + MIN);
    assert_eq!(
        third.map(|_| ()).map_err(|e| e.code),
        Err("LimitExceededException")
    );
    assert!(s
        .set_quotas(AccountQuotas {
            max_job_executions_per_minute: Some(0),
            max_concurrent_jobs: None
        })
        .is_err());
}

#[test]
fn abort_criteria_cancel_the_job() {
    let (mut s, things) = fleet(10);
    let job = NewJob {
        abort: vec![AbortCriterion {
            failure_type: FailureType::Failed,
            threshold_percentage: 20.0,
            min_number_of_executed_things: 5,
        }],
        ..new_job("ab", &things)
    };
    s.create_job(job, T0).unwrap();
    update(&mut s, &things[0], "ab", "IN_PROGRESS", T0 + 1);
    update(&mut s, &things[1], "ab", "FAILED", T0 + 2);
    assert_eq!(
        s.job("ab").map(|j| j.state),
        Some(JobState::InProgress),
        "10%"
    );
    assert!(s.take_queued_outputs().is_empty());
    update(&mut s, &things[2], "ab", "FAILED", T0 + 3);
    let job = s.job("ab").unwrap();
    assert_eq!(job.state, JobState::Canceled, "20% of 10 notified");
    assert_eq!(job.reason_code.as_deref(), Some(abort::ABORTED));
    assert!(job.comment.as_deref().is_some_and(|c| c.contains("FAILED")));
    let counts = s.job_counts("ab");
    assert_eq!(counts.of(JobStatus::Canceled), 7, "the QUEUED ones");
    assert_eq!(counts.of(JobStatus::InProgress), 1, "IN_PROGRESS goes on");
    let notes = s.take_queued_outputs();
    assert!(
        notes.iter().any(
            |o| matches!(o, Output::Publish(p) if p.topic == "$aws/things/t-0003/jobs/notify")
        ),
        "the canceled things are notified"
    );
}

#[test]
fn abort_waits_for_the_minimum_of_notified_things() {
    let (mut s, things) = fleet(10);
    let job = NewJob {
        rollout: RolloutConfig {
            maximum_per_minute: Some(1),
            exponential: None,
        },
        abort: vec![AbortCriterion {
            failure_type: FailureType::All,
            threshold_percentage: 50.0,
            min_number_of_executed_things: 3,
        }],
        ..new_job("min", &things)
    };
    s.create_job(job, T0).unwrap();
    update(&mut s, &things[0], "min", "REJECTED", T0 + 1);
    assert_eq!(
        s.job("min").map(|j| j.state),
        Some(JobState::InProgress),
        "1 of 1, under 3"
    );
    advance(&mut s, T0 + 2 * MIN);
    update(&mut s, &things[1], "min", "FAILED", T0 + 2 * MIN);
    assert_eq!(
        s.job("min").map(|j| j.state),
        Some(JobState::Canceled),
        "2 of 3"
    );
    advance(&mut s, T0 + 20 * MIN);
    assert_eq!(
        notified(&s, "min"),
        3,
        "no one else is notified after the abort"
    );
}

#[test]
fn a_scheduled_job_starts_and_force_cancels_on_time() {
    let (mut s, things) = fleet(2);
    let scheduling = SchedulingConfig::new(
        Some("2026-12-01T00:40"),
        Some("2026-12-01T01:40"),
        Some("FORCE_CANCEL"),
        &[],
        T0,
    )
    .unwrap();
    let job = NewJob {
        scheduling: Some(scheduling),
        ..new_job("sch", &things)
    };
    assert!(s.create_job(job, T0).unwrap().is_empty());
    assert_eq!(s.job("sch").map(|j| j.state), Some(JobState::Scheduled));
    let (pending, _) = s.get_pending_job_executions(&things[0], T0 + 1).unwrap();
    assert!(
        pending.queued_jobs.is_empty(),
        "nothing listed while SCHEDULED"
    );
    assert_eq!(s.next_deadline(), Some(T0 + 40 * MIN));
    advance(&mut s, T0 + 40 * MIN - 1);
    assert_eq!(s.job("sch").map(|j| j.state), Some(JobState::Scheduled));
    advance(&mut s, T0 + 40 * MIN);
    assert_eq!(s.job("sch").map(|j| j.state), Some(JobState::InProgress));
    assert_eq!(notified(&s, "sch"), 2);
    update(&mut s, &things[0], "sch", "IN_PROGRESS", T0 + 41 * MIN);
    advance(&mut s, T0 + 100 * MIN - 1);
    assert_eq!(s.job_counts("sch").of(JobStatus::InProgress), 1);
    advance(&mut s, T0 + 100 * MIN);
    let job = s.job("sch").unwrap();
    assert_eq!((job.state, job.force_canceled), (JobState::Canceled, true));
    assert_eq!(
        s.job_counts("sch").of(JobStatus::Canceled),
        2,
        "IN_PROGRESS too"
    );
}

#[test]
fn stop_rollout_at_the_end_leaves_notified_executions_alone() {
    let (mut s, things) = fleet(100);
    let scheduling = SchedulingConfig::new(
        Some("2026-12-01T00:30"),
        Some("2026-12-01T01:00"),
        Some("STOP_ROLLOUT"),
        &[],
        T0,
    )
    .unwrap();
    let job = NewJob {
        scheduling: Some(scheduling),
        rollout: RolloutConfig {
            maximum_per_minute: Some(1),
            exponential: None,
        },
        ..new_job("stop", &things)
    };
    s.create_job(job, T0).unwrap();
    advance(&mut s, T0 + 3 * 60 * MIN);
    assert_eq!(notified(&s, "stop"), 30, "one a minute for the 30 minutes");
    assert_eq!(s.job_counts("stop").of(JobStatus::Queued), 30);
    for t in &things[..30] {
        update(&mut s, t, "stop", "SUCCEEDED", T0 + 4 * 60 * MIN);
    }
    assert_eq!(s.job("stop").map(|j| j.state), Some(JobState::Completed));
}

#[test]
fn maintenance_windows_pause_the_rollout() {
    let (mut s, things) = fleet(10);
    // 01:00–01:02 every day: at one a minute, 2 things a day.
    let scheduling =
        SchedulingConfig::new(None, None, None, &[("cron(0 1 * * ? *)".into(), 2)], T0).unwrap();
    let job = NewJob {
        scheduling: Some(scheduling),
        rollout: RolloutConfig {
            maximum_per_minute: Some(1),
            exponential: None,
        },
        ..new_job("mw", &things)
    };
    s.create_job(job, T0).unwrap();
    assert_eq!(notified(&s, "mw"), 0, "outside the window");
    advance(&mut s, T0 + 60 * MIN);
    assert_eq!(notified(&s, "mw"), 1);
    advance(&mut s, T0 + 24 * 60 * MIN);
    assert_eq!(notified(&s, "mw"), 2);
    advance(&mut s, T0 + 25 * 60 * MIN + MIN);
    assert_eq!(notified(&s, "mw"), 4);
    advance(&mut s, T0 + 26 * 60 * MIN);
    assert_eq!(notified(&s, "mw"), 4, "closed again after two minutes");
}

#[test]
fn a_rollout_on_a_dynamic_group_reaches_exactly_the_900_in_9_minutes() {
    use crate::emulator::cloud::fleet_index::IndexingMode;
    let mut s = JobsService::default();
    s.set_indexing_mode(IndexingMode::RegistryAndShadow, T0)
        .unwrap();
    let things: Vec<String> = (0..1000).map(|i| format!("dev-{i:04}")).collect();
    for t in &things {
        let attrs = Attributes::from([("fleet".to_owned(), "blue".to_owned())]);
        s.create_thing_with_attributes(t, attrs).unwrap();
    }
    s.create_thing_group("up-exclude").unwrap();
    let excluded: Vec<&String> = things.iter().step_by(10).collect();
    for t in &excluded {
        s.add_thing_to_thing_group("up-exclude", t, T0).unwrap();
    }
    s.create_dynamic_thing_group(
        "up-targets",
        "(attributes.fleet:blue) AND NOT thingGroupNames:up-exclude",
        T0,
    )
    .unwrap();
    assert_eq!(s.describe_thing_group("up-targets").unwrap().members, 900);
    let job = NewJob {
        target_groups: vec!["up-targets".into()],
        continuous: true,
        rollout: RolloutConfig {
            maximum_per_minute: Some(100),
            exponential: None,
        },
        ..new_job("up", &[])
    };
    // Devices take and finish each execution as its notification comes.
    let mut outputs = s.create_job(job, T0).unwrap();
    let mut now = T0;
    let mut done_at = None;
    loop {
        for o in std::mem::take(&mut outputs) {
            if let Output::Publish(p) = o {
                if let Some(thing) = p
                    .topic
                    .strip_prefix("$aws/things/")
                    .and_then(|r| r.strip_suffix("/jobs/notify-next"))
                {
                    update(&mut s, thing, "up", "SUCCEEDED", now);
                }
            }
        }
        if s.job_counts("up").of(JobStatus::Succeeded) == 900 && done_at.is_none() {
            done_at = Some(now);
        }
        match s.next_deadline().filter(|at| *at <= T0 + 20 * MIN) {
            Some(at) => {
                now = at;
                outputs = s.tick(now);
            }
            None => break,
        }
    }
    let c = s.job_counts("up");
    assert_eq!(c.of(JobStatus::Succeeded), 900);
    assert_eq!(c.notified, 900);
    let minutes = (done_at.expect("all succeeded") - T0) as f64 / MIN as f64;
    assert!((8.0..=10.0).contains(&minutes), "{minutes} virtual minutes");
    for t in excluded {
        assert!(s.execution("up", t, None).is_none(), "{t} is excluded");
    }
    // A thing stamped later joins at once; a thing that leaves keeps its execution.
    s.create_thing_with_attributes(
        "dev-late",
        Attributes::from([("fleet".into(), "blue".into())]),
    )
    .unwrap();
    let _ = now;
    assert!(s
        .take_queued_outputs()
        .iter()
        .any(|o| matches!(o, Output::Publish(p) if p.topic.contains("dev-late"))));
    assert_eq!(
        s.execution("up", "dev-late", None).map(|e| e.status),
        Some(JobStatus::Queued)
    );
    s.add_thing_to_thing_group("up-exclude", "dev-late", now)
        .unwrap();
    assert_eq!(s.describe_thing_group("up-targets").unwrap().members, 900);
    assert_eq!(
        s.execution("up", "dev-late", None).map(|e| e.status),
        Some(JobStatus::Queued)
    );
    // And a shadow stamp brings a thing in through the query.
    s.create_dynamic_thing_group("stamped", "shadow.reported.stamp:up", now)
        .unwrap();
    s.set_shadow_reported(
        "dev-0000",
        BTreeMap::from([("stamp".into(), vec!["up".into()])]),
        now,
    );
    assert_eq!(
        s.list_things_in_thing_group("stamped", None, None)
            .unwrap()
            .items,
        ["dev-0000"]
    );
    let e = s.search_index("thingName:dev-00*", Some(5), None).unwrap();
    assert_eq!(
        (e.items.len(), e.next_token.as_deref()),
        (5, Some("dev-0004"))
    );
    assert_eq!(
        s.search_index("attributes.fleet:", None, None)
            .map(|_| ())
            .map_err(|e| e.code),
        Err("InvalidQueryException")
    );
}
