//! Date and time arithmetic on the text forms storage holds: `date ± integer`, `date - date`,
//! timestamps `±` intervals, timestamp differences, `date_trunc` and `extract`.
//!
//! A `timestamptz` is stored as its UTC instant (`...+00`); where Postgres works on its
//! fields, these functions take them from the wall-clock time in the session's `TimeZone`
//! (the thread's, see `mycelium_protocol::types::with_session_time_zone`), and read a date or
//! timestamp that stands for a `timestamptz` as a wall-clock time there.
//!
//! Postgres's `interval` has no storage type here: an interval (a value, or a column of type
//! `interval`) is carried as text in the form Postgres prints it (`1 day 02:00:00`), which
//! these functions parse back; clients see type 1186 and get `interval_send`'s bytes when they
//! ask for binary. Months, days and
//! microseconds stay separate as in Postgres, so `+ interval '1 month'` clamps to the end of
//! the month the way Postgres does.

use bytes::{BufMut, BytesMut};
use chrono::{Datelike, Duration, Months, NaiveDate, NaiveDateTime, Timelike};
use mycelium_protocol::types::{PgType, SqlValue, SqlValueRef, session_time_zone};
use mycelium_protocol::{DbError, Format};
use rusqlite::types::ValueRef;

use super::dates::{canonical_unit, unit_error};
use super::format_naive;

/// An interval parameter as storage keeps it: the text Postgres prints. Text input is read as
/// `interval_in` reads it; binary input is `interval_recv`'s (microseconds, days, months).
pub fn decode_interval_param(format: Format, bytes: &[u8]) -> Result<SqlValue, DbError> {
    let interval = match format {
        Format::Text => {
            let text = std::str::from_utf8(bytes).map_err(|_| {
                DbError::new("22021", "invalid byte sequence for encoding \"UTF8\"")
            })?;
            parse_interval(text)?
        }
        Format::Binary => {
            let invalid = || DbError::new("22P03", "invalid interval binary format");
            let (micros, rest) = bytes.split_first_chunk::<8>().ok_or_else(invalid)?;
            let (days, rest) = rest.split_first_chunk::<4>().ok_or_else(invalid)?;
            let (months, rest) = rest.split_first_chunk::<4>().ok_or_else(invalid)?;
            if !rest.is_empty() {
                return Err(invalid());
            }
            Interval {
                months: i64::from(i32::from_be_bytes(*months)),
                days: i64::from(i32::from_be_bytes(*days)),
                micros: i64::from_be_bytes(*micros),
            }
        }
    };
    Ok(SqlValue::Text(interval.format()))
}

/// `interval_send` of an interval stored as its text.
pub fn encode_interval_binary(value: SqlValueRef<'_>, out: &mut BytesMut) -> Result<(), DbError> {
    let SqlValueRef::Text(text) = value else {
        return Err(DbError::new(
            "22P03",
            "an interval is stored as text: cannot send another value as one",
        ));
    };
    let interval = parse_interval(text)?;
    let out_of_range = || DbError::new("22008", "interval out of range");
    out.put_i64(interval.micros);
    out.put_i32(i32::try_from(interval.days).map_err(|_| out_of_range())?);
    out.put_i32(i32::try_from(interval.months).map_err(|_| out_of_range())?);
    Ok(())
}

/// An interval as Postgres keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interval {
    pub months: i64,
    pub days: i64,
    pub micros: i64,
}

fn bad_interval(text: &str) -> DbError {
    DbError::new(
        "22007",
        format!("invalid input syntax for type interval: \"{text}\""),
    )
}

/// Parses Postgres interval input: `1 day 2 hours`, `-00:30:00`, `1 mon`, `@ 3 days ago`,
/// SQL's `1-2` (years-months) and `3 4:05:06` (days and a time), ISO 8601's
/// `P1Y2M3DT4H5M6S` and `P0001-02-03T04:05:06`.
pub fn parse_interval(text: &str) -> Result<Interval, DbError> {
    let mut out = Interval::default();
    let lower = text.trim().to_ascii_lowercase();
    if let Some(iso) = lower.strip_prefix('p') {
        return parse_iso8601(iso).ok_or_else(|| bad_interval(text));
    }
    let lower = lower.strip_prefix('@').unwrap_or(&lower).trim();
    let mut tokens: Vec<&str> = lower.split_whitespace().collect();
    let ago = tokens.last() == Some(&"ago");
    if ago {
        tokens.pop();
    }
    if tokens.is_empty() {
        return Err(bad_interval(text));
    }
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i];
        if token.contains(':') {
            out.micros += parse_clock(token).ok_or_else(|| bad_interval(text))?;
            i += 1;
            continue;
        }
        if let Some(months) = year_month(token, text)? {
            out.months += months;
            i += 1;
            continue;
        }
        // A number, with its unit attached (`2h`) or as the next token.
        let split = token
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(token.len());
        let (number, attached) = token.split_at(split);
        let value: f64 = number.parse().map_err(|_| bad_interval(text))?;
        let unit = if !attached.is_empty() {
            i += 1;
            attached
        } else {
            match tokens.get(i + 1) {
                // A number before a time of day counts days, as in SQL's `3 4:05:06`.
                Some(next) if next.contains(':') => {
                    i += 1;
                    "day"
                }
                Some(next) => {
                    i += 2;
                    next
                }
                None => {
                    i += 1;
                    "second"
                }
            }
        };
        out.add_unit(value, unit.trim_end_matches(','))
            .ok_or_else(|| bad_interval(text))?;
    }
    if ago {
        out = out.negate();
    }
    Ok(out)
}

/// SQL's `years-months` (`1-2`, `-1-2`: the sign covers both), in months.
fn year_month(token: &str, text: &str) -> Result<Option<i64>, DbError> {
    let (negative, body) = match token.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, token.strip_prefix('+').unwrap_or(token)),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some((years, months)) = body.split_once('-').filter(|(y, m)| digits(y) && digits(m)) else {
        return Ok(None);
    };
    let out_of_range = || {
        DbError::new(
            "22015",
            format!("interval field value out of range: \"{text}\""),
        )
    };
    let years: i64 = years.parse().map_err(|_| out_of_range())?;
    let months: i64 = months.parse().map_err(|_| out_of_range())?;
    if months >= 12 {
        return Err(out_of_range());
    }
    let total = years
        .checked_mul(12)
        .and_then(|m| m.checked_add(months))
        .ok_or_else(out_of_range)?;
    Ok(Some(if negative { -total } else { total }))
}

/// ISO 8601 after its `P`: designators (`1Y2M3DT4H5M6S`, `1W`, fractions allowed) or the
/// alternative format (`0001-02-03T04:05:06`).
fn parse_iso8601(body: &str) -> Option<Interval> {
    let mut out = Interval::default();
    let (date, time) = match body.split_once('t') {
        Some((date, time)) => (date, Some(time)),
        None => (body, None),
    };
    if date.is_empty() && time.is_none() {
        return None;
    }
    let plain = |s: &str| !s.is_empty() && !s.bytes().any(|b| b.is_ascii_alphabetic());
    if plain(date) {
        let fields: Vec<i64> = date
            .split('-')
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let (years, months, days) = match fields.as_slice() {
            [y] => (*y, 0, 0),
            [y, m] => (*y, *m, 0),
            [y, m, d] => (*y, *m, *d),
            _ => return None,
        };
        out.months += years * 12 + months;
        out.days += days;
    } else {
        designators(date, &mut out, |c| match c {
            'y' => Some("year"),
            'm' => Some("month"),
            'w' => Some("week"),
            'd' => Some("day"),
            _ => None,
        })?;
    }
    match time {
        Some(time) if plain(time) => out.micros += parse_clock(time)?,
        Some(time) => designators(time, &mut out, |c| match c {
            'h' => Some("hour"),
            'm' => Some("minute"),
            's' => Some("second"),
            _ => None,
        })?,
        None => {}
    }
    Some(out)
}

/// `<number><designator>...` into `out`, each designator read as the unit `unit` names.
fn designators(
    mut text: &str,
    out: &mut Interval,
    unit: impl Fn(char) -> Option<&'static str>,
) -> Option<()> {
    while !text.is_empty() {
        let end = text.find(|c: char| c.is_ascii_alphabetic())?;
        let value: f64 = text[..end].parse().ok()?;
        let designator = text[end..].chars().next()?;
        out.add_unit(value, unit(designator)?)?;
        text = &text[end + designator.len_utf8()..];
    }
    Some(())
}

fn parse_clock(token: &str) -> Option<i64> {
    let (negative, body) = match token.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, token.strip_prefix('+').unwrap_or(token)),
    };
    let parts: Vec<&str> = body.split(':').collect();
    let (h, m, s) = match parts.as_slice() {
        [h, m] => (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?, 0.0),
        [h, m, s] => (
            h.parse::<i64>().ok()?,
            m.parse::<i64>().ok()?,
            s.parse::<f64>().ok()?,
        ),
        _ => return None,
    };
    let micros = (h * 3600 + m * 60) * 1_000_000 + (s * 1e6).round() as i64;
    Some(if negative { -micros } else { micros })
}

impl Interval {
    /// Adds `value` of `unit` as Postgres's DecodeInterval does: the whole part exactly, the
    /// fraction cascaded into the next smaller fields and rounded half to even to
    /// microseconds. None for a unit it does not know.
    fn add_unit(&mut self, value: f64, unit: &str) -> Option<()> {
        let (whole, fraction) = (value.trunc() as i64, value.fract());
        let mut micros = |scale: i64| {
            self.micros += whole * scale + (fraction * scale as f64).round_ties_even() as i64
        };
        match unit {
            "microsecond" | "microseconds" | "us" | "usec" | "usecs" => micros(1),
            "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => micros(1_000),
            "second" | "seconds" | "sec" | "secs" | "s" => micros(1_000_000),
            "minute" | "minutes" | "min" | "mins" | "m" => micros(60_000_000),
            "hour" | "hours" | "hr" | "hrs" | "h" => micros(3_600_000_000),
            "day" | "days" | "d" => {
                self.days += whole;
                self.micros += (fraction * 86_400e6).round_ties_even() as i64;
            }
            "week" | "weeks" | "w" => {
                self.days += whole * 7;
                self.add_fractional_days(fraction * 7.0);
            }
            "month" | "months" | "mon" | "mons" => {
                self.months += whole;
                self.add_fractional_days(fraction * 30.0);
            }
            "year" | "years" | "yr" | "yrs" | "y" => self.add_years(whole, fraction, 1),
            "decade" | "decades" | "dec" | "decs" => self.add_years(whole, fraction, 10),
            "century" | "centuries" | "c" | "cent" => self.add_years(whole, fraction, 100),
            "millennium" | "millennia" | "mil" | "mils" => self.add_years(whole, fraction, 1000),
            _ => return None,
        }
        Some(())
    }

    /// Whole days into days, what is left into microseconds.
    fn add_fractional_days(&mut self, days: f64) {
        let whole = days.trunc();
        self.days += whole as i64;
        self.micros += ((days - whole) * 86_400e6).round_ties_even() as i64;
    }

    /// Years of `scale` years each; a fraction of them becomes whole months.
    fn add_years(&mut self, whole: i64, fraction: f64, scale: i64) {
        self.months +=
            whole * scale * 12 + (fraction * (scale * 12) as f64).round_ties_even() as i64;
    }

    pub fn negate(self) -> Interval {
        Interval {
            months: -self.months,
            days: -self.days,
            micros: -self.micros,
        }
    }

    /// Postgres's output (IntervalStyle `postgres`). A positive field right after a
    /// negative one carries a `+` (`-1 days +02:00:00`), as `EncodeInterval` writes it.
    pub fn format(&self) -> String {
        let mut out = String::new();
        let mut after_negative = false;
        let (years, months) = (self.months / 12, self.months % 12);
        for (n, unit) in [(years, "year"), (months, "mon"), (self.days, "day")] {
            if n == 0 {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            if after_negative && n > 0 {
                out.push('+');
            }
            out.push_str(&format!("{n} {unit}{}", if n == 1 { "" } else { "s" }));
            after_negative = n < 0;
        }
        if self.micros != 0 || out.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            let sign = if self.micros < 0 {
                "-"
            } else if after_negative {
                "+"
            } else {
                ""
            };
            let total = self.micros.unsigned_abs();
            let (secs, frac) = (total / 1_000_000, total % 1_000_000);
            out.push_str(&format!(
                "{sign}{:02}:{:02}:{:02}",
                secs / 3600,
                (secs / 60) % 60,
                secs % 60
            ));
            if frac != 0 {
                out.push_str(format!(".{frac:06}").trim_end_matches('0'));
            }
        }
        out
    }
}

pub(crate) fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim();
    // Storage writes years before 1 AD as Postgres prints them: `0044-03-15 BC` is year -43.
    if let Some(ad) = t.strip_suffix(" BC") {
        let t = parse_datetime(ad)?;
        return t.with_year(1 - t.year());
    }
    let t = t.strip_suffix("+00").unwrap_or(t);
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, format) {
            return Some(dt);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0);
    }
    let t = t.strip_suffix('Z').unwrap_or(t);
    NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").ok()
}

/// 2000-01-01 00:00, from which the session zone counts its instants.
fn pg_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// Seconds east of UTC of the session's `TimeZone` at the UTC instant `utc`.
pub fn session_offset(utc: NaiveDateTime) -> i64 {
    let zone = session_time_zone();
    if zone.is_utc() {
        return 0;
    }
    match (utc - pg_epoch()).num_microseconds() {
        Some(micros) => zone.offset_at(micros),
        // Beyond ±292,000 years from 2000 only a fixed zone has a known offset.
        None => zone.offset_at(0),
    }
}

/// The wall-clock time in the session's `TimeZone` of the UTC instant `utc`.
pub fn local_from_utc(utc: NaiveDateTime) -> NaiveDateTime {
    utc.checked_add_signed(Duration::seconds(session_offset(utc)))
        .unwrap_or(utc)
}

/// The UTC instant of the wall-clock time `local` in the session's `TimeZone`, with
/// Postgres's rules for the times a daylight saving change skips or repeats.
pub fn utc_from_local(local: NaiveDateTime) -> NaiveDateTime {
    let zone = session_time_zone();
    if zone.is_utc() {
        return local;
    }
    let Some(micros) = (local - pg_epoch()).num_microseconds() else {
        return local;
    };
    local
        .checked_sub_signed(Duration::microseconds(micros - zone.utc_from_local(micros)))
        .unwrap_or(local)
}

/// Whether stored date/time text is a `timestamptz`: storage writes those, and only those,
/// with the UTC offset `+00`.
pub fn is_utc_text(text: &str) -> bool {
    let t = text.trim();
    t.strip_suffix(" BC").unwrap_or(t).ends_with("+00")
}

/// The UTC instant a stored date/time text stands for where a `timestamptz` is expected: a
/// `timestamptz` is one already; a date or timestamp is a wall-clock time in the session's
/// zone, as Postgres's implicit cast to `timestamptz` reads it.
pub fn parse_instant(text: &str) -> Option<NaiveDateTime> {
    let t = parse_datetime(text)?;
    Some(if is_utc_text(text) {
        t
    } else {
        utc_from_local(t)
    })
}

fn text_arg(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        _ => None,
    }
}

fn datetime_arg(v: ValueRef<'_>) -> Result<Option<NaiveDateTime>, DbError> {
    read_arg(v, parse_datetime)
}

/// A `timestamptz` argument as its UTC instant (see [`parse_instant`]).
fn instant_arg(v: ValueRef<'_>) -> Result<Option<NaiveDateTime>, DbError> {
    read_arg(v, parse_instant)
}

fn read_arg(
    v: ValueRef<'_>,
    parse: fn(&str) -> Option<NaiveDateTime>,
) -> Result<Option<NaiveDateTime>, DbError> {
    match v {
        ValueRef::Null => Ok(None),
        other => {
            let text = text_arg(other).unwrap_or_default();
            parse(&text).map(Some).ok_or_else(|| {
                DbError::new(
                    "22007",
                    format!("invalid input syntax for type timestamp: \"{text}\""),
                )
            })
        }
    }
}

/// Formats a date/time as storage holds values of `ty`, which is how Postgres prints it
/// (years before 1 AD as `0044-03-15 BC`).
pub fn format_as(t: NaiveDateTime, ty: PgType) -> String {
    let bc = t.year() <= 0;
    let t = if bc {
        t.with_year(1 - t.year()).unwrap_or(t)
    } else {
        t
    };
    let text = match ty {
        PgType::Date => t.format("%Y-%m-%d").to_string(),
        PgType::Time => return format_naive(t).get(11..).unwrap_or("").to_owned(),
        PgType::Timestamptz => format!("{}+00", format_naive(t)),
        _ => format_naive(t),
    };
    if bc { format!("{text} BC") } else { text }
}

fn out_of_range() -> DbError {
    DbError::new("22008", "timestamp out of range")
}

pub fn add_interval(t: NaiveDateTime, iv: Interval) -> Result<NaiveDateTime, DbError> {
    let t = if iv.months >= 0 {
        t.checked_add_months(Months::new(
            u32::try_from(iv.months).map_err(|_| out_of_range())?,
        ))
    } else {
        t.checked_sub_months(Months::new(
            u32::try_from(-iv.months).map_err(|_| out_of_range())?,
        ))
    }
    .ok_or_else(out_of_range)?;
    t.checked_add_signed(Duration::days(iv.days))
        .and_then(|t| t.checked_add_signed(Duration::microseconds(iv.micros)))
        .ok_or_else(out_of_range)
}

/// `timestamptz + interval` as Postgres's `timestamptz_pl_interval` adds it to the UTC instant
/// `utc`: the months, then the days, on the session zone's clock (a day across a daylight
/// saving change is 23 or 25 hours, and keeps the time of day), then the time exactly.
pub fn add_interval_in_zone(utc: NaiveDateTime, iv: Interval) -> Result<NaiveDateTime, DbError> {
    let mut t = utc;
    for step in [
        Interval {
            months: iv.months,
            ..Interval::default()
        },
        Interval {
            days: iv.days,
            ..Interval::default()
        },
    ] {
        if step != Interval::default() {
            t = utc_from_local(add_interval(local_from_utc(t), step)?);
        }
    }
    t.checked_add_signed(Duration::microseconds(iv.micros))
        .ok_or_else(out_of_range)
}

/// `timestamp ± interval` (sign ±1), formatted as `result_type`; a `timestamptz` moves as
/// [`add_interval_in_zone`] moves it.
pub fn timestamp_plus_interval(
    t: ValueRef<'_>,
    interval: ValueRef<'_>,
    sign: i64,
    result_type: PgType,
) -> Result<Option<String>, DbError> {
    let zoned = result_type == PgType::Timestamptz;
    let t = if zoned {
        instant_arg(t)?
    } else {
        datetime_arg(t)?
    };
    let (Some(t), Some(iv)) = (t, text_arg(interval)) else {
        return Ok(None);
    };
    let mut iv = parse_interval(&iv)?;
    if sign < 0 {
        iv = iv.negate();
    }
    let moved = if zoned {
        add_interval_in_zone(t, iv)?
    } else {
        add_interval(t, iv)?
    };
    Ok(Some(format_as(moved, result_type)))
}

/// `a - b` for timestamps: days and time, as Postgres justifies it (no months). When one side
/// is a `timestamptz`, the other is read as a wall-clock time in the session's zone.
pub fn timestamp_difference(a: ValueRef<'_>, b: ValueRef<'_>) -> Result<Option<String>, DbError> {
    let zoned = [a, b]
        .iter()
        .any(|v| matches!(v, ValueRef::Text(t) if is_utc_text(&String::from_utf8_lossy(t))));
    let read = if zoned { instant_arg } else { datetime_arg };
    let (Some(a), Some(b)) = (read(a)?, read(b)?) else {
        return Ok(None);
    };
    let micros = (a - b).num_microseconds().ok_or_else(out_of_range)?;
    let day = 86_400_000_000;
    Ok(Some(
        Interval {
            months: 0,
            days: micros / day,
            micros: micros % day,
        }
        .format(),
    ))
}

pub fn date_plus_days(d: ValueRef<'_>, days: ValueRef<'_>) -> Result<Option<String>, DbError> {
    let Some(t) = datetime_arg(d)? else {
        return Ok(None);
    };
    let days = match days {
        ValueRef::Integer(n) => n,
        ValueRef::Null => return Ok(None),
        _ => {
            return Err(DbError::new(
                "42883",
                "operator does not exist: date + non-integer",
            ));
        }
    };
    let t = t
        .checked_add_signed(Duration::days(days))
        .ok_or_else(out_of_range)?;
    Ok(Some(format_as(t, PgType::Date)))
}

pub fn date_difference(a: ValueRef<'_>, b: ValueRef<'_>) -> Result<Option<i64>, DbError> {
    let (Some(a), Some(b)) = (datetime_arg(a)?, datetime_arg(b)?) else {
        return Ok(None);
    };
    Ok(Some((a.date() - b.date()).num_days()))
}

/// `date_trunc(field, value)`, the result in the storage form of `ty`. A `timestamptz` is
/// truncated on the session zone's clock, as `timestamptz_trunc` does: from `day` up the
/// truncated wall-clock time gets the offset in force then, below it keeps the value's own
/// offset (so truncating within a repeated hour stays in it).
pub fn date_trunc(field: &str, v: ValueRef<'_>, ty: PgType) -> Result<Option<String>, DbError> {
    if ty != PgType::Timestamptz {
        let Some(t) = datetime_arg(v)? else {
            return Ok(None);
        };
        return Ok(truncate(field, t)?.map(|t| format_as(t, ty)));
    }
    let Some(utc) = instant_arg(v)? else {
        return Ok(None);
    };
    let offset = Duration::seconds(session_offset(utc));
    let local = utc.checked_add_signed(offset).ok_or_else(out_of_range)?;
    let Some(truncated) = truncate(field, local)? else {
        return Ok(None);
    };
    let below_day = matches!(
        field.to_ascii_lowercase().as_str(),
        "microseconds" | "milliseconds" | "second" | "minute" | "hour"
    );
    let utc = if below_day {
        truncated
            .checked_sub_signed(offset)
            .ok_or_else(out_of_range)?
    } else {
        utc_from_local(truncated)
    };
    Ok(Some(format_as(utc, ty)))
}

/// `t` truncated to the start of its `field` (`day`, `month`, ...).
pub fn truncate(field: &str, t: NaiveDateTime) -> Result<Option<NaiveDateTime>, DbError> {
    let date = t.date();
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0);
    let truncated = match field.to_ascii_lowercase().as_str() {
        "microseconds" => Some(t),
        "milliseconds" => t.with_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000),
        "second" => t.with_nanosecond(0),
        "minute" => t.with_nanosecond(0).and_then(|t| t.with_second(0)),
        "hour" => t
            .with_nanosecond(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_minute(0)),
        "day" => midnight(date),
        "week" => midnight(date - Duration::days(i64::from(date.weekday().num_days_from_monday()))),
        "month" => date.with_day(1).and_then(midnight),
        "quarter" => NaiveDate::from_ymd_opt(date.year(), (date.month() - 1) / 3 * 3 + 1, 1)
            .and_then(midnight),
        "year" => NaiveDate::from_ymd_opt(date.year(), 1, 1).and_then(midnight),
        "decade" => NaiveDate::from_ymd_opt(date.year() - date.year().rem_euclid(10), 1, 1)
            .and_then(midnight),
        "century" => NaiveDate::from_ymd_opt((date.year() - 1).div_euclid(100) * 100 + 1, 1, 1)
            .and_then(midnight),
        "millennium" => {
            NaiveDate::from_ymd_opt((date.year() - 1).div_euclid(1000) * 1000 + 1, 1, 1)
                .and_then(midnight)
        }
        other => {
            return Err(DbError::new(
                "22023",
                format!("unit \"{other}\" not recognized for type timestamp"),
            ));
        }
    };
    Ok(truncated)
}

/// `time ± interval`: the time of day moved by the interval's time part, wrapping around
/// midnight; months and days do not move a time of day.
pub fn time_plus_interval(time: &str, iv: Interval, sign: i64) -> Result<String, DbError> {
    let time = parse_interval(time)?;
    let micros = (time.micros + sign * (iv.micros % 86_400_000_000)).rem_euclid(86_400_000_000);
    Ok(Interval {
        micros,
        ..Interval::default()
    }
    .format())
}

/// Converts between date/time types through their storage text, as Postgres casts them: a
/// `timestamptz` becomes the wall-clock date or time in the session's zone, and a date or
/// timestamp becomes a `timestamptz` read as a wall-clock time there.
pub fn convert(v: &str, from: PgType, to: PgType) -> Option<String> {
    let t = match (from, to) {
        (PgType::Timestamptz, PgType::Timestamptz) => parse_instant(v)?,
        (PgType::Timestamptz, _) => local_from_utc(parse_instant(v)?),
        (_, PgType::Timestamptz) => utc_from_local(parse_datetime(v)?),
        _ => parse_datetime(v)?,
    };
    Some(format_as(t, to))
}

/// `extract(field from value)` of a date, timestamp or timestamptz (`source`; None when not
/// known, read as a timestamp), as Postgres's `timestamp_part_common` and `date_part`.
pub fn date_part(
    field: &str,
    v: ValueRef<'_>,
    source: Option<PgType>,
) -> Result<Option<f64>, DbError> {
    let text = match v {
        ValueRef::Null => return Ok(None),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        _ => {
            return Err(DbError::new(
                "42883",
                "function date_part(text, number) does not exist",
            ));
        }
    };
    let unit = field.to_ascii_lowercase();
    let type_name = source.map_or("timestamp", PgType::name);
    let Some(canonical) = canonical_unit(&unit) else {
        return Err(unit_error(&unit, type_name, false));
    };
    let zoned = source == Some(PgType::Timestamptz);
    let unsupported = match canonical {
        "timezone" | "timezone_h" | "timezone_m" => !zoned,
        "hour" | "minute" | "second" | "milliseconds" | "microseconds" => {
            source == Some(PgType::Date)
        }
        _ => false,
    };
    if unsupported {
        return Err(unit_error(&unit, type_name, true));
    }
    if is_infinite_text(&text) {
        return Ok(infinite_part(canonical, text.trim().starts_with('-')));
    }
    let parsed = if zoned {
        parse_instant(&text)
    } else {
        parse_datetime(&text)
    };
    let Some(instant) = parsed else {
        return Err(DbError::new(
            "22007",
            format!("invalid input syntax for type timestamp: \"{text}\""),
        ));
    };
    // A timestamptz's fields are those of its wall-clock time in the session's zone.
    let offset = if zoned { session_offset(instant) } else { 0 };
    let dt = instant
        .checked_add_signed(Duration::seconds(offset))
        .ok_or_else(out_of_range)?;
    let seconds = f64::from(dt.second()) + f64::from(dt.nanosecond() / 1000) / 1e6;
    let value = match canonical {
        "epoch" => {
            instant.and_utc().timestamp() as f64
                + f64::from(instant.and_utc().timestamp_subsec_micros()) / 1e6
        }
        // Chrono counts 1 BC as year 0, as Postgres does inside; Postgres answers -1 for it.
        "year" if dt.year() <= 0 => f64::from(dt.year() - 1),
        "year" => f64::from(dt.year()),
        "month" => f64::from(dt.month()),
        "day" => f64::from(dt.day()),
        "hour" => f64::from(dt.hour()),
        "minute" => f64::from(dt.minute()),
        "second" => seconds,
        "milliseconds" => seconds * 1000.0,
        "microseconds" => seconds * 1e6,
        "dow" => f64::from(dt.weekday().num_days_from_sunday()),
        "isodow" => f64::from(dt.weekday().number_from_monday()),
        "doy" => f64::from(dt.ordinal()),
        "quarter" => f64::from((dt.month() - 1) / 3 + 1),
        "week" => f64::from(dt.iso_week().week()),
        "isoyear" if dt.iso_week().year() <= 0 => f64::from(dt.iso_week().year() - 1),
        "isoyear" => f64::from(dt.iso_week().year()),
        "decade" if dt.year() < 0 => f64::from(-((8 - (dt.year() - 1)) / 10)),
        "decade" => f64::from(dt.year() / 10),
        "century" if dt.year() <= 0 => f64::from(-((99 - (dt.year() - 1)) / 100)),
        "century" => f64::from((dt.year() + 99) / 100),
        "millennium" if dt.year() <= 0 => f64::from(-((999 - (dt.year() - 1)) / 1000)),
        "millennium" => f64::from((dt.year() + 999) / 1000),
        // The session zone's offset at that instant, east positive; hours and minutes
        // truncate toward zero as Postgres's integer division does.
        "timezone" => offset as f64,
        "timezone_h" => (offset / 3600) as f64,
        "timezone_m" => (offset / 60 % 60) as f64,
        // Julian day numbers of timestamps carry the time as a fraction whose numeric scale
        // Postgres derives from the division; only dates' whole days are answered.
        "julian" if source == Some(PgType::Date) => {
            f64::from(dt.date().num_days_from_ce() + 1_721_425)
        }
        _ => {
            return Err(crate::errors::unsupported(format!(
                "extract({unit} from {type_name})"
            )));
        }
    };
    Ok(Some(value))
}

fn is_infinite_text(text: &str) -> bool {
    matches!(text.trim(), "infinity" | "-infinity")
}

/// A field of an infinite timestamp, as Postgres's `NonFiniteTimestampTzPart`: the fields
/// that grow with time are infinite too, the others have no value.
fn infinite_part(canonical: &str, negative: bool) -> Option<f64> {
    let infinity = if negative {
        f64::NEG_INFINITY
    } else {
        f64::INFINITY
    };
    matches!(
        canonical,
        "year" | "decade" | "century" | "millennium" | "julian" | "isoyear" | "epoch"
    )
    .then_some(infinity)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_and_print_like_postgres() {
        let iv = |s: &str| parse_interval(s).unwrap();
        assert_eq!(iv("1 day 2 hours").format(), "1 day 02:00:00");
        assert_eq!(iv("30 minutes").format(), "00:30:00");
        assert_eq!(iv("-00:30:00").format(), "-00:30:00");
        assert_eq!(iv("1 month").format(), "1 mon");
        assert_eq!(
            iv("2 years 3 mons 4 days").format(),
            "2 years 3 mons 4 days"
        );
        assert_eq!(iv("1.5 seconds").format(), "00:00:01.5");
        assert_eq!(iv("3 days ago").format(), "-3 days");
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn month_arithmetic_clamps_like_postgres() {
        let t = parse_datetime("2024-01-31 10:00:00").unwrap();
        let r = add_interval(t, parse_interval("1 month").unwrap()).unwrap();
        assert_eq!(format_as(r, PgType::Timestamp), "2024-02-29 10:00:00");
    }
}
