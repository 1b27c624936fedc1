//! Built-in operations, for documents of the compact form `{"operation": "<name>", ...}`.
//!
//! Owns: `echo` (returns its arguments as statusDetails), `add` (returns `a + b`, the seed's
//! result-returning worker), `sleep` (waits `seconds`, cancellable) and `fail` (fails with
//! `message`). Unknown operations and bad arguments are REJECTED with a reason.
//! Must not know: the Jobs API or IPC.

use super::{Executor, JobFuture};
use crate::jobs::engine::{JobOutcome, JobRun};
use crate::jobs::messages::{JobStatus, StatusDetails};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::watch;

/// Longest `sleep` a document may ask for.
pub const MAX_SLEEP_SECONDS: f64 = 3600.0;

/// The built-in operations.
#[derive(Debug, Default, Clone)]
pub struct Builtin;

fn outcome(status: JobStatus, details: &[(&str, String)]) -> JobOutcome {
    JobOutcome {
        status,
        status_details: details
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }
}

fn rejected(reason: String) -> JobOutcome {
    outcome(JobStatus::Rejected, &[("reason", reason)])
}

fn number(run: &JobRun, name: &str) -> Result<f64, String> {
    match run.document.arguments.get(name) {
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

impl Executor for Builtin {
    fn run(&self, run: JobRun, mut cancel: watch::Receiver<bool>) -> JobFuture {
        Box::pin(async move {
            match run.document.operation.as_str() {
                "echo" => {
                    let mut details = StatusDetails::new();
                    for (k, v) in &run.document.arguments {
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
                "add" => match (number(&run, "a"), number(&run, "b")) {
                    (Ok(a), Ok(b)) => {
                        outcome(JobStatus::Succeeded, &[("result", format_number(a + b))])
                    }
                    (Err(e), _) | (_, Err(e)) => rejected(format!("add: {e}")),
                },
                "sleep" => {
                    let seconds = match number(&run, "seconds") {
                        Ok(s) if (0.0..=MAX_SLEEP_SECONDS).contains(&s) => s,
                        Ok(_) => {
                            return rejected(format!(
                                "sleep: \"seconds\" must be 0 to {MAX_SLEEP_SECONDS}"
                            ))
                        }
                        Err(e) => return rejected(format!("sleep: {e}")),
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs_f64(seconds)) => {
                            outcome(JobStatus::Succeeded, &[("slept", format_number(seconds))])
                        }
                        _ = cancel.wait_for(|c| *c) => outcome(JobStatus::Failed, &[("reason", "canceled".to_owned())]),
                    }
                }
                "fail" => {
                    let message = run
                        .document
                        .arguments
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("the job asked to fail")
                        .to_owned();
                    outcome(JobStatus::Failed, &[("reason", message)])
                }
                other => rejected(format!("unknown operation {other:?}")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::document::{classify, Ownership};
    use serde_json::json;

    async fn run(doc: Value) -> JobOutcome {
        let Ownership::Ours(document) = classify(Some(&doc)) else {
            panic!("ours")
        };
        let (_tx, rx) = watch::channel(false);
        Builtin
            .run(
                JobRun {
                    job_id: "j".into(),
                    execution_number: 1,
                    document,
                },
                rx,
            )
            .await
    }

    #[tokio::test]
    async fn operations() {
        let o = run(json!({"operation": "add", "a": 2, "b": 3.5})).await;
        assert_eq!(
            (o.status, o.status_details["result"].as_str()),
            (JobStatus::Succeeded, "5.5")
        );
        let o = run(json!({"operation": "add", "a": 2, "b": 3})).await;
        assert_eq!(o.status_details["result"], "5");
        let o = run(json!({"operation": "add", "a": "2"})).await;
        assert_eq!(o.status, JobStatus::Rejected);
        let o = run(json!({"operation": "echo", "msg": "hi", "n": 1})).await;
        assert_eq!(
            o.status_details,
            [
                ("msg".to_owned(), "hi".to_owned()),
                ("n".to_owned(), "1".to_owned())
            ]
            .into()
        );
        let o = run(json!({"operation": "fail", "message": "nope"})).await;
        assert_eq!(
            (o.status, o.status_details["reason"].as_str()),
            (JobStatus::Failed, "nope")
        );
        let o = run(json!({"operation": "teleport"})).await;
        assert_eq!(o.status, JobStatus::Rejected);
        let o = run(json!({"operation": "sleep", "seconds": 1e9})).await;
        assert_eq!(o.status, JobStatus::Rejected);
    }

    #[tokio::test]
    async fn sleep_is_cancellable() {
        let Ownership::Ours(document) =
            classify(Some(&json!({"operation": "sleep", "seconds": 600})))
        else {
            panic!()
        };
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(Builtin.run(
            JobRun {
                job_id: "j".into(),
                execution_number: 1,
                document,
            },
            rx,
        ));
        tx.send(true).unwrap();
        let o = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(o.status, JobStatus::Failed);
    }
}
