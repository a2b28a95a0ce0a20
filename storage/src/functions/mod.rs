//! SQL functions registered on every connection so that translated statements keep
//! Postgres semantics: casts that fail like Postgres's, division by zero, `now()` fixed for
//! a transaction, `LIKE` with Postgres's escape and case rules, and the catalog helpers.
//!
//! A function reports a Postgres error by raising `__pgerr:CODE:message` (see `errors`).

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use chrono::{DateTime, NaiveDateTime, Utc};
use mycelium_protocol::DbError;
use mycelium_protocol::types::{self, PgType, SqlValue, SqlValueRef};
use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};

use crate::catalog::Schema;

mod aggregates;
pub(crate) mod array;
mod binary;
pub(crate) mod date_template;
pub(crate) mod dates;
mod format;
mod json;
mod math_text;
pub(crate) mod number_template;
pub(crate) mod numeric;
pub(crate) mod shard;
mod srf;
pub(crate) mod time;

use crate::errors::encode_function_error;
use time::date_part;

/// Per-connection state the functions read: the statement's `now()` and the schema.
#[derive(Clone, Default)]
pub struct FunctionState {
    pub now: Arc<Mutex<Option<DateTime<Utc>>>>,
    pub schema: Arc<Mutex<Arc<Schema>>>,
    pub sequences: Sequences,
}

/// Sequences of serial columns, shared by all connections of a backend.
///
/// Like Postgres's, they are not transactional. They live in memory and start, when the
/// process first needs them, after the largest value in their column: a restart can hand
/// out again a value whose row was deleted, which Postgres would not.
pub type Sequences = Arc<Mutex<std::collections::HashMap<String, i64>>>;

impl FunctionState {
    pub fn set_now(&self, now: DateTime<Utc>) {
        if let Ok(mut slot) = self.now.lock() {
            *slot = Some(now);
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.now
            .lock()
            .ok()
            .and_then(|n| *n)
            .unwrap_or_else(Utc::now)
    }

    pub fn set_schema(&self, schema: Arc<Schema>) {
        if let Ok(mut slot) = self.schema.lock() {
            *slot = schema;
        }
    }
}

#[derive(Debug)]
struct PgFnError(String);

impl std::fmt::Display for PgFnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PgFnError {}

fn fail(err: DbError) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(Box::new(PgFnError(encode_function_error(&err))))
}

pub(crate) fn to_value(v: SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Int(i) => Value::Integer(i),
        SqlValue::Float(f) => Value::Real(f),
        SqlValue::Text(s) => Value::Text(s),
        SqlValue::Bytes(b) => Value::Blob(b),
    }
}

pub(crate) fn storage_ref(v: ValueRef<'_>) -> SqlValueRef<'_> {
    match v {
        ValueRef::Null => SqlValueRef::Null,
        ValueRef::Integer(i) => SqlValueRef::Int(i),
        ValueRef::Real(f) => SqlValueRef::Float(f),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => SqlValueRef::Text(s),
            Err(_) => SqlValueRef::Bytes(t),
        },
        ValueRef::Blob(b) => SqlValueRef::Bytes(b),
    }
}

/// Formats a UTC instant as storage holds `timestamptz`.
pub fn format_timestamptz(t: DateTime<Utc>) -> String {
    format!("{}+00", format_naive(t.naive_utc()))
}

pub(crate) fn format_naive(t: NaiveDateTime) -> String {
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let micros = t.and_utc().timestamp_subsec_micros();
    if micros != 0 {
        let frac = format!("{micros:06}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s
}

thread_local! {
    /// The client user of the statement this worker thread is running.
    static SESSION_USER: std::cell::RefCell<std::sync::Arc<str>> =
        std::cell::RefCell::new(std::sync::Arc::from("mycelium"));
}

/// Sets the user `current_user` answers on this worker thread, before a statement runs.
pub(crate) fn set_session_user(user: std::sync::Arc<str>) {
    SESSION_USER.with(|current| *current.borrow_mut() = user);
}

const DET: FunctionFlags = FunctionFlags::SQLITE_UTF8
    .union(FunctionFlags::SQLITE_DETERMINISTIC)
    .union(FunctionFlags::SQLITE_INNOCUOUS);
const VOLATILE: FunctionFlags = FunctionFlags::SQLITE_UTF8.union(FunctionFlags::SQLITE_INNOCUOUS);

pub fn register(conn: &Connection, state: &FunctionState) -> rusqlite::Result<()> {
    math_text::register(conn)?;
    binary::register(conn)?;
    format::register(conn)?;
    let sequences = state.sequences.clone();
    conn.create_scalar_function("__pg_nextval", 1, VOLATILE, move |ctx| {
        let name: String = ctx.get(0)?;
        let name = name.trim_matches('"');
        let name = name.strip_prefix("public.").unwrap_or(name);
        let mut map = sequences
            .lock()
            .map_err(|_| fail(DbError::new("XX000", "sequence state poisoned")))?;
        match map.get_mut(name) {
            Some(value) => {
                *value += 1;
                Ok(*value)
            }
            None => Err(fail(DbError::new(
                "42P01",
                format!("relation \"{name}\" does not exist"),
            ))),
        }
    })?;
    conn.create_scalar_function("__pg_cast", 4, DET, |ctx| {
        let src = PgType::from_oid(ctx.get::<u32>(1)?);
        let dst = PgType::from_oid(ctx.get::<u32>(2)?)
            .ok_or_else(|| fail(DbError::new("42704", "type does not exist")))?;
        let typmod = ctx.get::<i32>(3)?;
        cast(ctx.get_raw(0), src, dst, typmod)
            .map(to_value)
            .map_err(fail)
    })?;
    // With the source's typmod: a numeric(p,s) printed as text shows s decimals.
    conn.create_scalar_function("__pg_cast", 5, DET, |ctx| {
        let src = PgType::from_oid(ctx.get::<u32>(1)?);
        let dst = PgType::from_oid(ctx.get::<u32>(2)?)
            .ok_or_else(|| fail(DbError::new("42704", "type does not exist")))?;
        let typmod = ctx.get::<i32>(3)?;
        let src_typmod = ctx.get::<i32>(4)?;
        let textual = matches!(
            dst,
            PgType::Text | PgType::Varchar | PgType::Bpchar | PgType::Name
        );
        let value = ctx.get_raw(0);
        if textual && src == Some(PgType::Numeric) && value != ValueRef::Null {
            let mut out = BytesMut::new();
            types::encode_text(PgType::Numeric, src_typmod, storage_ref(value), &mut out)
                .map_err(fail)?;
            return types::parse_text(dst, typmod, &String::from_utf8_lossy(&out))
                .map(to_value)
                .map_err(fail);
        }
        cast(value, src, dst, typmod).map(to_value).map_err(fail)
    })?;
    conn.create_scalar_function("__pg_div", 3, DET, |ctx| arith(ctx, false))?;
    conn.create_scalar_function("__pg_mod", 3, DET, |ctx| arith(ctx, true))?;
    conn.create_scalar_function("__pg_nan", 0, DET, |_| Ok(f64::NAN))?;
    conn.create_scalar_function("__pg_power", 2, DET, |ctx| {
        let (Some(x), Some(y)) = (number(ctx.get_raw(0)), number(ctx.get_raw(1))) else {
            return Ok(None);
        };
        let x = x.unwrap_or_else(|i| i as f64);
        let y = y.unwrap_or_else(|i| i as f64);
        if x == 0.0 && y < 0.0 {
            return Err(fail(DbError::new(
                "2201F",
                "zero raised to a negative power is undefined",
            )));
        }
        if x < 0.0 && y.fract() != 0.0 {
            return Err(fail(DbError::new(
                "2201F",
                "a negative number raised to a non-integer power yields a complex result",
            )));
        }
        Ok(Some(x.powf(y)))
    })?;

    let s = state.clone();
    conn.create_scalar_function("__pg_now", 0, VOLATILE, move |_| {
        Ok(format_timestamptz(s.now()))
    })?;
    // localtimestamp, current_date and current_time read the transaction's clock in the
    // session's zone.
    let s = state.clone();
    conn.create_scalar_function("__pg_localtimestamp", 0, VOLATILE, move |_| {
        Ok(format_naive(time::local_from_utc(s.now().naive_utc())))
    })?;
    let s = state.clone();
    conn.create_scalar_function("__pg_current_date", 0, VOLATILE, move |_| {
        Ok(time::format_as(
            time::local_from_utc(s.now().naive_utc()),
            PgType::Date,
        ))
    })?;
    let s = state.clone();
    conn.create_scalar_function("__pg_current_time", 0, VOLATILE, move |_| {
        Ok(time::format_as(
            time::local_from_utc(s.now().naive_utc()),
            PgType::Time,
        ))
    })?;
    conn.create_scalar_function("__pg_clock_timestamp", 0, VOLATILE, |_| {
        Ok(format_timestamptz(Utc::now()))
    })?;
    // The wall clock as text, as Postgres's `timeofday()` prints it in the session's zone.
    conn.create_scalar_function("timeofday", 0, VOLATILE, |_| {
        let utc = Utc::now().naive_utc();
        let label = dates::ZoneLabel::at(utc);
        Ok(format!(
            "{} {}",
            time::local_from_utc(utc).format("%a %b %d %H:%M:%S%.6f %Y"),
            label.abbreviation
        ))
    })?;
    conn.create_scalar_function("__pg_random", 0, VOLATILE, |_| {
        // 53 random bits: uniform in [0, 1) like Postgres's random().
        let bits = uuid::Uuid::new_v4().as_u128() >> 75;
        Ok(bits as f64 / (1u64 << 53) as f64)
    })?;
    conn.create_scalar_function("__pg_gen_random_uuid", 0, VOLATILE, |_| {
        Ok(uuid::Uuid::new_v4().to_string())
    })?;
    conn.create_scalar_function("__pg_octet_length", 1, DET, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Null => None,
            ValueRef::Text(t) | ValueRef::Blob(t) => Some(t.len() as i64),
            ValueRef::Integer(i) => Some(i.to_string().len() as i64),
            ValueRef::Real(f) => Some(f.to_string().len() as i64),
        })
    })?;
    conn.create_scalar_function("__pg_version", 0, DET, |_| {
        Ok(format!(
            "PostgreSQL 15.0 (Mycelium SQLite node, SQLite {}) on x86_64-pc-linux-gnu",
            rusqlite::version()
        ))
    })?;
    // SQLite's own upper() and lower() change ASCII letters only; Postgres maps every letter
    // that has a one-letter counterpart, as the C library does (upper('héllo') is 'HÉLLO',
    // upper('ß') stays 'ß').
    for (name, upper) in [("upper", true), ("lower", false)] {
        conn.create_scalar_function(name, 1, DET, move |ctx| {
            let text = match ctx.get_raw(0) {
                ValueRef::Null => return Ok(None),
                ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
                ValueRef::Integer(i) => i.to_string(),
                ValueRef::Real(f) => f.to_string(),
            };
            Ok(Some(
                text.chars()
                    .map(|c| change_case(c, upper))
                    .collect::<String>(),
            ))
        })?;
    }
    conn.create_scalar_function("__pg_current_database", 0, DET, |_| Ok("mycelium"))?;
    conn.create_scalar_function("__pg_current_schema", 0, DET, |_| Ok("public"))?;
    // Not deterministic: the answer changes with the session the worker runs a statement for.
    conn.create_scalar_function("__pg_current_user", 0, FunctionFlags::SQLITE_UTF8, |_| {
        Ok(SESSION_USER.with(|user| user.borrow().to_string()))
    })?;
    conn.create_scalar_function("__pg_greatest", -1, DET, |ctx| extreme(ctx, true))?;
    conn.create_scalar_function("__pg_least", -1, DET, |ctx| extreme(ctx, false))?;
    // The third argument, when the statement's types are known, is the source's type OID.
    for arity in [2, 3] {
        conn.create_scalar_function("__pg_extract", arity, DET, |ctx| {
            let field: String = ctx.get(0)?;
            date_part(&field, ctx.get_raw(1), source_type(ctx)?)
                .map_err(fail)
                .map(|v| {
                    v.map(|f| {
                        if f.fract() == 0.0 && f.abs() < 9e15 {
                            Value::Integer(f as i64)
                        } else {
                            Value::Real(f)
                        }
                    })
                })
        })?;
        conn.create_scalar_function("__pg_date_part", arity, DET, |ctx| {
            let field: String = ctx.get(0)?;
            date_part(&field, ctx.get_raw(1), source_type(ctx)?).map_err(fail)
        })?;
    }
    conn.create_scalar_function("__pg_left", 2, DET, |ctx| {
        let s: Option<String> = ctx.get(0)?;
        let n: i64 = ctx.get(1)?;
        Ok(s.map(|s| {
            let len = s.chars().count() as i64;
            let take = if n >= 0 { n.min(len) } else { (len + n).max(0) };
            s.chars().take(take as usize).collect::<String>()
        }))
    })?;
    conn.create_scalar_function("__pg_right", 2, DET, |ctx| {
        let s: Option<String> = ctx.get(0)?;
        let n: i64 = ctx.get(1)?;
        Ok(s.map(|s| {
            let len = s.chars().count() as i64;
            let take = if n >= 0 { n.min(len) } else { (len + n).max(0) };
            s.chars().skip((len - take) as usize).collect::<String>()
        }))
    })?;
    for (name, left) in [("__pg_lpad", true), ("__pg_rpad", false)] {
        conn.create_scalar_function(name, -1, DET, move |ctx| {
            let s: Option<String> = ctx.get(0)?;
            let n: i64 = ctx.get(1)?;
            let fill: String = if ctx.len() > 2 {
                ctx.get(2)?
            } else {
                " ".to_owned()
            };
            Ok(s.map(|s| pad(&s, n, &fill, left)))
        })?;
    }
    conn.create_scalar_function("__pg_repeat", 2, DET, |ctx| {
        let s: Option<String> = ctx.get(0)?;
        let n: i64 = ctx.get(1)?;
        Ok(s.map(|s| s.repeat(n.clamp(0, 1 << 20) as usize)))
    })?;
    conn.create_scalar_function("__pg_trunc", -1, DET, |ctx| {
        let v: Option<f64> = ctx.get(0)?;
        let digits: i32 = if ctx.len() > 1 { ctx.get(1)? } else { 0 };
        Ok(v.map(|v| {
            let scale = 10f64.powi(digits);
            (v * scale).trunc() / scale
        }))
    })?;
    conn.create_scalar_function("__pg_like", -1, DET, |ctx| {
        if ctx.len() < 3 {
            return Err(fail(DbError::new("42883", "function like does not exist")));
        }
        let (Some(value), Some(pattern)) = (text_arg(ctx, 0)?, text_arg(ctx, 1)?) else {
            return Ok(None);
        };
        let insensitive: bool = ctx.get(2)?;
        let escape = if ctx.len() > 3 {
            text_arg(ctx, 3)?.and_then(|e| e.chars().next())
        } else {
            Some('\\')
        };
        Ok(Some(like(&value, &pattern, escape, insensitive)))
    })?;
    for arity in [3, 4] {
        conn.create_scalar_function("regexp_replace", arity, DET, |ctx| {
            let (Some(source), Some(pattern), Some(replacement)) =
                (text_arg(ctx, 0)?, text_arg(ctx, 1)?, text_arg(ctx, 2)?)
            else {
                return Ok(None);
            };
            let flags = if ctx.len() > 3 {
                text_arg(ctx, 3)?.unwrap_or_default()
            } else {
                String::new()
            };
            crate::regex::replace(&source, &pattern, &replacement, &flags)
                .map(Some)
                .map_err(fail)
        })?;
    }
    conn.create_scalar_function("__pg_substring_regex", 2, DET, |ctx| {
        let (Some(text), Some(pattern)) = (text_arg(ctx, 0)?, text_arg(ctx, 1)?) else {
            return Ok(None);
        };
        crate::regex::substring(&text, &pattern).map_err(fail)
    })?;
    conn.create_scalar_function("__pg_not_null", 3, DET, |ctx| {
        if ctx.get_raw(0) != ValueRef::Null {
            return ctx.get::<Value>(0);
        }
        let column: String = ctx.get(1)?;
        let table: String = ctx.get(2)?;
        Err(fail(DbError::new(
            "23502",
            format!("null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"),
        )))
    })?;
    // A statement's own check failing as Postgres reports it. Volatile: SQLite evaluates a
    // deterministic call with constant arguments once up front, even when no row asks for it.
    conn.create_scalar_function("__pg_raise", 2, VOLATILE, |ctx| {
        let code: String = ctx.get(0)?;
        let message: String = ctx.get(1)?;
        Err::<Value, _>(fail(DbError::new(&code, message)))
    })?;
    conn.create_scalar_function("__pg_similar", 3, DET, |ctx| {
        let (Some(value), Some(pattern), Some(escape)) =
            (text_arg(ctx, 0)?, text_arg(ctx, 1)?, text_arg(ctx, 2)?)
        else {
            return Ok(None);
        };
        let mut chars = escape.chars();
        let escape = match (chars.next(), chars.next()) {
            (None, _) => None,
            (Some(c), None) => Some(c),
            _ => {
                return Err(fail(
                    DbError::new("22025", "invalid escape string")
                        .with_hint("Escape string must be empty or one character."),
                ));
            }
        };
        crate::regex::similar_to(&value, &pattern, escape)
            .map(Some)
            .map_err(fail)
    })?;
    conn.create_scalar_function("__pg_regex_match", 3, DET, |ctx| {
        let (Some(value), Some(pattern)) = (text_arg(ctx, 0)?, text_arg(ctx, 1)?) else {
            return Ok(None);
        };
        let insensitive: bool = ctx.get(2)?;
        crate::regex::is_match(&pattern, &value, insensitive)
            .map(Some)
            .map_err(fail)
    })?;
    let s = state.clone();
    conn.create_scalar_function("__pg_regclass", 1, VOLATILE, move |ctx| {
        match ctx.get_raw(0) {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(i) => Ok(Some(i)),
            _ => {
                let name: String = ctx.get(0)?;
                let bare = name.trim_matches('"');
                let bare = bare.strip_prefix("public.").unwrap_or(bare);
                let schema = s.schema.lock().map(|g| g.clone()).unwrap_or_default();
                match schema.table(bare) {
                    Some(t) => Ok(Some(i64::from(t.oid))),
                    None => crate::pg_catalog::builtin_oid(bare)
                        .map(|o| Some(i64::from(o)))
                        .ok_or_else(|| {
                            fail(DbError::new(
                                "42P01",
                                format!("relation \"{bare}\" does not exist"),
                            ))
                        }),
                }
            }
        }
    })?;
    let s = state.clone();
    conn.create_scalar_function("__pg_to_regclass", 1, VOLATILE, move |ctx| {
        let Some(name) = text_arg(ctx, 0)? else {
            return Ok(None);
        };
        let schema = s.schema.lock().map(|g| g.clone()).unwrap_or_default();
        Ok(relation_oid(&schema, &name))
    })?;
    conn.create_scalar_function("__pg_to_regtype", 1, DET, |ctx| {
        Ok(text_arg(ctx, 0)?.and_then(|name| type_oid(&name)))
    })?;
    conn.create_scalar_function("__pg_regtype", 1, DET, |ctx| match ctx.get_raw(0) {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(oid) => Ok(Some(i64::from(oid as u32))),
        _ => {
            let name = text_arg(ctx, 0)?.unwrap_or_default();
            type_oid(&name).map(Some).ok_or_else(|| {
                fail(DbError::new(
                    "42704",
                    format!("type \"{}\" does not exist", name.trim()),
                ))
            })
        }
    })?;
    conn.create_scalar_function("__pg_regtype_name", 1, DET, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Integer(oid) => u32::try_from(oid).ok().map(type_name),
            _ => None,
        })
    })?;
    register_time(conn)?;
    register_json(conn)?;
    register_numeric(conn)?;
    array::register(conn)?;
    aggregates::register(conn)?;
    srf::register(conn)?;
    crate::pg_catalog::register_functions(conn, state)?;
    Ok(())
}

/// The OID of a relation named as `to_regclass` takes it, NULL when there is none.
fn relation_oid(schema: &Schema, name: &str) -> Option<i64> {
    let name = name.trim();
    let bare = name.strip_prefix("public.").unwrap_or(name);
    let bare = match bare.strip_prefix('"').and_then(|b| b.strip_suffix('"')) {
        Some(quoted) => quoted.to_owned(),
        None => bare.to_ascii_lowercase(),
    };
    match schema.table(&bare) {
        Some(t) => Some(i64::from(t.oid)),
        None => crate::pg_catalog::builtin_oid(&bare).map(i64::from),
    }
}

/// Types `to_regtype` knows besides the codec's: arrays drivers ask about, reg* types.
const OTHER_TYPES: [(&str, u32); 7] = [
    ("regclass", types::oid::REGCLASS),
    ("regtype", types::oid::REGTYPE),
    ("interval", crate::catalog::INTERVAL_OID),
    ("smallint[]", types::oid::INT2_ARRAY),
    ("integer[]", types::oid::INT4_ARRAY),
    ("text[]", types::oid::TEXT_ARRAY),
    ("oid[]", types::oid::OID_ARRAY),
];

/// The OID of a type named as Postgres's `to_regtype` reads it; `None` when it does not exist.
pub(crate) fn type_oid(name: &str) -> Option<i64> {
    let name = name.trim();
    let bare = name.strip_prefix("pg_catalog.").unwrap_or(name);
    let lower = bare.to_ascii_lowercase();
    if lower.starts_with("serial")
        || lower.starts_with("bigserial")
        || lower.starts_with("smallserial")
    {
        // Column shorthands, not types.
        return None;
    }
    if let Some((_, oid)) = OTHER_TYPES.iter().find(|(n, _)| *n == lower) {
        return Some(i64::from(*oid));
    }
    if let Some(element) = lower.strip_suffix("[]") {
        let (ty, _) = PgType::parse_sql_name(element)?;
        let canonical = format!("{}[]", ty.name());
        return OTHER_TYPES
            .iter()
            .find(|(n, _)| *n == canonical)
            .map(|(_, oid)| i64::from(*oid));
    }
    PgType::parse_sql_name(bare).map(|(ty, _)| i64::from(ty.oid()))
}

/// What a `regtype` prints: `format_type` without a modifier, or the number.
pub(crate) fn type_name(oid: u32) -> String {
    if let Some(ty) = PgType::from_oid(oid) {
        return ty.name().to_owned();
    }
    if let Some(array) = array::ArrayType::from_oid(oid) {
        return array.name();
    }
    match OTHER_TYPES.iter().find(|(_, o)| *o == oid) {
        Some((name, _)) => (*name).to_owned(),
        None => oid.to_string(),
    }
}

/// An interval argument (its text form).
fn interval_value(ctx: &Context<'_>, i: usize) -> rusqlite::Result<Option<time::Interval>> {
    match ctx.get::<Option<String>>(i)? {
        Some(text) => time::parse_interval(&text).map(Some).map_err(fail),
        None => Ok(None),
    }
}

fn invalid_timestamp(text: &str) -> DbError {
    DbError::new(
        "22007",
        format!("invalid input syntax for type timestamp: \"{text}\""),
    )
}

/// A date or timestamp argument; 22007 for text that is neither.
fn time_value(ctx: &Context<'_>, i: usize) -> rusqlite::Result<Option<NaiveDateTime>> {
    let Some(text) = ctx.get::<Option<String>>(i)? else {
        return Ok(None);
    };
    time::parse_datetime(&text)
        .map(Some)
        .ok_or_else(|| fail(invalid_timestamp(&text)))
}

/// A `timestamptz` argument as its UTC instant; a date or timestamp given instead is a
/// wall-clock time in the session's zone (see `time::parse_instant`).
fn instant_value(ctx: &Context<'_>, i: usize) -> rusqlite::Result<Option<NaiveDateTime>> {
    let Some(text) = ctx.get::<Option<String>>(i)? else {
        return Ok(None);
    };
    time::parse_instant(&text)
        .map(Some)
        .ok_or_else(|| fail(invalid_timestamp(&text)))
}

fn is_infinite(text: &str) -> bool {
    matches!(text.trim(), "infinity" | "-infinity")
}

/// Argument `i` when it is an infinite date or timestamp and argument `other` is not NULL:
/// most date/time functions answer an infinity with itself.
fn infinite_arg(ctx: &Context<'_>, i: usize, other: usize) -> rusqlite::Result<Option<String>> {
    if matches!(ctx.get_raw(other), ValueRef::Null) {
        return Ok(None);
    }
    Ok(ctx
        .get::<Option<String>>(i)?
        .filter(|text| is_infinite(text)))
}

fn either_infinite(ctx: &Context<'_>) -> rusqlite::Result<bool> {
    Ok(infinite_arg(ctx, 0, 1)?.is_some() || infinite_arg(ctx, 1, 0)?.is_some())
}

/// The six fields of `make_timestamp` and `make_timestamptz`; None when one is NULL.
fn timestamp_fields(ctx: &Context<'_>) -> rusqlite::Result<Option<NaiveDateTime>> {
    let mut ints = [0i64; 5];
    for (i, slot) in ints.iter_mut().enumerate() {
        match ctx.get::<Option<i64>>(i)? {
            Some(value) => *slot = value,
            None => return Ok(None),
        }
    }
    let Some(sec) = ctx.get::<Option<f64>>(5)? else {
        return Ok(None);
    };
    let [year, month, day, hour, min] = ints;
    dates::make_timestamp(year, month, day, hour, min, sec)
        .map(Some)
        .map_err(fail)
}

/// The optional third argument of `__pg_extract` / `__pg_date_part`.
fn source_type(ctx: &Context<'_>) -> rusqlite::Result<Option<PgType>> {
    if ctx.len() < 3 {
        return Ok(None);
    }
    type_arg(ctx, 2).map(Some)
}

fn type_arg(ctx: &Context<'_>, i: usize) -> rusqlite::Result<PgType> {
    let oid: u32 = ctx.get(i)?;
    PgType::from_oid(oid)
        .ok_or_else(|| fail(DbError::new("42704", format!("type {oid} does not exist"))))
}

fn register_time(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function("__pg_date_add", 3, DET, |ctx| {
        if matches!(ctx.get_raw(1), ValueRef::Null) {
            return Ok(None);
        }
        if let Some(infinite) = infinite_arg(ctx, 0, 1)? {
            return Ok(Some(infinite));
        }
        let sign: i64 = ctx.get(2)?;
        let days = match ctx.get_raw(1) {
            ValueRef::Integer(n) => ValueRef::Integer(n * sign),
            other => other,
        };
        time::date_plus_days(ctx.get_raw(0), days).map_err(fail)
    })?;
    conn.create_scalar_function("__pg_date_diff", 2, DET, |ctx| {
        if either_infinite(ctx)? {
            return Err(fail(DbError::new(
                "22008",
                "cannot subtract infinite dates",
            )));
        }
        time::date_difference(ctx.get_raw(0), ctx.get_raw(1)).map_err(fail)
    })?;
    conn.create_scalar_function("__pg_ts_interval", 4, DET, |ctx| {
        if matches!(ctx.get_raw(1), ValueRef::Null) {
            return Ok(None);
        }
        if let Some(infinite) = infinite_arg(ctx, 0, 1)? {
            return Ok(Some(infinite));
        }
        let sign: i64 = ctx.get(2)?;
        let ty = type_arg(ctx, 3)?;
        time::timestamp_plus_interval(ctx.get_raw(0), ctx.get_raw(1), sign, ty).map_err(fail)
    })?;
    conn.create_scalar_function("__pg_ts_diff", 2, DET, |ctx| {
        if either_infinite(ctx)? {
            return Err(fail(DbError::new(
                "22008",
                "cannot subtract infinite timestamps",
            )));
        }
        time::timestamp_difference(ctx.get_raw(0), ctx.get_raw(1)).map_err(fail)
    })?;
    conn.create_scalar_function("__pg_interval_add", 3, DET, |ctx| {
        let (Some(a), Some(b)) = (interval_value(ctx, 0)?, interval_value(ctx, 1)?) else {
            return Ok(None);
        };
        let sign: i64 = ctx.get(2)?;
        Ok(Some(dates::interval_add(a, b, sign).format()))
    })?;
    conn.create_scalar_function("__pg_interval_cmp", 2, DET, |ctx| {
        let (Some(a), Some(b)) = (interval_value(ctx, 0)?, interval_value(ctx, 1)?) else {
            return Ok(None);
        };
        Ok(Some(
            dates::interval_span(a).cmp(&dates::interval_span(b)) as i64
        ))
    })?;
    // What ORDER BY sorts an interval by: its span in microseconds (a month is 30 days), as
    // Postgres orders them; beyond ±292,000 years the key saturates.
    conn.create_scalar_function("__pg_interval_key", 1, DET, |ctx| {
        Ok(interval_value(ctx, 0)?.map(|iv| {
            let span = dates::interval_span(iv);
            i64::try_from(span).unwrap_or(if span < 0 { i64::MIN } else { i64::MAX })
        }))
    })?;
    conn.create_scalar_function("__pg_interval_mul", 2, DET, |ctx| {
        let (Some(span), Some(factor)) = (interval_value(ctx, 0)?, ctx.get::<Option<f64>>(1)?)
        else {
            return Ok(None);
        };
        dates::interval_mul(span, factor)
            .map(|iv| Some(iv.format()))
            .map_err(fail)
    })?;
    conn.create_scalar_function("__pg_interval_div", 2, DET, |ctx| {
        let (Some(span), Some(divisor)) = (interval_value(ctx, 0)?, ctx.get::<Option<f64>>(1)?)
        else {
            return Ok(None);
        };
        dates::interval_div(span, divisor)
            .map(|iv| Some(iv.format()))
            .map_err(fail)
    })?;
    conn.create_scalar_function("__pg_make_interval", 7, DET, |ctx| {
        let mut fields = [0.0; 7];
        for (i, field) in fields.iter_mut().enumerate() {
            match ctx.get::<Option<f64>>(i)? {
                Some(value) => *field = value,
                None => return Ok(None),
            }
        }
        dates::make_interval(fields)
            .map(|iv| Some(iv.format()))
            .map_err(fail)
    })?;
    conn.create_scalar_function("__pg_to_char", 3, DET, |ctx| {
        // Postgres prints nothing for an infinite value.
        if infinite_arg(ctx, 0, 1)?.is_some() {
            return Ok(None);
        }
        let Some(template) = ctx.get::<Option<String>>(1)? else {
            return Ok(None);
        };
        // A timestamptz prints its wall-clock time in the session's zone, with that zone's
        // abbreviation and offset; so does a date, as Postgres picks to_char's timestamptz
        // form for one.
        if matches!(type_arg(ctx, 2)?, PgType::Timestamptz | PgType::Date) {
            return Ok(instant_value(ctx, 0)?.map(|utc| {
                let label = dates::ZoneLabel::at(utc);
                dates::to_char(time::local_from_utc(utc), &template, Some(&label))
            }));
        }
        Ok(time_value(ctx, 0)?.map(|value| dates::to_char(value, &template, None)))
    })?;
    // to_date (date 0) and to_timestamp (1) with a template.
    conn.create_scalar_function("__pg_parse_time", 3, DET, |ctx| {
        let (Some(input), Some(template)) =
            (ctx.get::<Option<String>>(0)?, ctx.get::<Option<String>>(1)?)
        else {
            return Ok(None);
        };
        let t = date_template::parse(&input, &template).map_err(fail)?;
        Ok(Some(if ctx.get::<i64>(2)? == 0 {
            t.date().format("%Y-%m-%d").to_string()
        } else {
            // The fields are a wall-clock time in the session's zone.
            format_timestamptz(time::utc_from_local(t).and_utc())
        }))
    })?;
    conn.create_scalar_function("__pg_at_time_zone", 4, DET, |ctx| {
        if let Some(infinite) = infinite_arg(ctx, 0, 1)? {
            return Ok(Some(infinite));
        }
        let to_local = ctx.get::<i64>(3)? != 0;
        // Turned into a local time, the value is a timestamptz: a date given instead is
        // midnight in the session's zone, as its cast to timestamptz reads it.
        let t = if to_local {
            instant_value(ctx, 0)?
        } else {
            time_value(ctx, 0)?
        };
        let (Some(t), Some(zone)) = (t, ctx.get::<Option<String>>(1)?) else {
            return Ok(None);
        };
        let shifted =
            dates::at_time_zone(t, &zone, ctx.get::<i64>(2)? != 0, to_local).map_err(fail)?;
        Ok(Some(if to_local {
            format_naive(shifted)
        } else {
            format_timestamptz(shifted.and_utc())
        }))
    })?;
    conn.create_scalar_function("__pg_to_char_number", 2, DET, |ctx| {
        let template = ctx.get::<Option<String>>(1)?;
        let value = match ctx.get_raw(0) {
            ValueRef::Null => None,
            ValueRef::Integer(i) => Some(i.to_string()),
            ValueRef::Real(f) => Some(format!("{f}")),
            ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        };
        let (Some(value), Some(template)) = (value, template) else {
            return Ok(None);
        };
        number_template::to_char(&value, &template)
            .map(Some)
            .map_err(fail)
    })?;
    conn.create_scalar_function("__pg_age", 2, DET, |ctx| {
        // Postgres 15 answers an artifact of its overflowing arithmetic (292253 years ...).
        if either_infinite(ctx)? {
            return Err(fail(crate::errors::unsupported(
                "age() of an infinite timestamp",
            )));
        }
        let (Some(a), Some(b)) = (ctx.get::<Option<String>>(0)?, ctx.get::<Option<String>>(1)?)
        else {
            return Ok(None);
        };
        // With a timestamptz, Postgres's timestamptz_age compares wall-clock fields in the
        // session's zone; the other operand is read as one.
        let zoned = time::is_utc_text(&a) || time::is_utc_text(&b);
        let read = |text: &str| {
            let t = if zoned {
                time::parse_instant(text).map(time::local_from_utc)
            } else {
                time::parse_datetime(text)
            };
            t.ok_or_else(|| fail(invalid_timestamp(text)))
        };
        Ok(Some(dates::age(read(&a)?, read(&b)?).format()))
    })?;
    conn.create_scalar_function("make_date", 3, DET, |ctx| {
        let (Some(y), Some(m), Some(d)) = (
            ctx.get::<Option<i64>>(0)?,
            ctx.get::<Option<i64>>(1)?,
            ctx.get::<Option<i64>>(2)?,
        ) else {
            return Ok(None);
        };
        dates::make_date(y, m, d).map(Some).map_err(fail)
    })?;
    conn.create_scalar_function("__pg_to_timestamp", 1, DET, |ctx| {
        match ctx.get::<Option<f64>>(0)? {
            Some(seconds) => dates::to_timestamp(seconds).map(Some).map_err(fail),
            None => Ok(None),
        }
    })?;
    conn.create_scalar_function("__pg_date_trunc", 3, DET, |ctx| {
        let field: String = ctx.get(0)?;
        if let Some(infinite) = infinite_arg(ctx, 1, 1)? {
            return Ok(Some(infinite));
        }
        let ty = type_arg(ctx, 2)?;
        time::date_trunc(&field, ctx.get_raw(1), ty).map_err(fail)
    })?;
    conn.create_scalar_function("make_time", 3, DET, |ctx| {
        let (Some(hour), Some(min), Some(sec)) = (
            ctx.get::<Option<i64>>(0)?,
            ctx.get::<Option<i64>>(1)?,
            ctx.get::<Option<f64>>(2)?,
        ) else {
            return Ok(None);
        };
        dates::make_time(hour, min, sec).map(Some).map_err(fail)
    })?;
    conn.create_scalar_function("make_timestamp", 6, DET, |ctx| {
        Ok(timestamp_fields(ctx)?.map(|t| time::format_as(t, PgType::Timestamp)))
    })?;
    // Without a zone the fields are a wall-clock time in the session's zone.
    conn.create_scalar_function("make_timestamptz", 6, DET, |ctx| {
        Ok(timestamp_fields(ctx)?
            .map(|t| time::format_as(time::utc_from_local(t), PgType::Timestamptz)))
    })?;
    conn.create_scalar_function("make_timestamptz", 7, DET, |ctx| {
        let (Some(local), Some(zone)) = (timestamp_fields(ctx)?, ctx.get::<Option<String>>(6)?)
        else {
            return Ok(None);
        };
        let utc = dates::local_in_zone(local, &zone).map_err(fail)?;
        Ok(Some(time::format_as(utc, PgType::Timestamptz)))
    })?;
    conn.create_scalar_function("__pg_date_bin", 4, DET, |ctx| {
        let (Some(stride), Some(source), Some(origin)) = (
            interval_value(ctx, 0)?,
            ctx.get::<Option<String>>(1)?,
            ctx.get::<Option<String>>(2)?,
        ) else {
            return Ok(None);
        };
        // An infinite source is its own bin.
        if is_infinite(&source) {
            return Ok(Some(source));
        }
        if is_infinite(&origin) {
            return Err(fail(DbError::new("22008", "origin out of range")));
        }
        let ty = type_arg(ctx, 3)?;
        // Bins of timestamptz are counted on UTC instants; a date given for one is midnight
        // in the session's zone.
        let read = if ty == PgType::Timestamptz {
            instant_value
        } else {
            time_value
        };
        let (Some(source), Some(origin)) = (read(ctx, 1)?, read(ctx, 2)?) else {
            return Ok(None);
        };
        dates::date_bin(stride, source, origin)
            .map(|t| Some(time::format_as(t, ty)))
            .map_err(fail)
    })?;
    for (name, justify) in [
        (
            "justify_days",
            dates::justify_days as fn(time::Interval) -> time::Interval,
        ),
        ("justify_hours", dates::justify_hours),
        ("justify_interval", dates::justify_interval),
    ] {
        conn.create_scalar_function(name, 1, DET, move |ctx| {
            Ok(interval_value(ctx, 0)?.map(|iv| justify(iv).format()))
        })?;
    }
    // A time of day is stored as the text of an interval shorter than a day. `extract`
    // answers an exact numeric, `date_part` a double.
    type Part = fn(&str, time::Interval) -> Result<dates::IntervalPart, DbError>;
    type Answer = fn(dates::IntervalPart) -> Value;
    for (kind, part) in [
        ("interval", dates::interval_part as Part),
        ("time", dates::time_part),
    ] {
        for (function, answer) in [
            ("extract", (|p| Value::Text(p.numeric_text())) as Answer),
            ("date_part", |p| Value::Real(p.as_f64())),
        ] {
            conn.create_scalar_function(
                format!("__pg_{function}_{kind}").as_str(),
                2,
                DET,
                move |ctx| {
                    let (Some(field), Some(iv)) =
                        (ctx.get::<Option<String>>(0)?, interval_value(ctx, 1)?)
                    else {
                        return Ok(Value::Null);
                    };
                    part(&field, iv).map(answer).map_err(fail)
                },
            )?;
        }
    }
    // Dates and timestamps store their infinities as Postgres prints them; intervals have
    // none in Postgres 15.
    conn.create_scalar_function("__pg_isfinite", 1, DET, |ctx| {
        Ok(ctx
            .get::<Option<String>>(0)?
            .map(|text| i64::from(!is_infinite(&text))))
    })?;
    conn.create_scalar_function("__pg_date_trunc_zone", 3, DET, |ctx| {
        let (Some(field), Some(zone)) =
            (ctx.get::<Option<String>>(0)?, ctx.get::<Option<String>>(2)?)
        else {
            return Ok(None);
        };
        if let Some(infinite) = infinite_arg(ctx, 1, 0)? {
            return Ok(Some(infinite));
        }
        let Some(t) = instant_value(ctx, 1)? else {
            return Ok(None);
        };
        // Truncated on the clock of `zone`, then read back as a time in that zone.
        let local = dates::at_time_zone(t, &zone, false, true).map_err(fail)?;
        let Some(truncated) = time::truncate(&field, local).map_err(fail)? else {
            return Ok(None);
        };
        let utc = dates::at_time_zone(truncated, &zone, false, false).map_err(fail)?;
        Ok(Some(time::format_as(utc, PgType::Timestamptz)))
    })?;
    conn.create_scalar_function("__pg_date_trunc_interval", 2, DET, |ctx| {
        let (Some(field), Some(iv)) = (ctx.get::<Option<String>>(0)?, interval_value(ctx, 1)?)
        else {
            return Ok(None);
        };
        dates::interval_trunc(&field, iv)
            .map(|iv| Some(iv.format()))
            .map_err(fail)
    })?;
    conn.create_scalar_function("__pg_time_interval", 3, DET, |ctx| {
        let (Some(time), Some(iv)) = (ctx.get::<Option<String>>(0)?, interval_value(ctx, 1)?)
        else {
            return Ok(None);
        };
        let sign: i64 = ctx.get(2)?;
        time::time_plus_interval(&time, iv, sign)
            .map(Some)
            .map_err(fail)
    })?;
    conn.create_scalar_function("__pg_interval", 1, DET, |ctx| match ctx.get_raw(0) {
        ValueRef::Null => Ok(None),
        _ => {
            let text: String = ctx.get(0)?;
            time::parse_interval(&text)
                .map(|iv| Some(iv.format()))
                .map_err(fail)
        }
    })?;
    Ok(())
}

/// `avg` over `numeric` (and integers): exact, with Postgres's result scale. `text` gives
/// the printed form (a result column), else a double (inside expressions).
struct NumericAvg {
    text: bool,
}

impl rusqlite::functions::Aggregate<numeric::AvgState, Value> for NumericAvg {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<numeric::AvgState> {
        Ok(numeric::AvgState::default())
    }

    fn step(&self, ctx: &mut Context<'_>, state: &mut numeric::AvgState) -> rusqlite::Result<()> {
        let scale: i64 = if ctx.len() > 1 { ctx.get(1)? } else { -1 };
        state.add(&numeric::operand(ctx.get_raw(0), scale).map_err(fail)?);
        Ok(())
    }

    fn finalize(
        &self,
        _: &mut Context<'_>,
        state: Option<numeric::AvgState>,
    ) -> rusqlite::Result<Value> {
        let Some(text) = state
            .map(|s| s.finish())
            .transpose()
            .map_err(fail)?
            .flatten()
        else {
            return Ok(Value::Null);
        };
        Ok(numeric_result(text, self.text))
    }
}

/// A computed numeric: its exact text when printed, else the nearest double.
pub(crate) fn numeric_result(text: String, as_text: bool) -> Value {
    if as_text {
        return Value::Text(text);
    }
    match text.parse::<f64>() {
        Ok(f) => Value::Real(f),
        Err(_) => Value::Text(text),
    }
}

fn register_numeric(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function("__pg_numeric_div", 5, DET, |ctx| {
        let as_text: bool = ctx.get(4)?;
        if !as_text {
            // Inside an expression: a double, like the other numeric arithmetic.
            let (a, b) = (ctx.get_raw(0), ctx.get_raw(1));
            if let (Some(x), Some(y)) = (number(a), number(b)) {
                let x = x.unwrap_or_else(|i| i as f64);
                let y = y.unwrap_or_else(|i| i as f64);
                if y == 0.0 {
                    return Err(division_by_zero());
                }
                return Ok(Value::Real(x / y));
            }
        }
        let a = numeric::operand(ctx.get_raw(0), ctx.get(2)?).map_err(fail)?;
        let b = numeric::operand(ctx.get_raw(1), ctx.get(3)?).map_err(fail)?;
        Ok(numeric::divide(&a, &b)
            .map_err(fail)?
            .map(|text| numeric_result(text, as_text))
            .unwrap_or(Value::Null))
    })?;
    for n_arg in [1, 2] {
        conn.create_aggregate_function("__pg_avg", n_arg, DET, NumericAvg { text: false })?;
        conn.create_aggregate_function("__pg_avg_text", n_arg, DET, NumericAvg { text: true })?;
    }
    Ok(())
}

/// `min` / `max` of intervals: by span (a month is 30 days), as Postgres compares them; the
/// interval kept is the one first seen among equal spans.
struct IntervalExtreme {
    max: bool,
}

type Extreme = Option<(i128, String)>;

impl rusqlite::functions::Aggregate<Extreme, Option<String>> for IntervalExtreme {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Extreme> {
        Ok(None)
    }

    fn step(&self, ctx: &mut Context<'_>, best: &mut Extreme) -> rusqlite::Result<()> {
        let Some(interval) = interval_value(ctx, 0)? else {
            return Ok(());
        };
        let span = dates::interval_span(interval);
        let better = match best {
            None => true,
            Some((kept, _)) => (self.max && span > *kept) || (!self.max && span < *kept),
        };
        if better {
            *best = Some((span, interval.format()));
        }
        Ok(())
    }

    fn finalize(
        &self,
        _: &mut Context<'_>,
        best: Option<Extreme>,
    ) -> rusqlite::Result<Option<String>> {
        Ok(best.flatten().map(|(_, text)| text))
    }
}

/// `string_agg(DISTINCT value, separator)`: each value once, sorted (the third argument
/// is 1) or in the order the rows come (an ORDER BY in the call); NULLs skipped.
struct StringAggDistinct;

type DistinctValues = (Vec<String>, std::collections::HashSet<String>, String, bool);

impl rusqlite::functions::Aggregate<DistinctValues, Option<String>> for StringAggDistinct {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<DistinctValues> {
        Ok(Default::default())
    }

    fn step(&self, ctx: &mut Context<'_>, acc: &mut DistinctValues) -> rusqlite::Result<()> {
        acc.3 = ctx.get::<i64>(2)? != 0;
        let Some(value) = text_arg(ctx, 0)? else {
            return Ok(());
        };
        if acc.0.is_empty() {
            acc.2 = text_arg(ctx, 1)?.unwrap_or_default();
        }
        if acc.1.insert(value.clone()) {
            acc.0.push(value);
        }
        Ok(())
    }

    fn finalize(
        &self,
        _: &mut Context<'_>,
        acc: Option<DistinctValues>,
    ) -> rusqlite::Result<Option<String>> {
        let Some((mut values, _, separator, sorted)) = acc else {
            return Ok(None);
        };
        if values.is_empty() {
            return Ok(None);
        }
        if sorted {
            values.sort();
        }
        Ok(Some(values.join(&separator)))
    }
}

/// The value of a scalar subquery: NULL without rows, the value of its one row, and 21000 for
/// a second row, where SQLite would silently take the first.
struct SingleRow;

impl rusqlite::functions::Aggregate<(u8, Value), Value> for SingleRow {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<(u8, Value)> {
        Ok((0, Value::Null))
    }

    fn step(&self, ctx: &mut Context<'_>, seen: &mut (u8, Value)) -> rusqlite::Result<()> {
        if seen.0 > 0 {
            return Err(fail(DbError::new(
                "21000",
                "more than one row returned by a subquery used as an expression",
            )));
        }
        *seen = (1, ctx.get::<Value>(0)?);
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, seen: Option<(u8, Value)>) -> rusqlite::Result<Value> {
        Ok(seen.map_or(Value::Null, |(_, value)| value))
    }
}

/// `sum` / `avg` of intervals: field by field as Postgres adds them (months, days and time
/// apart, `1 hour` + `23 hours` is `24:00:00`), the average the sum divided by the count.
struct IntervalSum {
    avg: bool,
}

type Sum = Option<(time::Interval, i64)>;

impl rusqlite::functions::Aggregate<Sum, Option<String>> for IntervalSum {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Sum> {
        Ok(None)
    }

    fn step(&self, ctx: &mut Context<'_>, sum: &mut Sum) -> rusqlite::Result<()> {
        let Some(interval) = interval_value(ctx, 0)? else {
            return Ok(());
        };
        let (total, count) = sum.get_or_insert((time::Interval::default(), 0));
        *total = dates::interval_checked_add(*total, interval).map_err(fail)?;
        *count += 1;
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, sum: Option<Sum>) -> rusqlite::Result<Option<String>> {
        let Some((total, count)) = sum.flatten() else {
            return Ok(None);
        };
        let result = if self.avg {
            dates::interval_div(total, count as f64).map_err(fail)?
        } else {
            total
        };
        Ok(Some(result.format()))
    }
}

/// `json_agg` / `jsonb_agg` over values already in JSON form (`__pg_to_json`).
struct JsonAgg {
    jsonb: bool,
}

impl rusqlite::functions::Aggregate<Vec<String>, Option<String>> for JsonAgg {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn step(&self, ctx: &mut Context<'_>, items: &mut Vec<String>) -> rusqlite::Result<()> {
        items.push(text_arg(ctx, 0)?.unwrap_or_else(|| "null".to_owned()));
        Ok(())
    }

    fn finalize(
        &self,
        _: &mut Context<'_>,
        items: Option<Vec<String>>,
    ) -> rusqlite::Result<Option<String>> {
        let Some(items) = items else {
            return Ok(None);
        };
        if !self.jsonb {
            return Ok(Some(format!("[{}]", items.join(", "))));
        }
        let mut values = Vec::with_capacity(items.len());
        for item in &items {
            values.push(
                json::parse(ValueRef::Text(item.as_bytes()))
                    .map_err(fail)?
                    .unwrap_or(json::Json::Null),
            );
        }
        json::render(&json::Json::Array(values))
            .map(Some)
            .map_err(fail)
    }
}

fn register_json(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function("__pg_json_out", 1, DET, |ctx| {
        json::normalize(ctx.get_raw(0)).map_err(fail)
    })?;
    conn.create_scalar_function("__pg_json_path", 3, DET, |ctx| {
        let as_text: bool = ctx.get(2)?;
        json::path(ctx.get_raw(0), ctx.get_raw(1), as_text).map_err(fail)
    })?;
    for (name, mode) in [
        ("__pg_jsonb_exists", 0),
        ("__pg_jsonb_exists_any", 1),
        ("__pg_jsonb_exists_all", 2),
    ] {
        conn.create_scalar_function(name, 2, DET, move |ctx| {
            let keys = if mode == 0 {
                text_arg(ctx, 1)?.map(|k| vec![k])
            } else {
                json::text_array(ctx.get_raw(1)).map_err(fail)?
            };
            let Some(keys) = keys else {
                return Ok(None);
            };
            json::exists(ctx.get_raw(0), &keys, mode == 2).map_err(fail)
        })?;
    }
    conn.create_scalar_function("__pg_jsonb_contains", 2, DET, |ctx| {
        let (Some(a), Some(b)) = (
            json::parse(ctx.get_raw(0)).map_err(fail)?,
            json::parse(ctx.get_raw(1)).map_err(fail)?,
        ) else {
            return Ok(None);
        };
        Ok(Some(json::contains(&a, &b)))
    })?;
    conn.create_scalar_function("__pg_jsonb_concat", 2, DET, |ctx| {
        let (Some(a), Some(b)) = (
            json::parse(ctx.get_raw(0)).map_err(fail)?,
            json::parse(ctx.get_raw(1)).map_err(fail)?,
        ) else {
            return Ok(None);
        };
        json::render(&json::concat(a, b)).map(Some).map_err(fail)
    })?;
    for name in ["jsonb_typeof", "json_typeof"] {
        conn.create_scalar_function(name, 1, DET, |ctx| {
            Ok(json::parse(ctx.get_raw(0))
                .map_err(fail)?
                .map(|j| json::type_of(&j)))
        })?;
    }
    for name in ["jsonb_array_length", "json_array_length"] {
        conn.create_scalar_function(name, 1, DET, |ctx| {
            match json::parse(ctx.get_raw(0)).map_err(fail)? {
                None => Ok(None),
                Some(json::Json::Array(items)) => Ok(Some(items.len() as i64)),
                Some(_) => Err(fail(DbError::new(
                    "22023",
                    "cannot get array length of a non-array",
                ))),
            }
        })?;
    }
    // (value, type oid[, numeric typmod]): SQL NULL stays NULL (`to_jsonb` is strict; the
    // builders print it as JSON null).
    conn.create_scalar_function("__pg_to_json", -1, DET, |ctx| {
        let oid: u32 = ctx.get(1)?;
        let value = ctx.get_raw(0);
        if let (Some(array), ValueRef::Text(t)) = (array::ArrayType::from_oid(oid), value) {
            return json::array_text(&String::from_utf8_lossy(t), array)
                .map(Some)
                .map_err(fail);
        }
        match (value, PgType::from_oid(oid)) {
            (ValueRef::Null, _) => return Ok(None),
            (ValueRef::Text(t), Some(PgType::Json | PgType::Jsonb)) => {
                // json keeps its text as written, jsonb is stored in its printed form.
                json::parse(ValueRef::Text(t)).map_err(fail)?;
                return Ok(Some(String::from_utf8_lossy(t).into_owned()));
            }
            (ValueRef::Integer(_) | ValueRef::Real(_), Some(PgType::Numeric)) if ctx.len() > 2 => {
                let mut out = BytesMut::new();
                types::encode_text(PgType::Numeric, ctx.get(2)?, storage_ref(value), &mut out)
                    .map_err(fail)?;
                return Ok(Some(String::from_utf8_lossy(&out).into_owned()));
            }
            _ => {}
        }
        let value = json::to_json(value, oid).map_err(fail)?;
        json::render(&value).map(Some).map_err(fail)
    })?;
    conn.create_scalar_function("__pg_text_array", -1, DET, |ctx| {
        let mut items = Vec::with_capacity(ctx.len());
        for i in 0..ctx.len() {
            items.push(match text_arg(ctx, i)? {
                Some(item) => json::quote(&item),
                None => "NULL".to_owned(),
            });
        }
        Ok(format!("{{{}}}", items.join(",")))
    })?;
    conn.create_scalar_function("__pg_json_get", 3, DET, |ctx| {
        let as_text: bool = ctx.get(2)?;
        json::get(ctx.get_raw(0), ctx.get_raw(1), as_text).map_err(fail)
    })?;
    // json (not jsonb) builders keep the order and text of their arguments, with
    // Postgres's separators: `{"a" : 1, "b" : [1,2]}`, `[1, "x"]`.
    conn.create_scalar_function("__pg_json_build_object", -1, DET, |ctx| {
        if ctx.len() % 2 != 0 {
            return Err(fail(DbError::new(
                "22023",
                "argument list must have even number of elements",
            )));
        }
        let mut out = String::from("{");
        for i in (0..ctx.len()).step_by(2) {
            let key = text_arg(ctx, i)?.ok_or_else(|| {
                fail(DbError::new(
                    "22023",
                    format!("argument {} cannot be null", i + 1),
                ))
            })?;
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&json::quote(&key));
            out.push_str(" : ");
            out.push_str(&text_arg(ctx, i + 1)?.unwrap_or_else(|| "null".to_owned()));
        }
        out.push('}');
        Ok(out)
    })?;
    conn.create_scalar_function("__pg_json_build_array", -1, DET, |ctx| {
        let mut items = Vec::with_capacity(ctx.len());
        for i in 0..ctx.len() {
            items.push(text_arg(ctx, i)?.unwrap_or_else(|| "null".to_owned()));
        }
        Ok(format!("[{}]", items.join(", ")))
    })?;
    conn.create_aggregate_function("__pg_interval_min", 1, DET, IntervalExtreme { max: false })?;
    conn.create_aggregate_function("__pg_interval_max", 1, DET, IntervalExtreme { max: true })?;
    conn.create_aggregate_function("__pg_single_row", 1, DET, SingleRow)?;
    conn.create_aggregate_function("__pg_string_agg_distinct", 3, DET, StringAggDistinct)?;
    conn.create_aggregate_function("__pg_interval_sum", 1, DET, IntervalSum { avg: false })?;
    conn.create_aggregate_function("__pg_interval_avg", 1, DET, IntervalSum { avg: true })?;
    conn.create_aggregate_function("__pg_json_agg", 1, DET, JsonAgg { jsonb: false })?;
    conn.create_aggregate_function("__pg_jsonb_agg", 1, DET, JsonAgg { jsonb: true })?;
    conn.create_scalar_function("__pg_jsonb_build_object", -1, DET, |ctx| {
        if ctx.len() % 2 != 0 {
            return Err(fail(DbError::new(
                "22023",
                "argument list must have even number of elements",
            )));
        }
        let mut members = Vec::new();
        for i in (0..ctx.len()).step_by(2) {
            let key = text_arg(ctx, i)?
                .ok_or_else(|| fail(DbError::new("22004", "argument 1: key must not be null")))?;
            let value = json::parse(ctx.get_raw(i + 1))
                .map_err(fail)?
                .unwrap_or(json::Json::Null);
            members.push((key, value));
        }
        // Printing as jsonb keeps the last of duplicate keys.
        json::render(&json::Json::Object(members)).map_err(fail)
    })?;
    conn.create_scalar_function("__pg_jsonb_build_array", -1, DET, |ctx| {
        let mut items = Vec::new();
        for i in 0..ctx.len() {
            items.push(
                json::parse(ctx.get_raw(i))
                    .map_err(fail)?
                    .unwrap_or(json::Json::Null),
            );
        }
        json::render(&json::Json::Array(items)).map_err(fail)
    })?;
    conn.create_scalar_function("jsonb_set", -1, DET, |ctx| {
        if ctx.len() < 3 {
            return Err(fail(DbError::new(
                "42883",
                "function jsonb_set does not exist",
            )));
        }
        let (Some(target), Some(path), Some(new)) = (
            json::parse(ctx.get_raw(0)).map_err(fail)?,
            json::text_array(ctx.get_raw(1)).map_err(fail)?,
            json::parse(ctx.get_raw(2)).map_err(fail)?,
        ) else {
            return Ok(None);
        };
        let create = if ctx.len() > 3 {
            ctx.get::<bool>(3)?
        } else {
            true
        };
        json::render(&json::set(target, &path, new, create))
            .map(Some)
            .map_err(fail)
    })?;
    conn.create_scalar_function("jsonb_pretty", 1, DET, |ctx| {
        json::parse(ctx.get_raw(0))
            .map_err(fail)?
            .map(|j| json::pretty(&j))
            .transpose()
            .map_err(fail)
    })?;
    conn.create_scalar_function("jsonb_strip_nulls", 1, DET, |ctx| {
        json::parse(ctx.get_raw(0))
            .map_err(fail)?
            .map(|j| json::render(&json::strip_nulls(j)))
            .transpose()
            .map_err(fail)
    })?;
    // json's result is compact, with its members in their order, duplicates kept.
    conn.create_scalar_function("json_strip_nulls", 1, DET, |ctx| {
        Ok(json::parse(ctx.get_raw(0))
            .map_err(fail)?
            .map(|j| json::strip_nulls(j).to_string()))
    })?;
    // jsonb `-` (value, key | index | text array, 0 | 1 | 2).
    conn.create_scalar_function("__pg_jsonb_delete", 3, DET, |ctx| {
        let Some(value) = json::parse(ctx.get_raw(0)).map_err(fail)? else {
            return Ok(None);
        };
        let removal = match ctx.get::<i64>(2)? {
            0 => text_arg(ctx, 1)?.map(json::Removal::Key),
            1 => ctx.get::<Option<i64>>(1)?.map(json::Removal::Index),
            _ => json::text_array(ctx.get_raw(1))
                .map_err(fail)?
                .map(json::Removal::Keys),
        };
        let Some(removal) = removal else {
            return Ok(None);
        };
        json::render(&json::remove(value, &removal).map_err(fail)?)
            .map(Some)
            .map_err(fail)
    })?;
    conn.create_scalar_function("__pg_jsonb_key", 1, DET, |ctx| {
        json::parse(ctx.get_raw(0))
            .map_err(fail)?
            .map(|j| json::sort_key(&j))
            .transpose()
            .map_err(fail)
    })?;
    // row_to_json(t): (name, JSON text or NULL, ...) as Postgres prints a row, compact.
    conn.create_scalar_function("__pg_row_to_json", -1, DET, |ctx| {
        let mut members = Vec::with_capacity(ctx.len() / 2);
        for i in (0..ctx.len() / 2).map(|pair| pair * 2) {
            let name = text_arg(ctx, i)?.unwrap_or_default();
            let value = text_arg(ctx, i + 1)?.unwrap_or_else(|| "null".to_owned());
            members.push(format!("{}:{value}", json::quote(&name)));
        }
        Ok(format!("{{{}}}", members.join(",")))
    })?;
    for (name, as_text) in [
        ("jsonb_extract_path_text", true),
        ("json_extract_path_text", true),
        ("jsonb_extract_path", false),
        ("json_extract_path", false),
    ] {
        conn.create_scalar_function(name, -1, DET, move |ctx| {
            let mut keys = Vec::new();
            for i in 1..ctx.len() {
                match text_arg(ctx, i)? {
                    Some(k) => keys.push(format!(
                        "\"{}\"",
                        k.replace('\\', "\\\\").replace('"', "\\\"")
                    )),
                    None => return Ok(None),
                }
            }
            let path = format!("{{{}}}", keys.join(","));
            json::path(ctx.get_raw(0), ValueRef::Text(path.as_bytes()), as_text).map_err(fail)
        })?;
    }
    Ok(())
}

fn text_arg(ctx: &Context<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    Ok(match ctx.get_raw(i) {
        ValueRef::Null => None,
        ValueRef::Integer(v) => Some(v.to_string()),
        ValueRef::Real(v) => Some(v.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    })
}

fn pad(s: &str, n: i64, fill: &str, left: bool) -> String {
    let n = n.max(0) as usize;
    let chars: Vec<char> = s.chars().collect();
    if chars.len() >= n {
        return chars[..n].iter().collect();
    }
    if fill.is_empty() {
        return s.to_owned();
    }
    let padding: String = fill.chars().cycle().take(n - chars.len()).collect();
    if left {
        padding + s
    } else {
        s.to_owned() + &padding
    }
}

fn extreme(ctx: &Context<'_>, greatest: bool) -> rusqlite::Result<Value> {
    let mut best: Option<Value> = None;
    for i in 0..ctx.len() {
        let v: Value = ctx.get(i)?;
        if v == Value::Null {
            continue;
        }
        best = Some(match best {
            None => v,
            Some(b) => {
                let ord = compare_values(&v, &b);
                if (greatest && ord.is_gt()) || (!greatest && ord.is_lt()) {
                    v
                } else {
                    b
                }
            }
        });
    }
    Ok(best.unwrap_or(Value::Null))
}

fn compare_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        (Value::Integer(x), Value::Real(y)) => {
            (*x as f64).partial_cmp(y).unwrap_or(Ordering::Equal)
        }
        (Value::Real(x), Value::Integer(y)) => {
            x.partial_cmp(&(*y as f64)).unwrap_or(Ordering::Equal)
        }
        (Value::Real(x), Value::Real(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
        (Value::Integer(_) | Value::Real(_), _) => Ordering::Less,
        (_, Value::Integer(_) | Value::Real(_)) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

pub(crate) fn number(v: ValueRef<'_>) -> Option<Result<f64, i64>> {
    match v {
        ValueRef::Integer(i) => Some(Err(i)),
        ValueRef::Real(f) => Some(Ok(f)),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .map(Ok),
        _ => None,
    }
}

fn division_by_zero() -> rusqlite::Error {
    fail(DbError::new("22012", "division by zero"))
}

/// `a / b` and `a % b`: integers divide as integers (truncating) unless the operands are
/// `numeric` or floating point (`numeric` = 1), and a zero divisor is an error.
fn arith(ctx: &Context<'_>, modulo: bool) -> rusqlite::Result<Value> {
    let numeric: bool = ctx.get(2)?;
    let (a, b) = (ctx.get_raw(0), ctx.get_raw(1));
    if a == ValueRef::Null || b == ValueRef::Null {
        return Ok(Value::Null);
    }
    let (Some(x), Some(y)) = (number(a), number(b)) else {
        return Err(fail(DbError::new(
            "22P02",
            "invalid input syntax for type numeric",
        )));
    };
    match (x, y) {
        (Err(x), Err(y)) if !numeric => {
            if y == 0 {
                return Err(division_by_zero());
            }
            let r = if modulo {
                x.checked_rem(y)
            } else {
                x.checked_div(y)
            };
            r.map(Value::Integer)
                .ok_or_else(|| fail(DbError::new("22003", "bigint out of range")))
        }
        (x, y) => {
            let x = x.unwrap_or_else(|i| i as f64);
            let y = y.unwrap_or_else(|i| i as f64);
            if y == 0.0 {
                return Err(division_by_zero());
            }
            Ok(Value::Real(if modulo { x % y } else { x / y }))
        }
    }
}

fn int_range(ty: PgType, v: i64) -> Result<SqlValue, DbError> {
    let (ok, name) = match ty {
        PgType::Int2 => (i16::try_from(v).is_ok(), "smallint"),
        PgType::Int4 => (i32::try_from(v).is_ok(), "integer"),
        PgType::Oid => (u32::try_from(v).is_ok(), "OID"),
        _ => (true, "bigint"),
    };
    if ok {
        Ok(SqlValue::Int(v))
    } else {
        Err(DbError::new("22003", format!("{name} out of range")))
    }
}

fn is_int(ty: PgType) -> bool {
    matches!(ty, PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Oid)
}

/// The text form of a stored value of type `src`, as Postgres's output function prints it.
fn as_text(v: SqlValueRef<'_>, src: Option<PgType>) -> Result<String, DbError> {
    let ty = match (src, v) {
        (Some(t), _) => t,
        (None, SqlValueRef::Int(_)) => PgType::Int8,
        (None, SqlValueRef::Float(_)) => PgType::Float8,
        (None, SqlValueRef::Bytes(_)) => PgType::Bytea,
        (None, _) => PgType::Text,
    };
    let mut out = BytesMut::new();
    types::encode_text(ty, -1, v, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A Postgres cast of a stored value from `src` (None: unknown) to `dst`.
pub(crate) fn cast(
    v: ValueRef<'_>,
    src: Option<PgType>,
    dst: PgType,
    typmod: i32,
) -> Result<SqlValue, DbError> {
    let v = storage_ref(v);
    match v {
        SqlValueRef::Null => Ok(SqlValue::Null),
        SqlValueRef::Int(i) => match dst {
            _ if is_int(dst) => int_range(dst, i),
            PgType::Bool => Ok(SqlValue::Int(i64::from(i != 0))),
            // `booltext`: a boolean cast to text reads `true` or `false` (its output is `t`).
            PgType::Text | PgType::Varchar | PgType::Bpchar | PgType::Name
                if src == Some(PgType::Bool) =>
            {
                let text: &[u8] = if i != 0 { b"true" } else { b"false" };
                cast(ValueRef::Text(text), Some(PgType::Text), dst, typmod)
            }
            PgType::Float8 => Ok(SqlValue::Float(i as f64)),
            PgType::Float4 => Ok(SqlValue::Float(f64::from(i as f32))),
            PgType::Numeric if typmod < 0 => Ok(SqlValue::Int(i)),
            _ => types::parse_text(dst, typmod, &as_text(v, src)?),
        },
        SqlValueRef::Float(f) => match dst {
            _ if is_int(dst) => {
                if !f.is_finite() {
                    return Err(DbError::new("22003", "integer out of range"));
                }
                // numeric rounds half away from zero, float8 to even (rint).
                let r = if src == Some(PgType::Numeric) {
                    f.round()
                } else {
                    f.round_ties_even()
                };
                // 2^63 itself is out of range (`i64::MAX as f64` rounds up to it).
                if r < i64::MIN as f64 || r >= i64::MAX as f64 {
                    return Err(DbError::new("22003", "bigint out of range"));
                }
                int_range(dst, r as i64)
            }
            PgType::Float8 => Ok(SqlValue::Float(f)),
            PgType::Float4 => Ok(SqlValue::Float(f64::from(f as f32))),
            PgType::Numeric if typmod < 0 => Ok(SqlValue::Float(f)),
            PgType::Bool => Err(DbError::new(
                "42846",
                "cannot cast type double precision to boolean",
            )),
            _ => types::parse_text(dst, typmod, &as_text(v, src)?),
        },
        SqlValueRef::Text(s) => {
            let datetime = |t: Option<PgType>| {
                matches!(
                    t,
                    Some(PgType::Date | PgType::Timestamp | PgType::Timestamptz)
                )
            };
            let to_time_of_day = src == Some(PgType::Timestamptz) && dst == PgType::Time;
            if let Some(from) = src.filter(|_| datetime(src))
                && (datetime(Some(dst)) || to_time_of_day)
                && let Some(converted) = time::convert(s, from, dst)
            {
                return Ok(SqlValue::Text(converted));
            }
            // A timestamptz's text is its output, in the session's zone; storage holds UTC.
            if src == Some(PgType::Timestamptz)
                && matches!(
                    dst,
                    PgType::Text | PgType::Varchar | PgType::Bpchar | PgType::Name
                )
            {
                return types::parse_text(dst, typmod, &as_text(v, src)?);
            }
            if is_int(dst) && src == Some(PgType::Numeric) {
                // A whole number converts exactly (a double would round 2^63 - 1 up).
                if let Ok(whole) = s.trim().parse::<i128>() {
                    return i64::try_from(whole)
                        .map_err(|_| DbError::new("22003", "bigint out of range"))
                        .and_then(|i| int_range(dst, i));
                }
                let f: f64 = s.trim().parse().map_err(|_| {
                    DbError::new(
                        "22P02",
                        format!("invalid input syntax for type numeric: \"{s}\""),
                    )
                })?;
                return cast(ValueRef::Real(f), src, dst, typmod);
            }
            types::parse_text(dst, typmod, s)
        }
        SqlValueRef::Bytes(b) => match dst {
            PgType::Bytea => Ok(SqlValue::Bytes(b.to_vec())),
            _ => types::parse_text(dst, typmod, &as_text(v, Some(PgType::Bytea))?),
        },
    }
}

/// Postgres `LIKE`: `%`, `_`, an escape character (backslash unless given), exact case
/// unless `insensitive` (ILIKE).
/// A letter's one-letter upper or lower case; itself when that would take several letters.
fn change_case(c: char, upper: bool) -> char {
    let mut mapped: Vec<char> = if upper {
        c.to_uppercase().collect()
    } else {
        c.to_lowercase().collect()
    };
    match mapped.len() {
        1 => mapped.remove(0),
        _ => c,
    }
}

pub(crate) fn like(value: &str, pattern: &str, escape: Option<char>, insensitive: bool) -> bool {
    let fold = |s: &str| -> Vec<char> {
        if insensitive {
            s.to_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    let v = fold(value);
    // Tokens: Some(c) literal, None for '_' wildcard; '%' as a separate marker.
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Lit(char),
        One,
        Any,
    }
    let mut toks = Vec::new();
    let mut chars = fold(pattern).into_iter();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            if let Some(n) = chars.next() {
                toks.push(Tok::Lit(n));
            }
        } else if c == '%' {
            if toks.last() != Some(&Tok::Any) {
                toks.push(Tok::Any);
            }
        } else if c == '_' {
            toks.push(Tok::One);
        } else {
            toks.push(Tok::Lit(c));
        }
    }
    // Iterative matching with a single backtrack point per '%' (classic wildcard match).
    let (mut vi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        match toks.get(ti) {
            Some(Tok::Lit(c)) if *c == v[vi] => {
                vi += 1;
                ti += 1;
            }
            Some(Tok::One) => {
                vi += 1;
                ti += 1;
            }
            Some(Tok::Any) => {
                star = Some((ti, vi));
                ti += 1;
            }
            _ => match star {
                Some((st, sv)) => {
                    ti = st + 1;
                    vi = sv + 1;
                    star = Some((st, sv + 1));
                }
                None => return false,
            },
        }
    }
    toks[ti..].iter().all(|t| *t == Tok::Any)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn like_follows_postgres() {
        assert!(like("abc", "a%", Some('\\'), false));
        assert!(!like("ABC", "a%", Some('\\'), false));
        assert!(like("ABC", "a%", Some('\\'), true));
        assert!(like("a%c", "a\\%c", Some('\\'), false));
        assert!(!like("abc", "a\\%c", Some('\\'), false));
        assert!(like("abc", "_b_", Some('\\'), false));
        assert!(like("", "%", Some('\\'), false));
        assert!(like("mississippi", "%iss%pi", Some('\\'), false));
    }

    #[test]
    fn casts_follow_postgres() {
        assert_eq!(
            cast(ValueRef::Real(2.5), Some(PgType::Float8), PgType::Int4, -1),
            Ok(SqlValue::Int(2))
        );
        assert_eq!(
            cast(ValueRef::Real(2.5), Some(PgType::Numeric), PgType::Int4, -1),
            Ok(SqlValue::Int(3))
        );
        assert_eq!(
            cast(ValueRef::Integer(1 << 40), None, PgType::Int4, -1).map_err(|e| e.code),
            Err("22003".to_owned())
        );
        assert_eq!(
            cast(ValueRef::Text(b"12"), Some(PgType::Text), PgType::Int4, -1),
            Ok(SqlValue::Int(12))
        );
        assert_eq!(
            cast(ValueRef::Text(b"x"), Some(PgType::Text), PgType::Int4, -1).map_err(|e| e.code),
            Err("22P02".to_owned())
        );
        assert_eq!(
            cast(ValueRef::Integer(5), Some(PgType::Int4), PgType::Text, -1),
            Ok(SqlValue::Text("5".to_owned()))
        );
    }

    #[test]
    fn timestamps_print_like_postgres() {
        let t = DateTime::from_timestamp(1_700_000_000, 120_000_000).unwrap_or_default();
        assert_eq!(format_timestamptz(t), "2023-11-14 22:13:20.12+00");
    }
}
