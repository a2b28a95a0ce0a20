//! The redo store of prepared transactions: a second SQLite file next to the data file.
//!
//! SQLite has no prepared state that survives a crash, so a participant makes its vote durable
//! here before it answers yes: the transaction's changeset (from the session extension) and
//! its DDL. The data transaction stays open on its worker, holding the write lock, until the
//! outcome arrives. A separate file has its own lock, so writing it does not wait for the open
//! data transaction. After a crash, every row here is re-established (opened again with the
//! same changes) before the node serves anything.
//!
//! A commit writes an `applied` marker into the data file's `__mycelium_txn_records` in the
//! same transaction as the data, then deletes the row here; a row whose marker exists was
//! committed before a crash and only needs deleting.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mycelium_protocol::{DbError, PreparedTxn};
use rusqlite::{Connection, params};

use crate::errors::{ErrorContext, from_sqlite, internal};

/// A prepared transaction as stored.
#[derive(Debug, Clone)]
pub(crate) struct Redo {
    pub gid: String,
    pub decider: String,
    pub prepared_at_ms: i64,
    pub ddl: Vec<String>,
    pub changeset: Vec<u8>,
}

pub(crate) struct RedoStore {
    conn: Mutex<Connection>,
}

/// `data.sqlite` → `data.sqlite.prepared`.
pub(crate) fn path_for(data: &Path) -> PathBuf {
    let mut name = data.as_os_str().to_owned();
    name.push(".prepared");
    PathBuf::from(name)
}

fn sqlite(e: rusqlite::Error) -> DbError {
    from_sqlite(&e, ErrorContext::default())
}

impl RedoStore {
    pub fn open(path: &Path) -> rusqlite::Result<RedoStore> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // The vote is only worth anything once it is on disk.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS prepared (
                gid TEXT PRIMARY KEY,
                decider TEXT NOT NULL,
                prepared_at_ms INTEGER NOT NULL,
                ddl TEXT NOT NULL,
                changeset BLOB NOT NULL
            )",
        )?;
        Ok(RedoStore {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, DbError> {
        self.conn
            .lock()
            .map_err(|_| internal("the redo store's lock is poisoned"))
    }

    pub fn insert(&self, redo: &Redo) -> Result<(), DbError> {
        let ddl = serde_json::to_string(&redo.ddl)
            .map_err(|e| internal(format!("cannot encode the transaction's DDL: {e}")))?;
        self.lock()?
            .execute(
                "INSERT INTO prepared (gid, decider, prepared_at_ms, ddl, changeset)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    redo.gid,
                    redo.decider,
                    redo.prepared_at_ms,
                    ddl,
                    redo.changeset
                ],
            )
            .map_err(sqlite)?;
        Ok(())
    }

    pub fn delete(&self, gid: &str) -> Result<(), DbError> {
        self.lock()?
            .execute("DELETE FROM prepared WHERE gid = ?1", [gid])
            .map_err(sqlite)?;
        Ok(())
    }

    /// The votes held here, without their changes: what the node holds prepared on disk.
    pub fn votes(&self) -> Result<Vec<PreparedTxn>, DbError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached("SELECT gid, decider, prepared_at_ms FROM prepared")
            .map_err(sqlite)?;
        let rows = stmt
            .query_map([], |row| {
                Ok(PreparedTxn {
                    gid: row.get(0)?,
                    decider: row.get(1)?,
                    prepared_at_ms: row.get(2)?,
                })
            })
            .map_err(sqlite)?;
        rows.collect::<Result<_, _>>().map_err(sqlite)
    }

    pub fn all(&self) -> Result<Vec<Redo>, DbError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare(
                "SELECT gid, decider, prepared_at_ms, ddl, changeset FROM prepared
                 ORDER BY prepared_at_ms",
            )
            .map_err(sqlite)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Vec<u8>>(4)?,
                ))
            })
            .map_err(sqlite)?;
        let mut all = Vec::new();
        for row in rows {
            let (gid, decider, prepared_at_ms, ddl, changeset) = row.map_err(sqlite)?;
            let ddl = serde_json::from_str(&ddl).map_err(|e| {
                internal(format!(
                    "the redo record of prepared transaction {gid} is damaged: {e}"
                ))
            })?;
            all.push(Redo {
                gid,
                decider,
                prepared_at_ms,
                ddl,
                changeset,
            });
        }
        Ok(all)
    }
}
