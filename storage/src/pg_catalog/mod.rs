//! A read-only imitation of Postgres's catalog for clients that introspect (psql's `\dt` and
//! `\d`, drivers, ORMs such as SQLAlchemy's `has_table`).
//!
//! Every connection attaches two in-memory schemas, `pg_catalog` and `information_schema`,
//! whose tables have Postgres's names and the columns clients read. A worker refills them
//! from its schema snapshot before running a statement that reads them, when the snapshot
//! changed since the last fill. OIDs are stable functions of the schema: tables use their
//! catalog OID, indexes and constraints are derived from it. Primary keys, unique constraints
//! and foreign keys have `pg_constraint` rows named as Postgres names them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use mycelium_protocol::types::{PgType, SqlValue};
use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;

use crate::catalog::{ColumnInfo, IndexInfo, Schema, TableInfo, Ty, quote_ident};
use crate::functions::FunctionState;
use crate::functions::array::ArrayType;

mod constraints;
mod rows;
mod tables;

pub(crate) use constraints::quote_ident as quote_identifier;

use rows::rows;
use tables::{ARRAY_COLUMNS, TABLES};

const PG_CATALOG_NS: u32 = 11;
const PUBLIC_NS: u32 = 2200;
const INFORMATION_SCHEMA_NS: u32 = 13_000;
const OWNER: u32 = 10;
const BTREE: u32 = 403;
const OWNER_NAME: &str = "mycelium";

/// OIDs of built-in relations clients cast with `'pg_class'::regclass`, and OIDs written as
/// digits (`'16385'::regclass`, as psql's `\d` writes them; Postgres takes them as they are).
pub fn builtin_oid(name: &str) -> Option<u32> {
    if let Ok(oid) = name.parse() {
        return Some(oid);
    }
    let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
    match name {
        "pg_class" => Some(1259),
        "pg_type" => Some(1247),
        "pg_attribute" => Some(1249),
        "pg_proc" => Some(1255),
        "pg_namespace" => Some(2615),
        "pg_constraint" => Some(2606),
        "pg_index" => Some(2610),
        "pg_database" => Some(1262),
        _ => None,
    }
}

/// The name of a built-in relation by OID (`builtin_oid` reversed).
pub fn builtin_name(oid: u32) -> Option<&'static str> {
    [
        "pg_class",
        "pg_type",
        "pg_attribute",
        "pg_proc",
        "pg_namespace",
        "pg_constraint",
        "pg_index",
        "pg_database",
    ]
    .into_iter()
    .find(|name| builtin_oid(name) == Some(oid))
}

/// The type of an emulated column: its spec's, or an array type from `ARRAY_COLUMNS`.
fn column_type(table: &str, column: &str, ty: PgType) -> Ty {
    ARRAY_COLUMNS
        .iter()
        .find(|(t, c, _)| *t == table && *c == column)
        .and_then(|(_, _, oid)| ArrayType::from_oid(*oid))
        .map_or(Ty::of(ty), Ty::array)
}

fn spec_oid(index: usize) -> u32 {
    12_000 + index as u32
}

/// The emulated relations as the type inference sees them, keyed as clients name them.
pub fn system_tables() -> &'static HashMap<String, Arc<TableInfo>> {
    static TABLES_INFO: OnceLock<HashMap<String, Arc<TableInfo>>> = OnceLock::new();
    TABLES_INFO.get_or_init(|| {
        let mut map = HashMap::new();
        for (i, (schema, name, columns)) in TABLES.iter().enumerate() {
            let info = Arc::new(TableInfo {
                name: (*name).to_owned(),
                oid: builtin_oid(name).unwrap_or_else(|| spec_oid(i)),
                is_view: true,
                columns: columns
                    .iter()
                    .enumerate()
                    .map(|(n, (col, ty))| ColumnInfo {
                        name: (*col).to_owned(),
                        ty: column_type(name, col, *ty),
                        attnum: n as i16 + 1,
                        not_null: false,
                        default_sql: None,
                        default_pg: None,
                    })
                    .collect(),
                primary_key: vec![],
                pk_name: String::new(),
                indexes: vec![],
                foreign_keys: vec![],
                hidden_rowid: false,
                sql: String::new(),
            });
            map.insert(format!("{schema}.{name}"), info.clone());
            if *schema == "pg_catalog" {
                map.insert((*name).to_owned(), info);
            }
        }
        map
    })
}

/// Attaches the two in-memory schemas and creates their tables.
pub fn attach(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("ATTACH DATABASE ':memory:' AS pg_catalog; ATTACH DATABASE ':memory:' AS information_schema;")?;
    for (schema, name, columns) in TABLES {
        let cols: Vec<String> = columns
            .iter()
            .map(|(c, ty)| format!("{} {}", quote_ident(c), crate::catalog::sqlite_decl(*ty)))
            .collect();
        conn.execute_batch(&format!(
            "CREATE TABLE {schema}.{} ({})",
            quote_ident(name),
            cols.join(", ")
        ))?;
    }
    Ok(())
}

fn index_oid(table: &TableInfo, i: usize) -> u32 {
    2_000_000 + table.oid.wrapping_mul(64) + i as u32
}

fn constraint_oid(table: &TableInfo, i: usize) -> u32 {
    3_000_000 + table.oid.wrapping_mul(64) + i as u32
}

fn foreign_key_oid(table: &TableInfo, n: usize) -> u32 {
    5_000_000 + table.oid.wrapping_mul(64) + n as u32
}

fn sequence_oid(table: &TableInfo, attnum: i16) -> u32 {
    7_000_000 + table.oid.wrapping_mul(1024) + attnum as u32
}

fn default_oid(table: &TableInfo, attnum: i16) -> u32 {
    4_000_000 + table.oid.wrapping_mul(1024) + attnum as u32
}

fn index_def(table: &TableInfo, index: &IndexInfo) -> String {
    format!(
        "CREATE {}INDEX {} ON public.{} USING btree ({})",
        if index.unique { "UNIQUE " } else { "" },
        index.name,
        table.name,
        index.columns.join(", ")
    )
}

/// Whether an index is backed by a constraint (primary key or `UNIQUE` in the table).
fn index_constraint(table: &TableInfo, index: &IndexInfo) -> Option<char> {
    if index.primary || (index.name == table.pk_name && index.unique) {
        Some('p')
    } else if index.unique && index.name.ends_with("_key") {
        Some('u')
    } else {
        None
    }
}

/// Refills the attached catalog tables from `schema`.
pub fn fill(conn: &Connection, schema: &Schema) -> rusqlite::Result<()> {
    let rows = rows(schema);
    for (schema_name, name, columns) in TABLES {
        conn.execute(
            &format!("DELETE FROM {schema_name}.{}", quote_ident(name)),
            [],
        )?;
        let Some(table_rows) = rows.get(name) else {
            continue;
        };
        let placeholders: Vec<String> = (1..=columns.len()).map(|n| format!("?{n}")).collect();
        let mut stmt = conn.prepare_cached(&format!(
            "INSERT INTO {schema_name}.{} VALUES ({})",
            quote_ident(name),
            placeholders.join(", ")
        ))?;
        for row in table_rows {
            let params: Vec<rusqlite::types::Value> = row
                .iter()
                .map(|v| match v {
                    SqlValue::Null => rusqlite::types::Value::Null,
                    SqlValue::Int(n) => rusqlite::types::Value::Integer(*n),
                    SqlValue::Float(f) => rusqlite::types::Value::Real(*f),
                    SqlValue::Text(s) => rusqlite::types::Value::Text(s.clone()),
                    SqlValue::Bytes(b) => rusqlite::types::Value::Blob(b.clone()),
                })
                .collect();
            stmt.execute(rusqlite::params_from_iter(params))?;
        }
    }
    Ok(())
}

fn schema_of(state: &FunctionState) -> Arc<Schema> {
    state.schema.lock().map(|s| s.clone()).unwrap_or_default()
}

fn oid_arg(ctx: &rusqlite::functions::Context<'_>, n: usize) -> Option<u32> {
    match ctx.get_raw(n) {
        ValueRef::Integer(v) => u32::try_from(v).ok(),
        ValueRef::Text(t) => std::str::from_utf8(t).ok()?.parse().ok(),
        _ => None,
    }
}

/// Finds the index (and its table) with a derived OID.
fn find_index(schema: &Schema, oid: u32, constraint: bool) -> Option<(Arc<TableInfo>, IndexInfo)> {
    schema.tables.values().find_map(|table| {
        table.indexes.iter().enumerate().find_map(|(n, index)| {
            let candidate = if constraint {
                constraint_oid(table, n)
            } else {
                index_oid(table, n)
            };
            (candidate == oid).then(|| (table.clone(), index.clone()))
        })
    })
}

/// `pg_get_constraintdef` of a primary key, unique constraint or foreign key.
fn constraint_def(schema: &Schema, oid: u32) -> Option<String> {
    if let Some((table, index)) = find_index(schema, oid, true) {
        return Some(constraints::index_constraint_def(&table, &index));
    }
    schema.tables.values().find_map(|table| {
        let (_, key) = table
            .foreign_keys
            .iter()
            .enumerate()
            .find(|(n, _)| foreign_key_oid(table, *n) == oid)?;
        Some(constraints::ResolvedKey::new(schema, table, key).definition())
    })
}

/// `pg_get_serial_sequence`: the sequence a serial column draws from, schema-qualified.
fn serial_sequence(schema: &Schema, table: &str, column: &str) -> Option<String> {
    let unquote = |name: &str| match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.to_owned(),
        None => name.to_ascii_lowercase(),
    };
    let table = table.trim();
    let table = unquote(table.strip_prefix("public.").unwrap_or(table));
    let info = schema.tables.get(&table)?;
    let default = info
        .column(&unquote(column.trim()))?
        .default_pg
        .as_deref()?;
    Some(format!("public.{}", sequence_name(default)?))
}

/// The sequence a column default draws from: `nextval('t_id_seq'::regclass)` → `t_id_seq`,
/// and `nextval('public.t_id_seq'::regclass)` (as pg_dump writes it) too.
fn sequence_name(default: &str) -> Option<&str> {
    let name = default.strip_prefix("nextval('")?.split('\'').next()?;
    Some(name.strip_prefix("public.").unwrap_or(name))
}

pub fn register_functions(conn: &Connection, state: &FunctionState) -> rusqlite::Result<()> {
    let det = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("pg_table_is_visible", 1, det, |_| Ok(true))?;
    conn.create_scalar_function("pg_type_is_visible", 1, det, |_| Ok(true))?;
    conn.create_scalar_function("pg_function_is_visible", 1, det, |_| Ok(true))?;
    conn.create_scalar_function("pg_get_userbyid", 1, det, |_| Ok(OWNER_NAME))?;
    conn.create_scalar_function("pg_encoding_to_char", 1, det, |_| Ok("UTF8"))?;
    conn.create_scalar_function("pg_backend_pid", 0, det, |_| {
        Ok(i64::from(std::process::id()))
    })?;
    for n in [1, 2] {
        conn.create_scalar_function("obj_description", n, det, |_| Ok(None::<String>))?;
        conn.create_scalar_function("col_description", n, det, |_| Ok(None::<String>))?;
        conn.create_scalar_function("shobj_description", n, det, |_| Ok(None::<String>))?;
    }
    for n in [2, 3] {
        conn.create_scalar_function("pg_get_expr", n, det, |ctx| ctx.get::<Option<String>>(0))?;
        conn.create_scalar_function("has_table_privilege", n, det, |_| Ok(true))?;
        conn.create_scalar_function("has_schema_privilege", n, det, |_| Ok(true))?;
        // Privileges are the proxy's business (it checks every statement before a node sees
        // it): on a node, whoever asks may.
        conn.create_scalar_function("has_database_privilege", n, det, |_| Ok(true))?;
        conn.create_scalar_function("pg_has_role", n, det, |_| Ok(true))?;
    }
    // No user-defined functions live on a SQLite node: these describe none.
    for name in [
        "pg_get_function_result",
        "pg_get_function_arguments",
        "pg_get_function_identity_arguments",
    ] {
        conn.create_scalar_function(name, 1, det, |_| Ok(None::<String>))?;
    }
    conn.create_scalar_function("array_to_string", -1, det, |ctx| {
        ctx.get::<Option<String>>(0)
    })?;
    conn.create_scalar_function("pg_get_statisticsobjdef_columns", 1, det, |_| {
        Ok(None::<String>)
    })?;
    conn.create_scalar_function("pg_relation_is_publishable", 1, det, |_| Ok(false))?;
    // A set-returning function in Postgres; no table here is a partition, so the one row it
    // returns is the relation itself (psql's `\d` lists the keys referencing a table with it).
    conn.create_scalar_function("pg_partition_ancestors", 1, det, |ctx| {
        Ok(oid_arg(ctx, 0).map(i64::from))
    })?;
    conn.create_scalar_function("pg_get_viewdef", -1, det, |_| Ok(None::<String>))?;
    // `pg_trigger` is empty: psql's `\d` names the function for tables with foreign keys.
    conn.create_scalar_function("pg_get_triggerdef", -1, det, |_| Ok(None::<String>))?;
    conn.create_scalar_function("quote_ident", 1, det, |ctx| {
        let s: Option<String> = ctx.get(0)?;
        Ok(s.map(|s| constraints::quote_ident(&s)))
    })?;
    conn.create_scalar_function("format_type", 2, det, |ctx| {
        let Some(oid) = oid_arg(ctx, 0) else {
            return Ok(None);
        };
        let typmod = ctx.get::<Option<i32>>(1)?.unwrap_or(-1);
        Ok(Some(
            match (PgType::from_oid(oid), ArrayType::from_oid(oid)) {
                (Some(ty), _) => ty.format_type(typmod),
                (None, Some(array)) => array.name(),
                (None, None) if oid == crate::catalog::INTERVAL_OID => "interval".to_owned(),
                (None, None) => "???".to_owned(),
            },
        ))
    })?;
    let s = state.clone();
    conn.create_scalar_function(
        "pg_get_indexdef",
        -1,
        FunctionFlags::SQLITE_UTF8,
        move |ctx| {
            let Some(oid) = oid_arg(ctx, 0) else {
                return Ok(None);
            };
            Ok(find_index(&schema_of(&s), oid, false)
                .map(|(table, index)| index_def(&table, &index)))
        },
    )?;
    let s = state.clone();
    conn.create_scalar_function(
        "pg_get_constraintdef",
        -1,
        FunctionFlags::SQLITE_UTF8,
        move |ctx| {
            let Some(oid) = oid_arg(ctx, 0) else {
                return Ok(None);
            };
            Ok(constraint_def(&schema_of(&s), oid))
        },
    )?;
    let s = state.clone();
    conn.create_scalar_function("pg_get_serial_sequence", 2, det, move |ctx| {
        let (Some(table), Some(column)) =
            (ctx.get::<Option<String>>(0)?, ctx.get::<Option<String>>(1)?)
        else {
            return Ok(None);
        };
        Ok(serial_sequence(&schema_of(&s), &table, &column))
    })?;
    let s = state.clone();
    conn.create_scalar_function(
        "__pg_regclass_name",
        1,
        FunctionFlags::SQLITE_UTF8,
        move |ctx| {
            let Some(oid) = oid_arg(ctx, 0) else {
                return Ok(None);
            };
            let schema = schema_of(&s);
            if let Some(table) = schema.table_by_oid(oid) {
                return Ok(Some(table.name.clone()));
            }
            if let Some((_, index)) = find_index(&schema, oid, false) {
                return Ok(Some(index.name));
            }
            if let Some(name) = builtin_name(oid) {
                return Ok(Some(name.to_owned()));
            }
            Ok(Some(oid.to_string()))
        },
    )?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_row_matches_its_table_width() {
        let schema = Schema::default();
        let rows = rows(&schema);
        for (_, name, columns) in TABLES {
            for row in rows.get(name).into_iter().flatten() {
                assert_eq!(row.len(), columns.len(), "{name}");
            }
        }
    }
    #[test]
    fn a_default_names_its_sequence_without_the_schema() {
        assert_eq!(
            sequence_name("nextval('t_id_seq'::regclass)"),
            Some("t_id_seq")
        );
        assert_eq!(
            sequence_name("nextval('public.t_id_seq'::REGCLASS)"),
            Some("t_id_seq")
        );
        assert_eq!(sequence_name("now()"), None);
    }
}
