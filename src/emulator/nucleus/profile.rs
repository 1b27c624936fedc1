//! Which Greengrass runtime the emulated nucleus behaves like, where the runtimes differ in
//! what a component sees.
//!
//! Owns: the differences the emulator models between the Java nucleus and nucleus lite: the
//! largest MQTT packet the core accepts from IoT Core, and whether
//! SubscribeToIoTCoreConnectionStatus is served. Must not know: IPC frames or the world.

/// The largest MQTT packet nucleus lite's MQTT client accepts (it announces this maximum packet
/// size, so the broker silently drops anything larger to the core).
pub const LITE_MAX_INBOUND_PACKET: usize = 5_000;

/// The runtime an emulated core runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NucleusProfile {
    /// The Java nucleus: messages to the core up to IoT Core's own limit.
    #[default]
    Java,
    /// Nucleus lite 2.6.0: messages to the core over [`LITE_MAX_INBOUND_PACKET`] bytes are
    /// dropped, and SubscribeToIoTCoreConnectionStatus is refused (it arrives in 2.7).
    Lite,
}

impl NucleusProfile {
    /// The largest MQTT PUBLISH packet the core receives, when limited.
    pub fn max_inbound_packet(self) -> Option<usize> {
        match self {
            Self::Java => None,
            Self::Lite => Some(LITE_MAX_INBOUND_PACKET),
        }
    }

    /// Whether this runtime serves SubscribeToIoTCoreConnectionStatus at all.
    pub fn serves_connection_status(self) -> bool {
        self == Self::Java
    }
}

/// The size of the MQTT 5 PUBLISH packet (QoS 1, no properties) carrying `payload` on `topic`:
/// what a client's maximum packet size is compared with.
pub fn publish_packet_size(topic: &str, payload: usize) -> usize {
    // Topic length prefix, topic, packet identifier, property length, payload.
    let remaining = 2 + topic.len() + 2 + 1 + payload;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_size_counts_header_topic_and_payload() {
        assert_eq!(publish_packet_size("a/b", 0), 1 + 1 + 2 + 3 + 2 + 1);
        assert_eq!(publish_packet_size("t", 200), 1 + 2 + 2 + 1 + 2 + 1 + 200);
    }

    #[test]
    fn only_lite_caps_inbound_messages_and_refuses_connection_status() {
        assert_eq!(NucleusProfile::Java.max_inbound_packet(), None);
        assert_eq!(NucleusProfile::Lite.max_inbound_packet(), Some(5_000));
        assert!(NucleusProfile::Java.serves_connection_status());
        assert!(!NucleusProfile::Lite.serves_connection_status());
    }
}
