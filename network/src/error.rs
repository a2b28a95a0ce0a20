use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong in the network layer.
///
/// Errors that end one connection (`FrameTooLarge`, `MalformedFrame`, `Protocol`, `Handshake`,
/// `Tls`) never affect other connections; callers drop the connection and carry on.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// The TLS handshake with a peer failed: bad, missing or foreign certificate, or the peer
    /// refused ours.
    #[error("TLS handshake with {peer} failed: {reason}")]
    Tls { peer: String, reason: String },

    /// Our own certificate material cannot be turned into a TLS configuration (for example a
    /// key that does not belong to the certificate).
    #[error("invalid TLS configuration: {0}")]
    TlsConfig(String),

    /// A certificate or key file is missing, unreadable or unparsable.
    #[error("certificate file {}: {reason}", path.display())]
    Certificate { path: PathBuf, reason: String },

    /// Generating a certificate or key failed.
    #[error("generating certificates: {0}")]
    CertificateGeneration(#[from] rcgen::Error),

    /// The hello exchange after TLS failed: wrong magic, unsupported version, or a member name
    /// that the peer's certificate does not vouch for.
    #[error("handshake with {peer} refused: {reason}")]
    Handshake { peer: String, reason: String },

    /// A frame's length prefix exceeds the configured maximum; the connection is closed
    /// without reading the body.
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge { size: usize, max: usize },

    /// Bytes that do not form a valid frame.
    #[error("malformed frame: {0}")]
    MalformedFrame(String),

    /// A well-formed frame that is not allowed at this point of the conversation.
    #[error("protocol violation: {0}")]
    Protocol(String),

    /// Application frames must use kinds at or above [`crate::FIRST_APP_KIND`].
    #[error("message kind {0:#04x} is reserved for the network layer; use kinds >= 0x10")]
    ReservedKind(u8),

    #[error("{what} timed out after {after:?}")]
    Timeout { what: String, after: Duration },

    /// The peer closed the connection while we were waiting for a frame from it.
    #[error("connection closed by peer")]
    Closed,

    /// Connecting to a pooled peer failed on every attempt.
    #[error("peer {peer} is unreachable after {attempts} attempts: {source}")]
    PeerDown {
        peer: String,
        attempts: u32,
        #[source]
        source: Box<NetworkError>,
    },

    #[error("unknown peer {0:?}: add it to the pool first")]
    UnknownPeer(String),
}

impl NetworkError {
    /// Whether trying again later might succeed: the network or the peer's process was the
    /// problem, not certificates or protocol versions, which will fail the same way next time.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            NetworkError::Io(_)
                | NetworkError::Timeout { .. }
                | NetworkError::Closed
                | NetworkError::PeerDown { .. }
        )
    }
}
