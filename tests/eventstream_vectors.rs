//! The frame codec against the peer test vectors: what must decode decodes to the expected
//! headers and payload and re-encodes byte for byte; what must be rejected is rejected with a
//! typed error, also when the bytes arrive in small pieces as on a socket.

use aws_smithy_types::event_stream::{HeaderValue, Message};
use base64::Engine as _;
use bytes::BytesMut;
use greengrass_jobs_handler::ipc::codec::{FrameCodec, FrameError, DEFAULT_MAX_FRAME_LEN};
use serde_json::Value;
use tokio_util::codec::{Decoder, Encoder};

mod reference;

fn vector(path: &str) -> Vec<u8> {
    reference::eventstream_vector(path)
}

#[test]
fn a_missing_shared_directory_fails_naming_the_expected_path() {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    let err = reference::eventstream_vectors_dir(None, &repo).unwrap_err();
    let expected = repo.join("../shared/reference/eventstream-vectors");
    assert!(err.contains(&expected.display().to_string()), "{err}");
    assert!(err.contains("GGJH_SHARED"), "{err}");
    let elsewhere = root.path().join("elsewhere");
    let err = reference::eventstream_vectors_dir(elsewhere.to_str(), &repo).unwrap_err();
    assert!(
        err.contains(
            &elsewhere
                .join("reference/eventstream-vectors")
                .display()
                .to_string()
        ),
        "{err}"
    );
    std::fs::create_dir_all(elsewhere.join("reference/eventstream-vectors")).unwrap();
    assert_eq!(
        reference::eventstream_vectors_dir(elsewhere.to_str(), &repo),
        Ok(elsewhere.join("reference/eventstream-vectors"))
    );
}

/// Decodes all of `bytes`, fed `chunk` bytes at a time.
fn decode_chunked(bytes: &[u8], chunk: usize) -> Result<Vec<Message>, FrameError> {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(m) = codec.decode(&mut buf)? {
            out.push(m);
        }
    }
    if let Some(m) = codec.decode_eof(&mut buf)? {
        out.push(m);
    }
    Ok(out)
}

fn decode_one(bytes: &[u8]) -> Message {
    for chunk in [1, 7, bytes.len().max(1)] {
        let messages = decode_chunked(bytes, chunk).expect("must decode");
        assert_eq!(messages.len(), 1);
    }
    decode_chunked(bytes, bytes.len()).unwrap().remove(0)
}

fn encode(message: Message) -> Vec<u8> {
    let mut buf = BytesMut::new();
    FrameCodec::default().encode(message, &mut buf).unwrap();
    buf.to_vec()
}

fn b64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

fn header_as_json(value: &HeaderValue) -> (u64, Value) {
    let enc = |b: &[u8]| Value::from(base64::engine::general_purpose::STANDARD.encode(b));
    match value {
        HeaderValue::Bool(true) => (0, Value::from(true)),
        HeaderValue::Bool(false) => (1, Value::from(false)),
        HeaderValue::Byte(v) => (2, Value::from(*v)),
        HeaderValue::Int16(v) => (3, Value::from(*v)),
        HeaderValue::Int32(v) => (4, Value::from(*v)),
        HeaderValue::Int64(v) => (5, Value::from(*v)),
        HeaderValue::ByteArray(v) => (6, enc(v)),
        HeaderValue::String(v) => (7, enc(v.as_bytes())),
        HeaderValue::Timestamp(v) => (8, Value::from(v.to_millis().unwrap())),
        HeaderValue::Uuid(v) => (9, enc(&v.to_be_bytes())),
        other => panic!("unexpected header value {other:?}"),
    }
}

#[test]
fn aws_sdk_go_positive_vectors_decode_to_their_description() {
    for name in [
        "all_headers",
        "empty_message",
        "int32_header",
        "payload_no_headers",
        "payload_one_str_header",
    ] {
        let bytes = vector(&format!("aws-sdk-go/encoded/positive/{name}"));
        let expected: Value =
            serde_json::from_slice(&vector(&format!("aws-sdk-go/decoded/positive/{name}")))
                .unwrap();
        let message = decode_one(&bytes);
        assert_eq!(
            expected["total_length"].as_u64().unwrap() as usize,
            bytes.len(),
            "{name}"
        );
        assert_eq!(
            message.payload().as_ref(),
            b64(&expected["payload"]).as_slice(),
            "{name}"
        );
        let headers = expected["headers"].as_array().unwrap();
        assert_eq!(message.headers().len(), headers.len(), "{name}");
        for (got, want) in message.headers().iter().zip(headers) {
            assert_eq!(
                got.name().as_str(),
                want["name"].as_str().unwrap(),
                "{name}"
            );
            let (ty, value) = header_as_json(got.value());
            assert_eq!(
                ty,
                want["type"].as_u64().unwrap(),
                "{name}: {}",
                got.name().as_str()
            );
            assert_eq!(value, want["value"], "{name}: {}", got.name().as_str());
        }
        let crc = |v: &Value| (v.as_i64().unwrap() as u32).to_be_bytes();
        assert_eq!(bytes[8..12], crc(&expected["prelude_crc"]), "{name}");
        assert_eq!(
            bytes[bytes.len() - 4..],
            crc(&expected["message_crc"]),
            "{name}"
        );
        assert_eq!(encode(message), bytes, "{name} re-encodes byte for byte");
    }
}

#[test]
fn smithy_rs_positive_vectors_decode_and_reencode() {
    let cases: [(&str, usize, &[u8]); 3] = [
        ("valid_empty_payload", 1, b""),
        ("valid_no_headers", 0, b"{'foo':'bar'}"),
        ("valid_with_all_headers_and_payload", 10, b"some payload"),
    ];
    for (name, header_count, payload) in cases {
        let bytes = vector(&format!("smithy-rs/{name}"));
        let message = decode_one(&bytes);
        assert_eq!(message.headers().len(), header_count, "{name}");
        if name == "valid_no_headers" {
            assert_eq!(message.payload().len(), 20, "{name}");
        } else {
            assert_eq!(message.payload().as_ref(), payload, "{name}");
        }
        assert_eq!(encode(message), bytes, "{name} re-encodes byte for byte");
    }
}

fn rejected(path: &str) -> FrameError {
    let bytes = vector(path);
    let whole = decode_chunked(&bytes, bytes.len()).expect_err(path);
    // The same verdict when the frame trickles in.
    let trickled = decode_chunked(&bytes, 3).expect_err(path);
    assert_eq!(
        std::mem::discriminant(&whole),
        std::mem::discriminant(&trickled),
        "{path}"
    );
    whole
}

#[test]
fn checksum_vectors_are_rejected_as_checksum_errors() {
    for path in [
        "aws-sdk-go/encoded/negative/corrupted_length",
        "aws-sdk-go/encoded/negative/corrupted_header_len",
        "smithy-rs/invalid_prelude_checksum",
    ] {
        assert!(
            matches!(rejected(path), FrameError::PreludeChecksum { .. }),
            "{path}"
        );
    }
    for path in [
        "aws-sdk-go/encoded/negative/corrupted_headers",
        "aws-sdk-go/encoded/negative/corrupted_payload",
        "smithy-rs/invalid_message_checksum",
    ] {
        assert!(
            matches!(rejected(path), FrameError::MessageChecksum { .. }),
            "{path}"
        );
    }
    match rejected("smithy-rs/invalid_prelude_checksum") {
        FrameError::PreludeChecksum { expected, actual } => {
            assert_eq!((expected, actual), (0x8BB4_95FB, 0xDEAD_BEEF));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn structural_vectors_are_rejected_for_their_structure() {
    let names = [
        "invalid_header_name_length",
        "invalid_header_name_length_too_long",
        "invalid_header_string_length_cut_off",
        "invalid_header_string_value_length",
        "invalid_header_value_type",
        "invalid_headers_length",
    ];
    for name in names {
        // The smithy-rs originals also carry a wrong CRC: any typed rejection will do.
        let original = rejected(&format!("smithy-rs/{name}"));
        assert!(
            matches!(
                original,
                FrameError::Malformed(_) | FrameError::MessageChecksum { .. }
            ),
            "{name}: {original:?}"
        );
        // With valid CRCs only the structural defect is left; it must be what rejects them.
        let derived = rejected(&format!("derived/{name}.recrc"));
        assert!(
            matches!(derived, FrameError::Malformed(_)),
            "{name}: {derived:?}"
        );
    }
}

#[test]
fn oversized_frame_is_rejected_from_its_prelude_alone() {
    let total: u32 = DEFAULT_MAX_FRAME_LEN + 1;
    let mut prelude = Vec::new();
    prelude.extend_from_slice(&total.to_be_bytes());
    prelude.extend_from_slice(&0u32.to_be_bytes());
    let crc = crc32fast::hash(&prelude);
    prelude.extend_from_slice(&crc.to_be_bytes());
    let mut buf = BytesMut::from(&prelude[..]);
    let err = FrameCodec::default().decode(&mut buf).unwrap_err();
    assert!(matches!(err, FrameError::TooLarge { len, .. } if len == total));
    // Nothing past the prelude was asked for.
    assert!(buf.capacity() < 1024);

    let mut small = FrameCodec::new(64);
    let big = Message::new(vec![b'x'; 100]);
    assert!(matches!(
        small.encode(big, &mut BytesMut::new()),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn too_short_length_and_truncated_stream_are_errors() {
    let mut prelude = Vec::new();
    prelude.extend_from_slice(&8u32.to_be_bytes());
    prelude.extend_from_slice(&0u32.to_be_bytes());
    let crc = crc32fast::hash(&prelude);
    prelude.extend_from_slice(&crc.to_be_bytes());
    let err = FrameCodec::default()
        .decode(&mut BytesMut::from(&prelude[..]))
        .unwrap_err();
    assert!(matches!(err, FrameError::TooShort(8)));

    let bytes = vector("smithy-rs/valid_with_all_headers_and_payload");
    let mut buf = BytesMut::from(&bytes[..bytes.len() - 5]);
    let mut codec = FrameCodec::default();
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(matches!(
        codec.decode_eof(&mut buf),
        Err(FrameError::Truncated(_))
    ));
}

#[test]
fn back_to_back_frames_split_anywhere_all_decode() {
    let mut stream = Vec::new();
    for name in [
        "valid_empty_payload",
        "valid_no_headers",
        "valid_with_all_headers_and_payload",
    ] {
        stream.extend(vector(&format!("smithy-rs/{name}")));
    }
    for chunk in 1..=stream.len() {
        assert_eq!(
            decode_chunked(&stream, chunk).unwrap().len(),
            3,
            "chunk {chunk}"
        );
    }
}

/// Mutated and truncated frames, and random bytes, never panic the decoder or the RPC layer:
/// every input decodes, waits for more bytes, or is refused with a typed error.
#[test]
fn mutated_frames_never_panic() {
    use greengrass_jobs_handler::ipc::rpc::RpcMessage;
    let seeds: Vec<Vec<u8>> = [
        "smithy-rs/valid_with_all_headers_and_payload",
        "aws-sdk-go/encoded/positive/all_headers",
        "smithy-rs/valid_empty_payload",
    ]
    .iter()
    .map(|p| vector(p))
    .collect();
    let mut rng = fastrand::Rng::with_seed(0x6767_6a68);
    let mut outcomes = [0usize; 3];
    for round in 0..20_000 {
        let mut bytes = seeds[round % seeds.len()].clone();
        match rng.u8(0..4) {
            0 => {
                let i = rng.usize(0..bytes.len());
                bytes[i] ^= 1 << rng.u8(0..8);
            }
            1 => bytes.truncate(rng.usize(0..bytes.len())),
            2 => {
                // Fix the CRCs after a change so the structural checks are reached.
                let i = rng.usize(12..bytes.len().max(13) - 4);
                bytes[i] = rng.u8(..);
                let total = bytes.len();
                let prelude = crc32fast::hash(&bytes[..8]);
                bytes[8..12].copy_from_slice(&prelude.to_be_bytes());
                let message = crc32fast::hash(&bytes[..total - 4]);
                bytes[total - 4..].copy_from_slice(&message.to_be_bytes());
            }
            _ => bytes = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect(),
        }
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&bytes[..]);
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                outcomes[0] += 1;
                let _ = RpcMessage::from_frame(&frame);
            }
            Ok(None) => outcomes[1] += 1,
            Err(_) => outcomes[2] += 1,
        }
    }
    assert!(
        outcomes.iter().all(|n| *n > 0),
        "every kind of outcome was exercised: {outcomes:?}"
    );
}
