//! The Jobs control plane as typed calls: things and groups, CreateJob, UpdateJob, CancelJob,
//! DeleteJob, CancelJobExecution, DeleteJobExecution, DescribeJob, ListJobs, DescribeThing,
//! ListThings, DescribeJobExecution and the execution listings, with paging.
//!
//! Owns: control-plane validation and exceptions (named as AWS names them), which executions
//! a job or a membership change creates, cancels, removes or deletes, and the order and
//! tokens of every listing. Must not know: HTTP routes, request or response shapes of the REST
//! API (the control API's), or device-side wire formats.

use super::registry::{page_size, Attributes, Thing, ThingFilter};
use super::store::{ExecId, Execution};
use super::{
    control, ControlError, Job, JobState, JobsService, NewJob, Output, Page, RetryConfig,
    MAX_DOCUMENT_CHARS, MAX_RETRIES,
};
use crate::jobs::messages::JobStatus;
use std::collections::BTreeSet;
use std::ops::Bound;

/// The largest page of ListJobs and of the execution listings.
pub const MAX_RESULTS: usize = 250;

/// `targetSelection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSelection {
    Snapshot,
    Continuous,
}

impl TargetSelection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Snapshot => "SNAPSHOT",
            Self::Continuous => "CONTINUOUS",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Snapshot, Self::Continuous]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// What ListJobs filters by. Jobs are listed in jobId order; the token is the last jobId of
/// the previous page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobState>,
    pub target_selection: Option<TargetSelection>,
    pub thing_group_name: Option<String>,
    pub max_results: Option<usize>,
    pub next_token: Option<String>,
}

/// What UpdateJob changes; `None` leaves a field as it is. A new timeout applies to
/// executions that start afterwards, a new retry configuration to failures afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobUpdate {
    pub description: Option<String>,
    pub in_progress_timeout_minutes: Option<i64>,
    pub retry: Option<RetryConfig>,
}

fn not_found(what: impl Into<String>) -> ControlError {
    control("ResourceNotFoundException", what)
}

fn validate_retry(retry: RetryConfig) -> Result<(), ControlError> {
    if retry.failed + retry.timed_out > MAX_RETRIES {
        return Err(control(
            "InvalidRequestException",
            format!("at most {MAX_RETRIES} retries per device"),
        ));
    }
    Ok(())
}

fn validate_timeout(minutes: Option<i64>) -> Result<(), ControlError> {
    if minutes.is_some_and(|m| !(1..=10_080).contains(&m)) {
        return Err(control(
            "InvalidRequestException",
            "inProgressTimeoutInMinutes must be 1 to 10080",
        ));
    }
    Ok(())
}

fn valid_job_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// Reads an execution listing's token (the [`ExecId`] of the last execution returned).
fn execution_token(token: Option<&str>) -> Result<Option<ExecId>, ControlError> {
    token
        .map(|t| {
            t.parse::<u64>()
                .map(ExecId)
                .map_err(|_| control("InvalidRequestException", "invalid nextToken"))
        })
        .transpose()
}

/// Takes up to `max` items; a token when more remain.
fn page<'a, T: 'a>(
    mut items: impl Iterator<Item = &'a T>,
    max: usize,
    token_of: impl Fn(&T) -> String,
) -> Page<&'a T> {
    let taken: Vec<&T> = items.by_ref().take(max).collect();
    let next_token = match (taken.last(), items.next()) {
        (Some(last), Some(_)) => Some(token_of(last)),
        _ => None,
    };
    Page {
        items: taken,
        next_token,
    }
}

impl JobsService {
    // ---- registry -------------------------------------------------------------------

    /// CreateThing. A thing that joins dynamic groups by it gets its continuous jobs'
    /// executions; what that sends is queued ([`JobsService::take_queued_outputs`]).
    pub fn create_thing(&mut self, thing_name: &str) -> Result<(), ControlError> {
        self.create_thing_with_attributes(thing_name, Attributes::new())
    }

    /// CreateThing with `attributePayload.attributes`.
    pub fn create_thing_with_attributes(
        &mut self,
        thing_name: &str,
        attributes: Attributes,
    ) -> Result<(), ControlError> {
        self.registry.create_thing(thing_name, attributes)?;
        self.queue_membership_changes();
        Ok(())
    }

    /// DescribeThing.
    pub fn describe_thing(&self, thing_name: &str) -> Result<&Thing, ControlError> {
        self.registry.thing(thing_name)
    }

    /// ListThings.
    pub fn list_things(&self, filter: &ThingFilter) -> Result<Page<&Thing>, ControlError> {
        self.registry.list_things(filter)
    }

    pub fn create_thing_group(&mut self, group: &str) -> Result<(), ControlError> {
        self.registry.create_group(group)
    }

    /// Continuous jobs targeting the group give the newcomer an execution (a new execution
    /// number when it had one before).
    pub fn add_thing_to_thing_group(
        &mut self,
        group: &str,
        thing: &str,
        now_ms: u64,
    ) -> Result<Vec<Output>, ControlError> {
        if !self.registry.add_member(group, thing)? {
            return Ok(Vec::new());
        }
        let mut out = self.continuous_join(group, thing, now_ms);
        out.extend(self.apply_membership_changes(now_ms));
        Ok(out)
    }

    /// `thing` joined `group`: continuous jobs targeting it give the newcomer an execution (a
    /// new execution number when it had one before) unless one is pending or its rollout
    /// still has it waiting.
    pub(super) fn continuous_join(&mut self, group: &str, thing: &str, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        for job_id in self.continuous_jobs_of(group, true) {
            let pending = self
                .executions
                .find(thing, &job_id, None)
                .and_then(|id| self.executions.get(id))
                .is_some_and(|e| !e.status.is_terminal());
            let waiting = self
                .rollouts
                .get(&job_id)
                .is_some_and(|r| r.is_waiting(thing));
            if !pending && !waiting && self.rollout_open(&job_id) {
                tracing::info!(job_id = %job_id, thing, group, "thing joined a continuous job's group");
                let before = self.snapshot(thing);
                self.queue_execution(&job_id, thing, 0, now_ms);
                out.extend(self.notifications(thing, before, now_ms));
            }
        }
        out
    }

    /// Continuous jobs targeting the group mark the leaver's pending execution REMOVED.
    pub fn remove_thing_from_thing_group(
        &mut self,
        group: &str,
        thing: &str,
        now_ms: u64,
    ) -> Result<Vec<Output>, ControlError> {
        if !self.registry.remove_member(group, thing)? {
            return Ok(Vec::new());
        }
        let before = self.snapshot(thing);
        for job_id in self.continuous_jobs_of(group, false) {
            if let Some(r) = self.rollouts.get_mut(&job_id) {
                r.forget(thing);
            }
            let pending = self.executions.find(thing, &job_id, None).filter(|id| {
                self.executions
                    .get(*id)
                    .is_some_and(|e| !e.status.is_terminal())
            });
            if let Some(id) = pending {
                self.end_execution(id, JobStatus::Removed, None, now_ms);
            }
        }
        let mut out = self.notifications(thing, before, now_ms);
        out.extend(self.apply_membership_changes(now_ms));
        Ok(out)
    }

    /// Continuous jobs targeting `group` (only IN_PROGRESS ones when `active_only`).
    fn continuous_jobs_of(&self, group: &str, active_only: bool) -> Vec<String> {
        self.jobs
            .values()
            .filter(|j| {
                j.continuous
                    && (!active_only || j.state == JobState::InProgress)
                    && j.target_groups.iter().any(|g| g == group)
            })
            .map(|j| j.job_id.clone())
            .collect()
    }

    // ---- jobs -----------------------------------------------------------------------

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
            .find(|g| !self.registry.contains_group(g))
        {
            return Err(not_found(format!("thing group {g} does not exist")));
        }
        if let Some(t) = new
            .targets
            .iter()
            .find(|t| !self.registry.contains_thing(t))
        {
            return Err(not_found(format!("thing {t} does not exist")));
        }
        validate_retry(new.retry)?;
        validate_timeout(new.in_progress_timeout_minutes)?;
        new.rollout.validate()?;
        for c in &new.abort {
            c.validate()?;
        }
        if let Some(max) = self.quotas.max_concurrent_jobs {
            let active = self
                .jobs
                .values()
                .filter(|j| matches!(j.state, JobState::InProgress | JobState::Scheduled))
                .count();
            if active >= max {
                return Err(control(
                    "LimitExceededException",
                    format!("the account allows {max} concurrent jobs"),
                ));
            }
        }
        let scheduled = new
            .scheduling
            .as_ref()
            .and_then(|s| s.start_ms())
            .is_some_and(|start| start > now_ms);
        let job_id = new.job_id.clone();
        tracing::info!(job_id = %job_id, targets = ?new.targets, groups = ?new.target_groups, scheduled, "job created");
        self.jobs.insert(
            job_id.clone(),
            Job {
                job_id: new.job_id,
                document: new.document,
                targets: new.targets,
                description: new.description,
                namespace_id: new.namespace_id,
                in_progress_timeout_minutes: new.in_progress_timeout_minutes,
                retry: new.retry,
                target_groups: new.target_groups,
                continuous: new.continuous,
                state: if scheduled {
                    JobState::Scheduled
                } else {
                    JobState::InProgress
                },
                created_at_ms: now_ms,
                last_updated_at_ms: now_ms,
                force_canceled: false,
                rollout: new.rollout,
                abort: new.abort,
                scheduling: new.scheduling,
                reason_code: None,
                comment: None,
                completed_at_ms: None,
            },
        );
        self.counts.insert(job_id.clone(), Default::default());
        if scheduled {
            self.reschedule_job(&job_id);
            return Ok(Vec::new());
        }
        self.begin_rollout(&job_id, now_ms);
        // A snapshot job on groups with no members has nothing to do.
        Ok(self.release_due(&job_id, now_ms))
    }

    /// The job's targets as they are now (things, and the members of its groups) start
    /// waiting for the rollout.
    pub(super) fn begin_rollout(&mut self, job_id: &str, now_ms: u64) {
        let Some(job) = self.jobs.get(job_id) else {
            return;
        };
        let mut things: BTreeSet<String> = job.targets.iter().cloned().collect();
        for g in &job.target_groups {
            things.extend(self.registry.members(g).cloned());
        }
        let rollout = super::rollout::Rollout::new(&job.rollout, things, now_ms);
        self.rollouts.insert(job_id.to_owned(), rollout);
    }

    /// UpdateJob: description, timeout and retry configuration.
    pub fn update_job(
        &mut self,
        job_id: &str,
        update: JobUpdate,
        now_ms: u64,
    ) -> Result<(), ControlError> {
        validate_timeout(update.in_progress_timeout_minutes)?;
        if let Some(retry) = update.retry {
            validate_retry(retry)?;
        }
        let job = self
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| not_found(format!("job {job_id} does not exist")))?;
        if let Some(d) = update.description {
            job.description = Some(d);
        }
        if let Some(m) = update.in_progress_timeout_minutes {
            job.in_progress_timeout_minutes = Some(m);
        }
        if let Some(r) = update.retry {
            job.retry = r;
        }
        job.last_updated_at_ms = now_ms;
        tracing::info!(job_id, "job updated");
        Ok(())
    }

    pub fn job(&self, job_id: &str) -> Option<&Job> {
        self.jobs.get(job_id)
    }

    /// Every job, in jobId order.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// ListJobs.
    pub fn list_jobs(&self, filter: &JobFilter) -> Result<Page<&Job>, ControlError> {
        let max = page_size(filter.max_results, MAX_RESULTS)?;
        let start = filter
            .next_token
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let matching = self
            .jobs
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(_, j)| j)
            .filter(|j| filter.status.is_none_or(|s| j.state == s))
            .filter(|j| {
                filter
                    .target_selection
                    .is_none_or(|t| (t == TargetSelection::Continuous) == j.continuous)
            })
            .filter(|j| {
                filter
                    .thing_group_name
                    .as_ref()
                    .is_none_or(|g| j.target_groups.contains(g))
            });
        Ok(page(matching, max, |j| j.job_id.clone()))
    }

    /// How many of `job_id`'s executions have each status (DescribeJob's jobProcessDetails),
    /// in status order.
    pub fn execution_counts(&self, job_id: &str) -> Vec<(JobStatus, usize)> {
        let mut counts: Vec<(JobStatus, usize)> = Vec::new();
        for e in self.executions.of_job(job_id, None) {
            match counts.iter_mut().find(|(s, _)| *s == e.status) {
                Some((_, n)) => *n += 1,
                None => counts.push((e.status, 1)),
            }
        }
        counts.sort_by_key(|(s, _)| s.as_str());
        counts
    }

    /// CancelJob: QUEUED executions are canceled; IN_PROGRESS ones only with `force`.
    pub fn cancel_job(
        &mut self,
        job_id: &str,
        force: bool,
        reason: Option<&str>,
        now_ms: u64,
    ) -> Result<Vec<Output>, ControlError> {
        let job = self
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| not_found(format!("job {job_id} does not exist")))?;
        job.state = JobState::Canceled;
        job.force_canceled |= force;
        job.last_updated_at_ms = now_ms;
        if let Some(r) = reason {
            job.reason_code = Some(r.to_owned());
        }
        if let Some(r) = self.rollouts.get_mut(job_id) {
            r.stop();
        }
        self.job_event(job_id, "cancellation_in_progress", now_ms);
        let cancelable: Vec<ExecId> = self
            .executions
            .of_job(job_id, None)
            .filter(|e| {
                e.status == JobStatus::Queued || (force && e.status == JobStatus::InProgress)
            })
            .map(Execution::id)
            .collect();
        let mut out = Vec::new();
        for id in cancelable {
            out.extend(self.end_with_notifications(id, JobStatus::Canceled, reason, now_ms));
        }
        tracing::info!(job_id, force, "job canceled");
        self.job_event(job_id, "canceled", now_ms);
        self.reschedule_job(job_id);
        Ok(out)
    }

    /// CancelJobExecution of the latest execution: an IN_PROGRESS one needs `force`.
    pub fn cancel_job_execution(
        &mut self,
        job_id: &str,
        thing: &str,
        force: bool,
        now_ms: u64,
    ) -> Result<Vec<Output>, ControlError> {
        let e = self
            .executions
            .find(thing, job_id, None)
            .and_then(|id| self.executions.get(id))
            .ok_or_else(|| not_found(format!("no execution of {job_id} on {thing}")))?;
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
        let id = e.id();
        Ok(self.end_with_notifications(id, JobStatus::Canceled, None, now_ms))
    }

    fn end_with_notifications(
        &mut self,
        id: ExecId,
        status: JobStatus,
        reason: Option<&str>,
        now_ms: u64,
    ) -> Vec<Output> {
        let Some(thing) = self.executions.get(id).map(|e| e.thing_name.clone()) else {
            return Vec::new();
        };
        let before = self.snapshot(&thing);
        self.end_execution(id, status, reason, now_ms);
        self.notifications(&thing, before, now_ms)
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
        let id = self
            .executions
            .find(thing, job_id, Some(execution_number))
            .ok_or_else(|| not_found("no such execution"))?;
        if self.executions.get(id).map(|e| e.status) == Some(JobStatus::InProgress) && !force {
            return Err(control(
                "InvalidRequestException",
                "an IN_PROGRESS execution can only be deleted with force",
            ));
        }
        let before = self.snapshot(thing);
        self.execution_event(id, true, now_ms);
        if let Some(e) = self.executions.remove(id) {
            self.recount(job_id, Some(e.status), None);
        }
        let out = self.notifications(thing, before, now_ms);
        self.complete_job_if_done(job_id, now_ms);
        Ok(out)
    }

    /// DeleteJob: the job and all its executions go away. A job still IN_PROGRESS needs
    /// `force`; devices then get ResourceNotFound for it.
    pub fn delete_job(
        &mut self,
        job_id: &str,
        force: bool,
        now_ms: u64,
    ) -> Result<Vec<Output>, ControlError> {
        let job = self
            .jobs
            .get(job_id)
            .ok_or_else(|| not_found(format!("job {job_id} does not exist")))?;
        if job.state == JobState::InProgress && !force {
            return Err(control(
                "InvalidStateTransitionException",
                "an IN_PROGRESS job can only be deleted with force",
            ));
        }
        let ids: Vec<ExecId> = self
            .executions
            .of_job(job_id, None)
            .map(Execution::id)
            .collect();
        let mut out = Vec::new();
        self.job_event(job_id, "deletion_in_progress", now_ms);
        for id in ids {
            let Some(thing) = self.executions.get(id).map(|e| e.thing_name.clone()) else {
                continue;
            };
            let before = self.snapshot(&thing);
            self.executions.remove(id);
            out.extend(self.notifications(&thing, before, now_ms));
        }
        self.job_event(job_id, "deleted", now_ms);
        self.jobs.remove(job_id);
        self.rollouts.remove(job_id);
        self.counts.remove(job_id);
        self.reschedule_job(job_id);
        tracing::info!(job_id, force, "job deleted");
        Ok(out)
    }

    // ---- executions -----------------------------------------------------------------

    /// The execution of `job_id` on `thing` with `execution_number`, or the latest one.
    pub fn execution(
        &self,
        job_id: &str,
        thing: &str,
        execution_number: Option<i64>,
    ) -> Option<&Execution> {
        self.executions
            .find(thing, job_id, execution_number)
            .and_then(|id| self.executions.get(id))
    }

    /// Every execution on `thing`, in creation order.
    pub fn executions_for_thing(&self, thing: &str) -> Vec<&Execution> {
        self.executions.of_thing(thing, None).collect()
    }

    /// Every execution of `job_id`, in creation order.
    pub fn executions_for_job(&self, job_id: &str) -> Vec<&Execution> {
        self.executions.of_job(job_id, None).collect()
    }

    /// ListJobExecutionsForThing: in creation order, optionally of one status or one job.
    pub fn list_job_executions_for_thing(
        &self,
        thing: &str,
        status: Option<JobStatus>,
        job_id: Option<&str>,
        max_results: Option<usize>,
        next_token: Option<&str>,
    ) -> Result<Page<&Execution>, ControlError> {
        let max = page_size(max_results, MAX_RESULTS)?;
        let after = execution_token(next_token)?;
        let matching = self
            .executions
            .of_thing(thing, after)
            .filter(|e| status.is_none_or(|s| e.status == s))
            .filter(|e| job_id.is_none_or(|j| e.job_id == j));
        Ok(page(matching, max, |e| e.id().0.to_string()))
    }

    /// ListJobExecutionsForJob: in creation order, optionally of one status.
    pub fn list_job_executions_for_job(
        &self,
        job_id: &str,
        status: Option<JobStatus>,
        max_results: Option<usize>,
        next_token: Option<&str>,
    ) -> Result<Page<&Execution>, ControlError> {
        let max = page_size(max_results, MAX_RESULTS)?;
        let after = execution_token(next_token)?;
        let matching = self
            .executions
            .of_job(job_id, after)
            .filter(|e| status.is_none_or(|s| e.status == s));
        Ok(page(matching, max, |e| e.id().0.to_string()))
    }
}
