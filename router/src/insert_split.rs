//! Splitting a multi-row INSERT whose rows belong to different nodes into one INSERT per node.
//!
//! Each part keeps everything but the VALUES rows of the original (column list, ON CONFLICT,
//! RETURNING); its `$n` parameters are renumbered from 1 in order of appearance, and
//! [`InsertPart::params`] says which original parameter each new one is.

use sqlparser::ast::{
    Expr, Ident, ObjectName, SetExpr, Statement, TableObject, Value, visit_expressions_mut,
};
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

/// The table of an `INSERT INTO table VALUES ...` that names no columns (`None` for any
/// other statement): the proxy names them with [`name_insert_columns`] so the shard key can
/// be found.
pub fn insert_without_columns(sql: &str) -> Option<String> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let (Some(Statement::Insert(insert)), true) = (statements.pop(), statements.is_empty()) else {
        return None;
    };
    let values = matches!(
        insert.source.as_deref().map(|q| q.body.as_ref()),
        Some(SetExpr::Values(_))
    );
    match &insert.table {
        TableObject::TableName(name) if insert.columns.is_empty() && values => {
            Some(crate::route::table_name(name))
        }
        _ => None,
    }
}

/// `sql`, an INSERT without a column list, with the table's first columns named (as many as
/// the widest VALUES row has; Postgres fills the others with their defaults).
pub fn name_insert_columns(sql: &str, columns: &[String]) -> Result<String, RouterError> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| RouterError::Syntax(e.to_string()))?;
    let (Some(Statement::Insert(mut insert)), true) = (statements.pop(), statements.is_empty())
    else {
        return Err(RouterError::Unsupported(
            "only a single INSERT ... VALUES gets its columns named".to_owned(),
        ));
    };
    let width = match insert.source.as_deref().map(|q| q.body.as_ref()) {
        Some(SetExpr::Values(values)) => values
            .rows
            .iter()
            .map(|row| row.content.len())
            .max()
            .unwrap_or(0),
        _ => 0,
    };
    if width > columns.len() {
        return Err(RouterError::Syntax(
            "INSERT has more expressions than target columns".to_owned(),
        ));
    }
    // Quoted, so names keep their case and reserved words stay names.
    insert.columns = columns[..width]
        .iter()
        .map(|c| ObjectName::from(vec![Ident::with_quote('"', c.as_str())]))
        .collect();
    Ok(Statement::Insert(insert).to_string())
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
