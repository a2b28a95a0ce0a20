//! Keys as Postgres describes them: the `pg_constraint` rows of foreign keys, the operator
//! classes of index columns (`pg_opclass`, `pg_index.indclass`), and the text of
//! `pg_get_constraintdef`.

use mycelium_protocol::types::PgType;

use super::{PG_CATALOG_NS, index_constraint, index_oid};
use crate::catalog::{ForeignKeyInfo, IndexInfo, Schema, TableInfo};

/// The default btree operator class of a column type: (OID, name, family, input type), with
/// Postgres 15's OIDs. `json` has none (Postgres cannot index it with a btree).
fn opclass(ty: PgType) -> Option<(u32, &'static str, u32, u32)> {
    let (oid, name, family) = match ty {
        PgType::Bool => (10_003, "bool_ops", 424),
        PgType::Int2 => (1979, "int2_ops", 1976),
        PgType::Int4 => (1978, "int4_ops", 1976),
        PgType::Int8 => (3124, "int8_ops", 1976),
        PgType::Float4 => (10_012, "float4_ops", 1970),
        PgType::Float8 => (3123, "float8_ops", 1970),
        PgType::Numeric => (3125, "numeric_ops", 1988),
        // varchar columns use text's class, as in Postgres.
        PgType::Text | PgType::Varchar => (3126, "text_ops", 1994),
        PgType::Bpchar => (10_004, "bpchar_ops", 426),
        PgType::Name => (10_028, "name_ops", 1994),
        PgType::Char => (10_007, "char_ops", 429),
        PgType::Oid => (1981, "oid_ops", 1989),
        PgType::Bytea => (10_006, "bytea_ops", 428),
        PgType::Date => (3122, "date_ops", 434),
        PgType::Time => (10_038, "time_ops", 1996),
        PgType::Timestamp => (3128, "timestamp_ops", 434),
        PgType::Timestamptz => (3127, "timestamptz_ops", 434),
        PgType::Jsonb => (10_088, "jsonb_ops", 4033),
        PgType::Uuid => (10_065, "uuid_ops", 2968),
        PgType::Json | PgType::Unknown => return None,
    };
    let input = match ty {
        PgType::Varchar => PgType::Text,
        other => other,
    };
    Some((oid, name, family, input.oid()))
}

/// `pg_opclass` rows: (oid, name, namespace, family, input type) of every default class.
pub(super) fn opclasses() -> Vec<(u32, &'static str, u32, u32, u32)> {
    let mut out: Vec<_> = PgType::ALL
        .into_iter()
        .filter_map(opclass)
        .map(|(oid, name, family, input)| (oid, name, PG_CATALOG_NS, family, input))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Space-separated per-column values of an index (`indkey`, `indclass`, `indcollation`,
/// `indoption`: int2vector and oidvector text forms).
pub(super) struct IndexColumns {
    pub attnums: Vec<i16>,
    pub classes: Vec<u32>,
    pub collations: Vec<u32>,
}

impl IndexColumns {
    pub fn of(table: &TableInfo, index: &IndexInfo) -> IndexColumns {
        let mut out = IndexColumns {
            attnums: Vec::new(),
            classes: Vec::new(),
            collations: Vec::new(),
        };
        for name in &index.columns {
            let column = table.column(name);
            out.attnums.push(column.map_or(0, |c| c.attnum));
            let ty = column.map(|c| c.ty.ty);
            out.classes
                .push(ty.and_then(opclass).map_or(0, |(oid, ..)| oid));
            out.collations
                .push(if ty.is_some_and(collatable) { 100 } else { 0 });
        }
        out
    }
}

pub(super) fn collatable(ty: PgType) -> bool {
    matches!(
        ty,
        PgType::Text | PgType::Varchar | PgType::Bpchar | PgType::Name
    )
}

/// Space-separated, as `int2vector` and `oidvector` print.
pub(super) fn vector<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `{1,2}`, as a `smallint[]` prints.
pub(super) fn int_array(values: &[i16]) -> String {
    format!("{{{}}}", vector(values).replace(' ', ","))
}

/// A foreign key resolved against the schema: the referenced table, its columns (the primary
/// key when the key names none), and the unique index of the referenced table that backs it.
pub(super) struct ResolvedKey<'a> {
    pub key: &'a ForeignKeyInfo,
    pub attnums: Vec<i16>,
    pub target: Option<&'a TableInfo>,
    pub referred: Vec<String>,
    pub referred_attnums: Vec<i16>,
    /// `pg_constraint.conindid`: the referenced table's index over the referred columns.
    pub index_oid: u32,
}

impl<'a> ResolvedKey<'a> {
    pub fn new(schema: &'a Schema, table: &TableInfo, key: &'a ForeignKeyInfo) -> Self {
        let target = schema
            .tables
            .get(&key.table.to_ascii_lowercase())
            .map(AsRef::as_ref);
        let referred = match target {
            Some(target) if key.referred.is_empty() => target.primary_key.clone(),
            _ => key.referred.clone(),
        };
        let attnum = |table: Option<&TableInfo>, name: &String| {
            table.and_then(|t| t.column(name)).map_or(0, |c| c.attnum)
        };
        let index_oid = target
            .and_then(|target| {
                target.indexes.iter().enumerate().find_map(|(n, index)| {
                    let same = index.unique
                        && index.columns.len() == referred.len()
                        && index
                            .columns
                            .iter()
                            .zip(&referred)
                            .all(|(a, b)| a.eq_ignore_ascii_case(b));
                    same.then(|| index_oid(target, n))
                })
            })
            .unwrap_or(0);
        ResolvedKey {
            key,
            attnums: key.columns.iter().map(|c| attnum(Some(table), c)).collect(),
            referred_attnums: referred.iter().map(|c| attnum(target, c)).collect(),
            target,
            referred,
            index_oid,
        }
    }

    /// `pg_get_constraintdef`: `FOREIGN KEY (a) REFERENCES t(id) ON DELETE CASCADE`.
    pub fn definition(&self) -> String {
        let mut def = format!(
            "FOREIGN KEY ({}) REFERENCES {}({})",
            ident_list(&self.key.columns),
            quote_ident(self.target.map_or(&self.key.table, |t| &t.name)),
            ident_list(&self.referred),
        );
        for (clause, action) in [
            ("ON UPDATE", &self.key.on_update),
            ("ON DELETE", &self.key.on_delete),
        ] {
            if action_code(action) != 'a' {
                def.push_str(&format!(" {clause} {}", action.to_ascii_uppercase()));
            }
        }
        def
    }
}

/// `pg_constraint.confupdtype`/`confdeltype` for a referential action as SQLite reports it.
pub(super) fn action_code(action: &str) -> char {
    match action.to_ascii_uppercase().as_str() {
        "RESTRICT" => 'r',
        "CASCADE" => 'c',
        "SET NULL" => 'n',
        "SET DEFAULT" => 'd',
        _ => 'a',
    }
}

/// `pg_get_constraintdef` of a primary key or unique constraint backed by `index`.
pub(super) fn index_constraint_def(table: &TableInfo, index: &IndexInfo) -> String {
    let kind = if index_constraint(table, index) == Some('p') {
        "PRIMARY KEY"
    } else {
        "UNIQUE"
    };
    format!("{kind} ({})", ident_list(&index.columns))
}

fn ident_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Postgres's `quote_ident`: quoted only when the name is not a plain lower-case identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}
