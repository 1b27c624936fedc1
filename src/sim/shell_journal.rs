//! The simulated device's journal: what the component's shell keeps on disk, held in memory.
//!
//! Owns: the entries the shell writes for the engine's [`Record`]s, for the start of a job's
//! work and for [`Action::Forget`](crate::jobs::engine::Action::Forget), written the way
//! `src/handler.rs` writes them (the real [`InFlightJob`] entries), and a crash's torn last
//! write: each of the journal's writes is one appended record, and a record cut short is
//! dropped when the journal is read (`journal::log_file`), so a write cut short leaves the
//! entry as it was before it. What an entry means at start-up is decided by the
//! real [`crate::journal::recover`].
//! Must not know: the engine's state, the world, or time beyond the value it is given.

use crate::jobs::engine::{JobRun, Record};
use crate::journal::{InFlightJob, Phase};

/// The boot id of the simulated device (it never reboots in the simulation).
pub const BOOT_ID: &str = "sim-boot";

/// A device's journal. Call contract: write in the order the shell would; after a crash, read
/// [`ShellJournal::entries`] once for the new process (each through
/// [`crate::journal::recover`]).
#[derive(Debug, Clone, Default)]
pub struct ShellJournal {
    entries: Vec<InFlightJob>,
}

impl ShellJournal {
    pub fn entries(&self) -> &[InFlightJob] {
        &self.entries
    }

    fn position(&self, job_id: &str, execution_number: i64) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.job_id == job_id && e.execution_number == execution_number)
    }

    fn begin(&mut self, entry: InFlightJob) {
        if let Some(i) = self.position(&entry.job_id, entry.execution_number) {
            self.entries.remove(i);
        }
        // Most devices hold one entry at a time: room for one, not a vector's first four.
        self.entries.reserve_exact(1);
        self.entries.push(entry);
    }

    /// What the shell writes for an [`Record`] before the action after it.
    pub fn record(&mut self, record: &Record, now: u64) {
        match record {
            Record::Starting {
                job_id,
                execution_number,
                marker,
            } => self.begin(InFlightJob::starting(
                job_id,
                *execution_number,
                marker,
                now,
                BOOT_ID.to_owned(),
            )),
            Record::Finished {
                job_id,
                execution_number,
                outcome,
            } => {
                if let Some(i) = self.position(job_id, *execution_number) {
                    let entry = &mut self.entries[i];
                    entry.finish(outcome);
                    entry.updated_at_ms = now;
                }
            }
        }
    }

    /// What the shell writes before a job's work begins (phase RUNNING, the start's marker
    /// kept).
    pub fn run(&mut self, run: &JobRun, run_marker: &str, now: u64) {
        let start_marker = self
            .position(&run.job_id, run.execution_number)
            .map(|i| self.entries[i].start_marker.clone())
            .unwrap_or_default();
        self.begin(InFlightJob {
            start_marker,
            run_marker: run_marker.to_owned(),
            job_id: run.job_id.clone(),
            execution_number: run.execution_number,
            version_number: run.version_number,
            started_at_ms: now,
            updated_at_ms: now,
            work: run.document.label(),
            boot_id: BOOT_ID.to_owned(),
            ..InFlightJob::default()
        });
    }

    /// The cloud holds the execution's final state: the entry goes.
    pub fn forget(&mut self, job_id: &str, execution_number: i64) {
        if let Some(i) = self.position(job_id, execution_number) {
            self.entries.remove(i);
        }
    }

    /// Whether the entry of an execution says its work began (phase RUNNING or FINISHED).
    pub fn shows_run(&self, job_id: &str, execution_number: i64) -> bool {
        self.position(job_id, execution_number)
            .is_some_and(|i| self.entries[i].phase() != Phase::Starting)
    }
}
