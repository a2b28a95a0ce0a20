//! mycelium-storage: the SQLite backend of a Mycelium node, presenting Postgres semantics.
//!
//! # Design
//!
//! **Threading.** [`SqliteBackend`] owns a pool of OS threads, each with one rusqlite
//! connection to the same WAL-mode file (rusqlite connections are not `Send`-friendly, and
//! blocking SQLite calls must stay off tokio's workers). Sessions send jobs over channels.
//! An autocommit statement borrows any idle worker; an explicit transaction pins one worker
//! from its first statement to COMMIT/ROLLBACK. `BEGIN` is lazy: the first statement opens
//! `BEGIN IMMEDIATE` when it writes (so concurrent writers queue on SQLite's lock, waiting up
//! to `busy_timeout`) and `BEGIN DEFERRED` when it reads. Until it writes, a READ COMMITTED
//! transaction (the default) starts over before each statement, which then sees what committed
//! before it; in a REPEATABLE READ or SERIALIZABLE one, a write that finds the database changed
//! since its snapshot fails with 40001. Rows stream back in ~64 KiB `DataRows` batches; if the
//! client drops the stream, the worker stops, and a watcher task interrupts SQLite even in the
//! middle of one long step (57014).
//!
//! **Translation.** Each statement is parsed with sqlparser's PostgreSQL dialect, typed
//! (`rewrite::infer`: result columns, parameters, literal coercion), rewritten into SQLite
//! syntax (`rewrite::expr`, `rewrite::ddl`) and printed back; the result is cached per
//! (text, parameter types, schema snapshot). Postgres semantics that SQLite lacks come from
//! functions registered on each connection (`functions`): casts that raise 22P02, division
//! that raises 22012, `now()` fixed per transaction, Postgres `LIKE`, `~`, Unicode
//! `upper`/`lower`, the math functions the bundled SQLite leaves out and common string ones
//! (`functions::math_text`). Column types live
//! in `__mycelium_columns`, written in the same transaction as the DDL (`catalog`).
//!
//! **Values that print differently from how they compute.** A `numeric` division or `avg`
//! prints with a scale that depends on its operands (`7.0 / 2` is `3.5000000000000000`,
//! Postgres's `select_div_scale`): in the outermost select list and RETURNING they are
//! computed as exact decimal text (`rewrite::display`, `functions::numeric`), elsewhere as
//! doubles so that they compare and sort as numbers; ORDER BY/GROUP BY terms naming such a
//! column get the numeric form back. `to_regtype`/`to_regclass` are OIDs in expressions and
//! names as results. JSON is handled by a parser that keeps numbers as written (`1.50`).
//!
//! **Time zone.** A session's `TimeZone` (`NodeSession::set_time_zone`) travels with each
//! statement and COPY to the worker, which runs it inside `with_session_time_zone`: parameters
//! and literals without an offset are read in it, results shown in it, and the date/time
//! functions (`functions::time`) work on its wall clock, while `timestamptz` values, in
//! columns and in arrays, are stored in UTC. Translations are cached per zone.
//!
//! **Unique violations.** SQLite names only the columns; an INSERT or UPDATE carries a probe
//! query (its rows to be written) that the worker runs after a 23505 to find the first
//! conflicting key and print `Key (a)=(5) already exists.`
//!
//! **GROUPING SETS, CUBE and ROLLUP** become a UNION ALL of one grouped select per set
//! (`rewrite::grouping_sets`), with the left-out grouping expressions as typed NULLs and
//! `GROUPING()` as a constant per set.
//!
//! **EXPLAIN** answers SQLite's `EXPLAIN QUERY PLAN` of the translated statement as the lines
//! of a `QUERY PLAN` column (`rewrite::explain`); `ANALYZE` runs the statement as it would run
//! alone and adds its row count and time. Only the text format.
//!
//! **Not supported** (SQLSTATE 0A000 naming the construct, never a different answer):
//! window functions other than ranking (`row_number`, `rank`, `dense_rank`, `percent_rank`,
//! `cume_dist`, `ntile`), offsets (`lag`, `lead`, `first_value`, `last_value`, `nth_value`) and
//! `count`/`sum`/`min`/`max`/`avg`, multidimensional arrays, ordering arrays (ORDER BY, `<`,
//! `min`/`max`: SQLite would compare their text), window `min`/`max`, `greatest` and `least`
//! of intervals and ORDER BY an interval or a jsonb of a UNION, `to_char` of numbers with `L`, `V`,
//! `RN`, `EEEE` or `B`, `to_timestamp`/`to_date` with time zones, ISO weeks, `J`, `Q` or
//! without a year,
//! `AT TIME ZONE` with a POSIX offset string (`'+05'`: a zone name or an interval works),
//! `DISTINCT ON` with `*` over a join or inside a write (a select's own
//! DISTINCT ON runs as a window: `rewrite::distinct_on`), set-returning functions in FROM other than
//! `generate_series` and the JSON and regexp ones of `rewrite::srf`, record-returning ones
//! (`jsonb_each`) in a select list, `DELETE ... USING ... RETURNING` (DELETE ... USING itself runs as
//! `WHERE EXISTS (SELECT 1 FROM <using> WHERE ...)`), `ON CONFLICT ON CONSTRAINT`, `currval`/`setval`, temporary tables, `CREATE TABLE AS` (the proxy
//! runs it as CREATE TABLE and INSERT ... SELECT: nodes do not get it),
//! generated/identity columns, adding CHECK constraints to existing tables, `ALTER COLUMN`
//! together with other actions in one `ALTER TABLE`, `ALTER COLUMN ... TYPE` that would change
//! how SQLite stores a primary-key or foreign-key column (integer to text, say: row clocks and
//! referencing rows hold keys by value), and `ALTER COLUMN ... ADD GENERATED`.
//!
//! **ALTER COLUMN** (SET/DROP DEFAULT, SET/DROP NOT NULL, [SET DATA] TYPE [USING]) rebuilds
//! the table as SQLite documents (new table, copy, drop, rename, indexes again), with foreign
//! keys unenforced while the old table goes (`Translation::rebuild`); the copy's rows are not
//! captured. Its WAL entries carry the PostgreSQL statement, which SQLite copies translate
//! against their own schema and PostgreSQL copies run as is. A copy runs a transaction's DDL
//! before its rows, from whichever of the primary's logs brings it first: a conversion (TYPE)
//! or a SET NOT NULL can meet rows of an earlier entry of another log that it did not see
//! (unconverted values, or a NULL the copy's apply then refuses). Expression indexes, CHECK
//! constraints and views keep their text as translated for the old type.
//!
//! **Accepted with weaker semantics**, documented here because Postgres clients send them:
//! `ALTER TABLE ... ADD PRIMARY KEY` becomes a unique index named `<table>_pkey` (SQLite
//! cannot add a primary key; NOT NULL is not added); `ADD CONSTRAINT ... FOREIGN KEY` on an
//! existing table is accepted and not enforced; `VACUUM` runs SQLite's `ANALYZE` when asked
//! to analyze and is otherwise a no-op; `numeric` is stored as an integer or a double.
//! A serial column that is not the primary key draws from an in-memory sequence that starts
//! after the column's largest value (a restart may reuse values of deleted rows).
//! A table created without a primary key gets a hidden `__mycelium_rowid INTEGER PRIMARY KEY`
//! so that SQLite's session extension records its changes; `*` is spelled out so clients
//! never see it.
//!
//! **Catalog.** `pg_catalog` and `information_schema` are in-memory schemas attached to each
//! connection and refilled from the schema snapshot when a statement reads them
//! (`pg_catalog`): enough for psql's `\dt` and `\d`, and SQLAlchemy's reflection of columns,
//! primary keys, unique constraints, indexes and foreign keys. Arrays (values and columns of
//! one dimension; `rewrite::arrays`, `functions::array`) are stored as their Postgres text
//! form — literals and parameters are read and printed again, so equal arrays store equal
//! text — typed by the rewrite (a column's array type is kept in `__mycelium_columns` as a
//! typmod of its text carrier), and read by functions that take the array type, so
//! `unnest(indkey)`, `generate_subscripts`, `array_agg(... ORDER BY ...)` and `= ANY(array)`
//! answer as in Postgres over `int2vector`/`oidvector` catalog columns too. CHECK constraints have no
//! `pg_constraint` rows (reflection finds none). In statements that name the
//! catalog, constructs still missing read as NULL: the catalog tables those constructs
//! inspect are empty here.

mod catalog;
mod engine;
mod errors;
mod functions;
mod pg_catalog;
mod postgres;
mod regex;
mod replication;
mod rewrite;

pub use catalog::FIRST_USER_OID;
pub use engine::{SqliteBackend, SqliteOptions, SqliteSession};
pub use errors::StorageError;
pub use functions::shard::{SHARD_FUNCTION, ShardFunction};
pub use postgres::{
    PgReplicationError, PostgresBackend, PostgresError, PostgresOptions, PostgresReplication,
    PostgresSession, PostgresShardLog,
};
pub use replication::{
    EpochOf, OnCommit, ReplicationError, ReplicationIdentity, ShardOf, SqliteShardLog,
};
pub use rewrite::{Translation, translate};

use async_trait::async_trait;
use mycelium_protocol::{DbError, NodeSession, PreparedTxn, TxnOutcome, TxnRecord};

/// What a node needs of its database, whichever it is (SQLite file or Postgres server).
#[async_trait]
pub trait Backend: Send + Sync {
    /// A new client session. Holds nothing until a statement runs.
    fn session(&self) -> Box<dyn NodeSession>;

    /// Phase two of a transaction prepared on this backend (see [`NodeSession::prepare`]).
    async fn finish_prepared(&self, gid: &str, commit: bool) -> Result<(), DbError>;

    /// Transactions held in the prepared state.
    async fn prepared(&self) -> Result<Vec<PreparedTxn>, DbError>;

    /// The outcome of `gid` from this backend's transaction records; records an abort when
    /// there is no record, so a late commit of the deciding transaction fails instead.
    async fn txn_outcome(&self, gid: &str) -> Result<TxnOutcome, DbError>;

    /// Deletes the `committed` record of `gid` (see [`NodeLink::forget_txn`]); answers
    /// whether there was one. An `aborted` record stays.
    ///
    /// [`NodeLink::forget_txn`]: mycelium_protocol::NodeLink::forget_txn
    async fn forget_txn(&self, gid: &str) -> Result<bool, DbError>;

    /// Up to `limit` decider records (committed or aborted) written more than `older_than`
    /// ago by this backend's clock, oldest first.
    async fn txn_records(
        &self,
        older_than: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<TxnRecord>, DbError>;

    /// Deletes `records` (as [`Backend::txn_records`] listed them; the caller checked that
    /// no participant still holds them prepared) and answers how many went. Deleting an
    /// `aborted` record first fences off every deciding transaction that began before it was
    /// written: their `commit_decision` fails from now on, so no late decision can commit
    /// what presumed abort already rolled back. Also drops bookkeeping the backend no longer
    /// needs (SQLite: the `applied` markers of finished prepared transactions).
    async fn delete_txn_records(&self, records: &[TxnRecord]) -> Result<u64, DbError>;

    /// Which backend this is and where it keeps the data.
    fn info(&self) -> BackendInfo;

    /// Finishes in-flight work and closes the backend.
    fn shutdown(&self);
}

/// A backend's answer to [`Backend::info`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// `sqlite` or `postgres`.
    pub kind: &'static str,
    /// The SQLite file or the PostgreSQL database.
    pub location: String,
}
