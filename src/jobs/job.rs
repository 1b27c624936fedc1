//! The job as the engine, the executor and the journal share it: what runs, how it ended, and
//! what an earlier run of the handler left behind.
//!
//! Owns: these plain value types. Must not know: the Jobs API's requests, how a job runs, or
//! how the journal stores it.

use super::document::JobDocument;
use super::messages::{JobStatus, StatusDetails};

/// Milliseconds on the caller's monotonic clock, from an arbitrary origin.
pub type Millis = u64;

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
