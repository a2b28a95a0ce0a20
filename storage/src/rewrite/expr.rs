//! Context-free rewrites from Postgres to SQLite syntax, applied after type inference.
//!
//! Everything here depends on the node alone (`$1` → `?1`, `true` → `1`, `now()` → a
//! registered function); rewrites that need types happen in `infer`.

use std::ops::ControlFlow;

use mycelium_protocol::DbError;
use mycelium_protocol::types::SqlValue;
use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArguments, Ident, InTarget, ObjectName, ObjectNamePart, Query,
    UnaryOperator, Value, ValueWithSpan, VisitMut, VisitorMut,
};

use super::infer::{function_call, object_parts, value_expr};
use crate::errors::unsupported;

pub(crate) struct Rewriter {
    /// Replace unsupported expressions by NULL instead of failing (catalog queries).
    lenient: bool,
}

impl Rewriter {
    fn outcome(&self, expr: &mut Expr, result: Result<(), DbError>) -> ControlFlow<DbError> {
        match result {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) if self.lenient && e.code == crate::errors::FEATURE_NOT_SUPPORTED => {
                *expr = null();
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// Applies the rewrites to any visitable node (statement, query, expression).
pub(crate) fn rewrite<T: VisitMut>(node: &mut T, lenient: bool) -> Result<(), DbError> {
    match node.visit(&mut Rewriter { lenient }) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(err) => Err(err),
    }
}

fn null() -> Expr {
    Expr::Value(ValueWithSpan::from(Value::Null))
}

fn take_box(expr: &mut Box<Expr>) -> Expr {
    std::mem::replace(expr.as_mut(), null())
}

fn int(v: i64) -> Expr {
    value_expr(SqlValue::Int(v))
}

fn not(expr: Expr) -> Expr {
    Expr::UnaryOp {
        op: UnaryOperator::Not,
        expr: Box::new(Expr::Nested(Box::new(expr))),
    }
}

impl VisitorMut for Rewriter {
    type Break = DbError;

    fn post_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<DbError> {
        let replacement = match &mut value.value {
            Value::Placeholder(p) => match p.strip_prefix('$') {
                Some(n) => Value::Placeholder(format!("?{n}")),
                None => return ControlFlow::Continue(()),
            },
            Value::Boolean(b) => Value::Number(if *b { "1" } else { "0" }.to_owned(), false),
            Value::EscapedStringLiteral(s) | Value::UnicodeStringLiteral(s) => {
                Value::SingleQuotedString(std::mem::take(s))
            }
            Value::DollarQuotedString(d) => Value::SingleQuotedString(std::mem::take(&mut d.value)),
            Value::NationalStringLiteral(s) => Value::SingleQuotedString(std::mem::take(s)),
            _ => return ControlFlow::Continue(()),
        };
        value.value = replacement;
        ControlFlow::Continue(())
    }

    fn post_visit_relation(&mut self, name: &mut ObjectName) -> ControlFlow<DbError> {
        let parts = object_parts(name);
        if parts.len() == 2 && (parts[0] == "public" || parts[0] == "main") {
            name.0.remove(0);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<DbError> {
        use sqlparser::ast::{LimitClause, OrderByKind, OrderBySort};
        // Postgres sorts NULLs as larger than every value; SQLite as smaller.
        if let Some(order_by) = &mut query.order_by
            && let OrderByKind::Expressions(exprs) = &mut order_by.kind
        {
            for e in exprs {
                if e.options.nulls_first.is_none() {
                    let desc = matches!(e.options.sort, Some(OrderBySort::Desc));
                    e.options.nulls_first = Some(desc);
                }
            }
        }
        if let Some(fetch) = query.fetch.take() {
            if fetch.percent || fetch.with_ties {
                return ControlFlow::Break(unsupported("FETCH ... PERCENT / WITH TIES"));
            }
            let quantity = fetch.quantity.unwrap_or_else(|| int(1));
            match &mut query.limit_clause {
                Some(LimitClause::LimitOffset { limit, .. }) => *limit = Some(quantity),
                _ => {
                    query.limit_clause = Some(LimitClause::LimitOffset {
                        limit: Some(quantity),
                        offset: None,
                        limit_by: vec![],
                    })
                }
            }
        }
        // SQLite needs a LIMIT before an OFFSET, and knows no `OFFSET n ROWS`.
        if let Some(LimitClause::LimitOffset {
            limit,
            offset: Some(offset),
            ..
        }) = &mut query.limit_clause
        {
            offset.rows = sqlparser::ast::OffsetRows::None;
            if limit.is_none() {
                *limit = Some(int(-1));
            }
        }
        // Row locks: SQLite's write transaction already excludes other writers.
        query.locks.clear();
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<DbError> {
        // Before the children: `ARRAY[...]` is fine as the list of `= ANY`, not elsewhere.
        let result = match expr {
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            } => match compare_op {
                BinaryOperator::Eq => in_from_array(take_box(left), right, false),
                _ => Err(unsupported(format!("{compare_op} ANY"))),
            },
            Expr::AllOp {
                left,
                compare_op,
                right,
            } => match compare_op {
                BinaryOperator::NotEq => in_from_array(take_box(left), right, true),
                _ => Err(unsupported(format!("{compare_op} ALL"))),
            },
            _ => return ControlFlow::Continue(()),
        };
        let result = result.map(|e| *expr = e);
        self.outcome(expr, result)
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<DbError> {
        let result = rewrite_expr(expr);
        self.outcome(expr, result)
    }
}

fn function_name(name: &ObjectName) -> Result<String, DbError> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.to_ascii_lowercase(),
            other => other.to_string().to_ascii_lowercase(),
        })
        .collect();
    match parts.as_slice() {
        [one] => Ok(one.clone()),
        [schema, one] if schema == "pg_catalog" || schema == "public" => Ok(one.clone()),
        _ => Err(unsupported(format!("function {name}"))),
    }
}

/// Window functions SQLite computes as Postgres does (same frames, same NULL handling):
/// ranking, offsets and the plain aggregates. Others stay refused.
fn is_window_function(name: &str) -> bool {
    matches!(
        name,
        "row_number"
            | "rank"
            | "dense_rank"
            | "percent_rank"
            | "cume_dist"
            | "ntile"
            | "lag"
            | "lead"
            | "first_value"
            | "last_value"
            | "nth_value"
            | "count"
            | "sum"
            | "min"
            | "max"
            | "avg"
    )
}

/// The size functions (psql's `\dt+`, `\l+`), from SQLite's `dbstat` table and page
/// counts: bytes of pages in use, as Postgres counts them, without its free space map.
fn storage_size(name: &str, f: &sqlparser::ast::Function) -> Result<Option<Expr>, DbError> {
    let arg = || match &f.args {
        FunctionArguments::List(list) if list.args.len() == 1 => Ok(list.args[0].to_string()),
        _ => Err(DbError::new(
            "42883",
            format!("function {name} takes one argument"),
        )),
    };
    let sql = match name {
        "pg_table_size" | "pg_relation_size" => format!(
            "(SELECT coalesce(sum(pgsize), 0) FROM dbstat \
             WHERE name = __pg_regclass_name({}) AND aggregate = 1)",
            arg()?
        ),
        "pg_total_relation_size" | "pg_indexes_size" => format!(
            "(SELECT coalesce(sum(d.pgsize), 0) FROM dbstat AS d \
             JOIN sqlite_schema AS m ON m.name = d.name \
             WHERE m.tbl_name = __pg_regclass_name({}){})",
            arg()?,
            if name == "pg_indexes_size" {
                " AND m.type = 'index'"
            } else {
                ""
            }
        ),
        "pg_database_size" => {
            arg()?;
            "(SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size())"
                .to_owned()
        }
        _ => return Ok(None),
    };
    sqlparser::parser::Parser::new(&sqlparser::dialect::SQLiteDialect {})
        .try_with_sql(&sql)
        .and_then(|mut parser| parser.parse_expr())
        .map(Some)
        .map_err(|e| DbError::new("XX000", format!("size expression: {e}")))
}

/// `?n` compared for equality becomes `+?n`, the same value without affinity as before. SQLite
/// marks a statement whose plan matched an equality with a parameter against its `ORDER BY`
/// (`WHERE owner = ?1 ORDER BY at`) to be compiled again whenever that parameter is bound
/// anew, so such a prepared statement was compiled at every execution; with `+` it is not, and
/// the plan (index use included) is the same.
fn plus_parameter(side: &mut Expr) {
    if let Expr::Value(value) = side
        && matches!(&value.value, Value::Placeholder(p) if p.starts_with('?'))
    {
        let parameter = std::mem::replace(side, null());
        *side = Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr: Box::new(parameter),
        };
    }
}

fn rewrite_expr(expr: &mut Expr) -> Result<(), DbError> {
    match expr {
        Expr::Function(f) => {
            if f.over.is_some() && !is_window_function(&function_name(&f.name)?) {
                return Err(unsupported(format!("window function {}", f.name)));
            }
            if !f.within_group.is_empty() {
                return Err(unsupported(format!("{} WITHIN GROUP", f.name)));
            }
            let name = function_name(&f.name)?;
            if let Some(size) = storage_size(&name, f)? {
                *expr = size;
                return Ok(());
            }
            let no_parens = matches!(f.args, FunctionArguments::None);
            let renamed = match name.as_str() {
                "now" | "transaction_timestamp" | "statement_timestamp" | "current_timestamp" => {
                    Some("__pg_now")
                }
                "clock_timestamp" => Some("__pg_clock_timestamp"),
                "localtimestamp" => Some("__pg_localtimestamp"),
                "current_date" => Some("__pg_current_date"),
                "current_time" | "localtime" => Some("__pg_current_time"),
                "random" => Some("__pg_random"),
                "gen_random_uuid" | "uuid_generate_v4" => Some("__pg_gen_random_uuid"),
                "char_length" | "character_length" => Some("length"),
                "octet_length" => Some("__pg_octet_length"),
                "bool_and" | "every" => Some("min"),
                "bool_or" => Some("max"),
                "strpos" => Some("instr"),
                "btrim" => Some("trim"),
                "version" => Some("__pg_version"),
                "current_database" => Some("__pg_current_database"),
                "current_schema" => Some("__pg_current_schema"),
                "current_user" | "session_user" | "user" | "current_role" => {
                    Some("__pg_current_user")
                }
                "greatest" => Some("__pg_greatest"),
                "least" => Some("__pg_least"),
                "date_part" => Some("__pg_date_part"),
                "left" => Some("__pg_left"),
                "right" => Some("__pg_right"),
                "lpad" => Some("__pg_lpad"),
                "rpad" => Some("__pg_rpad"),
                "repeat" => Some("__pg_repeat"),
                "md5" => Some("__pg_md5"),
                "format" => Some("__pg_format"),
                "trunc" => Some("__pg_trunc"),
                "pow" | "power" => Some("pow"),
                "array"
                | "array_upper"
                | "array_lower"
                | "array_position"
                | "current_schemas"
                | "generate_subscripts"
                | "pg_get_partkeydef"
                | "array_agg"
                | "json_agg"
                | "jsonb_agg"
                | "json_object_agg"
                | "jsonb_object_agg"
                | "unnest"
                | "generate_series"
                | "array_length"
                | "regexp_matches"
                | "to_char"
                | "to_timestamp"
                | "to_date" => {
                    return Err(unsupported(format!("function {name}()")));
                }
                "nextval" => Some("__pg_nextval"),
                "currval" | "setval" | "lastval" => {
                    return Err(unsupported(format!("sequence function {name}()"))
                        .with_hint("Use serial or bigserial columns."));
                }
                _ => None,
            };
            if let Some(new_name) = renamed {
                f.name = ObjectName::from(vec![Ident::new(new_name)]);
                if no_parens {
                    f.args = FunctionArguments::List(sqlparser::ast::FunctionArgumentList {
                        duplicate_treatment: None,
                        args: vec![],
                        clauses: vec![],
                    });
                }
            } else if f.name.0.len() > 1 {
                f.name = ObjectName::from(vec![Ident::new(name)]);
            }
        }
        Expr::Substring {
            expr: e,
            substring_from,
            substring_for,
            ..
        } => {
            let mut args = vec![take_box(e)];
            args.push(
                substring_from
                    .as_mut()
                    .map(take_box)
                    .unwrap_or_else(|| int(1)),
            );
            if let Some(f) = substring_for.as_mut() {
                args.push(take_box(f));
            }
            *expr = function_call("substr", args);
        }
        Expr::Position { expr: needle, r#in } => {
            *expr = function_call("instr", vec![take_box(r#in), take_box(needle)]);
        }
        Expr::Trim {
            trim_where,
            trim_what,
            expr: e,
            trim_characters,
        } => {
            use sqlparser::ast::TrimWhereField as W;
            if trim_characters.is_some() {
                return Err(unsupported("TRIM with a character list"));
            }
            let name = match trim_where {
                Some(W::Leading) => "ltrim",
                Some(W::Trailing) => "rtrim",
                _ => "trim",
            };
            let mut args = vec![take_box(e)];
            if let Some(w) = trim_what.as_mut() {
                args.push(take_box(w));
            }
            *expr = function_call(name, args);
        }
        Expr::Extract { field, expr: e, .. } => {
            let field = field.to_string().to_ascii_lowercase();
            *expr = function_call(
                "__pg_extract",
                vec![value_expr(SqlValue::Text(field)), take_box(e)],
            );
        }
        Expr::Like {
            negated,
            any,
            expr: e,
            pattern,
            escape_char,
        } => {
            if *any {
                return Err(unsupported("LIKE ANY"));
            }
            let call = like_call(
                take_box(e),
                take_box(pattern),
                escape_char.as_mut().map(take_box),
                false,
            );
            *expr = if *negated { not(call) } else { call };
        }
        Expr::ILike {
            negated,
            any,
            expr: e,
            pattern,
            escape_char,
        } => {
            if *any {
                return Err(unsupported("ILIKE ANY"));
            }
            let call = like_call(
                take_box(e),
                take_box(pattern),
                escape_char.as_mut().map(take_box),
                true,
            );
            *expr = if *negated { not(call) } else { call };
        }
        Expr::BinaryOp { left, op, right } => {
            let regex = match op {
                BinaryOperator::PGRegexMatch => Some((false, false)),
                BinaryOperator::PGRegexIMatch => Some((true, false)),
                BinaryOperator::PGRegexNotMatch => Some((false, true)),
                BinaryOperator::PGRegexNotIMatch => Some((true, true)),
                BinaryOperator::PGCustomBinaryOperator(parts) => {
                    match parts.last().map(String::as_str) {
                        Some("~") => Some((false, false)),
                        Some("~*") => Some((true, false)),
                        Some("!~") => Some((false, true)),
                        Some("!~*") => Some((true, true)),
                        Some("=") => {
                            *op = BinaryOperator::Eq;
                            None
                        }
                        Some("<>") => {
                            *op = BinaryOperator::NotEq;
                            None
                        }
                        _ => return Err(unsupported(format!("operator {op}"))),
                    }
                }
                BinaryOperator::Divide | BinaryOperator::Modulo => {
                    // `infer` already replaced divisions that need a type-aware check.
                    None
                }
                BinaryOperator::PGBitwiseXor => {
                    *expr = function_call("__pg_xor", vec![take_box(left), take_box(right)]);
                    return Ok(());
                }
                BinaryOperator::PGOverlap
                | BinaryOperator::PGStartsWith
                | BinaryOperator::HashArrow
                | BinaryOperator::HashLongArrow
                | BinaryOperator::AtArrow
                | BinaryOperator::ArrowAt
                | BinaryOperator::HashMinus
                | BinaryOperator::AtQuestion
                | BinaryOperator::AtAt
                | BinaryOperator::Question
                | BinaryOperator::QuestionAnd
                | BinaryOperator::QuestionPipe => {
                    return Err(unsupported(format!("operator {op}")));
                }
                _ => None,
            };
            if let Some((insensitive, negated)) = regex {
                let call = function_call(
                    "__pg_regex_match",
                    vec![take_box(left), take_box(right), int(i64::from(insensitive))],
                );
                *expr = if negated { not(call) } else { call };
            } else if *op == BinaryOperator::Eq {
                plus_parameter(left);
                plus_parameter(right);
            }
        }
        Expr::Collate { expr: inner, .. } => {
            // Postgres's default and "C" collations compare bytes, as SQLite's BINARY does.
            *expr = take_box(inner);
        }
        Expr::Cast {
            expr: inner,
            data_type,
            ..
        } => {
            // Casts that inference did not resolve (its source type unknown).
            let target = super::infer::data_type(data_type)?;
            *expr = function_call(
                "__pg_cast",
                vec![
                    take_box(inner),
                    int(0),
                    int(i64::from(target.ty.oid())),
                    int(i64::from(target.typmod)),
                ],
            );
        }
        Expr::Array(_) => return Err(unsupported("arrays")),
        Expr::Interval(_) => return Err(unsupported("intervals")),
        Expr::IsNormalized { .. } | Expr::IsJson { .. } => {
            return Err(unsupported("IS NORMALIZED / IS JSON"));
        }
        Expr::GroupingSets(_) | Expr::Cube(_) | Expr::Rollup(_) => {
            return Err(unsupported("GROUPING SETS / CUBE / ROLLUP"));
        }
        Expr::CompoundFieldAccess { .. } => return Err(unsupported("array subscripts")),
        _ => {}
    }
    Ok(())
}

fn like_call(value: Expr, pattern: Expr, escape: Option<Expr>, insensitive: bool) -> Expr {
    let mut args = vec![value, pattern, int(i64::from(insensitive))];
    if let Some(escape) = escape {
        args.push(escape);
    }
    function_call("__pg_like", args)
}

/// `x [NOT] LIKE ANY (ARRAY[p1, p2])`, which SQLite lacks, as `(x [NOT] LIKE p1 OR x [NOT]
/// LIKE p2)` (ILIKE alike); an array that is not written out is refused.
pub(super) fn like_any(
    value: &mut Box<Expr>,
    pattern: &mut Box<Expr>,
    escape_char: &mut Option<Box<Expr>>,
    negated: bool,
    insensitive: bool,
) -> Result<Expr, DbError> {
    let mut inner = take_box(pattern);
    while let Expr::Nested(e) | Expr::Cast { expr: e, .. } = inner {
        inner = *e;
    }
    let Expr::Array(array) = inner else {
        return Err(unsupported(
            "LIKE ANY over an array that is not written out",
        ));
    };
    let value = take_box(value);
    let escape_char = escape_char.as_mut().map(|e| Box::new(take_box(e)));
    let each = |pattern: Expr| {
        let (expr, pattern, escape_char) = (
            Box::new(value.clone()),
            Box::new(pattern),
            escape_char.clone(),
        );
        if insensitive {
            Expr::ILike {
                negated,
                any: false,
                expr,
                pattern,
                escape_char,
            }
        } else {
            Expr::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char,
            }
        }
    };
    Ok(array
        .elem
        .into_iter()
        .map(each)
        .reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: BinaryOperator::Or,
            right: Box::new(b),
        })
        .map_or(Expr::Value(Value::Boolean(false).into()), |e| {
            Expr::Nested(Box::new(e))
        }))
}

fn in_from_array(left: Expr, right: &mut Box<Expr>, negated: bool) -> Result<Expr, DbError> {
    let mut inner = take_box(right);
    while let Expr::Nested(e) = inner {
        inner = *e;
    }
    let target = match inner {
        Expr::Array(array) => InTarget::List(array.elem),
        Expr::Subquery(q) => InTarget::Subquery(q),
        other => {
            return Err(unsupported(format!(
                "ANY/ALL over {other} (arrays are not supported)"
            )));
        }
    };
    Ok(Expr::In {
        expr: Box::new(left),
        target,
        negated,
        global: false,
    })
}
