use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use mycelium_network::{
    Connection, Frame, FrameCodec, Hello, Listener, NetworkError, PeerInfo, Server, ServerOptions,
    TlsIdentity, UnixSocketListener, certs,
};
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Kind the echo server treats as "close this connection now".
pub const KIND_HANG_UP: u8 = 0x20;
pub const KIND_ECHO: u8 = 0x10;

/// A generated cluster in a temporary directory.
pub struct Cluster {
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub fn new(members: &[&str]) -> Result<Cluster, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        certs::generate_cluster(dir.path(), members)?;
        Ok(Cluster { dir })
    }

    pub fn identity(&self, name: &str) -> Result<TlsIdentity, NetworkError> {
        TlsIdentity::load_member(self.dir.path(), name)
    }
}

/// A running echo server; what its handlers returned arrives on `outcomes`.
pub struct EchoServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), NetworkError>>,
    pub outcomes: mpsc::UnboundedReceiver<(PeerInfo, Result<(), String>)>,
    pub accepted: Arc<Mutex<usize>>,
}

impl EchoServer {
    pub async fn start(identity: TlsIdentity) -> Result<EchoServer, NetworkError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Ok(Self::start_on(listener, identity, quick_shutdown()))
    }

    /// Listens on a loopback port and on a Unix socket at `socket`.
    pub async fn start_with_socket(
        identity: TlsIdentity,
        socket: &std::path::Path,
    ) -> Result<EchoServer, NetworkError> {
        let tcp = TcpListener::bind("127.0.0.1:0").await?;
        let addr = tcp.local_addr()?;
        let unix = UnixSocketListener::bind(socket).await?;
        let listener = Listener::from(tcp).with_unix(unix);
        Ok(Self::serve(listener, addr, identity, quick_shutdown()))
    }

    pub fn start_on(
        listener: TcpListener,
        identity: TlsIdentity,
        options: ServerOptions,
    ) -> EchoServer {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Self::serve(listener.into(), addr, identity, options)
    }

    fn serve(
        listener: Listener,
        addr: SocketAddr,
        identity: TlsIdentity,
        options: ServerOptions,
    ) -> EchoServer {
        let shutdown = CancellationToken::new();
        let (tx, outcomes) = mpsc::unbounded_channel();
        let accepted = Arc::new(Mutex::new(0));
        let count = accepted.clone();
        let handler = move |conn: Connection, peer: PeerInfo| {
            let tx = tx.clone();
            *count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
            async move {
                let result = echo(conn).await;
                let _ = tx.send((peer, result.as_ref().map_err(|e| e.to_string()).copied()));
                result
            }
        };
        let task =
            tokio::spawn(Server::new(identity, options).serve(listener, handler, shutdown.clone()));
        EchoServer {
            addr,
            shutdown,
            task,
            outcomes,
            accepted,
        }
    }

    pub fn accepted(&self) -> usize {
        *self.accepted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the server and waits until it has returned.
    pub async fn stop(self) -> Result<(), Box<dyn std::error::Error>> {
        self.shutdown.cancel();
        self.task.await??;
        Ok(())
    }

    /// The next handler outcome, waiting at most two seconds.
    pub async fn next_outcome(&mut self) -> Option<(PeerInfo, Result<(), String>)> {
        tokio::time::timeout(Duration::from_secs(2), self.outcomes.recv())
            .await
            .ok()
            .flatten()
    }
}

pub fn quick_shutdown() -> ServerOptions {
    ServerOptions {
        shutdown_grace: Duration::ZERO,
        handshake_timeout: Duration::from_secs(2),
        ..ServerOptions::default()
    }
}

async fn echo(mut conn: Connection) -> Result<(), NetworkError> {
    while let Some(frame) = conn.recv().await? {
        if frame.kind == KIND_HANG_UP {
            return conn.close().await;
        }
        conn.send(frame.kind, frame.payload).await?;
    }
    Ok(())
}

/// Sends `payload` and expects it back.
pub async fn round_trip(conn: &mut Connection, payload: &'static [u8]) -> TestResult {
    let answer = conn.request(KIND_ECHO, Bytes::from_static(payload)).await?;
    assert_eq!(answer, Frame::new(KIND_ECHO, payload));
    Ok(())
}

/// TLS with `config`, then a hello claiming `hello`, returning the framed stream and the
/// server's answer (or the error that replaced it). For tests that misbehave on purpose.
pub async fn raw_handshake(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    hello: Frame,
) -> Result<
    (
        Framed<TlsStream<TcpStream>, FrameCodec>,
        Result<Frame, NetworkError>,
    ),
    NetworkError,
> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").map_err(io_other)?, tcp)
        .await?;
    let mut framed = Framed::new(tls, FrameCodec::default());
    framed.send(hello).await?;
    let answer = match framed.next().await {
        None => Err(NetworkError::Closed),
        Some(result) => result,
    };
    Ok((framed, answer))
}

pub fn hello_from(name: &str) -> Frame {
    Hello::new(name).to_frame()
}

fn io_other(e: impl std::fmt::Display) -> NetworkError {
    NetworkError::Io(std::io::Error::other(e.to_string()))
}

/// Polls `condition` every 20 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

/// Runs `fut` with every log line at WARN and above captured; returns its output and the logs.
/// Needs a current-thread runtime so spawned server tasks log into the same subscriber.
pub async fn with_logs<F: Future>(fut: F) -> (F::Output, String) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let output = {
        let _guard = tracing::subscriber::set_default(subscriber);
        fut.await
    };
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(PoisonError::into_inner))
        .into_owned();
    (output, text)
}

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}
