//! Target `frame`: the eventstream frame decoder ([`FrameCodec`]).
//!
//! The first input byte picks a mode: raw bytes, or bytes whose CRCs (and optionally total
//! length) are recomputed so that the fuzzer gets past the checksums into the headers, and a
//! small frame limit. Properties:
//! - decoding is the same whether the bytes arrive at once, in two pieces or byte by byte;
//! - a decoded frame consumed exactly its declared length, re-encodes to the very bytes it came
//!   from, and decodes again to the same message;
//! - nothing larger than the limit is ever returned.

use aws_smithy_types::event_stream::Message;
use bytes::BytesMut;
use greengrass_jobs_handler::ipc::codec::{FrameCodec, DEFAULT_MAX_FRAME_LEN, MIN_FRAME_LEN};
use tokio_util::codec::{Decoder, Encoder};

/// One decoding run: the frames with the bytes each consumed, then how it ended.
#[derive(Debug, PartialEq)]
struct Decoded {
    frames: Vec<(Message, Vec<u8>)>,
    /// The error that ended the stream, as text (`None`: the bytes ran out cleanly).
    end: Option<String>,
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Recomputes the prelude CRC (after setting the total length to the input's, when asked) and,
/// when the whole frame is present, the message CRC.
fn fix_crcs(mut bytes: Vec<u8>, fix_len: bool) -> Vec<u8> {
    if bytes.len() < 12 {
        return bytes;
    }
    if fix_len {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        bytes[0..4].copy_from_slice(&len.to_be_bytes());
    }
    let prelude = crc32fast::hash(&bytes[0..8]);
    bytes[8..12].copy_from_slice(&prelude.to_be_bytes());
    let total = be_u32(&bytes[0..4]) as usize;
    if total >= MIN_FRAME_LEN as usize && total <= bytes.len() {
        let crc = crc32fast::hash(&bytes[..total - 4]);
        bytes[total - 4..total].copy_from_slice(&crc.to_be_bytes());
    }
    bytes
}

/// Decodes `bytes` fed in pieces of `chunk` bytes (0: all at once).
fn decode(max: u32, bytes: &[u8], chunk: usize) -> Decoded {
    let mut codec = FrameCodec::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut consumed_total = 0;
    let pieces: Vec<&[u8]> = if chunk == 0 {
        vec![bytes]
    } else {
        bytes.chunks(chunk).collect()
    };
    let count = pieces.len();
    for (i, piece) in pieces.into_iter().enumerate() {
        buf.extend_from_slice(piece);
        let last = i + 1 == count;
        loop {
            let before = buf.len();
            let result = if last {
                codec.decode_eof(&mut buf)
            } else {
                codec.decode(&mut buf)
            };
            match result {
                Ok(Some(message)) => {
                    let used = before - buf.len();
                    assert!(used >= MIN_FRAME_LEN as usize && used <= max as usize);
                    let start = consumed_total;
                    consumed_total += used;
                    frames.push((message, bytes[start..consumed_total].to_vec()));
                }
                Ok(None) => break,
                Err(e) => {
                    return Decoded {
                        frames,
                        end: Some(e.to_string()),
                    }
                }
            }
        }
    }
    Decoded { frames, end: None }
}

pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = match mode % 3 {
        0 => rest.to_vec(),
        1 => fix_crcs(rest.to_vec(), false),
        _ => fix_crcs(rest.to_vec(), true),
    };
    let max = if mode & 0x80 != 0 {
        MIN_FRAME_LEN + u32::from(mode & 0x7c) * 4
    } else {
        DEFAULT_MAX_FRAME_LEN
    };
    let whole = decode(max, &bytes, 0);
    let split = (bytes.len() / 2).max(1);
    assert_eq!(
        whole,
        decode(max, &bytes, split),
        "decoding depends on how the bytes arrive"
    );
    if bytes.len() <= 4096 {
        assert_eq!(
            whole,
            decode(max, &bytes, 1),
            "byte-by-byte decoding differs"
        );
    }
    let mut codec = FrameCodec::new(max);
    for (message, raw) in &whole.frames {
        assert_eq!(be_u32(&raw[0..4]) as usize, raw.len());
        let mut out = BytesMut::new();
        codec
            .encode(message.clone(), &mut out)
            .expect("a decoded frame re-encodes");
        assert_eq!(&out[..], &raw[..], "re-encoding changed the bytes");
        let again = codec
            .decode(&mut out)
            .expect("a re-encoded frame decodes")
            .expect("a re-encoded frame is complete");
        assert_eq!(&again, message);
        assert!(out.is_empty());
    }
}
