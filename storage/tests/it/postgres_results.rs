//! Results that end-to-end runs against PostgreSQL 15 showed to differ: each test asserts
//! what Postgres prints.

use std::sync::Arc;

use bytes::Bytes;
use mycelium_protocol::{Execute, Format};

use crate::util::*;

fn texts(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some((*v).to_owned())).collect()
}

#[tokio::test]
async fn numeric_division_uses_postgres_result_scale() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(&mut s, "SELECT 7.0 / 2").await;
    assert_eq!(out.value(), Some("3.5000000000000000".into()));
    assert_eq!(out.oids(), vec![1700]);
    // select_div_scale: at least 16 significant digits, at least the operands' scales.
    let out = ok(
        &mut s,
        "SELECT 1.0 / 3, 7.0 / 7, 100000.0 / 2, 2 / 3.0, -7.0 / 2, 1 / 1e-20, 7 / 2",
    )
    .await;
    assert_eq!(
        out.text()[0],
        texts(&[
            "0.33333333333333333333",
            "1.00000000000000000000",
            "50000.000000000000",
            "0.66666666666666666667",
            "-3.5000000000000000",
            "100000000000000000000.00000000000000000000",
            "3",
        ])
    );
    // The binary form carries the same display scale.
    let binary = execute(
        &mut s,
        Execute {
            result_formats: Arc::from(vec![Format::Binary]),
            ..Execute::simple("SELECT 7.0 / 2")
        },
    )
    .await
    .unwrap();
    // ndigits 2, weight 0, sign +, dscale 16, digits 3 and 5000.
    let expected: Vec<u8> = [2i16, 0, 0, 16, 3, 5000]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect();
    assert_eq!(binary.rows[0][0].as_deref(), Some(&expected[..]));

    ok(
        &mut s,
        "CREATE TABLE q (id int PRIMARY KEY, n numeric(10,2), u numeric)",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO q VALUES (1, 1.50, 3), (2, 2, 7), (3, 3, 1), (4, 10, 2)",
    )
    .await;
    let out = ok(
        &mut s,
        "SELECT id, n / 3, u / 3 AS third FROM q ORDER BY id",
    )
    .await;
    assert_eq!(
        out.text(),
        vec![
            texts(&["1", "0.50000000000000000000", "1.00000000000000000000"]),
            texts(&["2", "0.66666666666666666667", "2.3333333333333333"]),
            texts(&["3", "1.00000000000000000000", "0.33333333333333333333"]),
            texts(&["4", "3.3333333333333333", "0.66666666666666666667"]),
        ]
    );
    // Inside expressions the quotient is still a number: it compares and sorts as one.
    let out = ok(
        &mut s,
        "SELECT id, u / 3 AS third FROM q WHERE u / 3 > 0.5 ORDER BY third DESC",
    )
    .await;
    let ids: Vec<Option<String>> = out.text().iter().map(|r| r[0].clone()).collect();
    assert_eq!(ids, texts(&["2", "1", "4"]));
    let out = ok(&mut s, "SELECT u / 3 FROM q ORDER BY 1").await;
    assert_eq!(
        out.text()[0][0],
        Some("0.33333333333333333333".to_owned()),
        "ORDER BY position sorts numerically"
    );
    // round() and casts show the scale Postgres gives them.
    let out = ok(
        &mut s,
        "SELECT round(7.0 / 3, 3), n::text, n::numeric FROM q WHERE id = 1",
    )
    .await;
    assert_eq!(out.text()[0], texts(&["2.333", "1.50", "1.50"]));
    assert_eq!(err(&mut s, "SELECT 1 / 0.0").await.code, "22012");
}

#[tokio::test]
async fn avg_prints_with_postgres_scale() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE scores (id serial PRIMARY KEY, v int, price numeric(10,2), f float8)",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO scores (v, price, f) VALUES (10, 1.25, 1), (20, 2.5, 2), (30, 3, 3), \
         (40, 4, 4), (50, 5, 5), (60, 6.10, 6)",
    )
    .await;
    let out = ok(
        &mut s,
        "SELECT avg(v), avg(price), avg(f), avg(DISTINCT v), avg(v) FILTER (WHERE v > 30), \
         round(avg(v), 2) FROM scores",
    )
    .await;
    assert_eq!(
        out.text()[0],
        texts(&[
            "35.0000000000000000",
            "3.6416666666666667",
            "3.5",
            "35.0000000000000000",
            "50.0000000000000000",
            "35.00",
        ])
    );
    assert_eq!(out.oids(), vec![1700, 1700, 701, 1700, 1700, 1700]);
    // Groups sort by the average as a number, not as its text.
    let out = ok(
        &mut s,
        "SELECT v % 20 AS k, avg(v) AS a FROM scores GROUP BY v % 20 ORDER BY a DESC",
    )
    .await;
    assert_eq!(
        out.text(),
        vec![
            texts(&["0", "40.0000000000000000"]),
            texts(&["10", "30.0000000000000000"])
        ]
    );
    let out = ok(&mut s, "SELECT avg(v) FROM scores WHERE v > 100").await;
    assert_eq!(out.value(), None);
    let out = ok(
        &mut s,
        "SELECT v FROM scores WHERE v > (SELECT avg(v) FROM scores) ORDER BY v",
    )
    .await;
    assert_eq!(out.rows.len(), 3);
}

#[tokio::test]
async fn jsonb_results_print_in_postgres_text_form() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(
        &mut s,
        r#"SELECT '{"nested": {"a": "b"}}'::jsonb -> 'nested', '{"nested": {"a": "b"}}'::jsonb ->> 'nested'"#,
    )
    .await;
    assert_eq!(out.text()[0], texts(&[r#"{"a": "b"}"#, r#"{"a": "b"}"#]));
    assert_eq!(out.oids(), vec![3802, 25]);
    ok(
        &mut s,
        "CREATE TABLE docs (id int PRIMARY KEY, j jsonb, s text)",
    )
    .await;
    ok(
        &mut s,
        r#"INSERT INTO docs VALUES (1, '{"k": ["fruit","fresh"], "n": 1, "s": "str", "z": null}', 'a'),
           (2, '{"b": {"c": 1}}', 'b'), (3, NULL, 'c')"#,
    )
    .await;
    let out = ok(
        &mut s,
        "SELECT j ->> 'k', j -> 'k', j ->> 's', j -> 's', j ->> 'z', j -> 'z', j ->> 'n', \
         j #> '{k}', j #>> '{k,1}', j -> 'k' -> 1, j -> 'k' ->> -1 FROM docs WHERE id = 1",
    )
    .await;
    assert_eq!(
        out.text()[0],
        vec![
            Some(r#"["fruit", "fresh"]"#.to_owned()),
            Some(r#"["fruit", "fresh"]"#.to_owned()),
            Some("str".to_owned()),
            Some(r#""str""#.to_owned()),
            None,
            Some("null".to_owned()),
            Some("1".to_owned()),
            Some(r#"["fruit", "fresh"]"#.to_owned()),
            Some("fresh".to_owned()),
            Some(r#""fresh""#.to_owned()),
            Some("fresh".to_owned()),
        ]
    );
    // `->>` gives text: it compares with a text literal.
    let out = ok(&mut s, "SELECT count(*) FROM docs WHERE j ->> 'n' = '1'").await;
    assert_eq!(out.value(), Some("1".into()));
    let out = ok(
        &mut s,
        r#"SELECT jsonb_set(j, '{b,c}', '[1,2]'), jsonb_build_object('x', 1, 'y', j -> 'b'),
                  json_build_object('a', 1, 'b', true, 'c', 'x'), json_build_array(1, 'a', NULL),
                  jsonb_build_array(1, 'a'), j || '{"z": 1}'
           FROM docs WHERE id = 2"#,
    )
    .await;
    assert_eq!(
        out.text()[0],
        texts(&[
            r#"{"b": {"c": [1, 2]}}"#,
            r#"{"x": 1, "y": {"c": 1}}"#,
            r#"{"a" : 1, "b" : true, "c" : "x"}"#,
            r#"[1, "a", null]"#,
            r#"[1, "a"]"#,
            r#"{"b": {"c": 1}, "z": 1}"#,
        ])
    );
    let out = ok(
        &mut s,
        "SELECT jsonb_agg(id ORDER BY id), json_agg(s ORDER BY id DESC), jsonb_agg(j -> 'b') FROM docs",
    )
    .await;
    assert_eq!(
        out.text()[0],
        texts(&[
            "[1, 2, 3]",
            r#"["c", "b", "a"]"#,
            r#"[null, {"c": 1}, null]"#
        ])
    );
    assert_eq!(out.oids(), vec![3802, 114, 3802]);
    let out = ok(&mut s, "SELECT jsonb_agg(id) FROM docs WHERE id > 9").await;
    assert_eq!(out.value(), None);
}

#[tokio::test]
async fn to_regtype_and_to_regclass_answer_like_postgres() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE things (id int PRIMARY KEY)").await;
    let out = ok(
        &mut s,
        "SELECT to_regtype('hstore'), to_regtype('integer'), to_regtype('pg_catalog.varchar'), \
         to_regclass('things'), to_regclass('public.things'), to_regclass('nope'), \
         'int4'::regtype, pg_typeof(1.5)",
    )
    .await;
    assert_eq!(
        out.text()[0],
        vec![
            None,
            Some("integer".to_owned()),
            Some("character varying".to_owned()),
            Some("things".to_owned()),
            Some("things".to_owned()),
            None,
            Some("integer".to_owned()),
            Some("numeric".to_owned()),
        ]
    );
    // psycopg's TypeInfo.fetch: to_regtype compares as an OID.
    let query = "SELECT typname AS name, oid, typarray AS array_oid, oid::regtype::text AS regtype \
                 FROM pg_type t WHERE t.oid = to_regtype($1) ORDER BY t.oid";
    let out = run_params(&mut s, query, &[Some("hstore")]).await.unwrap();
    assert!(out.rows.is_empty());
    let out = run_params(&mut s, query, &[Some("jsonb")]).await.unwrap();
    assert_eq!(
        out.text(),
        vec![vec![
            Some("jsonb".to_owned()),
            Some("3802".to_owned()),
            Some("3807".to_owned()),
            Some("jsonb".to_owned())
        ]]
    );
    assert_eq!(err(&mut s, "SELECT 'hstore'::regtype").await.code, "42704");
    // SQLAlchemy's get_columns reads serial sequences this way.
    ok(
        &mut s,
        "CREATE TABLE serials (id serial PRIMARY KEY, n serial, v int)",
    )
    .await;
    let out = ok(
        &mut s,
        "SELECT pg_get_serial_sequence('serials', 'n'), pg_get_serial_sequence('serials', 'v')",
    )
    .await;
    assert_eq!(
        out.text()[0],
        vec![Some("public.serials_n_seq".to_owned()), None]
    );
}

#[tokio::test]
async fn values_with_a_column_alias_list_in_from() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(
        &mut s,
        "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS imp_sen(p0, p1)",
    )
    .await;
    assert_eq!(out.names(), vec!["p0", "p1"]);
    assert_eq!(out.text(), vec![texts(&["1", "a"]), texts(&["2", "b"])]);
    // A shorter alias list renames the first columns only.
    let out = ok(&mut s, "SELECT p0, column2 FROM (VALUES (1, 'a')) AS v(p0)").await;
    assert_eq!(out.text(), vec![texts(&["1", "a"])]);
    let e = err(&mut s, "SELECT * FROM (VALUES (1, 2)) AS v(a, b, c)").await;
    assert_eq!(e.code, "42P10");

    ok(
        &mut s,
        "CREATE TABLE books (id serial PRIMARY KEY, title varchar(100) NOT NULL, pages int)",
    )
    .await;
    // SQLAlchemy's insertmanyvalues with RETURNING in parameter order.
    let sql = "INSERT INTO books (title, pages) SELECT p0::VARCHAR, p1::INTEGER \
               FROM (VALUES ($1, $2, 0), ($3, $4, 1)) AS imp_sen(p0, p1, sen_counter) \
               ORDER BY sen_counter RETURNING books.id, books.id AS id__1";
    let out = run_params(
        &mut s,
        sql,
        &[Some("Earthsea"), Some("250"), Some("Dune"), Some("600")],
    )
    .await
    .unwrap();
    assert_eq!(out.names(), vec!["id", "id__1"]);
    assert_eq!(out.text(), vec![texts(&["1", "1"]), texts(&["2", "2"])]);
    assert_eq!(out.tag, "INSERT 0 2");
    // The same with the parameter types a driver declares (int8 for integers).
    let out = execute(
        &mut s,
        Execute {
            sql: Arc::from(sql),
            param_types: Arc::from(vec![0u32, 20, 0, 20]),
            params: ["Solaris", "204", "Ubik", "202"]
                .iter()
                .map(|p| Some(Bytes::copy_from_slice(p.as_bytes())))
                .collect(),
            param_formats: vec![Format::Text; 4],
            result_formats: Arc::from(Vec::new()),
        },
    )
    .await
    .unwrap();
    assert_eq!(out.text(), vec![texts(&["3", "3"]), texts(&["4", "4"])]);
    let out = ok(&mut s, "SELECT title, pages FROM books ORDER BY id").await;
    assert_eq!(
        out.text(),
        vec![
            texts(&["Earthsea", "250"]),
            texts(&["Dune", "600"]),
            texts(&["Solaris", "204"]),
            texts(&["Ubik", "202"]),
        ]
    );
    // Column aliases on a table and on a subquery.
    let out = ok(
        &mut s,
        "SELECT b.n, b.t FROM books AS b(n, t) WHERE b.n = 2",
    )
    .await;
    assert_eq!(out.text(), vec![texts(&["2", "Dune"])]);
    let out = ok(
        &mut s,
        "SELECT x FROM (SELECT pages FROM books UNION SELECT 1) AS u(x) ORDER BY x LIMIT 2",
    )
    .await;
    assert_eq!(out.text(), vec![texts(&["1"]), texts(&["202"])]);
}

#[tokio::test]
async fn unique_violation_detail_names_the_key() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE members (id serial PRIMARY KEY, user_id int UNIQUE, email varchar(20), \
         joined date, UNIQUE (email, joined))",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO members (user_id, email, joined) VALUES (5, 'a@b.c', '2024-01-02'), (6, 'x', '2024-01-03')",
    )
    .await;
    let detail = |e: mycelium_protocol::DbError| {
        assert_eq!(e.code, "23505", "{e:?}");
        e.detail.unwrap_or_default()
    };
    let e = err(&mut s, "INSERT INTO members (user_id) VALUES (5)").await;
    assert_eq!(
        e.message,
        "duplicate key value violates unique constraint \"members_user_id_key\""
    );
    assert_eq!(detail(e), "Key (user_id)=(5) already exists.");
    let e = run_params(
        &mut s,
        "INSERT INTO members (user_id, email) VALUES ($1, $2)",
        &[Some("5"), Some("y")],
    )
    .await
    .unwrap_err();
    assert_eq!(detail(e), "Key (user_id)=(5) already exists.");
    // A duplicate within the statement itself.
    let e = err(&mut s, "INSERT INTO members (user_id) VALUES (7), (8), (7)").await;
    assert_eq!(detail(e), "Key (user_id)=(7) already exists.");
    let e = err(&mut s, "INSERT INTO members (id, user_id) VALUES (1, 9)").await;
    assert_eq!(detail(e), "Key (id)=(1) already exists.");
    let e = err(
        &mut s,
        "INSERT INTO members (user_id, email, joined) VALUES (10, 'a@b.c', '2024-01-02')",
    )
    .await;
    assert_eq!(
        detail(e),
        "Key (email, joined)=(a@b.c, 2024-01-02) already exists."
    );
    let e = err(&mut s, "UPDATE members SET user_id = 5 WHERE user_id = 6").await;
    assert_eq!(detail(e), "Key (user_id)=(5) already exists.");
    let e = err(&mut s, "UPDATE members SET user_id = user_id + 1").await;
    assert_eq!(detail(e), "Key (user_id)=(6) already exists.");
    let e = err(
        &mut s,
        "INSERT INTO members (user_id) SELECT user_id FROM members WHERE id = 1",
    )
    .await;
    assert_eq!(detail(e), "Key (user_id)=(5) already exists.");
    let e = err(
        &mut s,
        "INSERT INTO members (user_id) VALUES (5) RETURNING id",
    )
    .await;
    assert_eq!(detail(e), "Key (user_id)=(5) already exists.");
    // Inside a transaction block too; nothing was written.
    ok(&mut s, "BEGIN").await;
    let e = err(&mut s, "INSERT INTO members (user_id) VALUES (6)").await;
    assert_eq!(detail(e), "Key (user_id)=(6) already exists.");
    ok(&mut s, "ROLLBACK").await;
    assert_eq!(count_rows(&db, "members"), 2);
}

#[tokio::test]
async fn json_numbers_keep_their_text_and_arrays_name_paths() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE j (id int PRIMARY KEY, b jsonb)").await;
    ok(
        &mut s,
        r#"INSERT INTO j VALUES (1, '{"a": {"x": 1, "y": [1, 2.50]}, "n": 1e2, "s": "t\u00e9"}')"#,
    )
    .await;
    let out = ok(
        &mut s,
        r#"SELECT b -> 'a', b #>> '{a,y,1}', b || '{"z": 1.10}', jsonb_set(b, '{a,x}', '2.0'),
                  b @> '{"a": {"y": [2.5]}}', b #> ARRAY['a', 'y'], b ?| ARRAY['q', 's'],
                  b ?& ARRAY['a', 'z'], jsonb_build_object('d', 2.50), to_jsonb(1.50),
                  to_jsonb(NULL::int)
           FROM j"#,
    )
    .await;
    assert_eq!(
        out.text()[0],
        vec![
            Some(r#"{"x": 1, "y": [1, 2.50]}"#.to_owned()),
            Some("2.50".to_owned()),
            Some(r#"{"a": {"x": 1, "y": [1, 2.50]}, "n": 100, "s": "té", "z": 1.10}"#.to_owned()),
            Some(r#"{"a": {"x": 2.0, "y": [1, 2.50]}, "n": 100, "s": "té"}"#.to_owned()),
            Some("t".to_owned()),
            Some("[1, 2.50]".to_owned()),
            Some("t".to_owned()),
            Some("f".to_owned()),
            Some(r#"{"d": 2.50}"#.to_owned()),
            Some("1.50".to_owned()),
            None,
        ]
    );
    // jsonb subscripts (SQLAlchemy 2 writes them for Postgres 14 and later).
    let out = run_params(
        &mut s,
        "SELECT j.b[$1::TEXT], (b[$2::TEXT]) ->> $3::INT, b['a']['y'][1], b['nope'] FROM j",
        &[Some("n"), Some("a"), Some("1")],
    )
    .await
    .unwrap();
    assert_eq!(
        out.text()[0],
        vec![Some("100".to_owned()), None, Some("2.50".to_owned()), None]
    );
    assert_eq!(out.oids(), vec![3802, 25, 3802, 3802]);
    assert_eq!(out.names(), vec!["b", "?column?", "b", "b"]);
    assert_eq!(err(&mut s, "SELECT id[1] FROM j").await.code, "0A000");
}

#[tokio::test]
async fn operators_casts_and_constraint_names_follow_postgres() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(
        &mut s,
        "SELECT 2 ^ 10, pg_typeof(2 ^ 10), pg_typeof(2.0 ^ 2), 1.5::float4 * 2, \
         pg_typeof(1.5::float4 * 2), pg_typeof(1.5::float4 * 1.5::float4), 100::float4 / 3",
    )
    .await;
    assert_eq!(
        out.text()[0],
        texts(&[
            "1024",
            "double precision",
            "numeric",
            "3",
            "double precision",
            "real",
            "33.333333333333336",
        ])
    );
    assert_eq!(err(&mut s, "SELECT 0 ^ -1").await.code, "2201F");
    ok(
        &mut s,
        "CREATE TABLE prices (id int PRIMARY KEY, p numeric(5,2), CHECK (p >= 0), CHECK (p < id * 100))",
    )
    .await;
    let e = err(&mut s, "INSERT INTO prices VALUES (1, -1)").await;
    assert_eq!(
        e.message,
        "new row for relation \"prices\" violates check constraint \"prices_p_check\""
    );
    let e = err(&mut s, "INSERT INTO prices VALUES (1, 150)").await;
    assert!(e.message.ends_with("\"prices_check\""), "{e:?}");
    ok(&mut s, "INSERT INTO prices VALUES (1, 2.5), (20, 999.99)").await;
    let out = ok(
        &mut s,
        "SELECT p::text, p::varchar, p::numeric FROM prices ORDER BY id",
    )
    .await;
    assert_eq!(
        out.text(),
        vec![
            texts(&["2.50", "2.50", "2.50"]),
            texts(&["999.99", "999.99", "999.99"])
        ]
    );
    // Errors raised inside SQLite functions keep their detail.
    let e = err(&mut s, "SELECT p::numeric(4,2) FROM prices").await;
    assert_eq!(e.code, "22003");
    assert_eq!(
        e.detail.as_deref(),
        Some("A field with precision 4, scale 2 must round to an absolute value less than 10^2.")
    );
}
