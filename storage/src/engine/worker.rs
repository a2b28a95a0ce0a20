//! One worker thread: owns a SQLite connection and runs the jobs sessions send it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::BytesMut;
use chrono::Utc;
use mycelium_protocol::types::{self, PgType, SqlValue, SqlValueRef, TimeZone};
use mycelium_protocol::{
    CopyIn, DataRowsBuilder, DbError, Execute, Format, LockOrder, Reply, StatementDescription,
    TxnOutcome,
};
use mycelium_replication::WalEntry;
use rusqlite::config::DbConfig;
use rusqlite::session::{ConflictAction, ConflictType, Session};
use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::lock_wait;
use super::redo::Redo;
use super::{ForeignKeys, Lease, Shared, SharedTxn, aborted_error};
use crate::catalog::{self, Schema, quote_ident};
use crate::errors::{ErrorContext, from_sqlite, internal};
use crate::functions::{FunctionState, storage_ref};
use crate::replication::ReplicationError;
use crate::rewrite::{self, ConflictProbe, Explain, Kind, OutColumn, Translation};

const BATCH_BYTES: usize = 64 * 1024;
const BATCH_ROWS: usize = 1000;

pub(crate) enum Job {
    Execute {
        id: u64,
        request: Execute,
        /// The client user, for `current_user`.
        user: Arc<str>,
        /// The session's `TimeZone`, for parameters, functions and results.
        time_zone: TimeZone,
        txn: Option<SharedTxn>,
        /// The lock order of `txn`'s distributed transaction.
        lock_order: Option<LockOrder>,
        replies: mpsc::Sender<Result<Reply, DbError>>,
        done: oneshot::Sender<()>,
        lease: Option<Lease>,
    },
    Describe {
        sql: String,
        param_types: Vec<u32>,
        /// The session's `TimeZone`: translating folds `timestamptz` literals in it.
        time_zone: TimeZone,
        reply: oneshot::Sender<Result<StatementDescription, DbError>>,
        lease: Option<Lease>,
    },
    CopyIn {
        batch: CopyIn,
        /// The session's `TimeZone`, in which rows' `timestamptz` text is read.
        time_zone: TimeZone,
        txn: Option<SharedTxn>,
        lock_order: Option<LockOrder>,
        reply: oneshot::Sender<Result<u64, DbError>>,
        lease: Option<Lease>,
    },
    /// Phase one of two-phase commit on the session's pinned worker: answers whether the
    /// transaction holds changes (then it stays open, its changes in the redo store).
    Prepare {
        gid: String,
        decider: String,
        reply: oneshot::Sender<Result<bool, DbError>>,
    },
    /// Phase two of a prepared transaction; releases the worker.
    FinishPrepared {
        gid: String,
        commit: bool,
        reply: oneshot::Sender<Result<(), DbError>>,
        lease: Lease,
    },
    /// Commits the session's transaction together with the record that decides `gid`.
    CommitDecision {
        gid: String,
        participants: Vec<String>,
        /// When the session's transaction began (ms since the Unix epoch).
        began_at_ms: i64,
        reply: oneshot::Sender<Result<(), DbError>>,
    },
    /// What the transaction records say about `gid` (recording an abort if nothing).
    Outcome {
        gid: String,
        reply: oneshot::Sender<Result<TxnOutcome, DbError>>,
        lease: Option<Lease>,
    },
    /// After a restart: opens a transaction holding a prepared transaction's changes again.
    Reestablish {
        redo: Redo,
        reply: std::sync::mpsc::Sender<Result<(), DbError>>,
    },
    /// Replication work on an idle worker, outside any session's transaction.
    Task {
        task: WorkerTask,
        foreign_keys: ForeignKeys,
        lease: Lease,
    },
    /// COMMIT or ROLLBACK of the session's transaction; releases the pinned worker.
    End {
        commit: bool,
        reply: Option<oneshot::Sender<Result<(), DbError>>>,
        lease: Option<Lease>,
    },
    Shutdown,
}

/// A cached translation with integer literals as parameters, and this text's literals.
type LiftedTranslation = (Arc<Translation>, Vec<i64>);

/// Whether `shape`, `original` with `lifted` integer literals as parameters, runs as it does:
/// the same kind of statement with the same result columns, and nothing besides one
/// statement (no statements before it, no checks, no rebuild) that could hold a literal the
/// parameters would not reach.
fn lifts_cleanly(original: &Translation, shape: &Translation, lifted: usize) -> bool {
    let single = |t: &Translation| {
        t.pre.is_empty()
            && t.checks.is_empty()
            && t.main.is_some()
            && !t.ddl
            && !t.rebuild
            && t.replicated.is_none()
            && t.explain.is_none()
            && !t.no_transaction_block
    };
    single(original)
        && single(shape)
        && original.params.is_empty()
        && shape.params.len() == lifted
        && original.kind == shape.kind
        && original.out == shape.out
        && original.writes == shape.writes
        && original.catalog == shape.catalog
        && original.table == shape.table
        && original.columns == shape.columns
        && original.probe.is_some() == shape.probe.is_some()
}

impl Job {
    /// What the job needs of the connection's foreign-key enforcement: a client's
    /// statements need it on, whichever worker they reach.
    fn foreign_keys(&self) -> ForeignKeys {
        match self {
            Job::Task { foreign_keys, .. } => *foreign_keys,
            Job::Shutdown => ForeignKeys::Either,
            _ => ForeignKeys::Enforced,
        }
    }
}

/// Work run on a worker's connection; answers whether it changed the schema.
pub(crate) type WorkerTask = Box<dyn FnOnce(&Connection) -> bool + Send>;

pub(crate) fn open_connection(
    path: &Path,
    options: &super::SqliteOptions,
) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(options.busy_timeout)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(
        None,
        "synchronous",
        if options.synchronous_full {
            "FULL"
        } else {
            "NORMAL"
        },
    )?;
    // Postgres has no double-quoted string literals; SQLite's fallback would turn a
    // misspelled column into a string.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DQS_DML, false)?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DQS_DDL, false)?;
    conn.set_prepared_statement_cache_capacity(256);
    if let Some(shard) = &options.shard_function {
        crate::functions::shard::register(&conn, shard.clone())?;
    }
    Ok(conn)
}

/// A parameter bound by reference.
struct Bind<'a>(&'a SqlValue);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Int(i) => ValueRef::Integer(*i),
            SqlValue::Float(f) => ValueRef::Real(*f),
            SqlValue::Text(s) => ValueRef::Text(s.as_bytes()),
            SqlValue::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

/// A prepared transaction's changes, kept (replication on) for the WAL entries its COMMIT
/// PREPARED records.
struct Held {
    changeset: Vec<u8>,
    ddl: Vec<String>,
}

/// The changes of an open transaction, kept so it can be prepared (explicit transactions)
/// and, with replication on, logged when it commits (every write transaction).
struct Capture<'c> {
    session: Session<'c>,
    /// DDL run in the transaction, in order: the session extension records rows only.
    ddl: Vec<String>,
}

pub(crate) struct Worker<'c> {
    /// This worker's number in the pool.
    index: usize,
    conn: &'c Connection,
    capture: Option<Capture<'c>>,
    held: Option<Held>,
    shared: Arc<Shared>,
    current: Arc<Mutex<u64>>,
    /// Whether the connection enforces foreign keys not now, shared with the pool's slot.
    foreign_keys_off: Arc<AtomicBool>,
    functions: FunctionState,
    schema: Arc<Schema>,
    /// The schema includes this connection's uncommitted DDL.
    private_schema: bool,
    /// The schema the attached `pg_catalog` tables were last filled from.
    catalog_filled: Option<u64>,
    /// The open transaction began deferred and may still start over from a fresh snapshot:
    /// it has not written nor set a savepoint, and it runs READ COMMITTED or has read nothing
    /// but Mycelium's own tables. Its next statement (READ COMMITTED) or first write (any
    /// level) starts it over.
    only_read: bool,
}

impl<'c> Worker<'c> {
    pub fn new(
        index: usize,
        conn: &'c Connection,
        shared: Arc<Shared>,
        current: Arc<Mutex<u64>>,
        foreign_keys_off: Arc<AtomicBool>,
    ) -> rusqlite::Result<Worker<'c>> {
        let functions = FunctionState {
            sequences: shared.sequences.clone(),
            ..FunctionState::default()
        };
        crate::functions::register(conn, &functions)?;
        crate::pg_catalog::attach(conn)?;
        let schema = shared.schema.read().map(|s| s.clone()).unwrap_or_default();
        let mut worker = Worker {
            index,
            conn,
            capture: None,
            held: None,
            shared,
            current,
            foreign_keys_off,
            functions,
            schema: Arc::default(),
            private_schema: false,
            catalog_filled: None,
            only_read: false,
        };
        worker
            .use_schema(schema)
            .map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))?;
        Ok(worker)
    }

    pub fn run(mut self, jobs: std::sync::mpsc::Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            self.set_foreign_keys(job.foreign_keys());
            match job {
                Job::Execute {
                    id,
                    request,
                    user,
                    time_zone,
                    txn,
                    lock_order,
                    replies,
                    done,
                    lease,
                } => {
                    crate::functions::set_session_user(user);
                    self.set_current(id);
                    let result = lock_wait::with_order(lock_order, || {
                        types::with_session_time_zone(time_zone, || {
                            self.execute(&request, txn.as_ref(), &replies)
                        })
                    });
                    self.set_current(0);
                    if let Err(err) = result {
                        self.after_error(txn.as_ref());
                        let _ = replies.blocking_send(Err(lock_wait::explain(err)));
                    }
                    self.note_write_lock(lock_order);
                    drop(replies);
                    drop(done);
                    drop(lease);
                }
                Job::Describe {
                    sql,
                    param_types,
                    time_zone,
                    reply,
                    lease,
                } => {
                    let result = types::with_session_time_zone(time_zone, || {
                        self.describe(&sql, &param_types)
                    });
                    let _ = reply.send(result);
                    drop(lease);
                }
                Job::CopyIn {
                    batch,
                    time_zone,
                    txn,
                    lock_order,
                    reply,
                    lease,
                } => {
                    let result = lock_wait::with_order(lock_order, || {
                        types::with_session_time_zone(time_zone, || {
                            self.copy_in(&batch, txn.as_ref())
                        })
                    });
                    if result.is_err() {
                        self.after_error(txn.as_ref());
                    }
                    let _ = reply.send(result.map_err(lock_wait::explain));
                    self.note_write_lock(lock_order);
                    drop(lease);
                }
                Job::Prepare {
                    gid,
                    decider,
                    reply,
                } => {
                    self.shared.write_lock.finishing(self.index);
                    if let Err(Ok(true)) = reply.send(self.prepare(&gid, &decider)) {
                        // The session stopped waiting for this vote (its coordinator gave
                        // up), so nobody holds the prepared transaction and no coordinator
                        // counted the vote: abort it now, before this worker, back in the
                        // pool, runs anyone else's statement inside it.
                        tracing::debug!(gid, "a prepare nobody waited for is rolled back");
                        let _ = self.finish_prepared(&gid, false);
                    }
                }
                Job::FinishPrepared {
                    gid,
                    commit,
                    reply,
                    lease,
                } => {
                    let _ = reply.send(self.finish_prepared(&gid, commit));
                    drop(lease);
                }
                Job::CommitDecision {
                    gid,
                    participants,
                    began_at_ms,
                    reply,
                } => {
                    self.shared.write_lock.finishing(self.index);
                    let _ = reply.send(self.commit_decision(&gid, &participants, began_at_ms));
                }
                Job::Outcome { gid, reply, lease } => {
                    let _ = reply.send(self.outcome(&gid));
                    drop(lease);
                }
                Job::Reestablish { redo, reply } => {
                    let _ = reply.send(self.reestablish(&redo));
                }
                Job::Task { task, lease, .. } => {
                    if task(self.conn) {
                        self.schema_changed_committed();
                    }
                    drop(lease);
                }
                Job::End {
                    commit,
                    reply,
                    lease,
                } => {
                    let result = self.end(commit);
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                    drop(lease);
                }
                Job::Shutdown => break,
            }
            if self.conn.is_autocommit() {
                self.shared.write_lock.released(self.index);
            }
        }
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    fn set_current(&self, id: u64) {
        if let Ok(mut current) = self.current.lock() {
            *current = id;
        }
    }

    /// After a failed statement: Postgres aborts an explicit transaction; an implicit one
    /// is rolled back here.
    fn after_error(&mut self, txn: Option<&SharedTxn>) {
        match txn {
            Some(txn) => {
                if let Ok(mut state) = txn.lock() {
                    state.failed = true;
                }
            }
            None => {
                self.capture = None;
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                if self.private_schema {
                    self.schema_changed_committed();
                }
            }
        }
    }

    fn end(&mut self, commit: bool) -> Result<(), DbError> {
        self.finish(commit, None)
    }

    /// Ends the open transaction; `gid` names a committing distributed transaction.
    fn finish(&mut self, commit: bool, gid: Option<&str>) -> Result<(), DbError> {
        let result = if self.conn.is_autocommit() {
            Ok(())
        } else if commit {
            self.commit(gid)
        } else {
            self.conn
                .execute_batch("ROLLBACK")
                .map_err(|e| from_sqlite(&e, ErrorContext::default()))
        };
        self.capture = None;
        if self.private_schema {
            self.schema_changed_committed();
        }
        result
    }

    /// COMMIT, with the WAL entries of the captured changes recorded just before it in the
    /// same transaction (replication on); a failure rolls the transaction back.
    fn commit(&mut self, gid: Option<&str>) -> Result<(), DbError> {
        let committed = self.log_captured(gid).and_then(|entries| {
            self.conn
                .execute_batch("COMMIT")
                .map_err(|e| from_sqlite(&e, ErrorContext::default()))?;
            Ok(entries)
        });
        match committed {
            Ok(entries) => {
                self.announce(&entries);
                Ok(())
            }
            Err(err) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(err)
            }
        }
    }

    fn replicating(&self) -> bool {
        self.shared.replication.is_some()
    }

    /// Records the WAL entries of the open transaction's captured changes inside it.
    fn log_captured(&mut self, gid: Option<&str>) -> Result<Vec<WalEntry>, DbError> {
        let capture = self.capture.take();
        let (Some(identity), Some(mut capture)) = (self.shared.replication.as_ref(), capture)
        else {
            return Ok(Vec::new());
        };
        if capture.session.is_empty() && capture.ddl.is_empty() {
            return Ok(Vec::new());
        }
        let mut changeset = Vec::new();
        capture
            .session
            .changeset_strm(&mut changeset)
            .map_err(|e| from_sqlite(&e, ErrorContext::default()))?;
        drop(capture.session);
        crate::replication::record(self.conn, identity, &changeset, &capture.ddl, gid)
            .map_err(ReplicationError::into_db)
    }

    /// Tells the node which entries just committed.
    fn announce(&self, entries: &[WalEntry]) {
        if let Some(identity) = &self.shared.replication {
            identity.committed(entries);
        }
    }

    /// Starts recording the row changes of the transaction just begun. The catalog tables
    /// are left out: replaying the transaction's DDL rewrites them.
    fn start_capture(&self) -> Result<Capture<'c>, DbError> {
        let sqlite = |e: rusqlite::Error| from_sqlite(&e, ErrorContext::default());
        let mut session = Session::new(self.conn).map_err(sqlite)?;
        session.table_filter(Some(|table: &str| {
            table != "__mycelium_tables"
                && table != "__mycelium_columns"
                && table != catalog::REBUILD_TABLE
        }));
        session.attach::<&str>(None).map_err(sqlite)?;
        Ok(Capture {
            session,
            ddl: Vec::new(),
        })
    }

    /// Phase one: the changes go to the redo store; the transaction stays open. A
    /// transaction that changed nothing simply ends.
    fn prepare(&mut self, gid: &str, decider: &str) -> Result<bool, DbError> {
        let capture = self.capture.take();
        if self.conn.is_autocommit() {
            return Ok(false);
        }
        let Some(mut capture) = capture else {
            self.end(false)?;
            return Err(internal(format!(
                "transaction {gid} has no change capture and cannot be prepared"
            )));
        };
        let mut changeset = Vec::new();
        if let Err(e) = capture.session.changeset_strm(&mut changeset) {
            drop(capture);
            let error = from_sqlite(&e, ErrorContext::default());
            self.end(false)?;
            return Err(error);
        }
        drop(capture.session);
        if changeset.is_empty() && capture.ddl.is_empty() {
            self.end(false)?;
            return Ok(false);
        }
        let redo = Redo {
            gid: gid.to_owned(),
            decider: decider.to_owned(),
            prepared_at_ms: Utc::now().timestamp_millis(),
            ddl: capture.ddl,
            changeset,
        };
        if let Err(e) = self.shared.redo.insert(&redo) {
            self.end(false)?;
            return Err(e);
        }
        if self.replicating() {
            self.held = Some(Held {
                changeset: redo.changeset,
                ddl: redo.ddl,
            });
        }
        mycelium_config::failpoint::hit("participant.after_prepare");
        Ok(true)
    }

    /// Phase two. A commit leaves an `applied` marker in the data file, atomically with
    /// the data, so a crash before the redo row is deleted cannot apply it twice.
    fn finish_prepared(&mut self, gid: &str, commit: bool) -> Result<(), DbError> {
        let sqlite = |e: rusqlite::Error| from_sqlite(&e, ErrorContext::default());
        let held = self.held.take();
        let result = if commit {
            self.log_held(held, gid).and_then(|entries| {
                self.conn
                    .execute(
                        "INSERT OR REPLACE INTO __mycelium_txn_records \
                         (gid, state, participants, decided_at_ms) VALUES (?1, 'applied', '', ?2)",
                        rusqlite::params![gid, Utc::now().timestamp_millis()],
                    )
                    .map_err(sqlite)?;
                self.conn.execute_batch("COMMIT").map_err(sqlite)?;
                Ok(entries)
            })
        } else {
            self.conn
                .execute_batch("ROLLBACK")
                .map(|()| Vec::new())
                .map_err(sqlite)
        };
        let entries = match result {
            Ok(entries) => entries,
            Err(e) => {
                // The redo row stays: a restart re-establishes the transaction.
                tracing::error!(gid, commit, error = %e.message, "cannot finish a prepared transaction");
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                return Err(e);
            }
        };
        self.announce(&entries);
        if self.private_schema {
            self.schema_changed_committed();
        }
        mycelium_config::failpoint::hit("participant.after_finish");
        self.shared.redo.delete(gid)
    }

    /// Records the WAL entries of a prepared transaction's kept changes inside it.
    fn log_held(&self, held: Option<Held>, gid: &str) -> Result<Vec<WalEntry>, DbError> {
        let (Some(identity), Some(held)) = (self.shared.replication.as_ref(), held) else {
            return Ok(Vec::new());
        };
        crate::replication::record(self.conn, identity, &held.changeset, &held.ddl, Some(gid))
            .map_err(ReplicationError::into_db)
    }

    /// Commits the open transaction with the record that decides `gid`. An `aborted` record
    /// (a participant asked first, and presumed abort) makes the commit fail, and so does
    /// the record sweep's fence: a transaction that began before an abort record it deleted
    /// was written might be that record's, so it may not decide (see
    /// `Shared::decisions_fenced_ms`). The fence is read after the insert: the sweep raises
    /// it before deleting, and the insert only succeeds once the deletion committed.
    fn commit_decision(
        &mut self,
        gid: &str,
        participants: &[String],
        began_at_ms: i64,
    ) -> Result<(), DbError> {
        let sqlite = |e: rusqlite::Error| from_sqlite(&e, ErrorContext::default());
        if self.conn.is_autocommit() {
            self.conn.execute_batch("BEGIN IMMEDIATE").map_err(sqlite)?;
        }
        let inserted = self.conn.execute(
            "INSERT OR IGNORE INTO __mycelium_txn_records \
             (gid, state, participants, decided_at_ms) VALUES (?1, 'committed', ?2, ?3)",
            rusqlite::params![gid, participants.join(","), Utc::now().timestamp_millis()],
        );
        match inserted {
            Ok(1) if began_at_ms <= self.shared.decisions_fenced_ms.load(Ordering::SeqCst) => {
                self.end(false)?;
                Err(DbError::new(
                    "40001",
                    format!(
                        "could not commit distributed transaction {gid}: it began before an \
                         abort record this node has since deleted, so it may not decide"
                    ),
                ))
            }
            Ok(1) => self.finish(true, Some(gid)),
            Ok(_) => {
                self.end(false)?;
                Err(DbError::new(
                    "40001",
                    format!(
                        "could not commit distributed transaction {gid}: recovery already \
                         aborted it"
                    ),
                ))
            }
            Err(e) => {
                let error = sqlite(e);
                self.end(false)?;
                Err(error)
            }
        }
    }

    /// The recorded outcome of `gid`; with no record, records the abort so the deciding
    /// transaction can never commit afterwards. Busy (the decider's transaction still
    /// holds the write lock) means it is still running.
    fn outcome(&mut self, gid: &str) -> Result<TxnOutcome, DbError> {
        let sqlite = |e: rusqlite::Error| from_sqlite(&e, ErrorContext::default());
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            return match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy) => Ok(TxnOutcome::Pending),
                _ => Err(sqlite(e)),
            };
        }
        let result = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO __mycelium_txn_records \
                 (gid, state, participants, decided_at_ms) VALUES (?1, 'aborted', '', ?2)",
                rusqlite::params![gid, Utc::now().timestamp_millis()],
            )
            .and_then(|_| {
                self.conn
                    .query_row(
                        "SELECT state FROM __mycelium_txn_records WHERE gid = ?1",
                        [gid],
                        |row| row.get::<_, String>(0),
                    )
                    .optional()
            });
        match result {
            Ok(state) => {
                self.conn.execute_batch("COMMIT").map_err(sqlite)?;
                Ok(match state.as_deref() {
                    Some("committed") | Some("applied") => TxnOutcome::Committed,
                    _ => TxnOutcome::Aborted,
                })
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(sqlite(e))
            }
        }
    }

    /// Opens a transaction holding a prepared transaction's changes again, after a restart.
    fn reestablish(&mut self, redo: &Redo) -> Result<(), DbError> {
        let sqlite = |e: rusqlite::Error| from_sqlite(&e, ErrorContext::default());
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(sqlite)?;
        let applied = (|| {
            // As when it first ran: a table rebuild must not cascade to referencing rows.
            self.without_foreign_keys(|| {
                for statement in &redo.ddl {
                    crate::replication::replay_ddl(self.conn, statement)?;
                }
                Ok(())
            })?;
            let mut input: &[u8] = &redo.changeset;
            // The database is as it was when the transaction was prepared (it held the
            // write lock until the crash), so any conflict means the redo record is wrong.
            self.conn
                .apply_strm(
                    &mut input,
                    None::<fn(&str) -> bool>,
                    |_: ConflictType, _| ConflictAction::SQLITE_CHANGESET_ABORT,
                )
                .map_err(sqlite)
        })();
        if let Err(e) = applied {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        if self.replicating() {
            self.held = Some(Held {
                changeset: redo.changeset.clone(),
                ddl: redo.ddl.clone(),
            });
        }
        if !redo.ddl.is_empty() {
            let id = self.shared.private_ids.fetch_add(1, Ordering::Relaxed);
            let schema = Arc::new(catalog::load(self.conn, id).map_err(sqlite)?);
            self.use_schema(schema)?;
            self.private_schema = true;
        }
        Ok(())
    }

    /// Publishes a schema change once it is committed (or rolled back).
    fn schema_changed_committed(&mut self) {
        self.private_schema = false;
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn current_schema(&mut self) -> Result<Arc<Schema>, DbError> {
        if self.private_schema {
            return Ok(self.schema.clone());
        }
        let generation = self.shared.generation.load(Ordering::Acquire);
        if self.schema.id == generation {
            return Ok(self.schema.clone());
        }
        let published = self.shared.schema.read().map(|s| s.clone()).ok();
        let schema = match published {
            Some(s) if s.id == generation => s,
            _ => {
                let s = Arc::new(
                    catalog::load(self.conn, generation)
                        .map_err(|e| from_sqlite(&e, ErrorContext::default()))?,
                );
                // Only a committed view may be shared with other workers.
                if self.conn.is_autocommit()
                    && let Ok(mut slot) = self.shared.schema.write()
                {
                    *slot = s.clone();
                }
                s
            }
        };
        // Another worker changed the schema. This connection's SQLite keeps the old one, and
        // the statements it compiled against it, until it next reads the database: describing
        // a statement now would report the old columns (a prepared `SELECT *` lost the column
        // just added).
        self.conn.flush_prepared_statement_cache();
        if self.conn.is_autocommit() {
            self.conn
                .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
                .map_err(|e| from_sqlite(&e, ErrorContext::default()))?;
        }
        self.use_schema(schema.clone())?;
        Ok(schema)
    }

    /// Switches to `schema`, starting the sequences of serial columns it introduces.
    fn use_schema(&mut self, schema: Arc<Schema>) -> Result<(), DbError> {
        for table in schema.tables.values() {
            for col in &table.columns {
                let Some(sequence) = col
                    .default_pg
                    .as_deref()
                    .and_then(|d| d.strip_prefix("nextval('"))
                    .and_then(|d| d.split('\'').next())
                else {
                    continue;
                };
                let known = self
                    .shared
                    .sequences
                    .lock()
                    .map(|m| m.contains_key(sequence))
                    .unwrap_or(true);
                if known || table.primary_key == [col.name.clone()] {
                    continue;
                }
                let max: i64 = self
                    .conn
                    .query_row(
                        &format!(
                            "SELECT coalesce(max({}), 0) FROM {}",
                            quote_ident(&col.name),
                            quote_ident(&table.name)
                        ),
                        [],
                        |row| row.get(0),
                    )
                    .map_err(|e| from_sqlite(&e, ErrorContext::default()))?;
                if let Ok(mut map) = self.shared.sequences.lock() {
                    let entry = map.entry(sequence.to_owned()).or_insert(max);
                    *entry = (*entry).max(max);
                }
            }
        }
        self.schema = schema.clone();
        self.functions.set_schema(schema);
        Ok(())
    }

    /// Switches foreign-key enforcement when `wanted` differs from the connection's, outside
    /// a transaction only (inside one SQLite ignores the pragma, and the transaction's first
    /// job set it already).
    fn set_foreign_keys(&mut self, wanted: ForeignKeys) {
        let off = match wanted {
            ForeignKeys::Enforced => false,
            ForeignKeys::Off => true,
            ForeignKeys::Either => return,
        };
        if self.foreign_keys_off.load(Ordering::Acquire) == off || !self.conn.is_autocommit() {
            return;
        }
        match self
            .conn
            .pragma_update(None, "foreign_keys", if off { "OFF" } else { "ON" })
        {
            Ok(()) => self.foreign_keys_off.store(off, Ordering::Release),
            Err(e) => {
                tracing::warn!(worker = self.index, error = %e, off, "cannot switch foreign keys")
            }
        }
    }

    /// The translation of `sql` with its integer literals as parameters ([`rewrite::lift`]),
    /// and their values; `None` when it has none to lift, or its shape does not translate as
    /// it does (then it runs as it is). The first text of each shape is translated both ways
    /// and the shape kept only when the two agree on everything but the parameters.
    fn lifted_translation(&mut self, sql: &str) -> Result<Option<LiftedTranslation>, DbError> {
        let Some(lifted) = rewrite::lift::integer_literals(sql) else {
            return Ok(None);
        };
        let schema = self.current_schema()?;
        let zone = types::session_time_zone();
        let cache = &self.shared.cache;
        if let Some(t) = cache.get(&lifted.sql, &lifted.param_types, schema.id, zone) {
            return Ok(Some((t, lifted.values)));
        }
        if cache.unliftable(&lifted.sql) {
            return Ok(None);
        }
        let original = self.translation(sql, &[])?;
        let shape = self.translate_new(&lifted.sql, &lifted.param_types, &schema);
        match shape {
            Ok(shape) if lifts_cleanly(&original, &shape, lifted.values.len()) => {
                let shape = Arc::new(shape);
                self.shared.cache.insert(
                    &lifted.sql,
                    &lifted.param_types,
                    schema.id,
                    zone,
                    shape.clone(),
                );
                Ok(Some((shape, lifted.values)))
            }
            _ => {
                self.shared.cache.refuse_lifting(&lifted.sql);
                Ok(None)
            }
        }
    }

    fn translation(&mut self, sql: &str, param_types: &[u32]) -> Result<Arc<Translation>, DbError> {
        let schema = self.current_schema()?;
        let zone = types::session_time_zone();
        if let Some(t) = self.shared.cache.get(sql, param_types, schema.id, zone) {
            return Ok(t);
        }
        let t = Arc::new(self.translate_new(sql, param_types, &schema)?);
        if !t.ddl {
            self.shared
                .cache
                .insert(sql, param_types, schema.id, zone, t.clone());
        }
        Ok(t)
    }

    /// Translates `sql` without the cache, prepared once on SQLite so that its errors come
    /// now and its result shape is SQLite's.
    fn translate_new(
        &self,
        sql: &str,
        param_types: &[u32],
        schema: &Schema,
    ) -> Result<Translation, DbError> {
        let mut t = rewrite::translate(sql, param_types, schema)?;
        if t.pre.is_empty()
            && t.explain.is_none()
            && let Some(main) = &t.main
        {
            // Preparing now reports SQLite's errors at Describe time, as Postgres would,
            // and catches result shapes inference got wrong.
            let stmt = self
                .conn
                .prepare_cached(main)
                .map_err(|e| self.map_error(&e, t.table.as_deref()))?;
            let count = stmt.column_count();
            let decls: Vec<Option<String>> = stmt
                .columns()
                .map(|c| c.decl_type().map(str::to_owned))
                .collect();
            if count != t.out.len() && (count > 0 || t.kind == Kind::Select) {
                let out: Vec<OutColumn> = (0..count)
                    .map(|i| {
                        let name = stmt.column_name(i).unwrap_or("?column?").to_owned();
                        let ty = decls
                            .get(i)
                            .and_then(|d| d.as_deref().and_then(PgType::parse_sql_name))
                            .map(|(ty, typmod)| catalog::Ty { ty, typmod })
                            .unwrap_or(catalog::Ty::of(PgType::Text));
                        OutColumn::expr(name, ty)
                    })
                    .collect();
                t = t.with_out(out);
            }
        }
        Ok(t)
    }

    fn map_error(&self, e: &rusqlite::Error, table: Option<&str>) -> DbError {
        self.map_statement_error(e, table, None)
    }

    /// Maps an error of a statement; a unique violation of an INSERT or UPDATE with a probe
    /// names the conflicting key's values, as Postgres does.
    fn map_statement_error(
        &self,
        e: &rusqlite::Error,
        table: Option<&str>,
        probe: Option<(&ConflictProbe, &[SqlValue])>,
    ) -> DbError {
        let mut err = from_sqlite(e, ErrorContext { table });
        if err.code == "23505"
            && let Some(detail) = err.detail.take()
        {
            // "t.a, t.b" → the Postgres name of the unique constraint on (a, b).
            let mut table_name = table.unwrap_or("").to_owned();
            let columns: Vec<&str> = detail
                .split(", ")
                .map(|q| match q.split_once('.') {
                    Some((t, c)) => {
                        table_name = t.to_owned();
                        c
                    }
                    None => q,
                })
                .collect();
            let info = self.schema.table(&table_name);
            let name = match info {
                Some(info) => info.unique_constraint_name(&columns),
                None => format!("{table_name}_{}_key", columns.join("_")),
            };
            err.message = format!("duplicate key value violates unique constraint \"{name}\"");
            let values = match (info, probe) {
                (Some(info), Some((probe, params))) => {
                    self.conflicting_key(info, &columns, probe, params)
                }
                _ => None,
            };
            err.detail = Some(match values {
                Some(values) => format!("Key ({})=({values}) already exists.", columns.join(", ")),
                None => format!("Key ({}) already exists.", columns.join(", ")),
            });
        }
        err
    }

    /// Runs a conflict probe: the first new key (in statement order) that an existing row or
    /// an earlier new row already has, as Postgres prints it (`5`, `a@b.c, 2`).
    fn conflicting_key(
        &self,
        table: &catalog::TableInfo,
        columns: &[&str],
        probe: &ConflictProbe,
        params: &[SqlValue],
    ) -> Option<String> {
        /// Rows a probe reads at most: the diagnosis must stay cheap next to the statement.
        const MAX_PROBED_ROWS: usize = 100_000;
        let positions: Vec<usize> = columns
            .iter()
            .map(|c| probe.columns.iter().position(|p| p.eq_ignore_ascii_case(c)))
            .collect::<Option<_>>()?;
        let key_columns: Vec<&catalog::ColumnInfo> = columns
            .iter()
            .map(|c| table.column(c))
            .collect::<Option<_>>()?;
        let width = probe.columns.len();
        let mut stmt = self.conn.prepare(&probe.sql).ok()?;
        for (i, value) in params.iter().enumerate() {
            if i < stmt.parameter_count() {
                stmt.raw_bind_parameter(i + 1, Bind(value)).ok()?;
            }
        }
        let condition: Vec<String> = key_columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = ?{}", quote_ident(&c.name), i + 1))
            .collect();
        let mut exists = self
            .conn
            .prepare(&format!(
                "SELECT 1 FROM {} WHERE {} LIMIT 1",
                quote_ident(&table.name),
                condition.join(" AND ")
            ))
            .ok()?;
        let mut seen = std::collections::HashSet::new();
        let mut rows = stmt.raw_query();
        for _ in 0..MAX_PROBED_ROWS {
            let row = rows.next().ok()??;
            let key: Vec<SqlValue> = positions
                .iter()
                .map(|&p| row.get_ref(p).map(|v| storage_ref(v).into_owned()))
                .collect::<Result<_, _>>()
                .ok()?;
            // NULLs never conflict.
            if key.contains(&SqlValue::Null) {
                continue;
            }
            if probe.with_old {
                let old: Vec<SqlValue> = positions
                    .iter()
                    .map(|&p| row.get_ref(p + width).map(|v| storage_ref(v).into_owned()))
                    .collect::<Result<_, _>>()
                    .ok()?;
                if old == key {
                    // A row keeping its key is not the one that conflicts.
                    continue;
                }
            }
            let fingerprint = format!("{key:?}");
            let conflict = !seen.insert(fingerprint)
                || exists
                    .exists(rusqlite::params_from_iter(key.iter().map(Bind)))
                    .ok()?;
            if conflict {
                let shown: Vec<String> = key
                    .iter()
                    .zip(&key_columns)
                    .map(|(v, c)| {
                        let mut out = BytesMut::new();
                        match types::encode_text(c.ty.ty, c.ty.typmod, v.as_ref(), &mut out) {
                            Ok(()) => String::from_utf8_lossy(&out).into_owned(),
                            Err(_) => format!("{v:?}"),
                        }
                    })
                    .collect();
                return Some(shown.join(", "));
            }
        }
        None
    }

    fn describe(
        &mut self,
        sql: &str,
        param_types: &[u32],
    ) -> Result<StatementDescription, DbError> {
        let t = self.translation(sql, param_types)?;
        Ok(StatementDescription {
            params: t.params.iter().map(|p| p.type_oid()).collect(),
            columns: t.columns.to_vec(),
        })
    }

    /// Starts the open transaction over before a statement, when it may (see `only_read`):
    /// before a READ COMMITTED transaction's every statement until it writes, so each sees
    /// what committed before it, as in Postgres; and before the first write of any other
    /// that has read only Mycelium's bookkeeping (the proxy's policy, owner and role checks).
    /// A deferred SQLite transaction cannot take the write lock once another connection
    /// committed after its snapshot (SQLITE_BUSY, 40001), which replication's applies make
    /// routine. A REPEATABLE READ or SERIALIZABLE transaction that read a client table keeps
    /// its snapshot: it fails with 40001 rather than write from data that changed.
    fn start_over_from_fresh_snapshot(&mut self, txn: Option<&SharedTxn>) -> Result<(), DbError> {
        if txn.is_none() || self.conn.is_autocommit() || !self.only_read {
            return Ok(());
        }
        self.capture = None;
        self.conn
            .execute_batch("ROLLBACK")
            .map_err(|e| from_sqlite(&e, ErrorContext::default()))
    }

    /// Whether `sql` names a table of the client's schema (any word that is one counts, so
    /// it errs towards yes; the emulated `pg_catalog` and `__mycelium_*` tables do not).
    fn reads_client_tables(&self, sql: &str) -> bool {
        sql.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|word| !word.is_empty() && !word.starts_with("__mycelium"))
            .any(|word| {
                self.schema.tables.contains_key(word)
                    || self.schema.tables.contains_key(&word.to_ascii_lowercase())
            })
    }

    fn begin_if_needed(&mut self, txn: Option<&SharedTxn>, writes: bool) -> Result<(), DbError> {
        if writes || read_committed(txn) {
            self.start_over_from_fresh_snapshot(txn)?;
        }
        if let Some(txn) = txn {
            if self.conn.is_autocommit() {
                self.only_read = !writes;
                let sql = if writes {
                    "BEGIN IMMEDIATE"
                } else {
                    "BEGIN DEFERRED"
                };
                self.conn
                    .execute_batch(sql)
                    .map_err(|e| from_sqlite(&e, ErrorContext::default()))?;
                if writes {
                    self.holds_write_lock();
                }
                self.capture = Some(self.start_capture()?);
            } else if writes {
                self.only_read = false;
            }
            let started = txn
                .lock()
                .map(|s| s.started_at)
                .unwrap_or_else(|_| Utc::now());
            self.functions.set_now(started);
        } else {
            self.functions.set_now(Utc::now());
        }
        Ok(())
    }

    /// Tells the other workers, waiting for the write lock, whose transaction holds it.
    fn holds_write_lock(&self) {
        self.shared
            .write_lock
            .acquired(self.index, lock_wait::current_order());
    }

    /// After a statement of transaction `order`: a transaction that began reading and took the
    /// write lock inside the statement (repeatable read, a savepoint) is now known to hold it.
    fn note_write_lock(&self, order: Option<LockOrder>) {
        if matches!(
            self.conn.transaction_state(Some("main")),
            Ok(rusqlite::TransactionState::Write)
        ) {
            self.shared.write_lock.acquired(self.index, order);
        }
    }

    fn savepoint(&mut self, sql: &str, txn: Option<&SharedTxn>) -> Result<String, DbError> {
        let words: Vec<String> = sql
            .split(|c: char| c.is_whitespace() || c == ';')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect();
        let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        let name = words.last().cloned().unwrap_or_default();
        let name = if name.starts_with('"') {
            name
        } else {
            quote_ident(&name.to_ascii_lowercase())
        };
        let failed = txn
            .and_then(|t| t.lock().ok().map(|s| s.failed))
            .unwrap_or(false);
        let (sql, tag, clears) = match upper.first().map(String::as_str) {
            Some("SAVEPOINT") => (format!("SAVEPOINT {name}"), "SAVEPOINT", false),
            Some("RELEASE") => (format!("RELEASE SAVEPOINT {name}"), "RELEASE", false),
            _ => (format!("ROLLBACK TO SAVEPOINT {name}"), "ROLLBACK", true),
        };
        if failed && !clears {
            return Err(aborted_error());
        }
        self.begin_if_needed(txn, false)?;
        self.only_read = false;
        self.conn.execute_batch(&sql).map_err(|e| {
            let err = from_sqlite(&e, ErrorContext::default());
            if err.message.starts_with("no such savepoint") {
                DbError::new(
                    "3B001",
                    format!("savepoint \"{}\" does not exist", name.trim_matches('"')),
                )
            } else {
                err
            }
        })?;
        if clears
            && let Some(txn) = txn
            && let Ok(mut state) = txn.lock()
        {
            state.failed = false;
        }
        Ok(tag.to_owned())
    }

    fn execute(
        &mut self,
        request: &Execute,
        txn: Option<&SharedTxn>,
        replies: &mpsc::Sender<Result<Reply, DbError>>,
    ) -> Result<(), DbError> {
        let first = request
            .sql
            .trim_start()
            .get(..9)
            .unwrap_or("")
            .to_ascii_uppercase();
        if first.starts_with("SAVEPOINT")
            || first.starts_with("RELEASE")
            || first.starts_with("ROLLBACK")
        {
            let tag = self.savepoint(&request.sql, txn)?;
            let _ = replies.blocking_send(Ok(Reply::Complete { tag }));
            return Ok(());
        }
        let lifted = if request.params.is_empty() && request.param_types.is_empty() {
            self.lifted_translation(&request.sql)?
        } else {
            None
        };
        let (t, literals) = match lifted {
            Some((t, values)) => (t, values),
            None => (
                self.translation(&request.sql, &request.param_types)?,
                Vec::new(),
            ),
        };
        if request.params.len() + literals.len() != t.params.len() {
            return Err(DbError::new(
                "08P01",
                format!(
                    "bind message supplies {} parameters, but prepared statement \"\" requires {}",
                    request.params.len(),
                    t.params.len()
                ),
            ));
        }
        let mut params = Vec::with_capacity(t.params.len());
        for (i, (value, ty)) in request.params.iter().zip(&t.params).enumerate() {
            params.push(match value {
                None => SqlValue::Null,
                Some(bytes) => {
                    let format = request
                        .param_formats
                        .get(i)
                        .copied()
                        .unwrap_or(Format::Text);
                    match ty.array_type() {
                        Some(array) => crate::functions::array::decode_param(array, format, bytes)?,
                        None if ty.is_interval() => {
                            crate::functions::time::decode_interval_param(format, bytes)?
                        }
                        None => types::decode_param(ty.ty, format, bytes)?,
                    }
                }
            });
        }
        params.extend(literals.into_iter().map(SqlValue::Int));
        if t.no_transaction_block && txn.is_some() {
            return Err(DbError::new(
                "25001",
                format!("{} cannot run inside a transaction block", t.kind.tag(0)),
            ));
        }
        self.begin_if_needed(txn, t.writes)?;
        if !t.writes
            && self.only_read
            && !read_committed(txn)
            && self.reads_client_tables(&request.sql)
        {
            self.only_read = false;
        }
        let statements = t.pre.len() + usize::from(t.main.is_some());
        // With replication on, every write runs in a transaction whose changes are captured.
        let captured_write = t.writes && !t.no_transaction_block && self.replicating();
        let implicit = txn.is_none() && (statements > 1 || t.ddl || captured_write);
        if implicit {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| from_sqlite(&e, ErrorContext::default()))?;
            if self.replicating() {
                self.capture = Some(self.start_capture()?);
            }
        }
        if t.catalog && self.catalog_filled != Some(self.schema.id) {
            crate::pg_catalog::fill(self.conn, &self.schema)
                .map_err(|e| from_sqlite(&e, ErrorContext::default()))?;
            // A fill inside a transaction is undone by its rollback: only trust it outside.
            self.catalog_filled = self.conn.is_autocommit().then_some(self.schema.id);
        }
        let count = self.run_statements(&t, &params, request, replies)?;
        if t.ddl
            && let Some(capture) = self.capture.as_mut()
        {
            match &t.replicated {
                Some(statement) => capture.ddl.push(statement.clone()),
                None => {
                    capture.ddl.extend(t.pre.iter().cloned());
                    capture.ddl.extend(t.main.iter().cloned());
                }
            }
        }
        if t.ddl && txn.is_some() {
            // Later statements of this transaction must see its own DDL; other
            // sessions see it when it commits.
            let id = self.shared.private_ids.fetch_add(1, Ordering::Relaxed);
            let schema = Arc::new(
                catalog::load(self.conn, id)
                    .map_err(|e| from_sqlite(&e, ErrorContext::default()))?,
            );
            self.use_schema(schema)?;
            self.private_schema = true;
        }
        if implicit {
            self.commit(None)?;
        }
        if t.ddl && txn.is_none() {
            self.schema_changed_committed();
        }
        let _ = replies.blocking_send(Ok(Reply::Complete {
            tag: t.kind.tag(count),
        }));
        Ok(())
    }

    fn run_pre(&self, t: &Translation) -> Result<(), DbError> {
        for sql in t.checks.iter().chain(&t.pre) {
            self.conn
                .execute_batch(sql)
                .map_err(|e| self.map_error(&e, t.table.as_deref()))?;
        }
        Ok(())
    }

    /// Runs `f` with foreign keys unenforced, inside the open transaction (where `PRAGMA
    /// foreign_keys` is a no-op), for a table rebuild: dropping the old table must not
    /// delete the rows referencing it. Also ends the rebuild's legacy rename mode, which a
    /// rebuild interrupted half way would leave on.
    fn without_foreign_keys(&self, f: impl FnOnce() -> Result<(), DbError>) -> Result<(), DbError> {
        let sqlite = |e: rusqlite::Error| from_sqlite(&e, ErrorContext::default());
        self.conn
            .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_FKEY, false)
            .map_err(sqlite)?;
        let result = f();
        let restored = self
            .conn
            .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_FKEY, true)
            .and_then(|_| self.conn.pragma_update(None, "legacy_alter_table", false))
            .map_err(sqlite);
        result.and(restored)
    }

    /// Runs the translated statements; returns the row or change count for the tag.
    fn run_statements(
        &self,
        t: &Translation,
        params: &[SqlValue],
        request: &Execute,
        replies: &mpsc::Sender<Result<Reply, DbError>>,
    ) -> Result<u64, DbError> {
        let table = t.table.as_deref();
        if t.rebuild {
            self.without_foreign_keys(|| self.run_pre(t))?;
        } else {
            self.run_pre(t)?;
        }
        let Some(main) = &t.main else {
            return Ok(0);
        };
        if let Some(explain) = t.explain {
            return self.run_explain(t, explain, main, params, replies);
        }
        let mut stmt = self.prepare_bound(main, params, table)?;
        let probe = t.probe.as_ref().map(|p| (p, params));
        if t.out.is_empty() {
            let changes = stmt
                .raw_execute()
                .map_err(|e| self.map_statement_error(&e, table, probe))?;
            return Ok(changes as u64);
        }
        if replies
            .blocking_send(Ok(Reply::Columns(t.columns.clone())))
            .is_err()
        {
            return Err(cancelled());
        }
        let formats: Vec<Format> = (0..t.out.len()).map(|i| request.result_format(i)).collect();
        let mut rows = stmt.raw_query();
        let mut builder = DataRowsBuilder::with_capacity(BATCH_BYTES);
        let mut scratch = BytesMut::with_capacity(256);
        let mut count = 0u64;
        let width = t.out.len();
        while let Some(row) = rows
            .next()
            .map_err(|e| self.map_statement_error(&e, table, probe))?
        {
            builder.begin_row();
            for (i, col) in t.out.iter().enumerate().take(width) {
                let value = row.get_ref(i).map_err(|e| internal(e.to_string()))?;
                let value = storage_ref(value);
                if value == SqlValueRef::Null {
                    builder.push_null();
                    continue;
                }
                scratch.clear();
                encode_value(col.ty.ty, col.ty.typmod, formats[i], value, &mut scratch)?;
                builder.push_value(&scratch);
            }
            builder.end_row();
            count += 1;
            if builder.byte_len() >= BATCH_BYTES || builder.row_count() >= BATCH_ROWS {
                if replies
                    .blocking_send(Ok(Reply::Rows(builder.take())))
                    .is_err()
                {
                    return Err(cancelled());
                }
                builder = DataRowsBuilder::with_capacity(BATCH_BYTES);
            }
        }
        if builder.row_count() > 0
            && replies
                .blocking_send(Ok(Reply::Rows(builder.take())))
                .is_err()
        {
            return Err(cancelled());
        }
        Ok(count)
    }

    /// A cached statement with `params` bound.
    fn prepare_bound(
        &self,
        sql: &str,
        params: &[SqlValue],
        table: Option<&str>,
    ) -> Result<rusqlite::CachedStatement<'c>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| self.map_error(&e, table))?;
        for (i, value) in params.iter().enumerate() {
            if i < stmt.parameter_count() {
                stmt.raw_bind_parameter(i + 1, Bind(value))
                    .map_err(|e| self.map_error(&e, table))?;
            }
        }
        Ok(stmt)
    }

    /// `EXPLAIN [ANALYZE]`: SQLite's plan of `main` as the lines of one text column; with
    /// `ANALYZE` the statement also runs (its rows are counted, not sent) and the lines end
    /// with the count and the time it took.
    fn run_explain(
        &self,
        t: &Translation,
        explain: Explain,
        main: &str,
        params: &[SqlValue],
        replies: &mpsc::Sender<Result<Reply, DbError>>,
    ) -> Result<u64, DbError> {
        let table = t.table.as_deref();
        let sqlite = |e: rusqlite::Error| self.map_error(&e, table);
        let mut steps = Vec::new();
        {
            let mut plan =
                self.prepare_bound(&format!("EXPLAIN QUERY PLAN {main}"), params, table)?;
            let mut rows = plan.raw_query();
            while let Some(row) = rows.next().map_err(sqlite)? {
                steps.push((
                    row.get::<_, i64>(0).map_err(sqlite)?,
                    row.get::<_, i64>(1).map_err(sqlite)?,
                    row.get::<_, String>(3).map_err(sqlite)?,
                ));
            }
        }
        let mut lines = rewrite::plan_lines(&steps);
        if explain.analyze {
            let started = Instant::now();
            let probe = t.probe.as_ref().map(|p| (p, params));
            let mut stmt = self.prepare_bound(main, params, table)?;
            let count = if explain.returns_rows {
                let mut rows = stmt.raw_query();
                let mut count = 0u64;
                while rows
                    .next()
                    .map_err(|e| self.map_statement_error(&e, table, probe))?
                    .is_some()
                {
                    count += 1;
                }
                count
            } else {
                stmt.raw_execute()
                    .map_err(|e| self.map_statement_error(&e, table, probe))? as u64
            };
            lines.push(format!("Actual Rows: {count}"));
            lines.push(format!(
                "Execution Time: {:.3} ms",
                started.elapsed().as_secs_f64() * 1000.0
            ));
        }
        if replies
            .blocking_send(Ok(Reply::Columns(t.columns.clone())))
            .is_err()
        {
            return Err(cancelled());
        }
        let mut builder = DataRowsBuilder::with_capacity(BATCH_BYTES);
        for line in &lines {
            builder.begin_row();
            builder.push_value(line.as_bytes());
            builder.end_row();
        }
        if replies
            .blocking_send(Ok(Reply::Rows(builder.take())))
            .is_err()
        {
            return Err(cancelled());
        }
        Ok(lines.len() as u64)
    }

    fn copy_in(&mut self, batch: &CopyIn, txn: Option<&SharedTxn>) -> Result<u64, DbError> {
        let schema = self.current_schema()?;
        let name = batch.table.strip_prefix("public.").unwrap_or(&batch.table);
        let name = name.trim_matches('"');
        let table = schema
            .table(name)
            .ok_or_else(|| DbError::new("42P01", format!("relation \"{name}\" does not exist")))?
            .clone();
        let columns: Vec<&catalog::ColumnInfo> = if batch.columns.is_empty() {
            table.columns.iter().collect()
        } else {
            batch
                .columns
                .iter()
                .map(|c| {
                    table.column(c).ok_or_else(|| {
                        DbError::new(
                            "42703",
                            format!("column \"{c}\" of relation \"{name}\" does not exist"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote_ident(&table.name),
            columns
                .iter()
                .map(|c| quote_ident(&c.name))
                .collect::<Vec<_>>()
                .join(", "),
            (1..=columns.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.begin_if_needed(txn, true)?;
        let implicit = txn.is_none();
        if implicit {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| from_sqlite(&e, ErrorContext::default()))?;
            if self.replicating() {
                self.capture = Some(self.start_capture()?);
            }
        }
        let table_name = Some(table.name.as_str());
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(|e| self.map_error(&e, table_name))?;
        let mut values = Vec::with_capacity(columns.len());
        for (line, row) in batch.rows.iter().enumerate() {
            if row.len() != columns.len() {
                let message = if row.len() < columns.len() {
                    format!("missing data for column \"{}\"", columns[row.len()].name)
                } else {
                    "extra data after last expected column".to_owned()
                };
                return Err(DbError::new("22P04", message)
                    .with_detail(format!("COPY {name}, line {}", line + 1)));
            }
            values.clear();
            for (field, col) in row.iter().zip(&columns) {
                values.push(match field {
                    None => SqlValue::Null,
                    Some(text) => types::parse_text(col.ty.ty, col.ty.typmod, text)?,
                });
            }
            for (i, value) in values.iter().enumerate() {
                stmt.raw_bind_parameter(i + 1, Bind(value))
                    .map_err(|e| self.map_error(&e, table_name))?;
            }
            stmt.raw_execute()
                .map_err(|e| self.map_error(&e, table_name))?;
        }
        drop(stmt);
        if implicit {
            self.commit(None)?;
        }
        Ok(batch.rows.len() as u64)
    }
}

fn cancelled() -> DbError {
    DbError::new("57014", "canceling statement due to user request")
}

/// Encodes a stored value as the column's Postgres type. SQLite's dynamic typing can hand
/// back another storage class than the type implies (an integer from an untyped
/// expression); such values are converted through their text form first.
fn encode_value(
    ty: PgType,
    typmod: i32,
    format: Format,
    value: SqlValueRef<'_>,
    out: &mut BytesMut,
) -> Result<(), DbError> {
    // Arrays are stored as their text form; the binary form is built from it.
    if matches!(format, Format::Binary)
        && let Some(array) = (catalog::Ty { ty, typmod }).array_type()
    {
        return crate::functions::array::encode_binary(array, value, out);
    }
    if matches!(format, Format::Text)
        && let Some(array) = (catalog::Ty { ty, typmod }).array_type()
        && array.elem == PgType::Timestamptz
        && let SqlValueRef::Text(stored) = value
    {
        let text = crate::functions::array::output_text(array, stored)?;
        out.extend_from_slice(text.as_bytes());
        return Ok(());
    }
    if matches!(format, Format::Binary) && (catalog::Ty { ty, typmod }).is_interval() {
        return crate::functions::time::encode_interval_binary(value, out);
    }
    let encode = |v: SqlValueRef<'_>, out: &mut BytesMut| match format {
        Format::Text => types::encode_text(ty, typmod, v, out),
        Format::Binary => types::encode_binary(ty, typmod, v, out),
    };
    let start = out.len();
    match encode(value, out) {
        Ok(()) => Ok(()),
        Err(first) => {
            out.truncate(start);
            let text = match value {
                SqlValueRef::Int(i) => i.to_string(),
                SqlValueRef::Float(f) => {
                    let mut buf = BytesMut::new();
                    types::encode_text(PgType::Float8, -1, value, &mut buf)?;
                    if matches!(ty, PgType::Int2 | PgType::Int4 | PgType::Int8) && f.fract() == 0.0
                    {
                        format!("{}", f as i64)
                    } else {
                        String::from_utf8_lossy(&buf).into_owned()
                    }
                }
                SqlValueRef::Text(s) => s.to_owned(),
                SqlValueRef::Bytes(_) | SqlValueRef::Null => return Err(first),
            };
            let converted = types::parse_text(ty, -1, &text).map_err(|_| first.clone())?;
            encode(converted.as_ref(), out).map_err(|_| first)
        }
    }
}

/// Whether `txn` is open and runs READ COMMITTED.
fn read_committed(txn: Option<&SharedTxn>) -> bool {
    txn.and_then(|t| t.lock().ok().map(|s| s.read_committed))
        .unwrap_or(false)
}
