//! SQL type names: parsing them as DDL and casts spell them, and printing them as
//! `format_type` does.

use super::PgType;

/// Postgres's limit on `varchar(n)` / `char(n)`.
const MAX_CHAR_LENGTH: i64 = 10_485_760;
const MAX_NUMERIC_PRECISION: i64 = 1000;
const MAX_TIME_PRECISION: i64 = 6;
/// `VARHDRSZ`: Postgres adds it to length and numeric typmods.
const VARHDRSZ: i32 = 4;

pub(super) fn parse_sql_name(name: &str) -> Option<(PgType, i32)> {
    let mut s = name.trim();
    if let Some(prefix) = s.get(..11)
        && prefix.eq_ignore_ascii_case("pg_catalog.")
    {
        s = s[11..].trim_start();
    }
    if let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        // A quoted identifier is case-sensitive and names the type exactly; `"char"` is the
        // only way to reach the one-byte internal type.
        if inner.contains('"') {
            return None;
        }
        return match inner {
            "char" => Some((PgType::Char, -1)),
            _ if inner.bytes().any(|b| b.is_ascii_uppercase()) => None,
            _ => parse_unquoted(inner),
        };
    }
    parse_unquoted(&s.to_ascii_lowercase())
}

fn parse_unquoted(s: &str) -> Option<(PgType, i32)> {
    let (head, mods, tail) = match s.find('(') {
        Some(open) => {
            let close = s[open..].find(')')? + open;
            let mods: Option<Vec<i64>> = s[open + 1..close]
                .split(',')
                .map(|m| m.trim().parse::<i64>().ok())
                .collect();
            (&s[..open], mods?, &s[close + 1..])
        }
        None => (s, Vec::new(), ""),
    };
    let head: Vec<&str> = head.split_whitespace().collect();
    let tail: Vec<&str> = tail.split_whitespace().collect();
    if head.iter().chain(&tail).any(|w| !is_word(w)) {
        return None;
    }
    let head = head.join(" ");
    let tail = tail.join(" ");
    // Only the time types take words after their modifier: `timestamp(3) with time zone`.
    let full = match (head.as_str(), tail.as_str()) {
        (_, "") => head.clone(),
        ("time" | "timestamp", "with time zone" | "without time zone") => {
            format!("{head} {tail}")
        }
        _ => return None,
    };

    let no_mods = |ty: PgType| mods.is_empty().then_some((ty, -1));
    match full.as_str() {
        "int" | "integer" | "int4" | "serial" | "serial4" => no_mods(PgType::Int4),
        "smallint" | "int2" | "smallserial" | "serial2" => no_mods(PgType::Int2),
        "bigint" | "int8" | "bigserial" | "serial8" => no_mods(PgType::Int8),
        "real" | "float4" => no_mods(PgType::Float4),
        "double precision" | "float8" => no_mods(PgType::Float8),
        "float" => match mods.as_slice() {
            [] => Some((PgType::Float8, -1)),
            [p] if (1..=24).contains(p) => Some((PgType::Float4, -1)),
            [p] if (25..=53).contains(p) => Some((PgType::Float8, -1)),
            _ => None,
        },
        "numeric" | "decimal" => numeric_typmod(&mods).map(|t| (PgType::Numeric, t)),
        "text" => no_mods(PgType::Text),
        "varchar" | "character varying" | "char varying" => {
            length_typmod(&mods, -1).map(|t| (PgType::Varchar, t))
        }
        // SQL's bare CHARACTER means CHARACTER(1); bpchar without a length is unbounded.
        "char" | "character" => length_typmod(&mods, 1 + VARHDRSZ).map(|t| (PgType::Bpchar, t)),
        "bpchar" => length_typmod(&mods, -1).map(|t| (PgType::Bpchar, t)),
        "name" => no_mods(PgType::Name),
        "boolean" | "bool" => no_mods(PgType::Bool),
        "bytea" => no_mods(PgType::Bytea),
        "date" => no_mods(PgType::Date),
        "time" | "time without time zone" => precision_typmod(&mods).map(|t| (PgType::Time, t)),
        "timestamp" | "timestamp without time zone" => {
            precision_typmod(&mods).map(|t| (PgType::Timestamp, t))
        }
        "timestamptz" | "timestamp with time zone" => {
            precision_typmod(&mods).map(|t| (PgType::Timestamptz, t))
        }
        "json" => no_mods(PgType::Json),
        "jsonb" => no_mods(PgType::Jsonb),
        "uuid" => no_mods(PgType::Uuid),
        "oid" => no_mods(PgType::Oid),
        "unknown" => no_mods(PgType::Unknown),
        _ => None,
    }
}

fn is_word(w: &str) -> bool {
    w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn numeric_typmod(mods: &[i64]) -> Option<i32> {
    let (precision, scale) = match *mods {
        [] => return Some(-1),
        [p] => (p, 0),
        [p, s] => (p, s),
        _ => return None,
    };
    if !(1..=MAX_NUMERIC_PRECISION).contains(&precision)
        || !(-MAX_NUMERIC_PRECISION..=MAX_NUMERIC_PRECISION).contains(&scale)
    {
        return None;
    }
    // The scale is kept as an 11-bit two's complement field, as Postgres 15 does.
    let typmod = ((precision << 16) | (scale & 0x7ff)) as i32;
    Some(typmod + VARHDRSZ)
}

fn length_typmod(mods: &[i64], default: i32) -> Option<i32> {
    match *mods {
        [] => Some(default),
        [n] if (1..=MAX_CHAR_LENGTH).contains(&n) => Some(n as i32 + VARHDRSZ),
        _ => None,
    }
}

fn precision_typmod(mods: &[i64]) -> Option<i32> {
    match *mods {
        [] => Some(-1),
        // Postgres accepts larger precisions with a warning and uses 6.
        [p] if p >= 0 => Some(p.min(MAX_TIME_PRECISION) as i32),
        _ => None,
    }
}

/// `(precision, scale)` of a numeric typmod, `None` when the typmod is -1 or malformed.
pub(super) fn numeric_precision_scale(typmod: i32) -> Option<(i32, i32)> {
    if typmod < VARHDRSZ {
        return None;
    }
    let t = typmod - VARHDRSZ;
    let precision = (t >> 16) & 0xffff;
    // Sign-extend the 11-bit scale field.
    let scale = ((t & 0x7ff) ^ 0x400) - 0x400;
    Some((precision, scale))
}

/// The `n` of `varchar(n)` / `char(n)`, `None` when unbounded.
pub(super) fn char_length(typmod: i32) -> Option<usize> {
    (typmod >= VARHDRSZ).then(|| (typmod - VARHDRSZ) as usize)
}

/// The fractional-second digits of `time(p)` / `timestamp(p)`, `None` when unspecified.
pub(super) fn time_precision(typmod: i32) -> Option<u32> {
    (0..=MAX_TIME_PRECISION as i32)
        .contains(&typmod)
        .then_some(typmod as u32)
}

pub(super) fn format_type(ty: PgType, typmod: i32) -> String {
    match ty {
        PgType::Varchar => match char_length(typmod) {
            Some(n) => format!("character varying({n})"),
            None => "character varying".to_owned(),
        },
        PgType::Bpchar => match char_length(typmod) {
            Some(n) => format!("character({n})"),
            None => "bpchar".to_owned(),
        },
        PgType::Numeric => match numeric_precision_scale(typmod) {
            Some((p, s)) => format!("numeric({p},{s})"),
            None => "numeric".to_owned(),
        },
        PgType::Time | PgType::Timestamp | PgType::Timestamptz => {
            let base = if ty == PgType::Time {
                "time"
            } else {
                "timestamp"
            };
            let zone = if ty == PgType::Timestamptz {
                "with"
            } else {
                "without"
            };
            match time_precision(typmod) {
                Some(p) => format!("{base}({p}) {zone} time zone"),
                None => format!("{base} {zone} time zone"),
            }
        }
        _ => ty.name().to_owned(),
    }
}
