//! Exact `numeric` division, `avg`, `variance` and `stddev` with Postgres's result scale.
//!
//! Storage holds a `numeric` as an integer or a double (see the codec), so values lose the
//! display scale Postgres keeps. What a division prints depends on it and on the operands'
//! magnitudes (`select_div_scale` in Postgres's `numeric.c`): `7.0 / 2` is
//! `3.5000000000000000`, `1.0 / 3` has 20 decimals. Here the operands are read back as
//! exact decimals (a double as the shortest text that reads back to it), their display scale
//! is the larger of the statically known one and their own, and the quotient is computed by
//! long division and rounded half away from zero, as `div_var` does.

use mycelium_protocol::DbError;
use num_bigint::{BigInt, BigUint, Sign};
use rusqlite::types::ValueRef;

/// `NUMERIC_MIN_SIG_DIGITS`: a quotient has at least this many significant digits.
const MIN_SIG_DIGITS: i64 = 16;
/// `NUMERIC_MAX_DISPLAY_SCALE`.
const MAX_DISPLAY_SCALE: i64 = 1000;
/// `DEC_DIGITS`: Postgres's numeric digits are base 10000.
const DEC_DIGITS: i64 = 4;

/// A finite decimal: `digits` × 10^-`scale`, shown with `dscale` decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dec {
    pub negative: bool,
    /// ASCII digits without leading zeros; empty for zero.
    pub digits: Vec<u8>,
    /// Power of ten the digits are divided by; negative for `1e5`.
    pub scale: i64,
    /// The display scale: decimals the value prints with.
    pub dscale: i64,
}

/// A `numeric` operand as storage hands it over.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Null,
    Finite(Dec),
    /// NaN or an infinity (from a double).
    Special(f64),
}

fn invalid(text: &str) -> DbError {
    DbError::new(
        "22P02",
        format!("invalid input syntax for type numeric: \"{text}\""),
    )
}

impl Dec {
    pub fn zero() -> Dec {
        Dec {
            negative: false,
            digits: Vec::new(),
            scale: 0,
            dscale: 0,
        }
    }

    pub fn from_i128(v: i128) -> Dec {
        let digits = if v == 0 {
            Vec::new()
        } else {
            v.unsigned_abs().to_string().into_bytes()
        };
        Dec {
            negative: v < 0,
            digits,
            scale: 0,
            dscale: 0,
        }
    }

    /// `[+-]digits[.digits][e[+-]digits]`; `None` when it is not a finite decimal.
    pub fn parse(text: &str) -> Option<Dec> {
        let t = text.trim();
        let (negative, t) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (mantissa, exponent) = match t.find(['e', 'E']) {
            Some(at) => (&t[..at], t[at + 1..].parse::<i64>().ok()?),
            None => (t, 0),
        };
        if exponent.abs() > 100_000 {
            return None;
        }
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
        let leading = digits.iter().take_while(|d| **d == b'0').count();
        digits.drain(..leading);
        let scale = frac.len() as i64 - exponent;
        Some(Dec {
            negative: negative && !digits.is_empty(),
            digits,
            scale,
            dscale: scale.max(0),
        })
    }

    fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// The value without its display scale or trailing zeros, to compare values.
    pub fn normalized(&self) -> (bool, Vec<u8>, i64) {
        let mut digits = self.digits.clone();
        let mut scale = self.scale;
        while digits.last() == Some(&b'0') {
            digits.pop();
            scale -= 1;
        }
        if digits.is_empty() {
            return (false, digits, 0);
        }
        (self.negative, digits, scale)
    }

    /// Postgres's weight (base-10000 exponent of the leading digit group) and that group.
    fn weight_and_first(&self) -> (i64, u32) {
        if self.is_zero() {
            return (0, 0);
        }
        // Exponent of the leading decimal digit.
        let exponent = self.digits.len() as i64 - 1 - self.scale;
        let weight = exponent.div_euclid(DEC_DIGITS);
        // Decimal digits of the leading group: from the leading digit down to 10^(4·weight).
        let take = (exponent - DEC_DIGITS * weight + 1) as usize;
        let first = (0..take).fold(0u32, |acc, i| {
            acc * 10 + u32::from(self.digits.get(i).map(|d| d - b'0').unwrap_or(0))
        });
        (weight, first)
    }
}

/// `select_div_scale`: the scale of `a / b`.
pub fn div_scale(a: &Dec, b: &Dec) -> i64 {
    let (w1, f1) = a.weight_and_first();
    let (w2, f2) = b.weight_and_first();
    let mut qweight = w1 - w2;
    if f1 <= f2 {
        qweight -= 1;
    }
    (MIN_SIG_DIGITS - qweight * DEC_DIGITS)
        .max(a.dscale)
        .max(b.dscale)
        .clamp(0, MAX_DISPLAY_SCALE)
}

/// A stored value as an exact decimal, shown with at least `dscale` decimals (-1: its own).
pub fn operand(v: ValueRef<'_>, dscale: i64) -> Result<Operand, DbError> {
    let mut dec = match v {
        ValueRef::Null => return Ok(Operand::Null),
        ValueRef::Integer(i) => Dec::from_i128(i128::from(i)),
        ValueRef::Real(f) if !f.is_finite() => return Ok(Operand::Special(f)),
        // Display never uses an exponent and prints the shortest digits that read back.
        ValueRef::Real(f) => Dec::parse(&f.to_string()).ok_or_else(|| invalid(&f.to_string()))?,
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            let text = String::from_utf8_lossy(t);
            match text.trim().to_ascii_lowercase().as_str() {
                "nan" => return Ok(Operand::Special(f64::NAN)),
                "infinity" | "inf" | "+infinity" | "+inf" => {
                    return Ok(Operand::Special(f64::INFINITY));
                }
                "-infinity" | "-inf" => return Ok(Operand::Special(f64::NEG_INFINITY)),
                _ => Dec::parse(&text).ok_or_else(|| invalid(&text))?,
            }
        }
    };
    dec.dscale = dec.dscale.max(dscale);
    Ok(Operand::Finite(dec))
}

fn as_f64(op: &Operand) -> f64 {
    match op {
        Operand::Null => f64::NAN,
        Operand::Special(f) => *f,
        Operand::Finite(d) => d.to_string().parse().unwrap_or(f64::NAN),
    }
}

fn division_by_zero() -> DbError {
    DbError::new("22012", "division by zero")
}

/// `a / b` as Postgres's `numeric_div` prints it; `None` when either is NULL.
pub fn divide(a: &Operand, b: &Operand) -> Result<Option<String>, DbError> {
    match (a, b) {
        (Operand::Null, _) | (_, Operand::Null) => Ok(None),
        (Operand::Finite(a), Operand::Finite(b)) => {
            if b.is_zero() {
                return Err(division_by_zero());
            }
            let rscale = div_scale(a, b);
            Ok(Some(quotient(a, b, rscale).to_string()))
        }
        (a, b) => {
            let (x, y) = (as_f64(a), as_f64(b));
            if y == 0.0 {
                return Err(division_by_zero());
            }
            let q = x / y;
            Ok(Some(if q.is_nan() {
                "NaN".to_owned()
            } else if q.is_infinite() {
                if q > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
            } else {
                // A finite number over an infinity.
                "0".to_owned()
            }))
        }
    }
}

/// `a / b` rounded half away from zero to `rscale` decimals. `b` must not be zero.
pub fn quotient(a: &Dec, b: &Dec, rscale: i64) -> Dec {
    // q = (A / B) × 10^(sb - sa); Q = floor(q × 10^(rscale + 1)) = A·10^k / B.
    let k = rscale + 1 + b.scale - a.scale;
    let mut numerator = a.digits.clone();
    let mut denominator = b.digits.clone();
    if k >= 0 {
        numerator.extend(std::iter::repeat_n(b'0', k as usize));
    } else {
        denominator.extend(std::iter::repeat_n(b'0', (-k) as usize));
    }
    let mut q = long_division(&numerator, &denominator);
    // Drop the extra digit, rounding half away from zero.
    let last = q.pop().unwrap_or(b'0');
    if last >= b'5' {
        increment(&mut q);
    }
    let leading = q.iter().take_while(|d| **d == b'0').count();
    q.drain(..leading);
    Dec {
        negative: (a.negative != b.negative) && !q.is_empty(),
        digits: q,
        scale: rscale,
        dscale: rscale,
    }
}

/// Decimal digit strings (no leading zeros) → the digits of floor(n / d). `d` is not zero.
fn long_division(n: &[u8], d: &[u8]) -> Vec<u8> {
    let mut quotient = Vec::with_capacity(n.len());
    let mut rem: Vec<u8> = Vec::with_capacity(d.len() + 1);
    for &digit in n {
        if !(rem.is_empty() && digit == b'0') {
            rem.push(digit);
        }
        let mut count = b'0';
        while !less(&rem, d) {
            subtract(&mut rem, d);
            count += 1;
        }
        quotient.push(count);
    }
    quotient
}

/// `a < b` for digit strings without leading zeros.
fn less(a: &[u8], b: &[u8]) -> bool {
    a.len() < b.len() || (a.len() == b.len() && a < b)
}

/// `a -= b` for digit strings without leading zeros, `a >= b`; strips leading zeros.
fn subtract(a: &mut Vec<u8>, b: &[u8]) {
    let offset = a.len() - b.len();
    let mut borrow = 0u8;
    for i in (0..a.len()).rev() {
        let sub = if i >= offset { b[i - offset] - b'0' } else { 0 } + borrow;
        if a[i] - b'0' >= sub {
            a[i] -= sub;
            borrow = 0;
        } else {
            a[i] = a[i] + 10 - sub;
            borrow = 1;
        }
    }
    let leading = a.iter().take_while(|d| **d == b'0').count();
    a.drain(..leading);
}

fn increment(digits: &mut Vec<u8>) {
    for d in digits.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return;
        }
    }
    digits.insert(0, b'1');
}

impl std::fmt::Display for Dec {
    /// The digits with exactly `dscale` decimals (rounding is the caller's business: the
    /// value must not have more significant decimals than that).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut digits = self.digits.clone();
        let mut scale = self.scale;
        if scale < 0 {
            if !digits.is_empty() {
                digits.extend(std::iter::repeat_n(b'0', (-scale) as usize));
            }
            scale = 0;
        }
        let scale = scale as usize;
        if digits.len() <= scale {
            let mut padded = vec![b'0'; scale + 1 - digits.len()];
            padded.extend(digits);
            digits = padded;
        }
        let (int, frac) = digits.split_at(digits.len() - scale);
        let mut frac = frac.to_vec();
        let dscale = self.dscale.max(0) as usize;
        if frac.len() > dscale {
            frac.truncate(dscale);
        }
        frac.extend(std::iter::repeat_n(b'0', dscale - frac.len()));
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str(&String::from_utf8_lossy(int))?;
        if !frac.is_empty() {
            f.write_str(".")?;
            f.write_str(&String::from_utf8_lossy(&frac))?;
        }
        Ok(())
    }
}

/// The running state of `avg(numeric)`: an exact sum while it fits, else a double.
#[derive(Debug, Default)]
pub struct AvgState {
    count: i64,
    /// Sum × 10^scale.
    sum: i128,
    scale: u32,
    dscale: i64,
    /// Set once the exact sum overflowed, or a NaN/infinity came in.
    float: Option<f64>,
}

const POW10: [i128; 39] = {
    let mut table = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

fn pow10(n: u32) -> Option<i128> {
    POW10.get(n as usize).copied()
}

impl AvgState {
    pub fn add(&mut self, v: &Operand) {
        let dec = match v {
            Operand::Null => return,
            Operand::Special(f) => {
                self.count += 1;
                self.float = Some(self.float_sum() + f);
                return;
            }
            Operand::Finite(d) => d,
        };
        self.count += 1;
        self.dscale = self.dscale.max(dec.dscale);
        if let Some(f) = &mut self.float {
            *f += as_f64(v);
            return;
        }
        if self.add_exact(dec).is_none() {
            self.float = Some(self.float_sum() + as_f64(v));
        }
    }

    fn float_sum(&self) -> f64 {
        self.float
            .unwrap_or_else(|| self.sum as f64 / 10f64.powi(self.scale as i32))
    }

    fn add_exact(&mut self, dec: &Dec) -> Option<()> {
        let scale = u32::try_from(dec.scale.max(0)).ok()?;
        let mut mantissa: i128 = if dec.digits.is_empty() {
            0
        } else {
            std::str::from_utf8(&dec.digits).ok()?.parse().ok()?
        };
        if dec.scale < 0 {
            mantissa = mantissa.checked_mul(pow10(u32::try_from(-dec.scale).ok()?)?)?;
        }
        if dec.negative {
            mantissa = -mantissa;
        }
        if scale > self.scale {
            self.sum = self.sum.checked_mul(pow10(scale - self.scale)?)?;
            self.scale = scale;
        } else {
            mantissa = mantissa.checked_mul(pow10(self.scale - scale)?)?;
        }
        self.sum = self.sum.checked_add(mantissa)?;
        Some(())
    }

    /// The average as Postgres prints it (`sum / count` with `numeric_div`'s scale).
    pub fn finish(&self) -> Result<Option<String>, DbError> {
        if self.count == 0 {
            return Ok(None);
        }
        let count = Operand::Finite(Dec::from_i128(i128::from(self.count)));
        match self.float {
            Some(sum) if !sum.is_finite() => divide(&Operand::Special(sum), &count),
            Some(sum) => {
                let mut dec = Dec::parse(&sum.to_string()).unwrap_or_else(Dec::zero);
                dec.dscale = dec.dscale.max(self.dscale);
                divide(&Operand::Finite(dec), &count)
            }
            None => {
                let mut dec = Dec::from_i128(self.sum);
                dec.scale = i64::from(self.scale);
                dec.dscale = self.dscale.max(i64::from(self.scale));
                divide(&Operand::Finite(dec), &count)
            }
        }
    }
}

/// Which member of the variance family an aggregate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    /// Divides by N - 1 (`var_samp`, `stddev_samp`) rather than N.
    pub sample: bool,
    /// The square root of the variance.
    pub stddev: bool,
}

impl Spread {
    /// The aggregate Postgres calls `name` (`stddev` and `variance` are the sample ones).
    pub fn named(name: &str) -> Option<Spread> {
        let (sample, stddev) = match name {
            "var_samp" | "variance" => (true, false),
            "var_pop" => (false, false),
            "stddev_samp" | "stddev" => (true, true),
            "stddev_pop" => (false, true),
            _ => return None,
        };
        Some(Spread { sample, stddev })
    }
}

/// The running state of the variance family over `numeric` (and integers): exact sums of
/// the values and of their squares, as Postgres's `NumericAggState` keeps them.
#[derive(Debug, Default)]
pub struct VarianceState {
    /// Finite values.
    count: i64,
    /// NaNs and infinities, which make the result NaN.
    specials: i64,
    /// Sum × 10^scale.
    sum: BigInt,
    /// Sum of squares × 10^(2·scale).
    squares: BigInt,
    scale: u32,
    /// The largest display scale of the values.
    dscale: i64,
}

fn pow10_big(n: u32) -> BigInt {
    BigInt::from(10u8).pow(n)
}

impl VarianceState {
    pub fn add(&mut self, v: &Operand) -> Result<(), DbError> {
        let dec = match v {
            Operand::Null => return Ok(()),
            Operand::Special(_) => {
                self.specials += 1;
                return Ok(());
            }
            Operand::Finite(d) => d,
        };
        self.count += 1;
        self.dscale = self.dscale.max(dec.dscale);
        let mut mantissa = BigInt::parse_bytes(&dec.digits, 10).unwrap_or_default();
        if dec.negative {
            mantissa = -mantissa;
        }
        let overflow = || DbError::new("22003", "value overflows numeric format");
        let scale = u32::try_from(dec.scale.max(0)).map_err(|_| overflow())?;
        if dec.scale < 0 {
            mantissa *= pow10_big(u32::try_from(-dec.scale).map_err(|_| overflow())?);
        }
        if scale > self.scale {
            let up = scale - self.scale;
            self.sum *= pow10_big(up);
            self.squares *= pow10_big(2 * up);
            self.scale = scale;
        } else {
            mantissa *= pow10_big(self.scale - scale);
        }
        self.squares += &mantissa * &mantissa;
        self.sum += mantissa;
        Ok(())
    }

    /// The result as Postgres's `numeric_stddev_internal` prints it: the numerator
    /// N·Σx² - (Σx)² is exact, the division rounds to `select_div_scale` decimals and the
    /// square root to the same.
    pub fn finish(&self, spread: Spread) -> Option<String> {
        let total = self.count + self.specials;
        if total == 0 || (spread.sample && total <= 1) {
            return None;
        }
        if self.specials > 0 {
            return Some("NaN".to_owned());
        }
        let n = BigInt::from(self.count);
        let numerator = &n * &self.squares - &self.sum * &self.sum;
        if numerator.sign() != Sign::Plus {
            return Some("0".to_owned());
        }
        let n = i128::from(self.count);
        let denominator = Dec::from_i128(if spread.sample { n * (n - 1) } else { n * n });
        let numerator = Dec {
            negative: false,
            digits: numerator.magnitude().to_string().into_bytes(),
            scale: 2 * i64::from(self.scale),
            dscale: 2 * self.dscale,
        };
        let rscale = div_scale(&numerator, &denominator);
        let variance = quotient(&numerator, &denominator, rscale);
        if !spread.stddev {
            return Some(variance.to_string());
        }
        Some(square_root(&variance, rscale).to_string())
    }
}

/// The square root of a non-negative `v`, rounded half up to `rscale` decimals as
/// `sqrt_var` rounds it: from the integer square root with one more decimal.
fn square_root(v: &Dec, rscale: i64) -> Dec {
    let value = BigUint::parse_bytes(&v.digits, 10).unwrap_or_default();
    // sqrt(digits / 10^scale) × 10^(rscale + 1) = sqrt(digits × 10^(2·rscale + 2 - scale)).
    let shift = 2 * rscale + 2 - v.scale;
    let scaled = match u32::try_from(shift) {
        Ok(up) => value * BigUint::from(10u8).pow(up),
        Err(_) => value / BigUint::from(10u8).pow(u32::try_from(-shift).unwrap_or(0)),
    };
    let root = (scaled.sqrt() + 5u8) / 10u8;
    let digits = if root == BigUint::default() {
        Vec::new()
    } else {
        root.to_string().into_bytes()
    };
    Dec {
        negative: false,
        digits,
        scale: rscale,
        dscale: rscale,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn div(a: &str, b: &str) -> String {
        let a = Operand::Finite(Dec::parse(a).unwrap());
        let b = Operand::Finite(Dec::parse(b).unwrap());
        divide(&a, &b).unwrap().unwrap()
    }

    #[test]
    fn division_follows_select_div_scale() {
        // Results checked against PostgreSQL 15.
        assert_eq!(div("7.0", "2"), "3.5000000000000000");
        assert_eq!(div("1.0", "3"), "0.33333333333333333333");
        assert_eq!(div("2", "3.0"), "0.66666666666666666667");
        assert_eq!(div("7.0", "7"), "1.00000000000000000000");
        assert_eq!(div("100000.0", "2"), "50000.000000000000");
        assert_eq!(div("210", "6"), "35.0000000000000000");
        assert_eq!(div("-1", "3"), "-0.33333333333333333333");
        assert_eq!(div("1.50", "0.5"), "3.0000000000000000");
        assert_eq!(div("0", "3"), "0.00000000000000000000");
        assert_eq!(
            div("1", "1e-20"),
            "100000000000000000000.00000000000000000000"
        );
        assert_eq!(div("10", "4"), "2.5000000000000000");
        assert_eq!(div("12345678.90", "3"), "4115226.300000000000");
    }

    #[test]
    fn zero_and_special_divisors() {
        let zero = Operand::Finite(Dec::zero());
        let one = Operand::Finite(Dec::from_i128(1));
        assert_eq!(divide(&one, &zero).unwrap_err().code, "22012");
        assert_eq!(divide(&Operand::Null, &zero).unwrap(), None);
        assert_eq!(
            divide(&Operand::Special(f64::INFINITY), &one).unwrap(),
            Some("Infinity".to_owned())
        );
    }

    #[test]
    fn avg_is_exact() {
        let mut state = AvgState::default();
        for v in [10, 20, 30, 40, 50, 60] {
            state.add(&operand(ValueRef::Integer(v), 0).unwrap());
        }
        assert_eq!(state.finish().unwrap().unwrap(), "35.0000000000000000");
        let mut state = AvgState::default();
        for v in [0.1, 0.2, 0.3] {
            state.add(&operand(ValueRef::Real(v), 2).unwrap());
        }
        assert_eq!(state.finish().unwrap().unwrap(), "0.20000000000000000000");
        assert_eq!(AvgState::default().finish().unwrap(), None);
    }

    fn spread(values: &[ValueRef<'_>], dscale: i64, name: &str) -> Option<String> {
        let mut state = VarianceState::default();
        for v in values {
            state.add(&operand(*v, dscale).unwrap()).unwrap();
        }
        state.finish(Spread::named(name).unwrap())
    }

    #[test]
    fn variance_follows_numeric_stddev_internal() {
        // Results checked against PostgreSQL 15.
        let ints = [ValueRef::Integer(10), ValueRef::Integer(20)];
        assert_eq!(
            spread(&ints, 0, "stddev").as_deref(),
            Some("7.0710678118654752")
        );
        assert_eq!(
            spread(&ints, 0, "var_samp").as_deref(),
            Some("50.0000000000000000")
        );
        let cents = [ValueRef::Real(1.25), ValueRef::Integer(2)];
        assert_eq!(
            spread(&cents, 2, "variance").as_deref(),
            Some("0.28125000000000000000")
        );
        assert_eq!(
            spread(&cents, 2, "stddev_samp").as_deref(),
            Some("0.53033008588991064330")
        );
        let one = [ValueRef::Integer(7)];
        assert_eq!(spread(&one, 0, "var_samp"), None);
        assert_eq!(spread(&one, 0, "stddev_pop").as_deref(), Some("0"));
        assert_eq!(spread(&[], 0, "var_pop"), None);
        let nan = [ValueRef::Integer(1), ValueRef::Text(b"NaN")];
        assert_eq!(spread(&nan, 0, "var_pop").as_deref(), Some("NaN"));
    }
}
