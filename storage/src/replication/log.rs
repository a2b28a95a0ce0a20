//! [`SqliteShardLog`]: `ShardLog` for one shard of a SQLite backend.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use mycelium_replication::{
    ApplyOutcome, ConflictPolicy, Hlc, LogError, ReadResult, ReplicationMessage, RowClock, ShardId,
    ShardLog, SnapshotChunk, SnapshotItem, SnapshotRow, SqlValue, VersionVector, WalEntry,
    apply_entry, decode_entry, kind,
};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::store::{
    CONFLICT_COLUMNS, ShardTxn, TableMeta, applied_vector, conflict_from_row, decode_clock,
    decode_key, encode_key, put_conflict_row, put_row_clock, shard_clock, value_of, write_data_row,
};
use super::{Chunker, ReplicationError, ReplicationIdentity};
use crate::catalog::quote_ident;
use crate::engine::{ForeignKeys, Pool};

/// The replicated log and data of one shard in a SQLite backend's file. Cheap to clone;
/// every call runs on one of the backend's worker threads.
#[derive(Clone)]
pub struct SqliteShardLog {
    pool: Arc<Pool>,
    shard: ShardId,
    identity: ReplicationIdentity,
}

impl std::fmt::Debug for SqliteShardLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteShardLog")
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

/// Runs `f` in a write transaction: committed when it succeeds, rolled back otherwise.
fn write_txn<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, ReplicationError>,
) -> Result<T, ReplicationError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match f(conn) {
        Ok(value) => match conn.execute_batch("COMMIT") {
            Ok(()) => Ok(value),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Runs `f` in a read transaction, so everything it reads is one consistent state.
fn read_txn<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, ReplicationError>,
) -> Result<T, ReplicationError> {
    conn.execute_batch("BEGIN DEFERRED")?;
    let result = f(conn);
    let _ = conn.execute_batch("COMMIT");
    result
}

fn sql_literal(v: &rusqlite::types::Value) -> String {
    use rusqlite::types::Value;
    match v {
        Value::Null => "NULL".to_owned(),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => format!("{f:?}"),
        Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
        Value::Blob(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("X'{hex}'")
        }
    }
}

/// The schema of one table as DDL items: its CREATE statements (each on its own, so one
/// the receiver already has does not hold back the rest) and its catalog rows.
fn table_ddl(conn: &Connection, table: &str) -> Result<Vec<String>, ReplicationError> {
    let mut items = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT sql FROM sqlite_master WHERE tbl_name = ?1 AND sql IS NOT NULL \
         ORDER BY type = 'table' DESC, name",
    )?;
    for sql in stmt.query_map([table], |row| row.get::<_, String>(0))? {
        items.push(sql?);
    }
    if items.is_empty() {
        return Ok(items);
    }
    let mut catalog = Vec::new();
    let table_row = conn
        .query_row(
            "SELECT kind, pk_name, options FROM __mycelium_tables WHERE name = ?1",
            [table],
            |row| {
                Ok([
                    row.get::<_, rusqlite::types::Value>(0)?,
                    row.get(1)?,
                    row.get(2)?,
                ])
            },
        )
        .optional()?;
    if let Some([kind, pk_name, options]) = table_row {
        catalog.push(format!(
            "INSERT INTO __mycelium_tables (name, kind, pk_name, options) VALUES ({}, {}, {}, {}) \
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, pk_name = excluded.pk_name, \
             options = excluded.options",
            sql_literal(&rusqlite::types::Value::Text(table.to_owned())),
            sql_literal(&kind),
            sql_literal(&pk_name),
            sql_literal(&options)
        ));
    }
    catalog.push(format!(
        "DELETE FROM __mycelium_columns WHERE table_name = {}",
        sql_literal(&rusqlite::types::Value::Text(table.to_owned()))
    ));
    let mut stmt = conn.prepare_cached(
        "SELECT table_name, column_name, ordinal, type_oid, typmod, default_pg \
         FROM __mycelium_columns WHERE table_name = ?1 ORDER BY ordinal",
    )?;
    let rows = stmt.query_map([table], |row| {
        (0..6)
            .map(|i| row.get::<_, rusqlite::types::Value>(i))
            .collect::<rusqlite::Result<Vec<_>>>()
    })?;
    for row in rows {
        let values: Vec<String> = row?.iter().map(sql_literal).collect();
        catalog.push(format!(
            "INSERT INTO __mycelium_columns (table_name, column_name, ordinal, type_oid, typmod, \
             default_pg) VALUES ({})",
            values.join(", ")
        ));
    }
    items.push(catalog.join(";\n"));
    Ok(items)
}

/// The tables that may hold rows of `shard`: the one it is named after, and any other a row
/// clock of the shard names.
fn shard_tables(conn: &Connection, shard: &ShardId) -> Result<BTreeSet<String>, ReplicationError> {
    let mut tables = BTreeSet::from([shard.table.clone()]);
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT table_name FROM __mycelium_row_clocks WHERE shard_table = ?1 AND shard = ?2",
    )?;
    for table in stmt.query_map(params![shard.table, shard.shard], |row| row.get(0))? {
        tables.insert(table?);
    }
    Ok(tables)
}

/// Calls `f` with every row of `table` that belongs to `shard`.
fn for_each_row(
    conn: &Connection,
    identity: &ReplicationIdentity,
    shard: &ShardId,
    table: &str,
    meta: &TableMeta,
    mut f: impl FnMut(Vec<SqlValue>) -> Result<(), ReplicationError>,
) -> Result<(), ReplicationError> {
    let columns: Vec<String> = meta.columns.iter().map(|c| quote_ident(c)).collect();
    let order: Vec<String> = meta
        .pk
        .iter()
        .map(|&i| quote_ident(&meta.columns[i]))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {}",
        columns.join(", "),
        quote_ident(table),
        order.join(", ")
    );
    let mut stmt = conn.prepare(&sql)?;
    let width = meta.columns.len();
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let values = (0..width)
            .map(|i| row.get_ref(i).map(value_of))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if (identity.shard_of)(table, &meta.columns, &values).as_ref() == Some(shard) {
            f(values)?;
        }
    }
    Ok(())
}

/// Assembles snapshot items into chunks of about `per_chunk`, sending each full chunk as
fn take_snapshot(
    conn: &Connection,
    identity: &ReplicationIdentity,
    shard: &ShardId,
    per_chunk: usize,
    out: mpsc::Sender<Result<SnapshotChunk, LogError>>,
) -> Result<(), ReplicationError> {
    read_txn(conn, |conn| {
        let hlc =
            shard_clock(conn, shard)?.unwrap_or_else(|| Hlc::new(0, 0, identity.node().clone()));
        let mut chunker = Chunker::new(
            shard.clone(),
            applied_vector(conn, shard)?,
            hlc,
            per_chunk,
            out,
        );
        let tables = shard_tables(conn, shard)?;
        for table in &tables {
            for ddl in table_ddl(conn, table)? {
                chunker.push(SnapshotItem::Ddl(ddl))?;
            }
        }
        let mut clock_stmt = conn.prepare_cached(
            "SELECT clock FROM __mycelium_row_clocks WHERE table_name = ?1 AND key = ?2",
        )?;
        for table in &tables {
            let Some(meta) = TableMeta::load(conn, table)? else {
                continue;
            };
            let name: Arc<str> = Arc::from(table.as_str());
            for_each_row(conn, identity, shard, table, &meta, |values| {
                let key = meta.key_of(&values);
                let clock: Option<Vec<u8>> = clock_stmt
                    .query_row(params![table, encode_key(&key)], |row| row.get(0))
                    .optional()?;
                let clock = clock
                    .map(|c| decode_clock(&c))
                    .transpose()?
                    .unwrap_or_default();
                chunker.push(SnapshotItem::Row(SnapshotRow {
                    table: name.clone(),
                    columns: meta.columns.clone(),
                    key,
                    values: Some(values),
                    clock,
                }))?;
                Ok(())
            })?;
            // Tombstones: deleted rows whose clocks must survive.
            let mut stmt = conn.prepare_cached(
                "SELECT key, clock FROM __mycelium_row_clocks \
                 WHERE shard_table = ?1 AND shard = ?2 AND table_name = ?3 ORDER BY key",
            )?;
            let mut rows = stmt.query(params![shard.table, shard.shard, table])?;
            while let Some(row) = rows.next()? {
                let key = decode_key(&row.get::<_, Vec<u8>>(0)?)?;
                if meta.pk.is_empty() || meta.read_row(conn, table, &key)?.is_some() {
                    continue;
                }
                let clock: RowClock = decode_clock(&row.get::<_, Vec<u8>>(1)?)?;
                chunker.push(SnapshotItem::Row(SnapshotRow {
                    table: name.clone(),
                    columns: meta.columns.clone(),
                    key,
                    values: None,
                    clock,
                }))?;
            }
        }
        let sql = format!(
            "SELECT {CONFLICT_COLUMNS} FROM __mycelium_conflicts \
             WHERE shard_table = ?1 AND shard = ?2 ORDER BY table_name, key, first_origin, second_origin"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![shard.table, shard.shard])?;
        while let Some(row) = rows.next()? {
            let conflict = conflict_from_row(row)?.decode()?;
            chunker.push(SnapshotItem::Conflict(conflict))?;
        }
        Ok(chunker.finish()?)
    })
}

/// A shard's entries from a position on, in log order. It walks the index on
/// (shard_table, shard, pos) from `pos` and stops with the caller: without it SQLite took
/// every retained entry of the shard (up to `wal_max_entries`) from the unique index and
/// sorted them, so shipping grew slower as the log grew (bench/README.md).
///
/// The equalities compare with `+?n`, not `?n`: SQLite recompiles a statement whose plan
/// matched `ORDER BY` (or `min()`) against an equality with a parameter each time that
/// parameter is bound again, so these two compiled at every read (5 % of a SQLite node's CPU
/// under point writes). The plans are the same.
const READ_ENTRIES: &str = "SELECT entry FROM __mycelium_wal \
     WHERE shard_table = +?1 AND shard = +?2 AND pos >= ?3 ORDER BY pos";

/// Where the first entry of an origin after a sequence is in a shard's log (see
/// [`READ_ENTRIES`] for the `+?n`).
const FIRST_AFTER: &str = "SELECT min(pos) FROM __mycelium_wal \
     WHERE shard_table = +?1 AND shard = +?2 AND origin = +?3 AND sequence > ?4";

fn read_entries(
    conn: &Connection,
    shard: &ShardId,
    after: &VersionVector,
    limit: usize,
) -> Result<ReadResult, ReplicationError> {
    read_txn(conn, |conn| {
        let mut stmt = conn.prepare_cached(
            "SELECT origin, through FROM __mycelium_wal_truncated WHERE shard_table = ?1 AND shard = ?2",
        )?;
        let truncated = stmt.query_map(params![shard.table, shard.shard], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in truncated {
            let (origin, through) = row?;
            let seen = after.get(&mycelium_replication::NodeId::new(&origin));
            if i64::try_from(seen).unwrap_or(i64::MAX) < through {
                return Ok(ReadResult::Truncated);
            }
        }
        // Start at the first entry of any origin that `after` does not cover.
        let mut start: Option<i64> = None;
        let mut first = conn.prepare_cached(FIRST_AFTER)?;
        for (origin, sequence) in applied_vector(conn, shard)?.iter() {
            let seen = after.get(origin);
            if sequence <= seen {
                continue;
            }
            let pos: Option<i64> = first.query_row(
                params![
                    shard.table,
                    shard.shard,
                    origin.as_str(),
                    i64::try_from(seen).unwrap_or(i64::MAX)
                ],
                |row| row.get(0),
            )?;
            if let Some(pos) = pos {
                start = Some(start.map_or(pos, |s| s.min(pos)));
            }
        }
        let Some(start) = start else {
            return Ok(ReadResult::Entries(Vec::new()));
        };
        let mut stmt = conn.prepare_cached(READ_ENTRIES)?;
        let mut rows = stmt.query(params![shard.table, shard.shard, start])?;
        let mut entries = Vec::new();
        while entries.len() < limit
            && let Some(row) = rows.next()?
        {
            let bytes: Vec<u8> = row.get(0)?;
            let entry = decode_entry(&bytes).map_err(|e| ReplicationError::Corrupt {
                table: "__mycelium_wal",
                message: e.to_string(),
            })?;
            if entry.sequence > after.get(&entry.origin) {
                entries.push(entry);
            }
        }
        Ok(ReadResult::Entries(entries))
    })
}

fn truncate_log(
    conn: &Connection,
    shard: &ShardId,
    through: &VersionVector,
) -> Result<(), ReplicationError> {
    write_txn(conn, |conn| {
        let applied = applied_vector(conn, shard)?;
        for (origin, sequence) in through.iter() {
            let sequence = i64::try_from(sequence.min(applied.get(origin))).unwrap_or(i64::MAX);
            conn.prepare_cached(
                "DELETE FROM __mycelium_wal \
                 WHERE shard_table = ?1 AND shard = ?2 AND origin = ?3 AND sequence <= ?4",
            )?
            .execute(params![shard.table, shard.shard, origin.as_str(), sequence])?;
            conn.prepare_cached(
                "INSERT INTO __mycelium_wal_truncated (shard_table, shard, origin, through) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (shard_table, shard, origin) \
                 DO UPDATE SET through = max(through, excluded.through)",
            )?
            .execute(params![shard.table, shard.shard, origin.as_str(), sequence])?;
        }
        Ok(())
    })
}

fn stage_chunk(
    conn: &Connection,
    shard: &ShardId,
    chunk: &SnapshotChunk,
) -> Result<(), ReplicationError> {
    if chunk.index == 0 {
        conn.execute(
            "DELETE FROM __mycelium_snapshot_staging WHERE shard_table = ?1 AND shard = ?2",
            params![shard.table, shard.shard],
        )?;
    } else {
        let previous: bool = conn.query_row(
            "SELECT count(*) > 0 FROM __mycelium_snapshot_staging \
             WHERE shard_table = ?1 AND shard = ?2 AND idx = ?3",
            params![shard.table, shard.shard, chunk.index - 1],
            |row| row.get(0),
        )?;
        if !previous {
            return Err(ReplicationError::SnapshotOrder {
                shard: shard.clone(),
                index: chunk.index,
            });
        }
    }
    let message = ReplicationMessage::Snapshot(chunk.clone());
    conn.execute(
        "INSERT OR REPLACE INTO __mycelium_snapshot_staging (shard_table, shard, idx, chunk) \
         VALUES (?1, ?2, ?3, ?4)",
        params![
            shard.table,
            shard.shard,
            chunk.index,
            message.encode_payload().as_ref()
        ],
    )?;
    Ok(())
}

/// Deletes the shard's rows, clocks, conflicts, log and position, before a snapshot's.
fn clear_shard(
    conn: &Connection,
    identity: &ReplicationIdentity,
    shard: &ShardId,
    extra_tables: &BTreeSet<String>,
) -> Result<(), ReplicationError> {
    let mut tables = shard_tables(conn, shard)?;
    tables.extend(extra_tables.iter().cloned());
    for table in &tables {
        let Some(meta) = TableMeta::load(conn, table)? else {
            continue;
        };
        if meta.pk.is_empty() {
            continue;
        }
        let mut keys = Vec::new();
        for_each_row(conn, identity, shard, table, &meta, |row| {
            keys.push(meta.key_of(&row));
            Ok(())
        })?;
        for key in keys {
            write_data_row(conn, &meta, table, &meta.columns, &key, None)?;
        }
    }
    for sql in [
        "DELETE FROM __mycelium_row_clocks WHERE shard_table = ?1 AND shard = ?2",
        "DELETE FROM __mycelium_conflicts WHERE shard_table = ?1 AND shard = ?2",
        "DELETE FROM __mycelium_wal WHERE shard_table = ?1 AND shard = ?2",
        "DELETE FROM __mycelium_applied WHERE shard_table = ?1 AND shard = ?2",
        "DELETE FROM __mycelium_wal_truncated WHERE shard_table = ?1 AND shard = ?2",
        "DELETE FROM __mycelium_shard_clock WHERE shard_table = ?1 AND shard = ?2",
    ] {
        conn.execute(sql, params![shard.table, shard.shard])?;
    }
    Ok(())
}

/// Replaces the shard with the staged snapshot, ending with `last`; returns whether the
/// schema changed.
fn install_snapshot(
    conn: &Connection,
    identity: &ReplicationIdentity,
    shard: &ShardId,
    last: &SnapshotChunk,
) -> Result<bool, ReplicationError> {
    let count: u32 = conn.query_row(
        "SELECT count(*) FROM __mycelium_snapshot_staging WHERE shard_table = ?1 AND shard = ?2",
        params![shard.table, shard.shard],
        |row| row.get(0),
    )?;
    if count != last.index + 1 {
        return Err(ReplicationError::SnapshotOrder {
            shard: shard.clone(),
            index: last.index,
        });
    }
    let mut txn = ShardTxn::new(conn, shard);
    // The snapshot's tables: they may not exist here before its DDL runs.
    let mut snapshot_tables = BTreeSet::new();
    let mut cleared = false;
    for index in 0..=last.index {
        let bytes: Vec<u8> = conn.query_row(
            "SELECT chunk FROM __mycelium_snapshot_staging \
             WHERE shard_table = ?1 AND shard = ?2 AND idx = ?3",
            params![shard.table, shard.shard, index],
            |row| row.get(0),
        )?;
        let chunk = match ReplicationMessage::decode_payload(kind::SNAPSHOT, &bytes) {
            Ok(ReplicationMessage::Snapshot(chunk)) => chunk,
            Ok(_) => {
                return Err(ReplicationError::Corrupt {
                    table: "__mycelium_snapshot_staging",
                    message: "not a snapshot chunk".to_owned(),
                });
            }
            Err(e) => {
                return Err(ReplicationError::Corrupt {
                    table: "__mycelium_snapshot_staging",
                    message: e.to_string(),
                });
            }
        };
        for item in chunk.items {
            if let SnapshotItem::Ddl(sql) = &item {
                mycelium_replication::ApplyTxn::execute_ddl(&mut txn, sql)?;
                continue;
            }
            if !cleared {
                clear_shard(conn, identity, shard, &snapshot_tables)?;
                cleared = true;
            }
            match item {
                SnapshotItem::Ddl(_) => {}
                SnapshotItem::Row(row) => {
                    snapshot_tables.insert(row.table.to_string());
                    if let Some(values) = &row.values {
                        let meta = txn
                            .tables
                            .get(conn, &row.table)?
                            .ok_or_else(|| ReplicationError::NoTable(row.table.to_string()))?;
                        write_data_row(
                            conn,
                            meta,
                            &row.table,
                            &row.columns,
                            &row.key,
                            Some(values),
                        )?;
                    }
                    put_row_clock(conn, shard, &row.table, &row.key, &row.clock)?;
                }
                SnapshotItem::Conflict(conflict) => put_conflict_row(conn, shard, &conflict)?,
            }
        }
    }
    if !cleared {
        clear_shard(conn, identity, shard, &snapshot_tables)?;
    }
    for (origin, sequence) in last.applied.iter() {
        let sequence = i64::try_from(sequence).unwrap_or(i64::MAX);
        conn.execute(
            "INSERT INTO __mycelium_applied (shard_table, shard, origin, sequence) \
             VALUES (?1, ?2, ?3, ?4)",
            params![shard.table, shard.shard, origin.as_str(), sequence],
        )?;
        // Entries the snapshot covers are not in this node's log: readers behind it get
        // the snapshot path too.
        conn.execute(
            "INSERT INTO __mycelium_wal_truncated (shard_table, shard, origin, through) \
             VALUES (?1, ?2, ?3, ?4)",
            params![shard.table, shard.shard, origin.as_str(), sequence],
        )?;
    }
    super::store::observe_shard_clock(conn, shard, &last.hlc)?;
    conn.execute(
        "DELETE FROM __mycelium_snapshot_staging WHERE shard_table = ?1 AND shard = ?2",
        params![shard.table, shard.shard],
    )?;
    Ok(txn.schema_changed)
}

impl SqliteShardLog {
    pub(crate) fn new(pool: Arc<Pool>, shard: ShardId, identity: ReplicationIdentity) -> Self {
        SqliteShardLog {
            pool,
            shard,
            identity,
        }
    }

    pub fn shard(&self) -> &ShardId {
        &self.shard
    }

    /// Runs `f` on an idle worker whose foreign keys are as `foreign_keys` says; `f` answers
    /// its result and whether it changed the schema.
    async fn run<T: Send + 'static>(
        &self,
        foreign_keys: ForeignKeys,
        f: impl FnOnce(&Connection) -> Result<(T, bool), ReplicationError> + Send + 'static,
    ) -> Result<T, ReplicationError> {
        let (tx, rx) = oneshot::channel();
        self.pool
            .run_task(
                Box::new(move |conn| {
                    let result = f(conn);
                    let changed = matches!(result, Ok((_, true)));
                    let _ = tx.send(result.map(|(value, _)| value));
                    changed
                }),
                foreign_keys,
            )
            .await?;
        rx.await.map_err(|_| ReplicationError::Closed)?
    }

    fn check_shard(&self, shard: &ShardId) -> Result<(), LogError> {
        if shard == &self.shard {
            Ok(())
        } else {
            Err(LogError::new(format!(
                "an entry of shard {shard} was given to the log of shard {}",
                self.shard
            )))
        }
    }
}

#[async_trait]
impl ShardLog for SqliteShardLog {
    async fn applied(&self) -> Result<VersionVector, LogError> {
        let shard = self.shard.clone();
        Ok(self
            .run(ForeignKeys::Either, move |conn| {
                Ok((applied_vector(conn, &shard)?, false))
            })
            .await?)
    }

    async fn read_after(
        &self,
        after: &VersionVector,
        limit: usize,
    ) -> Result<ReadResult, LogError> {
        let shard = self.shard.clone();
        let after = after.clone();
        Ok(self
            .run(ForeignKeys::Either, move |conn| {
                Ok((read_entries(conn, &shard, &after, limit)?, false))
            })
            .await?)
    }

    async fn apply(
        &self,
        entry: &WalEntry,
        policy: ConflictPolicy,
    ) -> Result<ApplyOutcome, LogError> {
        self.check_shard(&entry.shard)?;
        let entry = entry.clone();
        Ok(self
            // A replica takes rows as the primary decided them: see `ForeignKeys::Off`.
            .run(ForeignKeys::Off, move |conn| {
                write_txn(conn, |conn| {
                    let mut txn = ShardTxn::applying(conn, &entry);
                    let outcome = apply_entry(&mut txn, &entry, policy)?;
                    Ok((outcome, txn.schema_changed))
                })
            })
            .await?)
    }

    async fn truncate(&self, through: &VersionVector) -> Result<(), LogError> {
        let shard = self.shard.clone();
        let through = through.clone();
        Ok(self
            .run(ForeignKeys::Either, move |conn| {
                Ok((truncate_log(conn, &shard, &through)?, false))
            })
            .await?)
    }

    async fn snapshot(
        &self,
        rows_per_chunk: usize,
    ) -> Result<BoxStream<'static, Result<SnapshotChunk, LogError>>, LogError> {
        let (tx, mut rx) = mpsc::channel(2);
        let shard = self.shard.clone();
        let identity = self.identity.clone();
        self.pool
            .run_task(
                Box::new(move |conn| {
                    let errors = tx.clone();
                    if let Err(e) = take_snapshot(conn, &identity, &shard, rows_per_chunk, tx) {
                        let _ = errors.blocking_send(Err(e.into()));
                    }
                    false
                }),
                ForeignKeys::Either,
            )
            .await
            .map_err(ReplicationError::from)?;
        Ok(stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed())
    }

    async fn load_snapshot_chunk(&self, chunk: SnapshotChunk) -> Result<(), LogError> {
        self.check_shard(&chunk.shard)?;
        let identity = self.identity.clone();
        let shard = self.shard.clone();
        Ok(self
            .run(ForeignKeys::Off, move |conn| {
                if !chunk.last {
                    stage_chunk(conn, &shard, &chunk)?;
                    return Ok(((), false));
                }
                write_txn(conn, |conn| {
                    stage_chunk(conn, &shard, &chunk)?;
                    let changed = install_snapshot(conn, &identity, &shard, &chunk)?;
                    tracing::info!(shard = %shard, applied = ?chunk.applied, "snapshot installed");
                    Ok(((), changed))
                })
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_entries_walks_an_index_from_the_position_without_sorting() {
        let conn = Connection::open_in_memory().expect("in-memory database");
        conn.execute_batch(crate::replication::REPLICATION_DDL)
            .expect("replication tables");
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {READ_ENTRIES}"))
            .expect("plan");
        let plan: Vec<String> = stmt
            .query_map(params!["t", 0, 1], |row| row.get(3))
            .expect("plan rows")
            .collect::<Result<_, _>>()
            .expect("plan text");
        assert_eq!(
            plan,
            [
                "SEARCH __mycelium_wal USING INDEX __mycelium_wal_shard_pos (shard_table=? AND shard=? AND pos>?)"
            ]
        );
    }

    /// The log reads of shipping run once per commit with new positions: compiled once per
    /// connection, not at every read.
    #[test]
    fn log_reads_are_not_compiled_again_for_new_positions() {
        let conn = Connection::open_in_memory().expect("in-memory database");
        conn.execute_batch(crate::replication::REPLICATION_DDL)
            .expect("replication tables");
        for sequence in 1..=5i64 {
            conn.execute(
                "INSERT INTO __mycelium_wal (shard_table, shard, origin, sequence, entry) \
                 VALUES ('t', 0, 'n1', ?1, x'00')",
                [sequence],
            )
            .expect("an entry");
        }
        for sequence in 0..5i64 {
            let mut first = conn.prepare_cached(FIRST_AFTER).expect("first");
            let pos: Option<i64> = first
                .query_row(params!["t", 0, "n1", sequence], |row| row.get(0))
                .expect("first position");
            assert_eq!(pos, Some(sequence + 1));
            let mut entries = conn.prepare_cached(READ_ENTRIES).expect("entries");
            let read = entries
                .query_map(params!["t", 0, sequence + 1], |row| {
                    row.get::<_, Vec<u8>>(0)
                })
                .expect("entries")
                .count();
            assert_eq!(read, usize::try_from(5 - sequence).expect("a count"));
        }
        for sql in [FIRST_AFTER, READ_ENTRIES] {
            let stmt = conn.prepare_cached(sql).expect("cached");
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "{sql}"
            );
        }
    }
}
