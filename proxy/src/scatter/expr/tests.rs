//! Values checked against PostgreSQL 15 (`psql`), for the same operands and types.

use mycelium_protocol::Column;
use mycelium_protocol::types::{SqlValue, oid};
use mycelium_router::{ArithOp, Constant, Finish};

use super::resolve;

fn column(type_oid: u32) -> Column {
    Column {
        name: "sum".to_owned(),
        table_oid: 7,
        column_id: 2,
        type_oid,
        type_size: -1,
        type_modifier: -1,
    }
}

/// `finish` over one merged row of the given column types: the value and the type OID it is
/// described with, or the error's SQLSTATE and message.
fn eval(
    finish: &Finish,
    types: &[u32],
    row: &[Option<SqlValue>],
) -> Result<(Option<SqlValue>, u32), (String, String)> {
    let columns: Vec<Column> = types.iter().map(|t| column(*t)).collect();
    let error = |e: crate::error::ProxyError| {
        let e = e.to_client();
        (e.code, e.message)
    };
    let resolved = resolve(finish, &columns).map_err(error)?;
    let value = resolved.eval(row).map_err(error)?;
    Ok((value, resolved.ty.ty.oid()))
}

fn col(i: usize) -> Finish {
    Finish::Column(i)
}

fn int(i: i64) -> SqlValue {
    SqlValue::Int(i)
}

fn text(t: &str) -> SqlValue {
    SqlValue::Text(t.to_owned())
}

fn constant(i: i64) -> Finish {
    Finish::Constant(Constant::Int(i))
}

fn decimal(d: &str) -> Finish {
    Finish::Constant(Constant::Numeric(d.to_owned()))
}

fn op(left: Finish, op: ArithOp, right: Finish) -> Finish {
    Finish::Arithmetic(Box::new(left), op, Box::new(right))
}

fn cast(inner: Finish, ty: &str) -> Finish {
    Finish::Cast(Box::new(inner), ty.to_owned())
}

fn error(code: &str, message: &str) -> Result<(Option<SqlValue>, u32), (String, String)> {
    Err((code.to_owned(), message.to_owned()))
}

use ArithOp::{Add, Divide, Modulo, Multiply, Subtract};

#[test]
fn results_take_the_types_postgres_resolves() {
    // sum(int4) / count(*): bigint / bigint is bigint, truncated.
    assert_eq!(
        eval(
            &op(col(0), Divide, col(1)),
            &[oid::INT8, oid::INT8],
            &[Some(int(20)), Some(int(6))]
        ),
        Ok((Some(int(3)), oid::INT8))
    );
    // count(*) + 1: bigint; max(int4) - min(int4): integer; max(int2) + max(int2): smallint.
    for (types, want) in [
        ([oid::INT8, oid::INT4], oid::INT8),
        ([oid::INT4, oid::INT4], oid::INT4),
        ([oid::INT2, oid::INT2], oid::INT2),
        ([oid::INT2, oid::INT4], oid::INT4),
        ([oid::INT8, oid::NUMERIC], oid::NUMERIC),
        ([oid::NUMERIC, oid::FLOAT8], oid::FLOAT8),
        ([oid::FLOAT4, oid::FLOAT4], oid::FLOAT4),
        ([oid::FLOAT4, oid::INT4], oid::FLOAT8),
    ] {
        let (_, ty) = eval(
            &op(col(0), Add, col(1)),
            &types,
            &[Some(int(1)), Some(int(2))],
        )
        .unwrap_or_else(|e| panic!("{types:?}: {e:?}"));
        assert_eq!(ty, want, "{types:?}");
    }
    // Constants: integer, bigint beyond it, numeric with a point.
    let typed = |finish: Finish| eval(&finish, &[oid::INT4], &[Some(int(1))]).map(|(_, ty)| ty);
    assert_eq!(typed(op(col(0), Add, constant(1))), Ok(oid::INT4));
    assert_eq!(
        typed(op(col(0), Add, constant(3_000_000_000))),
        Ok(oid::INT8)
    );
    assert_eq!(
        typed(op(col(0), Multiply, decimal("2.5"))),
        Ok(oid::NUMERIC)
    );
    assert_eq!(
        typed(Finish::Negate(Box::new(col(0)))),
        Ok(oid::INT4),
        "unary minus keeps the type"
    );
    // No such operator: % of doubles, arithmetic on text.
    assert_eq!(
        eval(
            &op(col(0), Modulo, constant(2)),
            &[oid::FLOAT8],
            &[Some(SqlValue::Float(1.0))]
        ),
        error(
            "42883",
            "operator does not exist: double precision % integer"
        )
    );
    assert_eq!(
        eval(
            &op(col(0), Add, constant(1)),
            &[oid::TEXT],
            &[Some(text("a"))]
        ),
        error("42883", "operator does not exist: text + integer")
    );
}

#[test]
fn integers_truncate_and_check_their_range() {
    let int8 = |left: i64, o: ArithOp, right: i64| {
        eval(
            &op(col(0), o, col(1)),
            &[oid::INT8, oid::INT8],
            &[Some(int(left)), Some(int(right))],
        )
        .map(|(v, _)| v)
    };
    assert_eq!(int8(7, Divide, 2), Ok(Some(int(3))));
    assert_eq!(int8(-7, Divide, 2), Ok(Some(int(-3))));
    assert_eq!(int8(-7, Modulo, 2), Ok(Some(int(-1))));
    assert_eq!(int8(7, Modulo, -3), Ok(Some(int(1))));
    assert_eq!(int8(i64::MIN, Modulo, -1), Ok(Some(int(0))));
    assert_eq!(int8(20, Subtract, 30), Ok(Some(int(-10))));
    let division_by_zero = Err(("22012".to_owned(), "division by zero".to_owned()));
    assert_eq!(int8(1, Divide, 0), division_by_zero);
    assert_eq!(int8(1, Modulo, 0), division_by_zero);
    let bigint = Err(("22003".to_owned(), "bigint out of range".to_owned()));
    assert_eq!(int8(i64::MAX, Add, 1), bigint);
    assert_eq!(int8(i64::MIN, Divide, -1), bigint);
    assert_eq!(int8(i64::MAX, Multiply, 2), bigint);
    // integer + integer overflows an integer, as int4pl.
    assert_eq!(
        eval(
            &op(col(0), Add, constant(1)),
            &[oid::INT4],
            &[Some(int(2_147_483_647))]
        ),
        error("22003", "integer out of range")
    );
    assert_eq!(
        eval(
            &Finish::Negate(Box::new(col(0))),
            &[oid::INT2],
            &[Some(int(-32_768))]
        ),
        error("22003", "smallint out of range")
    );
    // Any NULL operand is NULL, the division by zero too.
    assert_eq!(
        eval(
            &op(col(0), Divide, col(1)),
            &[oid::INT8, oid::INT8],
            &[None, Some(int(0))]
        ),
        Ok((None, oid::INT8))
    );
    assert_eq!(
        eval(
            &op(col(0), Add, col(1)),
            &[oid::INT8, oid::INT8],
            &[Some(int(1)), Some(SqlValue::Null)]
        ),
        Ok((None, oid::INT8))
    );
}

#[test]
fn numerics_have_postgres_scales() {
    let numeric = |left: SqlValue, o: ArithOp, right: SqlValue| {
        eval(
            &op(col(0), o, col(1)),
            &[oid::NUMERIC, oid::NUMERIC],
            &[Some(left), Some(right)],
        )
        .map(|(v, _)| v)
    };
    for (left, o, right, want) in [
        ("7.0", Divide, "3", "2.3333333333333333"),
        ("1", Divide, "3.0", "0.33333333333333333333"),
        ("100000", Divide, "3.0", "33333.333333333333"),
        ("10", Divide, "4", "2.5000000000000000"),
        ("0", Divide, "7", "0.00000000000000000000"),
        ("100", Divide, "7", "14.2857142857142857"),
        ("1000000", Divide, "3", "333333.333333333333"),
        ("12345.678", Divide, "0.001", "12345678.000000000000"),
        ("1", Divide, "7", "0.14285714285714285714"),
        ("99999999", Divide, "1.0", "99999999.000000000000"),
        ("123456789012345678", Divide, "7", "17636684144620811"),
        ("11", Divide, "4", "2.7500000000000000"),
        ("1.5", Modulo, "0.4", "0.3"),
        ("-7.5", Modulo, "2", "-1.5"),
        ("1.50", Multiply, "2.5", "3.750"),
        ("35.0000000000000000", Multiply, "2", "70.0000000000000000"),
        ("2.0000000000000000", Subtract, "3", "-1.0000000000000000"),
        ("0.10", Add, "0.2", "0.30"),
    ] {
        assert_eq!(
            numeric(text(left), o, text(right)),
            Ok(Some(text(want))),
            "{left} {o:?} {right}"
        );
    }
    // A bigint with a numeric constant is numeric: 2 * 1.5 is 3.0, 5 / 2.0 is 2.5000000000000000.
    assert_eq!(
        eval(
            &op(col(0), Multiply, decimal("1.5")),
            &[oid::INT8],
            &[Some(int(2))]
        ),
        Ok((Some(text("3.0")), oid::NUMERIC))
    );
    assert_eq!(
        eval(
            &op(col(0), Divide, decimal("2.0")),
            &[oid::INT8],
            &[Some(int(5))]
        ),
        Ok((Some(text("2.5000000000000000")), oid::NUMERIC))
    );
    assert_eq!(
        numeric(text("1"), Divide, text("0.00")),
        Err(("22012".to_owned(), "division by zero".to_owned()))
    );
    assert_eq!(
        numeric(text("1"), Modulo, text("0")),
        Err(("22012".to_owned(), "division by zero".to_owned()))
    );
    assert_eq!(
        eval(
            &Finish::Negate(Box::new(col(0))),
            &[oid::NUMERIC],
            &[Some(text("0.00"))]
        ),
        Ok((Some(text("0.00")), oid::NUMERIC))
    );
    // Beyond 38 digits the proxy refuses rather than rounds; NaN is not computed with.
    let refused =
        |result: Result<Option<SqlValue>, (String, String)>| result.map_err(|(code, _)| code);
    assert_eq!(
        refused(numeric(
            text("99999999999999999999"),
            Multiply,
            text("99999999999999999999")
        )),
        Err("0A000".to_owned())
    );
    assert_eq!(
        refused(numeric(text("NaN"), Add, text("1"))),
        Err("0A000".to_owned())
    );
}

#[test]
fn floats_compute_in_their_precision_with_postgres_checks() {
    let float8 = |left: f64, o: ArithOp, right: f64| {
        eval(
            &op(col(0), o, col(1)),
            &[oid::FLOAT8, oid::FLOAT8],
            &[Some(SqlValue::Float(left)), Some(SqlValue::Float(right))],
        )
        .map(|(v, _)| v)
    };
    assert_eq!(
        float8(0.1, Add, 0.2),
        Ok(Some(SqlValue::Float(0.30000000000000004)))
    );
    assert_eq!(
        float8(1.0, Divide, 0.0),
        Err(("22012".to_owned(), "division by zero".to_owned()))
    );
    assert_eq!(
        float8(1e308, Multiply, 10.0),
        Err((
            "22003".to_owned(),
            "value out of range: overflow".to_owned()
        ))
    );
    assert_eq!(
        float8(1e-308, Multiply, 1e-308),
        Err((
            "22003".to_owned(),
            "value out of range: underflow".to_owned()
        ))
    );
    assert_eq!(
        float8(f64::INFINITY, Add, 1.0),
        Ok(Some(SqlValue::Float(f64::INFINITY)))
    );
    // real * integer is double precision: 1.5::real * 3 = 4.5.
    assert_eq!(
        eval(
            &op(col(0), Multiply, constant(3)),
            &[oid::FLOAT4],
            &[Some(SqlValue::Float(1.5))]
        ),
        Ok((Some(SqlValue::Float(4.5)), oid::FLOAT8))
    );
    // A numeric average times a double: double precision.
    assert_eq!(
        eval(
            &op(col(0), Multiply, cast(constant(2), "float8")),
            &[oid::NUMERIC],
            &[Some(text("2.5000000000000000"))]
        ),
        Ok((Some(SqlValue::Float(5.0)), oid::FLOAT8))
    );
}

#[test]
fn coalesce_nullif_and_casts_nest() {
    // COALESCE(sum(a), 0)::numeric / NULLIF(count(*), 0)
    let ratio = op(
        cast(Finish::Coalesce(vec![col(0), constant(0)]), "numeric"),
        Divide,
        Finish::NullIf(Box::new(col(1)), Box::new(constant(0))),
    );
    let types = [oid::INT8, oid::INT8];
    assert_eq!(
        eval(&ratio, &types, &[Some(int(11)), Some(int(4))]),
        Ok((Some(text("2.7500000000000000")), oid::NUMERIC))
    );
    assert_eq!(
        eval(&ratio, &types, &[None, Some(int(0))]),
        Ok((None, oid::NUMERIC))
    );
    // (sum(a) / count(*))::int4, with the range check of the cast.
    let narrowed = cast(op(col(0), Divide, col(1)), "int4");
    assert_eq!(
        eval(&narrowed, &types, &[Some(int(21)), Some(int(2))]),
        Ok((Some(int(10)), oid::INT4))
    );
    assert_eq!(
        eval(&narrowed, &types, &[Some(int(i64::MAX)), Some(int(1))]),
        error("22003", "integer out of range")
    );
    // COALESCE(sum(x), 0)::int: bigint, then integer.
    let finished = cast(Finish::Coalesce(vec![col(0), constant(0)]), "int");
    assert_eq!(
        eval(&finished, &[oid::INT8], &[None]),
        Ok((Some(int(0)), oid::INT4))
    );
    // COALESCE keeps the aggregate's type when it is the wider one, else takes the constant's.
    for (aggregate, constant, want) in [
        (oid::INT8, Constant::Int(0), oid::INT8),
        (oid::NUMERIC, Constant::Int(0), oid::NUMERIC),
        (oid::FLOAT8, Constant::Int(0), oid::FLOAT8),
        (oid::INT2, Constant::Int(0), oid::INT4),
        (oid::INT4, Constant::Int(3_000_000_000), oid::INT8),
        (oid::INT8, Constant::Numeric("0.5".to_owned()), oid::NUMERIC),
        (oid::INT8, Constant::Text("5".to_owned()), oid::INT8),
        (oid::TEXT, Constant::Text("none".to_owned()), oid::TEXT),
    ] {
        let coalesce = Finish::Coalesce(vec![col(0), Finish::Constant(constant.clone())]);
        let (_, ty) = eval(&coalesce, &[aggregate], &[None])
            .unwrap_or_else(|e| panic!("{aggregate} {constant:?}: {e:?}"));
        assert_eq!(ty, want, "{aggregate} {constant:?}");
    }
    // coalesce(avg(int), 0) is numeric: 0 prints as 0.
    assert_eq!(
        eval(
            &Finish::Coalesce(vec![col(0), constant(0)]),
            &[oid::NUMERIC],
            &[None]
        ),
        Ok((Some(text("0")), oid::NUMERIC))
    );
    // What Postgres refuses when planning, and casts the proxy does not do.
    let code = |aggregate: u32, finish: Finish| {
        eval(&finish, &[aggregate], &[None])
            .map(|_| ())
            .map_err(|(code, _)| code)
    };
    let text_constant = Finish::Constant(Constant::Text("abc".to_owned()));
    assert_eq!(
        code(oid::INT8, Finish::Coalesce(vec![col(0), text_constant])),
        Err("22P02".to_owned())
    );
    assert_eq!(
        code(oid::TEXT, Finish::Coalesce(vec![col(0), constant(0)])),
        Err("42804".to_owned())
    );
    assert_eq!(
        code(oid::BOOL, cast(col(0), "int8")),
        Err("0A000".to_owned())
    );
    assert_eq!(
        code(oid::DATE, cast(col(0), "int4")),
        Err("0A000".to_owned())
    );
    assert_eq!(
        code(oid::INT8, cast(col(0), "varchar(3)")),
        Err("0A000".to_owned())
    );
    // numeric(10,2) is described with its typmod.
    let columns = [column(oid::INT8)];
    let resolved = resolve(&cast(col(0), "numeric(10,2)"), &columns).expect("numeric");
    assert_eq!(resolved.ty.typmod, (10 << 16 | 2) + 4);
    // NULLIF compares across types by value and keeps the first argument's type.
    let nullif = |left: Finish, right: Finish, row: SqlValue| {
        eval(
            &Finish::NullIf(Box::new(left), Box::new(right)),
            &[oid::NUMERIC],
            &[Some(row)],
        )
    };
    assert_eq!(
        nullif(col(0), constant(2), text("2.00")),
        Ok((None, oid::NUMERIC))
    );
    assert_eq!(
        nullif(col(0), constant(2), text("2.5")),
        Ok((Some(text("2.5")), oid::NUMERIC))
    );
}
