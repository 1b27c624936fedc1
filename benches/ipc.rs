//! IPC benchmarks: encode and decode of a 1 KiB PublishToIoTCore frame, and the round-trip
//! latency of a request to the emulator over its Unix socket.
//!
//! Run: `cargo bench --bench ipc` (criterion prints time and throughput per benchmark).

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use greengrass_jobs_handler::emulator::Emulator;
use greengrass_jobs_handler::ipc::codec::FrameCodec;
use greengrass_jobs_handler::ipc::model::*;
use greengrass_jobs_handler::ipc::rpc::{MessageType, RpcMessage};
use greengrass_jobs_handler::ipc::{ClientOptions, IpcClient};
use std::hint::black_box;
use tokio_util::codec::{Decoder, Encoder};

fn publish_frame() -> RpcMessage {
    let request = PublishToIoTCoreRequest::new(
        "$aws/things/bench-thing/jobs/get",
        Qos::AtLeastOnce,
        vec![b'x'; 1024],
    );
    let payload = serde_json::to_vec(&request).expect("serialise");
    RpcMessage::new(MessageType::ApplicationMessage, 0, 7)
        .with_operation(PublishToIoTCore::NAME)
        .with_model_type(PublishToIoTCore::REQUEST_TYPE)
        .with_json(payload)
}

fn codec(c: &mut Criterion) {
    let message = publish_frame();
    let mut encoded = BytesMut::new();
    FrameCodec::default()
        .encode(message.clone().into_frame(), &mut encoded)
        .expect("encode");
    let mut group = c.benchmark_group("frame_1k_publish");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode", |b| {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::with_capacity(4096);
        b.iter(|| {
            buf.clear();
            codec
                .encode(black_box(message.clone()).into_frame(), &mut buf)
                .expect("encode");
            black_box(buf.len())
        })
    });
    group.bench_function("decode", |b| {
        let mut codec = FrameCodec::default();
        b.iter(|| {
            let mut buf = encoded.clone();
            let frame = codec.decode(&mut buf).expect("decode").expect("a frame");
            black_box(RpcMessage::from_frame(&frame).expect("rpc"))
        })
    });
    group.finish();
}

fn round_trip(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bench.socket");
    let emulator = Emulator::new();
    emulator
        .nucleus()
        .register("Bench", "bench-token", serde_json::json!({}));
    let (_server, client) = runtime.block_on(async {
        let server = emulator.serve_ipc(&socket).expect("serve");
        let client = IpcClient::connect(&socket, "bench-token", ClientOptions::default())
            .await
            .expect("connect");
        (server, client)
    });
    let mut group = c.benchmark_group("emulator_round_trip");
    group.bench_function("update_state", |b| {
        b.iter(|| {
            runtime
                .block_on(client.update_state(ReportedLifecycleState::Running))
                .expect("call")
        })
    });
    group.bench_function("publish_to_iot_core_1k_qos1", |b| {
        b.iter(|| {
            runtime
                .block_on(client.publish_to_iot_core(
                    "$aws/things/bench-thing/jobs/get",
                    Qos::AtLeastOnce,
                    vec![b'x'; 1024],
                ))
                .expect("call")
        })
    });
    group.finish();
}

criterion_group!(benches, codec, round_trip);
criterion_main!(benches);
