//! From a transaction's changeset to the WAL entries of the shards it wrote, recorded inside
//! that transaction before it commits.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use mycelium_replication::{Change, RowChange, RowOp, ShardId, SqlValue, WalEntry, record_local};
use rusqlite::fallible_streaming_iterator::FallibleStreamingIterator;
use rusqlite::hooks::Action;
use rusqlite::session::{ChangesetItem, ChangesetIter};
use rusqlite::{Connection, OptionalExtension};

use super::store::{
    ShardTxn, TableMeta, Tables, applied_vector, encode_key, mark_ddl_applied, value_of,
};
use super::{ReplicationError, ReplicationIdentity};
use crate::catalog::is_internal_table;

/// Values of a changeset row: `None` where the changeset holds no value (the unchanged
/// columns of an UPDATE).
fn values<'a>(
    n: usize,
    get: impl Fn(usize) -> rusqlite::Result<rusqlite::types::ValueRef<'a>>,
) -> Vec<Option<SqlValue>> {
    (0..n).map(|i| get(i).ok().map(value_of)).collect()
}

/// The key of a changeset row, in the table's key order.
fn key_from(meta: &TableMeta, row: &[Option<SqlValue>]) -> Vec<SqlValue> {
    meta.pk
        .iter()
        .map(|&i| row.get(i).cloned().flatten().unwrap_or(SqlValue::Null))
        .collect()
}

fn full(row: Vec<Option<SqlValue>>) -> Vec<SqlValue> {
    row.into_iter()
        .map(|v| v.unwrap_or(SqlValue::Null))
        .collect()
}

/// The shard a row last recorded for this key, from its clock.
fn recorded_shard(
    conn: &Connection,
    table: &str,
    key: &[SqlValue],
) -> Result<Option<ShardId>, ReplicationError> {
    Ok(conn
        .prepare_cached(
            "SELECT shard_table, shard FROM __mycelium_row_clocks \
             WHERE table_name = ?1 AND key = ?2",
        )?
        .query_row(rusqlite::params![table, encode_key(key)], |r| {
            Ok(ShardId {
                table: r.get(0)?,
                shard: r.get(1)?,
            })
        })
        .optional()?)
}

/// Row changes grouped by shard, in a stable order.
#[derive(Default)]
struct Grouped(BTreeMap<ShardId, Vec<Change>>);

impl Grouped {
    fn push(&mut self, shard: ShardId, change: RowChange) {
        self.0.entry(shard).or_default().push(Change::Row(change));
    }
}

/// Turns one changeset item into whole-row changes of their shards.
fn convert(
    conn: &Connection,
    identity: &ReplicationIdentity,
    tables: &mut Tables,
    item: &ChangesetItem,
    out: &mut Grouped,
) -> Result<(), ReplicationError> {
    let op = item.op()?;
    let table = op.table_name().to_owned();
    // Bookkeeping (catalog, transaction records, policies) is never shard data; the catalog
    // travels through the DDL statements that write it.
    if is_internal_table(&table) || table.starts_with("__mycelium") {
        return Ok(());
    }
    let width = usize::try_from(op.number_of_columns()).unwrap_or(0);
    let code = op.code();
    // The table was dropped later in the transaction: its rows went with it.
    let Some(meta) = tables.get(conn, &table)?.cloned() else {
        return Ok(());
    };
    if meta.pk.is_empty() {
        return Err(ReplicationError::NoPrimaryKey(table));
    }
    let columns = meta.columns.clone();
    let same_shape = width == columns.len();
    let name: Arc<str> = Arc::from(table.as_str());
    let change = |op: RowOp, key: Vec<SqlValue>, old, new| RowChange {
        table: name.clone(),
        columns: columns.clone(),
        key,
        op,
        old,
        new,
    };
    match code {
        Action::SQLITE_INSERT => {
            let new = values(width, |i| item.new_value(i));
            let key = key_from(&meta, &new);
            // A DDL statement later in the transaction reshaped the table: read the row as
            // it is now.
            let new = if same_shape {
                full(new)
            } else {
                match meta.read_row(conn, &table, &key)? {
                    Some(row) => row,
                    None => return Ok(()),
                }
            };
            if let Some(shard) = (identity.shard_of)(&table, &columns, &new) {
                out.push(shard, change(RowOp::Insert, key, None, Some(new)));
            }
        }
        Action::SQLITE_DELETE => {
            let old = values(width, |i| item.old_value(i));
            let key = key_from(&meta, &old);
            let (old, shard) = if same_shape {
                let old = full(old);
                let shard = (identity.shard_of)(&table, &columns, &old);
                (Some(old), shard)
            } else {
                (None, recorded_shard(conn, &table, &key)?)
            };
            if let Some(shard) = shard {
                out.push(shard, change(RowOp::Delete, key, old, None));
            }
        }
        Action::SQLITE_UPDATE => {
            // The changeset holds the key and the changed columns only.
            let changed_old = values(width, |i| item.old_value(i));
            let key = key_from(&meta, &changed_old);
            let Some(new) = meta.read_row(conn, &table, &key)? else {
                return Ok(());
            };
            let new_shard = (identity.shard_of)(&table, &columns, &new);
            let old = same_shape.then(|| {
                new.iter()
                    .zip(changed_old)
                    .map(|(now, before)| before.unwrap_or_else(|| now.clone()))
                    .collect::<Vec<_>>()
            });
            let old_shard = match &old {
                Some(old) => (identity.shard_of)(&table, &columns, old),
                None => new_shard.clone(),
            };
            if old_shard == new_shard {
                if let Some(shard) = new_shard {
                    out.push(shard, change(RowOp::Update, key, old, Some(new)));
                }
            } else {
                // The shard key changed: the row leaves one shard and enters another.
                if let Some(shard) = old_shard {
                    out.push(shard, change(RowOp::Delete, key.clone(), old, None));
                }
                if let Some(shard) = new_shard {
                    out.push(shard, change(RowOp::Insert, key, None, Some(new)));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Records the WAL entries of a transaction about to commit: its changeset (the session
/// extension's, or a prepared transaction's kept one) and its DDL. Returns the entries, to
/// announce once the commit succeeded.
pub(crate) fn record(
    conn: &Connection,
    identity: &ReplicationIdentity,
    changeset: &[u8],
    ddl: &[String],
    txn_id: Option<&str>,
) -> Result<Vec<WalEntry>, ReplicationError> {
    let mut grouped = Grouped::default();
    if !changeset.is_empty() {
        let mut tables = Tables::default();
        let mut input: &[u8] = changeset;
        let reader: &mut dyn Read = &mut input;
        let mut iter = ChangesetIter::start_strm(&reader)?;
        while let Some(item) = iter.next()? {
            convert(conn, identity, &mut tables, item, &mut grouped)?;
        }
    }
    if !ddl.is_empty() {
        for shard in (identity.ddl_shards)() {
            grouped.0.entry(shard).or_default();
        }
        for changes in grouped.0.values_mut() {
            let rows = std::mem::take(changes);
            changes.extend(ddl.iter().cloned().map(Change::Ddl));
            changes.extend(rows);
        }
    }
    let txn_id = txn_id
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // Marked even when no entry carries the DDL (a node leading no shard): the copy of the
    // same distributed transaction arriving from a primary's log is then a no-op here.
    if !ddl.is_empty() {
        mark_ddl_applied(conn, identity.node(), &txn_id, ddl.len())?;
    }
    if grouped.0.is_empty() {
        return Ok(Vec::new());
    }
    let mut entries = Vec::with_capacity(grouped.0.len());
    for (shard, changes) in grouped.0 {
        let mut txn = ShardTxn::new(conn, &shard);
        let applied = applied_vector(conn, &shard)?;
        let entry = WalEntry::next_local(
            shard.clone(),
            &applied,
            (identity.epoch)(&shard),
            identity.clock.now(),
            txn_id.clone(),
            changes,
        );
        record_local(&mut txn, &entry)?;
        entries.push(entry);
    }
    Ok(entries)
}
