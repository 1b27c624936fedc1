//! Running jobs: the [`Executor`] the shell hands each job to, and the built-in operations.
//!
//! Owns: turning a [`JobRun`] into a [`JobOutcome`], honouring cancellation.
//! Must not know: the Jobs API, IPC or the engine's state.

pub mod builtin;

use crate::jobs::engine::{JobOutcome, JobRun};
use std::future::Future;
use std::pin::Pin;
use tokio::sync::watch;

/// A job's work, as a future that ends with the job's outcome.
pub type JobFuture = Pin<Box<dyn Future<Output = JobOutcome> + Send>>;

/// Runs jobs. `cancel` turns true when the cloud has ended the job; the work should stop then
/// (its outcome is no longer reported).
pub trait Executor: Send + Sync {
    fn run(&self, run: JobRun, cancel: watch::Receiver<bool>) -> JobFuture;
}
