//! How the PostgreSQL backend runs statement texts: a text seen for the first time runs as the
//! unnamed statement (one round trip, nothing left prepared on the server), a text that
//! repeats is prepared once and cached; the answers are the same either way.
//! `MYCELIUM_SKIP_POSTGRES=1` skips them.

use bytes::Bytes;
use mycelium_protocol::{Format, NodeSession};
use mycelium_storage::PostgresBackend;
use mycelium_testkit::PgCluster;
use postgres_types::Type;

use super::postgres::{Out, binary, err, execute, ok, options, request};

/// Named statements on the session's connection whose text is `sql`.
async fn prepared_count(session: &mut dyn NodeSession, sql: &str) -> String {
    let query = format!(
        "SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE statement = '{}'",
        sql.replace('\'', "''")
    );
    ok(session, &query).await.value().unwrap_or_default()
}

/// Runs `make()` three times in the session's transaction; checks that the text is prepared
/// from the second run on (and once only), and that all three answers are the same.
async fn three_runs(
    session: &mut dyn NodeSession,
    make: impl Fn() -> mycelium_protocol::Execute,
) -> Out {
    let sql = make().sql.to_string();
    let mut outs = Vec::new();
    for (run, expected) in ["0", "1", "1"].into_iter().enumerate() {
        let out = execute(session, make())
            .await
            .unwrap_or_else(|e| panic!("run {run} of {sql}: {e:?}"));
        assert_eq!(
            prepared_count(session, &sql).await,
            expected,
            "statements prepared for {sql} after run {run}"
        );
        outs.push(out);
    }
    for out in &outs[1..] {
        assert_eq!(out.columns, outs[0].columns, "{sql}");
        assert_eq!(out.rows, outs[0].rows, "{sql}");
        assert_eq!(out.tag, outs[0].tag, "{sql}");
    }
    outs.remove(0)
}

fn text_param(value: &str) -> (Option<Bytes>, Format) {
    (Some(Bytes::from(value.to_owned())), Format::Text)
}

#[tokio::test]
async fn texts_run_unnamed_until_they_repeat() {
    let Some(pg) = PgCluster::start_or_skip() else {
        return;
    };
    let backend = PostgresBackend::connect(options(&pg, "statements"))
        .await
        .unwrap();
    let mut session = backend.session();
    ok(
        &mut session,
        "CREATE TABLE items (id int PRIMARY KEY, name varchar(20), price numeric(10,2), \
         at timestamptz)",
    )
    .await;
    ok(
        &mut session,
        "INSERT INTO items VALUES (1, 'a', 1.50, '2024-01-02 03:04:05+00'), (2, NULL, NULL, NULL)",
    )
    .await;

    // Errors of an unnamed statement leave the session as Postgres leaves it.
    assert_eq!(err(&mut session, "SELECT 1/0").await.code, "22012");
    assert_eq!(
        ok(&mut session, "SELECT 1").await.value().as_deref(),
        Some("1")
    );
    ok(&mut session, "BEGIN").await;
    assert_eq!(
        err(&mut session, "SELECT nope FROM items").await.code,
        "42703"
    );
    assert_eq!(err(&mut session, "SELECT 2").await.code, "25P02");
    assert_eq!(ok(&mut session, "ROLLBACK").await.tag, "ROLLBACK");

    // Parameter counts that do not match are refused as before, types given or not.
    let two = vec![text_param("1"), text_param("2")];
    let e = execute(&mut session, request("SELECT $1::int4", two, Format::Text))
        .await
        .err()
        .unwrap();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        (
            "08P01",
            "bind message supplies 2 parameters, but prepared statement \"\" requires 1"
        )
    );
    let one = vec![text_param("1")];
    let e = execute(
        &mut session,
        request("SELECT $1::int4, $2::int4", one, Format::Text),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        (
            "08P01",
            "bind message supplies 1 parameters, but prepared statement \"\" requires 2"
        )
    );

    // In a transaction every statement uses the same connection, whose prepared statements
    // pg_prepared_statements lists.
    ok(&mut session, "BEGIN").await;
    let select = "SELECT id, name, price, at, price * 2 AS twice, ARRAY[id] AS ids \
                  FROM items ORDER BY id";
    let out = three_runs(&mut session, || request(select, Vec::new(), Format::Text)).await;
    assert_eq!(out.tag, "SELECT 2");
    assert_eq!(
        out.text()[0],
        vec![
            Some("1".into()),
            Some("a".into()),
            Some("1.50".into()),
            Some("2024-01-02 03:04:05+00".into()),
            Some("3.00".into()),
            Some("{1}".into()),
        ]
    );
    let types: Vec<(String, u32, i32)> = out
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.type_oid, c.type_modifier))
        .collect();
    assert_eq!(
        types,
        vec![
            ("id".to_owned(), 23, -1),
            ("name".to_owned(), 1043, 24),
            ("price".to_owned(), 1700, (10 << 16 | 2) + 4),
            ("at".to_owned(), 1184, -1),
            ("twice".to_owned(), 1700, -1),
            ("ids".to_owned(), 1007, -1),
        ]
    );
    assert!(out.columns[0].table_oid > 0);

    let binary_select = format!("{select} -- binary");
    let out = three_runs(&mut session, || {
        request(&binary_select, Vec::new(), Format::Binary)
    })
    .await;
    assert_eq!(out.rows[0][0].as_deref(), Some(&1i32.to_be_bytes()[..]));

    // Parameters: types left to Postgres, or given, in either format.
    let sum = "SELECT $1::int4 + 1 AS n, $2 AS label";
    let out = three_runs(&mut session, || {
        request(sum, vec![text_param("41"), text_param("x")], Format::Text)
    })
    .await;
    assert_eq!(out.text(), vec![vec![Some("42".into()), Some("x".into())]]);
    let typed = "SELECT $1 * 2 AS doubled";
    let out = three_runs(&mut session, || {
        let mut execute = request(
            typed,
            vec![(Some(binary(21i64, &Type::INT8)), Format::Binary)],
            Format::Text,
        );
        execute.param_types = std::sync::Arc::from(vec![20]);
        execute
    })
    .await;
    assert_eq!(out.text(), vec![vec![Some("42".into())]]);
    assert_eq!(out.columns[0].type_oid, 20);

    // No rows: a statement that can return rows still describes its columns.
    let none = "SELECT id, name FROM items WHERE id < 0";
    let out = three_runs(&mut session, || request(none, Vec::new(), Format::Text)).await;
    assert_eq!((out.columns.len(), out.tag.as_str()), (2, "SELECT 0"));
    let returning = "DELETE FROM items WHERE id < 0 RETURNING id";
    let out = three_runs(&mut session, || {
        request(returning, Vec::new(), Format::Text)
    })
    .await;
    assert_eq!((out.columns.len(), out.tag.as_str()), (1, "DELETE 0"));
    let update = "UPDATE items SET name = name WHERE id < 0";
    let out = three_runs(&mut session, || request(update, Vec::new(), Format::Text)).await;
    assert_eq!((out.columns.len(), out.tag.as_str()), (0, "UPDATE 0"));
    ok(&mut session, "COMMIT").await;

    // Without a statement cache nothing is ever left prepared.
    let mut uncached = options(&pg, "statements");
    uncached.statement_cache_size = 0;
    let backend = PostgresBackend::connect(uncached).await.unwrap();
    let mut session = backend.session();
    ok(&mut session, "BEGIN").await;
    for _ in 0..3 {
        let out = ok(&mut session, select).await;
        assert_eq!(out.tag, "SELECT 2");
        assert_eq!(prepared_count(&mut session, select).await, "0");
    }
    ok(&mut session, "COMMIT").await;
}
