//! The PostgreSQL backend against real, throwaway PostgreSQL 15 servers (mycelium-testkit):
//! values in both formats compared with what Postgres itself prints, errors, describe, COPY,
//! transactions, two-phase commit across a crash of the server, and recovery after it.
//! `MYCELIUM_SKIP_POSTGRES=1` skips them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mycelium_protocol::{CopyIn, DbError, Execute, Format, NodeSession, Reply, TxnOutcome};
use mycelium_storage::{Backend, PostgresBackend, PostgresOptions};
use mycelium_testkit::PgCluster;
use postgres_types::{FromSql, ToSql, Type};

#[derive(Debug)]
pub(crate) struct Out {
    pub columns: Vec<mycelium_protocol::Column>,
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
    pub tag: String,
}

impl Out {
    pub fn text(&self) -> Vec<Vec<Option<String>>> {
        self.rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| v.as_ref().map(|b| String::from_utf8(b.clone()).unwrap()))
                    .collect()
            })
            .collect()
    }

    pub fn value(&self) -> Option<String> {
        self.text()[0][0].clone()
    }
}

pub(crate) async fn execute(
    session: &mut dyn NodeSession,
    request: Execute,
) -> Result<Out, DbError> {
    let mut stream = session.execute(request).await?;
    let mut out = Out {
        columns: Vec::new(),
        rows: Vec::new(),
        tag: String::new(),
    };
    while let Some(reply) = stream.recv().await {
        match reply? {
            Reply::Columns(columns) => out.columns = columns.to_vec(),
            Reply::Rows(rows) => {
                for row in rows.iter() {
                    out.rows
                        .push(row.into_iter().map(|v| v.map(<[u8]>::to_vec)).collect());
                }
            }
            Reply::Complete { tag } => {
                out.tag = tag;
                return Ok(out);
            }
        }
    }
    panic!("stream ended without Complete");
}

pub(crate) async fn run(session: &mut dyn NodeSession, sql: &str) -> Result<Out, DbError> {
    execute(session, Execute::simple(sql)).await
}

pub(crate) async fn ok(session: &mut dyn NodeSession, sql: &str) -> Out {
    match run(session, sql).await {
        Ok(out) => out,
        Err(e) => panic!("{sql}: {e:?}"),
    }
}

pub(crate) async fn err(session: &mut dyn NodeSession, sql: &str) -> DbError {
    match run(session, sql).await {
        Ok(out) => panic!("{sql} succeeded: {:?}", out.text()),
        Err(e) => e,
    }
}

pub(crate) fn request(sql: &str, params: Vec<(Option<Bytes>, Format)>, results: Format) -> Execute {
    Execute {
        sql: Arc::from(sql),
        param_types: Arc::from(Vec::new()),
        param_formats: params.iter().map(|(_, f)| *f).collect(),
        params: params.into_iter().map(|(v, _)| v).collect(),
        result_formats: Arc::from(vec![results]),
    }
}

pub(crate) fn options(pg: &PgCluster, db: &str) -> PostgresOptions {
    let mut options = PostgresOptions::new("n1", &pg.url(db));
    options.pool_size = 4;
    options.connect_timeout = Duration::from_secs(5);
    options.retry_interval = Duration::from_millis(300);
    options.create_database = true;
    options
}

async fn backend(pg: &PgCluster, db: &str) -> PostgresBackend {
    PostgresBackend::connect(options(pg, db)).await.unwrap()
}

async fn direct(pg: &PgCluster, db: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&pg.url(db), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("SET TimeZone = 'UTC'; SET extra_float_digits = 1")
        .await
        .unwrap();
    client
}

/// What Postgres itself prints for `expr` in text format.
async fn postgres_text(client: &tokio_postgres::Client, expr: &str) -> Option<String> {
    let messages = client
        .simple_query(&format!("SELECT {expr}"))
        .await
        .unwrap();
    messages.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
        _ => None,
    })?
}

/// A value's bytes as tokio-postgres received them (binary format).
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Raw, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

pub(crate) fn binary<T: ToSql>(value: T, ty: &Type) -> Bytes {
    let mut out = BytesMut::new();
    value.to_sql(ty, &mut out).unwrap();
    out.freeze()
}

const EXPRESSIONS: &[&str] = &[
    "1::int2",
    "(-2147483648)::int4",
    "9223372036854775807::int8",
    "'1.50'::numeric",
    "'-0.000120'::numeric",
    "'123456789012345678901234567890.123'::numeric",
    "'NaN'::numeric",
    "7.0 / 2",
    "1.5::float8",
    "1e20::float8",
    "0.1::float4",
    "'héllo, \"wörld\"'::text",
    "'x'::varchar(5)",
    "'ab'::char(4)",
    "true",
    "'\\x00ff10'::bytea",
    "'2024-02-29'::date",
    "'2024-01-02 03:04:05.123456'::timestamp",
    "'2024-01-02 03:04:05.5+02'::timestamptz",
    "'infinity'::timestamptz",
    "'13:14:15'::time",
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
    "'{\"b\": [1, 2.50], \"a\": null}'::jsonb",
    "'{\"b\": 1}'::json",
    "ARRAY[1, NULL, 3]::int4[]",
    "ARRAY['a b', '', 'NULL', 'x\"y', 'c\\d', 'plain']",
    "ARRAY[[1, 2], [3, 4]]",
    "'[2:3]={5,6}'::int4[]",
    "'{}'::text[]",
    "ARRAY['1.50'::numeric, NULL]",
    "ARRAY['2024-01-02'::date]",
    "'1 day 02:03:04'::interval",
    "ARRAY['1 day'::interval, '2 hours']",
    "'192.168.0.1/24'::inet",
    "'pg_class'::regclass",
    "'1 2 3'::int2vector",
    "ROW(1, 'a b', NULL, ARRAY[1,2], '1 day'::interval)",
    "'(1,2),(3,4)'::box",
    "'x'::\"char\"",
    "12345::oid",
    "'[1,5)'::int4range",
];

#[tokio::test]
async fn values_print_as_postgres_prints_them() {
    let Some(pg) = PgCluster::start_or_skip() else {
        return;
    };
    let backend = backend(&pg, "types").await;
    let client = direct(&pg, "types").await;
    let mut session = backend.session();
    for expr in EXPRESSIONS {
        let expected = postgres_text(&client, expr).await;
        let text = ok(&mut session, &format!("SELECT {expr}")).await;
        assert_eq!(text.value(), expected, "text of {expr}");
        assert_eq!(text.tag, "SELECT 1");

        let binary = execute(
            &mut session,
            request(&format!("SELECT {expr}"), Vec::new(), Format::Binary),
        )
        .await
        .unwrap();
        let row = client
            .query_one(&format!("SELECT {expr}"), &[])
            .await
            .unwrap();
        let raw: Option<Raw> = row.get(0);
        assert_eq!(binary.rows[0][0], raw.map(|r| r.0), "binary of {expr}");
        assert_eq!(binary.columns[0].type_oid, row.columns()[0].type_().oid());
    }

    // An enum and a composite type the codec has never heard of.
    ok(&mut session, "CREATE TYPE mood AS ENUM ('sad', 'happy'); ").await;
    ok(&mut session, "CREATE TYPE pair AS (a int, b mood)").await;
    for expr in [
        "'happy'::mood",
        "ROW(1, 'sad')::pair",
        "ARRAY['sad', 'happy']::mood[]",
    ] {
        let expected = postgres_text(&client, expr).await;
        assert_eq!(
            ok(&mut session, &format!("SELECT {expr}")).await.value(),
            expected,
            "{expr}"
        );
    }
}

#[tokio::test]
async fn parameters_pass_through_in_both_formats() {
    let Some(pg) = PgCluster::start_or_skip() else {
        return;
    };
    let backend = backend(&pg, "params").await;
    let mut session = backend.session();
    ok(
        &mut session,
        "CREATE TABLE t (id int8 PRIMARY KEY, n numeric(10,2), s varchar(20), b bool, \
         ts timestamptz, u uuid, j jsonb, a int4[], raw bytea)",
    )
    .await;
    let insert = "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    let text = |s: &str| (Some(Bytes::copy_from_slice(s.as_bytes())), Format::Text);
    let out = execute(
        &mut session,
        request(
            insert,
            vec![
                text("1"),
                text("12.345"),
                text("héllo"),
                text("t"),
                text("2024-01-02 03:04:05+01"),
                text("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
                text("{\"k\": [1, 2]}"),
                text("{1,NULL,3}"),
                text("\\x0102"),
            ],
            Format::Text,
        ),
    )
    .await
    .unwrap();
    assert_eq!(out.tag, "INSERT 0 1");

    let uuid = uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12").unwrap();
    let ts = chrono::DateTime::parse_from_rfc3339("2024-05-06T07:08:09.5Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let bin = |b: Bytes| (Some(b), Format::Binary);
    execute(
        &mut session,
        request(
            insert,
            vec![
                bin(binary(2i64, &Type::INT8)),
                (Some(Bytes::from_static(b"-0.5")), Format::Text),
                bin(binary("wörld", &Type::VARCHAR)),
                bin(binary(false, &Type::BOOL)),
                bin(binary(ts, &Type::TIMESTAMPTZ)),
                bin(binary(uuid, &Type::UUID)),
                bin(binary(serde_json::json!({"z": 1.5}), &Type::JSONB)),
                bin(binary(vec![Some(7i32), None], &Type::INT4_ARRAY)),
                (None, Format::Binary),
            ],
            Format::Text,
        ),
    )
    .await
    .unwrap();

    let out = ok(&mut session, "SELECT * FROM t ORDER BY id").await;
    assert_eq!(
        out.text(),
        vec![
            vec![
                Some("1".into()),
                Some("12.35".into()),
                Some("héllo".into()),
                Some("t".into()),
                Some("2024-01-02 02:04:05+00".into()),
                Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
                Some("{\"k\": [1, 2]}".into()),
                Some("{1,NULL,3}".into()),
                Some("\\x0102".into()),
            ],
            vec![
                Some("2".into()),
                Some("-0.50".into()),
                Some("wörld".into()),
                Some("f".into()),
                Some("2024-05-06 07:08:09.5+00".into()),
                Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12".into()),
                Some("{\"z\": 1.5}".into()),
                Some("{7,NULL}".into()),
                None,
            ],
        ]
    );
    // Real types and typmods in the row description.
    let oids: Vec<u32> = out.columns.iter().map(|c| c.type_oid).collect();
    assert_eq!(oids, vec![20, 1700, 1043, 16, 1184, 2950, 3802, 1007, 17]);
    assert_eq!(out.columns[1].type_modifier, ((10 << 16) | 2) + 4);
    assert_eq!(out.columns[2].type_modifier, 20 + 4);
    assert_eq!(out.columns[0].type_size, 8);
    assert!(out.columns[0].table_oid > 0);
    assert_eq!(out.columns[2].column_id, 3);

    // Binary results, per column.
    let mut mixed = request(
        "SELECT id, s FROM t WHERE id = $1",
        vec![bin(binary(2i64, &Type::INT8))],
        Format::Text,
    );
    mixed.result_formats = Arc::from(vec![Format::Binary, Format::Text]);
    let out = execute(&mut session, mixed).await.unwrap();
    assert_eq!(
        out.rows,
        vec![vec![
            Some(2i64.to_be_bytes().to_vec()),
            Some("wörld".as_bytes().to_vec())
        ]]
    );

    // A wrong parameter count is refused the way Postgres refuses it.
    let e = execute(
        &mut session,
        request("SELECT $1::int4 + $2::int4", vec![text("1")], Format::Text),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(e.code, "08P01", "{e:?}");
    // Bad text input is Postgres's own error.
    let e = execute(
        &mut session,
        request("SELECT $1::int4", vec![text("x")], Format::Text),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(e.code, "22P02", "{e:?}");
    assert!(
        e.message.contains("invalid input syntax for type integer"),
        "{e:?}"
    );
}

#[tokio::test]
async fn errors_describe_and_copy() {
    let Some(pg) = PgCluster::start_or_skip() else {
        return;
    };
    let backend = backend(&pg, "errors").await;
    let mut session = backend.session();
    ok(
        &mut session,
        "CREATE TABLE items (id int PRIMARY KEY, name varchar(20) NOT NULL, price numeric(10,2))",
    )
    .await;
    assert_eq!(
        ok(&mut session, "INSERT INTO items VALUES (1, 'a', 1.5)")
            .await
            .tag,
        "INSERT 0 1"
    );

    let e = err(&mut session, "INSERT INTO items VALUES (1, 'b', 2)").await;
    assert_eq!(e.code, "23505");
    assert_eq!(
        e.message,
        "duplicate key value violates unique constraint \"items_pkey\""
    );
    assert_eq!(e.detail.as_deref(), Some("Key (id)=(1) already exists."));
    let e = err(
        &mut session,
        "DO $$ BEGIN RAISE EXCEPTION 'boom' USING DETAIL = 'the detail', HINT = 'the hint', \
         ERRCODE = '22012'; END $$",
    )
    .await;
    assert_eq!(
        (
            e.code.as_str(),
            e.message.as_str(),
            e.detail.as_deref(),
            e.hint.as_deref()
        ),
        ("22012", "boom", Some("the detail"), Some("the hint"))
    );
    assert_eq!(err(&mut session, "SELEC 1").await.code, "42601");
    assert_eq!(err(&mut session, "SELECT * FROM nope").await.code, "42P01");

    let description = session
        .describe(
            "SELECT id, name, price, now() FROM items WHERE id = $1 AND name = $2",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(description.params, vec![23, 25]);
    let columns: Vec<(String, u32, i32)> = description
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.type_oid, c.type_modifier))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("id".to_owned(), 23, -1),
            ("name".to_owned(), 1043, 24),
            ("price".to_owned(), 1700, (10 << 16 | 2) + 4),
            ("now".to_owned(), 1184, -1),
        ]
    );
    assert!(description.columns[0].table_oid > 0);
    assert_eq!(description.columns[3].table_oid, 0);
    let e = session
        .describe("SELECT nope FROM items", &[])
        .await
        .err()
        .unwrap();
    assert_eq!(e.code, "42703");

    let written = session
        .copy_in(CopyIn {
            table: "items".to_owned(),
            columns: vec!["id".to_owned(), "name".to_owned(), "price".to_owned()],
            rows: vec![
                vec![Some("2".into()), Some("tab\there".into()), None],
                vec![
                    Some("3".into()),
                    Some("back\\slash\nline".into()),
                    Some("9.999".into()),
                ],
            ],
        })
        .await
        .unwrap();
    assert_eq!(written, 2);
    let out = ok(
        &mut session,
        "SELECT id, name, price FROM items WHERE id > 1 ORDER BY id",
    )
    .await;
    assert_eq!(
        out.text(),
        vec![
            vec![Some("2".into()), Some("tab\there".into()), None],
            vec![
                Some("3".into()),
                Some("back\\slash\nline".into()),
                Some("10.00".into())
            ],
        ]
    );
    let e = session
        .copy_in(CopyIn {
            table: "items".to_owned(),
            columns: Vec::new(),
            rows: vec![vec![Some("x".into()), Some("y".into()), None]],
        })
        .await
        .err()
        .unwrap();
    assert_eq!(e.code, "22P02", "{e:?}");
}

#[tokio::test]
async fn transactions_savepoints_and_cached_statements() {
    let Some(pg) = PgCluster::start_or_skip() else {
        return;
    };
    let backend = backend(&pg, "txn").await;
    let mut session = backend.session();
    let mut other = backend.session();
    ok(&mut session, "CREATE TABLE t (id int PRIMARY KEY)").await;

    assert_eq!(ok(&mut session, "BEGIN").await.tag, "BEGIN");
    assert!(session.in_transaction());
    ok(&mut session, "INSERT INTO t VALUES (1)").await;
    assert_eq!(ok(&mut session, "SAVEPOINT a").await.tag, "SAVEPOINT");
    assert_eq!(
        err(&mut session, "INSERT INTO t VALUES (1)").await.code,
        "23505"
    );
    assert_eq!(err(&mut session, "SELECT 1").await.code, "25P02");
    assert_eq!(
        ok(&mut session, "ROLLBACK TO SAVEPOINT a").await.tag,
        "ROLLBACK"
    );
    ok(&mut session, "INSERT INTO t VALUES (2)").await;
    // Not visible elsewhere before COMMIT.
    assert_eq!(
        ok(&mut other, "SELECT count(*) FROM t")
            .await
            .value()
            .as_deref(),
        Some("0")
    );
    assert_eq!(ok(&mut session, "COMMIT").await.tag, "COMMIT");
    assert!(!session.in_transaction());
    assert_eq!(
        ok(
            &mut other,
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"
        )
        .await
        .value()
        .as_deref(),
        Some("1,2")
    );

    // COMMIT of a failed transaction rolls back, as Postgres says.
    ok(&mut session, "START TRANSACTION").await;
    ok(&mut session, "INSERT INTO t VALUES (3)").await;
    err(&mut session, "SELECT 1/0").await;
    assert_eq!(ok(&mut session, "COMMIT").await.tag, "ROLLBACK");
    assert_eq!(
        ok(&mut other, "SELECT count(*) FROM t")
            .await
            .value()
            .as_deref(),
        Some("2")
    );
    assert_eq!(err(&mut session, "SAVEPOINT x").await.code, "25P01");

    // A BEGIN in an open transaction means the session was handed on with a stale
    // transaction: it is rolled back, never committed by the next client.
    ok(&mut session, "BEGIN").await;
    ok(&mut session, "INSERT INTO t VALUES (40)").await;
    ok(&mut session, "BEGIN").await;
    assert!(session.in_transaction());
    ok(&mut session, "INSERT INTO t VALUES (41)").await;
    ok(&mut session, "COMMIT").await;
    assert_eq!(
        ok(
            &mut other,
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM t WHERE id >= 40"
        )
        .await
        .value()
        .as_deref(),
        Some("41")
    );
    ok(&mut session, "DELETE FROM t WHERE id = 41").await;

    // A session dropped inside a transaction rolls it back and frees its locks.
    {
        let mut doomed = backend.session();
        ok(&mut doomed, "BEGIN").await;
        ok(&mut doomed, "INSERT INTO t VALUES (4)").await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = run(&mut other, "INSERT INTO t VALUES (4)").await;
        if out.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "{out:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A cached statement survives a change of the table's columns.
    for _ in 0..2 {
        ok(&mut session, "SELECT * FROM t WHERE id = 1").await;
    }
    ok(&mut other, "ALTER TABLE t ADD COLUMN name text DEFAULT 'x'").await;
    let out = ok(&mut session, "SELECT * FROM t WHERE id = 1").await;
    assert_eq!(out.text(), vec![vec![Some("1".into()), Some("x".into())]]);

    // DDL tags.
    assert_eq!(
        ok(&mut session, "CREATE INDEX t_name ON t (name)")
            .await
            .tag,
        "CREATE INDEX"
    );
    assert_eq!(
        ok(&mut session, "UPDATE t SET name = 'y'").await.tag,
        "UPDATE 3"
    );
    assert_eq!(
        ok(&mut session, "DELETE FROM t WHERE id > 3").await.tag,
        "DELETE 1"
    );
    assert_eq!(ok(&mut session, "DROP TABLE t").await.tag, "DROP TABLE");
}

async fn prepared_row(session: &mut dyn NodeSession, gid: &str, value: i32) {
    ok(session, "BEGIN").await;
    ok(session, &format!("INSERT INTO acct VALUES ({value})")).await;
    session.prepare(gid, "n2").await.unwrap();
    assert!(!session.in_transaction());
}

#[tokio::test]
async fn two_phase_commit_survives_a_crash_of_postgres() {
    let Some(mut pg) = PgCluster::start_or_skip() else {
        return;
    };
    let backend = backend(&pg, "twopc").await;
    let mut session = backend.session();
    ok(&mut session, "CREATE TABLE acct (v int PRIMARY KEY)").await;
    prepared_row(&mut session, "g-commit", 1).await;
    prepared_row(&mut session, "g-abort", 2).await;
    // Prepared rows are invisible and hold their locks.
    assert_eq!(
        ok(&mut session, "SELECT count(*) FROM acct")
            .await
            .value()
            .as_deref(),
        Some("0")
    );

    pg.kill_postmaster().unwrap();
    let e = err(&mut session, "SELECT 1").await;
    assert!(matches!(e.code.as_str(), "08006" | "57P01"), "{e:?}");
    assert!(
        e.message.contains("twopc"),
        "the error names the database: {e:?}"
    );
    pg.restart().unwrap();

    // The backend reconnects by itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match run(&mut session, "SELECT 1").await {
            Ok(out) => {
                assert_eq!(out.value().as_deref(), Some("1"));
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "no recovery: {e:?}");
                assert!(
                    matches!(e.code.as_str(), "08006" | "57P01" | "57P03"),
                    "{e:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(backend.is_healthy());

    let mut prepared = backend.prepared().await.unwrap();
    prepared.sort_by(|a, b| a.gid.cmp(&b.gid));
    let gids: Vec<(&str, &str)> = prepared
        .iter()
        .map(|p| (p.gid.as_str(), p.decider.as_str()))
        .collect();
    assert_eq!(gids, vec![("g-abort", "n2"), ("g-commit", "n2")]);
    assert!(prepared[0].prepared_at_ms > 1_600_000_000_000);

    backend.finish_prepared("g-commit", true).await.unwrap();
    backend.finish_prepared("g-abort", false).await.unwrap();
    // Finishing again is a no-op.
    backend.finish_prepared("g-commit", true).await.unwrap();
    assert!(backend.prepared().await.unwrap().is_empty());
    assert_eq!(
        ok(&mut session, "SELECT string_agg(v::text, ',') FROM acct")
            .await
            .value()
            .as_deref(),
        Some("1")
    );

    // The decision record commits with the decider's own changes.
    ok(&mut session, "BEGIN").await;
    ok(&mut session, "INSERT INTO acct VALUES (10)").await;
    session
        .commit_decision("g-decided", &["n1".to_owned(), "n2".to_owned()])
        .await
        .unwrap();
    assert!(!session.in_transaction());
    assert_eq!(
        backend.txn_outcome("g-decided").await.unwrap(),
        TxnOutcome::Committed
    );
    let client = direct(&pg, "twopc").await;
    let row = client
        .query_one(
            "SELECT state, participants FROM mycelium.txn_records WHERE gid = 'g-decided'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("committed".to_owned(), "n1,n2".to_owned())
    );

    // Asking first records an abort: the late decision fails and its changes roll back.
    assert_eq!(
        backend.txn_outcome("g-late").await.unwrap(),
        TxnOutcome::Aborted
    );
    ok(&mut session, "BEGIN").await;
    ok(&mut session, "INSERT INTO acct VALUES (11)").await;
    let e = session
        .commit_decision("g-late", &["n1".to_owned()])
        .await
        .err()
        .unwrap();
    assert_eq!(e.code, "40001", "{e:?}");
    assert!(!session.in_transaction());
    assert_eq!(
        ok(&mut session, "SELECT count(*) FROM acct WHERE v = 11")
            .await
            .value()
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        backend.txn_outcome("g-late").await.unwrap(),
        TxnOutcome::Aborted
    );

    // A decision still being written is pending, then committed.
    client
        .batch_execute(
            "BEGIN; INSERT INTO mycelium.txn_records VALUES ('g-slow', 'committed', 'n1')",
        )
        .await
        .unwrap();
    assert_eq!(
        backend.txn_outcome("g-slow").await.unwrap(),
        TxnOutcome::Pending
    );
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        backend.txn_outcome("g-slow").await.unwrap(),
        TxnOutcome::Committed
    );

    // A failed transaction is not prepared: the vote is no.
    ok(&mut session, "BEGIN").await;
    err(&mut session, "SELECT 1/0").await;
    let e = session.prepare("g-failed", "n2").await.err().unwrap();
    assert_eq!(e.code, "25P02", "{e:?}");
    assert!(!session.in_transaction());
    assert!(backend.prepared().await.unwrap().is_empty());
}

#[tokio::test]
async fn prepared_transactions_must_be_enabled() {
    if PgCluster::skipped() {
        return;
    }
    let pg = PgCluster::start_with(&[("max_prepared_transactions", "0")]).unwrap();
    let e = PostgresBackend::connect(options(&pg, "off"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("max_prepared_transactions = 0"), "{e}");
    assert!(e.contains("postgresql.conf"), "{e}");

    // An unreachable server is named in the error.
    let mut unreachable = PostgresOptions::new("n9", "postgres://mycelium:mycelium@127.0.0.1:1/x");
    unreachable.connect_timeout = Duration::from_secs(2);
    let e = PostgresBackend::connect(unreachable)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("n9") && e.contains("127.0.0.1:1"), "{e}");
}

#[tokio::test]
async fn a_dropped_stream_cancels_the_statement() {
    let Some(pg) = PgCluster::start_or_skip() else {
        return;
    };
    let backend = backend(&pg, "cancel").await;
    let client = direct(&pg, "cancel").await;
    let mut session = backend.session();
    let sleeping = "SELECT count(*) FROM pg_stat_activity \
                    WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(30)%'";

    // Autocommit: the server stops the query and the session goes on.
    let mut stream = session
        .execute(Execute::simple("SELECT pg_sleep(30)"))
        .await
        .unwrap();
    // Postgres sends nothing until the sleep is over: the read times out, as it would under
    // a client's statement_timeout.
    let first = tokio::time::timeout(Duration::from_millis(300), stream.recv()).await;
    assert!(first.is_err(), "{first:?}");
    drop(stream);
    let started = Instant::now();
    assert_eq!(
        ok(&mut session, "SELECT 2").await.value().as_deref(),
        Some("2")
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let row = client.query_one(sleeping, &[]).await.unwrap();
        if row.get::<_, i64>(0) == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "pg_sleep still runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(10));

    // In a transaction: the cancel aborts it, as it would on PostgreSQL.
    ok(&mut session, "BEGIN").await;
    let mut stream = session
        .execute(Execute::simple("SELECT pg_sleep(30)"))
        .await
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(300), stream.recv()).await;
    drop(stream);
    assert_eq!(err(&mut session, "SELECT 1").await.code, "25P02");
    assert_eq!(ok(&mut session, "COMMIT").await.tag, "ROLLBACK");
    assert!(!session.in_transaction());
}

fn order(priority: u64, holds_elsewhere: bool) -> Option<mycelium_protocol::LockOrder> {
    Some(mycelium_protocol::LockOrder {
        priority,
        holds_elsewhere,
    })
}

/// `UPDATE t SET v = v * 10 + digit WHERE id = 1` in a transaction of this lock order, which
/// commits; spawned, with its tag or error.
fn update_row_one(
    backend: &PostgresBackend,
    priority: u64,
    holds_elsewhere: bool,
    digit: u32,
) -> tokio::task::JoinHandle<Result<String, DbError>> {
    let mut session = backend.session();
    session.set_lock_order(order(priority, holds_elsewhere));
    tokio::spawn(async move {
        ok(&mut session, "BEGIN").await;
        let tag = run(
            &mut session,
            &format!("UPDATE t SET v = v * 10 + {digit} WHERE id = 1"),
        )
        .await
        .map(|o| o.tag);
        ok(&mut session, "COMMIT").await;
        tag
    })
}

/// Wait-die on PostgreSQL's row locks, which no server can see across nodes: a younger
/// transaction that holds locks on other nodes fails with 40001 instead of waiting for an
/// older one (there is no lock timeout here: without wait-die it would wait for ever); an
/// older one, or one holding nothing elsewhere, waits; and nobody dies waiting for a prepared
/// transaction, which asks for no lock again.
#[tokio::test]
async fn a_younger_transaction_holding_locks_elsewhere_does_not_wait_for_an_older_one() {
    let Some(pg) = PgCluster::start_or_skip() else {
        return;
    };
    let mut options = options(&pg, "wait_die");
    options.pool_size = 8;
    let backend = PostgresBackend::connect(options).await.unwrap();
    let mut holder = backend.session();
    ok(&mut holder, "CREATE TABLE t (id int PRIMARY KEY, v int)").await;
    ok(&mut holder, "INSERT INTO t VALUES (1, 0)").await;
    holder.set_lock_order(order(100, false));
    ok(&mut holder, "BEGIN").await;
    ok(&mut holder, "UPDATE t SET v = 1 WHERE id = 1").await;

    let younger = update_row_one(&backend, 200, true, 2);
    let died = tokio::time::timeout(Duration::from_secs(20), younger)
        .await
        .expect("the younger transaction waited")
        .unwrap()
        .unwrap_err();
    assert_eq!(died.code, "40001", "{died:?}");
    assert!(
        died.detail
            .as_deref()
            .is_some_and(|d| d.contains("deadlock")),
        "{died:?}"
    );

    // Older, or holding nothing elsewhere: waits for the holder, then writes (PostgreSQL
    // may wake either first).
    let older = update_row_one(&backend, 50, true, 3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let alone = update_row_one(&backend, 300, false, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!older.is_finished() && !alone.is_finished());
    assert_eq!(ok(&mut holder, "COMMIT").await.tag, "COMMIT");
    assert_eq!(older.await.unwrap().unwrap(), "UPDATE 1");
    assert_eq!(alone.await.unwrap().unwrap(), "UPDATE 1");
    let v = ok(&mut holder, "SELECT v FROM t").await.value();
    assert!(matches!(v.as_deref(), Some("134" | "143")), "{v:?}");

    // A prepared holder: the younger transaction waits for its outcome.
    holder.set_lock_order(order(400, false));
    ok(&mut holder, "BEGIN").await;
    ok(&mut holder, "UPDATE t SET v = 5 WHERE id = 1").await;
    holder.prepare("g-wait-die", "n2").await.unwrap();
    let waiting = update_row_one(&backend, 500, true, 6);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    backend.finish_prepared("g-wait-die", true).await.unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), "UPDATE 1");
    assert_eq!(
        ok(&mut holder, "SELECT v FROM t").await.value().as_deref(),
        Some("56")
    );
}

/// Statements outside a transaction take the connection used last, so a lone client keeps
/// one PostgreSQL backend (warm, with its prepared statements) even after a burst opened more.
#[tokio::test]
async fn a_lone_client_keeps_the_connection_used_last() {
    let Some(pg) = PgCluster::start_or_skip() else {
        return;
    };
    let backend = backend(&pg, "lifo").await;
    let mut burst = [backend.session(), backend.session(), backend.session()];
    let mut pids = Vec::new();
    for session in &mut burst {
        ok(session, "BEGIN").await;
        pids.push(ok(session, "SELECT pg_backend_pid()").await.value());
    }
    pids.dedup();
    assert_eq!(pids.len(), 3, "three transactions hold three connections");
    for session in &mut burst {
        ok(session, "COMMIT").await;
    }
    let last = pids.pop().flatten();

    let mut lone = backend.session();
    for _ in 0..5 {
        let pid = ok(&mut lone, "SELECT pg_backend_pid()").await.value();
        assert_eq!(
            pid, last,
            "the connection returned last serves every statement"
        );
    }
}
