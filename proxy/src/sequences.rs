//! Cluster-wide values for the serial and identity columns of sharded tables.
//!
//! Every node holding a shard of a table has its own sequence behind each serial column, so
//! values drawn on the nodes repeat across them, and an INSERT that leaves the shard key to its
//! sequence could not be routed. For an INSERT into a sharded table that leaves such a column
//! to its default, the proxy draws the values itself and writes them into the statement
//! (`mycelium_router::fill_defaults`), so the row is routed by its key like any other.
//!
//! The same goes for COPY and INSERT ... SELECT that leave such a column out.
//!
//! The values come from one counter per column, in `__mycelium_counters` on the primary of
//! the placement of tables without a policy (the counters' home), handed out in blocks of
//! [`BLOCK`] per proxy: one proxy numbers 1, 2, 3, ...; several proxies interleave their
//! blocks, as Postgres sequences with a cache do, and values of a block a proxy did not use
//! before it stopped are skipped. Each counter row carries the stamp of the home that last
//! moved it (node and primary epoch): a row under another stamp may have been left behind by
//! a promotion, so the counter first moves past the largest value any node holds. Counters are
//! not transactional, as sequences are not, except inside a client transaction that already
//! wrote on the home node (see [`Sequences::fills`]). A table dropped and created again goes
//! on from its old counter: other proxies may still hold blocks of it, and values must not
//! repeat.
//!
//! A column whose default draws from a sequence the proxies keep (`DEFAULT nextval('s')`
//! naming one made by CREATE SEQUENCE, as pg_dump restores serial columns) is filled from that
//! sequence instead, in any table: the nodes do not have it. Those draws go straight to the
//! sequence's row (see `named_sequences`), and set the session's `currval` and `lastval`.

use std::sync::Arc;

use dashmap::DashMap;
use mycelium_protocol::{Execute, NodeSession};
use mycelium_router::{
    ColumnFill, PolicySource, default_sequence, defaulted_rows, insert_values_table,
};

use crate::cluster::Cluster;
use crate::error::{ProxyError, sql_error};
use crate::execute::quote_ident;
use crate::metrics;
use crate::named_sequences::{draw, kept, node_keeps_sequences};
use crate::policy_store::{run, text_params};

/// Values a proxy draws from a counter at once.
const BLOCK: i64 = 64;

/// Attempts at a counter that other proxies keep changing under us.
const ATTEMPTS: usize = 20;

pub(crate) const CREATE: &str = "CREATE TABLE IF NOT EXISTS __mycelium_counters \
     (table_name text NOT NULL, column_name text NOT NULL, next_value bigint NOT NULL, \
     stamp text NOT NULL, PRIMARY KEY (table_name, column_name))";
const SELECT: &str = "SELECT next_value, stamp FROM __mycelium_counters \
     WHERE table_name = $1 AND column_name = $2";
const COLUMNS: &str = "SELECT column_name, is_identity, \
     CASE WHEN column_default LIKE 'nextval(%' THEN column_default ELSE '' END \
     FROM information_schema.columns \
     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position";

/// A serial or identity column the proxy fills.
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    pub(crate) column: String,
    identity: bool,
    /// The proxies' sequence its default draws from; `None` for the column's counter.
    sequence: Option<String>,
}

impl Generated {
    /// Whether its values come from a sequence the proxies keep.
    pub(crate) fn draws_from_sequence(&self) -> bool {
        self.sequence.is_some()
    }
}

/// Values drawn for one statement: per column, and the last value drawn from each of the
/// proxies' sequences (the session's `currval`, in drawing order for `lastval`).
pub(crate) struct Drawn {
    pub(crate) fills: Vec<ColumnFill>,
    pub(crate) sequences: Vec<(String, i64)>,
}

/// What one INSERT text leaves to generated columns: per column, the rows that need a value.
#[derive(Debug)]
pub(crate) struct Need {
    table: String,
    columns: Vec<(Generated, Vec<usize>)>,
}

impl Need {
    /// Every one of `rows` rows needs a value for each of `generated`.
    pub(crate) fn every_row(table: &str, generated: &[Generated], rows: usize) -> Need {
        Need {
            table: table.to_owned(),
            columns: generated
                .iter()
                .map(|g| (g.clone(), (0..rows).collect()))
                .collect(),
        }
    }
}

/// Values drawn from a counter and not used yet, with the stamp of the home they came from.
#[derive(Debug)]
struct Block {
    next: i64,
    end: i64,
    stamp: String,
}

/// The node keeping the counters, and its stamp: its id and primary epoch for the placement
/// of tables without a policy. A counter row under another stamp was written while another
/// copy was the home (or before this one was promoted), and may be behind.
pub(crate) struct CounterHome {
    pub(crate) node: usize,
    pub(crate) stamp: String,
}

/// The proxy's side of the counters (see the module documentation).
#[derive(Default)]
pub(crate) struct Sequences {
    /// Per INSERT text (into a sharded table): what it needs, `None` for nothing.
    needs: DashMap<Arc<str>, Option<Arc<Need>>>,
    /// Per table: the generated columns the proxy fills (see [`resolve`]).
    columns: DashMap<String, Arc<Vec<Generated>>>,
    /// Per `(table, column)`: the rest of the last block drawn.
    blocks: DashMap<(String, String), Block>,
}

impl Sequences {
    /// Forgets what statements and tables look like (after DDL or a policy change); blocks
    /// drawn stay good.
    pub(crate) fn forget_shapes(&self) {
        self.needs.clear();
        self.columns.clear();
    }

    /// What `sql` leaves to generated columns, if known: `Some(None)` for nothing.
    pub(crate) fn known_need(&self, sql: &str) -> Option<Option<Arc<Need>>> {
        self.needs.get(sql).map(|need| need.clone())
    }

    /// Remembers what `sql` needs, for statements run outside a transaction that changed the
    /// schema.
    pub(crate) fn remember(&self, sql: &Arc<str>, need: Option<Arc<Need>>) {
        if self.needs.len() > 10_000 {
            self.needs.clear();
        }
        self.needs.insert(sql.clone(), need);
    }

    /// The generated columns of `table` as the primary of its first shard reports them;
    /// `None` when that node does not have the table (not yet, or no more): nothing is kept
    /// then.
    pub(crate) async fn generated_columns(
        &self,
        cluster: &Cluster,
        table: &str,
    ) -> Result<Option<Arc<Vec<Generated>>>, ProxyError> {
        if let Some(known) = self.columns.get(table) {
            return Ok(Some(known.clone()));
        }
        let mut session = open(cluster, describing_node(cluster, table)?).await?;
        let rows = run(session.as_mut(), columns_query(table)).await?;
        let Some(generated) = resolve(cluster, table, rows, None).await? else {
            return Ok(None);
        };
        let generated = Arc::new(generated);
        self.columns.insert(table.to_owned(), generated.clone());
        Ok(Some(generated))
    }

    /// Values for every row of `need`: from this proxy's blocks, and when they run out from
    /// the counters at `home`. `own` is the client's transaction on the home node, when it
    /// has one: the counter must then move inside it (the transaction may hold the node's write
    /// lock), and what it passes comes back if the transaction rolls back, so only what the
    /// statement uses is taken there and no block is kept.
    pub(crate) async fn fills(
        &self,
        cluster: &Cluster,
        home: &CounterHome,
        need: &Need,
        mut own: Option<&mut dyn NodeSession>,
    ) -> Result<Drawn, ProxyError> {
        let mut fills = Vec::with_capacity(need.columns.len());
        let mut sequences = Vec::new();
        for (generated, rows) in &need.columns {
            let key = (need.table.clone(), generated.column.clone());
            let count = rows.len();
            let mut values = match &generated.sequence {
                Some(name) => {
                    let drawn = match own.as_deref_mut() {
                        Some(session) => draw(session, home, name, count).await?,
                        None => {
                            let mut session = open(cluster, home.node).await?;
                            draw(session.as_mut(), home, name, count).await?
                        }
                    };
                    sequences.extend(drawn.last().map(|last| (name.clone(), *last)));
                    drawn
                }
                None => Vec::with_capacity(count),
            };
            while values.len() < count {
                let left = (count - values.len()) as i64;
                if let Some(range) = self.take(&key, home, left) {
                    metrics::SEQUENCE_VALUES
                        .with_label_values(&["block"])
                        .inc_by(range.end.abs_diff(range.start));
                    values.extend(range);
                    continue;
                }
                match own.as_deref_mut() {
                    Some(session) => {
                        let (start, end) =
                            reserve(cluster, session, home, &key.0, &key.1, left).await?;
                        metrics::SEQUENCE_VALUES
                            .with_label_values(&["transaction"])
                            .inc_by(end.abs_diff(start));
                        values.extend(start..end);
                    }
                    None => {
                        let mut session = open(cluster, home.node).await?;
                        let wanted = BLOCK.max(left);
                        let (next, end) =
                            reserve(cluster, session.as_mut(), home, &key.0, &key.1, wanted)
                                .await?;
                        let stamp = home.stamp.clone();
                        self.blocks.insert(key.clone(), Block { next, end, stamp });
                    }
                }
            }
            fills.push(ColumnFill {
                column: generated.column.clone(),
                identity: generated.identity,
                values: rows.iter().copied().zip(values).collect(),
            });
        }
        Ok(Drawn { fills, sequences })
    }

    /// Makes sure this proxy holds values of a block for each of `generated`, so that a
    /// statement about to read on the home node inside its transaction needs no counter write
    /// there for its first rows (with SQLite, a write on the node after the transaction's first
    /// read there costs the transaction its snapshot: 40001). One that needs more values than
    /// the block has left may still meet that.
    pub(crate) async fn prime(
        &self,
        cluster: &Cluster,
        home: &CounterHome,
        table: &str,
        generated: &[Generated],
    ) -> Result<(), ProxyError> {
        for g in generated.iter().filter(|g| g.sequence.is_none()) {
            let key = (table.to_owned(), g.column.clone());
            let enough = self
                .blocks
                .get(&key)
                .is_some_and(|block| block.stamp == home.stamp && block.next < block.end);
            if enough {
                continue;
            }
            let mut session = open(cluster, home.node).await?;
            let (next, end) =
                reserve(cluster, session.as_mut(), home, table, &g.column, BLOCK).await?;
            let stamp = home.stamp.clone();
            self.blocks.insert(key, Block { next, end, stamp });
        }
        Ok(())
    }

    /// Up to `count` values from this proxy's block for `key`, if it has one from `home`.
    fn take(
        &self,
        key: &(String, String),
        home: &CounterHome,
        count: i64,
    ) -> Option<std::ops::Range<i64>> {
        let mut block = self.blocks.get_mut(key)?;
        if block.stamp != home.stamp || block.next >= block.end {
            return None;
        }
        let start = block.next;
        block.next += (block.end - start).min(count);
        Some(start..block.next)
    }
}

/// The table an `INSERT ... VALUES` fills, if the proxy may have to number some of its
/// columns.
pub(crate) fn numbered_insert_table(cluster: &Cluster, sql: &str) -> Option<String> {
    insert_values_table(sql).filter(|table| may_number(cluster, table))
}

/// Whether the proxy may fill generated columns of `table`: its serial columns if it is
/// sharded, and in any table those whose default draws from a sequence the proxies keep.
pub(crate) fn may_number(cluster: &Cluster, table: &str) -> bool {
    numbered_by_proxy(cluster, table) || !node_keeps_sequences(cluster)
}

/// Whether the proxy numbers the serial columns of `table`: sharded, in a cluster of several
/// nodes (one node's own sequences are right).
pub(crate) fn numbered_by_proxy(cluster: &Cluster, table: &str) -> bool {
    cluster.nodes.len() > 1 && cluster.has_policy(table) && !cluster.policy(table).is_reference()
}

/// What `sql`, an INSERT into `table`, leaves to the `generated` columns.
pub(crate) fn need_of(
    sql: &str,
    table: &str,
    generated: &[Generated],
) -> Result<Option<Arc<Need>>, ProxyError> {
    if generated.is_empty() {
        return Ok(None);
    }
    let names: Vec<String> = generated.iter().map(|g| g.column.clone()).collect();
    let rows = defaulted_rows(sql, &names)?;
    let columns: Vec<(Generated, Vec<usize>)> = generated
        .iter()
        .cloned()
        .zip(rows)
        .filter(|(_, rows)| !rows.is_empty())
        .collect();
    Ok((!columns.is_empty()).then(|| {
        Arc::new(Need {
            table: table.to_owned(),
            columns,
        })
    }))
}

/// The node asked for a table's columns: the primary of its first shard.
pub(crate) fn describing_node(cluster: &Cluster, table: &str) -> Result<usize, ProxyError> {
    let placement = cluster.placement(table)?;
    Ok(placement
        .shards
        .first()
        .and_then(|shard| cluster.node_index(shard.primary()))
        .unwrap_or(0))
}

/// The query listing a table's serial and identity columns (both backends answer it).
pub(crate) fn columns_query(table: &str) -> Execute {
    text_params(COLUMNS, &[table])
}

/// The columns of `table` the proxy fills, from the answer to [`columns_query`]: those whose
/// default draws from a sequence the proxies keep, and if the table is sharded its other
/// serial and identity columns; `None` when the answer listed no column at all (the node has
/// no such table). Whether the proxies keep a sequence is asked on `home`, a session on the
/// counters' home (one of its own when `None`).
pub(crate) async fn resolve(
    cluster: &Cluster,
    table: &str,
    rows: Vec<Vec<Option<String>>>,
    mut home: Option<&mut dyn NodeSession>,
) -> Result<Option<Vec<Generated>>, ProxyError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let counted = numbered_by_proxy(cluster, table);
    let mut separate: Option<Box<dyn NodeSession>> = None;
    let mut generated = Vec::new();
    for row in rows {
        let [Some(column), identity, default] = row.as_slice() else {
            continue;
        };
        let identity = identity.as_deref() == Some("YES");
        let named = default.as_deref().and_then(default_sequence);
        let sequence = match named {
            Some(name) if !identity => {
                let session: &mut dyn NodeSession = match (home.as_deref_mut(), &mut separate) {
                    (Some(session), _) => session,
                    (None, Some(session)) => session.as_mut(),
                    (None, None) => separate
                        .insert(open(cluster, counter_home(cluster)?.node).await?)
                        .as_mut(),
                };
                kept(session, &name).await?.then_some(name)
            }
            _ => None,
        };
        let serial = default.as_deref().is_some_and(|d| !d.is_empty());
        if sequence.is_some() || (counted && (identity || serial)) {
            generated.push(Generated {
                column: column.clone(),
                identity,
                sequence,
            });
        }
    }
    Ok(Some(generated))
}

/// Moves the counter of `table.column` at `home` on by `count` and returns the values it
/// passed, `[start, end)`. A counter missing, or stamped by another home, first moves past the
/// largest value the table holds (compare-and-set, so proxies racing on it never share values).
async fn reserve(
    cluster: &Cluster,
    session: &mut dyn NodeSession,
    home: &CounterHome,
    table: &str,
    column: &str,
    count: i64,
) -> Result<(i64, i64), ProxyError> {
    let names = [table, column, home.stamp.as_str()];
    let advance = format!(
        "UPDATE __mycelium_counters SET next_value = next_value + {count} \
         WHERE table_name = $1 AND column_name = $2 AND stamp = $3 RETURNING next_value"
    );
    for _ in 0..ATTEMPTS {
        match run(session, text_params(&advance, &names)).await {
            Ok(rows) => {
                if let Some(end) = first_number(&rows) {
                    metrics::SEQUENCE_RESERVATIONS
                        .with_label_values(&["advance"])
                        .inc();
                    return Ok((end - count, end));
                }
            }
            Err(e) if e.code == "42P01" => {}
            Err(e) => return Err(e.into()),
        }
        run(session, Execute::simple(CREATE)).await?;
        let seen = run(session, text_params(SELECT, &names[..2])).await?;
        let floor = largest_value(cluster, table, column)
            .await?
            .saturating_add(1);
        let written = match seen.first().map(Vec::as_slice) {
            Some([Some(next), Some(stamp)]) => {
                let next: i64 = parse_number(next)?;
                let restamp = format!(
                    "UPDATE __mycelium_counters SET next_value = {}, stamp = $3 \
                     WHERE table_name = $1 AND column_name = $2 AND next_value = {next} \
                     AND stamp = $4 RETURNING next_value",
                    next.max(floor).saturating_add(count),
                );
                let params = [table, column, home.stamp.as_str(), stamp.as_str()];
                run(session, text_params(&restamp, &params)).await?
            }
            _ => {
                let insert = format!(
                    "INSERT INTO __mycelium_counters (table_name, column_name, next_value, \
                     stamp) VALUES ($1, $2, {}, $3) \
                     ON CONFLICT (table_name, column_name) DO NOTHING RETURNING next_value",
                    floor.saturating_add(count),
                );
                run(session, text_params(&insert, &names)).await?
            }
        };
        if let Some(end) = first_number(&written) {
            metrics::SEQUENCE_RESERVATIONS
                .with_label_values(&["restamp"])
                .inc();
            return Ok((end - count, end));
        }
        // Another proxy changed the counter in between: start over from its new state.
    }
    Err(sql_error(
        "55000",
        format!("could not draw values for {table}.{column}: its counter kept changing"),
    ))
}

/// Where the counters live: the primary of the placement of tables without a policy.
pub(crate) fn counter_home(cluster: &Cluster) -> Result<CounterHome, ProxyError> {
    let placement = cluster.placement("__mycelium_counters")?;
    let shard = placement
        .shards
        .first()
        .ok_or_else(|| sql_error("XX000", "no node keeps the sequence counters"))?;
    let node = cluster
        .node_index(shard.primary())
        .ok_or_else(|| sql_error("XX000", "no node keeps the sequence counters"))?;
    Ok(CounterHome {
        node,
        stamp: format!("{}@{}", shard.primary(), shard.epoch),
    })
}

/// The largest value of `table.column` on any node holding a shard of it (0 when none):
/// every shard must have a copy that answers.
async fn largest_value(cluster: &Cluster, table: &str, column: &str) -> Result<i64, ProxyError> {
    let placement = cluster.placement(table)?;
    let probe = format!(
        "SELECT max({}) FROM {}",
        quote_ident(column),
        quote_ident(table)
    );
    let mut nodes: Vec<&str> = placement
        .shards
        .iter()
        .flat_map(|shard| shard.replicas.iter().map(|r| r.node.as_str()))
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    let mut largest = 0i64;
    let mut answered: Vec<&str> = Vec::new();
    let mut last_error = None;
    for node in nodes {
        let Some(index) = cluster.node_index(node) else {
            continue;
        };
        let result = match open(cluster, index).await {
            Ok(mut session) => run(session.as_mut(), Execute::simple(probe.as_str()))
                .await
                .map_err(ProxyError::from),
            Err(e) => Err(e),
        };
        match result {
            Ok(rows) => {
                if let Some(value) = first_number(&rows) {
                    largest = largest.max(value);
                }
                answered.push(node);
            }
            // Not there (yet: created in a transaction still open): no rows there.
            Err(ProxyError::Db(e)) if e.code == "42P01" => answered.push(node),
            Err(e) => last_error = Some(e),
        }
    }
    let unanswered = placement.shards.iter().find(|shard| {
        !shard
            .replicas
            .iter()
            .any(|r| answered.contains(&r.node.as_str()))
    });
    match (unanswered, last_error) {
        (None, _) => Ok(largest),
        (Some(_), Some(error)) => Err(error),
        (Some(shard), None) => Err(sql_error(
            "08006",
            format!(
                "no copy of shard {table}/{} answered: cannot number new rows",
                shard.shard
            ),
        )),
    }
}

pub(crate) async fn open(
    cluster: &Cluster,
    node: usize,
) -> Result<Box<dyn NodeSession>, ProxyError> {
    let node = cluster
        .nodes
        .get(node)
        .ok_or_else(|| sql_error("XX000", format!("no node number {node}")))?;
    Ok(node.link.open_session().await?)
}

fn first_number(rows: &[Vec<Option<String>>]) -> Option<i64> {
    rows.first()?.first()?.as_deref()?.parse().ok()
}

fn parse_number(text: &str) -> Result<i64, ProxyError> {
    text.parse()
        .map_err(|_| sql_error("XX000", format!("a sequence counter holds {text:?}")))
}
