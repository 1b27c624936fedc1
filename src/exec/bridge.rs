//! The IPC bridge: jobs served by other Greengrass components over local pub/sub.
//!
//! Owns: the request/reply protocol with worker components — a request published on
//! `<requestPrefix>/<operation>` carrying a correlation id and a reply topic, the reply awaited
//! on that topic with a time limit, a cancel message when the cloud ends the job — and checking
//! replies. Must not know: the Jobs API or the engine.
//!
//! Request (JSON): `{"correlationId", "jobId", "executionNumber", "thingName", "operation",
//! "document", "replyTopic"}`. Reply (JSON, on `replyTopic`): `{"correlationId", "status":
//! "SUCCEEDED"|"FAILED"|"REJECTED", "statusDetails": {"key": "value"}}`. Cancel (on the request
//! topic): `{"correlationId", "cancel": true}`.

use super::{failed, RunContext};
use crate::ipc::model::{PublishMessage, SubscriptionResponseMessage};
use crate::ipc::{IpcClient, IpcError};
use crate::jobs::job::{JobOutcome, JobRun};
use crate::jobs::messages::{JobStatus, StatusDetails};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Operations served by workers.
    pub operations: Vec<String>,
    pub request_prefix: String,
    pub reply_topic: String,
    /// How long a worker may take.
    pub timeout: Duration,
    pub thing_name: String,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// A running bridge (subscribed to its reply topic).
pub struct Bridge {
    client: IpcClient,
    config: BridgeConfig,
    pending: Pending,
}

impl Bridge {
    /// Subscribes to the reply topic and starts routing replies.
    pub async fn start(client: IpcClient, config: BridgeConfig) -> Result<Arc<Self>, IpcError> {
        let mut replies = client.subscribe_to_topic(&config.reply_topic, None).await?;
        let pending: Pending = Arc::default();
        let router = Arc::clone(&pending);
        tokio::spawn(async move {
            while let Some(event) = replies.recv().await {
                let value = match event {
                    SubscriptionResponseMessage::JsonMessage(m) => m.message.unwrap_or(Value::Null),
                    SubscriptionResponseMessage::BinaryMessage(m) => {
                        let bytes = m.message.map(|b| b.0).unwrap_or_default();
                        match serde_json::from_slice(&bytes) {
                            Ok(v) => v,
                            Err(e) => {
                                tracing::warn!(error = %e, "worker reply is not JSON; ignored");
                                continue;
                            }
                        }
                    }
                };
                let Some(id) = value
                    .get("correlationId")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                else {
                    tracing::warn!("worker reply without correlationId ignored");
                    continue;
                };
                let waiter = router.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(value);
                    }
                    None => {
                        tracing::debug!(correlation_id = %id, "reply for no pending request ignored")
                    }
                }
            }
        });
        Ok(Arc::new(Self {
            client,
            config,
            pending,
        }))
    }

    pub fn serves(&self, operation: &str) -> bool {
        self.config.operations.iter().any(|o| o == operation)
    }

    fn request_topic(&self, operation: &str) -> String {
        format!(
            "{}/{operation}",
            self.config.request_prefix.trim_end_matches('/')
        )
    }

    /// Sends the job to the worker of `operation` and waits for its reply.
    pub async fn dispatch(
        &self,
        run: &JobRun,
        operation: &str,
        document: &Value,
        ctx: &RunContext,
    ) -> JobOutcome {
        let correlation_id = format!(
            "{}:{}:{:08x}",
            run.job_id,
            run.execution_number,
            fastrand::u32(..)
        );
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(correlation_id.clone(), tx);
        let topic = self.request_topic(operation);
        let request = json!({
            "correlationId": correlation_id,
            "jobId": run.job_id,
            "executionNumber": run.execution_number,
            "thingName": self.config.thing_name,
            "operation": operation,
            "document": document,
            "replyTopic": self.config.reply_topic,
        });
        tracing::info!(%topic, correlation_id = %correlation_id, "dispatching the job to a worker component");
        if let Err(e) = self
            .client
            .publish_to_topic(&topic, PublishMessage::json(request))
            .await
        {
            self.forget(&correlation_id);
            return failed(format!("could not reach the worker on {topic}: {e}"));
        }
        let cancel = ctx.cancel.clone();
        let result = tokio::select! {
            reply = rx => reply.ok(),
            _ = tokio::time::sleep(self.config.timeout) => {
                self.forget(&correlation_id);
                return failed(format!("the worker on {topic} did not reply within {}s", self.config.timeout.as_secs()));
            }
            _ = super::canceled(cancel.clone()) => {
                self.forget(&correlation_id);
                let message = PublishMessage::json(json!({"correlationId": correlation_id, "cancel": true}));
                let _ = self.client.publish_to_topic(&topic, message).await;
                return failed("canceled");
            }
        };
        match result {
            Some(reply) => outcome_from_reply(&reply),
            None => failed("the bridge stopped before the worker replied"),
        }
    }

    fn forget(&self, id: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// Checks a worker's reply; an invalid one fails the job with the reason.
pub fn outcome_from_reply(reply: &Value) -> JobOutcome {
    let status = match reply.get("status").and_then(Value::as_str) {
        Some("SUCCEEDED") => JobStatus::Succeeded,
        Some("FAILED") => JobStatus::Failed,
        Some("REJECTED") => JobStatus::Rejected,
        other => return failed(format!("the worker sent an invalid status {other:?}")),
    };
    let mut details = StatusDetails::new();
    match reply.get("statusDetails") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                details.insert(
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                );
            }
        }
        Some(_) => return failed("the worker sent statusDetails that are not an object"),
    }
    JobOutcome {
        status,
        status_details: details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_checked() {
        let ok = outcome_from_reply(
            &json!({"correlationId": "c", "status": "SUCCEEDED", "statusDetails": {"result": "7", "n": 1}}),
        );
        assert_eq!(ok.status, JobStatus::Succeeded);
        assert_eq!(ok.status_details["n"], "1");
        assert_eq!(
            outcome_from_reply(&json!({"status": "IN_PROGRESS"})).status,
            JobStatus::Failed
        );
        assert_eq!(
            outcome_from_reply(&json!({"status": "FAILED", "statusDetails": []})).status,
            JobStatus::Failed
        );
        assert_eq!(
            outcome_from_reply(&json!({"status": "REJECTED"})).status,
            JobStatus::Rejected
        );
    }
}
