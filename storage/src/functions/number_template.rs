//! `to_char(number, template)`: Postgres's template patterns for numbers (`9`, `0`, `.`/`D`,
//! `,`/`G`, `FM`, `S`, `MI`, `PL`, `SG`, `PR`, `TH`, quoted text), printed the way Postgres's
//! `NUM_processor` prints them in the C locale, position by position: where a sign goes, which
//! leading zeros are blanks, what fill mode trims. `L`, `V`, `RN`, `EEEE` and `B` are refused.

use mycelium_protocol::DbError;

use crate::errors::unsupported;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Nine,
    Zero,
    Point,
    Comma,
    Minus,
    Plus,
    SignAlways,
    Ordinal { upper: bool },
    Literal(char),
}

/// Where an `S` stands: before the digits (written before the first one) or after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnchoredSign {
    None,
    Before,
    After,
}

/// What the template says as a whole, as Postgres's `NUMDesc`.
struct Template {
    tokens: Vec<Token>,
    fill: bool,
    brackets: bool,
    anchored: AnchoredSign,
    /// Digit positions before and after the decimal point.
    pre: usize,
    post: usize,
    decimal: bool,
    /// The first `0` before the decimal point (a position among the digits, from 0), from
    /// which leading zeros print as zeros.
    zero_start: Option<usize>,
    /// The digit position after the last `0` (1-based), which fill mode does not trim.
    zero_end: usize,
    minus: bool,
    plus: bool,
}

fn parse(template: &str) -> Result<Template, DbError> {
    let mut t = Template {
        tokens: Vec::new(),
        fill: false,
        brackets: false,
        anchored: AnchoredSign::None,
        pre: 0,
        post: 0,
        decimal: false,
        zero_start: None,
        zero_end: 0,
        minus: false,
        plus: false,
    };
    let chars: Vec<char> = template.chars().collect();
    let mut i = 0;
    let upper_at = |i: usize, word: &str| -> bool {
        let n = word.len();
        i + n <= chars.len()
            && chars[i..i + n]
                .iter()
                .zip(word.chars())
                .all(|(c, w)| c.to_ascii_uppercase() == w)
    };
    while i < chars.len() {
        let c = chars[i];
        if upper_at(i, "FM") {
            t.fill = true;
            i += 2;
            continue;
        }
        if upper_at(i, "MI") || upper_at(i, "PL") || upper_at(i, "SG") {
            let word: String = chars[i..i + 2]
                .iter()
                .collect::<String>()
                .to_ascii_uppercase();
            t.tokens.push(match word.as_str() {
                "MI" => {
                    t.minus = true;
                    Token::Minus
                }
                "PL" => {
                    t.plus = true;
                    Token::Plus
                }
                _ => {
                    t.minus = true;
                    t.plus = true;
                    Token::SignAlways
                }
            });
            i += 2;
            continue;
        }
        if upper_at(i, "PR") {
            t.brackets = true;
            i += 2;
            continue;
        }
        if upper_at(i, "TH") {
            t.tokens.push(Token::Ordinal { upper: c == 'T' });
            i += 2;
            continue;
        }
        for word in ["EEEE", "RN"] {
            if upper_at(i, word) {
                return Err(unsupported(format!("to_char of a number with {word}")));
            }
        }
        match c {
            '9' | '0' => {
                if c == '0' {
                    if !t.decimal && t.zero_start.is_none() {
                        t.zero_start = Some(t.pre);
                    }
                    t.zero_end = t.pre + t.post + 1;
                }
                if t.decimal {
                    t.post += 1;
                } else {
                    t.pre += 1;
                }
                t.tokens
                    .push(if c == '0' { Token::Zero } else { Token::Nine });
            }
            '.' | 'D' | 'd' => {
                if t.decimal {
                    return Err(DbError::new("42601", "multiple decimal points"));
                }
                t.decimal = true;
                t.tokens.push(Token::Point);
            }
            ',' | 'G' | 'g' => t.tokens.push(Token::Comma),
            'S' | 's' => {
                if t.anchored != AnchoredSign::None {
                    return Err(DbError::new("42601", "cannot use \"S\" twice"));
                }
                t.anchored = if t.pre == 0 && !t.decimal {
                    AnchoredSign::Before
                } else {
                    AnchoredSign::After
                };
            }
            'L' | 'l' | 'V' | 'v' | 'B' | 'b' => {
                return Err(unsupported(format!(
                    "to_char of a number with {}",
                    c.to_ascii_uppercase()
                )));
            }
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    t.tokens.push(Token::Literal(chars[i]));
                    i += 1;
                }
            }
            '\\' if i + 1 < chars.len() => {
                i += 1;
                t.tokens.push(Token::Literal(chars[i]));
            }
            other => t.tokens.push(Token::Literal(other)),
        }
        i += 1;
    }
    if t.brackets && (t.anchored != AnchoredSign::None || t.minus || t.plus) {
        return Err(DbError::new(
            "42601",
            "cannot use \"PR\" and \"S\"/\"PL\"/\"MI\"/\"SG\" together",
        ));
    }
    Ok(t)
}

/// `value` (a decimal number's text: `-12.5`, `3`) rounded half away from zero to `scale`
/// decimals: its sign, and its digits with a point when `scale > 0` (`0.50`).
fn rounded(value: &str, scale: usize) -> Result<(bool, String), DbError> {
    let bad = || {
        DbError::new(
            "22P02",
            format!("invalid input syntax for type numeric: \"{value}\""),
        )
    };
    let text = value.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let mut all: Vec<u8> = int.bytes().map(|b| b - b'0').collect();
    let mut fraction: Vec<u8> = frac.bytes().map(|b| b - b'0').collect();
    let round_up = fraction.get(scale).is_some_and(|&d| d >= 5);
    fraction.resize(scale, 0);
    all.extend(fraction);
    if round_up {
        let mut i = all.len();
        loop {
            if i == 0 {
                all.insert(0, 1);
                break;
            }
            i -= 1;
            if all[i] == 9 {
                all[i] = 0;
            } else {
                all[i] += 1;
                break;
            }
        }
    }
    // A carry may have added a digit in front.
    let int_len = all.len() - scale;
    let mut int_digits: Vec<u8> = all[..int_len].to_vec();
    while int_digits.len() > 1 && int_digits[0] == 0 {
        int_digits.remove(0);
    }
    if int_digits.is_empty() {
        int_digits.push(0);
    }
    let mut out: String = int_digits.iter().map(|d| char::from(b'0' + d)).collect();
    if scale > 0 {
        out.push('.');
        out.extend(all[int_len..].iter().map(|d| char::from(b'0' + d)));
    }
    let zero = all.iter().all(|&d| d == 0);
    Ok((negative && !zero, out))
}

/// English ordinal suffix of the integer whose digits end `number`.
fn ordinal(number: &str, upper: bool) -> &'static str {
    let digits: Vec<u8> = number.bytes().filter(u8::is_ascii_digit).collect();
    let last = digits.last().copied().unwrap_or(b'0');
    let teen = digits.len() >= 2 && digits[digits.len() - 2] == b'1';
    let suffix = match (teen, last) {
        (false, b'1') => "st",
        (false, b'2') => "nd",
        (false, b'3') => "rd",
        _ => "th",
    };
    match (upper, suffix) {
        (false, s) => s,
        (true, "st") => "ST",
        (true, "nd") => "ND",
        (true, "rd") => "RD",
        (true, _) => "TH",
    }
}

/// `to_char(value, template)` for a number given as its decimal text.
pub fn to_char(value: &str, template: &str) -> Result<String, DbError> {
    let t = parse(template)?;
    let (negative, mut number) = rounded(value, t.post)?;
    let sign = if negative { '-' } else { '+' };
    let pre_len = number.find('.').unwrap_or(number.len());
    let mut out_pre_spaces = 0;
    if pre_len < t.pre {
        out_pre_spaces = t.pre - pre_len;
    } else if pre_len > t.pre {
        // Too many digits for the template: every position prints `#`.
        number = "#".repeat(t.pre + t.post + 1);
        number.replace_range(t.pre..=t.pre, ".");
    }
    let number: Vec<char> = number.chars().collect();

    let brackets = t.brackets && !(sign == '+' && t.fill);
    // MI and SG write the sign themselves; PL alone still leaves the number its sign slot.
    let mut sign_wrote = if t.minus || t.plus {
        t.minus
    } else {
        sign == '+' && t.fill && t.anchored == AnchoredSign::None
    };
    let anchored = if t.anchored == AnchoredSign::Before && t.pre == 0 && t.post == 0 {
        AnchoredSign::After
    } else {
        t.anchored
    };
    let zero_start = t.zero_start;
    // The last digit of `number` fill mode keeps (a pointer into `number`, as an index).
    let last_relevant = if t.fill && t.decimal {
        number.iter().position(|&c| c == '.').map(|point| {
            let mut last = point;
            for (i, c) in number.iter().enumerate().skip(point + 1) {
                if *c != '0' {
                    last = i;
                }
            }
            if t.zero_end > out_pre_spaces {
                let last_zero = (number.len() - 1).min(t.zero_end - out_pre_spaces);
                last = last.max(last_zero);
            }
            last
        })
    } else {
        None
    };
    let relevant_is_point = last_relevant.is_some_and(|i| number.get(i) == Some(&'.'));
    let mut num_count = (t.post + t.pre).saturating_sub(1);
    if !sign_wrote && out_pre_spaces == 0 {
        num_count += 1;
    }

    let mut out = String::new();
    let mut num_curr = 0usize;
    let mut number_p = 0usize;
    let mut num_in = false;
    for token in &t.tokens {
        match *token {
            Token::Nine | Token::Zero | Token::Point => {
                num_in = false;
                let predec_space = zero_start.is_none()
                    && number_p == 0
                    && number.first() == Some(&'0')
                    && t.post != 0;
                let at_zeros = zero_start.is_some_and(|z| z == num_curr);
                if !sign_wrote
                    && (num_curr >= out_pre_spaces || at_zeros)
                    && (!predec_space || relevant_is_point)
                {
                    match anchored {
                        AnchoredSign::Before => {
                            out.push(sign);
                            sign_wrote = true;
                        }
                        AnchoredSign::After => {}
                        AnchoredSign::None if brackets => {
                            out.push(if sign == '+' { ' ' } else { '<' });
                            sign_wrote = true;
                        }
                        AnchoredSign::None => {
                            if sign == '-' {
                                out.push('-');
                            } else if !t.fill {
                                out.push(' ');
                            }
                            sign_wrote = true;
                        }
                    }
                }
                if num_curr < out_pre_spaces && zero_start.is_none_or(|z| z > num_curr) {
                    if !t.fill {
                        out.push(' ');
                    }
                } else if num_curr < out_pre_spaces && zero_start.is_some_and(|z| z <= num_curr) {
                    out.push('0');
                    num_in = true;
                } else {
                    match number.get(number_p) {
                        Some('.') => out.push('.'),
                        Some(&digit) => {
                            // Fill mode drops trailing zeros of `9` positions.
                            let trimmed = last_relevant.is_some_and(|l| number_p > l)
                                && *token != Token::Zero;
                            if trimmed {
                                // Nothing: the position is dropped.
                            } else if predec_space {
                                if !t.fill {
                                    out.push(' ');
                                } else if relevant_is_point {
                                    out.push('0');
                                }
                            } else {
                                out.push(digit);
                                num_in = true;
                            }
                        }
                        None => {}
                    }
                    if number_p < number.len() {
                        number_p += 1;
                    }
                }
                let mut end = num_count + usize::from(out_pre_spaces > 0) + usize::from(t.decimal);
                if last_relevant.is_some_and(|l| l == number_p) {
                    end = num_curr;
                }
                if num_curr + 1 == end {
                    if sign_wrote && brackets {
                        out.push(if sign == '+' { ' ' } else { '>' });
                    } else if anchored == AnchoredSign::After {
                        out.push(sign);
                    }
                }
                num_curr += 1;
            }
            Token::Comma => {
                if num_in {
                    out.push(',');
                } else if !t.fill {
                    out.push(' ');
                }
            }
            Token::Minus => {
                if sign == '-' {
                    out.push('-');
                } else if !t.fill {
                    out.push(' ');
                }
            }
            Token::Plus => {
                if sign == '+' {
                    out.push('+');
                } else if !t.fill {
                    out.push(' ');
                }
            }
            Token::SignAlways => out.push(sign),
            Token::Ordinal { upper } => {
                if sign == '+' && !t.decimal {
                    let int: String = number.iter().collect();
                    out.push_str(ordinal(&int, upper));
                }
            }
            Token::Literal(c) => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::to_char;

    /// PostgreSQL 15's answers (`SELECT to_char(v::numeric, t)`).
    #[test]
    fn prints_as_postgres() {
        for (value, template, want) in [
            ("-0.1", "99.99", "  -.10"),
            ("-0.1", "FM9.99", "-.1"),
            ("-0.1", "FM90.99", "-0.1"),
            ("0.1", "0.9", " 0.1"),
            ("12", "9990999.9", "    0012.0"),
            ("12", "FM9990999.9", "0012."),
            ("485", "999", " 485"),
            ("-485", "999", "-485"),
            ("485", "9 9 9", " 4 8 5"),
            ("1485", "9,999", " 1,485"),
            ("1485", "9G999", " 1,485"),
            ("148.5", "999.999", " 148.500"),
            ("148.5", "FM999.999", "148.5"),
            ("148.5", "FM999.990", "148.500"),
            ("148.5", "999D999", " 148.500"),
            ("3148.5", "9G999D999", " 3,148.500"),
            ("-485", "999S", "485-"),
            ("-485", "999MI", "485-"),
            ("485", "999MI", "485 "),
            ("485", "FM999MI", "485"),
            ("485", "PL999", "+ 485"),
            ("485", "SG999", "+485"),
            ("-485", "SG999", "-485"),
            ("-485", "9SG99", "4-85"),
            ("-485", "999PR", "<485>"),
            ("485", "999PR", " 485 "),
            ("485", "\"Good number:\"999", "Good number: 485"),
            ("485.8", "\"Pre:\"999\" Post:\" .999", "Pre: 485 Post: .800"),
            ("0", "999", "   0"),
            ("0", "9.99", "  .00"),
            ("0", "FM9.99", "0."),
            ("0", "0.00", " 0.00"),
            ("1234567", "999,999", " ###,###"),
            ("-1234.567", "FM999,999.00", "-1,234.57"),
            ("1234.5", "FM$9,999.00", "$1,234.50"),
            ("99.999", "99.99", " ##.##"),
            ("0.5", "9", " 1"),
            ("-0.5", "9", "-1"),
            ("2.5", "FM9", "3"),
            ("1000000", "9,999,999", " 1,000,000"),
            ("42", "00000", " 00042"),
            ("-42", "00000", "-00042"),
            ("42", "FM00000", "00042"),
            ("7", "FM99th", "7th"),
            ("12345.678", "99999999999.9999999", "       12345.6780000"),
            ("-12345.678", "S99999999999.99", "      -12345.68"),
        ] {
            assert_eq!(
                to_char(value, template).as_deref(),
                Ok(want),
                "to_char({value}, '{template}')"
            );
        }
    }
}
