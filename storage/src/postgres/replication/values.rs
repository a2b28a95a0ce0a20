//! PostgreSQL values ↔ [`SqlValue`]: the type mapping of the module documentation.
//!
//! Rows are read as the text of their row value (`NEW::text`, `t::text`): every column in
//! its type's own output format, which is exactly what its input function reads back.

use mycelium_protocol::types::{self, PgType, SqlValue as MyceliumValue};
use mycelium_replication::SqlValue;
use postgres_types::ToSql;

/// Type OIDs that map to something other than text.
const BOOL: u32 = 16;
const BYTEA: u32 = 17;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const OID: u32 = 26;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const TIMESTAMPTZ: u32 = 1184;

/// Splits the text of a row value, `(1,"a b",,"")`, into its fields: `None` for NULL (an
/// empty unquoted field). Quoting as `record_out` writes it and `record_in` reads it: a
/// quoted part may hold `""` for a quote, and a backslash takes the next character as is.
pub(crate) fn parse_record(text: &str, width: usize) -> Result<Vec<Option<String>>, String> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("not a row value: {text:?}"))?;
    if width == 0 {
        return if inner.is_empty() {
            Ok(Vec::new())
        } else {
            Err(format!("a row value of no columns holds {inner:?}"))
        };
    }
    let mut fields = Vec::with_capacity(width);
    let mut chars = inner.chars().peekable();
    loop {
        let field = match chars.peek() {
            None | Some(',') => None,
            Some(_) => {
                let mut buf = String::new();
                let mut quoted = false;
                while let Some(&c) = chars.peek() {
                    if c == ',' && !quoted {
                        break;
                    }
                    chars.next();
                    match c {
                        '\\' => {
                            let escaped = chars.next().ok_or_else(|| {
                                format!("row value ends in a backslash: {text:?}")
                            })?;
                            buf.push(escaped);
                        }
                        '"' if quoted && chars.peek() == Some(&'"') => {
                            chars.next();
                            buf.push('"');
                        }
                        '"' => quoted = !quoted,
                        c => buf.push(c),
                    }
                }
                if quoted {
                    return Err(format!("unterminated quote in row value {text:?}"));
                }
                Some(buf)
            }
        };
        fields.push(field);
        if chars.next().is_none() {
            break;
        }
    }
    if fields.len() != width {
        return Err(format!(
            "row value {text:?} has {} fields, its table {width} columns",
            fields.len()
        ));
    }
    Ok(fields)
}

/// One column's output text as the value replication carries.
pub(crate) fn to_value(text: Option<&str>, type_oid: u32) -> Result<SqlValue, String> {
    let Some(text) = text else {
        return Ok(SqlValue::Null);
    };
    let bad = || format!("invalid value {text:?} of type oid {type_oid}");
    Ok(match type_oid {
        BOOL => match text {
            "t" => SqlValue::Integer(1),
            "f" => SqlValue::Integer(0),
            _ => return Err(bad()),
        },
        INT2 | INT4 | INT8 | OID => SqlValue::Integer(text.parse().map_err(|_| bad())?),
        FLOAT4 | FLOAT8 => SqlValue::Real(parse_float(text).ok_or_else(bad)?),
        BYTEA => SqlValue::Blob(parse_bytea(text).ok_or_else(bad)?),
        // Printed in the zone of the session that read it (a client's, for captured rows):
        // carried as a SQLite node stores it, in UTC.
        TIMESTAMPTZ => match types::parse_text(PgType::Timestamptz, -1, text) {
            Ok(MyceliumValue::Text(utc)) => SqlValue::Text(utc),
            _ => return Err(bad()),
        },
        _ => SqlValue::Text(text.to_owned()),
    })
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// `bytea` in the hex output format (`bytea_output = hex`, which capture sets).
fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix("\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A real as Postgres's `float8`/`numeric` input reads it back to the same value.
pub(crate) fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f == f64::INFINITY {
        "Infinity".to_owned()
    } else if f == f64::NEG_INFINITY {
        "-Infinity".to_owned()
    } else {
        // Display is the shortest text that parses back to the same bits ("-0" included).
        f.to_string()
    }
}

/// A replicated value bound as a statement parameter: text (or bytea for a blob), cast in
/// the statement to the column's type so that the type's input function reads it.
pub(crate) enum Param {
    Text(Option<String>),
    Bytes(Vec<u8>),
}

impl Param {
    pub fn of(value: &SqlValue) -> Param {
        match value {
            SqlValue::Null => Param::Text(None),
            SqlValue::Integer(i) => Param::Text(Some(i.to_string())),
            SqlValue::Real(f) => Param::Text(Some(float_text(*f))),
            SqlValue::Text(s) => Param::Text(Some(s.clone())),
            SqlValue::Blob(b) => Param::Bytes(b.clone()),
        }
    }

    /// `$n` cast to `column_type` (a `regtype` text).
    pub fn placeholder(&self, n: usize, column_type: &str) -> String {
        match self {
            Param::Text(_) => format!("${n}::text::{column_type}"),
            Param::Bytes(_) => format!("${n}::bytea::{column_type}"),
        }
    }

    pub fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Text(t) => t,
            Param::Bytes(b) => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, width: usize, expected: &[Option<&str>]) {
        let fields = parse_record(text, width).expect(text);
        let expected: Vec<Option<String>> = expected.iter().map(|f| f.map(str::to_owned)).collect();
        assert_eq!(fields, expected, "{text}");
    }

    #[test]
    fn row_values() {
        check("(1,abc,)", 3, &[Some("1"), Some("abc"), None]);
        check("()", 1, &[None]);
        check("()", 0, &[]);
        check("(\"\",\" x \")", 2, &[Some(""), Some(" x ")]);
        check("(\"a\"\"b\",\"c\\\\d\")", 2, &[Some("a\"b"), Some("c\\d")]);
        check(
            "(\"{1,2}\",\"2024-01-02 03:04:05.5+00\")",
            2,
            &[Some("{1,2}"), Some("2024-01-02 03:04:05.5+00")],
        );
        check("(,,)", 3, &[None, None, None]);
        assert!(parse_record("(1,2)", 3).is_err());
        assert!(parse_record("1,2", 2).is_err());
        assert!(parse_record("(\"a)", 1).is_err());
    }

    #[test]
    fn typed_values() {
        assert_eq!(to_value(Some("t"), BOOL), Ok(SqlValue::Integer(1)));
        assert_eq!(to_value(Some("-5"), INT8), Ok(SqlValue::Integer(-5)));
        assert_eq!(
            to_value(Some("\\x00ff"), BYTEA),
            Ok(SqlValue::Blob(vec![0, 255]))
        );
        assert_eq!(
            to_value(Some("1.50"), 1700),
            Ok(SqlValue::Text("1.50".into()))
        );
        assert_eq!(to_value(None, INT4), Ok(SqlValue::Null));
        assert!(to_value(Some("x"), INT4).is_err());
        // Captured in a client's zone, carried in UTC.
        assert_eq!(
            to_value(Some("2024-06-01 10:00:00+02"), TIMESTAMPTZ),
            Ok(SqlValue::Text("2024-06-01 08:00:00+00".into()))
        );
        assert_eq!(
            to_value(Some("1800-01-01 00:00:00+00:53:28"), TIMESTAMPTZ),
            Ok(SqlValue::Text("1799-12-31 23:06:32+00".into()))
        );
        for f in [
            0.1,
            -0.0,
            1e300,
            5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let back = to_value(Some(&float_text(f)), FLOAT8);
            assert_eq!(back, Ok(SqlValue::Real(f)), "{f}");
        }
    }
}
