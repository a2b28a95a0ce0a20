//! Exact `numeric` arithmetic on merged values, with the display scales PostgreSQL gives its
//! results (`numeric.c`): a sum or difference keeps the larger scale of its operands, a product
//! their sum, a quotient `select_div_scale`'s (at least 16 significant digits, at least either
//! operand's scale) rounded half away from zero, a remainder the larger scale. Values are
//! an `i128` of digits and a scale: a result that does not fit (38 digits) is refused with
//! 0A000 rather than rounded.

use mycelium_protocol::types::SqlValue;

use crate::error::{ProxyError, sql_error};

/// `NUMERIC_MIN_SIG_DIGITS`.
const MIN_SIG_DIGITS: i64 = 16;
/// `NUMERIC_MAX_DISPLAY_SCALE`.
const MAX_DISPLAY_SCALE: i64 = 1000;
/// `DEC_DIGITS`: Postgres's numeric digits are base 10000.
const DEC_DIGITS: i64 = 4;

/// A finite decimal: `digits` × 10^-`scale`, printed with `scale` decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dec {
    digits: i128,
    scale: u32,
}

fn too_large() -> ProxyError {
    sql_error(
        "0A000",
        "a numeric result over rows on several nodes has more than 38 digits; compute it on \
         one node (filter on the shard key) or in the client",
    )
}

pub(super) fn division_by_zero() -> ProxyError {
    sql_error("22012", "division by zero")
}

fn power_of_ten(exponent: u32) -> Result<i128, ProxyError> {
    10i128.checked_pow(exponent).ok_or_else(too_large)
}

impl Dec {
    pub(super) fn from_int(i: i64) -> Dec {
        Dec {
            digits: i128::from(i),
            scale: 0,
        }
    }

    /// A merged numeric value: an integer, exact decimal text (`NaN` and infinities are not
    /// decimals) or a double, as its shortest exact digits.
    pub(super) fn of(value: &SqlValue) -> Result<Dec, ProxyError> {
        match value {
            SqlValue::Int(i) => Ok(Dec::from_int(*i)),
            SqlValue::Float(f) if f.is_finite() => Dec::parse(&f.to_string()),
            SqlValue::Float(f) => Err(not_finite(&f.to_string())),
            SqlValue::Text(text) => Dec::parse(text),
            SqlValue::Null | SqlValue::Bytes(_) => Err(not_finite("NULL or bytes")),
        }
    }

    /// `[+-]digits[.digits][e[+-]digits]`.
    pub(super) fn parse(text: &str) -> Result<Dec, ProxyError> {
        let plain = super::finish::decimal_text(text.trim()).ok_or_else(|| not_finite(text))?;
        let (negative, unsigned) = match plain.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, plain.as_str()),
        };
        let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let scale = u32::try_from(frac.len()).map_err(|_| too_large())?;
        let all = format!("{int}{frac}");
        let magnitude: i128 = all.parse().map_err(|_| too_large())?;
        Ok(Dec {
            digits: if negative { -magnitude } else { magnitude },
            scale,
        })
    }

    pub(super) fn is_zero(self) -> bool {
        self.digits == 0
    }

    /// The digits at scale `scale` (not below the value's own).
    fn at_scale(self, scale: u32) -> Result<i128, ProxyError> {
        self.digits
            .checked_mul(power_of_ten(scale - self.scale)?)
            .ok_or_else(too_large)
    }

    pub(super) fn add(self, other: Dec) -> Result<Dec, ProxyError> {
        let scale = self.scale.max(other.scale);
        let digits = self
            .at_scale(scale)?
            .checked_add(other.at_scale(scale)?)
            .ok_or_else(too_large)?;
        Ok(Dec { digits, scale })
    }

    pub(super) fn negate(self) -> Dec {
        Dec {
            digits: -self.digits,
            scale: self.scale,
        }
    }

    pub(super) fn subtract(self, other: Dec) -> Result<Dec, ProxyError> {
        self.add(other.negate())
    }

    pub(super) fn multiply(self, other: Dec) -> Result<Dec, ProxyError> {
        Ok(Dec {
            digits: self
                .digits
                .checked_mul(other.digits)
                .ok_or_else(too_large)?,
            scale: self.scale + other.scale,
        })
    }

    /// `numeric_div`: rounded half away from zero to [`div_scale`] decimals.
    pub(super) fn divide(self, other: Dec) -> Result<Dec, ProxyError> {
        if other.is_zero() {
            return Err(division_by_zero());
        }
        let scale = u32::try_from(div_scale(self, other)).map_err(|_| too_large())?;
        // self / other × 10^scale = self.digits × 10^k / other.digits, k ≥ 0 because the
        // scale is at least self's.
        let k = scale + other.scale - self.scale;
        let divisor = other.digits.unsigned_abs();
        let mut quotient = self.digits.unsigned_abs() / divisor;
        let mut remainder = self.digits.unsigned_abs() % divisor;
        for _ in 0..k {
            let shifted = remainder.checked_mul(10).ok_or_else(too_large)?;
            quotient = quotient
                .checked_mul(10)
                .and_then(|q| q.checked_add(shifted / divisor))
                .ok_or_else(too_large)?;
            remainder = shifted % divisor;
        }
        if remainder >= divisor - remainder {
            quotient += 1;
        }
        let magnitude = i128::try_from(quotient).map_err(|_| too_large())?;
        let negative = (self.digits < 0) != (other.digits < 0);
        Ok(Dec {
            digits: if negative { -magnitude } else { magnitude },
            scale,
        })
    }

    /// `numeric_mod`: the remainder of the quotient truncated to an integer, with the sign of
    /// the dividend and the larger scale.
    pub(super) fn remainder(self, other: Dec) -> Result<Dec, ProxyError> {
        if other.is_zero() {
            return Err(division_by_zero());
        }
        let scale = self.scale.max(other.scale);
        let divisor = other.at_scale(scale)?;
        let digits = self
            .at_scale(scale)?
            .checked_rem(divisor)
            .unwrap_or_default();
        Ok(Dec { digits, scale })
    }

    pub(super) fn compare(self, other: Dec) -> Result<std::cmp::Ordering, ProxyError> {
        let scale = self.scale.max(other.scale);
        Ok(self.at_scale(scale)?.cmp(&other.at_scale(scale)?))
    }

    /// Postgres's weight (base-10000 exponent of the leading digit group) and that group.
    fn weight_and_first(self) -> (i64, i64) {
        if self.is_zero() {
            return (0, 0);
        }
        let digits = self.digits.unsigned_abs().to_string();
        // Exponent of the leading decimal digit.
        let exponent = digits.len() as i64 - 1 - i64::from(self.scale);
        let weight = exponent.div_euclid(DEC_DIGITS);
        // The leading group's decimal digits: from the leading one down to 10^(4·weight).
        let take = (exponent - DEC_DIGITS * weight + 1) as usize;
        let first = digits
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(take)
            .fold(0, |group, digit| group * 10 + i64::from(digit - b'0'));
        (weight, first)
    }
}

impl std::fmt::Display for Dec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.digits < 0 { "-" } else { "" };
        let scale = self.scale as usize;
        let digits = format!("{:0>width$}", self.digits.unsigned_abs(), width = scale + 1);
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        if fraction.is_empty() {
            write!(f, "{sign}{whole}")
        } else {
            write!(f, "{sign}{whole}.{fraction}")
        }
    }
}

/// `select_div_scale`: the scale of `a / b`.
fn div_scale(a: Dec, b: Dec) -> i64 {
    let (weight1, first1) = a.weight_and_first();
    let (weight2, first2) = b.weight_and_first();
    // If the leading groups are equal, Postgres cannot tell and assumes a < b.
    let mut weight = weight1 - weight2;
    if first1 <= first2 {
        weight -= 1;
    }
    (MIN_SIG_DIGITS - weight * DEC_DIGITS)
        .max(i64::from(a.scale))
        .max(i64::from(b.scale))
        .clamp(0, MAX_DISPLAY_SCALE)
}

fn not_finite(what: &str) -> ProxyError {
    sql_error(
        "0A000",
        format!(
            "computing with the value {what} as an exact number over rows on several nodes is \
             not supported; compute it on one node (filter on the shard key) or in the client"
        ),
    )
}

/// A numeric in Postgres's binary form (`numeric_send`) as its exact decimal text with its
/// display scale (`NaN`, `Infinity`, `-Infinity` as Postgres prints them); `None` when the
/// bytes are not one.
pub(super) fn binary_numeric_text(bytes: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<u16> {
        Some(u16::from_be_bytes([
            *bytes.get(2 * i)?,
            *bytes.get(2 * i + 1)?,
        ]))
    };
    let count = usize::from(word(0)?);
    let weight = i64::from(word(1)? as i16);
    let sign = word(2)?;
    let dscale = usize::from(word(3)?);
    if bytes.len() != 8 + 2 * count {
        return None;
    }
    match sign {
        0xC000 => return Some("NaN".to_owned()),
        0xD000 => return Some("Infinity".to_owned()),
        0xF000 => return Some("-Infinity".to_owned()),
        0x0000 | 0x4000 => {}
        _ => return None,
    }
    let groups = (0..count)
        .map(|i| word(4 + i))
        .collect::<Option<Vec<u16>>>()?;
    if groups.iter().any(|g| *g > 9999) {
        return None;
    }
    // Base-10000 group i has weight `weight - i`; the integer part is groups of weight ≥ 0.
    let group = |w: i64| -> u16 {
        usize::try_from(weight - w)
            .ok()
            .and_then(|i| groups.get(i).copied())
            .unwrap_or(0)
    };
    let mut int = String::new();
    for w in (0..=weight).rev() {
        int.push_str(&format!("{:04}", group(w)));
    }
    let int = match int.trim_start_matches('0') {
        "" => "0",
        trimmed => trimmed,
    };
    let mut frac = String::new();
    let mut w = -1;
    while frac.len() < dscale {
        frac.push_str(&format!("{:04}", group(w)));
        w -= 1;
    }
    frac.truncate(dscale);
    let zero = int == "0" && frac.bytes().all(|b| b == b'0');
    let sign = if sign == 0x4000 && !zero { "-" } else { "" };
    Some(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}
