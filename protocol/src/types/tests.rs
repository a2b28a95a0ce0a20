//! Table-driven tests of the value codec. Expected outputs were taken from Postgres 15 with
//! `TimeZone = UTC`.

#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;
use PgType::*;

fn int(v: i64) -> SqlValue {
    SqlValue::Int(v)
}
fn float(v: f64) -> SqlValue {
    SqlValue::Float(v)
}
fn text(v: &str) -> SqlValue {
    SqlValue::Text(v.to_owned())
}
fn bytes(v: &[u8]) -> SqlValue {
    SqlValue::Bytes(v.to_vec())
}

/// Values compare by their debug form so that NaN equals NaN.
fn same(a: &SqlValue, b: &SqlValue) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

fn to_text(ty: PgType, typmod: i32, v: SqlValueRef<'_>) -> Result<String, DbError> {
    let mut out = BytesMut::new();
    encode_text(ty, typmod, v, &mut out)?;
    Ok(String::from_utf8(out.to_vec()).unwrap())
}

fn to_binary(ty: PgType, typmod: i32, v: SqlValueRef<'_>) -> Result<Vec<u8>, DbError> {
    let mut out = BytesMut::new();
    encode_binary(ty, typmod, v, &mut out)?;
    Ok(out.to_vec())
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Parses `input` as text of `ty(typmod)`, expects `stored`, expects `output` back as text, and
/// checks the text and binary round trips of the stored value.
fn check(ty: PgType, typmod: i32, input: &str, stored: SqlValue, output: &str) {
    let ctx = format!("{ty:?}({typmod}) {input:?}");
    let value = parse_text(ty, typmod, input).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert!(
        same(&value, &stored),
        "{ctx}: stored {value:?}, want {stored:?}"
    );
    if typmod == -1 {
        let param = decode_param(ty, Format::Text, input.as_bytes()).unwrap();
        assert!(same(&param, &stored), "{ctx}: text param {param:?}");
    }
    check_round_trips(ty, typmod, &value, &ctx);
    let shown = to_text(ty, typmod, value.as_ref()).unwrap();
    assert_eq!(shown, output, "{ctx}: text output");
}

/// Text output reads back as the same value; binary output decodes to the same value and
/// encodes to the same bytes.
fn check_round_trips(ty: PgType, typmod: i32, value: &SqlValue, ctx: &str) {
    let shown = to_text(ty, typmod, value.as_ref()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let again = parse_text(ty, typmod, &shown).unwrap_or_else(|e| panic!("{ctx}: {shown:?}: {e}"));
    assert!(
        same(&again, value),
        "{ctx}: text round trip via {shown:?} gave {again:?}"
    );
    let wire = to_binary(ty, typmod, value.as_ref()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let back = decode_param(ty, Format::Binary, &wire).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert!(same(&back, value), "{ctx}: binary round trip gave {back:?}");
    assert_eq!(
        to_binary(ty, typmod, back.as_ref()).unwrap(),
        wire,
        "{ctx}: binary again"
    );
}

/// The binary form of a stored value, in hex.
fn check_binary(ty: PgType, typmod: i32, value: SqlValue, hex: &str) {
    let wire = to_binary(ty, typmod, value.as_ref()).unwrap();
    assert_eq!(wire, unhex(hex), "{ty:?}({typmod}) {value:?}");
}

/// Text output of a stored value (which need not be in canonical storage form).
fn check_out(ty: PgType, typmod: i32, value: SqlValue, output: &str) {
    assert_eq!(
        to_text(ty, typmod, value.as_ref()).unwrap(),
        output,
        "{ty:?}({typmod}) {value:?}"
    );
}

fn check_err(ty: PgType, typmod: i32, input: &str, code: &str) {
    match parse_text(ty, typmod, input) {
        Ok(v) => panic!("{ty:?}({typmod}) {input:?}: accepted as {v:?}"),
        Err(e) => assert_eq!(e.code, code, "{ty:?}({typmod}) {input:?}: {e}"),
    }
}

fn check_err_message(ty: PgType, typmod: i32, input: &str, code: &str, message: &str) {
    let e = parse_text(ty, typmod, input).unwrap_err();
    assert_eq!((e.code.as_str(), e.message.as_str()), (code, message));
}

fn check_recv_err(ty: PgType, wire: &[u8], code: &str) {
    match decode_param(ty, Format::Binary, wire) {
        Ok(v) => panic!("{ty:?} {wire:?}: accepted as {v:?}"),
        Err(e) => assert_eq!(e.code, code, "{ty:?} {wire:?}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn type_table() {
    for ty in PgType::ALL {
        assert_eq!(PgType::from_oid(ty.oid()), Some(ty));
    }
    assert_eq!(PgType::from_oid(oid::UNKNOWN), Some(Unknown));
    assert_eq!(PgType::from_oid(oid::INT4_ARRAY), None);
    assert_eq!(PgType::from_oid(oid::REGCLASS), None);
    for v in [int(1), float(1.5), text("a"), bytes(b"b"), SqlValue::Null] {
        assert_eq!(v.as_ref().into_owned(), v);
    }
    let sizes = [
        (Bool, 1),
        (Int2, 2),
        (Int4, 4),
        (Int8, 8),
        (Float4, 4),
        (Float8, 8),
        (Date, 4),
        (Time, 8),
        (Timestamp, 8),
        (Timestamptz, 8),
        (Uuid, 16),
        (Oid, 4),
        (Name, 64),
        (Char, 1),
        (Text, -1),
        (Numeric, -1),
        (Jsonb, -1),
        (Unknown, -2),
    ];
    for (ty, size) in sizes {
        assert_eq!(ty.type_size(), size, "{ty:?}");
    }
    let names = [
        (Int4, "integer"),
        (Int8, "bigint"),
        (Int2, "smallint"),
        (Text, "text"),
        (Varchar, "character varying"),
        (Timestamptz, "timestamp with time zone"),
        (Timestamp, "timestamp without time zone"),
        (Float8, "double precision"),
        (Bool, "boolean"),
        (Char, "\"char\""),
    ];
    for (ty, name) in names {
        assert_eq!(ty.name(), name);
    }
}

#[test]
fn sql_type_names() {
    let cases: &[(&str, Option<(PgType, i32)>)] = &[
        ("int", Some((Int4, -1))),
        ("INTEGER", Some((Int4, -1))),
        ("int4", Some((Int4, -1))),
        ("serial", Some((Int4, -1))),
        ("serial4", Some((Int4, -1))),
        ("smallint", Some((Int2, -1))),
        ("int2", Some((Int2, -1))),
        ("smallserial", Some((Int2, -1))),
        ("bigint", Some((Int8, -1))),
        ("int8", Some((Int8, -1))),
        ("BigSerial", Some((Int8, -1))),
        ("serial8", Some((Int8, -1))),
        ("real", Some((Float4, -1))),
        ("float4", Some((Float4, -1))),
        ("double precision", Some((Float8, -1))),
        ("double   Precision", Some((Float8, -1))),
        ("float8", Some((Float8, -1))),
        ("float", Some((Float8, -1))),
        ("float(24)", Some((Float4, -1))),
        ("float(25)", Some((Float8, -1))),
        ("numeric", Some((Numeric, -1))),
        ("numeric(10,2)", Some((Numeric, ((10 << 16) | 2) + 4))),
        ("numeric(10, 2)", Some((Numeric, ((10 << 16) | 2) + 4))),
        ("decimal(12,4)", Some((Numeric, ((12 << 16) | 4) + 4))),
        ("numeric(5)", Some((Numeric, (5 << 16) + 4))),
        ("text", Some((Text, -1))),
        ("varchar", Some((Varchar, -1))),
        ("varchar(20)", Some((Varchar, 24))),
        ("character varying(20)", Some((Varchar, 24))),
        ("CHARACTER VARYING (20)", Some((Varchar, 24))),
        ("char(5)", Some((Bpchar, 9))),
        ("character(5)", Some((Bpchar, 9))),
        ("char", Some((Bpchar, 5))),
        ("bpchar", Some((Bpchar, -1))),
        ("name", Some((Name, -1))),
        ("boolean", Some((Bool, -1))),
        ("bool", Some((Bool, -1))),
        ("bytea", Some((Bytea, -1))),
        ("date", Some((Date, -1))),
        ("time", Some((Time, -1))),
        ("time without time zone", Some((Time, -1))),
        ("time(3)", Some((Time, 3))),
        ("timestamp", Some((Timestamp, -1))),
        ("timestamp without time zone", Some((Timestamp, -1))),
        ("timestamptz", Some((Timestamptz, -1))),
        ("timestamp with time zone", Some((Timestamptz, -1))),
        ("timestamp(3)", Some((Timestamp, 3))),
        ("timestamp(3) with time zone", Some((Timestamptz, 3))),
        ("timestamptz(6)", Some((Timestamptz, 6))),
        ("json", Some((Json, -1))),
        ("jsonb", Some((Jsonb, -1))),
        ("uuid", Some((Uuid, -1))),
        ("oid", Some((Oid, -1))),
        ("\"char\"", Some((Char, -1))),
        ("pg_catalog.int4", Some((Int4, -1))),
        ("pg_catalog.\"char\"", Some((Char, -1))),
        ("\"varchar\"", Some((Varchar, -1))),
        ("\"INT4\"", None),
        ("int[]", None),
        ("varchar(0)", None),
        ("int(3)", None),
        ("numeric(0)", None),
        ("numeric(10,2", None),
        ("timetz", None),
        ("time with time zone", None),
        ("varchar(5) with time zone", None),
        ("widget", None),
        ("", None),
        ("é", None),
    ];
    for (name, want) in cases {
        assert_eq!(PgType::parse_sql_name(name), *want, "{name:?}");
    }
    let formats = [
        ("varchar(20)", "character varying(20)"),
        ("char(5)", "character(5)"),
        ("bpchar", "bpchar"),
        ("numeric(10,2)", "numeric(10,2)"),
        ("numeric", "numeric"),
        ("timestamp(3) with time zone", "timestamp(3) with time zone"),
        ("time", "time without time zone"),
        ("int", "integer"),
    ];
    for (name, formatted) in formats {
        let (ty, typmod) = PgType::parse_sql_name(name).unwrap();
        assert_eq!(ty.format_type(typmod), formatted);
    }
}

#[test]
fn booleans() {
    for (input, b) in [
        ("t", 1),
        ("TRUE", 1),
        (" yes ", 1),
        ("y", 1),
        ("on", 1),
        ("1", 1),
        ("f", 0),
        ("false", 0),
        ("No", 0),
        ("off", 0),
        ("of", 0),
        ("0", 0),
    ] {
        check(Bool, -1, input, int(b), if b == 1 { "t" } else { "f" });
    }
    for bad in ["x", "", "o", "2", "truex", "yess"] {
        check_err(Bool, -1, bad, "22P02");
    }
    check_err_message(
        Bool,
        -1,
        "x",
        "22P02",
        "invalid input syntax for type boolean: \"x\"",
    );
    check_binary(Bool, -1, int(1), "01");
    check_binary(Bool, -1, int(0), "00");
    check_out(Bool, -1, int(5), "t");
    check_recv_err(Bool, &[], "22P03");
    check_recv_err(Bool, &[1, 0], "22P03");
}

#[test]
fn integers() {
    check(Int2, -1, "123", int(123), "123");
    check(Int2, -1, " -32768 ", int(-32768), "-32768");
    check(Int2, -1, "+7", int(7), "7");
    check(Int4, -1, "2147483647", int(2147483647), "2147483647");
    check(
        Int8,
        -1,
        "-9223372036854775808",
        int(i64::MIN),
        "-9223372036854775808",
    );
    check(Oid, -1, "-1", int(4294967295), "4294967295");
    check(Oid, -1, "4294967295", int(4294967295), "4294967295");
    check_err_message(
        Int4,
        -1,
        "99999999999",
        "22003",
        "value \"99999999999\" is out of range for type integer",
    );
    check_err_message(
        Int4,
        -1,
        "abc",
        "22P02",
        "invalid input syntax for type integer: \"abc\"",
    );
    check_err_message(
        Int2,
        -1,
        "1.5",
        "22P02",
        "invalid input syntax for type smallint: \"1.5\"",
    );
    for (ty, bad) in [
        (Int2, "32768"),
        (Int8, "9223372036854775808"),
        (Int8, "99999999999999999999999999999"),
        (Oid, "4294967296"),
        (Oid, "-2147483649"),
    ] {
        check_err(ty, -1, bad, "22003");
    }
    for bad in ["", " ", "-", "1 2", "0x10", "1e3", "١", "12abc"] {
        check_err(Int4, -1, bad, "22P02");
        check_err(Oid, -1, bad, "22P02");
    }
    // Digits are read first, so an overflowing prefix is out of range even before junk.
    check_err(Int4, -1, "99999999999abc", "22003");
    check_err(Int2, -1, "-4590659948.9", "22003");
    check_err(Oid, -1, "9869648980638979915.2", "22P02");
    check_err(Oid, -1, "98696489806389799150.2", "22003");
    check_binary(Int2, -1, int(-1), "ffff");
    check_binary(Int4, -1, int(7), "00000007");
    check_binary(Int8, -1, int(256), "0000000000000100");
    check_binary(Oid, -1, int(4294967295), "ffffffff");
    // What storage may hand back for an integer column.
    check_out(Int4, -1, float(3.0), "3");
    check_out(Int4, -1, float(2.5), "2.5");
    check_out(Int8, -1, text("12"), "12");
    check_binary(Int4, -1, float(3.0), "00000003");
    check_binary(Int4, -1, text(" 12 "), "0000000c");
    assert_eq!(
        to_binary(Int4, -1, SqlValueRef::Float(2.5))
            .unwrap_err()
            .code,
        "22P02"
    );
    assert_eq!(
        to_binary(Int4, -1, SqlValueRef::Text("x"))
            .unwrap_err()
            .code,
        "22P02"
    );
    assert_eq!(
        to_binary(Int2, -1, SqlValueRef::Int(70000))
            .unwrap_err()
            .code,
        "22003"
    );
    check_recv_err(Int4, &[0, 0, 1], "22P03");
    check_recv_err(Int8, &[0; 4], "22P03");
    check_recv_err(Int2, &[0; 4], "22P03");
    let e = decode_param(Int4, Format::Binary, &[1]).unwrap_err();
    assert_eq!(e.message, "invalid binary data for type integer");
}

#[test]
fn floats() {
    let f8 = [
        ("1.5", 1.5, "1.5"),
        ("1e20", 1e20, "1e+20"),
        ("0.1", 0.1, "0.1"),
        ("100", 100.0, "100"),
        ("1e15", 1e15, "1e+15"),
        ("1e14", 1e14, "100000000000000"),
        ("0.0001", 0.0001, "0.0001"),
        ("0.00001", 0.00001, "1e-05"),
        ("-0", -0.0, "-0"),
        (
            "123456789012345678",
            123456789012345678.0,
            "1.2345678901234568e+17",
        ),
        ("1.5e300", 1.5e300, "1.5e+300"),
        ("5e-324", 5e-324, "5e-324"),
        (" -2.5 ", -2.5, "-2.5"),
        (".5", 0.5, "0.5"),
        ("NaN", f64::NAN, "NaN"),
        ("inf", f64::INFINITY, "Infinity"),
        ("Infinity", f64::INFINITY, "Infinity"),
        ("-Infinity", f64::NEG_INFINITY, "-Infinity"),
    ];
    for (input, v, out) in f8 {
        check(Float8, -1, input, float(v), out);
    }
    let f4 = [
        ("0.1", "0.1"),
        ("1e6", "1e+06"),
        ("123456", "123456"),
        ("1234567", "1.234567e+06"),
        ("3.4e38", "3.4e+38"),
        ("1e-5", "1e-05"),
        ("1.5", "1.5"),
    ];
    for (input, out) in f4 {
        let v = f64::from(input.parse::<f32>().unwrap());
        check(Float4, -1, input, float(v), out);
    }
    check_err_message(
        Float8,
        -1,
        "1e400",
        "22003",
        "\"1e400\" is out of range for type double precision",
    );
    check_err(Float8, -1, "1e-400", "22003");
    check_err_message(
        Float4,
        -1,
        "1e39",
        "22003",
        "\"1e39\" is out of range for type real",
    );
    // Postgres never prints a decimal lying exactly halfway to the neighbouring float.
    check(
        Float8,
        -1,
        "61558586616894302",
        float(61558586616894304.0),
        "6.1558586616894304e+16",
    );
    check(
        Float8,
        -1,
        "9007199254740993",
        float(9007199254740992.0),
        "9.007199254740992e+15",
    );
    check(
        Float8,
        -1,
        "999999999999999",
        float(999999999999999.0),
        "999999999999999",
    );
    check(Float4, -1, "68957420", float(68957424.0), "6.8957424e+07");
    check(
        Float4,
        -1,
        "-30532.E05",
        float(-3053199872.0),
        "-3.0531999e+09",
    );
    check(Float8, -1, "1.e5", float(1e5), "100000");
    for bad in [
        "abc",
        "",
        "1.5x",
        "1e",
        "--1",
        "infinityx",
        "0x10",
        "1e5 x",
        ".",
    ] {
        check_err(Float8, -1, bad, "22P02");
    }
    // strtod reads the number first, so its range is checked before trailing junk.
    check_err_message(
        Float4,
        -1,
        "95E-52+-7",
        "22003",
        "\"95E-52\" is out of range for type real",
    );
    check_err(Float8, -1, "1e999 x", "22003");
    check_binary(Float8, -1, float(1.5), "3ff8000000000000");
    check_binary(Float4, -1, float(1.5), "3fc00000");
    check_binary(Float8, -1, int(2), "4000000000000000");
    check_out(Float8, -1, int(100), "100");
    check_out(Float8, -1, text("2.50"), "2.5");
    check_recv_err(Float4, &[0; 8], "22P03");
    check_recv_err(Float8, &[0; 4], "22P03");
}

#[test]
fn numerics() {
    let n10_2 = ((10 << 16) | 2) + 4;
    check(Numeric, -1, "1.50", float(1.5), "1.5");
    check(Numeric, n10_2, "1.50", float(1.5), "1.50");
    check(Numeric, -1, "-3", int(-3), "-3");
    check(Numeric, -1, "1e3", int(1000), "1000");
    check(Numeric, -1, " +.5 ", float(0.5), "0.5");
    check(Numeric, -1, "0.1", float(0.1), "0.1");
    check(Numeric, -1, "1e20", float(1e20), "100000000000000000000");
    check(Numeric, -1, "-0.00", int(0), "0");
    // Rounding to a double can land on an integer, which is then stored as one.
    check(
        Numeric,
        -1,
        "1130000000.0000009E6",
        int(1130000000000001),
        "1130000000000001",
    );
    check(Numeric, -1, "NaN", float(f64::NAN), "NaN");
    check(Numeric, -1, "Infinity", float(f64::INFINITY), "Infinity");
    check(Numeric, -1, "-inf", float(f64::NEG_INFINITY), "-Infinity");
    // Beyond ~15 significant digits a non-integer keeps only what a double holds.
    check(
        Numeric,
        -1,
        "12345678901234567890",
        float(12345678901234567890.0),
        "12345678901234567000",
    );
    // Too large even for a double: kept exact.
    let huge = format!("1{}", "0".repeat(400));
    check(Numeric, -1, "1e400", text(&huge), &huge);
    check(Numeric, n10_2, "1.005", float(1.01), "1.01");
    check(Numeric, n10_2, "-1.005", float(-1.01), "-1.01");
    check(
        Numeric,
        n10_2,
        "99999999.994",
        float(99999999.99),
        "99999999.99",
    );
    let n5_0 = (5 << 16) + 4;
    check(Numeric, n5_0, "12.5", int(13), "13");
    check_err(Numeric, n10_2, "99999999.995", "22003");
    let e = parse_text(Numeric, (5 << 16 | 2) + 4, "123456789").unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("22003", "numeric field overflow")
    );
    assert_eq!(
        e.detail.as_deref(),
        Some("A field with precision 5, scale 2 must round to an absolute value less than 10^3.")
    );
    check_err(Numeric, n10_2, "inf", "22003");
    check(Numeric, n10_2, "NaN", float(f64::NAN), "NaN");
    check_err_message(
        Numeric,
        -1,
        "x",
        "22P02",
        "invalid input syntax for type numeric: \"x\"",
    );
    for bad in [
        "", ".", "1.2.3", "1e", "e5", "- 1", "1,5", "0x1", "1e+", "nan1",
    ] {
        check_err(Numeric, -1, bad, "22P02");
    }
    check_err(Numeric, -1, "1e200000", "22003");
    check_err(Numeric, -1, "1e131072", "22003");
    check_err(Numeric, -1, "0e-20000", "22003");
    check_err(Numeric, -1, "1e99999999999999999999", "22003");

    // Output of what storage holds.
    check_out(Numeric, n10_2, int(5), "5.00");
    check_out(Numeric, n10_2, float(2.675), "2.68");
    check_out(Numeric, n10_2, float(-0.001), "0.00");
    check_out(Numeric, -1, float(3.0), "3");
    check_out(Numeric, -1, float(1e-7), "0.0000001");
    check_out(Numeric, -1, text("1.50"), "1.50");
    check_out(Numeric, n10_2, text("123.456"), "123.46");
    check_out(Numeric, n10_2, text("garbage"), "garbage");
    check_out(
        Numeric,
        (5 << 16 | (-2i32 & 0x7ff)) + 4,
        int(12345),
        "12300",
    );

    // Binary, byte for byte as numeric_send.
    check_binary(Numeric, -1, int(0), "0000000000000000");
    check_binary(Numeric, -1, float(1.5), "000200000000000100011388");
    check_binary(
        Numeric,
        -1,
        text("-12345.678"),
        "0003000140000003000109291a7c",
    );
    check_binary(Numeric, -1, float(0.01), "0001ffff000000020064");
    check_binary(Numeric, -1, float(1e20), "00010005000000000001");
    check_binary(Numeric, -1, float(f64::NAN), "00000000c0000000");
    check_binary(Numeric, -1, float(0.00001), "0001fffe0000000503e8");
    check_binary(Numeric, n10_2, float(1.5), "000200000000000200011388");
    check_binary(Numeric, -1, text("-0.0"), "0000000000000001");
    let decoded = |hex: &str| decode_param(Numeric, Format::Binary, &unhex(hex)).unwrap();
    assert_eq!(decoded("000200000000000200011388"), float(1.5));
    assert_eq!(decoded("0003000140000003000109291a7c"), float(-12345.678));
    assert_eq!(decoded("00010005000000000001"), float(1e20));
    assert_eq!(decoded("0001000100000002000a"), int(100_000));
    assert!(matches!(decoded("00000000d0000020"), SqlValue::Float(f) if f == f64::INFINITY));
    // Digits hidden by the display scale are dropped, as numeric_recv does.
    assert_eq!(decoded("000200000000000100011389"), float(1.5));
    let exact = "0.1234567890123456789";
    let wire = to_binary(Numeric, -1, SqlValueRef::Text(exact)).unwrap();
    assert_eq!(
        decode_param(Numeric, Format::Binary, &wire).unwrap(),
        text(exact)
    );
    let big = "123456789012345678901234567890";
    let wire = to_binary(Numeric, -1, SqlValueRef::Text(big)).unwrap();
    assert_eq!(
        decode_param(Numeric, Format::Binary, &wire).unwrap(),
        text(big)
    );
    for bad in [
        "",
        "00000000000000",
        "000100000000000000",
        "0001000012340000000a",
        "000100000000000027100000",
        "00010000000000002710",
        "ffff00000000000000",
        "0000000000008000",
        "000200000000000000010001ff",
    ] {
        check_recv_err(Numeric, &unhex(bad), "22P03");
    }
    assert_eq!(
        to_binary(Numeric, -1, SqlValueRef::Text("x"))
            .unwrap_err()
            .code,
        "22P02"
    );
}

#[test]
fn character_types() {
    check(Text, -1, "hello", text("hello"), "hello");
    check(Text, -1, "  spaced  ", text("  spaced  "), "  spaced  ");
    check(Unknown, -1, "abc", text("abc"), "abc");
    check(Varchar, 7, "abc", text("abc"), "abc");
    check(Varchar, 7, "ab   ", text("ab "), "ab ");
    check(Varchar, 9, "héllo", text("héllo"), "héllo");
    check_err_message(
        Varchar,
        7,
        "abcd",
        "22001",
        "value too long for type character varying(3)",
    );
    check(Varchar, -1, "abcd", text("abcd"), "abcd");
    check(Bpchar, 9, "ab", text("ab"), "ab   ");
    check(Bpchar, 9, "ab  ", text("ab"), "ab   ");
    check(Bpchar, 9, "abcde  ", text("abcde"), "abcde");
    check(Bpchar, -1, "ab", text("ab"), "ab");
    check_err_message(
        Bpchar,
        9,
        "abcdef",
        "22001",
        "value too long for type character(5)",
    );
    check_binary(Bpchar, 9, text("ab"), "6162202020");
    check_binary(Text, -1, text("hi"), "6869");
    let long = "a".repeat(70);
    check(Name, -1, &long, text(&"a".repeat(63)), &"a".repeat(63));
    check(
        Name,
        -1,
        &"é".repeat(40),
        text(&"é".repeat(31)),
        &"é".repeat(31),
    );
    check_recv_err(Name, long.as_bytes(), "42622");
    check(Char, -1, "a", text("a"), "a");
    check(Char, -1, "abc", text("a"), "a");
    check(Char, -1, "", text(""), "");
    check(Char, -1, "\\101", text("A"), "A");
    check(Char, -1, "é", text("\\303"), "\\303");
    check(Char, -1, "\\", text("\\"), "\\");
    check_binary(Char, -1, text("a"), "61");
    check_binary(Char, -1, text("\\303"), "c3");
    check_binary(Char, -1, text(""), "00");
    check_recv_err(Char, &[], "22P03");
    check_recv_err(Char, b"ab", "22P03");
    // Storage may hold other classes in a text column.
    check_out(Text, -1, int(42), "42");
    check_out(Text, -1, float(1.5), "1.5");
    check_out(Text, -1, bytes(b"raw"), "raw");
    assert_eq!(
        to_text(Text, -1, SqlValueRef::Bytes(&[0xff]))
            .unwrap_err()
            .code,
        "22021"
    );
    // Text must be valid UTF-8 without NUL, as in a UTF8 database.
    for bad in [&[0xffu8][..], &[b'a', 0, b'b'], &[0xc3]] {
        for format in [Format::Text, Format::Binary] {
            let e = decode_param(Text, format, bad).unwrap_err();
            assert_eq!(e.code, "22021", "{bad:?}");
        }
    }
    let e = decode_param(Varchar, Format::Text, &[b'a', 0xff]).unwrap_err();
    assert_eq!(
        e.message,
        "invalid byte sequence for encoding \"UTF8\": 0xff"
    );
    check_err(Text, -1, "a\0b", "22021");
}

#[test]
fn json_types() {
    check(
        Json,
        -1,
        r#"{"b":1, "a":2}"#,
        text(r#"{"b":1, "a":2}"#),
        r#"{"b":1, "a":2}"#,
    );
    check(Json, -1, " [1, 2 ] ", text(" [1, 2 ] "), " [1, 2 ] ");
    check(Json, -1, r#""\ud83d""#, text(r#""\ud83d""#), r#""\ud83d""#);
    check(Json, -1, r#""\u0000""#, text(r#""\u0000""#), r#""\u0000""#);
    check(
        Jsonb,
        -1,
        r#"{"b":1, "a": [1.50, 1e2, 1E-2, -0, 0.0, -0.0], "aa":"\u00e9\n", "a":3}"#,
        text(r#"{"a": 3, "b": 1, "aa": "é\n"}"#),
        r#"{"a": 3, "b": 1, "aa": "é\n"}"#,
    );
    check(
        Jsonb,
        -1,
        "[1.50, 1e2, 1E-2, -0, 0.0, -0.0, 12345678901234567890123]",
        text("[1.50, 100, 0.01, 0, 0.0, 0.0, 12345678901234567890123]"),
        "[1.50, 100, 0.01, 0, 0.0, 0.0, 12345678901234567890123]",
    );
    check(
        Jsonb,
        -1,
        r#"{"bb":1,"a":2,"c":3,"aa":{"z":1,"y":2}}"#,
        text(r#"{"a": 2, "c": 3, "aa": {"y": 2, "z": 1}, "bb": 1}"#),
        r#"{"a": 2, "c": 3, "aa": {"y": 2, "z": 1}, "bb": 1}"#,
    );
    check(
        Jsonb,
        -1,
        r#"{"a":{"x" : [] ,"y":{}}, "s":"\u0001\t\"\/"}"#,
        text(r#"{"a": {"x": [], "y": {}}, "s": "\u0001\t\"/"}"#),
        r#"{"a": {"x": [], "y": {}}, "s": "\u0001\t\"/"}"#,
    );
    check(
        Jsonb,
        -1,
        r#""a\/b\u00e9\ud83d\ude00""#,
        text("\"a/bé😀\""),
        "\"a/bé😀\"",
    );
    for (input, out) in [
        ("  null ", "null"),
        ("true", "true"),
        ("1.0e+2", "100"),
        ("-0.00", "0.00"),
    ] {
        check(Jsonb, -1, input, text(out), out);
    }
    check_binary(Jsonb, -1, text(r#"{"a": 1}"#), "017b2261223a20317d");
    check_binary(Json, -1, text("[1]"), "5b315d");
    let e = decode_param(Jsonb, Format::Binary, b"\x02{}").unwrap_err();
    assert_eq!(e.code, "22P03");
    check_recv_err(Jsonb, b"", "22P03");
    check_recv_err(Json, b"{", "22P02");
    assert_eq!(
        decode_param(Jsonb, Format::Binary, b"\x01{\"b\":1,\"a\":2}").unwrap(),
        text(r#"{"a": 2, "b": 1}"#)
    );
    check_err_message(Json, -1, "{", "22P02", "invalid input syntax for type json");
    for bad in [
        "",
        "{",
        "[1,]",
        "[1 2]",
        "{\"a\"}",
        "{\"a\":}",
        "{a:1}",
        "01",
        "1.",
        ".5",
        "-",
        "+1",
        "1e",
        "tru",
        "truex",
        "nul",
        "\"abc",
        "\"\\x\"",
        "\"\\u12\"",
        "\"a\nb\"",
        "[1] [2]",
        "'a'",
        "NaN",
    ] {
        check_err(Json, -1, bad, "22P02");
        check_err(Jsonb, -1, bad, "22P02");
    }
    check_err(Jsonb, -1, r#""\u0000""#, "22P05");
    check_err(Jsonb, -1, r#""\ud83d""#, "22P02");
    check_err(Jsonb, -1, r#""\ude00""#, "22P02");
    check_err(Jsonb, -1, r#""\ud83d\ud83d""#, "22P02");
    check_err(Jsonb, -1, "[1e131072]", "22003");
    check_err(Json, -1, &"[".repeat(5000), "54001");
    let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
    check(Jsonb, -1, &deep, text(&deep), &deep);
}

#[test]
fn bytea() {
    check(Bytea, -1, "\\x0102ff", bytes(&[1, 2, 255]), "\\x0102ff");
    check(Bytea, -1, "\\x01 02\nFF", bytes(&[1, 2, 255]), "\\x0102ff");
    check(Bytea, -1, "\\x", bytes(&[]), "\\x");
    check(Bytea, -1, "abc\\000", bytes(b"abc\0"), "\\x61626300");
    check(Bytea, -1, "a\\\\b\\377", bytes(b"a\\b\xff"), "\\x615c62ff");
    check(Bytea, -1, "", bytes(&[]), "\\x");
    check_err_message(
        Bytea,
        -1,
        "\\x1",
        "22023",
        "invalid hexadecimal data: odd number of digits",
    );
    check_err_message(
        Bytea,
        -1,
        "\\xzz",
        "22023",
        "invalid hexadecimal digit: \"z\"",
    );
    check_err_message(
        Bytea,
        -1,
        "a\\b",
        "22P02",
        "invalid input syntax for type bytea",
    );
    check_err(Bytea, -1, "\\400", "22P02");
    check_err(Bytea, -1, "a\\", "22P02");
    check_binary(Bytea, -1, bytes(&[0, 1, 2]), "000102");
    check_out(Bytea, -1, text("hi"), "\\x6869");
    assert_eq!(
        decode_param(Bytea, Format::Binary, &[0xff, 0]).unwrap(),
        bytes(&[0xff, 0])
    );
}

#[test]
fn uuids() {
    let canonical = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    for input in [
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        "a0eebc999c0b4ef8bb6d6bb9bd380a11",
        "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
        "{a0eebc999c0b4ef8bb6d6bb9bd380a11}",
    ] {
        check(Uuid, -1, input, text(canonical), canonical);
    }
    for bad in [
        "x",
        "",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
        "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "a0e-ebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    ] {
        check_err(Uuid, -1, bad, "22P02");
    }
    check_err_message(
        Uuid,
        -1,
        "x",
        "22P02",
        "invalid input syntax for type uuid: \"x\"",
    );
    check_binary(
        Uuid,
        -1,
        text(canonical),
        "a0eebc999c0b4ef8bb6d6bb9bd380a11",
    );
    check_out(
        Uuid,
        -1,
        bytes(&unhex("a0eebc999c0b4ef8bb6d6bb9bd380a11")),
        canonical,
    );
    check_out(Uuid, -1, text("not-a-uuid"), "not-a-uuid");
    assert_eq!(
        to_binary(Uuid, -1, SqlValueRef::Text("nope"))
            .unwrap_err()
            .code,
        "22P02"
    );
    check_recv_err(Uuid, &[0; 15], "22P03");
}

#[test]
fn dates() {
    check(Date, -1, "2024-01-02", text("2024-01-02"), "2024-01-02");
    check(Date, -1, "20240102", text("2024-01-02"), "2024-01-02");
    check(Date, -1, " 2024-1-2 ", text("2024-01-02"), "2024-01-02");
    check(
        Date,
        -1,
        "2024-01-02T10:00",
        text("2024-01-02"),
        "2024-01-02",
    );
    check(Date, -1, "2024-02-29", text("2024-02-29"), "2024-02-29");
    check(
        Date,
        -1,
        "0044-03-15 BC",
        text("0044-03-15 BC"),
        "0044-03-15 BC",
    );
    check(
        Date,
        -1,
        "4714-11-24 BC",
        text("4714-11-24 BC"),
        "4714-11-24 BC",
    );
    check(Date, -1, "12345-06-07", text("12345-06-07"), "12345-06-07");
    check(Date, -1, "infinity", text("infinity"), "infinity");
    check(Date, -1, "-infinity", text("-infinity"), "-infinity");
    check(Date, -1, "epoch", text("1970-01-01"), "1970-01-01");
    // Month-day-year when the first field is short, and two-digit years in 1970..2069.
    check(Date, -1, "1-2-3", text("2003-01-02"), "2003-01-02");
    check(Date, -1, "01-02-2024", text("2024-01-02"), "2024-01-02");
    check(Date, -1, "12-31-99", text("1999-12-31"), "1999-12-31");
    check(
        Date,
        -1,
        "3-1-93 BC",
        text("0093-03-01 BC"),
        "0093-03-01 BC",
    );
    check(Date, -1, "240102", text("2024-01-02"), "2024-01-02");
    check(
        Date,
        -1,
        " 5235720115 ",
        text("523572-01-15"),
        "523572-01-15",
    );
    check(Date, -1, "9090-10-7 -02", text("9090-10-07"), "9090-10-07");
    check_err(Date, -1, "81-6-9", "22008");
    check_err(Date, -1, "0304-06-06-09", "22007");
    check_binary(Date, -1, text("2000-01-01"), "00000000");
    check_binary(Date, -1, text("2024-01-02"), "0000223f");
    check_binary(Date, -1, text("1999-12-31"), "ffffffff");
    check_binary(Date, -1, text("infinity"), "7fffffff");
    check_binary(Date, -1, text("-infinity"), "80000000");
    check_err_message(
        Date,
        -1,
        "2024-13-01",
        "22008",
        "date/time field value out of range: \"2024-13-01\"",
    );
    check_err(Date, -1, "2023-02-29", "22008");
    check_err(Date, -1, "0000-01-01", "22008");
    check_err_message(
        Date,
        -1,
        "9999999-01-01",
        "22008",
        "date out of range: \"9999999-01-01\"",
    );
    check_err(Date, -1, "4714-11-23 BC", "22008");
    check_err_message(
        Date,
        -1,
        "x",
        "22007",
        "invalid input syntax for type date: \"x\"",
    );
    for bad in [
        "",
        "2024-01",
        "2024/01/02",
        "2024-01-02x",
        "12:00",
        "2024-01-02 bc bc",
        "2024-001-02",
        "2024-01-02 abc",
    ] {
        check_err(Date, -1, bad, "22007");
    }
    check_out(Date, -1, text("2024-01-02 00:00:00"), "2024-01-02");
    check_recv_err(Date, &[0; 8], "22P03");
    assert_eq!(
        decode_param(
            Date,
            Format::Binary,
            &i32::MAX.wrapping_sub(1).to_be_bytes()
        )
        .unwrap_err()
        .code,
        "22008"
    );
    let today = parse_text(Date, -1, "today").unwrap();
    assert!(
        matches!(today, SqlValue::Text(ref s) if s.len() == 10),
        "{today:?}"
    );
}

#[test]
fn times() {
    check(Time, -1, "04:05:06", text("04:05:06"), "04:05:06");
    check(Time, -1, "04:05", text("04:05:00"), "04:05:00");
    check(
        Time,
        -1,
        "4:05:06.789-08",
        text("04:05:06.789"),
        "04:05:06.789",
    );
    check(
        Time,
        -1,
        "12:00:00.1234567",
        text("12:00:00.123457"),
        "12:00:00.123457",
    );
    check(Time, -1, "12:00:00.100", text("12:00:00.1"), "12:00:00.1");
    check(Time, -1, "24:00", text("24:00:00"), "24:00:00");
    check(Time, -1, "23:59:60", text("24:00:00"), "24:00:00");
    check(Time, -1, "040506", text("04:05:06"), "04:05:06");
    check(Time, -1, " 0232", text("02:32:00"), "02:32:00");
    check(Time, -1, "09-17-12 8:41", text("08:41:00"), "08:41:00");
    check(Time, -1, "allballs", text("00:00:00"), "00:00:00");
    check(Time, -1, "2024-01-02 04:05", text("04:05:00"), "04:05:00");
    check(Time, -1, "04:05:06 UTC", text("04:05:06"), "04:05:06");
    check(Time, -1, "12:00 bc", text("12:00:00"), "12:00:00");
    check(Time, 0, "12:00:00.5", text("12:00:01"), "12:00:01");
    check(Time, 2, "12:00:00.125", text("12:00:00.13"), "12:00:00.13");
    check_binary(Time, -1, text("04:05:06"), "000000036c8bc080");
    check_binary(Time, -1, text("24:00:00"), "000000141dd76000");
    check_out(Time, 1, text("12:00:00.25"), "12:00:00.3");
    for bad in ["25:00", "12:60", "23:59:60.5", "24:00:01", "12:00:61"] {
        check_err(Time, -1, bad, "22008");
    }
    check_err_message(
        Time,
        -1,
        "x",
        "22007",
        "invalid input syntax for type time: \"x\"",
    );
    for bad in [
        "",
        "2024-01-02",
        "12",
        "12:",
        "12:00:",
        "12:00:00.",
        "infinity",
        "123:00",
        "epoch",
        "20240102",
    ] {
        check_err(Time, -1, bad, "22007");
    }
    check_recv_err(Time, &[0; 4], "22P03");
    assert_eq!(
        decode_param(Time, Format::Binary, &(-1i64).to_be_bytes())
            .unwrap_err()
            .code,
        "22008"
    );
}

#[test]
fn timestamps() {
    let ts = |input: &str, out: &str| check(Timestamp, -1, input, text(out), out);
    ts("2024-01-02 03:04:05", "2024-01-02 03:04:05");
    ts("2024-01-02T03:04:05.500", "2024-01-02 03:04:05.5");
    ts("2024-01-02 03:04:05+02", "2024-01-02 03:04:05");
    ts("2024-01-02T03:04:05Z", "2024-01-02 03:04:05");
    ts("2024-01-02", "2024-01-02 00:00:00");
    ts("2024-01-01 24:00", "2024-01-02 00:00:00");
    ts("2024-01-02 23:59:60", "2024-01-03 00:00:00");
    ts(
        "2024-01-02 03:04:05.123456789",
        "2024-01-02 03:04:05.123457",
    );
    ts("2024-01-02 03:04:05.000001", "2024-01-02 03:04:05.000001");
    ts("0044-03-15 12:00 BC", "0044-03-15 12:00:00 BC");
    ts("1999-12-31 23:59:59.999999", "1999-12-31 23:59:59.999999");
    ts(
        "294276-12-31 23:59:59.999999",
        "294276-12-31 23:59:59.999999",
    );
    ts("infinity", "infinity");
    ts("-infinity", "-infinity");
    ts("epoch", "1970-01-01 00:00:00");
    check(
        Timestamp,
        1,
        "2024-01-02 03:04:05.123",
        text("2024-01-02 03:04:05.1"),
        "2024-01-02 03:04:05.1",
    );
    // Postgres rounds the microsecond count half away from zero, so before 2000 half a second
    // rounds down.
    check(
        Timestamp,
        0,
        "1999-12-31 23:59:59.5",
        text("1999-12-31 23:59:59"),
        "1999-12-31 23:59:59",
    );
    check(
        Timestamp,
        0,
        "2024-01-02 03:04:05.5",
        text("2024-01-02 03:04:06"),
        "2024-01-02 03:04:06",
    );
    check_binary(
        Timestamp,
        -1,
        text("2000-01-01 00:00:00"),
        "0000000000000000",
    );
    check_binary(
        Timestamp,
        -1,
        text("2024-01-02 03:04:05.5"),
        "0002b0ec851d9460",
    );
    check_binary(
        Timestamp,
        -1,
        text("1999-12-31 23:59:59.999999"),
        "ffffffffffffffff",
    );
    check_binary(Timestamp, -1, text("infinity"), "7fffffffffffffff");
    check_binary(Timestamp, -1, text("-infinity"), "8000000000000000");
    check_err_message(
        Timestamp,
        -1,
        "300000-01-01",
        "22008",
        "timestamp out of range: \"300000-01-01\"",
    );
    check_err_message(
        Timestamp,
        -1,
        "x",
        "22007",
        "invalid input syntax for type timestamp: \"x\"",
    );
    for bad in [
        "",
        "04:05:06",
        "2024-01-02T",
        "2024-01-02 03:04:05 +",
        "2024-01-02 03:04:05 03",
    ] {
        check_err(Timestamp, -1, bad, "22007");
    }
    check_err(Timestamp, -1, "2024-01-02 25:00", "22008");
    // What SQLite's own functions write.
    check_out(
        Timestamp,
        -1,
        text("2024-01-02 03:04:05.120"),
        "2024-01-02 03:04:05.12",
    );
    check_out(Timestamp, -1, text("not a time"), "not a time");
    check_out(Timestamp, -1, int(5), "5");
    assert_eq!(
        to_binary(Timestamp, -1, SqlValueRef::Text("nope"))
            .unwrap_err()
            .code,
        "22P02"
    );
    assert_eq!(
        to_binary(Timestamp, -1, SqlValueRef::Int(5))
            .unwrap_err()
            .code,
        "22P02"
    );
    check_recv_err(Timestamp, &[0; 7], "22P03");
    assert_eq!(
        decode_param(Timestamp, Format::Binary, &(i64::MAX - 1).to_be_bytes())
            .unwrap_err()
            .code,
        "22008"
    );
}

#[test]
fn timestamps_with_time_zone() {
    let tz = |input: &str, out: &str| check(Timestamptz, -1, input, text(out), out);
    tz("2024-01-02 03:04:05.5", "2024-01-02 03:04:05.5+00");
    tz("2024-01-02 03:04:05.500+00", "2024-01-02 03:04:05.5+00");
    tz("2024-01-02T03:04:05+02", "2024-01-02 01:04:05+00");
    tz("2024-01-02T03:04:05+02:00", "2024-01-02 01:04:05+00");
    tz("2024-01-02 03:04:05 -05:30", "2024-01-02 08:34:05+00");
    tz("2024-01-02 03:04:05-0530", "2024-01-02 08:34:05+00");
    tz("2024-01-02 03:04:05z", "2024-01-02 03:04:05+00");
    tz("2024-01-02 03:04:05 UTC", "2024-01-02 03:04:05+00");
    tz("2024-01-01 00:30:00+01", "2023-12-31 23:30:00+00");
    tz("2024-01-02", "2024-01-02 00:00:00+00");
    tz("2024-01-02 -02", "2024-01-02 02:00:00+00");
    tz("9814-05-26 +0948", "9814-05-25 14:12:00+00");
    tz("0044-03-15 12:00 BC", "0044-03-15 12:00:00+00 BC");
    tz("epoch", "1970-01-01 00:00:00+00");
    tz("infinity", "infinity");
    check_err_message(
        Timestamptz,
        -1,
        "2024-01-01 12:00+16",
        "22008",
        "time zone displacement out of range: \"2024-01-01 12:00+16\"",
    );
    check_err_message(
        Timestamptz,
        -1,
        "2024-01-01 12:00 Europe/Nope",
        "22023",
        "time zone \"europe/nope\" not recognized",
    );
    check_err_message(
        Timestamptz,
        -1,
        "x",
        "22007",
        "invalid input syntax for type timestamp with time zone: \"x\"",
    );
    check_binary(
        Timestamptz,
        -1,
        text("2024-01-02 03:04:05.5+00"),
        "0002b0ec851d9460",
    );
    check_binary(
        Timestamptz,
        -1,
        text("2024-01-02 05:04:05.5+02"),
        "0002b0ec851d9460",
    );
    // What SQLite's own functions write: no offset means UTC.
    check_out(
        Timestamptz,
        -1,
        text("2024-01-02 03:04:05"),
        "2024-01-02 03:04:05+00",
    );
    check_out(
        Timestamptz,
        -1,
        text("2024-01-02 03:04:05.123"),
        "2024-01-02 03:04:05.123+00",
    );
    check_out(
        Timestamptz,
        -1,
        text("2024-01-02T03:04:05Z"),
        "2024-01-02 03:04:05+00",
    );
    check_out(
        Timestamptz,
        0,
        text("2024-01-02 03:04:05.5+00"),
        "2024-01-02 03:04:06+00",
    );
    let now = parse_text(Timestamptz, -1, "now").unwrap();
    assert!(
        matches!(now, SqlValue::Text(ref s) if s.ends_with("+00")),
        "{now:?}"
    );
}

/// In a session zone, input without an offset is wall-clock time there, output is shown there,
/// and storage stays in UTC (the expected texts are PostgreSQL 15's).
#[test]
fn timestamps_with_time_zone_in_a_session_zone() {
    let in_zone = |setting: &str, input: &str, stored: &str, shown: &str| {
        let (zone, _) = TimeZone::parse(setting).unwrap();
        with_session_time_zone(zone, || {
            let value = parse_text(Timestamptz, -1, input).unwrap();
            assert_eq!(value, text(stored), "{setting}: {input}");
            let out = to_text(Timestamptz, -1, value.as_ref()).unwrap();
            assert_eq!(out, shown, "{setting}: {input}");
        });
    };
    in_zone(
        "Europe/Paris",
        "2024-06-01 10:00",
        "2024-06-01 08:00:00+00",
        "2024-06-01 10:00:00+02",
    );
    in_zone(
        "Europe/Paris",
        "2024-01-01 10:00",
        "2024-01-01 09:00:00+00",
        "2024-01-01 10:00:00+01",
    );
    in_zone(
        "Europe/Berlin",
        "2024-03-31 02:30",
        "2024-03-31 01:30:00+00",
        "2024-03-31 03:30:00+02",
    );
    in_zone(
        "Europe/Berlin",
        "1800-01-01 00:00",
        "1799-12-31 23:06:32+00",
        "1800-01-01 00:00:00+00:53:28",
    );
    in_zone(
        "America/St_Johns",
        "2024-06-01 10:00",
        "2024-06-01 12:30:00+00",
        "2024-06-01 10:00:00-02:30",
    );
    in_zone(
        "-3.5",
        "2024-06-01 10:00",
        "2024-06-01 13:30:00+00",
        "2024-06-01 10:00:00-03:30",
    );
    in_zone(
        "UTC+5",
        "2024-06-01 10:00",
        "2024-06-01 15:00:00+00",
        "2024-06-01 10:00:00-05",
    );
    // An explicit offset or zone name wins over the session's.
    in_zone(
        "Asia/Tokyo",
        "2024-06-01 10:00+00",
        "2024-06-01 10:00:00+00",
        "2024-06-01 19:00:00+09",
    );
    in_zone(
        "Asia/Tokyo",
        "2024-06-01 10:00 America/New_York",
        "2024-06-01 14:00:00+00",
        "2024-06-01 23:00:00+09",
    );
    // Types without a zone are not moved.
    let (tokyo, _) = TimeZone::parse("Asia/Tokyo").unwrap();
    with_session_time_zone(tokyo, || {
        assert_eq!(
            parse_text(Timestamp, -1, "2024-06-01 10:00").unwrap(),
            text("2024-06-01 10:00:00")
        );
    });
}

#[test]
fn null_is_not_encoded() {
    for ty in PgType::ALL {
        assert!(to_text(ty, -1, SqlValueRef::Null).is_err());
        assert!(to_binary(ty, -1, SqlValueRef::Null).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

fn typmods(ty: PgType) -> Vec<i32> {
    match ty {
        Numeric => vec![
            -1,
            ((10 << 16) | 2) + 4,
            (3 << 16) + 4,
            ((5 << 16) | (-2i32 & 0x7ff)) + 4,
        ],
        Varchar | Bpchar => vec![-1, 5, 7],
        Time | Timestamp | Timestamptz => vec![-1, 0, 3],
        _ => vec![-1],
    }
}

/// JSON documents, with numbers and strings in the forms the lexer must handle.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,10})?([eE][-+]?[0-9]{1,3})?",
        "\"([a-z \u{e9}\u{1F600}]|\\\\[nt\"/\\\\]|\\\\u00[0-9a-f]{2}|\\\\ud83d\\\\ude00){0,6}\"",
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(("[a-c]{0,2}", inner), 0..5).prop_map(|v| {
                let members: Vec<String> =
                    v.iter().map(|(k, v)| format!("\"{k}\" : {v}")).collect();
                format!("{{ {} }}", members.join(" , "))
            }),
        ]
    })
}

/// Strings shaped like each type's input, so that many of them parse.
fn plausible_input() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[-+0-9.eE ]{0,24}",
        " ?-?[0-9]{1,20} ?",
        "-?[0-9]{0,20}(\\.[0-9]{0,20})?([eE][-+]?[0-9]{1,3})?",
        "[-+0-9:. TtZzBCbc]{0,32}",
        "[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}([ T][0-9]{1,2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,8})?)?)?([+-][0-9]{1,2}(:[0-9]{2})?)?( BC)?",
        "[0-9]{4}-(0?[1-9]|1[0-2])-(0?[1-9]|1[0-9]|2[0-8])([ T]([01]?[0-9]|2[0-4]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,8})?)?)?( ?([+-][01][0-9](:?[0-5][0-9])?|Z|UTC))?( BC)?",
        "([01]?[0-9]|2[0-4]):[0-5][0-9](:[0-6][0-9](\\.[0-9]{1,8})?)?",
        "[{}\\[\\],:\"0-9a-z.\\\\ -]{0,24}",
        json_text(),
        "\\\\x[0-9a-fA-F ]{0,12}",
        "[a-z\\\\0-7]{0,12}",
        "[{]?[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}[}]?",
        "(t|f|true|false|yes|no|on|off|NaN|Infinity|-inf|epoch|allballs|infinity)",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..40)) {
        for ty in PgType::ALL {
            let _ = decode_param(ty, Format::Text, &raw);
            let _ = decode_param(ty, Format::Binary, &raw);
        }
    }

    #[test]
    fn parsed_values_round_trip(input in plausible_input()) {
        for ty in PgType::ALL {
            for typmod in typmods(ty) {
                // Anything that parses must print and re-read as itself, in both formats.
                if let Ok(value) = parse_text(ty, typmod, &input) {
                    check_round_trips(ty, typmod, &value, &format!("{ty:?}({typmod}) {input:?}"));
                }
            }
        }
    }

    #[test]
    fn binary_values_round_trip(raw in proptest::collection::vec(any::<u8>(), 0..24)) {
        for ty in PgType::ALL {
            if let Ok(value) = decode_param(ty, Format::Binary, &raw) {
                check_round_trips(ty, -1, &value, &format!("{ty:?} {raw:?}"));
            }
        }
    }

    #[test]
    fn floats_print_shortest_round_trip(bits in any::<u64>()) {
        let f = f64::from_bits(bits);
        let shown = to_text(Float8, -1, SqlValueRef::Float(f)).unwrap();
        let back = parse_text(Float8, -1, &shown).unwrap();
        prop_assert!(same(&back, &SqlValue::Float(f)), "{} -> {} -> {:?}", f, shown, back);
    }

    #[test]
    fn encoders_never_panic(i in any::<i64>(), f in any::<f64>(), s in plausible_input(), b in proptest::collection::vec(any::<u8>(), 0..20)) {
        let values = [
            SqlValueRef::Int(i),
            SqlValueRef::Float(f),
            SqlValueRef::Text(&s),
            SqlValueRef::Bytes(&b),
        ];
        for ty in PgType::ALL {
            for typmod in typmods(ty) {
                for v in values {
                    let _ = to_text(ty, typmod, v);
                    let _ = to_binary(ty, typmod, v);
                }
            }
        }
    }
}
