//! Casts of merged values (`sum(x)::int`, inside the expressions of `expr`), as PostgreSQL's cast
//! functions convert: numeric to integer rounds half away from zero, floating point to integer
//! rounds half to even, out of range is 22003; and the decimal text merged numerics are kept as.

use std::cmp::Ordering;

use bytes::BytesMut;
use mycelium_protocol::types::{self, PgType, SqlValue};

use crate::error::{ProxyError, sql_error};

/// A type with its modifier, as a column is described.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Typed {
    pub ty: PgType,
    pub typmod: i32,
}

impl Typed {
    pub(super) fn plain(ty: PgType) -> Typed {
        Typed { ty, typmod: -1 }
    }
}

/// How values of a type convert: the categories Postgres's casts treat alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Integer,
    Numeric,
    Float,
    Textual,
    Bool,
    /// Types whose only cast here is to text, as they print.
    Printed,
}

fn family(ty: PgType) -> Option<Family> {
    Some(match ty {
        PgType::Int2 | PgType::Int4 | PgType::Int8 => Family::Integer,
        PgType::Numeric => Family::Numeric,
        PgType::Float4 | PgType::Float8 => Family::Float,
        PgType::Text | PgType::Varchar | PgType::Bpchar | PgType::Name => Family::Textual,
        PgType::Bool => Family::Bool,
        PgType::Date
        | PgType::Time
        | PgType::Timestamp
        | PgType::Timestamptz
        | PgType::Uuid
        | PgType::Json
        | PgType::Jsonb
        | PgType::Bytea => Family::Printed,
        PgType::Char | PgType::Oid | PgType::Unknown => return None,
    })
}

/// The type a cast names, when the proxy can cast a value of type `from` to it.
pub(super) fn cast_target(from: Typed, name: &str) -> Result<Typed, ProxyError> {
    let to = match PgType::parse_sql_name(name) {
        Some((
            ty @ (PgType::Int2
            | PgType::Int4
            | PgType::Int8
            | PgType::Numeric
            | PgType::Float4
            | PgType::Float8
            | PgType::Text),
            typmod,
        )) => Typed { ty, typmod },
        _ => return Err(not_castable(from.ty.name(), name)),
    };
    // Postgres casts numbers and strings to all of these, booleans to integer and text only,
    // dates, uuids, json and bytea to text only.
    let castable = match family(from.ty) {
        Some(Family::Integer | Family::Numeric | Family::Float | Family::Textual) => true,
        Some(Family::Bool) => matches!(to.ty, PgType::Int4 | PgType::Text),
        Some(Family::Printed) => to.ty == PgType::Text,
        None => false,
    };
    if castable {
        Ok(to)
    } else {
        Err(not_castable(from.ty.name(), name))
    }
}

fn not_castable(from: &str, to: &str) -> ProxyError {
    sql_error(
        "0A000",
        format!(
            "casting an aggregate of type {from} to {to} over rows on several nodes is not \
             supported yet; cast to an integer, numeric, floating-point or text type, or filter \
             on the shard key so the query runs on one node"
        ),
    )
}

/// Converts a non-NULL value of type `from` to type `to`, as Postgres's cast does (the pair was
/// checked by [`cast_target`]).
pub(super) fn cast_value(value: &SqlValue, from: Typed, to: Typed) -> Result<SqlValue, ProxyError> {
    if from == to {
        return Ok(value.clone());
    }
    match to.ty {
        PgType::Int2 | PgType::Int4 | PgType::Int8 => to_integer(value, from, to.ty),
        PgType::Float4 | PgType::Float8 => to_float(value, from, to.ty),
        PgType::Numeric => to_numeric(value, from, to.typmod),
        _ => Ok(SqlValue::Text(text_of(value, from)?)),
    }
}

/// The value as Postgres's text output (and so `::text`) writes it.
fn text_of(value: &SqlValue, from: Typed) -> Result<String, ProxyError> {
    match (family(from.ty), value) {
        // Stored as the text itself (`character(n)` without its padding, as `::text` drops it).
        (Some(Family::Textual), SqlValue::Text(text)) => return Ok(text.clone()),
        (Some(Family::Bool), SqlValue::Int(i)) => {
            return Ok(if *i != 0 { "true" } else { "false" }.to_owned());
        }
        _ => {}
    }
    let mut out = BytesMut::new();
    types::encode_text(from.ty, from.typmod, value.as_ref(), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn integer_name(ty: PgType) -> &'static str {
    match ty {
        PgType::Int2 => "smallint",
        PgType::Int4 => "integer",
        _ => "bigint",
    }
}

pub(super) fn out_of_range(ty: PgType) -> ProxyError {
    sql_error("22003", format!("{} out of range", integer_name(ty)))
}

/// `int4(numeric)`, `int4(float8)` and their kin.
fn to_integer(value: &SqlValue, from: Typed, to: PgType) -> Result<SqlValue, ProxyError> {
    let (min, max) = match to {
        PgType::Int2 => (i128::from(i16::MIN), i128::from(i16::MAX)),
        PgType::Int4 => (i128::from(i32::MIN), i128::from(i32::MAX)),
        _ => (i128::from(i64::MIN), i128::from(i64::MAX)),
    };
    let whole = match family(from.ty) {
        Some(Family::Float) => {
            let f = float_of(value, from)?;
            // rint, then the range check Postgres makes on the double (NaN fails it).
            let rounded = f.round_ties_even();
            let fits = rounded >= min as f64 && rounded < -(min as f64);
            if !fits {
                return Err(out_of_range(to));
            }
            rounded as i128
        }
        // `int4('12')` reads the text as an integer (`12.5` is invalid input).
        Some(Family::Textual) => return Ok(types::parse_text(to, -1, &text_of(value, from)?)?),
        // Integers, booleans, and numerics as their exact decimal text.
        _ => {
            let numeric = Typed {
                ty: PgType::Numeric,
                typmod: if from.ty == PgType::Numeric {
                    from.typmod
                } else {
                    -1
                },
            };
            let text = match value {
                SqlValue::Int(i) => i.to_string(),
                _ => text_of(value, numeric)?,
            };
            round_decimal(&text, to)?
        }
    };
    if (min..=max).contains(&whole) {
        Ok(SqlValue::Int(whole as i64))
    } else {
        Err(out_of_range(to))
    }
}

/// A decimal rounded half away from zero, as `numeric` to integer rounds.
fn round_decimal(text: &str, to: PgType) -> Result<i128, ProxyError> {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    if lower == "nan" {
        return Err(sql_error(
            "0A000",
            format!("cannot convert NaN to {}", integer_name(to)),
        ));
    }
    if lower.trim_start_matches(['+', '-']).starts_with("inf") {
        return Err(sql_error(
            "0A000",
            format!("cannot convert infinity to {}", integer_name(to)),
        ));
    }
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let int = int.trim_start_matches('0');
    let bad = || sql_error("22P02", format!("invalid numeric value \"{text}\""));
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // More digits than any bigint has.
    if int.len() > 20 {
        return Err(out_of_range(to));
    }
    let mut magnitude: i128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    if frac.as_bytes().first().is_some_and(|d| *d >= b'5') {
        magnitude += 1;
    }
    Ok(if negative { -magnitude } else { magnitude })
}

/// The double a value of a numeric type stands for; a `real` as its single-precision value.
fn float_of(value: &SqlValue, from: Typed) -> Result<f64, ProxyError> {
    let f = match value {
        SqlValue::Float(f) => *f,
        SqlValue::Int(i) => *i as f64,
        _ => match types::parse_text(PgType::Float8, -1, &text_of(value, from)?)? {
            SqlValue::Float(f) => f,
            SqlValue::Int(i) => i as f64,
            _ => f64::NAN,
        },
    };
    Ok(if from.ty == PgType::Float4 {
        f64::from(f as f32)
    } else {
        f
    })
}

/// `float8(int8)`, `float4(float8)`, `float8(numeric)` and their kin.
fn to_float(value: &SqlValue, from: Typed, to: PgType) -> Result<SqlValue, ProxyError> {
    let wide = match (family(from.ty), value) {
        // Straight from the integer: one rounding, as C's conversion.
        (Some(Family::Integer), SqlValue::Int(i)) if to == PgType::Float4 => {
            return Ok(SqlValue::Float(f64::from(*i as f32)));
        }
        (Some(Family::Integer), SqlValue::Int(i)) => *i as f64,
        (Some(Family::Float), _) => float_of(value, from)?,
        // Numerics and strings are read as `float4in`/`float8in` read their text.
        _ => return Ok(types::parse_text(to, -1, &text_of(value, from)?)?),
    };
    if to == PgType::Float8 {
        return Ok(SqlValue::Float(wide));
    }
    let narrow = wide as f32;
    if narrow.is_infinite() && !wide.is_infinite() {
        return Err(sql_error("22003", "value out of range: overflow"));
    }
    if narrow == 0.0 && wide != 0.0 {
        return Err(sql_error("22003", "value out of range: underflow"));
    }
    Ok(SqlValue::Float(f64::from(narrow)))
}

/// `numeric(int8)`, `numeric(float8)` and their kin, with the target's precision and scale
/// checked (22003 `numeric field overflow`). Kept as exact decimal text, which the codec prints
/// as is or rounds to the typmod's scale.
fn to_numeric(value: &SqlValue, from: Typed, typmod: i32) -> Result<SqlValue, ProxyError> {
    let text = match family(from.ty) {
        // `float8_numeric` prints the double with 15 significant digits (`real`: 6) and reads
        // that: 0.30000000000000004 becomes 0.3.
        Some(Family::Float) => {
            let digits = if from.ty == PgType::Float4 { 6 } else { 15 };
            float_decimal(float_of(value, from)?, digits)
        }
        _ => {
            let written = text_of(value, from)?;
            decimal_text(written.trim()).unwrap_or(written)
        }
    };
    // Checks the syntax, the precision and the scale as `numeric_in` does.
    types::parse_text(PgType::Numeric, typmod, &text)?;
    // Rounded to the scale now, so that ORDER BY sees the values the client does.
    let rounded = text_of(
        &SqlValue::Text(text),
        Typed {
            ty: PgType::Numeric,
            typmod,
        },
    )?;
    Ok(SqlValue::Text(rounded))
}

/// `%.{digits}g` of a double, as the decimal `numeric_in` makes of it.
fn float_decimal(f: f64, digits: usize) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-Infinity" } else { "Infinity" }.to_owned();
    }
    let scientific = format!("{:.*e}", digits.saturating_sub(1), f);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    // %g drops trailing zeros, so they do not count in the numeric's scale.
    let mantissa = if mantissa.contains('.') {
        mantissa.trim_end_matches('0').trim_end_matches('.')
    } else {
        mantissa
    };
    decimal_text(&format!("{mantissa}e{exponent}")).unwrap_or_else(|| f.to_string())
}

/// A decimal literal (`[+-]digits[.digits][e[+-]digits]`) as `numeric_out` prints it: no
/// exponent, no leading zeros, as many decimals as the literal has beyond its exponent, no sign
/// on zero. `None` for anything else.
pub(super) fn decimal_text(literal: &str) -> Option<String> {
    let (negative, unsigned) = match literal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, literal.strip_prefix('+').unwrap_or(literal)),
    };
    let (number, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((number, exponent)) => (number, exponent.parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    // Postgres's own limit on a numeric's weight and scale is far below this.
    if exponent.abs() > 200_000 {
        return None;
    }
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    // Digits before the point once the exponent is applied.
    let point = int.len() as i64 + exponent;
    let scale = (frac.len() as i64 - exponent).max(0) as usize;
    let (whole, fraction) = if point <= 0 {
        (
            String::new(),
            format!("{}{digits}", "0".repeat(point.unsigned_abs() as usize)),
        )
    } else if point as usize >= digits.len() {
        let zeros = "0".repeat(point as usize - digits.len());
        (format!("{digits}{zeros}"), String::new())
    } else {
        let (whole, fraction) = digits.split_at(point as usize);
        (whole.to_owned(), fraction.to_owned())
    };
    let whole = match whole.trim_start_matches('0') {
        "" => "0",
        trimmed => trimmed,
    };
    // `fraction` has exactly `scale` digits unless the exponent moved the point past them all.
    let fraction = format!("{fraction:0<scale$}");
    let zero = whole == "0" && fraction.bytes().all(|b| b == b'0');
    let sign = if negative && !zero { "-" } else { "" };
    Some(if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    })
}

/// Orders two values of a `numeric` column (integers, doubles or exact decimal text) by their
/// value, NaN last, as Postgres orders numerics; text that is not a number compares as text.
pub(super) fn compare_numeric(a: &SqlValue, b: &SqlValue) -> Ordering {
    match (Decimal::of(a), Decimal::of(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => match (a, b) {
            (SqlValue::Text(x), SqlValue::Text(y)) => x.cmp(y),
            _ => format!("{a:?}").cmp(&format!("{b:?}")),
        },
    }
}

/// A numeric value as a key equal for equal numbers (`2`, `2.00`).
pub(super) fn numeric_key(value: &SqlValue) -> String {
    match Decimal::of(value) {
        Some(decimal) => format!("{decimal:?}"),
        None => format!("{value:?}"),
    }
}

/// A numeric value in a form that orders as numbers do.
#[derive(Debug, PartialEq, Eq)]
enum Decimal {
    NegativeInfinity,
    Finite {
        negative: bool,
        /// Digits before the point without leading zeros, after it without trailing zeros.
        int: String,
        frac: String,
    },
    Infinity,
    NaN,
}

impl Decimal {
    fn of(value: &SqlValue) -> Option<Decimal> {
        let text = match value {
            SqlValue::Int(i) => i.to_string(),
            SqlValue::Float(f) if f.is_nan() => return Some(Decimal::NaN),
            SqlValue::Float(f) if f.is_infinite() => {
                return Some(if *f < 0.0 {
                    Decimal::NegativeInfinity
                } else {
                    Decimal::Infinity
                });
            }
            // Display prints a double's shortest exact digits, never with an exponent.
            SqlValue::Float(f) => f.to_string(),
            SqlValue::Text(t) => t.trim().to_owned(),
            SqlValue::Null | SqlValue::Bytes(_) => return None,
        };
        match text.to_ascii_lowercase().as_str() {
            "nan" => return Some(Decimal::NaN),
            "infinity" | "+infinity" | "inf" => return Some(Decimal::Infinity),
            "-infinity" | "-inf" => return Some(Decimal::NegativeInfinity),
            _ => {}
        }
        let plain = decimal_text(&text)?;
        let (negative, unsigned) = match plain.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, plain.as_str()),
        };
        let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        Some(Decimal::Finite {
            negative,
            int: int.trim_start_matches('0').to_owned(),
            frac: frac.trim_end_matches('0').to_owned(),
        })
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        let rank = |d: &Decimal| match d {
            Decimal::NegativeInfinity => 0,
            Decimal::Finite { .. } => 1,
            Decimal::Infinity => 2,
            Decimal::NaN => 3,
        };
        match (self, other) {
            (
                Decimal::Finite {
                    negative: a_negative,
                    int: a_int,
                    frac: a_frac,
                },
                Decimal::Finite {
                    negative: b_negative,
                    int: b_int,
                    frac: b_frac,
                },
            ) => {
                // decimal_text gives zero no sign, so a sign decides alone.
                if a_negative != b_negative {
                    return if *a_negative {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    };
                }
                let magnitude = a_int
                    .len()
                    .cmp(&b_int.len())
                    .then_with(|| a_int.cmp(b_int))
                    .then_with(|| a_frac.cmp(b_frac));
                if *a_negative {
                    magnitude.reverse()
                } else {
                    magnitude
                }
            }
            _ => rank(self).cmp(&rank(other)),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
