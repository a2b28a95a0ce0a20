//! Postgres regular expressions (`~`, `~*`, `regexp_replace`) on SQLite nodes, with the
//! `regex` crate. Postgres's advanced regular expressions and Rust's syntax agree on what
//! clients send (classes, `\d \w \s`, POSIX `[[:alpha:]]`, groups, alternation, counted
//! repetition, non-greedy quantifiers); the word boundaries `\y \Y \m \M` are mapped to `\b`
//! and `\B`. Backreferences and lookaround, which Rust's engine does not have, fail with 0A000
//! rather than matching wrongly; other invalid patterns with 2201B, as in Postgres. `SIMILAR TO`
//! patterns are translated to the same engine's syntax.

use std::cell::RefCell;
use std::collections::HashMap;

use mycelium_protocol::DbError;
use regex::{Regex, RegexBuilder};

use crate::errors::unsupported;

/// Compiled patterns kept per thread (each SQLite connection runs on its own worker thread).
const CACHED: usize = 256;

thread_local! {
    static COMPILED: RefCell<HashMap<(String, bool), Regex>> = RefCell::new(HashMap::new());
}

/// Whether `text` contains a match of `pattern`.
pub fn is_match(pattern: &str, text: &str, insensitive: bool) -> Result<bool, DbError> {
    Ok(compiled(pattern, insensitive)?.is_match(text))
}

/// `regexp_replace(source, pattern, replacement [, flags])`: the first match replaced, or
/// every one with the `g` flag; `i` ignores case. `\1`..`\9` and `\&` in the replacement
/// are the groups and the whole match.
pub fn replace(
    source: &str,
    pattern: &str,
    replacement: &str,
    flags: &str,
) -> Result<String, DbError> {
    let (global, insensitive) = options(flags)?;
    let regex = compiled(pattern, insensitive)?;
    let replacement = rust_replacement(replacement);
    Ok(if global {
        regex.replace_all(source, replacement.as_str()).into_owned()
    } else {
        regex.replace(source, replacement.as_str()).into_owned()
    })
}

/// The flags Postgres's regexp functions take: (`g`, `i`).
fn options(flags: &str) -> Result<(bool, bool), DbError> {
    let mut global = false;
    let mut insensitive = false;
    for flag in flags.chars() {
        match flag {
            'g' => global = true,
            'i' => insensitive = true,
            'c' => insensitive = false,
            other => {
                return Err(DbError::new(
                    "22023",
                    format!("invalid regular expression option: \"{other}\""),
                ));
            }
        }
    }
    Ok((global, insensitive))
}

/// `regexp_matches(text, pattern [, flags])`: for the first match, or each with `g`, its
/// parenthesized groups (NULL where a group took no part), or the whole match when there
/// are none.
pub fn matches(
    text: &str,
    pattern: &str,
    flags: &str,
) -> Result<Vec<Vec<Option<String>>>, DbError> {
    let (global, insensitive) = options(flags)?;
    let regex = compiled(pattern, insensitive)?;
    let groups = regex.captures_len();
    let mut rows = Vec::new();
    // Postgres searches again where a match ended, one character further after an empty
    // one, so an empty match right after a non-empty one counts (Rust's iterator skips it).
    let mut start = 0;
    while start <= text.len() {
        let Some(captures) = regex.captures_at(text, start) else {
            break;
        };
        let Some(whole) = captures.get(0) else {
            break;
        };
        let row = if groups > 1 {
            (1..groups)
                .map(|i| captures.get(i).map(|m| m.as_str().to_owned()))
                .collect()
        } else {
            vec![Some(whole.as_str().to_owned())]
        };
        rows.push(row);
        if !global {
            break;
        }
        start = if whole.is_empty() {
            let next = text.get(whole.end()..).and_then(|rest| rest.chars().next());
            whole.end() + next.map_or(1, char::len_utf8)
        } else {
            whole.end()
        };
    }
    Ok(rows)
}

/// `regexp_split_to_table` / `regexp_split_to_array`: the text between matches. As in
/// Postgres, an empty match at either end of the text or right after another match does not
/// split; `g` is refused.
pub fn split(
    text: &str,
    pattern: &str,
    flags: &str,
    function: &str,
) -> Result<Vec<String>, DbError> {
    let (global, insensitive) = options(flags)?;
    if global {
        return Err(DbError::new(
            "22023",
            format!("{function}() does not support the \"global\" option"),
        ));
    }
    let regex = compiled(pattern, insensitive)?;
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut previous_end = 0;
    for m in regex.find_iter(text) {
        if m.start() < text.len() && m.end() > previous_end {
            pieces.push(text[start..m.start()].to_owned());
            start = m.end();
        }
        previous_end = m.end();
    }
    pieces.push(text[start..].to_owned());
    Ok(pieces)
}

/// `substring(text from pattern)`: the part matching the first parenthesized group, or the
/// whole match when there is none; `None` without a match.
pub fn substring(text: &str, pattern: &str) -> Result<Option<String>, DbError> {
    let regex = compiled(pattern, false)?;
    Ok(regex.captures(text).and_then(|captures| {
        let part = if regex.captures_len() > 1 {
            captures.get(1)
        } else {
            captures.get(0)
        };
        part.map(|m| m.as_str().to_owned())
    }))
}

/// `text SIMILAR TO pattern [ESCAPE escape]`: the SQL standard's patterns (`%`, `_`, `|`,
/// `*`, `+`, `?`, `{m,n}`, brackets and groups) matching the whole text. `escape` is the
/// escape character, `None` for none (`ESCAPE ''`).
pub fn similar_to(text: &str, pattern: &str, escape: Option<char>) -> Result<bool, DbError> {
    // The key cannot collide with a `~` pattern's: those are never compiled under a
    // `SIMILAR` prefix with a NUL in it.
    let key = format!(
        "\0SIMILAR{}\0{pattern}",
        escape.map(String::from).unwrap_or_default()
    );
    Ok(cached((key, false), || similar_pattern(pattern, escape))?.is_match(text))
}

/// What Postgres's `similar_to_escape` builds: the pattern anchored at both ends, `%` and `_`
/// as `.*` and `.`, the characters that are literal in SQL patterns (`.`, `^`, `$`, `\`)
/// escaped, and an escaped character taken literally.
fn similar_pattern(pattern: &str, escape: Option<char>) -> Result<String, DbError> {
    let mut out = String::from("^(?:");
    let mut after_escape = false;
    let mut in_class = false;
    for c in pattern.chars() {
        if after_escape {
            if c == '"' {
                return Err(unsupported("SIMILAR TO with escaped double quotes"));
            }
            out.push_str(&regex::escape(&c.to_string()));
            after_escape = false;
        } else if Some(c) == escape {
            after_escape = true;
        } else if in_class {
            if c == '\\' {
                out.push('\\');
            }
            out.push(c);
            if c == ']' {
                in_class = false;
            }
        } else {
            match c {
                '[' => {
                    out.push('[');
                    in_class = true;
                }
                '%' => out.push_str(".*"),
                '_' => out.push('.'),
                '(' => out.push_str("(?:"),
                '\\' | '.' | '^' | '$' => {
                    out.push('\\');
                    out.push(c);
                }
                other => out.push(other),
            }
        }
    }
    // A trailing escape character escapes nothing; Postgres drops it.
    out.push_str(")$");
    Ok(out)
}

fn compiled(pattern: &str, insensitive: bool) -> Result<Regex, DbError> {
    cached((pattern.to_owned(), insensitive), || rust_pattern(pattern))
}

/// The compiled regular expression for `key`, built from `rust` (its Rust syntax) when this
/// thread has not compiled it yet.
fn cached(
    key: (String, bool),
    rust: impl FnOnce() -> Result<String, DbError>,
) -> Result<Regex, DbError> {
    let insensitive = key.1;
    if let Some(regex) = COMPILED.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(regex);
    }
    let regex = RegexBuilder::new(&rust()?)
        .case_insensitive(insensitive)
        .build()
        .map_err(|e| {
            DbError::new(
                "2201B",
                format!(
                    "invalid regular expression: {}",
                    e.to_string().lines().last().unwrap_or("")
                ),
            )
        })?;
    COMPILED.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() >= CACHED {
            cache.clear();
        }
        cache.insert(key, regex.clone());
    });
    Ok(regex)
}

/// The pattern in Rust's syntax; what Rust lacks is refused.
fn rust_pattern(pattern: &str) -> Result<String, DbError> {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('y' | 'm' | 'M') => out.push_str("\\b"),
                Some('Y') => out.push_str("\\B"),
                Some(d @ '1'..='9') => {
                    return Err(unsupported(format!(
                        "regular expression backreference \\{d}"
                    )));
                }
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push_str("\\\\"),
            },
            '(' if chars.peek() == Some(&'?') => {
                let mut lookahead = chars.clone();
                lookahead.next();
                match lookahead.next() {
                    Some('=' | '!' | '<') => {
                        return Err(unsupported("regular expression lookaround"));
                    }
                    _ => out.push('('),
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// A Postgres replacement string in Rust's syntax: `\N` → `${N}`, `\&` → `${0}`, `\\` → `\`,
/// and `$` taken literally.
fn rust_replacement(replacement: &str) -> String {
    let mut out = String::with_capacity(replacement.len());
    let mut chars = replacement.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(d @ '0'..='9') => {
                    out.push_str("${");
                    out.push(d);
                    out.push('}');
                }
                Some('&') => out.push_str("${0}"),
                Some('\\') | None => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
            },
            '$' => out.push_str("$$"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{is_match, replace, similar_to};

    #[test]
    fn matches_psql_patterns() {
        let m = |p: &str, t: &str| is_match(p, t, false).unwrap();
        assert!(m("^(users)$", "users"));
        assert!(!m("^(users)$", "users2"));
        assert!(m("^(pgbench_.*)$", "pgbench_accounts"));
        assert!(m("a|b", "xbx"));
        assert!(m("^[a-c]+$", "abcab"));
        assert!(!m("^[^a-c]+$", "abd"));
        assert!(m("colou?r", "the color"));
        assert!(m("\\d+", "abc123"));
        assert!(m("^[[:alpha:]]{3}$", "abc"));
        assert!(m("\\yword\\y", "a word here"));
        assert!(is_match("^ABC$", "abc", true).unwrap());
        assert!(!m("^$", "x"));
        assert!(m("^$", ""));
    }

    #[test]
    fn replaces_as_postgres() {
        // Each expected value is PostgreSQL 15's answer.
        let r = |s: &str, p: &str, rep: &str, f: &str| replace(s, p, rep, f).unwrap();
        assert_eq!(r("a1b22c", "[0-9]+", "#", "g"), "a#b#c");
        assert_eq!(r("a1b22c", "[0-9]+", "#", ""), "a#b22c");
        assert_eq!(
            r("John Smith", "(\\w+) (\\w+)", "\\2, \\1", ""),
            "Smith, John"
        );
        assert_eq!(r("abc", "b", "[\\&]", ""), "a[b]c");
        assert_eq!(r("ABC", "b", "x", "gi"), "AxC");
        assert_eq!(r("cost", "o", "$1", ""), "c$1st");
    }

    #[test]
    fn substring_takes_the_first_group() {
        let sub = |t: &str, p: &str| super::substring(t, p).unwrap();
        assert_eq!(sub("abc123def", "[0-9]+").as_deref(), Some("123"));
        assert_eq!(sub("key=value", "=(.*)$").as_deref(), Some("value"));
        assert_eq!(sub("abc", "[0-9]+"), None);
    }

    /// Expected values are PostgreSQL 15's.
    #[test]
    fn similar_to_matches_as_postgres() {
        let cases = [
            ("abc", "a%", Some('\\'), true),
            ("abc", "(a|b)c", Some('\\'), false),
            ("a.c", "a.c", Some('\\'), true),
            ("abc", "a.c", Some('\\'), false),
            ("a_c", "a#_c", Some('#'), true),
            ("abc", "a[b-c]+", Some('\\'), true),
            ("ab", "a|b", Some('\\'), false),
            ("a", "a|b", Some('\\'), true),
            ("a^b", "a^b", Some('\\'), true),
            ("AbC", "a%", Some('\\'), false),
            ("a\\b", "a\\\\b", Some('\\'), true),
            ("abc", "a%", None, true),
            ("a%", "a\\%", Some('\\'), true),
            ("abc", "a{1,2}bc", Some('\\'), true),
        ];
        for (text, pattern, escape, expected) in cases {
            assert_eq!(
                similar_to(text, pattern, escape).ok(),
                Some(expected),
                "{text} SIMILAR TO {pattern}"
            );
        }
        assert_eq!(similar_to("a", "a\\", Some('\\')).ok(), Some(true));
        assert_eq!(similar_to("a\\", "a\\", Some('\\')).ok(), Some(false));
    }

    #[test]
    fn what_rust_lacks_is_refused() {
        assert_eq!(is_match("(a)\\1", "aa", false).unwrap_err().code, "0A000");
        assert_eq!(is_match("a(?=b)", "ab", false).unwrap_err().code, "0A000");
        assert_eq!(is_match("(a", "a", false).unwrap_err().code, "2201B");
        assert_eq!(replace("a", "a", "b", "z").unwrap_err().code, "22023");
    }
}
