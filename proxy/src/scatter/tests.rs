//! Merging values read across nodes: casts, exact numerics and their order, averages.

use std::cmp::Ordering;

use super::finish::{Typed, cast_value, compare_numeric, decimal_text};
use super::{add, average, comparable, decimal, decode};
use mycelium_protocol::types::{PgType, SqlValue, oid};
use mycelium_protocol::{Column, Format};

/// A merged value of type `from` cast to `to` (a type as written in SQL): the value, or
/// the error's SQLSTATE and message.
fn cast(value: SqlValue, from: PgType, to: &str) -> Result<SqlValue, (String, String)> {
    let (ty, typmod) = PgType::parse_sql_name(to).expect("a type name");
    cast_value(&value, Typed::plain(from), Typed { ty, typmod }).map_err(|e| {
        let e = e.to_client();
        (e.code, e.message)
    })
}

fn int(i: i64) -> SqlValue {
    SqlValue::Int(i)
}

fn text(t: &str) -> SqlValue {
    SqlValue::Text(t.to_owned())
}

fn out_of_range(name: &str) -> Result<SqlValue, (String, String)> {
    Err(("22003".to_owned(), format!("{name} out of range")))
}

#[test]
fn casts_round_and_check_ranges_as_postgres() {
    // numeric → integer rounds half away from zero, double → integer half to even.
    for (value, want) in [
        ("2.5", 3),
        ("-2.5", -3),
        ("0.5", 1),
        ("0.49", 0),
        ("21", 21),
    ] {
        assert_eq!(
            cast(text(value), PgType::Numeric, "int"),
            Ok(int(want)),
            "{value}"
        );
    }
    for (value, want) in [(2.5, 2), (1.5, 2), (-2.5, -2), (0.5, 0), (2.6, 3)] {
        assert_eq!(
            cast(SqlValue::Float(value), PgType::Float8, "int8"),
            Ok(int(want)),
            "{value}"
        );
    }
    // An average of integers is exact decimal text.
    assert_eq!(
        cast(text("10.5000000000000000"), PgType::Numeric, "integer"),
        Ok(int(11))
    );
    assert_eq!(
        cast(int(2_147_483_648), PgType::Int8, "int4"),
        out_of_range("integer")
    );
    assert_eq!(
        cast(int(2_147_483_647), PgType::Int8, "int4"),
        Ok(int(2_147_483_647))
    );
    assert_eq!(
        cast(int(40_000), PgType::Int8, "smallint"),
        out_of_range("smallint")
    );
    assert_eq!(
        cast(text("9223372036854775807.5"), PgType::Numeric, "bigint"),
        out_of_range("bigint")
    );
    assert_eq!(
        cast(text("100000000000000000000"), PgType::Numeric, "int8"),
        out_of_range("bigint")
    );
    assert_eq!(
        cast(SqlValue::Float(1e300), PgType::Float8, "int8"),
        out_of_range("bigint")
    );
    assert_eq!(
        cast(SqlValue::Float(f64::NAN), PgType::Float8, "int"),
        out_of_range("integer")
    );
    assert_eq!(
        cast(text("NaN"), PgType::Numeric, "int"),
        Err((
            "0A000".to_owned(),
            "cannot convert NaN to integer".to_owned()
        ))
    );
    // Booleans cast to integer and to text only.
    assert_eq!(cast(int(1), PgType::Bool, "int4"), Ok(int(1)));
    assert_eq!(cast(int(0), PgType::Bool, "text"), Ok(text("false")));
}

#[test]
fn casts_to_numeric_float_and_text_print_as_postgres() {
    // float8_numeric keeps 15 significant digits, float4_numeric 6.
    assert_eq!(
        cast(SqlValue::Float(0.1 + 0.2), PgType::Float8, "numeric"),
        Ok(text("0.3"))
    );
    assert_eq!(
        cast(SqlValue::Float(1e20), PgType::Float8, "numeric"),
        Ok(text("100000000000000000000"))
    );
    assert_eq!(
        cast(SqlValue::Float(123_456_789.0), PgType::Float4, "numeric"),
        Ok(text("123457000"))
    );
    // A typmod rounds to its scale and bounds the digits before the point.
    assert_eq!(
        cast(int(21), PgType::Int8, "numeric(10,2)"),
        Ok(text("21.00"))
    );
    assert_eq!(
        cast(text("1.005"), PgType::Numeric, "numeric(10,2)"),
        Ok(text("1.01"))
    );
    assert_eq!(
        cast(text("10.5000000000000000"), PgType::Numeric, "decimal(5,1)"),
        Ok(text("10.5"))
    );
    assert_eq!(
        cast(int(12_345), PgType::Int8, "numeric(3,0)")
            .map_err(|(code, message)| (code, message.starts_with("numeric field overflow"))),
        Err(("22003".to_owned(), true))
    );
    assert_eq!(
        cast(
            text("10.5000000000000000"),
            PgType::Numeric,
            "double precision"
        ),
        Ok(SqlValue::Float(10.5))
    );
    assert_eq!(
        cast(int(16_777_217), PgType::Int8, "real"),
        Ok(SqlValue::Float(16_777_216.0))
    );
    assert_eq!(
        cast(SqlValue::Float(1e39), PgType::Float8, "float4"),
        Err((
            "22003".to_owned(),
            "value out of range: overflow".to_owned()
        ))
    );
    assert_eq!(cast(int(21), PgType::Int8, "text"), Ok(text("21")));
    assert_eq!(
        cast(text("35.0000000000000000"), PgType::Numeric, "text"),
        Ok(text("35.0000000000000000"))
    );
    assert_eq!(cast(text(" 12 "), PgType::Text, "int"), Ok(int(12)));
}

#[test]
fn numeric_values_order_as_numbers() {
    assert_eq!(
        compare_numeric(&text("100.5000000000000000"), &text("35.0000000000000000")),
        Ordering::Greater
    );
    assert_eq!(compare_numeric(&text("-10.5"), &text("-9")), Ordering::Less);
    assert_eq!(compare_numeric(&int(2), &text("2.000")), Ordering::Equal);
    assert_eq!(
        compare_numeric(&SqlValue::Float(0.25), &text("0.3")),
        Ordering::Less
    );
    assert_eq!(
        compare_numeric(&text("NaN"), &int(i64::MAX)),
        Ordering::Greater
    );
    assert_eq!(compare_numeric(&text("-0.0"), &int(0)), Ordering::Equal);
}

#[test]
fn decimals_print_as_numeric_out() {
    for (literal, want) in [
        ("0.5", Some("0.5")),
        ("00.50", Some("0.50")),
        (".5", Some("0.5")),
        ("5.", Some("5")),
        ("1e3", Some("1000")),
        ("1.50e1", Some("15.0")),
        ("3e-1", Some("0.3")),
        ("-1e-7", Some("-0.0000001")),
        ("-0.00", Some("0.00")),
        ("1e", None),
        ("abc", None),
    ] {
        assert_eq!(decimal_text(literal).as_deref(), want, "{literal}");
    }
}

#[test]
fn orders_only_types_it_compares_as_postgres() {
    let column = |type_oid| Column {
        name: "c".to_owned(),
        table_oid: 0,
        column_id: 0,
        type_oid,
        type_size: -1,
        type_modifier: -1,
    };
    assert!(comparable(&column(25)).is_ok());
    // jsonb, interval
    assert!(comparable(&column(3802)).is_err());
    assert!(comparable(&column(1186)).is_err());
}

#[test]
fn averages_divide_as_numeric_div() {
    // Checked against PostgreSQL 15: avg(int) is numeric_div(sum, count).
    let avg = |sum: SqlValue, count: i64| average(Some(&sum), Some(&int(count))).expect("average");
    assert_eq!(avg(int(210), 6), Some(text("35.0000000000000000")));
    assert_eq!(avg(int(10), 3), Some(text("3.3333333333333333")));
    assert_eq!(avg(int(20), 3), Some(text("6.6666666666666667")));
    assert_eq!(avg(int(-20), 3), Some(text("-6.6666666666666667")));
    // Fewer decimals for larger quotients: 16 significant digits.
    assert_eq!(avg(int(200_000), 2), Some(text("100000.000000000000")));
    assert_eq!(
        avg(int(123_456_789_014), 2),
        Some(text("61728394507.00000000"))
    );
    // The sum's own scale when it is larger.
    assert_eq!(avg(text("4.00"), 2), Some(text("2.0000000000000000")));
    assert_eq!(
        avg(text("1.000000000000000000000"), 3),
        Some(text("0.333333333333333333333"))
    );
    assert_eq!(avg(SqlValue::Float(1.0), 4), Some(SqlValue::Float(0.25)));
    assert_eq!(avg(int(5), 0), None);
    assert_eq!(average(None, Some(&int(0))).expect("empty"), None);
}

#[test]
fn numerics_merge_exactly_with_their_scale() {
    let numeric = Column {
        name: "sum".to_owned(),
        table_oid: 0,
        column_id: 0,
        type_oid: oid::NUMERIC,
        type_size: -1,
        type_modifier: -1,
    };
    let read = |format, bytes: &[u8]| {
        decode(&numeric, format, Some(bytes))
            .expect("numeric")
            .expect("value")
    };
    assert_eq!(read(Format::Text, b"12.50"), text("12.50"));
    assert_eq!(
        read(Format::Text, b"123456789012345678901234.5"),
        text("123456789012345678901234.5")
    );
    assert_eq!(read(Format::Text, b"NaN"), text("NaN"));
    // numeric_send of 12.50: 2 groups, weight 0, positive, dscale 2: 12 and 5000.
    let binary = [0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 0x13, 0x88];
    assert_eq!(read(Format::Binary, &binary), text("12.50"));
    // -0.0001234 with dscale 7: weight -1, groups 1 and 2340.
    let binary = [0, 2, 0xFF, 0xFF, 0x40, 0, 0, 7, 0, 1, 0x09, 0x24];
    assert_eq!(read(Format::Binary, &binary), text("-0.0001234"));
    // 20000 with dscale 0: one group of weight 1.
    let binary = [0, 1, 0, 1, 0, 0, 0, 0, 0, 2];
    assert_eq!(read(Format::Binary, &binary), text("20000"));
    assert_eq!(decimal::binary_numeric_text(&[0, 1, 0, 0]), None);
    // Sums keep the larger scale, exactly.
    assert_eq!(add(text("1.50"), text("2.5")).expect("sum"), text("4.00"));
    assert_eq!(
        add(text("9007199254740993"), int(1)).expect("sum"),
        text("9007199254740994")
    );
}
