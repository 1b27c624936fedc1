//! The local emulator: everything a component talks to, without a Greengrass core or AWS.
//!
//! [`Emulator`] ties together the world ([`world`]: the AWS side in [`cloud`] and each core's
//! MQTT connection, one deterministic state machine), its shell on the emulator's clock
//! ([`shared_world`], [`clock`]), and one emulated nucleus per core device ([`nucleus`]: IPC
//! server, operations, access control, local pub/sub).

pub mod clock;
pub mod cloud;
pub mod http;
pub mod lookup;
pub mod nucleus;
pub mod shared_world;
pub mod world;

use crate::ipc::model::{MqttMessage, PublishMessage};
use clock::{ClockMode, EmulatorClock};
use cloud::jobs_service::ControlError;
use cloud::rules::Rule;
use nucleus::bus::TopicBus;
use nucleus::connection_status::ConnectionStatus;
use nucleus::ipc_server::IpcServer;
use nucleus::ipc_services::Services;
use nucleus::profile::NucleusProfile;
use nucleus::Nucleus;
use shared_world::{CoreEndpoints, SharedWorld};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::task::JoinHandle;
use world::World;

/// Thing name of the emulated core device unless another is given.
pub const DEFAULT_THING: &str = "emulated-core";

/// How an emulator is set up.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// The first core device.
    pub thing: String,
    /// Install the IoT rule that republishes `subscribed` events to `reconnect/<clientId>`.
    pub reconnect_rule: bool,
    pub clock: ClockMode,
    /// Seed of the world's random generator.
    pub seed: u64,
    /// Start of a manual clock (epoch ms); a wall clock starts now.
    pub start_ms: u64,
    /// Whether each nucleus makes its own deployment-jobs traffic, as the Java nucleus does.
    pub nucleus_jobs: bool,
    /// The runtime every core's nucleus behaves like (`--nucleus java|lite`).
    pub nucleus: NucleusProfile,
    /// Serve SubscribeToIoTCoreConnectionStatus (as the Java nucleus with it and nucleus lite
    /// 2.7 do); false refuses it, as released nuclei without it do. [`NucleusProfile::Lite`]
    /// refuses it whatever this says.
    pub connection_status: bool,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            thing: DEFAULT_THING.to_owned(),
            reconnect_rule: true,
            clock: ClockMode::Wall,
            seed: 0,
            start_ms: 1_767_225_600_000,
            nucleus_jobs: true,
            nucleus: NucleusProfile::Java,
            connection_status: true,
        }
    }
}

/// One emulated core device: its nucleus, local pub/sub and IoT Core inbox.
pub struct Core {
    services: Arc<Services>,
}

impl Core {
    pub fn thing_name(&self) -> &str {
        &self.services.core
    }

    pub fn nucleus(&self) -> &Arc<Nucleus> {
        &self.services.nucleus
    }

    /// What IoT Core delivers to this core's nucleus (before it reaches components).
    pub fn iot(&self) -> &Arc<TopicBus<MqttMessage>> {
        &self.services.iot
    }

    pub fn local_pubsub(&self) -> &Arc<TopicBus<PublishMessage>> {
        &self.services.local
    }

    /// The IPC operations of this core's nucleus (what its server serves).
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// Serves this core's IPC on `socket_path`. Must be called inside a tokio runtime.
    pub fn serve_ipc(&self, socket_path: &Path) -> std::io::Result<IpcServer> {
        IpcServer::bind(socket_path, Arc::clone(&self.services))
    }

    /// Closes every component's IoT Core subscriptions the way nucleus lite's ggipcd does after
    /// an iotcored restart: the streams stay open and receive nothing more. Returns how many.
    pub fn close_iot_subscriptions_silently(&self) -> usize {
        self.services.close_iot_subscriptions_silently()
    }
}

/// A running emulator: the world, and the cores on it.
pub struct Emulator {
    world: Arc<SharedWorld>,
    nucleus_jobs: bool,
    runtime: Runtime,
    default_core: Arc<Core>,
    cores: Mutex<BTreeMap<String, Arc<Core>>>,
    timers: Mutex<Option<JoinHandle<()>>>,
}

impl Default for Emulator {
    fn default() -> Self {
        Self::new()
    }
}

impl Emulator {
    /// An emulator for the core device [`DEFAULT_THING`], with the reconnect rule installed.
    pub fn new() -> Self {
        Self::with_thing(DEFAULT_THING, true)
    }

    /// An emulator for core device `thing_name`; `reconnect_rule` installs the IoT rule that
    /// republishes `subscribed` events to `reconnect/<clientId>`.
    pub fn with_thing(thing_name: &str, reconnect_rule: bool) -> Self {
        Self::with_options(EmulatorOptions {
            thing: thing_name.to_owned(),
            reconnect_rule,
            ..EmulatorOptions::default()
        })
    }

    pub fn with_options(options: EmulatorOptions) -> Self {
        let start = match options.clock {
            ClockMode::Wall => crate::clock::epoch_ms(),
            ClockMode::Manual => options.start_ms,
        };
        let mut world = World::new(options.seed, start);
        if options.reconnect_rule {
            world.put_rule(Rule::reconnect());
        }
        let world = Arc::new(SharedWorld::new(
            world,
            EmulatorClock::new(options.clock, options.start_ms),
            &options.thing,
        ));
        let runtime = Runtime::of(&options);
        let default_core = new_core(&world, &options.thing, options.nucleus_jobs, runtime);
        if let Err(e) = &default_core.1 {
            tracing::error!(error = %e, "invalid thing name for the emulator");
        }
        let default_core = default_core.0;
        let mut cores = BTreeMap::new();
        cores.insert(options.thing.clone(), Arc::clone(&default_core));
        Self {
            world,
            nucleus_jobs: options.nucleus_jobs,
            runtime,
            default_core,
            cores: Mutex::new(cores),
            timers: Mutex::new(None),
        }
    }

    fn cores(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Core>>> {
        self.cores.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds core device `thing` (registering the thing if new); an existing core is returned.
    pub fn add_core(&self, thing: &str) -> Result<Arc<Core>, ControlError> {
        if let Some(core) = self.cores().get(thing) {
            return Ok(Arc::clone(core));
        }
        let (core, result) = new_core(&self.world, thing, self.nucleus_jobs, self.runtime);
        result?;
        self.cores().insert(thing.to_owned(), Arc::clone(&core));
        Ok(core)
    }

    pub fn core(&self, thing: &str) -> Option<Arc<Core>> {
        self.cores().get(thing).cloned()
    }

    /// The core devices, by thing name.
    pub fn core_names(&self) -> Vec<String> {
        self.cores().keys().cloned().collect()
    }

    /// The first core device.
    pub fn default_core(&self) -> &Arc<Core> {
        &self.default_core
    }

    pub fn nucleus(&self) -> &Arc<Nucleus> {
        self.default_core.nucleus()
    }

    /// What IoT Core delivers to the first core's nucleus (before it reaches components).
    pub fn iot(&self) -> &Arc<TopicBus<MqttMessage>> {
        self.default_core.iot()
    }

    pub fn local_pubsub(&self) -> &Arc<TopicBus<PublishMessage>> {
        self.default_core.local_pubsub()
    }

    /// The world: the AWS side and the cores' connections.
    pub fn world(&self) -> &Arc<SharedWorld> {
        &self.world
    }

    /// Starts the world's timers on the wall clock (idempotent). Must be called inside a
    /// tokio runtime.
    pub fn start_timers(&self) {
        let mut timers = self.timers.lock().unwrap_or_else(|p| p.into_inner());
        if timers.is_none() {
            *timers = Some(tokio::spawn(Arc::clone(&self.world).run_timers()));
        }
    }

    /// Starts serving the first core's IPC on `socket_path`, and the world's timers. Must be
    /// called inside a tokio runtime.
    pub fn serve_ipc(&self, socket_path: &Path) -> std::io::Result<IpcServer> {
        self.start_timers();
        self.default_core.serve_ipc(socket_path)
    }
}

/// What every core's nucleus does where the runtimes differ.
#[derive(Debug, Clone, Copy)]
struct Runtime {
    max_inbound_packet: Option<usize>,
    serves_connection_status: bool,
}

impl Runtime {
    fn of(options: &EmulatorOptions) -> Self {
        Self {
            max_inbound_packet: options.nucleus.max_inbound_packet(),
            serves_connection_status: options.connection_status
                && options.nucleus.serves_connection_status(),
        }
    }
}

fn new_core(
    world: &Arc<SharedWorld>,
    thing: &str,
    nucleus_jobs: bool,
    runtime: Runtime,
) -> (Arc<Core>, Result<(), ControlError>) {
    let iot = Arc::new(TopicBus::default());
    let (status, status_rx) = tokio::sync::watch::channel(ConnectionStatus::default());
    let result = world.add_core(
        thing,
        CoreEndpoints {
            inbox: Arc::clone(&iot),
            status,
            max_inbound_packet: runtime.max_inbound_packet,
        },
        nucleus_jobs,
    );
    let services = Arc::new(Services {
        nucleus: Arc::new(Nucleus::default()),
        local: Arc::new(TopicBus::default()),
        iot,
        world: Arc::clone(world),
        core: thing.to_owned(),
        connection_status: status_rx,
        serves_connection_status: runtime.serves_connection_status,
        iot_generation: Arc::default(),
    });
    (Arc::new(Core { services }), result)
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(t) = self.timers.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}
