//! A small backtracking matcher for Postgres's `~` operator, enough for the anchored name
//! patterns psql and drivers send (`^(users)$`, `^pg_`, `[a-z]+`). Supports literals, `.`,
//! classes `[...]`/`[^...]`, `\d \w \s`, groups, `|`, and the `* + ?` quantifiers.
//! Backreferences and counted repetition fail with 0A000 rather than matching wrongly.

use mycelium_protocol::DbError;

use crate::errors::unsupported;

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class(Vec<(char, char)>, bool),
    Start,
    End,
    Group(Vec<Vec<Node>>),
    Repeat(Box<Node>, usize, usize),
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl Parser<'_> {
    fn alternation(&mut self) -> Result<Vec<Vec<Node>>, DbError> {
        let mut branches = vec![self.sequence()?];
        while self.chars.peek() == Some(&'|') {
            self.chars.next();
            branches.push(self.sequence()?);
        }
        Ok(branches)
    }

    fn sequence(&mut self) -> Result<Vec<Node>, DbError> {
        let mut seq = Vec::new();
        while let Some(&c) = self.chars.peek() {
            if c == '|' || c == ')' {
                break;
            }
            self.chars.next();
            let atom = match c {
                '.' => Node::Any,
                '^' => Node::Start,
                '$' => Node::End,
                '(' => {
                    if self.chars.peek() == Some(&'?') {
                        self.chars.next();
                        if self.chars.next() != Some(':') {
                            return Err(unsupported("regular expression lookaround"));
                        }
                    }
                    let group = self.alternation()?;
                    if self.chars.next() != Some(')') {
                        return Err(DbError::new(
                            "2201B",
                            "invalid regular expression: parentheses () not balanced",
                        ));
                    }
                    Node::Group(group)
                }
                '[' => self.class()?,
                '\\' => self.escape()?,
                '{' => return Err(unsupported("regular expression counted repetition")),
                '*' | '+' | '?' => {
                    return Err(DbError::new(
                        "2201B",
                        "invalid regular expression: quantifier operand invalid",
                    ));
                }
                c => Node::Char(c),
            };
            let atom = match self.chars.peek() {
                Some('*') => Node::Repeat(Box::new(atom), 0, usize::MAX),
                Some('+') => Node::Repeat(Box::new(atom), 1, usize::MAX),
                Some('?') => Node::Repeat(Box::new(atom), 0, 1),
                _ => {
                    seq.push(atom);
                    continue;
                }
            };
            self.chars.next();
            // Lazy quantifiers match the same strings for a yes/no answer.
            if self.chars.peek() == Some(&'?') {
                self.chars.next();
            }
            seq.push(atom);
        }
        Ok(seq)
    }

    fn escape(&mut self) -> Result<Node, DbError> {
        Ok(match self.chars.next() {
            Some('d') => Node::Class(vec![('0', '9')], false),
            Some('D') => Node::Class(vec![('0', '9')], true),
            Some('w') => Node::Class(vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')], false),
            Some('W') => Node::Class(vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')], true),
            Some('s') => Node::Class(vec![(' ', ' '), ('\t', '\r')], false),
            Some('S') => Node::Class(vec![(' ', ' '), ('\t', '\r')], true),
            Some(c) if c.is_ascii_digit() => {
                return Err(unsupported("regular expression backreferences"));
            }
            Some(c) => Node::Char(c),
            None => {
                return Err(DbError::new(
                    "2201B",
                    "invalid regular expression: invalid escape \\ sequence",
                ));
            }
        })
    }

    fn class(&mut self) -> Result<Node, DbError> {
        let mut ranges = Vec::new();
        let negated = self.chars.peek() == Some(&'^');
        if negated {
            self.chars.next();
        }
        let mut first = true;
        loop {
            let c = self.chars.next().ok_or_else(|| {
                DbError::new(
                    "2201B",
                    "invalid regular expression: brackets [] not balanced",
                )
            })?;
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = if c == '\\' {
                self.chars.next().unwrap_or('\\')
            } else {
                c
            };
            if self.chars.peek() == Some(&'-') {
                self.chars.next();
                match self.chars.next() {
                    Some(']') => {
                        ranges.push((lo, lo));
                        ranges.push(('-', '-'));
                        break;
                    }
                    Some(hi) => ranges.push((lo, hi)),
                    None => {
                        return Err(DbError::new(
                            "2201B",
                            "invalid regular expression: brackets [] not balanced",
                        ));
                    }
                }
            } else {
                ranges.push((lo, lo));
            }
        }
        Ok(Node::Class(ranges, negated))
    }
}

fn fold(c: char, insensitive: bool) -> char {
    if insensitive {
        c.to_lowercase().next().unwrap_or(c)
    } else {
        c
    }
}

struct Matcher<'a> {
    text: &'a [char],
    insensitive: bool,
    steps: usize,
}

const MAX_STEPS: usize = 1_000_000;

impl Matcher<'_> {
    fn one(&self, node: &Node, at: usize) -> Option<usize> {
        let c = *self.text.get(at)?;
        let hit = match node {
            Node::Char(p) => fold(*p, self.insensitive) == fold(c, self.insensitive),
            Node::Any => true,
            Node::Class(ranges, negated) => {
                let lc = fold(c, self.insensitive);
                let inside = ranges.iter().any(|(lo, hi)| {
                    (*lo..=*hi).contains(&c)
                        || (self.insensitive
                            && ((*lo..=*hi).contains(&lc)
                                || (*lo..=*hi).contains(&c.to_ascii_uppercase())))
                });
                inside != *negated
            }
            _ => false,
        };
        hit.then_some(at + 1)
    }

    /// Calls `k` with every position where `seq` can end when starting at `at`.
    fn seq(
        &mut self,
        seq: &[Node],
        at: usize,
        k: &mut dyn FnMut(&mut Self, usize) -> bool,
    ) -> bool {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return false;
        }
        let Some((first, rest)) = seq.split_first() else {
            return k(self, at);
        };
        match first {
            Node::Start => at == 0 && self.seq(rest, at, k),
            Node::End => at == self.text.len() && self.seq(rest, at, k),
            Node::Group(branches) => {
                for branch in branches {
                    if self.seq(branch, at, &mut |m, end| m.seq(rest, end, k)) {
                        return true;
                    }
                }
                false
            }
            Node::Repeat(node, min, max) => self.repeat(node, *min, *max, rest, at, k),
            atom => match self.one(atom, at) {
                Some(next) => self.seq(rest, next, k),
                None => false,
            },
        }
    }

    fn repeat(
        &mut self,
        node: &Node,
        min: usize,
        max: usize,
        rest: &[Node],
        at: usize,
        k: &mut dyn FnMut(&mut Self, usize) -> bool,
    ) -> bool {
        // Greedy: try one more repetition first, then the rest.
        if max > 0 {
            let single = std::slice::from_ref(node);
            let more = self.seq(single, at, &mut |m, end| {
                end > at && m.repeat(node, min.saturating_sub(1), max - 1, rest, end, k)
            });
            if more {
                return true;
            }
        }
        min == 0 && self.seq(rest, at, k)
    }
}

/// Whether `text` contains a match of the POSIX-style `pattern`.
pub fn is_match(pattern: &str, text: &str, insensitive: bool) -> Result<bool, DbError> {
    let mut parser = Parser {
        chars: pattern.chars().peekable(),
    };
    let branches = parser.alternation()?;
    if parser.chars.next().is_some() {
        return Err(DbError::new(
            "2201B",
            "invalid regular expression: parentheses () not balanced",
        ));
    }
    let program = vec![Node::Group(branches)];
    let chars: Vec<char> = text.chars().collect();
    let mut m = Matcher {
        text: &chars,
        insensitive,
        steps: 0,
    };
    for start in 0..=chars.len() {
        if m.seq(&program, start, &mut |_, _| true) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::is_match;

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
        assert!(is_match("^ABC$", "abc", true).unwrap());
        assert!(!m("^$", "x"));
        assert!(m("^$", ""));
    }
}
