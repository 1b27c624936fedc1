//! Running one handler process safely.
//!
//! Owns: spawning an executable with an argv array (never a shell), a clean environment, its
//! own process group, a time limit, cancellation, killing the whole process tree (grandchildren
//! included, and every process of the run found by [`super::containment`]) when it ends or
//! either fires, and keeping only the last part of stdout and stderr.
//! Must not know: job documents or the Jobs API.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Bytes of stdout and of stderr kept (the end of each).
pub const OUTPUT_TAIL_BYTES: usize = 4096;
/// How long the readers may drain output after the process tree is gone.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub working_dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    /// Another user to run as (`None`: the component's own user).
    pub identity: Option<super::run_as::Identity>,
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut,
    Canceled,
    SpawnFailed(String),
}

#[derive(Debug, Clone)]
pub struct ProcessResult {
    pub exit: Exit,
    pub stdout_tail: String,
    pub stderr_tail: String,
    pub stderr_lines: u64,
}

impl ProcessResult {
    pub fn succeeded(&self) -> bool {
        self.exit == Exit::Code(0)
    }

    /// A one-line description of how it ended.
    pub fn describe(&self, timeout: Duration) -> String {
        match &self.exit {
            Exit::Code(c) => format!("exited with code {c}"),
            Exit::Signal(s) => format!("killed by signal {s}"),
            Exit::TimedOut => format!(
                "timed out after {}s; the process tree was killed",
                timeout.as_secs()
            ),
            Exit::Canceled => "canceled; the process tree was killed".to_owned(),
            Exit::SpawnFailed(e) => format!("could not start: {e}"),
        }
    }
}

/// Keeps the last `OUTPUT_TAIL_BYTES` of a stream and counts its lines.
async fn tail<R: AsyncRead + Unpin>(mut reader: R) -> (Vec<u8>, u64) {
    let mut keep: VecDeque<u8> = VecDeque::with_capacity(OUTPUT_TAIL_BYTES);
    let mut lines = 0u64;
    let mut last = b'\n';
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                for &b in &buf[..n] {
                    if b == b'\n' {
                        lines += 1;
                    }
                    if keep.len() == OUTPUT_TAIL_BYTES {
                        keep.pop_front();
                    }
                    keep.push_back(b);
                    last = b;
                }
            }
        }
    }
    if last != b'\n' {
        lines += 1;
    }
    (keep.into_iter().collect(), lines)
}

/// Text from a byte tail that may start inside a multi-byte character.
fn lossy_tail(bytes: &[u8]) -> String {
    let start = bytes
        .iter()
        .position(|b| (*b as i8) >= -0x40)
        .unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Kills a process group this handler created (now or in an earlier run).
pub fn kill_process_group(pgid: u32) {
    if let Ok(pgid) = i32::try_from(pgid) {
        // SAFETY: kill(2) with a negative pid signals the process group we created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Whether a process with this pid exists (and this user may signal it).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks for existence and permission.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// Runs the process; `on_spawn` gets its pid (also its process group id).
pub async fn run(
    spec: &ProcessSpec,
    cancel: watch::Receiver<bool>,
    on_spawn: impl FnOnce(u32),
) -> ProcessResult {
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.working_dir)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(identity) = &spec.identity {
        super::run_as::apply(&mut command, identity);
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return ProcessResult {
                exit: Exit::SpawnFailed(e.to_string()),
                stdout_tail: String::new(),
                stderr_tail: String::new(),
                stderr_lines: 0,
            }
        }
    };
    let pid = child.id().unwrap_or(0);
    on_spawn(pid);
    if let (Some(input), Some(mut stdin)) = (spec.stdin.clone(), child.stdin.take()) {
        tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
        });
    }
    let stdout = child.stdout.take().map(|s| tokio::spawn(tail(s)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(tail(s)));
    let exit = tokio::select! {
        status = child.wait() => match status {
            Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                (Some(c), _) => Exit::Code(c),
                (None, Some(sig)) => Exit::Signal(sig),
                (None, None) => Exit::Code(-1),
            },
            Err(e) => Exit::SpawnFailed(e.to_string()),
        },
        _ = tokio::time::sleep(spec.timeout) => Exit::TimedOut,
        _ = super::canceled(cancel.clone()) => Exit::Canceled,
    };
    // Whatever happened, nothing of the job's process tree may outlive it: its group, and
    // every process carrying the run's marker or descending from it (setsid, double forks).
    kill_process_group(pid);
    let marker = spec
        .env
        .iter()
        .find(|(k, _)| k == super::containment::RUN_MARKER_VAR)
        .map(|(_, v)| v.clone());
    if let Some(marker) = marker {
        // The first process is named only while it is unreaped (its pid cannot be reused).
        let root = matches!(exit, Exit::TimedOut | Exit::Canceled) && pid != 0;
        super::containment::kill_run(&marker, root.then_some(pid));
    }
    let _ = child.wait().await;
    let collect = |task: Option<tokio::task::JoinHandle<(Vec<u8>, u64)>>| async move {
        match task {
            Some(t) => match tokio::time::timeout(DRAIN_GRACE, t).await {
                Ok(Ok(v)) => v,
                _ => (Vec::new(), 0),
            },
            None => (Vec::new(), 0),
        }
    };
    let (out, _) = collect(stdout).await;
    let (err, err_lines) = collect(stderr).await;
    ProcessResult {
        exit,
        stdout_tail: lossy_tail(&out),
        stderr_tail: lossy_tail(&err),
        stderr_lines: err_lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_text_skips_a_cut_character() {
        let text = "é".repeat(10);
        let bytes = &text.as_bytes()[1..];
        assert_eq!(lossy_tail(bytes), "é".repeat(9));
    }

    #[tokio::test]
    async fn output_is_tailed_and_lines_counted() {
        let (tail, lines) = tail(&b"a\nb\nc"[..]).await;
        assert_eq!((tail.as_slice(), lines), (&b"a\nb\nc"[..], 3));
        let long = vec![b'x'; OUTPUT_TAIL_BYTES * 3];
        let (tail, _) = super::tail(&long[..]).await;
        assert_eq!(tail.len(), OUTPUT_TAIL_BYTES);
    }
}
