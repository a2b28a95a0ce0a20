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
