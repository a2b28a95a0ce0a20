//! Date and time functions and operators SQLite lacks, answered as PostgreSQL 15 answers
//! them: every expected value, type and SQLSTATE here is the reference server's.

use mycelium_storage::SqliteSession;

use crate::util::*;

const BOOL: u32 = 16;
const INT8: u32 = 20;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const FLOAT8: u32 = 701;
const DATE: u32 = 1082;
const TIME: u32 = 1083;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const INTERVAL: u32 = 1186;
const NUMERIC: u32 = 1700;

/// Runs `sql` and checks its one row (as `psql -A` prints it) and its column types.
async fn check(s: &mut SqliteSession, sql: &str, row: &str, oids: &[u32]) {
    let out = ok(s, sql).await;
    assert_eq!(out.lines(), [row], "{sql}");
    assert_eq!(out.oids(), oids, "{sql}");
}

async fn fails(s: &mut SqliteSession, cases: &[(&str, &str)]) {
    for (sql, code) in cases {
        let error = err(s, sql).await;
        assert_eq!(error.code, *code, "{sql}: {error:?}");
    }
}

#[tokio::test]
async fn make_time_timestamp_and_timestamptz() {
    let db = open();
    let mut s = db.backend.session();
    check(
        &mut s,
        "SELECT make_timestamp(2024, 1, 2, 3, 4, 5.5), make_time(1, 2, 3), \
         make_timestamptz(2024, 1, 2, 3, 4, 5, 'America/New_York'), \
         make_timestamptz(2024, 1, 2, 3, 4, 5), make_time(24, 0, 0), make_time(1, 2, 60), \
         make_time(23, 59, 59.9999999), make_timestamp(2024, 1, 1, 24, 0, 0), \
         make_timestamp(-44, 3, 15, 12, 0, 0), make_timestamp(2024, 1, 1, 1, 1, 5.1234567)",
        "2024-01-02 03:04:05.5|01:02:03|2024-01-02 08:04:05+00|2024-01-02 03:04:05+00|\
         24:00:00|01:03:00|24:00:00|2024-01-02 00:00:00|0044-03-15 12:00:00 BC|\
         2024-01-01 01:01:05.123457",
        &[
            TIMESTAMP,
            TIME,
            TIMESTAMPTZ,
            TIMESTAMPTZ,
            TIME,
            TIME,
            TIME,
            TIMESTAMP,
            TIMESTAMP,
            TIMESTAMP,
        ],
    )
    .await;
    // A signed zone is an ISO 8601 offset (east positive); a named zone's daylight saving
    // time applies, a skipped local time reads with the offset before the change.
    check(
        &mut s,
        "SELECT make_timestamptz(2024, 7, 2, 3, 4, 5, 'Europe/Paris'), \
         make_timestamptz(2024, 7, 2, 3, 4, 5, '+05'), \
         make_timestamptz(2024, 7, 2, 3, 4, 5, '-08:30'), \
         make_timestamptz(2024, 1, 1, 1, 1, 1, '+0530'), \
         make_timestamptz(2024, 3, 10, 2, 30, 0, 'America/New_York'), \
         make_timestamptz(2024, 11, 3, 1, 30, 0, 'America/New_York')",
        "2024-07-02 01:04:05+00|2024-07-01 22:04:05+00|2024-07-02 11:34:05+00|\
         2023-12-31 19:31:01+00|2024-03-10 07:30:00+00|2024-11-03 06:30:00+00",
        &[TIMESTAMPTZ; 6],
    )
    .await;
    check(
        &mut s,
        "SELECT make_time(NULL, 1, 1) IS NULL, make_timestamp(2024, 1, 1, 1, 1, NULL) IS NULL, \
         make_timestamptz(2024, 1, 1, 1, 1, 1, NULL) IS NULL",
        "t|t|t",
        &[BOOL; 3],
    )
    .await;
    // Untyped literals are read as the fields' types; other types name no function.
    check(
        &mut s,
        "SELECT make_timestamp(2024, 1, 1, 1, 1, 1.5::numeric), make_time(1, 2, 3::bigint), \
         make_date('2024', '1', '1'), make_timestamptz(2024, 1, 1, 1, '1', 1, 'UTC'), \
         make_interval(secs => 1.5, days => '3')",
        "2024-01-01 01:01:01.5|01:02:03|2024-01-01|2024-01-01 01:01:01+00|3 days 00:00:01.5",
        &[TIMESTAMP, TIME, DATE, TIMESTAMPTZ, INTERVAL],
    )
    .await;
    let error = err(&mut s, "SELECT make_time(1.5, 2, 3)").await;
    assert_eq!(
        (error.code.as_str(), error.message.as_str()),
        (
            "42883",
            "function make_time(numeric, integer, integer) does not exist"
        )
    );
    let error = err(&mut s, "SELECT make_time(25, 0, 0)").await;
    assert_eq!(
        (error.code.as_str(), error.message.as_str()),
        ("22008", "time field value out of range: 25:00:00")
    );
    let error = err(&mut s, "SELECT make_time(1, 2, -1)").await;
    assert_eq!(error.message, "time field value out of range: 1:02:-1");
    fails(
        &mut s,
        &[
            ("SELECT make_time(1, 60, 0)", "22008"),
            ("SELECT make_timestamp(2023, 2, 29, 0, 0, 0)", "22008"),
            ("SELECT make_timestamp(0, 3, 15, 12, 0, 0)", "22008"),
            ("SELECT make_timestamp(2024, 1, 1, 1, -1, 1)", "22008"),
            (
                "SELECT make_timestamptz(2024, 7, 2, 3, 4, 5, 'Nowhere/Land')",
                "22023",
            ),
            ("SELECT make_timestamptz(2024, 7, 2, 3, 4, 5, '5')", "22023"),
            (
                "SELECT make_timestamptz(2024, 1, 1, 1, 1, 1, '+20')",
                "22023",
            ),
            ("SELECT make_date(2024::bigint, 1, 1)", "42883"),
            ("SELECT make_timestamp(2024, 1, 1, 1, 1.0, 1)", "42883"),
            ("SELECT make_time(1, 2, 'x')", "22P02"),
            ("SELECT make_time(1, 2, 3, 4)", "42883"),
            ("SELECT make_interval(weeks => 1.5)", "42883"),
            ("SELECT make_interval(1, days => 2.5)", "42883"),
            ("SELECT make_interval(days => 2::bigint)", "42883"),
        ],
    )
    .await;
}

#[tokio::test]
async fn timezone_function_and_date_trunc_in_a_zone() {
    let db = open();
    let mut s = db.backend.session();
    check(
        &mut s,
        "SELECT timezone('America/New_York', timestamptz '2024-01-01 12:00+00'), \
         timezone('UTC', timestamp '2024-01-01 12:00'), \
         timezone('Europe/Paris', '2024-06-01 12:00'), \
         timezone(interval '+05:00', timestamptz '2024-01-01 12:00+00'), \
         timezone('Asia/Tokyo', timestamp '2024-01-01 09:00')",
        "2024-01-01 07:00:00|2024-01-01 12:00:00+00|2024-06-01 14:00:00|2024-01-01 17:00:00|\
         2024-01-01 00:00:00+00",
        &[TIMESTAMP, TIMESTAMPTZ, TIMESTAMP, TIMESTAMP, TIMESTAMPTZ],
    )
    .await;
    check(
        &mut s,
        "SELECT date_trunc('day', timestamptz '2024-01-01 12:00+00', 'America/New_York'), \
         date_trunc('hour', timestamptz '2024-01-01 12:30+00', 'Asia/Kolkata'), \
         date_trunc('month', timestamptz '2024-03-31 23:30+00', 'Europe/Paris'), \
         date_trunc('day', timestamp '2024-01-01 12:00', 'UTC')",
        "2024-01-01 05:00:00+00|2024-01-01 12:30:00+00|2024-03-31 22:00:00+00|\
         2024-01-01 00:00:00+00",
        &[TIMESTAMPTZ; 4],
    )
    .await;
    check(
        &mut s,
        "SELECT to_timestamp('2024-01-02 03:04:05', 'YYYY-MM-DD HH24:MI:SS') AT TIME ZONE 'UTC', \
         timezone('UTC', NULL::timestamptz) IS NULL",
        "2024-01-02 03:04:05|t",
        &[TIMESTAMP, BOOL],
    )
    .await;
    fails(
        &mut s,
        &[
            (
                "SELECT timezone('Nowhere', timestamptz '2024-01-01 12:00+00')",
                "22023",
            ),
            (
                "SELECT date_trunc('day', timestamptz '2024-01-01 12:00+00', 'Nowhere')",
                "22023",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn isfinite_and_date_bin() {
    let db = open();
    let mut s = db.backend.session();
    check(
        &mut s,
        "SELECT isfinite(date '2024-01-01'), isfinite(timestamp 'infinity'), \
         isfinite(interval '1 day'), isfinite(date '-infinity'), \
         isfinite(timestamptz 'infinity'), isfinite(timestamptz '2024-01-01 00:00+00'), \
         isfinite(NULL::date) IS NULL",
        "t|f|t|f|f|t|t",
        &[BOOL; 7],
    )
    .await;
    check(
        &mut s,
        "SELECT date_bin('15 minutes', timestamp '2024-01-01 10:17', timestamp '2000-01-01'), \
         date_bin('15 minutes', timestamptz '2024-01-01 10:17+00', \
                  timestamptz '2000-01-01 00:02+00'), \
         date_bin('1 day 2 hours', timestamp '1999-01-01 10:17', \
                  timestamp '2000-01-01 00:00:30'), \
         date_bin('7 days', timestamp '2024-01-03', timestamp '2024-01-01 00:00:00.5'), \
         date_bin('15 minutes', timestamp 'infinity', timestamp '2000-01-01'), \
         date_bin('15 minutes', '2024-01-01 10:17', '2000-01-01'), \
         date_bin('1 hour', timestamp '2024-01-01 10:17', NULL) IS NULL",
        "2024-01-01 10:15:00|2024-01-01 10:17:00+00|1998-12-31 22:00:30|\
         2024-01-01 00:00:00.5|infinity|2024-01-01 10:15:00+00|t",
        &[
            TIMESTAMP,
            TIMESTAMPTZ,
            TIMESTAMP,
            TIMESTAMP,
            TIMESTAMP,
            TIMESTAMPTZ,
            BOOL,
        ],
    )
    .await;
    let error = err(
        &mut s,
        "SELECT date_bin('1 month', timestamp '2024-01-01 10:17', timestamp '2000-01-01')",
    )
    .await;
    assert_eq!(
        (error.code.as_str(), error.message.as_str()),
        (
            "0A000",
            "timestamps cannot be binned into intervals containing months or years"
        )
    );
    fails(
        &mut s,
        &[
            ("SELECT isfinite('2024-01-01')", "42725"),
            (
                "SELECT date_bin('0 days', timestamp '2024-01-01 10:17', timestamp '2000-01-01')",
                "22008",
            ),
            (
                "SELECT date_bin('-15 minutes', timestamp '2024-01-01 10:17', \
                 timestamp '2000-01-01')",
                "22008",
            ),
            (
                "SELECT date_bin('1 hour', timestamp '2024-01-01', timestamp 'infinity')",
                "22008",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn extract_and_date_part_of_intervals() {
    let db = open();
    let mut s = db.backend.session();
    check(
        &mut s,
        "SELECT extract(epoch from interval '1 hour'), extract(hour from interval '26 hours'), \
         date_part('day', interval '3 days 4 hours'), \
         extract(epoch from interval '1 year 2 mons 3 days 04:05:06.789'), \
         extract(year from interval '1 year 14 mons'), \
         extract(month from interval '1 year 14 mons'), \
         extract(minute from interval '-1 hour -5 min')",
        "3600.000000|26|3|37015506.789000|2|2|-5",
        &[NUMERIC, NUMERIC, FLOAT8, NUMERIC, NUMERIC, NUMERIC, NUMERIC],
    )
    .await;
    check(
        &mut s,
        "SELECT extract(second from interval '1 min 5.5 sec'), \
         extract(millisecond from interval '5.5 sec'), \
         extract(microsecond from interval '5.5 sec'), extract(quarter from interval '5 mons'), \
         extract(decade from interval '25 years'), extract(century from interval '250 years'), \
         extract(millennium from interval '2500 years')",
        "5.500000|5500.000|5500000|2|2|2|2",
        &[NUMERIC; 7],
    )
    .await;
    // Each field keeps the interval's sign; the epoch counts 365.25 days a year.
    check(
        &mut s,
        "SELECT extract(epoch from interval '-1 mon'), extract(hour from interval '-26 hours'), \
         extract(year from interval '-13 mons'), extract(quarter from interval '-5 mons'), \
         extract(epoch from interval '100 years'), extract(second from interval '-1.5 sec'), \
         extract(millisecond from interval '-1.5 sec')",
        "-2592000.000000|-26|-1|0|3155760000.000000|-1.500000|-1500.000",
        &[NUMERIC; 7],
    )
    .await;
    check(
        &mut s,
        "SELECT date_part('epoch', interval '1 hour'), date_part('second', interval '5.5 sec'), \
         date_part('month', interval '-1 year -3 mons'), \
         date_part('hour', NULL::interval) IS NULL",
        "3600|5.5|-3|t",
        &[FLOAT8, FLOAT8, FLOAT8, BOOL],
    )
    .await;
    fails(
        &mut s,
        &[
            ("SELECT extract(dow from interval '1 day')", "0A000"),
            ("SELECT date_part('week', interval '1 day')", "0A000"),
            ("SELECT extract(fortnight from interval '1 day')", "22023"),
        ],
    )
    .await;
}

#[tokio::test]
async fn justify_days_hours_and_interval() {
    let db = open();
    let mut s = db.backend.session();
    check(
        &mut s,
        "SELECT justify_days(interval '35 days'), justify_hours(interval '27 hours'), \
         justify_interval(interval '1 mon -1 hour'), justify_days(interval '-35 days'), \
         justify_days(interval '1 mon -35 days'), justify_days(interval '60 days 5 hours'), \
         justify_hours(interval '-27 hours'), justify_hours(interval '1 day -27 hours'), \
         justify_hours(interval '1 mon 50 hours')",
        "1 mon 5 days|1 day 03:00:00|29 days 23:00:00|-1 mons -5 days|-5 days|\
         2 mons 05:00:00|-1 days -03:00:00|-03:00:00|1 mon 2 days 02:00:00",
        &[INTERVAL; 9],
    )
    .await;
    check(
        &mut s,
        "SELECT justify_interval(interval '-1 mon 1 hour'), \
         justify_interval(interval '1 mon 35 days 27 hours'), \
         justify_interval(interval '-1 mon 35 days -27 hours'), \
         justify_interval(interval '0'), justify_days(NULL) IS NULL",
        "-29 days -23:00:00|2 mons 6 days 03:00:00|3 days 21:00:00|00:00:00|t",
        &[INTERVAL, INTERVAL, INTERVAL, INTERVAL, BOOL],
    )
    .await;
}

#[tokio::test]
async fn date_time_operators() {
    let db = open();
    let mut s = db.backend.session();
    check(
        &mut s,
        "SELECT date '2024-01-01' + time '10:30', time '10:30' + date '2024-01-01', \
         date '2024-03-01' - date '2024-02-01', timestamp '2024-01-01 10:00' - time '01:00', \
         timestamp '2024-01-01 10:00' + time '01:00', \
         timestamptz '2024-01-01 10:00+00' - time '01:00', date '2024-01-01' - time '01:00', \
         date '2024-01-01' + time '24:00'",
        "2024-01-01 10:30:00|2024-01-01 10:30:00|29|2024-01-01 09:00:00|2024-01-01 11:00:00|\
         2024-01-01 09:00:00+00|2023-12-31 23:00:00|2024-01-02 00:00:00",
        &[
            TIMESTAMP,
            TIMESTAMP,
            INT4,
            TIMESTAMP,
            TIMESTAMP,
            TIMESTAMPTZ,
            TIMESTAMP,
            TIMESTAMP,
        ],
    )
    .await;
    // A time of day wraps around midnight; months and days do not move it.
    check(
        &mut s,
        "SELECT time '10:30' + interval '20 hours', time '10:30' - interval '11 hours', \
         interval '1 hour' + time '23:30', time '10:30' - time '12:00', \
         time '10:30' + interval '1 mon 1 day 1 hour', time '10:30' + '1 hour', \
         date '2024-01-01' + NULL::time IS NULL",
        "06:30:00|23:30:00|00:30:00|-01:30:00|11:30:00|11:30:00|t",
        &[TIME, TIME, TIME, INTERVAL, TIME, TIME, BOOL],
    )
    .await;
    check(
        &mut s,
        "SELECT now() - interval '1 day' < now(), \
         age(date '2024-05-06') = age(current_date, date '2024-05-06')",
        "t|t",
        &[BOOL, BOOL],
    )
    .await;
    // The wall clock as Postgres prints it: `Fri Nov 27 08:19:37.903128 2026 UTC`.
    let out = ok(&mut s, "SELECT timeofday()").await;
    assert_eq!(out.oids(), [TEXT]);
    let text = out.value().unwrap();
    let words: Vec<&str> = text.split(' ').collect();
    assert_eq!(words.len(), 6, "{text}");
    assert_eq!(words[5], "UTC", "{text}");
    assert_eq!(words[3].len(), "08:19:37.903128".len(), "{text}");
}

/// Interval input, output and arithmetic where Postgres's rules are subtle: fractions
/// cascade into smaller fields rounded half to even, a positive field after a negative one
/// prints with `+`, division divides each field (`1 mon / 7` is not `1 mon * (1 / 7)`).
#[tokio::test]
async fn interval_fractions_signs_and_division() {
    let db = open();
    let mut s = db.backend.session();
    check(
        &mut s,
        "SELECT interval '-1 day 2 hours', interval '1 day -2 hours', \
         interval '-1 mon 2 days -3 hours', interval '-1 year 2 mons', \
         -interval '1 year 2 mons -3 days 04:00'",
        "-1 days +02:00:00|1 day -02:00:00|-1 mons +2 days -03:00:00|-10 mons|\
         -1 years -2 mons +3 days -04:00:00",
        &[INTERVAL; 5],
    )
    .await;
    check(
        &mut s,
        "SELECT interval '1.55 mons', interval '1.01 years', interval '1.1 weeks', \
         interval '0.5 decade', interval '-1.5 weeks', interval '0.0000005 sec', \
         interval '1.5 ms'",
        "1 mon 16 days 12:00:00|1 year|7 days 16:48:00|5 years|-10 days -12:00:00|00:00:00|\
         00:00:00.0015",
        &[INTERVAL; 7],
    )
    .await;
    check(
        &mut s,
        "SELECT interval '1 day' / 3, interval '1 mon' / 7, interval '1 year' / 5, \
         interval '1 day' / 1.5, interval '-1 mon' / 3, interval '1 hour' / 7, \
         interval '1 mon 1 day' * -0.5, interval '1 year' * 0.3, interval '1 day' * 0.3333333",
        "08:00:00|4 days 06:51:25.6896|2 mons 12 days|16:00:00|-10 days|00:08:34.285714|\
         -15 days -12:00:00|3 mons 18 days|07:59:59.99712",
        &[INTERVAL; 9],
    )
    .await;
    check(
        &mut s,
        "SELECT timestamp '2024-01-31' + interval '1 mon', \
         timestamp '2024-03-31' - interval '1 mon', date '2024-01-31' + interval '1 mon 1 day', \
         timestamptz '2024-02-29 12:00+00' + interval '1 year', \
         timestamp '2024-01-01' + interval '1.5 mon', interval '1 mon' + timestamp '2024-01-31'",
        "2024-02-29 00:00:00|2024-02-29 00:00:00|2024-03-01 00:00:00|2025-02-28 12:00:00+00|\
         2024-02-16 00:00:00|2024-02-29 00:00:00",
        &[
            TIMESTAMP,
            TIMESTAMP,
            TIMESTAMP,
            TIMESTAMPTZ,
            TIMESTAMP,
            TIMESTAMP,
        ],
    )
    .await;
    fails(
        &mut s,
        &[
            ("SELECT interval '1 mon' * 1e10", "22008"),
            ("SELECT interval '1 day' / 0", "22012"),
        ],
    )
    .await;
}

#[tokio::test]
async fn extract_of_times_and_sums_of_intervals() {
    let db = open();
    let mut s = db.backend.session();
    check(
        &mut s,
        "SELECT extract(hour from time '10:30:15.5'), extract(epoch from time '10:30'), \
         extract(second from time '10:30:15.5'), date_part('minute', time '10:30'), \
         extract(microseconds from time '10:00:01.5'), \
         extract(milliseconds from time '10:00:01.5'), extract(hour from time '24:00')",
        "10|37800.000000|15.500000|30|1500000|1500.000|24",
        &[NUMERIC, NUMERIC, NUMERIC, FLOAT8, NUMERIC, NUMERIC, NUMERIC],
    )
    .await;
    // Field by field, NULLs skipped; SQLite would have added the texts as numbers.
    check(
        &mut s,
        "SELECT sum(x), avg(x), min(x), max(x) FROM (VALUES (interval '1 hour'), \
         (interval '3 hours'), (interval '1 mon 1 day'), (NULL)) v(x)",
        "1 mon 1 day 04:00:00|10 days 09:20:00|01:00:00|1 mon 1 day",
        &[INTERVAL; 4],
    )
    .await;
    check(
        &mut s,
        "SELECT sum(x), avg(x) FROM (VALUES (interval '20 hours'), (interval '10 hours')) v(x)",
        "30:00:00|15:00:00",
        &[INTERVAL; 2],
    )
    .await;
    check(
        &mut s,
        "SELECT sum(x) IS NULL, avg(x) IS NULL FROM (VALUES (interval '1 hour')) v(x) \
         WHERE false",
        "t|t",
        &[BOOL; 2],
    )
    .await;
    check(
        &mut s,
        "SELECT make_interval(secs => 1.5), make_interval(0, 0, 0, 0, 0, 0, 0.0000005), \
         make_interval(hours => 1, secs => 0.0000015)",
        "00:00:01.5|00:00:00|01:00:00.000002",
        &[INTERVAL; 3],
    )
    .await;
    fails(
        &mut s,
        &[
            ("SELECT extract(day from time '10:00')", "0A000"),
            ("SELECT extract(fortnight from time '10:00')", "22023"),
        ],
    )
    .await;
}

/// Years before 1 AD: stored and printed as Postgres prints them (`0044-03-15 BC`), and
/// read back by the functions that take dates.
#[tokio::test]
async fn dates_before_christ() {
    let db = open();
    let mut s = db.backend.session();
    check(
        &mut s,
        "SELECT make_date(-44, 3, 15), date '0044-03-15 BC' + 1, \
         make_timestamp(-1, 12, 31, 23, 59, 59) + interval '1 sec', date '0001-01-01' - 1",
        "0044-03-15 BC|0044-03-16 BC|0001-01-01 00:00:00|0001-12-31 BC",
        &[DATE, DATE, TIMESTAMP, DATE],
    )
    .await;
    check(
        &mut s,
        "SELECT extract(year from date '0044-03-15 BC'), \
         extract(decade from date '0044-03-15 BC'), extract(century from date '0044-03-15 BC'), \
         extract(millennium from date '0044-03-15 BC'), extract(millennium from date '2024-01-01'), \
         extract(decade from date '0001-01-01 BC'), extract(century from date '0001-01-01 BC')",
        "-44|-5|-1|-1|3|0|-1",
        &[NUMERIC; 7],
    )
    .await;
    check(
        &mut s,
        "SELECT to_char(date '0044-03-15 BC', 'YYYY-MM-DD'), \
         to_char(timestamp '0044-03-15 10:00 BC', 'YY Y YYY'), \
         to_char(date '2024-05-06', 'Y,YYY Y YY YYY'), to_char(date '0044-03-15 BC', 'Y,YYY'), \
         date_trunc('century', timestamp '0044-03-15 BC'), \
         age(timestamp '0001-03-15', timestamp '0002-03-15 BC')",
        "0044-03-15|44 4 044|2,024 4 24 024|0,044|0100-01-01 00:00:00 BC|2 years",
        &[TEXT, TEXT, TEXT, TEXT, TIMESTAMP, INTERVAL],
    )
    .await;
}

/// Infinite dates and timestamps: most functions answer them with themselves, differences
/// are refused, `extract` is infinite for the fields that grow with time and NULL for the
/// others.
#[tokio::test]
async fn infinite_dates_and_timestamps() {
    let db = open();
    let mut s = db.backend.session();
    check(
        &mut s,
        "SELECT timestamp 'infinity' + interval '1 day', \
         timestamptz '-infinity' - interval '1 mon', interval '1 day' + timestamp 'infinity', \
         date 'infinity' + 1, date '-infinity' - 1, date 'infinity' + time '10:00', \
         date_trunc('day', timestamp 'infinity'), \
         date_trunc('day', timestamptz 'infinity', 'Europe/Paris'), \
         timezone('Europe/Paris', timestamptz '-infinity')",
        "infinity|-infinity|infinity|infinity|-infinity|infinity|infinity|infinity|-infinity",
        &[
            TIMESTAMP,
            TIMESTAMPTZ,
            TIMESTAMP,
            DATE,
            DATE,
            TIMESTAMP,
            TIMESTAMP,
            TIMESTAMPTZ,
            TIMESTAMP,
        ],
    )
    .await;
    check(
        &mut s,
        "SELECT extract(year from timestamp 'infinity'), \
         extract(epoch from timestamp '-infinity'), \
         extract(month from timestamp 'infinity') IS NULL, date_part('year', date 'infinity'), \
         date_part('day', date 'infinity') IS NULL, to_char(timestamp 'infinity', 'YYYY') IS NULL, \
         timestamp 'infinity' + NULL::interval IS NULL",
        "Infinity|-Infinity|t|Infinity|t|t|t",
        &[NUMERIC, NUMERIC, BOOL, FLOAT8, BOOL, BOOL, BOOL],
    )
    .await;
    fails(
        &mut s,
        &[
            (
                "SELECT timestamp 'infinity' - timestamp '2024-01-01'",
                "22008",
            ),
            ("SELECT date 'infinity' - date '2024-01-01'", "22008"),
            (
                "SELECT extract(fortnight from timestamp 'infinity')",
                "22023",
            ),
            // Postgres 15 answers garbage (292253 years 8 days 04:00:54.775807): refused.
            (
                "SELECT age(timestamp 'infinity', timestamp '2024-01-01')",
                "0A000",
            ),
        ],
    )
    .await;
}

/// Interval input in SQL's and ISO 8601's forms, as Postgres reads them.
#[tokio::test]
async fn interval_input_in_sql_and_iso_8601_forms() {
    let db = open();
    let mut s = db.backend.session();
    check(
        &mut s,
        "SELECT interval '1-2', interval '-1-2', interval '3 4:05:06', interval '-3 4:05:06', \
         interval '1-2 3 4:05:06', interval '3 4:05', interval '1 day 1-2', \
         interval '1-2 -3 -4:05:06', interval '1 -2:00'",
        "1 year 2 mons|-1 years -2 mons|3 days 04:05:06|-3 days +04:05:06|\
         1 year 2 mons 3 days 04:05:06|3 days 04:05:00|1 year 2 mons 1 day|\
         1 year 2 mons -3 days -04:05:06|1 day -02:00:00",
        &[INTERVAL; 9],
    )
    .await;
    check(
        &mut s,
        "SELECT interval 'P1Y2M3DT4H5M6S', interval 'P1W', interval 'PT1.5S', \
         interval 'P-1Y-2M', interval 'PT36H', interval 'P1.5Y', interval 'P0.5M', \
         interval 'P1DT0.5H', interval 'P0001-02-03T04:05:06', 'P1D'::interval, interval 'PT'",
        "1 year 2 mons 3 days 04:05:06|7 days|00:00:01.5|-1 years -2 mons|36:00:00|\
         1 year 6 mons|15 days|1 day 00:30:00|1 year 2 mons 3 days 04:05:06|1 day|00:00:00",
        &[INTERVAL; 11],
    )
    .await;
    fails(
        &mut s,
        &[
            ("SELECT interval '1-13'", "22015"),
            ("SELECT interval '3 4'", "22007"),
            ("SELECT interval 'P'", "22007"),
            ("SELECT interval 'P1Y2'", "22007"),
        ],
    )
    .await;
}

#[tokio::test]
async fn date_trunc_of_intervals() {
    let db = open();
    let mut s = db.backend.session();
    check(
        &mut s,
        "SELECT date_trunc('hour', interval '1 day 10:30:15'), \
         date_trunc('year', interval '1 year 5 mons 3 days'), \
         date_trunc('quarter', interval '1 year 5 mons 3 days'), \
         date_trunc('millennium', interval '2345 years 3 mons'), \
         date_trunc('century', interval '-250 years -3 mons'), \
         date_trunc('milliseconds', interval '1.23456 sec'), \
         date_trunc('minute', interval '-1 hour -5 min -30 sec'), \
         date_trunc('day', interval '1 mon 2 days 10:00'), \
         date_trunc('second', interval '59.9 sec'), date_trunc('decade', interval '-15 years')",
        "1 day 10:00:00|1 year|1 year 3 mons|2000 years|-200 years|00:00:01.234|-01:05:00|\
         1 mon 2 days|00:00:59|-10 years",
        &[INTERVAL; 10],
    )
    .await;
    fails(
        &mut s,
        &[
            ("SELECT date_trunc('week', interval '1 day')", "0A000"),
            ("SELECT date_trunc('fortnight', interval '1 day')", "22023"),
        ],
    )
    .await;
}

/// `extract` of dates and timestamps: every unit spelling Postgres reads, the fields it adds
/// (isoyear, julian days of dates, the UTC session's zero offset), and the units a type lacks.
#[tokio::test]
async fn extract_fields_of_dates_and_timestamps() {
    let db = open();
    let mut s = db.backend.session();
    check(
        &mut s,
        "SELECT extract(isoyear from date '2024-12-30'), \
         extract(isoyear from timestamp '2021-01-01 10:00'), \
         extract(julian from date '2024-01-01'), \
         extract(timezone from timestamptz '2024-01-01 12:00+00'), \
         extract(timezone_hour from timestamptz '2024-01-01 12:00+00'), \
         extract(millisecond from timestamp '2024-01-01 10:00:01.5'), \
         extract(ms from timestamp '2024-01-01 10:00:01.5'), \
         extract(hours from timestamp '2024-01-01 10:00:01.5'), \
         date_part('isoyear', date '2024-12-30'), date_part('julian', date '2024-01-01')",
        "2025|2020|2460311|0|0|1500.000|1500.000|10|2025|2460311",
        &[
            NUMERIC, NUMERIC, NUMERIC, NUMERIC, NUMERIC, NUMERIC, NUMERIC, NUMERIC, FLOAT8, FLOAT8,
        ],
    )
    .await;
    let error = err(&mut s, "SELECT extract(hour from date '2024-01-01')").await;
    assert_eq!(
        (error.code.as_str(), error.message.as_str()),
        ("0A000", "unit \"hour\" not supported for type date")
    );
    fails(
        &mut s,
        &[
            (
                "SELECT extract(timezone from timestamp '2024-01-01')",
                "0A000",
            ),
            ("SELECT extract(fortnight from date '2024-01-01')", "22023"),
            (
                "SELECT date_part('fortnight', timestamp '2024-01-01')",
                "22023",
            ),
        ],
    )
    .await;
}

/// A date, a timestamp and a timestamptz compare (and `coalesce`, `greatest`, `least`,
/// `UNION`) as values of the wider type, not as texts.
#[tokio::test]
async fn dates_and_timestamps_compare_across_types() {
    let db = open();
    let mut s = db.backend.session();
    check(
        &mut s,
        "SELECT date '2024-01-01' = timestamp '2024-01-01 00:00', \
         date '2024-01-01' < timestamp '2024-01-01 10:00', \
         timestamp '2024-01-01 00:00' = timestamptz '2024-01-01 00:00+00', \
         timestamptz '2024-01-01 00:00:00.5+00' > timestamp '2024-01-01 00:00', \
         date '2024-01-02' > timestamptz '2024-01-01 23:59:59.999+00', \
         date '2024-01-01' <> timestamp '2024-01-01 00:00:01', \
         date 'infinity' > timestamp '2999-01-01', timestamp '2024-01-01' >= date '2024-01-01'",
        "t|t|t|t|t|t|t|t",
        &[BOOL; 8],
    )
    .await;
    check(
        &mut s,
        "SELECT count(*) FROM (VALUES (date '2024-01-01'), (date '2024-01-02')) v(d) \
         WHERE d = timestamp '2024-01-02 00:00'",
        "1",
        &[INT8],
    )
    .await;
    check(
        &mut s,
        "SELECT date '2024-01-01' BETWEEN timestamp '2024-01-01 00:00' AND timestamp '2024-01-02', \
         timestamp '2024-01-01' BETWEEN date '2024-01-01' AND date '2024-01-01', \
         date '2024-01-01' IN (timestamp '2024-01-01 00:00'), \
         timestamp '2024-01-01' IN (date '2024-01-01', date '2024-01-02')",
        "t|t|t|t",
        &[BOOL; 4],
    )
    .await;
    check(
        &mut s,
        "SELECT greatest(date '2024-01-01', timestamp '2024-01-01 10:00'), \
         least(date '2024-01-02', timestamptz '2024-01-01 10:00+00'), \
         coalesce(NULL::date, timestamp '2024-01-01 10:00'), \
         coalesce(date '2024-01-01', timestamp '2024-01-01 10:00')",
        "2024-01-01 10:00:00|2024-01-01 10:00:00+00|2024-01-01 10:00:00|2024-01-01 00:00:00",
        &[TIMESTAMP, TIMESTAMPTZ, TIMESTAMP, TIMESTAMP],
    )
    .await;
    let out = ok(
        &mut s,
        "SELECT timestamp '2024-01-02 10:00' AS t UNION ALL SELECT date '2024-01-01' \
         UNION ALL SELECT timestamptz '2024-01-03 00:00+00' ORDER BY 1",
    )
    .await;
    assert_eq!(
        out.lines(),
        [
            "2024-01-01 00:00:00+00",
            "2024-01-02 10:00:00+00",
            "2024-01-03 00:00:00+00"
        ]
    );
    assert_eq!(
        (out.oids(), out.names()),
        (vec![TIMESTAMPTZ], vec!["t".to_owned()])
    );
    let out = ok(
        &mut s,
        "SELECT date '2024-01-02' UNION SELECT timestamp '2024-01-02 00:00'",
    )
    .await;
    assert_eq!(out.lines(), ["2024-01-02 00:00:00"]);
    assert_eq!(
        (out.oids(), out.names()),
        (vec![TIMESTAMP], vec!["date".to_owned()])
    );
}

/// `CASE` results of mixed date types take the widest; intervals in `IN`, `BETWEEN`,
/// `GROUP BY` and `DISTINCT` compare by span (`1 day` is `24 hours`), as Postgres compares them.
#[tokio::test]
async fn case_of_dates_and_intervals_in_lists_and_ranges() {
    let db = open();
    let mut s = db.backend.session();
    check(
        &mut s,
        "SELECT CASE WHEN true THEN date '2024-01-01' ELSE timestamp '2024-01-01 10:00' END, \
         CASE WHEN false THEN timestamptz '2024-01-01 10:00+00' \
              WHEN true THEN date '2024-01-02' END, \
         CASE 1 WHEN 1 THEN date '2024-01-01' END",
        "2024-01-01 00:00:00|2024-01-02 00:00:00+00|2024-01-01",
        &[TIMESTAMP, TIMESTAMPTZ, DATE],
    )
    .await;
    check(
        &mut s,
        "SELECT interval '1 day' IN (interval '24 hours'), \
         interval '1 day' NOT IN (interval '24 hours', '2 days'), interval '1 day' IN ('24 hours'), \
         interval '1 day' BETWEEN interval '23 hours' AND interval '25 hours', \
         interval '2 days' BETWEEN interval '1 day' AND interval '10:00:00', \
         interval '1 mon' NOT BETWEEN '29 days' AND '31 days', \
         NULL::interval IN (interval '1 day') IS NULL",
        "t|f|t|t|f|f|t",
        &[BOOL; 7],
    )
    .await;
    let out = ok(
        &mut s,
        "SELECT count(*) FROM (VALUES (interval '1 day'), (interval '24 hours'), \
         (interval '1 hour')) v(x) GROUP BY x ORDER BY 1",
    )
    .await;
    assert_eq!(out.lines(), ["1", "2"]);
    let out = ok(
        &mut s,
        "SELECT DISTINCT x AS d FROM (VALUES (interval '1 hour'), (interval '60 minutes'), \
         (interval '2 hours')) v(x) ORDER BY d",
    )
    .await;
    assert_eq!(out.lines(), ["01:00:00", "02:00:00"]);
    let out = ok(
        &mut s,
        "SELECT count(*) FROM (SELECT DISTINCT x FROM (VALUES (interval '1 day'), \
         (interval '24 hours')) v(x)) d",
    )
    .await;
    assert_eq!(out.lines(), ["1"]);
}
