//! Scalar subqueries on a SQLite node: SQLite takes the first row of a subquery that returns
//! several, Postgres fails with 21000; expected values are PostgreSQL 15's.

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
