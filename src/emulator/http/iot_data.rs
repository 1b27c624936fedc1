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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::clock::ClockMode;
    use crate::emulator::{Emulator, EmulatorOptions};
    use crate::ipc::model::MqttMessage;
    use std::sync::{Arc, Mutex};

    #[test]
    fn publishes_reach_subscribers_with_their_qos() {
        let e = Emulator::with_options(EmulatorOptions {
            thing: "core".into(),
            clock: ClockMode::Manual,
            ..EmulatorOptions::default()
        });
        let world = e.world();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let _guard = world.tap().subscribe(
            "fleet/#",
            0,
            false,
            Box::new(move |topic, m: &MqttMessage| {
                let payload = m.payload.as_ref().map(|b| b.0.clone()).unwrap_or_default();
                sink.lock().unwrap().push((topic.to_owned(), payload));
                true
            }),
        );
        let request = Request::new("POST", "/topics/fleet%2Falerts", "qos=1", b"hot");
        assert_eq!(handle(world, &request).map(|r| r.status), Some(200));
        assert_eq!(
            *seen.lock().unwrap(),
            [("fleet/alerts".to_owned(), b"hot".to_vec())]
        );
        for (path, query) in [
            ("/topics/a%2F%23", ""),
            ("/topics/a", "qos=2"),
            ("/topics/", ""),
        ] {
            let r = handle(world, &Request::new("POST", path, query, b"x"));
            assert_eq!(
                r.and_then(|r| r.error_type),
                Some("InvalidRequestException"),
                "{path}?{query}"
            );
        }
        assert!(handle(world, &Request::new("GET", "/topics/a", "", b"")).is_none());
    }
}
