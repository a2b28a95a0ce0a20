//! pgbench's tables sharded over Mycelium's nodes. `pgbench -i` would create them without a
//! policy, so the bench creates them with pgbench 15's own columns plus a policy, then lets
//! `pgbench -i -I gv` generate the rows (COPY, which the proxy routes row by row to the shards)
//! and vacuum.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::parse::primary_node;
use crate::pgbench::Target;

/// Hash shards per table: 16 spread 7/9 over the two nodes of the two-node setup (6 would be
/// 2/4: placement is rendezvous hashing of each shard over the nodes).
pub const SHARDS: u32 = 16;

/// The policy of each pgbench table: every table by its own id, history with its account.
pub const POLICIES: [(&str, &str); 4] = [
    ("pgbench_accounts", "aid"),
    ("pgbench_branches", "bid"),
    ("pgbench_tellers", "tid"),
    ("pgbench_history", "aid"),
];

/// Creates pgbench's four tables with their policies and loads scale `scale` with pgbench;
/// returns how long it took.
pub async fn initialize(target: &Target, scale: u32) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let client = target.connect().await?;
    let with =
        |key: &str| format!("WITH (mycelium.shard_keys = '{key}', mycelium.shards = {SHARDS})");
    let ddl = [
        format!(
            "CREATE TABLE pgbench_branches (bid int NOT NULL PRIMARY KEY, bbalance int, \
             filler char(88)) {}",
            with("bid")
        ),
        format!(
            "CREATE TABLE pgbench_tellers (tid int NOT NULL PRIMARY KEY, bid int, tbalance int, \
             filler char(84)) {}",
            with("tid")
        ),
        format!(
            "CREATE TABLE pgbench_accounts (aid int NOT NULL PRIMARY KEY, bid int, abalance int, \
             filler char(84)) {}",
            with("aid")
        ),
        format!(
            "CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, \
             mtime timestamp, filler char(22)) {}",
            with("aid")
        ),
    ];
    for statement in &ddl {
        client
            .batch_execute(statement)
            .await
            .with_context(|| format!("{statement} failed"))?;
    }
    // pgbench's own data generation (TRUNCATE and COPY, in one transaction) and vacuum: COPY
    // routes each row to its shard.
    crate::pgbench::initialize_steps(target, scale, Some("gv")).await?;
    for (table, _) in POLICIES {
        client
            .batch_execute(&format!("ANALYZE {table}"))
            .await
            .with_context(|| format!("ANALYZE {table} failed"))?;
    }
    Ok(started.elapsed())
}

/// `SHOW MYCELIUM SHARDS` for one table: the primary node of each shard, by shard number.
pub async fn primaries(
    client: &tokio_postgres::Client,
    table: &str,
) -> anyhow::Result<Vec<(u32, String)>> {
    let mut shards = Vec::new();
    for message in client
        .simple_query("SHOW MYCELIUM SHARDS")
        .await
        .context("SHOW MYCELIUM SHARDS failed")?
    {
        let tokio_postgres::SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        if row.get(0) != Some(table) {
            continue;
        }
        let shard = row
            .get(1)
            .and_then(|s| s.parse().ok())
            .context("SHOW MYCELIUM SHARDS: no shard number")?;
        let node = row
            .get(3)
            .and_then(primary_node)
            .with_context(|| format!("SHOW MYCELIUM SHARDS: no primary for shard {shard}"))?;
        shards.push((shard, node.to_owned()));
    }
    anyhow::ensure!(
        !shards.is_empty(),
        "SHOW MYCELIUM SHARDS lists no shard of {table}"
    );
    shards.sort();
    Ok(shards)
}

/// "n1: 7 shards, n2: 9 shards" from [`primaries`].
pub fn shards_per_node(primaries: &[(u32, String)]) -> String {
    let mut nodes: Vec<(&str, usize)> = Vec::new();
    for (_, node) in primaries {
        match nodes.iter_mut().find(|(n, _)| n == node) {
            Some((_, count)) => *count += 1,
            None => nodes.push((node, 1)),
        }
    }
    nodes.sort();
    nodes
        .iter()
        .map(|(node, count)| format!("{node}: {count} shards"))
        .collect::<Vec<_>>()
        .join(", ")
}
