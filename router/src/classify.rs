use crate::RouterError;
use crate::advisory::{AdvisoryColumn, mentions_advisory, plan_advisory};
use crate::copy::{CopyPlan, parse_copy};
use crate::named_sequences::{
    SequenceCommand, mentions_sequence_functions, plan_alter_sequence, plan_sequence_calls,
    plan_sequence_ddl,
};
use crate::roles::{RoleCommand, parse_role_command};
use crate::session::{SessionCommand, parse_session_command};
use crate::settings::{SettingsPlan, mentions_settings, plan_settings};

/// What one statement is, as far as the proxy must know before running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Only whitespace or comments.
    Empty,
    /// Transaction control; the proxy tracks the transaction state from these.
    Txn(TxnControl),
    /// A session command the proxy answers itself.
    Session(SessionCommand),
    /// COPY to or from the client.
    Copy(CopyPlan),
    /// Users, roles and privileges: the proxy runs these itself.
    Role(RoleCommand),
    /// A statement to run on a node. `ddl` statements change the schema, so cached
    /// statement descriptions must be forgotten after them.
    Forward { ddl: bool },
    /// A statement that calls `current_setting` or `set_config`, which read or change the
    /// session's parameters (see `settings.rs`).
    Settings(SettingsPlan),
    /// A SELECT of advisory lock calls, which the proxy answers (see `advisory.rs`).
    Advisory(Vec<AdvisoryColumn>),
    /// CREATE/DROP SEQUENCE and SELECTs of sequence functions (see `named_sequences.rs`).
    Sequence(SequenceCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnControl {
    Begin,
    Commit,
    Rollback,
    Savepoint,
    Release,
    RollbackTo,
}

/// Classifies one statement (the simple-query string already split by
/// [`crate::split_statements`]).
pub fn classify(sql: &str) -> Result<Plan, RouterError> {
    let words = leading_words(sql, 3);
    let first = words.first().map(String::as_str).unwrap_or("");
    let second = words.get(1).map(String::as_str).unwrap_or("");
    let plan = match first {
        "" => Plan::Empty,
        "begin" => Plan::Txn(TxnControl::Begin),
        "start" if second == "transaction" => Plan::Txn(TxnControl::Begin),
        "commit" | "end" if second == "prepared" => return Err(two_phase_unsupported()),
        "commit" | "end" => Plan::Txn(TxnControl::Commit),
        "rollback" | "abort" if second == "prepared" => return Err(two_phase_unsupported()),
        "rollback" | "abort" if second == "to" => Plan::Txn(TxnControl::RollbackTo),
        "rollback" | "abort" => Plan::Txn(TxnControl::Rollback),
        "savepoint" => Plan::Txn(TxnControl::Savepoint),
        "release" => Plan::Txn(TxnControl::Release),
        "prepare" if second == "transaction" => return Err(two_phase_unsupported()),
        "prepare" | "execute" => {
            return Err(RouterError::Unsupported(
                "SQL-level PREPARE/EXECUTE is not supported; use the extended query protocol \
                 (your driver's prepared statements) instead"
                    .to_owned(),
            ));
        }
        "listen" | "unlisten" | "notify" => {
            return Err(RouterError::Unsupported(format!(
                "{} is not supported: Mycelium has no notification channels",
                first.to_uppercase()
            )));
        }
        "set" | "show" | "reset" | "discard" | "deallocate" | "promote" => {
            Plan::Session(parse_session_command(sql)?)
        }
        "copy" => Plan::Copy(parse_copy(sql)?),
        "grant" | "revoke" => Plan::Role(parse_role_command(sql)?),
        "create" | "alter" | "drop" if matches!(second, "user" | "role" | "group") => {
            Plan::Role(parse_role_command(sql)?)
        }
        "alter" if crate::roles::is_owner_change(sql) => Plan::Role(parse_role_command(sql)?),
        "create" | "drop" if second == "sequence" => match plan_sequence_ddl(sql)? {
            Some(command) => Plan::Sequence(command),
            None => forward(sql, true)?,
        },
        "alter" if second == "sequence" => match plan_alter_sequence(sql)? {
            Some(command) => Plan::Sequence(command),
            None => forward(sql, true)?,
        },
        "create" | "drop" | "alter" | "truncate" | "comment" => forward(sql, true)?,
        _ => forward(sql, false)?,
    };
    Ok(plan)
}

fn forward(sql: &str, ddl: bool) -> Result<Plan, RouterError> {
    if mentions_settings(sql)
        && let Some(settings) = plan_settings(sql, ddl)?
    {
        return Ok(Plan::Settings(settings));
    }
    if mentions_advisory(sql)
        && let Some(columns) = plan_advisory(sql)?
    {
        return Ok(Plan::Advisory(columns));
    }
    if !ddl
        && mentions_sequence_functions(sql)
        && let Some(command) = plan_sequence_calls(sql)
    {
        return Ok(Plan::Sequence(command));
    }
    Ok(Plan::Forward { ddl })
}

/// A coarse statement kind for metrics labels: `select`, `insert`, `update`, `delete`, `ddl`,
/// `transaction`, `session`, `copy` or `other`.
pub fn statement_kind(sql: &str) -> &'static str {
    // Runs for every statement (metrics), so it looks at the first word without allocating.
    const KINDS: &[(&str, &str)] = &[
        ("select", "select"),
        ("with", "select"),
        ("values", "select"),
        ("table", "select"),
        ("insert", "insert"),
        ("update", "update"),
        ("delete", "delete"),
        ("create", "ddl"),
        ("drop", "ddl"),
        ("alter", "ddl"),
        ("truncate", "ddl"),
        ("comment", "ddl"),
        ("begin", "transaction"),
        ("start", "transaction"),
        ("commit", "transaction"),
        ("end", "transaction"),
        ("rollback", "transaction"),
        ("abort", "transaction"),
        ("savepoint", "transaction"),
        ("release", "transaction"),
        ("set", "session"),
        ("show", "session"),
        ("reset", "session"),
        ("discard", "session"),
        ("deallocate", "session"),
        ("copy", "copy"),
        ("explain", "explain"),
    ];
    let word = first_word(sql);
    KINDS
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(word))
        .map_or("other", |(_, kind)| kind)
}

/// The first word of a statement, skipping whitespace, comments and opening parentheses.
fn first_word(sql: &str) -> &str {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() || bytes[i] == b'(' {
            i += 1;
        } else if bytes[i..].starts_with(b"--") {
            i = bytes[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(bytes.len(), |p| i + p + 1);
        } else if bytes[i..].starts_with(b"/*") {
            i = bytes[i..]
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(bytes.len(), |p| i + p + 2);
        } else {
            break;
        }
    }
    let end = bytes[i..]
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        .map_or(bytes.len(), |p| i + p);
    &sql[i..end]
}

fn two_phase_unsupported() -> RouterError {
    RouterError::Unsupported(
        "client-driven two-phase commit (PREPARE TRANSACTION / COMMIT PREPARED) is not \
         supported; Mycelium runs two-phase commit across its nodes itself"
            .to_owned(),
    )
}

/// The first `n` words of a statement, lower-cased, skipping whitespace and comments.
pub(crate) fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let bytes = sql.as_bytes();
    let mut words = Vec::with_capacity(n);
    let mut i = 0;
    while i < bytes.len() && words.len() < n {
        let b = bytes[i];
        if b.is_ascii_whitespace() || b == b'(' {
            i += 1;
        } else if bytes[i..].starts_with(b"--") {
            i = bytes[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(bytes.len(), |p| i + p + 1);
        } else if bytes[i..].starts_with(b"/*") {
            i = bytes[i..]
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(bytes.len(), |p| i + p + 2);
        } else if b.is_ascii_alphabetic() || b == b'_' {
            let end = bytes[i..]
                .iter()
                .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                .map_or(bytes.len(), |p| i + p);
            words.push(sql[i..end].to_ascii_lowercase());
            i = end;
        } else {
            break;
        }
    }
    words
}
