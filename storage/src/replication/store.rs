//! The replication tables and [`ShardTxn`], the `ApplyTxn` of one shard inside an open SQLite
//! transaction.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use mycelium_replication::{
    ApplyTxn, Conflict, Hlc, NodeId, RowChange, RowClock, RowStamp, ShardId, SqlValue,
    VersionVector, WalEntry, encode_entry,
};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, ToSql, params};

use super::ReplicationError;
use crate::catalog::quote_ident;

pub(crate) const REPLICATION_DDL: &str = "
CREATE TABLE IF NOT EXISTS __mycelium_wal (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    shard_table TEXT NOT NULL,
    shard INTEGER NOT NULL,
    origin TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    entry BLOB NOT NULL,
    UNIQUE (shard_table, shard, origin, sequence)
);
CREATE INDEX IF NOT EXISTS __mycelium_wal_shard_pos ON __mycelium_wal (shard_table, shard, pos);
CREATE TABLE IF NOT EXISTS __mycelium_applied (
    shard_table TEXT NOT NULL,
    shard INTEGER NOT NULL,
    origin TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    PRIMARY KEY (shard_table, shard, origin)
);
CREATE TABLE IF NOT EXISTS __mycelium_wal_truncated (
    shard_table TEXT NOT NULL,
    shard INTEGER NOT NULL,
    origin TEXT NOT NULL,
    through INTEGER NOT NULL,
    PRIMARY KEY (shard_table, shard, origin)
);
CREATE TABLE IF NOT EXISTS __mycelium_shard_clock (
    shard_table TEXT NOT NULL,
    shard INTEGER NOT NULL,
    hlc_ms INTEGER NOT NULL,
    hlc_logical INTEGER NOT NULL,
    hlc_node TEXT NOT NULL,
    PRIMARY KEY (shard_table, shard)
);
CREATE TABLE IF NOT EXISTS __mycelium_row_clocks (
    table_name TEXT NOT NULL,
    key BLOB NOT NULL,
    shard_table TEXT NOT NULL,
    shard INTEGER NOT NULL,
    clock BLOB NOT NULL,
    PRIMARY KEY (table_name, key)
);
CREATE INDEX IF NOT EXISTS __mycelium_row_clocks_shard
    ON __mycelium_row_clocks (shard_table, shard);
CREATE TABLE IF NOT EXISTS __mycelium_conflicts (
    table_name TEXT NOT NULL,
    key BLOB NOT NULL,
    key_text TEXT NOT NULL,
    first_origin TEXT NOT NULL,
    first_sequence INTEGER NOT NULL,
    first_epoch INTEGER NOT NULL,
    first_hlc_ms INTEGER NOT NULL,
    first_hlc_logical INTEGER NOT NULL,
    second_origin TEXT NOT NULL,
    second_sequence INTEGER NOT NULL,
    second_epoch INTEGER NOT NULL,
    second_hlc_ms INTEGER NOT NULL,
    second_hlc_logical INTEGER NOT NULL,
    winner TEXT NOT NULL,
    shard_table TEXT NOT NULL,
    shard INTEGER NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    PRIMARY KEY (table_name, key, first_origin, second_origin)
);
CREATE TABLE IF NOT EXISTS __mycelium_ddl_applied (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id, idx)
);
CREATE INDEX IF NOT EXISTS __mycelium_ddl_applied_txn ON __mycelium_ddl_applied (txn_id, idx);
CREATE TABLE IF NOT EXISTS __mycelium_snapshot_staging (
    shard_table TEXT NOT NULL,
    shard INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    chunk BLOB NOT NULL,
    PRIMARY KEY (shard_table, shard, idx)
);
";

fn corrupt(table: &'static str, message: impl Into<String>) -> ReplicationError {
    ReplicationError::Corrupt {
        table,
        message: message.into(),
    }
}

/// Binds a replicated value as the SQLite value it stands for.
pub(crate) struct Bind<'a>(pub &'a SqlValue);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(f) => ValueRef::Real(*f),
            SqlValue::Text(s) => ValueRef::Text(s.as_bytes()),
            SqlValue::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// A stored value as replication carries it. Text that is not UTF-8 (never written through
/// the Postgres front end) is carried with replacement characters.
pub(crate) fn value_of(v: ValueRef<'_>) -> SqlValue {
    match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Integer(i),
        ValueRef::Real(f) => SqlValue::Real(f),
        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}

/// Keys and clocks are stored in a small binary form: a tag byte per value, big-endian
/// fixed-width integers, length-prefixed bytes. The same key always encodes to the same
/// bytes, which is what the `(table_name, key)` primary key relies on.
pub(crate) fn encode_key(key: &[SqlValue]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() * 9);
    for v in key {
        match v {
            SqlValue::Null => out.push(0),
            SqlValue::Integer(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_be_bytes());
            }
            SqlValue::Real(f) => {
                out.push(2);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            SqlValue::Text(s) => {
                out.push(3);
                put_bytes(&mut out, s.as_bytes());
            }
            SqlValue::Blob(b) => {
                out.push(4);
                put_bytes(&mut out, b);
            }
        }
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a [u8],
    table: &'static str,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ReplicationError> {
        if self.buf.len() < n {
            return Err(corrupt(self.table, "truncated record"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ReplicationError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, ReplicationError> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, ReplicationError> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, ReplicationError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    fn string(&mut self) -> Result<String, ReplicationError> {
        String::from_utf8(self.bytes()?).map_err(|_| corrupt(self.table, "text is not UTF-8"))
    }
}

pub(crate) fn decode_key(bytes: &[u8]) -> Result<Vec<SqlValue>, ReplicationError> {
    let mut r = Reader {
        buf: bytes,
        table: "__mycelium_row_clocks",
    };
    let mut key = Vec::new();
    while !r.buf.is_empty() {
        key.push(match r.u8()? {
            0 => SqlValue::Null,
            1 => SqlValue::Integer(r.u64()? as i64),
            2 => SqlValue::Real(f64::from_bits(r.u64()?)),
            3 => SqlValue::Text(r.string()?),
            4 => SqlValue::Blob(r.bytes()?),
            tag => return Err(corrupt(r.table, format!("unknown value tag {tag}"))),
        });
    }
    Ok(key)
}

/// A readable form of a key for the conflicts table: `(1, 'a')`.
pub(crate) fn key_text(key: &[SqlValue]) -> String {
    let parts: Vec<String> = key
        .iter()
        .map(|v| match v {
            SqlValue::Null => "NULL".to_owned(),
            SqlValue::Integer(i) => i.to_string(),
            SqlValue::Real(f) => f.to_string(),
            SqlValue::Text(s) => format!("'{}'", s.replace('\'', "''")),
            SqlValue::Blob(b) => {
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                format!("'\\x{hex}'")
            }
        })
        .collect();
    format!("({})", parts.join(", "))
}

pub(crate) fn encode_clock(clock: &RowClock) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(
        &u32::try_from(clock.heads().len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for h in clock.heads() {
        put_bytes(&mut out, h.origin.as_str().as_bytes());
        out.extend_from_slice(&h.sequence.to_be_bytes());
        out.extend_from_slice(&h.epoch.to_be_bytes());
        out.extend_from_slice(&h.hlc.physical_ms.to_be_bytes());
        out.extend_from_slice(&h.hlc.logical.to_be_bytes());
        put_bytes(&mut out, h.hlc.node.as_str().as_bytes());
    }
    out
}

pub(crate) fn decode_clock(bytes: &[u8]) -> Result<RowClock, ReplicationError> {
    let mut r = Reader {
        buf: bytes,
        table: "__mycelium_row_clocks",
    };
    let n = r.u32()?;
    let mut heads = Vec::new();
    for _ in 0..n {
        let origin = NodeId::new(&r.string()?);
        let sequence = r.u64()?;
        let epoch = r.u64()?;
        let ms = r.u64()?;
        let logical = r.u32()?;
        let node = NodeId::new(&r.string()?);
        heads.push(RowStamp {
            origin,
            sequence,
            epoch,
            hlc: Hlc::new(ms, logical, node),
        });
    }
    if !r.buf.is_empty() {
        return Err(corrupt(r.table, "trailing bytes after a row clock"));
    }
    Ok(RowClock::from_heads(heads))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The columns and primary key of a table, as this node's schema has them.
#[derive(Debug, Clone)]
pub(crate) struct TableMeta {
    pub columns: Arc<[String]>,
    /// Positions in `columns` of the primary-key columns, in key order.
    pub pk: Vec<usize>,
}

impl TableMeta {
    pub fn load(conn: &Connection, table: &str) -> Result<Option<TableMeta>, ReplicationError> {
        let mut stmt =
            conn.prepare_cached("SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid")?;
        let rows = stmt.query_map([table], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        let mut columns = Vec::new();
        let mut pk = Vec::new();
        for (i, row) in rows.enumerate() {
            let (name, ordinal) = row?;
            if ordinal > 0 {
                pk.push((ordinal, i));
            }
            columns.push(name);
        }
        if columns.is_empty() {
            return Ok(None);
        }
        pk.sort_unstable();
        Ok(Some(TableMeta {
            columns: Arc::from(columns),
            pk: pk.into_iter().map(|(_, i)| i).collect(),
        }))
    }

    pub fn key_of(&self, row: &[SqlValue]) -> Vec<SqlValue> {
        self.pk
            .iter()
            .map(|&i| row.get(i).cloned().unwrap_or(SqlValue::Null))
            .collect()
    }

    fn pk_where(&self, first_param: usize) -> String {
        self.pk
            .iter()
            .enumerate()
            .map(|(n, &i)| format!("{} = ?{}", quote_ident(&self.columns[i]), first_param + n))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The current row with this key, read inside the caller's transaction.
    pub fn read_row(
        &self,
        conn: &Connection,
        table: &str,
        key: &[SqlValue],
    ) -> Result<Option<Vec<SqlValue>>, ReplicationError> {
        let columns: Vec<String> = self.columns.iter().map(|c| quote_ident(c)).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            columns.join(", "),
            quote_ident(table),
            self.pk_where(1)
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let binds: Vec<Bind<'_>> = key.iter().map(Bind).collect();
        let width = self.columns.len();
        Ok(stmt
            .query_row(rusqlite::params_from_iter(binds.iter()), |row| {
                (0..width)
                    .map(|i| row.get_ref(i).map(value_of))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .optional()?)
    }
}

/// Table metadata looked up once per transaction (DDL in the transaction clears it).
#[derive(Debug, Default)]
pub(crate) struct Tables(HashMap<String, Option<TableMeta>>);

impl Tables {
    pub fn get(
        &mut self,
        conn: &Connection,
        table: &str,
    ) -> Result<Option<&TableMeta>, ReplicationError> {
        if !self.0.contains_key(table) {
            let meta = TableMeta::load(conn, table)?;
            self.0.insert(table.to_owned(), meta);
        }
        Ok(self.0.get(table).and_then(Option::as_ref))
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// The applied vector of a shard.
pub(crate) fn applied_vector(
    conn: &Connection,
    shard: &ShardId,
) -> Result<VersionVector, ReplicationError> {
    let mut stmt = conn.prepare_cached(
        "SELECT origin, sequence FROM __mycelium_applied WHERE shard_table = ?1 AND shard = ?2",
    )?;
    let rows = stmt.query_map(params![shard.table, shard.shard], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
    })?;
    let mut vv = VersionVector::new();
    for row in rows {
        let (origin, sequence) = row?;
        vv.set(NodeId::new(&origin), to_u64(sequence));
    }
    Ok(vv)
}

/// The highest HLC committed on a shard here.
pub(crate) fn shard_clock(
    conn: &Connection,
    shard: &ShardId,
) -> Result<Option<Hlc>, ReplicationError> {
    Ok(conn
        .prepare_cached(
            "SELECT hlc_ms, hlc_logical, hlc_node FROM __mycelium_shard_clock \
             WHERE shard_table = ?1 AND shard = ?2",
        )?
        .query_row(params![shard.table, shard.shard], |row| {
            Ok(Hlc::new(
                to_u64(row.get(0)?),
                u32::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                NodeId::new(&row.get::<_, String>(2)?),
            ))
        })
        .optional()?)
}

pub(crate) fn observe_shard_clock(
    conn: &Connection,
    shard: &ShardId,
    hlc: &Hlc,
) -> Result<(), ReplicationError> {
    if shard_clock(conn, shard)?.is_some_and(|h| &h >= hlc) {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT OR REPLACE INTO __mycelium_shard_clock \
         (shard_table, shard, hlc_ms, hlc_logical, hlc_node) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        shard.table,
        shard.shard,
        to_i64(hlc.physical_ms),
        hlc.logical,
        hlc.node.as_str()
    ])?;
    Ok(())
}

pub(crate) fn put_conflict_row(
    conn: &Connection,
    shard: &ShardId,
    c: &Conflict,
) -> Result<(), ReplicationError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO __mycelium_conflicts (table_name, key, key_text, \
         first_origin, first_sequence, first_epoch, first_hlc_ms, first_hlc_logical, \
         second_origin, second_sequence, second_epoch, second_hlc_ms, second_hlc_logical, \
         winner, shard_table, shard, recorded_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?
    .execute(params![
        &*c.table,
        encode_key(&c.key),
        key_text(&c.key),
        c.first.origin.as_str(),
        to_i64(c.first.sequence),
        to_i64(c.first.epoch),
        to_i64(c.first.hlc.physical_ms),
        c.first.hlc.logical,
        c.second.origin.as_str(),
        to_i64(c.second.sequence),
        to_i64(c.second.epoch),
        to_i64(c.second.hlc.physical_ms),
        c.second.hlc.logical,
        c.winner.as_str(),
        shard.table,
        shard.shard,
        Utc::now().timestamp_millis(),
    ])?;
    Ok(())
}

/// The columns of `__mycelium_conflicts` after the key, as [`conflict_from_row`] reads them.
pub(crate) const CONFLICT_COLUMNS: &str = "table_name, key, first_origin, first_sequence, \
    first_epoch, first_hlc_ms, first_hlc_logical, second_origin, second_sequence, \
    second_epoch, second_hlc_ms, second_hlc_logical, winner";

pub(crate) fn conflict_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ConflictRow> {
    let stamp = |at: usize| -> rusqlite::Result<RowStamp> {
        let origin = NodeId::new(&row.get::<_, String>(at)?);
        Ok(RowStamp {
            sequence: to_u64(row.get(at + 1)?),
            epoch: to_u64(row.get(at + 2)?),
            hlc: Hlc::new(
                to_u64(row.get(at + 3)?),
                u32::try_from(row.get::<_, i64>(at + 4)?).unwrap_or(0),
                origin.clone(),
            ),
            origin,
        })
    };
    Ok(ConflictRow {
        table: row.get(0)?,
        key: row.get(1)?,
        first: stamp(2)?,
        second: stamp(7)?,
        winner: NodeId::new(&row.get::<_, String>(12)?),
    })
}

/// A stored conflict before its key is decoded.
pub(crate) struct ConflictRow {
    table: String,
    key: Vec<u8>,
    first: RowStamp,
    second: RowStamp,
    winner: NodeId,
}

impl ConflictRow {
    pub fn decode(self) -> Result<Conflict, ReplicationError> {
        Ok(Conflict {
            table: Arc::from(self.table),
            key: decode_key(&self.key)?,
            first: self.first,
            second: self.second,
            winner: self.winner,
        })
    }
}

pub(crate) fn put_row_clock(
    conn: &Connection,
    shard: &ShardId,
    table: &str,
    key: &[SqlValue],
    clock: &RowClock,
) -> Result<(), ReplicationError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO __mycelium_row_clocks (table_name, key, shard_table, shard, clock) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        table,
        encode_key(key),
        shard.table,
        shard.shard,
        encode_clock(clock)
    ])?;
    Ok(())
}

/// Upserts a whole row (by its primary key), or deletes it when `new` is `None`.
pub(crate) fn write_data_row(
    conn: &Connection,
    meta: &TableMeta,
    table: &str,
    columns: &[String],
    key: &[SqlValue],
    new: Option<&[SqlValue]>,
) -> Result<(), ReplicationError> {
    let Some(new) = new else {
        let sql = format!(
            "DELETE FROM {} WHERE {}",
            quote_ident(table),
            meta.pk_where(1)
        );
        let binds: Vec<Bind<'_>> = key.iter().map(Bind).collect();
        conn.prepare_cached(&sql)?
            .execute(rusqlite::params_from_iter(binds.iter()))?;
        return Ok(());
    };
    let pk_names: Vec<&str> = meta.pk.iter().map(|&i| meta.columns[i].as_str()).collect();
    let quoted: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !pk_names.contains(&c.as_str()))
        .map(|c| format!("{0} = excluded.{0}", quote_ident(c)))
        .collect();
    let action = if updates.is_empty() {
        "NOTHING".to_owned()
    } else {
        format!("UPDATE SET {}", updates.join(", "))
    };
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO {action}",
        quote_ident(table),
        quoted.join(", "),
        (1..=columns.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", "),
        pk_names
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let binds: Vec<Bind<'_>> = new.iter().map(Bind).collect();
    conn.prepare_cached(&sql)?
        .execute(rusqlite::params_from_iter(binds.iter()))?;
    Ok(())
}

/// Marks a transaction's DDL statements as run here. A transaction's DDL travels in the
/// entry of every shard it went to, so a node following several of them meets each statement
/// more than once; it must run once (`DROP TABLE` met again would drop the table's later
/// incarnation).
pub(crate) fn mark_ddl_applied(
    conn: &Connection,
    origin: &NodeId,
    txn_id: &str,
    count: usize,
) -> Result<(), ReplicationError> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO __mycelium_ddl_applied (origin, txn_id, idx) VALUES (?1, ?2, ?3)",
    )?;
    for idx in 0..count {
        stmt.execute(params![origin.as_str(), txn_id, to_i64(idx as u64)])?;
    }
    Ok(())
}

/// The row operations of one shard inside the caller's open SQLite transaction.
pub(crate) struct ShardTxn<'a> {
    pub conn: &'a Connection,
    pub shard: &'a ShardId,
    pub tables: Tables,
    /// DDL ran: the node's schema snapshot must be reloaded after the commit.
    pub schema_changed: bool,
    /// The entry being applied (origin, transaction id) and how many of its DDL statements
    /// were met, which identifies each statement across shards.
    ddl_source: Option<(NodeId, String)>,
    ddl_index: u64,
}

impl<'a> ShardTxn<'a> {
    pub fn new(conn: &'a Connection, shard: &'a ShardId) -> ShardTxn<'a> {
        ShardTxn {
            conn,
            shard,
            tables: Tables::default(),
            schema_changed: false,
            ddl_source: None,
            ddl_index: 0,
        }
    }

    /// For applying `entry`: its DDL statements run only if no other shard's copy of the
    /// same transaction ran them here.
    pub fn applying(conn: &'a Connection, entry: &'a WalEntry) -> ShardTxn<'a> {
        ShardTxn {
            ddl_source: Some((entry.origin.clone(), entry.txn_id.clone())),
            ..ShardTxn::new(conn, &entry.shard)
        }
    }

    /// Whether this statement of the entry ran here already; marks it as run. A statement
    /// of the same transaction counts whatever its origin: a distributed transaction's id is
    /// its global id on every node, and the proxy runs DDL on every node in one distributed
    /// transaction, so a node that committed it itself already holds the schema the entry
    /// carries (and replaying, say, a `DROP TABLE` after a later `CREATE TABLE` of the same
    /// name would drop the new table).
    fn ddl_seen(&mut self) -> Result<bool, ReplicationError> {
        let Some((origin, txn_id)) = &self.ddl_source else {
            return Ok(false);
        };
        let idx = to_i64(self.ddl_index);
        self.ddl_index += 1;
        let seen: bool = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM __mycelium_ddl_applied WHERE txn_id = ?1 AND idx = ?2)",
            )?
            .query_row(params![txn_id, idx], |row| row.get(0))?;
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO __mycelium_ddl_applied (origin, txn_id, idx) \
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![origin.as_str(), txn_id, idx])?;
        Ok(seen)
    }
}

impl ApplyTxn for ShardTxn<'_> {
    type Error = ReplicationError;

    fn applied(&mut self, origin: &NodeId) -> Result<u64, ReplicationError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT sequence FROM __mycelium_applied \
                 WHERE shard_table = ?1 AND shard = ?2 AND origin = ?3",
            )?
            .query_row(
                params![self.shard.table, self.shard.shard, origin.as_str()],
                |row| row.get::<_, i64>(0),
            )
            .optional()?
            .map(to_u64)
            .unwrap_or(0))
    }

    fn row_clock(
        &mut self,
        table: &str,
        key: &[SqlValue],
    ) -> Result<Option<RowClock>, ReplicationError> {
        let bytes: Option<Vec<u8>> = self
            .conn
            .prepare_cached(
                "SELECT clock FROM __mycelium_row_clocks WHERE table_name = ?1 AND key = ?2",
            )?
            .query_row(params![table, encode_key(key)], |row| row.get(0))
            .optional()?;
        bytes.map(|b| decode_clock(&b)).transpose()
    }

    /// Rows are written in the schema this node has, which may be ahead of the entry's: the
    /// proxy runs DDL on every node, so a copy can run a `DROP TABLE` or `ALTER TABLE ...
    /// DROP COLUMN` before it applies the primary's entries from just before it. Columns
    /// this node no longer has are left out, and the rows of a table it no longer has are
    /// skipped (a node that never had a table gets it from the entry's own DDL or from a
    /// snapshot, both of which come before its rows).
    fn write_row(&mut self, change: &RowChange, clock: &RowClock) -> Result<(), ReplicationError> {
        let conn = self.conn;
        let Some(meta) = self.tables.get(conn, &change.table)? else {
            tracing::debug!(shard = %self.shard, table = %change.table,
                "a replicated row of a table this node dropped since: skipped");
            return Ok(());
        };
        if meta.pk.is_empty() {
            return Err(ReplicationError::NoPrimaryKey(change.table.to_string()));
        }
        let fits = change.columns.iter().all(|c| meta.columns.contains(c));
        if fits {
            write_data_row(
                conn,
                meta,
                &change.table,
                &change.columns,
                &change.key,
                change.new.as_deref(),
            )?;
        } else {
            let kept: Vec<usize> = (0..change.columns.len())
                .filter(|&i| meta.columns.contains(&change.columns[i]))
                .collect();
            let columns: Vec<String> = kept.iter().map(|&i| change.columns[i].clone()).collect();
            let new = change.new.as_ref().map(|row| {
                kept.iter()
                    .filter_map(|&i| row.get(i).cloned())
                    .collect::<Vec<_>>()
            });
            let keyed = meta.pk.iter().all(|&i| columns.contains(&meta.columns[i]));
            if !keyed {
                tracing::debug!(shard = %self.shard, table = %change.table,
                    "a replicated row whose key columns this node no longer has: skipped");
                return Ok(());
            }
            write_data_row(
                conn,
                meta,
                &change.table,
                &columns,
                &change.key,
                new.as_deref(),
            )?;
        }
        put_row_clock(conn, self.shard, &change.table, &change.key, clock)
    }

    fn set_row_clock(
        &mut self,
        table: &str,
        key: &[SqlValue],
        clock: &RowClock,
    ) -> Result<(), ReplicationError> {
        put_row_clock(self.conn, self.shard, table, key, clock)
    }

    fn execute_ddl(&mut self, sql: &str) -> Result<(), ReplicationError> {
        if self.ddl_seen()? {
            return Ok(());
        }
        self.tables.clear();
        self.schema_changed = true;
        self.conn.execute_batch("SAVEPOINT __mycelium_ddl")?;
        match super::replay_ddl(self.conn, sql) {
            Ok(()) => {
                self.conn.execute_batch("RELEASE __mycelium_ddl")?;
            }
            Err(e) => {
                // A snapshot's schema is mostly what the node has already; an entry's DDL
                // that this node did not run itself failing is worth a warning. Either way
                // rows that need a schema it lacks fail on their own.
                if self.ddl_source.is_some() {
                    tracing::warn!(shard = %self.shard, error = %e, statement = sql,
                        "replicated DDL did not apply; keeping the current schema");
                } else {
                    tracing::debug!(shard = %self.shard, error = %e, statement = sql,
                        "snapshot DDL not applied; keeping the current schema");
                }
                self.conn
                    .execute_batch("ROLLBACK TO __mycelium_ddl; RELEASE __mycelium_ddl")?;
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
    ) -> Result<Option<Conflict>, ReplicationError> {
        let sql = format!(
            "SELECT {CONFLICT_COLUMNS} FROM __mycelium_conflicts WHERE table_name = ?1 \
             AND key = ?2 AND first_origin = ?3 AND second_origin = ?4"
        );
        self.conn
            .prepare_cached(&sql)?
            .query_row(
                params![table, encode_key(key), first.as_str(), second.as_str()],
                conflict_from_row,
            )
            .optional()?
            .map(ConflictRow::decode)
            .transpose()
    }

    fn put_conflict(&mut self, conflict: &Conflict) -> Result<(), ReplicationError> {
        put_conflict_row(self.conn, self.shard, conflict)
    }

    fn log_entry(&mut self, entry: &WalEntry) -> Result<(), ReplicationError> {
        self.conn
            .prepare_cached(
                "INSERT INTO __mycelium_wal (shard_table, shard, origin, sequence, entry) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                entry.shard.table,
                entry.shard.shard,
                entry.origin.as_str(),
                to_i64(entry.sequence),
                encode_entry(entry)
            ])?;
        self.conn
            .prepare_cached(
                "INSERT INTO __mycelium_applied (shard_table, shard, origin, sequence) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (shard_table, shard, origin) \
                 DO UPDATE SET sequence = max(sequence, excluded.sequence)",
            )?
            .execute(params![
                entry.shard.table,
                entry.shard.shard,
                entry.origin.as_str(),
                to_i64(entry.sequence)
            ])?;
        observe_shard_clock(self.conn, &entry.shard, &entry.hlc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table's metadata follows its schema, changed by the same connection or by another one
    /// on the same file (a node's workers), through the cached statement that reads it: a
    /// table created after it was found missing, a column added, the table dropped.
    #[test]
    fn table_meta_follows_schema_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.sqlite");
        let reader = Connection::open(&path).expect("a database file");
        let writer = Connection::open(&path).expect("a second connection");
        let meta = |conn: &Connection| TableMeta::load(conn, "t").expect("table info");
        for changer in [&reader, &writer] {
            assert!(meta(&reader).is_none(), "no table yet");
            changer
                .execute_batch("CREATE TABLE t (a TEXT, id INTEGER, PRIMARY KEY (id))")
                .expect("create");
            let found = meta(&reader).expect("the new table");
            assert_eq!(&*found.columns, ["a", "id"]);
            assert_eq!(found.pk, [1]);
            changer
                .execute_batch("ALTER TABLE t ADD COLUMN b INTEGER")
                .expect("alter");
            assert_eq!(
                &*meta(&reader).expect("the table").columns,
                ["a", "id", "b"]
            );
            changer.execute_batch("DROP TABLE t").expect("drop");
            assert!(meta(&reader).is_none(), "dropped");
        }
    }
}
