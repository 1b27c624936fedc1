//! The Greengrass IPC client: one connection to the nucleus, shared by any number of callers.
//!
//! Owns: CONNECT/CONNECT_ACK, stream-id allocation, routing responses and stream events back
//! to their callers, per-request timeouts, closing subscriptions, and the `closed()` signal.
//! Must not know: jobs, or what a component does with the messages.
//!
//! One task owns the socket. Callers hand it frames over an unbounded channel and get answers
//! back on oneshot/mpsc channels, so a caller may make IPC calls while it is handling a
//! subscription event: nothing the socket task does ever waits on a caller.
//!
//! When the connection ends, the nucleus has gone away or restarted, and the SVCUID token this
//! process was started with is no longer valid: reconnecting cannot work. The component must
//! exit non-zero so that the nucleus restarts it with a fresh token ([`IpcClient::closed`]).

use super::codec::FrameCodec;
use super::error::{ErrorPayload, IpcError};
use super::model::*;
use super::rpc::*;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::Framed;

/// Socket path the nucleus gives each component.
pub const ENV_SOCKET_PATH: &str = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT";
/// Authentication token the nucleus gives each component.
pub const ENV_AUTH_TOKEN: &str = "SVCUID";

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long CONNECT may wait for CONNECT_ACK.
    pub connect_timeout: Duration,
    /// How long a request may wait for its response.
    pub request_timeout: Duration,
    pub max_frame_len: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_frame_len: super::codec::DEFAULT_MAX_FRAME_LEN,
        }
    }
}

/// Where the socket task sends what arrives on a stream.
enum Route {
    /// A request/response operation: the one response.
    Response(oneshot::Sender<RpcMessage>),
    /// A streaming operation: the response, then every event.
    Stream {
        response: Option<oneshot::Sender<RpcMessage>>,
        events: mpsc::UnboundedSender<RpcMessage>,
    },
}

enum Command {
    /// Open stream `stream_id` with its first frame.
    Open { message: RpcMessage, route: Route },
    /// The caller gave up on the stream (timeout, or a subscription was dropped).
    Close { stream_id: i32, terminate: bool },
}

struct Shared {
    commands: mpsc::UnboundedSender<Command>,
    /// Next stream id. Locked while the command is queued so queue order is id order.
    next_stream_id: Mutex<i32>,
    closed: watch::Receiver<bool>,
    options: ClientOptions,
}

/// A connection to the nucleus's IPC server. Cheap to clone; all clones share the connection.
#[derive(Clone)]
pub struct IpcClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for IpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcClient").finish_non_exhaustive()
    }
}

impl IpcClient {
    /// Connects with the socket path and token from the environment the nucleus sets.
    pub async fn connect_from_env(options: ClientOptions) -> Result<Self, IpcError> {
        let path =
            std::env::var_os(ENV_SOCKET_PATH).ok_or(IpcError::MissingEnv(ENV_SOCKET_PATH))?;
        let token =
            std::env::var(ENV_AUTH_TOKEN).map_err(|_| IpcError::MissingEnv(ENV_AUTH_TOKEN))?;
        Self::connect(Path::new(&path), &token, options).await
    }

    /// Connects to `socket_path` and authenticates with `auth_token`.
    pub async fn connect(
        socket_path: &Path,
        auth_token: &str,
        options: ClientOptions,
    ) -> Result<Self, IpcError> {
        let stream = UnixStream::connect(socket_path).await?;
        let mut framed = Framed::new(stream, FrameCodec::new(options.max_frame_len));
        let payload = serde_json::to_vec(&serde_json::json!({ "authToken": auth_token }))
            .map_err(|e| IpcError::Protocol(e.to_string()))?;
        let mut connect = RpcMessage::new(MessageType::Connect, 0, 0).with_json(payload);
        connect.version = Some(PROTOCOL_VERSION.to_owned());
        framed.send(connect.into_frame()).await?;

        let ack = tokio::time::timeout(options.connect_timeout, framed.next())
            .await
            .map_err(|_| IpcError::Timeout {
                operation: "CONNECT",
                after: options.connect_timeout,
            })?;
        let ack = match ack {
            // The server closes the socket after refusing; a race may show only the close.
            None => return Err(IpcError::ConnectionRejected),
            Some(frame) => {
                RpcMessage::from_frame(&frame?).map_err(|e| IpcError::Protocol(e.to_string()))?
            }
        };
        match ack.message_type {
            MessageType::ConnectAck if ack.flags & FLAG_CONNECTION_ACCEPTED != 0 => {}
            MessageType::ConnectAck => return Err(IpcError::ConnectionRejected),
            other => {
                return Err(IpcError::Protocol(format!(
                    "expected CONNECT_ACK, got {other:?}: {}",
                    String::from_utf8_lossy(&ack.payload)
                )))
            }
        }

        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed) = watch::channel(false);
        tokio::spawn(run_connection(framed, commands_rx, closed_tx));
        Ok(Self {
            shared: Arc::new(Shared {
                commands,
                next_stream_id: Mutex::new(1),
                closed,
                options,
            }),
        })
    }

    /// Resolves when the connection to the nucleus has ended.
    pub async fn closed(&self) {
        let mut closed = self.shared.closed.clone();
        // Err: the socket task is gone, which also means closed.
        let _ = closed.wait_for(|closed| *closed).await;
    }

    pub fn is_closed(&self) -> bool {
        *self.shared.closed.borrow() || self.shared.commands.is_closed()
    }

    fn open(&self, mut message: RpcMessage, route: Route) -> Result<i32, IpcError> {
        let mut next = self
            .shared
            .next_stream_id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stream_id = *next;
        message.stream_id = stream_id;
        self.shared
            .commands
            .send(Command::Open { message, route })
            .map_err(|_| IpcError::ConnectionClosed)?;
        *next = next.checked_add(1).ok_or(IpcError::ConnectionClosed)?;
        Ok(stream_id)
    }

    fn request_frame<O: Operation>(request: &O::Request) -> Result<RpcMessage, IpcError> {
        let payload = serde_json::to_vec(request).map_err(|e| IpcError::Protocol(e.to_string()))?;
        Ok(RpcMessage::new(MessageType::ApplicationMessage, 0, 0)
            .with_operation(O::NAME)
            .with_model_type(O::REQUEST_TYPE)
            .with_json(payload))
    }

    async fn await_response<O: Operation>(
        &self,
        stream_id: i32,
        response: oneshot::Receiver<RpcMessage>,
        terminate_on_timeout: bool,
    ) -> Result<O::Response, IpcError> {
        let timeout = self.shared.options.request_timeout;
        match tokio::time::timeout(timeout, response).await {
            Err(_) => {
                let _ = self.shared.commands.send(Command::Close {
                    stream_id,
                    terminate: terminate_on_timeout,
                });
                Err(IpcError::Timeout {
                    operation: O::NAME,
                    after: timeout,
                })
            }
            Ok(Err(_)) => Err(IpcError::ConnectionClosed),
            Ok(Ok(message)) => decode_reply::<O>(&message),
        }
    }

    /// Calls a request/response operation.
    pub async fn call<O: Operation>(&self, request: &O::Request) -> Result<O::Response, IpcError> {
        let (tx, rx) = oneshot::channel();
        let stream_id = self.open(Self::request_frame::<O>(request)?, Route::Response(tx))?;
        self.await_response::<O>(stream_id, rx, false).await
    }

    /// Calls a streaming operation; events arrive on the returned [`Subscription`].
    pub async fn subscribe<O: StreamingOperation>(
        &self,
        request: &O::Request,
    ) -> Result<(O::Response, Subscription<O::Event>), IpcError> {
        let (tx, rx) = oneshot::channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let route = Route::Stream {
            response: Some(tx),
            events: events_tx,
        };
        let stream_id = self.open(Self::request_frame::<O>(request)?, route)?;
        let response = self.await_response::<O>(stream_id, rx, true).await?;
        Ok((
            response,
            Subscription {
                operation: O::NAME,
                stream_id,
                events,
                commands: self.shared.commands.clone(),
                closed: false,
                _event: std::marker::PhantomData,
            },
        ))
    }

    pub async fn publish_to_iot_core(
        &self,
        topic: &str,
        qos: Qos,
        payload: impl Into<Vec<u8>>,
    ) -> Result<(), IpcError> {
        self.call::<PublishToIoTCore>(&PublishToIoTCoreRequest::new(topic, qos, payload))
            .await
            .map(drop)
    }

    pub async fn subscribe_to_iot_core(
        &self,
        topic_filter: &str,
        qos: Qos,
    ) -> Result<Subscription<IoTCoreMessage>, IpcError> {
        let request = SubscribeToIoTCoreRequest {
            topic_name: topic_filter.to_owned(),
            qos,
        };
        Ok(self.subscribe::<SubscribeToIoTCore>(&request).await?.1)
    }

    pub async fn publish_to_topic(
        &self,
        topic: &str,
        message: PublishMessage,
    ) -> Result<(), IpcError> {
        let request = PublishToTopicRequest {
            topic: topic.to_owned(),
            publish_message: message,
        };
        self.call::<PublishToTopic>(&request).await.map(drop)
    }

    pub async fn subscribe_to_topic(
        &self,
        topic_filter: &str,
        receive_mode: Option<ReceiveMode>,
    ) -> Result<Subscription<SubscriptionResponseMessage>, IpcError> {
        let request = SubscribeToTopicRequest {
            topic: topic_filter.to_owned(),
            receive_mode,
        };
        Ok(self.subscribe::<SubscribeToTopic>(&request).await?.1)
    }

    pub async fn update_state(&self, state: ReportedLifecycleState) -> Result<(), IpcError> {
        self.call::<UpdateState>(&UpdateStateRequest { state })
            .await
            .map(drop)
    }

    /// Reads this component's configuration at `key_path` (empty: all of it).
    pub async fn get_configuration(
        &self,
        key_path: &[&str],
    ) -> Result<GetConfigurationResponse, IpcError> {
        let request = GetConfigurationRequest {
            component_name: None,
            key_path: key_path.iter().map(|s| (*s).to_owned()).collect(),
        };
        self.call::<GetConfiguration>(&request).await
    }

    pub async fn subscribe_to_configuration_update(
        &self,
        key_path: &[&str],
    ) -> Result<Subscription<ConfigurationUpdateEvents>, IpcError> {
        let request = SubscribeToConfigurationUpdateRequest {
            component_name: None,
            key_path: key_path.iter().map(|s| (*s).to_owned()).collect(),
        };
        Ok(self
            .subscribe::<SubscribeToConfigurationUpdate>(&request)
            .await?
            .1)
    }
}

/// What a caller of operation `O` gets from the server's reply `message`: the response, or
/// the error the reply stands for. The same decoding [`IpcClient::call`] applies; public so
/// that the decoding can be exercised without a socket.
pub fn decode_reply<O: Operation>(message: &RpcMessage) -> Result<O::Response, IpcError> {
    decode_response::<O::Response>(O::NAME, message)
}

fn decode_response<T: for<'de> serde::Deserialize<'de>>(
    operation: &'static str,
    message: &RpcMessage,
) -> Result<T, IpcError> {
    match message.message_type {
        MessageType::ApplicationMessage => {
            let body: &[u8] = if message.payload.is_empty() {
                b"{}"
            } else {
                &message.payload
            };
            serde_json::from_slice(body)
                .map_err(|source| IpcError::BadResponse { operation, source })
        }
        MessageType::ApplicationError => Err(decode_error(operation, message)),
        other => Err(IpcError::Protocol(format!(
            "{operation}: unexpected {other:?} on a stream"
        ))),
    }
}

fn decode_error(operation: &'static str, message: &RpcMessage) -> IpcError {
    let text = String::from_utf8_lossy(&message.payload).into_owned();
    let Some(model_type) = message.service_model_type.as_deref() else {
        // What the nucleus sends for an operation it does not serve.
        return IpcError::StreamClosed {
            operation,
            detail: text,
        };
    };
    match serde_json::from_slice::<ErrorPayload>(&message.payload) {
        Ok(payload) => IpcError::Service {
            operation,
            code: payload
                .error_code
                .clone()
                .unwrap_or_else(|| model_type.trim_start_matches("aws.greengrass#").to_owned()),
            message: payload
                .message
                .clone()
                .or_else(|| payload.internal_message.clone())
                .unwrap_or_default(),
            payload: Box::new(payload),
        },
        Err(_) => IpcError::Service {
            operation,
            code: model_type.trim_start_matches("aws.greengrass#").to_owned(),
            message: text,
            payload: Box::new(ErrorPayload::new(model_type, "")),
        },
    }
}

/// Events of one streaming operation, in the order the server sent them.
///
/// Dropping it (or calling [`Subscription::close`]) tells the server to end the stream.
pub struct Subscription<E> {
    operation: &'static str,
    stream_id: i32,
    events: mpsc::UnboundedReceiver<RpcMessage>,
    commands: mpsc::UnboundedSender<Command>,
    closed: bool,
    _event: std::marker::PhantomData<fn() -> E>,
}

impl<E> std::fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("operation", &self.operation)
            .field("stream_id", &self.stream_id)
            .finish()
    }
}

impl<E: for<'de> serde::Deserialize<'de>> Subscription<E> {
    /// The next event; `None` once the stream or the connection has ended. An event that does
    /// not decode is logged and skipped.
    pub async fn recv(&mut self) -> Option<E> {
        loop {
            let message = self.events.recv().await?;
            match message.message_type {
                MessageType::ApplicationMessage => {
                    match serde_json::from_slice::<E>(&message.payload) {
                        Ok(event) => {
                            if message.terminates_stream() {
                                self.closed = true;
                            }
                            return Some(event);
                        }
                        Err(error) => {
                            tracing::warn!(operation = self.operation, %error, "skipping undecodable IPC event");
                            if message.terminates_stream() {
                                self.closed = true;
                                return None;
                            }
                        }
                    }
                }
                _ => {
                    self.closed = true;
                    tracing::warn!(
                        operation = self.operation,
                        error = %decode_error(self.operation, &message),
                        "subscription ended by the server"
                    );
                    return None;
                }
            }
        }
    }

    /// Ends the subscription (as dropping it does).
    pub fn close(self) {}
}

impl<E> Drop for Subscription<E> {
    fn drop(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = self.commands.send(Command::Close {
                stream_id: self.stream_id,
                terminate: true,
            });
        }
    }
}

/// The socket task: writes queued frames, routes incoming ones, answers PINGs.
async fn run_connection(
    mut framed: Framed<UnixStream, FrameCodec>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    closed: watch::Sender<bool>,
) {
    let mut routes: HashMap<i32, Route> = HashMap::new();
    let reason = loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { break "all clients dropped".to_owned() };
                if let Err(e) = write_commands(&mut framed, command, &mut commands, &mut routes).await {
                    break format!("write failed: {e}");
                }
            }
            frame = framed.next() => {
                let message = match frame {
                    None => break "the nucleus closed the connection".to_owned(),
                    Some(Err(e)) => break format!("read failed: {e}"),
                    Some(Ok(frame)) => match RpcMessage::from_frame(&frame) {
                        Ok(message) => message,
                        Err(e) => break format!("invalid message from the nucleus: {e}"),
                    },
                };
                match message.message_type {
                    MessageType::Ping => {
                        let pong = RpcMessage::new(MessageType::PingResponse, 0, 0);
                        if let Err(e) = framed.send(pong.into_frame()).await {
                            break format!("write failed: {e}");
                        }
                    }
                    MessageType::PingResponse => {}
                    MessageType::ProtocolError | MessageType::InternalError => {
                        break format!(
                            "the nucleus reported {:?}: {}",
                            message.message_type,
                            String::from_utf8_lossy(&message.payload)
                        );
                    }
                    MessageType::ApplicationMessage | MessageType::ApplicationError => {
                        route_message(message, &mut routes);
                    }
                    MessageType::Connect | MessageType::ConnectAck => {
                        break format!("unexpected {:?} after connecting", message.message_type);
                    }
                }
            }
        }
    };
    tracing::info!(%reason, "IPC connection closed");
    routes.clear();
    let _ = closed.send(true);
}

/// Writes `first` and whatever else is already queued, then flushes once.
async fn write_commands(
    framed: &mut Framed<UnixStream, FrameCodec>,
    first: Command,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    routes: &mut HashMap<i32, Route>,
) -> Result<(), super::codec::FrameError> {
    let mut next = Some(first);
    while let Some(command) = next {
        if let Some(message) = apply_command(command, routes) {
            framed.feed(message.into_frame()).await?;
        }
        next = commands.try_recv().ok();
    }
    framed.flush().await
}

fn apply_command(command: Command, routes: &mut HashMap<i32, Route>) -> Option<RpcMessage> {
    match command {
        Command::Open { message, route } => {
            routes.insert(message.stream_id, route);
            Some(message)
        }
        Command::Close {
            stream_id,
            terminate,
        } => {
            let was_open = routes.remove(&stream_id).is_some();
            (was_open && terminate).then(|| {
                RpcMessage::new(
                    MessageType::ApplicationMessage,
                    FLAG_TERMINATE_STREAM,
                    stream_id,
                )
            })
        }
    }
}

fn route_message(message: RpcMessage, routes: &mut HashMap<i32, Route>) {
    let stream_id = message.stream_id;
    let last = message.terminates_stream() || message.message_type == MessageType::ApplicationError;
    match routes.remove(&stream_id) {
        None => tracing::debug!(stream_id, "message for a stream that is no longer open"),
        Some(Route::Response(response)) => {
            let _ = response.send(message);
        }
        Some(Route::Stream {
            response: Some(response),
            events,
        }) => {
            let _ = response.send(message);
            if !last {
                routes.insert(
                    stream_id,
                    Route::Stream {
                        response: None,
                        events,
                    },
                );
            }
        }
        Some(Route::Stream {
            response: None,
            events,
        }) => {
            if events.send(message).is_ok() && !last {
                routes.insert(
                    stream_id,
                    Route::Stream {
                        response: None,
                        events,
                    },
                );
            }
        }
    }
}
