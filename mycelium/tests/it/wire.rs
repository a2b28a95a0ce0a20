//! The Postgres wire protocol as tokio-postgres sees it.

use crate::harness::{Cluster, sqlstate};

#[tokio::test]
async fn simple_and_prepared_queries_round_trip() {
    let cluster = Cluster::start();
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL, age integer, active boolean DEFAULT true);
             INSERT INTO users (name, age) VALUES ('ann', 31), ('bob', 42);",
        )
        .await
        .expect("create and insert");
    let rows = client
        .query(
            "SELECT id, name, age, active FROM users WHERE age > $1 ORDER BY id",
            &[&30i32],
        )
        .await
        .expect("select");
    assert_eq!(rows.len(), 2);
    let id: i64 = rows[0].get(0);
    let name: &str = rows[0].get(1);
    let active: bool = rows[1].get(3);
    assert_eq!((id, name, active), (1, "ann", true));
    let inserted = client
        .execute(
            "INSERT INTO users (name, age) VALUES ($1, $2)",
            &[&"cy", &7i32],
        )
        .await
        .expect("insert");
    assert_eq!(inserted, 1);
    let count: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 3);
}

#[tokio::test]
async fn errors_carry_postgres_sqlstates() {
    let cluster = Cluster::start();
    let client = cluster.connect().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL)")
        .await
        .expect("create");
    client
        .execute("INSERT INTO t VALUES (1, 'a')", &[])
        .await
        .expect("insert");
    let cases = [
        ("INSERT INTO t VALUES (1, 'b')", "23505"),
        ("INSERT INTO t VALUES (2, NULL)", "23502"),
        ("SELEC 1", "42601"),
        ("SELECT * FROM nope", "42P01"),
        ("SELECT nope FROM t", "42703"),
        ("SELECT 'abc'::int", "22P02"),
        ("SELECT 1 / 0", "22012"),
    ];
    for (sql, code) in cases {
        let error = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&error), code, "{sql}: {error:?}");
    }
    // The session survives every one of them.
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("alive")
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn metrics_count_queries_and_errors() {
    let cluster = Cluster::start();
    let client = cluster.connect().await;
    for _ in 0..3 {
        client.simple_query("SELECT 1").await.expect("select");
    }
    let _ = client.simple_query("SELECT * FROM missing_table").await;
    let text = cluster.metrics();
    assert!(
        text.contains("# TYPE mycelium_query_duration_seconds histogram"),
        "{text}"
    );
    assert!(cluster.metric("mycelium_queries_total{kind=\"select\"}") >= 4.0);
    assert_eq!(
        cluster.metric("mycelium_errors_total{sqlstate=\"42P01\"}"),
        1.0
    );
    assert_eq!(cluster.metric("mycelium_client_connections"), 1.0);
    // The nodes count their side too (every statement above reached one node).
    assert!(cluster.metric("mycelium_node_requests_total{kind=\"execute\"}") >= 4.0);
    assert_eq!(
        cluster.metric("mycelium_node_errors_total{sqlstate=\"42P01\"}"),
        1.0
    );
    assert!(
        text.contains("process_resident_memory_bytes"),
        "process metrics are exported"
    );
}
