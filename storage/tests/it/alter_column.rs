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
    for (sql, code) in [
        ("ALTER TABLE jobs ALTER COLUMN nope SET DEFAULT 1", "42703"),
        ("ALTER TABLE jobs ALTER COLUMN id DROP NOT NULL", "42P16"),
        (
            "ALTER TABLE jobs ALTER COLUMN id SET DEFAULT 'abc'",
            "22P02",
        ),
        ("ALTER TABLE nope ALTER COLUMN prio SET DEFAULT 1", "42P01"),
    ] {
        assert_eq!(err(&mut s, sql).await.code, code, "{sql}");
    }
    ok(
        &mut s,
        "ALTER TABLE IF EXISTS nope ALTER COLUMN prio SET DEFAULT 1",
    )
    .await;
    // Transactional, as in PostgreSQL: a rollback takes the rebuild back.
    ok(&mut s, "BEGIN").await;
    ok(&mut s, "ALTER TABLE jobs ALTER COLUMN prio SET DEFAULT 1").await;
    assert_eq!(
        ok(&mut s, "INSERT INTO jobs (id) VALUES (5) RETURNING prio")
            .await
            .lines(),
        ["1"]
    );
    ok(&mut s, "ROLLBACK").await;
    assert_eq!(
        ok(&mut s, "INSERT INTO jobs (id) VALUES (5) RETURNING prio")
            .await
            .lines(),
        [""]
    );
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

/// The rebuilt table keeps its rows, keys, indexes (unique, partial, on expressions),
/// foreign keys both ways with their actions, CHECK constraints, serial sequences and views,
/// and the emulated catalog reports the new default and nullability.
#[tokio::test]
async fn a_rebuilt_table_keeps_everything_else() {
    let db = open();
    let mut s = db.backend.session();
    for sql in [
        "CREATE TABLE parents (id serial PRIMARY KEY, name text UNIQUE, code int)",
        "CREATE TABLE jobs (id serial PRIMARY KEY, state text CHECK (state <> ''), prio int, \
         parent int REFERENCES parents(id) ON DELETE CASCADE, n serial)",
        "CREATE UNIQUE INDEX jobs_state_prio ON jobs (state, prio) WHERE prio > 0",
        "CREATE INDEX jobs_lower ON jobs (lower(state))",
        "CREATE TABLE child (id int PRIMARY KEY, job int REFERENCES jobs(id) ON DELETE CASCADE)",
        "CREATE VIEW v AS SELECT id, prio FROM jobs",
        "INSERT INTO parents (name) VALUES ('p1'), ('p2')",
        "INSERT INTO jobs (state, prio, parent) VALUES ('a', 1, 1), ('b', 2, 2), ('c', 3, 1)",
        "DELETE FROM jobs WHERE id = 3",
        "INSERT INTO child VALUES (1, 1), (2, 2)",
        "ALTER TABLE jobs ALTER COLUMN prio SET DEFAULT 5",
        "ALTER TABLE jobs ALTER COLUMN prio SET NOT NULL",
        "ALTER TABLE jobs ALTER COLUMN parent SET DEFAULT 1",
    ] {
        ok(&mut s, sql).await;
    }
    // Dropping the old table deleted no referencing row.
    assert_eq!(
        ok(&mut s, "SELECT * FROM child ORDER BY id").await.lines(),
        ["1|1", "2|2"]
    );
    // The serial key goes on after the largest id ever handed out (3), not the largest left.
    let out = ok(
        &mut s,
        "INSERT INTO jobs (state) VALUES ('d') RETURNING id, prio, n, parent",
    )
    .await;
    assert_eq!(out.lines(), ["4|5|4|1"]);
    for (sql, code) in [
        ("INSERT INTO jobs (state, prio) VALUES ('a', 1)", "23505"),
        ("INSERT INTO jobs (state) VALUES ('')", "23514"),
        ("INSERT INTO jobs (state, parent) VALUES ('e', 99)", "23503"),
    ] {
        assert_eq!(err(&mut s, sql).await.code, code, "{sql}");
    }
    // Both foreign keys still cascade: parent 2 → job 2 → child 2.
    ok(&mut s, "DELETE FROM parents WHERE id = 2").await;
    assert_eq!(
        ok(&mut s, "SELECT * FROM child ORDER BY id").await.lines(),
        ["1|1"]
    );
    assert_eq!(
        ok(&mut s, "SELECT * FROM v ORDER BY id").await.lines(),
        ["1|1", "4|5"]
    );
    let out = ok(
        &mut s,
        "SELECT column_name, column_default, is_nullable, data_type FROM information_schema.columns \
         WHERE table_name = 'jobs' ORDER BY ordinal_position",
    )
    .await;
    assert_eq!(
        out.lines(),
        [
            "id|nextval('jobs_id_seq'::regclass)|NO|integer",
            "state||YES|text",
            "prio|5|NO|integer",
            "parent|1|YES|integer",
            "n|nextval('jobs_n_seq'::regclass)|NO|integer",
        ]
    );
    let out = ok(
        &mut s,
        "SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a \
         ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.adrelid = 'jobs'::regclass \
         ORDER BY 1",
    )
    .await;
    assert_eq!(
        out.lines(),
        [
            "id|nextval('jobs_id_seq'::regclass)",
            "n|nextval('jobs_n_seq'::regclass)",
            "parent|1",
            "prio|5",
        ]
    );
    let out = ok(
        &mut s,
        "SELECT attname, attnotnull, atthasdef FROM pg_attribute \
         WHERE attrelid = 'jobs'::regclass AND attnum > 0 ORDER BY attnum",
    )
    .await;
    assert_eq!(
        out.lines(),
        ["id|t|t", "state|f|f", "prio|t|t", "parent|f|t", "n|t|t"]
    );
    let out = ok(
        &mut s,
        "SELECT conname FROM pg_constraint WHERE conrelid = 'jobs'::regclass \
         AND contype IN ('p', 'f') ORDER BY 1",
    )
    .await;
    assert_eq!(out.lines(), ["jobs_parent_fkey", "jobs_pkey"]);
    let indexes: Vec<String> = sqlite(&db)
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' ORDER BY 1",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(indexes, ["jobs_lower", "jobs_state_prio"]);
}

/// TYPE converts every row as PostgreSQL does: by assignment cast without USING (refused
/// where PostgreSQL has none, 42804; 22001 for a string too long), by the USING expression
/// otherwise; a failed conversion leaves the table as it was.
#[tokio::test]
async fn type_converts_every_row() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE t2 (id int PRIMARY KEY, state text, prio int, amt numeric, f float8, \
         b bool, d date)",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO t2 VALUES (1, '12', 5, 1.234, 2.5, true, '2024-01-02'), \
         (2, 'abcdefghij', NULL, 2.345, 3.5, false, NULL)",
    )
    .await;
    for (sql, code, message) in [
        (
            "ALTER TABLE t2 ALTER COLUMN state TYPE int",
            "42804",
            "column \"state\" cannot be cast automatically to type integer",
        ),
        (
            "ALTER TABLE t2 ALTER COLUMN b TYPE int",
            "42804",
            "column \"b\" cannot be cast automatically to type integer",
        ),
        (
            "ALTER TABLE t2 ALTER COLUMN prio TYPE bool",
            "42804",
            "column \"prio\" cannot be cast automatically to type boolean",
        ),
        (
            "ALTER TABLE t2 ALTER COLUMN state TYPE varchar(5)",
            "22001",
            "value too long for type character varying(5)",
        ),
    ] {
        let e = err(&mut s, sql).await;
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            (code, message),
            "{sql}"
        );
    }
    let e = err(&mut s, "ALTER TABLE t2 ALTER COLUMN state TYPE int").await;
    assert_eq!(
        e.hint.as_deref(),
        Some("You might need to specify \"USING state::integer\".")
    );
    for sql in [
        "ALTER TABLE t2 ALTER COLUMN d TYPE text",
        "ALTER TABLE t2 ALTER COLUMN prio TYPE bigint",
        "ALTER TABLE t2 ALTER COLUMN amt TYPE numeric(10,2)",
        "ALTER TABLE t2 ALTER COLUMN f TYPE int",
        "ALTER TABLE t2 ALTER COLUMN prio TYPE text",
        "ALTER TABLE t2 ALTER COLUMN state TYPE varchar(20)",
    ] {
        ok(&mut s, sql).await;
    }
    assert_eq!(
        ok(&mut s, "SELECT * FROM t2 ORDER BY id").await.lines(),
        ["1|12|5|1.23|2|t|2024-01-02", "2|abcdefghij||2.35|4|f|"]
    );
    ok(
        &mut s,
        "ALTER TABLE t2 ALTER COLUMN state TYPE int USING length(state)",
    )
    .await;
    ok(
        &mut s,
        "ALTER TABLE t2 ALTER COLUMN prio SET DATA TYPE int USING prio::int * 2",
    )
    .await;
    assert_eq!(
        ok(&mut s, "SELECT * FROM t2 ORDER BY id").await.lines(),
        ["1|2|10|1.23|2|t|2024-01-02", "2|10||2.35|4|f|"]
    );
    let out = ok(
        &mut s,
        "SELECT column_name, data_type, character_maximum_length, numeric_precision, \
         numeric_scale FROM information_schema.columns WHERE table_name = 't2' \
         ORDER BY ordinal_position",
    )
    .await;
    assert_eq!(
        out.lines(),
        [
            "id|integer||32|0",
            "state|integer||32|0",
            "prio|integer||32|0",
            "amt|numeric||10|2",
            "f|integer||32|0",
            "b|boolean|||",
            "d|text|||",
        ]
    );
    // Values are stored as the new type's: integers, not the text they were read from.
    let stored: String = sqlite(&db)
        .query_row("SELECT typeof(state) FROM t2 WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, "integer");
}

/// The task's own sequence, with varchar's length checked on existing rows.
#[tokio::test]
async fn varchar_too_long_for_an_existing_value_keeps_the_table() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE jobs (id int PRIMARY KEY, state text, prio int)",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO jobs VALUES (1, 'a very long state name indeed', 1)",
    )
    .await;
    let e = err(
        &mut s,
        "ALTER TABLE jobs ALTER COLUMN state TYPE varchar(20)",
    )
    .await;
    assert_eq!(e.code, "22001");
    assert_eq!(
        ok(&mut s, "SELECT state FROM jobs").await.lines(),
        ["a very long state name indeed"]
    );
    ok(&mut s, "UPDATE jobs SET state = 'short'").await;
    ok(
        &mut s,
        "ALTER TABLE jobs ALTER COLUMN state TYPE varchar(20)",
    )
    .await;
    let e = err(
        &mut s,
        "UPDATE jobs SET state = 'a very long state name indeed'",
    )
    .await;
    assert_eq!(e.code, "22001");
    assert_eq!(
        ok(&mut s, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'jobs'::regclass AND attname = 'state'").await.lines(),
        ["character varying(20)"]
    );
}
