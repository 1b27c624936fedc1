//! The jobs engine: the device side of the AWS IoT Jobs MQTT API as a state machine.
//!
//! Owns: when to query for pending jobs (start, reconnect messages, notify-next, an optional
//! safety poll), collapsing bursts and spreading a fleet's queries with random jitter, client
//! tokens and matching responses to requests, retries with exponential back-off, ownership
//! checks, starting a job with `expectedVersion`, reporting its result, and reconciling every
//! rejection code. Must not know: tokio, sockets, IPC, clocks or how a job runs.
//!
//! Events and the current time go in ([`Engine::handle`]); actions come out. Time is plain
//! milliseconds from an arbitrary origin, so tests drive it with virtual time. The engine asks
//! for a wake-up only while it has a deadline ([`Engine::next_deadline`]); when idle it has none.
//!
//! Call order: one [`Input::Recovered`] per journal entry of an earlier run, then
//! [`Input::Started`] once the shell is subscribed to [`Engine::subscriptions`], then messages,
//! job results, progress, connection status and ticks as they come. The shell carries out the
//! returned actions in order. The rule is **journal before run, journal before report**: an
//! [`Action::Record`] comes before the start request it announces and before the result it
//! holds, and the shell writes it durably before going on; the shell journals a job's run before
//! its work begins ([`Action::Run`]).
//!
//! Starting a job: StartNextPendingJobExecution starts whatever execution is at the head of the
//! queue, with no job id and no `expectedVersion`, so it could start a Greengrass deployment or
//! another agent's job. The engine therefore describes each candidate (`{jobId}/get`), checks
//! that the document is ours, and starts it with `{jobId}/update` IN_PROGRESS and the version it
//! read: a conditional start that never touches a job that is not ours.

use super::document::{classify, JobDocument, Ownership};
use super::messages::*;
use super::topics::{JobsTopics, ResponseTopic};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Milliseconds on the caller's monotonic clock.
pub type Millis = u64;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub thing_name: String,
    /// Topic on which the IoT rule republishes our `subscribed` events.
    pub reconnect_topic: String,
    /// Upper bound of the random delay before a reconnect- or start-driven query.
    pub max_jitter: Duration,
    /// How long to wait for a response before retrying the request.
    pub response_timeout: Duration,
    /// First retry delay; doubles per attempt up to `max_backoff` (a request that got no
    /// response) or `max_throttle_backoff` (the service answered RequestThrottled or
    /// InternalError).
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Cap of the back-off after the service refused a request for now. Each wait is drawn
    /// uniformly from zero to the doubled delay (full jitter): a fleet's retries spread over
    /// the whole window, and a device retries within this cap of the service recovering.
    pub max_throttle_backoff: Duration,
    /// Query this often even without a reconnect message (off when `None`).
    pub safety_poll: Option<Duration>,
    /// `stepTimeoutInMinutes` sent when a job is started.
    pub step_timeout_minutes: Option<i64>,
    /// Jobs run at the same time (1: one after the other).
    pub max_concurrent_jobs: usize,
}

impl EngineConfig {
    pub fn new(thing_name: &str) -> Self {
        Self {
            thing_name: thing_name.to_owned(),
            reconnect_topic: format!("reconnect/{thing_name}"),
            max_jitter: Duration::from_secs(3),
            response_timeout: Duration::from_secs(10),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_throttle_backoff: Duration::from_secs(30),
            safety_poll: None,
            step_timeout_minutes: None,
            max_concurrent_jobs: 1,
        }
    }
}

/// What the engine is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Input<'a> {
    /// Subscriptions are in place: query once.
    Started,
    /// An MQTT message on one of [`Engine::subscriptions`].
    Message { topic: &'a str, payload: &'a [u8] },
    /// A job the engine asked to run has ended.
    JobFinished {
        job_id: &'a str,
        execution_number: i64,
        outcome: JobOutcome,
    },
    /// A running job reached a new step: reported as IN_PROGRESS statusDetails. Best effort;
    /// the answer also tells whether the cloud still wants the job.
    Progress {
        job_id: &'a str,
        execution_number: i64,
        status_details: StatusDetails,
    },
    /// Time has passed; handle whatever is due.
    Tick,
    /// The core's IoT Core connection changed (SubscribeToIoTCoreConnectionStatus). Connected:
    /// query exactly as a reconnect message does (jitter, bursts collapsed). Disconnected:
    /// noted; requests in flight are left to their response timeouts.
    IotConnection { connected: bool },
    /// At start-up, before [`Input::Started`]: a job the journal holds from before this
    /// process, and what the journal says about it.
    Recovered {
        job_id: &'a str,
        execution_number: i64,
        recovery: Recovered,
    },
}

/// What the journal of an earlier run of this handler says about one job.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovered {
    /// The work ran (or ended, or was cut short): this outcome is reported when the cloud
    /// still has the job IN_PROGRESS.
    Ended(JobOutcome),
    /// The start was sent with this marker but the work never began. When the cloud shows the
    /// job IN_PROGRESS with the marker, the start was ours and the work runs now.
    NotStarted { marker: String },
}

/// What the shell must write to its journal, durably, before carrying out the actions after it.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A start request (marked with `marker` in its statusDetails) is about to go out.
    Starting {
        job_id: String,
        execution_number: i64,
        marker: String,
    },
    /// The job's work ended with this outcome, which is about to be reported.
    Finished {
        job_id: String,
        execution_number: i64,
        outcome: JobOutcome,
    },
}

/// The statusDetails key of a start request that names the start (its marker).
pub const START_MARKER_KEY: &str = "startedBy";

/// How a job ended on the device.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    pub status: JobStatus,
    pub status_details: StatusDetails,
}

/// A job to run.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRun {
    pub job_id: String,
    pub execution_number: i64,
    /// The execution's version once it is IN_PROGRESS.
    pub version_number: i64,
    pub document: JobDocument,
}

/// What the engine asks its shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write this to the journal before going on with the next action.
    Record(Record),
    Publish {
        topic: String,
        payload: Vec<u8>,
    },
    Run(JobRun),
    /// The cloud ended this job (canceled, timed out, removed, deleted): stop the work.
    Cancel {
        job_id: String,
        execution_number: i64,
        reason: String,
    },
    /// The cloud holds this execution's final state (or no longer has it): the journal entry
    /// can go.
    Forget {
        job_id: String,
        execution_number: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Request {
    GetPending,
    /// Describe a candidate while looking for a job to run.
    Describe {
        job_id: String,
    },
    /// Move our job to IN_PROGRESS; `marker` goes into the statusDetails.
    Start {
        job_id: String,
        execution_number: i64,
        version: i64,
        /// Boxed: a document is large and most requests carry none.
        document: Box<JobDocument>,
        marker: String,
    },
    /// Report a terminal status.
    Finish {
        job_id: String,
        execution_number: i64,
        outcome: JobOutcome,
        details_rejected: bool,
    },
    /// Check whether the running job still exists in the cloud.
    CheckActive {
        job_id: String,
    },
    /// IN_PROGRESS with the running job's progress in statusDetails.
    Progress {
        job_id: String,
        details: StatusDetails,
    },
}

impl Request {
    fn label(&self) -> &'static str {
        match self {
            Self::GetPending => "GetPendingJobExecutions",
            Self::Describe { .. } | Self::CheckActive { .. } => "DescribeJobExecution",
            Self::Start { .. } => "UpdateJobExecution(IN_PROGRESS)",
            Self::Finish { .. } => "UpdateJobExecution(result)",
            Self::Progress { .. } => "UpdateJobExecution(progress)",
        }
    }
}

struct InFlight {
    request: Request,
    attempt: u32,
    deadline: Millis,
}

struct Retry {
    at: Millis,
    request: Request,
    attempt: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryState {
    Idle,
    Scheduled(Millis),
    /// A GetPending or the candidate walk after it is under way.
    Running,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ActivePhase {
    Starting,
    Running,
    Finishing,
}

#[derive(Debug, Clone)]
struct Active {
    job_id: String,
    execution_number: i64,
    version: i64,
    phase: ActivePhase,
    /// Progress to report once the update in flight is answered.
    pending_progress: Option<StatusDetails>,
}

/// The jobs engine of one thing.
pub struct Engine {
    config: EngineConfig,
    topics: JobsTopics,
    rng: fastrand::Rng,
    token_prefix: String,
    next_token: u64,
    /// Requests awaiting a response, by client token, in the order they were sent (the
    /// token's sequence number), so that timeouts fire in a defined order.
    in_flight: BTreeMap<u64, InFlight>,
    /// Requests waiting out a back-off, retried in (time, order of scheduling).
    retries: Vec<Retry>,
    query: QueryState,
    /// Another query is wanted once the running one ends.
    requery: bool,
    candidates: VecDeque<String>,
    /// Jobs being started, run or reported (at most `max_concurrent_jobs`).
    active: Vec<Active>,
    /// Executions known not to be ours: (jobId, executionNumber).
    foreign: BTreeSet<(String, i64)>,
    next_safety_poll: Option<Millis>,
    /// What the journal says about jobs of an earlier run of this handler.
    recovered: BTreeMap<(String, i64), Recovered>,
    /// Every start request sent (token sequence → job id): a late acceptance of an earlier
    /// attempt still starts the job.
    start_tokens: BTreeMap<u64, String>,
    /// Markers of starts of ours whose answer was a VersionMismatch: the re-read decides
    /// whether the cloud holds our start (job id → (marker, execution number)).
    unconfirmed_starts: BTreeMap<String, (String, i64)>,
    /// Markers of starts an earlier process of this handler sent for jobs that were still
    /// QUEUED when this one started them again (job id → marker): such a start may still land,
    /// and the job is then ours all the same.
    earlier_starts: BTreeMap<String, String>,
    /// The queued executions of the last pending list when it was full (the API's limit):
    /// checked once the walk ends, to warn when all of them were foreign.
    full_list: Vec<(String, i64)>,
}

/// The most queued executions GetPendingJobExecutions and `notify` list: with this many
/// foreign jobs queued ahead, ours are invisible until those move.
pub const MAX_LISTED_QUEUED: usize = 10;

/// Longest `clientToken` the service accepts.
const MAX_CLIENT_TOKEN: usize = 64;

fn ms(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Engine {
    /// `seed` drives jitter and the client-token prefix; use a random one in production.
    pub fn new(config: EngineConfig, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let token_prefix = format!("ggjh-{:08x}", rng.u32(..));
        Self {
            topics: JobsTopics::new(&config.thing_name),
            config,
            rng,
            token_prefix,
            next_token: 0,
            in_flight: BTreeMap::new(),
            retries: Vec::new(),
            query: QueryState::Idle,
            requery: false,
            candidates: VecDeque::new(),
            active: Vec::new(),
            foreign: BTreeSet::new(),
            next_safety_poll: None,
            recovered: BTreeMap::new(),
            start_tokens: BTreeMap::new(),
            unconfirmed_starts: BTreeMap::new(),
            earlier_starts: BTreeMap::new(),
            full_list: Vec::new(),
        }
    }

    /// Applies new settings while running. Returns a topic to subscribe to when the reconnect
    /// topic changed. The thing name cannot change while running (it needs a restart).
    pub fn reconfigure(&mut self, now: Millis, config: EngineConfig) -> Option<String> {
        if config.thing_name != self.config.thing_name {
            tracing::warn!(
                running = %self.config.thing_name,
                configured = %config.thing_name,
                "thingName changed: takes effect after a restart"
            );
        }
        let new_topic = (config.reconnect_topic != self.config.reconnect_topic)
            .then(|| config.reconnect_topic.clone());
        if config.safety_poll != self.config.safety_poll {
            self.next_safety_poll = config.safety_poll.map(|every| now + ms(every));
        }
        let thing_name = std::mem::take(&mut self.config.thing_name);
        self.config = EngineConfig {
            thing_name,
            ..config
        };
        tracing::info!(
            reconnect_topic = %self.config.reconnect_topic,
            max_jitter_ms = ms(self.config.max_jitter),
            max_concurrent_jobs = self.config.max_concurrent_jobs,
            "configuration applied"
        );
        new_topic
    }

    fn at_capacity(&self) -> bool {
        self.active.len() >= self.config.max_concurrent_jobs.max(1)
    }

    fn active_mut(&mut self, job_id: &str) -> Option<&mut Active> {
        self.active.iter_mut().find(|a| a.job_id == job_id)
    }

    fn take_active(&mut self, job_id: &str) -> Option<Active> {
        let pos = self.active.iter().position(|a| a.job_id == job_id)?;
        Some(self.active.remove(pos))
    }

    fn is_active(&self, job_id: &str) -> bool {
        self.active.iter().any(|a| a.job_id == job_id)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Every topic filter the engine needs, the reconnect topic last.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut topics = self.topics.subscriptions();
        topics.push(self.config.reconnect_topic.clone());
        topics
    }

    /// The earliest time at which [`Input::Tick`] has work to do; `None` when idle.
    pub fn next_deadline(&self) -> Option<Millis> {
        let query = match self.query {
            QueryState::Scheduled(at) => Some(at),
            _ => None,
        };
        [
            query,
            self.in_flight.values().map(|f| f.deadline).min(),
            self.retries.iter().map(|r| r.at).min(),
            self.next_safety_poll,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether a job is being started, run or reported.
    pub fn busy(&self) -> bool {
        !self.active.is_empty()
    }

    /// Feeds one input at time `now`; returns what to do, in order.
    pub fn handle(&mut self, now: Millis, input: Input<'_>) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Started => {
                tracing::info!(thing = %self.config.thing_name, "jobs handler started; querying pending jobs");
                self.schedule_query(now, true);
                if let Some(every) = self.config.safety_poll {
                    self.next_safety_poll = Some(now + ms(every));
                }
            }
            Input::Message { topic, payload } => self.on_message(now, topic, payload, &mut out),
            Input::JobFinished {
                job_id,
                execution_number,
                outcome,
            } => self.on_job_finished(now, job_id, execution_number, outcome, &mut out),
            Input::Progress {
                job_id,
                execution_number,
                status_details,
            } => self.on_progress(now, job_id, execution_number, status_details, &mut out),
            Input::Tick => {}
            Input::IotConnection { connected: true } => {
                tracing::info!("IoT Core connection is up: re-querying jobs");
                self.schedule_query(now, true);
            }
            Input::IotConnection { connected: false } => {
                tracing::info!("IoT Core connection is down; queries resume when it is back");
            }
            Input::Recovered {
                job_id,
                execution_number,
                recovery,
            } => {
                self.recovered
                    .insert((job_id.to_owned(), execution_number), recovery);
            }
        }
        self.run_due(now, &mut out);
        out
    }

    // ---- scheduling -------------------------------------------------------------------

    fn jitter(&mut self) -> Millis {
        let max = ms(self.config.max_jitter);
        if max == 0 {
            0
        } else {
            self.rng.u64(0..=max)
        }
    }

    /// Asks for a query; bursts collapse into one.
    fn schedule_query(&mut self, now: Millis, with_jitter: bool) {
        match self.query {
            QueryState::Idle => {
                let at = now + if with_jitter { self.jitter() } else { 0 };
                if at > now {
                    tracing::info!(delay_ms = at - now, "pending-jobs query scheduled");
                }
                self.query = QueryState::Scheduled(at);
            }
            QueryState::Scheduled(at) if !with_jitter && at > now => {
                self.query = QueryState::Scheduled(now);
            }
            QueryState::Scheduled(_) => {
                tracing::debug!("query already scheduled; request collapsed");
            }
            QueryState::Running => self.requery = true,
        }
    }

    fn run_due(&mut self, now: Millis, out: &mut Vec<Action>) {
        if let Some(at) = self.next_safety_poll {
            if at <= now {
                if let Some(every) = self.config.safety_poll {
                    self.next_safety_poll = Some(now + ms(every));
                }
                tracing::info!("safety poll");
                self.schedule_query(now, false);
            }
        }
        self.start_due_query(now, out);
        // Requests whose response did not come: retry after back-off.
        let expired: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for token in expired {
            if let Some(f) = self.in_flight.remove(&token) {
                if let Request::Progress { job_id, .. } = &f.request {
                    // Best effort: a newer report (or the result) follows.
                    let job_id = job_id.clone();
                    self.send_pending_progress(now, &job_id, out);
                    continue;
                }
                tracing::warn!(
                    request = f.request.label(),
                    attempt = f.attempt + 1,
                    "no response in time; will retry"
                );
                self.retry_later(now, f.request, f.attempt);
            }
        }
        let (mut due, later): (Vec<Retry>, Vec<Retry>) = std::mem::take(&mut self.retries)
            .into_iter()
            .partition(|r| r.at <= now);
        self.retries = later;
        // Stable: equal times keep the order they were scheduled in.
        due.sort_by_key(|r| r.at);
        for r in due {
            self.send(now, r.request, r.attempt + 1, out);
        }
    }

    /// Sends the scheduled query once its time has come.
    fn start_due_query(&mut self, now: Millis, out: &mut Vec<Action>) {
        if let QueryState::Scheduled(at) = self.query {
            if at <= now {
                self.query = QueryState::Running;
                self.requery = false;
                tracing::info!("querying pending jobs");
                self.send(now, Request::GetPending, 0, out);
            }
        }
    }

    /// Retries after a missing or unusable response: the delay doubles per attempt up to
    /// `max_backoff`, plus up to half of it again at random.
    fn retry_later(&mut self, now: Millis, request: Request, attempt: u32) {
        let base = ms(self.config.base_backoff).max(1);
        let cap = ms(self.config.max_backoff).max(base);
        let delay = base.saturating_mul(1u64 << attempt.min(20)).min(cap);
        let spread = self.rng.u64(0..=delay / 2);
        self.retries.push(Retry {
            at: now + delay + spread,
            request,
            attempt,
        });
    }

    /// Retries after the service refused for now (RequestThrottled, InternalError): full
    /// jitter over a window that doubles per attempt up to `max_throttle_backoff`.
    fn retry_throttled(&mut self, now: Millis, request: Request, attempt: u32) {
        let base = ms(self.config.base_backoff).max(1);
        let cap = ms(self.config.max_throttle_backoff).max(base);
        let window = base.saturating_mul(1u64 << attempt.min(20)).min(cap);
        let wait = self.rng.u64(0..=window).max(1);
        self.retries.push(Retry {
            at: now + wait,
            request,
            attempt,
        });
    }

    fn token(&mut self) -> String {
        self.next_token += 1;
        let token = format!("{}-{}", self.token_prefix, self.next_token);
        debug_assert!(token.len() <= MAX_CLIENT_TOKEN);
        token
    }

    fn owns_token(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| t.starts_with(&self.token_prefix))
    }

    /// The sequence number of one of our tokens (`<prefix>-<n>`).
    fn token_seq(&self, token: &str) -> Option<u64> {
        token
            .strip_prefix(&self.token_prefix)?
            .strip_prefix('-')?
            .parse()
            .ok()
    }

    fn send(&mut self, now: Millis, request: Request, attempt: u32, out: &mut Vec<Action>) {
        let token = self.token();
        let (topic, payload) = match &request {
            Request::GetPending => (
                self.topics.get(),
                to_json(&GetPendingRequest {
                    client_token: Some(token.clone()),
                }),
            ),
            Request::Describe { job_id } | Request::CheckActive { job_id } => (
                self.topics.describe(job_id),
                to_json(&DescribeRequest {
                    // A running job is checked by its own execution, not the latest one.
                    execution_number: match &request {
                        Request::CheckActive { .. } => self
                            .active
                            .iter()
                            .find(|a| &a.job_id == job_id)
                            .map(|a| a.execution_number),
                        _ => None,
                    },
                    include_job_document: Some(true),
                    client_token: Some(token.clone()),
                }),
            ),
            Request::Start {
                job_id,
                execution_number,
                version,
                marker,
                ..
            } => (
                self.topics.update(job_id),
                to_json(&UpdateRequest {
                    status: JobStatus::InProgress,
                    status_details: Some([(START_MARKER_KEY.to_owned(), marker.clone())].into()),
                    expected_version: Some(*version),
                    // Every update names its execution: without it the service applies it to
                    // the latest one, which may be a retry that never ran here.
                    execution_number: Some(*execution_number),
                    include_job_execution_state: Some(true),
                    include_job_document: None,
                    step_timeout_in_minutes: self.config.step_timeout_minutes,
                    client_token: Some(token.clone()),
                }),
            ),
            Request::Progress { job_id, details } => {
                let active = self.active.iter().find(|a| &a.job_id == job_id);
                let version = active.map(|a| a.version);
                let execution_number = active.map(|a| a.execution_number);
                (
                    self.topics.update(job_id),
                    to_json(&UpdateRequest {
                        status: JobStatus::InProgress,
                        status_details: Some(super::status_details::bounded(details)),
                        expected_version: version,
                        execution_number,
                        include_job_execution_state: Some(true),
                        include_job_document: None,
                        step_timeout_in_minutes: None,
                        client_token: Some(token.clone()),
                    }),
                )
            }
            Request::Finish {
                job_id,
                execution_number,
                outcome,
                details_rejected,
            } => {
                let version = self
                    .active
                    .iter()
                    .find(|a| &a.job_id == job_id)
                    .map(|a| a.version);
                let details = if *details_rejected {
                    let mut d = StatusDetails::new();
                    d.insert(
                        "reason".into(),
                        "the service rejected this job's result details".into(),
                    );
                    d
                } else {
                    super::status_details::bounded(&outcome.status_details)
                };
                (
                    self.topics.update(job_id),
                    to_json(&UpdateRequest {
                        status: outcome.status,
                        status_details: (!details.is_empty()).then_some(details),
                        expected_version: version,
                        execution_number: Some(*execution_number),
                        include_job_execution_state: Some(true),
                        include_job_document: None,
                        step_timeout_in_minutes: None,
                        client_token: Some(token.clone()),
                    }),
                )
            }
        };
        tracing::debug!(request = request.label(), %topic, client_token = %token, "publishing request");
        if let Request::Start { job_id, .. } = &request {
            self.start_tokens.insert(self.next_token, job_id.clone());
        }
        out.push(Action::Publish { topic, payload });
        self.in_flight.insert(
            self.next_token,
            InFlight {
                request,
                attempt,
                deadline: now + ms(self.config.response_timeout),
            },
        );
    }

    // ---- messages -----------------------------------------------------------------------

    fn on_message(&mut self, now: Millis, topic: &str, payload: &[u8], out: &mut Vec<Action>) {
        if topic == self.config.reconnect_topic {
            tracing::info!(%topic, "reconnect message: the connection came back, re-querying jobs");
            self.schedule_query(now, true);
            return;
        }
        let Some(kind) = self.topics.parse(topic) else {
            tracing::debug!(%topic, "message on an unexpected topic ignored");
            return;
        };
        if kind == ResponseTopic::NotifyNext {
            return self.on_notify_next(now, payload, out);
        }
        if kind == ResponseTopic::Notify {
            return self.on_notify(now, payload);
        }
        let token = client_token_of(payload);
        if !self.owns_token(token.as_deref()) {
            // Responses to the nucleus (deployments) or other clients of this thing.
            tracing::debug!(%topic, "response to another client's request ignored");
            return;
        }
        let Some(token) = token else { return };
        let seq = self.token_seq(&token);
        if let (Some(seq), ResponseTopic::UpdateAccepted(job_id)) = (seq, &kind) {
            if !self.in_flight.contains_key(&seq)
                && self.late_start_accepted(now, seq, job_id, payload, out)
            {
                return;
            }
        }
        let Some(flight) = seq.and_then(|seq| self.in_flight.remove(&seq)) else {
            tracing::debug!(%topic, client_token = %token, "duplicate or late response ignored");
            return;
        };
        let accepted = matches!(
            kind,
            ResponseTopic::GetAccepted
                | ResponseTopic::StartNextAccepted
                | ResponseTopic::DescribeAccepted(_)
                | ResponseTopic::UpdateAccepted(_)
        );
        if accepted {
            self.on_accepted(now, flight, payload, out);
        } else {
            match serde_json::from_slice::<Rejected>(payload) {
                Ok(rejected) => self.on_rejected(now, flight, rejected, out),
                Err(e) => {
                    tracing::error!(%topic, error = %e, "undecodable rejection; retrying the request");
                    self.retry_later(now, flight.request, flight.attempt);
                }
            }
        }
    }

    fn on_accepted(
        &mut self,
        now: Millis,
        flight: InFlight,
        payload: &[u8],
        out: &mut Vec<Action>,
    ) {
        match flight.request {
            Request::GetPending => match serde_json::from_slice::<GetPendingAccepted>(payload) {
                Ok(list) => self.on_pending_list(now, list, out),
                Err(e) => {
                    tracing::error!(error = %e, "undecodable get/accepted; retrying");
                    self.retry_later(now, Request::GetPending, flight.attempt);
                }
            },
            Request::Describe { job_id } => {
                match serde_json::from_slice::<ExecutionResponse>(payload) {
                    Ok(r) => self.on_candidate(now, &job_id, r.execution, out),
                    Err(e) => self.on_undecodable_candidate(now, &job_id, payload, &e, out),
                }
            }
            Request::Progress { job_id, .. } => {
                let state = serde_json::from_slice::<UpdateAccepted>(payload)
                    .ok()
                    .and_then(|u| u.execution_state);
                if let (Some(a), Some(state)) = (self.active_mut(&job_id), state) {
                    a.version = state.version_number;
                }
                self.send_pending_progress(now, &job_id, out);
            }
            Request::CheckActive { job_id } => {
                let execution = serde_json::from_slice::<ExecutionResponse>(payload)
                    .ok()
                    .and_then(|r| r.execution);
                match execution {
                    Some(e) if e.status.is_terminal() => self.cloud_ended_active(
                        now,
                        &job_id,
                        &format!("the job is {} in the cloud", e.status),
                        out,
                    ),
                    Some(e) => {
                        if let Some(a) = self.active_mut(&job_id) {
                            a.version = a.version.max(e.version_number);
                        }
                    }
                    None => self.cloud_ended_active(
                        now,
                        &job_id,
                        "the job no longer exists in the cloud",
                        out,
                    ),
                }
            }
            Request::Start {
                job_id,
                execution_number,
                version,
                document,
                ..
            } => {
                let state = serde_json::from_slice::<UpdateAccepted>(payload)
                    .ok()
                    .and_then(|u| u.execution_state);
                let version = state.map_or(version + 1, |s| s.version_number);
                self.started(&job_id, execution_number, version, *document, out);
            }
            Request::Finish {
                job_id, outcome, ..
            } => {
                tracing::info!(job_id = %job_id, status = %outcome.status, "job result reported");
                if let Some(a) = self.take_active(&job_id) {
                    out.push(Action::Forget {
                        job_id: a.job_id,
                        execution_number: a.execution_number,
                    });
                }
                self.schedule_query(now, false);
            }
        }
    }

    /// The cloud holds our start: the work runs. Every other attempt of this start is dropped.
    fn started(
        &mut self,
        job_id: &str,
        execution_number: i64,
        version: i64,
        document: JobDocument,
        out: &mut Vec<Action>,
    ) {
        self.in_flight
            .retain(|_, f| !matches!(&f.request, Request::Start { job_id: j, .. } if j == job_id));
        self.retries
            .retain(|r| !matches!(&r.request, Request::Start { job_id: j, .. } if j == job_id));
        self.start_tokens.retain(|_, j| j != job_id);
        self.unconfirmed_starts.remove(job_id);
        self.earlier_starts.remove(job_id);
        let Some(active) = self.active_mut(job_id) else {
            return;
        };
        active.version = version;
        active.phase = ActivePhase::Running;
        tracing::info!(job_id = %job_id, execution_number, work = %document.label(), "job started");
        out.push(Action::Run(JobRun {
            job_id: job_id.to_owned(),
            execution_number,
            version_number: version,
            document,
        }));
    }

    /// An `update/accepted` for an earlier attempt of a start still being tried: the start
    /// went through. Returns whether the message was that.
    fn late_start_accepted(
        &mut self,
        _now: Millis,
        seq: u64,
        job_id: &str,
        payload: &[u8],
        out: &mut Vec<Action>,
    ) -> bool {
        if self.start_tokens.get(&seq).map(String::as_str) != Some(job_id) {
            return false;
        }
        let starting = self
            .active
            .iter()
            .any(|a| a.job_id == job_id && a.phase == ActivePhase::Starting);
        // The request being tried (in flight or waiting out a back-off) has what to run.
        let pending = self
            .in_flight
            .values()
            .map(|f| &f.request)
            .chain(self.retries.iter().map(|r| &r.request))
            .find_map(|r| match r {
                Request::Start {
                    job_id: j,
                    execution_number,
                    version,
                    document,
                    ..
                } if j == job_id => Some((*execution_number, *version, document.clone())),
                _ => None,
            });
        let (true, Some((execution_number, version, document))) = (starting, pending) else {
            return false;
        };
        tracing::info!(job_id = %job_id, "late acceptance of an earlier start attempt: the job is started");
        let state = serde_json::from_slice::<UpdateAccepted>(payload)
            .ok()
            .and_then(|u| u.execution_state);
        let version = state.map_or(version + 1, |s| s.version_number);
        self.started(job_id, execution_number, version, *document, out);
        true
    }

    fn on_rejected(
        &mut self,
        now: Millis,
        flight: InFlight,
        rejected: Rejected,
        out: &mut Vec<Action>,
    ) {
        let code = rejected.code.clone();
        let message = rejected.message.clone().unwrap_or_default();
        let retryable = matches!(code, ErrorCode::RequestThrottled | ErrorCode::InternalError);
        if retryable {
            tracing::warn!(request = flight.request.label(), ?code, %message, "request refused for now; backing off");
            self.retry_throttled(now, flight.request, flight.attempt);
            return;
        }
        match flight.request {
            Request::GetPending => {
                tracing::error!(?code, %message, "GetPendingJobExecutions rejected; retrying later");
                self.retry_later(now, Request::GetPending, flight.attempt);
            }
            Request::Describe { job_id } => {
                tracing::info!(job_id = %job_id, ?code, "candidate cannot be described; skipping it");
                let ended = matches!(
                    code,
                    ErrorCode::TerminalStateReached | ErrorCode::ResourceNotFound
                );
                if ended {
                    // A start of ours that lost to a cancel or delete: its journal entry can go.
                    self.earlier_starts.remove(&job_id);
                    if let Some((_, execution_number)) = self.unconfirmed_starts.remove(&job_id) {
                        self.start_tokens.retain(|_, j| *j != job_id);
                        out.push(Action::Forget {
                            job_id,
                            execution_number,
                        });
                    }
                }
                self.next_candidate(now, out);
            }
            Request::Progress { job_id, .. } => match (&code, rejected.execution_state.clone()) {
                (ErrorCode::VersionMismatch, Some(state)) if !state.status.is_terminal() => {
                    if let Some(a) = self.active_mut(&job_id) {
                        a.version = state.version_number;
                    }
                    self.send_pending_progress(now, &job_id, out);
                }
                (
                    ErrorCode::VersionMismatch
                    | ErrorCode::InvalidStateTransition
                    | ErrorCode::TerminalStateReached,
                    state,
                ) => {
                    let was = state.map_or("terminal".to_owned(), |s| s.status.to_string());
                    self.cloud_ended_active(
                        now,
                        &job_id,
                        &format!("the job is {was} in the cloud"),
                        out,
                    )
                }
                (ErrorCode::ResourceNotFound, _) => self.cloud_ended_active(
                    now,
                    &job_id,
                    "the job no longer exists in the cloud",
                    out,
                ),
                _ => tracing::debug!(job_id = %job_id, ?code, "progress report refused"),
            },
            Request::CheckActive { job_id } => match code {
                ErrorCode::ResourceNotFound => {
                    self.cloud_ended_active(now, &job_id, "the job was deleted in the cloud", out)
                }
                ErrorCode::TerminalStateReached => self.cloud_ended_active(
                    now,
                    &job_id,
                    "the job reached a terminal state in the cloud",
                    out,
                ),
                _ => {
                    tracing::warn!(job_id = %job_id, ?code, %message, "could not check the running job")
                }
            },
            Request::Start {
                job_id,
                execution_number,
                document,
                marker,
                ..
            } => match code {
                ErrorCode::VersionMismatch => {
                    let state = rejected.execution_state.clone();
                    let earlier = self.earlier_starts.get(&job_id).cloned();
                    if let Some(s) = state.filter(|s| {
                        holds_start(s.status, s.status_details.as_ref(), &marker)
                            || earlier.as_deref().is_some_and(|m| {
                                holds_start(s.status, s.status_details.as_ref(), m)
                            })
                    }) {
                        // An earlier attempt of this start went through (its answer was lost).
                        tracing::info!(job_id = %job_id, "the cloud holds our start; the job is started");
                        return self.started(
                            &job_id,
                            execution_number,
                            s.version_number,
                            *document,
                            out,
                        );
                    }
                    // Someone changed the execution since we read it: read it again. The
                    // re-read may still show our start (an attempt whose answer was lost).
                    tracing::info!(job_id = %job_id, "version changed before start; re-reading the execution");
                    self.take_active(&job_id);
                    // Lists seen while this start was under way were dropped (no capacity):
                    // once the re-read is done, look again.
                    self.requery = true;
                    self.unconfirmed_starts
                        .insert(job_id.clone(), (marker, execution_number));
                    self.candidates.push_front(job_id);
                    self.query = QueryState::Running;
                    self.next_candidate(now, out);
                }
                _ => {
                    tracing::warn!(job_id = %job_id, execution_number, ?code, %message, "job could not be started; looking for others");
                    self.take_active(&job_id);
                    self.requery = true;
                    self.start_tokens.retain(|_, j| *j != job_id);
                    out.push(Action::Forget {
                        job_id,
                        execution_number,
                    });
                    self.query = QueryState::Running;
                    self.next_candidate(now, out);
                }
            },
            Request::Finish {
                job_id,
                execution_number,
                outcome,
                details_rejected,
            } => {
                let state = rejected.execution_state.clone();
                match (&code, state) {
                    (ErrorCode::VersionMismatch, Some(s)) if s.status == outcome.status => {
                        self.finish_done(now, &job_id, "result already recorded", out)
                    }
                    (ErrorCode::VersionMismatch, Some(s)) if s.status.is_terminal() => self
                        .finish_done(
                            now,
                            &job_id,
                            &format!(
                                "the cloud already ended the job as {}; result discarded",
                                s.status
                            ),
                            out,
                        ),
                    (ErrorCode::VersionMismatch, Some(s)) if s.status == JobStatus::Queued => {
                        // Ours was IN_PROGRESS and never goes back to QUEUED: the service has
                        // a new execution under this number (a deleted one's number is reused).
                        self.finish_done(
                            now,
                            &job_id,
                            "the execution was replaced in the cloud; result discarded",
                            out,
                        )
                    }
                    (ErrorCode::VersionMismatch, Some(s)) => {
                        tracing::info!(job_id = %job_id, version = s.version_number, "version moved on; reporting the result again");
                        if let Some(a) = self.active_mut(&job_id) {
                            a.version = s.version_number;
                        }
                        let request = Request::Finish {
                            job_id,
                            execution_number,
                            outcome,
                            details_rejected,
                        };
                        self.send(now, request, flight.attempt + 1, out);
                    }
                    (
                        ErrorCode::InvalidStateTransition | ErrorCode::TerminalStateReached,
                        Some(s),
                    ) if s.status == outcome.status => {
                        // The first report went through; its acceptance was lost.
                        self.finish_done(now, &job_id, "result already recorded", out)
                    }
                    (ErrorCode::InvalidStateTransition | ErrorCode::TerminalStateReached, s) => {
                        let was = s.map_or("terminal".to_owned(), |s| s.status.to_string());
                        self.finish_done(
                            now,
                            &job_id,
                            &format!("the cloud already ended the job as {was}; result discarded"),
                            out,
                        )
                    }
                    (ErrorCode::ResourceNotFound, _) => self.finish_done(
                        now,
                        &job_id,
                        "the job was deleted in the cloud; result discarded",
                        out,
                    ),
                    (ErrorCode::InvalidRequest | ErrorCode::InvalidJson, _)
                        if !details_rejected =>
                    {
                        tracing::error!(job_id = %job_id, ?code, %message, "result rejected; reporting the status without its details");
                        let request = Request::Finish {
                            job_id,
                            execution_number,
                            outcome,
                            details_rejected: true,
                        };
                        self.send(now, request, 0, out);
                    }
                    _ => {
                        tracing::error!(job_id = %job_id, ?code, %message, "result rejected; retrying later");
                        let request = Request::Finish {
                            job_id,
                            execution_number,
                            outcome,
                            details_rejected,
                        };
                        self.retry_later(now, request, flight.attempt);
                    }
                }
            }
        }
    }

    fn finish_done(&mut self, now: Millis, job_id: &str, note: &str, out: &mut Vec<Action>) {
        tracing::warn!(job_id = %job_id, "{note}");
        if let Some(a) = self.take_active(job_id) {
            out.push(Action::Forget {
                job_id: a.job_id,
                execution_number: a.execution_number,
            });
        }
        self.schedule_query(now, false);
    }

    fn cloud_ended_active(
        &mut self,
        now: Millis,
        job_id: &str,
        reason: &str,
        out: &mut Vec<Action>,
    ) {
        let Some(active) = self.take_active(job_id) else {
            return;
        };
        tracing::warn!(job_id = %job_id, %reason, "stopping the job");
        out.push(Action::Forget {
            job_id: active.job_id.clone(),
            execution_number: active.execution_number,
        });
        if active.phase == ActivePhase::Running {
            out.push(Action::Cancel {
                job_id: active.job_id,
                execution_number: active.execution_number,
                reason: reason.to_owned(),
            });
        }
        self.in_flight
            .retain(|_, f| !matches!(&f.request, Request::Finish { job_id: j, .. } if j == job_id));
        self.schedule_query(now, false);
    }

    fn on_pending_list(&mut self, now: Millis, list: GetPendingAccepted, out: &mut Vec<Action>) {
        // Journal entries of jobs the cloud no longer lists as pending are settled.
        let listed: BTreeSet<(String, i64)> = list
            .in_progress_jobs
            .iter()
            .chain(list.queued_jobs.iter())
            .map(|s| (s.job_id.clone(), s.execution_number))
            .collect();
        // Foreign executions that are no longer pending need not be remembered.
        self.foreign.retain(|k| listed.contains(k));
        let settled: Vec<(String, i64)> = self
            .recovered
            .keys()
            .filter(|k| !listed.contains(*k))
            .cloned()
            .collect();
        for (job_id, execution_number) in settled {
            tracing::info!(job_id = %job_id, "interrupted job is no longer pending in the cloud; forgetting it");
            self.recovered.remove(&(job_id.clone(), execution_number));
            out.push(Action::Forget {
                job_id,
                execution_number,
            });
        }

        let mut candidates = VecDeque::new();
        for s in list.in_progress_jobs.iter().chain(list.queued_jobs.iter()) {
            let known_foreign = self
                .foreign
                .contains(&(s.job_id.clone(), s.execution_number));
            if !known_foreign && !self.is_active(&s.job_id) {
                candidates.push_back(s.job_id.clone());
            }
        }
        tracing::info!(
            in_progress = list.in_progress_jobs.len(),
            queued = list.queued_jobs.len(),
            to_check = candidates.len(),
            "pending jobs listed"
        );
        self.candidates = candidates;
        self.full_list = if list.queued_jobs.len() >= MAX_LISTED_QUEUED {
            list.queued_jobs
                .iter()
                .map(|s| (s.job_id.clone(), s.execution_number))
                .collect()
        } else {
            Vec::new()
        };
        self.next_candidate(now, out);
    }

    /// Warns when a full list (the API lists at most [`MAX_LISTED_QUEUED`] queued executions)
    /// held only foreign jobs: jobs of ours queued behind them cannot be seen.
    fn warn_if_hidden(&mut self, listed: &[(String, i64)], source: &str) {
        if listed.len() >= MAX_LISTED_QUEUED && listed.iter().all(|k| self.foreign.contains(k)) {
            tracing::warn!(
                queued = listed.len(),
                %source,
                "the Jobs API lists at most 10 queued executions and all of them are foreign: jobs of ours queued behind them are invisible until those move"
            );
        }
    }

    fn next_candidate(&mut self, now: Millis, out: &mut Vec<Action>) {
        if self.at_capacity() {
            // Busy: the rest waits for the query after a job ends.
            self.candidates.clear();
        }
        match self.candidates.pop_front() {
            Some(job_id) => self.send(now, Request::Describe { job_id }, 0, out),
            None => {
                let full_list = std::mem::take(&mut self.full_list);
                self.warn_if_hidden(&full_list, "GetPendingJobExecutions");
                self.query = QueryState::Idle;
                if std::mem::take(&mut self.requery) {
                    self.schedule_query(now, false);
                    self.start_due_query(now, out);
                }
            }
        }
    }

    /// A described candidate: run it if it is ours and queued.
    fn on_candidate(
        &mut self,
        now: Millis,
        job_id: &str,
        execution: Option<JobExecution>,
        out: &mut Vec<Action>,
    ) {
        let Some(execution) = execution else {
            return self.next_candidate(now, out);
        };
        match self.consider(now, execution, out) {
            Considered::Started if !self.at_capacity() => self.next_candidate(now, out),
            Considered::Started => {
                // The rest of the queue is looked at again once a job is reported.
                self.candidates.clear();
                self.query = QueryState::Idle;
            }
            Considered::Skipped => {
                tracing::debug!(job_id = %job_id, "candidate skipped");
                self.next_candidate(now, out);
            }
        }
    }

    /// A describe answer that does not decode (e.g. a document nested deeper than the JSON
    /// parser allows). The execution is read again without decoding its document; when the
    /// document may be ours it is judged malformed (REJECTED with the reason), otherwise the
    /// candidate is skipped as before.
    fn on_undecodable_candidate(
        &mut self,
        now: Millis,
        job_id: &str,
        payload: &[u8],
        error: &serde_json::Error,
        out: &mut Vec<Action>,
    ) {
        tracing::error!(job_id = %job_id, %error, "undecodable describe response");
        let Some((execution, document)) = super::undecodable::read(payload) else {
            tracing::error!(job_id = %job_id, "describe response unreadable even without its document; skipping the candidate");
            return self.next_candidate(now, out);
        };
        if execution.job_id != job_id || !super::undecodable::may_be_ours(document.get()) {
            tracing::info!(job_id = %job_id, "undecodable document is not of our forms; leaving the job alone");
            return self.next_candidate(now, out);
        }
        let reason = format!("the job document cannot be parsed: {error}");
        self.on_judged_candidate(now, execution, Ownership::OursMalformed(reason), out);
    }

    /// [`Self::on_candidate`] for an execution already judged.
    fn on_judged_candidate(
        &mut self,
        now: Millis,
        execution: JobExecution,
        ownership: Ownership,
        out: &mut Vec<Action>,
    ) {
        match self.judged(now, execution, ownership, out) {
            Considered::Started if !self.at_capacity() => self.next_candidate(now, out),
            Considered::Started => {
                self.candidates.clear();
                self.query = QueryState::Idle;
            }
            Considered::Skipped => self.next_candidate(now, out),
        }
    }

    /// Decides what to do with one execution seen in a describe or notify-next.
    fn consider(&mut self, now: Millis, e: JobExecution, out: &mut Vec<Action>) -> Considered {
        if e.job_document.is_none() {
            // Without its document a job cannot be judged: never mark it foreign on that basis.
            tracing::debug!(job_id = %e.job_id, "execution without its document; not judged");
            return Considered::Skipped;
        }
        let ownership = classify(e.job_document.as_ref());
        self.judged(now, e, ownership, out)
    }

    /// Acts on an execution whose document has been judged.
    fn judged(
        &mut self,
        now: Millis,
        e: JobExecution,
        ownership: Ownership,
        out: &mut Vec<Action>,
    ) -> Considered {
        if self.is_active(&e.job_id) {
            return Considered::Skipped;
        }
        if ownership == Ownership::Foreign {
            tracing::info!(job_id = %e.job_id, "job is not ours (unknown document format); leaving it alone");
            self.foreign.insert((e.job_id, e.execution_number));
            return Considered::Skipped;
        }
        if self.at_capacity() {
            return Considered::Skipped;
        }
        match (e.status, ownership) {
            (JobStatus::Queued, Ownership::Ours(document)) => {
                tracing::info!(job_id = %e.job_id, execution_number = e.execution_number, "starting job");
                if let Some((_, number)) = self.unconfirmed_starts.remove(&e.job_id) {
                    if number != e.execution_number {
                        // That start was for an execution the cloud has ended since (a retry
                        // or a new member's execution replaces it): its journal entry can go.
                        out.push(Action::Forget {
                            job_id: e.job_id.clone(),
                            execution_number: number,
                        });
                    }
                }
                let earlier = self
                    .recovered
                    .remove(&(e.job_id.clone(), e.execution_number));
                if let Some(Recovered::NotStarted { marker }) = earlier {
                    self.earlier_starts.insert(e.job_id.clone(), marker);
                }
                self.active.push(Active {
                    job_id: e.job_id.clone(),
                    execution_number: e.execution_number,
                    version: e.version_number,
                    phase: ActivePhase::Starting,
                    pending_progress: None,
                });
                // Named after the token the first attempt carries: unique to this process.
                let marker = format!("{}-{}", self.token_prefix, self.next_token + 1);
                out.push(Action::Record(Record::Starting {
                    job_id: e.job_id.clone(),
                    execution_number: e.execution_number,
                    marker: marker.clone(),
                }));
                let request = Request::Start {
                    job_id: e.job_id,
                    execution_number: e.execution_number,
                    version: e.version_number,
                    document: Box::new(document),
                    marker,
                };
                self.send(now, request, 0, out);
                Considered::Started
            }
            (JobStatus::Queued, Ownership::OursMalformed(reason)) => {
                tracing::error!(job_id = %e.job_id, %reason, "job document is malformed; rejecting the job");
                self.report_directly(now, e, JobStatus::Rejected, &[("reason", &reason)], out);
                Considered::Started
            }
            (JobStatus::InProgress, ownership) => {
                self.in_progress_not_running(now, e, ownership, out)
            }
            _ => Considered::Skipped,
        }
    }

    /// An IN_PROGRESS job of our forms that is not running in this process. It is ours only
    /// when this handler started it: a start of this process whose answer was lost (the
    /// cloud shows its marker), or a job the journal of an earlier run holds. Anything else
    /// was started by another instance of the handler on this thing and is left to it.
    fn in_progress_not_running(
        &mut self,
        now: Millis,
        e: JobExecution,
        ownership: Ownership,
        out: &mut Vec<Action>,
    ) -> Considered {
        let key = (e.job_id.clone(), e.execution_number);
        let recovered_marker = match self.recovered.get(&key) {
            Some(Recovered::NotStarted { marker }) => Some(marker.clone()),
            _ => None,
        };
        let ours = [
            recovered_marker,
            self.unconfirmed_starts
                .get(&e.job_id)
                .map(|(marker, _)| marker.clone()),
            self.earlier_starts.get(&e.job_id).cloned(),
        ]
        .into_iter()
        .flatten()
        .find(|m| holds_start(e.status, e.status_details.as_ref(), m));
        if ours.is_some() {
            self.recovered.remove(&key);
            return match ownership {
                Ownership::Ours(document) => {
                    tracing::info!(job_id = %e.job_id, "the cloud holds our start; running the job");
                    self.active.push(Active {
                        job_id: e.job_id.clone(),
                        execution_number: e.execution_number,
                        version: e.version_number,
                        phase: ActivePhase::Starting,
                        pending_progress: None,
                    });
                    self.started(
                        &e.job_id,
                        e.execution_number,
                        e.version_number,
                        document,
                        out,
                    );
                    Considered::Started
                }
                Ownership::OursMalformed(reason) => {
                    self.report_directly(now, e, JobStatus::Rejected, &[("reason", &reason)], out);
                    Considered::Started
                }
                Ownership::Foreign => Considered::Skipped,
            };
        }
        match self.recovered.remove(&key) {
            Some(Recovered::Ended(outcome)) => {
                tracing::warn!(job_id = %e.job_id, status = %outcome.status, "our job from before the restart is IN_PROGRESS; reporting how the journal says it ended");
                self.report_outcome(now, e, outcome, out);
                Considered::Started
            }
            recovered => {
                tracing::info!(job_id = %e.job_id, "IN_PROGRESS job not started by this handler (another instance on this thing?); leaving it to its owner");
                self.earlier_starts.remove(&e.job_id);
                let ours_journaled =
                    self.unconfirmed_starts.remove(&e.job_id).is_some() || recovered.is_some();
                if ours_journaled {
                    // Our start lost the race: its journal entry can go.
                    out.push(Action::Forget {
                        job_id: e.job_id.clone(),
                        execution_number: e.execution_number,
                    });
                }
                self.foreign.insert(key);
                Considered::Skipped
            }
        }
    }

    /// Reports a terminal status for a job that never ran here.
    fn report_directly(
        &mut self,
        now: Millis,
        e: JobExecution,
        status: JobStatus,
        details: &[(&str, &str)],
        out: &mut Vec<Action>,
    ) {
        let outcome = JobOutcome {
            status,
            status_details: details
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        self.report_outcome(now, e, outcome, out);
    }

    fn report_outcome(
        &mut self,
        now: Millis,
        e: JobExecution,
        outcome: JobOutcome,
        out: &mut Vec<Action>,
    ) {
        self.active.push(Active {
            job_id: e.job_id.clone(),
            execution_number: e.execution_number,
            version: e.version_number,
            phase: ActivePhase::Finishing,
            pending_progress: None,
        });
        let request = Request::Finish {
            job_id: e.job_id,
            execution_number: e.execution_number,
            outcome,
            details_rejected: false,
        };
        self.send(now, request, 0, out);
    }

    fn on_notify_next(&mut self, now: Millis, payload: &[u8], out: &mut Vec<Action>) {
        let notification = match serde_json::from_slice::<ExecutionResponse>(payload) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "undecodable notify-next; querying instead");
                self.schedule_query(now, false);
                return;
            }
        };
        // Running jobs that notify-next no longer names may have been canceled: check them,
        // without assuming.
        let head = notification.execution.as_ref().map(|e| e.job_id.clone());
        let to_check: Vec<String> = self
            .active
            .iter()
            .filter(|a| {
                a.phase == ActivePhase::Running && head.as_deref() != Some(a.job_id.as_str())
            })
            .map(|a| a.job_id.clone())
            .collect();
        for job_id in to_check {
            let checking = self
                .in_flight
                .values()
                .any(|f| matches!(&f.request, Request::CheckActive { job_id: j } if *j == job_id));
            if !checking {
                self.send(now, Request::CheckActive { job_id }, 0, out);
            }
        }
        if self.at_capacity() {
            return;
        }
        match notification.execution {
            None => tracing::info!("notify-next: no pending jobs"),
            Some(execution) => {
                let job_id = execution.job_id.clone();
                if self
                    .foreign
                    .contains(&(job_id.clone(), execution.execution_number))
                {
                    tracing::debug!(job_id = %job_id, "notify-next names a job that is not ours");
                    return;
                }
                tracing::info!(job_id = %job_id, status = %execution.status, "notify-next: next job announced");
                if execution.job_document.is_none() {
                    // Read it with its document through the query.
                    self.schedule_query(now, false);
                    return;
                }
                if self.query == QueryState::Running {
                    self.requery = true;
                    return;
                }
                if self.consider(now, execution, out) == Considered::Skipped {
                    // A foreign head hides the jobs behind it from notify-next; `notify`
                    // announces those, so there is nothing more to do here.
                    tracing::debug!(job_id = %job_id, "head job not runnable here");
                }
            }
        }
    }

    /// `notify`: the pending list changed. A job we have not looked at yet may be queued
    /// behind a foreign head, where notify-next never announces it.
    fn on_notify(&mut self, now: Millis, payload: &[u8]) {
        let notify = match serde_json::from_slice::<Notify>(payload) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable notify ignored");
                return;
            }
        };
        if let Some(queued) = notify.jobs.get("QUEUED") {
            let listed: Vec<(String, i64)> = queued
                .iter()
                .map(|s| (s.job_id.clone(), s.execution_number))
                .collect();
            self.warn_if_hidden(&listed, "notify");
        }
        if self.at_capacity() {
            return;
        }
        let unseen = notify.jobs.values().flatten().any(|s| {
            !self
                .foreign
                .contains(&(s.job_id.clone(), s.execution_number))
        });
        if unseen {
            tracing::info!("notify: the pending list changed; querying");
            self.schedule_query(now, false);
        }
    }

    /// A step started: report it unless a report for this job is already on its way (then the
    /// newest one goes once that is answered).
    fn on_progress(
        &mut self,
        now: Millis,
        job_id: &str,
        execution_number: i64,
        details: StatusDetails,
        out: &mut Vec<Action>,
    ) {
        let in_flight = self
            .in_flight
            .values()
            .any(|f| matches!(&f.request, Request::Progress { job_id: j, .. } if j == job_id));
        let Some(active) = self.active.iter_mut().find(|a| {
            a.job_id == job_id
                && a.execution_number == execution_number
                && a.phase == ActivePhase::Running
        }) else {
            return;
        };
        if in_flight {
            active.pending_progress = Some(details);
            return;
        }
        let request = Request::Progress {
            job_id: job_id.to_owned(),
            details,
        };
        self.send(now, request, 0, out);
    }

    fn send_pending_progress(&mut self, now: Millis, job_id: &str, out: &mut Vec<Action>) {
        let Some(details) = self
            .active
            .iter_mut()
            .find(|a| a.job_id == job_id && a.phase == ActivePhase::Running)
            .and_then(|a| a.pending_progress.take())
        else {
            return;
        };
        self.send(
            now,
            Request::Progress {
                job_id: job_id.to_owned(),
                details,
            },
            0,
            out,
        );
    }

    fn on_job_finished(
        &mut self,
        now: Millis,
        job_id: &str,
        execution_number: i64,
        outcome: JobOutcome,
        out: &mut Vec<Action>,
    ) {
        let matches = self.active.iter().any(|a| {
            a.job_id == job_id
                && a.execution_number == execution_number
                && a.phase == ActivePhase::Running
        });
        if !matches {
            tracing::debug!(
                job_id,
                "finished job is no longer tracked (canceled); nothing to report"
            );
            return;
        }
        if let Some(a) = self.active_mut(job_id) {
            a.phase = ActivePhase::Finishing;
        }
        tracing::info!(job_id, status = %outcome.status, "job finished; reporting the result");
        out.push(Action::Record(Record::Finished {
            job_id: job_id.to_owned(),
            execution_number,
            outcome: outcome.clone(),
        }));
        let request = Request::Finish {
            job_id: job_id.to_owned(),
            execution_number,
            outcome,
            details_rejected: false,
        };
        self.send(now, request, 0, out);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Considered {
    Started,
    Skipped,
}

/// Whether an execution's state shows the start marked `marker`.
fn holds_start(status: JobStatus, details: Option<&StatusDetails>, marker: &str) -> bool {
    status == JobStatus::InProgress
        && details
            .and_then(|d| d.get(START_MARKER_KEY))
            .is_some_and(|m| m == marker)
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings and numbers always serialise.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests;
