//! `json`/`jsonb` operators and functions over the normalized text storage holds
//! (`#>`, `#>>`, `?`, `?|`, `?&`, `@>`, `||`, `jsonb_typeof`, `jsonb_set`, builders).
//!
//! Values are parsed into [`Json`], which keeps numbers as written: jsonb prints `1.50` as
//! `1.50` (it is a `numeric`), which a conversion through a double would lose.

use mycelium_protocol::DbError;
use mycelium_protocol::types::{self, PgType, SqlValue};
use rusqlite::types::ValueRef;

/// A JSON document. Objects keep their members in order; the last of duplicate keys wins,
/// and printing as jsonb sorts them (see [`render`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number's text, as written.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Nesting limit, as in the codec.
const MAX_DEPTH: usize = 1000;

impl Json {
    fn member(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

fn member_mut<'a>(members: &'a mut [(String, Json)], key: &str) -> Option<&'a mut Json> {
    members
        .iter_mut()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Sets `key` (replacing every earlier member of that name).
fn insert(members: &mut Vec<(String, Json)>, key: String, value: Json) {
    members.retain(|(k, _)| *k != key);
    members.push((key, value));
}

fn invalid(text: &str) -> DbError {
    DbError::new(
        "22P02",
        format!("invalid input syntax for type json: \"{text}\""),
    )
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        self.ws();
        if self.bytes.get(self.pos) == Some(&b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.pos + word.len();
        (self.bytes.get(self.pos..end)? == word.as_bytes()).then(|| self.pos = end)
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match *self.bytes.get(self.pos)? {
            b'n' => self.literal("null").map(|()| Json::Null),
            b't' => self.literal("true").map(|()| Json::Bool(true)),
            b'f' => self.literal("false").map(|()| Json::Bool(false)),
            b'"' => self.string().map(Json::String),
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                if self.eat(b']') {
                    return Some(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    if self.eat(b']') {
                        return Some(Json::Array(items));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'{' => {
                self.pos += 1;
                let mut members = Vec::new();
                if self.eat(b'}') {
                    return Some(Json::Object(members));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    let value = self.value(depth + 1)?;
                    members.push((key, value));
                    if self.eat(b'}') {
                        return Some(Json::Object(members));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let from = p.pos;
            while p.bytes.get(p.pos).is_some_and(u8::is_ascii_digit) {
                p.pos += 1;
            }
            p.pos > from
        };
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        if !digits(self) {
            return None;
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !digits(self) {
                return None;
            }
        }
        if matches!(self.bytes.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.bytes.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).ok()?;
        Some(Json::Number(text.to_owned()))
    }

    fn hex4(&mut self) -> Option<u32> {
        let text = std::str::from_utf8(self.bytes.get(self.pos..self.pos + 4)?).ok()?;
        let v = u32::from_str_radix(text, 16).ok()?;
        self.pos += 4;
        Some(v)
    }

    fn string(&mut self) -> Option<String> {
        if self.bytes.get(self.pos) != Some(&b'"') {
            return None;
        }
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let b = *self.bytes.get(self.pos)?;
            self.pos += 1;
            match b {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = *self.bytes.get(self.pos)?;
                    self.pos += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let high = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&high) {
                                if self.bytes.get(self.pos..self.pos + 2)? != b"\\u" {
                                    return None;
                                }
                                self.pos += 2;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return None;
                                }
                                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                high
                            };
                            char::from_u32(code)?
                        }
                        _ => return None,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return None,
                _ => out.push(b),
            }
        }
    }
}

/// Parses JSON text; `None` when it is not one JSON value.
pub fn parse_text(text: &str) -> Option<Json> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let value = parser.value(0)?;
    parser.ws();
    (parser.pos == parser.bytes.len()).then_some(value)
}

pub fn parse(v: ValueRef<'_>) -> Result<Option<Json>, DbError> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            let text = String::from_utf8_lossy(t);
            parse_text(&text).map(Some).ok_or_else(|| invalid(&text))
        }
        ValueRef::Integer(i) => Ok(Some(Json::Number(i.to_string()))),
        ValueRef::Real(f) => Ok(Some(float(f))),
    }
}

/// A double as a JSON number (non-finite ones have no JSON form).
fn float(f: f64) -> Json {
    if f.is_finite() {
        Json::Number(f.to_string())
    } else {
        Json::Null
    }
}

/// A string as a JSON string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_string(s, &mut out);
    out
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Compact JSON text.
fn write(value: &Json, out: &mut String) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(n),
        Json::String(s) => write_string(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Json::Object(members) => {
            out.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write(v, out);
            }
            out.push('}');
        }
    }
}

impl std::fmt::Display for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        write(self, &mut out);
        f.write_str(&out)
    }
}

/// The text Postgres prints for a `jsonb` value.
pub fn render(value: &Json) -> Result<String, DbError> {
    let text = value.to_string();
    match types::parse_text(PgType::Jsonb, -1, &text)? {
        SqlValue::Text(s) => Ok(s),
        _ => Ok(text),
    }
}

/// Re-normalizes JSON text produced by SQLite (which prints it minified).
pub fn normalize(v: ValueRef<'_>) -> Result<Option<String>, DbError> {
    parse(v)?.map(|j| render(&j)).transpose()
}

/// Elements of a Postgres text array literal: `{a,b,"c d"}`.
pub fn text_array(v: ValueRef<'_>) -> Result<Option<Vec<String>>, DbError> {
    let text = match v {
        ValueRef::Null => return Ok(None),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        _ => return Err(DbError::new("22P02", "malformed array literal")),
    };
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| DbError::new("22P02", format!("malformed array literal: \"{text}\"")))?;
    if inner.trim().is_empty() {
        return Ok(Some(Vec::new()));
    }
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => current.extend(chars.next()),
            ',' if !quoted => items.push(std::mem::take(&mut current).trim().to_owned()),
            c => current.push(c),
        }
    }
    items.push(current.trim().to_owned());
    Ok(Some(items))
}

fn step<'a>(value: &'a Json, key: &str) -> Option<&'a Json> {
    match value {
        Json::Object(_) => value.member(key),
        Json::Array(items) => {
            let index: i64 = key.parse().ok()?;
            let len = items.len() as i64;
            let index = if index < 0 { len + index } else { index };
            usize::try_from(index).ok().and_then(|i| items.get(i))
        }
        _ => None,
    }
}

/// `#>` (as JSON) and `#>>` (as text).
pub fn path(
    json: ValueRef<'_>,
    path: ValueRef<'_>,
    as_text: bool,
) -> Result<Option<String>, DbError> {
    let (Some(json), Some(path)) = (parse(json)?, text_array(path)?) else {
        return Ok(None);
    };
    let mut at = &json;
    for key in &path {
        match step(at, key) {
            Some(next) => at = next,
            None => return Ok(None),
        }
    }
    output(at, as_text)
}

/// A value `->`/`#>` return (its jsonb text) or `->>`/`#>>` return (strings bare, JSON null as
/// SQL NULL).
fn output(value: &Json, as_text: bool) -> Result<Option<String>, DbError> {
    Ok(match (value, as_text) {
        (Json::Null, true) => None,
        (Json::String(s), true) => Some(s.clone()),
        (other, _) => Some(render(other)?),
    })
}

/// `->` (as JSON) and `->>` (as text): an object's field by a text key, an array's element
/// by an integer (negative from the end).
pub fn get(
    json: ValueRef<'_>,
    key: ValueRef<'_>,
    as_text: bool,
) -> Result<Option<String>, DbError> {
    let Some(json) = parse(json)? else {
        return Ok(None);
    };
    let found = match (&json, key) {
        (Json::Object(_), ValueRef::Text(k)) => json.member(String::from_utf8_lossy(k).as_ref()),
        (Json::Array(_), ValueRef::Integer(i)) => step(&json, &i.to_string()),
        _ => None,
    };
    match found {
        Some(value) => output(value, as_text),
        None => Ok(None),
    }
}

/// `?`, `?|` (any) and `?&` (all): top-level keys, or string elements of an array.
pub fn exists(json: ValueRef<'_>, keys: &[String], all: bool) -> Result<Option<bool>, DbError> {
    let Some(json) = parse(json)? else {
        return Ok(None);
    };
    let has = |key: &String| match &json {
        Json::Object(_) => json.member(key).is_some(),
        Json::Array(items) => items
            .iter()
            .any(|i| matches!(i, Json::String(s) if s == key)),
        Json::String(s) => s == key,
        _ => false,
    };
    Ok(Some(if all {
        keys.iter().all(has)
    } else {
        keys.iter().any(has)
    }))
}

/// `@>`: Postgres's jsonb containment.
pub fn contains(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Object(_), Json::Object(members)) => members
            .iter()
            .all(|(k, bv)| a.member(k).is_some_and(|av| contains(av, bv))),
        (Json::Array(a), Json::Array(b)) => b.iter().all(|bv| a.iter().any(|av| contains(av, bv))),
        // A top-level array contains a primitive it has as an element.
        (Json::Array(a), b) if !matches!(b, Json::Array(_) | Json::Object(_)) => {
            a.iter().any(|av| numbers_equal(av, b).unwrap_or(av == b))
        }
        (a, b) => numbers_equal(a, b).unwrap_or(a == b),
    }
}

/// jsonb numbers are numerics: `1.0` equals `1`.
fn numbers_equal(a: &Json, b: &Json) -> Option<bool> {
    let (Json::Number(a), Json::Number(b)) = (a, b) else {
        return None;
    };
    let a = super::numeric::Dec::parse(a)?;
    let b = super::numeric::Dec::parse(b)?;
    Some(a.normalized() == b.normalized())
}

/// `||` on jsonb: objects merge (right wins), anything else concatenates as arrays.
pub fn concat(a: Json, b: Json) -> Json {
    match (a, b) {
        (Json::Object(mut a), Json::Object(b)) => {
            for (k, v) in b {
                insert(&mut a, k, v);
            }
            Json::Object(a)
        }
        (Json::Array(mut a), Json::Array(b)) => {
            a.extend(b);
            Json::Array(a)
        }
        (Json::Array(mut a), b) => {
            a.push(b);
            Json::Array(a)
        }
        (a, Json::Array(b)) => {
            let mut items = vec![a];
            items.extend(b);
            Json::Array(items)
        }
        (a, b) => Json::Array(vec![a, b]),
    }
}

pub fn type_of(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// `jsonb_set(target, path, new, create_missing)`.
pub fn set(mut target: Json, path: &[String], new: Json, create: bool) -> Json {
    fn walk(at: &mut Json, path: &[String], new: Json, create: bool) {
        let Some((key, rest)) = path.split_first() else {
            return;
        };
        match at {
            Json::Object(members) => {
                if rest.is_empty() {
                    if create || member_mut(members, key).is_some() {
                        insert(members, key.clone(), new);
                    }
                } else if let Some(next) = member_mut(members, key) {
                    walk(next, rest, new, create);
                }
            }
            Json::Array(items) => {
                let Ok(index) = key.parse::<i64>() else {
                    return;
                };
                let len = items.len() as i64;
                let index = if index < 0 { len + index } else { index };
                match usize::try_from(index).ok().filter(|i| *i < items.len()) {
                    Some(i) if rest.is_empty() => items[i] = new,
                    Some(i) => walk(&mut items[i], rest, new, create),
                    None if rest.is_empty() && create => {
                        if index < 0 {
                            items.insert(0, new);
                        } else {
                            items.push(new);
                        }
                    }
                    None => {}
                }
            }
            _ => {}
        }
    }
    walk(&mut target, path, new, create);
    target
}

/// The json text of an array (`to_json`, `row_to_json`): compact, json and jsonb elements
/// as their own text.
pub fn array_text(text: &str, array: super::array::ArrayType) -> Result<String, DbError> {
    let parsed = super::array::Array::parse(text, array)?;
    let mut items = Vec::with_capacity(parsed.items.len());
    for item in &parsed.items {
        items.push(match item {
            None => "null".to_owned(),
            Some(text) if array.elem == PgType::Json => text.clone(),
            Some(text) if array.elem == PgType::Jsonb => {
                render(&parse_text(text).ok_or_else(|| invalid(text))?)?
            }
            Some(text) => {
                let value = super::to_value(types::parse_text(array.elem, -1, text)?);
                to_json(ValueRef::from(&value), array.elem.oid())?.to_string()
            }
        });
    }
    Ok(format!("[{}]", items.join(",")))
}

/// The JSON form of a stored value of Postgres type `oid` (`to_jsonb`).
pub fn to_json(v: ValueRef<'_>, oid: u32) -> Result<Json, DbError> {
    // An array is a JSON array of its elements' JSON forms, as Postgres's `array_to_json`.
    if let (Some(array), ValueRef::Text(t)) = (super::array::ArrayType::from_oid(oid), v) {
        let text = String::from_utf8_lossy(t);
        let parsed = super::array::Array::parse(&text, array)?;
        let mut items = Vec::with_capacity(parsed.items.len());
        for item in &parsed.items {
            items.push(match item {
                None => Json::Null,
                Some(text) => {
                    let value = super::to_value(types::parse_text(array.elem, -1, text)?);
                    to_json(ValueRef::from(&value), array.elem.oid())?
                }
            });
        }
        return Ok(Json::Array(items));
    }
    let ty = PgType::from_oid(oid);
    Ok(match (v, ty) {
        (ValueRef::Null, _) => Json::Null,
        (ValueRef::Integer(i), Some(PgType::Bool)) => Json::Bool(i != 0),
        (ValueRef::Integer(i), _) => Json::Number(i.to_string()),
        (ValueRef::Real(f), _) => float(f),
        (v @ ValueRef::Text(_), Some(PgType::Json | PgType::Jsonb)) => {
            parse(v)?.unwrap_or(Json::Null)
        }
        // Timestamps in JSON are ISO 8601, as Postgres writes them (`2024-01-01T10:00:00`,
        // a timestamptz in the session's zone with its offset as `+02:00`).
        (ValueRef::Text(t), Some(PgType::Timestamp)) => {
            Json::String(String::from_utf8_lossy(t).replacen(' ', "T", 1))
        }
        (ValueRef::Text(t), Some(PgType::Timestamptz)) => {
            let text = String::from_utf8_lossy(t);
            Json::String(match super::time::parse_instant(&text) {
                Some(utc) => iso_timestamptz(utc),
                None => text.into_owned(),
            })
        }
        (ValueRef::Text(t), _) => Json::String(String::from_utf8_lossy(t).into_owned()),
        (ValueRef::Blob(b), _) => {
            let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
            Json::String(format!("\\x{hex}"))
        }
    })
}

/// A UTC instant as Postgres writes a timestamptz in JSON: the session zone's wall-clock
/// time, `T`-separated, and the offset with at least hours and minutes, before any ` BC`.
fn iso_timestamptz(utc: chrono::NaiveDateTime) -> String {
    let offset = super::time::session_offset(utc);
    let local = super::time::format_as(super::time::local_from_utc(utc), PgType::Timestamp)
        .replacen(' ', "T", 1);
    let abs = offset.abs();
    let mut zone = format!(
        "{}{:02}:{:02}",
        if offset < 0 { '-' } else { '+' },
        abs / 3600,
        abs / 60 % 60
    );
    if abs % 60 != 0 {
        zone.push_str(&format!(":{:02}", abs % 60));
    }
    match local.strip_suffix(" BC") {
        Some(ad) => format!("{ad}{zone} BC"),
        None => local + &zone,
    }
}

/// The top level of a `json` value with its members' text as written (json functions keep
/// their input's spacing and duplicate keys).
pub enum Raw<'a> {
    Array(Vec<&'a str>),
    Object(Vec<(String, &'a str)>),
    Scalar,
}

/// Splits JSON text into its top-level members; `None` when it is not one JSON value.
pub fn raw(text: &str) -> Option<Raw<'_>> {
    parse_text(text)?;
    let mut parser = Parser {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let slice = |p: &mut Parser<'_>| -> Option<&str> {
        p.ws();
        let start = p.pos;
        p.value(1)?;
        text.get(start..p.pos)
    };
    if parser.eat(b'[') {
        let mut items = Vec::new();
        if parser.eat(b']') {
            return Some(Raw::Array(items));
        }
        loop {
            items.push(slice(&mut parser)?);
            if parser.eat(b']') {
                return Some(Raw::Array(items));
            }
            if !parser.eat(b',') {
                return None;
            }
        }
    }
    if parser.eat(b'{') {
        let mut members = Vec::new();
        if parser.eat(b'}') {
            return Some(Raw::Object(members));
        }
        loop {
            parser.ws();
            let key = parser.string()?;
            if !parser.eat(b':') {
                return None;
            }
            members.push((key, slice(&mut parser)?));
            if parser.eat(b'}') {
                return Some(Raw::Object(members));
            }
            if !parser.eat(b',') {
                return None;
            }
        }
    }
    Some(Raw::Scalar)
}

/// The error for text that is not JSON.
pub fn invalid_json(text: &str) -> DbError {
    invalid(text)
}

/// `jsonb_pretty`: four spaces per level, an empty container's brackets on two lines.
pub fn pretty(value: &Json) -> Result<String, DbError> {
    fn walk(value: &Json, level: usize, out: &mut String) -> Result<(), DbError> {
        let indent = |out: &mut String, level: usize| {
            out.push('\n');
            out.push_str(&"    ".repeat(level));
        };
        match value {
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    indent(out, level + 1);
                    walk(item, level + 1, out)?;
                }
                indent(out, level);
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (key, item)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    indent(out, level + 1);
                    write_string(key, out);
                    out.push_str(": ");
                    walk(item, level + 1, out)?;
                }
                indent(out, level);
                out.push('}');
            }
            scalar => out.push_str(&render(scalar)?),
        }
        Ok(())
    }
    // Keys in jsonb's order, the last of duplicates kept.
    let normalized = parse_text(&render(value)?).ok_or_else(|| invalid(&value.to_string()))?;
    let mut out = String::new();
    walk(&normalized, 0, &mut out)?;
    Ok(out)
}

/// `jsonb_strip_nulls`: object members whose value is null are dropped, at every depth
/// (array elements stay).
pub fn strip_nulls(value: Json) -> Json {
    match value {
        Json::Array(items) => Json::Array(items.into_iter().map(strip_nulls).collect()),
        Json::Object(members) => Json::Object(
            members
                .into_iter()
                .filter(|(_, v)| *v != Json::Null)
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

/// What the right side of jsonb's `-` names.
pub enum Removal {
    Key(String),
    Index(i64),
    Keys(Vec<String>),
}

/// jsonb `-`: an object loses keys, an array its string elements equal to a key or the
/// element at an index (negative from the end).
pub fn remove(value: Json, removal: &Removal) -> Result<Json, DbError> {
    let keys: &[String] = match removal {
        Removal::Key(key) => std::slice::from_ref(key),
        Removal::Keys(keys) => keys,
        Removal::Index(_) => &[],
    };
    match (value, removal) {
        (Json::Object(_), Removal::Index(_)) => Err(DbError::new(
            "22023",
            "cannot delete from object using integer index",
        )),
        (Json::Array(mut items), Removal::Index(index)) => {
            let len = items.len() as i64;
            let at = if *index < 0 { len + index } else { *index };
            if let Some(i) = usize::try_from(at).ok().filter(|i| *i < items.len()) {
                items.remove(i);
            }
            Ok(Json::Array(items))
        }
        (Json::Object(members), _) => Ok(Json::Object(
            members
                .into_iter()
                .filter(|(k, _)| !keys.contains(k))
                .collect(),
        )),
        (Json::Array(items), _) => Ok(Json::Array(
            items
                .into_iter()
                .filter(|item| !matches!(item, Json::String(s) if keys.contains(s)))
                .collect(),
        )),
        _ => Err(DbError::new("22023", "cannot delete from scalar")),
    }
}

/// Bytes that sort as Postgres orders jsonb values: by type (null, string, number, boolean,
/// array, object), arrays and objects first by their length, then member by member; a
/// top-level scalar sorts above the empty array and below the others (it is stored as a
/// one-element array).
pub fn sort_key(value: &Json) -> Result<Vec<u8>, DbError> {
    let normalized = parse_text(&render(value)?).ok_or_else(|| invalid(&value.to_string()))?;
    let mut out = Vec::new();
    match &normalized {
        Json::Array(items) if items.is_empty() => out.extend_from_slice(&[5, 0]),
        Json::Array(_) => {
            out.extend_from_slice(&[5, 2]);
            nested_key(&normalized, &mut out);
        }
        Json::Object(_) => nested_key(&normalized, &mut out),
        scalar => {
            out.extend_from_slice(&[5, 1]);
            nested_key(scalar, &mut out);
        }
    }
    Ok(out)
}

fn count_key(n: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

/// A string's bytes with 0 escaped and a terminator, so that a prefix sorts first.
fn string_key(s: &str, out: &mut Vec<u8>) {
    for b in s.bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

fn nested_key(value: &Json, out: &mut Vec<u8>) {
    match value {
        Json::Null => out.push(1),
        Json::String(s) => {
            out.push(2);
            string_key(s, out);
        }
        Json::Number(n) => {
            out.push(3);
            number_key(n, out);
        }
        Json::Bool(b) => out.extend_from_slice(&[4, u8::from(*b)]),
        Json::Array(items) => {
            out.push(6);
            count_key(items.len(), out);
            for item in items {
                nested_key(item, out);
            }
        }
        Json::Object(members) => {
            out.push(7);
            count_key(members.len(), out);
            for (key, item) in members {
                string_key(key, out);
                nested_key(item, out);
            }
        }
    }
}

/// A decimal as sign, exponent and digits, so that bytes compare as the numbers do.
fn number_key(text: &str, out: &mut Vec<u8>) {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{int}{frac}");
    let leading = digits.len() - digits.trim_start_matches('0').len();
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    if significant.is_empty() {
        out.push(1);
        return;
    }
    // value = 0.<significant> × 10^point
    let point = int.len() as i64 - leading as i64 + exponent;
    let mut body = Vec::with_capacity(significant.len() + 9);
    let point = i32::try_from(point).unwrap_or(if point < 0 { i32::MIN } else { i32::MAX });
    // The sign bit flipped: negative exponents sort below positive ones.
    body.extend_from_slice(&(point as u32 ^ 0x8000_0000).to_be_bytes());
    body.extend_from_slice(significant.as_bytes());
    body.push(0);
    if negative {
        out.push(0);
        out.extend(body.iter().map(|b| !b));
    } else {
        out.push(2);
        out.extend(body);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn j(s: &str) -> Json {
        parse_text(s).unwrap()
    }

    fn r(v: &Json) -> String {
        render(v).unwrap()
    }

    #[test]
    fn parse_keeps_numbers_and_escapes() {
        let v =
            j(r#" {"n": 1.50, "e": -2E+3, "s": "a\"b\u00e9\ud83d\ude00\n", "l": [true, null]} "#);
        assert_eq!(
            r(&v),
            r#"{"e": -2000, "l": [true, null], "n": 1.50, "s": "a\"bé😀\n"}"#
        );
        for bad in ["", "{", "[1,]", "01x", "\"a", "{\"a\" 1}", "1 2", "nul"] {
            assert_eq!(parse_text(bad), None, "{bad}");
        }
        assert_eq!(quote("a\"\u{1}"), r#""a\"\u0001""#);
    }

    #[test]
    fn containment_follows_postgres() {
        assert!(contains(
            &j(r#"{"a": 1, "b": [1, 2]}"#),
            &j(r#"{"b": [2]}"#)
        ));
        assert!(!contains(&j(r#"{"a": 1}"#), &j(r#"{"a": 2}"#)));
        assert!(contains(&j("[1, 2, 3]"), &j("2")));
        assert!(contains(&j(r#"{"name": "bob"}"#), &j(r#"{"name": "bob"}"#)));
        assert!(contains(&j(r#"{"n": 1.50}"#), &j(r#"{"n": 1.5}"#)));
    }

    #[test]
    fn sort_keys_order_numbers_as_numerics() {
        // PostgreSQL 15's ORDER BY of these jsonb values.
        let sorted = [
            "-100", "-10", "-1.5", "-1", "-0.0001", "0", "0.001", "0.01", "1", "1.50", "10", "99",
            "123.456", "1e3",
        ];
        let keys: Vec<Vec<u8>> = sorted.iter().map(|n| sort_key(&j(n)).unwrap()).collect();
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        assert_eq!(sort_key(&j("1.5")).unwrap(), sort_key(&j("1.50")).unwrap());
        assert_eq!(sort_key(&j("-0")).unwrap(), sort_key(&j("0.00")).unwrap());
    }

    #[test]
    fn set_and_concat() {
        let out = set(
            j(r#"{"a": {"b": 1}}"#),
            &["a".into(), "b".into()],
            j("2"),
            true,
        );
        assert_eq!(r(&out), r#"{"a": {"b": 2}}"#);
        assert_eq!(
            r(&concat(j(r#"{"b": 1, "a": 1}"#), j(r#"{"b": 2.0}"#))),
            r#"{"a": 1, "b": 2.0}"#
        );
        assert_eq!(
            text_array(ValueRef::Text(b"{a, \"b c\",1}"))
                .unwrap()
                .unwrap(),
            vec!["a", "b c", "1"]
        );
    }
}
