//! aws-greengrass-component-sdk (gg-sdk, a C client with Rust bindings) against a Greengrass
//! IPC server: the socket and token come from the environment, as under the nucleus.
//!
//! `gg-sdk-peer` runs connect, SubscribeToIoTCore, PublishToIoTCore (QoS 1) received on the
//! subscription, UpdateState RUNNING, GetConfiguration of `greeting`, and GetConfiguration of a
//! missing key (an error). `gg-sdk-peer reject` connects with a wrong token and expects refusal.
//! Prints one JSON-ish line per step and exits non-zero if a step failed.

use core::mem::MaybeUninit;
use gg_sdk::{ComponentState, Qos, Sdk, UnpackedObject};
use std::sync::mpsc;
use std::time::Duration;

fn report(step: &str, ok: bool, detail: &str) -> bool {
    println!(
        "{{\"step\": \"{step}\", \"ok\": {ok}, \"detail\": \"{}\"}}",
        detail.replace('"', "'")
    );
    ok
}

fn main() {
    let sdk = Sdk::init();
    let mut ok = true;
    if std::env::args().nth(1).as_deref() == Some("reject") {
        let socket = std::env::var("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT")
            .unwrap_or_default();
        let result = sdk.connect_with_token(&socket, "not-the-token");
        ok &= report("rejected_token", result.is_err(), &format!("{result:?}"));
        std::process::exit(if ok { 0 } else { 1 });
    }
    let connected = sdk.connect();
    if !report("connect", connected.is_ok(), &format!("{connected:?}")) {
        std::process::exit(1);
    }
    let (tx, rx) = mpsc::channel::<(String, Vec<u8>)>();
    let tx = std::sync::Mutex::new(tx);
    let callback = move |topic: &str, payload: &[u8]| {
        if let Ok(tx) = tx.lock() {
            let _ = tx.send((topic.to_owned(), payload.to_vec()));
        }
    };
    let subscription = sdk.subscribe_to_iot_core("ggsdk/#", Qos::AtLeastOnce, &callback);
    ok &= report(
        "subscribe_to_iot_core",
        subscription.is_ok(),
        &format!("{:?}", subscription.as_ref().err()),
    );
    let published = sdk.publish_to_iot_core("ggsdk/hello", b"from gg-sdk", Qos::AtLeastOnce);
    ok &= report(
        "publish_to_iot_core",
        published.is_ok(),
        &format!("{published:?}"),
    );
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok((topic, payload)) => {
            ok &= report(
                "receive_iot_core",
                topic == "ggsdk/hello" && payload == b"from gg-sdk",
                &topic,
            );
        }
        Err(e) => ok &= report("receive_iot_core", false, &e.to_string()),
    }
    let state = sdk.update_state(ComponentState::Running);
    ok &= report("update_state", state.is_ok(), &format!("{state:?}"));
    let mut buf = [MaybeUninit::uninit(); 1024];
    match sdk.get_config(&["greeting"], None, &mut buf) {
        Ok(value) => {
            let text = match value.unpack() {
                UnpackedObject::Buf(b) => b.to_owned(),
                other => format!("{other:?}"),
            };
            ok &= report("get_configuration", text == "hi", &text);
        }
        Err(e) => ok &= report("get_configuration", false, &format!("{e:?}")),
    }
    let mut buf = [MaybeUninit::uninit(); 1024];
    let missing = sdk.get_config(&["missing"], None, &mut buf).map(|_| ());
    ok &= report(
        "configuration_not_found",
        missing.is_err(),
        &format!("{missing:?}"),
    );
    drop(subscription);
    std::process::exit(if ok { 0 } else { 1 });
}
