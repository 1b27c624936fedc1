//! The component process against the targets: start → all subscriptions accepted, reconnect
//! message → `jobs/get` published, notify-next → first Jobs request and → start request (jitter
//! off), idle RSS, wake-ups while idle, and peak RSS while a job floods its output.
//!
//! Messages are paced under IoT Core's 100 publishes a second per connection, which the
//! emulator enforces as AWS does (a faster bench would measure refused publishes).
//!
//! Run: `cargo bench --bench component` (prints a report and writes it to
//! `$CARGO_TARGET_DIR/ggjh-component-report.txt`). Uses the release build of the component.

use greengrass_jobs_handler::emulator::cloud::jobs_service::NewJob;
use greengrass_jobs_handler::emulator::Emulator;
use greengrass_jobs_handler::ipc::model::{MqttMessage, Qos};
use greengrass_jobs_handler::ipc::{ClientOptions, IpcClient};
use greengrass_jobs_handler::jobs::messages::JobStatus;
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};

const THING: &str = "bench-core";
const COMPONENT: &str = "GreengrassJobsHandler";
const TOKEN: &str = "bench-token";
/// Jobs topics plus the reconnect topic.
const SUBSCRIPTIONS: usize = 11;
/// Bytes the flooding job writes to its stdout and its stderr, each.
const FLOOD_BYTES: u64 = 100 << 20;

/// The component binary: `GGJH_BENCH_BINARY` (e.g. a static musl build), else the host build.
fn binary() -> String {
    std::env::var("GGJH_BENCH_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_greengrass-jobs-handler").to_owned())
}

fn proc_field(pid: u32, file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Context switches of every thread of the process: each one is a wake-up.
fn switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let tid = t.file_name().to_string_lossy().into_owned();
            let v = proc_field(
                pid,
                &format!("task/{tid}/status"),
                "voluntary_ctxt_switches:",
            )?;
            let n = proc_field(
                pid,
                &format!("task/{tid}/status"),
                "nonvoluntary_ctxt_switches:",
            )?;
            Some(v + n)
        })
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // Under `cargo test --benches` the bench binary is run with --test (or no --bench): skip.
    if !std::env::args().any(|a| a == "--bench") {
        println!("component bench: run with `cargo bench --bench component`");
        return;
    }
    // One thread for the emulator and the measurements: no hand-offs between runtime threads
    // inside the measured intervals, only the component's own process.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("ipc.socket");
        let emulator = Emulator::with_thing(THING, true);
        emulator.nucleus().register(COMPONENT, TOKEN, json!({"jitterMaxMs": 0}));
        let _server = emulator.serve_ipc(&socket).expect("serve");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, String)>();
        let _tap = emulator.world().tap().subscribe("$aws/things/+/jobs/#", 0, false, Box::new(move |t, _m: &MqttMessage| tx.send((Instant::now(), t.to_owned())).is_ok()));
        let mut lines = Vec::new();
        // Baseline: what the OS alone costs to start a process and see it exit.
        let mut baseline_ms = Vec::new();
        for _ in 0..10 {
            let spawned = Instant::now();
            let status = tokio::process::Command::new("/bin/true").status().await.expect("run /bin/true");
            assert!(status.success());
            baseline_ms.push(spawned.elapsed().as_secs_f64() * 1000.0);
        }
        baseline_ms.sort_by(f64::total_cmp);
        lines.push(format!("baseline: spawn and reap /bin/true: median {:.2} ms", percentile(&baseline_ms, 0.5)));
        let mut start_ms = Vec::new();
        let mut pid = 0;
        let mut child = None;
        for round in 0..10 {
            let spawned = Instant::now();
            let c = tokio::process::Command::new(binary())
                .current_dir(dir.path())
                .env("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", &socket)
                .env("SVCUID", TOKEN)
                .env("AWS_IOT_THING_NAME", THING)
                .env("GGJH_LOG", "warn")
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn");
            // Every subscription the component holds is one entry on the emulator's IoT inbox.
            let mut count = emulator.iot().watch_subscription_count();
            let _ = tokio::time::timeout(Duration::from_secs(10), count.wait_for(|n| *n >= SUBSCRIPTIONS))
                .await
                .expect("subscriptions never completed");
            let at = Instant::now();
            start_ms.push(at.duration_since(spawned).as_secs_f64() * 1000.0);
            if round < 9 {
                drop(c);
                while emulator.iot().subscription_count() > 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            } else {
                pid = c.id().unwrap_or(0);
                child = Some(c);
            }
        }
        start_ms.sort_by(f64::total_cmp);
        lines.push(format!(
            "process start -> all subscriptions accepted: median {:.2} ms, p90 {:.2} ms (10 starts; target <= 2 ms)",
            percentile(&start_ms, 0.5),
            percentile(&start_ms, 0.9)
        ));

        // Let the start-up query settle, then measure reconnect -> jobs/get.
        tokio::time::sleep(Duration::from_millis(500)).await;
        while rx.try_recv().is_ok() {}
        let get_topic = format!("$aws/things/{THING}/jobs/get");
        let mut reconnect_us = Vec::new();
        for _ in 0..200 {
            let sent = Instant::now();
            emulator.world().operator_publish(&format!("reconnect/{THING}"), br#"{"clientId":"bench-core"}"#, 0);
            let at = loop {
                match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                    Ok(Some((at, t))) if t == get_topic => break at,
                    Ok(Some(_)) => continue,
                    _ => panic!("no jobs/get after a reconnect message"),
                }
            };
            reconnect_us.push(at.duration_since(sent).as_secs_f64() * 1e6);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        reconnect_us.sort_by(f64::total_cmp);
        lines.push(format!(
            "reconnect message -> jobs/get published (jitter off): median {:.0} us, p90 {:.0} us (200 messages, through the emulator's IPC; target <= 200 us)",
            percentile(&reconnect_us, 0.5),
            percentile(&reconnect_us, 0.9)
        ));

        // Baseline for the same path: a minimal IPC client on its own OS thread that republishes
        // each reconnect message as a jobs/get, as fast as the IPC layer allows.
        emulator.nucleus().register("EchoClient", "echo-token", json!({}));
        let echo_socket = socket.clone();
        let get_for_echo = get_topic.clone();
        let echo = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let client = IpcClient::connect(&echo_socket, "echo-token", ClientOptions::default()).await.expect("connect");
                let mut sub = client.subscribe_to_iot_core("reconnect/echo", Qos::AtLeastOnce).await.expect("subscribe");
                let mut n = 0;
                while let Some(_m) = sub.recv().await {
                    let _ = client.publish_to_iot_core(&get_for_echo, Qos::AtLeastOnce, b"{}".to_vec()).await;
                    n += 1;
                    if n == 200 {
                        break;
                    }
                }
            });
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        while rx.try_recv().is_ok() {}
        let mut echo_us = Vec::new();
        for _ in 0..200 {
            let sent = Instant::now();
            emulator.world().operator_publish("reconnect/echo", b"{}", 0);
            let at = loop {
                match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                    Ok(Some((at, t))) if t == get_topic => break at,
                    Ok(Some(_)) => continue,
                    _ => panic!("no jobs/get from the echo client"),
                }
            };
            echo_us.push(at.duration_since(sent).as_secs_f64() * 1e6);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = echo.join();
        echo_us.sort_by(f64::total_cmp);
        lines.push(format!(
            "baseline: the same path through a bare IPC client that only republishes: median {:.0} us, p90 {:.0} us",
            percentile(&echo_us, 0.5),
            percentile(&echo_us, 0.9)
        ));

        // notify-next -> the first request about the job (its describe or its start).
        // (job, whether it is the start) of a request about one job.
        let job_topic = |t: &str| {
            let rest = t.strip_prefix(&format!("$aws/things/{THING}/jobs/"))?;
            let (job, op) = rest.split_once('/')?;
            (op == "get" || op == "update").then(|| (job.to_owned(), op == "update"))
        };
        let mut notify_us = Vec::new();
        let mut start_us = Vec::new();
        for n in 0..50 {
            let job_id = format!("echo-{n}");
            while rx.try_recv().is_ok() {}
            emulator
                .world()
                .create_job(NewJob { job_id: job_id.clone(), targets: vec![THING.into()], document: json!({"operation": "echo"}), ..NewJob::default() })
                .expect("create job");
            let mut notified = None;
            let mut first = None;
            let started = loop {
                match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                    Ok(Some((at, t))) if t.ends_with("/jobs/notify-next") && notified.is_none() => notified = Some(at),
                    Ok(Some((at, t))) if notified.is_some() => match job_topic(&t) {
                        Some((job, is_start)) if job == job_id => {
                            first.get_or_insert(at);
                            if is_start {
                                break at;
                            }
                        }
                        _ => continue,
                    },
                    Ok(Some(_)) => continue,
                    _ => panic!("no start of {job_id} after its notify-next"),
                }
            };
            if let (Some(notified), Some(first)) = (notified, first) {
                notify_us.push(first.duration_since(notified).as_secs_f64() * 1e6);
                start_us.push(started.duration_since(notified).as_secs_f64() * 1e6);
            }
            // Let the job finish and the component go idle before the next one.
            let done = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    let status = emulator.world().with_jobs(|j| j.execution(&job_id, THING, None).map(|e| e.status));
                    if status == Some(JobStatus::Succeeded) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            done.await.expect("the echo job never succeeded");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        notify_us.sort_by(f64::total_cmp);
        start_us.sort_by(f64::total_cmp);
        lines.push(format!(
            "notify-next -> first Jobs request (jitter off): median {:.0} us, p90 {:.0} us ({} jobs; target <= 250 us)",
            percentile(&notify_us, 0.5),
            percentile(&notify_us, 0.9),
            notify_us.len()
        ));
        lines.push(format!(
            "notify-next -> start request (UpdateJobExecution IN_PROGRESS): median {:.0} us, p90 {:.0} us",
            percentile(&start_us, 0.5),
            percentile(&start_us, 0.9)
        ));

        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = proc_field(pid, "status", "VmRSS:").unwrap_or(0);
        let hwm = proc_field(pid, "status", "VmHWM:").unwrap_or(0);
        lines.push(format!("idle RSS: {:.2} MiB (peak {:.2} MiB; target <= 1.5 MiB)", rss as f64 / 1024.0, hwm as f64 / 1024.0));
        let before = switches(pid);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let after = switches(pid);
        lines.push(format!("wake-ups while idle: {} in 10 s (context switches of all threads; target 0)", after - before));

        // A job that floods stdout and stderr: the component keeps only the tail it reports.
        let handlers = dir.path().join("handlers");
        std::fs::create_dir_all(&handlers).expect("handler directory");
        let flood = handlers.join("flood.sh");
        std::fs::write(&flood, format!("#!/bin/sh\nhead -c {FLOOD_BYTES} /dev/zero | tr '\\0' x &\nhead -c {FLOOD_BYTES} /dev/zero | tr '\\0' y >&2\nwait\n")).expect("write flood.sh");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&flood, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let flooded = Instant::now();
        emulator
            .world()
            .create_job(NewJob {
                job_id: "flood".into(),
                targets: vec![THING.into()],
                document: json!({"version": "1.0", "steps": [{"action": {"name": "flood", "type": "runHandler", "input": {"handler": "flood.sh"}, "allowStdErr": 1000000000}}]}),
                ..NewJob::default()
            })
            .expect("create job");
        let status = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                let status = emulator.world().with_jobs(|j| j.execution("flood", THING, None).map(|e| e.status));
                if status.is_some_and(JobStatus::is_terminal) {
                    break status;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the flood job never ended");
        let hwm = proc_field(pid, "status", "VmHWM:").unwrap_or(0);
        lines.push(format!(
            "peak RSS through a job writing {} MiB to stdout and {} MiB to stderr: {:.2} MiB (job {:?} after {:.1} s; target <= 4 MiB)",
            FLOOD_BYTES >> 20,
            FLOOD_BYTES >> 20,
            hwm as f64 / 1024.0,
            status,
            flooded.elapsed().as_secs_f64()
        ));
        let size = std::fs::metadata(binary()).map(|m| m.len()).unwrap_or(0);
        lines.push(format!("binary {}: {} KiB", binary(), size / 1024));
        drop(child);
        lines
    });
    let text = report.join("\n");
    println!("{text}");
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let _ = std::fs::write(
        std::path::Path::new(&dir).join("ggjh-component-report.txt"),
        format!("{text}\n"),
    );
}
