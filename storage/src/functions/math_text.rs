//! Postgres math and string functions SQLite lacks (its math functions are a compile-time
//! option the bundled build leaves out): `floor`, `ceil`, `sqrt`, `power`, `exp`, `ln`, `log`,
//! `mod`, `div`, `gcd`, `lcm`, `factorial`, `width_bucket`, trigonometry, a boolean's text for
//! `||`, `reverse`, `split_part`, `translate`, `starts_with`, `ascii`, `chr`, `to_hex`,
//! `initcap`, `quote_literal`, `quote_nullable`, `md5`, `bit_length`, `num_nulls`.
//! Domain errors carry Postgres's SQLSTATEs.

use mycelium_protocol::DbError;
use mycelium_protocol::types::PgType;
use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};

use super::{fail, number};

const DET: FunctionFlags = FunctionFlags::SQLITE_UTF8.union(FunctionFlags::SQLITE_DETERMINISTIC);

pub(super) fn register(conn: &Connection) -> rusqlite::Result<()> {
    // Integral results are integers (a numeric's ceil prints as 2, not 2.0); others, beyond
    // i64 or not finite, stay floats.
    for (name, round) in [
        ("floor", f64::floor as fn(f64) -> f64),
        ("ceil", f64::ceil),
        ("ceiling", f64::ceil),
    ] {
        conn.create_scalar_function(name, 1, DET, move |ctx| {
            Ok(match argument(ctx, 0)? {
                None => Value::Null,
                Some(Err(i)) => Value::Integer(i),
                Some(Ok(f)) => {
                    let r = round(f);
                    if r.is_finite() && r.abs() < 9.0e15 {
                        Value::Integer(r as i64)
                    } else {
                        Value::Real(r)
                    }
                }
            })
        })?;
    }
    float_function(conn, "sqrt", |x| {
        if x < 0.0 {
            return Err(DbError::new(
                "2201F",
                "cannot take square root of a negative number",
            ));
        }
        Ok(x.sqrt())
    })?;
    float_function(conn, "cbrt", |x| Ok(x.cbrt()))?;
    float_function(conn, "exp", |x| Ok(x.exp()))?;
    float_function(conn, "ln", |x| logarithm(x, f64::ln))?;
    float_function(conn, "log", |x| logarithm(x, f64::log10))?;
    float_function(conn, "log10", |x| logarithm(x, f64::log10))?;
    float_function(conn, "degrees", |x| Ok(x.to_degrees()))?;
    float_function(conn, "radians", |x| Ok(x.to_radians()))?;
    for (name, f) in [
        ("sin", f64::sin as fn(f64) -> f64),
        ("cos", f64::cos),
        ("tan", f64::tan),
        ("asin", f64::asin),
        ("acos", f64::acos),
        ("atan", f64::atan),
    ] {
        float_function(conn, name, move |x| Ok(f(x)))?;
    }
    conn.create_scalar_function("atan2", 2, DET, |ctx| {
        match (argument(ctx, 0)?, argument(ctx, 1)?) {
            (Some(y), Some(x)) => Ok(Some(float(y).atan2(float(x)))),
            _ => Ok(None),
        }
    })?;
    conn.create_scalar_function("log", 2, DET, |ctx| {
        match (argument(ctx, 0)?, argument(ctx, 1)?) {
            (Some(base), Some(x)) => {
                let (base, x) = (float(base), float(x));
                if base <= 0.0 || x <= 0.0 {
                    return Err(fail(DbError::new(
                        "2201E",
                        "cannot take logarithm of a negative number",
                    )));
                }
                if base == 1.0 {
                    return Err(fail(DbError::new("22012", "division by zero")));
                }
                Ok(Some(x.ln() / base.ln()))
            }
            _ => Ok(None),
        }
    })?;
    conn.create_scalar_function("pow", 2, DET, |ctx| {
        match (argument(ctx, 0)?, argument(ctx, 1)?) {
            (Some(x), Some(y)) => {
                let (x, y) = (float(x), float(y));
                if x == 0.0 && y < 0.0 {
                    return Err(fail(DbError::new(
                        "2201F",
                        "zero raised to a negative power is undefined",
                    )));
                }
                Ok(Some(x.powf(y)))
            }
            _ => Ok(None),
        }
    })?;
    conn.create_scalar_function("pi", 0, DET, |_| Ok(std::f64::consts::PI))?;
    conn.create_scalar_function("pg_size_pretty", 1, DET, |ctx| {
        Ok(ctx.get::<Option<i64>>(0)?.map(size_pretty))
    })?;
    conn.create_scalar_function("mod", 2, DET, |ctx| {
        match (argument(ctx, 0)?, argument(ctx, 1)?) {
            (Some(Err(x)), Some(Err(y))) => {
                if y == 0 {
                    return Err(fail(DbError::new("22012", "division by zero")));
                }
                Ok(Value::Integer(x.checked_rem(y).unwrap_or(0)))
            }
            (Some(x), Some(y)) => {
                let (x, y) = (float(x), float(y));
                if y == 0.0 {
                    return Err(fail(DbError::new("22012", "division by zero")));
                }
                Ok(Value::Real(x % y))
            }
            _ => Ok(Value::Null),
        }
    })?;

    // Integer +, - and * checked against the result type's range (22003), as Postgres's
    // int2/int4/int8 operators are; SQLite would widen an overflow to a real.
    conn.create_scalar_function("__pg_int_arith", 4, DET, |ctx| {
        let op: i64 = ctx.get(2)?;
        let ty = PgType::from_oid(ctx.get(3)?).unwrap_or(PgType::Int8);
        let (a, b) = match (ctx.get_raw(0), ctx.get_raw(1)) {
            (ValueRef::Null, _) | (_, ValueRef::Null) => return Ok(None),
            (ValueRef::Integer(a), ValueRef::Integer(b)) => (a, b),
            (a, b) => {
                let number = |v: ValueRef<'_>| -> Option<f64> {
                    match v {
                        ValueRef::Integer(i) => Some(i as f64),
                        ValueRef::Real(f) => Some(f),
                        ValueRef::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
                        _ => None,
                    }
                };
                let (Some(x), Some(y)) = (number(a), number(b)) else {
                    return Err(fail(DbError::new(
                        "22P02",
                        "invalid input syntax for type bigint",
                    )));
                };
                let r = match op {
                    0 => x + y,
                    1 => x - y,
                    _ => x * y,
                };
                if r.fract() != 0.0 || !(-9.2e18..=9.2e18).contains(&r) {
                    return Err(fail(out_of_range(ty)));
                }
                return int_in_range(r as i64, ty).map(Some).map_err(fail);
            }
        };
        let r = match op {
            0 => a.checked_add(b),
            1 => a.checked_sub(b),
            _ => a.checked_mul(b),
        };
        match r {
            Some(r) => int_in_range(r, ty).map(Some).map_err(fail),
            None => Err(fail(out_of_range(ty))),
        }
    })?;
    // A boolean as its output function prints it (`t`, `f`: what concat() shows), and as a
    // cast to text or `||` spells it (`true`, `false`).
    for (name, spelling) in [
        ("__pg_bool_out", ["t", "f"]),
        ("__pg_bool_text", ["true", "false"]),
    ] {
        conn.create_scalar_function(name, 1, DET, move |ctx| {
            let truth = match ctx.get_raw(0) {
                ValueRef::Null => return Ok(None),
                ValueRef::Integer(i) => i != 0,
                ValueRef::Real(f) => f != 0.0,
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    matches!(t, b"t" | b"true" | b"1" | b"TRUE" | b"y" | b"yes" | b"on")
                }
            };
            Ok(Some(if truth { spelling[0] } else { spelling[1] }))
        })?;
    }
    text_function(conn, "reverse", |s| s.chars().rev().collect())?;
    text_function(conn, "initcap", initcap)?;
    text_function(conn, "quote_literal", quote_literal)?;
    // Not strict: a NULL becomes the word NULL, for building statements.
    conn.create_scalar_function("quote_nullable", 1, DET, |ctx| {
        Ok(text(ctx, 0)?.map_or_else(|| "NULL".to_owned(), |s| quote_literal(&s)))
    })?;
    text_function(conn, "__pg_md5", |s| {
        format!("{:x}", md5::compute(s.as_bytes()))
    })?;
    conn.create_scalar_function("ascii", 1, DET, |ctx| {
        Ok(text(ctx, 0)?.map(|s| s.chars().next().map_or(0, |c| i64::from(u32::from(c)))))
    })?;
    conn.create_scalar_function("chr", 1, DET, |ctx| {
        let Some(code) = argument(ctx, 0)? else {
            return Ok(None);
        };
        let code = match code {
            Err(i) => i,
            Ok(f) => f as i64,
        };
        match u32::try_from(code).ok().and_then(char::from_u32) {
            Some(c) if code != 0 => Ok(Some(c.to_string())),
            _ => Err(fail(DbError::new(
                "54000",
                format!("requested character too large for encoding: {code}"),
            ))),
        }
    })?;
    conn.create_scalar_function("translate", 3, DET, |ctx| {
        let (Some(s), Some(from), Some(to)) = (text(ctx, 0)?, text(ctx, 1)?, text(ctx, 2)?) else {
            return Ok(None);
        };
        Ok(Some(translate(&s, &from, &to)))
    })?;
    conn.create_scalar_function("starts_with", 2, DET, |ctx| {
        let (Some(s), Some(prefix)) = (text(ctx, 0)?, text(ctx, 1)?) else {
            return Ok(None);
        };
        Ok(Some(s.starts_with(prefix.as_str())))
    })?;
    conn.create_scalar_function("bit_length", 1, DET, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Null => None,
            ValueRef::Text(t) | ValueRef::Blob(t) => Some(8 * t.len() as i64),
            ValueRef::Integer(i) => Some(8 * i.to_string().len() as i64),
            ValueRef::Real(f) => Some(8 * f.to_string().len() as i64),
        })
    })?;
    // Variadic, and not strict: they exist to count the NULLs among their arguments.
    for (name, want_null) in [("num_nulls", true), ("num_nonnulls", false)] {
        conn.create_scalar_function(name, -1, DET, move |ctx| {
            Ok((0..ctx.len())
                .filter(|&i| (ctx.get_raw(i) == ValueRef::Null) == want_null)
                .count() as i64)
        })?;
    }
    conn.create_scalar_function("div", 2, DET, |ctx| {
        let (Some(a), Some(b)) = (argument(ctx, 0)?, argument(ctx, 1)?) else {
            return Ok(None);
        };
        match (a, b) {
            (_, Err(0) | Ok(0.0)) => Err(fail(DbError::new("22012", "division by zero"))),
            (Err(a), Err(b)) => Ok(Some(Value::Integer(a.wrapping_div(b)))),
            (a, b) => {
                let q = (float(a) / float(b)).trunc();
                Ok(Some(if q.abs() < 9.0e15 {
                    Value::Integer(q as i64)
                } else {
                    Value::Real(q)
                }))
            }
        }
    })?;
    for (name, lcm) in [("gcd", false), ("lcm", true)] {
        conn.create_scalar_function(name, 2, DET, move |ctx| {
            let (Some(a), Some(b)) = (argument(ctx, 0)?, argument(ctx, 1)?) else {
                return Ok(None);
            };
            let (Err(a), Err(b)) = (a, b) else {
                return Err(fail(crate::errors::unsupported(format!(
                    "{name}() of non-integer numerics"
                ))));
            };
            gcd_lcm(a, b, lcm).map(Some).map_err(fail)
        })?;
    }
    conn.create_scalar_function("factorial", 1, DET, |ctx| {
        let Some(n) = argument(ctx, 0)? else {
            return Ok(None);
        };
        factorial(float(n)).map(Some).map_err(fail)
    })?;
    conn.create_scalar_function("to_hex", 1, DET, |ctx| {
        Ok(integer(ctx, 0)?.map(|i| format!("{:x}", i)))
    })?;
    // An int4's negative value prints as its 32-bit two's complement.
    conn.create_scalar_function("__pg_to_hex32", 1, DET, |ctx| {
        Ok(integer(ctx, 0)?.map(|i| format!("{:x}", i as i32)))
    })?;
    conn.create_scalar_function("width_bucket", 4, DET, |ctx| {
        let (Some(operand), Some(low), Some(high), Some(count)) = (
            argument(ctx, 0)?,
            argument(ctx, 1)?,
            argument(ctx, 2)?,
            integer(ctx, 3)?,
        ) else {
            return Ok(None);
        };
        width_bucket(float(operand), float(low), float(high), count)
            .map(Some)
            .map_err(fail)
    })?;
    // `a # b` on integers (SQLite has no exclusive or).
    conn.create_scalar_function("__pg_xor", 2, DET, |ctx| {
        let (Some(a), Some(b)) = (integer(ctx, 0)?, integer(ctx, 1)?) else {
            return Ok(None);
        };
        Ok(Some(a ^ b))
    })?;
    // overlay(s placing r from n [for m]): s's first n - 1 characters, r, then s from
    // character n + m on (m defaults to r's length).
    conn.create_scalar_function("__pg_overlay", 4, DET, |ctx| {
        let (Some(s), Some(r), Some(from)) = (text(ctx, 0)?, text(ctx, 1)?, integer(ctx, 2)?)
        else {
            return Ok(None);
        };
        let count = match ctx.get_raw(3) {
            ValueRef::Null => r.chars().count() as i64,
            _ => match integer(ctx, 3)? {
                Some(count) => count,
                None => return Ok(None),
            },
        };
        if from < 1 {
            return Err(fail(DbError::new(
                "22011",
                "negative substring length not allowed",
            )));
        }
        let head: String = s
            .chars()
            .take(usize::try_from(from - 1).unwrap_or(0))
            .collect();
        let skip = usize::try_from(from.saturating_add(count) - 1).unwrap_or(0);
        let tail: String = s.chars().skip(skip).collect();
        Ok(Some(format!("{head}{r}{tail}")))
    })?;
    conn.create_scalar_function("split_part", 3, DET, |ctx| {
        let (Some(s), Some(delimiter), Some(Err(n))) =
            (text(ctx, 0)?, text(ctx, 1)?, argument(ctx, 2)?)
        else {
            return Ok(None);
        };
        if n == 0 {
            return Err(fail(DbError::new(
                "22023",
                "field position must not be zero",
            )));
        }
        if delimiter.is_empty() {
            return Ok(Some(if n == 1 || n == -1 { s } else { String::new() }));
        }
        let parts: Vec<&str> = s.split(delimiter.as_str()).collect();
        let index = if n > 0 {
            usize::try_from(n - 1).ok()
        } else {
            usize::try_from(-n)
                .ok()
                .and_then(|k| parts.len().checked_sub(k))
        };
        Ok(Some(
            index
                .and_then(|i| parts.get(i))
                .map_or(String::new(), |p| (*p).to_owned()),
        ))
    })?;
    Ok(())
}

/// An integer argument (a whole float too, as Postgres casts it); `None` for NULL.
fn integer(ctx: &Context<'_>, n: usize) -> rusqlite::Result<Option<i64>> {
    Ok(match argument(ctx, n)? {
        None => None,
        Some(Err(i)) => Some(i),
        Some(Ok(f)) if f.is_finite() && f.abs() < 9.2e18 => Some(f.round() as i64),
        Some(Ok(_)) => return Err(fail(DbError::new("22003", "bigint out of range"))),
    })
}

/// Postgres's `quote_literal`: an `E''` string when backslashes need doubling.
pub(super) fn quote_literal(s: &str) -> String {
    let quoted = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// Postgres's `translate`: each character of `from` becomes the character at the same place
/// in `to`, or is deleted when `to` is shorter; the first occurrence in `from` wins.
fn translate(s: &str, from: &str, to: &str) -> String {
    let from: Vec<char> = from.chars().collect();
    let to: Vec<char> = to.chars().collect();
    s.chars()
        .filter_map(|c| match from.iter().position(|&f| f == c) {
            Some(i) => to.get(i).copied(),
            None => Some(c),
        })
        .collect()
}

fn gcd_lcm(a: i64, b: i64, lcm: bool) -> Result<i64, DbError> {
    let overflow = || DbError::new("22003", "bigint out of range");
    let (mut x, mut y) = (a.unsigned_abs(), b.unsigned_abs());
    while y != 0 {
        (x, y) = (y, x % y);
    }
    let gcd = x;
    if !lcm {
        return i64::try_from(gcd).map_err(|_| overflow());
    }
    if gcd == 0 {
        return Ok(0);
    }
    (a.unsigned_abs() / gcd)
        .checked_mul(b.unsigned_abs())
        .and_then(|m| i64::try_from(m).ok())
        .ok_or_else(overflow)
}

/// `n!` exactly, as Postgres's numeric result: digits in base 10^9, least significant first.
fn factorial(n: f64) -> Result<String, DbError> {
    if n < 0.0 {
        return Err(DbError::new(
            "22003",
            "factorial of a negative number is undefined",
        ));
    }
    if n > 32177.0 {
        return Err(DbError::new("22003", "value overflows numeric format"));
    }
    const BASE: u64 = 1_000_000_000;
    let mut limbs: Vec<u64> = vec![1];
    for k in 2..=(n as u64) {
        let mut carry = 0;
        for limb in &mut limbs {
            let product = *limb * k + carry;
            *limb = product % BASE;
            carry = product / BASE;
        }
        while carry > 0 {
            limbs.push(carry % BASE);
            carry /= BASE;
        }
    }
    let mut out = String::new();
    for (i, limb) in limbs.iter().rev().enumerate() {
        if i == 0 {
            out.push_str(&limb.to_string());
        } else {
            out.push_str(&format!("{limb:09}"));
        }
    }
    Ok(out)
}

/// Postgres's `width_bucket(operand, low, high, count)`: which of `count` equal buckets
/// between the bounds holds the operand, 0 below them and `count + 1` above.
fn width_bucket(operand: f64, low: f64, high: f64, count: i64) -> Result<i64, DbError> {
    if count <= 0 {
        return Err(DbError::new("2201G", "count must be greater than zero"));
    }
    if low == high {
        return Err(DbError::new(
            "2201G",
            "lower bound cannot equal upper bound",
        ));
    }
    if operand.is_nan() || low.is_nan() || high.is_nan() {
        return Err(DbError::new(
            "2201G",
            "operand, lower bound, and upper bound cannot be NaN",
        ));
    }
    let bucket = |offset: f64, span: f64| ((offset / span) * count as f64).floor() as i64 + 1;
    Ok(if low < high {
        if operand < low {
            0
        } else if operand >= high {
            count + 1
        } else {
            bucket(operand - low, high - low)
        }
    } else if operand > low {
        0
    } else if operand <= high {
        count + 1
    } else {
        bucket(low - operand, low - high)
    })
}

/// A number argument: `Err` for an integer, `Ok` for any other number; `None` for NULL.
fn argument(ctx: &Context<'_>, n: usize) -> rusqlite::Result<Option<Result<f64, i64>>> {
    let value = ctx.get_raw(n);
    if value == ValueRef::Null {
        return Ok(None);
    }
    number(value).map(Some).ok_or_else(|| {
        fail(DbError::new(
            "22P02",
            "invalid input syntax for type double precision",
        ))
    })
}

fn float(n: Result<f64, i64>) -> f64 {
    n.unwrap_or_else(|i| i as f64)
}

fn text(ctx: &Context<'_>, n: usize) -> rusqlite::Result<Option<String>> {
    Ok(match ctx.get_raw(n) {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
    })
}

fn float_function(
    conn: &Connection,
    name: &str,
    f: impl Fn(f64) -> Result<f64, DbError> + Send + 'static,
) -> rusqlite::Result<()> {
    conn.create_scalar_function(name, 1, DET, move |ctx| match argument(ctx, 0)? {
        None => Ok(None),
        Some(x) => f(float(x)).map(Some).map_err(fail),
    })
}

fn text_function(
    conn: &Connection,
    name: &str,
    f: impl Fn(&str) -> String + Send + 'static,
) -> rusqlite::Result<()> {
    conn.create_scalar_function(name, 1, DET, move |ctx| Ok(text(ctx, 0)?.map(|s| f(&s))))
}

fn logarithm(x: f64, log: fn(f64) -> f64) -> Result<f64, DbError> {
    if x == 0.0 {
        Err(DbError::new("2201E", "cannot take logarithm of zero"))
    } else if x < 0.0 {
        Err(DbError::new(
            "2201E",
            "cannot take logarithm of a negative number",
        ))
    } else {
        Ok(log(x))
    }
}

/// Postgres's initcap: the first letter of every run of letters and digits upper-cased, the
/// rest lower-cased.
fn initcap(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_word = false;
    for c in s.chars() {
        if c.is_alphanumeric() {
            if in_word {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            in_word = true;
        } else {
            out.push(c);
            in_word = false;
        }
    }
    out
}

/// `pg_size_pretty(bigint)` as Postgres 15 prints it: bytes below 10 kB, then the largest
/// unit keeping the number under 20,480, rounded half away from zero.
fn size_pretty(size: i64) -> String {
    const LIMIT: i64 = 10 * 1024;
    if size.abs() < LIMIT {
        return format!("{size} bytes");
    }
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    // One extra bit kept for rounding.
    let mut halves = size / (1 << 9);
    for unit in ["kB", "MB", "GB", "TB"] {
        if halves.abs() < LIMIT * 2 - 1 {
            return format!("{} {unit}", half_rounded(halves));
        }
        halves /= 1 << 10;
    }
    format!("{} PB", half_rounded(halves))
}

fn out_of_range(ty: PgType) -> DbError {
    let name = match ty {
        PgType::Int2 => "smallint",
        PgType::Int4 => "integer",
        _ => "bigint",
    };
    DbError::new("22003", format!("{name} out of range"))
}

fn int_in_range(value: i64, ty: PgType) -> Result<i64, DbError> {
    let fits = match ty {
        PgType::Int2 => i16::try_from(value).is_ok(),
        PgType::Int4 => i32::try_from(value).is_ok(),
        _ => true,
    };
    if fits {
        Ok(value)
    } else {
        Err(out_of_range(ty))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_print_as_postgres_prints_them() {
        for (size, want) in [
            (0, "0 bytes"),
            (10_239, "10239 bytes"),
            (10_240, "10 kB"),
            (180_224, "176 kB"),
            (20_971_520, "20 MB"),
            (-10_240, "-10 kB"),
            (1_099_511_627_776, "1024 GB"),
            (i64::MAX, "8192 PB"),
        ] {
            assert_eq!(super::size_pretty(size), want, "{size}");
        }
    }

    use super::initcap;

    #[test]
    fn initcap_follows_postgres() {
        assert_eq!(initcap("hello wORLD-foo 2nd"), "Hello World-Foo 2nd");
    }
}
