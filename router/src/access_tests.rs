use crate::*;

/// `uses` as "table:PRIVILEGE" strings, sorted, for compact expectations.
fn uses(sql: &str) -> Vec<String> {
    let access = table_access(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert!(!access.superuser_only, "{sql} is superuser-only");
    let mut out: Vec<String> = access
        .uses
        .iter()
        .map(|(t, p)| format!("{t}:{}", p.keyword()))
        .collect();
    out.sort();
    out
}

#[test]
fn reads_and_writes_need_their_privileges() {
    let check = |sql: &str, expected: &[&str]| assert_eq!(uses(sql), expected, "{sql}");
    check("SELECT * FROM t", &["t:SELECT"]);
    check("SELECT 1", &[]);
    check(
        "SELECT * FROM a JOIN public.b ON a.id = b.id WHERE a.x IN (SELECT x FROM c)",
        &["a:SELECT", "b:SELECT", "c:SELECT"],
    );
    check("INSERT INTO t (a) VALUES ($1)", &["t:INSERT"]);
    check("INSERT INTO t SELECT * FROM s", &["s:SELECT", "t:INSERT"]);
    check("INSERT INTO t SELECT * FROM t", &["t:INSERT", "t:SELECT"]);
    check(
        "INSERT INTO t (a) VALUES (1) RETURNING a",
        &["t:INSERT", "t:SELECT"],
    );
    check(
        "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2",
        &["t:INSERT", "t:SELECT", "t:UPDATE"],
    );
    check(
        "INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING",
        &["t:INSERT"],
    );
    check("UPDATE t SET a = 1", &["t:UPDATE"]);
    check("UPDATE t SET a = a + 1", &["t:SELECT", "t:UPDATE"]);
    check("UPDATE t SET a = 1 WHERE id = 2", &["t:SELECT", "t:UPDATE"]);
    check(
        "UPDATE t SET a = (SELECT max(x) FROM s)",
        &["s:SELECT", "t:SELECT", "t:UPDATE"],
    );
    check("DELETE FROM t", &["t:DELETE"]);
    check("DELETE FROM t WHERE id = $1", &["t:DELETE", "t:SELECT"]);
    check("TRUNCATE t, u", &["t:TRUNCATE", "u:TRUNCATE"]);
    check("EXPLAIN SELECT * FROM t", &["t:SELECT"]);
    check("SELECT * FROM \"Mixed\"", &["Mixed:SELECT"]);
}

#[test]
fn catalogs_are_free_and_ctes_are_scoped() {
    let check = |sql: &str, expected: &[&str]| assert_eq!(uses(sql), expected, "{sql}");
    check("SELECT * FROM pg_catalog.pg_class", &[]);
    check(
        "SELECT relname FROM pg_class c JOIN pg_namespace n ON true",
        &[],
    );
    check("SELECT * FROM information_schema.tables", &[]);
    check("WITH x AS (SELECT 1) SELECT * FROM x", &[]);
    check("WITH x AS (SELECT * FROM t) SELECT * FROM x", &["t:SELECT"]);
    // A CTE does not see itself unless RECURSIVE: the inner `t` is the table.
    check("WITH t AS (SELECT * FROM t) SELECT * FROM t", &["t:SELECT"]);
    check(
        "WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b",
        &["b:SELECT"],
    );
    check(
        "WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT * FROM r) SELECT * FROM r",
        &[],
    );
    // A qualified name is always the table.
    check("WITH t AS (SELECT 1) SELECT * FROM public.t", &["t:SELECT"]);
    // A CTE of a subquery is not visible outside it.
    check(
        "SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) s, x",
        &["x:SELECT"],
    );
}

#[test]
fn ddl_needs_ownership_or_create() {
    let access = table_access("CREATE TABLE t (id int)").expect("parses");
    assert_eq!(access.creates, ["t"]);
    assert!(!access.sets_policy);
    let access =
        table_access("CREATE TABLE t (id int) WITH (mycelium.shard_keys = 'id')").expect("parses");
    assert!(access.sets_policy);
    let access = table_access("ALTER TABLE t SET (mycelium.shards = 4)").expect("parses");
    assert!(access.sets_policy);
    assert_eq!(access.owner_of, ["t"]);
    let access = table_access("ALTER TABLE t ADD COLUMN x int").expect("parses");
    assert_eq!(access.owner_of, ["t"]);
    assert!(!access.sets_policy);
    let access = table_access("DROP TABLE IF EXISTS a, b").expect("parses");
    assert_eq!(access.owner_of, ["a", "b"]);
    assert_eq!(access.drops, ["a", "b"]);
    let access = table_access("CREATE INDEX i ON t (x)").expect("parses");
    assert_eq!(access.owner_of, ["t"]);
    let access = table_access("COMMENT ON COLUMN t.x IS 'c'").expect("parses");
    assert_eq!(access.owner_of, ["t"]);
    let access = table_access("CREATE VIEW v AS SELECT * FROM t").expect("parses");
    assert_eq!(access.creates, ["v"]);
    assert_eq!(access.uses.len(), 1);
}

#[test]
fn what_is_not_understood_is_for_superusers() {
    for sql in [
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "WITH x AS (SELECT 1) DELETE FROM t",
        "ALTER TABLE t RENAME TO u",
        "DROP INDEX i",
        "CREATE SEQUENCE s",
        "CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql",
    ] {
        let access = table_access(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(access.superuser_only, "{sql}");
    }
    assert!(table_access("SELEC 1").is_err());
}

#[test]
fn role_statements_parse() {
    let check = |sql: &str, expected: RoleCommand| {
        assert_eq!(classify(sql), Ok(Plan::Role(expected)), "{sql}");
        assert!(is_role_statement(sql), "{sql}");
    };
    check(
        "CREATE USER alice WITH PASSWORD 'it''s' NOSUPERUSER",
        RoleCommand::Create {
            name: "alice".into(),
            user: true,
            options: vec![
                RoleOption::Password(Some(Secret("it's".into()))),
                RoleOption::Superuser(false),
            ],
            in_roles: vec![],
        },
    );
    check(
        "create role \"Readers\" nologin in role a, b",
        RoleCommand::Create {
            name: "Readers".into(),
            user: false,
            options: vec![RoleOption::Login(false)],
            in_roles: vec!["a".into(), "b".into()],
        },
    );
    check(
        "ALTER ROLE bob WITH ENCRYPTED PASSWORD E'a\\'b' SUPERUSER LOGIN",
        RoleCommand::Alter {
            name: "bob".into(),
            options: vec![
                RoleOption::Password(Some(Secret("a'b".into()))),
                RoleOption::Superuser(true),
                RoleOption::Login(true),
            ],
        },
    );
    check(
        "ALTER USER bob PASSWORD NULL",
        RoleCommand::Alter {
            name: "bob".into(),
            options: vec![RoleOption::Password(None)],
        },
    );
    check(
        "DROP USER IF EXISTS a, b",
        RoleCommand::Drop {
            names: vec!["a".into(), "b".into()],
            if_exists: true,
        },
    );
    check(
        "GRANT readers TO alice, bob",
        RoleCommand::Membership {
            grant: true,
            roles: vec!["readers".into()],
            members: vec!["alice".into(), "bob".into()],
        },
    );
    check(
        "REVOKE readers FROM alice",
        RoleCommand::Membership {
            grant: false,
            roles: vec!["readers".into()],
            members: vec!["alice".into()],
        },
    );
    check(
        "GRANT SELECT, insert ON TABLE t1, public.t2 TO alice",
        RoleCommand::Privileges {
            grant: true,
            privileges: vec![Privilege::Select, Privilege::Insert],
            target: GrantTarget::Tables(vec!["t1".into(), "t2".into()]),
            grantees: vec!["alice".into()],
        },
    );
    check(
        "GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA public TO PUBLIC",
        RoleCommand::Privileges {
            grant: true,
            privileges: Privilege::TABLE.to_vec(),
            target: GrantTarget::AllTables,
            grantees: vec!["public".into()],
        },
    );
    check(
        "REVOKE CREATE ON SCHEMA public FROM bob",
        RoleCommand::Privileges {
            grant: false,
            privileges: vec![Privilege::Create],
            target: GrantTarget::Schema,
            grantees: vec!["bob".into()],
        },
    );
    check(
        "GRANT USAGE ON SCHEMA public TO bob",
        RoleCommand::Privileges {
            grant: true,
            privileges: vec![],
            target: GrantTarget::Schema,
            grantees: vec!["bob".into()],
        },
    );
}

#[test]
fn role_statements_refuse_what_they_would_ignore() {
    for sql in [
        "CREATE USER a WITH CREATEDB",
        "CREATE ROLE a VALID UNTIL 'infinity'",
        "GRANT SELECT ON t TO a WITH GRANT OPTION",
        "GRANT SELECT (x) ON t TO a",
        "GRANT CREATE ON TABLE t TO a",
        "GRANT SELECT ON SCHEMA public TO a",
        "GRANT SELECT ON other.t TO a",
        "ALTER ROLE a RENAME TO b",
        "REVOKE GRANT OPTION FOR SELECT ON t FROM a",
    ] {
        assert!(
            matches!(classify(sql), Err(RouterError::Unsupported(_))),
            "{sql}: {:?}",
            classify(sql)
        );
    }
    for sql in [
        "CREATE USER",
        "CREATE USER a PASSWORD",
        "CREATE USER a PASSWORD 'x",
        "GRANT SELECT ON t",
        "GRANT ON t TO a",
        "DROP ROLE",
        "GRANT ALL THINGS ON t TO a",
    ] {
        assert!(
            matches!(classify(sql), Err(RouterError::Syntax(_))),
            "{sql}: {:?}",
            classify(sql)
        );
    }
    let plan = classify("CREATE USER a PASSWORD 'hunter2'").expect("parses");
    assert!(!format!("{plan:?}").contains("hunter2"));
}

#[test]
fn owner_changes_parse_and_other_alters_do_not() {
    let owner = |kind: &str, name: &str, owner: &str, if_exists: bool| {
        Ok(Plan::Role(RoleCommand::Owner {
            kind: kind.into(),
            name: name.into(),
            owner: owner.into(),
            if_exists,
        }))
    };
    assert_eq!(
        classify("ALTER TABLE public.author OWNER TO postgres;"),
        owner("table", "author", "postgres", false)
    );
    assert_eq!(
        classify("alter table if exists only \"Mixed\" owner to \"Team\""),
        owner("table", "Mixed", "Team", true)
    );
    assert_eq!(
        classify("ALTER SEQUENCE s OWNER TO CURRENT_USER"),
        owner("sequence", "s", "current_user", false)
    );
    assert!(is_role_statement("ALTER VIEW v OWNER TO app"));
    for other in [
        "ALTER TABLE t ADD COLUMN owner text",
        "ALTER TABLE t RENAME COLUMN a TO owner",
        "ALTER SEQUENCE s RESTART",
        "ALTER TABLE t RENAME COLUMN owner TO x",
        "ALTER TABLE other.t OWNER TO app",
    ] {
        assert!(!is_role_statement(other), "{other}");
        assert!(!matches!(classify(other), Ok(Plan::Role(_))), "{other}");
    }
}
