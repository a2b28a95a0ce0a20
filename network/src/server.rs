//! The accept loop for incoming cluster connections.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::connection::{Connection, PeerInfo, accept};
use crate::frame::DEFAULT_MAX_FRAME_LEN;
use crate::transport::{Listener, PeerAddr, Stream};
use crate::{NetworkError, TlsIdentity};

/// Limits for the server side.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest frame accepted from or sent to a peer (kind byte plus payload).
    pub max_frame_len: usize,
    /// Bound on the TLS handshake plus the hello exchange of each connection.
    pub handshake_timeout: Duration,
    /// Connections served at once; further peers wait in the listen backlog.
    pub max_connections: usize,
    /// On shutdown, how long handlers may run on before their connections are dropped.
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Serves mTLS cluster connections, one task per connection.
#[derive(Debug, Clone)]
pub struct Server {
    identity: TlsIdentity,
    options: ServerOptions,
}

/// Serves with default [`ServerOptions`]; see [`Server::serve`].
pub async fn serve<H, Fut>(
    listener: impl Into<Listener>,
    identity: &TlsIdentity,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), NetworkError>
where
    H: Fn(Connection, PeerInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), NetworkError>> + Send + 'static,
{
    Server::new(identity.clone(), ServerOptions::default())
        .serve(listener, handler, shutdown)
        .await
}

impl Server {
    pub fn new(identity: TlsIdentity, options: ServerOptions) -> Server {
        Server { identity, options }
    }

    /// Accepts connections on `listener` (a TCP port, and a Unix socket if it has one) until `shutdown` is cancelled, then stops accepting,
    /// gives running handlers [`ServerOptions::shutdown_grace`] to finish, drops the rest and
    /// returns once every connection task has ended.
    ///
    /// Each connection runs in its own task inside a `cluster_conn` span carrying the peer's
    /// address and, once authenticated, its name. `handler` gets the connection after the TLS
    /// and hello handshakes; an error it returns is logged and closes that connection only.
    /// Peers refused during the handshake are logged with `warn!` and never reach `handler`.
    pub async fn serve<H, Fut>(
        self,
        listener: impl Into<Listener>,
        handler: H,
        shutdown: CancellationToken,
    ) -> Result<(), NetworkError>
    where
        H: Fn(Connection, PeerInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), NetworkError>> + Send + 'static,
    {
        let listener = listener.into();
        let shared = Arc::new(Shared {
            acceptor: TlsAcceptor::from(self.identity.server_config()),
            identity: self.identity,
            options: self.options,
            handler,
            abort: CancellationToken::new(),
        });
        let limit = Arc::new(Semaphore::new(shared.options.max_connections.max(1)));
        let tracker = TaskTracker::new();
        tracing::info!(
            addr = %listener.describe(),
            member = shared.identity.name(),
            "serving cluster connections"
        );

        loop {
            let Some(Ok(permit)) = shutdown
                .run_until_cancelled(limit.clone().acquire_owned())
                .await
            else {
                break;
            };
            let Some(accepted) = shutdown.run_until_cancelled(listener.accept()).await else {
                break;
            };
            let (stream, addr) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Typically out of file descriptors: pause rather than spin, and keep
                    // serving the connections we have.
                    tracing::warn!(error = %e, "accepting a cluster connection failed");
                    let pause = tokio::time::sleep(Duration::from_millis(100));
                    if shutdown.run_until_cancelled(pause).await.is_none() {
                        break;
                    }
                    continue;
                }
            };
            let span = tracing::info_span!(
                "cluster_conn",
                peer.addr = %addr,
                peer.name = tracing::field::Empty
            );
            tracker.spawn(handle(shared.clone(), stream, addr, permit).instrument(span));
        }

        drop(listener);
        tracker.close();
        tracing::info!(
            connections = tracker.len(),
            "cluster listener stopped; waiting for connections to finish"
        );
        if tokio::time::timeout(shared.options.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            shared.abort.cancel();
            tracker.wait().await;
        }
        Ok(())
    }
}

struct Shared<H> {
    acceptor: TlsAcceptor,
    identity: TlsIdentity,
    options: ServerOptions,
    handler: H,
    /// Fires when the shutdown grace period is over.
    abort: CancellationToken,
}

async fn handle<H, Fut>(
    shared: Arc<Shared<H>>,
    stream: Stream,
    addr: PeerAddr,
    _permit: OwnedSemaphorePermit,
) where
    H: Fn(Connection, PeerInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), NetworkError>> + Send + 'static,
{
    let handshake = tokio::time::timeout(
        shared.options.handshake_timeout,
        accept(
            stream,
            addr.clone(),
            &shared.acceptor,
            &shared.identity,
            shared.options.max_frame_len,
        ),
    );
    let conn = match shared.abort.run_until_cancelled(handshake).await {
        None => return,
        Some(Ok(Ok(conn))) => conn,
        Some(Ok(Err(NetworkError::Io(e)))) => {
            // Port probes and health checks that hang up before TLS are not worth a warning.
            tracing::debug!(peer = %addr, error = %e, "connection ended during the handshake");
            return;
        }
        Some(Ok(Err(e))) => {
            tracing::warn!(peer = %addr, reason = %e, "cluster connection refused");
            return;
        }
        Some(Err(_elapsed)) => {
            tracing::warn!(
                peer = %addr,
                reason = "handshake timed out",
                timeout = ?shared.options.handshake_timeout,
                "cluster connection refused"
            );
            return;
        }
    };
    let peer = conn.peer().clone();
    tracing::Span::current().record("peer.name", peer.name.as_str());
    tracing::debug!("cluster connection established");
    match shared
        .abort
        .run_until_cancelled((shared.handler)(conn, peer))
        .await
    {
        None => tracing::debug!("connection dropped at shutdown"),
        Some(Ok(())) => tracing::debug!("connection closed"),
        Some(Err(e)) => tracing::warn!(error = %e, "connection closed with an error"),
    }
}
