//! Replication between PostgreSQL and SQLite nodes (real processes; n2 on PostgreSQL, n1 and
//! n3 on SQLite): shards led by a PostgreSQL node copied to SQLite nodes and the reverse end
//! up with the same rows on every copy (read from the SQLite files and the PostgreSQL
//! database directly), a PostgreSQL node killed mid-stream catches up, reads fail over to a
//! PostgreSQL copy, and the PostgreSQL nodes' `__mycelium_shard` is the router's shard
//! function. `MYCELIUM_SKIP_POSTGRES=1` skips them.
#![expect(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mycelium_config::ReplicationConfig;
use mycelium_node::{Node, PostgresOptions};
use mycelium_protocol::{Execute, NodeLink, Reply};
use mycelium_router::{KeyValue, NodeInfo, NodeType, PolicyDefaults, TablePolicy, place};
use mycelium_testkit::PgCluster;
use tokio_postgres::SimpleQueryMessage;

use crate::processes::{Backend, NODES, ProcessCluster};

const SHARDS: u32 = 6;
/// The PostgreSQL node of a mixed cluster.
const PG: usize = 1;

/// A table every node holds a copy of (replication_factor 1), with values the statement
/// text does not fix: `now()`, `random()`, defaults, a serial.
fn create(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, v integer, note text DEFAULT 'none', \
         at timestamptz DEFAULT now(), r double precision DEFAULT random(), s serial, \
         flag boolean, u uuid) \
         WITH (mycelium.shard_keys = 'id', mycelium.shards = {SHARDS}, \
         mycelium.replication_factor = 1)"
    )
}

/// Where the shards of such a table live.
fn placement(table: &str) -> mycelium_router::TablePlacement {
    let mut policy = TablePolicy::default_for(table, &PolicyDefaults::default());
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
    place(&policy, &infos).unwrap()
}

/// The node index of the primary of `id`'s shard.
fn primary_of(table: &str, id: i64) -> usize {
    let placement = placement(table);
    let shard = placement.policy.shard_of(&[KeyValue::Int(id)]);
    let primary = placement.shards[shard as usize].primary();
    NODES.iter().position(|(n, _)| *n == primary).unwrap()
}

/// One row, as comparable across backends: a timestamp in UTC with microseconds, a boolean
/// as SQLite stores it, a real as its bits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    id: i64,
    v: Option<i64>,
    note: Option<String>,
    at: Option<String>,
    r: Option<u64>,
    s: i64,
    flag: Option<i64>,
    u: Option<String>,
}

/// Every row of `table` in node `index`'s own database.
async fn rows_on(cluster: &mut ProcessCluster, index: usize, table: &str) -> Vec<Row> {
    if cluster.backend.on_postgres(index) {
        let url = cluster.postgres().url(NODES[index].0);
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let sql = format!(
            "SELECT id, v::int8, note, \
             to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), r, s::int8, \
             flag::int::int8, u::text FROM {table} ORDER BY id"
        );
        return client
            .query(&sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|row| Row {
                id: row.get(0),
                v: row.get(1),
                note: row.get(2),
                at: row.get(3),
                r: row.get::<_, Option<f64>>(4).map(f64::to_bits),
                s: row.get(5),
                flag: row.get(6),
                u: row.get(7),
            })
            .collect();
    }
    let db = rusqlite::Connection::open_with_flags(
        cluster.node_file(NODES[index].0),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut statement = db
        .prepare(&format!(
            "SELECT id, v, note, at, r, s, flag, u FROM {table} ORDER BY id"
        ))
        .unwrap();
    statement
        .query_map([], |row| {
            let at: Option<String> = row.get(3)?;
            Ok(Row {
                id: row.get(0)?,
                v: row.get(1)?,
                note: row.get(2)?,
                at: at.map(|text| utc_micros(&text)),
                r: row.get::<_, Option<f64>>(4)?.map(f64::to_bits),
                s: row.get(5)?,
                flag: row.get(6)?,
                u: row.get(7)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A `timestamptz` as a SQLite node stores it (`2024-01-02 03:04:05.5+00`), in UTC with six
/// decimals.
fn utc_micros(text: &str) -> String {
    let parsed = chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
        .unwrap_or_else(|e| panic!("timestamp {text:?}: {e}"));
    parsed
        .with_timezone(&chrono::Utc)
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

/// Waits until every node's copy of `table` holds the same rows; returns them.
async fn copies_agree(cluster: &mut ProcessCluster, table: &str) -> Vec<Row> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut copies = Vec::new();
        for index in 0..NODES.len() {
            copies.push(rows_on(cluster, index, table).await);
        }
        if copies.iter().all(|c| *c == copies[0]) {
            return copies.swap_remove(0);
        }
        assert!(
            Instant::now() < deadline,
            "the copies of {table} never agreed:\n{}",
            copies
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{}: {c:?}", NODES[i].0))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

/// A mixed workload on `table` through the proxy: autocommit and explicit transactions,
/// one-shard and several-shard (two-phase) ones, inserts, updates and deletes.
async fn workload(client: &tokio_postgres::Client, table: &str) {
    for id in 1..=40i64 {
        let sql = match id % 4 {
            0 => format!("INSERT INTO {table} (id, v) VALUES ({id}, {id})"),
            1 => format!(
                "INSERT INTO {table} (id, v, note, flag, u) VALUES ({id}, {id}, 'n{id}', \
                 {}, '{id:08x}-4b5a-6978-8796-a5b4c3d2e1f0')",
                id % 8 == 1
            ),
            2 => format!("INSERT INTO {table} (id, v, flag) VALUES ({id}, NULL, true)"),
            _ => format!("INSERT INTO {table} VALUES ({id}, {id}, DEFAULT, now(), 0.25)"),
        };
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    let statements = [
        format!("UPDATE {table} SET v = coalesce(v, 0) * 2, at = now() WHERE id % 3 = 0"),
        format!("UPDATE {table} SET r = random(), note = NULL WHERE id = 5"),
        format!("DELETE FROM {table} WHERE id % 7 = 0"),
        format!(
            "BEGIN; INSERT INTO {table} (id, v) VALUES (101, 1); \
             UPDATE {table} SET v = v + 1 WHERE id = 101; COMMIT"
        ),
        // Rows on shards of different primaries: a two-phase commit.
        format!(
            "BEGIN; UPDATE {table} SET note = 'tx', flag = false WHERE id = 1; \
             UPDATE {table} SET note = 'tx', flag = false WHERE id = 2; \
             UPDATE {table} SET note = 'tx', flag = false WHERE id = 3; \
             DELETE FROM {table} WHERE id = 4; COMMIT"
        ),
        format!("UPDATE {table} SET u = NULL WHERE id = 9"),
    ];
    for sql in &statements {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
}

#[tokio::test]
async fn mixed_copies_hold_the_same_rows() {
    let Some(mut cluster) = ProcessCluster::start_with(Backend::Mixed, "", "", "") else {
        return;
    };
    // Both directions are exercised: shards led by the PostgreSQL node, and by SQLite nodes.
    let leaders: BTreeSet<usize> = (1..=40).map(|id| primary_of("t", id)).collect();
    assert!(leaders.contains(&PG), "{leaders:?}");
    assert!(leaders.iter().any(|&i| i != PG), "{leaders:?}");

    let client = cluster.connect().await;
    client.batch_execute(&create("t")).await.unwrap();
    workload(&client, "t").await;
    let rows = copies_agree(&mut cluster, "t").await;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let expected: Vec<i64> = (1..=40)
        .chain([101])
        .filter(|id| id % 7 != 0 && *id != 4)
        .collect();
    assert_eq!(ids, expected);
    assert!(rows.iter().all(|r| r.at.is_some() && r.r.is_some()));
    let row = |id: i64| rows.iter().find(|r| r.id == id).unwrap();
    assert_eq!(row(1).note.as_deref(), Some("tx"));
    assert_eq!(row(1).flag, Some(0));
    assert_eq!(row(101).v, Some(2));
    assert_eq!(row(3).v, Some(6));
    assert_eq!(row(8).note.as_deref(), Some("none"), "a DEFAULT");

    // Statements without the key see each row once, although every node holds every shard:
    // the PostgreSQL node evaluates the scope predicate as the router does.
    assert_eq!(
        count(&client, "SELECT count(*) FROM t").await,
        ids.len() as i64
    );
    let updated = client
        .execute("UPDATE t SET v = coalesce(v, 0) + 1", &[])
        .await
        .unwrap();
    assert_eq!(updated, ids.len() as u64);
    let after = copies_agree(&mut cluster, "t").await;
    let sum = |rows: &[Row]| rows.iter().map(|r| r.v.unwrap_or(0)).sum::<i64>();
    assert_eq!(sum(&after), sum(&rows) + ids.len() as i64);
}

#[tokio::test]
async fn killed_postgres_node_catches_up() {
    let Some(mut cluster) = ProcessCluster::start_with(Backend::Mixed, "", "", "") else {
        return;
    };
    let client = cluster.connect().await;
    client.batch_execute(&create("k")).await.unwrap();
    let writer = {
        let client = cluster.connect().await;
        tokio::spawn(async move {
            let mut written = Vec::new();
            for id in 1..=300i64 {
                let sql = format!("INSERT INTO k (id, v) VALUES ({id}, {id})");
                // Writes to shards the killed node leads fail while it is down.
                if client.batch_execute(&sql).await.is_ok() {
                    written.push(id);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            written
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.nodes[PG].kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.restart_node(PG, &[]);
    let written = writer.await.unwrap();
    assert!(written.len() > 100, "{} writes went through", written.len());
    let rows = copies_agree(&mut cluster, "k").await;
    let ids: BTreeSet<i64> = rows.iter().map(|r| r.id).collect();
    // A write cut off by the kill may have committed without its answer arriving.
    assert!(
        written.iter().all(|id| ids.contains(id)),
        "written {written:?}, held {ids:?}"
    );
    assert!(
        ids.len() <= written.len() + 1,
        "written {written:?}, held {ids:?}"
    );
}

#[tokio::test]
async fn reads_fail_over_to_a_postgres_copy() {
    let Some(mut cluster) = ProcessCluster::start_with(Backend::Mixed, "", "", "") else {
        return;
    };
    let client = cluster.connect().await;
    client.batch_execute(&create("f")).await.unwrap();
    let values: Vec<String> = (1..=30).map(|id| format!("({id}, {})", id * 10)).collect();
    client
        .batch_execute(&format!(
            "INSERT INTO f (id, v) VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
    copies_agree(&mut cluster, "f").await;
    // Only the PostgreSQL node is left: it serves every shard, its primaries' and its copies'.
    for index in (0..NODES.len()).filter(|&i| i != PG) {
        cluster.nodes[index].kill();
    }
    let led_elsewhere = (1..=30).find(|&id| primary_of("f", id) != PG).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let read = client
            .simple_query(&format!("SELECT v FROM f WHERE id = {led_elsewhere}"))
            .await;
        let value = read.ok().and_then(|messages| {
            messages.iter().find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
        });
        if value == Some((led_elsewhere * 10).to_string()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failover read of id {led_elsewhere}: {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count(&client, "SELECT count(*) FROM f").await, 30);
    assert_eq!(count(&client, "SELECT sum(v)::int8 FROM f").await, 4650);
}

/// Key values and the router's reading of them, as SQL of the column type.
fn keys() -> Vec<(String, KeyValue)> {
    let mut keys = Vec::new();
    for i in (-300i64..300).chain([i64::MIN, i64::MAX, 0, 1 << 40]) {
        keys.push((format!("'{i}'::int8"), KeyValue::Int(i)));
        if let Ok(small) = i32::try_from(i) {
            keys.push((format!("'{small}'::int4"), KeyValue::Int(i)));
        }
    }
    let texts = [
        "alice",
        "bob",
        "",
        " x ",
        "ünïcode ✓",
        "0042",
        " 17 ",
        "+5",
        "-7",
        "1.5",
        "99999999999999999999",
        "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        "{0F1E2D3C4B5A69788796A5B4C3D2E1F1}",
        "0f1e2d3c-4b5a6978-8796-a5b4c3d2e1f0",
        "\u{a0}12\u{3000}",
    ];
    for text in texts {
        let literal = text.replace('\'', "''");
        keys.push((format!("'{literal}'::text"), KeyValue::from_text(text)));
    }
    for n in 0..200 {
        keys.push((
            format!("'text-{n}'::text"),
            KeyValue::from_text(&format!("text-{n}")),
        ));
        let uuid = format!("{n:08x}-4b5a-6978-8796-a5b4c3d2e1f{}", n % 10);
        keys.push((format!("'{uuid}'::uuid"), KeyValue::from_text(&uuid)));
    }
    for real in [0.5, -2.25, 3.0, -0.0, 1e-7, 1.5e20, 123456.789, f64::NAN] {
        let literal = if real.is_nan() {
            "'NaN'".to_owned()
        } else {
            format!("'{real:e}'")
        };
        keys.push((format!("{literal}::float8"), KeyValue::from_real(real)));
    }
    keys.push(("true".to_owned(), KeyValue::Int(1)));
    keys.push(("false".to_owned(), KeyValue::Int(0)));
    keys.push(("'12.50'::numeric".to_owned(), KeyValue::from_text("12.50")));
    keys.push((
        "'\\x0102ff'::bytea".to_owned(),
        KeyValue::from_bytes(&[1, 2, 255]),
    ));
    let sixteen: Vec<u8> = (0..16).collect();
    keys.push((
        "'\\x000102030405060708090a0b0c0d0e0f'::bytea".to_owned(),
        KeyValue::from_bytes(&sixteen),
    ));
    keys.push(("NULL::int8".to_owned(), KeyValue::null()));
    keys
}

/// The shard `__mycelium_shard(shards, ranges, key...)` gives on the node, through a node
/// session (which rewrites the call as it does for scoped statements).
async fn node_shard(node: &Node, shards: u32, ranges: &str, key: &[&str]) -> i64 {
    let sql = format!(
        "SELECT __mycelium_shard({shards}, '{ranges}', {})",
        key.join(", ")
    );
    let mut session = node.open_session().await.unwrap();
    let mut stream = session
        .execute(Execute::simple(sql.as_str()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let mut value = None;
    while let Some(reply) = stream.recv().await {
        match reply.unwrap_or_else(|e| panic!("{sql}: {e:?}")) {
            Reply::Rows(batch) => {
                let row = batch.iter().next().unwrap();
                let text = row.into_iter().next().flatten().unwrap();
                value = Some(std::str::from_utf8(text).unwrap().parse().unwrap());
            }
            Reply::Complete { .. } => break,
            Reply::Columns(_) => {}
        }
    }
    value.unwrap_or_else(|| panic!("{sql}: no row"))
}

#[tokio::test]
async fn postgres_shard_function_is_the_routers() {
    let Some(pg) = PgCluster::start_or_skip() else {
        return;
    };
    pg.create_database("shards").unwrap();
    let node = Node::open_postgres(
        "n1",
        false,
        PostgresOptions::new("n1", &pg.url("shards")),
        None,
        &ReplicationConfig::default(),
    )
    .await
    .unwrap();
    let keys = keys();
    for shards in [1u32, 5, 64] {
        for (sql, key) in &keys {
            let expected =
                mycelium_router::shard_function(i64::from(shards), "", std::slice::from_ref(key))
                    .unwrap();
            assert_eq!(
                node_shard(&node, shards, "", &[sql]).await,
                i64::from(expected),
                "{sql} over {shards} shards"
            );
        }
    }
    // Several key columns, and range sharding.
    for (i, (first, first_key)) in keys.iter().enumerate().step_by(7) {
        let (second, second_key) = &keys[(i * 31 + 3) % keys.len()];
        let pair = [first_key.clone(), second_key.clone()];
        for (shards, ranges) in [(7u32, ""), (4, "-10, 0,1000")] {
            let expected =
                mycelium_router::shard_function(i64::from(shards), ranges, &pair).unwrap();
            assert_eq!(
                node_shard(&node, shards, ranges, &[first, second]).await,
                i64::from(expected),
                "({first}, {second}) over {shards} shards, ranges '{ranges}'"
            );
        }
    }
    node.shutdown();
}

/// A client in another zone writes rows whose primary is the PostgreSQL node, which captures
/// them as text in that zone: its SQLite copies still hold each instant in UTC, exactly as a
/// SQLite node stores its own writes (text they compare and sort by).
#[tokio::test]
async fn zoned_writes_reach_sqlite_copies_in_utc() {
    let Some(mut cluster) = ProcessCluster::start_with(Backend::Mixed, "", "", "") else {
        return;
    };
    let ids: Vec<i64> = (1..=40).filter(|&id| primary_of("z", id) == PG).collect();
    assert!(!ids.is_empty());
    let client = cluster.connect().await;
    client.batch_execute(&create("z")).await.unwrap();
    client
        .batch_execute("SET TimeZone = 'Europe/Paris'")
        .await
        .unwrap();
    for id in &ids {
        client
            .batch_execute(&format!(
                "INSERT INTO z (id, v, at) VALUES ({id}, 1, '2024-06-01 10:00')"
            ))
            .await
            .unwrap();
    }
    copies_agree(&mut cluster, "z").await;
    for index in [0, 2] {
        let stored = cluster.node_texts(index, "SELECT DISTINCT at FROM z").await;
        assert_eq!(stored, ["2024-06-01 08:00:00+00"], "node {index}");
    }
}
