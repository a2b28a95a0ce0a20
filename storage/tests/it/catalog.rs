//! The catalog queries real clients send, captured from psql 15 (`psql -E`) and SQLAlchemy.

use mycelium_protocol::NodeSession;

use crate::util::*;

const PSQL_DT: &str = r#"SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2"#;

const PSQL_D_LOOKUP: &str = r#"SELECT c.oid,
  n.nspname,
  c.relname
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(users)$' COLLATE pg_catalog.default
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 2, 3"#;

/// The queries `\\d users` sends once it knows the OID (`{oid}` is replaced).
const PSQL_D: &[&str] = &[
    r#"SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, c.relrowsecurity, c.relforcerowsecurity, false AS relhasoids, c.relispartition, '', c.reltablespace, CASE WHEN c.reloftype = 0 THEN '' ELSE c.reloftype::pg_catalog.regtype::pg_catalog.text END, c.relpersistence, c.relreplident, am.amname
FROM pg_catalog.pg_class c
 LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)
LEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid)
WHERE c.oid = '{oid}'"#,
    r#"SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity,
  a.attgenerated
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '{oid}' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum"#,
    r#"SELECT c2.relname, i.indisprimary, i.indisunique, i.indisclustered, i.indisvalid, pg_catalog.pg_get_indexdef(i.indexrelid, 0, true),
  pg_catalog.pg_get_constraintdef(con.oid, true), contype, condeferrable, condeferred, i.indisreplident, c2.reltablespace
FROM pg_catalog.pg_class c, pg_catalog.pg_class c2, pg_catalog.pg_index i
  LEFT JOIN pg_catalog.pg_constraint con ON (conrelid = i.indrelid AND conindid = i.indexrelid AND contype IN ('p','u','x'))
WHERE c.oid = '{oid}' AND c.oid = i.indrelid AND i.indexrelid = c2.oid
ORDER BY i.indisprimary DESC, c2.relname"#,
    r#"SELECT pol.polname, pol.polpermissive,
  CASE WHEN pol.polroles = '{0}' THEN NULL ELSE pg_catalog.array_to_string(array(select rolname from pg_catalog.pg_roles where oid = any (pol.polroles) order by 1),',') END,
  pg_catalog.pg_get_expr(pol.polqual, pol.polrelid),
  pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid),
  CASE pol.polcmd
    WHEN 'r' THEN 'SELECT'
    WHEN 'a' THEN 'INSERT'
    WHEN 'w' THEN 'UPDATE'
    WHEN 'd' THEN 'DELETE'
    END AS cmd
FROM pg_catalog.pg_policy pol
WHERE pol.polrelid = '{oid}' ORDER BY 1"#,
    r#"SELECT oid, stxrelid::pg_catalog.regclass, stxnamespace::pg_catalog.regnamespace::pg_catalog.text AS nsp, stxname,
pg_catalog.pg_get_statisticsobjdef_columns(oid) AS columns,
  'd' = any(stxkind) AS ndist_enabled,
  'f' = any(stxkind) AS deps_enabled,
  'm' = any(stxkind) AS mcv_enabled,
stxstattarget
FROM pg_catalog.pg_statistic_ext
WHERE stxrelid = '{oid}'
ORDER BY nsp, stxname"#,
    r#"SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_namespace pn ON p.oid = pn.pnpubid
     JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.pnnspid
WHERE pc.oid ='{oid}' and pg_catalog.pg_relation_is_publishable('{oid}')
UNION
SELECT pubname
     , pg_get_expr(pr.prqual, c.oid)
     , (CASE WHEN pr.prattrs IS NOT NULL THEN
         (SELECT string_agg(attname, ', ')
           FROM pg_catalog.generate_series(0, pg_catalog.array_upper(pr.prattrs::pg_catalog.int2[], 1)) s,
                pg_catalog.pg_attribute
          WHERE attrelid = pr.prrelid AND attnum = prattrs[s])
        ELSE NULL END) FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_rel pr ON p.oid = pr.prpubid
     JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
WHERE pr.prrelid = '{oid}'
UNION
SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
WHERE p.puballtables AND pg_catalog.pg_relation_is_publishable('{oid}')
ORDER BY 1"#,
    r#"SELECT c.oid::pg_catalog.regclass
FROM pg_catalog.pg_class c, pg_catalog.pg_inherits i
WHERE c.oid = i.inhparent AND i.inhrelid = '{oid}'
  AND c.relkind != 'p' AND c.relkind != 'I'
ORDER BY inhseqno"#,
    r#"SELECT c.oid::pg_catalog.regclass, c.relkind, inhdetachpending, pg_catalog.pg_get_expr(c.relpartbound, c.oid)
FROM pg_catalog.pg_class c, pg_catalog.pg_inherits i
WHERE c.oid = i.inhrelid AND i.inhparent = '{oid}'
ORDER BY pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.oid::pg_catalog.regclass::pg_catalog.text"#,
];
const SQLALCHEMY_HAS_TABLE: &str = "SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace WHERE pg_catalog.pg_class.relname = $1::VARCHAR AND pg_catalog.pg_class.relkind = ANY (ARRAY[$2::VARCHAR, $3::VARCHAR, $4::VARCHAR, $5::VARCHAR, $6::VARCHAR]) AND pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) AND pg_catalog.pg_namespace.nspname != $7::VARCHAR";

async fn setup(db: &Db) -> mycelium_storage::SqliteSession {
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE users (id bigserial PRIMARY KEY, name varchar(20) NOT NULL UNIQUE, score int DEFAULT 0)").await;
    ok(&mut s, "CREATE TABLE other (x int)").await;
    s
}

#[tokio::test]
async fn psql_dt_lists_tables() {
    let db = open();
    let mut s = setup(&db).await;
    let out = ok(&mut s, PSQL_DT).await;
    assert_eq!(out.names(), vec!["Schema", "Name", "Type", "Owner"]);
    assert_eq!(
        out.text(),
        vec![
            vec![
                Some("public".into()),
                Some("other".into()),
                Some("table".into()),
                Some("mycelium".into())
            ],
            vec![
                Some("public".into()),
                Some("users".into()),
                Some("table".into()),
                Some("mycelium".into())
            ],
        ]
    );
}

#[tokio::test]
async fn psql_d_describes_a_table() {
    let db = open();
    let mut s = setup(&db).await;
    let out = ok(&mut s, PSQL_D_LOOKUP).await;
    assert_eq!(out.rows.len(), 1, "{out:?}");
    let oid = out.value().unwrap();
    assert_eq!(out.text()[0][2], Some("users".into()));
    let mut results = Vec::new();
    for query in PSQL_D {
        let sql = query.replace("{oid}", &oid);
        match run(&mut s, &sql).await {
            Ok(out) => results.push(out),
            Err(e) => panic!("{e:?}\n{sql}"),
        }
    }
    // Columns: name, type, default, not null.
    let columns = results[1].text();
    assert_eq!(columns.len(), 3);
    assert_eq!(
        columns[0][0..4],
        [
            Some("id".into()),
            Some("bigint".into()),
            Some("nextval('users_id_seq'::regclass)".into()),
            Some("t".into())
        ]
    );
    assert_eq!(
        columns[1][0..4],
        [
            Some("name".into()),
            Some("character varying(20)".into()),
            None,
            Some("t".into())
        ]
    );
    assert_eq!(
        columns[2][0..4],
        [
            Some("score".into()),
            Some("integer".into()),
            Some("0".into()),
            Some("f".into())
        ]
    );
    // Indexes: primary key first.
    let indexes = results[2].text();
    assert_eq!(indexes.len(), 2, "{indexes:?}");
    assert_eq!(indexes[0][0], Some("users_pkey".into()));
    assert_eq!(indexes[0][1], Some("t".into()));
    assert_eq!(indexes[0][6], Some("PRIMARY KEY (id)".into()));
    assert_eq!(indexes[1][0], Some("users_name_key".into()));
    assert_eq!(
        indexes[1][5],
        Some("CREATE UNIQUE INDEX users_name_key ON public.users USING btree (name)".into())
    );
    // Policies, statistics, publications, inheritance: none.
    for out in &results[3..] {
        assert!(out.rows.is_empty(), "{out:?}");
    }
}

#[tokio::test]
async fn sqlalchemy_has_table() {
    let db = open();
    let mut s = setup(&db).await;
    let desc = s.describe(SQLALCHEMY_HAS_TABLE, &[]).await.unwrap();
    assert_eq!(desc.params.len(), 7);
    let params = [
        Some("users"),
        Some("r"),
        Some("p"),
        Some("f"),
        Some("v"),
        Some("m"),
        Some("pg_catalog"),
    ];
    let out = run_params(&mut s, SQLALCHEMY_HAS_TABLE, &params)
        .await
        .unwrap();
    assert_eq!(out.text(), vec![vec![Some("users".into())]]);
    let params = [
        Some("missing"),
        Some("r"),
        Some("p"),
        Some("f"),
        Some("v"),
        Some("m"),
        Some("pg_catalog"),
    ];
    assert!(
        run_params(&mut s, SQLALCHEMY_HAS_TABLE, &params)
            .await
            .unwrap()
            .rows
            .is_empty()
    );
}

#[tokio::test]
async fn information_schema_and_regclass() {
    let db = open();
    let mut s = setup(&db).await;
    let out = ok(&mut s, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name").await;
    assert_eq!(
        out.text(),
        vec![vec![Some("other".into())], vec![Some("users".into())]]
    );
    let out = ok(&mut s, "SELECT column_name, data_type, character_maximum_length FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position").await;
    assert_eq!(
        out.text()[1],
        vec![
            Some("name".into()),
            Some("character varying".into()),
            Some("20".into())
        ]
    );
    let out = ok(&mut s, "SELECT 'users'::regclass::oid = (SELECT oid FROM pg_class WHERE relname = 'users'), 'users'::regclass::oid::regclass").await;
    assert_eq!(out.text()[0], vec![Some("t".into()), Some("users".into())]);
    // The catalog follows DDL.
    ok(&mut s, "DROP TABLE other").await;
    let out = ok(
        &mut s,
        "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'",
    )
    .await;
    assert_eq!(out.value(), Some("1".into()));
}

#[tokio::test]
async fn generate_series_in_from() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "create table pgbench_branches(bid int not null,bbalance int,filler char(88))",
    )
    .await;
    let out = ok(&mut s, "insert into pgbench_branches(bid,bbalance) select bid, 0 from generate_series(1, 5) as bid").await;
    assert_eq!(out.tag, "INSERT 0 5");
    let out = ok(
        &mut s,
        "SELECT g, g * 2 AS twice FROM generate_series(10, 1, -3) AS g",
    )
    .await;
    assert_eq!(out.oids(), vec![23, 23]);
    assert_eq!(
        out.text()
            .iter()
            .map(|r| r[0].clone().unwrap())
            .collect::<Vec<_>>(),
        vec!["10", "7", "4", "1"]
    );
}

/// What psql 15's `\l` sends.
const PSQL_L: &str = r#"SELECT
  d.datname as "Name",
  pg_catalog.pg_get_userbyid(d.datdba) as "Owner",
  pg_catalog.pg_encoding_to_char(d.encoding) as "Encoding",
  CASE d.datlocprovider WHEN 'c' THEN 'libc' WHEN 'i' THEN 'icu' END AS "Locale Provider",
  d.datcollate as "Collate",
  d.datctype as "Ctype",
  d.daticulocale as "ICU Locale",
  pg_catalog.array_to_string(d.datacl, E'\n') AS "Access privileges"
FROM pg_catalog.pg_database d
ORDER BY 1;"#;

#[tokio::test]
async fn psql_l_lists_the_database() {
    let db = open();
    let mut s = setup(&db).await;
    let out = ok(&mut s, PSQL_L).await;
    assert_eq!(
        out.text(),
        vec![vec![
            Some("mycelium".into()),
            Some("mycelium".into()),
            Some("UTF8".into()),
            Some("libc".into()),
            Some("C".into()),
            Some("C".into()),
            None,
            None,
        ]]
    );
}

/// The queries psql 15 sends for `\du`, `\dt+`, `\l+` and `\df` (copied from `psql -E`) run
/// on a SQLite node: roles with their memberships (`ARRAY(subquery)`), table and database
/// sizes from SQLite's pages (`pg_size_pretty` as Postgres prints), no functions.
#[tokio::test]
async fn psql_plus_meta_commands_answer() {
    let db = open();
    let mut s = db.backend.session();
    ok(&mut s, "CREATE TABLE sized (id int PRIMARY KEY, body text)").await;
    ok(
        &mut s,
        "INSERT INTO sized SELECT g, repeat('x', 500) FROM generate_series(1, 100) g",
    )
    .await;
    let roles = ok(
        &mut s,
        "SELECT r.rolname, r.rolsuper, r.rolinherit,
  r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
  r.rolconnlimit, r.rolvaliduntil,
  ARRAY(SELECT b.rolname
        FROM pg_catalog.pg_auth_members m
        JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid)
        WHERE m.member = r.oid) as memberof
, r.rolreplication
, r.rolbypassrls
FROM pg_catalog.pg_roles r
WHERE r.rolname !~ '^pg_'
ORDER BY 1;",
    )
    .await;
    let row = &roles.text()[0];
    assert_eq!(row[0].as_deref(), Some("mycelium"));
    assert_eq!(row[7], None, "rolvaliduntil");
    assert_eq!(row[8].as_deref(), Some("{}"), "memberof");
    assert_eq!(roles.columns[8].type_oid, 1003, "memberof is name[]");

    let tables = ok(
        &mut s,
        "SELECT n.nspname as \"Schema\",
  c.relname as \"Name\",
  pg_catalog.pg_size_pretty(pg_catalog.pg_table_size(c.oid)) as \"Size\",
  pg_catalog.pg_table_size(c.oid) as \"Bytes\"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r','p','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;",
    )
    .await;
    let row = &tables.text()[0];
    assert_eq!(row[1].as_deref(), Some("sized"));
    let bytes: i64 = row[3].as_deref().unwrap_or("0").parse().unwrap_or(0);
    // 100 rows of 500 bytes take at least 50 kB of pages.
    assert!(bytes >= 50_000, "{row:?}");
    assert!(
        row[2].as_deref().is_some_and(|v| v.ends_with(" kB")),
        "{row:?}"
    );

    let databases = ok(
        &mut s,
        "SELECT d.datname as \"Name\",
       CASE WHEN pg_catalog.has_database_privilege(d.datname, 'CONNECT')
          OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE')
            THEN pg_catalog.pg_size_pretty(pg_catalog.pg_database_size(d.datname))
            ELSE 'No Access'
       END as \"Size\",
       t.spcname as \"Tablespace\"
FROM pg_catalog.pg_database d
  JOIN pg_catalog.pg_tablespace t on d.dattablespace = t.oid
ORDER BY 1;",
    )
    .await;
    let row = &databases.text()[0];
    assert!(
        row[1].as_deref().is_some_and(|v| v.ends_with(" kB")),
        "{row:?}"
    );
    assert_eq!(row[2].as_deref(), Some("pg_default"));

    let functions = ok(
        &mut s,
        "SELECT n.nspname as \"Schema\",
  p.proname as \"Name\",
  pg_catalog.pg_get_function_result(p.oid) as \"Result data type\",
  pg_catalog.pg_get_function_arguments(p.oid) as \"Argument data types\"
FROM pg_catalog.pg_proc p
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE pg_catalog.pg_function_is_visible(p.oid)
      AND n.nspname <> 'pg_catalog'
      AND n.nspname <> 'information_schema'
ORDER BY 1, 2, 4;",
    )
    .await;
    assert!(functions.text().is_empty());

    let arrays = ok(
        &mut s,
        "SELECT ARRAY(SELECT id FROM sized WHERE id <= 3 ORDER BY id DESC), \
         ARRAY(SELECT body FROM sized WHERE false)",
    )
    .await;
    assert_eq!(
        arrays.text()[0],
        [Some("{3,2,1}".to_owned()), Some("{}".to_owned())]
    );
    assert_eq!(arrays.columns[0].type_oid, 1007, "int4[]");
}
