//! `ggjh-demo`: the handler's main job on the embedded emulator, start to finish.
//!
//! Starts the emulator (nucleus IPC, IoT Core, Jobs, the reconnect rule), runs the real
//! component process against it, queues jobs, drops the core's MQTT connection and brings it
//! back with a clean session while a job is queued, shows that the handler recovers that job,
//! stops the component with SIGTERM, and prints a summary. Exits 0 when every step behaved.

use greengrass_jobs_handler::emulator::cloud::jobs_service::NewJob;
use greengrass_jobs_handler::emulator::shared_world::SharedWorld;
use greengrass_jobs_handler::emulator::Emulator;
use greengrass_jobs_handler::ipc::model::MqttMessage;
use greengrass_jobs_handler::jobs::messages::JobStatus;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const THING: &str = "demo-core";
const COMPONENT: &str = "GreengrassJobsHandler";
const TOKEN: &str = "demo-svcuid";

struct Demo {
    start: Instant,
    emulator: Emulator,
}

impl Demo {
    fn say(&self, who: &str, text: &str) {
        let t = self.start.elapsed().as_secs_f64();
        println!("{t:7.3}s  {who:<10} {text}");
    }

    fn world(&self) -> &Arc<SharedWorld> {
        self.emulator.world()
    }

    fn create(&self, job_id: &str, document: Value, namespace: Option<&str>) -> Result<(), String> {
        self.say("operator", &format!("CreateJob {job_id}: {document}"));
        self.world()
            .create_job(NewJob {
                job_id: job_id.into(),
                targets: vec![THING.into()],
                document,
                namespace_id: namespace.map(str::to_owned),
                ..NewJob::default()
            })
            .map_err(|e| e.to_string())
    }

    fn status(&self, job_id: &str) -> Option<(JobStatus, String)> {
        self.world().with_jobs(|j| {
            j.execution(job_id, THING, None).map(|e| {
                (
                    e.status,
                    serde_json::to_string(&e.status_details).unwrap_or_default(),
                )
            })
        })
    }

    async fn wait_for(&self, job_id: &str, want: JobStatus) -> Result<Duration, String> {
        let began = Instant::now();
        let limit = Duration::from_secs(20);
        loop {
            if self.status(job_id).is_some_and(|(s, _)| s == want) {
                return Ok(began.elapsed());
            }
            if began.elapsed() > limit {
                return Err(format!(
                    "{job_id} did not reach {want} within {limit:?} (now {:?})",
                    self.status(job_id)
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The component binary: beside this one, built on demand when run through cargo.
fn component_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no directory for the demo binary")?;
    let path = dir.join("greengrass-jobs-handler");
    if path.exists() {
        return Ok(path);
    }
    let cargo = std::env::var("CARGO").map_err(|_| {
        format!(
            "{} is missing; build it with `cargo build --release`",
            path.display()
        )
    })?;
    let release = dir.ends_with("release");
    println!("building the component binary ...");
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "--bin", "greengrass-jobs-handler"]);
    if release {
        build.arg("--release");
    }
    let status = build.status().map_err(|e| e.to_string())?;
    if !status.success() || !path.exists() {
        return Err("building the component failed".into());
    }
    Ok(path)
}

fn spawn_component(
    demo: &Demo,
    binary: &PathBuf,
    socket: &PathBuf,
    work_dir: &std::path::Path,
) -> Result<Child, String> {
    let mut child = Command::new(binary)
        .env(
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
            socket,
        )
        .env("SVCUID", TOKEN)
        .env("AWS_IOT_THING_NAME", THING)
        .current_dir(work_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let start = demo.start;
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child.stderr.take().map(|s| Box::new(s) as _),
    ] {
        let Some(stream) = stream else { continue };
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // Drop the timestamp the component's own log line starts with.
                let text = line
                    .split_once("Z ")
                    .map_or(line.as_str(), |(_, rest)| rest)
                    .trim();
                println!(
                    "{:7.3}s  {:<10} {text}",
                    start.elapsed().as_secs_f64(),
                    "component"
                );
            }
        });
    }
    Ok(child)
}

fn watch_cloud(demo: &Demo) -> Vec<impl Drop> {
    let show = move |start: Instant| {
        Box::new(move |topic: &str, m: &MqttMessage| {
            let payload: Value = serde_json::from_slice(m.payload()).unwrap_or(Value::Null);
            let first_topic = payload["topics"][0].as_str().unwrap_or("");
            let interesting = topic.starts_with("reconnect/")
                || (topic.contains("/subscriptions/subscribed/")
                    && first_topic.starts_with("reconnect/"))
                || topic.starts_with("$aws/events/presence/")
                || topic.ends_with("/notify-next");
            if interesting {
                let text = String::from_utf8_lossy(m.payload());
                let short: String = text.chars().take(110).collect();
                println!(
                    "{:7.3}s  {:<10} {topic} {short}",
                    start.elapsed().as_secs_f64(),
                    "iot-core"
                );
            }
            true
        })
    };
    // `#` does not match `$` topics (MQTT), so lifecycle events need their own filter.
    ["#", "$aws/#"]
        .into_iter()
        .map(|filter| {
            demo.world()
                .tap()
                .subscribe(filter, 0, false, show(demo.start))
        })
        .collect()
}

async fn run(demo: &Demo) -> Result<Vec<String>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let socket = dir.path().join("nucleus.socket");
    let binary = component_binary()?;
    demo.emulator.nucleus().register(
        COMPONENT,
        TOKEN,
        json!({"jitterMaxMs": 500, "responseTimeoutMs": 3000}),
    );
    let _server = demo
        .emulator
        .serve_ipc(&socket)
        .map_err(|e| e.to_string())?;
    let _watch = watch_cloud(demo);
    demo.say(
        "emulator",
        &format!(
            "core device {THING}: nucleus IPC on {}, IoT Core, Jobs, reconnect rule",
            socket.display()
        ),
    );

    demo.create(
        "deployment-1",
        json!({"deploymentId": "d-1", "components": {"aws.greengrass.Cli": {}}}),
        Some("aws-gg-deployment"),
    )?;
    demo.create("add-1", json!({"operation": "add", "a": 2, "b": 3}), None)?;

    demo.say("nucleus", "starting the component");
    let mut child = spawn_component(demo, &binary, &socket, dir.path())?;
    tokio::time::timeout(
        Duration::from_secs(20),
        demo.emulator.nucleus().wait_for_state(COMPONENT, "RUNNING"),
    )
    .await
    .map_err(|_| "the component never reported RUNNING")?;
    demo.wait_for("add-1", JobStatus::Succeeded).await?;

    tokio::time::sleep(Duration::from_millis(300)).await;
    demo.say("emulator", "--- the core's MQTT connection drops ---");
    demo.world().disconnect_nucleus();
    demo.create(
        "while-away",
        json!({"operation": "echo", "message": "queued while the core was offline"}),
        None,
    )?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    demo.say(
        "emulator",
        "--- the core reconnects with a CLEAN session: the queued notify-next is lost ---",
    );
    let reconnected = Instant::now();
    demo.world().reconnect_nucleus(true);
    demo.wait_for("while-away", JobStatus::Succeeded).await?;
    let recovered_in = reconnected.elapsed();

    tokio::time::sleep(Duration::from_millis(200)).await;
    demo.say("nucleus", "stopping the component (SIGTERM)");
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child.
        unsafe { kill(pid as i32, 15) };
    }
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .map_err(|_| "the component did not stop within 5 s of SIGTERM")?
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut summary = Vec::new();
    for job in ["add-1", "while-away", "deployment-1"] {
        let (s, details) = demo.status(job).ok_or(format!("{job} vanished"))?;
        summary.push(format!("{job:<14} {s:<12} {details}"));
    }
    let deployment = demo.status("deployment-1").map(|x| x.0);
    if deployment != Some(JobStatus::Queued) {
        return Err(format!("the deployment job was touched: {deployment:?}"));
    }
    if status.code() != Some(0) {
        return Err(format!("the component exited with {status}"));
    }
    summary.push(format!(
        "component exit code {} after SIGTERM",
        status.code().unwrap_or(-1)
    ));
    summary.push(format!(
        "the job queued during the clean-session disconnect ran {:.0} ms after the reconnect (jitter up to 500 ms)",
        recovered_in.as_secs_f64() * 1000.0
    ));
    Ok(summary)
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let demo = Demo {
        start: Instant::now(),
        emulator: Emulator::with_thing(THING, true),
    };
    let result = runtime.block_on(run(&demo));
    println!();
    match result {
        Ok(summary) => {
            println!("== summary ==");
            for line in summary {
                println!("  {line}");
            }
            println!("  deployment-1 belongs to the nucleus and was left alone; every job of ours ended with an honest status.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("== demo FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
