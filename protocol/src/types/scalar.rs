//! `boolean`, the integer types, `oid`, `real` and `double precision`.

use bytes::{BufMut, BytesMut};

use super::{
    PgType, SqlValue, SqlValueRef, bad_stored, invalid_binary, invalid_syntax, is_pg_space,
    trim_pg, utf8,
};
use crate::DbError;

// ---------------------------------------------------------------------------------------------
// boolean

pub(super) fn parse_bool(text: &str) -> Result<SqlValue, DbError> {
    parse_bool_value(text)
        .map(|b| SqlValue::Int(i64::from(b)))
        .ok_or_else(|| invalid_syntax("boolean", text))
}

/// `boolin`: any unambiguous prefix of true/false/yes/no, on/off, or 1/0.
fn parse_bool_value(text: &str) -> Option<bool> {
    let t = trim_pg(text).to_ascii_lowercase();
    let prefix_of = |word: &str, min: usize| t.len() >= min && word.starts_with(t.as_str());
    if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || t == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || t == "0" {
        Some(false)
    } else {
        None
    }
}

fn stored_bool(value: SqlValueRef<'_>) -> Option<bool> {
    match value {
        SqlValueRef::Int(v) => Some(v != 0),
        SqlValueRef::Float(v) => Some(v != 0.0),
        SqlValueRef::Text(s) => parse_bool_value(s),
        SqlValueRef::Null | SqlValueRef::Bytes(_) => None,
    }
}

pub(super) fn bool_text(value: SqlValueRef<'_>, out: &mut BytesMut) -> Result<(), DbError> {
    match (stored_bool(value), value) {
        (Some(b), _) => out.put_slice(if b { b"t" } else { b"f" }),
        (None, SqlValueRef::Text(s)) => out.put_slice(s.as_bytes()),
        (None, _) => return Err(bad_stored(PgType::Bool, value)),
    }
    Ok(())
}

pub(super) fn bool_binary(value: SqlValueRef<'_>, out: &mut BytesMut) -> Result<(), DbError> {
    let b = stored_bool(value).ok_or_else(|| bad_stored(PgType::Bool, value))?;
    out.put_u8(u8::from(b));
    Ok(())
}

pub(super) fn bool_recv(bytes: &[u8]) -> Result<SqlValue, DbError> {
    match bytes {
        [b] => Ok(SqlValue::Int(i64::from(*b != 0))),
        _ => Err(invalid_binary(PgType::Bool)),
    }
}

// ---------------------------------------------------------------------------------------------
// smallint, integer, bigint, oid

fn int_range(ty: PgType) -> (i64, i64) {
    match ty {
        PgType::Int2 => (i16::MIN.into(), i16::MAX.into()),
        PgType::Int4 => (i32::MIN.into(), i32::MAX.into()),
        PgType::Oid => (0, u32::MAX.into()),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Postgres 15 integer input (`pg_strtoint*`): optional white space, sign, decimal digits,
/// white space. Digits are consumed first, so an overflowing prefix is "out of range" even when
/// junk follows, as in Postgres.
pub(super) fn parse_int(ty: PgType, text: &str) -> Result<SqlValue, DbError> {
    let t = text.trim_start_matches(is_pg_space);
    let (negative, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits_len == 0 {
        return Err(invalid_syntax(ty.name(), text));
    }
    let out_of_range = || {
        DbError::new(
            "22003",
            format!("value \"{text}\" is out of range for type {}", ty.name()),
        )
    };
    let (min, max) = int_range(ty);
    // `oidin` wraps negative 32-bit input around, so "-1" is 4294967295.
    let lowest = if ty == PgType::Oid {
        i128::from(i32::MIN)
    } else {
        i128::from(min)
    };
    let in_range = |v: i128| v <= i128::from(max) && v >= lowest;
    let mut value: i128 = 0;
    for b in rest[..digits_len].bytes() {
        value = value * 10 + i128::from(b - b'0');
        let signed = if negative { -value } else { value };
        // `oidin` reads with strtoul, which only fails early beyond 64 bits.
        let overflow = if ty == PgType::Oid {
            value > i128::from(u64::MAX)
        } else {
            !in_range(signed)
        };
        if overflow {
            return Err(out_of_range());
        }
    }
    if !trim_pg(&rest[digits_len..]).is_empty() {
        return Err(invalid_syntax(ty.name(), text));
    }
    let value = if negative { -value } else { value };
    if !in_range(value) {
        return Err(out_of_range());
    }
    let value = if value < 0 && ty == PgType::Oid {
        value + (1i128 << 32)
    } else {
        value
    };
    Ok(SqlValue::Int(value as i64))
}

/// The integer a stored value stands for, when the conversion loses nothing.
fn stored_int(ty: PgType, value: SqlValueRef<'_>) -> Option<i64> {
    match value {
        SqlValueRef::Int(v) => Some(v),
        SqlValueRef::Float(f) => float_to_i64(f),
        SqlValueRef::Text(s) => match parse_int(ty, s) {
            Ok(SqlValue::Int(v)) => Some(v),
            _ => None,
        },
        SqlValueRef::Null | SqlValueRef::Bytes(_) => None,
    }
}

fn float_to_i64(f: f64) -> Option<i64> {
    // 2^63 is exactly representable; anything at or above it does not fit.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.is_finite() && f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

pub(super) fn int_text(
    ty: PgType,
    value: SqlValueRef<'_>,
    out: &mut BytesMut,
) -> Result<(), DbError> {
    match value {
        SqlValueRef::Int(v) => {
            let v = if ty == PgType::Oid && (i64::from(i32::MIN)..0).contains(&v) {
                v + (1 << 32)
            } else {
                v
            };
            out.put_slice(v.to_string().as_bytes());
        }
        SqlValueRef::Float(f) => match float_to_i64(f) {
            Some(v) => out.put_slice(v.to_string().as_bytes()),
            None => out.put_slice(format_f64(f).as_bytes()),
        },
        SqlValueRef::Text(s) => out.put_slice(s.as_bytes()),
        SqlValueRef::Bytes(b) => out.put_slice(utf8(b)?.as_bytes()),
        SqlValueRef::Null => return Err(bad_stored(ty, value)),
    }
    Ok(())
}

pub(super) fn int_binary(
    ty: PgType,
    value: SqlValueRef<'_>,
    out: &mut BytesMut,
) -> Result<(), DbError> {
    let v = stored_int(ty, value).ok_or_else(|| bad_stored(ty, value))?;
    let out_of_range = || DbError::new("22003", format!("{} out of range", ty.name()));
    match ty {
        PgType::Int2 => out.put_i16(i16::try_from(v).map_err(|_| out_of_range())?),
        PgType::Int4 => out.put_i32(i32::try_from(v).map_err(|_| out_of_range())?),
        PgType::Oid => {
            let oid = u32::try_from(v)
                .or_else(|_| i32::try_from(v).map(|v| v as u32))
                .map_err(|_| out_of_range())?;
            out.put_u32(oid);
        }
        _ => out.put_i64(v),
    }
    Ok(())
}

pub(super) fn int_recv(ty: PgType, bytes: &[u8]) -> Result<SqlValue, DbError> {
    let bad = || invalid_binary(ty);
    let v = match ty {
        PgType::Int2 => i64::from(i16::from_be_bytes(bytes.try_into().map_err(|_| bad())?)),
        PgType::Int4 => i64::from(i32::from_be_bytes(bytes.try_into().map_err(|_| bad())?)),
        PgType::Oid => i64::from(u32::from_be_bytes(bytes.try_into().map_err(|_| bad())?)),
        _ => i64::from_be_bytes(bytes.try_into().map_err(|_| bad())?),
    };
    Ok(SqlValue::Int(v))
}

// ---------------------------------------------------------------------------------------------
// real, double precision

pub(super) fn parse_float(ty: PgType, text: &str) -> Result<SqlValue, DbError> {
    parse_float_value(ty, text).map(SqlValue::Float)
}

/// `float4in` / `float8in`: `strtod` reads the longest number at the start (after white
/// space), its range is checked, and only then must the rest be white space.
fn parse_float_value(ty: PgType, text: &str) -> Result<f64, DbError> {
    let t = text.trim_start_matches(is_pg_space);
    let len = float_prefix_len(t);
    if len == 0 || !trim_pg(&t[len..]).is_empty() && !float_prefix_overflows(ty, &t[..len]) {
        return Err(invalid_syntax(ty.name(), text));
    }
    let number = &t[..len];
    let unsigned = number.trim_start_matches(['+', '-']);
    let negative = number.starts_with('-');
    let lower = unsigned.to_ascii_lowercase();
    if lower.starts_with("nan") {
        return Ok(f64::NAN);
    }
    if lower.starts_with("inf") {
        return Ok(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if float_prefix_overflows(ty, number) {
        return Err(DbError::new(
            "22003",
            format!("\"{number}\" is out of range for type {}", ty.name()),
        ));
    }
    let value = if ty == PgType::Float4 {
        number.parse::<f32>().map(f64::from)
    } else {
        number.parse::<f64>()
    };
    value.map_err(|_| invalid_syntax(ty.name(), text))
}

/// Length of the number `strtod` would read at the start of `s`: a decimal literal, or
/// `inf`, `infinity` or `nan`, optionally signed.
fn float_prefix_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let rest = s[i..].to_ascii_lowercase();
    for word in ["infinity", "inf", "nan"] {
        if rest.starts_with(word) {
            return i + word.len();
        }
    }
    let int_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        frac_digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if int_digits + frac_digits > 0 {
            i += 1 + frac_digits;
        }
    }
    if int_digits + frac_digits == 0 {
        return 0;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_digits = b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp_digits > 0 {
            i = j + exp_digits;
        }
    }
    i
}

/// Whether a decimal literal overflows to infinity or underflows to zero in the type.
fn float_prefix_overflows(ty: PgType, number: &str) -> bool {
    let value = if ty == PgType::Float4 {
        number.parse::<f32>().map(f64::from)
    } else {
        number.parse::<f64>()
    };
    let Ok(value) = value else {
        return false;
    };
    let mantissa = number.split(['e', 'E']).next().unwrap_or_default();
    let special = mantissa.bytes().any(|b| b.is_ascii_alphabetic());
    let underflow = value == 0.0 && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b));
    !special && (value.is_infinite() || underflow)
}

fn stored_float(ty: PgType, value: SqlValueRef<'_>) -> Option<f64> {
    match value {
        SqlValueRef::Float(f) => Some(f),
        SqlValueRef::Int(v) => Some(v as f64),
        SqlValueRef::Text(s) => parse_float_value(ty, s).ok(),
        SqlValueRef::Null | SqlValueRef::Bytes(_) => None,
    }
}

pub(super) fn float_text(
    ty: PgType,
    value: SqlValueRef<'_>,
    out: &mut BytesMut,
) -> Result<(), DbError> {
    match (stored_float(ty, value), value) {
        (Some(f), _) if ty == PgType::Float4 => out.put_slice(format_f32(f as f32).as_bytes()),
        (Some(f), _) => out.put_slice(format_f64(f).as_bytes()),
        (None, SqlValueRef::Text(s)) => out.put_slice(s.as_bytes()),
        (None, _) => return Err(bad_stored(ty, value)),
    }
    Ok(())
}

pub(super) fn float_binary(
    ty: PgType,
    value: SqlValueRef<'_>,
    out: &mut BytesMut,
) -> Result<(), DbError> {
    let f = stored_float(ty, value).ok_or_else(|| bad_stored(ty, value))?;
    if ty == PgType::Float4 {
        out.put_f32(f as f32);
    } else {
        out.put_f64(f);
    }
    Ok(())
}

pub(super) fn float_recv(ty: PgType, bytes: &[u8]) -> Result<SqlValue, DbError> {
    let bad = || invalid_binary(ty);
    let f = if ty == PgType::Float4 {
        f64::from(f32::from_be_bytes(bytes.try_into().map_err(|_| bad())?))
    } else {
        f64::from_be_bytes(bytes.try_into().map_err(|_| bad())?)
    };
    Ok(SqlValue::Float(f))
}

/// `float8out` with `extra_float_digits = 1` (the default since Postgres 12): the shortest
/// decimal that reads back as the same double, in `%g` style.
pub(super) fn format_f64(f: f64) -> String {
    let bits = f.abs().to_bits();
    let (exponent, fraction) = ((bits >> 52) as i32, bits & ((1 << 52) - 1));
    let (m, e) = if exponent == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), exponent - 1075)
    };
    let sci = shortest_sci(f, 17, m, e, exponent > 1 && fraction == 0, |s| {
        s.parse::<f64>().ok() == Some(f)
    });
    format_shortest(f, &sci, 15)
}

/// `float4out`: as [`format_f64`], for the single-precision value.
pub(super) fn format_f32(f: f32) -> String {
    let bits = f.abs().to_bits();
    let (exponent, fraction) = ((bits >> 23) as i32, u64::from(bits & ((1 << 23) - 1)));
    let (m, e) = if exponent == 0 {
        (fraction, -149)
    } else {
        (fraction | (1 << 23), exponent - 150)
    };
    let sci = shortest_sci(f, 9, m, e, exponent > 1 && fraction == 0, |s| {
        s.parse::<f32>().ok() == Some(f)
    });
    format_shortest(f64::from(f), &sci, 6)
}

/// Shortest round-trip digits of `f` (= `m`·2^`e`) in `{:e}` form, chosen as Postgres's Ryu
/// (built without `STRICTLY_SHORTEST`) chooses them. Rust's shortest form differs in two rare
/// cases: it may sit exactly on the boundary halfway to a neighbouring float, which Ryu never
/// prints, and when two candidates are equally close it may pick the odd one, where Ryu rounds
/// to even.
fn shortest_sci<F>(
    f: F,
    max_digits: usize,
    m: u64,
    e: i32,
    narrow_below: bool,
    round_trips: impl Fn(&str) -> bool,
) -> String
where
    F: std::fmt::LowerExp + Copy,
{
    let shortest = format!("{f:e}");
    let Some((negative, digits, k)) = decimal_parts(&shortest) else {
        return shortest;
    };
    if !on_boundary(digits, k, m, e, narrow_below) {
        if digits % 2 == 1 && m != 0 {
            // v = odd·2^j exactly; a tie means v is halfway between `digits` and a neighbour.
            let odd = u128::from(m >> m.trailing_zeros());
            let j = e + m.trailing_zeros() as i32;
            for (halfway, other) in [(digits * 10 + 5, digits + 1), (digits * 10 - 5, digits - 1)] {
                if exact_eq(halfway, k - 1, odd, j) {
                    let candidate = sci_string(negative, other, k);
                    if round_trips(&candidate) && !on_boundary(other, k, m, e, narrow_below) {
                        return candidate;
                    }
                }
            }
        }
        return shortest;
    }
    let len = digits.to_string().len();
    // Every double has a finite decimal expansion of at most 767 significant digits.
    let exact = format!("{f:.800e}");
    for n in len + 1..=max_digits {
        let candidate = round_half_even(&exact, n);
        let inside = decimal_parts(&candidate)
            .is_some_and(|(_, d, k)| !on_boundary(d, k, m, e, narrow_below));
        if inside && round_trips(&candidate) {
            return candidate;
        }
    }
    round_half_even(&exact, max_digits)
}

/// Splits `{:e}` output into sign, all digits as an integer, and the power of ten of the last
/// digit.
fn decimal_parts(sci: &str) -> Option<(bool, u128, i32)> {
    let (mantissa, exp) = sci.split_once('e')?;
    let exp = exp.parse::<i32>().ok()?;
    let negative = mantissa.starts_with('-');
    let (int_part, frac_part) = mantissa
        .trim_start_matches('-')
        .split_once('.')
        .unwrap_or((mantissa.trim_start_matches('-'), ""));
    let digits = format!("{int_part}{frac_part}").parse::<u128>().ok()?;
    Some((negative, digits, exp - frac_part.len() as i32))
}

fn sci_string(negative: bool, digits: u128, k: i32) -> String {
    let s = digits.to_string();
    let exp = k + s.len() as i32 - 1;
    let sign = if negative { "-" } else { "" };
    if s.len() > 1 {
        format!("{sign}{}.{}e{exp}", &s[..1], &s[1..])
    } else {
        format!("{sign}{s}e{exp}")
    }
}

/// Whether `digits`·10^`k` equals one of the two midpoints between `m`·2^`e` and its
/// neighbours. `narrow_below` marks a power of two, whose lower neighbour is half as far away.
fn on_boundary(digits: u128, k: i32, m: u64, e: i32, narrow_below: bool) -> bool {
    let m = u128::from(m);
    let upper = exact_eq(digits, k, 2 * m + 1, e - 1);
    let lower = if narrow_below {
        exact_eq(digits, k, 4 * m - 1, e - 2)
    } else {
        m > 0 && exact_eq(digits, k, 2 * m - 1, e - 1)
    };
    upper || lower
}

/// Whether `d`·10^`k` equals `odd`·2^`j`, for odd `odd`.
fn exact_eq(d: u128, k: i32, odd: u128, j: i32) -> bool {
    if d == 0 {
        return false;
    }
    // d·10^k = r·2^(a+k)·5^(b+k) with r coprime to 10; it equals odd·2^j only if the powers of
    // two match and odd = r·5^(b+k).
    let a = d.trailing_zeros() as i32;
    let mut r = d >> a;
    let mut b = 0;
    while r.is_multiple_of(5) {
        r /= 5;
        b += 1;
    }
    a + k == j
        && b + k >= 0
        && 5u128
            .checked_pow((b + k) as u32)
            .and_then(|p| p.checked_mul(r))
            == Some(odd)
}

/// Rounds a number in `{:e}` form to `n` significant digits, ties to even as Ryu does (Rust's
/// own fixed-precision formatting rounds ties away from zero).
fn round_half_even(sci: &str, n: usize) -> String {
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci.to_owned();
    };
    let Ok(mut exp) = exp.parse::<i32>() else {
        return sci.to_owned();
    };
    let negative = mantissa.starts_with('-');
    let all: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    if n == 0 || all.len() <= n {
        return sci.to_owned();
    }
    let (kept, rest) = all.split_at(n);
    let mut kept = kept.to_vec();
    let tail_nonzero = rest[1..].iter().any(|d| *d != b'0');
    let last_odd = kept.last().is_some_and(|d| (d - b'0') % 2 == 1);
    let round_up = rest[0] > b'5' || (rest[0] == b'5' && (tail_nonzero || last_odd));
    if round_up {
        let mut carry = true;
        for d in kept.iter_mut().rev() {
            if *d == b'9' {
                *d = b'0';
            } else {
                *d += 1;
                carry = false;
                break;
            }
        }
        if carry {
            kept.insert(0, b'1');
            kept.pop();
            exp += 1;
        }
    }
    let mut out = String::with_capacity(n + 8);
    if negative {
        out.push('-');
    }
    out.push(char::from(kept[0]));
    if kept.len() > 1 {
        out.push('.');
        out.extend(kept[1..].iter().map(|d| char::from(*d)));
    }
    out.push_str(&format!("e{exp}"));
    out
}

/// Lays out Rust's shortest round-trip digits (`sci`, as `{:e}` prints them) the way Postgres's
/// Ryu-based output does: fixed notation for decimal exponents in `-4..fixed_below`, else
/// `d.ddde+XX` with at least two exponent digits.
fn format_shortest(f: f64, sci: &str, fixed_below: i32) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return f.to_string();
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return f.to_string();
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    if digits.is_empty() {
        return f.to_string();
    }
    let mut out = String::with_capacity(digits.len() + 8);
    if f < 0.0 {
        out.push('-');
    }
    if (-4..fixed_below).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    }
    out
}
