//! `ALTER TABLE ... ALTER COLUMN` on SQLite nodes: SQLite cannot alter a column in place, so
//! the table is rebuilt; everything about it but the altered column must stay as it was.
//! Expected values are PostgreSQL 15's answers.

use crate::util::{count_rows, err, ok, open, sqlite};

#[tokio::test]
async fn set_and_drop_default_and_not_null() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE jobs (id int PRIMARY KEY, state text, prio int)",
    )
    .await;
    ok(&mut s, "INSERT INTO jobs VALUES (1, 'a', NULL)").await;
    ok(&mut s, "ALTER TABLE jobs ALTER COLUMN prio SET DEFAULT 9").await;
    let out = ok(&mut s, "INSERT INTO jobs (id) VALUES (2) RETURNING prio").await;
    assert_eq!(out.lines(), ["9"]);
    let e = err(&mut s, "ALTER TABLE jobs ALTER COLUMN prio SET NOT NULL").await;
    assert_eq!(e.code, "23502");
    assert_eq!(
        e.message,
        "column \"prio\" of relation \"jobs\" contains null values"
    );
    ok(&mut s, "UPDATE jobs SET prio = 0 WHERE prio IS NULL").await;
    ok(&mut s, "ALTER TABLE jobs ALTER COLUMN prio SET NOT NULL").await;
    let e = err(&mut s, "INSERT INTO jobs (id, prio) VALUES (3, NULL)").await;
    assert_eq!(e.code, "23502");
    ok(&mut s, "ALTER TABLE jobs ALTER COLUMN prio DROP DEFAULT").await;
    assert_eq!(
        err(&mut s, "INSERT INTO jobs (id) VALUES (4)").await.code,
        "23502"
    );
    ok(&mut s, "ALTER TABLE jobs ALTER COLUMN prio DROP NOT NULL").await;
    let out = ok(&mut s, "INSERT INTO jobs (id) VALUES (4) RETURNING *").await;
    assert_eq!(out.lines(), ["4||"]);
    let out = ok(&mut s, "SELECT * FROM jobs ORDER BY id").await;
    assert_eq!(out.lines(), ["1|a|0", "2||9", "4||"]);
    assert_eq!(count_rows(&db, "jobs"), 3);
    // No copy is left behind.
    let left: i64 = sqlite(&db)
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE '%rebuild%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}
