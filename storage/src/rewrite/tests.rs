//! Translation tests: Postgres text in, SQLite text (and types) out.

use std::collections::HashMap;
use std::sync::Arc;

use mycelium_protocol::types::PgType;

use super::*;
use crate::catalog::{ColumnInfo, IndexInfo, Schema, TableInfo, Ty};

fn col(name: &str, ty: PgType, typmod: i32, attnum: i16) -> ColumnInfo {
    ColumnInfo {
        name: name.to_owned(),
        ty: Ty { ty, typmod },
        attnum,
        not_null: false,
        default_sql: None,
        default_pg: None,
    }
}

fn schema() -> Schema {
    let mut tables = HashMap::new();
    let mut users = TableInfo {
        name: "users".to_owned(),
        oid: 16385,
        is_view: false,
        columns: vec![
            col("id", PgType::Int8, -1, 1),
            col("name", PgType::Varchar, 24, 2),
            col("active", PgType::Bool, -1, 3),
            col("balance", PgType::Numeric, -1, 4),
            col("created", PgType::Timestamptz, -1, 5),
        ],
        primary_key: vec!["id".to_owned()],
        pk_name: "users_pkey".to_owned(),
        hidden_rowid: false,
        foreign_keys: vec![],
        indexes: vec![IndexInfo {
            name: "users_name_key".to_owned(),
            columns: vec!["name".to_owned()],
            unique: true,
            primary: false,
            sql: None,
        }],
        sql: String::new(),
    };
    users.columns[4].default_sql = Some("__pg_now()".to_owned());
    tables.insert("users".to_owned(), Arc::new(users));
    tables.insert(
        "accounts".to_owned(),
        Arc::new(TableInfo {
            name: "accounts".to_owned(),
            oid: 16386,
            is_view: false,
            columns: vec![
                col("aid", PgType::Int4, -1, 1),
                col("abalance", PgType::Int4, -1, 2),
                col("ratio", PgType::Float8, -1, 3),
            ],
            primary_key: vec![],
            pk_name: "accounts_pkey".to_owned(),
            indexes: vec![],
            foreign_keys: vec![],
            hidden_rowid: true,
            sql: String::new(),
        }),
    );
    Schema { id: 1, tables }
}

fn tr(sql: &str) -> Translation {
    match translate(sql, &[], &schema()) {
        Ok(t) => t,
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// The SQLite statements a Postgres statement becomes.
fn check(pg: &str, sqlite: &str) {
    let t = tr(pg);
    let mut all = t.pre.clone();
    all.extend(t.main.clone());
    assert_eq!(all.join("; "), sqlite, "translating {pg}");
}

fn check_err(pg: &str, code: &str) {
    match translate(pg, &[], &schema()) {
        Ok(t) => panic!("{pg} translated to {:?}, expected {code}", t.main),
        Err(e) => assert_eq!(e.code, code, "{pg}: {e}"),
    }
}

fn types_of(pg: &str) -> Vec<(String, PgType, i32)> {
    tr(pg)
        .out
        .iter()
        .map(|c| (c.name.clone(), c.ty.ty, c.ty.typmod))
        .collect()
}

fn params_of(pg: &str) -> Vec<PgType> {
    tr(pg).params.iter().map(|t| t.ty).collect()
}

#[test]
fn dml_rewrites() {
    check(
        "SELECT * FROM users WHERE id = $1",
        "SELECT * FROM users WHERE id = +?1",
    );
    check("select true, false", "SELECT 1, 0");
    check("SELECT now()", "SELECT __pg_now()");
    check("SELECT CURRENT_TIMESTAMP", "SELECT __pg_now()");
    check("SELECT random()", "SELECT __pg_random()");
    check("SELECT E'a\\nb'", "SELECT 'a\nb'");
    check(
        "SELECT name FROM users WHERE name ILIKE 'a%'",
        "SELECT name FROM users WHERE __pg_like(name, 'a%', 1)",
    );
    check(
        "SELECT name FROM users WHERE name NOT LIKE 'a%'",
        "SELECT name FROM users WHERE NOT (__pg_like(name, 'a%', 0))",
    );
    check(
        "SELECT id FROM users WHERE id = ANY(ARRAY[1, 2])",
        "SELECT id FROM users WHERE id IN (1, 2)",
    );
    check(
        "SELECT id FROM users WHERE active IS DISTINCT FROM true",
        "SELECT id FROM users WHERE active IS DISTINCT FROM 1",
    );
    check(
        "SELECT id FROM users ORDER BY name LIMIT 5 OFFSET 2",
        "SELECT id FROM users ORDER BY name ASC NULLS LAST LIMIT 5 OFFSET 2"
            .replace(" ASC", "")
            .as_str(),
    );
    check(
        "SELECT id FROM users OFFSET 2",
        "SELECT id FROM users LIMIT -1 OFFSET 2",
    );
    check(
        "SELECT id FROM users ORDER BY id DESC",
        "SELECT id FROM users ORDER BY id DESC NULLS FIRST",
    );
    check(
        "SELECT aid / abalance FROM accounts",
        "SELECT __pg_div(aid, abalance, 0) FROM accounts",
    );
    check(
        "SELECT aid / 2 FROM accounts",
        "SELECT aid / 2 FROM accounts",
    );
    // numeric division: exact, printed with Postgres's scale where it is a result column,
    // a double inside expressions.
    check(
        "SELECT balance / 2 FROM users",
        "SELECT __pg_numeric_div(balance, 2, -1, 0, 1) FROM users",
    );
    check(
        "SELECT id FROM users WHERE balance / 2 > 1",
        "SELECT id FROM users WHERE __pg_numeric_div(balance, 2, -1, 0, 0) > 1",
    );
    check("SELECT 1 % 0", "SELECT __pg_mod(1, 0, 0)");
    check(
        "SELECT x FROM (SELECT 1 AS x) AS s",
        "SELECT x FROM (SELECT 1 AS x) AS s",
    );
    check(
        "SELECT substring(name from 2 for 3), position('a' in name) FROM users",
        "SELECT substr(name, 2, 3), instr(name, 'a') FROM users",
    );
    check(
        "SELECT count(*) FROM public.users",
        "SELECT count(*) FROM users",
    );
    check(
        "SELECT string_agg(name, ',') FROM users",
        "SELECT string_agg(name, ',') FROM users",
    );
    check("SELECT * FROM users FOR UPDATE", "SELECT * FROM users");
    check(
        "SELECT name FROM users WHERE name ~ '^a'",
        "SELECT name FROM users WHERE __pg_regex_match(name, '^a', 0)",
    );
    check(
        "SELECT id FROM users WHERE name = 'x' COLLATE \"C\"",
        "SELECT id FROM users WHERE name = 'x'",
    );
}

#[test]
fn literals_fold_to_storage_values() {
    check(
        "SELECT id FROM users WHERE active = 't'",
        "SELECT id FROM users WHERE active = 1",
    );
    check("SELECT '42'::int", "SELECT 42");
    check(
        "SELECT '2024-01-02 03:04:05+02'::timestamptz",
        "SELECT '2024-01-02 01:04:05+00'",
    );
    check("SELECT DATE '2024-01-02'", "SELECT '2024-01-02'");
    check(
        "SELECT aid::text FROM accounts",
        "SELECT __pg_cast(aid, 23, 25, -1) FROM accounts",
    );
    check(
        "SELECT aid::int4 FROM accounts",
        "SELECT (aid) FROM accounts",
    );
    check(
        "INSERT INTO users (id, active) VALUES (1, 'yes')",
        "INSERT INTO users (id, active) VALUES (1, 1)",
    );
    check_err("SELECT 'abc'::int", "22P02");
    check_err("SELECT id FROM users WHERE id = 'abc'", "22P02");
    check_err(
        "INSERT INTO users (id, name) VALUES (1, 'this name is much longer than twenty')",
        "22001",
    );
}

#[test]
fn inserts_updates_deletes() {
    check(
        "INSERT INTO users (id, name) VALUES ($1, $2), (DEFAULT, 'b') RETURNING id",
        "INSERT INTO users (id, name) VALUES (__pg_not_null(?1, 'id', 'users'), __pg_cast(?2, 1043, 1043, 24)), (__pg_not_null(NULL, 'id', 'users'), 'b') RETURNING id",
    );
    check(
        "INSERT INTO users (id, created) VALUES (1, DEFAULT)",
        "INSERT INTO users (id, created) VALUES (1, (__pg_now()))",
    );
    check(
        "INSERT INTO users (id, name) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name",
        "INSERT INTO users (id, name) VALUES (1, 'a') ON CONFLICT(id) DO UPDATE SET name = EXCLUDED.name",
    );
    check(
        "INSERT INTO users (id) SELECT aid FROM accounts ON CONFLICT (id) DO NOTHING",
        "INSERT INTO users (id) SELECT __pg_not_null(aid, 'id', 'users') FROM accounts ON CONFLICT(id) DO NOTHING",
    );
    check(
        "UPDATE accounts SET abalance = abalance + $1 WHERE aid = $2",
        "UPDATE accounts SET abalance = __pg_int_arith(abalance, ?1, 0, 23) WHERE aid = +?2",
    );
    check(
        "DELETE FROM users WHERE id = $1",
        "DELETE FROM users WHERE id = +?1",
    );
    // SQLite wants AS before a target's alias; `__mycelium_shard` passes through.
    check(
        "UPDATE accounts a SET abalance = 0 WHERE __mycelium_shard(4, '', a.\"aid\") IN (1, 3)",
        "UPDATE accounts AS a SET abalance = 0 WHERE __mycelium_shard(4, '', a.\"aid\") IN (1, 3)",
    );
    check(
        "DELETE FROM users u WHERE __mycelium_shard(4, '', u.\"id\") IN (2)",
        "DELETE FROM users AS u WHERE __mycelium_shard(4, '', u.\"id\") IN (2)",
    );
    check(
        "SELECT count(*) FROM (SELECT * FROM users WHERE __mycelium_shard(8, '0,10', users.\"id\") IN (0)) AS users",
        "SELECT count(*) FROM (SELECT * FROM users WHERE __mycelium_shard(8, '0,10', users.\"id\") IN (0)) AS users",
    );
    check_err(
        "INSERT INTO users (id) VALUES (1) ON CONFLICT ON CONSTRAINT users_pkey DO NOTHING",
        "0A000",
    );
    check_err("INSERT INTO users (nope) VALUES (1)", "42703");
    check_err("INSERT INTO nope VALUES (1)", "42P01");
    check(
        "DELETE FROM users USING accounts WHERE id = aid",
        "DELETE FROM users WHERE EXISTS (SELECT 1 FROM accounts WHERE id = aid)",
    );
    check_err(
        "DELETE FROM users USING accounts WHERE id = aid RETURNING id",
        "0A000",
    );
}

#[test]
fn unsupported_constructs_fail_loudly() {
    check_err("SELECT string_agg(name, ',') OVER () FROM users", "0A000");
    check(
        "SELECT row_number() OVER (ORDER BY id) FROM users",
        "SELECT row_number() OVER (ORDER BY id) FROM users",
    );
    check_err("SELECT ARRAY[ARRAY[1], ARRAY[2]]", "0A000");
    check_err("SELECT (ARRAY[1, 2])[1:2]", "0A000");
    check(
        "SELECT interval '1 day' * 2",
        "SELECT __pg_interval_mul('1 day', 2)",
    );
    check_err("SELECT interval '1 day' % 2", "0A000");
    check(
        "SELECT make_interval(days => 7, hours => 2)",
        "SELECT __pg_make_interval(0, 0, 0, 7, 2, 0, 0)",
    );
    check(
        "SELECT now() - interval '1 day'",
        "SELECT __pg_ts_interval(__pg_now(), '1 day', -1, 1184)",
    );
    check(
        "SELECT DISTINCT ON (name) name FROM users",
        "SELECT \"name\" FROM (SELECT name AS \"name\", row_number() OVER (PARTITION BY name) \
         AS __pg_rn FROM users) AS __pg_distinct WHERE __pg_rn = 1",
    );
    check_err("SELECT DISTINCT ON (name) * FROM users, accounts", "0A000");
    check_err("SELECT * FROM unnest(ARRAY[1])", "0A000");
    check(
        "SELECT key, e FROM jsonb_each($1) AS k, jsonb_array_elements(k.value) e ORDER BY key",
        "SELECT json_extract(`k`.`value`, '$[0]') AS \"key\", json_extract(`e`.`value`, '$[0]') AS \"e\" \
         FROM json_each(__pg_srf('jsonb_each', ?1)) AS \"k\", \
         json_each(__pg_srf('jsonb_array_elements', json_extract(`k`.`value`, '$[1]'))) AS \"e\" \
         ORDER BY key NULLS LAST",
    );
    // A GROUP BY term is typed after the select list was qualified: read once.
    check(
        "SELECT key, count(*) FROM users, jsonb_each($1) GROUP BY key",
        "SELECT json_extract(`jsonb_each`.`value`, '$[0]') AS \"key\", count(*) AS \"count\" \
         FROM users, json_each(__pg_srf('jsonb_each', ?1)) AS \"jsonb_each\" \
         GROUP BY json_extract(`jsonb_each`.`value`, '$[0]')",
    );
    check_err("SELEC 1", "42601");
}

#[test]
fn arrays_are_text_read_by_functions_taking_their_type() {
    check("SELECT ARRAY[1, 2]", "SELECT __pg_array(1007, 1, 2)");
    check(
        "SELECT id, unnest(ARRAY[id]) AS x FROM users WHERE id = ANY('{1,2}'::int8[])",
        "SELECT \"users\".id AS \"id\", __pg_unnest(__pg_array(1016, \"users\".id), 1016, __srf.key) AS x \
         FROM users, json_each(__pg_srf_rows(__pg_unnest_count(__pg_array(1016, \"users\".id), 1016))) AS __srf \
         WHERE __pg_array_contains(__pg_array_cast('{1,2}', 25, 1016), 1016, \"users\".id)",
    );
    check(
        "SELECT array_agg(name ORDER BY id) FROM users",
        "SELECT __pg_array_agg(name, 1015 ORDER BY id NULLS LAST) FROM users",
    );
}

#[test]
fn ordered_set_aggregates_take_their_rows_sorted() {
    check(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY id DESC) FROM users",
        "SELECT __pg_percentile_check(0.5, __pg_percentile_cont(id, 0.5 ORDER BY id DESC NULLS LAST)) \
         FROM users",
    );
    check(
        "SELECT mode() WITHIN GROUP (ORDER BY name) FILTER (WHERE id > 1) FROM users",
        "SELECT __pg_mode(name ORDER BY name NULLS LAST) FILTER (WHERE id > 1) FROM users",
    );
    check_err(
        "SELECT rank(1) WITHIN GROUP (ORDER BY id) FROM users",
        "0A000",
    );
    check_err(
        "SELECT json_object_agg(DISTINCT name, id) FROM users",
        "0A000",
    );
}

#[test]
fn result_types_follow_postgres() {
    assert_eq!(
        types_of(
            "SELECT id, name, count(*), sum(aid), avg(aid), max(ratio) FROM users, accounts GROUP BY id, name"
        ),
        vec![
            ("id".to_owned(), PgType::Int8, -1),
            ("name".to_owned(), PgType::Varchar, 24),
            ("count".to_owned(), PgType::Int8, -1),
            ("sum".to_owned(), PgType::Int8, -1),
            ("avg".to_owned(), PgType::Numeric, -1),
            ("max".to_owned(), PgType::Float8, -1),
        ]
    );
    assert_eq!(
        types_of(
            "SELECT 1, 'a', 1.5, 1 = 1, 'a' || 'b', now(), 1::int8 AS big, aid + ratio FROM accounts"
        ),
        vec![
            ("?column?".to_owned(), PgType::Int4, -1),
            ("?column?".to_owned(), PgType::Text, -1),
            (
                "?column?".to_owned(),
                PgType::Numeric,
                Ty::numeric_scale(1).typmod
            ),
            ("?column?".to_owned(), PgType::Bool, -1),
            ("?column?".to_owned(), PgType::Text, -1),
            ("now".to_owned(), PgType::Timestamptz, -1),
            ("big".to_owned(), PgType::Int8, -1),
            ("?column?".to_owned(), PgType::Float8, -1),
        ]
    );
    assert_eq!(types_of("SELECT * FROM accounts").len(), 3);
    // The hidden rowid of a table without a primary key never shows.
    check(
        "SELECT * FROM accounts a",
        "SELECT \"a\".\"aid\", \"a\".\"abalance\", \"a\".\"ratio\" FROM accounts a",
    );
    check(
        "INSERT INTO accounts VALUES (1, 2, 3.5) RETURNING *",
        "INSERT INTO accounts (\"aid\", \"abalance\", \"ratio\") VALUES (1, 2, 3.5) RETURNING \"accounts\".\"aid\", \"accounts\".\"abalance\", \"accounts\".\"ratio\"",
    );
    assert_eq!(types_of("SELECT a.* FROM accounts a")[0].0, "aid");
    assert_eq!(
        types_of("SELECT coalesce(ratio, 0) FROM accounts")[0].1,
        PgType::Float8
    );
    assert_eq!(
        types_of("WITH c AS (SELECT aid FROM accounts) SELECT aid FROM c")[0].1,
        PgType::Int4
    );
    assert_eq!(
        types_of("INSERT INTO users (id) VALUES (1) RETURNING id, created")[1].1,
        PgType::Timestamptz
    );
    let t = tr("SELECT id FROM users");
    assert_eq!((t.out[0].table_oid, t.out[0].attnum), (16385, 1));
}

#[test]
fn parameter_types_are_inferred() {
    assert_eq!(
        params_of("SELECT * FROM users WHERE id = $1"),
        vec![PgType::Int8]
    );
    assert_eq!(
        params_of("SELECT * FROM users WHERE $1 = name"),
        vec![PgType::Varchar]
    );
    assert_eq!(
        params_of("INSERT INTO users (id, active) VALUES ($1, $2)"),
        vec![PgType::Int8, PgType::Bool]
    );
    assert_eq!(
        params_of("INSERT INTO accounts VALUES ($1, $2, $3)"),
        vec![PgType::Int4, PgType::Int4, PgType::Float8]
    );
    assert_eq!(
        params_of("UPDATE accounts SET abalance = abalance + $1 WHERE aid = $2"),
        vec![PgType::Int4, PgType::Int4]
    );
    assert_eq!(
        params_of("SELECT * FROM users WHERE id IN ($1, $2)"),
        vec![PgType::Int8, PgType::Int8]
    );
    assert_eq!(
        params_of("SELECT * FROM users WHERE id BETWEEN $1 AND $2"),
        vec![PgType::Int8, PgType::Int8]
    );
    assert_eq!(
        params_of("SELECT * FROM users LIMIT $1 OFFSET $2"),
        vec![PgType::Int8, PgType::Int8]
    );
    assert_eq!(params_of("SELECT $1::int"), vec![PgType::Int4]);
    assert_eq!(params_of("SELECT $1"), vec![PgType::Text]);
    let t = translate("SELECT $1", &[20], &schema()).unwrap();
    assert_eq!(t.params[0].ty, PgType::Int8);
}

#[test]
fn ddl_translates_with_catalog_rows() {
    // A table CHECK over one column is named after it, as Postgres does.
    let t = tr(
        "CREATE TABLE t (id bigserial PRIMARY KEY, name varchar(20) NOT NULL UNIQUE, amount numeric(10,2) DEFAULT 0, at timestamptz DEFAULT now(), ok boolean DEFAULT true, CHECK (amount >= 0))",
    );
    assert_eq!(
        t.pre[0],
        "CREATE TABLE \"t\" (\"id\" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, \"name\" TEXT NOT NULL, \"amount\" NUMERIC DEFAULT (0), \"at\" TEXT DEFAULT (__pg_now()), \"ok\" INTEGER DEFAULT (1), CONSTRAINT \"t_amount_check\" CHECK (amount >= 0))"
    );
    assert_eq!(
        t.pre[1],
        "CREATE UNIQUE INDEX \"t_name_key\" ON \"t\" (\"name\")"
    );
    assert!(
        t.pre.iter().any(|s| s.contains("'name', 2, 1043, 24")),
        "{:?}",
        t.pre
    );
    assert!(
        t.pre
            .iter()
            .any(|s| s.contains("'amount', 3, 1700, 655366")),
        "{:?}",
        t.pre
    );
    assert_eq!(t.kind.tag(0), "CREATE TABLE");

    check(
        "create table pgbench_history(tid int,bid int,aid    int,delta int,mtime timestamp,filler char(22))",
        &tr("create table pgbench_history(tid int,bid int,aid    int,delta int,mtime timestamp,filler char(22))").pre.join("; "),
    );
    let t = tr(
        "create table pgbench_tellers(tid int not null,bid int,tbalance int,filler char(84)) with (fillfactor=100)",
    );
    assert!(t.pre[0].starts_with("CREATE TABLE \"pgbench_tellers\" (\"tid\" INTEGER NOT NULL"));
    check(
        "CREATE INDEX ON users (name)",
        "CREATE INDEX \"users_name_idx\" ON \"users\" (name)",
    );
    check(
        "CREATE UNIQUE INDEX IF NOT EXISTS ux ON users (name, id DESC)",
        "CREATE UNIQUE INDEX IF NOT EXISTS \"ux\" ON \"users\" (name, id DESC)",
    );
    check(
        "TRUNCATE TABLE users, accounts",
        "DELETE FROM \"users\"; DELETE FROM \"accounts\"",
    );
    check(
        "alter table accounts add primary key (aid)",
        "CREATE UNIQUE INDEX \"accounts_pkey\" ON \"accounts\" (\"aid\"); UPDATE __mycelium_tables SET pk_name = 'accounts_pkey' WHERE name = 'accounts'",
    );
    check(
        "ALTER TABLE accounts ADD CONSTRAINT fk FOREIGN KEY (aid) REFERENCES users (id)",
        "",
    );
    check(
        "drop table if exists accounts, nope",
        "DROP TABLE \"accounts\"; DELETE FROM __mycelium_columns WHERE table_name = 'accounts'; DELETE FROM __mycelium_tables WHERE name = 'accounts'",
    );
    check_err("DROP TABLE nope", "42P01");
    check_err("CREATE TABLE users (id int)", "42P07");
    check("CREATE TABLE IF NOT EXISTS users (id int)", "");
    assert_eq!(
        tr("CREATE TABLE t (id int, n serial)").pre[0],
        "CREATE TABLE \"t\" (\"id\" INTEGER, \"n\" INTEGER DEFAULT (__pg_nextval('t_n_seq')) NOT NULL, \"__mycelium_rowid\" INTEGER PRIMARY KEY)"
    );
    check(
        "vacuum analyze pgbench_branches",
        "ANALYZE \"pgbench_branches\"",
    );
    check("VACUUM", "");
    assert_eq!(tr("vacuum analyze pgbench_branches").kind.tag(0), "VACUUM");
}

#[test]
fn postgres_only_forms_get_sqlite_equivalents() {
    // A VALUES list with column aliases: SQLite has no alias list, an empty first branch of
    // a UNION ALL names the columns.
    check(
        "SELECT p0 FROM (VALUES (1, 'a'), (2, 'b')) AS v(p0, p1)",
        "SELECT p0 FROM (SELECT NULL AS \"p0\", NULL AS \"p1\" WHERE 1 = 0 UNION ALL SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS __named) AS v",
    );
    check(
        "SELECT y FROM (SELECT id, name FROM users) AS s(x, y)",
        "SELECT y FROM (SELECT id AS \"x\", name AS \"y\" FROM users) AS s",
    );
    check(
        "SELECT b.n FROM users AS b(n)",
        "SELECT b.n FROM (SELECT \"id\" AS \"n\", \"name\", \"active\", \"balance\", \"created\" FROM users) AS b",
    );
    // avg is exact, printed with its scale as a result column, a double elsewhere.
    check(
        "SELECT avg(aid) FROM accounts HAVING avg(aid) > 1",
        "SELECT __pg_avg_text(aid, 0) FROM accounts HAVING __pg_avg(aid, 0) > 1",
    );
    check(
        "SELECT avg(ratio) FROM accounts",
        "SELECT avg(ratio) FROM accounts",
    );
    // ORDER BY a converted column sorts by the number.
    check(
        "SELECT balance / 3 AS third FROM users ORDER BY third",
        "SELECT __pg_numeric_div(balance, 3, -1, 0, 1) AS third FROM users ORDER BY __pg_numeric_div(balance, 3, -1, 0, 0) NULLS LAST",
    );
    check(
        "SELECT to_regtype('int') = 23, to_regtype('int')",
        "SELECT __pg_to_regtype('int') = 23, __pg_regtype_name(__pg_to_regtype('int'))",
    );
    assert_eq!(tr("SELECT to_regtype('int')").out[0].ty.ty, PgType::Text);
}

/// An equality with a parameter in a statement that also sorts: SQLite compiled such a
/// prepared statement again every time the parameter was bound anew, unless it compares with
/// `+?n`; the rows and the index use stay the same.
#[test]
fn equalities_with_parameters_do_not_recompile_sorted_statements() {
    let t = tr("SELECT id FROM users WHERE name = $1 AND active = $2 ORDER BY created DESC");
    let [sql] = t.main.as_slice() else {
        panic!("one statement: {:?}", t.main);
    };
    assert!(
        sql.contains("name = +?1") && sql.contains("active = +?2"),
        "{sql}"
    );
    let conn = rusqlite::Connection::open_in_memory().expect("in-memory database");
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, active INTEGER, created TEXT);
         CREATE INDEX users_name_created ON users (name, created);
         INSERT INTO users VALUES (1, 'a', 1, '1'), (2, 'a', 1, '2'), (3, 'b', 1, '3');",
    )
    .expect("table");
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("plan")
        .query_map(rusqlite::params!["a", 1], |row| row.get(3))
        .expect("plan rows")
        .collect::<Result<_, _>>()
        .expect("plan text");
    assert!(
        plan.iter()
            .any(|step| step.contains("USING INDEX users_name_created")),
        "{plan:?}"
    );
    for (name, ids) in [("a", vec![2, 1]), ("b", vec![3]), ("a", vec![2, 1])] {
        let mut stmt = conn.prepare_cached(sql).expect("prepared");
        let found: Vec<i64> = stmt
            .query_map(rusqlite::params![name, 1], |row| row.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("ids");
        assert_eq!(found, ids, "{name}");
    }
    let stmt = conn.prepare_cached(sql).expect("prepared");
    assert_eq!(
        stmt.get_status(rusqlite::StatementStatus::RePrepare),
        0,
        "{sql}"
    );
}
