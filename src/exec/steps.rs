//! Running documents in the AWS IoT Device Client schema, and operations served by an
//! executable in the handler directory.
//!
//! Owns: step order, `ignoreStepFailure`, `allowStdErr`, `includeStdOut`, `finalStep`, the
//! per-step and per-job time limits, and turning process results into statusDetails; a step's
//! argv (the Device Client's handler convention: argv\[1\] is the step's `runAsUser`, empty
//! when unset, then `args`), where a `runCommand` program comes from, and a handler's request
//! to reboot ([`REBOOT_EXIT_CODE`]). Must not know: how a process is spawned (that is
//! [`super::process`]), who may run as whom ([`super::permissions`]) or the Jobs API.

use super::handler_dir::HandlerDirectory;
use super::permissions::Permissions;
use super::process::{self, Exit, ProcessResult, ProcessSpec};
use super::{failed, outcome, Progress, RunContext};
use crate::jobs::document::{Step, StepAction, StepsDocument};
use crate::jobs::job::JobOutcome;
use crate::jobs::messages::{JobStatus, StatusDetails};
use crate::jobs::status_details::value_tail;
use std::time::{Duration, Instant};

/// Limits and environment for handler processes.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A step's limit when the document sets none (and the cap on what it sets).
    pub step_timeout: Duration,
    /// The whole job's limit.
    pub job_timeout: Duration,
    /// Environment of every handler process (the rest of ours is not passed on).
    pub env: Vec<(String, String)>,
}

/// The exit code with which a step's handler asks the component to reboot the device (handlers
/// find it in their environment as [`REBOOT_EXIT_CODE_ENV`]). The component then reboots with
/// its `rebootCommand`, and reports the job after the reboot.
pub const REBOOT_EXIT_CODE: i32 = 194;
/// Environment variable that tells a step's handler [`REBOOT_EXIT_CODE`].
pub const REBOOT_EXIT_CODE_ENV: &str = "GGJH_REBOOT_EXIT_CODE";

/// How a Device Client document ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DocumentEnd {
    Finished(JobOutcome),
    /// The document's last step asked for a reboot (exit code [`REBOOT_EXIT_CODE`]) and every
    /// step before it succeeded: the device is to reboot, and the job counts as SUCCEEDED
    /// after it.
    RebootRequested,
}

enum StepEnd {
    Ok(ProcessResult),
    RebootRequested,
    Failed {
        reason: String,
        result: Option<ProcessResult>,
    },
    Refused(String),
    Stopped,
}

/// The program and arguments of a step, or why it may not run.
fn command_line(
    step: &Step,
    dir: &HandlerDirectory,
    permissions: &Permissions,
) -> Result<(std::path::PathBuf, Vec<String>), String> {
    match &step.action {
        StepAction::RunHandler {
            handler,
            args,
            path,
        } => {
            let program = dir.resolve(path.as_deref(), handler)?;
            let user = step.run_as_user.clone().unwrap_or_default();
            Ok((program, std::iter::once(user).chain(args.clone()).collect()))
        }
        StepAction::RunCommand { argv } => {
            let (first, rest) = argv.split_first().ok_or("empty command")?;
            let in_handler_dir = !std::path::Path::new(first).is_absolute()
                && std::fs::symlink_metadata(dir.root().join(first)).is_ok();
            let program = if in_handler_dir {
                dir.resolve(None, first)?
            } else {
                permissions.allowed_command(first)?
            };
            Ok((program, rest.to_vec()))
        }
    }
}

async fn run_step(
    step: &Step,
    dir: &HandlerDirectory,
    limits: &Limits,
    permissions: &Permissions,
    remaining: Duration,
    ctx: &RunContext,
) -> StepEnd {
    let (program, args) = match command_line(step, dir, permissions) {
        Ok(c) => c,
        Err(e) => return StepEnd::Refused(e),
    };
    let identity = match permissions.identity_for(step.run_as_user.as_deref()) {
        Ok(i) => i,
        Err(e) => return StepEnd::Refused(e),
    };
    let mut env = limits.env.clone();
    env.push((
        REBOOT_EXIT_CODE_ENV.to_owned(),
        REBOOT_EXIT_CODE.to_string(),
    ));
    let timeout = step
        .timeout
        .unwrap_or(limits.step_timeout)
        .min(limits.step_timeout)
        .min(remaining);
    let spec = ProcessSpec {
        program,
        args,
        working_dir: dir.root().to_path_buf(),
        env: ctx.environment(&env),
        stdin: None,
        timeout,
        identity,
    };
    let result = process::run(&spec, ctx.cancel.clone(), |pid| {
        ctx.report(Progress::Spawned { pid })
    })
    .await;
    match &result.exit {
        Exit::Canceled => StepEnd::Stopped,
        Exit::Code(REBOOT_EXIT_CODE) => StepEnd::RebootRequested,
        Exit::Code(0) => match step.allow_stderr {
            Some(allowed) if result.stderr_lines > allowed => StepEnd::Failed {
                reason: format!(
                    "step {:?} wrote {} line(s) to stderr, more than the {allowed} allowed",
                    step.name, result.stderr_lines
                ),
                result: Some(result),
            },
            _ => StepEnd::Ok(result),
        },
        _ => StepEnd::Failed {
            reason: format!("step {:?} {}", step.name, result.describe(timeout)),
            result: Some(result),
        },
    }
}

fn exit_code(result: &ProcessResult) -> Option<String> {
    match result.exit {
        Exit::Code(c) => Some(c.to_string()),
        _ => None,
    }
}

/// Runs every step, then the final step.
pub async fn run_document(
    doc: &StepsDocument,
    dir: &HandlerDirectory,
    limits: &Limits,
    permissions: &Permissions,
    ctx: &RunContext,
) -> DocumentEnd {
    let started = Instant::now();
    let all: Vec<(&Step, bool)> = doc
        .steps
        .iter()
        .map(|s| (s, false))
        .chain(doc.final_step.iter().map(|s| (s, true)))
        .collect();
    let total = all.len();
    let mut failure: Option<(String, &Step, Option<ProcessResult>)> = None;
    // The first failure was a refusal (the document asks for what this device does not allow):
    // the job ends REJECTED, after the final step has run all the same.
    let mut refused = false;
    let mut ignored = Vec::new();
    let mut last_stdout = String::new();
    let mut succeeded = 0;
    for (index, (step, is_final)) in all.into_iter().enumerate() {
        if failure.is_some() && !is_final {
            continue;
        }
        let remaining = limits.job_timeout.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            failure.get_or_insert((
                format!(
                    "the job exceeded its {}s limit",
                    limits.job_timeout.as_secs()
                ),
                step,
                None,
            ));
            break;
        }
        ctx.report(Progress::Step {
            index: index as u32,
            total: total as u32,
            name: step.name.clone(),
        });
        tracing::info!(step = %step.name, index, total, "step started");
        match run_step(step, dir, limits, permissions, remaining, ctx).await {
            StepEnd::Ok(result) => {
                succeeded += 1;
                last_stdout = result.stdout_tail;
            }
            StepEnd::RebootRequested if index + 1 == total && failure.is_none() => {
                tracing::info!(step = %step.name, "the step asked for a reboot");
                return DocumentEnd::RebootRequested;
            }
            StepEnd::RebootRequested => {
                let reason = format!(
                    "step {:?} asked for a reboot, which only the document's last step may do after every other step succeeded",
                    step.name
                );
                tracing::warn!(step = %step.name, %reason, "reboot request refused");
                if failure.is_none() {
                    failure = Some((reason, step, None));
                }
            }
            StepEnd::Stopped => return DocumentEnd::Finished(failed("canceled")),
            StepEnd::Refused(reason) => {
                // A document asking for something the device does not allow: REJECTED, but
                // the finalStep still runs.
                tracing::warn!(step = %step.name, %reason, "step refused");
                if failure.is_none() {
                    refused = true;
                    failure = Some((format!("step {:?}: {reason}", step.name), step, None));
                }
            }
            StepEnd::Failed { reason, result } => {
                tracing::warn!(step = %step.name, %reason, "step failed");
                if step.ignore_failure && !is_final {
                    ignored.push(step.name.clone());
                    if let Some(r) = result {
                        last_stdout = r.stdout_tail;
                    }
                } else if failure.is_none() {
                    failure = Some((reason, step, result));
                }
            }
        }
    }
    let mut details = StatusDetails::new();
    if !ignored.is_empty() {
        details.insert("ignoredFailures".into(), ignored.join(", "));
    }
    match failure {
        None => {
            details.insert("steps".into(), format!("{succeeded} of {total} succeeded"));
            if doc.include_stdout {
                details.insert("stdout".into(), value_tail(&last_stdout));
            }
            DocumentEnd::Finished(JobOutcome {
                status: JobStatus::Succeeded,
                status_details: details,
            })
        }
        Some((reason, step, result)) => {
            details.insert("reason".into(), reason);
            details.insert("failedStep".into(), step.name.clone());
            if let Some(r) = result {
                if let Some(code) = exit_code(&r) {
                    details.insert("exitCode".into(), code);
                }
                if !r.stderr_tail.trim().is_empty() {
                    details.insert("stderr".into(), value_tail(&r.stderr_tail));
                }
                if doc.include_stdout {
                    details.insert("stdout".into(), value_tail(&r.stdout_tail));
                }
            }
            DocumentEnd::Finished(JobOutcome {
                status: if refused {
                    JobStatus::Rejected
                } else {
                    JobStatus::Failed
                },
                status_details: details,
            })
        }
    }
}

/// Runs the handler named like a compact document's operation, with the document on stdin.
/// Its stdout, when it is a JSON object, becomes the statusDetails (a result-returning worker).
pub async fn run_operation_handler(
    program: std::path::PathBuf,
    document: &serde_json::Value,
    dir: &HandlerDirectory,
    limits: &Limits,
    ctx: &RunContext,
) -> JobOutcome {
    ctx.report(Progress::Step {
        index: 0,
        total: 1,
        name: "handler".to_owned(),
    });
    let timeout = limits.step_timeout.min(limits.job_timeout);
    let spec = ProcessSpec {
        program,
        args: Vec::new(),
        working_dir: dir.root().to_path_buf(),
        env: ctx.environment(&limits.env),
        stdin: Some(document.to_string().into_bytes()),
        timeout,
        identity: None,
    };
    let result = process::run(&spec, ctx.cancel.clone(), |pid| {
        ctx.report(Progress::Spawned { pid })
    })
    .await;
    if result.exit == Exit::Canceled {
        return failed("canceled");
    }
    if result.succeeded() {
        if let Ok(serde_json::Value::Object(map)) =
            serde_json::from_str::<serde_json::Value>(result.stdout_tail.trim())
        {
            let details = map
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect();
            return JobOutcome {
                status: JobStatus::Succeeded,
                status_details: details,
            };
        }
        return outcome(
            JobStatus::Succeeded,
            &[("stdout", value_tail(&result.stdout_tail))],
        );
    }
    let mut details = vec![("reason", format!("handler {}", result.describe(timeout)))];
    if let Some(code) = exit_code(&result) {
        details.push(("exitCode", code));
    }
    if !result.stderr_tail.trim().is_empty() {
        details.push(("stderr", value_tail(&result.stderr_tail)));
    }
    outcome(JobStatus::Failed, &details)
}
