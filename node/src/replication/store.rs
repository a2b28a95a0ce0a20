//! Where a node's shard logs live: its SQLite file, or its PostgreSQL database (whose
//! committed changes a [`Sealer`] turns into entries).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use mycelium_protocol::DbError;
use mycelium_replication::{
    ApplyOutcome, ConflictPolicy, LogError, ReadResult, ShardId, ShardLog, SnapshotChunk,
    VersionVector, WalEntry,
};
use mycelium_storage::{PostgresReplication, PostgresShardLog, SqliteBackend, SqliteShardLog};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A shard's log on either backend: one `match` per call, so a SQLite node pays nothing for
/// the other backend.
pub(crate) enum NodeLog {
    Sqlite(SqliteShardLog),
    Postgres(PostgresShardLog),
}

impl NodeLog {
    pub fn shard(&self) -> &ShardId {
        match self {
            NodeLog::Sqlite(log) => log.shard(),
            NodeLog::Postgres(log) => log.shard(),
        }
    }
}

#[async_trait]
impl ShardLog for NodeLog {
    async fn applied(&self) -> Result<VersionVector, LogError> {
        match self {
            NodeLog::Sqlite(log) => log.applied().await,
            NodeLog::Postgres(log) => log.applied().await,
        }
    }

    async fn read_after(
        &self,
        after: &VersionVector,
        limit: usize,
    ) -> Result<ReadResult, LogError> {
        match self {
            NodeLog::Sqlite(log) => log.read_after(after, limit).await,
            NodeLog::Postgres(log) => log.read_after(after, limit).await,
        }
    }

    async fn apply(
        &self,
        entry: &WalEntry,
        policy: ConflictPolicy,
    ) -> Result<ApplyOutcome, LogError> {
        match self {
            NodeLog::Sqlite(log) => log.apply(entry, policy).await,
            NodeLog::Postgres(log) => log.apply(entry, policy).await,
        }
    }

    async fn truncate(&self, through: &VersionVector) -> Result<(), LogError> {
        match self {
            NodeLog::Sqlite(log) => log.truncate(through).await,
            NodeLog::Postgres(log) => log.truncate(through).await,
        }
    }

    async fn snapshot(
        &self,
        rows_per_chunk: usize,
    ) -> Result<BoxStream<'static, Result<SnapshotChunk, LogError>>, LogError> {
        match self {
            NodeLog::Sqlite(log) => log.snapshot(rows_per_chunk).await,
            NodeLog::Postgres(log) => log.snapshot(rows_per_chunk).await,
        }
    }

    async fn load_snapshot_chunk(&self, chunk: SnapshotChunk) -> Result<(), LogError> {
        match self {
            NodeLog::Sqlite(log) => log.load_snapshot_chunk(chunk).await,
            NodeLog::Postgres(log) => log.load_snapshot_chunk(chunk).await,
        }
    }
}

/// The backend replication reads and writes.
pub(crate) enum Store {
    /// The SQLite backend and its data file (read directly for WAL sizes).
    Sqlite {
        backend: Arc<SqliteBackend>,
        file: PathBuf,
    },
    Postgres(Arc<Sealer>),
}

impl Store {
    pub fn sqlite(backend: Arc<SqliteBackend>, file: &Path) -> Store {
        Store::Sqlite {
            backend,
            file: file.to_owned(),
        }
    }

    pub fn shard_log(&self, shard: ShardId) -> Option<NodeLog> {
        match self {
            Store::Sqlite { backend, .. } => backend.shard_log(shard).map(NodeLog::Sqlite),
            Store::Postgres(sealer) => Some(NodeLog::Postgres(sealer.replication.shard_log(shard))),
        }
    }

    /// Entries and bytes of each shard's log (empty when they cannot be read).
    pub async fn wal_sizes(&self) -> HashMap<ShardId, (u64, u64)> {
        match self {
            Store::Sqlite { file, .. } => {
                let file = file.clone();
                tokio::task::spawn_blocking(move || sqlite_wal_sizes(&file))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default()
            }
            Store::Postgres(sealer) => sealer.replication.wal_sizes().await.unwrap_or_default(),
        }
    }

    pub fn sealer(&self) -> Option<&Arc<Sealer>> {
        match self {
            Store::Sqlite { .. } => None,
            Store::Postgres(sealer) => Some(sealer),
        }
    }
}

/// Entries and bytes of each shard's log in the data file, read on a connection of its own.
fn sqlite_wal_sizes(file: &Path) -> rusqlite::Result<HashMap<ShardId, (u64, u64)>> {
    let conn = rusqlite::Connection::open_with_flags(
        file,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut stmt = conn.prepare(
        "SELECT shard_table, shard, count(*), coalesce(sum(length(entry)), 0) \
         FROM __mycelium_wal GROUP BY shard_table, shard",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            ShardId::new(&row.get::<_, String>(0)?, row.get(1)?),
            (
                u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
            ),
        ))
    })?;
    rows.collect()
}

/// Seals a PostgreSQL node's committed changes into entries: after each local commit (a
/// session asks, [`Sealer::request`]; a synchronous commit seals itself, [`Sealer::seal`]) and
/// every heartbeat interval, for writes that came another way. The sealer's commit callback
/// announces each entry, as the SQLite commit hook does.
pub(crate) struct Sealer {
    replication: PostgresReplication,
    wake: Notify,
    /// A seal failed; warned once until one succeeds.
    failing: AtomicBool,
}

impl Sealer {
    pub fn new(replication: PostgresReplication) -> Sealer {
        Sealer {
            replication,
            wake: Notify::new(),
            failing: AtomicBool::new(false),
        }
    }

    /// Asks the sealing task for a seal soon; requests made while one runs share the next.
    pub fn request(&self) {
        self.wake.notify_one();
    }

    /// Seals now, waiting for a seal that runs already (it may have started before the
    /// caller's commit).
    pub async fn seal(&self) -> Result<(), DbError> {
        match self.replication.seal().await {
            Ok(_) => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!("sealing committed changes works again");
                }
                Ok(())
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(error = %e, "cannot seal committed changes into WAL entries; retrying");
                }
                Err(DbError::new(
                    super::SYNC_TIMEOUT_SQLSTATE,
                    format!(
                        "the commit is done on this node, but its changes could not be logged \
                         for replication yet ({e}); they are when the node's database answers \
                         again"
                    ),
                ))
            }
        }
    }

    /// A shard led here after this node followed it, or at start: the sequences of serial
    /// and identity columns move past the values replicated in.
    pub fn advance_sequences(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.replication.advance_sequences().await {
                tracing::warn!(error = %e, "cannot advance the serial sequences past the replicated rows");
            }
        });
    }

    /// Seals on request and every `interval` until `shutdown`.
    pub fn run(self: &Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = this.wake.notified() => {}
                    _ = tick.tick() => {}
                    () = shutdown.cancelled() => break,
                }
                // A failure is logged by seal(); the next request or tick retries.
                let _ = this.seal().await;
            }
        });
    }
}
