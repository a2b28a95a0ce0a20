//! The replication tables in the `mycelium` schema and [`PgTxn`], the `ApplyTxn` of one
//! shard inside an open PostgreSQL transaction.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use mycelium_replication::{
    ApplyTxn, Change, Conflict, Hlc, NodeId, RowChange, RowClock, RowStamp, ShardId, SqlValue,
    VersionVector, WalEntry, encode_entry,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::PgReplicationError;
use super::db::Db;
use super::values::{Param, parse_record, to_value};
use crate::replication::{decode_clock, decode_key, encode_clock, encode_key, key_text};

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn corrupt(table: &'static str, message: impl Into<String>) -> PgReplicationError {
    PgReplicationError::Corrupt {
        table,
        message: message.into(),
    }
}

/// The name a table has in entries: bare in `public` (as on SQLite nodes), else
/// `schema.table`.
pub(super) fn entry_table_name(schema: &str, table: &str) -> String {
    if schema == "public" {
        table.to_owned()
    } else {
        format!("{schema}.{table}")
    }
}

/// Warns, once per table and process, that rows of `table` (no primary key here) arriving
/// from another node are left out: nothing identifies them.
pub(super) fn warn_unkeyed(table: &str) {
    static WARNED: std::sync::LazyLock<std::sync::Mutex<HashSet<String>>> =
        std::sync::LazyLock::new(Default::default);
    let first = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(table.to_owned());
    if first {
        tracing::warn!(
            table,
            "table has no primary key on this PostgreSQL node: its replicated \
            rows are not applied here (add a primary key to replicate it)"
        );
    }
}

/// A table as this node's schema has it.
#[derive(Debug, Clone)]
pub(super) struct PgTable {
    /// The table as SQL names it (`regclass` text, quoted as needed).
    pub sql_name: String,
    pub columns: Arc<[String]>,
    /// Per column: its type as SQL names it, and its type OID.
    pub types: Vec<(String, u32)>,
    /// Generated columns, which are computed, never written.
    pub generated: Vec<bool>,
    /// Positions in `columns` of the primary-key columns, in key order.
    pub pk: Vec<usize>,
}

impl PgTable {
    /// The table an entry names, if it exists here.
    pub fn load(db: &Db<'_>, name: &str) -> Result<Option<PgTable>, PgReplicationError> {
        let Some(row) = db.query_opt(
            "SELECT c.oid, c.oid::regclass::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND ((n.nspname = 'public' AND c.relname = $1) \
             OR n.nspname || '.' || c.relname = $1) \
             ORDER BY n.nspname <> 'public' LIMIT 1",
            &[&name],
        )?
        else {
            return Ok(None);
        };
        let oid: u32 = row.try_get(0)?;
        let sql_name: String = row.try_get(1)?;
        let mut columns = Vec::new();
        let mut types = Vec::new();
        let mut generated = Vec::new();
        for row in db.query(
            "SELECT attname::text, atttypid::regtype::text, atttypid, attgenerated <> '' \
             FROM pg_catalog.pg_attribute \
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )? {
            columns.push(row.try_get::<_, String>(0)?);
            types.push((row.try_get::<_, String>(1)?, row.try_get::<_, u32>(2)?));
            generated.push(row.try_get::<_, bool>(3)?);
        }
        let mut pk = Vec::new();
        for row in db.query(
            "SELECT a.attname::text FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_attribute a \
               ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[]) \
             WHERE i.indrelid = $1 AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&oid],
        )? {
            let name: String = row.try_get(0)?;
            if let Some(i) = columns.iter().position(|c| *c == name) {
                pk.push(i);
            }
        }
        Ok(Some(PgTable {
            sql_name,
            columns: Arc::from(columns),
            types,
            generated,
            pk,
        }))
    }

    pub fn key_of(&self, row: &[SqlValue]) -> Vec<SqlValue> {
        self.pk
            .iter()
            .map(|&i| row.get(i).cloned().unwrap_or(SqlValue::Null))
            .collect()
    }

    /// The text of a row value of this table as replicated values.
    pub fn parse_row(&self, text: &str) -> Result<Vec<SqlValue>, PgReplicationError> {
        let fields = parse_record(text, self.columns.len()).map_err(|m| corrupt("row value", m))?;
        fields
            .iter()
            .zip(&self.types)
            .map(|(f, (_, oid))| to_value(f.as_deref(), *oid).map_err(|m| corrupt("row value", m)))
            .collect()
    }

    fn column_type(&self, column: &str) -> Result<&str, PgReplicationError> {
        self.columns
            .iter()
            .position(|c| c == column)
            .map(|i| self.types[i].0.as_str())
            .ok_or_else(|| PgReplicationError::NoColumn {
                table: self.sql_name.clone(),
                column: column.to_owned(),
            })
    }

    fn is_generated(&self, column: &str) -> bool {
        self.columns
            .iter()
            .position(|c| c == column)
            .is_some_and(|i| self.generated[i])
    }

    /// `pk1 = $n::text::type AND ...` with the key's parameters from `$first`.
    fn pk_where(&self, key: &[SqlValue], first: usize, params: &mut Vec<Param>) -> String {
        self.pk
            .iter()
            .zip(key)
            .enumerate()
            .map(|(n, (&i, value))| {
                let param = Param::of(value);
                let sql = format!(
                    "{} = {}",
                    quote_ident(&self.columns[i]),
                    param.placeholder(first + n, &self.types[i].0)
                );
                params.push(param);
                sql
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// Upserts a whole row (by its primary key), or deletes it when `new` is `None`.
    /// Upserts a whole row (by its primary key), or deletes it when `new` is `None`.
    pub fn write(
        &self,
        db: &Db<'_>,
        columns: &[String],
        key: &[SqlValue],
        new: Option<&[SqlValue]>,
    ) -> Result<(), PgReplicationError> {
        execute_writes(db, &[self.write_statement(columns, key, new)?])
    }

    /// The statement [`PgTable::write`] runs.
    pub fn write_statement(
        &self,
        columns: &[String],
        key: &[SqlValue],
        new: Option<&[SqlValue]>,
    ) -> Result<Write, PgReplicationError> {
        if self.pk.is_empty() {
            return Err(PgReplicationError::NoPrimaryKey(self.sql_name.clone()));
        }
        let mut params = Vec::new();
        let Some(new) = new else {
            let sql = format!(
                "DELETE FROM {} WHERE {}",
                self.sql_name,
                self.pk_where(key, 1, &mut params)
            );
            return Ok(Write { sql, params });
        };
        let mut names = Vec::new();
        let mut values = Vec::new();
        for (column, value) in columns.iter().zip(new) {
            if self.is_generated(column) {
                continue;
            }
            let param = Param::of(value);
            values.push(param.placeholder(params.len() + 1, self.column_type(column)?));
            names.push(quote_ident(column));
            params.push(param);
        }
        let pk_names: Vec<String> = self
            .pk
            .iter()
            .map(|&i| quote_ident(&self.columns[i]))
            .collect();
        let updates: Vec<String> = names
            .iter()
            .filter(|c| !pk_names.contains(c))
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let action = if updates.is_empty() {
            "NOTHING".to_owned()
        } else {
            format!("UPDATE SET {}", updates.join(", "))
        };
        let sql = format!(
            "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({}) ON CONFLICT ({}) DO {action}",
            self.sql_name,
            names.join(", "),
            values.join(", "),
            pk_names.join(", "),
        );
        Ok(Write { sql, params })
    }
}

/// Stores row clocks: `$1` tables, `$2` keys, `$5` clocks, of shard `$3`/`$4`.
const UPSERT_CLOCKS: &str = "INSERT INTO mycelium.row_clocks \
     (table_name, key, shard_table, shard, clock) \
     SELECT u.t, u.k, $3, $4, u.c FROM unnest($1::text[], $2::bytea[], $5::bytea[]) \
     AS u(t, k, c) ON CONFLICT (table_name, key) DO UPDATE SET \
     shard_table = EXCLUDED.shard_table, shard = EXCLUDED.shard, clock = EXCLUDED.clock";

/// A data write: its SQL and parameters.
pub(super) struct Write {
    sql: String,
    params: Vec<Param>,
}

/// Writes pipelined a thousand at a time (one round trip each), in order.
pub(super) fn execute_writes(db: &Db<'_>, writes: &[Write]) -> Result<(), PgReplicationError> {
    for chunk in writes.chunks(1000) {
        let refs: Vec<Vec<&(dyn ToSql + Sync)>> = chunk
            .iter()
            .map(|w| w.params.iter().map(Param::as_sql).collect())
            .collect();
        let statements: Vec<(&str, &[&(dyn ToSql + Sync)])> = chunk
            .iter()
            .zip(&refs)
            .map(|(w, r)| (w.sql.as_str(), r.as_slice()))
            .collect();
        db.execute_all(&statements)?;
    }
    Ok(())
}

pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Table metadata looked up once per transaction (DDL clears it).
#[derive(Debug, Default)]
pub(super) struct Tables(HashMap<String, Option<PgTable>>);

impl Tables {
    pub fn get(
        &mut self,
        db: &Db<'_>,
        table: &str,
    ) -> Result<Option<&PgTable>, PgReplicationError> {
        if !self.0.contains_key(table) {
            let meta = PgTable::load(db, table)?;
            self.0.insert(table.to_owned(), meta);
        }
        Ok(self.0.get(table).and_then(Option::as_ref))
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

fn shard_params(shard: &ShardId) -> (String, i64) {
    (shard.table.clone(), i64::from(shard.shard))
}

pub(super) fn applied_vector(
    db: &Db<'_>,
    shard: &ShardId,
) -> Result<VersionVector, PgReplicationError> {
    let (table, number) = shard_params(shard);
    let mut vv = VersionVector::new();
    for row in db.query(
        "SELECT origin, sequence FROM mycelium.applied WHERE shard_table = $1 AND shard = $2",
        &[&table, &number],
    )? {
        let origin: String = row.try_get(0)?;
        vv.set(NodeId::new(&origin), to_u64(row.try_get(1)?));
    }
    Ok(vv)
}

pub(super) fn shard_clock(db: &Db<'_>, shard: &ShardId) -> Result<Option<Hlc>, PgReplicationError> {
    let (table, number) = shard_params(shard);
    db.query_opt(
        "SELECT hlc_ms, hlc_logical, hlc_node FROM mycelium.shard_clock \
         WHERE shard_table = $1 AND shard = $2",
        &[&table, &number],
    )?
    .map(|row| {
        Ok(Hlc::new(
            to_u64(row.try_get(0)?),
            u32::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0),
            NodeId::new(&row.try_get::<_, String>(2)?),
        ))
    })
    .transpose()
}

/// Raises the shard's clock to `hlc` (Hlc order: milliseconds, counter, node by bytes).
const OBSERVE_SHARD_CLOCK: &str = "INSERT INTO mycelium.shard_clock (shard_table, shard, hlc_ms, hlc_logical, hlc_node) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (shard_table, shard) DO UPDATE SET \
     hlc_ms = EXCLUDED.hlc_ms, hlc_logical = EXCLUDED.hlc_logical, \
     hlc_node = EXCLUDED.hlc_node \
     WHERE (mycelium.shard_clock.hlc_ms, mycelium.shard_clock.hlc_logical, \
     mycelium.shard_clock.hlc_node COLLATE \"C\") \
     < (EXCLUDED.hlc_ms, EXCLUDED.hlc_logical, EXCLUDED.hlc_node COLLATE \"C\")";

pub(super) fn observe_shard_clock(
    db: &Db<'_>,
    shard: &ShardId,
    hlc: &Hlc,
) -> Result<(), PgReplicationError> {
    let (table, number) = shard_params(shard);
    db.execute(
        OBSERVE_SHARD_CLOCK,
        &[
            &table,
            &number,
            &to_i64(hlc.physical_ms),
            &i64::from(hlc.logical),
            &hlc.node.as_str(),
        ],
    )?;
    Ok(())
}

pub(super) fn put_conflict_row(
    db: &Db<'_>,
    shard: &ShardId,
    c: &Conflict,
) -> Result<(), PgReplicationError> {
    let (table, number) = shard_params(shard);
    db.execute(
        "INSERT INTO mycelium.conflicts (table_name, key, key_text, \
         first_origin, first_sequence, first_epoch, first_hlc_ms, first_hlc_logical, \
         second_origin, second_sequence, second_epoch, second_hlc_ms, second_hlc_logical, \
         winner, shard_table, shard, recorded_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (table_name, key, first_origin, second_origin) DO UPDATE SET \
         key_text = EXCLUDED.key_text, first_sequence = EXCLUDED.first_sequence, \
         first_epoch = EXCLUDED.first_epoch, first_hlc_ms = EXCLUDED.first_hlc_ms, \
         first_hlc_logical = EXCLUDED.first_hlc_logical, \
         second_sequence = EXCLUDED.second_sequence, second_epoch = EXCLUDED.second_epoch, \
         second_hlc_ms = EXCLUDED.second_hlc_ms, \
         second_hlc_logical = EXCLUDED.second_hlc_logical, winner = EXCLUDED.winner, \
         shard_table = EXCLUDED.shard_table, shard = EXCLUDED.shard, \
         recorded_at_ms = EXCLUDED.recorded_at_ms",
        &[
            &&*c.table,
            &encode_key(&c.key),
            &key_text(&c.key),
            &c.first.origin.as_str(),
            &to_i64(c.first.sequence),
            &to_i64(c.first.epoch),
            &to_i64(c.first.hlc.physical_ms),
            &i64::from(c.first.hlc.logical),
            &c.second.origin.as_str(),
            &to_i64(c.second.sequence),
            &to_i64(c.second.epoch),
            &to_i64(c.second.hlc.physical_ms),
            &i64::from(c.second.hlc.logical),
            &c.winner.as_str(),
            &table,
            &number,
            &Utc::now().timestamp_millis(),
        ],
    )?;
    Ok(())
}

/// The columns of `mycelium.conflicts` [`conflict_from_row`] reads.
pub(super) const CONFLICT_COLUMNS: &str = "table_name, key, first_origin, first_sequence, \
    first_epoch, first_hlc_ms, first_hlc_logical, second_origin, second_sequence, \
    second_epoch, second_hlc_ms, second_hlc_logical, winner";

pub(super) fn conflict_from_row(row: &Row) -> Result<Conflict, PgReplicationError> {
    let stamp = |at: usize| -> Result<RowStamp, PgReplicationError> {
        let origin = NodeId::new(&row.try_get::<_, String>(at)?);
        Ok(RowStamp {
            sequence: to_u64(row.try_get(at + 1)?),
            epoch: to_u64(row.try_get(at + 2)?),
            hlc: Hlc::new(
                to_u64(row.try_get(at + 3)?),
                u32::try_from(row.try_get::<_, i64>(at + 4)?).unwrap_or(0),
                origin.clone(),
            ),
            origin,
        })
    };
    Ok(Conflict {
        table: Arc::from(row.try_get::<_, String>(0)?),
        key: decode_key(&row.try_get::<_, Vec<u8>>(1)?)?,
        first: stamp(2)?,
        second: stamp(7)?,
        winner: NodeId::new(&row.try_get::<_, String>(12)?),
    })
}

pub(super) fn put_row_clock(
    db: &Db<'_>,
    shard: &ShardId,
    table: &str,
    key: &[SqlValue],
    clock: &RowClock,
) -> Result<(), PgReplicationError> {
    let (shard_table, number) = shard_params(shard);
    db.execute(
        "INSERT INTO mycelium.row_clocks (table_name, key, shard_table, shard, clock) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (table_name, key) DO UPDATE SET \
         shard_table = EXCLUDED.shard_table, shard = EXCLUDED.shard, clock = EXCLUDED.clock",
        &[
            &table,
            &encode_key(key),
            &shard_table,
            &number,
            &encode_clock(clock),
        ],
    )?;
    Ok(())
}

pub(super) fn row_clock(
    db: &Db<'_>,
    table: &str,
    key: &[SqlValue],
) -> Result<Option<RowClock>, PgReplicationError> {
    let bytes: Option<Vec<u8>> = db
        .query_opt(
            "SELECT clock FROM mycelium.row_clocks WHERE table_name = $1 AND key = $2",
            &[&table, &encode_key(key)],
        )?
        .map(|row| row.try_get(0))
        .transpose()?;
    Ok(bytes.map(|b| decode_clock(&b)).transpose()?)
}

/// Marks a transaction's DDL statements as run here (see the SQLite backend's
/// `mark_ddl_applied`): each runs once on a node that follows several shards' logs.
pub(super) fn mark_ddl_applied(
    db: &Db<'_>,
    origin: &NodeId,
    txn_id: &str,
    count: usize,
) -> Result<(), PgReplicationError> {
    for idx in 0..count {
        db.execute(
            "INSERT INTO mycelium.ddl_applied (origin, txn_id, idx) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            &[&origin.as_str(), &txn_id, &to_i64(idx as u64)],
        )?;
    }
    Ok(())
}

/// The row operations of one shard inside the caller's open PostgreSQL transaction.
pub(super) struct PgTxn<'a, 'db> {
    pub db: &'a Db<'db>,
    pub shard: &'a ShardId,
    pub tables: Tables,
    /// The entry being applied (origin, transaction id) and how many of its DDL statements
    /// were met, which identifies each statement across shards.
    ddl_source: Option<(NodeId, String)>,
    ddl_index: u64,
    /// Row clocks read (`None`: the row has none) or written in this transaction, by table
    /// and encoded key.
    clocks: HashMap<RowId, Option<RowClock>>,
    /// Row clocks written and not stored yet: stored together before the entry is logged.
    pending: HashSet<RowId>,
    /// Data writes not run yet: run together, in order, before DDL and before the entry is
    /// logged (nothing else in an apply reads the data).
    writes: Vec<Write>,
}

/// A row by table and encoded key.
type RowId = (String, Vec<u8>);

impl<'a, 'db> PgTxn<'a, 'db> {
    pub fn new(db: &'a Db<'db>, shard: &'a ShardId) -> PgTxn<'a, 'db> {
        PgTxn {
            db,
            shard,
            tables: Tables::default(),
            ddl_source: None,
            ddl_index: 0,
            clocks: HashMap::new(),
            pending: HashSet::new(),
            writes: Vec::new(),
        }
    }

    /// Reads the clocks of every row `entry` changes, in one query.
    pub fn prefetch(&mut self, entry: &WalEntry) -> Result<(), PgReplicationError> {
        let mut tables = Vec::new();
        let mut keys = Vec::new();
        for change in &entry.changes {
            if let Change::Row(row) = change {
                let id = (row.table.to_string(), encode_key(&row.key));
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    self.clocks.entry(id.clone())
                {
                    slot.insert(None);
                    tables.push(id.0);
                    keys.push(id.1);
                }
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        for row in self.db.query(
            "SELECT r.table_name, r.key, r.clock FROM mycelium.row_clocks r \
             JOIN unnest($1::text[], $2::bytea[]) AS u(t, k) \
             ON r.table_name = u.t AND r.key = u.k",
            &[&tables, &keys],
        )? {
            let clock = decode_clock(&row.try_get::<_, Vec<u8>>(2)?)?;
            self.clocks
                .insert((row.try_get(0)?, row.try_get(1)?), Some(clock));
        }
        Ok(())
    }

    fn stage_clock(&mut self, table: &str, key: &[SqlValue], clock: &RowClock) {
        let id = (table.to_owned(), encode_key(key));
        self.pending.insert(id.clone());
        self.clocks.insert(id, Some(clock.clone()));
    }

    /// The staged row clocks, as the arrays [`UPSERT_CLOCKS`] takes.
    fn take_clocks(&mut self) -> (Vec<String>, Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut tables = Vec::with_capacity(self.pending.len());
        let mut keys = Vec::with_capacity(self.pending.len());
        let mut clocks = Vec::with_capacity(self.pending.len());
        for id in std::mem::take(&mut self.pending) {
            if let Some(Some(clock)) = self.clocks.get(&id) {
                clocks.push(encode_clock(clock));
                tables.push(id.0);
                keys.push(id.1);
            }
        }
        (tables, keys, clocks)
    }

    /// For applying `entry`: its DDL statements run only if no copy of the same transaction
    /// ran them here.
    pub fn applying(db: &'a Db<'db>, entry: &'a WalEntry) -> PgTxn<'a, 'db> {
        PgTxn {
            ddl_source: Some((entry.origin.clone(), entry.txn_id.clone())),
            ..PgTxn::new(db, &entry.shard)
        }
    }

    /// Whether this statement of the entry ran here already (whatever its origin: a
    /// distributed transaction's id is the same on every node); marks it as run.
    fn ddl_seen(&mut self) -> Result<bool, PgReplicationError> {
        let Some((origin, txn_id)) = &self.ddl_source else {
            return Ok(false);
        };
        let idx = to_i64(self.ddl_index);
        self.ddl_index += 1;
        let seen: bool = self
            .db
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM mycelium.ddl_applied WHERE txn_id = $1 AND idx = $2)",
                &[txn_id, &idx],
            )?
            .try_get(0)?;
        self.db.execute(
            "INSERT INTO mycelium.ddl_applied (origin, txn_id, idx) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            &[&origin.as_str(), txn_id, &idx],
        )?;
        Ok(seen)
    }
}

impl ApplyTxn for PgTxn<'_, '_> {
    type Error = PgReplicationError;

    fn applied(&mut self, origin: &NodeId) -> Result<u64, PgReplicationError> {
        let (table, number) = shard_params(self.shard);
        Ok(self
            .db
            .query_opt(
                "SELECT sequence FROM mycelium.applied \
                 WHERE shard_table = $1 AND shard = $2 AND origin = $3",
                &[&table, &number, &origin.as_str()],
            )?
            .map(|row| row.try_get::<_, i64>(0))
            .transpose()?
            .map(to_u64)
            .unwrap_or(0))
    }

    fn row_clock(
        &mut self,
        table: &str,
        key: &[SqlValue],
    ) -> Result<Option<RowClock>, PgReplicationError> {
        let id = (table.to_owned(), encode_key(key));
        if let Some(clock) = self.clocks.get(&id) {
            return Ok(clock.clone());
        }
        let clock = row_clock(self.db, table, key)?;
        self.clocks.insert(id, clock.clone());
        Ok(clock)
    }

    fn write_row(
        &mut self,
        change: &RowChange,
        clock: &RowClock,
    ) -> Result<(), PgReplicationError> {
        let db = self.db;
        let meta = self
            .tables
            .get(db, &change.table)?
            .ok_or_else(|| PgReplicationError::NoTable(change.table.to_string()))?;
        if meta.pk.is_empty() {
            // A SQLite origin replicates such a table by a hidden row id this table lacks.
            warn_unkeyed(&meta.sql_name);
            return Ok(());
        }
        let write = meta.write_statement(&change.columns, &change.key, change.new.as_deref())?;
        self.writes.push(write);
        self.stage_clock(&change.table, &change.key, clock);
        Ok(())
    }

    fn set_row_clock(
        &mut self,
        table: &str,
        key: &[SqlValue],
        clock: &RowClock,
    ) -> Result<(), PgReplicationError> {
        self.stage_clock(table, key, clock);
        Ok(())
    }

    fn execute_ddl(&mut self, sql: &str) -> Result<(), PgReplicationError> {
        if self.ddl_seen()? {
            return Ok(());
        }
        if super::ddl::sqlite_catalog_upkeep(sql) {
            tracing::trace!(shard = %self.shard, statement = sql,
                "a SQLite primary's catalog upkeep, not replayed on PostgreSQL");
            return Ok(());
        }
        execute_writes(self.db, &std::mem::take(&mut self.writes))?;
        self.tables.clear();
        self.db.batch("SAVEPOINT mycelium_ddl")?;
        // Through EXECUTE: a statement that would end the applying transaction (COMMIT in a
        // recorded multi-statement message) fails instead, inside the savepoint.
        match self.db.execute("SELECT mycelium.replay_ddl($1)", &[&sql]) {
            Ok(_) => self.db.batch("RELEASE SAVEPOINT mycelium_ddl")?,
            Err(e) => {
                if self.ddl_source.is_some() {
                    tracing::warn!(shard = %self.shard, error = %e, statement = sql,
                        "replicated DDL did not apply; keeping the current schema");
                } else {
                    tracing::debug!(shard = %self.shard, error = %e, statement = sql,
                        "snapshot DDL not applied; keeping the current schema");
                }
                self.db
                    .batch("ROLLBACK TO SAVEPOINT mycelium_ddl; RELEASE SAVEPOINT mycelium_ddl")?;
            }
        }
        Ok(())
    }

    fn conflict(
        &mut self,
        table: &str,
        key: &[SqlValue],
        first: &NodeId,
        second: &NodeId,
    ) -> Result<Option<Conflict>, PgReplicationError> {
        let sql = format!(
            "SELECT {CONFLICT_COLUMNS} FROM mycelium.conflicts WHERE table_name = $1 \
             AND key = $2 AND first_origin = $3 AND second_origin = $4"
        );
        self.db
            .query_opt(
                &sql,
                &[&table, &encode_key(key), &first.as_str(), &second.as_str()],
            )?
            .map(|row| conflict_from_row(&row))
            .transpose()
    }

    fn put_conflict(&mut self, conflict: &Conflict) -> Result<(), PgReplicationError> {
        put_conflict_row(self.db, self.shard, conflict)
    }

    /// Runs the pending data writes, stores the row clocks, appends the entry and moves the
    /// applied position and shard clock: all pipelined, in that order.
    fn log_entry(&mut self, entry: &WalEntry) -> Result<(), PgReplicationError> {
        let writes = std::mem::take(&mut self.writes);
        let (tables, keys, clocks) = self.take_clocks();
        let (shard_table, number) = shard_params(self.shard);
        let (table, entry_shard) = shard_params(&entry.shard);
        let origin = entry.origin.as_str();
        let sequence = to_i64(entry.sequence);
        let encoded = encode_entry(entry);
        let (ms, logical) = (to_i64(entry.hlc.physical_ms), i64::from(entry.hlc.logical));
        let node = entry.hlc.node.as_str();

        let write_params: Vec<Vec<&(dyn ToSql + Sync)>> = writes
            .iter()
            .map(|w| w.params.iter().map(Param::as_sql).collect())
            .collect();
        let mut statements: Vec<(&str, &[&(dyn ToSql + Sync)])> = writes
            .iter()
            .zip(&write_params)
            .map(|(w, p)| (w.sql.as_str(), p.as_slice()))
            .collect();
        let clock_params: [&(dyn ToSql + Sync); 5] =
            [&tables, &keys, &shard_table, &number, &clocks];
        if !tables.is_empty() {
            statements.push((UPSERT_CLOCKS, &clock_params));
        }
        let wal_params: [&(dyn ToSql + Sync); 5] =
            [&table, &entry_shard, &origin, &sequence, &encoded];
        statements.push((
            "INSERT INTO mycelium.wal (shard_table, shard, origin, sequence, entry) \
             VALUES ($1, $2, $3, $4, $5)",
            &wal_params,
        ));
        let applied_params: [&(dyn ToSql + Sync); 4] = [&table, &entry_shard, &origin, &sequence];
        statements.push((
            "INSERT INTO mycelium.applied (shard_table, shard, origin, sequence) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (shard_table, shard, origin) \
             DO UPDATE SET sequence = GREATEST(mycelium.applied.sequence, EXCLUDED.sequence)",
            &applied_params,
        ));
        let clock_of_shard: [&(dyn ToSql + Sync); 5] = [&table, &entry_shard, &ms, &logical, &node];
        statements.push((OBSERVE_SHARD_CLOCK, &clock_of_shard));
        for chunk in statements.chunks(1000) {
            self.db.execute_all(chunk)?;
        }
        Ok(())
    }
}
