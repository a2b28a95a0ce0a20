//! `__mycelium_shard`: registered from `SqliteOptions::shard_function` on every connection
//! and passed through the Postgres → SQLite rewrite, in WHERE clauses and derived tables of
//! SELECT, UPDATE and DELETE (the statement shapes `mycelium_router::scope_statement` makes).
//! The router's own function is tested end to end in the node's tests.

use std::sync::Arc;

use mycelium_replication::SqlValue;
use mycelium_storage::{SqliteOptions, SqliteSession};

use crate::util::*;

/// A stand-in for the router's hash: the first key modulo the shard count.
fn modulo_shards() -> SqliteOptions {
    SqliteOptions {
        workers: 2,
        shard_function: Some(Arc::new(|args: &[SqlValue]| match args {
            [
                SqlValue::Integer(shards),
                SqlValue::Text(_),
                SqlValue::Integer(key),
                ..,
            ] => Ok(key.rem_euclid(*shards)),
            _ => Err(format!("bad arguments: {args:?}")),
        })),
        ..SqliteOptions::default()
    }
}

async fn setup(s: &mut SqliteSession) {
    ok(
        s,
        "CREATE TABLE users (id int PRIMARY KEY, name text, flag boolean, n int)",
    )
    .await;
    ok(
        s,
        "CREATE TABLE orders (id int PRIMARY KEY, user_id int, total int)",
    )
    .await;
    for id in 0..12 {
        ok(
            s,
            &format!(
                "INSERT INTO users (id, name, flag, n) VALUES ({id}, 'u{id}', {}, 0)",
                id % 2 == 0
            ),
        )
        .await;
        ok(
            s,
            &format!("INSERT INTO orders (id, user_id, total) VALUES ({id}, {id}, {id})"),
        )
        .await;
    }
}

/// The ids of `users`, in order.
async fn ids(s: &mut SqliteSession, sql: &str) -> Vec<String> {
    ok(s, sql)
        .await
        .text()
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .collect()
}

#[tokio::test]
async fn scoped_selects_see_only_kept_shards() {
    let db = open_with(modulo_shards());
    let mut s = db.backend.session();
    setup(&mut s).await;
    assert_eq!(
        ok(
            &mut s,
            "SELECT count(*) FROM users WHERE __mycelium_shard(4, '', users.\"id\") IN (1, 3)"
        )
        .await
        .value(),
        Some("6".to_owned())
    );
    assert_eq!(
        ids(
            &mut s,
            "SELECT id FROM users AS u WHERE (flag OR id = 5) AND \
             __mycelium_shard(4, '', u.\"id\") IN (0, 1) ORDER BY id"
        )
        .await,
        ["0", "4", "5", "8"]
    );
    assert_eq!(
        ids(
            &mut s,
            "SELECT u.id FROM (SELECT * FROM users WHERE __mycelium_shard(4, '', users.\"id\") \
             IN (2)) AS u LEFT JOIN (SELECT * FROM orders WHERE \
             __mycelium_shard(4, '', orders.\"user_id\") IN (2)) AS o ON o.user_id = u.id \
             WHERE o.total > 2 ORDER BY u.id"
        )
        .await,
        ["6", "10"]
    );
    assert_eq!(
        ids(
            &mut s,
            "WITH big AS (SELECT * FROM users WHERE id > 3 AND \
             __mycelium_shard(4, '', users.\"id\") IN (3)) SELECT id FROM big ORDER BY id"
        )
        .await,
        ["7", "11"]
    );
    // Parameters beside the scope.
    let out = run_params(
        &mut s,
        "SELECT count(*) FROM users WHERE id < $1 AND __mycelium_shard(4, '', users.\"id\") \
         IN (0, 1)",
        &[Some("6")],
    )
    .await
    .unwrap();
    assert_eq!(out.value(), Some("4".to_owned()));
    // Nothing kept.
    assert_eq!(
        ok(
            &mut s,
            "SELECT count(*) FROM (SELECT * FROM users WHERE 1 = 0) AS users"
        )
        .await
        .value(),
        Some("0".to_owned())
    );
}

#[tokio::test]
async fn scoped_writes_touch_only_kept_shards() {
    let db = open_with(modulo_shards());
    let mut s = db.backend.session();
    setup(&mut s).await;
    let out = ok(
        &mut s,
        "UPDATE users AS u SET n = 1 WHERE flag AND __mycelium_shard(4, '', u.\"id\") IN (0, 1)",
    )
    .await;
    assert_eq!(out.tag, "UPDATE 3");
    assert_eq!(
        ids(&mut s, "SELECT id FROM users WHERE n = 1 ORDER BY id").await,
        ["0", "4", "8"]
    );
    let out = ok(
        &mut s,
        "UPDATE users SET n = o.total FROM (SELECT * FROM orders WHERE \
         __mycelium_shard(4, '', orders.\"user_id\") IN (2)) AS o WHERE o.user_id = users.id \
         AND __mycelium_shard(4, '', users.\"id\") IN (2)",
    )
    .await;
    assert_eq!(out.tag, "UPDATE 3");
    assert_eq!(
        ids(&mut s, "SELECT id FROM users WHERE n > 1 ORDER BY id").await,
        ["2", "6", "10"]
    );
    let out = ok(
        &mut s,
        "DELETE FROM users WHERE __mycelium_shard(4, '', users.\"id\") IN (3)",
    )
    .await;
    assert_eq!(out.tag, "DELETE 3");
    let out = ok(
        &mut s,
        "DELETE FROM orders AS o WHERE o.user_id IN (SELECT id FROM users WHERE \
         __mycelium_shard(4, '', users.\"id\") IN (0)) AND \
         __mycelium_shard(4, '', o.\"user_id\") IN (0)",
    )
    .await;
    assert_eq!(out.tag, "DELETE 3");
    assert_eq!(count_rows(&db, "users"), 9);
    assert_eq!(count_rows(&db, "orders"), 9);
}

#[tokio::test]
async fn function_errors_and_absence() {
    let db = open_with(modulo_shards());
    let mut s = db.backend.session();
    setup(&mut s).await;
    let e = err(&mut s, "SELECT __mycelium_shard('x')").await;
    assert_eq!(e.code, "22023", "{e:?}");

    let db = open();
    let mut s = db.backend.session();
    setup(&mut s).await;
    let e = err(
        &mut s,
        "SELECT count(*) FROM users WHERE __mycelium_shard(4, '', users.\"id\") IN (1)",
    )
    .await;
    assert_eq!(e.code, "42883", "{e:?}");
}
