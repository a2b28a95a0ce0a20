//! Connections to every other member: pooled per peer, established with retry, and watched by
//! a heartbeat.

use std::collections::HashMap;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::connection::{ConnectOptions, Connection, connect};
use crate::{NetworkError, TlsIdentity};

/// Exponential backoff with jitter between connection attempts.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Delay before the second attempt; doubles after each further failure.
    pub base: Duration,
    /// Ceiling for the delay.
    pub max: Duration,
    /// Attempts in total, the first included; at least one is always made.
    pub attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
            attempts: 6,
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (0-based): `min(max, base * 2^attempt)`,
    /// then a uniformly random point in its upper half, so peers restarting together do not
    /// reconnect in lockstep while the delay still grows.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(31)))
            .min(self.max);
        let half = ceiling / 2;
        let jitter_nanos = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(rand::rng().random_range(0..=jitter_nanos))
    }
}

/// Settings of a [`Pool`].
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Connections open to one peer at once, idle ones included.
    pub max_per_peer: usize,
    /// How long [`Pool::get`] waits for a free slot when all are in use.
    pub acquire_timeout: Duration,
    pub connect: ConnectOptions,
    pub retry: RetryPolicy,
    /// Time between two pings of the same peer.
    pub heartbeat_interval: Duration,
    /// A peer that does not answer a ping (including reconnecting) within this is down.
    pub heartbeat_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_per_peer: 16,
            acquire_timeout: Duration::from_secs(10),
            connect: ConnectOptions::default(),
            retry: RetryPolicy::default(),
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(3),
        }
    }
}

/// Per-peer pools of connections to the other members, plus their up/down state.
///
/// Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("member", &self.inner.identity.name())
            .field("peers", &self.peers())
            .finish_non_exhaustive()
    }
}

struct Inner {
    identity: TlsIdentity,
    options: PoolOptions,
    peers: RwLock<HashMap<String, Arc<Peer>>>,
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

struct Peer {
    name: String,
    addr: String,
    /// Boxed: a `Connection` (TLS state and buffers) is large, and a pooled one moves on every
    /// checkout and return (and through the oneshot that hands a statement's connection back).
    #[expect(
        clippy::vec_box,
        reason = "connections move in and out of the Vec on every statement; boxed, a move is a pointer"
    )]
    idle: Mutex<Vec<Box<Connection>>>,
    slots: Arc<Semaphore>,
    health: AtomicU8,
}

impl Peer {
    fn take_idle(&self) -> Option<Box<Connection>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(mut conn) = idle.pop() {
            if conn.poll_idle_alive() {
                return Some(conn);
            }
        }
        None
    }

    fn mark(&self, health: u8, reason: Option<&NetworkError>) {
        let before = self.health.swap(health, Ordering::AcqRel);
        if before == health {
            return;
        }
        match (health, reason) {
            (UP, _) => tracing::info!(peer = %self.name, addr = %self.addr, "peer is up"),
            (_, Some(reason)) => {
                tracing::warn!(peer = %self.name, addr = %self.addr, %reason, "peer is down");
            }
            _ => tracing::warn!(peer = %self.name, addr = %self.addr, "peer is down"),
        }
        if health == DOWN {
            // Whatever was idle went to a peer that no longer answers.
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }
}

impl Pool {
    /// An empty pool that connects as `identity`.
    pub fn new(identity: TlsIdentity, options: PoolOptions) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                identity,
                options,
                peers: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Adds member `name` reachable at `addr` (`host:port`), or moves it to a new address,
    /// dropping connections to the old one. Its certificate must be valid for `name`.
    pub fn add_peer(&self, name: impl Into<String>, addr: impl Into<String>) {
        let name = name.into();
        let addr = addr.into();
        let mut peers = self
            .inner
            .peers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if peers.get(&name).is_some_and(|p| p.addr == addr) {
            return;
        }
        let peer = Peer {
            name: name.clone(),
            addr,
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(self.inner.options.max_per_peer.max(1))),
            health: AtomicU8::new(UNKNOWN),
        };
        peers.insert(name, Arc::new(peer));
    }

    /// Forgets a peer; connections in use finish normally and are then closed.
    pub fn remove_peer(&self, name: &str) {
        self.inner
            .peers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    /// Names of the known peers, sorted.
    pub fn peers(&self) -> Vec<String> {
        let mut names: Vec<String> = self.snapshot().iter().map(|p| p.name.clone()).collect();
        names.sort();
        names
    }

    /// Whether the last heartbeat reached `peer`. False for unknown peers and before the first
    /// heartbeat.
    pub fn is_up(&self, peer: &str) -> bool {
        self.peer(peer)
            .is_ok_and(|p| p.health.load(Ordering::Acquire) == UP)
    }

    /// A connection to `peer`: an idle one if there is one, else a new one, connecting with
    /// retry and backoff. Waits while `max_per_peer` connections are in use.
    ///
    /// The connection goes back to the pool when dropped, unless it saw an error or an
    /// operation on it was cancelled half-way. Drop it only between a request and its complete
    /// answer having been read; otherwise call [`PooledConnection::discard`].
    pub async fn get(&self, peer: &str) -> Result<PooledConnection, NetworkError> {
        let peer = self.peer(peer)?;
        let timeout = self.inner.options.acquire_timeout;
        // A free slot is the common case: take it without arming the timeout's timer.
        let permit = match peer.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(timeout, peer.slots.clone().acquire_owned())
                .await
                .map_err(|_| NetworkError::Timeout {
                    what: format!(
                        "waiting for a free connection to {} ({} in use)",
                        peer.name, self.inner.options.max_per_peer
                    ),
                    after: timeout,
                })?
                .map_err(|_| NetworkError::UnknownPeer(peer.name.clone()))?,
        };
        let conn = match peer.take_idle() {
            Some(conn) => conn,
            None => Box::new(self.connect_with_retry(&peer).await?),
        };
        Ok(PooledConnection {
            conn: Some(conn),
            peer,
            _permit: permit,
        })
    }

    async fn connect_with_retry(&self, peer: &Peer) -> Result<Connection, NetworkError> {
        let options = &self.inner.options;
        let attempts = options.retry.attempts.max(1);
        let mut attempt = 0;
        loop {
            let error = match connect(
                peer.addr.as_str(),
                &peer.name,
                &self.inner.identity,
                &options.connect,
            )
            .await
            {
                Ok(conn) => {
                    // Before the first heartbeat, a handshake that succeeded is news enough:
                    // a proxy that just started asks the nodes it reached for the cluster map
                    // without waiting a heartbeat interval. A peer found down waits for the
                    // heartbeat to be trusted again.
                    if peer
                        .health
                        .compare_exchange(UNKNOWN, UP, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        tracing::info!(peer = %peer.name, addr = %peer.addr, "peer is up");
                    }
                    return Ok(conn);
                }
                // Certificates and protocol versions fail the same way every time.
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => e,
            };
            attempt += 1;
            if attempt >= attempts {
                // Callers choosing between peers (a proxy failing a read over to another
                // copy) should not wait for the next heartbeat to learn it.
                peer.mark(DOWN, Some(&error));
                return Err(NetworkError::PeerDown {
                    peer: peer.name.clone(),
                    attempts,
                    source: Box::new(error),
                });
            }
            let delay = options.retry.delay(attempt - 1);
            tracing::debug!(
                peer = %peer.name, addr = %peer.addr, attempt, ?delay, %error,
                "connecting failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// The heartbeat loop; spawn it, and cancel `shutdown` to stop it. Every
    /// `heartbeat_interval` it pings each peer over a connection of its own (so pings never
    /// interleave with requests), reconnecting once per round when that connection is gone,
    /// and records whether the peer answered within `heartbeat_timeout`. Transitions are
    /// logged: `info!` for up, `warn!` with the reason for down.
    pub fn heartbeat(
        &self,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let mut links: HashMap<String, (Arc<Peer>, Connection)> = HashMap::new();
            let mut interval = tokio::time::interval(inner.options.heartbeat_interval);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                if shutdown
                    .run_until_cancelled(interval.tick())
                    .await
                    .is_none()
                {
                    break;
                }
                let peers = snapshot(&inner);
                let probes = peers.into_iter().map(|peer| {
                    // A link to a peer that was since removed or moved is simply dropped.
                    let link = links
                        .remove(&peer.name)
                        .filter(|(p, _)| Arc::ptr_eq(p, &peer))
                        .map(|(_, conn)| conn);
                    probe(&inner, peer, link)
                });
                let Some(results) = shutdown
                    .run_until_cancelled(futures::future::join_all(probes))
                    .await
                else {
                    break;
                };
                links.clear();
                for (peer, result) in results {
                    match result {
                        Ok(conn) => {
                            peer.mark(UP, None);
                            links.insert(peer.name.clone(), (peer, conn));
                        }
                        Err(e) => peer.mark(DOWN, Some(&e)),
                    }
                }
            }
        }
    }

    fn peer(&self, name: &str) -> Result<Arc<Peer>, NetworkError> {
        self.inner
            .peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| NetworkError::UnknownPeer(name.to_owned()))
    }

    fn snapshot(&self) -> Vec<Arc<Peer>> {
        snapshot(&self.inner)
    }
}

fn snapshot(inner: &Inner) -> Vec<Arc<Peer>> {
    inner
        .peers
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .cloned()
        .collect()
}

async fn probe(
    inner: &Inner,
    peer: Arc<Peer>,
    link: Option<Connection>,
) -> (Arc<Peer>, Result<Connection, NetworkError>) {
    let timeout = inner.options.heartbeat_timeout;
    let attempt = async {
        let mut conn = match link {
            Some(conn) => conn,
            None => {
                connect(
                    peer.addr.as_str(),
                    &peer.name,
                    &inner.identity,
                    &inner.options.connect,
                )
                .await?
            }
        };
        conn.ping().await?;
        Ok(conn)
    };
    let result = tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(NetworkError::Timeout {
                what: format!("heartbeat to {}", peer.name),
                after: timeout,
            })
        });
    (peer, result)
}

/// A connection borrowed from a [`Pool`]; dereferences to [`Connection`].
pub struct PooledConnection {
    conn: Option<Box<Connection>>,
    peer: Arc<Peer>,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConnection")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl PooledConnection {
    /// Closes the connection instead of returning it to the pool, for example after a request
    /// whose answer was not read to the end.
    pub fn discard(mut self) {
        self.conn = None;
    }
}

impl Deref for PooledConnection {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        // Only `discard` and `drop` take the connection, and both consume `self`.
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("connection taken from a live PooledConnection"),
        }
    }
}

impl DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut Connection {
        match &mut self.conn {
            Some(conn) => conn,
            None => unreachable!("connection taken from a live PooledConnection"),
        }
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if conn.is_reusable() && self.peer.health.load(Ordering::Acquire) != DOWN {
            self.peer
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
    }
}
