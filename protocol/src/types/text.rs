//! The character types, `json`/`jsonb`, `"char"`, `bytea` and `uuid`.

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use super::name::char_length;
use super::scalar::format_f64;
use super::{
    PgType, SqlValue, SqlValueRef, bad_encoding, bad_stored, invalid_binary, invalid_syntax, json,
    utf8,
};
use crate::DbError;

/// `NAMEDATALEN - 1`: the longest `name`, in bytes.
const MAX_NAME_BYTES: usize = 63;

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The text a stored value stands for in a character-typed column.
fn stored_text(ty: PgType, value: SqlValueRef<'_>) -> Result<Cow<'_, str>, DbError> {
    match value {
        SqlValueRef::Text(s) => Ok(Cow::Borrowed(s)),
        SqlValueRef::Int(v) => Ok(Cow::Owned(v.to_string())),
        SqlValueRef::Float(f) => Ok(Cow::Owned(format_f64(f))),
        SqlValueRef::Bytes(b) => utf8(b).map(Cow::Borrowed),
        SqlValueRef::Null => Err(bad_stored(ty, value)),
    }
}

/// Text and binary output of the types whose binary form is their text.
pub(super) fn plain_out(
    ty: PgType,
    value: SqlValueRef<'_>,
    out: &mut BytesMut,
) -> Result<(), DbError> {
    out.put_slice(stored_text(ty, value)?.as_bytes());
    Ok(())
}

pub(super) fn jsonb_binary(value: SqlValueRef<'_>, out: &mut BytesMut) -> Result<(), DbError> {
    // jsonb's binary format is a version byte followed by the text form.
    out.put_u8(1);
    plain_out(PgType::Jsonb, value, out)
}

/// `character(n)` output: the stored text padded with spaces to `n` characters.
pub(super) fn bpchar_out(
    typmod: i32,
    value: SqlValueRef<'_>,
    out: &mut BytesMut,
) -> Result<(), DbError> {
    let text = stored_text(PgType::Bpchar, value)?;
    out.put_slice(text.as_bytes());
    if let Some(n) = char_length(typmod) {
        let len = text.chars().count();
        out.put_bytes(b' ', n.saturating_sub(len));
    }
    Ok(())
}

pub(super) fn text_recv(ty: PgType, bytes: &[u8]) -> Result<SqlValue, DbError> {
    let bytes = if ty == PgType::Jsonb {
        match bytes.split_first() {
            Some((1, rest)) => rest,
            Some((version, _)) => {
                return Err(DbError::new(
                    "22P03",
                    format!("unsupported jsonb version number {version}"),
                ));
            }
            None => return Err(invalid_binary(ty)),
        }
    } else {
        bytes
    };
    if ty == PgType::Name && bytes.len() > MAX_NAME_BYTES {
        return Err(DbError::new("42622", "identifier too long")
            .with_detail("Identifier must be less than 64 characters."));
    }
    parse_textual(ty, -1, utf8(bytes)?)
}

/// Input of `text`, `varchar(n)`, `character(n)`, `name`, `unknown`, `json` and `jsonb`.
pub(super) fn parse_textual(ty: PgType, typmod: i32, text: &str) -> Result<SqlValue, DbError> {
    if text.as_bytes().contains(&0) {
        return Err(bad_encoding(&[0]));
    }
    let value = match ty {
        PgType::Varchar | PgType::Bpchar => {
            let mut s = text;
            if let Some(n) = char_length(typmod)
                && let Some((cut, _)) = s.char_indices().nth(n)
            {
                // Postgres lets only trailing spaces be cut off silently.
                if s[cut..].bytes().any(|b| b != b' ') {
                    return Err(DbError::new(
                        "22001",
                        format!("value too long for type {}", ty.format_type(typmod)),
                    ));
                }
                s = &s[..cut];
            }
            if ty == PgType::Bpchar {
                s = s.trim_end_matches(' ');
            }
            s.to_owned()
        }
        PgType::Name => {
            let mut cut = text.len().min(MAX_NAME_BYTES);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text[..cut].to_owned()
        }
        PgType::Json => {
            json::validate(text)?;
            text.to_owned()
        }
        PgType::Jsonb => json::normalize_jsonb(text)?,
        _ => text.to_owned(),
    };
    Ok(SqlValue::Text(value))
}

// ---------------------------------------------------------------------------------------------
// "char": one byte, stored as the text Postgres 15 prints for it.

fn char_byte_text(b: u8) -> String {
    match b {
        0 => String::new(),
        0x80.. => format!("\\{:03o}", b),
        _ => char::from(b).to_string(),
    }
}

/// `charin`: a `\ooo` octal escape, else the first byte (0 when empty).
fn char_text_byte(s: &str) -> u8 {
    let b = s.as_bytes();
    let octal = |i: usize| {
        b.get(i)
            .filter(|c| (b'0'..=b'7').contains(c))
            .map(|c| c - b'0')
    };
    if b.first() == Some(&b'\\')
        && let (Some(x), Some(y), Some(z)) = (octal(1), octal(2), octal(3))
    {
        // Wraps like Postgres's `char` arithmetic for escapes above \377.
        return x.wrapping_shl(6).wrapping_add(y << 3).wrapping_add(z);
    }
    b.first().copied().unwrap_or(0)
}

pub(super) fn parse_char(text: &str) -> Result<SqlValue, DbError> {
    Ok(SqlValue::Text(char_byte_text(char_text_byte(text))))
}

pub(super) fn char_text(value: SqlValueRef<'_>, out: &mut BytesMut) -> Result<(), DbError> {
    let text = stored_text(PgType::Char, value)?;
    out.put_slice(char_byte_text(char_text_byte(&text)).as_bytes());
    Ok(())
}

pub(super) fn char_binary(value: SqlValueRef<'_>, out: &mut BytesMut) -> Result<(), DbError> {
    let text = stored_text(PgType::Char, value)?;
    out.put_u8(char_text_byte(&text));
    Ok(())
}

pub(super) fn char_recv(bytes: &[u8]) -> Result<SqlValue, DbError> {
    match bytes {
        [b] => Ok(SqlValue::Text(char_byte_text(*b))),
        _ => Err(invalid_binary(PgType::Char)),
    }
}

// ---------------------------------------------------------------------------------------------
// bytea

fn stored_bytes(value: SqlValueRef<'_>) -> Result<Cow<'_, [u8]>, DbError> {
    match value {
        SqlValueRef::Bytes(b) => Ok(Cow::Borrowed(b)),
        other => Ok(match stored_text(PgType::Bytea, other)? {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        }),
    }
}

pub(super) fn bytea_text(value: SqlValueRef<'_>, out: &mut BytesMut) -> Result<(), DbError> {
    let bytes = stored_bytes(value)?;
    out.put_slice(b"\\x");
    out.put_slice(hex(&bytes).as_bytes());
    Ok(())
}

pub(super) fn bytea_binary(value: SqlValueRef<'_>, out: &mut BytesMut) -> Result<(), DbError> {
    out.put_slice(&stored_bytes(value)?);
    Ok(())
}

/// `byteain`: `\x` followed by hex pairs (white space between pairs allowed), or the escape
/// format where `\\` is a backslash and `\ooo` an octal byte.
pub(super) fn parse_bytea(text: &str) -> Result<SqlValue, DbError> {
    let b = text.as_bytes();
    if let Some(hex_digits) = text.strip_prefix("\\x") {
        let mut out = Vec::with_capacity(hex_digits.len() / 2);
        let mut chars = hex_digits.chars();
        let digit = |c: char| {
            c.to_digit(16)
                .map(|d| d as u8)
                .ok_or_else(|| DbError::new("22023", format!("invalid hexadecimal digit: \"{c}\"")))
        };
        while let Some(c) = chars.next() {
            if matches!(c, ' ' | '\n' | '\t' | '\r') {
                continue;
            }
            let high = digit(c)?;
            let Some(c2) = chars.next() else {
                return Err(DbError::new(
                    "22023",
                    "invalid hexadecimal data: odd number of digits",
                ));
            };
            out.push(high << 4 | digit(c2)?);
        }
        return Ok(SqlValue::Bytes(out));
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if let (Some(x @ b'0'..=b'3'), Some(y @ b'0'..=b'7'), Some(z @ b'0'..=b'7')) =
            (b.get(i + 1), b.get(i + 2), b.get(i + 3))
        {
            out.push(((x - b'0') << 6) | ((y - b'0') << 3) | (z - b'0'));
            i += 4;
        } else {
            return Err(DbError::new("22P02", "invalid input syntax for type bytea"));
        }
    }
    Ok(SqlValue::Bytes(out))
}

// ---------------------------------------------------------------------------------------------
// uuid

/// `uuid_in`: 32 hex digits, optionally in braces, with a hyphen allowed after any group of
/// four.
fn parse_uuid_bytes(text: &str) -> Option<[u8; 16]> {
    let mut s = text.as_bytes();
    let braces = s.first() == Some(&b'{');
    if braces {
        s = &s[1..];
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        let (hi, lo) = (s.first()?, s.get(1)?);
        let hi = char::from(*hi).to_digit(16)?;
        let lo = char::from(*lo).to_digit(16)?;
        *byte = (hi << 4 | lo) as u8;
        s = &s[2..];
        if s.first() == Some(&b'-') && i % 2 == 1 && i < 15 {
            s = &s[1..];
        }
    }
    if braces {
        s = s.strip_prefix(b"}")?;
    }
    s.is_empty().then_some(out)
}

fn format_uuid(b: &[u8; 16]) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        hex(&b[..4]),
        hex(&b[4..6]),
        hex(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..])
    )
}

pub(super) fn parse_uuid(text: &str) -> Result<SqlValue, DbError> {
    parse_uuid_bytes(text)
        .map(|b| SqlValue::Text(format_uuid(&b)))
        .ok_or_else(|| invalid_syntax("uuid", text))
}

fn stored_uuid(value: SqlValueRef<'_>) -> Option<[u8; 16]> {
    match value {
        SqlValueRef::Text(s) => parse_uuid_bytes(s),
        SqlValueRef::Bytes(b) => b.try_into().ok(),
        _ => None,
    }
}

pub(super) fn uuid_text(value: SqlValueRef<'_>, out: &mut BytesMut) -> Result<(), DbError> {
    match (stored_uuid(value), value) {
        (Some(b), _) => out.put_slice(format_uuid(&b).as_bytes()),
        (None, SqlValueRef::Text(s)) => out.put_slice(s.as_bytes()),
        (None, _) => return Err(bad_stored(PgType::Uuid, value)),
    }
    Ok(())
}

pub(super) fn uuid_binary(value: SqlValueRef<'_>, out: &mut BytesMut) -> Result<(), DbError> {
    let b = stored_uuid(value).ok_or_else(|| bad_stored(PgType::Uuid, value))?;
    out.put_slice(&b);
    Ok(())
}

pub(super) fn uuid_recv(bytes: &[u8]) -> Result<SqlValue, DbError> {
    let b: [u8; 16] = bytes.try_into().map_err(|_| invalid_binary(PgType::Uuid))?;
    Ok(SqlValue::Text(format_uuid(&b)))
}
