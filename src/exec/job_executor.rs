//! The executor the component uses: dispatches each document to what serves it.
//!
//! Owns: the order of resolution for a compact `operation` — `reboot`, a built-in, a worker
//! component over the bridge, an executable of that name in the handler directory, else
//! REJECTED — and running Device Client documents from the handler directory.
//! Must not know: the Jobs API or the engine.

use super::bridge::Bridge;
use super::handler_dir::HandlerDirectory;
use super::permissions::Permissions;
use super::steps::{self, DocumentEnd, Limits};
use super::{builtin, failed, rejected, Executor, JobFuture, Progress, RunContext};
use crate::jobs::document::JobDocument;
use crate::jobs::job::{JobOutcome, JobRun};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ExecSettings {
    pub handler_dir: Option<PathBuf>,
    pub limits: Limits,
    /// Command (argv) that reboots the device, for `{"operation": "reboot"}`.
    pub reboot_command: Option<Vec<String>>,
    /// How long to wait for the reboot to take the process down before failing the job.
    pub reboot_wait: Duration,
    /// What Device Client documents may do beyond running handlers as this user.
    pub permissions: Permissions,
}

pub struct JobExecutor {
    settings: std::sync::Mutex<ExecSettings>,
    bridge: Option<Arc<Bridge>>,
}

impl JobExecutor {
    pub fn new(settings: ExecSettings, bridge: Option<Arc<Bridge>>) -> Self {
        Self {
            settings: std::sync::Mutex::new(settings),
            bridge,
        }
    }

    fn handlers(settings: &ExecSettings) -> Result<HandlerDirectory, String> {
        let dir = settings
            .handler_dir
            .as_ref()
            .ok_or("no handler directory is configured (handlerDirectory)")?;
        HandlerDirectory::open(dir)
    }
}

async fn reboot(settings: ExecSettings, ctx: RunContext) -> JobOutcome {
    let Some(argv) = settings.reboot_command.clone().filter(|a| !a.is_empty()) else {
        return rejected("reboot is not enabled on this device (rebootCommand is not configured)");
    };
    // Durable before the side effect: after the reboot the journal says the job asked for it.
    ctx.report(Progress::RebootRequested);
    tracing::warn!(command = ?argv, "rebooting the device for a job");
    let status = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .await;
    match status {
        Ok(s) if s.success() => {
            let cancel = ctx.cancel.clone();
            tokio::select! {
                _ = tokio::time::sleep(settings.reboot_wait) => failed(format!(
                    "the reboot command succeeded but the device did not reboot within {}s",
                    settings.reboot_wait.as_secs()
                )),
                _ = super::canceled(cancel.clone()) => failed("canceled"),
            }
        }
        Ok(s) => failed(format!("the reboot command failed: {s}")),
        Err(e) => failed(format!("the reboot command could not start: {e}")),
    }
}

impl Executor for JobExecutor {
    fn reconfigure(&self, settings: &ExecSettings) {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = settings.clone();
    }

    fn run(&self, run: JobRun, ctx: RunContext) -> JobFuture {
        let settings = self
            .settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let bridge = self.bridge.clone();
        Box::pin(async move {
            match &run.document {
                JobDocument::Operation {
                    operation,
                    arguments,
                    raw,
                } => {
                    if operation == "reboot" {
                        return reboot(settings, ctx).await;
                    }
                    if let Some(outcome) =
                        builtin::run(operation, arguments, ctx.cancel.clone()).await
                    {
                        return outcome;
                    }
                    if let Some(bridge) = bridge.filter(|b| b.serves(operation)) {
                        return bridge.dispatch(&run, operation, raw, &ctx).await;
                    }
                    let dir = match JobExecutor::handlers(&settings) {
                        Ok(d) => d,
                        Err(_) => return rejected(format!("unknown operation {operation:?}")),
                    };
                    match dir.resolve(None, operation) {
                        Ok(program) => {
                            steps::run_operation_handler(program, raw, &dir, &settings.limits, &ctx)
                                .await
                        }
                        Err(e) => rejected(format!("unknown operation {operation:?} ({e})")),
                    }
                }
                JobDocument::Steps(doc) => match JobExecutor::handlers(&settings) {
                    Ok(dir) => {
                        let end = steps::run_document(
                            doc,
                            &dir,
                            &settings.limits,
                            &settings.permissions,
                            &ctx,
                        )
                        .await;
                        match end {
                            DocumentEnd::Finished(outcome) => outcome,
                            // A handler (the shipped reboot.sh) asked for the reboot.
                            DocumentEnd::RebootRequested => reboot(settings, ctx).await,
                        }
                    }
                    Err(e) => failed(format!("handler directory unusable: {e}")),
                },
            }
        })
    }
}
