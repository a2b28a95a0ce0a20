//! A node: one storage backend served to proxies as [`NodeSession`]s.
//!
//! The proxy reaches a node through [`NodeLink`]. `mycelium up` links them in process;
//! the network layer carries the same requests between processes. A node replicates the
//! shards the cluster map places on it ([`replication`]), whichever its backend.

mod local;
mod miner;
pub mod replication;
mod shard_function;
mod topology;

pub use local::LocalLink;
pub use replication::{
    PeerState, PeerStatus, ReplicationHandoff, ReplicationStatus, SYNC_TIMEOUT_SQLSTATE, ShardRole,
    ShardStatus,
};
pub use shard_function::sqlite_shard_function;
pub use topology::{MapState, Topology};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mycelium_config::{ReplicationConfig, StorageConfig, Synchronous};
use mycelium_network::TlsIdentity;
use mycelium_protocol::{
    ClusterMap, CommitPosition, DbError, Execute, NodeLink, NodeSession, NodeStatus, PreparedTxn,
    ReplicationRow, Reply, TxnOutcome, TxnRecord,
};
use mycelium_storage::{
    Backend, PgReplicationError, PostgresBackend, PostgresError, SqliteBackend, SqliteOptions,
    StorageError,
};
use tokio_util::sync::CancellationToken;

pub use mycelium_storage::PostgresOptions;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node {id}: cannot open its data file {path}: {source}")]
    Open {
        id: String,
        path: String,
        source: Box<StorageError>,
    },
    /// The message names the node, the database and what to do.
    #[error("{source}")]
    Postgres { source: Box<PostgresError> },
    #[error("node {id}: cannot set up replication in its PostgreSQL database: {source}")]
    PostgresReplication {
        id: String,
        source: Box<PgReplicationError>,
    },
    #[error("node {id}: cluster map: {message}")]
    Map { id: String, message: String },
}

/// A node: its id, its backend, and its role's checks.
pub struct Node {
    id: String,
    backend: Arc<dyn Backend>,
    /// Set on miner nodes, which refuse validator-only tables themselves.
    miner: Option<Arc<miner::ValidatorOnlyTables>>,
    map: MapState,
    /// Captures the node's writes and replicates its shards.
    replication: Arc<replication::Replication>,
}

/// Where a node keeps its cluster map: beside its data file.
pub fn map_file(data: &Path) -> Option<PathBuf> {
    (!data.as_os_str().is_empty()).then(|| PathBuf::from(format!("{}.map", data.display())))
}

fn load_map(id: &str, file: Option<PathBuf>) -> Result<MapState, NodeError> {
    MapState::load(file).map_err(|message| NodeError::Map {
        id: id.to_owned(),
        message,
    })
}

impl Node {
    /// Opens the node's SQLite file with the default `[replication]` settings; `miner` nodes
    /// refuse statements on validator-only tables.
    pub fn open_sqlite(
        id: &str,
        miner: bool,
        path: &Path,
        storage: &StorageConfig,
    ) -> Result<Node, NodeError> {
        Node::open_sqlite_with(id, miner, path, storage, &ReplicationConfig::default())
    }

    /// As [`Node::open_sqlite`], with `replication` settings. Every committed write is
    /// captured into the file's WAL tables; [`Node::start_replication`] ships them.
    pub fn open_sqlite_with(
        id: &str,
        miner: bool,
        path: &Path,
        storage: &StorageConfig,
        replication: &ReplicationConfig,
    ) -> Result<Node, NodeError> {
        let map = load_map(id, map_file(path))?;
        let (pending, identity) =
            replication::Pending::sqlite(id, replication, map.subscribe(), path);
        let options = SqliteOptions {
            workers: storage.workers,
            max_workers: storage.max_workers,
            busy_timeout: Duration::from_millis(storage.busy_timeout_ms),
            synchronous_full: storage.synchronous == Synchronous::Full,
            shard_function: Some(sqlite_shard_function()),
        };
        let backend =
            SqliteBackend::open_replicated(path, options, identity).map_err(|source| {
                NodeError::Open {
                    id: id.to_owned(),
                    path: path.display().to_string(),
                    source: Box::new(source),
                }
            })?;
        let backend = Arc::new(backend);
        tracing::info!(node = id, path = %path.display(), map_epoch = map.epoch(), "node opened");
        Ok(Node {
            id: id.to_owned(),
            replication: Arc::new(pending.attach_sqlite(backend.clone(), path)),
            backend,
            miner: miner.then(Default::default),
            map,
        })
    }

    /// Connects the node to its PostgreSQL database (see [`PostgresOptions`]) and installs
    /// change capture there, with `replication` settings; fails when the server is
    /// unreachable, does not allow prepared transactions, or the node's role is not a
    /// superuser (capture needs event triggers). The cluster map is kept in `map_file` (in
    /// memory only without one).
    pub async fn open_postgres(
        id: &str,
        miner: bool,
        options: PostgresOptions,
        map_file: Option<PathBuf>,
        replication: &ReplicationConfig,
    ) -> Result<Node, NodeError> {
        let map = load_map(id, map_file)?;
        let backend =
            PostgresBackend::connect(options)
                .await
                .map_err(|source| NodeError::Postgres {
                    source: Box::new(source),
                })?;
        let backend = Arc::new(backend);
        let (pending, identity) =
            replication::Pending::postgres(id, replication, map.subscribe(), &backend);
        let capture = backend
            .enable_replication(identity)
            .await
            .map_err(|source| NodeError::PostgresReplication {
                id: id.to_owned(),
                source: Box::new(source),
            })?;
        tracing::info!(
            node = id,
            database = backend.database(),
            map_epoch = map.epoch(),
            "node opened"
        );
        Ok(Node {
            id: id.to_owned(),
            replication: Arc::new(pending.attach_postgres(capture)),
            backend,
            miner: miner.then(Default::default),
            map,
        })
    }

    /// Starts replicating the shards the map places here, reaching other nodes with `tls`,
    /// until `shutdown`.
    pub fn start_replication(&self, tls: TlsIdentity, shutdown: CancellationToken) {
        self.replication.start(tls, shutdown);
    }

    /// What the node's server hands replication connections to; its connections end at
    /// `shutdown`.
    pub fn replication_handoff(&self, shutdown: CancellationToken) -> Arc<ReplicationHandoff> {
        Arc::new(ReplicationHandoff::new(self.replication.clone(), shutdown))
    }

    /// Where replication stands for every shard placed on this node.
    pub async fn replication_status(&self) -> ReplicationStatus {
        self.replication.status().await
    }

    /// The cluster map this node follows.
    pub fn map(&self) -> &MapState {
        &self.map
    }

    /// This node's decider records older than `older_than`, for the record sweep.
    pub async fn txn_records(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> Result<Vec<TxnRecord>, DbError> {
        self.backend.txn_records(older_than, limit).await
    }

    /// Deletes decider records no participant needs any more (see
    /// [`Backend::delete_txn_records`]).
    pub async fn delete_txn_records(&self, records: &[TxnRecord]) -> Result<u64, DbError> {
        self.backend.delete_txn_records(records).await
    }

    /// Finishes in-flight work and closes the backend.
    pub fn shutdown(&self) {
        self.backend.shutdown();
    }
}

/// How long the backend gets to answer a health probe.
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Node {
    /// Whether the backend answers a trivial statement.
    async fn probe(&self) -> bool {
        let mut session = self.backend.session();
        let Ok(mut stream) = session.execute(Execute::simple("SELECT 1")).await else {
            return false;
        };
        while let Some(reply) = stream.recv().await {
            match reply {
                Ok(Reply::Complete { .. }) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

#[async_trait]
impl NodeLink for Node {
    fn node_id(&self) -> &str {
        &self.id
    }

    async fn open_session(&self) -> Result<Box<dyn NodeSession>, DbError> {
        let session = self.backend.session();
        let session: Box<dyn NodeSession> = match &self.miner {
            Some(guard) => Box::new(miner::MinerSession {
                inner: session,
                node: self.id.clone(),
                guard: guard.clone(),
            }),
            None => session,
        };
        // Every session reports its commits to replication: for `synchronous_replicas`, a
        // PostgreSQL node's sealing, and the positions read fences wait for.
        Ok(Box::new(replication::session::ReplicatedSession::new(
            session,
            self.replication.shared().clone(),
        )))
    }

    async fn finish_prepared(
        &self,
        gid: &str,
        commit: bool,
    ) -> Result<Vec<CommitPosition>, DbError> {
        let replication = self.replication.shared();
        let since = replication.generation();
        self.backend.finish_prepared(gid, commit).await?;
        if !commit {
            return Ok(Vec::new());
        }
        replication.finished_prepared();
        Ok(if replication.announces_before_answering() {
            replication.positions_since(since)
        } else {
            Vec::new()
        })
    }

    async fn prepared(&self) -> Result<Vec<PreparedTxn>, DbError> {
        self.backend.prepared().await
    }

    async fn txn_outcome(&self, gid: &str) -> Result<TxnOutcome, DbError> {
        self.backend.txn_outcome(gid).await
    }

    async fn forget_txn(&self, gid: &str) -> Result<(), DbError> {
        self.backend.forget_txn(gid).await.map(|_| ())
    }

    async fn status(&self) -> Result<NodeStatus, DbError> {
        let info = self.backend.info();
        let healthy = tokio::time::timeout(HEALTH_PROBE_TIMEOUT, self.probe())
            .await
            .is_ok_and(|answered| answered);
        let prepared = match self.backend.prepared().await {
            Ok(prepared) => prepared.len() as u32,
            Err(_) => 0,
        };
        let topology = self.map.current();
        Ok(NodeStatus {
            backend: info.kind.to_owned(),
            location: info.location,
            healthy,
            prepared,
            map_epoch: topology.as_ref().map_or(0, |t| t.epoch()),
            shards: topology.map(|t| t.held_by(&self.id)).unwrap_or_default(),
        })
    }

    async fn exchange_map(&self, offer: Option<ClusterMap>) -> Result<Option<ClusterMap>, DbError> {
        self.map.exchange(offer).await
    }

    fn check_epoch(&self, epoch: u64) -> Result<(), DbError> {
        let current = self.map.placement_epoch();
        if epoch == 0 || epoch >= current {
            return Ok(());
        }
        Err(DbError::new(
            "40001",
            format!(
                "{}: the statement was routed by epoch {epoch}, node {} has epoch \
                 {current}; retry it",
                mycelium_protocol::STALE_MAP,
                self.id
            ),
        ))
    }

    async fn replication(&self) -> Result<Vec<ReplicationRow>, DbError> {
        let status = self.replication_status().await;
        let mut rows = Vec::new();
        for shard in status.shards {
            let row = |peer: Option<&replication::PeerStatus>| ReplicationRow {
                table: shard.table.clone(),
                shard: shard.shard,
                role: shard.role.as_str().to_owned(),
                epoch: shard.epoch,
                sequence: shard.sequence,
                peer: peer.map(|p| p.node.clone()),
                peer_sequence: peer.map_or(0, |p| p.applied_sequence),
                lag_entries: peer.map_or(0, |p| p.lag_entries),
                lag_seconds: peer.map_or(0.0, |p| p.lag_seconds),
                state: peer.map_or("alone", |p| p.state.as_str()).to_owned(),
                wal_entries: shard.wal_entries,
                wal_bytes: shard.wal_bytes,
                entries_shipped: shard.entries_shipped,
                entries_applied: shard.entries_applied,
                conflicts: shard.conflicts,
            };
            if shard.peers.is_empty() {
                rows.push(row(None));
            }
            rows.extend(shard.peers.iter().map(|p| row(Some(p))));
        }
        Ok(rows)
    }
}
