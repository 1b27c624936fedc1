//! Eventstream framing over a byte stream.
//!
//! Owns: turning bytes into [`Message`]s and back, with a hard upper bound on frame size.
//! Must not know: what the headers mean (that is [`super::rpc`]).
//!
//! The frame format itself is parsed and written by `aws-smithy-eventstream`; this file only
//! adapts it to `tokio_util::codec` so that a socket becomes a `Stream`/`Sink` of messages. The
//! prelude (total length, headers length, CRC) is read here first so that an oversized or
//! corrupt length is rejected *before* any of the frame body is buffered.

use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_types::event_stream::Message;
use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Size of the prelude: total length, headers length, prelude CRC.
const PRELUDE_LEN: usize = 12;
/// Prelude plus trailing message CRC: the smallest possible frame (no headers, no payload).
pub const MIN_FRAME_LEN: u32 = 16;

/// Default upper bound on one frame, headers and payload included.
///
/// 16 MiB is the eventstream specification's limit on a message payload, and it is what
/// aws-c-event-stream (the library under both the nucleus's peers and the device SDKs) accepts.
/// Greengrass's own IPC payloads are far smaller (an IoT Core message is at most 128 KiB), so a
/// bigger length can only be a corrupt or hostile prelude; refusing it before buffering keeps a
/// bad peer from making us allocate up to 4 GiB.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: u32, max: u32 },
    #[error("frame length {0} is shorter than the {MIN_FRAME_LEN}-byte minimum")]
    TooShort(u32),
    #[error("prelude checksum 0x{actual:08X} does not match computed 0x{expected:08X}")]
    PreludeChecksum { expected: u32, actual: u32 },
    #[error("message checksum 0x{actual:08X} does not match computed 0x{expected:08X}")]
    MessageChecksum { expected: u32, actual: u32 },
    #[error("malformed frame: {0}")]
    Malformed(aws_smithy_eventstream::error::Error),
    #[error("frame cannot be encoded: {0}")]
    Unencodable(aws_smithy_eventstream::error::Error),
    #[error("connection ended inside a frame ({0} bytes left over)")]
    Truncated(usize),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `tokio_util` codec for eventstream frames.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_len: u32,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameCodec {
    pub fn new(max_frame_len: u32) -> Self {
        Self { max_frame_len }
    }

    pub fn max_frame_len(&self) -> u32 {
        self.max_frame_len
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Decoder for FrameCodec {
    type Item = Message;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, FrameError> {
        if src.len() < PRELUDE_LEN {
            return Ok(None);
        }
        let total_len = be_u32(&src[0..4]);
        let expected = crc32fast::hash(&src[0..8]);
        let actual = be_u32(&src[8..12]);
        if expected != actual {
            return Err(FrameError::PreludeChecksum { expected, actual });
        }
        if total_len < MIN_FRAME_LEN {
            return Err(FrameError::TooShort(total_len));
        }
        if total_len > self.max_frame_len {
            return Err(FrameError::TooLarge {
                len: total_len,
                max: self.max_frame_len,
            });
        }
        let total = total_len as usize;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        let frame = src.split_to(total).freeze();
        match read_message_from(frame.clone()) {
            Ok(message) => Ok(Some(message)),
            Err(err) => {
                // Only on the error path: tell a checksum failure from a structural one.
                let expected = crc32fast::hash(&frame[..total - 4]);
                let actual = be_u32(&frame[total - 4..]);
                if expected != actual {
                    Err(FrameError::MessageChecksum { expected, actual })
                } else {
                    Err(FrameError::Malformed(err))
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Message>, FrameError> {
        match self.decode(src)? {
            Some(message) => Ok(Some(message)),
            None if src.is_empty() => Ok(None),
            None => {
                let left = src.remaining();
                src.clear();
                Err(FrameError::Truncated(left))
            }
        }
    }
}

impl Encoder<Message> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, message: Message, dst: &mut BytesMut) -> Result<(), FrameError> {
        let start = dst.len();
        write_message_to(&message, dst).map_err(FrameError::Unencodable)?;
        let written = dst.len() - start;
        if written > self.max_frame_len as usize {
            dst.truncate(start);
            return Err(FrameError::TooLarge {
                len: u32::try_from(written).unwrap_or(u32::MAX),
                max: self.max_frame_len,
            });
        }
        Ok(())
    }
}
