//! Target `journal`: the journal decoder ([`Journal::open`]) and recovery ([`recover`]).
//!
//! Input: the bytes of a journal file. Properties:
//! - `Journal::open` never fails on content: a readable file gives exactly the jobs the
//!   protobuf decoding gives, an unreadable one is set aside as `.corrupt` and the journal starts
//!   empty;
//! - a decoded journal re-encodes and decodes to itself;
//! - recovery is honest for every entry and both boot situations: SUCCEEDED only for a job that
//!   asked for a reboot when the boot id changed, FAILED with a reason otherwise; a process
//!   group is killed only in the same boot, only when alive, never pid 0; statusDetails fit the
//!   service's limits.

use greengrass_jobs_handler::jobs::engine::Recovered;
use greengrass_jobs_handler::jobs::messages::JobStatus;
use greengrass_jobs_handler::jobs::status_details;
use greengrass_jobs_handler::journal::{proto, recover, Journal};
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
    let journal = Journal::open(&path).expect("a journal with any content opens");
    match decoded {
        Ok(j) => {
            assert_eq!(journal.jobs(), j.jobs.as_slice());
            assert!(!path.with_extension("corrupt").exists());
        }
        Err(_) => {
            assert!(journal.jobs().is_empty());
            assert!(
                path.with_extension("corrupt").exists(),
                "an unreadable journal was not set aside"
            );
        }
    }
}
