//! The SQLite backend: a pool of worker threads, each owning one connection, and the
//! sessions that send statements to them.
//!
//! Tokio tasks never touch SQLite. A session sends a job over a channel to a worker thread
//! and awaits the answer (or, for `execute`, returns the reply stream at once). An autocommit
//! statement borrows the idle worker freed last for its duration; an explicit transaction pins one
//! worker from its first statement until COMMIT/ROLLBACK, because SQLite transactions are
//! per connection.

mod lock_wait;
mod records;
mod redo;
mod worker;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mycelium_protocol::types::ZoneSetting;
use mycelium_protocol::{
    CopyIn, DbError, Execute, LockOrder, NodeSession, PreparedTxn, Reply, ReplyStream,
    StatementDescription, TxnOutcome, TxnRecord,
};
use tokio::sync::{mpsc, oneshot};

use crate::catalog::Schema;
use crate::errors::StorageError;
use crate::functions::shard::ShardFunction;
use crate::replication::{ReplicationIdentity, SqliteShardLog};
use crate::rewrite::TranslationCache;
pub(crate) use worker::WorkerTask;
use worker::{Job, Worker};

/// Tuning for [`SqliteBackend::open`].
#[derive(Clone)]
pub struct SqliteOptions {
    /// Worker threads started at open, each with its own connection. An open transaction
    /// holds a worker from its first statement to its end.
    pub workers: usize,
    /// How many workers the pool may grow to when every one is held: a statement that finds
    /// none free starts another, rather than wait for a transaction that may be waiting for
    /// this statement's own transaction on another node.
    pub max_workers: usize,
    /// How long a writer waits for SQLite's write lock before failing with 40001.
    pub busy_timeout: Duration,
    /// `PRAGMA synchronous = FULL` (durable at every commit) rather than NORMAL.
    pub synchronous_full: bool,
    /// Registered as `__mycelium_shard` on every connection; `None` leaves it undefined.
    pub shard_function: Option<ShardFunction>,
}

impl Default for SqliteOptions {
    fn default() -> SqliteOptions {
        SqliteOptions {
            workers: 4,
            max_workers: 128,
            busy_timeout: Duration::from_secs(10),
            synchronous_full: true,
            shard_function: None,
        }
    }
}

impl std::fmt::Debug for SqliteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteOptions")
            .field("workers", &self.workers)
            .field("max_workers", &self.max_workers)
            .field("busy_timeout", &self.busy_timeout)
            .field("synchronous_full", &self.synchronous_full)
            .field("shard_function", &self.shard_function.is_some())
            .finish()
    }
}

/// State shared by all workers: the schema snapshot and the translation cache.
pub(crate) struct Shared {
    /// Bumped after every committed schema change.
    pub generation: AtomicU64,
    pub schema: RwLock<Arc<Schema>>,
    pub cache: TranslationCache,
    /// Ids for schemas private to one transaction (its own uncommitted DDL).
    pub private_ids: AtomicU64,
    pub sequences: crate::functions::Sequences,
    /// Durable votes of prepared transactions.
    pub redo: redo::RedoStore,
    /// Set when writes are captured into the WAL (`SqliteBackend::open_replicated`).
    pub replication: Option<ReplicationIdentity>,
    /// A deciding transaction that began at or before this (ms since the Unix epoch) may not
    /// commit its decision: an `aborted` record written after it began may have been deleted
    /// (see [`crate::Backend::delete_txn_records`]). In memory only: a restart ends every
    /// transaction that began before it.
    pub decisions_fenced_ms: AtomicI64,
    /// Which worker's transaction holds SQLite's write lock, for the others waiting for it.
    pub write_lock: Arc<lock_wait::WriteLock>,
}

/// A prepared transaction: the worker holding it open (none when it changed nothing).
struct PreparedSlot {
    lease: Option<Lease>,
    decider: String,
    prepared_at_ms: i64,
}

struct Slot {
    jobs: std::sync::mpsc::Sender<Job>,
    interrupt: rusqlite::InterruptHandle,
    /// Id of the job the worker is running (0: none); guards interrupts against hitting
    /// the next job.
    current: Arc<Mutex<u64>>,
    /// The worker's connection enforces no foreign keys now (it last applied replicated
    /// changes); set by the worker.
    foreign_keys_off: Arc<AtomicBool>,
}

/// What a job needs of its connection's foreign-key enforcement.
///
/// Switching it costs more than the switch: every `PRAGMA foreign_keys` expires all of the
/// connection's prepared statements, so each is compiled again at its next step. The pool
/// therefore hands a job an idle worker already in the state it needs, when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ForeignKeys {
    /// A client's statements: enforced, as Postgres does.
    Enforced,
    /// A replica applying changes as the primary decided them (cascades arrive as the rows
    /// they changed, and an entry's rows come in changeset order, not in dependency order).
    Off,
    /// Reads and log upkeep: either state will do.
    Either,
}

pub(crate) struct Pool {
    slots: RwLock<Vec<Arc<Slot>>>,
    /// What starting another worker takes.
    spawner: Spawner,
    /// Idle workers, the one freed last on top: a statement takes the worker that ran last,
    /// whose thread and page cache are warm, and workers a burst started stay idle.
    idle: Mutex<Vec<usize>>,
    /// Woken when a worker becomes idle, or the pool closes.
    freed: tokio::sync::Notify,
    /// One statement at a time looks for a worker (and grows the pool), in arrival order.
    acquiring: tokio::sync::Mutex<()>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
    next_job: AtomicU64,
    prepared: Mutex<HashMap<String, PreparedSlot>>,
    /// How long a statement waits for a worker when the pool is at `max_workers` and every
    /// one is busy: as long as a writer waits for the write lock, since what holds a worker
    /// that long is as stuck.
    acquire_timeout: Duration,
}

struct Spawner {
    path: std::path::PathBuf,
    options: SqliteOptions,
    shared: Arc<Shared>,
}

/// Starts worker `index`: its connection, with the busy handler that waits for the write lock,
/// and its thread, once the worker is ready.
fn spawn_worker(
    index: usize,
    path: &Path,
    options: &SqliteOptions,
    shared: Arc<Shared>,
) -> Result<(Slot, JoinHandle<()>), StorageError> {
    let open_err = |source| StorageError::Open {
        path: path.display().to_string(),
        source,
    };
    let mut conn = worker::open_connection(path, options).map_err(open_err)?;
    conn.busy_handler(Some(lock_wait::busy_handler(
        shared.write_lock.clone(),
        index,
        options.busy_timeout,
    )))
    .map_err(open_err)?;
    let (jobs, rx) = std::sync::mpsc::channel();
    let current = Arc::new(Mutex::new(0));
    let foreign_keys_off = Arc::new(AtomicBool::new(false));
    let slot = Slot {
        jobs,
        interrupt: conn.get_interrupt_handle(),
        current: current.clone(),
        foreign_keys_off: foreign_keys_off.clone(),
    };
    // The worker borrows its connection (a change-capture session borrows it too), so both
    // live on the worker thread's stack.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(format!("sqlite-worker-{index}"))
        .spawn(
            move || match Worker::new(index, &conn, shared, current, foreign_keys_off) {
                Ok(worker) => {
                    let _ = ready_tx.send(Ok(()));
                    worker.run(rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            },
        )
        .map_err(StorageError::Spawn)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((slot, handle)),
        Ok(Err(e)) => Err(open_err(e)),
        Err(_) => Err(StorageError::Closed),
    }
}

fn closed_error() -> DbError {
    DbError::new(
        "57P01",
        "terminating connection: the SQLite node is shutting down",
    )
}

impl Pool {
    async fn acquire(self: &Arc<Self>) -> Result<Lease, DbError> {
        self.acquire_for(ForeignKeys::Enforced).await
    }

    /// As [`Pool::acquire`], preferring an idle worker whose foreign-key enforcement is as
    /// `foreign_keys` needs.
    async fn acquire_for(self: &Arc<Self>, foreign_keys: ForeignKeys) -> Result<Lease, DbError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        // A worker held by an open transaction is free only when the transaction ends, which
        // may wait on this very statement's transaction elsewhere: rather than wait, the pool
        // grows, and at its limit the wait is bounded so that such a cycle ends in an error
        // rather than a hang.
        let waited = tokio::time::timeout(self.acquire_timeout, async {
            let _turn = self.acquiring.lock().await;
            loop {
                // Registered before looking, so a worker freed in between still wakes us.
                let freed = self.freed.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if self.closed.load(Ordering::Acquire) {
                    return Err(closed_error());
                }
                if let Some(index) = self.take_idle(foreign_keys) {
                    return Ok(index);
                }
                if self.workers() < self.spawner.options.max_workers {
                    let pool = self.clone();
                    return tokio::task::spawn_blocking(move || pool.grow())
                        .await
                        .map_err(|_| closed_error())?;
                }
                freed.await;
            }
        })
        .await;
        let index = match waited {
            Ok(index) => index?,
            Err(_) => {
                return Err(DbError::new(
                    "53300",
                    format!(
                        "no SQLite worker of this node became free within {} ms: all {} are \
                         held by open transactions or running statements",
                        self.acquire_timeout.as_millis(),
                        self.workers()
                    ),
                )
                .with_hint("Raise storage.max_workers, or end transactions sooner."));
            }
        };
        Ok(Lease {
            pool: self.clone(),
            index,
        })
    }

    fn prepared(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<String, PreparedSlot>>, DbError> {
        self.prepared
            .lock()
            .map_err(|_| DbError::new("XX000", "the prepared-transaction table is poisoned"))
    }

    /// The idle worker freed last among those whose foreign-key enforcement is as needed,
    /// or else the one freed last.
    fn take_idle(&self, foreign_keys: ForeignKeys) -> Option<usize> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let off = match foreign_keys {
            ForeignKeys::Enforced => false,
            ForeignKeys::Off => true,
            ForeignKeys::Either => return idle.pop(),
        };
        let suited = self.slots.read().ok().and_then(|slots| {
            idle.iter().rposition(|&index| {
                slots
                    .get(index)
                    .is_some_and(|slot| slot.foreign_keys_off.load(Ordering::Acquire) == off)
            })
        });
        match suited {
            Some(position) => Some(idle.remove(position)),
            None => idle.pop(),
        }
    }

    fn workers(&self) -> usize {
        self.slots.read().map_or(0, |slots| slots.len())
    }

    fn slot(&self, index: usize) -> Option<Arc<Slot>> {
        self.slots.read().ok()?.get(index).cloned()
    }

    /// Starts one more worker (on a blocking thread: it opens a connection); answers its
    /// index. Callers take their turn at acquiring, so two never grow the pool at once.
    fn grow(&self) -> Result<usize, DbError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        let index = self.workers();
        let Spawner {
            path,
            options,
            shared,
        } = &self.spawner;
        let (slot, handle) = spawn_worker(index, path, options, shared.clone()).map_err(|e| {
            DbError::new("53300", format!("cannot start another SQLite worker: {e}"))
        })?;
        self.slots
            .write()
            .map_err(|_| closed_error())?
            .push(Arc::new(slot));
        if let Ok(mut threads) = self.threads.lock() {
            threads.push(handle);
        }
        if self.closed.load(Ordering::Acquire) {
            // Shutdown began meanwhile and may have missed it.
            self.send(index, Job::Shutdown)?;
            return Err(closed_error());
        }
        tracing::debug!(
            workers = index + 1,
            "every SQLite worker was held: started another"
        );
        Ok(index)
    }

    fn send(&self, index: usize, job: Job) -> Result<(), DbError> {
        let slot = self.slot(index).ok_or_else(closed_error)?;
        slot.jobs.send(job).map_err(|_| closed_error())
    }

    /// Runs `task` on an idle worker, outside any session's transaction (replication's
    /// reads and applies), with foreign keys as `foreign_keys` needs.
    pub(crate) async fn run_task(
        self: &Arc<Self>,
        task: WorkerTask,
        foreign_keys: ForeignKeys,
    ) -> Result<(), DbError> {
        let lease = self.acquire_for(foreign_keys).await?;
        self.send(
            lease.index,
            Job::Task {
                task,
                foreign_keys,
                lease,
            },
        )
    }

    fn interrupt_if_running(&self, index: usize, job: u64) {
        if let Some(slot) = self.slot(index)
            && let Ok(current) = slot.current.lock()
            && *current == job
        {
            slot.interrupt.interrupt();
        }
    }
}

/// A worker borrowed from the pool; dropping it makes the worker idle again.
pub(crate) struct Lease {
    pool: Arc<Pool>,
    index: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(self.index);
        self.pool.freed.notify_one();
    }
}

/// A SQLite database file served with Postgres semantics.
pub struct SqliteBackend {
    pool: Arc<Pool>,
    shared: Arc<Shared>,
    path: std::path::PathBuf,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database file, in WAL mode with foreign keys on, and
    /// starts the worker threads.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<SqliteBackend, StorageError> {
        SqliteBackend::open_inner(path, options, None)
    }

    /// As [`SqliteBackend::open`], capturing every committed write transaction into the
    /// WAL tables of the same file (see `crate::replication`).
    pub fn open_replicated(
        path: &Path,
        options: SqliteOptions,
        replication: ReplicationIdentity,
    ) -> Result<SqliteBackend, StorageError> {
        SqliteBackend::open_inner(path, options, Some(replication))
    }

    fn open_inner(
        path: &Path,
        options: SqliteOptions,
        replication: Option<ReplicationIdentity>,
    ) -> Result<SqliteBackend, StorageError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| StorageError::CreateDir {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let open_err = |source| StorageError::Open {
            path: path.display().to_string(),
            source,
        };
        // The first connection creates the file and the catalog before workers race to.
        let setup = worker::open_connection(path, &options).map_err(open_err)?;
        setup
            .execute_batch(crate::catalog::CATALOG_DDL)
            .map_err(open_err)?;
        if replication.is_some() {
            setup
                .execute_batch(crate::replication::REPLICATION_DDL)
                .map_err(open_err)?;
        }
        let schema = crate::catalog::load(&setup, 0).map_err(open_err)?;
        let redo_path = redo::path_for(path);
        let redo_store =
            redo::RedoStore::open(&redo_path).map_err(|source| StorageError::Open {
                path: redo_path.display().to_string(),
                source,
            })?;
        let in_doubt = committed_before_crash(&setup, &redo_store)?;
        drop(setup);
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            schema: RwLock::new(Arc::new(schema)),
            cache: TranslationCache::default(),
            private_ids: AtomicU64::new(1 << 62),
            sequences: Default::default(),
            redo: redo_store,
            replication,
            decisions_fenced_ms: AtomicI64::new(i64::MIN),
            write_lock: Arc::default(),
        });

        let mut slots = Vec::new();
        let mut threads = Vec::new();
        for index in 0..options.workers.max(1) {
            let (slot, handle) = spawn_worker(index, path, &options, shared.clone())?;
            slots.push(Arc::new(slot));
            threads.push(handle);
        }
        // Worker 0 on top.
        let idle = (0..slots.len()).rev().collect();
        let backend = SqliteBackend {
            path: path.to_path_buf(),
            shared: shared.clone(),
            pool: Arc::new(Pool {
                slots: RwLock::new(slots),
                spawner: Spawner {
                    path: path.to_path_buf(),
                    options: options.clone(),
                    shared: shared.clone(),
                },
                idle: Mutex::new(idle),
                freed: tokio::sync::Notify::new(),
                acquiring: tokio::sync::Mutex::new(()),
                threads: Mutex::new(threads),
                closed: AtomicBool::new(false),
                next_job: AtomicU64::new(1),
                prepared: Mutex::new(HashMap::new()),
                acquire_timeout: options.busy_timeout,
            }),
        };
        for redo in in_doubt {
            backend.reestablish(redo)?;
        }
        Ok(backend)
    }

    /// Holds a prepared transaction again after a restart, before anything else may write.
    fn reestablish(&self, redo: redo::Redo) -> Result<(), StorageError> {
        let gid = redo.gid.clone();
        let failed = |message: String| StorageError::Recovery {
            gid: gid.clone(),
            message,
        };
        let index = self
            .pool
            .take_idle(ForeignKeys::Enforced)
            .ok_or_else(|| failed("no idle worker to hold it".to_owned()))?;
        let lease = Lease {
            pool: self.pool.clone(),
            index,
        };
        let (reply, answer) = std::sync::mpsc::channel();
        let decider = redo.decider.clone();
        let prepared_at_ms = redo.prepared_at_ms;
        self.pool
            .send(index, Job::Reestablish { redo, reply })
            .map_err(|e| failed(e.message))?;
        match answer.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(failed(e.message)),
            Err(_) => return Err(failed("the worker stopped".to_owned())),
        }
        tracing::warn!(gid = %gid, decider = %decider, "prepared transaction re-established after a restart; waiting for its outcome");
        self.pool.prepared().map_err(|e| failed(e.message))?.insert(
            gid,
            PreparedSlot {
                lease: Some(lease),
                decider,
                prepared_at_ms,
            },
        );
        Ok(())
    }

    /// The replicated log of `shard` in this file; `None` unless the backend was opened with
    /// [`SqliteBackend::open_replicated`].
    pub fn shard_log(&self, shard: mycelium_replication::ShardId) -> Option<SqliteShardLog> {
        let identity = self.shared.replication.clone()?;
        Some(SqliteShardLog::new(self.pool.clone(), shard, identity))
    }

    /// A new session. Holds nothing until a statement runs.
    pub fn session(&self) -> SqliteSession {
        SqliteSession {
            pool: self.pool.clone(),
            pinned: None,
            txn: None,
            user: Arc::from(DEFAULT_USER),
            time_zone: ZoneSetting::default(),
            lock_order: None,
        }
    }

    /// Stops the workers after the work already queued, and waits for them.
    /// The votes in the redo store, read off the async runtime.
    async fn redo_votes(&self) -> Result<Vec<PreparedTxn>, DbError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.redo.votes())
            .await
            .map_err(|e| DbError::new("XX000", format!("reading the redo store failed: {e}")))?
    }

    /// Runs `f` on an idle worker's connection and returns its answer.
    async fn on_worker<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, DbError> {
        let (tx, rx) = oneshot::channel();
        self.pool
            .run_task(
                Box::new(move |conn| {
                    let _ = tx.send(f(conn).map_err(|e| {
                        crate::errors::from_sqlite(&e, crate::errors::ErrorContext::default())
                    }));
                    false
                }),
                ForeignKeys::Either,
            )
            .await?;
        rx.await.map_err(|_| closed_error())?
    }

    pub fn shutdown(&self) {
        if self.pool.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // A statement waiting for a worker gets its error now.
        self.pool.freed.notify_waiters();
        if let Ok(slots) = self.pool.slots.read() {
            for slot in slots.iter() {
                let _ = slot.jobs.send(Job::Shutdown);
            }
        }
        let threads = match self.pool.threads.lock() {
            Ok(mut threads) => std::mem::take(&mut *threads),
            Err(_) => return,
        };
        for thread in threads {
            let _ = thread.join();
        }
        // Prepared transactions hold leases on the pool; their redo rows outlive this.
        if let Ok(mut prepared) = self.pool.prepared.lock() {
            prepared.clear();
        }
    }
}

impl Drop for SqliteBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The redo rows still in doubt. Rows whose commit reached the data file before a crash
/// (their `applied` marker exists) are deleted, and so are markers no row needs any more.
fn committed_before_crash(
    data: &rusqlite::Connection,
    store: &redo::RedoStore,
) -> Result<Vec<redo::Redo>, StorageError> {
    let recovery = |gid: &str, message: String| StorageError::Recovery {
        gid: gid.to_owned(),
        message,
    };
    let mut in_doubt = Vec::new();
    for redo in store.all().map_err(|e| recovery("?", e.message))? {
        let applied: bool = data
            .query_row(
                "SELECT count(*) > 0 FROM __mycelium_txn_records WHERE gid = ?1 AND state = 'applied'",
                [&redo.gid],
                |row| row.get(0),
            )
            .map_err(|e| recovery(&redo.gid, e.to_string()))?;
        if applied {
            store
                .delete(&redo.gid)
                .map_err(|e| recovery(&redo.gid, e.message))?;
        } else {
            in_doubt.push(redo);
        }
    }
    data.execute(
        "DELETE FROM __mycelium_txn_records WHERE state = 'applied'",
        [],
    )
    .map_err(|e| recovery("?", e.to_string()))?;
    Ok(in_doubt)
}

/// The transaction a session has open, as its worker needs to see it.
#[derive(Debug)]
pub(crate) struct TxnState {
    /// An error happened: only ROLLBACK (or ROLLBACK TO) is accepted.
    pub failed: bool,
    /// `now()` for the whole transaction.
    pub started_at: DateTime<Utc>,
    /// READ COMMITTED (Postgres's default, and READ UNCOMMITTED, which Postgres runs as it):
    /// each statement may see what committed before it, so until the transaction writes it
    /// takes a fresh snapshot per statement (see [`worker`]'s `only_read`).
    pub read_committed: bool,
}

/// Whether a `BEGIN`/`START TRANSACTION` runs READ COMMITTED: it names no stronger level.
fn begins_read_committed(sql: &str) -> bool {
    !sql.split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .any(|word| {
            word.eq_ignore_ascii_case("REPEATABLE") || word.eq_ignore_ascii_case("SERIALIZABLE")
        })
}

pub(crate) type SharedTxn = Arc<Mutex<TxnState>>;

/// One client session on the SQLite node.
/// What `current_user` answers when no client user was given (internal statements).
const DEFAULT_USER: &str = "mycelium";

pub struct SqliteSession {
    pool: Arc<Pool>,
    /// The worker holding this session's open SQLite transaction.
    pinned: Option<Lease>,
    /// Set by BEGIN; the SQLite transaction itself starts with the first statement.
    txn: Option<SharedTxn>,
    /// What `current_user` answers for this session's statements.
    user: Arc<str>,
    /// The client's `TimeZone`, in which its statements read and show `timestamptz` values.
    time_zone: ZoneSetting,
    /// The lock order of the client's distributed transaction (see `lock_wait`).
    lock_order: Option<LockOrder>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Begin,
    Commit,
    Rollback,
    /// SAVEPOINT / RELEASE / ROLLBACK TO: run on the pinned worker.
    Savepoint,
}

fn control(sql: &str) -> Option<Control> {
    let mut words = sql
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_uppercase());
    let first = words.next()?;
    let second = words.next();
    match first.as_str() {
        "BEGIN" => Some(Control::Begin),
        "START" if second.as_deref() == Some("TRANSACTION") => Some(Control::Begin),
        "COMMIT" | "END" => match second.as_deref() {
            Some("PREPARED") => None,
            _ => Some(Control::Commit),
        },
        "ROLLBACK" | "ABORT" => match second.as_deref() {
            Some("TO") => Some(Control::Savepoint),
            Some("PREPARED") => None,
            _ => Some(Control::Rollback),
        },
        "SAVEPOINT" | "RELEASE" => Some(Control::Savepoint),
        _ => None,
    }
}

fn immediate(items: Vec<Result<Reply, DbError>>) -> ReplyStream {
    let (tx, rx) = mpsc::channel(items.len().max(1));
    for item in items {
        let _ = tx.try_send(item);
    }
    ReplyStream::from_channel(rx)
}

fn complete(tag: &str) -> ReplyStream {
    immediate(vec![Ok(Reply::Complete {
        tag: tag.to_owned(),
    })])
}

pub(crate) fn aborted_error() -> DbError {
    DbError::new(
        "25P02",
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

impl SqliteSession {
    /// The worker this statement runs on, and the lease to hand over when it is borrowed
    /// only for this statement.
    async fn worker(&mut self) -> Result<(usize, Option<Lease>), DbError> {
        if self.txn.is_some() {
            if self.pinned.is_none() {
                self.pinned = Some(self.pool.acquire().await?);
            }
            let index = self.pinned.as_ref().map(|l| l.index).unwrap_or(0);
            return Ok((index, None));
        }
        let lease = self.pool.acquire().await?;
        Ok((lease.index, Some(lease)))
    }

    async fn end(&mut self, commit: bool) -> Result<String, DbError> {
        let txn = self.txn.take();
        let failed = txn
            .as_ref()
            .and_then(|t| t.lock().ok().map(|s| s.failed))
            .unwrap_or(false);
        let tag = if commit && !failed {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let Some(lease) = self.pinned.take() else {
            return Ok(tag.to_owned());
        };
        let (reply, rx) = oneshot::channel();
        let index = lease.index;
        self.pool.send(
            index,
            Job::End {
                commit: commit && !failed,
                reply: Some(reply),
                lease: Some(lease),
            },
        )?;
        rx.await.map_err(|_| closed_error())??;
        Ok(tag.to_owned())
    }

    fn txn_failed(&self) -> bool {
        self.txn
            .as_ref()
            .and_then(|t| t.lock().ok().map(|s| s.failed))
            .unwrap_or(false)
    }
}

#[async_trait]
impl NodeSession for SqliteSession {
    async fn describe(
        &mut self,
        sql: &str,
        param_types: &[u32],
    ) -> Result<StatementDescription, DbError> {
        if control(sql).is_some() {
            return Ok(StatementDescription {
                params: param_types.to_vec(),
                columns: Vec::new(),
            });
        }
        let (index, lease) = self.worker().await?;
        let (reply, rx) = oneshot::channel();
        self.pool.send(
            index,
            Job::Describe {
                sql: sql.to_owned(),
                param_types: param_types.to_vec(),
                time_zone: self.time_zone.zone(),
                reply,
                lease,
            },
        )?;
        rx.await.map_err(|_| closed_error())?
    }

    async fn execute(&mut self, request: Execute) -> Result<ReplyStream, DbError> {
        match control(&request.sql) {
            Some(Control::Begin) => {
                if self.txn.is_none() {
                    self.txn = Some(Arc::new(Mutex::new(TxnState {
                        failed: false,
                        started_at: Utc::now(),
                        read_committed: begins_read_committed(&request.sql),
                    })));
                }
                return Ok(complete("BEGIN"));
            }
            Some(Control::Commit) => {
                let tag = self.end(true).await?;
                return Ok(complete(&tag));
            }
            Some(Control::Rollback) => {
                let tag = self.end(false).await?;
                return Ok(complete(&tag));
            }
            Some(Control::Savepoint) if self.txn.is_none() => {
                let what = request
                    .sql
                    .split_whitespace()
                    .next()
                    .unwrap_or("SAVEPOINT")
                    .to_ascii_uppercase();
                let what = if what == "ROLLBACK" {
                    "ROLLBACK TO SAVEPOINT".to_owned()
                } else {
                    what
                };
                return Ok(immediate(vec![Err(DbError::new(
                    "25P01",
                    format!("{what} can only be used in transaction blocks"),
                ))]));
            }
            Some(Control::Savepoint) => {}
            None => {
                if self.txn_failed() {
                    return Ok(immediate(vec![Err(aborted_error())]));
                }
            }
        }
        let (index, lease) = self.worker().await?;
        let id = self.pool.next_job.fetch_add(1, Ordering::Relaxed);
        let (replies, rx) = mpsc::channel(16);
        let (done, done_rx) = oneshot::channel::<()>();
        let watcher = replies.clone();
        self.pool.send(
            index,
            Job::Execute {
                id,
                request,
                user: self.user.clone(),
                time_zone: self.time_zone.zone(),
                txn: self.txn.clone(),
                lock_order: self.txn.as_ref().and(self.lock_order),
                replies,
                done,
                lease,
            },
        )?;
        // Cancellation: when the client drops the stream mid-statement, interrupt SQLite
        // even inside one long step.
        let pool = self.pool.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = watcher.closed() => pool.interrupt_if_running(index, id),
                _ = done_rx => {}
            }
        });
        Ok(ReplyStream::from_channel(rx))
    }

    async fn copy_in(&mut self, batch: CopyIn) -> Result<u64, DbError> {
        if self.txn_failed() {
            return Err(aborted_error());
        }
        let (index, lease) = self.worker().await?;
        let (reply, rx) = oneshot::channel();
        self.pool.send(
            index,
            Job::CopyIn {
                batch,
                time_zone: self.time_zone.zone(),
                txn: self.txn.clone(),
                lock_order: self.txn.as_ref().and(self.lock_order),
                reply,
                lease,
            },
        )?;
        rx.await.map_err(|_| closed_error())?
    }

    fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    fn set_user(&mut self, user: &str) {
        if &*self.user != user {
            self.user = Arc::from(user);
        }
    }

    fn set_time_zone(&mut self, zone: &str) {
        self.time_zone.set(zone);
    }

    fn set_lock_order(&mut self, order: Option<LockOrder>) {
        self.lock_order = order;
    }

    async fn prepare(&mut self, gid: &str, decider: &str) -> Result<(), DbError> {
        if self.txn.is_none() {
            return Err(DbError::new("25P01", "there is no transaction in progress"));
        }
        if self.txn_failed() {
            self.end(false).await?;
            return Err(aborted_error());
        }
        if self.pool.prepared()?.contains_key(gid) {
            self.end(false).await?;
            return Err(DbError::new(
                "42710",
                format!("transaction identifier \"{gid}\" is already in use"),
            ));
        }
        self.txn = None;
        let lease = match self.pinned.take() {
            Some(lease) => {
                let (reply, rx) = oneshot::channel();
                self.pool.send(
                    lease.index,
                    Job::Prepare {
                        gid: gid.to_owned(),
                        decider: decider.to_owned(),
                        reply,
                    },
                )?;
                match rx.await.map_err(|_| closed_error())? {
                    Ok(true) => Some(lease),
                    Ok(false) => None,
                    Err(e) => {
                        // The worker ended the transaction; the lease returns it to the pool.
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        self.pool.prepared()?.insert(
            gid.to_owned(),
            PreparedSlot {
                lease,
                decider: decider.to_owned(),
                prepared_at_ms: Utc::now().timestamp_millis(),
            },
        );
        Ok(())
    }

    async fn commit_decision(&mut self, gid: &str, participants: &[String]) -> Result<(), DbError> {
        if self.txn.is_none() {
            return Err(DbError::new("25P01", "there is no transaction in progress"));
        }
        if self.txn_failed() {
            self.end(false).await?;
            return Err(aborted_error());
        }
        let began_at_ms = match self.txn.take() {
            Some(txn) => {
                let began = txn.lock().map(|t| t.started_at.timestamp_millis());
                began.unwrap_or(i64::MIN)
            }
            None => i64::MIN,
        };
        // A transaction that ran nothing here still needs a worker to write the record.
        let lease = match self.pinned.take() {
            Some(lease) => lease,
            None => self.pool.acquire().await?,
        };
        let (reply, rx) = oneshot::channel();
        self.pool.send(
            lease.index,
            Job::CommitDecision {
                gid: gid.to_owned(),
                participants: participants.to_vec(),
                began_at_ms,
                reply,
            },
        )?;
        let result = rx.await.map_err(|_| closed_error())?;
        drop(lease);
        result
    }
}

#[async_trait]
impl crate::Backend for SqliteBackend {
    fn session(&self) -> Box<dyn NodeSession> {
        Box::new(SqliteBackend::session(self))
    }

    async fn finish_prepared(&self, gid: &str, commit: bool) -> Result<(), DbError> {
        let slot = self.pool.prepared()?.remove(gid);
        let Some(slot) = slot else {
            // Not held in memory. A redo row without a slot is a transaction whose earlier
            // finish failed: it is settled when the node restarts, and saying it finished
            // would let its decider's record be deleted before that.
            if self.redo_votes().await?.iter().any(|v| v.gid == gid) {
                return Err(DbError::new(
                    "XX000",
                    format!(
                        "prepared transaction {gid} failed to finish earlier; it is settled \
                         from its redo record when the node restarts"
                    ),
                ));
            }
            return Ok(());
        };
        let Some(lease) = slot.lease else {
            return Ok(());
        };
        let (reply, rx) = oneshot::channel();
        self.pool.send(
            lease.index,
            Job::FinishPrepared {
                gid: gid.to_owned(),
                commit,
                reply,
                lease,
            },
        )?;
        rx.await.map_err(|_| closed_error())?
    }

    /// The transactions held in memory and every vote in the redo store: a vote whose
    /// finish failed stays there, is re-established at restart and then asks its decider, so
    /// it counts as prepared until then.
    async fn prepared(&self) -> Result<Vec<PreparedTxn>, DbError> {
        let mut prepared: Vec<PreparedTxn> = self
            .pool
            .prepared()?
            .iter()
            .map(|(gid, slot)| PreparedTxn {
                gid: gid.clone(),
                decider: slot.decider.clone(),
                prepared_at_ms: slot.prepared_at_ms,
            })
            .collect();
        for vote in self.redo_votes().await? {
            if !prepared.iter().any(|p| p.gid == vote.gid) {
                prepared.push(vote);
            }
        }
        Ok(prepared)
    }

    async fn txn_outcome(&self, gid: &str) -> Result<TxnOutcome, DbError> {
        let lease = self.pool.acquire().await?;
        let (reply, rx) = oneshot::channel();
        self.pool.send(
            lease.index,
            Job::Outcome {
                gid: gid.to_owned(),
                reply,
                lease: Some(lease),
            },
        )?;
        rx.await.map_err(|_| closed_error())?
    }

    async fn forget_txn(&self, gid: &str) -> Result<bool, DbError> {
        let gid = gid.to_owned();
        self.on_worker(move |conn| records::forget(conn, &gid))
            .await
    }

    async fn txn_records(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> Result<Vec<TxnRecord>, DbError> {
        let age = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        let before_ms = Utc::now().timestamp_millis().saturating_sub(age);
        self.on_worker(move |conn| records::list(conn, before_ms, limit))
            .await
    }

    async fn delete_txn_records(&self, records: &[TxnRecord]) -> Result<u64, DbError> {
        // The fence goes up before any abort record goes away: a decision that finds the
        // record gone (its insert succeeds) reads the fence after that, and fails.
        if let Some(fence) = records
            .iter()
            .filter(|r| !r.committed)
            .map(|r| r.decided_at_ms)
            .max()
        {
            self.shared
                .decisions_fenced_ms
                .fetch_max(fence, Ordering::SeqCst);
        }
        let held: std::collections::HashSet<String> = self
            .redo_votes()
            .await?
            .into_iter()
            .map(|v| v.gid)
            .collect();
        let records = records.to_vec();
        self.on_worker(move |conn| records::delete(conn, &records, &held))
            .await
    }

    fn info(&self) -> crate::BackendInfo {
        crate::BackendInfo {
            kind: "sqlite",
            location: self.path.display().to_string(),
        }
    }

    fn shutdown(&self) {
        SqliteBackend::shutdown(self);
    }
}

impl Drop for SqliteSession {
    fn drop(&mut self) {
        if let Some(lease) = self.pinned.take() {
            let index = lease.index;
            // The worker rolls back, then the lease returns it to the pool.
            let _ = self.pool.send(
                index,
                Job::End {
                    commit: false,
                    reply: None,
                    lease: Some(lease),
                },
            );
        }
    }
}
