//! Fuzzing the router: random SQL-ish text and mutations of real statements go through every
//! entry point the proxy calls on client text; none may panic. Runs 2,000 cases by default;
//! `PROPTEST_CASES=100000 cargo test -p mycelium-router fuzz` runs more.

use proptest::prelude::*;

use crate::*;

/// Sharded tables, so routing takes its key-matching paths too.
struct Policies;

impl PolicySource for Policies {
    fn has_policy(&self, table: &str) -> bool {
        matches!(table, "users" | "orders" | "events")
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
                policy.range_sharding = false;
            }
            _ => {}
        }
        policy
    }
}

const STATEMENTS: &[&str] = &[
    "SELECT * FROM users WHERE user_id = $1",
    "SELECT user_id, count(*) FROM orders GROUP BY user_id HAVING count(*) > 2 ORDER BY 2 DESC LIMIT 10 OFFSET 5",
    "SELECT avg(total), sum(total), min(total), max(total) FROM orders WHERE user_id IN (1, 2, 3)",
    "SELECT o.* FROM orders o JOIN users u ON o.user_id = u.user_id WHERE u.user_id = 7",
    "INSERT INTO users (user_id, name) VALUES (1, 'a'), ($1, $2) ON CONFLICT (user_id) DO UPDATE SET name = excluded.name RETURNING *",
    "UPDATE orders SET total = total + 1 WHERE user_id = -5 AND id = 3",
    "DELETE FROM events WHERE tenant = 'x' AND id = 2",
    "WITH x AS (SELECT * FROM t) SELECT * FROM x UNION ALL SELECT 1",
    "CREATE TABLE t (id bigint PRIMARY KEY, v text) WITH (mycelium.shard_keys = 'id', mycelium.shards = 4)",
    "ALTER TABLE t SET (mycelium.replication_factor = 0.5)",
    "COPY users (user_id, name) FROM STDIN WITH (FORMAT csv, HEADER true)",
    "COPY (SELECT * FROM users) TO STDOUT",
    "SET search_path TO public; SHOW MYCELIUM NODES; RESET ALL",
    "BEGIN; SAVEPOINT a; ROLLBACK TO a; COMMIT",
    "CREATE USER alice WITH PASSWORD 'x''y' NOSUPERUSER LOGIN",
    "GRANT SELECT, INSERT ON TABLE a, public.b TO alice, PUBLIC",
    "REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM readers",
    "SELECT $$a;b$$, E'\\n', \"quoted;id\" FROM pg_catalog.pg_class -- c;\n/* d; */",
];

/// Fragments that stress tokenizers: quotes, dollar quotes, comments, parameters, keywords.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("$$".to_owned()),
        Just("$a$".to_owned()),
        Just("--".to_owned()),
        Just("/*".to_owned()),
        Just("*/".to_owned()),
        Just(";".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just("$1".to_owned()),
        Just("E'\\".to_owned()),
        Just(" WITH ".to_owned()),
        Just(" ON ".to_owned()),
        Just(" IN (".to_owned()),
        Just(" = ".to_owned()),
        Just("mycelium.".to_owned()),
        "[a-zA-Z_]{1,8}",
        "[0-9]{1,20}",
        "\\PC{0,4}",
    ]
}

fn sqlish() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..40).prop_map(|parts| parts.join(" "))
}

/// A real statement with a slice deleted, a fragment inserted, or cut short.
fn mutated() -> impl Strategy<Value = String> {
    (
        prop::sample::select(STATEMENTS),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        fragment(),
        0..3u8,
    )
        .prop_map(|(sql, a, b, inserted, how)| {
            let boundaries: Vec<usize> = (0..=sql.len())
                .filter(|&i| sql.is_char_boundary(i))
                .collect();
            let (mut from, mut to) = (a.get(&boundaries).to_owned(), b.get(&boundaries).to_owned());
            if from > to {
                std::mem::swap(&mut from, &mut to);
            }
            match how {
                0 => format!("{}{}", &sql[..from], &sql[to..]),
                1 => format!("{}{inserted}{}", &sql[..from], &sql[from..]),
                _ => sql[..to].to_owned(),
            }
        })
}

fn exercise(sql: &str) {
    for statement in split_statements(sql) {
        let _ = classify(statement);
        let _ = statement_kind(statement);
        let _ = is_role_statement(statement);
        let _ = route(statement, &Policies);
        let _ = merge_spec(statement);
        let _ = table_access(statement);
        let _ = policy_options(statement);
        let _ = statement_tables(statement);
    }
    let _ = classify(sql);
    let _ = table_access(sql);
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn sqlish_text_never_panics(sql in sqlish()) {
        exercise(&sql);
    }

    #[test]
    fn mutated_statements_never_panic(sql in mutated()) {
        exercise(&sql);
    }
}

#[test]
fn the_seed_statements_are_understood() {
    for sql in STATEMENTS {
        for statement in split_statements(sql) {
            assert!(classify(statement).is_ok(), "{statement}");
        }
    }
}
