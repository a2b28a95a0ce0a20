//! The clients people actually point at a Postgres server, against a real `mycelium up`: psql
//! scripts (tests/sql/*.sql), pgbench, psycopg 3 and SQLAlchemy 2 (tests/python/test_clients.py),
//! the sqlite3 CLI on the node's file, tokio-postgres for binary formats, portals, COPY and
//! cancellation, and raw sockets that misbehave.
//!
//! Needs `psql`, `pgbench` and `sqlite3` on PATH, and `MYCELIUM_TEST_PYTHON` (set by
//! tests/run.sh) for the Python test.

use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures::{SinkExt, TryStreamExt};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use crate::harness::{Backend, Cluster, PASSWORD, sqlstate};
use crate::processes::on_every_backend;

// Scenarios whose statements reach the nodes run on SQLite nodes, on PostgreSQL nodes and on a
// mix (`Cluster::start_on`); those about the front door alone (TLS, passwords, raw sockets
// before a statement, the connection limit) run once, on SQLite nodes.
on_every_backend!(
    psql_basics_types_and_crud,
    psql_returning_and_on_conflict,
    psql_transactions_savepoints_and_multi_statement_lines,
    psql_date_time_arithmetic,
    psql_jsonb_operators,
    psql_copy_text_and_csv,
    psql_copy_table_to_stdout,
    psql_meta_commands_list_and_describe_tables,
    psycopg3_and_sqlalchemy2,
    pgbench_tpcb_in_every_query_mode_keeps_balances_consistent,
    rows_survive_restart_and_are_in_the_nodes_stores,
    cancel_request_stops_a_running_query,
    binary_parameters_and_results_for_every_type,
    numeric_values_are_rounded_to_their_scale_and_checked,
    casts_and_coalesce_around_aggregates_read_across_nodes,
    arithmetic_on_aggregates_reads_across_nodes,
    length_and_unique_violations_carry_sqlstates,
    serial_column_that_is_not_the_primary_key,
    portal_row_limits_fetch_in_batches,
    error_in_a_transaction_block_needs_rollback,
    multi_statement_query_runs_in_one_implicit_transaction,
    copy_in_and_copy_out,
);

// --- helpers: processes -------------------------------------------------------------------------

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn sql_file(name: &str) -> PathBuf {
    repo_root().join("tests").join("sql").join(name)
}

/// A libpq connection string without the password (psql and pgbench get it from PGPASSWORD).
fn conninfo(cluster: &Cluster, sslmode: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user=mycelium dbname=mycelium sslmode={sslmode}",
        cluster.port
    )
}

/// A libpq client command with a clean environment: no PG* variables leak in from the caller.
fn libpq_command(program: &str, password: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            command.env_remove(&name);
        }
    }
    command
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs a command to completion within `timeout`, whatever its exit status.
pub(crate) async fn run(
    mut command: tokio::process::Command,
    what: &str,
    timeout: Duration,
) -> Output {
    match tokio::time::timeout(timeout, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("cannot run {what}: {e}"),
        Err(_) => panic!("{what} did not finish within {timeout:?}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// psql in the mode the scripts expect: no psqlrc, quiet (no command tags), unaligned,
/// tuples only, stop at the first error.
pub(crate) fn psql(cluster: &Cluster, sslmode: &str, password: &str) -> tokio::process::Command {
    let mut command = libpq_command("psql", password);
    command
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(conninfo(cluster, sslmode));
    command
}

/// How psql's output differs from what PostgreSQL prints, or None. Every line of the scripts'
/// output starts with a label, so lines are matched as a multiset first, then checked for order.
fn line_diff(actual: &str, expected: &[&str]) -> Option<String> {
    let actual: Vec<&str> = actual.lines().collect();
    if actual == expected {
        return None;
    }
    let mut unmatched: Vec<&str> = actual.clone();
    let mut missing = Vec::new();
    for line in expected {
        match unmatched.iter().position(|a| a == line) {
            Some(i) => {
                unmatched.remove(i);
            }
            None => missing.push(*line),
        }
    }
    let mut report = String::new();
    for line in &missing {
        let _ = writeln!(report, "  missing:    {line:?}");
    }
    for line in &unmatched {
        let _ = writeln!(report, "  unexpected: {line:?}");
    }
    if missing.is_empty() && unmatched.is_empty() {
        let _ = writeln!(report, "  the same lines in another order");
    }
    Some(report)
}

/// Runs tests/sql/`file` and compares every line psql prints with `expected` (what PostgreSQL 15
/// prints for the same script). With `stop_on_error` psql stops at the first error (and exits
/// with 3); without it every statement runs, and any ERROR on stderr fails the test, so one
/// unsupported statement does not hide the results of the others.
async fn psql_script(backend: Backend, file: &str, stop_on_error: bool, expected: &[&str]) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let mut command = psql(&cluster, "disable", PASSWORD);
    if !stop_on_error {
        command.args(["-v", "ON_ERROR_STOP=0"]);
    }
    command.arg("-f").arg(sql_file(file));
    let output = run(
        command,
        &format!("psql -f {file}"),
        Duration::from_secs(120),
    )
    .await;
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    let diff = line_diff(&stdout, expected);
    if !output.status.success() || stderr.contains("ERROR:") || diff.is_some() {
        panic!(
            "tests/sql/{file}: psql exited with {}\n--- stderr ---\n{stderr}\n--- differences from PostgreSQL ---\n{}\n--- stdout ---\n{stdout}",
            output.status,
            diff.unwrap_or_else(|| "  none\n".to_owned()),
        );
    }
}

// --- 1. psql --------------------------------------------------------------------------------------

async fn psql_basics_types_and_crud(backend: Backend) {
    psql_script(
        backend,
        "basics.sql",
        true,
        &[
            r#"row|1|A-1|apple|10|9000000000|t|0.25|12.50|2024-01-02 03:04:05|2024-01-02 01:04:05+00|2024-12-31|\xdeadbeef|{"tags": ["fruit", "fresh"], "color": "red"}|a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|none"#,
            "defaults|2|0|t|t|none|t|t|t|t",
            "numeric|8.00|16.00|24.00|-0.0015",
            "where|cheese",
            r#"json|red|fresh|["fruit", "fresh"]"#,
            "bytea|4|t",
            "dates|2024-01-02|2024-01-02|t|f",
            r#"casts|1|2|42|5|t|12x|2024-02-29|4|7.13|{"a": [true, null], "b": 1}"#,
            "after|A-1|15|t|restocked",
            "after|B-2|0|f|none",
            "count|2|15|apple|9000000000",
            "serial|4",
            "bigserial|1|start|2000-01-01",
            "bigserial|2|stop|2030-06-15",
            "bigserial|10000000000|far|2000-01-01",
            "group|f|1|0",
            "group|t|2|16",
            "limit|D-4",
            "limit|B-2",
            "nulls|none|t|t",
            "recreated|0",
        ],
    )
    .await;
}

async fn psql_returning_and_on_conflict(backend: Backend) {
    psql_script(
        backend,
        "upsert.sql",
        true,
        &[
            "ins|a|1|1",
            "b|2|1",
            "upd|a|10|2",
            "upd2|a|30|3",
            "new|c|3",
            "updret|c|300|301",
            "delret|b|2|1",
            "kv|a|30|3",
            "kv|c|300|1",
            "users|1|ann@example.com|Ann|0",
            "users|2|bob@example.com|Bob|0",
            "byemail|1|ann@example.com|Annie|1",
            "final|ann@example.com|Annie|1",
            "final|bob@example.com|Bob|0",
            "total|2",
        ],
    )
    .await;
}

async fn psql_transactions_savepoints_and_multi_statement_lines(backend: Backend) {
    psql_script(
        backend,
        "txn.sql",
        true,
        &[
            "committed|1|100",
            "committed|2|50",
            "in-tx|1|70",
            "in-tx|2|80",
            "rolled-back|1|100",
            "rolled-back|2|50",
            "before-rb|4",
            "savepoints|1|100",
            "savepoints|2|50",
            "savepoints|3|7",
            "savepoints|5|0",
            "same-line|2",
            "same-line-rb|0",
            "one-query|8|20",
            "one-query-commit|9|3",
            "deleted-in-tx|0",
            "total|7|182",
        ],
    )
    .await;
}

async fn psql_date_time_arithmetic(backend: Backend) {
    psql_script(
        backend,
        "datetime.sql",
        false,
        &[
            "date-arith|1|2024-02-29|2024-02-27|58",
            "date-arith|2|2024-03-02|2024-02-29|60",
            "interval|1|2024-02-01 12:00:00|2024-01-31 14:30:00+00|2024-02-29 10:00:00",
            "interval|2|2024-01-02 01:59:59.5|2024-03-09 23:30:00+00|2024-01-31 23:59:59.5",
            "extract|1|2024|2|15",
            "extract|2|2023|3|0",
            "trunc|1|2024-01-01 00:00:00|2024-01-31 15:00:00+00",
            "trunc|2|2023-12-01 00:00:00|2024-03-10 00:00:00+00",
            "casts|1|2024-01-31|2024-01-31|2024-02-28 00:00:00",
            "casts|2|2023-12-31|2024-03-10|2024-03-01 00:00:00",
            "now|2",
            "diff|05:00:00",
            "between|1",
        ],
    )
    .await;
}

async fn psql_jsonb_operators(backend: Backend) {
    psql_script(
        backend,
        "json.sql",
        false,
        &[
            r#"arrow|1|"ann"|ann|Oslo"#,
            r#"arrow|2|"bob"|bob|"#,
            r#"path|Oslo|"b""#,
            r#"index|"two"|3.5"#,
            "exists|1",
            "contains|2",
            "typeof|1|object|number",
            "typeof|2|object|null",
            "typeof|3|array|",
            "length|2",
            r#"build|{"k": 1, "v": "x"}|{"a": 1, "b": 2}"#,
            "eq|t",
            "set|32",
        ],
    )
    .await;
}

async fn psql_copy_text_and_csv(backend: Backend) {
    psql_script(
        backend,
        "copy.sql",
        true,
        &[
            "text|1|ann|10.50|2024-01-01|t",
            "text|2|bob||2024-02-01|f",
            r"text|3|back\slash|7.25||t",
            "tab|4|8",
            "csv|5|dee, jr|1.50|f|t|f",
            r#"csv|6|say "hi"||f|f|f"#,
            "csv|7||2.00|t||t",
            "count|7|21.25",
            "copy-out-text",
            "1\tann\t10.50\t2024-01-01\tt",
            "2\tbob\t\\N\t2024-02-01\tf",
            "3\tback\\\\slash\t7.25\t\\N\tt",
            "4\ttab\\there\t0.00\t2024-03-01\tf",
            "copy-out-csv",
            "id,name,score,active",
            r#"5,"dee, jr",1.50,t"#,
            r#"6,"say ""hi""",,f"#,
            "7,,2.00,",
            "copy-out-end",
        ],
    )
    .await;
}

/// `\copy TABLE to stdout` (the table form, not a query) in text and CSV. Rows are compared as
/// a set: COPY of a table has no defined order.
async fn psql_copy_table_to_stdout(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let mut command = psql(&cluster, "disable", PASSWORD);
    command.args([
        "-c",
        "CREATE TABLE pets (id integer PRIMARY KEY, name text, weight numeric(5,1), born date)",
        "-c",
        "INSERT INTO pets VALUES (1, 'rex', 12.5, '2019-05-01'), (2, NULL, 3, NULL), (3, 'tab\there', 0.25, '2020-01-31')",
        "-c",
        r"\copy pets to stdout",
        "-c",
        r"\echo csv",
        "-c",
        r"\copy pets to stdout with (format csv, header)",
    ]);
    let output = run(
        command,
        "psql \\copy pets to stdout",
        Duration::from_secs(60),
    )
    .await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "psql failed: {}\n{}\n{stdout}",
        output.status,
        text(&output.stderr)
    );
    let (text_part, csv_part) = stdout.split_once("csv\n").expect("csv marker in output");
    let mut text_rows: Vec<&str> = text_part.lines().collect();
    text_rows.sort_unstable();
    assert_eq!(
        text_rows,
        [
            "1\trex\t12.5\t2019-05-01",
            "2\t\\N\t3.0\t\\N",
            "3\ttab\\there\t0.3\t2020-01-31"
        ],
        "\\copy pets to stdout (text)"
    );
    let mut csv_rows: Vec<&str> = csv_part.lines().collect();
    assert_eq!(csv_rows.first(), Some(&"id,name,weight,born"), "CSV header");
    csv_rows.remove(0);
    csv_rows.sort_unstable();
    assert_eq!(
        csv_rows,
        [
            "1,rex,12.5,2019-05-01",
            "2,,3.0,",
            "3,tab\there,0.3,2020-01-31"
        ],
        "\\copy pets to stdout (csv)"
    );
}

async fn psql_meta_commands_list_and_describe_tables(backend: Backend) {
    psql_script(
        backend,
        "meta.sql",
        true,
        &[
            "dt",
            "public|accounts|table|mycelium",
            "public|notes|table|mycelium",
            "d-accounts",
            "id|integer||not null|nextval('accounts_id_seq'::regclass)",
            "owner|character varying(32)||not null|",
            "balance|numeric(10,2)||not null|0",
            "opened|timestamp with time zone|||",
            "flags|jsonb|||",
            "d-notes",
            "id|bigint||not null|",
            "body|text|||",
            "dplus-notes",
            "id|bigint||not null||plain|||",
            "body|text||||extended|||",
            "end",
        ],
    )
    .await;
}

#[tokio::test]
async fn psql_over_tls_with_sslmode_require() {
    let cluster = Cluster::start();
    let mut command = psql(&cluster, "require", PASSWORD);
    command.args(["-c", "SELECT 1", "-c", r"\conninfo"]);
    let output = run(command, "psql sslmode=require", Duration::from_secs(60)).await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "psql with sslmode=require failed: {}\n{}",
        output.status,
        text(&output.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("1"),
        "SELECT 1 over TLS; output:\n{stdout}"
    );
    assert!(
        stdout.contains("SSL connection (protocol: TLS"),
        "\\conninfo does not report an SSL connection:\n{stdout}"
    );
}

/// psql prints no SQLSTATE for a failed connection (libpq applies VERBOSITY only once connected),
/// so psql is checked for Postgres' message and tokio-postgres for the SQLSTATE 28P01.
#[tokio::test]
async fn wrong_password_is_refused_with_28p01() {
    let cluster = Cluster::start();
    let mut command = psql(&cluster, "disable", "not-the-password");
    command.args(["-v", "VERBOSITY=verbose", "-c", "SELECT 1"]);
    let output = run(
        command,
        "psql with a wrong password",
        Duration::from_secs(60),
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "psql exit status; stderr: {stderr}"
    );
    assert!(
        stderr.contains(r#"password authentication failed for user "mycelium""#),
        "psql stderr: {stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "psql printed: {}",
        text(&output.stdout)
    );

    let conn = format!(
        "host=127.0.0.1 port={} user=mycelium password=nope dbname=mycelium",
        cluster.port
    );
    let error = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .err()
        .expect("a wrong password must not connect");
    assert_eq!(sqlstate(&error), "28P01", "{error:?}");
    // Each further failure from this address waits longer for its answer (100 ms, 200 ms,
    // 400 ms): a lower bound, which no slow machine can break.
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let error = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
            .await
            .err()
            .expect("a wrong password must not connect");
        assert_eq!(sqlstate(&error), "28P01", "{error:?}");
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(700),
        "three more refusals took only {:?}",
        started.elapsed()
    );
    // The right password still works, and resets the backoff.
    let client = cluster.connect().await;
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("select")
        .get(0);
    assert_eq!(one, 1);
}

// --- 2. psycopg 3 + SQLAlchemy 2 ------------------------------------------------------------------

async fn psycopg3_and_sqlalchemy2(backend: Backend) {
    if std::env::var("MYCELIUM_SKIP_PYTHON").is_ok_and(|v| v == "1") {
        eprintln!("psycopg3_and_sqlalchemy2: skipped because MYCELIUM_SKIP_PYTHON=1");
        return;
    }
    let python = match std::env::var("MYCELIUM_TEST_PYTHON") {
        Ok(python) if !python.is_empty() => python,
        _ => panic!(
            "MYCELIUM_TEST_PYTHON is not set: run the suite with tests/run.sh, which creates \
             tests/python/.venv with psycopg 3 and SQLAlchemy 2 and sets it \
             (or set MYCELIUM_SKIP_PYTHON=1 to skip this test)"
        ),
    };
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let mut command = libpq_command(&python, PASSWORD);
    command
        .arg(repo_root().join("tests/python/test_clients.py"))
        .arg(format!("{} sslmode=disable", cluster.conn_string()))
        .env(
            "MYCELIUM_TEST_BACKEND",
            format!("{backend:?}").to_ascii_lowercase(),
        );
    let output = run(
        command,
        "tests/python/test_clients.py",
        Duration::from_secs(300),
    )
    .await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("ALL CHECKS PASSED"),
        "tests/python/test_clients.py exited with {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        output.status,
        text(&output.stderr)
    );
}

// --- 3. pgbench -------------------------------------------------------------------------------------

fn pgbench(cluster: &Cluster) -> tokio::process::Command {
    let mut command = libpq_command("pgbench", PASSWORD);
    command.args([
        "-h",
        "127.0.0.1",
        "-p",
        &cluster.port.to_string(),
        "-U",
        "mycelium",
    ]);
    command
}

/// The balances and the history: (sum abalance, sum tbalance, sum bbalance, count history,
/// sum delta).
async fn pgbench_sums(client: &tokio_postgres::Client) -> [i64; 5] {
    let queries = [
        "SELECT coalesce(sum(abalance), 0)::bigint FROM pgbench_accounts",
        "SELECT coalesce(sum(tbalance), 0)::bigint FROM pgbench_tellers",
        "SELECT coalesce(sum(bbalance), 0)::bigint FROM pgbench_branches",
        "SELECT count(*) FROM pgbench_history",
        "SELECT coalesce(sum(delta), 0)::bigint FROM pgbench_history",
    ];
    let mut sums = [0i64; 5];
    for (sum, sql) in sums.iter_mut().zip(queries) {
        *sum = client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .get(0);
    }
    sums
}

/// The value after `prefix` on the line that starts with it.
fn pgbench_field<'a>(stdout: &'a str, prefix: &str) -> Option<&'a str> {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .map(str::trim)
}

async fn pgbench_tpcb_in_every_query_mode_keeps_balances_consistent(backend: Backend) {
    let seconds: u64 = std::env::var("MYCELIUM_PGBENCH_SECONDS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("MYCELIUM_PGBENCH_SECONDS is a number of seconds")
        })
        .unwrap_or(10);
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let mut init = pgbench(&cluster);
    init.args(["-i", "-s", "1", "mycelium"]);
    let output = run(init, "pgbench -i -s 1", Duration::from_secs(300)).await;
    assert!(
        output.status.success(),
        "pgbench -i -s 1 failed: {}\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    let client = cluster.connect().await;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_tellers), \
             (SELECT count(*) FROM pgbench_branches), (SELECT count(*) FROM pgbench_history)",
            &[],
        )
        .await
        .expect("row counts after pgbench -i");
    let counts: Vec<i64> = (0..4).map(|i| row.get(i)).collect();
    assert_eq!(
        counts,
        [100_000, 10, 1, 0],
        "accounts, tellers, branches, history after -i"
    );
    assert_eq!(
        pgbench_sums(&client).await,
        [0; 5],
        "balances after pgbench -i"
    );

    for mode in ["simple", "extended", "prepared"] {
        let before = pgbench_sums(&client).await;
        let mut bench = pgbench(&cluster);
        bench.args([
            "-T",
            &seconds.to_string(),
            "-c",
            "4",
            "-j",
            "2",
            "-M",
            mode,
            "mycelium",
        ]);
        let output = run(
            bench,
            &format!("pgbench -M {mode}"),
            Duration::from_secs(seconds + 120),
        )
        .await;
        let stdout = text(&output.stdout);
        let context = format!(
            "pgbench -M {mode} exited with {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            output.status,
            text(&output.stderr)
        );
        assert!(output.status.success(), "{context}");
        let failed = pgbench_field(&stdout, "number of failed transactions:");
        assert!(
            failed.is_some_and(|f| f.starts_with("0 ")),
            "failed transactions: {failed:?}\n{context}"
        );
        let processed: i64 = pgbench_field(&stdout, "number of transactions actually processed:")
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no processed count\n{context}"));
        assert!(processed > 0, "no transaction processed\n{context}");

        // pgbench truncates pgbench_history before each run, so the history is this run's.
        let [a, t, b, history, delta] = pgbench_sums(&client).await;
        assert_eq!(
            history, processed,
            "-M {mode}: pgbench_history rows vs processed transactions"
        );
        assert_eq!(
            a - before[0],
            delta,
            "-M {mode}: change of sum(abalance) vs sum(delta)"
        );
        assert_eq!(
            t - before[1],
            delta,
            "-M {mode}: change of sum(tbalance) vs sum(delta)"
        );
        assert_eq!(
            b - before[2],
            delta,
            "-M {mode}: change of sum(bbalance) vs sum(delta)"
        );
    }
}

// --- 4. restart durability ------------------------------------------------------------------------

type Snapshot = Vec<(
    i32,
    String,
    String,
    DateTime<Utc>,
    Vec<u8>,
    serde_json::Value,
)>;

async fn snapshot(client: &tokio_postgres::Client) -> Snapshot {
    client
        .query(
            "SELECT id, name, amount::text, at, data, doc FROM t ORDER BY id",
            &[],
        )
        .await
        .expect("snapshot")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

async fn rows_survive_restart_and_are_in_the_nodes_stores(backend: Backend) {
    let Some(mut cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (id integer PRIMARY KEY, name text NOT NULL, amount numeric(10,2), \
             at timestamptz, data bytea, doc jsonb);
             CREATE TABLE seq (id serial PRIMARY KEY, v text)",
        )
        .await
        .expect("create");
    let base = DateTime::parse_from_rfc3339("2024-05-06T07:08:09.123456Z")
        .expect("time")
        .with_timezone(&Utc);
    for i in 1..=100i32 {
        let name = format!("row {i} ✓");
        let at = base + chrono::Duration::seconds(i64::from(i) * 3600);
        let data = vec![u8::try_from(i).expect("byte"); usize::try_from(i).expect("len")];
        let doc = serde_json::json!({"i": i, "even": i % 2 == 0});
        client
            .execute(
                "INSERT INTO t (id, name, amount, at, data, doc) VALUES ($1, $2, $3::text::numeric, $4, $5, $6)",
                &[&i, &name, &format!("{i}.{:02}", i % 100), &at, &data, &doc],
            )
            .await
            .expect("insert");
    }
    for sql in [
        "UPDATE t SET name = 'updated' WHERE id = 1",
        "DELETE FROM t WHERE id > 90",
        "BEGIN; UPDATE t SET amount = 0 WHERE id = 2; ROLLBACK",
        "INSERT INTO seq (v) VALUES ('a'), ('b'), ('c')",
    ] {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    let before = snapshot(&client).await;
    assert_eq!(before.len(), 90, "rows before restart");
    assert_eq!(before[0].1, "updated");
    assert_eq!(before[1].2, "2.02");
    drop(client);

    cluster.restart();
    let client = cluster.connect().await;
    let after = snapshot(&client).await;
    assert_eq!(after.len(), 90, "rows after restart");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "a row changed across the restart");
    }
    // The serial sequence continues where it was.
    let id: i32 = client
        .query_one("INSERT INTO seq (v) VALUES ('d') RETURNING id", &[])
        .await
        .expect("insert after restart")
        .get(0);
    assert_eq!(id, 4, "serial value after a restart");
    drop(client);

    // Every row is on the two copies of the default group (tables without a policy), read
    // from each node's own store (SQLite and PostgreSQL nodes replicate alike); the third node
    // holds the schema only.
    for (table, rows) in [("t", 90), ("seq", 4)] {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut counts = cluster.counts_on_nodes(table).await;
            counts.sort_unstable();
            let copies = counts.iter().filter(|&&c| c == rows).count();
            let placed =
                counts[0] == 0 && counts.iter().all(|&c| c == 0 || c == rows) && copies == 2;
            if placed {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "rows of {table} on the nodes: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    cluster.stop();
    if backend != Backend::Sqlite {
        return;
    }
    // SQLite only: the node's file is a plain SQLite database that the sqlite3 CLI reads.
    let file = cluster.node_file();
    assert!(file.exists(), "{} does not exist", file.display());
    assert!(
        file.starts_with(cluster.data_path()),
        "{} is outside the data directory",
        file.display()
    );
    let mut command = tokio::process::Command::new("sqlite3");
    command
        .arg("-batch")
        .arg(&file)
        .arg("SELECT count(*) FROM t; SELECT count(*) FROM seq; PRAGMA integrity_check;");
    let output = run(command, "sqlite3", Duration::from_secs(30)).await;
    assert!(
        output.status.success(),
        "sqlite3 {}: {}\n{}",
        file.display(),
        output.status,
        text(&output.stderr)
    );
    assert_eq!(
        text(&output.stdout).lines().collect::<Vec<_>>(),
        ["90", "4", "ok"],
        "counts of t and seq and integrity_check in {}",
        file.display()
    );
}

// --- 5. cancel --------------------------------------------------------------------------------------

async fn cancel_request_stops_a_running_query(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    let other = cluster.connect().await;
    let token = client.cancel_token();
    let slow = client.query_one(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) \
         SELECT count(*) FROM c",
        &[],
    );
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("send the cancel request");
    };
    let started = Instant::now();
    let (result, ()) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(slow, cancel)
    })
    .await
    .expect("the query was not cancelled within 60 s");
    let error = result.expect_err("the cancelled query must fail");
    assert_eq!(sqlstate(&error), "57014", "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the cancel took {:?}",
        started.elapsed()
    );
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("the session survives a cancel")
        .get(0);
    assert_eq!(one, 1);
    let two: i32 = other
        .query_one("SELECT 2", &[])
        .await
        .expect("another session is untouched")
        .get(0);
    assert_eq!(two, 2);
}

// --- 6. robustness ----------------------------------------------------------------------------------

/// How a misbehaving raw connection ended.
#[derive(Debug)]
struct Ending {
    /// Message types the server sent (the first byte of each message).
    messages: Vec<char>,
    /// The server closed (EOF or reset) within the deadline.
    closed: bool,
}

fn raw_connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect raw socket");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    stream
}

/// Reads what the server sends for up to `deadline`, until it closes.
fn ending(mut stream: TcpStream, deadline: Duration) -> Ending {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let mut closed = false;
    while start.elapsed() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let mut messages = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        messages.push(char::from(bytes[at]));
        let len = bytes
            .get(at + 1..at + 5)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize);
        match len {
            Some(len) if len >= 4 => at += 1 + len,
            _ => break,
        }
    }
    Ending { messages, closed }
}

fn assert_rejected(what: &str, end: &Ending) {
    assert!(
        end.closed || end.messages.contains(&'E'),
        "{what}: the server neither closed the connection nor sent an error: {end:?}"
    );
    assert!(
        !end.messages.contains(&'Z') && !end.messages.contains(&'D'),
        "{what}: the server answered as if the input were valid: {end:?}"
    );
}

/// A backend message: (type, body).
fn read_message(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).expect("message header");
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len.checked_sub(4).expect("message length")];
    stream.read_exact(&mut body).expect("message body");
    (head[0], body)
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&u32::try_from(body.len() + 4).expect("len").to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn startup_packet() -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0mycelium\0database\0mycelium\0\0");
    let mut out = u32::try_from(body.len() + 4)
        .expect("len")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(&body);
    out
}

/// A raw connection through startup and SCRAM-SHA-256, at ReadyForQuery.
fn raw_authenticated(port: u16) -> TcpStream {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    let mut stream = raw_connect(port);
    stream.write_all(&startup_packet()).expect("startup");
    let (kind, body) = read_message(&mut stream);
    assert_eq!(
        (kind, body.get(..4)),
        (b'R', Some(&10u32.to_be_bytes()[..])),
        "AuthenticationSASL"
    );
    let mut scram = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
    let mut initial = b"SCRAM-SHA-256\0".to_vec();
    initial.extend_from_slice(
        &u32::try_from(scram.message().len())
            .expect("len")
            .to_be_bytes(),
    );
    initial.extend_from_slice(scram.message());
    stream
        .write_all(&frame(b'p', &initial))
        .expect("SASLInitialResponse");
    let (kind, body) = read_message(&mut stream);
    assert_eq!(
        (kind, &body[..4]),
        (b'R', &11u32.to_be_bytes()[..]),
        "SASLContinue"
    );
    scram.update(&body[4..]).expect("server-first-message");
    stream
        .write_all(&frame(b'p', scram.message()))
        .expect("SASLResponse");
    let (kind, body) = read_message(&mut stream);
    assert_eq!(
        (kind, &body[..4]),
        (b'R', &12u32.to_be_bytes()[..]),
        "SASLFinal"
    );
    scram.finish(&body[4..]).expect("server signature");
    loop {
        let (kind, body) = read_message(&mut stream);
        assert_ne!(
            kind,
            b'E',
            "error during startup: {}",
            String::from_utf8_lossy(&body)
        );
        if kind == b'Z' {
            break;
        }
    }
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    stream
}

fn misbehave_before_auth(port: u16, bytes: &[u8], close_write: bool) -> Ending {
    let mut stream = raw_connect(port);
    // The server may close before taking everything: that is a fine answer.
    let _ = stream.write_all(bytes);
    if close_write {
        let _ = stream.shutdown(Shutdown::Write);
    }
    ending(stream, Duration::from_secs(10))
}

fn misbehave_after_auth(port: u16, bytes: &[u8], close_write: bool) -> Ending {
    let mut stream = raw_authenticated(port);
    let _ = stream.write_all(bytes);
    if close_write {
        let _ = stream.shutdown(Shutdown::Write);
    }
    ending(stream, Duration::from_secs(10))
}

#[tokio::test]
async fn garbage_and_truncated_messages_close_only_their_connection() {
    let cluster = Cluster::start();
    let before = cluster.connect().await;
    let port = cluster.port;

    // The raw client itself is sound: a valid query on a raw authenticated connection works.
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = raw_authenticated(port);
        stream
            .write_all(&frame(b'Q', b"SELECT 41 + 1\0"))
            .expect("query");
        let mut kinds = Vec::new();
        let mut value = None;
        loop {
            let (kind, body) = read_message(&mut stream);
            kinds.push(char::from(kind));
            if kind == b'D' {
                value = Some(String::from_utf8_lossy(&body[6..]).into_owned());
            }
            if kind == b'Z' {
                break;
            }
        }
        (kinds, value)
    })
    .await
    .expect("raw query");
    assert_eq!(answer.0, ['T', 'D', 'C', 'Z'], "messages for a raw SELECT");
    assert_eq!(answer.1.as_deref(), Some("42"));

    let mut one_gib_startup = 0x4000_0000u32.to_be_bytes().to_vec();
    one_gib_startup.extend_from_slice(&196_608u32.to_be_bytes());
    one_gib_startup.extend_from_slice(b"user\0mycelium\0");
    let mut truncated_startup = 100u32.to_be_bytes().to_vec();
    truncated_startup.extend_from_slice(&196_608u32.to_be_bytes());
    truncated_startup.extend_from_slice(b"user\0myc");
    let mut old_protocol = 8u32.to_be_bytes().to_vec();
    old_protocol.extend_from_slice(&0x0002_0000u32.to_be_bytes());
    let before_auth: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            false,
        ),
        ("0xff bytes", vec![0xff; 64], false),
        ("a 1 GiB startup packet", one_gib_startup, false),
        (
            "a startup length below 8",
            4u32.to_be_bytes().to_vec(),
            false,
        ),
        ("a truncated startup packet", truncated_startup, true),
        ("protocol version 2", old_protocol, false),
    ];
    let mut truncated_query = b"Q".to_vec();
    truncated_query.extend_from_slice(&1000u32.to_be_bytes());
    truncated_query.extend_from_slice(b"SELECT 1");
    let mut huge_query = b"Q".to_vec();
    huge_query.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    huge_query.extend_from_slice(b"SELECT 1");
    let mut short_length = b"Q".to_vec();
    short_length.extend_from_slice(&2u32.to_be_bytes());
    let after_auth: Vec<(&str, Vec<u8>, bool)> = vec![
        ("a truncated Query message", truncated_query, true),
        ("a 2 GiB Query message", huge_query, false),
        ("a message length below 4", short_length, false),
        ("an unknown message type", frame(b'!', b"xyz"), false),
    ];

    for (what, bytes, close_write) in before_auth {
        let end =
            tokio::task::spawn_blocking(move || misbehave_before_auth(port, &bytes, close_write))
                .await
                .expect("raw connection");
        assert_rejected(what, &end);
        let n: i32 = before
            .query_one("SELECT 7", &[])
            .await
            .unwrap_or_else(|e| panic!("the client connected before fails after {what}: {e:?}"))
            .get(0);
        assert_eq!(n, 7);
    }
    for (what, bytes, close_write) in after_auth {
        let end =
            tokio::task::spawn_blocking(move || misbehave_after_auth(port, &bytes, close_write))
                .await
                .expect("raw connection");
        assert_rejected(what, &end);
        let n: i32 = before
            .query_one("SELECT 8", &[])
            .await
            .unwrap_or_else(|e| panic!("the client connected before fails after {what}: {e:?}"))
            .get(0);
        assert_eq!(n, 8);
    }

    // While a raw connection sits half-way through a 1 GiB startup packet, others are served.
    let stalled = {
        let mut stream = raw_connect(port);
        let mut packet = 0x4000_0000u32.to_be_bytes().to_vec();
        packet.extend_from_slice(&196_608u32.to_be_bytes());
        let _ = stream.write_all(&packet);
        stream
    };
    let after = cluster.connect().await;
    let n: i32 = after
        .query_one("SELECT 9", &[])
        .await
        .expect("new client")
        .get(0);
    assert_eq!(n, 9);
    drop(stalled);
    let n: i32 = before
        .query_one("SELECT 10", &[])
        .await
        .expect("old client")
        .get(0);
    assert_eq!(n, 10);
}

#[tokio::test]
async fn max_connections_refuses_the_extra_client_with_53300() {
    let cluster = Cluster::start_with_env(&[("MYCELIUM_PROXY__MAX_CONNECTIONS", "2")]);
    let first = cluster.connect().await;
    let second = cluster.connect().await;
    let error = tokio_postgres::connect(&cluster.conn_string(), tokio_postgres::NoTls)
        .await
        .err()
        .expect("a third connection must be refused");
    assert_eq!(sqlstate(&error), "53300", "{error:?}");
    for (n, client) in [(1i32, &first), (2, &second)] {
        let got: i32 = client
            .query_one("SELECT $1::int", &[&n])
            .await
            .expect("the admitted clients keep working")
            .get(0);
        assert_eq!(got, n);
    }
    // Closing one frees its slot.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    let third = loop {
        match tokio_postgres::connect(&cluster.conn_string(), tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                break client;
            }
            Err(e) if Instant::now() < deadline && sqlstate(&e) == "53300" => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no slot after a client disconnected: {e:?}"),
        }
    };
    let got: i32 = third
        .query_one("SELECT 3", &[])
        .await
        .expect("third")
        .get(0);
    assert_eq!(got, 3);
}

// --- 7. tokio-postgres: binary formats, portals, transaction state, COPY ----------------------------

/// A NUMERIC in Postgres' binary format, held as its text form ("-12.50").
#[derive(Debug, Clone, PartialEq)]
struct Numeric(String);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let word = |i: usize| -> Result<u16, String> {
            raw.get(i * 2..i * 2 + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| format!("numeric of {} bytes", raw.len()))
        };
        let ndigits = usize::from(word(0)?);
        let weight = i32::from(word(1)? as i16);
        let sign = word(2)?;
        let dscale = usize::from(word(3)?);
        if raw.len() != 8 + 2 * ndigits {
            return Err(format!("numeric with {ndigits} digits in {} bytes", raw.len()).into());
        }
        if sign == 0xC000 {
            return Ok(Numeric("NaN".to_owned()));
        }
        let digit = |exponent: i32| -> Result<u16, String> {
            let index = weight - exponent;
            match usize::try_from(index) {
                Ok(i) if i < ndigits => word(4 + i),
                _ => Ok(0),
            }
        };
        let mut s = String::new();
        if sign == 0x4000 {
            s.push('-');
        }
        if weight < 0 {
            s.push('0');
        } else {
            for exponent in (0..=weight).rev() {
                let d = digit(exponent)?;
                if exponent == weight {
                    let _ = write!(s, "{d}");
                } else {
                    let _ = write!(s, "{d:04}");
                }
            }
        }
        if dscale > 0 {
            let mut frac = String::new();
            for group in 1..=dscale.div_ceil(4) {
                let _ = write!(frac, "{:04}", digit(-i32::try_from(group)?)?);
            }
            frac.truncate(dscale);
            s.push('.');
            s.push_str(&frac);
        }
        Ok(Numeric(s))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

impl ToSql for Numeric {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let (negative, body) = match self.0.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, self.0.as_str()),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        let int = format!("{}{int}", "0".repeat((4 - int.len() % 4) % 4));
        let frac_padded = format!("{frac}{}", "0".repeat((4 - frac.len() % 4) % 4));
        let mut groups: Vec<u16> = Vec::new();
        for chunk in int
            .as_bytes()
            .chunks(4)
            .chain(frac_padded.as_bytes().chunks(4))
        {
            groups.push(std::str::from_utf8(chunk)?.parse()?);
        }
        let mut weight = i16::try_from(int.len() / 4)? - 1;
        while groups.first() == Some(&0) {
            groups.remove(0);
            weight -= 1;
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        out.extend_from_slice(&u16::try_from(groups.len())?.to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        let sign: u16 = if negative && !groups.is_empty() {
            0x4000
        } else {
            0
        };
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&u16::try_from(frac.len())?.to_be_bytes());
        for g in groups {
            out.extend_from_slice(&g.to_be_bytes());
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

fn num(s: &str) -> Numeric {
    Numeric(s.to_owned())
}

const ALL_TYPES_DDL: &str = "CREATE TABLE all_types (
    id    serial PRIMARY KEY,
    i2    smallint,
    i4    integer,
    i8    bigint,
    f4    real,
    f8    double precision,
    num   numeric(10,2),
    b     boolean,
    t     text,
    vc    varchar(12),
    ts    timestamp,
    tstz  timestamptz,
    d     date,
    by    bytea,
    j     jsonb,
    u     uuid,
    made  timestamptz NOT NULL DEFAULT now()
)";

/// smallint, integer, bigint, real, double precision, numeric, boolean, text, varchar.
type Scalars = (
    i16,
    i32,
    i64,
    f32,
    f64,
    Numeric,
    bool,
    &'static str,
    &'static str,
);

async fn binary_parameters_and_results_for_every_type(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    client.batch_execute(ALL_TYPES_DDL).await.expect("create");
    let ts = NaiveDate::from_ymd_opt(2024, 2, 29)
        .and_then(|d| d.and_hms_micro_opt(23, 59, 58, 123_456))
        .expect("timestamp");
    let tstz: DateTime<Utc> = DateTime::parse_from_rfc3339("1999-12-31T23:00:00.5-05:00")
        .expect("timestamptz")
        .with_timezone(&Utc);
    let d = NaiveDate::from_ymd_opt(1970, 1, 1).expect("date");
    let by: Vec<u8> = (0..=255u8).chain([0, 0]).collect();
    let j = serde_json::json!({"k": [1, 2.5, null, true, "x"], "nested": {"a": "b"}, "e": {}});
    let u = uuid::Uuid::parse_str("12345678-1234-5678-1234-567812345678").expect("uuid");
    let rows_in: [Scalars; 2] = [
        (
            -32768,
            i32::MAX,
            i64::MIN,
            1.5,
            -2.25e-300,
            num("-12345678.90"),
            true,
            "héllo ✓ 'q'",
            "twelve chars",
        ),
        (
            7,
            -1,
            9_000_000_000_000,
            -0.0,
            1e300,
            num("0.05"),
            false,
            "",
            "x",
        ),
    ];
    let statement = client
        .prepare(
            "INSERT INTO all_types (i2, i4, i8, f4, f8, num, b, t, vc, ts, tstz, d, by, j, u)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
        )
        .await
        .expect("prepare insert");
    let expected_params = [
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::NUMERIC,
        Type::BOOL,
        Type::TEXT,
        Type::VARCHAR,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::DATE,
        Type::BYTEA,
        Type::JSONB,
        Type::UUID,
    ];
    assert_eq!(
        statement.params(),
        expected_params,
        "inferred parameter types"
    );
    for (n, r) in rows_in.iter().enumerate() {
        let id: i32 = client
            .query_one(
                &statement,
                &[
                    &r.0, &r.1, &r.2, &r.3, &r.4, &r.5, &r.6, &r.7, &r.8, &ts, &tstz, &d, &by, &j,
                    &u,
                ],
            )
            .await
            .expect("insert with binary parameters")
            .get(0);
        assert_eq!(id, i32::try_from(n + 1).expect("id"));
    }
    client
        .execute("INSERT INTO all_types (id) VALUES (100)", &[])
        .await
        .expect("insert NULLs");

    let rows = client
        .query(
            "SELECT id, i2, i4, i8, f4, f8, num, b, t, vc, ts, tstz, d, by, j, u, made FROM all_types ORDER BY id",
            &[],
        )
        .await
        .expect("select");
    assert_eq!(rows.len(), 3);
    let columns: Vec<Type> = rows[0]
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    let mut expected_columns = vec![Type::INT4];
    expected_columns.extend(expected_params);
    expected_columns.push(Type::TIMESTAMPTZ);
    assert_eq!(columns, expected_columns, "result column types");
    for (row, r) in rows.iter().zip(&rows_in) {
        let got = (
            row.get::<_, i16>(1),
            row.get::<_, i32>(2),
            row.get::<_, i64>(3),
            row.get::<_, f32>(4),
            row.get::<_, f64>(5),
            row.get::<_, Numeric>(6),
            row.get::<_, bool>(7),
            row.get::<_, String>(8),
            row.get::<_, String>(9),
        );
        assert_eq!(
            got,
            (
                r.0,
                r.1,
                r.2,
                r.3,
                r.4,
                r.5.clone(),
                r.6,
                r.7.to_owned(),
                r.8.to_owned()
            )
        );
        assert_eq!(row.get::<_, NaiveDateTime>(10), ts);
        assert_eq!(row.get::<_, DateTime<Utc>>(11), tstz);
        assert_eq!(row.get::<_, NaiveDate>(12), d);
        assert_eq!(row.get::<_, Vec<u8>>(13), by);
        assert_eq!(row.get::<_, serde_json::Value>(14), j);
        assert_eq!(row.get::<_, uuid::Uuid>(15), u);
        let made: DateTime<Utc> = row.get(16);
        let age = Utc::now() - made;
        assert!(
            age > chrono::Duration::seconds(-60) && age < chrono::Duration::seconds(600),
            "DEFAULT now() gave {made}"
        );
    }
    let nulls = &rows[2];
    assert_eq!(nulls.get::<_, i32>(0), 100);
    for i in 1..16 {
        let is_null = match i {
            1 => nulls.get::<_, Option<i16>>(i).is_none(),
            2 => nulls.get::<_, Option<i32>>(i).is_none(),
            3 => nulls.get::<_, Option<i64>>(i).is_none(),
            4 => nulls.get::<_, Option<f32>>(i).is_none(),
            5 => nulls.get::<_, Option<f64>>(i).is_none(),
            6 => nulls.get::<_, Option<Numeric>>(i).is_none(),
            7 => nulls.get::<_, Option<bool>>(i).is_none(),
            8 | 9 => nulls.get::<_, Option<String>>(i).is_none(),
            10 => nulls.get::<_, Option<NaiveDateTime>>(i).is_none(),
            11 => nulls.get::<_, Option<DateTime<Utc>>>(i).is_none(),
            12 => nulls.get::<_, Option<NaiveDate>>(i).is_none(),
            13 => nulls.get::<_, Option<Vec<u8>>>(i).is_none(),
            14 => nulls.get::<_, Option<serde_json::Value>>(i).is_none(),
            _ => nulls.get::<_, Option<uuid::Uuid>>(i).is_none(),
        };
        assert!(is_null, "column {i} of the NULL row");
    }

    // Binary parameters as filters find the rows they were stored from.
    let first = &rows_in[0];
    let filters: [(&str, &(dyn ToSql + Sync)); 14] = [
        ("i2", &first.0),
        ("i4", &first.1),
        ("i8", &first.2),
        ("f8", &first.4),
        ("num", &first.5),
        ("t", &first.7),
        ("vc", &first.8),
        ("ts", &ts),
        ("tstz", &tstz),
        ("d", &d),
        ("by", &by),
        ("j", &j),
        ("u", &u),
        ("b", &first.6),
    ];
    for (column, value) in filters {
        let sql = format!("SELECT id FROM all_types WHERE {column} = $1 ORDER BY id");
        let ids: Vec<i32> = client
            .query(&sql, &[value])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .iter()
            .map(|r| r.get(0))
            .collect();
        let expected: &[i32] = if matches!(column, "ts" | "tstz" | "d" | "by" | "j" | "u") {
            &[1, 2]
        } else {
            &[1]
        };
        assert_eq!(ids, expected, "{sql}");
    }

    // Literals and expressions come back with Postgres' types, in binary.
    let row = client
        .query_one(
            "SELECT 1::int2, 2::int4, 3::int8, 1.5::float8, 2.5::real, true, 'x'::text, '\\x0102'::bytea,
                    '2024-01-02'::date, '2024-01-02 03:04:05'::timestamp, '2024-01-02 03:04:05+00'::timestamptz,
                    '{\"a\": 1}'::jsonb, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, 12.345::numeric(6,2),
                    count(*), sum(i4), 7 / 2, 7.0 / 2, length('abc'), 'a' || 'b'
             FROM all_types",
            &[],
        )
        .await
        .expect("literals");
    assert_eq!(row.get::<_, i16>(0), 1);
    assert_eq!(row.get::<_, i32>(1), 2);
    assert_eq!(row.get::<_, i64>(2), 3);
    assert_eq!(row.get::<_, f64>(3), 1.5);
    assert_eq!(row.get::<_, f32>(4), 2.5);
    assert!(row.get::<_, bool>(5));
    assert_eq!(row.get::<_, &str>(6), "x");
    assert_eq!(row.get::<_, &[u8]>(7), [1u8, 2]);
    assert_eq!(
        row.get::<_, NaiveDate>(8),
        NaiveDate::from_ymd_opt(2024, 1, 2).expect("date")
    );
    assert_eq!(
        row.get::<_, NaiveDateTime>(9).to_string(),
        "2024-01-02 03:04:05"
    );
    assert_eq!(
        row.get::<_, DateTime<Utc>>(10).to_rfc3339(),
        "2024-01-02T03:04:05+00:00"
    );
    assert_eq!(
        row.get::<_, serde_json::Value>(11),
        serde_json::json!({"a": 1})
    );
    assert_eq!(
        row.get::<_, uuid::Uuid>(12).to_string(),
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    );
    assert_eq!(row.get::<_, Numeric>(13), num("12.35"));
    assert_eq!(row.get::<_, i64>(14), 3, "count(*) is bigint");
    assert_eq!(
        row.get::<_, i64>(15),
        i64::from(i32::MAX) - 1,
        "sum(integer) is bigint"
    );
    assert_eq!(row.get::<_, i32>(16), 3, "integer division");
    assert_eq!(row.get::<_, i32>(18), 3);
    assert_eq!(row.get::<_, &str>(19), "ab");
    assert_eq!(
        row.get::<_, Numeric>(17),
        num("3.5000000000000000"),
        "7.0 / 2 has Postgres' division scale"
    );
}

async fn numeric_values_are_rounded_to_their_scale_and_checked(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute("CREATE TABLE money (id integer PRIMARY KEY, amount numeric(10,2) NOT NULL)")
        .await
        .expect("create");
    client
        .execute(
            "INSERT INTO money VALUES (1, 7.999), (2, 0.005), (3, -1.234)",
            &[],
        )
        .await
        .expect("insert");
    client
        .execute("INSERT INTO money VALUES (4, $1)", &[&num("2.345")])
        .await
        .expect("insert binary numeric");
    let rows: Vec<(i32, Numeric)> = client
        .query("SELECT id, amount FROM money ORDER BY id", &[])
        .await
        .expect("select")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        [
            (1, num("8.00")),
            (2, num("0.01")),
            (3, num("-1.23")),
            (4, num("2.35"))
        ]
    );
    let sum: Numeric = client
        .query_one("SELECT sum(amount) * 2 FROM money", &[])
        .await
        .expect("sum")
        .get(0);
    assert_eq!(
        sum,
        num("18.26"),
        "arithmetic on the stored (rounded) values"
    );
    let error = client
        .execute("INSERT INTO money VALUES (5, 123456789.00)", &[])
        .await
        .expect_err("numeric(10,2) overflow");
    assert_eq!(sqlstate(&error), "22003", "{error:?}");
}

/// The columns of a simple-protocol query's RowDescription, as (name, type OID, typmod), read
/// off a raw connection (tokio-postgres keeps only the names).
fn simple_query_columns(port: u16, sql: &str) -> Vec<(String, u32, i32)> {
    let mut stream = raw_authenticated(port);
    let mut query = sql.as_bytes().to_vec();
    query.push(0);
    stream.write_all(&frame(b'Q', &query)).expect("Query");
    let mut columns = Vec::new();
    loop {
        let (kind, body) = read_message(&mut stream);
        assert_ne!(kind, b'E', "{sql}: {}", String::from_utf8_lossy(&body));
        if kind == b'T' {
            let mut at = 2;
            while at < body.len() {
                let end = at + body[at..].iter().position(|b| *b == 0).expect("name");
                let name = String::from_utf8_lossy(&body[at..end]).into_owned();
                let field = &body[end + 1..end + 19];
                let type_oid = u32::from_be_bytes([field[6], field[7], field[8], field[9]]);
                let typmod = i32::from_be_bytes([field[12], field[13], field[14], field[15]]);
                columns.push((name, type_oid, typmod));
                at = end + 19;
            }
        }
        if kind == b'Z' {
            return columns;
        }
    }
}

/// A query, its columns as (name, type OID, typmod), and its rows in text.
type AggregateCase = (
    &'static str,
    Vec<(&'static str, u32, i32)>,
    Vec<Vec<&'static str>>,
);

/// Runs each case in the simple protocol (values and described columns) and in the extended
/// one (rows in binary).
async fn check_aggregate_cases(
    client: &tokio_postgres::Client,
    port: u16,
    cases: &[AggregateCase],
) {
    for (sql, columns, want) in cases {
        let messages = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        let got: Vec<Vec<String>> = messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                        .collect(),
                ),
                _ => None,
            })
            .collect();
        assert_eq!(&got, want, "{sql}");
        let described = simple_query_columns(port, sql);
        let expected: Vec<(String, u32, i32)> = columns
            .iter()
            .map(|(name, ty, typmod)| ((*name).to_owned(), *ty, *typmod))
            .collect();
        assert_eq!(described, expected, "{sql}");

        // The extended protocol: described once, rows in binary.
        let rows = client
            .query(*sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        assert_eq!(rows.len(), want.len(), "{sql}");
        for (row, want) in rows.iter().zip(want) {
            for (i, (name, ty, _)) in columns.iter().enumerate() {
                let column = &row.columns()[i];
                assert_eq!((column.name(), column.type_().oid()), (*name, *ty), "{sql}");
                let value = match Type::from_oid(*ty) {
                    Some(Type::INT2) => row.get::<_, Option<i16>>(i).map(|v| v.to_string()),
                    Some(Type::INT4) => row.get::<_, Option<i32>>(i).map(|v| v.to_string()),
                    Some(Type::INT8) => row.get::<_, Option<i64>>(i).map(|v| v.to_string()),
                    Some(Type::FLOAT4) => row.get::<_, Option<f32>>(i).map(|v| v.to_string()),
                    Some(Type::FLOAT8) => row.get::<_, Option<f64>>(i).map(|v| v.to_string()),
                    Some(Type::NUMERIC) => row.get::<_, Option<Numeric>>(i).map(|v| v.0),
                    _ => row.get::<_, Option<String>>(i),
                };
                assert_eq!(
                    value.as_deref().unwrap_or("NULL"),
                    want[i],
                    "{sql}, column {i}"
                );
            }
        }
    }
}

/// A cluster with table `scores` (30 rows: integers with NULLs, bigints, numerics, floats)
/// spread over several nodes, and `empty_scores`, sharded and empty; and a client of it.
async fn scores_across_nodes(backend: Backend) -> Option<(Cluster, tokio_postgres::Client)> {
    let cluster = Cluster::start_on(backend)?;
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE scores (id integer PRIMARY KEY, grp integer NOT NULL, v integer, \
             big bigint, n numeric(8,2), f double precision) WITH (mycelium.shard_keys = 'id', \
             mycelium.shards = 6, mycelium.replication_factor = 0.3);
             INSERT INTO scores SELECT g, g % 3, \
             CASE WHEN g % 10 = 0 THEN NULL ELSE (g % 3) * 60 + g - 30 END, \
             g::bigint * 100000000, g * 0.25, g * 0.5 FROM generate_series(1, 30) g;
             CREATE TABLE empty_scores (id integer PRIMARY KEY, v integer) WITH \
             (mycelium.shard_keys = 'id', mycelium.shards = 6);",
        )
        .await
        .expect("create and fill");
    let counts = cluster.counts_on_nodes("scores").await;
    assert_eq!(counts.iter().sum::<i64>(), 30, "{counts:?}");
    assert!(
        counts.iter().filter(|c| **c > 0).count() >= 2,
        "rows on several nodes: {counts:?}"
    );
    Some((cluster, client))
}

/// Casts and COALESCE around aggregates of a table spread over the nodes
/// (`COALESCE(sum(v), 0)::int`): the nodes compute the bare aggregates, the proxy merges them
/// and applies the wrappers. Every answer here is what PostgreSQL 15 gives for the same data:
/// values, column names and types, in text and binary, rounding and range errors included.
async fn casts_and_coalesce_around_aggregates_read_across_nodes(backend: Backend) {
    let Some((cluster, client)) = scores_across_nodes(backend).await else {
        return;
    };

    const NUMERIC_10_2: i32 = (10 << 16 | 2) + 4;
    const NUMERIC_12_3: i32 = (12 << 16 | 3) + 4;
    const NUMERIC_8_1: i32 = (8 << 16 | 1) + 4;
    let (int2, int4, int8, numeric) = (
        Type::INT2.oid(),
        Type::INT4.oid(),
        Type::INT8.oid(),
        Type::NUMERIC.oid(),
    );
    let (float4, float8, text) = (Type::FLOAT4.oid(), Type::FLOAT8.oid(), Type::TEXT.oid());
    let cases: Vec<AggregateCase> = vec![
        (
            "SELECT sum(v)::int8, count(*)::int, CAST(count(*) AS integer) AS n, \
             COALESCE(sum(v), 0), avg(v)::int, COALESCE(avg(v), 0)::numeric(10,2), \
             count(DISTINCT grp)::int, sum(n)::int, sum(f)::int8, sum(f)::numeric, \
             sum(n * 2)::int, max(n)::smallint FROM scores",
            vec![
                ("sum", int8, -1),
                ("count", int4, -1),
                ("n", int4, -1),
                ("coalesce", int8, -1),
                ("avg", int4, -1),
                ("coalesce", numeric, NUMERIC_10_2),
                ("count", int4, -1),
                ("sum", int4, -1),
                ("sum", int8, -1),
                ("sum", numeric, -1),
                ("sum", int4, -1),
                ("max", int2, -1),
            ],
            // 116.25 → 116; 232.5 as a double → 232 (half to even), as a numeric → 233
            // (half away from zero); 7.5 → 8.
            vec![vec![
                "1215", "30", "30", "1215", "45", "45.00", "3", "116", "232", "232.5", "233", "8",
            ]],
        ),
        (
            "SELECT avg(v)::text, sum(v)::real, sum(n)::double precision, \
             COALESCE(sum(v)::int8, 0), COALESCE(sum(v), 0)::int, sum(v)::decimal(12,3), \
             min(f)::text, COALESCE(sum(n), 0.5) FROM scores",
            vec![
                ("avg", text, -1),
                ("sum", float4, -1),
                ("sum", float8, -1),
                ("coalesce", int8, -1),
                ("coalesce", int4, -1),
                ("sum", numeric, NUMERIC_12_3),
                ("min", text, -1),
                ("coalesce", numeric, -1),
            ],
            vec![vec![
                "45.0000000000000000",
                "1215",
                "116.25",
                "1215",
                "1215",
                "1215.000",
                "0.5",
                "116.25",
            ]],
        ),
        // ORDER BY sorts the finished values: numerics as numbers, text as text.
        (
            "SELECT grp, sum(v)::int4 AS s, COALESCE(avg(v), 0)::numeric(8,1) AS a, \
             count(DISTINCT v)::int FROM scores GROUP BY grp HAVING count(*) > 5 \
             ORDER BY a DESC, 1",
            vec![
                ("grp", int4, -1),
                ("s", int4, -1),
                ("a", numeric, NUMERIC_8_1),
                ("count", int4, -1),
            ],
            vec![
                vec!["2", "945", "105.0", "9"],
                vec!["1", "405", "45.0", "9"],
                vec!["0", "-135", "-15.0", "9"],
            ],
        ),
        (
            "SELECT grp, avg(v)::text FROM scores GROUP BY grp ORDER BY 2",
            vec![("grp", int4, -1), ("avg", text, -1)],
            vec![
                vec!["0", "-15.0000000000000000"],
                vec!["2", "105.0000000000000000"],
                vec!["1", "45.0000000000000000"],
            ],
        ),
        // Exact averages are decimal text, sorted as numbers.
        (
            "SELECT grp, avg(v) FROM scores GROUP BY grp ORDER BY 2 DESC",
            vec![("grp", int4, -1), ("avg", numeric, -1)],
            vec![
                vec!["2", "105.0000000000000000"],
                vec!["1", "45.0000000000000000"],
                vec!["0", "-15.0000000000000000"],
            ],
        ),
        // HAVING reads the bare aggregate.
        (
            "SELECT grp, COALESCE(sum(v), 0)::int8 FROM scores GROUP BY grp HAVING sum(v) > 0 \
             ORDER BY 2",
            vec![("grp", int4, -1), ("coalesce", int8, -1)],
            vec![vec!["1", "405"], vec!["2", "945"]],
        ),
        // Groups that finish equal are one row of DISTINCT.
        (
            "SELECT DISTINCT count(*)::int FROM scores GROUP BY grp",
            vec![("count", int4, -1)],
            vec![vec!["10"]],
        ),
        (
            "SELECT COALESCE(sum(v), 0), sum(v)::int, count(*)::int, COALESCE(avg(v), 0) \
             FROM empty_scores",
            vec![
                ("coalesce", int8, -1),
                ("sum", int4, -1),
                ("count", int4, -1),
                ("coalesce", numeric, -1),
            ],
            vec![vec!["0", "NULL", "0", "0"]],
        ),
    ];
    check_aggregate_cases(&client, cluster.port, &cases).await;

    // numeric → integer out of range, in both protocols.
    let sql = "SELECT sum(big)::int FROM scores";
    let error = client.simple_query(sql).await.expect_err(sql);
    assert_eq!(sqlstate(&error), "22003", "{error:?}");
    assert!(
        format!("{error:?}").contains("integer out of range"),
        "{error:?}"
    );
    let error = client.query(sql, &[]).await.expect_err(sql);
    assert_eq!(sqlstate(&error), "22003", "{error:?}");
}

/// Arithmetic around aggregates of a table spread over the nodes (`sum(v) / count(*)`,
/// `avg(v) * 2`, `COALESCE(sum(v), 0)::numeric / NULLIF(count(v), 0)`): the nodes compute the
/// bare aggregates, the proxy merges them and evaluates the expression. Every answer here is
/// what PostgreSQL 15 gives for the same data: values, column names and types, in text and
/// binary, and the SQLSTATEs of division by zero, overflow and a missing operator.
async fn arithmetic_on_aggregates_reads_across_nodes(backend: Backend) {
    let Some((cluster, client)) = scores_across_nodes(backend).await else {
        return;
    };

    let (int4, int8, numeric, float8) = (
        Type::INT4.oid(),
        Type::INT8.oid(),
        Type::NUMERIC.oid(),
        Type::FLOAT8.oid(),
    );
    let cases: Vec<AggregateCase> = vec![
        // bigint / bigint truncates; avg is numeric; max - min of integers is an integer.
        (
            "SELECT sum(v) / count(*), count(*) + 1, avg(v) * 2, max(v) - min(v) AS spread, \
             sum(v) % 7, -sum(v), (sum(v) / count(*))::int4, sum(v) * 1.5 FROM scores",
            vec![
                ("?column?", int8, -1),
                ("?column?", int8, -1),
                ("?column?", numeric, -1),
                ("spread", int4, -1),
                ("?column?", int8, -1),
                ("?column?", int8, -1),
                ("int4", int4, -1),
                ("?column?", numeric, -1),
            ],
            vec![vec![
                "40",
                "31",
                "90.0000000000000000",
                "146",
                "4",
                "-1215",
                "40",
                "1822.5",
            ]],
        ),
        // Per group, numeric quotients with Postgres's scales, doubles, COALESCE and NULLIF.
        (
            "SELECT grp, sum(v) * 100 / count(v), sum(n) / count(*), sum(big) / count(*), \
             avg(f) * 2, sum(f) / 3, COALESCE(sum(v), 0)::numeric / NULLIF(count(v), 0) AS ratio, \
             NULLIF(max(v) - min(v), 0) FROM scores GROUP BY grp ORDER BY grp",
            vec![
                ("grp", int4, -1),
                ("?column?", int8, -1),
                ("?column?", numeric, -1),
                ("?column?", numeric, -1),
                ("?column?", float8, -1),
                ("?column?", float8, -1),
                ("ratio", numeric, -1),
                ("nullif", int4, -1),
            ],
            vec![
                vec![
                    "0",
                    "-1500",
                    "4.1250000000000000",
                    "1650000000.00000000",
                    "16.5",
                    "27.5",
                    "-15.0000000000000000",
                    "24",
                ],
                vec![
                    "1",
                    "4500",
                    "3.6250000000000000",
                    "1450000000.00000000",
                    "14.5",
                    "24.166666666666668",
                    "45.0000000000000000",
                    "27",
                ],
                vec![
                    "2",
                    "10500",
                    "3.8750000000000000",
                    "1550000000.00000000",
                    "15.5",
                    "25.833333333333332",
                    "105.0000000000000000",
                    "27",
                ],
            ],
        ),
        // HAVING computes the same expression over the merged group.
        (
            "SELECT grp, sum(v) / count(*) AS r FROM scores GROUP BY grp \
             HAVING sum(v) / count(*) > 3 ORDER BY r DESC",
            vec![("grp", int4, -1), ("r", int8, -1)],
            vec![vec!["2", "94"], vec!["1", "40"]],
        ),
        // No rows: NULL operands give NULL, count is 0.
        (
            "SELECT sum(v) / count(*), count(*) + 1, \
             COALESCE(sum(v), 0)::numeric / NULLIF(count(*), 0) FROM empty_scores",
            vec![
                ("?column?", int8, -1),
                ("?column?", int8, -1),
                ("?column?", numeric, -1),
            ],
            vec![vec!["NULL", "1", "NULL"]],
        ),
    ];
    check_aggregate_cases(&client, cluster.port, &cases).await;

    // Errors Postgres raises for the same expressions, in both protocols.
    for (sql, code, message) in [
        ("SELECT sum(v) / 0 FROM scores", "22012", "division by zero"),
        (
            "SELECT max(v) * 2147483647 FROM scores",
            "22003",
            "integer out of range",
        ),
        (
            "SELECT sum(f) % 2 FROM scores",
            "42883",
            "operator does not exist: double precision % integer",
        ),
    ] {
        let error = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&error), code, "{sql}: {error:?}");
        assert!(format!("{error:?}").contains(message), "{sql}: {error:?}");
        let error = client.query(sql, &[]).await.expect_err(sql);
        assert_eq!(sqlstate(&error), code, "{sql}: {error:?}");
    }
    // Other expressions around an aggregate are still refused, never answered per node.
    for sql in [
        "SELECT round(avg(v))::int FROM scores",
        "SELECT sum(v) + grp FROM scores",
    ] {
        let error = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&error), "0A000", "{sql}: {error:?}");
    }
}

async fn length_and_unique_violations_carry_sqlstates(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE accounts (id serial PRIMARY KEY, email varchar(10) NOT NULL UNIQUE)",
        )
        .await
        .expect("create");
    client
        .execute("INSERT INTO accounts (email) VALUES ('a@b.c')", &[])
        .await
        .expect("insert");
    let cases: [(&str, &str); 4] = [
        ("INSERT INTO accounts (email) VALUES ('a@b.c')", "23505"),
        (
            "INSERT INTO accounts (email) VALUES ('much-too-long@example.com')",
            "22001",
        ),
        ("UPDATE accounts SET email = 'also-too-long@x.y'", "22001"),
        (
            "INSERT INTO accounts (id, email) VALUES (1, 'x@y.z')",
            "23505",
        ),
    ];
    let mut wrong = Vec::new();
    for (sql, code) in cases {
        match client.execute(sql, &[]).await {
            Ok(n) => wrong.push(format!("{sql}: succeeded ({n} rows), expected {code}")),
            Err(e) if sqlstate(&e) != code => {
                wrong.push(format!("{sql}: got {}, expected {code}", sqlstate(&e)));
            }
            Err(_) => {}
        }
    }
    // A string that fits exactly is fine.
    client
        .execute("INSERT INTO accounts (email) VALUES ('ten@chars.')", &[])
        .await
        .expect("a value of exactly 10 characters");
    let emails: Vec<String> = client
        .query("SELECT email FROM accounts ORDER BY email", &[])
        .await
        .expect("select")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(emails, ["a@b.c", "ten@chars."]);
}

async fn serial_column_that_is_not_the_primary_key(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE tickets (code text PRIMARY KEY, seq bigserial, n serial);
             INSERT INTO tickets (code) VALUES ('a'), ('b');
             INSERT INTO tickets (code) VALUES ('c')",
        )
        .await
        .expect("serial columns outside the primary key");
    let rows: Vec<(String, i64, i32)> = client
        .query("SELECT code, seq, n FROM tickets ORDER BY code", &[])
        .await
        .expect("select")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            ("a".to_owned(), 1, 1),
            ("b".to_owned(), 2, 2),
            ("c".to_owned(), 3, 3)
        ]
    );
}

async fn portal_row_limits_fetch_in_batches(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let mut client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE nums (n integer PRIMARY KEY, label text);
             INSERT INTO nums VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four'), (5, 'five')",
        )
        .await
        .expect("setup");
    let tx = client.transaction().await.expect("begin");
    let statement = tx
        .prepare("SELECT n, label FROM nums WHERE n >= $1 ORDER BY n")
        .await
        .expect("prepare");
    let portal = tx.bind(&statement, &[&1i32]).await.expect("bind");
    let mut batches = Vec::new();
    for _ in 0..4 {
        let rows = tx.query_portal(&portal, 2).await.expect("execute portal");
        batches.push(
            rows.iter()
                .map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1)))
                .collect::<Vec<_>>(),
        );
    }
    let expected: Vec<Vec<(i32, String)>> = vec![
        vec![(1, "one".into()), (2, "two".into())],
        vec![(3, "three".into()), (4, "four".into())],
        vec![(5, "five".into())],
        vec![],
    ];
    assert_eq!(batches, expected, "batches of 2 rows from one portal");
    // Two portals open at once advance independently.
    let a = tx.bind(&statement, &[&2i32]).await.expect("bind a");
    let b = tx.bind(&statement, &[&4i32]).await.expect("bind b");
    let first_a: Vec<i32> = tx
        .query_portal(&a, 1)
        .await
        .expect("a")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let first_b: Vec<i32> = tx
        .query_portal(&b, 1)
        .await
        .expect("b")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let rest_a: Vec<i32> = tx
        .query_portal(&a, 10)
        .await
        .expect("a")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        (first_a, first_b, rest_a),
        (vec![2], vec![4], vec![3, 4, 5])
    );
    tx.commit().await.expect("commit");
}

async fn error_in_a_transaction_block_needs_rollback(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute("CREATE TABLE ledger (id integer PRIMARY KEY, v integer NOT NULL)")
        .await
        .expect("create");
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .execute("INSERT INTO ledger VALUES (1, 1)", &[])
        .await
        .expect("insert in the transaction");
    let error = client
        .query_one("SELECT 1 / 0", &[])
        .await
        .expect_err("division by zero");
    assert_eq!(sqlstate(&error), "22012", "{error:?}");
    for sql in ["SELECT 1", "INSERT INTO ledger VALUES (2, 2)"] {
        let error = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&error), "25P02", "{sql} after an error: {error:?}");
        let error = client.query(sql, &[]).await.expect_err(sql);
        assert_eq!(
            sqlstate(&error),
            "25P02",
            "{sql} (extended) after an error: {error:?}"
        );
    }
    // COMMIT of a failed transaction rolls back.
    client
        .batch_execute("COMMIT")
        .await
        .expect("commit of a failed transaction");
    let count: i64 = client
        .query_one("SELECT count(*) FROM ledger", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 0, "nothing of the failed transaction is kept");

    client
        .batch_execute("BEGIN; INSERT INTO ledger VALUES (3, 3)")
        .await
        .expect("begin");
    let error = client
        .execute("INSERT INTO ledger VALUES (3, 4)", &[])
        .await
        .expect_err("duplicate");
    assert_eq!(sqlstate(&error), "23505");
    client.batch_execute("ROLLBACK").await.expect("rollback");
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("after rollback")
        .get(0);
    assert_eq!(one, 1);
    // A savepoint rolls back just the failed part.
    client
        .batch_execute("BEGIN; INSERT INTO ledger VALUES (4, 4); SAVEPOINT s")
        .await
        .expect("savepoint");
    let error = client
        .execute("INSERT INTO ledger VALUES (4, 5)", &[])
        .await
        .expect_err("duplicate");
    assert_eq!(sqlstate(&error), "23505");
    client
        .batch_execute("ROLLBACK TO SAVEPOINT s; INSERT INTO ledger VALUES (5, 5); COMMIT")
        .await
        .expect("recover with the savepoint");
    let ids: Vec<i32> = client
        .query("SELECT id FROM ledger ORDER BY id", &[])
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [4, 5]);
}

async fn multi_statement_query_runs_in_one_implicit_transaction(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute("CREATE TABLE pairs (id integer PRIMARY KEY)")
        .await
        .expect("create");
    let error = client
        .batch_execute("INSERT INTO pairs VALUES (1); INSERT INTO pairs VALUES (2); INSERT INTO pairs VALUES (1)")
        .await
        .expect_err("the third statement fails");
    assert_eq!(sqlstate(&error), "23505", "{error:?}");
    let count: i64 = client
        .query_one("SELECT count(*) FROM pairs", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        count, 0,
        "the earlier statements of the failed query are rolled back too"
    );
}

async fn copy_in_and_copy_out(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE cp (id integer PRIMARY KEY, name text, amount numeric(8,2), day date)",
        )
        .await
        .expect("create");
    let sink = client
        .copy_in::<_, &'static [u8]>("COPY cp (id, name, amount, day) FROM STDIN")
        .await
        .expect("copy in");
    let mut sink = std::pin::pin!(sink);
    for chunk in [
        &b"1\tone\t1.50\t2024-01-01\n2\t\\N\t-2.00\t\\N\n"[..],
        &b"3\tt\\tab\t0.00\t2024-12-31\n4\tsplit "[..],
        &b"across chunks\t4.25\t2000-02-29\n"[..],
    ] {
        sink.as_mut().send(chunk).await.expect("send COPY data");
    }
    let copied = sink.as_mut().finish().await.expect("finish COPY");
    assert_eq!(copied, 4, "rows reported by COPY FROM");

    let sink = client
        .copy_in::<_, &'static [u8]>("COPY cp FROM STDIN WITH (FORMAT csv)")
        .await
        .expect("copy in csv");
    let mut sink = std::pin::pin!(sink);
    sink.as_mut()
        .send(&b"5,\"five, \"\"5\"\"\",5.5,2024-05-05\n6,,,\n"[..])
        .await
        .expect("send CSV");
    assert_eq!(sink.as_mut().finish().await.expect("finish CSV"), 2);

    let rows: Vec<(i32, Option<String>, Option<Numeric>)> = client
        .query("SELECT id, name, amount FROM cp ORDER BY id", &[])
        .await
        .expect("select")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            (1, Some("one".to_owned()), Some(num("1.50"))),
            (2, None, Some(num("-2.00"))),
            (3, Some("t\tab".to_owned()), Some(num("0.00"))),
            (4, Some("split across chunks".to_owned()), Some(num("4.25"))),
            (5, Some("five, \"5\"".to_owned()), Some(num("5.50"))),
            (6, None, None),
        ]
    );

    let mut out = Vec::new();
    let stream = client
        .copy_out("COPY (SELECT id, name, amount, day FROM cp ORDER BY id) TO STDOUT")
        .await
        .expect("copy out");
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.try_next().await.expect("COPY data") {
        out.extend_from_slice(&chunk);
    }
    assert_eq!(
        text(&out),
        "1\tone\t1.50\t2024-01-01\n2\t\\N\t-2.00\t\\N\n3\tt\\tab\t0.00\t2024-12-31\n\
         4\tsplit across chunks\t4.25\t2000-02-29\n5\tfive, \"5\"\t5.50\t2024-05-05\n6\t\\N\t\\N\t\\N\n"
    );

    let mut out = Vec::new();
    let stream = client
        .copy_out("COPY (SELECT id, name FROM cp WHERE id >= 5 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)")
        .await
        .expect("copy out csv");
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.try_next().await.expect("COPY data") {
        out.extend_from_slice(&chunk);
    }
    assert_eq!(text(&out), "id,name\n5,\"five, \"\"5\"\"\"\n6,\n");

    // A bad row fails the whole COPY with Postgres' SQLSTATE, and the session goes on.
    let sink = client
        .copy_in::<_, &'static [u8]>("COPY cp (id, name) FROM STDIN")
        .await
        .expect("copy in");
    let mut sink = std::pin::pin!(sink);
    let result = async {
        sink.as_mut()
            .send(&b"7\tok\nnot-a-number\tbad\n"[..])
            .await?;
        sink.as_mut().finish().await
    }
    .await;
    let error = result.expect_err("a row with a non-integer id");
    assert_eq!(sqlstate(&error), "22P02", "{error:?}");
    let count: i64 = client
        .query_one("SELECT count(*) FROM cp", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 6, "the failed COPY added nothing");
}
