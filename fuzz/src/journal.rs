//! Target `journal`: the journal decoder ([`Journal::open`]) and recovery ([`recover`]).
//!
//! Input: the bytes of a journal file. Properties:
//! - the journal's reader agrees with protobuf: a file protobuf decodes is read whole, to the
//!   same records; one it refuses is read up to a point, and the rest is a cut-off last write
//!   or corruption;
//! - `Journal::open` never fails on content: it holds the live entries of the records read
//!   (the last of each execution, removals dropped), and sets the file aside as `.corrupt`
//!   exactly when the reader found corruption;
//! - a decoded journal re-encodes and decodes to itself;
//! - the installation id is the file's (protobuf's last value) when it has one, a new one
//!   otherwise, and the same on the next open; a journal is intact exactly when no corruption
//!   was set aside;
//! - recovery is honest for every entry and both boot situations: SUCCEEDED only for a job that
//!   asked for a reboot when the boot id changed, FAILED with a reason otherwise; a process
//!   group is killed only in the same boot, only when alive, never pid 0; statusDetails fit the
//!   service's limits.

use greengrass_jobs_handler::jobs::engine::Recovered;
use greengrass_jobs_handler::jobs::messages::JobStatus;
use greengrass_jobs_handler::jobs::status_details;
use greengrass_jobs_handler::journal::{log_file, proto, recover, Journal};
use prost::Message;

pub fn check(data: &[u8]) {
    let decoded = proto::Journal::decode(data);
    if let Ok(j) = &decoded {
        let again = proto::Journal::decode(j.encode_to_vec().as_slice())
            .expect("re-encoded journal decodes");
        assert_eq!(&again, j);
        for job in &j.jobs {
            for (boot, alive) in [
                (job.boot_id.clone(), true),
                ("another-boot".to_owned(), false),
                (String::new(), true),
            ] {
                let r = recover(job, &boot, alive);
                let rebooted = !job.boot_id.is_empty() && !boot.is_empty() && job.boot_id != boot;
                let outcome = match &r.recovered {
                    Recovered::Ended(outcome) => outcome,
                    Recovered::NotStarted { marker } => {
                        assert_eq!(
                            job.phase(),
                            proto::Phase::Starting,
                            "not started but {:?}",
                            job.phase()
                        );
                        assert_eq!(marker, &job.start_marker);
                        continue;
                    }
                };
                let journaled = job.phase() == proto::Phase::Finished;
                match outcome.status {
                    JobStatus::Succeeded => assert!(
                        (job.reboot_requested && rebooted)
                            || (journaled && job.result_status == "SUCCEEDED"),
                        "false SUCCEEDED"
                    ),
                    JobStatus::Failed => assert!(
                        outcome.status_details.contains_key("reason")
                            || (journaled && job.result_status == "FAILED")
                    ),
                    JobStatus::Rejected => assert!(journaled && job.result_status == "REJECTED"),
                    other => panic!("recovered as {other}"),
                }
                assert_eq!(
                    status_details::bounded(&outcome.status_details).len(),
                    outcome.status_details.len()
                );
                if let Some(pid) = r.kill_process_group {
                    assert!(pid != 0 && alive && !rebooted);
                }
            }
        }
    }

    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("jobs.journal");
    std::fs::write(&path, data).expect("write the journal");
    let read = log_file::read(data);
    match &decoded {
        Ok(j) => {
            assert_eq!(read.unreadable, None, "protobuf reads it whole");
            assert_eq!(read.readable, data.len());
            assert_eq!(read.records, j.jobs);
            assert_eq!(read.installation, j.installation);
        }
        Err(_) => assert!(read.unreadable.is_some(), "protobuf refuses it"),
    }
    let journal = Journal::open(&path).expect("a journal with any content opens");
    assert_eq!(
        journal.jobs(),
        log_file::live(read.records.clone()).as_slice()
    );
    assert_eq!(
        path.with_extension("corrupt").exists(),
        read.unreadable == Some(true),
        "set aside exactly when corrupt"
    );
    assert_eq!(journal.intact(), read.unreadable != Some(true));
    if !read.installation.is_empty() {
        assert_eq!(journal.installation(), read.installation, "an installation id is kept");
    } else {
        assert!(!journal.installation().is_empty(), "a journal gets an installation id");
    }
    // What it holds now reads back the same, under the same installation id, whole.
    let again = Journal::open(&path).expect("the tidied journal opens");
    assert_eq!(again.jobs(), journal.jobs());
    assert_eq!(again.installation(), journal.installation());
    assert!(again.intact());
}
