//! The component binary against the emulator when the core's IoT Core connection misbehaves:
//! SubscribeToIoTCoreConnectionStatus drives re-queries where the nucleus offers it, and a
//! nucleus without it falls back to the reconnect rule, saying so once.

mod common;

use common::*;
use greengrass_jobs_handler::emulator::cloud::jobs_service::NewJob;
use greengrass_jobs_handler::emulator::{Emulator, EmulatorOptions};
use greengrass_jobs_handler::jobs::messages::JobStatus;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};

const THING: &str = "core-1";

struct Setup {
    emulator: Emulator,
    work: tempfile::TempDir,
    _server: greengrass_jobs_handler::emulator::nucleus::ipc_server::IpcServer,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

fn setup(options: EmulatorOptions, config: Value) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipc.socket");
    let emulator = Emulator::with_options(EmulatorOptions {
        thing: THING.into(),
        ..options
    });
    emulator.nucleus().register(COMPONENT, TOKEN, config);
    let server = emulator.serve_ipc(&socket).unwrap();
    Setup {
        emulator,
        work: tempfile::tempdir().unwrap(),
        _server: server,
        socket,
        _dir: dir,
    }
}

impl Setup {
    fn log_path(&self) -> PathBuf {
        self.work.path().join("component.log")
    }

    /// The component's log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the component with its log (stdout) in [`Setup::log_path`].
    fn spawn(&self) -> Child {
        let log = std::fs::File::create(self.log_path()).unwrap();
        Command::new(env!("CARGO_BIN_EXE_greengrass-jobs-handler"))
            .current_dir(self.work.path())
            .env(
                "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
                &self.socket,
            )
            .env("SVCUID", TOKEN)
            .env("AWS_IOT_THING_NAME", THING)
            .env("GGJH_LOG", "info")
            .env("GGJH_BOOT_ID_FILE", self.work.path().join("boot_id"))
            .stdout(log)
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the component")
    }

    async fn running(&self) {
        within(
            "component RUNNING",
            self.emulator.nucleus().wait_for_state(COMPONENT, "RUNNING"),
        )
        .await;
    }

    fn create(&self, job_id: &str, document: Value) {
        self.emulator
            .world()
            .create_job(NewJob {
                job_id: job_id.into(),
                targets: vec![THING.into()],
                document,
                ..NewJob::default()
            })
            .unwrap();
    }

    fn status(&self, job_id: &str) -> Option<JobStatus> {
        self.emulator
            .world()
            .with_jobs(|j| j.execution(job_id, THING, None).map(|e| e.status))
    }

    async fn wait_status(&self, job_id: &str, want: JobStatus) {
        let reached = tokio::time::timeout(Duration::from_secs(10), async {
            while self.status(job_id) != Some(want) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if reached.is_err() {
            panic!(
                "timed out: {job_id} reaching {want}; the component's log:\n{}",
                self.log()
            );
        }
    }

    /// Counts the pending-jobs queries the core publishes from now on.
    fn count_queries(&self) -> (Arc<AtomicUsize>, impl Drop) {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&count);
        let guard = self.emulator.world().tap().subscribe(
            &format!("$aws/things/{THING}/jobs/get"),
            0,
            false,
            Box::new(move |_, _| {
                seen.fetch_add(1, Ordering::SeqCst);
                true
            }),
        );
        (count, guard)
    }
}

fn quick() -> Value {
    json!({"jitterMaxMs": 0, "responseTimeoutMs": 2000})
}

/// Lets the start-up query finish, then queues a job while the core is offline and brings the
/// connection back with a clean session: the job's notify-next is lost.
async fn queue_during_clean_disconnect(s: &Setup) {
    s.running().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    let (queries, _tap) = s.count_queries();
    let _handler = s.spawn();
    s.running().await;
    within("the start-up query", async {
        while queries.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = queries.load(Ordering::SeqCst);
    s.emulator.world().disconnect_nucleus();
    s.create("while-away", json!({"operation": "add", "a": 1, "b": 2}));
    s.emulator.world().reconnect_nucleus(true);
    // No reconnect message exists; only the CONNECTED status can make it look.
    s.wait_status("while-away", JobStatus::Succeeded).await;
    assert!(
        queries.load(Ordering::SeqCst) > before,
        "a jobs/get after the reconnect"
    );
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

/// Waits until the component's log holds `line`.
async fn wait_log(s: &Setup, line: &str) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while !s.log().contains(line) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {line:?} in the log:\n{}", s.log()));
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
    wait_log(&s, "IoT Core connection is down").await;
    s.emulator.world().reconnect_nucleus(false);
    // CONNECTED makes the component query; nothing answers it.
    wait_log(&s, "IoT Core subscriptions re-created").await;
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
    wait_log(&s, "attempt=8").await;
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
    s.running().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
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
