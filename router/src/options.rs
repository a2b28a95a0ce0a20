//! Table policies written in SQL: `CREATE TABLE t (...) WITH (mycelium.shard_keys = 'id', ...)`
//! and `ALTER TABLE t SET (mycelium.shards = 8)`.

use sqlparser::ast::{AlterTableOperation, CreateTableOptions, Expr, SqlOption, Statement, Value};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::RouterError;
use crate::policy::{PolicyError, ReplicaRole, TablePolicy};
use crate::route::table_name;

/// The `mycelium.*` storage parameters of a CREATE TABLE or ALTER TABLE ... SET statement.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyOptions {
    pub table: String,
    /// True for `ALTER TABLE ... SET (...)`, false for `CREATE TABLE ... WITH (...)`.
    pub alter: bool,
    /// Only the `mycelium.*` options, key without the prefix, value as text.
    pub options: Vec<(String, String)>,
    /// Whether the statement had options other than `mycelium.*` (then it must still reach the
    /// nodes; an ALTER with only `mycelium.*` options is the proxy's alone).
    pub other_options: bool,
}

/// Finds the `mycelium.*` options of a CREATE TABLE / ALTER TABLE SET statement, if any.
pub fn policy_options(sql: &str) -> Result<Option<PolicyOptions>, RouterError> {
    // Statements the parser does not know (VACUUM ANALYZE t, ...) carry no policy.
    let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Ok(None);
    };
    let Some(statement) = statements.first() else {
        return Ok(None);
    };
    let (table, alter, options) = match statement {
        Statement::CreateTable(create) => match &create.table_options {
            CreateTableOptions::With(options) => (table_name(&create.name), false, options),
            _ => return Ok(None),
        },
        Statement::AlterTable(alter) => {
            let [AlterTableOperation::SetOptionsParens { options }] = alter.operations.as_slice()
            else {
                return Ok(None);
            };
            (table_name(&alter.name), true, options)
        }
        _ => return Ok(None),
    };
    let mut found = PolicyOptions {
        table,
        alter,
        options: Vec::new(),
        other_options: false,
    };
    for option in options {
        let SqlOption::KeyValue { key, value } = option else {
            found.other_options = true;
            continue;
        };
        let key = key.to_string().to_ascii_lowercase();
        match key.strip_prefix("mycelium.") {
            Some(name) => found.options.push((name.to_owned(), option_value(value)?)),
            None => found.other_options = true,
        }
    }
    Ok((!found.options.is_empty()).then_some(found))
}

fn option_value(value: &Expr) -> Result<String, RouterError> {
    match value {
        Expr::Value(v) => Ok(match &v.value {
            Value::SingleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.clone(),
            Value::Boolean(b) => b.to_string(),
            other => other.to_string(),
        }),
        Expr::Identifier(ident) => Ok(ident.value.clone()),
        Expr::UnaryOp { .. } => Ok(value.to_string()),
        other => Err(RouterError::Syntax(format!(
            "mycelium option values must be constants, got {other}"
        ))),
    }
}

/// Applies options to a policy, validating each value. Unknown keys are refused by name.
pub fn apply_options(
    mut policy: TablePolicy,
    options: &[(String, String)],
) -> Result<TablePolicy, PolicyError> {
    let table = policy.table.clone();
    let invalid = |key: &str, value: &str, why: &str| PolicyError {
        table: table.clone(),
        reason: format!("mycelium.{key} = '{value}': {why}"),
    };
    let boolean = |key: &str, value: &str| match value.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" | "yes" => Ok(true),
        "false" | "off" | "0" | "no" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    };
    let list = |value: &str| -> Vec<String> {
        value
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let mut shards_given = false;
    for (key, value) in options {
        match key.as_str() {
            "shard_keys" => policy.shard_keys = list(value),
            "shards" => {
                policy.shards = value
                    .parse()
                    .map_err(|_| invalid(key, value, "expected a positive integer"))?;
                shards_given = true;
            }
            "replication_factor" => {
                policy.replication_factor = value
                    .parse()
                    .map_err(|_| invalid(key, value, "expected a number in (0, 1]"))?
            }
            "validator_only" => policy.validator_only = boolean(key, value)?,
            "min_validator_copies" => {
                policy.min_validator_copies = value
                    .parse()
                    .map_err(|_| invalid(key, value, "expected a non-negative integer"))?
            }
            "range_sharding" => policy.range_sharding = boolean(key, value)?,
            "ranges" => {
                policy.ranges = list(value)
                    .iter()
                    .map(|v| v.parse::<i64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| invalid(key, value, "expected comma-separated integers"))?
            }
            "read_roles" | "write_roles" => {
                let roles = list(value)
                    .iter()
                    .map(|r| match r.as_str() {
                        "primary" => Ok(ReplicaRole::Primary),
                        "secondary" => Ok(ReplicaRole::Secondary),
                        _ => Err(invalid(key, value, "roles are primary and secondary")),
                    })
                    .collect::<Result<_, _>>()?;
                if key == "read_roles" {
                    policy.read_roles = roles;
                } else {
                    policy.write_roles = roles;
                }
            }
            _ => {
                return Err(PolicyError {
                    table: table.clone(),
                    reason: format!(
                        "unknown option mycelium.{key}; known: shard_keys, shards, \
                         replication_factor, validator_only, min_validator_copies, \
                         range_sharding, ranges, read_roles, write_roles"
                    ),
                });
            }
        }
    }
    if policy.range_sharding && !shards_given {
        policy.shards = policy.ranges.len() as u32 + 1;
    }
    if policy.shard_keys.is_empty() {
        policy.shards = 1;
    }
    policy.validate()?;
    Ok(policy)
}

/// A policy as options, the inverse of [`apply_options`]; this is how policies are stored.
pub fn policy_to_options(policy: &TablePolicy) -> Vec<(String, String)> {
    let roles = |roles: &std::collections::BTreeSet<ReplicaRole>| {
        roles
            .iter()
            .map(|r| match r {
                ReplicaRole::Primary => "primary",
                ReplicaRole::Secondary => "secondary",
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    vec![
        ("shard_keys".to_owned(), policy.shard_keys.join(",")),
        ("shards".to_owned(), policy.shards.to_string()),
        (
            "replication_factor".to_owned(),
            policy.replication_factor.to_string(),
        ),
        (
            "validator_only".to_owned(),
            policy.validator_only.to_string(),
        ),
        (
            "min_validator_copies".to_owned(),
            policy.min_validator_copies.to_string(),
        ),
        ("read_roles".to_owned(), roles(&policy.read_roles)),
        ("write_roles".to_owned(), roles(&policy.write_roles)),
        (
            "range_sharding".to_owned(),
            policy.range_sharding.to_string(),
        ),
        (
            "ranges".to_owned(),
            policy
                .ranges
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]
}
