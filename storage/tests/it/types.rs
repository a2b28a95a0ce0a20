use std::sync::Arc;

use mycelium_protocol::{Execute, Format};

use crate::util::*;

const COLUMNS: &str = "b boolean, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision, \
    n numeric(10,2), t text, vc varchar(10), c char(4), by bytea, d date, tm time, ts timestamp, \
    tz timestamptz, j json, jb jsonb, u uuid";

const VALUES: &str = "(true, 2, 4, 8, 1.5, 2.25, 12.345, 'text', 'varchar', 'ab', '\\x0102', '2024-02-29', \
    '12:34:56', '2024-01-02 03:04:05.5', '2024-01-02 03:04:05+02', '{\"a\": 1}', '{\"b\":2, \"a\":1}', \
    'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11')";

#[tokio::test]
async fn every_type_round_trips_in_text_and_binary() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, &format!("CREATE TABLE all_types ({COLUMNS})")).await;
    ok(&mut s, &format!("INSERT INTO all_types VALUES {VALUES}")).await;
    let out = ok(&mut s, "SELECT * FROM all_types").await;
    assert_eq!(
        out.oids(),
        vec![
            16, 21, 23, 20, 700, 701, 1700, 25, 1043, 1042, 17, 1082, 1083, 1114, 1184, 114, 3802,
            2950
        ]
    );
    let expected = [
        "t",
        "2",
        "4",
        "8",
        "1.5",
        "2.25",
        "12.35",
        "text",
        "varchar",
        "ab  ",
        "\\x0102",
        "2024-02-29",
        "12:34:56",
        "2024-01-02 03:04:05.5",
        "2024-01-02 01:04:05+00",
        "{\"a\": 1}",
        "{\"a\": 1, \"b\": 2}",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    ];
    assert_eq!(
        out.text()[0],
        expected
            .iter()
            .map(|v| Some(v.to_string()))
            .collect::<Vec<_>>()
    );

    let binary = execute(
        &mut s,
        Execute {
            result_formats: Arc::from(vec![Format::Binary]),
            ..Execute::simple("SELECT b, i2, i4, i8, f8, by, u, d FROM all_types")
        },
    )
    .await
    .unwrap();
    let row = &binary.rows[0];
    assert_eq!(row[0].as_deref(), Some(&[1u8][..]));
    assert_eq!(row[1].as_deref(), Some(&2i16.to_be_bytes()[..]));
    assert_eq!(row[2].as_deref(), Some(&4i32.to_be_bytes()[..]));
    assert_eq!(row[3].as_deref(), Some(&8i64.to_be_bytes()[..]));
    assert_eq!(row[4].as_deref(), Some(&2.25f64.to_be_bytes()[..]));
    assert_eq!(row[5].as_deref(), Some(&[1u8, 2][..]));
    assert_eq!(row[6].as_ref().map(Vec::len), Some(16));
    // 2024-02-29 is 8825 days after 2000-01-01.
    assert_eq!(row[7].as_deref(), Some(&8825i32.to_be_bytes()[..]));

    // Storage holds what the codec promises.
    let conn = sqlite(&db);
    let (b, tz, u): (i64, String, String) = conn
        .query_row("SELECT b, tz, u FROM all_types", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(
        (b, tz.as_str(), u.as_str()),
        (
            1,
            "2024-01-02 01:04:05+00",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        )
    );

    // Binary parameters are decoded by their inferred types.
    let out = execute(
        &mut s,
        Execute {
            sql: Arc::from("SELECT count(*) FROM all_types WHERE i8 = $1 AND b = $2"),
            param_types: Arc::from(Vec::new()),
            params: vec![
                Some(bytes::Bytes::from(8i64.to_be_bytes().to_vec())),
                Some(bytes::Bytes::from(vec![1u8])),
            ],
            param_formats: vec![Format::Binary, Format::Binary],
            result_formats: Arc::from(Vec::new()),
        },
    )
    .await
    .unwrap();
    assert_eq!(out.value(), Some("1".into()));
    // NULLs of every type.
    ok(&mut s, "INSERT INTO all_types (b) VALUES (NULL)").await;
    let out = ok(&mut s, "SELECT * FROM all_types WHERE b IS NULL").await;
    assert!(out.rows[0].iter().all(Option::is_none));
}

#[tokio::test]
async fn varchar_length_and_bad_input_are_checked() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE t (v varchar(3), n int, ts timestamp)").await;
    assert_eq!(
        err(&mut s, "INSERT INTO t (v) VALUES ('abcd')").await.code,
        "22001"
    );
    assert_eq!(
        err(&mut s, "INSERT INTO t (n) VALUES ('x')").await.code,
        "22P02"
    );
    ok(&mut s, "INSERT INTO t (n, ts) VALUES ('12', now())").await;
    let out = ok(&mut s, "SELECT n, ts FROM t").await;
    assert_eq!(out.text()[0][0], Some("12".into()));
    assert!(!out.text()[0][1].as_ref().unwrap().ends_with("+00"));
}
