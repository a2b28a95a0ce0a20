//! `SELECT f(...) [AS name], ...` without FROM, every item a plain function call: the form in
//! which the proxy answers calls that belong to the session or the cluster rather than to a
//! node (`current_setting`, advisory locks, sequence functions).

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, SelectItem,
    SetExpr, Statement,
};

/// One item of such a SELECT.
pub(crate) struct Call<'a> {
    /// The function's name as written, lower-cased, without a `pg_catalog.` qualifier.
    pub name: String,
    pub alias: Option<String>,
    pub args: Vec<&'a Expr>,
}

/// The calls of `statement` when it is such a SELECT; `None` otherwise (FROM, WHERE, a CTE,
/// ORDER BY, an item that is not a plain call: no DISTINCT, ORDER BY, FILTER, OVER or named
/// arguments).
pub(crate) fn select_of_calls(statement: &Statement) -> Option<Vec<Call<'_>>> {
    let Statement::Query(query) = statement else {
        return None;
    };
    if query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
        || !query.locks.is_empty()
    {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let bare = select.from.is_empty()
        && select.selection.is_none()
        && select.having.is_none()
        && select.distinct.is_none()
        && select.into.is_none()
        && matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    if !bare {
        return None;
    }
    select
        .projection
        .iter()
        .map(|item| {
            let (expr, alias) = match item {
                SelectItem::UnnamedExpr(expr) => (expr, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
                _ => return None,
            };
            let Expr::Function(function) = expr else {
                return None;
            };
            let name = function.name.to_string().to_ascii_lowercase();
            let name = name.strip_prefix("pg_catalog.").unwrap_or(&name).to_owned();
            Some(Call {
                name,
                alias,
                args: plain_args(function)?,
            })
        })
        .collect()
}

/// The arguments of a plain call (no DISTINCT, ORDER BY, FILTER, OVER, named arguments).
pub(crate) fn plain_args(function: &Function) -> Option<Vec<&Expr>> {
    if function.filter.is_some() || function.over.is_some() || !function.within_group.is_empty() {
        return None;
    }
    match &function.args {
        FunctionArguments::None => Some(Vec::new()),
        FunctionArguments::List(list)
            if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
        {
            list.args
                .iter()
                .map(|arg| match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr),
                    _ => None,
                })
                .collect()
        }
        _ => None,
    }
}
