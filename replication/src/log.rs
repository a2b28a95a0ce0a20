//! What replication needs from a storage backend.
//!
//! Two traits: [`ShardLog`] is the async face the shipping and applying state machines use;
//! [`ApplyTxn`] is the handful of row operations a backend performs inside one of its own
//! transactions, so that [`apply_entry`] and [`record_local`] (the rules, written once here)
//! run inside that transaction and data, row clocks, conflicts, log and applied position
//! commit together or not at all.

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::conflict::{Conflict, ConflictPolicy, RowClock, RowDecision, RowStamp, resolve_row};
use crate::entry::{Change, RowChange, SqlValue, WalEntry};
use crate::message::SnapshotChunk;
use crate::version::{NodeId, VersionVector};

/// A storage backend's error, as replication carries it.
#[derive(Debug, thiserror::Error)]
#[error("shard log: {0}")]
pub struct LogError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl LogError {
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> LogError {
        LogError(error.into())
    }
}

/// Entries read from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadResult {
    /// Entries not covered by the position asked about, in the order this node applied them
    /// (a causal order); empty when there is nothing newer.
    Entries(Vec<WalEntry>),
    /// Some entry the reader lacks was truncated: it needs a snapshot first.
    Truncated,
}

/// What applying one entry did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The entry was applied before: nothing changed.
    pub duplicate: bool,
    /// Rows whose content was written.
    pub rows_written: usize,
    /// Rows whose content a concurrent write of higher rank kept.
    pub rows_kept: usize,
    /// Conflicts detected, as detected (the stored records are these merged into earlier ones).
    pub conflicts: Vec<Conflict>,
}

/// The replicated log and data of one shard on one node. Implemented by each backend.
#[async_trait]
pub trait ShardLog: Send + Sync {
    /// What this node holds of each origin, its own commits included: the component of an
    /// origin is the sequence of the last of its entries committed here.
    async fn applied(&self) -> Result<VersionVector, LogError>;

    /// Up to `limit` entries not covered by `after`, in the order they were committed here.
    /// [`ReadResult::Truncated`] when one of them is no longer in the log.
    async fn read_after(&self, after: &VersionVector, limit: usize)
    -> Result<ReadResult, LogError>;

    /// Applies an entry of another origin in one backend transaction, with [`apply_entry`].
    async fn apply(
        &self,
        entry: &WalEntry,
        policy: ConflictPolicy,
    ) -> Result<ApplyOutcome, LogError>;

    /// Drops the entries `through` covers; later reads behind it answer `Truncated`.
    async fn truncate(&self, through: &VersionVector) -> Result<(), LogError>;

    /// A consistent snapshot of the shard (schema, rows with their clocks and tombstones,
    /// conflicts) in chunks of about `rows_per_chunk` items, all with the same `applied`.
    async fn snapshot(
        &self,
        rows_per_chunk: usize,
    ) -> Result<BoxStream<'static, Result<SnapshotChunk, LogError>>, LogError>;

    /// Installs a snapshot one chunk at a time: chunk 0 starts over (staged, the current data
    /// stays readable), the `last` chunk replaces the shard's data, row clocks, conflicts and
    /// applied position with the snapshot's in one transaction and empties the log.
    async fn load_snapshot_chunk(&self, chunk: SnapshotChunk) -> Result<(), LogError>;
}

/// The row operations of one open backend transaction.
pub trait ApplyTxn {
    type Error;

    /// The sequence of `origin` this shard has applied.
    fn applied(&mut self, origin: &NodeId) -> Result<u64, Self::Error>;

    /// The stored clock of a row (also of a deleted one: its tombstone), if it was ever
    /// written through replication.
    fn row_clock(&mut self, table: &str, key: &[SqlValue])
    -> Result<Option<RowClock>, Self::Error>;

    /// Writes the change's content (upsert of `new`, or delete when there is none) and stores
    /// `clock` for the row; a deleted row keeps `clock` as a tombstone.
    fn write_row(&mut self, change: &RowChange, clock: &RowClock) -> Result<(), Self::Error>;

    /// Stores `clock` for a row without touching its content.
    fn set_row_clock(
        &mut self,
        table: &str,
        key: &[SqlValue],
        clock: &RowClock,
    ) -> Result<(), Self::Error>;

    fn execute_ddl(&mut self, sql: &str) -> Result<(), Self::Error>;

    /// The stored record for this row and pair of origins (`first < second`), if any.
    fn conflict(
        &mut self,
        table: &str,
        key: &[SqlValue],
        first: &NodeId,
        second: &NodeId,
    ) -> Result<Option<Conflict>, Self::Error>;

    /// Inserts or replaces the record for `(table, key, first.origin, second.origin)`.
    fn put_conflict(&mut self, conflict: &Conflict) -> Result<(), Self::Error>;

    /// Appends the entry to the shard's log and sets the applied position of its origin to its
    /// sequence.
    fn log_entry(&mut self, entry: &WalEntry) -> Result<(), Self::Error>;
}

/// Applies an entry of another origin inside the caller's transaction: DDL as is, each row by
/// [`resolve_row`], conflicts folded into stored records, then the entry logged. A duplicate
/// (its sequence at or below the applied one) changes nothing. The caller commits.
pub fn apply_entry<T: ApplyTxn>(
    txn: &mut T,
    entry: &WalEntry,
    policy: ConflictPolicy,
) -> Result<ApplyOutcome, T::Error> {
    let mut outcome = ApplyOutcome::default();
    if txn.applied(&entry.origin)? >= entry.sequence {
        outcome.duplicate = true;
        return Ok(outcome);
    }
    for change in &entry.changes {
        let row = match change {
            Change::Ddl(sql) => {
                txn.execute_ddl(sql)?;
                continue;
            }
            Change::Row(row) => row,
        };
        let current = txn.row_clock(&row.table, &row.key)?;
        let conflicts = match resolve_row(current.as_ref(), entry, row, policy) {
            // A row the entry wrote twice, or one a snapshot already covered.
            RowDecision::Duplicate => continue,
            RowDecision::Apply { clock, conflicts } => {
                txn.write_row(row, &clock)?;
                outcome.rows_written += 1;
                conflicts
            }
            RowDecision::Keep { clock, conflicts } => {
                txn.set_row_clock(&row.table, &row.key, &clock)?;
                outcome.rows_kept += 1;
                conflicts
            }
        };
        for conflict in conflicts {
            let stored = txn.conflict(
                &conflict.table,
                &conflict.key,
                &conflict.first.origin,
                &conflict.second.origin,
            )?;
            let record = match stored {
                Some(mut stored) => {
                    stored.merge(&conflict, policy);
                    stored
                }
                None => conflict.clone(),
            };
            txn.put_conflict(&record)?;
            tracing::info!(
                table = %conflict.table,
                first = ?conflict.first,
                second = ?conflict.second,
                winner = %conflict.winner,
                "replication conflict resolved"
            );
            outcome.conflicts.push(conflict);
        }
    }
    txn.log_entry(entry)?;
    Ok(outcome)
}

/// Records a local commit inside the transaction that made it: each written row's clock gets
/// this node's stamp (the data is already written by the statement itself), then the entry is
/// logged. The entry comes from [`WalEntry::next_local`] with the applied vector read in the
/// same transaction.
pub fn record_local<T: ApplyTxn>(txn: &mut T, entry: &WalEntry) -> Result<(), T::Error> {
    let stamp = RowStamp::of(entry);
    for change in &entry.changes {
        if let Change::Row(row) = change {
            let mut clock = txn.row_clock(&row.table, &row.key)?.unwrap_or_default();
            clock.advance(stamp.clone());
            txn.set_row_clock(&row.table, &row.key, &clock)?;
        }
    }
    txn.log_entry(entry)
}
