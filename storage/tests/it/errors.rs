use crate::util::*;

#[tokio::test]
async fn errors_carry_postgres_sqlstates() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE parent (id int PRIMARY KEY, email text UNIQUE, n int CHECK (n > 0))",
    )
    .await;
    ok(&mut s, "CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id) ON DELETE CASCADE)").await;
    ok(&mut s, "INSERT INTO parent VALUES (1, 'a@x', 1)").await;

    let e = err(&mut s, "INSERT INTO parent VALUES (1, 'b@x', 1)").await;
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        (
            "23505",
            "duplicate key value violates unique constraint \"parent_pkey\""
        )
    );
    let e = err(&mut s, "INSERT INTO parent VALUES (2, 'a@x', 1)").await;
    assert_eq!(
        e.message,
        "duplicate key value violates unique constraint \"parent_email_key\""
    );
    let e = err(&mut s, "INSERT INTO child (id) VALUES (1)").await;
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        (
            "23502",
            "null value in column \"parent_id\" of relation \"child\" violates not-null constraint"
        )
    );
    assert_eq!(
        err(&mut s, "INSERT INTO child VALUES (1, 99)").await.code,
        "23503"
    );
    let e = err(&mut s, "INSERT INTO parent VALUES (3, 'c@x', -1)").await;
    assert_eq!(e.code, "23514");
    assert!(e.message.contains("parent_n_check"), "{e:?}");
    let e = err(&mut s, "SELECT * FROM nope").await;
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("42P01", "relation \"nope\" does not exist")
    );
    let e = err(&mut s, "SELECT nope FROM parent").await;
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("42703", "column \"nope\" does not exist")
    );
    let e = err(&mut s, "SELEC 1").await;
    assert_eq!(e.code, "42601");
    assert!(e.message.starts_with("syntax error at or near"), "{e:?}");
    assert_eq!(
        err(&mut s, "CREATE TABLE parent (id int)").await.code,
        "42P07"
    );
    assert_eq!(err(&mut s, "SELECT 1 / 0").await.code, "22012");
    let e = err(&mut s, "SELECT id / (n - 1) FROM parent").await;
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("22012", "division by zero")
    );
    assert_eq!(err(&mut s, "SELECT 'abc'::int").await.code, "22P02");
    assert_eq!(
        err(&mut s, "SELECT email::int FROM parent").await.code,
        "22P02"
    );
    assert_eq!(
        err(&mut s, "SELECT string_agg(email, ',') OVER () FROM parent")
            .await
            .code,
        "0A000"
    );
    assert_eq!(
        err(&mut s, "SELECT no_such_function(1)").await.code,
        "42883"
    );

    // FK cascade works.
    ok(&mut s, "INSERT INTO child VALUES (1, 1)").await;
    ok(&mut s, "DELETE FROM parent WHERE id = 1").await;
    assert_eq!(count_rows(&db, "child"), 0);
    // The session survives every error.
    assert_eq!(ok(&mut s, "SELECT 1").await.value(), Some("1".into()));
}
