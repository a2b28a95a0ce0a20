//! Users, roles and table privileges by SQL, through real clients: who may run what on which
//! table, grants through roles, revocation, password changes, persistence across a restart,
//! the audit trail, and hostile parameter values.

use futures::TryStreamExt;
use tokio_postgres::Client;

use crate::harness::{Cluster, sqlstate};

const KINDS: [&str; 5] = ["SELECT", "INSERT", "UPDATE", "DELETE", "DDL"];

/// One statement of `kind` on `table`; `n` keeps inserted keys and added columns unique.
fn statement(kind: &str, table: &str, n: usize) -> String {
    match kind {
        "SELECT" => format!("SELECT count(*) FROM {table}"),
        "INSERT" => format!("INSERT INTO {table} (id, v) VALUES ({n}, 'x')"),
        "UPDATE" => format!("UPDATE {table} SET v = 'y'"),
        "DELETE" => format!("DELETE FROM {table} WHERE id = -1"),
        _ => format!("ALTER TABLE {table} ADD COLUMN c{n} integer"),
    }
}

/// Runs `sql` as a prepared statement (the extended protocol): `Ok` or the SQLSTATE.
async fn outcome(client: &Client, sql: &str) -> Result<(), String> {
    client
        .execute(sql, &[])
        .await
        .map(|_| ())
        .map_err(|e| sqlstate(&e))
}

async fn superuser(cluster: &Cluster) -> Client {
    cluster.connect().await
}

async fn user(cluster: &Cluster, name: &str) -> Client {
    cluster
        .connect_as(name, &format!("{name}-pw"))
        .await
        .unwrap_or_else(|e| panic!("login as {name}: {e}"))
}

#[tokio::test]
async fn privilege_matrix() {
    let cluster = Cluster::start();
    let admin = superuser(&cluster).await;
    admin
        .batch_execute(
            "CREATE TABLE s (id int PRIMARY KEY, v text);
             INSERT INTO s VALUES (1, 'a');
             CREATE USER builder WITH PASSWORD 'builder-pw';
             CREATE USER reader PASSWORD 'reader-pw';
             CREATE USER writer PASSWORD 'writer-pw';
             CREATE USER boss PASSWORD 'boss-pw';
             CREATE USER member PASSWORD 'member-pw';
             CREATE USER nobody PASSWORD 'nobody-pw';
             CREATE ROLE staff;
             GRANT CREATE ON SCHEMA public TO builder;
             GRANT SELECT ON TABLE s TO reader;
             GRANT INSERT, UPDATE, DELETE ON s TO writer;
             GRANT ALL PRIVILEGES ON s TO boss;
             GRANT SELECT, INSERT ON s TO staff;
             GRANT staff TO member;",
        )
        .await
        .expect("set up users and grants");
    // A table created by a non-superuser is its own: all privileges, including DDL.
    let builder = user(&cluster, "builder").await;
    builder
        .batch_execute("CREATE TABLE b (id int PRIMARY KEY, v text); GRANT SELECT ON b TO reader")
        .await
        .expect("builder creates and shares its table");

    // Expected outcome per user and table, in KINDS order: true = allowed, false = 42501.
    let yes = true;
    let no = false;
    let matrix: [(&str, &str, [bool; 5]); 12] = [
        ("mycelium", "s", [yes, yes, yes, yes, yes]),
        ("mycelium", "b", [yes, yes, yes, yes, yes]),
        ("builder", "s", [no, no, no, no, no]),
        ("builder", "b", [yes, yes, yes, yes, yes]),
        ("reader", "s", [yes, no, no, no, no]),
        ("reader", "b", [yes, no, no, no, no]),
        // DELETE ... WHERE reads the table: without SELECT it is refused, as in Postgres.
        ("writer", "s", [no, yes, yes, no, no]),
        ("boss", "s", [yes, yes, yes, yes, no]),
        ("boss", "b", [no, no, no, no, no]),
        ("member", "s", [yes, yes, no, no, no]),
        ("nobody", "s", [no, no, no, no, no]),
        ("nobody", "b", [no, no, no, no, no]),
    ];
    let mut n = 100;
    let mut failures = Vec::new();
    for (name, table, expected) in matrix {
        let client = if name == "mycelium" {
            superuser(&cluster).await
        } else {
            user(&cluster, name).await
        };
        for (kind, allowed) in KINDS.iter().zip(expected) {
            n += 1;
            let sql = statement(kind, table, n);
            let got = outcome(&client, &sql).await;
            let want: Result<(), String> = if allowed {
                Ok(())
            } else {
                Err("42501".to_owned())
            };
            if got != want {
                failures.push(format!(
                    "{name} {kind} on {table}: got {got:?}, want {want:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The simple protocol and COPY are checked the same way.
    let nobody = user(&cluster, "nobody").await;
    let error = nobody
        .simple_query("SELECT * FROM s")
        .await
        .expect_err("simple query refused");
    assert_eq!(sqlstate(&error), "42501");
    assert_eq!(
        error.as_db_error().map(|e| e.message()),
        Some("permission denied for table s")
    );
    let error = nobody
        .copy_out("COPY s TO STDOUT")
        .await
        .err()
        .expect("COPY TO refused");
    assert_eq!(sqlstate(&error), "42501");
    let reader = user(&cluster, "reader").await;
    let stream = reader.copy_out("COPY s TO STDOUT").await.expect("COPY TO");
    let mut stream = std::pin::pin!(stream);
    let mut copied = Vec::new();
    while let Some(chunk) = stream.try_next().await.expect("COPY data") {
        copied.extend_from_slice(&chunk);
    }
    assert!(String::from_utf8_lossy(&copied).starts_with("1\t"));
    // After a refused COPY FROM, tokio-postgres leaves that connection out of step (it
    // sends Sync twice, as it would to Postgres): use one of its own.
    let error = user(&cluster, "reader")
        .await
        .copy_in::<_, bytes::Bytes>("COPY s FROM STDIN")
        .await
        .err()
        .expect("COPY FROM refused");
    assert_eq!(sqlstate(&error), "42501");
    // Subqueries and joins need SELECT on every table they read.
    assert_eq!(
        outcome(&reader, "SELECT * FROM s WHERE id IN (SELECT id FROM b)").await,
        Ok(())
    );
    let member = user(&cluster, "member").await;
    assert_eq!(
        outcome(&member, "SELECT * FROM s WHERE id IN (SELECT id FROM b)").await,
        Err("42501".to_owned())
    );
    // Catalogs stay readable, so drivers and psql work; system tables do not.
    assert_eq!(
        outcome(&nobody, "SELECT relname FROM pg_catalog.pg_class").await,
        Ok(())
    );
    assert_eq!(
        outcome(&nobody, "SELECT * FROM information_schema.tables").await,
        Ok(())
    );
    assert_eq!(
        outcome(&nobody, "SELECT * FROM __mycelium_roles").await,
        Err("42501".to_owned())
    );
    // Dropping its own table is the owner's right; the grants on it go with it.
    assert_eq!(outcome(&builder, "DROP TABLE b").await, Ok(()));
    assert_eq!(
        outcome(&builder, "CREATE TABLE b (id int PRIMARY KEY, v text)").await,
        Ok(())
    );
    assert_eq!(
        outcome(&reader, "SELECT * FROM b").await,
        Err("42501".to_owned())
    );
}

#[tokio::test]
async fn roles_grant_and_revocation_applies_to_the_next_statement() {
    let cluster = Cluster::start();
    let admin = superuser(&cluster).await;
    admin
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             CREATE ROLE analysts;
             CREATE USER ann PASSWORD 'ann-pw' IN ROLE analysts;
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO analysts;",
        )
        .await
        .expect("set up");
    let ann = user(&cluster, "ann").await;
    assert_eq!(outcome(&ann, "SELECT * FROM t").await, Ok(()));
    // A grant on all tables covers the tables that exist, as in Postgres.
    admin
        .batch_execute("CREATE TABLE later (id int PRIMARY KEY, v text)")
        .await
        .expect("create");
    assert_eq!(
        outcome(&ann, "SELECT * FROM later").await,
        Err("42501".to_owned())
    );
    // Revoked on one connection, refused on the next statement of another.
    admin
        .batch_execute("REVOKE SELECT ON t FROM analysts")
        .await
        .expect("revoke");
    assert_eq!(
        outcome(&ann, "SELECT * FROM t").await,
        Err("42501".to_owned())
    );
    admin
        .batch_execute("GRANT SELECT ON t TO analysts")
        .await
        .expect("grant again");
    assert_eq!(outcome(&ann, "SELECT * FROM t").await, Ok(()));
    admin
        .batch_execute("REVOKE analysts FROM ann")
        .await
        .expect("revoke membership");
    assert_eq!(
        outcome(&ann, "SELECT * FROM t").await,
        Err("42501".to_owned())
    );
    // A grant rolled back never happened.
    admin
        .batch_execute("BEGIN; GRANT SELECT ON t TO ann; ROLLBACK")
        .await
        .expect("rolled back grant");
    assert_eq!(
        outcome(&ann, "SELECT * FROM t").await,
        Err("42501".to_owned())
    );
    admin
        .batch_execute("BEGIN; GRANT SELECT ON t TO ann; COMMIT")
        .await
        .expect("committed grant");
    assert_eq!(outcome(&ann, "SELECT * FROM t").await, Ok(()));
    // Granting a role to a member of it would make a cycle.
    let error = admin
        .batch_execute("GRANT ann TO analysts; GRANT analysts TO ann")
        .await
        .expect_err("cycle refused");
    assert_eq!(sqlstate(&error), "0LP01");
    // Superuser by SQL: unchecked until taken away.
    admin
        .batch_execute("ALTER USER ann SUPERUSER")
        .await
        .expect("make superuser");
    assert_eq!(outcome(&ann, "SELECT * FROM later").await, Ok(()));
    admin
        .batch_execute("ALTER USER ann NOSUPERUSER")
        .await
        .expect("take it away");
    assert_eq!(
        outcome(&ann, "SELECT * FROM later").await,
        Err("42501".to_owned())
    );
    let rows = admin
        .simple_query("SHOW MYCELIUM USERS")
        .await
        .expect("show users");
    let listed: Vec<String> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("").to_owned())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect();
    assert!(
        listed
            .iter()
            .any(|r| r == "mycelium|config|yes|yes|scram-sha-256|||later, t"),
        "{listed:?}"
    );
    assert!(
        listed
            .iter()
            .any(|r| r == "ann|sql|no|yes|scram-sha-256||t: SELECT|"),
        "{listed:?}"
    );
    assert!(
        listed
            .iter()
            .any(|r| r == "analysts|sql|no|no|none||t: SELECT|"),
        "{listed:?}"
    );
}

#[tokio::test]
async fn only_superusers_manage_users_and_policies() {
    let cluster = Cluster::start();
    let admin = superuser(&cluster).await;
    admin
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             CREATE USER dev PASSWORD 'dev-pw';
             GRANT CREATE ON SCHEMA public TO dev;",
        )
        .await
        .expect("set up");
    let dev = user(&cluster, "dev").await;
    dev.batch_execute("CREATE TABLE mine (id int PRIMARY KEY, v text)")
        .await
        .expect("dev creates a table");
    for sql in [
        "CREATE USER mallory PASSWORD 'x'",
        "CREATE ROLE helpers",
        "ALTER USER dev SUPERUSER",
        "DROP USER dev",
        "GRANT dev TO mycelium",
        "GRANT SELECT ON t TO dev",
        "GRANT CREATE ON SCHEMA public TO PUBLIC",
        "CREATE TABLE sharded (id int PRIMARY KEY) WITH (mycelium.shard_keys = 'id', mycelium.shards = 4)",
        "ALTER TABLE mine SET (mycelium.replication_factor = 0.5)",
        "DROP TABLE t",
        "CREATE TABLE pg_sneaky (id int)",
    ] {
        let error = dev.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&error), "42501", "{sql}: {error:?}");
    }
    // An owner shares its own table; a user changes its own password.
    dev.batch_execute("GRANT SELECT ON mine TO PUBLIC; ALTER USER dev PASSWORD 'dev-pw2'")
        .await
        .expect("owner grants, user changes own password");
    // Bootstrap users live in the config file.
    let error = admin
        .batch_execute("DROP USER mycelium")
        .await
        .expect_err("config user");
    assert_eq!(sqlstate(&error), "55006");
    let error = admin
        .batch_execute("CREATE USER dev")
        .await
        .expect_err("exists");
    assert_eq!(sqlstate(&error), "42710");
    // A role that owns tables cannot be dropped until they are gone.
    let error = admin
        .batch_execute("DROP USER dev")
        .await
        .expect_err("owns mine");
    assert_eq!(sqlstate(&error), "2BP01");
    admin
        .batch_execute("DROP TABLE mine; DROP USER dev; DROP USER IF EXISTS dev")
        .await
        .expect("drop");
    let error = cluster
        .connect_as("dev", "dev-pw2")
        .await
        .expect_err("dropped user cannot log in");
    assert_eq!(sqlstate(&error), "28P01");
}

#[tokio::test]
async fn password_changes_take_effect_at_the_next_login() {
    let cluster = Cluster::start();
    let admin = superuser(&cluster).await;
    admin
        .batch_execute(
            "CREATE USER pat WITH PASSWORD 'old secret';
             CREATE ROLE nologin_role PASSWORD 'role-pw';",
        )
        .await
        .expect("create");
    let pat = cluster.connect_as("pat", "old secret").await.expect("old");
    admin
        .batch_execute("ALTER USER pat WITH PASSWORD 'new secret'")
        .await
        .expect("alter");
    let error = cluster
        .connect_as("pat", "old secret")
        .await
        .expect_err("old password refused");
    assert_eq!(sqlstate(&error), "28P01");
    cluster
        .connect_as("pat", "new secret")
        .await
        .expect("new password");
    // The open session stays.
    pat.simple_query("SELECT 1").await.expect("still connected");
    // A role without LOGIN cannot connect, whatever its password.
    let error = cluster
        .connect_as("nologin_role", "role-pw")
        .await
        .expect_err("NOLOGIN");
    assert_eq!(sqlstate(&error), "28P01");
    // A client may send a SCRAM verifier it computed itself, as Postgres allows.
    let verifier = passwd("hashed secret");
    admin
        .batch_execute(&format!("CREATE USER hashed PASSWORD '{verifier}'"))
        .await
        .expect("create with a verifier");
    cluster
        .connect_as("hashed", "hashed secret")
        .await
        .expect("login with the password behind the verifier");
    let error = admin
        .batch_execute("CREATE USER bad PASSWORD 'SCRAM-SHA-256$4096:zz$yy:xx'")
        .await
        .expect_err("broken verifier");
    assert_eq!(sqlstate(&error), "22023");
    // No password, plain or hashed, reaches the audit log.
    let audit = cluster.audit_log_containing("CREATE USER hashed");
    for secret in [
        "old secret",
        "new secret",
        "role-pw",
        "hashed secret",
        &verifier,
    ] {
        assert!(
            !audit.contains(secret),
            "audit log holds {secret:?}:\n{audit}"
        );
    }
    let line = audit
        .lines()
        .find(|l| l.contains("ALTER USER pat"))
        .expect("ALTER USER audited");
    let event: serde_json::Value = serde_json::from_str(line).expect("json line");
    assert_eq!(event["event"], "access");
    assert_eq!(event["user"], "mycelium");
    assert_eq!(event["statement"], "ALTER USER pat WITH PASSWORD '***'");
}

/// `mycelium passwd`'s verifier for `password`.
fn passwd(password: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mycelium"))
        .arg("passwd")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mycelium passwd");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write password");
    let output = child.wait_with_output().expect("passwd output");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn users_and_grants_survive_a_restart_and_are_audited() {
    let mut cluster = Cluster::start();
    let admin = superuser(&cluster).await;
    admin
        .batch_execute(
            "CREATE TABLE kept (id int PRIMARY KEY, v text);
             INSERT INTO kept VALUES (1, 'one');
             CREATE USER keeper PASSWORD 'keeper-pw';
             GRANT SELECT ON kept TO keeper;",
        )
        .await
        .expect("set up");
    let keeper = user(&cluster, "keeper").await;
    let error = keeper
        .batch_execute("DELETE FROM kept")
        .await
        .expect_err("no DELETE");
    assert_eq!(sqlstate(&error), "42501");
    let audit = cluster.audit_log_containing("\"event\":\"refused\"");
    let refused: serde_json::Value = serde_json::from_str(
        audit
            .lines()
            .find(|l| l.contains("\"refused\""))
            .expect("refused line"),
    )
    .expect("json");
    assert_eq!(refused["user"], "keeper");
    assert_eq!(refused["sqlstate"], "42501");
    assert_eq!(refused["message"], "permission denied for table kept");
    assert_eq!(refused["statement"], "DELETE FROM kept");
    for statement in [
        "CREATE USER keeper PASSWORD '***'",
        "GRANT SELECT ON kept TO keeper",
    ] {
        assert!(
            audit
                .lines()
                .any(|l| l.contains("\"access\"") && l.contains(statement)),
            "{statement} not audited:\n{audit}"
        );
    }
    drop(keeper);
    drop(admin);

    cluster.restart();
    let keeper = user(&cluster, "keeper").await;
    let v: String = keeper
        .query_one("SELECT v FROM kept WHERE id = 1", &[])
        .await
        .expect("grant kept across the restart")
        .get(0);
    assert_eq!(v, "one");
    assert_eq!(
        outcome(&keeper, "DELETE FROM kept").await,
        Err("42501".to_owned())
    );
    // Stored roles never show in the catalogs clients read.
    let admin = superuser(&cluster).await;
    let hidden: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_class WHERE relname LIKE '%mycelium%'",
            &[],
        )
        .await
        .expect("catalog")
        .get(0);
    assert_eq!(hidden, 0);
}

#[tokio::test]
async fn hostile_parameters_land_verbatim() {
    let cluster = Cluster::start();
    let admin = superuser(&cluster).await;
    admin
        .batch_execute(
            "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
             CREATE TABLE victim (id int PRIMARY KEY);
             INSERT INTO victim VALUES (1), (2);
             CREATE USER app PASSWORD 'app-pw';
             GRANT SELECT, INSERT ON notes TO app;",
        )
        .await
        .expect("set up");
    let app = user(&cluster, "app").await;
    let hostile = [
        "'",
        "''",
        "'; DROP TABLE victim; --",
        "Robert'); DROP TABLE victim;--",
        "1; DELETE FROM victim",
        "\\",
        "\\'",
        "\\\\' OR '1'='1",
        "\" OR \"\"=\"",
        "$$; DROP TABLE victim; $$",
        "$1",
        "%_*?",
        "E'\\x41'",
        "/* comment */ --",
        "line\nbreak\ttab\r",
        "ünïcödé 😀 ß 中文 \u{202e}rtl",
        "GRANT ALL ON victim TO app",
    ];
    for (i, value) in hostile.iter().enumerate() {
        let id = i32::try_from(i).expect("small");
        app.execute(
            "INSERT INTO notes (id, body) VALUES ($1, $2)",
            &[&id, value],
        )
        .await
        .unwrap_or_else(|e| panic!("insert {value:?}: {e}"));
    }
    for (i, value) in hostile.iter().enumerate() {
        let id = i32::try_from(i).expect("small");
        let body: String = app
            .query_one("SELECT body FROM notes WHERE id = $1", &[&id])
            .await
            .expect("read back")
            .get(0);
        assert_eq!(&body, value);
        let found: i64 = app
            .query_one("SELECT count(*) FROM notes WHERE body = $1", &[value])
            .await
            .expect("match by value")
            .get(0);
        assert_eq!(found, 1, "{value:?}");
    }
    let victims: i64 = admin
        .query_one("SELECT count(*) FROM victim", &[])
        .await
        .expect("victim intact")
        .get(0);
    assert_eq!(victims, 2);
    let notes: i64 = admin
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .expect("notes")
        .get(0);
    assert_eq!(notes, i64::try_from(hostile.len()).expect("small"));
    assert_eq!(
        outcome(&app, "SELECT * FROM victim").await,
        Err("42501".to_owned())
    );
}

/// `ALTER TABLE ... OWNER TO` moves a table to another role as Postgres does: only its owner
/// (or a member of the owning role) or a superuser may, only to a role the user belongs to,
/// and the new owner then has the owner's rights. Sequences take it and keep no owner.
#[tokio::test]
async fn alter_table_owner_to_moves_the_table() {
    let cluster = Cluster::start();
    let admin = superuser(&cluster).await;
    admin
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             CREATE USER alice PASSWORD 'alice-pw';
             CREATE USER bob PASSWORD 'bob-pw';
             CREATE ROLE team;
             CREATE SEQUENCE s",
        )
        .await
        .expect("setup");
    let alice = user(&cluster, "alice").await;
    let add_column = "ALTER TABLE t ADD COLUMN c integer";
    assert_eq!(outcome(&alice, add_column).await, Err("42501".to_owned()));
    assert_eq!(
        outcome(&alice, "ALTER TABLE t OWNER TO alice").await,
        Err("42501".to_owned()),
        "only the owner may give a table away"
    );

    admin
        .batch_execute("ALTER TABLE ONLY public.t OWNER TO alice;")
        .await
        .expect("a superuser gives the table away");
    assert_eq!(outcome(&alice, add_column).await, Ok(()));
    assert_eq!(
        outcome(&alice, "INSERT INTO t (id) VALUES (1)").await,
        Ok(())
    );
    assert_eq!(
        outcome(&alice, "ALTER TABLE t OWNER TO bob").await,
        Err("42501".to_owned()),
        "only to a role the owner belongs to"
    );
    admin
        .batch_execute("GRANT team TO alice")
        .await
        .expect("grant team");
    assert_eq!(outcome(&alice, "ALTER TABLE t OWNER TO team").await, Ok(()));
    let owner: String = admin
        .query_one(
            "SELECT owner FROM __mycelium_owners WHERE table_name = 't'",
            &[],
        )
        .await
        .expect("owner")
        .get(0);
    assert_eq!(owner, "team");
    // A member of the owning role still has the owner's rights.
    assert_eq!(outcome(&alice, "ALTER TABLE t DROP COLUMN c").await, Ok(()));

    assert_eq!(
        outcome(&admin, "ALTER TABLE t OWNER TO ghost").await,
        Err("42704".to_owned())
    );
    assert_eq!(
        outcome(&admin, "ALTER TABLE missing OWNER TO alice").await,
        Err("42P01".to_owned())
    );
    assert_eq!(
        outcome(&admin, "ALTER TABLE IF EXISTS missing OWNER TO alice").await,
        Ok(())
    );
    assert_eq!(
        outcome(&admin, "ALTER SEQUENCE s OWNER TO alice").await,
        Ok(())
    );
    assert_eq!(
        outcome(&admin, "ALTER TABLE public.s OWNER TO alice").await,
        Ok(())
    );
}
