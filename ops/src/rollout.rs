//! `ggjh-ops rollout`: a continuous job on every thing a fleet-index query matches, minus an
//! exclude list, at a controlled rate.
//!
//! The steps, each idempotent so that running the same command again resumes: registry and
//! shadow indexing on (other indexing settings kept); the static group `<job>-exclude` filled
//! from the list ([`crate::exclude`]); the dynamic group `<job>-targets` with the query
//! `((<query>) OR shadow.reported.<key>:<value>) AND NOT thingGroupNames:<job>-exclude`
//! (without the shadow term when stamping is off); the CONTINUOUS job on it with its rollout
//! and abort configuration; every target's shadow stamped with the key ([`crate::stamp`]) so
//! that it joins the group at once. An existing group or job is reused when it is the same and
//! is an error when it differs. Then the job is watched until every targeted thing finished
//! or the job was canceled (the abort criteria fired).
//!
//! Owns: the plan, the order of the steps, the comparison with what exists, the watch. Must not
//! know: how the results are printed or mapped to exit statuses (main's).

use crate::connection::Iot;
use crate::error::{from_sdk, OpsError};
use crate::exclude;
use crate::progress::Progress;
use crate::stamp::{self, Stamp};
use crate::status::Counts;
use aws_sdk_iot::types::{
    AbortAction, AbortConfig, AbortCriteria, ExponentialRolloutRate, Job, JobExecutionFailureType,
    JobExecutionsRolloutConfig, JobStatus, RateIncreaseCriteria, TargetSelection,
    ThingIndexingConfiguration, ThingIndexingMode,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// How fast executions are rolled out.
#[derive(Debug, Clone, PartialEq)]
pub enum Rate {
    PerMinute(i32),
    Exponential {
        base: i32,
        factor: f64,
        /// Things notified before each rate increase.
        increase_after: i32,
    },
}

/// Cancel the job when `percent` of at least `min_executed` executed things did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub struct Abort {
    pub percent: f64,
    pub min_executed: i32,
}

/// What the job runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A job document, JSON text.
    Document(String),
    Template {
        arn: String,
        parameters: BTreeMap<String, String>,
    },
}

/// A rollout, as the command line gave it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub job_id: String,
    pub query: String,
    pub exclude: Vec<String>,
    pub rate: Option<Rate>,
    pub abort: Option<Abort>,
    pub source: Source,
    /// The key written into every target's reported shadow; `None`: no stamping.
    pub stamp: Option<Stamp>,
    /// Registry and shadow writes per second while filling the exclude group and stamping.
    pub registry_rate: f64,
    /// Time between two looks at the job.
    pub poll: Duration,
    /// Whether to watch the job after setting it up.
    pub wait: bool,
}

impl Plan {
    pub fn exclude_group(&self) -> String {
        format!("{}-exclude", self.job_id)
    }

    pub fn target_group(&self) -> String {
        format!("{}-targets", self.job_id)
    }

    /// The dynamic group's query.
    pub fn target_query(&self) -> String {
        let wanted = match &self.stamp {
            Some(stamp) => format!("(({}) OR {})", self.query, stamp.clause()),
            None => format!("({})", self.query),
        };
        format!("{wanted} AND NOT thingGroupNames:{}", self.exclude_group())
    }

    fn rollout_config(&self) -> Result<Option<JobExecutionsRolloutConfig>, OpsError> {
        let built = match &self.rate {
            None => return Ok(None),
            Some(Rate::PerMinute(n)) => JobExecutionsRolloutConfig::builder()
                .maximum_per_minute(*n)
                .build(),
            Some(Rate::Exponential {
                base,
                factor,
                increase_after,
            }) => JobExecutionsRolloutConfig::builder()
                .exponential_rate(
                    ExponentialRolloutRate::builder()
                        .base_rate_per_minute(*base)
                        .increment_factor(*factor)
                        .rate_increase_criteria(
                            RateIncreaseCriteria::builder()
                                .number_of_notified_things(*increase_after)
                                .build(),
                        )
                        .build()
                        .map_err(|e| OpsError::Input(format!("exponential rate: {e}")))?,
                )
                .build(),
        };
        Ok(Some(built))
    }

    fn abort_config(&self) -> Result<Option<AbortConfig>, OpsError> {
        let Some(abort) = &self.abort else {
            return Ok(None);
        };
        let criteria = AbortCriteria::builder()
            .failure_type(JobExecutionFailureType::All)
            .action(AbortAction::Cancel)
            .threshold_percentage(abort.percent)
            .min_number_of_executed_things(abort.min_executed)
            .build()
            .map_err(|e| OpsError::Input(format!("abort criteria: {e}")))?;
        AbortConfig::builder()
            .criteria_list(criteria)
            .build()
            .map(Some)
            .map_err(|e| OpsError::Input(format!("abort criteria: {e}")))
    }
}

/// Where the rollout stands when the command returns.
#[derive(Debug, Clone, PartialEq)]
pub enum RolloutEnd {
    /// Set up and rolling out (not watched, `--no-wait`).
    Running(Counts),
    /// Every targeted thing finished.
    Done(Counts),
    /// The job was canceled: its abort criteria fired (or an operator canceled it).
    Aborted { counts: Counts, reason: String },
}

/// Sets the rollout up (or finds it set up) and, when the plan says so, watches it.
pub async fn rollout(iot: &Iot, plan: &Plan) -> Result<RolloutEnd, OpsError> {
    enable_indexing(iot).await?;
    let exclude_group = plan.exclude_group();
    static_group(iot, &exclude_group).await?;
    let filled = exclude::fill(iot, &exclude_group, &plan.exclude, plan.registry_rate).await?;
    eprintln!(
        "exclude group {exclude_group}: {} added, {} already in",
        filled.added, filled.already_in
    );
    if !filled.unknown.is_empty() {
        eprintln!(
            "exclude list: {} names are no thing of this account, nothing to exclude for them (first: {})",
            filled.unknown.len(),
            filled.unknown[0]
        );
    }
    let target_group = plan.target_group();
    let group_arn = dynamic_group(iot, &target_group, &plan.target_query()).await?;
    let job = job(iot, plan, &group_arn).await?;
    if let Some(key) = &plan.stamp {
        let done = stamp::stamp(iot, &plan.target_query(), key, plan.registry_rate).await?;
        eprintln!(
            "shadows: {} stamped with {} (the others had it already)",
            done.stamped,
            key.clause()
        );
    }
    let counts = Counts::from_details(job.job_process_details());
    if job.status() == Some(&JobStatus::Canceled) {
        return Ok(RolloutEnd::Aborted {
            reason: cancel_reason(&job),
            counts,
        });
    }
    if !plan.wait {
        return Ok(RolloutEnd::Running(counts));
    }
    watch(iot, plan, &target_group).await
}

async fn enable_indexing(iot: &Iot) -> Result<(), OpsError> {
    let current = iot
        .client
        .get_indexing_configuration()
        .send()
        .await
        .map_err(|e| from_sdk("GetIndexingConfiguration", String::new, iot.attempts, e))?;
    let existing = current.thing_indexing_configuration();
    if existing.map(|c| c.thing_indexing_mode()) == Some(&ThingIndexingMode::RegistryAndShadow) {
        return Ok(());
    }
    let mut wanted = ThingIndexingConfiguration::builder()
        .thing_indexing_mode(ThingIndexingMode::RegistryAndShadow);
    if let Some(c) = existing {
        wanted = wanted
            .set_thing_connectivity_indexing_mode(c.thing_connectivity_indexing_mode().cloned())
            .set_device_defender_indexing_mode(c.device_defender_indexing_mode().cloned())
            .set_named_shadow_indexing_mode(c.named_shadow_indexing_mode().cloned())
            .set_managed_fields(c.managed_fields.clone())
            .set_custom_fields(c.custom_fields.clone())
            .set_filter(c.filter().cloned());
    }
    let wanted = wanted
        .build()
        .map_err(|e| OpsError::Input(format!("indexing configuration: {e}")))?;
    iot.client
        .update_indexing_configuration()
        .thing_indexing_configuration(wanted)
        .send()
        .await
        .map_err(|e| from_sdk("UpdateIndexingConfiguration", String::new, iot.attempts, e))?;
    eprintln!("fleet indexing: registry and shadow indexing turned on");
    Ok(())
}

fn already_exists<E: aws_sdk_iot::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ResourceAlreadyExistsException")
}

async fn static_group(iot: &Iot, group: &str) -> Result<(), OpsError> {
    let created = iot
        .client
        .create_thing_group()
        .thing_group_name(group)
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(already_exists) => {
            let existing = describe_group(iot, group).await?;
            if existing.query_string().is_some() {
                return Err(OpsError::GroupDiffers {
                    group: group.to_owned(),
                    field: "kind (it is a dynamic group)".into(),
                });
            }
            Ok(())
        }
        Err(e) => Err(from_sdk(
            "CreateThingGroup",
            || format!("thing group {group}"),
            iot.attempts,
            e,
        )),
    }
}

async fn describe_group(
    iot: &Iot,
    group: &str,
) -> Result<aws_sdk_iot::operation::describe_thing_group::DescribeThingGroupOutput, OpsError> {
    iot.client
        .describe_thing_group()
        .thing_group_name(group)
        .send()
        .await
        .map_err(|e| {
            from_sdk(
                "DescribeThingGroup",
                || format!("thing group {group}"),
                iot.attempts,
                e,
            )
        })
}

/// The dynamic group's ARN, creating the group when there is none.
async fn dynamic_group(iot: &Iot, group: &str, query: &str) -> Result<String, OpsError> {
    let created = iot
        .client
        .create_dynamic_thing_group()
        .thing_group_name(group)
        .query_string(query)
        .index_name("AWS_Things")
        .send()
        .await;
    let arn = match created {
        Ok(out) => {
            eprintln!("target group {group}: created with query {query}");
            out.thing_group_arn().map(str::to_owned)
        }
        Err(e) if e.as_service_error().is_some_and(already_exists) => {
            let existing = describe_group(iot, group).await?;
            if existing.query_string() != Some(query) {
                return Err(OpsError::GroupDiffers {
                    group: group.to_owned(),
                    field: format!(
                        "query ({:?}, not {query:?})",
                        existing.query_string().unwrap_or("none: a static group")
                    ),
                });
            }
            eprintln!("target group {group}: reused");
            existing.thing_group_arn().map(str::to_owned)
        }
        Err(e) => {
            return Err(from_sdk(
                "CreateDynamicThingGroup",
                || format!("thing group {group}"),
                iot.attempts,
                e,
            ))
        }
    };
    arn.ok_or_else(|| OpsError::Input(format!("AWS IoT answered no ARN for thing group {group}")))
}

async fn describe_job(iot: &Iot, job_id: &str) -> Result<Job, OpsError> {
    let out = iot
        .client
        .describe_job()
        .job_id(job_id)
        .send()
        .await
        .map_err(|e| from_sdk("DescribeJob", || format!("job {job_id}"), iot.attempts, e))?;
    out.job
        .ok_or_else(|| OpsError::Input(format!("DescribeJob answered no job for {job_id}")))
}

/// The job, created when there is none; an existing one must be the plan's.
async fn job(iot: &Iot, plan: &Plan, group_arn: &str) -> Result<Job, OpsError> {
    let mut create = iot
        .client
        .create_job()
        .job_id(&plan.job_id)
        .targets(group_arn)
        .target_selection(TargetSelection::Continuous)
        .description(format!("ggjh-ops rollout: {}", plan.query))
        .set_job_executions_rollout_config(plan.rollout_config()?)
        .set_abort_config(plan.abort_config()?);
    create = match &plan.source {
        Source::Document(text) => create.document(text),
        Source::Template { arn, parameters } => create
            .job_template_arn(arn)
            .set_document_parameters((!parameters.is_empty()).then(|| {
                parameters
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })),
    };
    match create.send().await {
        Ok(_) => {
            eprintln!("job {}: created", plan.job_id);
            describe_job(iot, &plan.job_id).await
        }
        Err(e) if e.as_service_error().is_some_and(already_exists) => {
            let existing = describe_job(iot, &plan.job_id).await?;
            let document = match &plan.source {
                Source::Document(_) => Some(
                    iot.client
                        .get_job_document()
                        .job_id(&plan.job_id)
                        .send()
                        .await
                        .map_err(|e| {
                            from_sdk(
                                "GetJobDocument",
                                || format!("job {}", plan.job_id),
                                iot.attempts,
                                e,
                            )
                        })?
                        .document
                        .unwrap_or_default(),
                ),
                Source::Template { .. } => None,
            };
            if let Some(field) = difference(plan, group_arn, &existing, document.as_deref()) {
                return Err(OpsError::JobDiffers {
                    job_id: plan.job_id.clone(),
                    field: field.to_owned(),
                });
            }
            eprintln!("job {}: reused", plan.job_id);
            Ok(existing)
        }
        Err(e) => Err(from_sdk(
            "CreateJob",
            || format!("thing group {}", plan.target_group()),
            iot.attempts,
            e,
        )),
    }
}

/// The first field in which the existing job differs from the plan, or `None` when it is the
/// plan's job.
pub fn difference(
    plan: &Plan,
    group_arn: &str,
    job: &Job,
    document: Option<&str>,
) -> Option<&'static str> {
    if job.status() == Some(&JobStatus::DeletionInProgress) {
        return Some("status (it is being deleted)");
    }
    if job.targets() != [group_arn] {
        return Some("targets");
    }
    if job.target_selection() != Some(&TargetSelection::Continuous) {
        return Some("targetSelection");
    }
    let rate = job.job_executions_rollout_config().and_then(|c| {
        if let Some(e) = c.exponential_rate() {
            Some(Rate::Exponential {
                base: e.base_rate_per_minute(),
                factor: e.increment_factor(),
                increase_after: e
                    .rate_increase_criteria()
                    .and_then(|r| r.number_of_notified_things())
                    .unwrap_or(0),
            })
        } else {
            c.maximum_per_minute().map(Rate::PerMinute)
        }
    });
    if rate != plan.rate {
        return Some("jobExecutionsRolloutConfig");
    }
    let abort: Vec<Abort> = job
        .abort_config()
        .map(|c| {
            c.criteria_list()
                .iter()
                .map(|a| Abort {
                    percent: a.threshold_percentage(),
                    min_executed: a.min_number_of_executed_things(),
                })
                .collect()
        })
        .unwrap_or_default();
    if abort != plan.abort.iter().cloned().collect::<Vec<_>>() {
        return Some("abortConfig");
    }
    match &plan.source {
        Source::Document(text) => {
            let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).ok();
            if document.and_then(parse) != parse(text) {
                return Some("document");
            }
        }
        Source::Template { arn, parameters } => {
            if job.job_template_arn() != Some(arn.as_str()) {
                return Some("jobTemplateArn");
            }
            let existing: BTreeMap<String, String> = job
                .document_parameters()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            if &existing != parameters {
                return Some("documentParameters");
            }
        }
    }
    None
}

fn cancel_reason(job: &Job) -> String {
    match (job.reason_code(), job.comment()) {
        (Some(code), Some(comment)) => format!("{code}: {comment}"),
        (Some(code), None) => code.to_owned(),
        (None, Some(comment)) => comment.to_owned(),
        (None, None) => "its abort criteria fired, or it was canceled".to_owned(),
    }
}

async fn count_members(iot: &Iot, group: &str) -> Result<u64, OpsError> {
    Ok(crate::groups::members(iot, group).await?.len() as u64)
}

async fn watch(iot: &Iot, plan: &Plan, target_group: &str) -> Result<RolloutEnd, OpsError> {
    let mut progress = Progress::new();
    let mut targets = count_members(iot, target_group).await?;
    loop {
        let job = describe_job(iot, &plan.job_id).await?;
        let counts = Counts::from_details(job.job_process_details());
        progress.show(&counts, targets);
        if job.status() == Some(&JobStatus::Canceled) {
            progress.finish();
            return Ok(RolloutEnd::Aborted {
                reason: cancel_reason(&job),
                counts,
            });
        }
        let settled = counts.queued == 0 && counts.in_progress == 0;
        if settled && u64::try_from(counts.finished()).unwrap_or(0) >= targets {
            // The group may have grown since it was counted.
            targets = count_members(iot, target_group).await?;
            if targets > 0 && u64::try_from(counts.finished()).unwrap_or(0) >= targets {
                progress.show(&counts, targets);
                progress.finish();
                return Ok(RolloutEnd::Done(counts));
            }
        }
        tokio::time::sleep(plan.poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: &str = "arn:aws:iot:us-east-1:123456789012:thinggroup/r-targets";

    fn plan() -> Plan {
        Plan {
            job_id: "r".into(),
            query: "attributes.site:north OR thingName:lab-*".into(),
            exclude: Vec::new(),
            rate: Some(Rate::PerMinute(100)),
            abort: Some(Abort {
                percent: 10.0,
                min_executed: 5,
            }),
            source: Source::Document("{\"operation\": \"echo\"}".into()),
            stamp: None,
            registry_rate: 10.0,
            poll: Duration::from_secs(1),
            wait: true,
        }
    }

    fn job_of(plan: &Plan) -> Job {
        job_with(plan, |b| b)
    }

    fn job_with(
        plan: &Plan,
        more: impl FnOnce(
            aws_sdk_iot::types::builders::JobBuilder,
        ) -> aws_sdk_iot::types::builders::JobBuilder,
    ) -> Job {
        more(
            Job::builder()
                .job_id(&plan.job_id)
                .targets(GROUP)
                .target_selection(TargetSelection::Continuous)
                .status(JobStatus::InProgress)
                .set_job_executions_rollout_config(plan.rollout_config().ok().flatten())
                .set_abort_config(plan.abort_config().ok().flatten()),
        )
        .build()
    }

    #[test]
    fn the_query_leaves_the_exclude_group_out() {
        assert_eq!(
            plan().target_query(),
            "(attributes.site:north OR thingName:lab-*) AND NOT thingGroupNames:r-exclude"
        );
        assert_eq!(plan().target_group(), "r-targets");
        let mut stamped = plan();
        stamped.stamp = Some(Stamp::new("ggjhRollout", "r").unwrap());
        assert_eq!(
            stamped.target_query(),
            "((attributes.site:north OR thingName:lab-*) OR shadow.reported.ggjhRollout:r) AND NOT thingGroupNames:r-exclude"
        );
    }

    #[test]
    fn the_same_job_is_reused_and_a_different_one_named() {
        let p = plan();
        let same = job_of(&p);
        assert_eq!(
            difference(&p, GROUP, &same, Some("{\"operation\":\"echo\"}")),
            None
        );
        assert_eq!(
            difference(&p, GROUP, &same, Some("{\"operation\":\"add\"}")),
            Some("document")
        );
        assert_eq!(
            difference(&p, "arn:other", &same, Some("{\"operation\":\"echo\"}")),
            Some("targets")
        );
        let mut faster = p.clone();
        faster.rate = Some(Rate::PerMinute(200));
        assert_eq!(
            difference(&faster, GROUP, &same, Some("{\"operation\":\"echo\"}")),
            Some("jobExecutionsRolloutConfig")
        );
        let mut no_abort = p.clone();
        no_abort.abort = None;
        assert_eq!(
            difference(&no_abort, GROUP, &same, Some("{\"operation\":\"echo\"}")),
            Some("abortConfig")
        );
        let mut exponential = p.clone();
        exponential.rate = Some(Rate::Exponential {
            base: 10,
            factor: 2.0,
            increase_after: 10,
        });
        let exp_job = job_of(&exponential);
        assert_eq!(
            difference(
                &exponential,
                GROUP,
                &exp_job,
                Some("{\"operation\":\"echo\"}")
            ),
            None
        );
        assert_eq!(
            difference(&p, GROUP, &exp_job, Some("{\"operation\":\"echo\"}")),
            Some("jobExecutionsRolloutConfig")
        );
        let snapshot = Job::builder()
            .targets(GROUP)
            .target_selection(TargetSelection::Snapshot)
            .build();
        assert_eq!(
            difference(&p, GROUP, &snapshot, None),
            Some("targetSelection")
        );
    }

    #[test]
    fn a_template_job_is_compared_by_arn_and_parameters() {
        let mut p = plan();
        p.source = Source::Template {
            arn: "arn:aws:iot:us-east-1::jobtemplate/AWS-Restart-Application:1.0".into(),
            parameters: [("applicationName".to_owned(), "nginx".to_owned())].into(),
        };
        let arn = "arn:aws:iot:us-east-1::jobtemplate/AWS-Restart-Application:1.0";
        let job = job_with(&p, |b| {
            b.job_template_arn(arn)
                .document_parameters("applicationName", "nginx")
        });
        assert_eq!(difference(&p, GROUP, &job, None), None);
        let other = job_with(&p, |b| {
            b.job_template_arn(arn)
                .document_parameters("applicationName", "sshd")
        });
        assert_eq!(
            difference(&p, GROUP, &other, None),
            Some("documentParameters")
        );
    }
}
