//! Finding and killing every process of a job's run, whatever it did to escape.
//!
//! Owns: the per-run marker (`GGJH_RUN=<random id>` in the environment of every handler
//! process, recorded in the journal), making the component a child subreaper, and killing a
//! run: every process whose environment carries the marker, every descendant of those and of
//! the run's first process (by walking the `/proc` ppid tree), repeated until none remain.
//! Must not know: job documents, steps or the Jobs API.
//!
//! Why this mechanism: a process group or session is no boundary (a handler's child may call
//! `setsid()` or `setpgid()`), and a cgroup per job needs a delegated, writable cgroup v2
//! subtree, which the Greengrass nucleus's systemd unit does not give its components (no
//! `Delegate=yes`; components run as `ggc_user` under `greengrass.service`). The marker and the
//! subreaper need nothing from the system:
//! - the environment is inherited through `fork`, `setsid`, `setpgid`, double forks and
//!   `exec`, and `/proc/<pid>/environ` of a process of the same user is readable, so after a
//!   crash of the component the next start finds survivors by the journaled marker alone;
//! - as a child subreaper (`PR_SET_CHILD_SUBREAPER`), orphans of a handler are re-parented to
//!   the component instead of init, so they stay in its ppid tree and can be reaped.
//!
//! What a hostile handler can still do: replace its environment (`execve` with a clean one)
//! *and* leave the ppid tree before it is walked — which needs the subreaper to be gone (the
//! component crashed: its orphans go to init) or another process to start it (a setuid helper,
//! `systemd-run`, `at`, cron, a D-Bus service). Handlers run as the component's user, so the
//! operating system's user separation is the boundary against those.

use std::collections::BTreeSet;
use std::time::Duration;

/// The environment variable that carries a run's marker.
pub const RUN_MARKER_VAR: &str = "GGJH_RUN";
/// Rounds of find-and-kill before giving up on a process that keeps forking.
const MAX_ROUNDS: usize = 200;

/// A fresh marker for one run: 128 random bits.
pub fn new_run_marker() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Makes this process the subreaper of its descendants. Returns whether the kernel agreed.
pub fn become_subreaper() -> bool {
    // SAFETY: prctl(2) with PR_SET_CHILD_SUBREAPER takes an integer flag and no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 }
}

/// A process as `/proc/<pid>/stat` shows it.
struct Proc {
    pid: u32,
    ppid: u32,
    zombie: bool,
}

fn read_stat(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Proc {
        pid,
        ppid,
        zombie: state == "Z" || state == "X",
    })
}

fn carries_marker(pid: u32, needle: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).any(|var| var == needle))
        .unwrap_or(false)
}

fn all_processes() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_stat)
        .collect()
}

/// The live processes of a run: those carrying `marker`, `root` (when given), and every
/// descendant of any of them. Never this process.
pub fn processes_of_run(marker: &str, root: Option<u32>) -> BTreeSet<u32> {
    let needle = format!("{RUN_MARKER_VAR}={marker}").into_bytes();
    let me = std::process::id();
    let procs = all_processes();
    let mut found: BTreeSet<u32> = procs
        .iter()
        .filter(|p| p.pid != me && !p.zombie)
        .filter(|p| Some(p.pid) == root || carries_marker(p.pid, &needle))
        .map(|p| p.pid)
        .collect();
    // Descendants, by the ppid tree, until no new one appears.
    loop {
        let before = found.len();
        for p in &procs {
            if p.pid != me && !p.zombie && found.contains(&p.ppid) {
                found.insert(p.pid);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// Kills every process of a run and reaps those that were re-parented to this process (all
/// but `root`, whose parent waits for it). Returns how many processes were killed.
pub fn kill_run(marker: &str, root: Option<u32>) -> usize {
    let me = std::process::id();
    let mut killed = BTreeSet::new();
    for _ in 0..MAX_ROUNDS {
        let live = processes_of_run(marker, root.filter(|r| !killed.contains(r)));
        let live: Vec<u32> = live
            .into_iter()
            .filter(|p| !killed.contains(p) || still_running(*p))
            .collect();
        if live.is_empty() {
            break;
        }
        for pid in live {
            if let Ok(pid_i) = i32::try_from(pid) {
                // SAFETY: kill(2) on a pid found as a process of this run.
                unsafe {
                    libc::kill(pid_i, libc::SIGKILL);
                }
            }
            killed.insert(pid);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for pid in &killed {
        if Some(*pid) == root {
            continue;
        }
        if read_stat(*pid).is_some_and(|p| p.ppid == me) {
            if let Ok(pid) = i32::try_from(*pid) {
                // SAFETY: waitpid(2) on a child of ours that was killed; WNOHANG never blocks.
                unsafe {
                    libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
                }
            }
        }
    }
    if !killed.is_empty() {
        tracing::info!(run = %marker, killed = killed.len(), "processes of the run killed");
    }
    killed.len()
}

fn still_running(pid: u32) -> bool {
    read_stat(pid).is_some_and(|p| !p.zombie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_distinct() {
        assert_ne!(new_run_marker(), new_run_marker());
        assert_eq!(new_run_marker().len(), 32);
    }

    #[test]
    fn a_detached_process_is_found_by_its_marker_and_killed() {
        let marker = new_run_marker();
        let mut child = std::process::Command::new("setsid")
            .args(["sleep", "300"])
            .env(RUN_MARKER_VAR, &marker)
            .spawn()
            .unwrap();
        let pid = child.id();
        // setsid may fork; whichever process runs sleep carries the marker.
        let mut found = BTreeSet::new();
        for _ in 0..500 {
            found = processes_of_run(&marker, None);
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!found.is_empty());
        assert!(!processes_of_run(&new_run_marker(), None).contains(&pid));
        assert!(kill_run(&marker, None) >= 1);
        let _ = child.wait();
        assert!(processes_of_run(&marker, None).is_empty());
    }
}
