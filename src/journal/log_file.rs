//! The journal's file: an append-only log whose every change is durable after one
//! `fdatasync`.
//!
//! Owns: the on-disk layout, reading it back, appending, compacting and setting aside what
//! cannot be read.
//! - Layout (format 5): a `Journal { format, installation }` header, then one
//!   `Journal { jobs: [entry] }` fragment per change. Protobuf merges concatenated messages, so
//!   the file stays one valid `Journal` message; formats 1–3 (one whole `Journal`, rewritten on
//!   every change) and 4 (no installation id) are read the same way.
//! - The installation id is made once, when the file is created (or first rewritten by this
//!   format), from the operating system's randomness, and kept by every compaction.
//! - Meaning: the entries in file order, the last one of each execution (job id and number)
//!   winning; an entry with `removed` drops the execution.
//! - A change is appended and `fdatasync`ed: no temporary file, rename or directory sync on the
//!   path from a notification to the start request.
//! - A file that ends inside a record is a write cut off by a crash (the change it carried was
//!   never acted on, since acting waits for the sync): the records before it are kept and the
//!   tail is cut off. A record that cannot be decoded is corruption: the file is copied to
//!   `<path>.corrupt` with an error in the log, and the records before it are kept.
//! - Compaction: the live entries are written to a temporary file, synced, renamed over the
//!   log and the directory synced, when the log holds many more records than live entries,
//!   when it was written by an older format, and after a cut-off or corrupt tail.
//!
//! Must not know: what an entry means (recovery is the journal's).

use super::proto::{InFlightJob, Journal};
use super::FORMAT;
use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
use prost::Message;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Compact once the log holds this many records more than twice the live entries.
const SLACK_RECORDS: usize = 32;

/// The journal file, open for appending.
///
/// Call contract: [`LogFile::open`] once (it creates the file, or reads and tidies it);
/// then [`LogFile::append`] each change and act on it only after it returned `Ok`.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    /// Records in the file (entries and removals).
    records: usize,
    /// The file's length after its last whole record.
    len: u64,
    /// An append failed and its bytes may be in the file: the next change rewrites it whole.
    damaged: bool,
    /// The header's installation id.
    installation: String,
    /// Whether the file was read whole when opened (no corruption set aside).
    intact: bool,
}

/// What reading a journal file gave.
#[derive(Debug, Default, PartialEq)]
pub struct Read {
    /// The format that wrote the file (its last header).
    pub format: u32,
    /// The installation id of its last header that had one (empty: none).
    pub installation: String,
    /// Every record of the readable part, in file order.
    pub records: Vec<InFlightJob>,
    /// Bytes of the readable part.
    pub readable: usize,
    /// Why the rest could not be read: `Some(false)` a last record cut off, `Some(true)`
    /// corruption.
    pub unreadable: Option<bool>,
}

/// Whether `bytes` are the start of a varint that the end of the file cut off.
fn cut_off_varint(bytes: &[u8], max_len: usize) -> bool {
    bytes.len() < max_len && bytes.iter().all(|b| b & 0x80 != 0)
}

/// Reads a journal file's records until the end or the first one that cannot be read
/// (public for the fuzz target, which checks it against protobuf's own decoding).
pub fn read(bytes: &[u8]) -> Read {
    let mut out = Read::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        let mut cursor = rest;
        let Ok((tag, wire_type)) = decode_key(&mut cursor) else {
            out.unreadable = Some(!cut_off_varint(rest, 5));
            break;
        };
        let after_key = cursor;
        match (tag, wire_type) {
            (1, WireType::Varint) => match decode_varint(&mut cursor) {
                Ok(v) => out.format = v as u32,
                Err(_) => {
                    out.unreadable = Some(!cut_off_varint(after_key, 10));
                    break;
                }
            },
            (2 | 3, WireType::LengthDelimited) => {
                let Ok(len) = decode_varint(&mut cursor) else {
                    out.unreadable = Some(!cut_off_varint(after_key, 10));
                    break;
                };
                let Some(bytes) = usize::try_from(len).ok().and_then(|n| cursor.get(..n)) else {
                    // It runs past the end: the last write was cut off.
                    out.unreadable = Some(false);
                    break;
                };
                cursor = &cursor[bytes.len()..];
                if tag == 2 {
                    let Ok(job) = InFlightJob::decode(bytes) else {
                        out.unreadable = Some(true);
                        break;
                    };
                    out.records.push(job);
                } else {
                    let Ok(id) = std::str::from_utf8(bytes) else {
                        out.unreadable = Some(true);
                        break;
                    };
                    // Protobuf keeps the last value of a string field.
                    out.installation = id.to_owned();
                }
            }
            // The journal's own fields with another wire type: protobuf refuses them too.
            (1..=3, _) => {
                out.unreadable = Some(true);
                break;
            }
            // A field of a newer format: skipped, as protobuf does.
            _ => {
                if skip_field(wire_type, tag, &mut cursor, DecodeContext::default()).is_err() {
                    out.unreadable = Some(true);
                    break;
                }
            }
        }
        out.readable += rest.len() - cursor.len();
        rest = cursor;
    }
    out
}

/// The live entries of a sequence of records: the last of each execution, in the order each
/// was last written; removals drop theirs (public for the fuzz target).
pub fn live(records: Vec<InFlightJob>) -> Vec<InFlightJob> {
    let mut jobs: Vec<InFlightJob> = Vec::new();
    for record in records {
        jobs.retain(|j| {
            !(j.job_id == record.job_id && j.execution_number == record.execution_number)
        });
        if !record.removed {
            jobs.push(record);
        }
    }
    jobs
}

impl LogFile {
    /// Opens the log at `path` (creating it and its directory) and returns the live entries.
    /// Never fails on content; fails only when the file system refuses.
    pub fn open(path: &Path) -> std::io::Result<(Self, Vec<InFlightJob>)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let (jobs, tidy, records, installation, intact) = match std::fs::read(path) {
            Ok(bytes) => {
                let read = read(&bytes);
                if read.format > FORMAT {
                    tracing::warn!(
                        format = read.format,
                        "journal written by a newer version; reading what this version knows"
                    );
                }
                match read.unreadable {
                    Some(true) => {
                        let aside = path.with_extension("corrupt");
                        tracing::error!(path = %path.display(), readable_bytes = read.readable, total_bytes = bytes.len(), aside = %aside.display(), "journal unreadable past a point; kept the entries before it and set the file aside");
                        std::fs::write(&aside, &bytes)?;
                    }
                    Some(false) => {
                        tracing::warn!(path = %path.display(), cut_off_bytes = bytes.len() - read.readable, "the journal's last write was cut off (a crash during it); the change it carried was never acted on");
                    }
                    None => {}
                }
                let count = read.records.len();
                let jobs = live(read.records);
                let tidy = read.unreadable.is_some()
                    || read.format < FORMAT
                    || read.installation.is_empty()
                    || count > 2 * jobs.len() + SLACK_RECORDS;
                let intact = read.unreadable != Some(true);
                (jobs, tidy, count, read.installation, intact)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (Vec::new(), true, 0, String::new(), true)
            }
            Err(e) => return Err(e),
        };
        let installation = if installation.is_empty() {
            new_installation_id()
        } else {
            installation
        };
        let mut log = Self {
            path: path.to_owned(),
            file: if tidy {
                compact(path, &installation, &jobs)?
            } else {
                OpenOptions::new().append(true).open(path)?
            },
            records: if tidy { jobs.len() } else { records },
            len: 0,
            damaged: false,
            installation,
            intact,
        };
        log.len = log.file.metadata()?.len();
        Ok((log, jobs))
    }

    /// Appends one change (`record`; `removed` set for a removal) and syncs it; `live` is the
    /// journal after the change, written instead when the log is due for compaction.
    /// On `Err` the change is not in the journal: the bytes it may have left are cut off, or
    /// failing that the next change rewrites the file whole.
    pub fn append(&mut self, record: &InFlightJob, live: &[InFlightJob]) -> std::io::Result<()> {
        if self.damaged || self.records + 1 > 2 * live.len() + SLACK_RECORDS {
            self.file = compact(&self.path, &self.installation, live)?;
            self.records = live.len();
            self.len = self.file.metadata()?.len();
            self.damaged = false;
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(record.encoded_len() + 6);
        prost::encoding::message::encode(2, record, &mut bytes);
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            if self.file.set_len(self.len).is_err() {
                self.damaged = true;
            }
            return Err(e);
        }
        self.records += 1;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// The installation id of the journal's header.
    pub fn installation(&self) -> &str {
        &self.installation
    }

    /// Whether the file was read whole when opened (`false`: a corrupt part was set aside).
    pub fn intact(&self) -> bool {
        self.intact
    }
}

/// A new installation id: 16 hex digits from a hasher the standard library keys with the
/// operating system's randomness.
fn new_installation_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{random:016x}")
}

/// Writes `jobs` as the whole log under a header with `installation`, atomically and durably,
/// and opens it for appending.
fn compact(path: &Path, installation: &str, jobs: &[InFlightJob]) -> std::io::Result<File> {
    let bytes = Journal {
        format: FORMAT,
        jobs: jobs.to_vec(),
        installation: installation.to_owned(),
    }
    .encode_to_vec();
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    OpenOptions::new().append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, step: u32) -> InFlightJob {
        InFlightJob {
            job_id: id.into(),
            execution_number: 1,
            step,
            ..InFlightJob::default()
        }
    }

    fn removal(id: &str) -> InFlightJob {
        InFlightJob {
            removed: true,
            ..job(id, 0)
        }
    }

    #[test]
    fn the_log_is_one_protobuf_journal_whose_last_entries_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.journal");
        let (mut log, jobs) = LogFile::open(&path).unwrap();
        assert!(jobs.is_empty());
        log.append(&job("a", 1), &[job("a", 1)]).unwrap();
        log.append(&job("b", 1), &[job("a", 1), job("b", 1)])
            .unwrap();
        log.append(&job("a", 2), &[job("b", 1), job("a", 2)])
            .unwrap();
        log.append(&removal("b"), &[job("a", 2)]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let whole = Journal::decode(bytes.as_slice()).unwrap();
        assert_eq!(whole.format, FORMAT);
        assert_eq!(whole.jobs.len(), 4, "four records after the header");
        assert_eq!(live(whole.jobs), vec![job("a", 2)]);
        let (_, jobs) = LogFile::open(&path).unwrap();
        assert_eq!(jobs, vec![job("a", 2)]);
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn a_cut_off_last_write_is_dropped_and_the_log_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.journal");
        let (mut log, _) = LogFile::open(&path).unwrap();
        log.append(&job("a", 1), &[job("a", 1)]).unwrap();
        let whole = std::fs::read(&path).unwrap();
        let mut record = Vec::new();
        prost::encoding::message::encode(2, &job("b", 7), &mut record);
        for cut in 1..record.len() {
            let mut torn = whole.clone();
            torn.extend_from_slice(&record[..cut]);
            std::fs::write(&path, &torn).unwrap();
            let (mut log, jobs) = LogFile::open(&path).unwrap();
            assert_eq!(jobs, vec![job("a", 1)], "cut at {cut}");
            assert!(!path.with_extension("corrupt").exists(), "cut at {cut}");
            log.append(&job("c", 1), &[job("a", 1), job("c", 1)])
                .unwrap();
            let (_, jobs) = LogFile::open(&path).unwrap();
            assert_eq!(jobs, vec![job("a", 1), job("c", 1)], "cut at {cut}");
        }
    }

    #[test]
    fn a_corrupt_record_sets_the_file_aside_and_keeps_what_came_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.journal");
        let (mut log, _) = LogFile::open(&path).unwrap();
        log.append(&job("a", 1), &[job("a", 1)]).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        // A record of three bytes that are no InFlightJob.
        bytes.extend_from_slice(&[0x12, 0x03, 0xff, 0xff, 0xff]);
        std::fs::write(&path, &bytes).unwrap();
        let (_, jobs) = LogFile::open(&path).unwrap();
        assert_eq!(jobs, vec![job("a", 1)]);
        assert_eq!(
            std::fs::read(path.with_extension("corrupt")).unwrap(),
            bytes
        );
        let (_, jobs) = LogFile::open(&path).unwrap();
        assert_eq!(jobs, vec![job("a", 1)], "the tidied log reads cleanly");
    }

    #[test]
    fn the_log_is_compacted_as_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.journal");
        let (mut log, _) = LogFile::open(&path).unwrap();
        for step in 0..1_000 {
            log.append(&job("a", step), &[job("a", step)]).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        let records = read(&bytes).records.len();
        assert!(records <= 2 + SLACK_RECORDS, "{records} records");
        let (_, jobs) = LogFile::open(&path).unwrap();
        assert_eq!(jobs, vec![job("a", 999)]);
    }

    #[test]
    fn an_older_format_is_read_and_rewritten_in_this_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.journal");
        for format in [3, 4] {
            let old = Journal {
                format,
                jobs: vec![job("a", 1), job("b", 2)],
                ..Journal::default()
            };
            std::fs::write(&path, old.encode_to_vec()).unwrap();
            let (log, jobs) = LogFile::open(&path).unwrap();
            assert_eq!(jobs, old.jobs);
            assert!(log.intact());
            let rewritten = Journal::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
            assert_eq!(rewritten.format, FORMAT);
            assert_eq!(rewritten.jobs, old.jobs);
            // The rewrite gave it an installation id.
            assert_eq!(rewritten.installation, log.installation());
            assert_eq!(log.installation().len(), 16);
            assert!(log.installation().chars().all(|c| c.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn the_installation_id_is_made_once_and_kept_by_every_change_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.journal");
        let (mut log, _) = LogFile::open(&path).unwrap();
        let id = log.installation().to_owned();
        let mut live = Vec::new();
        // Enough changes to compact the log several times.
        for step in 0..(3 * SLACK_RECORDS as u32) {
            live = vec![job("a", step)];
            log.append(&live[0], &live).unwrap();
        }
        drop(log);
        let (again, jobs) = LogFile::open(&path).unwrap();
        assert_eq!(jobs, live);
        assert_eq!(again.installation(), id);
        assert!(again.intact());
        // Another journal is another installation.
        let (other, _) = LogFile::open(&dir.path().join("other.journal")).unwrap();
        assert_ne!(other.installation(), id);
    }

    #[test]
    fn a_journal_with_corruption_set_aside_is_not_intact_and_keeps_its_installation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.journal");
        let (mut log, _) = LogFile::open(&path).unwrap();
        let id = log.installation().to_owned();
        log.append(&job("a", 1), &[job("a", 1)]).unwrap();
        drop(log);
        // A record whose body is not an entry: field 2 of length 2 holding a bad key.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0x12, 0x02, 0xff, 0xff]);
        std::fs::write(&path, &bytes).unwrap();
        let (log, jobs) = LogFile::open(&path).unwrap();
        assert!(!log.intact());
        assert_eq!(jobs, vec![job("a", 1)]);
        assert_eq!(log.installation(), id);
        assert!(path.with_extension("corrupt").exists());
        // Once tidied, the next process reads it whole.
        drop(log);
        let (log, _) = LogFile::open(&path).unwrap();
        assert!(log.intact());
    }
}
