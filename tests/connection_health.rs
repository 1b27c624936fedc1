//! The component binary against the emulator when the core's IoT Core connection misbehaves:
//! SubscribeToIoTCoreConnectionStatus drives re-queries where the nucleus offers it, and a
//! nucleus without it falls back to the reconnect rule, saying so once.

mod common;

use common::device::Device;
use greengrass_jobs_handler::emulator::EmulatorOptions;
use greengrass_jobs_handler::jobs::messages::JobStatus;
use serde_json::{json, Value};
use std::time::Duration;

const THING: &str = "core-1";

type Setup = Device;

fn setup(options: EmulatorOptions, config: Value) -> Setup {
    Device::new(THING, options, config)
}

fn quick() -> Value {
    json!({"jitterMaxMs": 0, "responseTimeoutMs": 2000})
}

/// Lets the start-up query finish, then queues a job while the core is offline and brings the
/// connection back with a clean session: the job's notify-next is lost.
async fn queue_during_clean_disconnect(s: &Setup) {
    s.started_up().await;
    s.emulator.world().disconnect_nucleus();
    s.create("while-away", json!({"operation": "add", "a": 1, "b": 2}));
    s.emulator.world().reconnect_nucleus(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_after_a_reconnect_makes_the_component_query_without_the_rule() {
    let s = setup(
        EmulatorOptions {
            reconnect_rule: false,
            ..EmulatorOptions::default()
        },
        quick(),
    );
    let _handler = s.spawn();
    s.started_up().await;
    let before = s.queries();
    s.emulator.world().disconnect_nucleus();
    s.create("while-away", json!({"operation": "add", "a": 1, "b": 2}));
    s.emulator.world().reconnect_nucleus(true);
    // No reconnect message exists; only the CONNECTED status can make it look.
    s.wait_status("while-away", JobStatus::Succeeded).await;
    assert!(s.queries() > before, "a jobs/get after the reconnect");
    assert!(
        s.log()
            .contains("IoT Core connection is up: re-querying jobs"),
        "{}",
        s.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nucleus_without_connection_status_falls_back_to_the_rule_and_says_so_once() {
    let s = setup(
        EmulatorOptions {
            connection_status: false,
            ..EmulatorOptions::default()
        },
        quick(),
    );
    let _handler = s.spawn();
    queue_during_clean_disconnect(&s).await;
    s.wait_status("while-away", JobStatus::Succeeded).await;
    s.emulator.world().disconnect_nucleus();
    s.emulator.world().reconnect_nucleus(true);
    s.create("second", json!({"operation": "echo"}));
    s.wait_status("second", JobStatus::Succeeded).await;
    let log = s.log();
    let fallback = "SubscribeToIoTCoreConnectionStatus is not available on this nucleus";
    assert_eq!(log.matches(fallback).count(), 1, "{log}");
    assert!(log.contains("reconnect message"), "{log}");
}

fn impatient() -> Value {
    json!({"jitterMaxMs": 0, "responseTimeoutMs": 300, "maxBackoffMs": 1000})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_closed_silently_are_recreated_and_jobs_run_again() {
    let s = setup(EmulatorOptions::default(), impatient());
    let mut handler = s.spawn();
    s.running().await;
    s.create("before", json!({"operation": "echo"}));
    s.wait_status("before", JobStatus::Succeeded).await;
    // What nucleus lite does when its iotcored restarts: the streams stay open, deaf.
    assert!(s.emulator.default_core().close_iot_subscriptions_silently() >= 11);
    s.emulator.world().disconnect_nucleus();
    s.wait_log("IoT Core connection is down").await;
    s.emulator.world().reconnect_nucleus(false);
    // CONNECTED makes the component query; nothing answers it.
    s.wait_log("IoT Core subscriptions re-created").await;
    s.create("after", json!({"operation": "add", "a": 2, "b": 2}));
    s.wait_status("after", JobStatus::Succeeded).await;
    assert!(handler.try_wait().unwrap().is_none(), "still running");
    assert_eq!(
        s.log()
            .matches("re-creating the IoT Core subscriptions")
            .count(),
        1,
        "{}",
        s.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_offline_for_long_never_makes_the_component_exit() {
    let mut config = impatient();
    config["deafExitSeconds"] = json!(1);
    config["deafExitWithoutStatusSeconds"] = json!(1);
    let s = setup(EmulatorOptions::default(), config);
    s.emulator.world().disconnect_nucleus();
    s.create("queued", json!({"operation": "echo"}));
    let mut handler = s.spawn();
    s.running().await;
    // Many unanswered queries, far past both exit limits, all while DISCONNECTED.
    s.wait_log("attempt=8").await;
    assert!(handler.try_wait().unwrap().is_none(), "{}", s.log());
    let log = s.log();
    assert!(
        !log.contains("re-creating the IoT Core subscriptions"),
        "{log}"
    );
    assert!(
        !log.contains("exiting so that the nucleus restarts"),
        "{log}"
    );
    s.emulator.world().reconnect_nucleus(false);
    s.wait_status("queued", JobStatus::Succeeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_resubscribing_does_not_help_the_component_exits_non_zero() {
    let mut config = impatient();
    config["deafExitWithoutStatusSeconds"] = json!(3);
    let s = setup(
        EmulatorOptions {
            connection_status: false,
            ..EmulatorOptions::default()
        },
        config,
    );
    let mut handler = s.spawn();
    s.started_up().await;
    // IoT Core stops delivering anything to the core, resubscribed or not.
    s.emulator.world().disconnect_nucleus();
    s.emulator.world().reconnect_nucleus(true);
    s.emulator.world().disconnect_nucleus();
    let status = tokio::time::timeout(Duration::from_secs(30), handler.wait())
        .await
        .unwrap_or_else(|_| panic!("the component did not exit:\n{}", s.log()))
        .unwrap();
    assert_eq!(status.code(), Some(1), "{}", s.log());
    let log = s.log();
    assert!(
        log.contains("re-creating the IoT Core subscriptions"),
        "{log}"
    );
    assert!(
        log.contains("exiting so that the nucleus restarts"),
        "{log}"
    );
}
