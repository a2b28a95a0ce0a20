//! WAL replication for the SQLite backend: the storage side of `mycelium-replication`.
//!
//! # What lives in the data file
//!
//! Everything replication keeps is in `__mycelium_*` tables of the same SQLite file as the
//! data ([`store::REPLICATION_DDL`]), so a row, its clock and the WAL entry describing it
//! commit in one SQLite transaction and a crash can never leave them disagreeing:
//!
//! - `__mycelium_wal`: encoded [`WalEntry`]s (`mycelium_replication::encode_entry`), by shard,
//!   origin and sequence, `pos` giving the local commit order;
//! - `__mycelium_applied`: per shard and origin, the last sequence committed here;
//! - `__mycelium_wal_truncated`: per shard and origin, the sequence the log was truncated
//!   through (a reader behind it gets `Truncated`);
//! - `__mycelium_shard_clock`: per shard, the highest HLC committed here (a snapshot carries it);
//! - `__mycelium_row_clocks`: per row (table and encoded key), its [`RowClock`] and shard; a
//!   deleted row keeps its clock as a tombstone;
//! - `__mycelium_conflicts`: one record per (table, key, pair of origins), with both
//!   versions' stamps (origin, sequence, epoch, HLC; the values are in those WAL entries),
//!   the winner and when it was recorded — what `SHOW MYCELIUM CONFLICTS` reads;
//! - `__mycelium_ddl_applied`: the replicated DDL statements already run here;
//! - `__mycelium_snapshot_staging`: chunks of a snapshot being received.
//!
//! # Capture
//!
//! With replication on, every write runs in a SQLite transaction with a session-extension
//! capture attached (autocommit statements and COPY included). Before COMMIT the changeset is
//! turned into whole-row [`RowChange`]s ([`capture`]: an UPDATE's row is read back inside the
//! transaction, since the changeset holds only changed columns), grouped by the shard the
//! node's [`ReplicationIdentity::shard_of`] assigns, and each shard's entry is recorded with
//! `record_local` in that same transaction. Values are shipped, never statements, so `now()`,
//! `random()`, defaults and serials replicate as the values they produced. DDL travels as the
//! translated SQLite statements (they write the catalog tables too, so replaying them keeps
//! `__mycelium_tables`/`__mycelium_columns` in step), in the entries of every shard the
//! transaction wrote and of [`ReplicationIdentity::ddl_shards`]; `__mycelium_ddl_applied`
//! (origin, transaction, statement index) makes each statement run once on a node that
//! follows several of those logs, and not at all on a node that committed the same
//! transaction itself (the proxy runs DDL on every node in one distributed transaction, whose
//! global id is the entries' transaction id; a node marks its own DDL even when no entry
//! carries it). A prepared transaction (2PC) keeps its
//! changeset from PREPARE (or from the redo store after a restart) and logs its entries in
//! the COMMIT PREPARED transaction.
//!
//! # Applying
//!
//! [`SqliteShardLog`] implements `ShardLog`: each call runs on an idle worker thread, outside
//! any session's transaction. Entries are applied with foreign-key enforcement off (the
//! primary already enforced it, and cascades arrive as the rows they changed); DDL this node
//! did not run is replayed inside a savepoint and skipped with a warning when it fails (a
//! snapshot's schema, which the node usually has, quietly). An entry whose DDL arrives while
//! this node's own copy of that distributed transaction is still prepared waits for the
//! prepared transaction's write lock, so it finds the statement marked once it gets to run.

mod capture;
mod chunker;
mod log;
mod store;

use std::sync::Arc;

use mycelium_protocol::DbError;
use mycelium_replication::{HlcClock, LogError, NodeId, ShardId, SqlValue, WalEntry};

pub(crate) use capture::record;
pub(crate) use chunker::{Chunker, SnapshotReceiverGone};
pub use log::SqliteShardLog;
pub(crate) use store::REPLICATION_DDL;
// The key and clock encodings, shared with the PostgreSQL backend's replication tables.
pub(crate) use store::{decode_clock, decode_key, encode_clock, encode_key, key_text};

/// Runs one replicated DDL statement in `conn`'s open transaction: SQLite text as is, or
/// PostgreSQL's `ALTER TABLE ... ALTER COLUMN` (a rebuild, which a SQLite primary ships as
/// the statement so that PostgreSQL copies can run it too) translated against the schema
/// the transaction sees. Foreign keys must be unenforced (a rebuild drops the old table).
pub(crate) fn replay_ddl(conn: &rusqlite::Connection, sql: &str) -> Result<(), DbError> {
    let sqlite =
        |e: rusqlite::Error| crate::errors::from_sqlite(&e, crate::errors::ErrorContext::default());
    if !crate::rewrite::replays_translated(sql) {
        return conn.execute_batch(sql).map_err(sqlite);
    }
    let schema = crate::catalog::load(conn, 0).map_err(sqlite)?;
    let t = crate::rewrite::translate(sql, &[], &schema)?;
    let result = t
        .pre
        .iter()
        .try_for_each(|statement| conn.execute_batch(statement));
    // A rebuild stopped half way leaves its legacy rename mode on.
    let reset = conn.pragma_update(None, "legacy_alter_table", false);
    result.and(reset).map_err(sqlite)
}

/// Which shard a row belongs to: `(table, columns, row image)` → shard, or `None` when the
/// table is not replicated. The node computes it from table policies; storage knows nothing
/// of routing.
pub type ShardOf = Arc<dyn Fn(&str, &[String], &[SqlValue]) -> Option<ShardId> + Send + Sync>;

/// The primary epoch this node writes a shard under.
pub type EpochOf = Arc<dyn Fn(&ShardId) -> u64 + Send + Sync>;

/// Called on the worker thread right after a local transaction's entries committed (for
/// `Primary::committed`). Must be quick and must not block.
pub type OnCommit = Arc<dyn Fn(&WalEntry) + Send + Sync>;

/// What a SQLite backend needs to capture its writes into the WAL.
#[derive(Clone)]
pub struct ReplicationIdentity {
    /// The node's one hybrid clock (its node id is the origin of local entries).
    pub clock: Arc<HlcClock>,
    pub epoch: EpochOf,
    pub shard_of: ShardOf,
    /// The shards whose logs carry every DDL statement of this node (those it is primary
    /// for): a transaction's DDL goes in the entries of these and of every shard it wrote
    /// rows of, so each shard's log alone rebuilds the schema its rows need.
    pub ddl_shards: Arc<dyn Fn() -> Vec<ShardId> + Send + Sync>,
    pub on_commit: Option<OnCommit>,
}

impl std::fmt::Debug for ReplicationIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationIdentity")
            .field("node", self.clock.node())
            .finish_non_exhaustive()
    }
}

impl ReplicationIdentity {
    pub fn node(&self) -> &NodeId {
        self.clock.node()
    }

    pub(crate) fn committed(&self, entries: &[WalEntry]) {
        if let Some(on_commit) = &self.on_commit {
            for entry in entries {
                on_commit(entry);
            }
        }
    }
}

/// Errors of the replication tables.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("replication storage: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt replication record in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
    #[error("table {0} has no primary key: its rows cannot be replicated")]
    NoPrimaryKey(String),
    #[error("table {0} does not exist on this node; replay its DDL first")]
    NoTable(String),
    #[error("snapshot chunk {index} of {shard} arrived without chunk 0")]
    SnapshotOrder { shard: ShardId, index: u32 },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the SQLite backend has shut down")]
    Closed,
}

impl From<SnapshotReceiverGone> for ReplicationError {
    fn from(_: SnapshotReceiverGone) -> ReplicationError {
        ReplicationError::Closed
    }
}

impl From<ReplicationError> for LogError {
    fn from(e: ReplicationError) -> LogError {
        LogError::new(e)
    }
}

impl ReplicationError {
    /// As the client of the committing statement sees it.
    pub(crate) fn into_db(self) -> DbError {
        match self {
            ReplicationError::Db(e) => e,
            ReplicationError::Sqlite(e) => {
                crate::errors::from_sqlite(&e, crate::errors::ErrorContext::default())
            }
            other => crate::errors::internal(format!("cannot log the transaction: {other}")),
        }
    }
}
