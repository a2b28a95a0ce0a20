//! The one network layer for connections between cluster members (proxy ↔ node, node ↔ node):
//! mutual TLS, framed messages, a version handshake, a connection pool with retry, and
//! heartbeats. It moves opaque payloads; what they mean is the business of the crates above.
//!
//! # Security
//!
//! Every connection is TLS 1.3 with certificates on both ends, both signed by the cluster CA
//! (see [`certs`]). Nothing else is trusted: a peer without a certificate, with a self-signed
//! one or with one from another CA is refused during the TLS handshake, and the refusal is
//! logged with `warn!` together with the peer's address and the reason. The crypto provider is
//! always rustls' `ring` provider, set on each configuration rather than process-wide.
//!
//! # Wire format
//!
//! After the TLS handshake both directions carry a sequence of frames:
//!
//! ```text
//! +----------------------+------------+-------------------------+
//! | length: u32, BE      | kind: u8   | payload: length-1 bytes |
//! +----------------------+------------+-------------------------+
//! ```
//!
//! `length` counts the bytes after the length field itself: the kind byte plus the payload, so
//! it is at least 1. A frame whose `length` is 0 is malformed; one whose `length` exceeds the
//! configured maximum ([`DEFAULT_MAX_FRAME_LEN`], 64 MiB, by default) is refused as soon as its
//! four length bytes have arrived, before any of its body is buffered. Either closes that
//! connection, and only that one.
//!
//! Kinds `0x00..=0x0f` belong to this layer ([`kind`]); applications use `0x10..=0xff`
//! ([`FIRST_APP_KIND`]):
//!
//! | kind            | name   | payload                                                      |
//! |-----------------|--------|--------------------------------------------------------------|
//! | `0x00`          | HELLO  | see below; only as the first frame in each direction         |
//! | `0x01`          | PING   | opaque (8 random bytes); answered with a PONG echoing it     |
//! | `0x02`          | PONG   | the payload of the PING it answers                           |
//! | `0x03`          | REFUSE | UTF-8 reason; sent instead of a HELLO, then the sender closes |
//! | `0x04..=0x0f`   | —      | reserved; receiving one is a protocol error                  |
//! | `0x10..=0xff`   | —      | application messages, payload defined by the caller          |
//!
//! # Handshake
//!
//! Right after TLS, the connecting side sends a HELLO frame and waits for the accepting side's
//! answer, which is either its own HELLO or a REFUSE saying why. HELLO payload, big-endian:
//!
//! ```text
//! +----------------+-----------------+------------------+------------------------+
//! | magic: "MYCL"  | version: u16    | name_len: u16    | name: name_len bytes,  |
//! | (4 bytes)      | (currently 1)   | (at most 255)    | UTF-8, no trailing data|
//! +----------------+-----------------+------------------+------------------------+
//! ```
//!
//! The receiver of a HELLO refuses the connection when the magic is not `MYCL`, the version is
//! not its own [`PROTOCOL_VERSION`], or the name is not one of the DNS subject alternative
//! names (other than `localhost`) of the certificate the sender authenticated with. The
//! authenticated name is what [`PeerInfo::name`] reports. Both sides bound the TLS handshake
//! plus the hello exchange with a timeout.
//!
//! After the handshake either side may send frames at any time; [`Connection::recv`] answers
//! PINGs by itself and hands only application frames to its caller.
//!
//! # Entry points
//!
//! - [`certs::generate_cluster`] / [`certs::ensure_cluster`] create the CA and member files;
//!   [`TlsIdentity::load`] reads them.
//! - [`connect`] opens one connection; [`Server::serve`] (or [`serve`]) accepts them, on a TCP
//!   port and optionally a Unix socket ([`Listener`]); an address `unix:<path>` connects to
//!   such a socket.
//! - [`Pool`] keeps connections to every peer, retries with backoff, and runs the heartbeat.

pub mod certs;
mod connection;
mod error;
mod frame;
mod handshake;
mod pool;
pub mod rpc;
mod server;
mod tls;
mod transport;

pub use connection::{ConnectOptions, Connection, PeerInfo, connect};
pub use error::NetworkError;
pub use frame::{DEFAULT_MAX_FRAME_LEN, FIRST_APP_KIND, Frame, FrameCodec, kind};
pub use handshake::{Hello, MAX_NAME_LEN, PROTOCOL_MAGIC, PROTOCOL_VERSION};
pub use pool::{Pool, PoolOptions, PooledConnection, RetryPolicy};
pub use server::{Server, ServerOptions, serve};
pub use tls::TlsIdentity;
pub use transport::{Listener, PeerAddr, UnixSocketListener};
