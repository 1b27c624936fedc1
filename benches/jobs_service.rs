//! Per-request cost of the emulated Jobs service against the number of stored executions.
//!
//! Builds a service holding 1,000, 100,000 and 1,000,000 executions in two shapes — a fleet
//! (many things, a few jobs each, most executions terminal) and one thing with a long history
//! (one execution per job, all but the newest terminal) — and times, on a probe thing of that
//! store: a describe (`{jobId}/get`), an update to IN_PROGRESS, a GetPending (`get`), an update
//! to SUCCEEDED (which publishes `notify` and `notify-next`), and a tick that times out one
//! execution. Each figure is the median over many requests; the cost should not grow with the
//! store.
//!
//! Run: `cargo bench --bench jobs_service` (prints a table and writes it to
//! `$CARGO_TARGET_DIR/ggjh-jobs-service-report.txt`). `GGJH_JOBS_BENCH_SIZE=<n>` and
//! `GGJH_JOBS_BENCH_SHAPE=fleet|history` pick one store, `GGJH_JOBS_BENCH_OP=<op>` one
//! operation; for instruction counts run the bench binary under
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured*'` and divide
//! the total by the requests measured (printed).

use greengrass_jobs_handler::emulator::cloud::jobs_service::{JobsService, NewJob, Output};
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];
/// Requests measured per operation and store.
const SAMPLES: usize = 2_000;
const OPS: [&str; 5] = [
    "describe",
    "update-in-progress",
    "get-pending",
    "update-succeeded",
    "tick",
];
const MIN_MS: u64 = 60_000;

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Many things; four jobs over all of them, three of them SUCCEEDED everywhere.
    Fleet,
    /// One thing with one execution per job, all but the last SUCCEEDED.
    History,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Self::Fleet => "fleet",
            Self::History => "history",
        }
    }
}

struct Store {
    service: JobsService,
    /// Things the probes run on (each gets its own fresh job per sample).
    probes: Vec<String>,
    now: u64,
    build: Duration,
}

fn request(service: &mut JobsService, thing: &str, rest: &str, body: &[u8], now: u64) {
    let out = service.handle_device_request(thing, rest, body, now);
    if !matches!(out.first(), Some(Output::Reply { topic, .. }) if topic.ends_with("/accepted")) {
        panic!("setup request {rest} on {thing} was not accepted: {out:?}");
    }
}

fn build(shape: Shape, size: usize) -> Store {
    let started = Instant::now();
    let mut service = JobsService::default();
    let done = br#"{"status":"SUCCEEDED"}"#;
    let now = 1_000_000;
    let probes = match shape {
        Shape::Fleet => {
            let things: Vec<String> = (0..size / 4).map(|i| format!("dev-{i:07}")).collect();
            for t in &things {
                service.create_thing(t).expect("thing");
            }
            for j in 0..4 {
                let job_id = format!("fleet-{j}");
                let job = NewJob {
                    job_id: job_id.clone(),
                    targets: things.clone(),
                    document: json!({"operation": "echo", "n": j}),
                    ..NewJob::default()
                };
                service.create_job(job, now).expect("job");
                if j < 3 {
                    let rest = format!("{job_id}/update");
                    for t in &things {
                        request(&mut service, t, &rest, done, now);
                    }
                }
            }
            // Probes spread over the fleet.
            let step = (things.len() / 64).max(1);
            things.iter().step_by(step).take(64).cloned().collect()
        }
        Shape::History => {
            let thing = "long-history".to_owned();
            service.create_thing(&thing).expect("thing");
            for j in 0..size {
                let job_id = format!("h-{j:07}");
                let job = NewJob {
                    job_id: job_id.clone(),
                    targets: vec![thing.clone()],
                    document: json!({"operation": "echo", "n": j}),
                    ..NewJob::default()
                };
                service.create_job(job, now).expect("job");
                if j + 1 < size {
                    request(&mut service, &thing, &format!("{job_id}/update"), done, now);
                }
            }
            vec![thing]
        }
    };
    assert_eq!(
        service.execution_count(),
        size,
        "{} store size",
        shape.name()
    );
    Store {
        service,
        probes,
        now,
        build: started.elapsed(),
    }
}

#[inline(never)]
fn measured_request(
    service: &mut JobsService,
    thing: &str,
    rest: &str,
    body: &[u8],
    now: u64,
) -> usize {
    black_box(service.handle_device_request(thing, rest, body, now)).len()
}

#[inline(never)]
fn measured_tick(service: &mut JobsService, now: u64) -> usize {
    black_box(service.tick(now)).len()
}

/// One request of a probe cycle.
#[derive(Clone, Copy)]
enum Call<'a> {
    Request(&'a str, &'a [u8]),
    Tick(u64),
}

/// Runs `c`, through the `measured_*` functions (the ones callgrind counts) when `measured`.
fn call(service: &mut JobsService, thing: &str, c: Call<'_>, now: u64, measured: bool) -> usize {
    match (c, measured) {
        (Call::Request(rest, body), true) => measured_request(service, thing, rest, body, now),
        (Call::Request(rest, body), false) => {
            service.handle_device_request(thing, rest, body, now).len()
        }
        (Call::Tick(at), true) => measured_tick(service, at),
        (Call::Tick(at), false) => service.tick(at).len(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median cost of each selected operation on `store`, in nanoseconds.
fn measure(store: &mut Store, ops: &[&str]) -> Vec<(String, Duration)> {
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(SAMPLES); OPS.len()];
    let wanted = |op: &str| ops.contains(&op);
    for i in 0..SAMPLES {
        let thing = store.probes[i % store.probes.len()].clone();
        let job_id = format!("probe-{i:05}");
        // Each sample gets its own two minutes, so a tick never moves time backwards.
        let now = store.now + i as u64 * 2 * MIN_MS;
        let service = &mut store.service;
        service
            .create_job(
                NewJob {
                    job_id: job_id.clone(),
                    targets: vec![thing.clone()],
                    document: json!({"operation": "echo", "probe": i}),
                    ..NewJob::default()
                },
                now,
            )
            .expect("probe job");
        let update = format!("{job_id}/update");
        let describe = format!("{job_id}/get");
        let last = if i % 2 == 0 {
            (
                3,
                Call::Request(
                    &update,
                    br#"{"status":"SUCCEEDED","expectedVersion":2,"statusDetails":{"result":"ok"},"clientToken":"c-4"}"#,
                ),
            )
        } else {
            // The step timer (1 minute) fires: TIMED_OUT, notify and notify-next.
            (4, Call::Tick(now + MIN_MS))
        };
        let calls = [
            (0, Call::Request(&describe, br#"{"clientToken":"c-1"}"#)),
            (
                1,
                Call::Request(
                    &update,
                    br#"{"status":"IN_PROGRESS","expectedVersion":1,"stepTimeoutInMinutes":1,"statusDetails":{"step":"1/2"},"clientToken":"c-2"}"#,
                ),
            ),
            (2, Call::Request("get", br#"{"clientToken":"c-3"}"#)),
            last,
        ];
        for (slot, c) in calls {
            let measured = wanted(OPS[slot]);
            let started = Instant::now();
            let outputs = call(service, &thing, c, now, measured);
            if measured {
                times[slot].push(started.elapsed());
            }
            assert!(outputs > 0, "{} answered", OPS[slot]);
        }
    }
    OPS.iter()
        .zip(times)
        .filter(|(op, t)| wanted(op) && !t.is_empty())
        .map(|(op, t)| (op.to_string(), median(t)))
        .collect()
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn main() {
    let env = |k: &str| std::env::var(k).ok();
    // Under `cargo test --benches` the bench binary runs without --bench: skip, unless a size
    // is chosen (a direct run, e.g. under callgrind).
    if !std::env::args().any(|a| a == "--bench") && env("GGJH_JOBS_BENCH_SIZE").is_none() {
        println!("jobs_service bench: run with `cargo bench --bench jobs_service`");
        return;
    }
    let sizes: Vec<usize> = match env("GGJH_JOBS_BENCH_SIZE").and_then(|s| s.parse().ok()) {
        Some(n) => vec![n],
        None => SIZES.to_vec(),
    };
    let shapes: Vec<Shape> = match env("GGJH_JOBS_BENCH_SHAPE").as_deref() {
        Some("fleet") => vec![Shape::Fleet],
        Some("history") => vec![Shape::History],
        _ => vec![Shape::Fleet, Shape::History],
    };
    let op = env("GGJH_JOBS_BENCH_OP");
    let ops: Vec<&str> = OPS
        .iter()
        .copied()
        .filter(|o| op.as_deref().is_none_or(|w| w == *o))
        .collect();
    let mut report = String::from(
        "Jobs service: median cost per request (ns) by stored executions\n\n\
         | store | executions | build | peak RSS | describe | update IN_PROGRESS | GetPending | update SUCCEEDED (notify) | tick (TIMED_OUT) |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for shape in &shapes {
        for &size in &sizes {
            let mut store = build(*shape, size);
            let rss = peak_rss_kib();
            let figures = measure(&mut store, &ops);
            let cell = |name: &str| {
                figures
                    .iter()
                    .find(|(o, _)| o == name)
                    .map_or("-".to_owned(), |(_, d)| d.as_nanos().to_string())
            };
            let line = format!(
                "| {} | {} | {:.2} s | {} | {} | {} | {} | {} | {} |\n",
                shape.name(),
                size,
                store.build.as_secs_f64(),
                rss.map_or("-".into(), |k| format!("{} MiB", k / 1024)),
                cell("describe"),
                cell("update-in-progress"),
                cell("get-pending"),
                cell("update-succeeded"),
                cell("tick"),
            );
            print!("{line}");
            report.push_str(&line);
            let measured = ops
                .iter()
                .map(|o| {
                    if *o == "update-succeeded" || *o == "tick" {
                        SAMPLES / 2
                    } else {
                        SAMPLES
                    }
                })
                .sum::<usize>();
            println!("  ({measured} requests measured)");
            drop(store);
        }
    }
    report.push_str(
        "\nPeak RSS is the process's high-water mark so far (stores are built one after another).\n",
    );
    println!("\n{report}");
    let dir = env("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
    let path = std::path::Path::new(&dir).join("ggjh-jobs-service-report.txt");
    match std::fs::write(&path, &report) {
        Ok(()) => println!("written to {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
