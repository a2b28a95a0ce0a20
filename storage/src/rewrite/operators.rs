//! Typing of binary operators, and the rewrites that depend on the operand types: division
//! that raises 22012, date/time arithmetic, `jsonb` operators, and the display scale of
//! `numeric` results.

use mycelium_protocol::DbError;
use mycelium_protocol::types::{PgType, SqlValue};
use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value, ValueWithSpan};

use super::infer::Inferer;
use super::syntax::{function_call, is_integer, is_numeric, string_literal, value_expr};
use crate::catalog::Ty;
use crate::errors::unsupported;
use crate::functions::array::ArrayType;
use crate::functions::numeric::{Dec, div_scale};

type Typed = Result<Option<Ty>, DbError>;

/// How a binary expression is replaced once its operand types are known.
enum Rewrite {
    /// `name(left, right, extra...)`, operands swapped when `swap`.
    Call {
        name: &'static str,
        swap: bool,
        extra: Vec<i64>,
    },
}

fn call(name: &'static str, extra: Vec<i64>) -> Option<Rewrite> {
    Some(Rewrite::Call {
        name,
        swap: false,
        extra,
    })
}

fn null() -> Expr {
    Expr::Value(ValueWithSpan::from(Value::Null))
}

fn numeric_rank(ty: PgType) -> Option<u8> {
    match ty {
        PgType::Int2 => Some(1),
        PgType::Int4 => Some(2),
        PgType::Int8 | PgType::Oid => Some(3),
        PgType::Numeric => Some(4),
        PgType::Float4 => Some(5),
        PgType::Float8 => Some(6),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Temporal {
    Date,
    Timestamp,
    Timestamptz,
    Time,
    Interval,
    Integer,
}

fn temporal(t: Option<Ty>) -> Option<Temporal> {
    let t = t?;
    if t.is_interval() {
        return Some(Temporal::Interval);
    }
    match t.ty {
        PgType::Date => Some(Temporal::Date),
        PgType::Timestamp => Some(Temporal::Timestamp),
        PgType::Timestamptz => Some(Temporal::Timestamptz),
        PgType::Time => Some(Temporal::Time),
        ty if is_integer(ty) => Some(Temporal::Integer),
        _ => None,
    }
}

/// Where a date, a timestamp and a timestamptz meet (a comparison, `IN`, `coalesce`), Postgres
/// converts them to the widest of their types (a date is its midnight). Their stored texts
/// differ where the values are equal (`2024-01-01`, `2024-01-01 00:00:00`), so the narrower
/// operands are cast: this is the type to cast to, when types are mixed.
pub(super) fn widest_temporal(types: &[Option<Ty>]) -> Option<Ty> {
    let rank = |t: &Ty| match t.ty {
        PgType::Date => Some(0),
        PgType::Timestamp => Some(1),
        PgType::Timestamptz => Some(2),
        _ => None,
    };
    let ranked: Vec<(u8, Ty)> = types
        .iter()
        .flatten()
        .filter_map(|t| rank(t).map(|r| (r, *t)))
        .collect();
    let (low, high) = (
        ranked.iter().map(|(r, _)| *r).min()?,
        ranked.iter().map(|(r, _)| *r).max()?,
    );
    (low != high)
        .then(|| {
            ranked
                .iter()
                .find(|(r, _)| *r == high)
                .map(|(_, t)| Ty::of(t.ty))
        })
        .flatten()
}

/// Casts `e`, of date/time type `from`, to `to` (from `widest_temporal`) when they differ.
pub(super) fn widen_temporal(e: &mut Expr, from: Option<Ty>, to: Option<Ty>) {
    let (Some(from), Some(to)) = (from, to) else {
        return;
    };
    if from.ty == to.ty || !matches!(from.ty, PgType::Date | PgType::Timestamp) {
        return;
    }
    let value = std::mem::replace(e, null());
    *e = function_call(
        "__pg_cast",
        vec![
            value,
            value_expr(SqlValue::Int(i64::from(from.ty.oid()))),
            value_expr(SqlValue::Int(i64::from(to.ty.oid()))),
            value_expr(SqlValue::Int(-1)),
        ],
    );
}

fn is_json(t: Option<Ty>) -> bool {
    t.is_some_and(|t| matches!(t.ty, PgType::Json | PgType::Jsonb))
}

impl Inferer<'_> {
    /// Infers `left op right` and rewrites it where SQLite's operator would differ.
    pub(super) fn binary_expr(&mut self, expr: &mut Expr, want: Option<Ty>) -> Typed {
        let Expr::BinaryOp { left, op, right } = expr else {
            return Ok(None);
        };
        let op = op.clone();
        let (t, rewrite) = self.binary(left, &op, right, want)?;
        let rewrite = match (&op, rewrite) {
            (_, Some(r)) => Some(r),
            (BinaryOperator::Divide | BinaryOperator::Modulo, None) => {
                let integral = t.is_none_or(|t| is_integer(t.ty));
                let safe_literal = integral
                    && matches!(right.as_ref(), Expr::Value(v)
                        if matches!(&v.value, Value::Number(n, _) if n.parse::<i64>().is_ok_and(|n| n != 0)));
                let name = if op == BinaryOperator::Modulo {
                    "__pg_mod"
                } else {
                    "__pg_div"
                };
                (!safe_literal).then(|| Rewrite::Call {
                    name,
                    swap: false,
                    extra: vec![i64::from(!integral)],
                })
            }
            _ => None,
        };
        match rewrite {
            None => {}
            Some(Rewrite::Call { name, swap, extra }) => {
                let l = std::mem::replace(left.as_mut(), null());
                let r = std::mem::replace(right.as_mut(), null());
                let mut args = if swap { vec![r, l] } else { vec![l, r] };
                args.extend(extra.into_iter().map(|v| value_expr(SqlValue::Int(v))));
                *expr = function_call(name, args);
            }
        }
        Ok(t)
    }

    fn binary(
        &mut self,
        left: &mut Expr,
        op: &BinaryOperator,
        right: &mut Expr,
        want: Option<Ty>,
    ) -> Result<(Option<Ty>, Option<Rewrite>), DbError> {
        use BinaryOperator as B;
        let bool_ty = Some(Ty::of(PgType::Bool));
        if matches!(op, B::AtArrow | B::ArrowAt | B::PGOverlap)
            && let Some(array) = self.array_operand(left, right)?
        {
            let name = if matches!(op, B::PGOverlap) {
                "__pg_array_overlap"
            } else {
                "__pg_array_contains_all"
            };
            return Ok((
                bool_ty,
                Some(Rewrite::Call {
                    name,
                    swap: matches!(op, B::ArrowAt),
                    extra: vec![i64::from(array.oid)],
                }),
            ));
        }
        match op {
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq | B::Spaceship => {
                let (lt, rt) = self.pair(left, right)?;
                if let Some(array) = lt.or(rt).and_then(Ty::array_type)
                    && !matches!(op, B::Eq | B::NotEq)
                {
                    // Equal arrays print alike; their order is not their text's.
                    return Err(unsupported(format!("operator {op} on {}", array.name())));
                }
                let wider = widest_temporal(&[lt, rt]);
                widen_temporal(left, lt, wider);
                widen_temporal(right, rt, wider);
                if [lt, rt]
                    .iter()
                    .flatten()
                    .any(|t| t.ty == PgType::Jsonb && !t.is_carried_as_text())
                {
                    // jsonb compares as Postgres orders it (`1.0` equals `1`, `[3]` is above
                    // `[1, 2]`), not as its text.
                    for side in [&mut *left, &mut *right] {
                        let value = std::mem::replace(side, null());
                        *side = function_call("__pg_jsonb_key", vec![value]);
                    }
                    return Ok((bool_ty, None));
                }
                if lt.or(rt).is_some_and(Ty::is_interval) {
                    // Intervals compare as Postgres compares them (a month is 30 days, a day
                    // 24 hours): `__pg_interval_cmp(a, b) op 0`.
                    let l = std::mem::replace(left, null());
                    let r = std::mem::replace(right, null());
                    *left = function_call("__pg_interval_cmp", vec![l, r]);
                    *right = value_expr(SqlValue::Int(0));
                }
                Ok((bool_ty, None))
            }
            B::And | B::Or | B::Xor => {
                self.expr(left, bool_ty)?;
                self.expr(right, bool_ty)?;
                Ok((bool_ty, None))
            }
            B::StringConcat => {
                let lt = self.expr(left, None)?;
                let rt = self.expr(right, lt.filter(|t| is_json(Some(*t))))?;
                if is_json(lt) || is_json(rt) {
                    if lt.is_none() {
                        self.expr(left, Some(Ty::of(PgType::Jsonb)))?;
                    }
                    return Ok((
                        Some(Ty::of(PgType::Jsonb)),
                        call("__pg_jsonb_concat", vec![]),
                    ));
                }
                let (la, ra) = (lt.and_then(Ty::array_type), rt.and_then(Ty::array_type));
                if let Some(array) = la.or(ra) {
                    // An untyped literal beside an array is an array, as in Postgres.
                    for (side, ty) in [(&mut *left, lt), (&mut *right, rt)] {
                        if ty.is_none() {
                            self.expr(side, Some(Ty::array(array)))?;
                        }
                    }
                    let shape = match (la, ra, lt.is_none(), rt.is_none()) {
                        (Some(_), Some(_), _, _) | (_, _, true, _) | (_, _, _, true) => 0,
                        (Some(_), None, _, _) => 1,
                        _ => 2,
                    };
                    if shape == 0 && la.zip(ra).is_some_and(|(a, b)| a.elem != b.elem) {
                        return Err(DbError::new(
                            "42883",
                            format!(
                                "operator does not exist: {} || {}",
                                la.map_or(String::new(), ArrayType::name),
                                ra.map_or(String::new(), ArrayType::name)
                            ),
                        ));
                    }
                    return Ok((
                        Some(Ty::array(array)),
                        Some(Rewrite::Call {
                            name: "__pg_array_concat",
                            swap: false,
                            extra: vec![i64::from(array.oid), shape],
                        }),
                    ));
                }
                if lt.is_none() {
                    self.expr(left, Some(Ty::of(PgType::Text)))?;
                }
                if rt.is_none() {
                    self.expr(right, Some(Ty::of(PgType::Text)))?;
                }
                // A boolean is stored as 1 or 0; concatenated it reads `true` or `false`.
                for (side, ty) in [(&mut *left, lt), (&mut *right, rt)] {
                    if ty.is_some_and(|t| t.ty == PgType::Bool) {
                        let value = std::mem::replace(side, Expr::value(Value::Null));
                        *side = function_call("__pg_bool_text", vec![value]);
                    }
                    super::infer::numeric_text_with_scale(side, ty);
                }
                Ok((Some(Ty::of(PgType::Text)), None))
            }
            B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo => {
                self.arithmetic(left, op, right, want)
            }
            B::PGExp => {
                // `^`: double precision, or numeric when either side is numeric.
                let lt = self.expr(left, None)?;
                let rt = self.expr(right, lt.filter(|t| is_numeric(t.ty)))?;
                if lt.is_none() {
                    self.expr(left, rt.filter(|t| is_numeric(t.ty)))?;
                }
                let numeric = [lt, rt].iter().flatten().any(|t| t.ty == PgType::Numeric);
                let ty = if numeric {
                    PgType::Numeric
                } else {
                    PgType::Float8
                };
                Ok((Some(Ty::of(ty)), call("__pg_power", vec![])))
            }
            B::Arrow | B::LongArrow => {
                let lt = self.expr(left, Some(Ty::of(PgType::Jsonb)))?;
                self.expr(right, Some(Ty::of(PgType::Text)))?;
                // SQLite's `->`/`->>` print JSON minified and give SQL numbers; Postgres's
                // give jsonb text (its own spacing) and text.
                let as_text = matches!(op, B::LongArrow);
                let ty = if as_text {
                    Ty::of(PgType::Text)
                } else {
                    lt.map(|t| Ty::of(t.ty))
                        .filter(|t| is_json(Some(*t)))
                        .unwrap_or(Ty::of(PgType::Jsonb))
                };
                Ok((Some(ty), call("__pg_json_get", vec![i64::from(as_text)])))
            }
            B::HashArrow | B::HashLongArrow => {
                super::functions::text_array_arg(right);
                self.expr(left, Some(Ty::of(PgType::Jsonb)))?;
                self.expr(right, Some(Ty::of(PgType::Text)))?;
                let as_text = matches!(op, B::HashLongArrow);
                let ty = if as_text { PgType::Text } else { PgType::Jsonb };
                Ok((
                    Some(Ty::of(ty)),
                    call("__pg_json_path", vec![i64::from(as_text)]),
                ))
            }
            B::Question | B::QuestionPipe | B::QuestionAnd => {
                super::functions::text_array_arg(right);
                self.expr(left, Some(Ty::of(PgType::Jsonb)))?;
                self.expr(right, Some(Ty::of(PgType::Text)))?;
                let name = match op {
                    B::Question => "__pg_jsonb_exists",
                    B::QuestionPipe => "__pg_jsonb_exists_any",
                    _ => "__pg_jsonb_exists_all",
                };
                Ok((bool_ty, call(name, vec![])))
            }
            B::AtArrow | B::ArrowAt => {
                self.expr(left, Some(Ty::of(PgType::Jsonb)))?;
                self.expr(right, Some(Ty::of(PgType::Jsonb)))?;
                Ok((
                    bool_ty,
                    Some(Rewrite::Call {
                        name: "__pg_jsonb_contains",
                        swap: matches!(op, B::ArrowAt),
                        extra: vec![],
                    }),
                ))
            }
            B::PGRegexMatch
            | B::PGRegexIMatch
            | B::PGRegexNotMatch
            | B::PGRegexNotIMatch
            | B::PGCustomBinaryOperator(_) => {
                self.expr(left, Some(Ty::of(PgType::Text)))?;
                self.expr(right, Some(Ty::of(PgType::Text)))?;
                Ok((bool_ty, None))
            }
            B::BitwiseAnd
            | B::BitwiseOr
            | B::PGBitwiseXor
            | B::PGBitwiseShiftLeft
            | B::PGBitwiseShiftRight => {
                // Integers: the left operand's type (a shift's count is an int4).
                let lt = self.expr(left, want.filter(|t| is_integer(t.ty)))?;
                let shift = matches!(op, B::PGBitwiseShiftLeft | B::PGBitwiseShiftRight);
                let rt = if shift {
                    self.expr(right, Some(Ty::of(PgType::Int4)))?
                } else {
                    self.expr(right, lt)?
                };
                let ty = lt.or(if shift { None } else { rt });
                if lt.is_none() && ty.is_some() {
                    self.expr(left, ty)?;
                }
                Ok((
                    ty.map(|t| Ty::of(t.ty)).or(Some(Ty::of(PgType::Int4))),
                    None,
                ))
            }
            _ => {
                self.expr(left, None)?;
                self.expr(right, None)?;
                Ok((None, None))
            }
        }
    }

    /// jsonb `-` a key (text), an index (integer) or keys (text[]).
    fn jsonb_minus(&mut self, right: &mut Expr) -> Result<(Option<Ty>, Option<Rewrite>), DbError> {
        let rt = match self.expr(right, None)? {
            None => self.expr(right, Some(Ty::of(PgType::Text)))?,
            some => some,
        };
        let mode = match rt {
            Some(t) if t.array_type().is_some_and(|a| a.elem == PgType::Text) => 2,
            Some(t) if is_integer(t.ty) => 1,
            Some(t) if matches!(t.ty, PgType::Text | PgType::Varchar | PgType::Bpchar) => 0,
            other => {
                return Err(DbError::new(
                    "42883",
                    format!(
                        "operator does not exist: jsonb - {}",
                        other.map_or("unknown".to_owned(), |t| t
                            .array_type()
                            .map_or(t.ty.name().to_owned(), ArrayType::name))
                    ),
                ));
            }
        };
        Ok((
            Some(Ty::of(PgType::Jsonb)),
            Some(Rewrite::Call {
                name: "__pg_jsonb_delete",
                swap: false,
                extra: vec![mode],
            }),
        ))
    }

    fn arithmetic(
        &mut self,
        left: &mut Expr,
        op: &BinaryOperator,
        right: &mut Expr,
        want: Option<Ty>,
    ) -> Result<(Option<Ty>, Option<Rewrite>), DbError> {
        use BinaryOperator as B;
        let want = want.filter(|t| is_numeric(t.ty));
        let lt = self.expr(left, None)?;
        if matches!(op, B::Minus) && lt.is_some_and(|t| t.ty == PgType::Jsonb) {
            return self.jsonb_minus(right);
        }
        let right_want = match temporal(lt) {
            // `ts + '1 day'`: the untyped literal is an interval.
            Some(Temporal::Timestamp | Temporal::Timestamptz)
                if string_literal(right).is_some() =>
            {
                if matches!(op, B::Plus) {
                    Some(Ty::interval())
                } else {
                    lt
                }
            }
            Some(Temporal::Date) if string_literal(right).is_some() => lt,
            // `time + '1 hour'`: the untyped literal is an interval.
            Some(Temporal::Time) if matches!(op, B::Plus) && string_literal(right).is_some() => {
                Some(Ty::interval())
            }
            _ => lt.filter(|t| is_numeric(t.ty)).or(want),
        };
        let rt = self.expr(right, right_want)?;
        let lt = match lt {
            None => {
                let w = match temporal(rt) {
                    Some(Temporal::Interval) => Some(Ty::interval()),
                    Some(Temporal::Integer) | None => rt.or(want),
                    _ => rt,
                };
                self.expr(left, w)?
            }
            some => some,
        };
        let (l, r) = (temporal(lt), temporal(rt));
        let datetime = |k: Option<Temporal>| {
            matches!(
                k,
                Some(
                    Temporal::Date
                        | Temporal::Timestamp
                        | Temporal::Timestamptz
                        | Temporal::Time
                        | Temporal::Interval
                )
            )
        };
        if datetime(l) || datetime(r) {
            return self.temporal_arithmetic(op, l, r);
        }
        for t in [lt, rt].into_iter().flatten() {
            if !is_numeric(t.ty) && !matches!(t.ty, PgType::Unknown) {
                return Err(DbError::new(
                    "42883",
                    format!(
                        "operator does not exist: {} {op} {}",
                        lt.map(|t| t.ty.name()).unwrap_or("unknown"),
                        rt.map(|t| t.ty.name()).unwrap_or("unknown")
                    ),
                ));
            }
        }
        let ty = match (lt, rt) {
            (Some(a), Some(b)) => {
                let mut widest = if numeric_rank(a.ty) >= numeric_rank(b.ty) {
                    a.ty
                } else {
                    b.ty
                };
                // real with anything but real resolves to the double precision operators.
                if widest == PgType::Float4 && a.ty != b.ty {
                    widest = PgType::Float8;
                }
                // Postgres's numeric keeps a scale: the larger for + and -, the sum for *.
                let scale = match (a.scale(), b.scale(), op) {
                    (Some(x), Some(y), B::Plus | B::Minus) => Some(x.max(y)),
                    (Some(x), Some(y), B::Multiply) => Some(x + y),
                    _ => None,
                };
                match (widest, scale) {
                    (PgType::Numeric, Some(s)) => Some(Ty::numeric_scale(s.min(1000))),
                    (ty, _) => Some(Ty::of(ty)),
                }
            }
            (a, b) => a.or(b).map(|t| Ty::of(t.ty)),
        };
        if matches!(op, B::Divide) && ty.is_some_and(|t| t.ty == PgType::Numeric) {
            // Postgres's numeric division picks its scale from the operands' values: exact
            // decimal division, printed with that scale where it is a result column.
            let scale = |t: Option<Ty>| t.and_then(Ty::scale).map(i64::from).unwrap_or(-1);
            let ty = literal_quotient_scale(left, lt, right, rt)
                .map(Ty::numeric_scale)
                .unwrap_or(Ty::of(PgType::Numeric));
            return Ok((
                Some(ty),
                call("__pg_numeric_div", vec![scale(lt), scale(rt), 0]),
            ));
        }
        // SQLite widens an integer that overflows to a real; Postgres raises 22003 for the
        // result's type (2147483647::int + 1 is out of range for integer).
        if let Some(result) = ty.filter(|t| is_integer(t.ty) && t.ty != PgType::Oid)
            && matches!(op, B::Plus | B::Minus | B::Multiply)
        {
            let code = match op {
                B::Plus => 0,
                B::Minus => 1,
                _ => 2,
            };
            return Ok((
                ty,
                call("__pg_int_arith", vec![code, i64::from(result.ty.oid())]),
            ));
        }
        Ok((ty, None))
    }

    fn temporal_arithmetic(
        &mut self,
        op: &BinaryOperator,
        l: Option<Temporal>,
        r: Option<Temporal>,
    ) -> Result<(Option<Ty>, Option<Rewrite>), DbError> {
        use BinaryOperator as B;
        use Temporal::{Date, Integer, Interval, Time, Timestamp, Timestamptz};
        let ts_type = |k: Temporal| match k {
            Timestamptz => PgType::Timestamptz,
            _ => PgType::Timestamp,
        };
        let oid = |ty: PgType| i64::from(ty.oid());
        let result = match (op, l, r) {
            (B::Plus, Some(Date), Some(Integer)) => {
                (Ty::of(PgType::Date), call("__pg_date_add", vec![1]))
            }
            (B::Plus, Some(Integer), Some(Date)) => (
                Ty::of(PgType::Date),
                Some(Rewrite::Call {
                    name: "__pg_date_add",
                    swap: true,
                    extra: vec![1],
                }),
            ),
            (B::Minus, Some(Date), Some(Integer)) => {
                (Ty::of(PgType::Date), call("__pg_date_add", vec![-1]))
            }
            (B::Minus, Some(Date), Some(Date)) => {
                (Ty::of(PgType::Int4), call("__pg_date_diff", vec![]))
            }
            (B::Plus | B::Minus, Some(k @ (Date | Timestamp | Timestamptz)), Some(Interval)) => {
                let ty = ts_type(k);
                let sign = if matches!(op, B::Plus) { 1 } else { -1 };
                (Ty::of(ty), call("__pg_ts_interval", vec![sign, oid(ty)]))
            }
            (B::Plus, Some(Interval), Some(k @ (Date | Timestamp | Timestamptz))) => {
                let ty = ts_type(k);
                (
                    Ty::of(ty),
                    Some(Rewrite::Call {
                        name: "__pg_ts_interval",
                        swap: true,
                        extra: vec![1, oid(ty)],
                    }),
                )
            }
            // A time added to a date or timestamp moves it as an interval of that length
            // would: the stored `10:30:00` reads as one.
            (B::Plus | B::Minus, Some(k @ (Date | Timestamp | Timestamptz)), Some(Time)) => {
                let ty = ts_type(k);
                let sign = if matches!(op, B::Plus) { 1 } else { -1 };
                (Ty::of(ty), call("__pg_ts_interval", vec![sign, oid(ty)]))
            }
            (B::Plus, Some(Time), Some(Date)) => (
                Ty::of(PgType::Timestamp),
                Some(Rewrite::Call {
                    name: "__pg_ts_interval",
                    swap: true,
                    extra: vec![1, oid(PgType::Timestamp)],
                }),
            ),
            (B::Plus | B::Minus, Some(Time), Some(Interval)) => {
                let sign = if matches!(op, B::Plus) { 1 } else { -1 };
                (Ty::of(PgType::Time), call("__pg_time_interval", vec![sign]))
            }
            (B::Plus, Some(Interval), Some(Time)) => (
                Ty::of(PgType::Time),
                Some(Rewrite::Call {
                    name: "__pg_time_interval",
                    swap: true,
                    extra: vec![1],
                }),
            ),
            // Both read as intervals of their time of day.
            (B::Minus, Some(Time), Some(Time)) => {
                (Ty::interval(), call("__pg_interval_add", vec![-1]))
            }
            (B::Plus | B::Minus, Some(Interval), Some(Interval)) => {
                let sign = if matches!(op, B::Plus) { 1 } else { -1 };
                (Ty::interval(), call("__pg_interval_add", vec![sign]))
            }
            (B::Multiply, Some(Interval), Some(Integer) | None) => {
                (Ty::interval(), call("__pg_interval_mul", vec![]))
            }
            (B::Multiply, Some(Integer) | None, Some(Interval)) => (
                Ty::interval(),
                Some(Rewrite::Call {
                    name: "__pg_interval_mul",
                    swap: true,
                    extra: vec![],
                }),
            ),
            (B::Divide, Some(Interval), Some(Integer) | None) => {
                (Ty::interval(), call("__pg_interval_div", vec![]))
            }
            (B::Minus, Some(Date | Timestamp | Timestamptz), Some(Timestamp | Timestamptz))
            | (B::Minus, Some(Timestamp | Timestamptz), Some(Date)) => {
                (Ty::interval(), call("__pg_ts_diff", vec![]))
            }
            _ => {
                return Err(unsupported(format!(
                    "this date/time arithmetic ({op} on {} and {})",
                    name(l),
                    name(r)
                )));
            }
        };
        Ok((Some(result.0), result.1))
    }
}

/// A numeric literal (possibly signed) as an exact decimal shown with at least `ty`'s scale.
fn literal_decimal(e: &Expr, ty: Option<Ty>) -> Option<Dec> {
    let (negative, inner) = match e {
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => (true, expr.as_ref()),
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => (false, expr.as_ref()),
        other => (false, other),
    };
    let Expr::Value(v) = inner else {
        return None;
    };
    let Value::Number(text, _) = &v.value else {
        return None;
    };
    let mut dec = Dec::parse(text)?;
    dec.negative = negative && !dec.digits.is_empty();
    if let Some(scale) = ty.and_then(Ty::scale) {
        dec.dscale = dec.dscale.max(i64::from(scale));
    }
    Some(dec)
}

/// The scale of a quotient of two literals, known before it runs.
fn literal_quotient_scale(
    left: &Expr,
    lt: Option<Ty>,
    right: &Expr,
    rt: Option<Ty>,
) -> Option<i32> {
    let a = literal_decimal(left, lt)?;
    let b = literal_decimal(right, rt)?;
    if b.digits.is_empty() {
        return None;
    }
    i32::try_from(div_scale(&a, &b)).ok()
}

fn name(k: Option<Temporal>) -> &'static str {
    match k {
        Some(Temporal::Date) => "date",
        Some(Temporal::Timestamp) => "timestamp",
        Some(Temporal::Timestamptz) => "timestamptz",
        Some(Temporal::Time) => "time",
        Some(Temporal::Interval) => "interval",
        Some(Temporal::Integer) => "integer",
        None => "unknown",
    }
}

impl Inferer<'_> {
    /// The array type of `left op right` when either side is an array (the other, when
    /// untyped, becomes one of the same type); `None`, with nothing typed, otherwise.
    fn array_operand(
        &mut self,
        left: &mut Expr,
        right: &mut Expr,
    ) -> Result<Option<ArrayType>, DbError> {
        let probe = |inf: &mut Self, side: &Expr| -> Result<Option<ArrayType>, DbError> {
            Ok(inf.expr(&mut side.clone(), None)?.and_then(Ty::array_type))
        };
        let Some(array) = probe(self, left)?.or(probe(self, right)?) else {
            return Ok(None);
        };
        let want = Some(Ty::array(array));
        let lt = self.expr(left, want)?.and_then(Ty::array_type);
        let rt = self.expr(right, want)?.and_then(Ty::array_type);
        match (lt, rt) {
            (Some(a), Some(b)) if a.elem == b.elem => Ok(Some(array)),
            _ => Err(DbError::new(
                "42883",
                format!(
                    "operator does not exist: {} and {} are not arrays of one type",
                    left, right
                ),
            )),
        }
    }
}
