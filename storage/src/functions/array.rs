//! Postgres arrays on SQLite, one dimension deep.
//!
//! An array value is stored as Postgres prints it: `{1,2}`, `{"a b",NULL}`, with
//! `[lower:upper]=` in front when its lower bound is not 1, and `1 2` for the catalog's
//! `int2vector` and `oidvector` (whose subscripts start at 0). The same text means different
//! elements in `text[]` and `int2[]`, so translated statements pass the array type's OID to
//! every function that reads one.
//!
//! Set-returning functions in a select list (`unnest`, `generate_subscripts`) are joined as
//! `json_each(__pg_srf_rows(n1, n2, ...))`: one row per position up to the longest set, as
//! Postgres runs several of them in lockstep; each call becomes a scalar of that position.

use bytes::{BufMut, BytesMut};
use mycelium_protocol::DbError;
use mycelium_protocol::Format;
use mycelium_protocol::types::{self, PgType, SqlValue, SqlValueRef};
use rusqlite::Connection;
use rusqlite::functions::Context;
use rusqlite::types::{Value, ValueRef};

use super::{DET, as_text, cast, fail, storage_ref, to_value};
use crate::errors::unsupported;

pub const INT2VECTOR: u32 = 22;
pub const OIDVECTOR: u32 = 30;

/// An array type: its OID and its element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayType {
    pub oid: u32,
    pub elem: PgType,
}

impl ArrayType {
    /// `elem[]`; `None` for `unknown`, which has no array type.
    pub fn of(elem: PgType) -> Option<ArrayType> {
        let oid = array_oid(elem);
        (oid != 0).then_some(ArrayType { oid, elem })
    }

    pub fn from_oid(oid: u32) -> Option<ArrayType> {
        match oid {
            INT2VECTOR => Some(ArrayType {
                oid,
                elem: PgType::Int2,
            }),
            OIDVECTOR => Some(ArrayType {
                oid,
                elem: PgType::Oid,
            }),
            _ => PgType::ALL
                .into_iter()
                .find(|ty| array_oid(*ty) == oid)
                .and_then(ArrayType::of),
        }
    }

    /// `int2vector` and `oidvector`: space-separated, subscripts from 0, no NULLs.
    pub fn is_vector(self) -> bool {
        matches!(self.oid, INT2VECTOR | OIDVECTOR)
    }

    /// What `format_type` prints: `integer[]`, `int2vector`.
    pub fn name(self) -> String {
        match self.oid {
            INT2VECTOR => "int2vector".to_owned(),
            OIDVECTOR => "oidvector".to_owned(),
            _ => format!("{}[]", self.elem.name()),
        }
    }

    /// `pg_type.typname`: `_int4`, `int2vector`.
    pub fn typname(self) -> String {
        match self.oid {
            INT2VECTOR => "int2vector".to_owned(),
            OIDVECTOR => "oidvector".to_owned(),
            _ => format!("_{}", crate::rewrite::typname(self.elem)),
        }
    }
}

/// `pg_type.typarray`: the OID of the array type over `ty`, as in Postgres.
pub fn array_oid(ty: PgType) -> u32 {
    match ty {
        PgType::Bool => 1000,
        PgType::Bytea => 1001,
        PgType::Char => 1002,
        PgType::Name => 1003,
        PgType::Int2 => 1005,
        PgType::Int4 => 1007,
        PgType::Text => 1009,
        PgType::Bpchar => 1014,
        PgType::Varchar => 1015,
        PgType::Int8 => 1016,
        PgType::Float4 => 1021,
        PgType::Float8 => 1022,
        PgType::Oid => 1028,
        PgType::Timestamp => 1115,
        PgType::Date => 1182,
        PgType::Time => 1183,
        PgType::Timestamptz => 1185,
        PgType::Numeric => 1231,
        PgType::Json => 199,
        PgType::Jsonb => 3807,
        PgType::Uuid => 2951,
        PgType::Unknown => 0,
    }
}

/// A one-dimensional array: its lower bound and the text forms of its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Array {
    pub lower: i64,
    pub items: Vec<Option<String>>,
}

fn malformed(text: &str) -> DbError {
    DbError::new("22P02", format!("malformed array literal: \"{text}\""))
}

impl Array {
    /// Reads an array's text form (Postgres's `array_in`, one dimension), checking each
    /// element against the element type.
    pub fn parse(text: &str, ty: ArrayType) -> Result<Array, DbError> {
        let array = if ty.is_vector() {
            Array {
                lower: 0,
                items: text
                    .split_whitespace()
                    .map(|s| Some(s.to_owned()))
                    .collect(),
            }
        } else {
            parse_braces(text)?
        };
        for item in array.items.iter().flatten() {
            types::parse_text(ty.elem, -1, item)?;
        }
        Ok(array)
    }

    /// The text form Postgres prints (`array_out`, `int2vectorout`).
    pub fn format(&self, ty: ArrayType) -> Result<String, DbError> {
        if ty.is_vector() {
            let items: Option<Vec<&str>> = self.items.iter().map(|i| i.as_deref()).collect();
            let items = items.ok_or_else(|| {
                DbError::new("22004", format!("{} cannot hold NULL elements", ty.name()))
            })?;
            return Ok(items.join(" "));
        }
        let body: Vec<String> = self
            .items
            .iter()
            .map(|item| match item {
                None => "NULL".to_owned(),
                Some(s) if needs_quotes(s) => {
                    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
                }
                Some(s) => s.clone(),
            })
            .collect();
        let bounds = if self.lower != 1 && !self.items.is_empty() {
            format!("[{}:{}]=", self.lower, self.upper())
        } else {
            String::new()
        };
        Ok(format!("{bounds}{{{}}}", body.join(",")))
    }

    /// The elements as they print: a timestamptz in the session's zone, as its own column
    /// would show it; other elements are stored as they print.
    pub fn shown(mut self, ty: ArrayType) -> Result<Array, DbError> {
        if ty.elem == PgType::Timestamptz {
            for item in self.items.iter_mut().flatten() {
                let value = types::parse_text(ty.elem, -1, item)?;
                *item = as_text(value.as_ref(), Some(ty.elem))?;
            }
        }
        Ok(self)
    }

    pub fn upper(&self) -> i64 {
        self.lower + self.items.len() as i64 - 1
    }

    /// The element at Postgres subscript `i`, as a storage value.
    pub fn get(&self, ty: ArrayType, i: i64) -> Result<SqlValue, DbError> {
        let slot = usize::try_from(i - self.lower)
            .ok()
            .and_then(|n| self.items.get(n));
        match slot {
            Some(Some(text)) => types::parse_text(ty.elem, -1, text),
            _ => Ok(SqlValue::Null),
        }
    }
}

/// The binary form of an array stored as text (`array_send`; `int2vectorsend` and
/// `oidvectorsend` are the same with lower bound 0): dimensions, a NULL flag, the element
/// type, then each element as a length and its binary form.
pub fn encode_binary(
    ty: ArrayType,
    value: SqlValueRef<'_>,
    out: &mut BytesMut,
) -> Result<(), DbError> {
    let text = match value {
        SqlValueRef::Text(t) => t.to_owned(),
        SqlValueRef::Int(n) => n.to_string(),
        _ => return Err(malformed("a non-text value")),
    };
    let array = Array::parse(&text, ty)?;
    let dims: i32 = if array.items.is_empty() { 0 } else { 1 };
    out.put_i32(dims);
    out.put_i32(i32::from(array.items.iter().any(Option::is_none)));
    out.put_u32(ty.elem.oid());
    if dims == 1 {
        out.put_i32(i32::try_from(array.items.len()).unwrap_or(i32::MAX));
        out.put_i32(i32::try_from(array.lower).unwrap_or(i32::MAX));
    }
    let mut element = BytesMut::new();
    for item in &array.items {
        match item {
            None => out.put_i32(-1),
            Some(text) => {
                element.clear();
                let value = types::parse_text(ty.elem, -1, text)?;
                types::encode_binary(ty.elem, -1, value.as_ref(), &mut element)?;
                out.put_i32(i32::try_from(element.len()).unwrap_or(i32::MAX));
                out.extend_from_slice(&element);
            }
        }
    }
    Ok(())
}

/// A parameter of an array type as storage keeps it: the text Postgres prints. Text input is
/// read as `array_in` reads it and printed again (`{ 01, 2 }` is `{1,2}`); binary input is
/// `array_recv`'s (one dimension, elements of the array's element type).
pub fn decode_param(ty: ArrayType, format: Format, bytes: &[u8]) -> Result<SqlValue, DbError> {
    let array = match format {
        Format::Text => {
            let text = std::str::from_utf8(bytes).map_err(|_| {
                DbError::new("22021", "invalid byte sequence for encoding \"UTF8\"")
            })?;
            Array::parse(text, ty)?
        }
        Format::Binary => recv(ty, bytes)?,
    };
    let mut items = Vec::with_capacity(array.items.len());
    for item in &array.items {
        items.push(match item {
            None => None,
            Some(text) => {
                let value = types::parse_text(ty.elem, -1, text)?;
                Some(stored_text(value.as_ref(), ty.elem)?)
            }
        });
    }
    Array {
        lower: array.lower,
        items,
    }
    .format(ty)
    .map(SqlValue::Text)
}

/// `array_recv`: dimensions, a NULL flag, the element type, each dimension's length and lower
/// bound, then each element as a length (-1 for NULL) and its binary form.
fn recv(ty: ArrayType, mut bytes: &[u8]) -> Result<Array, DbError> {
    let invalid = || DbError::new("22P03", "invalid array binary format");
    let int = |bytes: &mut &[u8]| -> Result<i32, DbError> {
        let (head, rest) = bytes.split_first_chunk::<4>().ok_or_else(invalid)?;
        *bytes = rest;
        Ok(i32::from_be_bytes(*head))
    };
    let dims = int(&mut bytes)?;
    let _has_nulls = int(&mut bytes)?;
    let elem_oid = int(&mut bytes)? as u32;
    if elem_oid != ty.elem.oid() {
        return Err(DbError::new(
            "42804",
            format!(
                "binary data has array element type {elem_oid} instead of expected {}",
                ty.elem.oid()
            ),
        ));
    }
    match dims {
        0 => {
            return Ok(Array {
                lower: 1,
                items: Vec::new(),
            });
        }
        1 => {}
        n if n > 1 => return Err(unsupported("multidimensional arrays")),
        _ => return Err(invalid()),
    }
    let len = usize::try_from(int(&mut bytes)?).map_err(|_| invalid())?;
    let lower = i64::from(int(&mut bytes)?);
    let mut items = Vec::with_capacity(len.min(bytes.len() / 4));
    for _ in 0..len {
        let size = int(&mut bytes)?;
        if size < 0 {
            items.push(None);
            continue;
        }
        let size = usize::try_from(size).map_err(|_| invalid())?;
        if size > bytes.len() {
            return Err(invalid());
        }
        let (element, rest) = bytes.split_at(size);
        bytes = rest;
        let value = types::decode_param(ty.elem, Format::Binary, element)?;
        items.push(Some(stored_text(value.as_ref(), ty.elem)?));
    }
    if !bytes.is_empty() {
        return Err(invalid());
    }
    Ok(Array { lower, items })
}

fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.eq_ignore_ascii_case("NULL")
        || s.chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace())
}

/// `[l:u]={a,"b c",NULL}`.
fn parse_braces(text: &str) -> Result<Array, DbError> {
    let trimmed = text.trim();
    let (bounds, body) = match trimmed.strip_prefix('[') {
        Some(rest) => {
            let (dims, body) = rest.split_once("]=").ok_or_else(|| malformed(text))?;
            let (l, u) = dims.split_once(':').ok_or_else(|| malformed(text))?;
            let l: i64 = l.trim().parse().map_err(|_| malformed(text))?;
            let u: i64 = u.trim().parse().map_err(|_| malformed(text))?;
            (Some((l, u)), body.trim_start())
        }
        None => (None, trimmed),
    };
    let mut chars = body
        .strip_prefix('{')
        .ok_or_else(|| malformed(text))?
        .chars()
        .peekable();
    let mut items = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            Some('}') if items.is_empty() => {
                chars.next();
                break;
            }
            Some('{') => return Err(unsupported("multidimensional arrays")),
            None => return Err(malformed(text)),
            _ => {}
        }
        let mut item = String::new();
        let quoted = chars.next_if_eq(&'"').is_some();
        loop {
            match chars.next() {
                None => return Err(malformed(text)),
                Some('\\') => item.push(chars.next().ok_or_else(|| malformed(text))?),
                Some('"') if quoted => break,
                Some(c @ (',' | '}')) if !quoted => {
                    let end = item.trim_end().len();
                    item.truncate(end);
                    if item.is_empty() {
                        return Err(malformed(text));
                    }
                    let item = std::mem::take(&mut item);
                    items.push((!item.eq_ignore_ascii_case("NULL")).then_some(item));
                    if c == '}' {
                        return finish(text, bounds, items, chars.collect());
                    }
                    break;
                }
                Some(c) if quoted || !item.is_empty() || !c.is_whitespace() => item.push(c),
                Some(_) => {}
            }
        }
        if quoted {
            items.push(Some(item));
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            match chars.next() {
                Some(',') => {}
                Some('}') => return finish(text, bounds, items, chars.collect()),
                _ => return Err(malformed(text)),
            }
        }
    }
    finish(text, bounds, items, chars.collect())
}

fn finish(
    text: &str,
    bounds: Option<(i64, i64)>,
    items: Vec<Option<String>>,
    rest: String,
) -> Result<Array, DbError> {
    if !rest.trim().is_empty() {
        return Err(malformed(text));
    }
    let lower = match bounds {
        Some((l, u)) if u - l + 1 != items.len() as i64 => {
            return Err(malformed(text)
                .with_detail("Specified array dimensions do not match array contents."));
        }
        Some((l, _)) => l,
        None => 1,
    };
    Ok(Array { lower, items })
}

/// An element's text as an array stores it: its output, except that a timestamptz is in UTC
/// whatever the session's zone, as a timestamptz column holds it.
fn stored_text(value: SqlValueRef<'_>, elem: PgType) -> Result<String, DbError> {
    types::with_session_time_zone(types::TimeZone::Utc, || as_text(value, Some(elem)))
}

/// An array's output from its stored text (see [`Array::shown`]).
pub fn output_text(ty: ArrayType, stored: &str) -> Result<String, DbError> {
    Array::parse(stored, ty)?.shown(ty)?.format(ty)
}

/// The text form of one element given as a storage value of any class.
fn element_text(v: ValueRef<'_>, elem: PgType) -> Result<Option<String>, DbError> {
    if v == ValueRef::Null {
        return Ok(None);
    }
    let value = cast(v, None, elem, -1)?;
    stored_text(value.as_ref(), elem).map(Some)
}

/// Equality of two storage values as SQLite's `=` compares them (numbers across classes).
fn same(a: &SqlValue, b: &SqlValue) -> bool {
    match (a, b) {
        (SqlValue::Int(x), SqlValue::Float(y)) | (SqlValue::Float(y), SqlValue::Int(x)) => {
            *x as f64 == *y
        }
        _ => a == b,
    }
}

fn array_type_arg(ctx: &Context<'_>, i: usize) -> rusqlite::Result<ArrayType> {
    let oid: u32 = ctx.get(i)?;
    ArrayType::from_oid(oid)
        .ok_or_else(|| fail(DbError::new("42704", format!("type {oid} is not an array"))))
}

/// The array in argument `i` (typed by argument `i + 1`), `None` when NULL.
fn array_arg(ctx: &Context<'_>, i: usize) -> rusqlite::Result<Option<(Array, ArrayType)>> {
    let ty = array_type_arg(ctx, i + 1)?;
    Ok(array_at(ctx, i, ty)?.map(|array| (array, ty)))
}

fn text_value(text: Result<String, DbError>) -> rusqlite::Result<Value> {
    text.map(Value::Text).map_err(fail)
}

/// The array in argument `i`, of type `ty`; `None` when NULL.
fn array_at(ctx: &Context<'_>, i: usize, ty: ArrayType) -> rusqlite::Result<Option<Array>> {
    match ctx.get_raw(i) {
        ValueRef::Null => Ok(None),
        ValueRef::Text(t) | ValueRef::Blob(t) => Array::parse(&String::from_utf8_lossy(t), ty)
            .map(Some)
            .map_err(fail),
        // A vector of one element comes back from SQLite's TEXT affinity as text already;
        // a bare number is that too.
        ValueRef::Integer(n) => Array::parse(&n.to_string(), ty).map(Some).map_err(fail),
        ValueRef::Real(_) => Err(fail(malformed("real"))),
    }
}

/// `array_agg(x)`: the elements' text forms in the order SQLite feeds them (the call's
/// `ORDER BY`); no rows give NULL, as in Postgres.
struct ArrayAgg;

type AggState = (Option<ArrayType>, Vec<Option<String>>);

impl rusqlite::functions::Aggregate<AggState, Value> for ArrayAgg {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<AggState> {
        Ok((None, Vec::new()))
    }

    fn step(&self, ctx: &mut Context<'_>, state: &mut AggState) -> rusqlite::Result<()> {
        let ty = array_type_arg(ctx, 1)?;
        state.0 = Some(ty);
        state
            .1
            .push(element_text(ctx.get_raw(0), ty.elem).map_err(fail)?);
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, state: Option<AggState>) -> rusqlite::Result<Value> {
        match state {
            Some((Some(ty), items)) => text_value(Array { lower: 1, items }.format(ty)),
            _ => Ok(Value::Null),
        }
    }
}

pub(super) fn register(conn: &Connection) -> rusqlite::Result<()> {
    // ARRAY[a, b]: the array type, then the elements.
    conn.create_scalar_function("__pg_array", -1, DET, |ctx| {
        let ty = array_type_arg(ctx, 0)?;
        let items = (1..ctx.len())
            .map(|i| element_text(ctx.get_raw(i), ty.elem))
            .collect::<Result<_, _>>()
            .map_err(fail)?;
        text_value(Array { lower: 1, items }.format(ty))
    })?;
    // A cast to an array type from text (in the target's syntax) or another array type.
    conn.create_scalar_function("__pg_array_cast", 3, DET, |ctx| {
        let to = array_type_arg(ctx, 2)?;
        let from = ArrayType::from_oid(ctx.get(1)?).unwrap_or(to);
        let Some(text) = super::text_arg(ctx, 0)? else {
            return Ok(Value::Null);
        };
        let array = Array::parse(&text, from).map_err(fail)?;
        let items = array
            .items
            .iter()
            .map(|item| match item {
                Some(text) => {
                    let value = types::parse_text(from.elem, -1, text)?;
                    element_text(ValueRef::from(&to_value(value)), to.elem)
                }
                None => Ok(None),
            })
            .collect::<Result<_, _>>()
            .map_err(fail)?;
        text_value(
            Array {
                lower: array.lower,
                items,
            }
            .format(to),
        )
    })?;
    conn.create_scalar_function("__pg_array_get", 3, DET, |ctx| {
        let Some((array, ty)) = array_arg(ctx, 0)? else {
            return Ok(Value::Null);
        };
        let Some(i) = ctx.get::<Option<i64>>(2)? else {
            return Ok(Value::Null);
        };
        array.get(ty, i).map(to_value).map_err(fail)
    })?;
    // array_length, array_lower, array_upper: NULL for an empty array or another dimension.
    for (name, which) in [
        ("__pg_array_length", 0),
        ("__pg_array_lower", 1),
        ("__pg_array_upper", 2),
    ] {
        conn.create_scalar_function(name, 3, DET, move |ctx| {
            let Some((array, _)) = array_arg(ctx, 0)? else {
                return Ok(None);
            };
            if ctx.get::<Option<i64>>(2)? != Some(1) || array.items.is_empty() {
                return Ok(None);
            }
            Ok(Some(match which {
                0 => array.items.len() as i64,
                1 => array.lower,
                _ => array.upper(),
            }))
        })?;
    }
    // An array cast to text: its output, which differs from what is stored for timestamptz.
    conn.create_scalar_function("__pg_array_out", 2, DET, |ctx| {
        let Some((array, ty)) = array_arg(ctx, 0)? else {
            return Ok(Value::Null);
        };
        text_value(array.shown(ty).and_then(|a| a.format(ty)))
    })?;
    conn.create_scalar_function("__pg_cardinality", 2, DET, |ctx| {
        Ok(array_arg(ctx, 0)?.map(|(array, _)| array.items.len() as i64))
    })?;
    for n in [3, 4] {
        conn.create_scalar_function("__pg_array_to_string", n, DET, |ctx| {
            let Some((array, ty)) = array_arg(ctx, 0)? else {
                return Ok(None);
            };
            let array = array.shown(ty).map_err(fail)?;
            let Some(sep) = super::text_arg(ctx, 2)? else {
                return Ok(None);
            };
            let null = if ctx.len() > 3 {
                super::text_arg(ctx, 3)?
            } else {
                None
            };
            let parts: Vec<&str> = array
                .items
                .iter()
                .filter_map(|item| item.as_deref().or(null.as_deref()))
                .collect();
            Ok(Some(parts.join(&sep)))
        })?;
    }
    // `x = ANY(array)`: true on a match; else NULL when x or an element is NULL; else false.
    conn.create_scalar_function("__pg_array_contains", 3, DET, |ctx| {
        let Some((array, ty)) = array_arg(ctx, 0)? else {
            return Ok(None);
        };
        let x = storage_ref(ctx.get_raw(2)).into_owned();
        if array.items.is_empty() {
            return Ok(Some(false));
        }
        if x == SqlValue::Null {
            return Ok(None);
        }
        let mut saw_null = false;
        for item in &array.items {
            match item {
                Some(text) => {
                    let value = types::parse_text(ty.elem, -1, text).map_err(fail)?;
                    if same(&value, &x) {
                        return Ok(Some(true));
                    }
                }
                None => saw_null = true,
            }
        }
        Ok((!saw_null).then_some(false))
    })?;
    // `a || b` and array_cat (shape 0), `a || x` and array_append (1), `x || a` and
    // array_prepend (2); NULL arrays are empty, as in Postgres.
    conn.create_scalar_function("__pg_array_concat", 4, DET, |ctx| {
        let ty = array_type_arg(ctx, 2)?;
        let shape: i64 = ctx.get(3)?;
        let side = |i: usize| -> rusqlite::Result<Array> {
            Ok(array_at(ctx, i, ty)?.unwrap_or(Array {
                lower: 1,
                items: Vec::new(),
            }))
        };
        let array = match shape {
            0 => {
                let (left, right) = (array_at(ctx, 0, ty)?, array_at(ctx, 1, ty)?);
                match (left, right) {
                    (None, None) => return Ok(Value::Null),
                    (Some(a), None) | (None, Some(a)) => a,
                    (Some(mut a), Some(b)) => {
                        a.items.extend(b.items);
                        a
                    }
                }
            }
            1 => {
                let mut a = side(0)?;
                a.items
                    .push(element_text(ctx.get_raw(1), ty.elem).map_err(fail)?);
                a
            }
            _ => {
                let mut a = side(1)?;
                a.items
                    .insert(0, element_text(ctx.get_raw(0), ty.elem).map_err(fail)?);
                a
            }
        };
        text_value(array.format(ty))
    })?;
    conn.create_scalar_function("__pg_array_remove", 3, DET, |ctx| {
        let Some((mut array, ty)) = array_arg(ctx, 0)? else {
            return Ok(Value::Null);
        };
        let x = element_text(ctx.get_raw(2), ty.elem).map_err(fail)?;
        array.items.retain(|item| *item != x);
        text_value(array.format(ty))
    })?;
    conn.create_scalar_function("__pg_array_position", 3, DET, |ctx| {
        let Some((array, ty)) = array_arg(ctx, 0)? else {
            return Ok(None);
        };
        let x = element_text(ctx.get_raw(2), ty.elem).map_err(fail)?;
        Ok(array
            .items
            .iter()
            .position(|item| x.is_some() && *item == x)
            .map(|i| array.lower + i as i64))
    })?;
    // `a @> b`: every element of `b` is in `a` (NULLs match nothing); `a && b`: one is.
    for (name, all) in [
        ("__pg_array_contains_all", true),
        ("__pg_array_overlap", false),
    ] {
        conn.create_scalar_function(name, 3, DET, move |ctx| {
            let ty = array_type_arg(ctx, 2)?;
            let (Some(a), Some(b)) = (array_at(ctx, 0, ty)?, array_at(ctx, 1, ty)?) else {
                return Ok(None);
            };
            let held = |item: &Option<String>| item.is_some() && a.items.contains(item);
            Ok(Some(if all {
                b.items.iter().all(held)
            } else {
                b.items.iter().any(held)
            }))
        })?;
    }
    // The rows of set-returning functions run in lockstep: as many as the longest set.
    conn.create_scalar_function("__pg_srf_rows", -1, DET, |ctx| {
        let mut rows = 0;
        for i in 0..ctx.len() {
            rows = rows.max(ctx.get::<Option<i64>>(i)?.unwrap_or(0));
        }
        let positions: Vec<String> = (0..rows).map(|n| n.to_string()).collect();
        Ok(format!("[{}]", positions.join(",")))
    })?;
    conn.create_scalar_function("__pg_unnest_count", 2, DET, |ctx| {
        Ok(array_arg(ctx, 0)?.map_or(0, |(array, _)| array.items.len() as i64))
    })?;
    // unnest(array) at row `n` (from 0): the n-th element, NULL past the end.
    conn.create_scalar_function("__pg_unnest", 3, DET, |ctx| {
        let Some((array, ty)) = array_arg(ctx, 0)? else {
            return Ok(Value::Null);
        };
        let n: i64 = ctx.get(2)?;
        array.get(ty, array.lower + n).map(to_value).map_err(fail)
    })?;
    // generate_subscripts(array, dim[, reverse]): the length of the set, then its n-th value.
    conn.create_scalar_function("__pg_subscripts_count", 3, DET, |ctx| {
        let Some((array, _)) = array_arg(ctx, 0)? else {
            return Ok(0);
        };
        Ok(if ctx.get::<Option<i64>>(2)? == Some(1) {
            array.items.len() as i64
        } else {
            0
        })
    })?;
    conn.create_scalar_function("__pg_subscript", 5, DET, |ctx| {
        let Some((array, _)) = array_arg(ctx, 0)? else {
            return Ok(None);
        };
        let n: i64 = ctx.get(3)?;
        let reverse = ctx.get::<Option<bool>>(4)?.unwrap_or(false);
        if ctx.get::<Option<i64>>(2)? != Some(1) || n >= array.items.len() as i64 {
            return Ok(None);
        }
        Ok(Some(if reverse {
            array.upper() - n
        } else {
            array.lower + n
        }))
    })?;
    conn.create_aggregate_function("__pg_array_agg", 2, DET, ArrayAgg)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn text() -> ArrayType {
        ArrayType::of(PgType::Text).unwrap()
    }

    #[test]
    fn parses_and_prints_postgres_text_forms() {
        for (input, items, printed) in [
            ("{}", vec![], "{}"),
            ("{a,b}", vec![Some("a"), Some("b")], "{a,b}"),
            (
                " { \"a b\" , NULL,\"NULL\", \"q\\\"\" } ",
                vec![Some("a b"), None, Some("NULL"), Some("q\"")],
                "{\"a b\",NULL,\"NULL\",\"q\\\"\"}",
            ),
            ("{\"\"}", vec![Some("")], "{\"\"}"),
            ("{ x y }", vec![Some("x y")], "{\"x y\"}"),
        ] {
            let array = Array::parse(input, text()).unwrap();
            let expected: Vec<Option<String>> =
                items.iter().map(|i| i.map(str::to_owned)).collect();
            assert_eq!(array.items, expected, "{input}");
            assert_eq!(array.format(text()).unwrap(), printed, "{input}");
        }
    }

    #[test]
    fn bounds_and_vectors() {
        let int2 = ArrayType::of(PgType::Int2).unwrap();
        let array = Array::parse("[0:1]={3,4}", int2).unwrap();
        assert_eq!((array.lower, array.upper()), (0, 1));
        assert_eq!(array.format(int2).unwrap(), "[0:1]={3,4}");
        assert_eq!(array.get(int2, 0).unwrap(), SqlValue::Int(3));
        assert_eq!(array.get(int2, 2).unwrap(), SqlValue::Null);
        let vector = ArrayType::from_oid(INT2VECTOR).unwrap();
        let indkey = Array::parse("1 2", vector).unwrap();
        assert_eq!((indkey.lower, indkey.upper()), (0, 1));
        assert_eq!(indkey.format(vector).unwrap(), "1 2");
    }

    #[test]
    fn binary_form_is_array_send() {
        let mut out = BytesMut::new();
        let vector = ArrayType::from_oid(INT2VECTOR).unwrap();
        encode_binary(vector, SqlValueRef::Text("7 9"), &mut out).unwrap();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 21, // one dimension, no NULLs, int2
            0, 0, 0, 2, 0, 0, 0, 0, // two elements from subscript 0
            0, 0, 0, 2, 0, 7, 0, 0, 0, 2, 0, 9,
        ];
        assert_eq!(&out[..], expected);
        out.clear();
        encode_binary(text(), SqlValueRef::Text("{}"), &mut out).unwrap();
        assert_eq!(&out[..], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25]);
    }

    #[test]
    fn rejects_malformed_literals() {
        let int4 = ArrayType::of(PgType::Int4).unwrap();
        for bad in ["", "1,2", "{1,2", "{1}x", "[1:3]={1}", "{a}", "{,}"] {
            let err = Array::parse(bad, int4).unwrap_err();
            assert!(["22P02"].contains(&err.code.as_str()), "{bad}: {err:?}");
        }
        assert_eq!(
            Array::parse("{{1}}", int4).unwrap_err().code,
            crate::errors::FEATURE_NOT_SUPPORTED
        );
    }
}
