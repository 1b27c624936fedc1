//! The Greengrass IPC shapes this project speaks, as serde types, and the operations that use them.
//!
//! Owns: the JSON form of requests, responses and stream events (member names, enum values,
//! base64 blobs, one-key unions) and each operation's `operation` / `service-model-type` names.
//! Must not know: framing, streams, sockets. Client and emulator server share these types.
//!
//! Written by hand from `aws.greengrass#GreengrassCoreIPC` (the Smithy model the device SDKs are
//! generated from) for the handful of operations a jobs handler needs; generating all 170 shapes
//! would add code that nothing here calls.

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// One IPC operation: its names on the wire and its request and response shapes.
pub trait Operation {
    /// `operation` header of the first request frame.
    const NAME: &'static str;
    const REQUEST_TYPE: &'static str;
    const RESPONSE_TYPE: &'static str;
    type Request: Serialize + for<'de> Deserialize<'de> + Send + 'static;
    type Response: Serialize + for<'de> Deserialize<'de> + Send + 'static;
}

/// An operation whose response is followed by events on the same stream.
pub trait StreamingOperation: Operation {
    /// `service-model-type` of each event: the streaming union's name.
    const EVENT_TYPE: &'static str;
    type Event: Serialize + for<'de> Deserialize<'de> + Send + 'static;
}

/// The service name the nucleus writes into error payloads.
pub const SERVICE_NAME: &str = "aws.greengrass#GreengrassCoreIPC";

macro_rules! operation {
    ($op:ident, $req:ty, $resp:ty) => {
        pub struct $op;
        impl Operation for $op {
            const NAME: &'static str = concat!("aws.greengrass#", stringify!($op));
            const REQUEST_TYPE: &'static str =
                concat!("aws.greengrass#", stringify!($op), "Request");
            const RESPONSE_TYPE: &'static str =
                concat!("aws.greengrass#", stringify!($op), "Response");
            type Request = $req;
            type Response = $resp;
        }
    };
    ($op:ident, $req:ty, $resp:ty, $event:ident) => {
        operation!($op, $req, $resp);
        impl StreamingOperation for $op {
            const EVENT_TYPE: &'static str = concat!("aws.greengrass#", stringify!($event));
            type Event = $event;
        }
    };
}

operation!(PublishToIoTCore, PublishToIoTCoreRequest, Empty);
operation!(
    SubscribeToIoTCore,
    SubscribeToIoTCoreRequest,
    Empty,
    IoTCoreMessage
);
operation!(PublishToTopic, PublishToTopicRequest, Empty);
operation!(
    SubscribeToTopic,
    SubscribeToTopicRequest,
    SubscribeToTopicResponse,
    SubscriptionResponseMessage
);
operation!(UpdateState, UpdateStateRequest, Empty);
operation!(
    GetConfiguration,
    GetConfigurationRequest,
    GetConfigurationResponse
);
operation!(
    SubscribeToConfigurationUpdate,
    SubscribeToConfigurationUpdateRequest,
    Empty,
    ConfigurationUpdateEvents
);

operation!(
    SubscribeToIoTCoreConnectionStatus,
    Empty,
    SubscribeToIoTCoreConnectionStatusResponse,
    IoTCoreConnectionStatusEvent
);

/// A structure with no members (`{}` on the wire); unknown members are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {}

/// MQTT quality of service; the model's enum values are the strings `"0"` and `"1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Qos {
    #[serde(rename = "0")]
    AtMostOnce,
    #[serde(rename = "1")]
    AtLeastOnce,
}

/// `aws.greengrass#PayloadFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadFormat {
    #[serde(rename = "0")]
    Bytes,
    #[serde(rename = "1")]
    Utf8,
}

/// A Smithy blob: raw bytes, base64 in JSON.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(text) if text.len() <= 256 => write!(f, "Blob({text:?})"),
            _ => write!(f, "Blob({} bytes)", self.0.len()),
        }
    }
}

impl From<Vec<u8>> for Blob {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl From<&[u8]> for Blob {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Blob)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserProperty {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishToIoTCoreRequest {
    pub topic_name: String,
    pub qos: Qos,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Blob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_properties: Option<Vec<UserProperty>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_expiry_interval_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_data: Option<Blob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format: Option<PayloadFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

impl PublishToIoTCoreRequest {
    pub fn new(topic_name: impl Into<String>, qos: Qos, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            topic_name: topic_name.into(),
            qos,
            payload: Some(Blob(payload.into())),
            retain: None,
            user_properties: None,
            message_expiry_interval_seconds: None,
            correlation_data: None,
            response_topic: None,
            payload_format: None,
            content_type: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeToIoTCoreRequest {
    pub topic_name: String,
    pub qos: Qos,
}

/// An MQTT message delivered from AWS IoT Core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MqttMessage {
    pub topic_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Blob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_properties: Option<Vec<UserProperty>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_expiry_interval_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_data: Option<Blob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format: Option<PayloadFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

impl MqttMessage {
    pub fn new(topic_name: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            topic_name: topic_name.into(),
            payload: Some(Blob(payload.into())),
            retain: None,
            user_properties: None,
            message_expiry_interval_seconds: None,
            correlation_data: None,
            response_topic: None,
            payload_format: None,
            content_type: None,
        }
    }

    /// The payload bytes (empty when the message had none).
    pub fn payload(&self) -> &[u8] {
        self.payload.as_ref().map(|b| b.0.as_slice()).unwrap_or(&[])
    }
}

impl From<PublishToIoTCoreRequest> for MqttMessage {
    fn from(r: PublishToIoTCoreRequest) -> Self {
        Self {
            topic_name: r.topic_name,
            payload: r.payload,
            retain: r.retain,
            user_properties: r.user_properties,
            message_expiry_interval_seconds: r.message_expiry_interval_seconds,
            correlation_data: r.correlation_data,
            response_topic: r.response_topic,
            payload_format: r.payload_format,
            content_type: r.content_type,
        }
    }
}

/// Stream event of SubscribeToIoTCore (`aws.greengrass#IoTCoreMessage`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IoTCoreMessage {
    Message(MqttMessage),
}

/// `aws.greengrass#ConnectionStatus`: the core's IoT Core connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionStatus {
    Connected,
    Disconnected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionStatusEvent {
    pub status: ConnectionStatus,
}

/// Stream event of SubscribeToIoTCoreConnectionStatus
/// (`aws.greengrass#IoTCoreConnectionStatusEvent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IoTCoreConnectionStatusEvent {
    ConnectionStatusEvent(ConnectionStatusEvent),
}

impl IoTCoreConnectionStatusEvent {
    pub fn new(connected: bool) -> Self {
        Self::ConnectionStatusEvent(ConnectionStatusEvent {
            status: if connected {
                ConnectionStatus::Connected
            } else {
                ConnectionStatus::Disconnected
            },
        })
    }

    pub fn connected(&self) -> bool {
        let Self::ConnectionStatusEvent(e) = self;
        e.status == ConnectionStatus::Connected
    }
}

/// The first response of SubscribeToIoTCoreConnectionStatus; `messages` carries the current
/// status (it also comes as the stream's first event).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubscribeToIoTCoreConnectionStatusResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<IoTCoreConnectionStatusEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<MessageContext>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Blob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<MessageContext>,
}

/// `aws.greengrass#PublishMessage`: what a component publishes on a local topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PublishMessage {
    JsonMessage(JsonMessage),
    BinaryMessage(BinaryMessage),
}

impl PublishMessage {
    pub fn json(message: Value) -> Self {
        Self::JsonMessage(JsonMessage {
            message: Some(message),
            context: None,
        })
    }

    pub fn binary(message: impl Into<Vec<u8>>) -> Self {
        Self::BinaryMessage(BinaryMessage {
            message: Some(Blob(message.into())),
            context: None,
        })
    }

    /// The same message as delivered to subscribers: with the topic in its context.
    pub fn delivered_on(self, topic: &str) -> SubscriptionResponseMessage {
        let context = Some(MessageContext {
            topic: Some(topic.to_owned()),
        });
        match self {
            Self::JsonMessage(m) => SubscriptionResponseMessage::JsonMessage(JsonMessage {
                message: m.message,
                context,
            }),
            Self::BinaryMessage(m) => SubscriptionResponseMessage::BinaryMessage(BinaryMessage {
                message: m.message,
                context,
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishToTopicRequest {
    pub topic: String,
    pub publish_message: PublishMessage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReceiveMode {
    ReceiveAllMessages,
    ReceiveMessagesFromOthers,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeToTopicRequest {
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_mode: Option<ReceiveMode>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeToTopicResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
}

/// Stream event of SubscribeToTopic (`aws.greengrass#SubscriptionResponseMessage`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SubscriptionResponseMessage {
    JsonMessage(JsonMessage),
    BinaryMessage(BinaryMessage),
}

impl SubscriptionResponseMessage {
    /// The topic the message was published on, when the server said.
    pub fn topic(&self) -> Option<&str> {
        let context = match self {
            Self::JsonMessage(m) => m.context.as_ref(),
            Self::BinaryMessage(m) => m.context.as_ref(),
        };
        context.and_then(|c| c.topic.as_deref())
    }
}

/// `aws.greengrass#ReportedLifecycleState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReportedLifecycleState {
    Running,
    Errored,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateStateRequest {
    pub state: ReportedLifecycleState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetConfigurationRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_name: Option<String>,
    pub key_path: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetConfigurationResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeToConfigurationUpdateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_name: Option<String>,
    pub key_path: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationUpdateEvent {
    pub component_name: String,
    pub key_path: Vec<String>,
}

/// Stream event of SubscribeToConfigurationUpdate (`aws.greengrass#ConfigurationUpdateEvents`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConfigurationUpdateEvents {
    ConfigurationUpdateEvent(ConfigurationUpdateEvent),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_the_model() {
        assert_eq!(PublishToIoTCore::NAME, "aws.greengrass#PublishToIoTCore");
        assert_eq!(
            SubscribeToIoTCore::RESPONSE_TYPE,
            "aws.greengrass#SubscribeToIoTCoreResponse"
        );
        assert_eq!(
            SubscribeToIoTCore::EVENT_TYPE,
            "aws.greengrass#IoTCoreMessage"
        );
        assert_eq!(
            SubscribeToConfigurationUpdate::EVENT_TYPE,
            "aws.greengrass#ConfigurationUpdateEvents"
        );
    }

    #[test]
    fn publish_request_json_matches_python_client() {
        // What awsiotsdk writes (spacing aside).
        let wire = r#"{"topicName": "a/b", "qos": "1", "payload": "aGVsbG8="}"#;
        let req: PublishToIoTCoreRequest = serde_json::from_str(wire).unwrap();
        assert_eq!(
            req,
            PublishToIoTCoreRequest::new("a/b", Qos::AtLeastOnce, b"hello".to_vec())
        );
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"topicName": "a/b", "qos": "1", "payload": "aGVsbG8="})
        );
    }

    #[test]
    fn unions_are_one_key_objects() {
        let event = IoTCoreMessage::Message(MqttMessage::new("t", b"x".to_vec()));
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"message": {"topicName": "t", "payload": "eA=="}})
        );
        let delivered = PublishMessage::json(json!({"k": 1})).delivered_on("local/t");
        assert_eq!(
            serde_json::to_value(&delivered).unwrap(),
            json!({"jsonMessage": {"message": {"k": 1}, "context": {"topic": "local/t"}}})
        );
        assert_eq!(delivered.topic(), Some("local/t"));
    }

    #[test]
    fn bad_base64_and_enums_are_errors_not_panics() {
        assert!(serde_json::from_str::<Blob>(r#""not base64!""#).is_err());
        assert!(serde_json::from_str::<Qos>(r#""2""#).is_err());
        assert!(serde_json::from_str::<UpdateStateRequest>(r#"{"state": "BROKEN"}"#).is_err());
    }
}
