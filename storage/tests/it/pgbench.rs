//! What `pgbench -i` and the TPC-B script send, statement for statement.

use std::sync::Arc;

use bytes::Bytes;
use mycelium_protocol::{CopyIn, Execute, Format, NodeSession};

use crate::util::*;

const INIT: &[&str] = &[
    "drop table if exists pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers",
    "create table pgbench_history(tid int,bid int,aid    int,delta int,mtime timestamp,filler char(22))",
    "create table pgbench_tellers(tid int not null,bid int,tbalance int,filler char(84)) with (fillfactor=100)",
    "create table pgbench_accounts(aid    int not null,bid int,abalance int,filler char(84)) with (fillfactor=100)",
    "create table pgbench_branches(bid int not null,bbalance int,filler char(88)) with (fillfactor=100)",
];

const ACCOUNTS: i64 = 1000;
const TELLERS: i64 = 10;

async fn init(db: &Db) {
    let mut s = db.backend.session();
    for sql in INIT {
        ok(&mut s, sql).await;
    }
    assert_eq!(ok(&mut s, "begin").await.tag, "BEGIN");
    assert_eq!(
        ok(
            &mut s,
            "truncate table pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers"
        )
        .await
        .tag,
        "TRUNCATE TABLE"
    );
    let copy = |table: &str, rows: Vec<Vec<Option<String>>>| CopyIn {
        table: table.to_owned(),
        columns: vec![],
        rows,
    };
    let n = s
        .copy_in(copy(
            "pgbench_branches",
            vec![vec![
                Some("1".into()),
                Some("0".into()),
                Some(String::new()),
            ]],
        ))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let tellers = (1..=TELLERS)
        .map(|t| {
            vec![
                Some(t.to_string()),
                Some("1".into()),
                Some("0".into()),
                Some(String::new()),
            ]
        })
        .collect();
    s.copy_in(copy("pgbench_tellers", tellers)).await.unwrap();
    let accounts = (1..=ACCOUNTS)
        .map(|a| {
            vec![
                Some(a.to_string()),
                Some("1".into()),
                Some("0".into()),
                Some(String::new()),
            ]
        })
        .collect();
    assert_eq!(
        s.copy_in(copy("pgbench_accounts", accounts)).await.unwrap(),
        ACCOUNTS as u64
    );
    assert_eq!(ok(&mut s, "commit").await.tag, "COMMIT");
    for table in [
        "pgbench_branches",
        "pgbench_tellers",
        "pgbench_accounts",
        "pgbench_history",
    ] {
        assert_eq!(
            ok(&mut s, &format!("vacuum analyze {table}")).await.tag,
            "VACUUM"
        );
    }
    for (table, key) in [
        ("pgbench_branches", "bid"),
        ("pgbench_tellers", "tid"),
        ("pgbench_accounts", "aid"),
    ] {
        assert_eq!(
            ok(
                &mut s,
                &format!("alter table {table} add primary key ({key})")
            )
            .await
            .tag,
            "ALTER TABLE"
        );
    }
    assert_eq!(
        ok(&mut s, "select count(*) from pgbench_branches")
            .await
            .value(),
        Some("1".into())
    );
}

fn params(sql: &str, values: &[i64]) -> Execute {
    Execute {
        sql: Arc::from(sql),
        param_types: Arc::from(vec![0u32; values.len()]),
        params: values
            .iter()
            .map(|v| Some(Bytes::from(v.to_string())))
            .collect(),
        param_formats: vec![Format::Text; values.len()],
        result_formats: Arc::from(Vec::new()),
    }
}

async fn tpcb(
    s: &mut mycelium_storage::SqliteSession,
    aid: i64,
    tid: i64,
    delta: i64,
) -> Result<(), mycelium_protocol::DbError> {
    execute(s, Execute::simple("BEGIN")).await?;
    execute(
        s,
        params(
            "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
            &[delta, aid],
        ),
    )
    .await?;
    execute(
        s,
        params(
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            &[aid],
        ),
    )
    .await?;
    execute(
        s,
        params(
            "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2",
            &[delta, tid],
        ),
    )
    .await?;
    execute(
        s,
        params(
            "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2",
            &[delta, 1],
        ),
    )
    .await?;
    execute(
        s,
        params("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)", &[tid, 1, aid, delta]),
    )
    .await?;
    let out = execute(s, Execute::simple("END")).await?;
    assert_eq!(out.tag, "COMMIT");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_then_eight_concurrent_tpcb_clients_without_failures() {
    let db = Arc::new(open());
    init(&db).await;
    assert_eq!(count_rows(&db, "pgbench_accounts"), ACCOUNTS);
    let conn = sqlite(&db);
    let pk: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'pgbench_accounts_pkey'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pk, 1);

    let mut clients = Vec::new();
    for client in 0..8i64 {
        let db = db.clone();
        clients.push(tokio::spawn(async move {
            let mut s = db.backend.session();
            for i in 0..25i64 {
                let aid = (client * 97 + i * 31) % ACCOUNTS + 1;
                let tid = (client + i) % TELLERS + 1;
                tpcb(&mut s, aid, tid, i - 12).await.unwrap();
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let mut s = db.backend.session();
    let out = ok(&mut s, "SELECT (SELECT sum(delta) FROM pgbench_history), (SELECT sum(abalance) FROM pgbench_accounts), (SELECT bbalance FROM pgbench_branches), (SELECT count(*) FROM pgbench_history)").await;
    let row = out.text()[0].clone();
    assert_eq!(row[0], row[1]);
    assert_eq!(row[0], row[2]);
    assert_eq!(row[3], Some("200".into()));
    let out = ok(&mut s, "SELECT mtime FROM pgbench_history LIMIT 1").await;
    assert_eq!(out.oids(), vec![1114]);
}

#[tokio::test]
async fn simple_protocol_tpcb_with_literals() {
    let db = open();
    init(&db).await;
    let mut s = db.backend.session();
    for sql in [
        "BEGIN;",
        "UPDATE pgbench_accounts SET abalance = abalance + -5 WHERE aid = 3;",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 3;",
        "UPDATE pgbench_tellers SET tbalance = tbalance + -5 WHERE tid = 2;",
        "UPDATE pgbench_branches SET bbalance = bbalance + -5 WHERE bid = 1;",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (2, 1, 3, -5, CURRENT_TIMESTAMP);",
        "END;",
    ] {
        ok(&mut s, sql).await;
    }
    assert_eq!(
        ok(
            &mut s,
            "SELECT abalance FROM pgbench_accounts WHERE aid = 3"
        )
        .await
        .value(),
        Some("-5".into())
    );
    assert_eq!(
        err(&mut s, "INSERT INTO pgbench_accounts (aid) VALUES (3)")
            .await
            .code,
        "23505"
    );
}
