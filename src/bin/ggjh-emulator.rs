//! `ggjh-emulator`: the local emulator as a process, for running components and SDK clients
//! against it by hand or from other languages' tests.
//!
//! Serves Greengrass IPC on a Unix socket per core device for the components named on the
//! command line, emulates IoT Core, the Jobs service and the reconnect rule, and serves the
//! control API (AWS IoT control-plane REST shapes, `iot-data` Publish, `/emulator/...`) on a
//! local TCP port. Runs until SIGINT or SIGTERM.

use clap::{Parser, ValueEnum};
use greengrass_jobs_handler::emulator::clock::ClockMode;
use greengrass_jobs_handler::emulator::nucleus::profile::NucleusProfile;
use greengrass_jobs_handler::emulator::{http, Core, Emulator, EmulatorOptions, DEFAULT_THING};
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
    /// Unix socket to serve the first core's IPC on (default: `<socket-dir>/<thing>.socket`).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Directory for the sockets of cores given without a path.
    #[arg(long)]
    socket_dir: Option<PathBuf>,
    /// A further core device, as THING or THING=SOCKET_PATH (repeatable); every core serves
    /// the same components.
    #[arg(long = "core", value_parser = parse_core)]
    cores: Vec<(String, Option<PathBuf>)>,
    /// The emulator's clock: `wall`, or `manual` (only `POST /emulator/clock/advance` moves it).
    #[arg(long, value_enum, default_value_t = Clock::Wall)]
    clock: Clock,
    /// Seed of the world's random choices (same seed and inputs, same run).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Which nucleus the cores behave like.
    #[arg(long, value_enum, default_value_t = Nucleus::Java)]
    nucleus: Nucleus,
    /// Refuse SubscribeToIoTCoreConnectionStatus, as nuclei before it existed do.
    #[arg(long)]
    no_connection_status: bool,
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
    /// Address of the `iot-jobs-data` listener (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    jobs_data: SocketAddr,
    /// Address of the emulated S3 (path style; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    s3: SocketAddr,
}

#[derive(Clone, Copy, ValueEnum)]
enum Clock {
    Wall,
    Manual,
}

#[derive(Clone, Copy, ValueEnum)]
enum Nucleus {
    Java,
    Lite,
}

fn parse_core(s: &str) -> Result<(String, Option<PathBuf>), String> {
    match s.split_once('=') {
        None if !s.is_empty() => Ok((s.to_owned(), None)),
        Some((thing, path)) if !thing.is_empty() && !path.is_empty() => {
            Ok((thing.to_owned(), Some(PathBuf::from(path))))
        }
        _ => Err(format!("expected THING or THING=SOCKET_PATH, got {s:?}")),
    }
}

/// Where `thing`'s socket goes: its own path, or `<socket-dir>/<thing>.socket`.
fn socket_of(args: &Args, thing: &str, path: Option<&PathBuf>) -> Result<PathBuf, String> {
    match (path, &args.socket_dir) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(dir)) => Ok(dir.join(format!("{thing}.socket"))),
        (None, None) => Err(format!(
            "core {thing} has no socket: give THING=PATH or --socket-dir"
        )),
    }
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
        let emulator = Arc::new(Emulator::with_options(EmulatorOptions {
            thing: args.thing.clone(),
            reconnect_rule: !args.no_reconnect_rule,
            clock: match args.clock {
                Clock::Wall => ClockMode::Wall,
                Clock::Manual => ClockMode::Manual,
            },
            seed: args.seed,
            nucleus: match args.nucleus {
                Nucleus::Java => NucleusProfile::Java,
                Nucleus::Lite => NucleusProfile::Lite,
            },
            connection_status: !args.no_connection_status,
            ..EmulatorOptions::default()
        }));
        let mut configs = Vec::new();
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
            configs.push((name, token, config));
        }
        let mut cores: Vec<(Arc<Core>, PathBuf)> = Vec::new();
        let first = args.socket.as_ref();
        let wanted = std::iter::once((args.thing.clone(), first.cloned())).chain(args.cores.iter().cloned());
        for (thing, path) in wanted {
            let socket = match socket_of(&args, &thing, path.as_ref()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot place the socket");
                    return ExitCode::FAILURE;
                }
            };
            let core = match emulator.add_core(&thing) {
                Ok(core) => core,
                Err(e) => {
                    tracing::error!(thing = %thing, error = %e, "cannot add the core device");
                    return ExitCode::FAILURE;
                }
            };
            core.nucleus().set_strict_access_control(args.strict_access_control);
            core.nucleus()
                .set_interpolation(args.interpolate_component_configuration.then_some(thing.as_str()));
            for (name, token, config) in &configs {
                core.nucleus().register(name, token, config.clone());
            }
            cores.push((core, socket));
        }
        emulator.start_timers();
        let mut servers = Vec::new();
        for (core, socket) in &cores {
            match core.serve_ipc(socket) {
                Ok(server) => servers.push(server),
                Err(e) => {
                    tracing::error!(socket = %socket.display(), error = %e, "cannot listen");
                    return ExitCode::FAILURE;
                }
            }
        }
        let state = http::HttpState::new(Arc::clone(&emulator));
        let (control, _control_task) = match http::serve_control(Arc::clone(&state), args.control).await {
            Ok(bound) => bound,
            Err(e) => {
                tracing::error!(address = %args.control, error = %e, "cannot serve the control API");
                return ExitCode::FAILURE;
            }
        };
        let (jobs_data, _jobs_data_task) = match http::serve_jobs_data(Arc::clone(&state), args.jobs_data).await {
            Ok(bound) => bound,
            Err(e) => {
                tracing::error!(address = %args.jobs_data, error = %e, "cannot serve iot-jobs-data");
                return ExitCode::FAILURE;
            }
        };
        let (s3, _s3_task) = match http::serve_s3(Arc::clone(&state), args.s3).await {
            Ok(bound) => bound,
            Err(e) => {
                tracing::error!(address = %args.s3, error = %e, "cannot serve S3");
                return ExitCode::FAILURE;
            }
        };
        for (core, server) in cores.iter().zip(&servers) {
            tracing::info!(thing = %core.0.thing_name(), socket = %server.path().display(), "core serving IPC");
        }
        tracing::info!(socket = %servers[0].path().display(), thing = %args.thing, cores = cores.len(), control = %format!("http://{control}"), jobs_data = %format!("http://{jobs_data}"), s3 = %format!("http://{s3}"), reconnect_rule = !args.no_reconnect_rule, "emulator ready");
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
