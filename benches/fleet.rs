//! Fleet simulation: a whole fleet loses its sessions and comes back at once, through the full
//! emulated world — every device's real engine, its nucleus's MQTT connection, IoT Core, the
//! reconnect rule and the Jobs service with the account's request quota — in virtual time.
//!
//! The scenario: every core is connected and idle; their connections drop; a job is created for
//! the whole fleet (its notify-next is stored in each persistent session); the broker loses the
//! sessions (as after an expiry) and the fleet reconnects at once, so the stored notify-next is
//! gone. Only the reconnect rule tells each component to look again. Compared by `jitterMaxMs`:
//! the peak request rate, requests refused for the quota, and when every job had succeeded.
//!
//! Run: `cargo bench --bench fleet` (2,000 devices; `GGJH_FLEET_DEVICES=N` sets the count,
//! `GGJH_FLEET_JITTERS=0,3000` the jitters, `GGJH_FLEET_QUOTA` the account's Jobs requests per
//! second, default 200). Prints a table with the wall time and the
//! process's peak RSS, the memory per device, and the machine's load average while it ran (wall
//! times on a shared machine mean little without it), and writes it to
//! `$CARGO_TARGET_DIR/ggjh-fleet-report.txt`.
//! Deterministic: fixed seeds, virtual time.

/// A fleet allocates and frees millions of small messages; mimalloc does that faster than
/// the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use greengrass_jobs_handler::emulator::cloud::jobs_service::{JobState, NewJob};
use greengrass_jobs_handler::jobs::engine::EngineConfig;
use greengrass_jobs_handler::jobs::messages::JobStatus;
use greengrass_jobs_handler::sim::device::WorkModel;
use greengrass_jobs_handler::sim::{SimConfig, Simulation};
use serde_json::json;
use std::time::{Duration, Instant};

/// Jobs requests per second the account accepts before RequestThrottled, unless
/// `GGJH_FLEET_QUOTA` says otherwise.
const DEFAULT_QUOTA_PER_SECOND: u32 = 200;
const SECOND: u64 = 1_000;
/// Give up after this much virtual time.
const LIMIT: u64 = 3_600 * SECOND;

struct Outcome {
    devices: usize,
    jitter_ms: u64,
    peak_per_second: u64,
    requests: u64,
    throttled: u64,
    all_done_after: Option<u64>,
    succeeded: usize,
    mqtt_per_device: f64,
    wall: Duration,
}

fn thing(i: usize) -> String {
    format!("core-{i:07}")
}

fn simulate(devices: usize, jitter_ms: u64, quota: u32) -> Outcome {
    let started = Instant::now();
    let mut sim = Simulation::new(SimConfig {
        seed: 2026,
        latency_ms: 40,
        ..SimConfig::default()
    });
    sim.world_mut().set_jobs_rate_quota(Some(quota));
    for i in 0..devices {
        let mut c = EngineConfig::new(&thing(i));
        c.max_jitter = Duration::from_millis(jitter_ms);
        c.response_timeout = Duration::from_secs(5);
        sim.add_device(
            c,
            WorkModel {
                duration_ms: 2 * SECOND,
                status: JobStatus::Succeeded,
            },
        );
        // Start-up queries spread over a minute, as cores boot at different times.
        if i % 1_000 == 999 {
            let t = sim.now() + 30;
            sim.run_until(t);
        }
    }
    let t0 = sim.now() + 120 * SECOND;
    sim.run_until(t0);
    let things: Vec<String> = (0..devices).map(thing).collect();
    for t in &things {
        sim.world_mut().core_disconnect(t);
    }
    sim.carry();
    let job = NewJob {
        job_id: "fleet-update".into(),
        targets: things.clone(),
        document: json!({"operation": "echo", "version": "2"}),
        ..NewJob::default()
    };
    sim.world_mut()
        .jobs_control(|jobs, now| jobs.create_job(job, now))
        .expect("job created");
    sim.carry();
    let requests_before = sim.stats().jobs_requests;
    let throttled_before = sim.world().quota_refusals();
    let mqtt_before = sim.stats().mqtt_messages;
    let t1 = sim.now() + 60 * SECOND;
    sim.run_until(t1);
    // The sessions are gone; the whole fleet is back at once.
    for t in &things {
        sim.world_mut().core_reconnect(t, true);
    }
    sim.carry();
    let mut at = t1;
    while at < t1 + LIMIT {
        at += SECOND;
        sim.run_until(at);
        // Every execution has ended once the job is COMPLETED (O(log n) to ask); only then are
        // the outcomes counted.
        let completed = sim
            .world()
            .jobs()
            .job("fleet-update")
            .is_some_and(|j| j.state == JobState::Completed);
        if completed {
            break;
        }
    }
    let succeeded = things
        .iter()
        .filter(|t| {
            sim.world()
                .jobs()
                .execution("fleet-update", t, None)
                .is_some_and(|e| e.status == JobStatus::Succeeded)
        })
        .count();
    let all_done_after = (succeeded == devices).then_some(at - t1);
    let peak_per_second = sim
        .stats()
        .jobs_requests_per_second
        .range(t1..)
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0);
    Outcome {
        devices,
        jitter_ms,
        peak_per_second,
        requests: sim.stats().jobs_requests - requests_before,
        throttled: sim.world().quota_refusals() - throttled_before,
        all_done_after,
        succeeded,
        mqtt_per_device: (sim.stats().mqtt_messages - mqtt_before) as f64 / devices as f64,
        wall: started.elapsed(),
    }
}

/// The 1-minute load average (`/proc/loadavg`), if the system has one.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The process's peak resident set (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    // Under `cargo test --benches` the bench binary is run without --bench: skip.
    if !std::env::args().any(|a| a == "--bench") {
        println!("fleet bench: run with `cargo bench --bench fleet`");
        return;
    }
    let devices: usize = std::env::var("GGJH_FLEET_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let jitters: Vec<u64> = std::env::var("GGJH_FLEET_JITTERS")
        .ok()
        .map(|v| v.split(',').filter_map(|j| j.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![0, 3_000, 10_000, 30_000]);
    let quota: u32 = std::env::var("GGJH_FLEET_QUOTA")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_QUOTA_PER_SECOND);
    let mut lines = vec![
        format!("{devices} devices lose their sessions and reconnect at once through the full world (engine, nucleus connection, IoT Core, reconnect rule, Jobs service); the account accepts {quota} Jobs requests/s, then RequestThrottled; 40 ms latency each way"),
        "devices | jitterMaxMs | peak requests/s | requests | throttled | all jobs SUCCEEDED after | MQTT messages/device | wall time | load | peak RSS | KiB/device".to_owned(),
    ];
    for jitter_ms in jitters {
        let r = simulate(devices, jitter_ms, quota);
        let done = r.all_done_after.map_or_else(
            || format!("never ({} of {})", r.succeeded, r.devices),
            |ms| format!("{:.1} s", ms as f64 / 1000.0),
        );
        let rss = peak_rss_mib();
        let load = load_average().map_or_else(|| "?".to_owned(), |l| format!("{l:.1}"));
        lines.push(format!(
            "{:>7} | {:>11} | {:>15} | {:>8} | {:>9} | {done:>24} | {:>20.1} | {:>7.1} s | {load:>4} | {rss:.0} MiB | {:.1}",
            r.devices,
            r.jitter_ms,
            r.peak_per_second,
            r.requests,
            r.throttled,
            r.mqtt_per_device,
            r.wall.as_secs_f64(),
            rss * 1024.0 / r.devices.max(1) as f64
        ));
        println!("{}", lines.last().map(String::as_str).unwrap_or(""));
    }
    let text = lines.join("\n");
    println!("{text}");
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let _ = std::fs::write(
        std::path::Path::new(&dir).join("ggjh-fleet-report.txt"),
        format!("{text}\n"),
    );
}
