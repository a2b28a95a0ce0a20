//! The cluster map: the proxy gives it to every node, nodes keep it on disk and report the
//! shards it places on them, and a policy set through one proxy reaches another proxy through
//! the nodes' map, without a restart.

use std::time::{Duration, Instant};

use mycelium_protocol::ClusterMap;
use tokio_postgres::SimpleQueryMessage;

use crate::processes::{Backend, Member, ProcessCluster, free_port};

async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Columns of `SHOW MYCELIUM NODES` this test reads.
const PRIMARY_SHARDS: usize = 3;
const SHARDS: usize = 4;
const MAP_EPOCH: usize = 9;
const REPORTED_PRIMARY_SHARDS: usize = 10;
const REPORTED_SHARDS: usize = 11;

/// Waits until every node reports the same map epoch, at least `above + 1`, and the shards
/// the proxy places on it; returns that epoch.
async fn nodes_agree(client: &tokio_postgres::Client, above: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let nodes = rows(client, "SHOW MYCELIUM NODES").await;
        let epochs: Vec<u64> = nodes
            .iter()
            .map(|r| r[MAP_EPOCH].parse().unwrap_or(0))
            .collect();
        let agree = epochs.iter().all(|e| *e == epochs[0] && *e > above)
            && nodes.iter().all(|r| {
                r[PRIMARY_SHARDS] == r[REPORTED_PRIMARY_SHARDS] && r[SHARDS] == r[REPORTED_SHARDS]
            });
        if agree {
            return epochs[0];
        }
        assert!(
            Instant::now() < deadline,
            "nodes never agreed on a map above epoch {above}: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A second proxy over the same nodes, on a port of its own.
fn second_proxy(cluster: &ProcessCluster) -> (Member, u16) {
    let port = free_port();
    let first = std::fs::read_to_string(cluster.dir.path().join("proxy.toml")).expect("config");
    let second = first
        .replace(
            &format!("listen = \"127.0.0.1:{}\"", cluster.port),
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(
            &cluster.dir.path().join("proxy").display().to_string(),
            &cluster.dir.path().join("proxy2").display().to_string(),
        );
    let file = cluster.dir.path().join("proxy2.toml");
    std::fs::write(&file, second).expect("second proxy config");
    let member = Member::start(
        &[
            "proxy",
            "--config",
            &file.to_string_lossy(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    (member, port)
}

/// Waits (10 s at most) until `client`'s proxy lists `table`'s policy with `shards` shards.
async fn sees_policy(client: &tokio_postgres::Client, table: &str, shards: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let policies = rows(client, "SHOW MYCELIUM POLICIES").await;
        if policies
            .iter()
            .any(|r| r[0] == table && r[2] == shards.to_string())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy never saw the policy of {table}: {policies:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// 150 rows into `numbered` through one proxy, numbered by it; their ids.
async fn insert_numbered(client: &tokio_postgres::Client, by: i32) -> Vec<i64> {
    let mut ids = Vec::new();
    for _ in 0..150 {
        let row = client
            .query_one(
                "INSERT INTO numbered (by_proxy) VALUES ($1) RETURNING id",
                &[&by],
            )
            .await
            .expect("insert a numbered row");
        ids.push(row.get::<_, i64>(0));
    }
    ids
}

#[tokio::test]
async fn map_reaches_every_node_and_every_proxy() {
    let Some(mut cluster) = ProcessCluster::start_with(Backend::Mixed, "", "", "") else {
        return;
    };
    let client = cluster.connect().await;
    let first = nodes_agree(&client, 0).await;

    let (mut proxy2, port2) = second_proxy(&cluster);
    let (client2, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port2} user=mycelium password=mycelium dbname=mycelium"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect to the second proxy");
    tokio::spawn(connection);
    // Same configuration: the second proxy joins the map it finds.
    assert_eq!(nodes_agree(&client2, 0).await, first);

    client
        .batch_execute(
            "CREATE TABLE mapped (id bigint PRIMARY KEY, v text) \
             WITH (mycelium.shard_keys = 'id', mycelium.shards = 5)",
        )
        .await
        .expect("create a sharded table");
    let second = nodes_agree(&client, first).await;
    assert!(second > first);

    // The second proxy routes by the new policy without a restart.
    sees_policy(&client2, "mapped", 5).await;
    client2
        .batch_execute("INSERT INTO mapped VALUES (1, 'one'), (2, 'two'), (3, 'three')")
        .await
        .expect("insert through the second proxy, naming no columns");
    let count = rows(&client, "SELECT count(*) FROM mapped").await;
    assert_eq!(count, vec![vec!["3".to_owned()]]);

    // Both proxies number a sharded bigserial table from the same counters, concurrently:
    // every row gets its own id.
    client
        .batch_execute(
            "CREATE TABLE numbered (id bigserial PRIMARY KEY, by_proxy int) \
             WITH (mycelium.shard_keys = 'id', mycelium.shards = 5)",
        )
        .await
        .expect("create a sharded serial table");
    sees_policy(&client2, "numbered", 5).await;
    let (mut ids, ids2) = tokio::join!(insert_numbered(&client, 1), insert_numbered(&client2, 2));
    ids.extend(ids2);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 300, "ids repeated across proxies");
    let stored = rows(&client, "SELECT count(*), count(id) FROM numbered").await;
    assert_eq!(stored, vec![vec!["300".to_owned(), "300".to_owned()]]);

    // A user created through the first proxy logs in through the second without a restart.
    client
        .batch_execute("CREATE USER mapped_user WITH LOGIN PASSWORD 'secret-1'")
        .await
        .expect("create a user");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let login = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={port2} user=mapped_user password=secret-1 dbname=mycelium"
            ),
            tokio_postgres::NoTls,
        )
        .await;
        match login {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the second proxy never let the new user in: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The new user changed the map's roles fingerprint: a newer epoch.
    let third = nodes_agree(&client, second).await;

    // Each node keeps the map on disk, so a restarted node knows its shards at once.
    for (id, _) in crate::processes::NODES {
        let file = cluster.dir.path().join(format!("{id}.sqlite.map"));
        let bytes = std::fs::read(&file).expect("map file");
        let map = ClusterMap::decode(&bytes).expect("decodes");
        assert_eq!(map.epoch, third, "{}", file.display());
        assert!(map.policies.iter().any(|p| p.table == "mapped"));
    }
    cluster.restart_node(1, &[]);
    let client = cluster.connect().await;
    assert_eq!(nodes_agree(&client, first).await, third);
    proxy2.kill();
}
