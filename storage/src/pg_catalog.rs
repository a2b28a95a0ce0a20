//! A read-only imitation of Postgres's catalog for clients that introspect (psql's `\dt` and
//! `\d`, drivers, ORMs such as SQLAlchemy's `has_table`).
//!
//! Every connection attaches two in-memory schemas, `pg_catalog` and `information_schema`,
//! whose tables have Postgres's names and the columns clients read. A worker refills them
//! from its schema snapshot before running a statement that reads them, when the snapshot
//! changed since the last fill. OIDs are stable functions of the schema: tables use their
//! catalog OID, indexes and constraints are derived from it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use mycelium_protocol::types::{PgType, SqlValue};
use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;

use crate::catalog::{ColumnInfo, IndexInfo, Schema, TableInfo, Ty, quote_ident};
use crate::functions::FunctionState;

const PG_CATALOG_NS: u32 = 11;
const PUBLIC_NS: u32 = 2200;
const INFORMATION_SCHEMA_NS: u32 = 13_000;
const OWNER: u32 = 10;
const BTREE: u32 = 403;
const OWNER_NAME: &str = "mycelium";

use PgType::{
    Bool as B, Char as C, Float4 as F4, Int2 as I2, Int4 as I4, Int8 as I8, Name as N, Oid as O,
    Text as T,
};

type Spec = (
    &'static str,
    &'static str,
    &'static [(&'static str, PgType)],
);

/// Every emulated relation: (schema, name, columns).
const TABLES: &[Spec] = &[
    (
        "pg_catalog",
        "pg_namespace",
        &[("oid", O), ("nspname", N), ("nspowner", O), ("nspacl", T)],
    ),
    (
        "pg_catalog",
        "pg_class",
        &[
            ("oid", O),
            ("relname", N),
            ("relnamespace", O),
            ("reltype", O),
            ("reloftype", O),
            ("relowner", O),
            ("relam", O),
            ("relfilenode", O),
            ("reltablespace", O),
            ("relpages", I4),
            ("reltuples", F4),
            ("relallvisible", I4),
            ("reltoastrelid", O),
            ("relhasindex", B),
            ("relisshared", B),
            ("relpersistence", C),
            ("relkind", C),
            ("relnatts", I2),
            ("relchecks", I2),
            ("relhasrules", B),
            ("relhastriggers", B),
            ("relhassubclass", B),
            ("relrowsecurity", B),
            ("relforcerowsecurity", B),
            ("relispopulated", B),
            ("relreplident", C),
            ("relispartition", B),
            ("relrewrite", O),
            ("relacl", T),
            ("reloptions", T),
            ("relpartbound", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_attribute",
        &[
            ("attrelid", O),
            ("attname", N),
            ("atttypid", O),
            ("attstattarget", I4),
            ("attlen", I2),
            ("attnum", I2),
            ("attndims", I4),
            ("atttypmod", I4),
            ("attbyval", B),
            ("attalign", C),
            ("attstorage", C),
            ("attnotnull", B),
            ("atthasdef", B),
            ("atthasmissing", B),
            ("attidentity", C),
            ("attgenerated", C),
            ("attisdropped", B),
            ("attislocal", B),
            ("attinhcount", I4),
            ("attcollation", O),
            ("attacl", T),
            ("attoptions", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_type",
        &[
            ("oid", O),
            ("typname", N),
            ("typnamespace", O),
            ("typowner", O),
            ("typlen", I2),
            ("typbyval", B),
            ("typtype", C),
            ("typcategory", C),
            ("typispreferred", B),
            ("typisdefined", B),
            ("typdelim", C),
            ("typrelid", O),
            ("typelem", O),
            ("typarray", O),
            ("typinput", T),
            ("typoutput", T),
            ("typreceive", T),
            ("typsend", T),
            ("typalign", C),
            ("typstorage", C),
            ("typnotnull", B),
            ("typbasetype", O),
            ("typtypmod", I4),
            ("typndims", I4),
            ("typcollation", O),
            ("typdefault", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_index",
        &[
            ("indexrelid", O),
            ("indrelid", O),
            ("indnatts", I2),
            ("indnkeyatts", I2),
            ("indisunique", B),
            ("indnullsnotdistinct", B),
            ("indisprimary", B),
            ("indisexclusion", B),
            ("indimmediate", B),
            ("indisclustered", B),
            ("indisvalid", B),
            ("indcheckxmin", B),
            ("indisready", B),
            ("indislive", B),
            ("indisreplident", B),
            ("indkey", T),
            ("indcollation", T),
            ("indclass", T),
            ("indoption", T),
            ("indexprs", T),
            ("indpred", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_constraint",
        &[
            ("oid", O),
            ("conname", N),
            ("connamespace", O),
            ("contype", C),
            ("condeferrable", B),
            ("condeferred", B),
            ("convalidated", B),
            ("conrelid", O),
            ("contypid", O),
            ("conindid", O),
            ("conparentid", O),
            ("confrelid", O),
            ("confupdtype", C),
            ("confdeltype", C),
            ("confmatchtype", C),
            ("conislocal", B),
            ("coninhcount", I4),
            ("connoinherit", B),
            ("conkey", T),
            ("confkey", T),
            ("conbin", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_attrdef",
        &[("oid", O), ("adrelid", O), ("adnum", I2), ("adbin", T)],
    ),
    (
        "pg_catalog",
        "pg_description",
        &[
            ("objoid", O),
            ("classoid", O),
            ("objsubid", I4),
            ("description", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_roles",
        &[
            ("oid", O),
            ("rolname", N),
            ("rolsuper", B),
            ("rolinherit", B),
            ("rolcreaterole", B),
            ("rolcreatedb", B),
            ("rolcanlogin", B),
            ("rolreplication", B),
            ("rolconnlimit", I4),
            ("rolpassword", T),
            ("rolbypassrls", B),
            ("rolconfig", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_user",
        &[
            ("usename", N),
            ("usesysid", O),
            ("usecreatedb", B),
            ("usesuper", B),
        ],
    ),
    (
        "pg_catalog",
        "pg_database",
        &[
            ("oid", O),
            ("datname", N),
            ("datdba", O),
            ("encoding", I4),
            ("datcollate", T),
            ("datctype", T),
            ("datistemplate", B),
            ("datallowconn", B),
            ("datconnlimit", I4),
            ("dattablespace", O),
            ("datacl", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_settings",
        &[
            ("name", T),
            ("setting", T),
            ("unit", T),
            ("category", T),
            ("short_desc", T),
            ("context", T),
            ("vartype", T),
            ("source", T),
            ("boot_val", T),
            ("reset_val", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_am",
        &[("oid", O), ("amname", N), ("amhandler", T), ("amtype", C)],
    ),
    (
        "pg_catalog",
        "pg_inherits",
        &[
            ("inhrelid", O),
            ("inhparent", O),
            ("inhseqno", I4),
            ("inhdetachpending", B),
        ],
    ),
    (
        "pg_catalog",
        "pg_collation",
        &[
            ("oid", O),
            ("collname", N),
            ("collnamespace", O),
            ("collowner", O),
            ("collprovider", C),
            ("collisdeterministic", B),
            ("collencoding", I4),
            ("collcollate", T),
            ("collctype", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_tables",
        &[
            ("schemaname", N),
            ("tablename", N),
            ("tableowner", N),
            ("tablespace", N),
            ("hasindexes", B),
            ("hasrules", B),
            ("hastriggers", B),
            ("rowsecurity", B),
        ],
    ),
    (
        "pg_catalog",
        "pg_views",
        &[
            ("schemaname", N),
            ("viewname", N),
            ("viewowner", N),
            ("definition", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_indexes",
        &[
            ("schemaname", N),
            ("tablename", N),
            ("indexname", N),
            ("tablespace", N),
            ("indexdef", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_policy",
        &[
            ("oid", O),
            ("polname", N),
            ("polrelid", O),
            ("polcmd", C),
            ("polpermissive", B),
            ("polroles", T),
            ("polqual", T),
            ("polwithcheck", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_statistic_ext",
        &[
            ("oid", O),
            ("stxrelid", O),
            ("stxname", N),
            ("stxnamespace", O),
            ("stxowner", O),
            ("stxstattarget", I4),
            ("stxkeys", T),
            ("stxkind", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_publication",
        &[
            ("oid", O),
            ("pubname", N),
            ("pubowner", O),
            ("puballtables", B),
            ("pubinsert", B),
            ("pubupdate", B),
            ("pubdelete", B),
            ("pubtruncate", B),
            ("pubviaroot", B),
        ],
    ),
    (
        "pg_catalog",
        "pg_publication_namespace",
        &[("oid", O), ("pnpubid", O), ("pnnspid", O)],
    ),
    (
        "pg_catalog",
        "pg_publication_rel",
        &[
            ("oid", O),
            ("prpubid", O),
            ("prrelid", O),
            ("prqual", T),
            ("prattrs", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_proc",
        &[
            ("oid", O),
            ("proname", N),
            ("pronamespace", O),
            ("prorettype", O),
            ("prokind", C),
        ],
    ),
    (
        "pg_catalog",
        "pg_trigger",
        &[
            ("oid", O),
            ("tgrelid", O),
            ("tgname", N),
            ("tgenabled", C),
            ("tgisinternal", B),
            ("tgparentid", O),
        ],
    ),
    (
        "pg_catalog",
        "pg_rewrite",
        &[("oid", O), ("rulename", N), ("ev_class", O), ("ev_type", C)],
    ),
    (
        "pg_catalog",
        "pg_sequence",
        &[
            ("seqrelid", O),
            ("seqtypid", O),
            ("seqstart", I8),
            ("seqincrement", I8),
            ("seqmax", I8),
            ("seqmin", I8),
            ("seqcache", I8),
            ("seqcycle", B),
        ],
    ),
    (
        "pg_catalog",
        "pg_partitioned_table",
        &[("partrelid", O), ("partstrat", C), ("partnatts", I2)],
    ),
    (
        "pg_catalog",
        "pg_tablespace",
        &[("oid", O), ("spcname", N), ("spcowner", O)],
    ),
    (
        "pg_catalog",
        "pg_extension",
        &[
            ("oid", O),
            ("extname", N),
            ("extowner", O),
            ("extnamespace", O),
            ("extversion", T),
        ],
    ),
    (
        "pg_catalog",
        "pg_enum",
        &[
            ("oid", O),
            ("enumtypid", O),
            ("enumsortorder", F4),
            ("enumlabel", N),
        ],
    ),
    (
        "pg_catalog",
        "pg_foreign_table",
        &[("ftrelid", O), ("ftserver", O)],
    ),
    (
        "information_schema",
        "tables",
        &[
            ("table_catalog", N),
            ("table_schema", N),
            ("table_name", N),
            ("table_type", T),
            ("is_insertable_into", T),
            ("is_typed", T),
        ],
    ),
    (
        "information_schema",
        "columns",
        &[
            ("table_catalog", N),
            ("table_schema", N),
            ("table_name", N),
            ("column_name", N),
            ("ordinal_position", I4),
            ("column_default", T),
            ("is_nullable", T),
            ("data_type", T),
            ("character_maximum_length", I4),
            ("numeric_precision", I4),
            ("numeric_scale", I4),
            ("udt_name", N),
            ("is_identity", T),
            ("is_generated", T),
        ],
    ),
    (
        "information_schema",
        "schemata",
        &[("catalog_name", N), ("schema_name", N), ("schema_owner", N)],
    ),
];

/// OIDs of built-in relations clients cast with `'pg_class'::regclass`.
pub fn builtin_oid(name: &str) -> Option<u32> {
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
                        ty: Ty::of(*ty),
                        attnum: n as i16 + 1,
                        not_null: false,
                        default_sql: None,
                        default_pg: None,
                    })
                    .collect(),
                primary_key: vec![],
                pk_name: String::new(),
                indexes: vec![],
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

fn i(v: impl Into<i64>) -> SqlValue {
    SqlValue::Int(v.into())
}

fn t(v: impl Into<String>) -> SqlValue {
    SqlValue::Text(v.into())
}

fn b(v: bool) -> SqlValue {
    SqlValue::Int(i64::from(v))
}

const NULL: SqlValue = SqlValue::Null;

fn typname(ty: PgType) -> &'static str {
    crate::rewrite::typname(ty)
}

/// Rows of every emulated table for one schema snapshot.
fn rows(schema: &Schema) -> HashMap<&'static str, Vec<Vec<SqlValue>>> {
    let mut out: HashMap<&'static str, Vec<Vec<SqlValue>>> = HashMap::new();
    let mut push =
        |table: &'static str, row: Vec<SqlValue>| out.entry(table).or_default().push(row);
    for (oid, name) in [
        (PG_CATALOG_NS, "pg_catalog"),
        (PUBLIC_NS, "public"),
        (INFORMATION_SCHEMA_NS, "information_schema"),
        (99, "pg_toast"),
    ] {
        push("pg_namespace", vec![i(oid), t(name), i(OWNER), NULL]);
        push("schemata", vec![t("mycelium"), t(name), t(OWNER_NAME)]);
    }
    push(
        "pg_roles",
        vec![
            i(OWNER),
            t(OWNER_NAME),
            b(true),
            b(true),
            b(true),
            b(true),
            b(true),
            b(false),
            i(-1),
            t("********"),
            b(true),
            NULL,
        ],
    );
    push("pg_user", vec![t(OWNER_NAME), i(OWNER), b(true), b(true)]);
    push(
        "pg_database",
        vec![
            i(5),
            t("mycelium"),
            i(OWNER),
            i(6),
            t("C"),
            t("C"),
            b(false),
            b(true),
            i(-1),
            i(1663),
            NULL,
        ],
    );
    push("pg_am", vec![i(BTREE), t("btree"), t("bthandler"), t("i")]);
    push(
        "pg_am",
        vec![i(2), t("heap"), t("heap_tableam_handler"), t("t")],
    );
    push(
        "pg_collation",
        vec![
            i(100),
            t("default"),
            i(PG_CATALOG_NS),
            i(OWNER),
            t("d"),
            b(true),
            i(-1),
            NULL,
            NULL,
        ],
    );
    push(
        "pg_collation",
        vec![
            i(950),
            t("C"),
            i(PG_CATALOG_NS),
            i(OWNER),
            t("c"),
            b(true),
            i(-1),
            t("C"),
            t("C"),
        ],
    );
    push("pg_tablespace", vec![i(1663), t("pg_default"), i(OWNER)]);
    push(
        "pg_extension",
        vec![
            i(13_500),
            t("plpgsql"),
            i(OWNER),
            i(PG_CATALOG_NS),
            t("1.0"),
        ],
    );
    for (name, setting) in [
        ("server_version", "15.0"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("TimeZone", "UTC"),
        ("DateStyle", "ISO, MDY"),
        ("standard_conforming_strings", "on"),
        ("max_identifier_length", "63"),
    ] {
        push(
            "pg_settings",
            vec![
                t(name),
                t(setting),
                NULL,
                t("Mycelium"),
                NULL,
                t("internal"),
                t("string"),
                t("default"),
                t(setting),
                t(setting),
            ],
        );
    }
    for ty in PgType::ALL {
        let collatable = matches!(
            ty,
            PgType::Text | PgType::Varchar | PgType::Bpchar | PgType::Name
        );
        push(
            "pg_type",
            vec![
                i(ty.oid()),
                t(typname(ty)),
                i(PG_CATALOG_NS),
                i(OWNER),
                i(ty.type_size()),
                b(ty.type_size() > 0 && ty.type_size() <= 8),
                t("b"),
                t(category(ty)),
                b(false),
                b(true),
                t(","),
                i(0),
                i(0),
                i(0),
                t(format!("{}in", typname(ty))),
                t(format!("{}out", typname(ty))),
                t(format!("{}recv", typname(ty))),
                t(format!("{}send", typname(ty))),
                t("i"),
                t("p"),
                b(false),
                i(0),
                i(-1),
                i(0),
                i(if collatable { 100 } else { 0 }),
                NULL,
            ],
        );
    }

    let mut tables: Vec<&Arc<TableInfo>> = schema.tables.values().collect();
    tables.sort_by_key(|t| t.oid);
    for table in tables {
        let kind = if table.is_view { "v" } else { "r" };
        push(
            "pg_class",
            vec![
                i(table.oid),
                t(&table.name),
                i(PUBLIC_NS),
                i(0),
                i(0),
                i(OWNER),
                i(if table.is_view { 0 } else { 2 }),
                i(table.oid),
                i(0),
                i(0),
                SqlValue::Float(-1.0),
                i(0),
                i(0),
                b(!table.indexes.is_empty()),
                b(false),
                t("p"),
                t(kind),
                i(table.columns.len() as i64),
                i(0),
                b(false),
                b(false),
                b(false),
                b(false),
                b(false),
                b(true),
                t("d"),
                b(false),
                i(0),
                NULL,
                NULL,
                NULL,
            ],
        );
        if table.is_view {
            push(
                "pg_views",
                vec![t("public"), t(&table.name), t(OWNER_NAME), NULL],
            );
        } else {
            push(
                "pg_tables",
                vec![
                    t("public"),
                    t(&table.name),
                    t(OWNER_NAME),
                    NULL,
                    b(!table.indexes.is_empty()),
                    b(false),
                    b(false),
                    b(false),
                ],
            );
        }
        push(
            "tables",
            vec![
                t("mycelium"),
                t("public"),
                t(&table.name),
                t(if table.is_view { "VIEW" } else { "BASE TABLE" }),
                t(if table.is_view { "NO" } else { "YES" }),
                t("NO"),
            ],
        );
        for col in &table.columns {
            let ty = col.ty.ty;
            let collatable = matches!(
                ty,
                PgType::Text | PgType::Varchar | PgType::Bpchar | PgType::Name
            );
            push(
                "pg_attribute",
                vec![
                    i(table.oid),
                    t(&col.name),
                    i(ty.oid()),
                    i(-1),
                    i(ty.type_size()),
                    i(col.attnum),
                    i(0),
                    i(col.ty.typmod),
                    b(ty.type_size() > 0 && ty.type_size() <= 8),
                    t("i"),
                    t("p"),
                    b(col.not_null),
                    b(col.default_pg.is_some()),
                    b(false),
                    t(""),
                    t(""),
                    b(false),
                    b(true),
                    i(0),
                    i(if collatable { 100 } else { 0 }),
                    NULL,
                    NULL,
                ],
            );
            if let Some(default) = &col.default_pg {
                push(
                    "pg_attrdef",
                    vec![
                        i(default_oid(table, col.attnum)),
                        i(table.oid),
                        i(col.attnum),
                        t(default),
                    ],
                );
            }
            let (precision, scale, length) = type_sizes(col.ty);
            push(
                "columns",
                vec![
                    t("mycelium"),
                    t("public"),
                    t(&table.name),
                    t(&col.name),
                    i(col.attnum),
                    col.default_pg.clone().map(SqlValue::Text).unwrap_or(NULL),
                    t(if col.not_null { "NO" } else { "YES" }),
                    t(ty.name()),
                    length,
                    precision,
                    scale,
                    t(typname(ty)),
                    t("NO"),
                    t("NEVER"),
                ],
            );
        }
        for (n, index) in table.indexes.iter().enumerate() {
            let oid = index_oid(table, n);
            let attnums: Vec<String> = index
                .columns
                .iter()
                .map(|c| {
                    table
                        .column(c)
                        .map(|c| c.attnum.to_string())
                        .unwrap_or_else(|| "0".into())
                })
                .collect();
            push(
                "pg_class",
                vec![
                    i(oid),
                    t(&index.name),
                    i(PUBLIC_NS),
                    i(0),
                    i(0),
                    i(OWNER),
                    i(BTREE),
                    i(oid),
                    i(0),
                    i(0),
                    SqlValue::Float(0.0),
                    i(0),
                    i(0),
                    b(false),
                    b(false),
                    t("p"),
                    t("i"),
                    i(index.columns.len() as i64),
                    i(0),
                    b(false),
                    b(false),
                    b(false),
                    b(false),
                    b(false),
                    b(true),
                    t("n"),
                    b(false),
                    i(0),
                    NULL,
                    NULL,
                    NULL,
                ],
            );
            let contype = index_constraint(table, index);
            push(
                "pg_index",
                vec![
                    i(oid),
                    i(table.oid),
                    i(index.columns.len() as i64),
                    i(index.columns.len() as i64),
                    b(index.unique),
                    b(false),
                    b(contype == Some('p')),
                    b(false),
                    b(true),
                    b(false),
                    b(true),
                    b(false),
                    b(true),
                    b(true),
                    b(false),
                    t(attnums.join(" ")),
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                ],
            );
            push(
                "pg_indexes",
                vec![
                    t("public"),
                    t(&table.name),
                    t(&index.name),
                    NULL,
                    t(index_def(table, index)),
                ],
            );
            if let Some(contype) = contype {
                push(
                    "pg_constraint",
                    vec![
                        i(constraint_oid(table, n)),
                        t(&index.name),
                        i(PUBLIC_NS),
                        t(contype.to_string()),
                        b(false),
                        b(false),
                        b(true),
                        i(table.oid),
                        i(0),
                        i(oid),
                        i(0),
                        i(0),
                        t(" "),
                        t(" "),
                        t(" "),
                        b(true),
                        i(0),
                        b(true),
                        t(format!("{{{}}}", attnums.join(","))),
                        NULL,
                        NULL,
                    ],
                );
            }
        }
    }
    out
}

fn category(ty: PgType) -> &'static str {
    match ty {
        PgType::Bool => "B",
        PgType::Int2
        | PgType::Int4
        | PgType::Int8
        | PgType::Float4
        | PgType::Float8
        | PgType::Numeric
        | PgType::Oid => "N",
        PgType::Date | PgType::Time | PgType::Timestamp | PgType::Timestamptz => "D",
        PgType::Text | PgType::Varchar | PgType::Bpchar | PgType::Name | PgType::Char => "S",
        PgType::Unknown => "X",
        _ => "U",
    }
}

fn type_sizes(ty: Ty) -> (SqlValue, SqlValue, SqlValue) {
    match ty.ty {
        PgType::Int2 => (i(16), i(0), NULL),
        PgType::Int4 => (i(32), i(0), NULL),
        PgType::Int8 => (i(64), i(0), NULL),
        PgType::Float4 => (i(24), NULL, NULL),
        PgType::Float8 => (i(53), NULL, NULL),
        PgType::Numeric if ty.typmod >= 4 => {
            let m = ty.typmod - 4;
            (i(m >> 16), i(m & 0xffff), NULL)
        }
        PgType::Varchar | PgType::Bpchar if ty.typmod >= 4 => (NULL, NULL, i(ty.typmod - 4)),
        _ => (NULL, NULL, NULL),
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
    }
    conn.create_scalar_function("array_to_string", -1, det, |ctx| {
        ctx.get::<Option<String>>(0)
    })?;
    conn.create_scalar_function("pg_get_statisticsobjdef_columns", 1, det, |_| {
        Ok(None::<String>)
    })?;
    conn.create_scalar_function("pg_relation_is_publishable", 1, det, |_| Ok(false))?;
    conn.create_scalar_function("pg_get_viewdef", -1, det, |_| Ok(None::<String>))?;
    conn.create_scalar_function("quote_ident", 1, det, |ctx| {
        let s: Option<String> = ctx.get(0)?;
        Ok(s.map(|s| {
            if s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                s
            } else {
                format!("\"{}\"", s.replace('"', "\"\""))
            }
        }))
    })?;
    conn.create_scalar_function("format_type", 2, det, |ctx| {
        let Some(oid) = oid_arg(ctx, 0) else {
            return Ok(None);
        };
        let typmod = ctx.get::<Option<i32>>(1)?.unwrap_or(-1);
        Ok(Some(match PgType::from_oid(oid) {
            Some(ty) => ty.format_type(typmod),
            None => "???".to_owned(),
        }))
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
            Ok(find_index(&schema_of(&s), oid, true).map(|(table, index)| {
                let kind = if index_constraint(&table, &index) == Some('p') {
                    "PRIMARY KEY"
                } else {
                    "UNIQUE"
                };
                format!("{kind} ({})", index.columns.join(", "))
            }))
        },
    )?;
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
}
