//! Beyond pgbench's built-in scripts, on the three-SQLite-node Mycelium: point reads and writes
//! by shard key against rusqlite in-process on one file (the physical limit of the SQLite
//! path), a transfer across two nodes (two-phase commit) against one within a node, and reads
//! scattered over every node against the same read of one node. Mycelium is driven by pgbench
//! custom scripts (`-f`, `-M prepared`) with the per-transaction log for p50/p99.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use rusqlite::{Connection, OpenFlags};
use tempfile::TempDir;

use crate::mycelium::Mycelium;
use crate::parse::{parse_pgbench, percentile};
use crate::pgbench::{self, QueryMode, Script, Target};
use crate::procfs;
use crate::sharded::{primaries, shards_per_node};

pub const MYCELIUM: &str = "mycelium 3 sqlite nodes";
pub const RUSQLITE: &str = "rusqlite in-process, one file";

/// Rows of the transfer table per range shard (six shards: ids 0..6 × this).
const TRANSFER_SHARD_ROWS: i64 = 1000;
/// Rows per INSERT while loading.
const BATCH: i64 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// Point reads and writes by shard key: Mycelium against rusqlite.
    Point,
    /// A transfer across two nodes against one within a node.
    Transfer,
    /// count(*) and ORDER BY ... LIMIT over every node against one node.
    Scatter,
}

/// How a table of the scatter tests is laid out on the three nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Not sharded.
    Single,
    /// 6 shards, each with the default copies (two of the three nodes): each shard is read on
    /// its primary, which also holds copies of other shards and so filters its rows by shard.
    Copies,
    /// 6 shards, one copy each: every node reads its own rows, unfiltered.
    Spread,
}

impl Layout {
    const ALL: [Layout; 3] = [Layout::Single, Layout::Copies, Layout::Spread];

    fn table(self) -> &'static str {
        match self {
            Layout::Single => "scatter_single",
            Layout::Copies => "scatter_sharded",
            Layout::Spread => "scatter_spread",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    PointRead,
    PointWrite,
    Transfer { cross: bool },
    Count(Layout),
    TopTen(Layout),
}

/// One test of this module; point tests run on both setups, the others on Mycelium only.
#[derive(Clone, Copy, Debug)]
pub struct Test {
    pub section: Section,
    pub name: &'static str,
    kind: Kind,
    clients: u32,
}

const fn test(section: Section, name: &'static str, kind: Kind, clients: u32) -> Test {
    Test {
        section,
        name,
        kind,
        clients,
    }
}

pub const TESTS: [Test; 14] = [
    test(Section::Point, "point read c1", Kind::PointRead, 1),
    test(Section::Point, "point read c8", Kind::PointRead, 8),
    test(Section::Point, "point write c1", Kind::PointWrite, 1),
    test(Section::Point, "point write c8", Kind::PointWrite, 8),
    test(
        Section::Transfer,
        "transfer within one node c1",
        Kind::Transfer { cross: false },
        1,
    ),
    test(
        Section::Transfer,
        "transfer across two nodes (2PC) c1",
        Kind::Transfer { cross: true },
        1,
    ),
    test(
        Section::Transfer,
        "transfer within one node c8",
        Kind::Transfer { cross: false },
        8,
    ),
    test(
        Section::Transfer,
        "transfer across two nodes (2PC) c8",
        Kind::Transfer { cross: true },
        8,
    ),
    test(
        Section::Scatter,
        "count(*), unsharded table on one node c1",
        Kind::Count(Layout::Single),
        1,
    ),
    test(
        Section::Scatter,
        "count(*), 6 shards × 2 copies on 3 nodes c1",
        Kind::Count(Layout::Copies),
        1,
    ),
    test(
        Section::Scatter,
        "count(*), 6 shards × 1 copy on 3 nodes c1",
        Kind::Count(Layout::Spread),
        1,
    ),
    test(
        Section::Scatter,
        "ORDER BY x LIMIT 10, unsharded table on one node c1",
        Kind::TopTen(Layout::Single),
        1,
    ),
    test(
        Section::Scatter,
        "ORDER BY x LIMIT 10, 6 shards × 2 copies on 3 nodes c1",
        Kind::TopTen(Layout::Copies),
        1,
    ),
    test(
        Section::Scatter,
        "ORDER BY x LIMIT 10, 6 shards × 1 copy on 3 nodes c1",
        Kind::TopTen(Layout::Spread),
        1,
    ),
];

impl Test {
    /// What this test on `setup` is compared with: rusqlite for Mycelium's point operations,
    /// the transfer within one node for the one across nodes, the unsharded table for the
    /// sharded one.
    pub fn baseline(&self, setup: &str) -> Option<(&'static str, &'static str)> {
        let counterpart = |kind: Kind| {
            TESTS
                .iter()
                .find(|t| t.kind == kind && t.clients == self.clients)
                .map(|t| (t.name, MYCELIUM))
        };
        match self.kind {
            Kind::PointRead | Kind::PointWrite if setup == MYCELIUM => Some((self.name, RUSQLITE)),
            Kind::Transfer { cross: true } => counterpart(Kind::Transfer { cross: false }),
            Kind::Count(Layout::Copies | Layout::Spread) => {
                counterpart(Kind::Count(Layout::Single))
            }
            Kind::TopTen(Layout::Copies | Layout::Spread) => {
                counterpart(Kind::TopTen(Layout::Single))
            }
            _ => None,
        }
    }

    pub fn setups(&self) -> &'static [&'static str] {
        if self.section == Section::Point {
            &[MYCELIUM, RUSQLITE]
        } else {
            &[MYCELIUM]
        }
    }
}

/// One run of one test on one setup.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OpMeasurement {
    pub section: Section,
    pub test: &'static str,
    pub setup: &'static str,
    pub round: u32,
    pub clients: u32,
    pub ops_per_s: f64,
    pub operations: u64,
    pub failed: u64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// CPU of the process that did the work (mycelium, or this process for rusqlite) per op.
    pub cpu_us_per_op: f64,
    /// Transactions Mycelium's coordinator committed with two-phase commit during the run.
    pub two_phase_commits: Option<f64>,
}

/// The tables, scripts and baseline file of this module, ready to measure.
pub struct Prepared {
    rows: i64,
    scripts: Vec<(String, PathBuf)>,
    baseline: PathBuf,
    /// Pgbench logs and scripts; the rusqlite file.
    dir: TempDir,
    pub notes: Vec<String>,
}

/// Creates and loads the tables on `mycelium` (three SQLite nodes) and the rusqlite file with
/// the very schema the nodes hold; writes the scripts.
pub async fn prepare(mycelium: &Mycelium, rows: i64) -> anyhow::Result<Prepared> {
    let client = mycelium.target().connect().await?;
    let ddl = [
        "CREATE TABLE point_kv (id bigint PRIMARY KEY, v bigint NOT NULL, pad text NOT NULL) \
         WITH (mycelium.shard_keys = 'id', mycelium.shards = 6)"
            .to_owned(),
        format!(
            "CREATE TABLE transfer_accounts (id bigint PRIMARY KEY, balance bigint NOT NULL) \
             WITH (mycelium.shard_keys = 'id', mycelium.range_sharding = true, \
             mycelium.ranges = '{}', mycelium.shards = 6)",
            (1..6)
                .map(|i| (i * TRANSFER_SHARD_ROWS).to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        "CREATE TABLE scatter_sharded (id bigint PRIMARY KEY, x bigint NOT NULL, pad text NOT \
         NULL) WITH (mycelium.shard_keys = 'id', mycelium.shards = 6)"
            .to_owned(),
        "CREATE INDEX scatter_sharded_x ON scatter_sharded (x)".to_owned(),
        "CREATE TABLE scatter_spread (id bigint PRIMARY KEY, x bigint NOT NULL, pad text NOT \
         NULL) WITH (mycelium.shard_keys = 'id', mycelium.shards = 6, \
         mycelium.replication_factor = 0.3)"
            .to_owned(),
        "CREATE INDEX scatter_spread_x ON scatter_spread (x)".to_owned(),
        "CREATE TABLE scatter_single (id bigint PRIMARY KEY, x bigint NOT NULL, pad text NOT \
         NULL)"
            .to_owned(),
        "CREATE INDEX scatter_single_x ON scatter_single (x)".to_owned(),
    ];
    for statement in &ddl {
        client
            .batch_execute(statement)
            .await
            .with_context(|| format!("{statement} failed"))?;
    }
    let pad = "x".repeat(32);
    load(&client, "point_kv (id, v, pad)", 1, rows, |id| {
        format!("({id}, 0, '{pad}')")
    })
    .await?;
    load(
        &client,
        "transfer_accounts (id, balance)",
        0,
        6 * TRANSFER_SHARD_ROWS - 1,
        |id| format!("({id}, 1000)"),
    )
    .await?;
    // x: a permutation of the ids, so ORDER BY x has to look at every node.
    for table in Layout::ALL.map(Layout::table) {
        load(&client, &format!("{table} (id, x, pad)"), 1, rows, |id| {
            format!("({id}, {}, '{pad}')", (id * 7919) % rows)
        })
        .await?;
    }

    let mut notes = Vec::new();
    let transfer = primaries(&client, "transfer_accounts").await?;
    let (from_shard, from_node) = transfer[0].clone();
    let (to_shard, to_node) = transfer
        .iter()
        .find(|(_, node)| *node != from_node)
        .cloned()
        .context("every shard of transfer_accounts is on one node: no cross-node transfer")?;
    let range = |shard: u32| {
        let low = i64::from(shard) * TRANSFER_SHARD_ROWS;
        (low, low + TRANSFER_SHARD_ROWS - 1)
    };
    notes.push(format!(
        "Transfers: transfer_accounts is range-sharded (6 shards of {TRANSFER_SHARD_ROWS} ids); \
         within one node both accounts are random ids of shard {from_shard} ({from_node}), \
         across nodes one is of shard {from_shard} ({from_node}) and one of shard {to_shard} \
         ({to_node})."
    ));
    for table in ["point_kv", "scatter_sharded", "scatter_spread"] {
        notes.push(format!(
            "{table}: 6 hash shards by id, primaries {}.",
            shards_per_node(&primaries(&client, table).await?)
        ));
    }
    let pull = |(low, high): (i64, i64), name: &str| format!("\\set {name} random({low}, {high})");
    let transfer_script = |a: (i64, i64), b: (i64, i64)| {
        format!(
            "{}\n{}\nBEGIN;\nUPDATE transfer_accounts SET balance = balance - 1 WHERE id = :a;\n\
             UPDATE transfer_accounts SET balance = balance + 1 WHERE id = :b;\nCOMMIT;\n",
            pull(a, "a"),
            pull(b, "b")
        )
    };
    let dir = tempfile::Builder::new()
        .prefix("mycelium-bench-workloads-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let texts = [
        (
            "point_read",
            format!("\\set id random(1, {rows})\nSELECT v FROM point_kv WHERE id = :id;\n"),
        ),
        (
            "point_write",
            format!("\\set id random(1, {rows})\nUPDATE point_kv SET v = v + 1 WHERE id = :id;\n"),
        ),
        (
            "transfer_same",
            transfer_script(range(from_shard), range(from_shard)),
        ),
        (
            "transfer_cross",
            transfer_script(range(from_shard), range(to_shard)),
        ),
    ];
    let scatter = Layout::ALL.into_iter().flat_map(|layout| {
        let table = layout.table();
        [
            (
                format!("count_{table}"),
                format!("SELECT count(*) FROM {table};\n"),
            ),
            (
                format!("top_{table}"),
                format!("SELECT id, x FROM {table} ORDER BY x LIMIT 10;\n"),
            ),
        ]
    });
    let mut scripts = Vec::new();
    for (name, text) in texts
        .into_iter()
        .map(|(name, text)| (name.to_owned(), text))
        .chain(scatter)
    {
        let path = dir.path().join(format!("{name}.sql"));
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        scripts.push((name, path));
    }

    let baseline = dir.path().join("baseline.sqlite");
    let schema = node_schema(&mycelium.data_dir().join("n1.sqlite"), "point_kv")?;
    let path = baseline.clone();
    tokio::task::spawn_blocking(move || create_baseline(&path, &schema, rows))
        .await
        .context("the rusqlite loader panicked")??;
    Ok(Prepared {
        rows,
        scripts,
        baseline,
        dir,
        notes,
    })
}

async fn load(
    client: &tokio_postgres::Client,
    table_columns: &str,
    first: i64,
    last: i64,
    row: impl Fn(i64) -> String,
) -> anyhow::Result<()> {
    let mut start = first;
    while start <= last {
        let end = (start + BATCH - 1).min(last);
        let values: Vec<String> = (start..=end).map(&row).collect();
        client
            .batch_execute(&format!(
                "INSERT INTO {table_columns} VALUES {}",
                values.join(", ")
            ))
            .await
            .with_context(|| format!("loading {table_columns} failed at {start}"))?;
        start = end + 1;
    }
    Ok(())
}

/// The `CREATE` statements of `table` and its indexes as a node's SQLite file holds them.
fn node_schema(file: &Path, table: &str) -> anyhow::Result<Vec<String>> {
    let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", file.display()))?;
    let mut statement = conn.prepare(
        "SELECT sql FROM sqlite_master WHERE tbl_name = ?1 AND sql IS NOT NULL \
         ORDER BY type = 'table' DESC",
    )?;
    let schema = statement
        .query_map([table], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot read the schema of {table} in {}", file.display()))?;
    anyhow::ensure!(
        !schema.is_empty(),
        "{} has no table {table}",
        file.display()
    );
    Ok(schema)
}

/// A connection as a Mycelium node opens its file: WAL, `synchronous = FULL`, foreign keys.
fn open_like_a_node(file: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

fn create_baseline(file: &Path, schema: &[String], rows: i64) -> anyhow::Result<()> {
    let mut conn = open_like_a_node(file)?;
    for statement in schema {
        conn.execute_batch(statement)
            .with_context(|| format!("{statement} failed on the baseline"))?;
    }
    let pad = "x".repeat(32);
    let txn = conn.transaction()?;
    {
        let mut insert = txn.prepare("INSERT INTO point_kv (id, v, pad) VALUES (?1, 0, ?2)")?;
        for id in 1..=rows {
            insert.execute(rusqlite::params![id, pad])?;
        }
    }
    txn.commit().context("cannot load the baseline")?;
    Ok(())
}

/// The same point operations as the pgbench scripts, in `clients` threads with a connection
/// each, for `seconds`; returns operations and sorted latencies (ns). Writers take an
/// in-process mutex around each write, as one process sharing a file would: SQLite's own
/// busy handler sleeps (1, 2, 5, 10 ms ...) when writers collide, which is not the file's limit.
fn rusqlite_run(
    file: &Path,
    write: bool,
    rows: i64,
    clients: u32,
    seconds: u32,
) -> anyhow::Result<(u64, Vec<u64>, Duration)> {
    let sql = if write {
        "UPDATE point_kv SET v = v + 1 WHERE id = ?1"
    } else {
        "SELECT v FROM point_kv WHERE id = ?1"
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(u64::from(seconds));
    let writer = Mutex::new(());
    let writer = &writer;
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(move || -> anyhow::Result<Vec<u64>> {
                    let conn = open_like_a_node(file)?;
                    let mut statement = conn.prepare(sql)?;
                    let mut rng = rand::rng();
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let id: i64 = rng.random_range(1..=rows);
                        let begun = Instant::now();
                        if write {
                            let _turn = writer
                                .lock()
                                .map_err(|_| anyhow::anyhow!("a rusqlite writer panicked"))?;
                            statement.execute([id])?;
                        } else {
                            let _: i64 = statement.query_row([id], |row| row.get(0))?;
                        }
                        latencies.push(begun.elapsed().as_nanos() as u64);
                    }
                    Ok(latencies)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .map_err(|_| anyhow::anyhow!("a rusqlite thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let elapsed = started.elapsed();
    let mut latencies: Vec<u64> = results.into_iter().flatten().collect();
    latencies.sort_unstable();
    Ok((latencies.len() as u64, latencies, elapsed))
}

impl Prepared {
    fn script(&self, test: &Test) -> anyhow::Result<&Path> {
        let name = match test.kind {
            Kind::PointRead => "point_read".to_owned(),
            Kind::PointWrite => "point_write".to_owned(),
            Kind::Transfer { cross: false } => "transfer_same".to_owned(),
            Kind::Transfer { cross: true } => "transfer_cross".to_owned(),
            Kind::Count(layout) => format!("count_{}", layout.table()),
            Kind::TopTen(layout) => format!("top_{}", layout.table()),
        };
        self.scripts
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, path)| path.as_path())
            .with_context(|| format!("no script {name}"))
    }

    /// One run of `test` on `setup`.
    pub async fn measure(
        &self,
        mycelium: &Mycelium,
        test: &Test,
        setup: &'static str,
        round: u32,
        seconds: u32,
    ) -> anyhow::Result<OpMeasurement> {
        let ticks = procfs::clock_ticks_per_second();
        if setup == RUSQLITE {
            let before = procfs::self_stat()?.own;
            let file = self.baseline.clone();
            let (write, rows, clients) = (test.kind == Kind::PointWrite, self.rows, test.clients);
            let (operations, latencies, elapsed) = tokio::task::spawn_blocking(move || {
                rusqlite_run(&file, write, rows, clients, seconds)
            })
            .await
            .context("the rusqlite run panicked")??;
            let cpu = (procfs::self_stat()?.own.saturating_sub(before)) as f64 / ticks;
            return Ok(OpMeasurement {
                section: test.section,
                test: test.name,
                setup,
                round,
                clients: test.clients,
                ops_per_s: operations as f64 / elapsed.as_secs_f64(),
                operations,
                failed: 0,
                p50_us: percentile(&latencies, 50.0).map(|ns| ns as f64 / 1000.0),
                p99_us: percentile(&latencies, 99.0).map(|ns| ns as f64 / 1000.0),
                cpu_us_per_op: per_op(cpu, operations),
                two_phase_commits: None,
            });
        }
        let two_phase = "mycelium_txn_commits_total{protocol=\"2pc\"}";
        let script = Script {
            file: self.script(test)?,
            mode: QueryMode::Prepared,
            clients: test.clients,
            threads: test.clients.min(2),
        };
        let logs = self.dir.path().join("logs");
        std::fs::create_dir_all(&logs).context("cannot create the pgbench log directory")?;
        let commits_before = mycelium.metric(two_phase).await?;
        let before = procfs::process_ticks(mycelium.pid)?;
        let target: Target = mycelium.target();
        let (output, latencies) = pgbench::measure_script(&target, &script, seconds, &logs).await?;
        let cpu = (procfs::process_ticks(mycelium.pid)?.saturating_sub(before)) as f64 / ticks;
        let commits = mycelium.metric(two_phase).await? - commits_before;
        anyhow::ensure!(output.success, "pgbench failed: {}", output.describe());
        let summary = parse_pgbench(&output.stdout).map_err(|e| {
            anyhow::anyhow!("cannot read pgbench's output: {e}\n{}", output.describe())
        })?;
        Ok(OpMeasurement {
            section: test.section,
            test: test.name,
            setup,
            round,
            clients: test.clients,
            ops_per_s: summary.tps,
            operations: summary.transactions,
            failed: summary.failed,
            p50_us: percentile(&latencies, 50.0).map(|us| us as f64),
            p99_us: percentile(&latencies, 99.0).map(|us| us as f64),
            cpu_us_per_op: per_op(cpu, summary.transactions),
            two_phase_commits: Some(commits),
        })
    }
}

fn per_op(cpu_s: f64, operations: u64) -> f64 {
    if operations == 0 {
        f64::NAN
    } else {
        cpu_s * 1e6 / operations as f64
    }
}
