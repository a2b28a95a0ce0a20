//! Garbage collection of transaction records, on SQLite and PostgreSQL: what the record
//! sweep lists, what it may delete, the fence against late decisions once an abort record is
//! gone, and (SQLite) the participant-side bookkeeping that must outlive a failed finish.

use std::time::Duration;

use mycelium_protocol::{NodeSession, TxnOutcome, TxnRecord};
use mycelium_storage::{Backend, PostgresBackend};
use mycelium_testkit::PgCluster;

use crate::postgres::{ok, options};
use crate::util::*;

const ALL: Duration = Duration::ZERO;

fn gids(records: &[TxnRecord]) -> Vec<(&str, bool)> {
    let mut gids: Vec<(&str, bool)> = records
        .iter()
        .map(|r| (r.gid.as_str(), r.committed))
        .collect();
    gids.sort_unstable();
    gids
}

/// Decides `gid` on a new session with one row of its own.
async fn decide(
    backend: &dyn Backend,
    gid: &str,
    value: i32,
) -> Result<(), mycelium_protocol::DbError> {
    let mut s = backend.session();
    ok(s.as_mut(), "BEGIN").await;
    ok(s.as_mut(), &format!("INSERT INTO t VALUES ({value})")).await;
    s.commit_decision(gid, &["n1".to_owned(), "n2".to_owned()])
        .await
}

/// The same story on either backend.
async fn records_are_listed_forgotten_and_fenced(backend: &dyn Backend) {
    let mut s = backend.session();
    ok(s.as_mut(), "CREATE TABLE t (v int PRIMARY KEY)").await;
    decide(backend, "g-commit", 1).await.unwrap();
    assert_eq!(
        backend.txn_outcome("g-abort").await.unwrap(),
        TxnOutcome::Aborted
    );
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Young records are not listed for a long retention; all are for none.
    assert!(
        backend
            .txn_records(Duration::from_secs(3600), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let listed = backend.txn_records(ALL, 100).await.unwrap();
    assert_eq!(gids(&listed), vec![("g-abort", false), ("g-commit", true)]);
    let commit = listed.iter().find(|r| r.committed).unwrap();
    assert_eq!(commit.participants, vec!["n1".to_owned(), "n2".to_owned()]);
    assert_eq!(backend.txn_records(ALL, 1).await.unwrap().len(), 1);

    // The coordinator's forget deletes a committed record, never an abort record.
    assert!(!backend.forget_txn("g-abort").await.unwrap());
    assert!(backend.forget_txn("g-commit").await.unwrap());
    assert!(!backend.forget_txn("g-commit").await.unwrap());
    let listed = backend.txn_records(ALL, 100).await.unwrap();
    assert_eq!(gids(&listed), vec![("g-abort", false)]);

    // A deciding transaction that began before a participant presumed its abort...
    let mut late = backend.session();
    ok(late.as_mut(), "BEGIN").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        backend.txn_outcome("g-late").await.unwrap(),
        TxnOutcome::Aborted
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    // ...may not decide once that abort record is deleted, though the record is gone.
    let listed = backend.txn_records(ALL, 100).await.unwrap();
    assert_eq!(gids(&listed), vec![("g-abort", false), ("g-late", false)]);
    assert_eq!(backend.delete_txn_records(&listed).await.unwrap(), 2);
    assert!(backend.txn_records(ALL, 100).await.unwrap().is_empty());
    ok(late.as_mut(), "INSERT INTO t VALUES (2)").await;
    let error = late
        .commit_decision("g-late", &["n1".to_owned(), "n2".to_owned()])
        .await
        .unwrap_err();
    assert_eq!(error.code, "40001", "{error:?}");
    assert!(error.message.contains("g-late"), "{}", error.message);
    assert!(!late.in_transaction());
    assert!(backend.txn_records(ALL, 100).await.unwrap().is_empty());
    let rows = ok(s.as_mut(), "SELECT count(*) FROM t WHERE v = 2").await;
    assert_eq!(
        rows.value().as_deref(),
        Some("0"),
        "the late decision's row rolled back"
    );

    // Transactions that began afterwards decide as before; deleting again is harmless.
    decide(backend, "g-new", 3).await.unwrap();
    assert_eq!(
        backend.txn_outcome("g-new").await.unwrap(),
        TxnOutcome::Committed
    );
    assert_eq!(backend.delete_txn_records(&listed).await.unwrap(), 0);
}

#[tokio::test]
async fn sqlite_records_are_listed_forgotten_and_fenced() {
    let db = open();
    records_are_listed_forgotten_and_fenced(&db.backend).await;
}

#[tokio::test]
async fn postgres_records_are_listed_forgotten_and_fenced() {
    let Some(pg) = PgCluster::start_or_skip() else {
        return;
    };
    let backend = PostgresBackend::connect(options(&pg, "records"))
        .await
        .unwrap();
    records_are_listed_forgotten_and_fenced(&backend).await;
}

fn markers(db: &Db) -> i64 {
    sqlite(db)
        .query_row(
            "SELECT count(*) FROM __mycelium_txn_records WHERE state = 'applied'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test]
async fn sqlite_applied_markers_go_and_a_vote_that_failed_to_finish_stays_prepared() {
    let db = open();
    let mut s = db.backend.session();
    crate::util::ok(&mut s, "CREATE TABLE t (v int PRIMARY KEY)").await;
    crate::util::ok(&mut s, "BEGIN").await;
    crate::util::ok(&mut s, "INSERT INTO t VALUES (1)").await;
    s.prepare("g-done", "n2").await.unwrap();
    db.backend.finish_prepared("g-done", true).await.unwrap();
    assert_eq!(markers(&db), 1, "COMMIT PREPARED leaves its marker");
    // The marker's redo row is gone: the sweep drops it with no record to delete.
    assert_eq!(db.backend.delete_txn_records(&[]).await.unwrap(), 0);
    assert_eq!(markers(&db), 0);

    // A vote left in the redo store by a finish that failed (only a restart settles it):
    // the node still lists it as prepared, so its decider keeps the record, and finishing
    // it again is an error rather than a silent success.
    let mut redo = db.path.as_os_str().to_owned();
    redo.push(".prepared");
    rusqlite::Connection::open(redo)
        .unwrap()
        .execute(
            "INSERT INTO prepared (gid, decider, prepared_at_ms, ddl, changeset) \
             VALUES ('g-stuck', 'n3', 1, '[]', x'')",
            [],
        )
        .unwrap();
    let prepared = Backend::prepared(&db.backend).await.unwrap();
    assert_eq!(
        prepared
            .iter()
            .map(|p| (p.gid.as_str(), p.decider.as_str()))
            .collect::<Vec<_>>(),
        vec![("g-stuck", "n3")]
    );
    let error = db
        .backend
        .finish_prepared("g-stuck", true)
        .await
        .unwrap_err();
    assert!(error.message.contains("g-stuck"), "{}", error.message);
    // A gid the node never held finishes as before.
    db.backend.finish_prepared("g-unknown", true).await.unwrap();
}
