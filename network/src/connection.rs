//! One authenticated, framed connection to another cluster member.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use rustls_pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use tokio_util::codec::Framed;

use crate::frame::{DEFAULT_MAX_FRAME_LEN, FIRST_APP_KIND, Frame, FrameCodec, kind};
use crate::handshake::{Hello, check_name};
use crate::tls::{handshake_error, member_names};
use crate::transport::{PeerAddr, Stream};
use crate::{NetworkError, TlsIdentity};

/// The authenticated member at the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Member name from the peer's hello, verified against its certificate.
    pub name: String,
    pub addr: PeerAddr,
}

impl fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.addr)
    }
}

/// Limits for establishing an outgoing connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Bound on the TCP (or Unix socket) connect.
    pub connect_timeout: Duration,
    /// Bound on the TLS handshake plus the hello exchange.
    pub handshake_timeout: Duration,
    /// Largest frame accepted from or sent to the peer (kind byte plus payload).
    pub max_frame_len: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

/// Whether the connection is at a frame boundary and may be handed to another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    /// An operation is in progress; if its future is dropped the state stays here, which
    /// marks the connection as unusable since a frame may be half written or half read.
    Busy,
    Broken,
}

/// A mutually authenticated TLS connection carrying [`Frame`]s.
///
/// Pings from the peer are answered inside [`Connection::recv`], so application code only sees
/// application frames (kinds >= [`FIRST_APP_KIND`]).
pub struct Connection {
    framed: Framed<TlsStream<Stream>, FrameCodec>,
    peer: PeerInfo,
    state: State,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Connects to the member at `addr` (`host:port`, or `unix:<path>` for a member on this host),
/// verifying that its certificate is valid for `server_name` (normally the member's name) and
/// exchanging hellos.
///
/// TLS refusals and handshake failures are logged with `warn!`.
pub async fn connect(
    addr: impl fmt::Display,
    server_name: &str,
    identity: &TlsIdentity,
    options: &ConnectOptions,
) -> Result<Connection, NetworkError> {
    let target = addr.to_string();
    let result = connect_inner(&target, server_name, identity, options).await;
    if let Err(e @ (NetworkError::Tls { .. } | NetworkError::Handshake { .. })) = &result {
        tracing::warn!(peer = %target, server_name, reason = %e, "cluster connection refused");
    }
    result
}

async fn connect_inner(
    target: &str,
    server_name: &str,
    identity: &TlsIdentity,
    options: &ConnectOptions,
) -> Result<Connection, NetworkError> {
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| {
        NetworkError::TlsConfig(format!("invalid server name {server_name:?}: {e}"))
    })?;
    let (stream, peer_addr) =
        tokio::time::timeout(options.connect_timeout, Stream::connect(target))
            .await
            .map_err(|_| NetworkError::Timeout {
                what: format!("connecting to {target}"),
                after: options.connect_timeout,
            })??;
    let connector = TlsConnector::from(identity.client_config());
    let handshake = async {
        let tls = connector
            .connect(name, stream)
            .await
            .map_err(|e| handshake_error(target, e))?;
        let cert_names = peer_cert_names(tls.get_ref().1.peer_certificates(), target)?;
        let mut framed = Framed::new(
            TlsStream::Client(tls),
            FrameCodec::new(options.max_frame_len),
        );
        framed.send(Hello::new(identity.name()).to_frame()).await?;
        // With TLS 1.3 the server judges our certificate after our side of the handshake is
        // done, so its refusal arrives here, as an alert on the first read.
        let reply = match framed.next().await {
            None => return Err(NetworkError::Closed),
            Some(Err(NetworkError::Io(e))) => return Err(handshake_error(target, e)),
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => frame,
        };
        let refused = |reason: String| NetworkError::Handshake {
            peer: target.to_owned(),
            reason,
        };
        if reply.kind == kind::REFUSE {
            return Err(refused(format!(
                "the peer refused us: {}",
                String::from_utf8_lossy(&reply.payload)
            )));
        }
        let hello = Hello::from_frame(&reply)?;
        hello.check_compatible().map_err(refused)?;
        check_name(&hello.name, &cert_names).map_err(refused)?;
        Ok(Connection {
            framed,
            peer: PeerInfo {
                name: hello.name,
                addr: peer_addr,
            },
            state: State::Idle,
        })
    };
    tokio::time::timeout(options.handshake_timeout, handshake)
        .await
        .map_err(|_| NetworkError::Timeout {
            what: format!("TLS and hello handshake with {target}"),
            after: options.handshake_timeout,
        })?
}

/// Server side of the handshake: TLS with a required client certificate, then the peer's
/// hello, checked against that certificate, then ours. A bad hello is answered with a
/// [`kind::REFUSE`] frame so the peer learns why.
pub(crate) async fn accept(
    stream: Stream,
    peer_addr: PeerAddr,
    acceptor: &TlsAcceptor,
    identity: &TlsIdentity,
    max_frame_len: usize,
) -> Result<Connection, NetworkError> {
    let label = peer_addr.to_string();
    let tls = acceptor
        .accept(stream)
        .await
        .map_err(|e| handshake_error(&label, e))?;
    let cert_names = peer_cert_names(tls.get_ref().1.peer_certificates(), &label)?;
    let mut framed = Framed::new(TlsStream::Server(tls), FrameCodec::new(max_frame_len));
    let first = framed.next().await.ok_or(NetworkError::Closed)??;
    let hello = Hello::from_frame(&first)?;
    let checked = hello
        .check_compatible()
        .and_then(|()| check_name(&hello.name, &cert_names));
    if let Err(reason) = checked {
        // Best effort: the refusal stands whether or not the peer reads it.
        let _ = framed
            .send(Frame::new(kind::REFUSE, Bytes::from(reason.clone())))
            .await;
        return Err(NetworkError::Handshake {
            peer: label,
            reason,
        });
    }
    framed.send(Hello::new(identity.name()).to_frame()).await?;
    Ok(Connection {
        framed,
        peer: PeerInfo {
            name: hello.name,
            addr: peer_addr,
        },
        state: State::Idle,
    })
}

fn peer_cert_names(
    certs: Option<&[rustls_pki_types::CertificateDer<'static>]>,
    peer: &str,
) -> Result<Vec<String>, NetworkError> {
    let tls_err = |reason: String| NetworkError::Tls {
        peer: peer.to_owned(),
        reason,
    };
    let leaf = certs
        .and_then(|c| c.first())
        .ok_or_else(|| tls_err("the peer presented no certificate".into()))?;
    member_names(leaf).map_err(tls_err)
}

impl Connection {
    /// The authenticated peer.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// Sends one application frame and flushes it. `kind` must be at least
    /// [`FIRST_APP_KIND`].
    pub async fn send(&mut self, kind: u8, payload: Bytes) -> Result<(), NetworkError> {
        if kind < FIRST_APP_KIND {
            return Err(NetworkError::ReservedKind(kind));
        }
        self.state = State::Busy;
        let result = self.framed.send(Frame { kind, payload }).await;
        self.state = if result.is_ok() {
            State::Idle
        } else {
            State::Broken
        };
        result
    }

    /// Queues one application frame without flushing, so several frames of one answer go out
    /// in one write; [`Connection::flush`] sends them.
    pub async fn feed(&mut self, kind: u8, payload: Bytes) -> Result<(), NetworkError> {
        if kind < FIRST_APP_KIND {
            return Err(NetworkError::ReservedKind(kind));
        }
        self.state = State::Busy;
        let result = self.framed.feed(Frame { kind, payload }).await;
        self.state = if result.is_ok() {
            State::Idle
        } else {
            State::Broken
        };
        result
    }

    /// Writes out every queued frame.
    pub async fn flush(&mut self) -> Result<(), NetworkError> {
        let result = SinkExt::<Frame>::flush(&mut self.framed).await;
        if result.is_err() {
            self.state = State::Broken;
        }
        result
    }

    /// Receives the next application frame; `Ok(None)` when the peer closed the connection
    /// cleanly between frames.
    pub async fn recv(&mut self) -> Result<Option<Frame>, NetworkError> {
        self.state = State::Busy;
        let result = self.recv_inner().await;
        self.state = match result {
            Ok(Some(_)) => State::Idle,
            Ok(None) | Err(_) => State::Broken,
        };
        result
    }

    async fn recv_inner(&mut self) -> Result<Option<Frame>, NetworkError> {
        loop {
            let frame = match self.framed.next().await {
                None => return Ok(None),
                // A peer that exits without a TLS close_notify is still a clean close when it
                // happens between frames.
                Some(Err(NetworkError::Io(e)))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof
                        && self.framed.read_buffer().is_empty() =>
                {
                    return Ok(None);
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(frame)) => frame,
            };
            match frame.kind {
                kind::PING => {
                    self.framed
                        .send(Frame::new(kind::PONG, frame.payload))
                        .await?;
                }
                // Answers to pings whose caller gave up waiting.
                kind::PONG => {}
                k if k < FIRST_APP_KIND => {
                    return Err(NetworkError::Protocol(format!(
                        "unexpected frame of reserved kind {k:#04x} after the handshake"
                    )));
                }
                _ => return Ok(Some(frame)),
            }
        }
    }

    /// Sends a request and waits for the next application frame as its answer.
    pub async fn request(&mut self, kind: u8, payload: Bytes) -> Result<Frame, NetworkError> {
        self.send(kind, payload).await?;
        self.recv().await?.ok_or(NetworkError::Closed)
    }

    /// Sends a ping and waits for its pong; returns the round-trip time. Meant for connections
    /// with no request in flight: an application frame arriving meanwhile is a protocol error.
    pub async fn ping(&mut self) -> Result<Duration, NetworkError> {
        self.state = State::Busy;
        let result = self.ping_inner().await;
        self.state = if result.is_ok() {
            State::Idle
        } else {
            State::Broken
        };
        result
    }

    async fn ping_inner(&mut self) -> Result<Duration, NetworkError> {
        let nonce = rand::random::<u64>().to_be_bytes();
        let start = Instant::now();
        self.framed
            .send(Frame::new(kind::PING, Bytes::copy_from_slice(&nonce)))
            .await?;
        loop {
            let frame = self.framed.next().await.ok_or(NetworkError::Closed)??;
            match frame.kind {
                kind::PONG if frame.payload[..] == nonce[..] => return Ok(start.elapsed()),
                kind::PONG => {}
                kind::PING => {
                    self.framed
                        .send(Frame::new(kind::PONG, frame.payload))
                        .await?;
                }
                k => {
                    return Err(NetworkError::Protocol(format!(
                        "frame of kind {k:#04x} arrived while waiting for a pong"
                    )));
                }
            }
        }
    }

    /// Closes the connection cleanly (TLS close_notify, then TCP shutdown).
    pub async fn close(mut self) -> Result<(), NetworkError> {
        self.framed.close().await
    }

    /// Whether the connection sits between frames with no error seen, so it can serve another
    /// request.
    pub fn is_reusable(&self) -> bool {
        self.state == State::Idle
    }

    /// Cheap liveness check for an idle connection: polls the socket once without waiting.
    /// Anything readable on an idle connection (end of stream, an error, or an unsolicited
    /// frame) means it cannot be reused.
    pub(crate) fn poll_idle_alive(&mut self) -> bool {
        if self.state != State::Idle {
            return false;
        }
        match self.framed.next().now_or_never() {
            None => true,
            Some(_) => {
                self.state = State::Broken;
                false
            }
        }
    }
}
