//! The IPC operations the emulated nucleus serves.
//!
//! Owns: what each operation does to the emulator's state and what it answers: IoT Core
//! publish/subscribe (a filter is let go on IoT Core when its stream ends),
//! SubscribeToIoTCoreConnectionStatus, local publish/subscribe, UpdateState, GetConfiguration
//! and SubscribeToConfigurationUpdate, with the nucleus's modeled errors.
//! Must not know: frames, stream ids or connection rules (that is [`super::ipc_session`]).

use super::access_control::{MQTT_PROXY, PUBSUB};
use super::bus::{BusSubscription, TopicBus};
use super::components::{ConfigError, Nucleus};
use super::connection_status::ConnectionStatus;
use crate::emulator::shared_world::SharedWorld;
use crate::ipc::error::{code, ErrorPayload};
use crate::ipc::model::*;
use crate::ipc::rpc::{MessageType, RpcMessage};
use crate::topic;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Largest MQTT payload AWS IoT Core accepts.
pub const MAX_IOT_PAYLOAD: usize = 128 * 1024;

/// Who is calling, and where stream events for this call go.
pub struct CallContext<'a> {
    pub component: &'a str,
    pub connection_id: u64,
    pub stream_id: i32,
    pub events: &'a mpsc::UnboundedSender<RpcMessage>,
}

/// Keeps a streaming operation's source alive; dropping it ends the subscription.
pub type StreamGuard = Box<dyn Send>;

/// What an operation answers.
pub enum Outcome {
    /// A response that ends the stream.
    Response {
        model_type: &'static str,
        payload: Vec<u8>,
    },
    /// The first response of a stream whose events follow.
    Stream {
        model_type: &'static str,
        payload: Vec<u8>,
        guard: StreamGuard,
    },
    /// A modeled error.
    Error(ErrorPayload),
    /// An operation this server does not serve.
    Unsupported,
}

/// The state behind the operations.
pub struct Services {
    pub nucleus: Arc<Nucleus>,
    pub local: Arc<TopicBus<PublishMessage>>,
    /// What IoT Core delivers to the nucleus, fanned out to subscribed components.
    pub iot: Arc<TopicBus<MqttMessage>>,
    /// The world behind the nucleus's MQTT connection.
    pub world: Arc<SharedWorld>,
    /// The core device (thing name) this nucleus runs on.
    pub core: String,
    /// Whether the core's IoT Core connection is up.
    pub connection_status: tokio::sync::watch::Receiver<ConnectionStatus>,
    /// Whether SubscribeToIoTCoreConnectionStatus is served (a nucleus without it refuses it).
    pub serves_connection_status: bool,
    /// Bumped when the nucleus lets every component's IoT Core subscription go silently:
    /// streams of an earlier generation no longer hold a filter on IoT Core.
    pub iot_generation: Arc<AtomicU64>,
}

fn qos_number(qos: Qos) -> u8 {
    match qos {
        Qos::AtMostOnce => 0,
        Qos::AtLeastOnce => 1,
    }
}

fn response<T: Serialize>(model_type: &'static str, value: &T) -> Outcome {
    match serde_json::to_vec(value) {
        Ok(payload) => Outcome::Response {
            model_type,
            payload,
        },
        Err(e) => Outcome::Error(ErrorPayload::new(code::SERVICE_ERROR, e.to_string())),
    }
}

fn parse<T: for<'de> serde::Deserialize<'de>>(payload: &[u8]) -> Result<T, Outcome> {
    let body: &[u8] = if payload.is_empty() { b"{}" } else { payload };
    serde_json::from_slice(body).map_err(|e| {
        Outcome::Error(ErrorPayload::new(
            code::SERVICE_ERROR,
            format!("Invalid request: {e}"),
        ))
    })
}

/// Sends each event of a stream as an APPLICATION_MESSAGE on `stream_id`.
fn event_sender<E: Serialize>(
    events: &mpsc::UnboundedSender<RpcMessage>,
    stream_id: i32,
    model_type: &'static str,
) -> impl Fn(&E) -> bool + Send + Sync + 'static {
    let events = events.clone();
    move |event: &E| match serde_json::to_vec(event) {
        Ok(payload) => events
            .send(
                RpcMessage::new(MessageType::ApplicationMessage, 0, stream_id)
                    .with_model_type(model_type)
                    .with_json(payload),
            )
            .is_ok(),
        Err(_) => true,
    }
}

impl Services {
    /// What nucleus lite's ggipcd does after its iotcored restarts: every component's
    /// SubscribeToIoTCore stream stays open but receives nothing more, and the nucleus lets its
    /// filters go on IoT Core. Every subscriber of the core's IoT inbox is taken to be such a
    /// stream. Returns how many streams went silent.
    pub fn close_iot_subscriptions_silently(&self) -> usize {
        self.iot_generation.fetch_add(1, Ordering::SeqCst);
        let filters = self.iot.clear();
        for filter in &filters {
            self.world.unsubscribe_from_core(&self.core, filter);
        }
        tracing::warn!(core = %self.core, streams = filters.len(), "IoT Core subscriptions of components closed silently");
        filters.len()
    }

    /// UnauthorizedError unless the component's accessControl allows the operation.
    fn authorize(
        &self,
        ctx: &CallContext<'_>,
        service: &str,
        operation: &str,
        resource: &str,
    ) -> Result<(), Outcome> {
        if self
            .nucleus
            .authorize(ctx.component, service, operation, resource)
        {
            return Ok(());
        }
        tracing::warn!(
            component = ctx.component,
            operation,
            resource,
            "IPC request not authorized"
        );
        Err(Outcome::Error(ErrorPayload::new(
            code::UNAUTHORIZED_ERROR,
            format!("Principal {} is not authorized to perform {service}:{operation} on resource {resource}", ctx.component),
        )))
    }

    pub fn handle(&self, ctx: &CallContext<'_>, operation: &str, payload: &[u8]) -> Outcome {
        let result = match operation {
            o if o == PublishToIoTCore::NAME => self.publish_to_iot_core(ctx, payload),
            o if o == SubscribeToIoTCore::NAME => self.subscribe_to_iot_core(ctx, payload),
            o if o == PublishToTopic::NAME => self.publish_to_topic(ctx, payload),
            o if o == SubscribeToTopic::NAME => self.subscribe_to_topic(ctx, payload),
            o if o == SubscribeToIoTCoreConnectionStatus::NAME && self.serves_connection_status => {
                self.subscribe_to_connection_status(ctx)
            }
            o if o == UpdateState::NAME => self.update_state(ctx, payload),
            o if o == GetConfiguration::NAME => self.get_configuration(ctx, payload),
            o if o == SubscribeToConfigurationUpdate::NAME => {
                self.subscribe_to_configuration_update(ctx, payload)
            }
            _ => Ok(Outcome::Unsupported),
        };
        result.unwrap_or_else(|outcome| outcome)
    }

    fn publish_to_iot_core(
        &self,
        ctx: &CallContext<'_>,
        payload: &[u8],
    ) -> Result<Outcome, Outcome> {
        let request: PublishToIoTCoreRequest = parse(payload)?;
        topic::validate_name(&request.topic_name).map_err(service_error)?;
        self.authorize(ctx, MQTT_PROXY, PublishToIoTCore::NAME, &request.topic_name)?;
        let size = request.payload.as_ref().map_or(0, |p| p.0.len());
        if size > MAX_IOT_PAYLOAD {
            return Err(service_error(format!(
                "payload of {size} bytes exceeds the {MAX_IOT_PAYLOAD}-byte IoT Core limit"
            )));
        }
        let qos = qos_number(request.qos);
        let message = MqttMessage::from(request);
        tracing::debug!(component = ctx.component, topic = %message.topic_name, "PublishToIoTCore");
        self.world.publish_from_core(&self.core, &message, qos);
        Ok(response(PublishToIoTCore::RESPONSE_TYPE, &Empty {}))
    }

    fn subscribe_to_iot_core(
        &self,
        ctx: &CallContext<'_>,
        payload: &[u8],
    ) -> Result<Outcome, Outcome> {
        let request: SubscribeToIoTCoreRequest = parse(payload)?;
        topic::validate_filter(&request.topic_name).map_err(service_error)?;
        self.authorize(
            ctx,
            MQTT_PROXY,
            SubscribeToIoTCore::NAME,
            &request.topic_name,
        )?;
        let send = event_sender::<IoTCoreMessage>(
            ctx.events,
            ctx.stream_id,
            SubscribeToIoTCore::EVENT_TYPE,
        );
        let guard: BusSubscription<MqttMessage> = self.iot.subscribe(
            &request.topic_name,
            ctx.connection_id,
            false,
            Box::new(move |_, message: &MqttMessage| {
                send(&IoTCoreMessage::Message(message.clone()))
            }),
        );
        self.world
            .subscribe_from_core(&self.core, &request.topic_name, qos_number(request.qos));
        let guard = IotSubscriptionGuard {
            generation: self.iot_generation.load(Ordering::SeqCst),
            current: Arc::clone(&self.iot_generation),
            bus: Some(guard),
            world: Arc::clone(&self.world),
            core: self.core.clone(),
            filter: request.topic_name,
        };
        stream(
            SubscribeToIoTCore::RESPONSE_TYPE,
            &Empty {},
            Box::new(guard),
        )
    }

    /// The core's connection status now, then an event on every change. Needs no
    /// authorization, as on the nucleus.
    fn subscribe_to_connection_status(&self, ctx: &CallContext<'_>) -> Result<Outcome, Outcome> {
        let send = event_sender::<IoTCoreConnectionStatusEvent>(
            ctx.events,
            ctx.stream_id,
            SubscribeToIoTCoreConnectionStatus::EVENT_TYPE,
        );
        let mut status = self.connection_status.clone();
        let first = *status.borrow_and_update();
        let current = first.connected;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(service_error(
                "connection status needs the server's runtime",
            ));
        };
        let task = runtime.spawn(async move {
            let mut last = first;
            if !send(&IoTCoreConnectionStatusEvent::new(current)) {
                return;
            }
            while status.changed().await.is_ok() {
                let now = *status.borrow_and_update();
                // Changes that came faster than this task woke are sent all the same, as
                // the nucleus sends one event per change.
                for connected in now.events_since(last) {
                    if !send(&IoTCoreConnectionStatusEvent::new(connected)) {
                        return;
                    }
                }
                last = now;
            }
        });
        stream(
            SubscribeToIoTCoreConnectionStatus::RESPONSE_TYPE,
            &SubscribeToIoTCoreConnectionStatusResponse {
                messages: Some(IoTCoreConnectionStatusEvent::new(current)),
            },
            Box::new(AbortOnDrop(task)),
        )
    }

    fn publish_to_topic(&self, ctx: &CallContext<'_>, payload: &[u8]) -> Result<Outcome, Outcome> {
        let request: PublishToTopicRequest = parse(payload)?;
        topic::validate_name(&request.topic).map_err(service_error)?;
        self.authorize(ctx, PUBSUB, PublishToTopic::NAME, &request.topic)?;
        self.local
            .publish(&request.topic, ctx.connection_id, &request.publish_message);
        Ok(response(PublishToTopic::RESPONSE_TYPE, &Empty {}))
    }

    fn subscribe_to_topic(
        &self,
        ctx: &CallContext<'_>,
        payload: &[u8],
    ) -> Result<Outcome, Outcome> {
        let request: SubscribeToTopicRequest = parse(payload)?;
        topic::validate_filter(&request.topic).map_err(|e| {
            Outcome::Error(ErrorPayload::new(
                code::INVALID_ARGUMENTS_ERROR,
                e.to_string(),
            ))
        })?;
        self.authorize(ctx, PUBSUB, SubscribeToTopic::NAME, &request.topic)?;
        let skip_own = request.receive_mode == Some(ReceiveMode::ReceiveMessagesFromOthers);
        let send = event_sender::<SubscriptionResponseMessage>(
            ctx.events,
            ctx.stream_id,
            SubscribeToTopic::EVENT_TYPE,
        );
        let guard = self.local.subscribe(
            &request.topic,
            ctx.connection_id,
            skip_own,
            Box::new(move |topic, message: &PublishMessage| {
                send(&message.clone().delivered_on(topic))
            }),
        );
        stream(
            SubscribeToTopic::RESPONSE_TYPE,
            &SubscribeToTopicResponse::default(),
            Box::new(guard),
        )
    }

    fn update_state(&self, ctx: &CallContext<'_>, payload: &[u8]) -> Result<Outcome, Outcome> {
        let request: UpdateStateRequest = parse(payload)?;
        let state = match request.state {
            ReportedLifecycleState::Running => "RUNNING",
            ReportedLifecycleState::Errored => "ERRORED",
        };
        tracing::info!(
            component = ctx.component,
            state,
            "component reported its state"
        );
        self.nucleus.report_state(ctx.component, state);
        Ok(response(UpdateState::RESPONSE_TYPE, &Empty {}))
    }

    fn get_configuration(&self, ctx: &CallContext<'_>, payload: &[u8]) -> Result<Outcome, Outcome> {
        let request: GetConfigurationRequest = parse(payload)?;
        let component = request.component_name.as_deref().unwrap_or(ctx.component);
        let value = self
            .nucleus
            .configuration(component, &request.key_path)
            .map_err(not_found)?;
        Ok(response(
            GetConfiguration::RESPONSE_TYPE,
            &GetConfigurationResponse {
                component_name: Some(component.to_owned()),
                value: Some(value),
            },
        ))
    }

    fn subscribe_to_configuration_update(
        &self,
        ctx: &CallContext<'_>,
        payload: &[u8],
    ) -> Result<Outcome, Outcome> {
        let request: SubscribeToConfigurationUpdateRequest = parse(payload)?;
        let component = request.component_name.as_deref().unwrap_or(ctx.component);
        let send = event_sender::<ConfigurationUpdateEvents>(
            ctx.events,
            ctx.stream_id,
            SubscribeToConfigurationUpdate::EVENT_TYPE,
        );
        let id = self.nucleus.watch_configuration(
            component,
            &request.key_path,
            Box::new(move |component, key_path| {
                send(&ConfigurationUpdateEvents::ConfigurationUpdateEvent(
                    ConfigurationUpdateEvent {
                        component_name: component.to_owned(),
                        key_path: key_path.to_vec(),
                    },
                ))
            }),
        );
        let guard = ConfigWatchGuard {
            nucleus: Arc::clone(&self.nucleus),
            id,
        };
        stream(
            SubscribeToConfigurationUpdate::RESPONSE_TYPE,
            &Empty {},
            Box::new(guard),
        )
    }
}

fn stream<T: Serialize>(
    model_type: &'static str,
    value: &T,
    guard: StreamGuard,
) -> Result<Outcome, Outcome> {
    match serde_json::to_vec(value) {
        Ok(payload) => Ok(Outcome::Stream {
            model_type,
            payload,
            guard,
        }),
        Err(e) => Err(service_error(e)),
    }
}

fn service_error(e: impl std::fmt::Display) -> Outcome {
    Outcome::Error(ErrorPayload::new(code::SERVICE_ERROR, e.to_string()))
}

fn not_found(e: ConfigError) -> Outcome {
    let (message, resource) = match e {
        ConfigError::UnknownComponent(c) => (format!("Component {c} not found"), c),
        ConfigError::NoSuchKey(path) => {
            let joined = path.join(".");
            (format!("Key not found: {joined}"), joined)
        }
    };
    Outcome::Error(
        ErrorPayload::new(code::RESOURCE_NOT_FOUND_ERROR, message)
            .with_member("resourceName", resource)
            .with_member("resourceType", "Configuration"),
    )
}

struct ConfigWatchGuard {
    nucleus: Arc<Nucleus>,
    id: u64,
}

impl Drop for ConfigWatchGuard {
    fn drop(&mut self) {
        self.nucleus.unwatch(self.id);
    }
}

/// Ends a SubscribeToIoTCore stream: the bus entry goes, then the nucleus lets the filter go on
/// IoT Core when no other component holds it.
struct IotSubscriptionGuard {
    /// The generation the stream was made in, and the current one.
    generation: u64,
    current: Arc<AtomicU64>,
    bus: Option<BusSubscription<MqttMessage>>,
    world: Arc<SharedWorld>,
    core: String,
    filter: String,
}

impl Drop for IotSubscriptionGuard {
    fn drop(&mut self) {
        drop(self.bus.take());
        // A stream the nucleus already let go of holds nothing on IoT Core any more.
        if self.current.load(Ordering::SeqCst) == self.generation {
            self.world.unsubscribe_from_core(&self.core, &self.filter);
        }
    }
}

/// A task that lives as long as its stream.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
