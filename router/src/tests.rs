use crate::*;

#[test]
fn split_respects_quotes_comments_and_dollar_bodies() {
    let check = |sql: &str, expected: &[&str]| assert_eq!(split_statements(sql), expected, "{sql}");
    check("", &[]);
    check(" ; ;", &[]);
    check("select 1; select 2", &["select 1", "select 2"]);
    check("select ';'; select 2;", &["select ';'", "select 2"]);
    check("select 'it''s;'; x", &["select 'it''s;'", "x"]);
    check("select E'\\';'; y", &["select E'\\';'", "y"]);
    check("select \"a;b\" from t", &["select \"a;b\" from t"]);
    check("select 1 -- c;\n; z", &["select 1 -- c;", "z"]);
    check(
        "/* a; /* b; */ c; */ select 1",
        &["/* a; /* b; */ c; */ select 1"],
    );
    check(
        "select $$a;b$$; select $t$;$t$",
        &["select $$a;b$$", "select $t$;$t$"],
    );
    check("select $1; select 2", &["select $1", "select 2"]);
    check("-- only a comment", &[]);
}

#[test]
fn classify_statement_kinds() {
    let check = |sql: &str, expected: Plan| assert_eq!(classify(sql), Ok(expected), "{sql}");
    check("BEGIN", Plan::Txn(TxnControl::Begin));
    check(
        "start transaction isolation level serializable",
        Plan::Txn(TxnControl::Begin),
    );
    check("commit", Plan::Txn(TxnControl::Commit));
    check("END", Plan::Txn(TxnControl::Commit));
    check("rollback", Plan::Txn(TxnControl::Rollback));
    check("ROLLBACK TO SAVEPOINT a", Plan::Txn(TxnControl::RollbackTo));
    check("savepoint a", Plan::Txn(TxnControl::Savepoint));
    check("release a", Plan::Txn(TxnControl::Release));
    check("select 1", Plan::Forward { ddl: false });
    check(
        "/* c */ create table t (a int)",
        Plan::Forward { ddl: true },
    );
    check("  -- c\n  ", Plan::Empty);
    assert!(matches!(
        classify("COMMIT PREPARED 'x'"),
        Err(RouterError::Unsupported(_))
    ));
    assert!(matches!(
        classify("LISTEN x"),
        Err(RouterError::Unsupported(_))
    ));
}

#[test]
fn session_commands() {
    let check = |sql: &str, expected: SessionCommand| {
        assert_eq!(classify(sql), Ok(Plan::Session(expected)), "{sql}")
    };
    let set = |name: &str, value: &str| SessionCommand::Set {
        name: name.to_owned(),
        value: SetValue::Value(value.to_owned()),
        local: false,
    };
    check(
        "SET application_name = 'psql'",
        set("application_name", "psql"),
    );
    check("set DateStyle TO ISO, MDY", set("datestyle", "ISO, MDY"));
    check(
        "SET SESSION search_path TO \"$user\", public",
        set("search_path", "$user, public"),
    );
    check(
        "SET LOCAL statement_timeout = 0",
        SessionCommand::Set {
            name: "statement_timeout".to_owned(),
            value: SetValue::Value("0".to_owned()),
            local: true,
        },
    );
    check("SET TIME ZONE 'UTC'", set("timezone", "UTC"));
    check("SET extra_float_digits = 3", set("extra_float_digits", "3"));
    check(
        "SET x TO DEFAULT",
        SessionCommand::Set {
            name: "x".to_owned(),
            value: SetValue::Default,
            local: false,
        },
    );
    check(
        "SHOW server_version",
        SessionCommand::Show {
            name: "server_version".to_owned(),
        },
    );
    check(
        "SHOW ALL",
        SessionCommand::Show {
            name: "all".to_owned(),
        },
    );
    check("RESET ALL", SessionCommand::Reset { name: None });
    check(
        "reset timezone",
        SessionCommand::Reset {
            name: Some("timezone".to_owned()),
        },
    );
    check(
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
        SessionCommand::SetTransaction {
            session_default: false,
            isolation: Some("read committed".to_owned()),
            read_only: None,
        },
    );
    check(
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY, ISOLATION LEVEL REPEATABLE READ",
        SessionCommand::SetTransaction {
            session_default: true,
            isolation: Some("repeatable read".to_owned()),
            read_only: Some(true),
        },
    );
    check("DISCARD ALL", SessionCommand::DiscardAll);
    check("DEALLOCATE ALL", SessionCommand::Deallocate { name: None });
    check(
        "DEALLOCATE PREPARE s1",
        SessionCommand::Deallocate {
            name: Some("s1".to_owned()),
        },
    );
    assert!(matches!(classify("SET"), Err(RouterError::Syntax(_))));
    let promote = |node: &str, table: &str, shard: u32| SessionCommand::Promote {
        node: node.to_owned(),
        table: table.to_owned(),
        shard,
    };
    check(
        "PROMOTE MYCELIUM NODE n2 FOR SHARD users/3",
        promote("n2", "users", 3),
    );
    check(
        "promote mycelium node 'node-2' for shard public.Users / 0;",
        promote("node-2", "users", 0),
    );
    for bad in [
        "PROMOTE NODE n2 FOR SHARD users/3",
        "PROMOTE MYCELIUM NODE n2 FOR SHARD users",
        "PROMOTE MYCELIUM NODE n2 FOR SHARD users/x",
        "PROMOTE MYCELIUM NODE n2 FOR SHARD users/-1",
        "PROMOTE MYCELIUM NODE n2 FOR SHARD /3",
        "PROMOTE MYCELIUM NODE FOR SHARD users/3",
    ] {
        assert!(
            matches!(classify(bad), Err(RouterError::Syntax(_))),
            "{bad}"
        );
    }
}

#[test]
fn copy_plans() {
    let Ok(Plan::Copy(plan)) = classify("copy pgbench_accounts from stdin with (freeze on)") else {
        panic!("not a copy plan");
    };
    assert_eq!(plan.direction, CopyDirection::FromStdin);
    assert_eq!(
        plan.source,
        CopySourceKind::Table("pgbench_accounts".to_owned())
    );
    assert_eq!(plan.format, CopyFormat::Text);
    assert_eq!(plan.delimiter, '\t');
    assert_eq!(plan.null, "\\N");

    let Ok(Plan::Copy(plan)) = classify("COPY t (a, b) TO STDOUT WITH (FORMAT csv, HEADER true)")
    else {
        panic!("not a copy plan");
    };
    assert_eq!(plan.direction, CopyDirection::ToStdout);
    assert_eq!(plan.columns, vec!["a", "b"]);
    assert_eq!(plan.format, CopyFormat::Csv);
    assert!(plan.header);
    assert_eq!(plan.delimiter, ',');
    assert_eq!(plan.null, "");

    let Ok(Plan::Copy(plan)) = classify("COPY (SELECT 1) TO STDOUT") else {
        panic!("not a copy plan");
    };
    assert_eq!(plan.source, CopySourceKind::Query("SELECT 1".to_owned()));
    assert!(matches!(
        classify("COPY t FROM '/etc/passwd'"),
        Err(RouterError::Unsupported(_))
    ));
    assert!(matches!(
        classify("COPY t FROM STDIN (FORMAT binary)"),
        Ok(Plan::Copy(CopyPlan {
            format: CopyFormat::Binary,
            ..
        }))
    ));
    assert!(matches!(
        classify("COPY t FROM STDIN (FORMAT xml)"),
        Err(RouterError::Unsupported(_))
    ));
}

#[test]
fn plan_cache_hits_on_same_text() {
    let cache = PlanCache::new(4);
    let (first, hit) = cache.plan("select 1");
    assert!(first.is_ok());
    assert!(!hit);
    let (_, hit) = cache.plan("select 1");
    assert!(hit);
    for i in 0..10 {
        let _ = cache.plan(&format!("select {i}"));
    }
    assert!(cache.len() <= 4);
}

#[test]
fn statement_kinds_for_metrics() {
    let check = |sql: &str, kind: &str| assert_eq!(statement_kind(sql), kind, "{sql}");
    check("SELECT 1", "select");
    check("  -- c\n /* d */ (select 1)", "select");
    check("insert into t values (1)", "insert");
    check("Create table t (a int)", "ddl");
    check("BEGIN", "transaction");
    check("vacuum analyze t", "other");
    check("", "other");
}

#[test]
fn inserts_without_columns_get_them_named() {
    use crate::{insert_without_columns, name_insert_columns};
    assert_eq!(
        insert_without_columns("INSERT INTO Public.Users VALUES (1, 'a')").as_deref(),
        Some("users")
    );
    assert_eq!(
        insert_without_columns("INSERT INTO users (id) VALUES (1)"),
        None
    );
    assert_eq!(insert_without_columns("INSERT INTO users SELECT 1"), None);
    assert_eq!(insert_without_columns("SELECT 1"), None);
    let columns = ["id".to_owned(), "Name".to_owned(), "note".to_owned()];
    assert_eq!(
        name_insert_columns(
            "INSERT INTO users VALUES (1, $1), (2, 'b') RETURNING id",
            &columns
        )
        .expect("named"),
        "INSERT INTO users (\"id\", \"Name\") VALUES (1, $1), (2, 'b') RETURNING id"
    );
    assert!(matches!(
        name_insert_columns("INSERT INTO users VALUES (1, 2, 3, 4)", &columns),
        Err(RouterError::Syntax(_))
    ));
}
