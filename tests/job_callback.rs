//! The job callback function of `recipe/cloud/job-callback.yaml`: its inline code, run by the
//! Python interpreter of `$GGJH_PYTHON` (a venv with boto3 and PyYAML, as `.ci/run` makes),
//! answers Step Functions for job execution events (`tests/peers/job_callback.py`).

use std::path::Path;
use std::process::Command;

#[test]
fn the_callback_function_answers_the_waiting_task() {
    let python = std::env::var("GGJH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/job_callback.py");
    let output = Command::new(&python)
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "job_callback.py failed (needs boto3 and PyYAML: run `bash .ci/run` or set GGJH_PYTHON)\n{stderr}"
    );
    assert!(stderr.contains("Ran 5 tests"), "{stderr}");
}
