//! Users, roles and privileges in SQL: `CREATE/ALTER/DROP USER|ROLE`, `GRANT`, `REVOKE`.
//!
//! The proxy runs these itself (it stores roles and grants on the nodes), so the router parses
//! them into plain data. The grammar is Postgres's, narrowed to what Mycelium enforces; an
//! option it would silently ignore is refused instead, naming the option.

use crate::RouterError;

/// A privilege on a table, or `Create` on the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
    Truncate,
    /// `CREATE ON SCHEMA public`: may create tables (and then owns them).
    Create,
}

impl Privilege {
    /// What `ALL [PRIVILEGES] ON TABLE` grants.
    pub const TABLE: [Privilege; 5] = [
        Privilege::Select,
        Privilege::Insert,
        Privilege::Update,
        Privilege::Delete,
        Privilege::Truncate,
    ];

    /// The keyword, as Postgres spells it in messages.
    pub fn keyword(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Truncate => "TRUNCATE",
            Privilege::Create => "CREATE",
        }
    }

    pub fn from_keyword(word: &str) -> Option<Privilege> {
        [Privilege::Create]
            .into_iter()
            .chain(Privilege::TABLE)
            .find(|p| p.keyword().eq_ignore_ascii_case(word))
    }
}

/// A password as typed in SQL. Its `Debug` never shows it, so a logged plan cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleOption {
    /// `PASSWORD 'text'` (a password or a `SCRAM-SHA-256$...` verifier); `None` for
    /// `PASSWORD NULL`.
    Password(Option<Secret>),
    Superuser(bool),
    Login(bool),
}

/// What a GRANT or REVOKE of privileges applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantTarget {
    Tables(Vec<String>),
    /// `ALL TABLES IN SCHEMA public`: the tables that exist now, as in Postgres.
    AllTables,
    /// `SCHEMA public`.
    Schema,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleCommand {
    /// `CREATE USER` (`user`: may log in unless NOLOGIN) or `CREATE ROLE` (may not, unless
    /// LOGIN); `IN ROLE` memberships.
    Create {
        name: String,
        user: bool,
        options: Vec<RoleOption>,
        in_roles: Vec<String>,
    },
    Alter {
        name: String,
        options: Vec<RoleOption>,
    },
    Drop {
        names: Vec<String>,
        if_exists: bool,
    },
    /// `GRANT role TO member` (`grant`) or `REVOKE role FROM member`.
    Membership {
        grant: bool,
        roles: Vec<String>,
        members: Vec<String>,
    },
    /// `GRANT privileges ON target TO grantees` (`grant`) or `REVOKE ... FROM ...`;
    /// `public` stands for every role.
    Privileges {
        grant: bool,
        privileges: Vec<Privilege>,
        target: GrantTarget,
        grantees: Vec<String>,
    },
    /// `ALTER TABLE|SEQUENCE|VIEW [IF EXISTS] [ONLY] name OWNER TO role` (`kind`: the
    /// second word, lower-cased).
    Owner {
        kind: String,
        name: String,
        owner: String,
        if_exists: bool,
    },
}

impl RoleCommand {
    /// The command tag Postgres answers with.
    pub fn tag(&self) -> &'static str {
        match self {
            RoleCommand::Create { .. } => "CREATE ROLE",
            RoleCommand::Alter { .. } => "ALTER ROLE",
            RoleCommand::Drop { .. } => "DROP ROLE",
            RoleCommand::Membership { grant: true, .. } => "GRANT ROLE",
            RoleCommand::Membership { grant: false, .. } => "REVOKE ROLE",
            RoleCommand::Privileges { grant: true, .. } => "GRANT",
            RoleCommand::Privileges { grant: false, .. } => "REVOKE",
            RoleCommand::Owner { kind, .. } => match kind.as_str() {
                "sequence" => "ALTER SEQUENCE",
                "view" => "ALTER VIEW",
                _ => "ALTER TABLE",
            },
        }
    }
}

/// Whether a statement is one of [`RoleCommand`]'s (by its first words, without parsing).
pub fn is_role_statement(sql: &str) -> bool {
    let words = crate::classify::leading_words(sql, 2);
    match words.first().map(String::as_str) {
        Some("grant" | "revoke") => true,
        Some("create" | "alter" | "drop") => {
            matches!(
                words.get(1).map(String::as_str),
                Some("user" | "role" | "group")
            ) || is_owner_change(sql)
        }
        _ => false,
    }
}

/// Whether a statement is `ALTER TABLE|SEQUENCE|VIEW ... OWNER TO role` (others, as
/// `ALTER TABLE t RENAME COLUMN owner TO x`, go to the nodes).
pub fn is_owner_change(sql: &str) -> bool {
    let words = crate::classify::leading_words(sql, 2);
    words.first().map(String::as_str) == Some("alter")
        && matches!(
            words.get(1).map(String::as_str),
            Some("table" | "sequence" | "view")
        )
        && matches!(parse_role_command(sql), Ok(RoleCommand::Owner { .. }))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A keyword or identifier: lower-cased unless it was quoted.
    Word {
        text: String,
        quoted: bool,
    },
    Str(String),
    Comma,
    Dot,
    Open,
    Other(char),
}

pub(crate) fn parse_role_command(sql: &str) -> Result<RoleCommand, RouterError> {
    let mut tokens = tokenize(sql)?;
    while tokens.last() == Some(&Token::Other(';')) {
        tokens.pop();
    }
    let mut parser = Parser { tokens, at: 0 };
    let command = parser.command()?;
    if let Some(token) = parser.tokens.get(parser.at) {
        return Err(parser.unexpected(Some(token)));
    }
    Ok(command)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn command(&mut self) -> Result<RoleCommand, RouterError> {
        match self.keyword()?.as_str() {
            "create" => {
                let user = matches!(self.keyword()?.as_str(), "user");
                let name = self.name()?;
                self.eat("with");
                let mut options = Vec::new();
                let mut in_roles = Vec::new();
                while self.peek_word().is_some() {
                    if self.eat("in") {
                        self.expect("role")?;
                        in_roles = self.names()?;
                    } else {
                        options.push(self.option()?);
                    }
                }
                Ok(RoleCommand::Create {
                    name,
                    user,
                    options,
                    in_roles,
                })
            }
            "alter" if matches!(self.peek_word(), Some("table" | "sequence" | "view")) => {
                let kind = self.keyword()?;
                let if_exists = self.eat("if");
                if if_exists {
                    self.expect("exists")?;
                }
                self.eat("only");
                let name = self.table()?;
                self.expect("owner")?;
                self.expect("to")?;
                let owner = self.name()?;
                Ok(RoleCommand::Owner {
                    kind,
                    name,
                    owner,
                    if_exists,
                })
            }
            "alter" => {
                self.keyword()?;
                let name = self.name()?;
                if matches!(self.peek_word(), Some("rename" | "set" | "reset")) {
                    return Err(RouterError::Unsupported(
                        "ALTER ROLE ... RENAME/SET/RESET is not supported; ALTER ROLE changes \
                         PASSWORD, SUPERUSER and LOGIN"
                            .to_owned(),
                    ));
                }
                self.eat("with");
                let mut options = Vec::new();
                while self.peek_word().is_some() {
                    options.push(self.option()?);
                }
                if options.is_empty() {
                    return Err(self.unexpected(None));
                }
                Ok(RoleCommand::Alter { name, options })
            }
            "drop" => {
                self.keyword()?;
                let if_exists = self.eat("if");
                if if_exists {
                    self.expect("exists")?;
                }
                Ok(RoleCommand::Drop {
                    names: self.names()?,
                    if_exists,
                })
            }
            word @ ("grant" | "revoke") => self.grant(word == "grant"),
            _ => Err(self.unexpected(self.tokens.first().cloned().as_ref())),
        }
    }

    fn grant(&mut self, grant: bool) -> Result<RoleCommand, RouterError> {
        if !grant && self.peek_word() == Some("grant") {
            return Err(grant_option());
        }
        let Some(on) = self.find_word("on") else {
            let roles = self.names()?;
            self.expect(if grant { "to" } else { "from" })?;
            let members = self.names()?;
            self.refuse_trailing_options()?;
            return Ok(RoleCommand::Membership {
                grant,
                roles,
                members,
            });
        };
        let mut words = Vec::new();
        while self.at < on {
            match self.next() {
                Some(Token::Word { text, .. }) => words.push(text),
                Some(Token::Comma) => {}
                Some(Token::Open) => {
                    return Err(RouterError::Unsupported(
                        "column privileges are not supported; grant on the whole table".to_owned(),
                    ));
                }
                other => return Err(self.unexpected(other.as_ref())),
            }
        }
        self.expect("on")?;
        let target = if self.eat("schema") {
            let schema = self.name()?;
            check_schema(&schema)?;
            GrantTarget::Schema
        } else if self.peek_word() == Some("all") {
            self.expect("all")?;
            self.expect("tables")?;
            self.expect("in")?;
            self.expect("schema")?;
            let schema = self.name()?;
            check_schema(&schema)?;
            GrantTarget::AllTables
        } else {
            self.eat("table");
            let mut tables = vec![self.table()?];
            while self.eat_token(&Token::Comma) {
                tables.push(self.table()?);
            }
            GrantTarget::Tables(tables)
        };
        let privileges = privileges(&words, &target)?;
        self.expect(if grant { "to" } else { "from" })?;
        let grantees = self.names()?;
        self.refuse_trailing_options()?;
        Ok(RoleCommand::Privileges {
            grant,
            privileges,
            target,
            grantees,
        })
    }

    fn refuse_trailing_options(&mut self) -> Result<(), RouterError> {
        match self.peek_word() {
            Some("with") => Err(grant_option()),
            Some("granted") => Err(RouterError::Unsupported(
                "GRANTED BY is not supported".to_owned(),
            )),
            Some("cascade" | "restrict") => {
                self.at += 1;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn option(&mut self) -> Result<RoleOption, RouterError> {
        let word = self.keyword()?;
        Ok(match word.as_str() {
            "superuser" => RoleOption::Superuser(true),
            "nosuperuser" => RoleOption::Superuser(false),
            "login" => RoleOption::Login(true),
            "nologin" => RoleOption::Login(false),
            "encrypted" | "password" => {
                if word == "encrypted" {
                    self.expect("password")?;
                }
                match self.next() {
                    Some(Token::Str(text)) => RoleOption::Password(Some(Secret(text))),
                    Some(Token::Word {
                        text,
                        quoted: false,
                    }) if text == "null" => RoleOption::Password(None),
                    other => return Err(self.unexpected(other.as_ref())),
                }
            }
            other => {
                return Err(RouterError::Unsupported(format!(
                    "role option {} is not supported; Mycelium roles have PASSWORD, \
                     SUPERUSER/NOSUPERUSER and LOGIN/NOLOGIN",
                    other.to_uppercase()
                )));
            }
        })
    }

    /// A table name, `schema.table` allowed; the schema must be `public`.
    fn table(&mut self) -> Result<String, RouterError> {
        let first = self.name()?;
        if !self.eat_token(&Token::Dot) {
            return Ok(first);
        }
        check_schema(&first)?;
        self.name()
    }

    fn names(&mut self) -> Result<Vec<String>, RouterError> {
        let mut names = vec![self.name()?];
        while self.eat_token(&Token::Comma) {
            names.push(self.name()?);
        }
        Ok(names)
    }

    fn name(&mut self) -> Result<String, RouterError> {
        match self.next() {
            Some(Token::Word { text, .. }) => Ok(text),
            other => Err(self.unexpected(other.as_ref())),
        }
    }

    fn keyword(&mut self) -> Result<String, RouterError> {
        match self.next() {
            Some(Token::Word {
                text,
                quoted: false,
            }) => Ok(text),
            other => Err(self.unexpected(other.as_ref())),
        }
    }

    fn expect(&mut self, word: &str) -> Result<(), RouterError> {
        if self.eat(word) {
            Ok(())
        } else {
            Err(self.unexpected(self.tokens.get(self.at).cloned().as_ref()))
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.peek_word() == Some(word) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn eat_token(&mut self, token: &Token) -> bool {
        if self.tokens.get(self.at) == Some(token) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// The next token if it is an unquoted word.
    fn peek_word(&self) -> Option<&str> {
        match self.tokens.get(self.at) {
            Some(Token::Word {
                text,
                quoted: false,
            }) => Some(text),
            _ => None,
        }
    }

    /// The position of the first unquoted `word` from here on.
    fn find_word(&self, word: &str) -> Option<usize> {
        self.tokens[self.at..]
            .iter()
            .position(|t| matches!(t, Token::Word { text, quoted: false } if text == word))
            .map(|p| self.at + p)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn unexpected(&self, token: Option<&Token>) -> RouterError {
        RouterError::Syntax(match token {
            None => "syntax error at end of input".to_owned(),
            Some(Token::Word { text, .. }) => format!("syntax error at or near \"{text}\""),
            Some(Token::Str(_)) => "syntax error at or near a string constant".to_owned(),
            Some(Token::Comma) => "syntax error at or near \",\"".to_owned(),
            Some(Token::Dot) => "syntax error at or near \".\"".to_owned(),
            Some(Token::Open) => "syntax error at or near \"(\"".to_owned(),
            Some(Token::Other(c)) => format!("syntax error at or near \"{c}\""),
        })
    }
}

fn grant_option() -> RouterError {
    RouterError::Unsupported(
        "WITH GRANT OPTION / ADMIN OPTION is not supported: only superusers and table owners \
         grant privileges"
            .to_owned(),
    )
}

fn check_schema(schema: &str) -> Result<(), RouterError> {
    if schema == "public" {
        Ok(())
    } else {
        Err(RouterError::Unsupported(format!(
            "schema \"{schema}\" does not exist: Mycelium has one schema, public"
        )))
    }
}

/// The privileges words name, checked against what they are granted on.
fn privileges(words: &[String], target: &GrantTarget) -> Result<Vec<Privilege>, RouterError> {
    let on_schema = matches!(target, GrantTarget::Schema);
    let what = if on_schema { "schema" } else { "table" };
    let mut out: Vec<Privilege> = Vec::new();
    match words {
        [all] | [all, _] if all == "all" => {
            if words.get(1).is_some_and(|w| w != "privileges") {
                return Err(RouterError::Syntax(format!(
                    "syntax error at or near \"{}\"",
                    words[1]
                )));
            }
            if on_schema {
                out.push(Privilege::Create);
            } else {
                out.extend(Privilege::TABLE);
            }
        }
        [] => {
            return Err(RouterError::Syntax(
                "syntax error at or near \"ON\"".to_owned(),
            ));
        }
        words => {
            for word in words {
                // USAGE on the one schema is always held; granting it changes nothing.
                if on_schema && word == "usage" {
                    continue;
                }
                let privilege = Privilege::from_keyword(word)
                    .filter(|p| (*p == Privilege::Create) == on_schema)
                    .ok_or_else(|| {
                        RouterError::Unsupported(format!(
                            "privilege {} on a {what} is not supported; tables have SELECT, \
                             INSERT, UPDATE, DELETE and TRUNCATE, the schema has CREATE",
                            word.to_uppercase()
                        ))
                    })?;
                if !out.contains(&privilege) {
                    out.push(privilege);
                }
            }
        }
    }
    Ok(out)
}

fn tokenize(sql: &str) -> Result<Vec<Token>, RouterError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() || c == ';' {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let mut depth = 0usize;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '\'' || ((c == 'e' || c == 'E') && chars.get(i + 1) == Some(&'\'')) {
            let escapes = c != '\'';
            i += if escapes { 2 } else { 1 };
            let mut text = String::new();
            loop {
                match chars.get(i) {
                    None => {
                        return Err(RouterError::Syntax("unterminated quoted string".to_owned()));
                    }
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        text.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') if escapes => {
                        let escaped = chars.get(i + 1).copied().ok_or_else(|| {
                            RouterError::Syntax("unterminated quoted string".to_owned())
                        })?;
                        text.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => other,
                        });
                        i += 2;
                    }
                    Some(&other) => {
                        text.push(other);
                        i += 1;
                    }
                }
            }
            tokens.push(Token::Str(text));
        } else if c == '"' {
            i += 1;
            let mut text = String::new();
            loop {
                match chars.get(i) {
                    None => {
                        return Err(RouterError::Syntax(
                            "unterminated quoted identifier".to_owned(),
                        ));
                    }
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        text.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        text.push(other);
                        i += 1;
                    }
                }
            }
            if text.is_empty() {
                return Err(RouterError::Syntax(
                    "zero-length delimited identifier".to_owned(),
                ));
            }
            tokens.push(Token::Word { text, quoted: true });
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            tokens.push(Token::Word {
                text: text.to_lowercase(),
                quoted: false,
            });
        } else {
            tokens.push(match c {
                ',' => Token::Comma,
                '.' => Token::Dot,
                '(' => Token::Open,
                other => Token::Other(other),
            });
            i += 1;
        }
    }
    Ok(tokens)
}
