//! Type inference over the Postgres AST, before it is rewritten for SQLite.
//!
//! One walk does three jobs that all need to know what type each expression has:
//! - result column types and names, as Postgres would put them in `RowDescription`;
//! - parameter types the client left unspecified (`WHERE id = $1` takes `id`'s type);
//! - folding string literals that Postgres would coerce to a column's type (`'t'` compared
//!   with a boolean becomes `1`), so SQLite compares storage values with storage values.
//!
//! Columns it cannot resolve are typed `None` rather than rejected: SQLite names the
//! missing column or table more precisely when the statement is prepared.

use mycelium_protocol::DbError;
use mycelium_protocol::types::{self, PgType, SqlValue};
use sqlparser::ast::{
    Expr, ObjectName, Query, Select, SelectItem, SetExpr, TableFactor, TableWithJoins,
    UnaryOperator, Value, ValueWithSpan,
};

use super::OutColumn;
use crate::catalog::{Schema, TableInfo, Ty};
use crate::errors::unsupported;
use crate::functions::array::ArrayType;

/// A relation visible in a query: a table, a CTE, a subquery, with its columns.
#[derive(Debug, Clone)]
pub(crate) struct Rel {
    pub name: String,
    pub cols: Vec<OutColumn>,
    /// SQLite's table has a hidden column: a `*` over it must be spelled out.
    pub hidden: bool,
    /// A set-returning function's rows (`srf`): its columns are read out of JSON.
    pub srf: bool,
}

impl Rel {
    pub fn of_table(table: &TableInfo, alias: Option<String>) -> Rel {
        Rel {
            hidden: table.hidden_rowid,
            srf: false,
            name: alias.unwrap_or_else(|| table.name.to_ascii_lowercase()),
            cols: table
                .columns
                .iter()
                .map(|c| OutColumn {
                    name: c.name.clone(),
                    ty: c.ty,
                    table_oid: table.oid,
                    attnum: c.attnum,
                })
                .collect(),
        }
    }
}

pub(crate) struct Inferer<'s> {
    pub schema: &'s Schema,
    /// Parameter types: the client's where given, else what context implied.
    pub params: Vec<Option<Ty>>,
    pub scopes: Vec<Vec<Rel>>,
    ctes: Vec<Vec<Rel>>,
    /// Set when the statement locks rows (`FOR UPDATE`) and so must start a write transaction.
    pub locks: bool,
    /// Unsupported expressions become NULL instead of failing (catalog queries).
    pub lenient: bool,
    /// The statement reads an emulated catalog relation.
    pub uses_catalog: bool,
    /// While a select list is inferred: the set lengths of its set-returning calls
    /// (`arrays`); `None` where such calls are not allowed.
    pub srf_rows: Option<Vec<Expr>>,
}

pub(crate) use super::syntax::*;

type Typed = Result<Option<Ty>, DbError>;

impl<'s> Inferer<'s> {
    pub fn new(schema: &'s Schema, client_params: &[u32]) -> Inferer<'s> {
        Inferer {
            schema,
            params: client_params
                .iter()
                .map(|oid| {
                    if *oid == crate::catalog::INTERVAL_OID {
                        return Some(Ty::interval());
                    }
                    PgType::from_oid(*oid)
                        .map(Ty::of)
                        .or_else(|| ArrayType::from_oid(*oid).map(Ty::array))
                })
                .collect(),
            scopes: Vec::new(),
            ctes: Vec::new(),
            locks: false,
            lenient: false,
            uses_catalog: false,
            srf_rows: None,
        }
    }

    /// The final parameter types: unresolved ones are `text`, as Postgres's `unknown` ends up.
    pub fn param_types(&self) -> Vec<Ty> {
        self.params
            .iter()
            .map(|p| p.unwrap_or(Ty::of(PgType::Text)))
            .collect()
    }

    pub fn table(&mut self, name: &ObjectName) -> Result<&'s std::sync::Arc<TableInfo>, DbError> {
        let name = table_name(name)?;
        let table = self
            .schema
            .table(&name)
            .ok_or_else(|| DbError::new("42P01", format!("relation \"{name}\" does not exist")))?;
        if table.is_system() {
            self.uses_catalog = true;
        }
        Ok(table)
    }

    fn cte(&self, name: &str) -> Option<&Rel> {
        self.ctes
            .iter()
            .rev()
            .flat_map(|frame| frame.iter())
            .find(|rel| rel.name == name)
    }

    /// Output columns of a query. `expected` types the bare parameters and literals of the
    /// select list (`INSERT INTO t SELECT $1, $2`).
    pub fn query(
        &mut self,
        query: &mut Query,
        expected: Option<&[Ty]>,
    ) -> Result<Vec<OutColumn>, DbError> {
        self.ctes.push(Vec::new());
        let result = self.query_inner(query, expected);
        self.ctes.pop();
        result
    }

    fn query_inner(
        &mut self,
        query: &mut Query,
        expected: Option<&[Ty]>,
    ) -> Result<Vec<OutColumn>, DbError> {
        self.register_ctes(&mut query.with)?;
        let cols = match query.body.as_mut() {
            SetExpr::Select(select) => self.select(select, expected, query.order_by.as_mut())?,
            body => self.set_expr(body, expected)?,
        };
        if let Some(sqlparser::ast::LimitClause::LimitOffset { limit, offset, .. }) =
            &mut query.limit_clause
        {
            if let Some(limit) = limit {
                self.expr(limit, Some(Ty::of(PgType::Int8)))?;
            }
            if let Some(offset) = offset {
                self.expr(&mut offset.value, Some(Ty::of(PgType::Int8)))?;
            }
        }
        if !query.locks.is_empty() {
            self.locks = true;
        }
        Ok(cols)
    }

    /// Makes a WITH clause's CTEs visible in the innermost CTE frame.
    pub fn register_ctes(
        &mut self,
        with: &mut Option<sqlparser::ast::With>,
    ) -> Result<(), DbError> {
        if self.ctes.is_empty() {
            self.ctes.push(Vec::new());
        }
        if let Some(with) = with {
            for cte in &mut with.cte_tables {
                let name = ident_name(&cte.alias.name);
                let cols = if with.recursive
                    && let SetExpr::SetOperation { left, right, .. } = cte.query.body.as_mut()
                {
                    // The recursive term refers to the CTE itself: type it from the anchor.
                    let anchor = self.set_expr(left, None)?;
                    let anchor = rename(anchor, &cte.alias.columns);
                    if let Some(frame) = self.ctes.last_mut() {
                        frame.push(Rel {
                            hidden: false,
                            srf: false,
                            name: name.clone(),
                            cols: anchor.clone(),
                        });
                    }
                    self.set_expr(right, None)?;
                    if let Some(frame) = self.ctes.last_mut() {
                        frame.pop();
                    }
                    anchor
                } else {
                    let cols = self.query(&mut cte.query, None)?;
                    rename(cols, &cte.alias.columns)
                };
                if let Some(frame) = self.ctes.last_mut() {
                    frame.push(Rel {
                        name,
                        cols,
                        hidden: false,
                        srf: false,
                    });
                }
            }
        }
        Ok(())
    }

    fn set_expr(
        &mut self,
        body: &mut SetExpr,
        expected: Option<&[Ty]>,
    ) -> Result<Vec<OutColumn>, DbError> {
        match body {
            SetExpr::Select(select) => self.select(select, expected, None),
            SetExpr::Query(q) => self.query(q, expected),
            SetExpr::SetOperation { left, right, .. } => {
                let mut cols = self.set_expr(left, expected)?;
                let types: Vec<Ty> = cols.iter().map(|c| c.ty).collect();
                let right_cols = self.set_expr(right, Some(&types))?;
                // A date column beside a timestamp one is a timestamp column, as Postgres
                // resolves the set operation's type.
                for (i, (col, other)) in cols.iter_mut().zip(&right_cols).enumerate() {
                    if let Some(wider) =
                        super::operators::widest_temporal(&[Some(col.ty), Some(other.ty)])
                    {
                        widen_output(left, i, col.ty, wider);
                        widen_output(right, i, other.ty, wider);
                        col.ty = wider;
                    }
                }
                Ok(cols)
            }
            SetExpr::Values(values) => {
                let mut cols: Vec<OutColumn> = Vec::new();
                for row in &mut values.rows {
                    for (i, e) in row.content.iter_mut().enumerate() {
                        let want = expected
                            .and_then(|t| t.get(i).copied())
                            .or_else(|| cols.get(i).map(|c| c.ty));
                        let ty = self.expr(e, want)?;
                        if cols.len() <= i {
                            cols.push(OutColumn::expr(
                                format!("column{}", i + 1),
                                ty.unwrap_or(Ty::of(PgType::Text)),
                            ));
                        }
                    }
                }
                Ok(cols)
            }
            other => Err(unsupported(format!("query body {other}"))),
        }
    }

    /// A select, and the ORDER BY of the query it is the body of (typed in its scope).
    fn select(
        &mut self,
        select: &mut Select,
        expected: Option<&[Ty]>,
        order_by: Option<&mut sqlparser::ast::OrderBy>,
    ) -> Result<Vec<OutColumn>, DbError> {
        if let Some(sqlparser::ast::Distinct::On(_)) = select.distinct {
            return Err(unsupported("SELECT DISTINCT ON"));
        }
        if select.into.is_some() {
            return Err(unsupported("SELECT INTO"));
        }
        self.scopes.push(Vec::new());
        // A select nested in an outer select list has its own set-returning calls.
        let outer_srfs = self.srf_rows.take();
        let result = self.select_inner(select, expected).and_then(|out| {
            if let Some(order_by) = order_by {
                self.order_by(order_by, &out, Some(&select.projection))?;
                if let Some(scope) = self.scopes.last()
                    && scope
                        .iter()
                        .any(|r| r.srf || r.name == super::arrays::SRF_RELATION)
                {
                    qualify_order_by(order_by, scope, &out);
                }
            }
            Ok(out)
        });
        self.srf_rows = outer_srfs;
        self.scopes.pop();
        result
    }

    /// Types the terms of an ORDER BY (a select list column named by its name or position is
    /// typed already). Intervals sort by their span, as in Postgres; arrays are refused
    /// (SQLite would order them by their text: `{10}` before `{9}`).
    pub fn order_by(
        &mut self,
        order_by: &mut sqlparser::ast::OrderBy,
        out: &[OutColumn],
        projection: Option<&[SelectItem]>,
    ) -> Result<(), DbError> {
        let sqlparser::ast::OrderByKind::Expressions(exprs) = &mut order_by.kind else {
            return Ok(());
        };
        for e in exprs {
            let named = match &e.expr {
                Expr::Value(v) => match &v.value {
                    Value::Number(n, _) => n
                        .parse::<usize>()
                        .ok()
                        .and_then(|n| out.get(n.checked_sub(1)?)),
                    _ => None,
                },
                Expr::Identifier(ident) => out.iter().find(|c| c.name == ident_name(ident)),
                _ => None,
            };
            let ty = match named {
                Some(column) => Some(column.ty),
                // A term that names something this scope cannot type is left to SQLite.
                None => self.expr(&mut e.expr, None).ok().flatten(),
            };
            if let Some(array) = ty.and_then(Ty::array_type) {
                return Err(unsupported(format!(
                    "ORDER BY a value of type {}",
                    array.name()
                )));
            }
            let jsonb = ty.is_some_and(|t| t.ty == PgType::Jsonb && t.array_type().is_none());
            if ty.is_some_and(Ty::is_interval) || jsonb {
                if projection.is_none() {
                    // A compound select sorts only by its result columns, not expressions.
                    return Err(unsupported(format!(
                        "ORDER BY {} of UNION, INTERSECT or EXCEPT",
                        if jsonb { "a jsonb" } else { "an interval" }
                    )));
                }
                // Sorted by its span (an interval) or jsonb's order; a position becomes what
                // the select list says there.
                let item = named.and_then(|column| {
                    let position = out.iter().position(|c| std::ptr::eq(c, column));
                    projection
                        .filter(|items| !items.iter().any(is_wildcard))
                        .zip(position)
                        .and_then(|(items, i)| items.get(i))
                });
                let term = match (&e.expr, named, item) {
                    // Inside the key function SQLite would take a name for a column of FROM
                    // (json_each's own `value`) before the result column: jsonb's key reads
                    // the select item's expression.
                    (
                        Expr::Value(_) | Expr::Identifier(_),
                        Some(_),
                        Some(
                            SelectItem::ExprWithAlias { expr, .. } | SelectItem::UnnamedExpr(expr),
                        ),
                    ) if jsonb => expr.clone(),
                    (Expr::Value(_), Some(column), item) => match item {
                        Some(SelectItem::ExprWithAlias { alias, .. }) => {
                            Expr::Identifier(alias.clone())
                        }
                        Some(SelectItem::UnnamedExpr(expr)) => expr.clone(),
                        _ if out.iter().filter(|c| c.name == column.name).count() == 1 => {
                            Expr::Identifier(sqlparser::ast::Ident::with_quote('"', &column.name))
                        }
                        _ => {
                            return Err(unsupported(format!(
                                "ORDER BY the position of {} column whose name is not its \
                                     own",
                                if jsonb { "a jsonb" } else { "an interval" }
                            ))
                            .with_hint("Give the column an alias and ORDER BY it."));
                        }
                    },
                    (other, _, _) => other.clone(),
                };
                // jsonb orders by type, then length, then members, not by its text.
                let key = if jsonb {
                    "__pg_jsonb_key"
                } else {
                    "__pg_interval_key"
                };
                e.expr = function_call(key, vec![term]);
            }
        }
        Ok(())
    }

    fn select_inner(
        &mut self,
        select: &mut Select,
        expected: Option<&[Ty]>,
    ) -> Result<Vec<OutColumn>, DbError> {
        for from in &mut select.from {
            self.add_from(from)?;
        }
        if let Some(selection) = &mut select.selection {
            self.expr(selection, Some(Ty::of(PgType::Bool)))?;
        }
        let mut out = Vec::new();
        self.srf_rows = Some(Vec::new());
        for (i, item) in select.projection.iter_mut().enumerate() {
            let want = expected.and_then(|t| t.get(i).copied());
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let name = column_name(e);
                    out.push(self.output_column(e, name, want)?);
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let name = ident_name(alias);
                    out.push(self.output_column(expr, name, want)?);
                }
                SelectItem::Wildcard(_) => {
                    if let Some(scope) = self.scopes.last() {
                        for rel in scope {
                            out.extend(rel.cols.iter().cloned());
                        }
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    let qualifier = match kind {
                        sqlparser::ast::SelectItemQualifiedWildcardKind::ObjectName(name) => {
                            object_parts(name).pop().unwrap_or_default()
                        }
                        _ => String::new(),
                    };
                    if let Some(rel) = self
                        .scopes
                        .last()
                        .and_then(|s| s.iter().find(|r| r.name == qualifier))
                    {
                        out.extend(rel.cols.iter().cloned());
                    }
                }
                SelectItem::ExprWithAliases { .. } => {
                    return Err(unsupported("multiple aliases for one select item"));
                }
            }
        }
        let srf_rows = self.srf_rows.take().unwrap_or_default();
        let joined = !srf_rows.is_empty();
        self.join_srf_rows(select, srf_rows)?;
        if let Some(scope) = self.scopes.last() {
            spell_out_wildcards(&mut select.projection, scope);
            if joined || scope.iter().any(|r| r.srf) {
                // Beside json_each's own columns (`id`, `key`, `value`, ...) every name must
                // be qualified, and a bare ORDER BY name must find its select item's alias.
                super::arrays::qualify(select, scope);
                name_items(&mut select.projection, &out);
            }
        }
        distinct_intervals_as_groups(select, &out);
        if let sqlparser::ast::GroupByExpr::Expressions(exprs, _) = &mut select.group_by {
            for e in exprs {
                // Equal spans are one group (`1 day` and `24:00:00`), as Postgres groups them.
                if self
                    .expr(e, None)
                    .ok()
                    .flatten()
                    .is_some_and(Ty::is_interval)
                {
                    interval_key(e);
                }
            }
        }
        if let Some(having) = &mut select.having {
            self.expr(having, Some(Ty::of(PgType::Bool)))?;
        }
        Ok(out)
    }

    fn output_column(
        &mut self,
        expr: &mut Expr,
        name: String,
        want: Option<Ty>,
    ) -> Result<OutColumn, DbError> {
        if let Some((column, col)) = self.srf_column(expr) {
            *expr = column;
            return Ok(OutColumn { name, ..col });
        }
        if let Some(col) = self.column_ref(expr) {
            return Ok(OutColumn { name, ..col });
        }
        let ty = self.expr(expr, want)?;
        Ok(OutColumn::expr(name, ty.unwrap_or(Ty::of(PgType::Text))))
    }

    /// Infers an expression whose columns may be output aliases (GROUP BY, ORDER BY).
    pub fn add_from(&mut self, from: &mut TableWithJoins) -> Result<(), DbError> {
        self.relation(&mut from.relation)?;
        for join in &mut from.joins {
            self.relation(&mut join.relation)?;
            use sqlparser::ast::{JoinConstraint as C, JoinOperator as J};
            let constraint = match &mut join.join_operator {
                J::Join(c)
                | J::Inner(c)
                | J::Left(c)
                | J::LeftOuter(c)
                | J::Right(c)
                | J::RightOuter(c)
                | J::FullOuter(c)
                | J::CrossJoin(c) => c,
                other => return Err(unsupported(format!("join {other:?}"))),
            };
            if let C::On(e) = constraint {
                self.expr(e, Some(Ty::of(PgType::Bool)))?;
            }
        }
        Ok(())
    }

    pub(super) fn push_rel(&mut self, rel: Rel) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.push(rel);
        } else {
            self.scopes.push(vec![rel]);
        }
    }

    fn relation(&mut self, factor: &mut TableFactor) -> Result<(), DbError> {
        if self.srf_relation(factor)? {
            return Ok(());
        }
        match factor {
            TableFactor::Table {
                name,
                alias,
                args: Some(args),
                ..
            } if object_parts(name)
                .last()
                .is_some_and(|n| n == "generate_series") =>
            {
                *factor = generate_series(&args.args, alias.as_ref())?;
                return self.relation(factor);
            }
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if args.is_some() {
                    let fname = name.to_string();
                    return Err(unsupported(format!(
                        "set-returning function {fname} in FROM"
                    )));
                }
                let parts = object_parts(name);
                let alias_name = alias.as_ref().map(|a| ident_name(&a.name));
                let mut rel = if parts.len() == 1
                    && let Some(cte) = self.cte(&parts[0])
                {
                    cte.clone()
                } else {
                    let table = self.table(name)?;
                    Rel::of_table(table, None)
                };
                if let Some(alias) = alias
                    && !alias.columns.is_empty()
                {
                    // SQLite has no column aliases on a table: select them under new names.
                    *factor = renamed_table(name, alias, &rel.cols)?;
                    return self.relation(factor);
                }
                if let Some(alias) = alias {
                    rel.name = alias_name.unwrap_or_default();
                    rel.cols = rename(rel.cols, &alias.columns);
                }
                self.push_rel(rel);
            }
            TableFactor::Derived { lateral: true, .. } => {
                return Err(unsupported("LATERAL subqueries")
                    .with_hint("Use a scalar subquery in the select list, or a join."));
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                // A subquery in FROM sees the enclosing query's outer scopes but not its
                // siblings: infer it in a fresh scope.
                self.scopes.push(Vec::new());
                let cols = self.query(subquery, None);
                self.scopes.pop();
                let mut cols = cols?;
                let name = alias
                    .as_ref()
                    .map(|a| ident_name(&a.name))
                    .unwrap_or_default();
                if let Some(alias) = alias
                    && !alias.columns.is_empty()
                {
                    // `(VALUES ...) AS v(a, b)`: SQLite has no column alias list.
                    name_columns(subquery, alias, &cols)?;
                    cols = rename(cols, &alias.columns);
                    alias.columns.clear();
                }
                self.push_rel(Rel {
                    name,
                    cols,
                    hidden: false,
                    srf: false,
                });
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_some() {
                    return Err(unsupported("alias on a parenthesized join"));
                }
                self.add_from(table_with_joins)?;
            }
            other => return Err(unsupported(format!("FROM item {other}"))),
        }
        Ok(())
    }

    /// The table column an expression names directly, with its origin.
    pub fn column_ref(&self, expr: &Expr) -> Option<OutColumn> {
        let (qualifier, name) = match expr {
            Expr::Identifier(ident) => (None, ident_name(ident)),
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let n = parts.len();
                (Some(ident_name(&parts[n - 2])), ident_name(&parts[n - 1]))
            }
            Expr::Nested(inner) => return self.column_ref(inner),
            _ => return None,
        };
        for scope in self.scopes.iter().rev() {
            for rel in scope {
                if let Some(q) = &qualifier
                    && &rel.name != q
                {
                    continue;
                }
                if let Some(col) = rel.cols.iter().find(|c| c.name.eq_ignore_ascii_case(&name)) {
                    return Some(col.clone());
                }
            }
        }
        None
    }

    /// Replaces a string literal by the storage value of its coercion to `ty`.
    pub(super) fn fold_literal(&self, expr: &mut Expr, ty: Ty) -> Result<(), DbError> {
        if let Some(text) = string_literal(expr) {
            if ty.is_interval() {
                let interval = crate::functions::time::parse_interval(text)?;
                *expr = value_expr(SqlValue::Text(interval.format()));
                return Ok(());
            }
            if let Some(array) = ty.array_type() {
                let value = crate::functions::array::decode_param(
                    array,
                    mycelium_protocol::Format::Text,
                    text.as_bytes(),
                )?;
                *expr = value_expr(value);
                return Ok(());
            }
            if matches!(ty.ty, PgType::Text | PgType::Unknown) {
                return Ok(());
            }
            let value = types::parse_text(ty.ty, ty.typmod, text)?;
            *expr = value_expr(value);
        }
        Ok(())
    }

    /// Infers a value assigned to a column (INSERT, UPDATE SET) and converts it the way
    /// Postgres's assignment cast would when its type differs (a timestamptz stored in a
    /// timestamp column, a float in an integer column, a string longer than varchar(n)).
    pub fn assign(&mut self, expr: &mut Expr, column: Ty, name: &str) -> Result<(), DbError> {
        let source = self.expr(expr, Some(column))?;
        match source {
            Some(source) => {
                refuse_number_assignment(source, column, name)?;
                assignment_cast(expr, source, column)
            }
            None => Ok(()),
        }
    }

    fn set_param(&mut self, index: usize, ty: Ty) {
        if index == 0 {
            return;
        }
        if self.params.len() < index {
            self.params.resize(index, None);
        }
        if self.params[index - 1].is_none() {
            // A parameter takes its type without the typmod (a `varchar(3)` column's
            // parameter is `varchar`), except what marks an array or an interval.
            let ty = if ty.is_carried_as_text() {
                ty
            } else {
                Ty::of(ty.ty)
            };
            self.params[index - 1] = Some(ty);
        }
    }

    /// Infers `expr`, typing untyped literals and parameters as `want`.
    pub fn expr(&mut self, expr: &mut Expr, want: Option<Ty>) -> Typed {
        match self.expr_inner(expr, want) {
            Err(e) if self.lenient && e.code == crate::errors::FEATURE_NOT_SUPPORTED => {
                *expr = Expr::Value(ValueWithSpan::from(Value::Null));
                Ok(None)
            }
            other => other,
        }
    }

    fn expr_inner(&mut self, expr: &mut Expr, want: Option<Ty>) -> Typed {
        if super::arrays::is_array_subquery(expr) {
            return self.array_subquery(expr);
        }
        if let Some(index) = placeholder_index(expr) {
            if index == 0 {
                return Err(DbError::new("42P02", "there is no parameter $0"));
            }
            if self.params.len() < index {
                self.params.resize(index, None);
            }
            if let Some(ty) = want {
                self.set_param(index, ty);
            }
            return Ok(self.params[index - 1]);
        }
        if string_literal(expr).is_some() {
            return match want {
                Some(ty) => {
                    self.fold_literal(expr, ty)?;
                    Ok(Some(ty))
                }
                None => Ok(None),
            };
        }
        match expr {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                if let Some((column, col)) = self.srf_column(expr) {
                    *expr = column;
                    return Ok(Some(col.ty));
                }
                Ok(self.column_ref(expr).map(|c| c.ty))
            }
            Expr::Value(v) => Ok(match &v.value {
                Value::Number(n, _) => Some(match number_type(n) {
                    // A decimal literal prints with its own scale (`1.50`).
                    PgType::Numeric if !n.contains(['e', 'E']) => Ty::numeric_scale(
                        n.split_once('.').map(|(_, f)| f.len() as i32).unwrap_or(0),
                    ),
                    ty => Ty::of(ty),
                }),
                Value::Boolean(_) => Some(Ty::of(PgType::Bool)),
                Value::Null => want,
                _ => None,
            }),
            Expr::Cast {
                expr: inner,
                data_type: dt,
                ..
            } => {
                let target = match cast_target(dt)? {
                    CastTarget::Type(t) if t.array_type().is_some() => {
                        let arg = std::mem::replace(
                            inner.as_mut(),
                            Expr::Value(ValueWithSpan::from(Value::Null)),
                        );
                        if let Some(to) = t.array_type() {
                            *expr = self.array_cast(arg, to)?;
                        }
                        return Ok(Some(t));
                    }
                    CastTarget::Type(t) => t,
                    CastTarget::RegClass => {
                        // A name literal becomes the OID; an OID becomes the name, as
                        // regclass prints.
                        let literal = string_literal(inner).is_some();
                        self.expr(inner, None)?;
                        let arg = std::mem::replace(
                            inner.as_mut(),
                            Expr::Value(ValueWithSpan::from(Value::Null)),
                        );
                        if literal {
                            *expr = function_call("__pg_regclass", vec![arg]);
                            return Ok(Some(Ty::of(PgType::Oid)));
                        }
                        *expr = function_call("__pg_regclass_name", vec![arg]);
                        return Ok(Some(Ty::of(PgType::Text)));
                    }
                    CastTarget::RegType => {
                        // As regclass: a name becomes the OID, an OID prints as the name.
                        let literal = string_literal(inner).is_some();
                        self.expr(inner, None)?;
                        let arg = std::mem::replace(
                            inner.as_mut(),
                            Expr::Value(ValueWithSpan::from(Value::Null)),
                        );
                        if literal {
                            *expr = function_call("__pg_regtype", vec![arg]);
                            return Ok(Some(Ty::of(PgType::Oid)));
                        }
                        *expr = function_call("__pg_regtype_name", vec![arg]);
                        return Ok(Some(Ty::of(PgType::Text)));
                    }
                    CastTarget::Identity(t) => {
                        let ty = self.expr(inner, None)?;
                        let arg = std::mem::replace(
                            inner.as_mut(),
                            Expr::Value(ValueWithSpan::from(Value::Null)),
                        );
                        *expr = Expr::Nested(Box::new(arg));
                        return Ok(Some(ty.unwrap_or(t)));
                    }
                };
                if target.is_interval()
                    && string_literal(inner).is_none()
                    && placeholder_index(inner).is_none()
                {
                    self.expr(inner, None)?;
                    let arg = std::mem::replace(
                        inner.as_mut(),
                        Expr::Value(ValueWithSpan::from(Value::Null)),
                    );
                    *expr = function_call("__pg_interval", vec![arg]);
                    return Ok(Some(target));
                }
                // An explicit cast to varchar(n) or char(n) cuts a longer string (a value
                // assigned to such a column is refused instead).
                let length = matches!(target.ty, PgType::Varchar | PgType::Bpchar)
                    .then(|| usize::try_from(target.typmod - 4).ok())
                    .flatten();
                if let (Some(n), Some(text)) = (length, string_literal(inner)) {
                    let cut: String = text.chars().take(n).collect();
                    **inner = value_expr(SqlValue::Text(cut));
                }
                if string_literal(inner).is_some() || placeholder_index(inner).is_some() {
                    self.expr(inner, Some(target))?;
                    let arg = std::mem::replace(
                        inner.as_mut(),
                        Expr::Value(ValueWithSpan::from(Value::Null)),
                    );
                    *expr = arg;
                    return Ok(Some(target));
                }
                let source = self.expr(inner, None)?;
                let same = source.is_some_and(|s| s.ty == target.ty && target.typmod < 0);
                let mut arg = std::mem::replace(
                    inner.as_mut(),
                    Expr::Value(ValueWithSpan::from(Value::Null)),
                );
                let mut source = source;
                if let Some(n) = length {
                    let text = match source {
                        Some(s)
                            if matches!(s.ty, PgType::Text | PgType::Varchar | PgType::Bpchar) =>
                        {
                            arg
                        }
                        _ => function_call(
                            "__pg_cast",
                            vec![
                                arg,
                                value_expr(SqlValue::Int(i64::from(
                                    source.map_or(0, |s| s.ty.oid()),
                                ))),
                                value_expr(SqlValue::Int(i64::from(PgType::Text.oid()))),
                                value_expr(SqlValue::Int(-1)),
                            ],
                        ),
                    };
                    arg = function_call(
                        "substr",
                        vec![
                            text,
                            value_expr(SqlValue::Int(1)),
                            value_expr(SqlValue::Int(n as i64)),
                        ],
                    );
                    source = Some(Ty::of(PgType::Text));
                }
                // An array of timestamptz as text shows its elements in the session's zone;
                // storage holds them in UTC.
                if let Some(array) = source
                    .and_then(Ty::array_type)
                    .filter(|a| a.elem == PgType::Timestamptz)
                    && target.array_type().is_none()
                {
                    arg = function_call(
                        "__pg_array_out",
                        vec![arg, value_expr(SqlValue::Int(i64::from(array.oid)))],
                    );
                    source = Some(Ty::of(PgType::Text));
                }
                *expr = if same {
                    Expr::Nested(Box::new(arg))
                } else {
                    let src = source.map(|s| s.ty.oid()).unwrap_or(0);
                    let mut args = vec![
                        arg,
                        value_expr(SqlValue::Int(i64::from(src))),
                        value_expr(SqlValue::Int(i64::from(target.ty.oid()))),
                        value_expr(SqlValue::Int(i64::from(target.typmod))),
                    ];
                    // A numeric's text shows its scale (`2.50`), which storage does not keep.
                    if let Some(source) =
                        source.filter(|s| s.ty == PgType::Numeric && s.typmod >= 0)
                    {
                        args.push(value_expr(SqlValue::Int(i64::from(source.typmod))));
                    }
                    function_call("__pg_cast", args)
                };
                // `numeric(10,2)::numeric` keeps its scale.
                if same && let Some(source) = source.filter(|s| s.ty == PgType::Numeric) {
                    return Ok(Some(source));
                }
                Ok(Some(target))
            }
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => {
                // timestamptz AT TIME ZONE z: the local time in z (a timestamp); timestamp AT
                // TIME ZONE z: that local time in z, as a timestamptz.
                let source = self.expr(timestamp, None)?;
                let to_local = match source.map(|t| t.ty) {
                    Some(PgType::Timestamp) => false,
                    Some(PgType::Timestamptz | PgType::Date) | None => true,
                    Some(other) => {
                        return Err(DbError::new(
                            "42883",
                            format!(
                                "function timezone(unknown, {}) does not exist",
                                other.name()
                            ),
                        ));
                    }
                };
                if to_local && source.is_none_or(|t| t.ty != PgType::Timestamptz) {
                    self.expr(timestamp, Some(Ty::of(PgType::Timestamptz)))?;
                }
                let zone = self.expr(time_zone, Some(Ty::of(PgType::Text)))?;
                let value = std::mem::replace(
                    timestamp.as_mut(),
                    Expr::Value(ValueWithSpan::from(Value::Null)),
                );
                let zone_expr = std::mem::replace(
                    time_zone.as_mut(),
                    Expr::Value(ValueWithSpan::from(Value::Null)),
                );
                *expr = function_call(
                    "__pg_at_time_zone",
                    vec![
                        value,
                        zone_expr,
                        value_expr(SqlValue::Int(i64::from(zone.is_some_and(Ty::is_interval)))),
                        value_expr(SqlValue::Int(i64::from(to_local))),
                    ],
                );
                Ok(Some(Ty::of(if to_local {
                    PgType::Timestamp
                } else {
                    PgType::Timestamptz
                })))
            }
            Expr::Interval(interval) => {
                let text = match string_literal(&interval.value) {
                    Some(text) => match &interval.leading_field {
                        Some(field) => format!("{text} {field}"),
                        None => text.to_owned(),
                    },
                    None => return Err(unsupported(format!("interval {}", interval.value))),
                };
                let parsed = crate::functions::time::parse_interval(&text)?;
                *expr = value_expr(SqlValue::Text(parsed.format()));
                Ok(Some(Ty::interval()))
            }
            Expr::TypedString(ts) => {
                let target = data_type(&ts.data_type)?;
                let text = match &ts.value.value {
                    Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => s.clone(),
                    other => return Err(unsupported(format!("typed literal {other}"))),
                };
                *expr = value_expr(types::parse_text(target.ty, target.typmod, &text)?);
                Ok(Some(target))
            }
            Expr::Nested(inner) => self.expr(inner, want),
            Expr::Collate { expr: inner, .. } => self.expr(inner, want),
            Expr::UnaryOp { op, expr: inner } => match op {
                UnaryOperator::Not => {
                    self.expr(inner, Some(Ty::of(PgType::Bool)))?;
                    Ok(Some(Ty::of(PgType::Bool)))
                }
                UnaryOperator::Minus if is_power(inner) => {
                    // Postgres binds unary minus tighter than `^` (`-2 ^ 2` is 4); the parser
                    // read it as `-(2 ^ 2)`. Written parentheses would be a Nested node.
                    let power = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
                    *expr = negate_base(power);
                    self.expr(expr, want)
                }
                UnaryOperator::Minus => {
                    let t = self.expr(inner, want)?;
                    if t.is_some_and(Ty::is_interval) {
                        let value = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
                        *expr = function_call(
                            "__pg_interval_mul",
                            vec![value, value_expr(SqlValue::Int(-1))],
                        );
                    }
                    Ok(t)
                }
                UnaryOperator::PGSquareRoot | UnaryOperator::PGCubeRoot | UnaryOperator::PGAbs => {
                    // SQLite has none of these operators: `|/ x` is sqrt(x), `||/ x` cbrt(x),
                    // `@ x` abs(x), with the functions' result types.
                    let name = match op {
                        UnaryOperator::PGSquareRoot => "sqrt",
                        UnaryOperator::PGCubeRoot => "cbrt",
                        _ => "abs",
                    };
                    let value = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
                    *expr = function_call(name, vec![value]);
                    self.expr(expr, want)
                }
                UnaryOperator::Hash
                | UnaryOperator::AtDashAt
                | UnaryOperator::DoubleAt
                | UnaryOperator::QuestionDash
                | UnaryOperator::QuestionPipe => Err(unsupported(format!("operator {op}"))),
                _ => self.expr(inner, want),
            },
            Expr::BinaryOp { .. } => self.binary_expr(expr, want),
            Expr::IsNull(e) | Expr::IsNotNull(e) => {
                self.expr(e, None)?;
                Ok(Some(Ty::of(PgType::Bool)))
            }
            Expr::IsTrue(e)
            | Expr::IsFalse(e)
            | Expr::IsNotTrue(e)
            | Expr::IsNotFalse(e)
            | Expr::IsUnknown(e)
            | Expr::IsNotUnknown(e) => {
                self.expr(e, Some(Ty::of(PgType::Bool)))?;
                Ok(Some(Ty::of(PgType::Bool)))
            }
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                self.pair(a, b)?;
                Ok(Some(Ty::of(PgType::Bool)))
            }
            Expr::Like {
                any: true,
                negated,
                expr: e,
                pattern,
                escape_char,
            } => {
                *expr = super::expr::like_any(e, pattern, escape_char, *negated, false)?;
                self.expr(expr, want)
            }
            Expr::ILike {
                any: true,
                negated,
                expr: e,
                pattern,
                escape_char,
            } => {
                *expr = super::expr::like_any(e, pattern, escape_char, *negated, true)?;
                self.expr(expr, want)
            }
            Expr::Like {
                expr: e, pattern, ..
            }
            | Expr::ILike {
                expr: e, pattern, ..
            } => {
                self.expr(e, Some(Ty::of(PgType::Text)))?;
                self.expr(pattern, Some(Ty::of(PgType::Text)))?;
                Ok(Some(Ty::of(PgType::Bool)))
            }
            Expr::SimilarTo {
                negated,
                expr: e,
                pattern,
                escape_char,
            } => {
                self.expr(e, Some(Ty::of(PgType::Text)))?;
                self.expr(pattern, Some(Ty::of(PgType::Text)))?;
                let escape = match escape_char.as_mut() {
                    Some(escape) => {
                        self.expr(escape, Some(Ty::of(PgType::Text)))?;
                        std::mem::replace(escape.as_mut(), Expr::value(Value::Null))
                    }
                    // The standard's default escape character.
                    None => value_expr(SqlValue::Text("\\".to_owned())),
                };
                let value = std::mem::replace(e.as_mut(), Expr::value(Value::Null));
                let pattern = std::mem::replace(pattern.as_mut(), Expr::value(Value::Null));
                let call = function_call("__pg_similar", vec![value, pattern, escape]);
                *expr = if *negated {
                    Expr::UnaryOp {
                        op: UnaryOperator::Not,
                        expr: Box::new(call),
                    }
                } else {
                    call
                };
                Ok(Some(Ty::of(PgType::Bool)))
            }
            Expr::Overlay {
                expr: e,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                self.expr(e, Some(Ty::of(PgType::Text)))?;
                self.expr(overlay_what, Some(Ty::of(PgType::Text)))?;
                self.expr(overlay_from, Some(Ty::of(PgType::Int4)))?;
                let count = match overlay_for.as_mut() {
                    Some(count) => {
                        self.expr(count, Some(Ty::of(PgType::Int4)))?;
                        std::mem::replace(count.as_mut(), Expr::value(Value::Null))
                    }
                    None => Expr::value(Value::Null),
                };
                let args = [e, overlay_what, overlay_from]
                    .into_iter()
                    .map(|part| std::mem::replace(part.as_mut(), Expr::value(Value::Null)))
                    .chain([count])
                    .collect();
                *expr = function_call("__pg_overlay", args);
                Ok(Some(Ty::of(PgType::Text)))
            }
            Expr::Between {
                expr: e, low, high, ..
            } => {
                let t = self.expr(e, None)?;
                let t = comparison_type(t);
                let lt = self.expr(low, t)?;
                let ht = self.expr(high, t.or(lt))?;
                if t.is_none()
                    && let Some(ty) = lt.or(ht)
                {
                    self.expr(e, Some(ty))?;
                }
                let wider = super::operators::widest_temporal(&[t, lt, ht]);
                super::operators::widen_temporal(e, t, wider);
                super::operators::widen_temporal(low, lt, wider);
                super::operators::widen_temporal(high, ht, wider);
                if [t, lt, ht].into_iter().flatten().any(Ty::is_interval) {
                    for side in [e, low, high] {
                        interval_key(side);
                    }
                }
                Ok(Some(Ty::of(PgType::Bool)))
            }
            Expr::In {
                expr: e, target, ..
            } => {
                let t = comparison_type(self.expr(e, None)?);
                match target {
                    sqlparser::ast::InTarget::List(list) => {
                        let mut types = vec![t];
                        for item in list.iter_mut() {
                            types.push(self.expr(item, t)?);
                        }
                        let wider = super::operators::widest_temporal(&types);
                        super::operators::widen_temporal(e, t, wider);
                        for (item, ty) in list.iter_mut().zip(&types[1..]) {
                            super::operators::widen_temporal(item, *ty, wider);
                        }
                        if types.iter().flatten().any(|t| t.is_interval()) {
                            interval_key(e);
                            list.iter_mut().for_each(interval_key);
                        }
                    }
                    sqlparser::ast::InTarget::Subquery(q) => {
                        let cols = self.query(q, None)?;
                        if t.is_none()
                            && let Some(c) = cols.first()
                        {
                            self.expr(e, Some(c.ty))?;
                        }
                    }
                    other => return Err(unsupported(format!("IN {other:?}"))),
                }
                Ok(Some(Ty::of(PgType::Bool)))
            }
            Expr::AnyOp { right, .. } | Expr::AllOp { right, .. }
                if !super::arrays::is_list_or_subquery(right) =>
            {
                self.any_of_array(expr)
            }
            Expr::Array(_) => self.array_literal(expr, want),
            Expr::AnyOp { left, right, .. } | Expr::AllOp { left, right, .. } => {
                let t = comparison_type(self.expr(left, None)?);
                match right.as_mut() {
                    Expr::Array(array) => {
                        for item in &mut array.elem {
                            self.expr(item, t)?;
                        }
                    }
                    Expr::Nested(inner) if matches!(inner.as_ref(), Expr::Array(_)) => {
                        if let Expr::Array(array) = inner.as_mut() {
                            for item in &mut array.elem {
                                self.expr(item, t)?;
                            }
                        }
                    }
                    Expr::Subquery(q) => {
                        self.query(q, None)?;
                    }
                    other => {
                        return Err(unsupported(format!(
                            "ANY/ALL over {other} (arrays are not supported)"
                        )));
                    }
                }
                Ok(Some(Ty::of(PgType::Bool)))
            }
            Expr::Exists { subquery, .. } => {
                self.query(subquery, None)?;
                Ok(Some(Ty::of(PgType::Bool)))
            }
            Expr::Subquery(q) => {
                let cols = self.query(q, None)?;
                guard_single_row(q);
                Ok(cols.first().map(|c| c.ty))
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let op_ty = match operand {
                    Some(op) => self.expr(op, None)?,
                    None => None,
                };
                let mut result = None;
                let mut branch_types = Vec::new();
                for when in conditions.iter_mut() {
                    let want_cond = if operand.is_some() {
                        op_ty
                    } else {
                        Some(Ty::of(PgType::Bool))
                    };
                    self.expr(&mut when.condition, want_cond)?;
                    let t = self.expr(&mut when.result, result.or(want))?;
                    branch_types.push(t);
                    result = result.or(t);
                }
                if let Some(e) = else_result {
                    let t = self.expr(e, result.or(want))?;
                    branch_types.push(t);
                    result = result.or(t);
                }
                // Dates and timestamps among the results become the widest type.
                if let Some(wider) = super::operators::widest_temporal(&branch_types) {
                    let results = conditions
                        .iter_mut()
                        .map(|when| &mut when.result)
                        .chain(else_result.iter_mut().map(|e| e.as_mut()));
                    for (e, t) in results.zip(&branch_types) {
                        super::operators::widen_temporal(e, *t, Some(wider));
                    }
                    result = Some(wider);
                }
                Ok(result)
            }
            Expr::Function(f) => self.function(f, want),
            Expr::Substring {
                expr: e,
                substring_from,
                substring_for,
                ..
            } => {
                self.expr(e, Some(Ty::of(PgType::Text)))?;
                // `substring(x from 'pattern')`: a quoted literal is text to Postgres, so a
                // pattern (even '3'), not a position.
                let pattern = substring_for.is_none()
                    && substring_from.as_deref().and_then(string_literal).is_some();
                if pattern {
                    let text = std::mem::replace(e.as_mut(), Expr::Value(Value::Null.into()));
                    let from = substring_from
                        .take()
                        .map(|f| *f)
                        .unwrap_or(Expr::Value(Value::Null.into()));
                    *expr = function_call("__pg_substring_regex", vec![text, from]);
                    return Ok(Some(Ty::of(PgType::Text)));
                }
                for part in [substring_from, substring_for].into_iter().flatten() {
                    self.expr(part, Some(Ty::of(PgType::Int4)))?;
                }
                Ok(Some(Ty::of(PgType::Text)))
            }
            Expr::Position { expr: e, r#in } => {
                self.expr(e, Some(Ty::of(PgType::Text)))?;
                self.expr(r#in, Some(Ty::of(PgType::Text)))?;
                Ok(Some(Ty::of(PgType::Int4)))
            }
            Expr::Trim {
                expr: e, trim_what, ..
            } => {
                self.expr(e, Some(Ty::of(PgType::Text)))?;
                if let Some(w) = trim_what {
                    self.expr(w, Some(Ty::of(PgType::Text)))?;
                }
                Ok(Some(Ty::of(PgType::Text)))
            }
            Expr::Extract { expr: e, field, .. } => {
                let source = self.expr(e, Some(Ty::of(PgType::Timestamptz)))?;
                // Postgres's numeric shows microseconds in seconds and epochs of timestamps
                // (`1704103200.000000`), milliseconds to three places, whole numbers otherwise.
                let field = field.to_string().to_ascii_lowercase();
                let from_date = source.is_some_and(|t| t.ty == PgType::Date);
                let scale = match crate::functions::dates::canonical_unit(&field) {
                    Some("epoch" | "second") if !from_date => 6,
                    Some("milliseconds") if !from_date => 3,
                    _ => 0,
                };
                let value = std::mem::replace(e.as_mut(), Expr::value(Value::Null));
                let mut args = vec![value_expr(SqlValue::Text(field)), value];
                let name = match source {
                    Some(t) if t.is_interval() => "__pg_extract_interval",
                    Some(t) if t.ty == PgType::Time => "__pg_extract_time",
                    Some(t) => {
                        args.push(value_expr(SqlValue::Int(i64::from(t.ty.oid()))));
                        "__pg_extract"
                    }
                    None => "__pg_extract",
                };
                *expr = function_call(name, args);
                Ok(Some(Ty::numeric_scale(scale)))
            }
            Expr::Ceil { expr: e, .. } | Expr::Floor { expr: e, .. } => {
                let t = self.expr(e, want)?;
                // A numeric's floor has no decimals: floor(-1.1) is -2, not -2.0.
                Ok(t.map(|t| {
                    if is_integer(t.ty) || t.ty == PgType::Numeric {
                        Ty::of(PgType::Numeric)
                    } else {
                        t
                    }
                }))
            }
            Expr::CompoundFieldAccess { .. } => self.subscript(expr),
            Expr::Tuple(items) => {
                for item in items {
                    self.expr(item, None)?;
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// `j['a'][0]` on json/jsonb (SQLAlchemy 2 writes it for Postgres 14+): the path
    /// `j #> '{a,0}'`; `a[i]` on arrays (`arrays`).
    fn subscript(&mut self, expr: &mut Expr) -> Typed {
        use sqlparser::ast::{AccessExpr, Subscript};
        let Expr::CompoundFieldAccess { root, access_chain } = expr else {
            return Ok(None);
        };
        // `t.col[...]` may come as `t` followed by `.col`.
        let dots = access_chain
            .iter()
            .take_while(|a| matches!(a, AccessExpr::Dot(Expr::Identifier(_))))
            .count();
        if dots > 0 {
            let mut parts = match root.as_ref() {
                Expr::Identifier(ident) => vec![ident.clone()],
                Expr::CompoundIdentifier(parts) => parts.clone(),
                _ => return Err(unsupported("array subscripts")),
            };
            for access in access_chain.drain(..dots) {
                if let AccessExpr::Dot(Expr::Identifier(ident)) = access {
                    parts.push(ident);
                }
            }
            **root = Expr::CompoundIdentifier(parts);
        }
        let ty = self.expr(root, None)?;
        if let Some(array) = ty.and_then(Ty::array_type) {
            let index = match access_chain.as_mut_slice() {
                [AccessExpr::Subscript(Subscript::Index { index })] => {
                    std::mem::replace(index, Expr::Value(ValueWithSpan::from(Value::Null)))
                }
                _ => return Err(unsupported("array slices and several subscripts")),
            };
            let root =
                std::mem::replace(root.as_mut(), Expr::Value(ValueWithSpan::from(Value::Null)));
            *expr = self.array_subscript(root, index, array)?;
            return Ok(Some(Ty::of(array.elem)));
        }
        if !ty.is_some_and(|t| matches!(t.ty, PgType::Json | PgType::Jsonb)) {
            return Err(unsupported("array subscripts"));
        }
        let mut keys = Vec::with_capacity(access_chain.len());
        for access in access_chain.iter_mut() {
            let AccessExpr::Subscript(Subscript::Index { index }) = access else {
                return Err(unsupported("this json subscript"));
            };
            self.expr(index, Some(Ty::of(PgType::Text)))?;
            keys.push(std::mem::replace(
                index,
                Expr::Value(ValueWithSpan::from(Value::Null)),
            ));
        }
        let root = std::mem::replace(root.as_mut(), Expr::Value(ValueWithSpan::from(Value::Null)));
        *expr = function_call(
            "__pg_json_path",
            vec![
                root,
                function_call("__pg_text_array", keys),
                value_expr(SqlValue::Int(0)),
            ],
        );
        Ok(ty.map(|t| Ty::of(t.ty)))
    }

    pub(super) fn pair(
        &mut self,
        a: &mut Expr,
        b: &mut Expr,
    ) -> Result<(Option<Ty>, Option<Ty>), DbError> {
        let lt = comparison_type(self.expr(a, None)?);
        let rt = comparison_type(self.expr(b, lt)?);
        if lt.is_none()
            && let Some(t) = rt
        {
            self.expr(a, Some(t))?;
        }
        Ok((lt, rt))
    }
}

fn parse_query(sql: &str) -> Result<Box<Query>, DbError> {
    let mut statements =
        sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, sql)
            .map_err(|e| crate::errors::internal(format!("{sql}: {e}")))?;
    match statements.pop() {
        Some(sqlparser::ast::Statement::Query(q)) => Ok(q),
        _ => Err(crate::errors::internal(format!("not a query: {sql}"))),
    }
}

fn too_many_aliases(
    names: &[sqlparser::ast::TableAliasColumnDef],
    available: usize,
    alias: &str,
) -> Result<(), DbError> {
    if names.len() > available {
        return Err(DbError::new(
            "42P10",
            format!(
                "table \"{alias}\" has {available} columns available but {} columns specified",
                names.len()
            ),
        ));
    }
    Ok(())
}

/// `t AS x(a, b)` as `(SELECT c1 AS a, c2 AS b, c3 FROM t) AS x`.
fn renamed_table(
    name: &ObjectName,
    alias: &sqlparser::ast::TableAlias,
    cols: &[OutColumn],
) -> Result<TableFactor, DbError> {
    use crate::catalog::quote_ident;
    too_many_aliases(&alias.columns, cols.len(), &ident_name(&alias.name))?;
    let list: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| match alias.columns.get(i) {
            Some(new) => format!(
                "{} AS {}",
                quote_ident(&c.name),
                quote_ident(&ident_name(&new.name))
            ),
            None => quote_ident(&c.name),
        })
        .collect();
    let subquery = parse_query(&format!("SELECT {} FROM {name}", list.join(", ")))?;
    Ok(TableFactor::Derived {
        lateral: false,
        subquery,
        alias: Some(sqlparser::ast::TableAlias {
            explicit: true,
            name: alias.name.clone(),
            columns: vec![],
            at: None,
        }),
        sample: None,
    })
}

/// Names the first output columns of a subquery, as an alias list `AS v(a, b)` would.
fn name_columns(
    subquery: &mut Box<Query>,
    alias: &sqlparser::ast::TableAlias,
    cols: &[OutColumn],
) -> Result<(), DbError> {
    let names = &alias.columns;
    too_many_aliases(names, cols.len(), &ident_name(&alias.name))?;
    let new: Vec<String> = names.iter().map(|n| ident_name(&n.name)).collect();
    if alias_projection(&mut subquery.body, &new) {
        return Ok(());
    }
    // VALUES, or a select list with `*`: an empty first branch of a UNION ALL names the
    // columns of the compound.
    use crate::catalog::quote_ident;
    let list: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "NULL AS {}",
                quote_ident(new.get(i).map(String::as_str).unwrap_or(&c.name))
            )
        })
        .collect();
    let mut wrapper = parse_query(&format!(
        "SELECT {} WHERE 1 = 0 UNION ALL SELECT * FROM (SELECT 1) AS __named",
        list.join(", ")
    ))?;
    let SetExpr::SetOperation { right, .. } = wrapper.body.as_mut() else {
        return Err(crate::errors::internal("column naming wrapper"));
    };
    let SetExpr::Select(select) = right.as_mut() else {
        return Err(crate::errors::internal("column naming wrapper"));
    };
    let Some(TableFactor::Derived { subquery: slot, .. }) =
        select.from.first_mut().map(|f| &mut f.relation)
    else {
        return Err(crate::errors::internal("column naming wrapper"));
    };
    std::mem::swap(slot, subquery);
    *subquery = wrapper;
    Ok(())
}

/// Gives the first select items of a query body the names `new`; false when they cannot be
/// told apart (`*`, VALUES).
fn alias_projection(body: &mut SetExpr, new: &[String]) -> bool {
    match body {
        SetExpr::Select(select) => {
            if select.projection.len() < new.len()
                || select.projection.iter().any(|i| {
                    matches!(
                        i,
                        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                    )
                })
            {
                return false;
            }
            for (item, name) in select.projection.iter_mut().zip(new) {
                let alias = sqlparser::ast::Ident::with_quote('"', name.clone());
                let current = std::mem::replace(
                    item,
                    SelectItem::UnnamedExpr(Expr::Value(ValueWithSpan::from(Value::Null))),
                );
                *item = match current {
                    SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                        SelectItem::ExprWithAlias { expr, alias }
                    }
                    other => other,
                };
            }
            true
        }
        SetExpr::SetOperation { left, .. } => alias_projection(left, new),
        SetExpr::Query(q) => alias_projection(&mut q.body, new),
        _ => false,
    }
}

/// Gives the plain items of a select list their output names as aliases.
fn name_items(items: &mut [SelectItem], out: &[OutColumn]) {
    if items.len() != out.len() {
        return;
    }
    for (item, column) in items.iter_mut().zip(out) {
        if let SelectItem::UnnamedExpr(expr) = item {
            let expr = std::mem::replace(expr, Expr::Value(ValueWithSpan::from(Value::Null)));
            *item = SelectItem::ExprWithAlias {
                expr,
                alias: sqlparser::ast::Ident::with_quote('"', column.name.clone()),
            };
        }
    }
}

/// Qualifies the column names of ORDER BY terms, except a bare name of a result column.
fn qualify_order_by(order_by: &mut sqlparser::ast::OrderBy, scope: &[Rel], out: &[OutColumn]) {
    let sqlparser::ast::OrderByKind::Expressions(exprs) = &mut order_by.kind else {
        return;
    };
    for term in exprs {
        if matches!(&term.expr, Expr::Identifier(ident) if out.iter().any(|c| c.name == ident_name(ident)))
        {
            continue;
        }
        super::arrays::qualify_expr(&mut term.expr, scope);
    }
}

/// Replaces `*` and `t.*` by the visible columns when a relation has the hidden rowid.
pub(crate) fn spell_out_wildcards(items: &mut Vec<SelectItem>, scope: &[Rel]) {
    let needed = scope.iter().any(|r| r.hidden)
        && items.iter().any(|i| {
            matches!(
                i,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        });
    if !needed {
        return;
    }
    let column = |rel: &Rel, col: &OutColumn| {
        let ident = sqlparser::ast::Ident::with_quote('"', col.name.clone());
        if rel.srf
            && let Some(i) = rel.cols.iter().position(|c| std::ptr::eq(c, col))
        {
            return SelectItem::ExprWithAlias {
                expr: super::srf::column_expr(&rel.name, i),
                alias: ident,
            };
        }
        SelectItem::UnnamedExpr(if rel.name.is_empty() {
            Expr::Identifier(ident)
        } else {
            Expr::CompoundIdentifier(vec![
                sqlparser::ast::Ident::with_quote('"', rel.name.clone()),
                ident,
            ])
        })
    };
    let mut spelled = Vec::new();
    for item in items.drain(..) {
        match item {
            SelectItem::Wildcard(_) => {
                for rel in scope {
                    spelled.extend(rel.cols.iter().map(|c| column(rel, c)));
                }
            }
            SelectItem::QualifiedWildcard(
                sqlparser::ast::SelectItemQualifiedWildcardKind::ObjectName(name),
                options,
            ) => {
                let qualifier = object_parts(&name).pop().unwrap_or_default();
                match scope.iter().find(|r| r.name == qualifier) {
                    Some(rel) => spelled.extend(rel.cols.iter().map(|c| column(rel, c))),
                    None => spelled.push(SelectItem::QualifiedWildcard(
                        sqlparser::ast::SelectItemQualifiedWildcardKind::ObjectName(name),
                        options,
                    )),
                }
            }
            other => spelled.push(other),
        }
    }
    *items = spelled;
}

fn is_wildcard(item: &SelectItem) -> bool {
    matches!(
        item,
        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
    )
}

/// Converts an expression of type `source` that is stored in a column of type `column` as
/// Postgres's assignment cast would, when the types differ (a timestamptz stored in a
/// timestamp column, a float in an integer column, a string longer than varchar(n): 22001).
fn is_power(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::BinaryOp {
            op: sqlparser::ast::BinaryOperator::PGExp,
            ..
        }
    )
}

/// `a ^ b ^ c` with its leftmost operand negated: `((-a) ^ b) ^ c`.
fn negate_base(expr: Expr) -> Expr {
    use sqlparser::ast::BinaryOperator;
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::PGExp,
            right,
        } => Expr::BinaryOp {
            left: Box::new(negate_base(*left)),
            op: BinaryOperator::PGExp,
            right,
        },
        other => Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr: Box::new(other),
        },
    }
}

/// Makes a scalar subquery that could return several rows fail with 21000 on the second, as
/// Postgres does, where SQLite would take the first row and answer wrongly:
/// `(SELECT __pg_single_row(v) FROM (<subquery> with its column named v))`. SQLite lets the
/// derived table refer to the outer query, so correlated subqueries keep working.
fn guard_single_row(query: &mut Box<Query>) {
    use sqlparser::ast::{Ident, LimitClause};
    let one_row = match &query.limit_clause {
        Some(LimitClause::LimitOffset {
            limit: Some(limit), ..
        }) => literal_integer(limit).is_some_and(|n| n <= 1),
        _ => false,
    } || matches!(query.body.as_ref(), SetExpr::Select(s) if s.from.is_empty() && s.selection.is_none());
    if one_row {
        return;
    }
    let Some(column) = name_first_column(&mut query.body) else {
        return;
    };
    let Ok(mut wrapper) = sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql("SELECT __pg_single_row(v) FROM (SELECT 1) AS __pg_scalar")
        .and_then(|mut p| p.parse_query())
    else {
        return;
    };
    let SetExpr::Select(select) = wrapper.body.as_mut() else {
        return;
    };
    let (Some(item), Some(from)) = (select.projection.first_mut(), select.from.first_mut()) else {
        return;
    };
    *item = SelectItem::UnnamedExpr(function_call(
        "__pg_single_row",
        vec![Expr::Identifier(Ident::with_quote('"', column))],
    ));
    if let TableFactor::Derived { subquery, .. } = &mut from.relation {
        std::mem::swap(subquery, query);
        std::mem::swap(query, &mut wrapper);
    }
}

fn literal_integer(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// The name of a query's first output column, naming it `__pg_v` when it has none; `None`
/// for `*` and bodies without a projection.
fn name_first_column(body: &mut SetExpr) -> Option<String> {
    match body {
        SetExpr::Select(select) => match select.projection.first_mut()? {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            item @ SelectItem::UnnamedExpr(_) => {
                let SelectItem::UnnamedExpr(expr) =
                    std::mem::replace(item, SelectItem::Wildcard(Default::default()))
                else {
                    return None;
                };
                *item = SelectItem::ExprWithAlias {
                    expr,
                    alias: sqlparser::ast::Ident::new("__pg_v"),
                };
                Some("__pg_v".to_owned())
            }
            _ => None,
        },
        SetExpr::SetOperation { left, .. } => name_first_column(left),
        SetExpr::Query(query) => name_first_column(&mut query.body),
        _ => None,
    }
}

/// Makes a `numeric(p,s)` operand of a text concatenation (`||`, `concat`, `format`) print its
/// `s` decimals (`1.50`), which storage does not keep.
pub(super) fn numeric_text_with_scale(expr: &mut Expr, ty: Option<Ty>) {
    let Some(source) = ty.filter(|t| t.ty == PgType::Numeric && t.typmod >= 4) else {
        return;
    };
    let arg = std::mem::replace(expr, Expr::Value(ValueWithSpan::from(Value::Null)));
    *expr = function_call(
        "__pg_cast",
        vec![
            arg,
            value_expr(SqlValue::Int(i64::from(PgType::Numeric.oid()))),
            value_expr(SqlValue::Int(i64::from(PgType::Text.oid()))),
            value_expr(SqlValue::Int(-1)),
            value_expr(SqlValue::Int(i64::from(source.typmod))),
        ],
    );
}

/// Refuses a number stored in a column of a type Postgres has no assignment cast to from
/// numbers (boolean, dates and times, intervals, json, uuid, bytea): `INSERT INTO t (flag)
/// VALUES (1)` fails there with 42804, where [`assignment_cast`]'s `__pg_cast` would convert
/// it as an explicit cast does.
pub(super) fn refuse_number_assignment(source: Ty, column: Ty, name: &str) -> Result<(), DbError> {
    let number = is_numeric(source.ty) && source.array_type().is_none();
    let holds_no_numbers = column.array_type().is_none()
        && (column.is_interval()
            || matches!(
                column.ty,
                PgType::Bool
                    | PgType::Date
                    | PgType::Time
                    | PgType::Timestamp
                    | PgType::Timestamptz
                    | PgType::Json
                    | PgType::Jsonb
                    | PgType::Uuid
                    | PgType::Bytea
            ));
    if number && holds_no_numbers {
        let column_type = if column.is_interval() {
            "interval"
        } else {
            column.ty.name()
        };
        return Err(DbError::new(
            "42804",
            format!(
                "column \"{name}\" is of type {column_type} but expression is of type {}",
                source.ty.name()
            ),
        )
        .with_hint("You will need to rewrite or cast the expression."));
    }
    Ok(())
}

pub(super) fn assignment_cast(expr: &mut Expr, source: Ty, column: Ty) -> Result<(), DbError> {
    if let Some(array) = column.array_type() {
        if source.typmod != column.typmod {
            // Another array type's elements, or text, are read again as this one's.
            let from = source.array_type().map_or(PgType::Text.oid(), |a| a.oid);
            if source.ty != PgType::Text {
                return Err(DbError::new(
                    "42804",
                    format!(
                        "column is of type {} but expression is of type {}",
                        array.name(),
                        source.ty.name()
                    ),
                ));
            }
            let arg = std::mem::replace(expr, Expr::Value(ValueWithSpan::from(Value::Null)));
            *expr = function_call(
                "__pg_array_cast",
                vec![
                    arg,
                    value_expr(SqlValue::Int(i64::from(from))),
                    value_expr(SqlValue::Int(i64::from(array.oid))),
                ],
            );
        }
        return Ok(());
    }
    let compatible = (source.ty == column.ty
        && (column.typmod < 0 || source.typmod == column.typmod))
        || (is_integer(source.ty) && matches!(column.ty, PgType::Int8 | PgType::Float8))
        || (is_integer(source.ty) && column.ty == PgType::Numeric && column.typmod < 0)
        || (matches!(source.ty, PgType::Float4 | PgType::Numeric) && column.ty == PgType::Float8)
        || (matches!(source.ty, PgType::Varchar | PgType::Name | PgType::Bpchar)
            && column.ty == PgType::Text)
        || (source.ty == PgType::Text
            && matches!(column.ty, PgType::Varchar | PgType::Json | PgType::Jsonb)
            && column.typmod < 0);
    if !compatible {
        let arg = std::mem::replace(expr, Expr::Value(ValueWithSpan::from(Value::Null)));
        *expr = function_call(
            "__pg_cast",
            vec![
                arg,
                value_expr(SqlValue::Int(i64::from(source.ty.oid()))),
                value_expr(SqlValue::Int(i64::from(column.ty.oid()))),
                value_expr(SqlValue::Int(i64::from(column.typmod))),
            ],
        );
    }
    Ok(())
}

/// Intervals compare by span (a month is 30 days, a day 24 hours), not by text: `IN` and
/// `BETWEEN` over them compare `__pg_interval_key`s, spans in microseconds.
fn interval_key(e: &mut Expr) {
    let value = std::mem::replace(e, Expr::value(Value::Null));
    *e = function_call("__pg_interval_key", vec![value]);
}

/// Casts output column `i` of `body` from date/time type `from` to the wider `to`.
fn widen_output(body: &mut SetExpr, i: usize, from: Ty, to: Ty) {
    match body {
        SetExpr::Select(select) => match select.projection.get_mut(i) {
            Some(SelectItem::ExprWithAlias { expr, .. }) => {
                super::operators::widen_temporal(expr, Some(from), Some(to));
            }
            Some(item @ SelectItem::UnnamedExpr(_)) => {
                // Keep the column's name, which the cast would otherwise replace.
                let SelectItem::UnnamedExpr(mut expr) =
                    std::mem::replace(item, SelectItem::Wildcard(Default::default()))
                else {
                    return;
                };
                let name = column_name(&expr);
                super::operators::widen_temporal(&mut expr, Some(from), Some(to));
                *item = SelectItem::ExprWithAlias {
                    expr,
                    alias: sqlparser::ast::Ident::with_quote('"', name),
                };
            }
            _ => {}
        },
        SetExpr::SetOperation { left, right, .. } => {
            widen_output(left, i, from, to);
            widen_output(right, i, from, to);
        }
        SetExpr::Query(q) => widen_output(&mut q.body, i, from, to),
        SetExpr::Values(values) => {
            for row in &mut values.rows {
                if let Some(e) = row.content.get_mut(i) {
                    super::operators::widen_temporal(e, Some(from), Some(to));
                }
            }
        }
        _ => {}
    }
}

/// `SELECT DISTINCT` of plain columns, one of them an interval, as `GROUP BY` those columns:
/// grouping compares intervals by span (`1 day` is `24:00:00`) where `DISTINCT` would compare
/// their texts. With anything but column references the statement is left as it is.
fn distinct_intervals_as_groups(select: &mut Select, out: &[OutColumn]) {
    use sqlparser::ast::{Distinct, GroupByExpr};
    let no_groups =
        matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    let column = |e: &Expr| matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
    let columns: Option<Vec<Expr>> = select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } if column(e) => {
                Some(e.clone())
            }
            _ => None,
        })
        .collect();
    if !matches!(select.distinct, Some(Distinct::Distinct))
        || !no_groups
        || select.having.is_some()
        || !out.iter().any(|c| c.ty.is_interval())
    {
        return;
    }
    if let Some(columns) = columns {
        select.distinct = None;
        select.group_by = GroupByExpr::Expressions(columns, vec![]);
    }
}
