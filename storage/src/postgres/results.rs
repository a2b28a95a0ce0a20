//! Running one statement: parameters in as the client sent them, rows out as `DataRow`s in
//! the formats the client asked for, streamed in batches (or collected first when Postgres
//! must print some values, see `transcode.rs`).

use std::collections::{HashMap, VecDeque};
use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use mycelium_protocol::types::{self, TimeZone};
use mycelium_protocol::{Column, DataRowsBuilder, DbError, Execute, Format, Reply, ReplySource};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};
use tokio_postgres::{NoTls, Row, RowStream, Statement};

use super::Shared;
use super::pool::{Conn, Pooled, type_for_oid};
use super::sql;
use super::transcode::{self, Plan, Printed, Wanted};
use super::wait_die::Watch;

/// Rows are sent in batches of about this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// A connection held for the length of a statement: borrowed from the pool, or the
/// session's pinned one (locked so the session's next statement waits for this one).
pub(crate) enum Hold {
    Pooled(Box<Pooled>),
    Pinned(tokio::sync::OwnedMutexGuard<Pooled>),
}

impl Hold {
    pub fn conn(&mut self) -> &mut Conn {
        match self {
            Hold::Pooled(conn) => conn,
            Hold::Pinned(guard) => guard,
        }
    }
}

/// A parameter passed through as the client encoded it.
#[derive(Debug)]
pub(crate) struct RawParam<'a> {
    pub value: Option<&'a [u8]>,
    pub format: Format,
}

impl ToSql for RawParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self.value {
            Some(bytes) => {
                out.put_slice(bytes);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> tokio_postgres::types::Format {
        match self.format {
            Format::Text => tokio_postgres::types::Format::Text,
            Format::Binary => tokio_postgres::types::Format::Binary,
        }
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A result value's bytes as Postgres sent them.
struct RawValue<'a>(&'a [u8]);

impl<'a> FromSql<'a> for RawValue<'a> {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(RawValue(raw))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// The `Reply::Columns` of a prepared statement.
pub(crate) async fn describe_columns(
    shared: &Shared,
    conn: &Conn,
    columns: &[tokio_postgres::Column],
) -> Result<Vec<Column>, DbError> {
    let mut out = Vec::with_capacity(columns.len());
    for column in columns {
        let oid = column.type_().oid();
        let type_size = match mycelium_protocol::types::PgType::from_oid(oid) {
            Some(ty) if ty != mycelium_protocol::types::PgType::Unknown => ty.type_size(),
            _ => shared.type_info(conn, oid).await?.typlen,
        };
        out.push(Column {
            name: column.name().to_owned(),
            table_oid: column.table_oid().unwrap_or(0),
            column_id: column.column_id().unwrap_or(0),
            type_oid: oid,
            type_size,
            type_modifier: column.type_modifier(),
        });
    }
    Ok(out)
}

/// A statement waiting for its first read to run.
pub(crate) struct Start {
    pub request: Execute,
    pub how: How,
}

/// How a statement runs.
pub(crate) enum How {
    /// Through a named prepared statement.
    Prepared {
        statement: Statement,
        /// The statement came from the connection's cache.
        cached: bool,
        /// Keep a re-prepared statement in the cache.
        keep: bool,
    },
    /// As the unnamed statement: Parse, Bind, Describe, Execute in one round trip.
    Unnamed,
}

/// A cached statement whose result columns changed under it (DDL since it was prepared).
fn plan_changed(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        db.code() == &SqlState::FEATURE_NOT_SUPPORTED
            && db
                .message()
                .starts_with("cached plan must not change result type")
    })
}

/// A statement whose replies are being read.
pub(crate) struct Running {
    pub shared: Arc<Shared>,
    pub hold: Option<Hold>,
    pub start: Option<Start>,
    pub rows: Option<Pin<Box<RowStream>>>,
    /// The first row, read early for its columns (an unnamed statement's description).
    pub first: Option<Row>,
    /// Sent before the first row when the statement returns rows.
    pub columns: Option<Arc<[Column]>>,
    pub plans: Vec<Plan>,
    pub words: Vec<String>,
    /// The session's failed-transaction flag, when the statement runs in a transaction.
    pub txn_failed: Option<Arc<AtomicBool>>,
    /// The client's zone, which `timestamptz` values printed here are shown in.
    pub zone: TimeZone,
    pub buffered: Option<VecDeque<Result<Reply, DbError>>>,
    pub ended: bool,
    pub done: bool,
    pub count: u64,
    pub builder: DataRowsBuilder,
    /// Wait-die's watch over the statement's lock waits, while it runs.
    pub watch: Option<Watch>,
}

impl Running {
    /// Binds and executes the statement; on success the columns are ready to send.
    async fn begin(&mut self, start: Start) -> Result<(), DbError> {
        let Start { request, how } = start;
        match how {
            How::Prepared {
                statement,
                cached,
                keep,
            } => self.begin_prepared(request, statement, cached, keep).await,
            How::Unnamed => self.begin_unnamed(request).await,
        }
    }

    async fn begin_prepared(
        &mut self,
        request: Execute,
        mut statement: Statement,
        cached: bool,
        keep: bool,
    ) -> Result<(), DbError> {
        let in_txn = self.txn_failed.is_some();
        let mut retried = false;
        let rows = loop {
            let Some(hold) = self.hold.as_mut() else {
                return Err(lost_connection());
            };
            let params = raw_params(&request.params, &request.param_formats);
            let result = hold
                .conn()
                .client
                .query_raw(&statement, params.iter().map(|p| p as &dyn ToSql))
                .await;
            match result {
                Ok(rows) => break rows,
                // Outside a transaction nothing ran yet: prepare again and retry once.
                Err(e) if cached && !in_txn && !retried && plan_changed(&e) => {
                    hold.conn().forget(&request.sql, &request.param_types);
                    retried = true;
                    match hold
                        .conn()
                        .prepare(&request.sql, &request.param_types, keep)
                        .await
                    {
                        Ok((fresh, _)) => statement = fresh,
                        Err(e) => return Err(self.fail(&e)),
                    }
                }
                Err(e) => {
                    if cached && plan_changed(&e) {
                        hold.conn().forget(&request.sql, &request.param_types);
                    }
                    return Err(self.fail(&e));
                }
            }
        };
        self.rows = Some(Box::pin(rows));
        self.describe_result(statement.columns(), &request).await
    }

    /// Runs the statement as the unnamed one. Its description comes with the rows: the
    /// first row carries the columns; a statement that can return rows but returned none is
    /// described afterwards (Parse and Describe only: nothing runs twice).
    async fn begin_unnamed(&mut self, request: Execute) -> Result<(), DbError> {
        let Some(hold) = self.hold.as_mut() else {
            return Err(lost_connection());
        };
        let params = raw_params(&request.params, &request.param_formats);
        let typed = params.iter().enumerate().map(|(i, param)| {
            let oid = request.param_types.get(i).copied().unwrap_or(0);
            (param as &dyn ToSql, type_for_oid(oid))
        });
        let result = hold
            .conn()
            .client
            .query_typed_raw(&request.sql, typed)
            .await;
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => return Err(self.fail(&e)),
        };
        let mut rows = Box::pin(rows);
        let first = rows.next().await;
        self.rows = Some(rows);
        match first {
            Some(Ok(row)) => {
                let result = self.describe_result(row.columns(), &request).await;
                self.first = Some(row);
                result
            }
            Some(Err(e)) => Err(self.fail(&e)),
            None => {
                self.ended = true;
                if !sql::may_return_rows(&request.sql, &self.words) {
                    return Ok(());
                }
                let Some(hold) = self.hold.as_mut() else {
                    return Err(lost_connection());
                };
                let types: Vec<Type> = request
                    .param_types
                    .iter()
                    .map(|&oid| type_for_oid(oid))
                    .collect();
                match hold.conn().client.prepare_typed(&request.sql, &types).await {
                    Ok(statement) => self.describe_result(statement.columns(), &request).await,
                    Err(e) => Err(self.fail(&e)),
                }
            }
        }
    }

    /// The columns to send before the rows, and how each value is passed on.
    async fn describe_result(
        &mut self,
        columns: &[tokio_postgres::Column],
        request: &Execute,
    ) -> Result<(), DbError> {
        if !columns.is_empty() {
            let Some(hold) = self.hold.as_mut() else {
                return Err(lost_connection());
            };
            match describe_columns(&self.shared, hold.conn(), columns).await {
                Ok(described) => self.columns = Some(Arc::from(described)),
                Err(e) => {
                    self.finish();
                    return Err(e);
                }
            }
        }
        self.plans = columns
            .iter()
            .enumerate()
            .map(|(i, c)| transcode::column_plan(c.type_(), request.result_format(i)))
            .collect();
        Ok(())
    }

    /// The next row: the one read early, then the stream's.
    async fn next_row(&mut self) -> Option<Result<Row, tokio_postgres::Error>> {
        if let Some(row) = self.first.take() {
            return Some(Ok(row));
        }
        if self.ended {
            return None;
        }
        match self.rows.as_mut() {
            Some(rows) => rows.next().await,
            None => None,
        }
    }

    fn fail(&mut self, e: &tokio_postgres::Error) -> DbError {
        if let Some(flag) = &self.txn_failed {
            flag.store(true, Ordering::Release);
        }
        let error = self.shared.error(e);
        let error = match &self.watch {
            Some(watch) => watch.explain(error),
            None => error,
        };
        self.finish();
        error
    }

    /// The statement is over: release the connection.
    fn finish(&mut self) {
        self.done = true;
        self.watch = None;
        self.rows = None;
        self.first = None;
        self.hold = None;
    }

    fn complete(&mut self) -> Reply {
        let count = self
            .rows
            .as_ref()
            .and_then(|rows| rows.rows_affected())
            .unwrap_or(self.count);
        let tag = sql::command_tag(&self.words, count, false);
        self.finish();
        Reply::Complete { tag }
    }

    fn encode(&mut self, row: &Row, printed: &Printed) -> Result<(), DbError> {
        types::with_session_time_zone(self.zone, || self.encode_in_zone(row, printed))
    }

    fn encode_in_zone(&mut self, row: &Row, printed: &Printed) -> Result<(), DbError> {
        self.builder.begin_row();
        for (i, plan) in self.plans.iter().enumerate() {
            let value: Option<RawValue<'_>> = row
                .try_get(i)
                .map_err(|e| DbError::new("XX000", format!("cannot read a result value: {e}")))?;
            match value {
                None => self.builder.push_null(),
                Some(RawValue(bytes)) if *plan == Plan::Copy => self.builder.push_value(bytes),
                Some(RawValue(bytes)) => {
                    let mut failed = None;
                    self.builder.push_with(|out| {
                        if let Err(e) = transcode::write_text(plan, bytes, out, printed) {
                            failed = Some(e);
                        }
                    });
                    if let Some(e) = failed {
                        return Err(e);
                    }
                }
            }
        }
        self.builder.end_row();
        self.count += 1;
        Ok(())
    }

    async fn next_streamed(&mut self) -> Option<Result<Reply, DbError>> {
        let printed = Printed::new();
        loop {
            match self.next_row().await {
                Some(Ok(row)) => {
                    if let Err(e) = self.encode(&row, &printed) {
                        self.finish();
                        return Some(Err(e));
                    }
                    if self.builder.byte_len() >= BATCH_BYTES {
                        return Some(Ok(Reply::Rows(self.builder.take())));
                    }
                }
                Some(Err(e)) => return Some(Err(self.fail(&e))),
                None => {
                    self.ended = true;
                    break;
                }
            }
        }
        if self.builder.row_count() > 0 {
            return Some(Ok(Reply::Rows(self.builder.take())));
        }
        Some(Ok(self.complete()))
    }

    /// Reads every row, has Postgres print the values only it can, then queues the replies.
    async fn buffer_all(&mut self) -> VecDeque<Result<Reply, DbError>> {
        let mut queue = VecDeque::new();
        let mut rows = Vec::new();
        loop {
            match self.next_row().await {
                Some(Ok(row)) => rows.push(row),
                Some(Err(e)) => {
                    queue.push_back(Err(self.fail(&e)));
                    return queue;
                }
                None => {
                    self.ended = true;
                    break;
                }
            }
        }
        let printed = match self.print_on_server(&rows).await {
            Ok(printed) => printed,
            Err(e) => {
                self.finish();
                queue.push_back(Err(e));
                return queue;
            }
        };
        for row in &rows {
            if let Err(e) = self.encode(row, &printed) {
                self.finish();
                queue.push_back(Err(e));
                return queue;
            }
            if self.builder.byte_len() >= BATCH_BYTES {
                queue.push_back(Ok(Reply::Rows(self.builder.take())));
            }
        }
        if self.builder.row_count() > 0 {
            queue.push_back(Ok(Reply::Rows(self.builder.take())));
        }
        queue.push_back(Ok(self.complete()));
        queue
    }

    async fn print_on_server(&mut self, rows: &[Row]) -> Result<Printed, DbError> {
        let mut wanted = Wanted::new();
        for row in rows {
            for (i, plan) in self.plans.iter().enumerate() {
                if !plan.may_need_server() {
                    continue;
                }
                let value: Option<RawValue<'_>> = row.try_get(i).map_err(|e| {
                    DbError::new("XX000", format!("cannot read a result value: {e}"))
                })?;
                if let Some(RawValue(bytes)) = value {
                    transcode::collect(plan, bytes, &mut wanted)?;
                }
            }
        }
        let mut printed = Printed::new();
        let shared = self.shared.clone();
        let Some(hold) = self.hold.as_mut() else {
            return Ok(printed);
        };
        let conn = hold.conn();
        for (oid, values) in wanted {
            let values: Vec<Vec<u8>> = values.into_iter().collect();
            let texts = print_values(&shared, conn, oid, &values).await?;
            printed.insert(
                oid,
                values.into_iter().zip(texts).collect::<HashMap<_, _>>(),
            );
        }
        Ok(printed)
    }
}

/// `value::text` for binary values of type `oid`, in one round trip when the type has an
/// array type (an array parameter, unnested in order).
async fn print_values(
    shared: &Shared,
    conn: &mut Conn,
    oid: u32,
    values: &[Vec<u8>],
) -> Result<Vec<String>, DbError> {
    let info = shared.type_info(conn, oid).await?;
    let mut texts = Vec::with_capacity(values.len());
    if info.typarray != 0 {
        let (statement, _) = conn
            .prepare(
                "SELECT u.v::text FROM unnest($1) WITH ORDINALITY AS u(v, n) ORDER BY u.n",
                &[info.typarray],
                true,
            )
            .await
            .map_err(|e| shared.error(&e))?;
        let mut array = BytesMut::new();
        array.put_i32(1);
        array.put_i32(0);
        array.put_u32(oid);
        array.put_i32(values.len() as i32);
        array.put_i32(1);
        for value in values {
            array.put_i32(value.len() as i32);
            array.put_slice(value);
        }
        let param = RawParam {
            value: Some(&array),
            format: Format::Binary,
        };
        let rows = conn
            .client
            .query(&statement, &[&param])
            .await
            .map_err(|e| shared.error(&e))?;
        for row in rows {
            texts.push(row.try_get(0).map_err(|e| shared.error(&e))?);
        }
    } else {
        let (statement, _) = conn
            .prepare("SELECT $1::text", &[oid], true)
            .await
            .map_err(|e| shared.error(&e))?;
        for value in values {
            let param = RawParam {
                value: Some(value),
                format: Format::Binary,
            };
            let row = conn
                .client
                .query_one(&statement, &[&param])
                .await
                .map_err(|e| shared.error(&e))?;
            texts.push(row.try_get(0).map_err(|e| shared.error(&e))?);
        }
    }
    if texts.len() != values.len() {
        return Err(DbError::new(
            "XX000",
            format!(
                "PostgreSQL printed {} of {} values",
                texts.len(),
                values.len()
            ),
        ));
    }
    Ok(texts)
}

#[async_trait]
impl ReplySource for Running {
    async fn next(&mut self) -> Option<Result<Reply, DbError>> {
        if let Some(start) = self.start.take()
            && let Err(e) = self.begin(start).await
        {
            return Some(Err(e));
        }
        if let Some(columns) = self.columns.take() {
            return Some(Ok(Reply::Columns(columns)));
        }
        if let Some(queue) = self.buffered.as_mut() {
            return queue.pop_front();
        }
        if self.done {
            return None;
        }
        if self.plans.iter().any(Plan::may_need_server) {
            let mut queue = self.buffer_all().await;
            let first = queue.pop_front();
            self.buffered = Some(queue);
            return first;
        }
        self.next_streamed().await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Never started (nothing reached the server) or already over.
        if self.done || self.start.is_some() {
            return;
        }
        // Dropped mid-statement (a cancel or timeout upstream): stop the query on the server
        // and keep the connection until it is idle again, so the cancel cannot hit the
        // connection's next statement.
        let rows = self.rows.take();
        let Some(mut hold) = self.hold.take() else {
            return;
        };
        let cancel = hold.conn().client.cancel_token();
        let txn_failed = self.txn_failed.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            hold.conn().broken = true;
            return;
        };
        runtime.spawn(async move {
            drop(rows);
            if let Err(e) = cancel.cancel_query(NoTls).await {
                tracing::debug!(error = %e, "cannot cancel a PostgreSQL statement");
            }
            let conn = hold.conn();
            // In a transaction, a statement that still works says the cancel did not abort it.
            let probe = if txn_failed.is_some() { "SELECT 1" } else { "" };
            match conn.client.simple_query(probe).await {
                Ok(_) => {}
                Err(e) if e.as_db_error().is_some() => {
                    if let Some(flag) = txn_failed {
                        flag.store(true, Ordering::Release);
                    }
                }
                Err(_) => conn.broken = true,
            }
            drop(hold);
        });
    }
}

fn lost_connection() -> DbError {
    DbError::new("XX000", "the statement lost its connection")
}

/// Bytes of a parameter list as `RawParam`s, in the client's formats.
pub(crate) fn raw_params<'a>(params: &'a [Option<Bytes>], formats: &[Format]) -> Vec<RawParam<'a>> {
    params
        .iter()
        .enumerate()
        .map(|(i, value)| RawParam {
            value: value.as_deref(),
            format: formats.get(i).copied().unwrap_or_default(),
        })
        .collect()
}
