//! The Postgres wire protocol as tokio-postgres sees it.
//!
//! Scenarios whose statements reach the nodes run on SQLite nodes, on PostgreSQL nodes and on
//! a mix (`on_every_backend!` below; `Cluster::start_on`). Those about the front door alone
//! (audit log, per-user limits, the TLS certificate, reloading users) run once, on SQLite
//! nodes: nothing in them depends on where the data is.

use crate::harness::{Backend, Cluster, sqlstate};
use crate::processes::on_every_backend;

on_every_backend!(
    simple_and_prepared_queries_round_trip,
    errors_carry_postgres_sqlstates,
    metrics_count_queries_and_errors,
    acknowledged_commits_survive_sigkill,
    statement_and_idle_transaction_timeouts,
    a_client_gone_mid_transaction_leaves_nothing_behind,
    current_user_is_the_session_user,
    explain_shows_the_plans_of_the_nodes_a_statement_runs_on,
    sequences_are_one_for_every_session_and_survive_a_crash,
    a_pg_dump_restore_numbers_new_rows_from_its_sequences,
);

async fn next(client: &tokio_postgres::Client, sequence: &str) -> i64 {
    client
        .query_one("SELECT nextval($1)", &[&sequence])
        .await
        .expect("nextval")
        .get(0)
}

/// CREATE SEQUENCE makes one sequence for the cluster, kept by the proxy on one node: every
/// session of every backend draws from it, never a value twice (concurrently too), `currval`
/// and `lastval` are the session's own, draws are not undone by a rollback, and after a
/// SIGKILL the sequence goes on past every value it handed out.
async fn sequences_are_one_for_every_session_and_survive_a_crash(backend: Backend) {
    let Some(mut cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute("CREATE SEQUENCE orders_seq START 100 INCREMENT BY 10")
        .await
        .expect("create sequence");
    let other = cluster.connect().await;
    assert_eq!(next(&client, "orders_seq").await, 100);
    assert_eq!(next(&other, "public.orders_seq").await, 110);
    let row = client
        .query_one("SELECT currval('orders_seq'), lastval()", &[])
        .await
        .expect("currval");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (100, 100));
    client
        .batch_execute("BEGIN; SELECT nextval('orders_seq'); ROLLBACK")
        .await
        .expect("draw in a rolled back transaction");
    assert_eq!(next(&other, "orders_seq").await, 130);
    let error = cluster
        .connect()
        .await
        .query_one("SELECT currval('orders_seq')", &[])
        .await
        .expect_err("no draw in this session");
    assert_eq!(sqlstate(&error), "55000", "{error:?}");

    let mut drawers = Vec::new();
    for _ in 0..4 {
        let client = cluster.connect().await;
        drawers.push(tokio::spawn(async move {
            let mut values = Vec::new();
            for _ in 0..25 {
                values.push(next(&client, "orders_seq").await);
            }
            values
        }));
    }
    let mut drawn = Vec::new();
    for drawer in drawers {
        drawn.extend(drawer.await.expect("drawer"));
    }
    drawn.sort_unstable();
    drawn.dedup();
    assert_eq!(drawn.len(), 100, "a value was handed out twice");
    assert!(drawn[0] > 130);
    let largest = drawn[99];

    client
        .batch_execute("SELECT setval('orders_seq', 5000)")
        .await
        .expect("setval");
    assert_eq!(next(&client, "orders_seq").await, 5010);
    let error = client
        .batch_execute("CREATE SEQUENCE orders_seq")
        .await
        .expect_err("exists");
    assert_eq!(sqlstate(&error), "42P07", "{error:?}");
    assert!(largest < 5010);
    client
        .batch_execute("ALTER SEQUENCE orders_seq INCREMENT BY 1 RESTART WITH 7")
        .await
        .expect("alter sequence");
    assert_eq!(next(&client, "orders_seq").await, 7);
    assert_eq!(next(&other, "orders_seq").await, 8);
    let error = client
        .batch_execute("ALTER SEQUENCE orders_seq MINVALUE 10")
        .await
        .expect_err("the current value is below it");
    assert_eq!(sqlstate(&error), "22023", "{error:?}");

    drop((client, other));
    cluster.crash_and_restart();
    let client = cluster.connect().await;
    assert_eq!(next(&client, "orders_seq").await, 9);
    client
        .batch_execute("DROP SEQUENCE orders_seq")
        .await
        .expect("drop");
    let error = client
        .query_one("SELECT nextval('orders_seq')", &[])
        .await
        .expect_err("dropped");
    assert!(
        matches!(sqlstate(&error).as_str(), "42P01" | "0A000"),
        "{error:?}"
    );
}

/// What `pg_dump` writes for a table with a serial column, preamble included (`author` is
/// replaced by the table to restore).
const PG_DUMP_SCRIPT: &str = "\
SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;
SET default_tablespace = '';
SET default_table_access_method = heap;
CREATE TABLE public.author (
    id integer NOT NULL,
    name text NOT NULL
);
ALTER TABLE public.author OWNER TO mycelium;
CREATE SEQUENCE public.author_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER TABLE public.author_id_seq OWNER TO mycelium;
ALTER SEQUENCE public.author_id_seq OWNED BY public.author.id;
ALTER TABLE ONLY public.author ALTER COLUMN id SET DEFAULT nextval('public.author_id_seq'::regclass);
COPY public.author (id, name) FROM stdin;
1\tLe Guin
2\tLem
\\.
SELECT pg_catalog.setval('public.author_id_seq', 2, true);
ALTER TABLE ONLY public.author
    ADD CONSTRAINT author_pkey PRIMARY KEY (id);
";

/// Restores [`PG_DUMP_SCRIPT`] for table `table` with psql, in one transaction
/// (`--single-transaction`) or statement by statement, and checks that psql reported nothing.
async fn restore_pg_dump(cluster: &Cluster, table: &str, single_transaction: bool) {
    let script = tempfile::NamedTempFile::new().expect("script file");
    std::fs::write(script.path(), PG_DUMP_SCRIPT.replace("author", table)).expect("write");
    let mut psql = tokio::process::Command::new("psql");
    psql.env("PGPASSWORD", crate::harness::PASSWORD)
        .env("PGSSLMODE", "disable")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &cluster.conn_string(),
        ]);
    if single_transaction {
        psql.arg("--single-transaction");
    }
    let restore = psql
        .arg("-f")
        .arg(script.path())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run psql");
    assert!(
        restore.status.success() && restore.stderr.is_empty(),
        "the restore of {table} failed: {}{}",
        String::from_utf8_lossy(&restore.stdout),
        String::from_utf8_lossy(&restore.stderr)
    );
}

/// A pg_dump script restores through psql without an error on every backend, statement by
/// statement and in one transaction, and new rows then take their ids from the restored
/// sequence, however they come: INSERT ... VALUES of one row or several, COPY and INSERT ...
/// SELECT leaving the column out. `currval` and `lastval` see those draws, and `nextval` goes
/// on from them.
async fn a_pg_dump_restore_numbers_new_rows_from_its_sequences(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    restore_pg_dump(&cluster, "author", true).await;
    restore_pg_dump(&cluster, "editor", false).await;

    let client = cluster.connect().await;
    let id: i32 = client
        .query_one(
            "INSERT INTO editor (name) VALUES ('Gorodischer') RETURNING id",
            &[],
        )
        .await
        .expect("insert into the table restored statement by statement")
        .get(0);
    assert_eq!(id, 3);
    let id: i32 = client
        .query_one(
            "INSERT INTO author (name) VALUES ('Strugatsky') RETURNING id",
            &[],
        )
        .await
        .expect("insert one row")
        .get(0);
    assert_eq!(id, 3, "the default draws from the restored sequence");
    client
        .batch_execute("INSERT INTO author (name) VALUES ('Tarkovsky'), ('Bulychev')")
        .await
        .expect("insert two rows");
    let row = client
        .query_one("SELECT currval('author_id_seq'), lastval()", &[])
        .await
        .expect("currval");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (5, 5));
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY author (name) FROM STDIN")
        .await
        .expect("copy in");
    futures::pin_mut!(sink);
    futures::SinkExt::send(&mut sink, bytes::Bytes::from_static(b"Efremov\nBelyaev\n"))
        .await
        .expect("copy rows");
    assert_eq!(sink.finish().await.expect("copy done"), 2);
    client
        .batch_execute("INSERT INTO author (name) SELECT 'Kir ' || name FROM author WHERE id = 1")
        .await
        .expect("insert ... select");
    assert_eq!(next(&client, "author_id_seq").await, 9);
    // nextval and currval written among the values are the proxies' sequence's too.
    let ids: Vec<i32> = client
        .query(
            "INSERT INTO editor (id, name) VALUES (nextval('author_id_seq'), 'Ellison'), \
             (currval('public.author_id_seq') + 100, 'Le Guin') RETURNING id",
            &[],
        )
        .await
        .expect("nextval and currval among the values")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(ids, [10, 110]);
    let rows: Vec<(i32, String)> = client
        .query("SELECT id, name FROM author ORDER BY id", &[])
        .await
        .expect("read back")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let expected = [
        "Le Guin",
        "Lem",
        "Strugatsky",
        "Tarkovsky",
        "Bulychev",
        "Efremov",
        "Belyaev",
        "Kir Le Guin",
    ];
    let expected: Vec<(i32, String)> = (1..)
        .zip(expected.iter().map(|name| (*name).to_owned()))
        .collect();
    assert_eq!(rows, expected);
    let error = client
        .query("INSERT INTO author (name) SELECT 'x' RETURNING id", &[])
        .await
        .expect_err("the proxy's INSERT ... SELECT returns nothing");
    assert_eq!(sqlstate(&error), "0A000", "{error:?}");

    // A column default still names the sequence: dropping it fails as on Postgres, whether
    // the default is on PostgreSQL nodes (their stand-in carries the dependency) or SQLite
    // nodes (the proxy looks for it).
    let error = client
        .batch_execute("DROP SEQUENCE author_id_seq")
        .await
        .expect_err("a default still names the sequence");
    assert_eq!(sqlstate(&error), "2BP01", "{error:?}");
    assert_eq!(
        error.as_db_error().and_then(|e| e.detail()),
        Some("default value for column id of table author depends on sequence author_id_seq"),
    );
    assert_eq!(next(&client, "author_id_seq").await, 11, "still kept");
    if matches!(backend, Backend::Postgres) {
        client
            .batch_execute("BEGIN; DROP SEQUENCE author_id_seq CASCADE; COMMIT")
            .await
            .expect("CASCADE drops the nodes' defaults");
    } else {
        let error = client
            .batch_execute("DROP SEQUENCE author_id_seq CASCADE")
            .await
            .expect_err("SQLite nodes' defaults are not dropped by CASCADE");
        assert_eq!(sqlstate(&error), "0A000", "{error:?}");
        client
            .batch_execute(
                "BEGIN; ALTER TABLE author ALTER COLUMN id DROP DEFAULT; \
                 DROP SEQUENCE author_id_seq; COMMIT",
            )
            .await
            .expect("drop the default, then the sequence");
    }
    client
        .batch_execute("CREATE TABLE author_id_seq (x int)")
        .await
        .expect("the name is free on every node");
    let error = client
        .batch_execute("INSERT INTO author (name) VALUES ('Zamyatin')")
        .await
        .expect_err("the default is gone");
    assert_eq!(sqlstate(&error), "23502", "{error:?}");
}

/// The lines of an EXPLAIN, sent with the simple protocol.
async fn plan(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .expect(sql)
        .into_iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// EXPLAIN goes where its statement would: one node's own plan (SQLite's or PostgreSQL's) for
/// a statement on one shard, each node's under a line naming it for one that scatters. With
/// ANALYZE a write really runs, on the primaries, as it would alone; without, nothing runs.
async fn explain_shows_the_plans_of_the_nodes_a_statement_runs_on(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE s (id int PRIMARY KEY, v text) WITH (mycelium.shard_keys = 'id', \
             mycelium.shards = 6, mycelium.replication_factor = 0.3);
             INSERT INTO s SELECT g, 'x' FROM generate_series(1, 20) g;",
        )
        .await
        .expect("create and fill");
    let scans = |lines: &[String]| {
        lines.iter().any(|l| {
            let l = l.to_lowercase();
            l.contains("scan") || l.contains("search")
        })
    };

    let one = plan(&client, "EXPLAIN SELECT * FROM s WHERE id = 7").await;
    assert!(scans(&one) && !one[0].starts_with("Mycelium"), "{one:?}");
    let rows = client
        .query("EXPLAIN SELECT v FROM s WHERE id = $1", &[&7i32])
        .await
        .expect("explain with a parameter");
    assert_eq!(rows[0].columns()[0].name(), "QUERY PLAN");

    let all = plan(&client, "EXPLAIN (COSTS OFF) SELECT * FROM s").await;
    let mut nodes: Vec<&str> = all
        .iter()
        .filter_map(|l| l.strip_prefix("  ->  Node "))
        .collect();
    assert_eq!(all[0], format!("Mycelium Append  ({} nodes)", nodes.len()));
    nodes.sort_unstable();
    nodes.dedup();
    assert!(nodes.len() >= 2, "{all:?}");
    for section in all[1..].split(|l| l.starts_with("  ->  Node ")).skip(1) {
        assert!(scans(section), "{all:?}");
    }

    plan(&client, "EXPLAIN UPDATE s SET v = 'never'").await;
    let analyzed = plan(
        &client,
        "EXPLAIN ANALYZE UPDATE s SET v = 'z' WHERE id <= 4",
    )
    .await;
    assert!(analyzed[0].starts_with("Mycelium Append"), "{analyzed:?}");
    let count = |sql: &'static str| {
        let client = &client;
        async move {
            let row = client.query_one(sql, &[]).await.expect(sql);
            row.get::<_, i64>(0)
        }
    };
    assert_eq!(count("SELECT count(*) FROM s WHERE v = 'z'").await, 4);
    assert_eq!(count("SELECT count(*) FROM s WHERE v = 'never'").await, 0);
    // Each row still on one node: the write ran on the primaries only.
    assert_eq!(cluster.counts_on_nodes("s").await.iter().sum::<i64>(), 20);

    client
        .batch_execute("BEGIN READ ONLY")
        .await
        .expect("begin");
    let error = client
        .batch_execute("EXPLAIN (ANALYZE) DELETE FROM s WHERE id = 1")
        .await
        .expect_err("a write in a read-only transaction");
    assert_eq!(sqlstate(&error), "25006", "{error:?}");
    client.batch_execute("ROLLBACK").await.expect("rollback");
    let error = client
        .batch_execute("EXPLAIN ANALYZE INSERT INTO s SELECT id + 100, v FROM s")
        .await
        .expect_err("an INSERT ... SELECT the proxy would split");
    assert_eq!(sqlstate(&error), "0A000", "{error:?}");
    assert_eq!(count("SELECT count(*) FROM s").await, 20);
}

async fn simple_and_prepared_queries_round_trip(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
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

    // A statement prepared before its table changed shape fails as in Postgres (its rows
    // would not match the columns the client was told of); one prepared after sees the new
    // column, in any session.
    let stale = client
        .prepare("SELECT * FROM users WHERE id = $1")
        .await
        .expect("prepare");
    assert_eq!(stale.columns().len(), 4);
    let other = cluster.connect().await;
    other
        .batch_execute("ALTER TABLE users ADD COLUMN email text DEFAULT 'none'")
        .await
        .expect("alter");
    let error = client
        .query(&stale, &[&1i64])
        .await
        .expect_err("a statement prepared before the ALTER");
    assert_eq!(sqlstate(&error), "0A000", "{error:?}");
    for session in [&client, &other] {
        let fresh = session
            .prepare("SELECT * FROM users WHERE id = $1")
            .await
            .expect("prepare again");
        assert_eq!(fresh.columns().len(), 5);
        let row = session
            .query_one(&fresh, &[&1i64])
            .await
            .expect("the statement prepared after the ALTER");
        assert_eq!(row.get::<_, &str>(4), "none");
    }
}

async fn errors_carry_postgres_sqlstates(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
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

    // Read-only transactions refuse writes, whatever the nodes' backend would do.
    for (setup, sql) in [
        ("BEGIN READ ONLY", "INSERT INTO t VALUES (9, 'r')"),
        (
            "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY",
            "CREATE TABLE never (a int)",
        ),
        (
            "SET default_transaction_read_only = on",
            "UPDATE t SET v = 'r' WHERE id = 1",
        ),
    ] {
        client.batch_execute(setup).await.expect(setup);
        let error = client.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&error), "25006", "{sql}: {error:?}");
        client
            .batch_execute("ROLLBACK; RESET default_transaction_read_only")
            .await
            .expect("end the read-only transaction");
    }
    let rows = client
        .query("SELECT v FROM t ORDER BY id", &[])
        .await
        .expect("read back");
    let values: Vec<&str> = rows.iter().map(|r| r.get(0)).collect();
    assert!(!values.contains(&"r"), "{values:?}");
}

async fn metrics_count_queries_and_errors(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
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
    assert!(cluster.node_metric("mycelium_node_requests_total{kind=\"execute\"}") >= 4.0);
    assert_eq!(
        cluster.node_metric("mycelium_node_errors_total{sqlstate=\"42P01\"}"),
        1.0
    );
    assert!(
        text.contains("process_resident_memory_bytes"),
        "process metrics are exported"
    );
}

async fn acknowledged_commits_survive_sigkill(backend: Backend) {
    let Some(mut cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE ledger (id int PRIMARY KEY, amount bigint NOT NULL);
             CREATE TABLE sharded (k bigint PRIMARY KEY, v text)
               WITH (mycelium.shard_keys = 'k', mycelium.shards = 4)",
        )
        .await
        .expect("create");
    let insert = client
        .prepare("INSERT INTO ledger VALUES ($1, $2)")
        .await
        .expect("prepare");
    for id in 0..200i32 {
        client
            .execute(&insert, &[&id, &(i64::from(id) * 3)])
            .await
            .expect("insert");
        client
            .execute(
                "INSERT INTO sharded (k, v) VALUES ($1, $2)",
                &[&i64::from(id), &format!("v{id}")],
            )
            .await
            .expect("insert sharded");
    }
    // An open transaction that was never committed must vanish.
    client
        .batch_execute("BEGIN; INSERT INTO ledger VALUES (1000, 1);")
        .await
        .expect("open txn");
    drop(client);
    cluster.crash_and_restart();
    let client = cluster.connect().await;
    // 3 * (0 + 1 + ... + 199) = 59700; the uncommitted row 1000 is gone.
    assert_eq!(
        crate::harness::text_rows(&client, "SELECT count(*), sum(amount), max(id) FROM ledger")
            .await,
        ["200|59700|199"]
    );
    assert_eq!(
        crate::harness::text_rows(&client, "SELECT count(*), min(k), max(k) FROM sharded").await,
        ["200|0|199"]
    );
}

async fn statement_and_idle_transaction_timeouts(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute("SET statement_timeout = '200ms'")
        .await
        .expect("set timeout");
    let slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) \
                SELECT count(*) FROM c";
    let error = client.simple_query(slow).await.expect_err("times out");
    assert_eq!(sqlstate(&error), "57014");
    assert!(
        format!("{error:?}").contains("statement timeout"),
        "{error:?}"
    );
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("alive")
        .get(0);
    assert_eq!(one, 1);
    let error = client
        .batch_execute("SET statement_timeout = 'soon'")
        .await
        .expect_err("bad value");
    assert_eq!(sqlstate(&error), "22023");

    client
        .batch_execute("SET idle_in_transaction_session_timeout = '300ms'; BEGIN")
        .await
        .expect("begin");
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert!(
        client.simple_query("SELECT 1").await.is_err(),
        "an idle transaction past the timeout ends the session"
    );
}

#[tokio::test]
async fn audit_log_records_logins_ddl_and_refusals() {
    let cluster = Cluster::start();
    let wrong = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=mycelium password=wrong dbname=mycelium",
            cluster.port
        ),
        tokio_postgres::NoTls,
    )
    .await;
    assert!(wrong.is_err());
    let client = cluster.connect().await;
    client
        .batch_execute("CREATE TABLE audited (id int PRIMARY KEY, note text DEFAULT 'hunter2')")
        .await
        .expect("ddl");
    let _ = client.simple_query("LISTEN channel").await;
    client.simple_query("SELECT 1").await.expect("plain query");
    let path = cluster.data_path().join("audit.log");
    let mut events: Vec<serde_json::Value> = Vec::new();
    for _ in 0..50 {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        events = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if events.len() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        kinds,
        vec!["auth_failure", "auth_success", "ddl", "refused"],
        "{events:?}"
    );
    assert!(
        events[0]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:"))
    );
    let ddl = events[2]["statement"].as_str().unwrap_or_default();
    assert!(
        ddl.contains("DEFAULT '***'") && !ddl.contains("hunter2"),
        "{ddl}"
    );
    assert_eq!(events[3]["sqlstate"], "0A000");
    let whole = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        !whole.contains("wrong") && !whole.contains("hunter2"),
        "no secrets in the log"
    );
}

#[tokio::test]
async fn per_user_connection_and_rate_limits() {
    let cluster = Cluster::start_with_env(&[
        ("MYCELIUM_PROXY__MAX_CONNECTIONS_PER_USER", "1"),
        ("MYCELIUM_PROXY__RATE_LIMIT_PER_USER", "20"),
    ]);
    let client = cluster.connect().await;
    let second = tokio_postgres::connect(&cluster.conn_string(), tokio_postgres::NoTls).await;
    let error = second
        .err()
        .expect("a second session of the same user is refused");
    assert_eq!(sqlstate(&error), "53300");
    let mut refused = 0;
    for _ in 0..60 {
        if let Err(e) = client.simple_query("SELECT 1").await {
            assert_eq!(sqlstate(&e), "53400");
            refused += 1;
        }
    }
    assert!(
        refused >= 30,
        "most of 60 back-to-back statements exceed 20/s: {refused}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(
        client.simple_query("SELECT 1").await.is_ok(),
        "the budget refills"
    );
}

#[test]
fn configured_tls_certificate_is_used_instead_of_a_generated_one() {
    // A first cluster generates a self-signed pair; a second is pointed at copies of it.
    let first = Cluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("mine.crt"), dir.path().join("mine.key"));
    std::fs::copy(first.data_path().join("server.crt"), &cert).expect("copy cert");
    std::fs::copy(first.data_path().join("server.key"), &key).expect("copy key");
    let cert_text = cert.to_string_lossy().into_owned();
    let key_text = key.to_string_lossy().into_owned();
    let second = Cluster::start_with_env(&[
        ("MYCELIUM_PROXY__TLS_CERT", cert_text.as_str()),
        ("MYCELIUM_PROXY__TLS_KEY", key_text.as_str()),
    ]);
    assert!(
        !second.data_path().join("server.crt").exists(),
        "no certificate is generated when one is configured"
    );
    let output = std::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=mycelium dbname=mycelium sslmode=require",
            second.port
        ))
        .args(["-X", "-A", "-t", "-c", "SELECT 42"])
        .env("PGPASSWORD", crate::harness::PASSWORD)
        .output()
        .expect("run psql");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.trim().ends_with("42"),
        "stdout: {stdout} stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn sighup_reloads_users_without_dropping_sessions() {
    let alice = "[[users]]\nname = \"alice\"\npassword = \"a-pass\"\n";
    let mut cluster = Cluster::start_with_config(alice);
    let connect = |user: &'static str, password: &'static str, port: u16| async move {
        tokio_postgres::connect(
            &format!("host=127.0.0.1 port={port} user={user} password={password} dbname=mycelium"),
            tokio_postgres::NoTls,
        )
        .await
        .map(|(client, connection)| {
            tokio::spawn(connection);
            client
        })
    };
    let session = connect("alice", "a-pass", cluster.port)
        .await
        .expect("alice logs in");
    let refused = match connect("bob", "b-pass", cluster.port).await {
        Ok(_) => panic!("bob is unknown"),
        Err(e) => e,
    };
    assert_eq!(sqlstate(&refused), "28P01");

    cluster.reload(&format!(
        "{alice}[[users]]\nname = \"bob\"\npassword = \"b-pass\"\n"
    ));
    let mut bob = None;
    for _ in 0..50 {
        if let Ok(client) = connect("bob", "b-pass", cluster.port).await {
            bob = Some(client);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let bob = bob.expect("bob logs in after SIGHUP");
    assert_eq!(
        bob.query_one("SELECT 1", &[])
            .await
            .expect("bob")
            .get::<_, i32>(0),
        1
    );
    // The session opened before the reload is still there.
    assert_eq!(
        session
            .query_one("SELECT 2", &[])
            .await
            .expect("alice")
            .get::<_, i32>(0),
        2
    );

    // A broken file changes nothing.
    cluster.reload("[[users]]\nname = \"\"\n");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        connect("bob", "b-pass", cluster.port).await.is_ok(),
        "bad reload kept the users"
    );
    cluster.stop();
}

/// `current_user` and `session_user` answer the client's user on every backend (PostgreSQL
/// nodes log in as their own role; they put the client's name in its place).
async fn current_user_is_the_session_user(backend: Backend) {
    let config = "[[users]]\nname = \"alice\"\npassword = \"a\"\n[[users]]\nname = \"bob\"\npassword = \"b\"\n";
    let Some(cluster) = Cluster::start_on_with_config(backend, Some(config)) else {
        return;
    };
    let login = |user: &'static str, password: &'static str| {
        let conn = format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname=mycelium",
            cluster.port
        );
        async move {
            let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                .await
                .expect("login");
            tokio::spawn(connection);
            client
        }
    };
    let alice = login("alice", "a").await;
    let bob = login("bob", "b").await;
    for _ in 0..3 {
        let a: String = alice
            .query_one("SELECT current_user", &[])
            .await
            .expect("alice")
            .get(0);
        let b: String = bob
            .query_one("SELECT session_user", &[])
            .await
            .expect("bob")
            .get(0);
        assert_eq!((a.as_str(), b.as_str()), ("alice", "bob"));
    }
}

/// A client that disconnects right after a statement inside a transaction: its node connection
/// must not go back to the pool with the transaction open, where the next client's statements
/// (and COMMIT) would join it.
async fn a_client_gone_mid_transaction_leaves_nothing_behind(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let setup = cluster.connect().await;
    setup
        .batch_execute("CREATE TABLE left_behind (id int PRIMARY KEY)")
        .await
        .expect("create");
    for round in 0..20 {
        let (leaver, connection) =
            tokio_postgres::connect(&cluster.conn_string(), tokio_postgres::NoTls)
                .await
                .expect("connect");
        let task = tokio::spawn(connection);
        leaver.batch_execute("BEGIN").await.expect("begin");
        leaver
            .execute("INSERT INTO left_behind VALUES ($1)", &[&(-1 - round)])
            .await
            .expect("insert");
        drop(leaver);
        let _ = task.await;
        setup
            .execute("INSERT INTO left_behind VALUES ($1)", &[&round])
            .await
            .expect("insert after the other client left");
    }
    let ids: Vec<i32> = setup
        .query("SELECT id FROM left_behind ORDER BY id", &[])
        .await
        .expect("select")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, (0..20).collect::<Vec<i32>>());
}

async fn try_lock(client: &tokio_postgres::Client, sql: &str, key: i64) -> bool {
    client
        .query_one(sql, &[&key])
        .await
        .expect(sql)
        .get::<_, bool>(0)
}

/// Advisory locks are held by the proxy, whatever node a call would have run on: a session's
/// lock excludes the others until it unlocks, its transaction ends (xact locks) or it goes; a
/// blocked lock waits, and a statement_timeout ends the wait.
#[tokio::test]
async fn advisory_locks_exclude_other_sessions_until_released() {
    let cluster = Cluster::start();
    let holder = cluster.connect().await;
    let other = cluster.connect().await;
    const TRY: &str = "SELECT pg_try_advisory_lock($1)";
    const TRY_SHARED: &str = "SELECT pg_try_advisory_lock_shared($1)";

    holder
        .batch_execute("SELECT pg_advisory_lock(42)")
        .await
        .expect("lock");
    assert!(!try_lock(&other, TRY, 42).await);
    assert!(!try_lock(&other, TRY_SHARED, 42).await);
    assert!(try_lock(&other, TRY, 43).await, "another key is free");
    // The holder takes it again (it now holds it twice).
    assert!(try_lock(&holder, TRY, 42).await);

    let waiter = tokio::spawn(async move {
        other
            .batch_execute("SELECT pg_advisory_lock(42)")
            .await
            .map(|()| other)
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the lock did not wait");
    assert!(try_lock(&holder, "SELECT pg_advisory_unlock($1)", 42).await);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "one unlock of two released it");
    assert!(try_lock(&holder, "SELECT pg_advisory_unlock($1)", 42).await);
    let other = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
        .await
        .expect("the waiter got the lock")
        .expect("the waiting task")
        .expect("lock after the unlock");
    assert!(!try_lock(&holder, TRY, 42).await);
    // Unlocking what one does not hold answers false.
    assert!(!try_lock(&holder, "SELECT pg_advisory_unlock($1)", 42).await);

    // A session that goes releases what it held.
    drop(other);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !try_lock(&holder, TRY, 42).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the lock outlived its session"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Transaction-level locks go when the transaction ends.
    let third = cluster.connect().await;
    third
        .batch_execute("BEGIN; SELECT pg_advisory_xact_lock(7)")
        .await
        .expect("xact lock");
    assert!(!try_lock(&holder, TRY, 7).await);
    third.batch_execute("COMMIT").await.expect("commit");
    assert!(try_lock(&holder, TRY, 7).await);

    // A wait ends with the statement's timeout.
    let error = third
        .batch_execute("SET statement_timeout = '300ms'; SELECT pg_advisory_lock(7)")
        .await
        .expect_err("waits past the timeout");
    assert_eq!(sqlstate(&error), "57014", "{error:?}");

    let error = third
        .batch_execute("SELECT pg_advisory_lock(n) FROM generate_series(1, 2) n")
        .await
        .expect_err("a lock per row");
    assert_eq!(sqlstate(&error), "0A000", "{error:?}");
}
