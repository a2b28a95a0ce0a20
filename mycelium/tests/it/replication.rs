//! WAL replication between node processes, on SQLite, PostgreSQL and mixed nodes where the
//! scenario is the same on every backend (rows with backend-specific types are compared
//! across backends in `pg_replication`): every copy of a shard ends up with exactly the
//! primary's rows, read straight from the nodes' files and databases; a secondary killed
//! mid-stream catches up from the log, or from a snapshot when the log was truncated; with
//! `synchronous_replicas = 1` every acknowledged commit survives the primary's SIGKILL and is
//! served by the copy an operator promotes, which the old primary rejoins; across a partition
//! (relays between the nodes, cut) writes go on at the primary and, after a promotion, at the
//! promoted copy: healed, every copy converges and the concurrent writes are recorded as
//! conflicts.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use mycelium_router::{
    KeyValue, NodeInfo, NodeType, PolicyDefaults, Promotion, TablePlacement, TablePolicy, place,
};
use rusqlite::types::Value;
use tokio_postgres::SimpleQueryMessage;

use crate::processes::{Backend, NODES, ProcessCluster, free_port};
use crate::relay::Relay;

/// Heartbeats often, so lag and silence are noticed quickly in tests.
const FAST: &str = "[replication]\nheartbeat_interval_ms = 200\n";
const CONVERGE: Duration = Duration::from_secs(30);

fn infos() -> Vec<NodeInfo> {
    NODES
        .iter()
        .map(|(id, t)| NodeInfo {
            id: (*id).to_owned(),
            node_type: if *t == "miner" {
                NodeType::Miner
            } else {
                NodeType::Validator
            },
        })
        .collect()
}

/// Where a table sharded by `id` lives.
fn sharded(table: &str, shards: u32, replication_factor: f64) -> TablePlacement {
    let mut policy = TablePolicy::default_for(table, &PolicyDefaults::default());
    policy.shard_keys = vec!["id".to_owned()];
    policy.shards = shards;
    policy.replication_factor = replication_factor;
    place(&policy, &infos()).expect("placement")
}

/// Where the tables without a policy live (the cluster's default policy).
fn default_group() -> TablePlacement {
    TablePlacement::of_table(
        TablePlacement::DEFAULT_GROUP,
        None,
        &PolicyDefaults::default(),
        &infos(),
    )
    .expect("placement")
}

/// `placement` with shard 0 led by `node` under `epoch`, as a promotion leaves it.
fn promoted(mut placement: TablePlacement, node: &str, epoch: u64) -> TablePlacement {
    let group = placement.group.clone();
    placement.promote(&[Promotion {
        group,
        shard: 0,
        node: node.to_owned(),
        epoch,
    }]);
    placement
}

/// The text rows of a simple query.
async fn text_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("").to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// `SHOW MYCELIUM SHARDS`' nodes and epoch of shard 0 of `table`.
async fn shard_zero(client: &tokio_postgres::Client, table: &str) -> (String, String) {
    text_rows(client, "SHOW MYCELIUM SHARDS")
        .await
        .into_iter()
        .find(|row| row[0] == table && row[1] == "0")
        .map(|row| (row[3].clone(), row[4].clone()))
        .unwrap_or_else(|| panic!("no shard 0 of {table}"))
}

fn index_of(node: &str) -> usize {
    NODES
        .iter()
        .position(|(id, _)| *id == node)
        .expect("a node of the cluster")
}

type Rows = Vec<Vec<Value>>;

/// Every row of `table` in node `index`'s own database (its SQLite file or PostgreSQL
/// database), by id; empty when the table is missing.
async fn file_rows(cluster: &ProcessCluster, index: usize, table: &str) -> Rows {
    cluster
        .node_values(index, &format!("SELECT * FROM {table} ORDER BY id"))
        .await
}

/// The rows of each shard of a table sharded by its first column.
fn by_shard(rows: Rows, placement: &TablePlacement) -> BTreeMap<u32, Rows> {
    let mut shards: BTreeMap<u32, Rows> = BTreeMap::new();
    for row in rows {
        let Some(Value::Integer(id)) = row.first() else {
            panic!("row without an integer id: {row:?}");
        };
        let shard = placement.policy.shard_of(&[KeyValue::Int(*id)]);
        shards.entry(shard).or_default().push(row);
    }
    shards
}

/// Waits until every copy of every shard of `table` holds exactly its primary's rows, and
/// the primaries hold `expected` rows in all; returns the rows by shard.
async fn converged(
    cluster: &ProcessCluster,
    table: &str,
    placement: &TablePlacement,
    expected: usize,
) -> BTreeMap<u32, Rows> {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let mut files: Vec<BTreeMap<u32, Rows>> = Vec::with_capacity(NODES.len());
        for i in 0..NODES.len() {
            files.push(by_shard(file_rows(cluster, i, table).await, placement));
        }
        let mut problems = Vec::new();
        let mut total = 0;
        let mut primaries = BTreeMap::new();
        for shard in &placement.shards {
            let primary = &files[index_of(shard.primary())];
            let rows = primary.get(&shard.shard).cloned().unwrap_or_default();
            total += rows.len();
            for copy in shard.replicas.iter().skip(1) {
                let held = files[index_of(&copy.node)]
                    .get(&shard.shard)
                    .cloned()
                    .unwrap_or_default();
                if held != rows {
                    problems.push(format!(
                        "{table}/{} on {}: {} rows, primary {} has {}",
                        shard.shard,
                        copy.node,
                        held.len(),
                        shard.primary(),
                        rows.len()
                    ));
                }
            }
            primaries.insert(shard.shard, rows);
        }
        if total != expected {
            problems.push(format!(
                "{table}: {total} rows on the primaries, want {expected}"
            ));
        }
        if problems.is_empty() {
            return primaries;
        }
        assert!(
            Instant::now() < deadline,
            "copies did not converge:\n{}\npositions:\n{}",
            problems.join("\n"),
            positions(cluster)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What each SQLite node holds of each shard's logs, for failure messages.
fn positions(cluster: &ProcessCluster) -> String {
    let mut out = String::new();
    for (index, (id, _)) in NODES.iter().enumerate() {
        if cluster.backend.on_postgres(index) {
            continue;
        }
        let db = rusqlite::Connection::open_with_flags(
            cluster.node_file(NODES[index].0),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open node file");
        let Ok(mut stmt) = db.prepare(
            "SELECT shard_table || '/' || shard || ' ' || origin || ':' || sequence \
             FROM __mycelium_applied ORDER BY 1",
        ) else {
            continue;
        };
        let rows: Vec<String> = stmt
            .query_map([], |row| row.get(0))
            .expect("positions")
            .collect::<Result<_, _>>()
            .expect("positions");
        out.push_str(&format!("{id}: {}\n", rows.join(", ")));
    }
    out
}

async fn count(client: &tokio_postgres::Client, table: &str) -> usize {
    let row = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count");
    usize::try_from(row.get::<_, i64>(0)).expect("count")
}

/// A node's `/metrics` body (its port is in the node's ready line).
fn metrics_of(cluster: &ProcessCluster, index: usize) -> String {
    let line = &cluster.nodes[index].first_line;
    let port: u16 = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no metrics port in {line:?}"));
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).expect("response");
    body
}

/// The value of the sample whose line starts with `series`.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn replicas_hold_identical_rows() {
    let cluster =
        ProcessCluster::start_with(Backend::Sqlite, "", FAST, "").expect("a SQLite cluster");
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE acc (id bigint PRIMARY KEY, balance integer NOT NULL, note text, \
               at timestamptz NOT NULL DEFAULT now(), r double precision DEFAULT random()) \
             WITH (mycelium.shard_keys = 'id', mycelium.shards = 4, \
               mycelium.replication_factor = 1);
             CREATE TABLE plain (id serial PRIMARY KEY, v text, \
               at timestamptz NOT NULL DEFAULT now(), r double precision DEFAULT random());
             CREATE TABLE reborn (id integer PRIMARY KEY, old text);",
        )
        .await
        .expect("schema");
    let values: Vec<String> = (1..=60)
        .map(|id| format!("({id}, {}, 'n{id}')", id * 10))
        .collect();
    client
        .batch_execute(&format!(
            "INSERT INTO acc (id, balance, note) VALUES {};
             UPDATE acc SET balance = balance + 1, r = random() WHERE id % 3 = 0;
             UPDATE acc SET at = now(), note = NULL WHERE id = 5;
             DELETE FROM acc WHERE id % 7 = 0;
             INSERT INTO plain (v) VALUES ('a'), ('b'), ('c'), ('d'), ('e');
             UPDATE plain SET v = v || '!', r = random() WHERE id % 2 = 0;
             DELETE FROM plain WHERE v = 'c';
             BEGIN;
             INSERT INTO plain (v) VALUES ('in a transaction');
             UPDATE acc SET balance = 0 WHERE id = 1;
             COMMIT;
             INSERT INTO reborn VALUES (1, 'first life');
             DROP TABLE reborn;
             CREATE TABLE reborn (id integer PRIMARY KEY, new text NOT NULL);
             INSERT INTO reborn VALUES (2, 'second life');",
            values.join(", ")
        ))
        .await
        .expect("workload");
    for id in 61i64..=70 {
        client
            .execute(
                "INSERT INTO acc (id, balance, note) VALUES ($1, $2, 'one by one')",
                &[&id, &(id as i32)],
            )
            .await
            .expect("insert with parameters");
    }

    let acc = sharded("acc", 4, 1.0);
    let expected = count(&client, "acc").await;
    assert_eq!(expected, 62, "70 inserted, ids 7 to 56 by 7 deleted");
    let shards = converged(&cluster, "acc", &acc, expected).await;
    assert_eq!(shards.len(), 4, "rows on every shard");

    let group = default_group();
    assert_eq!(group.shards[0].replicas.len(), 2, "two copies by default");
    let expected = count(&client, "plain").await;
    assert_eq!(expected, 5);
    converged(&cluster, "plain", &group, expected).await;
    let reborn = converged(&cluster, "reborn", &group, 1).await;
    assert_eq!(
        reborn[&0],
        vec![vec![
            Value::Integer(2),
            Value::Text("second life".to_owned())
        ]],
        "the replayed DROP TABLE did not drop the table created after it"
    );
    let holder = group.shards[0].primary().to_owned();
    let outsider = (0..NODES.len())
        .find(|&i| !group.shards[0].holds(NODES[i].0))
        .expect("a node without the default group");
    assert!(
        file_rows(&cluster, outsider, "plain").await.is_empty(),
        "{} holds no copy of the default group, only its schema",
        NODES[outsider].0
    );
    // The primary reports its secondary caught up, and its log's size.
    let copy = &group.shards[0].replicas[1].node;
    let deadline = Instant::now() + CONVERGE;
    loop {
        let metrics = metrics_of(&cluster, index_of(&holder));
        let shipped = sample(
            &metrics,
            &format!("mycelium_replication_entries_shipped_total{{node=\"{holder}\"}}"),
        );
        let lag = format!(
            "mycelium_replication_lag_entries{{node=\"{holder}\",peer=\"{copy}\",shard=\"__default/0\"}} 0"
        );
        let wal = sample(
            &metrics,
            &format!("mycelium_wal_entries{{node=\"{holder}\",shard=\"__default/0\"}}"),
        );
        if shipped > 0.0 && wal > 0.0 && metrics.lines().any(|l| l == lag) {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes rows `ids` one statement at a time, each committed before the next.
async fn write(client: &tokio_postgres::Client, ids: std::ops::Range<i64>) {
    for id in ids {
        client
            .execute(
                "INSERT INTO stream (id, v) VALUES ($1, $2)",
                &[&id, &format!("row {id}")],
            )
            .await
            .unwrap_or_else(|e| panic!("insert {id}: {e}"));
    }
}

/// A node that holds copies of `stream`'s shards but leads none of them.
fn secondary_only(placement: &TablePlacement) -> usize {
    (0..NODES.len())
        .find(|&i| {
            let id = NODES[i].0;
            placement
                .shards
                .iter()
                .all(|s| s.holds(id) && s.primary() != id)
        })
        .expect("with 2 shards on 3 nodes, one node leads none")
}

/// Kills a secondary in the middle of a stream of writes and restarts it; returns how many
/// snapshots it took to catch up (`None` when PostgreSQL is skipped).
async fn kill_a_secondary_mid_stream(backend: Backend, node_toml: &str) -> Option<f64> {
    let mut cluster = ProcessCluster::start_with(backend, "", node_toml, "")?;
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE stream (id bigint PRIMARY KEY, v text NOT NULL) \
             WITH (mycelium.shard_keys = 'id', mycelium.shards = 2, \
               mycelium.replication_factor = 1)",
        )
        .await
        .expect("schema");
    let placement = sharded("stream", 2, 1.0);
    let victim = secondary_only(&placement);
    write(&client, 0..40).await;
    converged(&cluster, "stream", &placement, 40).await;
    let writer = {
        let client = cluster.connect().await;
        tokio::spawn(async move { write(&client, 40..200).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    cluster.nodes[victim].kill();
    writer.await.expect("writer");
    // Past the heartbeat, so the primaries' upkeep truncates what retention lets go.
    tokio::time::sleep(Duration::from_millis(600)).await;
    cluster.restart_node(victim, &[]);
    converged(&cluster, "stream", &placement, 200).await;
    // Counters follow at the next heartbeat.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = sample(
        &metrics_of(&cluster, victim),
        &format!(
            "mycelium_replication_snapshots_total{{direction=\"received\",node=\"{}\"}}",
            NODES[victim].0
        ),
    );
    // The restarted node serves reads of its copies again with every row.
    assert_eq!(count(&client, "stream").await, 200);
    Some(received)
}

crate::processes::on_every_backend!(
    a_killed_secondary_catches_up_from_the_log,
    a_secondary_behind_a_truncated_log_catches_up_from_a_snapshot,
    synchronous_commits_survive_the_primary,
);

async fn a_killed_secondary_catches_up_from_the_log(backend: Backend) {
    if let Some(snapshots) = kill_a_secondary_mid_stream(backend, FAST).await {
        assert_eq!(snapshots, 0.0, "the log still reached back to its position");
    }
}

async fn a_secondary_behind_a_truncated_log_catches_up_from_a_snapshot(backend: Backend) {
    let snapshots = kill_a_secondary_mid_stream(
        backend,
        "[replication]\nheartbeat_interval_ms = 200\nwal_retain_entries = 0\n\
         wal_retain_seconds = 0\nwal_max_entries = 10\n",
    )
    .await;
    if let Some(snapshots) = snapshots {
        assert!(snapshots >= 1.0, "a snapshot was needed and received");
    }
}

async fn synchronous_commits_survive_the_primary(backend: Backend) {
    let Some(mut cluster) = ProcessCluster::start_with(
        backend,
        "",
        "[replication]\nsynchronous_replicas = 1\nsynchronous_timeout_ms = 10000\n",
        "",
    ) else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute("CREATE TABLE stream (id bigint PRIMARY KEY, v text NOT NULL)")
        .await
        .expect("schema");
    let group = default_group();
    let primary = index_of(group.shards[0].primary());
    let secondary = index_of(&group.shards[0].replicas[1].node);
    write(&client, 0..100).await;
    client
        .batch_execute(
            "BEGIN; INSERT INTO stream VALUES (100, 'explicit'); \
             INSERT INTO stream VALUES (101, 'explicit'); COMMIT",
        )
        .await
        .expect("an explicit transaction");
    cluster.nodes[primary].kill();
    let held = file_rows(&cluster, secondary, "stream").await;
    let ids: Vec<i64> = held
        .iter()
        .map(|row| match row.first() {
            Some(Value::Integer(id)) => *id,
            other => panic!("bad row {other:?}"),
        })
        .collect();
    assert_eq!(
        ids,
        (0..102).collect::<Vec<_>>(),
        "every acknowledged commit is in the secondary's file"
    );

    // The operator promotes the surviving copy: reads through the proxy see every
    // acknowledged commit.
    let (old, new) = (NODES[primary].0, NODES[secondary].0);
    client
        .batch_execute(&format!("PROMOTE MYCELIUM NODE {new} FOR SHARD stream/0"))
        .await
        .expect("promote");
    assert_eq!(
        shard_zero(&client, "__default").await,
        (
            format!("{new} (primary), {old} (secondary)"),
            "2".to_owned()
        )
    );
    assert_eq!(count(&client, "stream").await, 102);
    // The old primary comes back: it takes the new map, follows the promoted copy (which
    // holds each commit until it has it, synchronous_replicas = 1) and converges.
    cluster.restart_node(primary, &[]);
    write(&client, 102..120).await;
    let placement = promoted(group, new, 2);
    converged(&cluster, "stream", &placement, 120).await;
    let roles = text_rows(&client, "SHOW MYCELIUM REPLICATION").await;
    let role_of = |node: &str| {
        roles
            .iter()
            .find(|row| row[0] == node && row[1] == "__default" && row[2] == "0")
            .map(|row| (row[3].clone(), row[4].clone()))
    };
    assert_eq!(role_of(new), Some(("primary".to_owned(), "2".to_owned())));
    assert_eq!(role_of(old), Some(("secondary".to_owned(), "2".to_owned())));
    // A restarted proxy learns the promotion from the nodes' map before it routes.
    cluster.restart_proxy(&[]);
    let client = cluster.connect().await;
    assert_eq!(
        shard_zero(&client, "__default").await,
        (
            format!("{new} (primary), {old} (secondary)"),
            "2".to_owned()
        )
    );
    write(&client, 120..125).await;
    converged(&cluster, "stream", &placement, 125).await;
}

/// A promotion that cannot be: the errors name why, with their SQLSTATEs.
#[tokio::test]
async fn impossible_promotions_are_refused() {
    let cluster =
        ProcessCluster::start_with(Backend::Sqlite, "", FAST, "").expect("a SQLite cluster");
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE pr (id bigint PRIMARY KEY) WITH (mycelium.shard_keys = 'id',                mycelium.shards = 2, mycelium.replication_factor = 0.3);
             CREATE USER plain_user PASSWORD 'pw'; GRANT ALL ON pr TO plain_user",
        )
        .await
        .expect("schema");
    let placement = sharded("pr", 2, 0.3);
    let outsider = NODES
        .iter()
        .map(|(id, _)| *id)
        .find(|id| !placement.shards[0].holds(id))
        .expect("one copy of three nodes");
    let code = |sql: String| {
        let client = &client;
        async move {
            let e = client.batch_execute(&sql).await.expect_err(&sql);
            let message = e.as_db_error().map(|d| d.message().to_owned());
            (
                e.code().map(|c| c.code().to_owned()),
                message.unwrap_or_default(),
            )
        }
    };
    let (state, message) = code(format!("PROMOTE MYCELIUM NODE {outsider} FOR SHARD pr/0")).await;
    assert_eq!(state.as_deref(), Some("22023"), "{message}");
    assert!(message.contains("holds no copy"), "{message}");
    let (state, _) = code("PROMOTE MYCELIUM NODE n9 FOR SHARD pr/0".to_owned()).await;
    assert_eq!(state.as_deref(), Some("42704"));
    let (state, message) = code("PROMOTE MYCELIUM NODE n1 FOR SHARD pr/2".to_owned()).await;
    assert_eq!(state.as_deref(), Some("22023"), "{message}");
    let (state, _) = code("PROMOTE MYCELIUM NODE n1 FOR SHARD pr".to_owned()).await;
    assert_eq!(state.as_deref(), Some("42601"));
    let (state, _) = code(format!(
        "BEGIN; PROMOTE MYCELIUM NODE {} FOR SHARD pr/0",
        placement.shards[0].primary()
    ))
    .await;
    assert_eq!(state.as_deref(), Some("25001"));
    client.batch_execute("ROLLBACK").await.expect("rollback");
    let user = cluster
        .connect_as("plain_user", "pw")
        .await
        .expect("a user that is no superuser");
    let e = user
        .batch_execute("PROMOTE MYCELIUM NODE n1 FOR SHARD pr/0")
        .await
        .expect_err("not a superuser");
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e}");
    // Nothing moved.
    assert_eq!(shard_zero(&client, "pr").await.1, "1");
}

/// Rows of `kv` in a node's file, as (id, v).
async fn kv_rows(cluster: &ProcessCluster, index: usize) -> Vec<(i64, String)> {
    file_rows(cluster, index, "kv")
        .await
        .into_iter()
        .map(|row| match row.as_slice() {
            [Value::Integer(id), Value::Text(v)] => (*id, v.clone()),
            other => panic!("bad row {other:?}"),
        })
        .collect()
}

crate::processes::on_every_backend!(
    multi_thread: a_partition_and_a_promotion_converge_and_record_the_conflicts
);

/// A cluster whose nodes reach each other through a relay each (the proxy reaches them
/// directly), so a test can cut the copies off from their primaries; `None` when PostgreSQL
/// is skipped.
async fn relayed_cluster(backend: Backend) -> Option<(ProcessCluster, Vec<Relay>)> {
    let relay_ports: Vec<u16> = NODES.iter().map(|_| free_port()).collect();
    let cluster = ProcessCluster::start_with_peer_ports(backend, "", FAST, "", &relay_ports)?;
    let mut relays = Vec::new();
    for (port, target) in relay_ports.iter().zip(&cluster.node_ports) {
        relays.push(Relay::start(*port, *target).await);
    }
    Some((cluster, relays))
}

/// A partition between the nodes: writes go on at the primary the proxy still reaches; the
/// operator promotes the copy on the other side, which takes writes too, some to the same
/// rows. Healed, the old primary rejoins as a secondary, its writes reach the promoted copy,
/// both converge to the same rows, and the row both sides wrote is a recorded conflict.
async fn a_partition_and_a_promotion_converge_and_record_the_conflicts(backend: Backend) {
    let Some((cluster, relays)) = relayed_cluster(backend).await else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE kv (id integer PRIMARY KEY, v text NOT NULL);
             INSERT INTO kv VALUES (1, 'before'), (2, 'before'), (3, 'before'), (4, 'before')",
        )
        .await
        .expect("schema and rows");
    let group = default_group();
    let (old, new) = (
        index_of(group.shards[0].primary()),
        index_of(&group.shards[0].replicas[1].node),
    );
    converged(&cluster, "kv", &group, 4).await;

    for relay in &relays {
        relay.cut();
    }
    // Asynchronous replication: the primary goes on taking writes.
    client
        .batch_execute(
            "UPDATE kv SET v = 'old side' WHERE id IN (1, 2); INSERT INTO kv VALUES (5, 'old side')",
        )
        .await
        .expect("writes on the old primary");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        kv_rows(&cluster, new).await.first(),
        Some(&(1, "before".to_owned())),
        "the partition holds"
    );
    client
        .batch_execute(&format!(
            "PROMOTE MYCELIUM NODE {} FOR SHARD kv/0",
            NODES[new].0
        ))
        .await
        .expect("promote");
    client
        .batch_execute(
            "UPDATE kv SET v = 'new side' WHERE id IN (2, 3); INSERT INTO kv VALUES (6, 'new side')",
        )
        .await
        .expect("writes on the promoted copy");
    assert_eq!(
        kv_rows(&cluster, old).await[2],
        (3, "before".to_owned()),
        "the old primary is cut off"
    );

    for relay in &relays {
        relay.heal();
    }
    let placement = promoted(group, NODES[new].0, 2);
    converged(&cluster, "kv", &placement, 6).await;
    assert_eq!(
        kv_rows(&cluster, new).await,
        vec![
            (1, "old side".to_owned()),
            // Both sides wrote row 2; the later write (by hybrid clock) wins everywhere.
            (2, "new side".to_owned()),
            (3, "new side".to_owned()),
            (4, "before".to_owned()),
            (5, "old side".to_owned()),
            (6, "new side".to_owned()),
        ]
    );
    // The conflict is recorded, by both copies.
    let deadline = Instant::now() + CONVERGE;
    loop {
        let conflicts: Vec<Vec<String>> = text_rows(&client, "SHOW MYCELIUM CONFLICTS")
            .await
            .into_iter()
            .filter(|row| row[0] == "kv")
            .collect();
        let recorded_by_both = conflicts.len() == 1
            && conflicts[0][1].contains('2')
            && conflicts[0][11].contains(NODES[old].0)
            && conflicts[0][11].contains(NODES[new].0);
        if recorded_by_both {
            assert_eq!(conflicts[0][9], NODES[new].0, "winner: {conflicts:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "conflicts: {conflicts:?}\n{}",
            positions(&cluster)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Writes after healing replicate as usual.
    client
        .batch_execute("UPDATE kv SET v = 'healed' WHERE id = 4")
        .await
        .expect("a write after healing");
    let rows = converged(&cluster, "kv", &placement, 6).await;
    assert_eq!(rows[&0][3][1], Value::Text("healed".to_owned()));
}

/// A replication connection must open with the secondary's status: anything else is a
/// protocol violation (08P01) on SQLite and PostgreSQL nodes alike.
#[tokio::test]
async fn replication_connections_must_open_with_a_status() {
    let Some(cluster) = ProcessCluster::start_with(Backend::Mixed, "", FAST, "") else {
        return;
    };
    let identity =
        mycelium_network::TlsIdentity::load_member(&cluster.dir.path().join("certs"), "n1")
            .expect("n1's certificate");
    // A replication connection opens with a frame of kind 0x40..=0x4f (0x45: a status).
    let answer = |index: usize| {
        let identity = identity.clone();
        let addr = format!("127.0.0.1:{}", cluster.node_ports[index]);
        async move {
            let mut conn = mycelium_network::connect(
                addr.as_str(),
                NODES[index].0,
                &identity,
                &mycelium_network::ConnectOptions::default(),
            )
            .await
            .expect("connect");
            conn.send(0x45, bytes::Bytes::new()).await.expect("send");
            let frame = conn.recv().await.expect("answer").expect("a frame");
            mycelium_network::rpc::refusal(&frame).expect("an error frame")
        }
    };
    for index in [1, 2] {
        let malformed = answer(index).await;
        assert_eq!(
            malformed.code, "08P01",
            "{} reads the frame: {malformed:?}",
            NODES[index].0
        );
    }
}

/// Applies commit on every node all the time now, and SQLite isolates whole files. A read
/// committed transaction (the default) that read before another commit on its node reads and
/// writes the latest rows afterwards, as in Postgres. A serializable one keeps its snapshot:
/// it cannot write afterwards and fails with 40001, never with a lost update, and succeeds
/// when retried.
#[tokio::test]
async fn a_serializable_transaction_that_read_before_another_commit_fails_with_40001_and_retries() {
    let cluster =
        ProcessCluster::start_with(Backend::Sqlite, "", FAST, "").expect("a SQLite cluster");
    let reader = cluster.connect().await;
    let writer = cluster.connect().await;
    reader
        .batch_execute("CREATE TABLE rc (id integer PRIMARY KEY, v text)")
        .await
        .expect("schema");

    reader
        .batch_execute("BEGIN; SELECT count(*) FROM rc")
        .await
        .expect("a read committed transaction that reads");
    writer
        .execute("INSERT INTO rc VALUES (1, 'committed meanwhile')", &[])
        .await
        .expect("another session commits");
    assert_eq!(count(&reader, "rc").await, 1, "the next statement sees it");
    reader
        .batch_execute("INSERT INTO rc VALUES (2, 'then written'); COMMIT")
        .await
        .expect("read committed writes after another commit");
    assert_eq!(count(&writer, "rc").await, 2);

    reader
        .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT count(*) FROM rc")
        .await
        .expect("a serializable transaction that reads");
    writer
        .execute("INSERT INTO rc VALUES (3, 'committed meanwhile')", &[])
        .await
        .expect("another session commits");
    let outdated = reader
        .batch_execute("INSERT INTO rc VALUES (4, 'then written')")
        .await
        .expect_err("the snapshot it read is outdated");
    assert_eq!(
        outdated.code().map(|c| c.code()),
        Some("40001"),
        "{outdated}"
    );
    reader.batch_execute("ROLLBACK").await.expect("rollback");
    reader
        .batch_execute(
            "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT count(*) FROM rc; \
             INSERT INTO rc VALUES (4, 'retried'); COMMIT",
        )
        .await
        .expect("the retry");
    assert_eq!(count(&writer, "rc").await, 4);
}

/// Read-your-writes by version vector: a table read from secondaries only (`read_roles`),
/// written and read back at once, one statement after the other. Each read carries the
/// position of the session's last commit, so the secondary waits until it applied it; while
/// the secondary is cut off from its primary it cannot, refuses (55000), and the read goes to
/// the primary. Another session, with no writes of its own, reads the secondary as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reads_its_own_writes_on_secondaries() {
    let (cluster, relays) = relayed_cluster(Backend::Sqlite)
        .await
        .expect("a SQLite cluster");
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE ryw (id bigint PRIMARY KEY, v integer NOT NULL) \
             WITH (mycelium.shard_keys = 'id', mycelium.shards = 1, \
               mycelium.replication_factor = 1, mycelium.read_roles = 'secondary')",
        )
        .await
        .expect("schema");
    let placement = sharded("ryw", 1, 1.0);
    let reader = index_of(&placement.shards[0].replicas[1].node);
    let reader_id = NODES[reader].0;
    let served = |cluster: &ProcessCluster| {
        sample(
            &metrics_of(cluster, reader),
            &format!("mycelium_node_rows_total{{node=\"{reader_id}\"}}"),
        )
    };
    let before = served(&cluster);
    for id in 1..=30i64 {
        client
            .execute("INSERT INTO ryw VALUES ($1, 1)", &[&id])
            .await
            .expect("insert");
        client
            .execute("UPDATE ryw SET v = v + 1 WHERE id = $1", &[&id])
            .await
            .expect("update");
        let row = client
            .query_one("SELECT v FROM ryw WHERE id = $1", &[&id])
            .await
            .unwrap_or_else(|e| panic!("read {id} back: {e}"));
        assert_eq!(row.get::<_, i32>(0), 2, "row {id} as this session wrote it");
    }
    assert!(
        served(&cluster) - before >= 30.0,
        "the reads were served by the secondary {reader_id}"
    );

    for relay in &relays {
        relay.cut();
    }
    client
        .execute("INSERT INTO ryw VALUES (100, 7)", &[])
        .await
        .expect("a write while the copies are cut off");
    let row = client
        .query_one("SELECT v FROM ryw WHERE id = 100", &[])
        .await
        .expect("read back through the primary");
    assert_eq!(row.get::<_, i32>(0), 7);
    let refused = sample(
        &metrics_of(&cluster, reader),
        "mycelium_node_errors_total{sqlstate=\"55000\"}",
    );
    assert!(refused >= 1.0, "the secondary refused the fenced read");
    let other = cluster.connect().await;
    assert!(
        other
            .query_opt("SELECT v FROM ryw WHERE id = 100", &[])
            .await
            .expect("another session's read")
            .is_none(),
        "another session reads the secondary as it is, behind"
    );

    for relay in &relays {
        relay.heal();
    }
    converged(&cluster, "ryw", &placement, 31).await;
}

/// Read-your-writes after a two-phase commit: the decider and the prepared participant say
/// where their commits landed, so the session's next reads go to the secondaries
/// (`read_roles`) with those positions as fences, and see the transaction's writes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reads_its_two_phase_commits_on_secondaries() {
    let cluster = ProcessCluster::start_with(Backend::Sqlite, "", FAST, "").expect("a cluster");
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE ryw2 (id bigint PRIMARY KEY, v integer NOT NULL) \
             WITH (mycelium.shard_keys = 'id', mycelium.shards = 6, \
               mycelium.replication_factor = 1, mycelium.read_roles = 'secondary')",
        )
        .await
        .expect("schema");
    let placement = sharded("ryw2", 6, 1.0);
    // Two ids whose shards have their primaries on different nodes: a two-phase commit.
    let shard_of = |id: i64| placement.policy.shard_of(&[KeyValue::Int(id)]) as usize;
    let primary_of = |id: i64| placement.shards[shard_of(id)].primary().to_owned();
    let first = 1i64;
    let second = (2..100)
        .find(|&id| primary_of(id) != primary_of(first))
        .expect("an id with another primary");
    let readers: Vec<usize> = [first, second]
        .iter()
        .map(|&id| index_of(&placement.shards[shard_of(id)].replicas[1].node))
        .collect();
    let served = |cluster: &ProcessCluster| -> f64 {
        readers
            .iter()
            .map(|&reader| {
                sample(
                    &metrics_of(cluster, reader),
                    &format!("mycelium_node_rows_total{{node=\"{}\"}}", NODES[reader].0),
                )
            })
            .sum()
    };
    for id in [first, second] {
        client
            .execute("INSERT INTO ryw2 VALUES ($1, 0)", &[&id])
            .await
            .expect("insert");
    }
    let before = served(&cluster);
    for round in 1..=10i32 {
        client
            .batch_execute(&format!(
                "BEGIN; UPDATE ryw2 SET v = {round} WHERE id = {first}; \
                 UPDATE ryw2 SET v = {round} WHERE id = {second}; COMMIT"
            ))
            .await
            .expect("a two-phase commit");
        for id in [first, second] {
            let row = client
                .query_one("SELECT v FROM ryw2 WHERE id = $1", &[&id])
                .await
                .unwrap_or_else(|e| panic!("read {id} back: {e}"));
            assert_eq!(row.get::<_, i32>(0), round, "row {id} after commit {round}");
        }
    }
    assert!(
        served(&cluster) - before >= 20.0,
        "the reads were served by the secondaries, not the primaries"
    );
}

crate::processes::on_every_backend!(
    multi_thread: a_session_reads_its_own_copy_from_on_secondaries,
);

/// Read-your-writes after `COPY FROM`, on tables read from secondaries only, with the
/// secondaries cut off from their primaries so they cannot catch up: the session's next reads
/// go to the primaries and see every copied row. The rows of a table of one shard reach one
/// node in one plain transaction, whose commit position a PostgreSQL node does not know yet
/// (the session keeps its reads of a table it wrote recently on the primaries); those of a
/// table of three shards reach several nodes in a two-phase commit, whose positions fence the
/// reads (the secondaries refuse them). Another session reads the secondaries as they are,
/// without the copied rows.
async fn a_session_reads_its_own_copy_from_on_secondaries(backend: Backend) {
    let Some((cluster, relays)) = relayed_cluster(backend).await else {
        return;
    };
    let client = cluster.connect().await;
    let tables = [("rywc1", 1), ("rywc3", 3)];
    for (table, shards) in tables {
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} (id bigint PRIMARY KEY, v integer NOT NULL) \
                 WITH (mycelium.shard_keys = 'id', mycelium.shards = {shards}, \
                   mycelium.replication_factor = 1, mycelium.read_roles = 'secondary'); \
                 INSERT INTO {table} VALUES (0, 0)"
            ))
            .await
            .expect("schema");
        converged(&cluster, table, &sharded(table, shards, 1.0), 1).await;
    }
    for relay in &relays {
        relay.cut();
    }

    // Sessions that did not write the tables before: only the COPY sends one to primaries.
    let copier = cluster.connect().await;
    let other = cluster.connect().await;
    for (table, _) in tables {
        let sink = copier
            .copy_in::<_, bytes::Bytes>(&format!("COPY {table} (id, v) FROM STDIN"))
            .await
            .expect("copy in");
        let mut sink = std::pin::pin!(sink);
        let data: String = (1..=60).map(|id| format!("{id}\t{id}\n")).collect();
        futures::SinkExt::send(&mut sink, bytes::Bytes::from(data))
            .await
            .expect("send COPY data");
        assert_eq!(sink.as_mut().finish().await.expect("finish COPY"), 60);
        assert_eq!(
            count(&copier, table).await,
            61,
            "{table}: the session sees its COPY"
        );
        let sum = copier
            .query_one(&format!("SELECT sum(v) FROM {table}"), &[])
            .await
            .expect("sum");
        assert_eq!(sum.get::<_, i64>(0), 1830, "{table}");
        assert_eq!(
            count(&other, table).await,
            1,
            "{table}: another session reads the cut-off secondaries as they are"
        );
    }

    for relay in &relays {
        relay.heal();
    }
    for (table, shards) in tables {
        converged(&cluster, table, &sharded(table, shards, 1.0), 61).await;
    }
}
