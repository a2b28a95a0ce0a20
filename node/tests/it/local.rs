//! A node reached in-process through `LocalLink`, as `mycelium up`'s proxy reaches its nodes:
//! what the node's server does between a proxy and a session (epoch checks, errors inside the
//! reply stream, metrics) happens here too.

use mycelium_config::StorageConfig;
use mycelium_node::{LocalLink, Node};
use mycelium_protocol::{DbError, Execute, NodeLink, NodeSession, Reply, ReplyStream, STALE_MAP};
use std::sync::Arc;

use crate::map::map;

/// A statement's rows as texts, or its error.
async fn run(session: &mut dyn NodeSession, sql: &str) -> Result<Vec<String>, DbError> {
    let stream = session
        .execute(Execute::simple(sql))
        .await
        .expect("a local statement's errors arrive in its stream");
    drain(stream).await
}

async fn drain(mut stream: ReplyStream) -> Result<Vec<String>, DbError> {
    let mut rows = Vec::new();
    while let Some(reply) = stream.recv().await {
        match reply? {
            Reply::Rows(batch) => {
                for row in batch.iter() {
                    let values: Vec<String> = row
                        .into_iter()
                        .map(|v| v.map_or("NULL".to_owned(), |b| String::from_utf8_lossy(b).into()))
                        .collect();
                    rows.push(values.join("|"));
                }
            }
            Reply::Columns(_) => {}
            Reply::Complete { .. } => return Ok(rows),
        }
    }
    panic!("the stream ended without Complete");
}

/// One counter of the process's metrics (0 when the series does not exist yet).
fn metric(name: &str, label: (&str, &str)) -> f64 {
    prometheus::gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == label.0 && l.value() == label.1)
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

#[tokio::test]
async fn a_local_link_checks_epochs_streams_errors_and_counts_requests() {
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(
        Node::open_sqlite(
            "n1",
            false,
            &dir.path().join("n1.sqlite"),
            &StorageConfig::default(),
        )
        .unwrap(),
    );
    node.exchange_map(Some(map(5))).await.unwrap();
    let link = LocalLink::new(node.clone());
    assert_eq!(link.node_id(), "n1");
    let mut session = link.open_session().await.unwrap();

    run(
        session.as_mut(),
        "CREATE TABLE items (id int PRIMARY KEY, name text)",
    )
    .await
    .unwrap();
    let executed = metric("mycelium_node_requests_total", ("kind", "execute"));
    let rows = metric("mycelium_node_rows_total", ("node", "n1"));
    run(
        session.as_mut(),
        "INSERT INTO items VALUES (1, 'one'), (2, 'two')",
    )
    .await
    .unwrap();
    assert_eq!(
        run(session.as_mut(), "SELECT id, name FROM items ORDER BY id")
            .await
            .unwrap(),
        ["1|one", "2|two"]
    );
    // Requests and rows are counted as the node's server counts them; other tests of this
    // binary may count too, so at least.
    assert!(metric("mycelium_node_requests_total", ("kind", "execute")) >= executed + 2.0);
    assert!(metric("mycelium_node_rows_total", ("node", "n1")) >= rows + 2.0);

    // A backend error comes back in the stream, with its SQLSTATE, and is counted.
    let missing = metric("mycelium_node_errors_total", ("sqlstate", "42P01"));
    let error = run(session.as_mut(), "SELECT * FROM nothing_here")
        .await
        .unwrap_err();
    assert_eq!(error.code, "42P01");
    assert!(metric("mycelium_node_errors_total", ("sqlstate", "42P01")) >= missing + 1.0);

    // A statement routed by an older map than the node's is refused before it runs...
    session.set_map_epoch(4);
    let stale = run(session.as_mut(), "INSERT INTO items VALUES (3, 'three')")
        .await
        .unwrap_err();
    assert_eq!(stale.code, "40001");
    assert!(stale.message.starts_with(STALE_MAP), "{}", stale.message);
    // ...unless it belongs to a transaction that began under the current map.
    session.set_map_epoch(5);
    run(session.as_mut(), "BEGIN").await.unwrap();
    session.set_map_epoch(4);
    run(session.as_mut(), "INSERT INTO items VALUES (3, 'three')")
        .await
        .unwrap();
    assert!(session.in_transaction());
    run(session.as_mut(), "COMMIT").await.unwrap();
    assert!(!session.in_transaction());
    session.set_map_epoch(5);

    // A session dropped inside a transaction rolls it back, as a closed connection does.
    run(session.as_mut(), "BEGIN").await.unwrap();
    run(session.as_mut(), "INSERT INTO items VALUES (4, 'four')")
        .await
        .unwrap();
    drop(session);
    let mut session = link.open_session().await.unwrap();
    assert_eq!(
        run(session.as_mut(), "SELECT count(*) FROM items")
            .await
            .unwrap(),
        ["3"]
    );

    // A statement whose replies nobody reads to the end is counted when they are dropped.
    let executed = metric("mycelium_node_requests_total", ("kind", "execute"));
    let stream = session
        .execute(Execute::simple("SELECT name FROM items"))
        .await
        .unwrap();
    drop(stream);
    assert!(metric("mycelium_node_requests_total", ("kind", "execute")) >= executed + 1.0);
    drop(session);
    node.shutdown();
}
