use mycelium_protocol::NodeSession;
use std::time::{Duration, Instant};

use crate::util::*;

#[tokio::test]
async fn rollback_leaves_nothing_and_commit_keeps() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE t (id int PRIMARY KEY)").await;
    assert_eq!(ok(&mut s, "BEGIN").await.tag, "BEGIN");
    ok(&mut s, "INSERT INTO t VALUES (1)").await;
    assert_eq!(
        ok(&mut s, "SELECT count(*) FROM t").await.value(),
        Some("1".into())
    );
    assert_eq!(ok(&mut s, "ROLLBACK").await.tag, "ROLLBACK");
    assert_eq!(count_rows(&db, "t"), 0);

    ok(&mut s, "START TRANSACTION ISOLATION LEVEL SERIALIZABLE").await;
    ok(&mut s, "INSERT INTO t VALUES (2)").await;
    assert_eq!(ok(&mut s, "SAVEPOINT sp").await.tag, "SAVEPOINT");
    ok(&mut s, "INSERT INTO t VALUES (3)").await;
    assert_eq!(ok(&mut s, "ROLLBACK TO SAVEPOINT sp").await.tag, "ROLLBACK");
    ok(&mut s, "INSERT INTO t VALUES (4)").await;
    assert_eq!(ok(&mut s, "RELEASE sp").await.tag, "RELEASE");
    assert_eq!(ok(&mut s, "END").await.tag, "COMMIT");
    let out = ok(&mut s, "SELECT id FROM t ORDER BY id").await;
    assert_eq!(
        out.text(),
        vec![vec![Some("2".into())], vec![Some("4".into())]]
    );
    assert_eq!(ok(&mut s, "COMMIT").await.tag, "COMMIT");
}

#[tokio::test]
async fn errors_abort_the_transaction() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE t (id int PRIMARY KEY)").await;
    ok(&mut s, "BEGIN").await;
    ok(&mut s, "INSERT INTO t VALUES (1)").await;
    assert_eq!(err(&mut s, "INSERT INTO t VALUES (1)").await.code, "23505");
    assert_eq!(err(&mut s, "SELECT 1").await.code, "25P02");
    assert_eq!(ok(&mut s, "COMMIT").await.tag, "ROLLBACK");
    assert_eq!(count_rows(&db, "t"), 0);
    assert_eq!(ok(&mut s, "SELECT 1").await.value(), Some("1".into()));
    assert_eq!(err(&mut s, "SAVEPOINT x").await.code, "25P01");
}

#[tokio::test]
async fn dropped_session_rolls_back_and_frees_its_worker() {
    let db = open_with(mycelium_storage::SqliteOptions {
        workers: 1,
        max_workers: 1,
        ..Default::default()
    });
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE t (id int PRIMARY KEY)").await;
    ok(&mut s, "BEGIN").await;
    ok(&mut s, "INSERT INTO t VALUES (1)").await;
    drop(s);
    let mut other = db.backend.session();
    assert_eq!(
        ok(&mut other, "SELECT count(*) FROM t").await.value(),
        Some("0".into())
    );
}

#[tokio::test]
async fn a_second_writer_waits_then_succeeds() {
    let db = open();
    let mut a = db.backend.session();
    let mut b = db.backend.session();
    ok(&mut a, "CREATE TABLE t (id int PRIMARY KEY, v int)").await;
    ok(&mut a, "INSERT INTO t VALUES (1, 0)").await;
    ok(&mut a, "BEGIN").await;
    ok(&mut a, "UPDATE t SET v = v + 1 WHERE id = 1").await;
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        ok(&mut b, "BEGIN").await;
        ok(&mut b, "UPDATE t SET v = v + 10 WHERE id = 1").await;
        ok(&mut b, "COMMIT").await;
        Instant::now()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !writer.is_finished(),
        "the second writer must wait for the first"
    );
    ok(&mut a, "COMMIT").await;
    let finished = writer.await.unwrap();
    assert!(finished - started >= Duration::from_millis(300));
    assert_eq!(
        ok(&mut a, "SELECT v FROM t").await.value(),
        Some("11".into())
    );
}

#[tokio::test]
async fn now_is_fixed_within_a_transaction() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "BEGIN").await;
    let first = ok(&mut s, "SELECT now()").await.value();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = ok(&mut s, "SELECT now(), clock_timestamp()").await;
    assert_eq!(first, second.value());
    assert_ne!(second.text()[0][0], second.text()[0][1]);
    ok(&mut s, "COMMIT").await;
}

#[tokio::test]
async fn ddl_inside_a_transaction_is_visible_to_it_and_rolls_back() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "BEGIN").await;
    ok(
        &mut s,
        "CREATE TABLE t (id int PRIMARY KEY, at timestamptz)",
    )
    .await;
    ok(&mut s, "INSERT INTO t VALUES (1, now())").await;
    assert_eq!(ok(&mut s, "SELECT at FROM t").await.oids(), vec![1184]);
    ok(&mut s, "ROLLBACK").await;
    assert_eq!(err(&mut s, "SELECT * FROM t").await.code, "42P01");
}

/// READ COMMITTED (the default, as in Postgres): each statement sees what committed before
/// it, and a transaction that read a row another session changed since can still write.
/// REPEATABLE READ and SERIALIZABLE keep the first snapshot and refuse that write (40001).
#[tokio::test]
async fn read_committed_reads_fresh_snapshots_and_writes_after_reading() {
    let db = open();
    let mut a = db.backend.session();
    let mut b = db.backend.session();
    ok(&mut a, "CREATE TABLE t (id int PRIMARY KEY, v int)").await;
    ok(&mut a, "INSERT INTO t VALUES (1, 0)").await;

    for begin in [
        "BEGIN",
        "BEGIN ISOLATION LEVEL READ COMMITTED",
        "START TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
    ] {
        ok(&mut a, begin).await;
        let before = ok(&mut a, "SELECT v FROM t WHERE id = 1").await.value();
        ok(&mut b, "UPDATE t SET v = v + 1 WHERE id = 1").await;
        let after = ok(&mut a, "SELECT v FROM t WHERE id = 1").await.value();
        let before: i64 = before.unwrap().parse().unwrap();
        let after: i64 = after.unwrap().parse().unwrap();
        assert_eq!(
            after,
            before + 1,
            "{begin}: the second read sees b's commit"
        );
        ok(&mut b, "UPDATE t SET v = v + 1 WHERE id = 1").await;
        ok(&mut a, "UPDATE t SET v = v + 100 WHERE id = 1").await;
        assert_eq!(
            ok(&mut a, "SELECT v FROM t WHERE id = 1").await.value(),
            Some((before + 102).to_string()),
            "{begin}: the write applies to the latest row"
        );
        ok(&mut a, "COMMIT").await;
    }
    assert_eq!(
        ok(&mut b, "SELECT v FROM t WHERE id = 1").await.value(),
        Some("306".into())
    );

    for begin in [
        "BEGIN ISOLATION LEVEL REPEATABLE READ",
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
    ] {
        ok(&mut a, begin).await;
        let before = ok(&mut a, "SELECT v FROM t WHERE id = 1").await.value();
        ok(&mut b, "UPDATE t SET v = v + 1 WHERE id = 1").await;
        assert_eq!(
            ok(&mut a, "SELECT v FROM t WHERE id = 1").await.value(),
            before,
            "{begin}: the snapshot holds"
        );
        let error = err(&mut a, "UPDATE t SET v = v + 100 WHERE id = 1").await;
        assert_eq!(error.code, "40001", "{begin}: {error:?}");
        ok(&mut a, "ROLLBACK").await;
    }
    assert_eq!(
        ok(&mut b, "SELECT v FROM t WHERE id = 1").await.value(),
        Some("308".into())
    );

    // A savepoint pins the snapshot: starting over would lose it.
    ok(&mut a, "BEGIN").await;
    ok(&mut a, "SAVEPOINT s").await;
    let before = ok(&mut a, "SELECT v FROM t WHERE id = 1").await.value();
    ok(&mut b, "UPDATE t SET v = v + 1 WHERE id = 1").await;
    assert_eq!(
        ok(&mut a, "SELECT v FROM t WHERE id = 1").await.value(),
        before
    );
    assert_eq!(err(&mut a, "UPDATE t SET v = 0").await.code, "40001");
    ok(&mut a, "ROLLBACK").await;
}

fn order(priority: u64, holds_elsewhere: bool) -> Option<mycelium_protocol::LockOrder> {
    Some(mycelium_protocol::LockOrder {
        priority,
        holds_elsewhere,
    })
}

/// A node whose lock waits end only after 60 s: an error sooner is wait-die's.
fn open_with_long_lock_waits() -> Db {
    open_with(mycelium_storage::SqliteOptions {
        busy_timeout: Duration::from_secs(60),
        ..Default::default()
    })
}

/// A transaction younger than the holder of `t`'s node lock (priority 100), holding locks on
/// other nodes, asks for the lock: it dies at once, naming the reason, and rolls back.
async fn younger_holding_locks_elsewhere_dies(db: &Db) {
    let mut younger = db.backend.session();
    younger.set_lock_order(order(200, true));
    ok(&mut younger, "BEGIN").await;
    let error = err(&mut younger, "UPDATE t SET v = 2 WHERE id = 2").await;
    assert_eq!(error.code, "40001", "{error:?}");
    assert!(
        error
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("deadlock")),
        "{error:?}"
    );
    assert_eq!(ok(&mut younger, "COMMIT").await.tag, "ROLLBACK");
}

/// Wait-die on the node's write lock: a younger transaction that holds locks on other nodes
/// fails at once, naming the reason; an older one waits, and gets the lock when it is free.
#[tokio::test]
async fn a_younger_transaction_holding_locks_elsewhere_does_not_wait_for_an_older_one() {
    let db = open_with_long_lock_waits();
    let mut holder = db.backend.session();
    ok(&mut holder, "CREATE TABLE t (id int PRIMARY KEY, v int)").await;
    ok(&mut holder, "INSERT INTO t VALUES (1, 0), (2, 0), (3, 0)").await;
    holder.set_lock_order(order(100, false));
    ok(&mut holder, "BEGIN").await;
    ok(&mut holder, "UPDATE t SET v = 1 WHERE id = 1").await;

    younger_holding_locks_elsewhere_dies(&db).await;

    // Older, or holding nothing elsewhere: waits until the lock is free, then writes.
    let waiter = |priority: u64, holds_elsewhere: bool, sql: &'static str| {
        let mut session = db.backend.session();
        session.set_lock_order(order(priority, holds_elsewhere));
        tokio::spawn(async move {
            ok(&mut session, "BEGIN").await;
            let tag = run(&mut session, sql).await.map(|o| o.tag);
            ok(&mut session, "COMMIT").await;
            tag
        })
    };
    let older = waiter(50, true, "UPDATE t SET v = 3 WHERE id = 3");
    let alone = waiter(300, false, "UPDATE t SET v = 4 WHERE id = 2");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!older.is_finished() && !alone.is_finished());
    assert_eq!(ok(&mut holder, "COMMIT").await.tag, "COMMIT");
    assert_eq!(older.await.unwrap().unwrap(), "UPDATE 1");
    assert_eq!(alone.await.unwrap().unwrap(), "UPDATE 1");
    assert_eq!(
        ok(&mut holder, "SELECT id, v FROM t ORDER BY id")
            .await
            .lines(),
        vec!["1|1", "2|4", "3|3"]
    );
}

/// Every worker held by an open transaction: the pool starts another, so a statement never
/// waits for a transaction that may be waiting for its own, on another node.
#[tokio::test]
async fn the_pool_grows_when_every_worker_is_held() {
    let db = open_with(mycelium_storage::SqliteOptions {
        workers: 1,
        max_workers: 8,
        busy_timeout: Duration::from_secs(60),
        ..Default::default()
    });
    let mut setup = db.backend.session();
    ok(&mut setup, "CREATE TABLE t (id int PRIMARY KEY)").await;
    drop(setup);
    let mut open: Vec<_> = (0..8).map(|_| db.backend.session()).collect();
    for (i, s) in open.iter_mut().enumerate() {
        ok(s, "BEGIN").await;
        ok(s, &format!("SELECT count(*) + {i} FROM t")).await;
    }
    // Eight transactions hold eight workers; the next statement waits at the limit.
    let mut late = db.backend.session();
    let waiting = tokio::spawn(async move { run(&mut late, "SELECT 42").await.map(|o| o.tag) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the pool grew past max_workers");
    ok(&mut open[0], "COMMIT").await;
    assert_eq!(waiting.await.unwrap().unwrap(), "SELECT 1");
    for s in open.iter_mut().skip(1) {
        ok(s, "COMMIT").await;
    }
}

/// At `max_workers`, with every worker held by an open transaction: a statement waits
/// `busy_timeout` for one, then fails with 53300 instead of hanging (the holders may be
/// waiting on it, across nodes).
#[tokio::test]
async fn a_statement_finding_every_worker_held_fails_after_the_busy_timeout() {
    let db = open_with(mycelium_storage::SqliteOptions {
        workers: 2,
        max_workers: 2,
        busy_timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let mut setup = db.backend.session();
    ok(&mut setup, "CREATE TABLE t (id int PRIMARY KEY)").await;
    drop(setup);
    let mut a = db.backend.session();
    let mut b = db.backend.session();
    for s in [&mut a, &mut b] {
        ok(s, "BEGIN").await;
        ok(s, "SELECT count(*) FROM t").await;
    }
    let mut c = db.backend.session();
    let error = err(&mut c, "SELECT 1").await;
    assert_eq!(error.code, "53300", "{error:?}");
    assert!(error.message.contains("all 2"), "{error:?}");
    ok(&mut a, "COMMIT").await;
    assert_eq!(ok(&mut c, "SELECT 1").await.value(), Some("1".into()));
    ok(&mut b, "COMMIT").await;
}

/// A repeatable read transaction that read first takes the write lock inside its first
/// write; it is then known as the holder, and a younger transaction holding locks elsewhere
/// does not wait for it.
#[tokio::test]
async fn a_transaction_that_read_first_is_known_as_the_holder_once_it_writes() {
    let db = open_with_long_lock_waits();
    let mut holder = db.backend.session();
    ok(&mut holder, "CREATE TABLE t (id int PRIMARY KEY, v int)").await;
    ok(&mut holder, "INSERT INTO t VALUES (1, 0), (2, 0)").await;
    holder.set_lock_order(order(100, false));
    ok(&mut holder, "BEGIN ISOLATION LEVEL REPEATABLE READ").await;
    ok(&mut holder, "SELECT v FROM t WHERE id = 1").await;
    ok(&mut holder, "UPDATE t SET v = 1 WHERE id = 1").await;
    younger_holding_locks_elsewhere_dies(&db).await;
    assert_eq!(ok(&mut holder, "COMMIT").await.tag, "COMMIT");
}
