//! Scoping a statement to some shards of its tables.
//!
//! A node holds, in one table, the rows of several shards: those it is the primary for and
//! those it keeps a copy of. When the proxy sends a statement without a shard key to several
//! nodes, each must see only the shards it was picked for, or rows are counted twice and
//! copies get written. [`scope_statement`] rewrites the text sent to one node so that every
//! reference to a scoped table sees only the rows whose shard is kept:
//!
//! ```sql
//! __mycelium_shard(<shards>, '<range split points>', <key column>, ...) IN (<kept shards>)
//! ```
//!
//! The node evaluates `__mycelium_shard` with [`shard_function`], which gives the shard
//! [`TablePolicy::shard_of`] gives the same key values, so a row is seen exactly where the
//! router sends a statement naming its key.
//!
//! A table reference in a FROM list becomes a derived table, which is correct anywhere
//! (joins of any kind, subqueries, CTEs, set operations):
//! `FROM users u` → `FROM (SELECT * FROM users WHERE <scope>) AS u`. Two places get a WHERE
//! conjunct instead, which keeps indexes usable: a SELECT whose FROM is that one table and
//! nothing else (no join, so no nullable side; no column aliases), and the target table of an
//! UPDATE or DELETE. A conjunct names the key columns through the alias, or the table name.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, FromTable, Ident, ObjectName, ObjectNamePart, Query, Select, Statement,
    TableAlias, TableFactor, VisitMut, VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::RouterError;
use crate::hash::{KeyValue, key_hash};
use crate::policy::TablePolicy;
use crate::route::table_name;

/// The SQL function a node evaluates for a row's shard.
pub const SHARD_FUNCTION: &str = "__mycelium_shard";

/// The shards of one table a node must see.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardScope {
    /// The table's policy; `policy.table` names the table (lower-case, unqualified).
    pub policy: TablePolicy,
    /// The shards to keep; empty keeps no row.
    pub keep: Vec<u32>,
}

/// `sql` with every reference to a table of `scopes` restricted to its kept shards.
///
/// SELECT, INSERT ... SELECT, UPDATE and DELETE (with their CTEs, subqueries, FROM and USING
/// lists), and the EXPLAIN of one, are scoped; any other statement, and any statement that names no scoped table, is
/// returned as it came. `$n` parameters are left as they are.
pub fn scope_statement(sql: &str, scopes: &[ShardScope]) -> Result<String, RouterError> {
    if scopes.is_empty() {
        return Ok(sql.to_owned());
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| RouterError::Syntax(e.to_string()))?;
    let [statement] = statements.as_mut_slice() else {
        return Err(RouterError::Syntax(
            "expected exactly one statement".to_owned(),
        ));
    };
    let scoped: &Statement = match &*statement {
        Statement::Explain { statement, .. } => statement,
        statement => statement,
    };
    if !matches!(
        scoped,
        Statement::Query(_) | Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
    ) {
        return Ok(sql.to_owned());
    }
    let mut scoper = Scoper {
        scopes,
        ctes: Vec::new(),
        withs: Vec::new(),
        hidden: Vec::new(),
        changed: false,
    };
    if let ControlFlow::Break(e) = statement.visit(&mut scoper) {
        return Err(e);
    }
    if !scoper.changed {
        return Ok(sql.to_owned());
    }
    Ok(statement.to_string())
}

/// `__mycelium_shard(shards, ranges, key...)`: the shard of a row whose shard-key columns
/// hold `key`, for a table of `shards` shards, range-sharded on the split points `ranges`
/// (comma-separated integers, ascending) or hash-sharded when `ranges` is empty.
///
/// It equals [`TablePolicy::shard_of`] for the same values; no key (a table without shard
/// keys) is shard 0. How a node turns its column values into [`KeyValue`]s is said beside
/// [`KeyValue`]'s constructors (`from_text`, `from_real`, `from_bytes`, `null`).
pub fn shard_function(shards: i64, ranges: &str, key: &[KeyValue]) -> Result<u32, RouterError> {
    let count = u32::try_from(shards)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| {
            RouterError::Unsupported(format!(
                "{SHARD_FUNCTION}: the shard count must be between 1 and {}, got {shards}",
                u32::MAX
            ))
        })?;
    if key.is_empty() {
        return Ok(0);
    }
    if ranges.is_empty() {
        return Ok((key_hash(key) % u64::from(count)) as u32);
    }
    // Range sharding: shard i holds [ranges[i-1], ranges[i]); a non-integer key has no
    // range and goes to the last shard, as `TablePolicy::shard_of` does.
    let first = match key.first() {
        Some(KeyValue::Int(i)) => Some(*i),
        _ => None,
    };
    let mut splits = 0u32;
    let mut below = 0u32;
    for split in ranges.split(',') {
        let split: i64 = split.trim().parse().map_err(|_| {
            RouterError::Unsupported(format!(
                "{SHARD_FUNCTION}: range split points must be comma-separated integers, got \
                 '{ranges}'"
            ))
        })?;
        splits = splits.saturating_add(1);
        if first.is_some_and(|first| split <= first) {
            below += 1;
        }
    }
    if u64::from(splits) + 1 != u64::from(count) {
        return Err(RouterError::Unsupported(format!(
            "{SHARD_FUNCTION}: {splits} range split points make {} shards, not {count}",
            u64::from(splits) + 1
        )));
    }
    Ok(if first.is_some() { below } else { count - 1 })
}

/// The rewrite, as a visitor over the statement.
///
/// Every visit hook comes in pairs (pre before a node's children, post after), and each pair
/// pushes and pops one entry of the stacks below.
struct Scoper<'a> {
    scopes: &'a [ShardScope],
    /// CTE names each enclosing query level makes visible, innermost last: a table reference
    /// with such a name reads the CTE, which is scoped where it is defined.
    ctes: Vec<Vec<String>>,
    /// The WITH clause of each query being visited, taken out while its body is visited
    /// (its CTEs are visited first, each seeing only the names it may see).
    withs: Vec<Option<sqlparser::ast::With>>,
    /// Names of the tables that got a WHERE conjunct, taken out of their table factors while
    /// the statement or select is visited, so that they are not wrapped as well.
    hidden: Vec<Vec<Vec<ObjectNamePart>>>,
    changed: bool,
}

impl<'a> Scoper<'a> {
    /// The scope of a table factor, unless it is not a table or is a visible CTE.
    fn scope_of(&self, factor: &TableFactor) -> Option<&'a ShardScope> {
        let TableFactor::Table {
            name, args: None, ..
        } = factor
        else {
            return None;
        };
        if name.0.is_empty() {
            return None;
        }
        let table = table_name(name);
        if name.0.len() == 1 && self.ctes.iter().flatten().any(|cte| *cte == table) {
            return None;
        }
        self.scopes.iter().find(|s| s.policy.table == table)
    }

    /// Adds the scope predicate of `factor` (a scoped table) to `selection` and takes the
    /// table's name out of it; `None` when the factor is not scoped.
    fn conjunct(
        &mut self,
        factor: &mut TableFactor,
        selection: &mut Option<Expr>,
    ) -> Result<Option<Vec<ObjectNamePart>>, RouterError> {
        let Some(scope) = self.scope_of(factor) else {
            return Ok(None);
        };
        let TableFactor::Table { name, alias, .. } = factor else {
            return Ok(None);
        };
        let qualifier = match alias {
            Some(alias) => alias.name.clone(),
            None => reference_name(name),
        };
        let predicate = parse_expr(&predicate(scope, &qualifier))?;
        *selection = Some(match selection.take() {
            None => predicate,
            Some(existing) => Expr::BinaryOp {
                left: Box::new(match existing {
                    or @ Expr::BinaryOp {
                        op: BinaryOperator::Or | BinaryOperator::Xor,
                        ..
                    } => Expr::Nested(Box::new(or)),
                    other => other,
                }),
                op: BinaryOperator::And,
                right: Box::new(predicate),
            },
        });
        self.changed = true;
        Ok(Some(std::mem::take(&mut name.0)))
    }
}

impl VisitorMut for Scoper<'_> {
    type Break = RouterError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<RouterError> {
        let Some(mut with) = query.with.take() else {
            self.ctes.push(Vec::new());
            self.withs.push(None);
            return ControlFlow::Continue(());
        };
        let names: Vec<String> = with
            .cte_tables
            .iter()
            .map(|cte| ident_name(&cte.alias.name))
            .collect();
        for (i, cte) in with.cte_tables.iter_mut().enumerate() {
            // Without RECURSIVE a CTE sees the ones before it; with it, all of them.
            let visible = if with.recursive { names.len() } else { i };
            self.ctes.push(names[..visible].to_vec());
            let flow = cte.query.visit(self);
            self.ctes.pop();
            if flow.is_break() {
                return flow;
            }
        }
        self.ctes.push(names);
        self.withs.push(Some(with));
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<RouterError> {
        self.ctes.pop();
        if let Some(with) = self.withs.pop().flatten() {
            query.with = Some(with);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<RouterError> {
        let mut hidden = Vec::new();
        // Column aliases (`users AS u (a, b)`) rename the key columns: wrap instead.
        if let [from] = select.from.as_mut_slice()
            && from.joins.is_empty()
            && !renames_columns(&from.relation)
        {
            match self.conjunct(&mut from.relation, &mut select.selection) {
                Ok(Some(name)) => hidden.push(name),
                Ok(None) => {}
                Err(e) => return ControlFlow::Break(e),
            }
        }
        self.hidden.push(hidden);
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, select: &mut Select) -> ControlFlow<RouterError> {
        if let Some(mut hidden) = self.hidden.pop()
            && let Some(name) = hidden.pop()
            && let [from] = select.from.as_mut_slice()
        {
            restore(&mut from.relation, name);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &mut Statement) -> ControlFlow<RouterError> {
        let mut hidden = Vec::new();
        if let Some((targets, selection)) = targets(statement) {
            for target in targets {
                match self.conjunct(target, selection) {
                    Ok(Some(name)) => hidden.push(name),
                    Ok(None) => hidden.push(Vec::new()),
                    Err(e) => return ControlFlow::Break(e),
                }
            }
        }
        self.hidden.push(hidden);
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, statement: &mut Statement) -> ControlFlow<RouterError> {
        let hidden = self.hidden.pop().unwrap_or_default();
        if let Some((targets, _)) = targets(statement) {
            for (target, name) in targets.into_iter().zip(hidden) {
                if !name.is_empty() {
                    restore(target, name);
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<RouterError> {
        let Some(scope) = self.scope_of(factor) else {
            return ControlFlow::Continue(());
        };
        match derived(factor, scope) {
            Ok(wrapped) => {
                *factor = wrapped;
                self.changed = true;
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// The tables an UPDATE or DELETE writes, and its WHERE clause.
fn targets(statement: &mut Statement) -> Option<(Vec<&mut TableFactor>, &mut Option<Expr>)> {
    match statement {
        Statement::Update(update) => {
            Some((vec![&mut update.table.relation], &mut update.selection))
        }
        Statement::Delete(delete) => {
            let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) =
                &mut delete.from;
            Some((
                tables.iter_mut().map(|t| &mut t.relation).collect(),
                &mut delete.selection,
            ))
        }
        _ => None,
    }
}

fn renames_columns(factor: &TableFactor) -> bool {
    matches!(factor, TableFactor::Table { alias: Some(alias), .. } if !alias.columns.is_empty())
}

fn restore(factor: &mut TableFactor, parts: Vec<ObjectNamePart>) {
    if let TableFactor::Table { name, .. } = factor {
        name.0 = parts;
    }
}

/// `(SELECT * FROM <table> WHERE <scope>) AS <alias or table name>`.
fn derived(factor: &TableFactor, scope: &ShardScope) -> Result<TableFactor, RouterError> {
    let TableFactor::Table { name, alias, .. } = factor else {
        return Err(RouterError::Unsupported(
            "only tables can be scoped to shards".to_owned(),
        ));
    };
    let reference = reference_name(name);
    let mut alias = alias.clone().unwrap_or(TableAlias {
        explicit: true,
        name: reference.clone(),
        columns: Vec::new(),
        at: None,
    });
    alias.explicit = true;
    let mut inner = factor.clone();
    if let TableFactor::Table { alias, .. } = &mut inner {
        *alias = None;
    }
    let text = format!(
        "(SELECT * FROM {inner} WHERE {}) {alias}",
        predicate(scope, &reference)
    );
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&text)
        .and_then(|mut parser| parser.parse_table_factor())
        .map_err(|e| RouterError::Syntax(format!("scoping {}: {e}", scope.policy.table)))
}

/// The name a table reference is known by without an alias: the last part of its name.
fn reference_name(name: &ObjectName) -> Ident {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(ident)) => ident.clone(),
        _ => Ident::new(table_name(name)),
    }
}

/// `__mycelium_shard(...) IN (...)` over the key columns of `qualifier`.
fn predicate(scope: &ShardScope, qualifier: &Ident) -> String {
    let policy = &scope.policy;
    let mut keep = scope.keep.clone();
    keep.sort_unstable();
    keep.dedup();
    if keep.is_empty() {
        return "1 = 0".to_owned();
    }
    let ranges = if policy.range_sharding {
        policy
            .ranges
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    } else {
        String::new()
    };
    let mut call = format!("{SHARD_FUNCTION}({}, '{ranges}'", policy.shards);
    for key in &policy.shard_keys {
        call.push_str(&format!(", {qualifier}.{}", Ident::with_quote('"', key)));
    }
    let keep: Vec<String> = keep.iter().map(u32::to_string).collect();
    format!("{call}) IN ({})", keep.join(", "))
}

fn parse_expr(text: &str) -> Result<Expr, RouterError> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut parser| parser.parse_expr())
        .map_err(|e| RouterError::Syntax(format!("scope predicate {text}: {e}")))
}

/// An identifier as Postgres resolves it: lower-cased unless quoted.
fn ident_name(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}
