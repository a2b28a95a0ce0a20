use crate::{Plan, RouterError, SettingArg, SettingsCall, SettingsColumn, SettingsPlan, classify};

fn substitute(sql: &str) -> String {
    match classify(sql) {
        Ok(Plan::Settings(SettingsPlan::Substitute(s))) => s
            .render(sql, |name, missing_ok| {
                Ok::<_, ()>(match (name, missing_ok) {
                    ("missing", true) => None,
                    (name, _) => Some(format!("<{name}>")),
                })
            })
            .expect("render"),
        other => panic!("{sql}: {other:?}"),
    }
}

fn answer(sql: &str) -> Vec<SettingsColumn> {
    match classify(sql) {
        Ok(Plan::Settings(SettingsPlan::Answer(columns))) => columns,
        other => panic!("{sql}: {other:?}"),
    }
}

fn text(s: &str) -> SettingArg {
    SettingArg::Text(s.to_owned())
}

#[test]
fn statements_without_calls_are_plain_forwards() {
    for sql in [
        "SELECT 1",
        "SELECT 'current_setting(''x'')'",
        "SELECT current_setting FROM t",
        "SELECT 1 -- set_config('a', 'b', false)",
        "SELECT my_set_config_x(1)",
        "SELECT current_setting('x' FROM",
    ] {
        assert_eq!(classify(sql), Ok(Plan::Forward { ddl: false }), "{sql}");
    }
}

#[test]
fn plain_selects_of_the_calls_are_answered_by_the_proxy() {
    assert_eq!(
        answer("SELECT pg_catalog.set_config('search_path', '', false)"),
        vec![SettingsColumn {
            name: "set_config".to_owned(),
            call: SettingsCall::Set {
                name: text("search_path"),
                value: text(""),
                local: SettingArg::Bool(false),
            },
        }]
    );
    assert_eq!(
        answer(
            "select set_config('app.user_id', $1, $2) as x, Current_Setting('app.user_id', true);"
        ),
        vec![
            SettingsColumn {
                name: "x".to_owned(),
                call: SettingsCall::Set {
                    name: text("app.user_id"),
                    value: SettingArg::Param(1),
                    local: SettingArg::Param(2),
                },
            },
            SettingsColumn {
                name: "current_setting".to_owned(),
                call: SettingsCall::Get {
                    name: text("app.user_id"),
                    missing_ok: SettingArg::Bool(true),
                },
            },
        ]
    );
    assert_eq!(
        answer("SELECT current_setting(NULL)"),
        vec![SettingsColumn {
            name: "current_setting".to_owned(),
            call: SettingsCall::Get {
                name: SettingArg::Null,
                missing_ok: SettingArg::Bool(false),
            },
        }]
    );
}

#[test]
fn calls_elsewhere_become_literals_at_execution() {
    assert_eq!(
        substitute("SELECT current_setting('server_version_num')::int"),
        "SELECT CAST('<server_version_num>' AS text)::int AS current_setting"
    );
    assert_eq!(
        substitute("SELECT current_setting('TimeZone') , 1"),
        "SELECT CAST('<TimeZone>' AS text) AS current_setting , 1"
    );
    assert_eq!(
        substitute("SELECT pg_catalog.current_setting('a')::numeric(5, 1) /* c */ FROM t"),
        "SELECT CAST('<a>' AS text)::numeric(5, 1) AS current_setting /* c */ FROM t"
    );
    assert_eq!(
        substitute("SELECT id FROM t WHERE owner = current_setting('app.user_id')::int"),
        "SELECT id FROM t WHERE owner = CAST('<app.user_id>' AS text)::int"
    );
    assert_eq!(
        substitute("SELECT upper(current_setting('a')), current_setting('missing', true) x"),
        "SELECT upper(CAST('<a>' AS text)), CAST(NULL AS text) x"
    );
    assert_eq!(
        substitute("UPDATE t SET v = current_setting('it''s') WHERE id = $1"),
        "UPDATE t SET v = CAST('<it''s>' AS text) WHERE id = $1"
    );
    assert_eq!(
        substitute("SELECT current_setting('a') UNION SELECT current_setting('b')"),
        "SELECT CAST('<a>' AS text) AS current_setting UNION SELECT CAST('<b>' AS text)"
    );
    assert_eq!(
        substitute("INSERT INTO t VALUES (1) RETURNING id, current_setting('a')"),
        "INSERT INTO t VALUES (1) RETURNING id, CAST('<a>' AS text) AS current_setting"
    );
    assert_eq!(
        substitute("SELECT\n  'é', current_setting('a')\nFROM t"),
        "SELECT\n  'é', CAST('<a>' AS text) AS current_setting\nFROM t"
    );
}

#[test]
fn values_with_quotes_are_escaped() {
    let sql = "SELECT 1 WHERE current_setting('a') = 'x'";
    let Ok(Plan::Settings(SettingsPlan::Substitute(s))) = classify(sql) else {
        panic!("not substituted");
    };
    let rendered = s.render(sql, |_, _| Ok::<_, ()>(Some("o'k".to_owned())));
    assert_eq!(
        rendered,
        Ok("SELECT 1 WHERE CAST('o''k' AS text) = 'x'".to_owned())
    );
    assert_eq!(
        s.placeholder(sql),
        "SELECT 1 WHERE CAST(NULL AS text) = 'x'"
    );
}

#[test]
fn what_cannot_be_known_before_execution_is_refused() {
    for sql in [
        "SELECT current_setting($1) FROM t",
        "SELECT current_setting(name) FROM t",
        "SELECT set_config('a', 'b', false) FROM t",
        "SELECT 1, set_config('a', 'b', false)",
        "UPDATE t SET v = set_config('a', 'b', false)",
        "SELECT set_config('a', current_setting('b'), false)",
        "CREATE TABLE t (tz text DEFAULT current_setting('TimeZone'))",
    ] {
        assert!(
            matches!(classify(sql), Err(RouterError::Unsupported(_))),
            "{sql}: {:?}",
            classify(sql)
        );
    }
}
