//! Real child-process handlers: success, failure, final step, ignored failures, stderr limits,
//! timeouts that kill grandchildren, cancellation, output truncation on multi-byte text, the
//! compact form's operation handlers, the environment handlers get, and refused handlers.

use greengrass_jobs_handler::exec::job_executor::{ExecSettings, JobExecutor};
use greengrass_jobs_handler::exec::permissions::Permissions;
use greengrass_jobs_handler::exec::steps::Limits;
use greengrass_jobs_handler::exec::{Executor, Progress, RunContext};
use greengrass_jobs_handler::jobs::document::{classify, Ownership};
use greengrass_jobs_handler::jobs::engine::{JobOutcome, JobRun};
use greengrass_jobs_handler::jobs::messages::JobStatus;
use greengrass_jobs_handler::jobs::status_details::bounded;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

struct Dir {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

fn handlers(scripts: &[(&str, &str)]) -> Dir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("handlers");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    for (name, body) in scripts {
        let path = root.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    Dir { _tmp: tmp, root }
}

fn executor(dir: &Path, step_timeout: Duration) -> JobExecutor {
    executor_with(dir, step_timeout, Permissions::default(), None)
}

fn executor_with(
    dir: &Path,
    step_timeout: Duration,
    permissions: Permissions,
    reboot_command: Option<Vec<String>>,
) -> JobExecutor {
    JobExecutor::new(
        ExecSettings {
            handler_dir: Some(dir.to_owned()),
            limits: Limits {
                step_timeout,
                job_timeout: Duration::from_secs(600),
                env: vec![
                    ("PATH".into(), "/usr/bin:/bin".into()),
                    ("AWS_IOT_THING_NAME".into(), "t".into()),
                ],
            },
            reboot_command,
            reboot_wait: Duration::from_secs(1),
            permissions,
        },
        None,
    )
}

fn job(doc: Value) -> JobRun {
    let Ownership::Ours(document) = classify(Some(&doc)) else {
        panic!("ours: {doc}")
    };
    JobRun {
        job_id: "j".into(),
        execution_number: 1,
        version_number: 2,
        document,
    }
}

async fn run(dir: &Dir, doc: Value) -> JobOutcome {
    let (_tx, rx) = watch::channel(false);
    let ex = executor(&dir.root, Duration::from_secs(30));
    tokio::time::timeout(
        Duration::from_secs(60),
        ex.run(job(doc), RunContext::detached(rx)),
    )
    .await
    .expect("job finished")
}

fn steps(actions: Value) -> Value {
    json!({"version": "1.0", "steps": actions})
}

fn handler_step(name: &str, handler: &str, args: &[&str]) -> Value {
    json!({"action": {"name": name, "type": "runHandler", "input": {"handler": handler, "args": args, "path": "default"}}})
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); read its state instead.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn steps_succeed_with_stdout_and_args_as_argv() {
    let d = handlers(&[("greet.sh", r#"echo "hello [$1] $2|$3""#)]);
    let mut doc = steps(json!([handler_step(
        "greet",
        "greet.sh",
        &["big world", "$(rm -rf /)"]
    )]));
    doc["includeStdOut"] = json!("true");
    let o = run(&d, doc).await;
    assert_eq!(o.status, JobStatus::Succeeded, "{o:?}");
    // Arguments are argv entries: no shell ever interprets them.
    // argv[1] is the step's runAsUser (empty: unset), as in the Device Client.
    assert_eq!(o.status_details["stdout"], "hello [] big world|$(rm -rf /)");
    assert_eq!(o.status_details["steps"], "1 of 1 succeeded");
}

#[tokio::test]
async fn failure_reports_exit_code_and_stderr_and_still_runs_the_final_step() {
    let d = handlers(&[
        ("bad.sh", "echo oops >&2; exit 3"),
        ("never.sh", "touch never-ran"),
        ("cleanup.sh", "touch cleaned-up"),
    ]);
    let mut doc = steps(json!([
        handler_step("break", "bad.sh", &[]),
        handler_step("skipped", "never.sh", &[])
    ]));
    doc["finalStep"] = handler_step("cleanup", "cleanup.sh", &[]);
    let o = run(&d, doc).await;
    assert_eq!(o.status, JobStatus::Failed);
    assert_eq!(o.status_details["exitCode"], "3");
    assert_eq!(o.status_details["failedStep"], "break");
    assert_eq!(o.status_details["stderr"], "oops");
    assert!(
        d.root.join("cleaned-up").exists(),
        "the final step runs after a failure"
    );
    assert!(
        !d.root.join("never-ran").exists(),
        "steps after a failure do not"
    );
}

#[tokio::test]
async fn a_refused_step_still_runs_the_final_step_and_the_job_is_rejected() {
    let d = handlers(&[
        ("never.sh", "touch never-ran"),
        ("cleanup.sh", "touch cleaned-up"),
    ]);
    let mut doc = steps(json!([
        handler_step("missing", "no-such-handler.sh", &[]),
        handler_step("skipped", "never.sh", &[])
    ]));
    doc["finalStep"] = handler_step("cleanup", "cleanup.sh", &[]);
    let o = run(&d, doc).await;
    assert_eq!(o.status, JobStatus::Rejected, "{o:?}");
    assert_eq!(o.status_details["failedStep"], "missing");
    assert!(o.status_details["reason"].contains("missing"), "{o:?}");
    assert!(
        d.root.join("cleaned-up").exists(),
        "the final step runs after a refused step"
    );
    assert!(!d.root.join("never-ran").exists());
    // A refused final step after a failed step: the failure stays the job's status.
    let d = handlers(&[("bad.sh", "exit 2")]);
    let mut doc = steps(json!([handler_step("break", "bad.sh", &[])]));
    doc["finalStep"] = handler_step("cleanup", "gone.sh", &[]);
    let o = run(&d, doc).await;
    assert_eq!(
        (o.status, o.status_details["failedStep"].as_str()),
        (JobStatus::Failed, "break")
    );
}

#[tokio::test]
async fn ignored_failures_and_stderr_limits() {
    let d = handlers(&[
        ("bad.sh", "exit 1"),
        ("noisy.sh", "echo a >&2; echo b >&2; echo c >&2"),
        ("ok.sh", "true"),
    ]);
    let mut ignored = handler_step("may fail", "bad.sh", &[]);
    ignored["action"]["ignoreStepFailure"] = json!(true);
    let o = run(
        &d,
        steps(json!([ignored, handler_step("ok", "ok.sh", &[])])),
    )
    .await;
    assert_eq!(o.status, JobStatus::Succeeded);
    assert_eq!(o.status_details["ignoredFailures"], "may fail");

    let mut noisy = handler_step("noisy", "noisy.sh", &[]);
    noisy["action"]["allowStdErr"] = json!(2);
    let o = run(&d, steps(json!([noisy.clone()]))).await;
    assert_eq!(o.status, JobStatus::Failed);
    assert!(
        o.status_details["reason"].contains("3 line(s) to stderr"),
        "{o:?}"
    );
    noisy["action"]["allowStdErr"] = json!("3");
    assert_eq!(
        run(&d, steps(json!([noisy]))).await.status,
        JobStatus::Succeeded
    );
}

#[tokio::test]
async fn timeout_kills_the_whole_process_tree() {
    let d = handlers(&[("hang.sh", "sleep 300 & echo $! > grandchild.pid; sleep 300")]);
    let mut step = handler_step("hang", "hang.sh", &[]);
    step["action"]["timeoutSeconds"] = json!(1);
    let started = Instant::now();
    let o = run(&d, steps(json!([step]))).await;
    assert_eq!(o.status, JobStatus::Failed);
    assert!(o.status_details["reason"].contains("timed out"), "{o:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let pid: i32 = fs::read_to_string(d.root.join("grandchild.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The grandchild was killed too.
    assert_all_dead(&[pid]).await;
}

#[tokio::test]
async fn cancellation_stops_the_work() {
    let d = handlers(&[("hang.sh", "echo $$ > child.pid; sleep 300")]);
    let (tx, rx) = watch::channel(false);
    let pids = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&pids);
    let ctx = RunContext {
        run_marker: greengrass_jobs_handler::exec::containment::new_run_marker(),
        cancel: rx,
        progress: Arc::new(move |p| {
            if let Progress::Spawned { pid } = p {
                seen.lock().unwrap().push(pid);
            }
        }),
    };
    let ex = executor(&d.root, Duration::from_secs(600));
    let task = tokio::spawn(ex.run(
        job(steps(json!([handler_step("hang", "hang.sh", &[])]))),
        ctx,
    ));
    while !d.root.join("child.pid").exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.send(true).unwrap();
    let o = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.status, JobStatus::Failed);
    let pid = pids.lock().unwrap()[0] as i32;
    assert_all_dead(&[pid]).await;
}

#[tokio::test]
async fn multi_byte_output_is_cut_on_character_boundaries() {
    let d = handlers(&[(
        "utf8.sh",
        "i=0; while [ $i -lt 2000 ]; do printf 'é€😀'; i=$((i+1)); done; echo",
    )]);
    let mut doc = steps(json!([handler_step("utf8", "utf8.sh", &[])]));
    doc["includeStdOut"] = json!(true);
    let o = run(&d, doc).await;
    assert_eq!(o.status, JobStatus::Succeeded);
    let details = bounded(&o.status_details);
    let out = &details["stdout"];
    assert!(out.chars().count() <= 1024, "{}", out.chars().count());
    assert!(
        out.ends_with("é€😀"),
        "keeps the end, whole characters only"
    );
    assert!(!out.contains('\u{FFFD}'), "no broken characters");
}

#[tokio::test]
async fn compact_operations_run_their_handler_with_the_document_on_stdin() {
    let d = handlers(&[
        (
            "area",
            r#"read doc; w=$(echo "$doc" | sed 's/.*"w":\([0-9]*\).*/\1/'); echo "{\"result\": \"$((w * 2))\", \"env\": \"$(env | sort | tr '\n' ' ')\"}""#,
        ),
        ("crash", "echo broken >&2; exit 7"),
    ]);
    let o = run(&d, json!({"operation": "area", "w": 21})).await;
    assert_eq!(o.status, JobStatus::Succeeded, "{o:?}");
    assert_eq!(o.status_details["result"], "42");
    // Handlers get only PATH and the thing name: never the component's SVCUID.
    let env = &o.status_details["env"];
    assert!(env.contains("AWS_IOT_THING_NAME=t"), "{env}");
    assert!(!env.contains("SVCUID"), "{env}");
    let o = run(&d, json!({"operation": "crash"})).await;
    assert_eq!(
        (o.status, o.status_details["exitCode"].as_str()),
        (JobStatus::Failed, "7")
    );
    let o = run(&d, json!({"operation": "no-such-thing"})).await;
    assert_eq!(o.status, JobStatus::Rejected);
}

#[tokio::test]
async fn unsafe_handlers_are_refused() {
    let d = handlers(&[("ok.sh", "true")]);
    let outside = d.root.parent().unwrap().join("outside.sh");
    fs::write(&outside, "#!/bin/sh\ntouch pwned\n").unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&outside, d.root.join("link.sh")).unwrap();
    let o = run(&d, steps(json!([handler_step("escape", "link.sh", &[])]))).await;
    assert_eq!(o.status, JobStatus::Rejected, "{o:?}");
    let writable = d.root.join("open.sh");
    fs::write(&writable, "#!/bin/sh\ntrue\n").unwrap();
    fs::set_permissions(&writable, fs::Permissions::from_mode(0o777)).unwrap();
    let o = run(&d, steps(json!([handler_step("open", "open.sh", &[])]))).await;
    assert_eq!(o.status, JobStatus::Rejected);
    assert!(o.status_details["reason"].contains("writable"));
    fs::set_permissions(&d.root, fs::Permissions::from_mode(0o777)).unwrap();
    let o = run(&d, steps(json!([handler_step("ok", "ok.sh", &[])]))).await;
    assert_eq!(o.status, JobStatus::Failed);
    assert!(o.status_details["reason"].contains("handler directory unusable"));
    assert!(!d.root.join("pwned").exists());
}

/// A handler whose children leave its process group and session: one through `setsid`, one
/// through a double fork into a new process group. It waits until both have written their
/// pids, then runs `tail` (e.g. `exit 0` or `sleep 300`).
fn escaping_handler(tail: &str) -> Dir {
    handlers(&[(
        "escape.sh",
        &format!(
            r#"setsid sh -c 'echo $$ > session.pid; exec sleep 300' &
sh -c 'sh -c "echo \$\$ > double.pid; exec sleep 301" &' &
while [ ! -s session.pid ] || [ ! -s double.pid ]; do sleep 0.05; done
{tail}"#
        ),
    )])
}

fn escaped_pids(d: &Dir) -> Vec<i32> {
    ["session.pid", "double.pid"]
        .iter()
        .map(|f| {
            fs::read_to_string(d.root.join(f))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect()
}

async fn assert_all_dead(pids: &[i32]) {
    // Killed processes re-parented to init are reaped by it shortly after.
    for _ in 0..100 {
        if pids.iter().all(|p| !alive(*p)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "survivors: {:?}",
        pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
    );
}

async fn run_with(ex: &JobExecutor, doc: Value) -> JobOutcome {
    let (_tx, rx) = watch::channel(false);
    tokio::time::timeout(
        Duration::from_secs(60),
        ex.run(job(doc), RunContext::detached(rx)),
    )
    .await
    .expect("job finished")
}

/// A handler written for the Device Client: the user comes first, the arguments after it.
const DEVICE_CLIENT_HANDLER: &str = r#"user=$1; shift
printf 'user=[%s] n=%s' "$user" "$#"
for a in "$@"; do printf ' <%s>' "$a"; done
echo"#;

#[tokio::test]
async fn device_client_handlers_get_the_user_first_and_their_arguments_unshifted() {
    let d = handlers(&[("dc.sh", DEVICE_CLIENT_HANDLER)]);
    let mut doc = steps(json!([handler_step(
        "install",
        "dc.sh",
        &["lftp dos2unix", "second"]
    )]));
    doc["includeStdOut"] = json!(true);
    let o = run(&d, doc.clone()).await;
    assert_eq!(o.status, JobStatus::Succeeded, "{o:?}");
    assert_eq!(
        o.status_details["stdout"],
        "user=[] n=2 <lftp dos2unix> <second>"
    );
    // The component's own user, named: runs as it, and the handler is told.
    let me = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let out = std::process::Command::new("id")
                .arg("-un")
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        });
    doc["steps"][0]["action"]["runAsUser"] = json!(me);
    let o = run(&d, doc).await;
    assert_eq!(o.status, JobStatus::Succeeded, "{o:?}");
    assert_eq!(
        o.status_details["stdout"],
        format!("user=[{me}] n=2 <lftp dos2unix> <second>")
    );
}

fn uid() -> u32 {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn run_as_user_needs_the_allow_list_and_root() {
    let d = handlers(&[("who.sh", r#"echo "$(id -u) $(id -g) for [$1]""#)]);
    // The test's temp dir is private; the other user must be able to reach the handler.
    fs::set_permissions(d.root.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
    let mut step = handler_step("who", "who.sh", &[]);
    step["action"]["runAsUser"] = json!("nobody");
    let mut doc = steps(json!([step]));
    doc["includeStdOut"] = json!(true);
    // Not in runAsUsers: refused, whoever the component runs as.
    let o = run(&d, doc.clone()).await;
    assert_eq!(o.status, JobStatus::Rejected, "{o:?}");
    assert!(o.status_details["reason"].contains("runAsUsers"), "{o:?}");
    let allowed = Permissions {
        run_as_users: vec!["nobody".into()],
        ..Permissions::default()
    };
    let ex = executor_with(&d.root, Duration::from_secs(30), allowed, None);
    let o = run_with(&ex, doc).await;
    if uid() == 0 {
        // Root may switch: the handler really runs as nobody (uid and group).
        assert_eq!(o.status, JobStatus::Succeeded, "{o:?}");
        assert_eq!(o.status_details["stdout"], "65534 65534 for [nobody]");
    } else {
        assert_eq!(o.status, JobStatus::Rejected, "{o:?}");
        assert!(o.status_details["reason"].contains("RequiresPrivilege"));
    }
    // A user the device does not have.
    let mut step = handler_step("who", "who.sh", &[]);
    step["action"]["runAsUser"] = json!("no-such-user-here");
    let o = run(&d, steps(json!([step]))).await;
    assert_eq!(o.status, JobStatus::Rejected);
    assert!(
        o.status_details["reason"].contains("does not exist"),
        "{o:?}"
    );
}

#[tokio::test]
async fn children_that_leave_the_session_die_when_the_job_succeeds() {
    let d = escaping_handler("exit 0");
    let o = run(&d, steps(json!([handler_step("escape", "escape.sh", &[])]))).await;
    assert_eq!(o.status, JobStatus::Succeeded, "{o:?}");
    assert_all_dead(&escaped_pids(&d)).await;
}

#[tokio::test]
async fn children_that_leave_the_session_die_at_the_step_timeout() {
    let d = escaping_handler("sleep 300");
    let mut step = handler_step("escape", "escape.sh", &[]);
    step["action"]["timeoutSeconds"] = json!(1);
    let o = run(&d, steps(json!([step]))).await;
    assert!(o.status_details["reason"].contains("timed out"), "{o:?}");
    assert_all_dead(&escaped_pids(&d)).await;
}

#[tokio::test]
async fn children_that_leave_the_session_die_when_the_job_is_canceled() {
    let d = escaping_handler("sleep 300");
    let (tx, rx) = watch::channel(false);
    let ex = executor(&d.root, Duration::from_secs(600));
    let task = tokio::spawn(ex.run(
        job(steps(json!([handler_step("escape", "escape.sh", &[])]))),
        RunContext::detached(rx),
    ));
    // Both children have left and written their pids.
    while ["double.pid", "session.pid"].iter().any(|f| {
        fs::read_to_string(d.root.join(f)).map_or(true, |p| p.trim().parse::<i32>().is_err())
    }) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.send(true).unwrap();
    let o = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.status, JobStatus::Failed);
    assert_all_dead(&escaped_pids(&d)).await;
}

#[tokio::test]
async fn path_to_handler_may_name_a_subdirectory_but_not_escape() {
    let d = handlers(&[]);
    let sub = d.root.join("apps");
    fs::create_dir(&sub).unwrap();
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(sub.join("in.sh"), "#!/bin/sh\necho in-sub\n").unwrap();
    fs::set_permissions(sub.join("in.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    let outside = d.root.parent().unwrap().join("in.sh");
    fs::write(&outside, "#!/bin/sh\ntouch pwned\n").unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
    let step = |path: &str| {
        json!({"action": {"name": "s", "type": "runHandler",
            "input": {"handler": "in.sh", "args": [], "path": path}}})
    };
    for ok in ["apps", sub.to_str().unwrap()] {
        let mut doc = steps(json!([step(ok)]));
        doc["includeStdOut"] = json!(true);
        let o = run(&d, doc).await;
        assert_eq!(o.status, JobStatus::Succeeded, "{ok}: {o:?}");
        assert_eq!(o.status_details["stdout"], "in-sub");
    }
    for escape in [
        "..",
        "apps/../..",
        d.root.parent().unwrap().to_str().unwrap(),
        "/tmp",
    ] {
        let o = run(&d, steps(json!([step(escape)]))).await;
        assert_eq!(o.status, JobStatus::Rejected, "{escape}: {o:?}");
    }
    assert!(!d.root.parent().unwrap().join("pwned").exists());
}

#[tokio::test]
async fn run_command_starts_outside_programs_only_from_the_allow_list() {
    let d = handlers(&[("local.sh", "echo local $1")]);
    let cmd = |command: &str| {
        let mut doc = steps(json!([{"action": {"name": "cmd", "type": "runCommand",
            "input": {"command": command}}}]));
        doc["includeStdOut"] = json!(true);
        doc
    };
    let o = run(&d, cmd("local.sh,x")).await;
    assert_eq!(o.status_details["stdout"], "local x", "{o:?}");
    for refused in ["/bin/echo,hi", "echo,hi", "/bin/sh,-c,touch pwned"] {
        let o = run(&d, cmd(refused)).await;
        assert_eq!(o.status, JobStatus::Rejected, "{refused}: {o:?}");
        assert!(
            o.status_details["reason"].contains("runCommandAllowList"),
            "{o:?}"
        );
    }
    let allowed = Permissions {
        run_command_allow_list: vec!["/bin/echo".into()],
        ..Permissions::default()
    };
    let ex = executor_with(&d.root, Duration::from_secs(30), allowed, None);
    // No shell: `$(...)` and `;` reach the program as text.
    let o = run_with(&ex, cmd("/bin/echo,$(id);,a\\,b")).await;
    assert_eq!(o.status, JobStatus::Succeeded, "{o:?}");
    assert_eq!(o.status_details["stdout"], "$(id); a,b");
    let o = run_with(&ex, cmd("echo,by name")).await;
    assert_eq!(o.status_details["stdout"], "by name", "{o:?}");
    let o = run_with(&ex, cmd("/bin/sh,-c,id")).await;
    assert_eq!(o.status, JobStatus::Rejected, "{o:?}");
}

#[tokio::test]
async fn a_handler_asks_for_the_reboot_with_the_documented_exit_code() {
    let d = handlers(&[
        ("reboot-me.sh", r#"exit "$GGJH_REBOOT_EXIT_CODE""#),
        ("ok.sh", "true"),
    ]);
    let marker = d.root.parent().unwrap().join("rebooted");
    let reboot = vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        format!("touch '{}'", marker.display()),
    ];
    let progress = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&progress);
    let ctx = |rx| RunContext {
        progress: {
            let seen = Arc::clone(&seen);
            Arc::new(move |p| seen.lock().unwrap().push(p))
        },
        ..RunContext::detached(rx)
    };
    let ex = executor_with(
        &d.root,
        Duration::from_secs(30),
        Permissions::default(),
        Some(reboot.clone()),
    );
    let (_tx, rx) = watch::channel(false);
    let doc = steps(json!([handler_step("Reboot", "reboot-me.sh", &[])]));
    let o = ex.run(job(doc.clone()), ctx(rx)).await;
    // The reboot command ran; the device did not go down within rebootWaitSeconds.
    assert!(marker.exists(), "the reboot command ran");
    assert!(progress
        .lock()
        .unwrap()
        .contains(&Progress::RebootRequested));
    assert_eq!(o.status, JobStatus::Failed);
    assert!(
        o.status_details["reason"].contains("did not reboot"),
        "{o:?}"
    );
    // Without rebootCommand the request is REJECTED naming the setting.
    let o = run(&d, doc).await;
    assert_eq!(o.status, JobStatus::Rejected, "{o:?}");
    assert!(o.status_details["reason"].contains("rebootCommand"));
    // Only the last step may ask.
    fs::remove_file(&marker).unwrap();
    let (_tx, rx) = watch::channel(false);
    let doc = steps(json!([
        handler_step("Reboot", "reboot-me.sh", &[]),
        handler_step("after", "ok.sh", &[])
    ]));
    let o = ex.run(job(doc), ctx(rx)).await;
    assert_eq!(o.status, JobStatus::Failed, "{o:?}");
    assert!(o.status_details["reason"].contains("last step"), "{o:?}");
    assert!(!marker.exists());
}
