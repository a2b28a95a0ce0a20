//! Statements over replicated copies: a node holds, in one table, rows of shards it is the
//! primary of and copies of others. A statement without a shard key must see each row once
//! and write only primaries' rows; a read of a shard whose primary died is served by a copy.

use std::time::{Duration, Instant};

use mycelium_router::{KeyValue, NodeInfo, NodeType, PolicyDefaults, TablePolicy, place};
use tokio_postgres::SimpleQueryMessage;

use crate::processes::{Backend, NODES, ProcessCluster};

const SHARDS: u32 = 6;
const ROWS: i64 = 60;

crate::processes::on_every_backend!(statements_see_each_copy_once);
crate::processes::on_every_backend!(alter_column_holds_on_every_backend);

/// Where the shards of `r` live (every node holds every shard: replication_factor 1).
fn placement() -> mycelium_router::TablePlacement {
    let mut policy = TablePolicy::default_for("r", &PolicyDefaults::default());
    policy.shard_keys = vec!["id".to_owned()];
    policy.shards = SHARDS;
    policy.replication_factor = 1.0;
    let infos: Vec<NodeInfo> = NODES
        .iter()
        .map(|(id, t)| NodeInfo {
            id: (*id).to_owned(),
            node_type: if *t == "miner" {
                NodeType::Miner
            } else {
                NodeType::Validator
            },
        })
        .collect();
    place(&policy, &infos).expect("placement")
}

async fn one_value(client: &tokio_postgres::Client, sql: &str) -> String {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// Waits until every node holds `expected` as `sql`'s answer.
async fn copies_converge(cluster: &ProcessCluster, sql: &str, expected: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for index in 0..NODES.len() {
        loop {
            let found = cluster.node_ints(index, sql).await;
            if found == vec![vec![expected]] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {index}: {sql} gives {found:?}, want {expected}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn statements_see_each_copy_once(backend: Backend) {
    let Some(mut cluster) = ProcessCluster::start_with(backend, "", "", "") else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE r (id bigint PRIMARY KEY, v integer NOT NULL) \
             WITH (mycelium.shard_keys = 'id', mycelium.shards = {SHARDS}, \
             mycelium.replication_factor = 1)"
        ))
        .await
        .expect("create a table every node holds");
    let values: Vec<String> = (1..=ROWS)
        .map(|id| format!("({id}, {})", id * 10))
        .collect();
    client
        .batch_execute(&format!(
            "INSERT INTO r (id, v) VALUES {}",
            values.join(", ")
        ))
        .await
        .expect("insert");
    let sum: i64 = (1..=ROWS).map(|id| id * 10).sum();
    // Copies fill through replication, on either backend.
    copies_converge(&cluster, "SELECT count(*) FROM r", ROWS).await;

    assert_eq!(
        one_value(&client, "SELECT count(*) FROM r").await,
        ROWS.to_string()
    );
    assert_eq!(
        one_value(&client, "SELECT sum(v) FROM r").await,
        sum.to_string()
    );
    let ids = client
        .query("SELECT id FROM r ORDER BY id", &[])
        .await
        .expect("ordered scatter");
    let ids: Vec<i64> = ids.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, (1..=ROWS).collect::<Vec<_>>());
    let joined = one_value(
        &client,
        "SELECT count(*) FROM r a JOIN r b ON a.id = b.id WHERE a.v = b.v",
    )
    .await;
    assert_eq!(joined, ROWS.to_string(), "a colocated self-join");

    // A join with an unsharded table runs on each node against its own copy of that table.
    client
        .batch_execute(
            "CREATE TABLE labels (class integer PRIMARY KEY, label text NOT NULL) \
             WITH (mycelium.replication_factor = 1); \
             INSERT INTO labels VALUES (0, 'low'), (1, 'high')",
        )
        .await
        .expect("an unsharded table on every node");
    copies_converge(&cluster, "SELECT count(*) FROM labels", 2).await;
    let join = "SELECT count(*) FROM r JOIN labels ON labels.class = r.v / 1000 \
                WHERE labels.label = 'low'";
    assert_eq!(one_value(&client, join).await, ROWS.to_string(), "{join}");

    // A write without the key changes every row once, on its primary only.
    let updated = client
        .execute("UPDATE r SET v = v + 1 WHERE v > 0", &[])
        .await
        .expect("update without the key");
    assert_eq!(updated, ROWS as u64);
    assert_eq!(
        one_value(&client, "SELECT sum(v) FROM r").await,
        (sum + ROWS).to_string()
    );
    copies_converge(&cluster, "SELECT sum(v) FROM r", sum + ROWS).await;
    {
        // Every primary of `r` reports its two secondaries caught up; no conflicts.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let report = client
                .simple_query("SHOW MYCELIUM REPLICATION")
                .await
                .expect("show replication");
            let links: Vec<(String, String, String)> = report
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(row)
                        if row.get("table_name") == Some("r")
                            && row.get("role") == Some("primary") =>
                    {
                        Some((
                            row.get("shard").unwrap_or("").to_owned(),
                            row.get("state").unwrap_or("").to_owned(),
                            row.get("lag_entries").unwrap_or("").to_owned(),
                        ))
                    }
                    _ => None,
                })
                .collect();
            let caught_up = links.len() == 2 * SHARDS as usize
                && links
                    .iter()
                    .all(|(_, state, lag)| state == "connected" && lag == "0");
            if caught_up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replication of r never reported caught up: {links:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let conflicts = client
            .simple_query("SHOW MYCELIUM CONFLICTS")
            .await
            .expect("show conflicts");
        assert!(
            !conflicts
                .iter()
                .any(|m| matches!(m, SimpleQueryMessage::Row(_))),
            "no conflicts without concurrent writers"
        );
    }
    let deleted = client
        .execute("DELETE FROM r WHERE v > 300", &[])
        .await
        .expect("delete without the key");
    let left: i64 = (1..=ROWS).filter(|id| id * 10 < 300).count() as i64;
    assert_eq!(deleted, (ROWS - left) as u64);
    assert_eq!(
        one_value(&client, "SELECT count(*) FROM r").await,
        left.to_string()
    );
    copies_converge(&cluster, "SELECT count(*) FROM r", left).await;

    // The primary of id 1's shard dies: a read of that row is served by a copy.
    let placement = placement();
    let shard = placement.policy.shard_of(&[KeyValue::Int(1)]);
    let primary = placement.shards[shard as usize].primary().to_owned();
    let victim = NODES
        .iter()
        .position(|(id, _)| *id == primary)
        .expect("primary index");
    cluster.nodes[victim].kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(messages) = client.simple_query("SELECT v FROM r WHERE id = 1").await {
            let value = messages.iter().find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            });
            if value.as_deref() == Some("11") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no failover read of shard {shard} after {primary} died"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        one_value(&client, "SELECT count(*) FROM r").await,
        left.to_string()
    );
}

/// ALTER COLUMN on a table without a policy, as a migration tool sends it: each node runs it
/// (a SQLite node rebuilds the table), and the new default, NOT NULL and type hold on every
/// backend (copies converging is tested in the storage crate's replication tests). On a table
/// with a policy, TYPE and SET NOT NULL are refused: its copies get the statement and the rows
/// through different logs.
async fn alter_column_holds_on_every_backend(backend: Backend) {
    let Some(cluster) = ProcessCluster::start_with(backend, "", "", "") else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE jobs (id integer PRIMARY KEY, state text, prio integer); \
             INSERT INTO jobs VALUES (1, 'a', NULL), (2, 'bb', 2); \
             CREATE TABLE placed (id integer PRIMARY KEY, prio integer) \
             WITH (mycelium.replication_factor = 1)",
        )
        .await
        .expect("tables without and with a policy");
    for sql in [
        "ALTER TABLE placed ALTER COLUMN prio SET NOT NULL",
        "ALTER TABLE placed ALTER COLUMN prio TYPE bigint",
    ] {
        let error = client.batch_execute(sql).await.expect_err(sql);
        assert_eq!(
            crate::harness::sqlstate(&error),
            "0A000",
            "{sql}: {error:?}"
        );
    }
    for sql in [
        "ALTER TABLE jobs ALTER COLUMN prio SET DEFAULT 9",
        "INSERT INTO jobs (id, state) VALUES (3, 'c')",
        "UPDATE jobs SET prio = 0 WHERE prio IS NULL",
    ] {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    // The proxy runs DDL on every node, and each checks its own rows: a copy that has not
    // applied the UPDATE yet still holds the NULL and refuses SET NOT NULL (23502).
    copies_converge(&cluster, "SELECT count(*) FROM jobs WHERE prio IS NULL", 0).await;
    for sql in [
        "ALTER TABLE jobs ALTER COLUMN prio SET NOT NULL",
        "ALTER TABLE jobs ALTER COLUMN state TYPE varchar(20)",
        "ALTER TABLE jobs ALTER COLUMN prio TYPE bigint",
    ] {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    for (sql, code) in [
        (
            "INSERT INTO jobs (id, state, prio) VALUES (4, 'd', NULL)",
            "23502",
        ),
        (
            "UPDATE jobs SET state = repeat('x', 21) WHERE id = 1",
            "22001",
        ),
    ] {
        let error = client.batch_execute(sql).await.expect_err(sql);
        assert_eq!(crate::harness::sqlstate(&error), code, "{sql}: {error:?}");
    }
    for (sql, expected) in [
        ("SELECT count(*) FROM jobs", "3"),
        ("SELECT count(*) FROM jobs WHERE prio = 9", "1"),
        ("SELECT count(*) FROM jobs WHERE prio = 0", "1"),
        ("SELECT max(length(state)) FROM jobs", "2"),
    ] {
        assert_eq!(one_value(&client, sql).await, expected, "{sql}");
    }
}
