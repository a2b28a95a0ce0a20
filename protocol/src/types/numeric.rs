//! `numeric`: exact decimals kept as digit strings, Postgres's text and binary forms.

use bytes::{BufMut, BytesMut};

use super::name::numeric_precision_scale;
use super::{
    PgType, SqlValue, SqlValueRef, bad_stored, invalid_binary, invalid_syntax, trim_pg, utf8,
};
use crate::DbError;

/// Postgres's limits: 131072 digits before the decimal point, 16383 after.
const MAX_INT_DIGITS: i64 = 131_072;
const MAX_DSCALE: i64 = 16_383;

/// 2^63, exactly representable: doubles in [-2^63, 2^63) convert to i64 exactly.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

const SIGN_POS: u16 = 0x0000;
const SIGN_NEG: u16 = 0x4000;
const SIGN_NAN: u16 = 0xC000;
const SIGN_PINF: u16 = 0xD000;
const SIGN_NINF: u16 = 0xF000;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Numeric {
    NaN,
    Infinity { negative: bool },
    Finite(Decimal),
}

/// A finite decimal as Postgres keeps it: the digits and the display scale.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Decimal {
    /// False for zero.
    negative: bool,
    /// ASCII digits before the point, without leading zeros (empty for zero).
    int: String,
    /// ASCII digits after the point; its length is the display scale.
    frac: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum ParseError {
    Syntax,
    Overflow,
}

impl Numeric {
    /// `numeric_in` syntax: `[+-]digits[.digits][e[+-]digits]`, `NaN`, `Infinity`, `inf`.
    pub(super) fn parse(text: &str) -> Result<Numeric, ParseError> {
        let t = trim_pg(text);
        match t.to_ascii_lowercase().as_str() {
            "nan" => return Ok(Numeric::NaN),
            "infinity" | "+infinity" | "inf" | "+inf" => {
                return Ok(Numeric::Infinity { negative: false });
            }
            "-infinity" | "-inf" => return Ok(Numeric::Infinity { negative: true }),
            _ => {}
        }
        let b = t.as_bytes();
        let mut i = 0;
        let negative = match b.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int_digits = &t[int_start..i];
        let mut frac_digits = "";
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac_digits = &t[start..i];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(ParseError::Syntax);
        }
        let mut exponent: i64 = 0;
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            let exp_negative = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                // Saturate: anything this large overflows below anyway.
                exponent = (exponent * 10 + i64::from(b[i] - b'0')).min(1 << 40);
                i += 1;
            }
            if i == start {
                return Err(ParseError::Syntax);
            }
            if exp_negative {
                exponent = -exponent;
            }
        }
        if i != b.len() {
            return Err(ParseError::Syntax);
        }
        let dscale = (frac_digits.len() as i64 - exponent).max(0);
        let all = format!("{int_digits}{frac_digits}");
        let significant = all.trim_start_matches('0');
        // Position of the decimal point within `significant`.
        let point = int_digits.len() as i64 - (all.len() - significant.len()) as i64 + exponent;
        if dscale > MAX_DSCALE || (!significant.is_empty() && point > MAX_INT_DIGITS) {
            return Err(ParseError::Overflow);
        }
        Ok(Numeric::Finite(Decimal::from_digits(
            negative,
            significant,
            point,
            dscale as usize,
        )))
    }

    pub(super) fn from_f64(f: f64) -> Numeric {
        if f.is_nan() {
            Numeric::NaN
        } else if f.is_infinite() {
            Numeric::Infinity { negative: f < 0.0 }
        } else {
            // Display prints the shortest round-trip digits and never uses an exponent.
            Numeric::parse(&f.to_string()).unwrap_or(Numeric::NaN)
        }
    }

    pub(super) fn from_i64(v: i64) -> Numeric {
        let int = v.unsigned_abs().to_string();
        let int = int.trim_start_matches('0').to_owned();
        Numeric::Finite(Decimal {
            negative: v < 0,
            int,
            frac: String::new(),
        })
    }

    /// Rounds to the typmod's scale and checks its precision, as `apply_typmod` does.
    pub(super) fn apply_typmod(&mut self, typmod: i32) -> Result<(), DbError> {
        let Some((precision, scale)) = numeric_precision_scale(typmod) else {
            return Ok(());
        };
        let overflow = || DbError::new("22003", "numeric field overflow");
        match self {
            Numeric::NaN => Ok(()),
            Numeric::Infinity { .. } => Err(overflow().with_detail(format!(
                "A field with precision {precision}, scale {scale} cannot hold an infinite value."
            ))),
            Numeric::Finite(d) => {
                d.round(scale);
                let max_digits = precision - scale;
                if d.magnitude_digits() > i64::from(max_digits) {
                    let limit = if max_digits != 0 {
                        format!("10^{max_digits}")
                    } else {
                        "1".to_owned()
                    };
                    return Err(overflow().with_detail(format!(
                        "A field with precision {precision}, scale {scale} must round to an absolute value less than {limit}."
                    )));
                }
                Ok(())
            }
        }
    }

    /// Rounds to the typmod's scale, when it has one, without checking the precision.
    fn round_to_typmod(&mut self, typmod: i32) {
        if let (Some((_, scale)), Numeric::Finite(d)) = (numeric_precision_scale(typmod), self) {
            d.round(scale);
        }
    }

    /// The storage value for text input: an integer when it is one, else a double.
    fn to_storage_lossy(&self) -> SqlValue {
        match self {
            Numeric::NaN => SqlValue::Float(f64::NAN),
            Numeric::Infinity { negative } => SqlValue::Float(if *negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }),
            Numeric::Finite(d) => match d.to_i64() {
                Some(v) => SqlValue::Int(v),
                None => {
                    let text = d.to_string();
                    match text.parse::<f64>() {
                        // Rounding to a double can land on an integer; store it as one so the
                        // value prints and reads back the same.
                        Ok(f) if f.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&f) => {
                            SqlValue::Int(f as i64)
                        }
                        Ok(f) if f.is_finite() => SqlValue::Float(f),
                        _ => SqlValue::Text(text),
                    }
                }
            },
        }
    }

    /// The storage value for binary input: exact, falling back to text when a double would
    /// change the value.
    fn to_storage_exact(&self) -> SqlValue {
        match (self, self.to_storage_lossy()) {
            (Numeric::Finite(d), SqlValue::Float(f)) => {
                let exact = match Numeric::from_f64(f) {
                    Numeric::Finite(back) => back.normalized() == d.normalized(),
                    _ => false,
                };
                if exact {
                    SqlValue::Float(f)
                } else {
                    SqlValue::Text(d.to_string())
                }
            }
            (_, value) => value,
        }
    }

    fn write_binary(&self, out: &mut BytesMut) -> Result<(), DbError> {
        let special = match self {
            Numeric::NaN => SIGN_NAN,
            Numeric::Infinity { negative: true } => SIGN_NINF,
            Numeric::Infinity { negative: false } => SIGN_PINF,
            Numeric::Finite(_) => SIGN_POS,
        };
        let Numeric::Finite(d) = self else {
            put_header(out, 0, 0, special, 0);
            return Ok(());
        };
        let int_pad = (4 - d.int.len() % 4) % 4;
        let frac_pad = (4 - d.frac.len() % 4) % 4;
        let mut padded = String::with_capacity(int_pad + d.int.len() + d.frac.len() + frac_pad);
        padded.extend(std::iter::repeat_n('0', int_pad));
        padded.push_str(&d.int);
        padded.push_str(&d.frac);
        padded.extend(std::iter::repeat_n('0', frac_pad));
        let mut groups: Vec<i16> = padded
            .as_bytes()
            .chunks(4)
            .map(|c| c.iter().fold(0i16, |acc, b| acc * 10 + i16::from(b - b'0')))
            .collect();
        let mut weight = (int_pad + d.int.len()) as i64 / 4 - 1;
        let leading = groups.iter().take_while(|g| **g == 0).count();
        groups.drain(..leading);
        weight -= leading as i64;
        while groups.last() == Some(&0) {
            groups.pop();
        }
        let sign = if d.negative { SIGN_NEG } else { SIGN_POS };
        let (weight, sign) = if groups.is_empty() {
            (0, SIGN_POS)
        } else {
            (weight, sign)
        };
        let too_big = || DbError::new("22003", "value overflows numeric format");
        let ndigits = i16::try_from(groups.len()).map_err(|_| too_big())?;
        let weight = i16::try_from(weight).map_err(|_| too_big())?;
        let dscale = i16::try_from(d.frac.len()).map_err(|_| too_big())?;
        put_header(out, ndigits, weight, sign, dscale);
        for g in groups {
            out.put_i16(g);
        }
        Ok(())
    }

    fn read_binary(bytes: &[u8]) -> Option<Numeric> {
        let header = bytes.get(..8)?;
        let ndigits = i16::from_be_bytes([header[0], header[1]]);
        let weight = i64::from(i16::from_be_bytes([header[2], header[3]]));
        let sign = u16::from_be_bytes([header[4], header[5]]);
        let dscale = i16::from_be_bytes([header[6], header[7]]);
        if ndigits < 0 || bytes.len() != 8 + 2 * ndigits as usize || !(0..=0x3fff).contains(&dscale)
        {
            return None;
        }
        let groups: Vec<i64> = bytes[8..]
            .chunks_exact(2)
            .map(|c| i64::from(i16::from_be_bytes([c[0], c[1]])))
            .collect();
        if groups.iter().any(|g| !(0..=9999).contains(g)) {
            return None;
        }
        let negative = match sign {
            SIGN_NAN => return Some(Numeric::NaN),
            SIGN_PINF => return Some(Numeric::Infinity { negative: false }),
            SIGN_NINF => return Some(Numeric::Infinity { negative: true }),
            SIGN_POS => false,
            SIGN_NEG => true,
            _ => return None,
        };
        // Group `i` has weight `weight - i`; groups outside the array are zero.
        let group_at = |w: i64| -> i64 {
            let i = weight - w;
            if (0..groups.len() as i64).contains(&i) {
                groups[i as usize]
            } else {
                0
            }
        };
        let mut int = String::new();
        for w in (0..=weight).rev() {
            int.push_str(&format!("{:04}", group_at(w)));
        }
        let dscale = dscale as usize;
        let mut frac = String::with_capacity(dscale + 4);
        let mut w = -1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", group_at(w)));
            w -= 1;
        }
        // Digits the display scale hides are dropped, as `numeric_recv` does.
        frac.truncate(dscale);
        let int = int.trim_start_matches('0').to_owned();
        let zero = int.is_empty() && frac.bytes().all(|b| b == b'0');
        Some(Numeric::Finite(Decimal {
            negative: negative && !zero,
            int,
            frac,
        }))
    }
}

fn put_header(out: &mut BytesMut, ndigits: i16, weight: i16, sign: u16, dscale: i16) {
    out.put_i16(ndigits);
    out.put_i16(weight);
    out.put_u16(sign);
    out.put_i16(dscale);
}

impl std::fmt::Display for Numeric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Numeric::NaN => f.write_str("NaN"),
            Numeric::Infinity { negative: false } => f.write_str("Infinity"),
            Numeric::Infinity { negative: true } => f.write_str("-Infinity"),
            Numeric::Finite(d) => d.fmt(f),
        }
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str(if self.int.is_empty() { "0" } else { &self.int })?;
        if !self.frac.is_empty() {
            f.write_str(".")?;
            f.write_str(&self.frac)?;
        }
        Ok(())
    }
}

impl Decimal {
    /// Builds from significant digits (no leading zeros) with the point after `point` of them
    /// (negative: that many zeros come first), showing `dscale` fractional digits.
    fn from_digits(negative: bool, significant: &str, point: i64, dscale: usize) -> Decimal {
        let mut int = String::new();
        let mut frac = String::new();
        if !significant.is_empty() {
            if point >= significant.len() as i64 {
                int.push_str(significant);
                int.extend(std::iter::repeat_n(
                    '0',
                    (point - significant.len() as i64) as usize,
                ));
            } else if point > 0 {
                int.push_str(&significant[..point as usize]);
                frac.push_str(&significant[point as usize..]);
            } else {
                frac.extend(std::iter::repeat_n('0', (-point) as usize));
                frac.push_str(significant);
            }
        }
        // `dscale` is at least the count of fractional digits given, so this only pads.
        frac.truncate(dscale);
        frac.extend(std::iter::repeat_n('0', dscale.saturating_sub(frac.len())));
        Decimal {
            negative: negative && !significant.is_empty(),
            int,
            frac,
        }
    }

    /// Rounds half away from zero to `scale` fractional digits (negative: to tens, hundreds…).
    fn round(&mut self, scale: i32) {
        let point = self.int.len() as i64;
        let mut digits = std::mem::take(&mut self.int).into_bytes();
        digits.extend(std::mem::take(&mut self.frac).into_bytes());
        let keep = point + i64::from(scale);
        let mut point = point;
        if keep < 0 {
            digits.clear();
        } else if (keep as usize) < digits.len() {
            let keep = keep as usize;
            let round_up = digits[keep] >= b'5';
            digits.truncate(keep);
            if round_up {
                let mut carry = true;
                for d in digits.iter_mut().rev() {
                    if *d == b'9' {
                        *d = b'0';
                    } else {
                        *d += 1;
                        carry = false;
                        break;
                    }
                }
                if carry {
                    digits.insert(0, b'1');
                    point += 1;
                }
            }
        }
        let split = (point.max(0) as usize).min(digits.len());
        let mut int = String::from_utf8_lossy(&digits[..split]).into_owned();
        int.extend(std::iter::repeat_n(
            '0',
            (point.max(0) as usize).saturating_sub(split),
        ));
        let mut frac = String::from_utf8_lossy(&digits[split..]).into_owned();
        let scale = scale.max(0) as usize;
        frac.extend(std::iter::repeat_n('0', scale.saturating_sub(frac.len())));
        self.int = int.trim_start_matches('0').to_owned();
        self.frac = frac;
        if self.is_zero() {
            self.negative = false;
        }
    }

    fn is_zero(&self) -> bool {
        self.int.is_empty() && self.frac.bytes().all(|b| b == b'0')
    }

    /// Where the most significant digit sits: digits before the point, or minus the zeros
    /// right after it. Zero counts as having none.
    fn magnitude_digits(&self) -> i64 {
        if !self.int.is_empty() {
            self.int.len() as i64
        } else if self.is_zero() {
            i64::MIN
        } else {
            -(self.frac.bytes().take_while(|b| *b == b'0').count() as i64)
        }
    }

    fn to_i64(&self) -> Option<i64> {
        if !self.frac.bytes().all(|b| b == b'0') || self.int.len() > 19 {
            return None;
        }
        let magnitude: i128 = if self.int.is_empty() {
            0
        } else {
            self.int.parse().ok()?
        };
        i64::try_from(if self.negative { -magnitude } else { magnitude }).ok()
    }

    /// The same value with no trailing fractional zeros, to compare values across scales.
    fn normalized(&self) -> Decimal {
        Decimal {
            negative: self.negative,
            int: self.int.clone(),
            frac: self.frac.trim_end_matches('0').to_owned(),
        }
    }
}

/// The decimal a stored value stands for.
fn stored_numeric(value: SqlValueRef<'_>) -> Option<Numeric> {
    match value {
        SqlValueRef::Int(v) => Some(Numeric::from_i64(v)),
        SqlValueRef::Float(f) => Some(Numeric::from_f64(f)),
        SqlValueRef::Text(s) => Numeric::parse(s).ok(),
        SqlValueRef::Null | SqlValueRef::Bytes(_) => None,
    }
}

pub(super) fn encode_text(
    typmod: i32,
    value: SqlValueRef<'_>,
    out: &mut BytesMut,
) -> Result<(), DbError> {
    let text = match (value, stored_numeric(value)) {
        // Exact decimal text is printed as stored unless a scale must be imposed.
        (SqlValueRef::Text(s), _) if numeric_precision_scale(typmod).is_none() => s.to_owned(),
        (_, Some(mut n)) => {
            n.round_to_typmod(typmod);
            n.to_string()
        }
        (SqlValueRef::Text(s), None) => s.to_owned(),
        (SqlValueRef::Bytes(b), None) => utf8(b)?.to_owned(),
        (_, None) => return Err(bad_stored(PgType::Numeric, value)),
    };
    out.put_slice(text.as_bytes());
    Ok(())
}

pub(super) fn encode_binary(
    typmod: i32,
    value: SqlValueRef<'_>,
    out: &mut BytesMut,
) -> Result<(), DbError> {
    let mut n = stored_numeric(value).ok_or_else(|| bad_stored(PgType::Numeric, value))?;
    n.round_to_typmod(typmod);
    n.write_binary(out)
}

pub(super) fn recv(bytes: &[u8]) -> Result<SqlValue, DbError> {
    Numeric::read_binary(bytes)
        .map(|n| n.to_storage_exact())
        .ok_or_else(|| invalid_binary(PgType::Numeric))
}

pub(super) fn parse(typmod: i32, text: &str) -> Result<SqlValue, DbError> {
    let mut n = Numeric::parse(text).map_err(|e| match e {
        ParseError::Syntax => invalid_syntax("numeric", text),
        ParseError::Overflow => DbError::new("22003", "value overflows numeric format"),
    })?;
    n.apply_typmod(typmod)?;
    Ok(n.to_storage_lossy())
}
