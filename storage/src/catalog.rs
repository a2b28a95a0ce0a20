//! What the node knows about the tables in the SQLite file: each column's Postgres type and
//! typmod (SQLite keeps only an affinity), table OIDs, indexes, foreign keys and constraint
//! names.
//!
//! The source of truth is three bookkeeping tables written in the same SQLite transaction as
//! the DDL they describe, so a crash never leaves them out of step with `sqlite_master`.
//! Tables created by someone else (no catalog rows) get types guessed from their declared type.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::functions::array::ArrayType;
use mycelium_protocol::types::PgType;
use rusqlite::Connection;

/// The rowid column given to tables created without a primary key: SQLite's session
/// extension (replication) only records tables that have one. Never shown to clients.
pub const HIDDEN_ROWID: &str = "__mycelium_rowid";

/// The name a table is rebuilt under before it takes the altered table's place (`ALTER
/// COLUMN`, which SQLite cannot do in place). Its rows are a copy, never a change to capture.
pub const REBUILD_TABLE: &str = "__mycelium_rebuild";

/// Postgres's first OID for user objects; table OIDs are this plus the catalog row id.
pub const FIRST_USER_OID: u32 = 16384;

pub(crate) const CATALOG_DDL: &str = "
CREATE TABLE IF NOT EXISTS __mycelium_tables (
    oid INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL DEFAULT 'r',
    pk_name TEXT,
    options TEXT
);
CREATE TABLE IF NOT EXISTS __mycelium_columns (
    table_name TEXT NOT NULL,
    column_name TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    type_oid INTEGER NOT NULL,
    typmod INTEGER NOT NULL,
    default_pg TEXT,
    PRIMARY KEY (table_name, column_name)
);
CREATE TABLE IF NOT EXISTS __mycelium_sequences (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS __mycelium_txn_records (
    gid TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('committed', 'aborted', 'applied')),
    participants TEXT NOT NULL,
    decided_at_ms INTEGER NOT NULL
);
";

/// A column type as Postgres describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ty {
    pub ty: PgType,
    pub typmod: i32,
}

/// Marks `interval` values, carried as text (the codec has no interval type).
pub const INTERVAL_TYPMOD: i32 = -1000;

/// `pg_type.oid` of `interval`.
pub const INTERVAL_OID: u32 = 1186;

/// Arrays are text whose typmod is this minus the array type's OID (see [`Ty::array`]).
pub const ARRAY_TYPMOD_BASE: i32 = -1_000_000;

impl Ty {
    pub const fn of(ty: PgType) -> Ty {
        Ty { ty, typmod: -1 }
    }

    pub const fn interval() -> Ty {
        Ty {
            ty: PgType::Text,
            typmod: INTERVAL_TYPMOD,
        }
    }

    pub fn is_interval(self) -> bool {
        self.typmod == INTERVAL_TYPMOD
    }

    /// An array, carried as its text form (`functions::array`): the typmod holds the array
    /// type's OID below [`ARRAY_TYPMOD_BASE`].
    pub fn array(array: ArrayType) -> Ty {
        Ty {
            ty: PgType::Text,
            typmod: ARRAY_TYPMOD_BASE - array.oid as i32,
        }
    }

    /// The OID Postgres names this type by (an array's or an interval's own, not its text
    /// carrier's).
    pub fn type_oid(self) -> u32 {
        if self.is_interval() {
            return INTERVAL_OID;
        }
        self.array_type().map_or(self.ty.oid(), |a| a.oid)
    }

    /// A type that travels as its text carrier's storage but is another Postgres type (an
    /// array or an interval): its typmod is a marker, never shown.
    pub fn is_carried_as_text(self) -> bool {
        self.is_interval() || self.array_type().is_some()
    }

    pub fn array_type(self) -> Option<ArrayType> {
        if self.ty != PgType::Text || self.typmod > ARRAY_TYPMOD_BASE {
            return None;
        }
        ArrayType::from_oid(u32::try_from(ARRAY_TYPMOD_BASE - self.typmod).ok()?)
    }

    /// `numeric` with `scale` decimals (precision left at the maximum).
    pub const fn numeric_scale(scale: i32) -> Ty {
        Ty {
            ty: PgType::Numeric,
            typmod: ((1000 << 16) | scale) + 4,
        }
    }

    /// Decimals a value of this type prints with, when fixed.
    pub fn scale(self) -> Option<i32> {
        match self.ty {
            PgType::Int2 | PgType::Int4 | PgType::Int8 => Some(0),
            PgType::Numeric if self.typmod >= 4 => Some((self.typmod - 4) & 0xffff),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ColumnInfo {
    pub name: String,
    pub ty: Ty,
    /// 1-based, as `pg_attribute.attnum`.
    pub attnum: i16,
    pub not_null: bool,
    /// The default as SQLite holds it (already translated), for `DEFAULT` in `VALUES`.
    pub default_sql: Option<String>,
    /// The default as the user wrote it in Postgres syntax, for `pg_attrdef`.
    pub default_pg: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IndexInfo {
    pub name: String,
    pub columns: Vec<String>,
    pub unique: bool,
    pub primary: bool,
    /// Its `CREATE INDEX` statement; `None` for the indexes SQLite makes for a table's own
    /// constraints, which come back with the table.
    pub sql: Option<String>,
}

/// A foreign key, as SQLite keeps it in the table's definition (`PRAGMA foreign_key_list`).
#[derive(Debug, Clone)]
pub struct ForeignKeyInfo {
    /// The name Postgres would give it: `<table>_<columns>_fkey` (SQLite keeps no name).
    pub name: String,
    pub columns: Vec<String>,
    /// The referenced table, as written in the key.
    pub table: String,
    /// The referenced columns; empty when the key names none (the referenced primary key).
    pub referred: Vec<String>,
    /// `NO ACTION`, `RESTRICT`, `CASCADE`, `SET NULL` or `SET DEFAULT`.
    pub on_update: String,
    pub on_delete: String,
}

#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: String,
    pub oid: u32,
    pub is_view: bool,
    pub columns: Vec<ColumnInfo>,
    pub primary_key: Vec<String>,
    pub pk_name: String,
    pub indexes: Vec<IndexInfo>,
    /// In declaration order.
    pub foreign_keys: Vec<ForeignKeyInfo>,
    /// Has the hidden rowid column: `SELECT *` must name the visible columns.
    pub hidden_rowid: bool,
    /// Its `CREATE TABLE` statement as SQLite keeps it, which a rebuild starts from.
    pub sql: String,
}

impl TableInfo {
    /// One of the emulated catalog relations rather than a user table.
    pub fn is_system(&self) -> bool {
        self.oid < FIRST_USER_OID
    }

    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The Postgres name of the unique constraint or index covering exactly `columns`.
    pub fn unique_constraint_name(&self, columns: &[&str]) -> String {
        let same = |cols: &[String]| {
            cols.len() == columns.len()
                && cols
                    .iter()
                    .zip(columns)
                    .all(|(a, b)| a.eq_ignore_ascii_case(b))
        };
        if !self.primary_key.is_empty() && same(&self.primary_key) {
            return self.pk_name.clone();
        }
        if let Some(index) = self.indexes.iter().find(|i| i.unique && same(&i.columns)) {
            return index.name.clone();
        }
        format!("{}_{}_key", self.name, columns.join("_"))
    }
}

/// A snapshot of every table's description. Immutable; replaced as a whole after DDL.
#[derive(Debug, Default)]
pub struct Schema {
    /// Identifies this snapshot in the translation cache.
    pub id: u64,
    pub tables: HashMap<String, Arc<TableInfo>>,
}

impl Schema {
    /// A user table, or else one of the emulated `pg_catalog` relations.
    pub fn table(&self, name: &str) -> Option<&Arc<TableInfo>> {
        self.tables
            .get(name)
            .or_else(|| self.tables.get(&name.to_ascii_lowercase()))
            .or_else(|| crate::pg_catalog::system_tables().get(name))
    }

    pub fn table_by_oid(&self, oid: u32) -> Option<&Arc<TableInfo>> {
        self.tables.values().find(|t| t.oid == oid)
    }
}

/// The SQLite declaration for a Postgres type: the affinity that stores its values unchanged.
pub fn sqlite_decl(ty: PgType) -> &'static str {
    match ty {
        PgType::Bool | PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Oid => "INTEGER",
        PgType::Float4 | PgType::Float8 => "REAL",
        PgType::Numeric => "NUMERIC",
        PgType::Bytea => "BLOB",
        _ => "TEXT",
    }
}

/// A Postgres type for a column SQLite declared without our catalog.
fn guess_from_decl(decl: &str) -> Ty {
    if let Some((ty, typmod)) = PgType::parse_sql_name(decl) {
        return Ty { ty, typmod };
    }
    let upper = decl.to_ascii_uppercase();
    let ty = if upper.contains("INT") {
        PgType::Int8
    } else if upper.contains("CHAR") || upper.contains("CLOB") || upper.contains("TEXT") {
        PgType::Text
    } else if upper.contains("BLOB") {
        PgType::Bytea
    } else if upper.contains("REAL") || upper.contains("FLOA") || upper.contains("DOUB") {
        PgType::Float8
    } else if upper.is_empty() {
        PgType::Text
    } else {
        PgType::Numeric
    };
    Ty::of(ty)
}

pub(crate) fn is_internal_table(name: &str) -> bool {
    name.starts_with("sqlite_") || (name.starts_with("__mycelium") && !is_system_table(name))
}

/// Tables the proxy keeps on every node (table policies, roles, grants, owners, the counters
/// of sharded serial columns, the sequences of CREATE SEQUENCE) or reads
/// (the conflicts replication records): queryable by SQL like any table, but left out of the
/// emulated `pg_catalog`, so clients never see them.
pub(crate) fn is_system_table(name: &str) -> bool {
    matches!(
        name,
        "__mycelium_policies"
            | "__mycelium_conflicts"
            | "__mycelium_roles"
            | "__mycelium_role_members"
            | "__mycelium_grants"
            | "__mycelium_owners"
            | "__mycelium_counters"
            | "__mycelium_named_sequences"
    )
}

/// Reads the whole schema through `conn` (inside whatever transaction it has open).
pub fn load(conn: &Connection, id: u64) -> rusqlite::Result<Schema> {
    let mut tables = HashMap::new();
    let mut objects = conn.prepare(
        "SELECT m.name, m.type, t.oid, t.pk_name, m.sql FROM sqlite_master m \
         LEFT JOIN __mycelium_tables t ON t.name = m.name \
         WHERE m.type IN ('table', 'view')",
    )?;
    let rows = objects.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Option<i64>>(2)?,
            row.get::<_, Option<String>>(3)?,
            row.get::<_, Option<String>>(4)?,
        ))
    })?;
    for row in rows {
        let (name, kind, oid, pk_name, sql) = row?;
        if is_internal_table(&name) {
            continue;
        }
        let oid = match oid {
            Some(oid) => FIRST_USER_OID + u32::try_from(oid).unwrap_or(0),
            None => fallback_oid(&name),
        };
        let mut table = load_table(conn, &name, oid, kind == "view", pk_name)?;
        table.sql = sql.unwrap_or_default();
        tables.insert(name.to_ascii_lowercase(), Arc::new(table));
    }
    Ok(Schema { id, tables })
}

fn fallback_oid(name: &str) -> u32 {
    // Stable across restarts: FNV-1a of the name, kept clear of the catalog's range.
    let mut hash: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    1_000_000 + hash % 1_000_000_000
}

fn load_table(
    conn: &Connection,
    name: &str,
    oid: u32,
    is_view: bool,
    pk_name: Option<String>,
) -> rusqlite::Result<TableInfo> {
    let mut typed: HashMap<String, (u32, i32, Option<String>)> = HashMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT column_name, type_oid, typmod, default_pg FROM __mycelium_columns WHERE table_name = ?1",
    )?;
    let rows = stmt.query_map([name], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, u32>(1)?,
            row.get::<_, i32>(2)?,
            row.get::<_, Option<String>>(3)?,
        ))
    })?;
    for row in rows {
        let (column, type_oid, typmod, default_pg) = row?;
        typed.insert(column.to_ascii_lowercase(), (type_oid, typmod, default_pg));
    }

    let mut columns = Vec::new();
    let mut pk: Vec<(i64, String)> = Vec::new();
    let mut info = conn.prepare(&format!("PRAGMA table_info({})", quote_ident(name)))?;
    let rows = info.query_map([], |row| {
        Ok((
            row.get::<_, String>(1)?,
            row.get::<_, Option<String>>(2)?.unwrap_or_default(),
            row.get::<_, bool>(3)?,
            row.get::<_, Option<String>>(4)?,
            row.get::<_, i64>(5)?,
        ))
    })?;
    let mut hidden_rowid = false;
    for row in rows {
        let (column, decl, not_null, default_sql, pk_index) = row?;
        if column == HIDDEN_ROWID {
            hidden_rowid = true;
            continue;
        }
        let index = columns.len();
        let (ty, default_pg) = match typed.get(&column.to_ascii_lowercase()) {
            Some((type_oid, typmod, default_pg)) => (
                PgType::from_oid(*type_oid)
                    .map(|ty| Ty {
                        ty,
                        typmod: *typmod,
                    })
                    .unwrap_or_else(|| guess_from_decl(&decl)),
                default_pg.clone(),
            ),
            None => (guess_from_decl(&decl), default_sql.clone()),
        };
        if pk_index > 0 {
            pk.push((pk_index, column.clone()));
        }
        columns.push(ColumnInfo {
            name: column,
            ty,
            attnum: i16::try_from(index + 1).unwrap_or(i16::MAX),
            not_null: not_null || pk_index > 0,
            default_sql,
            default_pg,
        });
    }
    pk.sort();
    let mut primary_key: Vec<String> = pk.into_iter().map(|(_, c)| c).collect();
    let mut pk_name = pk_name.unwrap_or_else(|| format!("{name}_pkey"));

    let mut indexes = Vec::new();
    if !is_view {
        let mut list = conn.prepare(&format!("PRAGMA index_list({})", quote_ident(name)))?;
        let rows = list.query_map([], |row| {
            Ok((
                row.get::<_, String>(1)?,
                row.get::<_, bool>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        let listed: Vec<_> = rows.collect::<rusqlite::Result<_>>()?;
        for (index_name, unique, origin) in listed {
            let mut cols =
                conn.prepare(&format!("PRAGMA index_info({})", quote_ident(&index_name)))?;
            let names: Vec<String> = cols
                .query_map([], |row| row.get::<_, Option<String>>(2))?
                .filter_map(|r| r.ok().flatten())
                .collect();
            let sql: Option<String> = conn
                .prepare_cached("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1")?
                .query_row([&index_name], |row| row.get(0))?;
            let primary = origin == "pk" || index_name.ends_with("_pkey");
            if primary && primary_key.is_empty() {
                // `ALTER TABLE ADD PRIMARY KEY` becomes a unique index: SQLite cannot add one.
                primary_key = names.clone();
                pk_name = index_name.clone();
            }
            let display = if index_name.starts_with("sqlite_autoindex_") {
                if origin == "pk" {
                    pk_name.clone()
                } else {
                    format!("{name}_{}_key", names.join("_"))
                }
            } else {
                index_name
            };
            indexes.push(IndexInfo {
                name: display,
                columns: names,
                unique,
                primary,
                sql,
            });
        }
    }
    if !primary_key.is_empty() && !indexes.iter().any(|i| i.primary) {
        // An INTEGER PRIMARY KEY is the rowid itself: SQLite lists no index for it, Postgres
        // shows one.
        indexes.insert(
            0,
            IndexInfo {
                name: pk_name.clone(),
                columns: primary_key.clone(),
                unique: true,
                primary: true,
                sql: None,
            },
        );
    }
    let foreign_keys = if is_view {
        Vec::new()
    } else {
        load_foreign_keys(conn, name)?
    };
    Ok(TableInfo {
        name: name.to_owned(),
        oid,
        is_view,
        columns,
        primary_key,
        pk_name,
        indexes,
        foreign_keys,
        hidden_rowid,
        sql: String::new(),
    })
}

/// The table's foreign keys in declaration order, named as Postgres names them.
fn load_foreign_keys(conn: &Connection, name: &str) -> rusqlite::Result<Vec<ForeignKeyInfo>> {
    let mut list = conn.prepare(&format!("PRAGMA foreign_key_list({})", quote_ident(name)))?;
    let rows = list.query_map([], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, Option<String>>(4)?,
            row.get::<_, String>(5)?,
            row.get::<_, String>(6)?,
        ))
    })?;
    // One row per column; SQLite numbers the keys from the last declared.
    let mut keys: BTreeMap<Reverse<i64>, ForeignKeyInfo> = BTreeMap::new();
    for row in rows {
        let (id, table, from, to, on_update, on_delete) = row?;
        let key = keys.entry(Reverse(id)).or_insert_with(|| ForeignKeyInfo {
            name: String::new(),
            columns: Vec::new(),
            table,
            referred: Vec::new(),
            on_update,
            on_delete,
        });
        key.columns.push(from);
        key.referred.extend(to);
    }
    let mut used: Vec<String> = Vec::new();
    let mut out: Vec<ForeignKeyInfo> = keys.into_values().collect();
    for key in &mut out {
        // Postgres adds a number when the name is taken: `t_a_fkey`, `t_a_fkey1`, ...
        let base = format!("{name}_{}_fkey", key.columns.join("_"));
        let mut candidate = base.clone();
        let mut n = 0;
        while used.contains(&candidate) {
            n += 1;
            candidate = format!("{base}{n}");
        }
        used.push(candidate.clone());
        key.name = candidate;
    }
    Ok(out)
}

/// Quotes an identifier for SQLite.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for SQLite.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
