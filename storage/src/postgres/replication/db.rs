//! A pooled connection driven from a blocking thread, so that replication code can run
//! `ApplyTxn`'s synchronous calls (and mirror the SQLite implementation) over tokio-postgres.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use super::PgReplicationError;
use crate::postgres::Shared;

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// One connection, blocking calls. Statements are prepared once per `Db`.
pub(super) struct Db<'a> {
    client: &'a Client,
    rt: Handle,
    statements: RefCell<HashMap<String, Statement>>,
    /// A ROLLBACK failed: the connection's transaction state is unknown.
    broken: Cell<bool>,
}

impl Db<'_> {
    fn statement(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.rt.block_on(self.client.prepare(sql))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.statement(sql)?;
        self.rt.block_on(self.client.query(&statement, params))
    }

    pub fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, tokio_postgres::Error> {
        let statement = self.statement(sql)?;
        self.rt.block_on(self.client.query_one(&statement, params))
    }

    pub fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let statement = self.statement(sql)?;
        self.rt.block_on(self.client.query_opt(&statement, params))
    }

    pub fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, tokio_postgres::Error> {
        let statement = self.statement(sql)?;
        self.rt.block_on(self.client.execute(&statement, params))
    }

    /// Statements without parameters, through the simple protocol (several allowed).
    pub fn batch(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.rt.block_on(self.client.batch_execute(sql))
    }

    /// Runs `f` in a transaction (`BEGIN` with `mode`): committed when it succeeds, rolled
    /// back otherwise.
    pub fn transaction_as<T>(
        &self,
        mode: &str,
        f: impl FnOnce(&Self) -> Result<T, PgReplicationError>,
    ) -> Result<T, PgReplicationError> {
        self.batch(&format!("BEGIN {mode}"))?;
        let result = f(self).and_then(|value| {
            self.batch("COMMIT")?;
            Ok(value)
        });
        if result.is_err() && self.batch("ROLLBACK").is_err() {
            self.broken.set(true);
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
    let rt = Handle::current();
    let (result, conn) = tokio::task::spawn_blocking(move || {
        let db = Db {
            client: &conn.client,
            rt,
            statements: RefCell::new(HashMap::new()),
            broken: Cell::new(false),
        };
        let result = f(&db);
        let broken = db.broken.get();
        drop(db);
        if broken {
            conn.broken = true;
        }
        (result, conn)
    })
    .await
    .map_err(|_| PgReplicationError::Closed)?;
    drop(conn);
    result
}
