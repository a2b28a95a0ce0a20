//! What cluster connections run over: TCP, or a Unix socket between members on one host.
//!
//! A Unix socket carries the same mutual TLS and frames as TCP; it only skips the kernel's
//! TCP stack, which on loopback costs each side of a round trip several microseconds of CPU
//! (the sender runs the receiver's TCP processing too). An address written `unix:<path>`
//! means the socket at `<path>`; anything else is `host:port`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// The prefix of an address that names a Unix socket: `unix:/run/mycelium/n1.sock`.
const UNIX_PREFIX: &str = "unix:";

/// The Unix socket an address names, if it names one.
fn unix_path(addr: &str) -> Option<&Path> {
    addr.strip_prefix(UNIX_PREFIX).map(Path::new)
}

/// Where a connection comes from or goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAddr {
    Tcp(SocketAddr),
    /// The socket's path (the listener's, on the accepting side: a connecting Unix socket
    /// has no name of its own).
    Unix(PathBuf),
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(addr) => addr.fmt(f),
            PeerAddr::Unix(path) => write!(f, "{UNIX_PREFIX}{}", path.display()),
        }
    }
}

/// A connected byte stream.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Connects to `addr`: `unix:<path>` or `host:port`. Request and response frames are
    /// small and latency-bound, so TCP runs without Nagle's delay.
    pub async fn connect(addr: &str) -> io::Result<(Stream, PeerAddr)> {
        match unix_path(addr) {
            Some(path) => {
                let stream = UnixStream::connect(path).await?;
                Ok((Stream::Unix(stream), PeerAddr::Unix(path.to_owned())))
            }
            None => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let peer = stream.peer_addr()?;
                Ok((Stream::Tcp(stream), PeerAddr::Tcp(peer)))
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Where a member accepts connections: a TCP port, and optionally a Unix socket too for
/// members on the same host.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    unix: Option<UnixSocketListener>,
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Listener {
        Listener { tcp, unix: None }
    }
}

impl Listener {
    /// Accepts on `unix` as well as on the TCP port.
    pub fn with_unix(self, unix: UnixSocketListener) -> Listener {
        Listener {
            unix: Some(unix),
            ..self
        }
    }

    /// Both addresses, for the log.
    pub fn describe(&self) -> String {
        let tcp = self
            .tcp
            .local_addr()
            .map_or_else(|e| format!("<{e}>"), |a| a.to_string());
        match &self.unix {
            Some(unix) => format!("{tcp} and {UNIX_PREFIX}{}", unix.path.display()),
            None => tcp,
        }
    }

    /// The next connection on either socket. Cancel-safe, as both accepts are.
    pub async fn accept(&self) -> io::Result<(Stream, PeerAddr)> {
        let tcp = async {
            let (stream, addr) = self.tcp.accept().await?;
            stream.set_nodelay(true)?;
            Ok((Stream::Tcp(stream), PeerAddr::Tcp(addr)))
        };
        let Some(unix) = &self.unix else {
            return tcp.await;
        };
        tokio::select! {
            accepted = tcp => accepted,
            accepted = unix.listener.accept() => {
                let (stream, _unnamed) = accepted?;
                Ok((Stream::Unix(stream), PeerAddr::Unix(unix.path.clone())))
            }
        }
    }
}

/// A listening Unix socket that removes its file when dropped.
#[derive(Debug)]
pub struct UnixSocketListener {
    listener: UnixListener,
    path: PathBuf,
}

impl UnixSocketListener {
    /// Listens at `path`. A socket file left there by a process that is gone (killed, so it
    /// could not remove it) is replaced; one a running process still accepts on, or a file
    /// that is not a socket, is an error.
    pub async fn bind(path: &Path) -> io::Result<UnixSocketListener> {
        if let Ok(existing) = std::fs::symlink_metadata(path) {
            if !existing.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            if UnixStream::connect(path).await.is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running process", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        Ok(UnixSocketListener {
            listener,
            path: path.to_owned(),
        })
    }
}

impl Drop for UnixSocketListener {
    fn drop(&mut self) {
        // Best effort: a file left behind is replaced at the next bind.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nagle's algorithm on either end holds a small write behind the peer's delayed ACK
    /// (40 ms on Linux): a primary shipping entries on a connection its secondary opened did.
    #[tokio::test]
    async fn both_ends_of_a_tcp_connection_send_without_delay() -> io::Result<()> {
        let listener = Listener::from(TcpListener::bind("127.0.0.1:0").await?);
        let addr = listener.tcp.local_addr()?.to_string();
        let (connected, accepted) = tokio::join!(Stream::connect(&addr), listener.accept());
        for (side, stream) in [("connecting", connected?.0), ("accepting", accepted?.0)] {
            match stream {
                Stream::Tcp(tcp) => assert!(tcp.nodelay()?, "the {side} side runs Nagle"),
                Stream::Unix(_) => panic!("the {side} side is not TCP"),
            }
        }
        Ok(())
    }
}
