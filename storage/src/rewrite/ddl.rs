//! DDL rebuilt for SQLite, together with the catalog rows that keep the Postgres types.
//!
//! Unique constraints become separately named unique indexes so that their Postgres names
//! survive (SQLite names inline ones `sqlite_autoindex_*`) and appear in error messages.
//! `ALTER TABLE ... ADD PRIMARY KEY` becomes a unique index named `<table>_pkey`: SQLite
//! cannot add a primary key to an existing table.

use mycelium_protocol::DbError;
use mycelium_protocol::types::PgType;
use sqlparser::ast::{
    AlterColumnOperation, AlterTable, AlterTableOperation, ColumnDef, ColumnOption,
    ColumnOptionDef, CreateIndex, CreateTable, CreateTableOptions, CreateView, DataType, Expr,
    Ident, ObjectName, ObjectType, ReferentialAction, Statement, TableConstraint, Truncate,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;

use super::infer::{Inferer, ident_name, object_parts, table_name};
use super::{Kind, OutColumn, Translation, expr};
use crate::catalog::{
    ColumnInfo, REBUILD_TABLE, Schema, TableInfo, Ty, quote_ident, quote_literal, sqlite_decl,
};
use crate::errors::{internal, unsupported};

/// The one table column a CHECK expression references, if it references exactly one.
fn single_column(e: &Expr, columns: &[(String, Ty)]) -> Option<String> {
    let mut found: Vec<String> = Vec::new();
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        let name = match x {
            Expr::Identifier(ident) => Some(ident_name(ident)),
            Expr::CompoundIdentifier(parts) => parts.last().map(ident_name),
            _ => None,
        };
        if let Some(name) = name
            && columns.iter().any(|(c, _)| *c == name)
            && !found.contains(&name)
        {
            found.push(name);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    match found.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// DDL that turned out to have nothing to do (`IF [NOT] EXISTS`). It still begins its
/// transaction as a writer: a transaction begun deferred by it would fail with 40001 at its
/// next write if another connection (a replication apply) committed in between.
fn nothing_to_do(tag: &'static str) -> Translation {
    Translation {
        writes: true,
        ..Translation::new(Kind::Other(tag))
    }
}

fn ddl(tag: &'static str) -> Translation {
    let mut t = Translation::new(Kind::Other(tag));
    t.writes = true;
    t.ddl = true;
    t
}

/// The sequence Postgres creates for a serial column.
pub(crate) fn sequence_name(table: &str, column: &str) -> String {
    format!("{table}_{column}_seq")
}

fn is_serial(column: &ColumnDef) -> bool {
    let name = column.data_type.to_string().to_ascii_lowercase();
    matches!(
        name.as_str(),
        "serial" | "serial4" | "bigserial" | "serial8" | "smallserial" | "serial2"
    )
}

/// A default expression as SQLite text, typed against the column.
fn default_sql(expr: &Expr, ty: Ty, schema: &Schema) -> Result<String, DbError> {
    let mut e = expr.clone();
    let mut inf = Inferer::new(schema, &[]);
    inf.expr(&mut e, Some(ty))?;
    expr::rewrite(&mut e, false)?;
    Ok(e.to_string())
}

fn check_sql(
    expr: &Expr,
    table: &str,
    columns: &[(String, Ty)],
    schema: &Schema,
) -> Result<String, DbError> {
    let mut e = expr.clone();
    let mut inf = Inferer::new(schema, &[]);
    inf.scopes.push(vec![super::infer::Rel {
        hidden: false,
        srf: false,
        name: table.to_owned(),
        cols: columns
            .iter()
            .map(|(name, ty)| OutColumn::expr(name.clone(), *ty))
            .collect(),
    }]);
    inf.expr(&mut e, Some(Ty::of(PgType::Bool)))?;
    if !inf.params.is_empty() {
        return Err(DbError::new("42P02", "there is no parameter $1"));
    }
    expr::rewrite(&mut e, false)?;
    Ok(e.to_string())
}

fn referential(action: &Option<ReferentialAction>, clause: &str) -> String {
    match action {
        Some(a) => format!(" {clause} {a}"),
        None => String::new(),
    }
}

fn index_column_names(columns: &[sqlparser::ast::IndexColumn]) -> Result<Vec<String>, DbError> {
    columns
        .iter()
        .map(|c| match &c.column.expr {
            Expr::Identifier(i) => Ok(ident_name(i)),
            other => Err(unsupported(format!("constraint on expression {other}"))),
        })
        .collect()
}

fn column_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Fk {
    columns: Vec<String>,
    table: String,
    referred: Vec<String>,
    on_delete: Option<ReferentialAction>,
    on_update: Option<ReferentialAction>,
}

fn catalog_rows(
    t: &mut Translation,
    table: &str,
    columns: &[(String, Ty, Option<String>)],
    first_ordinal: usize,
) {
    for (i, (name, ty, default_pg)) in columns.iter().enumerate() {
        t.pre.push(format!(
            "INSERT OR REPLACE INTO __mycelium_columns (table_name, column_name, ordinal, type_oid, typmod, default_pg) VALUES ({}, {}, {}, {}, {}, {})",
            quote_literal(table),
            quote_literal(name),
            first_ordinal + i,
            ty.ty.oid(),
            ty.typmod,
            default_pg.as_deref().map(quote_literal).unwrap_or_else(|| "NULL".to_owned()),
        ));
    }
}

pub(super) fn create_table(ct: &mut CreateTable, schema: &Schema) -> Result<Translation, DbError> {
    if ct.temporary {
        return Err(unsupported("temporary tables")
            .with_hint("Statements of one session may run on different SQLite connections."));
    }
    if ct.query.is_some() {
        return Err(unsupported("CREATE TABLE ... AS"));
    }
    if ct.like.is_some()
        || ct.inherits.is_some()
        || ct.partition_of.is_some()
        || ct.partition_by.is_some()
    {
        return Err(unsupported(
            "CREATE TABLE with LIKE, INHERITS or partitions",
        ));
    }
    let name = table_name(&ct.name)?;
    if name.contains('.') {
        return Err(DbError::new(
            "42501",
            format!("permission denied to create \"{name}\""),
        ));
    }
    if schema.table(&name).is_some() {
        if ct.if_not_exists {
            return Ok(nothing_to_do("CREATE TABLE"));
        }
        return Err(DbError::new(
            "42P07",
            format!("relation \"{name}\" already exists"),
        ));
    }
    let mut t = ddl("CREATE TABLE");

    // First pass: names and types, which CHECK constraints refer to.
    let mut typed: Vec<(String, Ty)> = Vec::new();
    for column in &ct.columns {
        let ty = if is_serial(column) {
            let (ty, _) = PgType::parse_sql_name(&column.data_type.to_string())
                .ok_or_else(|| unsupported(format!("type {}", column.data_type)))?;
            Ty::of(ty)
        } else {
            super::syntax::column_type(&column.data_type)?
        };
        typed.push((ident_name(&column.name), ty));
    }

    let mut primary_key: Vec<String> = Vec::new();
    let mut pk_name: Option<String> = None;
    let mut uniques: Vec<(Option<String>, Vec<String>)> = Vec::new();
    let mut checks: Vec<(Option<String>, Option<String>, Expr)> = Vec::new();
    let mut fks: Vec<Fk> = Vec::new();
    for column in &ct.columns {
        let col = ident_name(&column.name);
        for option in &column.options {
            match &option.option {
                ColumnOption::PrimaryKey(_) => {
                    if !primary_key.is_empty() {
                        return Err(DbError::new(
                            "42P16",
                            format!("multiple primary keys for table \"{name}\" are not allowed"),
                        ));
                    }
                    primary_key = vec![col.clone()];
                    pk_name = option.name.as_ref().map(ident_name);
                }
                ColumnOption::Unique(_) => {
                    uniques.push((option.name.as_ref().map(ident_name), vec![col.clone()]));
                }
                ColumnOption::Check(check) => {
                    checks.push((
                        option.name.as_ref().map(ident_name),
                        Some(col.clone()),
                        (*check.expr).clone(),
                    ));
                }
                ColumnOption::ForeignKey(fk) => fks.push(Fk {
                    columns: vec![col.clone()],
                    table: table_name(&fk.foreign_table)?,
                    referred: fk.referred_columns.iter().map(ident_name).collect(),
                    on_delete: fk.on_delete,
                    on_update: fk.on_update,
                }),
                _ => {}
            }
        }
    }
    for constraint in &ct.constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) => {
                if !primary_key.is_empty() {
                    return Err(DbError::new(
                        "42P16",
                        format!("multiple primary keys for table \"{name}\" are not allowed"),
                    ));
                }
                primary_key = index_column_names(&pk.columns)?;
                pk_name = pk.name.as_ref().map(ident_name);
            }
            TableConstraint::Unique(u) => {
                uniques.push((
                    u.name.as_ref().map(ident_name),
                    index_column_names(&u.columns)?,
                ));
            }
            TableConstraint::Check(c) => {
                checks.push((c.name.as_ref().map(ident_name), None, (*c.expr).clone()));
            }
            TableConstraint::ForeignKey(fk) => fks.push(Fk {
                columns: fk.columns.iter().map(ident_name).collect(),
                table: table_name(&fk.foreign_table)?,
                referred: fk.referred_columns.iter().map(ident_name).collect(),
                on_delete: fk.on_delete,
                on_update: fk.on_update,
            }),
            other => return Err(unsupported(format!("table constraint {other}"))),
        }
    }
    for pk_col in &primary_key {
        if !typed.iter().any(|(n, _)| n == pk_col) {
            return Err(DbError::new(
                "42703",
                format!("column \"{pk_col}\" named in key does not exist"),
            ));
        }
    }

    let mut defs = Vec::new();
    let mut catalog = Vec::new();
    for (column, (col, ty)) in ct.columns.iter().zip(&typed) {
        let serial = is_serial(column);
        let single_pk = primary_key.len() == 1 && &primary_key[0] == col;
        let mut def = format!("{} {}", quote_ident(col), sqlite_decl(ty.ty));
        if single_pk {
            def.push_str(" PRIMARY KEY");
            if serial {
                // Sequences never hand out a value twice; a plain rowid reuses the largest.
                def.push_str(" AUTOINCREMENT");
            }
        } else if serial {
            // Any other serial draws from an emulated sequence (see `functions`).
            def.push_str(&format!(
                " DEFAULT (__pg_nextval('{}'))",
                sequence_name(&name, col).replace('\'', "''")
            ));
        }
        let mut not_null = single_pk || primary_key.contains(col) || serial;
        let mut default_pg = None;
        for option in &column.options {
            match &option.option {
                ColumnOption::NotNull => not_null = true,
                ColumnOption::Default(e) => {
                    default_pg = Some(e.to_string());
                    def.push_str(&format!(" DEFAULT ({})", default_sql(e, *ty, schema)?));
                }
                ColumnOption::Generated { .. } | ColumnOption::Identity(_) => {
                    return Err(unsupported("generated and identity columns")
                        .with_hint("Use serial or bigserial."));
                }
                _ => {}
            }
        }
        if serial {
            default_pg = Some(format!(
                "nextval('{}'::regclass)",
                sequence_name(&name, col)
            ));
        }
        if not_null {
            def.push_str(" NOT NULL");
        }
        defs.push(def);
        catalog.push((col.clone(), *ty, default_pg));
    }
    if primary_key.len() > 1 {
        defs.push(format!("PRIMARY KEY ({})", column_list(&primary_key)));
    }
    if primary_key.is_empty() {
        defs.push(format!(
            "{} INTEGER PRIMARY KEY",
            quote_ident(crate::catalog::HIDDEN_ROWID)
        ));
    }
    let mut check_names: Vec<String> = Vec::new();
    for (given, column, e) in &checks {
        let base = match (given, column) {
            (Some(n), _) => n.clone(),
            (None, Some(c)) => format!("{name}_{c}_check"),
            // Postgres names a table constraint after the one column it references.
            (None, None) => match single_column(e, &typed) {
                Some(c) => format!("{name}_{c}_check"),
                None => format!("{name}_check"),
            },
        };
        let mut check_name = base.clone();
        let mut n = 1;
        while check_names.contains(&check_name) {
            check_name = format!("{base}{n}");
            n += 1;
        }
        check_names.push(check_name.clone());
        defs.push(format!(
            "CONSTRAINT {} CHECK ({})",
            quote_ident(&check_name),
            check_sql(e, &name, &typed, schema)?
        ));
    }
    for fk in &fks {
        let referred = if fk.referred.is_empty() {
            if fk.table == name {
                primary_key.clone()
            } else {
                schema
                    .table(&fk.table)
                    .ok_or_else(|| {
                        DbError::new("42P01", format!("relation \"{}\" does not exist", fk.table))
                    })?
                    .primary_key
                    .clone()
            }
        } else {
            fk.referred.clone()
        };
        if fk.table != name && schema.table(&fk.table).is_none() {
            return Err(DbError::new(
                "42P01",
                format!("relation \"{}\" does not exist", fk.table),
            ));
        }
        defs.push(format!(
            "FOREIGN KEY ({}) REFERENCES {} ({}){}{}",
            column_list(&fk.columns),
            quote_ident(&fk.table),
            column_list(&referred),
            referential(&fk.on_delete, "ON DELETE"),
            referential(&fk.on_update, "ON UPDATE"),
        ));
    }
    let options = match &ct.table_options {
        CreateTableOptions::With(opts) => Some(
            opts.iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    };

    let if_not_exists = if ct.if_not_exists {
        "IF NOT EXISTS "
    } else {
        ""
    };
    t.pre.push(format!(
        "CREATE TABLE {if_not_exists}{} ({})",
        quote_ident(&name),
        defs.join(", ")
    ));
    for (given, cols) in &uniques {
        let index = given
            .clone()
            .unwrap_or_else(|| format!("{name}_{}_key", cols.join("_")));
        t.pre.push(format!(
            "CREATE UNIQUE INDEX {} ON {} ({})",
            quote_ident(&index),
            quote_ident(&name),
            column_list(cols)
        ));
    }
    t.pre.push(format!(
        "DELETE FROM __mycelium_columns WHERE table_name = {}",
        quote_literal(&name)
    ));
    t.pre.push(format!(
        "INSERT OR REPLACE INTO __mycelium_tables (name, kind, pk_name, options) VALUES ({}, 'r', {}, {})",
        quote_literal(&name),
        quote_literal(&pk_name.unwrap_or_else(|| format!("{name}_pkey"))),
        options.as_deref().map(quote_literal).unwrap_or_else(|| "NULL".to_owned()),
    ));
    catalog_rows(&mut t, &name, &catalog, 1);
    Ok(t)
}

pub(super) fn create_index(ci: &mut CreateIndex, schema: &Schema) -> Result<Translation, DbError> {
    let table = table_name(&ci.table_name)?;
    let info = schema
        .table(&table)
        .ok_or_else(|| DbError::new("42P01", format!("relation \"{table}\" does not exist")))?;
    if let Some(using) = &ci.using {
        let method = using.to_string().to_ascii_lowercase();
        if method != "btree" && method != "hash" {
            return Err(unsupported(format!("index method {method}")));
        }
    }
    let mut parts = Vec::new();
    let mut name_parts = Vec::new();
    for column in &ci.columns {
        let mut e = column.column.expr.clone();
        match &e {
            Expr::Identifier(i) => name_parts.push(ident_name(i)),
            _ => name_parts.push("expr".to_owned()),
        }
        let mut inf = Inferer::new(schema, &[]);
        inf.scopes
            .push(vec![super::infer::Rel::of_table(info, None)]);
        inf.expr(&mut e, None)?;
        expr::rewrite(&mut e, false)?;
        let mut part = e.to_string();
        if let Some(sqlparser::ast::OrderBySort::Desc) = &column.column.options.sort {
            part.push_str(" DESC");
        }
        parts.push(part);
    }
    let name = match &ci.name {
        Some(n) => object_parts(n).last().cloned().unwrap_or_default(),
        None => format!("{table}_{}_idx", name_parts.join("_")),
    };
    let mut sql = format!(
        "CREATE {}INDEX {}{} ON {} ({})",
        if ci.unique { "UNIQUE " } else { "" },
        if ci.if_not_exists {
            "IF NOT EXISTS "
        } else {
            ""
        },
        quote_ident(&name),
        quote_ident(&info.name),
        parts.join(", ")
    );
    if let Some(predicate) = &ci.predicate {
        let mut e = predicate.clone();
        let mut inf = Inferer::new(schema, &[]);
        inf.scopes
            .push(vec![super::infer::Rel::of_table(info, None)]);
        inf.expr(&mut e, Some(Ty::of(PgType::Bool)))?;
        expr::rewrite(&mut e, false)?;
        sql.push_str(&format!(" WHERE {e}"));
    }
    let mut t = ddl("CREATE INDEX");
    t.pre.push(sql);
    Ok(t)
}

pub(super) fn create_view(cv: &mut CreateView, schema: &Schema) -> Result<Translation, DbError> {
    if cv.materialized {
        return Err(unsupported("materialized views"));
    }
    let name = table_name(&cv.name)?;
    let mut inf = Inferer::new(schema, &[]);
    let mut cols = inf.query(&mut cv.query, None)?;
    if !inf.params.is_empty() {
        return Err(DbError::new("42P02", "there is no parameter $1"));
    }
    for (col, alias) in cols.iter_mut().zip(&cv.columns) {
        col.name = ident_name(&alias.name);
    }
    expr::rewrite(cv.query.as_mut(), false)?;
    let mut t = ddl("CREATE VIEW");
    if cv.or_replace {
        t.pre
            .push(format!("DROP VIEW IF EXISTS {}", quote_ident(&name)));
    }
    let column_names = if cv.columns.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            column_list(&cols.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
        )
    };
    t.pre.push(format!(
        "CREATE VIEW {}{}{column_names} AS {}",
        if cv.if_not_exists {
            "IF NOT EXISTS "
        } else {
            ""
        },
        quote_ident(&name),
        cv.query
    ));
    t.pre.push(format!(
        "DELETE FROM __mycelium_columns WHERE table_name = {}",
        quote_literal(&name)
    ));
    t.pre.push(format!(
        "INSERT OR REPLACE INTO __mycelium_tables (name, kind) VALUES ({}, 'v')",
        quote_literal(&name)
    ));
    let rows: Vec<_> = cols.iter().map(|c| (c.name.clone(), c.ty, None)).collect();
    catalog_rows(&mut t, &name, &rows, 1);
    Ok(t)
}

fn forget_table(t: &mut Translation, name: &str) {
    t.pre.push(format!(
        "DELETE FROM __mycelium_columns WHERE table_name = {}",
        quote_literal(name)
    ));
    t.pre.push(format!(
        "DELETE FROM __mycelium_tables WHERE name = {}",
        quote_literal(name)
    ));
}

pub(super) fn drop(
    object_type: ObjectType,
    if_exists: bool,
    names: &[ObjectName],
    schema: &Schema,
) -> Result<Translation, DbError> {
    let (tag, keyword) = match object_type {
        ObjectType::Table => ("DROP TABLE", "TABLE"),
        ObjectType::View => ("DROP VIEW", "VIEW"),
        ObjectType::Index => ("DROP INDEX", "INDEX"),
        ObjectType::Sequence if if_exists => {
            return Ok(nothing_to_do("DROP SEQUENCE"));
        }
        other => return Err(unsupported(format!("DROP {other}"))),
    };
    let mut t = ddl(tag);
    for name in names {
        let name = table_name(name)?;
        if object_type != ObjectType::Index {
            let exists = schema
                .table(&name)
                .is_some_and(|info| info.is_view == (object_type == ObjectType::View));
            if !exists {
                if if_exists {
                    continue;
                }
                let what = if object_type == ObjectType::View {
                    "view"
                } else {
                    "table"
                };
                return Err(DbError::new(
                    "42P01",
                    format!("{what} \"{name}\" does not exist"),
                ));
            }
            t.pre.push(format!("DROP {keyword} {}", quote_ident(&name)));
            forget_table(&mut t, &name);
        } else {
            t.pre.push(format!(
                "DROP INDEX {}{}",
                if if_exists { "IF EXISTS " } else { "" },
                quote_ident(&name)
            ));
        }
    }
    Ok(t)
}

/// What ALTER COLUMN changes in a column's SQLite definition.
enum ColumnChange {
    NotNull(bool),
    /// The default as SQLite text, or none.
    Default(Option<String>),
    /// A new SQLite declaration, and the SQLite expression of each row's converted value.
    Type {
        decl: &'static str,
        value: String,
    },
}

/// Whether PostgreSQL converts `from` to `to` unasked (an implicit or assignment cast):
/// ALTER COLUMN TYPE without USING refuses the others.
fn assignable(from: Ty, to: Ty) -> bool {
    use PgType::{
        Bpchar, Date, Float4, Float8, Int2, Int4, Int8, Name, Numeric, Text, Timestamp,
        Timestamptz, Varchar,
    };
    let string = |t: Ty| !t.is_carried_as_text() && matches!(t.ty, Text | Varchar | Bpchar | Name);
    let number = |t: PgType| matches!(t, Int2 | Int4 | Int8 | Numeric | Float4 | Float8);
    let temporal = |t: PgType| matches!(t, Date | Timestamp | Timestamptz);
    if from.is_carried_as_text() || to.is_carried_as_text() {
        return from.type_oid() == to.type_oid() || string(to);
    }
    from.ty == to.ty
        || string(to)
        || (number(from.ty) && number(to.ty))
        || (temporal(from.ty) && temporal(to.ty))
}

/// Each row's value of `column` as type `ty`, the SQLite expression ALTER COLUMN TYPE copies:
/// the USING expression, or the column itself, stored as an assignment stores it (22001 for
/// a string too long for varchar(n)).
fn converted(
    info: &TableInfo,
    column: &ColumnInfo,
    ty: Ty,
    using: Option<&Expr>,
    schema: &Schema,
) -> Result<String, DbError> {
    if using.is_none() && !assignable(column.ty, ty) {
        let target = ty.ty.format_type(ty.typmod);
        return Err(DbError::new(
            "42804",
            format!(
                "column \"{}\" cannot be cast automatically to type {target}",
                column.name
            ),
        )
        .with_hint(format!(
            "You might need to specify \"USING {}::{target}\".",
            column.name
        )));
    }
    let mut e = using
        .cloned()
        .unwrap_or_else(|| Expr::Identifier(Ident::with_quote('"', &column.name)));
    let mut inf = Inferer::new(schema, &[]);
    inf.scopes
        .push(vec![super::infer::Rel::of_table(info, None)]);
    let source = inf.expr(&mut e, Some(ty))?;
    if !inf.params.is_empty() {
        return Err(DbError::new("42P02", "there is no parameter $1"));
    }
    if let Some(source) = source {
        super::infer::assignment_cast(&mut e, source, ty)?;
    }
    expr::rewrite(&mut e, false)?;
    Ok(e.to_string())
}

/// Whether changing how SQLite stores `column` would change the values of a key: row clocks
/// and referencing rows hold keys by value, so a key column keeps its storage.
fn is_key(info: &TableInfo, column: &str, schema: &Schema) -> bool {
    let named = |cols: &[String]| cols.iter().any(|c| c.eq_ignore_ascii_case(column));
    named(&info.primary_key)
        || info.foreign_keys.iter().any(|fk| named(&fk.columns))
        || schema.tables.values().any(|t| {
            t.foreign_keys.iter().any(|fk| {
                fk.table.eq_ignore_ascii_case(&info.name)
                    && if fk.referred.is_empty() {
                        named(&info.primary_key)
                    } else {
                        named(&fk.referred)
                    }
            })
        })
}

/// The statements replacing `info` by a copy whose `column` is changed: SQLite's documented
/// rebuild (<https://www.sqlite.org/lang_altertable.html#otheralter>). They are one batch, so
/// a replica replays them as one DDL statement and a failure there leaves the table whole.
/// The rename runs in legacy mode: the current one would check, and fail on, the views that
/// name the table while it is gone, and the table's own references to itself must keep its
/// name. The rows of the copy are no change; the session extension leaves them out.
///
/// The copy skips rows the new definition refuses (OR IGNORE): none on the node that checked
/// the statement first; on a replica, rows its transaction changed before the ALTER, whose
/// new images come after the DDL in the entry and put them back.
fn rebuild(info: &TableInfo, column: &str, change: &ColumnChange) -> Result<String, DbError> {
    let unreadable = |e: String| {
        internal(format!(
            "cannot read the definition of table \"{}\": {e}",
            info.name
        ))
    };
    let mut statements =
        Parser::parse_sql(&SQLiteDialect {}, &info.sql).map_err(|e| unreadable(e.to_string()))?;
    let [Statement::CreateTable(ct)] = statements.as_mut_slice() else {
        return Err(unreadable("not one CREATE TABLE".to_owned()));
    };
    let def = ct
        .columns
        .iter_mut()
        .find(|c| c.name.value.eq_ignore_ascii_case(column))
        .ok_or_else(|| unreadable(format!("no column \"{column}\"")))?;
    match change {
        ColumnChange::NotNull(on) => {
            def.options
                .retain(|o| !matches!(o.option, ColumnOption::NotNull | ColumnOption::Null));
            if *on {
                def.options.push(ColumnOptionDef {
                    name: None,
                    option: ColumnOption::NotNull,
                });
            }
        }
        ColumnChange::Default(sql) => {
            def.options
                .retain(|o| !matches!(o.option, ColumnOption::Default(_)));
            if let Some(sql) = sql {
                // Already SQLite text: a bare identifier prints unchanged.
                def.options.push(ColumnOptionDef {
                    name: None,
                    option: ColumnOption::Default(Expr::Identifier(Ident::new(format!("({sql})")))),
                });
            }
        }
        ColumnChange::Type { decl, .. } => {
            def.data_type = DataType::Custom(ObjectName::from(vec![Ident::new(*decl)]), vec![]);
        }
    }
    let columns: Vec<String> = ct.columns.iter().map(|c| c.name.value.clone()).collect();
    let values: Vec<String> = columns
        .iter()
        .map(|c| match change {
            ColumnChange::Type { value, .. } if c.eq_ignore_ascii_case(column) => value.clone(),
            _ => quote_ident(c),
        })
        .collect();
    let autoincrement = ct
        .columns
        .iter()
        .flat_map(|c| &c.options)
        .any(|o| o.option.to_string().eq_ignore_ascii_case("AUTOINCREMENT"));
    ct.if_not_exists = false;
    ct.name = ObjectName::from(vec![Ident::with_quote('"', REBUILD_TABLE)]);
    let table = quote_ident(&info.name);
    let rebuilt = quote_ident(REBUILD_TABLE);
    let list = column_list(&columns);
    let mut batch = vec!["PRAGMA legacy_alter_table = ON".to_owned()];
    batch.push(statements[0].to_string());
    batch.push(format!(
        "INSERT OR IGNORE INTO {rebuilt} ({list}) SELECT {} FROM {table}",
        values.join(", ")
    ));
    if autoincrement {
        // The largest id ever handed out, not only the largest left: a sequence never
        // goes back.
        batch.push(format!(
            "DELETE FROM sqlite_sequence WHERE name = {}",
            quote_literal(REBUILD_TABLE)
        ));
        batch.push(format!(
            "INSERT INTO sqlite_sequence (name, seq) SELECT {}, seq FROM sqlite_sequence WHERE name = {}",
            quote_literal(REBUILD_TABLE),
            quote_literal(&info.name)
        ));
    }
    batch.push(format!("DROP TABLE {table}"));
    batch.push(format!("ALTER TABLE {rebuilt} RENAME TO {table}"));
    batch.extend(info.indexes.iter().filter_map(|i| i.sql.clone()));
    batch.push("PRAGMA legacy_alter_table = OFF".to_owned());
    Ok(batch.join(";\n"))
}

/// `ALTER TABLE ... ALTER COLUMN`: SET/DROP NOT NULL, SET/DROP DEFAULT and [SET DATA] TYPE.
fn alter_column(
    t: &mut Translation,
    info: &TableInfo,
    column_name: &Ident,
    op: &AlterColumnOperation,
    schema: &Schema,
) -> Result<(), DbError> {
    let col = ident_name(column_name);
    let column = info.column(&col).ok_or_else(|| {
        DbError::new(
            "42703",
            format!(
                "column \"{col}\" of relation \"{}\" does not exist",
                info.name
            ),
        )
    })?;
    let table = quote_ident(&info.name);
    let target = quote_ident(&column.name);
    // The check, and the column's type and default afterwards.
    let (change, check, ty, default_pg) = match op {
        AlterColumnOperation::SetNotNull => {
            if column.not_null {
                return Ok(());
            }
            let message = format!(
                "column \"{}\" of relation \"{}\" contains null values",
                column.name, info.name
            );
            let check = format!(
                "SELECT __pg_raise('23502', {}) FROM {table} WHERE {target} IS NULL LIMIT 1",
                quote_literal(&message)
            );
            (
                ColumnChange::NotNull(true),
                Some(check),
                column.ty,
                column.default_pg.clone(),
            )
        }
        AlterColumnOperation::DropNotNull => {
            if info
                .primary_key
                .iter()
                .any(|k| k.eq_ignore_ascii_case(&column.name))
            {
                return Err(DbError::new(
                    "42P16",
                    format!("column \"{}\" is in a primary key", column.name),
                ));
            }
            if !column.not_null {
                return Ok(());
            }
            (
                ColumnChange::NotNull(false),
                None,
                column.ty,
                column.default_pg.clone(),
            )
        }
        AlterColumnOperation::SetDefault { value } => {
            let sql = default_sql(value, column.ty, schema)?;
            (
                ColumnChange::Default(Some(sql)),
                None,
                column.ty,
                Some(value.to_string()),
            )
        }
        AlterColumnOperation::DropDefault => {
            if column.default_sql.is_none() && column.default_pg.is_none() {
                return Ok(());
            }
            (ColumnChange::Default(None), None, column.ty, None)
        }
        AlterColumnOperation::SetDataType {
            data_type, using, ..
        } => {
            let ty = super::syntax::column_type(data_type)?;
            let decl = sqlite_decl(ty.ty);
            if decl != sqlite_decl(column.ty.ty) && is_key(info, &column.name, schema) {
                return Err(unsupported(format!(
                    "changing the storage of key column \"{}\" to {}",
                    column.name,
                    ty.ty.format_type(ty.typmod)
                )));
            }
            let value = converted(info, column, ty, using.as_ref(), schema)?;
            (
                ColumnChange::Type { decl, value },
                None,
                ty,
                column.default_pg.clone(),
            )
        }
        other => return Err(unsupported(format!("ALTER COLUMN ... {other}"))),
    };
    t.checks.extend(check);
    t.pre.push(rebuild(info, &column.name, &change)?);
    t.rebuild = true;
    // The whole row: a table created by a PostgreSQL primary's replicated DDL has none yet.
    catalog_rows(
        t,
        &info.name,
        &[(column.name.clone(), ty, default_pg)],
        usize::try_from(column.attnum).unwrap_or(1),
    );
    Ok(())
}

pub(super) fn alter_table(at: &mut AlterTable, schema: &Schema) -> Result<Translation, DbError> {
    let name = table_name(&at.name)?;
    let Some(info) = schema.table(&name) else {
        if at.if_exists {
            return Ok(nothing_to_do("ALTER TABLE"));
        }
        return Err(DbError::new(
            "42P01",
            format!("relation \"{name}\" does not exist"),
        ));
    };
    let mut t = ddl("ALTER TABLE");
    let table = quote_ident(&info.name);
    let alters_columns = at
        .operations
        .iter()
        .any(|op| matches!(op, AlterTableOperation::AlterColumn { .. }));
    if alters_columns && at.operations.len() > 1 {
        // Each rebuild starts from the definition the statement began with.
        return Err(
            unsupported("ALTER COLUMN together with other actions in one ALTER TABLE")
                .with_hint("Run each action as its own ALTER TABLE."),
        );
    }
    if alters_columns {
        t.replicated = Some(Statement::AlterTable(at.clone()).to_string());
    }
    for op in &at.operations {
        match op {
            AlterTableOperation::AlterColumn { column_name, op } => {
                alter_column(&mut t, info, column_name, op, schema)?;
            }
            AlterTableOperation::AddColumn {
                column_def,
                if_not_exists,
                ..
            } => {
                let col = ident_name(&column_def.name);
                if info.column(&col).is_some() {
                    if *if_not_exists {
                        continue;
                    }
                    return Err(DbError::new(
                        "42701",
                        format!("column \"{col}\" of relation \"{name}\" already exists"),
                    ));
                }
                if is_serial(column_def) {
                    return Err(unsupported("adding a serial column"));
                }
                let ty = super::syntax::column_type(&column_def.data_type)?;
                let mut def = format!("{} {}", quote_ident(&col), sqlite_decl(ty.ty));
                let mut default_pg = None;
                let mut unique = false;
                for option in &column_def.options {
                    match &option.option {
                        ColumnOption::NotNull => def.push_str(" NOT NULL"),
                        ColumnOption::Null => {}
                        ColumnOption::Default(e) => {
                            default_pg = Some(e.to_string());
                            def.push_str(&format!(" DEFAULT ({})", default_sql(e, ty, schema)?));
                        }
                        ColumnOption::Unique(_) => unique = true,
                        ColumnOption::ForeignKey(fk) => {
                            let referred: Vec<String> =
                                fk.referred_columns.iter().map(ident_name).collect();
                            def.push_str(&format!(
                                " REFERENCES {}{}{}",
                                quote_ident(&table_name(&fk.foreign_table)?),
                                if referred.is_empty() {
                                    String::new()
                                } else {
                                    format!(" ({})", column_list(&referred))
                                },
                                referential(&fk.on_delete, "ON DELETE"),
                            ));
                        }
                        ColumnOption::Check(check) => {
                            let mut cols: Vec<(String, Ty)> = info
                                .columns
                                .iter()
                                .map(|c| (c.name.clone(), c.ty))
                                .collect();
                            cols.push((col.clone(), ty));
                            def.push_str(&format!(
                                " CHECK ({})",
                                check_sql(&check.expr, &name, &cols, schema)?
                            ));
                        }
                        other => return Err(unsupported(format!("ADD COLUMN ... {other}"))),
                    }
                }
                t.pre.push(format!("ALTER TABLE {table} ADD COLUMN {def}"));
                if unique {
                    t.pre.push(format!(
                        "CREATE UNIQUE INDEX {} ON {table} ({})",
                        quote_ident(&format!("{name}_{col}_key")),
                        quote_ident(&col)
                    ));
                }
                catalog_rows(
                    &mut t,
                    &info.name,
                    &[(col, ty, default_pg)],
                    info.columns.len() + 1,
                );
            }
            AlterTableOperation::AddConstraint { constraint, .. } => match constraint {
                TableConstraint::PrimaryKey(pk) => {
                    if !info.primary_key.is_empty() {
                        return Err(DbError::new(
                            "42P16",
                            format!("multiple primary keys for table \"{name}\" are not allowed"),
                        ));
                    }
                    let cols = index_column_names(&pk.columns)?;
                    let index = pk
                        .name
                        .as_ref()
                        .map(ident_name)
                        .unwrap_or_else(|| format!("{name}_pkey"));
                    t.pre.push(format!(
                        "CREATE UNIQUE INDEX {} ON {table} ({})",
                        quote_ident(&index),
                        column_list(&cols)
                    ));
                    t.pre.push(format!(
                        "UPDATE __mycelium_tables SET pk_name = {} WHERE name = {}",
                        quote_literal(&index),
                        quote_literal(&info.name)
                    ));
                }
                TableConstraint::Unique(u) => {
                    let cols = index_column_names(&u.columns)?;
                    let index = u
                        .name
                        .as_ref()
                        .map(ident_name)
                        .unwrap_or_else(|| format!("{name}_{}_key", cols.join("_")));
                    t.pre.push(format!(
                        "CREATE UNIQUE INDEX {} ON {table} ({})",
                        quote_ident(&index),
                        column_list(&cols)
                    ));
                }
                // SQLite cannot add a foreign key to an existing table. Accepting it without
                // enforcement is what pgbench and ORMs need; documented in lib.rs.
                TableConstraint::ForeignKey(_) => {}
                other => return Err(unsupported(format!("ALTER TABLE ADD {other}"))),
            },
            AlterTableOperation::DropColumn {
                column_names,
                if_exists,
                ..
            } => {
                for column in column_names {
                    let col = ident_name(column);
                    if info.column(&col).is_none() {
                        if *if_exists {
                            continue;
                        }
                        return Err(DbError::new(
                            "42703",
                            format!("column \"{col}\" of relation \"{name}\" does not exist"),
                        ));
                    }
                    t.pre.push(format!(
                        "ALTER TABLE {table} DROP COLUMN {}",
                        quote_ident(&col)
                    ));
                    t.pre.push(format!(
                        "DELETE FROM __mycelium_columns WHERE table_name = {} AND column_name = {}",
                        quote_literal(&info.name),
                        quote_literal(&col)
                    ));
                }
            }
            AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => {
                let old = ident_name(old_column_name);
                let new = ident_name(new_column_name);
                t.pre.push(format!(
                    "ALTER TABLE {table} RENAME COLUMN {} TO {}",
                    quote_ident(&old),
                    quote_ident(&new)
                ));
                t.pre.push(format!(
                    "UPDATE __mycelium_columns SET column_name = {} WHERE table_name = {} AND column_name = {}",
                    quote_literal(&new),
                    quote_literal(&info.name),
                    quote_literal(&old)
                ));
            }
            AlterTableOperation::RenameTable { table_name: new } => {
                let new = match new {
                    sqlparser::ast::RenameTableNameKind::As(n)
                    | sqlparser::ast::RenameTableNameKind::To(n) => table_name(n)?,
                };
                t.pre.push(format!(
                    "ALTER TABLE {table} RENAME TO {}",
                    quote_ident(&new)
                ));
                t.pre.push(format!(
                    "UPDATE __mycelium_columns SET table_name = {} WHERE table_name = {}",
                    quote_literal(&new),
                    quote_literal(&info.name)
                ));
                t.pre.push(format!(
                    "UPDATE __mycelium_tables SET name = {} WHERE name = {}",
                    quote_literal(&new),
                    quote_literal(&info.name)
                ));
            }
            AlterTableOperation::DropConstraint {
                name: constraint,
                if_exists,
                ..
            } => {
                let constraint = ident_name(constraint);
                if info.indexes.iter().any(|i| i.name == constraint) {
                    t.pre
                        .push(format!("DROP INDEX {}", quote_ident(&constraint)));
                } else if !*if_exists {
                    return Err(unsupported(format!(
                        "dropping constraint \"{constraint}\" (only unique and added primary keys can be dropped)"
                    )));
                }
            }
            other => return Err(unsupported(format!("ALTER TABLE {other}"))),
        }
    }
    Ok(t)
}

pub(super) fn truncate(tr: &Truncate, schema: &Schema) -> Result<Translation, DbError> {
    let mut t = ddl("TRUNCATE TABLE");
    // Rows only: no catalog change.
    t.ddl = false;
    for target in &tr.table_names {
        let name = table_name(&target.name)?;
        if schema.table(&name).is_none() {
            return Err(DbError::new(
                "42P01",
                format!("relation \"{name}\" does not exist"),
            ));
        }
        t.pre.push(format!("DELETE FROM {}", quote_ident(&name)));
    }
    Ok(t)
}
