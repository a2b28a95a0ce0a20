//! HAVING over merged groups: the condition the proxy applies after the merge.

use super::finish::{finish_tree, renumber};
use super::*;

/// A HAVING condition over merged groups.
#[derive(Debug, Clone, PartialEq)]
pub enum Having {
    And(Box<Having>, Box<Having>),
    Or(Box<Having>, Box<Having>),
    Not(Box<Having>),
    Compare {
        left: HavingOperand,
        op: CompareOp,
        right: HavingOperand,
    },
    IsNull {
        operand: HavingOperand,
        negated: bool,
    },
}

/// A value in a HAVING condition: a merged column (visible or hidden), an expression over
/// merged columns, or a constant.
#[derive(Debug, Clone, PartialEq)]
pub enum HavingOperand {
    Column(usize),
    Expr(Finish),
    Int(i64),
    Float(f64),
    Text(String),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// Translates a HAVING expression; aggregates it uses that the client did not select become
/// hidden node columns (`hidden`, numbered from `first_hidden`).
pub(super) fn having_condition(
    expr: &Expr,
    projection: &[SelectItem],
    first_hidden: usize,
    hidden: &mut Vec<(Expr, Combine)>,
) -> Result<Having, RouterError> {
    use sqlparser::ast::{BinaryOperator as B, UnaryOperator};
    let mut operand = |e: &Expr| having_operand(e, projection, first_hidden, hidden);
    Ok(match expr {
        Expr::Nested(inner) => having_condition(inner, projection, first_hidden, hidden)?,
        Expr::BinaryOp {
            left,
            op: B::And,
            right,
        } => Having::And(
            Box::new(having_condition(left, projection, first_hidden, hidden)?),
            Box::new(having_condition(right, projection, first_hidden, hidden)?),
        ),
        Expr::BinaryOp {
            left,
            op: B::Or,
            right,
        } => Having::Or(
            Box::new(having_condition(left, projection, first_hidden, hidden)?),
            Box::new(having_condition(right, projection, first_hidden, hidden)?),
        ),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => Having::Not(Box::new(having_condition(
            expr,
            projection,
            first_hidden,
            hidden,
        )?)),
        Expr::IsNull(inner) => Having::IsNull {
            operand: operand(inner)?,
            negated: false,
        },
        Expr::IsNotNull(inner) => Having::IsNull {
            operand: operand(inner)?,
            negated: true,
        },
        Expr::BinaryOp { left, op, right } => {
            let op = match op {
                B::Eq => CompareOp::Eq,
                B::NotEq => CompareOp::NotEq,
                B::Lt => CompareOp::Lt,
                B::LtEq => CompareOp::LtEq,
                B::Gt => CompareOp::Gt,
                B::GtEq => CompareOp::GtEq,
                _ => return Err(refuse("this HAVING condition")),
            };
            let left = operand(left)?;
            let right = operand(right)?;
            Having::Compare { left, op, right }
        }
        _ => return Err(refuse("this HAVING condition")),
    })
}

fn having_operand(
    expr: &Expr,
    projection: &[SelectItem],
    first_hidden: usize,
    hidden: &mut Vec<(Expr, Combine)>,
) -> Result<HavingOperand, RouterError> {
    if let Expr::Value(v) = expr {
        return Ok(match &v.value {
            Value::Number(n, _) => match n.parse::<i64>() {
                Ok(i) => HavingOperand::Int(i),
                Err(_) => {
                    HavingOperand::Float(n.parse().map_err(|_| refuse("this HAVING constant"))?)
                }
            },
            Value::SingleQuotedString(s) => HavingOperand::Text(s.clone()),
            Value::Null => HavingOperand::Null,
            _ => return Err(refuse("this HAVING constant")),
        });
    }
    if let Expr::UnaryOp {
        op: sqlparser::ast::UnaryOperator::Minus,
        expr: inner,
    } = expr
    {
        return match having_operand(inner, projection, first_hidden, hidden)? {
            HavingOperand::Int(i) => Ok(HavingOperand::Int(-i)),
            HavingOperand::Float(f) => Ok(HavingOperand::Float(-f)),
            _ => Err(refuse("this HAVING expression")),
        };
    }
    let text = expr.to_string();
    if let Some(index) = projection
        .iter()
        .position(|item| item_expr(item).is_some_and(|e| e.to_string() == text))
    {
        return Ok(HavingOperand::Column(index));
    }
    if distinct_argument(expr).is_some() {
        return Err(refuse(
            "HAVING with an aggregate over DISTINCT values the query does not select",
        ));
    }
    if !is_aggregate_call(expr) {
        // Arithmetic, casts, COALESCE or NULLIF over aggregates, computed as a column's.
        let mut leaves = Vec::new();
        if let Some(mut tree) = finish_tree(expr, &mut leaves) {
            let slots = leaves
                .iter()
                .map(
                    |leaf| match having_operand(leaf, projection, first_hidden, hidden)? {
                        HavingOperand::Column(slot) => Ok(slot),
                        _ => Err(refuse("this HAVING expression")),
                    },
                )
                .collect::<Result<Vec<_>, RouterError>>()?;
            renumber(&mut tree, &slots);
            return Ok(HavingOperand::Expr(tree));
        }
    }
    let merge = match expr {
        Expr::Function(f) if !f.within_group.is_empty() => None,
        _ => function_name(expr).as_deref().and_then(merge_of),
    };
    let combine = match merge {
        Some(combine) => combine,
        None => {
            return Err(RouterError::Unsupported(format!(
                "HAVING over several nodes can use GROUP BY columns, selected aggregates, \
                 count/sum/min/max/bool_and/bool_or/bit_and/bit_or/bit_xor and arithmetic, casts, \
                 COALESCE and NULLIF over them; not {text}"
            )));
        }
    };
    if let Some(position) = hidden.iter().position(|(e, _)| e.to_string() == text) {
        return Ok(HavingOperand::Column(first_hidden + position));
    }
    hidden.push((expr.clone(), combine));
    Ok(HavingOperand::Column(first_hidden + hidden.len() - 1))
}
