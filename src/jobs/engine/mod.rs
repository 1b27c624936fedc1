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
//! Call order: [`Input::Journal`] (the journal's installation id), one [`Input::Recovered`]
//! per journal entry of an earlier run; then the shell subscribes to [`Engine::subscriptions`]
//! (a pure function of the configuration) and gives [`Input::Started`]; then messages, job
//! results, progress, connection status, configuration changes and ticks as they come. The
//! shell carries out the returned actions in order, subscriptions included
//! ([`Action::Subscribe`], [`Action::Resubscribe`]). The rule is **journal before run, journal
//! before report**: an [`Action::Record`] comes before the run of the start it announces and
//! before the result it holds, and the shell writes it durably before going on; the shell
//! journals a job's run before its work begins ([`Action::Run`]). A start request goes out
//! *before* its record when the journal has an installation id: the start's marker names the
//! installation, so a later process that finds the start in the cloud without a record knows
//! that it was its own and that the work never began (the disk's flush then overlaps the
//! start's round trip instead of delaying it).
//!
//! One concept per file: request tracking (tokens, timeouts, retries) in `requests`, query
//! scheduling (jitter, bursts, safety poll) in `query`, routing of incoming messages in
//! `responses`, the candidate walk and ownership in `candidates`, the rejection table in
//! `rejections`, active jobs (start, progress, finish, cancel) in `active`, and jobs left by an
//! earlier run in `recovery`.
//!
//! Starting a job: StartNextPendingJobExecution starts whatever execution is at the head of the
//! queue, with no job id and no `expectedVersion`, so it could start a Greengrass deployment or
//! another agent's job. The engine therefore describes each candidate (`{jobId}/get`), checks
//! that the document is ours, and starts it with `{jobId}/update` IN_PROGRESS and the version it
//! read: a conditional start that never touches a job that is not ours.

mod active;
mod candidates;
mod in_flight;
mod oversize;
mod query;
mod recovery;
mod rejections;
mod requests;
mod responses;
mod silence;

pub use super::job::{JobOutcome, JobRun, Millis, Recovered};
pub use candidates::MAX_LISTED_QUEUED;

use super::messages::StatusDetails;
use super::topics::JobsTopics;
use active::Active;
use in_flight::InFlightTable;
use query::QueryState;
use requests::Retry;
use silence::{Connection, Silence};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Engine settings.
#[derive(Debug, Clone, PartialEq)]
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
    /// the whole window, and a device retries within this cap of the service recovering. The
    /// cap trades the two: a larger one spreads a large fleet further (N devices held back
    /// offer about 2N/cap requests a second), a smaller one ends a burst's tail sooner (a
    /// whole fleet reconnecting at once finishes within about the cap of the quota allowing
    /// it: 10,000 cores at 1,000 a second took 72 s with 30 s, 152 s with 120 s).
    pub max_throttle_backoff: Duration,
    /// Query this often even without a reconnect message (off when `None`).
    pub safety_poll: Option<Duration>,
    /// `stepTimeoutInMinutes` sent when a job is started.
    pub step_timeout_minutes: Option<i64>,
    /// Jobs run at the same time (1: one after the other).
    pub max_concurrent_jobs: usize,
    /// Unanswered describes of one job in a row before a describe without the document checks
    /// whether the answer is too large to reach the core.
    pub oversize_after: u32,
    /// The longest a job whose description does not arrive is set aside (the first time for a
    /// minute, doubling with each round in a row; see `oversize`).
    pub oversize_backoff: Duration,
    /// Silent requests in a row (no message of any kind since each was sent) before the
    /// subscriptions are re-created, and again after that before the process exits.
    pub deaf_after: u32,
    /// Silence before the process exits (after resubscribing) with ConnectionStatus CONNECTED.
    pub deaf_exit_after: Duration,
    /// The same where the nucleus does not report the connection.
    pub deaf_exit_unknown_after: Duration,
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
            oversize_after: 3,
            oversize_backoff: Duration::from_secs(3600),
            deaf_after: 4,
            deaf_exit_after: Duration::from_secs(3600),
            deaf_exit_unknown_after: Duration::from_secs(6 * 3600),
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
    /// New settings while running. The thing name cannot change while running (it needs a
    /// restart); a changed reconnect topic comes back as [`Action::Subscribe`].
    Reconfigure(EngineConfig),
    /// The core's IoT Core connection changed (SubscribeToIoTCoreConnectionStatus). Connected:
    /// query exactly as a reconnect message does (jitter, bursts collapsed), and retries of
    /// requests that went unanswered go out after the same jitter. Disconnected: noted;
    /// requests in flight are left to their response timeouts.
    IotConnection { connected: bool },
    /// The nucleus does not report the core's IoT Core connection (SubscribeToIoTCoreConnectionStatus
    /// refused or ended): whether the core is online is unknown from now on.
    IotConnectionUnknown,
    /// At start-up, first: the journal's installation id (durable, unique to this
    /// installation of the handler; empty when there is none, and then every start waits for
    /// its record) and whether the journal was read whole (`false`: a damaged part was set
    /// aside, so entries may be missing).
    Journal { installation: &'a str, intact: bool },
    /// At start-up, before [`Input::Started`]: a job the journal holds from before this
    /// process, and what the journal says about it.
    Recovered {
        job_id: &'a str,
        execution_number: i64,
        recovery: Recovered,
    },
}

/// What the shell must write to its journal, durably, before carrying out the actions after it.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A start request (marked with `marker` in its statusDetails) has just gone out (the
    /// journal has an installation id) or is about to: recorded before the job runs.
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
    /// Subscribe to these topic filters as well (a changed reconnect topic).
    Subscribe {
        topics: Vec<String>,
    },
    /// IoT Core messages stopped reaching the handler although its requests go out: drop every
    /// IoT Core subscription and subscribe again to [`Engine::subscriptions`].
    Resubscribe,
    /// Resubscribing did not bring messages back: end the process with a failure status so
    /// that the nucleus restarts the component (the journal keeps what is in flight).
    Exit {
        reason: String,
    },
}

/// The jobs engine of one thing.
pub struct Engine {
    config: EngineConfig,
    topics: JobsTopics,
    rng: fastrand::Rng,
    token_prefix: String,
    next_token: u64,
    /// The journal's installation id ([`Input::Journal`]; empty: none), the first part of
    /// every start marker of this handler's processes.
    installation: String,
    /// Whether the journal was read whole at start-up.
    journal_intact: bool,
    /// Requests awaiting a response, by client token, in the order they were sent (the
    /// token's sequence number), so that timeouts fire in a defined order.
    in_flight: InFlightTable,
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
    /// Whether messages reach the engine at all.
    silence: Silence,
    /// Jobs whose description is too large to reach the core, until when they are set aside.
    set_aside: BTreeMap<String, Millis>,
    /// Jobs already named in the too-large warning (one WARN per job).
    oversize_warned: BTreeSet<String>,
    /// Rounds in a row of unanswered describes and an answered probe, per job.
    oversize_rounds: BTreeMap<String, u32>,
    /// How far the throttling back-off has doubled: one more per refusal for now, one less
    /// per accepted answer (see `retry_throttled`).
    throttle_level: u32,
    /// Executions a `notify` listed that nothing has shown since, and when to query for them
    /// if nothing does (see `on_notify`).
    notified: Option<(Millis, Vec<(String, i64)>)>,
}

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
            installation: String::new(),
            journal_intact: true,
            in_flight: InFlightTable::default(),
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
            silence: Silence::new(),
            set_aside: BTreeMap::new(),
            notified: None,
            oversize_warned: BTreeSet::new(),
            oversize_rounds: BTreeMap::new(),
            throttle_level: 0,
        }
    }

    /// Applies new settings ([`Input::Reconfigure`]). Returns a topic to subscribe to when the
    /// reconnect topic changed.
    fn reconfigure(&mut self, now: Millis, config: EngineConfig) -> Option<String> {
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

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Every topic filter the engine needs, the reconnect topic last: what the shell subscribes
    /// to before [`Input::Started`] (and again on [`Action::Resubscribe`]).
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
            self.next_look_again(),
            self.notified.as_ref().map(|(at, _)| *at),
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
                self.listening_from(now);
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
            Input::Reconfigure(config) => {
                if let Some(topic) = self.reconfigure(now, config) {
                    out.push(Action::Subscribe {
                        topics: vec![topic],
                    });
                }
            }
            Input::IotConnection { connected: true } => {
                tracing::info!("IoT Core connection is up: re-querying jobs");
                self.connection_reported(now, Connection::Up);
                self.schedule_query(now, true);
                self.bring_retries_forward(now);
            }
            Input::IotConnection { connected: false } => {
                tracing::info!("IoT Core connection is down; queries resume when it is back");
                self.connection_reported(now, Connection::Down);
            }
            Input::IotConnectionUnknown => self.connection_reported(now, Connection::Unknown),
            Input::Journal {
                installation,
                intact,
            } => {
                self.installation = installation.to_owned();
                self.journal_intact = intact;
            }
            Input::Recovered {
                job_id,
                execution_number,
                recovery,
            } => self.remember_recovered(job_id, execution_number, recovery),
        }
        self.run_due(now, &mut out);
        out
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod silence_tests;

#[cfg(test)]
mod unrecorded_start_tests;
