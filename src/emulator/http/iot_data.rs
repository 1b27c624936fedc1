//! The `iot-data` plane's Publish (`POST /topics/{topic}?qos=`) and shadows
//! (UpdateThingShadow `POST`, GetThingShadow `GET`, DeleteThingShadow `DELETE` on
//! `/things/{thingName}/shadow?name=`), served on the control listener as boto3's `iot-data`
//! client reaches it with the same `endpoint_url`.
//!
//! Owns: the routes, their parameters and answers. Must not know: the broker's delivery rules,
//! sockets or hyper.

use super::server::{error, ok, Reply, Request};
use crate::emulator::cloud::shadows::ShadowError;
use crate::emulator::shared_world::SharedWorld;
use serde_json::json;

fn shadow_reply(r: Result<serde_json::Value, ShadowError>) -> Reply {
    match r {
        Ok(v) => ok(v),
        Err(e) => error(e.status, e.code, e.message),
    }
}

/// Serves a Publish or a shadow call, or `None` when the path is neither.
pub fn handle(cloud: &SharedWorld, request: &Request<'_>) -> Option<Reply> {
    let segs = request.segs();
    if let ["things", thing, "shadow"] = segs.as_slice() {
        let name = request.query_value("name").unwrap_or_default();
        let (thing, body) = (*thing, request.body);
        return match request.method {
            "POST" => Some(shadow_reply(
                cloud.with(|w| w.update_thing_shadow(thing, &name, body)),
            )),
            "GET" => Some(shadow_reply(
                cloud.with(|w| w.get_thing_shadow(thing, &name)),
            )),
            "DELETE" => Some(shadow_reply(
                cloud.with(|w| w.delete_thing_shadow(thing, &name)),
            )),
            _ => None,
        };
    }
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
