//! Query forms SQLite answers differently from Postgres, or not at all, on a SQLite node:
//! scalar subqueries, `LIKE ANY`, `string_agg(DISTINCT ...)`, `OFFSET ... ROWS`. Expected
//! values are PostgreSQL 15's.

use crate::util::*;

#[tokio::test]
async fn a_scalar_subquery_with_several_rows_fails_as_in_postgres() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE sq (id int PRIMARY KEY, g text, n int)",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO sq VALUES (1, 'a', 10), (2, 'a', 20), (3, 'b', 30)",
    )
    .await;
    for sql in [
        "SELECT (SELECT id FROM sq)",
        "SELECT id, (SELECT n FROM sq s2 WHERE s2.g = s1.g) FROM sq s1 ORDER BY id",
        "SELECT (SELECT n FROM sq ORDER BY n DESC LIMIT 2)",
        "SELECT * FROM sq WHERE n > (SELECT n FROM sq WHERE g = 'a')",
        "UPDATE sq SET n = (SELECT n FROM sq WHERE g = 'a') WHERE id = 1",
    ] {
        let error = err(&mut s, sql).await;
        assert_eq!(error.code, "21000", "{sql}");
        assert_eq!(
            error.message,
            "more than one row returned by a subquery used as an expression"
        );
    }
    // The failed UPDATE changed nothing.
    assert_eq!(
        ok(&mut s, "SELECT n FROM sq WHERE id = 1").await.lines(),
        ["10"]
    );

    for (sql, expected) in [
        ("SELECT (SELECT id FROM sq WHERE g = 'b')", vec!["3"]),
        ("SELECT (SELECT id FROM sq WHERE g = 'z')", vec![""]),
        (
            "SELECT id, (SELECT n FROM sq s2 WHERE s2.id = s1.id + 1) FROM sq s1 ORDER BY id",
            vec!["1|20", "2|30", "3|"],
        ),
        (
            "SELECT id, (SELECT count(*) FROM sq s2 WHERE s2.g = s1.g) FROM sq s1 ORDER BY id",
            vec!["1|2", "2|2", "3|1"],
        ),
        (
            "SELECT (SELECT n AS v FROM sq ORDER BY v DESC LIMIT 1)",
            vec!["30"],
        ),
        (
            "SELECT (SELECT DISTINCT g FROM sq WHERE n > 5 AND g = 'a')",
            vec!["a"],
        ),
        (
            "SELECT (SELECT g FROM sq WHERE id = 1 UNION SELECT 'a')",
            vec!["a"],
        ),
        (
            "SELECT (SELECT g FROM sq GROUP BY g HAVING count(*) > 1)",
            vec!["a"],
        ),
        (
            "SELECT id FROM sq WHERE n = (SELECT max(n) FROM sq)",
            vec!["3"],
        ),
    ] {
        assert_eq!(ok(&mut s, sql).await.lines(), expected, "{sql}");
    }
    ok(
        &mut s,
        "UPDATE sq SET n = (SELECT n FROM sq WHERE id = 3) WHERE id = 1",
    )
    .await;
    assert_eq!(
        ok(&mut s, "SELECT n FROM sq WHERE id = 1").await.lines(),
        ["30"]
    );
    assert_eq!(err(&mut s, "SELECT (SELECT 1, 2)").await.code, "42601");
}

#[tokio::test]
async fn like_any_distinct_string_agg_and_offset_rows_answer_as_postgres() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE w (id int PRIMARY KEY, s text, n int)").await;
    ok(
        &mut s,
        "INSERT INTO w VALUES (1, 'Apple', 1), (2, 'banana', 2), (3, 'apple', 2), (4, NULL, 3), \
         (5, 'cherry', 3)",
    )
    .await;
    for (sql, expected) in [
        (
            "SELECT id FROM w WHERE s ILIKE ANY (ARRAY['APP%', 'ch%']) ORDER BY id",
            vec!["1", "3", "5"],
        ),
        (
            "SELECT id FROM w WHERE s LIKE ANY (ARRAY['app%', 'ch%']) ORDER BY id",
            vec!["3", "5"],
        ),
        (
            "SELECT id FROM w WHERE s NOT LIKE ANY (ARRAY['app%', '%a%']) ORDER BY id",
            vec!["1", "2", "5"],
        ),
        (
            "SELECT string_agg(DISTINCT s, ',') FROM w",
            vec!["Apple,apple,banana,cherry"],
        ),
        (
            "SELECT n, string_agg(DISTINCT lower(s), '|') FROM w GROUP BY n ORDER BY n",
            vec!["1|apple", "2|apple|banana", "3|cherry"],
        ),
        (
            "SELECT string_agg(DISTINCT s, ',' ORDER BY s DESC) FROM w",
            vec!["cherry,banana,apple,Apple"],
        ),
        (
            "SELECT id FROM w ORDER BY id OFFSET 1 ROWS FETCH NEXT 2 ROWS ONLY",
            vec!["2", "3"],
        ),
        ("SELECT id FROM w ORDER BY id OFFSET 3 ROWS", vec!["4", "5"]),
    ] {
        assert_eq!(ok(&mut s, sql).await.lines(), expected, "{sql}");
    }
    // SQLite has no LATERAL: refused plainly rather than as a syntax error.
    let error = err(
        &mut s,
        "SELECT w.id, x.m FROM w CROSS JOIN LATERAL (SELECT w.n * 2 AS m) x",
    )
    .await;
    assert_eq!(error.code, "0A000");
}

#[tokio::test]
async fn explain_shows_sqlite_s_plan_and_analyze_runs_the_statement() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE ex (id int PRIMARY KEY, g text, n int)",
    )
    .await;
    ok(&mut s, "CREATE INDEX ex_g ON ex (g)").await;
    ok(
        &mut s,
        "INSERT INTO ex VALUES (1, 'a', 10), (2, 'a', 20), (3, 'b', 30)",
    )
    .await;

    let plan = ok(&mut s, "EXPLAIN SELECT * FROM ex WHERE g = 'a'").await;
    assert_eq!(plan.names(), ["QUERY PLAN"]);
    assert_eq!(plan.oids(), [25]);
    assert_eq!(plan.tag, "EXPLAIN");
    assert_eq!(plan.lines(), ["SEARCH ex USING INDEX ex_g (g=?)"]);
    let plan = ok(
        &mut s,
        "EXPLAIN (COSTS OFF, VERBOSE) SELECT g, count(*) FROM ex WHERE n > \
         (SELECT min(n) FROM ex) GROUP BY g ORDER BY g",
    )
    .await
    .lines();
    assert!(plan.iter().any(|l| l.starts_with("SCAN ex")), "{plan:?}");
    assert!(plan.iter().any(|l| l.starts_with("  ->  ")), "{plan:?}");

    // Without ANALYZE a write is planned, not run; with it, it runs as it would alone.
    let plan = ok(&mut s, "EXPLAIN UPDATE ex SET n = n + 1 WHERE id = 1").await;
    assert!(
        plan.lines()[0].starts_with("SEARCH ex"),
        "{:?}",
        plan.lines()
    );
    assert_eq!(count_rows(&db, "ex"), 3);
    assert_eq!(
        ok(&mut s, "SELECT n FROM ex WHERE id = 1").await.lines(),
        ["10"]
    );
    let analyzed = ok(&mut s, "EXPLAIN ANALYZE DELETE FROM ex WHERE g = 'a'")
        .await
        .lines();
    assert_eq!(
        analyzed[analyzed.len() - 2],
        "Actual Rows: 2",
        "{analyzed:?}"
    );
    assert!(analyzed[analyzed.len() - 1].starts_with("Execution Time: "));
    assert_eq!(count_rows(&db, "ex"), 1);
    let analyzed = ok(&mut s, "EXPLAIN (ANALYZE true) SELECT * FROM ex")
        .await
        .lines();
    assert_eq!(
        analyzed,
        ["SCAN ex", "Actual Rows: 1", analyzed[2].as_str()]
    );

    // Parameters, as the extended protocol sends them.
    let plan = run_params(
        &mut s,
        "EXPLAIN SELECT n FROM ex WHERE id = $1",
        &[Some("3")],
    )
    .await
    .unwrap();
    assert!(
        plan.lines()[0].starts_with("SEARCH ex"),
        "{:?}",
        plan.lines()
    );

    for (sql, code) in [
        ("EXPLAIN (FORMAT JSON) SELECT 1", "0A000"),
        ("EXPLAIN (BOGUS) SELECT 1", "42601"),
        ("EXPLAIN (ANALYZE maybe) SELECT 1", "22023"),
        ("EXPLAIN SELECT * FROM missing", "42P01"),
    ] {
        assert_eq!(err(&mut s, sql).await.code, code, "{sql}");
    }
}

/// ROLLUP, CUBE and GROUPING SETS, which SQLite lacks; every expected value is PostgreSQL
/// 15's.
#[tokio::test]
async fn grouping_sets_rollup_and_cube_answer_as_in_postgres() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE gs (id serial PRIMARY KEY, g text, h text, n int)",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO gs (g, h, n) VALUES ('a', 'x', 1), ('a', 'y', 2), ('b', 'x', 3), (NULL, 'y', 4)",
    )
    .await;
    let cases: [(&str, &[&str]); 7] = [
        (
            "SELECT g, h, sum(n), grouping(g, h) FROM gs GROUP BY ROLLUP (g, h) ORDER BY 4, 1, 2",
            &[
                "a|x|1|0", "a|y|2|0", "b|x|3|0", "|y|4|0", "a||3|1", "b||3|1", "||4|1", "||10|3",
            ],
        ),
        (
            "SELECT g AS k, count(*), grouping(g) FROM gs GROUP BY CUBE (k) ORDER BY 3, 1",
            &["a|2|0", "b|1|0", "|1|0", "|4|1"],
        ),
        (
            "SELECT n, h, count(*) FROM gs GROUP BY GROUPING SETS ((h), (n)) \
             ORDER BY 1 NULLS FIRST, 2",
            &["|x|2", "|y|2", "1||1", "2||1", "3||1", "4||1"],
        ),
        (
            "SELECT g, h, count(*) FROM gs GROUP BY g, ROLLUP (h) ORDER BY 1, 2",
            &["a|x|1", "a|y|1", "a||2", "b|x|1", "b||1", "|y|1", "||1"],
        ),
        // The empty grouping set makes one row, even of no rows.
        ("SELECT g FROM gs WHERE false GROUP BY ROLLUP (g)", &[""]),
        ("SELECT count(*) FROM gs GROUP BY ()", &["4"]),
        (
            "SELECT g, count(*) FILTER (WHERE n > 1) AS big FROM gs GROUP BY ROLLUP (1) \
             HAVING count(*) > 1 ORDER BY 1",
            &["a|1", "|3"],
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(ok(&mut s, sql).await.lines(), expected, "{sql}");
    }
    let typed = ok(
        &mut s,
        "SELECT n, h, count(*), grouping(n) FROM gs GROUP BY GROUPING SETS ((h), (n))",
    )
    .await;
    assert_eq!(typed.names(), ["n", "h", "count", "grouping"]);
    assert_eq!(typed.oids(), [23, 25, 20, 23]);
    let error = err(&mut s, "SELECT grouping(n) FROM gs GROUP BY ROLLUP (g)").await;
    assert_eq!(error.code, "42803", "{error:?}");
}

/// Statements that differ only in integer literals share one translation with the literals
/// as parameters (`rewrite::lift`). Each must answer exactly as the same text translated as
/// it is (a block comment turns lifting off): rows, result types, tags and errors.
#[tokio::test]
async fn statements_with_integer_literals_answer_as_they_do_unlifted() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE lit (id int PRIMARY KEY, n int, big bigint, r real, d date, t text, \
         num numeric, s smallint, flag boolean, ts timestamp)",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO lit VALUES \
         (1, 10, 5000000000, 1.5, '2026-01-31', 'a', 10.25, 3, true, '2026-01-31 10:00'), \
         (2, 20, -7, 2.5, '2026-02-28', 'b', -1.5, -2, false, '2026-02-28 23:59:59'), \
         (3, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    .await;
    let statements = [
        "SELECT n FROM lit WHERE id = 1",
        "SELECT n FROM lit WHERE id = 2",
        "SELECT id FROM lit WHERE big = 5000000000",
        "SELECT id FROM lit WHERE big > -8 ORDER BY 1",
        "SELECT n + 1, n * 3, n / 3, n % 3, n - -4 FROM lit WHERE id <= 2 ORDER BY id",
        "SELECT 7 / 2, 1 + 1, 5000000000 + 1, 2 * 2147483647",
        "SELECT 2147483647 + 1",
        "SELECT n / 0 FROM lit WHERE id = 1",
        "SELECT r * 2, r / 2 FROM lit WHERE id = 1",
        "SELECT d + 7, d - 1 FROM lit WHERE id <> 3 ORDER BY id",
        "SELECT t FROM lit WHERE t = 1",
        "SELECT id FROM lit WHERE n != 10 AND id >= 1",
        "SELECT count(*) FROM lit WHERE n IS NULL OR n = 20",
        "SELECT id, n = 10 FROM lit ORDER BY id",
        "SELECT num * 2, num / 3, num + 1, num - -1, num % 2 FROM lit ORDER BY id",
        "SELECT id FROM lit WHERE num > 10 OR num = -1 ORDER BY id",
        "SELECT s + 1, s * 40000, s / 2 FROM lit ORDER BY id",
        "SELECT id FROM lit WHERE s = 3",
        "SELECT ts + interval '1 hour' * 3, ts - interval '1 day' * -2 FROM lit ORDER BY id",
        "SELECT id FROM lit WHERE d - 30 > '2026-01-01' ORDER BY id",
        "SELECT CASE WHEN n = 10 THEN 'ten' ELSE 'other' END FROM lit ORDER BY id",
        "SELECT n::text || 'x', n = 10::bigint FROM lit ORDER BY id",
        "UPDATE lit SET flag = 1 WHERE id = 1",
        "SELECT id FROM lit WHERE flag = 1",
        "SELECT id FROM lit WHERE id IN (1, 3) ORDER BY id",
        "SELECT id FROM lit WHERE s IN (3, -2) AND id NOT IN (5) ORDER BY id",
        "SELECT id FROM lit WHERE big IN (5000000000, 0) ORDER BY id",
        "SELECT id, n IN (10, 20) FROM lit ORDER BY id",
        "SELECT * FROM (VALUES (1, 'x'), (2, 'y')) v (a, b) ORDER BY a",
        "SELECT a, pg_typeof(a) FROM (VALUES (1), (5000000000)) v (a) ORDER BY a",
        "SELECT a FROM (VALUES (1), (2.5)) v (a) ORDER BY a",
        "INSERT INTO lit (id, flag) VALUES (12, 1)",
        "INSERT INTO lit (id, d) VALUES (12, 1)",
        "UPDATE lit SET ts = 5 WHERE id = 1",
        "SELECT id FROM lit ORDER BY -1",
        "SELECT id FROM lit ORDER BY id LIMIT -1",
    ];
    for sql in statements {
        let lifted = run(&mut s, sql).await;
        let unlifted = run(&mut s, &format!("{sql} /* as it is */")).await;
        match (lifted, unlifted) {
            (Ok(lifted), Ok(unlifted)) => {
                assert_eq!(lifted.text(), unlifted.text(), "{sql}");
                assert_eq!(lifted.oids(), unlifted.oids(), "{sql}");
                assert_eq!(lifted.names(), unlifted.names(), "{sql}");
            }
            (Err(lifted), Err(unlifted)) => {
                assert_eq!(lifted.code, unlifted.code, "{sql}");
                assert_eq!(lifted.message, unlifted.message, "{sql}");
            }
            (lifted, unlifted) => panic!("{sql}: {lifted:?} but unlifted {unlifted:?}"),
        }
    }
    assert_eq!(
        ok(&mut s, "SELECT n FROM lit WHERE id = 2").await.lines(),
        ["20"]
    );
    // Postgres has no assignment cast from a number to these columns.
    for (sql, message) in [
        (
            "INSERT INTO lit (id, flag) VALUES (12, 1)",
            "column \"flag\" is of type boolean but expression is of type integer",
        ),
        (
            "UPDATE lit SET d = 2.5 WHERE id = 1",
            "column \"d\" is of type date but expression is of type numeric",
        ),
        (
            "INSERT INTO lit (id, ts) SELECT 12, big FROM lit WHERE id = 1",
            "column \"ts\" is of type timestamp without time zone but expression is of type bigint",
        ),
    ] {
        let error = err(&mut s, sql).await;
        assert_eq!(
            (error.code.as_str(), error.message.as_str()),
            ("42804", message)
        );
        assert_eq!(
            error.hint.as_deref(),
            Some("You will need to rewrite or cast the expression.")
        );
    }
    assert_eq!(count_rows(&db, "lit"), 3);
    // A shape first seen with harmless values still checks the values of later texts.
    assert_eq!(
        ok(&mut s, "SELECT 2147483647 + 0").await.lines(),
        ["2147483647"]
    );
    assert_eq!(err(&mut s, "SELECT 2147483647 + 1").await.code, "22003");
    assert_eq!(
        ok(&mut s, "SELECT n / 2 FROM lit WHERE id = 1")
            .await
            .lines(),
        ["5"]
    );
    assert_eq!(
        err(&mut s, "SELECT n / 0 FROM lit WHERE id = 1").await.code,
        "22012"
    );
    // Rows inserted through a lifted shape and as they are hold the same values.
    for (id, suffix) in [(10, ""), (11, " /* as it is */")] {
        let sql = format!(
            "INSERT INTO lit (id, n, big, num, s, t) VALUES ({id}, -7, 5000000000, 3, 2, 5), \
             ({id} + 10, 2147483647, -1, -4, -32768, 0){suffix}"
        );
        assert_eq!(ok(&mut s, &sql).await.tag, "INSERT 0 2", "{sql}");
    }
    let inserted = |id: i64| {
        format!("SELECT n, big, num, s, t FROM lit WHERE id IN ({id}, {id} + 10) ORDER BY id")
    };
    assert_eq!(
        ok(&mut s, &inserted(10)).await.lines(),
        ok(&mut s, &inserted(11)).await.lines()
    );
    assert_eq!(
        ok(&mut s, &inserted(10)).await.lines(),
        ["-7|5000000000|3|2|5", "2147483647|-1|-4|-32768|0"]
    );
    assert_eq!(
        ok(
            &mut s,
            "UPDATE lit SET n = n + -5, big = big * 2 WHERE id = 1"
        )
        .await
        .tag,
        "UPDATE 1"
    );
    assert_eq!(
        ok(&mut s, "UPDATE lit SET n = n + -5 WHERE id = 2")
            .await
            .tag,
        "UPDATE 1"
    );
    assert_eq!(
        ok(&mut s, "DELETE FROM lit WHERE id = 3").await.tag,
        "DELETE 1"
    );
    assert_eq!(
        ok(
            &mut s,
            "INSERT INTO lit (id, n) SELECT 4, n + 1 FROM lit WHERE id = 2"
        )
        .await
        .tag,
        "INSERT 0 1"
    );
    assert_eq!(
        sqlite(&db)
            .prepare("SELECT id, n, big FROM lit ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<Vec<(i64, Option<i64>, Option<i64>)>, _>>()
            .unwrap(),
        [
            (1, Some(5), Some(10_000_000_000)),
            (2, Some(15), Some(-7)),
            (4, Some(16), None),
            (10, Some(-7), Some(5_000_000_000)),
            (11, Some(-7), Some(5_000_000_000)),
            (20, Some(2_147_483_647), Some(-1)),
            (21, Some(2_147_483_647), Some(-1))
        ]
    );
}
