//! Merge plans of aggregate queries whose output columns compute something from the
//! aggregates: what each node runs, and the expression the proxy evaluates over the merged values.

use crate::*;

fn check(sql: &str, node_sql: &str, finish: Vec<Option<Finish>>) -> MergeSpec {
    let spec = merge_spec(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    assert_eq!(spec.node_sql.as_deref(), Some(node_sql), "{sql}");
    assert_eq!(spec.finish, finish, "{sql}");
    spec
}

fn col(i: usize) -> Box<Finish> {
    Box::new(Finish::Column(i))
}

fn int(i: i64) -> Box<Finish> {
    Box::new(Finish::Constant(Constant::Int(i)))
}

fn cast(inner: Box<Finish>, ty: &str) -> Finish {
    Finish::Cast(inner, ty.to_owned())
}

fn coalesce(inner: Finish, constant: Constant) -> Finish {
    Finish::Coalesce(vec![inner, Finish::Constant(constant)])
}

fn refused(sql: &str) {
    assert!(
        matches!(merge_spec(sql), Err(RouterError::Unsupported(_))),
        "{sql}"
    );
}

#[test]
fn casts_and_coalesce_around_aggregates_are_applied_after_the_merge() {
    check(
        "SELECT sum(x)::int8 FROM users",
        "SELECT sum(x) AS sum FROM users",
        vec![Some(cast(col(0), "int8"))],
    );
    check(
        "SELECT count(*)::int, CAST(count(*) AS integer) AS n, COALESCE(sum(x), 0) FROM users",
        "SELECT count(*) AS count, count(*) AS n, sum(x) AS coalesce FROM users",
        vec![
            Some(cast(col(0), "int")),
            Some(cast(col(1), "integer")),
            Some(coalesce(*col(2), Constant::Int(0))),
        ],
    );
    // Nested both ways.
    check(
        "SELECT COALESCE(sum(x), 0)::int, COALESCE(sum(x)::int8, 0), (max(x))::smallint, \
         (min(x)) FROM users",
        "SELECT sum(x) AS coalesce, sum(x) AS coalesce, max(x) AS max, min(x) AS min FROM users",
        vec![
            Some(cast(Box::new(coalesce(*col(0), Constant::Int(0))), "int")),
            Some(coalesce(cast(col(1), "int8"), Constant::Int(0))),
            Some(cast(col(2), "smallint")),
            None,
        ],
    );
    // The type as written, modifiers included, for the proxy to resolve.
    check(
        "SELECT sum(x)::numeric(10,2), sum(x)::double precision, sum(x)::real, \
         sum(x)::decimal, sum(x)::bigint, sum(x)::text, pg_catalog.sum(x)::pg_catalog.int4 \
         FROM users",
        "SELECT sum(x) AS sum, sum(x) AS sum, sum(x) AS sum, sum(x) AS sum, sum(x) AS sum, \
         sum(x) AS sum, pg_catalog.sum(x) AS sum FROM users",
        vec![
            Some(cast(col(0), "numeric(10,2)")),
            Some(cast(col(1), "double precision")),
            Some(cast(col(2), "real")),
            Some(cast(col(3), "decimal")),
            Some(cast(col(4), "bigint")),
            Some(cast(col(5), "text")),
            Some(cast(col(6), "pg_catalog.int4")),
        ],
    );
    // Constants typed as Postgres types them.
    check(
        "SELECT COALESCE(sum(x), -1), COALESCE(sum(x), 3000000000), COALESCE(sum(x), 0.5), \
         COALESCE(sum(x), 99999999999999999999), COALESCE(min(name), 'none') FROM users",
        "SELECT sum(x) AS coalesce, sum(x) AS coalesce, sum(x) AS coalesce, sum(x) AS coalesce, \
         min(name) AS coalesce FROM users",
        vec![
            Some(coalesce(*col(0), Constant::Int(-1))),
            Some(coalesce(*col(1), Constant::Int(3_000_000_000))),
            Some(coalesce(*col(2), Constant::Numeric("0.5".to_owned()))),
            Some(coalesce(
                *col(3),
                Constant::Numeric("99999999999999999999".to_owned()),
            )),
            Some(coalesce(*col(4), Constant::Text("none".to_owned()))),
        ],
    );
    // avg and count(DISTINCT ...) keep their partial forms, named after the column.
    let spec = check(
        "SELECT name, COALESCE(avg(x), 0)::numeric(10,2) AS a, count(DISTINCT x)::int \
         FROM users GROUP BY name ORDER BY a DESC, 3",
        "SELECT name, sum(x) AS a, x AS count, count(x) FROM users GROUP BY name, x",
        vec![
            None,
            Some(cast(
                Box::new(coalesce(*col(1), Constant::Int(0))),
                "numeric(10,2)",
            )),
            Some(cast(col(2), "int")),
        ],
    );
    assert_eq!(
        spec.aggregates,
        Some(vec![
            Combine::Group,
            Combine::Avg { count_column: 3 },
            Combine::CountDistinct,
            Combine::Count
        ])
    );
    assert_eq!(
        spec.order_by
            .iter()
            .map(|k| (k.column.clone(), k.descending))
            .collect::<Vec<_>>(),
        vec![(SortColumn::Index(1), true), (SortColumn::Index(2), false)]
    );
    // HAVING reads the bare aggregate, which the wrapped column now carries.
    let spec = merge_spec(
        "SELECT name, sum(x)::int8 FROM users GROUP BY name HAVING sum(x) > 1 ORDER BY 2",
    )
    .expect("having");
    assert_eq!(
        spec.having,
        Some(Having::Compare {
            left: HavingOperand::Column(1),
            op: CompareOp::Gt,
            right: HavingOperand::Int(1)
        })
    );
    assert_eq!(spec.hidden_columns, 0);
    // Queries without an expression carry none.
    assert!(
        merge_spec("SELECT count(*) FROM users")
            .expect("plain")
            .finish
            .is_empty()
    );
}

#[test]
fn arithmetic_over_aggregates_runs_on_merged_values() {
    use ArithOp::{Add, Divide, Modulo, Multiply, Subtract};
    let arith = |l: Box<Finish>, op, r: Box<Finish>| Finish::Arithmetic(l, op, r);
    // The column carries its first aggregate; the others are hidden columns after the
    // client's. Postgres names an operator's column "?column?".
    let spec = check(
        "SELECT sum(a) / count(*) FROM users",
        "SELECT sum(a) AS \"?column?\", count(*) FROM users",
        vec![Some(arith(col(0), Divide, col(1)))],
    );
    assert_eq!(spec.aggregates, Some(vec![Combine::Sum, Combine::Count]));
    assert_eq!(spec.hidden_columns, 1);
    check(
        "SELECT count(*) + 1, avg(x) * 2, max(x) - min(x) AS spread, -sum(x), count(*) % 3 \
         FROM users",
        "SELECT count(*) AS \"?column?\", sum(x) AS \"?column?\", max(x) AS spread, \
         sum(x) AS \"?column?\", count(*) AS \"?column?\", min(x), count(x) FROM users",
        vec![
            Some(arith(col(0), Add, int(1))),
            Some(arith(col(1), Multiply, int(2))),
            Some(arith(col(2), Subtract, col(5))),
            Some(Finish::Negate(col(3))),
            Some(arith(col(4), Modulo, int(3))),
        ],
    );
    // An aggregate the query computes already is read from its column.
    let spec = check(
        "SELECT g, sum(a), sum(a) * 100 / sum(b) FROM users GROUP BY g",
        "SELECT g, sum(a), sum(a) AS \"?column?\", sum(b) FROM users GROUP BY g",
        vec![
            None,
            None,
            Some(arith(
                Box::new(arith(col(2), Multiply, int(100))),
                Divide,
                col(3),
            )),
        ],
    );
    assert_eq!(
        spec.aggregates,
        Some(vec![
            Combine::Group,
            Combine::Sum,
            Combine::Sum,
            Combine::Sum
        ])
    );
    check(
        "SELECT count(*), sum(a) / count(*) FROM users",
        "SELECT count(*), sum(a) AS \"?column?\" FROM users",
        vec![None, Some(arith(col(1), Divide, col(0)))],
    );
    // Nested: casts, COALESCE, NULLIF, numeric constants; a cast names the column after
    // its type when what it casts has no name.
    check(
        "SELECT COALESCE(sum(a), 0)::numeric / NULLIF(count(*), 0) AS ratio, \
         (sum(a) / count(*))::int8, sum(a) * 1.5, NULLIF(max(a), 0) FROM users",
        "SELECT sum(a) AS ratio, sum(a) AS int8, sum(a) AS \"?column?\", max(a) AS nullif, \
         count(*) FROM users",
        vec![
            Some(arith(
                Box::new(cast(
                    Box::new(coalesce(*col(0), Constant::Int(0))),
                    "numeric",
                )),
                Divide,
                Box::new(Finish::NullIf(col(4), int(0))),
            )),
            Some(cast(Box::new(arith(col(1), Divide, col(4))), "int8")),
            Some(arith(
                col(2),
                Multiply,
                Box::new(Finish::Constant(Constant::Numeric("1.5".to_owned()))),
            )),
            Some(Finish::NullIf(col(3), int(0))),
        ],
    );
    // COALESCE of several aggregates.
    check(
        "SELECT coalesce(sum(x), count(*), 0) FROM users",
        "SELECT sum(x) AS coalesce, count(*) FROM users",
        vec![Some(Finish::Coalesce(vec![
            Finish::Column(0),
            Finish::Column(1),
            Finish::Constant(Constant::Int(0)),
        ]))],
    );
    // avg and count(DISTINCT ...) as hidden operands keep their partial forms.
    let spec = check(
        "SELECT g, max(x) - avg(x), count(DISTINCT y) * 2 FROM users GROUP BY g",
        "SELECT g, max(x) AS \"?column?\", y AS \"?column?\", sum(x) AS avg, count(x) FROM users \
         GROUP BY g, y",
        vec![
            None,
            Some(arith(col(1), Subtract, col(3))),
            Some(arith(col(2), Multiply, int(2))),
        ],
    );
    assert_eq!(
        spec.aggregates,
        Some(vec![
            Combine::Group,
            Combine::Max,
            Combine::CountDistinct,
            Combine::Avg { count_column: 4 },
            Combine::Count
        ])
    );
    assert_eq!(spec.hidden_columns, 2);
}

#[test]
fn having_computes_expressions_over_merged_values() {
    use ArithOp::{Divide, Multiply};
    let spec = check(
        "SELECT g, sum(a) / count(*) FROM users GROUP BY g HAVING sum(a) / count(*) > 3 \
         AND max(a) * 2 < 100",
        "SELECT g, sum(a) AS \"?column?\", count(*), max(a) FROM users GROUP BY g",
        vec![None, Some(Finish::Arithmetic(col(1), Divide, col(2)))],
    );
    assert_eq!(
        spec.having,
        Some(Having::And(
            Box::new(Having::Compare {
                left: HavingOperand::Expr(Finish::Arithmetic(col(1), Divide, col(2))),
                op: CompareOp::Gt,
                right: HavingOperand::Int(3)
            }),
            Box::new(Having::Compare {
                left: HavingOperand::Expr(Finish::Arithmetic(col(3), Multiply, int(2))),
                op: CompareOp::Lt,
                right: HavingOperand::Int(100)
            })
        ))
    );
    assert_eq!(spec.hidden_columns, 2);
    // avg the query does not select stays refused in HAVING, inside an expression too.
    refused("SELECT g, count(*) FROM users GROUP BY g HAVING avg(x) * 2 > 1");
}

#[test]
fn other_expressions_around_aggregates_are_still_refused() {
    for sql in [
        // A plain column or another function inside the expression.
        "SELECT sum(a) + x FROM users",
        "SELECT round(avg(x)) FROM users",
        "SELECT abs(sum(x)) FROM users",
        "SELECT sum(x) + '1' FROM users",
        "SELECT sum(x) || 'a' FROM users",
        "SELECT coalesce(sum(x), NULL) FROM users",
        "SELECT nullif(sum(x), 1, 2) FROM users",
        "SELECT g + 1, count(*) FROM users GROUP BY g",
        "SELECT stddev(x) * 2 FROM users",
        "SELECT sum(x)::varchar FROM users",
        "SELECT CASE WHEN count(*) > 0 THEN 1 END FROM users",
        "SELECT g, count(*) + 1 FROM users",
    ] {
        refused(sql);
    }
}
