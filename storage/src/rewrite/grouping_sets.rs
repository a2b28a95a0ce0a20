//! `GROUP BY ROLLUP (...)`, `CUBE (...)` and `GROUPING SETS (...)`, which SQLite lacks, as one
//! grouped select per grouping set, joined by UNION ALL:
//!
//! ```sql
//! SELECT g, h, sum(n) FROM t GROUP BY ROLLUP (g, h)
//! -- becomes
//! SELECT g, h, sum(n) FROM t GROUP BY g, h
//! UNION ALL SELECT g, CASE WHEN false THEN h END AS h, sum(n) FROM t GROUP BY g
//! UNION ALL SELECT CASE WHEN false THEN g END AS g, CASE WHEN false THEN h END AS h, sum(n)
//!           FROM t
//! ```
//!
//! As in Postgres, a grouping expression outside the current set reads as NULL in the select
//! list and HAVING (outside aggregate arguments, which see the rows), `GROUPING(...)` is the
//! bit mask of the arguments left out, and the empty set makes one row even of no rows. The
//! NULLs keep the expression's type (`CASE WHEN false THEN e END`), so the union's columns have
//! the types Postgres gives them. Plain items, ROLLUP, CUBE and nested GROUPING SETS combine
//! as Postgres combines them (a cross product, in its order); positions and output names
//! mean the select list's expressions. The query is rewritten before it is typed.

use std::ops::ControlFlow;

use mycelium_protocol::DbError;
use sqlparser::ast::{
    CaseWhen, Expr, GroupByExpr, Ident, Query, Select, SelectItem, SetExpr, SetOperator,
    SetQuantifier, Value, VisitMut, VisitorMut,
};

use super::syntax::{column_name, ident_name};
use crate::errors::unsupported;

/// Most grouping sets one GROUP BY may expand to (Postgres's limit).
const MAX_SETS: usize = 4096;

/// Functions whose arguments see the group's rows, not its grouping values.
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "string_agg",
    "array_agg",
    "group_concat",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "bit_xor",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "variance",
    "var_samp",
    "var_pop",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "total",
];

/// Rewrites every select with grouping sets in `query`, subqueries included.
pub(super) fn rewrite(query: &mut Query) -> Result<(), DbError> {
    struct Rewriter;
    impl VisitorMut for Rewriter {
        type Break = DbError;
        fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<DbError> {
            match one(query) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => ControlFlow::Break(e),
            }
        }
    }
    match query.visit(&mut Rewriter) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn is_grouping_construct(expr: &Expr) -> bool {
    match expr {
        Expr::Rollup(_) | Expr::Cube(_) | Expr::GroupingSets(_) => true,
        // `GROUP BY ()`: the empty grouping set.
        Expr::Tuple(elements) => elements.is_empty(),
        _ => false,
    }
}

fn one(query: &mut Query) -> Result<(), DbError> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Ok(());
    };
    let GroupByExpr::Expressions(items, _) = &select.group_by else {
        return Ok(());
    };
    if !items.iter().any(is_grouping_construct) {
        return Ok(());
    }
    let outputs = outputs(select)?;
    let resolve = |e: &Expr| resolve(e, &outputs);
    let mut sets: Vec<Vec<Expr>> = vec![Vec::new()];
    for item in items {
        sets = cross(&sets, &sets_of(item, &resolve)?)?;
    }
    let mut all: Vec<Expr> = Vec::new();
    for expr in sets.iter().flatten() {
        if !all.iter().any(|known| same(known, expr)) {
            all.push(expr.clone());
        }
    }
    let mut branches = sets.iter().map(|set| branch(select, set, &all));
    let Some(first) = branches.next() else {
        return Ok(());
    };
    let mut body = SetExpr::Select(Box::new(first?));
    for next in branches {
        body = SetExpr::SetOperation {
            op: SetOperator::Union,
            set_quantifier: SetQuantifier::All,
            left: Box::new(body),
            right: Box::new(SetExpr::Select(Box::new(next?))),
        };
    }
    *query.body = body;
    Ok(())
}

/// The select list: each item's output name, expression and whether the name is an alias.
fn outputs(select: &Select) -> Result<Vec<(String, Expr, bool)>, DbError> {
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => Ok((column_name(e), e.clone(), false)),
            SelectItem::ExprWithAlias { expr, alias } => {
                Ok((ident_name(alias), expr.clone(), true))
            }
            _ => Err(unsupported(
                "* in a select with GROUPING SETS, CUBE or ROLLUP",
            )),
        })
        .collect()
}

/// A grouping expression as written: a position or an output name means that select list
/// expression, as in Postgres.
fn resolve(expr: &Expr, outputs: &[(String, Expr, bool)]) -> Result<Expr, DbError> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n
                .parse::<usize>()
                .ok()
                .and_then(|n| outputs.get(n.checked_sub(1)?))
                .map(|(_, expr, _)| expr.clone())
                .ok_or_else(|| {
                    DbError::new(
                        "42P10",
                        format!("GROUP BY position {n} is not in select list"),
                    )
                }),
            _ => Ok(expr.clone()),
        },
        Expr::Identifier(ident) => Ok(outputs
            .iter()
            .find(|(name, _, aliased)| *aliased && *name == ident_name(ident))
            .map_or_else(|| expr.clone(), |(_, expr, _)| expr.clone())),
        Expr::Nested(inner) => resolve(inner, outputs),
        _ => Ok(expr.clone()),
    }
}

/// The grouping sets one GROUP BY item stands for, in Postgres's order.
fn sets_of(
    item: &Expr,
    resolve: &dyn Fn(&Expr) -> Result<Expr, DbError>,
) -> Result<Vec<Vec<Expr>>, DbError> {
    let flat = |list: &[Expr]| -> Result<Vec<Expr>, DbError> { list.iter().map(resolve).collect() };
    match item {
        Expr::Rollup(lists) => {
            let lists: Vec<Vec<Expr>> = lists.iter().map(|l| flat(l)).collect::<Result<_, _>>()?;
            Ok((0..=lists.len())
                .rev()
                .map(|k| lists[..k].concat())
                .collect())
        }
        Expr::Cube(lists) => {
            let lists: Vec<Vec<Expr>> = lists.iter().map(|l| flat(l)).collect::<Result<_, _>>()?;
            let n = lists.len();
            if n > 12 {
                return Err(DbError::new("54000", "CUBE is limited to 12 elements"));
            }
            Ok((0..1usize << n)
                .rev()
                .map(|mask| {
                    (0..n)
                        .filter(|i| mask & (1 << (n - 1 - i)) != 0)
                        .flat_map(|i| lists[i].iter().cloned())
                        .collect()
                })
                .collect())
        }
        Expr::GroupingSets(sets) => {
            let mut out = Vec::new();
            for set in sets {
                let mut product: Vec<Vec<Expr>> = vec![Vec::new()];
                for element in set {
                    product = cross(&product, &sets_of(element, resolve)?)?;
                }
                out.extend(product);
                if out.len() > MAX_SETS {
                    return Err(too_many());
                }
            }
            Ok(out)
        }
        Expr::Tuple(elements) => Ok(vec![flat(elements)?]),
        other => Ok(vec![vec![resolve(other)?]]),
    }
}

fn too_many() -> DbError {
    DbError::new(
        "54000",
        format!("too many grouping sets present (maximum {MAX_SETS})"),
    )
}

/// Every set of `left` followed by every set of `right`.
fn cross(left: &[Vec<Expr>], right: &[Vec<Expr>]) -> Result<Vec<Vec<Expr>>, DbError> {
    if left.len().saturating_mul(right.len()) > MAX_SETS {
        return Err(too_many());
    }
    Ok(left
        .iter()
        .flat_map(|l| right.iter().map(move |r| [l.as_slice(), r].concat()))
        .collect())
}

/// Whether two grouping expressions are the same one (a column with or without its table).
fn same(a: &Expr, b: &Expr) -> bool {
    let column = |e: &Expr| match e {
        Expr::Identifier(ident) => Some(ident_name(ident)),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident_name),
        _ => None,
    };
    match (column(a), column(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.to_string() == b.to_string(),
    }
}

/// The select of one grouping set.
fn branch(select: &Select, set: &[Expr], all: &[Expr]) -> Result<Select, DbError> {
    let mut branch = select.clone();
    branch.group_by = GroupByExpr::Expressions(set.to_vec(), Vec::new());
    let absent: Vec<&Expr> = all
        .iter()
        .filter(|e| !set.iter().any(|s| same(s, e)))
        .collect();
    let mut grouped = Grouped {
        all,
        absent: &absent,
        stash: Vec::new(),
        changed: false,
        aggregates: false,
        error: None,
    };
    for item in &mut branch.projection {
        match item {
            SelectItem::UnnamedExpr(expr) => {
                let name = column_name(expr);
                if grouped.apply(expr)? {
                    *item = SelectItem::ExprWithAlias {
                        expr: expr.clone(),
                        alias: Ident::with_quote('"', name),
                    };
                }
            }
            SelectItem::ExprWithAlias { expr, .. } => {
                grouped.apply(expr)?;
            }
            _ => {
                return Err(unsupported(
                    "* in a select with GROUPING SETS, CUBE or ROLLUP",
                ));
            }
        }
    }
    // Grouping by the empty set makes one row, even of no rows, which SQLite does only for a
    // select list with an aggregate in it (an aggregate in HAVING alone is refused).
    if set.is_empty()
        && !grouped.aggregates
        && let Some(item) = branch.projection.first_mut()
    {
        let one_group = sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
            .try_with_sql("count(*) >= 0")
            .and_then(|mut parser| parser.parse_expr())
            .map_err(|e| crate::errors::internal(e.to_string()))?;
        *item = match std::mem::replace(item, SelectItem::UnnamedExpr(Expr::value(Value::Null))) {
            SelectItem::UnnamedExpr(expr) => SelectItem::ExprWithAlias {
                alias: Ident::with_quote('"', column_name(&expr)),
                expr: case_when(one_group, expr),
            },
            SelectItem::ExprWithAlias { expr, alias } => SelectItem::ExprWithAlias {
                expr: case_when(one_group, expr),
                alias,
            },
            other => other,
        };
    }
    if let Some(having) = branch.having.as_mut() {
        grouped.apply(having)?;
    }
    Ok(branch)
}

/// `CASE WHEN condition THEN result END`.
fn case_when(condition: Expr, result: Expr) -> Expr {
    Expr::Case {
        case_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        end_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        operand: None,
        conditions: vec![CaseWhen { condition, result }],
        else_result: None,
    }
}

/// Rewrites the expressions of one grouping set's select: grouping expressions left out of
/// the set read as NULL, `GROUPING(...)` is its bit mask; aggregate arguments stay as they are.
struct Grouped<'a> {
    all: &'a [Expr],
    absent: &'a [&'a Expr],
    /// Expressions set aside behind a placeholder while the tree is walked (aggregates, and
    /// the NULLs themselves, which hold the expression they replace).
    stash: Vec<Expr>,
    /// Something in the expression was rewritten.
    changed: bool,
    /// An aggregate was seen (in the select list, when it is asked after the list).
    aggregates: bool,
    error: Option<DbError>,
}

const PLACEHOLDER: &str = "__pg_grouping_set_";

impl Grouped<'_> {
    /// Rewrites `expr`; whether anything in it changed.
    fn apply(&mut self, expr: &mut Expr) -> Result<bool, DbError> {
        self.stash.clear();
        self.changed = false;
        let _ = expr.visit(self);
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut restore = Restore(std::mem::take(&mut self.stash));
        let _ = expr.visit(&mut restore);
        Ok(self.changed)
    }

    fn placeholder(&mut self, expr: Expr) -> Expr {
        self.stash.push(expr);
        Expr::Identifier(Ident::new(format!("{PLACEHOLDER}{}", self.stash.len() - 1)))
    }

    /// `GROUPING(a, b, ...)`: bit i (from the left, most significant first) set when argument
    /// i is not grouped in this set.
    fn grouping_mask(&self, args: &[Expr]) -> Result<Expr, DbError> {
        let mut mask = 0i64;
        for arg in args {
            if !self.all.iter().any(|g| same(g, arg)) {
                return Err(DbError::new(
                    "42803",
                    "arguments to GROUPING must be grouping expressions of the associated query level",
                ));
            }
            mask = mask << 1 | i64::from(self.absent.iter().any(|g| same(g, arg)));
        }
        Ok(Expr::value(Value::Number(mask.to_string(), false)))
    }
}

fn function_args(f: &sqlparser::ast::Function) -> Vec<Expr> {
    match &f.args {
        sqlparser::ast::FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|arg| match arg {
                sqlparser::ast::FunctionArg::Unnamed(sqlparser::ast::FunctionArgExpr::Expr(e)) => {
                    Some(e.clone())
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl VisitorMut for Grouped<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = &*expr {
            let name = f.name.to_string().to_ascii_lowercase();
            if name == "grouping" {
                match self.grouping_mask(&function_args(f)) {
                    Ok(mask) => {
                        *expr = mask;
                        self.changed = true;
                    }
                    Err(e) => {
                        self.error = Some(e);
                        return ControlFlow::Break(());
                    }
                }
                return ControlFlow::Continue(());
            }
            if f.over.is_none()
                && (AGGREGATES.contains(&name.as_str())
                    || f.filter.is_some()
                    || !f.within_group.is_empty())
            {
                let aggregate = std::mem::replace(expr, Expr::value(Value::Null));
                *expr = self.placeholder(aggregate);
                self.aggregates = true;
                return ControlFlow::Continue(());
            }
        }
        if self.absent.iter().any(|g| same(g, expr)) {
            let original = std::mem::replace(expr, Expr::value(Value::Null));
            let null = case_when(Expr::value(Value::Boolean(false)), original);
            *expr = self.placeholder(null);
            self.changed = true;
        }
        ControlFlow::Continue(())
    }
}

/// Puts the stashed expressions back in place of their placeholders.
struct Restore(Vec<Expr>);

impl VisitorMut for Restore {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Identifier(ident) = &*expr
            && let Some(index) = ident.value.strip_prefix(PLACEHOLDER)
            && let Ok(index) = index.parse::<usize>()
            && let Some(original) = self.0.get_mut(index)
        {
            *expr = std::mem::replace(original, Expr::value(Value::Null));
        }
        ControlFlow::Continue(())
    }
}
