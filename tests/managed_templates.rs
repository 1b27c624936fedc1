//! The AWS managed job templates, end to end through boto3: `create_job(jobTemplateArn=
//! "arn:aws:iot:us-east-1::jobtemplate/AWS-…:1.0", documentParameters={…})` against the
//! emulator's control listener, the real component running the job with the shipped handlers
//! of `handlers/` in its handler directory, and the package manager, the service manager and
//! the reboot replaced by recording doubles first on the handlers' PATH (`handlerPath`).
//! AWS-Download-File gets its object from boto3's `s3` client (`create_bucket`, `put_object`
//! on the emulated S3) through the presigned URL the Jobs service puts in the document when
//! the device reads it, and fails honestly once that URL has expired on the manual clock.
//!
//! The Python interpreter is `$GGJH_PYTHON` (`.ci/run` points it at a venv with boto3), else
//! the venv at `~/.cache/ggjh-venv`; when neither exists the tests say so and skip.

mod common;

use common::*;
use greengrass_jobs_handler::emulator::clock::ClockMode;
use greengrass_jobs_handler::emulator::http;
use greengrass_jobs_handler::emulator::{Emulator, EmulatorOptions};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const THING: &str = "core-1";
const REGION: &str = "us-east-1";
const ROLE: &str = "arn:aws:iam::123456789012:role/iot-presign";

/// The Python with boto3, or `None` (with a message) when no venv exists.
fn python() -> Option<String> {
    if let Ok(p) = std::env::var("GGJH_PYTHON") {
        return Some(p);
    }
    let venv =
        Path::new(&std::env::var("HOME").unwrap_or_default()).join(".cache/ggjh-venv/bin/python");
    if venv.exists() {
        return Some(venv.to_string_lossy().into_owned());
    }
    eprintln!(
        "SKIPPED: no Python venv with boto3 ({} is absent and GGJH_PYTHON is unset); \
         `bash .ci/run` creates it",
        venv.display()
    );
    None
}

/// boto3 on request (`tests/peers/boto3_calls.py`): one JSON line out, one back.
struct Boto3 {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Boto3 {
    fn spawn(python: &str, control: &str, s3: &str) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/boto3_calls.py");
        let mut child = Command::new(python)
            .arg(script)
            .env("GGJH_CONTROL_URL", control)
            .env("GGJH_S3_URL", s3)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("run the boto3 peer");
        let stdin = child.stdin.take().expect("peer stdin");
        let stdout = BufReader::new(child.stdout.take().expect("peer stdout")).lines();
        Self {
            _child: child,
            stdin,
            stdout,
        }
    }

    /// Sends `request`; the peer's answer (`{"ok": …, "result" | "code", "message"}`).
    async fn call(&mut self, request: Value) -> Value {
        let line = format!("{request}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(60), self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("boto3 did not answer {request}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the boto3 peer exited on {request}"));
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
    }

    /// A call that must succeed; its result.
    async fn ok(&mut self, client: &str, method: &str, kwargs: Value) -> Value {
        let answer = self
            .call(json!({"client": client, "method": method, "kwargs": kwargs}))
            .await;
        assert_eq!(answer["ok"], true, "{client}.{method}({kwargs}): {answer}");
        answer["result"].clone()
    }
}

struct Device {
    emulator: Arc<Emulator>,
    boto3: Boto3,
    work: tempfile::TempDir,
    _ipc: greengrass_jobs_handler::emulator::nucleus::ipc_server::IpcServer,
    socket: PathBuf,
    _dir: tempfile::TempDir,
    _listeners: Vec<tokio::task::JoinHandle<()>>,
    /// Where the doubles record their argv, one line per call.
    record: PathBuf,
    doubles: PathBuf,
}

fn executable(path: &Path, body: &str) {
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The real program `name` on `/usr/bin:/bin`.
fn real_program(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// A device whose handler directory holds the shipped handlers, with boto3 in front of the
/// emulator's control and S3 listeners; `extra` adds configuration and may name the doubles'
/// directory. `None` when there is no boto3 venv.
async fn device(extra: impl FnOnce(&Path) -> Value) -> Option<Device> {
    let python = python()?;
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let doubles = work.path().join("doubles");
    fs::create_dir(&doubles).unwrap();
    let record = work.path().join("record.log");
    for tool in ["apt-get", "systemctl", "fake-reboot", "record"] {
        executable(
            &doubles.join(tool),
            &format!(
                "#!/bin/sh\n{{ printf '%s' \"$(basename \"$0\")\"; for a in \"$@\"; do printf ' [%s]' \"$a\"; done; echo; }} >> '{}'\n",
                record.display()
            ),
        );
    }
    // The downloaders run as they are, except that while `gate` exists they first say so
    // (`gated`) and wait for it to go: the test moves the clock meanwhile.
    let gate = work.path().join("gate");
    let gated = work.path().join("gated");
    for tool in ["curl", "wget"] {
        if let Some(real) = real_program(tool) {
            executable(
                &doubles.join(tool),
                &format!(
                    "#!/bin/sh\nif [ -e '{gate}' ]; then\n  : > '{gated}'\n  while [ -e '{gate}' ]; do sleep 0.05; done\nfi\nexec '{real}' \"$@\"\n",
                    gate = gate.display(),
                    gated = gated.display(),
                    real = real.display()
                ),
            );
        }
    }
    let handlers = work.path().join("handlers");
    fs::create_dir(&handlers).unwrap();
    fs::set_permissions(&handlers, fs::Permissions::from_mode(0o755)).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("handlers");
    for entry in fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        let dest = handlers.join(path.file_name().unwrap());
        fs::copy(&path, &dest).unwrap();
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut config = json!({
        "jitterMaxMs": 0,
        "responseTimeoutMs": 2000,
        "handlerPath": format!("{}:/usr/bin:/bin", doubles.display()),
        "downloadRoots": [work.path().join("downloads").to_string_lossy()],
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut config, extra(&doubles)) {
        c.extend(e);
    }
    let socket = dir.path().join("ipc.socket");
    let emulator = Arc::new(Emulator::with_options(EmulatorOptions {
        thing: THING.into(),
        clock: ClockMode::Manual,
        ..EmulatorOptions::default()
    }));
    emulator.nucleus().register(COMPONENT, TOKEN, config);
    let ipc = emulator.serve_ipc(&socket).unwrap();
    let state = http::HttpState::new(Arc::clone(&emulator));
    let any_port = "127.0.0.1:0".parse().unwrap();
    let (control, control_task) = http::serve_control(Arc::clone(&state), any_port)
        .await
        .unwrap();
    let (s3, s3_task) = http::serve_s3(Arc::clone(&state), any_port).await.unwrap();
    let boto3 = Boto3::spawn(
        &python,
        &format!("http://{control}"),
        &format!("http://{s3}"),
    );
    Some(Device {
        emulator,
        boto3,
        work,
        _ipc: ipc,
        socket,
        _dir: dir,
        _listeners: vec![control_task, s3_task],
        record,
        doubles,
    })
}

impl Device {
    fn work(&self) -> &Path {
        self.work.path()
    }

    fn spawn(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_greengrass-jobs-handler"))
            .current_dir(self.work())
            .env(
                "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
                &self.socket,
            )
            .env("SVCUID", TOKEN)
            .env("AWS_IOT_THING_NAME", THING)
            .env("GGJH_LOG", "debug")
            .env("GGJH_BOOT_ID_FILE", self.work().join("boot_id"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the component")
    }

    /// boto3 `create_job` from the managed `template` with `parameters` and further
    /// CreateJob fields (`presignedUrlConfig`); the peer's answer.
    async fn try_create(
        &mut self,
        job_id: &str,
        template: &str,
        parameters: Value,
        fields: Value,
    ) -> Value {
        let mut kwargs = json!({
            "jobId": job_id,
            "targets": [format!("arn:aws:iot:{REGION}:123456789012:thing/{THING}")],
            "jobTemplateArn": format!("arn:aws:iot:{REGION}::jobtemplate/{template}:1.0"),
            "documentParameters": parameters,
        });
        if let (Value::Object(k), Value::Object(f)) = (&mut kwargs, fields) {
            k.extend(f);
        }
        self.boto3
            .call(json!({"client": "iot", "method": "create_job", "kwargs": kwargs}))
            .await
    }

    async fn create(&mut self, job_id: &str, template: &str, parameters: Value) {
        self.create_with(job_id, template, parameters, json!({}))
            .await;
    }

    async fn create_with(
        &mut self,
        job_id: &str,
        template: &str,
        parameters: Value,
        fields: Value,
    ) {
        let answer = self.try_create(job_id, template, parameters, fields).await;
        assert_eq!(answer["ok"], true, "create_job {job_id}: {answer}");
        assert_eq!(answer["result"]["jobId"], job_id, "{answer}");
    }

    /// Waits (through boto3 DescribeJobExecution) for the execution to end; asserts it ended
    /// `want` and returns its statusDetails.
    async fn wait(&mut self, job_id: &str, want: &str) -> BTreeMap<String, String> {
        let answer = self
            .boto3
            .call(json!({"wait_execution": job_id, "thing": THING, "timeout": 30}))
            .await;
        let execution = &answer["result"];
        let details: BTreeMap<String, String> =
            serde_json::from_value(execution["statusDetails"]["detailsMap"].clone())
                .unwrap_or_default();
        assert_eq!(
            execution["status"], want,
            "{job_id} ended {}, not {want}: {details:?}",
            execution["status"]
        );
        details
    }

    fn recorded(&self) -> Vec<String> {
        fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn reason(details: &BTreeMap<String, String>) -> String {
    let mut text = details.get("reason").cloned().unwrap_or_default();
    text.push_str(details.get("stderr").map_or("", String::as_str));
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_and_remove_application_use_the_package_manager() {
    let Some(mut d) = device(|_| json!({})).await else {
        return;
    };
    let _component = d.spawn();
    d.create(
        "install-1",
        "AWS-Install-Application",
        json!({"packages": "lftp dos2unix"}),
    )
    .await;
    let details = d.wait("install-1", "SUCCEEDED").await;
    assert_eq!(details["steps"], "1 of 1 succeeded");
    d.create(
        "remove-1",
        "AWS-Remove-Application",
        json!({"packages": "lftp", "pathToHandler": "default"}),
    )
    .await;
    d.wait("remove-1", "SUCCEEDED").await;
    assert_eq!(
        d.recorded(),
        [
            "apt-get [install] [-y] [-q] [lftp] [dos2unix]",
            "apt-get [remove] [-y] [-q] [lftp]"
        ]
    );
    // A name no package can have never reaches the package manager.
    d.create(
        "install-2",
        "AWS-Install-Application",
        json!({"packages": "lftp $(reboot);x"}),
    )
    .await;
    let details = d.wait("install-2", "FAILED").await;
    assert!(
        reason(&details).contains("refusing package name"),
        "{details:?}"
    );
    // The service refuses a missing required parameter and an unknown one.
    for parameters in [json!({}), json!({"packages": "x", "bogus": "1"})] {
        let answer = d
            .try_create(
                "install-3",
                "AWS-Install-Application",
                parameters,
                json!({}),
            )
            .await;
        assert_eq!(answer["code"], "InvalidRequestException", "{answer}");
    }
    assert_eq!(d.recorded().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_stop_and_restart_application_use_systemctl() {
    let Some(mut d) = device(|_| json!({})).await else {
        return;
    };
    let _component = d.spawn();
    for (job, template) in [
        ("start-1", "AWS-Start-Application"),
        ("stop-1", "AWS-Stop-Application"),
        ("restart-1", "AWS-Restart-Application"),
    ] {
        d.create(job, template, json!({"services": "nginx  cron"}))
            .await;
        d.wait(job, "SUCCEEDED").await;
    }
    assert_eq!(
        d.recorded(),
        [
            "systemctl [start] [--] [nginx] [cron]",
            "systemctl [stop] [--] [nginx] [cron]",
            "systemctl [restart] [--] [nginx] [cron]"
        ]
    );
    d.create(
        "start-2",
        "AWS-Start-Application",
        json!({"services": "--force"}),
    )
    .await;
    let details = d.wait("start-2", "FAILED").await;
    assert!(
        reason(&details).contains("refusing service name"),
        "{details:?}"
    );
    // A handler path escaping the handler directory is REJECTED.
    d.create(
        "start-3",
        "AWS-Start-Application",
        json!({"services": "nginx", "pathToHandler": "../doubles"}),
    )
    .await;
    let details = d.wait("start-3", "REJECTED").await;
    assert!(
        reason(&details).contains("handler directory"),
        "{details:?}"
    );
    assert_eq!(d.recorded().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_file_fetches_a_presigned_url_and_fails_once_it_expired() {
    let Some(mut d) = device(|_| json!({})).await else {
        return;
    };
    d.boto3
        .ok("s3", "create_bucket", json!({"Bucket": "firmware"}))
        .await;
    let put = json!({"Bucket": "firmware", "Key": "v2/image.bin", "Body": "new firmware\n"});
    d.boto3.ok("s3", "put_object", put).await;
    let target = d.work().join("downloads/firmware/image.bin");
    let parameters = json!({
        "downloadUrl": "${aws:iot:s3-presigned-url-v2:https://s3.us-east-1.amazonaws.com/firmware/v2/image.bin}",
        "filePath": target.to_str().unwrap(),
    });
    let presign = json!({"presignedUrlConfig": {"roleArn": ROLE, "expiresInSec": 60}});

    // A document with placeholders needs the role the service presigns with.
    let answer = d
        .try_create(
            "download-0",
            "AWS-Download-File",
            parameters.clone(),
            json!({}),
        )
        .await;
    assert_eq!(answer["code"], "InvalidRequestException", "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("roleArn"),
        "{answer}"
    );
    let answer = d
        .try_create(
            "download-0",
            "AWS-Download-File",
            parameters.clone(),
            json!({"presignedUrlConfig": {"roleArn": ROLE, "expiresInSec": 3601}}),
        )
        .await;
    assert_eq!(answer["code"], "InvalidRequestException", "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("60 to 3600"),
        "{answer}"
    );

    let _component = d.spawn();
    d.create_with(
        "download-1",
        "AWS-Download-File",
        parameters.clone(),
        presign.clone(),
    )
    .await;
    d.wait("download-1", "SUCCEEDED").await;
    assert_eq!(fs::read(&target).unwrap(), b"new firmware\n");
    let leftovers: Vec<_> = fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no temporary file is left: {leftovers:?}"
    );
    // The stored job keeps its placeholder; only device reads get URLs.
    let stored = d
        .boto3
        .ok("iot", "get_job_document", json!({"jobId": "download-1"}))
        .await;
    assert!(
        stored["document"]
            .as_str()
            .unwrap()
            .contains("${aws:iot:s3-presigned-url-v2:"),
        "{stored}"
    );

    // The device reads the next document, then waits longer than the URL lives before it
    // fetches: S3 answers 403, the job fails with that reason and the old file stays.
    let put = json!({"Bucket": "firmware", "Key": "v2/image.bin", "Body": "newer\n"});
    d.boto3.ok("s3", "put_object", put).await;
    let gate = d.work().join("gate");
    let gated = d.work().join("gated");
    fs::write(&gate, "").unwrap();
    d.create_with(
        "download-2",
        "AWS-Download-File",
        parameters.clone(),
        presign.clone(),
    )
    .await;
    within("the download waits at the gate", async {
        while !gated.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let advanced = d.boto3.call(json!({"advance_clock": 61})).await;
    assert_eq!(advanced["ok"], true, "{advanced}");
    fs::remove_file(&gate).unwrap();
    let details = d.wait("download-2", "FAILED").await;
    assert!(reason(&details).contains("HTTP 403"), "{details:?}");
    assert!(reason(&details).contains("expired"), "{details:?}");
    assert_eq!(fs::read(&target).unwrap(), b"new firmware\n");

    // Run again, the device gets a fresh URL and the newer object.
    d.create_with("download-3", "AWS-Download-File", parameters, presign)
        .await;
    d.wait("download-3", "SUCCEEDED").await;
    assert_eq!(fs::read(&target).unwrap(), b"newer\n");

    // Outside downloadRoots: refused before anything is fetched.
    let escape = json!({
        "downloadUrl": "https://example.com/x",
        "filePath": d.work().join("handlers/reboot.sh").to_str().unwrap(),
    });
    d.create("download-4", "AWS-Download-File", escape).await;
    let details = d.wait("download-4", "FAILED").await;
    assert!(
        reason(&details).contains("outside the allowed"),
        "{details:?}"
    );
    let plain = json!({
        "downloadUrl": "http://example.com/x",
        "filePath": target.to_str().unwrap(),
    });
    d.create("download-5", "AWS-Download-File", plain).await;
    let details = d.wait("download-5", "FAILED").await;
    assert!(reason(&details).contains("https"), "{details:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_command_runs_allowed_programs_without_a_shell() {
    let Some(mut d) = device(
        |doubles| json!({"runCommandAllowList": [doubles.join("record").to_string_lossy()]}),
    )
    .await
    else {
        return;
    };
    let record = d.doubles.join("record");
    let _component = d.spawn();
    let command = format!("{},hello world,$(id)\\,x", record.display());
    d.create("run-1", "AWS-Run-Command", json!({"command": command}))
        .await;
    d.wait("run-1", "SUCCEEDED").await;
    assert_eq!(d.recorded(), ["record [hello world] [$(id),x]"]);
    d.create(
        "run-2",
        "AWS-Run-Command",
        json!({"command": "/bin/sh,-c,id"}),
    )
    .await;
    let details = d.wait("run-2", "REJECTED").await;
    assert!(
        reason(&details).contains("runCommandAllowList"),
        "{details:?}"
    );
    // Another user needs runAsUsers.
    let command = format!("{},x", record.display());
    d.create(
        "run-3",
        "AWS-Run-Command",
        json!({"command": command, "runAsUser": "nobody"}),
    )
    .await;
    let details = d.wait("run-3", "REJECTED").await;
    assert!(reason(&details).contains("runAsUsers"), "{details:?}");
    assert_eq!(d.recorded().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_goes_through_the_reboot_command_and_is_reported_after_the_reboot() {
    let Some(mut d) = device(
        |doubles| json!({"rebootCommand": [doubles.join("fake-reboot").to_string_lossy()], "rebootWaitSeconds": 120}),
    )
    .await
    else {
        return;
    };
    fs::write(d.work().join("boot_id"), "boot-1").unwrap();
    let mut component = d.spawn();
    d.create("reboot-1", "AWS-Reboot", json!({})).await;
    within("the reboot command runs", async {
        while d.recorded().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(d.recorded(), ["fake-reboot"]);
    // The device goes down with the component and comes back with a new boot id.
    component.start_kill().unwrap();
    within("the component dies", component.wait())
        .await
        .unwrap();
    fs::write(d.work().join("boot_id"), "boot-2").unwrap();
    d.emulator.nucleus().forget_state(COMPONENT);
    let _after = d.spawn();
    let details = d.wait("reboot-1", "SUCCEEDED").await;
    assert_eq!(details["reboot"], "completed", "{details:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_without_a_reboot_command_is_rejected() {
    let Some(mut d) = device(|_| json!({})).await else {
        return;
    };
    let _component = d.spawn();
    d.create("reboot-2", "AWS-Reboot", json!({})).await;
    let details = d.wait("reboot-2", "REJECTED").await;
    assert!(reason(&details).contains("rebootCommand"), "{details:?}");
}
