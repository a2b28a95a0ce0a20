//! Encoders for the backend messages the proxy sends. Written by hand into the session's output
//! buffer: each is a few bytes, and the hot path should not build a struct per message.

use bytes::{BufMut, BytesMut};
use mycelium_protocol::{Column, Format};

/// Transaction status reported in ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStatus {
    Idle,
    InTransaction,
    Failed,
}

/// Starts a message with a type byte and a length to be filled in by [`end`].
fn begin(buf: &mut BytesMut, kind: u8) -> usize {
    buf.put_u8(kind);
    let at = buf.len();
    buf.put_u32(0);
    at
}

fn end(buf: &mut BytesMut, len_at: usize) {
    let len = (buf.len() - len_at) as u32;
    buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(buf: &mut BytesMut, s: &str) {
    // A NUL inside a string would end the field early on the client; never forward one.
    for part in s.split('\0') {
        buf.put_slice(part.as_bytes());
    }
    buf.put_u8(0);
}

pub fn authentication_ok(buf: &mut BytesMut) {
    let at = begin(buf, b'R');
    buf.put_i32(0);
    end(buf, at);
}

pub fn authentication_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    let at = begin(buf, b'R');
    buf.put_i32(10);
    for mechanism in mechanisms {
        put_cstr(buf, mechanism);
    }
    buf.put_u8(0);
    end(buf, at);
}

pub fn authentication_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, b'R');
    buf.put_i32(11);
    buf.put_slice(data);
    end(buf, at);
}

pub fn authentication_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, b'R');
    buf.put_i32(12);
    buf.put_slice(data);
    end(buf, at);
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let at = begin(buf, b'S');
    put_cstr(buf, name);
    put_cstr(buf, value);
    end(buf, at);
}

pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    let at = begin(buf, b'K');
    buf.put_i32(pid);
    buf.put_i32(secret);
    end(buf, at);
}

pub fn negotiate_protocol_version(buf: &mut BytesMut, newest_minor: i32, unsupported: &[String]) {
    let at = begin(buf, b'v');
    buf.put_i32(newest_minor);
    buf.put_i32(unsupported.len() as i32);
    for option in unsupported {
        put_cstr(buf, option);
    }
    end(buf, at);
}

pub fn ready_for_query(buf: &mut BytesMut, status: TxnStatus) {
    let at = begin(buf, b'Z');
    buf.put_u8(match status {
        TxnStatus::Idle => b'I',
        TxnStatus::InTransaction => b'T',
        TxnStatus::Failed => b'E',
    });
    end(buf, at);
}

pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    let at = begin(buf, b'C');
    put_cstr(buf, tag);
    end(buf, at);
}

pub fn empty_query_response(buf: &mut BytesMut) {
    let at = begin(buf, b'I');
    end(buf, at);
}

/// An ErrorResponse (`E`) or NoticeResponse (`N`) with the standard fields.
pub struct Report<'a> {
    pub severity: &'a str,
    pub code: &'a str,
    pub message: &'a str,
    pub detail: Option<&'a str>,
    pub hint: Option<&'a str>,
}

pub fn error_response(buf: &mut BytesMut, report: &Report<'_>) {
    report_message(buf, b'E', report);
}

pub fn notice_response(buf: &mut BytesMut, report: &Report<'_>) {
    report_message(buf, b'N', report);
}

fn report_message(buf: &mut BytesMut, kind: u8, report: &Report<'_>) {
    let at = begin(buf, kind);
    buf.put_u8(b'S');
    put_cstr(buf, report.severity);
    buf.put_u8(b'V');
    put_cstr(buf, report.severity);
    buf.put_u8(b'C');
    put_cstr(buf, report.code);
    buf.put_u8(b'M');
    put_cstr(buf, report.message);
    if let Some(detail) = report.detail {
        buf.put_u8(b'D');
        put_cstr(buf, detail);
    }
    if let Some(hint) = report.hint {
        buf.put_u8(b'H');
        put_cstr(buf, hint);
    }
    buf.put_u8(0);
    end(buf, at);
}

/// RowDescription for `columns`, each in the format `format_of(i)`.
pub fn row_description(
    buf: &mut BytesMut,
    columns: &[Column],
    format_of: impl Fn(usize) -> Format,
) {
    let at = begin(buf, b'T');
    buf.put_i16(columns.len() as i16);
    for (i, column) in columns.iter().enumerate() {
        put_cstr(buf, &column.name);
        buf.put_u32(column.table_oid);
        buf.put_i16(column.column_id);
        buf.put_u32(column.type_oid);
        buf.put_i16(column.type_size);
        buf.put_i32(column.type_modifier);
        buf.put_i16(format_of(i).code());
    }
    end(buf, at);
}

pub fn parameter_description(buf: &mut BytesMut, types: &[u32]) {
    let at = begin(buf, b't');
    buf.put_i16(types.len() as i16);
    for oid in types {
        buf.put_u32(*oid);
    }
    end(buf, at);
}

pub fn no_data(buf: &mut BytesMut) {
    let at = begin(buf, b'n');
    end(buf, at);
}

pub fn parse_complete(buf: &mut BytesMut) {
    let at = begin(buf, b'1');
    end(buf, at);
}

pub fn bind_complete(buf: &mut BytesMut) {
    let at = begin(buf, b'2');
    end(buf, at);
}

pub fn close_complete(buf: &mut BytesMut) {
    let at = begin(buf, b'3');
    end(buf, at);
}

pub fn portal_suspended(buf: &mut BytesMut) {
    let at = begin(buf, b's');
    end(buf, at);
}

pub fn copy_in_response(buf: &mut BytesMut, columns: usize, format: Format) {
    copy_response(buf, b'G', columns, format);
}

pub fn copy_out_response(buf: &mut BytesMut, columns: usize, format: Format) {
    copy_response(buf, b'H', columns, format);
}

fn copy_response(buf: &mut BytesMut, kind: u8, columns: usize, format: Format) {
    let at = begin(buf, kind);
    buf.put_i8(format.code() as i8);
    buf.put_i16(columns as i16);
    for _ in 0..columns {
        buf.put_i16(format.code());
    }
    end(buf, at);
}

pub fn copy_data(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, b'd');
    buf.put_slice(data);
    end(buf, at);
}

pub fn copy_done(buf: &mut BytesMut) {
    let at = begin(buf, b'c');
    end(buf, at);
}

/// A one-column text DataRow, for answers the proxy makes itself (SHOW).
pub fn text_data_row(buf: &mut BytesMut, values: &[Option<&str>]) {
    let at = begin(buf, b'D');
    buf.put_i16(values.len() as i16);
    for value in values {
        match value {
            Some(v) => {
                buf.put_i32(v.len() as i32);
                buf.put_slice(v.as_bytes());
            }
            None => buf.put_i32(-1),
        }
    }
    end(buf, at);
}

/// A FATAL ErrorResponse with just a code and message (the session ends after it).
pub fn fatal_response(buf: &mut BytesMut, code: &str, message: &str) {
    error_response(
        buf,
        &Report {
            severity: "FATAL",
            code,
            message,
            detail: None,
            hint: None,
        },
    );
}
