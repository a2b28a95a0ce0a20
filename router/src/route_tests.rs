//! Routing decisions for statements over a small set of policies.

use crate::*;

struct Policies;

impl PolicySource for Policies {
    fn has_policy(&self, table: &str) -> bool {
        matches!(table, "users" | "orders" | "events" | "logs")
    }

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
        references: Vec::new(),
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
    check(
        "WITH x AS (SELECT * FROM settings) SELECT * FROM x UNION SELECT * FROM other",
        read("settings", ShardChoice::All),
    );
    check(
        "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace",
        Route::AnyNode,
    );
    check(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT * FROM c",
        Route::AnyNode,
    );
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
    // A join with an unsharded table runs where each node has its own copy of it: the
    // proxy checks that against the placement.
    check(
        "SELECT * FROM users u JOIN settings s ON s.k = u.name",
        Route::Read {
            table: "users".to_owned(),
            shards: ShardChoice::All,
            references: vec!["settings".to_owned()],
        },
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
    assert!(
        refused(
            "INSERT INTO users (user_id) VALUES (1) ON CONFLICT (user_id) DO UPDATE SET user_id = 2"
        )
        .contains("another shard")
    );
    assert!(
        refused("INSERT INTO users (user_id) SELECT user_id FROM orders ON CONFLICT DO NOTHING")
            .contains("ON CONFLICT or RETURNING")
    );
    assert!(
        refused("INSERT INTO archive SELECT * FROM orders RETURNING 1")
            .contains("ON CONFLICT or RETURNING")
    );
    assert!(refused("INSERT INTO users (user_id) SELECT 1 RETURNING user_id").contains("VALUES"));
    assert!(
        refused("INSERT INTO users (user_id) VALUES (random())")
            .contains("constant or a parameter")
    );
}

#[test]
fn ddl_names_its_tables() {
    let ddl = |tables: &[&str]| Route::Ddl {
        tables: tables.iter().map(|t| (*t).to_owned()).collect(),
    };
    check("CREATE TABLE Users (user_id int)", ddl(&["users"]));
    check("CREATE INDEX ON users (name)", ddl(&["users"]));
    check(
        "DROP TABLE IF EXISTS users, orders",
        ddl(&["users", "orders"]),
    );
    check("ALTER TABLE users ADD COLUMN x int", ddl(&["users"]));
    check(
        "TRUNCATE pgbench_accounts, pgbench_history",
        ddl(&["pgbench_accounts", "pgbench_history"]),
    );
}

#[test]
fn policy_options_from_create_and_alter() {
    let found = policy_options(
        "CREATE TABLE users (user_id int) WITH (mycelium.shard_keys = 'user_id', mycelium.shards = 8, \
         mycelium.replication_factor = 0.5, mycelium.validator_only = true, fillfactor = 100)",
    )
    .expect("parses")
    .expect("has options");
    assert_eq!(found.table, "users");
    assert!(!found.alter);
    assert!(found.other_options);
    let policy = apply_options(
        TablePolicy::default_for("users", &PolicyDefaults::default()),
        &found.options,
    )
    .expect("valid");
    assert_eq!(policy.shard_keys, vec!["user_id"]);
    assert_eq!(policy.shards, 8);
    assert!(policy.validator_only);

    let found = policy_options(
        "ALTER TABLE users SET (mycelium.range_sharding = true, mycelium.ranges = '10,20')",
    )
    .expect("parses")
    .expect("has options");
    assert!(found.alter && !found.other_options);
    let policy = apply_options(policy, &found.options).expect("valid");
    assert_eq!((policy.shards, policy.ranges.clone()), (3, vec![10, 20]));

    assert_eq!(
        policy_options("CREATE TABLE t (a int) WITH (fillfactor = 100)"),
        Ok(None)
    );
    let bad = apply_options(
        TablePolicy::default_for("t", &PolicyDefaults::default()),
        &[("shard_key".to_owned(), "a".to_owned())],
    )
    .expect_err("unknown key");
    assert!(
        bad.to_string()
            .contains("unknown option mycelium.shard_key"),
        "{bad}"
    );
    let bad = apply_options(
        TablePolicy::default_for("t", &PolicyDefaults::default()),
        &[("replication_factor".to_owned(), "2".to_owned())],
    )
    .expect_err("out of range");
    assert!(bad.to_string().contains("replication_factor"), "{bad}");
}

#[test]
fn merge_specs_for_reads_across_nodes() {
    let spec = merge_spec("SELECT id, name FROM users ORDER BY name DESC, 1 LIMIT 5 OFFSET 2")
        .expect("spec");
    assert_eq!(
        spec.order_by,
        vec![
            SortKey {
                column: SortColumn::Index(1),
                descending: true,
                nulls_first: true
            },
            SortKey {
                column: SortColumn::Index(0),
                descending: false,
                nulls_first: false
            },
        ]
    );
    assert_eq!((spec.limit, spec.offset), (Some(5), 2));
    assert_eq!(
        spec.node_sql.as_deref(),
        Some("SELECT id, name FROM users ORDER BY name DESC, 1 LIMIT 7")
    );

    let spec = merge_spec("SELECT id FROM users ORDER BY lower(name) DESC LIMIT 2").expect("spec");
    assert_eq!(spec.order_by[0].column, SortColumn::Hidden(0));
    assert_eq!(spec.hidden_columns, 1);
    assert_eq!(
        spec.node_sql.as_deref(),
        Some("SELECT id, lower(name) FROM users ORDER BY lower(name) DESC LIMIT 2")
    );

    let spec = merge_spec("SELECT * FROM users ORDER BY user_id").expect("spec");
    assert_eq!(
        spec.order_by[0].column,
        SortColumn::Name("user_id".to_owned())
    );
    assert_eq!(spec.node_sql, None);

    let spec = merge_spec("SELECT count(*), sum(x), avg(x) AS a, max(x) FROM users").expect("spec");
    assert_eq!(
        spec.aggregates,
        Some(vec![
            Combine::Count,
            Combine::Sum,
            Combine::Avg { count_column: 4 },
            Combine::Max,
            Combine::Count
        ])
    );
    assert_eq!(spec.hidden_columns, 1);
    assert_eq!(
        spec.node_sql.as_deref(),
        Some("SELECT count(*), sum(x), sum(x) AS a, max(x), count(x) FROM users")
    );

    let spec = merge_spec(
        "SELECT name, count(*), avg(x) FROM users GROUP BY name ORDER BY 2 DESC LIMIT 3",
    )
    .expect("grouped");
    assert_eq!(
        spec.aggregates,
        Some(vec![
            Combine::Group,
            Combine::Count,
            Combine::Avg { count_column: 3 },
            Combine::Count
        ])
    );
    assert_eq!(
        spec.node_sql.as_deref(),
        Some("SELECT name, count(*), sum(x) AS avg, count(x) FROM users GROUP BY name")
    );
    assert_eq!(spec.limit, Some(3));
    assert!(
        merge_spec("SELECT DISTINCT name FROM users ORDER BY name")
            .expect("distinct")
            .distinct
    );

    let spec = merge_spec(
        "SELECT name, sum(x) FROM users GROUP BY name HAVING count(*) > 1 AND sum(x) < 10",
    )
    .expect("having");
    assert_eq!(
        spec.aggregates,
        Some(vec![Combine::Group, Combine::Sum, Combine::Count])
    );
    assert_eq!(spec.hidden_columns, 1);
    assert_eq!(
        spec.having,
        Some(Having::And(
            Box::new(Having::Compare {
                left: HavingOperand::Column(2),
                op: CompareOp::Gt,
                right: HavingOperand::Int(1)
            }),
            Box::new(Having::Compare {
                left: HavingOperand::Column(1),
                op: CompareOp::Lt,
                right: HavingOperand::Int(10)
            }),
        ))
    );
    assert_eq!(
        spec.node_sql.as_deref(),
        Some("SELECT name, sum(x), count(*) FROM users GROUP BY name")
    );

    let spec = merge_spec("SELECT name, count(DISTINCT x) FROM users GROUP BY name").expect("spec");
    assert_eq!(
        spec.aggregates,
        Some(vec![Combine::Group, Combine::CountDistinct])
    );
    assert_eq!(
        spec.node_sql.as_deref(),
        Some("SELECT name, x AS count FROM users GROUP BY name, x")
    );

    for sql in [
        "SELECT name, count(*) FROM users GROUP BY name HAVING avg(x) > 1",
        "SELECT DISTINCT ON (name) name FROM users",
        "SELECT sum(DISTINCT x) FROM users",
        "SELECT name FROM users GROUP BY name HAVING count(DISTINCT x) > 1",
        "SELECT lower(name), count(*) FROM users GROUP BY name",
        "SELECT name, count(*) FROM users",
        "SELECT * FROM users LIMIT $1",
        // An aggregate inside an expression other than arithmetic, casts, COALESCE and
        // NULLIF (see scatter_tests.rs) would come back as one row per node.
        "SELECT round(avg(x))::int FROM users",
        "SELECT coalesce(sum(x), NULL) FROM users",
        "SELECT sum(x)::varchar FROM users",
        "SELECT sum(x)::date FROM users",
        "SELECT TRY_CAST(sum(x) AS int) FROM users",
        "SELECT string_agg(name, ',')::text FROM users",
        "SELECT name, sum(x)::int8 FROM users",
        // Each node would number, rank or sum its own rows only.
        "SELECT id, row_number() OVER (ORDER BY id) FROM users",
        "SELECT id FROM users ORDER BY sum(x) OVER (PARTITION BY name)",
        // Subtotal rows would be summed with the other nodes' rows of the same values.
        "SELECT name, sum(x) FROM users GROUP BY ROLLUP (name)",
        "SELECT name, sum(x) FROM users GROUP BY GROUPING SETS ((name), ())",
    ] {
        assert!(
            matches!(merge_spec(sql), Err(RouterError::Unsupported(_))),
            "{sql}"
        );
    }
}

#[test]
fn aggregates_the_proxy_cannot_merge_are_refused_not_concatenated() {
    // Each node would answer for its own rows; concatenating those answers is wrong.
    for sql in [
        "SELECT stddev_pop(x) FROM users",
        "SELECT var_samp(x), variance(x), stddev_samp(x), var_pop(x) FROM users",
        "SELECT json_object_agg(name, x) FROM users",
        "SELECT jsonb_object_agg(name, x) FILTER (WHERE x > 1) FROM users",
        "SELECT corr(x, y), covar_pop(x, y), regr_slope(y, x) FROM users",
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM users",
        "SELECT percentile_disc(ARRAY[0.5]) WITHIN GROUP (ORDER BY x) FROM users",
        "SELECT mode() WITHIN GROUP (ORDER BY name) FROM users",
        "SELECT rank(3) WITHIN GROUP (ORDER BY x) FROM users",
        "SELECT my_ordered_agg(1) WITHIN GROUP (ORDER BY x) FROM users",
        "SELECT pg_catalog.stddev(x) FROM users",
        "SELECT coalesce(pg_catalog.bool_and(x > 0), true) FROM users",
        "SELECT bit_or(DISTINCT x) FROM users",
        "SELECT string_agg(name, ',') FROM users",
        "SELECT name, stddev(x) FROM users GROUP BY name",
    ] {
        assert!(
            matches!(merge_spec(sql), Err(RouterError::Unsupported(_))),
            "{sql}"
        );
    }
    // A schema-qualified aggregate the proxy can merge still merges.
    let spec = merge_spec("SELECT pg_catalog.max(x) FROM users").expect("spec");
    assert_eq!(spec.aggregates, Some(vec![Combine::Max]));
    // The bitwise and boolean ones merge exactly: and/or/xor of the nodes' answers.
    let spec = merge_spec(
        "SELECT name, bit_and(x), bit_or(x), bit_xor(x), bool_and(x > 0), every(x > 0), \
         bool_or(x > 0) FROM users GROUP BY name HAVING bit_or(x) > 0",
    )
    .expect("spec");
    assert_eq!(
        spec.aggregates,
        Some(vec![
            Combine::Group,
            Combine::BitAnd,
            Combine::BitOr,
            Combine::BitXor,
            Combine::Min,
            Combine::Min,
            Combine::Max,
        ])
    );
    // Plain functions are no aggregates: the rows concatenate.
    let spec = merge_spec("SELECT abs(x), lower(name) FROM users").expect("spec");
    assert_eq!(spec.aggregates, None);
}

#[test]
fn insert_select_into_a_sharded_table_is_the_proxys_to_spread() {
    check(
        "INSERT INTO users (user_id, name) SELECT g, 'u' || g FROM generate_series(1, 10) g",
        Route::InsertSelect {
            table: "users".to_owned(),
            columns: vec!["user_id".to_owned(), "name".to_owned()],
            select: "SELECT g, 'u' || g FROM generate_series(1, 10) g".to_owned(),
        },
    );
    check(
        "INSERT INTO logs SELECT * FROM users WHERE user_id = $1",
        Route::InsertSelect {
            table: "logs".to_owned(),
            columns: Vec::new(),
            select: "SELECT * FROM users WHERE user_id = $1".to_owned(),
        },
    );
}

#[test]
fn insert_select_of_spread_rows_into_an_unsharded_table_is_the_proxys_too() {
    check(
        "INSERT INTO archive SELECT * FROM users WHERE name = 'x'",
        Route::InsertSelect {
            table: "archive".to_owned(),
            columns: Vec::new(),
            select: "SELECT * FROM users WHERE name = 'x'".to_owned(),
        },
    );
    check(
        "INSERT INTO archive SELECT * FROM notes",
        Route::Write {
            table: "archive".to_owned(),
            shards: ShardChoice::All,
        },
    );
}

#[test]
fn writes_that_read_rows_spread_over_nodes_are_refused() {
    // The node of an unsharded table sees only its own shards of a sharded one.
    assert!(
        refused("UPDATE archive SET n = (SELECT count(*) FROM users) WHERE id = 1")
            .contains("only the rows of one node")
    );
    assert!(
        refused("DELETE FROM archive WHERE id IN (SELECT user_id FROM orders)")
            .contains("sharded table orders")
    );
    // Each node of a sharded table may lack the other table, or hold a stale copy of it.
    assert!(
        refused("UPDATE users SET name = (SELECT note FROM notes WHERE id = 1) WHERE user_id = 5")
            .contains("reads notes")
    );
    assert!(
        refused("INSERT INTO users (user_id, name) VALUES (1, (SELECT note FROM notes LIMIT 1))")
            .contains("reads notes")
    );
    // Unsharded tables without a policy live together: a write may read the others.
    check(
        "UPDATE archive SET n = (SELECT count(*) FROM notes) WHERE id = 1",
        write("archive", ShardChoice::All),
    );
    check(
        "DELETE FROM notes WHERE id IN (SELECT id FROM archive)",
        write("notes", ShardChoice::All),
    );
    // DELETE ... USING reads its USING tables the same way.
    check(
        "DELETE FROM notes n USING archive a WHERE n.id = a.id",
        write("notes", ShardChoice::All),
    );
    assert!(
        refused("DELETE FROM archive a USING orders o WHERE a.id = o.user_id")
            .contains("sharded table orders")
    );
    assert!(refused("DELETE FROM users u USING notes n WHERE u.user_id = n.id").contains("notes"));
    // So does UPDATE ... FROM.
    check(
        "UPDATE notes n SET note = a.note FROM archive a WHERE n.id = a.id",
        write("notes", ShardChoice::All),
    );
    assert!(
        refused("UPDATE archive a SET n = o.n FROM orders o WHERE a.id = o.user_id")
            .contains("sharded table orders")
    );
    assert!(
        refused("UPDATE users u SET name = n.note FROM notes n WHERE u.user_id = n.id")
            .contains("notes")
    );
}

#[test]
fn views_go_to_every_node_unless_they_read_a_sharded_table() {
    check(
        "CREATE VIEW recent AS SELECT * FROM notes WHERE id > 10",
        Route::Ddl {
            tables: vec!["recent".to_owned()],
        },
    );
    assert!(
        refused("CREATE VIEW everyone AS SELECT * FROM users").contains("only one node's rows")
    );
}

#[test]
fn groups_not_selected_are_merged_by_hidden_key_columns() {
    let spec =
        merge_spec("SELECT sum(x) FROM users GROUP BY grp ORDER BY 1 LIMIT 2").expect("spec");
    assert_eq!(spec.aggregates, Some(vec![Combine::Sum, Combine::Group]));
    assert_eq!(spec.hidden_columns, 1);
    assert_eq!(
        spec.node_sql.as_deref(),
        Some("SELECT sum(x), grp FROM users GROUP BY grp")
    );
    // Positions and aliases name output columns, which are the keys already.
    for sql in [
        "SELECT grp, count(*) FROM users GROUP BY 1",
        "SELECT grp AS g, count(*) FROM users GROUP BY g",
    ] {
        let spec = merge_spec(sql).expect("spec");
        assert_eq!(
            spec.aggregates,
            Some(vec![Combine::Group, Combine::Count]),
            "{sql}"
        );
        assert_eq!(spec.hidden_columns, 0, "{sql}");
    }
}

#[test]
fn alter_column_that_depends_on_rows_is_refused_on_tables_with_a_policy() {
    for sql in [
        "ALTER TABLE users ALTER COLUMN name TYPE varchar(20)",
        "ALTER TABLE orders ALTER COLUMN total SET NOT NULL",
    ] {
        assert!(refused(sql).contains("placement policy"), "{sql}");
    }
    check(
        "ALTER TABLE users ALTER COLUMN name SET DEFAULT 'x'",
        Route::Ddl {
            tables: vec!["users".to_owned()],
        },
    );
    check(
        "ALTER TABLE notes ALTER COLUMN note TYPE text",
        Route::Ddl {
            tables: vec!["notes".to_owned()],
        },
    );
}

#[test]
fn explain_goes_where_its_statement_would() {
    let one = || keys(vec![vec![int(5)]]);
    check(
        "EXPLAIN SELECT * FROM users WHERE user_id = 5",
        read("users", one()),
    );
    check(
        "EXPLAIN ANALYZE SELECT * FROM logs",
        read("logs", ShardChoice::All),
    );
    // Without ANALYZE nothing runs: a write is explained where its rows are, like a read.
    check(
        "EXPLAIN UPDATE users SET name = 'x' WHERE user_id = 5",
        read("users", one()),
    );
    check(
        "EXPLAIN (ANALYZE false, COSTS off) DELETE FROM users WHERE user_id = 5",
        read("users", one()),
    );
    // With it the write runs, on the primaries.
    check(
        "EXPLAIN ANALYZE UPDATE users SET name = 'x' WHERE user_id = 5",
        write("users", one()),
    );
    check(
        "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM logs",
        write("logs", ShardChoice::All),
    );
    check("EXPLAIN SELECT 1", Route::AnyNode);
    check(
        "EXPLAIN INSERT INTO logs SELECT * FROM users",
        Route::AnyNode,
    );
    assert!(refused("EXPLAIN ANALYZE INSERT INTO logs SELECT * FROM users").contains("ANALYZE"));
    assert_eq!(
        analyzed_statement("EXPLAIN (ANALYZE on) DELETE FROM logs").as_deref(),
        Some("DELETE FROM logs")
    );
    assert_eq!(analyzed_statement("EXPLAIN DELETE FROM logs"), None);
    assert_eq!(statement_kind("explain select 1"), "explain");
}
