use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::RouterError;

/// A `COPY` between a table (or query) and the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPlan {
    pub direction: CopyDirection,
    /// The table, or for `COPY (query) TO STDOUT` the query text.
    pub source: CopySourceKind,
    /// Column list; empty means every column.
    pub columns: Vec<String>,
    pub format: CopyFormat,
    pub delimiter: char,
    /// The text that stands for NULL.
    pub null: String,
    pub header: bool,
    pub quote: char,
    pub escape: char,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySourceKind {
    Table(String),
    Query(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyDirection {
    FromStdin,
    ToStdout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    /// Postgres' binary COPY format (`PGCOPY` header, length-prefixed binary values).
    Binary,
}

pub(crate) fn parse_copy(sql: &str) -> Result<CopyPlan, RouterError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, &boolean_options_as_keywords(sql))
        .map_err(|e| RouterError::Syntax(e.to_string()))?;
    let Some(Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    }) = statements.into_iter().next()
    else {
        return Err(RouterError::Syntax(format!("not a COPY statement: {sql}")));
    };
    let direction = match (to, &target) {
        (false, CopyTarget::Stdin) => CopyDirection::FromStdin,
        (true, CopyTarget::Stdout) => CopyDirection::ToStdout,
        _ => {
            return Err(RouterError::Unsupported(
                "COPY to or from a server file or program is not supported; use COPY ... \
                 FROM STDIN / TO STDOUT (psql's \\copy)"
                    .to_owned(),
            ));
        }
    };
    let (source, columns) = match source {
        CopySource::Table {
            table_name,
            columns,
        } => (
            CopySourceKind::Table(table_name.to_string()),
            columns.into_iter().map(|c| c.value).collect(),
        ),
        CopySource::Query(query) => (CopySourceKind::Query(query.to_string()), Vec::new()),
    };
    if direction == CopyDirection::FromStdin && matches!(source, CopySourceKind::Query(_)) {
        return Err(RouterError::Syntax(
            "COPY FROM takes a table, not a query".to_owned(),
        ));
    }
    let mut plan = CopyPlan {
        direction,
        source,
        columns,
        format: CopyFormat::Text,
        delimiter: '\t',
        null: "\\N".to_owned(),
        header: false,
        quote: '"',
        escape: '"',
    };
    let mut delimiter = None;
    let mut null = None;
    let mut escape = None;
    for option in options {
        match option {
            CopyOption::Format(name) => {
                plan.format = match name.value.to_ascii_lowercase().as_str() {
                    "text" => CopyFormat::Text,
                    "csv" => CopyFormat::Csv,
                    "binary" => CopyFormat::Binary,
                    other => return Err(unsupported_format(other)),
                }
            }
            CopyOption::Delimiter(c) => delimiter = Some(c),
            CopyOption::Null(s) => null = Some(s),
            CopyOption::Header(h) => plan.header = h,
            CopyOption::Quote(c) => plan.quote = c,
            CopyOption::Escape(c) => escape = Some(c),
            CopyOption::Freeze(_) | CopyOption::Encoding(_) => {}
            other => {
                return Err(RouterError::Unsupported(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    for option in legacy_options {
        match option {
            CopyLegacyOption::Binary => plan.format = CopyFormat::Binary,
            CopyLegacyOption::Delimiter(c) => delimiter = Some(c),
            CopyLegacyOption::Null(s) => null = Some(s),
            CopyLegacyOption::Header => plan.header = true,
            CopyLegacyOption::Csv(csv_options) => {
                plan.format = CopyFormat::Csv;
                for csv in csv_options {
                    match csv {
                        CopyLegacyCsvOption::Header => plan.header = true,
                        CopyLegacyCsvOption::Quote(c) => plan.quote = c,
                        CopyLegacyCsvOption::Escape(c) => escape = Some(c),
                        other => {
                            return Err(RouterError::Unsupported(format!(
                                "COPY option {other} is not supported"
                            )));
                        }
                    }
                }
            }
            other => {
                return Err(RouterError::Unsupported(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    if plan.format == CopyFormat::Csv {
        plan.delimiter = ',';
        plan.null = String::new();
    }
    if let Some(d) = delimiter {
        plan.delimiter = d;
    }
    if let Some(n) = null {
        plan.null = n;
    }
    plan.escape = escape.unwrap_or(plan.quote);
    Ok(plan)
}

fn unsupported_format(name: &str) -> RouterError {
    RouterError::Unsupported(format!(
        "COPY format {name} is not supported; use text, csv or binary"
    ))
}

/// Postgres accepts `on`/`off` for boolean COPY options (`WITH (FREEZE on)`, as pgbench
/// sends); the parser only takes `true`/`false`.
fn boolean_options_as_keywords(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let lower = sql.to_ascii_lowercase();
    let mut i = 0;
    while i < sql.len() {
        let rest = &lower[i..];
        let replaced = [
            (" on)", " true)"),
            (" on,", " true,"),
            (" off)", " false)"),
            (" off,", " false,"),
        ]
        .iter()
        .find(|(from, _)| rest.starts_with(from));
        match replaced {
            Some((from, to)) => {
                out.push_str(to);
                i += from.len();
            }
            None => {
                let ch = sql[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
}
