//! A journal written by an older version (format 1, committed as `tests/data/journal-v1.pb`)
//! is still read by this one, and recovered honestly.

use greengrass_jobs_handler::jobs::engine::Recovered;
use greengrass_jobs_handler::jobs::messages::JobStatus;
use greengrass_jobs_handler::journal::{self, Journal};
use prost::Message;
use std::path::PathBuf;

/// Format 1 of the schema, as it was: no work, reboot_requested, boot_id or updated_at_ms.
#[derive(Clone, PartialEq, Message)]
struct JournalV1 {
    #[prost(uint32, tag = "1")]
    format: u32,
    #[prost(message, repeated, tag = "2")]
    jobs: Vec<InFlightJobV1>,
}

#[derive(Clone, PartialEq, Message)]
struct InFlightJobV1 {
    #[prost(string, tag = "1")]
    job_id: String,
    #[prost(int64, tag = "2")]
    execution_number: i64,
    #[prost(int64, tag = "3")]
    version_number: i64,
    #[prost(uint32, tag = "4")]
    step: u32,
    #[prost(uint64, tag = "5")]
    started_at_ms: u64,
    #[prost(uint32, tag = "6")]
    pid: u32,
}

fn v1() -> JournalV1 {
    JournalV1 {
        format: 1,
        jobs: vec![InFlightJobV1 {
            job_id: "firmware-update-7".into(),
            execution_number: 3,
            version_number: 2,
            step: 1,
            started_at_ms: 1_764_000_000_000,
            pid: 0,
        }],
    }
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/journal-v1.pb")
}

#[test]
fn the_committed_fixture_is_format_1() {
    if std::env::var_os("GGJH_WRITE_FIXTURES").is_some() {
        std::fs::write(fixture(), v1().encode_to_vec()).unwrap();
    }
    let bytes = std::fs::read(fixture()).expect("tests/data/journal-v1.pb is committed");
    assert_eq!(JournalV1::decode(bytes.as_slice()).unwrap(), v1());
    assert_eq!(bytes, v1().encode_to_vec());
}

#[test]
fn a_format_1_journal_is_read_and_recovered_by_this_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.journal");
    std::fs::copy(fixture(), &path).unwrap();
    let mut j = Journal::open(&path).unwrap();
    let entry = j.jobs()[0].clone();
    assert_eq!(
        (
            entry.job_id.as_str(),
            entry.execution_number,
            entry.version_number,
            entry.step,
            entry.started_at_ms
        ),
        ("firmware-update-7", 3, 2, 1, 1_764_000_000_000)
    );
    // Fields format 1 did not have read as their defaults.
    assert!(!entry.reboot_requested);
    assert_eq!(entry.boot_id, "");
    assert_eq!(
        entry.phase(),
        journal::Phase::Running,
        "format 1 entries were running"
    );
    let recovery = journal::recover(&entry, "current-boot", false);
    let Recovered::Ended(outcome) = recovery.recovered else {
        panic!("a running entry ended: {recovery:?}")
    };
    assert_eq!(outcome.status, JobStatus::Failed);
    assert!(outcome.status_details["reason"].contains("step 1"));
    // Rewritten in the current format, still holding the entry.
    j.update("firmware-update-7", 3, |e| e.work = "upgraded".into())
        .unwrap();
    let reread = Journal::open(&path).unwrap();
    assert_eq!(reread.jobs()[0].work, "upgraded");
    assert_eq!(reread.jobs()[0].job_id, "firmware-update-7");
}
