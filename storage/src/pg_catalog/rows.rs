//! The rows of the emulated catalog for one schema snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use mycelium_protocol::types::{PgType, SqlValue};

use super::{
    BTREE, INFORMATION_SCHEMA_NS, OWNER, OWNER_NAME, PG_CATALOG_NS, PUBLIC_NS, constraint_oid,
    default_oid, index_constraint, index_def, index_oid,
};
use crate::catalog::{Schema, TableInfo, Ty};

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
pub(super) fn rows(schema: &Schema) -> HashMap<&'static str, Vec<Vec<SqlValue>>> {
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
                i(array_oid(ty)),
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

    let mut tables: Vec<&Arc<TableInfo>> = schema
        .tables
        .values()
        .filter(|t| !crate::catalog::is_system_table(&t.name))
        .collect();
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

/// `pg_type.typarray`: the OID of the array type over `ty`, as in Postgres (drivers read it
/// to register array loaders; arrays themselves are not supported here).
fn array_oid(ty: PgType) -> u32 {
    match ty {
        PgType::Bool => 1000,
        PgType::Bytea => 1001,
        PgType::Char => 1002,
        PgType::Name => 1003,
        PgType::Int2 => 1005,
        PgType::Int4 => 1007,
        PgType::Text => 1009,
        PgType::Bpchar => 1014,
        PgType::Varchar => 1015,
        PgType::Int8 => 1016,
        PgType::Float4 => 1021,
        PgType::Float8 => 1022,
        PgType::Oid => 1028,
        PgType::Timestamp => 1115,
        PgType::Date => 1182,
        PgType::Time => 1183,
        PgType::Timestamptz => 1185,
        PgType::Numeric => 1231,
        PgType::Json => 199,
        PgType::Jsonb => 3807,
        PgType::Uuid => 2951,
        PgType::Unknown => 0,
    }
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
