//! What a statement needs to be allowed to run: the privileges it uses on each table, the
//! tables it must own, the tables it creates or drops.
//!
//! Postgres's rules, as far as Mycelium enforces them: reading a table needs SELECT; INSERT,
//! UPDATE, DELETE and TRUNCATE need their privilege on the target, and SELECT too when they
//! read its columns (a WHERE clause, RETURNING, `SET a = a + 1`); ALTER, DROP, CREATE INDEX and
//! COMMENT need ownership; CREATE TABLE needs CREATE on the schema. Catalog relations
//! (`pg_*`, `information_schema.*`) are always readable, so clients can introspect. Anything
//! this analysis does not understand is for superusers only: the check may refuse too much,
//! never too little.

use std::ops::ControlFlow;

use sqlparser::ast::{
    AlterTableOperation, CommentObject, CreateTableOptions, FromTable, ObjectName, ObjectNamePart,
    ObjectType, OnConflictAction, OnInsert, Query, SqlOption, Statement, TableFactor, TableObject,
    Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::RouterError;
use crate::roles::Privilege;
use crate::route::table_name;

/// What one statement (or several, for a simple-query string) needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableAccess {
    /// Privileges used on tables, each (table, privilege) once.
    pub uses: Vec<(String, Privilege)>,
    /// Tables only their owner may change this way (ALTER, DROP, CREATE INDEX, COMMENT).
    pub owner_of: Vec<String>,
    /// Tables and views it creates: needs CREATE on the schema; the creator owns them.
    pub creates: Vec<String>,
    /// Tables and views it drops: their owner and grants go with them.
    pub drops: Vec<String>,
    /// It sets `mycelium.*` table options (a table policy).
    pub sets_policy: bool,
    /// A statement the analysis does not check table by table: superusers only.
    pub superuser_only: bool,
}

impl TableAccess {
    fn uses(&mut self, table: String, privilege: Privilege) {
        if !self
            .uses
            .iter()
            .any(|(t, p)| *t == table && *p == privilege)
        {
            self.uses.push((table, privilege));
        }
    }
}

/// Analyses `sql`; a statement that does not parse is a syntax error.
pub fn table_access(sql: &str) -> Result<TableAccess, RouterError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| RouterError::Syntax(e.to_string()))?;
    let mut access = TableAccess::default();
    for statement in &statements {
        analyze(statement, &mut access);
    }
    Ok(access)
}

fn analyze(statement: &Statement, access: &mut TableAccess) {
    let mut targets: Vec<&ObjectName> = Vec::new();
    match statement {
        Statement::Query(_) => {}
        Statement::Insert(insert) => {
            let TableObject::TableName(name) = &insert.table else {
                access.superuser_only = true;
                return;
            };
            let table = table_name(name);
            access.uses(table.clone(), Privilege::Insert);
            if let Some(OnInsert::OnConflict(conflict)) = &insert.on
                && matches!(conflict.action, OnConflictAction::DoUpdate(_))
            {
                access.uses(table.clone(), Privilege::Update);
                access.uses(table.clone(), Privilege::Select);
            }
            if insert.returning.is_some() {
                access.uses(table, Privilege::Select);
            }
            targets.push(name);
        }
        Statement::Update(update) => {
            let TableFactor::Table { name, .. } = &update.table.relation else {
                access.superuser_only = true;
                return;
            };
            let table = table_name(name);
            access.uses(table.clone(), Privilege::Update);
            let reads_columns = update.selection.is_some()
                || update.returning.is_some()
                || update.assignments.iter().any(|a| names_columns(&a.value));
            if reads_columns {
                access.uses(table, Privilege::Select);
            }
            targets.push(name);
        }
        Statement::Delete(delete) => {
            let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
            let [from] = from.as_slice() else {
                access.superuser_only = true;
                return;
            };
            let TableFactor::Table { name, .. } = &from.relation else {
                access.superuser_only = true;
                return;
            };
            if !delete.tables.is_empty() {
                access.superuser_only = true;
                return;
            }
            let table = table_name(name);
            access.uses(table.clone(), Privilege::Delete);
            if delete.selection.is_some() || delete.returning.is_some() {
                access.uses(table, Privilege::Select);
            }
            targets.push(name);
        }
        Statement::Truncate(truncate) => {
            for target in &truncate.table_names {
                access.uses(table_name(&target.name), Privilege::Truncate);
                targets.push(&target.name);
            }
        }
        Statement::CreateTable(create) => {
            access.creates.push(table_name(&create.name));
            if let CreateTableOptions::With(options) = &create.table_options {
                access.sets_policy |= has_policy_option(options);
            }
            targets.push(&create.name);
        }
        Statement::CreateView(view) => {
            access.creates.push(table_name(&view.name));
            targets.push(&view.name);
        }
        Statement::CreateIndex(index) => {
            access.owner_of.push(table_name(&index.table_name));
            targets.push(&index.table_name);
        }
        Statement::AlterTable(alter) => {
            access.owner_of.push(table_name(&alter.name));
            for operation in &alter.operations {
                match operation {
                    AlterTableOperation::SetOptionsParens { options } => {
                        access.sets_policy |= has_policy_option(options);
                    }
                    // Grants and ownership are kept by name; a renamed table would leave them
                    // behind, to be picked up by the next table of that name.
                    AlterTableOperation::RenameTable { .. } => access.superuser_only = true,
                    _ => {}
                }
            }
            targets.push(&alter.name);
        }
        Statement::Drop {
            object_type: ObjectType::Table | ObjectType::View,
            names,
            ..
        } => {
            for name in names {
                access.owner_of.push(table_name(name));
                access.drops.push(table_name(name));
                targets.push(name);
            }
        }
        Statement::Comment {
            object_type: object_type @ (CommentObject::Table | CommentObject::Column),
            object_name,
            ..
        } => {
            let parts = &object_name.0;
            // `COMMENT ON COLUMN t.c`: the table is the part before the column.
            let table = match object_type {
                CommentObject::Column => parts.len().checked_sub(2).and_then(|i| parts.get(i)),
                _ => parts.last(),
            };
            match table {
                Some(ObjectNamePart::Identifier(ident)) => {
                    access.owner_of.push(if ident.quote_style.is_some() {
                        ident.value.clone()
                    } else {
                        ident.value.to_ascii_lowercase()
                    });
                }
                _ => access.superuser_only = true,
            }
            return;
        }
        Statement::Explain { statement, .. } => {
            analyze(statement, access);
            return;
        }
        _ => {
            access.superuser_only = true;
            return;
        }
    }
    let mut reads = Reads {
        targets,
        frames: Vec::new(),
        tables: Vec::new(),
        statements: 0,
    };
    let _ = statement.visit(&mut reads);
    // A data-modifying statement inside another (`WITH x AS (DELETE ...) SELECT`) would be
    // counted as a read.
    if reads.statements > 1 {
        access.superuser_only = true;
    }
    for table in reads.tables {
        access.uses(table, Privilege::Select);
    }
}

fn has_policy_option(options: &[SqlOption]) -> bool {
    options.iter().any(|option| match option {
        SqlOption::KeyValue { key, .. } => key
            .to_string()
            .to_ascii_lowercase()
            .starts_with("mycelium."),
        _ => false,
    })
}

/// Whether an expression names a column (so evaluating it reads the table).
fn names_columns(expr: &sqlparser::ast::Expr) -> bool {
    use sqlparser::ast::Expr;
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(expr, |e| {
        if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

/// Collects the relations a statement reads: every relation except its write targets, the
/// catalogs, and references to CTEs in scope.
struct Reads<'a> {
    /// The statement's own targets (compared by address: the same name elsewhere is a read).
    targets: Vec<&'a ObjectName>,
    frames: Vec<Frame>,
    tables: Vec<String>,
    statements: usize,
}

/// One query being visited, with the CTE names its parts can see.
struct Frame {
    query: *const Query,
    /// This query's CTEs: name and the address of its body.
    ctes: Vec<(String, *const Query)>,
    recursive: bool,
    /// What a CTE body of this query starts from (the names visible around the query).
    outer: Vec<String>,
    /// What the query's own body sees: `outer` and all its CTEs.
    body: Vec<String>,
}

impl Visitor for Reads<'_> {
    type Break = ();

    fn pre_visit_statement(&mut self, _statement: &Statement) -> ControlFlow<()> {
        self.statements += 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let outer = match self.frames.last() {
            None => Vec::new(),
            Some(parent) => match parent
                .ctes
                .iter()
                .position(|(_, body)| std::ptr::eq(*body, query))
            {
                // A CTE body sees the CTEs before it (all of them when RECURSIVE), Postgres's
                // scoping: `WITH t AS (SELECT * FROM t)` reads the table t.
                Some(i) => {
                    let seen = if parent.recursive {
                        parent.ctes.len()
                    } else {
                        i
                    };
                    let mut names = parent.outer.clone();
                    names.extend(parent.ctes[..seen].iter().map(|(n, _)| n.clone()));
                    names
                }
                None => parent.body.clone(),
            },
        };
        let (ctes, recursive) = match &query.with {
            Some(with) => (
                with.cte_tables
                    .iter()
                    .map(|cte| {
                        let ident = &cte.alias.name;
                        let name = if ident.quote_style.is_some() {
                            ident.value.clone()
                        } else {
                            ident.value.to_ascii_lowercase()
                        };
                        (name, &*cte.query as *const Query)
                    })
                    .collect(),
                with.recursive,
            ),
            None => (Vec::new(), false),
        };
        let mut body = outer.clone();
        body.extend(ctes.iter().map(|(n, _): &(String, _)| n.clone()));
        self.frames.push(Frame {
            query,
            ctes,
            recursive,
            outer,
            body,
        });
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if self
            .frames
            .last()
            .is_some_and(|f| std::ptr::eq(f.query, query))
        {
            self.frames.pop();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if self.targets.iter().any(|t| std::ptr::eq(*t, relation)) || is_catalog(relation) {
            return ControlFlow::Continue(());
        }
        let table = table_name(relation);
        let cte =
            relation.0.len() == 1 && self.frames.last().is_some_and(|f| f.body.contains(&table));
        if !cte && !self.tables.contains(&table) {
            self.tables.push(table);
        }
        ControlFlow::Continue(())
    }
}

/// `pg_catalog.*`, `information_schema.*` and unqualified `pg_*`: the emulated catalogs
/// every client reads at connect.
fn is_catalog(name: &ObjectName) -> bool {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(schema), _] => {
            let schema = schema.value.to_ascii_lowercase();
            schema == "pg_catalog" || schema == "information_schema"
        }
        [ObjectNamePart::Identifier(table)] => {
            table.quote_style.is_none() && table.value.to_ascii_lowercase().starts_with("pg_")
        }
        _ => false,
    }
}
