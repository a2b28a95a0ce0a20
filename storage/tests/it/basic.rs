use mycelium_protocol::NodeSession;

use crate::util::*;

#[tokio::test]
async fn create_insert_select_update_delete_with_tags() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(&mut s, "CREATE TABLE users (id bigserial PRIMARY KEY, name varchar(20) NOT NULL, score int DEFAULT 0)").await;
    assert_eq!(out.tag, "CREATE TABLE");
    assert_eq!(
        ok(
            &mut s,
            "INSERT INTO users (name) VALUES ('a'), ('b'), ('c')"
        )
        .await
        .tag,
        "INSERT 0 3"
    );
    let out = ok(&mut s, "SELECT id, name, score FROM users ORDER BY id").await;
    assert_eq!(out.tag, "SELECT 3");
    assert_eq!(out.oids(), vec![20, 1043, 23]);
    assert_eq!(out.columns[1].type_modifier, 24);
    assert_eq!(
        out.text(),
        vec![
            vec![Some("1".into()), Some("a".into()), Some("0".into())],
            vec![Some("2".into()), Some("b".into()), Some("0".into())],
            vec![Some("3".into()), Some("c".into()), Some("0".into())],
        ]
    );
    assert_eq!(
        ok(&mut s, "UPDATE users SET score = score + 5 WHERE id >= 2")
            .await
            .tag,
        "UPDATE 2"
    );
    assert_eq!(
        ok(&mut s, "DELETE FROM users WHERE id = 1").await.tag,
        "DELETE 1"
    );
    assert_eq!(count_rows(&db, "users"), 2);
    let out = ok(&mut s, "SELECT count(*), sum(score) FROM users").await;
    assert_eq!(out.names(), vec!["count", "sum"]);
    assert_eq!(out.oids(), vec![20, 20]);
    assert_eq!(out.value(), Some("2".into()));
    assert_eq!(out.text()[0][1], Some("10".into()));
    assert_eq!(ok(&mut s, "DROP TABLE users").await.tag, "DROP TABLE");
    assert_eq!(err(&mut s, "SELECT * FROM users").await.code, "42P01");
}

#[tokio::test]
async fn returning_upsert_and_defaults() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE kv (k text PRIMARY KEY, v int NOT NULL, at timestamptz DEFAULT now(), id uuid DEFAULT gen_random_uuid())").await;
    let out = ok(
        &mut s,
        "INSERT INTO kv (k, v) VALUES ('a', 1) RETURNING k, v, at, id",
    )
    .await;
    assert_eq!(out.tag, "INSERT 0 1");
    assert_eq!(out.oids(), vec![25, 23, 1184, 2950]);
    let row = &out.text()[0];
    assert!(row[2].as_ref().unwrap().ends_with("+00"), "{row:?}");
    assert_eq!(row[3].as_ref().unwrap().len(), 36);
    ok(
        &mut s,
        "INSERT INTO kv (k, v) VALUES ('a', 2) ON CONFLICT (k) DO UPDATE SET v = kv.v + EXCLUDED.v",
    )
    .await;
    assert_eq!(
        ok(&mut s, "SELECT v FROM kv WHERE k = 'a'").await.value(),
        Some("3".into())
    );
    let out = ok(
        &mut s,
        "INSERT INTO kv (k, v) VALUES ('a', 9) ON CONFLICT DO NOTHING",
    )
    .await;
    assert_eq!(out.tag, "INSERT 0 0");
    let out = ok(
        &mut s,
        "INSERT INTO kv VALUES ('b', 7, DEFAULT, DEFAULT) RETURNING at IS NOT NULL",
    )
    .await;
    assert_eq!(out.value(), Some("t".into()));
    let out = ok(&mut s, "UPDATE kv SET v = 0 RETURNING k").await;
    assert_eq!(out.tag, "UPDATE 2");
    assert_eq!(out.rows.len(), 2);
}

#[tokio::test]
async fn parameters_are_typed_from_context() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE t (id int PRIMARY KEY, flag boolean, price numeric(10,2), at timestamp)",
    )
    .await;
    let desc = s
        .describe(
            "INSERT INTO t (id, flag, price, at) VALUES ($1, $2, $3, $4)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(desc.params, vec![23, 16, 1700, 1114]);
    assert!(desc.columns.is_empty());
    run_params(
        &mut s,
        "INSERT INTO t (id, flag, price, at) VALUES ($1, $2, $3, $4)",
        &[
            Some("1"),
            Some("true"),
            Some("12.5"),
            Some("2024-01-02 03:04:05"),
        ],
    )
    .await
    .unwrap();
    let out = run_params(
        &mut s,
        "SELECT id, flag, price, at FROM t WHERE id = $1",
        &[Some("1")],
    )
    .await
    .unwrap();
    assert_eq!(
        out.text()[0],
        vec![
            Some("1".into()),
            Some("t".into()),
            Some("12.50".into()),
            Some("2024-01-02 03:04:05".into())
        ]
    );
    let desc = s
        .describe("SELECT id, flag FROM t WHERE price > $1 LIMIT $2", &[])
        .await
        .unwrap();
    assert_eq!(desc.params, vec![1700, 20]);
    assert_eq!(
        desc.columns.iter().map(|c| c.type_oid).collect::<Vec<_>>(),
        vec![23, 16]
    );
    assert_eq!(
        desc.columns[0].table_oid,
        mycelium_storage::FIRST_USER_OID + 1
    );
    assert_eq!(desc.columns[0].column_id, 1);
    let e = run_params(&mut s, "SELECT id FROM t WHERE id = $1", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code, "08P01");
    let e = run_params(&mut s, "SELECT id FROM t WHERE id = $1", &[Some("x")])
        .await
        .unwrap_err();
    assert_eq!(e.code, "22P02");
}

#[tokio::test]
async fn functions_and_expressions() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(&mut s, "SELECT lower('AbC'), upper('x'), length('héllo'), 'a' || 'b', coalesce(NULL, 2), 7 / 2, 7.0 / 2, 'abc' LIKE 'A%', 'abc' ILIKE 'A%', 1 IS DISTINCT FROM NULL").await;
    assert_eq!(
        out.text()[0],
        [
            "abc",
            "X",
            "5",
            "ab",
            "2",
            "3",
            "3.5000000000000000",
            "f",
            "t",
            "t"
        ]
        .iter()
        .map(|v| Some(v.to_string()))
        .collect::<Vec<_>>()
    );
    let out = ok(
        &mut s,
        "SELECT version(), current_database(), current_schema(), pg_catalog.version()",
    )
    .await;
    assert!(out.value().unwrap().starts_with("PostgreSQL"));
    let out = ok(
        &mut s,
        "SELECT random() < 1.0, extract(epoch from '2024-01-01 00:00:01+00'::timestamptz)",
    )
    .await;
    assert_eq!(
        out.text()[0],
        vec![Some("t".into()), Some("1704067201.000000".into())],
        "PostgreSQL 15's numeric epoch"
    );
    let out = ok(&mut s, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10) SELECT count(*), max(x) FROM c").await;
    assert_eq!(out.text()[0], vec![Some("10".into()), Some("10".into())]);
    let out = ok(
        &mut s,
        "SELECT NULL::int IS NULL, CASE WHEN 1 > 0 THEN 'yes' ELSE 'no' END",
    )
    .await;
    assert_eq!(out.text()[0], vec![Some("t".into()), Some("yes".into())]);
    assert_eq!(out.names(), vec!["?column?", "case"]);
}

#[tokio::test]
async fn rows_stream_in_batches_and_survive_restart() {
    let db = open();
    {
        let mut s = db.backend.session();
        ok(&mut s, "CREATE TABLE big (id int PRIMARY KEY, pad text)").await;
        ok(&mut s, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) INSERT INTO big SELECT x, 'row ' || x FROM c").await;
        let mut stream = s
            .execute(mycelium_protocol::Execute::simple("SELECT * FROM big"))
            .await
            .unwrap();
        let mut batches = 0;
        let mut rows = 0;
        while let Some(reply) = stream.recv().await {
            match reply.unwrap() {
                mycelium_protocol::Reply::Rows(r) => {
                    batches += 1;
                    rows += r.len();
                    assert!(r.len() <= 1000);
                }
                mycelium_protocol::Reply::Complete { tag } => {
                    assert_eq!(tag, "SELECT 5000");
                    break;
                }
                _ => {}
            }
        }
        assert_eq!((rows, batches), (5000, 5));
    }
    db.backend.shutdown();
    let reopened = mycelium_storage::SqliteBackend::open(&db.path, Default::default()).unwrap();
    let mut s = reopened.session();
    let out = ok(&mut s, "SELECT count(*), max(pad) FROM big").await;
    assert_eq!(
        out.text()[0],
        vec![Some("5000".into()), Some("row 999".into())]
    );
    let out = ok(&mut s, "SELECT id FROM big WHERE id = 1").await;
    assert_eq!(out.oids(), vec![23]);
}

#[tokio::test]
async fn serial_columns_that_are_not_the_key_use_a_sequence() {
    let db = open();
    {
        let mut s = db.backend.session();
        ok(
            &mut s,
            "CREATE TABLE orders (code text PRIMARY KEY, seq serial, n bigserial)",
        )
        .await;
        let out = ok(
            &mut s,
            "INSERT INTO orders (code) VALUES ('a'), ('b') RETURNING seq, n",
        )
        .await;
        assert_eq!(
            out.text(),
            vec![
                vec![Some("1".into()), Some("1".into())],
                vec![Some("2".into()), Some("2".into())]
            ]
        );
        assert_eq!(out.oids(), vec![23, 20]);
        let out = ok(&mut s, "SELECT nextval('orders_seq_seq')").await;
        assert_eq!(out.value(), Some("3".into()));
    }
    db.backend.shutdown();
    // After a restart the sequence continues after the largest stored value.
    let reopened = mycelium_storage::SqliteBackend::open(&db.path, Default::default()).unwrap();
    let mut s = reopened.session();
    let out = ok(
        &mut s,
        "INSERT INTO orders (code) VALUES ('c') RETURNING seq",
    )
    .await;
    assert_eq!(out.value(), Some("3".into()));
}

#[tokio::test]
async fn tables_without_a_primary_key_get_a_hidden_one() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE log (at int, msg text)").await;
    ok(&mut s, "INSERT INTO log VALUES (1, 'a'), (2, 'b')").await;
    let out = ok(&mut s, "SELECT * FROM log ORDER BY at").await;
    assert_eq!(out.names(), vec!["at", "msg"]);
    let out = ok(&mut s, "INSERT INTO log VALUES (3, 'c') RETURNING *").await;
    assert_eq!(out.text(), vec![vec![Some("3".into()), Some("c".into())]]);
    let out = ok(&mut s, "SELECT count(*) FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid WHERE c.relname = 'log'").await;
    assert_eq!(out.value(), Some("2".into()));
    // SQLite sees a primary key, so the session extension records the table.
    let pk: i64 = sqlite(&db)
        .query_row(
            "SELECT count(*) FROM pragma_table_info('log') WHERE pk > 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pk, 1);
}

#[tokio::test]
async fn every_worker_describes_the_schema_another_one_changed() {
    let db = open();
    let mut sessions: Vec<_> = (0..8).map(|_| db.backend.session()).collect();
    ok(
        &mut sessions[0],
        "CREATE TABLE t (id int PRIMARY KEY, a int)",
    )
    .await;
    ok(&mut sessions[0], "INSERT INTO t VALUES (1, 10)").await;
    let query = "SELECT * FROM t WHERE id = $1";
    for s in &mut sessions {
        let desc = s.describe(query, &[]).await.unwrap();
        assert_eq!(desc.columns.len(), 2);
    }
    ok(
        &mut sessions[0],
        "ALTER TABLE t ADD COLUMN b text DEFAULT 'x'",
    )
    .await;
    // Texts no worker has seen yet, and the one every worker has.
    for (i, s) in sessions.iter_mut().enumerate() {
        for sql in [
            query.to_owned(),
            format!("SELECT * FROM t WHERE id = $1 AND {i} = {i}"),
        ] {
            let desc = s.describe(&sql, &[]).await.unwrap();
            let names: Vec<&str> = desc.columns.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["id", "a", "b"], "session {i}: {sql}");
            let out = run_params(s, &sql, &[Some("1")]).await.unwrap();
            assert_eq!(
                out.text()[0],
                vec![Some("1".into()), Some("10".into()), Some("x".into())],
                "session {i}: {sql}"
            );
        }
    }
}

#[tokio::test]
async fn upper_and_lower_map_every_letter() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE names (id int PRIMARY KEY, n text)").await;
    ok(
        &mut s,
        "INSERT INTO names VALUES (1, 'Ärger straße ÉTÉ'), (2, NULL)",
    )
    .await;
    let out = ok(
        &mut s,
        "SELECT upper(n), lower(n), upper('héllo'), lower(42) FROM names ORDER BY id",
    )
    .await;
    assert_eq!(
        out.text(),
        vec![
            vec![
                Some("ÄRGER STRAßE ÉTÉ".into()),
                Some("ärger straße été".into()),
                Some("HÉLLO".into()),
                Some("42".into())
            ],
            vec![None, None, Some("HÉLLO".into()), Some("42".into())],
        ]
    );
}

#[tokio::test]
async fn math_and_string_functions_sqlite_lacks() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(
        &mut s,
        "SELECT floor(-1.1), ceil(1.1), ceil(7), mod(7, 3), mod(-7, 3), power(2, 10), sqrt(16::float8), \
         ln(1::float8), log(100::float8), log(2, 8), round(pi()::numeric, 4), reverse('abc'), \
         split_part('a,b,c', ',', 2), split_part('a,b,c', ',', -1), ascii('A'), chr(66), \
         initcap('hello wORLD-x'), quote_literal('it''s'), md5('a')",
    )
    .await;
    assert_eq!(
        out.text()[0],
        [
            "-2",
            "2",
            "7",
            "1",
            "-1",
            "1024",
            "4",
            "0",
            "2",
            "3",
            "3.1416",
            "cba",
            "b",
            "c",
            "65",
            "B",
            "Hello World-X",
            "'it''s'",
            "0cc175b9c0f1b6a831c399e269772661",
        ]
        .iter()
        .map(|v| Some(v.to_string()))
        .collect::<Vec<_>>()
    );
    for (sql, code) in [
        ("SELECT sqrt(-1::float8)", "2201F"),
        ("SELECT ln(0::float8)", "2201E"),
        ("SELECT mod(1, 0)", "22012"),
        ("SELECT split_part('a', ',', 0)", "22023"),
    ] {
        let error = run(&mut s, sql).await.expect_err(sql);
        assert_eq!(error.code, code, "{sql}: {error:?}");
    }
}

#[tokio::test]
async fn concatenation_spells_booleans() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE flags (id int PRIMARY KEY, on_ boolean)",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO flags VALUES (1, true), (2, false), (3, NULL)",
    )
    .await;
    let out = ok(
        &mut s,
        "SELECT 'a' || 1 || true, 'f:' || on_, on_ || '!' FROM flags ORDER BY id",
    )
    .await;
    assert_eq!(
        out.text(),
        vec![
            vec![
                Some("a1true".into()),
                Some("f:true".into()),
                Some("true!".into())
            ],
            vec![
                Some("a1true".into()),
                Some("f:false".into()),
                Some("false!".into())
            ],
            vec![Some("a1true".into()), None, None],
        ]
    );
}

/// Window functions run on SQLite as on Postgres: the expected rows are PostgreSQL 15's answer
/// to the same statement.
#[tokio::test]
async fn window_functions_answer_as_postgres() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE sales (id int PRIMARY KEY, region text, amount int, price float8)",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO sales VALUES (1, 'east', 10, 1.5), (2, 'east', 20, 2.5), \
         (3, 'west', 5, 0.5), (4, 'west', 5, 3.0), (5, 'west', 15, 1.0), (6, 'north', NULL, 2.0)",
    )
    .await;
    let out = ok(
        &mut s,
        "SELECT id, row_number() OVER (ORDER BY id), \
         rank() OVER (PARTITION BY region ORDER BY amount), \
         dense_rank() OVER (ORDER BY amount NULLS FIRST), ntile(2) OVER (ORDER BY id), \
         sum(amount) OVER (PARTITION BY region), count(*) OVER (), lag(amount) OVER (ORDER BY id), \
         lead(amount, 2, -1) OVER (ORDER BY id), first_value(region) OVER (ORDER BY id DESC), \
         max(price) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW), \
         percent_rank() OVER (ORDER BY id) FROM sales ORDER BY id",
    )
    .await;
    let postgres = "1|1|1|3|1|30|6||5|north|1.5|0
2|2|2|5|1|30|6|10|5|north|2.5|0.2
3|3|1|2|1|25|6|20|15|north|2.5|0.4
4|4|1|2|2|25|6|5||north|3|0.6
5|5|3|4|2|25|6|5|-1|north|3|0.8
6|6|1|1|2||6|15|-1|north|2|1";
    let got: Vec<String> = out.lines();
    assert_eq!(got.join("\n"), postgres);
    let types: Vec<u32> = out.columns.iter().map(|c| c.type_oid).collect();
    // int4, int8 × 3, int4 (ntile), int8 (sum of int4), int8, int4 × 2, text, float8 × 2
    assert_eq!(types, [23, 20, 20, 20, 23, 20, 20, 23, 23, 25, 701, 701]);
    let error = err(&mut s, "SELECT string_agg(region, ',') OVER () FROM sales").await;
    assert_eq!(error.code, "0A000", "{error:?}");
}

/// `regexp_replace` and the `~` operators through SQL, with PostgreSQL 15's answers.
#[tokio::test]
async fn regular_expressions_answer_as_postgres() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(
        &mut s,
        "SELECT regexp_replace('a1b22c', '[0-9]+', '#', 'g'), \
         regexp_replace('John Smith', '(\\w+) (\\w+)', '\\2, \\1'), \
         'Users' ~* '^users$', 'x9' !~ '^[a-z]+$', regexp_replace(NULL, 'a', 'b')",
    )
    .await;
    assert_eq!(
        out.text()[0],
        [
            Some("a#b#c".to_owned()),
            Some("Smith, John".to_owned()),
            Some("t".to_owned()),
            Some("t".to_owned()),
            None,
        ]
    );
    assert_eq!(out.columns[0].type_oid, 25);
    let error = err(&mut s, "SELECT 'a' ~ '(a'").await;
    assert_eq!(error.code, "2201B", "{error:?}");
}

/// `to_char` of dates and timestamps, `age`, `make_date`, `to_timestamp(seconds)` through
/// SQL, with PostgreSQL 15's answers (session time zone UTC); `to_char` of a number is refused.
#[tokio::test]
async fn date_functions_answer_as_postgres() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(
        &mut s,
        "SELECT to_char(timestamptz '2024-03-05 14:07:09+00', 'FMDD Mon YYYY HH24:MI TZ'), \
         to_char(date '2024-03-05', 'Day DDth'), \
         age(timestamp '2024-03-15', timestamp '2024-01-01'), \
         make_date(2024, 2, 29), to_timestamp(86400), \
         age(timestamptz '2024-03-15 00:00+00', timestamptz '2024-03-14 12:00+00')",
    )
    .await;
    assert_eq!(
        out.text()[0],
        [
            "5 Mar 2024 14:07 UTC",
            "Tuesday   05th",
            "2 mons 14 days",
            "2024-02-29",
            "1970-01-02 00:00:00+00",
            "12:00:00",
        ]
        .iter()
        .map(|v| Some(v.to_string()))
        .collect::<Vec<_>>()
    );
    let types: Vec<u32> = out.columns.iter().map(|c| c.type_oid).collect();
    // Intervals are `interval` (1186), as in Postgres.
    assert_eq!(types, [25, 25, 1186, 1082, 1184, 1186]);
    let error = err(&mut s, "SELECT make_date(2023, 2, 29)").await;
    assert_eq!(error.code, "22008", "{error:?}");
    // Numbers: PostgreSQL 15's answers (the template patterns are unit-tested in
    // `functions::number_template`).
    let out = ok(
        &mut s,
        "SELECT to_char(12.5, '999.9'), to_char(1234567::bigint, 'FM9,999,999'), \
         to_char(2.5::float8, 'FM990.00'), to_char(-7::int, 'S00'), to_char(sum(x), 'FM999.0') \
         FROM (VALUES (1.25), (2.5)) v(x)",
    )
    .await;
    assert_eq!(
        out.text(),
        vec![
            ["  12.5", "1,234,567", "2.50", "-07", "3.8"]
                .iter()
                .map(|v| Some(v.to_string()))
                .collect::<Vec<_>>()
        ]
    );
    let error = err(&mut s, "SELECT to_char(485, 'L999')").await;
    assert_eq!(error.code, "0A000", "{error:?}");

    // Reading with a template (the patterns are unit-tested in `functions::date_template`).
    let out = ok(
        &mut s,
        "SELECT to_date('15 Mar 2024', 'DD Mon YYYY'), \
         to_timestamp('2024-03-15 2:07:09 pm', 'YYYY-MM-DD HH:MI:SS am')",
    )
    .await;
    assert_eq!(
        out.text(),
        vec![vec![
            Some("2024-03-15".to_owned()),
            Some("2024-03-15 14:07:09+00".to_owned())
        ]]
    );
    let types: Vec<u32> = out.columns.iter().map(|c| c.type_oid).collect();
    assert_eq!(types, [1082, 1184]);
    let error = err(&mut s, "SELECT to_date('2024-02-30', 'YYYY-MM-DD')").await;
    assert_eq!(error.code, "22008", "{error:?}");
}

/// `substring(x from 'pattern')` is the regular-expression form (PostgreSQL 15's answers).
#[tokio::test]
async fn substring_from_a_pattern() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(
        &mut s,
        "SELECT substring('abc123def' from '[0-9]+'), substring('key=value' from '=(.*)$'), \
         substring('abc' from '[0-9]+'), substring('abcdef' from 2 for 3), substring('abcdef' from '3')",
    )
    .await;
    assert_eq!(
        out.text()[0],
        [
            Some("123".to_owned()),
            Some("value".to_owned()),
            None,
            Some("bcd".to_owned()),
            None,
        ]
    );
}

/// Interval arithmetic (PostgreSQL 15's answers): interval ± interval, × and ÷ a number,
/// `make_interval` with named arguments, and a timestamp moved by a computed interval.
#[tokio::test]
async fn interval_arithmetic_answers_as_postgres() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(
        &mut s,
        "SELECT interval '1 day' * 3, 2 * interval '1 hour', interval '3 days' / 2, \
         interval '1 day' - interval '2 hours', interval '1 mon 1 day 01:00:00' * 1.5, \
         make_interval(days => 7, hours => 2), \
         timestamptz '2024-03-01 00:00+00' - interval '1 day' * 2",
    )
    .await;
    assert_eq!(
        out.text()[0],
        [
            "3 days",
            "02:00:00",
            "1 day 12:00:00",
            "1 day -02:00:00",
            "1 mon 16 days 13:30:00",
            "7 days 02:00:00",
            "2024-02-28 00:00:00+00",
        ]
        .iter()
        .map(|v| Some(v.to_string()))
        .collect::<Vec<_>>()
    );
    let out = ok(
        &mut s,
        "SELECT interval '25 hours' = interval '1 day 1 hour', interval '1 day' > interval '2 hours', \
         interval '1 mon' < interval '31 days', -interval '1 day 02:00:00', \
         interval '10 minutes' BETWEEN interval '5 minutes' AND interval '1 hour'",
    )
    .await;
    assert_eq!(
        out.text()[0],
        ["t", "t", "t", "-1 days -02:00:00", "t"]
            .iter()
            .map(|v| Some(v.to_string()))
            .collect::<Vec<_>>()
    );
    let error = err(&mut s, "SELECT interval '1 day' / 0").await;
    assert_eq!(error.code, "22012", "{error:?}");
}

/// Interval columns: stored as Postgres prints them, typed `interval` (1186), compared and
/// sorted by their span (a month is 30 days) as Postgres does. Expected rows are PostgreSQL
/// 15's answers to the same statements.
#[tokio::test]
async fn interval_columns_answer_as_postgres() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE jobs (id int PRIMARY KEY, every interval NOT NULL, \
         grace interval DEFAULT '5 minutes')",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO jobs VALUES (1, '1 day', NULL), (2, '25 hours', '1 hour'), \
         (3, interval '90 minutes', DEFAULT), (4, '1 mon', '-1 day')",
    )
    .await;
    ok(&mut s, "UPDATE jobs SET every = every * 2 WHERE id = 3").await;
    let rows = |out: Out| -> String { out.lines().join(" ") };
    let out = ok(
        &mut s,
        "SELECT id, every, grace, every + grace, pg_typeof(every) FROM jobs ORDER BY every, id",
    )
    .await;
    let types: Vec<u32> = out.columns.iter().map(|c| c.type_oid).collect();
    assert_eq!(types, [23, 1186, 1186, 1186, 25]);
    assert_eq!(
        rows(out),
        "3|03:00:00|00:05:00|03:05:00|interval 1|1 day|||interval \
         2|25:00:00|01:00:00|26:00:00|interval 4|1 mon|-1 days|1 mon -1 days|interval"
    );
    for (sql, postgres) in [
        (
            "SELECT id, every + grace AS t FROM jobs ORDER BY 2 DESC",
            "1| 4|1 mon -1 days 2|26:00:00 3|03:05:00",
        ),
        (
            "SELECT id FROM jobs WHERE every > interval '1 day' ORDER BY id",
            "2 4",
        ),
        ("SELECT id FROM jobs WHERE every = '1 day 1 hour'", "2"),
        (
            "SELECT id FROM jobs WHERE every BETWEEN '1 hour' AND '1 day' ORDER BY id",
            "1 3",
        ),
        ("SELECT id FROM jobs ORDER BY every * 2 DESC", "4 2 1 3"),
        (
            "SELECT min(every), max(every), max(grace) FROM jobs",
            "03:00:00|1 mon|01:00:00",
        ),
    ] {
        assert_eq!(rows(ok(&mut s, sql).await), postgres, "{sql}");
    }
    let out = run_params(
        &mut s,
        "SELECT id FROM jobs WHERE every = $1",
        &[Some("1 day 1 hour")],
    )
    .await;
    assert_eq!(out.map(rows), Ok("2".to_owned()), "a text parameter");
    let error = err(&mut s, "INSERT INTO jobs VALUES (5, 'soon', NULL)").await;
    assert_eq!(error.code, "22007", "{error:?}");
    let error = err(
        &mut s,
        "SELECT every FROM jobs UNION SELECT interval '1 day' ORDER BY 1",
    )
    .await;
    assert_eq!(error.code, "0A000", "{error:?}");
    let out = ok(
        &mut s,
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid WHERE c.relname = 'jobs' AND a.attname = 'every'",
    )
    .await;
    assert_eq!(rows(out), "interval");
}

/// DELETE ... USING deletes the target rows some row of the USING tables matches, as in
/// Postgres (SQLite has no USING: the node asks `EXISTS` of them).
#[tokio::test]
async fn delete_using_deletes_matched_rows() {
    let db = open();
    let mut s = db.backend.session();
    for sql in [
        "CREATE TABLE items (id int PRIMARY KEY, owner int)",
        "CREATE TABLE banned (owner int, reason text)",
        "INSERT INTO items VALUES (1, 10), (2, 20), (3, 10), (4, 30), (5, NULL)",
        "INSERT INTO banned VALUES (10, 'spam'), (10, 'again'), (30, 'old')",
    ] {
        ok(&mut s, sql).await;
    }
    let out = ok(
        &mut s,
        "DELETE FROM items i USING banned b WHERE i.owner = b.owner AND b.reason <> 'old'",
    )
    .await;
    assert_eq!(out.tag, "DELETE 2");
    let out = ok(
        &mut s,
        "DELETE FROM items USING banned WHERE items.owner = banned.owner",
    )
    .await;
    assert_eq!(out.tag, "DELETE 1");
    let out = ok(&mut s, "SELECT id FROM items ORDER BY id").await;
    assert_eq!(
        out.text(),
        vec![vec![Some("2".into())], vec![Some("5".into())]]
    );
    let error = err(
        &mut s,
        "DELETE FROM items USING banned WHERE items.owner = banned.owner RETURNING items.id",
    )
    .await;
    assert_eq!(error.code, "0A000", "{error:?}");
}

/// SELECT DISTINCT ON keeps the first row of each group in ORDER BY order: the expected rows
/// are PostgreSQL 15's answers.
#[tokio::test]
async fn distinct_on_answers_as_postgres() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE orders (id int PRIMARY KEY, customer int, total numeric, created date)",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO orders VALUES (1, 10, 5.5, '2024-01-01'), (2, 10, 7, '2024-02-01'), \
         (3, 20, 1, '2024-01-15'), (4, 20, NULL, '2024-03-01'), (5, 30, 2, NULL), \
         (6, NULL, 3, '2024-01-01')",
    )
    .await;
    for (sql, postgres) in [
        (
            "SELECT DISTINCT ON (customer) customer, id, created FROM orders \
             ORDER BY customer, created DESC",
            "10|2|2024-02-01 20|4|2024-03-01 30|5| |6|2024-01-01",
        ),
        (
            "SELECT DISTINCT ON (customer) customer AS c, id FROM orders ORDER BY c, total",
            "10|1 20|3 30|5 |6",
        ),
        (
            "SELECT DISTINCT ON (1) customer, id FROM orders ORDER BY 1, 2 DESC",
            "10|2 20|4 30|5 |6",
        ),
        (
            "SELECT DISTINCT ON (customer) id FROM orders WHERE id > 1 ORDER BY customer, id \
             LIMIT 2",
            "2 3",
        ),
        (
            "SELECT count(*) FROM (SELECT DISTINCT ON (customer) * FROM orders) s",
            "4",
        ),
        (
            "SELECT DISTINCT ON (customer, created) customer, created, id FROM orders \
             ORDER BY created, customer, id DESC",
            "10|2024-01-01|1 |2024-01-01|6 20|2024-01-15|3 10|2024-02-01|2 20|2024-03-01|4 30||5",
        ),
        (
            "SELECT DISTINCT ON (o.customer) o.* FROM orders o ORDER BY o.customer, o.id DESC",
            "2|10|7|2024-02-01 4|20||2024-03-01 5|30|2| 6||3|2024-01-01",
        ),
    ] {
        let out = ok(&mut s, sql).await;
        let got: Vec<String> = out.lines();
        assert_eq!(got.join(" "), postgres, "{sql}");
    }
    let out = ok(
        &mut s,
        "SELECT DISTINCT ON (customer) customer, total FROM orders ORDER BY customer, id",
    )
    .await;
    let names: Vec<&str> = out.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["customer", "total"]);
    let error = err(
        &mut s,
        "SELECT DISTINCT ON (customer) customer, id FROM orders ORDER BY id",
    )
    .await;
    assert_eq!(error.code, "42P10", "{error:?}");
}

/// Found by comparing with PostgreSQL 15 (its answers are the expected values): series of
/// timestamps by an interval reached their last value only when it was a timestamp, not a date;
/// arrays became JSON strings; timestamps in JSON lacked ISO 8601's `T`.
#[tokio::test]
async fn timestamp_series_and_json_of_arrays_and_timestamps_answer_as_postgres() {
    let db = open();
    let mut s = db.backend.session();
    for (sql, postgres) in [
        (
            "SELECT * FROM generate_series(date '2024-01-01', date '2024-01-03', interval '1 day')",
            "2024-01-01 00:00:00+00 2024-01-02 00:00:00+00 2024-01-03 00:00:00+00",
        ),
        (
            "SELECT g FROM generate_series(timestamp '2024-01-01 10:00', \
             timestamp '2024-01-01 11:00', '30 minutes') g",
            "2024-01-01 10:00:00 2024-01-01 10:30:00 2024-01-01 11:00:00",
        ),
        (
            "SELECT d::date FROM generate_series(date '2024-01-31', date '2024-04-01', \
             interval '1 month') d",
            "2024-01-31 2024-02-29 2024-03-29",
        ),
        (
            "SELECT * FROM generate_series(date '2024-01-03', date '2024-01-01', interval '-1 day')",
            "2024-01-03 00:00:00+00 2024-01-02 00:00:00+00 2024-01-01 00:00:00+00",
        ),
        ("SELECT * FROM generate_series(1, 10, 4)", "1 5 9"),
        (
            "SELECT to_jsonb(ARRAY[1,2]), to_jsonb(ARRAY[true, NULL]), \
             jsonb_build_object('b', ARRAY['x', NULL]), jsonb_build_array(1, ARRAY[2.5])",
            r#"[1, 2]|[true, null]|{"b": ["x", null]}|[1, [2.5]]"#,
        ),
        (
            "SELECT to_json(timestamp '2024-01-01 10:00:00.5'), \
             to_json(timestamptz '2024-01-01 10:00+00'), to_json(date '2024-01-01'), \
             to_json(interval '1 day')",
            r#""2024-01-01T10:00:00.5"|"2024-01-01T10:00:00+00:00"|"2024-01-01"|"1 day""#,
        ),
    ] {
        let out = ok(&mut s, sql).await;
        let got: Vec<String> = out.lines();
        assert_eq!(got.join(" "), postgres, "{sql}");
    }
}

/// Booleans cast to text read `true`/`false` (Postgres's `booltext`) but concat() prints them
/// as their output does (`t`/`f`); an explicit cast to varchar(n) or char(n) cuts a longer
/// string, where storing it in such a column is refused. PostgreSQL 15's answers.
#[tokio::test]
async fn boolean_text_and_explicit_length_casts_answer_as_postgres() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE f (id int PRIMARY KEY, flag bool, name text)",
    )
    .await;
    ok(&mut s, "CREATE TABLE vc (v varchar(3))").await;
    ok(
        &mut s,
        "INSERT INTO f VALUES (1, true, 'alpha'), (2, false, 'beta'), (3, NULL, 'gamma')",
    )
    .await;
    let out = ok(
        &mut s,
        "SELECT flag::text, flag::varchar(3), concat(name, flag), concat_ws(',', flag, 1), \
         'x' || flag FROM f ORDER BY id",
    )
    .await;
    let rows: Vec<String> = out.lines();
    assert_eq!(
        rows,
        [
            "true|tru|alphat|t,1|xtrue",
            "false|fal|betaf|f,1|xfalse",
            "||gamma|1|"
        ]
    );
    let out = ok(
        &mut s,
        "SELECT 'hello'::varchar(3), 'hello'::char(2), 'hi'::char(4) || '|', \
         name::varchar(2), id::char(3), 12345::varchar(2) FROM f WHERE id = 1",
    )
    .await;
    assert_eq!(
        out.text(),
        vec![
            ["hel", "he", "hi|", "al", "1  ", "12"]
                .iter()
                .map(|v| Some(v.to_string()))
                .collect::<Vec<_>>()
        ]
    );
    let error = err(&mut s, "INSERT INTO vc VALUES ('hello')").await;
    assert_eq!(error.code, "22001", "{error:?}");
    let error = err(&mut s, "INSERT INTO vc SELECT name FROM f WHERE id = 1").await;
    assert_eq!(error.code, "22001", "{error:?}");
}

/// AT TIME ZONE with zone names, UTC and intervals, across daylight saving changes: the
/// expected values are PostgreSQL 15's answers. A POSIX offset string is refused (Postgres
/// reads `+05` as five hours west).
#[tokio::test]
async fn at_time_zone_answers_as_postgres() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(
        &mut s,
        "SELECT timestamptz '2024-01-01 12:00+00' AT TIME ZONE 'UTC', \
         timestamptz '2024-07-01 12:00+00' AT TIME ZONE 'Europe/Paris', \
         timestamptz '2024-01-01 12:00+00' AT TIME ZONE 'america/new_york', \
         timestamp '2024-07-01 14:00' AT TIME ZONE 'Europe/Paris', \
         timestamptz '2024-01-01 12:00+00' AT TIME ZONE INTERVAL '+05:30', \
         timestamp '2024-01-01 12:00' AT TIME ZONE 'UTC', \
         timestamp '2024-03-31 02:30' AT TIME ZONE 'Europe/Paris', \
         timestamp '2024-10-27 02:30' AT TIME ZONE 'Europe/Paris'",
    )
    .await;
    let got: Vec<String> = out.text()[0]
        .iter()
        .map(|v| v.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        got,
        [
            "2024-01-01 12:00:00",
            "2024-07-01 14:00:00",
            "2024-01-01 07:00:00",
            "2024-07-01 12:00:00+00",
            "2024-01-01 17:30:00",
            "2024-01-01 12:00:00+00",
            "2024-03-31 01:30:00+00",
            "2024-10-27 01:30:00+00",
        ]
    );
    let types: Vec<u32> = out.columns.iter().map(|c| c.type_oid).collect();
    assert_eq!(types, [1114, 1114, 1114, 1184, 1114, 1184, 1184, 1184]);
    let error = err(
        &mut s,
        "SELECT timestamptz '2024-01-01 12:00+00' AT TIME ZONE 'Mars/Olympus'",
    )
    .await;
    assert_eq!(error.code, "22023", "{error:?}");
    let error = err(
        &mut s,
        "SELECT timestamptz '2024-01-01 12:00+00' AT TIME ZONE '+05'",
    )
    .await;
    assert_eq!(error.code, "0A000", "{error:?}");
}

/// Integer arithmetic that leaves its type's range fails with 22003, as in Postgres; SQLite
/// would have answered 2147483648 or a real.
#[tokio::test]
async fn integer_overflow_is_an_error() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE n (id int PRIMARY KEY, i int, b bigint)",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO n VALUES (1, 2147483647, 9223372036854775807)",
    )
    .await;
    for (sql, message) in [
        ("SELECT i + 1 FROM n", "integer out of range"),
        ("SELECT b + 1 FROM n", "bigint out of range"),
        ("SELECT i * 2 FROM n", "integer out of range"),
        ("SELECT -2147483648::int - 1", "integer out of range"),
        (
            "SELECT 32767::smallint + 1::smallint",
            "smallint out of range",
        ),
        ("UPDATE n SET i = i + 1", "integer out of range"),
    ] {
        let error = err(&mut s, sql).await;
        assert_eq!(
            (error.code.as_str(), error.message.as_str()),
            ("22003", message),
            "{sql}"
        );
    }
    let out = ok(
        &mut s,
        "SELECT i::bigint + 1, i - 1, 32767::smallint + 1 FROM n",
    )
    .await;
    assert_eq!(
        out.text(),
        vec![vec![
            Some("2147483648".into()),
            Some("2147483646".into()),
            Some("32768".into())
        ]]
    );
    assert_eq!(
        ok(&mut s, "SELECT i FROM n").await.value(),
        Some("2147483647".into()),
        "the failed UPDATE changed nothing"
    );
}

/// UPDATE ... FROM with the target's alias in RETURNING (SQLite's RETURNING knows only bare
/// names), and DELETE's alias; values as PostgreSQL 15 returns them.
#[tokio::test]
async fn update_from_and_returning_through_the_targets_alias() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE a1 (id int PRIMARY KEY, v int)").await;
    ok(
        &mut s,
        "CREATE TABLE l1 (id serial PRIMARY KEY, aid int, amt int)",
    )
    .await;
    ok(&mut s, "INSERT INTO a1 VALUES (1, 10), (2, 20)").await;
    ok(&mut s, "INSERT INTO l1 (aid, amt) VALUES (1, 5), (2, 7)").await;
    let out = ok(
        &mut s,
        "UPDATE a1 a SET v = a.v + l.amt FROM l1 l WHERE l.aid = a.id RETURNING a.id, a.v",
    )
    .await;
    assert_eq!(out.lines(), ["1|15", "2|27"]);
    assert_eq!(out.names(), ["id", "v"]);
    assert_eq!(out.tag, "UPDATE 2");
    let out = ok(
        &mut s,
        "UPDATE a1 SET v = v + 1 WHERE a1.id = 1 RETURNING a1.v, id",
    )
    .await;
    assert_eq!(out.lines(), ["16|1"]);
    // Postgres returns the FROM table's columns too; SQLite cannot.
    let error = err(
        &mut s,
        "UPDATE a1 a SET v = 0 FROM l1 l WHERE l.aid = a.id RETURNING l.amt",
    )
    .await;
    assert_eq!(error.code, "0A000");
    assert_eq!(
        ok(&mut s, "SELECT v FROM a1 ORDER BY id").await.lines(),
        ["16", "27"]
    );
    let out = ok(&mut s, "DELETE FROM a1 x WHERE x.id = 2 RETURNING x.v").await;
    assert_eq!(out.lines(), ["27"]);
}

/// An integer primary key is SQLite's rowid, which numbered a row inserted with a NULL key
/// (even declared NOT NULL); Postgres refuses it with 23502, as now here.
#[tokio::test]
async fn a_null_integer_primary_key_is_refused_not_numbered() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE pk1 (id int PRIMARY KEY, v text)").await;
    for sql in [
        "INSERT INTO pk1 (v) VALUES ('a')",
        "INSERT INTO pk1 (id, v) VALUES (NULL, 'b')",
        "INSERT INTO pk1 DEFAULT VALUES",
        "INSERT INTO pk1 VALUES (1, 'x'), (NULL, 'y')",
        "INSERT INTO pk1 (id, v) SELECT NULL, 'z'",
        "INSERT INTO pk1 (v) SELECT 'z'",
    ] {
        let error = err(&mut s, sql).await;
        assert_eq!(error.code, "23502", "{sql}");
        assert_eq!(
            error.message,
            "null value in column \"id\" of relation \"pk1\" violates not-null constraint"
        );
    }
    let error = run_params(&mut s, "INSERT INTO pk1 (id, v) VALUES ($1, 'p')", &[None])
        .await
        .unwrap_err();
    assert_eq!(error.code, "23502");
    assert_eq!(count_rows(&db, "pk1"), 0);
    ok(&mut s, "INSERT INTO pk1 VALUES (1, 'x')").await;
    ok(&mut s, "INSERT INTO pk1 (id, v) SELECT id + 10, v FROM pk1").await;
    assert_eq!(
        ok(&mut s, "SELECT id FROM pk1 ORDER BY id").await.lines(),
        ["1", "11"]
    );
    assert_eq!(
        err(&mut s, "UPDATE pk1 SET id = NULL WHERE id = 1")
            .await
            .code,
        "23502"
    );
    // A serial key still numbers its rows.
    ok(&mut s, "CREATE TABLE s1 (id serial PRIMARY KEY, v text)").await;
    let out = ok(&mut s, "INSERT INTO s1 DEFAULT VALUES RETURNING id").await;
    assert_eq!(out.lines(), ["1"]);
}
