//! The SQLite backend: a pool of worker threads, each owning one connection, and the
//! sessions that send statements to them.
//!
//! Tokio tasks never touch SQLite. A session sends a job over a channel to a worker thread
//! and awaits the answer (or, for `execute`, returns the reply stream at once). An autocommit
//! statement borrows any idle worker for its duration; an explicit transaction pins one
//! worker from its first statement until COMMIT/ROLLBACK, because SQLite transactions are
//! per connection.

mod worker;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mycelium_protocol::{
    CopyIn, DbError, Execute, NodeSession, Reply, ReplyStream, StatementDescription,
};
use tokio::sync::{mpsc, oneshot};

use crate::catalog::Schema;
use crate::errors::StorageError;
use crate::rewrite::TranslationCache;
use worker::{Job, Worker};

/// Tuning for [`SqliteBackend::open`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Worker threads, each with its own connection; bounds concurrent statements.
    pub workers: usize,
    /// How long a writer waits for SQLite's write lock before failing with 40001.
    pub busy_timeout: Duration,
    /// `PRAGMA synchronous = FULL` (durable at every commit) rather than NORMAL.
    pub synchronous_full: bool,
}

impl Default for SqliteOptions {
    fn default() -> SqliteOptions {
        SqliteOptions {
            workers: 4,
            busy_timeout: Duration::from_secs(10),
            synchronous_full: true,
        }
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
}

struct Slot {
    jobs: std::sync::mpsc::Sender<Job>,
    interrupt: rusqlite::InterruptHandle,
    /// Id of the job the worker is running (0: none); guards interrupts against hitting
    /// the next job.
    current: Arc<Mutex<u64>>,
}

pub(crate) struct Pool {
    slots: Vec<Slot>,
    idle_tx: mpsc::UnboundedSender<usize>,
    idle_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<usize>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
    next_job: AtomicU64,
}

fn closed_error() -> DbError {
    DbError::new(
        "57P01",
        "terminating connection: the SQLite node is shutting down",
    )
}

impl Pool {
    async fn acquire(self: &Arc<Self>) -> Result<Lease, DbError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        let index = self
            .idle_rx
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(closed_error)?;
        Ok(Lease {
            pool: self.clone(),
            index,
        })
    }

    fn send(&self, index: usize, job: Job) -> Result<(), DbError> {
        let slot = self.slots.get(index).ok_or_else(closed_error)?;
        slot.jobs.send(job).map_err(|_| closed_error())
    }

    fn interrupt_if_running(&self, index: usize, job: u64) {
        if let Some(slot) = self.slots.get(index)
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
        let _ = self.pool.idle_tx.send(self.index);
    }
}

/// A SQLite database file served with Postgres semantics.
pub struct SqliteBackend {
    pool: Arc<Pool>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database file, in WAL mode with foreign keys on, and
    /// starts the worker threads.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<SqliteBackend, StorageError> {
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
        let schema = crate::catalog::load(&setup, 0).map_err(open_err)?;
        drop(setup);
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            schema: RwLock::new(Arc::new(schema)),
            cache: TranslationCache::default(),
            private_ids: AtomicU64::new(1 << 62),
            sequences: Default::default(),
        });

        let (idle_tx, idle_rx) = mpsc::unbounded_channel();
        let mut slots = Vec::new();
        let mut threads = Vec::new();
        for index in 0..options.workers.max(1) {
            let conn = worker::open_connection(path, &options).map_err(open_err)?;
            let (jobs, rx) = std::sync::mpsc::channel();
            let current = Arc::new(Mutex::new(0));
            let slot = Slot {
                jobs,
                interrupt: conn.get_interrupt_handle(),
                current: current.clone(),
            };
            let worker = Worker::new(conn, shared.clone(), current).map_err(open_err)?;
            let handle = std::thread::Builder::new()
                .name(format!("sqlite-worker-{index}"))
                .spawn(move || worker.run(rx))
                .map_err(StorageError::Spawn)?;
            slots.push(slot);
            threads.push(handle);
            let _ = idle_tx.send(index);
        }
        Ok(SqliteBackend {
            pool: Arc::new(Pool {
                slots,
                idle_tx,
                idle_rx: tokio::sync::Mutex::new(idle_rx),
                threads: Mutex::new(threads),
                closed: AtomicBool::new(false),
                next_job: AtomicU64::new(1),
            }),
        })
    }

    /// A new session. Holds nothing until a statement runs.
    pub fn session(&self) -> SqliteSession {
        SqliteSession {
            pool: self.pool.clone(),
            pinned: None,
            txn: None,
            user: Arc::from(DEFAULT_USER),
        }
    }

    /// Stops the workers after the work already queued, and waits for them.
    pub fn shutdown(&self) {
        if self.pool.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for slot in &self.pool.slots {
            let _ = slot.jobs.send(Job::Shutdown);
        }
        let threads = match self.pool.threads.lock() {
            Ok(mut threads) => std::mem::take(&mut *threads),
            Err(_) => return,
        };
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for SqliteBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The transaction a session has open, as its worker needs to see it.
#[derive(Debug)]
pub(crate) struct TxnState {
    /// An error happened: only ROLLBACK (or ROLLBACK TO) is accepted.
    pub failed: bool,
    /// `now()` for the whole transaction.
    pub started_at: DateTime<Utc>,
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
                txn: self.txn.clone(),
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
                txn: self.txn.clone(),
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

    async fn prepare(&mut self, _gid: &str, _decider: &str) -> Result<(), DbError> {
        Err(DbError::new("0A000", "PREPARE is not implemented yet"))
    }

    async fn commit_decision(
        &mut self,
        _gid: &str,
        _participants: &[String],
    ) -> Result<(), DbError> {
        Err(DbError::new("0A000", "PREPARE is not implemented yet"))
    }
}

#[async_trait]
impl crate::Backend for SqliteBackend {
    fn session(&self) -> Box<dyn NodeSession> {
        Box::new(SqliteBackend::session(self))
    }

    async fn finish_prepared(&self, _gid: &str, _commit: bool) -> Result<(), DbError> {
        Ok(())
    }

    async fn prepared(&self) -> Result<Vec<mycelium_protocol::PreparedTxn>, DbError> {
        Ok(Vec::new())
    }

    async fn txn_outcome(&self, _gid: &str) -> Result<mycelium_protocol::TxnOutcome, DbError> {
        Ok(mycelium_protocol::TxnOutcome::Aborted)
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
