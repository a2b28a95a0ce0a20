//! The expressions a client computes from aggregates read across nodes (the router's
//! [`Finish`]: `sum(a) / count(*)`, `COALESCE(sum(x), 0)::int`, `max(x) - min(x)`), evaluated over
//! the merged values as PostgreSQL evaluates them. Types are resolved once, when the merged
//! columns are described, by Postgres's rules for these operators: integers of two widths give
//! the wider (`sum(int4) / count(*)` is `bigint`), an integer with a numeric gives numeric, either
//! with a floating-point type gives `double precision` (two `real`s stay `real`). Integer
//! division truncates, overflow is 22003, division by zero 22012, a NULL operand gives NULL,
//! numeric results have Postgres's scales (see `decimal`).

use std::cmp::Ordering;

use mycelium_protocol::Column;
use mycelium_protocol::types::{self, PgType, SqlValue};
use mycelium_router::{ArithOp, Constant, Finish};

use super::decimal::{Dec, division_by_zero};
use super::finish::{Typed, cast_target, cast_value, decimal_text, out_of_range};
use crate::error::{ProxyError, sql_error};

/// An expression with the type of its value.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Resolved {
    node: Node,
    pub(super) ty: Typed,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Column(usize),
    Constant(SqlValue),
    /// Converted from the inner expression's type.
    Cast(Box<Resolved>),
    /// The first non-NULL argument, converted.
    Coalesce(Vec<Resolved>),
    /// NULL when the arguments, both converted to `compare`, are equal; else the first.
    NullIf(Box<Resolved>, Box<Resolved>, Typed),
    Negate(Box<Resolved>),
    /// Both operands converted to `operands`, the result of the expression's type.
    Arithmetic {
        left: Box<Resolved>,
        op: ArithOp,
        right: Box<Resolved>,
        operands: Typed,
    },
}

/// Resolves `finish` against the merged columns (the node query's, visible and hidden, with
/// the types the merge gives them).
pub(super) fn resolve(finish: &Finish, columns: &[Column]) -> Result<Resolved, ProxyError> {
    Ok(match finish {
        Finish::Column(i) => {
            let column = columns.get(*i).ok_or_else(|| {
                sql_error("08P01", format!("the nodes returned no column {}", i + 1))
            })?;
            let ty = PgType::from_oid(column.type_oid).ok_or_else(|| {
                sql_error(
                    "0A000",
                    format!(
                        "computing with aggregates of type OID {} over rows on several nodes is \
                         not supported; compute it on one node (filter on the shard key)",
                        column.type_oid
                    ),
                )
            })?;
            Resolved {
                node: Node::Column(*i),
                ty: Typed {
                    ty,
                    typmod: column.type_modifier,
                },
            }
        }
        Finish::Constant(constant) => {
            let (value, ty) = constant_value(constant)?;
            Resolved {
                node: Node::Constant(value),
                ty: Typed::plain(ty),
            }
        }
        Finish::Cast(inner, name) => {
            let inner = resolve(inner, columns)?;
            let ty = cast_target(inner.ty, name)?;
            Resolved {
                node: Node::Cast(Box::new(inner)),
                ty,
            }
        }
        Finish::Coalesce(args) => coalesce(args, columns)?,
        Finish::NullIf(left, right) => {
            let left = resolve(left, columns)?;
            let right = resolve(right, columns)?;
            let compare = common_type(&[left.ty, right.ty])
                .ok_or_else(|| no_operator(Some(left.ty), "=", right.ty))?;
            let ty = left.ty;
            Resolved {
                node: Node::NullIf(Box::new(left), Box::new(right), compare),
                ty,
            }
        }
        Finish::Negate(inner) => {
            let inner = resolve(inner, columns)?;
            if kind(inner.ty.ty).is_none() {
                return Err(no_operator(None, "-", inner.ty));
            }
            let ty = Typed::plain(inner.ty.ty);
            Resolved {
                node: Node::Negate(Box::new(inner)),
                ty,
            }
        }
        Finish::Arithmetic(left, op, right) => {
            let left = resolve(left, columns)?;
            let right = resolve(right, columns)?;
            let operands = operand_type(left.ty.ty, *op, right.ty.ty)
                .ok_or_else(|| no_operator(Some(left.ty), op.symbol(), right.ty))?;
            Resolved {
                node: Node::Arithmetic {
                    left: Box::new(left),
                    op: *op,
                    right: Box::new(right),
                    operands,
                },
                ty: operands,
            }
        }
    })
}

/// A number constant as Postgres types it: `integer`, `bigint` beyond it, else `numeric`.
fn constant_value(constant: &Constant) -> Result<(SqlValue, PgType), ProxyError> {
    Ok(match constant {
        Constant::Int(i) if i32::try_from(*i).is_ok() => (SqlValue::Int(*i), PgType::Int4),
        Constant::Int(i) => (SqlValue::Int(*i), PgType::Int8),
        Constant::Numeric(text) => match decimal_text(text) {
            Some(decimal) => (SqlValue::Text(decimal), PgType::Numeric),
            None => {
                return Err(sql_error(
                    "22P02",
                    format!("invalid input syntax for type numeric: \"{text}\""),
                ));
            }
        },
        // The router writes strings only as COALESCE's arguments, which read them.
        Constant::Text(text) => (SqlValue::Text(text.clone()), PgType::Text),
    })
}

/// `COALESCE(args)`: the arguments' common type, as Postgres resolves it (`bigint` for
/// `coalesce(sum(int), 0)`, `numeric` for `coalesce(sum(int), 0.5)`), strings read as it. A
/// string that does not read is an error even when it is not needed, as in Postgres, which
/// reads it when planning.
fn coalesce(args: &[Finish], columns: &[Column]) -> Result<Resolved, ProxyError> {
    let mut typed = Vec::with_capacity(args.len());
    for arg in args {
        typed.push(match arg {
            Finish::Constant(Constant::Text(text)) => Err(text),
            other => Ok(resolve(other, columns)?),
        });
    }
    let types: Vec<Typed> = typed
        .iter()
        .filter_map(|arg| arg.as_ref().ok().map(|r| r.ty))
        .collect();
    let ty = match types.first() {
        None => Typed::plain(PgType::Text),
        Some(first) => common_type(&types).ok_or_else(|| {
            let other = types.iter().find(|t| t.ty != first.ty).unwrap_or(first);
            sql_error(
                "42804",
                format!(
                    "COALESCE types {} and {} cannot be matched",
                    first.ty.name(),
                    other.ty.name()
                ),
            )
        })?,
    };
    let args = typed
        .into_iter()
        .map(|arg| match arg {
            Ok(resolved) => Ok(resolved),
            Err(text) => Ok(Resolved {
                node: Node::Constant(types::parse_text(ty.ty, ty.typmod, text)?),
                ty,
            }),
        })
        .collect::<Result<_, ProxyError>>()?;
    Ok(Resolved {
        node: Node::Coalesce(args),
        ty,
    })
}

/// Position of a type among the numbers Postgres converts to each other implicitly.
fn numeric_rank(ty: PgType) -> Option<u8> {
    Some(match ty {
        PgType::Int2 => 0,
        PgType::Int4 => 1,
        PgType::Int8 => 2,
        PgType::Numeric => 3,
        PgType::Float4 => 4,
        PgType::Float8 => 5,
        _ => return None,
    })
}

/// The type values of `types` are converted to when they meet (`COALESCE`, `NULLIF`): the same
/// type (with its modifier if they all share it), or the highest of the numbers.
fn common_type(types: &[Typed]) -> Option<Typed> {
    let first = *types.first()?;
    if types.iter().all(|t| t.ty == first.ty) {
        let typmod = if types.iter().all(|t| t.typmod == first.typmod) {
            first.typmod
        } else {
            -1
        };
        return Some(Typed {
            ty: first.ty,
            typmod,
        });
    }
    let ranked = types
        .iter()
        .map(|t| numeric_rank(t.ty).map(|rank| (rank, t.ty)))
        .collect::<Option<Vec<_>>>()?;
    ranked
        .into_iter()
        .max_by_key(|(rank, _)| *rank)
        .map(|(_, ty)| Typed::plain(ty))
}

/// How values of a number type are computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Numeric,
    Float,
}

fn kind(ty: PgType) -> Option<Kind> {
    Some(match ty {
        PgType::Int2 | PgType::Int4 | PgType::Int8 => Kind::Integer,
        PgType::Numeric => Kind::Numeric,
        PgType::Float4 | PgType::Float8 => Kind::Float,
        _ => return None,
    })
}

/// The type both operands of `left op right` are converted to, which is also the result's:
/// the wider integer, numeric, `real` for two `real`s, else `double precision`. `None` when
/// Postgres has no such operator (`%` of floating-point numbers, anything of text).
fn operand_type(left: PgType, op: ArithOp, right: PgType) -> Option<Typed> {
    let ty = match (kind(left)?, kind(right)?) {
        (Kind::Integer, Kind::Integer) => {
            if numeric_rank(left) >= numeric_rank(right) {
                left
            } else {
                right
            }
        }
        (Kind::Float, _) | (_, Kind::Float) if op == ArithOp::Modulo => return None,
        (Kind::Float, _) | (_, Kind::Float) => {
            if left == PgType::Float4 && right == PgType::Float4 {
                PgType::Float4
            } else {
                PgType::Float8
            }
        }
        _ => PgType::Numeric,
    };
    Some(Typed::plain(ty))
}

fn no_operator(left: Option<Typed>, op: &str, right: Typed) -> ProxyError {
    let left = left
        .map(|t| format!("{} ", t.ty.name()))
        .unwrap_or_default();
    sql_error(
        "42883",
        format!("operator does not exist: {left}{op} {}", right.ty.name()),
    )
}

impl Resolved {
    /// The expression's value over a merged row (`None` is NULL).
    pub(super) fn eval(&self, row: &[Option<SqlValue>]) -> Result<Option<SqlValue>, ProxyError> {
        match &self.node {
            Node::Column(i) => Ok(row
                .get(*i)
                .cloned()
                .flatten()
                .filter(|v| *v != SqlValue::Null)),
            Node::Constant(value) => Ok(Some(value.clone())),
            Node::Cast(inner) => inner
                .eval(row)?
                .map(|v| cast_value(&v, inner.ty, self.ty))
                .transpose(),
            Node::Coalesce(args) => {
                for arg in args {
                    if let Some(value) = arg.eval(row)? {
                        return cast_value(&value, arg.ty, self.ty).map(Some);
                    }
                }
                Ok(None)
            }
            Node::NullIf(left, right, compare) => {
                let Some(value) = left.eval(row)? else {
                    return Ok(None);
                };
                let Some(other) = right.eval(row)? else {
                    return Ok(Some(value));
                };
                let a = cast_value(&value, left.ty, *compare)?;
                let b = cast_value(&other, right.ty, *compare)?;
                Ok((compare_values(&a, &b, compare.ty)? != Ordering::Equal).then_some(value))
            }
            Node::Negate(inner) => {
                let Some(value) = inner.eval(row)? else {
                    return Ok(None);
                };
                Ok(Some(match kind(self.ty.ty) {
                    Some(Kind::Integer) => integer(self.ty.ty, int_of(&value).checked_neg())?,
                    Some(Kind::Float) => SqlValue::Float(-float_of(&value)),
                    _ => SqlValue::Text(Dec::of(&value)?.negate().to_string()),
                }))
            }
            Node::Arithmetic {
                left,
                op,
                right,
                operands,
            } => {
                let (Some(a), Some(b)) = (left.eval(row)?, right.eval(row)?) else {
                    return Ok(None);
                };
                let a = cast_value(&a, left.ty, *operands)?;
                let b = cast_value(&b, right.ty, *operands)?;
                arithmetic(&a, *op, &b, operands.ty).map(Some)
            }
        }
    }
}

/// An integer value (converted to an integer type before).
fn int_of(value: &SqlValue) -> i64 {
    match value {
        SqlValue::Int(i) => *i,
        SqlValue::Float(f) => *f as i64,
        _ => 0,
    }
}

/// A floating-point value (converted to a floating-point type before).
fn float_of(value: &SqlValue) -> f64 {
    match value {
        SqlValue::Float(f) => *f,
        SqlValue::Int(i) => *i as f64,
        _ => f64::NAN,
    }
}

/// An integer result of type `ty`, or 22003 when it overflowed or is out of its range.
fn integer(ty: PgType, result: Option<i64>) -> Result<SqlValue, ProxyError> {
    let fits = |i: i64| match ty {
        PgType::Int2 => i16::try_from(i).is_ok(),
        PgType::Int4 => i32::try_from(i).is_ok(),
        _ => true,
    };
    match result {
        Some(i) if fits(i) => Ok(SqlValue::Int(i)),
        _ => Err(out_of_range(ty)),
    }
}

/// `a op b`, both of type `ty`.
fn arithmetic(a: &SqlValue, op: ArithOp, b: &SqlValue, ty: PgType) -> Result<SqlValue, ProxyError> {
    match kind(ty) {
        Some(Kind::Integer) => {
            let (x, y) = (int_of(a), int_of(b));
            if matches!(op, ArithOp::Divide | ArithOp::Modulo) && y == 0 {
                return Err(division_by_zero());
            }
            integer(
                ty,
                match op {
                    ArithOp::Add => x.checked_add(y),
                    ArithOp::Subtract => x.checked_sub(y),
                    ArithOp::Multiply => x.checked_mul(y),
                    // Truncates toward zero; the minimum over -1 overflows.
                    ArithOp::Divide => x.checked_div(y),
                    // x % -1 is 0, also for the minimum.
                    ArithOp::Modulo => Some(x.checked_rem(y).unwrap_or(0)),
                },
            )
        }
        Some(Kind::Float) => float_arithmetic(float_of(a), op, float_of(b), ty),
        _ => {
            let (x, y) = (Dec::of(a)?, Dec::of(b)?);
            let result = match op {
                ArithOp::Add => x.add(y)?,
                ArithOp::Subtract => x.subtract(y)?,
                ArithOp::Multiply => x.multiply(y)?,
                ArithOp::Divide => x.divide(y)?,
                ArithOp::Modulo => x.remainder(y)?,
            };
            Ok(SqlValue::Text(result.to_string()))
        }
    }
}

/// `float8pl` and its kin (`real` ones computed in single precision), with their checks:
/// an infinite result of finite operands overflows, a zero product or quotient of non-zero
/// ones underflows.
fn float_arithmetic(x: f64, op: ArithOp, y: f64, ty: PgType) -> Result<SqlValue, ProxyError> {
    if op == ArithOp::Divide && y == 0.0 && !x.is_nan() {
        return Err(division_by_zero());
    }
    let result = if ty == PgType::Float4 {
        let (a, b) = (x as f32, y as f32);
        f64::from(match op {
            ArithOp::Add => a + b,
            ArithOp::Subtract => a - b,
            ArithOp::Multiply => a * b,
            _ => a / b,
        })
    } else {
        match op {
            ArithOp::Add => x + y,
            ArithOp::Subtract => x - y,
            ArithOp::Multiply => x * y,
            _ => x / y,
        }
    };
    let overflow =
        result.is_infinite() && !x.is_infinite() && (op == ArithOp::Divide || !y.is_infinite());
    if overflow {
        return Err(sql_error("22003", "value out of range: overflow"));
    }
    let underflow = result == 0.0
        && x != 0.0
        && match op {
            ArithOp::Multiply => y != 0.0,
            ArithOp::Divide => !y.is_infinite(),
            _ => false,
        };
    if underflow {
        return Err(sql_error("22003", "value out of range: underflow"));
    }
    Ok(SqlValue::Float(result))
}

/// Orders two values of type `ty` (for NULLIF's equality).
fn compare_values(a: &SqlValue, b: &SqlValue, ty: PgType) -> Result<Ordering, ProxyError> {
    Ok(match kind(ty) {
        Some(Kind::Integer) => int_of(a).cmp(&int_of(b)),
        // NaN equals NaN, -0 equals 0, as in `float8eq`.
        Some(Kind::Float) => {
            let (x, y) = (float_of(a), float_of(b));
            if x.is_nan() || y.is_nan() {
                x.is_nan().cmp(&y.is_nan())
            } else {
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        }
        Some(Kind::Numeric) => Dec::of(a)?.compare(Dec::of(b)?)?,
        None => match (a, b) {
            (SqlValue::Text(x), SqlValue::Text(y)) => x.cmp(y),
            _ => format!("{a:?}").cmp(&format!("{b:?}")),
        },
    })
}

#[cfg(test)]
mod tests;
