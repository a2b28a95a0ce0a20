//! The schema statements of a recorded message. The DDL event trigger records
//! `current_query()`, the whole client message: the proxy sends one statement per message,
//! but a direct client may send `BEGIN; INSERT ...; ALTER TABLE ...; COMMIT` at once, and
//! only the `ALTER TABLE` may be replayed (rows travel as rows; transaction control would
//! end the applying transaction).

use crate::postgres::sql::skip_opaque;

/// Leading keywords of statements that are not replayed.
const NOT_REPLAYED: &[&str] = &[
    "ABORT",
    "ANALYZE",
    "BEGIN",
    "CALL",
    "CHECKPOINT",
    "CLOSE",
    "COMMIT",
    "COPY",
    "DEALLOCATE",
    "DECLARE",
    "DELETE",
    "DISCARD",
    "END",
    "EXECUTE",
    "EXPLAIN",
    "FETCH",
    "INSERT",
    "LISTEN",
    "LOCK",
    "MERGE",
    "MOVE",
    "NOTIFY",
    "PREPARE",
    "RELEASE",
    "RESET",
    "ROLLBACK",
    "SAVEPOINT",
    "SELECT",
    "SET",
    "SHOW",
    "START",
    "TABLE",
    "TRUNCATE",
    "UNLISTEN",
    "UPDATE",
    "VACUUM",
    "VALUES",
    "WITH",
];

/// `text` when it is one statement; else its schema statements joined with `;`, or `text`
/// when none is recognised (DDL run by a function the message called).
pub(super) fn schema_statements(text: &str) -> String {
    let statements = split(text);
    if statements.len() <= 1 {
        return text.to_owned();
    }
    let kept: Vec<&str> = statements
        .into_iter()
        .filter(|s| {
            let word = first_word(s).to_ascii_uppercase();
            !NOT_REPLAYED.contains(&word.as_str())
        })
        .collect();
    if kept.is_empty() {
        text.to_owned()
    } else {
        kept.join(";\n")
    }
}

/// Whether `statement` is a SQLite node's upkeep of its own catalog (`__mycelium_tables`,
/// `__mycelium_columns`): a SQLite primary's entries carry these rows' writes beside its DDL,
/// and they mean nothing to PostgreSQL, which keeps its catalog itself. A copy skips them.
pub(super) fn sqlite_catalog_upkeep(statement: &str) -> bool {
    let verb = first_word(statement).to_ascii_uppercase();
    if !matches!(verb.as_str(), "INSERT" | "REPLACE" | "UPDATE" | "DELETE") {
        return false;
    }
    // The table follows the verb and its modifiers: `INSERT OR REPLACE INTO t`,
    // `DELETE FROM t`, `UPDATE t`.
    statement
        .split(|c: char| c.is_whitespace() || c == '(')
        .filter(|w| !w.is_empty())
        .skip(1)
        .find(|w| {
            !matches!(
                w.to_ascii_uppercase().as_str(),
                "OR" | "REPLACE" | "IGNORE" | "ROLLBACK" | "ABORT" | "FAIL" | "INTO" | "FROM"
            )
        })
        .is_some_and(|table| table.trim_matches('"').starts_with("__mycelium_"))
}

/// The first keyword of a statement (comments skipped).
fn first_word(statement: &str) -> &str {
    let mut rest = statement.trim_start();
    while rest.starts_with("--") || rest.starts_with("/*") {
        let end = skip_opaque(rest, 0).unwrap_or(rest.len());
        rest = rest[end..].trim_start();
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    &rest[..end]
}

/// Splits on `;` outside quotes, dollar quotes and comments; empty statements dropped.
fn split(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        if text.as_bytes()[i] == b';' {
            out.push(&text[start..i]);
            i += 1;
            start = i;
        } else {
            i = skip_opaque(text, i).unwrap_or(i + 1);
        }
    }
    out.push(&text[start.min(text.len())..]);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_sqlite_catalog_upkeep() {
        for upkeep in [
            "DELETE FROM __mycelium_columns WHERE table_name = 'f'",
            "INSERT OR REPLACE INTO __mycelium_tables (name, kind, pk_name, options) \
             VALUES ('f', 'r', 'f_pkey', NULL)",
            "INSERT INTO __mycelium_columns (table_name, column_name) VALUES ('f', 'a')",
            "  delete from \"__mycelium_tables\" WHERE name = 'f'",
            "UPDATE __mycelium_columns SET ordinal = 2 WHERE table_name = 'f'",
        ] {
            assert!(sqlite_catalog_upkeep(upkeep), "{upkeep}");
        }
        for ddl in [
            "CREATE TABLE f (a int PRIMARY KEY)",
            "DROP TABLE __mycelium_columns_backup_of_mine",
            "ALTER TABLE f ADD COLUMN b text",
            "INSERT INTO f VALUES (1)",
            "DELETE FROM f WHERE a = '__mycelium_x'",
        ] {
            assert!(!sqlite_catalog_upkeep(ddl), "{ddl}");
        }
    }

    fn check(text: &str, expected: &str) {
        assert_eq!(schema_statements(text), expected, "{text}");
    }

    #[test]
    fn keeps_schema_statements() {
        check("CREATE TABLE t (a int)", "CREATE TABLE t (a int)");
        check("ALTER TABLE t ADD b int;", "ALTER TABLE t ADD b int;");
        check(
            "BEGIN; INSERT INTO t VALUES (1); ALTER TABLE t ADD c int; COMMIT",
            " ALTER TABLE t ADD c int",
        );
        check(
            "CREATE TABLE a (x text DEFAULT ';'); -- c; \n CREATE TABLE b (y int)",
            "CREATE TABLE a (x text DEFAULT ';');\n -- c; \n CREATE TABLE b (y int)",
        );
        check(
            "CREATE FUNCTION f() RETURNS int AS $x$ SELECT 1; $x$ LANGUAGE sql; SELECT f()",
            "CREATE FUNCTION f() RETURNS int AS $x$ SELECT 1; $x$ LANGUAGE sql",
        );
        check(
            "/* a; /* b; */ */ COMMENT ON TABLE t IS E'it\\'s;'; SET x = 1",
            "/* a; /* b; */ */ COMMENT ON TABLE t IS E'it\\'s;'",
        );
        check(
            "CREATE TABLE \"a;b\" (c int); WITH x AS (SELECT 1) SELECT * FROM x",
            "CREATE TABLE \"a;b\" (c int)",
        );
        // Nothing recognisable: the message as it was.
        check(
            "SELECT make_tables(); SELECT 1",
            "SELECT make_tables(); SELECT 1",
        );
    }
}
