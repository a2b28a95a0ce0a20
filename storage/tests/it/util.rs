use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use mycelium_protocol::{Column, DbError, Execute, Format, NodeSession, Reply};
use mycelium_storage::{SqliteBackend, SqliteOptions, SqliteSession};

pub struct Db {
    pub backend: SqliteBackend,
    pub path: PathBuf,
    pub _dir: tempfile::TempDir,
}

pub fn open() -> Db {
    open_with(SqliteOptions::default())
}

pub fn open_with(options: SqliteOptions) -> Db {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("node.db");
    let backend = SqliteBackend::open(&path, options).unwrap();
    Db {
        backend,
        path,
        _dir: dir,
    }
}

#[derive(Debug, Default)]
pub struct Out {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
    pub tag: String,
}

impl Out {
    /// Rows as text (for text-format results).
    pub fn text(&self) -> Vec<Vec<Option<String>>> {
        self.rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| v.as_ref().map(|b| String::from_utf8(b.clone()).unwrap()))
                    .collect()
            })
            .collect()
    }

    /// Each row's values joined by `|` (NULL as nothing), as `psql -A` prints them.
    pub fn lines(&self) -> Vec<String> {
        self.text()
            .iter()
            .map(|row| {
                row.iter()
                    .map(|v| v.clone().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }

    /// The single value of a one-row, one-column result.
    pub fn value(&self) -> Option<String> {
        self.text()[0][0].clone()
    }

    pub fn oids(&self) -> Vec<u32> {
        self.columns.iter().map(|c| c.type_oid).collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }
}

pub async fn execute(session: &mut SqliteSession, request: Execute) -> Result<Out, DbError> {
    let mut stream = session.execute(request).await?;
    let mut out = Out::default();
    while let Some(reply) = stream.recv().await {
        match reply? {
            Reply::Columns(columns) => out.columns = columns.to_vec(),
            Reply::Rows(rows) => {
                for row in rows.iter() {
                    out.rows
                        .push(row.into_iter().map(|v| v.map(<[u8]>::to_vec)).collect());
                }
            }
            Reply::Complete { tag } => {
                out.tag = tag;
                return Ok(out);
            }
        }
    }
    panic!("stream ended without Complete");
}

pub async fn run(session: &mut SqliteSession, sql: &str) -> Result<Out, DbError> {
    execute(session, Execute::simple(sql)).await
}

/// Runs and panics on error.
pub async fn ok(session: &mut SqliteSession, sql: &str) -> Out {
    match run(session, sql).await {
        Ok(out) => out,
        Err(e) => panic!("{sql}: {e:?}"),
    }
}

pub async fn err(session: &mut SqliteSession, sql: &str) -> DbError {
    match run(session, sql).await {
        Ok(out) => panic!("{sql} succeeded: {out:?}"),
        Err(e) => e,
    }
}

/// Runs with text parameters (types inferred by the backend).
pub async fn run_params(
    session: &mut SqliteSession,
    sql: &str,
    params: &[Option<&str>],
) -> Result<Out, DbError> {
    execute(
        session,
        Execute {
            sql: Arc::from(sql),
            param_types: Arc::from(Vec::new()),
            params: params
                .iter()
                .map(|p| p.map(|s| Bytes::copy_from_slice(s.as_bytes())))
                .collect(),
            param_formats: vec![Format::Text; params.len()],
            result_formats: Arc::from(Vec::new()),
        },
    )
    .await
}

pub fn sqlite(db: &Db) -> rusqlite::Connection {
    rusqlite::Connection::open(&db.path).unwrap()
}

pub fn count_rows(db: &Db, table: &str) -> i64 {
    sqlite(db)
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}
