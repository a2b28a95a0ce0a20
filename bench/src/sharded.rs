//! pgbench's tables sharded over Mycelium's nodes. `pgbench -i` cannot load them through the
//! proxy (it COPYs pgbench_accounts, and COPY into a table whose shards live on several nodes is
//! refused), so the bench creates them with pgbench 15's own columns plus a policy, and loads
//! the rows pgbench would with multi-row INSERTs that the proxy splits by shard.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::parse::primary_node;
use crate::pgbench::Target;

/// Hash shards per table: 16 spread 7/9 over the two nodes of the two-node setup (6 would be
/// 2/4: placement is rendezvous hashing of each shard over the nodes).
pub const SHARDS: u32 = 16;

/// Rows per INSERT statement.
const BATCH: u64 = 1000;

/// The policy of each pgbench table: every table by its own id, history with its account.
pub const POLICIES: [(&str, &str); 4] = [
    ("pgbench_accounts", "aid"),
    ("pgbench_branches", "bid"),
    ("pgbench_tellers", "tid"),
    ("pgbench_history", "aid"),
];

/// Creates pgbench's four tables with their policies and loads scale `scale` the way
/// `pgbench -i` does (balances 0, accounts' filler empty); returns how long it took.
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
    let scale = u64::from(scale);
    insert_rows(&client, "pgbench_branches (bid, bbalance)", scale, |bid| {
        format!("({bid}, 0)")
    })
    .await?;
    insert_rows(
        &client,
        "pgbench_tellers (tid, bid, tbalance)",
        scale * 10,
        |tid| format!("({tid}, {}, 0)", (tid - 1) / 10 + 1),
    )
    .await?;
    insert_rows(
        &client,
        "pgbench_accounts (aid, bid, abalance, filler)",
        scale * 100_000,
        |aid| format!("({aid}, {}, 0, '')", (aid - 1) / 100_000 + 1),
    )
    .await?;
    for (table, _) in POLICIES {
        client
            .batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await
            .with_context(|| format!("VACUUM ANALYZE {table} failed"))?;
    }
    Ok(started.elapsed())
}

/// Rows 1..=count of `table_columns`, `BATCH` to a statement.
async fn insert_rows(
    client: &tokio_postgres::Client,
    table_columns: &str,
    count: u64,
    row: impl Fn(u64) -> String,
) -> anyhow::Result<()> {
    let mut first = 1;
    while first <= count {
        let last = (first + BATCH - 1).min(count);
        let values: Vec<String> = (first..=last).map(&row).collect();
        client
            .batch_execute(&format!(
                "INSERT INTO {table_columns} VALUES {}",
                values.join(", ")
            ))
            .await
            .with_context(|| format!("loading rows {first}..={last} of {table_columns} failed"))?;
        first = last + 1;
    }
    Ok(())
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
