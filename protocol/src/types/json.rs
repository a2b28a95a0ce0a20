//! `json` validation and `jsonb` normalization, following Postgres's JSON lexer.

use super::numeric::{Numeric, ParseError};
use crate::DbError;

/// Nesting limit; Postgres stops at its stack depth limit, which real documents never reach.
const MAX_DEPTH: usize = 1000;

/// Checks `text` is one JSON value, as the `json` type's input function does.
pub(super) fn validate(text: &str) -> Result<(), DbError> {
    Parser::new(text, false).document().map(drop)
}

/// Parses `text` and prints it as `jsonb_out` would: keys sorted by length then bytes, the last
/// of duplicate keys kept, numbers in `numeric` form, `", "` and `": "` separators.
pub(super) fn normalize_jsonb(text: &str) -> Result<String, DbError> {
    let value = Parser::new(text, true).document()?;
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    write_value(&value, &mut out);
    Ok(out)
}

enum Value {
    Null,
    Bool(bool),
    /// The number in `numeric` output form (jsonb) or as written (json).
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    jsonb: bool,
    depth: usize,
}

fn syntax(detail: impl Into<String>) -> DbError {
    DbError::new("22P02", "invalid input syntax for type json").with_detail(detail)
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, jsonb: bool) -> Parser<'a> {
        Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            jsonb,
            depth: 0,
        }
    }

    fn document(&mut self) -> Result<Value, DbError> {
        let value = self.value()?;
        self.skip_ws();
        if self.pos < self.bytes.len() {
            let token = self.token_text();
            return Err(syntax(format!(
                "Expected end of input, but found \"{token}\"."
            )));
        }
        Ok(value)
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The token at the cursor, for error messages: a punctuation character or a run of
    /// anything else up to a delimiter.
    fn token_text(&self) -> &'a str {
        let rest = &self.text[self.pos..];
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            let delimiter = matches!(
                c,
                ' ' | '\t' | '\n' | '\r' | '{' | '}' | '[' | ']' | ',' | ':' | '"'
            );
            if delimiter {
                end = if i == 0 { c.len_utf8() } else { i };
                break;
            }
            end = i + c.len_utf8();
        }
        &rest[..end]
    }

    fn unexpected(&self, expected: &str) -> DbError {
        if self.pos >= self.bytes.len() {
            syntax("The input string ended unexpectedly.")
        } else {
            let token = self.token_text();
            if expected.is_empty() {
                syntax(format!("Token \"{token}\" is invalid."))
            } else {
                syntax(format!("Expected {expected}, but found \"{token}\"."))
            }
        }
    }

    fn value(&mut self) -> Result<Value, DbError> {
        self.skip_ws();
        match self.bytes.get(self.pos) {
            None => Err(syntax("The input string ended unexpectedly.")),
            Some(b'{') => self.nested(Parser::object),
            Some(b'[') => self.nested(Parser::array),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => {
                let token = self.token_text();
                let value = match token {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    _ => return Err(syntax(format!("Token \"{token}\" is invalid."))),
                };
                self.pos += token.len();
                Ok(value)
            }
        }
    }

    fn nested(
        &mut self,
        parse: fn(&mut Parser<'a>) -> Result<Value, DbError>,
    ) -> Result<Value, DbError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(DbError::new("54001", "stack depth limit exceeded")
                .with_detail(format!("JSON nesting deeper than {MAX_DEPTH} levels.")));
        }
        let value = parse(self);
        self.depth -= 1;
        value
    }

    fn object(&mut self) -> Result<Value, DbError> {
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(self.unexpected("string"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.bytes.get(self.pos) != Some(&b':') {
                return Err(self.unexpected("\":\""));
            }
            self.pos += 1;
            let value = self.value()?;
            members.push((key, value));
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.unexpected("\",\" or \"}\"")),
            }
        }
    }

    fn array(&mut self) -> Result<Value, DbError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.unexpected("\",\" or \"]\"")),
            }
        }
    }

    /// RFC 8259 number syntax; in jsonb the value must also fit `numeric`.
    fn number(&mut self) -> Result<Value, DbError> {
        let start = self.pos;
        let b = self.bytes;
        let mut i = self.pos;
        let digits = |mut i: usize| {
            let from = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            (i, i - from)
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let valid = match b.get(i) {
            Some(b'0') => {
                i += 1;
                true
            }
            Some(b'1'..=b'9') => {
                i = digits(i).0;
                true
            }
            _ => false,
        };
        let mut valid = valid;
        if valid && b.get(i) == Some(&b'.') {
            let (end, n) = digits(i + 1);
            valid = n > 0;
            i = end;
        }
        if valid && matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let (end, n) = digits(i);
            valid = n > 0;
            i = end;
        }
        // A number running straight into letters or digits is one bad token, as in Postgres.
        if !valid
            || b.get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            return Err(self.unexpected(""));
        }
        self.pos = i;
        let literal = &self.text[start..i];
        if !self.jsonb {
            return Ok(Value::Number(literal.to_owned()));
        }
        match Numeric::parse(literal) {
            Ok(n) => Ok(Value::Number(n.to_string())),
            Err(ParseError::Overflow) => {
                Err(DbError::new("22003", "value overflows numeric format"))
            }
            Err(ParseError::Syntax) => Err(self.unexpected("")),
        }
    }

    fn string(&mut self) -> Result<String, DbError> {
        self.pos += 1;
        let mut out = String::new();
        // A high surrogate waiting for its low half.
        let mut pending_high: Option<u32> = None;
        loop {
            let Some(&c) = self.bytes.get(self.pos) else {
                return Err(syntax("The input string ended unexpectedly."));
            };
            if c != b'\\' && pending_high.take().is_some() && self.jsonb {
                return Err(syntax(
                    "Unicode low surrogate must follow a high surrogate.",
                ));
            }
            match c {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                0..=0x1f => {
                    return Err(syntax(format!(
                        "Character with value 0x{c:02x} must be escaped."
                    )));
                }
                b'\\' => {
                    let escape = self.bytes.get(self.pos + 1).copied();
                    if escape != Some(b'u') && pending_high.take().is_some() && self.jsonb {
                        return Err(syntax(
                            "Unicode low surrogate must follow a high surrogate.",
                        ));
                    }
                    let simple = match escape {
                        Some(b'"') => Some('"'),
                        Some(b'\\') => Some('\\'),
                        Some(b'/') => Some('/'),
                        Some(b'b') => Some('\u{8}'),
                        Some(b'f') => Some('\u{c}'),
                        Some(b'n') => Some('\n'),
                        Some(b'r') => Some('\r'),
                        Some(b't') => Some('\t'),
                        _ => None,
                    };
                    if let Some(ch) = simple {
                        out.push(ch);
                        self.pos += 2;
                        continue;
                    }
                    if escape != Some(b'u') {
                        let shown: String = self.text[self.pos..].chars().take(2).collect();
                        return Err(if escape.is_none() {
                            syntax("The input string ended unexpectedly.")
                        } else {
                            syntax(format!("Escape sequence \"{shown}\" is invalid."))
                        });
                    }
                    let hex = self.text.get(self.pos + 2..self.pos + 6);
                    let code = hex
                        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                        .and_then(|h| u32::from_str_radix(h, 16).ok());
                    let Some(code) = code else {
                        return Err(syntax(
                            "\"\\u\" must be followed by four hexadecimal digits.",
                        ));
                    };
                    self.pos += 6;
                    self.unicode_escape(code, &mut pending_high, &mut out)?;
                }
                _ => {
                    // Copy the whole UTF-8 character; the input is a &str so it is valid.
                    let rest = &self.text[self.pos..];
                    let ch = rest.chars().next().unwrap_or('\u{fffd}');
                    out.push(ch);
                    self.pos += ch.len_utf8();
                }
            }
        }
    }

    fn unicode_escape(
        &self,
        code: u32,
        pending_high: &mut Option<u32>,
        out: &mut String,
    ) -> Result<(), DbError> {
        let high = pending_high.take();
        match code {
            0xd800..=0xdbff => {
                if high.is_some() && self.jsonb {
                    return Err(syntax(
                        "Unicode high surrogate must not follow a high surrogate.",
                    ));
                }
                *pending_high = Some(code);
            }
            0xdc00..=0xdfff => match high {
                Some(h) => {
                    let c = 0x10000 + ((h - 0xd800) << 10) + (code - 0xdc00);
                    out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                }
                None if self.jsonb => {
                    return Err(syntax(
                        "Unicode low surrogate must follow a high surrogate.",
                    ));
                }
                None => out.push('\u{fffd}'),
            },
            0 if self.jsonb => {
                return Err(DbError::new("22P05", "unsupported Unicode escape sequence")
                    .with_detail("\\u0000 cannot be converted to text."));
            }
            _ => {
                if high.is_some() && self.jsonb {
                    return Err(syntax(
                        "Unicode low surrogate must follow a high surrogate.",
                    ));
                }
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
            }
        }
        Ok(())
    }
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(n),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<&(String, Value)> = members.iter().collect();
            // jsonb's key order: shorter keys first, then bytewise; stable, so among equal
            // keys the last one written is last.
            sorted.sort_by(|a, b| (a.0.len(), a.0.as_bytes()).cmp(&(b.0.len(), b.0.as_bytes())));
            out.push('{');
            let mut first = true;
            for (i, (key, value)) in sorted.iter().map(|m| (&m.0, &m.1)).enumerate() {
                if sorted.get(i + 1).is_some_and(|next| next.0 == *key) {
                    continue;
                }
                if !first {
                    out.push_str(", ");
                }
                first = false;
                write_string(key, out);
                out.push_str(": ");
                write_value(value, out);
            }
            out.push('}');
        }
    }
}

/// `escape_json`: the short escapes, `\u00XX` for other control characters, all else as is.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
