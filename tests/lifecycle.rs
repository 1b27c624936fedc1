//! The component run the way the nucleus runs it: the recipe's Run script through `sh -c` with
//! the artifact path interpolated, the working directory set to the component's work path, the
//! nucleus's environment, and stop as SIGTERM then SIGKILL after 5 s.

mod common;

use common::*;
use greengrass_jobs_handler::emulator::cloud::jobs_service::NewJob;
use greengrass_jobs_handler::emulator::Emulator;
use greengrass_jobs_handler::jobs::messages::JobStatus;
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const THING: &str = "lifecycle-core";

/// The install script of the recipe's x86_64 manifest.
fn install_script() -> String {
    let recipe = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipe.yaml"),
    )
    .unwrap();
    let line = recipe
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("install:"))
        .expect("an install step");
    // A YAML double-quoted scalar: its only escapes here are \".
    line.trim_start_matches("install:")
        .trim()
        .trim_matches('"')
        .replace("\\\"", "\"")
}

/// The run script of the recipe's x86_64 manifest.
fn run_script() -> String {
    let recipe = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipe.yaml"),
    )
    .unwrap();
    let line = recipe
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("run:") && l.contains("greengrass-jobs-handler-x86_64"))
        .expect("an x86_64 run step");
    line.trim_start_matches("run:")
        .trim()
        .trim_matches('"')
        .to_owned()
}

fn signal(pid: u32, sig: i32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill(2) on our own child.
    unsafe {
        kill(pid as i32, sig);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packaged_run_reports_running_logs_plainly_and_stops_on_sigterm() {
    let root = tempfile::tempdir().unwrap();
    let artifacts = root
        .path()
        .join("packages/artifacts/GreengrassJobsHandler/0.1.0");
    let work = root.path().join("work/GreengrassJobsHandler");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_greengrass-jobs-handler"),
        artifacts.join("greengrass-jobs-handler-x86_64"),
    )
    .unwrap();
    let socket = root.path().join("ipc.socket");
    let emulator = Emulator::with_thing(THING, true);
    emulator.nucleus().register(
        COMPONENT,
        TOKEN,
        json!({"jitterMaxMs": "0", "logLevel": "info"}),
    );
    let _server = emulator.serve_ipc(&socket).unwrap();

    // The unarchived handlers.zip, and a handler of the user's own that must survive.
    let unarchived = root
        .path()
        .join("packages/artifacts-unarchived/GreengrassJobsHandler/0.1.0");
    std::fs::create_dir_all(unarchived.join("handlers")).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("handlers");
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            unarchived.join("handlers").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    std::fs::create_dir_all(work.join("handlers")).unwrap();
    std::fs::write(work.join("handlers/reboot.sh"), "#!/bin/sh\necho mine\n").unwrap();

    // Install, as the nucleus runs it: creates the handler and journal directories and copies
    // the shipped handlers that the handler directory lacks.
    let install = install_script()
        .replace("{work:path}", &work.to_string_lossy())
        .replace(
            "{artifacts:decompressedPath}",
            &unarchived.to_string_lossy(),
        );
    let status = std::process::Command::new("sh")
        .args(["-c", &install])
        .current_dir(&work)
        .status()
        .unwrap();
    assert!(status.success());
    for entry in std::fs::read_dir(&shipped).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let name = entry.unwrap().file_name();
        let installed = work.join("handlers").join(&name);
        if name == "reboot.sh" {
            assert_eq!(
                std::fs::read_to_string(&installed).unwrap(),
                "#!/bin/sh\necho mine\n",
                "a user's own handler is kept"
            );
        } else {
            let mode = std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o755, "{name:?} installed");
        }
    }
    for dir in ["handlers", "journal"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(work.join(dir))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o755, "{dir}");
    }
    let script = run_script().replace("{artifacts:path}", &artifacts.to_string_lossy());
    assert!(
        script.starts_with("exec "),
        "the binary replaces sh, so SIGTERM reaches it"
    );
    let spawn = || {
        tokio::process::Command::new("sh")
            .args(["-c", &script])
            .current_dir(&work)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("SVCUID", TOKEN)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", TOKEN)
            .env("AWS_IOT_THING_NAME", THING)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("GGC_VERSION", "2.14.0")
            .env("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH", &socket)
            .env(
                "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
                &socket,
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            out.push(line);
        }
        out
    });
    within(
        "RUNNING",
        emulator.nucleus().wait_for_state(COMPONENT, "RUNNING"),
    )
    .await;
    emulator
        .world()
        .create_job(NewJob {
            job_id: "long".into(),
            targets: vec![THING.into()],
            document: json!({"operation": "sleep", "seconds": 600}),
            ..NewJob::default()
        })
        .unwrap();
    within("job running", async {
        while emulator
            .world()
            .with_jobs(|j| j.execution("long", THING, None).map(|e| e.status))
            != Some(JobStatus::InProgress)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    // The nucleus's stop: SIGTERM, then SIGKILL if still alive after 5 s.
    let stopping = Instant::now();
    signal(child.id().unwrap(), 15);
    let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => {
            child.start_kill().unwrap();
            panic!("still alive 5 s after SIGTERM: the nucleus would SIGKILL it");
        }
    };
    assert_eq!(status.code(), Some(0), "exit 0 after SIGTERM");
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "stopped in {:?}",
        stopping.elapsed()
    );
    let lines = within("log lines", lines).await.unwrap();
    assert!(lines.iter().any(|l| l.contains("job started")), "{lines:?}");
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "no colour codes: {line:?}");
        assert!(
            !line.starts_with("20"),
            "no timestamp of our own (the nucleus adds one): {line:?}"
        );
        assert!(
            line.trim_start().starts_with(['I', 'W', 'E', 'D', 'T']),
            "level first: {line:?}"
        );
    }
    // The journal kept the interrupted job; the next start reports it honestly.
    emulator.nucleus().forget_state(COMPONENT);
    let _again = spawn();
    within("interrupted job reported", async {
        while emulator
            .world()
            .with_jobs(|j| j.execution("long", THING, None).map(|e| e.status))
            != Some(JobStatus::Failed)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A cross-built binary (`GGJH_CROSS_BINARY`, e.g. the aarch64 artifact of `recipe/gdk_build.py`)
/// run under an emulator (`GGJH_CROSS_RUNNER`, e.g. `qemu-aarch64`) connects, reports RUNNING and
/// runs a job. `.ci/run` runs it with the aarch64 artifact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs GGJH_CROSS_BINARY and GGJH_CROSS_RUNNER (bash .ci/run sets them)"]
async fn cross_built_binary_runs_a_job() {
    let binary = std::env::var("GGJH_CROSS_BINARY").expect("GGJH_CROSS_BINARY");
    let runner = std::env::var("GGJH_CROSS_RUNNER").expect("GGJH_CROSS_RUNNER");
    let root = tempfile::tempdir().unwrap();
    let socket = root.path().join("ipc.socket");
    let emulator = Emulator::with_thing(THING, true);
    emulator
        .nucleus()
        .register(COMPONENT, TOKEN, json!({"jitterMaxMs": "0"}));
    let _server = emulator.serve_ipc(&socket).unwrap();
    emulator
        .world()
        .create_job(NewJob {
            job_id: "cross".into(),
            targets: vec![THING.into()],
            document: json!({"operation": "add", "a": 1, "b": 1}),
            ..NewJob::default()
        })
        .unwrap();
    let mut child = tokio::process::Command::new(runner)
        .arg(binary)
        .current_dir(root.path())
        .env("SVCUID", TOKEN)
        .env("AWS_IOT_THING_NAME", THING)
        .env(
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
            &socket,
        )
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        emulator.nucleus().wait_for_state(COMPONENT, "RUNNING"),
    )
    .await
    .expect("RUNNING under the emulator");
    tokio::time::timeout(Duration::from_secs(30), async {
        while emulator
            .world()
            .with_jobs(|j| j.execution("cross", THING, None).map(|e| e.status))
            != Some(JobStatus::Succeeded)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the job ran");
    signal(child.id().unwrap(), 15);
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("stopped")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
