//! The `greengrass-jobs-handler` component process, as the nucleus runs it.
//!
//! Connects to the nucleus over IPC with the environment the nucleus gives, reports RUNNING,
//! and runs until SIGTERM (exit 0) or until the IPC connection is lost (exit 1, so that the
//! nucleus restarts the component with a fresh SVCUID token).

use greengrass_jobs_handler::ipc::model::ReportedLifecycleState;
use greengrass_jobs_handler::ipc::{ClientOptions, IpcClient};
use std::process::ExitCode;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false)
        .with_env_filter_or_level()
        .init();
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
    if let Err(e) = client.update_state(ReportedLifecycleState::Running).await {
        tracing::error!(error = %e, "cannot report RUNNING");
        return ExitCode::FAILURE;
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        target = env!("GGJH_BUILD_TARGET"),
        "component running"
    );
    tokio::select! {
        _ = terminate.recv() => {
            tracing::info!("SIGTERM received, stopping");
            ExitCode::SUCCESS
        }
        _ = client.closed() => {
            tracing::error!("IPC connection to the nucleus lost; exiting so the nucleus restarts the component");
            ExitCode::FAILURE
        }
    }
}

/// Log level from `GGJH_LOG` (`error`, `warn`, `info`, `debug`, `trace`), `info` by default.
trait LevelFromEnv {
    fn with_env_filter_or_level(self) -> Self;
}

impl<N, E, W> LevelFromEnv
    for tracing_subscriber::fmt::SubscriberBuilder<N, E, tracing_subscriber::filter::LevelFilter, W>
{
    fn with_env_filter_or_level(self) -> Self {
        let level = std::env::var("GGJH_LOG")
            .ok()
            .and_then(|l| l.parse().ok())
            .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
        self.with_max_level(level)
    }
}
