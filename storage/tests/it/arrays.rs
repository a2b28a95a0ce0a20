//! Arrays on SQLite nodes: literals, casts, subscripts, `unnest` and `generate_subscripts` in
//! select lists, `array_agg`, `= ANY(array)`, and the catalog queries SQLAlchemy 2 reflects
//! keys and indexes with (over `int2vector` and `oidvector` columns). Expected values are
//! what Postgres 15 answers.

use crate::util::*;

fn rows(expected: &[&[&str]]) -> Vec<Vec<Option<String>>> {
    expected
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| (*v != "NULL").then(|| (*v).to_owned()))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn array_values_print_and_type_as_postgres() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(
        &mut s,
        "SELECT ARRAY[1, 2, 3] AS a, '{x,\"y z\",NULL}'::text[] AS b, ARRAY['t', 'f']::bool[] AS c, \
           '1 2'::int2vector AS d, '1 2'::int2vector::int2[] AS e, ARRAY[]::int8[] AS f",
    )
    .await;
    assert_eq!(out.oids(), vec![1007, 1009, 1000, 22, 1005, 1016]);
    assert_eq!(
        out.text(),
        rows(&[&[
            "{1,2,3}",
            "{x,\"y z\",NULL}",
            "{t,f}",
            "1 2",
            "[0:1]={1,2}",
            "{}"
        ]])
    );
    let out = ok(
        &mut s,
        "SELECT (ARRAY[10, 20])[2], ('{a,b}'::text[])[3], ('5 6'::int2vector)[0], \
           array_length(ARRAY[1, 2], 1), array_lower('7 8'::int2vector, 1), \
           array_upper(ARRAY['a'], 1), cardinality(ARRAY[1, 2, 3]), \
           array_to_string(ARRAY['a', NULL, 'c'], '-'), array_to_string(ARRAY['a', NULL], ',', '*')",
    )
    .await;
    assert_eq!(
        out.text(),
        rows(&[&["20", "NULL", "5", "2", "0", "1", "3", "a-c", "a,*"]])
    );
    // Numbers of several types make an array of the widest.
    let out = ok(&mut s, "SELECT ARRAY[0, 0.5], ARRAY[1::int2, 3::bigint]").await;
    assert_eq!(out.oids(), vec![1231, 1016]);
    assert_eq!(out.lines(), ["{0,0.5}|{1,3}"]);
    let e = err(&mut s, "SELECT '{1,x}'::int[]").await;
    assert_eq!(e.code, "22P02");
    let e = err(&mut s, "SELECT '{1,2'::int[]").await;
    assert_eq!(e.code, "22P02");
    assert_eq!(e.message, "malformed array literal: \"{1,2\"");
}

#[tokio::test]
async fn set_returning_functions_run_in_lockstep() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(
        &mut s,
        "SELECT unnest('{1,2,3}'::int[]) AS a, generate_subscripts('{x,y}'::text[], 1) AS s",
    )
    .await;
    assert_eq!(out.oids(), vec![23, 23]);
    assert_eq!(
        out.text(),
        rows(&[&["1", "1"], &["2", "2"], &["3", "NULL"]])
    );
    ok(&mut s, "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
    ok(&mut s, "INSERT INTO t VALUES (1, 'a'), (2, 'b')").await;
    // Once per input row, after WHERE; ORDER BY sees the expanded rows; `*` keeps its columns.
    let out = ok(
        &mut s,
        "SELECT *, unnest(ARRAY[id, id * 10]) AS x, generate_subscripts(ARRAY[v], 1, true) AS r \
         FROM t WHERE id > 0 ORDER BY x DESC",
    )
    .await;
    assert_eq!(out.names(), vec!["id", "v", "x", "r"]);
    assert_eq!(
        out.text(),
        rows(&[
            &["2", "b", "20", "NULL"],
            &["1", "a", "10", "NULL"],
            &["2", "b", "2", "1"],
            &["1", "a", "1", "1"],
        ])
    );
    // int2vector subscripts start at 0.
    let out = ok(
        &mut s,
        "SELECT generate_subscripts('3 1 2'::int2vector, 1), unnest('3 1 2'::int2vector)",
    )
    .await;
    assert_eq!(out.oids(), vec![23, 21]);
    assert_eq!(out.text(), rows(&[&["0", "3"], &["1", "1"], &["2", "2"]]));
    let e = err(&mut s, "SELECT id FROM t WHERE unnest(ARRAY[id]) = 1").await;
    assert_eq!(e.code, "0A000");
}

#[tokio::test]
async fn array_agg_and_any_over_arrays() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE t (id int PRIMARY KEY, g int, v text, b bool)",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO t VALUES (1, 1, 'x', true), (2, 1, 'a b', false), (3, 2, NULL, true)",
    )
    .await;
    let out = ok(
        &mut s,
        "SELECT g, array_agg(v ORDER BY id DESC), array_agg(b ORDER BY id), array_agg(id) \
         FROM t GROUP BY g ORDER BY g",
    )
    .await;
    assert_eq!(out.oids(), vec![23, 1009, 1000, 1007]);
    assert_eq!(
        out.text(),
        rows(&[
            &["1", "{\"a b\",x}", "{t,f}", "{1,2}"],
            &["2", "{NULL}", "{t}", "{3}"],
        ])
    );
    let out = ok(&mut s, "SELECT array_agg(id) FROM t WHERE id > 5").await;
    assert_eq!(out.text(), rows(&[&["NULL"]]));
    let out = ok(
        &mut s,
        "SELECT id FROM t WHERE id = ANY('{1,3}'::int[]) AND v <> ALL(ARRAY['a b']) ORDER BY id",
    )
    .await;
    assert_eq!(out.text(), rows(&[&["1"]]));
    // Postgres's three-valued answers: NULL when no element matches and one is NULL.
    let out = ok(
        &mut s,
        "SELECT 1 = ANY('{1,NULL}'::int[]), 2 = ANY('{1,NULL}'::int[]), 2 = ANY('{1}'::int[]), \
           NULL::int = ANY('{1}'::int[]), 1 = ANY('{}'::int[])",
    )
    .await;
    assert_eq!(out.text(), rows(&[&["t", "NULL", "f", "NULL", "f"]]));
    let e = err(&mut s, "SELECT array_agg(DISTINCT v) FROM t").await;
    assert_eq!(e.code, "0A000");
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE authors (id serial PRIMARY KEY, email text UNIQUE, name text NOT NULL)",
    "CREATE TABLE books (id bigint PRIMARY KEY, \
       author_id int NOT NULL REFERENCES authors(id) ON DELETE CASCADE, \
       title varchar(20), UNIQUE (author_id, title))",
    "CREATE INDEX books_title_idx ON books (title)",
];

/// SQLAlchemy 2.0's `_constraint_query` (primary keys with contype 'p', unique constraints
/// with 'u'), as its psycopg dialect sends it for Postgres 15.
const CONSTRAINT_QUERY: &str = "SELECT attr.conrelid, array_agg(CAST(attr.attname AS TEXT) ORDER BY attr.ord) AS cols, attr.conname, min(attr.description) AS description, min(attr.indnkeyatts) AS indnkeyatts, bool_and(attr.indnullsnotdistinct) AS indnullsnotdistinct \
FROM (SELECT con.conrelid AS conrelid, con.conname AS conname, con.description AS description, con.ord AS ord, con.indnkeyatts AS indnkeyatts, con.indnullsnotdistinct AS indnullsnotdistinct, pg_catalog.pg_attribute.attname AS attname \
FROM pg_catalog.pg_attribute JOIN (SELECT pg_catalog.pg_constraint.conrelid AS conrelid, pg_catalog.pg_constraint.conname AS conname, unnest(pg_catalog.pg_index.indkey) AS attnum, generate_subscripts(pg_catalog.pg_index.indkey, $1::INTEGER) AS ord, pg_catalog.pg_index.indnkeyatts AS indnkeyatts, pg_catalog.pg_index.indnullsnotdistinct AS indnullsnotdistinct, pg_catalog.pg_description.description AS description \
FROM pg_catalog.pg_constraint JOIN pg_catalog.pg_index ON pg_catalog.pg_constraint.conindid = pg_catalog.pg_index.indexrelid LEFT OUTER JOIN pg_catalog.pg_description ON pg_catalog.pg_description.objoid = pg_catalog.pg_constraint.oid AND pg_catalog.pg_description.classoid = CAST($2 AS REGCLASS) \
WHERE pg_catalog.pg_constraint.contype = $3::VARCHAR AND pg_catalog.pg_constraint.conrelid IN ($4, $5)) AS con ON pg_catalog.pg_attribute.attnum = con.attnum AND pg_catalog.pg_attribute.attrelid = con.conrelid \
WHERE con.conrelid IN ($4, $5)) AS attr GROUP BY attr.conrelid, attr.conname ORDER BY attr.conrelid, attr.conname";

/// SQLAlchemy 2.0's `_index_query`.
const INDEX_QUERY: &str = "SELECT pg_catalog.pg_index.indrelid, pg_catalog.pg_class.relname, pg_catalog.pg_index.indisunique, pg_catalog.pg_constraint.conrelid IS NOT NULL AS has_constraint, pg_catalog.pg_index.indoption, pg_catalog.pg_class.reloptions, pg_catalog.pg_am.amname, CASE WHEN (pg_catalog.pg_index.indpred IS NOT NULL) THEN pg_catalog.pg_get_expr(pg_catalog.pg_index.indpred, pg_catalog.pg_index.indrelid) END AS filter_definition, pg_catalog.pg_index.indnkeyatts, pg_catalog.pg_index.indnullsnotdistinct, idx_cols.elements, idx_cols.elements_is_expr, idx_cols.elements_opclass, idx_cols.elements_opdefault \
FROM pg_catalog.pg_index JOIN pg_catalog.pg_class ON pg_catalog.pg_index.indexrelid = pg_catalog.pg_class.oid JOIN pg_catalog.pg_am ON pg_catalog.pg_class.relam = pg_catalog.pg_am.oid LEFT OUTER JOIN (SELECT idx_attr.indexrelid AS indexrelid, min(idx_attr.indrelid) AS min_1, array_agg(idx_attr.element ORDER BY idx_attr.ord) AS elements, array_agg(idx_attr.is_expr ORDER BY idx_attr.ord) AS elements_is_expr, array_agg(idx_attr.opcname ORDER BY idx_attr.ord) AS elements_opclass, array_agg(idx_attr.opcdefault ORDER BY idx_attr.ord) AS elements_opdefault \
FROM (SELECT idx.indexrelid AS indexrelid, idx.indrelid AS indrelid, idx.ord AS ord, CASE WHEN (idx.attnum = $1::INTEGER) THEN pg_catalog.pg_get_indexdef(idx.indexrelid, idx.ord + $2::INTEGER, $3) ELSE CAST(pg_catalog.pg_attribute.attname AS TEXT) END AS element, idx.attnum = $4::INTEGER AS is_expr, pg_catalog.pg_opclass.opcname AS opcname, pg_catalog.pg_opclass.opcdefault AS opcdefault \
FROM (SELECT pg_catalog.pg_index.indexrelid AS indexrelid, pg_catalog.pg_index.indrelid AS indrelid, unnest(pg_catalog.pg_index.indkey) AS attnum, unnest(pg_catalog.pg_index.indclass) AS att_opclass, generate_subscripts(pg_catalog.pg_index.indkey, $5::INTEGER) AS ord \
FROM pg_catalog.pg_index \
WHERE NOT pg_catalog.pg_index.indisprimary AND pg_catalog.pg_index.indrelid IN ($9, $10)) AS idx LEFT OUTER JOIN pg_catalog.pg_attribute ON pg_catalog.pg_attribute.attnum = idx.attnum AND pg_catalog.pg_attribute.attrelid = idx.indrelid LEFT OUTER JOIN pg_catalog.pg_opclass ON pg_catalog.pg_opclass.oid = idx.att_opclass \
WHERE idx.indrelid IN ($9, $10)) AS idx_attr GROUP BY idx_attr.indexrelid) AS idx_cols ON pg_catalog.pg_index.indexrelid = idx_cols.indexrelid LEFT OUTER JOIN pg_catalog.pg_constraint ON pg_catalog.pg_index.indrelid = pg_catalog.pg_constraint.conrelid AND pg_catalog.pg_index.indexrelid = pg_catalog.pg_constraint.conindid AND pg_catalog.pg_constraint.contype = ANY (ARRAY[$6::VARCHAR, $7::VARCHAR, $8::VARCHAR]) \
WHERE pg_catalog.pg_index.indrelid IN ($9, $10) AND NOT pg_catalog.pg_index.indisprimary ORDER BY pg_catalog.pg_index.indrelid, pg_catalog.pg_class.relname";

async fn table_oids(s: &mut mycelium_storage::SqliteSession) -> (String, String) {
    let out = ok(
        s,
        "SELECT oid FROM pg_catalog.pg_class WHERE relname IN ('authors', 'books') ORDER BY relname",
    )
    .await;
    let oids = out.text();
    (oids[0][0].clone().unwrap(), oids[1][0].clone().unwrap())
}

#[tokio::test]
async fn sqlalchemy_reflects_primary_keys_and_unique_constraints() {
    let db = open();
    let mut s = db.backend.session();
    for sql in SCHEMA {
        ok(&mut s, sql).await;
    }
    let (authors, books) = table_oids(&mut s).await;
    for (contype, expected) in [
        (
            "p",
            vec![
                vec![authors.as_str(), "{id}", "authors_pkey", "NULL", "1", "f"],
                vec![books.as_str(), "{id}", "books_pkey", "NULL", "1", "f"],
            ],
        ),
        (
            "u",
            vec![
                vec![
                    authors.as_str(),
                    "{email}",
                    "authors_email_key",
                    "NULL",
                    "1",
                    "f",
                ],
                vec![
                    books.as_str(),
                    "{author_id,title}",
                    "books_author_id_title_key",
                    "NULL",
                    "2",
                    "f",
                ],
            ],
        ),
    ] {
        let out = run_params(
            &mut s,
            CONSTRAINT_QUERY,
            &[
                Some("1"),
                Some("pg_catalog.pg_constraint"),
                Some(contype),
                Some(&authors),
                Some(&books),
            ],
        )
        .await
        .unwrap();
        assert_eq!(out.oids(), vec![26, 1009, 19, 25, 21, 16], "{contype}");
        let expected: Vec<&[&str]> = expected.iter().map(Vec::as_slice).collect();
        assert_eq!(out.text(), rows(&expected), "{contype}");
    }
}

#[tokio::test]
async fn sqlalchemy_reflects_indexes() {
    let db = open();
    let mut s = db.backend.session();
    for sql in SCHEMA {
        ok(&mut s, sql).await;
    }
    let (authors, books) = table_oids(&mut s).await;
    let out = run_params(
        &mut s,
        INDEX_QUERY,
        &[
            Some("0"),
            Some("1"),
            Some("t"),
            Some("0"),
            Some("1"),
            Some("p"),
            Some("u"),
            Some("x"),
            Some(&authors),
            Some(&books),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        out.oids(),
        vec![
            26, 19, 16, 16, 22, 1009, 19, 25, 21, 16, 1009, 1000, 1003, 1000
        ]
    );
    assert_eq!(
        out.text(),
        rows(&[
            &[
                &authors,
                "authors_email_key",
                "t",
                "t",
                "0",
                "NULL",
                "btree",
                "NULL",
                "1",
                "f",
                "{email}",
                "{f}",
                "{text_ops}",
                "{t}",
            ],
            &[
                &books,
                "books_author_id_title_key",
                "t",
                "t",
                "0 0",
                "NULL",
                "btree",
                "NULL",
                "2",
                "f",
                "{author_id,title}",
                "{f,f}",
                "{int4_ops,text_ops}",
                "{t,t}",
            ],
            &[
                &books,
                "books_title_idx",
                "f",
                "f",
                "0",
                "NULL",
                "btree",
                "NULL",
                "1",
                "f",
                "{title}",
                "{f}",
                "{text_ops}",
                "{t}",
            ],
        ])
    );
}

#[tokio::test]
async fn binary_results_are_array_send() {
    use bytes::Bytes;
    use mycelium_protocol::{Execute, Format};
    use std::sync::Arc;

    let db = open();
    let mut s = db.backend.session();
    let out = execute(
        &mut s,
        Execute {
            sql: Arc::from("SELECT '3'::int2vector, ARRAY['a', NULL]"),
            param_types: Arc::from(Vec::new()),
            params: Vec::<Option<Bytes>>::new(),
            param_formats: vec![],
            result_formats: Arc::from(vec![Format::Binary]),
        },
    )
    .await
    .unwrap();
    assert_eq!(out.oids(), vec![22, 1009]);
    #[rustfmt::skip]
    let expected: Vec<Option<Vec<u8>>> = vec![
        Some(vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 21, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 3]),
        Some(vec![
            0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 25, 0, 0, 0, 2, 0, 0, 0, 1,
            0, 0, 0, 1, b'a', 0xff, 0xff, 0xff, 0xff,
        ]),
    ];
    assert_eq!(out.rows, vec![expected]);
}

/// Array columns (one dimension) as Postgres keeps them: the expected rows are PostgreSQL 15's
/// answer to the same statements.
#[tokio::test]
async fn array_columns_answer_as_postgres() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE posts (id int PRIMARY KEY, tags text[] NOT NULL DEFAULT '{}', scores int[])",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO posts VALUES (1, ARRAY['a','b c'], '{1, 02,3}'), (2, '{x}', ARRAY[5]), \
         (3, DEFAULT, NULL)",
    )
    .await;
    ok(
        &mut s,
        "UPDATE posts SET tags = array_append(tags, 'new'), scores = scores || 6 WHERE id = 2",
    )
    .await;
    ok(
        &mut s,
        "UPDATE posts SET tags = '{z}' || tags, scores = array_prepend(0, scores) WHERE id = 1",
    )
    .await;
    let out = ok(
        &mut s,
        "SELECT id, tags, scores, tags[1], scores[2], array_length(scores, 1), cardinality(tags), \
         array_position(tags, 'x'), array_remove(scores, 5), array_cat(scores, ARRAY[7]), \
         tags @> '{x}', tags && ARRAY['a','new'], scores <@ '{0,1,2,3,4}', 'b c' = ANY(tags), \
         array_to_string(tags, ';') FROM posts ORDER BY id",
    )
    .await;
    let postgres = r#"1|{z,a,"b c"}|{0,1,2,3}|z|1|4|3||{0,1,2,3}|{0,1,2,3,7}|f|t|t|t|z;a;b c
2|{x,new}|{5,6}|x|6|2|2|1|{6}|{5,6,7}|t|t|f|f|x;new
3|{}|||||0|||{7}|f|f||f|"#;
    let got: Vec<String> = out.lines();
    assert_eq!(got.join("\n"), postgres);
    let types: Vec<u32> = out.columns.iter().map(|c| c.type_oid).collect();
    assert_eq!(
        types,
        [
            23, 1009, 1007, 25, 23, 23, 23, 23, 1007, 1007, 16, 16, 16, 16, 25
        ]
    );

    // Bad input is refused as Postgres refuses it, and nothing is stored.
    let error = err(&mut s, "INSERT INTO posts VALUES (4, '{a,', NULL)").await;
    assert_eq!(error.code, "22P02", "{error:?}");
    let error = err(&mut s, "INSERT INTO posts VALUES (4, '{a}', '{a}')").await;
    assert_eq!(error.code, "22P02", "{error:?}");
    let error = err(&mut s, "UPDATE posts SET scores = 7 WHERE id = 1").await;
    assert_eq!(error.code, "42804", "{error:?}");
    assert_eq!(count_rows(&db, "posts"), 3);

    // Parameters: an array in text form, and `= ANY($1)` typed by its left side.
    let out = run_params(
        &mut s,
        "INSERT INTO posts VALUES ($1, $2, $3) RETURNING tags, scores",
        &[Some("4"), Some("{\"p q\",NULL}"), Some("{ 7 , 08 }")],
    )
    .await
    .unwrap();
    assert_eq!(
        out.text(),
        vec![vec![Some("{\"p q\",NULL}".into()), Some("{7,8}".into())]]
    );
    let out = run_params(
        &mut s,
        "SELECT id FROM posts WHERE id = ANY($1) ORDER BY id",
        &[Some("{4,1,9}")],
    )
    .await
    .unwrap();
    assert_eq!(
        out.text(),
        vec![vec![Some("1".into())], vec![Some("4".into())]]
    );

    let out = ok(
        &mut s,
        "SELECT id FROM posts WHERE scores = '{ 5, 06 }' OR scores IN ('{7,8}') ORDER BY id",
    )
    .await;
    assert_eq!(
        out.text(),
        vec![vec![Some("2".into())], vec![Some("4".into())]]
    );

    // Sorting by elements works; arrays themselves would sort by their text: refused.
    let out = ok(
        &mut s,
        "SELECT id FROM posts ORDER BY scores[1] DESC, array_length(tags, 1)",
    )
    .await;
    assert_eq!(
        out.text(),
        vec![
            vec![Some("3".into())],
            vec![Some("4".into())],
            vec![Some("2".into())],
            vec![Some("1".into())],
        ],
        "NULLs first when descending, as in Postgres"
    );
    for sql in [
        "SELECT id FROM posts ORDER BY scores",
        "SELECT id, scores FROM posts ORDER BY 2",
        "SELECT id, tags AS t FROM posts ORDER BY t DESC",
        "SELECT id FROM posts WHERE scores > '{1}'",
        "SELECT max(scores) FROM posts",
    ] {
        assert_eq!(err(&mut s, sql).await.code, "0A000", "{sql}");
    }

    // psql's \d names the types.
    let out = ok(
        &mut s,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid WHERE c.relname = 'posts' AND a.attnum > 0 \
         ORDER BY a.attnum",
    )
    .await;
    assert_eq!(
        out.text(),
        vec![
            vec![Some("id".into()), Some("integer".into())],
            vec![Some("tags".into()), Some("text[]".into())],
            vec![Some("scores".into()), Some("integer[]".into())],
        ]
    );
}
