//! How the results of a read that spans several nodes are put back together.
//!
//! Supported: concatenation; `ORDER BY` output columns (a k-way merge of the nodes' sorted
//! streams); `LIMIT`/`OFFSET` (each node is asked for `LIMIT limit + offset`, the proxy skips and
//! cuts); and queries whose every output column is a `GROUP BY` expression, an aggregate —
//! `count` (`count(DISTINCT x)` too), `sum`, `min`, `max`, `avg`, `bool_and`/`bool_or` or
//! `bit_and`/`bit_or`/`bit_xor` — or an expression over such aggregates and number constants:
//! `+ - * / %`, unary minus, casts to an integer, numeric, floating-point or text type,
//! `COALESCE` and `NULLIF`, nested in any way (`sum(a) / count(*)`,
//! `COALESCE(sum(a), 0)::numeric / NULLIF(count(*), 0)`); with `HAVING` over the same. Each node
//! computes the bare aggregates (`avg` as `sum` and `count`): an expression's column carries its
//! first aggregate, its other aggregates travel as hidden columns. The proxy merges them and
//! evaluates the expression, a [`Finish`] tree, over the merged values with Postgres's types and
//! errors. Anything else across nodes (a plain column or another function around an aggregate,
//! `round(avg(x))`, `sum(a) + x`) is refused with 0A000 and a hint, never answered wrongly.

use sqlparser::ast::{
    CastKind, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    LimitClause, ObjectNamePart, OrderByKind, OrderBySort, Query, SelectItem, SetExpr, Statement,
    Value,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::RouterError;

mod finish;
mod having;

use finish::unwrap_aggregates;
pub use finish::{ArithOp, Constant, Finish};
use having::having_condition;
pub use having::{CompareOp, Having, HavingOperand};

/// Which output column a sort key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortColumn {
    /// 0-based position in the output.
    Index(usize),
    /// An output column name, resolved when the column list is known (for `SELECT *`).
    Name(String),
    /// The n-th hidden column the node query appends for a sort key the client did not select.
    Hidden(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub column: SortColumn,
    pub descending: bool,
    pub nulls_first: bool,
}

/// How one output column of an aggregate query is combined across nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// A GROUP BY column: rows of the same group from every node merge.
    Group,
    /// Sum of the nodes' counts.
    Count,
    Sum,
    Min,
    Max,
    /// Sum of the nodes' sums divided by the sum of their counts; the node query carries the
    /// sum in this column and the count in an extra column at the end.
    Avg {
        count_column: usize,
    },
    /// `count(DISTINCT x)`: the node query groups by `x` too and carries its values in this
    /// column; the proxy counts the distinct non-null ones of each group.
    CountDistinct,
    /// `bit_and`, `bit_or`, `bit_xor` of the nodes' results (NULL ones skipped).
    BitAnd,
    BitOr,
    BitXor,
}

/// How the nodes' values of an aggregate named `name` combine into the cluster's answer,
/// when that is exact: `bool_and` is the least of the nodes' answers, `bool_or` the greatest.
fn merge_of(name: &str) -> Option<Combine> {
    Some(match name {
        "count" => Combine::Count,
        "sum" => Combine::Sum,
        "min" | "bool_and" | "every" => Combine::Min,
        "max" | "bool_or" => Combine::Max,
        "bit_and" => Combine::BitAnd,
        "bit_or" => Combine::BitOr,
        "bit_xor" => Combine::BitXor,
        _ => return None,
    })
}

/// What the proxy does with the streams of a read that spans nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeSpec {
    /// The statement each node runs, when it differs from the client's.
    pub node_sql: Option<String>,
    pub order_by: Vec<SortKey>,
    pub limit: Option<u64>,
    pub offset: u64,
    /// One entry per output column when the query is an aggregate.
    pub aggregates: Option<Vec<Combine>>,
    /// Columns the node query appends after the client's (sort keys the client did not
    /// select, the counts of `avg`); the proxy drops them.
    pub hidden_columns: usize,
    /// `SELECT DISTINCT`: the proxy drops rows another node already returned.
    pub distinct: bool,
    /// HAVING of a grouped query, applied by the proxy to the merged groups.
    pub having: Option<Having>,
    /// Per visible output column of an aggregate query, the expression the proxy computes
    /// after HAVING and before ORDER BY, over the merged values of the row (all of them as
    /// merged, before any column's expression); `None` for a column that is its merged value.
    /// Empty when no column has an expression.
    pub finish: Vec<Option<Finish>>,
}

/// Plans the merge of a SELECT that runs on several nodes.
pub fn merge_spec(sql: &str) -> Result<MergeSpec, RouterError> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| RouterError::Syntax(e.to_string()))?;
    let Some(Statement::Query(mut query)) = statements.pop() else {
        return Err(RouterError::Unsupported(
            "only SELECT can read from several nodes".to_owned(),
        ));
    };
    let windowed = sqlparser::ast::visit_expressions(&query, |e| match e {
        Expr::Function(f) if f.over.is_some() => std::ops::ControlFlow::Break(()),
        _ => std::ops::ControlFlow::Continue(()),
    });
    if windowed.is_break() {
        return Err(refuse("a window function"));
    }
    let (limit, offset) = limits(&query)?;
    let (order_by, hidden_sort) = order_keys(&query)?;
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Err(refuse("UNION/INTERSECT/EXCEPT"));
    };
    let distinct = match &select.distinct {
        None => false,
        Some(sqlparser::ast::Distinct::Distinct) => true,
        Some(_) => return Err(refuse("DISTINCT ON")),
    };
    let having = select.having.take();
    if having.is_some() && select.group_by == GroupByExpr::Expressions(Vec::new(), Vec::new()) {
        return Err(refuse("HAVING without GROUP BY"));
    }
    // The nodes compute the bare aggregates; the proxy computes the expressions around them
    // after merging.
    let (finish, leaves) = unwrap_aggregates(&mut select.projection);
    let grouping_sets = matches!(&select.group_by, GroupByExpr::Expressions(exprs, _)
        if exprs.iter().any(|e| matches!(e, Expr::Rollup(_) | Expr::Cube(_) | Expr::GroupingSets(_))));
    if grouping_sets {
        return Err(refuse("GROUPING SETS, CUBE or ROLLUP"));
    }
    let group_by: Vec<Expr> = match &select.group_by {
        GroupByExpr::Expressions(exprs, _) => exprs
            .iter()
            .map(|e| group_expression(e, &select.projection))
            .collect(),
        GroupByExpr::All(_) => return Err(refuse("GROUP BY ALL")),
    };
    let group_exprs: Vec<String> = group_by.iter().map(ToString::to_string).collect();
    // Groups are merged by their key columns: a GROUP BY expression the query does not
    // select travels as a hidden column, or rows of different groups would merge.
    let unselected_groups: Vec<Expr> = group_by
        .into_iter()
        .filter(|g| {
            !select
                .projection
                .iter()
                .filter_map(item_expr)
                .any(|e| e.to_string() == g.to_string())
        })
        .collect();
    let grouped = !group_exprs.is_empty();
    // The other aggregates the expressions use travel as hidden columns right after the
    // client's, merged as any aggregate column is.
    let leaf_columns = leaves.len();
    select
        .projection
        .extend(leaves.into_iter().map(SelectItem::UnnamedExpr));
    let aggregates = aggregate_columns(&select.projection, &group_exprs)?;
    if grouped && aggregates.is_none() {
        return Err(RouterError::Unsupported(
            "GROUP BY over rows on several nodes needs every output column to be a GROUP BY \
             expression or count/sum/min/max/avg/bool_and/bool_or/bit_and/bit_or/bit_xor"
                .to_owned(),
        ));
    }
    if (grouped || aggregates.is_some()) && !hidden_sort.is_empty() {
        return Err(RouterError::Unsupported(
            "ORDER BY of an aggregate query over several nodes must name output columns".to_owned(),
        ));
    }
    let mut spec = MergeSpec {
        node_sql: None,
        order_by,
        limit,
        offset,
        aggregates: None,
        hidden_columns: 0,
        distinct,
        having: None,
        finish: Vec::new(),
    };
    if let Some(mut combines) = aggregates {
        // Nodes return one partial row per group; the proxy merges the groups, then sorts
        // and cuts, so the nodes get neither ORDER BY nor LIMIT.
        let visible = combines.len();
        let original: Vec<SelectItem> = select.projection.clone();
        let mut extra = Vec::new();
        // Each node groups by the arguments of count(DISTINCT ...) too and returns their
        // values in place of the counts: the proxy counts them across nodes.
        for (i, item) in select.projection.iter_mut().enumerate() {
            if combines[i] != Combine::CountDistinct {
                continue;
            }
            let Some(arg) = item_expr(item).and_then(distinct_argument).cloned() else {
                return Err(refuse("this count(DISTINCT ...)"));
            };
            // Named as Postgres names the count (`count`) unless the client named it.
            let alias = match item {
                SelectItem::ExprWithAlias { alias, .. } => alias.clone(),
                _ => sqlparser::ast::Ident::new("count"),
            };
            *item = SelectItem::ExprWithAlias {
                expr: arg.clone(),
                alias,
            };
            match &mut select.group_by {
                GroupByExpr::Expressions(exprs, _) => exprs.push(arg),
                GroupByExpr::All(_) => return Err(refuse("GROUP BY ALL")),
            }
        }
        for (i, item) in select.projection.iter_mut().enumerate() {
            if let Combine::Avg { .. } = combines[i] {
                let (sum, count) = avg_partials(item)?;
                *item = sum;
                combines[i] = Combine::Avg {
                    count_column: visible + extra.len(),
                };
                extra.push(count);
            }
        }
        // The counts of `avg` are summed like counts.
        combines.extend(std::iter::repeat_n(Combine::Count, extra.len()));
        if let Some(having) = having {
            let mut hidden = Vec::new();
            let first_hidden = visible + extra.len();
            spec.having = Some(having_condition(
                &having,
                &original,
                first_hidden,
                &mut hidden,
            )?);
            for (expr, combine) in hidden {
                combines.push(combine);
                extra.push(SelectItem::UnnamedExpr(expr));
            }
        }
        for group in unselected_groups {
            combines.push(Combine::Group);
            extra.push(SelectItem::UnnamedExpr(group));
        }
        spec.hidden_columns = leaf_columns + extra.len();
        select.projection.extend(extra);
        query.order_by = None;
        query.limit_clause = None;
        spec.node_sql = Some(query.to_string());
        spec.aggregates = Some(combines);
        if finish.iter().any(Option::is_some) {
            spec.finish = finish;
        }
        return Ok(spec);
    }
    if contains_aggregate(&select.projection) {
        return Err(refuse(
            "an aggregate inside an expression other than + - * / %, unary minus, casts to \
             integer, numeric, floating-point or text types, COALESCE and NULLIF over \
             aggregates and number constants (such as round(avg(x)) or sum(a) + x), or mixed \
             with plain columns,",
        ));
    }
    if !hidden_sort.is_empty() {
        spec.hidden_columns = hidden_sort.len();
        select
            .projection
            .extend(hidden_sort.into_iter().map(SelectItem::UnnamedExpr));
    }
    if offset > 0 || limit.is_some() || spec.hidden_columns > 0 {
        // Every node returns its first limit + offset rows; the proxy skips and cuts.
        let pushed = limit.map(|l| l + offset);
        if offset > 0 || limit.is_some() {
            query.limit_clause = pushed.map(|l| LimitClause::LimitOffset {
                limit: Some(Expr::value(Value::Number(l.to_string(), false))),
                offset: None,
                limit_by: Vec::new(),
            });
        }
        spec.node_sql = Some(query.to_string());
    }
    Ok(spec)
}

fn refuse(what: &str) -> RouterError {
    RouterError::Unsupported(format!(
        "{what} over rows on several nodes is not supported yet; filter on the shard key so the \
         query runs on one node, or aggregate in the client"
    ))
}

fn limits(query: &Query) -> Result<(Option<u64>, u64), RouterError> {
    let constant = |expr: &Expr| -> Result<u64, RouterError> {
        match expr {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n
                    .parse()
                    .map_err(|_| RouterError::Syntax(format!("LIMIT/OFFSET {n} is not a count"))),
                _ => Err(refuse("LIMIT/OFFSET with a parameter")),
            },
            _ => Err(refuse("LIMIT/OFFSET with an expression")),
        }
    };
    match &query.limit_clause {
        None => Ok((None, 0)),
        Some(LimitClause::LimitOffset { limit, offset, .. }) => {
            let limit = match limit {
                Some(Expr::Value(v)) if matches!(v.value, Value::Null) => None,
                Some(expr) => Some(constant(expr)?),
                None => None,
            };
            let offset = match offset {
                Some(offset) => constant(&offset.value)?,
                None => 0,
            };
            Ok((limit, offset))
        }
        Some(_) => Err(refuse("this LIMIT form")),
    }
}

/// The sort keys, and the expressions the node query must add to its output to sort by them.
fn order_keys(query: &Query) -> Result<(Vec<SortKey>, Vec<Expr>), RouterError> {
    let Some(order_by) = &query.order_by else {
        return Ok((Vec::new(), Vec::new()));
    };
    let OrderByKind::Expressions(exprs) = &order_by.kind else {
        return Err(refuse("ORDER BY ALL"));
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(refuse("ORDER BY of a set operation"));
    };
    let mut hidden = Vec::new();
    let keys = exprs
        .iter()
        .map(|item| {
            let descending = matches!(item.options.sort, Some(OrderBySort::Desc));
            let column = match sort_column(&item.expr, &select.projection)? {
                Some(column) => column,
                None => {
                    hidden.push(item.expr.clone());
                    SortColumn::Hidden(hidden.len() - 1)
                }
            };
            Ok(SortKey {
                column,
                descending,
                // Postgres: NULLS LAST for ascending, NULLS FIRST for descending.
                nulls_first: item.options.nulls_first.unwrap_or(descending),
            })
        })
        .collect::<Result<Vec<_>, RouterError>>()?;
    Ok((keys, hidden))
}

/// The output column a sort key names, or `None` when the client did not select it.
fn sort_column(expr: &Expr, projection: &[SelectItem]) -> Result<Option<SortColumn>, RouterError> {
    if let Expr::Value(v) = expr
        && let Value::Number(n, _) = &v.value
    {
        let position: usize = n
            .parse()
            .map_err(|_| RouterError::Syntax(format!("ORDER BY position {n}")))?;
        return match position.checked_sub(1) {
            Some(index) if index < projection.len() => Ok(Some(SortColumn::Index(index))),
            _ => Err(RouterError::Syntax(format!(
                "ORDER BY position {n} is not in select list"
            ))),
        };
    }
    let text = expr.to_string();
    for (index, item) in projection.iter().enumerate() {
        match item {
            SelectItem::ExprWithAlias {
                alias,
                expr: aliased,
            } if alias.value.eq_ignore_ascii_case(&text) || aliased.to_string() == text => {
                return Ok(Some(SortColumn::Index(index)));
            }
            SelectItem::UnnamedExpr(projected) if projected.to_string() == text => {
                return Ok(Some(SortColumn::Index(index)));
            }
            _ => {}
        }
    }
    let wildcard = projection.iter().any(|p| {
        matches!(
            p,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    let name = match expr {
        Expr::Identifier(ident) => Some(ident.value.to_ascii_lowercase()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|p| p.value.to_ascii_lowercase()),
        _ => None,
    };
    match (wildcard, name) {
        (true, Some(name)) => Ok(Some(SortColumn::Name(name))),
        _ => Ok(None),
    }
}

/// The called function's name without its schema, as Postgres resolves it: lowercased unless
/// quoted (`pg_catalog.sum` is `sum`).
fn function_name(expr: &Expr) -> Option<String> {
    let Expr::Function(f) = expr else {
        return None;
    };
    Some(match f.name.0.last()? {
        ObjectNamePart::Identifier(ident) if ident.quote_style.is_some() => ident.value.clone(),
        ObjectNamePart::Identifier(ident) => ident.value.to_ascii_lowercase(),
        other => other.to_string().to_ascii_lowercase(),
    })
}

fn item_expr(item: &SelectItem) -> Option<&Expr> {
    match item {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => Some(expr),
        _ => None,
    }
}

/// A GROUP BY item as the expression it groups by: `GROUP BY 2` and `GROUP BY alias` name an
/// output column.
fn group_expression(expr: &Expr, projection: &[SelectItem]) -> Expr {
    if let Expr::Value(value) = expr
        && let sqlparser::ast::Value::Number(n, _) = &value.value
        && let Ok(position) = n.parse::<usize>()
        && let Some(selected) = position
            .checked_sub(1)
            .and_then(|i| projection.get(i))
            .and_then(item_expr)
    {
        return selected.clone();
    }
    if let Expr::Identifier(name) = expr
        && let Some(SelectItem::ExprWithAlias { expr: selected, .. }) =
            projection.iter().find(|item| {
                matches!(item, SelectItem::ExprWithAlias { alias, .. }
                    if alias.value.eq_ignore_ascii_case(&name.value))
            })
    {
        return selected.clone();
    }
    expr.clone()
}

/// `Some` when every output column is a supported aggregate or a GROUP BY expression.
fn aggregate_columns(
    projection: &[SelectItem],
    group_exprs: &[String],
) -> Result<Option<Vec<Combine>>, RouterError> {
    let mut combines = Vec::with_capacity(projection.len());
    for item in projection {
        let Some(expr) = item_expr(item) else {
            return Ok(None);
        };
        if group_exprs.contains(&expr.to_string()) {
            combines.push(Combine::Group);
            continue;
        }
        let Some(name) = function_name(expr) else {
            return Ok(None);
        };
        if distinct_argument(expr).is_some() {
            if name != "count" {
                return Err(refuse("DISTINCT inside an aggregate other than count"));
            }
            combines.push(Combine::CountDistinct);
            continue;
        }
        if let Expr::Function(f) = expr
            && let FunctionArguments::List(list) = &f.args
            && list.duplicate_treatment.is_some()
        {
            return Err(refuse("DISTINCT inside an aggregate"));
        }
        if let Expr::Function(f) = expr
            && !f.within_group.is_empty()
        {
            return Ok(None);
        }
        combines.push(match name.as_str() {
            "avg" => Combine::Avg { count_column: 0 },
            other => match merge_of(other) {
                Some(combine) => combine,
                None => return Ok(None),
            },
        });
    }
    let any_aggregate = combines.iter().any(|c| *c != Combine::Group);
    Ok((any_aggregate || !group_exprs.is_empty()).then_some(combines))
}

/// The argument of `agg(DISTINCT x)` (one argument, no ORDER BY or FILTER).
fn distinct_argument(expr: &Expr) -> Option<&Expr> {
    let Expr::Function(f) = expr else {
        return None;
    };
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if !matches!(
        list.duplicate_treatment,
        Some(sqlparser::ast::DuplicateTreatment::Distinct)
    ) || !list.clauses.is_empty()
        || f.filter.is_some()
        || f.over.is_some()
    {
        return None;
    }
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] => Some(arg),
        _ => None,
    }
}

/// Every aggregate PostgreSQL 15 has built in (`pg_aggregate`), the hypothetical-set ones
/// (`rank() WITHIN GROUP (...)`) included.
const BUILTIN_AGGREGATES: [&str; 48] = [
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
    "corr",
    "count",
    "covar_pop",
    "covar_samp",
    "cume_dist",
    "dense_rank",
    "every",
    "json_agg",
    "json_object_agg",
    "jsonb_agg",
    "jsonb_object_agg",
    "max",
    "min",
    "mode",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "range_agg",
    "range_intersect_agg",
    "rank",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "sum",
    "var_pop",
    "var_samp",
    "variance",
    "xmlagg",
    // SQLite's spellings, which a SQLite node would also run as aggregates.
    "group_concat",
    "total",
    "any_value",
];

/// Whether `expr` calls an aggregate: a built-in one, or any call with `WITHIN GROUP`.
fn is_aggregate_call(expr: &Expr) -> bool {
    if let Expr::Function(f) = expr
        && !f.within_group.is_empty()
    {
        return true;
    }
    function_name(expr).is_some_and(|name| BUILTIN_AGGREGATES.contains(&name.as_str()))
}

/// Whether an aggregate appears anywhere in the output columns, also inside another
/// expression (`sum(x)::bigint`, `max(a) + 1`), which no merge can combine.
fn contains_aggregate(projection: &[SelectItem]) -> bool {
    projection.iter().filter_map(item_expr).any(|expr| {
        sqlparser::ast::visit_expressions(expr, |e| {
            if is_aggregate_call(e) {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .is_break()
    })
}

/// `avg(x) [AS a]` → (`sum(x) AS a`, `count(x)`).
fn avg_partials(item: &SelectItem) -> Result<(SelectItem, SelectItem), RouterError> {
    let Some(Expr::Function(f)) = item_expr(item) else {
        return Err(refuse("this AVG"));
    };
    let FunctionArguments::List(list) = &f.args else {
        return Err(refuse("AVG without arguments"));
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] = list.args.as_slice() else {
        return Err(refuse("AVG of several arguments"));
    };
    let parse = |text: String| {
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql(&text)
            .and_then(|mut p| p.parse_expr())
            .map_err(|e| RouterError::Syntax(e.to_string()))
    };
    let sum = parse(format!("sum({arg})"))?;
    let count = parse(format!("count({arg})"))?;
    let sum_item = match item {
        SelectItem::ExprWithAlias { alias, .. } => SelectItem::ExprWithAlias {
            expr: sum,
            alias: alias.clone(),
        },
        _ => SelectItem::ExprWithAlias {
            expr: sum,
            alias: sqlparser::ast::Ident::new("avg"),
        },
    };
    Ok((sum_item, SelectItem::UnnamedExpr(count)))
}
