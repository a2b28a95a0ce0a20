//! The session's `TimeZone` on SQLite nodes: `timestamptz` values are stored in UTC, read and
//! shown in the zone, and the date/time functions work on its wall clock. Every expected
//! value is PostgreSQL 15's answer with the same `SET TimeZone` (the rows inserted while the
//! zone was Europe/Paris, then read in the zone named).

use std::sync::Arc;

use bytes::Bytes;
use mycelium_protocol::{CopyIn, Execute, Format, NodeSession};
use mycelium_storage::SqliteSession;

use crate::util::*;

/// Paris: summer (+02), winter (+01), a time the spring change skips (02:30 on 31 March), one
/// the autumn change repeats (02:30 on 27 October), and an explicit offset.
const SETUP: &[&str] = &[
    "CREATE TABLE ev (id int PRIMARY KEY, at timestamptz, ts timestamp, d date)",
    "INSERT INTO ev VALUES \
     (1, '2024-06-01 10:00', '2024-06-01 10:00', '2024-06-01'), \
     (2, '2024-01-15 10:00', '2024-01-15 10:00', '2024-01-15'), \
     (3, '2024-03-31 02:30', '2024-03-31 02:30', '2024-03-31'), \
     (4, '2024-10-27 02:30', '2024-10-27 02:30', '2024-10-27'), \
     (5, '2024-06-01 10:00+05', '2024-06-01 10:00', '2024-06-01')",
];

async fn session_in(db: &Db, zone: &str) -> SqliteSession {
    let mut s = db.backend.session();
    s.set_time_zone(zone);
    s
}

/// A database with `ev` filled by a session in Europe/Paris.
async fn paris_events() -> Db {
    let db = open();
    let mut s = session_in(&db, "Europe/Paris").await;
    for sql in SETUP {
        ok(&mut s, sql).await;
    }
    db
}

/// Runs `sql` and checks its rows as `psql -A` prints them.
async fn rows(s: &mut SqliteSession, sql: &str, want: &[&str]) {
    let out = ok(s, sql).await;
    assert_eq!(out.lines(), want, "{sql}");
}

fn stored(db: &Db, sql: &str) -> Vec<String> {
    let conn = sqlite(db);
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn timestamptz_is_stored_in_utc_and_shown_in_the_zone() {
    let db = paris_events().await;
    assert_eq!(
        stored(&db, "SELECT at FROM ev ORDER BY id"),
        [
            "2024-06-01 08:00:00+00",
            "2024-01-15 09:00:00+00",
            "2024-03-31 01:30:00+00",
            "2024-10-27 01:30:00+00",
            "2024-06-01 05:00:00+00",
        ]
    );
    let mut paris = session_in(&db, "Europe/Paris").await;
    rows(
        &mut paris,
        "SELECT at, at::text, at AT TIME ZONE 'UTC' FROM ev ORDER BY id",
        &[
            "2024-06-01 10:00:00+02|2024-06-01 10:00:00+02|2024-06-01 08:00:00",
            "2024-01-15 10:00:00+01|2024-01-15 10:00:00+01|2024-01-15 09:00:00",
            "2024-03-31 03:30:00+02|2024-03-31 03:30:00+02|2024-03-31 01:30:00",
            "2024-10-27 02:30:00+01|2024-10-27 02:30:00+01|2024-10-27 01:30:00",
            "2024-06-01 07:00:00+02|2024-06-01 07:00:00+02|2024-06-01 05:00:00",
        ],
    )
    .await;
    let shown = [
        (
            "America/St_Johns",
            [
                "2024-06-01 05:30:00-02:30",
                "2024-01-15 05:30:00-03:30",
                "2024-03-30 23:00:00-02:30",
                "2024-10-26 23:00:00-02:30",
                "2024-06-01 02:30:00-02:30",
            ],
        ),
        (
            "-3.5",
            [
                "2024-06-01 04:30:00-03:30",
                "2024-01-15 05:30:00-03:30",
                "2024-03-30 22:00:00-03:30",
                "2024-10-26 22:00:00-03:30",
                "2024-06-01 01:30:00-03:30",
            ],
        ),
        (
            "UTC",
            [
                "2024-06-01 08:00:00+00",
                "2024-01-15 09:00:00+00",
                "2024-03-31 01:30:00+00",
                "2024-10-27 01:30:00+00",
                "2024-06-01 05:00:00+00",
            ],
        ),
    ];
    for (zone, want) in shown {
        let mut s = session_in(&db, zone).await;
        rows(&mut s, "SELECT at FROM ev ORDER BY id", &want).await;
    }
    // A session's zone is its own: another in UTC on the same backend is unaffected.
    let mut utc = db.backend.session();
    rows(
        &mut utc,
        "SELECT at FROM ev WHERE id = 1",
        &["2024-06-01 08:00:00+00"],
    )
    .await;
}

#[tokio::test]
async fn parameters_and_copy_are_read_in_the_zone() {
    let db = paris_events().await;
    let mut s = session_in(&db, "America/St_Johns").await;
    run_params(
        &mut s,
        "INSERT INTO ev (id, at) VALUES ($1, $2)",
        &[Some("6"), Some("2024-06-01 10:00")],
    )
    .await
    .unwrap();
    // Binary input is an instant: no zone applies (2024-06-01 08:00 UTC).
    let micros: i64 = (8_918 * 86_400 + 8 * 3_600) * 1_000_000;
    execute(
        &mut s,
        Execute {
            sql: Arc::from("INSERT INTO ev (id, at) VALUES (7, $1::timestamptz)"),
            param_types: Arc::from(Vec::new()),
            params: vec![Some(Bytes::copy_from_slice(&micros.to_be_bytes()))],
            param_formats: vec![Format::Binary],
            result_formats: Arc::from(Vec::new()),
        },
    )
    .await
    .unwrap();
    let mut paris = session_in(&db, "Europe/Paris").await;
    let copied = paris
        .copy_in(CopyIn {
            table: "ev".to_owned(),
            columns: vec!["id".to_owned(), "at".to_owned()],
            rows: vec![
                vec![Some("8".to_owned()), Some("2024-01-15 10:00".to_owned())],
                vec![Some("9".to_owned()), Some("2024-03-31 02:30".to_owned())],
            ],
        })
        .await
        .unwrap();
    assert_eq!(copied, 2);
    assert_eq!(
        stored(&db, "SELECT at FROM ev WHERE id > 5 ORDER BY id"),
        [
            "2024-06-01 12:30:00+00",
            "2024-06-01 08:00:00+00",
            "2024-01-15 09:00:00+00",
            "2024-03-31 01:30:00+00",
        ]
    );
    rows(
        &mut s,
        "SELECT at FROM ev WHERE id > 5 ORDER BY id",
        &[
            "2024-06-01 10:00:00-02:30",
            "2024-06-01 05:30:00-02:30",
            "2024-01-15 05:30:00-03:30",
            "2024-03-30 23:00:00-02:30",
        ],
    )
    .await;
    // A literal is folded to UTC in the zone of the session that runs it, not in that of
    // the session that ran the same text before.
    let sql = "SELECT '2024-06-01 10:00'::timestamptz AT TIME ZONE 'UTC'";
    rows(&mut s, sql, &["2024-06-01 12:30:00"]).await;
    rows(&mut paris, sql, &["2024-06-01 08:00:00"]).await;
}

#[tokio::test]
async fn casts_and_comparisons_read_wall_clock_times_in_the_zone() {
    let db = paris_events().await;
    let mut s = session_in(&db, "Europe/Paris").await;
    rows(
        &mut s,
        "SELECT id, at::date, at::timestamp, at::time FROM ev ORDER BY id",
        &[
            "1|2024-06-01|2024-06-01 10:00:00|10:00:00",
            "2|2024-01-15|2024-01-15 10:00:00|10:00:00",
            "3|2024-03-31|2024-03-31 03:30:00|03:30:00",
            "4|2024-10-27|2024-10-27 02:30:00|02:30:00",
            "5|2024-06-01|2024-06-01 07:00:00|07:00:00",
        ],
    )
    .await;
    rows(
        &mut s,
        "SELECT id, ts::timestamptz, d::timestamptz, at = ts, at > d, at - ts FROM ev ORDER BY id",
        &[
            "1|2024-06-01 10:00:00+02|2024-06-01 00:00:00+02|t|t|00:00:00",
            "2|2024-01-15 10:00:00+01|2024-01-15 00:00:00+01|t|t|00:00:00",
            "3|2024-03-31 03:30:00+02|2024-03-31 00:00:00+01|t|t|00:00:00",
            "4|2024-10-27 02:30:00+01|2024-10-27 00:00:00+02|t|t|00:00:00",
            "5|2024-06-01 10:00:00+02|2024-06-01 00:00:00+02|f|t|-03:00:00",
        ],
    )
    .await;
    // Assigned to a column of the other type, a value is cast as it would be explicitly.
    ok(
        &mut s,
        "INSERT INTO ev VALUES (6, '2024-06-01 10:00'::timestamp, \
         '2024-06-01 08:00+00'::timestamptz, '2024-06-01 23:30+00'::timestamptz)",
    )
    .await;
    rows(
        &mut s,
        "SELECT at, ts, d FROM ev WHERE id = 6",
        &["2024-06-01 10:00:00+02|2024-06-01 10:00:00|2024-06-02"],
    )
    .await;
    ok(&mut s, "DELETE FROM ev WHERE id = 6").await;
    let sql = "SELECT at, at::date, at::time, ts::timestamptz, d::timestamptz, at = ts \
               FROM ev ORDER BY id";
    let mut st_johns = session_in(&db, "America/St_Johns").await;
    rows(
        &mut st_johns,
        sql,
        &[
            "2024-06-01 05:30:00-02:30|2024-06-01|05:30:00|2024-06-01 10:00:00-02:30|\
             2024-06-01 00:00:00-02:30|f",
            "2024-01-15 05:30:00-03:30|2024-01-15|05:30:00|2024-01-15 10:00:00-03:30|\
             2024-01-15 00:00:00-03:30|f",
            "2024-03-30 23:00:00-02:30|2024-03-30|23:00:00|2024-03-31 02:30:00-02:30|\
             2024-03-31 00:00:00-02:30|f",
            "2024-10-26 23:00:00-02:30|2024-10-26|23:00:00|2024-10-27 02:30:00-02:30|\
             2024-10-27 00:00:00-02:30|f",
            "2024-06-01 02:30:00-02:30|2024-06-01|02:30:00|2024-06-01 10:00:00-02:30|\
             2024-06-01 00:00:00-02:30|f",
        ],
    )
    .await;
    let mut fixed = session_in(&db, "-3.5").await;
    rows(
        &mut fixed,
        sql,
        &[
            "2024-06-01 04:30:00-03:30|2024-06-01|04:30:00|2024-06-01 10:00:00-03:30|\
             2024-06-01 00:00:00-03:30|f",
            "2024-01-15 05:30:00-03:30|2024-01-15|05:30:00|2024-01-15 10:00:00-03:30|\
             2024-01-15 00:00:00-03:30|f",
            "2024-03-30 22:00:00-03:30|2024-03-30|22:00:00|2024-03-31 02:30:00-03:30|\
             2024-03-31 00:00:00-03:30|f",
            "2024-10-26 22:00:00-03:30|2024-10-26|22:00:00|2024-10-27 02:30:00-03:30|\
             2024-10-27 00:00:00-03:30|f",
            "2024-06-01 01:30:00-03:30|2024-06-01|01:30:00|2024-06-01 10:00:00-03:30|\
             2024-06-01 00:00:00-03:30|f",
        ],
    )
    .await;
}

#[tokio::test]
async fn date_trunc_extract_and_to_char_work_on_the_local_clock() {
    let db = paris_events().await;
    let mut s = session_in(&db, "Europe/Paris").await;
    rows(
        &mut s,
        "SELECT id, date_trunc('day', at), date_trunc('hour', at), date_trunc('month', at), \
         date_trunc('week', at) FROM ev ORDER BY id",
        &[
            "1|2024-06-01 00:00:00+02|2024-06-01 10:00:00+02|2024-06-01 00:00:00+02|\
             2024-05-27 00:00:00+02",
            "2|2024-01-15 00:00:00+01|2024-01-15 10:00:00+01|2024-01-01 00:00:00+01|\
             2024-01-15 00:00:00+01",
            "3|2024-03-31 00:00:00+01|2024-03-31 03:00:00+02|2024-03-01 00:00:00+01|\
             2024-03-25 00:00:00+01",
            "4|2024-10-27 00:00:00+02|2024-10-27 02:00:00+01|2024-10-01 00:00:00+02|\
             2024-10-21 00:00:00+02",
            "5|2024-06-01 00:00:00+02|2024-06-01 07:00:00+02|2024-06-01 00:00:00+02|\
             2024-05-27 00:00:00+02",
        ],
    )
    .await;
    // Within the repeated hour each occurrence keeps its own offset; a day starts at the
    // offset in force at its midnight.
    rows(
        &mut s,
        "SELECT date_trunc('hour', '2024-10-27 00:30:00+00'::timestamptz), \
         date_trunc('hour', '2024-10-27 01:30:00+00'::timestamptz), \
         date_trunc('day', '2024-10-27 12:00:00+00'::timestamptz), \
         date_trunc('day', '2024-03-31 12:00:00+00'::timestamptz), \
         date_trunc('month', '2024-06-01'::date)",
        &[
            "2024-10-27 02:00:00+02|2024-10-27 02:00:00+01|2024-10-27 00:00:00+02|\
           2024-03-31 00:00:00+01|2024-06-01 00:00:00+02",
        ],
    )
    .await;
    rows(
        &mut s,
        "SELECT id, extract(hour from at), extract(day from at), extract(timezone from at), \
         extract(timezone_hour from at), extract(timezone_minute from at), \
         date_part('hour', at), extract(dow from at) FROM ev ORDER BY id",
        &[
            "1|10|1|7200|2|0|10|6",
            "2|10|15|3600|1|0|10|1",
            "3|3|31|7200|2|0|3|0",
            "4|2|27|3600|1|0|2|0",
            "5|7|1|7200|2|0|7|6",
        ],
    )
    .await;
    // The epoch is the instant's, whatever the zone (PostgreSQL prints 1717228800.000000).
    for zone in ["Europe/Paris", "America/St_Johns"] {
        let mut other = session_in(&db, zone).await;
        let out = ok(
            &mut other,
            "SELECT extract(epoch from at) FROM ev WHERE id = 1",
        )
        .await;
        let epoch: f64 = out.value().unwrap().parse().unwrap();
        assert_eq!(epoch, 1_717_228_800.0, "{zone}");
    }
    rows(
        &mut s,
        "SELECT id, to_char(at, 'YYYY-MM-DD HH24:MI:SS TZ OF'), to_char(at, 'tz'), \
         to_char(d, 'YYYY-MM-DD HH24 TZ'), to_char(ts, 'HH24 TZ OF') FROM ev ORDER BY id",
        &[
            "1|2024-06-01 10:00:00 CEST +02|cest|2024-06-01 00 CEST|10  +00",
            "2|2024-01-15 10:00:00 CET +01|cet|2024-01-15 00 CET|10  +00",
            "3|2024-03-31 03:30:00 CEST +02|cest|2024-03-31 00 CET|02  +00",
            "4|2024-10-27 02:30:00 CET +01|cet|2024-10-27 00 CEST|02  +00",
            "5|2024-06-01 07:00:00 CEST +02|cest|2024-06-01 00 CEST|10  +00",
        ],
    )
    .await;
    let sql = "SELECT id, date_trunc('day', at), date_trunc('hour', at), extract(hour from at), \
               extract(minute from at), extract(timezone from at), \
               extract(timezone_hour from at), extract(timezone_minute from at), \
               to_char(at, 'HH24:MI TZ OF') FROM ev ORDER BY id";
    let mut st_johns = session_in(&db, "America/St_Johns").await;
    rows(
        &mut st_johns,
        sql,
        &[
            "1|2024-06-01 00:00:00-02:30|2024-06-01 05:00:00-02:30|5|30|-9000|-2|-30|\
             05:30 NDT -02:30",
            "2|2024-01-15 00:00:00-03:30|2024-01-15 05:00:00-03:30|5|30|-12600|-3|-30|\
             05:30 NST -03:30",
            "3|2024-03-30 00:00:00-02:30|2024-03-30 23:00:00-02:30|23|0|-9000|-2|-30|\
             23:00 NDT -02:30",
            "4|2024-10-26 00:00:00-02:30|2024-10-26 23:00:00-02:30|23|0|-9000|-2|-30|\
             23:00 NDT -02:30",
            "5|2024-06-01 00:00:00-02:30|2024-06-01 02:00:00-02:30|2|30|-9000|-2|-30|\
             02:30 NDT -02:30",
        ],
    )
    .await;
    let mut fixed = session_in(&db, "-3.5").await;
    rows(
        &mut fixed,
        sql,
        &[
            "1|2024-06-01 00:00:00-03:30|2024-06-01 04:00:00-03:30|4|30|-12600|-3|-30|\
             04:30 -03:30 -03:30",
            "2|2024-01-15 00:00:00-03:30|2024-01-15 05:00:00-03:30|5|30|-12600|-3|-30|\
             05:30 -03:30 -03:30",
            "3|2024-03-30 00:00:00-03:30|2024-03-30 22:00:00-03:30|22|0|-12600|-3|-30|\
             22:00 -03:30 -03:30",
            "4|2024-10-26 00:00:00-03:30|2024-10-26 22:00:00-03:30|22|0|-12600|-3|-30|\
             22:00 -03:30 -03:30",
            "5|2024-06-01 00:00:00-03:30|2024-06-01 01:00:00-03:30|1|30|-12600|-3|-30|\
             01:30 -03:30 -03:30",
        ],
    )
    .await;
}

#[tokio::test]
async fn interval_arithmetic_keeps_the_local_time_across_daylight_saving() {
    let db = open();
    let mut s = session_in(&db, "Europe/Paris").await;
    rows(
        &mut s,
        "SELECT '2024-03-30 12:00 Europe/Paris'::timestamptz + interval '1 day', \
         '2024-03-30 12:00 Europe/Paris'::timestamptz + interval '24 hours', \
         '2024-10-26 12:00'::timestamptz + interval '1 day', \
         '2024-10-27 12:00'::timestamptz - interval '1 day', \
         '2024-02-29 12:00'::timestamptz + interval '1 month', \
         '2024-03-15 12:00'::timestamptz + interval '1 mon 1 day 1 hour', \
         interval '1 day' + '2024-03-30 12:00'::timestamptz",
        &[
            "2024-03-31 12:00:00+02|2024-03-31 13:00:00+02|2024-10-27 12:00:00+01|\
           2024-10-26 12:00:00+02|2024-03-29 12:00:00+01|2024-04-16 13:00:00+02|\
           2024-03-31 12:00:00+02",
        ],
    )
    .await;
    rows(
        &mut s,
        "SELECT age('2024-04-01 00:00'::timestamptz, '2024-03-01 00:00'::timestamptz), \
         age('2024-03-31 12:00'::timestamptz, '2024-03-30 12:00'::timestamptz), \
         '2024-03-31 12:00'::timestamptz - '2024-03-30 12:00'::timestamptz, \
         '2024-03-31 12:00'::timestamptz - '2024-03-30 12:00'::timestamp",
        &["1 mon|1 day|23:00:00|23:00:00"],
    )
    .await;
    rows(
        &mut s,
        "SELECT make_timestamptz(2024, 6, 1, 10, 0, 0), make_timestamptz(2024, 3, 31, 2, 30, 0), \
         make_timestamptz(2024, 10, 27, 2, 30, 0), make_timestamptz(2024, 6, 1, 10, 0, 0, 'UTC')",
        &[
            "2024-06-01 10:00:00+02|2024-03-31 03:30:00+02|2024-10-27 02:30:00+01|\
           2024-06-01 12:00:00+02",
        ],
    )
    .await;
    let mut st_johns = session_in(&db, "America/St_Johns").await;
    rows(
        &mut st_johns,
        "SELECT make_timestamptz(2024, 6, 1, 10, 0, 0), \
         '2024-11-02 12:00'::timestamptz + interval '1 day'",
        &["2024-06-01 10:00:00-02:30|2024-11-03 12:00:00-03:30"],
    )
    .await;
}

#[tokio::test]
async fn the_current_date_and_time_are_local() {
    let db = open();
    for zone in ["Europe/Paris", "America/St_Johns", "Pacific/Kiritimati"] {
        let mut s = session_in(&db, zone).await;
        rows(
            &mut s,
            &format!(
                "SELECT current_date = (now() AT TIME ZONE '{zone}')::date, \
                 now()::date = current_date, localtimestamp = now()::timestamp, \
                 localtimestamp = (now() AT TIME ZONE '{zone}')"
            ),
            &["t|t|t|t"],
        )
        .await;
    }
}

#[tokio::test]
async fn json_arrays_and_text_input_functions_use_the_zone() {
    let db = open();
    let mut s = session_in(&db, "Europe/Paris").await;
    rows(
        &mut s,
        "SELECT to_json('2024-06-01 08:00:00.5+00'::timestamptz), \
         to_jsonb('2024-01-01 08:00+00'::timestamptz), \
         ARRAY['2024-06-01 08:00+00'::timestamptz, '2024-01-01 08:00+00'], \
         '{\"2024-06-01 10:00\"}'::timestamptz[]",
        &[
            "\"2024-06-01T10:00:00.5+02:00\"|\"2024-01-01T09:00:00+01:00\"|\
           {\"2024-06-01 10:00:00+02\",\"2024-01-01 09:00:00+01\"}|{\"2024-06-01 10:00:00+02\"}",
        ],
    )
    .await;
    rows(
        &mut s,
        "SELECT to_timestamp('2024-06-01 10:00', 'YYYY-MM-DD HH24:MI'), to_timestamp(0), \
         '2024-06-01'::date AT TIME ZONE 'UTC', \
         date_trunc('day', '2024-06-01 23:30:00+00'::timestamptz, 'UTC'), \
         date_bin('1 day', '2024-06-01 10:00'::timestamptz, '2024-01-01'::date), \
         date_bin('1 hour', '2024-06-01 10:20'::timestamptz, '2024-01-01 00:00+00'::timestamptz)",
        &[
            "2024-06-01 10:00:00+02|1970-01-01 01:00:00+01|2024-05-31 22:00:00|\
           2024-06-01 02:00:00+02|2024-06-01 01:00:00+02|2024-06-01 10:00:00+02",
        ],
    )
    .await;
    // Arrays hold their timestamptz elements in UTC, as columns do.
    ok(
        &mut s,
        "CREATE TABLE series (id int PRIMARY KEY, at timestamptz[])",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO series VALUES (1, '{\"2024-06-01 10:00\", \"2024-01-01 10:00\"}')",
    )
    .await;
    assert_eq!(
        stored(&db, "SELECT at FROM series"),
        ["{\"2024-06-01 08:00:00+00\",\"2024-01-01 09:00:00+00\"}"]
    );
    let mut st_johns = session_in(&db, "America/St_Johns").await;
    rows(
        &mut st_johns,
        "SELECT at, to_json('2024-06-01 08:00+00'::timestamptz), at::text, \
         array_to_string(at, ',') FROM series",
        &[
            "{\"2024-06-01 05:30:00-02:30\",\"2024-01-01 05:30:00-03:30\"}|\
           \"2024-06-01T05:30:00-02:30\"|\
           {\"2024-06-01 05:30:00-02:30\",\"2024-01-01 05:30:00-03:30\"}|\
           2024-06-01 05:30:00-02:30,2024-01-01 05:30:00-03:30",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_utc_session_changes_nothing() {
    let db = paris_events().await;
    let mut s = session_in(&db, "UTC").await;
    rows(
        &mut s,
        "SELECT at, at::date, at::time, ts::timestamptz, d::timestamptz, at = ts \
         FROM ev ORDER BY id",
        &[
            "2024-06-01 08:00:00+00|2024-06-01|08:00:00|2024-06-01 10:00:00+00|\
             2024-06-01 00:00:00+00|f",
            "2024-01-15 09:00:00+00|2024-01-15|09:00:00|2024-01-15 10:00:00+00|\
             2024-01-15 00:00:00+00|f",
            "2024-03-31 01:30:00+00|2024-03-31|01:30:00|2024-03-31 02:30:00+00|\
             2024-03-31 00:00:00+00|f",
            "2024-10-27 01:30:00+00|2024-10-27|01:30:00|2024-10-27 02:30:00+00|\
             2024-10-27 00:00:00+00|f",
            "2024-06-01 05:00:00+00|2024-06-01|05:00:00|2024-06-01 10:00:00+00|\
             2024-06-01 00:00:00+00|f",
        ],
    )
    .await;
    rows(
        &mut s,
        "SELECT id, date_trunc('day', at), date_trunc('hour', at), extract(hour from at), \
         extract(minute from at), extract(timezone from at), extract(timezone_hour from at), \
         extract(timezone_minute from at), to_char(at, 'HH24:MI TZ OF') FROM ev ORDER BY id",
        &[
            "1|2024-06-01 00:00:00+00|2024-06-01 08:00:00+00|8|0|0|0|0|08:00 UTC +00",
            "2|2024-01-15 00:00:00+00|2024-01-15 09:00:00+00|9|0|0|0|0|09:00 UTC +00",
            "3|2024-03-31 00:00:00+00|2024-03-31 01:00:00+00|1|30|0|0|0|01:30 UTC +00",
            "4|2024-10-27 00:00:00+00|2024-10-27 01:00:00+00|1|30|0|0|0|01:30 UTC +00",
            "5|2024-06-01 00:00:00+00|2024-06-01 05:00:00+00|5|0|0|0|0|05:00 UTC +00",
        ],
    )
    .await;
}
