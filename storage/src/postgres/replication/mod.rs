//! WAL replication for the PostgreSQL backend: the same entries as SQLite nodes
//! (`crate::replication`), so a shard's copies may live on either backend.
//!
//! # Capture
//!
//! [`PostgresBackend::enable_replication`] installs, in the node's database:
//!
//! - a row trigger `mycelium_capture` (`AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW`)
//!   and a `BEFORE TRUNCATE` statement trigger on every user table. Each writes whole-row
//!   images into `mycelium.changes` in the writing transaction, so data and its captured
//!   change commit (or roll back, or sit in a prepared transaction) together: the row value's
//!   text (`OLD::text`, `NEW::text`, every column in its type's own output format, printed
//!   with fixed `TimeZone = UTC`, `DateStyle = ISO`, `extra_float_digits = 1`,
//!   `bytea_output = hex`), `txid_current()`, and the id of the table's *shape* (columns,
//!   type OIDs, primary key, name; `mycelium.shapes`), which the triggers carry as their
//!   argument, so capturing a row reads no catalog (about 6 µs a row for a bulk insert). A
//!   table without a primary key gets no triggers: its rows could not be identified on a
//!   replica (SQLite nodes use a hidden row id, which a PostgreSQL table has no place for),
//!   so they stay on the node that wrote them, and rows of such a table arriving from a
//!   SQLite node are left out (a warning, once per table). A TRUNCATE is captured as the
//!   deletes of every row.
//! - event triggers on `ddl_command_end` and `sql_drop` (`ENABLE ALWAYS`): after any
//!   command on a table they record its shape when it changed and recreate its capture
//!   triggers with the new shape's id (also for tables created by replayed DDL); outside
//!   replay they record the statement (`current_query()`, once per message) as a DDL
//!   change. The proxy sends nodes one statement per message, so that is the statement
//!   alone; from a message of several statements the sealer keeps the schema statements
//!   (`ddl.rs`: no transaction control, no DML, whose rows travel as rows). Objects in the `mycelium` schema, named `__mycelium*`, temporary tables and
//!   partitions (their parent's triggers capture them, under the parent's name) are neither
//!   captured nor recorded.
//!
//! Event triggers and `session_replication_role` need a **superuser**: enabling fails with
//! [`PgReplicationError::NotSuperuser`] otherwise (the node's role needs `SUPERUSER`).
//!
//! # Sealing
//!
//! [`PostgresReplication::seal`] (the node calls it after each commit and periodically)
//! turns committed raw changes into [`WalEntry`]s in one transaction per batch, holding an
//! advisory lock so that one sealer runs at a time: transactions in the order of their last
//! raw change, which is their commit order wherever it matters (a transaction that writes a
//! row another one wrote waits for that one's commit, and its row triggers fire after the
//! wait); each one's changes consolidated per row as a SQLite changeset is (final image,
//! the key changing as a delete and an insert), split by [`ReplicationIdentity::shard_of`],
//! with the transaction's DDL (in statement order with its rows) in every shard's entry
//! and in [`ReplicationIdentity::ddl_shards`]'; then for each shard the next sequence,
//! version vector and HLC, `record_local` (row clocks, `mycelium.wal`, applied position) and
//! the raw rows deleted. A prepared transaction's raw rows become visible at COMMIT
//! PREPARED, and it is sealed then. The entry's transaction id is the distributed
//! transaction's gid (as on SQLite nodes, so that a node that ran the same distributed DDL
//! itself does not run it again): the decider's is taken from its `mycelium.txn_records`
//! row, written in the deciding transaction; a participant's from the `mycelium.gid`
//! setting its session sets in the message of its `PREPARE TRANSACTION` ([`note_gid`]),
//! read by a deferred trigger that fires at PREPARE. Other transactions get a random UUID.
//! `on_commit` is called for each entry once its batch committed.
//!
//! # Applying
//!
//! [`PostgresShardLog`] implements `ShardLog` over the tables `mycelium.wal`, `applied`,
//! `wal_truncated`, `shard_clock`, `row_clocks`, `conflicts` (the columns of SQLite's
//! `__mycelium_conflicts`; through a session, whose statements find `__mycelium_*` in the
//! `mycelium` schema, the view `mycelium.__mycelium_conflicts` makes `SHOW MYCELIUM
//! CONFLICTS` read it unchanged), `ddl_applied` and `snapshot_staging`. Entries are applied
//! with `SET LOCAL session_replication_role = replica`, which skips the capture triggers
//! (nothing is re-captured) and foreign-key enforcement, as on SQLite. Pending local
//! commits are sealed before an apply, a read or a snapshot, so their row clocks count.
//! DDL runs through `EXECUTE` (so nothing in it can end the applying transaction) inside a
//! savepoint, and is skipped with a warning when it fails (a SQLite origin's DDL is
//! SQLite's dialect; nodes normally run the cluster's DDL themselves).
//! Snapshot schema items are `CREATE TABLE IF NOT EXISTS` with columns, types, NOT NULL and
//! the primary key.
//!
//! # Type mapping
//!
//! | PostgreSQL                                   | `SqlValue`                        |
//! |----------------------------------------------|-----------------------------------|
//! | `int2`, `int4`, `int8`, `oid`                | `Integer`                         |
//! | `bool`                                       | `Integer` 1 / 0 (as SQLite stores it) |
//! | `float4`, `float8`                           | `Real` (NaN and ±Infinity too)    |
//! | `bytea`                                      | `Blob`                            |
//! | `numeric`                                    | `Text`, exact (`12.50`)           |
//! | `timestamptz`                                | `Text` `2024-01-02 03:04:05.5+00` |
//! | `timestamp`, `date`, `time`                  | `Text` in ISO, as SQLite stores it |
//! | anything else (text, uuid, json, jsonb, arrays, intervals, enums, domains) | `Text`, the type's output |
//!
//! Values are written back as their text (a blob as `bytea`) cast to the column's type,
//! so every type's own input function reads them: Postgres → Postgres is exact. The text
//! forms are the ones the SQLite backend stores (timestamps with `+00`, booleans 0/1), so a
//! SQLite copy holds what its own writes would; a `numeric` arrives on SQLite as text and
//! its `NUMERIC` column affinity stores it as an integer or a real, as SQLite nodes do.
//! From SQLite, integers and reals are written through their text (`1` into a `bool`
//! column is `true`). A `numeric` or `float` primary key is discouraged across backends:
//! the same key arrives as text from one and as a number from the other.
//!
//! Sequences are not replicated (rows carry the values they drew): a copy about to take
//! writes (a promotion) calls [`PostgresReplication::advance_sequences`], which moves each
//! serial or identity column's sequence past the column's largest value.

mod db;
mod ddl;
mod log;
mod seal;
mod setup;
mod shard;
mod store;
mod values;

use std::collections::HashMap;
use std::sync::Arc;

use mycelium_protocol::DbError;
use mycelium_replication::{LogError, ShardId, WalEntry};

pub use log::PostgresShardLog;
pub(crate) use shard::with_shard_keys;

use super::{PostgresBackend, Shared};
use crate::replication::{ReplicationError, ReplicationIdentity};

/// Errors of replication on a PostgreSQL backend.
#[derive(Debug, thiserror::Error)]
pub enum PgReplicationError {
    #[error("replication storage (PostgreSQL): {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Record(#[from] ReplicationError),
    #[error("corrupt replication record in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
    #[error("table {0} has no primary key: its rows cannot be replicated")]
    NoPrimaryKey(String),
    #[error("table {0} does not exist on this node; replay its DDL first")]
    NoTable(String),
    #[error("table {table} has no column {column}; replay its DDL first")]
    NoColumn { table: String, column: String },
    #[error("snapshot chunk {index} of {shard} arrived without chunk 0")]
    SnapshotOrder { shard: ShardId, index: u32 },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(
        "node {node}: replication on PostgreSQL needs a superuser (event triggers, \
         session_replication_role), but role \"{role}\" is not one: connect as a superuser \
         or ALTER ROLE {role} SUPERUSER"
    )]
    NotSuperuser { node: String, role: String },
    #[error("the PostgreSQL backend has shut down")]
    Closed,
}

impl From<crate::replication::SnapshotReceiverGone> for PgReplicationError {
    fn from(_: crate::replication::SnapshotReceiverGone) -> PgReplicationError {
        PgReplicationError::Closed
    }
}

impl From<PgReplicationError> for LogError {
    fn from(e: PgReplicationError) -> LogError {
        LogError::new(e)
    }
}

/// The statement a session runs in a distributed transaction just before `PREPARE
/// TRANSACTION`, so that the transaction's entries carry `gid` as their transaction id.
/// Harmless where replication is off (it sets a setting local to the transaction).
pub(crate) fn note_gid(gid: &str) -> String {
    format!(
        "SELECT pg_catalog.set_config('mycelium.gid', {}, true)",
        super::sql::literal(gid)
    )
}

/// Replication enabled on a PostgreSQL backend: the sealer and the shards' logs. Cheap to
/// clone.
#[derive(Clone)]
pub struct PostgresReplication {
    shared: Arc<Shared>,
    identity: ReplicationIdentity,
    /// Sealers of this process take turns here rather than each holding a pooled
    /// connection while it waits for the database's advisory lock.
    sealing: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for PostgresReplication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresReplication")
            .field("node", self.identity.node())
            .finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// Installs change capture in the database (idempotent: tables, functions, triggers on
    /// every existing table and the DDL event triggers) and returns the replication handle.
    /// Needs a superuser role.
    pub async fn enable_replication(
        &self,
        identity: ReplicationIdentity,
    ) -> Result<PostgresReplication, PgReplicationError> {
        let node = self.shared.node.clone();
        db::run(&self.shared, move |db| setup::install(db, &node)).await?;
        tracing::info!(node = %self.shared.node, database = %self.shared.database,
            "PostgreSQL change capture enabled");
        Ok(PostgresReplication {
            shared: self.shared.clone(),
            identity,
            sealing: Arc::new(tokio::sync::Mutex::new(())),
        })
    }
}

impl PostgresBackend {
    /// The options stored for `table` in the node's `mycelium.__mycelium_policies` (the
    /// proxy writes them with the DDL that set the policy), if any.
    pub async fn stored_policy(&self, table: &str) -> Result<Option<String>, DbError> {
        let conn = self.shared.acquire().await?;
        let row = conn
            .client
            .query_opt(
                "SELECT options FROM mycelium.__mycelium_policies WHERE table_name = $1",
                &[&table],
            )
            .await;
        match row {
            Ok(row) => row
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(|e| self.shared.error(&e)),
            // No policy was ever stored on this node.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                Ok(None)
            }
            Err(e) => Err(self.shared.error(&e)),
        }
    }
}

impl PostgresReplication {
    /// The `ShardLog` of one shard.
    pub fn shard_log(&self, shard: ShardId) -> PostgresShardLog {
        PostgresShardLog::new(self.clone(), shard)
    }

    /// Turns every committed transaction's captured changes into WAL entries and returns
    /// them in commit order (after calling `on_commit` for each). Call it after each local
    /// commit (COMMIT, COMMIT PREPARED, autocommit writes) and periodically (writes that did
    /// not come through a session); concurrent calls take turns.
    pub async fn seal(&self) -> Result<Vec<WalEntry>, PgReplicationError> {
        let _turn = self.sealing.lock().await;
        let identity = self.identity.clone();
        db::run(&self.shared, move |db| seal::seal(db, &identity)).await
    }

    /// Entries and bytes of each shard's log (`mycelium.wal`).
    pub async fn wal_sizes(&self) -> Result<HashMap<ShardId, (u64, u64)>, PgReplicationError> {
        db::run(&self.shared, |db| {
            let mut sizes = HashMap::new();
            for row in db.query(
                "SELECT shard_table, shard, count(*), coalesce(sum(octet_length(entry)), 0)::int8 \
                 FROM mycelium.wal GROUP BY shard_table, shard",
                &[],
            )? {
                let table: String = row.try_get(0)?;
                let shard: i64 = row.try_get(1)?;
                let entries: i64 = row.try_get(2)?;
                let bytes: i64 = row.try_get(3)?;
                let shard = u32::try_from(shard)
                    .map_err(|_| store::corrupt("mycelium.wal", format!("shard {shard}")))?;
                sizes.insert(
                    ShardId::new(&table, shard),
                    (store::to_u64(entries), store::to_u64(bytes)),
                );
            }
            Ok(sizes)
        })
        .await
    }

    /// Moves the sequence of every serial and identity column past the largest value the
    /// column holds, so that a copy that applied other nodes' rows can take writes (call it
    /// when the node becomes a shard's primary).
    pub async fn advance_sequences(&self) -> Result<(), PgReplicationError> {
        db::run(&self.shared, |db| {
            db.transaction(|db| {
                db.query("SELECT mycelium.advance_sequences()", &[])?;
                Ok(())
            })
        })
        .await
    }
}
