//! Postgres' binary COPY format: an `PGCOPY\n\xff\r\n\0` signature, flags and a header
//! extension, then tuples of length-prefixed binary values, then a -1 trailer.
//!
//! Rows coming in are decoded with the target columns' types into text fields (what the node
//! takes for COPY); rows going out are the nodes' binary DataRows, whose bodies already have
//! the tuple layout.

use bytes::BytesMut;
use mycelium_protocol::types::{self, PgType};
use mycelium_protocol::{Column, Format};

use crate::error::{ProxyError, sql_error};

pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// The header a binary COPY TO starts with: signature, no flags, no extension.
pub fn header() -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out
}

pub const TRAILER: [u8; 2] = (-1i16).to_be_bytes();

/// Incremental parser of binary COPY input.
pub struct BinaryCopyParser {
    columns: Vec<Column>,
    buffer: Vec<u8>,
    header_done: bool,
    pub ended: bool,
    pub rows: Vec<Vec<Option<String>>>,
    pub error: Option<ProxyError>,
}

impl BinaryCopyParser {
    pub fn new(columns: Vec<Column>) -> BinaryCopyParser {
        BinaryCopyParser {
            columns,
            buffer: Vec::new(),
            header_done: false,
            ended: false,
            rows: Vec::new(),
            error: None,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.ended || self.error.is_some() {
            return;
        }
        self.buffer.extend_from_slice(data);
        if let Err(e) = self.parse() {
            self.error = Some(e);
        }
    }

    pub fn finish(&mut self) {
        if self.error.is_none() && !self.ended && !self.buffer.is_empty() {
            self.error = Some(bad("COPY data ended in the middle of a row"));
        }
    }

    fn parse(&mut self) -> Result<(), ProxyError> {
        let mut at = 0;
        if !self.header_done {
            if self.buffer.len() < 19 {
                return Ok(());
            }
            if &self.buffer[..11] != SIGNATURE {
                return Err(bad("COPY file signature not recognized"));
            }
            let extension = be_i32(&self.buffer[15..19]);
            let Ok(extension) = usize::try_from(extension) else {
                return Err(bad("invalid COPY file header (negative extension length)"));
            };
            if self.buffer.len() < 19 + extension {
                return Ok(());
            }
            at = 19 + extension;
            self.header_done = true;
        }
        while let Some(count_bytes) = self.buffer.get(at..at + 2) {
            let count = i16::from_be_bytes([count_bytes[0], count_bytes[1]]);
            if count == -1 {
                self.ended = true;
                at += 2;
                break;
            }
            let count = usize::try_from(count).map_err(|_| bad("invalid field count"))?;
            if count != self.columns.len() {
                return Err(bad(&format!(
                    "row field count is {count}, expected {}",
                    self.columns.len()
                )));
            }
            let mut cursor = at + 2;
            let mut fields = Vec::with_capacity(count);
            let mut complete = true;
            for column in &self.columns {
                let Some(len_bytes) = self.buffer.get(cursor..cursor + 4) else {
                    complete = false;
                    break;
                };
                let len = be_i32(len_bytes);
                cursor += 4;
                if len < 0 {
                    fields.push(None);
                    continue;
                }
                let len = len as usize;
                let Some(value) = self.buffer.get(cursor..cursor + len) else {
                    complete = false;
                    break;
                };
                cursor += len;
                fields.push(Some(to_text(column, value)?));
            }
            if !complete {
                break;
            }
            self.rows.push(fields);
            at = cursor;
        }
        self.buffer.drain(..at);
        Ok(())
    }
}

fn be_i32(bytes: &[u8]) -> i32 {
    i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn bad(message: &str) -> ProxyError {
    sql_error("22P04", message)
}

/// A binary value of `column` in Postgres text input syntax.
fn to_text(column: &Column, value: &[u8]) -> Result<String, ProxyError> {
    let ty = PgType::from_oid(column.type_oid).unwrap_or(PgType::Text);
    let decoded = types::decode_param(ty, Format::Binary, value)?;
    let mut text = BytesMut::new();
    types::encode_text(ty, column.type_modifier, decoded.as_ref(), &mut text)?;
    String::from_utf8(text.to_vec()).map_err(|_| bad("value is not valid UTF-8"))
}
