//! Small pieces of syntax shared by the rewrite passes: names as Postgres folds them, type
//! names, literals as storage values, the column names Postgres derives, and
//! `generate_series` as a recursive CTE, `json_each` over emulated set-returning functions.

use mycelium_protocol::DbError;
use mycelium_protocol::types::{PgType, SqlValue};
use sqlparser::ast::{
    ArrayElemTypeDef, DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, ObjectName, ObjectNamePart, SelectItem, SetExpr, TableFactor, Value, ValueWithSpan,
};

use super::OutColumn;
use crate::catalog::Ty;
use crate::errors::unsupported;
use crate::functions::array::{self, ArrayType};

pub(crate) fn ident_name(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

pub(crate) fn object_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => ident_name(ident),
            other => other.to_string(),
        })
        .collect()
}

/// The relation an object name designates, with `public.` and `pg_catalog.` accepted.
pub(crate) fn table_name(name: &ObjectName) -> Result<String, DbError> {
    let mut parts = object_parts(name);
    match parts.len() {
        1 => Ok(parts.remove(0)),
        2 if parts[0] == "public" || parts[0] == "main" => Ok(parts.remove(1)),
        2 if parts[0] == "pg_catalog" || parts[0] == "information_schema" => {
            Ok(format!("{}.{}", parts[0], parts[1]))
        }
        _ => Err(DbError::new(
            "3F000",
            format!(
                "schema \"{}\" does not exist",
                parts[..parts.len() - 1].join(".")
            ),
        )),
    }
}

/// The Postgres type a SQL type name designates.
pub(crate) fn data_type(dt: &DataType) -> Result<Ty, DbError> {
    if matches!(dt, DataType::Array(_)) {
        return Err(unsupported(format!("array type {dt}")));
    }
    let text = dt.to_string();
    let lower = text.to_ascii_lowercase();
    let normalized = lower
        .replace("character varying", "varchar")
        .replace("timestamp with time zone", "timestamptz");
    PgType::parse_sql_name(&normalized)
        .or_else(|| PgType::parse_sql_name(&lower))
        .map(|(ty, typmod)| Ty { ty, typmod })
        .ok_or_else(|| DbError::new("42704", format!("type \"{lower}\" does not exist")))
}

/// The type of a table column: any [`data_type`], an interval, or a one-dimensional array of
/// one (kept as their text forms, see `functions::array` and `functions::time`).
pub(crate) fn column_type(dt: &DataType) -> Result<Ty, DbError> {
    match cast_target(dt)? {
        CastTarget::Type(ty) if ty.array_type().is_some_and(|a| !a.is_vector()) => Ok(ty),
        CastTarget::Type(ty) if ty.is_interval() => Ok(ty),
        _ => data_type(dt),
    }
}

/// `pg_type.typname`: what Postgres names a `::type` column when nothing better exists.
pub(crate) fn typname(ty: PgType) -> &'static str {
    match ty {
        PgType::Bool => "bool",
        PgType::Int2 => "int2",
        PgType::Int4 => "int4",
        PgType::Int8 => "int8",
        PgType::Float4 => "float4",
        PgType::Float8 => "float8",
        PgType::Numeric => "numeric",
        PgType::Text => "text",
        PgType::Varchar => "varchar",
        PgType::Bpchar => "bpchar",
        PgType::Name => "name",
        PgType::Char => "char",
        PgType::Oid => "oid",
        PgType::Bytea => "bytea",
        PgType::Date => "date",
        PgType::Time => "time",
        PgType::Timestamp => "timestamp",
        PgType::Timestamptz => "timestamptz",
        PgType::Json => "json",
        PgType::Jsonb => "jsonb",
        PgType::Uuid => "uuid",
        PgType::Unknown => "unknown",
    }
}

pub(crate) fn numeric_rank(ty: PgType) -> Option<u8> {
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

pub(crate) fn is_numeric(ty: PgType) -> bool {
    numeric_rank(ty).is_some()
}

pub(crate) fn is_integer(ty: PgType) -> bool {
    matches!(ty, PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Oid)
}

/// A storage value as a SQLite literal expression.
pub(crate) fn value_expr(value: SqlValue) -> Expr {
    let value = match value {
        SqlValue::Null => Value::Null,
        SqlValue::Int(i) => Value::Number(i.to_string(), false),
        SqlValue::Float(f) if f.is_finite() => Value::Number(format!("{f:?}"), false),
        SqlValue::Float(f) => {
            // SQLite has no literal for these; 9e999 overflows to infinity.
            let text = if f.is_nan() {
                return function_call("__pg_nan", vec![]);
            } else if f > 0.0 {
                "9e999"
            } else {
                "-9e999"
            };
            Value::Number(text.to_owned(), false)
        }
        SqlValue::Text(s) => Value::SingleQuotedString(s),
        SqlValue::Bytes(b) => {
            let hex: String = b.iter().map(|byte| format!("{byte:02X}")).collect();
            Value::HexStringLiteral(hex)
        }
    };
    Expr::Value(ValueWithSpan::from(value))
}

pub(crate) fn function_call(name: &str, args: Vec<Expr>) -> Expr {
    use sqlparser::ast::{FunctionArgumentList, Ident as I};
    Expr::Function(Function {
        name: ObjectName::from(vec![I::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        within_group: vec![],
        filter: None,
        null_treatment: None,
        over: None,
    })
}

pub(crate) fn string_literal(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::UnicodeStringLiteral(s) => Some(s),
            Value::DollarQuotedString(d) => Some(&d.value),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn placeholder_index(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => p.strip_prefix('$')?.parse::<usize>().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// The name Postgres gives an output column computed by `expr` (`FigureColname`).
pub(crate) fn column_name(expr: &Expr) -> String {
    figure_name(expr).unwrap_or_else(|| "?column?".to_owned())
}

pub(crate) fn figure_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(ident_name(ident)),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident_name),
        Expr::Function(f) => f.name.0.last().map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.to_ascii_lowercase(),
            other => other.to_string().to_ascii_lowercase(),
        }),
        Expr::Cast {
            expr,
            data_type: dt,
            ..
        } => figure_name(expr).or_else(|| match cast_target(dt) {
            Ok(CastTarget::Type(t)) if !t.is_interval() => Some(typname(t.ty).to_owned()),
            // regclass, regtype, interval, ...: the type's own name.
            _ => Some(
                dt.to_string()
                    .to_ascii_lowercase()
                    .trim_start_matches("pg_catalog.")
                    .to_owned(),
            ),
        }),
        Expr::Nested(inner) => figure_name(inner),
        // `t.j['a']` is named after the column.
        Expr::CompoundFieldAccess { root, access_chain } => access_chain
            .iter()
            .rev()
            .find_map(|a| match a {
                sqlparser::ast::AccessExpr::Dot(Expr::Identifier(ident)) => Some(ident_name(ident)),
                _ => None,
            })
            .or_else(|| figure_name(root)),
        Expr::Case { .. } => Some("case".to_owned()),
        Expr::Exists { .. } => Some("exists".to_owned()),
        Expr::Array(_) => Some("array".to_owned()),
        Expr::Substring { .. } => Some("substring".to_owned()),
        Expr::Position { .. } => Some("position".to_owned()),
        Expr::Trim { .. } => Some("btrim".to_owned()),
        Expr::Extract { .. } => Some("extract".to_owned()),
        Expr::Ceil { .. } => Some("ceil".to_owned()),
        Expr::Floor { .. } => Some("floor".to_owned()),
        Expr::Collate { expr, .. } => figure_name(expr),
        Expr::TypedString(ts) => data_type(&ts.data_type)
            .ok()
            .map(|t| typname(t.ty).to_owned()),
        Expr::Value(v) if matches!(v.value, Value::Boolean(_)) => Some("bool".to_owned()),
        Expr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(s) => match s.projection.first() {
                Some(SelectItem::ExprWithAlias { alias, .. }) => Some(ident_name(alias)),
                Some(SelectItem::UnnamedExpr(e)) => figure_name(e),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

pub(crate) enum CastTarget {
    Type(Ty),
    RegClass,
    RegType,
    /// Casts that change nothing in storage (`::oid` on an integer, `::regtype`).
    Identity(Ty),
}

pub(crate) fn cast_target(dt: &DataType) -> Result<CastTarget, DbError> {
    let text = dt.to_string().to_ascii_lowercase();
    let text = text.strip_prefix("pg_catalog.").unwrap_or(&text);
    match text {
        "regclass" => Ok(CastTarget::RegClass),
        "regtype" => Ok(CastTarget::RegType),
        "interval" => Ok(CastTarget::Type(Ty::interval())),
        "regproc" | "regprocedure" | "regnamespace" | "regrole" => {
            Ok(CastTarget::Identity(Ty::of(PgType::Oid)))
        }
        "int2vector" | "oidvector" => {
            let oid = if text == "int2vector" {
                array::INT2VECTOR
            } else {
                array::OIDVECTOR
            };
            ArrayType::from_oid(oid)
                .map(|a| CastTarget::Type(Ty::array(a)))
                .ok_or_else(|| crate::errors::internal(format!("no array type {oid}")))
        }
        _ => match dt {
            DataType::Array(
                ArrayElemTypeDef::SquareBracket(elem, _)
                | ArrayElemTypeDef::AngleBracket(elem)
                | ArrayElemTypeDef::Qualified(elem, _),
            ) => {
                let elem = data_type(elem)?;
                if elem.array_type().is_some() || elem.is_interval() {
                    return Err(unsupported(format!("array type {dt}")));
                }
                ArrayType::of(elem.ty)
                    .map(|a| CastTarget::Type(Ty::array(a)))
                    .ok_or_else(|| DbError::new("42704", format!("type \"{text}\" does not exist")))
            }
            _ => data_type(dt).map(CastTarget::Type),
        },
    }
}

/// Comparisons ignore a typmod: `varchar(3)` compared with a longer literal is no error.
pub(crate) fn comparison_type(t: Option<Ty>) -> Option<Ty> {
    // Intervals stay intervals: their text does not compare as they do (`25:00:00` is
    // `1 day 01:00:00`), so comparisons of them are rewritten. Arrays stay arrays, so that
    // the other side is read as one (`'{ 1, 02 }'` is `{1,2}`).
    t.map(|t| {
        if t.is_interval() || t.array_type().is_some() {
            t
        } else {
            Ty::of(t.ty)
        }
    })
}

/// `generate_series(a, b[, step])` in FROM as a recursive CTE over integers.
pub(crate) fn generate_series(
    args: &[FunctionArg],
    alias: Option<&sqlparser::ast::TableAlias>,
) -> Result<TableFactor, DbError> {
    let exprs: Vec<String> = args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e.to_string()),
            other => Err(unsupported(format!("generate_series argument {other}"))),
        })
        .collect::<Result<_, _>>()?;
    let (start, stop, step) = match exprs.as_slice() {
        [a, b] => (a.clone(), b.clone(), "1".to_owned()),
        [a, b, s] => (a.clone(), b.clone(), s.clone()),
        _ => {
            return Err(DbError::new(
                "42883",
                "function generate_series does not exist",
            ));
        }
    };
    let lower = |s: &str| s.to_ascii_lowercase();
    let temporal = lower(&step).contains("interval")
        || [&start, &stop]
            .iter()
            .any(|e| lower(e).contains("date") || lower(e).contains("timestamp"));
    let descending = step.trim_start().starts_with('-') || (temporal && step.contains("'-"));
    // Timestamps step by an interval: both ends as one timestamp type, so that they compare
    // as timestamps (a date's text is not a timestamp's). Dates give timestamptz, as in
    // Postgres, where a date converts to it.
    let (start, stop, step) = if temporal {
        let without_zone = lower(&start).contains("timestamp")
            && !lower(&start).contains("timestamptz")
            && !lower(&start).contains("with time zone");
        let ty = if without_zone {
            "timestamp"
        } else {
            "timestamptz"
        };
        (
            format!("CAST(({start}) AS {ty})"),
            format!("CAST(({stop}) AS {ty})"),
            format!("CAST(({step}) AS interval)"),
        )
    } else {
        (start, stop, step)
    };
    let relation = alias
        .map(|a| ident_name(&a.name))
        .unwrap_or_else(|| "generate_series".to_owned());
    let column = alias
        .and_then(|a| a.columns.first())
        .map(|c| ident_name(&c.name))
        .unwrap_or_else(|| relation.clone());
    let op = if descending { ">=" } else { "<=" };
    let sql = format!(
        "WITH RECURSIVE __series(v) AS (SELECT {start} UNION ALL SELECT v + ({step}) FROM __series \
         WHERE v + ({step}) {op} ({stop})) SELECT v AS {} FROM __series WHERE v {op} ({stop})",
        crate::catalog::quote_ident(&column)
    );
    let mut statements =
        sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, &sql)
            .map_err(|e| DbError::new("42601", e.to_string()))?;
    let Some(sqlparser::ast::Statement::Query(subquery)) = statements.pop() else {
        return Err(crate::errors::internal("generate_series did not parse"));
    };
    Ok(TableFactor::Derived {
        lateral: false,
        subquery,
        alias: Some(sqlparser::ast::TableAlias {
            explicit: true,
            name: Ident::new(relation),
            columns: vec![],
            at: None,
        }),
        sample: None,
    })
}

pub(crate) fn number_type(text: &str) -> PgType {
    if text.contains(['.', 'e', 'E']) {
        return PgType::Numeric;
    }
    match text.parse::<i64>() {
        Ok(v) if i32::try_from(v).is_ok() => PgType::Int4,
        Ok(_) => PgType::Int8,
        Err(_) => PgType::Numeric,
    }
}

pub(crate) fn rename(
    mut cols: Vec<OutColumn>,
    names: &[sqlparser::ast::TableAliasColumnDef],
) -> Vec<OutColumn> {
    for (col, alias) in cols.iter_mut().zip(names) {
        col.name = ident_name(&alias.name);
    }
    cols
}

/// `json_each(<call>) AS <alias>`: SQLite's table-valued function over the JSON array of rows a
/// set-returning function's emulation builds.
pub(crate) fn json_each_of(call: Expr, alias: Ident) -> TableFactor {
    use sqlparser::ast::{TableAlias, TableFunctionArgs};
    TableFactor::Table {
        name: ObjectName::from(vec![Ident::new("json_each")]),
        alias: Some(TableAlias {
            explicit: true,
            name: alias,
            columns: vec![],
            at: None,
        }),
        args: Some(TableFunctionArgs {
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(call))],
            settings: None,
        }),
        with_hints: vec![],
        version: None,
        with_ordinality: false,
        partitions: vec![],
        json_path: None,
        sample: None,
        index_directives: vec![],
        inheritance: None,
    }
}
