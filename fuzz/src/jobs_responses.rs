//! Target `jobs_responses`: the jobs engine ([`Engine::handle`]) answered by a fuzzed Jobs
//! service, in virtual time.
//!
//! After `Started`, each step of the script advances the clock, answers one of the engine's
//! outstanding (or already answered) requests with an acceptance, a rejection or garbage on
//! the matching response topic, sends `notify-next`, `notify` or a reconnect message, or ends
//! or advances a job the engine runs. Job ids come from a small set whose documents are fixed:
//! ours (compact and Device Client form), ours but malformed, and foreign ones. Properties:
//! - every request is well-formed JSON on one of the thing's request topics, with a fresh
//!   `clientToken` of at most 64 bytes; a start or result carries `expectedVersion`;
//! - `statusDetails` always fit the service's limits (at most 10 entries, keys of
//!   `[a-zA-Z0-9:_-]` up to 128 characters, values of 1 to 1024 characters without control
//!   characters);
//! - a foreign job is never updated; a job is run only when its document is ours and runnable,
//!   only after its start was sent, never twice at once, and never more than
//!   `max_concurrent_jobs` at once; SUCCEEDED is reported only for work that succeeded,
//!   REJECTED only for a malformed document or work that rejected;
//! - after every input the engine's next deadline lies in the future (it never asks to be
//!   woken for work it could have done).

use arbitrary::{Arbitrary, Unstructured};
use greengrass_jobs_handler::jobs::document::{classify, Ownership};
use greengrass_jobs_handler::jobs::engine::{Action, Engine, EngineConfig, Input, JobOutcome};
use greengrass_jobs_handler::jobs::messages::*;
use greengrass_jobs_handler::jobs::status_details::{MAX_ENTRIES, MAX_KEY_CHARS, MAX_VALUE_CHARS};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const THING: &str = "dev";
const PREFIX: &str = "$aws/things/dev/jobs/";
const RECONNECT: &str = "reconnect/dev";

/// The jobs the fuzzed service knows, each with its fixed document.
const JOBS: &[&str] = &[
    "ours-op",
    "ours-steps",
    "bad-op",
    "bad-steps",
    "foreign-deploy",
    "foreign-text",
    "ours-echo",
];

fn document(job_id: &str) -> Value {
    match job_id {
        "ours-op" => json!({"operation": "add", "a": 2, "b": 3}),
        "ours-echo" => json!({"operation": "echo", "greeting": "hi"}),
        "ours-steps" => json!({"version": "1.0", "steps": [
            {"action": {"name": "a", "type": "runHandler", "input": {"handler": "a.sh"}}}]}),
        "bad-op" => json!({"operation": 5}),
        "bad-steps" => json!({"version": "1.0", "steps": [
            {"action": {"type": "runHandler", "input": {"handler": "../x"}}}]}),
        "foreign-deploy" => json!({"deploymentId": "d-1", "components": {}}),
        _ => json!("plain text"),
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Status {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    Rejected,
    Canceled,
    TimedOut,
    Removed,
}

impl Status {
    fn json(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::InProgress => "IN_PROGRESS",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Rejected => "REJECTED",
            Self::Canceled => "CANCELED",
            Self::TimedOut => "TIMED_OUT",
            Self::Removed => "REMOVED",
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Execution {
    job: u8,
    status: Status,
    version: u8,
    execution_number: bool,
    with_document: bool,
}

impl Execution {
    fn json(&self) -> Value {
        let job_id = JOBS[usize::from(self.job) % JOBS.len()];
        let mut e = json!({"jobId": job_id, "status": self.status.json(),
            "versionNumber": self.version, "executionNumber": 1 + i64::from(self.execution_number),
            "queuedAt": 1_700_000_000});
        if self.with_document {
            e["jobDocument"] = document(job_id);
        }
        e
    }
}

#[derive(Arbitrary, Debug)]
enum Code {
    InvalidTopic,
    InvalidJson,
    InvalidRequest,
    InvalidStateTransition,
    ResourceNotFound,
    VersionMismatch,
    InternalError,
    RequestThrottled,
    TerminalStateReached,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Answer {
    /// The acceptance a real service would send for that request.
    Accepted {
        pending: Vec<(bool, u8)>,
        execution: Option<Execution>,
        state: Option<(Status, u8)>,
    },
    Rejected {
        code: Code,
        state: Option<(Status, u8)>,
        message: Option<String>,
    },
    /// Bytes instead of JSON (the token is prepended as a JSON fragment sometimes).
    Garbage(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Step {
    Advance(u16),
    ToDeadline,
    Answer {
        request: u8,
        answer: Answer,
        on_rejected: bool,
    },
    /// Answer a request a second time (duplicate or late delivery).
    Replay {
        request: u8,
        answer: Answer,
    },
    NotifyNext(Option<Execution>),
    Notify(Vec<(bool, u8)>),
    Reconnect,
    Finish {
        job: u8,
        status: Status,
        details: Vec<(String, String)>,
    },
    Progress {
        job: u8,
        details: Vec<(String, String)>,
    },
    Raw {
        topic: u8,
        payload: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
struct Script {
    seed: u64,
    jitter_ms: u16,
    timeout_ms: u16,
    max_concurrent: u8,
    safety_poll: bool,
    steps: Vec<Step>,
}

/// A request the engine published.
struct Sent {
    topic: String,
    token: String,
}

/// What the harness knows, to judge the engine's actions.
#[derive(Default)]
struct World {
    sent: Vec<Sent>,
    outstanding: Vec<usize>,
    tokens: BTreeSet<String>,
    /// Jobs the engine was told to run, with their execution numbers, not yet ended.
    running: BTreeMap<String, i64>,
    /// Jobs whose start (IN_PROGRESS with expectedVersion and no statusDetails) was sent.
    started: BTreeSet<String>,
    /// Outcomes the harness reported for each job.
    outcomes: BTreeMap<String, BTreeSet<&'static str>>,
    /// Jobs the service said were IN_PROGRESS.
    seen_in_progress: BTreeSet<String>,
    max_concurrent: usize,
}

fn check_details(details: &StatusDetails) {
    assert!(
        details.len() <= MAX_ENTRIES,
        "{} statusDetails entries",
        details.len()
    );
    for (k, v) in details {
        let key_chars = k.chars().count();
        assert!((1..=MAX_KEY_CHARS).contains(&key_chars), "key {k:?}");
        assert!(
            k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-')),
            "key {k:?}"
        );
        let value_chars = v.chars().count();
        assert!(
            (1..=MAX_VALUE_CHARS).contains(&value_chars),
            "value of {value_chars} characters"
        );
        assert!(
            !v.chars().any(char::is_control),
            "control character in {v:?}"
        );
    }
}

impl World {
    fn judge(&mut self, actions: &[Action]) {
        for action in actions {
            match action {
                // The journal write before a start or a report, and the shell's subscription
                // housekeeping: nothing to judge on their own.
                Action::Record(_) | Action::Subscribe { .. } | Action::Resubscribe => {}
                Action::Exit { reason } => panic!("the engine gave up: {reason}"),
                Action::Publish { topic, payload } => self.judge_publish(topic, payload),
                Action::Run(run) => {
                    let document = document(&run.job_id);
                    assert!(
                        matches!(classify(Some(&document)), Ownership::Ours(ref d) if *d == run.document),
                        "ran {} whose document is not ours",
                        run.job_id
                    );
                    assert!(
                        self.started.contains(&run.job_id),
                        "ran {} before starting it",
                        run.job_id
                    );
                    let twice = self
                        .running
                        .insert(run.job_id.clone(), run.execution_number);
                    assert!(twice.is_none(), "{} run twice at once", run.job_id);
                    assert!(
                        self.running.len() <= self.max_concurrent,
                        "too many jobs at once"
                    );
                }
                Action::Cancel { job_id, .. } => {
                    self.running.remove(job_id);
                }
                Action::Forget { .. } => {}
            }
        }
    }

    fn judge_publish(&mut self, topic: &str, payload: &[u8]) {
        let rest = topic
            .strip_prefix(PREFIX)
            .unwrap_or_else(|| panic!("published on {topic}"));
        let value: Value = serde_json::from_slice(payload).expect("a request is JSON");
        let token = value["clientToken"]
            .as_str()
            .expect("every request has a clientToken")
            .to_owned();
        assert!(token.len() <= 64, "clientToken {token:?} too long");
        assert!(
            self.tokens.insert(token.clone()),
            "clientToken {token} reused"
        );
        let levels: Vec<&str> = rest.split('/').collect();
        match levels.as_slice() {
            ["get"] => {
                serde_json::from_value::<GetPendingRequest>(value).expect("a GetPending request");
            }
            [job, "get"] => {
                assert!(JOBS.contains(job), "described unknown job {job}");
                serde_json::from_value::<DescribeRequest>(value).expect("a Describe request");
            }
            [job, "update"] => {
                assert!(JOBS.contains(job), "updated unknown job {job}");
                assert!(!job.starts_with("foreign"), "updated foreign job {job}");
                let update: UpdateRequest =
                    serde_json::from_value(value).expect("an Update request");
                if let Some(details) = &update.status_details {
                    check_details(details);
                }
                let job = (*job).to_owned();
                match update.status {
                    JobStatus::InProgress => {
                        // A start carries only the start marker; a progress report names
                        // its step.
                        let is_start = update
                            .status_details
                            .as_ref()
                            .is_none_or(|d| d.contains_key("startedBy") && !d.contains_key("step"));
                        if is_start {
                            assert!(
                                update.expected_version.is_some(),
                                "start of {job} without expectedVersion"
                            );
                            self.started.insert(job);
                        }
                    }
                    JobStatus::Succeeded => {
                        assert!(
                            update.expected_version.is_some(),
                            "result of {job} without expectedVersion"
                        );
                        assert!(
                            self.outcomes
                                .get(&job)
                                .is_some_and(|o| o.contains("SUCCEEDED")),
                            "{job} falsely SUCCEEDED"
                        );
                    }
                    JobStatus::Rejected => {
                        assert!(
                            update.expected_version.is_some(),
                            "result of {job} without expectedVersion"
                        );
                        assert!(
                            job.starts_with("bad")
                                || self
                                    .outcomes
                                    .get(&job)
                                    .is_some_and(|o| o.contains("REJECTED")),
                            "{job} falsely REJECTED"
                        );
                    }
                    JobStatus::Failed => {
                        assert!(
                            update.expected_version.is_some(),
                            "result of {job} without expectedVersion"
                        );
                        assert!(
                            self.seen_in_progress.contains(&job)
                                || self
                                    .outcomes
                                    .get(&job)
                                    .is_some_and(|o| o.contains("FAILED")),
                            "{job} falsely FAILED"
                        );
                    }
                    other => panic!("device reported {other} for {job}"),
                }
            }
            _ => panic!("published on {topic}"),
        }
        self.outstanding.push(self.sent.len());
        self.sent.push(Sent {
            topic: topic.to_owned(),
            token,
        });
    }

    fn note_execution(&mut self, execution: &Execution) {
        if matches!(execution.status, Status::InProgress) {
            self.seen_in_progress
                .insert(JOBS[usize::from(execution.job) % JOBS.len()].to_owned());
        }
    }
}

fn state_json(state: &Option<(Status, u8)>) -> Option<Value> {
    state.map(|(s, v)| json!({"status": s.json(), "versionNumber": v}))
}

/// Topic and payload answering `sent`.
fn answer(
    world: &mut World,
    sent_index: usize,
    answer: &Answer,
    on_rejected: bool,
) -> (String, Vec<u8>) {
    let sent = &world.sent[sent_index];
    let token = sent.token.clone();
    let topic = sent.topic.clone();
    match answer {
        Answer::Accepted {
            pending,
            execution,
            state,
        } => {
            let body = if topic.ends_with("jobs/get") {
                let summaries = |in_progress: bool| -> Vec<Value> {
                    pending
                        .iter()
                        .filter(|(p, _)| *p == in_progress)
                        .map(|(_, j)| {
                            json!({"jobId": JOBS[usize::from(*j) % JOBS.len()],
                            "executionNumber": 1, "versionNumber": 1})
                        })
                        .collect()
                };
                for (p, j) in pending {
                    if *p {
                        world
                            .seen_in_progress
                            .insert(JOBS[usize::from(*j) % JOBS.len()].to_owned());
                    }
                }
                json!({"inProgressJobs": summaries(true), "queuedJobs": summaries(false), "clientToken": token})
            } else if topic.ends_with("/get") {
                let mut body = json!({"clientToken": token});
                if let Some(e) = execution {
                    world.note_execution(e);
                    let mut e_json = e.json();
                    // A describe answers for the job it asked about.
                    let job = topic
                        .trim_start_matches(PREFIX)
                        .trim_end_matches("/get")
                        .to_owned();
                    e_json["jobId"] = json!(job);
                    if e_json["jobDocument"].is_object() || e_json["jobDocument"].is_string() {
                        e_json["jobDocument"] = document(&job);
                    }
                    if matches!(e.status, Status::InProgress) {
                        world.seen_in_progress.insert(job);
                    }
                    body["execution"] = e_json;
                }
                body
            } else {
                let mut body = json!({"clientToken": token});
                if let Some(s) = state_json(state) {
                    body["executionState"] = s;
                }
                body
            };
            (format!("{topic}/accepted"), body.to_string().into_bytes())
        }
        Answer::Rejected {
            code,
            state,
            message,
        } => {
            let code = match code {
                Code::Other(s) => s.clone(),
                other => format!("{other:?}"),
            };
            let mut body = json!({"code": code, "clientToken": token});
            if let Some(m) = message {
                body["message"] = json!(m);
            }
            if let Some(s) = state_json(state) {
                body["executionState"] = s;
            }
            (format!("{topic}/rejected"), body.to_string().into_bytes())
        }
        Answer::Garbage(bytes) => {
            let mut payload = format!("{{\"clientToken\":\"{token}\"").into_bytes();
            payload.extend_from_slice(bytes);
            let suffix = if on_rejected { "rejected" } else { "accepted" };
            (format!("{topic}/{suffix}"), payload)
        }
    }
}

fn details(pairs: &[(String, String)]) -> StatusDetails {
    pairs.iter().cloned().collect()
}

pub fn check(data: &[u8]) {
    let Ok(script) = Script::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut config = EngineConfig::new(THING);
    config.max_jitter = Duration::from_millis(u64::from(script.jitter_ms));
    config.response_timeout = Duration::from_millis(u64::from(script.timeout_ms).max(100));
    config.max_concurrent_jobs = usize::from(script.max_concurrent % 4).max(1);
    config.safety_poll = script.safety_poll.then(|| Duration::from_secs(60));
    let mut world = World {
        max_concurrent: config.max_concurrent_jobs,
        ..World::default()
    };
    let mut engine = Engine::new(config, script.seed);
    let mut now: u64 = 1_000_000;

    let feed = |world: &mut World, engine: &mut Engine, now: u64, input: Input<'_>| {
        let actions = engine.handle(now, input);
        world.judge(&actions);
        if let Some(deadline) = engine.next_deadline() {
            assert!(deadline > now, "deadline {deadline} is not after now {now}");
        }
    };
    feed(&mut world, &mut engine, now, Input::Started);
    for step in &script.steps {
        match step {
            Step::Advance(ms) => {
                now += u64::from(*ms);
                feed(&mut world, &mut engine, now, Input::Tick);
            }
            Step::ToDeadline => {
                if let Some(d) = engine.next_deadline() {
                    now = now.max(d);
                }
                feed(&mut world, &mut engine, now, Input::Tick);
            }
            Step::Answer {
                request,
                answer: a,
                on_rejected,
            } => {
                if world.outstanding.is_empty() {
                    continue;
                }
                let pick = usize::from(*request) % world.outstanding.len();
                let index = world.outstanding.remove(pick);
                let (topic, payload) = answer(&mut world, index, a, *on_rejected);
                feed(
                    &mut world,
                    &mut engine,
                    now,
                    Input::Message {
                        topic: &topic,
                        payload: &payload,
                    },
                );
            }
            Step::Replay { request, answer: a } => {
                if world.sent.is_empty() {
                    continue;
                }
                let index = usize::from(*request) % world.sent.len();
                let (topic, payload) = answer(&mut world, index, a, false);
                feed(
                    &mut world,
                    &mut engine,
                    now,
                    Input::Message {
                        topic: &topic,
                        payload: &payload,
                    },
                );
            }
            Step::NotifyNext(execution) => {
                let mut body = json!({"timestamp": 1});
                if let Some(e) = execution {
                    world.note_execution(e);
                    body["execution"] = e.json();
                }
                let payload = body.to_string().into_bytes();
                let topic = format!("{PREFIX}notify-next");
                feed(
                    &mut world,
                    &mut engine,
                    now,
                    Input::Message {
                        topic: &topic,
                        payload: &payload,
                    },
                );
            }
            Step::Notify(jobs) => {
                let summaries = |in_progress: bool| -> Vec<Value> {
                    jobs.iter()
                        .filter(|(p, _)| *p == in_progress)
                        .map(|(_, j)| json!({"jobId": JOBS[usize::from(*j) % JOBS.len()], "executionNumber": 1}))
                        .collect()
                };
                let payload =
                    json!({"jobs": {"QUEUED": summaries(false), "IN_PROGRESS": summaries(true)}})
                        .to_string()
                        .into_bytes();
                let topic = format!("{PREFIX}notify");
                feed(
                    &mut world,
                    &mut engine,
                    now,
                    Input::Message {
                        topic: &topic,
                        payload: &payload,
                    },
                );
            }
            Step::Reconnect => {
                feed(
                    &mut world,
                    &mut engine,
                    now,
                    Input::Message {
                        topic: RECONNECT,
                        payload: b"{}",
                    },
                );
            }
            Step::Finish {
                job,
                status,
                details: d,
            } => {
                if world.running.is_empty() {
                    continue;
                }
                let pick = usize::from(*job) % world.running.len();
                let Some((job_id, execution_number)) =
                    world.running.iter().nth(pick).map(|(j, e)| (j.clone(), *e))
                else {
                    continue;
                };
                world.running.remove(&job_id);
                let status = match status {
                    Status::Succeeded | Status::Queued => JobStatus::Succeeded,
                    Status::Rejected => JobStatus::Rejected,
                    _ => JobStatus::Failed,
                };
                world
                    .outcomes
                    .entry(job_id.clone())
                    .or_default()
                    .insert(status.as_str());
                let outcome = JobOutcome {
                    status,
                    status_details: details(d),
                };
                feed(
                    &mut world,
                    &mut engine,
                    now,
                    Input::JobFinished {
                        job_id: &job_id,
                        execution_number,
                        outcome,
                    },
                );
            }
            Step::Progress { job, details: d } => {
                if world.running.is_empty() {
                    continue;
                }
                let pick = usize::from(*job) % world.running.len();
                let Some((job_id, execution_number)) =
                    world.running.iter().nth(pick).map(|(j, e)| (j.clone(), *e))
                else {
                    continue;
                };
                feed(
                    &mut world,
                    &mut engine,
                    now,
                    Input::Progress {
                        job_id: &job_id,
                        execution_number,
                        status_details: details(d),
                    },
                );
            }
            Step::Raw { topic, payload } => {
                let topics = [
                    format!("{PREFIX}notify-next"),
                    format!("{PREFIX}notify"),
                    format!("{PREFIX}get/accepted"),
                    format!("{PREFIX}get/rejected"),
                    format!("{PREFIX}ours-op/get/accepted"),
                    format!("{PREFIX}ours-op/update/rejected"),
                    format!("{PREFIX}start-next/accepted"),
                    RECONNECT.to_owned(),
                ];
                let topic = &topics[usize::from(*topic) % topics.len()];
                feed(
                    &mut world,
                    &mut engine,
                    now,
                    Input::Message { topic, payload },
                );
            }
        }
    }
}
