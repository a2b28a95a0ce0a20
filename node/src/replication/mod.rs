//! WAL replication on a node: the node side of `mycelium-replication` over its backend's
//! shard logs (SQLite or PostgreSQL) and the node's mutual-TLS port.
//!
//! - **Capture** ([`identity`]): the backend is opened with a `ReplicationIdentity` that reads
//!   the current cluster map at every commit: a row's shard from its table's policy and
//!   shard-key values (the default group's one shard for tables without a policy), the
//!   shard's primary epoch from the map, DDL logged in the shards this node is primary for.
//!   Each committed entry is announced to the shard's [`Primary`] and remembered for
//!   `synchronous_replicas`: by the SQLite backend's commit hook, or on a PostgreSQL node by
//!   the [`store::Sealer`], which turns committed captured changes into entries after each
//!   commit a session reports (`session.rs`) and every heartbeat interval. The logs of either
//!   backend are one [`store::NodeLog`], so a shard's primary and secondaries may be on
//!   different backends.
//! - **Roles** ([`Replication::run`]): on every map, each shard the map places here gets a
//!   [`Primary`] (this node first in the shard's placement) or a follower task ([`follow`])
//!   that connects to the primary's address with the node's certificate, runs
//!   [`Secondary::run`] and reconnects with exponential backoff and jitter. Shards gained or
//!   lost start or stop theirs.
//! - **Serving** ([`ReplicationHandoff`]): the node's server hands connections opening with a
//!   replication frame here; the secondary's `Status` names the shard, whose primary serves
//!   it. A node that is not the shard's primary refuses with 55000 (the secondary retries at
//!   its usual pace: maps reach nodes at different moments). A PostgreSQL node that becomes a
//!   shard's primary moves its serial sequences past the rows it applied.
//! - **Synchronous commits** ([`session`]): with `synchronous_replicas = k`, a statement that
//!   committed on this node alone (autocommit, COMMIT, COPY; sealed first on PostgreSQL) is
//!   answered only once `k` secondaries (at most as many as the map gives the shard)
//!   acknowledged the entries; past `synchronous_timeout_ms` the client gets 08007.
//!   Two-phase commits are not held yet.
//! - **Upkeep** ([`upkeep`]): every heartbeat interval, WAL truncation by the retention
//!   settings, the metrics, and the counters behind [`Replication::status`].

mod follow;
mod identity;
mod link;
mod metrics;
pub(crate) mod session;
mod status;
mod store;
mod upkeep;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mycelium_config::{ConflictPolicyConfig, ReplicationConfig};
use mycelium_network::rpc::Handoff;
use mycelium_network::{Connection, Frame, TlsIdentity};
use mycelium_protocol::{CommitPosition, DbError, REPLICA_BEHIND};
use mycelium_replication::{
    ConflictPolicy, HlcClock, NodeId, Primary, PrimaryOptions, ReplicationMessage, Role, Secondary,
    SecondaryOptions, SecondaryStatus, ShardId, VersionVector, WalEntry, kind,
};
use mycelium_storage::{PostgresBackend, ReplicationIdentity, SqliteBackend};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use status::{PeerState, PeerStatus, ReplicationStatus, ShardRole, ShardStatus};

use crate::topology::Topology;
use link::{ServedPeer, ServingLink, ShipCounters};
use store::{NodeLog, Sealer, Store};

/// SQLSTATE of a commit that `synchronous_replicas` did not confirm in time
/// (`transaction_resolution_unknown`): committed on the primary, not confirmed on enough
/// replicas; a client must not take it for a rollback. The proxy's coordinators treat 08007
/// as an unknown outcome, never as a refusal.
pub const SYNC_TIMEOUT_SQLSTATE: &str = "08007";

/// A follower gives up on a primary that sent nothing (not even a heartbeat) for three
/// heartbeat intervals, and never sooner than this: a busy machine delays heartbeats.
const MIN_SILENCE: Duration = Duration::from_secs(2);

/// How long a read fenced by a session's own writes waits for this node's copy to apply them
/// before the proxy is told to read the primary instead.
const READ_FENCE_WAIT: Duration = Duration::from_millis(500);

/// How often a fenced read looks at the copy's position again.
const FENCE_POLL: Duration = Duration::from_millis(2);

/// Local commit times kept per primary shard, for the age part of WAL retention.
const COMMIT_TIMES_KEPT: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The latest local commit of a shard.
#[derive(Debug, Clone, Copy)]
struct LastCommit {
    sequence: u64,
    /// [`Shared::generation`] when it was announced.
    generation: u64,
}

/// What the backend's commit hook and the node's sessions share with the manager.
pub(crate) struct Shared {
    node: NodeId,
    clock: Arc<HlcClock>,
    config: ReplicationConfig,
    map: watch::Receiver<Option<Arc<Topology>>>,
    /// Bumped at every announced commit; a session compares it before and after a statement.
    generation: AtomicU64,
    commits: Mutex<HashMap<ShardId, LastCommit>>,
    primaries: RwLock<HashMap<ShardId, Arc<PrimaryShard>>>,
    /// The shards this node follows, with how far each applied (read fences wait on them).
    secondaries: Mutex<HashMap<ShardId, Arc<SecondaryShard>>>,
    totals: Totals,
    /// Set on PostgreSQL nodes, whose commits are sealed into entries after the fact.
    sealer: std::sync::OnceLock<Arc<Sealer>>,
}

/// Node-wide counters since start.
#[derive(Debug, Default)]
struct Totals {
    shipped: AtomicU64,
    applied: AtomicU64,
    conflicts: AtomicU64,
    snapshots_sent: AtomicU64,
    snapshots_received: AtomicU64,
}

impl Shared {
    /// The backend's commit hook (on its worker thread): quick, never blocks on I/O.
    fn committed(&self, entry: &WalEntry) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        lock(&self.commits).insert(
            entry.shard.clone(),
            LastCommit {
                sequence: entry.sequence,
                generation,
            },
        );
        let primary = self
            .primaries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&entry.shard)
            .cloned();
        if let Some(primary) = primary {
            primary.committed(entry.sequence);
        }
    }

    /// Whether commits wait for secondaries.
    pub(crate) fn synchronous(&self) -> bool {
        self.config.synchronous_replicas > 0
    }

    /// A statement may have committed on this node: on a PostgreSQL node its changes are
    /// sealed (at once when the commit waits for secondaries, by the sealing task otherwise),
    /// then the commit waits for `synchronous_replicas` (see [`Shared::wait_replicated`]).
    pub(crate) async fn committed_here(&self, since: u64) -> Result<(), DbError> {
        if let Some(sealer) = self.sealer.get() {
            if !self.synchronous() {
                sealer.request();
                return Ok(());
            }
            sealer.seal().await?;
        }
        self.wait_replicated(since).await
    }

    /// A two-phase commit finished on this node: sealed soon, never waited for (see
    /// `session::ReplicatedSession::commit_decision`).
    pub(crate) fn finished_prepared(&self) {
        if let Some(sealer) = self.sealer.get() {
            sealer.request();
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a statement's commits are announced by the time it is answered: always on
    /// SQLite (the commit hook), on PostgreSQL only when the commit is sealed at once (it
    /// waits for `synchronous_replicas`). Otherwise a session cannot tell where its commit
    /// landed, and reports nothing.
    pub(crate) fn announces_before_answering(&self) -> bool {
        self.sealer.get().is_none() || self.synchronous()
    }

    /// Where the local commits announced after generation `since` landed: the last sequence
    /// of this node's log of each shard they wrote (at or past the statement's own commit).
    pub(crate) fn positions_since(&self, since: u64) -> Vec<CommitPosition> {
        if self.generation() == since {
            return Vec::new();
        }
        lock(&self.commits)
            .iter()
            .filter(|(_, c)| c.generation > since)
            .map(|(shard, c)| CommitPosition {
                table: shard.table.clone(),
                shard: shard.shard,
                origin: self.node.as_str().to_owned(),
                sequence: c.sequence,
            })
            .collect()
    }

    /// Waits until this node's copies hold every position of `fence` (see
    /// `NodeSession::set_read_fence`), at most [`READ_FENCE_WAIT`]; then 55000 and
    /// [`REPLICA_BEHIND`]. Positions of this node's own commits, and of shards it neither
    /// follows nor leads, hold at once: waiting would not change them.
    pub(crate) async fn wait_for_fence(&self, fence: &[CommitPosition]) -> Result<(), DbError> {
        let deadline = Instant::now() + READ_FENCE_WAIT;
        loop {
            let behind = fence.iter().find(|p| !self.holds(p));
            let Some(position) = behind else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(DbError::new(
                    "55000",
                    format!(
                        "{REPLICA_BEHIND}: node {} has not applied entry {} of {}'s log of                          shard {}/{} within {} ms",
                        self.node,
                        position.sequence,
                        position.origin,
                        position.table,
                        position.shard,
                        READ_FENCE_WAIT.as_millis()
                    ),
                ));
            }
            tokio::time::sleep(FENCE_POLL).await;
        }
    }

    fn holds(&self, position: &CommitPosition) -> bool {
        if position.origin == self.node.as_str() {
            return true;
        }
        let shard = ShardId::new(&position.table, position.shard);
        let follower = lock(&self.secondaries).get(&shard).cloned();
        follower.is_none_or(|f| {
            f.secondary
                .status()
                .applied
                .get(&NodeId::new(&position.origin))
                >= position.sequence
        })
    }

    /// Waits until the local commits announced after generation `since` are acknowledged by
    /// `synchronous_replicas` secondaries of their shards (fewer when the map gives a shard
    /// fewer secondaries); 08007 after `synchronous_timeout_ms`.
    pub(crate) async fn wait_replicated(&self, since: u64) -> Result<(), DbError> {
        let wanted = self.config.synchronous_replicas;
        if wanted == 0 || self.generation() == since {
            return Ok(());
        }
        let commits: Vec<(ShardId, u64)> = lock(&self.commits)
            .iter()
            .filter(|(_, c)| c.generation > since)
            .map(|(shard, c)| (shard.clone(), c.sequence))
            .collect();
        let timeout = Duration::from_millis(self.config.synchronous_timeout_ms);
        let deadline = Instant::now() + timeout;
        let topology = self.map.borrow().clone();
        for (shard, sequence) in commits {
            let primary = self
                .primaries
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&shard)
                .cloned();
            // A write to a shard this node does not lead reaches its primary through the
            // secondary's link; there is nothing to hold here.
            let Some(primary) = primary else { continue };
            let secondaries = topology
                .as_deref()
                .map_or(0, |t| secondaries_of(t, &shard).len());
            let replicas = wanted.min(secondaries);
            let left = deadline.saturating_duration_since(Instant::now());
            primary
                .primary
                .wait_replicated(sequence, replicas, left)
                .await
                .map_err(|e| {
                    DbError::new(
                        SYNC_TIMEOUT_SQLSTATE,
                        format!(
                            "commit not confirmed by synchronous_replicas: {e}; the transaction \
                             is committed on this node (the shard's primary) and reaches the \
                             secondaries when they catch up"
                        ),
                    )
                })?;
        }
        Ok(())
    }
}

/// The nodes other than the primary that the map gives `shard`.
fn secondaries_of(topology: &Topology, shard: &ShardId) -> Vec<String> {
    topology
        .placement(&shard.table)
        .ok()
        .and_then(|p| {
            p.shards
                .iter()
                .find(|s| s.shard == shard.shard)
                .map(|s| s.replicas.iter().skip(1).map(|r| r.node.clone()).collect())
        })
        .unwrap_or_default()
}

/// This node leads `shard`.
pub(crate) struct PrimaryShard {
    primary: Primary<NodeLog>,
    /// The secondaries the map gave the shard when this primary started.
    secondaries: Vec<String>,
    log: Arc<NodeLog>,
    /// Ends the shard's connections when the node stops leading it.
    stop: CancellationToken,
    shipped: ShipCounters,
    /// Secondaries connected now, by certificate name.
    served: Mutex<HashMap<String, Arc<ServedPeer>>>,
    commit_times: Mutex<VecDeque<(u64, Instant)>>,
    truncated: Mutex<VersionVector>,
}

impl PrimaryShard {
    fn committed(&self, sequence: u64) {
        {
            let mut times = lock(&self.commit_times);
            if times.len() == COMMIT_TIMES_KEPT {
                times.pop_front();
            }
            times.push_back((sequence, Instant::now()));
        }
        self.primary.committed(sequence);
    }
}

/// This node follows `shard`'s primary.
pub(crate) struct SecondaryShard {
    secondary: Secondary<NodeLog>,
    log: Arc<NodeLog>,
    primary: String,
    addr: String,
    /// The primary epoch of the map that set this follower up.
    epoch: u64,
    stop: CancellationToken,
    connected: AtomicBool,
    snapshot: Arc<AtomicBool>,
    /// The secondary's counters as last added to the totals.
    reported: Mutex<SecondaryStatus>,
    truncated: Mutex<VersionVector>,
}

/// Whom a secondary copy follows, as the map says.
struct Following {
    primary: String,
    addr: String,
    epoch: u64,
}

/// The replication of a node, over its SQLite file or its PostgreSQL database.
pub struct Replication {
    shared: Arc<Shared>,
    store: Store,
}

/// The part of replication that exists before the backend: its identity for
/// `SqliteBackend::open_replicated` or `PostgresBackend::enable_replication`, then
/// [`Pending::attach_sqlite`] or [`Pending::attach_postgres`] once the backend is open.
pub(crate) struct Pending {
    shared: Arc<Shared>,
}

impl Pending {
    /// For a SQLite node: policies not yet in the map are read from its data `file`.
    pub fn sqlite(
        node: &str,
        config: &ReplicationConfig,
        map: watch::Receiver<Option<Arc<Topology>>>,
        file: &std::path::Path,
    ) -> (Pending, ReplicationIdentity) {
        let stored = identity::StoredPolicies::in_sqlite(file);
        Pending::new(node, config, map, stored)
    }

    /// For a PostgreSQL node: policies not yet in the map are read from its database.
    pub fn postgres(
        node: &str,
        config: &ReplicationConfig,
        map: watch::Receiver<Option<Arc<Topology>>>,
        backend: &Arc<PostgresBackend>,
    ) -> (Pending, ReplicationIdentity) {
        let stored = identity::StoredPolicies::in_postgres(backend.clone());
        Pending::new(node, config, map, stored)
    }

    fn new(
        node: &str,
        config: &ReplicationConfig,
        map: watch::Receiver<Option<Arc<Topology>>>,
        stored: identity::StoredPolicies,
    ) -> (Pending, ReplicationIdentity) {
        let node = NodeId::new(node);
        let shared = Arc::new(Shared {
            clock: Arc::new(HlcClock::new(node.clone())),
            node,
            config: config.clone(),
            map: map.clone(),
            generation: AtomicU64::new(0),
            commits: Mutex::new(HashMap::new()),
            primaries: RwLock::new(HashMap::new()),
            secondaries: Mutex::new(HashMap::new()),
            totals: Totals::default(),
            sealer: std::sync::OnceLock::new(),
        });
        let identity = identity::identity(&shared, map, stored);
        (Pending { shared }, identity)
    }

    pub fn attach_sqlite(self, backend: Arc<SqliteBackend>, file: &std::path::Path) -> Replication {
        self.attach(Store::sqlite(backend, file))
    }

    pub fn attach_postgres(
        self,
        replication: mycelium_storage::PostgresReplication,
    ) -> Replication {
        let sealer = Arc::new(Sealer::new(replication));
        let _ = self.shared.sealer.set(sealer.clone());
        self.attach(Store::Postgres(sealer))
    }

    fn attach(self, store: Store) -> Replication {
        metrics::touch(self.shared.node.as_str());
        Replication {
            shared: self.shared,
            store,
        }
    }
}

fn conflict_policy(config: &ReplicationConfig) -> ConflictPolicy {
    match config.conflict_policy {
        ConflictPolicyConfig::Lww => ConflictPolicy::LastWriterWins,
        ConflictPolicyConfig::PrimaryWins => ConflictPolicy::PrimaryWins,
    }
}

impl Replication {
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.shared.config.heartbeat_interval_ms)
    }

    /// Takes the roles the current map gives this node, then follows the map and keeps the
    /// logs and metrics up to date until `shutdown`.
    pub(crate) fn start(self: &Arc<Self>, tls: TlsIdentity, shutdown: CancellationToken) {
        if let Some(sealer) = self.store.sealer() {
            sealer.run(self.heartbeat(), shutdown.clone());
        }
        let mut map = self.shared.map.clone();
        let topology = map.borrow_and_update().clone();
        self.reconcile(topology.as_deref(), &tls, &shutdown);
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.heartbeat());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    changed = map.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let topology = map.borrow_and_update().clone();
                        this.reconcile(topology.as_deref(), &tls, &shutdown);
                    }
                    _ = tick.tick() => this.upkeep().await,
                    () = shutdown.cancelled() => break,
                }
            }
            this.reconcile(None, &tls, &shutdown);
        });
    }

    /// Starts and stops primaries and followers so they match what `topology` places here
    /// (nothing without one).
    fn reconcile(
        self: &Arc<Self>,
        topology: Option<&Topology>,
        tls: &TlsIdentity,
        shutdown: &CancellationToken,
    ) {
        let me = self.shared.node.as_str();
        // Shards led here, with their secondaries and epoch; shards followed, with primary,
        // address and epoch.
        let mut lead: HashMap<ShardId, (Vec<String>, u64)> = HashMap::new();
        let mut follow: HashMap<ShardId, Following> = HashMap::new();
        if let Some(topology) = topology.filter(|_| !shutdown.is_cancelled()) {
            for held in topology.held_by(me) {
                let shard = ShardId::new(&held.table, held.shard);
                let epoch = identity::epoch_of(Some(topology), &shard);
                if held.primary {
                    let secondaries = secondaries_of(topology, &shard);
                    lead.insert(shard, (secondaries, epoch));
                    continue;
                }
                let primary = topology.placement(&held.table).ok().and_then(|p| {
                    p.shards
                        .iter()
                        .find(|s| s.shard == held.shard)
                        .map(|s| s.primary().to_owned())
                });
                match primary.and_then(|p| topology.addr(&p).map(|a| (p.clone(), a.to_owned()))) {
                    Some((primary, addr)) => {
                        follow.insert(
                            shard,
                            Following {
                                primary,
                                addr,
                                epoch,
                            },
                        );
                    }
                    None => {
                        tracing::warn!(shard = %shard, "the map names no address for the shard's primary; not following it");
                    }
                }
            }
        }
        {
            let mut primaries = self
                .shared
                .primaries
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let totals = &self.shared.totals;
            // A primary whose secondaries or epoch changed starts over: acknowledgements of
            // nodes that no longer hold a copy must not hold back truncation or count for
            // commits, and a promotion starts a new epoch.
            primaries.retain(|shard, p| {
                let keep = lead.get(shard) == Some(&(p.secondaries.clone(), p.primary.epoch()));
                if !keep {
                    tracing::info!(shard = %shard, "no longer the shard's primary, or its secondaries changed");
                    p.stop.cancel();
                    totals
                        .shipped
                        .fetch_add(p.shipped.entries.load(Ordering::Relaxed), Ordering::Relaxed);
                    totals.snapshots_sent.fetch_add(
                        p.shipped.snapshots.load(Ordering::Relaxed),
                        Ordering::Relaxed,
                    );
                }
                keep
            });
            let mut gained = false;
            for (shard, (secondaries, epoch)) in lead {
                if primaries.contains_key(&shard) {
                    continue;
                }
                gained = true;
                let Some(log) = self.store.shard_log(shard.clone()) else {
                    continue;
                };
                let log = Arc::new(log);
                let options = PrimaryOptions {
                    heartbeat_interval: self.heartbeat(),
                    policy: conflict_policy(&self.shared.config),
                    ..PrimaryOptions::default()
                };
                tracing::info!(shard = %shard, epoch, "primary of the shard");
                let primary = Primary::new(
                    shard.clone(),
                    epoch,
                    log.clone(),
                    self.shared.clock.clone(),
                    options,
                );
                primaries.insert(
                    shard,
                    Arc::new(PrimaryShard {
                        primary,
                        secondaries,
                        log,
                        stop: shutdown.child_token(),
                        shipped: ShipCounters::default(),
                        served: Mutex::new(HashMap::new()),
                        commit_times: Mutex::new(VecDeque::new()),
                        truncated: Mutex::new(VersionVector::new()),
                    }),
                );
            }
            // Serial columns of a PostgreSQL copy that applied other nodes' rows are behind
            // them; the SQLite backend starts its sequences past the largest value itself.
            if gained && let Some(sealer) = self.store.sealer() {
                sealer.advance_sequences();
            }
        }
        let mut secondaries = lock(&self.shared.secondaries);
        secondaries.retain(|shard, s| {
            let keep = follow.get(shard).is_some_and(|f| {
                f.primary == s.primary && f.addr == s.addr && f.epoch == s.epoch
            });
            if !keep {
                tracing::info!(shard = %shard, primary = %s.primary, "no longer following the shard's primary");
                s.stop.cancel();
            }
            keep
        });
        for (shard, following) in follow {
            let Following {
                primary,
                addr,
                epoch,
            } = following;
            if secondaries.contains_key(&shard) {
                continue;
            }
            let Some(log) = self.store.shard_log(shard.clone()) else {
                continue;
            };
            let log = Arc::new(log);
            let secondary = Secondary::new(
                shard.clone(),
                epoch,
                log.clone(),
                self.shared.clock.clone(),
                SecondaryOptions {
                    policy: conflict_policy(&self.shared.config),
                    ..SecondaryOptions::default()
                },
            );
            tracing::info!(shard = %shard, %primary, %addr, epoch, "following the shard's primary");
            let follower = Arc::new(SecondaryShard {
                secondary,
                log,
                primary,
                addr,
                epoch,
                stop: shutdown.child_token(),
                connected: AtomicBool::new(false),
                snapshot: Arc::new(AtomicBool::new(false)),
                reported: Mutex::new(SecondaryStatus::default()),
                truncated: Mutex::new(VersionVector::new()),
            });
            tokio::spawn(follow::follow(
                follower.clone(),
                tls.clone(),
                (self.heartbeat() * 3).max(MIN_SILENCE),
            ));
            secondaries.insert(shard, follower);
        }
    }

    /// Serves a secondary's connection whose first frame is `first`.
    async fn serve(
        &self,
        conn: &mut Connection,
        first: Frame,
        shutdown: &CancellationToken,
    ) -> Result<(), DbError> {
        let message = ReplicationMessage::from_frame(&first)
            .map_err(|e| DbError::new("08P01", format!("bad replication frame: {e}")))?;
        let ReplicationMessage::Status {
            shard,
            role: Role::Secondary,
            ..
        } = &message
        else {
            return Err(DbError::new(
                "08P01",
                "a replication connection must open with the secondary's status",
            ));
        };
        let me = self.shared.node.as_str();
        let Some(primary) = self
            .shared
            .primaries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(shard)
            .cloned()
        else {
            let epoch = self.shared.map.borrow().as_ref().map_or(0, |t| t.epoch());
            return Err(DbError::new(
                "55000",
                format!(
                    "node {me} is not the primary of shard {shard} in its cluster map (epoch \
                     {epoch}); a node that just received a newer map follows it within a moment"
                ),
            ));
        };
        let peer_name = conn.peer().name.clone();
        let served = Arc::new(ServedPeer::default());
        lock(&primary.served).insert(peer_name.clone(), served.clone());
        let mut link = ServingLink {
            conn,
            node: me,
            counters: &primary.shipped,
            served: &served,
        };
        let result = tokio::select! {
            r = primary.primary.serve_from(&mut link, message) => r,
            () = primary.stop.cancelled() => Ok(()),
            () = shutdown.cancelled() => Ok(()),
        };
        {
            let mut peers = lock(&primary.served);
            if peers
                .get(&peer_name)
                .is_some_and(|p| Arc::ptr_eq(p, &served))
            {
                peers.remove(&peer_name);
            }
        }
        result.map_err(|e| {
            tracing::info!(shard = %primary.primary.shard(), peer = %peer_name, error = %e, "replication to a secondary stopped");
            DbError::new("08006", format!("replication of shard {} stopped: {e}", primary.primary.shard()))
        })
    }
}

/// What the node's server hands replication connections to.
pub struct ReplicationHandoff {
    replication: Arc<Replication>,
    shutdown: CancellationToken,
}

impl ReplicationHandoff {
    pub(crate) fn new(
        replication: Arc<Replication>,
        shutdown: CancellationToken,
    ) -> ReplicationHandoff {
        ReplicationHandoff {
            replication,
            shutdown,
        }
    }
}

#[async_trait]
impl Handoff for ReplicationHandoff {
    fn claims(&self, frame_kind: u8) -> bool {
        kind::is_replication(frame_kind)
    }

    async fn serve(&self, conn: &mut Connection, first: Frame) -> Result<(), DbError> {
        self.replication.serve(conn, first, &self.shutdown).await
    }
}
