//! WAL entries: the row-level changes of one committed transaction on one shard.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::clock::Hlc;
use crate::version::{NodeId, VersionVector};

/// One shard of one table: `users/3`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId {
    pub table: String,
    pub shard: u32,
}

impl ShardId {
    pub fn new(table: &str, shard: u32) -> ShardId {
        ShardId {
            table: table.to_owned(),
            shard,
        }
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.table, self.shard)
    }
}

/// A column value as stored: the common ground of SQLite's storage classes and the Postgres
/// types a backend maps onto them.
#[derive(Debug, Clone)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

// Reals compare by bit pattern: a replicated value must equal itself (NaN included) for
// idempotence checks and key lookups, and two different bit patterns are different data.
impl PartialEq for SqlValue {
    fn eq(&self, other: &SqlValue) -> bool {
        match (self, other) {
            (SqlValue::Null, SqlValue::Null) => true,
            (SqlValue::Integer(a), SqlValue::Integer(b)) => a == b,
            (SqlValue::Real(a), SqlValue::Real(b)) => a.to_bits() == b.to_bits(),
            (SqlValue::Text(a), SqlValue::Text(b)) => a == b,
            (SqlValue::Blob(a), SqlValue::Blob(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for SqlValue {}

impl Hash for SqlValue {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            SqlValue::Null => {}
            SqlValue::Integer(v) => v.hash(state),
            SqlValue::Real(v) => v.to_bits().hash(state),
            SqlValue::Text(v) => v.hash(state),
            SqlValue::Blob(v) => v.hash(state),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowOp {
    Insert,
    Update,
    Delete,
}

/// One row written by a transaction.
///
/// Images are whole rows (every column in `columns`), not just the changed columns: a replica
/// resolving a conflict keeps one whole version of the row, and partial images from two
/// concurrent writers would merge into a row neither wrote. An update that changes the primary
/// key is a `Delete` of the old key followed by an `Insert` of the new one. An entry holds at
/// most one change per row (its final state), as a SQLite changeset consolidates them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    pub table: Arc<str>,
    /// Column names of `old` and `new`, in order. Shared between the changes of one table so
    /// a decoded entry holds each list once.
    pub columns: Arc<[String]>,
    /// Primary-key values, in the table's key order: what identifies the row on every replica.
    pub key: Vec<SqlValue>,
    pub op: RowOp,
    /// The row before the change (`Update`, `Delete`); optional, kept for conflict reports.
    pub old: Option<Vec<SqlValue>>,
    /// The row after the change: present for `Insert` and `Update`, absent for `Delete`.
    pub new: Option<Vec<SqlValue>>,
}

/// One step of a transaction, in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A schema statement, in the Postgres dialect, replayed as is.
    Ddl(String),
    Row(RowChange),
}

/// The changes of one committed transaction on one shard (the seed's `VersionedEntry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalEntry {
    pub shard: ShardId,
    /// The node that committed the transaction.
    pub origin: NodeId,
    /// Position in the origin's log of this shard: 1, 2, 3, ... without gaps.
    pub sequence: u64,
    /// The shard's primary epoch the origin wrote under; raised by every promotion.
    pub epoch: u64,
    /// What the origin had applied of every origin when it committed, its own `sequence`
    /// included: the entry's causal dependencies.
    pub version: VersionVector,
    pub hlc: Hlc,
    /// The backend's transaction id (the 2PC global id when there is one).
    pub txn_id: String,
    pub changes: Vec<Change>,
}

impl WalEntry {
    /// The next entry of `origin`, which has applied `applied` so far: its sequence is one past
    /// its own component, and its version vector is `applied` with that sequence.
    pub fn next_local(
        shard: ShardId,
        applied: &VersionVector,
        epoch: u64,
        hlc: Hlc,
        txn_id: String,
        changes: Vec<Change>,
    ) -> WalEntry {
        let origin = hlc.node.clone();
        let mut version = applied.clone();
        let sequence = version.increment(&origin);
        WalEntry {
            shard,
            origin,
            sequence,
            epoch,
            version,
            hlc,
            txn_id,
            changes,
        }
    }

    /// Number of row changes (DDL excluded).
    pub fn row_count(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| matches!(c, Change::Row(_)))
            .count()
    }
}
