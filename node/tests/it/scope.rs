//! Statements scoped to shards by the router (`scope_statement`) run on a SQLite node, whose
//! `__mycelium_shard` is the router's shard function: every row is seen on exactly the shards
//! the router sends a statement naming its key to, and writes touch no other shard's rows.

use mycelium_config::StorageConfig;
use mycelium_node::Node;
use mycelium_protocol::{Execute, NodeLink, Reply};
use mycelium_router::{
    KeyExpr, PolicyDefaults, PolicySource, Route, ShardChoice, ShardScope, TablePolicy, route,
    scope_statement,
};

fn policy(table: &str, keys: &[&str], shards: u32) -> TablePolicy {
    let mut policy = TablePolicy::default_for(table, &PolicyDefaults::default());
    policy.shard_keys = keys.iter().map(|k| (*k).to_owned()).collect();
    policy.shards = shards;
    policy
}

fn policies() -> Vec<TablePolicy> {
    let mut logs = policy("logs", &["at"], 4);
    logs.range_sharding = true;
    logs.ranges = vec![-10, 0, 1000];
    vec![
        policy("users", &["id"], 5),
        policy("orders", &["user_id"], 5),
        policy("texts", &["k"], 3),
        policy("uuids", &["k"], 4),
        policy("reals", &["k"], 3),
        policy("pairs", &["tenant", "id"], 6),
        logs,
    ]
}

struct Policies(Vec<TablePolicy>);

impl PolicySource for Policies {
    fn policy(&self, table: &str) -> TablePolicy {
        self.0
            .iter()
            .find(|p| p.table == table)
            .cloned()
            .unwrap_or_else(|| TablePolicy::default_for(table, &PolicyDefaults::default()))
    }

    fn has_policy(&self, table: &str) -> bool {
        self.0.iter().any(|p| p.table == table)
    }
}

/// The shard the router sends `SELECT * FROM <table> WHERE <condition>` to.
fn routed(table: &str, condition: &str) -> u32 {
    let policies = Policies(policies());
    let sql = format!("SELECT * FROM {table} WHERE {condition}");
    let Ok(Route::Read {
        shards: ShardChoice::Keys(keys),
        ..
    }) = route(&sql, &policies)
    else {
        panic!("{sql} is not routed by key");
    };
    let values = keys[0]
        .iter()
        .map(|k| match k {
            KeyExpr::Value(v) => v.clone(),
            KeyExpr::Param(_) => panic!("{sql}: a parameter"),
        })
        .collect::<Vec<_>>();
    policies.policy(table).shard_of(&values)
}

fn scopes(tables: &[&str], keep: &[u32]) -> Vec<ShardScope> {
    policies()
        .into_iter()
        .filter(|p| tables.contains(&p.table.as_str()))
        .map(|policy| ShardScope {
            policy,
            keep: keep.to_vec(),
        })
        .collect()
}

struct Db {
    node: Node,
    _dir: tempfile::TempDir,
}

fn open() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open_sqlite(
        "n1",
        false,
        &dir.path().join("node.db"),
        &StorageConfig::default(),
    )
    .unwrap();
    Db { node, _dir: dir }
}

/// Runs `sql`; the first column of each row as text, and the command tag.
async fn run(db: &Db, sql: &str) -> (Vec<String>, String) {
    let mut session = db.node.open_session().await.unwrap();
    let mut stream = session
        .execute(Execute::simple(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let mut rows = Vec::new();
    while let Some(reply) = stream.recv().await {
        match reply.unwrap_or_else(|e| panic!("{sql}: {e:?}")) {
            Reply::Columns(_) => {}
            Reply::Rows(batch) => {
                for row in batch.iter() {
                    let first = row.into_iter().next().flatten().unwrap_or(b"NULL");
                    rows.push(String::from_utf8(first.to_vec()).unwrap());
                }
            }
            Reply::Complete { tag } => {
                rows.sort();
                return (rows, tag);
            }
        }
    }
    panic!("{sql}: no Complete");
}

async fn scoped(db: &Db, sql: &str, tables: &[&str], keep: &[u32]) -> (Vec<String>, String) {
    let text = scope_statement(sql, &scopes(tables, keep)).unwrap();
    assert_ne!(text, sql, "{sql} was not scoped");
    run(db, &text).await
}

/// Rows with these keys (SQL literals), and the shard the router gives each.
struct Keys {
    table: &'static str,
    column: &'static str,
    literals: Vec<String>,
}

impl Keys {
    fn shard(&self, literal: &str) -> u32 {
        routed(self.table, &format!("{} = {literal}", self.column))
    }

    /// The literals (unquoted, as the rows print them) whose shard is in `keep`.
    fn expected(&self, keep: &[u32]) -> Vec<String> {
        let mut rows: Vec<String> = self
            .literals
            .iter()
            .filter(|l| keep.contains(&self.shard(l)))
            .map(|l| l.split("'").nth(1).unwrap_or(l).to_owned())
            .collect();
        rows.sort();
        rows
    }
}

#[tokio::test]
async fn every_row_is_seen_on_its_routed_shard_only() {
    let db = open();
    run(&db, "CREATE TABLE users (id bigint PRIMARY KEY, n int)").await;
    run(&db, "CREATE TABLE texts (k text PRIMARY KEY, n int)").await;
    run(&db, "CREATE TABLE uuids (k uuid PRIMARY KEY, n int)").await;
    run(&db, "CREATE TABLE logs (at bigint PRIMARY KEY, n int)").await;
    run(
        &db,
        "CREATE TABLE reals (k double precision PRIMARY KEY, n int)",
    )
    .await;
    let keys = [
        Keys {
            table: "users",
            column: "id",
            literals: (-20..40).map(|i: i64| (i * 7919).to_string()).collect(),
        },
        Keys {
            table: "texts",
            column: "k",
            literals: [
                "'0042'",
                "'-7'",
                "'alice'",
                "'bob'",
                "''",
                "' x '",
                "'ünïcode'",
                "'1.5'",
                "'0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0'",
                "'0F1E2D3C4B5A69788796A5B4C3D2E1F1'",
            ]
            .map(str::to_owned)
            .to_vec(),
        },
        Keys {
            table: "uuids",
            column: "k",
            literals: (0..24)
                .map(|i| format!("'{i:08x}-4b5a-6978-8796-a5b4c3d2e1f{}'", i % 10))
                .collect(),
        },
        // Integral reals hash as integers, others as their text.
        Keys {
            table: "reals",
            column: "k",
            literals: ["2", "-7", "1024", "'2.5'", "'0.125'", "'-1.75'"]
                .map(str::to_owned)
                .to_vec(),
        },
        Keys {
            table: "logs",
            column: "at",
            literals: [-11, -10, -9, -1, 0, 1, 999, 1000, 5000]
                .map(|i: i64| i.to_string())
                .to_vec(),
        },
    ];
    for key in &keys {
        for literal in &key.literals {
            run(
                &db,
                &format!(
                    "INSERT INTO {} ({}, n) VALUES ({literal}, 0)",
                    key.table, key.column
                ),
            )
            .await;
        }
    }
    for key in &keys {
        let policy = policies()
            .into_iter()
            .find(|p| p.table == key.table)
            .unwrap();
        let sql = format!("SELECT {} FROM {}", key.column, key.table);
        let mut seen = 0;
        for shard in 0..policy.shards {
            let (rows, _) = scoped(&db, &sql, &[key.table], &[shard]).await;
            assert_eq!(rows, key.expected(&[shard]), "{} shard {shard}", key.table);
            seen += rows.len();
        }
        assert_eq!(seen, key.literals.len(), "{}: every row once", key.table);
        let some: Vec<u32> = (0..policy.shards).filter(|s| s % 2 == 1).collect();
        let (rows, _) = scoped(&db, &sql, &[key.table], &some).await;
        assert_eq!(rows, key.expected(&some), "{} shards {some:?}", key.table);
        let (rows, _) = scoped(&db, &sql, &[key.table], &[]).await;
        assert!(rows.is_empty());
    }
}

#[tokio::test]
async fn multi_column_keys_and_null_keys() {
    let db = open();
    run(&db, "CREATE TABLE pairs (tenant text, id int, n int)").await;
    let rows = [
        ("'acme'", "1"),
        ("'acme'", "2"),
        ("'12'", "-3"),
        ("'globex'", "40"),
        ("'0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0'", "7"),
        ("NULL", "5"),
    ];
    for (n, (tenant, id)) in rows.iter().enumerate() {
        run(
            &db,
            &format!("INSERT INTO pairs (tenant, id, n) VALUES ({tenant}, {id}, {n})"),
        )
        .await;
    }
    for shard in 0..6 {
        let (seen, _) = scoped(&db, "SELECT n FROM pairs", &["pairs"], &[shard]).await;
        let expected: Vec<String> = rows
            .iter()
            .enumerate()
            .filter(|(_, (tenant, id))| {
                // A NULL key lives where the router sends a NULL key parameter: the empty text.
                let tenant = if *tenant == "NULL" { "''" } else { tenant };
                routed("pairs", &format!("tenant = {tenant} AND id = {id}")) == shard
            })
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(seen, expected, "shard {shard}");
    }
}

#[tokio::test]
async fn scoped_writes_and_joins() {
    let db = open();
    run(&db, "CREATE TABLE users (id bigint PRIMARY KEY, n int)").await;
    run(
        &db,
        "CREATE TABLE orders (id int PRIMARY KEY, user_id bigint, total int)",
    )
    .await;
    let users = Keys {
        table: "users",
        column: "id",
        literals: (0..30).map(|i: i64| i.to_string()).collect(),
    };
    for id in 0..30 {
        run(&db, &format!("INSERT INTO users (id, n) VALUES ({id}, 0)")).await;
        run(
            &db,
            &format!("INSERT INTO orders (id, user_id, total) VALUES ({id}, {id}, 10)"),
        )
        .await;
    }
    let keep = [0, 3];
    let expected = users.expected(&keep);
    let both = ["users", "orders"];

    let (rows, _) = scoped(
        &db,
        "SELECT u.id FROM users u JOIN orders o ON o.user_id = u.id",
        &both,
        &keep,
    )
    .await;
    assert_eq!(rows, expected);
    let (rows, _) = scoped(
        &db,
        "SELECT count(*) FROM users WHERE id IN (SELECT user_id FROM orders WHERE total = 10)",
        &both,
        &keep,
    )
    .await;
    assert_eq!(rows, [expected.len().to_string()]);

    let (_, tag) = scoped(&db, "UPDATE users SET n = n + 1", &both, &keep).await;
    assert_eq!(tag, format!("UPDATE {}", expected.len()));
    let (_, tag) = scoped(
        &db,
        "UPDATE orders SET total = total + 1 WHERE user_id IN (SELECT id FROM users WHERE n = 1)",
        &both,
        &keep,
    )
    .await;
    assert_eq!(tag, format!("UPDATE {}", expected.len()));
    let (rows, _) = run(&db, "SELECT id FROM users WHERE n = 1").await;
    assert_eq!(rows, expected);
    let (rows, _) = run(&db, "SELECT user_id FROM orders WHERE total = 11").await;
    assert_eq!(rows, expected);

    let (_, tag) = scoped(&db, "DELETE FROM orders o WHERE o.total > 0", &both, &keep).await;
    assert_eq!(tag, format!("DELETE {}", expected.len()));
    let (rows, _) = run(&db, "SELECT count(*) FROM orders").await;
    assert_eq!(rows, [(30 - expected.len()).to_string()]);
    // Nothing kept: nothing written.
    let (_, tag) = scoped(&db, "DELETE FROM users", &both, &[]).await;
    assert_eq!(tag, "DELETE 0");
}
