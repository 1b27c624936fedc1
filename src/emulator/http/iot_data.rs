//! The `iot-data` plane's Publish (`POST /topics/{topic}?qos=`), served on the control
//! listener as boto3's `iot-data` client reaches it with the same `endpoint_url`.
//!
//! Owns: the route, its parameters and answer. Must not know: the broker's delivery rules,
//! sockets or hyper.

use super::server::{error, ok, Reply, Request};
use crate::emulator::shared_world::SharedWorld;
use serde_json::json;

/// Serves a Publish, or `None` when the path is not `/topics/...`.
pub fn handle(cloud: &SharedWorld, request: &Request<'_>) -> Option<Reply> {
    let segs = request.segs();
    let ("POST", ["topics", ..]) = (request.method, segs.as_slice()) else {
        return None;
    };
    // A topic holds `/`; boto3 percent-encodes it as one segment, other clients may not.
    let topic = request.segments[1..].join("/");
    if topic.is_empty() || topic.contains(['+', '#']) {
        return Some(error(
            400,
            "InvalidRequestException",
            format!("{topic:?} is not a topic name"),
        ));
    }
    let qos = match request.query_value("qos").as_deref() {
        None | Some("0") => 0,
        Some("1") => 1,
        Some(other) => {
            return Some(error(
                400,
                "InvalidRequestException",
                format!("qos must be 0 or 1, got {other:?}"),
            ))
        }
    };
    cloud.operator_publish(&topic, request.body, qos);
    Some(ok(json!({})))
}
