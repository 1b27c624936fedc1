//! `ggjh-emulator`: the local emulator as a process, for running components and SDK clients
//! against it by hand or from other languages' tests.
//!
//! Serves Greengrass IPC on a Unix socket for the components named on the command line, emulates
//! IoT Core, the Jobs service and the reconnect rule for one core device, and serves the control
//! API (AWS IoT control-plane REST shapes) on a local TCP port. Runs until SIGINT or SIGTERM.

use clap::Parser;
use greengrass_jobs_handler::emulator::{control_api, Emulator, DEFAULT_THING};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    version,
    about = "Local emulator of the Greengrass nucleus IPC, AWS IoT Core and the Jobs service"
)]
struct Args {
    /// Unix socket to serve IPC on.
    #[arg(long)]
    socket: PathBuf,
    /// A component allowed to connect, as NAME=TOKEN (repeatable).
    #[arg(long = "component", value_parser = parse_pair, required = true)]
    components: Vec<(String, String)>,
    /// Initial configuration of a component, as NAME=PATH to a JSON file (repeatable).
    #[arg(long = "config", value_parser = parse_pair)]
    configs: Vec<(String, String)>,
    /// Thing name of the emulated core device.
    #[arg(long, default_value = DEFAULT_THING)]
    thing: String,
    /// Leave out the IoT rule that republishes `subscribed` events to `reconnect/<clientId>`.
    #[arg(long)]
    no_reconnect_rule: bool,
    /// Deny IPC operations to components without `accessControl`, as the nucleus does.
    #[arg(long)]
    strict_access_control: bool,
    /// Replace `{iot:thingName}` in `accessControl` (the nucleus's
    /// interpolateComponentConfiguration; off by default there too).
    #[arg(long)]
    interpolate_component_configuration: bool,
    /// Address of the control API (port 0 picks a free port; the address is logged).
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(name, value)| !name.is_empty() && !value.is_empty())
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let emulator = Emulator::with_thing(&args.thing, !args.no_reconnect_rule);
        emulator.nucleus().set_strict_access_control(args.strict_access_control);
        emulator
            .nucleus()
            .set_interpolation(args.interpolate_component_configuration.then_some(args.thing.as_str()));
        for (name, token) in &args.components {
            let config = match args.configs.iter().find(|(n, _)| n == name) {
                None => serde_json::json!({}),
                Some((_, path)) => match std::fs::read(path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                {
                    Ok(config) => config,
                    Err(e) => {
                        tracing::error!(component = %name, path = %path, error = %e, "cannot read configuration");
                        return ExitCode::FAILURE;
                    }
                },
            };
            emulator.nucleus().register(name, token, config);
        }
        let server = match emulator.serve_ipc(&args.socket) {
            Ok(server) => server,
            Err(e) => {
                tracing::error!(socket = %args.socket.display(), error = %e, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        let (control, _control_task) = match control_api::serve(Arc::clone(emulator.world()), args.control).await {
            Ok(bound) => bound,
            Err(e) => {
                tracing::error!(address = %args.control, error = %e, "cannot serve the control API");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(socket = %server.path().display(), thing = %args.thing, control = %format!("http://{control}"), reconnect_rule = !args.no_reconnect_rule, "emulator ready");
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install the SIGTERM handler");
                return ExitCode::FAILURE;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("emulator stopping");
        ExitCode::SUCCESS
    })
}
