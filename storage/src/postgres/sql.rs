//! What a Postgres node needs to know about statement text without parsing it: the leading
//! keywords (transaction control, command tags) and identifier quoting.
//!
//! tokio-postgres does not hand out the `CommandComplete` tag, only its row count, so the tag
//! the client sees is rebuilt from the statement's keywords and that count, as Postgres forms
//! it (`INSERT 0 3`, `CREATE TABLE`, `SELECT 5`).

/// The upper-cased words of `sql` at parenthesis depth 0, skipping comments, string literals,
/// quoted identifiers and dollar-quoted bodies (which read as one `''` word), at most `limit`.
pub fn top_level_words(sql: &str, limit: usize) -> Vec<String> {
    let mut words = Vec::new();
    if limit > 0 {
        visit_top_level_words(sql, |word| {
            words.push(word.to_ascii_uppercase());
            words.len() < limit
        });
    }
    words
}

/// Whether `word` (upper case) is one of the words of `sql` at parenthesis depth 0.
pub fn has_top_level_word(sql: &str, word: &str) -> bool {
    let mut found = false;
    visit_top_level_words(sql, |w| {
        found = w.eq_ignore_ascii_case(word);
        !found
    });
    found
}

/// Whether the first word of `sql` is one of `candidates` (upper case).
fn first_word_is(sql: &str, candidates: &[&str]) -> bool {
    let mut found = false;
    visit_top_level_words(sql, |w| {
        found = candidates.iter().any(|c| w.eq_ignore_ascii_case(c));
        false
    });
    found
}

/// Calls `visit` with each word of `sql` at parenthesis depth 0, as written (`''` for a
/// quoted token), until it returns false.
fn visit_top_level_words(sql: &str, mut visit: impl FnMut(&str) -> bool) {
    let bytes = sql.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let word = match c {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = skip_line_comment(bytes, i);
                None
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(bytes, i);
                None
            }
            b'\'' | b'"' => {
                i = skip_quoted(bytes, i, c);
                (depth == 0).then_some("''")
            }
            b'$' if dollar_tag(bytes, i).is_some() => {
                i = skip_dollar_quoted(sql, i);
                (depth == 0).then_some("''")
            }
            b'(' => {
                depth += 1;
                i += 1;
                None
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
                None
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || bytes[i] == b'$'
                        || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                (depth == 0).then(|| &sql[start..i])
            }
            _ => {
                i += 1;
                None
            }
        };
        if let Some(word) = word
            && !visit(word)
        {
            return;
        }
    }
}

/// The highest parameter number (`$3` → 3) that `sql` refers to, 0 when none: the number of
/// parameters Postgres gives the statement when their types are left to it.
pub fn max_placeholder(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let mut max = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => i = skip_line_comment(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            c @ (b'\'' | b'"') => i = skip_quoted(bytes, i, c),
            b'$' if dollar_tag(bytes, i).is_some() => i = skip_dollar_quoted(sql, i),
            b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let start = i + 1;
                i = start;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                // Postgres refuses numbers this large anyway; they only need to count as many.
                max = max.max(sql[start..i].parse().unwrap_or(usize::MAX));
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 => {
                // An identifier or number: a `$` inside it (`a$1`) is no parameter.
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || bytes[i] == b'$'
                        || bytes[i] >= 0x80)
                {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    max
}

/// Whether a statement that begins with `words` can send rows. False only for statements
/// that never do: INSERT, UPDATE, DELETE and MERGE without a top-level RETURNING, and
/// utility commands that return nothing; true for everything else (when unsure).
pub fn may_return_rows(sql: &str, words: &[String]) -> bool {
    let verb = match words.first().map(String::as_str) {
        Some("WITH") => main_statement(words),
        first => first,
    };
    match verb {
        Some("INSERT" | "UPDATE" | "DELETE" | "MERGE") => has_top_level_word(sql, "RETURNING"),
        Some(
            "CREATE" | "DROP" | "ALTER" | "TRUNCATE" | "GRANT" | "REVOKE" | "COMMENT" | "VACUUM"
            | "ANALYZE" | "ANALYSE" | "CLUSTER" | "REINDEX" | "REFRESH" | "LOCK" | "DO" | "LISTEN"
            | "NOTIFY" | "UNLISTEN" | "DISCARD" | "SET" | "RESET" | "SECURITY" | "IMPORT"
            | "DEALLOCATE" | "CHECKPOINT" | "LOAD" | "PREPARE" | "DECLARE" | "CLOSE" | "MOVE"
            | "REASSIGN",
        ) => false,
        _ => true,
    }
}

/// When `sql[at..]` starts a comment, a string literal, a quoted identifier or a dollar-quoted
/// body, the index just past it (the one lexer for statement text on PostgreSQL nodes).
pub(crate) fn skip_opaque(sql: &str, at: usize) -> Option<usize> {
    let bytes = sql.as_bytes();
    match bytes[at] {
        b'-' if bytes.get(at + 1) == Some(&b'-') => Some(skip_line_comment(bytes, at)),
        b'/' if bytes.get(at + 1) == Some(&b'*') => Some(skip_block_comment(bytes, at)),
        quote @ (b'\'' | b'"') => Some(skip_quoted(bytes, at, quote)),
        b'$' if dollar_tag(bytes, at).is_some() => Some(skip_dollar_quoted(sql, at)),
        _ => None,
    }
}

fn skip_line_comment(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < bytes.len() && bytes[i] != b'\n' {
        i += 1;
    }
    i
}

/// The index just past a (nested) block comment starting at `start`.
fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    let mut nested = 0usize;
    let mut i = start;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            nested += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            nested -= 1;
            i += 2;
            if nested == 0 {
                break;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// The index just past a dollar-quoted body whose tag starts at `start`.
fn skip_dollar_quoted(sql: &str, start: usize) -> usize {
    let Some(tag_end) = dollar_tag(sql.as_bytes(), start) else {
        return start + 1;
    };
    let tag = &sql[start..=tag_end];
    match sql[tag_end + 1..].find(tag) {
        Some(at) => tag_end + 1 + at + tag.len(),
        None => sql.len(),
    }
}

/// The index just past a quoted token starting at `start` (doubled quotes stay inside).
fn skip_quoted(bytes: &[u8], start: usize, quote: u8) -> usize {
    let escapes = quote == b'\''
        && start > 0
        && matches!(bytes[start - 1], b'e' | b'E')
        && (start < 2 || !bytes[start - 2].is_ascii_alphanumeric());
    let mut i = start + 1;
    while i < bytes.len() {
        if escapes && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// The index of the closing `$` of a dollar-quote tag (`$$`, `$body$`) starting at `start`.
fn dollar_tag(bytes: &[u8], start: usize) -> Option<usize> {
    if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
        return None;
    }
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'$' => return Some(i),
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => i += 1,
            c if c.is_ascii_digit() && i > start + 1 => i += 1,
            _ => return None,
        }
    }
    None
}

/// `sql` without its `mycelium.*` table options (`CREATE TABLE ... WITH (mycelium.shard_keys =
/// 'id')`): the proxy reads them as the table's policy, and Postgres rejects the unknown
/// namespace. An options list left empty goes too. `None` when there is nothing to remove.
pub fn without_mycelium_options(sql: &str) -> Option<String> {
    if !first_word_is(sql, &["CREATE", "ALTER"]) || !sql.to_ascii_lowercase().contains("mycelium.")
    {
        return None;
    }
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut depth = 0usize;
    let mut i = 0;
    let mut changed = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => i = skip_quoted(bytes, i, bytes[i]),
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            c if depth == 0 && c.is_ascii_alphabetic() => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &sql[start..i];
                if !(word.eq_ignore_ascii_case("with") || word.eq_ignore_ascii_case("set")) {
                    continue;
                }
                let open = i + sql[i..].len() - sql[i..].trim_start().len();
                if bytes.get(open) != Some(&b'(') {
                    continue;
                }
                let Some((close, entries)) = option_entries(sql, open) else {
                    continue;
                };
                let kept: Vec<&str> = entries
                    .iter()
                    .map(|e| e.trim())
                    .filter(|e| !e.to_ascii_lowercase().starts_with("mycelium."))
                    .collect();
                if kept.len() == entries.len() {
                    continue;
                }
                changed = true;
                if kept.is_empty() {
                    out.push_str(sql[copied..start].trim_end());
                } else {
                    out.push_str(&sql[copied..=open]);
                    out.push_str(&kept.join(", "));
                    out.push(')');
                }
                copied = close + 1;
                i = close + 1;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied..]);
    changed.then_some(out)
}

/// The entries of the parenthesized list opening at `open` (split at top-level commas) and
/// the index of its closing parenthesis.
fn option_entries(sql: &str, open: usize) -> Option<(usize, Vec<&str>)> {
    let bytes = sql.as_bytes();
    let mut entries = Vec::new();
    let mut depth = 0usize;
    let mut start = open + 1;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                i = skip_quoted(bytes, i, bytes[i]);
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    entries.push(&sql[start..i]);
                    return Some((i, entries));
                }
            }
            b',' if depth == 1 => {
                entries.push(&sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Statements that open, end or mark a transaction, which decide whether a session keeps
/// its connection pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Begin,
    Commit,
    Rollback,
    /// `SAVEPOINT`, `RELEASE`.
    Savepoint,
    /// `ROLLBACK TO [SAVEPOINT]`: leaves the failed state.
    RollbackTo,
    /// `PREPARE TRANSACTION`: detaches the transaction from the session.
    PrepareTransaction,
}

pub fn control(words: &[String]) -> Option<Control> {
    let first = words.first()?.as_str();
    let second = words.get(1).map(String::as_str);
    match (first, second) {
        ("BEGIN", _) | ("START", Some("TRANSACTION")) => Some(Control::Begin),
        ("COMMIT" | "ROLLBACK", Some("PREPARED")) => None,
        ("COMMIT" | "END", _) => Some(Control::Commit),
        ("ROLLBACK" | "ABORT", Some("TO")) => Some(Control::RollbackTo),
        ("ROLLBACK" | "ABORT", _) => Some(Control::Rollback),
        ("SAVEPOINT" | "RELEASE", _) => Some(Control::Savepoint),
        ("PREPARE", Some("TRANSACTION")) => Some(Control::PrepareTransaction),
        _ => None,
    }
}

/// Words enough to form any tag.
const TAG_WORDS: usize = 64;

/// The leading words a statement's tag is made of: four, unless the verb comes later
/// (`WITH ... INSERT`, `CREATE ... TABLE ... AS`).
pub fn tag_words(sql: &str) -> Vec<String> {
    let words = top_level_words(sql, 4);
    match words.first().map(String::as_str) {
        Some("WITH" | "CREATE") => top_level_words(sql, TAG_WORDS),
        _ => words,
    }
}

/// The `CommandComplete` tag Postgres sends for a statement that began with `words` and
/// affected or returned `rows` rows. `failed_txn` is whether a COMMIT ends a failed
/// transaction (Postgres answers `ROLLBACK` then).
pub fn command_tag(words: &[String], rows: u64, failed_txn: bool) -> String {
    let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    match word(0) {
        "SELECT" | "VALUES" | "TABLE" => format!("SELECT {rows}"),
        "WITH" => match main_statement(words) {
            Some("INSERT") => format!("INSERT 0 {rows}"),
            Some(verb @ ("UPDATE" | "DELETE" | "MERGE")) => format!("{verb} {rows}"),
            _ => format!("SELECT {rows}"),
        },
        "INSERT" => format!("INSERT 0 {rows}"),
        verb @ ("UPDATE" | "DELETE" | "MERGE" | "COPY" | "FETCH" | "MOVE") => {
            format!("{verb} {rows}")
        }
        "BEGIN" => "BEGIN".to_owned(),
        "START" => "START TRANSACTION".to_owned(),
        "COMMIT" | "END" if word(1) == "PREPARED" => "COMMIT PREPARED".to_owned(),
        "COMMIT" | "END" if failed_txn => "ROLLBACK".to_owned(),
        "COMMIT" | "END" => "COMMIT".to_owned(),
        "ROLLBACK" | "ABORT" if word(1) == "PREPARED" => "ROLLBACK PREPARED".to_owned(),
        "ROLLBACK" | "ABORT" => "ROLLBACK".to_owned(),
        "PREPARE" if word(1) == "TRANSACTION" => "PREPARE TRANSACTION".to_owned(),
        "CREATE" => create_tag(words, rows),
        verb @ ("DROP" | "ALTER") => object_tag(verb, &words[1..]),
        "TRUNCATE" => "TRUNCATE TABLE".to_owned(),
        "LOCK" => "LOCK TABLE".to_owned(),
        "DECLARE" => "DECLARE CURSOR".to_owned(),
        "CLOSE" if word(1) == "ALL" => "CLOSE CURSOR ALL".to_owned(),
        "CLOSE" => "CLOSE CURSOR".to_owned(),
        "DISCARD" => format!("DISCARD {}", word(1)),
        "DEALLOCATE" if word(1) == "ALL" || word(2) == "ALL" => "DEALLOCATE ALL".to_owned(),
        "SET" if word(1) == "CONSTRAINTS" => "SET CONSTRAINTS".to_owned(),
        "REFRESH" => "REFRESH MATERIALIZED VIEW".to_owned(),
        "IMPORT" => "IMPORT FOREIGN SCHEMA".to_owned(),
        "SECURITY" => "SECURITY LABEL".to_owned(),
        "REASSIGN" => "REASSIGN OWNED".to_owned(),
        "" => "EMPTY".to_owned(),
        other => other.to_owned(),
    }
}

/// The verb of the statement a `WITH` query list leads to.
fn main_statement(words: &[String]) -> Option<&str> {
    words.iter().skip(1).map(String::as_str).find(|w| {
        matches!(
            *w,
            "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "VALUES" | "TABLE"
        )
    })
}

fn create_tag(words: &[String], rows: u64) -> String {
    let rest: Vec<&str> = words[1..]
        .iter()
        .map(String::as_str)
        .skip_while(|w| {
            matches!(
                *w,
                "OR" | "REPLACE"
                    | "GLOBAL"
                    | "LOCAL"
                    | "TEMP"
                    | "TEMPORARY"
                    | "UNLOGGED"
                    | "UNIQUE"
                    | "TRUSTED"
                    | "PROCEDURAL"
                    | "DEFAULT"
                    | "RECURSIVE"
                    | "CONSTRAINT"
            )
        })
        .collect();
    match rest.first().copied() {
        // CREATE TABLE ... AS and CREATE MATERIALIZED VIEW report the rows they wrote.
        Some("TABLE") if rest.contains(&"AS") => format!("SELECT {rows}"),
        Some("MATERIALIZED") => format!("SELECT {rows}"),
        _ => {
            let owned: Vec<String> = rest.iter().map(|w| (*w).to_owned()).collect();
            object_tag("CREATE", &owned)
        }
    }
}

/// `VERB OBJECT` for DDL, with Postgres's spelling of multi-word and aliased object kinds.
fn object_tag(verb: &str, rest: &[String]) -> String {
    let word = |i: usize| rest.get(i).map(String::as_str).unwrap_or("");
    let object = match word(0) {
        "USER" if word(1) == "MAPPING" => "USER MAPPING".to_owned(),
        "USER" | "GROUP" | "ROLE" => "ROLE".to_owned(),
        "MATERIALIZED" | "FOREIGN" if word(1) == "DATA" => "FOREIGN DATA WRAPPER".to_owned(),
        two @ ("MATERIALIZED" | "FOREIGN" | "EVENT" | "ACCESS") => format!("{two} {}", word(1)),
        "TEXT" => format!("TEXT SEARCH {}", word(2)),
        "OPERATOR" if matches!(word(1), "CLASS" | "FAMILY") => format!("OPERATOR {}", word(1)),
        "DEFAULT" => "DEFAULT PRIVILEGES".to_owned(),
        "PROCEDURAL" | "TRUSTED" => "LANGUAGE".to_owned(),
        one => one.to_owned(),
    };
    if object.is_empty() {
        verb.to_owned()
    } else {
        format!("{verb} {object}")
    }
}

/// `name` as a SQL identifier: unquoted when it is a plain identifier (so Postgres folds its
/// case, as it did for the client's unquoted name), else double-quoted.
pub fn identifier(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `name` double-quoted: exactly this name, whatever its case.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a SQL string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `sql` with `current_user`, `session_user` and `current_role` replaced by the client's user
/// name (a `name` literal), or `None` when it names none of them. The node logs in to
/// PostgreSQL as its own role, so without this they would answer with the node's login.
pub fn with_client_user(sql: &str, user: &str) -> Option<String> {
    const WORDS: [&str; 3] = ["current_user", "session_user", "current_role"];
    // Every statement passes here: rather than lower-casing a copy of the text, look around
    // each underscore (found with a fast byte search), which all three words contain.
    let bytes = sql.as_bytes();
    let named = sql.match_indices('_').any(|(at, _)| {
        WORDS.iter().any(|w| {
            let start = at.checked_sub(w.find('_').unwrap_or(0));
            start
                .and_then(|start| bytes.get(start..start + w.len()))
                .is_some_and(|found| found.eq_ignore_ascii_case(w.as_bytes()))
        })
    });
    if !named {
        return None;
    }
    replace_words(sql, |word| {
        WORDS
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w))
            .then(|| format!("{}::name", literal(user)))
    })
}

/// `sql` with Mycelium's own tables (`__mycelium_*`, which the proxy creates and reads on
/// every node) moved into the node's `mycelium` schema, or `None` when it names none: kept
/// out of `public`, they stay out of the application's way (psql's `\dt`, ORMs' reflection).
/// The shard function (`__mycelium_shard`) keeps its name.
pub fn in_mycelium_schema(sql: &str) -> Option<String> {
    if !sql.contains("__mycelium_") {
        return None;
    }
    replace_words(sql, |word| {
        (word.starts_with("__mycelium_") && word != crate::SHARD_FUNCTION)
            .then(|| format!("{MYCELIUM_SCHEMA}.{word}"))
    })
}

/// The schema of the node's own tables.
pub const MYCELIUM_SCHEMA: &str = "mycelium";

/// `sql` with every unqualified word for which `replace(word)` says so replaced; `None` when nothing was. String literals, quoted identifiers, dollar-quoted
/// bodies, comments and qualified names (`t.word`) are left alone.
fn replace_words(sql: &str, replace: impl Fn(&str) -> Option<String>) -> Option<String> {
    let bytes = sql.as_bytes();
    let word_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$';
    let mut out = String::with_capacity(sql.len() + 16);
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(next) = skip_opaque(sql, i) {
            i = next;
        } else if word_char(bytes[i]) {
            let start = i;
            while i < bytes.len() && word_char(bytes[i]) {
                i += 1;
            }
            let qualified = start > 0 && bytes[start - 1] == b'.';
            if !qualified && let Some(replacement) = replace(&sql[start..i]) {
                out.push_str(&sql[copied..start]);
                out.push_str(&replacement);
                copied = i;
            }
        } else {
            i += 1;
        }
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(sql: &str, rows: u64) -> String {
        command_tag(&tag_words(sql), rows, false)
    }

    #[test]
    fn tags_follow_postgres() {
        let cases = [
            ("select 1", 1, "SELECT 1"),
            ("  /* c */ -- x\n insert into t values (1)", 3, "INSERT 0 3"),
            ("update t set a = 1", 2, "UPDATE 2"),
            (
                "WITH x AS (SELECT 1) DELETE FROM t WHERE a IN (SELECT * FROM x)",
                4,
                "DELETE 4",
            ),
            (
                "with x as (insert into t values (1) returning *) select * from x",
                1,
                "SELECT 1",
            ),
            ("create table t (a int)", 0, "CREATE TABLE"),
            ("CREATE TEMP TABLE t AS SELECT 1", 1, "SELECT 1"),
            ("create unique index i on t (a)", 0, "CREATE INDEX"),
            (
                "create or replace function f() returns int as $$ select 1 $$ language sql",
                0,
                "CREATE FUNCTION",
            ),
            ("drop table if exists t", 0, "DROP TABLE"),
            ("alter table t add column b int", 0, "ALTER TABLE"),
            ("create user bob", 0, "CREATE ROLE"),
            ("truncate t", 0, "TRUNCATE TABLE"),
            ("begin isolation level serializable", 0, "BEGIN"),
            ("start transaction", 0, "START TRANSACTION"),
            ("rollback to savepoint a", 0, "ROLLBACK"),
            ("release a", 0, "RELEASE"),
            ("commit prepared 'x'", 0, "COMMIT PREPARED"),
            ("create materialized view v as select 1", 1, "SELECT 1"),
            ("do $x$ begin perform 1; end $x$", 0, "DO"),
        ];
        for (sql, rows, expected) in cases {
            assert_eq!(tag(sql, rows), expected, "{sql}");
        }
        assert_eq!(
            command_tag(&top_level_words("commit", 4), 0, true),
            "ROLLBACK"
        );
    }

    #[test]
    fn control_statements() {
        let control_of = |sql: &str| control(&top_level_words(sql, 4));
        assert_eq!(control_of("BEGIN"), Some(Control::Begin));
        assert_eq!(control_of("end"), Some(Control::Commit));
        assert_eq!(control_of("abort"), Some(Control::Rollback));
        assert_eq!(control_of("rollback to a"), Some(Control::RollbackTo));
        assert_eq!(control_of("rollback prepared 'a'"), None);
        assert_eq!(
            control_of("prepare transaction 'a'"),
            Some(Control::PrepareTransaction)
        );
        assert_eq!(control_of("select 'begin'"), None);
    }

    #[test]
    fn mycelium_options_are_removed() {
        let strip = without_mycelium_options;
        assert_eq!(
            strip("CREATE TABLE t (a int, b text DEFAULT 'x,y') WITH (mycelium.shard_keys = 'a', mycelium.shards = 6)").as_deref(),
            Some("CREATE TABLE t (a int, b text DEFAULT 'x,y')")
        );
        assert_eq!(
            strip("create table t (a int) with (fillfactor = 70, MYCELIUM.shards = 2)").as_deref(),
            Some("create table t (a int) with (fillfactor = 70)")
        );
        assert_eq!(
            strip("ALTER TABLE t SET (mycelium.shards = 8, autovacuum_enabled = off)").as_deref(),
            Some("ALTER TABLE t SET (autovacuum_enabled = off)")
        );
        assert_eq!(strip("CREATE TABLE t (a int) WITH (fillfactor = 70)"), None);
        assert_eq!(strip("SELECT 'mycelium.x'"), None);
    }

    #[test]
    fn placeholders() {
        let cases = [
            ("SELECT 1", 0),
            ("SELECT $1 + $12", 12),
            (
                "SELECT '$3', \"$4\", $$ $5 $$, $t$ $6 $t$ -- $7\n /* $8 /* $9 */ */ $2",
                2,
            ),
            ("SELECT a$1 FROM t WHERE x = $1", 1),
            ("SELECT E'\\' $3' , $1", 1),
        ];
        for (sql, expected) in cases {
            assert_eq!(max_placeholder(sql), expected, "{sql}");
        }
    }

    #[test]
    fn statements_that_return_rows() {
        let cases = [
            ("select 1", true),
            ("insert into t values (1)", false),
            ("insert into t values (1) returning id", true),
            (
                "update t set a = (select 1 returning) where b = 'returning'",
                false,
            ),
            (
                "with x as (delete from t returning *) insert into u select * from x",
                false,
            ),
            ("with x as (select 1) update t set a = 1 returning a", true),
            ("create table t (a int)", false),
            ("show work_mem", true),
            ("explain select 1", true),
            ("call p()", true),
        ];
        for (sql, expected) in cases {
            assert_eq!(may_return_rows(sql, &tag_words(sql)), expected, "{sql}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(identifier("abc"), "abc");
        assert_eq!(identifier("My Table"), "\"My Table\"");
        assert_eq!(identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn mycelium_tables_live_in_their_schema() {
        assert_eq!(
            in_mycelium_schema(
                "CREATE TABLE IF NOT EXISTS __mycelium_policies (table_name text); \
                 SELECT p.options FROM __mycelium_policies p JOIN mycelium.__mycelium_x x ON true \
                 WHERE __mycelium_shard(4, '', p.id) IN (1) AND p.v = '__mycelium_roles'"
            )
            .as_deref(),
            Some(
                "CREATE TABLE IF NOT EXISTS mycelium.__mycelium_policies (table_name text); \
                 SELECT p.options FROM mycelium.__mycelium_policies p JOIN mycelium.__mycelium_x x ON true \
                 WHERE __mycelium_shard(4, '', p.id) IN (1) AND p.v = '__mycelium_roles'"
            )
        );
        assert_eq!(in_mycelium_schema("SELECT 1"), None);
    }

    #[test]
    fn the_client_user_replaces_current_user() {
        let user = |sql: &str| with_client_user(sql, "alice");
        assert_eq!(
            user("SELECT current_user, Session_User, CURRENT_ROLE").as_deref(),
            Some("SELECT 'alice'::name, 'alice'::name, 'alice'::name")
        );
        assert_eq!(user("SELECT 1"), None);
        assert_eq!(user("SELECT 'current_user', \"current_user\" FROM t"), None);
        assert_eq!(user("SELECT t.current_user FROM t -- current_user"), None);
        assert_eq!(user("SELECT my_current_user, current_users FROM t"), None);
        assert_eq!(
            user("CREATE FUNCTION f() RETURNS name AS $f$ SELECT current_user $f$ LANGUAGE sql"),
            None
        );
        assert_eq!(
            user("SELECT $1 = current_user /* current_user */").as_deref(),
            Some("SELECT $1 = 'alice'::name /* current_user */")
        );
        assert_eq!(
            with_client_user("SELECT current_user", "o'brien").as_deref(),
            Some("SELECT 'o''brien'::name")
        );
    }
}
