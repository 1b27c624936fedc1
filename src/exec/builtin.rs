//! Built-in operations, for documents of the compact form `{"operation": "<name>", ...}`.
//!
//! Owns: `echo` (returns its arguments as statusDetails), `add` (returns `a + b`, a
//! result-returning operation), `sleep` (waits `seconds`, cancellable) and `fail` (fails with
//! `message`). Bad arguments are REJECTED with a reason. `reboot` lives in the job executor,
//! which owns the reboot command. Must not know: the Jobs API or IPC.

use super::{outcome, rejected};
use crate::jobs::job::JobOutcome;
use crate::jobs::messages::{JobStatus, StatusDetails};
use serde_json::{Map, Value};
use std::time::Duration;
use tokio::sync::watch;

/// Longest `sleep` a document may ask for.
pub const MAX_SLEEP_SECONDS: f64 = 3600.0;
/// Names of the built-in operations.
pub const OPERATIONS: [&str; 4] = ["echo", "add", "sleep", "fail"];

fn number(arguments: &Map<String, Value>, name: &str) -> Result<f64, String> {
    match arguments.get(name) {
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| format!("\"{name}\" is not a finite number")),
        Some(other) => Err(format!("\"{name}\" must be a number, found {other}")),
        None => Err(format!("\"{name}\" is missing")),
    }
}

fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Runs built-in `operation`; `None` when there is no such built-in.
pub async fn run(
    operation: &str,
    arguments: &Map<String, Value>,
    cancel: watch::Receiver<bool>,
) -> Option<JobOutcome> {
    Some(match operation {
        "echo" => {
            let mut details = StatusDetails::new();
            for (k, v) in arguments {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                details.insert(k.clone(), text);
            }
            JobOutcome {
                status: JobStatus::Succeeded,
                status_details: details,
            }
        }
        "add" => match (number(arguments, "a"), number(arguments, "b")) {
            (Ok(a), Ok(b)) => outcome(JobStatus::Succeeded, &[("result", format_number(a + b))]),
            (Err(e), _) | (_, Err(e)) => rejected(format!("add: {e}")),
        },
        "sleep" => {
            let seconds = match number(arguments, "seconds") {
                Ok(s) if (0.0..=MAX_SLEEP_SECONDS).contains(&s) => s,
                Ok(_) => {
                    return Some(rejected(format!(
                        "sleep: \"seconds\" must be 0 to {MAX_SLEEP_SECONDS}"
                    )))
                }
                Err(e) => return Some(rejected(format!("sleep: {e}"))),
            };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(seconds)) => {
                    outcome(JobStatus::Succeeded, &[("slept", format_number(seconds))])
                }
                _ = super::canceled(cancel.clone()) => outcome(JobStatus::Failed, &[("reason", "canceled".to_owned())]),
            }
        }
        "fail" => {
            let message = arguments
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the job asked to fail")
                .to_owned();
            outcome(JobStatus::Failed, &[("reason", message)])
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn call(doc: Value) -> Option<JobOutcome> {
        let mut args = doc.as_object().unwrap().clone();
        let op = args.remove("operation").unwrap();
        let (_tx, rx) = watch::channel(false);
        run(op.as_str().unwrap(), &args, rx).await
    }

    #[tokio::test]
    async fn operations() {
        let o = call(json!({"operation": "add", "a": 2, "b": 3.5}))
            .await
            .unwrap();
        assert_eq!(
            (o.status, o.status_details["result"].as_str()),
            (JobStatus::Succeeded, "5.5")
        );
        let o = call(json!({"operation": "add", "a": 2, "b": 3}))
            .await
            .unwrap();
        assert_eq!(o.status_details["result"], "5");
        let o = call(json!({"operation": "add", "a": "2"})).await.unwrap();
        assert_eq!(o.status, JobStatus::Rejected);
        let o = call(json!({"operation": "echo", "msg": "hi", "n": 1}))
            .await
            .unwrap();
        assert_eq!(
            o.status_details,
            [
                ("msg".to_owned(), "hi".to_owned()),
                ("n".to_owned(), "1".to_owned())
            ]
            .into()
        );
        let o = call(json!({"operation": "fail", "message": "nope"}))
            .await
            .unwrap();
        assert_eq!(
            (o.status, o.status_details["reason"].as_str()),
            (JobStatus::Failed, "nope")
        );
        assert!(call(json!({"operation": "teleport"})).await.is_none());
        let o = call(json!({"operation": "sleep", "seconds": 1e9}))
            .await
            .unwrap();
        assert_eq!(o.status, JobStatus::Rejected);
    }

    #[tokio::test]
    async fn sleep_is_cancellable() {
        let (tx, rx) = watch::channel(false);
        let args = json!({"seconds": 600}).as_object().unwrap().clone();
        let task = tokio::spawn(async move { run("sleep", &args, rx).await });
        tx.send(true).unwrap();
        let o = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(o.status, JobStatus::Failed);
    }
}
