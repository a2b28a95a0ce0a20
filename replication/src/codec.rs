//! Binary encoding of entries and messages; the format is described at the top of `lib.rs`.
//!
//! Decoding checks every length against the bytes that remain before it allocates, so a
//! hostile count costs nothing; every inconsistency is a [`DecodeError`], never a panic.

use std::sync::Arc;

use crate::clock::Hlc;
use crate::conflict::{Conflict, RowClock, RowStamp};
use crate::entry::{Change, RowChange, RowOp, ShardId, SqlValue, WalEntry};
use crate::message::{ReplicationMessage, Role, SnapshotChunk, SnapshotItem, SnapshotRow, kind};
use crate::version::{NodeId, VersionVector};

/// Version byte at the start of every encoded entry, so stored entries stay readable when
/// the format changes.
pub const ENTRY_FORMAT: u8 = 1;

/// Bytes that do not decode to a replication entry or message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("replication payload truncated while reading {0}")]
    Truncated(&'static str),
    #[error("invalid replication payload: {0}")]
    Invalid(String),
    #[error("{0} unexpected bytes after a replication payload")]
    Trailing(usize),
    #[error("frame kind {0:#04x} is not a replication message")]
    UnknownKind(u8),
}

fn invalid(what: impl Into<String>) -> DecodeError {
    DecodeError::Invalid(what.into())
}

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Lengths and counts are u32; nothing in one frame (64 MiB at most) comes near it.
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.buf.extend_from_slice(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn node(&mut self, n: &NodeId) {
        self.str(n.as_str());
    }

    fn shard(&mut self, s: &ShardId) {
        self.str(&s.table);
        self.u32(s.shard);
    }

    fn vv(&mut self, vv: &VersionVector) {
        self.len(vv.len());
        for (node, seq) in vv.iter() {
            self.node(node);
            self.u64(seq);
        }
    }

    fn hlc(&mut self, h: &Hlc) {
        self.u64(h.physical_ms);
        self.u32(h.logical);
        self.node(&h.node);
    }

    fn value(&mut self, v: &SqlValue) {
        match v {
            SqlValue::Null => self.u8(0),
            SqlValue::Integer(i) => {
                self.u8(1);
                self.buf.extend_from_slice(&i.to_be_bytes());
            }
            SqlValue::Real(r) => {
                self.u8(2);
                self.u64(r.to_bits());
            }
            SqlValue::Text(s) => {
                self.u8(3);
                self.str(s);
            }
            SqlValue::Blob(b) => {
                self.u8(4);
                self.bytes(b);
            }
        }
    }

    fn values(&mut self, vs: &[SqlValue]) {
        self.len(vs.len());
        for v in vs {
            self.value(v);
        }
    }

    fn opt_values(&mut self, vs: Option<&Vec<SqlValue>>) {
        match vs {
            None => self.u8(0),
            Some(vs) => {
                self.u8(1);
                self.values(vs);
            }
        }
    }

    fn columns(&mut self, cols: &[String]) {
        self.len(cols.len());
        for c in cols {
            self.str(c);
        }
    }

    fn stamp(&mut self, s: &RowStamp) {
        self.node(&s.origin);
        self.u64(s.sequence);
        self.u64(s.epoch);
        self.hlc(&s.hlc);
    }

    fn clock(&mut self, c: &RowClock) {
        self.len(c.heads().len());
        for h in c.heads() {
            self.stamp(h);
        }
    }

    fn conflict(&mut self, c: &Conflict) {
        self.str(&c.table);
        self.values(&c.key);
        self.stamp(&c.first);
        self.stamp(&c.second);
        self.node(&c.winner);
    }

    fn entry(&mut self, e: &WalEntry) {
        self.u8(ENTRY_FORMAT);
        self.shard(&e.shard);
        self.node(&e.origin);
        self.u64(e.sequence);
        self.u64(e.epoch);
        self.vv(&e.version);
        self.hlc(&e.hlc);
        self.str(&e.txn_id);
        // Each distinct (table, columns) is written once and rows refer to it by index, so a
        // 100-row insert carries its column names once.
        let mut shapes: Vec<(&Arc<str>, &Arc<[String]>)> = Vec::new();
        let mut shape_of = Vec::with_capacity(e.changes.len());
        for change in &e.changes {
            if let Change::Row(row) = change {
                let found = shapes.iter().position(|(t, c)| {
                    (Arc::ptr_eq(t, &row.table) || ***t == *row.table)
                        && (Arc::ptr_eq(c, &row.columns) || ***c == *row.columns)
                });
                let index = found.unwrap_or_else(|| {
                    shapes.push((&row.table, &row.columns));
                    shapes.len() - 1
                });
                shape_of.push(index);
            }
        }
        self.len(shapes.len());
        for (table, columns) in &shapes {
            self.str(table);
            self.columns(columns);
        }
        self.len(e.changes.len());
        let mut shape_of = shape_of.into_iter();
        for change in &e.changes {
            match change {
                Change::Ddl(sql) => {
                    self.u8(0);
                    self.str(sql);
                }
                Change::Row(row) => {
                    self.u8(1);
                    self.len(shape_of.next().unwrap_or(0));
                    self.u8(match row.op {
                        RowOp::Insert => 0,
                        RowOp::Update => 1,
                        RowOp::Delete => 2,
                    });
                    self.values(&row.key);
                    self.opt_values(row.old.as_ref());
                    self.opt_values(row.new.as_ref());
                }
            }
        }
    }

    fn entries(&mut self, entries: &[WalEntry]) {
        self.len(entries.len());
        for e in entries {
            // Length-prefixed so a reader can skip or store entries without decoding them.
            let start = self.buf.len();
            self.u32(0);
            self.entry(e);
            let len = u32::try_from(self.buf.len() - start - 4).unwrap_or(u32::MAX);
            self.buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    fn snapshot(&mut self, s: &SnapshotChunk) {
        self.shard(&s.shard);
        self.u32(s.index);
        self.u8(u8::from(s.last));
        self.vv(&s.applied);
        self.hlc(&s.hlc);
        self.len(s.items.len());
        for item in &s.items {
            match item {
                SnapshotItem::Ddl(sql) => {
                    self.u8(0);
                    self.str(sql);
                }
                SnapshotItem::Row(row) => {
                    self.u8(1);
                    self.str(&row.table);
                    self.columns(&row.columns);
                    self.values(&row.key);
                    self.opt_values(row.values.as_ref());
                    self.clock(&row.clock);
                }
                SnapshotItem::Conflict(c) => {
                    self.u8(2);
                    self.conflict(c);
                }
            }
        }
    }
}

/// Smallest encodings, used to bound counts before allocating.
const MIN_STR: usize = 4;
const MIN_VALUE: usize = 1;
const MIN_HLC: usize = 8 + 4 + MIN_STR;
const MIN_STAMP: usize = MIN_STR + 8 + 8 + MIN_HLC;
const MIN_VV_ITEM: usize = MIN_STR + 8;
const MIN_CHANGE: usize = 1 + MIN_STR;
const MIN_SHAPE: usize = MIN_STR + 4;
const MIN_SNAPSHOT_ITEM: usize = 1 + MIN_STR;

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(invalid(format!("{what}: flag byte {b}"))),
        }
    }

    /// A count of items each at least `min_size` bytes long: refused when the remaining bytes
    /// could not hold that many, so the caller may allocate for it.
    fn count(&mut self, min_size: usize, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_size) > self.buf.len() {
            return Err(DecodeError::Truncated(what));
        }
        Ok(n)
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| invalid(format!("{what}: not UTF-8")))
    }

    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        self.str(what).map(str::to_owned)
    }

    fn node(&mut self) -> Result<NodeId, DecodeError> {
        let name = self.str("node id")?;
        if name.is_empty() {
            return Err(invalid("empty node id"));
        }
        Ok(NodeId::new(name))
    }

    fn shard(&mut self) -> Result<ShardId, DecodeError> {
        Ok(ShardId {
            table: self.string("shard table")?,
            shard: self.u32("shard number")?,
        })
    }

    fn vv(&mut self) -> Result<VersionVector, DecodeError> {
        let n = self.count(MIN_VV_ITEM, "version vector")?;
        let mut vv = VersionVector::new();
        let mut previous: Option<NodeId> = None;
        for _ in 0..n {
            let node = self.node()?;
            let seq = self.u64("version vector sequence")?;
            // Written in node order without zeros; anything else is not our encoding, and
            // accepting it would let two encodings stand for one vector.
            if seq == 0 || previous.as_ref().is_some_and(|p| p >= &node) {
                return Err(invalid("version vector not in canonical form"));
            }
            vv.set(node.clone(), seq);
            previous = Some(node);
        }
        Ok(vv)
    }

    fn hlc(&mut self) -> Result<Hlc, DecodeError> {
        Ok(Hlc {
            physical_ms: self.u64("hlc physical time")?,
            logical: self.u32("hlc counter")?,
            node: self.node()?,
        })
    }

    fn value(&mut self) -> Result<SqlValue, DecodeError> {
        Ok(match self.u8("value tag")? {
            0 => SqlValue::Null,
            1 => SqlValue::Integer(i64::from_be_bytes(self.array("integer")?)),
            2 => SqlValue::Real(f64::from_bits(self.u64("real")?)),
            3 => SqlValue::Text(self.string("text")?),
            4 => SqlValue::Blob(self.bytes("blob")?.to_vec()),
            t => return Err(invalid(format!("value tag {t}"))),
        })
    }

    fn values(&mut self) -> Result<Vec<SqlValue>, DecodeError> {
        let n = self.count(MIN_VALUE, "values")?;
        (0..n).map(|_| self.value()).collect()
    }

    fn opt_values(&mut self) -> Result<Option<Vec<SqlValue>>, DecodeError> {
        if self.bool("row image flag")? {
            self.values().map(Some)
        } else {
            Ok(None)
        }
    }

    fn columns(&mut self) -> Result<Arc<[String]>, DecodeError> {
        let n = self.count(MIN_STR, "columns")?;
        (0..n).map(|_| self.string("column name")).collect()
    }

    fn stamp(&mut self) -> Result<RowStamp, DecodeError> {
        Ok(RowStamp {
            origin: self.node()?,
            sequence: self.u64("stamp sequence")?,
            epoch: self.u64("stamp epoch")?,
            hlc: self.hlc()?,
        })
    }

    fn clock(&mut self) -> Result<RowClock, DecodeError> {
        let n = self.count(MIN_STAMP, "row clock")?;
        let heads = (0..n)
            .map(|_| self.stamp())
            .collect::<Result<Vec<_>, _>>()?;
        let clock = RowClock::from_heads(heads);
        if clock.heads().len() != n {
            return Err(invalid("row clock with two heads for one origin"));
        }
        Ok(clock)
    }

    fn conflict(&mut self) -> Result<Conflict, DecodeError> {
        let table: Arc<str> = Arc::from(self.str("conflict table")?);
        let key = self.values()?;
        let first = self.stamp()?;
        let second = self.stamp()?;
        let winner = self.node()?;
        if first.origin >= second.origin || (winner != first.origin && winner != second.origin) {
            return Err(invalid("conflict sides out of order or winner not a side"));
        }
        Ok(Conflict {
            table,
            key,
            first,
            second,
            winner,
        })
    }

    fn entry(&mut self) -> Result<WalEntry, DecodeError> {
        let format = self.u8("entry format")?;
        if format != ENTRY_FORMAT {
            return Err(invalid(format!(
                "entry format {format}, expected {ENTRY_FORMAT}"
            )));
        }
        let shard = self.shard()?;
        let origin = self.node()?;
        let sequence = self.u64("sequence")?;
        let epoch = self.u64("epoch")?;
        let version = self.vv()?;
        let hlc = self.hlc()?;
        let txn_id = self.string("transaction id")?;
        if sequence == 0 || version.get(&origin) != sequence || hlc.node != origin {
            return Err(invalid(
                "entry sequence, version vector and clock disagree about the origin",
            ));
        }
        let n_shapes = self.count(MIN_SHAPE, "table shapes")?;
        let mut shapes = Vec::with_capacity(n_shapes);
        for _ in 0..n_shapes {
            let table: Arc<str> = Arc::from(self.str("table")?);
            shapes.push((table, self.columns()?));
        }
        let n_changes = self.count(MIN_CHANGE, "changes")?;
        let mut changes = Vec::with_capacity(n_changes);
        for _ in 0..n_changes {
            changes.push(match self.u8("change tag")? {
                0 => Change::Ddl(self.string("DDL statement")?),
                1 => Change::Row(self.row_change(&shapes)?),
                t => return Err(invalid(format!("change tag {t}"))),
            });
        }
        Ok(WalEntry {
            shard,
            origin,
            sequence,
            epoch,
            version,
            hlc,
            txn_id,
            changes,
        })
    }

    fn row_change(
        &mut self,
        shapes: &[(Arc<str>, Arc<[String]>)],
    ) -> Result<RowChange, DecodeError> {
        let index = self.u32("table shape index")? as usize;
        let (table, columns) = shapes
            .get(index)
            .ok_or_else(|| invalid(format!("table shape {index} of {}", shapes.len())))?;
        let op = match self.u8("row operation")? {
            0 => RowOp::Insert,
            1 => RowOp::Update,
            2 => RowOp::Delete,
            t => return Err(invalid(format!("row operation {t}"))),
        };
        let key = self.values()?;
        let old = self.opt_values()?;
        let new = self.opt_values()?;
        let width_ok =
            |image: &Option<Vec<SqlValue>>| image.as_ref().is_none_or(|v| v.len() == columns.len());
        if key.is_empty()
            || !width_ok(&old)
            || !width_ok(&new)
            || new.is_some() == (op == RowOp::Delete)
        {
            return Err(invalid(format!(
                "row change on {table}: empty key, image width or image presence wrong for {op:?}"
            )));
        }
        Ok(RowChange {
            table: table.clone(),
            columns: columns.clone(),
            key,
            op,
            old,
            new,
        })
    }

    fn entries(&mut self) -> Result<Vec<WalEntry>, DecodeError> {
        let n = self.count(4 + 1, "entries")?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let mut inner = Reader {
                buf: self.bytes("entry")?,
            };
            entries.push(inner.entry()?);
            inner.finish()?;
        }
        Ok(entries)
    }

    fn snapshot(&mut self) -> Result<SnapshotChunk, DecodeError> {
        let shard = self.shard()?;
        let index = self.u32("snapshot chunk index")?;
        let last = self.bool("snapshot last flag")?;
        let applied = self.vv()?;
        let hlc = self.hlc()?;
        let n = self.count(MIN_SNAPSHOT_ITEM, "snapshot items")?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(match self.u8("snapshot item tag")? {
                0 => SnapshotItem::Ddl(self.string("DDL statement")?),
                1 => {
                    let table: Arc<str> = Arc::from(self.str("table")?);
                    let columns = self.columns()?;
                    let key = self.values()?;
                    let values = self.opt_values()?;
                    let clock = self.clock()?;
                    if values.as_ref().is_some_and(|v| v.len() != columns.len()) {
                        return Err(invalid(format!("snapshot row of {table}: image width")));
                    }
                    SnapshotItem::Row(SnapshotRow {
                        table,
                        columns,
                        key,
                        values,
                        clock,
                    })
                }
                2 => SnapshotItem::Conflict(self.conflict()?),
                t => return Err(invalid(format!("snapshot item tag {t}"))),
            });
        }
        Ok(SnapshotChunk {
            shard,
            index,
            last,
            applied,
            hlc,
            items,
        })
    }

    fn role(&mut self) -> Result<Role, DecodeError> {
        match self.u8("role")? {
            0 => Ok(Role::Primary),
            1 => Ok(Role::Secondary),
            r => Err(invalid(format!("role {r}"))),
        }
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.buf.len()))
        }
    }
}

/// Encodes an entry as it is shipped and as a backend may store it.
pub fn encode_entry(entry: &WalEntry) -> Vec<u8> {
    let mut w = Writer {
        buf: Vec::with_capacity(256),
    };
    w.entry(entry);
    w.buf
}

/// Decodes an entry written by [`encode_entry`]; the whole slice must be one entry.
pub fn decode_entry(bytes: &[u8]) -> Result<WalEntry, DecodeError> {
    let mut r = Reader { buf: bytes };
    let entry = r.entry()?;
    r.finish()?;
    Ok(entry)
}

pub(crate) fn encode_message(message: &ReplicationMessage) -> Vec<u8> {
    let mut w = Writer {
        buf: Vec::with_capacity(128),
    };
    match message {
        ReplicationMessage::WalEntry(e) => w.entry(e),
        ReplicationMessage::RequestEntries { shard, after } => {
            w.shard(shard);
            w.vv(after);
        }
        ReplicationMessage::ResponseEntries { shard, entries } => {
            w.shard(shard);
            w.entries(entries);
        }
        ReplicationMessage::Snapshot(chunk) => w.snapshot(chunk),
        ReplicationMessage::Ack { shard, applied } => {
            w.shard(shard);
            w.vv(applied);
        }
        ReplicationMessage::Status {
            shard,
            role,
            epoch,
            applied,
        } => {
            w.shard(shard);
            w.u8(match role {
                Role::Primary => 0,
                Role::Secondary => 1,
            });
            w.u64(*epoch);
            w.vv(applied);
        }
        ReplicationMessage::Heartbeat { applied, hlc } => {
            w.len(applied.len());
            for (shard, vv) in applied {
                w.shard(shard);
                w.vv(vv);
            }
            w.hlc(hlc);
        }
    }
    w.buf
}

pub(crate) fn decode_message(kind: u8, payload: &[u8]) -> Result<ReplicationMessage, DecodeError> {
    let mut r = Reader { buf: payload };
    let message = match kind {
        kind::WAL_ENTRY => ReplicationMessage::WalEntry(r.entry()?),
        kind::REQUEST_ENTRIES => ReplicationMessage::RequestEntries {
            shard: r.shard()?,
            after: r.vv()?,
        },
        kind::RESPONSE_ENTRIES => ReplicationMessage::ResponseEntries {
            shard: r.shard()?,
            entries: r.entries()?,
        },
        kind::SNAPSHOT => ReplicationMessage::Snapshot(r.snapshot()?),
        kind::ACK => ReplicationMessage::Ack {
            shard: r.shard()?,
            applied: r.vv()?,
        },
        kind::STATUS => ReplicationMessage::Status {
            shard: r.shard()?,
            role: r.role()?,
            epoch: r.u64("epoch")?,
            applied: r.vv()?,
        },
        kind::HEARTBEAT => {
            let n = r.count(MIN_STR + 4 + 4, "heartbeat shards")?;
            let mut applied = Vec::with_capacity(n);
            for _ in 0..n {
                applied.push((r.shard()?, r.vv()?));
            }
            ReplicationMessage::Heartbeat {
                applied,
                hlc: r.hlc()?,
            }
        }
        k => return Err(DecodeError::UnknownKind(k)),
    };
    r.finish()?;
    Ok(message)
}

/// About the encoded size of an entry, without encoding it (for batching).
pub(crate) fn encoded_len_hint(entry: &WalEntry) -> usize {
    fn value_len(v: &SqlValue) -> usize {
        match v {
            SqlValue::Null => 1,
            SqlValue::Integer(_) | SqlValue::Real(_) => 9,
            SqlValue::Text(s) => 5 + s.len(),
            SqlValue::Blob(b) => 5 + b.len(),
        }
    }
    let values = |vs: &Option<Vec<SqlValue>>| vs.iter().flatten().map(value_len).sum::<usize>();
    let changes: usize = entry
        .changes
        .iter()
        .map(|c| match c {
            Change::Ddl(sql) => 5 + sql.len(),
            Change::Row(row) => {
                16 + row.key.iter().map(value_len).sum::<usize>()
                    + values(&row.old)
                    + values(&row.new)
            }
        })
        .sum();
    128 + entry.version.len() * 16 + entry.txn_id.len() + changes
}
