//! Output columns computed from merged aggregates: the [`Finish`] tree the proxy evaluates,
//! and how the node query carries the aggregates it uses.

use super::*;

/// How the proxy computes an output column from the merged aggregates, for a column that does
/// more than name one aggregate: `sum(x)::int8` is `Cast(Column(0), "int8")`,
/// `COALESCE(sum(a), 0)::numeric / NULLIF(count(*), 0)` divides a cast COALESCE of one merged
/// column by a NULLIF of another. The expression cannot run on the nodes: `COALESCE(sum(x), 0)`
/// of a node without rows is 0, which a merge would take for a sum, and `sum(a) / count(*)` of
/// each node is no part of the cluster's quotient. The proxy evaluates it as Postgres does, with
/// the types Postgres resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// The merged value of the node column at this position: the column's own, or a hidden one
    /// (see [`MergeSpec::hidden_columns`]).
    Column(usize),
    Constant(Constant),
    /// `CAST(value AS type)` to one of the integer, numeric, floating-point types or text, the
    /// type as written (`int8`, `numeric(10,2)`, `double precision`); the proxy resolves it.
    Cast(Box<Finish>, String),
    /// `COALESCE(a, b, ...)`.
    Coalesce(Vec<Finish>),
    /// `NULLIF(a, b)`.
    NullIf(Box<Finish>, Box<Finish>),
    /// Unary minus.
    Negate(Box<Finish>),
    Arithmetic(Box<Finish>, ArithOp, Box<Finish>),
}

/// A binary arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Subtract,
    Multiply,
    Divide,
    Modulo,
}

impl ArithOp {
    /// The operator as SQL writes it.
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Subtract => "-",
            ArithOp::Multiply => "*",
            ArithOp::Divide => "/",
            ArithOp::Modulo => "%",
        }
    }
}

/// A constant in a [`Finish`] expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constant {
    /// An integer literal: `integer`, or `bigint` beyond its range, as in Postgres.
    Int(i64),
    /// A literal with a point or an exponent, or an integer beyond `bigint`: `numeric`.
    Numeric(String),
    /// A string literal (an argument of `COALESCE` only): read as the type of the others.
    Text(String),
}

/// Replaces each output column that computes something from aggregates (casts, `COALESCE`,
/// `NULLIF`, arithmetic) by its first aggregate, named as Postgres names the column
/// (`sum(x)::int8` is "sum", `COALESCE(sum(x), 0)` "coalesce", `sum(a) / count(*)` "?column?")
/// unless the client named it. Returns, per column, the expression that computes it from the
/// merged values, and the other aggregates those expressions use, which the node query appends
/// to the client's columns (numbered from `projection.len()`); an aggregate computed already
/// is used again.
pub(super) fn unwrap_aggregates(projection: &mut [SelectItem]) -> (Vec<Option<Finish>>, Vec<Expr>) {
    let visible = projection.len();
    // Where each aggregate's merged value is: text of the call and column.
    let mut placed: Vec<(String, usize)> = projection
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let expr = item_expr(item)?;
            is_aggregate_call(expr).then(|| (expr.to_string(), i))
        })
        .collect();
    let mut hidden: Vec<Expr> = Vec::new();
    let finish = projection
        .iter_mut()
        .enumerate()
        .map(|(i, item)| {
            let expr = item_expr(item)?.clone();
            if is_aggregate_call(&expr) {
                return None;
            }
            let mut leaves = Vec::new();
            let mut tree = finish_tree(&expr, &mut leaves)?;
            let first = leaves.first()?.clone();
            let slots: Vec<usize> = leaves
                .iter()
                .enumerate()
                .map(|(k, leaf)| {
                    let text = leaf.to_string();
                    if k == 0 {
                        placed.push((text, i));
                        return i;
                    }
                    if let Some((_, slot)) = placed.iter().find(|(t, _)| *t == text) {
                        return *slot;
                    }
                    hidden.push(leaf.clone());
                    let slot = visible + hidden.len() - 1;
                    placed.push((text, slot));
                    slot
                })
                .collect();
            renumber(&mut tree, &slots);
            let alias = match item {
                SelectItem::ExprWithAlias { alias, .. } => alias.clone(),
                _ => match column_name(&expr).0 {
                    name if name == "?column?" => sqlparser::ast::Ident::with_quote('"', name),
                    name => sqlparser::ast::Ident::new(name),
                },
            };
            *item = SelectItem::ExprWithAlias { expr: first, alias };
            // `(sum(x))` is its aggregate.
            (tree != Finish::Column(i)).then_some(tree)
        })
        .collect();
    (finish, hidden)
}

/// `expr` as an expression over aggregate calls and constants: casts, `COALESCE`, `NULLIF`,
/// `+ - * / %`, unary minus and parentheses. Its `Column(k)` is the k-th distinct call in
/// `leaves`. `None` when `expr` is anything else (a plain column, another function), which the
/// caller then refuses, or has no aggregate.
pub(super) fn finish_tree(expr: &Expr, leaves: &mut Vec<Expr>) -> Option<Finish> {
    let tree = expression(expr, leaves)?;
    (!leaves.is_empty()).then_some(tree)
}

fn expression(expr: &Expr, leaves: &mut Vec<Expr>) -> Option<Finish> {
    use sqlparser::ast::{BinaryOperator as B, UnaryOperator as U};
    if is_aggregate_call(expr) {
        let text = expr.to_string();
        let k = match leaves.iter().position(|leaf| leaf.to_string() == text) {
            Some(k) => k,
            None => {
                leaves.push(expr.clone());
                leaves.len() - 1
            }
        };
        return Some(Finish::Column(k));
    }
    // A number; a string only as an argument of COALESCE, where it takes the others' type.
    let number = |e: &Expr| match constant_of(e) {
        Some(Constant::Text(_)) => None,
        other => other,
    };
    if let Some(constant) = number(expr) {
        return Some(Finish::Constant(constant));
    }
    Some(match expr {
        Expr::Nested(inner) => return expression(inner, leaves),
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr: inner,
            data_type,
            format: None,
        } => Finish::Cast(
            Box::new(expression(inner, leaves)?),
            cast_target(data_type)?,
        ),
        Expr::Function(_) if function_name(expr).as_deref() == Some("coalesce") => {
            let args = plain_arguments(expr)?;
            if args.is_empty() {
                return None;
            }
            Finish::Coalesce(
                args.into_iter()
                    .map(|arg| match constant_of(arg) {
                        Some(constant) => Some(Finish::Constant(constant)),
                        None => expression(arg, leaves),
                    })
                    .collect::<Option<_>>()?,
            )
        }
        Expr::Function(_) if function_name(expr).as_deref() == Some("nullif") => {
            let [left, right] = plain_arguments(expr)?[..] else {
                return None;
            };
            Finish::NullIf(
                Box::new(expression(left, leaves)?),
                Box::new(expression(right, leaves)?),
            )
        }
        Expr::BinaryOp { left, op, right } => {
            let op = match op {
                B::Plus => ArithOp::Add,
                B::Minus => ArithOp::Subtract,
                B::Multiply => ArithOp::Multiply,
                B::Divide => ArithOp::Divide,
                B::Modulo => ArithOp::Modulo,
                _ => return None,
            };
            Finish::Arithmetic(
                Box::new(expression(left, leaves)?),
                op,
                Box::new(expression(right, leaves)?),
            )
        }
        Expr::UnaryOp {
            op: U::Minus,
            expr: inner,
        } => Finish::Negate(Box::new(expression(inner, leaves)?)),
        Expr::UnaryOp {
            op: U::Plus,
            expr: inner,
        } => return expression(inner, leaves),
        _ => return None,
    })
}

/// Points each `Column(k)` of `tree` at the node column `slots[k]`.
pub(super) fn renumber(tree: &mut Finish, slots: &[usize]) {
    match tree {
        Finish::Column(k) => *k = slots.get(*k).copied().unwrap_or(*k),
        Finish::Constant(_) => {}
        Finish::Cast(inner, _) | Finish::Negate(inner) => renumber(inner, slots),
        Finish::Coalesce(args) => args.iter_mut().for_each(|arg| renumber(arg, slots)),
        Finish::NullIf(left, right) | Finish::Arithmetic(left, _, right) => {
            renumber(left, slots);
            renumber(right, slots);
        }
    }
}

/// The name Postgres gives an output column (`FigureColname`) and how sure it is of it: 2 for
/// a function's name, 1 for the type a cast names, 0 for "?column?".
fn column_name(expr: &Expr) -> (String, u8) {
    match expr {
        Expr::Nested(inner) => column_name(inner),
        Expr::Cast {
            expr: inner,
            data_type,
            ..
        } => match column_name(inner) {
            (name, 2) => (name, 2),
            _ => (type_name(data_type), 1),
        },
        Expr::Function(_) => (function_name(expr).unwrap_or_default(), 2),
        _ => ("?column?".to_owned(), 0),
    }
}

/// The name Postgres keeps for a type it casts to, which names a cast's column:
/// `(a + b)::bigint` is "int8".
fn type_name(data_type: &DataType) -> String {
    let written = data_type.to_string().to_ascii_lowercase();
    let head = written.split('(').next().unwrap_or_default().trim();
    let head = head.strip_prefix("pg_catalog.").unwrap_or(head);
    match head {
        "smallint" => "int2",
        "int" | "integer" => "int4",
        "bigint" => "int8",
        "decimal" => "numeric",
        "real" => "float4",
        "double precision" | "float" => "float8",
        other => other,
    }
    .to_owned()
}

/// The type of a cast the proxy can apply, as written: integers, numeric (with its modifiers),
/// floating point and text.
fn cast_target(data_type: &DataType) -> Option<String> {
    let written = data_type.to_string().to_ascii_lowercase();
    let head = written.split('(').next().unwrap_or_default().trim();
    let head = head.strip_prefix("pg_catalog.").unwrap_or(head);
    matches!(
        head,
        "int2"
            | "smallint"
            | "int4"
            | "int"
            | "integer"
            | "int8"
            | "bigint"
            | "numeric"
            | "decimal"
            | "float4"
            | "real"
            | "float8"
            | "float"
            | "double precision"
            | "text"
    )
    .then_some(written)
}

/// The arguments of a plain call (no DISTINCT, ORDER BY, FILTER, OVER or WITHIN GROUP).
fn plain_arguments(expr: &Expr) -> Option<Vec<&Expr>> {
    let Expr::Function(f) = expr else {
        return None;
    };
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if list.duplicate_treatment.is_some()
        || !list.clauses.is_empty()
        || f.filter.is_some()
        || f.over.is_some()
        || !f.within_group.is_empty()
    {
        return None;
    }
    list.args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)) => Some(arg),
            _ => None,
        })
        .collect()
}

/// A literal typed as Postgres types it: an integer without point or exponent is `integer`
/// or `bigint` when it fits, anything else numeric; a string literal takes its type from the
/// other argument.
fn constant_of(expr: &Expr) -> Option<Constant> {
    let (negative, value) = match expr {
        Expr::UnaryOp {
            op: sqlparser::ast::UnaryOperator::Minus,
            expr: inner,
        } => match inner.as_ref() {
            Expr::Value(v) => (true, &v.value),
            _ => return None,
        },
        Expr::Value(v) => (false, &v.value),
        _ => return None,
    };
    match value {
        Value::Number(n, _) => {
            let signed = if negative { format!("-{n}") } else { n.clone() };
            Some(match signed.parse::<i64>() {
                Ok(int) => Constant::Int(int),
                Err(_) => Constant::Numeric(signed),
            })
        }
        Value::SingleQuotedString(s) if !negative => Some(Constant::Text(s.clone())),
        _ => None,
    }
}
