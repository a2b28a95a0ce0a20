//! Binary encoding of the node protocol's messages into frame payloads.
//!
//! Integers are big-endian. A string is a u32 length and UTF-8 bytes; an optional byte string
//! is an i32 length (-1 for NULL) and the bytes; a list is a u16 (u32 for rows) count and its
//! items. Every read is bounds-checked: a short or inconsistent payload is a malformed frame.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mycelium_protocol::{
    ClusterMap, Column, CommitPosition, CopyIn, DataRows, DbError, Execute, Format, HeldShard,
    LockOrder, NodeStatus, PreparedTxn, ReplicationRow, StatementDescription, TxnOutcome,
};

use crate::NetworkError;

/// Frame kinds of the node protocol.
pub mod kind {
    pub const DESCRIBE: u8 = 0x10;
    pub const EXECUTE: u8 = 0x11;
    pub const COPY_IN: u8 = 0x12;
    pub const CANCEL: u8 = 0x13;
    pub const PREPARE: u8 = 0x14;
    pub const COMMIT_DECISION: u8 = 0x15;
    pub const FINISH_PREPARED: u8 = 0x16;
    pub const LIST_PREPARED: u8 = 0x17;
    pub const TXN_OUTCOME: u8 = 0x18;
    pub const STATUS: u8 = 0x19;
    pub const MAP: u8 = 0x1A;
    pub const REPLICATION: u8 = 0x1B;
    pub const FORGET_TXN: u8 = 0x1C;
    pub const DESCRIPTION: u8 = 0x20;
    pub const COLUMNS: u8 = 0x21;
    pub const ROWS: u8 = 0x22;
    pub const COMPLETE: u8 = 0x23;
    pub const ERROR: u8 = 0x24;
    pub const COPIED: u8 = 0x25;
    pub const DONE: u8 = 0x26;
    pub const PREPARED_LIST: u8 = 0x27;
    pub const OUTCOME: u8 = 0x28;
    pub const STATUS_REPORT: u8 = 0x29;
    pub const MAP_REPORT: u8 = 0x2A;
    pub const REPLICATION_REPORT: u8 = 0x2B;
}

fn malformed(what: &str) -> NetworkError {
    NetworkError::MalformedFrame(format!("node protocol: truncated or invalid {what}"))
}

struct Reader {
    buf: Bytes,
}

impl Reader {
    fn need(&self, n: usize, what: &str) -> Result<(), NetworkError> {
        if self.buf.remaining() < n {
            Err(malformed(what))
        } else {
            Ok(())
        }
    }

    fn u8(&mut self) -> Result<u8, NetworkError> {
        self.need(1, "byte")?;
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self) -> Result<u16, NetworkError> {
        self.need(2, "u16")?;
        Ok(self.buf.get_u16())
    }

    fn i16(&mut self) -> Result<i16, NetworkError> {
        self.need(2, "i16")?;
        Ok(self.buf.get_i16())
    }

    fn u32(&mut self) -> Result<u32, NetworkError> {
        self.need(4, "u32")?;
        Ok(self.buf.get_u32())
    }

    fn i32(&mut self) -> Result<i32, NetworkError> {
        self.need(4, "i32")?;
        Ok(self.buf.get_i32())
    }

    fn u64(&mut self) -> Result<u64, NetworkError> {
        self.need(8, "u64")?;
        Ok(self.buf.get_u64())
    }

    fn string(&mut self) -> Result<String, NetworkError> {
        let len = self.u32()? as usize;
        self.need(len, "string")?;
        let bytes = self.buf.split_to(len);
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed("UTF-8 string"))
    }

    fn positions(&mut self) -> Result<Vec<CommitPosition>, NetworkError> {
        let n = self.u16()? as usize;
        (0..n)
            .map(|_| {
                Ok(CommitPosition {
                    table: self.string()?,
                    shard: self.u32()?,
                    origin: self.string()?,
                    sequence: self.u64()?,
                })
            })
            .collect()
    }

    fn lock_order(&mut self) -> Result<Option<LockOrder>, NetworkError> {
        match self.u8()? {
            0 => Ok(None),
            _ => Ok(Some(LockOrder {
                priority: self.u64()?,
                holds_elsewhere: self.u8()? != 0,
            })),
        }
    }

    fn opt_string(&mut self) -> Result<Option<String>, NetworkError> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.string().map(Some),
        }
    }

    fn opt_bytes(&mut self) -> Result<Option<Bytes>, NetworkError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        self.need(len, "value")?;
        Ok(Some(self.buf.split_to(len)))
    }

    fn format(&mut self) -> Result<Format, NetworkError> {
        Format::from_code(i16::from(self.u8()?)).ok_or_else(|| malformed("format code"))
    }

    fn oids(&mut self) -> Result<Vec<u32>, NetworkError> {
        let n = self.u16()? as usize;
        (0..n).map(|_| self.u32()).collect()
    }

    fn formats(&mut self) -> Result<Vec<Format>, NetworkError> {
        let n = self.u16()? as usize;
        (0..n).map(|_| self.format()).collect()
    }

    fn columns(&mut self) -> Result<Vec<Column>, NetworkError> {
        let n = self.u16()? as usize;
        (0..n)
            .map(|_| {
                Ok(Column {
                    name: self.string()?,
                    table_oid: self.u32()?,
                    column_id: self.i16()?,
                    type_oid: self.u32()?,
                    type_size: self.i16()?,
                    type_modifier: self.i32()?,
                })
            })
            .collect()
    }

    fn finish(self, what: &str) -> Result<(), NetworkError> {
        if self.buf.has_remaining() {
            Err(malformed(what))
        } else {
            Ok(())
        }
    }
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u32(s.len() as u32);
    buf.put_slice(s.as_bytes());
}

fn put_opt_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            buf.put_u8(1);
            put_str(buf, s);
        }
        None => buf.put_u8(0),
    }
}

/// u8 0 (none), or u8 1, u64 priority, u8 holds_elsewhere.
fn put_lock_order(buf: &mut BytesMut, order: Option<LockOrder>) {
    match order {
        Some(order) => {
            buf.put_u8(1);
            buf.put_u64(order.priority);
            buf.put_u8(u8::from(order.holds_elsewhere));
        }
        None => buf.put_u8(0),
    }
}

fn put_oids(buf: &mut BytesMut, oids: &[u32]) {
    buf.put_u16(oids.len() as u16);
    for oid in oids {
        buf.put_u32(*oid);
    }
}

fn put_formats(buf: &mut BytesMut, formats: &[Format]) {
    buf.put_u16(formats.len() as u16);
    for format in formats {
        buf.put_u8(format.code() as u8);
    }
}

fn put_columns(buf: &mut BytesMut, columns: &[Column]) {
    buf.put_u16(columns.len() as u16);
    for c in columns {
        put_str(buf, &c.name);
        buf.put_u32(c.table_oid);
        buf.put_i16(c.column_id);
        buf.put_u32(c.type_oid);
        buf.put_i16(c.type_size);
        buf.put_i32(c.type_modifier);
    }
}

pub fn encode_describe(sql: &str, param_types: &[u32]) -> Bytes {
    let mut buf = BytesMut::with_capacity(sql.len() + 16);
    put_str(&mut buf, sql);
    put_oids(&mut buf, param_types);
    buf.freeze()
}

pub fn decode_describe(payload: Bytes) -> Result<(String, Vec<u32>), NetworkError> {
    let mut r = Reader { buf: payload };
    let sql = r.string()?;
    let types = r.oids()?;
    r.finish("describe")?;
    Ok((sql, types))
}

/// An EXECUTE: the statement, the client user it runs as (`current_user`), the client's
/// `TimeZone` (optional string), the cluster map epoch it was routed by (u64, 0 = unchecked),
/// the read fence (commit positions the node's copies must hold first; see
/// `NodeSession::set_read_fence`), then the transaction's lock order (optional).
pub fn encode_execute(
    request: &Execute,
    user: Option<&str>,
    time_zone: Option<&str>,
    epoch: u64,
    fence: &[CommitPosition],
    lock_order: Option<LockOrder>,
) -> Bytes {
    let values: usize = request
        .params
        .iter()
        .map(|p| p.as_ref().map_or(0, Bytes::len) + 4)
        .sum();
    let mut buf = BytesMut::with_capacity(request.sql.len() + values + 32);
    put_str(&mut buf, &request.sql);
    put_oids(&mut buf, &request.param_types);
    buf.put_u16(request.params.len() as u16);
    for param in &request.params {
        match param {
            Some(value) => {
                buf.put_i32(value.len() as i32);
                buf.put_slice(value);
            }
            None => buf.put_i32(-1),
        }
    }
    put_formats(&mut buf, &request.param_formats);
    put_formats(&mut buf, &request.result_formats);
    put_opt_str(&mut buf, user);
    put_opt_str(&mut buf, time_zone);
    buf.put_u64(epoch);
    put_positions(&mut buf, fence);
    put_lock_order(&mut buf, lock_order);
    buf.freeze()
}

/// What an EXECUTE carries besides the statement.
pub struct ExecuteContext {
    pub user: Option<String>,
    /// The client session's `TimeZone`; `None` for UTC.
    pub time_zone: Option<String>,
    pub epoch: u64,
    pub fence: Vec<CommitPosition>,
    pub lock_order: Option<LockOrder>,
}

pub fn decode_execute(payload: Bytes) -> Result<(Execute, ExecuteContext), NetworkError> {
    let mut r = Reader { buf: payload };
    let sql: Arc<str> = Arc::from(r.string()?);
    let param_types = Arc::from(r.oids()?);
    let n = r.u16()? as usize;
    let params = (0..n)
        .map(|_| r.opt_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let param_formats = r.formats()?;
    let result_formats = Arc::from(r.formats()?);
    let user = r.opt_string()?;
    let time_zone = r.opt_string()?;
    let epoch = r.u64()?;
    let fence = r.positions()?;
    let lock_order = r.lock_order()?;
    r.finish("execute")?;
    Ok((
        Execute {
            sql,
            param_types,
            params,
            param_formats,
            result_formats,
        },
        ExecuteContext {
            user,
            time_zone,
            epoch,
            fence,
            lock_order,
        },
    ))
}

/// u16 n, n × (str table, u32 shard, str origin, u64 sequence).
fn put_positions(buf: &mut BytesMut, positions: &[CommitPosition]) {
    buf.put_u16(positions.len() as u16);
    for p in positions {
        put_str(buf, &p.table);
        buf.put_u32(p.shard);
        put_str(buf, &p.origin);
        buf.put_u64(p.sequence);
    }
}

/// What a COPY batch carries besides its rows.
#[derive(Debug, Default, PartialEq)]
pub struct CopyContext {
    /// The session's `TimeZone` (text fields without an offset are read in it); `None` for UTC.
    pub time_zone: Option<String>,
    pub lock_order: Option<LockOrder>,
}

/// The batch, then the session's `TimeZone` and the transaction's lock order.
pub fn encode_copy_in(
    batch: &CopyIn,
    time_zone: Option<&str>,
    lock_order: Option<LockOrder>,
) -> Bytes {
    let mut buf = BytesMut::with_capacity(256);
    put_str(&mut buf, &batch.table);
    buf.put_u16(batch.columns.len() as u16);
    for column in &batch.columns {
        put_str(&mut buf, column);
    }
    buf.put_u32(batch.rows.len() as u32);
    for row in &batch.rows {
        buf.put_u16(row.len() as u16);
        for field in row {
            put_opt_str(&mut buf, field.as_deref());
        }
    }
    put_opt_str(&mut buf, time_zone);
    put_lock_order(&mut buf, lock_order);
    buf.freeze()
}

pub fn decode_copy_in(payload: Bytes) -> Result<(CopyIn, CopyContext), NetworkError> {
    let mut r = Reader { buf: payload };
    let table = r.string()?;
    let n = r.u16()? as usize;
    let columns = (0..n).map(|_| r.string()).collect::<Result<Vec<_>, _>>()?;
    let rows_len = r.u32()? as usize;
    let mut rows = Vec::with_capacity(rows_len.min(100_000));
    for _ in 0..rows_len {
        let fields = r.u16()? as usize;
        rows.push(
            (0..fields)
                .map(|_| r.opt_string())
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    let time_zone = r.opt_string()?;
    let lock_order = r.lock_order()?;
    r.finish("copy")?;
    Ok((
        CopyIn {
            table,
            columns,
            rows,
        },
        CopyContext {
            time_zone,
            lock_order,
        },
    ))
}

pub fn encode_description(description: &StatementDescription) -> Bytes {
    let mut buf = BytesMut::with_capacity(128);
    put_oids(&mut buf, &description.params);
    put_columns(&mut buf, &description.columns);
    buf.freeze()
}

pub fn decode_description(payload: Bytes) -> Result<StatementDescription, NetworkError> {
    let mut r = Reader { buf: payload };
    let params = r.oids()?;
    let columns = r.columns()?;
    r.finish("description")?;
    Ok(StatementDescription { params, columns })
}

pub fn encode_columns(columns: &[Column]) -> Bytes {
    let mut buf = BytesMut::with_capacity(64 * columns.len().max(1));
    put_columns(&mut buf, columns);
    buf.freeze()
}

pub fn decode_columns(payload: Bytes) -> Result<Vec<Column>, NetworkError> {
    let mut r = Reader { buf: payload };
    let columns = r.columns()?;
    r.finish("columns")?;
    Ok(columns)
}

/// Rows travel as their count and the `DataRow` bytes exactly as the client will receive them.
pub fn encode_rows(rows: &DataRows) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + rows.bytes().len());
    buf.put_u32(rows.len() as u32);
    buf.put_slice(rows.bytes());
    buf.freeze()
}

pub fn decode_rows(mut payload: Bytes) -> Result<DataRows, NetworkError> {
    if payload.len() < 4 {
        return Err(malformed("rows"));
    }
    let count = payload.get_u32() as usize;
    check_data_rows(&payload, count)?;
    Ok(DataRows::from_encoded(payload, count))
}

/// A node is a cluster member, but the proxy forwards these bytes to clients as they are:
/// make sure they are exactly `count` well-formed DataRow messages.
fn check_data_rows(bytes: &[u8], count: usize) -> Result<(), NetworkError> {
    let mut at = 0;
    for _ in 0..count {
        let header = bytes.get(at..at + 5).ok_or_else(|| malformed("data row"))?;
        if header[0] != b'D' {
            return Err(malformed("data row"));
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len < 6 {
            return Err(malformed("data row"));
        }
        at += 1 + len;
    }
    if at == bytes.len() {
        Ok(())
    } else {
        Err(malformed("data rows"))
    }
}

/// A COMPLETE: the node's transaction state, the command tag, and where the statement's
/// commits landed in replication (`NodeSession::take_commit_positions`).
pub fn encode_complete(tag: &str, in_transaction: bool, positions: &[CommitPosition]) -> Bytes {
    let mut buf = BytesMut::with_capacity(tag.len() + 10);
    buf.put_u8(u8::from(in_transaction));
    put_str(&mut buf, tag);
    put_positions(&mut buf, positions);
    buf.freeze()
}

pub fn decode_complete(
    payload: Bytes,
) -> Result<(String, bool, Vec<CommitPosition>), NetworkError> {
    let mut r = Reader { buf: payload };
    let in_transaction = r.u8()? != 0;
    let tag = r.string()?;
    let positions = r.positions()?;
    r.finish("complete")?;
    Ok((tag, in_transaction, positions))
}

pub fn encode_error(error: &DbError, in_transaction: bool) -> Bytes {
    let mut buf = BytesMut::with_capacity(error.message.len() + 32);
    buf.put_u8(u8::from(in_transaction));
    put_str(&mut buf, &error.code);
    put_str(&mut buf, &error.message);
    put_opt_str(&mut buf, error.detail.as_deref());
    put_opt_str(&mut buf, error.hint.as_deref());
    buf.freeze()
}

pub fn decode_error(payload: Bytes) -> Result<(DbError, bool), NetworkError> {
    let mut r = Reader { buf: payload };
    let in_transaction = r.u8()? != 0;
    let error = DbError {
        code: r.string()?,
        message: r.string()?,
        detail: r.opt_string()?,
        hint: r.opt_string()?,
    };
    r.finish("error")?;
    Ok((error, in_transaction))
}

pub fn encode_copied(rows: u64, in_transaction: bool) -> Bytes {
    let mut buf = BytesMut::with_capacity(9);
    buf.put_u8(u8::from(in_transaction));
    buf.put_u64(rows);
    buf.freeze()
}

pub fn decode_copied(payload: Bytes) -> Result<(u64, bool), NetworkError> {
    let mut r = Reader { buf: payload };
    let in_transaction = r.u8()? != 0;
    let rows = r.u64()?;
    r.finish("copied")?;
    Ok((rows, in_transaction))
}

pub fn encode_prepare(gid: &str, decider: &str) -> Bytes {
    let mut buf = BytesMut::new();
    put_str(&mut buf, gid);
    put_str(&mut buf, decider);
    buf.freeze()
}

pub fn decode_prepare(payload: Bytes) -> Result<(String, String), NetworkError> {
    let mut r = Reader { buf: payload };
    let gid = r.string()?;
    let decider = r.string()?;
    r.finish("prepare")?;
    Ok((gid, decider))
}

pub fn encode_commit_decision(gid: &str, participants: &[String]) -> Bytes {
    let mut buf = BytesMut::new();
    put_str(&mut buf, gid);
    buf.put_u16(participants.len() as u16);
    for participant in participants {
        put_str(&mut buf, participant);
    }
    buf.freeze()
}

pub fn decode_commit_decision(payload: Bytes) -> Result<(String, Vec<String>), NetworkError> {
    let mut r = Reader { buf: payload };
    let gid = r.string()?;
    let n = r.u16()? as usize;
    let participants = (0..n).map(|_| r.string()).collect::<Result<_, _>>()?;
    r.finish("commit decision")?;
    Ok((gid, participants))
}

pub fn encode_finish_prepared(gid: &str, commit: bool) -> Bytes {
    let mut buf = BytesMut::new();
    put_str(&mut buf, gid);
    buf.put_u8(u8::from(commit));
    buf.freeze()
}

pub fn decode_finish_prepared(payload: Bytes) -> Result<(String, bool), NetworkError> {
    let mut r = Reader { buf: payload };
    let gid = r.string()?;
    let commit = r.u8()? != 0;
    r.finish("finish prepared")?;
    Ok((gid, commit))
}

pub fn encode_gid(gid: &str) -> Bytes {
    let mut buf = BytesMut::new();
    put_str(&mut buf, gid);
    buf.freeze()
}

pub fn decode_gid(payload: Bytes) -> Result<String, NetworkError> {
    let mut r = Reader { buf: payload };
    let gid = r.string()?;
    r.finish("transaction id")?;
    Ok(gid)
}

/// The answer to a request that returns nothing but the session's transaction state.
/// Success: the session's transaction state, and where the request's commits landed in
/// replication (COMMIT_DECISION, FINISH_PREPARED; empty for the others).
pub fn encode_done(in_transaction: bool, positions: &[CommitPosition]) -> Bytes {
    let mut buf = BytesMut::with_capacity(3);
    buf.put_u8(u8::from(in_transaction));
    put_positions(&mut buf, positions);
    buf.freeze()
}

pub fn decode_done(payload: Bytes) -> Result<(bool, Vec<CommitPosition>), NetworkError> {
    let mut r = Reader { buf: payload };
    let in_transaction = r.u8()? != 0;
    let positions = r.positions()?;
    r.finish("done")?;
    Ok((in_transaction, positions))
}

pub fn encode_prepared_list(list: &[PreparedTxn]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u32(list.len() as u32);
    for txn in list {
        put_str(&mut buf, &txn.gid);
        put_str(&mut buf, &txn.decider);
        buf.put_u64(txn.prepared_at_ms as u64);
    }
    buf.freeze()
}

pub fn decode_prepared_list(payload: Bytes) -> Result<Vec<PreparedTxn>, NetworkError> {
    let mut r = Reader { buf: payload };
    let n = r.u32()? as usize;
    let mut list = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        list.push(PreparedTxn {
            gid: r.string()?,
            decider: r.string()?,
            prepared_at_ms: r.u64()? as i64,
        });
    }
    r.finish("prepared list")?;
    Ok(list)
}

pub fn encode_outcome(outcome: TxnOutcome) -> Bytes {
    Bytes::from(vec![match outcome {
        TxnOutcome::Committed => 1,
        TxnOutcome::Aborted => 2,
        TxnOutcome::Pending => 3,
    }])
}

pub fn decode_outcome(payload: Bytes) -> Result<TxnOutcome, NetworkError> {
    let mut r = Reader { buf: payload };
    let outcome = match r.u8()? {
        1 => TxnOutcome::Committed,
        2 => TxnOutcome::Aborted,
        3 => TxnOutcome::Pending,
        _ => return Err(malformed("transaction outcome")),
    };
    r.finish("outcome")?;
    Ok(outcome)
}

pub fn encode_status(status: &NodeStatus) -> Bytes {
    let mut buf = BytesMut::new();
    put_str(&mut buf, &status.backend);
    put_str(&mut buf, &status.location);
    buf.put_u8(u8::from(status.healthy));
    buf.put_u32(status.prepared);
    buf.put_u64(status.map_epoch);
    buf.put_u32(status.shards.len() as u32);
    for shard in &status.shards {
        put_str(&mut buf, &shard.table);
        buf.put_u32(shard.shard);
        buf.put_u8(u8::from(shard.primary));
    }
    buf.freeze()
}

pub fn decode_status(payload: Bytes) -> Result<NodeStatus, NetworkError> {
    let mut r = Reader { buf: payload };
    let status = NodeStatus {
        backend: r.string()?,
        location: r.string()?,
        healthy: r.u8()? != 0,
        prepared: r.u32()?,
        map_epoch: r.u64()?,
        shards: Vec::new(),
    };
    let n = r.u32()? as usize;
    r.need(n.saturating_mul(9), "held shards")?;
    let mut status = status;
    for _ in 0..n {
        status.shards.push(HeldShard {
            table: r.string()?,
            shard: r.u32()?,
            primary: r.u8()? != 0,
        });
    }
    r.finish("status")?;
    Ok(status)
}

/// A MAP request or MAP_REPORT answer: u8 0 (no map) or u8 1 and the encoded map.
pub fn encode_map(map: Option<&ClusterMap>) -> Bytes {
    match map {
        None => Bytes::from_static(&[0]),
        Some(map) => {
            let encoded = map.encode();
            let mut buf = BytesMut::with_capacity(encoded.len() + 1);
            buf.put_u8(1);
            buf.put_slice(&encoded);
            buf.freeze()
        }
    }
}

pub fn decode_map(payload: Bytes) -> Result<Option<ClusterMap>, NetworkError> {
    match payload.first() {
        Some(0) if payload.len() == 1 => Ok(None),
        Some(1) => ClusterMap::decode(&payload[1..])
            .map(Some)
            .map_err(|e| NetworkError::MalformedFrame(format!("node protocol: {e}"))),
        _ => Err(malformed("cluster map")),
    }
}

/// A REPLICATION_REPORT: u32 n, then per row: str table, u32 shard, str role, u64 epoch,
/// u64 sequence, optional str peer (u8 0 | u8 1 + str), u64 peer sequence, u64 lag entries,
/// f64 lag seconds, str state, u64 WAL entries, u64 WAL bytes, u64 shipped, u64 applied,
/// u64 conflicts.
pub fn encode_replication(rows: &[ReplicationRow]) -> Bytes {
    let mut buf = BytesMut::with_capacity(64 + rows.len() * 128);
    buf.put_u32(rows.len() as u32);
    for row in rows {
        put_str(&mut buf, &row.table);
        buf.put_u32(row.shard);
        put_str(&mut buf, &row.role);
        buf.put_u64(row.epoch);
        buf.put_u64(row.sequence);
        match &row.peer {
            Some(peer) => {
                buf.put_u8(1);
                put_str(&mut buf, peer);
            }
            None => buf.put_u8(0),
        }
        buf.put_u64(row.peer_sequence);
        buf.put_u64(row.lag_entries);
        buf.put_f64(row.lag_seconds);
        put_str(&mut buf, &row.state);
        for n in [
            row.wal_entries,
            row.wal_bytes,
            row.entries_shipped,
            row.entries_applied,
            row.conflicts,
        ] {
            buf.put_u64(n);
        }
    }
    buf.freeze()
}

pub fn decode_replication(payload: Bytes) -> Result<Vec<ReplicationRow>, NetworkError> {
    let mut r = Reader { buf: payload };
    let n = r.u32()? as usize;
    // Each row takes at least 95 bytes: refuse counts the payload cannot hold.
    r.need(n.saturating_mul(95), "replication rows")?;
    let mut rows = Vec::with_capacity(n);
    for _ in 0..n {
        let table = r.string()?;
        let shard = r.u32()?;
        let role = r.string()?;
        let epoch = r.u64()?;
        let sequence = r.u64()?;
        let peer = match r.u8()? {
            0 => None,
            1 => Some(r.string()?),
            _ => return Err(malformed("replication peer")),
        };
        rows.push(ReplicationRow {
            table,
            shard,
            role,
            epoch,
            sequence,
            peer,
            peer_sequence: r.u64()?,
            lag_entries: r.u64()?,
            lag_seconds: f64::from_bits(r.u64()?),
            state: r.string()?,
            wal_entries: r.u64()?,
            wal_bytes: r.u64()?,
            entries_shipped: r.u64()?,
            entries_applied: r.u64()?,
            conflicts: r.u64()?,
        });
    }
    r.finish("replication report")?;
    Ok(rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn execute_and_copy_carry_the_lock_order() {
        let order = LockOrder {
            priority: 1_795_787_144_158_653,
            holds_elsewhere: true,
        };
        for lock_order in [None, Some(order)] {
            let payload = encode_execute(
                &Execute::simple("SELECT 1"),
                Some("alice"),
                Some("Europe/Berlin"),
                7,
                &[],
                lock_order,
            );
            let (request, context) = decode_execute(payload).unwrap();
            assert_eq!(&*request.sql, "SELECT 1");
            assert_eq!(context.time_zone.as_deref(), Some("Europe/Berlin"));
            assert_eq!(context.lock_order, lock_order);

            let batch = CopyIn {
                table: "t".into(),
                columns: vec!["a".into()],
                rows: vec![vec![Some("1".into()), None]],
            };
            let (decoded, context) =
                decode_copy_in(encode_copy_in(&batch, None, lock_order)).unwrap();
            assert_eq!(decoded.rows, batch.rows);
            assert_eq!(
                context,
                CopyContext {
                    time_zone: None,
                    lock_order
                }
            );
        }
    }
}
