//! Result types of function calls, as Postgres resolves them.

use mycelium_protocol::DbError;
use mycelium_protocol::types::PgType;
use mycelium_protocol::types::SqlValue;
use sqlparser::ast::{
    DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArguments, Ident, ObjectName, Value, ValueWithSpan,
};

use super::syntax::{function_call, value_expr};

use super::infer::Inferer;
use crate::catalog::Ty;
use crate::functions::array::ArrayType;

type Typed = Result<Option<Ty>, DbError>;

fn rename(f: &mut Function, name: &str) {
    f.name = ObjectName::from(vec![Ident::new(name)]);
}

fn args(f: &mut Function) -> Option<&mut Vec<FunctionArg>> {
    match &mut f.args {
        FunctionArguments::List(list) => Some(&mut list.args),
        _ => None,
    }
}

/// `__pg_to_json(value, type)`: the JSON form depends on the Postgres type (booleans).
fn to_json(arg: &mut FunctionArg, ty: Option<Ty>) {
    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
        let inner = std::mem::replace(e, Expr::Value(ValueWithSpan::from(Value::Null)));
        *e = json_value(inner, ty);
    }
}

/// The JSON text of `value`, of type `ty` (SQL NULL stays NULL).
pub(super) fn json_value(value: Expr, ty: Option<Ty>) -> Expr {
    let oid = ty.map(Ty::type_oid).unwrap_or(PgType::Text.oid());
    let mut args = vec![value, value_expr(SqlValue::Int(i64::from(oid)))];
    // A numeric's JSON number shows its scale (`2.50`).
    if let Some(t) = ty.filter(|t| t.ty == PgType::Numeric && t.typmod >= 0) {
        args.push(value_expr(SqlValue::Int(i64::from(t.typmod))));
    }
    function_call("__pg_to_json", args)
}

/// `ARRAY['a', 'b']` where a text array is expected (JSON paths and key lists) as the
/// text form of the array, which is what storage holds for one.
pub(super) fn text_array_arg(e: &mut Expr) {
    let mut inner = e;
    while let Expr::Nested(nested) = inner {
        inner = nested.as_mut();
    }
    if let Expr::Array(array) = inner {
        let elems = std::mem::take(&mut array.elem);
        *inner = function_call("__pg_text_array", elems);
    }
}

/// Calls whose SQLite form depends on argument types; returns the result type.
fn rewrite_call(name: &str, f: &mut Function, types: &[Option<Ty>]) -> Option<Ty> {
    let oid = |ty: PgType| value_expr(SqlValue::Int(i64::from(ty.oid())));
    let arg_ty = |i: usize| types.get(i).copied().flatten();
    match name {
        "string_agg"
            if matches!(
                &f.args,
                FunctionArguments::List(list)
                    if list.duplicate_treatment == Some(DuplicateTreatment::Distinct)
            ) =>
        {
            // SQLite's DISTINCT takes one argument only. Postgres gives the distinct values
            // sorted, or in the ORDER BY's order.
            let FunctionArguments::List(list) = &mut f.args else {
                return None;
            };
            list.duplicate_treatment = None;
            let ordered = list
                .clauses
                .iter()
                .any(|c| matches!(c, FunctionArgumentClause::OrderBy(_)));
            list.args
                .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(value_expr(
                    SqlValue::Int(i64::from(!ordered)),
                ))));
            rename(f, "__pg_string_agg_distinct");
            Some(Ty::of(PgType::Text))
        }
        "date_trunc" if types.len() == 3 => {
            // The third argument names the zone whose clock the value is truncated on.
            rename(f, "__pg_date_trunc_zone");
            Some(Ty::of(PgType::Timestamptz))
        }
        "date_trunc" if arg_ty(1).is_some_and(Ty::is_interval) => {
            rename(f, "__pg_date_trunc_interval");
            Some(Ty::interval())
        }
        "date_bin" if types.len() == 3 => {
            let ty = match arg_ty(1).map(|t| t.ty) {
                Some(PgType::Timestamp) => PgType::Timestamp,
                _ => PgType::Timestamptz,
            };
            rename(f, "__pg_date_bin");
            args(f)?.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(oid(ty))));
            Some(Ty::of(ty))
        }
        "date_part" if arg_ty(1).is_some_and(Ty::is_interval) => {
            rename(f, "__pg_date_part_interval");
            Some(Ty::of(PgType::Float8))
        }
        "date_part" if arg_ty(1).is_some_and(|t| t.ty == PgType::Time) => {
            rename(f, "__pg_date_part_time");
            Some(Ty::of(PgType::Float8))
        }
        "date_part" if types.len() == 2 => {
            if let Some(source) = arg_ty(1).filter(|t| t.ty != PgType::Unknown) {
                args(f)?.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(oid(source.ty))));
            }
            rename(f, "__pg_date_part");
            Some(Ty::of(PgType::Float8))
        }
        "timezone" if types.len() == 2 => {
            // timezone(zone, value) is `value AT TIME ZONE zone`: a timestamptz becomes the
            // local time in the zone, a timestamp a local time there read as a timestamptz.
            let to_local = match arg_ty(1).map(|t| t.ty) {
                Some(PgType::Timestamp) => false,
                Some(PgType::Timestamptz | PgType::Date | PgType::Unknown | PgType::Text)
                | None => true,
                Some(_) => return None,
            };
            let zone_is_interval = arg_ty(0).is_some_and(Ty::is_interval);
            let list = args(f)?;
            list.swap(0, 1);
            for flag in [zone_is_interval, to_local] {
                list.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(value_expr(
                    SqlValue::Int(i64::from(flag)),
                ))));
            }
            rename(f, "__pg_at_time_zone");
            Some(Ty::of(if to_local {
                PgType::Timestamp
            } else {
                PgType::Timestamptz
            }))
        }
        "isfinite" if arg_ty(0).is_some_and(|t| t.ty != PgType::Unknown) => {
            rename(f, "__pg_isfinite");
            Some(Ty::of(PgType::Bool))
        }
        // Postgres adds intervals field by field; SQLite would add their text as numbers.
        "sum" | "avg" if arg_ty(0).is_some_and(Ty::is_interval) && f.over.is_none() => {
            rename(f, &format!("__pg_interval_{name}"));
            Some(Ty::interval())
        }
        "make_time" => Some(Ty::of(PgType::Time)),
        "make_timestamp" => Some(Ty::of(PgType::Timestamp)),
        "make_timestamptz" => Some(Ty::of(PgType::Timestamptz)),
        "justify_days" | "justify_hours" | "justify_interval" => Some(Ty::interval()),
        "timeofday" => Some(Ty::of(PgType::Text)),
        "date_trunc" => {
            // date_trunc on a date works on its timestamptz form, as in Postgres.
            let ty = match types.get(1).copied().flatten().map(|t| t.ty) {
                Some(PgType::Timestamp) => PgType::Timestamp,
                _ => PgType::Timestamptz,
            };
            rename(f, "__pg_date_trunc");
            args(f)?.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(oid(ty))));
            Some(Ty::of(ty))
        }
        "to_char" => {
            // Dates, timestamps and numbers; anything else keeps the name and is refused.
            let ty = match types.first().copied().flatten().map(|t| t.ty) {
                Some(PgType::Date) => PgType::Date,
                Some(PgType::Timestamp) => PgType::Timestamp,
                Some(PgType::Timestamptz) => PgType::Timestamptz,
                Some(ty) if super::syntax::is_numeric(ty) && ty != PgType::Oid => {
                    rename(f, "__pg_to_char_number");
                    return Some(Ty::of(PgType::Text));
                }
                _ => return None,
            };
            rename(f, "__pg_to_char");
            args(f)?.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(oid(ty))));
            Some(Ty::of(PgType::Text))
        }
        "age" => {
            let list = args(f)?;
            if list.len() == 1 {
                // age(t) is age from today's midnight.
                list.insert(
                    0,
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(function_call(
                        "__pg_current_date",
                        vec![],
                    ))),
                );
            }
            rename(f, "__pg_age");
            Some(Ty::interval())
        }
        "to_timestamp" if types.len() == 1 => {
            rename(f, "__pg_to_timestamp");
            Some(Ty::of(PgType::Timestamptz))
        }
        "to_timestamp" | "to_date" if types.len() == 2 => {
            let date = name == "to_date";
            rename(f, "__pg_parse_time");
            args(f)?.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(value_expr(
                SqlValue::Int(i64::from(!date)),
            ))));
            Some(Ty::of(if date {
                PgType::Date
            } else {
                PgType::Timestamptz
            }))
        }
        "make_date" => Some(Ty::of(PgType::Date)),
        "make_interval" => {
            // Named (`days => 7`) or positional arguments, into the seven positions.
            const FIELDS: [&str; 7] = ["years", "months", "weeks", "days", "hours", "mins", "secs"];
            let field = |name: &str| FIELDS.iter().position(|f| name.eq_ignore_ascii_case(f));
            let mut slots: Vec<Expr> = (0..7).map(|_| value_expr(SqlValue::Int(0))).collect();
            for (position, arg) in args(f)?.iter().enumerate() {
                let (at, value) = match arg {
                    FunctionArg::Named {
                        name,
                        arg: FunctionArgExpr::Expr(value),
                        ..
                    } => (field(&name.value)?, value),
                    FunctionArg::ExprNamed {
                        name: Expr::Identifier(name),
                        arg: FunctionArgExpr::Expr(value),
                        ..
                    } => (field(&name.value)?, value),
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(value)) => (position, value),
                    _ => return None,
                };
                *slots.get_mut(at)? = value.clone();
            }
            *args(f)? = slots
                .into_iter()
                .map(|value| FunctionArg::Unnamed(FunctionArgExpr::Expr(value)))
                .collect();
            rename(f, "__pg_make_interval");
            Some(Ty::interval())
        }
        "jsonb_build_object" | "json_build_object" => {
            for (i, arg) in args(f)?.iter_mut().enumerate() {
                if i % 2 == 1 {
                    to_json(arg, types.get(i).copied().flatten());
                }
            }
            let jsonb = name.starts_with("jsonb");
            rename(
                f,
                if jsonb {
                    "__pg_jsonb_build_object"
                } else {
                    "__pg_json_build_object"
                },
            );
            Some(Ty::of(if jsonb { PgType::Jsonb } else { PgType::Json }))
        }
        "jsonb_build_array" | "json_build_array" => {
            for (i, arg) in args(f)?.iter_mut().enumerate() {
                to_json(arg, types.get(i).copied().flatten());
            }
            let jsonb = name.starts_with("jsonb");
            rename(
                f,
                if jsonb {
                    "__pg_jsonb_build_array"
                } else {
                    "__pg_json_build_array"
                },
            );
            Some(Ty::of(if jsonb { PgType::Jsonb } else { PgType::Json }))
        }
        "jsonb_agg" | "json_agg" if f.over.is_none() => {
            let list = args(f)?;
            if list.len() != 1 {
                return None;
            }
            to_json(list.first_mut()?, types.first().copied().flatten());
            let jsonb = name.starts_with("jsonb");
            rename(
                f,
                if jsonb {
                    "__pg_jsonb_agg"
                } else {
                    "__pg_json_agg"
                },
            );
            Some(Ty::of(if jsonb { PgType::Jsonb } else { PgType::Json }))
        }
        "json_object_agg" | "jsonb_object_agg" if f.over.is_none() => {
            let FunctionArguments::List(list) = &mut f.args else {
                return None;
            };
            // SQLite's DISTINCT takes one argument: the call is then refused.
            if list.duplicate_treatment.is_some() {
                return None;
            }
            let list = &mut list.args;
            if list.len() != 2 {
                return None;
            }
            let key = types.first().copied().flatten();
            // Postgres refuses arrays and json as keys, once a row comes.
            let scalar_key = !key.is_some_and(|t| {
                t.array_type().is_some() || matches!(t.ty, PgType::Json | PgType::Jsonb)
            });
            to_json(list.first_mut()?, key);
            to_json(list.get_mut(1)?, types.get(1).copied().flatten());
            list.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(value_expr(
                SqlValue::Int(i64::from(scalar_key)),
            ))));
            let jsonb = name.starts_with("jsonb");
            rename(
                f,
                if jsonb {
                    "__pg_jsonb_object_agg"
                } else {
                    "__pg_json_object_agg"
                },
            );
            Some(Ty::of(if jsonb { PgType::Jsonb } else { PgType::Json }))
        }
        "to_jsonb" | "to_json" => {
            let arg = args(f)?.first_mut()?;
            to_json(arg, types.first().copied().flatten());
            let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg else {
                return None;
            };
            let call = std::mem::replace(e, Expr::Value(ValueWithSpan::from(Value::Null)));
            if name == "to_json" {
                // json keeps the value's JSON text as it is (`[1,2]`, a json's own spacing).
                if let Expr::Function(inner) = call {
                    *f = inner;
                }
                return Some(Ty::of(PgType::Json));
            }
            rename(f, "__pg_json_out");
            if let Some(list) = args(f) {
                list.clear();
                list.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(call)));
            }
            Some(Ty::of(if name == "to_jsonb" {
                PgType::Jsonb
            } else {
                PgType::Json
            }))
        }
        "pg_typeof" => {
            // Known when the statement is translated: the name of the argument's type.
            let list = args(f)?;
            if list.len() != 1 {
                return None;
            }
            let oid = types
                .first()
                .copied()
                .flatten()
                .map(Ty::type_oid)
                .unwrap_or(PgType::Unknown.oid());
            *list = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(value_expr(
                SqlValue::Int(i64::from(oid)),
            )))];
            rename(f, "__pg_regtype_name");
            Some(Ty::of(PgType::Text))
        }
        "to_regtype" | "to_regclass" => {
            // OIDs, or NULL for unknown names; printed as names where they are results.
            rename(f, &format!("__pg_{name}"));
            Some(Ty::of(PgType::Oid))
        }
        "stddev" | "stddev_samp" | "stddev_pop" | "variance" | "var_samp" | "var_pop"
            if f.over.is_none() =>
        {
            let canonical = match name {
                "stddev" => "stddev_samp",
                "variance" => "var_samp",
                other => other,
            };
            let arg = types.first().copied().flatten();
            let FunctionArguments::List(list) = &mut f.args else {
                return None;
            };
            if list.args.len() != 1 {
                return None;
            }
            // Doubles stay doubles (`float8_accum`); integers and numerics are summed exactly
            // into a numeric whose scale depends on the values, like avg.
            match arg.map(|t| t.ty) {
                Some(PgType::Float4 | PgType::Float8) => {
                    rename(f, &format!("__pg_float_{canonical}"));
                    return Some(Ty::of(PgType::Float8));
                }
                None | Some(PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Numeric)
                    if !arg.is_some_and(Ty::is_carried_as_text) => {}
                _ => return None,
            }
            if list.duplicate_treatment.is_none() {
                let scale = arg.and_then(Ty::scale).map(i64::from).unwrap_or(-1);
                list.args
                    .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(value_expr(
                        SqlValue::Int(scale),
                    ))));
            }
            rename(f, &format!("__pg_{canonical}"));
            Some(Ty::of(PgType::Numeric))
        }
        "bit_and" | "bit_or" | "bit_xor" if f.over.is_none() => {
            // Of integers only: the result keeps the argument's type.
            let arg = types.first().copied().flatten()?;
            if !matches!(arg.ty, PgType::Int2 | PgType::Int4 | PgType::Int8) || types.len() != 1 {
                return None;
            }
            rename(f, &format!("__pg_{name}"));
            Some(Ty::of(arg.ty))
        }
        "avg" => {
            // avg of integers and numerics is numeric with a value-dependent scale: an
            // exact aggregate (see `display`); of floats it stays SQLite's.
            let arg = types.first().copied().flatten();
            if arg.is_some_and(|t| matches!(t.ty, PgType::Float4 | PgType::Float8))
                || f.over.is_some()
            {
                return None;
            }
            let FunctionArguments::List(list) = &mut f.args else {
                return None;
            };
            if list.args.len() != 1 {
                return None;
            }
            // SQLite's DISTINCT aggregates take one argument: the scale then comes from
            // the values alone.
            if list.duplicate_treatment.is_none() {
                let scale = arg.and_then(Ty::scale).map(i64::from).unwrap_or(-1);
                list.args
                    .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(value_expr(
                        SqlValue::Int(scale),
                    ))));
            }
            rename(f, "__pg_avg");
            Some(Ty::of(PgType::Numeric))
        }
        _ => None,
    }
}

/// The `make_*` functions take `integer` fields (and `double precision` seconds): Postgres
/// casts nothing else to `integer` implicitly, so `make_time(1.5, 2, 3)` names no function.
/// SQLite would truncate the value or fail on its type instead.
fn make_arguments(name: &str, f: &Function, types: &[Option<Ty>]) -> Result<(), DbError> {
    let integer = |t: &Option<Ty>| {
        t.is_none_or(|t| matches!(t.ty, PgType::Int2 | PgType::Int4 | PgType::Unknown))
    };
    let seconds = |t: &Option<Ty>| {
        t.is_none_or(|t| super::syntax::is_numeric(t.ty) || t.ty == PgType::Unknown)
    };
    let FunctionArguments::List(list) = &f.args else {
        return Ok(());
    };
    // Each argument's name when given (`days => 2`), as the error spells it.
    let names: Vec<Option<&str>> = list
        .args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Named { name, .. } => Some(name.value.as_str()),
            FunctionArg::ExprNamed {
                name: Expr::Identifier(name),
                ..
            } => Some(name.value.as_str()),
            _ => None,
        })
        .collect();
    let fits = if name == "make_interval" {
        // Every field an integer but `secs`, by name or as the seventh.
        types.len() <= 7
            && types.iter().zip(&names).enumerate().all(|(i, (t, n))| {
                let secs = n.map_or(i == 6, |n| n.eq_ignore_ascii_case("secs"));
                if secs { seconds(t) } else { integer(t) }
            })
    } else {
        let Some(integer_fields) = make_fields(name) else {
            return Ok(());
        };
        let arity = match name {
            "make_timestamptz" => [6, 7].contains(&types.len()),
            "make_date" => types.len() == 3,
            _ => types.len() == integer_fields + 1,
        };
        arity
            && types.iter().take(integer_fields).all(integer)
            && types.get(integer_fields).is_none_or(seconds)
    };
    if fits {
        return Ok(());
    }
    let described: Vec<String> = types
        .iter()
        .zip(&names)
        .map(|(t, n)| {
            let ty = crate::functions::type_name(t.map_or(PgType::Unknown.oid(), Ty::type_oid));
            match n {
                Some(n) => format!("{n} => {ty}"),
                None => ty,
            }
        })
        .collect();
    Err(DbError::new(
        "42883",
        format!("function {name}({}) does not exist", described.join(", ")),
    )
    .with_hint(
        "No function matches the given name and argument types. You might need to add \
         explicit type casts.",
    ))
}

/// How many leading `integer` fields a `make_*` function takes; the seconds follow.
fn make_fields(name: &str) -> Option<usize> {
    match name {
        "make_date" => Some(3),
        "make_time" => Some(2),
        "make_timestamp" | "make_timestamptz" => Some(5),
        _ => None,
    }
}

/// Argument `n` when it is an integer literal.
fn literal_int_arg(f: &Function, n: usize) -> Option<i64> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.get(n)? {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
            Value::Number(text, _) => text.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

impl Inferer<'_> {
    pub(super) fn function(&mut self, f: &mut Function, want: Option<Ty>) -> Typed {
        let name = f
            .name
            .0
            .last()
            .map(|p| p.to_string().to_ascii_lowercase())
            .unwrap_or_default();
        if !f.within_group.is_empty() {
            return self.ordered_set(&name, f);
        }
        if let Some(result) = self.row_json(&name, f) {
            return result;
        }
        let mut arg_types = Vec::new();
        let first_want = match name.as_str() {
            "coalesce" | "nullif" | "greatest" | "least" => want,
            "lower" | "upper" | "length" | "char_length" | "character_length" | "replace"
            | "substr" | "trim" | "btrim" | "ltrim" | "rtrim" | "strpos" | "concat"
            | "concat_ws" | "left" | "right" | "md5" | "string_agg" | "octet_length" | "repeat"
            | "reverse" | "initcap" => Some(Ty::of(PgType::Text)),
            "jsonb_typeof"
            | "json_typeof"
            | "jsonb_array_length"
            | "json_array_length"
            | "jsonb_set"
            | "jsonb_extract_path"
            | "jsonb_extract_path_text" => Some(Ty::of(PgType::Jsonb)),
            other => super::srf::first_arg_type(other),
        };
        if let FunctionArguments::List(list) = &mut f.args {
            let mut shared = first_want;
            let family = matches!(name.as_str(), "coalesce" | "nullif" | "greatest" | "least");
            let all_text = matches!(
                name.as_str(),
                "replace"
                    | "concat"
                    | "concat_ws"
                    | "trim"
                    | "btrim"
                    | "ltrim"
                    | "rtrim"
                    | "strpos"
                    | "string_agg"
            ) || super::srf::all_text(&name);
            for (i, arg) in list.args.iter_mut().enumerate() {
                let want_here = match i {
                    _ if family => shared,
                    _ if make_fields(&name).is_some() => make_fields(&name).map(|n| {
                        Ty::of(match i.cmp(&n) {
                            std::cmp::Ordering::Less => PgType::Int4,
                            std::cmp::Ordering::Equal if name != "make_date" => PgType::Float8,
                            _ => PgType::Text,
                        })
                    }),
                    0 => first_want,
                    _ if all_text => first_want,
                    2 if name == "jsonb_set" => Some(Ty::of(PgType::Jsonb)),
                    _ => None,
                };
                let want_here = if name == "make_interval" {
                    // Integer fields but `secs` (by name, or the seventh).
                    let secs = match arg {
                        FunctionArg::Named { name, .. } => name.value.eq_ignore_ascii_case("secs"),
                        FunctionArg::ExprNamed {
                            name: Expr::Identifier(name),
                            ..
                        } => name.value.eq_ignore_ascii_case("secs"),
                        _ => i == 6,
                    };
                    Some(Ty::of(if secs { PgType::Float8 } else { PgType::Int4 }))
                } else {
                    want_here
                };
                let e = match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => e,
                    FunctionArg::Named {
                        arg: FunctionArgExpr::Expr(e),
                        ..
                    }
                    | FunctionArg::ExprNamed {
                        arg: FunctionArgExpr::Expr(e),
                        ..
                    } => e,
                    _ => {
                        arg_types.push(None);
                        continue;
                    }
                };
                if i == 1 && matches!(name.as_str(), "jsonb_set" | "jsonb_insert") {
                    text_array_arg(e);
                }
                let t = self.expr(e, want_here)?;
                if family {
                    shared = shared.or(t);
                }
                if matches!(name.as_str(), "concat" | "concat_ws" | "format")
                    && t.is_some_and(|t| t.ty == PgType::Bool)
                {
                    // Stored as 1 or 0; concat() and format() print a boolean as its output
                    // does.
                    let value = std::mem::replace(e, Expr::Value(ValueWithSpan::from(Value::Null)));
                    *e = function_call("__pg_bool_out", vec![value]);
                }
                if matches!(name.as_str(), "concat" | "concat_ws" | "format") {
                    super::infer::numeric_text_with_scale(e, t);
                }
                arg_types.push(t);
            }
            if matches!(name.as_str(), "coalesce" | "nullif" | "greatest" | "least")
                && let Some(t) = shared
            {
                // Re-type leading untyped arguments now that one argument gave a type.
                for (arg, at) in list.args.iter_mut().zip(arg_types.iter_mut()) {
                    if at.is_none()
                        && let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg
                    {
                        *at = self.expr(e, Some(t))?;
                    }
                }
            }
            // Dates and timestamps together become the widest type, as in Postgres.
            if family && let Some(wider) = super::operators::widest_temporal(&arg_types) {
                for (arg, at) in list.args.iter_mut().zip(arg_types.iter_mut()) {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
                        super::operators::widen_temporal(e, *at, Some(wider));
                        if at.is_some_and(|t| matches!(t.ty, PgType::Date | PgType::Timestamp)) {
                            *at = Some(wider);
                        }
                    }
                }
            }
        }
        if let Some(filter) = &mut f.filter {
            self.expr(filter, Some(Ty::of(PgType::Bool)))?;
        }
        if let Some(result) = self.srf_call(&name, f, &arg_types) {
            return result;
        }
        make_arguments(&name, f, &arg_types)?;
        if let Some(result) = self.array_call(&name, f, &arg_types) {
            return result;
        }
        if let Some(ty) = rewrite_call(&name, f, &arg_types) {
            return Ok(Some(ty));
        }
        let first = arg_types.first().copied().flatten();
        let t = |ty: PgType| Ok(Some(Ty::of(ty)));
        match name.as_str() {
            "jsonb_typeof"
            | "json_typeof"
            | "jsonb_extract_path_text"
            | "json_extract_path_text" => t(PgType::Text),
            "jsonb_array_length" | "json_array_length" => t(PgType::Int4),
            "jsonb_set" | "jsonb_extract_path" => t(PgType::Jsonb),
            "json_extract_path" | "json_strip_nulls" => t(PgType::Json),
            "jsonb_strip_nulls" => t(PgType::Jsonb),
            "jsonb_pretty" => t(PgType::Text),
            "regexp_split_to_array" | "string_to_array" => {
                Ok(ArrayType::of(PgType::Text).map(Ty::array))
            }
            "count" | "row_number" | "rank" | "dense_rank" => t(PgType::Int8),
            "ntile" => t(PgType::Int4),
            "percent_rank" | "cume_dist" => t(PgType::Float8),
            "lag" | "lead" | "first_value" | "last_value" | "nth_value" => Ok(first),
            "sum" | "avg" if first.is_some_and(Ty::is_interval) => Err(crate::errors::unsupported(
                format!("{name}() of intervals as a window function"),
            )),
            "sum" => match first.map(|f| f.ty) {
                Some(PgType::Int2 | PgType::Int4) => t(PgType::Int8),
                Some(PgType::Float4) => t(PgType::Float4),
                Some(PgType::Float8) => t(PgType::Float8),
                // The sum of numeric(p,s) values prints with s decimals.
                _ => Ok(Some(
                    first
                        .filter(|f| f.ty == PgType::Numeric)
                        .and_then(Ty::scale)
                        .map(Ty::numeric_scale)
                        .unwrap_or(Ty::of(PgType::Numeric)),
                )),
            },
            "avg" => match first.map(|f| f.ty) {
                Some(PgType::Float4 | PgType::Float8) => t(PgType::Float8),
                _ => t(PgType::Numeric),
            },
            "min" | "max" if first.is_some_and(Ty::is_interval) && f.over.is_none() => {
                // By span, as Postgres compares intervals (SQLite would compare their text).
                rename(f, &format!("__pg_interval_{name}"));
                Ok(first)
            }
            "min" | "max" | "greatest" | "least"
                if arg_types
                    .iter()
                    .flatten()
                    .any(|t| t.array_type().is_some() || t.is_interval()) =>
            {
                // SQLite would compare their text (`{10}` below `{9}`).
                Err(crate::errors::unsupported(format!(
                    "{name}() of arrays, and greatest(), least() and window min/max of \
                     intervals"
                )))
            }
            // sign() of a numeric is -1, 0 or 1 with no decimals.
            "sign" if first.is_some_and(|f| f.ty == PgType::Numeric) => {
                Ok(Some(Ty::numeric_scale(0)))
            }
            "min" | "max" | "abs" | "sign" | "mod" => Ok(first.map(|f| {
                if f.ty == PgType::Numeric {
                    f
                } else {
                    Ty::of(f.ty)
                }
            })),
            "coalesce" | "nullif" | "greatest" | "least" => {
                let typed: Vec<Ty> = arg_types.iter().copied().flatten().collect();
                // `coalesce(amount, 0)` over a numeric(10,2) prints the amounts' two decimals
                // (Postgres keeps each value's own scale; storage keeps none).
                Ok(typed.first().map(|f| {
                    typed
                        .iter()
                        .find(|t| {
                            f.ty == PgType::Numeric && t.ty == PgType::Numeric && t.typmod >= 0
                        })
                        .copied()
                        .unwrap_or(Ty::of(f.ty))
                }))
            }
            "round" | "trunc" => match first.map(|f| f.ty) {
                Some(PgType::Float4 | PgType::Float8) if arg_types.len() == 1 => t(PgType::Float8),
                // `round(numeric, 2)` prints two decimals.
                _ => Ok(Some(
                    literal_int_arg(f, 1)
                        .map(|s| Ty::numeric_scale(s.clamp(0, 1000) as i32))
                        .unwrap_or(Ty::of(PgType::Numeric)),
                )),
            },
            "ceil" | "ceiling" | "floor" => match first.map(|f| f.ty) {
                Some(PgType::Float4 | PgType::Float8) => t(PgType::Float8),
                _ => t(PgType::Numeric),
            },
            "sqrt" | "power" | "pow" | "exp" | "ln" | "log" | "log10" | "random" | "pi"
            | "cbrt" | "degrees" | "radians" | "sin" | "cos" | "tan" | "asin" | "acos" | "atan"
            | "atan2" => t(PgType::Float8),
            "string_agg"
            | "group_concat"
            | "lower"
            | "upper"
            | "trim"
            | "btrim"
            | "ltrim"
            | "rtrim"
            | "replace"
            | "regexp_replace"
            | "substr"
            | "substring"
            | "concat"
            | "concat_ws"
            | "left"
            | "right"
            | "lpad"
            | "rpad"
            | "repeat"
            | "reverse"
            | "md5"
            | "initcap"
            | "chr"
            | "version"
            | "format_type"
            | "pg_get_expr"
            | "pg_get_indexdef"
            | "pg_get_constraintdef"
            | "pg_get_userbyid"
            | "obj_description"
            | "col_description"
            | "pg_encoding_to_char"
            | "array_to_string"
            | "quote_ident"
            | "pg_get_viewdef"
            | "shobj_description"
            | "pg_size_pretty"
            | "pg_get_serial_sequence"
            | "pg_get_function_result"
            | "pg_get_function_arguments"
            | "pg_get_function_identity_arguments"
            | "typeof" => t(PgType::Text),
            "to_hex" => {
                // An int4's negative value prints as 32 bits of two's complement.
                if matches!(first.map(|f| f.ty), Some(PgType::Int2 | PgType::Int4)) {
                    rename(f, "__pg_to_hex32");
                }
                t(PgType::Text)
            }
            "current_database" | "current_schema" | "current_user" | "session_user" | "user"
            | "current_role" => t(PgType::Name),
            "length" | "char_length" | "character_length" | "octet_length" | "strpos"
            | "position" | "ascii" | "instr" => t(PgType::Int4),
            "bool_and"
            | "bool_or"
            | "every"
            | "pg_table_is_visible"
            | "pg_type_is_visible"
            | "pg_function_is_visible"
            | "has_table_privilege"
            | "has_schema_privilege"
            | "has_database_privilege"
            | "pg_has_role" => t(PgType::Bool),
            "now"
            | "current_timestamp"
            | "transaction_timestamp"
            | "statement_timestamp"
            | "clock_timestamp" => t(PgType::Timestamptz),
            "localtimestamp" => t(PgType::Timestamp),
            "current_date" => t(PgType::Date),
            "current_time" | "localtime" => t(PgType::Time),
            "gen_random_uuid" | "uuid_generate_v4" => t(PgType::Uuid),
            "date_part" => t(PgType::Float8),
            // isfinite() has date, timestamp, timestamptz and interval forms: an untyped
            // literal fits more than one.
            "isfinite" => Err(
                DbError::new("42725", "function isfinite(unknown) is not unique").with_hint(
                    "Could not choose a best candidate function. You might need to add explicit \
                 type casts.",
                ),
            ),
            "extract" => t(PgType::Numeric),
            "pg_backend_pid"
            | "txid_current"
            | "pg_relation_size"
            | "pg_total_relation_size"
            | "pg_table_size"
            | "pg_indexes_size"
            | "pg_database_size" => t(PgType::Int8),
            "nextval" | "currval" | "setval" | "lastval" => t(PgType::Int8),
            "translate" | "quote_nullable" | "encode" | "format" => t(PgType::Text),
            "starts_with" => t(PgType::Bool),
            "bit_length" | "num_nulls" | "num_nonnulls" | "width_bucket" => t(PgType::Int4),
            "div" | "factorial" => Ok(Some(Ty::numeric_scale(0))),
            "gcd" | "lcm" => Ok(first.map(|f| Ty::of(f.ty))),
            "decode" | "sha224" | "sha256" | "sha384" | "sha512" => t(PgType::Bytea),
            _ => Ok(None),
        }
    }
}
