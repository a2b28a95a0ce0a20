//! Routing decisions for statements over a small set of policies.

use crate::*;

struct Policies;

impl PolicySource for Policies {
    fn policy(&self, table: &str) -> TablePolicy {
        let mut policy = TablePolicy::default_for(table, &PolicyDefaults::default());
        match table {
            "users" | "orders" => {
                policy.shard_keys = vec!["user_id".to_owned()];
                policy.shards = 8;
            }
            "events" => {
                policy.shard_keys = vec!["tenant".to_owned(), "id".to_owned()];
                policy.shards = 4;
            }
            "logs" => {
                policy.shard_keys = vec!["id".to_owned()];
                policy.shards = 3;
            }
            _ => {}
        }
        policy
    }
}

fn check(sql: &str, expected: Route) {
    assert_eq!(route(sql, &Policies), Ok(expected), "{sql}");
}

fn int(i: i64) -> KeyExpr {
    KeyExpr::Value(KeyValue::Int(i))
}

fn keys(keys: Vec<Vec<KeyExpr>>) -> ShardChoice {
    ShardChoice::Keys(keys)
}

fn read(table: &str, shards: ShardChoice) -> Route {
    Route::Read {
        table: table.to_owned(),
        shards,
    }
}

fn write(table: &str, shards: ShardChoice) -> Route {
    Route::Write {
        table: table.to_owned(),
        shards,
    }
}

fn refused(sql: &str) -> String {
    match route(sql, &Policies) {
        Err(RouterError::Unsupported(message)) => message,
        other => panic!("{sql}: expected 0A000, got {other:?}"),
    }
}

#[test]
fn reads_by_key_pick_shards() {
    check(
        "SELECT * FROM users WHERE user_id = 5",
        read("users", keys(vec![vec![int(5)]])),
    );
    check(
        "select * from users u where 5 = u.user_id and name = 'x'",
        read("users", keys(vec![vec![int(5)]])),
    );
    check(
        "SELECT * FROM users WHERE user_id = $1",
        read("users", keys(vec![vec![KeyExpr::Param(1)]])),
    );
    check(
        "SELECT * FROM users WHERE user_id IN (1, -2, '3')",
        read(
            "users",
            keys(vec![vec![int(1)], vec![int(-2)], vec![int(3)]]),
        ),
    );
    check(
        "SELECT * FROM users WHERE user_id = 1 OR user_id = 2",
        read("users", ShardChoice::All),
    );
    check(
        "SELECT count(*) FROM users",
        read("users", ShardChoice::All),
    );
    check(
        "SELECT * FROM events WHERE tenant IN ('a', 'b') AND id = 7",
        read(
            "events",
            keys(vec![
                vec![KeyExpr::Value(KeyValue::Text("a".into())), int(7)],
                vec![KeyExpr::Value(KeyValue::Text("b".into())), int(7)],
            ]),
        ),
    );
    check(
        "SELECT * FROM events WHERE tenant = 'a'",
        read("events", ShardChoice::All),
    );
    check("SELECT 1", Route::AnyNode);
    check("SELECT * FROM settings", read("settings", ShardChoice::All));
}

#[test]
fn writes_by_key_pick_shards() {
    check(
        "INSERT INTO users (name, user_id) VALUES ('a', 1), ('b', $2)",
        write("users", keys(vec![vec![int(1)], vec![KeyExpr::Param(2)]])),
    );
    check(
        "UPDATE users SET name = 'x' WHERE user_id = 3",
        write("users", keys(vec![vec![int(3)]])),
    );
    check(
        "DELETE FROM users WHERE user_id = $1",
        write("users", keys(vec![vec![KeyExpr::Param(1)]])),
    );
    check("DELETE FROM users", write("users", ShardChoice::All));
    check(
        "INSERT INTO settings VALUES (1)",
        write("settings", ShardChoice::All),
    );
}

#[test]
fn colocated_joins_are_allowed_others_refused() {
    check(
        "SELECT * FROM users u JOIN orders o ON u.user_id = o.user_id WHERE u.user_id = 9",
        read("users", keys(vec![vec![int(9)]])),
    );
    check(
        "SELECT * FROM users u JOIN settings s ON s.k = u.name",
        read("users", ShardChoice::All),
    );
    assert!(
        refused("SELECT * FROM users u JOIN orders o ON u.name = o.name").contains("shard keys")
    );
    assert!(
        refused("SELECT * FROM users u JOIN logs l ON u.user_id = l.id")
            .contains("not sharded alike")
    );
}

#[test]
fn unroutable_statements_explain_themselves() {
    assert!(refused("INSERT INTO users VALUES (1, 'a')").contains("must name its columns"));
    assert!(refused("INSERT INTO users (name) VALUES ('a')").contains("shard key column user_id"));
    assert!(refused("UPDATE users SET user_id = 2 WHERE user_id = 1").contains("another shard"));
    assert!(refused("INSERT INTO users (user_id) SELECT 1").contains("VALUES"));
    assert!(
        refused("INSERT INTO users (user_id) VALUES (random())")
            .contains("constant or a parameter")
    );
}

#[test]
fn ddl_names_its_table() {
    check(
        "CREATE TABLE Users (user_id int)",
        Route::Ddl {
            table: "users".to_owned(),
        },
    );
    check(
        "CREATE INDEX ON users (name)",
        Route::Ddl {
            table: "users".to_owned(),
        },
    );
    check(
        "DROP TABLE IF EXISTS users",
        Route::Ddl {
            table: "users".to_owned(),
        },
    );
    check(
        "ALTER TABLE users ADD COLUMN x int",
        Route::Ddl {
            table: "users".to_owned(),
        },
    );
}
