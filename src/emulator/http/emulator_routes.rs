//! The emulator's own routes (`/emulator/...`): its clock, its core devices and their
//! connections, the broker's session expiry and injected throttling.
//!
//! Owns: paths, parameters and answers of those routes. Must not know: AWS REST shapes, the
//! Jobs rules, sockets or hyper.

use super::aws_iot::from_control;
use super::server::{error, ok, Reply, Request};
use crate::emulator::clock::ClockMode;
use crate::emulator::Emulator;
use serde_json::{json, Value};

/// The largest step one `clock/advance` takes (a year): the world's clock is epoch ms.
const MAX_ADVANCE_SECONDS: u64 = 366 * 24 * 3600;

fn seconds(request: &Request<'_>) -> Result<u64, Reply> {
    let raw = request
        .query_value("seconds")
        .ok_or_else(|| error(400, "InvalidRequestException", "seconds is required"))?;
    raw.parse::<u64>()
        .ok()
        .filter(|s| *s <= MAX_ADVANCE_SECONDS)
        .ok_or_else(|| {
            error(
                400,
                "InvalidRequestException",
                format!(
                    "seconds must be a whole number from 0 to {MAX_ADVANCE_SECONDS}, got {raw:?}"
                ),
            )
        })
}

fn clock_json(emulator: &Emulator) -> Value {
    let world = emulator.world();
    let mode = match world.clock_mode() {
        ClockMode::Wall => "wall",
        ClockMode::Manual => "manual",
    };
    json!({"now": world.now(), "mode": mode})
}

fn core_json(emulator: &Emulator, thing: &str) -> Value {
    json!({"thingName": thing, "connected": emulator.world().core_connected(thing)})
}

/// Serves one `/emulator/...` request, or `None` when the path is not one of them.
pub fn handle(emulator: &Emulator, request: &Request<'_>) -> Option<Reply> {
    let segs = request.segs();
    let ["emulator", rest @ ..] = segs.as_slice() else {
        return None;
    };
    let world = emulator.world();
    let known_core = |thing: &str| -> Result<(), Reply> {
        emulator.core(thing).map(|_| ()).ok_or_else(|| {
            error(
                404,
                "ResourceNotFoundException",
                format!("no core device {thing}"),
            )
        })
    };
    let reply = match (request.method, rest) {
        ("GET", ["clock"]) => ok(clock_json(emulator)),
        ("POST", ["clock", "advance"]) => match seconds(request) {
            Ok(s) => {
                world.advance(s * 1000);
                ok(clock_json(emulator))
            }
            Err(r) => r,
        },
        ("GET", ["cores"]) => {
            let cores: Vec<Value> = emulator
                .core_names()
                .iter()
                .map(|c| core_json(emulator, c))
                .collect();
            ok(json!({"cores": cores}))
        }
        ("POST", ["cores", thing]) => match emulator.add_core(thing) {
            Ok(_) => ok(core_json(emulator, thing)),
            Err(e) => from_control(e),
        },
        (
            "POST",
            ["cores", thing, action @ ("disconnect" | "reconnect" | "close-subscriptions")],
        ) => match known_core(thing) {
            Err(r) => r,
            Ok(()) => match *action {
                "disconnect" => {
                    world.disconnect_core(thing);
                    ok(core_json(emulator, thing))
                }
                "reconnect" => {
                    let clean = request.flag("clean");
                    world.reconnect_core(thing, clean);
                    let mut v = core_json(emulator, thing);
                    v["clean"] = json!(clean);
                    ok(v)
                }
                _ => {
                    let closed = emulator
                        .core(thing)
                        .map_or(0, |c| c.close_iot_subscriptions_silently());
                    ok(json!({"thingName": thing, "closed": closed}))
                }
            },
        },
        ("POST", ["session-expiry"]) => match seconds(request) {
            Ok(s) => {
                let effective_ms = world.with(|w| {
                    w.broker_mut().set_session_expiry_ms(s * 1000);
                    w.broker().session_expiry_ms()
                });
                ok(json!({"sessionExpirySeconds": effective_ms / 1000}))
            }
            Err(r) => r,
        },
        ("POST", ["nucleus", "disconnect"]) => {
            world.disconnect_nucleus();
            ok(json!({"connected": false}))
        }
        ("POST", ["nucleus", "reconnect"]) => {
            let clean = request.flag("clean");
            world.reconnect_nucleus(clean);
            ok(json!({"connected": true, "clean": clean}))
        }
        ("POST", ["things", thing, "throttle"]) => {
            let count = request
                .query_value("count")
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            world.throttle(thing, count);
            ok(json!({"throttled": count}))
        }
        ("GET", ["health"]) => {
            ok(json!({"thing": world.thing_name(), "nucleusConnected": world.nucleus_connected()}))
        }
        _ => return None,
    };
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::EmulatorOptions;

    fn emulator() -> Emulator {
        Emulator::with_options(EmulatorOptions {
            thing: "core".into(),
            clock: ClockMode::Manual,
            start_ms: 1_000_000,
            ..EmulatorOptions::default()
        })
    }

    fn call(e: &Emulator, method: &str, path: &str, query: &str) -> Reply {
        let request = Request::new(method, path, query, b"");
        handle(e, &request).unwrap_or_else(|| super::super::server::no_route(&request))
    }

    #[test]
    fn the_clock_reads_and_advances() {
        let e = emulator();
        let r = call(&e, "GET", "/emulator/clock", "");
        assert_eq!(
            (r["now"].as_u64(), r["mode"].as_str()),
            (Some(1_000_000), Some("manual"))
        );
        let r = call(&e, "POST", "/emulator/clock/advance", "seconds=90");
        assert_eq!(r["now"].as_u64(), Some(1_090_000));
        assert_eq!(e.world().now(), 1_090_000);
        for bad in ["", "seconds=-1", "seconds=x", "seconds=99999999999"] {
            let r = call(&e, "POST", "/emulator/clock/advance", bad);
            assert_eq!(r.error_type, Some("InvalidRequestException"), "{bad}");
        }
        assert_eq!(e.world().now(), 1_090_000, "refused advances move nothing");
    }

    #[test]
    fn cores_are_added_and_their_connections_driven() {
        let e = emulator();
        let r = call(&e, "POST", "/emulator/cores/second", "");
        assert_eq!((r.status, r["connected"].as_bool()), (200, Some(true)));
        assert!(e.core("second").is_some());
        let r = call(&e, "GET", "/emulator/cores", "");
        assert_eq!(r["cores"].as_array().map(Vec::len), Some(2));
        call(&e, "POST", "/emulator/cores/second/disconnect", "");
        assert!(!e.world().core_connected("second"));
        assert!(e.world().core_connected("core"), "only that core drops");
        let r = call(&e, "POST", "/emulator/cores/second/reconnect", "clean=true");
        assert_eq!(
            (r["connected"].as_bool(), r["clean"].as_bool()),
            (Some(true), Some(true))
        );
        assert!(e.world().core_connected("second"));
        let r = call(&e, "POST", "/emulator/cores/second/close-subscriptions", "");
        assert_eq!(r["closed"], 0, "no component subscribed yet");
        let r = call(&e, "POST", "/emulator/cores/nobody/disconnect", "");
        assert_eq!(r.status, 404);
        let r = call(&e, "POST", "/emulator/cores/bad%20name", "");
        assert_eq!(r.error_type, Some("InvalidRequestException"));
    }

    #[test]
    fn single_core_routes_and_session_expiry() {
        let e = emulator();
        assert_eq!(
            call(&e, "GET", "/emulator/health", "")["nucleusConnected"],
            true
        );
        call(&e, "POST", "/emulator/nucleus/disconnect", "");
        assert!(!e.world().nucleus_connected());
        let r = call(&e, "POST", "/emulator/nucleus/reconnect", "clean=true");
        assert_eq!(
            (r["connected"].as_bool(), r["clean"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(
            call(&e, "POST", "/emulator/things/core/throttle", "count=2")["throttled"],
            2
        );
        let r = call(&e, "POST", "/emulator/session-expiry", "seconds=60");
        assert_eq!(r["sessionExpirySeconds"], 60);
        assert_eq!(e.world().with(|w| w.broker().session_expiry_ms()), 60_000);
        assert_eq!(call(&e, "GET", "/emulator/nope", "").status, 404);
        assert!(handle(&e, &Request::new("GET", "/jobs", "", b"")).is_none());
    }
}
