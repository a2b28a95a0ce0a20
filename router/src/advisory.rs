//! Advisory locks (`pg_advisory_lock()` and its family): a lock a client takes must exclude
//! the other clients of the cluster, but a node would tie it to the pooled connection the
//! call happened to run on, and a SQLite node has no such functions. A plain `SELECT` of these
//! calls alone is answered by the proxy, which keeps the locks; any other use is refused.

use sqlparser::ast::{CastKind, Expr, Statement, UnaryOperator, Value};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::RouterError;
use crate::calls::select_of_calls;

/// One column of a SELECT of advisory lock calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisoryColumn {
    pub name: String,
    pub call: AdvisoryCall,
}

/// What one call does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdvisoryCall {
    /// `pg_[try_]advisory_[xact_]lock[_shared](key)`.
    Lock {
        key: AdvisoryKey,
        shared: bool,
        /// Held until the transaction ends, not the session.
        xact: bool,
        /// `try`: answers whether it got the lock instead of waiting for it.
        wait: bool,
    },
    /// `pg_advisory_unlock[_shared](key)`: releases one session-level hold.
    Unlock { key: AdvisoryKey, shared: bool },
    /// `pg_advisory_unlock_all()`: every session-level hold of the session.
    UnlockAll,
}

impl AdvisoryCall {
    /// Whether the call answers a boolean (else `void`).
    pub fn answers_bool(&self) -> bool {
        matches!(
            self,
            AdvisoryCall::Lock { wait: false, .. } | AdvisoryCall::Unlock { .. }
        )
    }
}

/// A lock's key as written: one bigint, or two integers (a separate key space, as in
/// Postgres).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdvisoryKey {
    Big(KeyArg),
    Pair(KeyArg, KeyArg),
}

/// A key argument: an integer literal or a bound parameter (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyArg {
    Value(i64),
    Param(usize),
}

/// Whether the text may call an advisory lock function; only such statements are parsed
/// here.
pub(crate) fn mentions_advisory(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    bytes
        .windows(8)
        .any(|w| w.eq_ignore_ascii_case(b"advisory"))
}

/// The columns of a SELECT the proxy answers; `None` when the statement calls no advisory
/// lock function (the word was in a string or a name) or does not parse (the node will say
/// why); refused when it calls one anywhere else.
pub(crate) fn plan_advisory(sql: &str) -> Result<Option<Vec<AdvisoryColumn>>, RouterError> {
    let Ok(mut statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Ok(None);
    };
    let [statement] = statements.as_mut_slice() else {
        return Ok(None);
    };
    let mut called = false;
    let _ = sqlparser::ast::visit_expressions(&*statement, |expr| {
        if let Expr::Function(function) = expr
            && function_kind(&function.name.to_string()).is_some()
        {
            called = true;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    if !called {
        return Ok(None);
    }
    answered(statement).map(Some).ok_or_else(|| {
        RouterError::Unsupported(
            "advisory lock functions are supported only in a SELECT of such calls without \
             FROM (SELECT pg_advisory_lock(42)), with integer literals or parameters as keys: \
             the proxy holds the locks"
                .to_owned(),
        )
    })
}

/// The function a name calls: (kind, shared, xact, wait).
fn function_kind(name: &str) -> Option<(&'static str, bool, bool, bool)> {
    let name = name.to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    Some(match name {
        "pg_advisory_lock" => ("lock", false, false, true),
        "pg_advisory_lock_shared" => ("lock", true, false, true),
        "pg_try_advisory_lock" => ("lock", false, false, false),
        "pg_try_advisory_lock_shared" => ("lock", true, false, false),
        "pg_advisory_xact_lock" => ("lock", false, true, true),
        "pg_advisory_xact_lock_shared" => ("lock", true, true, true),
        "pg_try_advisory_xact_lock" => ("lock", false, true, false),
        "pg_try_advisory_xact_lock_shared" => ("lock", true, true, false),
        "pg_advisory_unlock" => ("unlock", false, false, false),
        "pg_advisory_unlock_shared" => ("unlock", true, false, false),
        "pg_advisory_unlock_all" => ("unlock_all", false, false, false),
        _ => return None,
    })
}

fn answered(statement: &Statement) -> Option<Vec<AdvisoryColumn>> {
    select_of_calls(statement)?
        .into_iter()
        .map(|call| {
            let (kind, shared, xact, wait) = function_kind(&call.name)?;
            let args: Vec<KeyArg> = call
                .args
                .iter()
                .map(|e| key_arg(e))
                .collect::<Option<_>>()?;
            let key = match args.as_slice() {
                [big] => Some(AdvisoryKey::Big(*big)),
                [first, second] => Some(AdvisoryKey::Pair(*first, *second)),
                _ => None,
            };
            let lock = match (kind, key) {
                ("lock", Some(key)) => AdvisoryCall::Lock {
                    key,
                    shared,
                    xact,
                    wait,
                },
                ("unlock", Some(key)) => AdvisoryCall::Unlock { key, shared },
                ("unlock_all", None) if args.is_empty() => AdvisoryCall::UnlockAll,
                _ => return None,
            };
            Some(AdvisoryColumn {
                name: call.alias.unwrap_or(call.name),
                call: lock,
            })
        })
        .collect()
}

/// An integer literal (maybe negative, maybe cast to an integer type) or a parameter.
fn key_arg(expr: &Expr) -> Option<KeyArg> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Number(n, _) => n.parse().ok().map(KeyArg::Value),
            Value::Placeholder(p) => p
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .map(KeyArg::Param),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match key_arg(expr)? {
            KeyArg::Value(v) => v.checked_neg().map(KeyArg::Value),
            KeyArg::Param(_) => None,
        },
        Expr::Nested(inner) => key_arg(inner),
        Expr::Cast {
            kind: CastKind::DoubleColon | CastKind::Cast,
            expr,
            data_type,
            ..
        } if matches!(
            data_type.to_string().to_ascii_lowercase().as_str(),
            "bigint" | "int8" | "integer" | "int" | "int4"
        ) =>
        {
            key_arg(expr)
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn plan(sql: &str) -> Vec<AdvisoryColumn> {
        plan_advisory(sql).unwrap().unwrap()
    }

    #[test]
    fn selects_of_lock_calls_are_answered() {
        assert_eq!(
            plan("SELECT pg_advisory_lock(72707369)"),
            [AdvisoryColumn {
                name: "pg_advisory_lock".into(),
                call: AdvisoryCall::Lock {
                    key: AdvisoryKey::Big(KeyArg::Value(72707369)),
                    shared: false,
                    xact: false,
                    wait: true,
                },
            }]
        );
        assert_eq!(
            plan("select pg_catalog.pg_try_advisory_xact_lock_shared($1::int4, -7) AS got")[0],
            AdvisoryColumn {
                name: "got".into(),
                call: AdvisoryCall::Lock {
                    key: AdvisoryKey::Pair(KeyArg::Param(1), KeyArg::Value(-7)),
                    shared: true,
                    xact: true,
                    wait: false,
                },
            }
        );
        let both = plan("SELECT pg_advisory_unlock(1), pg_advisory_unlock_all()");
        assert_eq!(
            both[0].call,
            AdvisoryCall::Unlock {
                key: AdvisoryKey::Big(KeyArg::Value(1)),
                shared: false
            }
        );
        assert!(both[0].call.answers_bool());
        assert_eq!(both[1].call, AdvisoryCall::UnlockAll);
        assert!(!both[1].call.answers_bool());
    }

    #[test]
    fn other_uses_are_refused_and_mentions_are_not_calls() {
        for sql in [
            "SELECT pg_advisory_lock(id) FROM jobs",
            "SELECT pg_advisory_lock(1) WHERE true",
            "SELECT pg_try_advisory_lock(hashtext('x'))",
            "SELECT 1 + pg_advisory_unlock_all()",
        ] {
            assert!(
                matches!(plan_advisory(sql), Err(RouterError::Unsupported(_))),
                "{sql}"
            );
        }
        assert_eq!(plan_advisory("SELECT 'pg_advisory_lock(1)'").unwrap(), None);
        assert!(mentions_advisory("select PG_ADVISORY_LOCK(1)"));
        assert!(!mentions_advisory("select 1"));
    }
}
