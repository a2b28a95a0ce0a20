//! Splitting a multi-row INSERT whose rows belong to different nodes into one INSERT per node.
//!
//! Each part keeps everything but the VALUES rows of the original (column list, ON CONFLICT,
//! RETURNING); its `$n` parameters are renumbered from 1 in order of appearance, and
//! [`InsertPart::params`] says which original parameter each new one is.

use sqlparser::ast::{Expr, SetExpr, Statement, Value, visit_expressions_mut};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::RouterError;

/// One node's share of an INSERT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertPart {
    pub sql: String,
    /// For each parameter of `sql` (`$1`, `$2`, ...), the 0-based index of the original
    /// statement's parameter it stands for.
    pub params: Vec<usize>,
}

/// The INSERT `sql` restricted to the VALUES rows of each group (row indices, in order).
pub fn split_insert(sql: &str, groups: &[Vec<usize>]) -> Result<Vec<InsertPart>, RouterError> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| RouterError::Syntax(e.to_string()))?;
    let (Some(Statement::Insert(insert)), true) = (statements.pop(), statements.is_empty()) else {
        return Err(RouterError::Unsupported(
            "only a single INSERT ... VALUES can be split by shard".to_owned(),
        ));
    };
    let rows = match insert.source.as_deref().map(|q| q.body.as_ref()) {
        Some(SetExpr::Values(values)) => values.rows.clone(),
        _ => {
            return Err(RouterError::Unsupported(
                "only INSERT ... VALUES can be split by shard".to_owned(),
            ));
        }
    };
    let mut parts = Vec::with_capacity(groups.len());
    for group in groups {
        let mut part = insert.clone();
        let Some(source) = part.source.as_mut() else {
            continue;
        };
        let SetExpr::Values(values) = source.body.as_mut() else {
            continue;
        };
        values.rows = group
            .iter()
            .map(|&i| {
                rows.get(i).cloned().ok_or_else(|| {
                    RouterError::Unsupported(format!("INSERT has no row number {i}"))
                })
            })
            .collect::<Result<_, _>>()?;
        let mut statement = Statement::Insert(part);
        let mut params: Vec<usize> = Vec::new();
        let _ = visit_expressions_mut(&mut statement, |expr| {
            if let Expr::Value(value) = expr
                && let Value::Placeholder(p) = &mut value.value
                && let Some(original) = p
                    .strip_prefix('$')
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| n.checked_sub(1))
            {
                let position = match params.iter().position(|&o| o == original) {
                    Some(position) => position,
                    None => {
                        params.push(original);
                        params.len() - 1
                    }
                };
                *p = format!("${}", position + 1);
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        parts.push(InsertPart {
            sql: statement.to_string(),
            params,
        });
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_go_to_their_part_with_parameters_renumbered() {
        let parts = split_insert(
            "INSERT INTO t (id, v) VALUES ($1, $2), (7, 'x'), ($3, $4) \
             ON CONFLICT (id) DO UPDATE SET v = $5 RETURNING id",
            &[vec![0, 1], vec![2]],
        )
        .expect("split");
        assert_eq!(
            parts[0],
            InsertPart {
                sql: "INSERT INTO t (id, v) VALUES ($1, $2), (7, 'x') ON CONFLICT(id) DO UPDATE \
                      SET v = $3 RETURNING id"
                    .to_owned(),
                params: vec![0, 1, 4],
            }
        );
        assert_eq!(
            parts[1],
            InsertPart {
                sql: "INSERT INTO t (id, v) VALUES ($1, $2) ON CONFLICT(id) DO UPDATE SET v = $3 \
                      RETURNING id"
                    .to_owned(),
                params: vec![2, 3, 4],
            }
        );
    }

    #[test]
    fn a_parameter_used_twice_is_passed_once() {
        let parts = split_insert(
            "INSERT INTO t (id, a, b) VALUES ($2, $1, $1), ($3, $1, 0)",
            &[vec![1], vec![0]],
        )
        .expect("split");
        assert_eq!(parts[0].sql, "INSERT INTO t (id, a, b) VALUES ($1, $2, 0)");
        assert_eq!(parts[0].params, vec![2, 0]);
        assert_eq!(parts[1].sql, "INSERT INTO t (id, a, b) VALUES ($1, $2, $2)");
        assert_eq!(parts[1].params, vec![1, 0]);
    }

    #[test]
    fn anything_but_insert_values_is_refused() {
        for sql in [
            "INSERT INTO t SELECT * FROM u",
            "UPDATE t SET a = 1",
            "SELECT 1; SELECT 2",
        ] {
            assert!(split_insert(sql, &[vec![0]]).is_err(), "{sql}");
        }
    }
}
