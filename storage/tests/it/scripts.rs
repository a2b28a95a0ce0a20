//! The statements of the end-to-end psql scripts (tests/sql/*.sql at the repository root),
//! run straight against the backend, with the lines PostgreSQL 15 prints for them.

use crate::util::*;

/// Runs each statement; rows are printed as `psql -A -t` does (`|`-separated, NULL empty).
async fn script(statements: &[&str]) -> Vec<String> {
    let db = open();
    let mut s = db.backend.session();
    let mut lines = Vec::new();
    for sql in statements {
        let out = match run(&mut s, sql).await {
            Ok(out) => out,
            Err(e) => panic!("{sql}: {e:?}"),
        };
        for row in out.text() {
            lines.push(
                row.into_iter()
                    .map(Option::unwrap_or_default)
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    lines
}

#[tokio::test]
async fn datetime_arithmetic() {
    let lines = script(&[
        "CREATE TABLE stamps (id integer PRIMARY KEY, ts timestamp NOT NULL, tstz timestamptz NOT NULL, d date NOT NULL, created timestamptz NOT NULL DEFAULT now())",
        "INSERT INTO stamps (id, ts, tstz, d) VALUES (1, '2024-01-31 10:00:00', '2024-01-31 10:00:00-05', '2024-02-28'), (2, '2023-12-31 23:59:59.5', '2024-03-10 00:00:00+00', '2024-03-01')",
        "SELECT 'date-arith', id, d + 1, d - 1, d - date '2024-01-01' FROM stamps ORDER BY id",
        "SELECT 'interval', id, ts + interval '1 day 2 hours', tstz - interval '30 minutes', ts + interval '1 month' FROM stamps ORDER BY id",
        "SELECT 'extract', id, extract(year FROM ts)::int, extract(month FROM d)::int, extract(hour FROM tstz)::int FROM stamps ORDER BY id",
        "SELECT 'trunc', id, date_trunc('month', ts), date_trunc('hour', tstz) FROM stamps ORDER BY id",
        "SELECT 'casts', id, ts::date, tstz::date, d::timestamp FROM stamps ORDER BY id",
        "SELECT 'now', count(*) FROM stamps WHERE created > now() - interval '1 hour' AND created <= now()",
        "SELECT 'diff', tstz - ts FROM stamps WHERE id = 1",
        "SELECT 'between', id FROM stamps WHERE ts BETWEEN '2024-01-01' AND '2024-02-01' ORDER BY id",
    ])
    .await;
    assert_eq!(
        lines,
        [
            "date-arith|1|2024-02-29|2024-02-27|58",
            "date-arith|2|2024-03-02|2024-02-29|60",
            "interval|1|2024-02-01 12:00:00|2024-01-31 14:30:00+00|2024-02-29 10:00:00",
            "interval|2|2024-01-02 01:59:59.5|2024-03-09 23:30:00+00|2024-01-31 23:59:59.5",
            "extract|1|2024|2|15",
            "extract|2|2023|3|0",
            "trunc|1|2024-01-01 00:00:00|2024-01-31 15:00:00+00",
            "trunc|2|2023-12-01 00:00:00|2024-03-10 00:00:00+00",
            "casts|1|2024-01-31|2024-01-31|2024-02-28 00:00:00",
            "casts|2|2023-12-31|2024-03-10|2024-03-01 00:00:00",
            "now|2",
            "diff|05:00:00",
            "between|1",
        ]
    );
}

#[tokio::test]
async fn jsonb_operators() {
    let lines = script(&[
        "CREATE TABLE docs (id integer PRIMARY KEY, body jsonb NOT NULL)",
        r#"INSERT INTO docs VALUES (1, '{"name": "ann", "tags": ["a", "b"], "age": 31, "addr": {"city": "Oslo"}}'), (2, '{"name": "bob", "tags": [], "age": null}'), (3, '[1, "two", 3.5]')"#,
        "SELECT 'arrow', id, body -> 'name', body ->> 'name', body -> 'addr' ->> 'city' FROM docs WHERE id < 3 ORDER BY id",
        "SELECT 'path', body #>> '{addr,city}', body #> '{tags,1}' FROM docs WHERE id = 1",
        "SELECT 'index', body -> 1, body ->> 2 FROM docs WHERE id = 3",
        "SELECT 'exists', id FROM docs WHERE body ? 'addr' ORDER BY id",
        r#"SELECT 'contains', id FROM docs WHERE body @> '{"name": "bob"}' ORDER BY id"#,
        "SELECT 'typeof', id, jsonb_typeof(body), jsonb_typeof(body -> 'age') FROM docs ORDER BY id",
        "SELECT 'length', jsonb_array_length(body -> 'tags') FROM docs WHERE id = 1",
        r#"SELECT 'build', jsonb_build_object('k', 1, 'v', 'x'), '{"a": 1}'::jsonb || '{"b": 2}'::jsonb"#,
        r#"SELECT 'eq', '{"a": 1, "b": 2}'::jsonb = '{"b": 2, "a": 1}'::jsonb"#,
        "UPDATE docs SET body = jsonb_set(body, '{age}', '32') WHERE id = 1",
        "SELECT 'set', body ->> 'age' FROM docs WHERE id = 1",
    ])
    .await;
    assert_eq!(
        lines,
        [
            r#"arrow|1|"ann"|ann|Oslo"#,
            r#"arrow|2|"bob"|bob|"#,
            r#"path|Oslo|"b""#,
            r#"index|"two"|3.5"#,
            "exists|1",
            "contains|2",
            "typeof|1|object|number",
            "typeof|2|object|null",
            "typeof|3|array|",
            "length|2",
            r#"build|{"k": 1, "v": "x"}|{"a": 1, "b": 2}"#,
            "eq|t",
            "set|32",
        ]
    );
}

#[tokio::test]
async fn numeric_scale_and_json_spacing() {
    let lines = script(&[
        "CREATE TABLE items (id serial PRIMARY KEY, qty integer, price numeric(10,2), weight double precision, attrs jsonb)",
        r#"INSERT INTO items (qty, price, weight, attrs) VALUES (3, 7.999, -1.5e-3, '{"color": "red", "tags": ["fruit", "fresh"]}')"#,
        "SELECT 'numeric', price, price * 2, qty * price, weight FROM items",
        "SELECT 'json', attrs ->> 'color', attrs -> 'tags' ->> 1, attrs -> 'tags' FROM items",
        "SELECT 'casts', '1'::int, '1'::int + 1, CAST('42' AS bigint), '2.5'::double precision * 2, 'true'::boolean, 12::text || 'x', '2024-02-29'::date, 3.7::int, '7.125'::numeric(10,2), '{\"b\":1,\"a\":[true,null]}'::jsonb",
        "SELECT 'sum', sum(price), 1.50, price + 1 FROM items GROUP BY price",
    ])
    .await;
    assert_eq!(
        lines,
        [
            "numeric|8.00|16.00|24.00|-0.0015",
            r#"json|red|fresh|["fruit", "fresh"]"#,
            r#"casts|1|2|42|5|t|12x|2024-02-29|4|7.13|{"a": [true, null], "b": 1}"#,
            "sum|8.00|1.50|9.00",
        ]
    );
}

/// The statements of a script file, split at `;` line ends, comments dropped.
fn statements_of(path: &str) -> Vec<String> {
    let text =
        std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("--") || line.trim().is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            statements.push(
                std::mem::take(&mut current)
                    .trim()
                    .trim_end_matches(';')
                    .to_owned(),
            );
        }
    }
    statements
}

#[tokio::test]
async fn basics_script() {
    let statements = statements_of("tests/sql/basics.sql");
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    let lines = script(&refs).await;
    assert_eq!(
        lines,
        [
            r#"row|1|A-1|apple|10|9000000000|t|0.25|12.50|2024-01-02 03:04:05|2024-01-02 01:04:05+00|2024-12-31|\xdeadbeef|{"tags": ["fruit", "fresh"], "color": "red"}|a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|none"#,
            "defaults|2|0|t|t|none|t|t|t|t",
            "numeric|8.00|16.00|24.00|-0.0015",
            "where|cheese",
            r#"json|red|fresh|["fruit", "fresh"]"#,
            "bytea|4|t",
            "dates|2024-01-02|2024-01-02|t|f",
            r#"casts|1|2|42|5|t|12x|2024-02-29|4|7.13|{"a": [true, null], "b": 1}"#,
            "after|A-1|15|t|restocked",
            "after|B-2|0|f|none",
            "count|2|15|apple|9000000000",
            "serial|4",
            "bigserial|1|start|2000-01-01",
            "bigserial|2|stop|2030-06-15",
            "bigserial|10000000000|far|2000-01-01",
            "group|f|1|0",
            "group|t|2|16",
            "limit|D-4",
            "limit|B-2",
            "nulls|none|t|t",
            "recreated|0",
        ]
    );
}
