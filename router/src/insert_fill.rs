//! Giving an INSERT the values of its generated columns (serial, identity) before routing.
//!
//! On a sharded table each node has its own sequence behind a serial column, so values drawn
//! on the nodes repeat across them, and an INSERT that leaves the shard key to its sequence
//! cannot be routed at all. The proxy draws such values from a cluster-wide counter instead
//! and writes them into the statement as literals: [`insert_values_table`] says which table
//! an INSERT fills, [`defaulted_rows`] which rows leave a column to its default, and
//! [`fill_defaults`] writes the drawn values in.

use sqlparser::ast::{
    Expr, Ident, InsertOverriding, ObjectName, Parens, SetExpr, Statement, TableObject, Value,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::RouterError;

/// A column's drawn values, by VALUES row (0-based), and whether it is an identity column
/// (Postgres takes a value for `GENERATED ALWAYS` ones only with `OVERRIDING SYSTEM VALUE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnFill {
    pub column: String,
    pub identity: bool,
    pub values: Vec<(usize, i64)>,
}

/// The table of a single `INSERT ... VALUES` or `INSERT ... DEFAULT VALUES` (`None` for any
/// other statement, INSERT ... SELECT included).
pub fn insert_values_table(sql: &str) -> Option<String> {
    let insert = parse_insert(sql).ok()?;
    let values = match insert.source.as_deref().map(|q| q.body.as_ref()) {
        Some(SetExpr::Values(_)) => true,
        Some(_) => false,
        None => insert.columns.is_empty(),
    };
    match &insert.table {
        TableObject::TableName(name) if values => Some(crate::route::table_name(name)),
        _ => None,
    }
}

/// An `INSERT INTO table [(columns)] SELECT ...`, taken apart so the proxy can run the query
/// and insert its rows itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertSelectParts {
    pub table: String,
    pub columns: Vec<String>,
    pub select: String,
    /// It has ON CONFLICT or RETURNING, which the proxy's own insert does not do.
    pub on_conflict_or_returning: bool,
}

/// The parts of a single `INSERT ... SELECT` (`None` for any other statement).
pub fn insert_select_parts(sql: &str) -> Option<InsertSelectParts> {
    let insert = parse_insert(sql).ok()?;
    let select = insert
        .source
        .as_deref()
        .filter(|source| !matches!(source.body.as_ref(), SetExpr::Values(_)))?;
    let TableObject::TableName(name) = &insert.table else {
        return None;
    };
    Some(InsertSelectParts {
        table: crate::route::table_name(name),
        columns: insert.columns.iter().map(column_name).collect(),
        select: select.to_string(),
        on_conflict_or_returning: insert.on.is_some() || insert.returning.is_some(),
    })
}

/// For each of `columns`, the VALUES rows that leave it to its default: every row when the
/// INSERT does not name it, the rows saying `DEFAULT` where it does.
pub fn defaulted_rows(sql: &str, columns: &[String]) -> Result<Vec<Vec<usize>>, RouterError> {
    let insert = parse_insert(sql)?;
    let rows: &[Parens<Vec<Expr>>] = match insert.source.as_deref().map(|q| q.body.as_ref()) {
        Some(SetExpr::Values(values)) => &values.rows,
        None => &[],
        Some(_) => return Err(only_values()),
    };
    let named: Vec<String> = insert.columns.iter().map(column_name).collect();
    Ok(columns
        .iter()
        .map(|column| match named.iter().position(|n| n == column) {
            // DEFAULT VALUES is one row.
            None if insert.source.is_none() => vec![0],
            None => (0..rows.len()).collect(),
            Some(at) => rows
                .iter()
                .enumerate()
                .filter(|(_, row)| row.content.get(at).is_some_and(is_default))
                .map(|(i, _)| i)
                .collect(),
        })
        .collect())
}

/// `sql` with each fill's values written in: a column the INSERT does not name is added to
/// its column list (an INSERT naming none must have had its columns named first), a
/// `DEFAULT` is replaced. `DEFAULT VALUES` becomes a VALUES row of the filled columns.
pub fn fill_defaults(sql: &str, fills: &[ColumnFill]) -> Result<String, RouterError> {
    let mut insert = parse_insert(sql)?;
    if insert.source.is_none() {
        let mut values = Parser::new(&PostgreSqlDialect {})
            .try_with_sql("VALUES (DEFAULT)")
            .and_then(|mut parser| parser.parse_query())
            .map_err(|e| RouterError::Syntax(e.to_string()))?;
        if let SetExpr::Values(values) = values.body.as_mut()
            && let Some(row) = values.rows.first_mut()
        {
            row.content.clear();
        }
        insert.source = Some(values);
    }
    let named: Vec<String> = insert.columns.iter().map(column_name).collect();
    let Some(SetExpr::Values(values)) = insert.source.as_deref_mut().map(|q| q.body.as_mut())
    else {
        return Err(only_values());
    };
    for fill in fills {
        let at = match named.iter().position(|n| *n == fill.column) {
            Some(at) => at,
            None => {
                if values
                    .rows
                    .iter()
                    .any(|row| row.content.len() > insert.columns.len())
                {
                    return Err(RouterError::Syntax(
                        "INSERT has more expressions than target columns".to_owned(),
                    ));
                }
                insert.columns.push(ObjectName::from(vec![Ident::with_quote(
                    '"',
                    fill.column.as_str(),
                )]));
                let at = insert.columns.len() - 1;
                for row in &mut values.rows {
                    // Columns the row leaves out take their defaults, as if named DEFAULT.
                    while row.content.len() < at {
                        row.content.push(Expr::Identifier(Ident::new("DEFAULT")));
                    }
                    row.content.push(Expr::Identifier(Ident::new("DEFAULT")));
                }
                at
            }
        };
        for &(row, value) in &fill.values {
            if let Some(slot) = values.rows.get_mut(row).and_then(|r| r.content.get_mut(at)) {
                *slot = Expr::value(Value::Number(value.to_string(), false));
            }
        }
        if fill.identity {
            insert.overriding = Some(InsertOverriding::System);
        }
    }
    Ok(Statement::Insert(insert).to_string())
}

fn parse_insert(sql: &str) -> Result<sqlparser::ast::Insert, RouterError> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| RouterError::Syntax(e.to_string()))?;
    match (statements.pop(), statements.is_empty()) {
        (Some(Statement::Insert(insert)), true) => Ok(insert),
        _ => Err(only_values()),
    }
}

fn only_values() -> RouterError {
    RouterError::Unsupported(
        "only a single INSERT ... VALUES gets values for its generated columns".to_owned(),
    )
}

fn column_name(name: &ObjectName) -> String {
    crate::route::table_name(name)
}

fn is_default(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(ident)
        if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(column: &str, values: &[(usize, i64)]) -> ColumnFill {
        ColumnFill {
            column: column.to_owned(),
            identity: false,
            values: values.to_vec(),
        }
    }

    #[test]
    fn the_table_of_values_and_default_values_inserts() {
        assert_eq!(
            insert_values_table("INSERT INTO Orders (a) VALUES (1)").as_deref(),
            Some("orders")
        );
        assert_eq!(
            insert_values_table("insert into t default values returning id").as_deref(),
            Some("t")
        );
        assert_eq!(insert_values_table("INSERT INTO t SELECT * FROM u"), None);
        assert_eq!(insert_values_table("UPDATE t SET a = 1"), None);
    }

    #[test]
    fn rows_that_leave_a_column_to_its_default() {
        let sql = "INSERT INTO t (id, v) VALUES (DEFAULT, 'a'), (7, 'b'), (default, $1)";
        assert_eq!(
            defaulted_rows(sql, &["id".to_owned(), "n".to_owned(), "v".to_owned()]).expect("rows"),
            vec![vec![0, 2], vec![0, 1, 2], vec![]]
        );
        assert_eq!(
            defaulted_rows("INSERT INTO t DEFAULT VALUES", &["id".to_owned()]).expect("rows"),
            vec![vec![0]]
        );
    }

    #[test]
    fn drawn_values_are_added_or_replace_default() {
        assert_eq!(
            fill_defaults(
                "INSERT INTO t (v) VALUES ($1), ('b') RETURNING id",
                &[fill("id", &[(0, 41), (1, 42)])]
            )
            .expect("fill"),
            "INSERT INTO t (v, \"id\") VALUES ($1, 41), ('b', 42) RETURNING id"
        );
        assert_eq!(
            fill_defaults(
                "INSERT INTO t (id, v) VALUES (DEFAULT, 'a'), (7, 'b')",
                &[fill("id", &[(0, 8)])]
            )
            .expect("fill"),
            "INSERT INTO t (id, v) VALUES (8, 'a'), (7, 'b')"
        );
    }

    #[test]
    fn default_values_becomes_a_row_and_identity_overrides() {
        let mut identity = fill("id", &[(0, 5)]);
        identity.identity = true;
        assert_eq!(
            fill_defaults("INSERT INTO t DEFAULT VALUES RETURNING *", &[identity]).expect("fill"),
            "INSERT INTO t (\"id\") OVERRIDING SYSTEM VALUE VALUES (5) RETURNING *"
        );
    }

    #[test]
    fn short_rows_take_defaults_before_the_added_column() {
        assert_eq!(
            fill_defaults("INSERT INTO t (a, b) VALUES (1)", &[fill("id", &[(0, 3)])])
                .expect("fill"),
            "INSERT INTO t (a, b, \"id\") VALUES (1, DEFAULT, 3)"
        );
    }
}
