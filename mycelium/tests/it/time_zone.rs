//! The session's `TimeZone` reaches the nodes: `timestamptz` values are shown in it and input
//! without an offset is read in it, while what is stored stays the same instant. Expected
//! texts are PostgreSQL 15's.

use std::time::Duration;

use crate::clients::{psql, run};
use crate::harness::{Backend, Cluster, PASSWORD, sqlstate, text_rows};
use crate::processes::on_every_backend;

on_every_backend!(
    timestamptz_in_the_session_zone,
    zone_changes_are_checked_and_roll_back,
    copy_reads_in_the_session_zone,
    sessions_keep_their_own_zones,
    startup_zone_from_libpq,
    merged_across_nodes_in_the_session_zone,
);

/// Every row's `at`, by id, as text (the simple protocol: the text the node printed).
async fn shown(client: &tokio_postgres::Client) -> Vec<String> {
    text_rows(client, "SELECT id, at FROM zoned ORDER BY id").await
}

async fn show_time_zone(client: &tokio_postgres::Client) -> String {
    client
        .query_one("SHOW TimeZone", &[])
        .await
        .expect("SHOW TimeZone")
        .get(0)
}

async fn create_zoned(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE TABLE zoned (id int PRIMARY KEY, at timestamptz); \
             INSERT INTO zoned VALUES (1, '2024-06-01 10:00')",
        )
        .await
        .expect("create zoned");
}

async fn timestamptz_in_the_session_zone(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    create_zoned(&client).await;
    client
        .batch_execute(
            "SET TimeZone = 'europe/paris'; \
             INSERT INTO zoned VALUES (2, '2024-06-01 10:00'); \
             INSERT INTO zoned VALUES (3, '2024-03-31 02:30'); \
             INSERT INTO zoned VALUES (4, '2024-10-27 02:30'); \
             INSERT INTO zoned VALUES (5, '2024-06-01 10:00+00')",
        )
        .await
        .expect("inserts in Europe/Paris");
    assert_eq!(show_time_zone(&client).await, "Europe/Paris");
    // 02:30 on 31 March does not exist in Paris (clocks go forward): read with the offset
    // before the change. 02:30 on 27 October happens twice: the later one is meant.
    assert_eq!(
        shown(&client).await,
        [
            "1|2024-06-01 12:00:00+02",
            "2|2024-06-01 10:00:00+02",
            "3|2024-03-31 03:30:00+02",
            "4|2024-10-27 02:30:00+01",
            "5|2024-06-01 12:00:00+02",
        ]
    );
    // The binary format carries the instant, whatever the zone.
    let at: chrono::DateTime<chrono::Utc> = client
        .query_one("SELECT at FROM zoned WHERE id = 2", &[])
        .await
        .expect("binary at")
        .get(0);
    assert_eq!(at.to_rfc3339(), "2024-06-01T08:00:00+00:00");
    client
        .batch_execute("SET TIME ZONE -3.5")
        .await
        .expect("numeric zone");
    assert_eq!(show_time_zone(&client).await, "<-03:30>+03:30");
    assert_eq!(shown(&client).await[0], "1|2024-06-01 06:30:00-03:30");
    client
        .batch_execute("SET TimeZone = 'UTC+5'")
        .await
        .expect("POSIX zone");
    assert_eq!(shown(&client).await[0], "1|2024-06-01 05:00:00-05");
    // What is stored is the instant: in UTC every row shows what was meant.
    client.batch_execute("RESET TimeZone").await.expect("reset");
    assert_eq!(show_time_zone(&client).await, "UTC");
    assert_eq!(
        shown(&client).await,
        [
            "1|2024-06-01 10:00:00+00",
            "2|2024-06-01 08:00:00+00",
            "3|2024-03-31 01:30:00+00",
            "4|2024-10-27 01:30:00+00",
            "5|2024-06-01 10:00:00+00",
        ]
    );
}

async fn zone_changes_are_checked_and_roll_back(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    create_zoned(&client).await;
    client
        .batch_execute("SET TimeZone = 'America/St_Johns'")
        .await
        .expect("set St_Johns");
    let error = client
        .batch_execute("SET TimeZone = 'Nowhere/Land'")
        .await
        .expect_err("an unknown zone");
    assert_eq!(sqlstate(&error), "22023");
    assert!(
        error.as_db_error().is_some_and(
            |e| e.message() == "invalid value for parameter \"TimeZone\": \"Nowhere/Land\""
        ),
        "{error:?}"
    );
    assert_eq!(show_time_zone(&client).await, "America/St_Johns");
    assert_eq!(shown(&client).await, ["1|2024-06-01 07:30:00-02:30"]);
    client
        .batch_execute("BEGIN; SET TimeZone = 'Asia/Tokyo'")
        .await
        .expect("set in a transaction");
    assert_eq!(shown(&client).await, ["1|2024-06-01 19:00:00+09"]);
    client.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(show_time_zone(&client).await, "America/St_Johns");
    assert_eq!(shown(&client).await, ["1|2024-06-01 07:30:00-02:30"]);
    client
        .batch_execute("BEGIN; SET LOCAL TimeZone = 'Asia/Kolkata'")
        .await
        .expect("set local");
    assert_eq!(shown(&client).await, ["1|2024-06-01 15:30:00+05:30"]);
    client.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(shown(&client).await, ["1|2024-06-01 07:30:00-02:30"]);
}

async fn copy_reads_in_the_session_zone(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    create_zoned(&client).await;
    client
        .batch_execute("SET TimeZone = 'America/St_Johns'")
        .await
        .expect("set St_Johns");
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY zoned (id, at) FROM STDIN")
        .await
        .expect("copy in");
    let mut sink = Box::pin(sink);
    use futures::SinkExt;
    sink.send(bytes::Bytes::from_static(
        b"2\t2024-06-01 10:00\n3\t2024-01-15 10:00\n",
    ))
    .await
    .expect("copy data");
    assert_eq!(sink.as_mut().finish().await.expect("copy finish"), 2);
    client.batch_execute("RESET TimeZone").await.expect("reset");
    assert_eq!(
        shown(&client).await,
        [
            "1|2024-06-01 10:00:00+00",
            "2|2024-06-01 12:30:00+00",
            "3|2024-01-15 13:30:00+00",
        ]
    );
}

/// Node connections are shared between client sessions: each still sees its own zone.
async fn sessions_keep_their_own_zones(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let paris = cluster.connect().await;
    let utc = cluster.connect().await;
    create_zoned(&paris).await;
    paris
        .batch_execute("SET TimeZone = 'Europe/Paris'")
        .await
        .expect("set Paris");
    for _ in 0..20 {
        assert_eq!(shown(&paris).await, ["1|2024-06-01 12:00:00+02"]);
        assert_eq!(shown(&utc).await, ["1|2024-06-01 10:00:00+00"]);
    }
    utc.batch_execute("BEGIN; SET TimeZone = 'Asia/Tokyo'; SELECT 1; ROLLBACK")
        .await
        .expect("a rolled-back zone");
    for _ in 0..5 {
        assert_eq!(shown(&utc).await, ["1|2024-06-01 10:00:00+00"]);
        assert_eq!(shown(&paris).await, ["1|2024-06-01 12:00:00+02"]);
    }
}

/// libpq sends `PGTZ` as the startup parameter `TimeZone`, as JDBC sends the JVM's zone;
/// `PGOPTIONS` as `-c` switches in the parameter `options`.
async fn startup_zone_from_libpq(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    create_zoned(&client).await;
    let mut command = psql(&cluster, "disable", PASSWORD);
    command
        .env("PGTZ", "Asia/Kolkata")
        .args(["-c", "SHOW TimeZone", "-c", "SELECT at FROM zoned"]);
    let output = run(command, "psql with PGTZ", Duration::from_secs(60)).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Asia/Kolkata\n2024-06-01 15:30:00+05:30\n"
    );
    // The `-c` switches of the startup packet's options (PGOPTIONS) set parameters too.
    let mut command = psql(&cluster, "disable", PASSWORD);
    command
        .env(
            "PGOPTIONS",
            "-c TimeZone=America/St_Johns -c statement_timeout=7s",
        )
        .args([
            "-c",
            "SHOW TimeZone",
            "-c",
            "SHOW statement_timeout",
            "-c",
            "SELECT at FROM zoned",
        ]);
    let output = run(command, "psql with PGOPTIONS", Duration::from_secs(60)).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "America/St_Johns\n7s\n2024-06-01 07:30:00-02:30\n"
    );
}

/// The proxy prints what it merges (min/max over shards) in the client's zone too.
async fn merged_across_nodes_in_the_session_zone(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend) else {
        return;
    };
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE zsharded (id int PRIMARY KEY, at timestamptz) \
             WITH (mycelium.shard_keys = 'id', mycelium.shards = 6); \
             INSERT INTO zsharded SELECT i, timestamptz '2024-06-01 10:00+00' + i * interval '1 day' \
             FROM generate_series(1, 12) i; \
             SET TimeZone = 'Europe/Paris'",
        )
        .await
        .expect("sharded table");
    assert_eq!(
        text_rows(&client, "SELECT min(at), max(at), count(*) FROM zsharded").await,
        ["2024-06-02 12:00:00+02|2024-06-13 12:00:00+02|12"]
    );
    assert_eq!(
        text_rows(&client, "SELECT at FROM zsharded ORDER BY at DESC LIMIT 2").await,
        ["2024-06-13 12:00:00+02", "2024-06-12 12:00:00+02"]
    );
}
