//! Set-returning functions over JSON and regular expressions, and whole-row references.
//!
//! In FROM, `jsonb_each(x) AS e` becomes `json_each(__pg_srf('jsonb_each', x)) AS e`: SQLite
//! lets a table-valued function read the tables before it, as Postgres's implicit LATERAL
//! does. Each row is a JSON array of the columns' text (see `functions::srf`), so a reference
//! to the relation's column `i` (`e.key`, `value`, or `e` itself for one column) is rewritten
//! to ``json_extract(`e`.`value`, '$[i]')`` (WITH ORDINALITY adds the row's number as a last
//! column). In a select list they join the row positions as `unnest` does (`arrays`).
//!
//! `row_to_json(t)`, `to_json(t)` and `to_jsonb(t)` of a relation become an object built of
//! its columns, in their order, each in its JSON form.

use mycelium_protocol::DbError;
use mycelium_protocol::types::{PgType, SqlValue};
use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, TableFactor, Value,
    ValueWithSpan,
};

use super::OutColumn;
use super::arrays::{position, recall, take_args};
use super::infer::{Inferer, Rel, function_call, ident_name, object_parts, value_expr};
use super::syntax::json_each_of;
use crate::catalog::Ty;
use crate::errors::unsupported;
use crate::functions::array::ArrayType;

/// A set-returning function: the type its arguments are read as, how many it takes, and
/// its columns (a column named `None` takes the relation's name, as Postgres names the
/// column of a function without OUT parameters).
struct Spec {
    input: PgType,
    args: (usize, usize),
    columns: &'static [(Option<&'static str>, Column)],
}

#[derive(Clone, Copy)]
enum Column {
    Of(PgType),
    TextArray,
}

impl Column {
    fn ty(self) -> Result<Ty, DbError> {
        match self {
            Column::Of(ty) => Ok(Ty::of(ty)),
            Column::TextArray => ArrayType::of(PgType::Text)
                .map(Ty::array)
                .ok_or_else(|| crate::errors::internal("no text[] type")),
        }
    }
}

const JSONB_VALUE: &[(Option<&str>, Column)] = &[(Some("value"), Column::Of(PgType::Jsonb))];
const JSON_VALUE: &[(Option<&str>, Column)] = &[(Some("value"), Column::Of(PgType::Json))];
const TEXT_VALUE: &[(Option<&str>, Column)] = &[(Some("value"), Column::Of(PgType::Text))];
const JSONB_PAIR: &[(Option<&str>, Column)] = &[
    (Some("key"), Column::Of(PgType::Text)),
    (Some("value"), Column::Of(PgType::Jsonb)),
];
const JSON_PAIR: &[(Option<&str>, Column)] = &[
    (Some("key"), Column::Of(PgType::Text)),
    (Some("value"), Column::Of(PgType::Json)),
];
const TEXT_PAIR: &[(Option<&str>, Column)] = &[
    (Some("key"), Column::Of(PgType::Text)),
    (Some("value"), Column::Of(PgType::Text)),
];
const TEXT: &[(Option<&str>, Column)] = &[(None, Column::Of(PgType::Text))];
const TEXT_ARRAY: &[(Option<&str>, Column)] = &[(None, Column::TextArray)];

fn spec(name: &str) -> Option<Spec> {
    let json = |input, columns| Spec {
        input,
        args: (1, 1),
        columns,
    };
    let regexp = |columns| Spec {
        input: PgType::Text,
        args: (2, 3),
        columns,
    };
    Some(match name {
        "jsonb_array_elements" => json(PgType::Jsonb, JSONB_VALUE),
        "jsonb_array_elements_text" => json(PgType::Jsonb, TEXT_VALUE),
        "json_array_elements" => json(PgType::Json, JSON_VALUE),
        "json_array_elements_text" => json(PgType::Json, TEXT_VALUE),
        "jsonb_each" => json(PgType::Jsonb, JSONB_PAIR),
        "jsonb_each_text" => json(PgType::Jsonb, TEXT_PAIR),
        "json_each" => json(PgType::Json, JSON_PAIR),
        "json_each_text" => json(PgType::Json, TEXT_PAIR),
        "jsonb_object_keys" => json(PgType::Jsonb, TEXT),
        "json_object_keys" => json(PgType::Json, TEXT),
        "regexp_split_to_table" => regexp(TEXT),
        "regexp_matches" => regexp(TEXT_ARRAY),
        _ => return None,
    })
}

/// The type a set-returning function or a regexp/string function reads its first argument
/// as.
pub(super) fn first_arg_type(name: &str) -> Option<Ty> {
    match name {
        "regexp_split_to_array" | "string_to_array" => Some(Ty::of(PgType::Text)),
        "jsonb_pretty" | "jsonb_strip_nulls" => Some(Ty::of(PgType::Jsonb)),
        "json_strip_nulls" => Some(Ty::of(PgType::Json)),
        _ => spec(name).map(|s| Ty::of(s.input)),
    }
}

/// Whether every argument of `name` is text.
pub(super) fn all_text(name: &str) -> bool {
    matches!(
        name,
        "regexp_split_to_table" | "regexp_matches" | "regexp_split_to_array" | "string_to_array"
    )
}

fn wrong_arguments(name: &str) -> DbError {
    DbError::new("42883", format!("function {name} does not exist"))
}

/// A json function takes only its own type (an untyped literal becomes it): neither jsonb
/// nor text converts implicitly.
fn check_input(function: &str, spec: &Spec, ty: Option<Ty>) -> Result<(), DbError> {
    let Some(ty) = ty else {
        return Ok(());
    };
    if !matches!(spec.input, PgType::Json | PgType::Jsonb)
        || (ty.ty == spec.input && !ty.is_carried_as_text())
    {
        return Ok(());
    }
    let name = ty.array_type().map(ArrayType::name).unwrap_or_else(|| {
        if ty.is_interval() {
            "interval"
        } else {
            ty.ty.name()
        }
        .to_owned()
    });
    Err(DbError::new(
        "42883",
        format!("function {function}({name}) does not exist"),
    )
    .with_hint(
        "No function matches the given name and argument types. You might need to add \
         explicit type casts.",
    ))
}

/// Quotes the names in the SQLite expressions of [`column_expr`]: SQLite reads backticks as
/// identifier quotes, Postgres statements never have them, so an expression inferred twice
/// (a GROUP BY term, a re-typed argument) is not taken for the function's own `value`
/// column again.
const GENERATED: char = '`';

/// ``json_extract(`rel`.`value`, '$[i]')``: column `i` of a set-returning relation.
pub(super) fn column_expr(rel: &str, i: usize) -> Expr {
    function_call(
        "json_extract",
        vec![
            Expr::CompoundIdentifier(vec![
                Ident::with_quote(GENERATED, rel),
                Ident::with_quote(GENERATED, "value"),
            ]),
            value_expr(SqlValue::Text(format!("$[{i}]"))),
        ],
    )
}

/// `'name'` as the first argument of the SQLite functions.
fn name_arg(name: &str) -> Expr {
    value_expr(SqlValue::Text(name.to_owned()))
}

impl Inferer<'_> {
    /// A set-returning function in FROM; false when `factor` is none of them.
    pub(super) fn srf_relation(&mut self, factor: &mut TableFactor) -> Result<bool, DbError> {
        // `LATERAL f(...)` changes nothing: a function in FROM sees the items before it.
        let (name, alias, args, with_ordinality) = match factor {
            TableFactor::Table {
                name,
                alias,
                args: Some(args),
                with_ordinality,
                ..
            } => (name, alias, &mut args.args, with_ordinality),
            TableFactor::Function {
                name,
                alias,
                args,
                with_ordinality,
                ..
            } => (name, alias, args, with_ordinality),
            _ => return Ok(false),
        };
        let function = object_parts(name).pop().unwrap_or_default();
        let Some(spec) = spec(&function) else {
            return Ok(false);
        };
        if args.len() < spec.args.0 || args.len() > spec.args.1 {
            return Err(wrong_arguments(&function));
        }
        let mut call = vec![name_arg(&function)];
        for (i, arg) in args.iter_mut().enumerate() {
            let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg else {
                return Err(unsupported(format!("argument {arg} of {function}()")));
            };
            let want = if i == 0 { spec.input } else { PgType::Text };
            let ty = self.expr(e, Some(Ty::of(want)))?;
            if i == 0 {
                check_input(&function, &spec, ty)?;
            }
            call.push(std::mem::replace(
                e,
                Expr::Value(ValueWithSpan::from(Value::Null)),
            ));
        }
        let rel_name = alias
            .as_ref()
            .map(|a| ident_name(&a.name))
            .unwrap_or_else(|| function.clone());
        let renamed = alias
            .as_ref()
            .map(|a| a.columns.clone())
            .unwrap_or_default();
        let numbered = *with_ordinality;
        if renamed.len() > spec.columns.len() + usize::from(numbered) {
            return Err(DbError::new(
                "42601",
                format!("too many column aliases specified for function {function}"),
            ));
        }
        let mut cols = Vec::with_capacity(spec.columns.len());
        for (i, (column, ty)) in spec.columns.iter().enumerate() {
            let name = match (renamed.get(i), column) {
                (Some(new), _) => ident_name(&new.name),
                (None, Some(column)) => (*column).to_owned(),
                (None, None) => rel_name.clone(),
            };
            cols.push(OutColumn::expr(name, ty.ty()?));
        }
        if numbered {
            let name = renamed
                .get(cols.len())
                .map_or_else(|| "ordinality".to_owned(), |c| ident_name(&c.name));
            cols.push(OutColumn::expr(name, Ty::of(PgType::Int8)));
        }
        *factor = json_each_of(
            function_call(
                if numbered {
                    "__pg_srf_numbered"
                } else {
                    "__pg_srf"
                },
                call,
            ),
            Ident::with_quote('"', rel_name.clone()),
        );
        self.push_rel(Rel {
            name: rel_name,
            cols,
            hidden: true,
            srf: true,
        });
        Ok(true)
    }

    /// A reference to a column of a set-returning relation (or to the relation itself, when
    /// it has one column): its SQLite expression and column.
    pub(super) fn srf_column(&self, expr: &Expr) -> Option<(Expr, OutColumn)> {
        let (qualifier, name) = match expr {
            Expr::Identifier(ident) => (None, ident_name(ident)),
            Expr::CompoundIdentifier(parts)
                if parts.len() == 2 && parts[1].quote_style != Some(GENERATED) =>
            {
                (Some(ident_name(&parts[0])), ident_name(&parts[1]))
            }
            _ => return None,
        };
        for scope in self.scopes.iter().rev() {
            for rel in scope {
                if qualifier.as_ref().is_some_and(|q| *q != rel.name) {
                    continue;
                }
                if let Some(i) = rel.cols.iter().position(|c| c.name == name) {
                    return rel
                        .srf
                        .then(|| (column_expr(&rel.name, i), rel.cols[i].clone()));
                }
            }
        }
        if qualifier.is_some() {
            return None;
        }
        // A whole-row reference to a function returning one column is that column.
        self.scopes.iter().rev().flatten().find_map(|rel| {
            (rel.srf && rel.name == name && rel.cols.len() == 1).then(|| {
                let col = OutColumn {
                    name: name.clone(),
                    ..rel.cols[0].clone()
                };
                (column_expr(&rel.name, 0), col)
            })
        })
    }

    /// A set-returning function in a select list (`None` when `name` is not one).
    pub(super) fn srf_call(
        &mut self,
        name: &str,
        f: &mut Function,
        types: &[Option<Ty>],
    ) -> Option<Result<Option<Ty>, DbError>> {
        let spec = spec(name)?;
        Some(self.srf_item(name, &spec, f, types).map(Some))
    }

    fn srf_item(
        &mut self,
        name: &str,
        spec: &Spec,
        f: &mut Function,
        types: &[Option<Ty>],
    ) -> Result<Ty, DbError> {
        check_input(name, spec, types.first().copied().flatten())?;
        if self.srf_rows.is_none() {
            return Err(unsupported(format!(
                "set-returning function {name}() outside a select list"
            )));
        }
        let [(_, column)] = spec.columns else {
            return Err(unsupported(format!(
                "{name}() in a select list (it returns records); call it in FROM"
            )));
        };
        let args = take_args(f);
        if args.len() < spec.args.0 || args.len() > spec.args.1 {
            return Err(wrong_arguments(name));
        }
        let mut count = vec![name_arg(name)];
        count.extend(args.iter().cloned());
        let mut at = vec![name_arg(name), position()];
        at.extend(args);
        self.srf(function_call("__pg_srf_count", count), f, "__pg_srf_at", at);
        column.ty()
    }

    /// `row_to_json(t)`, `to_json(t)`, `to_jsonb(t)` where `t` names a relation, not a
    /// column (`None` otherwise).
    pub(super) fn row_json(
        &mut self,
        name: &str,
        f: &mut Function,
    ) -> Option<Result<Option<Ty>, DbError>> {
        if !matches!(name, "row_to_json" | "to_json" | "to_jsonb") {
            return None;
        }
        let FunctionArguments::List(list) = &f.args else {
            return None;
        };
        let rel_name = match list.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg @ Expr::Identifier(ident)))] => {
                if self.column_ref(arg).is_some() || self.srf_column(arg).is_some() {
                    return None;
                }
                ident_name(ident)
            }
            // `t.*` is the row too.
            [FunctionArg::Unnamed(FunctionArgExpr::QualifiedWildcard(name))] => {
                object_parts(name).pop()?
            }
            _ => return None,
        };
        let rel = self
            .scopes
            .iter()
            .rev()
            .flatten()
            .find(|rel| rel.name == rel_name)?
            .clone();
        let mut args = Vec::with_capacity(rel.cols.len() * 2);
        for (i, col) in rel.cols.iter().enumerate() {
            let value = if rel.srf {
                column_expr(&rel.name, i)
            } else {
                Expr::CompoundIdentifier(vec![
                    Ident::with_quote('"', rel.name.clone()),
                    Ident::with_quote('"', col.name.clone()),
                ])
            };
            args.push(value_expr(SqlValue::Text(col.name.clone())));
            args.push(super::functions::json_value(value, Some(col.ty)));
        }
        let jsonb = name == "to_jsonb";
        recall(
            f,
            if jsonb {
                "__pg_jsonb_build_object"
            } else {
                "__pg_row_to_json"
            },
            args,
        );
        Some(Ok(Some(Ty::of(if jsonb {
            PgType::Jsonb
        } else {
            PgType::Json
        }))))
    }
}
