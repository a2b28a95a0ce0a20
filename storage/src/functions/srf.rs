//! Set-returning functions over JSON and regular expressions (`jsonb_array_elements`,
//! `jsonb_each`, `json_object_keys`, `regexp_matches`, `regexp_split_to_table`, ...).
//!
//! SQLite has no set-returning user functions, but its `json_each` table-valued function
//! turns a JSON array into rows. So each call computes its whole set as a JSON array of rows,
//! each row an array of the columns' Postgres text (or null): `__pg_srf(name, args...)` in
//! FROM (`rewrite::srf` reads column `i` as `json_extract(value, '$[i]')`), and
//! `__pg_srf_count` / `__pg_srf_at` for a call in a select list, joined by row position as
//! `unnest` is (see `array`).

use std::cell::RefCell;
use std::rc::Rc;

use mycelium_protocol::DbError;
use mycelium_protocol::types::PgType;
use rusqlite::Connection;
use rusqlite::functions::Context;
use rusqlite::types::{Value, ValueRef};

use super::json::{self, Json, Raw};
use super::{DET, fail};

/// One row of a set: each column's text, or NULL.
type Row = Vec<Option<String>>;

fn text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
    }
}

/// The value of a jsonb argument with its keys in jsonb's order (the last of duplicates).
fn jsonb(v: ValueRef<'_>) -> Result<Option<Json>, DbError> {
    let Some(value) = json::parse(v)? else {
        return Ok(None);
    };
    let text = json::render(&value)?;
    json::parse_text(&text)
        .map(Some)
        .ok_or_else(|| json::invalid_json(&text))
}

/// A json argument split as written.
fn json_raw(text: &str) -> Result<Raw<'_>, DbError> {
    json::raw(text).ok_or_else(|| json::invalid_json(text))
}

fn error(message: impl Into<String>) -> DbError {
    DbError::new("22023", message.into())
}

/// A value as `->` (its JSON text) or `->>` (strings bare, null as NULL) prints it.
fn jsonb_column(value: &Json, as_text: bool) -> Result<Option<String>, DbError> {
    Ok(match (value, as_text) {
        (Json::Null, true) => None,
        (Json::String(s), true) => Some(s.clone()),
        (other, _) => Some(json::render(other)?),
    })
}

/// A json member as written, or for the `_text` variants with strings unquoted and null as
/// NULL.
fn json_column(raw: &str, as_text: bool) -> Result<Option<String>, DbError> {
    if !as_text {
        return Ok(Some(raw.to_owned()));
    }
    Ok(match json::parse_text(raw) {
        Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s),
        _ => Some(raw.to_owned()),
    })
}

/// The rows of set-returning function `name` over `args`; none when an argument is NULL
/// (they are strict).
pub fn rows(name: &str, args: &[ValueRef<'_>]) -> Result<Vec<Row>, DbError> {
    if args.iter().any(|a| matches!(a, ValueRef::Null)) {
        return Ok(Vec::new());
    }
    let first = args.first().copied().unwrap_or(ValueRef::Null);
    let as_text = name.ends_with("_text");
    match name {
        "jsonb_array_elements" | "jsonb_array_elements_text" => match jsonb(first)? {
            Some(Json::Array(items)) => items
                .iter()
                .map(|item| Ok(vec![jsonb_column(item, as_text)?]))
                .collect(),
            Some(Json::Object(_)) => Err(error("cannot extract elements from an object")),
            Some(_) => Err(error("cannot extract elements from a scalar")),
            None => Ok(Vec::new()),
        },
        "jsonb_each" | "jsonb_each_text" => match jsonb(first)? {
            Some(Json::Object(members)) => members
                .iter()
                .map(|(key, value)| Ok(vec![Some(key.clone()), jsonb_column(value, as_text)?]))
                .collect(),
            Some(_) => Err(error(format!("cannot call {name} on a non-object"))),
            None => Ok(Vec::new()),
        },
        "jsonb_object_keys" => match jsonb(first)? {
            Some(Json::Object(members)) => {
                Ok(members.into_iter().map(|(k, _)| vec![Some(k)]).collect())
            }
            Some(Json::Array(_)) => Err(error(format!("cannot call {name} on an array"))),
            Some(_) => Err(error(format!("cannot call {name} on a scalar"))),
            None => Ok(Vec::new()),
        },
        "json_array_elements" | "json_array_elements_text" => {
            let source = text(first).unwrap_or_default();
            match json_raw(&source)? {
                Raw::Array(items) => items
                    .into_iter()
                    .map(|item| Ok(vec![json_column(item, as_text)?]))
                    .collect(),
                Raw::Object(_) => Err(error(format!("cannot call {name} on a non-array"))),
                Raw::Scalar => Err(error(format!("cannot call {name} on a scalar"))),
            }
        }
        "json_each" | "json_each_text" => {
            let source = text(first).unwrap_or_default();
            match json_raw(&source)? {
                Raw::Object(members) => members
                    .into_iter()
                    .map(|(key, value)| Ok(vec![Some(key), json_column(value, as_text)?]))
                    .collect(),
                Raw::Array(_) => Err(error("cannot deconstruct an array as an object")),
                Raw::Scalar => Err(error("cannot deconstruct a scalar")),
            }
        }
        "json_object_keys" => {
            let source = text(first).unwrap_or_default();
            match json_raw(&source)? {
                Raw::Object(members) => {
                    Ok(members.into_iter().map(|(k, _)| vec![Some(k)]).collect())
                }
                Raw::Array(_) => Err(error(format!("cannot call {name} on an array"))),
                Raw::Scalar => Err(error(format!("cannot call {name} on a scalar"))),
            }
        }
        "regexp_split_to_table" | "regexp_matches" => {
            let strings: Vec<String> = args.iter().map(|a| text(*a).unwrap_or_default()).collect();
            let (source, pattern, flags) = match strings.as_slice() {
                [s, p] => (s, p, ""),
                [s, p, f] => (s, p, f.as_str()),
                _ => {
                    return Err(DbError::new(
                        "42883",
                        format!("function {name} does not exist"),
                    ));
                }
            };
            if name == "regexp_matches" {
                let text_array = super::array::ArrayType::of(PgType::Text)
                    .ok_or_else(|| crate::errors::internal("no text[] type"))?;
                crate::regex::matches(source, pattern, flags)?
                    .into_iter()
                    .map(|items| {
                        let array = super::array::Array { lower: 1, items };
                        Ok(vec![Some(array.format(text_array)?)])
                    })
                    .collect()
            } else {
                Ok(crate::regex::split(source, pattern, flags, name)?
                    .into_iter()
                    .map(|piece| vec![Some(piece)])
                    .collect())
            }
        }
        other => Err(crate::errors::internal(format!(
            "{other} is not a set-returning function"
        ))),
    }
}

/// The name and arguments of a call `(name, [position,] args...)`.
fn call_rows(ctx: &Context<'_>, skip: usize) -> rusqlite::Result<Vec<Row>> {
    let name: String = ctx.get(0)?;
    let args: Vec<ValueRef<'_>> = (1 + skip..ctx.len()).map(|i| ctx.get_raw(i)).collect();
    rows(&name, &args).map_err(fail)
}

/// A set and the call (name and arguments) it was computed for.
type Computed = (Vec<Value>, Rc<Vec<Row>>);

thread_local! {
    /// The last set a select-list call computed, by its name and arguments: the calls for
    /// each row position repeat them, and computing the set again for each would make a
    /// set of n rows cost n² (SQLite runs each connection on one thread).
    static LAST: RefCell<Option<Computed>> = const { RefCell::new(None) };
}

/// [`call_rows`], reusing the set of the previous call with the same arguments.
fn cached_rows(ctx: &Context<'_>, skip: usize) -> rusqlite::Result<Rc<Vec<Row>>> {
    let key: Option<Vec<Value>> = std::iter::once(0)
        .chain(1 + skip..ctx.len())
        .map(|i| Value::try_from(ctx.get_raw(i)).ok())
        .collect();
    // Text that is not UTF-8 has no owned form to compare: computed every time.
    let Some(key) = key else {
        return call_rows(ctx, skip).map(Rc::new);
    };
    let hit = LAST.with(|last| {
        last.borrow()
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, rows)| rows.clone())
    });
    if let Some(rows) = hit {
        return Ok(rows);
    }
    let rows = Rc::new(call_rows(ctx, skip)?);
    LAST.with(|last| *last.borrow_mut() = Some((key, rows.clone())));
    Ok(rows)
}

/// A row as a JSON array of strings, with its number (from 1) after them WITH ORDINALITY.
fn row_json(row: &Row, number: Option<usize>) -> String {
    let mut columns: Vec<String> = row
        .iter()
        .map(|c| c.as_deref().map_or_else(|| "null".to_owned(), json::quote))
        .collect();
    columns.extend(number.map(|n| (n + 1).to_string()));
    format!("[{}]", columns.join(","))
}

pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    for (name, numbered) in [("__pg_srf", false), ("__pg_srf_numbered", true)] {
        conn.create_scalar_function(name, -1, DET, move |ctx| {
            let rows = call_rows(ctx, 0)?;
            let rows: Vec<String> = rows
                .iter()
                .enumerate()
                .map(|(i, row)| row_json(row, numbered.then_some(i)))
                .collect();
            Ok(format!("[{}]", rows.join(",")))
        })?;
    }
    conn.create_scalar_function("__pg_srf_count", -1, DET, |ctx| {
        Ok(cached_rows(ctx, 0)?.len() as i64)
    })?;
    // (name, position from 0, args...): the first column of that row, NULL past the end.
    conn.create_scalar_function("__pg_srf_at", -1, DET, |ctx| {
        let n: i64 = ctx.get(1)?;
        let rows = cached_rows(ctx, 1)?;
        Ok(usize::try_from(n)
            .ok()
            .and_then(|n| rows.get(n))
            .and_then(|row| row.first().cloned().flatten()))
    })?;
    for arity in [2, 3] {
        conn.create_scalar_function("regexp_split_to_array", arity, DET, |ctx| {
            let args: Vec<Option<String>> = (0..ctx.len()).map(|i| text(ctx.get_raw(i))).collect();
            let (source, pattern, flags) = match args.as_slice() {
                [Some(s), Some(p)] => (s, p, ""),
                [Some(s), Some(p), Some(f)] => (s, p, f.as_str()),
                _ => return Ok(None),
            };
            let items = crate::regex::split(source, pattern, flags, "regexp_split_to_array")
                .map_err(fail)?;
            text_array(items.into_iter().map(Some).collect()).map(Some)
        })?;
        conn.create_scalar_function("string_to_array", arity, DET, |ctx| {
            let Some(source) = text(ctx.get_raw(0)) else {
                return Ok(None);
            };
            let delimiter = text(ctx.get_raw(1));
            let null = if ctx.len() > 2 {
                text(ctx.get_raw(2))
            } else {
                None
            };
            let pieces: Vec<String> = if source.is_empty() {
                Vec::new()
            } else {
                match delimiter.as_deref() {
                    None => source.chars().map(String::from).collect(),
                    Some("") => vec![source.clone()],
                    Some(d) => source.split(d).map(str::to_owned).collect(),
                }
            };
            let items = pieces
                .into_iter()
                .map(|p| (null.as_ref() != Some(&p)).then_some(p))
                .collect();
            text_array(items).map(Some)
        })?;
    }
    Ok(())
}

fn text_array(items: Vec<Option<String>>) -> rusqlite::Result<String> {
    let ty = super::array::ArrayType::of(PgType::Text)
        .ok_or_else(|| fail(crate::errors::internal("no text[] type")))?;
    super::array::Array { lower: 1, items }
        .format(ty)
        .map_err(fail)
}
