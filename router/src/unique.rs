//! Uniqueness on a sharded table: each node checks PRIMARY KEY and UNIQUE constraints against
//! its own rows only, so a constraint is enforced cluster-wide only when it includes the shard
//! key (equal keys then always meet on one shard). Citus refuses the others the same way.

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
    let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .ok()?
        .into_iter()
        .next()?;
    match statement {
        Statement::CreateTable(create) => {
            let mut keys: Vec<_> = create.columns.iter().flat_map(column_keys).collect();
            keys.extend(create.constraints.iter().filter_map(constraint_key));
            Some(UniqueKeys {
                table: table_name(&create.name),
                keys,
            })
        }
        Statement::AlterTable(alter) => {
            let mut keys = Vec::new();
            for operation in &alter.operations {
                match operation {
                    AlterTableOperation::AddConstraint { constraint, .. } => {
                        keys.extend(constraint_key(constraint));
                    }
                    AlterTableOperation::AddColumn { column_def, .. } => {
                        keys.extend(column_keys(column_def));
                    }
                    _ => {}
                }
            }
            Some(UniqueKeys {
                table: table_name(&alter.name),
                keys,
            })
        }
        Statement::CreateIndex(index) if index.unique => Some(UniqueKeys {
            table: table_name(&index.table_name),
            keys: vec![listed(
                "UNIQUE INDEX",
                index
                    .columns
                    .iter()
                    .map(|c| column(&c.column.expr))
                    .collect(),
            )],
        }),
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
}
