//! Fleet simulation: a whole fleet reconnects at once and every device re-queries
//! its jobs. Runs the real sans-IO engine of every device against the emulated Jobs service in
//! virtual time, with the service refusing requests above an account-wide rate
//! (RequestThrottled), and compares jitter settings by peak request rate, throttled requests,
//! and the time until every device's queued job has succeeded.
//!
//! Run: `cargo bench --bench fleet` (prints a table and writes it to
//! `$CARGO_TARGET_DIR/ggjh-fleet-report.txt`). Deterministic: fixed seeds, virtual time.

use greengrass_jobs_handler::emulator::cloud::jobs_service::{JobsService, NewJob, Output};
use greengrass_jobs_handler::jobs::engine::{Action, Engine, EngineConfig, Input, JobOutcome};
use greengrass_jobs_handler::jobs::messages::{JobStatus, StatusDetails};
use serde_json::json;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

const DEVICES: usize = 2000;
/// Requests per second the service accepts before answering RequestThrottled.
const SERVICE_RATE: u64 = 200;
/// One-way network latency.
const LATENCY_MS: u64 = 40;

enum Event {
    /// A message reaches a device.
    Deliver {
        topic: String,
        payload: Vec<u8>,
    },
    /// A device's request reaches the service.
    Request {
        topic: String,
        payload: Vec<u8>,
    },
    /// A device's job ends (the work itself is instant here).
    Finished {
        job_id: String,
        execution_number: i64,
    },
    Tick,
}

struct Sim {
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: HashMap<u64, Event>,
}

impl Sim {
    fn push(&mut self, at: u64, device: usize, event: Event) {
        self.seq += 1;
        self.events.insert(self.seq, event);
        self.queue.push(Reverse((at, self.seq, device)));
    }
}

struct Outcome {
    peak_per_second: u64,
    requests: u64,
    throttled: u64,
    all_done_ms: Option<u64>,
}

fn simulate(max_jitter: Duration) -> Outcome {
    let things: Vec<String> = (0..DEVICES).map(|i| format!("dev-{i:05}")).collect();
    let mut service = JobsService::default();
    for t in &things {
        service.create_thing(t).expect("thing");
    }
    let job = NewJob {
        job_id: "fleet-update".into(),
        targets: things.clone(),
        document: json!({"operation": "echo"}),
        ..NewJob::default()
    };
    service.create_job(job, 0).expect("job");
    let mut engines: Vec<Engine> = things
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut c = EngineConfig::new(t);
            c.max_jitter = max_jitter;
            c.response_timeout = Duration::from_secs(5);
            c.base_backoff = Duration::from_secs(1);
            c.max_backoff = Duration::from_secs(60);
            Engine::new(c, 1000 + i as u64)
        })
        .collect();
    let mut sim = Sim {
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        events: HashMap::new(),
    };
    // The fleet's connections come back with clean sessions at t = 0: every device gets its
    // reconnect message at once (the queued notify-next was lost with the session).
    for (device, thing) in things.iter().enumerate() {
        sim.push(
            0,
            device,
            Event::Deliver {
                topic: format!("reconnect/{thing}"),
                payload: b"{}".to_vec(),
            },
        );
    }
    let mut per_second: HashMap<u64, u64> = HashMap::new();
    let (mut requests, mut throttled, mut done) = (0u64, 0u64, 0usize);
    let mut all_done_ms = None;
    let mut tick_at: Vec<Option<u64>> = vec![None; DEVICES];
    while let Some(Reverse((now, id, device))) = sim.queue.pop() {
        sim.now = now;
        let Some(event) = sim.events.remove(&id) else {
            continue;
        };
        let actions = match event {
            Event::Deliver { topic, payload } => engines[device].handle(
                now,
                Input::Message {
                    topic: &topic,
                    payload: &payload,
                },
            ),
            Event::Tick if tick_at[device] == Some(now) => {
                tick_at[device] = None;
                engines[device].handle(now, Input::Tick)
            }
            Event::Tick => continue,
            Event::Finished {
                job_id,
                execution_number,
            } => {
                let outcome = JobOutcome {
                    status: JobStatus::Succeeded,
                    status_details: StatusDetails::new(),
                };
                engines[device].handle(
                    now,
                    Input::JobFinished {
                        job_id: &job_id,
                        execution_number,
                        outcome,
                    },
                )
            }
            Event::Request { topic, payload } => {
                requests += 1;
                let count = per_second.entry(now / 1000).or_default();
                *count += 1;
                let thing = &things[device];
                if *count > SERVICE_RATE {
                    throttled += 1;
                    service.throttle(thing, 1);
                }
                let rest = topic
                    .strip_prefix(&format!("$aws/things/{thing}/jobs/"))
                    .unwrap_or("")
                    .to_owned();
                for out in service.handle_device_request(thing, &rest, &payload, now) {
                    let (topic, payload) = match out {
                        Output::Reply { topic, payload } => (topic, payload),
                        Output::Publish(p) => (p.topic, p.payload),
                    };
                    sim.push(now + LATENCY_MS, device, Event::Deliver { topic, payload });
                }
                if service
                    .execution("fleet-update", thing, None)
                    .map(|e| e.status)
                    == Some(JobStatus::Succeeded)
                    && rest.ends_with("/update")
                {
                    done += 1;
                    if done == DEVICES {
                        all_done_ms = Some(now);
                    }
                }
                Vec::new()
            }
        };
        for action in actions {
            match action {
                Action::Publish { topic, payload } => {
                    sim.push(now + LATENCY_MS, device, Event::Request { topic, payload })
                }
                Action::Run(run) => sim.push(
                    now,
                    device,
                    Event::Finished {
                        job_id: run.job_id,
                        execution_number: run.execution_number,
                    },
                ),
                Action::Cancel { .. }
                | Action::Forget { .. }
                | Action::Record(_)
                | Action::Subscribe { .. }
                | Action::Resubscribe
                | Action::Exit { .. } => {}
            }
        }
        if let Some(deadline) = engines[device].next_deadline() {
            if tick_at[device] != Some(deadline) {
                tick_at[device] = Some(deadline);
                sim.push(deadline, device, Event::Tick);
            }
        }
    }
    Outcome {
        peak_per_second: per_second.values().copied().max().unwrap_or(0),
        requests,
        throttled,
        all_done_ms,
    }
}

fn main() {
    // Under `cargo test --benches` the bench binary is run without --bench: skip.
    if !std::env::args().any(|a| a == "--bench") {
        println!("fleet bench: run with `cargo bench --bench fleet`");
        return;
    }
    let mut lines = vec![
        format!("{DEVICES} devices reconnect at once; the service accepts {SERVICE_RATE} requests/s, then answers RequestThrottled; {LATENCY_MS} ms latency each way"),
        "jitterMaxMs | peak requests/s | requests | throttled | all jobs SUCCEEDED after".to_owned(),
    ];
    for jitter_ms in [0u64, 3_000, 10_000, 30_000] {
        let r = simulate(Duration::from_millis(jitter_ms));
        let done = r.all_done_ms.map_or("never".to_owned(), |ms| {
            format!("{:.1} s", ms as f64 / 1000.0)
        });
        lines.push(format!(
            "{jitter_ms:>11} | {:>15} | {:>8} | {:>9} | {done}",
            r.peak_per_second, r.requests, r.throttled
        ));
    }
    let text = lines.join("\n");
    println!("{text}");
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let _ = std::fs::write(
        std::path::Path::new(&dir).join("ggjh-fleet-report.txt"),
        format!("{text}\n"),
    );
}
