//! Postgres's `format(formatstr, args...)`: `%s`, `%I`, `%L` and `%%`, with positions
//! (`%2$s`), the `-` flag and widths (`%10s`, `%*s`, `%*1$s`). SQLite has a `format` of its
//! own (C's printf), which would silently drop `%I` and `%L`, so statements call this one.

use mycelium_protocol::DbError;
use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::{DET, fail};

pub(super) fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function("__pg_format", -1, DET, |ctx| {
        let template = match ctx.get_raw(0) {
            ValueRef::Null => return Ok(None),
            other => text(other).unwrap_or_default(),
        };
        let args: Vec<Option<String>> = (1..ctx.len()).map(|i| text(ctx.get_raw(i))).collect();
        format(&template, &args).map(Some).map_err(fail)
    })?;
    Ok(())
}

fn text(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Some(b.iter().fold(String::from("\\x"), |mut s, byte| {
            s.push_str(&format!("{byte:02x}"));
            s
        })),
    }
}

fn invalid(message: &str) -> DbError {
    DbError::new("22023", message)
}

/// Reads digits at `chars[*i..]`, if any.
fn number(chars: &[char], i: &mut usize) -> Result<Option<usize>, DbError> {
    let start = *i;
    while chars.get(*i).is_some_and(char::is_ascii_digit) {
        *i += 1;
    }
    if *i == start {
        return Ok(None);
    }
    chars[start..*i]
        .iter()
        .collect::<String>()
        .parse()
        .map(Some)
        .map_err(|_| invalid("number is out of range"))
}

/// `n$` after a number: an argument position (1-based, as written).
fn position(chars: &[char], i: &mut usize) -> Result<Option<usize>, DbError> {
    let start = *i;
    match number(chars, i)? {
        Some(n) if chars.get(*i) == Some(&'$') => {
            *i += 1;
            if n == 0 {
                return Err(invalid(
                    "format specifies argument 0, but arguments are numbered from 1",
                ));
            }
            Ok(Some(n))
        }
        _ => {
            *i = start;
            Ok(None)
        }
    }
}

pub(crate) fn format(template: &str, args: &[Option<String>]) -> Result<String, DbError> {
    let chars: Vec<char> = template.chars().collect();
    let mut out = String::with_capacity(template.len());
    let mut next_arg = 0usize;
    let mut i = 0;
    let arg = |n: usize| -> Result<&Option<String>, DbError> {
        args.get(n)
            .ok_or_else(|| invalid("too few arguments for format()"))
    };
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        i += 1;
        if chars.get(i) == Some(&'%') {
            out.push('%');
            i += 1;
            continue;
        }
        let explicit = position(&chars, &mut i)?;
        let mut left = false;
        while chars.get(i) == Some(&'-') {
            left = true;
            i += 1;
        }
        let width = if chars.get(i) == Some(&'*') {
            i += 1;
            let index = match position(&chars, &mut i)? {
                Some(n) => n - 1,
                None => {
                    let n = next_arg;
                    next_arg += 1;
                    n
                }
            };
            match arg(index)? {
                None => None,
                Some(w) => {
                    let w: i64 = w
                        .trim()
                        .parse()
                        .map_err(|_| invalid("width argument must be an integer"))?;
                    if w < 0 {
                        left = true;
                    }
                    Some(w.unsigned_abs() as usize)
                }
            }
        } else {
            number(&chars, &mut i)?
        };
        let Some(&kind) = chars.get(i) else {
            return Err(invalid("unterminated format() type specifier"));
        };
        i += 1;
        let index = match explicit {
            Some(n) => n - 1,
            None => next_arg,
        };
        next_arg = index + 1;
        let value = arg(index)?;
        let formatted = match kind {
            's' => value.clone().unwrap_or_default(),
            'I' => match value {
                Some(name) => crate::pg_catalog::quote_identifier(name),
                None => {
                    return Err(DbError::new(
                        "22004",
                        "null values cannot be formatted as an SQL identifier",
                    ));
                }
            },
            'L' => value
                .as_deref()
                .map_or_else(|| "NULL".to_owned(), super::math_text::quote_literal),
            other => {
                return Err(invalid(&format!(
                    "unrecognized format() type specifier \"{other}\""
                )));
            }
        };
        let pad = width.unwrap_or(0).saturating_sub(formatted.chars().count());
        if left {
            out.push_str(&formatted);
            out.extend(std::iter::repeat_n(' ', pad));
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&formatted);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::format;

    fn args(values: &[Option<&str>]) -> Vec<Option<String>> {
        values.iter().map(|v| v.map(str::to_owned)).collect()
    }

    // Expected values are PostgreSQL 15's.
    #[test]
    fn formats_as_postgres() {
        let cases: &[(&str, &[Option<&str>], &str)] = &[
            (
                "%s is %L and %I",
                &[Some("x"), Some("it's"), Some("Col")],
                "x is 'it''s' and \"Col\"",
            ),
            ("%1$s %1$s", &[Some("a")], "a a"),
            ("|%5s|%-5s|", &[Some("a"), Some("b")], "|    a|b    |"),
            ("%*s|", &[Some("3"), Some("x")], "  x|"),
            ("%*s|", &[Some("-3"), Some("x")], "x  |"),
            ("%s %L %%", &[None, None], " NULL %"),
            ("%2$s %s", &[Some("a"), Some("b"), Some("c")], "b c"),
            ("%I", &[Some("plain_name")], "plain_name"),
        ];
        for (template, values, expected) in cases {
            assert_eq!(
                format(template, &args(values)).ok().as_deref(),
                Some(*expected),
                "{template}"
            );
        }
        let code = |template: &str, values: &[Option<&str>]| {
            format(template, &args(values))
                .err()
                .map(|e| e.code.to_string())
        };
        assert_eq!(code("%s %s", &[Some("a")]).as_deref(), Some("22023"));
        assert_eq!(code("%I", &[None]).as_deref(), Some("22004"));
        assert_eq!(code("%d", &[Some("1")]).as_deref(), Some("22023"));
    }
}
