//! `to_date(text, template)` and `to_timestamp(text, template)`: the input read field by field
//! as Postgres's `to_timestamp` reads it (outside FX mode). Numbers take as many digits as the
//! field has (`YYYY` four) unless a separator or `FM` follows, when they take every digit; a
//! separator or space in the template skips any separators in the input; names of months and
//! days match in any case. Missing fields are January, the 1st, midnight; a missing year is
//! refused (Postgres makes it 1 BC, which SQLite nodes do not store).

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use mycelium_protocol::DbError;

use crate::errors::unsupported;

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

const DAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

#[derive(Default)]
struct Fields {
    year: Option<i64>,
    /// `YY` and `YYY`: the century comes from the digits given.
    short_year: Option<(i64, usize)>,
    month: Option<i64>,
    day: Option<i64>,
    day_of_year: Option<i64>,
    hour24: Option<i64>,
    hour12: Option<i64>,
    pm: Option<bool>,
    minute: Option<i64>,
    second: Option<i64>,
    micros: Option<i64>,
}

/// The numeric patterns: their name, how many digits they take, and where the value goes.
const NUMBERS: [(&str, usize); 14] = [
    ("YYYY", 4),
    ("YYY", 3),
    ("YY", 2),
    ("HH24", 2),
    ("HH12", 2),
    ("HH", 2),
    ("MM", 2),
    ("MI", 2),
    ("MS", 3),
    ("US", 6),
    ("SS", 2),
    ("DDD", 3),
    ("DD", 2),
    ("Y", 1),
];

fn bad_value(value: &str, pattern: &str) -> DbError {
    DbError::new(
        "22007",
        format!("invalid value \"{value}\" for \"{pattern}\""),
    )
}

fn out_of_range() -> DbError {
    DbError::new("22008", "date/time field value out of range")
}

/// Parses `input` by `template` into a timestamp.
pub fn parse(input: &str, template: &str) -> Result<NaiveDateTime, DbError> {
    let t: Vec<char> = template.chars().collect();
    let s: Vec<char> = input.chars().collect();
    let (mut i, mut j) = (0usize, 0usize);
    let mut fields = Fields::default();
    let upper_at = |i: usize, word: &str| -> bool {
        let n = word.chars().count();
        i + n <= t.len()
            && t[i..i + n]
                .iter()
                .zip(word.chars())
                .all(|(c, w)| c.to_ascii_uppercase() == w)
    };
    let mut fill = false;
    while i < t.len() {
        if upper_at(i, "FM") || upper_at(i, "FX") {
            fill |= upper_at(i, "FM");
            i += 2;
            continue;
        }
        if t[i] == '"' {
            // Quoted text: as many input characters are skipped.
            i += 1;
            while i < t.len() && t[i] != '"' {
                if t[i] == '\\' && i + 1 < t.len() {
                    i += 1;
                }
                i += 1;
                j = (j + 1).min(s.len());
            }
            i += 1;
            continue;
        }
        if let Some(word) = ["A.M.", "P.M.", "AM", "PM"].iter().find(|w| upper_at(i, w)) {
            let n = word.len();
            let got: String = s
                .iter()
                .skip(j)
                .take(n)
                .collect::<String>()
                .to_ascii_uppercase();
            fields.pm = match got.replace('.', "").as_str() {
                "AM" => Some(false),
                "PM" => Some(true),
                _ => return Err(bad_value(&got, word)),
            };
            i += n;
            j += n;
            continue;
        }
        if upper_at(i, "MONTH") || upper_at(i, "MON") {
            let full = upper_at(i, "MONTH");
            let original: String = s[j.min(s.len())..].iter().collect();
            let rest = original.to_lowercase();
            let found = MONTHS.iter().enumerate().find_map(|(n, name)| {
                if full {
                    rest.starts_with(name).then_some((n, name.len()))
                } else {
                    rest.starts_with(&name[..3]).then_some((n, 3))
                }
            });
            let Some((month, used)) = found else {
                let word: String = original.chars().take_while(|c| c.is_alphabetic()).collect();
                return Err(
                    bad_value(&word, if full { "Month" } else { "Mon" }).with_detail(
                        "The given value did not match any of the allowed values for this field.",
                    ),
                );
            };
            fields.month = Some(month as i64 + 1);
            i += if full { 5 } else { 3 };
            j += used;
            continue;
        }
        if upper_at(i, "DAY") || upper_at(i, "DY") {
            // A day name is read and ignored, as Postgres ignores it.
            let full = upper_at(i, "DAY");
            let rest: String = s[j.min(s.len())..]
                .iter()
                .collect::<String>()
                .to_lowercase();
            let used = DAYS.iter().find_map(|name| {
                if full {
                    rest.starts_with(name).then_some(name.len())
                } else {
                    rest.starts_with(&name[..3]).then_some(3)
                }
            });
            let Some(used) = used else {
                return Err(bad_value(&rest, if full { "Day" } else { "Dy" }));
            };
            i += if full { 3 } else { 2 };
            j += used;
            continue;
        }
        for word in [
            "TZH", "TZM", "TZ", "OF", "IYYY", "IW", "ID", "WW", "CC", "J", "Q", "RM",
        ] {
            if upper_at(i, word) {
                return Err(unsupported(format!("to_date/to_timestamp with {word}")));
            }
        }
        if let Some(&(name, width)) = NUMBERS.iter().find(|(name, _)| upper_at(i, name)) {
            i += name.len();
            // Leading spaces before a number are skipped.
            while j < s.len() && s[j] == ' ' {
                j += 1;
            }
            let greedy = fill || i >= t.len() || !t[i].is_ascii_alphanumeric();
            let negative = name.starts_with('Y') && s.get(j) == Some(&'-');
            if negative {
                j += 1;
            }
            let start = j;
            while j < s.len() && s[j].is_ascii_digit() && (greedy || j - start < width) {
                j += 1;
            }
            let digits: String = s[start..j].iter().collect();
            let value: i64 = digits.parse().map_err(|_| {
                let shown: String = s.iter().skip(start).take(width).collect();
                bad_value(&shown, name).with_detail("Value must be an integer.")
            })?;
            let value = if negative { -value } else { value };
            let count = digits.len();
            match name {
                "YYYY" => fields.year = Some(value),
                "YYY" | "YY" | "Y" if count >= 4 => fields.year = Some(value),
                "YYY" | "YY" | "Y" => fields.short_year = Some((value, count)),
                "MM" => fields.month = Some(value),
                "DD" => fields.day = Some(value),
                "DDD" => fields.day_of_year = Some(value),
                "HH24" => fields.hour24 = Some(value),
                "HH12" | "HH" => fields.hour12 = Some(value),
                "MI" => fields.minute = Some(value),
                "SS" => fields.second = Some(value),
                // Fractions count from the left: `MS` 5 is 500 ms.
                "MS" => fields.micros = Some(value * 10i64.pow(3 - count.min(3) as u32) * 1000),
                _ => fields.micros = Some(value * 10i64.pow(6 - count.min(6) as u32)),
            }
            continue;
        }
        // Anything else in the template is a separator: it skips separators in the input.
        i += 1;
        while j < s.len() && !s[j].is_alphanumeric() {
            j += 1;
        }
    }
    build(&fields)
}

fn build(f: &Fields) -> Result<NaiveDateTime, DbError> {
    let year = match (f.year, f.short_year) {
        (Some(y), _) => y,
        // Postgres's rule: two digits are the year nearest 2020, three nearest 2000.
        (None, Some((y, 1))) => 2000 + y,
        (None, Some((y, 2))) => {
            if y < 70 {
                2000 + y
            } else {
                1900 + y
            }
        }
        (None, Some((y, _))) => {
            if y < 100 {
                2000 + y
            } else {
                1000 + y
            }
        }
        (None, None) => {
            return Err(unsupported(
                "to_date/to_timestamp without a year (Postgres gives a date in 1 BC)",
            )
            .with_hint("Add the year to the input and the template."));
        }
    };
    let year = i32::try_from(year).map_err(|_| out_of_range())?;
    let date = match f.day_of_year {
        Some(doy) if f.month.is_none() && f.day.is_none() => {
            NaiveDate::from_yo_opt(year, u32::try_from(doy).map_err(|_| out_of_range())?)
        }
        _ => {
            let month = u32::try_from(f.month.unwrap_or(1)).map_err(|_| out_of_range())?;
            let day = u32::try_from(f.day.unwrap_or(1)).map_err(|_| out_of_range())?;
            NaiveDate::from_ymd_opt(year, month, day)
        }
    }
    .ok_or_else(out_of_range)?;
    let hour = match (f.hour24, f.hour12) {
        (Some(h), _) => h,
        (None, Some(h)) => {
            if !(1..=12).contains(&h) {
                return Err(DbError::new(
                    "22008",
                    format!("hour \"{h}\" is invalid for the 12-hour clock"),
                )
                .with_hint("Use the 24-hour clock, or give an hour between 1 and 12."));
            }
            match f.pm {
                Some(true) if h < 12 => h + 12,
                Some(false) | None if h == 12 => 0,
                _ => h,
            }
        }
        (None, None) => 0,
    };
    let micros = f.micros.unwrap_or(0);
    let time = NaiveTime::from_hms_micro_opt(
        u32::try_from(hour).map_err(|_| out_of_range())?,
        u32::try_from(f.minute.unwrap_or(0)).map_err(|_| out_of_range())?,
        u32::try_from(f.second.unwrap_or(0)).map_err(|_| out_of_range())?,
        u32::try_from(micros).map_err(|_| out_of_range())?,
    )
    .ok_or_else(out_of_range)?;
    Ok(NaiveDateTime::new(date, time))
}

#[cfg(test)]
mod tests {
    use super::parse;

    /// PostgreSQL 15's answers (`SELECT to_timestamp(input, template)` with TimeZone UTC).
    #[test]
    fn reads_as_postgres() {
        for (input, template, want) in [
            ("2024-03-15", "YYYY-MM-DD", "2024-03-15 00:00:00"),
            ("20240315", "YYYYMMDD", "2024-03-15 00:00:00"),
            (
                "15/03/2024 14:07:09",
                "DD/MM/YYYY HH24:MI:SS",
                "2024-03-15 14:07:09",
            ),
            ("05 Dec 2000", "DD Mon YYYY", "2000-12-05 00:00:00"),
            ("December 5, 2000", "Month DD, YYYY", "2000-12-05 00:00:00"),
            (
                "2024-03-15 2:07 PM",
                "YYYY-MM-DD HH:MI AM",
                "2024-03-15 14:07:00",
            ),
            (
                "2024-03-15 12:30 am",
                "YYYY-MM-DD HH12:MI am",
                "2024-03-15 00:30:00",
            ),
            ("2024/03/15", "YYYY-MM-DD", "2024-03-15 00:00:00"),
            ("  2024-03-15", "YYYY-MM-DD", "2024-03-15 00:00:00"),
            ("24-03-15", "YY-MM-DD", "2024-03-15 00:00:00"),
            ("99-03-15", "YY-MM-DD", "1999-03-15 00:00:00"),
            ("2024-3-5", "YYYY-MM-DD", "2024-03-05 00:00:00"),
            ("2024 075", "YYYY DDD", "2024-03-15 00:00:00"),
            (
                "2024-03-15 10:11:12.5",
                "YYYY-MM-DD HH24:MI:SS.MS",
                "2024-03-15 10:11:12.500",
            ),
            (
                "2024-03-15 10:11:12.000123",
                "YYYY-MM-DD HH24:MI:SS.US",
                "2024-03-15 10:11:12.000123",
            ),
            ("Friday 2024-03-15", "Day YYYY-MM-DD", "2024-03-15 00:00:00"),
        ] {
            let got = parse(input, template).map(|t| {
                let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
                let micros = t.and_utc().timestamp_subsec_micros();
                if micros % 1000 == 0 && micros != 0 {
                    s.push_str(&format!(".{:03}", micros / 1000));
                } else if micros != 0 {
                    s.push_str(&format!(".{micros:06}"));
                }
                s
            });
            assert_eq!(
                got.as_deref(),
                Ok(want),
                "to_timestamp('{input}', '{template}')"
            );
        }
        for (input, template, code) in [
            ("2024-13-01", "YYYY-MM-DD", "22008"),
            ("2024-02-30", "YYYY-MM-DD", "22008"),
            ("x024-01-01", "YYYY-MM-DD", "22007"),
            ("05 Foo 2000", "DD Mon YYYY", "22007"),
            ("2024-01-01 13:00", "YYYY-MM-DD HH12:MI", "22008"),
            ("14:07", "HH24:MI", "0A000"),
        ] {
            let code_of = parse(input, template).map_err(|e| e.code);
            assert_eq!(
                code_of,
                Err(code.to_owned()),
                "to_timestamp('{input}', '{template}')"
            );
        }
    }
}
