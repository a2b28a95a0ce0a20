//! Scoping statements to shards, and the shard function nodes evaluate.

use proptest::prelude::*;

use crate::*;

fn policy(table: &str, keys: &[&str], shards: u32) -> TablePolicy {
    let mut policy = TablePolicy::default_for(table, &PolicyDefaults::default());
    policy.shard_keys = keys.iter().map(|k| (*k).to_owned()).collect();
    policy.shards = shards;
    policy
}

fn ranged(table: &str, key: &str, ranges: &[i64]) -> TablePolicy {
    let mut policy = policy(table, &[key], ranges.len() as u32 + 1);
    policy.range_sharding = true;
    policy.ranges = ranges.to_vec();
    policy
}

/// `users` and `orders` (8 shards on `id` / `user_id`), `events` (4 shards on two columns),
/// `logs` (range-sharded).
fn scopes() -> Vec<ShardScope> {
    vec![
        ShardScope {
            policy: policy("users", &["id"], 8),
            keep: vec![3, 1],
        },
        ShardScope {
            policy: policy("orders", &["user_id"], 8),
            keep: vec![1, 3],
        },
        ShardScope {
            policy: policy("events", &["tenant", "id"], 4),
            keep: vec![2],
        },
        ShardScope {
            policy: ranged("logs", "at", &[-5, 100]),
            keep: vec![0, 2],
        },
    ]
}

const USERS: &str = "__mycelium_shard(8, '', users.\"id\") IN (1, 3)";

fn check(sql: &str, expected: &str) {
    assert_eq!(
        scope_statement(sql, &scopes()).as_deref(),
        Ok(expected),
        "{sql}"
    );
}

fn unchanged(sql: &str) {
    check(sql, sql);
}

#[test]
fn single_table_select_gets_a_conjunct() {
    check(
        "SELECT count(*) FROM users",
        &format!("SELECT count(*) FROM users WHERE {USERS}"),
    );
    check(
        "SELECT name FROM users WHERE flag OR age > $1 ORDER BY name LIMIT $2",
        &format!(
            "SELECT name FROM users WHERE (flag OR age > $1) AND {USERS} ORDER BY name LIMIT $2"
        ),
    );
    check(
        "SELECT u.name FROM public.users AS u WHERE u.age = $1 AND u.flag",
        "SELECT u.name FROM public.users AS u WHERE u.age = $1 AND u.flag AND \
         __mycelium_shard(8, '', u.\"id\") IN (1, 3)",
    );
    check(
        "SELECT * FROM events e WHERE kind = 'x'",
        "SELECT * FROM events e WHERE kind = 'x' AND \
         __mycelium_shard(4, '', e.\"tenant\", e.\"id\") IN (2)",
    );
    check(
        "SELECT * FROM logs",
        "SELECT * FROM logs WHERE __mycelium_shard(3, '-5,100', logs.\"at\") IN (0, 2)",
    );
}

#[test]
fn parameters_stay_as_they_are() {
    check(
        "SELECT * FROM users WHERE b = $2 AND a = $1 OR c = $2",
        &format!("SELECT * FROM users WHERE (b = $2 AND a = $1 OR c = $2) AND {USERS}"),
    );
    check(
        "UPDATE users SET a = $3 WHERE id > $1::int8",
        &format!("UPDATE users SET a = $3 WHERE id > $1::INT8 AND {USERS}"),
    );
}

#[test]
fn column_aliases_wrap_the_table() {
    check(
        "SELECT a FROM users AS x (a, b)",
        &format!("SELECT a FROM (SELECT * FROM users WHERE {USERS}) AS x (a, b)"),
    );
}

#[test]
fn joins_use_derived_tables() {
    check(
        "SELECT u.name, o.total FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE o.total > 5",
        "SELECT u.name, o.total FROM \
         (SELECT * FROM users WHERE __mycelium_shard(8, '', users.\"id\") IN (1, 3)) AS u \
         LEFT JOIN \
         (SELECT * FROM orders WHERE __mycelium_shard(8, '', orders.\"user_id\") IN (1, 3)) AS o \
         ON o.user_id = u.id WHERE o.total > 5",
    );
    check(
        "SELECT * FROM users, orders WHERE users.id = orders.user_id",
        &format!(
            "SELECT * FROM (SELECT * FROM users WHERE {USERS}) AS users, \
             (SELECT * FROM orders WHERE __mycelium_shard(8, '', orders.\"user_id\") IN (1, 3)) \
             AS orders WHERE users.id = orders.user_id"
        ),
    );
    // The nullable side of an outer join with an unscoped table.
    check(
        "SELECT * FROM plans p FULL JOIN users ON users.plan = p.id",
        &format!(
            "SELECT * FROM plans p FULL JOIN (SELECT * FROM users WHERE {USERS}) AS users \
             ON users.plan = p.id"
        ),
    );
    // Column aliases stay on the derived table.
    check(
        "SELECT a FROM plans CROSS JOIN users AS x (a, b)",
        &format!("SELECT a FROM plans CROSS JOIN (SELECT * FROM users WHERE {USERS}) AS x (a, b)"),
    );
}

#[test]
fn subqueries_ctes_and_set_operations() {
    check(
        "SELECT * FROM plans WHERE id IN (SELECT plan FROM users)",
        &format!("SELECT * FROM plans WHERE id IN (SELECT plan FROM users WHERE {USERS})"),
    );
    check(
        "SELECT (SELECT count(*) FROM users u WHERE u.plan = p.id) FROM plans p",
        "SELECT (SELECT count(*) FROM users u WHERE u.plan = p.id AND \
         __mycelium_shard(8, '', u.\"id\") IN (1, 3)) FROM plans p",
    );
    check(
        "SELECT id FROM users UNION ALL SELECT user_id FROM orders",
        &format!(
            "SELECT id FROM users WHERE {USERS} UNION ALL SELECT user_id FROM orders WHERE \
             __mycelium_shard(8, '', orders.\"user_id\") IN (1, 3)"
        ),
    );
    check(
        "SELECT * FROM (SELECT id FROM users) AS s",
        &format!("SELECT * FROM (SELECT id FROM users WHERE {USERS}) AS s"),
    );
    check(
        "WITH rich AS (SELECT * FROM users WHERE balance > 10) SELECT count(*) FROM rich",
        &format!(
            "WITH rich AS (SELECT * FROM users WHERE balance > 10 AND {USERS}) \
             SELECT count(*) FROM rich"
        ),
    );
}

#[test]
fn cte_names_shadow_tables() {
    // The CTE `users` is scoped where it reads the table; the reference to the CTE is not.
    check(
        "WITH users AS (SELECT * FROM users WHERE flag) SELECT count(*) FROM users",
        &format!(
            "WITH users AS (SELECT * FROM users WHERE flag AND {USERS}) \
             SELECT count(*) FROM users"
        ),
    );
    // A later CTE sees an earlier one.
    check(
        "WITH a AS (SELECT 1), users AS (SELECT * FROM plans) SELECT * FROM users",
        "WITH a AS (SELECT 1), users AS (SELECT * FROM plans) SELECT * FROM users",
    );
    // A CTE is not visible outside the query that defines it.
    check(
        "SELECT * FROM users WHERE id IN (WITH users AS (SELECT 1 AS id) SELECT id FROM users)",
        &format!(
            "SELECT * FROM users WHERE id IN (WITH users AS (SELECT 1 AS id) SELECT id FROM \
             users) AND {USERS}"
        ),
    );
    // WITH RECURSIVE: the CTE sees itself.
    check(
        "WITH RECURSIVE users AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM users WHERE n < 3) \
         SELECT * FROM users",
        "WITH RECURSIVE users AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM users WHERE n < 3) \
         SELECT * FROM users",
    );
}

#[test]
fn updates_and_deletes() {
    check(
        "UPDATE users SET x = 1 WHERE flag",
        &format!("UPDATE users SET x = 1 WHERE flag AND {USERS}"),
    );
    check(
        "UPDATE users SET x = $1",
        &format!("UPDATE users SET x = $1 WHERE {USERS}"),
    );
    check(
        "UPDATE users AS u SET x = 1 WHERE a = 1 OR b = 2 RETURNING id",
        "UPDATE users AS u SET x = 1 WHERE (a = 1 OR b = 2) AND \
         __mycelium_shard(8, '', u.\"id\") IN (1, 3) RETURNING id",
    );
    check(
        "UPDATE users SET total = o.total FROM orders o WHERE o.user_id = users.id",
        &format!(
            "UPDATE users SET total = o.total FROM \
             (SELECT * FROM orders WHERE __mycelium_shard(8, '', orders.\"user_id\") IN (1, 3)) \
             AS o WHERE o.user_id = users.id AND {USERS}"
        ),
    );
    check(
        "UPDATE plans SET n = (SELECT count(*) FROM users WHERE users.plan = plans.id)",
        &format!(
            "UPDATE plans SET n = (SELECT count(*) FROM users WHERE users.plan = plans.id AND \
             {USERS})"
        ),
    );
    check(
        "DELETE FROM users WHERE flag",
        &format!("DELETE FROM users WHERE flag AND {USERS}"),
    );
    check(
        "DELETE FROM users",
        &format!("DELETE FROM users WHERE {USERS}"),
    );
    check(
        "DELETE FROM users u USING orders o WHERE o.user_id = u.id AND o.total = $1",
        "DELETE FROM users u USING \
         (SELECT * FROM orders WHERE __mycelium_shard(8, '', orders.\"user_id\") IN (1, 3)) \
         AS o WHERE o.user_id = u.id AND o.total = $1 AND \
         __mycelium_shard(8, '', u.\"id\") IN (1, 3)",
    );
    check(
        "DELETE FROM plans WHERE id NOT IN (SELECT plan FROM users)",
        &format!("DELETE FROM plans WHERE id NOT IN (SELECT plan FROM users WHERE {USERS})"),
    );
    check(
        "WITH gone AS (SELECT id FROM users WHERE flag) DELETE FROM orders WHERE user_id IN \
         (SELECT id FROM gone)",
        &format!(
            "WITH gone AS (SELECT id FROM users WHERE flag AND {USERS}) DELETE FROM orders \
             WHERE user_id IN (SELECT id FROM gone) AND \
             __mycelium_shard(8, '', orders.\"user_id\") IN (1, 3)"
        ),
    );
}

#[test]
fn inserts() {
    unchanged("INSERT INTO users (id, name) VALUES ($1, $2), (3, 'x')");
    unchanged(
        "INSERT INTO users (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET name = 'y'",
    );
    check(
        "INSERT INTO archive (id) SELECT id FROM users WHERE flag",
        &format!("INSERT INTO archive (id) SELECT id FROM users WHERE flag AND {USERS}"),
    );
}

#[test]
fn statements_without_scoped_tables_come_back_unchanged() {
    unchanged("select  1 ;");
    unchanged("SELECT * FROM plans p JOIN other o ON o.id = p.id WHERE p.x = $1");
    unchanged("UPDATE plans SET x = x + 1   WHERE id = $1");
    unchanged("DELETE FROM plans");
    // Other statement kinds are never scoped.
    unchanged("CREATE VIEW v AS SELECT * FROM users");
    unchanged("TRUNCATE users");
    // A function call named like a table is not a table.
    unchanged("SELECT * FROM users($1)");
    assert_eq!(
        scope_statement("SELECT * FROM users", &[]).as_deref(),
        Ok("SELECT * FROM users")
    );
}

#[test]
fn quoted_names_and_empty_keep() {
    let mut scope = ShardScope {
        policy: policy("Users", &["Key"], 2),
        keep: vec![],
    };
    assert_eq!(
        scope_statement("SELECT * FROM \"Users\" JOIN t ON true", &[scope.clone()]).as_deref(),
        Ok("SELECT * FROM (SELECT * FROM \"Users\" WHERE 1 = 0) AS \"Users\" JOIN t ON true")
    );
    // Unquoted `Users` is `users`, another table.
    assert_eq!(
        scope_statement("SELECT * FROM Users", &[scope.clone()]).as_deref(),
        Ok("SELECT * FROM Users")
    );
    scope.keep = vec![1, 1];
    assert_eq!(
        scope_statement("DELETE FROM \"Users\"", &[scope]).as_deref(),
        Ok("DELETE FROM \"Users\" WHERE __mycelium_shard(2, '', \"Users\".\"Key\") IN (1)")
    );
}

#[test]
fn errors() {
    assert!(matches!(
        scope_statement("SELEC 1", &scopes()),
        Err(RouterError::Syntax(_))
    ));
    assert!(matches!(
        scope_statement("SELECT 1; SELECT 2", &scopes()),
        Err(RouterError::Syntax(_))
    ));
}

// --- The shard function ---

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

/// The shard the router picks for `SELECT * FROM t WHERE <key> = <literal>` (and so on).
fn routed_shard(policy: &TablePolicy, literals: &[&str]) -> u32 {
    let condition: Vec<String> = policy
        .shard_keys
        .iter()
        .zip(literals)
        .map(|(key, literal)| format!("{key} = {literal}"))
        .collect();
    let sql = format!(
        "SELECT * FROM {} WHERE {}",
        policy.table,
        condition.join(" AND ")
    );
    let route = route(&sql, &Policies(vec![policy.clone()]));
    let Ok(Route::Read {
        shards: ShardChoice::Keys(keys),
        ..
    }) = route
    else {
        panic!("{sql} was not routed by key: {route:?}");
    };
    let [key] = keys.as_slice() else {
        panic!("{sql}: {keys:?}");
    };
    let values: Vec<KeyValue> = key
        .iter()
        .map(|k| match k {
            KeyExpr::Value(v) => v.clone(),
            KeyExpr::Param(_) => panic!("{sql}: a parameter"),
        })
        .collect();
    policy.shard_of(&values)
}

fn evaluated(policy: &TablePolicy, key: &[KeyValue]) -> u32 {
    let ranges = if policy.range_sharding {
        policy
            .ranges
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    } else {
        String::new()
    };
    shard_function(i64::from(policy.shards), &ranges, key).expect("valid arguments")
}

const UUID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const UUID_BYTES: [u8; 16] = [
    0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0,
];

#[test]
fn shard_function_agrees_with_routing() {
    let hashed = policy("t", &["k"], 7);
    let uuid = format!("'{UUID}'");
    let uuid_cast = format!("'{UUID}'::uuid");
    // (literal in the statement, the value a node holds for it)
    let cases = [
        ("42", KeyValue::Int(42)),
        ("-42", KeyValue::Int(-42)),
        ("'42'", KeyValue::from_text("42")),
        ("' 42'", KeyValue::from_text(" 42")),
        ("'0042'", KeyValue::Int(42)),
        ("42", KeyValue::from_real(42.0)),
        ("'4.5'", KeyValue::from_real(4.5)),
        ("'hello'", KeyValue::from_text("hello")),
        ("''", KeyValue::null()),
        (
            "'9223372036854775808'",
            KeyValue::from_text("9223372036854775808"),
        ),
        (&uuid, KeyValue::from_text(UUID)),
        (&uuid_cast, KeyValue::from_bytes(&UUID_BYTES)),
        (
            "'0F1E2D3C4B5A69788796A5B4C3D2E1F0'",
            KeyValue::from_text(UUID),
        ),
        (
            "'{0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0}'",
            KeyValue::from_bytes(&UUID_BYTES),
        ),
        ("'\\x0102'", KeyValue::from_bytes(&[1, 2])),
    ];
    for (literal, value) in &cases {
        assert_eq!(
            evaluated(&hashed, std::slice::from_ref(value)),
            routed_shard(&hashed, &[literal]),
            "{literal} / {value:?}"
        );
    }

    let two = policy("t", &["tenant", "id"], 5);
    for (tenant, id) in [("1", "2"), ("'acme'", "7"), (&format!("'{UUID}'"), "'x'")] {
        let key = [tenant, id].map(|literal| {
            let text = literal.trim_matches('\'');
            KeyValue::from_text(text)
        });
        assert_eq!(
            evaluated(&two, &key),
            routed_shard(&two, &[tenant, id]),
            "{tenant}, {id}"
        );
    }

    let ranges = ranged("t", "k", &[-5, 0, 100]);
    for literal in ["-6", "-5", "-1", "0", "99", "100", "1000", "'50'"] {
        let value = KeyValue::from_text(literal.trim_matches('\''));
        assert_eq!(
            evaluated(&ranges, &[value]),
            routed_shard(&ranges, &[literal]),
            "{literal}"
        );
    }
    // Keys without a range go to the last shard, as `shard_of` sends them.
    let text = [KeyValue::from_text("abc")];
    assert_eq!(evaluated(&ranges, &text), ranges.shard_of(&text));
    assert_eq!(evaluated(&ranges, &text), 3);
}

#[test]
fn key_values_of_node_values() {
    assert_eq!(KeyValue::from_real(-3.0), KeyValue::Int(-3));
    assert_eq!(KeyValue::from_real(-0.0), KeyValue::Int(0));
    assert_eq!(KeyValue::from_real(0.25), KeyValue::Text("0.25".to_owned()));
    assert_eq!(
        KeyValue::from_real(f64::NAN),
        KeyValue::Text("NaN".to_owned())
    );
    assert_eq!(
        KeyValue::from_real(f64::NEG_INFINITY),
        KeyValue::Text("-Infinity".to_owned())
    );
    assert_eq!(
        KeyValue::from_real(9_223_372_036_854_775_808.0),
        KeyValue::Text("9223372036854776000".to_owned())
    );
    assert_eq!(
        KeyValue::from_real(-9_223_372_036_854_775_808.0),
        KeyValue::Int(i64::MIN)
    );
    assert_eq!(
        KeyValue::from_bytes(&UUID_BYTES),
        KeyValue::Uuid(UUID_BYTES)
    );
    assert_eq!(
        KeyValue::from_bytes(&[0xab, 0x01]),
        KeyValue::Text("\\xab01".to_owned())
    );
    assert_eq!(KeyValue::from_bytes(&[]), KeyValue::Text("\\x".to_owned()));
    assert_eq!(KeyValue::null(), KeyValue::from_text(""));
}

#[test]
fn shard_function_reference_tables_and_bad_arguments() {
    assert_eq!(shard_function(1, "", &[]), Ok(0));
    assert_eq!(shard_function(8, "", &[]), Ok(0));
    for (shards, ranges) in [
        (0, ""),
        (-1, ""),
        (i64::MAX, ""),
        (3, "1"),
        (2, "a"),
        (3, "5,"),
    ] {
        assert!(
            shard_function(shards, ranges, &[KeyValue::Int(1)]).is_err(),
            "{shards} {ranges:?}"
        );
    }
    assert_eq!(shard_function(3, "1, 5", &[KeyValue::Int(5)]), Ok(2));
}

proptest! {
    #[test]
    fn shard_function_is_the_routing_shard(key in any::<i64>(), shards in 1u32..64) {
        let hashed = policy("t", &["k"], shards);
        prop_assert_eq!(
            evaluated(&hashed, &[KeyValue::Int(key)]),
            routed_shard(&hashed, &[&key.to_string()])
        );
        prop_assert_eq!(
            evaluated(&hashed, &[KeyValue::from_real(key as f64)]),
            hashed.shard_of(&[KeyValue::from_real(key as f64)])
        );
    }

    #[test]
    fn range_shard_function_is_the_routing_shard(
        key in any::<i64>(),
        mut ranges in proptest::collection::vec(any::<i64>(), 0..6),
    ) {
        ranges.sort_unstable();
        ranges.dedup();
        let policy = ranged("t", "k", &ranges);
        prop_assert_eq!(
            evaluated(&policy, &[KeyValue::Int(key)]),
            routed_shard(&policy, &[&key.to_string()])
        );
    }

    #[test]
    fn text_shard_function_is_the_routing_shard(text in "[ -&(-~]{0,12}") {
        let hashed = policy("t", &["k"], 13);
        prop_assert_eq!(
            evaluated(&hashed, &[KeyValue::from_text(&text)]),
            routed_shard(&hashed, &[&format!("'{text}'")])
        );
    }
}

#[test]
fn the_statement_of_an_explain_is_scoped() {
    check(
        "EXPLAIN ANALYZE SELECT count(*) FROM users",
        &format!("EXPLAIN ANALYZE SELECT count(*) FROM users WHERE {USERS}"),
    );
    check(
        "EXPLAIN (COSTS OFF) DELETE FROM users WHERE flag",
        &format!("EXPLAIN (COSTS OFF) DELETE FROM users WHERE flag AND {USERS}"),
    );
    unchanged("EXPLAIN SELECT 1");
}
