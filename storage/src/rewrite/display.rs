//! Result columns whose printed form SQLite's values cannot carry, rewritten where they
//! are only printed: the select list of the outermost query and RETURNING.
//!
//! - A `numeric` division, `avg`, `variance` or `stddev` prints with a scale that depends
//!   on each row's operands (`7.0 / 2` is `3.5000000000000000`). Inside expressions they
//!   stay doubles, so that comparisons and sorting work; as a result column they become the
//!   exact decimal text (`__pg_numeric_div(..., 1)`, `__pg_avg_text`, `__pg_var_samp_text`).
//!   ORDER BY and GROUP BY terms that name such a column (by position or alias) are given
//!   back the numeric expression, so that rows still sort as numbers.
//! - `to_regtype` / `to_regclass` / `'name'::regtype` are OIDs for comparisons and names
//!   when printed.

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, ObjectName,
    OrderByKind, Query, SelectItem, SetExpr, Value,
};

use super::OutColumn;
use super::syntax::{function_call, ident_name, value_expr};
use crate::catalog::Ty;
use mycelium_protocol::types::{PgType, SqlValue};

/// A select item rewritten for display, with what ORDER BY / GROUP BY should use instead.
pub(crate) struct Converted {
    item: usize,
    alias: Option<String>,
    original: Expr,
}

fn function_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Function(f) => f.name.0.last().map(|p| p.to_string()),
        _ => None,
    }
}

fn strip_nested(mut e: &mut Expr) -> &mut Expr {
    while let Expr::Nested(inner) = e {
        e = inner.as_mut();
    }
    e
}

fn set_last_arg(e: &mut Expr, value: i64) {
    if let Expr::Function(f) = e
        && let FunctionArguments::List(list) = &mut f.args
        && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(last))) = list.args.last_mut()
    {
        *last = value_expr(SqlValue::Int(value));
    }
}

/// Rewrites one result expression for display; returns whether it changed, and the new
/// column type when that changes too.
fn display(e: &mut Expr) -> Option<Option<Ty>> {
    let e = strip_nested(e);
    match function_name(e)?.as_str() {
        "__pg_numeric_div" => {
            set_last_arg(e, 1);
            Some(None)
        }
        name @ ("__pg_avg" | "__pg_var_samp" | "__pg_var_pop" | "__pg_stddev_samp"
        | "__pg_stddev_pop") => {
            let text = format!("{name}_text");
            if let Expr::Function(f) = e {
                f.name = ObjectName::from(vec![Ident::new(text)]);
            }
            Some(None)
        }
        which @ ("__pg_to_regtype" | "__pg_to_regclass" | "__pg_regtype" | "__pg_regclass") => {
            let name = if which.ends_with("regtype") {
                "__pg_regtype_name"
            } else {
                "__pg_regclass_name"
            };
            let inner = std::mem::replace(e, Expr::Value(Value::Null.into()));
            *e = function_call(name, vec![inner]);
            Some(Some(Ty::of(PgType::Text)))
        }
        _ => None,
    }
}

/// Rewrites select items (or RETURNING items) whose output is `out`.
pub(crate) fn select_items(items: &mut [SelectItem], out: &mut [OutColumn]) -> Vec<Converted> {
    let wildcard = |i: &SelectItem| {
        matches!(
            i,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    };
    let wildcards = items.iter().filter(|i| wildcard(i)).count();
    let first_wildcard = items.iter().position(wildcard).unwrap_or(items.len());
    let count = items.len();
    let mut converted = Vec::new();
    for (n, item) in items.iter_mut().enumerate() {
        // The output column of item `n`: wildcards stand for several.
        let column = if n < first_wildcard {
            Some(n)
        } else if wildcards == 1 {
            (out.len() + n).checked_sub(count)
        } else {
            None
        };
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(ident_name(alias))),
            _ => continue,
        };
        let original = expr.clone();
        let Some(new_type) = display(expr) else {
            continue;
        };
        if let Some(ty) = new_type {
            match column.and_then(|c| out.get_mut(c)) {
                Some(col) => col.ty = ty,
                None => {
                    // Cannot tell which column it is: leave it as it was.
                    *expr = original;
                    continue;
                }
            }
        }
        converted.push(Converted {
            item: n,
            alias,
            original,
        });
    }
    converted
}

/// The converted item an ORDER BY / GROUP BY term names, by position or alias.
fn named<'c>(term: &Expr, converted: &'c [Converted], positions: bool) -> Option<&'c Converted> {
    match term {
        Expr::Value(v) if positions => match &v.value {
            Value::Number(n, _) => {
                let k: usize = n.parse().ok()?;
                converted.iter().find(|c| c.item + 1 == k)
            }
            _ => None,
        },
        Expr::Identifier(ident) => {
            let name = ident_name(ident);
            converted
                .iter()
                .find(|c| c.alias.as_deref() == Some(name.as_str()))
        }
        _ => None,
    }
}

/// The outermost query's result columns, when it is a plain SELECT.
pub(crate) fn query(query: &mut Query, out: &mut [OutColumn]) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let positions = !select.projection.iter().any(|i| {
        matches!(
            i,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    let converted = select_items(&mut select.projection, out);
    if converted.is_empty() {
        return;
    }
    if let Some(order_by) = &mut query.order_by
        && let OrderByKind::Expressions(exprs) = &mut order_by.kind
    {
        for term in exprs {
            if let Some(c) = named(&term.expr, &converted, positions) {
                term.expr = c.original.clone();
            }
        }
    }
    if let GroupByExpr::Expressions(exprs, _) = &mut select.group_by {
        for term in exprs {
            if let Some(c) = named(term, &converted, positions) {
                *term = c.original.clone();
            }
        }
    }
}
