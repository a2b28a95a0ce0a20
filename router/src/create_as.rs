//! `CREATE TABLE name [(columns)] [WITH (options)] AS query [WITH [NO] DATA]`.
//!
//! Sent as it is, every node would create the table from its own rows (a sharded source would
//! leave each node a different part), and SQLite nodes cannot type the columns. The proxy runs
//! it instead as a `CREATE TABLE` of the columns the query is described with, then an
//! `INSERT ... SELECT`, routed like any other, in one transaction.

use sqlparser::ast::{CreateTableOptions, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::RouterError;
use crate::route::table_name;

/// What the proxy needs of a `CREATE TABLE ... AS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTableAs {
    /// The table's name as written (quoted as needed), for the statements the proxy builds.
    pub name: String,
    /// The name as policies and grants know it.
    pub table: String,
    pub if_not_exists: bool,
    pub unlogged: bool,
    /// Names given before AS: they rename the query's first columns.
    pub columns: Vec<String>,
    /// `WITH (...)` as written (table options, `mycelium.*` placement), or empty.
    pub options: String,
    pub query: String,
    /// False for `WITH NO DATA`: the table is created empty.
    pub with_data: bool,
}

/// The `CREATE TABLE ... AS` in `sql`, or `None` for any other statement.
pub fn create_table_as(sql: &str) -> Result<Option<CreateTableAs>, RouterError> {
    let (body, with_data) = split_data_clause(sql);
    let (body, columns) = split_column_names(body);
    let Ok(mut statements) = Parser::parse_sql(&PostgreSqlDialect {}, &body) else {
        return Ok(None);
    };
    if statements.len() != 1 {
        return Ok(None);
    }
    let Statement::CreateTable(create) = statements.remove(0) else {
        return Ok(None);
    };
    let Some(query) = create.query else {
        return Ok(None);
    };
    if create.temporary {
        return Err(RouterError::Unsupported(
            "CREATE TEMPORARY TABLE ... AS: a session's statements may run on different node \
             connections, so a temporary table would not outlive its statement"
                .to_owned(),
        ));
    }
    if !create.constraints.is_empty()
        || !create.columns.is_empty()
        || create.like.is_some()
        || create.inherits.is_some()
        || create.partition_by.is_some()
    {
        return Err(RouterError::Syntax(
            "CREATE TABLE ... AS takes column names only, without types or constraints".to_owned(),
        ));
    }
    let options = match &create.table_options {
        CreateTableOptions::None => String::new(),
        options @ CreateTableOptions::With(_) => options.to_string(),
        _ => {
            return Err(RouterError::Unsupported(
                "CREATE TABLE ... AS with options other than WITH (...)".to_owned(),
            ));
        }
    };
    Ok(Some(CreateTableAs {
        name: create.name.to_string(),
        table: table_name(&create.name),
        if_not_exists: create.if_not_exists,
        unlogged: create.unlogged,
        columns,
        options,
        query: query.to_string(),
        with_data,
    }))
}

/// Takes the column names off `CREATE TABLE name (a, b) AS ...` (the SQL parser wants a type
/// after each): the text without them, and the names (unquoted; bare ones in lower case).
fn split_column_names(sql: &str) -> (String, Vec<String>) {
    let unchanged = || (sql.to_owned(), Vec::new());
    let lower = sql.to_ascii_lowercase();
    let Some(open) = lower.find('(') else {
        return unchanged();
    };
    // Only a list right after the table's name: `CREATE ... TABLE ... name (`.
    let head = &lower[..open];
    if !head.trim_start().starts_with("create") || !head.contains("table") || head.contains(" as ")
    {
        return unchanged();
    }
    let Some(close) = sql[open..].find(')').map(|i| open + i) else {
        return unchanged();
    };
    let mut names = Vec::new();
    for item in sql[open + 1..close].split(',') {
        let item = item.trim();
        let name = if let Some(quoted) = item.strip_prefix('"').and_then(|i| i.strip_suffix('"')) {
            quoted.replace("\"\"", "\"")
        } else if !item.is_empty()
            && item
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
            && !item.starts_with(|c: char| c.is_ascii_digit())
        {
            item.to_lowercase()
        } else {
            // A type or constraint after a name: not a bare list; the parser judges it.
            return unchanged();
        };
        names.push(name);
    }
    let rest = sql[close + 1..].trim_start().to_ascii_lowercase();
    if !(rest.starts_with("as") || rest.starts_with("with")) {
        return unchanged();
    }
    (format!("{} {}", &sql[..open], &sql[close + 1..]), names)
}

/// Takes a trailing `WITH DATA` / `WITH NO DATA` off (the SQL parser does not read it after
/// a CREATE TABLE); whether the data is wanted.
fn split_data_clause(sql: &str) -> (&str, bool) {
    let trimmed = sql.trim_end().trim_end_matches(';').trim_end();
    let words: Vec<&str> = trimmed.rsplitn(4, char::is_whitespace).collect();
    let ends_with = |tail: &[&str]| {
        words.len() > tail.len()
            && words
                .iter()
                .zip(tail.iter().rev())
                .all(|(word, expected)| word.eq_ignore_ascii_case(expected))
    };
    if ends_with(&["with", "no", "data"]) {
        (words[3].trim_end(), false)
    } else if ends_with(&["with", "data"]) {
        let cut = trimmed.len() - words[0].len() - words[1].len() - 1;
        (trimmed[..cut].trim_end(), true)
    } else {
        (sql, true)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_parts() {
        let ctas = create_table_as(
            "CREATE TABLE IF NOT EXISTS \"Big\" (a, b) WITH (mycelium.shard_keys = 'a') AS \
             SELECT id, name FROM t WHERE id > 3 WITH NO DATA;",
        )
        .unwrap()
        .unwrap();
        assert_eq!(ctas.name, "\"Big\"");
        assert_eq!(ctas.table, "Big");
        assert!(ctas.if_not_exists);
        assert_eq!(ctas.columns, ["a", "b"]);
        let named = create_table_as("CREATE TABLE t (\"Mixed Case\", Plain) AS SELECT 1, 2")
            .unwrap()
            .unwrap();
        assert_eq!(named.columns, ["Mixed Case", "plain"]);
        assert_eq!(named.query, "SELECT 1, 2");
        assert_eq!(ctas.options, "WITH (mycelium.shard_keys = 'a')");
        assert_eq!(ctas.query, "SELECT id, name FROM t WHERE id > 3");
        assert!(!ctas.with_data);
        let plain = create_table_as("create table x as select 1 with data")
            .unwrap()
            .unwrap();
        assert_eq!(plain.name, "x");
        assert!(plain.with_data && plain.columns.is_empty() && plain.options.is_empty());
        assert_eq!(plain.query, "SELECT 1");
    }

    #[test]
    fn other_statements_are_not_it() {
        for sql in [
            "CREATE TABLE t (id int)",
            "SELECT 1",
            "CREATE TABLE t (id int) WITH (fillfactor = 70)",
            "not sql at all",
        ] {
            assert_eq!(create_table_as(sql), Ok(None), "{sql}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_keep() {
        assert!(matches!(
            create_table_as("CREATE TEMP TABLE t AS SELECT 1"),
            Err(RouterError::Unsupported(_))
        ));
        assert!(matches!(
            create_table_as("CREATE TABLE t (a int) AS SELECT 1"),
            Err(RouterError::Syntax(_))
        ));
    }
}
