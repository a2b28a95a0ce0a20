//! The rows of the emulated catalog for one schema snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use mycelium_protocol::types::{PgType, SqlValue};

use super::constraints::{
    IndexColumns, ResolvedKey, action_code, collatable, int_array, opclasses, vector,
};
use super::{
    BTREE, INFORMATION_SCHEMA_NS, OWNER, OWNER_NAME, PG_CATALOG_NS, PUBLIC_NS, builtin_oid,
    constraint_oid, default_oid, foreign_key_oid, index_constraint, index_def, index_oid,
    sequence_name, sequence_oid,
};
use crate::catalog::{ColumnInfo, Schema, TableInfo, Ty};
use crate::functions::array::{self, ArrayType, array_oid};

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
            t("c"),
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
    for (oid, name, namespace, family, input) in opclasses() {
        push(
            "pg_opclass",
            vec![
                i(oid),
                i(BTREE),
                t(name),
                i(namespace),
                i(OWNER),
                i(family),
                i(input),
                b(true),
                i(0),
            ],
        );
    }
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
                i(if collatable(ty) { 100 } else { 0 }),
                NULL,
            ],
        );
    }
    // Array types (`_int4`), and the vectors of `pg_index`: drivers read `typelem` to
    // load array values.
    let arrays = PgType::ALL.into_iter().filter_map(ArrayType::of).chain(
        [array::INT2VECTOR, array::OIDVECTOR]
            .into_iter()
            .filter_map(ArrayType::from_oid),
    );
    for array in arrays {
        let (input, output) = if array.is_vector() {
            (
                format!("{}in", array.typname()),
                format!("{}out", array.typname()),
            )
        } else {
            ("array_in".to_owned(), "array_out".to_owned())
        };
        push(
            "pg_type",
            vec![
                i(array.oid),
                t(array.typname()),
                i(PG_CATALOG_NS),
                i(OWNER),
                i(-1),
                b(false),
                t("b"),
                t("A"),
                b(false),
                b(true),
                t(","),
                i(0),
                i(array.elem.oid()),
                i(0),
                t(input),
                t(output),
                t("array_recv"),
                t("array_send"),
                t("i"),
                t("x"),
                b(false),
                i(0),
                i(-1),
                i(0),
                i(if collatable(array.elem) { 100 } else { 0 }),
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
    // Postgres enforces foreign keys with triggers on both tables; psql's `\d` shows the keys
    // of tables that have triggers.
    let referenced: Vec<String> = tables
        .iter()
        .flat_map(|t| t.foreign_keys.iter())
        .map(|k| k.table.to_ascii_lowercase())
        .collect();
    for table in &tables {
        let kind = if table.is_view { "v" } else { "r" };
        let has_triggers =
            !table.foreign_keys.is_empty() || referenced.contains(&table.name.to_ascii_lowercase());
        push(
            "pg_class",
            class_row(Class {
                oid: table.oid,
                name: &table.name,
                am: if table.is_view { 0 } else { 2 },
                tuples: -1.0,
                has_index: !table.indexes.is_empty(),
                kind,
                natts: table.columns.len(),
                has_triggers,
                replident: "d",
            }),
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
                    b(has_triggers),
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
            push(
                "pg_attribute",
                vec![
                    i(table.oid),
                    t(&col.name),
                    i(col.ty.type_oid()),
                    i(-1),
                    i(ty.type_size()),
                    i(col.attnum),
                    i(0),
                    i(if col.ty.is_carried_as_text() {
                        -1
                    } else {
                        col.ty.typmod
                    }),
                    b(ty.type_size() > 0 && ty.type_size() <= 8),
                    t("i"),
                    // Postgres' storage strategies: fixed-size plain, numeric main, other
                    // variable-length values extended (what `\d+` shows).
                    t(if ty.type_size() > 0 {
                        "p"
                    } else if ty == PgType::Numeric {
                        "m"
                    } else {
                        "x"
                    }),
                    b(col.not_null),
                    b(col.default_pg.is_some()),
                    b(false),
                    t(""),
                    t(""),
                    b(false),
                    b(true),
                    i(0),
                    i(if collatable(col.ty.array_type().map_or(ty, |a| a.elem)) {
                        100
                    } else {
                        0
                    }),
                    NULL,
                    NULL,
                    t(""),
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
                if let Some(sequence) = sequence_name(default) {
                    for (relation, row) in sequence_rows(table, col, sequence) {
                        push(relation, row);
                    }
                }
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
                    t(if col.ty.array_type().is_some() {
                        "ARRAY"
                    } else {
                        ty.name()
                    }),
                    length,
                    precision,
                    scale,
                    t(col
                        .ty
                        .array_type()
                        .map_or_else(|| typname(ty).to_owned(), |a| a.typname())),
                    t("NO"),
                    t("NEVER"),
                ],
            );
        }
        for (n, index) in table.indexes.iter().enumerate() {
            let oid = index_oid(table, n);
            let cols = IndexColumns::of(table, index);
            push(
                "pg_class",
                class_row(Class {
                    oid,
                    name: &index.name,
                    am: BTREE,
                    tuples: 0.0,
                    has_index: false,
                    kind: "i",
                    natts: index.columns.len(),
                    has_triggers: false,
                    replident: "n",
                }),
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
                    t(vector(&cols.attnums)),
                    t(vector(&cols.collations)),
                    t(vector(&cols.classes)),
                    t(vec!["0"; cols.attnums.len()].join(" ")),
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
                        t(int_array(&cols.attnums)),
                        NULL,
                        NULL,
                    ],
                );
            }
        }
        for (n, key) in table.foreign_keys.iter().enumerate() {
            let key = ResolvedKey::new(schema, table, key);
            push(
                "pg_constraint",
                vec![
                    i(foreign_key_oid(table, n)),
                    t(&key.key.name),
                    i(PUBLIC_NS),
                    t("f"),
                    b(false),
                    b(false),
                    b(true),
                    i(table.oid),
                    i(0),
                    i(key.index_oid),
                    i(0),
                    i(key.target.map_or(0, |t| t.oid)),
                    t(action_code(&key.key.on_update).to_string()),
                    t(action_code(&key.key.on_delete).to_string()),
                    t("s"),
                    b(true),
                    i(0),
                    b(true),
                    t(int_array(&key.attnums)),
                    t(int_array(&key.referred_attnums)),
                    NULL,
                ],
            );
        }
    }
    out
}

/// The columns of a `pg_class` row that differ between relations.
struct Class<'a> {
    oid: u32,
    name: &'a str,
    am: u32,
    tuples: f64,
    has_index: bool,
    kind: &'static str,
    natts: usize,
    has_triggers: bool,
    replident: &'static str,
}

fn class_row(class: Class<'_>) -> Vec<SqlValue> {
    vec![
        i(class.oid),
        t(class.name),
        i(PUBLIC_NS),
        i(0),
        i(0),
        i(OWNER),
        i(class.am),
        i(class.oid),
        i(0),
        i(0),
        SqlValue::Float(class.tuples),
        i(0),
        i(0),
        b(class.has_index),
        b(false),
        t("p"),
        t(class.kind),
        i(class.natts as i64),
        i(0),
        b(false),
        b(class.has_triggers),
        b(false),
        b(false),
        b(false),
        b(true),
        t(class.replident),
        b(false),
        i(0),
        NULL,
        NULL,
        NULL,
    ]
}

/// The sequence of a serial column: its `pg_class` and `pg_sequence` rows, and the
/// `pg_depend` row that ties it to the column (Django's `get_sequences` reads it).
fn sequence_rows(
    table: &TableInfo,
    col: &ColumnInfo,
    sequence: &str,
) -> Vec<(&'static str, Vec<SqlValue>)> {
    let oid = sequence_oid(table, col.attnum);
    let pg_class = builtin_oid("pg_class").unwrap_or_default();
    let (ty, max) = match col.ty.ty {
        PgType::Int2 => (PgType::Int2, i64::from(i16::MAX)),
        PgType::Int4 => (PgType::Int4, i64::from(i32::MAX)),
        _ => (PgType::Int8, i64::MAX),
    };
    vec![
        (
            "pg_class",
            class_row(Class {
                oid,
                name: sequence,
                am: 0,
                tuples: 1.0,
                has_index: false,
                kind: "S",
                natts: 3,
                has_triggers: false,
                replident: "n",
            }),
        ),
        (
            "pg_sequence",
            vec![
                i(oid),
                i(ty.oid()),
                i(1),
                i(1),
                i(max),
                i(1),
                i(1),
                b(false),
            ],
        ),
        (
            "pg_depend",
            vec![
                i(pg_class),
                i(oid),
                i(0),
                i(pg_class),
                i(table.oid),
                i(col.attnum),
                t("a"),
            ],
        ),
    ]
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
