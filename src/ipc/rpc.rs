//! The eventstream RPC message model shared by the IPC client and the emulator's server.
//!
//! Owns: message types, flags, the `:`-prefixed headers, `operation` / `service-model-type`,
//! and the conversion between an [`RpcMessage`] and a raw eventstream [`Message`].
//! Must not know: sockets, tasks, or what any operation's payload means.
//!
//! The header names and numeric values are those of aws-c-event-stream's RPC layer, which both
//! the Greengrass nucleus and the device SDK clients speak.

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;

pub const HEADER_MESSAGE_TYPE: &str = ":message-type";
pub const HEADER_MESSAGE_FLAGS: &str = ":message-flags";
pub const HEADER_STREAM_ID: &str = ":stream-id";
pub const HEADER_VERSION: &str = ":version";
pub const HEADER_CONTENT_TYPE: &str = ":content-type";
pub const HEADER_OPERATION: &str = "operation";
pub const HEADER_SERVICE_MODEL_TYPE: &str = "service-model-type";

/// The only protocol version the nucleus accepts in CONNECT.
pub const PROTOCOL_VERSION: &str = "0.1.0";
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// Flag on CONNECT_ACK: the connection was accepted.
pub const FLAG_CONNECTION_ACCEPTED: i32 = 1;
/// Flag on a stream message: this is the last message of the stream.
pub const FLAG_TERMINATE_STREAM: i32 = 2;

/// `:message-type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    ApplicationMessage = 0,
    ApplicationError = 1,
    Ping = 2,
    PingResponse = 3,
    Connect = 4,
    ConnectAck = 5,
    ProtocolError = 6,
    InternalError = 7,
}

impl MessageType {
    pub fn from_i32(value: i32) -> Option<Self> {
        Some(match value {
            0 => Self::ApplicationMessage,
            1 => Self::ApplicationError,
            2 => Self::Ping,
            3 => Self::PingResponse,
            4 => Self::Connect,
            5 => Self::ConnectAck,
            6 => Self::ProtocolError,
            7 => Self::InternalError,
            _ => return None,
        })
    }

    /// Application messages and errors travel on a stream; everything else is connection-level.
    pub fn is_stream_level(self) -> bool {
        matches!(self, Self::ApplicationMessage | Self::ApplicationError)
    }
}

/// A frame that is not a valid RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("missing or non-int32 header {0}")]
    MissingHeader(&'static str),
    #[error("unknown message type {0}")]
    UnknownMessageType(i32),
    #[error("header {0} has the wrong type")]
    WrongHeaderType(&'static str),
}

/// One RPC message: the headers this protocol defines, decoded, plus the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcMessage {
    pub message_type: MessageType,
    pub flags: i32,
    pub stream_id: i32,
    pub operation: Option<String>,
    pub service_model_type: Option<String>,
    pub content_type: Option<String>,
    pub version: Option<String>,
    pub payload: Bytes,
}

impl RpcMessage {
    /// A message with only the three mandatory headers.
    pub fn new(message_type: MessageType, flags: i32, stream_id: i32) -> Self {
        Self {
            message_type,
            flags,
            stream_id,
            operation: None,
            service_model_type: None,
            content_type: None,
            version: None,
            payload: Bytes::new(),
        }
    }

    pub fn with_json(mut self, payload: impl Into<Bytes>) -> Self {
        self.content_type = Some(CONTENT_TYPE_JSON.to_owned());
        self.payload = payload.into();
        self
    }

    pub fn with_operation(mut self, operation: &str) -> Self {
        self.operation = Some(operation.to_owned());
        self
    }

    pub fn with_model_type(mut self, model_type: &str) -> Self {
        self.service_model_type = Some(model_type.to_owned());
        self
    }

    pub fn terminates_stream(&self) -> bool {
        self.flags & FLAG_TERMINATE_STREAM != 0
    }

    /// Reads the RPC headers from a frame. Header order is not significant, and headers this
    /// protocol does not define are ignored, as the nucleus does.
    pub fn from_frame(frame: &Message) -> Result<Self, RpcError> {
        let mut message_type = None;
        let mut flags = None;
        let mut stream_id = None;
        let mut operation = None;
        let mut service_model_type = None;
        let mut content_type = None;
        let mut version = None;
        for header in frame.headers() {
            let value = header.value();
            match header.name().as_str() {
                HEADER_MESSAGE_TYPE => message_type = Some(int32(value, HEADER_MESSAGE_TYPE)?),
                HEADER_MESSAGE_FLAGS => flags = Some(int32(value, HEADER_MESSAGE_FLAGS)?),
                HEADER_STREAM_ID => stream_id = Some(int32(value, HEADER_STREAM_ID)?),
                HEADER_OPERATION => operation = Some(string(value, HEADER_OPERATION)?),
                HEADER_SERVICE_MODEL_TYPE => {
                    service_model_type = Some(string(value, HEADER_SERVICE_MODEL_TYPE)?)
                }
                HEADER_CONTENT_TYPE => content_type = Some(string(value, HEADER_CONTENT_TYPE)?),
                HEADER_VERSION => version = Some(string(value, HEADER_VERSION)?),
                _ => {}
            }
        }
        let raw_type = message_type.ok_or(RpcError::MissingHeader(HEADER_MESSAGE_TYPE))?;
        Ok(Self {
            message_type: MessageType::from_i32(raw_type)
                .ok_or(RpcError::UnknownMessageType(raw_type))?,
            flags: flags.ok_or(RpcError::MissingHeader(HEADER_MESSAGE_FLAGS))?,
            stream_id: stream_id.ok_or(RpcError::MissingHeader(HEADER_STREAM_ID))?,
            operation,
            service_model_type,
            content_type,
            version,
            payload: frame.payload().clone(),
        })
    }

    /// Builds the frame: the three mandatory headers first, then the optional ones.
    pub fn into_frame(self) -> Message {
        let mut headers = Vec::with_capacity(7);
        headers.push(Header::new(
            HEADER_MESSAGE_TYPE,
            HeaderValue::Int32(self.message_type as i32),
        ));
        headers.push(Header::new(
            HEADER_MESSAGE_FLAGS,
            HeaderValue::Int32(self.flags),
        ));
        headers.push(Header::new(
            HEADER_STREAM_ID,
            HeaderValue::Int32(self.stream_id),
        ));
        let optional = [
            (HEADER_VERSION, self.version),
            (HEADER_CONTENT_TYPE, self.content_type),
            (HEADER_OPERATION, self.operation),
            (HEADER_SERVICE_MODEL_TYPE, self.service_model_type),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                headers.push(Header::new(name, HeaderValue::String(value.into())));
            }
        }
        Message::new_from_parts(headers, self.payload)
    }
}

fn int32(value: &HeaderValue, name: &'static str) -> Result<i32, RpcError> {
    value
        .as_int32()
        .map_err(|_| RpcError::WrongHeaderType(name))
}

fn string(value: &HeaderValue, name: &'static str) -> Result<String, RpcError> {
    value
        .as_string()
        .map(|s| s.as_str().to_owned())
        .map_err(|_| RpcError::WrongHeaderType(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::codec::FrameCodec;
    use bytes::BytesMut;
    use tokio_util::codec::Encoder;

    #[test]
    fn connect_ack_matches_the_nucleus_bytes() {
        // 71 bytes, three headers, no payload (see the wire captures).
        let ack = RpcMessage::new(MessageType::ConnectAck, FLAG_CONNECTION_ACCEPTED, 0);
        let mut buf = BytesMut::new();
        FrameCodec::default()
            .encode(ack.into_frame(), &mut buf)
            .unwrap();
        assert_eq!(buf.len(), 71);
        assert_eq!(&buf[..8], &[0, 0, 0, 0x47, 0, 0, 0, 0x37]);
        assert_eq!(&buf[8..12], &[0x37, 0x4c, 0xfe, 0x3f]);
        assert_eq!(&buf[67..], &[0xe2, 0x37, 0xe2, 0x7d]);
    }

    #[test]
    fn round_trips_all_headers_in_any_order() {
        let msg = RpcMessage::new(MessageType::ApplicationMessage, FLAG_TERMINATE_STREAM, 3)
            .with_operation("aws.greengrass#UpdateState")
            .with_model_type("aws.greengrass#UpdateStateRequest")
            .with_json(&b"{}"[..]);
        let frame = msg.clone().into_frame();
        let mut reversed: Vec<Header> = frame.headers().to_vec();
        reversed.reverse();
        let frame = Message::new_from_parts(reversed, frame.payload().clone());
        assert_eq!(RpcMessage::from_frame(&frame).unwrap(), msg);
    }

    #[test]
    fn rejects_missing_and_mistyped_headers() {
        let frame = Message::new_from_parts(
            vec![Header::new(HEADER_MESSAGE_TYPE, HeaderValue::Int32(0))],
            Bytes::new(),
        );
        assert_eq!(
            RpcMessage::from_frame(&frame),
            Err(RpcError::MissingHeader(HEADER_MESSAGE_FLAGS))
        );
        let frame = Message::new_from_parts(
            vec![
                Header::new(HEADER_MESSAGE_TYPE, HeaderValue::String("0".into())),
                Header::new(HEADER_MESSAGE_FLAGS, HeaderValue::Int32(0)),
                Header::new(HEADER_STREAM_ID, HeaderValue::Int32(0)),
            ],
            Bytes::new(),
        );
        assert_eq!(
            RpcMessage::from_frame(&frame),
            Err(RpcError::WrongHeaderType(HEADER_MESSAGE_TYPE))
        );
        let frame = RpcMessage::new(MessageType::Ping, 0, 0).into_frame();
        let mut headers = frame.headers().to_vec();
        headers[0] = Header::new(HEADER_MESSAGE_TYPE, HeaderValue::Int32(42));
        let frame = Message::new_from_parts(headers, Bytes::new());
        assert_eq!(
            RpcMessage::from_frame(&frame),
            Err(RpcError::UnknownMessageType(42))
        );
    }
}
