//! `date`, `time`, `timestamp` and `timestamptz`: ISO 8601 input, Postgres's ISO output with the
//! session time zone at UTC, and the integer binary forms (days / microseconds since
//! 2000-01-01).

use bytes::{BufMut, BytesMut};

use super::name::time_precision;
use super::scalar::format_f64;
use super::zone::{TimeZone, format_offset, session_time_zone};
use super::{PgType, SqlValue, SqlValueRef, bad_stored, invalid_binary, trim_pg, utf8};
use crate::DbError;

const USECS_PER_SEC: i64 = 1_000_000;
const USECS_PER_DAY: i64 = 86_400 * USECS_PER_SEC;
/// Days from the Unix epoch to the Postgres epoch, 2000-01-01.
const UNIX_TO_PG_DAYS: i64 = 10_957;
/// Postgres's date range in days since 2000-01-01: from 4714-11-24 BC (Julian day 0) up to,
/// not including, Julian day 2147483494.
const MIN_DATE: i64 = -2_451_545;
const END_DATE: i64 = 2_147_483_494 - 2_451_545;
/// Postgres's timestamp range in microseconds: 4714-11-24 BC up to 294277-01-01.
const MIN_TIMESTAMP: i64 = -211_813_488_000_000_000;
const END_TIMESTAMP: i64 = 9_223_371_331_200_000_000;
/// The largest time zone offset Postgres accepts, in hours.
const MAX_OFFSET_HOURS: i64 = 15;

/// A parsed value: days for `date`, microseconds for the others (since midnight for `time`,
/// since 2000-01-01 UTC for the timestamps).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    NegInfinity,
    Finite(i64),
    Infinity,
}

#[derive(Debug, Clone, PartialEq)]
enum ParseError {
    Syntax,
    FieldRange,
    DateRange,
    TimestampRange,
    Displacement,
    UnknownZone(String),
}

impl ParseError {
    fn into_db(self, ty: PgType, input: &str) -> DbError {
        match self {
            ParseError::Syntax => DbError::new(
                "22007",
                format!(
                    "invalid input syntax for type {}: \"{input}\"",
                    message_name(ty)
                ),
            ),
            ParseError::FieldRange => DbError::new(
                "22008",
                format!("date/time field value out of range: \"{input}\""),
            ),
            ParseError::DateRange => {
                DbError::new("22008", format!("date out of range: \"{input}\""))
            }
            ParseError::TimestampRange => {
                DbError::new("22008", format!("timestamp out of range: \"{input}\""))
            }
            ParseError::Displacement => DbError::new(
                "22008",
                format!("time zone displacement out of range: \"{input}\""),
            ),
            ParseError::UnknownZone(zone) => {
                DbError::new("22023", format!("time zone \"{zone}\" not recognized"))
            }
        }
    }
}

/// The type names Postgres's date/time input errors use.
fn message_name(ty: PgType) -> &'static str {
    match ty {
        PgType::Date => "date",
        PgType::Time => "time",
        PgType::Timestamp => "timestamp",
        _ => "timestamp with time zone",
    }
}

// ---------------------------------------------------------------------------------------------
// Calendar arithmetic (proleptic Gregorian, astronomical years: 1 BC is year 0).

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year.rem_euclid(4) == 0
            && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0) =>
        {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn now_micros() -> i64 {
    let since_unix = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    };
    since_unix - UNIX_TO_PG_DAYS * USECS_PER_DAY
}

// ---------------------------------------------------------------------------------------------
// Input

/// The fields found in an input string, already validated.
#[derive(Debug, Default)]
struct Fields {
    /// Days since 2000-01-01.
    days: Option<i64>,
    /// Microseconds since midnight; up to a whole day (`24:00:00`).
    time: Option<i64>,
    /// Seconds east of UTC.
    offset: Option<i64>,
    /// A zone named in the input (`2024-06-01 10:00 Europe/Paris`), instead of an offset.
    zone: Option<TimeZone>,
}

enum Parsed {
    NegInfinity,
    Infinity,
    Fields(Fields),
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    /// A run of digits as (value, count); the value saturates, its count tells the caller.
    fn digits(&mut self) -> (i64, usize) {
        let start = self.i;
        let mut v: i64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            v = v.saturating_mul(10).saturating_add(i64::from(c - b'0'));
            self.i += 1;
        }
        (v, self.i - start)
    }

    fn word(&mut self) -> &str {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'_'))
        {
            self.i += 1;
        }
        std::str::from_utf8(&self.b[start..self.i]).unwrap_or_default()
    }
}

/// Parses the ISO 8601 forms Postgres reads: `YYYY-MM-DD`, `MM-DD-YYYY` (when the first field
/// has at most two digits), or `YYYYMMDD`, then optionally `[ T]HH:MM[:SS[.f]]`, `HHMMSS` or
/// `HHMM`, then an offset (`Z`, `UTC`, `+HH`, `+HH:MM`, `-HHMM`, ...)
/// and an era (`BC`/`AD`); plus `infinity`, `-infinity`, `epoch`, `allballs`, and when
/// `relative` is set `now`, `today`, `tomorrow`, `yesterday`.
fn parse_fields(
    input: &str,
    relative: bool,
    for_time: bool,
    zone: TimeZone,
) -> Result<Parsed, ParseError> {
    let s = trim_pg(input).to_ascii_lowercase();
    let day_of = |micros: i64| micros.div_euclid(USECS_PER_DAY);
    let special = match s.as_str() {
        "infinity" | "+infinity" => return Ok(Parsed::Infinity),
        "-infinity" => return Ok(Parsed::NegInfinity),
        "epoch" if !for_time => Some(Fields {
            days: Some(-UNIX_TO_PG_DAYS),
            time: Some(0),
            offset: Some(0),
            zone: None,
        }),
        "allballs" => Some(Fields {
            days: None,
            time: Some(0),
            offset: Some(0),
            zone: None,
        }),
        "now" if relative => {
            let now = now_micros();
            Some(Fields {
                days: Some(day_of(now)),
                time: Some(now.rem_euclid(USECS_PER_DAY)),
                offset: Some(0),
                zone: None,
            })
        }
        // Midnight of the zone's current day (the offset is left to the zone).
        "today" | "tomorrow" | "yesterday" if relative => {
            let shift = match s.as_str() {
                "tomorrow" => 1,
                "yesterday" => -1,
                _ => 0,
            };
            let now = now_micros();
            let local = now + zone.offset_at(now) * USECS_PER_SEC;
            Some(Fields {
                days: Some(day_of(local) + shift),
                time: None,
                offset: None,
                zone: None,
            })
        }
        _ => None,
    };
    if let Some(fields) = special {
        return Ok(Parsed::Fields(fields));
    }

    let mut c = Cursor {
        b: s.as_bytes(),
        i: 0,
    };
    let mut fields = Fields::default();

    // Date. `ymd` holds the year, whether it was written with at most two digits, month, day.
    let mut ymd = None;
    let (first, first_len) = c.digits();
    if first_len > 0 && c.peek() == Some(b'-') {
        c.i += 1;
        let (second, second_len) = c.digits();
        if !c.eat(b'-') {
            return Err(ParseError::Syntax);
        }
        let (third, third_len) = c.digits();
        // A first field of three or more digits is the year (ISO order); otherwise the
        // order is month-day-year, as with Postgres's default DateStyle (ISO, MDY).
        let (year, year_len, month, day, field_lens) = if first_len >= 3 {
            (first, first_len, second, third, [second_len, third_len])
        } else {
            (third, third_len, first, second, [first_len, second_len])
        };
        if !(1..=9).contains(&year_len) || field_lens.iter().any(|l| !(1..=2).contains(l)) {
            return Err(ParseError::Syntax);
        }
        ymd = Some((year, year_len <= 2, month, day));
    } else if !for_time
        && (6..=13).contains(&first_len)
        && matches!(c.peek(), None | Some(b't' | b' ' | b'+' | b'-'))
    {
        // Digits only: the last four are month and day, the rest the year.
        ymd = Some((
            first / 10_000,
            first_len == 6,
            first / 100 % 100,
            first % 100,
        ));
    } else {
        c.i = 0;
    }

    // Time.
    let date_present = ymd.is_some();
    let t_separator = date_present && c.eat(b't');
    if date_present && !t_separator {
        c.skip_spaces();
    }
    if c.peek().is_some_and(|b| b.is_ascii_digit()) {
        fields.time = Some(parse_time(&mut c)?);
    } else if t_separator {
        return Err(ParseError::Syntax);
    }

    // Offset and era, in either order.
    let mut bc = None;
    loop {
        c.skip_spaces();
        let spaced = c.i > 0 && c.b[c.i - 1].is_ascii_whitespace();
        match c.peek() {
            None => break,
            // Right after a date, a sign would read as a fourth date field.
            Some(b'+' | b'-') if fields.offset.is_none() && (spaced || fields.time.is_some()) => {
                fields.offset = Some(parse_offset(&mut c)?);
            }
            Some(b'a'..=b'z') => {
                let word = c.word().to_owned();
                match word.as_str() {
                    "bc" | "ad" if bc.is_none() => bc = Some(word == "bc"),
                    "z" | "utc" | "gmt" | "zulu" | "ut" if fields.offset.is_none() => {
                        fields.offset = Some(0);
                    }
                    // Like Postgres: a word with a slash names a zone, other words are junk.
                    _ if word.contains('/') && fields.offset.is_none() && fields.zone.is_none() => {
                        match TimeZone::parse(&word) {
                            Ok((zone, _)) => fields.zone = Some(zone),
                            Err(_) => return Err(ParseError::UnknownZone(word)),
                        }
                    }
                    _ => return Err(ParseError::Syntax),
                }
            }
            Some(_) => return Err(ParseError::Syntax),
        }
    }

    if let Some((year, two_digit_year, month, day)) = ymd {
        let year = match bc {
            Some(true) if year >= 1 => 1 - year,
            Some(true) => return Err(ParseError::FieldRange),
            // Postgres reads a one- or two-digit year as 1970..2069.
            _ if two_digit_year && year < 70 => year + 2000,
            _ if two_digit_year => year + 1900,
            _ if year >= 1 => year,
            _ => return Err(ParseError::FieldRange),
        };
        if !(1..=12).contains(&month) || !(1..=days_in_month(year, month)).contains(&day) {
            return Err(ParseError::FieldRange);
        }
        fields.days = Some(days_from_civil(year, month, day) - UNIX_TO_PG_DAYS);
    }
    if fields.days.is_none() && fields.time.is_none() {
        return Err(ParseError::Syntax);
    }
    Ok(Parsed::Fields(fields))
}

/// `HH:MM[:SS[.fraction]]`, `HHMMSS[.fraction]` or `HHMM`, in microseconds, rounded to the microsecond.
fn parse_time(c: &mut Cursor<'_>) -> Result<i64, ParseError> {
    let (first, first_len) = c.digits();
    let (hour, minute, second) = if first_len == 6 && c.peek() != Some(b':') {
        (first / 10_000, first / 100 % 100, first % 100)
    } else if first_len == 4 && c.peek() != Some(b':') {
        (first / 100, first % 100, 0)
    } else {
        if !(1..=2).contains(&first_len) || !c.eat(b':') {
            return Err(ParseError::Syntax);
        }
        let (minute, minute_len) = c.digits();
        if !(1..=2).contains(&minute_len) {
            return Err(ParseError::Syntax);
        }
        let mut second = 0;
        if c.eat(b':') {
            let (s, second_len) = c.digits();
            if !(1..=2).contains(&second_len) {
                return Err(ParseError::Syntax);
            }
            second = s;
        }
        (first, minute, second)
    };
    let mut micros = 0;
    if c.eat(b'.') {
        let start = c.i;
        let mut scale = 100_000;
        let mut round_up = false;
        while let Some(d @ b'0'..=b'9') = c.peek() {
            let d = i64::from(d - b'0');
            match c.i - start {
                0..=5 => micros += d * scale,
                6 => round_up = d >= 5,
                _ => {}
            }
            scale /= 10;
            c.i += 1;
        }
        if c.i == start {
            return Err(ParseError::Syntax);
        }
        micros += i64::from(round_up);
    }
    if hour > 24 || minute > 59 || second > 60 {
        return Err(ParseError::FieldRange);
    }
    let total = ((hour * 60 + minute) * 60 + second) * USECS_PER_SEC + micros;
    if total > USECS_PER_DAY {
        return Err(ParseError::FieldRange);
    }
    Ok(total)
}

/// `+HH`, `+H`, `+HHMM`, `+HHMMSS`, `+HH:MM`, `+HH:MM:SS` (or `-`), in seconds east of UTC.
fn parse_offset(c: &mut Cursor<'_>) -> Result<i64, ParseError> {
    let negative = c.peek() == Some(b'-');
    c.i += 1;
    let (first, first_len) = c.digits();
    let (hours, minutes, seconds) = match first_len {
        1 | 2 => {
            let mut minutes = 0;
            let mut seconds = 0;
            if c.eat(b':') {
                let (m, len) = c.digits();
                if len != 2 {
                    return Err(ParseError::Syntax);
                }
                minutes = m;
                if c.eat(b':') {
                    let (s, len) = c.digits();
                    if len != 2 {
                        return Err(ParseError::Syntax);
                    }
                    seconds = s;
                }
            }
            (first, minutes, seconds)
        }
        3 | 4 => (first / 100, first % 100, 0),
        5 | 6 => (first / 10_000, first / 100 % 100, first % 100),
        _ => return Err(ParseError::Syntax),
    };
    if hours > MAX_OFFSET_HOURS || minutes > 59 || seconds > 59 {
        return Err(ParseError::Displacement);
    }
    let offset = (hours * 60 + minutes) * 60 + seconds;
    Ok(if negative { -offset } else { offset })
}

/// Reads `input` as a value of `ty`. An offset is ignored for `date`, `time` and `timestamp`
/// and applied for `timestamptz`; without one, a `timestamptz` is a wall-clock time in `zone`.
fn parse_value(
    ty: PgType,
    input: &str,
    relative: bool,
    zone: TimeZone,
) -> Result<Value, ParseError> {
    let fields = match parse_fields(input, relative, ty == PgType::Time, zone)? {
        Parsed::Infinity if ty != PgType::Time => return Ok(Value::Infinity),
        Parsed::NegInfinity if ty != PgType::Time => return Ok(Value::NegInfinity),
        Parsed::Infinity | Parsed::NegInfinity => return Err(ParseError::Syntax),
        Parsed::Fields(fields) => fields,
    };
    match ty {
        PgType::Time => fields.time.map(Value::Finite).ok_or(ParseError::Syntax),
        PgType::Date => {
            let days = fields.days.ok_or(ParseError::Syntax)?;
            if !(MIN_DATE..END_DATE).contains(&days) {
                return Err(ParseError::DateRange);
            }
            Ok(Value::Finite(days))
        }
        _ => {
            let days = fields.days.ok_or(ParseError::Syntax)?;
            let local =
                i128::from(days) * i128::from(USECS_PER_DAY) + i128::from(fields.time.unwrap_or(0));
            let micros = match (ty, fields.offset) {
                (PgType::Timestamptz, Some(offset)) => {
                    local - i128::from(offset) * i128::from(USECS_PER_SEC)
                }
                // Inside the timestamp range (checked below) the local time fits in an i64.
                (PgType::Timestamptz, None) => {
                    let zone = fields.zone.unwrap_or(zone);
                    match i64::try_from(local) {
                        Ok(local) if !zone.is_utc() => i128::from(zone.utc_from_local(local)),
                        _ => local,
                    }
                }
                _ => local,
            };
            if !(i128::from(MIN_TIMESTAMP)..i128::from(END_TIMESTAMP)).contains(&micros) {
                return Err(ParseError::TimestampRange);
            }
            Ok(Value::Finite(micros as i64))
        }
    }
}

/// Rounds to `time(p)` / `timestamp(p)` precision, half away from zero, as Postgres does.
fn round_to_typmod(ty: PgType, value: Value, typmod: i32) -> Value {
    match (value, time_precision(typmod)) {
        (Value::Finite(v), Some(p)) if ty != PgType::Date && p < 6 => {
            let scale = 10i64.pow(6 - p);
            let half = scale / 2;
            let rounded = if v >= 0 {
                (v + half) / scale * scale
            } else {
                -((-v + half) / scale * scale)
            };
            Value::Finite(rounded)
        }
        _ => value,
    }
}

// ---------------------------------------------------------------------------------------------
// Output

/// `YYYY-MM-DD` with the year as Postgres prints it, and whether it is BC.
fn format_day(days: i64) -> (String, bool) {
    let (year, month, day) = civil_from_days(days + UNIX_TO_PG_DAYS);
    let (year, bc) = if year <= 0 {
        (1 - year, true)
    } else {
        (year, false)
    };
    (format!("{year:04}-{month:02}-{day:02}"), bc)
}

/// `HH:MM:SS` plus the fraction without trailing zeros, when there is one.
fn format_time_of_day(micros: i64, out: &mut String) {
    let secs = micros / USECS_PER_SEC;
    let frac = micros % USECS_PER_SEC;
    out.push_str(&format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ));
    if frac != 0 {
        let digits = format!("{frac:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// The text of a value; a `timestamptz` as the wall-clock time in `zone` with its offset.
fn format_value(ty: PgType, value: Value, zone: TimeZone) -> String {
    let v = match value {
        Value::Infinity => return "infinity".to_owned(),
        Value::NegInfinity => return "-infinity".to_owned(),
        Value::Finite(v) => v,
    };
    match ty {
        PgType::Date => {
            let (date, bc) = format_day(v);
            if bc { format!("{date} BC") } else { date }
        }
        PgType::Time => {
            let mut out = String::with_capacity(15);
            format_time_of_day(v, &mut out);
            out
        }
        _ => {
            let offset = if ty == PgType::Timestamptz {
                zone.offset_at(v)
            } else {
                0
            };
            let local = v.saturating_add(offset * USECS_PER_SEC);
            let (mut out, bc) = format_day(local.div_euclid(USECS_PER_DAY));
            out.push(' ');
            format_time_of_day(local.rem_euclid(USECS_PER_DAY), &mut out);
            if ty == PgType::Timestamptz {
                out.push_str(&format_offset(offset));
            }
            if bc {
                out.push_str(" BC");
            }
            out
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points

/// Input: a `timestamptz` without an offset is read in the session's zone; the value is
/// stored in UTC.
pub(super) fn parse(ty: PgType, typmod: i32, text: &str) -> Result<SqlValue, DbError> {
    let value =
        parse_value(ty, text, true, session_time_zone()).map_err(|e| e.into_db(ty, text))?;
    let value = round_to_typmod(ty, value, typmod);
    Ok(SqlValue::Text(format_value(ty, value, TimeZone::Utc)))
}

/// The value stored text stands for; relative words such as `now` are not read back as the
/// current time.
fn stored_value(ty: PgType, typmod: i32, value: SqlValueRef<'_>) -> Option<Value> {
    let text = match value {
        SqlValueRef::Text(s) => s,
        SqlValueRef::Bytes(b) => std::str::from_utf8(b).ok()?,
        _ => return None,
    };
    let value = parse_value(ty, text, false, TimeZone::Utc).ok()?;
    Some(round_to_typmod(ty, value, typmod))
}

pub(super) fn encode_text(
    ty: PgType,
    typmod: i32,
    value: SqlValueRef<'_>,
    out: &mut BytesMut,
) -> Result<(), DbError> {
    if let Some(v) = stored_value(ty, typmod, value) {
        out.put_slice(format_value(ty, v, session_time_zone()).as_bytes());
        return Ok(());
    }
    // Text that does not parse is shown as stored rather than failing the whole result.
    match value {
        SqlValueRef::Text(s) => out.put_slice(s.as_bytes()),
        SqlValueRef::Bytes(b) => out.put_slice(utf8(b)?.as_bytes()),
        SqlValueRef::Int(v) => out.put_slice(v.to_string().as_bytes()),
        SqlValueRef::Float(f) => out.put_slice(format_f64(f).as_bytes()),
        SqlValueRef::Null => return Err(bad_stored(ty, value)),
    }
    Ok(())
}

pub(super) fn encode_binary(
    ty: PgType,
    typmod: i32,
    value: SqlValueRef<'_>,
    out: &mut BytesMut,
) -> Result<(), DbError> {
    let v = stored_value(ty, typmod, value).ok_or_else(|| bad_stored(ty, value))?;
    match (ty, v) {
        (PgType::Date, Value::Infinity) => out.put_i32(i32::MAX),
        (PgType::Date, Value::NegInfinity) => out.put_i32(i32::MIN),
        // Range-checked on parse, so the day count fits.
        (PgType::Date, Value::Finite(days)) => out.put_i32(days as i32),
        (_, Value::Infinity) => out.put_i64(i64::MAX),
        (_, Value::NegInfinity) => out.put_i64(i64::MIN),
        (_, Value::Finite(micros)) => out.put_i64(micros),
    }
    Ok(())
}

pub(super) fn recv(ty: PgType, bytes: &[u8]) -> Result<SqlValue, DbError> {
    let bad = || invalid_binary(ty);
    let value = if ty == PgType::Date {
        match i32::from_be_bytes(bytes.try_into().map_err(|_| bad())?) {
            i32::MAX => Value::Infinity,
            i32::MIN => Value::NegInfinity,
            days if (MIN_DATE..END_DATE).contains(&i64::from(days)) => {
                Value::Finite(i64::from(days))
            }
            _ => return Err(DbError::new("22008", "date out of range")),
        }
    } else {
        let micros = i64::from_be_bytes(bytes.try_into().map_err(|_| bad())?);
        match (ty, micros) {
            (PgType::Time, m) if (0..=USECS_PER_DAY).contains(&m) => Value::Finite(m),
            (PgType::Time, _) => return Err(DbError::new("22008", "time out of range")),
            (_, i64::MAX) => Value::Infinity,
            (_, i64::MIN) => Value::NegInfinity,
            (_, m) if (MIN_TIMESTAMP..END_TIMESTAMP).contains(&m) => Value::Finite(m),
            _ => return Err(DbError::new("22008", "timestamp out of range")),
        }
    };
    Ok(SqlValue::Text(format_value(ty, value, TimeZone::Utc)))
}
