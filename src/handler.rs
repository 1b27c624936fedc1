//! The jobs handler's tokio shell: connects the sans-IO [`Engine`] to IPC, the [`Executor`] and
//! the [`Journal`].
//!
//! Owns: subscribing to the engine's topics (and to the core's IoT Core connection status where
//! the nucleus offers it), feeding it messages, connection changes, job results and time,
//! carrying out its actions (publish, run, cancel, forget, subscribe, resubscribe, exit),
//! recording each job durably before it runs,
//! recovering what the journal holds at start-up, and sleeping only until the engine's next
//! deadline. Must not know: the Jobs API (the engine's) or how jobs run (the executor's).

use crate::exec::{Executor, Progress, ProgressSink, RunContext};
use crate::ipc::model::{
    ConfigurationUpdateEvents, Empty, IoTCoreMessage, Qos, SubscribeToIoTCoreConnectionStatus,
};
use crate::ipc::Subscription;
use crate::ipc::{IpcClient, IpcError};
use crate::jobs::engine::{
    Action, Engine, EngineConfig, Input, JobOutcome, JobRun, Millis, Record,
};
use crate::journal::{self, InFlightJob, Journal};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Why the handler stopped.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("subscribing to {topic} failed: {source}")]
    Subscribe { topic: String, source: IpcError },
    #[error("the IPC connection to the nucleus was lost")]
    IpcLost,
    #[error("the nucleus ended the subscription to {0}; restarting rather than missing messages")]
    SubscriptionEnded(String),
    #[error("IoT Core messages stopped reaching the component: {0}")]
    Deaf(String),
}

/// What a subscription forwards to the main loop.
enum Incoming {
    Message {
        topic: String,
        payload: Vec<u8>,
    },
    /// The subscription ended while the connection stayed up.
    Ended {
        topic: String,
    },
    /// SubscribeToIoTCoreConnectionStatus: the core's IoT Core connection is up or down.
    Connection {
        connected: bool,
    },
    /// The nucleus does not offer SubscribeToIoTCoreConnectionStatus (refused, or the stream
    /// ended): the reconnect rule is what tells of a reconnect.
    ConnectionStatusUnavailable {
        why: String,
    },
}

/// Watches the core's IoT Core connection where the nucleus offers it, in its own task so that
/// it delays none of the other subscriptions. Each status goes to the main loop as it comes;
/// a refusal (an older nucleus) or the stream's end goes once.
fn watch_connection_status(client: IpcClient, messages: mpsc::UnboundedSender<Incoming>) {
    tokio::spawn(async move {
        let why = match client
            .subscribe::<SubscribeToIoTCoreConnectionStatus>(&Empty {})
            .await
        {
            Ok((_, mut events)) => {
                // The current status comes first, then every change.
                while let Some(event) = events.recv().await {
                    let connected = event.connected();
                    if messages.send(Incoming::Connection { connected }).is_err() {
                        return;
                    }
                }
                "the nucleus ended the stream".to_owned()
            }
            Err(e) => e.to_string(),
        };
        let _ = messages.send(Incoming::ConnectionStatusUnavailable { why });
    });
}

struct Finished {
    job_id: String,
    execution_number: i64,
    outcome: JobOutcome,
}

type SharedJournal = Arc<Mutex<Journal>>;

fn lock(journal: &SharedJournal) -> MutexGuard<'_, Journal> {
    journal.lock().unwrap_or_else(|p| p.into_inner())
}

/// The component's IoT Core subscriptions and the tasks that forward their messages.
///
/// Call contract: [`IotSubscriptions::add`] returns once every filter is accepted;
/// [`IotSubscriptions::renew`] ends every stream first (awaited, so the nucleus lets its filters
/// go before they are asked for again) and then subscribes afresh. A stream ended by `renew`
/// reports nothing; one the nucleus ends reports [`Incoming::Ended`].
struct IotSubscriptions {
    forwarders: Vec<JoinHandle<()>>,
    messages: mpsc::UnboundedSender<Incoming>,
}

impl IotSubscriptions {
    fn new(messages: mpsc::UnboundedSender<Incoming>) -> Self {
        Self {
            forwarders: Vec::new(),
            messages,
        }
    }

    async fn add(&mut self, client: &IpcClient, topics: Vec<String>) -> Result<(), HandlerError> {
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
            let messages = self.messages.clone();
            self.forwarders.push(tokio::spawn(async move {
                while let Some(IoTCoreMessage::Message(m)) = subscription.recv().await {
                    let payload = m.payload().to_vec();
                    let message = Incoming::Message {
                        topic: m.topic_name,
                        payload,
                    };
                    if messages.send(message).is_err() {
                        return;
                    }
                }
                let _ = messages.send(Incoming::Ended { topic });
            }));
        }
        Ok(())
    }

    async fn renew(&mut self, client: &IpcClient, topics: Vec<String>) -> Result<(), HandlerError> {
        for forwarder in self.forwarders.drain(..) {
            forwarder.abort();
            // Dropping the subscription (inside the task) asks the nucleus to end the stream.
            let _ = forwarder.await;
        }
        self.add(client, topics).await
    }
}

/// Tells the engine what the journal says about every job left in it, killing what is left of
/// an interrupted run first.
fn recover_from_journal(engine: &mut Engine, journal: &Journal, now: Millis) -> Vec<Action> {
    let boot = journal::boot_id();
    let mut actions = engine.handle(
        now,
        Input::Journal {
            installation: journal.installation(),
            intact: journal.intact(),
        },
    );
    for entry in journal.jobs() {
        let alive = entry.pid != 0 && crate::exec::process::process_alive(entry.pid);
        let recovery = journal::recover(entry, &boot, alive);
        if let Some(pgid) = recovery.kill_process_group {
            tracing::warn!(job_id = %entry.job_id, pgid, "killing what is left of the interrupted run");
            crate::exec::process::kill_process_group(pgid);
        }
        // Survivors of the run, whatever their group or session, carry its marker.
        if !entry.run_marker.is_empty() && entry.boot_id == boot {
            let killed = crate::exec::containment::kill_run(&entry.run_marker, None);
            if killed > 0 {
                tracing::warn!(job_id = %entry.job_id, killed, "killed survivors of the interrupted run");
            }
        }
        tracing::warn!(
            job_id = %entry.job_id,
            execution_number = entry.execution_number,
            recovered = ?recovery.recovered,
            "journal: the job was in flight when the handler stopped"
        );
        actions.extend(engine.handle(
            now,
            Input::Recovered {
                job_id: &entry.job_id,
                execution_number: entry.execution_number,
                recovery: recovery.recovered,
            },
        ));
    }
    actions
}

/// Writes what the engine asks to be journaled before its next action.
fn record(journal: &SharedJournal, record: Record) {
    let result = match &record {
        Record::Starting {
            job_id,
            execution_number,
            marker,
        } => lock(journal).begin(InFlightJob::starting(
            job_id,
            *execution_number,
            marker,
            crate::clock::epoch_ms(),
            journal::boot_id(),
        )),
        Record::Finished {
            job_id,
            execution_number,
            outcome,
        } => lock(journal).update(job_id, *execution_number, |entry| entry.finish(outcome)),
    };
    if let Err(e) = result {
        tracing::error!(?record, error = %e, "journal write failed");
    }
}

/// A step's progress, for the engine to report to the cloud.
type StepProgress = (String, i64, crate::jobs::messages::StatusDetails);

/// Progress of one job goes into its journal entry, synchronously (before the side effect),
/// and each new step is passed on to be reported.
fn progress_sink(
    journal: SharedJournal,
    job_id: String,
    execution_number: i64,
    steps: mpsc::UnboundedSender<StepProgress>,
) -> ProgressSink {
    Arc::new(move |progress: Progress| {
        if let Progress::Step { index, total, name } = &progress {
            let details = [
                ("step".to_owned(), format!("{}/{total}", index + 1)),
                ("stepName".to_owned(), name.clone()),
            ]
            .into();
            let _ = steps.send((job_id.clone(), execution_number, details));
        }
        let result = lock(&journal).update(&job_id, execution_number, |entry| match progress {
            Progress::Step { index, .. } => {
                entry.step = index;
                entry.pid = 0;
            }
            Progress::Spawned { pid } => entry.pid = pid,
            Progress::RebootRequested => entry.reboot_requested = true,
        });
        if let Err(e) = result {
            tracing::error!(job_id = %job_id, error = %e, "journal write failed");
        }
    })
}

/// The running jobs and how to stop them.
struct Running {
    cancels: HashMap<(String, i64), watch::Sender<bool>>,
    finished_tx: mpsc::UnboundedSender<Finished>,
    steps_tx: mpsc::UnboundedSender<StepProgress>,
}

impl Running {
    fn start(&mut self, run: JobRun, executor: &Arc<dyn Executor>, journal: &SharedJournal) {
        let start_marker = lock(journal)
            .jobs()
            .iter()
            .find(|j| j.job_id == run.job_id && j.execution_number == run.execution_number)
            .map(|j| j.start_marker.clone())
            .unwrap_or_default();
        let run_marker = crate::exec::containment::new_run_marker();
        let entry = InFlightJob {
            start_marker,
            run_marker: run_marker.clone(),
            job_id: run.job_id.clone(),
            execution_number: run.execution_number,
            version_number: run.version_number,
            started_at_ms: crate::clock::epoch_ms(),
            updated_at_ms: crate::clock::epoch_ms(),
            work: run.document.label(),
            boot_id: journal::boot_id(),
            ..InFlightJob::default()
        };
        // Durable before the work starts: after a crash the journal tells the truth.
        if let Err(e) = lock(journal).begin(entry) {
            tracing::error!(job_id = %run.job_id, error = %e, "journal write failed; not running the job");
            let _ = self.finished_tx.send(Finished {
                job_id: run.job_id,
                execution_number: run.execution_number,
                outcome: crate::exec::failed(format!(
                    "the device could not record the job durably: {e}"
                )),
            });
            return;
        }
        let (cancel_tx, cancel_rx) = watch::channel(false);
        self.cancels
            .insert((run.job_id.clone(), run.execution_number), cancel_tx);
        let ctx = RunContext {
            run_marker: run_marker.clone(),
            cancel: cancel_rx,
            progress: progress_sink(
                Arc::clone(journal),
                run.job_id.clone(),
                run.execution_number,
                self.steps_tx.clone(),
            ),
        };
        let work = executor.run(run.clone(), ctx);
        let finished_tx = self.finished_tx.clone();
        tokio::spawn(async move {
            let outcome = work.await;
            // Whatever the work was, nothing it started outlives it.
            crate::exec::containment::kill_run(&run_marker, None);
            let _ = finished_tx.send(Finished {
                job_id: run.job_id,
                execution_number: run.execution_number,
                outcome,
            });
        });
    }

    fn cancel(&mut self, job_id: String, execution_number: i64) {
        if let Some(cancel) = self.cancels.remove(&(job_id, execution_number)) {
            let _ = cancel.send(true);
        }
    }
}

/// Reads the configuration again after an update and applies what can change at run time.
async fn apply_configuration(
    client: &IpcClient,
    env_thing: Option<&str>,
    executor: &Arc<dyn Executor>,
) -> Option<EngineConfig> {
    let value = match client.get_configuration(&[]).await {
        Ok(r) => r.value.unwrap_or_default(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the updated configuration; keeping the current one");
            return None;
        }
    };
    let settings = match crate::config::settings(&value, env_thing) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "updated configuration unusable; keeping the current one");
            return None;
        }
    };
    if std::env::var_os("GGJH_LOG").is_none() {
        crate::logging::configure(&settings.log_level, &settings.log_format);
    }
    executor.reconfigure(&settings.exec);
    Some(settings.engine)
}

async fn next_config_event(
    events: &mut Option<Subscription<ConfigurationUpdateEvents>>,
) -> Option<()> {
    match events {
        Some(e) => e.recv().await.map(|_| ()),
        None => std::future::pending().await,
    }
}

/// Runs the handler until `shutdown` resolves (Ok) or IPC is lost (Err). `env_thing` is the
/// thing name from the environment, used when configuration updates are read again.
pub async fn run(
    client: IpcClient,
    mut engine: Engine,
    executor: Arc<dyn Executor>,
    journal: Journal,
    env_thing: Option<String>,
    on_subscribed: impl Future<Output = ()>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HandlerError> {
    let origin = Instant::now();
    let now = move || -> Millis { u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX) };
    let mut actions = recover_from_journal(&mut engine, &journal, now());
    let journal: SharedJournal = Arc::new(Mutex::new(journal));
    let (messages_tx, mut messages) = mpsc::unbounded_channel();
    let mut subscriptions = IotSubscriptions::new(messages_tx.clone());
    watch_connection_status(client.clone(), messages_tx.clone());
    subscriptions.add(&client, engine.subscriptions()).await?;
    let mut config_events = match client.subscribe_to_configuration_update(&[]).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch configuration updates; changes need a restart");
            None
        }
    };
    tracing::info!(
        thing = %engine.config().thing_name,
        reconnect_topic = %engine.config().reconnect_topic,
        "subscribed to the Jobs topics and the reconnect topic"
    );
    on_subscribed.await;

    let (finished_tx, mut finished) = mpsc::unbounded_channel::<Finished>();
    let (steps_tx, mut steps) = mpsc::unbounded_channel::<StepProgress>();
    let mut running = Running {
        cancels: HashMap::new(),
        finished_tx,
        steps_tx,
    };
    actions.extend(engine.handle(now(), Input::Started));
    tokio::pin!(shutdown);
    loop {
        for action in actions.drain(..) {
            match action {
                Action::Record(r) => record(&journal, r),
                Action::Publish { topic, payload } => {
                    if let Err(e) = client
                        .publish_to_iot_core(&topic, Qos::AtLeastOnce, payload)
                        .await
                    {
                        // The engine's response timeout retries the request.
                        tracing::warn!(%topic, error = %e, "publish failed");
                    }
                }
                Action::Run(run) => running.start(run, &executor, &journal),
                Action::Cancel {
                    job_id,
                    execution_number,
                    reason,
                } => {
                    tracing::warn!(%job_id, %reason, "canceling the running job");
                    running.cancel(job_id, execution_number);
                }
                Action::Forget {
                    job_id,
                    execution_number,
                } => {
                    if let Err(e) = lock(&journal).remove(&job_id, execution_number) {
                        tracing::error!(%job_id, error = %e, "journal write failed");
                    }
                }
                Action::Subscribe { topics } => {
                    if let Err(e) = subscriptions.add(&client, topics).await {
                        tracing::error!(error = %e, "cannot subscribe to the new reconnect topic");
                    }
                }
                Action::Resubscribe => {
                    tracing::warn!("dropping and re-creating every IoT Core subscription");
                    subscriptions.renew(&client, engine.subscriptions()).await?;
                    tracing::info!("IoT Core subscriptions re-created");
                }
                Action::Exit { reason } => {
                    stop_running(&mut running, &mut finished).await;
                    return Err(HandlerError::Deaf(reason));
                }
            }
        }
        let deadline = engine
            .next_deadline()
            .map(|d| origin + Duration::from_millis(d));
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                stop_running(&mut running, &mut finished).await;
                return Ok(());
            }
            _ = client.closed() => return Err(HandlerError::IpcLost),
            event = next_config_event(&mut config_events) => {
                if event.is_none() {
                    config_events = None;
                    continue;
                }
                // One key per event: let a burst arrive, then read the configuration once.
                tokio::time::sleep(Duration::from_millis(20)).await;
                while let Some(e) = config_events.as_mut() {
                    match tokio::time::timeout(Duration::ZERO, e.recv()).await {
                        Ok(Some(_)) => continue,
                        _ => break,
                    }
                }
                tracing::info!("configuration updated");
                if let Some(config) = apply_configuration(&client, env_thing.as_deref(), &executor).await {
                    actions = engine.handle(now(), Input::Reconfigure(config));
                }
            }
            Some(done) = finished.recv() => {
                running.cancels.remove(&(done.job_id.clone(), done.execution_number));
                actions = engine.handle(now(), Input::JobFinished {
                    job_id: &done.job_id,
                    execution_number: done.execution_number,
                    outcome: done.outcome,
                });
            }
            Some((job_id, execution_number, status_details)) = steps.recv() => {
                actions = engine.handle(now(), Input::Progress { job_id: &job_id, execution_number, status_details });
            }
            message = messages.recv() => match message {
                Some(Incoming::Message { topic, payload }) => {
                    actions = engine.handle(now(), Input::Message { topic: &topic, payload: &payload });
                }
                Some(Incoming::Connection { connected }) => {
                    actions = engine.handle(now(), Input::IotConnection { connected });
                }
                Some(Incoming::ConnectionStatusUnavailable { why }) => {
                    if client.is_closed() {
                        return Err(HandlerError::IpcLost);
                    }
                    tracing::info!(reason = %why, "SubscribeToIoTCoreConnectionStatus is not available on this nucleus; relying on the reconnect topic to learn of reconnects");
                    actions = engine.handle(now(), Input::IotConnectionUnknown);
                }
                Some(Incoming::Ended { topic }) => {
                    // Give a closing connection the chance to be seen as such.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if client.is_closed() {
                        return Err(HandlerError::IpcLost);
                    }
                    return Err(HandlerError::SubscriptionEnded(topic));
                }
                None => return Err(HandlerError::IpcLost),
            },
            // A timer exists only while the engine has a deadline.
            _ = sleep_until(deadline) => {
                actions = engine.handle(now(), Input::Tick);
            }
        }
    }
}

/// Stops the work (its process trees are killed); the journal keeps the entries, so the next
/// start reports these jobs honestly.
async fn stop_running(running: &mut Running, finished: &mut mpsc::UnboundedReceiver<Finished>) {
    let stopping = running.cancels.len();
    for cancel in running.cancels.values() {
        let _ = cancel.send(true);
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        for _ in 0..stopping {
            if finished.recv().await.is_none() {
                break;
            }
        }
    })
    .await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
