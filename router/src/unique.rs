//! Uniqueness on a sharded table: each node checks PRIMARY KEY and UNIQUE constraints against
//! its own rows only, so a constraint is enforced cluster-wide only when it includes the shard
//! key (equal keys then always meet on one shard). Citus refuses the others the same way.

use sqlparser::ast::{ColumnOption, Expr, Statement, TableConstraint};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::route::table_name;

/// The unique constraints a CREATE TABLE or CREATE UNIQUE INDEX declares, with its table.
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
    let column = |expr: &Expr| match expr {
        Expr::Identifier(ident) => ident.value.to_ascii_lowercase(),
        other => other.to_string(),
    };
    let listed =
        |what: &str, columns: Vec<String>| (format!("{what} ({})", columns.join(", ")), columns);
    match statement {
        Statement::CreateTable(create) => {
            let mut keys = Vec::new();
            for def in &create.columns {
                let name = def.name.value.to_ascii_lowercase();
                for option in &def.options {
                    match option.option {
                        ColumnOption::PrimaryKey(_) => {
                            keys.push(listed("PRIMARY KEY", vec![name.clone()]));
                        }
                        ColumnOption::Unique(_) => keys.push(listed("UNIQUE", vec![name.clone()])),
                        _ => {}
                    }
                }
            }
            for constraint in &create.constraints {
                match constraint {
                    TableConstraint::PrimaryKey(key) => keys.push(listed(
                        "PRIMARY KEY",
                        key.columns.iter().map(|c| column(&c.column.expr)).collect(),
                    )),
                    TableConstraint::Unique(key) => keys.push(listed(
                        "UNIQUE",
                        key.columns.iter().map(|c| column(&c.column.expr)).collect(),
                    )),
                    _ => {}
                }
            }
            Some(UniqueKeys {
                table: table_name(&create.name),
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
        assert_eq!(unique_keys("CREATE INDEX i ON u (email)"), None);
        assert_eq!(unique_keys("SELECT 1"), None);
    }
}
