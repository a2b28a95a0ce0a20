//! Date and time functions SQLite lacks, as Postgres computes them: `to_char` of dates and
//! timestamps, `age`, `make_date` and `to_timestamp(seconds)`. A `timestamptz` is formatted
//! as its wall-clock time in the session's zone, whose abbreviation `TZ` prints.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike};
use mycelium_protocol::DbError;
use mycelium_protocol::types::{PgType, TimeZone, format_offset, session_time_zone};

use crate::errors::unsupported;

use super::time::{Interval, format_as};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The session zone at one instant, as `to_char`'s `TZ` and `OF` print it.
pub struct ZoneLabel {
    /// `CEST`, `NST`; a zone without letters for it shows its offset (`-03`, `-03:30`).
    pub abbreviation: String,
    /// Seconds east of UTC.
    pub offset: i64,
}

impl ZoneLabel {
    /// The session zone's label at the UTC instant `utc`.
    pub fn at(utc: NaiveDateTime) -> ZoneLabel {
        use chrono::TimeZone as _;
        use chrono_tz::OffsetName;
        let offset = super::time::session_offset(utc);
        let abbreviation = match session_time_zone() {
            TimeZone::Utc => Some("UTC".to_owned()),
            TimeZone::Named(tz) => tz
                .offset_from_utc_datetime(&utc)
                .abbreviation()
                .map(str::to_owned),
            // Postgres shows the name the setting gave (`UTC` for `UTC+5`); storage knows
            // only the offset, which is that name for numeric settings (`-3.5`, `<+05>-05`).
            TimeZone::Fixed(_) => None,
        };
        ZoneLabel {
            abbreviation: abbreviation.unwrap_or_else(|| format_offset(offset)),
            offset,
        }
    }
}

/// `to_char(value, template)` for a date or timestamp: Postgres's template patterns (the
/// common ones: years, months, days, hours, minutes, seconds, fractions, meridiem, quarter,
/// week of year, zone), the `FM` fill-mode prefix, the `TH`/`th` ordinal suffix, quoted text
/// and backslash escapes. A pattern this does not know is copied as text, as Postgres copies
/// what is not a pattern.
///
/// `zone` labels a `timestamptz` (`t` is then its wall-clock time); a timestamp has none.
pub fn to_char(t: NaiveDateTime, template: &str, zone: Option<&ZoneLabel>) -> String {
    let mut out = String::with_capacity(template.len() + 8);
    let chars: Vec<char> = template.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let rest: String = chars[i..].iter().collect();
        if chars[i] == '"' {
            // Quoted text is copied; `\"` inside it is a quote.
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                out.push(chars[i]);
                i += 1;
            }
            i += 1;
            continue;
        }
        if chars[i] == '\\' && i + 1 < chars.len() {
            out.push(chars[i + 1]);
            i += 2;
            continue;
        }
        let fill = rest.starts_with("FM");
        let at = if fill { 2 } else { 0 };
        let pattern = &rest[at..];
        match field(t, pattern, fill, zone) {
            Some((text, used, number)) => {
                out.push_str(&text);
                i += at + used;
                let after: String = chars[i..].iter().take(2).collect();
                if let (Some(n), "TH" | "th") = (number, after.as_str()) {
                    let suffix = ordinal(n);
                    out.push_str(&if after == "TH" {
                        suffix.to_ascii_uppercase()
                    } else {
                        suffix.to_owned()
                    });
                    i += 2;
                }
            }
            None => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    out
}

/// The text of the pattern at the start of `p`, how many characters it took, and its number
/// (for a `TH` suffix).
fn field(
    t: NaiveDateTime,
    p: &str,
    fill: bool,
    zone: Option<&ZoneLabel>,
) -> Option<(String, usize, Option<i64>)> {
    let num = |value: i64, width: usize, used: usize| {
        let text = if fill {
            value.to_string()
        } else {
            format!("{value:0width$}")
        };
        Some((text, used, Some(value)))
    };
    let word = |name: &str, used: usize, case: Case| {
        let text = case.apply(name);
        // Full names pad to the longest (9 characters) unless in fill mode.
        let text = if fill || name.len() <= 3 {
            text
        } else {
            format!("{text:<9}")
        };
        Some((text, used, None))
    };
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => i64::from(h),
    };
    let month = MONTHS[t.month0() as usize];
    let day = DAYS[t.weekday().num_days_from_sunday() as usize];
    // Numeric patterns take any case (`yyyy`, `hh24`); names keep theirs (`Month`, `MONTH`).
    let upper = p.get(..5.min(p.len())).unwrap_or(p).to_ascii_uppercase();
    let starts = |s: &str| upper.starts_with(s);
    let exact = |s: &str| p.starts_with(s);
    if starts("HH24") {
        return num(i64::from(t.hour()), 2, 4);
    }
    if starts("HH12") {
        return num(hour12, 2, 4);
    }
    if starts("HH") {
        return num(hour12, 2, 2);
    }
    if starts("MI") {
        return num(i64::from(t.minute()), 2, 2);
    }
    if starts("SSSSS") || starts("SSSS") {
        let used = if starts("SSSSS") { 5 } else { 4 };
        return num(i64::from(t.num_seconds_from_midnight()), 0, used);
    }
    if starts("SS") {
        return num(i64::from(t.second()), 2, 2);
    }
    if starts("MS") {
        return num(i64::from(t.nanosecond() / 1_000_000), 3, 2);
    }
    if starts("US") {
        return num(i64::from(t.nanosecond() / 1_000), 6, 2);
    }
    for (pattern, upper) in [("AM", true), ("PM", true), ("am", false), ("pm", false)] {
        if exact(pattern) {
            let text = if t.hour() < 12 { "am" } else { "pm" };
            let text = if upper {
                text.to_ascii_uppercase()
            } else {
                text.to_owned()
            };
            return Some((text, 2, None));
        }
    }
    for (pattern, upper) in [
        ("A.M.", true),
        ("P.M.", true),
        ("a.m.", false),
        ("p.m.", false),
    ] {
        if exact(pattern) {
            let text = if t.hour() < 12 { "a.m." } else { "p.m." };
            let text = if upper {
                text.to_ascii_uppercase()
            } else {
                text.to_owned()
            };
            return Some((text, 4, None));
        }
    }
    // Years count up from 1 in both eras: 44 BC prints as 0044.
    let year = match i64::from(t.year()) {
        y if y <= 0 => 1 - y,
        y => y,
    };
    if starts("YYYY") {
        return num(year, 4, 4);
    }
    if starts("YYY") {
        return num(year % 1000, 3, 3);
    }
    if starts("YY") {
        return num(year % 100, 2, 2);
    }
    if starts("Y,YYY") {
        return Some((format!("{},{:03}", year / 1000, year % 1000), 5, Some(year)));
    }
    if starts("Y") {
        return num(year % 10, 1, 1);
    }
    if starts("IYYY") {
        return num(i64::from(t.iso_week().year()), 4, 4);
    }
    if starts("IW") {
        return num(i64::from(t.iso_week().week()), 2, 2);
    }
    if starts("ID") {
        return num(i64::from(t.weekday().number_from_monday()), 1, 2);
    }
    for (pattern, case) in [
        ("MONTH", Case::Upper),
        ("Month", Case::Title),
        ("month", Case::Lower),
    ] {
        if exact(pattern) {
            return word(month, 5, case);
        }
    }
    for (pattern, case) in [
        ("MON", Case::Upper),
        ("Mon", Case::Title),
        ("mon", Case::Lower),
    ] {
        if exact(pattern) {
            return word(&month[..3], 3, case);
        }
    }
    if starts("MM") {
        return num(i64::from(t.month()), 2, 2);
    }
    for (pattern, case) in [
        ("DAY", Case::Upper),
        ("Day", Case::Title),
        ("day", Case::Lower),
    ] {
        if exact(pattern) {
            return word(day, 3, case);
        }
    }
    for (pattern, case) in [
        ("DY", Case::Upper),
        ("Dy", Case::Title),
        ("dy", Case::Lower),
    ] {
        if exact(pattern) {
            return word(&day[..3], 2, case);
        }
    }
    if starts("DDD") {
        return num(i64::from(t.ordinal()), 3, 3);
    }
    if starts("DD") {
        return num(i64::from(t.day()), 2, 2);
    }
    if starts("D") {
        return num(i64::from(t.weekday().num_days_from_sunday() + 1), 1, 1);
    }
    if starts("WW") {
        return num(i64::from((t.ordinal() - 1) / 7 + 1), 2, 2);
    }
    if starts("Q") {
        return num(i64::from(t.month0() / 3 + 1), 1, 1);
    }
    if starts("CC") {
        let year = i64::from(t.year());
        return num(
            if year > 0 {
                (year + 99) / 100
            } else {
                -((99 - year) / 100)
            },
            2,
            2,
        );
    }
    if starts("J") {
        let julian = t.date().num_days_from_ce() + 1_721_425;
        return num(i64::from(julian), 0, 1);
    }
    if exact("TZ") || exact("tz") {
        let text = zone.map_or("", |z| z.abbreviation.as_str());
        let text = if exact("tz") {
            text.to_ascii_lowercase()
        } else {
            text.to_owned()
        };
        return Some((text, 2, None));
    }
    if starts("OF") {
        // A timestamp has no zone; Postgres prints its offset as zero.
        return Some((format_offset(zone.map_or(0, |z| z.offset)), 2, None));
    }
    None
}

#[derive(Clone, Copy)]
enum Case {
    Upper,
    Title,
    Lower,
}

impl Case {
    fn apply(self, name: &str) -> String {
        match self {
            Case::Upper => name.to_ascii_uppercase(),
            Case::Title => name.to_owned(),
            Case::Lower => name.to_ascii_lowercase(),
        }
    }
}

fn ordinal(n: i64) -> &'static str {
    match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

/// `age(a, b)`: `a - b` in years, months and days, field by field with borrows, as
/// Postgres's `timestamp_age` computes it (the days borrowed are those of the month of the
/// earlier operand).
pub fn age(a: NaiveDateTime, b: NaiveDateTime) -> Interval {
    let negative = a < b;
    let (hi, lo) = if negative { (b, a) } else { (a, b) };
    let mut micros = i64::from(hi.nanosecond() / 1000) - i64::from(lo.nanosecond() / 1000);
    let mut sec = i64::from(hi.second()) - i64::from(lo.second());
    let mut min = i64::from(hi.minute()) - i64::from(lo.minute());
    let mut hour = i64::from(hi.hour()) - i64::from(lo.hour());
    let mut mday = i64::from(hi.day()) - i64::from(lo.day());
    let mut mon = i64::from(hi.month()) - i64::from(lo.month());
    let mut year = i64::from(hi.year()) - i64::from(lo.year());
    while micros < 0 {
        micros += 1_000_000;
        sec -= 1;
    }
    while sec < 0 {
        sec += 60;
        min -= 1;
    }
    while min < 0 {
        min += 60;
        hour -= 1;
    }
    while hour < 0 {
        hour += 24;
        mday -= 1;
    }
    while mday < 0 {
        // Postgres borrows the days of the month of the operand it subtracted from when
        // the result is negative, else of the one it subtracted.
        let from = if negative { a } else { b };
        mday += days_in_month(from.year(), from.month());
        mon -= 1;
    }
    while mon < 0 {
        mon += 12;
        year -= 1;
    }
    let interval = Interval {
        months: year * 12 + mon,
        days: mday,
        micros: ((hour * 60 + min) * 60 + sec) * 1_000_000 + micros,
    };
    if negative {
        interval.negate()
    } else {
        interval
    }
}

fn days_in_month(year: i32, month: u32) -> i64 {
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    match (next, NaiveDate::from_ymd_opt(year, month, 1)) {
        (Some(next), Some(first)) => (next - first).num_days(),
        _ => 30,
    }
}

/// The date `make_date(year, month, day)` names: a negative year is BC, as Postgres reads it.
fn civil_date(year: i64, month: i64, day: i64) -> Result<NaiveDate, DbError> {
    i32::try_from(year)
        .ok()
        .filter(|y| *y != 0)
        .zip(u32::try_from(month).ok().zip(u32::try_from(day).ok()))
        .and_then(|(y, (m, d))| NaiveDate::from_ymd_opt(if y < 0 { y + 1 } else { y }, m, d))
        .ok_or_else(|| {
            DbError::new(
                "22008",
                format!("date field value out of range: {year}-{month:02}-{day:02}"),
            )
        })
}

/// `make_date(year, month, day)`, with Postgres's errors.
pub fn make_date(year: i64, month: i64, day: i64) -> Result<String, DbError> {
    let date = civil_date(year, month, day)?;
    Ok(format_as(NaiveDateTime::from(date), PgType::Date))
}

/// `to_timestamp(seconds since 1970-01-01 UTC)`.
pub fn to_timestamp(seconds: f64) -> Result<String, DbError> {
    let micros = (seconds * 1e6).round();
    if !micros.is_finite() || micros.abs() > 9.2e18 {
        return Err(DbError::new("22008", "timestamp out of range"));
    }
    DateTime::from_timestamp_micros(micros as i64)
        .map(super::format_timestamptz)
        .ok_or_else(|| DbError::new("22008", "timestamp out of range"))
}

/// What Postgres compares intervals by: months of 30 days, days of 24 hours, in microseconds.
pub fn interval_span(iv: Interval) -> i128 {
    (i128::from(iv.months) * 30 + i128::from(iv.days)) * 86_400_000_000 + i128::from(iv.micros)
}

/// `interval ± interval`, field by field.
pub fn interval_add(a: Interval, b: Interval, sign: i64) -> Interval {
    Interval {
        months: a.months + sign * b.months,
        days: a.days + sign * b.days,
        micros: a.micros + sign * b.micros,
    }
}

/// `a + b` field by field, 22008 where a field leaves Postgres's range (32-bit months and
/// days, 64-bit microseconds).
pub fn interval_checked_add(a: Interval, b: Interval) -> Result<Interval, DbError> {
    let out_of_range = || DbError::new("22008", "interval out of range");
    let field = |x: i64, y: i64| {
        x.checked_add(y)
            .filter(|v| i32::try_from(*v).is_ok())
            .ok_or_else(out_of_range)
    };
    Ok(Interval {
        months: field(a.months, b.months)?,
        days: field(a.days, b.days)?,
        micros: a.micros.checked_add(b.micros).ok_or_else(out_of_range)?,
    })
}

/// `interval * factor` as Postgres's `interval_mul` computes it: fractional months spill into
/// days (30 a month) and fractional days into time (24 hours a day), rounded to microseconds.
pub fn interval_mul(span: Interval, factor: f64) -> Result<Interval, DbError> {
    scale_interval(span, |x| x * factor)
}

/// `interval / divisor` as Postgres's `interval_div`: each field divided (not multiplied by
/// the reciprocal, which rounds differently), fractions spilled down as in `interval_mul`.
pub fn interval_div(span: Interval, divisor: f64) -> Result<Interval, DbError> {
    if divisor == 0.0 {
        return Err(DbError::new("22012", "division by zero"));
    }
    scale_interval(span, |x| x / divisor)
}

/// Postgres's `TSROUND`: to microsecond precision, so near-whole results come out whole.
fn ts_round(x: f64) -> f64 {
    (x * 1e6).round_ties_even() / 1e6
}

fn scale_interval(span: Interval, scale: impl Fn(f64) -> f64) -> Result<Interval, DbError> {
    const DAYS_PER_MONTH: f64 = 30.0;
    const SECS_PER_DAY: f64 = 86_400.0;
    let out_of_range = || DbError::new("22008", "interval out of range");
    let fits_i32 = |x: f64| x.is_finite() && x.abs() < 2_147_483_648.0;
    let months_f = scale(span.months as f64);
    let days_f = scale(span.days as f64);
    if !fits_i32(months_f) || !fits_i32(days_f) {
        return Err(out_of_range());
    }
    let months = months_f.trunc();
    let mut days = days_f.trunc();
    let month_remainder_days = ts_round((months_f - months) * DAYS_PER_MONTH);
    let mut sec_remainder = ts_round(
        (days_f - days + month_remainder_days - month_remainder_days.trunc()) * SECS_PER_DAY,
    );
    if sec_remainder.abs() >= SECS_PER_DAY {
        let whole = (sec_remainder / SECS_PER_DAY).trunc();
        days += whole;
        sec_remainder -= whole * SECS_PER_DAY;
    }
    days += month_remainder_days.trunc();
    let micros = (scale(span.micros as f64) + sec_remainder * 1e6).round_ties_even();
    if !fits_i32(days) || !micros.is_finite() || micros.abs() > 9.2e18 {
        return Err(out_of_range());
    }
    Ok(Interval {
        months: months as i64,
        days: days as i64,
        micros: micros as i64,
    })
}

/// `make_interval(years, months, weeks, days, hours, mins, secs)`.
pub fn make_interval(fields: [f64; 7]) -> Result<Interval, DbError> {
    let [years, months, weeks, days, hours, mins, secs] = fields;
    if fields[..6].iter().any(|f| f.fract() != 0.0) {
        return Err(DbError::new(
            "22023",
            "make_interval takes whole numbers but for seconds",
        ));
    }
    // Whole hours and minutes are exact; only the seconds round, half to even as `rint`.
    let micros = (hours * 3600.0 + mins * 60.0) * 1e6 + (secs * 1e6).round_ties_even();
    if !micros.is_finite() || micros.abs() > 9.2e18 {
        return Err(DbError::new("22008", "interval out of range"));
    }
    Ok(Interval {
        months: (years * 12.0 + months) as i64,
        days: (weeks * 7.0 + days) as i64,
        micros: micros as i64,
    })
}

/// `AT TIME ZONE`: the UTC instant `t` as the local time in `zone` (`to_local`), or the local
/// time `t` in `zone` as a UTC instant. `zone` is an interval (hours east of UTC, as ISO 8601
/// counts them) or a zone name (`UTC`, `Europe/Paris`, any case). A bare offset such as `+05`
/// is refused: Postgres reads it as a POSIX zone, where positive means west, and a
/// misreading would shift every value by twice the offset.
pub fn at_time_zone(
    t: NaiveDateTime,
    zone: &str,
    zone_is_interval: bool,
    to_local: bool,
) -> Result<NaiveDateTime, DbError> {
    use chrono::{LocalResult, Offset, TimeZone};
    let trimmed = zone.trim();
    let fixed = if zone_is_interval {
        let iv = super::time::parse_interval(trimmed)?;
        if iv.months != 0 || iv.days != 0 {
            return Err(DbError::new(
                "22023",
                format!(
                    "interval time zone \"{}\" must not include months or days",
                    iv.format()
                ),
            ));
        }
        Some(iv.micros)
    } else if [
        "utc",
        "gmt",
        "z",
        "zulu",
        "uct",
        "universal",
        "etc/utc",
        "etc/gmt",
    ]
    .contains(&trimmed.to_ascii_lowercase().as_str())
    {
        Some(0)
    } else {
        None
    };
    if let Some(micros) = fixed {
        let offset = Duration::microseconds(micros);
        let shifted = if to_local { t + offset } else { t - offset };
        return Ok(shifted);
    }
    if trimmed.starts_with(['+', '-']) || trimmed.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(
            unsupported(format!("AT TIME ZONE '{trimmed}' (a POSIX offset)"))
                .with_hint("Name the zone, or give the offset as an interval: INTERVAL '+05:00'."),
        );
    }
    let tz = chrono_tz::Tz::from_str_insensitive(trimmed)
        .map_err(|_| DbError::new("22023", format!("time zone \"{trimmed}\" not recognized")))?;
    if to_local {
        return Ok(tz.from_utc_datetime(&t).naive_local());
    }
    Ok(match tz.from_local_datetime(&t) {
        // A local time that happened twice is read as the later one (standard time), as
        // Postgres reads it.
        LocalResult::Single(local) | LocalResult::Ambiguous(_, local) => local.naive_utc(),
        // A local time the clocks skipped: read with the offset in force just before.
        LocalResult::None => {
            let before = tz.offset_from_utc_datetime(&(t - Duration::hours(3))).fix();
            t - Duration::seconds(i64::from(before.local_minus_utc()))
        }
    })
}

const USECS_PER_DAY: i64 = 86_400_000_000;

/// Seconds as C's `%02g` prints them in Postgres's field-range messages (`1:02:-1`, `5.5`).
fn seconds_g(sec: f64) -> String {
    if !sec.is_finite() {
        return if sec.is_nan() {
            "nan".to_owned()
        } else if sec > 0.0 {
            "inf".to_owned()
        } else {
            "-inf".to_owned()
        };
    }
    if sec == 0.0 {
        return "00".to_owned();
    }
    let exponent = sec.abs().log10().floor() as i32;
    if !(-4..6).contains(&exponent) {
        let mantissa = format!("{:.5}", sec / 10f64.powi(exponent));
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let decimals = usize::try_from(5 - exponent).unwrap_or(0);
    let text = format!("{sec:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text:0>2}")
}

fn time_field_error(hour: i64, min: i64, sec: f64) -> DbError {
    DbError::new(
        "22008",
        format!(
            "time field value out of range: {hour}:{min:02}:{}",
            seconds_g(sec)
        ),
    )
}

/// Postgres's `float_time_overflows`: hours up to 24 and seconds up to 60 are allowed as
/// long as the total does not pass 24:00:00. Returns the time of day in microseconds.
fn time_of_day(hour: i64, min: i64, sec: f64) -> Result<i64, DbError> {
    let micros = (sec * 1e6).round_ties_even();
    if !(0..=24).contains(&hour) || !(0..60).contains(&min) || !(0.0..=60e6).contains(&micros) {
        return Err(time_field_error(hour, min, sec));
    }
    let total = (hour * 60 + min) * 60_000_000 + micros as i64;
    if total > USECS_PER_DAY {
        return Err(time_field_error(hour, min, sec));
    }
    Ok(total)
}

/// `make_time(hour, min, sec)`, as storage holds a `time` (24:00:00 included).
pub fn make_time(hour: i64, min: i64, sec: f64) -> Result<String, DbError> {
    let micros = time_of_day(hour, min, sec)?;
    let secs = micros / 1_000_000;
    let mut out = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    let frac = micros % 1_000_000;
    if frac != 0 {
        out.push_str(format!(".{frac:06}").trim_end_matches('0'));
    }
    Ok(out)
}

/// `make_timestamp(year, month, mday, hour, min, sec)`; a negative year is BC, as in
/// `make_date`.
pub fn make_timestamp(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    min: i64,
    sec: f64,
) -> Result<NaiveDateTime, DbError> {
    let date = civil_date(year, month, day)?;
    let micros = time_of_day(hour, min, sec)?;
    NaiveDateTime::from(date)
        .checked_add_signed(Duration::microseconds(micros))
        .ok_or_else(|| {
            DbError::new(
                "22008",
                format!(
                    "timestamp out of range: {year}-{month:02}-{day:02} {hour}:{min:02}:{}",
                    seconds_g(sec)
                ),
            )
        })
}

/// The UTC instant of local time `t` in `zone`, as `make_timestamptz` reads its zone: a
/// leading sign makes it an ISO 8601 offset (`+05` is east of Greenwich, unlike in
/// `AT TIME ZONE`), anything else names a zone.
pub fn local_in_zone(t: NaiveDateTime, zone: &str) -> Result<NaiveDateTime, DbError> {
    if zone.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(DbError::new(
            "22023",
            format!("invalid input syntax for type numeric time zone: \"{zone}\""),
        )
        .with_hint("Numeric time zones must have \"-\" or \"+\" as first character."));
    }
    let Some(body) = zone.strip_prefix(['+', '-']) else {
        return at_time_zone(t, zone, false, false);
    };
    let out_of_range = || {
        DbError::new(
            "22023",
            format!("numeric time zone \"{zone}\" out of range"),
        )
    };
    let not_recognized = || DbError::new("22023", format!("time zone \"{zone}\" not recognized"));
    let number = |s: &str| -> Result<i64, DbError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not_recognized());
        }
        s.parse().map_err(|_| out_of_range())
    };
    let parts: Vec<&str> = body.split(':').collect();
    let (hour, min, sec) = match parts.as_slice() {
        [h] if zone.len() > 3 => {
            let n = number(h)?;
            (n / 100, n % 100, 0)
        }
        [h] => (number(h)?, 0, 0),
        [h, m] => (number(h)?, number(m)?, 0),
        [h, m, s] => (number(h)?, number(m)?, number(s)?),
        _ => return Err(not_recognized()),
    };
    if hour > 15 || min >= 60 || sec >= 60 {
        return Err(out_of_range());
    }
    let east = (hour * 60 + min) * 60 + sec;
    let east = if zone.starts_with('-') { -east } else { east };
    t.checked_sub_signed(Duration::seconds(east))
        .ok_or_else(|| DbError::new("22008", "timestamp out of range"))
}

/// `date_bin(stride, source, origin)` as Postgres 15 computes it: the start of the bin of
/// `stride` (no months) that holds `source`, bins counted from `origin`.
pub fn date_bin(
    stride: Interval,
    source: NaiveDateTime,
    origin: NaiveDateTime,
) -> Result<NaiveDateTime, DbError> {
    if stride.months != 0 {
        return Err(DbError::new(
            "0A000",
            "timestamps cannot be binned into intervals containing months or years",
        ));
    }
    let out_of_range = || DbError::new("22008", "timestamp out of range");
    let stride = stride
        .days
        .checked_mul(USECS_PER_DAY)
        .and_then(|d| d.checked_add(stride.micros))
        .ok_or_else(|| DbError::new("22008", "interval out of range"))?;
    if stride <= 0 {
        return Err(DbError::new("22008", "stride must be greater than zero"));
    }
    let diff = (source - origin)
        .num_microseconds()
        .ok_or_else(|| DbError::new("22008", "interval out of range"))?;
    let mut delta = diff - diff % stride;
    // Postgres 15 steps back a bin whenever the origin is later, even when the source sits
    // on a bin boundary.
    if origin > source && stride > 1 {
        delta -= stride;
    }
    origin
        .checked_add_signed(Duration::microseconds(delta))
        .ok_or_else(out_of_range)
}

/// `justify_days`: each 30 days become a month, the sign of days following months'.
pub fn justify_days(iv: Interval) -> Interval {
    let mut out = Interval {
        months: iv.months + iv.days / 30,
        days: iv.days % 30,
        micros: iv.micros,
    };
    if out.months > 0 && out.days < 0 {
        out.days += 30;
        out.months -= 1;
    } else if out.months < 0 && out.days > 0 {
        out.days -= 30;
        out.months += 1;
    }
    out
}

/// `justify_hours`: each 24 hours become a day, the sign of time following days'.
pub fn justify_hours(iv: Interval) -> Interval {
    let mut out = whole_days_of_time(iv);
    give_time_the_sign_of_days(&mut out);
    out
}

/// `justify_interval`: both, with one sign throughout.
pub fn justify_interval(iv: Interval) -> Interval {
    let mut out = whole_days_of_time(iv);
    out.months += out.days / 30;
    out.days %= 30;
    if out.months > 0 && (out.days < 0 || (out.days == 0 && out.micros < 0)) {
        out.days += 30;
        out.months -= 1;
    } else if out.months < 0 && (out.days > 0 || (out.days == 0 && out.micros > 0)) {
        out.days -= 30;
        out.months += 1;
    }
    give_time_the_sign_of_days(&mut out);
    out
}

/// The interval with each whole 24 hours of its time moved into its days.
fn whole_days_of_time(iv: Interval) -> Interval {
    Interval {
        months: iv.months,
        days: iv.days + iv.micros / USECS_PER_DAY,
        micros: iv.micros % USECS_PER_DAY,
    }
}

/// Borrows or lends a day so that the time has the sign of the days (as Postgres's
/// `interval_justify_hours`).
fn give_time_the_sign_of_days(out: &mut Interval) {
    if out.days > 0 && out.micros < 0 {
        out.micros += USECS_PER_DAY;
        out.days -= 1;
    } else if out.days < 0 && out.micros > 0 {
        out.micros -= USECS_PER_DAY;
        out.days += 1;
    }
}

/// A field of an interval, exactly: `value` in units of 10^-`scale`.
pub struct IntervalPart {
    pub value: i128,
    pub scale: u32,
}

impl IntervalPart {
    /// The numeric text `extract` answers (`3600.000000`).
    pub fn numeric_text(&self) -> String {
        if self.scale == 0 {
            return self.value.to_string();
        }
        let unit = 10i128.pow(self.scale);
        let sign = if self.value < 0 { "-" } else { "" };
        let magnitude = self.value.unsigned_abs();
        let unit = unit.unsigned_abs();
        format!(
            "{sign}{}.{:0width$}",
            magnitude / unit,
            magnitude % unit,
            width = self.scale as usize
        )
    }

    pub fn as_f64(&self) -> f64 {
        self.value as f64 / 10f64.powi(self.scale as i32)
    }
}

/// The unit Postgres's `DecodeUnits` reads `unit` (already lower case) as.
pub(crate) fn canonical_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" => "microseconds",
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => "milliseconds",
        "second" | "seconds" | "s" | "sec" | "secs" => "second",
        "minute" | "minutes" | "m" | "min" | "mins" => "minute",
        "hour" | "hours" | "h" | "hr" | "hrs" => "hour",
        "day" | "days" | "d" => "day",
        "month" | "months" | "mon" | "mons" => "month",
        "quarter" | "qtr" => "quarter",
        "year" | "years" | "y" | "yr" | "yrs" => "year",
        "decade" | "decades" | "dec" | "decs" => "decade",
        "century" | "centuries" | "c" | "cent" => "century",
        "millennium" | "millennia" | "mil" | "mils" => "millennium",
        "epoch" => "epoch",
        "week" | "weeks" | "w" => "week",
        "dow" => "dow",
        "isodow" => "isodow",
        "doy" => "doy",
        "isoyear" => "isoyear",
        "julian" | "j" => "julian",
        "timezone" => "timezone",
        "timezone_h" | "timezone_hour" => "timezone_h",
        "timezone_m" | "timezone_minute" => "timezone_m",
        _ => return None,
    })
}

pub(crate) fn unit_error(unit: &str, type_name: &str, known: bool) -> DbError {
    if known {
        DbError::new(
            "0A000",
            format!("unit \"{unit}\" not supported for type {type_name}"),
        )
    } else {
        DbError::new(
            "22023",
            format!("unit \"{unit}\" not recognized for type {type_name}"),
        )
    }
}

/// `extract(field from interval)` as Postgres 15's `interval_part_common` splits an
/// interval: years and months from months, days, then hours, minutes and seconds from the
/// time, each keeping its sign; the epoch counts a year as 365.25 days and a month as 30.
pub fn interval_part(field: &str, iv: Interval) -> Result<IntervalPart, DbError> {
    let whole = |value: i64| IntervalPart {
        value: i128::from(value),
        scale: 0,
    };
    let years = iv.months / 12;
    let second_micros = iv.micros % 60_000_000;
    let unit = field.to_ascii_lowercase();
    let Some(canonical) = canonical_unit(&unit) else {
        return Err(unit_error(&unit, "interval", false));
    };
    Ok(match canonical {
        "microseconds" => whole(second_micros),
        "milliseconds" => IntervalPart {
            value: i128::from(second_micros),
            scale: 3,
        },
        "second" => IntervalPart {
            value: i128::from(second_micros),
            scale: 6,
        },
        "minute" => whole(iv.micros / 60_000_000 % 60),
        "hour" => whole(iv.micros / 3_600_000_000),
        "day" => whole(iv.days),
        "month" => whole(iv.months % 12),
        "quarter" => whole(iv.months % 12 / 3 + 1),
        "year" => whole(years),
        "decade" => whole(years / 10),
        "century" => whole(years / 100),
        "millennium" => whole(years / 1000),
        "epoch" => {
            let quarter_days = 1461 * i128::from(years)
                + 120 * i128::from(iv.months % 12)
                + 4 * i128::from(iv.days);
            IntervalPart {
                value: quarter_days * 21_600_000_000 + i128::from(iv.micros),
                scale: 6,
            }
        }
        _ => return Err(unit_error(&unit, "interval", true)),
    })
}

/// `date_trunc(field, interval)` as Postgres 15's `interval_trunc`: the fields below `field`
/// zeroed (years rounded down to decades, centuries, millennia), each keeping its sign.
pub fn interval_trunc(field: &str, iv: Interval) -> Result<Interval, DbError> {
    let unit = field.to_ascii_lowercase();
    const ORDER: [&str; 12] = [
        "millennium",
        "century",
        "decade",
        "year",
        "quarter",
        "month",
        "day",
        "hour",
        "minute",
        "second",
        "milliseconds",
        "microseconds",
    ];
    let canonical = canonical_unit(&unit);
    let Some(rank) = canonical.and_then(|c| ORDER.iter().position(|o| *o == c)) else {
        if canonical == Some("week") {
            return Err(unit_error(&unit, "interval", true)
                .with_detail("Months usually have fractional weeks."));
        }
        return Err(unit_error(&unit, "interval", false));
    };
    let (mut years, mut months, mut days) = (iv.months / 12, iv.months % 12, iv.days);
    let mut hours = iv.micros / 3_600_000_000;
    let mut minutes = iv.micros / 60_000_000 % 60;
    let mut seconds = iv.micros / 1_000_000 % 60;
    let mut micros = iv.micros % 1_000_000;
    for (step, scale) in [(0, 1000), (1, 100), (2, 10)] {
        if rank <= step {
            years = years / scale * scale;
        }
    }
    if rank <= 3 {
        months = 0;
    }
    if rank <= 4 {
        months = months / 3 * 3;
    }
    if rank <= 5 {
        days = 0;
    }
    if rank <= 6 {
        hours = 0;
    }
    if rank <= 7 {
        minutes = 0;
    }
    if rank <= 8 {
        seconds = 0;
    }
    if rank <= 9 {
        micros = 0;
    }
    if rank == 10 {
        micros = micros / 1000 * 1000;
    }
    Ok(Interval {
        months: years * 12 + months,
        days,
        micros: ((hours * 60 + minutes) * 60 + seconds) * 1_000_000 + micros,
    })
}

/// `extract(field from time)`: the clock fields and the epoch (seconds since midnight) of
/// the time of day `time` (its microseconds), as Postgres's `time_part_common`.
pub fn time_part(field: &str, time: Interval) -> Result<IntervalPart, DbError> {
    let unit = field.to_ascii_lowercase();
    match canonical_unit(&unit) {
        Some("microseconds" | "milliseconds" | "second" | "minute" | "hour" | "epoch") => {
            interval_part(&unit, time)
        }
        known => Err(unit_error(&unit, "time without time zone", known.is_some())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        super::super::time::parse_datetime(text).unwrap()
    }

    #[test]
    fn to_char_prints_as_postgres() {
        // Each expected value is PostgreSQL 15's answer.
        let t = at("2024-03-05 14:07:09.123456");
        for (template, want) in [
            ("YYYY-MM-DD HH24:MI:SS", "2024-03-05 14:07:09"),
            ("DD Mon YYYY", "05 Mar 2024"),
            ("FMDD FMMonth YYYY", "5 March 2024"),
            ("Month", "March    "),
            ("Day, DDth \"of\" MONTH", "Tuesday  , 05th of MARCH    "),
            ("HH12:MI AM", "02:07 PM"),
            ("MS US", "123 123456"),
            ("Q IW DDD D", "1 10 065 3"),
            ("dy mon yy", "tue mar 24"),
            ("FMDDth", "5th"),
        ] {
            assert_eq!(to_char(t, template, None), want, "{template}");
        }
        let utc = ZoneLabel::at(t);
        assert_eq!(to_char(t, "HH24:MI TZ OF", Some(&utc)), "14:07 UTC +00");
        assert_eq!(to_char(t, "TZ|OF", None), "|+00");
    }

    #[test]
    fn age_borrows_as_postgres() {
        let cases = [
            ("2024-03-15", "2024-01-01", "2 mons 14 days"),
            ("2024-03-01", "2024-01-31", "1 mon 1 day"),
            ("2024-01-01", "2024-03-15", "-2 mons -14 days"),
            (
                "2024-03-15 10:00",
                "2023-03-15 12:30",
                "11 mons 30 days 21:30:00",
            ),
        ];
        for (a, b, want) in cases {
            assert_eq!(age(at(a), at(b)).format(), want, "age({a}, {b})");
        }
    }

    #[test]
    fn interval_arithmetic_as_postgres() {
        let iv = |t: &str| super::super::time::parse_interval(t).unwrap();
        // Each expected value is PostgreSQL 15's answer.
        for (text, factor, want) in [
            ("1 day", 3.0, "3 days"),
            ("1 mon 1 day 01:00:00", 1.5, "1 mon 16 days 13:30:00"),
            ("2 hours", 0.5, "01:00:00"),
            ("1 day", -2.0, "-2 days"),
            ("3 days", 1.0 / 3.0, "1 day"),
        ] {
            assert_eq!(
                interval_mul(iv(text), factor).unwrap().format(),
                want,
                "{text} * {factor}"
            );
        }
        assert_eq!(
            interval_add(iv("1 day"), iv("2 hours"), -1).format(),
            "1 day -02:00:00"
        );
        assert_eq!(
            make_interval([1.0, 2.0, 1.0, 3.0, 4.0, 5.0, 6.5])
                .unwrap()
                .format(),
            "1 year 2 mons 10 days 04:05:06.5"
        );
    }

    #[test]
    fn make_date_and_to_timestamp() {
        assert_eq!(make_date(2024, 2, 29).unwrap(), "2024-02-29");
        assert_eq!(make_date(2023, 2, 29).unwrap_err().code, "22008");
        assert_eq!(to_timestamp(0.0).unwrap(), "1970-01-01 00:00:00+00");
        assert_eq!(to_timestamp(1.5).unwrap(), "1970-01-01 00:00:01.5+00");
    }
}
