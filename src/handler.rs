//! The jobs handler's tokio shell: connects the sans-IO [`Engine`] to IPC and an [`Executor`].
//!
//! Owns: subscribing to the engine's topics, feeding it messages, job results and time, carrying
//! out its actions (publish, run, cancel), and sleeping only until the engine's next deadline.
//! Must not know: the Jobs API (that is the engine's) or how jobs run (the executor's).

use crate::exec::Executor;
use crate::ipc::model::{IoTCoreMessage, Qos};
use crate::ipc::{IpcClient, IpcError};
use crate::jobs::engine::{Action, Engine, Input, JobOutcome, Millis};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Why the handler stopped.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("subscribing to {topic} failed: {source}")]
    Subscribe { topic: String, source: IpcError },
    #[error("the IPC connection to the nucleus was lost")]
    IpcLost,
}

struct Finished {
    job_id: String,
    execution_number: i64,
    outcome: JobOutcome,
}

/// Subscribes to every topic the engine needs; returns once all are accepted.
async fn subscribe_all(
    client: &IpcClient,
    topics: Vec<String>,
    messages: mpsc::UnboundedSender<(String, Vec<u8>)>,
) -> Result<(), HandlerError> {
    // All subscriptions in flight at once: one round trip, not one per topic.
    let requests = topics
        .iter()
        .map(|topic| client.subscribe_to_iot_core(topic, Qos::AtLeastOnce));
    let results = futures_util::future::join_all(requests).await;
    for (topic, result) in topics.into_iter().zip(results) {
        let mut subscription = result.map_err(|source| HandlerError::Subscribe {
            topic: topic.clone(),
            source,
        })?;
        let messages = messages.clone();
        tokio::spawn(async move {
            while let Some(IoTCoreMessage::Message(m)) = subscription.recv().await {
                let payload = m.payload().to_vec();
                if messages.send((m.topic_name, payload)).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

/// Runs the handler until `shutdown` resolves (Ok) or IPC is lost (Err).
pub async fn run(
    client: IpcClient,
    mut engine: Engine,
    executor: Arc<dyn Executor>,
    on_subscribed: impl Future<Output = ()>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HandlerError> {
    let origin = Instant::now();
    let now = move || -> Millis { u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX) };
    let (messages_tx, mut messages) = mpsc::unbounded_channel();
    subscribe_all(&client, engine.subscriptions(), messages_tx).await?;
    tracing::info!(thing = %engine.config().thing_name, reconnect_topic = %engine.config().reconnect_topic, "subscribed to the Jobs topics and the reconnect topic");
    on_subscribed.await;

    let (finished_tx, mut finished) = mpsc::unbounded_channel::<Finished>();
    let mut running: HashMap<(String, i64), watch::Sender<bool>> = HashMap::new();
    let mut actions = engine.handle(now(), Input::Started);
    tokio::pin!(shutdown);
    loop {
        for action in actions.drain(..) {
            match action {
                Action::Publish { topic, payload } => {
                    if let Err(e) = client
                        .publish_to_iot_core(&topic, Qos::AtLeastOnce, payload)
                        .await
                    {
                        // The engine's response timeout retries the request.
                        tracing::warn!(%topic, error = %e, "publish failed");
                    }
                }
                Action::Run(run) => {
                    let (cancel_tx, cancel_rx) = watch::channel(false);
                    running.insert((run.job_id.clone(), run.execution_number), cancel_tx);
                    let finished_tx = finished_tx.clone();
                    let work = executor.run(run.clone(), cancel_rx);
                    tokio::spawn(async move {
                        let outcome = work.await;
                        let _ = finished_tx.send(Finished {
                            job_id: run.job_id,
                            execution_number: run.execution_number,
                            outcome,
                        });
                    });
                }
                Action::Cancel {
                    job_id,
                    execution_number,
                    reason,
                } => {
                    tracing::warn!(%job_id, %reason, "canceling the running job");
                    if let Some(cancel) = running.remove(&(job_id, execution_number)) {
                        let _ = cancel.send(true);
                    }
                }
            }
        }
        let deadline = engine
            .next_deadline()
            .map(|d| origin + std::time::Duration::from_millis(d));
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                for cancel in running.values() {
                    let _ = cancel.send(true);
                }
                return Ok(());
            }
            _ = client.closed() => return Err(HandlerError::IpcLost),
            Some(done) = finished.recv() => {
                running.remove(&(done.job_id.clone(), done.execution_number));
                actions = engine.handle(now(), Input::JobFinished {
                    job_id: &done.job_id,
                    execution_number: done.execution_number,
                    outcome: done.outcome,
                });
            }
            message = messages.recv() => {
                let Some((topic, payload)) = message else { return Err(HandlerError::IpcLost) };
                actions = engine.handle(now(), Input::Message { topic: &topic, payload: &payload });
            }
            // A timer exists only while the engine has a deadline.
            _ = sleep_until(deadline) => {
                actions = engine.handle(now(), Input::Tick);
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
