//! Binary result values → the text Postgres would have sent.
//!
//! tokio-postgres always receives results in binary. For a column the client wants as text,
//! a [`Plan`] says how to print its binary values: copy them (types whose binary form is
//! their text), the protocol codec (scalars), exact code here (`numeric` with its display
//! scale, arrays, `int2vector`/`oidvector`, records), or Postgres itself for everything else
//! ([`Plan::Server`]): the values are collected first and printed by the server with
//! `value::text`, so intervals, network types, `regclass`, enums inside records and types
//! from extensions print exactly as Postgres prints them.

use std::collections::{HashMap, HashSet};

use bytes::{BufMut, BytesMut};
use mycelium_protocol::types::{self, PgType};
use mycelium_protocol::{DbError, Format};
use tokio_postgres::types::{Kind, Type};

/// How one column's binary values become text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The binary form is the text form.
    Copy,
    /// A version byte, then the text.
    Jsonb,
    Codec(PgType),
    Numeric,
    Array {
        elem: Box<Plan>,
        delim: u8,
    },
    /// `int2vector` / `oidvector`: an array printed as space-separated values.
    Vector(Box<Plan>),
    /// A composite value; its fields carry their type OIDs.
    Record,
    /// Printed by Postgres (`value::text`) on the same connection.
    Server(u32),
}

const BOX_OID: u32 = 603;
const INT2VECTOR_OID: u32 = 22;
const OIDVECTOR_OID: u32 = 30;
const RECORD_OID: u32 = 2249;

/// The plan for a column of type `ty` that the client wants as text.
pub(crate) fn text_plan(ty: &Type) -> Plan {
    match ty.oid() {
        INT2VECTOR_OID => return Plan::Vector(Box::new(Plan::Codec(PgType::Int2))),
        OIDVECTOR_OID => return Plan::Vector(Box::new(Plan::Codec(PgType::Oid))),
        RECORD_OID => return Plan::Record,
        _ => {}
    }
    if let Some(pg) = PgType::from_oid(ty.oid()) {
        return scalar_plan(pg);
    }
    match ty.kind() {
        Kind::Array(elem) => Plan::Array {
            elem: Box::new(text_plan(elem)),
            delim: if elem.oid() == BOX_OID { b';' } else { b',' },
        },
        Kind::Enum(_) => Plan::Copy,
        Kind::Domain(base) => text_plan(base),
        Kind::Composite(_) => Plan::Record,
        _ => Plan::Server(ty.oid()),
    }
}

fn scalar_plan(pg: PgType) -> Plan {
    match pg {
        PgType::Text
        | PgType::Varchar
        | PgType::Bpchar
        | PgType::Name
        | PgType::Unknown
        | PgType::Json => Plan::Copy,
        PgType::Jsonb => Plan::Jsonb,
        PgType::Numeric => Plan::Numeric,
        other => Plan::Codec(other),
    }
}

/// The plan for a value whose type is only known by OID (a record's field).
fn oid_plan(oid: u32) -> Plan {
    match Type::from_oid(oid) {
        Some(ty) => text_plan(&ty),
        None => Plan::Server(oid),
    }
}

/// The plan for a result column in the format the client asked for.
pub(crate) fn column_plan(ty: &Type, format: Format) -> Plan {
    match format {
        Format::Binary => Plan::Copy,
        Format::Text => text_plan(ty),
    }
}

impl Plan {
    /// Whether printing may need Postgres, so rows must be collected first.
    pub fn may_need_server(&self) -> bool {
        match self {
            Plan::Server(_) | Plan::Record => true,
            Plan::Array { elem, .. } | Plan::Vector(elem) => elem.may_need_server(),
            _ => false,
        }
    }
}

/// Values Postgres must print, by type OID.
pub(crate) type Wanted = HashMap<u32, HashSet<Vec<u8>>>;
/// What Postgres printed for them.
pub(crate) type Printed = HashMap<u32, HashMap<Vec<u8>, String>>;

/// Notes the values under `plan` that Postgres must print.
pub(crate) fn collect(plan: &Plan, value: &[u8], wanted: &mut Wanted) -> Result<(), DbError> {
    match plan {
        Plan::Server(oid) => {
            wanted.entry(*oid).or_default().insert(value.to_vec());
        }
        Plan::Array { elem, .. } | Plan::Vector(elem) if elem.may_need_server() => {
            for item in Array::parse(value)?.items.into_iter().flatten() {
                collect(elem, item, wanted)?;
            }
        }
        Plan::Record => {
            for (oid, field) in record_fields(value)? {
                if let Some(field) = field {
                    collect(&oid_plan(oid), field, wanted)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Appends the text form of `value` (binary, non-NULL) to `out`.
pub(crate) fn write_text(
    plan: &Plan,
    value: &[u8],
    out: &mut BytesMut,
    printed: &Printed,
) -> Result<(), DbError> {
    match plan {
        Plan::Copy => out.put_slice(value),
        Plan::Jsonb => match value.split_first() {
            Some((1, text)) => out.put_slice(text),
            _ => return Err(bad_binary("jsonb")),
        },
        Plan::Codec(ty) => {
            let decoded = types::decode_param(*ty, Format::Binary, value)?;
            types::encode_text(*ty, -1, decoded.as_ref(), out)?;
        }
        Plan::Numeric => numeric_text(value, out)?,
        Plan::Array { elem, delim } => array_text(elem, *delim, value, out, printed)?,
        Plan::Vector(elem) => {
            let array = Array::parse(value)?;
            for (i, item) in array.items.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b' ');
                }
                if let Some(item) = item {
                    write_text(elem, item, out, printed)?;
                }
            }
        }
        Plan::Record => record_text(value, out, printed)?,
        Plan::Server(oid) => {
            let text = printed
                .get(oid)
                .and_then(|values| values.get(value))
                .ok_or_else(|| {
                    DbError::new("XX000", format!("no text form for a value of type {oid}"))
                })?;
            out.put_slice(text.as_bytes());
        }
    }
    Ok(())
}

fn bad_binary(what: &str) -> DbError {
    DbError::new(
        "XX000",
        format!("PostgreSQL sent a malformed binary {what} value"),
    )
}

struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DbError> {
        if self.bytes.len() < n {
            return Err(bad_binary(self.what));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn i32(&mut self) -> Result<i32, DbError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u16(&mut self) -> Result<u16, DbError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A length-prefixed value; `None` for length -1 (NULL).
    fn value(&mut self) -> Result<Option<&'a [u8]>, DbError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(None);
        }
        self.take(len as usize).map(Some)
    }
}

/// `numeric_send` → `numeric_out`: base-10000 digits, weight, sign, display scale.
fn numeric_text(value: &[u8], out: &mut BytesMut) -> Result<(), DbError> {
    let mut r = Reader {
        bytes: value,
        what: "numeric",
    };
    let ndigits = r.u16()? as usize;
    let weight = r.u16()? as i16 as i32;
    let sign = r.u16()?;
    let dscale = r.u16()? as i32;
    let mut digits = Vec::with_capacity(ndigits);
    for _ in 0..ndigits {
        digits.push(r.u16()?);
    }
    match sign {
        0xC000 => {
            out.put_slice(b"NaN");
            return Ok(());
        }
        0xD000 => {
            out.put_slice(b"Infinity");
            return Ok(());
        }
        0xF000 => {
            out.put_slice(b"-Infinity");
            return Ok(());
        }
        0x4000 => out.put_u8(b'-'),
        0x0000 => {}
        _ => return Err(bad_binary("numeric")),
    }
    let digit = |i: i32| -> u16 {
        if i >= 0 && (i as usize) < digits.len() {
            digits[i as usize]
        } else {
            0
        }
    };
    if weight < 0 {
        out.put_u8(b'0');
    } else {
        for i in 0..=weight {
            let d = digit(i);
            if i == 0 {
                out.put_slice(d.to_string().as_bytes());
            } else {
                out.put_slice(format!("{d:04}").as_bytes());
            }
        }
    }
    if dscale > 0 {
        out.put_u8(b'.');
        let mut written = 0;
        let mut i = weight + 1;
        while written < dscale {
            let group = format!("{:04}", digit(i));
            let take = ((dscale - written) as usize).min(4);
            out.put_slice(&group.as_bytes()[..take]);
            written += take as i32;
            i += 1;
        }
    }
    Ok(())
}

/// A binary array: dimensions (length, lower bound) and the items in row-major order.
struct Array<'a> {
    dims: Vec<(i32, i32)>,
    items: Vec<Option<&'a [u8]>>,
}

impl<'a> Array<'a> {
    fn parse(value: &'a [u8]) -> Result<Array<'a>, DbError> {
        let mut r = Reader {
            bytes: value,
            what: "array",
        };
        let ndim = r.i32()?;
        let _flags = r.i32()?;
        let _elem = r.i32()?;
        if !(0..=6).contains(&ndim) {
            return Err(bad_binary("array"));
        }
        let mut dims = Vec::with_capacity(ndim as usize);
        let mut total: usize = if ndim == 0 { 0 } else { 1 };
        for _ in 0..ndim {
            let len = r.i32()?;
            let lower = r.i32()?;
            total = total.saturating_mul(len.max(0) as usize);
            dims.push((len, lower));
        }
        let mut items = Vec::with_capacity(total.min(1 << 16));
        for _ in 0..total {
            items.push(r.value()?);
        }
        Ok(Array { dims, items })
    }
}

/// `array_out`: `{1,2,NULL}`, nested braces per dimension, `[l:u]=` when a lower bound is
/// not 1, items quoted when they would read back differently.
fn array_text(
    elem: &Plan,
    delim: u8,
    value: &[u8],
    out: &mut BytesMut,
    printed: &Printed,
) -> Result<(), DbError> {
    let array = Array::parse(value)?;
    if array.dims.is_empty() {
        out.put_slice(b"{}");
        return Ok(());
    }
    if array.dims.iter().any(|&(_, lower)| lower != 1) {
        for &(len, lower) in &array.dims {
            out.put_slice(format!("[{}:{}]", lower, lower + len - 1).as_bytes());
        }
        out.put_u8(b'=');
    }
    let mut items = array.items.iter();
    let mut scratch = BytesMut::new();
    array_level(
        elem,
        delim,
        &array.dims,
        &mut items,
        out,
        &mut scratch,
        printed,
    )
}

fn array_level<'a>(
    elem: &Plan,
    delim: u8,
    dims: &[(i32, i32)],
    items: &mut impl Iterator<Item = &'a Option<&'a [u8]>>,
    out: &mut BytesMut,
    scratch: &mut BytesMut,
    printed: &Printed,
) -> Result<(), DbError> {
    let Some(((len, _), inner)) = dims.split_first() else {
        return Ok(());
    };
    out.put_u8(b'{');
    for i in 0..*len {
        if i > 0 {
            out.put_u8(delim);
        }
        if !inner.is_empty() {
            array_level(elem, delim, inner, items, out, scratch, printed)?;
            continue;
        }
        match items.next() {
            Some(Some(item)) => {
                scratch.clear();
                write_text(elem, item, scratch, printed)?;
                quote_array_item(scratch, delim, out);
            }
            _ => out.put_slice(b"NULL"),
        }
    }
    out.put_u8(b'}');
    Ok(())
}

fn is_pg_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn quote_array_item(text: &[u8], delim: u8, out: &mut BytesMut) {
    let quote = text.is_empty()
        || text.eq_ignore_ascii_case(b"NULL")
        || text
            .iter()
            .any(|&c| matches!(c, b'{' | b'}' | b'"' | b'\\') || c == delim || is_pg_space(c));
    if !quote {
        out.put_slice(text);
        return;
    }
    out.put_u8(b'"');
    for &c in text {
        if c == b'"' || c == b'\\' {
            out.put_u8(b'\\');
        }
        out.put_u8(c);
    }
    out.put_u8(b'"');
}

/// A record field: its type OID and value (`None` is NULL).
type Field<'a> = (u32, Option<&'a [u8]>);

/// The fields of a binary record.
fn record_fields(value: &[u8]) -> Result<Vec<Field<'_>>, DbError> {
    let mut r = Reader {
        bytes: value,
        what: "record",
    };
    let count = r.i32()?;
    let mut fields = Vec::with_capacity(count.clamp(0, 1600) as usize);
    for _ in 0..count {
        let oid = r.i32()? as u32;
        fields.push((oid, r.value()?));
    }
    Ok(fields)
}

/// `record_out`: `(1,"a b",)`; NULL is empty, quotes and backslashes doubled inside quotes.
fn record_text(value: &[u8], out: &mut BytesMut, printed: &Printed) -> Result<(), DbError> {
    out.put_u8(b'(');
    let mut scratch = BytesMut::new();
    for (i, (oid, field)) in record_fields(value)?.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        let Some(field) = field else { continue };
        scratch.clear();
        write_text(&oid_plan(oid), field, &mut scratch, printed)?;
        let quote = scratch.is_empty()
            || scratch
                .iter()
                .any(|&c| matches!(c, b'(' | b')' | b',' | b'"' | b'\\') || is_pg_space(c));
        if !quote {
            out.put_slice(&scratch);
            continue;
        }
        out.put_u8(b'"');
        for &c in scratch.iter() {
            if c == b'"' || c == b'\\' {
                out.put_u8(c);
            }
            out.put_u8(c);
        }
        out.put_u8(b'"');
    }
    out.put_u8(b')');
    Ok(())
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn numeric(ndigits: &[u16], weight: i16, sign: u16, dscale: u16) -> String {
        let mut bytes = Vec::new();
        bytes.extend((ndigits.len() as u16).to_be_bytes());
        bytes.extend(weight.to_be_bytes());
        bytes.extend(sign.to_be_bytes());
        bytes.extend(dscale.to_be_bytes());
        for d in ndigits {
            bytes.extend(d.to_be_bytes());
        }
        let mut out = BytesMut::new();
        numeric_text(&bytes, &mut out).unwrap();
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn numeric_keeps_display_scale() {
        assert_eq!(numeric(&[1, 5000], 0, 0, 2), "1.50");
        assert_eq!(numeric(&[12, 3456], 1, 0x4000, 0), "-123456");
        assert_eq!(numeric(&[5], -1, 0, 5), "0.00050");
        assert_eq!(numeric(&[], 0, 0, 3), "0.000");
        assert_eq!(numeric(&[1], 2, 0, 0), "100000000");
        assert_eq!(numeric(&[], 0, 0xC000, 0), "NaN");
    }

    #[test]
    fn array_items_are_quoted_like_postgres() {
        let mut out = BytesMut::new();
        for item in [&b"a b"[..], b"", b"null", b"x\"y", b"plain"] {
            quote_array_item(item, b',', &mut out);
            out.put_u8(b'|');
        }
        assert_eq!(&out[..], &br#""a b"|""|"null"|"x\"y"|plain|"#[..]);
    }
}
