//! Length-prefixed frames: `u32` big-endian length, one kind byte, payload.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::NetworkError;

/// Default maximum frame length (kind byte plus payload): 64 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 64 * 1024 * 1024;

/// Message kinds below this are reserved for the network layer itself.
pub const FIRST_APP_KIND: u8 = 0x10;

/// Reserved message kinds.
pub mod kind {
    /// First frame on each side of a connection; see [`crate::Hello`].
    pub const HELLO: u8 = 0x00;
    /// Liveness probe; the payload is echoed back in a [`PONG`].
    pub const PING: u8 = 0x01;
    /// Answer to a [`PING`], with the same payload.
    pub const PONG: u8 = 0x02;
    /// The sender refuses the connection; the payload is a UTF-8 reason. Sent instead of a hello.
    pub const REFUSE: u8 = 0x03;
}

/// One message: a kind byte and an opaque payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub payload: Bytes,
}

impl Frame {
    pub fn new(kind: u8, payload: impl Into<Bytes>) -> Frame {
        Frame {
            kind,
            payload: payload.into(),
        }
    }
}

/// Encodes and decodes [`Frame`]s, refusing any frame whose length prefix exceeds `max_frame_len`
/// before a byte of its body is buffered.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame_len: usize,
}

impl FrameCodec {
    /// `max_frame_len` bounds the length prefix (kind byte plus payload); values above
    /// `u32::MAX` are clamped, since the prefix cannot express more.
    pub fn new(max_frame_len: usize) -> FrameCodec {
        FrameCodec {
            max_frame_len: max_frame_len.min(u32::MAX as usize),
        }
    }

    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = NetworkError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, NetworkError> {
        let Some(prefix) = src.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len == 0 {
            return Err(NetworkError::MalformedFrame(
                "length prefix is 0, but every frame has a kind byte".into(),
            ));
        }
        if len > self.max_frame_len {
            return Err(NetworkError::FrameTooLarge {
                size: len,
                max: self.max_frame_len,
            });
        }
        let total = 4 + len;
        if src.len() < total {
            // The length was checked against the maximum above, so this reservation is bounded.
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(4);
        let kind = src.get_u8();
        let payload = src.split_to(len - 1).freeze();
        Ok(Some(Frame { kind, payload }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = NetworkError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), NetworkError> {
        let len = frame.payload.len() + 1;
        if len > self.max_frame_len {
            return Err(NetworkError::FrameTooLarge {
                size: len,
                max: self.max_frame_len,
            });
        }
        dst.reserve(4 + len);
        // Cannot truncate: max_frame_len is clamped to u32::MAX.
        dst.put_u32(len as u32);
        dst.put_u8(frame.kind);
        dst.put_slice(&frame.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
