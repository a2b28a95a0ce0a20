//! `CREATE TABLE ... AS`: the proxy creates the table from the query's described columns and
//! fills it with the rows of every node, in one transaction; answers as PostgreSQL 15 does.

use tokio_postgres::SimpleQueryMessage;

use crate::harness::{Backend, Cluster, sqlstate, text_rows as rows};
use crate::processes::on_every_backend;

on_every_backend!(
    create_table_as_copies_every_node_rows,
    create_table_as_options_and_refusals,
);

/// The command tag a simple query ended with.
async fn tag(client: &tokio_postgres::Client, sql: &str) -> u64 {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::CommandComplete(rows) => Some(*rows),
            _ => None,
        })
        .expect("a command tag")
}

async fn sharded_source(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE TABLE src (id int PRIMARY KEY, name text, amount numeric(10,2), \
             at timestamptz, tags text[]) \
             WITH (mycelium.shard_keys = 'id', mycelium.shards = 6, \
             mycelium.replication_factor = 0.01); \
             INSERT INTO src SELECT i, 'n' || i, i * 1.5, \
             timestamptz '2024-01-01 00:00+00' + i * interval '1 hour', ARRAY['a', 'b'] \
             FROM generate_series(1, 20) i",
        )
        .await
        .expect("sharded source");
}

async fn create_table_as_copies_every_node_rows(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    sharded_source(&client).await;
    // The source's rows are spread over the nodes; the copy holds all of them.
    assert_eq!(
        tag(
            &client,
            "CREATE TABLE big AS SELECT id, name, amount FROM src WHERE id > 5"
        )
        .await,
        15
    );
    assert_eq!(
        rows(&client, "SELECT count(*), sum(amount), max(name) FROM big").await,
        ["15|292.50|n9"]
    );
    let columns = client
        .query(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_name = 'big' ORDER BY ordinal_position",
            &[],
        )
        .await
        .expect("columns of big");
    let columns: Vec<(String, String)> = columns.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        columns,
        [
            ("id".to_owned(), "integer".to_owned()),
            ("name".to_owned(), "text".to_owned()),
            ("amount".to_owned(), "numeric".to_owned()),
        ]
    );
    // Names given before AS, arrays and timestamps, the extended protocol.
    let copied = client
        .execute(
            "CREATE TABLE renamed (x, y) AS SELECT id, at, tags FROM src",
            &[],
        )
        .await
        .expect("create renamed");
    assert_eq!(copied, 20);
    assert_eq!(
        rows(&client, "SELECT * FROM renamed ORDER BY x LIMIT 2").await,
        [
            "1|2024-01-01 01:00:00+00|{a,b}",
            "2|2024-01-01 02:00:00+00|{a,b}"
        ]
    );
    // A placement for the new table, given in its options.
    assert_eq!(
        tag(
            &client,
            "CREATE TABLE spread WITH (mycelium.shard_keys = 'id', mycelium.shards = 6, \
             mycelium.replication_factor = 0.01) AS \
             SELECT id, name FROM src"
        )
        .await,
        20
    );
    assert_eq!(rows(&client, "SELECT count(*) FROM spread").await, ["20"]);
    // The same by hand. Both once lost rows under load: the table's policy went out in a map
    // round racing the periodic one under the same epoch, a node kept the map without it and
    // filed the new rows under the default shard. (One copy per shard in this test: a read
    // never waits for a copy to catch up.)
    client
        .batch_execute(
            "BEGIN; \
             CREATE TABLE by_hand (id int, name text) \
             WITH (mycelium.shard_keys = 'id', mycelium.shards = 6, \
             mycelium.replication_factor = 0.01); \
             INSERT INTO by_hand (id, name) SELECT id, name FROM src; \
             COMMIT",
        )
        .await
        .expect("by hand");
    assert_eq!(rows(&client, "SELECT count(*) FROM by_hand").await, ["20"]);
    let policies = rows(&client, "SHOW MYCELIUM POLICIES").await;
    assert!(
        policies
            .iter()
            .any(|p| p.starts_with("spread|") && p.contains("id")),
        "{policies:?}"
    );
}

async fn create_table_as_options_and_refusals(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    sharded_source(&client).await;
    assert_eq!(
        tag(
            &client,
            "CREATE TABLE empty AS SELECT id FROM src WITH NO DATA"
        )
        .await,
        0
    );
    assert_eq!(rows(&client, "SELECT count(*) FROM empty").await, ["0"]);
    // IF NOT EXISTS on an existing table: a notice, nothing copied.
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS empty AS SELECT id FROM src")
        .await
        .expect("if not exists");
    assert_eq!(rows(&client, "SELECT count(*) FROM empty").await, ["0"]);
    // Inside a transaction it rolls back with it.
    client
        .batch_execute("BEGIN; CREATE TABLE gone AS SELECT 1 AS a; ROLLBACK")
        .await
        .expect("rolled back");
    let error = client
        .simple_query("SELECT * FROM gone")
        .await
        .expect_err("gone");
    assert_eq!(sqlstate(&error), "42P01");
    for (sql, code) in [
        ("CREATE TABLE many (a, b, c) AS SELECT 1", "42601"),
        ("CREATE TEMP TABLE t AS SELECT 1", "0A000"),
        ("CREATE TABLE typed (a int) AS SELECT 1", "42601"),
        ("CREATE TABLE empty AS SELECT 1", "42P07"),
    ] {
        let error = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&error), code, "{sql}: {error:?}");
    }
}
