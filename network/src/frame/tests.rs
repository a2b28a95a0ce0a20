use bytes::{BufMut, BytesMut};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

use super::*;

fn decode_all(codec: &mut FrameCodec, bytes: &[u8]) -> Result<Vec<Frame>, NetworkError> {
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = codec.decode(&mut buf)? {
        frames.push(frame);
    }
    Ok(frames)
}

fn encode(frames: &[Frame]) -> Result<BytesMut, NetworkError> {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    for frame in frames {
        codec.encode(frame.clone(), &mut buf)?;
    }
    Ok(buf)
}

#[test]
fn layout_is_length_then_kind_then_payload() -> Result<(), NetworkError> {
    let buf = encode(&[Frame::new(0x10, &b"abc"[..])])?;
    assert_eq!(&buf[..], b"\x00\x00\x00\x04\x10abc");
    Ok(())
}

#[test]
fn empty_payload_is_a_one_byte_frame() -> Result<(), NetworkError> {
    let buf = encode(&[Frame::new(0x11, Bytes::new())])?;
    assert_eq!(&buf[..], b"\x00\x00\x00\x01\x11");
    assert_eq!(
        decode_all(&mut FrameCodec::default(), &buf)?,
        vec![Frame::new(0x11, Bytes::new())]
    );
    Ok(())
}

#[test]
fn partial_frames_wait_for_more_bytes() -> Result<(), NetworkError> {
    let buf = encode(&[Frame::new(0x10, &b"hello"[..])])?;
    let mut codec = FrameCodec::default();
    for cut in 0..buf.len() {
        assert!(
            decode_all(&mut codec, &buf[..cut])?.is_empty(),
            "cut at {cut}"
        );
    }
    assert_eq!(decode_all(&mut codec, &buf)?.len(), 1);
    Ok(())
}

#[test]
fn zero_length_is_malformed() {
    let err = decode_all(&mut FrameCodec::default(), b"\x00\x00\x00\x00");
    assert!(
        matches!(err, Err(NetworkError::MalformedFrame(_))),
        "{err:?}"
    );
}

#[test]
fn oversized_length_is_refused_before_the_body_arrives() {
    let mut codec = FrameCodec::new(16);
    let mut buf = BytesMut::new();
    buf.put_u32(17);
    let err = codec.decode(&mut buf);
    assert!(
        matches!(err, Err(NetworkError::FrameTooLarge { size: 17, max: 16 })),
        "{err:?}"
    );
    // 1 GiB claimed: refused without reserving anything near that.
    let mut buf = BytesMut::new();
    buf.put_u32(1 << 30);
    assert!(FrameCodec::default().decode(&mut buf).is_err());
    assert!(buf.capacity() < 1 << 20);
}

#[test]
fn frames_at_the_maximum_pass_and_above_it_fail_to_encode() -> Result<(), NetworkError> {
    let mut codec = FrameCodec::new(4);
    let mut buf = BytesMut::new();
    codec.encode(Frame::new(0x10, &b"abc"[..]), &mut buf)?;
    assert_eq!(decode_all(&mut codec, &buf)?.len(), 1);
    let err = codec.encode(Frame::new(0x10, &b"abcd"[..]), &mut BytesMut::new());
    assert!(matches!(
        err,
        Err(NetworkError::FrameTooLarge { size: 5, max: 4 })
    ));
    Ok(())
}

proptest! {
    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        max in 1usize..4096,
    ) {
        let mut codec = FrameCodec::new(max);
        let mut buf = BytesMut::from(&bytes[..]);
        // Either frames, a wait for more, or an error; never a panic or an endless loop.
        for _ in 0..bytes.len() + 1 {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => prop_assert!(frame.payload.len() < max),
                Ok(None) | Err(_) => break,
            }
        }
        let _ = codec.decode_eof(&mut buf);
    }

    #[test]
    fn frames_round_trip_whatever_the_chunking(
        frames in proptest::collection::vec(
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300)),
            0..8,
        ),
        chunk in 1usize..64,
    ) {
        let frames: Vec<Frame> =
            frames.into_iter().map(|(k, p)| Frame::new(k, p)).collect();
        let wire = encode(&frames).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(frame) = codec.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                decoded.push(frame);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded, frames);
    }
}
