//! Aggregates Postgres has and SQLite lacks: the variance family, the bitwise ones,
//! `json_object_agg`, and the ordered-set ones (`WITHIN GROUP`). Expected values are
//! PostgreSQL 15's answers.

use mycelium_storage::SqliteSession;

use crate::util::*;

async fn table(db: &Db) -> SqliteSession {
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE t (id int PRIMARY KEY, g text, x numeric(10,2), n int, f float8, \
         r real, b bigint, s smallint)",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO t VALUES (1, 'a', 1.25, 10, 1.5, 2.5, 100, 1), \
         (2, 'a', 2.00, 20, 2.5, 3.5, 200, 3), (3, 'b', 3.75, 30, NULL, 1, 300, 6), \
         (4, 'b', NULL, NULL, 4, NULL, NULL, NULL), (5, 'c', 5.10, 7, 7, 7, 7, 7)",
    )
    .await;
    s
}

#[tokio::test]
async fn variance_and_stddev_are_exact_numerics_or_doubles() {
    let db = open();
    let mut s = table(&db).await;
    let out = ok(
        &mut s,
        "SELECT g, stddev(x), variance(x), stddev_pop(n), var_samp(n), var_pop(x), \
         stddev_samp(n) FROM t GROUP BY g ORDER BY g",
    )
    .await;
    assert_eq!(out.oids(), [25, 1700, 1700, 1700, 1700, 1700, 1700]);
    assert_eq!(
        out.lines(),
        [
            "a|0.53033008588991064330|0.28125000000000000000|5.0000000000000000|\
             50.0000000000000000|0.14062500000000000000|7.0710678118654752",
            "b|||0||0|",
            "c|||0||0|",
        ]
    );
    let out = ok(
        &mut s,
        "SELECT stddev(n), variance(n), stddev_pop(n), var_pop(n), stddev(x), var_samp(x), \
         stddev_pop(x), var_pop(x) FROM t",
    )
    .await;
    assert_eq!(
        out.lines(),
        [
            "10.4363148029688462|108.9166666666666667|9.0381137412626093|81.6875000000000000|\
             1.7351753033435363|3.0108333333333333|1.5027058927148719|2.2581250000000000"
        ]
    );
    // float4 and float8 stay doubles; bigint and smallint are exact numerics.
    let out = ok(
        &mut s,
        "SELECT stddev(f), variance(f), stddev_pop(r), var_pop(r), stddev(b), variance(s) FROM t",
    )
    .await;
    assert_eq!(out.oids(), [701, 701, 701, 701, 1700, 1700]);
    assert_eq!(
        out.lines(),
        ["2.3979157616563596|5.75|2.207940216581962|4.875|126.407739741942|7.5833333333333333"]
    );
    // Huge and mixed-scale values: exact to the last digit.
    let out = ok(
        &mut s,
        "SELECT stddev(v), variance(v), stddev_pop(v), var_pop(v) \
         FROM (VALUES (1e20::numeric), (1), (-3.5)) AS s(v)",
    )
    .await;
    assert_eq!(
        out.lines(),
        [
            "57735026918962576451.64|3333333333333333333416666666666666666672.25|\
             47140452079103168293.98|2222222222222222222277777777777777777781.50"
        ]
    );
    let out = ok(
        &mut s,
        "SELECT stddev(v), variance(v) FROM (VALUES (0.1::float8), (0.2), (0.3)) AS s(v)",
    )
    .await;
    assert_eq!(out.lines(), ["0.09999999999999996|0.009999999999999992"]);
    // One row: the sample forms are NULL, the population ones 0; no rows: NULL.
    let out = ok(
        &mut s,
        "SELECT stddev(n), stddev_pop(n), var_samp(f), var_pop(f) FROM t WHERE id = 5",
    )
    .await;
    assert_eq!(out.lines(), ["|0||0"]);
    let out = ok(
        &mut s,
        "SELECT variance(x), stddev_pop(f) FROM t WHERE false",
    )
    .await;
    assert_eq!(out.lines(), ["|"]);
    // DISTINCT, FILTER, HAVING and expressions over them.
    let out = ok(
        &mut s,
        "SELECT stddev(DISTINCT n), variance(DISTINCT x), round(stddev(n), 2) FROM t",
    )
    .await;
    assert_eq!(
        out.lines(),
        ["10.4363148029688462|3.0108333333333333|10.44"]
    );
    let out = ok(
        &mut s,
        "SELECT g, stddev_samp(n) FILTER (WHERE id > 1), var_pop(x) FILTER (WHERE id > 1) \
         FROM t GROUP BY g HAVING stddev_pop(n) >= 0 ORDER BY g",
    )
    .await;
    assert_eq!(out.lines(), ["a||0", "b||0", "c||0"]);
    let out = ok(
        &mut s,
        "SELECT g, variance(n) FROM t GROUP BY g HAVING variance(n) > 10 ORDER BY 2 DESC",
    )
    .await;
    assert_eq!(out.lines(), ["a|50.0000000000000000"]);
    assert_eq!(err(&mut s, "SELECT stddev(g) FROM t").await.code, "42883");
}

#[tokio::test]
async fn bitwise_aggregates_keep_the_integer_type() {
    let db = open();
    let mut s = table(&db).await;
    let out = ok(
        &mut s,
        "SELECT bit_and(n), bit_or(n), bit_xor(n), bit_and(s), bit_or(b), bit_xor(s) FROM t",
    )
    .await;
    assert_eq!(out.oids(), [23, 23, 23, 21, 20, 21]);
    assert_eq!(out.lines(), ["0|31|7|0|495|3"]);
    let out = ok(
        &mut s,
        "SELECT bit_and(n) FILTER (WHERE id > 1), bit_or(DISTINCT s), bit_xor(b) FROM t \
         GROUP BY g ORDER BY g",
    )
    .await;
    assert_eq!(out.lines(), ["20|3|172", "30|6|300", "7|7|7"]);
    let out = ok(&mut s, "SELECT bit_and(n) FROM t WHERE false").await;
    assert_eq!(out.lines(), [""]);
    assert_eq!(err(&mut s, "SELECT bit_and(g) FROM t").await.code, "42883");
}

#[tokio::test]
async fn json_object_agg_prints_as_postgres() {
    let db = open();
    let mut s = table(&db).await;
    let out = ok(
        &mut s,
        "SELECT json_object_agg(g, n), jsonb_object_agg(id, n) FROM t",
    )
    .await;
    assert_eq!(out.oids(), [114, 3802]);
    assert_eq!(
        out.lines(),
        [
            "{ \"a\" : 10, \"a\" : 20, \"b\" : 30, \"b\" : null, \"c\" : 7 }|\
             {\"1\": 10, \"2\": 20, \"3\": 30, \"4\": null, \"5\": 7}"
        ]
    );
    let out = ok(
        &mut s,
        "SELECT jsonb_object_agg(g, x), json_object_agg(id, x), json_object_agg(id, f > 2) FROM t",
    )
    .await;
    assert_eq!(
        out.lines(),
        ["{\"a\": 2.00, \"b\": null, \"c\": 5.10}|\
             { \"1\" : 1.25, \"2\" : 2.00, \"3\" : 3.75, \"4\" : null, \"5\" : 5.10 }|\
             { \"1\" : false, \"2\" : true, \"3\" : null, \"4\" : true, \"5\" : true }"]
    );
    let out = ok(
        &mut s,
        "SELECT json_object_agg(g, n ORDER BY id DESC) FILTER (WHERE id > 1) FROM t",
    )
    .await;
    assert_eq!(
        out.lines(),
        ["{ \"c\" : 7, \"b\" : null, \"b\" : 30, \"a\" : 20 }"]
    );
    let out = ok(
        &mut s,
        "SELECT g, jsonb_object_agg(id, x) FROM t GROUP BY g ORDER BY g",
    )
    .await;
    assert_eq!(
        out.lines(),
        [
            "a|{\"1\": 1.25, \"2\": 2.00}",
            "b|{\"3\": 3.75, \"4\": null}",
            "c|{\"5\": 5.10}"
        ]
    );
    // jsonb sorts its keys (shorter first) and keeps the last of duplicates; keys of other
    // scalar types are their text.
    let out = ok(
        &mut s,
        "SELECT jsonb_object_agg(k, v), json_object_agg(k, v) \
         FROM (VALUES ('b', 1), ('aa', 2), ('a \"q\"', 3), ('b', 4)) AS s(k, v)",
    )
    .await;
    assert_eq!(
        out.lines(),
        ["{\"b\": 4, \"aa\": 2, \"a \\\"q\\\"\": 3}|\
             { \"b\" : 1, \"aa\" : 2, \"a \\\"q\\\"\" : 3, \"b\" : 4 }"]
    );
    let out = ok(
        &mut s,
        "SELECT jsonb_object_agg(true, 1.50), json_object_agg(true, 1.50)",
    )
    .await;
    assert_eq!(out.lines(), ["{\"true\": 1.50}|{ \"true\" : 1.50 }"]);
    let out = ok(&mut s, "SELECT json_object_agg(g, n) FROM t WHERE false").await;
    assert_eq!(out.lines(), [""]);
    for sql in [
        "SELECT json_object_agg(n, g) FROM t",
        "SELECT jsonb_object_agg(n, g) FROM t",
        "SELECT json_object_agg('{\"a\": 1}'::json, 1)",
        "SELECT jsonb_object_agg(ARRAY[1], 1)",
    ] {
        assert_eq!(err(&mut s, sql).await.code, "22023", "{sql}");
    }
}

#[tokio::test]
async fn ordered_set_aggregates_run_within_group() {
    let db = open();
    let mut s = table(&db).await;
    let out = ok(
        &mut s,
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY n), \
         percentile_disc(0.5) WITHIN GROUP (ORDER BY n), mode() WITHIN GROUP (ORDER BY g), \
         percentile_cont(ARRAY[0.25, 0.5]) WITHIN GROUP (ORDER BY n), \
         percentile_disc(ARRAY[0.25, 0.5]) WITHIN GROUP (ORDER BY n) FROM t",
    )
    .await;
    assert_eq!(out.oids(), [701, 23, 25, 1022, 1007]);
    assert_eq!(out.lines(), ["15|10|a|{9.25,15}|{7,10}"]);
    // The ordered column's type and scale; DESC; NULL fractions.
    let out = ok(
        &mut s,
        "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY x), \
         percentile_disc(ARRAY[0, 0.3, NULL, 1]) WITHIN GROUP (ORDER BY x), \
         percentile_cont(0.3) WITHIN GROUP (ORDER BY x DESC), \
         percentile_cont(0.5) WITHIN GROUP (ORDER BY f), \
         percentile_cont(0.5) WITHIN GROUP (ORDER BY r), \
         percentile_cont(0.5) WITHIN GROUP (ORDER BY b), \
         mode() WITHIN GROUP (ORDER BY f > 2) FROM t",
    )
    .await;
    assert_eq!(out.oids(), [1700, 1231, 701, 701, 701, 701, 16]);
    assert_eq!(
        out.lines(),
        ["2.00|{1.25,2.00,NULL,5.10}|3.885|3.25|3|150|t"]
    );
    // mode: among equally frequent values the first in the requested order.
    let out = ok(
        &mut s,
        "SELECT mode() WITHIN GROUP (ORDER BY n DESC), mode() WITHIN GROUP (ORDER BY v) \
         FROM t, (VALUES (1), (2), (2), (1)) AS s(v)",
    )
    .await;
    assert_eq!(out.lines(), ["30|1"]);
    let out = ok(
        &mut s,
        "SELECT percentile_disc(ARRAY[0.5]) WITHIN GROUP (ORDER BY d) \
         FROM (VALUES ('2024-01-02'::date), ('2024-01-01')) AS s(d)",
    )
    .await;
    assert_eq!(out.lines(), ["{2024-01-01}"]);
    // A fraction given as a parameter is a double precision one.
    let out = run_params(
        &mut s,
        "SELECT percentile_cont($1) WITHIN GROUP (ORDER BY n) FROM t",
        &[Some("0.25")],
    )
    .await
    .unwrap();
    assert_eq!(out.lines(), ["9.25"]);
    // FILTER, GROUP BY and HAVING.
    let out = ok(
        &mut s,
        "SELECT g, percentile_disc(0.5) WITHIN GROUP (ORDER BY n) FILTER (WHERE id <> 1), \
         mode() WITHIN GROUP (ORDER BY x DESC) FROM t GROUP BY g ORDER BY g",
    )
    .await;
    assert_eq!(out.lines(), ["a|20|2.00", "b|30|3.75", "c|7|5.10"]);
    let out = ok(
        &mut s,
        "SELECT g FROM t GROUP BY g \
         HAVING percentile_cont(0.5) WITHIN GROUP (ORDER BY n) > 10 ORDER BY 1",
    )
    .await;
    assert_eq!(out.lines(), ["a", "b"]);
    // No group, no check of the fraction.
    let out = ok(
        &mut s,
        "SELECT percentile_disc(2) WITHIN GROUP (ORDER BY n) FROM t WHERE false GROUP BY g",
    )
    .await;
    assert!(out.rows.is_empty());
    // No rows, or a NULL fraction: NULL.
    let out = ok(
        &mut s,
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY n), \
         percentile_cont(ARRAY[0.5]) WITHIN GROUP (ORDER BY n) FROM t WHERE false",
    )
    .await;
    assert_eq!(out.lines(), ["|"]);
    let out = ok(
        &mut s,
        "SELECT percentile_cont(NULL) WITHIN GROUP (ORDER BY n) FROM t",
    )
    .await;
    assert_eq!(out.lines(), [""]);
    for (sql, code) in [
        (
            "SELECT percentile_cont(1.5) WITHIN GROUP (ORDER BY n) FROM t",
            "22003",
        ),
        (
            "SELECT percentile_disc(2) WITHIN GROUP (ORDER BY n) FROM t WHERE false",
            "22003",
        ),
        (
            "SELECT percentile_disc(-0.1) WITHIN GROUP (ORDER BY g) FROM t",
            "22003",
        ),
        (
            "SELECT percentile_cont(ARRAY[0.5, -1]) WITHIN GROUP (ORDER BY n) FROM t",
            "22003",
        ),
        (
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY g) FROM t",
            "42883",
        ),
        (
            "SELECT percentile_cont(ARRAY[NULL]) WITHIN GROUP (ORDER BY n) FROM t",
            "42883",
        ),
        ("SELECT mode(1) WITHIN GROUP (ORDER BY n) FROM t", "42883"),
        ("SELECT rank(3) WITHIN GROUP (ORDER BY n) FROM t", "0A000"),
    ] {
        assert_eq!(err(&mut s, sql).await.code, code, "{sql}");
    }
}
