//! Advisory locks (`pg_advisory_lock()` and its family), held by the proxy for its client
//! sessions: a node would tie a lock to whichever pooled connection ran the call, and SQLite
//! nodes have none. Postgres's rules: session-level locks are held until unlocked or the
//! session ends, and taken again by their holder they count up; transaction-level ones go
//! when the transaction ends; shared holds exclude only exclusive ones, and a session's own
//! holds never block it; a bigint key and a pair of integers are separate key spaces.
//!
//! The locks live in one proxy process: its clients exclude each other, clients of two
//! proxies do not.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use mycelium_protocol::types::oid;
use mycelium_protocol::{Column, DataRowsBuilder, Execute, Format};
use mycelium_router::{AdvisoryCall, AdvisoryColumn, AdvisoryKey, KeyArg};

use crate::backend::{self, TxnStatus};
use crate::error::{ProxyError, sql_error};
use crate::execute::Output;
use crate::session::Session;
use crate::settings::{default_param_type, int_param};

/// A lock's key, with its arguments bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LockKey {
    Big(i64),
    Pair(i32, i32),
}

/// One session's holds of one key in one mode.
#[derive(Debug)]
struct Hold {
    session: i32,
    shared: bool,
    /// Transaction-level.
    xact: bool,
    count: u32,
}

/// The proxy's advisory locks.
#[derive(Default)]
pub(crate) struct AdvisoryLocks {
    holds: Mutex<HashMap<LockKey, Vec<Hold>>>,
    released: tokio::sync::Notify,
}

impl AdvisoryLocks {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<LockKey, Vec<Hold>>> {
        self.holds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the lock if no other session's hold conflicts; whether it did.
    fn try_take(&self, session: i32, key: LockKey, shared: bool, xact: bool) -> bool {
        let mut table = self.table();
        let holds = table.entry(key).or_default();
        if holds
            .iter()
            .any(|h| h.session != session && !(shared && h.shared))
        {
            return false;
        }
        match holds
            .iter_mut()
            .find(|h| h.session == session && h.shared == shared && h.xact == xact)
        {
            Some(hold) => hold.count += 1,
            None => holds.push(Hold {
                session,
                shared,
                xact,
                count: 1,
            }),
        }
        true
    }

    /// Takes the lock, waiting for the holds that conflict to go.
    async fn take(&self, session: i32, key: LockKey, shared: bool, xact: bool) {
        loop {
            // Registered before looking, so a release in between is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.try_take(session, key, shared, xact) {
                return;
            }
            released.await;
        }
    }

    /// Releases one session-level hold; whether the session had one.
    fn release(&self, session: i32, key: LockKey, shared: bool) -> bool {
        let mut table = self.table();
        let Some(holds) = table.get_mut(&key) else {
            return false;
        };
        let Some(index) = holds
            .iter()
            .position(|h| h.session == session && h.shared == shared && !h.xact)
        else {
            return false;
        };
        holds[index].count -= 1;
        if holds[index].count == 0 {
            holds.swap_remove(index);
        }
        if holds.is_empty() {
            table.remove(&key);
        }
        drop(table);
        self.released.notify_waiters();
        true
    }

    /// Releases every hold of `session` that `which` picks (by whether it is transaction-level).
    fn release_all(&self, session: i32, which: impl Fn(bool) -> bool) {
        let mut table = self.table();
        let before: usize = table.values().map(Vec::len).sum();
        table.retain(|_, holds| {
            holds.retain(|h| !(h.session == session && which(h.xact)));
            !holds.is_empty()
        });
        let after: usize = table.values().map(Vec::len).sum();
        drop(table);
        if after != before {
            self.released.notify_waiters();
        }
    }

    /// The session ended: everything it held goes.
    pub(crate) fn session_ended(&self, session: i32) {
        self.release_all(session, |_| true);
    }
}

impl Session {
    /// A SELECT of advisory lock calls: evaluated here, in order, answering one row. A lock
    /// that must wait waits until it is free, or the statement is canceled (a cancel request,
    /// `statement_timeout`).
    pub(crate) async fn answer_advisory(
        &mut self,
        columns: &[AdvisoryColumn],
        request: &Execute,
        output: Output,
    ) -> Result<(), ProxyError> {
        let statement = self.start_statement();
        let mut values: Vec<Answer> = Vec::with_capacity(columns.len());
        let mut result = Ok(());
        for column in columns {
            match self.advisory_call(&column.call, request, &statement).await {
                Ok(value) => values.push(value),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.cancel.end_statement();
        // Outside a transaction block the statement is its own transaction.
        if self.status == TxnStatus::Idle {
            self.release_transaction_advisory_locks();
        }
        result?;
        if matches!(output, Output::Simple) {
            backend::row_description(&mut self.conn.out, &answer_columns(columns), |_| {
                Format::Text
            });
        }
        // In each column's format: a boolean in binary is one byte; void is empty either way.
        let mut row = DataRowsBuilder::with_capacity(16);
        row.begin_row();
        for (i, value) in values.iter().enumerate() {
            match (value, request.result_format(i)) {
                (Answer::Null, _) => row.push_null(),
                (Answer::Void, _) => row.push_value(b""),
                (Answer::Bool(b), Format::Binary) => row.push_value(&[u8::from(*b)]),
                (Answer::Bool(b), Format::Text) => row.push_value(if *b { b"t" } else { b"f" }),
            }
        }
        row.end_row();
        self.conn.out.extend_from_slice(row.take().bytes());
        backend::command_complete(&mut self.conn.out, "SELECT 1");
        Ok(())
    }

    async fn advisory_call(
        &mut self,
        call: &AdvisoryCall,
        request: &Execute,
        statement: &crate::cancel::Statement,
    ) -> Result<Answer, ProxyError> {
        let locks = self.proxy.advisory.clone();
        let session = self.pid;
        match call {
            AdvisoryCall::Lock {
                key,
                shared,
                xact,
                wait,
            } => {
                // Strict, as in Postgres: a NULL key answers NULL and takes nothing.
                let Some(key) = bind_key(key, request)? else {
                    return Ok(Answer::Null);
                };
                if !*wait {
                    return Ok(Answer::Bool(locks.try_take(session, key, *shared, *xact)));
                }
                tokio::select! {
                    () = locks.take(session, key, *shared, *xact) => Ok(Answer::Void),
                    () = statement.token.cancelled() => Err(statement.cancel_error()),
                }
            }
            AdvisoryCall::Unlock { key, shared } => {
                let Some(key) = bind_key(key, request)? else {
                    return Ok(Answer::Null);
                };
                let released = locks.release(session, key, *shared);
                if !released {
                    let mode = if *shared {
                        "ShareLock"
                    } else {
                        "ExclusiveLock"
                    };
                    backend::notice_response(
                        &mut self.conn.out,
                        &backend::Report {
                            severity: "WARNING",
                            code: "01000",
                            message: &format!("you don't own a lock of type {mode}"),
                            detail: None,
                            hint: None,
                        },
                    );
                }
                Ok(Answer::Bool(released))
            }
            AdvisoryCall::UnlockAll => {
                locks.release_all(session, |xact| !xact);
                Ok(Answer::Void)
            }
        }
    }

    /// The transaction ended: its transaction-level advisory locks go.
    pub(crate) fn release_transaction_advisory_locks(&self) {
        self.proxy.advisory.release_all(self.pid, |xact| xact);
    }
}

/// What one call answers.
enum Answer {
    Null,
    Void,
    Bool(bool),
}

/// The key with its parameters bound; `None` when an argument is NULL.
fn bind_key(key: &AdvisoryKey, request: &Execute) -> Result<Option<LockKey>, ProxyError> {
    Ok(match key {
        AdvisoryKey::Big(arg) => bind(*arg, request)?.map(LockKey::Big),
        AdvisoryKey::Pair(first, second) => match (bind(*first, request)?, bind(*second, request)?)
        {
            (Some(a), Some(b)) => Some(LockKey::Pair(int4(a)?, int4(b)?)),
            _ => None,
        },
    })
}

fn int4(value: i64) -> Result<i32, ProxyError> {
    i32::try_from(value).map_err(|_| sql_error("22003", "integer out of range"))
}

fn bind(arg: KeyArg, request: &Execute) -> Result<Option<i64>, ProxyError> {
    match arg {
        KeyArg::Value(value) => Ok(Some(value)),
        KeyArg::Param(n) => int_param(request, n),
    }
}

/// The columns of an answered SELECT: `void` for the calls that take or release without an
/// answer, boolean for the others.
pub(crate) fn answer_columns(columns: &[AdvisoryColumn]) -> Vec<Column> {
    columns
        .iter()
        .map(|column| {
            let (type_oid, type_size) = if column.call.answers_bool() {
                (oid::BOOL, 1)
            } else {
                (VOID, 4)
            };
            Column {
                name: column.name.clone(),
                table_oid: 0,
                column_id: 0,
                type_oid,
                type_size,
                type_modifier: -1,
            }
        })
        .collect()
}

/// Postgres's `void` type.
const VOID: u32 = 2278;

/// The parameter types of an answered SELECT: the client's, and for those it left to the
/// server, bigint for a single key and integer for a pair.
pub(crate) fn answer_param_types(columns: &[AdvisoryColumn], given: &[u32]) -> Vec<u32> {
    let mut types = given.to_vec();
    for column in columns {
        let args: Vec<(KeyArg, u32)> = match &column.call {
            AdvisoryCall::Lock { key, .. } | AdvisoryCall::Unlock { key, .. } => match key {
                AdvisoryKey::Big(arg) => vec![(*arg, oid::INT8)],
                AdvisoryKey::Pair(a, b) => vec![(*a, oid::INT4), (*b, oid::INT4)],
            },
            AdvisoryCall::UnlockAll => Vec::new(),
        };
        for (arg, ty) in args {
            if let KeyArg::Param(n) = arg {
                default_param_type(&mut types, n, ty);
            }
        }
    }
    types
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_conflict_as_in_postgres() {
        let locks = AdvisoryLocks::default();
        let key = LockKey::Big(7);
        assert!(locks.try_take(1, key, false, false));
        // Its holder takes it again; nobody else, in either mode.
        assert!(locks.try_take(1, key, false, false));
        assert!(!locks.try_take(2, key, false, false));
        assert!(!locks.try_take(2, key, true, false));
        // The pair (0, 7) is another key.
        assert!(locks.try_take(2, LockKey::Pair(0, 7), false, false));
        assert!(locks.release(1, key, false));
        assert!(!locks.try_take(2, key, true, false));
        assert!(locks.release(1, key, false));
        assert!(!locks.release(1, key, false));
        // Shared holds share; an exclusive one waits for them all.
        assert!(locks.try_take(2, key, true, false));
        assert!(locks.try_take(3, key, true, true));
        assert!(!locks.try_take(1, key, false, false));
        locks.release_all(3, |xact| xact);
        locks.session_ended(2);
        assert!(locks.try_take(1, key, false, false));
    }
}
