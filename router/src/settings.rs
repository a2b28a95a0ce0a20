//! `current_setting()` and `set_config()`: the session's parameters live in the proxy, so a
//! node cannot answer them (SQLite nodes lack the functions; a PostgreSQL node would answer
//! with its own connection's settings). A plain `SELECT` of these calls alone is answered by
//! the proxy; in any other statement each `current_setting('name')` is replaced, when the
//! statement runs, by the session's value as a text literal. `set_config` anywhere else, and
//! arguments the proxy cannot know before the statement runs, are refused.

use std::ops::ControlFlow;

use sqlparser::ast::{
    CastKind, Expr, Function, ObjectName, Select, SelectItem, SetExpr, Statement, Value,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, Tokenizer};

use crate::RouterError;
use crate::calls::{plain_args, select_of_calls};

/// A statement that calls `current_setting` or `set_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsPlan {
    /// `SELECT f(...) [AS name], ...` without FROM, every item a call of the two: the proxy
    /// answers the row, evaluating the items in order.
    Answer(Vec<SettingsColumn>),
    /// A statement for the nodes once its `current_setting` calls are replaced by values.
    Substitute(Substitution),
}

/// One column of a [`SettingsPlan::Answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsColumn {
    pub name: String,
    pub call: SettingsCall,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsCall {
    /// `current_setting(name [, missing_ok])`.
    Get {
        name: SettingArg,
        missing_ok: SettingArg,
    },
    /// `set_config(name, value, is_local)`.
    Set {
        name: SettingArg,
        value: SettingArg,
        local: SettingArg,
    },
}

/// An argument of a call the proxy answers: a literal or a bound parameter (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingArg {
    Null,
    Text(String),
    Bool(bool),
    Param(usize),
}

/// Where the values of `current_setting` calls go in a statement's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substitution {
    edits: Vec<Edit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Edit {
    /// `sql[start..end]` is a call of `current_setting(name, missing_ok)`.
    Value {
        start: usize,
        end: usize,
        name: String,
        missing_ok: bool,
    },
    /// A select item that Postgres names `current_setting` (the call, maybe cast with `::`)
    /// keeps that name once the call is a literal.
    Alias { at: usize },
}

impl Edit {
    fn position(&self) -> usize {
        match self {
            Edit::Value { start, .. } => *start,
            Edit::Alias { at } => *at,
        }
    }
}

impl Substitution {
    /// The statement with every call replaced by `value(name, missing_ok)` (`None` is NULL).
    pub fn render<E>(
        &self,
        sql: &str,
        mut value: impl FnMut(&str, bool) -> Result<Option<String>, E>,
    ) -> Result<String, E> {
        let mut out = String::with_capacity(sql.len() + 16 * self.edits.len());
        let mut copied = 0;
        for edit in &self.edits {
            out.push_str(sql.get(copied..edit.position()).unwrap_or(""));
            match edit {
                Edit::Value {
                    end,
                    name,
                    missing_ok,
                    ..
                } => {
                    match value(name, *missing_ok)? {
                        Some(v) => {
                            out.push_str("CAST('");
                            out.push_str(&v.replace('\'', "''"));
                            out.push_str("' AS text)");
                        }
                        None => out.push_str("CAST(NULL AS text)"),
                    }
                    copied = *end;
                }
                Edit::Alias { at } => {
                    out.push_str(" AS current_setting");
                    copied = *at;
                }
            }
        }
        out.push_str(sql.get(copied..).unwrap_or(""));
        Ok(out)
    }

    /// The statement with NULLs for values, for describing it: its result types do not
    /// depend on the values.
    pub fn placeholder(&self, sql: &str) -> String {
        match self.render(sql, |_, _| Ok::<_, std::convert::Infallible>(None)) {
            Ok(text) => text,
            Err(never) => match never {},
        }
    }
}

/// Whether the text names either function; only such statements are parsed again here, so
/// others pay one scan when their plan is first made.
pub(crate) fn mentions_settings(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    (0..bytes.len()).any(|i| match bytes[i] | 0x20 {
        b's' => bytes
            .get(i..i + 10)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"set_config")),
        b'c' => bytes
            .get(i..i + 15)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"current_setting")),
        _ => false,
    })
}

/// The plan of a statement that mentions the functions: `None` when it does not call them
/// (they were in a string, a comment or a name), or does not parse (the node will say why).
pub(crate) fn plan_settings(sql: &str, ddl: bool) -> Result<Option<SettingsPlan>, RouterError> {
    let dialect = PostgreSqlDialect {};
    let Ok(mut statements) = Parser::parse_sql(&dialect, sql) else {
        return Ok(None);
    };
    if statements.len() != 1 {
        return Ok(None);
    }
    let statement = statements.remove(0);
    let mut calls = Vec::new();
    let _ = sqlparser::ast::visit_expressions(&statement, |expr| {
        if let Expr::Function(function) = expr
            && let Some(kind) = which(&function.name)
        {
            calls.push((kind, function.clone()));
        }
        ControlFlow::<()>::Continue(())
    });
    if calls.is_empty() {
        return Ok(None);
    }
    if let Some(columns) = answered(&statement) {
        return Ok(Some(SettingsPlan::Answer(columns)));
    }
    if calls.iter().any(|(kind, _)| *kind == Kind::Set) {
        return Err(RouterError::Unsupported(
            "set_config() is supported only in a SELECT of set_config() and current_setting() \
             calls without FROM (SELECT set_config('name', 'value', false)); use SET"
                .to_owned(),
        ));
    }
    if ddl {
        return Err(RouterError::Unsupported(
            "current_setting() in a schema definition is not supported: the nodes would \
             evaluate it with their own settings, not the session's"
                .to_owned(),
        ));
    }
    substitution(sql, &statement, &calls).map(|s| Some(SettingsPlan::Substitute(s)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get,
    Set,
}

fn which(name: &ObjectName) -> Option<Kind> {
    let parts: Vec<&str> = name
        .0
        .iter()
        .map(|p| p.as_ident().map_or("", |i| i.value.as_str()))
        .collect();
    let function = match parts.as_slice() {
        [f] => f,
        [schema, f] if schema.eq_ignore_ascii_case("pg_catalog") => f,
        _ => return None,
    };
    if function.eq_ignore_ascii_case("current_setting") {
        Some(Kind::Get)
    } else if function.eq_ignore_ascii_case("set_config") {
        Some(Kind::Set)
    } else {
        None
    }
}

/// The columns of a SELECT the proxy answers, if the statement is one.
fn answered(statement: &Statement) -> Option<Vec<SettingsColumn>> {
    select_of_calls(statement)?
        .into_iter()
        .map(|call| {
            let kind = match call.name.as_str() {
                "current_setting" => Kind::Get,
                "set_config" => Kind::Set,
                _ => return None,
            };
            let args = call
                .args
                .iter()
                .map(|e| literal(e, true))
                .collect::<Option<Vec<_>>>()?;
            let call_of = match (kind, args.as_slice()) {
                (Kind::Get, [name]) => SettingsCall::Get {
                    name: name.clone(),
                    missing_ok: SettingArg::Bool(false),
                },
                (Kind::Get, [name, missing_ok]) => SettingsCall::Get {
                    name: name.clone(),
                    missing_ok: missing_ok.clone(),
                },
                (Kind::Set, [name, value, local]) => SettingsCall::Set {
                    name: name.clone(),
                    value: value.clone(),
                    local: local.clone(),
                },
                _ => return None,
            };
            Some(SettingsColumn {
                name: call.alias.unwrap_or(call.name),
                call: call_of,
            })
        })
        .collect()
}

fn literal(expr: &Expr, params: bool) -> Option<SettingArg> {
    let Expr::Value(value) = expr else {
        return None;
    };
    match &value.value {
        Value::Null => Some(SettingArg::Null),
        Value::Boolean(b) => Some(SettingArg::Bool(*b)),
        Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => {
            Some(SettingArg::Text(s.clone()))
        }
        Value::DollarQuotedString(s) => Some(SettingArg::Text(s.value.clone())),
        Value::Placeholder(p) if params => p
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .map(SettingArg::Param),
        _ => None,
    }
}

/// Postgres's reading of a boolean literal given as text (`'true'`, `'on'`, `'1'`, ...).
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "t" | "tr" | "tru" | "true" | "y" | "ye" | "yes" | "on" | "1" => Some(true),
        "f" | "fa" | "fal" | "fals" | "false" | "n" | "no" | "of" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn not_literal() -> RouterError {
    RouterError::Unsupported(
        "current_setting() is supported with literal arguments only \
         (current_setting('name') or current_setting('name', true))"
            .to_owned(),
    )
}

fn substitution(
    sql: &str,
    statement: &Statement,
    calls: &[(Kind, Function)],
) -> Result<Substitution, RouterError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| RouterError::Syntax(e.to_string()))?;
    let offsets = Offsets::new(sql);
    let index_at = |location: Location| tokens.iter().position(|t| t.span.start == location);
    let mut edits = Vec::new();
    let mut call_ends = Vec::new();
    for (_, function) in calls {
        let args = plain_args(function).ok_or_else(not_literal)?;
        let (name, missing_ok) = match args
            .iter()
            .map(|e| literal(e, false))
            .collect::<Option<Vec<_>>>()
            .as_deref()
        {
            Some([name]) => (name.clone(), SettingArg::Bool(false)),
            Some([name, missing_ok]) => (name.clone(), missing_ok.clone()),
            _ => return Err(not_literal()),
        };
        let missing_ok = match missing_ok {
            SettingArg::Bool(b) => b,
            SettingArg::Text(t) => parse_bool(&t).ok_or_else(not_literal)?,
            _ => return Err(not_literal()),
        };
        let SettingArg::Text(name) = name else {
            return Err(not_literal());
        };
        let first = function
            .name
            .0
            .first()
            .and_then(|p| p.as_ident())
            .ok_or_else(not_literal)?;
        let start_token = index_at(first.span.start).ok_or_else(not_literal)?;
        let close = closing_paren(&tokens[start_token..])
            .map(|i| start_token + i)
            .ok_or_else(not_literal)?;
        let start = offsets.byte(tokens[start_token].span.start);
        let end = offsets.byte(tokens[close].span.start) + 1;
        call_ends.push((first.span.start, close));
        edits.push(Edit::Value {
            start,
            end,
            name,
            missing_ok,
        });
    }
    for at in named_items(statement) {
        let Some(&(_, close)) = call_ends.iter().find(|(start, _)| *start == at) else {
            continue;
        };
        let item_end = item_end(&tokens[close + 1..]).map_or(tokens.len(), |i| close + 1 + i);
        // The alias follows the item's last token, before any whitespace or comment.
        let last = (close..item_end)
            .rev()
            .find(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
            .unwrap_or(close);
        let at = offsets.byte(tokens[last].span.end);
        edits.push(Edit::Alias { at });
    }
    edits.sort_by_key(Edit::position);
    Ok(Substitution { edits })
}

/// Where the name of each result column that Postgres would call `current_setting` starts:
/// an item of the (first) SELECT list or of RETURNING that is the call itself or the call
/// cast with `::`, without an alias.
fn named_items(statement: &Statement) -> Vec<Location> {
    let items: &[SelectItem] = match statement {
        Statement::Query(query) => first_select(&query.body).map_or(&[], |s| &s.projection),
        Statement::Insert(insert) => insert.returning.as_deref().unwrap_or(&[]),
        Statement::Update(update) => update.returning.as_deref().unwrap_or(&[]),
        Statement::Delete(delete) => delete.returning.as_deref().unwrap_or(&[]),
        _ => &[],
    };
    items
        .iter()
        .filter_map(|item| {
            let SelectItem::UnnamedExpr(expr) = item else {
                return None;
            };
            let mut expr = expr;
            while let Expr::Cast {
                kind: CastKind::DoubleColon,
                expr: inner,
                ..
            } = expr
            {
                expr = inner.as_ref();
            }
            match expr {
                Expr::Function(f) if which(&f.name) == Some(Kind::Get) => f
                    .name
                    .0
                    .first()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.span.start),
                _ => None,
            }
        })
        .collect()
}

/// The SELECT that names a query's columns: the first of a UNION, INTERSECT or EXCEPT.
fn first_select(body: &SetExpr) -> Option<&Select> {
    match body {
        SetExpr::Select(select) => Some(select),
        SetExpr::SetOperation { left, .. } => first_select(left),
        SetExpr::Query(query) => first_select(&query.body),
        _ => None,
    }
}

/// The index of the `)` that closes the first `(` of `tokens`.
fn closing_paren(tokens: &[sqlparser::tokenizer::TokenWithSpan]) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate() {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The index of the token that ends a select item (`,`, a clause keyword, the closing
/// parenthesis of an enclosing query, `;`); `None` when the item runs to the end.
fn item_end(tokens: &[sqlparser::tokenizer::TokenWithSpan]) -> Option<usize> {
    const CLAUSES: &[&str] = &[
        "from",
        "where",
        "group",
        "having",
        "window",
        "order",
        "limit",
        "offset",
        "fetch",
        "for",
        "union",
        "intersect",
        "except",
        "into",
        "returning",
    ];
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate() {
        match &t.token {
            Token::LParen | Token::LBracket => depth += 1,
            Token::RParen | Token::RBracket if depth == 0 => return Some(i),
            Token::RParen | Token::RBracket => depth -= 1,
            Token::Comma | Token::SemiColon if depth == 0 => return Some(i),
            Token::Word(w)
                if depth == 0
                    && w.quote_style.is_none()
                    && CLAUSES.iter().any(|c| w.value.eq_ignore_ascii_case(c)) =>
            {
                return Some(i);
            }
            _ => {}
        }
    }
    None
}

/// Byte offsets of the tokenizer's (line, column) locations; columns count characters.
struct Offsets<'a> {
    sql: &'a str,
    lines: Vec<usize>,
}

impl<'a> Offsets<'a> {
    fn new(sql: &'a str) -> Offsets<'a> {
        let lines = std::iter::once(0)
            .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Offsets { sql, lines }
    }

    fn byte(&self, location: Location) -> usize {
        let line = usize::try_from(location.line.saturating_sub(1)).unwrap_or(usize::MAX);
        let Some(&start) = self.lines.get(line) else {
            return self.sql.len();
        };
        let column = usize::try_from(location.column.saturating_sub(1)).unwrap_or(usize::MAX);
        self.sql[start..]
            .char_indices()
            .nth(column)
            .map_or(self.sql.len(), |(i, _)| start + i)
    }
}
