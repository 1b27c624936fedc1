//! The `greengrass-jobs-handler` component process, as the nucleus runs it.
//!
//! Connects to the nucleus over IPC with the environment the nucleus gives, reads the component
//! configuration, subscribes to the Jobs and reconnect topics, reports RUNNING, and runs jobs
//! until SIGTERM (exit 0) or until the IPC connection is lost (exit 1, so that the nucleus
//! restarts the component with a fresh SVCUID token).

use greengrass_jobs_handler::config::{self, ENV_THING_NAME};
use greengrass_jobs_handler::exec::bridge::Bridge;
use greengrass_jobs_handler::exec::job_executor::JobExecutor;
use greengrass_jobs_handler::handler;
use greengrass_jobs_handler::ipc::model::ReportedLifecycleState;
use greengrass_jobs_handler::ipc::{ClientOptions, IpcClient};
use greengrass_jobs_handler::jobs::engine::Engine;
use greengrass_jobs_handler::journal::Journal;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    // Until the configuration is read: GGJH_LOG, else info.
    let level = std::env::var("GGJH_LOG").unwrap_or_else(|_| "info".to_owned());
    greengrass_jobs_handler::logging::init(&level, "text");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run())
}

async fn run() -> ExitCode {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        target = env!("GGJH_BUILD_TARGET"),
        "greengrass-jobs-handler starting"
    );
    // Orphans of handlers stay our descendants, so that a job's end can find and kill them.
    if !greengrass_jobs_handler::exec::containment::become_subreaper() {
        tracing::warn!("cannot become a child subreaper; processes of a job are still found by their run marker");
    }
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGTERM handler");
            return ExitCode::FAILURE;
        }
    };
    let client = match IpcClient::connect_from_env(ClientOptions::default()).await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot connect to the nucleus");
            return ExitCode::FAILURE;
        }
    };
    let configuration = match client.get_configuration(&[]).await {
        Ok(response) => response.value.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the component configuration; using defaults");
            serde_json::Value::Null
        }
    };
    let env_thing = std::env::var(ENV_THING_NAME).ok();
    let settings = match config::settings(&configuration, env_thing.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    if std::env::var_os("GGJH_LOG").is_none() {
        greengrass_jobs_handler::logging::configure(&settings.log_level, &settings.log_format);
    }
    let journal = match Journal::open(&settings.journal_path) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(path = %settings.journal_path.display(), error = %e, "cannot open the journal");
            return ExitCode::FAILURE;
        }
    };
    let bridge = match settings.bridge.clone() {
        None => None,
        Some(config) => match Bridge::start(client.clone(), config).await {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!(error = %e, "cannot subscribe to the worker reply topic; worker operations are unavailable");
                None
            }
        },
    };
    let executor = Arc::new(JobExecutor::new(settings.exec.clone(), bridge));
    let engine = Engine::new(settings.engine, fastrand::u64(..));
    let lifecycle = client.clone();
    let on_subscribed = async move {
        if let Err(e) = lifecycle
            .update_state(ReportedLifecycleState::Running)
            .await
        {
            tracing::warn!(error = %e, "cannot report RUNNING");
        }
    };
    let shutdown = async move {
        terminate.recv().await;
        tracing::info!("SIGTERM received, stopping");
    };
    match handler::run(
        client,
        engine,
        executor,
        journal,
        env_thing,
        on_subscribed,
        shutdown,
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stopping; the nucleus will restart the component");
            ExitCode::FAILURE
        }
    }
}
