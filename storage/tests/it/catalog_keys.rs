//! Keys and indexes in the emulated catalog: `pg_constraint` rows of primary keys, unique
//! constraints and foreign keys, `pg_index` and `pg_opclass`, serial sequences in `pg_class`,
//! `pg_sequence` and `pg_depend`. Expected values are what Postgres 15 answers for the same
//! tables, and the queries are those psql, SQLAlchemy 2 and Django send.

use crate::util::*;

const SCHEMA: &[&str] = &[
    "CREATE TABLE authors (id serial PRIMARY KEY, email text UNIQUE, name text NOT NULL)",
    "CREATE TABLE books (id bigint PRIMARY KEY, \
       author_id int NOT NULL REFERENCES authors(id) ON DELETE CASCADE, \
       title varchar(20), UNIQUE (author_id, title))",
    "CREATE INDEX books_title_idx ON books (title)",
];

async fn setup(db: &Db) -> mycelium_storage::SqliteSession {
    let mut s = db.backend.session();
    for sql in SCHEMA {
        ok(&mut s, sql).await;
    }
    s
}

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
async fn pg_constraint_has_primary_unique_and_foreign_keys() {
    let db = open();
    let mut s = setup(&db).await;
    let out = ok(
        &mut s,
        "SELECT con.conname, con.contype, cl.relname, con.conkey, con.confkey, \
           ref.relname, idx.relname, con.confupdtype, con.confdeltype, con.confmatchtype, \
           con.convalidated, pg_catalog.pg_get_constraintdef(con.oid, true) \
         FROM pg_catalog.pg_constraint con \
         JOIN pg_catalog.pg_class cl ON cl.oid = con.conrelid \
         LEFT JOIN pg_catalog.pg_class ref ON ref.oid = con.confrelid \
         LEFT JOIN pg_catalog.pg_class idx ON idx.oid = con.conindid \
         ORDER BY con.conname",
    )
    .await;
    assert_eq!(
        out.text(),
        rows(&[
            &[
                "authors_email_key",
                "u",
                "authors",
                "{2}",
                "NULL",
                "NULL",
                "authors_email_key",
                " ",
                " ",
                " ",
                "t",
                "UNIQUE (email)",
            ],
            &[
                "authors_pkey",
                "p",
                "authors",
                "{1}",
                "NULL",
                "NULL",
                "authors_pkey",
                " ",
                " ",
                " ",
                "t",
                "PRIMARY KEY (id)",
            ],
            &[
                "books_author_id_fkey",
                "f",
                "books",
                "{2}",
                "{1}",
                "authors",
                "authors_pkey",
                "a",
                "c",
                "s",
                "t",
                "FOREIGN KEY (author_id) REFERENCES authors(id) ON DELETE CASCADE",
            ],
            &[
                "books_author_id_title_key",
                "u",
                "books",
                "{2,3}",
                "NULL",
                "NULL",
                "books_author_id_title_key",
                " ",
                " ",
                " ",
                "t",
                "UNIQUE (author_id, title)",
            ],
            &[
                "books_pkey",
                "p",
                "books",
                "{1}",
                "NULL",
                "NULL",
                "books_pkey",
                " ",
                " ",
                " ",
                "t",
                "PRIMARY KEY (id)",
            ],
        ])
    );
}

#[tokio::test]
async fn pg_index_has_postgres_vectors_and_default_opclasses() {
    let db = open();
    let mut s = setup(&db).await;
    let out = ok(
        &mut s,
        "SELECT c.relname, i.indisunique, i.indisprimary, i.indnatts, i.indkey, \
           i.indcollation, i.indclass, i.indoption, am.amname \
         FROM pg_catalog.pg_index i \
         JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
         JOIN pg_catalog.pg_class t ON t.oid = i.indrelid \
         JOIN pg_catalog.pg_am am ON am.oid = c.relam \
         WHERE t.relname = 'books' ORDER BY c.relname",
    )
    .await;
    assert_eq!(
        out.text(),
        rows(&[
            &[
                "books_author_id_title_key",
                "t",
                "f",
                "2",
                "2 3",
                "0 100",
                "1978 3126",
                "0 0",
                "btree",
            ],
            &["books_pkey", "t", "t", "1", "1", "0", "3124", "0", "btree"],
            &[
                "books_title_idx",
                "f",
                "f",
                "1",
                "3",
                "100",
                "3126",
                "0",
                "btree"
            ],
        ])
    );
    let out = ok(
        &mut s,
        "SELECT oid, opcname, opcdefault, opcintype FROM pg_catalog.pg_opclass \
         WHERE oid IN (1978, 3124, 3126) ORDER BY oid",
    )
    .await;
    assert_eq!(
        out.text(),
        rows(&[
            &["1978", "int4_ops", "t", "23"],
            &["3124", "int8_ops", "t", "20"],
            &["3126", "text_ops", "t", "25"],
        ])
    );
}

#[tokio::test]
async fn foreign_keys_are_named_and_resolved_as_postgres_does() {
    let db = open();
    let mut s = db.backend.session();
    ok(
        &mut s,
        "CREATE TABLE parent (a int, b text, PRIMARY KEY (a, b), UNIQUE (b))",
    )
    .await;
    ok(
        &mut s,
        "CREATE TABLE child (x int, y text, \
           FOREIGN KEY (x, y) REFERENCES parent ON UPDATE SET NULL, \
           FOREIGN KEY (y) REFERENCES parent (b) ON DELETE RESTRICT, \
           FOREIGN KEY (y) REFERENCES parent (b))",
    )
    .await;
    let out = ok(
        &mut s,
        "SELECT conname, conkey, confkey, pg_get_constraintdef(oid) \
         FROM pg_catalog.pg_constraint WHERE contype = 'f' ORDER BY conname",
    )
    .await;
    assert_eq!(
        out.text(),
        rows(&[
            &[
                "child_x_y_fkey",
                "{1,2}",
                "{1,2}",
                "FOREIGN KEY (x, y) REFERENCES parent(a, b) ON UPDATE SET NULL",
            ],
            &[
                "child_y_fkey",
                "{2}",
                "{2}",
                "FOREIGN KEY (y) REFERENCES parent(b) ON DELETE RESTRICT",
            ],
            &[
                "child_y_fkey1",
                "{2}",
                "{2}",
                "FOREIGN KEY (y) REFERENCES parent(b)",
            ],
        ])
    );
}

/// SQLAlchemy 2's `get_foreign_keys` (parameters written inline).
const SQLALCHEMY_FOREIGN_KEYS: &str = "SELECT pg_catalog.pg_class.relname, pg_catalog.pg_constraint.conname, CASE WHEN (pg_catalog.pg_constraint.oid IS NOT NULL) THEN pg_catalog.pg_get_constraintdef(pg_catalog.pg_constraint.oid, true) END AS anon_1, nsp_ref.nspname, pg_catalog.pg_description.description 
FROM pg_catalog.pg_class LEFT OUTER JOIN pg_catalog.pg_constraint ON pg_catalog.pg_class.oid = pg_catalog.pg_constraint.conrelid AND pg_catalog.pg_constraint.contype = 'f'::VARCHAR LEFT OUTER JOIN pg_catalog.pg_class AS cls_ref ON cls_ref.oid = pg_catalog.pg_constraint.confrelid LEFT OUTER JOIN pg_catalog.pg_namespace AS nsp_ref ON cls_ref.relnamespace = nsp_ref.oid LEFT OUTER JOIN pg_catalog.pg_description ON pg_catalog.pg_description.objoid = pg_catalog.pg_constraint.oid AND pg_catalog.pg_description.classoid = CAST('pg_catalog.pg_constraint' AS REGCLASS) JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace 
WHERE pg_catalog.pg_class.relkind = ANY (ARRAY['r'::VARCHAR, 'p'::VARCHAR, 'f'::VARCHAR, 'v'::VARCHAR, 'm'::VARCHAR]) AND pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) AND pg_catalog.pg_namespace.nspname != 'pg_catalog'::VARCHAR AND pg_catalog.pg_class.relname IN ('authors', 'books') ORDER BY pg_catalog.pg_class.relname, pg_catalog.pg_constraint.conname";

/// psql 15's `\d authors` asks for the keys referencing the table this way.
const PSQL_REFERENCED_BY: &str = "SELECT conname, conrelid::pg_catalog.regclass AS ontable,
       pg_catalog.pg_get_constraintdef(oid, true) AS condef
  FROM pg_catalog.pg_constraint c
 WHERE confrelid IN (SELECT pg_catalog.pg_partition_ancestors('{oid}')
                     UNION ALL VALUES ('{oid}'::pg_catalog.regclass))
       AND contype = 'f' AND conparentid = 0
ORDER BY conname";

#[tokio::test]
async fn client_queries_for_foreign_keys() {
    let db = open();
    let mut s = setup(&db).await;
    let out = ok(&mut s, SQLALCHEMY_FOREIGN_KEYS).await;
    assert_eq!(
        out.text(),
        rows(&[
            &["authors", "NULL", "NULL", "NULL", "NULL"],
            &[
                "books",
                "books_author_id_fkey",
                "FOREIGN KEY (author_id) REFERENCES authors(id) ON DELETE CASCADE",
                "public",
                "NULL",
            ],
        ])
    );
    let oid = ok(
        &mut s,
        "SELECT oid FROM pg_catalog.pg_class WHERE relname = 'authors'",
    )
    .await
    .value()
    .unwrap();
    let out = ok(&mut s, &PSQL_REFERENCED_BY.replace("{oid}", &oid)).await;
    assert_eq!(
        out.text(),
        rows(&[&[
            "books_author_id_fkey",
            "books",
            "FOREIGN KEY (author_id) REFERENCES authors(id) ON DELETE CASCADE",
        ]])
    );
    // psql reads a table's foreign keys only when it has triggers, as both tables do in
    // Postgres.
    let out = ok(
        &mut s,
        "SELECT relname, relhastriggers FROM pg_catalog.pg_class \
         WHERE relkind = 'r' ORDER BY relname",
    )
    .await;
    assert_eq!(out.text(), rows(&[&["authors", "t"], &["books", "t"]]));
}

/// Django 5's `get_sequences` (the table name written inline).
const DJANGO_SEQUENCES: &str = "
            SELECT
                s.relname AS sequence_name,
                a.attname AS colname
            FROM
                pg_class s
                JOIN pg_depend d ON d.objid = s.oid
                    AND d.classid = 'pg_class'::regclass
                    AND d.refclassid = 'pg_class'::regclass
                JOIN pg_attribute a ON d.refobjid = a.attrelid
                    AND d.refobjsubid = a.attnum
                JOIN pg_class tbl ON tbl.oid = d.refobjid
                    AND tbl.relname = 'authors'
                    AND pg_catalog.pg_table_is_visible(tbl.oid)
            WHERE
                s.relkind = 'S';
        ";

#[tokio::test]
async fn serial_sequences_are_relations_owned_by_their_column() {
    let db = open();
    let mut s = setup(&db).await;
    let out = ok(&mut s, DJANGO_SEQUENCES).await;
    assert_eq!(out.text(), rows(&[&["authors_id_seq", "id"]]));
    let out = ok(
        &mut s,
        "SELECT format_type(seqtypid, NULL), seqstart, seqmin, seqmax, seqincrement, seqcycle \
         FROM pg_catalog.pg_sequence q JOIN pg_catalog.pg_class c ON c.oid = q.seqrelid \
         WHERE c.relname = 'authors_id_seq'",
    )
    .await;
    assert_eq!(
        out.text(),
        rows(&[&["integer", "1", "1", "2147483647", "1", "f"]])
    );
}
