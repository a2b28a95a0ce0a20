//! Integer literals lifted out of a statement's text as parameters, so that statements that
//! differ only in them (`... WHERE aid = 1`, `... WHERE aid = 2`: pgbench and every client
//! that writes values into its SQL) share one translation and one prepared SQLite statement.
//!
//! Only where a parameter of the literal's own type means the same to Postgres, in a SELECT,
//! INSERT, UPDATE or DELETE: a literal right after a comparison or arithmetic operator, or
//! alone as an item of a `VALUES` row or an `IN` list. Elsewhere an integer may not be a value
//! at all (`ORDER BY 1`, `varchar(10)`, `LIMIT 10`, `round(x, 2)`), and such a literal stays. A text with anything the scan does not follow (dollar quotes,
//! backslashes, block comments, several statements) is left alone. The worker still checks a
//! lifted shape against the text's own translation before it uses it
//! (`Worker::lifted_translation`).

use mycelium_protocol::types::oid;

/// A statement with integer literals replaced by `$1`, `$2`, ...: their types and values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifted {
    pub sql: String,
    /// `int4` when the value fits, else `int8`, as Postgres types an integer literal.
    pub param_types: Vec<u32>,
    pub values: Vec<i64>,
}

/// Operators after which an integer literal is a value: comparisons and arithmetic, and
/// those followed by a unary minus or plus (`= -1`, `+ -3421`).
const VALUE_OPERATORS: [&str; 12] = [
    "=", "<", ">", "<=", ">=", "<>", "!=", "+", "-", "*", "/", "%",
];

/// Statements with more literals than this run as they are: a long `OR` chain or a generated
/// predicate is rarely repeated with new values, and SQLite bounds a statement's parameters.
const MAX_LIFTED: usize = 64;

/// What came before the current token, as far as lifting cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prev<'a> {
    Start,
    /// A keyword or an identifier.
    Word(&'a str),
    Operator(&'a str),
    Open,
    Close(Paren),
    Comma,
    /// A number, a quoted string or identifier, or punctuation not listed here.
    Other,
}

/// What a parenthesis holds: a row of `VALUES`, an `IN` list, or anything else (function
/// arguments, type modifiers, subqueries, grouping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paren {
    ValuesRow,
    InList,
    Other,
}

/// Words after which a signed integer is not a plain value: `ORDER BY -1` is a (bad) column
/// position, and `LIMIT`/`OFFSET`/`FETCH` counts are checked when the statement is
/// translated, which a parameter would skip.
const COUNT_WORDS: [&str; 6] = ["BY", "LIMIT", "OFFSET", "FETCH", "FIRST", "NEXT"];

/// The statement with its liftable integer literals as parameters; `None` when it has none
/// or is not a statement this applies to.
pub fn integer_literals(sql: &str) -> Option<Lifted> {
    let text = sql.trim_start();
    let first_word = &text[..text
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(text.len())];
    if !["SELECT", "INSERT", "UPDATE", "DELETE"]
        .iter()
        .any(|kind| first_word.eq_ignore_ascii_case(kind))
        || sql.contains(['$', '\\', ';'])
        || sql.contains("/*")
    {
        return None;
    }
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut lifted = Lifted {
        sql: String::new(),
        param_types: Vec::new(),
        values: Vec::new(),
    };
    let mut prev = Prev::Start;
    // The token before the current operator, to tell a unary sign from a binary one.
    let mut before_operator = Prev::Start;
    let mut parens: Vec<Paren> = Vec::new();
    // Whether the last comma followed a `VALUES` row: a parenthesis after it opens the next.
    let mut comma_after_row = false;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\'' | b'"' => {
                i = quoted_end(bytes, i)?;
                prev = Prev::Other;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |n| i + n);
            }
            b if b.is_ascii_whitespace() => i += 1,
            b if is_operator_char(b) => {
                let start = i;
                while i < bytes.len() && is_operator_char(bytes[i]) && !starts_comment(bytes, i) {
                    i += 1;
                }
                before_operator = prev;
                prev = Prev::Operator(&sql[start..i]);
            }
            b'(' => {
                parens.push(match prev {
                    Prev::Word(w) if w.eq_ignore_ascii_case("VALUES") => Paren::ValuesRow,
                    Prev::Word(w) if w.eq_ignore_ascii_case("IN") => Paren::InList,
                    Prev::Comma if comma_after_row => Paren::ValuesRow,
                    _ => Paren::Other,
                });
                prev = Prev::Open;
                i += 1;
            }
            b')' => {
                prev = Prev::Close(parens.pop().unwrap_or(Paren::Other));
                i += 1;
            }
            b',' => {
                comma_after_row = prev == Prev::Close(Paren::ValuesRow);
                prev = Prev::Comma;
                i += 1;
            }
            b if b.is_ascii_digit() => {
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let ends_word = bytes
                    .get(i)
                    .is_none_or(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'.'));
                if ends_word && is_value_position(prev, before_operator, &parens, bytes, i) {
                    let value: i64 = sql[start..i].parse().ok()?;
                    let ty = if i32::try_from(value).is_ok() {
                        oid::INT4
                    } else {
                        oid::INT8
                    };
                    out.push_str(&sql[copied..start]);
                    lifted.values.push(value);
                    lifted.param_types.push(ty);
                    out.push('$');
                    out.push_str(&lifted.values.len().to_string());
                    copied = i;
                } else {
                    // The rest of a number that is not an integer literal (1.5, 1e5).
                    while i < bytes.len()
                        && (bytes[i].is_ascii_alphanumeric()
                            || bytes[i] == b'_'
                            || bytes[i] == b'.')
                    {
                        i += 1;
                    }
                }
                prev = Prev::Other;
            }
            b if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                prev = Prev::Word(&sql[start..i]);
            }
            _ => {
                i += 1;
                prev = Prev::Other;
            }
        }
    }
    if lifted.values.is_empty() || lifted.values.len() > MAX_LIFTED {
        return None;
    }
    out.push_str(&sql[copied..]);
    lifted.sql = out;
    Some(lifted)
}

/// Whether an integer literal ending before `end`, after `prev`, is a value a parameter can
/// stand for: after a comparison or arithmetic operator (a sign only where it is binary or
/// follows one of those), or alone as an item of a `VALUES` row or an `IN` list.
fn is_value_position(
    prev: Prev<'_>,
    before_operator: Prev<'_>,
    parens: &[Paren],
    bytes: &[u8],
    end: usize,
) -> bool {
    let in_value_list = matches!(parens.last(), Some(Paren::ValuesRow | Paren::InList));
    match prev {
        Prev::Operator("-" | "+") => match before_operator {
            Prev::Word(w) => !COUNT_WORDS.iter().any(|c| w.eq_ignore_ascii_case(c)),
            Prev::Operator(op) => is_value_operator(op),
            Prev::Close(_) | Prev::Other => true,
            Prev::Open | Prev::Comma => in_value_list,
            Prev::Start => false,
        },
        Prev::Operator(op) => is_value_operator(op),
        Prev::Open | Prev::Comma => {
            in_value_list
                && matches!(
                    bytes[end..].iter().find(|b| !b.is_ascii_whitespace()),
                    Some(b',' | b')')
                )
        }
        _ => false,
    }
}

/// Postgres's operator characters.
fn is_operator_char(b: u8) -> bool {
    b"+-*/<>=~!@#%^&|`?".contains(&b)
}

fn starts_comment(bytes: &[u8], i: usize) -> bool {
    bytes[i] == b'-' && bytes.get(i + 1) == Some(&b'-')
}

fn is_value_operator(operator: &str) -> bool {
    let operator = match operator.strip_suffix(['-', '+']) {
        Some(rest) if !rest.is_empty() => rest,
        _ => operator,
    };
    VALUE_OPERATORS.contains(&operator)
}

/// Where the quoted string or identifier opening at `start` ends (a doubled quote is one
/// quote character); `None` when it does not.
fn quoted_end(bytes: &[u8], start: usize) -> Option<usize> {
    let quote = bytes[start];
    let mut i = start + 1;
    loop {
        match *bytes.get(i)? {
            b if b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            b if b == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifted(sql: &str) -> Option<(String, Vec<u32>, Vec<i64>)> {
        integer_literals(sql).map(|l| (l.sql, l.param_types, l.values))
    }

    #[test]
    fn literals_after_comparisons_and_arithmetic_become_parameters() {
        assert_eq!(
            lifted("SELECT abalance FROM pgbench_accounts WHERE aid = 123"),
            Some((
                "SELECT abalance FROM pgbench_accounts WHERE aid = $1".to_owned(),
                vec![oid::INT4],
                vec![123]
            ))
        );
        assert_eq!(
            lifted(
                "UPDATE pgbench_accounts SET abalance = abalance + -3421 WHERE aid = 5000000000;"
            ),
            None,
            "several statements"
        );
        assert_eq!(
            lifted(
                "UPDATE pgbench_accounts SET abalance = abalance + -3421 WHERE aid = 5000000000"
            ),
            Some((
                "UPDATE pgbench_accounts SET abalance = abalance + -$1 WHERE aid = $2".to_owned(),
                vec![oid::INT4, oid::INT8],
                vec![3421, 5_000_000_000]
            ))
        );
        assert_eq!(
            lifted("select * from t where a>=1 and b<>2 and c%3=0 and d=-4")
                .map(|(sql, _, values)| (sql, values)),
            Some((
                "select * from t where a>=$1 and b<>$2 and c%$3=$4 and d=-$5".to_owned(),
                vec![1, 2, 3, 0, 4]
            ))
        );
    }

    #[test]
    fn integers_that_may_not_be_values_stay() {
        for sql in [
            "SELECT a FROM t ORDER BY 1",
            "SELECT a, count(*) FROM t GROUP BY 1, 2",
            "SELECT a FROM t LIMIT 10 OFFSET 5",
            "SELECT CAST(a AS varchar(10)) FROM t",
            "SELECT a FROM t ORDER BY -1",
            "SELECT a FROM t ORDER BY a, -1",
            "SELECT a FROM t GROUP BY (1)",
            "SELECT DISTINCT ON (1) a FROM t",
            "SELECT a FROM t LIMIT -1",
            "SELECT a FROM t OFFSET - 1",
            "SELECT round(a, 2), round(a, -2) FROM t",
            "SELECT a FROM t WHERE a IN (1 + b)",
            "SELECT a FROM t WHERE (a, b) IN ((1, 2))",
            "SELECT a FROM t WHERE a IN (SELECT 1)",
            "SELECT a FROM t WHERE a IN (1::int8)",
            "INSERT INTO t (a) VALUES (1.5), (2e3)",
            "INSERT INTO t (a) SELECT max(a) FROM t GROUP BY b, (2)",
            "SELECT a FROM t WHERE b = 1.5",
            "SELECT a FROM t WHERE b = 1e5",
            "SELECT a FROM t WHERE b = 'x = 1'",
            "SELECT a FROM t WHERE \"c = 1\" = 'y'",
            "SELECT a FROM t WHERE b ->> 1 = 'x'",
            "SELECT arr[1] FROM t",
            "SELECT t1.a FROM t1 WHERE a = b2",
            "SELECT a FROM t WHERE b = $1 AND c = 2",
            "SELECT a FROM t WHERE b = 1; SELECT 2",
            "SELECT a FROM t /* c = 1 */ WHERE b = 2",
            "SELECT E'\\n' FROM t WHERE b = 2",
            "CREATE TABLE t (a int DEFAULT 1 + 1)",
            "EXPLAIN SELECT a FROM t WHERE b = 1",
            "SELECT a FROM t WHERE b = 99999999999999999999",
        ] {
            assert_eq!(integer_literals(sql), None, "{sql}");
        }
        let many = (0..=MAX_LIFTED)
            .map(|i| format!("a = {i}"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!("SELECT b FROM t WHERE {many}");
        assert_eq!(
            integer_literals(&sql),
            None,
            "more than {MAX_LIFTED} literals"
        );
        let (_, at_most) = sql.split_at(sql.rfind(" OR ").unwrap_or_default());
        let fewer = sql.strip_suffix(at_most).unwrap_or_default();
        assert_eq!(
            integer_literals(fewer).map(|l| l.values.len()),
            Some(MAX_LIFTED)
        );
    }

    #[test]
    fn items_of_values_rows_and_in_lists_become_parameters() {
        assert_eq!(
            lifted(
                "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
                 VALUES (5, 1, 4021, -3421, CURRENT_TIMESTAMP)"
            )
            .map(|(sql, _, values)| (sql, values)),
            Some((
                "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
                 VALUES ($1, $2, $3, -$4, CURRENT_TIMESTAMP)"
                    .to_owned(),
                vec![5, 1, 4021, 3421]
            ))
        );
        assert_eq!(
            lifted("insert into t values (1, 'a', f(2)), ( 3 ,'b', 4 + 5) on conflict (id) do nothing")
                .map(|(sql, _, values)| (sql, values)),
            Some((
                "insert into t values ($1, 'a', f(2)), ( $2 ,'b', 4 + $3) on conflict (id) do nothing"
                    .to_owned(),
                vec![1, 3, 5]
            ))
        );
        assert_eq!(
            lifted("SELECT a FROM t WHERE a IN (1, -2, 3) AND b NOT IN (4) ORDER BY 1")
                .map(|(sql, _, values)| (sql, values)),
            Some((
                "SELECT a FROM t WHERE a IN ($1, -$2, $3) AND b NOT IN ($4) ORDER BY 1".to_owned(),
                vec![1, 2, 3, 4]
            ))
        );
        assert_eq!(
            lifted("SELECT a - 1, -2, b * -3 FROM t WHERE c = - 4 THEN")
                .map(|(sql, _, values)| (sql, values)),
            Some((
                "SELECT a - $1, -2, b * -$2 FROM t WHERE c = - $3 THEN".to_owned(),
                vec![1, 3, 4]
            ))
        );
    }

    #[test]
    fn comments_strings_and_identifiers_are_skipped() {
        assert_eq!(
            lifted("SELECT 'it''s = 3', x FROM t -- = 4\nWHERE x = 5")
                .map(|(sql, _, values)| (sql, values)),
            Some((
                "SELECT 'it''s = 3', x FROM t -- = 4\nWHERE x = $1".to_owned(),
                vec![5]
            ))
        );
        assert_eq!(lifted("SELECT a FROM t WHERE b = 'unterminated"), None);
    }
}
