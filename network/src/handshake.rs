//! The hello exchange that follows the TLS handshake.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::NetworkError;
use crate::frame::{Frame, kind};

/// Identifies the Mycelium cluster protocol in every hello.
pub const PROTOCOL_MAGIC: [u8; 4] = *b"MYCL";

/// The protocol version this build speaks. Peers must speak the same version. 2: EXECUTE and
/// COPY_IN carry the client's `TimeZone`; 3: and the transaction's lock order, and DONE carries
/// where COMMIT_DECISION's and FINISH_PREPARED's commits landed.
pub const PROTOCOL_VERSION: u16 = 3;

/// Longest member name a hello may carry (a DNS name is at most 253 bytes).
pub const MAX_NAME_LEN: usize = 255;

/// The first frame each side sends: who it is and which protocol it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub magic: [u8; 4],
    pub version: u16,
    pub name: String,
}

impl Hello {
    /// A hello for this build's protocol from member `name`.
    pub fn new(name: impl Into<String>) -> Hello {
        Hello {
            magic: PROTOCOL_MAGIC,
            version: PROTOCOL_VERSION,
            name: name.into(),
        }
    }

    /// The hello as a frame of kind [`kind::HELLO`]: magic (4 bytes), version (u16 BE),
    /// name length (u16 BE), name (UTF-8).
    pub fn to_frame(&self) -> Frame {
        let mut buf = BytesMut::with_capacity(8 + self.name.len());
        buf.put_slice(&self.magic);
        buf.put_u16(self.version);
        // Names longer than MAX_NAME_LEN are refused by the receiver; the cast cannot wrap for
        // any name that could pass that check.
        buf.put_u16(self.name.len().min(u16::MAX as usize) as u16);
        buf.put_slice(self.name.as_bytes());
        Frame::new(kind::HELLO, buf.freeze())
    }

    /// Parses a hello frame. Only the layout is checked here; [`Hello::check_compatible`]
    /// checks magic and version.
    pub fn from_frame(frame: &Frame) -> Result<Hello, NetworkError> {
        if frame.kind != kind::HELLO {
            return Err(NetworkError::Protocol(format!(
                "expected a hello frame (kind {:#04x}), got kind {:#04x}",
                kind::HELLO,
                frame.kind
            )));
        }
        let malformed = |what: &str| NetworkError::MalformedFrame(format!("hello: {what}"));
        let mut buf: Bytes = frame.payload.clone();
        if buf.remaining() < 8 {
            return Err(malformed("shorter than its 8-byte header"));
        }
        let mut magic = [0u8; 4];
        buf.copy_to_slice(&mut magic);
        let version = buf.get_u16();
        let name_len = buf.get_u16() as usize;
        if name_len > MAX_NAME_LEN {
            return Err(malformed("member name longer than 255 bytes"));
        }
        if buf.remaining() != name_len {
            return Err(malformed("name length does not match the frame length"));
        }
        let name = String::from_utf8(buf.to_vec()).map_err(|_| malformed("name is not UTF-8"))?;
        Ok(Hello {
            magic,
            version,
            name,
        })
    }

    /// Refuses a hello from a different protocol or version, saying which.
    pub fn check_compatible(&self) -> Result<(), String> {
        if self.magic != PROTOCOL_MAGIC {
            return Err(format!(
                "protocol magic {:?} is not {:?}: the peer is not a Mycelium cluster member",
                String::from_utf8_lossy(&self.magic),
                String::from_utf8_lossy(&PROTOCOL_MAGIC)
            ));
        }
        if self.version != PROTOCOL_VERSION {
            return Err(format!(
                "protocol version {} is not supported (this member speaks version {}); \
                 run the same Mycelium version on every member",
                self.version, PROTOCOL_VERSION
            ));
        }
        if self.name.is_empty() {
            return Err("the hello carries no member name".into());
        }
        Ok(())
    }
}

/// Checks that the certificate the peer authenticated with vouches for the name in its hello.
pub(crate) fn check_name(claimed: &str, cert_names: &[String]) -> Result<(), String> {
    if cert_names.iter().any(|n| n.eq_ignore_ascii_case(claimed)) {
        Ok(())
    } else {
        Err(format!(
            "hello claims to be {claimed:?}, but the peer's certificate is for {cert_names:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips() -> Result<(), NetworkError> {
        let hello = Hello::new("n1");
        assert_eq!(Hello::from_frame(&hello.to_frame())?, hello);
        assert!(hello.check_compatible().is_ok());
        Ok(())
    }

    #[test]
    fn hello_layout_is_stable() {
        let frame = Hello::new("ab").to_frame();
        assert_eq!(frame.kind, 0);
        assert_eq!(&frame.payload[..], b"MYCL\x00\x03\x00\x02ab");
    }

    #[test]
    fn incompatible_hellos_are_refused() {
        let mut wrong_version = Hello::new("n1");
        wrong_version.version = PROTOCOL_VERSION + 1;
        let err = wrong_version.check_compatible().err().unwrap_or_default();
        assert!(
            err.contains(&format!(
                "version {} is not supported",
                PROTOCOL_VERSION + 1
            )),
            "{err}"
        );

        let mut wrong_magic = Hello::new("n1");
        wrong_magic.magic = *b"HTTP";
        assert!(wrong_magic.check_compatible().is_err());
    }

    #[test]
    fn malformed_hellos_are_errors() {
        for payload in [
            &b""[..],
            b"MYCL\x00\x01\x00",
            b"MYCL\x00\x01\x00\x05ab",
            b"MYCL\x00\x01\x00\x02abc",
            b"MYCL\x00\x01\x00\x02\xff\xfe",
        ] {
            let frame = Frame::new(kind::HELLO, Bytes::copy_from_slice(payload));
            assert!(Hello::from_frame(&frame).is_err(), "{payload:?}");
        }
        assert!(Hello::from_frame(&Frame::new(kind::PING, Bytes::new())).is_err());
    }

    #[test]
    fn names_must_be_vouched_for_by_the_certificate() {
        let names = vec!["n1".to_owned()];
        assert!(check_name("n1", &names).is_ok());
        assert!(check_name("N1", &names).is_ok());
        assert!(check_name("n2", &names).is_err());
        assert!(check_name("localhost", &names).is_err());
    }
}
