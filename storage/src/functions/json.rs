//! `json`/`jsonb` operators and functions over the normalized text storage holds
//! (`#>`, `#>>`, `?`, `?|`, `?&`, `@>`, `||`, `jsonb_typeof`, `jsonb_set`, builders).

use mycelium_protocol::DbError;
use mycelium_protocol::types::{self, PgType, SqlValue};
use rusqlite::types::ValueRef;
use serde_json::Value as Json;

fn invalid(text: &str) -> DbError {
    DbError::new(
        "22P02",
        format!("invalid input syntax for type json: \"{text}\""),
    )
}

pub fn parse(v: ValueRef<'_>) -> Result<Option<Json>, DbError> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            let text = String::from_utf8_lossy(t);
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|_| invalid(&text))
        }
        ValueRef::Integer(i) => Ok(Some(Json::from(i))),
        ValueRef::Real(f) => Ok(serde_json::Number::from_f64(f).map(Json::Number)),
    }
}

/// The text Postgres prints for a `jsonb` value.
pub fn render(value: &Json) -> Result<String, DbError> {
    match types::parse_text(PgType::Jsonb, -1, &value.to_string())? {
        SqlValue::Text(s) => Ok(s),
        _ => Ok(value.to_string()),
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
        Json::Object(map) => map.get(key),
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
        (Json::Object(map), ValueRef::Text(k)) => map.get(String::from_utf8_lossy(k).as_ref()),
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
        Json::Object(map) => map.contains_key(key),
        Json::Array(items) => items.iter().any(|i| i.as_str() == Some(key)),
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
        (Json::Object(a), Json::Object(b)) => b
            .iter()
            .all(|(k, bv)| a.get(k).is_some_and(|av| contains(av, bv))),
        (Json::Array(a), Json::Array(b)) => b.iter().all(|bv| a.iter().any(|av| contains(av, bv))),
        // A top-level array contains a primitive it has as an element.
        (Json::Array(a), b) if !b.is_array() && !b.is_object() => a.iter().any(|av| av == b),
        (a, b) => numbers_equal(a, b).unwrap_or(a == b),
    }
}

fn numbers_equal(a: &Json, b: &Json) -> Option<bool> {
    Some(a.as_f64()? == b.as_f64()?)
}

/// `||` on jsonb: objects merge (right wins), anything else concatenates as arrays.
pub fn concat(a: Json, b: Json) -> Json {
    match (a, b) {
        (Json::Object(mut a), Json::Object(b)) => {
            a.extend(b);
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
            Json::Object(map) => {
                if rest.is_empty() {
                    if create || map.contains_key(key) {
                        map.insert(key.clone(), new);
                    }
                } else if let Some(next) = map.get_mut(key) {
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

/// The JSON form of a stored value of Postgres type `oid` (`to_jsonb`).
pub fn to_json(v: ValueRef<'_>, oid: u32) -> Result<Json, DbError> {
    let ty = PgType::from_oid(oid);
    Ok(match (v, ty) {
        (ValueRef::Null, _) => Json::Null,
        (ValueRef::Integer(i), Some(PgType::Bool)) => Json::Bool(i != 0),
        (ValueRef::Integer(i), _) => Json::from(i),
        (ValueRef::Real(f), _) => serde_json::Number::from_f64(f)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        (v @ ValueRef::Text(_), Some(PgType::Json | PgType::Jsonb)) => {
            parse(v)?.unwrap_or(Json::Null)
        }
        (ValueRef::Text(t), _) => Json::String(String::from_utf8_lossy(t).into_owned()),
        (ValueRef::Blob(b), _) => {
            let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
            Json::String(format!("\\x{hex}"))
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn j(s: &str) -> Json {
        serde_json::from_str(s).unwrap()
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
    }

    #[test]
    fn set_and_concat() {
        let out = set(
            j(r#"{"a": {"b": 1}}"#),
            &["a".into(), "b".into()],
            j("2"),
            true,
        );
        assert_eq!(out, j(r#"{"a": {"b": 2}}"#));
        assert_eq!(
            concat(j(r#"{"a": 1}"#), j(r#"{"b": 2}"#)),
            j(r#"{"a": 1, "b": 2}"#)
        );
        assert_eq!(
            text_array(ValueRef::Text(b"{a, \"b c\",1}"))
                .unwrap()
                .unwrap(),
            vec!["a", "b c", "1"]
        );
    }
}
