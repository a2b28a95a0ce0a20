use crate::RouterError;

/// A session command the proxy answers without a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    /// `SET [SESSION | LOCAL] name {TO | =} value`, `SET TIME ZONE v`, `SET NAMES v`;
    /// `local` until the transaction ends.
    Set {
        name: String,
        value: SetValue,
        local: bool,
    },
    /// `SHOW name`; `name` is `all` for `SHOW ALL`.
    Show { name: String },
    /// `RESET name`; `None` for `RESET ALL`.
    Reset { name: Option<String> },
    /// `SET TRANSACTION modes` (`session_default` false) or `SET SESSION CHARACTERISTICS AS
    /// TRANSACTION modes` (true): the isolation level and access mode, when given.
    SetTransaction {
        session_default: bool,
        isolation: Option<String>,
        read_only: Option<bool>,
    },
    /// `DISCARD ALL`: reset parameters, drop prepared statements.
    DiscardAll,
    /// `DEALLOCATE [PREPARE] name`; `None` for `DEALLOCATE ALL`.
    Deallocate { name: Option<String> },
    /// `PROMOTE MYCELIUM NODE node FOR SHARD table/shard`: make that node's copy the shard's
    /// primary (for every table placed with `table`).
    Promote {
        node: String,
        table: String,
        shard: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetValue {
    Default,
    Value(String),
}

/// The isolation level and access mode a transaction statement names (`BEGIN ...`,
/// `START TRANSACTION ...`, `SET TRANSACTION ...`): `None` for what it leaves unsaid.
pub fn transaction_modes(sql: &str) -> (Option<String>, Option<bool>) {
    let lower = sql.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .collect();
    let mut isolation = None;
    let mut read_only = None;
    for (i, pair) in words.windows(2).enumerate() {
        match pair {
            ["isolation", "level"] => {
                isolation = match (words.get(i + 2), words.get(i + 3)) {
                    (Some(&"serializable"), _) => Some("serializable"),
                    (Some(&"repeatable"), Some(&"read")) => Some("repeatable read"),
                    (Some(&"read"), Some(&"committed")) => Some("read committed"),
                    (Some(&"read"), Some(&"uncommitted")) => Some("read uncommitted"),
                    _ => isolation,
                };
            }
            ["read", "only"] => read_only = Some(true),
            ["read", "write"] => read_only = Some(false),
            _ => {}
        }
    }
    (isolation.map(str::to_owned), read_only)
}

fn set_transaction(sql: &str, session_default: bool) -> SessionCommand {
    let (isolation, read_only) = transaction_modes(sql);
    SessionCommand::SetTransaction {
        session_default,
        isolation,
        read_only,
    }
}

pub(crate) fn parse_session_command(sql: &str) -> Result<SessionCommand, RouterError> {
    let tokens = tokenize(sql)?;
    let words: Vec<String> = tokens
        .iter()
        .map(|t| match t {
            Token::Word(w) => w.to_ascii_lowercase(),
            _ => String::new(),
        })
        .collect();
    let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let syntax = || RouterError::Syntax(format!("cannot parse session command: {sql}"));
    match word(0) {
        "show" => {
            let name = match (word(1), word(2), word(3)) {
                ("transaction", "isolation", "level") => "transaction_isolation".to_owned(),
                ("time", "zone", "") => "timezone".to_owned(),
                ("session", "authorization", "") => "session_authorization".to_owned(),
                ("mycelium", what, "") if !what.is_empty() => format!("mycelium_{what}"),
                _ => name_from(&tokens[1..]).ok_or_else(syntax)?,
            };
            Ok(SessionCommand::Show { name })
        }
        "reset" => match word(1) {
            "all" => Ok(SessionCommand::Reset { name: None }),
            _ => Ok(SessionCommand::Reset {
                name: Some(name_from(&tokens[1..]).ok_or_else(syntax)?),
            }),
        },
        "discard" => match word(1) {
            "all" | "plans" | "sequences" | "temp" | "temporary" => Ok(SessionCommand::DiscardAll),
            _ => Err(syntax()),
        },
        "deallocate" => {
            let at = if word(1) == "prepare" { 2 } else { 1 };
            match tokens.get(at) {
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("all") => {
                    Ok(SessionCommand::Deallocate { name: None })
                }
                Some(Token::Word(w)) | Some(Token::Quoted(w)) => Ok(SessionCommand::Deallocate {
                    name: Some(w.clone()),
                }),
                _ => Err(syntax()),
            }
        }
        "promote" => parse_promote(sql, &tokens),
        "set" => {
            let mut at = 1;
            let local = word(at) == "local";
            if matches!(word(at), "session" | "local") {
                if word(at) == "session" && word(at + 1) == "characteristics" {
                    return Ok(set_transaction(sql, true));
                }
                at += 1;
            }
            match word(at) {
                "transaction" => return Ok(set_transaction(sql, false)),
                "time" if word(at + 1) == "zone" => {
                    return Ok(SessionCommand::Set {
                        name: "timezone".to_owned(),
                        value: value_from(&tokens[at + 2..]).ok_or_else(syntax)?,
                        local,
                    });
                }
                "names" => {
                    return Ok(SessionCommand::Set {
                        name: "client_encoding".to_owned(),
                        value: value_from(&tokens[at + 1..]).ok_or_else(syntax)?,
                        local,
                    });
                }
                _ => {}
            }
            let name_end = tokens[at..]
                .iter()
                .position(|t| {
                    matches!(t, Token::Equals)
                        || matches!(t, Token::Word(w) if w.eq_ignore_ascii_case("to"))
                })
                .map(|p| at + p)
                .ok_or_else(syntax)?;
            let name = name_from(&tokens[at..name_end]).ok_or_else(syntax)?;
            let value = value_from(&tokens[name_end + 1..]).ok_or_else(syntax)?;
            Ok(SessionCommand::Set { name, value, local })
        }
        _ => Err(syntax()),
    }
}

/// `PROMOTE MYCELIUM NODE node FOR SHARD table/shard` (the node may be quoted, the table
/// schema-qualified: its last part names it).
fn parse_promote(sql: &str, tokens: &[Token]) -> Result<SessionCommand, RouterError> {
    let syntax = || {
        RouterError::Syntax(format!(
            "expected PROMOTE MYCELIUM NODE <node> FOR SHARD <table>/<shard>, got: {sql}"
        ))
    };
    let keyword = |i: usize, expected: &str| matches!(tokens.get(i), Some(Token::Word(w)) if w.eq_ignore_ascii_case(expected));
    if !(keyword(1, "mycelium") && keyword(2, "node") && keyword(4, "for") && keyword(5, "shard")) {
        return Err(syntax());
    }
    let node = match tokens.get(3) {
        Some(Token::Word(w) | Token::Quoted(w) | Token::Number(w)) => w.clone(),
        _ => return Err(syntax()),
    };
    let slash = tokens
        .iter()
        .rposition(|t| *t == Token::Slash)
        .filter(|&at| at > 6)
        .ok_or_else(syntax)?;
    // Tables are known by their last name part, as everywhere in routing.
    let table = name_from(&tokens[6..slash])
        .and_then(|name| name.rsplit('.').next().map(str::to_owned))
        .filter(|name| !name.is_empty())
        .ok_or_else(syntax)?;
    let shard = match &tokens[slash + 1..] {
        [Token::Number(n)] => n.parse::<u32>().map_err(|_| syntax())?,
        _ => return Err(syntax()),
    };
    Ok(SessionCommand::Promote { node, table, shard })
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Number(String),
    Equals,
    Comma,
    Dot,
    Slash,
}

fn tokenize(sql: &str) -> Result<Vec<Token>, RouterError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '=' {
            tokens.push(Token::Equals);
            i += 1;
        } else if c == ',' {
            tokens.push(Token::Comma);
            i += 1;
        } else if c == '.' {
            tokens.push(Token::Dot);
            i += 1;
        } else if c == '/' {
            tokens.push(Token::Slash);
            i += 1;
        } else if c == '\'' || c == '"' {
            let mut text = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(RouterError::Syntax(format!(
                            "unterminated quoted string in: {sql}"
                        )));
                    }
                    Some(&q) if q == c && chars.get(i + 1) == Some(&c) => {
                        text.push(c);
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        text.push(other);
                        i += 1;
                    }
                }
            }
            tokens.push(if c == '"' {
                Token::Word(text)
            } else {
                Token::Quoted(text)
            });
        } else if c.is_ascii_digit() || c == '-' || c == '+' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            tokens.push(Token::Number(chars[start..i].iter().collect()));
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        } else if c == ';' {
            i += 1;
        } else {
            return Err(RouterError::Syntax(format!(
                "syntax error at or near \"{c}\" in: {sql}"
            )));
        }
    }
    Ok(tokens)
}

/// A parameter name: a word, or dotted words (`mycelium.setting`), lower-cased.
fn name_from(tokens: &[Token]) -> Option<String> {
    let mut name = String::new();
    for token in tokens {
        match token {
            Token::Word(w) => name.push_str(&w.to_ascii_lowercase()),
            Token::Dot => name.push('.'),
            _ => return None,
        }
    }
    (!name.is_empty()).then_some(name)
}

/// A value list; several values (as for search_path) are joined with ", ".
fn value_from(tokens: &[Token]) -> Option<SetValue> {
    if let [Token::Word(w)] = tokens
        && w.eq_ignore_ascii_case("default")
    {
        return Some(SetValue::Default);
    }
    let mut parts = Vec::new();
    for token in tokens {
        match token {
            Token::Word(w) | Token::Quoted(w) | Token::Number(w) => parts.push(w.clone()),
            Token::Comma => {}
            Token::Equals | Token::Dot | Token::Slash => return None,
        }
    }
    (!parts.is_empty()).then(|| SetValue::Value(parts.join(", ")))
}
