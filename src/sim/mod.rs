//! Seeded simulations of whole fleets: every core device runs the component's real engine
//! against the emulated [`World`], in virtual time.
//!
//! Owns: the event queue that orders what happens when (messages between a device and IoT Core
//! after a latency, job work finishing, engine wake-ups, component restarts, the world's own
//! deadlines), the devices' model of the component's shell (subscribe everything, then start;
//! run a job for a while, then report; on a crash lose the subscriptions and the work, and
//! restart from the journal), applying the faults of [`faults`] to every message on its hop
//! with the world's one random generator, the event log, the audit of [`audit`] when it is on,
//! and the counters fleet reports are made of.
//! Must not know: sockets, tokio or the wall clock: the same seed and the same scenario give
//! the same run, event log included.

pub mod audit;
pub mod device;
pub mod event_queue;
pub mod faults;
pub mod report;
pub mod scenario;
pub mod shell_journal;

use crate::emulator::cloud::rules::Rule;
use crate::emulator::lookup::LookupMap;
use crate::emulator::world::{Millis, Output, World};
use crate::jobs::engine::EngineConfig;
use crate::jobs::messages::JobStatus;
use audit::Audit;
use device::{ArmedCrash, Device, WorkModel};
use event_queue::EventQueue;
use faults::{FaultKind, HopFaults};
use std::collections::BTreeMap;

/// Something due at a time.
#[derive(Debug)]
enum Event {
    /// A device's publish reaches IoT Core.
    ToWorld { topic: String, payload: Vec<u8> },
    /// IoT Core's message reaches a device's component.
    ToDevice { topic: String, payload: Vec<u8> },
    /// A job's work ends on the device.
    WorkDone {
        job_id: String,
        execution_number: i64,
        run: u64,
        status: JobStatus,
    },
    /// The device's engine asked to be woken now.
    Tick,
    /// The crashed component is started again.
    Restart,
    /// The nucleus's SubscribeToIoTCoreConnectionStatus stream reports a change.
    Connection { connected: bool },
}

/// An event in the queue, for one device.
#[derive(Debug)]
struct Queued {
    device: usize,
    event: Event,
}

/// How a simulation is set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// The world's clock at the start (epoch ms).
    pub start_ms: Millis,
    /// One-way latency between a core and IoT Core.
    pub latency_ms: Millis,
    /// Install the reconnect rule.
    pub reconnect_rule: bool,
    /// Whether each nucleus makes its own deployment-jobs traffic.
    pub nucleus_jobs: bool,
    /// Keep an event log (costs memory on large fleets).
    pub log: bool,
    /// Hand each change of a core's IoT Core connection to its component
    /// (SubscribeToIoTCoreConnectionStatus); off: the component is never told.
    pub connection_status: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            start_ms: 1_767_225_600_000,
            latency_ms: 20,
            reconnect_rule: true,
            nucleus_jobs: true,
            log: false,
            connection_status: false,
        }
    }
}

/// Counters over a run.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    /// Jobs API requests devices made, per second of virtual time.
    pub jobs_requests_per_second: BTreeMap<Millis, u64>,
    pub jobs_requests: u64,
    /// MQTT messages between the cores and IoT Core (both ways).
    pub mqtt_messages: u64,
    /// Jobs whose work completed on a device.
    pub work_completed: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<FaultKind, u64>,
}

/// A fleet of devices against one world.
///
/// Call contract: add devices and cloud-side state, then [`Simulation::run_until`] moves time;
/// between runs, scenario steps (reconnects, jobs) act on [`Simulation::world_mut`] or the
/// helpers here at the current time.
pub struct Simulation {
    config: SimConfig,
    world: World,
    devices: Vec<Device>,
    by_core: LookupMap<String, usize>,
    /// Due events, earliest first; ties in the order queued (a fleet queues millions).
    queue: EventQueue<Queued>,
    now: Millis,
    log: Vec<String>,
    stats: SimStats,
    outputs: Vec<Output>,
    hop_faults: HopFaults,
    /// A crashed component restarts after a delay drawn from this range (ms).
    restart_delay_ms: (Millis, Millis),
    audit: Option<Audit>,
    /// The next publish of this device on a topic ending so is held back (scripted delays).
    hold: Option<(usize, String)>,
    held: Vec<(usize, String, Vec<u8>)>,
}

impl Simulation {
    pub fn new(config: SimConfig) -> Self {
        let mut world = World::new(config.seed, config.start_ms);
        world.set_observing(config.log);
        if config.reconnect_rule {
            world.put_rule(Rule::reconnect());
        }
        Self {
            now: config.start_ms,
            world,
            config,
            devices: Vec::new(),
            by_core: LookupMap::default(),
            queue: EventQueue::default(),
            log: Vec::new(),
            stats: SimStats::default(),
            outputs: Vec::new(),
            hop_faults: HopFaults::default(),
            restart_delay_ms: (1_000, 1_000),
            audit: None,
            hold: None,
            held: Vec::new(),
        }
    }

    /// Holds back the next publish of device `index` on a topic ending with `topic_suffix`
    /// until [`Simulation::release_held`] (a scripted delay of one message).
    pub fn hold_next_publish(&mut self, index: usize, topic_suffix: &str) {
        self.hold = Some((index, topic_suffix.to_owned()));
    }

    /// Whether a publish is being held back.
    pub fn holds_publish(&self) -> bool {
        !self.held.is_empty()
    }

    /// Held publishes reach IoT Core now, in the order they were sent.
    pub fn release_held(&mut self) {
        for (index, topic, payload) in std::mem::take(&mut self.held) {
            let now = self.now;
            self.push(now, index, Event::ToWorld { topic, payload });
        }
    }

    /// Faults on every message between a device and IoT Core from now on (default: none).
    pub fn set_hop_faults(&mut self, faults: HopFaults) {
        self.hop_faults = faults;
    }

    /// How long a crashed component stays down (drawn uniformly from the range).
    pub fn set_restart_delay(&mut self, min_ms: Millis, max_ms: Millis) {
        self.restart_delay_ms = (min_ms, max_ms.max(min_ms));
    }

    /// Checks the invariants of [`audit`] after every event from now on.
    pub fn enable_audit(&mut self) {
        self.audit = Some(Audit::default());
    }

    pub fn audit(&self) -> Option<&Audit> {
        self.audit.as_ref()
    }

    /// Runs the audit's end-of-run checks (see [`Audit::check_settled`]).
    pub fn check_settled(&mut self, safety_poll: bool) {
        if let Some(audit) = self.audit.as_mut() {
            audit.check_settled(self.now, &self.world, &self.devices, safety_poll);
        }
    }

    pub(crate) fn observe(&mut self) {
        if let Some(audit) = self.audit.as_mut() {
            audit.observe(self.now, &self.world, &self.devices);
        }
    }

    pub(crate) fn count(&mut self, fault: FaultKind) {
        *self.stats.faults.entry(fault).or_default() += 1;
    }

    /// The device index of a core.
    pub fn device_index(&self, thing: &str) -> Option<usize> {
        self.by_core.get(thing).copied()
    }

    /// Kills a device's component now (`armed: None`) or in the middle of the next batch of
    /// actions it carries out; it restarts after the restart delay.
    pub fn crash_device(&mut self, index: usize, armed: Option<ArmedCrash>) {
        let Some(device) = self.devices.get_mut(index) else {
            return;
        };
        match armed {
            Some(crash) => device.arm_crash(crash),
            None if device.is_up() => {
                device.crash();
                self.crashed(index);
            }
            None => {}
        }
    }

    /// A crash struck: the component's IPC subscriptions close (the nucleus unsubscribes what
    /// no component holds) and it is started again later.
    fn crashed(&mut self, index: usize) {
        self.count(FaultKind::CrashRestart);
        let thing = self.devices[index].thing().to_owned();
        if self.config.log {
            self.log.push(format!("{} {thing} crashed", self.now));
        }
        for filter in self.devices[index].subscriptions().to_vec() {
            self.world.core_unsubscribe(&thing, &filter);
        }
        self.carry();
        let (min, max) = self.restart_delay_ms;
        let delay = self.world.rng().u64(min..=max);
        self.push(self.now + delay, index, Event::Restart);
    }

    /// The device's clock leaps forward by `ms`.
    pub fn jump_clock(&mut self, index: usize, ms: Millis) {
        let Some(device) = self.devices.get_mut(index) else {
            return;
        };
        device.jump_clock(ms);
        self.count(FaultKind::ClockJump);
        self.act(index, Vec::new());
    }

    pub fn now(&self) -> Millis {
        self.now
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    /// The world, for scenario steps; what they produce is carried out at the current time.
    pub fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The event log: every message IoT Core received or sent and every device event, with
    /// its virtual time (empty unless [`SimConfig::log`]).
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// Adds a core device running the component (its engine seeded from the world's
    /// generator); it subscribes and starts at once.
    pub fn add_device(&mut self, config: EngineConfig, work: WorkModel) {
        let thing = config.thing_name.clone();
        if let Err(e) = self.world.add_core(&thing, self.config.nucleus_jobs) {
            tracing::error!(error = %e, thing = %thing, "core not added");
            return;
        }
        let seed = self.world.rng().u64(..);
        let device = Device::new(config, seed, work);
        for filter in device.subscriptions() {
            self.world.core_subscribe(&thing, filter, 1);
        }
        let index = self.devices.len();
        self.by_core.insert(thing, index);
        self.devices.push(device);
        self.carry();
        let actions = self.devices[index].start(self.now);
        self.act(index, actions);
    }

    /// Carries out what the world produced at the current time.
    pub fn carry(&mut self) {
        let mut outputs = std::mem::take(&mut self.outputs);
        self.world.drain_outputs(&mut outputs);
        for output in outputs.drain(..) {
            match output {
                Output::Deliver {
                    core,
                    topic,
                    payload,
                } => {
                    let Some(&index) = self.by_core.get(&core) else {
                        continue;
                    };
                    if !self.devices[index].wants(&topic) {
                        continue;
                    }
                    self.stats.mqtt_messages += 1;
                    self.send(index, topic, payload, |topic, payload| Event::ToDevice {
                        topic,
                        payload,
                    });
                }
                Output::ConnectionStatus { core, connected } => {
                    if self.config.log {
                        self.log
                            .push(format!("{} status {core} connected={connected}", self.now));
                    }
                    if self.config.connection_status {
                        if let Some(&index) = self.by_core.get(&core) {
                            let now = self.now;
                            self.push(now, index, Event::Connection { connected });
                        }
                    }
                }
                Output::Observed { at, topic, payload } => {
                    if self.config.log {
                        self.log.push(format!(
                            "{at} iot {topic} {}",
                            String::from_utf8_lossy(&payload)
                        ));
                    }
                }
            }
        }
        self.outputs = outputs;
    }

    /// Queues a message sent now on its hop: one event per copy that arrives (none: lost).
    /// Without faults the one copy takes the message itself, uncopied.
    fn send(
        &mut self,
        index: usize,
        topic: String,
        payload: Vec<u8>,
        event: impl Fn(String, Vec<u8>) -> Event,
    ) {
        let base = self.now + self.config.latency_ms;
        if !self.hop_faults.any() {
            self.push(base, index, event(topic, payload));
            return;
        }
        let fate = self.hop_faults.fate(self.world.rng());
        for fault in fate.faults {
            self.count(fault);
        }
        for d in fate.extra_delays_ms {
            self.push(base + d, index, event(topic.clone(), payload.clone()));
        }
    }

    fn push(&mut self, at: Millis, device: usize, event: Event) {
        self.queue.push(at, Queued { device, event });
    }

    /// Runs everything due up to `until` (virtual time), in time order.
    pub fn run_until(&mut self, until: Millis) {
        loop {
            let next_event = self.queue.next_at();
            let next_world = self.world.next_deadline();
            let next = match (next_event, next_world) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            self.world.advance_to(self.now);
            self.carry();
            if next_event != Some(next) {
                continue;
            }
            let Some((_, Queued { device, event })) = self.queue.pop() else {
                break;
            };
            self.handle(device, event);
            self.observe();
        }
        self.now = self.now.max(until);
        self.world.advance_to(self.now);
        self.carry();
    }

    fn handle(&mut self, index: usize, event: Event) {
        let now = self.now;
        match event {
            Event::ToWorld { topic, payload } => {
                self.stats.mqtt_messages += 1;
                if topic.starts_with("$aws/things/") && topic.contains("/jobs/") {
                    self.stats.jobs_requests += 1;
                    *self
                        .stats
                        .jobs_requests_per_second
                        .entry(now / 1000 * 1000)
                        .or_default() += 1;
                }
                self.world
                    .core_publish(self.devices[index].thing(), topic, payload, 1);
                self.carry();
            }
            Event::ToDevice { topic, payload } => {
                if self.config.log {
                    let core = self.devices[index].thing();
                    self.log.push(format!("{now} {core} <- {topic}"));
                }
                let actions = self.devices[index].message(now, &topic, &payload);
                self.act(index, actions);
            }
            Event::WorkDone {
                job_id,
                execution_number,
                run,
                status,
            } => {
                let before = self.devices[index].completed().len();
                let actions =
                    self.devices[index].work_done(now, &job_id, execution_number, run, status);
                if self.devices[index].completed().len() > before {
                    self.stats.work_completed += 1;
                }
                if self.config.log {
                    let core = self.devices[index].thing();
                    self.log
                        .push(format!("{now} {core} done {job_id}#{execution_number}"));
                }
                self.act(index, actions);
            }
            Event::Tick => {
                if self.devices[index].tick_due(now) {
                    let actions = self.devices[index].tick(now);
                    self.act(index, actions);
                }
            }
            Event::Restart => {
                if self.devices[index].is_up() {
                    return;
                }
                let core = self.devices[index].thing().to_owned();
                if self.config.log {
                    self.log.push(format!("{now} {core} restarted"));
                }
                let seed = self.world.rng().u64(..);
                let mut actions = self.devices[index].restart(now, seed);
                for filter in self.devices[index].subscriptions().to_vec() {
                    self.world.core_subscribe(&core, &filter, 1);
                }
                self.carry();
                actions.extend(self.devices[index].start(now));
                self.act(index, actions);
            }
            Event::Connection { connected } => {
                let actions = self.devices[index].connection(now, connected);
                self.act(index, actions);
            }
        }
    }

    fn act(&mut self, index: usize, actions: Vec<device::DeviceAction>) {
        let now = self.now;
        for action in actions {
            match action {
                device::DeviceAction::Publish { topic, payload } => {
                    let hold = self
                        .hold
                        .as_ref()
                        .is_some_and(|(i, suffix)| *i == index && topic.ends_with(suffix.as_str()));
                    if hold {
                        self.hold = None;
                        self.held.push((index, topic, payload));
                        continue;
                    }
                    if self.config.log {
                        let core = self.devices[index].thing();
                        self.log.push(format!(
                            "{now} {core} -> {topic} {}",
                            String::from_utf8_lossy(&payload)
                        ));
                    }
                    self.send(index, topic, payload, |topic, payload| Event::ToWorld {
                        topic,
                        payload,
                    });
                }
                device::DeviceAction::Work {
                    job_id,
                    execution_number,
                    duration_ms,
                    run,
                    status,
                } => {
                    self.push(
                        now + duration_ms,
                        index,
                        Event::WorkDone {
                            job_id,
                            execution_number,
                            run,
                            status,
                        },
                    );
                }
            }
        }
        if self.devices[index].take_crashed() {
            self.crashed(index);
        }
        if let Some(at) = self.devices[index].arm_tick(now) {
            self.push(at, index, Event::Tick);
        }
    }
}
