//! Ordered-set aggregates: `percentile_cont`, `percentile_disc` and `mode` with
//! `WITHIN GROUP (ORDER BY v)`, which SQLite has no syntax for.
//!
//! `percentile_cont(0.5) WITHIN GROUP (ORDER BY v DESC)` becomes
//! `__pg_percentile_cont(v, 0.5 ORDER BY v DESC NULLS LAST)`: SQLite feeds the aggregate its
//! rows sorted (as it sorts the query's own ORDER BY), the aggregate skips NULLs and picks
//! or interpolates the rows. A fraction given as an array (`ARRAY[0.25, 0.5]`) gives an
//! array of results (`__pg_percentile_cont_multi`). A single fraction is also checked
//! outside the aggregate (`__pg_percentile_check(0.5, ...)`), so that it is refused as in
//! Postgres when no row comes.

use mycelium_protocol::DbError;
use mycelium_protocol::types::{PgType, SqlValue};
use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, OrderBySort,
};

use super::infer::Inferer;
use super::syntax::value_expr;
use crate::catalog::Ty;
use crate::errors::unsupported;
use crate::functions::array::ArrayType;

type Typed = Result<Option<Ty>, DbError>;

fn no_such_function(name: &str) -> DbError {
    DbError::new("42883", format!("function {name} does not exist")).with_hint(
        "No function matches the given name and argument types. You might need to add \
         explicit type casts.",
    )
}

fn is_array_literal(e: &Expr) -> bool {
    match e {
        Expr::Array(_) => true,
        Expr::Nested(inner) => is_array_literal(inner),
        _ => false,
    }
}

impl Inferer<'_> {
    /// Rewrites an ordered-set aggregate call; `Ok(None)` leaves other `WITHIN GROUP` calls
    /// (the hypothetical-set ones) to be refused.
    pub(super) fn ordered_set(&mut self, name: &str, f: &mut Function) -> Typed {
        if !matches!(name, "percentile_cont" | "percentile_disc" | "mode") || f.over.is_some() {
            return Ok(None);
        }
        let FunctionArguments::List(list) = &mut f.args else {
            return Err(no_such_function(name));
        };
        let direct = list.args.len();
        if (name == "mode") != (direct == 0) || direct > 1 || f.within_group.len() != 1 {
            return Err(no_such_function(name));
        }
        let mut order = f.within_group.remove(0);
        if matches!(order.options.sort, Some(OrderBySort::Using(_))) {
            return Err(unsupported("WITHIN GROUP (ORDER BY ... USING)"));
        }
        let value = self.expr(&mut order.expr, None)?;
        if value
            .is_some_and(|t| t.is_carried_as_text() || matches!(t.ty, PgType::Json | PgType::Jsonb))
        {
            // SQLite would sort their text.
            return Err(unsupported(format!(
                "{name}() over arrays, intervals and json"
            )));
        }
        let continuous = name == "percentile_cont";
        if continuous
            && value.is_some_and(|t| !super::syntax::is_numeric(t.ty) || t.ty == PgType::Oid)
        {
            return Err(no_such_function(name));
        }
        let mut multi = false;
        let mut args = vec![order.expr.clone()];
        let mut args_fraction = None;
        if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(fraction))) = list.args.first_mut() {
            // An array literal keeps its own element type, as Postgres resolves it before
            // the call (`ARRAY[NULL]` is text[] and matches no percentile function).
            let want = (!is_array_literal(fraction)).then_some(Ty::of(PgType::Float8));
            let ty = self.expr(fraction, want)?;
            multi = ty.is_some_and(|t| t.array_type().is_some());
            if ty.is_some_and(|t| {
                !t.array_type().map_or(super::syntax::is_numeric(t.ty), |a| {
                    super::syntax::is_numeric(a.elem)
                })
            }) {
                return Err(no_such_function(name));
            }
            args.push(fraction.clone());
            args_fraction = Some(fraction.clone());
        } else if direct == 1 {
            return Err(no_such_function(name));
        }
        if let Some(filter) = &mut f.filter {
            self.expr(filter, Some(Ty::of(PgType::Bool)))?;
        }
        let result = if continuous {
            Ty::of(PgType::Float8)
        } else {
            value.unwrap_or(Ty::of(PgType::Text))
        };
        if multi && !continuous {
            // The elements print as the value's type does (`2.00` for numeric(10,2)).
            args.push(value_expr(SqlValue::Int(i64::from(result.ty.oid()))));
            args.push(value_expr(SqlValue::Int(i64::from(result.typmod))));
        }
        order.options.nulls_first = Some(false);
        list.args = args
            .into_iter()
            .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
            .collect();
        list.clauses = vec![FunctionArgumentClause::OrderBy(vec![order])];
        let suffix = if multi { "_multi" } else { "" };
        f.name = ObjectName::from(vec![Ident::new(format!("__pg_{name}{suffix}"))]);
        if !multi {
            if let Some(fraction) = args_fraction {
                // Postgres checks a single fraction even when no row comes (the aggregate
                // never sees it then): `__pg_percentile_check(fraction, aggregate)`.
                let check = Function {
                    name: ObjectName::from(vec![Ident::new("__pg_percentile_check")]),
                    uses_odbc_syntax: false,
                    parameters: FunctionArguments::None,
                    args: FunctionArguments::None,
                    within_group: Vec::new(),
                    filter: None,
                    null_treatment: None,
                    over: None,
                };
                let aggregate = std::mem::replace(f, check);
                f.args = FunctionArguments::List(FunctionArgumentList {
                    duplicate_treatment: None,
                    args: [fraction, Expr::Function(aggregate)]
                        .into_iter()
                        .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                        .collect(),
                    clauses: Vec::new(),
                });
            }
            return Ok(Some(result));
        }
        ArrayType::of(result.ty)
            .map(|array| Some(Ty::array(array)))
            .ok_or_else(|| DbError::new("42P18", "could not determine polymorphic type"))
    }
}
