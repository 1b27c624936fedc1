//! Target `rpc_client`: the RPC message layer ([`RpcMessage`]) and what the IPC client does
//! with a message from the server ([`decode_reply`], and the event decoding of a
//! subscription).
//!
//! Input: a frame built from structured fuzzer data (headers of every eventstream type, with
//! the protocol's names most of the time; a JSON or raw payload). Properties:
//! - a frame that encodes decodes back to the same message;
//! - `from_frame` succeeds exactly when the three mandatory int32 headers are present and the
//!   message type is known, and then `into_frame` → `from_frame` gives the same message;
//! - the client turns every APPLICATION_ERROR into an error, every connection-level message
//!   into a protocol error, and an APPLICATION_MESSAGE into a response exactly when its payload
//!   decodes as the operation's response; every decoded response and event re-serialises to
//!   itself; every error has a message.

use crate::json;
use arbitrary::{Arbitrary, Unstructured};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use aws_smithy_types::DateTime;
use bytes::BytesMut;
use greengrass_jobs_handler::ipc::client::decode_reply;
use greengrass_jobs_handler::ipc::codec::FrameCodec;
use greengrass_jobs_handler::ipc::model::*;
use greengrass_jobs_handler::ipc::rpc::*;
use greengrass_jobs_handler::ipc::IpcError;
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::{Decoder, Encoder};

const NAMES: &[&str] = &[
    HEADER_MESSAGE_TYPE,
    HEADER_MESSAGE_FLAGS,
    HEADER_STREAM_ID,
    HEADER_VERSION,
    HEADER_CONTENT_TYPE,
    HEADER_OPERATION,
    HEADER_SERVICE_MODEL_TYPE,
];

fn header_value(u: &mut Unstructured<'_>) -> arbitrary::Result<HeaderValue> {
    Ok(match u.int_in_range(0..=9)? {
        0 | 1 => HeaderValue::Int32(if u.ratio(3, 4)? {
            u.int_in_range(-1..=8)?
        } else {
            i32::arbitrary(u)?
        }),
        2 => HeaderValue::Bool(bool::arbitrary(u)?),
        3 => HeaderValue::Byte(i8::arbitrary(u)?),
        4 => HeaderValue::Int16(i16::arbitrary(u)?),
        5 => HeaderValue::Int64(i64::arbitrary(u)?),
        6 => HeaderValue::ByteArray(Vec::<u8>::arbitrary(u)?.into()),
        7 => HeaderValue::Timestamp(DateTime::from_millis(i64::arbitrary(u)?)),
        8 => HeaderValue::Uuid(u128::arbitrary(u)?),
        _ => HeaderValue::String(String::arbitrary(u)?.into()),
    })
}

/// A frame: mostly the protocol's headers with plausible values, sometimes anything.
fn frame(u: &mut Unstructured<'_>) -> arbitrary::Result<Message> {
    let mut headers = Vec::new();
    if u.ratio(7, 8)? {
        for name in &NAMES[..3] {
            if u.ratio(15, 16)? {
                headers.push(Header::new(*name, header_value(u)?));
            }
        }
    }
    for _ in 0..u.int_in_range(0..=5)? {
        let name = if u.ratio(3, 4)? {
            (*u.choose(NAMES)?).to_owned()
        } else {
            String::arbitrary(u)?
        };
        headers.push(Header::new(name, header_value(u)?));
    }
    let payload = if u.ratio(3, 4)? {
        serde_json::to_vec(&json::value(u, 4)?).unwrap_or_default()
    } else {
        Vec::<u8>::arbitrary(u)?
    };
    Ok(Message::new_from_parts(headers, payload))
}

/// The shape survives JSON: what was decoded serialises and decodes to itself.
fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let text = serde_json::to_vec(value).expect("a decoded shape serialises");
    let again: T = serde_json::from_slice(&text).expect("a serialised shape decodes");
    assert_eq!(&again, value, "shape changed on the way through JSON");
}

fn check_error(error: &IpcError) {
    assert!(!error.to_string().is_empty());
}

/// The client's view of one reply to operation `O`.
fn reply<O: Operation>(message: &RpcMessage)
where
    O::Response: PartialEq + std::fmt::Debug,
{
    let result = decode_reply::<O>(message);
    match message.message_type {
        MessageType::ApplicationMessage => {
            let body: &[u8] = if message.payload.is_empty() {
                b"{}"
            } else {
                &message.payload
            };
            let direct = serde_json::from_slice::<O::Response>(body);
            assert_eq!(result.is_ok(), direct.is_ok(), "{}", O::NAME);
            match result {
                Ok(response) => round_trips(&response),
                Err(e) => {
                    assert!(matches!(e, IpcError::BadResponse { .. }), "{e:?}");
                    check_error(&e);
                }
            }
        }
        MessageType::ApplicationError => match result {
            Ok(r) => panic!("{}: an APPLICATION_ERROR decoded as {r:?}", O::NAME),
            Err(e) => {
                assert!(
                    matches!(e, IpcError::Service { .. } | IpcError::StreamClosed { .. }),
                    "{e:?}"
                );
                check_error(&e);
            }
        },
        _ => match result {
            Ok(r) => panic!("{}: a connection-level message decoded as {r:?}", O::NAME),
            Err(e) => {
                assert!(matches!(e, IpcError::Protocol(_)), "{e:?}");
                check_error(&e);
            }
        },
    }
}

/// What a subscription does with an event of operation `O`.
fn event<O: StreamingOperation>(message: &RpcMessage)
where
    O::Event: PartialEq + std::fmt::Debug,
{
    if let Ok(event) = serde_json::from_slice::<O::Event>(&message.payload) {
        round_trips(&event);
    }
}

pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(frame) = frame(&mut u) else { return };
    let mut codec = FrameCodec::default();
    let mut wire = BytesMut::new();
    if codec.encode(frame.clone(), &mut wire).is_ok() {
        let decoded = codec
            .decode(&mut wire)
            .expect("an encoded frame decodes")
            .expect("an encoded frame is complete");
        assert_eq!(decoded, frame);
    }
    let int32 = |name: &str| {
        frame
            .headers()
            .iter()
            .rev()
            .find(|h| h.name().as_str() == name)
            .map(|h| h.value().as_int32().ok())
    };
    let message = match RpcMessage::from_frame(&frame) {
        Ok(message) => message,
        Err(RpcError::MissingHeader(name)) => {
            assert_eq!(int32(name), None, "{name} was there");
            return;
        }
        Err(RpcError::WrongHeaderType(name)) => {
            assert!(frame.headers().iter().any(|h| h.name().as_str() == name));
            return;
        }
        Err(RpcError::UnknownMessageType(t)) => {
            assert_eq!(MessageType::from_i32(t), None);
            return;
        }
    };
    assert_eq!(
        int32(HEADER_STREAM_ID),
        Some(Some(message.stream_id)),
        "the last :stream-id header counts"
    );
    let again = RpcMessage::from_frame(&message.clone().into_frame());
    assert_eq!(again.as_ref(), Ok(&message));

    reply::<PublishToIoTCore>(&message);
    reply::<SubscribeToIoTCore>(&message);
    reply::<PublishToTopic>(&message);
    reply::<SubscribeToTopic>(&message);
    reply::<UpdateState>(&message);
    reply::<GetConfiguration>(&message);
    reply::<SubscribeToConfigurationUpdate>(&message);
    event::<SubscribeToIoTCore>(&message);
    event::<SubscribeToTopic>(&message);
    event::<SubscribeToConfigurationUpdate>(&message);
}
