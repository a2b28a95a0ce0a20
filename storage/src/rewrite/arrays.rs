//! Arrays in statements: typed as [`Ty::array`], carried as their Postgres text form, read
//! and built by the functions of `functions::array`, which take the array type's OID.
//!
//! `unnest` and `generate_subscripts` in a select list become scalars of a row position,
//! and the select joins `json_each(__pg_srf_rows(<set lengths>)) AS __srf` for the
//! positions (see `functions::array`); SQLite lets a table-valued function read the columns
//! of the tables before it, as Postgres evaluates the calls once per input row.

use std::ops::ControlFlow;

use mycelium_protocol::DbError;
use mycelium_protocol::types::{PgType, SqlValue};
use sqlparser::ast::{
    BinaryOperator, DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentClause, FunctionArguments, Ident, ObjectName, OrderBySort, Query, Select,
    TableWithJoins, UnaryOperator, Value, ValueWithSpan, VisitMut, VisitorMut,
};

use super::infer::{Inferer, Rel, function_call, ident_name, value_expr};
use super::syntax::{json_each_of, numeric_rank};
use crate::catalog::Ty;
use crate::errors::unsupported;
use crate::functions::array::ArrayType;

type Typed = Result<Option<Ty>, DbError>;

/// The relation joined for the row positions of set-returning functions.
pub(super) const SRF_RELATION: &str = "__srf";

fn null() -> Expr {
    Expr::Value(ValueWithSpan::from(Value::Null))
}

fn oid(array: ArrayType) -> Expr {
    value_expr(SqlValue::Int(i64::from(array.oid)))
}

/// `__srf.key`: the row position (from 0) of the set-returning functions.
pub(super) fn position() -> Expr {
    Expr::CompoundIdentifier(vec![Ident::new(SRF_RELATION), Ident::new("key")])
}

fn arg_exprs(f: &mut Function) -> Vec<&mut Expr> {
    match &mut f.args {
        FunctionArguments::List(list) => list
            .args
            .iter_mut()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Replaces the call by `name(args)`, keeping its clauses (an aggregate's `ORDER BY`).
pub(super) fn recall(f: &mut Function, name: &str, args: Vec<Expr>) {
    f.name = ObjectName::from(vec![Ident::new(name)]);
    if let FunctionArguments::List(list) = &mut f.args {
        list.args = args
            .into_iter()
            .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
            .collect();
    }
}

/// Whether `expr` is `ARRAY(subquery)`.
pub(super) fn is_array_subquery(expr: &Expr) -> bool {
    matches!(expr, Expr::Function(f)
        if matches!(f.args, FunctionArguments::Subquery(_))
            && f.name.to_string().eq_ignore_ascii_case("array"))
}

impl Inferer<'_> {
    /// `ARRAY(subquery)`: the subquery's one column aggregated into an array (`{}` when it
    /// returns no rows), as `(SELECT coalesce(__pg_array_agg(v, type), '{}') FROM (subquery))`.
    pub(super) fn array_subquery(&mut self, expr: &mut Expr) -> Typed {
        let Expr::Function(f) = expr else {
            return Ok(None);
        };
        let FunctionArguments::Subquery(query) = &mut f.args else {
            return Ok(None);
        };
        let columns = self.query(query, None)?;
        let [column] = columns.as_slice() else {
            return Err(DbError::new(
                "42601",
                "subquery must return only one column",
            ));
        };
        if column.ty.array_type().is_some() {
            return Err(unsupported("multidimensional arrays"));
        }
        let array = ArrayType::of(column.ty.ty)
            .ok_or_else(|| DbError::new("42P18", "could not determine polymorphic type"))?;
        let sqlparser::ast::SetExpr::Select(select) = query.body.as_mut() else {
            return Err(unsupported("ARRAY over UNION/INTERSECT/EXCEPT"));
        };
        if let Some(item) = select.projection.first_mut() {
            let value = match item {
                sqlparser::ast::SelectItem::UnnamedExpr(e)
                | sqlparser::ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                    std::mem::replace(e, null())
                }
                _ => return Err(unsupported("ARRAY(SELECT * ...)")),
            };
            *item = sqlparser::ast::SelectItem::ExprWithAlias {
                expr: value,
                alias: Ident::new("__pg_elem"),
            };
        }
        let sql = format!(
            "(SELECT coalesce(__pg_array_agg(__pg_elem, {}), '{{}}') FROM ({query}) AS __pg_array)",
            array.oid
        );
        *expr = sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
            .try_with_sql(&sql)
            .and_then(|mut parser| parser.parse_expr())
            .map_err(|e| DbError::new("XX000", format!("ARRAY(subquery): {e}")))?;
        Ok(Some(Ty::array(array)))
    }

    /// Calls that take or make arrays; `None` when `name` is none of them or its argument is
    /// not a known array (the call is then refused as before).
    pub(super) fn array_call(
        &mut self,
        name: &str,
        f: &mut Function,
        types: &[Option<Ty>],
    ) -> Option<Typed> {
        let array = types.first().copied().flatten().and_then(Ty::array_type);
        let n = types.len();
        if let Some(done) = self.array_edit(name, f, types) {
            return Some(done);
        }
        if matches!(name, "unnest" | "generate_subscripts") && self.srf_rows.is_none() {
            return Some(Err(unsupported(format!(
                "set-returning function {name}() outside a select list"
            ))));
        }
        let taken: Vec<Expr> = match (name, array) {
            ("array_agg", _) => return Some(self.array_agg(f, types)),
            ("unnest", Some(_)) if n == 1 => take_args(f),
            ("generate_subscripts", Some(_)) if n == 2 || n == 3 => take_args(f),
            ("array_length" | "array_lower" | "array_upper", Some(_)) if n == 2 => take_args(f),
            ("cardinality", Some(_)) if n == 1 => take_args(f),
            ("array_to_string", Some(_)) if n == 2 || n == 3 => take_args(f),
            _ => return None,
        };
        let array = array?;
        let mut args = taken.into_iter();
        let value = args.next().unwrap_or_else(null);
        let rest: Vec<Expr> = args.collect();
        let int4 = Some(Ty::of(PgType::Int4));
        Some(match name {
            "unnest" => {
                self.srf(
                    function_call("__pg_unnest_count", vec![value.clone(), oid(array)]),
                    f,
                    "__pg_unnest",
                    vec![value, oid(array), position()],
                );
                Ok(Some(Ty::of(array.elem)))
            }
            "generate_subscripts" => {
                let mut rest = rest.into_iter();
                let dim = rest.next().unwrap_or_else(null);
                let reverse = rest.next().unwrap_or_else(|| value_expr(SqlValue::Int(0)));
                self.srf(
                    function_call(
                        "__pg_subscripts_count",
                        vec![value.clone(), oid(array), dim.clone()],
                    ),
                    f,
                    "__pg_subscript",
                    vec![value, oid(array), dim, position(), reverse],
                );
                Ok(int4)
            }
            "cardinality" => {
                recall(f, "__pg_cardinality", vec![value, oid(array)]);
                Ok(int4)
            }
            "array_to_string" => {
                let mut args = vec![value, oid(array)];
                args.extend(rest);
                recall(f, "__pg_array_to_string", args);
                Ok(Some(Ty::of(PgType::Text)))
            }
            _ => {
                let mut args = vec![value, oid(array)];
                args.extend(rest);
                recall(f, &format!("__pg_{name}"), args);
                Ok(int4)
            }
        })
    }

    /// `array_append`, `array_prepend`, `array_cat`, `array_remove`, `array_position`.
    fn array_edit(&mut self, name: &str, f: &mut Function, types: &[Option<Ty>]) -> Option<Typed> {
        let array_at = |i: usize| types.get(i).copied().flatten().and_then(Ty::array_type);
        let (array, position) = match (name, types.len()) {
            ("array_append" | "array_remove" | "array_position" | "array_cat", 2) => {
                (array_at(0).or(array_at(1))?, 0)
            }
            ("array_prepend", 2) => (array_at(1)?, 1),
            _ => return None,
        };
        let mut args = take_args(f);
        let other = 1 - position;
        if let (Some(None), Some(arg)) = (types.get(other), args.get_mut(other)) {
            let want = if name == "array_cat" {
                Ty::array(array)
            } else {
                Ty::of(array.elem)
            };
            if let Err(e) = self.expr(arg, Some(want)) {
                return Some(Err(e));
            }
        }
        let oid_arg = oid(array);
        let mut args = args.into_iter();
        let (first, second) = (
            args.next().unwrap_or_else(null),
            args.next().unwrap_or_else(null),
        );
        let concat = |shape: i64| {
            vec![
                first.clone(),
                second.clone(),
                oid_arg.clone(),
                value_expr(SqlValue::Int(shape)),
            ]
        };
        Some(Ok(match name {
            "array_append" => {
                recall(f, "__pg_array_concat", concat(1));
                Some(Ty::array(array))
            }
            "array_prepend" => {
                recall(f, "__pg_array_concat", concat(2));
                Some(Ty::array(array))
            }
            "array_cat" => {
                recall(f, "__pg_array_concat", concat(0));
                Some(Ty::array(array))
            }
            "array_remove" => {
                recall(f, "__pg_array_remove", vec![first, oid_arg, second]);
                Some(Ty::array(array))
            }
            _ => {
                recall(f, "__pg_array_position", vec![first, oid_arg, second]);
                Some(Ty::of(PgType::Int4))
            }
        }))
    }

    /// `array_agg(x [ORDER BY ...])`: the aggregate takes the array type after the value.
    fn array_agg(&mut self, f: &mut Function, types: &[Option<Ty>]) -> Typed {
        if f.over.is_some() {
            return Err(unsupported("window function array_agg"));
        }
        if let FunctionArguments::List(list) = &f.args
            && matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct))
        {
            return Err(unsupported("array_agg(DISTINCT ...)"));
        }
        let [elem] = types else {
            return Err(DbError::new("42883", "function array_agg does not exist"));
        };
        let elem = elem.unwrap_or(Ty::of(PgType::Text));
        if elem.array_type().is_some() {
            return Err(unsupported("multidimensional arrays"));
        }
        let array = ArrayType::of(elem.ty)
            .ok_or_else(|| DbError::new("42P18", "could not determine polymorphic type"))?;
        let value = take_args(f).into_iter().next().unwrap_or_else(null);
        // The ORDER BY of the call stays: SQLite orders the rows an aggregate sees, with
        // NULLs placed as Postgres places them (last when ascending).
        if let FunctionArguments::List(list) = &mut f.args {
            for clause in &mut list.clauses {
                if let FunctionArgumentClause::OrderBy(exprs) = clause {
                    for e in exprs {
                        if e.options.nulls_first.is_none() {
                            e.options.nulls_first =
                                Some(matches!(e.options.sort, Some(OrderBySort::Desc)));
                        }
                    }
                }
            }
        }
        recall(f, "__pg_array_agg", vec![value, oid(array)]);
        Ok(Some(Ty::array(array)))
    }

    /// A set-returning call in a select list: `count` is its set's length, `name(args)` its
    /// value at the row position (`array_call` checked that such calls are allowed here).
    pub(super) fn srf(&mut self, count: Expr, f: &mut Function, name: &str, args: Vec<Expr>) {
        if let Some(counts) = self.srf_rows.as_mut() {
            counts.push(count);
        }
        recall(f, name, args);
    }

    /// After a select list with set-returning calls: joins their row positions.
    pub(super) fn join_srf_rows(
        &mut self,
        select: &mut Select,
        counts: Vec<Expr>,
    ) -> Result<(), DbError> {
        if counts.is_empty() {
            return Ok(());
        }
        let grouped = !matches!(
            &select.group_by,
            sqlparser::ast::GroupByExpr::Expressions(exprs, _) if exprs.is_empty()
        );
        if grouped || select.having.is_some() {
            return Err(unsupported("set-returning functions with GROUP BY"));
        }
        select.from.push(TableWithJoins {
            relation: json_each_of(
                function_call("__pg_srf_rows", counts),
                Ident::new(SRF_RELATION),
            ),
            joins: vec![],
        });
        // json_each has columns of its own (`id`, `key`, `value`, ...): the select's bare
        // column names must name their relations to stay unambiguous.
        if let Some(scope) = self.scopes.last() {
            qualify(select, scope);
        }
        // A `*` in the list must not take json_each's columns: a hidden relation has the
        // wildcards spelled out.
        self.push_rel(Rel {
            name: SRF_RELATION.to_owned(),
            cols: vec![],
            hidden: true,
            srf: false,
        });
        Ok(())
    }

    /// `ARRAY[a, b]` (not the list of `= ANY`): `__pg_array(type, a, b)`.
    pub(super) fn array_literal(&mut self, expr: &mut Expr, want: Option<Ty>) -> Typed {
        let Expr::Array(array) = expr else {
            return Ok(None);
        };
        let mut elem = want.and_then(Ty::array_type).map(|a| Ty::of(a.elem));
        let mut widest: Option<Ty> = None;
        let mut all_numeric = true;
        for item in &mut array.elem {
            let t = self.expr(item, elem)?;
            elem = elem.or(t);
            if let Some(t) = t {
                all_numeric &= numeric_rank(t.ty).is_some();
                if widest.is_none_or(|w| numeric_rank(t.ty) > numeric_rank(w.ty)) {
                    widest = Some(Ty::of(t.ty));
                }
            }
        }
        // Numbers of different types make an array of the widest (`ARRAY[0, 0.5]` is
        // numeric[]), as Postgres resolves the common type.
        let rank = |t: Option<Ty>| t.and_then(|t| numeric_rank(t.ty));
        if all_numeric && want.is_none() && rank(widest) > rank(elem) {
            elem = widest;
        }
        // Re-type leading untyped literals now that an element gave the type.
        if let Some(t) = elem {
            for item in &mut array.elem {
                self.fold_literal(item, t)?;
            }
        }
        let elem = elem.unwrap_or(Ty::of(PgType::Text));
        if elem.array_type().is_some() {
            return Err(unsupported("multidimensional arrays"));
        }
        let ty = ArrayType::of(elem.ty)
            .ok_or_else(|| DbError::new("42P18", "cannot determine type of empty array"))?;
        let mut args = vec![oid(ty)];
        args.append(&mut array.elem);
        *expr = function_call("__pg_array", args);
        Ok(Some(Ty::array(ty)))
    }

    /// `value::int2[]`: a text literal or parameter read in the array's syntax, or another
    /// array's elements converted.
    pub(super) fn array_cast(&mut self, mut inner: Expr, to: ArrayType) -> Result<Expr, DbError> {
        let source = self.expr(&mut inner, None)?;
        let from = source.and_then(Ty::array_type);
        if from == Some(to) {
            return Ok(Expr::Nested(Box::new(inner)));
        }
        if from.is_none() && source.is_some_and(|t| t.ty != PgType::Text) {
            return Err(DbError::new(
                "42846",
                format!(
                    "cannot cast type {} to {}",
                    source.map_or("unknown", |t| t.ty.name()),
                    to.name()
                ),
            ));
        }
        let from_oid = from.map_or(PgType::Text.oid(), |a| a.oid);
        Ok(function_call(
            "__pg_array_cast",
            vec![
                inner,
                value_expr(SqlValue::Int(i64::from(from_oid))),
                oid(to),
            ],
        ))
    }

    /// `x = ANY(array)` and `x <> ALL(array)` over an array value (lists and subqueries
    /// become `IN` later).
    pub(super) fn any_of_array(&mut self, expr: &mut Expr) -> Typed {
        let (left, op, right, all) = match expr {
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            } => (left, compare_op.clone(), right, false),
            Expr::AllOp {
                left,
                compare_op,
                right,
            } => (left, compare_op.clone(), right, true),
            _ => return Ok(None),
        };
        let mut right_ty = self.expr(right, None)?;
        if right_ty.is_none() {
            // `x = ANY($1)`: an untyped array takes the type of arrays of `x`, as in Postgres.
            let element = self.expr(left, None)?;
            if let Some(array) = element.and_then(|t| ArrayType::of(t.ty)) {
                right_ty = self.expr(right, Some(Ty::array(array)))?;
            }
        }
        let Some(array) = right_ty.and_then(Ty::array_type) else {
            return Err(unsupported(format!(
                "ANY/ALL over {right} (not an array of a known type)"
            )));
        };
        match (&op, all) {
            (BinaryOperator::Eq, false) | (BinaryOperator::NotEq, true) => {}
            _ => {
                return Err(unsupported(format!(
                    "{op} {}",
                    if all { "ALL" } else { "ANY" }
                )));
            }
        }
        self.expr(left, Some(Ty::of(array.elem)))?;
        let call = function_call(
            "__pg_array_contains",
            vec![
                std::mem::replace(right.as_mut(), null()),
                oid(array),
                std::mem::replace(left.as_mut(), null()),
            ],
        );
        *expr = if all {
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr: Box::new(Expr::Nested(Box::new(call))),
            }
        } else {
            call
        };
        Ok(Some(Ty::of(PgType::Bool)))
    }

    /// `array[i]`: one element; slices and several subscripts are refused.
    pub(super) fn array_subscript(
        &mut self,
        root: Expr,
        mut index: Expr,
        array: ArrayType,
    ) -> Result<Expr, DbError> {
        self.expr(&mut index, Some(Ty::of(PgType::Int4)))?;
        Ok(function_call(
            "__pg_array_get",
            vec![root, oid(array), index],
        ))
    }
}

/// Qualifies the bare column names of one select (not of its subqueries) that name a
/// column of one of its relations.
pub(super) fn qualify(select: &mut Select, scope: &[Rel]) {
    let _ = select.visit(&mut Qualify { scope, depth: 0 });
}

/// As [`qualify`], in one expression (an ORDER BY term).
pub(super) fn qualify_expr(expr: &mut Expr, scope: &[Rel]) {
    let _ = expr.visit(&mut Qualify { scope, depth: 0 });
}

struct Qualify<'a> {
    scope: &'a [Rel],
    depth: usize,
}

impl VisitorMut for Qualify<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if self.depth == 0
            && let Expr::Identifier(ident) = expr
        {
            let name = ident_name(ident);
            let owner = self.scope.iter().find_map(|rel| {
                let i = rel
                    .cols
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(&name))?;
                (!rel.name.is_empty()).then_some((rel, i))
            });
            // Terms inference does not type (an aggregate's ORDER BY) may still name a
            // set-returning function's column, or its single column by the relation's name.
            let srf_row = || {
                self.scope
                    .iter()
                    .find(|rel| rel.srf && rel.name == name && rel.cols.len() == 1)
            };
            match owner {
                Some((rel, i)) if rel.srf => *expr = super::srf::column_expr(&rel.name, i),
                Some((rel, _)) => {
                    *expr = Expr::CompoundIdentifier(vec![
                        Ident::with_quote('"', rel.name.clone()),
                        ident.clone(),
                    ]);
                }
                None => {
                    if let Some(rel) = srf_row() {
                        *expr = super::srf::column_expr(&rel.name, 0);
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

pub(super) fn take_args(f: &mut Function) -> Vec<Expr> {
    arg_exprs(f)
        .into_iter()
        .map(|e| std::mem::replace(e, null()))
        .collect()
}

/// The right side of `= ANY(...)` that `expr` turns into `IN`: a list or a subquery.
pub(super) fn is_list_or_subquery(right: &Expr) -> bool {
    match right {
        Expr::Array(_) | Expr::Subquery(_) => true,
        Expr::Nested(inner) => matches!(inner.as_ref(), Expr::Array(_)),
        _ => false,
    }
}
