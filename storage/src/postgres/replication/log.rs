//! [`PostgresShardLog`]: `ShardLog` for one shard of a PostgreSQL backend.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use mycelium_replication::{
    ApplyOutcome, ApplyTxn, ConflictPolicy, Hlc, LogError, NodeId, ReadResult, ReplicationMessage,
    ShardId, ShardLog, SnapshotChunk, SnapshotItem, SnapshotRow, SqlValue, VersionVector, WalEntry,
    apply_entry, decode_entry, kind,
};
use tokio::sync::mpsc;

use super::db::{Db, run};
use super::seal::{LOCKED, seal};
use super::store::{
    CONFLICT_COLUMNS, PgTable, PgTxn, applied_vector, conflict_from_row, corrupt,
    observe_shard_clock, put_conflict_row, put_row_clock, shard_clock, to_i64, warn_unkeyed,
};
use super::{PgReplicationError, PostgresReplication};
use crate::replication::{Chunker, ReplicationIdentity, decode_clock, decode_key, encode_key};

/// The replicated log and data of one shard in a PostgreSQL backend's database. Cheap to
/// clone; every call runs on a pooled connection from a blocking thread.
#[derive(Clone)]
pub struct PostgresShardLog {
    replication: PostgresReplication,
    shard: ShardId,
}

impl std::fmt::Debug for PostgresShardLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresShardLog")
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

fn shard_params(shard: &ShardId) -> (String, i64) {
    (shard.table.clone(), i64::from(shard.shard))
}

/// The writer's transaction for replicated rows: capture triggers and foreign-key checks
/// off (the origin enforced them; cascades arrive as the rows they changed), and the
/// replication tables' lock held.
fn replica_txn<T>(
    db: &Db<'_>,
    f: impl FnOnce(&Db<'_>) -> Result<T, PgReplicationError>,
) -> Result<T, PgReplicationError> {
    db.transaction_as(
        &format!("; SET LOCAL session_replication_role = replica{LOCKED}"),
        f,
    )
}

/// The tables that may hold rows of `shard`: the one it is named after, and any other a row
/// clock of the shard names.
fn shard_tables(db: &Db<'_>, shard: &ShardId) -> Result<BTreeSet<String>, PgReplicationError> {
    let (table, number) = shard_params(shard);
    let mut tables = BTreeSet::from([shard.table.clone()]);
    for row in db.query(
        "SELECT DISTINCT table_name FROM mycelium.row_clocks WHERE shard_table = $1 AND shard = $2",
        &[&table, &number],
    )? {
        tables.insert(row.try_get(0)?);
    }
    Ok(tables)
}

/// The rows of `table` that belong to `shard`, in key order.
fn shard_rows(
    db: &Db<'_>,
    identity: &ReplicationIdentity,
    shard: &ShardId,
    table: &str,
    meta: &PgTable,
) -> Result<Vec<Vec<SqlValue>>, PgReplicationError> {
    let order: Vec<String> = meta
        .pk
        .iter()
        .map(|&i| super::store::quote_ident(&meta.columns[i]))
        .collect();
    let order = if order.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", order.join(", "))
    };
    let sql = format!("SELECT t::text FROM {} t{order}", meta.sql_name);
    let mut out = Vec::new();
    for row in db.query(&sql, &[])? {
        let values = meta.parse_row(&row.try_get::<_, String>(0)?)?;
        if (identity.shard_of)(table, &meta.columns, &values).as_ref() == Some(shard) {
            out.push(values);
        }
    }
    Ok(out)
}

/// A `CREATE TABLE IF NOT EXISTS` for a table: columns, types, NOT NULL and the primary
/// key (defaults, other constraints and indexes are the receiver's own DDL's business).
fn table_ddl(db: &Db<'_>, meta: &PgTable) -> Result<Option<String>, PgReplicationError> {
    let row = db.query_opt(
        "SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod) \
         || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, ', ' ORDER BY a.attnum) \
         || coalesce((SELECT ', CONSTRAINT ' || quote_ident(c.conname) || ' ' \
         || pg_get_constraintdef(c.oid) FROM pg_catalog.pg_constraint c \
         WHERE c.conrelid = $1::text::regclass AND c.contype = 'p'), '') \
         FROM pg_catalog.pg_attribute a \
         WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        &[&meta.sql_name],
    )?;
    let columns: Option<String> = row.map(|r| r.try_get(0)).transpose()?.flatten();
    Ok(columns.map(|c| format!("CREATE TABLE IF NOT EXISTS {} ({c})", meta.sql_name)))
}

/// Sends snapshot items in chunks of about `per_chunk`, holding one back so the final one
fn take_snapshot(
    db: &Db<'_>,
    identity: &ReplicationIdentity,
    shard: &ShardId,
    per_chunk: usize,
    out: mpsc::Sender<Result<SnapshotChunk, LogError>>,
) -> Result<(), PgReplicationError> {
    db.transaction_as("ISOLATION LEVEL REPEATABLE READ READ ONLY", |db| {
        let hlc =
            shard_clock(db, shard)?.unwrap_or_else(|| Hlc::new(0, 0, identity.node().clone()));
        let mut chunker = Chunker::new(
            shard.clone(),
            applied_vector(db, shard)?,
            hlc,
            per_chunk,
            out,
        );
        let mut tables = Vec::new();
        for table in shard_tables(db, shard)? {
            if let Some(meta) = PgTable::load(db, &table)? {
                tables.push((table, meta));
            }
        }
        for (_, meta) in &tables {
            if let Some(ddl) = table_ddl(db, meta)? {
                chunker.push(SnapshotItem::Ddl(ddl))?;
            }
        }
        let (shard_table, number) = shard_params(shard);
        for (table, meta) in &tables {
            let mut clocks: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
            for row in db.query(
                "SELECT key, clock FROM mycelium.row_clocks \
                 WHERE shard_table = $1 AND shard = $2 AND table_name = $3 ORDER BY key",
                &[&shard_table, &number, table],
            )? {
                clocks.insert(row.try_get(0)?, row.try_get(1)?);
            }
            let name: Arc<str> = Arc::from(table.as_str());
            for values in shard_rows(db, identity, shard, table, meta)? {
                let key = meta.key_of(&values);
                let clock = clocks
                    .remove(&encode_key(&key))
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
            }
            // Tombstones: clocks of deleted rows, which must survive.
            let mut tombstones: Vec<(Vec<u8>, Vec<u8>)> = clocks.into_iter().collect();
            tombstones.sort();
            for (key, clock) in tombstones {
                chunker.push(SnapshotItem::Row(SnapshotRow {
                    table: name.clone(),
                    columns: meta.columns.clone(),
                    key: decode_key(&key)?,
                    values: None,
                    clock: decode_clock(&clock)?,
                }))?;
            }
        }
        let sql = format!(
            "SELECT {CONFLICT_COLUMNS} FROM mycelium.conflicts WHERE shard_table = $1 \
             AND shard = $2 ORDER BY table_name, key, first_origin, second_origin"
        );
        for row in db.query(&sql, &[&shard_table, &number])? {
            chunker.push(SnapshotItem::Conflict(conflict_from_row(&row)?))?;
        }
        Ok(chunker.finish()?)
    })
}

fn read_entries(
    db: &Db<'_>,
    shard: &ShardId,
    after: &VersionVector,
    limit: usize,
) -> Result<ReadResult, PgReplicationError> {
    db.transaction_as("ISOLATION LEVEL REPEATABLE READ READ ONLY", |db| {
        let (table, number) = shard_params(shard);
        for row in db.query(
            "SELECT origin, through FROM mycelium.wal_truncated WHERE shard_table = $1 AND shard = $2",
            &[&table, &number],
        )? {
            let origin: String = row.try_get(0)?;
            let through: i64 = row.try_get(1)?;
            if to_i64(after.get(&NodeId::new(&origin))) < through {
                return Ok(ReadResult::Truncated);
            }
        }
        // Start at the first entry of any origin that `after` does not cover.
        let mut start: Option<i64> = None;
        for (origin, sequence) in applied_vector(db, shard)?.iter() {
            let seen = after.get(origin);
            if sequence <= seen {
                continue;
            }
            let pos: Option<i64> = db
                .query_one(
                    "SELECT min(pos) FROM mycelium.wal \
                     WHERE shard_table = $1 AND shard = $2 AND origin = $3 AND sequence > $4",
                    &[&table, &number, &origin.as_str(), &to_i64(seen)],
                )?
                .try_get(0)?;
            if let Some(pos) = pos {
                start = Some(start.map_or(pos, |s| s.min(pos)));
            }
        }
        let Some(start) = start else {
            return Ok(ReadResult::Entries(Vec::new()));
        };
        let mut entries = Vec::new();
        let mut from = start;
        // Pages of entries, skipping those `after` covers, until `limit` are found.
        'pages: loop {
            let rows = db.query(
                "SELECT pos, entry FROM mycelium.wal WHERE shard_table = $1 AND shard = $2 \
                 AND pos >= $3 ORDER BY pos LIMIT 256",
                &[&table, &number, &from],
            )?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let pos: i64 = row.try_get(0)?;
                from = pos + 1;
                let bytes: Vec<u8> = row.try_get(1)?;
                let entry =
                    decode_entry(&bytes).map_err(|e| corrupt("mycelium.wal", e.to_string()))?;
                if entry.sequence > after.get(&entry.origin) {
                    entries.push(entry);
                    if entries.len() >= limit {
                        break 'pages;
                    }
                }
            }
        }
        Ok(ReadResult::Entries(entries))
    })
}

fn truncate_log(
    db: &Db<'_>,
    shard: &ShardId,
    through: &VersionVector,
) -> Result<(), PgReplicationError> {
    replica_txn(db, |db| {
        let (table, number) = shard_params(shard);
        let applied = applied_vector(db, shard)?;
        for (origin, sequence) in through.iter() {
            let sequence = to_i64(sequence.min(applied.get(origin)));
            let origin = origin.as_str();
            db.execute(
                "DELETE FROM mycelium.wal \
                 WHERE shard_table = $1 AND shard = $2 AND origin = $3 AND sequence <= $4",
                &[&table, &number, &origin, &sequence],
            )?;
            db.execute(
                "INSERT INTO mycelium.wal_truncated (shard_table, shard, origin, through) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (shard_table, shard, origin) \
                 DO UPDATE SET through = GREATEST(mycelium.wal_truncated.through, EXCLUDED.through)",
                &[&table, &number, &origin, &sequence],
            )?;
        }
        Ok(())
    })
}

fn stage_chunk(
    db: &Db<'_>,
    shard: &ShardId,
    chunk: &SnapshotChunk,
) -> Result<(), PgReplicationError> {
    let (table, number) = shard_params(shard);
    if chunk.index == 0 {
        db.execute(
            "DELETE FROM mycelium.snapshot_staging WHERE shard_table = $1 AND shard = $2",
            &[&table, &number],
        )?;
    } else {
        let previous: bool = db
            .query_one(
                "SELECT count(*) > 0 FROM mycelium.snapshot_staging \
                 WHERE shard_table = $1 AND shard = $2 AND idx = $3",
                &[&table, &number, &(i64::from(chunk.index) - 1)],
            )?
            .try_get(0)?;
        if !previous {
            return Err(PgReplicationError::SnapshotOrder {
                shard: shard.clone(),
                index: chunk.index,
            });
        }
    }
    let message = ReplicationMessage::Snapshot(chunk.clone());
    db.execute(
        "INSERT INTO mycelium.snapshot_staging (shard_table, shard, idx, chunk) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (shard_table, shard, idx) \
         DO UPDATE SET chunk = EXCLUDED.chunk",
        &[
            &table,
            &number,
            &i64::from(chunk.index),
            &message.encode_payload().as_ref(),
        ],
    )?;
    Ok(())
}

/// Deletes the shard's rows, clocks, conflicts, log and position, before a snapshot's.
fn clear_shard(
    db: &Db<'_>,
    identity: &ReplicationIdentity,
    shard: &ShardId,
) -> Result<(), PgReplicationError> {
    for table in shard_tables(db, shard)? {
        let Some(meta) = PgTable::load(db, &table)? else {
            continue;
        };
        if meta.pk.is_empty() {
            continue;
        }
        for row in shard_rows(db, identity, shard, &table, &meta)? {
            meta.write(db, &meta.columns, &meta.key_of(&row), None)?;
        }
    }
    let (table, number) = shard_params(shard);
    for sql in [
        "DELETE FROM mycelium.row_clocks WHERE shard_table = $1 AND shard = $2",
        "DELETE FROM mycelium.conflicts WHERE shard_table = $1 AND shard = $2",
        "DELETE FROM mycelium.wal WHERE shard_table = $1 AND shard = $2",
        "DELETE FROM mycelium.applied WHERE shard_table = $1 AND shard = $2",
        "DELETE FROM mycelium.wal_truncated WHERE shard_table = $1 AND shard = $2",
        "DELETE FROM mycelium.shard_clock WHERE shard_table = $1 AND shard = $2",
    ] {
        db.execute(sql, &[&table, &number])?;
    }
    Ok(())
}

/// Replaces the shard with the staged snapshot, ending with `last`.
fn install_snapshot(
    db: &Db<'_>,
    identity: &ReplicationIdentity,
    shard: &ShardId,
    last: &SnapshotChunk,
) -> Result<(), PgReplicationError> {
    let (table, number) = shard_params(shard);
    let count: i64 = db
        .query_one(
            "SELECT count(*) FROM mycelium.snapshot_staging WHERE shard_table = $1 AND shard = $2",
            &[&table, &number],
        )?
        .try_get(0)?;
    if count != i64::from(last.index) + 1 {
        return Err(PgReplicationError::SnapshotOrder {
            shard: shard.clone(),
            index: last.index,
        });
    }
    let mut txn = PgTxn::new(db, shard);
    let mut cleared = false;
    let rows = db.query(
        "SELECT chunk FROM mycelium.snapshot_staging WHERE shard_table = $1 AND shard = $2 \
         ORDER BY idx",
        &[&table, &number],
    )?;
    for row in rows {
        let bytes: Vec<u8> = row.try_get(0)?;
        let chunk = match ReplicationMessage::decode_payload(kind::SNAPSHOT, &bytes) {
            Ok(ReplicationMessage::Snapshot(chunk)) => chunk,
            Ok(_) => return Err(corrupt("mycelium.snapshot_staging", "not a snapshot chunk")),
            Err(e) => return Err(corrupt("mycelium.snapshot_staging", e.to_string())),
        };
        for item in chunk.items {
            if let SnapshotItem::Ddl(sql) = &item {
                txn.execute_ddl(sql)?;
                continue;
            }
            if !cleared {
                clear_shard(db, identity, shard)?;
                cleared = true;
            }
            match item {
                SnapshotItem::Ddl(_) => {}
                SnapshotItem::Row(row) => {
                    if let Some(values) = &row.values {
                        let meta = txn
                            .tables
                            .get(db, &row.table)?
                            .ok_or_else(|| PgReplicationError::NoTable(row.table.to_string()))?;
                        if meta.pk.is_empty() {
                            warn_unkeyed(&meta.sql_name);
                            continue;
                        }
                        meta.write(db, &row.columns, &row.key, Some(values))?;
                    }
                    put_row_clock(db, shard, &row.table, &row.key, &row.clock)?;
                }
                SnapshotItem::Conflict(conflict) => put_conflict_row(db, shard, &conflict)?,
            }
        }
    }
    if !cleared {
        clear_shard(db, identity, shard)?;
    }
    for (origin, sequence) in last.applied.iter() {
        let sequence = to_i64(sequence);
        let origin = origin.as_str();
        db.execute(
            "INSERT INTO mycelium.applied (shard_table, shard, origin, sequence) \
             VALUES ($1, $2, $3, $4)",
            &[&table, &number, &origin, &sequence],
        )?;
        // Entries the snapshot covers are not in this node's log: readers behind it get
        // the snapshot path too.
        db.execute(
            "INSERT INTO mycelium.wal_truncated (shard_table, shard, origin, through) \
             VALUES ($1, $2, $3, $4)",
            &[&table, &number, &origin, &sequence],
        )?;
    }
    observe_shard_clock(db, shard, &last.hlc)?;
    db.execute(
        "DELETE FROM mycelium.snapshot_staging WHERE shard_table = $1 AND shard = $2",
        &[&table, &number],
    )?;
    Ok(())
}

impl PostgresShardLog {
    pub(super) fn new(replication: PostgresReplication, shard: ShardId) -> PostgresShardLog {
        PostgresShardLog { replication, shard }
    }

    pub fn shard(&self) -> &ShardId {
        &self.shard
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db<'_>, &ReplicationIdentity, &ShardId) -> Result<T, PgReplicationError>
        + Send
        + 'static,
    ) -> Result<T, PgReplicationError> {
        let identity = self.replication.identity.clone();
        let shard = self.shard.clone();
        run(&self.replication.shared, move |db| f(db, &identity, &shard)).await
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
impl ShardLog for PostgresShardLog {
    async fn applied(&self) -> Result<VersionVector, LogError> {
        Ok(self.run(|db, _, shard| applied_vector(db, shard)).await?)
    }

    async fn read_after(
        &self,
        after: &VersionVector,
        limit: usize,
    ) -> Result<ReadResult, LogError> {
        let after = after.clone();
        Ok(self
            .run(move |db, identity, shard| {
                // Local commits not sealed yet belong before anything read now.
                seal(db, identity)?;
                read_entries(db, shard, &after, limit)
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
            .run(move |db, identity, _| {
                // Local commits first: their rows' clocks must be there to resolve against.
                seal(db, identity)?;
                replica_txn(db, |db| {
                    let mut txn = PgTxn::applying(db, &entry);
                    txn.prefetch(&entry)?;
                    apply_entry(&mut txn, &entry, policy)
                })
            })
            .await?)
    }

    async fn truncate(&self, through: &VersionVector) -> Result<(), LogError> {
        let through = through.clone();
        Ok(self
            .run(move |db, _, shard| truncate_log(db, shard, &through))
            .await?)
    }

    async fn snapshot(
        &self,
        rows_per_chunk: usize,
    ) -> Result<BoxStream<'static, Result<SnapshotChunk, LogError>>, LogError> {
        let (tx, mut rx) = mpsc::channel(2);
        let log = self.clone();
        tokio::spawn(async move {
            let errors = tx.clone();
            let result = log
                .run(move |db, identity, shard| {
                    seal(db, identity)?;
                    take_snapshot(db, identity, shard, rows_per_chunk, tx)
                })
                .await;
            if let Err(e) = result {
                let _ = errors.send(Err(e.into())).await;
            }
        });
        Ok(stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed())
    }

    async fn load_snapshot_chunk(&self, chunk: SnapshotChunk) -> Result<(), LogError> {
        self.check_shard(&chunk.shard)?;
        Ok(self
            .run(move |db, identity, shard| {
                if !chunk.last {
                    return db.transaction(|db| stage_chunk(db, shard, &chunk));
                }
                replica_txn(db, |db| {
                    stage_chunk(db, shard, &chunk)?;
                    install_snapshot(db, identity, shard, &chunk)?;
                    tracing::info!(shard = %shard, applied = ?chunk.applied, "snapshot installed");
                    Ok(())
                })
            })
            .await?)
    }
}
