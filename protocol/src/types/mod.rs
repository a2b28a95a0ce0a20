//! The Postgres value codec: how a value held by the storage engine is written to a client in
//! the Postgres text and binary wire formats, and how a client's parameter (or a literal in a
//! cast, or a COPY field) becomes a storage value.
//!
//! # Storage representation
//!
//! The storage engine (SQLite) has five value classes, mirrored by [`SqlValue`] /
//! [`SqlValueRef`]. Each Postgres type is held as follows, and every function here relies on it:
//!
//! | Postgres type | held as | notes |
//! |---|---|---|
//! | `boolean` | `Int` 1 / 0 | any non-zero integer reads as true |
//! | `smallint`, `integer`, `bigint` | `Int` | range-checked on input |
//! | `oid` | `Int` 0..=4294967295 | input also takes -2147483648..-1 and wraps, like `oidin` |
//! | `real`, `double precision` | `Float` (`Int` accepted) | `real` is printed from its `f32` value |
//! | `numeric` | `Int`, `Float` or `Text` | see below |
//! | `text`, `varchar`, `name`, `"char"`, `unknown` | `Text` | |
//! | `character(n)` (`bpchar`) | `Text` without trailing spaces | padded to `n` on output |
//! | `json` | `Text`, exactly as given | validated on input |
//! | `jsonb` | `Text`, normalized on input | printed as stored |
//! | `bytea` | `Bytes` | |
//! | `uuid` | `Text`, lowercase hyphenated | |
//! | `date` | `Text` `YYYY-MM-DD` | |
//! | `time` | `Text` `HH:MM:SS[.ffffff]` | |
//! | `timestamp` | `Text` `YYYY-MM-DD HH:MM:SS[.ffffff]` | an input offset is ignored |
//! | `timestamptz` | `Text` `YYYY-MM-DD HH:MM:SS[.ffffff]+00` | stored in UTC, shown in the session's zone |
//!
//! Dates and times are stored as text in exactly the form Postgres prints them (with the session
//! time zone at UTC), so that they sort correctly as text and SQLite's date functions read
//! them. A `timestamptz` is printed in the session's `TimeZone` and input without an offset is
//! read in it (the thread's zone, see [`with_session_time_zone`]). Years before 1 AD carry a ` BC` suffix and
//! infinite values are stored as `infinity` / `-infinity`; both are rare and do not sort as text.
//! On output the stored text is reparsed, so values written by SQLite itself
//! (`2024-01-02 03:04:05`, `2024-01-02 03:04:05.123`, `2024-01-02T03:04:05Z`) print correctly too.
//!
//! Date/time input takes the ISO 8601 forms (`T` or space separator, `Z`, `UTC` and numeric
//! offsets), Postgres's month-day-year order when the first field is short (`1-2-2024`),
//! compact `YYYYMMDD` / `HHMMSS`, `BC`, and the special words (`infinity`, `epoch`, `now`,
//! `today`, `allballs`, ...), and zone names with a slash (`2024-06-01 10:00 Europe/Paris`).
//! Month names, Julian days and zone abbreviations are not read; an unknown zone name is
//! rejected with SQLSTATE 22023 rather than guessed.
//!
//! `character(n)` is stored without trailing spaces because Postgres ignores them in
//! comparisons: stored trimmed, SQLite's plain equality agrees with Postgres. The cost is that
//! an unsized `bpchar` loses trailing spaces its input had.
//!
//! `jsonb` input is rewritten into the text Postgres's `jsonb_out` would produce (keys sorted by
//! length then bytes, duplicate keys resolved to the last one, numbers in `numeric` form,
//! `", "` and `": "` separators), so storing it is the only normalization and output copies it.
//!
//! ## Numeric precision
//!
//! `numeric` parsed from text becomes `Int` when integral and within `i64`, else `Float` — which
//! keeps only about 15–17 significant digits — and `Text` holding the exact decimal only when the
//! value does not fit an `f64` at all. This matches what SQLite's NUMERIC affinity would do with
//! the text anyway. Binary input is decoded exactly and becomes `Float` only when the `f64`
//! round-trips to the same decimal, else `Text`. A typmod `numeric(p,s)` is applied on input
//! (rounding half away from zero, overflow is SQLSTATE 22003) and on output (exactly `s` decimals).
//!
//! ## Errors
//!
//! Bad text input fails with the SQLSTATE and message Postgres uses (`22P02`, `22003`, `22007`,
//! `22008`, `22001`, `22021`); bad binary input fails with `22P03`. Nothing here panics on input.

mod datetime;
mod json;
mod name;
mod numeric;
mod scalar;
mod text;
mod zone;

#[cfg(test)]
mod tests;

use bytes::BytesMut;

use crate::{DbError, Format};

pub use zone::{TimeZone, ZoneSetting, format_offset, session_time_zone, with_session_time_zone};

/// Postgres type OIDs we support.
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const REGPROC: u32 = 24;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const INT2_ARRAY: u32 = 1005;
    pub const INT4_ARRAY: u32 = 1007;
    pub const TEXT_ARRAY: u32 = 1009;
    pub const OID_ARRAY: u32 = 1028;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const REGCLASS: u32 = 2205;
    pub const REGTYPE: u32 = 2206;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// A Postgres type whose values the codec can read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Text,
    Varchar,
    Bpchar,
    Name,
    Char,
    Oid,
    Bytea,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Json,
    Jsonb,
    Uuid,
    Unknown,
}

impl PgType {
    /// Every supported type, for tables and exhaustive tests.
    pub const ALL: [PgType; 22] = [
        PgType::Bool,
        PgType::Int2,
        PgType::Int4,
        PgType::Int8,
        PgType::Float4,
        PgType::Float8,
        PgType::Numeric,
        PgType::Text,
        PgType::Varchar,
        PgType::Bpchar,
        PgType::Name,
        PgType::Char,
        PgType::Oid,
        PgType::Bytea,
        PgType::Date,
        PgType::Time,
        PgType::Timestamp,
        PgType::Timestamptz,
        PgType::Json,
        PgType::Jsonb,
        PgType::Uuid,
        PgType::Unknown,
    ];

    pub fn oid(self) -> u32 {
        match self {
            PgType::Bool => oid::BOOL,
            PgType::Int2 => oid::INT2,
            PgType::Int4 => oid::INT4,
            PgType::Int8 => oid::INT8,
            PgType::Float4 => oid::FLOAT4,
            PgType::Float8 => oid::FLOAT8,
            PgType::Numeric => oid::NUMERIC,
            PgType::Text => oid::TEXT,
            PgType::Varchar => oid::VARCHAR,
            PgType::Bpchar => oid::BPCHAR,
            PgType::Name => oid::NAME,
            PgType::Char => oid::CHAR,
            PgType::Oid => oid::OID,
            PgType::Bytea => oid::BYTEA,
            PgType::Date => oid::DATE,
            PgType::Time => oid::TIME,
            PgType::Timestamp => oid::TIMESTAMP,
            PgType::Timestamptz => oid::TIMESTAMPTZ,
            PgType::Json => oid::JSON,
            PgType::Jsonb => oid::JSONB,
            PgType::Uuid => oid::UUID,
            PgType::Unknown => oid::UNKNOWN,
        }
    }

    /// The type with this OID; `None` for OIDs the codec does not support.
    pub fn from_oid(oid: u32) -> Option<PgType> {
        PgType::ALL.into_iter().find(|ty| ty.oid() == oid)
    }

    /// `pg_type.typlen`: the fixed size in bytes, -1 for varlena types, -2 for C strings.
    pub fn type_size(self) -> i16 {
        match self {
            PgType::Bool | PgType::Char => 1,
            PgType::Int2 => 2,
            PgType::Int4 | PgType::Float4 | PgType::Date | PgType::Oid => 4,
            PgType::Int8
            | PgType::Float8
            | PgType::Time
            | PgType::Timestamp
            | PgType::Timestamptz => 8,
            PgType::Uuid => 16,
            PgType::Name => 64,
            // `unknown` literals are C strings inside Postgres, and clients see -2 in
            // RowDescription for them.
            PgType::Unknown => -2,
            PgType::Numeric
            | PgType::Text
            | PgType::Varchar
            | PgType::Bpchar
            | PgType::Bytea
            | PgType::Json
            | PgType::Jsonb => -1,
        }
    }

    /// The name `format_type` prints for the type without a modifier.
    pub fn name(self) -> &'static str {
        match self {
            PgType::Bool => "boolean",
            PgType::Int2 => "smallint",
            PgType::Int4 => "integer",
            PgType::Int8 => "bigint",
            PgType::Float4 => "real",
            PgType::Float8 => "double precision",
            PgType::Numeric => "numeric",
            PgType::Text => "text",
            PgType::Varchar => "character varying",
            PgType::Bpchar => "character",
            PgType::Name => "name",
            PgType::Char => "\"char\"",
            PgType::Oid => "oid",
            PgType::Bytea => "bytea",
            PgType::Date => "date",
            PgType::Time => "time without time zone",
            PgType::Timestamp => "timestamp without time zone",
            PgType::Timestamptz => "timestamp with time zone",
            PgType::Json => "json",
            PgType::Jsonb => "jsonb",
            PgType::Uuid => "uuid",
            PgType::Unknown => "unknown",
        }
    }

    /// The name `format_type(oid, typmod)` prints, modifier included:
    /// `character varying(20)`, `numeric(10,2)`, `timestamp(3) with time zone`.
    pub fn format_type(self, typmod: i32) -> String {
        name::format_type(self, typmod)
    }

    /// Parses a SQL type name as written in Postgres DDL or casts, case-insensitively, with its
    /// modifiers, into the type and the typmod Postgres would store for it (-1 for none).
    pub fn parse_sql_name(name: &str) -> Option<(PgType, i32)> {
        name::parse_sql_name(name)
    }
}

/// A value as the storage engine (SQLite) holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SqlValueRef<'a> {
    Null,
    Int(i64),
    Float(f64),
    Text(&'a str),
    Bytes(&'a [u8]),
}

/// Owned counterpart, what a decoded parameter becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl SqlValue {
    pub fn as_ref(&self) -> SqlValueRef<'_> {
        match self {
            SqlValue::Null => SqlValueRef::Null,
            SqlValue::Int(v) => SqlValueRef::Int(*v),
            SqlValue::Float(v) => SqlValueRef::Float(*v),
            SqlValue::Text(v) => SqlValueRef::Text(v),
            SqlValue::Bytes(v) => SqlValueRef::Bytes(v),
        }
    }
}

impl SqlValueRef<'_> {
    pub fn into_owned(self) -> SqlValue {
        match self {
            SqlValueRef::Null => SqlValue::Null,
            SqlValueRef::Int(v) => SqlValue::Int(v),
            SqlValueRef::Float(v) => SqlValue::Float(v),
            SqlValueRef::Text(v) => SqlValue::Text(v.to_owned()),
            SqlValueRef::Bytes(v) => SqlValue::Bytes(v.to_vec()),
        }
    }
}

/// Appends the Postgres text-format representation of `value` (whose column has type `ty` and
/// typmod `typmod`) to `out`. Must not be called with `Null`: the caller writes the -1 length.
pub fn encode_text(
    ty: PgType,
    typmod: i32,
    value: SqlValueRef<'_>,
    out: &mut BytesMut,
) -> Result<(), DbError> {
    if value == SqlValueRef::Null {
        return Err(null_encoded());
    }
    match ty {
        PgType::Bool => scalar::bool_text(value, out),
        PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Oid => {
            scalar::int_text(ty, value, out)
        }
        PgType::Float4 | PgType::Float8 => scalar::float_text(ty, value, out),
        PgType::Numeric => numeric::encode_text(typmod, value, out),
        PgType::Text
        | PgType::Varchar
        | PgType::Name
        | PgType::Unknown
        | PgType::Json
        | PgType::Jsonb => text::plain_out(ty, value, out),
        PgType::Bpchar => text::bpchar_out(typmod, value, out),
        PgType::Char => text::char_text(value, out),
        PgType::Bytea => text::bytea_text(value, out),
        PgType::Uuid => text::uuid_text(value, out),
        PgType::Date | PgType::Time | PgType::Timestamp | PgType::Timestamptz => {
            datetime::encode_text(ty, typmod, value, out)
        }
    }
}

/// Appends the Postgres binary-format representation of `value` to `out`. Must not be called
/// with `Null`.
pub fn encode_binary(
    ty: PgType,
    typmod: i32,
    value: SqlValueRef<'_>,
    out: &mut BytesMut,
) -> Result<(), DbError> {
    if value == SqlValueRef::Null {
        return Err(null_encoded());
    }
    match ty {
        PgType::Bool => scalar::bool_binary(value, out),
        PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Oid => {
            scalar::int_binary(ty, value, out)
        }
        PgType::Float4 | PgType::Float8 => scalar::float_binary(ty, value, out),
        PgType::Numeric => numeric::encode_binary(typmod, value, out),
        PgType::Text | PgType::Varchar | PgType::Name | PgType::Unknown | PgType::Json => {
            text::plain_out(ty, value, out)
        }
        PgType::Jsonb => text::jsonb_binary(value, out),
        PgType::Bpchar => text::bpchar_out(typmod, value, out),
        PgType::Char => text::char_binary(value, out),
        PgType::Bytea => text::bytea_binary(value, out),
        PgType::Uuid => text::uuid_binary(value, out),
        PgType::Date | PgType::Time | PgType::Timestamp | PgType::Timestamptz => {
            datetime::encode_binary(ty, typmod, value, out)
        }
    }
}

/// Decodes a parameter sent by a client, in the text or binary wire format, into the value
/// storage holds. Binary input must be exactly the bytes Postgres's `*_recv` would accept.
pub fn decode_param(ty: PgType, format: Format, bytes: &[u8]) -> Result<SqlValue, DbError> {
    match format {
        Format::Text => parse_text(ty, -1, utf8(bytes)?),
        Format::Binary => match ty {
            PgType::Bool => scalar::bool_recv(bytes),
            PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Oid => scalar::int_recv(ty, bytes),
            PgType::Float4 | PgType::Float8 => scalar::float_recv(ty, bytes),
            PgType::Numeric => numeric::recv(bytes),
            PgType::Text
            | PgType::Varchar
            | PgType::Bpchar
            | PgType::Unknown
            | PgType::Json
            | PgType::Jsonb
            | PgType::Name => text::text_recv(ty, bytes),
            PgType::Char => text::char_recv(bytes),
            PgType::Bytea => Ok(SqlValue::Bytes(bytes.to_vec())),
            PgType::Uuid => text::uuid_recv(bytes),
            PgType::Date | PgType::Time | PgType::Timestamp | PgType::Timestamptz => {
                datetime::recv(ty, bytes)
            }
        },
    }
}

/// Parses Postgres text input syntax for `ty` (with typmod `typmod`, -1 for none) into the
/// value storage holds. Used for text-format parameters, casts such as `'1'::int`, and COPY.
pub fn parse_text(ty: PgType, typmod: i32, text: &str) -> Result<SqlValue, DbError> {
    match ty {
        PgType::Bool => scalar::parse_bool(text),
        PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Oid => scalar::parse_int(ty, text),
        PgType::Float4 | PgType::Float8 => scalar::parse_float(ty, text),
        PgType::Numeric => numeric::parse(typmod, text),
        PgType::Text
        | PgType::Varchar
        | PgType::Bpchar
        | PgType::Name
        | PgType::Unknown
        | PgType::Json
        | PgType::Jsonb => text::parse_textual(ty, typmod, text),
        PgType::Char => text::parse_char(text),
        PgType::Bytea => text::parse_bytea(text),
        PgType::Uuid => text::parse_uuid(text),
        PgType::Date | PgType::Time | PgType::Timestamp | PgType::Timestamptz => {
            datetime::parse(ty, typmod, text)
        }
    }
}

fn null_encoded() -> DbError {
    DbError::new("XX000", "NULL passed to a value encoder")
}

/// `invalid input syntax for type <name>: "<input>"` (22P02).
fn invalid_syntax(type_name: &str, input: &str) -> DbError {
    DbError::new(
        "22P02",
        format!("invalid input syntax for type {type_name}: \"{input}\""),
    )
}

/// Binary input that is not what the type's `*_recv` function reads (22P03).
fn invalid_binary(ty: PgType) -> DbError {
    DbError::new(
        "22P03",
        format!("invalid binary data for type {}", ty.name()),
    )
    .with_detail("incorrect binary data format")
}

/// A stored value that cannot be shown as the declared column type (22P02).
fn bad_stored(ty: PgType, value: SqlValueRef<'_>) -> DbError {
    let shown = match value {
        SqlValueRef::Null => "NULL".to_owned(),
        SqlValueRef::Int(v) => v.to_string(),
        SqlValueRef::Float(v) => v.to_string(),
        SqlValueRef::Text(v) => v.to_owned(),
        SqlValueRef::Bytes(v) => format!("\\x{}", text::hex(v)),
    };
    invalid_syntax(ty.name(), &shown)
        .with_detail("the stored value does not match the column's declared type")
}

/// Text from a client or from storage must be UTF-8 without NUL bytes, as in a Postgres
/// database with the UTF8 encoding.
fn utf8(bytes: &[u8]) -> Result<&str, DbError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            if s.as_bytes().contains(&0) {
                Err(bad_encoding(&[0]))
            } else {
                Ok(s)
            }
        }
        Err(e) => {
            let start = e.valid_up_to();
            let len = e.error_len().unwrap_or(bytes.len() - start).max(1);
            let end = (start + len).min(bytes.len());
            Err(bad_encoding(&bytes[start..end]))
        }
    }
}

fn bad_encoding(bytes: &[u8]) -> DbError {
    let shown: Vec<String> = bytes.iter().map(|b| format!("0x{b:02x}")).collect();
    DbError::new(
        "22021",
        format!(
            "invalid byte sequence for encoding \"UTF8\": {}",
            shown.join(" ")
        ),
    )
}

/// Postgres's notion of white space around numbers and dates (`isspace` in the C locale).
fn is_pg_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

fn trim_pg(s: &str) -> &str {
    s.trim_matches(is_pg_space)
}
