//! Postgres's binary-string functions SQLite lacks: `encode` and `decode` in the `base64`,
//! `hex` and `escape` formats, and the SHA-2 digests (`sha224` to `sha512`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mycelium_protocol::DbError;
use rusqlite::Connection;
use rusqlite::functions::Context;
use rusqlite::types::ValueRef;
use sha2::Digest;

use super::{DET, fail};

pub(super) fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function("encode", 2, DET, |ctx| {
        let (Some(data), Some(format)) = (bytes(ctx, 0), bytes(ctx, 1)) else {
            return Ok(None);
        };
        encode(data, &String::from_utf8_lossy(format))
            .map(Some)
            .map_err(fail)
    })?;
    conn.create_scalar_function("decode", 2, DET, |ctx| {
        let (Some(text), Some(format)) = (bytes(ctx, 0), bytes(ctx, 1)) else {
            return Ok(None);
        };
        decode(
            &String::from_utf8_lossy(text),
            &String::from_utf8_lossy(format),
        )
        .map(Some)
        .map_err(fail)
    })?;
    conn.create_scalar_function("sha224", 1, DET, |ctx| Ok(digest::<sha2::Sha224>(ctx)))?;
    conn.create_scalar_function("sha256", 1, DET, |ctx| Ok(digest::<sha2::Sha256>(ctx)))?;
    conn.create_scalar_function("sha384", 1, DET, |ctx| Ok(digest::<sha2::Sha384>(ctx)))?;
    conn.create_scalar_function("sha512", 1, DET, |ctx| Ok(digest::<sha2::Sha512>(ctx)))?;
    Ok(())
}

/// A `bytea` argument's bytes (a text's, for an untyped literal); `None` for NULL.
fn bytes<'a>(ctx: &'a Context<'_>, n: usize) -> Option<&'a [u8]> {
    match ctx.get_raw(n) {
        ValueRef::Null | ValueRef::Integer(_) | ValueRef::Real(_) => None,
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(b),
    }
}

fn digest<D: Digest>(ctx: &Context<'_>) -> Option<Vec<u8>> {
    bytes(ctx, 0).map(|data| D::digest(data).to_vec())
}

fn unknown_encoding(format: &str) -> DbError {
    DbError::new("22023", format!("unrecognized encoding: \"{format}\""))
}

fn encode(data: &[u8], format: &str) -> Result<String, DbError> {
    match format.to_ascii_lowercase().as_str() {
        "hex" => Ok(data.iter().map(|b| format!("{b:02x}")).collect()),
        // Postgres breaks base64 into lines of 76 characters, as MIME does.
        "base64" => {
            let encoded = STANDARD.encode(data);
            Ok(encoded
                .as_bytes()
                .chunks(76)
                .map(|line| String::from_utf8_lossy(line).into_owned())
                .collect::<Vec<_>>()
                .join("\n"))
        }
        "escape" => {
            let mut out = String::with_capacity(data.len());
            for &b in data {
                match b {
                    b'\\' => out.push_str("\\\\"),
                    0 | 0x80..=0xff => out.push_str(&format!("\\{b:03o}")),
                    _ => out.push(char::from(b)),
                }
            }
            Ok(out)
        }
        _ => Err(unknown_encoding(format)),
    }
}

fn decode(text: &str, format: &str) -> Result<Vec<u8>, DbError> {
    match format.to_ascii_lowercase().as_str() {
        "hex" => {
            let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            if !digits.len().is_multiple_of(2) {
                return Err(DbError::new(
                    "22023",
                    "invalid hexadecimal data: odd number of digits",
                ));
            }
            digits
                .chunks(2)
                .map(|pair| {
                    std::str::from_utf8(pair)
                        .ok()
                        .and_then(|p| u8::from_str_radix(p, 16).ok())
                        .ok_or_else(|| {
                            DbError::new(
                                "22023",
                                format!(
                                    "invalid hexadecimal digit: \"{}\"",
                                    String::from_utf8_lossy(pair)
                                ),
                            )
                        })
                })
                .collect()
        }
        "base64" => {
            let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            STANDARD
                .decode(compact)
                .map_err(|e| DbError::new("22023", format!("invalid base64 data: {e}")))
        }
        "escape" => {
            let mut out = Vec::with_capacity(text.len());
            let raw = text.as_bytes();
            let mut i = 0;
            while i < raw.len() {
                if raw[i] != b'\\' {
                    out.push(raw[i]);
                    i += 1;
                } else if raw.get(i + 1) == Some(&b'\\') {
                    out.push(b'\\');
                    i += 2;
                } else {
                    let octal = raw
                        .get(i + 1..i + 4)
                        .and_then(|d| std::str::from_utf8(d).ok())
                        .filter(|d| d.bytes().all(|b| (b'0'..=b'7').contains(&b)))
                        .and_then(|d| u8::from_str_radix(d, 8).ok())
                        .ok_or_else(|| {
                            DbError::new("22P02", "invalid input syntax for type bytea")
                        })?;
                    out.push(octal);
                    i += 4;
                }
            }
            Ok(out)
        }
        _ => Err(unknown_encoding(format)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_as_postgres_prints_them() {
        assert_eq!(encode(b"hello", "base64").ok(), Some("aGVsbG8=".to_owned()));
        assert_eq!(encode(b"hi", "HEX").ok(), Some("6869".to_owned()));
        assert_eq!(
            encode(b"a\\b\x00\xff", "escape").ok(),
            Some("a\\\\b\\000\\377".to_owned())
        );
        let long = encode(&[0u8; 60], "base64").unwrap_or_default();
        assert_eq!(long.lines().map(str::len).collect::<Vec<_>>(), vec![76, 4]);
        assert_eq!(decode(&long, "base64").ok(), Some(vec![0u8; 60]));
        assert_eq!(
            decode("a\\\\b\\000\\377", "escape").ok(),
            Some(b"a\\b\x00\xff".to_vec())
        );
        assert_eq!(decode("6869", "hex").ok(), Some(b"hi".to_vec()));
        assert_eq!(
            decode("686", "hex").err().map(|e| e.code),
            Some("22023".into())
        );
        assert_eq!(
            encode(b"x", "rot13").err().map(|e| e.code),
            Some("22023".into())
        );
    }
}
