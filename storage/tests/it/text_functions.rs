//! String, number and binary functions and operators SQLite lacks or spells differently, on a
//! SQLite node. Every expected value and SQLSTATE is PostgreSQL 15's answer to the same query.

use crate::util::*;

#[tokio::test]
async fn string_functions_answer_as_postgres() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(
        &mut s,
        "SELECT translate('12345', '143', 'ax'), starts_with('hello', 'he'), \
         starts_with('hello', 'lo'), quote_nullable(NULL), quote_nullable(42), \
         quote_nullable('it''s'), bit_length('héllo'), num_nulls(1, NULL, NULL), \
         num_nonnulls(1, NULL, 2)",
    )
    .await;
    assert_eq!(out.lines(), ["a2x5|t|f|NULL|'42'|'it''s'|48|2|2"]);
    assert_eq!(out.oids(), [25, 16, 16, 25, 25, 25, 23, 23, 23]);

    // SQLite's own format() is C's printf: it printed `x is ` for this and dropped the rest.
    let out = ok(
        &mut s,
        "SELECT format('%s is %L and %I', 'x', 'it''s', 'Col'), format('|%5s|%-5s|', 'a', 'b'), \
         format('%1$s %1$s', 'a'), format('%s %s %L', true, 2.50::numeric(4,2), NULL), \
         concat(1.50::numeric(5,2), 'x'), 1.50::numeric(5,2) || 'x', \
         concat_ws(',', 2.50::numeric(4,2), false)",
    )
    .await;
    assert_eq!(
        out.lines(),
        ["x is 'it''s' and \"Col\"||    a|b    ||a a|t 2.50 NULL|1.50x|1.50x|2.50,f"]
    );

    let out = ok(
        &mut s,
        "SELECT 'abc' SIMILAR TO 'a%', 'abc' SIMILAR TO '(a|b)c', 'a.c' SIMILAR TO 'a.c', \
         'abc' NOT SIMILAR TO '%c', 'a_c' SIMILAR TO 'a#_c' ESCAPE '#', \
         'abbc' SIMILAR TO 'a[b-c]+', NULL SIMILAR TO 'a'",
    )
    .await;
    assert_eq!(out.lines(), ["t|f|t|f|t|t|"]);

    let out = ok(
        &mut s,
        "SELECT overlay('Txxxxas' placing 'hom' from 2 for 4), \
         overlay('Txxxxas' placing 'hom' from 2), overlay('abc' placing 'X' from 2 for -1)",
    )
    .await;
    assert_eq!(out.lines(), ["Thomas|Thomxas|aXabc"]);

    for (sql, code) in [
        ("SELECT format('%s %s', 'a')", "22023"),
        ("SELECT format('%I', NULL)", "22004"),
        ("SELECT overlay('abc' placing 'X' from 0)", "22011"),
        ("SELECT 'a' SIMILAR TO 'a' ESCAPE 'xy'", "22025"),
    ] {
        assert_eq!(err(&mut s, sql).await.code, code, "{sql}");
    }
}

#[tokio::test]
async fn number_functions_and_operators_answer_as_postgres() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(
        &mut s,
        "SELECT div(-17, 5), div(17.9, 5), gcd(-12, 18), lcm(4, 6), lcm(0, 5), factorial(25), \
         to_hex(255), to_hex(-1), to_hex(-1::bigint), width_bucket(5.35, 0.024, 10.06, 5), \
         width_bucket(-1, 0, 10, 5), width_bucket(5, 10, 0, 5)",
    )
    .await;
    assert_eq!(
        out.lines(),
        ["-3|3|6|12|0|15511210043330985984000000|ff|ffffffff|ffffffffffffffff|3|0|3"]
    );
    // SQLite has none of `|/`, `@` and `#`: the statement failed with a syntax error.
    let out = ok(&mut s, "SELECT |/ 25.0, @ -5, @ -2.5, 5 # 3").await;
    assert_eq!(out.lines(), ["5|5|2.5|6"]);
    assert_eq!(out.oids(), [701, 23, 1700, 23]);
    let out = ok(
        &mut s,
        "SELECT 5 & 3, 5 | 3, 1 << 4, 8::int8 >> 1, 2::int2 # 3::int2",
    )
    .await;
    assert_eq!(out.lines(), ["1|7|16|4|1"]);
    assert_eq!(out.oids(), [23, 23, 23, 20, 21]);
    let out = ok(
        &mut s,
        "SELECT pg_typeof(div(17, 5)), pg_typeof(gcd(12::bigint, 18)), pg_typeof(factorial(3)), \
         pg_typeof(width_bucket(1, 0, 2, 2)), pg_typeof(|/ 4), pg_typeof(@ -2)",
    )
    .await;
    assert_eq!(
        out.lines(),
        ["numeric|bigint|numeric|integer|double precision|integer"]
    );
    // Unary minus binds tighter than `^` in Postgres; the parser read -(2 ^ 2).
    let out = ok(
        &mut s,
        "SELECT -2 ^ 2, -2 ^ 3 ^ 2, - (2 ^ 2), '9223372036854775807'::numeric::bigint, \
         -9223372036854775808",
    )
    .await;
    assert_eq!(
        out.lines(),
        ["4|64|-4|9223372036854775807|-9223372036854775808"]
    );
    for (sql, code) in [
        // 2^63 became i64::MAX (and, negated, -9223372036854775807) instead of failing.
        ("SELECT 9223372036854775808::bigint", "22003"),
        ("SELECT -9223372036854775808::bigint", "22003"),
        ("SELECT gcd(-9223372036854775808, 0)", "22003"),
        ("SELECT factorial(-1)", "22003"),
        ("SELECT width_bucket(1, 0, 0, 5)", "2201G"),
        ("SELECT div(1, 0)", "22012"),
    ] {
        assert_eq!(err(&mut s, sql).await.code, code, "{sql}");
    }
}

#[tokio::test]
async fn binary_encodings_and_digests_answer_as_postgres() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(
        &mut s,
        "SELECT encode('hello'::bytea, 'base64'), decode('aGVsbG8=', 'base64'), \
         encode('\\x00ff5c'::bytea, 'escape'), decode('\\\\001abc', 'escape'), \
         encode(sha256('abc'), 'hex'), sha224('abc'), length(sha512('abc')), \
         encode('hi'::bytea, 'hex'), decode('6869', 'hex')",
    )
    .await;
    assert_eq!(
        out.lines(),
        ["aGVsbG8=|\\x68656c6c6f|\\000\\377\\\\|\\x5c303031616263|\
             ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad|\
             \\x23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7|64|6869|\\x6869"]
    );
    assert_eq!(out.oids(), [25, 17, 25, 17, 25, 17, 23, 25, 17]);
    for sql in [
        "SELECT decode('abc', 'hex')",
        "SELECT encode('a'::bytea, 'rot13')",
    ] {
        assert_eq!(err(&mut s, sql).await.code, "22023", "{sql}");
    }
}
