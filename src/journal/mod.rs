//! The durable journal of jobs in flight, and what it means after a crash or reboot.
//!
//! Owns: the record of jobs in flight (protobuf, schema in `journal.proto`, compiled by
//! build.rs), each change made durable before the side effect it announces (the file itself is
//! [`log_file`]'s: an append-only log, one `fdatasync` per change), reading every older
//! format, and deciding what an entry found
//! at start-up means: a job whose start had not been answered → the start may still be ours
//! (its marker decides); a job whose work ended → the journaled outcome; a job that asked for a
//! reboot and the boot id changed → SUCCEEDED; any other → FAILED with the reason.
//! Must not know: the Jobs API or IPC.

pub mod log_file;

use crate::jobs::job::{JobOutcome, Recovered};
use crate::jobs::messages::JobStatus;
use log_file::LogFile;
use std::path::Path;

/// Generated from `journal.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/ggjh.journal.rs"));
}

pub use proto::{InFlightJob, Phase};

/// The format this binary writes.
pub const FORMAT: u32 = 5;
/// Where the kernel publishes the id of the current boot.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// The current boot id (`GGJH_BOOT_ID_FILE` overrides the path, for tests).
pub fn boot_id() -> String {
    let path = std::env::var("GGJH_BOOT_ID_FILE").unwrap_or_else(|_| BOOT_ID_PATH.to_owned());
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The journal: the entries of jobs in flight, and the file that keeps them.
///
/// Call contract: every change returns only once it is on disk; act on it (send the start,
/// report the result) only after `Ok`. An `Err` leaves the entries as they were before the
/// change.
#[derive(Debug)]
pub struct Journal {
    file: LogFile,
    jobs: Vec<InFlightJob>,
}

impl Journal {
    /// Opens (or starts) the journal at `path`. Unreadable content is set aside as
    /// `<path>.corrupt` and logged, never fatal: the entries before it are kept, and the cloud
    /// still knows which jobs are in flight.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let (file, jobs) = LogFile::open(path)?;
        Ok(Self { file, jobs })
    }

    pub fn jobs(&self) -> &[InFlightJob] {
        &self.jobs
    }

    /// This installation's id: made when the journal was created, the same for every process
    /// that opens it (the engine's [`crate::jobs::engine::Input::Journal`]).
    pub fn installation(&self) -> &str {
        self.file.installation()
    }

    /// Whether the journal was read whole (`false`: a corrupt part was set aside at open, so
    /// entries may be missing).
    pub fn intact(&self) -> bool {
        self.file.intact()
    }

    /// Records a job about to start (replacing any entry for the same execution).
    pub fn begin(&mut self, job: InFlightJob) -> std::io::Result<()> {
        let mut jobs = self.jobs.clone();
        jobs.retain(|j| !(j.job_id == job.job_id && j.execution_number == job.execution_number));
        let record = job.clone();
        jobs.push(job);
        self.commit(&record, jobs)
    }

    /// Changes the entry of a job, if present.
    pub fn update(
        &mut self,
        job_id: &str,
        execution_number: i64,
        f: impl FnOnce(&mut InFlightJob),
    ) -> std::io::Result<()> {
        let mut jobs = self.jobs.clone();
        let Some(job) = jobs
            .iter_mut()
            .find(|j| j.job_id == job_id && j.execution_number == execution_number)
        else {
            return Ok(());
        };
        f(job);
        job.updated_at_ms = crate::clock::epoch_ms();
        let record = job.clone();
        self.commit(&record, jobs)
    }

    /// Drops a job whose final status the cloud has.
    pub fn remove(&mut self, job_id: &str, execution_number: i64) -> std::io::Result<()> {
        let mut jobs = self.jobs.clone();
        jobs.retain(|j| !(j.job_id == job_id && j.execution_number == execution_number));
        if jobs.len() == self.jobs.len() {
            return Ok(());
        }
        let record = InFlightJob {
            job_id: job_id.to_owned(),
            execution_number,
            removed: true,
            ..InFlightJob::default()
        };
        self.commit(&record, jobs)
    }

    /// Writes one change durably; the entries become `jobs` only once it is on disk.
    fn commit(&mut self, record: &InFlightJob, jobs: Vec<InFlightJob>) -> std::io::Result<()> {
        self.file.append(record, &jobs)?;
        self.jobs = jobs;
        Ok(())
    }
}

/// What a journal entry found at start-up means.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    pub recovered: Recovered,
    /// A process group of the old run that is still alive and must be killed first.
    pub kill_process_group: Option<u32>,
}

impl InFlightJob {
    /// The entry written before a start request goes out: the start's `marker`, the time and
    /// the boot it was sent in.
    pub fn starting(
        job_id: &str,
        execution_number: i64,
        marker: &str,
        now_ms: u64,
        boot_id: String,
    ) -> Self {
        Self {
            job_id: job_id.to_owned(),
            execution_number,
            started_at_ms: now_ms,
            updated_at_ms: now_ms,
            boot_id,
            phase: Phase::Starting as i32,
            start_marker: marker.to_owned(),
            ..Self::default()
        }
    }

    /// Marks the work as ended with `outcome`, before the result is reported.
    pub fn finish(&mut self, outcome: &JobOutcome) {
        self.phase = Phase::Finished as i32;
        self.pid = 0;
        self.result_status = outcome.status.as_str().to_owned();
        self.result_details = outcome
            .status_details
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
}

/// The outcome a FINISHED entry holds (`None` when its status is unreadable).
fn journaled_result(job: &InFlightJob) -> Option<JobOutcome> {
    let status: JobStatus =
        serde_json::from_value(serde_json::Value::String(job.result_status.clone())).ok()?;
    Some(JobOutcome {
        status,
        status_details: job
            .result_details
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

/// Decides the honest final status of a job that was in flight when the handler stopped.
pub fn recover(job: &InFlightJob, current_boot: &str, process_alive: bool) -> Recovery {
    let rebooted =
        !job.boot_id.is_empty() && !current_boot.is_empty() && job.boot_id != current_boot;
    let kill_process_group = (!rebooted && process_alive && job.pid != 0).then_some(job.pid);
    match job.phase() {
        Phase::Starting => {
            return Recovery {
                recovered: Recovered::NotStarted {
                    marker: job.start_marker.clone(),
                },
                kill_process_group: None,
            }
        }
        Phase::Finished => {
            if let Some(outcome) = journaled_result(job) {
                return Recovery {
                    recovered: Recovered::Ended(outcome),
                    kill_process_group,
                };
            }
        }
        Phase::Running => {}
    }
    let details = |pairs: &[(&str, String)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    };
    let outcome = if job.reboot_requested && rebooted {
        JobOutcome {
            status: JobStatus::Succeeded,
            status_details: details(&[("reboot", "completed".to_owned())]),
        }
    } else if job.reboot_requested {
        JobOutcome {
            status: JobStatus::Failed,
            status_details: details(&[(
                "reason",
                "the device did not reboot: the handler restarted before the reboot happened"
                    .to_owned(),
            )]),
        }
    } else {
        let cause = if rebooted {
            "the device rebooted"
        } else {
            "the handler stopped (crash, restart or kill)"
        };
        JobOutcome {
            status: JobStatus::Failed,
            status_details: details(&[
                (
                    "reason",
                    format!("interrupted: {cause} while step {} was running", job.step),
                ),
                ("interruptedStep", job.step.to_string()),
            ]),
        }
    };
    Recovery {
        recovered: Recovered::Ended(outcome),
        kill_process_group,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(reboot: bool, boot: &str) -> InFlightJob {
        InFlightJob {
            job_id: "j".into(),
            execution_number: 1,
            version_number: 2,
            step: 1,
            started_at_ms: 1,
            pid: 4242,
            work: "2 step(s)".into(),
            reboot_requested: reboot,
            boot_id: boot.into(),
            updated_at_ms: 2,
            ..InFlightJob::default()
        }
    }

    fn outcome_of(r: &Recovery) -> &JobOutcome {
        match &r.recovered {
            Recovered::Ended(o) => o,
            other => panic!("not ended: {other:?}"),
        }
    }

    #[test]
    fn writes_atomically_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("journal.pb");
        let mut j = Journal::open(&path).unwrap();
        j.begin(entry(false, "b1")).unwrap();
        j.update("j", 1, |e| e.step = 3).unwrap();
        let again = Journal::open(&path).unwrap();
        assert_eq!(again.jobs().len(), 1);
        assert_eq!(again.jobs()[0].step, 3);
        assert!(!path.with_extension("tmp").exists());
        j.remove("j", 1).unwrap();
        assert!(Journal::open(&path).unwrap().jobs().is_empty());
    }

    #[test]
    fn a_corrupt_journal_is_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.pb");
        std::fs::write(&path, b"\xff\xff\xff\xff garbage").unwrap();
        let j = Journal::open(&path).unwrap();
        assert!(j.jobs().is_empty());
        assert!(path.with_extension("corrupt").exists());
    }

    #[test]
    fn a_finished_entry_recovers_its_result_and_a_starting_one_its_marker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.pb");
        let mut j = Journal::open(&path).unwrap();
        let mut e = entry(false, "boot-a");
        e.phase = Phase::Finished as i32;
        e.result_status = "SUCCEEDED".into();
        e.result_details = [("result".to_owned(), "5".to_owned())].into();
        j.begin(e).unwrap();
        let again = Journal::open(&path).unwrap();
        let r = recover(&again.jobs()[0], "boot-a", false);
        assert_eq!(outcome_of(&r).status, JobStatus::Succeeded);
        assert_eq!(outcome_of(&r).status_details["result"], "5");
        let mut e = entry(false, "boot-a");
        e.phase = Phase::Starting as i32;
        e.start_marker = "ggjh-1-1".into();
        let r = recover(&e, "boot-a", true);
        assert_eq!(
            r.recovered,
            Recovered::NotStarted {
                marker: "ggjh-1-1".into()
            }
        );
        assert_eq!(r.kill_process_group, None, "nothing ran");
    }

    #[test]
    fn recovery_is_honest() {
        let r = recover(&entry(true, "boot-a"), "boot-b", false);
        assert_eq!(outcome_of(&r).status, JobStatus::Succeeded);
        let r = recover(&entry(true, "boot-a"), "boot-a", false);
        assert_eq!(outcome_of(&r).status, JobStatus::Failed);
        let r = recover(&entry(false, "boot-a"), "boot-a", true);
        assert_eq!(outcome_of(&r).status, JobStatus::Failed);
        assert!(outcome_of(&r).status_details["reason"].contains("handler stopped"));
        assert_eq!(r.kill_process_group, Some(4242));
        let r = recover(&entry(false, "boot-a"), "boot-b", true);
        assert!(outcome_of(&r).status_details["reason"].contains("rebooted"));
        assert_eq!(
            r.kill_process_group, None,
            "a pid from another boot is someone else's"
        );
    }
}
