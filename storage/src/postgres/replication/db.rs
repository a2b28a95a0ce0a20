//! A pooled connection driven from a blocking thread, so that replication code can run
//! `ApplyTxn`'s synchronous calls (and mirror the SQLite implementation) over tokio-postgres.

use std::cell::RefCell;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use super::PgReplicationError;
use crate::postgres::Shared;
use crate::postgres::pool::Conn;

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// One connection, blocking calls. Statements are prepared once per connection (in its
/// statement cache, shared with sessions).
pub(super) struct Db<'a> {
    conn: RefCell<&'a mut Conn>,
    rt: Handle,
}

impl Db<'_> {
    /// Runs `f` with the connection and the prepared statements for `sqls`.
    fn with<T>(
        &self,
        sqls: &[&str],
        f: impl AsyncFnOnce(&tokio_postgres::Client, Vec<Statement>) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, tokio_postgres::Error> {
        let mut conn = self.conn.borrow_mut();
        self.rt.block_on(async {
            let mut statements = Vec::with_capacity(sqls.len());
            for sql in sqls {
                statements.push(conn.prepare(sql, &[], true).await?.0);
            }
            f(&conn.client, statements).await
        })
    }

    pub fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, tokio_postgres::Error> {
        self.with(&[sql], async |client, s| client.query(&s[0], params).await)
    }

    pub fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, tokio_postgres::Error> {
        self.with(&[sql], async |client, s| {
            client.query_one(&s[0], params).await
        })
    }

    pub fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        self.with(&[sql], async |client, s| {
            client.query_opt(&s[0], params).await
        })
    }

    pub fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, tokio_postgres::Error> {
        self.with(&[sql], async |client, s| {
            client.execute(&s[0], params).await
        })
    }

    /// Runs statements pipelined (sent together, answered in order): one round trip.
    pub fn execute_all(
        &self,
        statements: &[(&str, Params<'_>)],
    ) -> Result<(), tokio_postgres::Error> {
        let sqls: Vec<&str> = statements.iter().map(|(sql, _)| *sql).collect();
        self.with(&sqls, async |client, prepared| {
            futures::future::try_join_all(
                prepared
                    .iter()
                    .zip(statements)
                    .map(|(statement, (_, params))| client.execute(statement, params)),
            )
            .await?;
            Ok(())
        })
    }

    /// Statements without parameters, through the simple protocol (several allowed).
    pub fn batch(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.with(&[], async |client, _| client.batch_execute(sql).await)
    }

    /// Runs `f` in a transaction: committed when it succeeds, rolled back otherwise. `begin`
    /// follows `BEGIN` in the same message: a mode, then `;` and statements to start with.
    pub fn transaction_as<T>(
        &self,
        begin: &str,
        f: impl FnOnce(&Self) -> Result<T, PgReplicationError>,
    ) -> Result<T, PgReplicationError> {
        self.batch(&format!("BEGIN {begin}"))?;
        let result = f(self).and_then(|value| {
            self.batch("COMMIT")?;
            Ok(value)
        });
        // A connection whose transaction state is unknown is not reused.
        if result.is_err() && self.batch("ROLLBACK").is_err() {
            self.conn.borrow_mut().broken = true;
        }
        result
    }

    pub fn transaction<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, PgReplicationError>,
    ) -> Result<T, PgReplicationError> {
        self.transaction_as("", f)
    }
}

/// Runs `f` on a pooled connection, on a blocking thread of the runtime.
pub(super) async fn run<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Db<'_>) -> Result<T, PgReplicationError> + Send + 'static,
) -> Result<T, PgReplicationError> {
    let mut conn = shared.acquire().await?;
    // Client sessions leave their TimeZone on pooled connections; what replication reads and
    // writes as text is in UTC, as the capture functions print it.
    static UTC: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("UTC"));
    conn.use_zone(&UTC, false).await?;
    let rt = Handle::current();
    let (result, conn) = tokio::task::spawn_blocking(move || {
        let db = Db {
            conn: RefCell::new(&mut conn),
            rt,
        };
        let result = f(&db);
        drop(db);
        (result, conn)
    })
    .await
    .map_err(|_| PgReplicationError::Closed)?;
    drop(conn);
    result
}
