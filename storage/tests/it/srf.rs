//! Set-returning JSON and regexp functions on SQLite nodes, in FROM and in select lists, and
//! whole rows as JSON. Every expected value is PostgreSQL 15's answer.

use crate::util::*;

const JSONB: u32 = 3802;
const JSON: u32 = 114;
const TEXT: u32 = 25;
const TEXT_ARRAY: u32 = 1009;

async fn table(s: &mut mycelium_storage::SqliteSession) {
    ok(
        s,
        "CREATE TABLE t (id int PRIMARY KEY, g text, x numeric(10,2), n int, d date, j jsonb, s text)",
    )
    .await;
    ok(
        s,
        "INSERT INTO t VALUES \
         (1, 'a', 1.5, 10, '2024-01-02', '{\"a\":1,\"b\":[1,\"x\",{\"k\":true},null]}', 'p q'), \
         (2, 'b', NULL, NULL, NULL, NULL, NULL), \
         (3, 'c', 2, 3, '2024-03-04', '{\"b\":{\"k\":1}}', 'x')",
    )
    .await;
}

#[tokio::test]
async fn json_set_returning_functions_in_from() {
    let db = open();
    let mut s = db.backend.session();
    table(&mut s).await;
    let out = ok(
        &mut s,
        "SELECT id, e FROM t, jsonb_array_elements(t.j->'b') e WHERE id = 1 ORDER BY 2",
    )
    .await;
    assert_eq!(out.names(), ["id", "e"]);
    assert_eq!(out.oids(), [23, JSONB]);
    assert_eq!(out.lines(), ["1|null", "1|\"x\"", "1|1", "1|{\"k\": true}"]);

    let out = ok(
        &mut s,
        "SELECT * FROM jsonb_array_elements('[1,\"x\",{\"k\":true},null]')",
    )
    .await;
    assert_eq!(out.names(), ["value"]);
    assert_eq!(out.oids(), [JSONB]);
    assert_eq!(
        out.text(),
        [
            [Some("1")],
            [Some("\"x\"")],
            [Some("{\"k\": true}")],
            [Some("null")]
        ]
        .map(|r| r.map(|v| v.map(str::to_owned)))
    );
    let out = ok(
        &mut s,
        "SELECT * FROM jsonb_array_elements_text('[1,\"x\",{\"k\":true},null]')",
    )
    .await;
    assert_eq!(out.oids(), [TEXT]);
    assert_eq!(
        out.text(),
        [[Some("1")], [Some("x")], [Some("{\"k\": true}")], [None]]
            .map(|r| r.map(|v| v.map(str::to_owned)))
    );
    // An alias names the relation; the column keeps its name unless the alias lists one.
    let out = ok(&mut s, "SELECT * FROM jsonb_array_elements('[1]') e").await;
    assert_eq!(out.names(), ["value"]);
    let out = ok(&mut s, "SELECT * FROM jsonb_array_elements('[1]') e(z)").await;
    assert_eq!(out.names(), ["z"]);
    let out = ok(&mut s, "SELECT e.value FROM jsonb_array_elements('[1]') e").await;
    assert_eq!(out.lines(), ["1"]);

    let out = ok(
        &mut s,
        "SELECT key, value FROM jsonb_each('{\"a\":1,\"b\":\"x\",\"c\":[1]}') ORDER BY key",
    )
    .await;
    assert_eq!(out.oids(), [TEXT, JSONB]);
    assert_eq!(out.lines(), ["a|1", "b|\"x\"", "c|[1]"]);
    let out = ok(
        &mut s,
        "SELECT key, value FROM jsonb_each_text('{\"a\":1,\"b\":\"x\",\"c\":[1]}') ORDER BY key",
    )
    .await;
    assert_eq!(out.oids(), [TEXT, TEXT]);
    assert_eq!(out.lines(), ["a|1", "b|x", "c|[1]"]);
    let out = ok(
        &mut s,
        "SELECT * FROM jsonb_each('{\"b\":1,\"a\":\"x\",\"a\":[1, 2]}')",
    )
    .await;
    assert_eq!(out.lines(), ["a|[1, 2]", "b|1"]);

    // json keeps its text as written, its order and its duplicate keys.
    let out = ok(
        &mut s,
        "SELECT * FROM json_each('{\"b\":1,\"a\":\"x\",\"a\":[1,  2]}')",
    )
    .await;
    assert_eq!(out.oids(), [TEXT, JSON]);
    assert_eq!(out.lines(), ["b|1", "a|\"x\"", "a|[1,  2]"]);
    let out = ok(
        &mut s,
        "SELECT * FROM json_each_text('{\"b\":1,\"a\":\"x\",\"a\":[1,  2], \"c\": null}')",
    )
    .await;
    assert_eq!(out.text()[3], [Some("c".to_owned()), None]);
    assert_eq!(out.lines(), ["b|1", "a|x", "a|[1,  2]", "c|"]);
    let out = ok(
        &mut s,
        "SELECT * FROM json_array_elements('[1, \"x\" ,{\"k\" :  true},null]')",
    )
    .await;
    assert_eq!(out.oids(), [JSON]);
    assert_eq!(out.lines(), ["1", "\"x\"", "{\"k\" :  true}", "null"]);
    let out = ok(
        &mut s,
        "SELECT * FROM json_array_elements_text('[1, \"x\" ,{\"k\" :  true},null]')",
    )
    .await;
    assert_eq!(out.text()[3], [None]);
    assert_eq!(out.lines(), ["1", "x", "{\"k\" :  true}", ""]);

    // ORDER BY names the result column, not json_each's own `key`.
    let out = ok(
        &mut s,
        "SELECT key, value FROM json_each('{\"b\":1,\"a\":2}') ORDER BY key",
    )
    .await;
    assert_eq!(out.lines(), ["a|2", "b|1"]);
    let out = ok(&mut s, "SELECT k.key AS id FROM t, json_each('{\"b\":1,\"a\":2}') k WHERE t.id = 1 ORDER BY id DESC").await;
    assert_eq!(out.lines(), ["b", "a"]);
    let out = ok(
        &mut s,
        "SELECT id, key FROM t, jsonb_each(t.j) WHERE id < 3 ORDER BY id DESC, key",
    )
    .await;
    assert_eq!(out.lines(), ["1|a", "1|b"]);
    let out = ok(
        &mut s,
        "SELECT * FROM json_object_keys('{\"b\":1,\"a\":2,\"b\":3}')",
    )
    .await;
    assert_eq!(out.names(), ["json_object_keys"]);
    assert_eq!(out.lines(), ["b", "a", "b"]);
    let out = ok(
        &mut s,
        "SELECT * FROM jsonb_object_keys('{\"b\":1,\"a\":2,\"b\":3}') k",
    )
    .await;
    assert_eq!(out.names(), ["k"]);
    assert_eq!(out.lines(), ["a", "b"]);
    // Lateral: one function reads the other's rows; NULL gives no rows.
    let out = ok(
        &mut s,
        "SELECT t.id, k.key, v FROM t, jsonb_each(t.j) k, jsonb_array_elements_text(k.value) v \
         WHERE jsonb_typeof(k.value) = 'array' ORDER BY 1, 3",
    )
    .await;
    assert_eq!(out.lines(), ["1|b|1", "1|b|x", "1|b|{\"k\": true}", "1|b|"]);
    let out = ok(
        &mut s,
        "SELECT *, pg_typeof(n) FROM jsonb_each('{\"b\":1,\"a\":\"x\"}') WITH ORDINALITY e(k, v, n)",
    )
    .await;
    assert_eq!(out.names(), ["k", "v", "n", "pg_typeof"]);
    assert_eq!(out.oids(), [TEXT, JSONB, 20, TEXT]);
    assert_eq!(out.lines(), ["a|\"x\"|1|bigint", "b|1|2|bigint"]);
    let out = ok(
        &mut s,
        "SELECT * FROM regexp_split_to_table('a b', ' ') WITH ORDINALITY",
    )
    .await;
    assert_eq!(out.names(), ["regexp_split_to_table", "ordinality"]);
    assert_eq!(out.lines(), ["a|1", "b|2"]);
    let out = ok(
        &mut s,
        "SELECT string_agg(k, ',' ORDER BY k DESC) FROM t, jsonb_object_keys(t.j) k",
    )
    .await;
    assert_eq!(out.lines(), ["b,b,a"]);
    let out = ok(
        &mut s,
        "SELECT e.key, f FROM t, jsonb_each(t.j) e CROSS JOIN LATERAL jsonb_array_elements(e.value) f \
         WHERE jsonb_typeof(e.value) = 'array' ORDER BY f",
    )
    .await;
    assert_eq!(out.lines(), ["b|null", "b|\"x\"", "b|1", "b|{\"k\": true}"]);
    let out = run_params(
        &mut s,
        "SELECT value, (SELECT count(*) FROM jsonb_array_elements($1)) FROM json_array_elements_text($2)",
        &[Some("[1, 2]"), Some("[\"a\"]")],
    )
    .await
    .unwrap();
    assert_eq!(out.oids(), [TEXT, 20]);
    assert_eq!(out.lines(), ["a|2"]);
    // A result column named like json_each's own columns sorts as itself.
    let out = ok(
        &mut s,
        "SELECT t.j->'a' AS value FROM t, jsonb_object_keys(t.j) k WHERE k = 'b' ORDER BY value",
    )
    .await;
    assert_eq!(out.lines(), ["1", ""]);
    let out = ok(
        &mut s,
        "SELECT * FROM jsonb_array_elements('[[1,2],3,[4],\"a\"]') ORDER BY 1 DESC",
    )
    .await;
    assert_eq!(out.lines(), ["[1, 2]", "[4]", "3", "\"a\""]);
    let out = ok(
        &mut s,
        "SELECT key, count(*) FROM t, jsonb_each(t.j) GROUP BY key ORDER BY key",
    )
    .await;
    assert_eq!(out.lines(), ["a|1", "b|2"]);
    let out = ok(
        &mut s,
        "SELECT coalesce(NULL, e) FROM jsonb_array_elements_text('[\"x\"]') e",
    )
    .await;
    assert_eq!(out.lines(), ["x"]);
    let out = ok(&mut s, "SELECT count(*) FROM t, jsonb_object_keys(t.j) k").await;
    assert_eq!(out.lines(), ["3"]);

    for (sql, code) in [
        ("SELECT * FROM jsonb_array_elements('{\"a\":1}')", "22023"),
        ("SELECT * FROM jsonb_array_elements('1')", "22023"),
        ("SELECT * FROM json_array_elements('{\"a\":1}')", "22023"),
        ("SELECT * FROM jsonb_each('[1]')", "22023"),
        ("SELECT * FROM json_each('1')", "22023"),
        ("SELECT * FROM jsonb_object_keys('[1]')", "22023"),
        ("SELECT * FROM json_object_keys('1')", "22023"),
        ("SELECT * FROM json_each('{\"a\":')", "22P02"),
        ("SELECT * FROM json_array_elements('[1]'::jsonb)", "42883"),
        ("SELECT * FROM jsonb_each(1)", "42883"),
        ("SELECT jsonb_array_elements(s) FROM t", "42883"),
    ] {
        assert_eq!(err(&mut s, sql).await.code, code, "{sql}");
    }
    let e = err(&mut s, "SELECT * FROM jsonb_array_elements('{\"a\":1}')").await;
    assert_eq!(e.message, "cannot extract elements from an object");
}

#[tokio::test]
async fn set_returning_functions_in_select_lists() {
    let db = open();
    let mut s = db.backend.session();
    table(&mut s).await;
    let out = ok(&mut s, "SELECT jsonb_object_keys(j) FROM t WHERE id = 1").await;
    assert_eq!(out.names(), ["jsonb_object_keys"]);
    assert_eq!(out.oids(), [TEXT]);
    assert_eq!(out.lines(), ["a", "b"]);
    let out = ok(
        &mut s,
        "SELECT jsonb_array_elements(j->'b') FROM t WHERE id = 1",
    )
    .await;
    assert_eq!(out.names(), ["jsonb_array_elements"]);
    assert_eq!(out.oids(), [JSONB]);
    assert_eq!(out.lines(), ["1", "\"x\"", "{\"k\": true}", "null"]);
    let out = ok(
        &mut s,
        "SELECT jsonb_array_elements('[1]'), jsonb_array_elements('[1,2,3]')",
    )
    .await;
    assert_eq!(out.lines(), ["1|1", "|2", "|3"]);

    let out = ok(&mut s, "SELECT regexp_matches('abc123def456', '\\d+', 'g')").await;
    assert_eq!(out.names(), ["regexp_matches"]);
    assert_eq!(out.oids(), [TEXT_ARRAY]);
    assert_eq!(out.lines(), ["{123}", "{456}"]);
    let out = ok(
        &mut s,
        "SELECT regexp_matches('abc123def456', '([a-z]+)(\\d+)')",
    )
    .await;
    assert_eq!(out.lines(), ["{abc,123}"]);
    let out = ok(&mut s, "SELECT regexp_matches('ab', '(a)|(b)', 'g')").await;
    assert_eq!(out.lines(), ["{a,NULL}", "{NULL,b}"]);
    let out = ok(&mut s, "SELECT regexp_matches('aaa', 'a*', 'g')").await;
    assert_eq!(out.lines(), ["{aaa}", "{\"\"}"]);
    let out = ok(&mut s, "SELECT regexp_matches('abab', 'b*', 'g')").await;
    assert_eq!(out.lines(), ["{\"\"}", "{b}", "{\"\"}", "{b}", "{\"\"}"]);
    let out = ok(&mut s, "SELECT regexp_matches('abc', 'x*', 'g')").await;
    assert_eq!(out.lines(), ["{\"\"}", "{\"\"}", "{\"\"}", "{\"\"}"]);
    let out = ok(
        &mut s,
        "SELECT * FROM regexp_matches('abc123def456', '([a-z]+)(\\d+)', 'g') m",
    )
    .await;
    assert_eq!(out.names(), ["m"]);
    assert_eq!(out.lines(), ["{abc,123}", "{def,456}"]);

    let out = ok(&mut s, "SELECT regexp_split_to_table('a,b,,c', ',')").await;
    assert_eq!(out.names(), ["regexp_split_to_table"]);
    assert_eq!(out.lines(), ["a", "b", "", "c"]);
    let out = ok(
        &mut s,
        "SELECT * FROM regexp_split_to_table('a,b,,c', ',') x",
    )
    .await;
    assert_eq!(out.names(), ["x"]);
    assert_eq!(out.lines(), ["a", "b", "", "c"]);
    let out = ok(&mut s, "SELECT regexp_split_to_table('abc', '')").await;
    assert_eq!(out.lines(), ["a", "b", "c"]);
    let out = ok(&mut s, "SELECT regexp_split_to_table('a,b', ',*')").await;
    assert_eq!(out.lines(), ["a", "b"]);

    for (sql, code) in [
        ("SELECT regexp_split_to_table('a,b', ',', 'g')", "22023"),
        ("SELECT regexp_matches('ab', 'a', 'z')", "22023"),
        ("SELECT jsonb_array_elements('{}')", "22023"),
        (
            "SELECT id FROM t WHERE jsonb_array_elements(j) IS NULL",
            "0A000",
        ),
    ] {
        assert_eq!(err(&mut s, sql).await.code, code, "{sql}");
    }
}

#[tokio::test]
async fn arrays_of_strings_and_json_helpers() {
    let db = open();
    let mut s = db.backend.session();
    let out = ok(
        &mut s,
        "SELECT regexp_split_to_array('a,b,,c', ','), string_to_array('a,b,c', ','), \
         string_to_array('a,,b', ',', '')",
    )
    .await;
    assert_eq!(out.oids(), [TEXT_ARRAY, TEXT_ARRAY, TEXT_ARRAY]);
    assert_eq!(out.lines(), ["{a,b,\"\",c}|{a,b,c}|{a,NULL,b}"]);
    let out = ok(
        &mut s,
        "SELECT regexp_split_to_array('', ','), regexp_split_to_array('abc', ''), \
         string_to_array('', ','), string_to_array('abc', NULL), string_to_array('abc', ''), \
         string_to_array(NULL, ',') IS NULL, string_to_array('a,b', NULL, 'a')",
    )
    .await;
    assert_eq!(
        out.lines(),
        ["{\"\"}|{a,b,c}|{}|{a,b,c}|{abc}|t|{NULL,\",\",b}"]
    );
    let out = ok(
        &mut s,
        "SELECT jsonb_pretty('{\"a\":1,\"b\":[1,2]}'), jsonb_strip_nulls('{\"a\":null,\"b\":1}'), \
         '{\"a\":1,\"b\":2}'::jsonb - 'a', '[\"a\",\"b\"]'::jsonb - 0",
    )
    .await;
    assert_eq!(out.oids(), [TEXT, JSONB, JSONB, JSONB]);
    assert_eq!(
        out.text()[0],
        [
            "{\n    \"a\": 1,\n    \"b\": [\n        1,\n        2\n    ]\n}",
            "{\"b\": 1}",
            "{\"b\": 2}",
            "[\"b\"]",
        ]
        .map(|v| Some(v.to_owned()))
    );
    let out = ok(
        &mut s,
        "SELECT jsonb_pretty('{}'), jsonb_pretty('1'), \
         jsonb_pretty('{\"a\":{},\"b\":[[]],\"c\":{\"d\":null}}'), \
         jsonb_strip_nulls('[null,{\"a\":null,\"b\":[{\"c\":null}]}]'), \
         json_strip_nulls('{\"a\" : null, \"b\":1}')",
    )
    .await;
    assert_eq!(
        out.text()[0],
        [
            "{\n}",
            "1",
            "{\n    \"a\": {\n    },\n    \"b\": [\n        [\n        ]\n    ],\n    \"c\": {\n        \"d\": null\n    }\n}",
            "[null, {\"b\": [{}]}]",
            "{\"b\":1}",
        ]
        .map(|v| Some(v.to_owned()))
    );
    let out = ok(
        &mut s,
        "SELECT '{\"a\":1}'::jsonb - 'b', '[\"a\",\"b\",\"a\"]'::jsonb - 'a', '[1,2,3]'::jsonb - -1, \
         '[1,2,3]'::jsonb - 5, '{\"a\":1,\"b\":2,\"c\":3}'::jsonb - '{a,c}'::text[]",
    )
    .await;
    assert_eq!(
        out.lines(),
        ["{\"a\": 1}|[\"b\"]|[1, 2]|[1, 2, 3]|{\"b\": 2}"]
    );
    for sql in ["SELECT '1'::jsonb - 'a'", "SELECT '{\"a\":1}'::jsonb - 0"] {
        assert_eq!(err(&mut s, sql).await.code, "22023", "{sql}");
    }
    let e = err(
        &mut s,
        "SELECT '[1]'::jsonb AS x UNION SELECT '2'::jsonb ORDER BY 1",
    )
    .await;
    assert_eq!(e.code, "0A000");
    let out = ok(
        &mut s,
        "SELECT '1.0'::jsonb = '1', '[1,2]'::jsonb < '[3]', '{\"a\":1}'::jsonb > '[1,2,3]', \
         '\"b\"'::jsonb >= '10', '[]'::jsonb < 'null', '1'::jsonb <> '1.00'",
    )
    .await;
    assert_eq!(out.lines(), ["t|f|t|f|t|f"]);
    // jsonb sorts by type, then size, then members (an empty array first).
    let out = ok(
        &mut s,
        "SELECT x FROM (VALUES ('null'::jsonb), ('\"x\"'), ('1'), ('{\"k\": true}'), ('[]'), \
         ('[1,2]'), ('[3]'), ('{}'), ('{\"a\":1,\"b\":1}'), ('{\"aa\":1}'), ('true'), ('false'), \
         ('-1.5'), ('10'), ('\"\"'), ('\"a\"'), ('[null]'), ('[\"a\"]')) v(x) ORDER BY x",
    )
    .await;
    assert_eq!(
        out.lines(),
        [
            "[]",
            "null",
            "\"\"",
            "\"a\"",
            "\"x\"",
            "-1.5",
            "1",
            "10",
            "false",
            "true",
            "[null]",
            "[\"a\"]",
            "[3]",
            "[1, 2]",
            "{}",
            "{\"aa\": 1}",
            "{\"k\": true}",
            "{\"a\": 1, \"b\": 1}",
        ]
    );
}

#[tokio::test]
async fn rows_as_json() {
    let db = open();
    let mut s = db.backend.session();
    table(&mut s).await;
    let out = ok(&mut s, "SELECT row_to_json(t) FROM t WHERE id = 1").await;
    assert_eq!(out.names(), ["row_to_json"]);
    assert_eq!(out.oids(), [JSON]);
    assert_eq!(
        out.lines(),
        [
            "{\"id\":1,\"g\":\"a\",\"x\":1.50,\"n\":10,\"d\":\"2024-01-02\",\"j\":{\"a\": 1, \"b\": [1, \"x\", {\"k\": true}, null]},\"s\":\"p q\"}"
        ]
    );
    let out = ok(&mut s, "SELECT to_json(t), to_jsonb(t) FROM t WHERE id = 2").await;
    assert_eq!(out.oids(), [JSON, JSONB]);
    assert_eq!(
        out.text()[0],
        [
            "{\"id\":2,\"g\":\"b\",\"x\":null,\"n\":null,\"d\":null,\"j\":null,\"s\":null}",
            "{\"d\": null, \"g\": \"b\", \"j\": null, \"n\": null, \"s\": null, \"x\": null, \"id\": 2}",
        ]
        .map(|v| Some(v.to_owned()))
    );
    let out = ok(&mut s, "SELECT to_jsonb(t.*) FROM t WHERE id = 3").await;
    assert_eq!(
        out.lines(),
        [
            "{\"d\": \"2024-03-04\", \"g\": \"c\", \"j\": {\"b\": {\"k\": 1}}, \"n\": 3, \"s\": \"x\", \"x\": 2.00, \"id\": 3}"
        ]
    );
    let out = ok(&mut s, "SELECT row_to_json(t) FROM t WHERE id = 3").await;
    assert_eq!(
        out.lines(),
        [
            "{\"id\":3,\"g\":\"c\",\"x\":2.00,\"n\":3,\"d\":\"2024-03-04\",\"j\":{\"b\": {\"k\": 1}},\"s\":\"x\"}"
        ]
    );
    // Booleans, timestamps, arrays and json columns, each in its JSON form.
    ok(
        &mut s,
        "CREATE TABLE u (id int PRIMARY KEY, b bool, ts timestamptz, a int[], js json)",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO u VALUES (1, true, '2024-01-02 03:04:05+00', '{1,2}', '{\"z\" : 1, \"a\":2}'), \
         (3, false, '2024-05-06 07:08:09.5+00', '{}', '[1, 2]')",
    )
    .await;
    let out = ok(
        &mut s,
        "SELECT row_to_json(u), to_jsonb(u) FROM u ORDER BY id",
    )
    .await;
    assert_eq!(
        out.lines(),
        [
            "{\"id\":1,\"b\":true,\"ts\":\"2024-01-02T03:04:05+00:00\",\"a\":[1,2],\"js\":{\"z\" : 1, \"a\":2}}\
             |{\"a\": [1, 2], \"b\": true, \"id\": 1, \"js\": {\"a\": 2, \"z\": 1}, \"ts\": \"2024-01-02T03:04:05+00:00\"}",
            "{\"id\":3,\"b\":false,\"ts\":\"2024-05-06T07:08:09.5+00:00\",\"a\":[],\"js\":[1, 2]}\
             |{\"a\": [], \"b\": false, \"id\": 3, \"js\": [1, 2], \"ts\": \"2024-05-06T07:08:09.5+00:00\"}",
        ]
    );
    let out = ok(
        &mut s,
        "SELECT json_build_object('a', ARRAY[1,2]), to_json(ARRAY[1,2]), to_jsonb(ARRAY[1,2]), \
         json_build_array(ARRAY['x'])",
    )
    .await;
    assert_eq!(out.lines(), ["{\"a\" : [1,2]}|[1,2]|[1, 2]|[[\"x\"]]"]);
    let out = ok(&mut s, "SELECT to_json('{\"a\" :1}'::json)").await;
    assert_eq!(out.lines(), ["{\"a\" :1}"]);
}
