//! `EXPLAIN [ANALYZE]` on a SQLite node: the statement is translated as it would run, and the
//! node answers with SQLite's own plan of it (`EXPLAIN QUERY PLAN`) in one text column named
//! `QUERY PLAN`, as Postgres does; `ANALYZE` also runs it and adds the row count and the time.

use mycelium_protocol::DbError;
use mycelium_protocol::types::PgType;
use sqlparser::ast::{AnalyzeFormat, AnalyzeFormatKind, Expr, UtilityOption, Value};

use super::{Explain, Kind, OutColumn, Translation};
use crate::catalog::Ty;
use crate::errors::unsupported;

/// The translation of `EXPLAIN <inner>`, with PostgreSQL's `(option, ...)` list.
pub(super) fn translate(
    inner: Translation,
    analyze: bool,
    format: Option<&AnalyzeFormatKind>,
    options: Option<&[UtilityOption]>,
) -> Result<Translation, DbError> {
    let mut analyze = analyze;
    let mut text = !matches!(
        format,
        Some(AnalyzeFormatKind::Keyword(f) | AnalyzeFormatKind::Assignment(f))
            if *f != AnalyzeFormat::TEXT
    );
    for option in options.unwrap_or_default() {
        let name = option.name.value.to_ascii_lowercase();
        match name.as_str() {
            "analyze" | "analyse" => analyze = flag(option)?,
            "format" => {
                text = option
                    .arg
                    .as_ref()
                    .is_some_and(|arg| word(arg).eq_ignore_ascii_case("text"));
            }
            "verbose" | "costs" | "settings" | "generic_plan" | "buffers" | "wal" | "timing"
            | "summary" => {
                flag(option)?;
            }
            _ => {
                return Err(DbError::new(
                    "42601",
                    format!("unrecognized EXPLAIN option \"{name}\""),
                ));
            }
        }
    }
    if !text {
        return Err(unsupported(
            "EXPLAIN in a format other than TEXT (SQLite's plans are text)",
        ));
    }
    let Some(main) = inner.main.as_ref().filter(|_| {
        inner.pre.is_empty() && inner.checks.is_empty() && !inner.ddl && !inner.rebuild
    }) else {
        return Err(unsupported(format!(
            "EXPLAIN of {}: only SELECT, INSERT, UPDATE, DELETE and VALUES have a plan",
            inner.kind.tag(0)
        )));
    };
    let main = main.clone();
    let returns_rows = !inner.out.is_empty();
    let writes = analyze && inner.writes;
    Ok(Translation {
        kind: Kind::Other("EXPLAIN"),
        main: Some(main),
        writes,
        explain: Some(Explain {
            analyze,
            returns_rows,
        }),
        ..inner
    }
    .with_out(vec![OutColumn::expr("QUERY PLAN", Ty::of(PgType::Text))]))
}

/// A boolean EXPLAIN option's value: none means true.
fn flag(option: &UtilityOption) -> Result<bool, DbError> {
    let Some(arg) = &option.arg else {
        return Ok(true);
    };
    match word(arg).to_ascii_lowercase().as_str() {
        "true" | "on" | "1" | "yes" => Ok(true),
        "false" | "off" | "0" | "no" => Ok(false),
        other => Err(DbError::new(
            "22023",
            format!(
                "{} requires a Boolean value, not \"{other}\"",
                option.name.value.to_ascii_lowercase()
            ),
        )),
    }
}

/// An option argument as the word it was written as.
fn word(arg: &Expr) -> String {
    match arg {
        Expr::Identifier(ident) => ident.value.clone(),
        Expr::Value(value) => match &value.value {
            Value::Boolean(b) => b.to_string(),
            Value::Number(n, _) => n.clone(),
            Value::SingleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// SQLite's `EXPLAIN QUERY PLAN` rows (`id`, `parent`, `detail`, in the order SQLite gives
/// them: each step after its parent) as the lines of a Postgres-style plan: top-level steps
/// flush left, the steps under them indented behind `->`.
pub(crate) fn plan_lines(steps: &[(i64, i64, String)]) -> Vec<String> {
    let mut depths: Vec<(i64, usize)> = Vec::with_capacity(steps.len());
    let mut lines = Vec::with_capacity(steps.len());
    for (id, parent, detail) in steps {
        let depth = depths
            .iter()
            .rev()
            .find(|(step, _)| step == parent)
            .map_or(0, |(_, depth)| depth + 1);
        depths.push((*id, depth));
        lines.push(if depth == 0 {
            detail.clone()
        } else {
            format!("{}->  {detail}", " ".repeat(6 * depth - 4))
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::plan_lines;

    #[test]
    fn steps_are_indented_under_their_parents() {
        let steps = [
            (2, 0, "SCAN t".to_owned()),
            (5, 0, "CORRELATED SCALAR SUBQUERY 1".to_owned()),
            (9, 5, "SEARCH u USING INDEX u_t (t_id=?)".to_owned()),
            (12, 9, "LIST SUBQUERY 2".to_owned()),
            (14, 5, "USE TEMP B-TREE FOR ORDER BY".to_owned()),
        ];
        assert_eq!(
            plan_lines(&steps),
            vec![
                "SCAN t",
                "CORRELATED SCALAR SUBQUERY 1",
                "  ->  SEARCH u USING INDEX u_t (t_id=?)",
                "        ->  LIST SUBQUERY 2",
                "  ->  USE TEMP B-TREE FOR ORDER BY",
            ]
        );
    }
}
