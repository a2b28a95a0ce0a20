//! The node protocol as plain data: what the proxy asks of a node and what a node answers.
//!
//! Both sides of the proxy → node hop speak these types. The in-process link used by
//! `mycelium up` passes them as values; the network layer serializes them at its edge.
//! Result rows travel as ready-made Postgres `DataRow` messages so the proxy can forward
//! single-node results to the client without decoding them.

mod error;
mod map;
mod rows;
pub mod types;

pub use error::DbError;
pub use map::{ClusterMap, MapDecodeError, MapNode, MapPolicy, MapPromotion, STALE_MAP};
pub use rows::{DataRows, DataRowsBuilder, RowsIter};

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

/// Postgres wire format of a value: text (0) or binary (1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    #[default]
    Text,
    Binary,
}

impl Format {
    /// The wire format code (0 text, 1 binary).
    pub fn code(self) -> i16 {
        match self {
            Format::Text => 0,
            Format::Binary => 1,
        }
    }

    /// Parses a wire format code; anything but 0 or 1 is a protocol violation.
    pub fn from_code(code: i16) -> Option<Format> {
        match code {
            0 => Some(Format::Text),
            1 => Some(Format::Binary),
            _ => None,
        }
    }
}

/// One column of a result, as it appears in a Postgres `RowDescription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// OID of the table the column comes from, 0 when it is an expression.
    pub table_oid: u32,
    /// Attribute number within that table, 0 when it is an expression.
    pub column_id: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub type_modifier: i32,
}

/// What a statement takes and returns, known before it runs (Describe).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatementDescription {
    /// Postgres type OID of every `$n` parameter, in order.
    pub params: Vec<u32>,
    /// Result columns; empty when the statement returns no rows.
    pub columns: Vec<Column>,
}

/// One statement to run on a node, with its parameters as the client sent them.
#[derive(Debug, Clone)]
pub struct Execute {
    /// Statement text in the Postgres dialect; the backend translates it if it must.
    pub sql: Arc<str>,
    /// Parameter type OIDs (0 = let the backend infer).
    pub param_types: Arc<[u32]>,
    /// Parameter values in the wire encoding of `param_formats`; `None` is SQL NULL.
    pub params: Vec<Option<Bytes>>,
    /// One format per parameter (already expanded from the Bind message's short forms).
    pub param_formats: Vec<Format>,
    /// Result formats as in Bind: empty = all text, one = for all columns, else one per column.
    pub result_formats: Arc<[Format]>,
}

impl Execute {
    /// A statement with no parameters and text results, as the simple query protocol sends.
    pub fn simple(sql: impl Into<Arc<str>>) -> Execute {
        Execute {
            sql: sql.into(),
            param_types: Arc::from(Vec::new()),
            params: Vec::new(),
            param_formats: Vec::new(),
            result_formats: Arc::from(Vec::new()),
        }
    }

    /// The format the client asked for column `index`.
    pub fn result_format(&self, index: usize) -> Format {
        match self.result_formats.len() {
            0 => Format::Text,
            1 => self.result_formats[0],
            _ => self.result_formats.get(index).copied().unwrap_or_default(),
        }
    }
}

/// A batch of rows for `COPY table (columns) FROM STDIN`, already split into fields.
#[derive(Debug, Clone)]
pub struct CopyIn {
    pub table: String,
    /// Target columns; empty means every column in table order.
    pub columns: Vec<String>,
    /// Each row's fields as text (Postgres text input syntax); `None` is NULL.
    pub rows: Vec<Vec<Option<String>>>,
}

/// What a node streams back for one [`Execute`].
#[derive(Debug, Clone)]
pub enum Reply {
    /// The result columns; sent once, before any rows, by statements that return rows.
    Columns(Arc<[Column]>),
    /// A batch of rows, encoded as complete `DataRow` messages.
    Rows(DataRows),
    /// The statement finished; `tag` is the Postgres command tag (`INSERT 0 3`, `SELECT 5`).
    Complete { tag: String },
}

/// Where the replies of a remote statement come from (the network layer reads them straight
/// off its connection, with no task or channel in between).
#[async_trait]
pub trait ReplySource: Send {
    async fn next(&mut self) -> Option<Result<Reply, DbError>>;
}

/// The stream of replies for one statement; ends after `Complete` or an error. Dropping it
/// early cancels the statement.
pub struct ReplyStream {
    source: Source,
}

enum Source {
    Channel(mpsc::Receiver<Result<Reply, DbError>>),
    Custom(Box<dyn ReplySource>),
}

impl ReplyStream {
    /// Replies sent into a channel (by a backend's worker thread).
    pub fn from_channel(receiver: mpsc::Receiver<Result<Reply, DbError>>) -> ReplyStream {
        ReplyStream {
            source: Source::Channel(receiver),
        }
    }

    pub fn from_source(source: Box<dyn ReplySource>) -> ReplyStream {
        ReplyStream {
            source: Source::Custom(source),
        }
    }

    /// The next reply, or `None` when the statement is over (or its producer is gone).
    pub async fn recv(&mut self) -> Option<Result<Reply, DbError>> {
        match &mut self.source {
            Source::Channel(receiver) => receiver.recv().await,
            Source::Custom(source) => source.next().await,
        }
    }
}

impl std::fmt::Debug for ReplyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyStream")
    }
}

/// Where a committed write sits in replication: entry `sequence` of `origin`'s log of shard
/// `table`/`shard` (a node's shard log: `__default`/0 for the tables without a policy). A copy
/// that applied it holds the write.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommitPosition {
    pub table: String,
    pub shard: u32,
    pub origin: String,
    pub sequence: u64,
}

/// How a node's refusal of a read whose copy lags behind a session's own writes begins
/// (SQLSTATE 55000, see [`NodeSession::set_read_fence`]); the proxy reads the primary instead.
pub const REPLICA_BEHIND: &str = "copy behind the session's writes";

/// A distributed transaction's place in the order that keeps lock waits across nodes from
/// forming a cycle (wait-die; see [`NodeSession::set_lock_order`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOrder {
    /// Smaller is older: when the transaction began, in microseconds since the Unix epoch,
    /// unique among one proxy's transactions.
    pub priority: u64,
    /// The transaction has statements on other nodes, so it may hold locks there; only such a
    /// transaction can close a cycle by waiting here.
    pub holds_elsewhere: bool,
}

/// A connection-like session on one node. Statements of a client transaction run on the
/// same session, in order.
#[async_trait]
pub trait NodeSession: Send {
    /// Parameter and result types of a statement, without running it.
    async fn describe(
        &mut self,
        sql: &str,
        param_types: &[u32],
    ) -> Result<StatementDescription, DbError>;

    /// Runs one statement; replies stream back as the node produces them.
    async fn execute(&mut self, request: Execute) -> Result<ReplyStream, DbError>;

    /// Inserts a batch of `COPY FROM` rows; returns how many rows were written.
    async fn copy_in(&mut self, batch: CopyIn) -> Result<u64, DbError>;

    /// The client user statements run as (what `current_user` answers). Links that do not
    /// evaluate it ignore it.
    fn set_user(&mut self, _user: &str) {}

    /// The client session's `TimeZone` setting, as `SHOW TimeZone` prints it (see
    /// [`types::TimeZone::parse`]), for the statements that follow: `timestamptz` values are
    /// shown in it and input without an offset is read in it. Until called: UTC.
    fn set_time_zone(&mut self, _zone: &str) {}

    /// The lock order of the client transaction the following statements belong to (`None`
    /// outside one). A node whose lock is held by an older transaction does not make a
    /// transaction that `holds_elsewhere` wait for it: the statement fails at once with 40001
    /// (wait-die), where waiting could close a cycle of waits across nodes that only a lock
    /// timeout would break. Nodes with their own deadlock handling ignore it.
    fn set_lock_order(&mut self, _order: Option<LockOrder>) {}

    /// The cluster map epoch the caller routed by, sent with every statement so a node that
    /// knows a newer map refuses it (see [`NodeLink::check_epoch`]); 0 = not checked.
    fn set_map_epoch(&mut self, _epoch: u64) {}

    /// Makes the next statement wait, briefly, until this node's copies hold every position
    /// of `fence` (the session's own earlier commits, on their primaries); a copy still behind
    /// when the wait ends refuses the statement with 55000 and [`REPLICA_BEHIND`]. Empty: no
    /// wait. Links and nodes that do not replicate ignore it.
    fn set_read_fence(&mut self, _fence: Vec<CommitPosition>) {}

    /// Where the commits of the last statement landed in replication (the node's own commits
    /// as a shard primary: autocommit writes, COMMIT), for a later [`Self::set_read_fence`]
    /// on another copy. Taken once; empty when the statement committed nothing replicated.
    fn take_commit_positions(&mut self) -> Vec<CommitPosition> {
        Vec::new()
    }

    /// Whether a transaction is open on this session after the last statement finished.
    /// A link that pools the session must keep it pinned while this is true.
    fn in_transaction(&self) -> bool;

    /// Phase one of two-phase commit: makes the open transaction's changes durable under
    /// the global id `gid` and keeps its locks, then detaches it from this session (which
    /// has no transaction open afterwards). Only [`NodeLink::finish_prepared`] ends it.
    /// `decider` names the node whose transaction record holds the outcome, for recovery.
    async fn prepare(&mut self, gid: &str, decider: &str) -> Result<(), DbError>;

    /// The commit that decides a distributed transaction: writes the transaction record
    /// (`gid` committed, with its `participants`) in the same backend transaction as this
    /// session's own changes, and commits both at once.
    async fn commit_decision(&mut self, gid: &str, participants: &[String]) -> Result<(), DbError>;
}

/// A transaction in the prepared state on a node, waiting for its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedTxn {
    pub gid: String,
    /// The node whose transaction record decides the outcome.
    pub decider: String,
    /// When it was prepared, milliseconds since the Unix epoch.
    pub prepared_at_ms: i64,
}

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The SQLite file or the PostgreSQL database.
    pub location: String,
    /// Whether the backend answers (a PostgreSQL server may be down while the node runs).
    pub healthy: bool,
    /// Transactions the node holds prepared.
    pub prepared: u32,
    /// The epoch of the cluster map the node has (0: none yet).
    pub map_epoch: u64,
    /// The shards the map places on the node.
    pub shards: Vec<HeldShard>,
}

/// One shard a node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldShard {
    pub table: String,
    pub shard: u32,
    /// Primary (writes go here) or secondary copy.
    pub primary: bool,
}

/// One row of a node's replication report: its copy of one shard, and one peer of it (the
/// primary's secondaries, or a secondary's primary; `None` when it has none).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicationRow {
    pub table: String,
    pub shard: u32,
    /// `primary` or `secondary`.
    pub role: String,
    pub epoch: u64,
    /// The last sequence of the primary's log held here.
    pub sequence: u64,
    pub peer: Option<String>,
    /// The last sequence of the primary's log the secondary holds (as far as this node knows).
    pub peer_sequence: u64,
    pub lag_entries: u64,
    pub lag_seconds: f64,
    /// `connected`, `catching-up`, `snapshot` or `down`.
    pub state: String,
    pub wal_entries: u64,
    pub wal_bytes: u64,
    pub entries_shipped: u64,
    pub entries_applied: u64,
    pub conflicts: u64,
}

/// What a decider's records say about a distributed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOutcome {
    Committed,
    /// No commit record: presumed abort. Asking records the abort, so the transaction can
    /// never commit afterwards.
    Aborted,
    /// The deciding transaction is still running; ask again later.
    Pending,
}

/// A decider's record of a distributed transaction, as the record sweep lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub gid: String,
    /// `committed` (the decision) or, when false, `aborted` (written by presumed abort).
    pub committed: bool,
    /// The writers the decision names (empty for an abort record).
    pub participants: Vec<String>,
    /// When it was written, milliseconds since the Unix epoch on the decider's clock.
    pub decided_at_ms: i64,
}

/// A way to reach one node and open sessions on it.
#[async_trait]
pub trait NodeLink: Send + Sync {
    /// The node's id, for errors and logs.
    fn node_id(&self) -> &str;

    /// Opens a session. Cheap: nothing is held on the node until a statement runs.
    async fn open_session(&self) -> Result<Box<dyn NodeSession>, DbError>;

    /// Whether the node answered its last health check; an in-process node always has.
    fn is_up(&self) -> bool {
        true
    }

    /// Phase two for a transaction this node prepared: commit or roll it back. Finishing
    /// a `gid` the node no longer holds is not an error (it was finished before). Answers
    /// where a commit landed in replication, for the committing session's read fences (see
    /// [`NodeSession::take_commit_positions`]); empty after a rollback, or when the node
    /// cannot tell yet.
    async fn finish_prepared(
        &self,
        gid: &str,
        commit: bool,
    ) -> Result<Vec<CommitPosition>, DbError>;

    /// The transactions this node holds prepared.
    async fn prepared(&self) -> Result<Vec<PreparedTxn>, DbError>;

    /// The outcome of `gid` according to this node's transaction records (this node was its
    /// decider).
    async fn txn_outcome(&self, gid: &str) -> Result<TxnOutcome, DbError>;

    /// Deletes this node's `committed` record of `gid` (it was the decider), once every
    /// participant acknowledged COMMIT PREPARED: nobody can ask about `gid` any more. Abort
    /// records are never deleted this way. Links that keep no records ignore it.
    async fn forget_txn(&self, _gid: &str) -> Result<(), DbError> {
        Ok(())
    }

    /// The node's own report: its backend, whether that answers, what it holds prepared.
    async fn status(&self) -> Result<NodeStatus, DbError>;

    /// Offers the node a cluster map (`None`: only asks) and returns the map the node holds
    /// afterwards: the offer when its epoch is newer than the node's, else the node's own.
    /// An offer with the node's epoch but other content is refused the same way (two proxies
    /// changed the map at once; the caller merges and offers a newer epoch).
    async fn exchange_map(&self, offer: Option<ClusterMap>) -> Result<Option<ClusterMap>, DbError>;

    /// Refuses a statement routed by a cluster map older than the node's (40001: the sender
    /// catches up and the statement may be retried); epoch 0 is never refused. Asked for
    /// statements that start work (outside a transaction, BEGIN included), not for those
    /// inside one.
    fn check_epoch(&self, _epoch: u64) -> Result<(), DbError> {
        Ok(())
    }

    /// [`Self::check_epoch`] for a statement about to run on a session that is
    /// `in_transaction` or not: only work that starts here is checked, since statements inside
    /// a transaction (its COMMIT or ROLLBACK too) finish what its first statement began.
    fn check_statement_epoch(&self, epoch: u64, in_transaction: bool) -> Result<(), DbError> {
        if in_transaction {
            Ok(())
        } else {
            self.check_epoch(epoch)
        }
    }

    /// Where replication of each shard copy on the node stands (empty on nodes that do not
    /// replicate).
    async fn replication(&self) -> Result<Vec<ReplicationRow>, DbError> {
        Ok(Vec::new())
    }
}
