//! Running jobs: the [`Executor`] the shell hands each job to, and what runs behind it.
//!
//! Owns: turning a [`JobRun`] into a [`JobOutcome`], honouring cancellation and time limits,
//! and reporting progress (steps, pids, reboot requests) for the journal.
//! Must not know: the Jobs API, or the engine's state.
//!
//! [`job_executor::JobExecutor`] dispatches a document to the built-in operations
//! ([`builtin`]), to executables in the handler directory ([`handler_dir`], [`process`],
//! [`steps`]) or to other Greengrass components over local pub/sub ([`bridge`]).

pub mod bridge;
pub mod builtin;
pub mod containment;
pub mod handler_dir;
pub mod job_executor;
pub mod permissions;
pub mod process;
pub mod run_as;
pub mod steps;

use crate::jobs::job::{JobOutcome, JobRun};
use crate::jobs::messages::{JobStatus, StatusDetails};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;

/// A job's work, as a future that ends with the job's outcome.
pub type JobFuture = Pin<Box<dyn Future<Output = JobOutcome> + Send>>;

/// What a running job reports as it goes, for the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Step `index` (0-based; the final step comes last) of `total`, named `name`, has started.
    Step {
        index: u32,
        total: u32,
        name: String,
    },
    /// A process was started (its pid is also its process group).
    Spawned { pid: u32 },
    /// The job is about to reboot the device; after the reboot it counts as SUCCEEDED.
    RebootRequested,
}

/// Records progress; called synchronously so that the record is durable before the side
/// effect it announces (a step's process, a reboot) happens.
pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

/// What the executor gets besides the job.
#[derive(Clone)]
pub struct RunContext {
    /// Turns true when the cloud has ended the job: stop the work (its outcome is discarded).
    pub cancel: watch::Receiver<bool>,
    pub progress: ProgressSink,
    /// This run's marker: in the environment of every process it starts
    /// ([`containment::RUN_MARKER_VAR`]), so that all of them can be found and killed.
    pub run_marker: String,
}

impl RunContext {
    /// A context whose progress goes nowhere (tests, simple runs).
    pub fn detached(cancel: watch::Receiver<bool>) -> Self {
        Self {
            cancel,
            progress: Arc::new(|_| {}),
            run_marker: containment::new_run_marker(),
        }
    }

    /// The environment of a handler process of this run: `base` and the run's marker.
    pub fn environment(&self, base: &[(String, String)]) -> Vec<(String, String)> {
        let mut env = base.to_vec();
        env.push((
            containment::RUN_MARKER_VAR.to_owned(),
            self.run_marker.clone(),
        ));
        env
    }

    pub fn report(&self, progress: Progress) {
        (self.progress)(progress);
    }
}

/// Runs jobs.
pub trait Executor: Send + Sync {
    fn run(&self, run: JobRun, ctx: RunContext) -> JobFuture;

    /// New settings from a configuration update; jobs already running keep theirs.
    fn reconfigure(&self, _settings: &job_executor::ExecSettings) {}
}

/// An outcome with the given status and details.
pub fn outcome(status: JobStatus, details: &[(&str, String)]) -> JobOutcome {
    JobOutcome {
        status,
        status_details: details
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<StatusDetails>(),
    }
}

/// REJECTED with a reason: the job cannot run here as asked.
pub fn rejected(reason: impl Into<String>) -> JobOutcome {
    outcome(JobStatus::Rejected, &[("reason", reason.into())])
}

/// FAILED with a reason.
pub fn failed(reason: impl Into<String>) -> JobOutcome {
    outcome(JobStatus::Failed, &[("reason", reason.into())])
}

/// Resolves once `cancel` turns true; never if it cannot any more.
pub async fn canceled(mut cancel: watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}
