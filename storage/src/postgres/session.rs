//! One client session on a Postgres node: autocommit statements borrow a pooled connection,
//! a transaction pins one from BEGIN to its end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::SinkExt;
use mycelium_protocol::types::ZoneSetting;
use mycelium_protocol::{
    CopyIn, DbError, Execute, LockOrder, NodeSession, Reply, ReplyStream, StatementDescription,
};
use tokio::sync::{Mutex, mpsc};
use tokio_postgres::error::SqlState;

use super::Shared;
use super::pool::Pooled;
use super::replication::{note_gid, with_shard_keys};
use super::results::{Hold, How, Running, Start, describe_columns};
use super::sql::{self, Control};
use super::wait_die::{Registration, Watch};

/// A session on a Postgres node.
pub struct PostgresSession {
    shared: Arc<Shared>,
    /// The connection holding the open transaction.
    pinned: Option<Arc<Mutex<Pooled>>>,
    /// A statement of the open transaction failed: Postgres ignores everything but its end.
    failed: Arc<AtomicBool>,
    /// The client user statements run for (`current_user` answers it, not the node's login).
    user: Option<Arc<str>>,
    /// The client's `TimeZone` setting, which the server connection is given before each
    /// statement, and the zone the results' `timestamptz` values are printed in.
    zone: ZoneSetting,
    /// The lock order of the client transaction, for wait-die.
    order: Option<LockOrder>,
    /// The open transaction, as the node's wait-die knows it.
    registration: Option<Registration>,
}

fn immediate(item: Result<Reply, DbError>) -> ReplyStream {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(item);
    ReplyStream::from_channel(rx)
}

/// Whether the unnamed statement gives the same answer as a prepared one: the Parse of an
/// unnamed statement declares a type for every parameter sent (0 = inferred), so it may only
/// declare no more than a prepared statement would have: the client's types, or the
/// parameters the text refers to.
fn unnamed_fits(request: &Execute) -> bool {
    let (sent, typed) = (request.params.len(), request.param_types.len());
    sent == typed || (sent > typed && sql::max_placeholder(&request.sql) >= sent)
}

/// Statements worth keeping prepared: the ones an application repeats.
fn cacheable(words: &[String]) -> bool {
    matches!(
        words.first().map(String::as_str),
        Some("SELECT" | "INSERT" | "UPDATE" | "DELETE" | "WITH" | "VALUES" | "TABLE" | "MERGE")
    )
}

impl PostgresSession {
    pub(crate) fn new(shared: Arc<Shared>) -> PostgresSession {
        PostgresSession {
            shared,
            pinned: None,
            failed: Arc::new(AtomicBool::new(false)),
            user: None,
            zone: ZoneSetting::default(),
            order: None,
            registration: None,
        }
    }

    /// Ends the session's hold on its open transaction's connection.
    fn unpin(&mut self) -> Option<Arc<Mutex<Pooled>>> {
        self.registration = None;
        self.pinned.take()
    }

    /// Tells the node's wait-die which transaction the pinned connection (backend `pid`)
    /// runs, and watches the statement about to run there when that transaction holds locks
    /// on other nodes.
    fn watch_locks(&mut self, pid: i32) -> Option<Watch> {
        let order = self.order.filter(|_| self.pinned.is_some())?;
        if !self
            .registration
            .as_ref()
            .is_some_and(|r| r.is(pid, order.priority))
        {
            self.registration = Some(self.shared.wait_die.register(pid, order.priority));
        }
        order
            .holds_elsewhere
            .then(|| self.shared.wait_die.watch(pid, order.priority))
    }

    /// Holds a connection for a statement, with the client's `TimeZone` on it.
    async fn hold_in_zone(&self) -> Result<Hold, DbError> {
        let mut hold = self.hold().await?;
        let in_transaction = self.pinned.is_some();
        if let Err(e) = hold
            .conn()
            .use_zone(self.zone.setting(), in_transaction)
            .await
        {
            self.note_failure(&e);
            return Err(self.shared.error(&e));
        }
        Ok(hold)
    }

    async fn hold(&self) -> Result<Hold, DbError> {
        match &self.pinned {
            Some(pinned) => Ok(Hold::Pinned(pinned.clone().lock_owned().await)),
            None => Ok(Hold::Pooled(Box::new(self.shared.acquire().await?))),
        }
    }

    /// Records that a statement of the open transaction failed on the server.
    fn note_failure(&self, e: &tokio_postgres::Error) {
        if self.pinned.is_some() && (e.as_db_error().is_some() || e.is_closed()) {
            self.failed.store(true, Ordering::Release);
        }
    }

    /// Runs a transaction-control statement as sent; returns its tag.
    async fn control(
        &mut self,
        control: Control,
        text: &str,
        words: &[String],
    ) -> Result<String, DbError> {
        let failed = self.failed.load(Ordering::Acquire);
        match control {
            Control::Begin if self.pinned.is_none() => {
                let conn = self.shared.acquire().await?;
                conn.client
                    .batch_execute(text)
                    .await
                    .map_err(|e| self.shared.error(&e))?;
                self.pinned = Some(Arc::new(Mutex::new(conn)));
                self.failed.store(false, Ordering::Release);
            }
            // The proxy opens a node's transaction only when it has none, so a BEGIN here
            // means the session was handed on with a stale transaction of an earlier client:
            // roll that back rather than let the new client commit someone else's changes.
            Control::Begin => {
                tracing::warn!(
                    node = %self.shared.node,
                    "BEGIN arrived in an open transaction; rolling the stale transaction back"
                );
                let Some(pinned) = self.unpin() else {
                    return Err(DbError::new("XX000", "no pinned connection"));
                };
                let mut conn = pinned.clone().lock_owned().await;
                self.failed.store(false, Ordering::Release);
                conn.transaction_ended();
                let restarted = match conn.client.batch_execute("ROLLBACK").await {
                    Ok(()) => conn.client.batch_execute(text).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = restarted {
                    conn.broken = true;
                    return Err(self.shared.error(&e));
                }
                drop(conn);
                self.pinned = Some(pinned);
            }
            Control::Commit | Control::Rollback | Control::PrepareTransaction
                if self.pinned.is_some() =>
            {
                let Some(pinned) = self.unpin() else {
                    return Err(DbError::new("XX000", "no pinned connection"));
                };
                self.failed.store(false, Ordering::Release);
                let mut conn = pinned.lock_owned().await;
                conn.transaction_ended();
                conn.client
                    .batch_execute(text)
                    .await
                    .map_err(|e| self.shared.error(&e))?;
            }
            // Postgres only warns about COMMIT or ROLLBACK outside a transaction.
            Control::Commit | Control::Rollback => {}
            Control::PrepareTransaction | Control::Savepoint | Control::RollbackTo => {
                let mut hold = self.hold().await?;
                let done = hold.conn().client.batch_execute(text).await;
                if let Err(e) = done {
                    self.note_failure(&e);
                    return Err(self.shared.error(&e));
                }
                if control == Control::RollbackTo {
                    self.failed.store(false, Ordering::Release);
                    hold.conn().transaction_ended();
                }
            }
        }
        Ok(sql::command_tag(words, 0, failed))
    }

    async fn run(
        &mut self,
        mut request: Execute,
        words: Vec<String>,
    ) -> Result<ReplyStream, DbError> {
        if let Some(stripped) = sql::without_mycelium_options(&request.sql) {
            request.sql = Arc::from(stripped);
        }
        if let Some(user) = &self.user
            && let Some(rewritten) = sql::with_client_user(&request.sql, user)
        {
            request.sql = Arc::from(rewritten);
        }
        if let Some(moved) = sql::in_mycelium_schema(&request.sql) {
            request.sql = Arc::from(moved);
        }
        if let Some(scoped) = with_shard_keys(&request.sql) {
            request.sql = Arc::from(scoped);
        }
        let mut hold = self.hold_in_zone().await?;
        let in_txn = self.pinned.is_some();
        let watch = self.watch_locks(hold.conn().pid);
        let keep = cacheable(&words);
        let conn = hold.conn();
        // A text seen for the first time runs as the unnamed statement, in one round trip;
        // one that repeats is prepared and cached (two round trips once, one afterwards).
        let how = if let Some(statement) = conn.cached(&request.sql, &request.param_types) {
            How::Prepared {
                statement,
                cached: true,
                keep,
            }
        } else if !(keep && conn.repeated(&request.sql, &request.param_types))
            && unnamed_fits(&request)
        {
            How::Unnamed
        } else {
            let prepared = conn.prepare(&request.sql, &request.param_types, keep).await;
            let statement = match prepared {
                Ok((statement, _)) => statement,
                Err(e) => {
                    self.note_failure(&e);
                    return Err(self.shared.error(&e));
                }
            };
            let expected = statement.params().len();
            if request.params.len() != expected {
                if in_txn {
                    self.failed.store(true, Ordering::Release);
                }
                return Err(DbError::new(
                    "08P01",
                    format!(
                        "bind message supplies {} parameters, but prepared statement \"\" \
                         requires {expected}",
                        request.params.len()
                    ),
                ));
            }
            How::Prepared {
                statement,
                cached: false,
                keep,
            }
        };
        // The query starts when the stream is first read, so that dropping the stream at
        // any point (a cancel, a timeout) cancels it on the server.
        let running = Running {
            shared: self.shared.clone(),
            hold: Some(hold),
            start: Some(Start { request, how }),
            rows: None,
            first: None,
            columns: None,
            plans: Vec::new(),
            words,
            txn_failed: in_txn.then(|| self.failed.clone()),
            zone: self.zone.zone(),
            buffered: None,
            ended: false,
            done: false,
            count: 0,
            builder: Default::default(),
            watch,
        };
        Ok(ReplyStream::from_source(Box::new(running)))
    }

    /// Ends the pinned transaction with ROLLBACK after a failed 2PC step; returns `error`.
    async fn abandon(&mut self, hold: &mut Hold, error: DbError) -> DbError {
        self.failed.store(false, Ordering::Release);
        hold.conn().transaction_ended();
        if let Err(e) = hold.conn().client.batch_execute("ROLLBACK").await {
            tracing::warn!(error = %e, "cannot roll back after a failed two-phase step");
            hold.conn().broken = true;
        }
        error
    }
}

#[async_trait]
impl NodeSession for PostgresSession {
    async fn describe(
        &mut self,
        sql_text: &str,
        param_types: &[u32],
    ) -> Result<StatementDescription, DbError> {
        let words = sql::top_level_words(sql_text, 4);
        if sql::control(&words).is_some() {
            return Ok(StatementDescription {
                params: param_types.to_vec(),
                columns: Vec::new(),
            });
        }
        let stripped = sql::without_mycelium_options(sql_text);
        let sql_text = stripped.as_deref().unwrap_or(sql_text);
        let moved = sql::in_mycelium_schema(sql_text);
        let sql_text = moved.as_deref().unwrap_or(sql_text);
        let scoped = with_shard_keys(sql_text);
        let sql_text = scoped.as_deref().unwrap_or(sql_text);
        let mut hold = self.hold().await?;
        // A Describe prepares afresh: a cached statement keeps the columns its table had when
        // it was prepared, and a client describing after DDL must see the new ones (running a
        // stale statement fails and re-prepares on its own, describing it does not).
        hold.conn().forget(sql_text, param_types);
        let prepared = hold
            .conn()
            .prepare(sql_text, param_types, cacheable(&words))
            .await;
        let (statement, _) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                self.note_failure(&e);
                return Err(self.shared.error(&e));
            }
        };
        let columns = describe_columns(&self.shared, hold.conn(), statement.columns()).await?;
        Ok(StatementDescription {
            params: statement.params().iter().map(|t| t.oid()).collect(),
            columns,
        })
    }

    async fn execute(&mut self, request: Execute) -> Result<ReplyStream, DbError> {
        let words = sql::tag_words(&request.sql);
        if let Some(control) = sql::control(&words) {
            let result = self.control(control, &request.sql, &words).await;
            return Ok(immediate(result.map(|tag| Reply::Complete { tag })));
        }
        Ok(match self.run(request, words).await {
            Ok(stream) => stream,
            Err(e) => immediate(Err(e)),
        })
    }

    fn set_user(&mut self, user: &str) {
        if self.user.as_deref() != Some(user) {
            self.user = Some(Arc::from(user));
        }
    }

    fn set_time_zone(&mut self, setting: &str) {
        self.zone.set(setting);
    }

    fn set_lock_order(&mut self, order: Option<LockOrder>) {
        self.order = order;
    }

    async fn copy_in(&mut self, batch: CopyIn) -> Result<u64, DbError> {
        let columns = if batch.columns.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = batch.columns.iter().map(|c| sql::identifier(c)).collect();
            format!(" ({})", names.join(", "))
        };
        let statement = format!("COPY {}{columns} FROM STDIN", batch.table);
        let data = copy_text(&batch.rows);
        let mut hold = self.hold_in_zone().await?;
        let watch = self.watch_locks(hold.conn().pid);
        let client = &hold.conn().client;
        let written = async {
            let sink = client.copy_in::<_, Bytes>(statement.as_str()).await?;
            let mut sink = Box::pin(sink);
            sink.as_mut().send(Bytes::from(data)).await?;
            sink.as_mut().finish().await
        }
        .await;
        match written {
            Ok(count) => Ok(count),
            Err(e) => {
                self.note_failure(&e);
                let error = self.shared.error(&e);
                Err(match watch {
                    Some(watch) => watch.explain(error),
                    None => error,
                })
            }
        }
    }

    fn in_transaction(&self) -> bool {
        self.pinned.is_some()
    }

    async fn prepare(&mut self, gid: &str, decider: &str) -> Result<(), DbError> {
        let pg_gid = self.shared.pg_gid(gid, decider)?;
        let Some(pinned) = self.unpin() else {
            return Err(DbError::new(
                "25P01",
                format!(
                    "node {}: no transaction is open to prepare as {gid}",
                    self.shared.node
                ),
            ));
        };
        let mut hold = Hold::Pinned(pinned.lock_owned().await);
        hold.conn().transaction_ended();
        if self.failed.load(Ordering::Acquire) {
            let error = DbError::new(
                "25P02",
                format!(
                    "current transaction is aborted: it was rolled back instead of being \
                     prepared as {gid}"
                ),
            );
            return Err(self.abandon(&mut hold, error).await);
        }
        let client = &hold.conn().client;
        // The gid goes into the transaction's WAL entries (set in the same message as the
        // PREPARE: one round trip), so that a node that ran the same distributed DDL skips it.
        let prepare = format!(
            "{}; PREPARE TRANSACTION {}",
            note_gid(gid),
            sql::literal(&pg_gid)
        );
        if let Err(e) = client.batch_execute(&prepare).await {
            return Err(self.shared.error(&e));
        }
        // Postgres answers a PREPARE of a failed transaction by rolling it back, without an
        // error: vote yes only for a transaction that really is prepared.
        let found = client
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_prepared_xacts WHERE gid = $1",
                &[&pg_gid],
            )
            .await
            .map_err(|e| self.shared.error(&e))?;
        if found.is_none() {
            return Err(DbError::new(
                "40001",
                format!(
                    "transaction {gid} was rolled back by PostgreSQL instead of being prepared"
                ),
            ));
        }
        tracing::debug!(node = %self.shared.node, gid, decider, "prepared transaction");
        mycelium_config::failpoint::hit("participant.after_prepare");
        Ok(())
    }

    async fn commit_decision(&mut self, gid: &str, participants: &[String]) -> Result<(), DbError> {
        let mut hold = match self.unpin() {
            Some(pinned) => {
                let mut conn = pinned.lock_owned().await;
                conn.transaction_ended();
                Hold::Pinned(conn)
            }
            None => {
                let conn = self.shared.acquire().await?;
                conn.client
                    .batch_execute("BEGIN")
                    .await
                    .map_err(|e| self.shared.error(&e))?;
                Hold::Pooled(Box::new(conn))
            }
        };
        if self.failed.load(Ordering::Acquire) {
            let error = DbError::new(
                "25P02",
                format!("current transaction is aborted: {gid} was rolled back, not committed"),
            );
            return Err(self.abandon(&mut hold, error).await);
        }
        // Returns when the transaction began (`now()`), for the record sweep's fence: one
        // that began before an abort record the sweep deleted may not decide. The fence is
        // read after the insert, which only succeeds once such a deletion committed, and the
        // sweep raises the fence before it deletes.
        let record = "INSERT INTO mycelium.txn_records (gid, state, participants) \
                      VALUES ($1, 'committed', $2) \
                      RETURNING (extract(epoch FROM now()) * 1000)::int8";
        let joined = participants.join(",");
        let conn = hold.conn();
        let inserted = match conn.prepare(record, &[], true).await {
            Ok((statement, _)) => conn.client.query_one(&statement, &[&gid, &joined]).await,
            Err(e) => Err(e),
        };
        let began_at_ms = inserted
            .as_ref()
            .ok()
            .and_then(|row| row.try_get::<_, i64>(0).ok())
            .unwrap_or(i64::MIN);
        if inserted.is_ok() && began_at_ms <= self.shared.decisions_fenced_ms.load(Ordering::SeqCst)
        {
            let error = DbError::new(
                "40001",
                format!(
                    "could not commit distributed transaction {gid}: it began before an abort \
                     record this node has since deleted, so it may not decide"
                ),
            );
            return Err(self.abandon(&mut hold, error).await);
        }
        if let Err(e) = inserted {
            let error = if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                DbError::new(
                    "40001",
                    format!(
                        "transaction {gid} was already decided as aborted (a participant asked \
                         for its outcome first); it was rolled back"
                    ),
                )
            } else {
                self.shared.error(&e)
            };
            return Err(self.abandon(&mut hold, error).await);
        }
        hold.conn()
            .client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| self.shared.error(&e))
    }
}

/// COPY text format: tab-separated, `\N` for NULL, backslash escapes.
fn copy_text(rows: &[Vec<Option<String>>]) -> String {
    let mut out = String::new();
    for row in rows {
        for (i, field) in row.iter().enumerate() {
            if i > 0 {
                out.push('\t');
            }
            match field {
                None => out.push_str("\\N"),
                Some(text) => {
                    for c in text.chars() {
                        match c {
                            '\\' => out.push_str("\\\\"),
                            '\t' => out.push_str("\\t"),
                            '\n' => out.push_str("\\n"),
                            '\r' => out.push_str("\\r"),
                            c => out.push(c),
                        }
                    }
                }
            }
        }
        out.push('\n');
    }
    out
}

impl Drop for PostgresSession {
    fn drop(&mut self) {
        let Some(pinned) = self.unpin() else {
            return;
        };
        // The client went away inside a transaction: roll it back before the connection
        // returns to the pool, or drop the connection when that cannot be done.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let mut conn = pinned.lock_owned().await;
                    conn.transaction_ended();
                    if conn.client.batch_execute("ROLLBACK").await.is_err() {
                        conn.broken = true;
                    }
                });
            }
            Err(_) => {
                if let Ok(mut conn) = pinned.try_lock() {
                    conn.broken = true;
                }
            }
        }
    }
}
