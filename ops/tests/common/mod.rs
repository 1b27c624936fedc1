//! What the end-to-end tests share: the emulator process (`ggjh-emulator` of the root crate),
//! the component (`greengrass-jobs-handler`) connected to it, and running `ggjh-ops`.
//!
//! The two root binaries come from `$GGJH_EMULATOR_BIN` and `$GGJH_COMPONENT_BIN` when set
//! (`.ci/run` sets them), else from `cargo build --bins` of the root crate into
//! `$GGJH_ROOT_TARGET_DIR` (default: the root's `target/`).

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const COMPONENT: &str = "GreengrassJobsHandler";
pub const TOKEN: &str = "ops-test-token";

struct Binaries {
    emulator: PathBuf,
    component: PathBuf,
}

fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        if let (Ok(emulator), Ok(component)) = (
            std::env::var("GGJH_EMULATOR_BIN"),
            std::env::var("GGJH_COMPONENT_BIN"),
        ) {
            return Binaries {
                emulator: emulator.into(),
                component: component.into(),
            };
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var("GGJH_ROOT_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"));
        let built = std::process::Command::new(env!("CARGO"))
            .args(["build", "--locked", "--bins", "--message-format=json"])
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target)
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build for the root crate");
        assert!(
            built.status.success(),
            "cargo build of the root crate failed"
        );
        let mut found = (None, None);
        for line in String::from_utf8_lossy(&built.stdout).lines() {
            let Ok(message) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let exe = message["executable"].as_str().map(PathBuf::from);
            match message["target"]["name"].as_str() {
                Some("ggjh-emulator") => found.0 = exe,
                Some("greengrass-jobs-handler") => found.1 = exe,
                _ => {}
            }
        }
        Binaries {
            emulator: found.0.expect("ggjh-emulator built"),
            component: found.1.expect("greengrass-jobs-handler built"),
        }
    })
}

/// A running `ggjh-emulator` (killed on drop) and its control listener.
pub struct Emulator {
    pub control: String,
    pub dir: tempfile::TempDir,
    _process: Child,
    _components: Vec<Child>,
}

impl Emulator {
    /// Starts the emulator with core `thing` and further cores `others` (`clock`: `wall` or
    /// `manual`), the component registered on each.
    pub async fn start(thing: &str, others: &[&str], clock: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config.json");
        std::fs::write(&config, r#"{"jitterMaxMs": 0}"#).expect("write config");
        let mut command = Command::new(&binaries().emulator);
        command
            .arg("--socket-dir")
            .arg(dir.path())
            .args(["--thing", thing, "--clock", clock])
            .arg("--component")
            .arg(format!("{COMPONENT}={TOKEN}"))
            .arg("--config")
            .arg(format!("{COMPONENT}={}", config.display()));
        for other in others {
            command.args(["--core", other]);
        }
        let mut process = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start ggjh-emulator");
        let stdout = process.stdout.take().expect("emulator stdout");
        let mut lines = BufReader::new(stdout).lines();
        let control = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("emulator ready") {
                    return line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("control=").map(str::to_owned));
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("the emulator's ready line with control=");
        // Keep draining the log so that the emulator never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            control,
            dir,
            _process: process,
            _components: Vec::new(),
        }
    }

    /// Starts the component as core `thing`.
    pub fn run_component(&mut self, thing: &str) {
        let work = self.dir.path().join(format!("work-{thing}"));
        std::fs::create_dir_all(&work).expect("work dir");
        let child = Command::new(&binaries().component)
            .current_dir(&work)
            .env(
                "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
                self.dir.path().join(format!("{thing}.socket")),
            )
            .env("SVCUID", TOKEN)
            .env("AWS_IOT_THING_NAME", thing)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the component");
        self._components.push(child);
    }

    /// `POST /emulator/clock/advance?seconds=N` (manual clock).
    pub async fn advance(&self, seconds: u64) {
        let url = format!("{}/emulator/clock/advance?seconds={seconds}", self.control);
        http_post(&url).await;
    }

    /// An AWS SDK client on the emulator, for setting up and checking what `ggjh-ops` did.
    pub async fn iot(&self) -> aws_sdk_iot::Client {
        aws_sdk_iot::Client::new(&self.sdk_config())
    }

    /// An `iot-data` client on the emulator (shadows).
    pub async fn data(&self) -> aws_sdk_iotdataplane::Client {
        aws_sdk_iotdataplane::Client::new(&self.sdk_config())
    }

    /// Region, test credentials, the emulator's URL and a rustls client on ring.
    fn sdk_config(&self) -> aws_config::SdkConfig {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.control)
            .credentials_provider(aws_sdk_iot::config::SharedCredentialsProvider::new(
                aws_sdk_iot::config::Credentials::new("test", "test", None, None, "ops-tests"),
            ))
            .http_client(http)
            .build()
    }
}

/// A plain HTTP/1.1 POST without a body, for the emulator's own routes.
pub async fn http_post(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("connect to the emulator");
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .expect("read answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{url}: {answer}");
    answer
}

/// The environment `ggjh-ops` runs in: dummy credentials (the emulator does not check them),
/// no instance metadata lookups, no profile files.
pub fn ops(control: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = ops_command(env);
    command.arg("--endpoint-url").arg(control).args(args);
    command
}

/// `ggjh-ops` in that environment, without arguments.
pub fn ops_command(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ggjh-ops"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

/// Runs `command` to its end (at most `limit`).
pub async fn finish(mut command: Command, limit: Duration) -> Output {
    let child = command.spawn().expect("start ggjh-ops");
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .expect("ggjh-ops finished in time")
        .expect("ggjh-ops output")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
