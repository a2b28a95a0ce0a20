//! The sealer: committed raw changes (`mycelium.changes`) → WAL entries (`mycelium.wal`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use mycelium_replication::{
    Change, RowChange, RowOp, ShardId, SqlValue, VersionVector, WalEntry, record_local,
};

use super::PgReplicationError;
use super::db::Db;
use super::ddl::schema_statements;
use super::store::{PgTxn, applied_vector, corrupt, entry_table_name, mark_ddl_applied};
use super::values::{parse_record, to_value};
use crate::replication::ReplicationIdentity;

/// What starts a transaction that writes the replication tables: the advisory lock every
/// such writer holds, so that sealers (and applies) run one at a time (the key spells
/// "mycelium").
pub(super) const LOCKED: &str = "; SELECT pg_advisory_xact_lock(7888463302155969901)";

/// Transactions sealed per run at most (a run continues until nothing is left).
const TXNS_PER_BATCH: i64 = 500;

/// A table's columns and key as rows were captured with (`mycelium.shapes`).
struct Shape {
    /// The table as entries name it.
    table: Arc<str>,
    columns: Arc<[String]>,
    types: Vec<u32>,
    /// Positions of the primary-key columns, in key order.
    key: Vec<usize>,
}

impl Shape {
    fn from_row(row: &tokio_postgres::Row) -> Result<(i64, Shape), PgReplicationError> {
        let id: i64 = row.try_get(0)?;
        let schema: String = row.try_get(1)?;
        let table: String = row.try_get(2)?;
        let columns: Vec<String> = row.try_get(3)?;
        let types: Vec<u32> = row.try_get(4)?;
        let key_columns: Option<Vec<String>> = row.try_get(5)?;
        let key = key_columns
            .ok_or_else(|| PgReplicationError::NoPrimaryKey(format!("{schema}.{table}")))?
            .iter()
            .map(|k| {
                columns.iter().position(|c| c == k).ok_or_else(|| {
                    corrupt(
                        "mycelium.shapes",
                        format!("key column {k} is not a column of {table}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        if types.len() != columns.len() {
            return Err(corrupt(
                "mycelium.shapes",
                format!("{table}: {} columns, {} types", columns.len(), types.len()),
            ));
        }
        Ok((
            id,
            Shape {
                table: Arc::from(entry_table_name(&schema, &table)),
                columns: Arc::from(columns),
                types,
                key,
            },
        ))
    }

    fn image(&self, text: &str) -> Result<Vec<SqlValue>, PgReplicationError> {
        let fields =
            parse_record(text, self.columns.len()).map_err(|m| corrupt("mycelium.changes", m))?;
        fields
            .iter()
            .zip(&self.types)
            .map(|(f, oid)| {
                to_value(f.as_deref(), *oid).map_err(|m| corrupt("mycelium.changes", m))
            })
            .collect()
    }

    fn key_of(&self, image: &[SqlValue]) -> Vec<SqlValue> {
        self.key
            .iter()
            .map(|&i| image.get(i).cloned().unwrap_or(SqlValue::Null))
            .collect()
    }
}

/// One row of `mycelium.changes`.
struct Raw {
    txid: i64,
    shape: Option<i64>,
    old: Option<String>,
    new: Option<String>,
    ddl: Option<String>,
}

impl Raw {
    fn from_row(row: &tokio_postgres::Row) -> Result<Raw, PgReplicationError> {
        Ok(Raw {
            txid: row.try_get(0)?,
            shape: row.try_get(1)?,
            old: row.try_get(2)?,
            new: row.try_get(3)?,
            ddl: row.try_get(4)?,
        })
    }
}

/// The net effect of one transaction on one row.
struct Net {
    table: Arc<str>,
    key: Vec<SqlValue>,
    /// The row existed before the transaction: its image then, and the columns of it.
    before: Option<(Arc<[String]>, Vec<SqlValue>)>,
    existed: bool,
    /// The row after the transaction, with its columns; `None` once deleted.
    after: Option<(Arc<[String]>, Vec<SqlValue>)>,
    /// Position of the row's last raw change, where its change goes in the entry (after any
    /// DDL of the transaction that reshaped it first).
    at: usize,
}

/// One row's changes with the shards they go to.
type Placed = Vec<(ShardId, RowChange)>;

enum Step {
    Ddl(String),
    Row(usize),
}

/// A transaction's changes, consolidated per row like a SQLite changeset.
#[derive(Default)]
struct Txn {
    rows: Vec<Net>,
    index: HashMap<(Arc<str>, Vec<SqlValue>), usize>,
    ddl: Vec<(usize, String)>,
}

impl Txn {
    fn touch(
        &mut self,
        at: usize,
        table: &Arc<str>,
        key: Vec<SqlValue>,
        before: Option<(Arc<[String]>, Vec<SqlValue>)>,
        after: Option<(Arc<[String]>, Vec<SqlValue>)>,
    ) {
        match self.index.get(&(table.clone(), key.clone())) {
            Some(&i) => {
                let net = &mut self.rows[i];
                net.after = after;
                net.at = at;
            }
            None => {
                self.index
                    .insert((table.clone(), key.clone()), self.rows.len());
                self.rows.push(Net {
                    table: table.clone(),
                    key,
                    existed: before.is_some(),
                    before,
                    after,
                    at,
                });
            }
        }
    }

    fn add(
        &mut self,
        at: usize,
        raw: Raw,
        shapes: &HashMap<i64, Shape>,
    ) -> Result<(), PgReplicationError> {
        let Some(shape_id) = raw.shape else {
            if let Some(ddl) = raw.ddl {
                self.ddl.push((at, schema_statements(&ddl)));
            }
            return Ok(());
        };
        let shape = shapes.get(&shape_id).ok_or_else(|| {
            corrupt(
                "mycelium.changes",
                format!("a change names shape {shape_id}, which is not recorded"),
            )
        })?;
        let table = &shape.table;
        let columns = &shape.columns;
        let old = raw.old.as_deref().map(|t| shape.image(t)).transpose()?;
        let new = raw.new.as_deref().map(|t| shape.image(t)).transpose()?;
        match (old, new) {
            (None, Some(new)) => {
                let key = shape.key_of(&new);
                self.touch(at, table, key, None, Some((columns.clone(), new)));
            }
            (Some(old), None) => {
                let key = shape.key_of(&old);
                self.touch(at, table, key, Some((columns.clone(), old)), None);
            }
            (Some(old), Some(new)) => {
                let old_key = shape.key_of(&old);
                let new_key = shape.key_of(&new);
                if old_key == new_key {
                    let before = Some((columns.clone(), old));
                    self.touch(at, table, new_key, before, Some((columns.clone(), new)));
                } else {
                    // A key change: the old row goes, a new one comes.
                    self.touch(at, table, old_key, Some((columns.clone(), old)), None);
                    self.touch(at, table, new_key, None, Some((columns.clone(), new)));
                }
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// The steps in transaction order, and each row's changes by shard.
    fn changes(self, identity: &ReplicationIdentity) -> (Vec<(usize, Step)>, Vec<Placed>) {
        let mut steps: Vec<(usize, Step)> = self
            .ddl
            .into_iter()
            .map(|(at, sql)| (at, Step::Ddl(sql)))
            .collect();
        let mut per_row = Vec::with_capacity(self.rows.len());
        for (i, net) in self.rows.into_iter().enumerate() {
            steps.push((net.at, Step::Row(i)));
            per_row.push(net_changes(identity, net));
        }
        steps.sort_by_key(|(at, _)| *at);
        (steps, per_row)
    }
}

/// The changes one row's net effect makes, in the shards they belong to.
fn net_changes(identity: &ReplicationIdentity, net: Net) -> Placed {
    let shard_of = |(columns, image): &(Arc<[String]>, Vec<SqlValue>)| {
        (identity.shard_of)(&net.table, columns, image)
    };
    let change = |op, columns: &Arc<[String]>, old: Option<Vec<SqlValue>>, new| RowChange {
        table: net.table.clone(),
        columns: columns.clone(),
        key: net.key.clone(),
        op,
        old,
        new,
    };
    let mut out = Vec::new();
    match (&net.before, &net.after) {
        (_, None) if !net.existed => {}
        (Some(before), None) => {
            if let Some(shard) = shard_of(before) {
                out.push((
                    shard,
                    change(RowOp::Delete, &before.0, Some(before.1.clone()), None),
                ));
            }
        }
        (None, Some(after)) => {
            if let Some(shard) = shard_of(after) {
                out.push((
                    shard,
                    change(RowOp::Insert, &after.0, None, Some(after.1.clone())),
                ));
            }
        }
        (Some(before), Some(after)) => {
            let old_shard = shard_of(before);
            let new_shard = shard_of(after);
            if old_shard == new_shard {
                // The old image only when it has the new one's shape.
                let old = (before.0 == after.0).then(|| before.1.clone());
                if let Some(shard) = new_shard {
                    out.push((
                        shard,
                        change(RowOp::Update, &after.0, old, Some(after.1.clone())),
                    ));
                }
            } else {
                if let Some(shard) = old_shard {
                    out.push((
                        shard,
                        change(RowOp::Delete, &before.0, Some(before.1.clone()), None),
                    ));
                }
                if let Some(shard) = new_shard {
                    out.push((
                        shard,
                        change(RowOp::Insert, &after.0, None, Some(after.1.clone())),
                    ));
                }
            }
        }
        (None, None) => {}
    }
    out
}

/// Seals one batch of committed transactions inside the caller's transaction; returns the
/// entries, in commit order, and whether transactions are left.
fn seal_batch(
    db: &Db<'_>,
    identity: &ReplicationIdentity,
) -> Result<(Vec<WalEntry>, bool), PgReplicationError> {
    // A transaction's rows become visible together, at its commit. Transactions that wrote
    // the same row were serialized by its lock, and the later one's capture ran after the
    // earlier one committed: ordering by the last raw change is their commit order.
    let order = db.query(
        "SELECT txid FROM mycelium.changes GROUP BY txid ORDER BY max(id) LIMIT $1",
        &[&TXNS_PER_BATCH],
    )?;
    let txids: Vec<i64> = order
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    if txids.is_empty() {
        return Ok((Vec::new(), false));
    }
    let shapes: HashMap<i64, Shape> = db
        .query(
            "SELECT id, schema_name, table_name, columns, types, key_columns \
             FROM mycelium.shapes WHERE id IN \
             (SELECT shape FROM mycelium.changes WHERE txid = ANY ($1))",
            &[&txids],
        )?
        .iter()
        .map(Shape::from_row)
        .collect::<Result<_, _>>()?;
    let mut txns: BTreeMap<i64, Txn> = BTreeMap::new();
    for (at, row) in db
        .query(
            "SELECT txid, shape, old_row, new_row, ddl FROM mycelium.changes \
             WHERE txid = ANY ($1) ORDER BY id",
            &[&txids],
        )?
        .iter()
        .enumerate()
    {
        let raw = Raw::from_row(row)?;
        txns.entry(raw.txid).or_default().add(at, raw, &shapes)?;
    }
    let gids: HashMap<i64, String> = db
        .query(
            "SELECT txid, gid FROM mycelium.txn_gids WHERE txid = ANY ($1)",
            &[&txids],
        )?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;

    let mut entries = Vec::new();
    // Applied vectors of the shards this batch logged to (the lock keeps others out).
    let mut vectors: HashMap<ShardId, VersionVector> = HashMap::new();
    for txid in &txids {
        let Some(txn) = txns.remove(txid) else {
            continue;
        };
        let ddl_count = txn.ddl.len();
        let (steps, mut per_row) = txn.changes(identity);
        let mut shards: BTreeSet<ShardId> = per_row
            .iter()
            .flat_map(|changes| changes.iter().map(|(s, _)| s.clone()))
            .collect();
        if ddl_count > 0 {
            shards.extend((identity.ddl_shards)());
        }
        let txn_id = gids
            .get(txid)
            .cloned()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if ddl_count > 0 {
            mark_ddl_applied(db, identity.node(), &txn_id, ddl_count)?;
        }
        let mut by_shard: BTreeMap<ShardId, Vec<Change>> =
            shards.into_iter().map(|s| (s, Vec::new())).collect();
        for (_, step) in steps {
            match step {
                Step::Ddl(sql) => {
                    for changes in by_shard.values_mut() {
                        changes.push(Change::Ddl(sql.clone()));
                    }
                }
                Step::Row(i) => {
                    for (shard, change) in std::mem::take(&mut per_row[i]) {
                        if let Some(changes) = by_shard.get_mut(&shard) {
                            changes.push(Change::Row(change));
                        }
                    }
                }
            }
        }
        for (shard, changes) in by_shard {
            let applied = match vectors.get(&shard) {
                Some(vector) => vector.clone(),
                None => applied_vector(db, &shard)?,
            };
            let entry = WalEntry::next_local(
                shard.clone(),
                &applied,
                (identity.epoch)(&shard),
                identity.clock.now(),
                txn_id.clone(),
                changes,
            );
            let mut txn = PgTxn::new(db, &shard);
            txn.prefetch(&entry)?;
            record_local(&mut txn, &entry)?;
            // What logging the entry made the shard's applied vector.
            vectors.insert(shard, entry.version.clone());
            entries.push(entry);
        }
    }
    db.execute(
        "DELETE FROM mycelium.changes WHERE txid = ANY ($1)",
        &[&txids],
    )?;
    db.execute(
        "DELETE FROM mycelium.txn_gids WHERE txid = ANY ($1)",
        &[&txids],
    )?;
    // Gids of transactions that ended before this statement's snapshot without a change to
    // seal (a decider that wrote no replicated row, a rollback).
    db.execute(
        "DELETE FROM mycelium.txn_gids g \
         WHERE g.txid < txid_snapshot_xmin(txid_current_snapshot()) \
         AND NOT EXISTS (SELECT 1 FROM mycelium.changes c WHERE c.txid = g.txid)",
        &[],
    )?;
    let more = i64::try_from(txids.len()).unwrap_or(i64::MAX) >= TXNS_PER_BATCH;
    Ok((entries, more))
}

/// Seals everything committed so far, a batch per transaction; calls `on_commit` for each
/// batch's entries once it committed.
pub(super) fn seal(
    db: &Db<'_>,
    identity: &ReplicationIdentity,
) -> Result<Vec<WalEntry>, PgReplicationError> {
    let mut all = Vec::new();
    // Nothing to seal (the common case for a call before an apply or a read) costs one
    // round trip; a change committed after this look is sealed by the next call.
    let pending: bool = db
        .query_one("SELECT EXISTS (SELECT 1 FROM mycelium.changes)", &[])?
        .try_get(0)?;
    if !pending {
        return Ok(Vec::new());
    }
    loop {
        let (entries, more) = db.transaction_as(LOCKED, |db| seal_batch(db, identity))?;
        identity.committed(&entries);
        all.extend(entries);
        if !more {
            return Ok(all);
        }
    }
}
