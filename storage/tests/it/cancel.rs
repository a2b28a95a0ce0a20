use std::time::{Duration, Instant};

use mycelium_protocol::{Execute, NodeSession};

use crate::util::*;

const SLOW: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100000000) SELECT count(*) FROM c";

#[tokio::test]
async fn dropping_the_stream_interrupts_the_worker() {
    let db = open_with(mycelium_storage::SqliteOptions {
        workers: 1,
        ..Default::default()
    });
    let mut s = db.backend.session();
    let stream = s.execute(Execute::simple(SLOW)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    let started = Instant::now();
    // The only worker must be free again promptly.
    let mut other = db.backend.session();
    let out = tokio::time::timeout(Duration::from_secs(5), ok(&mut other, "SELECT 1"))
        .await
        .unwrap();
    assert_eq!(out.value(), Some("1".into()));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn cancelled_statement_inside_a_transaction_aborts_it() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "BEGIN").await;
    let stream = s.execute(Execute::simple(SLOW)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(err(&mut s, "SELECT 1").await.code, "25P02");
    ok(&mut s, "ROLLBACK").await;
    assert_eq!(ok(&mut s, "SELECT 1").await.value(), Some("1".into()));
}
