//! The emulated AWS IoT Jobs service: control plane and device-side MQTT data plane.
//!
//! Owns: things, jobs and their executions (status, statusDetails, versions, execution numbers,
//! timestamps), the Jobs MQTT API's requests, responses and error codes, `notify` and
//! `notify-next` by the service's rules, step and in-progress timers (TIMED_OUT), cancellation,
//! and injected throttling. Must not know: the broker, connections or real time (epoch
//! milliseconds are passed in).
//!
//! Behaviour follows the device-side Jobs MQTT API documentation. Where AWS leaves a point open:
//! jobs of every namespace (Greengrass deployments use `aws-gg-deployment`) are visible through
//! the plain `get`, `$next` and notification topics, which is the hardest case for a handler
//! that must leave foreign jobs alone; and QUEUED may go straight to a terminal status.

use super::iot_core::Publication;
use crate::jobs::messages::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Entries in `get/accepted` lists and `notify`.
pub const MAX_LISTED: usize = 10;
pub const MAX_CLIENT_TOKEN: usize = 64;
pub const MAX_DOCUMENT_CHARS: usize = 32_768;

/// Something the service sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A response for the requesting client only (`*/accepted`, `*/rejected`).
    Reply { topic: String, payload: Vec<u8> },
    /// A notification published through the broker.
    Publish(Publication),
}

/// A control-plane failure, named like the AWS exception.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ControlError {
    pub code: &'static str,
    pub message: String,
}

fn control(code: &'static str, message: impl Into<String>) -> ControlError {
    ControlError {
        code,
        message: message.into(),
    }
}

/// What CreateJob takes.
#[derive(Debug, Clone, Default)]
pub struct NewJob {
    pub job_id: String,
    pub targets: Vec<String>,
    pub document: Value,
    pub description: Option<String>,
    pub namespace_id: Option<String>,
    pub in_progress_timeout_minutes: Option<i64>,
    pub retry: RetryConfig,
    /// Thing groups targeted (their members get executions).
    pub target_groups: Vec<String>,
    /// `targetSelection: CONTINUOUS`: things that join a targeted group later get an
    /// execution, things that leave it have their pending one REMOVED.
    pub continuous: bool,
}

/// `jobExecutionsRetryConfig`: how often a FAILED or TIMED_OUT execution is queued again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryConfig {
    pub failed: u32,
    pub timed_out: u32,
}

/// At most this many retries per device, across failure types.
pub const MAX_RETRIES: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    InProgress,
    Canceled,
    Completed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Canceled => "CANCELED",
            Self::Completed => "COMPLETED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub job_id: String,
    pub document: Value,
    pub targets: Vec<String>,
    pub description: Option<String>,
    pub namespace_id: Option<String>,
    pub in_progress_timeout_minutes: Option<i64>,
    pub retry: RetryConfig,
    pub target_groups: Vec<String>,
    pub continuous: bool,
    pub state: JobState,
    pub created_at_ms: u64,
    pub last_updated_at_ms: u64,
    pub force_canceled: bool,
}

/// One execution of a job on a thing.
#[derive(Debug, Clone)]
pub struct Execution {
    pub job_id: String,
    pub thing_name: String,
    pub execution_number: i64,
    pub status: JobStatus,
    pub status_details: StatusDetails,
    pub queued_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub last_updated_at_ms: u64,
    pub version_number: i64,
    /// 0 for the first execution, n for the n-th retry.
    pub retry_attempt: u32,
    step_deadline_ms: Option<u64>,
    in_progress_deadline_ms: Option<u64>,
}

impl Execution {
    fn deadline(&self) -> Option<u64> {
        match (self.step_deadline_ms, self.in_progress_deadline_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn secs(ms: u64) -> u64 {
    ms / 1000
}

/// The service.
#[derive(Debug, Default)]
pub struct JobsService {
    things: BTreeSet<String>,
    /// Static thing groups and their members.
    groups: BTreeMap<String, BTreeSet<String>>,
    jobs: BTreeMap<String, Job>,
    /// Executions per thing, in creation order.
    executions: HashMap<String, Vec<Execution>>,
    /// Requests still to be refused with RequestThrottled, per thing.
    throttled: HashMap<String, u32>,
}

/// What a device request asks for.
enum DeviceRequest<'a> {
    GetPending,
    StartNext,
    Describe(&'a str),
    Update(&'a str),
}

type Snapshot = (Option<(String, i64)>, Vec<(String, i64)>);
/// Builds a `*/rejected` reply: (code, message, executionState to include).
type Reject<'a> = dyn Fn(&str, &str, Option<&Execution>) -> Vec<Output> + 'a;

impl JobsService {
    // ---- control plane --------------------------------------------------------------

    pub fn create_thing(&mut self, thing_name: &str) -> Result<(), ControlError> {
        if !valid_thing_name(thing_name) {
            return Err(control(
                "InvalidRequestException",
                format!("invalid thing name {thing_name:?}"),
            ));
        }
        self.things.insert(thing_name.to_owned());
        Ok(())
    }

    pub fn create_job(&mut self, new: NewJob, now_ms: u64) -> Result<Vec<Output>, ControlError> {
        if !valid_job_id(&new.job_id) {
            return Err(control(
                "InvalidRequestException",
                format!("invalid jobId {:?}", new.job_id),
            ));
        }
        if self.jobs.contains_key(&new.job_id) {
            return Err(control(
                "ResourceAlreadyExistsException",
                format!("job {} already exists", new.job_id),
            ));
        }
        if !new.document.is_object() {
            return Err(control(
                "InvalidRequestException",
                "the job document must be a JSON object",
            ));
        }
        if new.document.to_string().chars().count() > MAX_DOCUMENT_CHARS {
            return Err(control(
                "InvalidRequestException",
                format!("the job document exceeds {MAX_DOCUMENT_CHARS} characters"),
            ));
        }
        if new.targets.is_empty() && new.target_groups.is_empty() {
            return Err(control(
                "InvalidRequestException",
                "a job needs at least one target",
            ));
        }
        if let Some(g) = new
            .target_groups
            .iter()
            .find(|g| !self.groups.contains_key(*g))
        {
            return Err(control(
                "ResourceNotFoundException",
                format!("thing group {g} does not exist"),
            ));
        }
        if let Some(t) = new.targets.iter().find(|t| !self.things.contains(*t)) {
            return Err(control(
                "ResourceNotFoundException",
                format!("thing {t} does not exist"),
            ));
        }
        if new.retry.failed + new.retry.timed_out > MAX_RETRIES {
            return Err(control(
                "InvalidRequestException",
                format!("at most {MAX_RETRIES} retries per device"),
            ));
        }
        if let Some(m) = new.in_progress_timeout_minutes {
            if !(1..=10_080).contains(&m) {
                return Err(control(
                    "InvalidRequestException",
                    "inProgressTimeoutInMinutes must be 1 to 10080",
                ));
            }
        }
        let mut things: BTreeSet<String> = new.targets.iter().cloned().collect();
        for g in &new.target_groups {
            things.extend(self.groups.get(g).into_iter().flatten().cloned());
        }
        self.jobs.insert(
            new.job_id.clone(),
            Job {
                job_id: new.job_id.clone(),
                document: new.document.clone(),
                targets: new.targets.clone(),
                description: new.description.clone(),
                namespace_id: new.namespace_id.clone(),
                in_progress_timeout_minutes: new.in_progress_timeout_minutes,
                retry: new.retry,
                target_groups: new.target_groups.clone(),
                continuous: new.continuous,
                state: JobState::InProgress,
                created_at_ms: now_ms,
                last_updated_at_ms: now_ms,
                force_canceled: false,
            },
        );
        let mut out = Vec::new();
        for thing in &things {
            out.extend(self.add_execution(&new.job_id, thing, now_ms));
        }
        tracing::info!(job_id = %new.job_id, targets = ?new.targets, "job created");
        Ok(out)
    }

    /// Queues a new execution of `job_id` on `thing` (the next execution number).
    fn add_execution(&mut self, job_id: &str, thing: &str, now_ms: u64) -> Vec<Output> {
        let before = self.snapshot(thing);
        let list = self.executions.entry(thing.to_owned()).or_default();
        let execution_number = list
            .iter()
            .filter(|e| e.job_id == job_id)
            .map(|e| e.execution_number)
            .max()
            .unwrap_or(0)
            + 1;
        list.push(Execution {
            job_id: job_id.to_owned(),
            thing_name: thing.to_owned(),
            execution_number,
            status: JobStatus::Queued,
            status_details: StatusDetails::new(),
            queued_at_ms: now_ms,
            started_at_ms: None,
            last_updated_at_ms: now_ms,
            version_number: 1,
            retry_attempt: 0,
            step_deadline_ms: None,
            in_progress_deadline_ms: None,
        });
        self.notifications(thing, before, now_ms)
    }

    pub fn create_thing_group(&mut self, group: &str) -> Result<(), ControlError> {
        if !valid_thing_name(group) {
            return Err(control(
                "InvalidRequestException",
                format!("invalid thing group name {group:?}"),
            ));
        }
        self.groups.entry(group.to_owned()).or_default();
        Ok(())
    }

    /// Continuous jobs targeting the group give the newcomer an execution (a new execution
    /// number when it had one before).
    pub fn add_thing_to_thing_group(
        &mut self,
        group: &str,
        thing: &str,
        now_ms: u64,
    ) -> Result<Vec<Output>, ControlError> {
        if !self.things.contains(thing) {
            return Err(control(
                "ResourceNotFoundException",
                format!("thing {thing} does not exist"),
            ));
        }
        let members = self.groups.get_mut(group).ok_or_else(|| {
            control(
                "ResourceNotFoundException",
                format!("thing group {group} does not exist"),
            )
        })?;
        if !members.insert(thing.to_owned()) {
            return Ok(Vec::new());
        }
        let continuous: Vec<String> = self
            .jobs
            .values()
            .filter(|j| {
                j.continuous
                    && j.state == JobState::InProgress
                    && j.target_groups.iter().any(|g| g == group)
            })
            .map(|j| j.job_id.clone())
            .collect();
        let mut out = Vec::new();
        for job_id in continuous {
            let pending = self
                .executions_for_thing(thing)
                .iter()
                .any(|e| e.job_id == job_id && !e.status.is_terminal());
            if !pending {
                tracing::info!(job_id = %job_id, thing, group, "thing joined a continuous job's group");
                out.extend(self.add_execution(&job_id, thing, now_ms));
            }
        }
        Ok(out)
    }

    /// Continuous jobs targeting the group mark the leaver's pending execution REMOVED.
    pub fn remove_thing_from_thing_group(
        &mut self,
        group: &str,
        thing: &str,
        now_ms: u64,
    ) -> Result<Vec<Output>, ControlError> {
        let members = self.groups.get_mut(group).ok_or_else(|| {
            control(
                "ResourceNotFoundException",
                format!("thing group {group} does not exist"),
            )
        })?;
        if !members.remove(thing) {
            return Ok(Vec::new());
        }
        let continuous: Vec<String> = self
            .jobs
            .values()
            .filter(|j| j.continuous && j.target_groups.iter().any(|g| g == group))
            .map(|j| j.job_id.clone())
            .collect();
        let before = self.snapshot(thing);
        for e in self.executions.get_mut(thing).into_iter().flatten() {
            if continuous.contains(&e.job_id) && !e.status.is_terminal() {
                e.status = JobStatus::Removed;
                e.version_number += 1;
                e.last_updated_at_ms = now_ms;
                e.step_deadline_ms = None;
                e.in_progress_deadline_ms = None;
            }
        }
        Ok(self.notifications(thing, before, now_ms))
    }

    pub fn job(&self, job_id: &str) -> Option<&Job> {
        self.jobs.get(job_id)
    }

    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// CancelJob: QUEUED executions are canceled; IN_PROGRESS ones only with `force`.
    pub fn cancel_job(
        &mut self,
        job_id: &str,
        force: bool,
        reason: Option<&str>,
        now_ms: u64,
    ) -> Result<Vec<Output>, ControlError> {
        let job = self.jobs.get_mut(job_id).ok_or_else(|| {
            control(
                "ResourceNotFoundException",
                format!("job {job_id} does not exist"),
            )
        })?;
        job.state = JobState::Canceled;
        job.force_canceled |= force;
        job.last_updated_at_ms = now_ms;
        let targets = job.targets.clone();
        let mut out = Vec::new();
        for thing in targets {
            out.extend(self.cancel_on(&thing, job_id, None, force, reason, now_ms)?);
        }
        tracing::info!(job_id, force, "job canceled");
        Ok(out)
    }

    /// CancelJobExecution: an IN_PROGRESS execution needs `force`.
    pub fn cancel_job_execution(
        &mut self,
        job_id: &str,
        thing: &str,
        force: bool,
        now_ms: u64,
    ) -> Result<Vec<Output>, ControlError> {
        let e = self.latest(thing, job_id).ok_or_else(|| {
            control(
                "ResourceNotFoundException",
                format!("no execution of {job_id} on {thing}"),
            )
        })?;
        if e.status == JobStatus::InProgress && !force {
            return Err(control(
                "InvalidStateTransitionException",
                "an IN_PROGRESS execution can only be canceled with force",
            ));
        }
        if e.status.is_terminal() {
            return Err(control(
                "InvalidStateTransitionException",
                format!("the execution is already {}", e.status),
            ));
        }
        self.cancel_on(thing, job_id, None, force, None, now_ms)
    }

    fn cancel_on(
        &mut self,
        thing: &str,
        job_id: &str,
        execution_number: Option<i64>,
        force: bool,
        reason: Option<&str>,
        now_ms: u64,
    ) -> Result<Vec<Output>, ControlError> {
        let before = self.snapshot(thing);
        for e in self.executions.get_mut(thing).into_iter().flatten() {
            let selected =
                e.job_id == job_id && execution_number.is_none_or(|n| n == e.execution_number);
            let cancelable =
                e.status == JobStatus::Queued || (force && e.status == JobStatus::InProgress);
            if selected && cancelable {
                e.status = JobStatus::Canceled;
                e.version_number += 1;
                e.last_updated_at_ms = now_ms;
                e.step_deadline_ms = None;
                e.in_progress_deadline_ms = None;
                if let Some(r) = reason {
                    e.status_details.insert("reasonCode".into(), r.to_owned());
                }
            }
        }
        Ok(self.notifications(thing, before, now_ms))
    }

    /// DeleteJobExecution: the execution disappears (describe answers ResourceNotFound).
    pub fn delete_job_execution(
        &mut self,
        job_id: &str,
        thing: &str,
        execution_number: i64,
        force: bool,
        now_ms: u64,
    ) -> Result<Vec<Output>, ControlError> {
        let before = self.snapshot(thing);
        let list = self.executions.entry(thing.to_owned()).or_default();
        let pos = list
            .iter()
            .position(|e| e.job_id == job_id && e.execution_number == execution_number)
            .ok_or_else(|| control("ResourceNotFoundException", "no such execution"))?;
        if list[pos].status == JobStatus::InProgress && !force {
            return Err(control(
                "InvalidRequestException",
                "an IN_PROGRESS execution can only be deleted with force",
            ));
        }
        list.remove(pos);
        Ok(self.notifications(thing, before, now_ms))
    }

    pub fn execution(
        &self,
        job_id: &str,
        thing: &str,
        execution_number: Option<i64>,
    ) -> Option<&Execution> {
        match execution_number {
            Some(n) => self
                .executions
                .get(thing)?
                .iter()
                .find(|e| e.job_id == job_id && e.execution_number == n),
            None => self.latest(thing, job_id),
        }
    }

    pub fn executions_for_thing(&self, thing: &str) -> &[Execution] {
        self.executions.get(thing).map_or(&[], Vec::as_slice)
    }

    pub fn executions_for_job(&self, job_id: &str) -> Vec<&Execution> {
        self.executions
            .values()
            .flatten()
            .filter(|e| e.job_id == job_id)
            .collect()
    }

    /// Makes the next `count` device requests of `thing` fail with RequestThrottled.
    pub fn throttle(&mut self, thing: &str, count: u32) {
        self.throttled.insert(thing.to_owned(), count);
    }

    fn latest(&self, thing: &str, job_id: &str) -> Option<&Execution> {
        self.executions
            .get(thing)?
            .iter()
            .rev()
            .find(|e| e.job_id == job_id)
    }

    // ---- timers ---------------------------------------------------------------------

    /// The earliest step or in-progress deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.executions
            .values()
            .flatten()
            .filter_map(Execution::deadline)
            .min()
    }

    /// Times out every execution whose deadline has passed.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        let mut things: Vec<String> = self
            .executions
            .iter()
            .filter(|(_, list)| {
                list.iter()
                    .any(|e| e.deadline().is_some_and(|d| d <= now_ms))
            })
            .map(|(t, _)| t.clone())
            .collect();
        // Things whose executions time out at once are handled in name order, not the map's.
        things.sort();
        let mut out = Vec::new();
        for thing in things {
            let before = self.snapshot(&thing);
            let mut timed_out = Vec::new();
            for e in self.executions.get_mut(&thing).into_iter().flatten() {
                if e.deadline().is_some_and(|d| d <= now_ms) {
                    tracing::info!(job_id = %e.job_id, thing = %thing, "execution timed out");
                    e.status = JobStatus::TimedOut;
                    e.version_number += 1;
                    e.last_updated_at_ms = now_ms;
                    e.step_deadline_ms = None;
                    e.in_progress_deadline_ms = None;
                    timed_out.push((e.job_id.clone(), e.execution_number));
                }
            }
            for (job_id, number) in timed_out {
                self.maybe_retry(&thing, &job_id, number, now_ms);
            }
            out.extend(self.notifications(&thing, before, now_ms));
        }
        out
    }

    // ---- notifications --------------------------------------------------------------

    fn pending(&self, thing: &str) -> (Vec<&Execution>, Vec<&Execution>) {
        let list = self.executions_for_thing(thing);
        let mut in_progress: Vec<&Execution> = list
            .iter()
            .filter(|e| e.status == JobStatus::InProgress)
            .collect();
        in_progress.sort_by_key(|e| e.queued_at_ms);
        let queued = list
            .iter()
            .filter(|e| e.status == JobStatus::Queued)
            .collect();
        (in_progress, queued)
    }

    /// The next execution: IN_PROGRESS first, then QUEUED in creation order.
    fn head(&self, thing: &str) -> Option<&Execution> {
        let (in_progress, queued) = self.pending(thing);
        in_progress.into_iter().chain(queued).next()
    }

    fn snapshot(&self, thing: &str) -> Snapshot {
        let head = self
            .head(thing)
            .map(|e| (e.job_id.clone(), e.execution_number));
        let mut pending: Vec<(String, i64)> = self
            .executions_for_thing(thing)
            .iter()
            .filter(|e| !e.status.is_terminal())
            .map(|e| (e.job_id.clone(), e.execution_number))
            .collect();
        pending.sort();
        (head, pending)
    }

    /// `notify` when the set of pending executions changed; `notify-next` when the head did.
    fn notifications(&self, thing: &str, before: Snapshot, now_ms: u64) -> Vec<Output> {
        let after = self.snapshot(thing);
        let mut out = Vec::new();
        let prefix = format!("$aws/things/{thing}/jobs/");
        if before.1 != after.1 {
            let (in_progress, queued) = self.pending(thing);
            let mut jobs = serde_json::Map::new();
            if !in_progress.is_empty() {
                jobs.insert(
                    "IN_PROGRESS".into(),
                    json!(in_progress
                        .iter()
                        .take(MAX_LISTED)
                        .map(|e| summary(e))
                        .collect::<Vec<_>>()),
                );
            }
            if !queued.is_empty() {
                jobs.insert(
                    "QUEUED".into(),
                    json!(queued
                        .iter()
                        .take(MAX_LISTED)
                        .map(|e| summary(e))
                        .collect::<Vec<_>>()),
                );
            }
            out.push(Output::Publish(Publication {
                topic: format!("{prefix}notify"),
                payload: json!({"timestamp": secs(now_ms), "jobs": jobs})
                    .to_string()
                    .into_bytes(),
                qos: 1,
            }));
        }
        if before.0 != after.0 {
            let payload = match self.head(thing) {
                Some(e) => {
                    json!({"timestamp": secs(now_ms), "execution": self.execution_json(e, true, now_ms)})
                }
                None => json!({"timestamp": secs(now_ms)}),
            };
            out.push(Output::Publish(Publication {
                topic: format!("{prefix}notify-next"),
                payload: payload.to_string().into_bytes(),
                qos: 1,
            }));
        }
        out
    }

    fn execution_json(&self, e: &Execution, include_document: bool, now_ms: u64) -> Value {
        let mut v = json!({
            "jobId": e.job_id,
            "thingName": e.thing_name,
            "status": e.status,
            "queuedAt": secs(e.queued_at_ms),
            "lastUpdatedAt": secs(e.last_updated_at_ms),
            "versionNumber": e.version_number,
            "executionNumber": e.execution_number,
        });
        if !e.status_details.is_empty() {
            v["statusDetails"] = json!(e.status_details);
        }
        if let Some(s) = e.started_at_ms {
            v["startedAt"] = json!(secs(s));
        }
        if let Some(d) = e.deadline() {
            v["approximateSecondsBeforeTimedOut"] = json!(d.saturating_sub(now_ms) / 1000);
        }
        if include_document {
            if let Some(job) = self.jobs.get(&e.job_id) {
                v["jobDocument"] = job.document.clone();
            }
        }
        v
    }

    // ---- data plane -----------------------------------------------------------------

    /// Handles a publish on `$aws/things/<thing>/jobs/<rest>`.
    pub fn handle_device_request(
        &mut self,
        thing: &str,
        rest: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Vec<Output> {
        let topic = format!("$aws/things/{thing}/jobs/{rest}");
        let levels: Vec<&str> = rest.split('/').collect();
        let request = match levels.as_slice() {
            ["get"] => Some(DeviceRequest::GetPending),
            ["start-next"] => Some(DeviceRequest::StartNext),
            [job, "get"] | [job, _, "get"]
                if levels.len() == 2 || levels[1].starts_with("namespace-") =>
            {
                Some(DeviceRequest::Describe(job))
            }
            [job, "update"] | [job, _, "update"]
                if levels.len() == 2 || levels[1].starts_with("namespace-") =>
            {
                Some(DeviceRequest::Update(job))
            }
            _ => None,
        };
        let body: Result<Value, _> = serde_json::from_slice(payload);
        let token = body
            .as_ref()
            .ok()
            .and_then(|b| b.get("clientToken"))
            .and_then(|t| t.as_str())
            .map(str::to_owned);
        let reject = |code: &str, message: &str, state: Option<&Execution>| {
            let mut v = json!({"code": code, "message": message, "timestamp": secs(now_ms)});
            if let Some(t) = &token {
                v["clientToken"] = json!(t);
            }
            if let Some(e) = state {
                v["executionState"] = execution_state(e);
            }
            vec![Output::Reply {
                topic: format!("{topic}/rejected"),
                payload: v.to_string().into_bytes(),
            }]
        };
        let Some(request) = request else {
            return reject("InvalidTopic", "the topic does not map to a Jobs API", None);
        };
        let body = match body {
            Ok(Value::Object(map)) => Value::Object(map),
            _ => {
                return reject(
                    "InvalidJson",
                    "the payload is not a valid JSON object",
                    None,
                )
            }
        };
        if let Some(left) = self.throttled.get_mut(thing).filter(|n| **n > 0) {
            *left -= 1;
            return reject("RequestThrottled", "the request was throttled", None);
        }
        if !self.things.contains(thing) {
            return reject(
                "ResourceNotFound",
                &format!("thing {thing} does not exist"),
                None,
            );
        }
        if let Some(t) = &token {
            if t.len() > MAX_CLIENT_TOKEN {
                return reject(
                    "InvalidRequest",
                    "clientToken is longer than 64 bytes",
                    None,
                );
            }
        }
        let accept = |mut v: Value| {
            v["timestamp"] = json!(secs(now_ms));
            if let Some(t) = &token {
                v["clientToken"] = json!(t);
            }
            vec![Output::Reply {
                topic: format!("{topic}/accepted"),
                payload: v.to_string().into_bytes(),
            }]
        };
        match request {
            DeviceRequest::GetPending => {
                let (in_progress, queued) = self.pending(thing);
                accept(json!({
                    "inProgressJobs": in_progress.iter().take(MAX_LISTED).map(|e| summary(e)).collect::<Vec<_>>(),
                    "queuedJobs": queued.iter().take(MAX_LISTED).map(|e| summary(e)).collect::<Vec<_>>(),
                }))
            }
            DeviceRequest::Describe(job_id) => {
                let execution_number = body.get("executionNumber").and_then(Value::as_i64);
                let include_document = body
                    .get("includeJobDocument")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                if job_id == "$next" {
                    return match self.head(thing) {
                        Some(e) => accept(
                            json!({"execution": self.execution_json(e, include_document, now_ms)}),
                        ),
                        None => accept(json!({})),
                    };
                }
                match self.execution(job_id, thing, execution_number) {
                    None => reject(
                        "ResourceNotFound",
                        &format!("no execution of job {job_id} on {thing}"),
                        None,
                    ),
                    Some(e) if e.status.is_terminal() => reject(
                        "TerminalStateReached",
                        &format!("the execution is {}", e.status),
                        None,
                    ),
                    Some(e) => accept(
                        json!({"execution": self.execution_json(e, include_document, now_ms)}),
                    ),
                }
            }
            DeviceRequest::StartNext => {
                let details = match parse_status_details(&body) {
                    Ok(d) => d,
                    Err(m) => return reject("InvalidRequest", &m, None),
                };
                let step = match parse_step_timeout(&body, false) {
                    Ok(s) => s,
                    Err(m) => return reject("InvalidRequest", &m, None),
                };
                let before = self.snapshot(thing);
                let Some((job_id, number)) = self
                    .head(thing)
                    .map(|e| (e.job_id.clone(), e.execution_number))
                else {
                    return accept(json!({}));
                };
                let timeout = self
                    .jobs
                    .get(&job_id)
                    .and_then(|j| j.in_progress_timeout_minutes);
                if let Some(e) = self.execution_mut(thing, &job_id, number) {
                    if e.status == JobStatus::Queued {
                        start(e, details, step, timeout, now_ms);
                    }
                }
                let mut out = match self.execution(&job_id, thing, Some(number)) {
                    Some(e) => accept(json!({"execution": self.execution_json(e, true, now_ms)})),
                    None => accept(json!({})),
                };
                out.extend(self.notifications(thing, before, now_ms));
                out
            }
            DeviceRequest::Update(job_id) => {
                self.update(thing, job_id, &body, now_ms, &accept, &reject)
            }
        }
    }

    fn execution_mut(&mut self, thing: &str, job_id: &str, number: i64) -> Option<&mut Execution> {
        self.executions
            .get_mut(thing)?
            .iter_mut()
            .find(|e| e.job_id == job_id && e.execution_number == number)
    }

    fn update(
        &mut self,
        thing: &str,
        job_id: &str,
        body: &Value,
        now_ms: u64,
        accept: &dyn Fn(Value) -> Vec<Output>,
        reject: &Reject<'_>,
    ) -> Vec<Output> {
        let status = match body
            .get("status")
            .map(|s| serde_json::from_value::<JobStatus>(s.clone()))
        {
            Some(Ok(
                s @ (JobStatus::InProgress
                | JobStatus::Succeeded
                | JobStatus::Failed
                | JobStatus::Rejected),
            )) => s,
            Some(_) => {
                return reject(
                    "InvalidRequest",
                    "status must be IN_PROGRESS, SUCCEEDED, FAILED or REJECTED",
                    None,
                )
            }
            None => return reject("InvalidRequest", "status is required", None),
        };
        let details = match parse_status_details(body) {
            Ok(d) => d,
            Err(m) => return reject("InvalidRequest", &m, None),
        };
        let step = match parse_step_timeout(body, true) {
            Ok(s) => s,
            Err(m) => return reject("InvalidRequest", &m, None),
        };
        let execution_number = body.get("executionNumber").and_then(Value::as_i64);
        let Some(current) = self.execution(job_id, thing, execution_number).cloned() else {
            return reject(
                "ResourceNotFound",
                &format!("no execution of job {job_id} on {thing}"),
                None,
            );
        };
        if let Some(expected) = body.get("expectedVersion").and_then(Value::as_i64) {
            if expected != current.version_number {
                return reject(
                    "VersionMismatch",
                    "expectedVersion does not match the execution's version",
                    Some(&current),
                );
            }
        }
        if current.status.is_terminal() {
            return reject(
                "InvalidStateTransition",
                &format!("cannot update an execution that is {}", current.status),
                Some(&current),
            );
        }
        let before = self.snapshot(thing);
        let timeout = self
            .jobs
            .get(job_id)
            .and_then(|j| j.in_progress_timeout_minutes);
        let number = current.execution_number;
        let Some(e) = self.execution_mut(thing, job_id, number) else {
            return reject("ResourceNotFound", "the execution vanished", None);
        };
        if status == JobStatus::InProgress && e.status == JobStatus::Queued {
            start(e, details, step, timeout, now_ms);
        } else {
            e.status = status;
            e.version_number += 1;
            e.last_updated_at_ms = now_ms;
            if let Some(d) = details {
                e.status_details = d;
            }
            if status.is_terminal() {
                e.step_deadline_ms = None;
                e.in_progress_deadline_ms = None;
            } else {
                apply_step_timeout(e, step, now_ms);
            }
        }
        let e = e.clone();
        let mut response = json!({});
        if body
            .get("includeJobExecutionState")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            response["executionState"] = execution_state(&e);
        }
        if body
            .get("includeJobDocument")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            if let Some(job) = self.jobs.get(job_id) {
                response["jobDocument"] = job.document.clone();
            }
        }
        if status == JobStatus::Failed {
            self.maybe_retry(thing, job_id, number, now_ms);
        }
        self.complete_job_if_done(job_id, now_ms);
        let mut out = accept(response);
        out.extend(self.notifications(thing, before, now_ms));
        out
    }

    /// Queues the job again (executionNumber + 1) when its retry configuration allows it.
    fn maybe_retry(&mut self, thing: &str, job_id: &str, execution_number: i64, now_ms: u64) {
        let Some(retry) = self
            .jobs
            .get(job_id)
            .filter(|j| j.state == JobState::InProgress)
            .map(|j| j.retry)
        else {
            return;
        };
        let Some(list) = self.executions.get_mut(thing) else {
            return;
        };
        let Some(ended) = list
            .iter()
            .find(|e| e.job_id == job_id && e.execution_number == execution_number)
        else {
            return;
        };
        let attempts = |status: JobStatus| {
            list.iter()
                .filter(|e| e.job_id == job_id && e.status == status)
                .count() as u32
        };
        let allowed = match ended.status {
            JobStatus::Failed => attempts(JobStatus::Failed) <= retry.failed,
            JobStatus::TimedOut => attempts(JobStatus::TimedOut) <= retry.timed_out,
            _ => false,
        };
        let attempt = ended.retry_attempt + 1;
        if !allowed || attempt > MAX_RETRIES {
            return;
        }
        let next = list
            .iter()
            .filter(|e| e.job_id == job_id)
            .map(|e| e.execution_number)
            .max()
            .unwrap_or(0)
            + 1;
        tracing::info!(
            job_id,
            thing,
            execution_number = next,
            attempt,
            "execution queued again (retry)"
        );
        list.push(Execution {
            job_id: job_id.to_owned(),
            thing_name: thing.to_owned(),
            execution_number: next,
            status: JobStatus::Queued,
            status_details: StatusDetails::new(),
            queued_at_ms: now_ms,
            started_at_ms: None,
            last_updated_at_ms: now_ms,
            version_number: 1,
            retry_attempt: attempt,
            step_deadline_ms: None,
            in_progress_deadline_ms: None,
        });
    }

    fn complete_job_if_done(&mut self, job_id: &str, now_ms: u64) {
        let all_done = self
            .executions_for_job(job_id)
            .iter()
            .all(|e| e.status.is_terminal());
        if let Some(job) = self
            .jobs
            .get_mut(job_id)
            .filter(|j| j.state == JobState::InProgress && all_done)
        {
            job.state = JobState::Completed;
            job.last_updated_at_ms = now_ms;
        }
    }
}

fn start(
    e: &mut Execution,
    details: Option<StatusDetails>,
    step: Option<i64>,
    in_progress_minutes: Option<i64>,
    now_ms: u64,
) {
    e.status = JobStatus::InProgress;
    e.started_at_ms = Some(now_ms);
    e.version_number += 1;
    e.last_updated_at_ms = now_ms;
    if let Some(d) = details {
        e.status_details = d;
    }
    e.in_progress_deadline_ms = in_progress_minutes.map(|m| now_ms + m as u64 * 60_000);
    apply_step_timeout(e, step, now_ms);
}

fn apply_step_timeout(e: &mut Execution, step: Option<i64>, now_ms: u64) {
    match step {
        Some(-1) => e.step_deadline_ms = None,
        Some(m) if m > 0 => e.step_deadline_ms = Some(now_ms + m as u64 * 60_000),
        _ => {}
    }
}

fn summary(e: &Execution) -> Value {
    let mut v = json!({
        "jobId": e.job_id,
        "queuedAt": secs(e.queued_at_ms),
        "lastUpdatedAt": secs(e.last_updated_at_ms),
        "versionNumber": e.version_number,
        "executionNumber": e.execution_number,
    });
    if let Some(s) = e.started_at_ms {
        v["startedAt"] = json!(secs(s));
    }
    v
}

fn execution_state(e: &Execution) -> Value {
    let mut v = json!({"status": e.status, "versionNumber": e.version_number});
    if !e.status_details.is_empty() {
        v["statusDetails"] = json!(e.status_details);
    }
    v
}

fn parse_status_details(body: &Value) -> Result<Option<StatusDetails>, String> {
    let Some(details) = body.get("statusDetails") else {
        return Ok(None);
    };
    let Value::Object(map) = details else {
        return Err("statusDetails must be an object of strings".into());
    };
    let mut out = StatusDetails::new();
    for (k, v) in map {
        let key_ok = (1..=128).contains(&k.chars().count())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'));
        if !key_ok {
            return Err(format!(
                "statusDetails key {k:?} must be 1-128 characters of [a-zA-Z0-9:_-]"
            ));
        }
        let Some(s) = v.as_str() else {
            return Err(format!("statusDetails value of {k:?} must be a string"));
        };
        let value_ok = (1..=1024).contains(&s.chars().count()) && !s.chars().any(char::is_control);
        if !value_ok {
            return Err(format!(
                "statusDetails value of {k:?} must be 1-1024 characters without control characters"
            ));
        }
        out.insert(k.clone(), s.to_owned());
    }
    Ok(Some(out))
}

fn parse_step_timeout(body: &Value, allow_clear: bool) -> Result<Option<i64>, String> {
    match body.get("stepTimeoutInMinutes") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(-1) if allow_clear => Ok(Some(-1)),
            Some(m) if (1..=10_080).contains(&m) => Ok(Some(m)),
            _ => Err("stepTimeoutInMinutes must be 1 to 10080 (or -1 on update)".into()),
        },
    }
}

fn valid_thing_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'))
}

fn valid_job_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

#[cfg(test)]
mod tests;
