//! `SELECT DISTINCT ON (e, ...)`, which SQLite lacks, as the first row of each group by a window:
//!
//! ```sql
//! SELECT a, b FROM (
//!   SELECT a AS "a", b AS "b", <order terms> AS __pg_o1, ...,
//!          row_number() OVER (PARTITION BY e, ... ORDER BY <order terms>) AS __pg_rn
//!   FROM ... WHERE ... ) AS __pg_distinct
//! WHERE __pg_rn = 1 ORDER BY __pg_o1, ...
//! ```
//!
//! The query is rewritten before it is typed, so the rest of the translation sees an ordinary
//! select over a derived table. Positions and output names in DISTINCT ON and ORDER BY mean the
//! select list's expressions, as in Postgres, and the DISTINCT ON expressions must lead the
//! ORDER BY (42P10 otherwise).

use std::ops::ControlFlow;

use mycelium_protocol::DbError;
use sqlparser::ast::{
    Distinct, Expr, Ident, OrderByExpr, OrderByKind, Query, SelectItem, SetExpr, Statement, Value,
    VisitMut, VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::syntax::{column_name, ident_name, table_name};
use crate::catalog::Schema;
use crate::errors::unsupported;

/// Rewrites every select with DISTINCT ON in `query`, subqueries included.
pub(super) fn rewrite(query: &mut Query, schema: &Schema) -> Result<(), DbError> {
    struct Rewriter<'s>(&'s Schema);
    impl VisitorMut for Rewriter<'_> {
        type Break = DbError;
        fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<DbError> {
            match one(query, self.0) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => ControlFlow::Break(e),
            }
        }
    }
    match query.visit(&mut Rewriter(schema)) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn not_in_order_by() -> DbError {
    DbError::new(
        "42P10",
        "SELECT DISTINCT ON expressions must match initial ORDER BY expressions",
    )
}

fn one(query: &mut Query, schema: &Schema) -> Result<(), DbError> {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Ok(());
    };
    let Some(Distinct::On(on)) = &select.distinct else {
        return Ok(());
    };
    let on = on.clone();
    let mut items: Vec<(String, Expr, bool)> = Vec::new();
    for item in &select.projection {
        items.push(match item {
            SelectItem::UnnamedExpr(e) => (column_name(e), e.clone(), false),
            SelectItem::ExprWithAlias { expr, alias } => (ident_name(alias), expr.clone(), true),
            _ => {
                for column in star_columns(select, item, schema)? {
                    let expr = Expr::Identifier(Ident::with_quote('"', &column));
                    items.push((column, expr, false));
                }
                continue;
            }
        });
    }
    if let Some((name, ..)) = items
        .iter()
        .enumerate()
        .find_map(|(i, a)| items[..i].iter().find(|b| b.0 == a.0))
    {
        return Err(unsupported(format!(
            "SELECT DISTINCT ON with two output columns named \"{name}\""
        ))
        .with_hint("Give them aliases of their own."));
    }
    // A position or an output name means that select list expression.
    let resolve = |e: &Expr| -> Result<Expr, DbError> {
        match e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| items.get(n.checked_sub(1)?))
                    .map(|(_, expr, _)| expr.clone())
                    .ok_or_else(|| {
                        DbError::new("42P10", format!("position {n} is not in select list"))
                    }),
                _ => Ok(e.clone()),
            },
            Expr::Identifier(ident) => Ok(items
                .iter()
                .find(|(name, _, aliased)| *aliased && *name == ident_name(ident))
                .map_or_else(|| e.clone(), |(_, expr, _)| expr.clone())),
            _ => Ok(e.clone()),
        }
    };
    let on: Vec<Expr> = on.iter().map(resolve).collect::<Result<_, _>>()?;
    let order: Vec<OrderByExpr> = match query.order_by.as_ref().map(|o| &o.kind) {
        Some(OrderByKind::Expressions(terms)) => terms
            .iter()
            .map(|term| {
                let mut term = term.clone();
                term.expr = resolve(&term.expr)?;
                // Postgres's default: NULLs last ascending, first descending.
                if term.options.nulls_first.is_none() {
                    term.options.nulls_first = Some(matches!(
                        term.options.sort,
                        Some(sqlparser::ast::OrderBySort::Desc)
                    ));
                }
                Ok(term)
            })
            .collect::<Result<_, DbError>>()?,
        Some(OrderByKind::All(_)) => return Err(unsupported("ORDER BY ALL")),
        None => Vec::new(),
    };
    if !order.is_empty() {
        if order.len() < on.len() {
            return Err(not_in_order_by());
        }
        let mut leading: Vec<String> = order[..on.len()]
            .iter()
            .map(|t| t.expr.to_string())
            .collect();
        let mut wanted: Vec<String> = on.iter().map(ToString::to_string).collect();
        leading.sort();
        wanted.sort();
        if leading != wanted {
            return Err(not_in_order_by());
        }
    }

    let mut inner = select.as_ref().clone();
    inner.distinct = None;
    inner.projection = items
        .iter()
        .map(|(name, expr, _)| SelectItem::ExprWithAlias {
            expr: expr.clone(),
            alias: Ident::with_quote('"', name),
        })
        .collect();
    let window_order = if order.is_empty() {
        String::new()
    } else {
        let terms: Vec<String> = order.iter().map(ToString::to_string).collect();
        format!(" ORDER BY {}", terms.join(", "))
    };
    let partition: Vec<String> = on.iter().map(ToString::to_string).collect();
    let window = format!(
        "row_number() OVER (PARTITION BY {}{window_order})",
        partition.join(", ")
    );
    let window = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&window)
        .and_then(|mut parser| parser.parse_expr())
        .map_err(|e| DbError::new("XX000", format!("SELECT DISTINCT ON: {e}")))?;
    for (i, term) in order.iter().enumerate() {
        inner.projection.push(SelectItem::ExprWithAlias {
            expr: term.expr.clone(),
            alias: Ident::new(format!("__pg_o{}", i + 1)),
        });
    }
    inner.projection.push(SelectItem::ExprWithAlias {
        expr: window,
        alias: Ident::new("__pg_rn"),
    });
    let outer_items: Vec<String> = items
        .iter()
        .map(|(name, ..)| Ident::with_quote('"', name).to_string())
        .collect();
    let outer_order: Vec<String> = order
        .iter()
        .enumerate()
        .map(|(i, term)| {
            let mut term = term.clone();
            term.expr = Expr::Identifier(Ident::new(format!("__pg_o{}", i + 1)));
            term.to_string()
        })
        .collect();
    let order_clause = if outer_order.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", outer_order.join(", "))
    };
    let sql = format!(
        "SELECT {} FROM ({inner}) AS __pg_distinct WHERE __pg_rn = 1{order_clause}",
        outer_items.join(", ")
    );
    let mut parsed = Parser::parse_sql(&PostgreSqlDialect {}, &sql)
        .map_err(|e| DbError::new("XX000", format!("SELECT DISTINCT ON: {e}")))?;
    let Some(Statement::Query(rewritten)) = parsed.pop() else {
        return Err(DbError::new("XX000", "SELECT DISTINCT ON: not a query"));
    };
    query.body = rewritten.body;
    query.order_by = rewritten.order_by;
    Ok(())
}

/// The columns `*` (or `t.*`) stands for in a select over one table; others are refused.
fn star_columns(
    select: &sqlparser::ast::Select,
    item: &SelectItem,
    schema: &Schema,
) -> Result<Vec<String>, DbError> {
    let refused = || {
        unsupported("SELECT DISTINCT ON with * over several relations")
            .with_hint("Name the columns in the select list.")
    };
    let [from] = select.from.as_slice() else {
        return Err(refused());
    };
    let sqlparser::ast::TableFactor::Table { name, alias, .. } = &from.relation else {
        return Err(refused());
    };
    if !from.joins.is_empty() {
        return Err(refused());
    }
    let table = table_name(name)?;
    if let SelectItem::QualifiedWildcard(kind, _) = item {
        let qualifier = match kind {
            sqlparser::ast::SelectItemQualifiedWildcardKind::ObjectName(name) => table_name(name)?,
            sqlparser::ast::SelectItemQualifiedWildcardKind::Expr(_) => return Err(refused()),
        };
        let own = alias
            .as_ref()
            .map_or_else(|| table.clone(), |a| ident_name(&a.name));
        if qualifier != own {
            return Err(refused());
        }
    }
    let info = schema
        .table(&table)
        .ok_or_else(|| DbError::new("42P01", format!("relation \"{table}\" does not exist")))?;
    Ok(info.columns.iter().map(|c| c.name.clone()).collect())
}
