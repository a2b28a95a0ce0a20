//! Two-phase commit on SQLite: prepared transactions are durable in the redo store, survive
//! a restart, and resolve to exactly one outcome.

use mycelium_protocol::{NodeSession, TxnOutcome};
use mycelium_storage::{Backend, SqliteBackend, SqliteOptions};

use crate::util::*;

fn redo_rows(db: &Db) -> i64 {
    let mut name = db.path.as_os_str().to_owned();
    name.push(".prepared");
    let conn = rusqlite::Connection::open(name).unwrap();
    conn.query_row("SELECT count(*) FROM prepared", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn prepared_changes_appear_only_at_commit_prepared() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
    ok(&mut s, "INSERT INTO t VALUES (1, 'old')").await;
    ok(&mut s, "BEGIN").await;
    ok(&mut s, "INSERT INTO t VALUES (2, 'new'), (3, 'new')").await;
    ok(&mut s, "UPDATE t SET v = 'changed' WHERE id = 1").await;
    s.prepare("g1", "n1").await.unwrap();
    assert!(!s.in_transaction());
    assert_eq!(redo_rows(&db), 1);

    let mut reader = db.backend.session();
    let out = ok(&mut reader, "SELECT id, v FROM t ORDER BY id").await;
    assert_eq!(out.text(), vec![vec![Some("1".into()), Some("old".into())]]);
    let prepared = Backend::prepared(&db.backend).await.unwrap();
    assert_eq!(prepared.len(), 1);
    assert_eq!(
        (prepared[0].gid.as_str(), prepared[0].decider.as_str()),
        ("g1", "n1")
    );

    db.backend.finish_prepared("g1", true).await.unwrap();
    assert_eq!(count_rows(&db, "t"), 3);
    let out = ok(&mut reader, "SELECT v FROM t WHERE id = 1").await;
    assert_eq!(out.value(), Some("changed".into()));
    assert_eq!(redo_rows(&db), 0);
    assert!(Backend::prepared(&db.backend).await.unwrap().is_empty());
    // Finishing again (a coordinator retrying) is harmless.
    db.backend.finish_prepared("g1", true).await.unwrap();
    // The session is usable for a new transaction.
    ok(&mut s, "INSERT INTO t VALUES (4, 'after')").await;
    assert_eq!(count_rows(&db, "t"), 4);
}

#[tokio::test]
async fn rollback_prepared_leaves_no_trace() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE t (id int PRIMARY KEY)").await;
    ok(&mut s, "BEGIN").await;
    ok(&mut s, "INSERT INTO t VALUES (1)").await;
    s.prepare("g1", "n2").await.unwrap();
    db.backend.finish_prepared("g1", false).await.unwrap();
    assert_eq!(count_rows(&db, "t"), 0);
    assert_eq!(redo_rows(&db), 0);
    // The write lock is free again.
    ok(&mut s, "INSERT INTO t VALUES (2)").await;
    assert_eq!(count_rows(&db, "t"), 1);
}

#[tokio::test]
async fn a_prepared_transaction_survives_a_restart_with_its_ddl() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    {
        let backend = SqliteBackend::open(&path, SqliteOptions::default()).unwrap();
        let mut s = backend.session();
        ok(
            &mut s,
            "CREATE TABLE t (id int PRIMARY KEY, at timestamptz DEFAULT now())",
        )
        .await;
        ok(&mut s, "BEGIN").await;
        ok(&mut s, "INSERT INTO t (id) VALUES (1), (2)").await;
        ok(&mut s, "CREATE TABLE u (k text PRIMARY KEY, n serial)").await;
        ok(&mut s, "INSERT INTO u (k) VALUES ('a'), ('b')").await;
        ok(&mut s, "DELETE FROM t WHERE id = 2").await;
        s.prepare("g-restart", "n3").await.unwrap();
        // Shut down with the transaction prepared: the data file never saw it commit.
        backend.shutdown();
    }
    let backend = SqliteBackend::open(&path, SqliteOptions::default()).unwrap();
    let prepared = Backend::prepared(&backend).await.unwrap();
    assert_eq!(prepared.len(), 1);
    assert_eq!(prepared[0].gid, "g-restart");
    assert_eq!(prepared[0].decider, "n3");

    let mut s = backend.session();
    let out = ok(&mut s, "SELECT count(*) FROM t").await;
    assert_eq!(out.value(), Some("0".into()));

    backend.finish_prepared("g-restart", true).await.unwrap();
    let out = ok(&mut s, "SELECT id FROM t").await;
    assert_eq!(out.text(), vec![vec![Some("1".into())]]);
    let out = ok(&mut s, "SELECT k, n FROM u ORDER BY k").await;
    assert_eq!(
        out.text(),
        vec![
            vec![Some("a".into()), Some("1".into())],
            vec![Some("b".into()), Some("2".into())]
        ]
    );
    // The table created inside the prepared transaction is in the catalog for clients.
    let out = ok(
        &mut s,
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'u'",
    )
    .await;
    assert_eq!(out.value(), Some("1".into()));
    backend.shutdown();

    // And the outcome is final: nothing comes back after another restart.
    let backend = SqliteBackend::open(&path, SqliteOptions::default()).unwrap();
    assert!(Backend::prepared(&backend).await.unwrap().is_empty());
    let mut s = backend.session();
    assert_eq!(
        ok(&mut s, "SELECT count(*) FROM u").await.value(),
        Some("2".into())
    );
}

#[tokio::test]
async fn the_decision_record_and_presumed_abort() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE t (id int PRIMARY KEY)").await;
    ok(&mut s, "BEGIN").await;
    ok(&mut s, "INSERT INTO t VALUES (1)").await;
    s.commit_decision("g-commit", &["n1".into(), "n2".into()])
        .await
        .unwrap();
    assert!(!s.in_transaction());
    assert_eq!(count_rows(&db, "t"), 1);
    assert_eq!(
        db.backend.txn_outcome("g-commit").await.unwrap(),
        TxnOutcome::Committed
    );

    // A participant in doubt asks before the decider committed: the abort is recorded,
    // and the late commit fails instead of contradicting it.
    assert_eq!(
        db.backend.txn_outcome("g-late").await.unwrap(),
        TxnOutcome::Aborted
    );
    ok(&mut s, "BEGIN").await;
    ok(&mut s, "INSERT INTO t VALUES (2)").await;
    let error = s
        .commit_decision("g-late", &["n1".into(), "n2".into()])
        .await
        .unwrap_err();
    assert_eq!(error.code, "40001");
    assert!(error.message.contains("g-late"), "{}", error.message);
    assert_eq!(count_rows(&db, "t"), 1);
    assert!(!s.in_transaction());
    assert_eq!(
        db.backend.txn_outcome("g-late").await.unwrap(),
        TxnOutcome::Aborted
    );
}

#[tokio::test]
async fn prepare_votes_no_for_a_failed_or_duplicate_transaction() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE t (id int PRIMARY KEY)").await;
    ok(&mut s, "BEGIN").await;
    ok(&mut s, "INSERT INTO t VALUES (1)").await;
    assert_eq!(err(&mut s, "INSERT INTO t VALUES (1)").await.code, "23505");
    assert_eq!(s.prepare("g1", "n1").await.unwrap_err().code, "25P02");
    assert!(!s.in_transaction());
    assert_eq!(count_rows(&db, "t"), 0);
    assert_eq!(redo_rows(&db), 0);

    ok(&mut s, "BEGIN").await;
    ok(&mut s, "INSERT INTO t VALUES (2)").await;
    s.prepare("g2", "n1").await.unwrap();
    let mut other = db.backend.session();
    ok(&mut other, "BEGIN").await;
    ok(&mut other, "SELECT 1").await;
    assert_eq!(other.prepare("g2", "n1").await.unwrap_err().code, "42710");
    db.backend.finish_prepared("g2", true).await.unwrap();
    assert_eq!(count_rows(&db, "t"), 1);

    // Nothing to prepare outside a transaction.
    assert_eq!(s.prepare("g3", "n1").await.unwrap_err().code, "25P01");
}

#[tokio::test]
async fn a_read_only_participant_holds_nothing() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE t (id int PRIMARY KEY)").await;
    ok(&mut s, "BEGIN").await;
    ok(&mut s, "SELECT count(*) FROM t").await;
    s.prepare("g-read", "n1").await.unwrap();
    assert_eq!(redo_rows(&db), 0);
    // Writers are not blocked by it.
    let mut writer = db.backend.session();
    ok(&mut writer, "INSERT INTO t VALUES (1)").await;
    db.backend.finish_prepared("g-read", true).await.unwrap();
    assert!(Backend::prepared(&db.backend).await.unwrap().is_empty());
}

/// A prepared ALTER COLUMN is replayed from the redo store after a restart: the rebuild runs
/// again with foreign keys unenforced, so the rows referencing the table stay.
#[tokio::test]
async fn a_prepared_alter_column_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    {
        let backend = SqliteBackend::open(&path, SqliteOptions::default()).unwrap();
        let mut s = backend.session();
        for sql in [
            "CREATE TABLE p (id int PRIMARY KEY, v int)",
            "CREATE TABLE c (id int PRIMARY KEY, p int REFERENCES p(id) ON DELETE CASCADE)",
            "INSERT INTO p VALUES (1, 0)",
            "INSERT INTO c VALUES (1, 1)",
            "BEGIN",
            "ALTER TABLE p ALTER COLUMN v SET DEFAULT 4",
            "ALTER TABLE p ALTER COLUMN v SET NOT NULL",
            "INSERT INTO p (id) VALUES (2)",
        ] {
            ok(&mut s, sql).await;
        }
        s.prepare("g-alter", "n1").await.unwrap();
        backend.shutdown();
    }
    let backend = SqliteBackend::open(&path, SqliteOptions::default()).unwrap();
    backend.finish_prepared("g-alter", true).await.unwrap();
    let mut s = backend.session();
    assert_eq!(
        ok(&mut s, "SELECT * FROM p ORDER BY id").await.lines(),
        ["1|0", "2|4"]
    );
    assert_eq!(ok(&mut s, "SELECT * FROM c").await.lines(), ["1|1"]);
    assert_eq!(
        err(&mut s, "INSERT INTO p (id, v) VALUES (3, NULL)")
            .await
            .code,
        "23502"
    );
}
