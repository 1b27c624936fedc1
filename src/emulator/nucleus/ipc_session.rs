//! One IPC connection's protocol state, as the nucleus's eventstream RPC server enforces it.
//!
//! Owns: the connect handshake (`:version`, token), stream-id ordering, the `operation` header
//! on a stream's first frame, stream termination, PING, and turning an operation's outcome into
//! frames. Must not know: sockets. It takes [`RpcMessage`]s and returns the ones to send, so
//! every rule can be tested with plain values.

use super::ipc_services::{CallContext, Outcome, Services, StreamGuard};
use crate::ipc::error::{code, ErrorPayload};
use crate::ipc::rpc::*;
use std::collections::HashMap;
use tokio::sync::mpsc;

/// Messages the peer gets for protocol violations (the server library's wording).
pub mod reason {
    pub const BAD_VERSION: &str =
        "Missing or invalid :version header. Only version 0.1.0 is supported.";
    pub const NOT_CONNECTED: &str = "Connect message must be the first message on a connection.";
    pub const ALREADY_CONNECTED: &str =
        "Connect message received on an already connected connection.";
    pub const STREAM_ID_ORDER: &str = "stream-id values must be monotonically incrementing. A stream-id arrived that was lower than the last seen stream-id.";
    pub const NO_OPERATION: &str = "The first message of a stream must carry an operation header.";
    pub const UNKNOWN_STREAM: &str = "A message arrived for a stream-id that is not open.";
    pub const CONNECTION_STREAM_ID: &str = "Connection-level messages must use stream-id 0 and application messages a stream-id above 0.";
    pub const BAD_MESSAGE_TYPE: &str = "A message type a client may not send arrived.";
}

/// What the connection must do after a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Send what was queued, then close the socket.
    Close,
}

enum Phase {
    AwaitingConnect,
    Connected { component: String },
}

/// Protocol state of one connection.
pub struct Session {
    connection_id: u64,
    phase: Phase,
    last_stream_id: i32,
    /// Open streams; the guard keeps a subscription's source alive.
    streams: HashMap<i32, Option<StreamGuard>>,
    events: mpsc::UnboundedSender<RpcMessage>,
}

/// A PROTOCOL_ERROR carrying `{"message": ...}`.
pub fn protocol_error(message: &str) -> RpcMessage {
    let body = serde_json::json!({ "message": message }).to_string();
    RpcMessage::new(MessageType::ProtocolError, 0, 0).with_json(body.into_bytes())
}

impl Session {
    /// `events` is where stream events of this connection's subscriptions are sent.
    pub fn new(connection_id: u64, events: mpsc::UnboundedSender<RpcMessage>) -> Self {
        Self {
            connection_id,
            phase: Phase::AwaitingConnect,
            last_stream_id: 0,
            streams: HashMap::new(),
            events,
        }
    }

    pub fn component(&self) -> Option<&str> {
        match &self.phase {
            Phase::Connected { component } => Some(component),
            Phase::AwaitingConnect => None,
        }
    }

    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Handles one message from the client; replies are pushed onto `out`.
    pub fn on_message(
        &mut self,
        services: &Services,
        message: RpcMessage,
        out: &mut Vec<RpcMessage>,
    ) -> Next {
        let component = match &self.phase {
            Phase::AwaitingConnect => return self.on_connect(services, message, out),
            Phase::Connected { component } => component.clone(),
        };
        match message.message_type {
            MessageType::Connect => {
                out.push(protocol_error(reason::ALREADY_CONNECTED));
                Next::Close
            }
            MessageType::Ping => {
                out.push(RpcMessage::new(MessageType::PingResponse, 0, 0));
                Next::Continue
            }
            MessageType::PingResponse => Next::Continue,
            MessageType::ApplicationMessage | MessageType::ApplicationError => {
                self.on_stream_message(services, &component, message, out)
            }
            MessageType::ConnectAck | MessageType::ProtocolError | MessageType::InternalError => {
                out.push(protocol_error(reason::BAD_MESSAGE_TYPE));
                Next::Close
            }
        }
    }

    fn on_connect(
        &mut self,
        services: &Services,
        message: RpcMessage,
        out: &mut Vec<RpcMessage>,
    ) -> Next {
        if message.message_type != MessageType::Connect {
            out.push(protocol_error(reason::NOT_CONNECTED));
            return Next::Close;
        }
        if message.version.as_deref() != Some(PROTOCOL_VERSION) {
            // The nucleus's server library refuses the connection (CONNECT_ACK without
            // CONNECTION_ACCEPTED), not with a PROTOCOL_ERROR.
            tracing::warn!(
                connection = self.connection_id,
                version = ?message.version,
                "{}",
                reason::BAD_VERSION
            );
            out.push(RpcMessage::new(MessageType::ConnectAck, 0, 0));
            return Next::Close;
        }
        let token = serde_json::from_slice::<serde_json::Value>(&message.payload)
            .ok()
            .and_then(|v| {
                v.get("authToken")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned)
            });
        let component = token.and_then(|t| services.nucleus.authenticate(&t));
        match component {
            Some(component) => {
                tracing::info!(%component, connection = self.connection_id, "IPC client connected");
                self.phase = Phase::Connected { component };
                out.push(RpcMessage::new(
                    MessageType::ConnectAck,
                    FLAG_CONNECTION_ACCEPTED,
                    0,
                ));
                Next::Continue
            }
            None => {
                tracing::warn!(
                    connection = self.connection_id,
                    "IPC client rejected: invalid token"
                );
                out.push(RpcMessage::new(MessageType::ConnectAck, 0, 0));
                Next::Close
            }
        }
    }

    fn on_stream_message(
        &mut self,
        services: &Services,
        component: &str,
        message: RpcMessage,
        out: &mut Vec<RpcMessage>,
    ) -> Next {
        let stream_id = message.stream_id;
        if stream_id <= 0 {
            out.push(protocol_error(reason::CONNECTION_STREAM_ID));
            return Next::Close;
        }
        if stream_id <= self.last_stream_id {
            return match self.streams.get(&stream_id) {
                Some(_) if message.terminates_stream() => {
                    self.streams.remove(&stream_id);
                    Next::Continue
                }
                // Greengrass operations take no further client messages on a stream.
                Some(_) => Next::Continue,
                // A late TERMINATE on a stream that already ended is harmless.
                None if message.terminates_stream() => Next::Continue,
                None => {
                    out.push(protocol_error(reason::UNKNOWN_STREAM));
                    Next::Close
                }
            };
        }
        if stream_id != self.last_stream_id.saturating_add(1) {
            out.push(protocol_error(reason::STREAM_ID_ORDER));
            return Next::Close;
        }
        let Some(operation) = message.operation.as_deref() else {
            out.push(protocol_error(reason::NO_OPERATION));
            return Next::Close;
        };
        self.last_stream_id = stream_id;
        let ctx = CallContext {
            component,
            connection_id: self.connection_id,
            stream_id,
            events: &self.events,
        };
        match services.handle(&ctx, operation, &message.payload) {
            Outcome::Response {
                model_type,
                payload,
            } => out.push(
                RpcMessage::new(
                    MessageType::ApplicationMessage,
                    FLAG_TERMINATE_STREAM,
                    stream_id,
                )
                .with_model_type(model_type)
                .with_json(payload),
            ),
            Outcome::Stream {
                model_type,
                payload,
                guard,
            } => {
                if message.terminates_stream() {
                    // The client closed the stream with its request; nothing will follow.
                    drop(guard);
                } else {
                    self.streams.insert(stream_id, Some(guard));
                }
                out.push(
                    RpcMessage::new(MessageType::ApplicationMessage, 0, stream_id)
                        .with_model_type(model_type)
                        .with_json(payload),
                );
            }
            Outcome::Error(error) => {
                tracing::info!(component, operation, error = ?error.message, "IPC operation failed");
                out.push(
                    RpcMessage::new(
                        MessageType::ApplicationError,
                        FLAG_TERMINATE_STREAM,
                        stream_id,
                    )
                    .with_model_type(&error.model_type())
                    .with_json(error.to_json()),
                );
            }
            Outcome::Unsupported => {
                tracing::warn!(component, operation, "IPC operation not supported");
                // No service-model-type, as the Java nucleus answers (awsiotsdk reports a
                // closed stream), but the error members every client's parser needs.
                let error = ErrorPayload::new(
                    code::SERVICE_ERROR,
                    format!("Operation {operation} is not supported by this server"),
                );
                out.push(
                    RpcMessage::new(
                        MessageType::ApplicationError,
                        FLAG_TERMINATE_STREAM,
                        stream_id,
                    )
                    .with_json(error.to_json()),
                );
            }
        }
        Next::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::nucleus::bus::TopicBus;
    use crate::emulator::nucleus::Nucleus;
    use crate::ipc::model::{Operation, PublishToIoTCore, UpdateState};
    use serde_json::json;
    use std::sync::Arc;

    fn services() -> Services {
        let nucleus = Arc::new(Nucleus::default());
        nucleus.register("Comp", "good", json!({}));
        let world = crate::emulator::world::World::new(0, 0);
        let clock = crate::emulator::clock::EmulatorClock::new(
            crate::emulator::clock::ClockMode::Manual,
            0,
        );
        Services {
            nucleus,
            local: Arc::new(TopicBus::default()),
            iot: Arc::new(TopicBus::default()),
            world: Arc::new(crate::emulator::shared_world::SharedWorld::new(
                world, clock, "dev",
            )),
            core: "dev".into(),
            connection_status: tokio::sync::watch::channel(Default::default()).1,
            serves_connection_status: true,
            iot_generation: Arc::default(),
        }
    }

    fn connect(token: &str, version: Option<&str>) -> RpcMessage {
        let mut m = RpcMessage::new(MessageType::Connect, 0, 0)
            .with_json(json!({ "authToken": token }).to_string().into_bytes());
        m.version = version.map(str::to_owned);
        m
    }

    fn request(stream_id: i32, operation: &str, body: serde_json::Value) -> RpcMessage {
        RpcMessage::new(MessageType::ApplicationMessage, 0, stream_id)
            .with_operation(operation)
            .with_json(body.to_string().into_bytes())
    }

    fn connected(services: &Services) -> Session {
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut s = Session::new(1, tx);
        let mut out = vec![];
        assert_eq!(
            s.on_message(services, connect("good", Some("0.1.0")), &mut out),
            Next::Continue
        );
        assert_eq!(out[0].message_type, MessageType::ConnectAck);
        assert_eq!(out[0].flags, FLAG_CONNECTION_ACCEPTED);
        s
    }

    fn payload_message(m: &RpcMessage) -> String {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        v["message"].as_str().unwrap().to_owned()
    }

    #[test]
    fn wrong_token_gets_a_refusing_ack_and_close() {
        let svc = services();
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut s = Session::new(1, tx);
        let mut out = vec![];
        assert_eq!(
            s.on_message(&svc, connect("bad", Some("0.1.0")), &mut out),
            Next::Close
        );
        assert_eq!(out, vec![RpcMessage::new(MessageType::ConnectAck, 0, 0)]);
    }

    #[test]
    fn a_bad_version_is_refused_with_a_connect_ack_without_acceptance() {
        let svc = services();
        for first in [connect("good", Some("0.2.0")), connect("good", None)] {
            let (tx, _rx) = mpsc::unbounded_channel();
            let mut s = Session::new(1, tx);
            let mut out = vec![];
            assert_eq!(s.on_message(&svc, first, &mut out), Next::Close);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].message_type, MessageType::ConnectAck);
            assert_eq!(out[0].flags & FLAG_CONNECTION_ACCEPTED, 0);
        }
    }

    #[test]
    fn early_messages_are_protocol_errors() {
        let svc = services();
        for first in [
            request(1, UpdateState::NAME, json!({"state": "RUNNING"})),
            RpcMessage::new(MessageType::Ping, 0, 0),
        ] {
            let (tx, _rx) = mpsc::unbounded_channel();
            let mut s = Session::new(1, tx);
            let mut out = vec![];
            assert_eq!(s.on_message(&svc, first, &mut out), Next::Close);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].message_type, MessageType::ProtocolError);
        }
    }

    #[test]
    fn an_unsupported_operation_error_carries_the_error_members() {
        let svc = services();
        let mut s = connected(&svc);
        let mut out = vec![];
        s.on_message(
            &svc,
            request(1, "aws.greengrass#GetSecretValue", json!({})),
            &mut out,
        );
        assert_eq!(out[0].message_type, MessageType::ApplicationError);
        assert_eq!(
            out[0].service_model_type, None,
            "as the Java nucleus: no model type"
        );
        let v: serde_json::Value = serde_json::from_slice(&out[0].payload).unwrap();
        assert_eq!(v["_errorCode"], "ServiceError");
        assert_eq!(v["_service"], "aws.greengrass#GreengrassCoreIPC");
        assert!(v["_message"].as_str().unwrap().contains("GetSecretValue"));
    }

    #[test]
    fn second_connect_is_a_protocol_error() {
        let svc = services();
        let mut s = connected(&svc);
        let mut out = vec![];
        assert_eq!(
            s.on_message(&svc, connect("good", Some("0.1.0")), &mut out),
            Next::Close
        );
        assert_eq!(payload_message(&out[0]), reason::ALREADY_CONNECTED);
    }

    #[test]
    fn stream_ids_must_increase_by_one() {
        let svc = services();
        let mut s = connected(&svc);
        let mut out = vec![];
        let running = json!({"state": "RUNNING"});
        assert_eq!(
            s.on_message(
                &svc,
                request(1, UpdateState::NAME, running.clone()),
                &mut out
            ),
            Next::Continue
        );
        assert_eq!(out[0].flags, FLAG_TERMINATE_STREAM);
        assert_eq!(
            out[0].service_model_type.as_deref(),
            Some(UpdateState::RESPONSE_TYPE)
        );
        out.clear();
        assert_eq!(
            s.on_message(&svc, request(3, UpdateState::NAME, running), &mut out),
            Next::Close
        );
        assert_eq!(out[0].message_type, MessageType::ProtocolError);
        assert_eq!(payload_message(&out[0]), reason::STREAM_ID_ORDER);
    }

    #[test]
    fn first_frame_needs_an_operation_and_unknown_ones_are_refused() {
        let svc = services();
        let mut s = connected(&svc);
        let mut out = vec![];
        s.on_message(
            &svc,
            request(1, "aws.greengrass#GetSecretValue", json!({})),
            &mut out,
        );
        assert_eq!(out[0].message_type, MessageType::ApplicationError);
        assert_eq!(out[0].flags, FLAG_TERMINATE_STREAM);
        assert_eq!(out[0].service_model_type, None);
        out.clear();
        let mut no_op = request(2, "x", json!({}));
        no_op.operation = None;
        assert_eq!(s.on_message(&svc, no_op, &mut out), Next::Close);
        assert_eq!(payload_message(&out[0]), reason::NO_OPERATION);
    }

    #[test]
    fn terminate_on_a_closed_stream_is_ignored_and_ping_is_answered() {
        let svc = services();
        let mut s = connected(&svc);
        let mut out = vec![];
        s.on_message(
            &svc,
            request(
                1,
                PublishToIoTCore::NAME,
                json!({"topicName": "a", "qos": "0"}),
            ),
            &mut out,
        );
        out.clear();
        let terminate = RpcMessage::new(MessageType::ApplicationMessage, FLAG_TERMINATE_STREAM, 1);
        assert_eq!(s.on_message(&svc, terminate, &mut out), Next::Continue);
        assert!(out.is_empty());
        assert_eq!(
            s.on_message(&svc, RpcMessage::new(MessageType::Ping, 0, 0), &mut out),
            Next::Continue
        );
        assert_eq!(out, vec![RpcMessage::new(MessageType::PingResponse, 0, 0)]);
        out.clear();
        let stray = RpcMessage::new(MessageType::ApplicationMessage, 0, 1);
        assert_eq!(s.on_message(&svc, stray, &mut out), Next::Close);
    }

    #[test]
    fn modeled_errors_carry_error_code() {
        let svc = services();
        let mut s = connected(&svc);
        let mut out = vec![];
        let bad = json!({"topicName": "a/+", "qos": "1"});
        s.on_message(&svc, request(1, PublishToIoTCore::NAME, bad), &mut out);
        assert_eq!(out[0].message_type, MessageType::ApplicationError);
        assert_eq!(
            out[0].service_model_type.as_deref(),
            Some("aws.greengrass#ServiceError")
        );
        let v: serde_json::Value = serde_json::from_slice(&out[0].payload).unwrap();
        assert_eq!(v["_errorCode"], "ServiceError");
        out.clear();
        s.on_message(
            &svc,
            request(2, UpdateState::NAME, json!("not an object")),
            &mut out,
        );
        assert_eq!(out[0].message_type, MessageType::ApplicationError);
    }

    #[test]
    fn subscriptions_stay_open_until_terminated() {
        let svc = services();
        let mut s = connected(&svc);
        let mut out = vec![];
        s.on_message(
            &svc,
            request(
                1,
                "aws.greengrass#SubscribeToIoTCore",
                json!({"topicName": "a/#", "qos": "1"}),
            ),
            &mut out,
        );
        assert_eq!(out[0].flags, 0);
        assert_eq!(s.open_streams(), 1);
        assert_eq!(svc.iot.subscription_count(), 1);
        let terminate = RpcMessage::new(MessageType::ApplicationMessage, FLAG_TERMINATE_STREAM, 1);
        s.on_message(&svc, terminate, &mut out);
        assert_eq!(s.open_streams(), 0);
        assert_eq!(svc.iot.subscription_count(), 0);
    }
}
