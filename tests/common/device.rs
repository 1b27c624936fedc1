//! One core device under test: the emulator with one thing, its nucleus socket, and the
//! component binary started against it with its log in a file.
//!
//! Owns: starting the component as the nucleus would (environment, working directory), waiting
//! for its lifecycle state and for a job's status in the emulated cloud, and the barrier that
//! shows the component has handled everything delivered to it so far. Must not know: what a
//! test asserts.

use super::{within, COMPONENT, TOKEN};
use greengrass_jobs_handler::emulator::cloud::jobs_service::NewJob;
use greengrass_jobs_handler::emulator::nucleus::bus::BusSubscription;
use greengrass_jobs_handler::emulator::nucleus::ipc_server::IpcServer;
use greengrass_jobs_handler::emulator::{Emulator, EmulatorOptions};
use greengrass_jobs_handler::ipc::model::MqttMessage;
use greengrass_jobs_handler::jobs::messages::JobStatus;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};

/// The component binary, set up to reach the nucleus at `socket` as `thing`, in `work`.
/// Its stdout (the log) is discarded unless the caller redirects it.
pub fn component_command(socket: &Path, work: &Path, thing: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_greengrass-jobs-handler"));
    command
        .current_dir(work)
        .env(
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
            socket,
        )
        .env("SVCUID", TOKEN)
        .env("AWS_IOT_THING_NAME", thing)
        .env("GGJH_BOOT_ID_FILE", work.join("boot_id"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

/// Spawns `command` and returns once the component reported RUNNING to `emulator`'s nucleus
/// (every subscription it needs was accepted).
pub async fn start_component(emulator: &Emulator, mut command: Command) -> Child {
    let child = command.spawn().expect("spawn the component");
    within(
        "component RUNNING",
        emulator.nucleus().wait_for_state(COMPONENT, "RUNNING"),
    )
    .await;
    child
}

/// Status, version and statusDetails of a job's latest execution on the thing.
pub type ExecutionView = (JobStatus, i64, Vec<(String, String)>);

/// What the component logs when a response carries another client's token: the barrier's echo.
const IGNORED_RESPONSE: &str = "response to another client's request ignored";

/// The emulator with one thing and the component registered on its nucleus.
///
/// Call contract: [`Device::spawn`] starts a component (again after a kill); the helpers that
/// wait bound their wait and fail the test with the component's log.
pub struct Device {
    pub emulator: Emulator,
    pub thing: String,
    work: tempfile::TempDir,
    _server: IpcServer,
    socket: PathBuf,
    _dir: tempfile::TempDir,
    /// Every message IoT Core carried on this thing's jobs topics and on user topics, in order:
    /// topic and payload.
    carried: Arc<Mutex<Vec<(String, String)>>>,
    _taps: Vec<BusSubscription<MqttMessage>>,
}

impl Device {
    /// An emulator set up by `options` (its thing is `thing`), the component registered with
    /// `config`.
    pub fn new(thing: &str, options: EmulatorOptions, config: Value) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("ipc.socket");
        let emulator = Emulator::with_options(EmulatorOptions {
            thing: thing.into(),
            ..options
        });
        emulator.nucleus().register(COMPONENT, TOKEN, config);
        let server = emulator.serve_ipc(&socket).expect("bind IPC socket");
        let carried: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let taps = [format!("$aws/things/{thing}/jobs/#"), "#".to_owned()]
            .iter()
            .map(|filter| {
                let sink = Arc::clone(&carried);
                emulator.world().tap().subscribe(
                    filter,
                    0,
                    false,
                    Box::new(move |topic, message: &MqttMessage| {
                        let payload = String::from_utf8_lossy(message.payload()).into_owned();
                        sink.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((topic.to_owned(), payload));
                        true
                    }),
                )
            })
            .collect();
        Self {
            emulator,
            thing: thing.to_owned(),
            work: tempfile::tempdir().expect("temp dir"),
            _server: server,
            socket,
            _dir: dir,
            carried,
            _taps: taps,
        }
    }

    /// The messages IoT Core carried so far (this thing's jobs topics and user topics), in
    /// order: topic and payload.
    pub fn carried(&self) -> Vec<(String, String)> {
        self.carried
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many pending-jobs queries (`jobs/get`) the thing has published so far.
    pub fn queries(&self) -> usize {
        let get = format!("$aws/things/{}/jobs/get", self.thing);
        self.carried().iter().filter(|(t, _)| *t == get).count()
    }

    /// Waits until the component's start-up query was answered and handled: the core is idle.
    pub async fn started_up(&self) {
        self.running().await;
        within("the start-up query", async {
            while self.queries() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        self.settled().await;
    }

    /// The component's working directory (journal, handler directory).
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// The nucleus's IPC socket, for other components of the test.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn log_path(&self) -> PathBuf {
        self.work_dir().join("component.log")
    }

    /// The component's log so far (every process started by [`Device::spawn`]).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the component at debug level, its log appended to [`Device::log_path`].
    pub fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the component's log");
        let mut command = component_command(&self.socket, self.work_dir(), &self.thing);
        command.env("GGJH_LOG", "debug").stdout(log);
        command.spawn().expect("spawn the component")
    }

    /// Waits for the component's RUNNING state.
    pub async fn running(&self) {
        within(
            "component RUNNING",
            self.emulator.nucleus().wait_for_state(COMPONENT, "RUNNING"),
        )
        .await;
    }

    /// Creates a job for this thing only.
    pub fn create(&self, job_id: &str, document: Value) {
        self.emulator
            .world()
            .create_job(NewJob {
                job_id: job_id.into(),
                targets: vec![self.thing.clone()],
                document,
                ..NewJob::default()
            })
            .expect("create the job");
    }

    pub fn status(&self, job_id: &str) -> Option<ExecutionView> {
        self.emulator.world().with_jobs(|j| {
            j.execution(job_id, &self.thing, None).map(|e| {
                (
                    e.status,
                    e.version_number,
                    e.status_details.clone().into_iter().collect(),
                )
            })
        })
    }

    /// Waits until the job's execution has status `want`; returns its statusDetails.
    pub async fn wait_status(&self, job_id: &str, want: JobStatus) -> Vec<(String, String)> {
        let reached = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match self.status(job_id) {
                    Some((status, _, details)) if status == want => return details,
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await;
        reached.unwrap_or_else(|_| {
            panic!(
                "timed out: {job_id} reaching {want} (now {:?}); the component's log:\n{}",
                self.status(job_id),
                self.log()
            )
        })
    }

    /// Waits until the component's log holds `line`.
    pub async fn wait_log(&self, line: &str) {
        tokio::time::timeout(Duration::from_secs(30), async {
            while !self.log().contains(line) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {line:?} in the log:\n{}", self.log()));
    }

    /// Returns once a round trip through the component passed with no other traffic: nothing is
    /// left for it to do until a timer fires or the cloud sends something new. Needs the core
    /// connected.
    pub async fn settled(&self) {
        for _ in 0..100 {
            let before = self.carried().len();
            self.drained().await;
            // Only the barrier itself was carried meanwhile.
            if self.carried().len() == before + 1 {
                return;
            }
        }
        panic!("the component never settled; its log:\n{}", self.log());
    }

    /// Returns once the component has handled every IoT Core message delivered to it before
    /// this call: a response with another client's token is published to it, and its log says
    /// it ignored it (the nucleus delivers a connection's messages in order). Needs the core
    /// connected.
    pub async fn drained(&self) {
        let before = self.log().matches(IGNORED_RESPONSE).count();
        self.emulator.world().operator_publish(
            &format!("$aws/things/{}/jobs/get/accepted", self.thing),
            br#"{"clientToken":"another-client","queuedJobs":[],"inProgressJobs":[]}"#,
            1,
        );
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.log().matches(IGNORED_RESPONSE).count() <= before {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the component never drained; its log:\n{}", self.log()));
    }
}
