//! What only PostgreSQL nodes have: `mycelium up --backend postgres` on a throwaway PostgreSQL
//! 15 server (mycelium-testkit) creating one database per node, Postgres-only types (arrays)
//! and error details, the nodes surviving a crash of the server, `mycelium node` on a
//! PostgreSQL database. The front-end suites (wire.rs, clients.rs: tokio-postgres, psql,
//! pgbench, psycopg and SQLAlchemy) run on PostgreSQL nodes too, through `on_every_backend!`.
//! `MYCELIUM_SKIP_POSTGRES=1` skips these tests.
#![expect(clippy::unwrap_used, reason = "tests")]

use std::process::Stdio;
use std::time::Duration;

use mycelium_testkit::PgCluster;

use crate::harness::{Cluster, PASSWORD};

fn up_on_postgres(pg: &PgCluster) -> Cluster {
    Cluster::start_with_args(&[
        "--backend",
        "postgres",
        "--pg-url",
        &pg.url("mycelium"),
        "--nodes",
        "3",
    ])
}

async fn direct(pg: &PgCluster, db: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&pg.url(db), tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

async fn output(mut command: tokio::process::Command, what: &str) -> std::process::Output {
    command.stdin(Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(120), command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("cannot run {what}: {e}"),
        Err(_) => panic!("{what} did not finish in time"),
    }
}

fn text_values(messages: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn up_with_postgres_nodes_serves_tokio_postgres_and_psql() {
    let Some(pg) = PgCluster::start_or_skip() else {
        return;
    };
    let cluster = up_on_postgres(&pg);

    // One database per node, created by `up`.
    let admin = direct(&pg, "postgres").await;
    let databases: Vec<String> = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'mycelium_n%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(databases, ["mycelium_n1", "mycelium_n2", "mycelium_n3"]);

    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE things (id int8 PRIMARY KEY, price numeric(10,2), name varchar(40), \
             tags text[], doc jsonb, at timestamptz, key uuid, ok bool)",
        )
        .await
        .unwrap();

    // Binary parameters and results (tokio-postgres uses binary for both).
    let at = chrono::DateTime::parse_from_rfc3339("2024-03-04T05:06:07.25Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let key = uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
    let doc = serde_json::json!({"b": [1, 2], "a": "x"});
    let tags = vec!["red".to_owned(), "a b".to_owned()];
    let inserted = client
        .execute(
            "INSERT INTO things VALUES ($1, $2::text::numeric, $3, $4, $5, $6, $7, $8)",
            &[&1i64, &"12.5", &"héllo", &tags, &doc, &at, &key, &true],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    let row = client
        .query_one(
            "SELECT id, name, tags, doc, at, key, ok, price::text FROM things WHERE id = $1",
            &[&1i64],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, String>(1), "héllo");
    assert_eq!(row.get::<_, Vec<String>>(2), tags);
    assert_eq!(row.get::<_, serde_json::Value>(3), doc);
    assert_eq!(row.get::<_, chrono::DateTime<chrono::Utc>>(4), at);
    assert_eq!(row.get::<_, uuid::Uuid>(5), key);
    assert!(row.get::<_, bool>(6));
    assert_eq!(row.get::<_, String>(7), "12.50");
    assert_eq!(
        row.columns()
            .iter()
            .map(|c| c.type_().name().to_owned())
            .collect::<Vec<_>>(),
        [
            "int8",
            "varchar",
            "_text",
            "jsonb",
            "timestamptz",
            "uuid",
            "bool",
            "text"
        ]
    );

    // Text results of the same values, as PostgreSQL prints them.
    let messages = client
        .simple_query("SELECT price, tags, doc, at, key, ok FROM things")
        .await
        .unwrap();
    assert_eq!(
        text_values(&messages),
        vec![vec![
            Some("12.50".to_owned()),
            Some("{red,\"a b\"}".to_owned()),
            Some("{\"a\": \"x\", \"b\": [1, 2]}".to_owned()),
            Some("2024-03-04 05:06:07.25+00".to_owned()),
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".to_owned()),
            Some("t".to_owned()),
        ]]
    );

    // Postgres's own errors, with detail.
    let e = client
        .execute("INSERT INTO things (id) VALUES (1)", &[])
        .await
        .unwrap_err();
    let db = e.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "23505");
    assert_eq!(db.detail(), Some("Key (id)=(1) already exists."));

    // psql \d, answered from a Postgres node's catalog.
    let mut psql = tokio::process::Command::new("psql");
    psql.env("PGPASSWORD", PASSWORD)
        .env("PGSSLMODE", "disable")
        .args(["-X", "-d", &cluster.conn_string(), "-c", "\\d things"]);
    let out = output(psql, "psql \\d").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "psql failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "Table \"public.things\"",
        "id     | bigint                   |           | not null |",
        "price  | numeric(10,2)            |",
        "name   | character varying(40)    |",
        "tags   | text[]                   |",
        "at     | timestamp with time zone |",
        "\"things_pkey\" PRIMARY KEY, btree (id)",
    ] {
        assert!(
            stdout.contains(expected),
            "psql \\d lacks {expected:?}:\n{stdout}"
        );
    }
}

/// A cluster of one PostgreSQL node leaves sequences to the node, so what pg_dump writes for a
/// serial column restores through psql as on PostgreSQL: the sequence is a real one (in
/// `pg_class`, `\ds`), the column default draws from it, and `setval` moves the same sequence.
#[tokio::test]
async fn a_pg_dump_script_with_sequences_restores_on_one_postgres_node() {
    let Some(pg) = PgCluster::start_or_skip() else {
        return;
    };
    let cluster = Cluster::start_with_args(&[
        "--backend",
        "postgres",
        "--pg-url",
        &pg.url("mycelium"),
        "--nodes",
        "1",
    ]);
    let script = "CREATE TABLE public.t (id integer NOT NULL, v text);\n\
        CREATE SEQUENCE public.t_id_seq AS integer START WITH 1 INCREMENT BY 1 \
        NO MINVALUE NO MAXVALUE CACHE 1;\n\
        ALTER SEQUENCE public.t_id_seq OWNED BY public.t.id;\n\
        ALTER TABLE ONLY public.t ALTER COLUMN id SET DEFAULT \
        nextval('public.t_id_seq'::regclass);\n\
        COPY public.t (id, v) FROM stdin;\n1\ta\n2\tb\n3\tc\n\\.\n\
        SELECT pg_catalog.setval('public.t_id_seq', 3, true);\n\
        ALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), script).unwrap();
    let mut psql = tokio::process::Command::new("psql");
    psql.env("PGPASSWORD", PASSWORD)
        .env("PGSSLMODE", "disable")
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &cluster.conn_string(),
            "-f",
        ])
        .arg(file.path());
    let out = output(psql, "psql -f").await;
    assert!(
        out.status.success(),
        "the restore failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let client = cluster.connect().await;
    let id: i32 = client
        .query_one("INSERT INTO t (v) VALUES ('d') RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 4, "the default draws from the restored sequence");
    let drawn = client
        .simple_query("BEGIN; SELECT nextval('t_id_seq'); SELECT currval('t_id_seq'); COMMIT")
        .await
        .unwrap();
    assert_eq!(
        text_values(&drawn),
        [vec![Some("5".to_owned())], vec![Some("5".to_owned())]]
    );

    // On the node: a real sequence owned by the column, no sequence kept by the proxy.
    let node = direct(&pg, "mycelium_n1").await;
    let owned: Vec<(String, String)> = node
        .query(
            "SELECT s.relname::text, a.attname::text FROM pg_class s \
             JOIN pg_depend d ON d.objid = s.oid AND d.deptype = 'a' \
             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
             WHERE s.relkind = 'S' AND d.refobjid = 'public.t'::regclass",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(owned, [("t_id_seq".to_owned(), "id".to_owned())]);
    let kept = node
        .query_one(
            "SELECT to_regclass('__mycelium_named_sequences') IS NULL",
            &[],
        )
        .await
        .unwrap();
    assert!(
        kept.get::<_, bool>(0),
        "the proxy kept a sequence of its own"
    );
    let rows: Vec<(i32, String)> = node
        .query("SELECT id, v FROM t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        rows,
        [(1, "a"), (2, "b"), (3, "c"), (4, "d")].map(|(id, v)| (id, v.to_owned()))
    );
}

/// Isolation levels as Postgres takes them, and run by PostgreSQL nodes: the default (read
/// committed), BEGIN's level, SET TRANSACTION before the first query (25001 after it),
/// `default_transaction_isolation` and SET SESSION CHARACTERISTICS. The node's own
/// `current_setting` says what its part of the transaction runs at.
#[tokio::test]
async fn isolation_levels_reach_postgres_nodes() {
    let Some(pg) = PgCluster::start_or_skip() else {
        return;
    };
    let cluster = up_on_postgres(&pg);
    let client = cluster.connect().await;
    let show_and_node = |sql: &'static str| {
        let client = &client;
        async move {
            let messages = client.simple_query(sql).await.expect(sql);
            text_values(&messages)
                .into_iter()
                .map(|row| row[0].clone().unwrap_or_default())
                .collect::<Vec<String>>()
        }
    };
    assert_eq!(
        show_and_node("SHOW transaction_isolation").await,
        ["read committed"]
    );
    assert_eq!(
        show_and_node(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SHOW transaction_isolation; \
             SELECT current_setting('transaction_isolation'); COMMIT"
        )
        .await,
        ["repeatable read", "repeatable read"]
    );
    assert_eq!(
        show_and_node(
            "BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY; \
             SHOW transaction_isolation; SHOW transaction_read_only; \
             SELECT current_setting('transaction_isolation'); COMMIT"
        )
        .await,
        ["serializable", "on", "serializable"]
    );
    client.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let error = client
        .batch_execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        .await
        .expect_err("SET TRANSACTION after a query");
    assert_eq!(error.code().map(|c| c.code()), Some("25001"), "{error:?}");
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        show_and_node(
            "SET default_transaction_isolation = 'repeatable read'; BEGIN; \
             SELECT current_setting('transaction_isolation'); COMMIT; \
             SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE; \
             SHOW default_transaction_isolation; SHOW transaction_isolation"
        )
        .await,
        ["repeatable read", "serializable", "serializable"]
    );
    let error = client
        .batch_execute("SET default_transaction_isolation = 'sometimes'")
        .await
        .expect_err("an unknown level");
    assert_eq!(error.code().map(|c| c.code()), Some("22023"), "{error:?}");
}

const ACCOUNTS: i64 = 30;
const INITIAL: i64 = 1000;

/// Sum and count of the balances held in each node's database, read straight from Postgres.
async fn balances_in_databases(pg: &PgCluster) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for node in ["n1", "n2", "n3"] {
        let client = direct(pg, &format!("mycelium_{node}")).await;
        let row = client
            .query_one(
                "SELECT coalesce(sum(balance), 0)::int8, count(*) FROM accounts",
                &[],
            )
            .await
            .unwrap();
        out.push((row.get(0), row.get(1)));
    }
    out
}

async fn prepared_count(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one("SELECT count(*) FROM pg_prepared_xacts", &[])
        .await
        .unwrap()
        .get(0)
}

/// Transfers between accounts on different Postgres nodes (two-phase commit with PREPARE
/// TRANSACTION), while the PostgreSQL server is killed (`pg_ctl stop -m immediate`) and
/// restarted under them: money is neither created nor lost, and no prepared transaction is
/// left behind.
#[tokio::test]
async fn bank_transfers_survive_a_postgres_crash() {
    let Some(mut pg) = PgCluster::start_or_skip() else {
        return;
    };
    let cluster = up_on_postgres(&pg);
    let client = cluster.connect().await;
    client
        .batch_execute(
            // One copy per shard, so the databases' sums are the money itself (copies of
            // PostgreSQL shards and their convergence are `pg_replication`'s business).
            "CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL \
             CHECK (balance >= 0)) WITH (mycelium.shard_keys = 'id', mycelium.shards = 6, \
             mycelium.replication_factor = 0.3)",
        )
        .await
        .unwrap();
    let inserts: String = (1..=ACCOUNTS)
        .map(|id| format!("INSERT INTO accounts (id, balance) VALUES ({id}, {INITIAL});"))
        .collect();
    client.batch_execute(&inserts).await.unwrap();
    let spread = balances_in_databases(&pg).await;
    assert_eq!(spread.iter().map(|(_, n)| n).sum::<i64>(), ACCOUNTS);
    assert!(
        spread.iter().filter(|(_, n)| *n > 0).count() >= 2,
        "accounts on one node only: {spread:?}"
    );

    let port = cluster.port;
    let mut workers = Vec::new();
    for worker in 0..2i64 {
        workers.push(tokio::spawn(async move {
            let mut committed = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
            let mut step = worker;
            while tokio::time::Instant::now() < deadline {
                step += 1;
                let from = step % ACCOUNTS + 1;
                let to = (step * 7 + 3) % ACCOUNTS + 1;
                if from == to {
                    continue;
                }
                let conn = format!(
                    "host=127.0.0.1 port={port} user=mycelium password={PASSWORD} \
                     dbname=mycelium connect_timeout=5"
                );
                let Ok((client, connection)) =
                    tokio_postgres::connect(&conn, tokio_postgres::NoTls).await
                else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                tokio::spawn(connection);
                let transfer = format!(
                    "BEGIN; UPDATE accounts SET balance = balance - 7 WHERE id = {from}; \
                     UPDATE accounts SET balance = balance + 7 WHERE id = {to}; COMMIT"
                );
                if client.batch_execute(&transfer).await.is_ok() {
                    committed += 1;
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            committed
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.kill_postmaster().unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    pg.restart().unwrap();
    let mut committed = 0;
    for worker in workers {
        committed += worker.await.unwrap();
    }
    assert!(committed > 0, "no transfer committed");

    // Every transaction in doubt is settled by the nodes (from the decider's record).
    let admin = direct(&pg, "postgres").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while prepared_count(&admin).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "prepared transactions left behind"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let spread = balances_in_databases(&pg).await;
    assert_eq!(
        spread.iter().map(|(sum, _)| sum).sum::<i64>(),
        ACCOUNTS * INITIAL,
        "money created or lost after {committed} transfers: {spread:?}"
    );
    let client = cluster.connect().await;
    let messages = client
        .simple_query("SELECT sum(balance) FROM accounts")
        .await
        .unwrap();
    let total = text_values(&messages)[0][0].clone();
    assert_eq!(total, Some((ACCOUNTS * INITIAL).to_string()));
}

/// `mycelium node --config` with `storage.backend` naming a PostgreSQL database.
fn node_process(pg: &PgCluster, dir: &std::path::Path, db: &str) -> std::process::Command {
    let certs = dir.join("certs");
    if !certs.exists() {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_mycelium"))
            .args(["certs", "--nodes", "n1", "--out"])
            .arg(&certs)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let config = dir.join(format!("{db}.toml"));
    std::fs::write(
        &config,
        format!(
            "[node]\nid = \"n1\"\nlisten = \"127.0.0.1:0\"\ncerts = \"{}\"\n\
             [storage]\nbackend = \"{}\"\n[storage.postgres]\ncreate_database = true\n",
            certs.display(),
            pg.url(db)
        ),
    )
    .unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mycelium"));
    command
        .args(["node", "--metrics-listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[tokio::test]
async fn a_node_process_runs_on_postgres_and_refuses_a_server_without_prepared_transactions() {
    use std::io::BufRead;

    let Some(pg) = PgCluster::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut child = node_process(&pg, dir.path(), "solo").spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.contains("Mycelium node n1") && line.contains("is ready"),
        "{line:?}"
    );
    // The node created its database and its transaction records.
    let client = direct(&pg, "solo").await;
    let records: i64 = client
        .query_one("SELECT count(*) FROM mycelium.txn_records", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(records, 0);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());

    let off = PgCluster::start_with(&[("max_prepared_transactions", "0")]).unwrap();
    let out = node_process(&off, dir.path(), "off").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("max_prepared_transactions = 0") && stderr.contains("postgresql.conf"),
        "{stderr}"
    );
}
