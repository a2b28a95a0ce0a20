//! The one place where SQLite's errors become Postgres errors (SQLSTATE + message).
//!
//! Functions registered on the connection cannot return a SQLSTATE through SQLite, so they
//! raise a message tagged `__pgerr:CODE:message`; [`from_sqlite`] unwraps it here.

use mycelium_protocol::DbError;
use rusqlite::ffi;

/// Errors opening or running the backend itself, as opposed to a statement's error.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create the directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the SQLite database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("cannot start a SQLite worker thread: {0}")]
    Spawn(std::io::Error),
    #[error("the SQLite backend has shut down")]
    Closed,
    #[error("cannot re-establish prepared transaction {gid} after a restart: {message}")]
    Recovery { gid: String, message: String },
}

pub(crate) const FEATURE_NOT_SUPPORTED: &str = "0A000";
pub(crate) const PG_ERR_PREFIX: &str = "__pgerr:";

/// `0A000` naming the construct SQLite nodes cannot run faithfully.
pub fn unsupported(what: impl std::fmt::Display) -> DbError {
    DbError::new(
        FEATURE_NOT_SUPPORTED,
        format!("feature not supported on SQLite nodes: {what}"),
    )
}

pub(crate) fn internal(message: impl Into<String>) -> DbError {
    DbError::new("XX000", message)
}

/// What the statement was doing, to fill in the relation name Postgres puts in messages.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ErrorContext<'a> {
    pub table: Option<&'a str>,
}

/// Separates the message, detail and hint of a function error (ASCII unit separator).
const FIELD_SEPARATOR: char = '\u{1f}';

/// The text a registered function raises to carry a SQLSTATE (and the detail and hint)
/// through SQLite.
pub(crate) fn encode_function_error(err: &DbError) -> String {
    format!(
        "{PG_ERR_PREFIX}{}:{}{FIELD_SEPARATOR}{}{FIELD_SEPARATOR}{}",
        err.code,
        err.message,
        err.detail.as_deref().unwrap_or(""),
        err.hint.as_deref().unwrap_or("")
    )
}

pub(crate) fn decode_function_error(message: &str) -> Option<DbError> {
    let rest = message.split_once(PG_ERR_PREFIX)?.1;
    let (code, rest) = rest.split_once(':')?;
    let mut fields = rest.split(FIELD_SEPARATOR);
    let mut err = DbError::new(code, fields.next().unwrap_or(""));
    let present = |f: Option<&str>| f.filter(|f| !f.is_empty()).map(str::to_owned);
    err.detail = present(fields.next());
    err.hint = present(fields.next());
    Some(err)
}

/// Maps a SQLite error to the Postgres error a client expects.
pub(crate) fn from_sqlite(err: &rusqlite::Error, ctx: ErrorContext<'_>) -> DbError {
    match err {
        rusqlite::Error::SqliteFailure(code, message) => {
            let message = message.clone().unwrap_or_else(|| code.to_string());
            from_code(code, &message, ctx)
        }
        rusqlite::Error::SqlInputError { error, msg, .. } => from_code(error, msg, ctx),
        rusqlite::Error::UserFunctionError(inner) => {
            let text = inner.to_string();
            decode_function_error(&text).unwrap_or_else(|| internal(text))
        }
        rusqlite::Error::InvalidParameterCount(given, wanted) => DbError::new(
            "08P01",
            format!(
                "bind message supplies {given} parameters, but prepared statement \"\" requires {wanted}"
            ),
        ),
        other => internal(other.to_string()),
    }
}

fn from_code(code: &ffi::Error, message: &str, ctx: ErrorContext<'_>) -> DbError {
    if let Some(err) = decode_function_error(message) {
        return err;
    }
    match code.code {
        ffi::ErrorCode::DatabaseBusy | ffi::ErrorCode::DatabaseLocked => DbError::new(
            "40001",
            "could not serialize access due to concurrent update",
        ),
        ffi::ErrorCode::OperationInterrupted => {
            DbError::new("57014", "canceling statement due to user request")
        }
        ffi::ErrorCode::ConstraintViolation => constraint(code.extended_code, message, ctx),
        ffi::ErrorCode::TypeMismatch => DbError::new("22P02", format!("invalid input: {message}")),
        ffi::ErrorCode::DiskFull => DbError::new("53100", message),
        ffi::ErrorCode::ReadOnly => DbError::new("25006", message),
        ffi::ErrorCode::TooBig => DbError::new("54000", message),
        _ => from_message(message),
    }
}

fn constraint(extended: i32, message: &str, ctx: ErrorContext<'_>) -> DbError {
    let detail = message.split_once(": ").map(|(_, d)| d).unwrap_or("");
    let table = ctx.table.unwrap_or("");
    match extended {
        ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
            // The constraint name is resolved by the engine, which knows the indexes.
            DbError::new(
                "23505",
                "duplicate key value violates unique constraint \"?\"".to_owned(),
            )
            .with_detail(detail.to_owned())
        }
        ffi::SQLITE_CONSTRAINT_NOTNULL => {
            let (table_name, column) = split_qualified(detail, table);
            DbError::new(
                "23502",
                format!(
                    "null value in column \"{column}\" of relation \"{table_name}\" violates not-null constraint"
                ),
            )
        }
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => DbError::new(
            "23503",
            format!("insert or update on table \"{table}\" violates foreign key constraint"),
        ),
        ffi::SQLITE_CONSTRAINT_CHECK => DbError::new(
            "23514",
            format!("new row for relation \"{table}\" violates check constraint \"{detail}\""),
        ),
        _ => DbError::new("23000", message),
    }
}

fn split_qualified<'a>(qualified: &'a str, default_table: &'a str) -> (&'a str, &'a str) {
    match qualified.split_once('.') {
        Some((t, c)) => (t, c),
        None => (default_table, qualified),
    }
}

/// Errors SQLite reports as plain `SQLITE_ERROR`, recognised by their text.
fn from_message(full: &str) -> DbError {
    // Recent SQLite appends " in <statement> at offset N": not for clients' eyes.
    let message = match full.find(" in ") {
        Some(at)
            if full.ends_with(|c: char| c.is_ascii_digit()) && full.contains(" at offset ") =>
        {
            &full[..at]
        }
        _ => full,
    };
    if let Some(name) = message.strip_prefix("no such table: ") {
        let name = name.rsplit('.').next().unwrap_or(name);
        return DbError::new("42P01", format!("relation \"{name}\" does not exist"));
    }
    if let Some(name) = message.strip_prefix("no such column: ") {
        return DbError::new("42703", format!("column \"{name}\" does not exist"));
    }
    if let Some(rest) = message.strip_prefix("table ")
        && let Some(name) = rest.strip_suffix(" already exists")
    {
        return DbError::new("42P07", format!("relation \"{name}\" already exists"));
    }
    if let Some(rest) = message.strip_prefix("index ")
        && let Some(name) = rest.strip_suffix(" already exists")
    {
        return DbError::new("42P07", format!("relation \"{name}\" already exists"));
    }
    if let Some(name) = message.strip_prefix("no such index: ") {
        return DbError::new("42704", format!("index \"{name}\" does not exist"));
    }
    if let Some(rest) = message.strip_prefix("no such function: ") {
        return DbError::new("42883", format!("function {rest} does not exist"))
            .with_hint("SQLite nodes implement only some Postgres functions.");
    }
    if let Some(rest) = message.strip_prefix("wrong number of arguments to function ") {
        return DbError::new("42883", format!("function {rest} does not exist"));
    }
    if message.contains("syntax error") {
        return DbError::new("42601", message);
    }
    if message.starts_with("sub-select returns ") {
        return DbError::new("42601", "subquery must return only one column");
    }
    if message.starts_with("misuse of aggregate")
        || message.contains("aggregate functions are not allowed")
    {
        return DbError::new("42803", message);
    }
    if message.starts_with("ambiguous column name: ") {
        let name = message.trim_start_matches("ambiguous column name: ");
        return DbError::new("42702", format!("column reference \"{name}\" is ambiguous"));
    }
    if message == "integer overflow" {
        return DbError::new("22003", "integer out of range");
    }
    internal(full)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn function_errors_round_trip() {
        let err = DbError::new("22012", "division by zero");
        let text = format!("prefix {}", encode_function_error(&err));
        assert_eq!(decode_function_error(&text), Some(err));
        let err = DbError::new("22003", "numeric field overflow")
            .with_detail(
                "A field with precision 5, scale 2 must round to an absolute value less than 10^3.",
            )
            .with_hint("a: b");
        let text = encode_function_error(&err);
        assert_eq!(decode_function_error(&text), Some(err));
    }

    #[test]
    fn messages_map_to_sqlstates() {
        assert_eq!(from_message("no such table: main.foo").code, "42P01");
        assert_eq!(
            from_message("no such table: main.foo").message,
            "relation \"foo\" does not exist"
        );
        assert_eq!(from_message("no such column: x").code, "42703");
        assert_eq!(from_message("table t already exists").code, "42P07");
        assert_eq!(from_message("something else").code, "XX000");
    }
}
