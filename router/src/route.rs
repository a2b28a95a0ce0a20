//! Routing: which shards a statement touches, from its shard-key predicates.
//!
//! Equality and `IN` on the shard key, as literals or `$n` parameters, pick shards; anything
//! else touches every shard. A statement the router cannot route correctly is refused with a
//! message saying why and how to rewrite it, never answered from the wrong shards.

use sqlparser::ast::{
    Assignment, AssignmentTarget, BinaryOperator, Expr, FromTable, Ident, InTarget, ObjectName,
    ObjectNamePart, OnConflict, OnConflictAction, OnInsert, Query, SetExpr, Statement, TableFactor,
    TableObject, TableWithJoins, UnaryOperator, Value,
};
use std::ops::ControlFlow;

use sqlparser::ast::{Visit, visit_relations};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::RouterError;
use crate::hash::KeyValue;
use crate::policy::TablePolicy;

/// Where table policies come from (the proxy's current view of the cluster).
pub trait PolicySource {
    /// The policy of `table` (lower-case, unqualified); a table nobody configured gets the
    /// default policy (a reference table), and a table that does not exist is the node's to
    /// report.
    fn policy(&self, table: &str) -> TablePolicy;

    /// Whether `table` has a policy of its own; tables without one share one placement.
    fn has_policy(&self, table: &str) -> bool;
}

/// One value of a shard key in a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyExpr {
    Value(KeyValue),
    /// `$n`, 1-based; resolved from the Bind message.
    Param(usize),
}

/// Which shards of a table a statement needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardChoice {
    /// Every shard.
    All,
    /// The shards of these keys (each a value per shard-key column).
    Keys(Vec<Vec<KeyExpr>>),
}

/// Where a statement goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Touches no table (`SELECT 1`, `SELECT now()`): any node answers.
    AnyNode,
    /// Reads `table`'s shards (with colocated tables joined in). `references` are unsharded
    /// tables joined in: each node that reads a shard of `table` joins its own copy of them,
    /// so the proxy runs the statement only where every one of them has a copy with rows.
    Read {
        table: String,
        shards: ShardChoice,
        references: Vec<String>,
    },
    /// Writes `table`'s shards.
    Write { table: String, shards: ShardChoice },
    /// `INSERT INTO table (columns) <select>` into a sharded table: the proxy runs the query
    /// and sends each row to its shard (no columns: every column, in table order).
    InsertSelect {
        table: String,
        columns: Vec<String>,
        select: String,
    },
    /// Changes the schema of these tables (every node gets it).
    Ddl { tables: Vec<String> },
}

/// Routes one statement.
pub fn route(sql: &str, policies: &dyn PolicySource) -> Result<Route, RouterError> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| RouterError::Syntax(e.to_string()))?;
    if statements.len() != 1 {
        return Err(RouterError::Syntax(
            "expected exactly one statement".to_owned(),
        ));
    }
    let statement = statements.remove(0);
    route_statement(&statement, policies)
}

fn route_statement(
    statement: &Statement,
    policies: &dyn PolicySource,
) -> Result<Route, RouterError> {
    match statement {
        Statement::Query(query) => route_query(query, policies),
        Statement::Insert(insert) => {
            let TableObject::TableName(name) = &insert.table else {
                return Err(unsupported("INSERT into a table function"));
            };
            let table = table_name(name);
            let policy = policy_of(policies, &table)?;
            match &insert.on {
                Some(OnInsert::OnConflict(OnConflict {
                    action: OnConflictAction::DoUpdate(update),
                    ..
                })) => keep_shard_keys(&table, &policy, &update.assignments)?,
                Some(OnInsert::DuplicateKeyUpdate(assignments)) => {
                    keep_shard_keys(&table, &policy, assignments)?;
                }
                _ => {}
            }
            let columns: Vec<String> = insert.columns.iter().map(last_part).collect();
            let select = insert
                .source
                .as_deref()
                .filter(|source| !matches!(source.body.as_ref(), SetExpr::Values(_)));
            if let Some(select) = select {
                // The node holding the target sees all the query's rows only when they are
                // not spread over nodes; otherwise the proxy runs the query and moves the rows.
                let reads_sharded = matches!(
                    route_query(select, policies),
                    Ok(Route::Read { ref table, .. }) if !policies.policy(table).is_reference()
                );
                if policy.is_reference() && !reads_sharded {
                    check_write_reads(statement, &table, &policy, policies)?;
                    return Ok(Route::Write {
                        table,
                        shards: ShardChoice::All,
                    });
                }
                if insert.on.is_some() || insert.returning.is_some() {
                    return Err(RouterError::Unsupported(format!(
                        "INSERT INTO {table} ... SELECT with ON CONFLICT or RETURNING is not \
                         supported when the table or the query's rows are spread over nodes: \
                         insert the rows with VALUES so each row can go to its shard"
                    )));
                }
                return Ok(Route::InsertSelect {
                    table,
                    columns,
                    select: select.to_string(),
                });
            }
            check_write_reads(statement, &table, &policy, policies)?;
            if policy.is_reference() {
                return Ok(Route::Write {
                    table,
                    shards: ShardChoice::All,
                });
            }
            let source = insert
                .source
                .as_deref()
                .ok_or_else(|| unsupported("INSERT without VALUES"))?;
            let SetExpr::Values(values) = source.body.as_ref() else {
                return Err(unsupported("INSERT without VALUES"));
            };
            if columns.is_empty() {
                return Err(RouterError::Unsupported(format!(
                    "INSERT into the sharded table {table} must name its columns, so the shard \
                     key ({}) can be found",
                    policy.shard_keys.join(", ")
                )));
            }
            let positions = policy
                .shard_keys
                .iter()
                .map(|key| {
                    columns.iter().position(|c| c == key).ok_or_else(|| {
                        RouterError::Unsupported(format!(
                            "INSERT into {table} must give the shard key column {key}"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut keys = Vec::with_capacity(values.rows.len());
            for row in &values.rows {
                let key = positions
                    .iter()
                    .map(|&p| row.get(p).and_then(key_expr))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        RouterError::Unsupported(format!(
                            "the shard key of a row inserted into {table} must be a constant or a \
                             parameter"
                        ))
                    })?;
                keys.push(key);
            }
            Ok(Route::Write {
                table,
                shards: ShardChoice::Keys(keys),
            })
        }
        Statement::Update(update) => {
            let table = single_table(&update.table)?;
            let policy = policy_of(policies, &table)?;
            keep_shard_keys(&table, &policy, &update.assignments)?;
            // FROM tables are read like a subquery's: only where they are whole.
            check_write_reads(statement, &table, &policy, policies)?;
            Ok(Route::Write {
                shards: choose(&policy, update.selection.as_ref(), &[table.as_str()]),
                table,
            })
        }
        Statement::Delete(delete) => {
            let tables = match &delete.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            let [from] = tables.as_slice() else {
                return Err(unsupported("DELETE from several tables"));
            };
            let table = single_table(from)?;
            // USING tables are read like a subquery's: only where they are whole.
            let policy = policy_of(policies, &table)?;
            check_write_reads(statement, &table, &policy, policies)?;
            Ok(Route::Write {
                shards: choose(&policy, delete.selection.as_ref(), &[table.as_str()]),
                table,
            })
        }
        Statement::CreateTable(create) => Ok(Route::Ddl {
            tables: vec![table_name(&create.name)],
        }),
        Statement::CreateView(view) => {
            // A node's view reads that node's rows: over a sharded table each node would show
            // a part of it, and reading the view would silently miss the rest.
            if let Some(sharded) = relations(&view.query)
                .into_iter()
                .find(|t| policies.has_policy(t) && !policies.policy(t).is_reference())
            {
                return Err(RouterError::Unsupported(format!(
                    "a view over the sharded table {sharded} would show only one node's rows; \
                     query {sharded} directly"
                )));
            }
            Ok(Route::Ddl {
                tables: vec![table_name(&view.name)],
            })
        }
        Statement::CreateIndex(index) => Ok(Route::Ddl {
            tables: vec![table_name(&index.table_name)],
        }),
        Statement::AlterTable(alter) => {
            let table = table_name(&alter.name);
            if policies.has_policy(&table) && alter.operations.iter().any(depends_on_rows) {
                return Err(RouterError::Unsupported(format!(
                    "ALTER COLUMN ... TYPE or SET NOT NULL on {table}, which has a placement \
                     policy: its copies receive the statement and the table's rows through \
                     different logs and could apply it before rows written earlier"
                )));
            }
            Ok(Route::Ddl {
                tables: vec![table],
            })
        }
        Statement::Drop { names, .. } => Ok(Route::Ddl {
            tables: names.iter().map(table_name).collect(),
        }),
        Statement::Truncate(truncate) => Ok(Route::Ddl {
            tables: truncate
                .table_names
                .iter()
                .map(|t| table_name(&t.name))
                .collect(),
        }),
        Statement::Explain {
            statement: inner,
            analyze,
            options,
            ..
        } => route_explain(
            inner,
            *analyze || analyze_option(options.as_deref()),
            policies,
        ),
        _ => Ok(Route::AnyNode),
    }
}

/// `EXPLAIN` goes where its statement would: a plan only means something on the nodes that
/// hold the rows. Without ANALYZE nothing runs, so a write is explained on the copies its
/// rows are on, like a read; with ANALYZE a write really runs, so it goes to the primaries
/// as the write would.
fn route_explain(
    inner: &Statement,
    analyze: bool,
    policies: &dyn PolicySource,
) -> Result<Route, RouterError> {
    match route_statement(inner, policies)? {
        Route::Write { table, shards } if !analyze => Ok(Route::Read {
            table,
            shards,
            references: Vec::new(),
        }),
        Route::InsertSelect { .. } | Route::Ddl { .. } if analyze => Err(RouterError::Unsupported(
            "EXPLAIN ANALYZE of a statement that the proxy splits (INSERT ... SELECT into \
                 a sharded table) or that changes the schema: run EXPLAIN without ANALYZE for \
                 its plan"
                .to_owned(),
        )),
        Route::InsertSelect { .. } | Route::Ddl { .. } => Ok(Route::AnyNode),
        route => Ok(route),
    }
}

/// The statement an `EXPLAIN ANALYZE` runs, as text; `None` for anything else (an EXPLAIN
/// without ANALYZE runs nothing).
pub fn analyzed_statement(sql: &str) -> Option<String> {
    match Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .ok()?
        .as_slice()
    {
        [
            Statement::Explain {
                statement,
                analyze,
                options,
                ..
            },
        ] if *analyze || analyze_option(options.as_deref()) => Some(statement.to_string()),
        _ => None,
    }
}

/// Whether Postgres's `EXPLAIN (ANALYZE [true|on|1], ...)` list asks to run the statement.
fn analyze_option(options: Option<&[sqlparser::ast::UtilityOption]>) -> bool {
    options.unwrap_or_default().iter().any(|option| {
        let name = option.name.value.to_ascii_lowercase();
        (name == "analyze" || name == "analyse")
            && option.arg.as_ref().is_none_or(|arg| {
                let word = arg.to_string().to_ascii_lowercase();
                matches!(word.trim_matches('\''), "true" | "on" | "1" | "yes")
            })
    })
}

/// An ALTER TABLE action whose effect depends on the rows present when it runs: a copy must
/// apply it after every earlier row, which only one shared log guarantees (tables without a
/// policy).
fn depends_on_rows(operation: &sqlparser::ast::AlterTableOperation) -> bool {
    use sqlparser::ast::{AlterColumnOperation, AlterTableOperation};
    matches!(
        operation,
        AlterTableOperation::AlterColumn {
            op: AlterColumnOperation::SetNotNull | AlterColumnOperation::SetDataType { .. },
            ..
        }
    )
}

fn route_query(query: &Query, policies: &dyn PolicySource) -> Result<Route, RouterError> {
    let tables = relations(query);
    let sharded: Vec<&String> = tables
        .iter()
        .filter(|t| policies.has_policy(t) && !policies.policy(t).is_reference())
        .collect();
    if sharded.is_empty() {
        // Unsharded tables each live whole on one node (tables without a policy all on the
        // same one): a query over them runs there, whatever its shape.
        let mut groups: Vec<&String> = tables.iter().filter(|t| policies.has_policy(t)).collect();
        groups.dedup();
        let default_tables: Vec<&String> =
            tables.iter().filter(|t| !policies.has_policy(t)).collect();
        return match (groups.as_slice(), default_tables.first()) {
            ([], None) => Ok(Route::AnyNode),
            ([], Some(table)) | ([table], None) => Ok(Route::Read {
                table: (*table).clone(),
                shards: ShardChoice::All,
                references: Vec::new(),
            }),
            _ => Err(RouterError::Unsupported(format!(
                "this query reads tables that live on different nodes ({}); query them \
                 separately",
                tables.join(", ")
            ))),
        };
    }
    if query.with.is_some() {
        return Err(unsupported("WITH queries over sharded tables"));
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(unsupported("UNION/INTERSECT/EXCEPT over sharded tables"));
    };
    let mut tables = Vec::new();
    for from in &select.from {
        collect_tables(from, &mut tables)?;
    }
    if tables.is_empty() {
        return Ok(Route::AnyNode);
    }
    let from_tables: Vec<&String> = tables.iter().map(|(name, _)| name).collect();
    if let Some(other) = relations(query)
        .into_iter()
        .find(|t| !from_tables.contains(&t))
    {
        return Err(RouterError::Unsupported(format!(
            "a subquery over {other} inside a query over sharded tables is not supported; run \
             it as its own query"
        )));
    }
    let mut sharded: Vec<(String, String, TablePolicy)> = Vec::new();
    let mut references: Vec<String> = Vec::new();
    for (name, alias) in tables {
        let policy = policy_of(policies, &name)?;
        if policy.is_reference() {
            if !references.contains(&name) {
                references.push(name);
            }
        } else {
            sharded.push((name, alias, policy));
        }
    }
    let Some((table, alias, policy)) = sharded.first().cloned() else {
        return Ok(Route::Read {
            table: references.first().cloned().unwrap_or_default(),
            shards: ShardChoice::All,
            references: Vec::new(),
        });
    };
    for (other, other_alias, other_policy) in &sharded[1..] {
        if !colocated(&policy, other_policy) {
            return Err(RouterError::Unsupported(format!(
                "join of {table} and {other}: they are not sharded alike (same shard key count, \
                 shard count, ranges and copy rules), so the join cannot run shard by shard"
            )));
        }
        if !joined_on_keys(
            select,
            &policy,
            &[&table, &alias],
            other_policy,
            &[other, other_alias],
        ) {
            return Err(RouterError::Unsupported(format!(
                "join of {table} and {other} must be on their shard keys ({} = {}), so each \
                 shard can join its own rows",
                policy.shard_keys.join(", "),
                other_policy.shard_keys.join(", ")
            )));
        }
    }
    Ok(Route::Read {
        shards: choose(
            &policy,
            select.selection.as_ref(),
            &[table.as_str(), alias.as_str()],
        ),
        table,
        references,
    })
}

/// Tables in one placement group with the same copy rules keep shard `s` on the same nodes.
fn colocated(a: &TablePolicy, b: &TablePolicy) -> bool {
    crate::placement::placement_group(a) == crate::placement::placement_group(b)
        && a.replication_factor == b.replication_factor
        && a.min_validator_copies == b.min_validator_copies
}

/// Whether the join conditions equate every shard key of the two tables, position by position.
fn joined_on_keys(
    select: &sqlparser::ast::Select,
    left: &TablePolicy,
    left_names: &[&str],
    right: &TablePolicy,
    right_names: &[&str],
) -> bool {
    let mut conditions = Vec::new();
    for from in &select.from {
        for join in &from.joins {
            if let Some(expr) = join_condition(&join.join_operator) {
                conjuncts(expr, &mut conditions);
            }
        }
    }
    if let Some(selection) = &select.selection {
        conjuncts(selection, &mut conditions);
    }
    left.shard_keys
        .iter()
        .zip(&right.shard_keys)
        .all(|(lk, rk)| {
            conditions.iter().any(|c| match c {
                Expr::BinaryOp {
                    left: a,
                    op: BinaryOperator::Eq,
                    right: b,
                } => {
                    (is_column(a, lk, left_names) && is_column(b, rk, right_names))
                        || (is_column(b, lk, left_names) && is_column(a, rk, right_names))
                }
                _ => false,
            })
        })
}

fn join_condition(operator: &sqlparser::ast::JoinOperator) -> Option<&Expr> {
    use sqlparser::ast::{JoinConstraint, JoinOperator};
    let constraint = match operator {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c) => c,
        _ => return None,
    };
    match constraint {
        JoinConstraint::On(expr) => Some(expr),
        _ => None,
    }
}

/// The shards a WHERE clause pins, or all of them.
fn choose(policy: &TablePolicy, selection: Option<&Expr>, names: &[&str]) -> ShardChoice {
    if policy.is_reference() {
        return ShardChoice::All;
    }
    let Some(selection) = selection else {
        return ShardChoice::All;
    };
    let mut conditions = Vec::new();
    conjuncts(selection, &mut conditions);
    // For each key column, the values the conditions allow (one for =, several for IN).
    let mut per_key: Vec<Vec<KeyExpr>> = Vec::with_capacity(policy.shard_keys.len());
    for key in &policy.shard_keys {
        let allowed = conditions.iter().find_map(|c| key_values(c, key, names));
        match allowed {
            Some(values) => per_key.push(values),
            None => return ShardChoice::All,
        }
    }
    // The cross product of the allowed values: every key the statement can touch.
    let mut keys: Vec<Vec<KeyExpr>> = vec![Vec::new()];
    for values in per_key {
        keys = keys
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut key = prefix.clone();
                    key.push(v.clone());
                    key
                })
            })
            .collect();
        if keys.len() > 4096 {
            return ShardChoice::All;
        }
    }
    ShardChoice::Keys(keys)
}

fn key_values(condition: &Expr, key: &str, names: &[&str]) -> Option<Vec<KeyExpr>> {
    match condition {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            if is_column(left, key, names) {
                key_expr(right).map(|v| vec![v])
            } else if is_column(right, key, names) {
                key_expr(left).map(|v| vec![v])
            } else {
                None
            }
        }
        Expr::In {
            expr,
            target: InTarget::List(list),
            negated: false,
            ..
        } if is_column(expr, key, names) => list.iter().map(key_expr).collect(),
        Expr::Nested(inner) => key_values(inner, key, names),
        _ => None,
    }
}

/// A constant or parameter usable as a key value.
fn key_expr(expr: &Expr) -> Option<KeyExpr> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Number(n, _) => n
                .parse::<i64>()
                .ok()
                .map(|i| KeyExpr::Value(KeyValue::Int(i))),
            Value::SingleQuotedString(s) => Some(KeyExpr::Value(KeyValue::from_text(s))),
            Value::Placeholder(p) => p.strip_prefix('$')?.parse().ok().map(KeyExpr::Param),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match key_expr(expr)? {
            KeyExpr::Value(KeyValue::Int(i)) => {
                Some(KeyExpr::Value(KeyValue::Int(i.checked_neg()?)))
            }
            _ => None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => key_expr(expr),
        _ => None,
    }
}

fn is_column(expr: &Expr, column: &str, names: &[&str]) -> bool {
    match expr {
        Expr::Identifier(ident) => ident_is(ident, column),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [qualifier, name] => {
                ident_is(name, column)
                    && names
                        .iter()
                        .any(|n| !n.is_empty() && ident_is(qualifier, n))
            }
            _ => false,
        },
        Expr::Nested(inner) => is_column(inner, column, names),
        _ => false,
    }
}

fn ident_is(ident: &Ident, name: &str) -> bool {
    if ident.quote_style.is_some() {
        ident.value == name
    } else {
        ident.value.eq_ignore_ascii_case(name)
    }
}

fn conjuncts<'a>(expr: &'a Expr, out: &mut Vec<&'a Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner) => conjuncts(inner, out),
        other => out.push(other),
    }
}

/// Every (table, alias) of a FROM item; derived tables and table functions are refused.
fn collect_tables(
    from: &TableWithJoins,
    out: &mut Vec<(String, String)>,
) -> Result<(), RouterError> {
    table_factor(&from.relation, out)?;
    for join in &from.joins {
        table_factor(&join.relation, out)?;
    }
    Ok(())
}

fn table_factor(factor: &TableFactor, out: &mut Vec<(String, String)>) -> Result<(), RouterError> {
    match factor {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            let table = table_name(name);
            let alias = alias
                .as_ref()
                .map(|a| a.name.value.clone())
                .unwrap_or_else(|| table.clone());
            out.push((table, alias));
            Ok(())
        }
        _ => Err(unsupported(
            "subqueries and table functions in FROM on a sharded cluster",
        )),
    }
}

fn single_table(from: &TableWithJoins) -> Result<String, RouterError> {
    if !from.joins.is_empty() {
        return Err(unsupported("joins in UPDATE/DELETE on a sharded cluster"));
    }
    let mut tables = Vec::new();
    table_factor(&from.relation, &mut tables)?;
    Ok(tables.remove(0).0)
}

/// The tables a statement names, and whether it is DDL; `None` when it does not parse.
pub fn statement_tables(sql: &str) -> Option<(Vec<String>, bool)> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let mut tables = Vec::new();
    let mut ddl = false;
    for statement in &statements {
        ddl |= matches!(
            statement,
            Statement::CreateTable(_)
                | Statement::CreateIndex(_)
                | Statement::AlterTable(_)
                | Statement::Drop { .. }
        );
        let _ = visit_relations(statement, |name| {
            let table = table_name(name);
            if !tables.contains(&table) {
                tables.push(table);
            }
            ControlFlow::<()>::Continue(())
        });
    }
    Some((tables, ddl))
}

/// An UPDATE (or an INSERT's ON CONFLICT DO UPDATE) may not set a shard key: the row would
/// stay on its node under a key of another shard, where no statement looks for it.
fn keep_shard_keys(
    table: &str,
    policy: &TablePolicy,
    assignments: &[Assignment],
) -> Result<(), RouterError> {
    for assignment in assignments {
        let target = match &assignment.target {
            AssignmentTarget::ColumnName(name) => last_part(name),
            AssignmentTarget::Tuple(_) => {
                return Err(unsupported("UPDATE of a column tuple"));
            }
        };
        if policy.shard_keys.contains(&target) {
            return Err(RouterError::Unsupported(format!(
                "UPDATE of the shard key {target} of {table} would move the row to another \
                 shard; delete and insert it instead"
            )));
        }
    }
    Ok(())
}

/// A write runs on the nodes holding its target's shards, so what else it reads (in a
/// subquery, UPDATE's FROM, DELETE's USING, a VALUES expression) must be whole there: only tables without a policy,
/// next to a target without one. Anything else would read one node's rows and write a wrong
/// answer without an error.
fn check_write_reads(
    statement: &Statement,
    table: &str,
    policy: &TablePolicy,
    policies: &dyn PolicySource,
) -> Result<(), RouterError> {
    let others: Vec<String> = relations_in(statement, &[])
        .into_iter()
        .filter(|t| t != table)
        .collect();
    let Some(other) = others.first() else {
        return Ok(());
    };
    if let Some(sharded) = others
        .iter()
        .find(|t| policies.has_policy(t) && !policies.policy(t).is_reference())
    {
        return Err(RouterError::Unsupported(format!(
            "a write to {table} that reads the sharded table {sharded} would see only the rows \
             of one node; read {sharded} in a query of its own (or use INSERT ... SELECT)"
        )));
    }
    if !policy.is_reference() {
        return Err(RouterError::Unsupported(format!(
            "a write to the sharded table {table} that reads {other} (in a subquery, FROM or \
             USING) is not supported; read {other} in a query of its own"
        )));
    }
    if policies.has_policy(table) || others.iter().any(|t| policies.has_policy(t)) {
        return Err(RouterError::Unsupported(format!(
            "this write reads tables that live on different nodes ({table}, {}); query them \
             separately",
            others.join(", ")
        )));
    }
    Ok(())
}

/// Every table a query reads, anywhere in it (joins, subqueries, CTEs), without the
/// emulated catalogs, which every node has.
fn relations(query: &Query) -> Vec<String> {
    let ctes: Vec<String> = query
        .with
        .iter()
        .flat_map(|with| with.cte_tables.iter())
        .map(|cte| cte.alias.name.value.to_ascii_lowercase())
        .collect();
    relations_in(query, &ctes)
}

/// Every table named anywhere in `node` but the catalogs and the `ctes`.
fn relations_in<V: Visit>(node: &V, ctes: &[String]) -> Vec<String> {
    let mut tables = Vec::new();
    let _ = visit_relations(node, |name| {
        let catalog = match name.0.first() {
            Some(ObjectNamePart::Identifier(schema)) if name.0.len() > 1 => {
                let schema = schema.value.to_ascii_lowercase();
                schema == "pg_catalog" || schema == "information_schema"
            }
            _ => false,
        };
        let table = table_name(name);
        if !catalog
            && !table.starts_with("pg_")
            && !ctes.contains(&table)
            && !tables.contains(&table)
        {
            tables.push(table);
        }
        ControlFlow::<()>::Continue(())
    });
    tables
}

/// The unqualified table name, lower-cased unless it was quoted.
pub fn table_name(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(ident)) if ident.quote_style.is_some() => {
            ident.value.clone()
        }
        Some(ObjectNamePart::Identifier(ident)) => ident.value.to_ascii_lowercase(),
        Some(other) => other.to_string().to_ascii_lowercase(),
        None => String::new(),
    }
}

fn last_part(name: &ObjectName) -> String {
    table_name(name)
}

fn policy_of(policies: &dyn PolicySource, table: &str) -> Result<TablePolicy, RouterError> {
    Ok(policies.policy(table))
}

fn unsupported(what: &str) -> RouterError {
    RouterError::Unsupported(format!("{what} is not supported"))
}
