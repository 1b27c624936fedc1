//! The AWS managed job templates, end to end: the document each template produces (from the
//! emulator's templates, with `documentParameters` substituted) runs through the real
//! component against the emulator, with the shipped handlers of `handlers/` in its handler
//! directory and the package manager, the service manager and the reboot replaced by
//! recording doubles first on the handlers' PATH (`handlerPath`). AWS-Download-File fetches a
//! presigned URL from the emulated S3 (served over loopback HTTP by this test) and fails
//! honestly once the URL has expired.

mod common;

use common::*;
use greengrass_jobs_handler::emulator::cloud::job_templates::JobTemplates;
use greengrass_jobs_handler::emulator::cloud::jobs_service::NewJob;
use greengrass_jobs_handler::emulator::cloud::s3::{replace_presigned_placeholders, S3};
use greengrass_jobs_handler::emulator::Emulator;
use greengrass_jobs_handler::jobs::messages::JobStatus;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

const THING: &str = "core-1";
const REGION: &str = "us-east-1";

struct Device {
    emulator: Emulator,
    work: tempfile::TempDir,
    _server: greengrass_jobs_handler::emulator::nucleus::ipc_server::IpcServer,
    socket: PathBuf,
    _dir: tempfile::TempDir,
    /// Where the doubles record their argv, one line per call.
    record: PathBuf,
    doubles: PathBuf,
}

fn executable(path: &Path, body: &str) {
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A device whose handler directory holds the shipped handlers.
fn device(extra: Value) -> Device {
    device_with(|_| extra)
}

/// [`device`], with configuration that may name the doubles' directory.
fn device_with(extra: impl FnOnce(&Path) -> Value) -> Device {
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
    let emulator = Emulator::with_thing(THING, true);
    emulator.nucleus().register(COMPONENT, TOKEN, config);
    let server = emulator.serve_ipc(&socket).unwrap();
    Device {
        emulator,
        work,
        _server: server,
        socket,
        _dir: dir,
        record,
        doubles,
    }
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

    /// CreateJob with `jobTemplateArn` and `documentParameters`, as boto3 would send it.
    fn create_from_template(&self, job_id: &str, template: &str, params: &[(&str, &str)]) {
        let document = template_document(template, params);
        self.create(job_id, &document);
    }

    fn create(&self, job_id: &str, document: &str) {
        self.emulator
            .world()
            .create_job(NewJob {
                job_id: job_id.into(),
                targets: vec![THING.into()],
                document: serde_json::from_str(document).unwrap(),
                ..NewJob::default()
            })
            .unwrap();
    }

    async fn wait(&self, job_id: &str, want: JobStatus) -> BTreeMap<String, String> {
        within(&format!("{job_id} reaching {want}"), async {
            loop {
                let seen = self.emulator.world().with_jobs(|j| {
                    j.execution(job_id, THING, None)
                        .map(|e| (e.status, e.status_details.clone()))
                });
                match seen {
                    Some((st, details)) if st == want => {
                        return details.into_iter().collect::<BTreeMap<_, _>>()
                    }
                    Some((st, details)) if st.is_terminal() => {
                        panic!("{job_id} ended {st}, not {want}: {details:?}")
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await
    }

    fn recorded(&self) -> Vec<String> {
        fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn template_document(template: &str, params: &[(&str, &str)]) -> String {
    let templates = JobTemplates::new(REGION, "123456789012");
    let arn = format!("arn:aws:iot:{REGION}::jobtemplate/{template}:1.0");
    let params = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    templates.document_for_job(&arn, &params).unwrap()
}

fn reason(details: &BTreeMap<String, String>) -> String {
    let mut text = details.get("reason").cloned().unwrap_or_default();
    text.push_str(details.get("stderr").map_or("", String::as_str));
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_and_remove_application_use_the_package_manager() {
    let d = device(json!({}));
    let _component = d.spawn();
    d.create_from_template(
        "install-1",
        "AWS-Install-Application",
        &[("packages", "lftp dos2unix")],
    );
    let details = d.wait("install-1", JobStatus::Succeeded).await;
    assert_eq!(details["steps"], "1 of 1 succeeded");
    d.create_from_template(
        "remove-1",
        "AWS-Remove-Application",
        &[("packages", "lftp"), ("pathToHandler", "default")],
    );
    d.wait("remove-1", JobStatus::Succeeded).await;
    assert_eq!(
        d.recorded(),
        [
            "apt-get [install] [-y] [-q] [lftp] [dos2unix]",
            "apt-get [remove] [-y] [-q] [lftp]"
        ]
    );
    // A name no package can have never reaches the package manager.
    d.create_from_template(
        "install-2",
        "AWS-Install-Application",
        &[("packages", "lftp $(reboot);x")],
    );
    let details = d.wait("install-2", JobStatus::Failed).await;
    assert!(
        reason(&details).contains("refusing package name"),
        "{details:?}"
    );
    assert_eq!(d.recorded().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_stop_and_restart_application_use_systemctl() {
    let d = device(json!({}));
    let _component = d.spawn();
    for (job, template) in [
        ("start-1", "AWS-Start-Application"),
        ("stop-1", "AWS-Stop-Application"),
        ("restart-1", "AWS-Restart-Application"),
    ] {
        d.create_from_template(job, template, &[("services", "nginx  cron")]);
        d.wait(job, JobStatus::Succeeded).await;
    }
    assert_eq!(
        d.recorded(),
        [
            "systemctl [start] [--] [nginx] [cron]",
            "systemctl [stop] [--] [nginx] [cron]",
            "systemctl [restart] [--] [nginx] [cron]"
        ]
    );
    d.create_from_template(
        "start-2",
        "AWS-Start-Application",
        &[("services", "--force")],
    );
    let details = d.wait("start-2", JobStatus::Failed).await;
    assert!(
        reason(&details).contains("refusing service name"),
        "{details:?}"
    );
    // A handler path escaping the handler directory is REJECTED.
    d.create_from_template(
        "start-3",
        "AWS-Start-Application",
        &[("services", "nginx"), ("pathToHandler", "../doubles")],
    );
    let details = d.wait("start-3", JobStatus::Rejected).await;
    assert!(
        reason(&details).contains("handler directory"),
        "{details:?}"
    );
    assert_eq!(d.recorded().len(), 3);
}

/// The emulated S3 over loopback HTTP: GET with a presigned query.
async fn serve_s3(store: Arc<Mutex<S3>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let target = text.split_whitespace().nth(1).unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let (status, body) = match store.lock().unwrap().get_presigned(path, query, now) {
                    Ok(object) => (200, object.data.clone()),
                    Err(e) => (
                        e.status,
                        format!(
                            "<Error><Code>{}</Code><Message>{}</Message></Error>",
                            e.code, e.message
                        )
                        .into_bytes(),
                    ),
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_file_fetches_a_presigned_url_and_fails_once_it_expired() {
    let d = device(json!({}));
    let store = Arc::new(Mutex::new(S3::new(fastrand::u64(..))));
    {
        let mut s = store.lock().unwrap();
        s.create_bucket("firmware").unwrap();
        s.put_object(
            "firmware",
            "v2/image.bin",
            b"new firmware\n".to_vec(),
            "",
            0,
        )
        .unwrap();
    }
    let base = serve_s3(Arc::clone(&store)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let target = d.work().join("downloads/firmware/image.bin");
    let template = template_document(
        "AWS-Download-File",
        &[
            (
                "downloadUrl",
                "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/firmware/v2/image.bin}",
            ),
            ("filePath", target.to_str().unwrap()),
        ],
    );
    // What a device reads: the placeholder replaced with a fresh presigned URL.
    let fresh = replace_presigned_placeholders(&template, &store.lock().unwrap(), now, 3600, &base);
    let _component = d.spawn();
    d.create("download-1", &fresh);
    d.wait("download-1", JobStatus::Succeeded).await;
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

    // A URL signed two hours ago for one hour: S3 answers 403, the job fails and the old file stays.
    let stale =
        replace_presigned_placeholders(&template, &store.lock().unwrap(), now - 7200, 3600, &base);
    store
        .lock()
        .unwrap()
        .put_object("firmware", "v2/image.bin", b"newer\n".to_vec(), "", 1)
        .unwrap();
    d.create("download-2", &stale);
    let details = d.wait("download-2", JobStatus::Failed).await;
    assert!(reason(&details).contains("403"), "{details:?}");
    assert_eq!(fs::read(&target).unwrap(), b"new firmware\n");

    // Outside downloadRoots: refused before anything is fetched.
    let escape = template_document(
        "AWS-Download-File",
        &[
            ("downloadUrl", "https://example.com/x"),
            (
                "filePath",
                d.work().join("handlers/reboot.sh").to_str().unwrap(),
            ),
        ],
    );
    d.create("download-3", &escape);
    let details = d.wait("download-3", JobStatus::Failed).await;
    assert!(
        reason(&details).contains("outside the allowed"),
        "{details:?}"
    );
    let plain = template_document(
        "AWS-Download-File",
        &[
            ("downloadUrl", "http://example.com/x"),
            ("filePath", target.to_str().unwrap()),
        ],
    );
    d.create("download-4", &plain);
    let details = d.wait("download-4", JobStatus::Failed).await;
    assert!(reason(&details).contains("https"), "{details:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_command_runs_allowed_programs_without_a_shell() {
    let d = device_with(
        |doubles| json!({"runCommandAllowList": [doubles.join("record").to_string_lossy()]}),
    );
    let record = d.doubles.join("record");
    let _component = d.spawn();
    let command = format!("{},hello world,$(id)\\,x", record.display());
    d.create_from_template("run-1", "AWS-Run-Command", &[("command", &command)]);
    d.wait("run-1", JobStatus::Succeeded).await;
    assert_eq!(d.recorded(), ["record [hello world] [$(id),x]"]);
    d.create_from_template("run-2", "AWS-Run-Command", &[("command", "/bin/sh,-c,id")]);
    let details = d.wait("run-2", JobStatus::Rejected).await;
    assert!(
        reason(&details).contains("runCommandAllowList"),
        "{details:?}"
    );
    // Another user needs runAsUsers.
    let command = format!("{},x", record.display());
    d.create_from_template(
        "run-3",
        "AWS-Run-Command",
        &[("command", &command), ("runAsUser", "nobody")],
    );
    let details = d.wait("run-3", JobStatus::Rejected).await;
    assert!(reason(&details).contains("runAsUsers"), "{details:?}");
    assert_eq!(d.recorded().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_goes_through_the_reboot_command_and_is_reported_after_the_reboot() {
    let d = device_with(
        |doubles| json!({"rebootCommand": [doubles.join("fake-reboot").to_string_lossy()], "rebootWaitSeconds": 120}),
    );
    fs::write(d.work().join("boot_id"), "boot-1").unwrap();
    let mut component = d.spawn();
    d.create_from_template("reboot-1", "AWS-Reboot", &[]);
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
    let details = d.wait("reboot-1", JobStatus::Succeeded).await;
    assert_eq!(details["reboot"], "completed", "{details:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_without_a_reboot_command_is_rejected() {
    let d = device(json!({}));
    let _component = d.spawn();
    d.create_from_template("reboot-2", "AWS-Reboot", &[]);
    let details = d.wait("reboot-2", JobStatus::Rejected).await;
    assert!(reason(&details).contains("rebootCommand"), "{details:?}");
}
