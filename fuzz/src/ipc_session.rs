//! Target `ipc_session`: the emulated nucleus's connection rules ([`Session`]) behind its
//! operations ([`Services`]), fed messages built from fuzzer data (as decoded frames would be).
//!
//! Properties:
//! - before the handshake succeeds the server answers only CONNECT_ACK or PROTOCOL_ERROR;
//! - every reply and every stream event is a well-formed RPC message that survives the wire;
//! - a reply to a stream message carries that message's stream id, connection-level replies
//!   stream id 0, and every APPLICATION_MESSAGE reply names its model type;
//! - the server closes the connection only after telling the peer why (PROTOCOL_ERROR or a
//!   refusing CONNECT_ACK), and events only flow on streams it opened.

use crate::json;
use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use greengrass_jobs_handler::emulator::clock::ClockMode;
use greengrass_jobs_handler::emulator::nucleus::ipc_services::Services;
use greengrass_jobs_handler::emulator::nucleus::ipc_session::{Next, Session};
use greengrass_jobs_handler::emulator::{Emulator, EmulatorOptions};
use greengrass_jobs_handler::ipc::codec::FrameCodec;
use greengrass_jobs_handler::ipc::model::*;
use greengrass_jobs_handler::ipc::rpc::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::codec::{Decoder, Encoder};

const TOKEN: &str = "token-of-comp";

const OPERATIONS: &[&str] = &[
    PublishToIoTCore::NAME,
    SubscribeToIoTCore::NAME,
    PublishToTopic::NAME,
    SubscribeToTopic::NAME,
    UpdateState::NAME,
    GetConfiguration::NAME,
    SubscribeToConfigurationUpdate::NAME,
    "aws.greengrass#GetSecretValue",
];

fn services(strict: bool) -> Arc<Services> {
    let emulator = Emulator::with_options(EmulatorOptions {
        thing: "dev".into(),
        clock: ClockMode::Manual,
        ..EmulatorOptions::default()
    });
    let nucleus = emulator.nucleus();
    nucleus.register(
        "Comp",
        TOKEN,
        json!({
            "jitterMaxMs": 5,
            "nested": {"a": [1, 2], "b": {"c": "d"}},
            "accessControl": {
                "aws.greengrass.ipc.mqttproxy": {"p1": {
                    "operations": ["aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"],
                    "resources": ["$aws/things/dev/jobs/*", "a/#", "reconnect/dev"]}},
                "aws.greengrass.ipc.pubsub": {"p2": {"operations": ["*"], "resources": ["*"]}}
            }
        }),
    );
    nucleus.set_strict_access_control(strict);
    Arc::clone(emulator.default_core().services())
}

/// One message of the client, from fuzzer data.
fn client_message(u: &mut Unstructured<'_>, last_stream: i32) -> arbitrary::Result<RpcMessage> {
    let stream_id = match u.int_in_range(0..=3)? {
        0 | 1 => last_stream.saturating_add(1),
        2 => u.int_in_range(0..=last_stream.max(0))?,
        _ => i32::arbitrary(u)?,
    };
    let mut message = match u.int_in_range(0..=9)? {
        0 => {
            let token = if u.ratio(3, 4)? {
                TOKEN.to_owned()
            } else {
                String::arbitrary(u)?
            };
            let mut m = RpcMessage::new(MessageType::Connect, 0, 0)
                .with_json(json!({ "authToken": token }).to_string().into_bytes());
            m.version = if u.ratio(3, 4)? {
                Some(PROTOCOL_VERSION.to_owned())
            } else {
                Option::<String>::arbitrary(u)?
            };
            m
        }
        1 => RpcMessage::new(MessageType::Ping, 0, 0),
        2 => RpcMessage::new(
            MessageType::ApplicationMessage,
            FLAG_TERMINATE_STREAM,
            stream_id,
        ),
        3 => {
            let t = MessageType::from_i32(u.int_in_range(0..=7)?).unwrap_or(MessageType::Ping);
            RpcMessage::new(t, i32::arbitrary(u)?, stream_id)
        }
        _ => {
            let operation = if u.ratio(7, 8)? {
                (*u.choose(OPERATIONS)?).to_owned()
            } else {
                String::arbitrary(u)?
            };
            let flags = if u.ratio(7, 8)? {
                0
            } else {
                FLAG_TERMINATE_STREAM
            };
            let mut m = RpcMessage::new(MessageType::ApplicationMessage, flags, stream_id);
            if u.ratio(15, 16)? {
                m = m.with_operation(&operation);
            }
            let body = request_body(u, &operation)?;
            m.with_json(body)
        }
    };
    if u.ratio(1, 16)? {
        message.payload = Vec::<u8>::arbitrary(u)?.into();
    }
    Ok(message)
}

/// A request body: usually the operation's shape with fuzzed values, sometimes any JSON.
fn request_body(u: &mut Unstructured<'_>, operation: &str) -> arbitrary::Result<Vec<u8>> {
    const TOPICS: &[&str] = &[
        "a/b",
        "a/#",
        "a/+",
        "$aws/things/dev/jobs/get",
        "reconnect/dev",
        "#",
        "b",
    ];
    let topic = if u.ratio(3, 4)? {
        (*u.choose(TOPICS)?).to_owned()
    } else {
        String::arbitrary(u)?
    };
    let payload = String::from_utf8_lossy(&Vec::<u8>::arbitrary(u)?).into_owned();
    let body = match operation {
        _ if u.ratio(1, 8)? => json::value(u, 3)?,
        o if o == PublishToIoTCore::NAME => {
            json!({"topicName": topic, "qos": *u.choose(&["0", "1", "2"])?,
                   "payload": crate::json::value(u, 0)?})
        }
        o if o == SubscribeToIoTCore::NAME => json!({"topicName": topic, "qos": "1"}),
        o if o == PublishToTopic::NAME => {
            if bool::arbitrary(u)? {
                json!({"topic": topic, "publishMessage": {"jsonMessage": {"message": json::value(u, 2)?}}})
            } else {
                json!({"topic": topic, "publishMessage": {"binaryMessage": {"message": payload}}})
            }
        }
        o if o == SubscribeToTopic::NAME => json!({"topic": topic}),
        o if o == UpdateState::NAME => json!({"state": *u.choose(&["RUNNING", "ERRORED", "x"])?}),
        o if o == GetConfiguration::NAME || o == SubscribeToConfigurationUpdate::NAME => {
            let path: Vec<&str> = (0..u.int_in_range(0..=3)?)
                .map(|_| {
                    u.choose(&["nested", "a", "b", "c", "jitterMaxMs", ""])
                        .copied()
                })
                .collect::<Result<_, _>>()?;
            let mut body = json!({"keyPath": path});
            if u.ratio(1, 4)? {
                body["componentName"] = json!(*u.choose(&["Comp", "Other"])?);
            }
            body
        }
        _ => json::value(u, 2)?,
    };
    Ok(serde_json::to_vec(&body).unwrap_or_default())
}

/// The message survives encoding and decoding unchanged.
fn survives_the_wire(message: &RpcMessage) {
    let mut codec = FrameCodec::default();
    let mut wire = BytesMut::new();
    codec
        .encode(message.clone().into_frame(), &mut wire)
        .expect("a server message encodes");
    let frame = codec.decode(&mut wire).expect("decodes").expect("complete");
    assert_eq!(RpcMessage::from_frame(&frame).as_ref(), Ok(message));
}

pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(strict) = bool::arbitrary(&mut u) else {
        return;
    };
    let services = services(strict);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut session = Session::new(7, events_tx);
    let mut last_stream = 0;
    let mut opened = BTreeSet::new();
    while !u.is_empty() {
        let Ok(message) = client_message(&mut u, last_stream) else {
            break;
        };
        let connected_before = session.component().is_some();
        let mut out = Vec::new();
        let next = session.on_message(&services, message.clone(), &mut out);
        for reply in &out {
            survives_the_wire(reply);
            if !connected_before {
                assert!(
                    matches!(
                        reply.message_type,
                        MessageType::ConnectAck | MessageType::ProtocolError
                    ),
                    "{reply:?} before the handshake"
                );
            }
            if reply.message_type.is_stream_level() {
                assert_eq!(
                    reply.stream_id, message.stream_id,
                    "reply on another stream"
                );
                assert!(message.message_type.is_stream_level());
            } else {
                assert_eq!(reply.stream_id, 0);
            }
            if reply.message_type == MessageType::ApplicationMessage {
                assert!(reply.service_model_type.is_some(), "{reply:?}");
                opened.insert(reply.stream_id);
            }
        }
        if session.component().is_some() && message.message_type.is_stream_level() {
            last_stream = last_stream.max(message.stream_id);
        }
        while let Ok(event) = events.try_recv() {
            survives_the_wire(&event);
            assert_eq!(event.message_type, MessageType::ApplicationMessage);
            assert!(
                opened.contains(&event.stream_id),
                "event on stream {} never opened",
                event.stream_id
            );
        }
        assert!(session.open_streams() <= opened.len());
        if next == Next::Close {
            let told = out.iter().any(|r| {
                r.message_type == MessageType::ProtocolError
                    || (r.message_type == MessageType::ConnectAck
                        && r.flags & FLAG_CONNECTION_ACCEPTED == 0)
            });
            assert!(told, "closed without saying why: {out:?}");
            break;
        }
    }
}
