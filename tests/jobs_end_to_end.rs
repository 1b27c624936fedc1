//! The component binary against the emulator over the real IPC socket: jobs run end to end,
//! a job queued during a clean-session disconnect is recovered through the reconnect rule, the
//! same job is stranded without the rule on a nucleus without ConnectionStatus, and the
//! nucleus's deployment jobs are left alone.

mod common;

use common::device::Device;
use common::*;
use greengrass_jobs_handler::emulator::cloud::jobs_service::NewJob;
use greengrass_jobs_handler::emulator::EmulatorOptions;
use greengrass_jobs_handler::jobs::messages::JobStatus;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::process::Child;

const THING: &str = "core-1";

type Setup = Device;

fn setup(rule: bool, config: Value) -> Setup {
    setup_with(rule, true, config)
}

/// `connection_status`: whether the nucleus serves SubscribeToIoTCoreConnectionStatus.
fn setup_with(rule: bool, connection_status: bool, config: Value) -> Setup {
    Device::new(
        THING,
        EmulatorOptions {
            reconnect_rule: rule,
            connection_status,
            ..EmulatorOptions::default()
        },
        config,
    )
}

fn quick() -> Value {
    json!({"jitterMaxMs": 0, "responseTimeoutMs": 2000})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_job_runs_and_reports_its_result() {
    let s = setup(true, quick());
    s.create("add-1", json!({"operation": "add", "a": 20, "b": 22}));
    let _handler = s.spawn();
    s.running().await;
    let details = s.wait_status("add-1", JobStatus::Succeeded).await;
    assert_eq!(details, vec![("result".to_owned(), "42".to_owned())]);
    // A job created while the handler runs arrives by notify-next.
    s.create("echo-1", json!({"operation": "echo", "greeting": "hello"}));
    let details = s.wait_status("echo-1", JobStatus::Succeeded).await;
    assert_eq!(details, vec![("greeting".to_owned(), "hello".to_owned())]);
    // Bad documents of ours are rejected with a reason.
    s.create("bad-1", json!({"operation": "add", "a": "x"}));
    let details = s.wait_status("bad-1", JobStatus::Rejected).await;
    assert!(details[0].1.contains("\"a\""), "{details:?}");
}

/// Queues a job while the nucleus is offline, then brings it back with a clean session.
/// Returns how many queries the core had made before it went offline.
async fn queue_during_clean_disconnect(s: &Setup) -> usize {
    // The start-up query is done: the only way to learn of the job is what follows.
    s.started_up().await;
    let queries = s.queries();
    s.emulator.world().disconnect_nucleus();
    s.create("while-away", json!({"operation": "add", "a": 1, "b": 2}));
    s.emulator.world().reconnect_nucleus(true);
    queries
}

/// After a clean-session reconnect that nothing announced: once the component has settled, the
/// job queued meanwhile is still QUEUED and the core has not queried since before it went away.
async fn assert_stranded(s: &Setup, queries_before: usize) {
    s.settled().await;
    assert_eq!(s.status("while-away").map(|x| x.0), Some(JobStatus::Queued));
    assert_eq!(s.queries(), queries_before, "{:?}", s.carried());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_queued_during_a_clean_session_disconnect_is_recovered() {
    let s = setup(true, quick());
    let _handler = s.spawn();
    queue_during_clean_disconnect(&s).await;
    let details = s.wait_status("while-away", JobStatus::Succeeded).await;
    assert_eq!(details, vec![("result".to_owned(), "3".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_reconnect_rule_or_connection_status_the_same_job_is_stranded() {
    let s = setup_with(false, false, quick());
    let _handler = s.spawn();
    let queries = queue_during_clean_disconnect(&s).await;
    // The notify-next was lost with the clean session, and nothing tells the handler to look:
    // no reconnect message, and a nucleus without SubscribeToIoTCoreConnectionStatus.
    assert_stranded(&s, queries).await;
    // The message the rule would have sent is all it takes.
    s.emulator.world().operator_publish(
        &format!("reconnect/{THING}"),
        br#"{"clientId":"core-1","eventType":"subscribed"}"#,
        1,
    );
    s.wait_status("while-away", JobStatus::Succeeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_delivers_the_queued_notification_even_without_the_rule() {
    let s = setup(false, quick());
    let _handler = s.spawn();
    s.started_up().await;
    s.emulator.world().disconnect_nucleus();
    s.create("kept", json!({"operation": "echo"}));
    s.emulator.world().reconnect_nucleus(false);
    s.wait_status("kept", JobStatus::Succeeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nucleus_deployment_job_is_left_alone() {
    let s = setup(true, quick());
    // A Greengrass deployment queued first: it is the head of the thing's queue.
    s.emulator
        .world()
        .create_job(NewJob {
            job_id: "deployment-1".into(),
            targets: vec![THING.into()],
            document: json!({"deploymentId": "d-1", "components": {"aws.greengrass.Cli": {"version": "2.12.0"}}}),
            namespace_id: Some("aws-gg-deployment".into()),
            ..NewJob::default()
        })
        .unwrap();
    s.create("mine", json!({"operation": "echo", "x": "1"}));
    let _handler = s.spawn();
    s.running().await;
    s.wait_status("mine", JobStatus::Succeeded).await;
    // The deployment is untouched: still QUEUED at its first version.
    s.settled().await;
    assert_eq!(
        s.status("deployment-1").map(|x| (x.0, x.1)),
        Some((JobStatus::Queued, 1))
    );
    // The nucleus's own traffic on the same thing does not disturb the handler.
    s.emulator.world().operator_publish(
        &format!("$aws/things/{THING}/jobs/get/accepted"),
        br#"{"clientToken":"nucleus-42","queuedJobs":[{"jobId":"deployment-1","executionNumber":1,"versionNumber":1}]}"#,
        1,
    );
    s.create("mine-2", json!({"operation": "echo"}));
    s.wait_status("mine-2", JobStatus::Succeeded).await;
    assert_eq!(
        s.status("deployment-1").map(|x| (x.0, x.1)),
        Some((JobStatus::Queued, 1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_canceled_in_the_cloud_is_stopped() {
    let s = setup(true, quick());
    let _handler = s.spawn();
    s.running().await;
    s.create("long", json!({"operation": "sleep", "seconds": 600}));
    s.wait_status("long", JobStatus::InProgress).await;
    s.emulator.world().cancel_job("long", true, None).unwrap();
    s.wait_status("long", JobStatus::Canceled).await;
    // The handler is free again: the next job runs at once.
    s.create("after", json!({"operation": "echo"}));
    s.wait_status("after", JobStatus::Succeeded).await;
    let (st, _, _) = s.status("long").unwrap();
    assert_eq!(
        st,
        JobStatus::Canceled,
        "the canceled job's result is never reported over it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_requests_are_retried() {
    let s = setup(
        true,
        json!({"jitterMaxMs": 0, "responseTimeoutMs": 2000, "maxBackoffMs": 1000}),
    );
    s.create("t", json!({"operation": "echo"}));
    s.emulator.world().throttle(THING, 2);
    let _handler = s.spawn();
    s.running().await;
    s.wait_status("t", JobStatus::Succeeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_component_exits_non_zero_when_the_nucleus_goes_away_and_zero_on_sigterm() {
    let s = setup(true, quick());
    let mut handler = s.spawn();
    s.running().await;
    let pid = handler.id().expect("pid") as i32;
    // SIGTERM: clean stop.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc_kill(pid, 15) };
    let code = within("exit", handler.wait()).await.unwrap();
    assert_eq!(code.code(), Some(0));

    s.emulator.nucleus().forget_state(COMPONENT);
    let mut handler = s.spawn();
    s.running().await;
    // The nucleus goes away: every IPC connection closes.
    drop(s);
    let code = within("exit after IPC loss", handler.wait()).await.unwrap();
    assert_eq!(code.code(), Some(1));
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

fn handler_script(s: &Setup, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = s.work_dir().join("handlers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn wait_file(path: &std::path::Path) {
    within(&format!("{} to appear", path.display()), async {
        while !path.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.split_whitespace().nth(2) != Some("Z"))
        .unwrap_or(false)
}

async fn kill_9(handler: &mut Child) {
    handler.start_kill().unwrap();
    within("the component dies", handler.wait()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_job_then_restart_reports_the_job_failed_and_kills_its_leftovers() {
    let s = setup(true, json!({"jitterMaxMs": 0, "responseTimeoutMs": 2000}));
    std::fs::write(s.work_dir().join("boot_id"), "boot-1").unwrap();
    handler_script(&s, "install.sh", "echo $$ > step.pid; sleep 300");
    s.create(
        "install",
        json!({"version": "1.0", "steps": [
            {"action": {"name": "install", "type": "runHandler", "input": {"handler": "install.sh"}}}
        ]}),
    );
    let mut handler = s.spawn();
    s.running().await;
    let pid_file = s.work_dir().join("handlers/step.pid");
    wait_file(&pid_file).await;
    s.wait_status("install", JobStatus::InProgress).await;
    kill_9(&mut handler).await;
    let step_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        process_alive(step_pid),
        "the step outlives a SIGKILL of the handler"
    );
    // The job is still IN_PROGRESS in the cloud: nothing has told it otherwise yet.
    assert_eq!(
        s.status("install").map(|x| x.0),
        Some(JobStatus::InProgress)
    );

    s.emulator.nucleus().forget_state(COMPONENT);
    let _restarted = s.spawn();
    s.running().await;
    let details = s.wait_status("install", JobStatus::Failed).await;
    let reason = details
        .iter()
        .find(|(k, _)| k == "reason")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(
        reason.contains("interrupted") && reason.contains("handler stopped"),
        "{details:?}"
    );
    // Killed on restart, before the job was reported; reaped by init.
    within("the leftover step is gone", async {
        while process_alive(step_pid) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The journal is empty again once the cloud has the result.
    s.settled().await;
    let journal =
        greengrass_jobs_handler::journal::Journal::open(&s.work_dir().join("journal/jobs.journal"))
            .unwrap();
    assert!(journal.jobs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_reboots_the_device_succeeds_after_the_reboot() {
    let s_dir_config = |work: &std::path::Path| {
        json!({"jitterMaxMs": 0, "responseTimeoutMs": 2000,
               "rebootCommand": [work.join("handlers/fake-reboot.sh").to_string_lossy()], "rebootWaitSeconds": 120})
    };
    let s = setup(true, json!({}));
    s.emulator
        .nucleus()
        .register(COMPONENT, TOKEN, s_dir_config(s.work_dir()));
    std::fs::write(s.work_dir().join("boot_id"), "boot-1").unwrap();
    handler_script(&s, "fake-reboot.sh", "touch reboot-requested");
    s.create("reboot-1", json!({"operation": "reboot"}));
    let mut handler = s.spawn();
    s.running().await;
    wait_file(&s.work_dir().join("reboot-requested")).await;
    // The device goes down with the handler, and comes back with a new boot id.
    kill_9(&mut handler).await;
    assert_eq!(
        s.status("reboot-1").map(|x| x.0),
        Some(JobStatus::InProgress)
    );
    std::fs::write(s.work_dir().join("boot_id"), "boot-2").unwrap();
    s.emulator.nucleus().forget_state(COMPONENT);
    let _after = s.spawn();
    let details = s.wait_status("reboot-1", JobStatus::Succeeded).await;
    assert_eq!(details, vec![("reboot".to_owned(), "completed".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_is_rejected_when_not_enabled() {
    let s = setup(true, quick());
    s.create("reboot-2", json!({"operation": "reboot"}));
    let _handler = s.spawn();
    let details = s.wait_status("reboot-2", JobStatus::Rejected).await;
    assert!(details[0].1.contains("rebootCommand"), "{details:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_dispatched_to_a_worker_component_over_local_pubsub() {
    use greengrass_jobs_handler::ipc::model::{PublishMessage, SubscriptionResponseMessage};
    use greengrass_jobs_handler::ipc::{ClientOptions, IpcClient};
    let s = setup(
        true,
        json!({"jitterMaxMs": 0, "responseTimeoutMs": 2000,
               "workerOperations": ["remote-add", "silent"], "workerTimeoutSeconds": 2}),
    );
    // Another Greengrass component: an on-premises worker.
    s.emulator
        .nucleus()
        .register("WorkerComponent", "worker-token", json!({}));
    let worker = IpcClient::connect(s.socket(), "worker-token", ClientOptions::default())
        .await
        .unwrap();
    let mut requests = worker
        .subscribe_to_topic("greengrass-jobs-handler/request/remote-add", None)
        .await
        .unwrap();
    let replier = worker.clone();
    tokio::spawn(async move {
        while let Some(SubscriptionResponseMessage::JsonMessage(m)) = requests.recv().await {
            let request = m.message.unwrap_or_default();
            let doc = &request["document"];
            let sum = doc["a"].as_i64().unwrap_or(0) + doc["b"].as_i64().unwrap_or(0);
            let reply = json!({"correlationId": request["correlationId"], "status": "SUCCEEDED",
                               "statusDetails": {"result": sum.to_string(), "worker": "WorkerComponent"}});
            let topic = request["replyTopic"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            replier
                .publish_to_topic(&topic, PublishMessage::json(reply))
                .await
                .unwrap();
        }
    });
    let _handler = s.spawn();
    s.running().await;
    s.create(
        "remote-1",
        json!({"operation": "remote-add", "a": 40, "b": 2}),
    );
    let details = s.wait_status("remote-1", JobStatus::Succeeded).await;
    assert_eq!(
        details,
        vec![
            ("result".to_owned(), "42".to_owned()),
            ("worker".to_owned(), "WorkerComponent".to_owned())
        ]
    );
    // A worker that never answers: the job fails with the reason, it does not hang.
    s.create("silent-1", json!({"operation": "silent"}));
    let details = s.wait_status("silent-1", JobStatus::Failed).await;
    assert!(details[0].1.contains("did not reply"), "{details:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_one_at_a_time_unless_configured() {
    for (max, both_running) in [(1, false), (2, true)] {
        let s = setup(true, json!({"jitterMaxMs": 0, "maxConcurrentJobs": max}));
        s.create("long-a", json!({"operation": "sleep", "seconds": 1.5}));
        s.create("long-b", json!({"operation": "sleep", "seconds": 1.5}));
        let _handler = s.spawn();
        s.running().await;
        s.wait_status("long-b", JobStatus::Succeeded).await;
        assert_eq!(s.status("long-a").map(|x| x.0), Some(JobStatus::Succeeded));
        // Whether long-b started before long-a's result, in the order IoT Core carried them.
        let carried = s.carried();
        let update = |job: &str, status: &str| {
            let topic = format!("$aws/things/{THING}/jobs/{job}/update");
            carried
                .iter()
                .position(|(t, p)| *t == topic && p.contains(status))
                .unwrap_or_else(|| panic!("no {status} update of {job}: {carried:?}"))
        };
        let b_started = update("long-b", "IN_PROGRESS");
        let a_done = update("long-a", "SUCCEEDED");
        assert_eq!(b_started < a_done, both_running, "max {max}: {carried:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_changes_apply_while_running() {
    // Without ConnectionStatus, so that only the reconnect topic can tell the handler to look.
    let s = setup_with(false, false, quick());
    let _handler = s.spawn();
    s.running().await;
    let before = s.emulator.iot().subscription_count();
    let path = vec!["reconnectTopic".to_owned()];
    s.emulator.nucleus().update_configuration(
        COMPONENT,
        &path,
        json!("fleet/custom/{iot:thingName}"),
    );
    within("the new reconnect topic is subscribed", async {
        while s.emulator.iot().subscription_count() <= before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let queries = queue_during_clean_disconnect(&s).await;
    assert_stranded(&s, queries).await;
    // A message on the newly configured topic is the reconnect signal now.
    s.emulator.world().operator_publish(
        &format!("fleet/custom/{THING}"),
        br#"{"clientId":"core-1"}"#,
        1,
    );
    s.wait_status("while-away", JobStatus::Succeeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_job_runs_again_under_a_new_execution_number() {
    use greengrass_jobs_handler::emulator::cloud::jobs_service::RetryConfig;
    let s = setup(true, quick());
    let _handler = s.spawn();
    s.running().await;
    s.emulator
        .world()
        .create_job(NewJob {
            job_id: "flaky".into(),
            targets: vec![THING.into()],
            document: json!({"operation": "fail", "message": "disk full"}),
            retry: RetryConfig {
                failed: 1,
                timed_out: 0,
            },
            ..NewJob::default()
        })
        .unwrap();
    within("both executions failed", async {
        loop {
            let done = s.emulator.world().with_jobs(|j| {
                let e = j.executions_for_job("flaky");
                e.len() == 2 && e.iter().all(|e| e.status == JobStatus::Failed)
            });
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_topic_on_a_second_nucleus_connection_never_fires() {
    use greengrass_jobs_handler::ipc::model::Qos;
    use greengrass_jobs_handler::ipc::{ClientOptions, IpcClient};
    // A nucleus without ConnectionStatus: the reconnect rule is the only signal.
    let s = setup_with(true, false, quick());
    // Another component already holds 45 of the first connection's 50 subscriptions.
    s.emulator
        .nucleus()
        .register("Busy", "busy-token", json!({}));
    let busy = IpcClient::connect(s.socket(), "busy-token", ClientOptions::default())
        .await
        .unwrap();
    let mut held = Vec::new();
    for i in 0..45 {
        held.push(
            busy.subscribe_to_iot_core(&format!("busy/{i}"), Qos::AtMostOnce)
                .await
                .unwrap(),
        );
    }
    let _handler = s.spawn();
    s.running().await;
    let connections = s.emulator.world().nucleus_connections();
    let second = connections
        .iter()
        .find(|(id, _)| id == &format!("{THING}#2"))
        .expect("a second connection");
    assert!(
        second.1.contains(&format!("reconnect/{THING}")),
        "{connections:?}"
    );
    // AWS IoT sends no lifecycle events for "core-1#2": the rule never fires, the job strands.
    let queries = queue_during_clean_disconnect(&s).await;
    assert_stranded(&s, queries).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_progress_is_visible_in_the_cloud_while_the_job_runs() {
    let s = setup(true, quick());
    handler_script(&s, "fast.sh", "true");
    handler_script(&s, "slow.sh", "sleep 2");
    s.create(
        "staged",
        json!({"version": "1.0", "steps": [
            {"action": {"name": "prepare", "type": "runHandler", "input": {"handler": "fast.sh"}}},
            {"action": {"name": "install", "type": "runHandler", "input": {"handler": "slow.sh"}}}
        ]}),
    );
    let _handler = s.spawn();
    s.running().await;
    within("progress of step 2", async {
        loop {
            if let Some((JobStatus::InProgress, _, details)) = s.status("staged") {
                if details.contains(&("step".to_owned(), "2/2".to_owned())) {
                    assert!(
                        details.contains(&("stepName".to_owned(), "install".to_owned())),
                        "{details:?}"
                    );
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let details = s.wait_status("staged", JobStatus::Succeeded).await;
    assert!(
        details.contains(&("steps".to_owned(), "2 of 2 succeeded".to_owned())),
        "{details:?}"
    );
}
