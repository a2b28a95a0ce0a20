//! Postgres SQL → SQLite SQL, with the Postgres types of parameters and results.
//!
//! A statement is parsed with sqlparser's PostgreSQL dialect, typed by [`infer`] (which also
//! folds literals into storage values), rewritten by [`expr`] into SQLite syntax and printed
//! back. DDL is rebuilt by hand in [`ddl`], because SQLite's declarations differ too much.
//! The result depends only on (text, parameter types, schema snapshot), so it is cached.

mod arrays;
mod ddl;
mod display;
mod distinct_on;
mod explain;
mod expr;
mod functions;
mod grouping_sets;
mod infer;
pub mod lift;
mod operators;
mod ordered_set;
mod srf;
mod syntax;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mycelium_protocol::types::{PgType, SqlValue, TimeZone};
use mycelium_protocol::{Column, DbError};
use sqlparser::ast::{
    ConflictTarget, Expr, FromTable, Ident, OnConflictAction, OnInsert, SelectItem, SetExpr,
    Statement, TableObject, Value,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::catalog::{ColumnInfo, Schema, TableInfo, Ty};
use crate::errors::unsupported;
pub(crate) use explain::plan_lines;
use infer::{Inferer, Rel};
pub(crate) use infer::{ident_name, typname};

/// One result column: its Postgres name and type, and the table column it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutColumn {
    pub name: String,
    pub ty: Ty,
    pub table_oid: u32,
    pub attnum: i16,
}

impl OutColumn {
    pub fn expr(name: impl Into<String>, ty: Ty) -> OutColumn {
        OutColumn {
            name: name.into(),
            ty,
            table_oid: 0,
            attnum: 0,
        }
    }

    pub fn to_column(&self) -> Column {
        Column {
            name: self.name.clone(),
            table_oid: self.table_oid,
            column_id: self.attnum,
            type_oid: self.ty.type_oid(),
            type_size: if self.ty.array_type().is_some() {
                -1
            } else if self.ty.is_interval() {
                16
            } else {
                self.ty.ty.type_size()
            },
            // Computed numerics carry a display scale, not a declared typmod; intervals a
            // marker.
            type_modifier: if self.ty.typmod < -1
                || (self.table_oid == 0 && self.ty.ty == PgType::Numeric)
            {
                -1
            } else {
                self.ty.typmod
            },
        }
    }
}

/// How the command tag is formed once the statement has run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Select,
    Insert,
    Update,
    Delete,
    /// A fixed tag (`CREATE TABLE`).
    Other(&'static str),
}

impl Kind {
    pub fn tag(&self, count: u64) -> String {
        match self {
            Kind::Select => format!("SELECT {count}"),
            Kind::Insert => format!("INSERT 0 {count}"),
            Kind::Update => format!("UPDATE {count}"),
            Kind::Delete => format!("DELETE {count}"),
            Kind::Other(tag) => (*tag).to_owned(),
        }
    }
}

/// A statement ready to run on SQLite.
#[derive(Debug, Clone)]
pub struct Translation {
    pub kind: Kind,
    /// Queries that run before everything else and raise when the statement must not go
    /// on (rows a schema change would violate). Only here: a replica replays `pre`, not
    /// these, since an entry's DDL runs before the rows the transaction wrote before it.
    pub checks: Vec<String>,
    /// Statements without parameters that run first, in the same transaction.
    pub pre: Vec<String>,
    /// The statement that takes the parameters and yields the rows or the change count.
    pub main: Option<String>,
    pub params: Vec<Ty>,
    /// Result columns; empty when the statement returns no rows.
    pub out: Vec<OutColumn>,
    pub columns: Arc<[Column]>,
    /// Must start a write (`BEGIN IMMEDIATE`) transaction.
    pub writes: bool,
    /// Changes the schema: caches must be refreshed after it.
    pub ddl: bool,
    /// The table a DML statement writes, for error messages.
    pub table: Option<String>,
    /// Must not run inside a transaction block (VACUUM).
    pub no_transaction_block: bool,
    /// Reads the emulated `pg_catalog`, which must be filled first.
    pub catalog: bool,
    /// How to find the values of a unique violation (INSERT, UPDATE).
    pub probe: Option<ConflictProbe>,
    /// Replaces a table by a rebuilt copy (ALTER COLUMN): must run with foreign keys
    /// unenforced, or dropping the old table would delete, or cascade to, the rows that
    /// reference it.
    pub rebuild: bool,
    /// What replicas (and a prepared transaction restarted) replay instead of `pre`: the
    /// PostgreSQL statement itself, for a rebuild (ALTER COLUMN), which a SQLite node
    /// translates against its own schema ([`replays_translated`]) and PostgreSQL runs as is.
    pub replicated: Option<String>,
    /// `EXPLAIN`: the result is SQLite's plan of `main` (and, with `analyze`, what running it
    /// took) instead of its rows.
    pub explain: Option<Explain>,
}

/// How an `EXPLAIN` runs its statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Explain {
    /// `EXPLAIN ANALYZE`: the statement runs too, as it would alone.
    pub analyze: bool,
    /// The statement returns rows (which `ANALYZE` counts); else its changes are counted.
    pub returns_rows: bool,
}

/// A query that yields the rows an INSERT or UPDATE writes, run after a unique violation to
/// name the conflicting key (`Key (email)=(a@b.c) already exists.`), which SQLite's message
/// lacks. It takes the statement's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictProbe {
    /// The table columns whose new values the probe's first columns hold.
    pub columns: Vec<String>,
    /// UPDATE: the same columns' old values follow the new ones.
    pub with_old: bool,
    pub sql: String,
}

impl Translation {
    fn new(kind: Kind) -> Translation {
        Translation {
            kind,
            checks: Vec::new(),
            pre: Vec::new(),
            main: None,
            params: Vec::new(),
            out: Vec::new(),
            columns: Arc::from(Vec::new()),
            writes: false,
            ddl: false,
            table: None,
            no_transaction_block: false,
            catalog: false,
            probe: None,
            rebuild: false,
            replicated: None,
            explain: None,
        }
    }

    fn utility(tag: &'static str) -> Translation {
        Translation::new(Kind::Other(tag))
    }

    pub(crate) fn with_out(mut self, out: Vec<OutColumn>) -> Translation {
        self.columns = out.iter().map(OutColumn::to_column).collect();
        self.out = out;
        self
    }
}

/// Postgres's `syntax error at or near "x"` from sqlparser's message.
fn syntax_error(err: &sqlparser::parser::ParserError) -> DbError {
    let text = err.to_string();
    let near = text.split_once("found: ").map(|(_, rest)| {
        rest.split(" at Line")
            .next()
            .unwrap_or(rest)
            .trim()
            .to_owned()
    });
    let message = match near {
        Some(token) if token == "EOF" => "syntax error at end of input".to_owned(),
        Some(token) => format!("syntax error at or near \"{token}\""),
        None => format!("syntax error: {text}"),
    };
    DbError::new("42601", message).with_detail(text)
}

fn first_word(sql: &str) -> String {
    sql.trim_start()
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// Statements recognised by keyword because sqlparser does not parse Postgres's form.
fn by_keyword(sql: &str) -> Option<Result<Translation, DbError>> {
    let word = first_word(sql);
    let words: Vec<String> = sql
        .split_whitespace()
        .map(|w| w.trim_end_matches(';').to_owned())
        .filter(|w| !w.is_empty())
        .collect();
    match word.as_str() {
        "VACUUM" => {
            // VACUUM's visible effect in Postgres is statistics (ANALYZE); space reclamation
            // has no observable result, and SQLite's VACUUM rewrites the whole file.
            let mut t = Translation::utility("VACUUM");
            t.no_transaction_block = true;
            let analyze = words.iter().any(|w| w.eq_ignore_ascii_case("analyze"));
            if analyze {
                let table = words.last().filter(|w| !is_vacuum_option(w));
                t.pre.push(match table {
                    Some(table) => format!("ANALYZE {}", quote_name(table)),
                    None => "ANALYZE".to_owned(),
                });
            }
            Some(Ok(t))
        }
        "ANALYZE" | "ANALYSE" => {
            let mut t = Translation::utility("ANALYZE");
            let table = words.iter().skip(1).rfind(|w| !is_vacuum_option(w));
            t.pre.push(match table {
                Some(table) => format!("ANALYZE {}", quote_name(table)),
                None => "ANALYZE".to_owned(),
            });
            Some(Ok(t))
        }
        "CHECKPOINT" => Some(Ok(Translation::utility("CHECKPOINT"))),
        "SET" => Some(Ok(Translation::utility("SET"))),
        "RESET" => Some(Ok(Translation::utility("RESET"))),
        "DISCARD" => Some(Ok(Translation::utility("DISCARD ALL"))),
        "LOCK" => Some(Ok(Translation {
            writes: true,
            ..Translation::utility("LOCK TABLE")
        })),
        "CREATE" if words.len() >= 2 && words[1].eq_ignore_ascii_case("extension") => {
            Some(Ok(Translation::utility("CREATE EXTENSION")))
        }
        "COMMENT" => Some(Ok(Translation::utility("COMMENT"))),
        "PREPARE" | "COMMIT" | "ROLLBACK"
            if words.iter().any(|w| {
                w.eq_ignore_ascii_case("prepared") || w.eq_ignore_ascii_case("transaction")
            }) =>
        {
            Some(Err(unsupported(
                "two-phase commit statements (the node runs them)",
            )))
        }
        _ => None,
    }
}

fn is_vacuum_option(word: &str) -> bool {
    matches!(
        word.to_ascii_lowercase()
            .trim_matches(|c| c == '(' || c == ')' || c == ','),
        "vacuum" | "analyze" | "analyse" | "verbose" | "full" | "freeze" | "skip_locked"
    )
}

fn quote_name(raw: &str) -> String {
    let raw = raw.trim_end_matches(';');
    let name = raw.strip_prefix("public.").unwrap_or(raw);
    if name.starts_with('"') {
        name.to_owned()
    } else {
        crate::catalog::quote_ident(&name.to_ascii_lowercase())
    }
}

/// Translates one Postgres statement.
/// Whether a replicated DDL statement is PostgreSQL's own `ALTER TABLE ... ALTER COLUMN`,
/// which SQLite lacks and a node replays through [`translate`]; the rest is SQLite text.
pub(crate) fn replays_translated(sql: &str) -> bool {
    matches!(
        Parser::parse_sql(&PostgreSqlDialect {}, sql).as_deref(),
        Ok([Statement::AlterTable(at)]) if at
            .operations
            .iter()
            .any(|op| matches!(op, sqlparser::ast::AlterTableOperation::AlterColumn { .. }))
    )
}

pub fn translate(sql: &str, param_types: &[u32], schema: &Schema) -> Result<Translation, DbError> {
    if let Some(result) = by_keyword(sql) {
        return result;
    }
    let mut statements =
        Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| syntax_error(&e))?;
    let mut statement = match statements.len() {
        0 => return Ok(Translation::utility("")),
        1 => statements.remove(0),
        _ => {
            return Err(DbError::new(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
    };
    let mut inf = Inferer::new(schema, param_types);
    let lower = sql.to_ascii_lowercase();
    // Catalog queries from psql and drivers use arrays and other constructs SQLite lacks,
    // on catalog tables that are empty here: those parts become NULL instead of failing.
    inf.lenient = lower.contains("pg_catalog") || lower.contains("information_schema");
    let lenient = inf.lenient;
    let mut t = match &mut statement {
        Statement::Query(query)
            if matches!(
                query.body.as_ref(),
                SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_)
            ) =>
        {
            // `WITH ... INSERT/UPDATE/DELETE`: SQLite has the same form.
            inf.register_ctes(&mut query.with)?;
            let mut t = match query.body.as_mut() {
                SetExpr::Insert(inner) => insert(&mut inf, inner)?,
                SetExpr::Update(inner) => update(&mut inf, inner)?,
                SetExpr::Delete(inner) => delete(&mut inf, inner)?,
                _ => return Err(crate::errors::internal("not a data-modifying WITH")),
            };
            expr::rewrite(query.as_mut(), lenient)?;
            t.main = Some(query.to_string());
            t
        }
        Statement::Query(query) => {
            grouping_sets::rewrite(query)?;
            distinct_on::rewrite(query, schema)?;
            let mut out = inf.query(query, None)?;
            order_by_params(&mut inf, query, &out)?;
            display::query(query, &mut out);
            expr::rewrite(query.as_mut(), lenient)?;
            let mut t = Translation::new(Kind::Select).with_out(out);
            t.writes = inf.locks;
            t.main = Some(query.to_string());
            t
        }
        Statement::Insert(_) => insert(&mut inf, &mut statement)?,
        Statement::Update(_) => update(&mut inf, &mut statement)?,
        Statement::Delete(_) => delete(&mut inf, &mut statement)?,
        Statement::CreateTable(ct) => ddl::create_table(ct, schema)?,
        Statement::CreateIndex(ci) => ddl::create_index(ci, schema)?,
        Statement::CreateView(cv) => ddl::create_view(cv, schema)?,
        Statement::Drop {
            object_type,
            if_exists,
            names,
            ..
        } => ddl::drop(*object_type, *if_exists, names, schema)?,
        Statement::AlterTable(at) => ddl::alter_table(at, schema)?,
        Statement::Truncate(tr) => ddl::truncate(tr, schema)?,
        Statement::Analyze(_) => Translation {
            pre: vec!["ANALYZE".to_owned()],
            ..Translation::utility("ANALYZE")
        },
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => {
            return Err(DbError::new(
                "XX000",
                "transaction control must be handled by the session",
            ));
        }
        Statement::Copy { .. } => {
            return Err(unsupported(
                "COPY as a statement (the proxy streams COPY data)",
            ));
        }
        Statement::Explain {
            statement: inner,
            analyze,
            format,
            options,
            ..
        } => {
            let inner = translate(&inner.to_string(), param_types, schema)?;
            return explain::translate(inner, *analyze, format.as_ref(), options.as_deref());
        }
        other => {
            let text = other.to_string();
            let head: String = text
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ");
            return Err(unsupported(format!("statement {head}")));
        }
    };
    if t.params.is_empty() {
        t.params = inf.param_types();
    }
    t.catalog = inf.uses_catalog;
    Ok(t)
}

/// Types the ORDER BY of a query whose body is not a plain select (which typed its own).
fn order_by_params(
    inf: &mut Inferer<'_>,
    query: &mut sqlparser::ast::Query,
    out: &[OutColumn],
) -> Result<(), DbError> {
    match (query.body.as_ref(), query.order_by.as_mut()) {
        (SetExpr::Select(_), _) | (_, None) => Ok(()),
        (_, Some(order_by)) => inf.order_by(order_by, out, None),
    }
}

fn returning(
    inf: &mut Inferer<'_>,
    items: &mut Option<Vec<SelectItem>>,
) -> Result<Vec<OutColumn>, DbError> {
    let Some(items) = items else {
        return Ok(Vec::new());
    };
    if let Some(scope) = inf.scopes.last() {
        infer::spell_out_wildcards(items, scope);
    }
    // RETURNING is a select list over the target row: infer it as one.
    let mut select_out = Vec::new();
    for item in items.iter_mut() {
        match item {
            SelectItem::UnnamedExpr(e) => {
                let name = infer::column_name(e);
                select_out.push(output(inf, e, name)?);
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                let name = ident_name(alias);
                select_out.push(output(inf, expr, name)?);
            }
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                if let Some(rel) = inf.scopes.last().and_then(|s| s.first()) {
                    select_out.extend(rel.cols.iter().cloned());
                }
            }
            SelectItem::ExprWithAliases { .. } => {
                return Err(unsupported("multiple aliases in RETURNING"));
            }
        }
    }
    display::select_items(items, &mut select_out);
    Ok(select_out)
}

fn output(inf: &mut Inferer<'_>, e: &mut Expr, name: String) -> Result<OutColumn, DbError> {
    if let Some(col) = inf.column_ref(e) {
        return Ok(OutColumn { name, ..col });
    }
    let ty = inf.expr(e, None)?;
    Ok(OutColumn::expr(name, ty.unwrap_or(Ty::of(PgType::Text))))
}

fn is_default_keyword(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(ident) if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default"))
}

/// The expression SQLite should insert for `DEFAULT`: the column's default or NULL (which an
/// INTEGER PRIMARY KEY turns into the next row id, as a serial would).
fn default_expr(col: &ColumnInfo) -> Expr {
    match &col.default_sql {
        // Already SQLite text: carried as a bare identifier, which prints unchanged.
        Some(sql) => Expr::Identifier(Ident::new(format!("({sql})"))),
        None => Expr::Value(Value::Null.into()),
    }
}

/// The primary key column that is SQLite's rowid (one integer column), unless it numbers
/// rows itself (serial). SQLite gives such a column the next rowid when a row has NULL in it
/// (even declared NOT NULL), where Postgres refuses the row: inserts check it themselves.
fn rowid_key_without_default(table: &TableInfo) -> Option<&ColumnInfo> {
    let [key] = table.primary_key.as_slice() else {
        return None;
    };
    table.column(key).filter(|c| {
        crate::catalog::sqlite_decl(c.ty.ty) == "INTEGER"
            && c.default_sql.is_none()
            && c.default_pg.is_none()
    })
}

fn null_key(key: &ColumnInfo, table: &TableInfo) -> DbError {
    DbError::new(
        "23502",
        format!(
            "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
            key.name, table.name
        ),
    )
}

/// `e` becomes `__pg_not_null(e, column, table)`, which raises 23502 for NULL; a number
/// written in the statement needs no check.
fn refuse_null_key(e: &mut Expr, key: &ColumnInfo, table: &TableInfo) {
    if matches!(e, Expr::Value(v) if matches!(v.value, Value::Number(..))) {
        return;
    }
    let value = std::mem::replace(e, Expr::Value(Value::Null.into()));
    *e = syntax::function_call(
        "__pg_not_null",
        vec![
            value,
            syntax::value_expr(SqlValue::Text(key.name.clone())),
            syntax::value_expr(SqlValue::Text(table.name.clone())),
        ],
    );
}

fn insert(inf: &mut Inferer<'_>, statement: &mut Statement) -> Result<Translation, DbError> {
    let Statement::Insert(ins) = statement else {
        return Err(crate::errors::internal("not an INSERT"));
    };
    let TableObject::TableName(name) = &ins.table else {
        return Err(unsupported("INSERT into a table function"));
    };
    let table = inf.table(name)?.clone();
    let mut targets: Vec<ColumnInfo> = Vec::new();
    if ins.columns.is_empty() {
        targets = table.columns.clone();
    } else {
        for column in &ins.columns {
            let col_name = column
                .0
                .last()
                .map(|p| match p {
                    sqlparser::ast::ObjectNamePart::Identifier(i) => ident_name(i),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            let col = table.column(&col_name).ok_or_else(|| {
                DbError::new(
                    "42703",
                    format!(
                        "column \"{col_name}\" of relation \"{}\" does not exist",
                        table.name
                    ),
                )
            })?;
            targets.push(col.clone());
        }
    }
    if ins.columns.is_empty() && table.hidden_rowid {
        // SQLite's table has one more column than the values list names.
        ins.columns = targets
            .iter()
            .map(|c| sqlparser::ast::ObjectName::from(vec![Ident::with_quote('"', c.name.clone())]))
            .collect();
    }
    let types: Vec<Ty> = targets.iter().map(|c| c.ty).collect();
    let rowid_key = rowid_key_without_default(&table);
    // DEFAULT VALUES has no source.
    if let Some(key) = rowid_key
        && (ins.source.is_none() || !targets.iter().any(|c| c.name == key.name))
    {
        return Err(null_key(key, &table));
    }
    if let Some(source) = &mut ins.source {
        match source.body.as_mut() {
            SetExpr::Values(values) => {
                for row in &mut values.rows {
                    if row.content.len() > targets.len() {
                        return Err(DbError::new(
                            "42601",
                            "INSERT has more expressions than target columns",
                        ));
                    }
                    if let Some(key) = rowid_key
                        && targets[row.content.len()..]
                            .iter()
                            .any(|c| c.name == key.name)
                    {
                        return Err(null_key(key, &table));
                    }
                    for (e, col) in row.content.iter_mut().zip(&targets) {
                        if is_default_keyword(e) {
                            *e = default_expr(col);
                        } else {
                            inf.assign(e, col.ty, &col.name)?;
                        }
                        if rowid_key.is_some_and(|key| key.name == col.name) {
                            refuse_null_key(e, col, &table);
                        }
                    }
                }
            }
            _ => {
                let cols = inf.query(source, Some(&types))?;
                if cols.len() > targets.len() {
                    return Err(DbError::new(
                        "42601",
                        "INSERT has more expressions than target columns",
                    ));
                }
                // Each selected value is stored as an assignment stores it (22001 for a
                // string too long for varchar(n)).
                if let SetExpr::Select(select) = source.body.as_mut()
                    && select.projection.len() == cols.len()
                {
                    for ((item, out), col) in select.projection.iter_mut().zip(&cols).zip(&targets)
                    {
                        if let SelectItem::UnnamedExpr(e)
                        | SelectItem::ExprWithAlias { expr: e, .. } = item
                        {
                            infer::refuse_number_assignment(out.ty, col.ty, &col.name)?;
                            infer::assignment_cast(e, out.ty, col.ty)?;
                            if rowid_key.is_some_and(|key| key.name == col.name) {
                                refuse_null_key(e, col, &table);
                            }
                        }
                    }
                }
            }
        }
    }
    inf.scopes.push(vec![Rel::of_table(&table, None)]);
    if let Some(OnInsert::OnConflict(on_conflict)) = &mut ins.on {
        if let Some(ConflictTarget::OnConstraint(name)) = &on_conflict.conflict_target {
            return Err(unsupported(format!("ON CONFLICT ON CONSTRAINT {name}"))
                .with_hint("Name the conflict columns instead: ON CONFLICT (column, ...)."));
        }
        if let OnConflictAction::DoUpdate(update) = &mut on_conflict.action {
            let mut excluded = Rel::of_table(&table, None);
            excluded.name = "excluded".to_owned();
            if let Some(scope) = inf.scopes.last_mut() {
                scope.push(excluded);
            }
            for assignment in &mut update.assignments {
                let col = assignment_column(&assignment.target, &table)?;
                inf.assign(&mut assignment.value, col.ty, &col.name)?;
            }
            if let Some(selection) = &mut update.selection {
                inf.expr(selection, Some(Ty::of(PgType::Bool)))?;
            }
            if let Some(scope) = inf.scopes.last_mut() {
                scope.pop();
            }
            // SQLite cannot tell `SELECT ... FROM t ON CONFLICT` from a join constraint
            // without a WHERE clause.
            if let Some(source) = &mut ins.source
                && let SetExpr::Select(select) = source.body.as_mut()
                && select.selection.is_none()
            {
                select.selection = Some(Expr::Value(Value::Boolean(true).into()));
            }
        }
    }
    let out = returning(inf, &mut ins.returning)?;
    inf.scopes.pop();
    expr::rewrite(statement, inf.lenient)?;
    let mut t = Translation::new(Kind::Insert).with_out(out);
    t.writes = true;
    t.table = Some(table.name.clone());
    t.main = Some(statement.to_string());
    if let Statement::Insert(ins) = statement
        && let Some(source) = &ins.source
    {
        let sql = source.to_string();
        // Running the source again must not draw sequence values.
        if !sql.contains("__pg_nextval") {
            t.probe = Some(ConflictProbe {
                columns: targets.iter().map(|c| c.name.clone()).collect(),
                with_old: false,
                sql: format!("SELECT * FROM ({sql})"),
            });
        }
    }
    Ok(t)
}

fn assignment_column<'t>(
    target: &sqlparser::ast::AssignmentTarget,
    table: &'t crate::catalog::TableInfo,
) -> Result<&'t ColumnInfo, DbError> {
    let sqlparser::ast::AssignmentTarget::ColumnName(name) = target else {
        return Err(unsupported("assignment to a column tuple"));
    };
    let parts = infer::object_parts(name);
    let col_name = parts.last().cloned().unwrap_or_default();
    table.column(&col_name).ok_or_else(|| {
        DbError::new(
            "42703",
            format!(
                "column \"{col_name}\" of relation \"{}\" does not exist",
                table.name
            ),
        )
    })
}

fn update(inf: &mut Inferer<'_>, statement: &mut Statement) -> Result<Translation, DbError> {
    let Statement::Update(upd) = statement else {
        return Err(crate::errors::internal("not an UPDATE"));
    };
    explicit_alias(&mut upd.table.relation);
    let sqlparser::ast::TableFactor::Table { name, .. } = &upd.table.relation else {
        return Err(unsupported("UPDATE of a non-table"));
    };
    let table = inf.table(name)?.clone();
    inf.scopes.push(Vec::new());
    inf.add_from(&mut upd.table)?;
    if let Some(
        sqlparser::ast::UpdateTableFromKind::AfterSet(froms)
        | sqlparser::ast::UpdateTableFromKind::BeforeSet(froms),
    ) = &mut upd.from
    {
        for from in froms {
            inf.add_from(from)?;
        }
    }
    let rowid_key = rowid_key_without_default(&table);
    for assignment in &mut upd.assignments {
        let col = assignment_column(&assignment.target, &table)?;
        if is_default_keyword(&assignment.value) {
            assignment.value = default_expr(col);
        } else {
            inf.assign(&mut assignment.value, col.ty, &col.name)?;
        }
        if rowid_key.is_some_and(|key| key.name == col.name) {
            refuse_null_key(&mut assignment.value, col, &table);
        }
    }
    if let Some(selection) = &mut upd.selection {
        inf.expr(selection, Some(Ty::of(PgType::Bool)))?;
    }
    let out = returning(inf, &mut upd.returning)?;
    unqualify_returning(&mut upd.returning, &upd.table.relation)?;
    inf.scopes.pop();
    expr::rewrite(statement, inf.lenient)?;
    let mut t = Translation::new(Kind::Update).with_out(out);
    t.writes = true;
    t.table = Some(table.name.clone());
    t.main = Some(statement.to_string());
    if let Statement::Update(upd) = statement {
        t.probe = update_probe(upd, &table);
    }
    Ok(t)
}

/// `SELECT <new values>, <old values> FROM <target and FROM> WHERE <condition>` for an
/// UPDATE (already in SQLite syntax).
fn update_probe(
    upd: &sqlparser::ast::Update,
    table: &crate::catalog::TableInfo,
) -> Option<ConflictProbe> {
    let qualifier = match &upd.table.relation {
        sqlparser::ast::TableFactor::Table {
            alias: Some(alias), ..
        } => ident_name(&alias.name),
        _ => table.name.clone(),
    };
    let column = |c: &ColumnInfo| {
        format!(
            "{}.{}",
            crate::catalog::quote_ident(&qualifier),
            crate::catalog::quote_ident(&c.name)
        )
    };
    let mut new = Vec::new();
    for c in &table.columns {
        let assigned = upd.assignments.iter().find(|a| {
            assignment_column(&a.target, table).is_ok_and(|target| target.name == c.name)
        });
        new.push(match assigned {
            Some(a) => a.value.to_string(),
            None => column(c),
        });
    }
    let old: Vec<String> = table.columns.iter().map(column).collect();
    let mut from = vec![upd.table.to_string()];
    if let Some(
        sqlparser::ast::UpdateTableFromKind::AfterSet(froms)
        | sqlparser::ast::UpdateTableFromKind::BeforeSet(froms),
    ) = &upd.from
    {
        from.extend(froms.iter().map(ToString::to_string));
    }
    let mut sql = format!(
        "SELECT {}, {} FROM {}",
        new.join(", "),
        old.join(", "),
        from.join(", ")
    );
    if let Some(selection) = &upd.selection {
        sql.push_str(&format!(" WHERE {selection}"));
    }
    if sql.contains("__pg_nextval") {
        return None;
    }
    Some(ConflictProbe {
        columns: table.columns.iter().map(|c| c.name.clone()).collect(),
        with_old: true,
        sql,
    })
}

/// SQLite's RETURNING names the target's columns bare: `RETURNING a.id` after `UPDATE acct a`
/// fails there with "no such column". Qualifiers naming the target (its alias or name) are
/// dropped; a column of another table (UPDATE's FROM) is what SQLite cannot return.
fn unqualify_returning(
    items: &mut Option<Vec<SelectItem>>,
    target: &sqlparser::ast::TableFactor,
) -> Result<(), DbError> {
    use sqlparser::ast::{Expr, visit_expressions_mut};
    let (Some(items), sqlparser::ast::TableFactor::Table { name, alias, .. }) = (items, target)
    else {
        return Ok(());
    };
    let table = infer::object_parts(name)
        .last()
        .cloned()
        .unwrap_or_default();
    let alias = alias.as_ref().map(|a| ident_name(&a.name));
    let mut result = Ok(());
    let _ = visit_expressions_mut(items, |expr| {
        if let Expr::CompoundIdentifier(parts) = expr
            && let [qualifier, column] = parts.as_slice()
        {
            let qualifier = ident_name(qualifier);
            if alias.as_deref().unwrap_or(&table) == qualifier {
                *expr = Expr::Identifier(column.clone());
            } else {
                result = Err(unsupported(format!(
                    "RETURNING {qualifier}.{}: only the target's columns",
                    column.value
                )));
                return std::ops::ControlFlow::Break(());
            }
        }
        std::ops::ControlFlow::Continue(())
    });
    result
}

/// SQLite needs `AS` before the alias of an UPDATE or DELETE target (`DELETE FROM t AS x`).
fn explicit_alias(target: &mut sqlparser::ast::TableFactor) {
    if let sqlparser::ast::TableFactor::Table {
        alias: Some(alias), ..
    } = target
    {
        alias.explicit = true;
    }
}

fn delete(inf: &mut Inferer<'_>, statement: &mut Statement) -> Result<Translation, DbError> {
    let Statement::Delete(del) = statement else {
        return Err(crate::errors::internal("not a DELETE"));
    };
    if let Some(using) = del.using.take() {
        // SQLite has no USING: the rows to delete are those for which a row of the USING
        // tables matches, `WHERE EXISTS (SELECT 1 FROM <using> WHERE <condition>)`.
        if del.returning.is_some() {
            return Err(unsupported("DELETE ... USING ... RETURNING"));
        }
        let tables: Vec<String> = using.iter().map(ToString::to_string).collect();
        let condition = del
            .selection
            .take()
            .map(|c| format!(" WHERE {c}"))
            .unwrap_or_default();
        let exists = format!("EXISTS (SELECT 1 FROM {}{condition})", tables.join(", "));
        del.selection = Some(
            sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
                .try_with_sql(&exists)
                .and_then(|mut parser| parser.parse_expr())
                .map_err(|e| DbError::new("XX000", format!("DELETE ... USING: {e}")))?,
        );
    }
    let froms = match &mut del.from {
        FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
    };
    if froms.len() != 1 {
        return Err(unsupported("DELETE from several tables"));
    }
    explicit_alias(&mut froms[0].relation);
    let sqlparser::ast::TableFactor::Table { name, .. } = &froms[0].relation else {
        return Err(unsupported("DELETE from a non-table"));
    };
    let table = inf.table(name)?.clone();
    inf.scopes.push(Vec::new());
    inf.add_from(&mut froms[0])?;
    if let Some(selection) = &mut del.selection {
        inf.expr(selection, Some(Ty::of(PgType::Bool)))?;
    }
    let out = returning(inf, &mut del.returning)?;
    unqualify_returning(&mut del.returning, &froms[0].relation)?;
    inf.scopes.pop();
    expr::rewrite(statement, inf.lenient)?;
    let mut t = Translation::new(Kind::Delete).with_out(out);
    t.writes = true;
    t.table = Some(table.name.clone());
    t.main = Some(statement.to_string());
    Ok(t)
}

/// Translations shared by the workers, keyed by statement text, then parameter types, schema
/// snapshot and session time zone (a `timestamptz` literal is folded to UTC in the zone it is
/// translated in). Looking up by `&str` needs no allocation on the hot path.
#[derive(Default)]
pub struct TranslationCache {
    entries: Mutex<HashMap<String, Vec<CacheEntry>>>,
    /// Statement shapes with integer literals lifted out ([`lift`]) whose translation did
    /// not match the original text's: those texts are translated as they are.
    unliftable: Mutex<std::collections::HashSet<String>>,
}

struct CacheEntry {
    params: Vec<u32>,
    schema: u64,
    zone: TimeZone,
    translation: Arc<Translation>,
}

const CACHE_CAPACITY: usize = 4096;

impl TranslationCache {
    pub fn get(
        &self,
        sql: &str,
        params: &[u32],
        schema: u64,
        zone: TimeZone,
    ) -> Option<Arc<Translation>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(sql)?
            .iter()
            .find(|e| e.schema == schema && e.zone == zone && e.params == params)
            .map(|e| e.translation.clone())
    }

    /// Whether the lifted shape `sql` was found not to translate as its texts do.
    pub fn unliftable(&self, sql: &str) -> bool {
        self.unliftable
            .lock()
            .is_ok_and(|shapes| shapes.contains(sql))
    }

    pub fn refuse_lifting(&self, sql: &str) {
        if let Ok(mut shapes) = self.unliftable.lock() {
            if shapes.len() >= CACHE_CAPACITY {
                shapes.clear();
            }
            shapes.insert(sql.to_owned());
        }
    }

    pub fn insert(
        &self,
        sql: &str,
        params: &[u32],
        schema: u64,
        zone: TimeZone,
        translation: Arc<Translation>,
    ) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CACHE_CAPACITY {
                // Statement texts are few in steady state; a full cache means churn.
                entries.clear();
            }
            let variants = entries.entry(sql.to_owned()).or_default();
            // Entries for older schema snapshots are dead.
            variants.retain(|e| e.schema == schema);
            variants.push(CacheEntry {
                params: params.to_vec(),
                schema,
                zone,
                translation,
            });
        }
    }
}
