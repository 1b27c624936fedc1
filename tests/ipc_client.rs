//! The Rust IPC client against the emulator's IPC server over a real Unix socket.

mod common;
mod reference;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use greengrass_jobs_handler::ipc::codec::FrameCodec;
use greengrass_jobs_handler::ipc::model::*;
use greengrass_jobs_handler::ipc::rpc::*;
use greengrass_jobs_handler::ipc::{ClientOptions, IpcClient, IpcError, Subscription};
use serde_json::json;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::Framed;

async fn connect(socket: &std::path::Path) -> IpcClient {
    within(
        "connect",
        IpcClient::connect(socket, TOKEN, ClientOptions::default()),
    )
    .await
    .expect("connect")
}

#[tokio::test]
async fn publish_qos1_is_received_on_an_iot_core_subscription_and_state_is_reported() {
    let env = start_emulator(json!({}));
    let client = connect(&env.socket).await;
    let mut sub = client
        .subscribe_to_iot_core("test/#", Qos::AtLeastOnce)
        .await
        .expect("subscribe");
    client
        .publish_to_iot_core("test/hello", Qos::AtLeastOnce, b"{\"n\":1}".to_vec())
        .await
        .expect("publish");
    let IoTCoreMessage::Message(message) = within("event", sub.recv()).await.expect("an event");
    assert_eq!(message.topic_name, "test/hello");
    assert_eq!(message.payload(), b"{\"n\":1}");

    assert_eq!(env.emulator.nucleus().component_state(COMPONENT), None);
    client
        .update_state(ReportedLifecycleState::Running)
        .await
        .expect("update state");
    assert_eq!(
        env.emulator.nucleus().component_state(COMPONENT).as_deref(),
        Some("RUNNING")
    );
}

#[tokio::test]
async fn wrong_token_is_rejected() {
    let env = start_emulator(json!({}));
    let err = IpcClient::connect(&env.socket, "not-the-token", ClientOptions::default())
        .await
        .expect_err("must be rejected");
    assert!(matches!(err, IpcError::ConnectionRejected), "{err:?}");
}

#[tokio::test]
async fn missing_environment_is_a_clear_error() {
    // This test process never has the nucleus variables set.
    std::env::remove_var("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT");
    let err = IpcClient::connect_from_env(ClientOptions::default())
        .await
        .expect_err("no env");
    assert!(err
        .to_string()
        .contains("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"));
}

#[tokio::test]
async fn ipc_calls_work_from_inside_a_subscription_handler() {
    let env = start_emulator(json!({}));
    let worker = connect(&env.socket).await;
    let mut requests = worker
        .subscribe_to_topic("jobs/request", None)
        .await
        .unwrap();
    let responder = worker.clone();
    tokio::spawn(async move {
        while let Some(event) = requests.recv().await {
            let SubscriptionResponseMessage::JsonMessage(m) = event else {
                continue;
            };
            let n = m
                .message
                .as_ref()
                .and_then(|v| v["n"].as_i64())
                .unwrap_or(0);
            // An IPC call made while handling the event.
            responder
                .publish_to_topic(
                    "jobs/response",
                    PublishMessage::json(json!({ "n2": n * 2 })),
                )
                .await
                .expect("publish from handler");
        }
    });
    let caller = connect(&env.socket).await;
    let mut responses = caller
        .subscribe_to_topic("jobs/response", None)
        .await
        .unwrap();
    for n in 1..=3 {
        caller
            .publish_to_topic("jobs/request", PublishMessage::json(json!({ "n": n })))
            .await
            .unwrap();
        let event = within("response", responses.recv()).await.unwrap();
        assert_eq!(event.topic(), Some("jobs/response"));
        let SubscriptionResponseMessage::JsonMessage(m) = event else {
            panic!("json expected")
        };
        assert_eq!(m.message, Some(json!({ "n2": n * 2 })));
    }
}

#[tokio::test]
async fn receive_mode_from_others_skips_own_messages_and_binary_round_trips() {
    let env = start_emulator(json!({}));
    let a = connect(&env.socket).await;
    let b = connect(&env.socket).await;
    let mut own = a
        .subscribe_to_topic("t", Some(ReceiveMode::ReceiveMessagesFromOthers))
        .await
        .unwrap();
    a.publish_to_topic("t", PublishMessage::binary(b"from a".to_vec()))
        .await
        .unwrap();
    b.publish_to_topic("t", PublishMessage::binary(vec![0, 159, 146, 150]))
        .await
        .unwrap();
    let SubscriptionResponseMessage::BinaryMessage(m) = within("event", own.recv()).await.unwrap()
    else {
        panic!("binary expected")
    };
    assert_eq!(m.message.unwrap().0, vec![0, 159, 146, 150]);
}

#[tokio::test]
async fn configuration_reads_updates_and_missing_keys() {
    let env = start_emulator(json!({"reconnectTopic": "reconnect/t", "jitter": {"maxMs": 5000}}));
    let client = connect(&env.socket).await;
    let all = client.get_configuration(&[]).await.unwrap();
    assert_eq!(all.component_name.as_deref(), Some(COMPONENT));
    assert_eq!(all.value.unwrap()["jitter"]["maxMs"], 5000);
    let leaf = client.get_configuration(&["reconnectTopic"]).await.unwrap();
    assert_eq!(leaf.value, Some(json!({"reconnectTopic": "reconnect/t"})));

    let err = client.get_configuration(&["nope"]).await.unwrap_err();
    assert_eq!(err.service_code(), Some("ResourceNotFoundError"), "{err:?}");

    let mut updates = client.subscribe_to_configuration_update(&[]).await.unwrap();
    let path = vec!["jitter".to_owned(), "maxMs".to_owned()];
    env.emulator
        .nucleus()
        .update_configuration(COMPONENT, &path, json!(0));
    let ConfigurationUpdateEvents::ConfigurationUpdateEvent(event) =
        within("config event", updates.recv()).await.unwrap();
    assert_eq!(event.component_name, COMPONENT);
    assert_eq!(event.key_path, path);
    let now = client.get_configuration(&["jitter"]).await.unwrap();
    assert_eq!(now.value, Some(json!({"maxMs": 0})));
}

#[tokio::test]
async fn modeled_and_unmodeled_errors_reach_the_caller() {
    let env = start_emulator(json!({}));
    let client = connect(&env.socket).await;
    let err = client
        .publish_to_iot_core("bad/+/topic", Qos::AtMostOnce, b"x".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.service_code(), Some("ServiceError"));
    let err = client
        .publish_to_iot_core("big", Qos::AtMostOnce, vec![b'x'; 128 * 1024 + 1])
        .await
        .unwrap_err();
    assert_eq!(err.service_code(), Some("ServiceError"));
    let err = client.subscribe_to_topic("a/#/b", None).await.unwrap_err();
    assert_eq!(err.service_code(), Some("InvalidArgumentsError"));

    // An operation the server does not serve: closed stream, and the connection stays usable.
    struct GetSecretValue;
    impl Operation for GetSecretValue {
        const NAME: &'static str = "aws.greengrass#GetSecretValue";
        const REQUEST_TYPE: &'static str = "aws.greengrass#GetSecretValueRequest";
        const RESPONSE_TYPE: &'static str = "aws.greengrass#GetSecretValueResponse";
        type Request = serde_json::Value;
        type Response = serde_json::Value;
    }
    let err = client
        .call::<GetSecretValue>(&json!({"secretId": "s"}))
        .await
        .unwrap_err();
    assert!(matches!(err, IpcError::StreamClosed { .. }), "{err:?}");
    client
        .update_state(ReportedLifecycleState::Running)
        .await
        .unwrap();
}

#[tokio::test]
async fn connection_status_comes_first_then_on_every_change() {
    let env = start_emulator(json!({}));
    let client = connect(&env.socket).await;
    let (first, mut events) = client
        .subscribe::<SubscribeToIoTCoreConnectionStatus>(&Empty {})
        .await
        .unwrap();
    assert_eq!(first.messages.map(|m| m.connected()), Some(true));
    assert!(next(&mut events).await, "the current status comes first");
    env.emulator.world().disconnect_nucleus();
    assert!(!next(&mut events).await);
    env.emulator.world().reconnect_nucleus(false);
    assert!(next(&mut events).await);
}

async fn next(events: &mut Subscription<IoTCoreConnectionStatusEvent>) -> bool {
    within("a status event", events.recv())
        .await
        .unwrap()
        .connected()
}

#[tokio::test]
async fn a_filter_no_component_holds_is_let_go_on_iot_core() {
    let env = start_emulator(json!({}));
    let client = connect(&env.socket).await;
    let world = env.emulator.world();
    let core = world.thing_name().to_owned();
    let held = |f: &str| world.with(|w| w.core_holds(&core, f));
    let a = client
        .subscribe_to_iot_core("t/a", Qos::AtLeastOnce)
        .await
        .unwrap();
    let b = client
        .subscribe_to_iot_core("t/a", Qos::AtLeastOnce)
        .await
        .unwrap();
    assert!(held("t/a"));
    drop(a);
    client
        .update_state(ReportedLifecycleState::Running)
        .await
        .unwrap();
    assert!(held("t/a"), "another subscription still holds it");
    drop(b);
    client
        .update_state(ReportedLifecycleState::Running)
        .await
        .unwrap();
    assert!(!held("t/a"));
    // Over a long life of subscribe-and-close, the reconnect topic still lands on the first
    // connection, which gets lifecycle events.
    for i in 0..80 {
        let s = client
            .subscribe_to_iot_core(&format!("churn/{i}"), Qos::AtLeastOnce)
            .await
            .unwrap();
        drop(s);
    }
    let _r = client
        .subscribe_to_iot_core(&format!("reconnect/{core}"), Qos::AtLeastOnce)
        .await
        .unwrap();
    let connections = world.nucleus_connections();
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert!(connections[0].1.contains(&format!("reconnect/{core}")));
}

#[tokio::test]
async fn closing_a_subscription_unsubscribes_on_the_server() {
    let env = start_emulator(json!({}));
    let client = connect(&env.socket).await;
    let sub = client
        .subscribe_to_iot_core("a/#", Qos::AtMostOnce)
        .await
        .unwrap();
    let sub2 = client
        .subscribe_to_iot_core("b", Qos::AtMostOnce)
        .await
        .unwrap();
    assert_eq!(env.emulator.iot().subscription_count(), 2);
    sub.close();
    drop(sub2);
    // A round trip after the close guarantees the server has processed it.
    client
        .update_state(ReportedLifecycleState::Running)
        .await
        .unwrap();
    assert_eq!(env.emulator.iot().subscription_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_clients() {
    let env = start_emulator(json!({}));
    let observer = connect(&env.socket).await;
    let mut all = observer
        .subscribe_to_iot_core("fleet/#", Qos::AtLeastOnce)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    // 80 publishes: under IoT Core's 100 a second for the nucleus's one connection.
    for c in 0..8 {
        let socket = env.socket.clone();
        tasks.push(tokio::spawn(async move {
            let client = IpcClient::connect(&socket, TOKEN, ClientOptions::default())
                .await
                .unwrap();
            let topic = format!("fleet/{c}");
            let mut mine = client
                .subscribe_to_iot_core(&topic, Qos::AtLeastOnce)
                .await
                .unwrap();
            for i in 0..10 {
                let publisher = client.clone();
                let topic = topic.clone();
                // Requests in flight at once on one connection.
                tokio::spawn(async move {
                    publisher
                        .publish_to_iot_core(&topic, Qos::AtLeastOnce, vec![i])
                        .await
                        .unwrap()
                });
            }
            let mut got = Vec::new();
            while got.len() < 10 {
                let IoTCoreMessage::Message(m) = mine.recv().await.unwrap();
                got.push(m.payload()[0]);
            }
            got.sort();
            assert_eq!(got, (0..10).collect::<Vec<u8>>());
        }));
    }
    for t in tasks {
        within("client task", t).await.unwrap();
    }
    let mut count = 0;
    while count < 80 {
        within("observer", all.recv()).await.unwrap();
        count += 1;
    }
}

/// A hand-rolled server that accepts CONNECT and then does whatever the test says.
async fn fake_nucleus() -> (tempfile::TempDir, std::path::PathBuf, UnixListener) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.socket");
    let listener = UnixListener::bind(&path).unwrap();
    (dir, path, listener)
}

async fn accept_and_ack(listener: &UnixListener) -> Framed<UnixStream, FrameCodec> {
    let (socket, _) = listener.accept().await.unwrap();
    let mut framed = Framed::new(socket, FrameCodec::default());
    let connect = RpcMessage::from_frame(&framed.next().await.unwrap().unwrap()).unwrap();
    assert_eq!(connect.message_type, MessageType::Connect);
    assert_eq!(connect.stream_id, 0);
    assert_eq!(connect.flags, 0);
    assert_eq!(connect.version.as_deref(), Some("0.1.0"));
    let body: serde_json::Value = serde_json::from_slice(&connect.payload).unwrap();
    assert_eq!(body, json!({"authToken": "tok"}));
    let ack = RpcMessage::new(MessageType::ConnectAck, FLAG_CONNECTION_ACCEPTED, 0);
    framed.send(ack.into_frame()).await.unwrap();
    framed
}

#[tokio::test]
async fn requests_time_out_and_stream_ids_count_from_one() {
    let (_dir, path, listener) = fake_nucleus().await;
    let server = tokio::spawn(async move {
        let mut framed = accept_and_ack(&listener).await;
        let mut ids = Vec::new();
        while let Some(Ok(frame)) = framed.next().await {
            let m = RpcMessage::from_frame(&frame).unwrap();
            ids.push((m.stream_id, m.operation.clone(), m.flags));
            if ids.len() == 3 {
                break;
            }
        }
        ids
    });
    let options = ClientOptions {
        request_timeout: Duration::from_millis(200),
        ..ClientOptions::default()
    };
    let client = IpcClient::connect(&path, "tok", options).await.unwrap();
    let err = client
        .update_state(ReportedLifecycleState::Running)
        .await
        .unwrap_err();
    assert!(matches!(err, IpcError::Timeout { .. }), "{err:?}");
    let err = client
        .subscribe_to_iot_core("x", Qos::AtMostOnce)
        .await
        .unwrap_err();
    assert!(matches!(err, IpcError::Timeout { .. }), "{err:?}");
    let ids = within("fake server", server).await.unwrap();
    assert_eq!(
        ids,
        vec![
            (1, Some(UpdateState::NAME.to_owned()), 0),
            (2, Some(SubscribeToIoTCore::NAME.to_owned()), 0),
            // The timed-out subscription is closed with an empty TERMINATE.
            (2, None, FLAG_TERMINATE_STREAM),
        ]
    );
}

#[tokio::test]
async fn closed_fires_when_the_nucleus_goes_away_and_pings_are_answered() {
    let (_dir, path, listener) = fake_nucleus().await;
    let server = tokio::spawn(async move {
        let mut framed = accept_and_ack(&listener).await;
        framed
            .send(RpcMessage::new(MessageType::Ping, 0, 0).into_frame())
            .await
            .unwrap();
        let pong = RpcMessage::from_frame(&framed.next().await.unwrap().unwrap()).unwrap();
        assert_eq!(pong.message_type, MessageType::PingResponse);
        drop(framed);
    });
    let client = IpcClient::connect(&path, "tok", ClientOptions::default())
        .await
        .unwrap();
    within("closed signal", client.closed()).await;
    assert!(client.is_closed());
    within("server", server).await.unwrap();
    let err = client
        .update_state(ReportedLifecycleState::Running)
        .await
        .unwrap_err();
    assert!(matches!(err, IpcError::ConnectionClosed), "{err:?}");
}

async fn raw_connected(socket: &std::path::Path) -> Framed<UnixStream, FrameCodec> {
    let stream = UnixStream::connect(socket).await.unwrap();
    let mut framed = Framed::new(stream, FrameCodec::default());
    let mut connect = RpcMessage::new(MessageType::Connect, 0, 0)
        .with_json(Bytes::from(json!({"authToken": TOKEN}).to_string()));
    connect.version = Some("0.1.0".into());
    framed.send(connect.into_frame()).await.unwrap();
    let ack = RpcMessage::from_frame(&framed.next().await.unwrap().unwrap()).unwrap();
    assert_eq!((ack.message_type, ack.flags), (MessageType::ConnectAck, 1));
    framed
}

#[tokio::test]
async fn emulator_enforces_stream_id_order_over_the_socket() {
    let env = start_emulator(json!({}));
    let mut framed = raw_connected(&env.socket).await;
    let request = RpcMessage::new(MessageType::ApplicationMessage, 0, 2)
        .with_operation(UpdateState::NAME)
        .with_json(Bytes::from_static(br#"{"state":"RUNNING"}"#));
    framed.send(request.into_frame()).await.unwrap();
    let reply =
        RpcMessage::from_frame(&within("reply", framed.next()).await.unwrap().unwrap()).unwrap();
    assert_eq!(reply.message_type, MessageType::ProtocolError);
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("monotonically incrementing"));
    assert!(
        within("close", framed.next()).await.is_none(),
        "server closes the socket"
    );
}

#[tokio::test]
async fn emulator_closes_silently_on_a_bad_crc() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = start_emulator(json!({}));
    let mut socket = UnixStream::connect(&env.socket).await.unwrap();
    let mut frame = reference::eventstream_vector("smithy-rs/invalid_message_checksum");
    socket.write_all(&frame).await.unwrap();
    frame.clear();
    let n = within("eof", socket.read_to_end(&mut frame)).await.unwrap();
    assert_eq!(n, 0, "no reply, just a close");
}

#[tokio::test]
async fn a_resumed_persistent_session_replays_stored_messages_at_most_ten_a_second() {
    let env = start_emulator(json!({}));
    let client = connect(&env.socket).await;
    let mut sub = client
        .subscribe_to_iot_core("stored/#", Qos::AtLeastOnce)
        .await
        .unwrap();
    env.emulator.world().disconnect_nucleus();
    for i in 0..4 {
        env.emulator
            .world()
            .operator_publish(&format!("stored/{i}"), b"x", 1);
    }
    let resumed = std::time::Instant::now();
    env.emulator.world().reconnect_nucleus(false);
    let mut topics = Vec::new();
    for _ in 0..4 {
        let IoTCoreMessage::Message(m) = within("replayed message", sub.recv()).await.unwrap();
        topics.push(m.topic_name);
    }
    assert_eq!(topics, ["stored/0", "stored/1", "stored/2", "stored/3"]);
    assert!(
        resumed.elapsed() >= Duration::from_millis(300),
        "{:?}",
        resumed.elapsed()
    );
}
