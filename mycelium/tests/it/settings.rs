//! `current_setting()` and `set_config()` answer from the client's session, as in PostgreSQL
//! 15 (expected values are the reference server's), on every backend, in the simple and the
//! extended protocol.

use tokio_postgres::types::Type;

use crate::harness::{Backend, Cluster, sqlstate};
use crate::processes::on_every_backend;

on_every_backend!(
    current_setting_reads_the_session,
    set_config_sets_the_session,
    settings_in_statements_on_tables,
);

async fn text(client: &tokio_postgres::Client, sql: &str) -> Option<String> {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

async fn current_setting_reads_the_session(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .expect("server_version_num");
    assert_eq!(row.get::<_, i32>(0), 150000);
    assert_eq!(row.columns()[0].name(), "current_setting");
    assert_eq!(*row.columns()[0].type_(), Type::INT4);
    assert_eq!(
        text(&client, "SELECT current_setting('TimeZone')")
            .await
            .as_deref(),
        Some("UTC")
    );
    client
        .batch_execute(
            "SET application_name = 'x'; SET search_path = public, other; \
             SET statement_timeout = '2s'",
        )
        .await
        .expect("set");
    for (name, expected) in [
        ("application_name", "x"),
        ("SEARCH_PATH", "public, other"),
        ("statement_timeout", "2s"),
        ("DateStyle", "ISO, MDY"),
        ("transaction_isolation", "read committed"),
    ] {
        let sql = format!("SELECT current_setting('{name}')");
        assert_eq!(
            text(&client, &sql).await.as_deref(),
            Some(expected),
            "{name}"
        );
    }
    // Simple protocol, and a call inside a larger expression (sent to a node as a literal).
    let rows = client
        .simple_query("SELECT upper(current_setting('application_name')) AS up")
        .await
        .expect("simple");
    match &rows[1] {
        tokio_postgres::SimpleQueryMessage::Row(row) => {
            assert_eq!(row.columns()[0].name(), "up");
            assert_eq!(row.get(0), Some("X"));
        }
        other => panic!("{other:?}"),
    }

    let error = client
        .query("SELECT current_setting('no_such_thing')", &[])
        .await
        .expect_err("unknown");
    assert_eq!(sqlstate(&error), "42704");
    let error = client
        .query("SELECT current_setting('app.user_id')", &[])
        .await
        .expect_err("custom, not set yet");
    assert_eq!(sqlstate(&error), "42704");
    assert_eq!(
        text(&client, "SELECT current_setting('app.user_id', true)").await,
        None
    );
    let missing: bool = client
        .query_one("SELECT current_setting('app.user_id', true) IS NULL", &[])
        .await
        .expect("missing_ok in an expression")
        .get(0);
    assert!(missing);
    client
        .batch_execute("SET app.user_id = 42")
        .await
        .expect("set custom");
    assert_eq!(
        text(&client, "SELECT current_setting('App.User_Id')")
            .await
            .as_deref(),
        Some("42")
    );

    // The value is the one at execution, not at Parse.
    let statement = client
        .prepare("SELECT current_setting('application_name') || '!'")
        .await
        .expect("prepare");
    assert_eq!(statement.columns()[0].type_(), &Type::TEXT);
    for name in ["first", "second"] {
        client
            .batch_execute(&format!("SET application_name = '{name}'"))
            .await
            .expect("set");
        let value: String = client
            .query_one(&statement, &[])
            .await
            .expect("execute")
            .get(0);
        assert_eq!(value, format!("{name}!"));
    }
}

async fn set_config_sets_the_session(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let mut client = cluster.connect().await;
    // pg_dump's first statement.
    assert_eq!(
        text(
            &client,
            "SELECT pg_catalog.set_config('search_path', '', false)"
        )
        .await
        .as_deref(),
        Some("")
    );
    assert_eq!(
        text(&client, "SHOW search_path").await.as_deref(),
        Some(""),
        "SHOW sees what set_config set"
    );

    // Described as text, with text and boolean parameters.
    let statement = client
        .prepare("SELECT set_config('app.user_id', $1, $2), current_setting('app.user_id') AS now")
        .await
        .expect("prepare");
    assert_eq!(statement.params(), &[Type::TEXT, Type::BOOL]);
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["set_config", "now"]);
    assert!(statement.columns().iter().all(|c| *c.type_() == Type::TEXT));
    let row = client
        .query_one(&statement, &[&"42", &false])
        .await
        .expect("set_config");
    assert_eq!((row.get::<_, &str>(0), row.get::<_, &str>(1)), ("42", "42"));
    assert_eq!(
        text(&client, "SELECT current_setting('app.user_id')")
            .await
            .as_deref(),
        Some("42")
    );

    // is_local: until the transaction ends.
    let tx = client.transaction().await.expect("begin");
    let row = tx
        .query_one(&statement, &[&"7", &true])
        .await
        .expect("local");
    assert_eq!(row.get::<_, &str>(0), "7");
    assert_eq!(
        tx.query_one("SELECT current_setting('app.user_id')", &[])
            .await
            .expect("inside")
            .get::<_, &str>(0),
        "7"
    );
    tx.commit().await.expect("commit");
    assert_eq!(
        text(&client, "SELECT current_setting('app.user_id')")
            .await
            .as_deref(),
        Some("42")
    );
    // Outside a transaction, a local value lasts for its statement.
    let row = client
        .query_one(
            "SELECT set_config('app.once', '1', true), current_setting('app.once')",
            &[],
        )
        .await
        .expect("local outside a transaction");
    assert_eq!((row.get::<_, &str>(0), row.get::<_, &str>(1)), ("1", "1"));
    assert_eq!(
        text(&client, "SELECT current_setting('app.once')")
            .await
            .as_deref(),
        Some("")
    );
    client
        .batch_execute("BEGIN; SET LOCAL statement_timeout = '1s'; COMMIT")
        .await
        .expect("set local");
    assert_eq!(
        text(&client, "SELECT current_setting('statement_timeout')")
            .await
            .as_deref(),
        Some("0")
    );

    assert_eq!(
        text(
            &client,
            "SELECT set_config('statement_timeout', '3000', false)"
        )
        .await
        .as_deref(),
        Some("3s")
    );
    client
        .batch_execute("RESET statement_timeout")
        .await
        .expect("reset");

    // A transaction that rolls back takes its settings with it, also an implicit one.
    client
        .batch_execute(
            "BEGIN; SET application_name = 'rolled'; \
             SELECT set_config('app.user_id', '1', false); ROLLBACK",
        )
        .await
        .expect("rolled back");
    let error = client
        .batch_execute("SET app.user_id = 5; SELECT 1/0")
        .await
        .expect_err("division by zero");
    assert_eq!(sqlstate(&error), "22012");
    let row = client
        .query_one(
            "SELECT current_setting('app.user_id'), current_setting('application_name')",
            &[],
        )
        .await
        .expect("after the rollbacks");
    assert_eq!((row.get::<_, &str>(0), row.get::<_, &str>(1)), ("42", ""));

    // Errors as SET's; a failed statement changes nothing.
    for (sql, code) in [
        (
            "SELECT set_config('server_version_num', '1', false)",
            "55P02",
        ),
        ("SELECT set_config('no_such_thing', '1', false)", "42704"),
        (
            "SELECT set_config('statement_timeout', 'abc', false)",
            "22023",
        ),
        ("SELECT set_config(NULL, '1', false)", "22004"),
        (
            "SELECT set_config('app.user_id', '9', false), current_setting('nope')",
            "42704",
        ),
    ] {
        let error = client.query(sql, &[]).await.expect_err(sql);
        assert_eq!(sqlstate(&error), code, "{sql}: {error:?}");
    }
    assert_eq!(
        text(&client, "SELECT current_setting('app.user_id')")
            .await
            .as_deref(),
        Some("42")
    );
}

async fn settings_in_statements_on_tables(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE docs (id int PRIMARY KEY, owner int NOT NULL, body text)
               WITH (mycelium.shard_keys = 'id', mycelium.shards = 4);
             INSERT INTO docs VALUES (1, 42, 'a'), (2, 7, 'b'), (3, 42, 'c'), (4, 7, 'd');",
        )
        .await
        .expect("create");
    // An RLS-style app: set the user, then read its rows through one prepared statement.
    let mine = client
        .prepare(
            "SELECT id FROM docs WHERE owner = current_setting('app.user_id')::int ORDER BY id",
        )
        .await
        .expect("prepare");
    assert_eq!(mine.columns()[0].type_(), &Type::INT4);
    for (user, expected) in [("42", [1, 3]), ("7", [2, 4])] {
        client
            .query_one("SELECT set_config('app.user_id', $1, false)", &[&user])
            .await
            .expect("set user");
        let ids: Vec<i32> = client
            .query(&mine, &[])
            .await
            .expect("rows")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(ids, expected, "user {user}");
    }
    let updated = client
        .execute(
            "UPDATE docs SET body = current_setting('application_name', true) WHERE id = $1",
            &[&2i32],
        )
        .await
        .expect("update");
    assert_eq!(updated, 1);
    let body: Option<String> = client
        .query_one("SELECT body FROM docs WHERE id = 2", &[])
        .await
        .expect("read back")
        .get(0);
    assert_eq!(body.as_deref(), Some(""));

    for sql in [
        "SELECT set_config('app.user_id', '1', false) FROM docs",
        "SELECT current_setting($1) FROM docs",
        "UPDATE docs SET body = set_config('a.b', 'c', false)",
    ] {
        let error = client.prepare(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&error), "0A000", "{sql}: {error:?}");
    }
}
