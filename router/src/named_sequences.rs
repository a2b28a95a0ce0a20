//! Sequences made by `CREATE SEQUENCE`: cluster objects the proxy keeps (on the node that holds
//! the serial counters), so that every client draws from one sequence whatever node its
//! statement would reach, on SQLite nodes too. This module reads the statements; the proxy's
//! `named_sequences.rs` runs them.

use std::ops::ControlFlow;

use sqlparser::ast::{
    CastKind, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName,
    ObjectType, SequenceOptions, SetExpr, Statement, UnaryOperator, Value, visit_expressions_mut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::RouterError;
use crate::calls::select_of_calls;

/// A statement about sequences the proxy runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceCommand {
    Create(SequenceDefinition),
    /// `ALTER SEQUENCE [IF EXISTS] name ...`: the options given.
    Alter {
        name: String,
        if_exists: bool,
        changes: SequenceChanges,
    },
    /// `DROP SEQUENCE [IF EXISTS] names [CASCADE]`.
    Drop {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    /// A SELECT of sequence function calls without FROM.
    Calls(Vec<SequenceColumn>),
}

/// `CREATE SEQUENCE`, its options resolved with Postgres's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceDefinition {
    pub name: String,
    pub if_not_exists: bool,
    pub increment: i64,
    pub min_value: i64,
    pub max_value: i64,
    pub start: i64,
    pub cycle: bool,
}

/// What an `ALTER SEQUENCE` changes; `None` leaves a property as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequenceChanges {
    pub increment: Option<i64>,
    /// `Some(None)`: `NO MINVALUE`, the default for the increment's direction.
    pub min_value: Option<Option<i64>>,
    pub max_value: Option<Option<i64>>,
    pub start: Option<i64>,
    pub cycle: Option<bool>,
    /// `RESTART [WITH n]`: `Some(None)` restarts at the start value.
    pub restart: Option<Option<i64>>,
}

/// One column of a SELECT of sequence calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceColumn {
    pub name: String,
    pub call: SequenceCall,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceCall {
    Nextval(SequenceArg),
    Currval(SequenceArg),
    /// `setval(name, value [, is_called])`.
    Setval {
        sequence: SequenceArg,
        value: SequenceArg,
        is_called: SequenceArg,
    },
    Lastval,
}

/// An argument: a literal or a bound parameter (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceArg {
    Text(String),
    Int(i64),
    Bool(bool),
    Param(usize),
}

/// The name a sequence is kept under: unquoted names fold to lower case, `public.` goes.
pub fn sequence_key(written: &str) -> String {
    let written = written.trim();
    let unqualified = match written.split_once('.') {
        Some((schema, rest)) if schema.eq_ignore_ascii_case("public") || schema == "\"public\"" => {
            rest
        }
        _ => written,
    };
    match unqualified
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
    {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => unqualified.to_ascii_lowercase(),
    }
}

/// The sequence a column default `nextval('name'::regclass)` draws from, keyed as
/// [`sequence_key`] keys it.
pub fn default_sequence(default: &str) -> Option<String> {
    default
        .trim()
        .starts_with("nextval('")
        .then(|| nextval_names(default).into_iter().next())
        .flatten()
}

/// The sequences the `nextval('name')` calls in `text` name (a column default, a DDL
/// statement), keyed as [`sequence_key`] keys them.
pub fn nextval_names(text: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let mut names = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find("nextval('") {
        let start = from + at + "nextval('".len();
        let mut name = String::new();
        let mut chars = text[start..].char_indices();
        from = text.len();
        while let Some((i, c)) = chars.next() {
            if c != '\'' {
                name.push(c);
            } else if text[start + i + 1..].starts_with('\'') {
                chars.next();
                name.push('\'');
            } else {
                from = start + i + 1;
                names.push(sequence_key(&name));
                break;
            }
        }
    }
    names
}

fn object_key(name: &ObjectName) -> String {
    sequence_key(&name.to_string())
}

/// `CREATE SEQUENCE` and `DROP SEQUENCE`; `None` for other statements.
pub(crate) fn plan_sequence_ddl(sql: &str) -> Result<Option<SequenceCommand>, RouterError> {
    let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Ok(None);
    };
    match statements.as_slice() {
        [
            Statement::CreateSequence {
                temporary,
                if_not_exists,
                name,
                sequence_options,
            },
        ] => {
            if *temporary {
                return Err(RouterError::Unsupported(
                    "temporary sequences are not supported".to_owned(),
                ));
            }
            definition(object_key(name), *if_not_exists, sequence_options)
                .map(|d| Some(SequenceCommand::Create(d)))
        }
        [
            Statement::Drop {
                object_type: ObjectType::Sequence,
                if_exists,
                names,
                cascade,
                ..
            },
        ] => Ok(Some(SequenceCommand::Drop {
            names: names.iter().map(object_key).collect(),
            if_exists: *if_exists,
            cascade: *cascade,
        })),
        _ => Ok(None),
    }
}

fn invalid(message: String) -> RouterError {
    RouterError::InvalidParameter(message)
}

fn definition(
    name: String,
    if_not_exists: bool,
    options: &[SequenceOptions],
) -> Result<SequenceDefinition, RouterError> {
    let number = |e: &Expr| {
        integer(e).ok_or_else(|| invalid(format!("sequence option {e} must be an integer")))
    };
    let (mut type_min, mut type_max) = (i64::MIN, i64::MAX);
    let mut increment = 1;
    let (mut min, mut max, mut start) = (None, None, None);
    let mut cycle = false;
    for option in options {
        match option {
            SequenceOptions::DataType(ty) => {
                (type_min, type_max) = match ty {
                    DataType::SmallInt(_) | DataType::Int2(_) => {
                        (i64::from(i16::MIN), i64::from(i16::MAX))
                    }
                    DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => {
                        (i64::from(i32::MIN), i64::from(i32::MAX))
                    }
                    DataType::BigInt(_) | DataType::Int8(_) => (i64::MIN, i64::MAX),
                    other => {
                        return Err(invalid(format!(
                            "sequence type must be smallint, integer, or bigint, not {other}"
                        )));
                    }
                };
            }
            SequenceOptions::IncrementBy(e, _) => increment = number(e)?,
            SequenceOptions::MinValue(e) => min = e.as_ref().map(number).transpose()?,
            SequenceOptions::MaxValue(e) => max = e.as_ref().map(number).transpose()?,
            SequenceOptions::StartWith(e, _) => start = Some(number(e)?),
            SequenceOptions::Cache(e) => {
                if number(e)? < 1 {
                    return Err(invalid(format!("CACHE ({e}) must be greater than zero")));
                }
            }
            SequenceOptions::Cycle(no) => cycle = !no,
            SequenceOptions::OwnedBy(_) => {}
        }
    }
    if increment == 0 {
        return Err(invalid("INCREMENT must not be zero".to_owned()));
    }
    let ascending = increment > 0;
    let min_value = min.unwrap_or(if ascending { 1 } else { type_min });
    let max_value = max.unwrap_or(if ascending { type_max } else { -1 });
    if min_value >= max_value {
        return Err(invalid(format!(
            "MINVALUE ({min_value}) must be less than MAXVALUE ({max_value})"
        )));
    }
    if min_value < type_min || max_value > type_max {
        return Err(invalid(format!(
            "MINVALUE ({min_value}) and MAXVALUE ({max_value}) are out of range for the \
             sequence's type"
        )));
    }
    let start = start.unwrap_or(if ascending { min_value } else { max_value });
    if start < min_value {
        return Err(invalid(format!(
            "START value ({start}) cannot be less than MINVALUE ({min_value})"
        )));
    }
    if start > max_value {
        return Err(invalid(format!(
            "START value ({start}) cannot be greater than MAXVALUE ({max_value})"
        )));
    }
    Ok(SequenceDefinition {
        name,
        if_not_exists,
        increment,
        min_value,
        max_value,
        start,
        cycle,
    })
}

/// `ALTER SEQUENCE`: its options read as those of a CREATE SEQUENCE, once RESTART (an ALTER
/// option only) is taken out; `None` when the text does not parse that way.
pub(crate) fn plan_alter_sequence(sql: &str) -> Result<Option<SequenceCommand>, RouterError> {
    use sqlparser::keywords::Keyword;
    use sqlparser::tokenizer::{Token, Tokenizer};
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return Ok(None);
    };
    let mut tokens: Vec<Token> = tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon))
        .collect();
    let is = |t: Option<&Token>, k: Keyword| matches!(t, Some(Token::Word(w)) if w.keyword == k);
    if !(is(tokens.first(), Keyword::ALTER) && is(tokens.get(1), Keyword::SEQUENCE)) {
        return Ok(None);
    }
    tokens.drain(..2);
    let if_exists = is(tokens.first(), Keyword::IF) && is(tokens.get(1), Keyword::EXISTS);
    if if_exists {
        tokens.drain(..2);
    }
    let mut restart = None;
    if let Some(at) = tokens.iter().position(|t| is(Some(t), Keyword::RESTART)) {
        let mut end = at + 1;
        if is(tokens.get(end), Keyword::WITH) {
            end += 1;
        }
        let negative = matches!(tokens.get(end), Some(Token::Minus));
        let number = match tokens.get(end + usize::from(negative)) {
            Some(Token::Number(n, _)) => n.parse::<i64>().ok(),
            _ => None,
        };
        let value = match number {
            Some(n) => {
                end += 1 + usize::from(negative);
                Some(if negative { -n } else { n })
            }
            None => None,
        };
        restart = Some(value);
        tokens.drain(at..end);
    }
    let rest: Vec<String> = tokens.iter().map(ToString::to_string).collect();
    let create = format!("CREATE SEQUENCE {}", rest.join(" "));
    let statements = Parser::parse_sql(&dialect, &create)
        .map_err(|e| RouterError::Syntax(e.to_string().replace("CREATE", "ALTER")))?;
    let [
        Statement::CreateSequence {
            name,
            sequence_options,
            ..
        },
    ] = statements.as_slice()
    else {
        return Ok(None);
    };
    let number = |e: &Expr| {
        integer(e).ok_or_else(|| invalid(format!("sequence option {e} must be an integer")))
    };
    let mut changes = SequenceChanges {
        restart,
        ..SequenceChanges::default()
    };
    for option in sequence_options {
        match option {
            SequenceOptions::IncrementBy(e, _) => changes.increment = Some(number(e)?),
            SequenceOptions::MinValue(e) => {
                changes.min_value = Some(e.as_ref().map(number).transpose()?);
            }
            SequenceOptions::MaxValue(e) => {
                changes.max_value = Some(e.as_ref().map(number).transpose()?);
            }
            SequenceOptions::StartWith(e, _) => changes.start = Some(number(e)?),
            SequenceOptions::Cycle(no) => changes.cycle = Some(!no),
            SequenceOptions::Cache(_) | SequenceOptions::OwnedBy(_) => {}
            SequenceOptions::DataType(_) => {
                return Err(RouterError::Unsupported(
                    "ALTER SEQUENCE ... AS type is not supported".to_owned(),
                ));
            }
        }
    }
    if changes.increment == Some(0) {
        return Err(invalid("INCREMENT must not be zero".to_owned()));
    }
    Ok(Some(SequenceCommand::Alter {
        name: object_key(name),
        if_exists,
        changes,
    }))
}

/// An integer literal, maybe negative.
fn integer(e: &Expr) -> Option<i64> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => integer(expr)?.checked_neg(),
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => integer(expr),
        _ => None,
    }
}

/// Whether the text may call a sequence function; only such statements are parsed here.
pub(crate) fn mentions_sequence_functions(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    // nextval, setval, lastval; currval.
    bytes
        .windows(4)
        .any(|w| w.eq_ignore_ascii_case(b"tval") || w.eq_ignore_ascii_case(b"rrva"))
}

/// A SELECT of sequence function calls alone, which the proxy answers; `None` for anything
/// else (other uses reach the nodes as before: a PostgreSQL node's own sequences).
pub(crate) fn plan_sequence_calls(sql: &str) -> Option<SequenceCommand> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [statement] = statements.as_slice() else {
        return None;
    };
    let columns = select_of_calls(statement)?
        .into_iter()
        .map(|call| {
            let args: Vec<SequenceArg> = call
                .args
                .iter()
                .map(|e| argument(e))
                .collect::<Option<_>>()?;
            let sequence_call = match (call.name.as_str(), args.as_slice()) {
                ("nextval", [sequence]) => SequenceCall::Nextval(sequence.clone()),
                ("currval", [sequence]) => SequenceCall::Currval(sequence.clone()),
                ("setval", [sequence, value]) => SequenceCall::Setval {
                    sequence: sequence.clone(),
                    value: value.clone(),
                    is_called: SequenceArg::Bool(true),
                },
                ("setval", [sequence, value, is_called]) => SequenceCall::Setval {
                    sequence: sequence.clone(),
                    value: value.clone(),
                    is_called: is_called.clone(),
                },
                ("lastval", []) => SequenceCall::Lastval,
                _ => return None,
            };
            Some(SequenceColumn {
                name: call.alias.unwrap_or(call.name),
                call: sequence_call,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(SequenceCommand::Calls(columns))
}

/// A `nextval('name')` (`next`) or `currval('name')` call among the VALUES of an INSERT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuesCall {
    pub next: bool,
    /// The sequence as written (see [`sequence_key`]).
    pub sequence: String,
}

/// The `nextval('name')` and `currval('name')` calls (the name a literal) in the VALUES rows
/// of a single `INSERT ... VALUES`, in the order Postgres evaluates them: row by row, left to
/// right. Empty for any other statement.
pub fn values_sequence_calls(sql: &str) -> Vec<ValuesCall> {
    let mut calls = Vec::new();
    if !mentions_sequence_functions(sql) {
        return calls;
    }
    let Some(mut statement) = single_insert(sql) else {
        return calls;
    };
    visit_values_calls(&mut statement, |call| {
        calls.push(call);
        None
    });
    calls
}

/// `sql` with the calls [`values_sequence_calls`] lists replaced by `values`, in the same
/// order; a `None` leaves its call as it is.
pub fn replace_values_sequence_calls(
    sql: &str,
    values: &[Option<i64>],
) -> Result<String, RouterError> {
    let mut statement = single_insert(sql)
        .ok_or_else(|| RouterError::Syntax("not a single INSERT ... VALUES".to_owned()))?;
    let mut values = values.iter();
    visit_values_calls(&mut statement, |_| values.next().copied().flatten());
    Ok(statement.to_string())
}

fn single_insert(sql: &str) -> Option<Statement> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    match (statements.pop(), statements.is_empty()) {
        (Some(statement @ Statement::Insert(_)), true) => Some(statement),
        _ => None,
    }
}

/// Calls `replace` on each sequence call in the VALUES rows of `statement`, in evaluation
/// order; a value it returns takes the call's place.
fn visit_values_calls(
    statement: &mut Statement,
    mut replace: impl FnMut(ValuesCall) -> Option<i64>,
) {
    let Statement::Insert(insert) = statement else {
        return;
    };
    let Some(SetExpr::Values(values)) = insert.source.as_deref_mut().map(|q| q.body.as_mut())
    else {
        return;
    };
    let _ = visit_expressions_mut(values, |expr| {
        if let Some(call) = values_call(expr)
            && let Some(value) = replace(call)
        {
            *expr = Expr::value(Value::Number(value.to_string(), false));
        }
        ControlFlow::<()>::Continue(())
    });
}

fn values_call(expr: &Expr) -> Option<ValuesCall> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let next = match function.name.to_string().to_ascii_lowercase().as_str() {
        "nextval" | "pg_catalog.nextval" => true,
        "currval" | "pg_catalog.currval" => false,
        _ => return None,
    };
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] = list.args.as_slice() else {
        return None;
    };
    match argument(arg)? {
        SequenceArg::Text(sequence) => Some(ValuesCall { next, sequence }),
        _ => None,
    }
}

/// A literal (a `'name'::regclass` cast is the name) or a parameter.
fn argument(e: &Expr) -> Option<SequenceArg> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(SequenceArg::Text(s.clone())),
            Value::Boolean(b) => Some(SequenceArg::Bool(*b)),
            Value::Number(..) => integer(e).map(SequenceArg::Int),
            Value::Placeholder(p) => p
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .map(SequenceArg::Param),
            _ => None,
        },
        Expr::UnaryOp { .. } => integer(e).map(SequenceArg::Int),
        Expr::Cast {
            kind: CastKind::DoubleColon | CastKind::Cast,
            expr,
            ..
        } => argument(expr),
        Expr::Nested(inner) => argument(inner),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn create(sql: &str) -> SequenceDefinition {
        match plan_sequence_ddl(sql).unwrap() {
            Some(SequenceCommand::Create(d)) => d,
            other => panic!("{other:?}"),
        }
    }

    fn fields(d: &SequenceDefinition) -> (&str, i64, i64, i64, i64, bool) {
        (
            d.name.as_str(),
            d.increment,
            d.min_value,
            d.max_value,
            d.start,
            d.cycle,
        )
    }

    #[test]
    fn create_sequence_takes_postgres_defaults() {
        let d = create("CREATE SEQUENCE Public.Orders_Seq");
        assert_eq!(fields(&d), ("orders_seq", 1, 1, i64::MAX, 1, false));
        let d = create(
            "CREATE SEQUENCE IF NOT EXISTS \"Hi\" AS integer INCREMENT BY -5 START WITH -100 \
             CACHE 20 CYCLE",
        );
        assert_eq!(fields(&d), ("Hi", -5, i64::from(i32::MIN), -1, -100, true));
        assert!(d.if_not_exists);
        for bad in [
            "CREATE SEQUENCE s INCREMENT 0",
            "CREATE SEQUENCE s MINVALUE 10 MAXVALUE 5",
            "CREATE SEQUENCE s START 0",
            "CREATE SEQUENCE s AS smallint MAXVALUE 100000",
        ] {
            assert!(
                matches!(
                    plan_sequence_ddl(bad),
                    Err(RouterError::InvalidParameter(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            plan_sequence_ddl("DROP SEQUENCE IF EXISTS a, public.B").unwrap(),
            Some(SequenceCommand::Drop {
                names: vec!["a".into(), "b".into()],
                if_exists: true,
                cascade: false,
            })
        );
        assert_eq!(
            plan_sequence_ddl("DROP SEQUENCE s CASCADE").unwrap(),
            Some(SequenceCommand::Drop {
                names: vec!["s".into()],
                if_exists: false,
                cascade: true,
            })
        );
        assert_eq!(plan_sequence_ddl("DROP TABLE a").unwrap(), None);
    }

    #[test]
    fn alter_sequence_reads_the_options_given() {
        let Some(SequenceCommand::Alter {
            name,
            if_exists,
            changes,
        }) = plan_alter_sequence(
            "ALTER SEQUENCE IF EXISTS public.s INCREMENT BY 5 RESTART WITH -20 NO MAXVALUE CYCLE",
        )
        .unwrap()
        else {
            panic!("not read");
        };
        assert_eq!((name.as_str(), if_exists), ("s", true));
        assert_eq!(
            changes,
            SequenceChanges {
                increment: Some(5),
                max_value: Some(None),
                cycle: Some(true),
                restart: Some(Some(-20)),
                ..SequenceChanges::default()
            }
        );
        let Some(SequenceCommand::Alter { changes, .. }) =
            plan_alter_sequence("alter sequence s restart").unwrap()
        else {
            panic!("not read");
        };
        assert_eq!(changes.restart, Some(None));
        assert!(plan_alter_sequence("ALTER SEQUENCE s INCREMENT 0").is_err());
        assert_eq!(
            plan_alter_sequence("ALTER TABLE s ADD x int").unwrap(),
            None
        );
    }

    #[test]
    fn nextval_calls_name_their_sequences_as_the_proxies_key_them() {
        assert_eq!(
            nextval_names(
                "ALTER TABLE ONLY public.t ALTER COLUMN id SET DEFAULT \
                 nextval('public.t_id_seq'::regclass)"
            ),
            ["t_id_seq"]
        );
        assert_eq!(
            nextval_names(
                "CREATE TABLE t (a int DEFAULT NEXTVAL('A_seq'), b int DEFAULT nextval('\"B''s\"'))"
            ),
            ["a_seq", "B's"]
        );
        assert_eq!(nextval_names("nextval('unterminated"), Vec::<String>::new());
        assert_eq!(
            default_sequence("nextval('s'::regclass)").as_deref(),
            Some("s")
        );
        assert_eq!(default_sequence("now()"), None);
    }

    #[test]
    fn sequence_calls_among_insert_values_are_found_and_replaced() {
        let sql = "INSERT INTO t (id, parent, v) VALUES \
                   (nextval('public.s'), currval('p'::regclass) + 1, 'nextval(''x'')'), \
                   (NEXTVAL('s'), lower('a'), 'b') RETURNING nextval('r')";
        let calls = values_sequence_calls(sql);
        let call = |next: bool, sequence: &str| ValuesCall {
            next,
            sequence: sequence.into(),
        };
        assert_eq!(
            calls,
            [call(true, "public.s"), call(false, "p"), call(true, "s")]
        );
        let replaced =
            replace_values_sequence_calls(sql, &[Some(7), None, Some(8)]).expect("replace");
        assert_eq!(
            replaced,
            "INSERT INTO t (id, parent, v) VALUES (7, currval('p'::REGCLASS) + 1, \
             'nextval(''x'')'), (8, lower('a'), 'b') RETURNING nextval('r')"
        );
        assert!(values_sequence_calls("SELECT nextval('s')").is_empty());
        assert!(values_sequence_calls("INSERT INTO t SELECT nextval('s')").is_empty());
        assert!(values_sequence_calls("INSERT INTO t VALUES (nextval($1))").is_empty());
    }

    #[test]
    fn selects_of_sequence_calls_are_answered() {
        let Some(SequenceCommand::Calls(columns)) = plan_sequence_calls(
            "SELECT nextval('s'::regclass), currval($1), setval('s', 10, false) AS v, lastval()",
        ) else {
            panic!("not answered");
        };
        assert_eq!(columns[0].name, "nextval");
        assert_eq!(
            columns[0].call,
            SequenceCall::Nextval(SequenceArg::Text("s".into()))
        );
        assert_eq!(
            columns[1].call,
            SequenceCall::Currval(SequenceArg::Param(1))
        );
        assert_eq!(columns[2].name, "v");
        assert_eq!(
            columns[2].call,
            SequenceCall::Setval {
                sequence: SequenceArg::Text("s".into()),
                value: SequenceArg::Int(10),
                is_called: SequenceArg::Bool(false),
            }
        );
        assert_eq!(columns[3].call, SequenceCall::Lastval);
        assert_eq!(plan_sequence_calls("SELECT nextval('s') FROM t"), None);
        assert_eq!(plan_sequence_calls("SELECT nextval('s') + 1"), None);
        assert!(mentions_sequence_functions("select NEXTVAL('s')"));
        assert_eq!(sequence_key("\"public\".\"MySeq\""), "MySeq");
    }
}
