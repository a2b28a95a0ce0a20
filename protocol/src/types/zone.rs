//! The session's `TimeZone`: how `timestamptz` values are shown and how input without an
//! offset is read. Storage keeps every `timestamptz` in UTC; only text crosses a zone.
//!
//! The zone of the statement being run is a thread-local ([`with_session_time_zone`]), because
//! it is needed deep inside value codecs and SQLite functions that have no session at hand.
//! Whoever runs a statement (a SQLite worker thread, a PostgreSQL node's reply stream) sets it
//! around the synchronous work; outside such a scope it is UTC.

use std::cell::Cell;
use std::sync::Arc;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone as _};
use chrono_tz::Tz;

use crate::DbError;

/// Microseconds from the Unix epoch to the Postgres epoch, 2000-01-01.
const UNIX_TO_PG_MICROS: i64 = 946_684_800_000_000;
const USECS_PER_SEC: i64 = 1_000_000;
/// Far enough from any transition that the offset there is the one before it.
const DAY_MICROS: i64 = 86_400 * USECS_PER_SEC;

/// A session time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeZone {
    #[default]
    Utc,
    /// A zone of the tz database, with its history of offsets and daylight saving rules.
    Named(Tz),
    /// A fixed offset, in seconds east of UTC.
    Fixed(i32),
}

/// The largest fixed offset Postgres accepts for a session zone, in seconds.
const MAX_FIXED_OFFSET: i64 = 15 * 3600 + 59 * 60 + 59;

impl TimeZone {
    /// Reads a `TimeZone` setting as Postgres does, and returns the zone with the text `SHOW
    /// TimeZone` prints (a zone name in its canonical spelling, else the setting as given).
    ///
    /// Accepted: tz database names in any case (`Europe/Paris`, `UTC`, `EST`), a number of
    /// hours east of UTC (`SET TIME ZONE -3.5`, shown `<-03:30>+03:30`), and POSIX offsets,
    /// which count hours *west* of UTC (`UTC+5` and `+05:30` are behind UTC).
    pub fn parse(setting: &str) -> Result<(TimeZone, String), DbError> {
        let trimmed = setting.trim();
        let invalid = || {
            DbError::new(
                "22023",
                format!("invalid value for parameter \"TimeZone\": \"{setting}\""),
            )
        };
        if trimmed.is_empty() {
            return Err(invalid());
        }
        if let Ok(tz) = Tz::from_str_insensitive(trimmed) {
            let zone = if matches!(tz.name(), "UTC" | "Etc/UTC" | "Etc/UCT" | "UCT" | "Zulu") {
                TimeZone::Utc
            } else {
                TimeZone::Named(tz)
            };
            return Ok((zone, tz.name().to_owned()));
        }
        if let Ok(hours) = trimmed.parse::<f64>() {
            let seconds = (hours * 3600.0).round();
            if !hours.is_finite() || seconds.abs() > MAX_FIXED_OFFSET as f64 {
                return Err(invalid());
            }
            let east = seconds as i64;
            let name = format!("<{}>{}", format_offset(east), format_offset(-east));
            return Ok((TimeZone::fixed(east), name));
        }
        let west = posix_offset(trimmed).ok_or_else(invalid)?;
        Ok((TimeZone::fixed(-west), trimmed.to_owned()))
    }

    /// The zone a setting reads as; one this build cannot read (the proxy refuses those
    /// before they reach a node) is UTC, what every node assumed before sessions had zones.
    pub fn of_setting(setting: &str) -> TimeZone {
        TimeZone::parse(setting).map_or(TimeZone::Utc, |(zone, _)| zone)
    }

    fn fixed(east: i64) -> TimeZone {
        if east == 0 {
            TimeZone::Utc
        } else {
            // Within ±16 hours, checked by the callers.
            TimeZone::Fixed(east as i32)
        }
    }

    pub fn is_utc(self) -> bool {
        self == TimeZone::Utc
    }

    /// Seconds east of UTC at the instant `utc` (microseconds since 2000-01-01 UTC).
    pub fn offset_at(self, utc: i64) -> i64 {
        match self {
            TimeZone::Utc => 0,
            TimeZone::Fixed(east) => i64::from(east),
            TimeZone::Named(tz) => match naive(utc) {
                Some(t) => i64::from(tz.offset_from_utc_datetime(&t).fix().local_minus_utc()),
                None => 0,
            },
        }
    }

    /// The instant (microseconds since 2000-01-01 UTC) of a wall-clock time in this zone.
    /// A time that occurs twice (clocks turned back) is the later one, with the offset that
    /// follows the change; a time that never occurs (clocks turned forward) takes the offset
    /// from before the change: Postgres's rules.
    pub fn utc_from_local(self, local: i64) -> i64 {
        let tz = match self {
            TimeZone::Utc => return local,
            TimeZone::Fixed(east) => return local - i64::from(east) * USECS_PER_SEC,
            TimeZone::Named(tz) => tz,
        };
        let Some(t) = naive(local) else {
            return local;
        };
        let offset = match tz.offset_from_local_datetime(&t) {
            LocalResult::Single(offset) | LocalResult::Ambiguous(_, offset) => {
                i64::from(offset.fix().local_minus_utc())
            }
            LocalResult::None => self.offset_at(local - DAY_MICROS),
        };
        local - offset * USECS_PER_SEC
    }
}

/// A node session's `TimeZone` setting and the zone it reads as, read again only when the
/// setting changes (it comes with every statement).
#[derive(Debug, Clone)]
pub struct ZoneSetting {
    setting: Arc<str>,
    zone: TimeZone,
}

impl Default for ZoneSetting {
    fn default() -> ZoneSetting {
        ZoneSetting {
            setting: Arc::from("UTC"),
            zone: TimeZone::Utc,
        }
    }
}

impl ZoneSetting {
    pub fn set(&mut self, setting: &str) {
        if *self.setting != *setting {
            self.zone = TimeZone::of_setting(setting);
            self.setting = Arc::from(setting);
        }
    }

    pub fn zone(&self) -> TimeZone {
        self.zone
    }

    /// The setting as the client gave it (what a PostgreSQL connection is `SET` to).
    pub fn setting(&self) -> &Arc<str> {
        &self.setting
    }
}

/// The instant as a chrono date-time, when chrono can hold it.
fn naive(micros: i64) -> Option<NaiveDateTime> {
    let unix = micros.checked_add(UNIX_TO_PG_MICROS)?;
    DateTime::from_timestamp_micros(unix).map(|t| t.naive_utc())
}

/// POSIX `[NAME]±hh[:mm[:ss]]` (or `<NAME>±hh...`): seconds *west* of UTC.
fn posix_offset(setting: &str) -> Option<i64> {
    let rest = if let Some(quoted) = setting.strip_prefix('<') {
        &quoted[quoted.find('>')? + 1..]
    } else {
        let name_len = setting.bytes().take_while(u8::is_ascii_alphabetic).count();
        if name_len != 0 && name_len < 3 {
            return None;
        }
        &setting[name_len..]
    };
    let (negative, digits) = match rest.as_bytes().first()? {
        b'+' => (false, &rest[1..]),
        b'-' => (true, &rest[1..]),
        b'0'..=b'9' => (false, rest),
        _ => return None,
    };
    let mut parts = digits.split(':');
    let mut total = 0;
    for (i, scale) in [3600, 60, 1].into_iter().enumerate() {
        let Some(part) = parts.next() else {
            break;
        };
        let limit = if i == 0 { 24 } else { 59 };
        if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: i64 = part.parse().ok()?;
        if value > limit {
            return None;
        }
        total += value * scale;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(if negative { -total } else { total })
}

/// An offset as Postgres prints it after a time: `+02`, `-03:30`, `+00:53:28`.
pub fn format_offset(east: i64) -> String {
    let sign = if east < 0 { '-' } else { '+' };
    let abs = east.abs();
    let (hours, minutes, seconds) = (abs / 3600, abs / 60 % 60, abs % 60);
    match (minutes, seconds) {
        (0, 0) => format!("{sign}{hours:02}"),
        (_, 0) => format!("{sign}{hours:02}:{minutes:02}"),
        _ => format!("{sign}{hours:02}:{minutes:02}:{seconds:02}"),
    }
}

thread_local! {
    static SESSION_ZONE: Cell<TimeZone> = const { Cell::new(TimeZone::Utc) };
}

/// The time zone of the statement running on this thread (UTC outside any).
pub fn session_time_zone() -> TimeZone {
    SESSION_ZONE.with(Cell::get)
}

/// Runs `f` with `zone` as this thread's session time zone, then puts the previous one back
/// (also when `f` panics).
pub fn with_session_time_zone<R>(zone: TimeZone, f: impl FnOnce() -> R) -> R {
    struct Restore(TimeZone);
    impl Drop for Restore {
        fn drop(&mut self) {
            SESSION_ZONE.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(SESSION_ZONE.with(|cell| cell.replace(zone)));
    f()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn micros(text: &str) -> i64 {
        let t = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap();
        t.and_utc().timestamp_micros() - UNIX_TO_PG_MICROS
    }

    #[test]
    fn settings_read_as_postgres_reads_them() {
        let shown = |s: &str| TimeZone::parse(s).unwrap().1;
        assert_eq!(shown("europe/paris"), "Europe/Paris");
        assert_eq!(shown("UTC"), "UTC");
        assert_eq!(shown("5"), "<+05>-05");
        assert_eq!(shown("-3.5"), "<-03:30>+03:30");
        assert_eq!(shown("UTC+5"), "UTC+5");
        assert_eq!(TimeZone::parse("UTC").unwrap().0, TimeZone::Utc);
        assert_eq!(TimeZone::parse("Etc/UTC").unwrap().0, TimeZone::Utc);
        assert_eq!(TimeZone::parse("5").unwrap().0, TimeZone::Fixed(5 * 3600));
        assert_eq!(
            TimeZone::parse("UTC+5").unwrap().0,
            TimeZone::Fixed(-5 * 3600)
        );
        assert_eq!(
            TimeZone::parse("+05:30").unwrap().0,
            TimeZone::Fixed(-19_800)
        );
        assert_eq!(
            TimeZone::parse("<+03>-03").unwrap().0,
            TimeZone::Fixed(3 * 3600)
        );
        for bad in ["Nowhere/Land", "", "UT+99", "+5:3x", "100"] {
            let error = TimeZone::parse(bad).unwrap_err();
            assert_eq!(error.code, "22023", "{bad}");
        }
    }

    #[test]
    fn offsets_follow_the_tz_database() {
        let (berlin, _) = TimeZone::parse("Europe/Berlin").unwrap();
        assert_eq!(berlin.offset_at(micros("2024-06-01 10:00:00")), 7200);
        assert_eq!(berlin.offset_at(micros("2024-01-01 10:00:00")), 3600);
        // Local mean time before standard time, as Postgres prints it (+00:53:28).
        assert_eq!(berlin.offset_at(micros("1800-01-01 00:00:00")), 3208);
        assert_eq!(format_offset(3208), "+00:53:28");
        assert_eq!(format_offset(-12_600), "-03:30");
    }

    #[test]
    fn wall_clock_times_resolve_as_in_postgres() {
        let (berlin, _) = TimeZone::parse("Europe/Berlin").unwrap();
        // Clocks turned forward: 02:30 does not exist and takes the offset before (+01).
        assert_eq!(
            berlin.utc_from_local(micros("2024-03-31 02:30:00")),
            micros("2024-03-31 01:30:00")
        );
        // Clocks turned back: 02:30 happens twice; the later one (+01) is meant.
        assert_eq!(
            berlin.utc_from_local(micros("2024-10-27 02:30:00")),
            micros("2024-10-27 01:30:00")
        );
        assert_eq!(
            TimeZone::Fixed(-12_600).utc_from_local(micros("2024-06-01 10:00:00")),
            micros("2024-06-01 13:30:00")
        );
    }

    #[test]
    fn the_thread_zone_is_scoped() {
        let (paris, _) = TimeZone::parse("Europe/Paris").unwrap();
        assert!(session_time_zone().is_utc());
        let inside = with_session_time_zone(paris, session_time_zone);
        assert_eq!(inside, paris);
        assert!(session_time_zone().is_utc());
    }
}
