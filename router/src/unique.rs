//! Schema changes a sharded table cannot take. Uniqueness: each node checks PRIMARY KEY and
//! UNIQUE constraints against its own rows only, so a constraint is enforced cluster-wide only
//! when it includes the shard key (equal keys then always meet on one shard); Citus refuses the
//! others the same way. Names: a table's policy (its shards, their nodes, its shard key) is
//! known by the table's and the key columns' names, so renaming or dropping them would leave
//! the rows where no statement finds them.

use sqlparser::ast::{
    AlterTableOperation, ColumnDef, ColumnOption, Expr, Statement, TableConstraint,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::route::table_name;

/// The unique constraints a CREATE TABLE, CREATE UNIQUE INDEX or ALTER TABLE ... ADD
/// declares, with its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKeys {
    pub table: String,
    /// Each constraint as written (`PRIMARY KEY (email)`) and its columns, lower-cased; an
    /// expression column is kept as its text, which no shard key equals.
    pub keys: Vec<(String, Vec<String>)>,
}

impl UniqueKeys {
    /// The first constraint that leaves out one of `shard_keys`.
    pub fn without(&self, shard_keys: &[String]) -> Option<&str> {
        self.keys
            .iter()
            .find(|(_, columns)| !shard_keys.iter().all(|key| columns.contains(key)))
            .map(|(what, _)| what.as_str())
    }
}

/// `None` for any other statement (or one the parser does not know).
pub fn unique_keys(sql: &str) -> Option<UniqueKeys> {
    let statement = parse(sql)?;
    if let Statement::CreateIndex(index) = &statement {
        return index.unique.then(|| UniqueKeys {
            table: table_name(&index.table_name),
            keys: vec![listed(
                "UNIQUE INDEX",
                index
                    .columns
                    .iter()
                    .map(|c| column(&c.column.expr))
                    .collect(),
            )],
        });
    }
    let (table, columns, constraints) = declared(&statement)?;
    let mut keys: Vec<Key> = columns.into_iter().flat_map(column_keys).collect();
    keys.extend(constraints.into_iter().filter_map(constraint_key));
    Some(UniqueKeys { table, keys })
}

fn parse(sql: &str) -> Option<Statement> {
    Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .ok()?
        .into_iter()
        .next()
}

/// The table a CREATE TABLE or ALTER TABLE declares things on, with the columns and table
/// constraints it adds.
fn declared(statement: &Statement) -> Option<(String, Vec<&ColumnDef>, Vec<&TableConstraint>)> {
    match statement {
        Statement::CreateTable(create) => Some((
            table_name(&create.name),
            create.columns.iter().collect(),
            create.constraints.iter().collect(),
        )),
        Statement::AlterTable(alter) => {
            let mut columns = Vec::new();
            let mut constraints = Vec::new();
            for operation in &alter.operations {
                match operation {
                    AlterTableOperation::AddConstraint { constraint, .. } => {
                        constraints.push(constraint);
                    }
                    AlterTableOperation::AddColumn { column_def, .. } => columns.push(column_def),
                    _ => {}
                }
            }
            Some((table_name(&alter.name), columns, constraints))
        }
        _ => None,
    }
}

type Key = (String, Vec<String>);

fn listed(what: &str, columns: Vec<String>) -> Key {
    (format!("{what} ({})", columns.join(", ")), columns)
}

fn column(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => ident.value.to_ascii_lowercase(),
        other => other.to_string(),
    }
}

/// `PRIMARY KEY` and `UNIQUE` written on a column.
fn column_keys(def: &ColumnDef) -> Vec<Key> {
    let name = def.name.value.to_ascii_lowercase();
    def.options
        .iter()
        .filter_map(|option| match option.option {
            ColumnOption::PrimaryKey(_) => Some(listed("PRIMARY KEY", vec![name.clone()])),
            ColumnOption::Unique(_) => Some(listed("UNIQUE", vec![name.clone()])),
            _ => None,
        })
        .collect()
}

/// A PRIMARY KEY or UNIQUE table constraint.
fn constraint_key(constraint: &TableConstraint) -> Option<Key> {
    match constraint {
        TableConstraint::PrimaryKey(key) => Some(listed(
            "PRIMARY KEY",
            key.columns.iter().map(|c| column(&c.column.expr)).collect(),
        )),
        TableConstraint::Unique(key) => Some(listed(
            "UNIQUE",
            key.columns.iter().map(|c| column(&c.column.expr)).collect(),
        )),
        _ => None,
    }
}

/// A FOREIGN KEY: the referencing columns, the referenced table and its columns (empty: its
/// primary key), lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub columns: Vec<String>,
    pub table: String,
    pub referred: Vec<String>,
}

/// The foreign keys a CREATE TABLE or ALTER TABLE ... ADD declares, with the table declaring
/// them; `None` for other statements.
pub fn foreign_keys(sql: &str) -> Option<(String, Vec<ForeignKey>)> {
    let statement = parse(sql)?;
    let (table, columns, constraints) = declared(&statement)?;
    let lower = |idents: &[sqlparser::ast::Ident]| -> Vec<String> {
        idents
            .iter()
            .map(|i| i.value.to_ascii_lowercase())
            .collect()
    };
    let mut keys: Vec<ForeignKey> = Vec::new();
    for def in columns {
        for option in &def.options {
            if let ColumnOption::ForeignKey(fk) = &option.option {
                keys.push(ForeignKey {
                    columns: vec![def.name.value.to_ascii_lowercase()],
                    table: table_name(&fk.foreign_table),
                    referred: lower(&fk.referred_columns),
                });
            }
        }
    }
    for constraint in constraints {
        if let TableConstraint::ForeignKey(fk) = constraint {
            keys.push(ForeignKey {
                columns: lower(&fk.columns),
                table: table_name(&fk.foreign_table),
                referred: lower(&fk.referred_columns),
            });
        }
    }
    Some((table, keys))
}

/// What an ALTER TABLE renames or drops.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Renames {
    pub table: String,
    pub renames_table: bool,
    /// Columns renamed or dropped, lower-cased.
    pub columns: Vec<String>,
}

/// `None` for anything but an ALTER TABLE.
pub fn renames(sql: &str) -> Option<Renames> {
    let Statement::AlterTable(alter) = parse(sql)? else {
        return None;
    };
    let mut found = Renames {
        table: table_name(&alter.name),
        ..Renames::default()
    };
    for operation in &alter.operations {
        match operation {
            AlterTableOperation::RenameTable { .. } => found.renames_table = true,
            AlterTableOperation::RenameColumn {
                old_column_name, ..
            } => found
                .columns
                .push(old_column_name.value.to_ascii_lowercase()),
            AlterTableOperation::DropColumn { column_names, .. } => found
                .columns
                .extend(column_names.iter().map(|c| c.value.to_ascii_lowercase())),
            _ => {}
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(sql: &str, shard_keys: &[&str]) -> Option<String> {
        let keys: Vec<String> = shard_keys.iter().map(|k| (*k).to_owned()).collect();
        unique_keys(sql)
            .expect("a statement with keys")
            .without(&keys)
            .map(str::to_owned)
    }

    #[test]
    fn constraints_must_include_the_shard_key() {
        let create = "CREATE TABLE u (email text PRIMARY KEY, tenant int, nick text UNIQUE)";
        assert_eq!(
            missing(create, &["tenant"]).as_deref(),
            Some("PRIMARY KEY (email)")
        );
        assert_eq!(
            missing(create, &["email"]).as_deref(),
            Some("UNIQUE (nick)")
        );
        let composite = "CREATE TABLE u (email text, Tenant int, PRIMARY KEY (email, tenant), \
                         UNIQUE (tenant, email)) WITH (mycelium.shard_keys = 'tenant')";
        assert_eq!(missing(composite, &["tenant"]), None);
        assert_eq!(
            missing(composite, &["tenant", "region"]).as_deref(),
            Some("PRIMARY KEY (email, tenant)")
        );
        assert_eq!(missing("CREATE TABLE t (a int, b int)", &["a"]), None);
        assert_eq!(
            missing("CREATE UNIQUE INDEX ON u (lower(email))", &["tenant"]).as_deref(),
            Some("UNIQUE INDEX (lower(email))")
        );
        assert_eq!(
            missing("CREATE UNIQUE INDEX i ON u (tenant, email)", &["tenant"]),
            None
        );
        assert_eq!(
            missing(
                "ALTER TABLE u ADD CONSTRAINT one UNIQUE (email)",
                &["tenant"]
            )
            .as_deref(),
            Some("UNIQUE (email)")
        );
        assert_eq!(
            missing("ALTER TABLE u ADD COLUMN code text UNIQUE", &["tenant"]).as_deref(),
            Some("UNIQUE (code)")
        );
        assert_eq!(
            missing("ALTER TABLE u ADD UNIQUE (tenant, email)", &["tenant"]),
            None
        );
        assert_eq!(
            missing("ALTER TABLE u ADD COLUMN note text", &["tenant"]),
            None
        );
        assert_eq!(unique_keys("CREATE INDEX i ON u (email)"), None);
        assert_eq!(unique_keys("SELECT 1"), None);
    }

    #[test]
    fn foreign_keys_are_found() {
        let (table, keys) = foreign_keys(
            "CREATE TABLE Lines (order_id bigint REFERENCES orders, n int, \
             FOREIGN KEY (Order_Id, n) REFERENCES other (a, b))",
        )
        .expect("create");
        assert_eq!(table, "lines");
        assert_eq!(
            keys,
            [
                ForeignKey {
                    columns: vec!["order_id".into()],
                    table: "orders".into(),
                    referred: vec![]
                },
                ForeignKey {
                    columns: vec!["order_id".into(), "n".into()],
                    table: "other".into(),
                    referred: vec!["a".into(), "b".into()]
                }
            ]
        );
        let (_, keys) =
            foreign_keys("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id)")
                .expect("alter");
        assert_eq!(keys[0].table, "u");
        assert_eq!(foreign_keys("SELECT 1"), None);
    }

    #[test]
    fn renames_and_drops_are_found() {
        let found = renames("ALTER TABLE Acct RENAME TO other").expect("alter");
        assert!(found.renames_table && found.table == "acct");
        let found = renames("ALTER TABLE t RENAME COLUMN Tenant TO owner").expect("alter");
        assert_eq!(found.columns, ["tenant"]);
        let found = renames("ALTER TABLE t DROP COLUMN a, DROP COLUMN IF EXISTS b").expect("alter");
        assert_eq!(found.columns, ["a", "b"]);
        assert!(!found.renames_table);
        assert_eq!(renames("DROP TABLE t"), None);
    }
}
