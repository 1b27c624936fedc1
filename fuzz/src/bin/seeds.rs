//! Writes the seed corpora (`corpus/<target>/`) with the project's own encoders:
//! `cargo run --release --bin seeds`. Deterministic: the same files every time.

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use aws_smithy_types::DateTime;
use bytes::BytesMut;
use greengrass_jobs_handler::ipc::codec::FrameCodec;
use greengrass_jobs_handler::ipc::error::ErrorPayload;
use greengrass_jobs_handler::ipc::rpc::*;
use greengrass_jobs_handler::journal::proto;
use prost::Message as _;
use serde_json::json;
use std::path::Path;
use tokio_util::codec::Encoder;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    std::fs::write(dir.join(name), bytes).expect("write a seed");
}

fn encode(frames: &[Message]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for f in frames {
        FrameCodec::default()
            .encode(f.clone(), &mut buf)
            .expect("a seed frame encodes");
    }
    buf.to_vec()
}

/// Fixed pseudo-random bytes for the structured targets (xorshift; no dependency needed).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn frames() {
    let mut connect = RpcMessage::new(MessageType::Connect, 0, 0)
        .with_json(json!({"authToken": "token"}).to_string().into_bytes());
    connect.version = Some(PROTOCOL_VERSION.to_owned());
    let ack = RpcMessage::new(MessageType::ConnectAck, FLAG_CONNECTION_ACCEPTED, 0);
    let publish = RpcMessage::new(MessageType::ApplicationMessage, 0, 1)
        .with_operation("aws.greengrass#PublishToIoTCore")
        .with_model_type("aws.greengrass#PublishToIoTCoreRequest")
        .with_json(
            json!({"topicName": "a/b", "qos": "1", "payload": "eyJhIjoxfQ=="})
                .to_string()
                .into_bytes(),
        );
    let error = RpcMessage::new(MessageType::ApplicationError, FLAG_TERMINATE_STREAM, 1)
        .with_model_type("aws.greengrass#ServiceError")
        .with_json(ErrorPayload::new("ServiceError", "no").to_json());
    let all_types = Message::new_from_parts(
        vec![
            Header::new("t", HeaderValue::Bool(true)),
            Header::new("f", HeaderValue::Bool(false)),
            Header::new("b", HeaderValue::Byte(-3)),
            Header::new("s", HeaderValue::Int16(-300)),
            Header::new("i", HeaderValue::Int32(70_000)),
            Header::new("l", HeaderValue::Int64(-5_000_000_000)),
            Header::new("y", HeaderValue::ByteArray(vec![0, 1, 2].into())),
            Header::new("str", HeaderValue::String("text".into())),
            Header::new(
                "ts",
                HeaderValue::Timestamp(DateTime::from_millis(1_700_000_000_000)),
            ),
            Header::new(
                "u",
                HeaderValue::Uuid(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
            ),
        ],
        &b"payload"[..],
    );
    let ping = RpcMessage::new(MessageType::Ping, 0, 0).into_frame();
    let seeds = [
        ("connect", vec![connect.into_frame()]),
        ("connect-ack", vec![ack.into_frame()]),
        ("publish", vec![publish.clone().into_frame()]),
        ("error", vec![error.into_frame()]),
        ("all-header-types", vec![all_types]),
        ("empty", vec![Message::new_from_parts(vec![], &b""[..])]),
        ("stream", vec![ping.clone(), publish.into_frame(), ping]),
    ];
    for (name, frames) in seeds {
        let bytes = encode(&frames);
        for (mode, label) in [(0u8, "raw"), (1, "crc"), (0x82, "small")] {
            let mut input = vec![mode];
            input.extend_from_slice(&bytes);
            write("frame", &format!("{name}.{label}"), &input);
        }
    }
}

fn structured() {
    for (target, seed) in [
        ("rpc_client", 1u64),
        ("ipc_session", 2),
        ("jobs_responses", 3),
    ] {
        for (i, len) in [64usize, 256, 1024, 4096].into_iter().enumerate() {
            write(
                target,
                &format!("noise-{len}"),
                &noise(seed * 16 + i as u64, len),
            );
        }
    }
}

fn documents() {
    let docs = [
        ("add", json!({"operation": "add", "a": 2, "b": 3})),
        ("echo", json!({"operation": "echo", "greeting": "hi"})),
        ("sleep", json!({"operation": "sleep", "seconds": 30})),
        ("reboot", json!({"operation": "reboot"})),
        (
            "device-client",
            json!({"version": "1.0", "includeStdOut": "true", "conditions": [],
            "steps": [
                {"action": {"name": "Install", "type": "runHandler",
                    "input": {"handler": "install-packages.sh", "args": ["lftp", 7, true], "path": "default"},
                    "allowStdErr": 8, "ignoreStepFailure": "false", "timeoutSeconds": 30}},
                {"action": {"name": "Show", "type": "runCommand", "input": {"command": "report.sh,--verbose,a\\,b"}}}],
            "finalStep": {"action": {"name": "Cleanup", "type": "runHandler", "input": {"handler": "cleanup.sh"}}}}),
        ),
        (
            "traversal",
            json!({"version": "1.0", "steps": [{"action": {"type": "runHandler", "input": {"handler": "../x"}}}]}),
        ),
        (
            "conditions",
            json!({"version": 1, "conditions": [{"key": "os"}], "steps": []}),
        ),
        (
            "deployment",
            json!({"deploymentId": "d-1", "components": {"a": {"version": "1.0.0"}}}),
        ),
        ("operation-number", json!({"operation": 5})),
    ];
    for (name, doc) in docs {
        write(
            "document",
            &format!("{name}.json"),
            doc.to_string().as_bytes(),
        );
    }
}

fn configs() {
    let configs = [
        ("empty", json!({})),
        (
            "recipe",
            json!({"thingName": "{iot:thingName}", "reconnectTopic": "reconnect/{iot:thingName}",
            "jitterMaxMs": "3000", "responseTimeoutMs": 10000, "maxBackoffMs": 300000,
            "safetyPollSeconds": 0, "stepTimeoutMinutes": 0, "maxConcurrentJobs": 1,
            "handlerDirectory": "handlers", "stepTimeoutSeconds": 3600, "jobTimeoutSeconds": 21600,
            "workerOperations": ["flash"], "workerRequestTopicPrefix": "greengrass-jobs-handler/request",
            "workerReplyTopic": "greengrass-jobs-handler/reply/{iot:thingName}", "workerTimeoutSeconds": 600,
            "rebootCommand": ["sudo", "/sbin/reboot"], "rebootWaitSeconds": 300,
            "journalPath": "journal/jobs.journal", "logLevel": "info", "logFormat": "json"}),
        ),
        (
            "odd",
            json!({"thingName": "t1", "jitterMaxMs": -1, "safetyPollSeconds": "90",
            "maxConcurrentJobs": 99, "reconnectTopic": "a/+", "rebootCommand": "reboot"}),
        ),
    ];
    for (name, config) in configs {
        // The first byte decides whether the nucleus gives a thing name: ' ' (even) gives one.
        write(
            "config",
            &format!("{name}.json"),
            format!(" {config}").as_bytes(),
        );
        write(
            "config",
            &format!("{name}.nothing.json"),
            format!("\t{config}").as_bytes(),
        );
    }
}

fn journals() {
    let job = |id: &str, reboot: bool| proto::InFlightJob {
        job_id: id.into(),
        execution_number: 1,
        version_number: 2,
        step: 1,
        started_at_ms: 1_700_000_000_000,
        pid: 4242,
        work: "2 step(s)".into(),
        reboot_requested: reboot,
        boot_id: "boot-a".into(),
        updated_at_ms: 1_700_000_000_500,
        run_marker: format!("run-{id}"),
        ..proto::InFlightJob::default()
    };
    let journals = [
        (
            "empty",
            proto::Journal {
                format: 2,
                jobs: vec![],
                ..proto::Journal::default()
            },
        ),
        (
            "one",
            proto::Journal {
                format: 2,
                jobs: vec![job("j1", false)],
                ..proto::Journal::default()
            },
        ),
        (
            "reboot",
            proto::Journal {
                format: 2,
                jobs: vec![job("j1", true), job("j2", false)],
                ..proto::Journal::default()
            },
        ),
        (
            "v1",
            proto::Journal {
                format: 1,
                jobs: vec![proto::InFlightJob {
                    work: String::new(),
                    boot_id: String::new(),
                    ..job("old", false)
                }],
                ..proto::Journal::default()
            },
        ),
    ];
    for (name, journal) in journals {
        write("journal", &format!("{name}.pb"), &journal.encode_to_vec());
    }
    // Format 4: a header, then one record per change (a later entry of an execution wins, a
    // removal drops it); and the same log with its last write cut off.
    let mut log = proto::Journal {
        format: 4,
        jobs: vec![],
        ..proto::Journal::default()
    }
    .encode_to_vec();
    let removal = proto::InFlightJob {
        job_id: "j1".into(),
        execution_number: 1,
        removed: true,
        ..proto::InFlightJob::default()
    };
    for record in [job("j1", false), job("j2", true), removal, job("j2", false)] {
        prost::encoding::message::encode(2, &record, &mut log);
    }
    write("journal", "log.pb", &log);
    write("journal", "cut-off.pb", &log[..log.len() - 7]);
    // Format 5: the header also holds the installation id.
    let mut log = proto::Journal {
        format: 5,
        installation: "5f0c2a9e13d4b786".into(),
        ..proto::Journal::default()
    }
    .encode_to_vec();
    for record in [job("j1", false), job("j2", true)] {
        prost::encoding::message::encode(2, &record, &mut log);
    }
    write("journal", "installation.pb", &log);
}

fn main() {
    frames();
    structured();
    documents();
    configs();
    journals();
}
