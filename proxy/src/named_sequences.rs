//! Sequences made by `CREATE SEQUENCE`, kept by the proxies in `__mycelium_named_sequences`
//! on the counters' home (the primary of the placement of tables without a policy, see
//! `sequences.rs`), so every client of every proxy draws from the one sequence, on any
//! backend. `nextval`, `setval`, `currval` and `lastval` in a SELECT of such calls are
//! answered here; `currval` and `lastval` remember the session's own draws, as in Postgres.
//!
//! Like Postgres's, draws are not transactional: a value drawn in a transaction that rolls
//! back is not handed out again. Each draw is a compare-and-set on the sequence's row, so
//! proxies racing on one sequence never share a value. The row carries the stamp of the home
//! that last moved it: after a promotion the new home's copy may lag behind draws the old one
//! acknowledged, so the first draw there skips [`PROMOTION_GAP`] increments ahead. A SELECT
//! naming a sequence the proxy does not keep (a PostgreSQL node's own, behind a serial
//! column) goes to the nodes as before.
//!
//! A cluster of one PostgreSQL node keeps no sequence here: every sequence statement goes to
//! the node, whose own sequences are then the cluster's, so that what expects a real one finds
//! it: a column default naming it (`ALTER TABLE ... SET DEFAULT nextval(...)`, as pg_dump
//! restores serial columns), `\ds`, `pg_class`.

use std::collections::HashMap;
use std::sync::Arc;

use mycelium_protocol::types::oid;
use mycelium_protocol::{Column, DataRowsBuilder, DbError, Execute, Format, NodeSession};
use mycelium_router::{
    SequenceArg, SequenceCall, SequenceChanges, SequenceColumn, SequenceCommand,
    SequenceDefinition, ValuesCall, replace_values_sequence_calls, sequence_key,
    values_sequence_calls,
};

use crate::backend;
use crate::cluster::Cluster;
use crate::error::{ProxyError, sql_error};
use crate::execute::{NodeConn, Output};
use crate::policy_store::{run, text_params};
use crate::sequences::{CounterHome, counter_home, open};
use crate::session::Session;
use crate::settings::{default_param_type, int_param, param};

const CREATE: &str = "CREATE TABLE IF NOT EXISTS __mycelium_named_sequences \
     (name text PRIMARY KEY, last_value bigint NOT NULL, is_called bigint NOT NULL, \
     increment bigint NOT NULL, min_value bigint NOT NULL, max_value bigint NOT NULL, \
     cycle bigint NOT NULL, start_value bigint NOT NULL, stamp text NOT NULL)";
const SELECT: &str = "SELECT last_value, is_called, increment, min_value, max_value, cycle, \
     start_value, stamp FROM __mycelium_named_sequences WHERE name = $1";

/// Increments a sequence skips at its first draw on a new home.
const PROMOTION_GAP: i64 = 1000;

/// Attempts at a sequence that other sessions keep drawing from.
const ATTEMPTS: usize = 50;

/// The text a node describes for `sql`: an INSERT calling `nextval` or `currval` among its
/// VALUES has the calls replaced by a number, as it will when it runs (see
/// [`Session::with_sequence_values`]); SQLite nodes refuse the calls themselves.
pub(crate) fn described_text(cluster: &Cluster, sql: &Arc<str>) -> Arc<str> {
    if node_keeps_sequences(cluster) {
        return sql.clone();
    }
    let calls = values_sequence_calls(sql);
    if calls.is_empty() {
        return sql.clone();
    }
    match replace_values_sequence_calls(sql, &vec![Some(0); calls.len()]) {
        Ok(text) => Arc::from(text),
        Err(_) => sql.clone(),
    }
}

/// A session on the counters' home (see [`Session::home_session`]).
pub(crate) struct HomeSession {
    pub(crate) home: CounterHome,
    conn: HomeConn,
}

enum HomeConn {
    /// The client's node session, taken from it until given back.
    Borrowed(NodeConn),
    Separate(Box<dyn NodeSession>),
}

impl HomeSession {
    pub(crate) fn parts(&mut self) -> (&mut dyn NodeSession, &CounterHome) {
        let session = match &mut self.conn {
            HomeConn::Borrowed(conn) => conn.session.as_mut(),
            HomeConn::Separate(session) => session.as_mut(),
        };
        (session, &self.home)
    }

    pub(crate) fn session(&mut self) -> &mut dyn NodeSession {
        self.parts().0
    }
}

/// The values this session drew (`currval`, `lastval`).
#[derive(Default)]
pub(crate) struct Drawn {
    values: HashMap<String, i64>,
    last: Option<String>,
}

impl Drawn {
    /// Remembers `value` as the session's last draw from `sequence`.
    pub(crate) fn record(&mut self, sequence: String, value: i64) {
        self.values.insert(sequence.clone(), value);
        self.last = Some(sequence);
    }
}

/// A sequence's row.
struct Row {
    last_value: i64,
    is_called: bool,
    increment: i64,
    min_value: i64,
    max_value: i64,
    cycle: bool,
    start_value: i64,
    stamp: String,
}

/// Postgres's NOTICE for an IF [NOT] EXISTS that had nothing to do.
fn skipping(out: &mut bytes::BytesMut, code: &str, message: &str) {
    backend::notice_response(
        out,
        &backend::Report {
            severity: "NOTICE",
            code,
            message,
            detail: None,
            hint: None,
        },
    );
}

fn missing(name: &str) -> ProxyError {
    sql_error("42P01", format!("relation \"{name}\" does not exist"))
}

/// The nodes that keep their data in PostgreSQL.
fn postgres_nodes(cluster: &Cluster) -> Vec<usize> {
    (0..cluster.nodes.len())
        .filter(|&n| {
            cluster.nodes[n]
                .backend
                .get()
                .is_some_and(|b| b == "postgres")
        })
        .collect()
}

/// Whether the cluster is one PostgreSQL node, whose own sequences serve (see the module
/// documentation).
pub(crate) fn node_keeps_sequences(cluster: &Cluster) -> bool {
    match cluster.nodes.as_slice() {
        [node] => node
            .backend
            .get()
            .is_some_and(|backend| backend == "postgres"),
        _ => false,
    }
}

impl Session {
    /// Runs a sequence statement; `Ok(false)` when it is for the nodes (a SELECT naming a
    /// sequence the proxy does not keep, anything on a cluster of one PostgreSQL node), for the
    /// caller to send there.
    pub(crate) async fn sequence_command(
        &mut self,
        command: &SequenceCommand,
        request: &Execute,
        output: Output,
    ) -> Result<bool, ProxyError> {
        if node_keeps_sequences(&self.proxy.cluster) {
            return Ok(false);
        }
        if let SequenceCommand::Drop { names, cascade, .. } = command {
            let kept_names = self.kept_names(names.clone()).await?;
            self.refuse_sqlite_dependents(&kept_names, *cascade).await?;
            self.drop_stand_ins(&kept_names, *cascade).await?;
        }
        let mut home = self.home_session().await?;
        let result = self
            .sequence_command_on(&mut home, command, request, output)
            .await;
        self.give_back(home);
        result
    }

    /// A session on the counters' home for the proxies' sequences: the client's own when its
    /// transaction wrote there (with SQLite that transaction holds the node's write lock, and
    /// what it created, a sequence too, is seen only inside it), else one of its own. It must
    /// go back with [`Session::give_back`].
    pub(crate) async fn home_session(&mut self) -> Result<HomeSession, ProxyError> {
        let home = counter_home(&self.proxy.cluster)?;
        let borrowed = if self.wrote_in_transaction(home.node) {
            self.node(home.node).await?;
            self.nodes.get_mut(home.node).and_then(Option::take)
        } else {
            None
        };
        let conn = match borrowed {
            Some(conn) => HomeConn::Borrowed(conn),
            None => HomeConn::Separate(open(&self.proxy.cluster, home.node).await?),
        };
        Ok(HomeSession { home, conn })
    }

    /// Puts back the client's node session a [`HomeSession`] borrowed.
    pub(crate) fn give_back(&mut self, home: HomeSession) {
        if let HomeConn::Borrowed(conn) = home.conn
            && let Some(slot) = self.nodes.get_mut(home.home.node)
        {
            *slot = Some(conn);
        }
    }

    async fn sequence_command_on(
        &mut self,
        home_session: &mut HomeSession,
        command: &SequenceCommand,
        request: &Execute,
        output: Output,
    ) -> Result<bool, ProxyError> {
        let (session, home) = home_session.parts();
        match command {
            SequenceCommand::Create(definition) => {
                run(session, Execute::simple(CREATE)).await?;
                self.create_sequence(session, home, definition).await?;
                // A column default may name it now (see `sequences`).
                self.proxy.cluster.sequences.forget_shapes();
                backend::command_complete(&mut self.conn.out, "CREATE SEQUENCE");
            }
            SequenceCommand::Alter {
                name,
                if_exists: _,
                changes,
            } => {
                let row = match read_row(session, name).await {
                    Ok(row) => row,
                    // Not one of ours: a node's own (a serial column's on PostgreSQL).
                    Err(ProxyError::Db(e)) if e.code == "42P01" => return Ok(false),
                    Err(e) => return Err(e),
                };
                alter(session, home, name, &row, changes).await?;
                backend::command_complete(&mut self.conn.out, "ALTER SEQUENCE");
            }
            SequenceCommand::Drop {
                names, if_exists, ..
            } => {
                let mut found = Vec::with_capacity(names.len());
                for name in names {
                    let kept = kept(session, name).await?;
                    if !kept && !if_exists {
                        return Err(sql_error(
                            "42P01",
                            format!("sequence \"{name}\" does not exist"),
                        ));
                    }
                    found.push(kept);
                }
                for (name, kept) in names.iter().zip(found) {
                    let deleted = kept
                        && !run(
                            session,
                            text_params(
                                "DELETE FROM __mycelium_named_sequences WHERE name = $1 \
                                 RETURNING name",
                                &[name.as_str()],
                            ),
                        )
                        .await?
                        .is_empty();
                    if !deleted {
                        skipping(
                            &mut self.conn.out,
                            "00000",
                            &format!("sequence \"{name}\" does not exist, skipping"),
                        );
                    }
                }
                self.proxy.cluster.sequences.forget_shapes();
                backend::command_complete(&mut self.conn.out, "DROP SEQUENCE");
            }
            SequenceCommand::Calls(columns) => {
                // Every sequence named must be one of ours before anything is drawn.
                for column in columns {
                    if let Some(name) = self.sequence_name(&column.call, request)?
                        && !kept(session, &name).await?
                    {
                        return Ok(false);
                    }
                }
                let mut values = Vec::with_capacity(columns.len());
                for column in columns {
                    values.push(
                        self.sequence_call(session, home, &column.call, request)
                            .await?,
                    );
                }
                self.answer_sequence_row(columns, &values, request, output);
            }
        }
        Ok(true)
    }

    /// `sql` with the `nextval('s')` and `currval('s')` calls among its VALUES (an INSERT)
    /// of sequences the proxies keep replaced by their values: the nodes do not have those
    /// sequences. Draws count for `currval` and `lastval` as in Postgres, row by row.
    pub(crate) async fn with_sequence_values(
        &mut self,
        sql: Arc<str>,
    ) -> Result<Arc<str>, ProxyError> {
        if node_keeps_sequences(&self.proxy.cluster) {
            return Ok(sql);
        }
        let calls = values_sequence_calls(&sql);
        if calls.is_empty() {
            return Ok(sql);
        }
        let mut home = self.home_session().await?;
        let values = self.values_of_calls(&mut home, &calls).await;
        self.give_back(home);
        let values = values?;
        if values.iter().all(Option::is_none) {
            return Ok(sql);
        }
        Ok(Arc::from(replace_values_sequence_calls(&sql, &values)?))
    }

    /// The value of each call, `None` for a sequence the proxies do not keep.
    async fn values_of_calls(
        &mut self,
        home: &mut HomeSession,
        calls: &[ValuesCall],
    ) -> Result<Vec<Option<i64>>, ProxyError> {
        let mut ours: HashMap<String, bool> = HashMap::new();
        let mut values = Vec::with_capacity(calls.len());
        for call in calls {
            let name = sequence_key(&call.sequence);
            let is_ours = match ours.get(&name) {
                Some(known) => *known,
                None => {
                    let known = kept(home.session(), &name).await?;
                    ours.insert(name.clone(), known);
                    known
                }
            };
            if !is_ours {
                values.push(None);
            } else if call.next {
                let (session, counter_home) = home.parts();
                let value = nextval(session, counter_home, &name).await?;
                self.drawn.record(name, value);
                values.push(Some(value));
            } else {
                match self.drawn.values.get(&name) {
                    Some(value) => values.push(Some(*value)),
                    None => {
                        return Err(sql_error(
                            "55000",
                            format!(
                                "currval of sequence \"{name}\" is not yet defined in this session"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(values)
    }

    /// Makes the sequences the proxies keep that `ddl` names in `nextval` calls exist on the
    /// PostgreSQL nodes, which refuse a column default naming a relation they lack. What
    /// stands in for one there cannot be drawn from (its last value is taken): the proxy fills
    /// such columns itself (see `sequences`), and anything that would draw on the node fails
    /// rather than hand out a value the sequence may also give.
    pub(crate) async fn stand_in_sequences(&mut self, ddl: &str) -> Result<(), ProxyError> {
        if node_keeps_sequences(&self.proxy.cluster) || self.status == backend::TxnStatus::Idle {
            return Ok(());
        }
        let postgres = postgres_nodes(&self.proxy.cluster);
        if postgres.is_empty() {
            return Ok(());
        }
        let names = mycelium_router::nextval_names(ddl);
        for name in self.kept_names(names).await? {
            let ident = crate::execute::quote_ident(&name);
            let create =
                format!("CREATE SEQUENCE IF NOT EXISTS {ident} MINVALUE 1 MAXVALUE 2 START 2");
            let take = format!("SELECT setval('{}', 2, true)", ident.replace('\'', "''"));
            for &node in &postgres {
                let session = self.node_for_write(node).await?;
                run(session.as_mut(), Execute::simple(create.as_str())).await?;
                run(session.as_mut(), Execute::simple(take.as_str())).await?;
            }
        }
        Ok(())
    }

    /// Before `DROP SEQUENCE` forgets `kept_names`, sequences the proxies keep, drops what
    /// stands in for them on the PostgreSQL nodes (see [`Session::stand_in_sequences`]). A
    /// column default there still naming one makes the node refuse, as Postgres does (2BP01),
    /// unless `cascade`, which drops the default with it.
    async fn drop_stand_ins(
        &mut self,
        kept_names: &[String],
        cascade: bool,
    ) -> Result<(), ProxyError> {
        let postgres = postgres_nodes(&self.proxy.cluster);
        if postgres.is_empty() {
            return Ok(());
        }
        for name in kept_names {
            let drop = format!(
                "DROP SEQUENCE IF EXISTS {}{}",
                crate::execute::quote_ident(name),
                if cascade { " CASCADE" } else { "" }
            );
            for &node in &postgres {
                let session = self.node_for_write(node).await?;
                run(session.as_mut(), Execute::simple(drop.as_str())).await?;
            }
        }
        Ok(())
    }

    /// SQLite nodes record no dependency of a column default on a sequence, so before
    /// `DROP SEQUENCE` forgets `kept_names` the proxy looks for defaults there naming one:
    /// it refuses as Postgres would (2BP01), and with `cascade` too (0A000), since it cannot
    /// drop a SQLite node's default along with the sequence.
    async fn refuse_sqlite_dependents(
        &mut self,
        kept_names: &[String],
        cascade: bool,
    ) -> Result<(), ProxyError> {
        if kept_names.is_empty() {
            return Ok(());
        }
        let proxy = self.proxy.clone();
        let postgres = postgres_nodes(&proxy.cluster);
        for node in (0..proxy.cluster.nodes.len()).filter(|n| !postgres.contains(n)) {
            let request = Execute::simple(
                "SELECT table_name, column_name, column_default FROM information_schema.columns \
                 WHERE column_default LIKE '%nextval(%'",
            );
            // Inside a transaction that changed the node, its own defaults count too.
            let defaults = if self.wrote_in_transaction(node) {
                run(self.node(node).await?.as_mut(), request).await?
            } else {
                run(open(&proxy.cluster, node).await?.as_mut(), request).await?
            };
            for row in defaults {
                let [Some(table), Some(column), Some(default)] = row.as_slice() else {
                    continue;
                };
                let Some(name) = mycelium_router::nextval_names(default)
                    .into_iter()
                    .find(|name| kept_names.contains(name))
                else {
                    continue;
                };
                let detail = format!(
                    "default value for column {column} of table {table} depends on sequence {name}"
                );
                let error = if cascade {
                    DbError::new(
                        "0A000",
                        format!(
                            "DROP SEQUENCE ... CASCADE cannot drop the column defaults of SQLite \
                             nodes that depend on sequence {name}"
                        ),
                    )
                    .with_hint(format!(
                        "Drop the default first: ALTER TABLE {table} ALTER COLUMN {column} DROP DEFAULT."
                    ))
                } else {
                    DbError::new(
                        "2BP01",
                        format!("cannot drop sequence {name} because other objects depend on it"),
                    )
                    .with_hint("Use DROP ... CASCADE to drop the dependent objects too.")
                };
                return Err(ProxyError::Db(error.with_detail(detail)));
            }
        }
        Ok(())
    }

    /// Those of `names` that are sequences the proxies keep.
    async fn kept_names(&mut self, names: Vec<String>) -> Result<Vec<String>, ProxyError> {
        if names.is_empty() {
            return Ok(names);
        }
        let mut home = self.home_session().await?;
        let mut kept_names = Vec::new();
        let mut result = Ok(());
        for name in names {
            match kept(home.session(), &name).await {
                Ok(true) => kept_names.push(name),
                Ok(false) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.give_back(home);
        result.map(|()| kept_names)
    }

    /// The client's session on `node`, inside its transaction when it has one, counted as
    /// a write there.
    async fn node_for_write(
        &mut self,
        node: usize,
    ) -> Result<&mut Box<dyn mycelium_protocol::NodeSession>, ProxyError> {
        self.ensure_node_transaction(node).await?;
        self.track(node, true)?;
        self.node(node).await
    }

    async fn create_sequence(
        &mut self,
        session: &mut dyn mycelium_protocol::NodeSession,
        home: &CounterHome,
        d: &SequenceDefinition,
    ) -> Result<(), ProxyError> {
        let insert = format!(
            "INSERT INTO __mycelium_named_sequences (name, last_value, is_called, increment, \
             min_value, max_value, cycle, start_value, stamp) \
             VALUES ($1, {}, 0, {}, {}, {}, {}, {}, $2) \
             ON CONFLICT (name) DO NOTHING RETURNING name",
            d.start,
            d.increment,
            d.min_value,
            d.max_value,
            i64::from(d.cycle),
            d.start
        );
        let inserted = run(session, text_params(&insert, &[&d.name, &home.stamp])).await?;
        if inserted.is_empty() {
            let message = format!("relation \"{}\" already exists", d.name);
            if !d.if_not_exists {
                return Err(sql_error("42P07", message));
            }
            skipping(&mut self.conn.out, "42P07", &format!("{message}, skipping"));
        }
        Ok(())
    }

    /// The sequence a call names, if any.
    fn sequence_name(
        &self,
        call: &SequenceCall,
        request: &Execute,
    ) -> Result<Option<String>, ProxyError> {
        let arg = match call {
            SequenceCall::Nextval(arg) | SequenceCall::Currval(arg) => arg,
            SequenceCall::Setval { sequence, .. } => sequence,
            SequenceCall::Lastval => return Ok(None),
        };
        Ok(text(arg, request)?.map(|name| sequence_key(&name)))
    }

    async fn sequence_call(
        &mut self,
        session: &mut dyn mycelium_protocol::NodeSession,
        home: &CounterHome,
        call: &SequenceCall,
        request: &Execute,
    ) -> Result<Option<i64>, ProxyError> {
        let Some(name) = self.sequence_name(call, request)? else {
            return match call {
                SequenceCall::Lastval => {
                    let drawn = &self.drawn;
                    match drawn.last.as_ref().and_then(|n| drawn.values.get(n)) {
                        Some(value) => Ok(Some(*value)),
                        None => Err(sql_error(
                            "55000",
                            "lastval is not yet defined in this session",
                        )),
                    }
                }
                // A NULL name: the functions are strict.
                _ => Ok(None),
            };
        };
        match call {
            SequenceCall::Nextval(_) => {
                let value = nextval(session, home, &name).await?;
                self.drawn.record(name, value);
                Ok(Some(value))
            }
            SequenceCall::Currval(_) => match self.drawn.values.get(&name) {
                Some(value) => Ok(Some(*value)),
                None => Err(sql_error(
                    "55000",
                    format!("currval of sequence \"{name}\" is not yet defined in this session"),
                )),
            },
            SequenceCall::Setval {
                value, is_called, ..
            } => {
                let Some(value) = int(value, request)? else {
                    return Ok(None);
                };
                let Some(is_called) = boolean(is_called, request)? else {
                    return Ok(None);
                };
                setval(session, home, &name, value, is_called).await?;
                Ok(Some(value))
            }
            SequenceCall::Lastval => Ok(None),
        }
    }

    fn answer_sequence_row(
        &mut self,
        columns: &[SequenceColumn],
        values: &[Option<i64>],
        request: &Execute,
        output: Output,
    ) {
        if matches!(output, Output::Simple) {
            let described: Vec<Column> = columns.iter().map(|c| int8_column(&c.name)).collect();
            backend::row_description(&mut self.conn.out, &described, |i| request.result_format(i));
        }
        let mut row = DataRowsBuilder::with_capacity(32);
        row.begin_row();
        for (i, value) in values.iter().enumerate() {
            match (value, request.result_format(i)) {
                (None, _) => row.push_null(),
                (Some(v), Format::Binary) => row.push_value(&v.to_be_bytes()),
                (Some(v), Format::Text) => row.push_value(v.to_string().as_bytes()),
            }
        }
        row.end_row();
        self.conn.out.extend_from_slice(row.take().bytes());
        backend::command_complete(&mut self.conn.out, "SELECT 1");
    }
}

/// Whether the proxies keep a sequence of this name (none yet when the table is missing:
/// it is created by the first CREATE SEQUENCE, so that drawing never runs DDL).
pub(crate) async fn kept(session: &mut dyn NodeSession, name: &str) -> Result<bool, ProxyError> {
    Ok(select_row(session, name).await?.is_some())
}

/// The row of sequence `name`, `None` when there is none (or no sequence at all yet: the
/// table is made by the first CREATE SEQUENCE). Inside the client's transaction the read runs
/// under a savepoint, so that a missing table does not abort the transaction.
async fn select_row(
    session: &mut dyn NodeSession,
    name: &str,
) -> Result<Option<Vec<Option<String>>>, ProxyError> {
    const SAVEPOINT: &str = "__mycelium_sequence_read";
    let guarded = session.in_transaction();
    if guarded {
        run(session, Execute::simple(format!("SAVEPOINT {SAVEPOINT}"))).await?;
    }
    let read = run(session, text_params(SELECT, &[name])).await;
    if guarded {
        if read.is_err() {
            run(
                session,
                Execute::simple(format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}")),
            )
            .await?;
        }
        run(
            session,
            Execute::simple(format!("RELEASE SAVEPOINT {SAVEPOINT}")),
        )
        .await?;
    }
    match read {
        Ok(rows) => Ok(rows.into_iter().next()),
        Err(e) if e.code == "42P01" => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn read_row(session: &mut dyn NodeSession, name: &str) -> Result<Row, ProxyError> {
    let row = select_row(session, name).await?;
    let Some(
        [
            Some(last),
            Some(called),
            Some(inc),
            Some(min),
            Some(max),
            Some(cycle),
            Some(start),
            Some(stamp),
        ],
    ) = row.as_deref()
    else {
        return Err(missing(name));
    };
    let number = |text: &str| -> Result<i64, ProxyError> {
        text.parse()
            .map_err(|_| sql_error("XX000", format!("sequence \"{name}\" holds {text:?}")))
    };
    Ok(Row {
        last_value: number(last)?,
        is_called: number(called)? != 0,
        increment: number(inc)?,
        min_value: number(min)?,
        max_value: number(max)?,
        cycle: number(cycle)? != 0,
        start_value: number(start)?,
        stamp: stamp.clone(),
    })
}

/// Draws the next value (compare-and-set on the row).
async fn nextval(
    session: &mut dyn mycelium_protocol::NodeSession,
    home: &CounterHome,
    name: &str,
) -> Result<i64, ProxyError> {
    let values = draw(session, home, name, 1).await?;
    values.first().copied().ok_or_else(|| missing(name))
}

/// Draws the next `count` values at once (one compare-and-set on the row).
pub(crate) async fn draw(
    session: &mut dyn mycelium_protocol::NodeSession,
    home: &CounterHome,
    name: &str,
    count: usize,
) -> Result<Vec<i64>, ProxyError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    for _ in 0..ATTEMPTS {
        let row = read_row(session, name).await?;
        let mut values = Vec::with_capacity(count);
        let mut last = row.last_value;
        for i in 0..count {
            let steps = match (i > 0 || row.is_called, row.stamp == home.stamp || i > 0) {
                (false, true) => 0,
                (true, true) => 1,
                (_, false) => 1 + PROMOTION_GAP,
            };
            last = next_value(&row, name, last, steps)?;
            values.push(last);
        }
        let update = format!(
            "UPDATE __mycelium_named_sequences SET last_value = {last}, is_called = 1, \
             stamp = $2 WHERE name = $1 AND last_value = {} AND is_called = {} AND stamp = $3 \
             RETURNING last_value",
            row.last_value,
            i64::from(row.is_called)
        );
        let params = [name, home.stamp.as_str(), row.stamp.as_str()];
        if !run(session, text_params(&update, &params))
            .await?
            .is_empty()
        {
            crate::metrics::SEQUENCE_VALUES
                .with_label_values(&["nextval"])
                .inc_by(count as u64);
            return Ok(values);
        }
    }
    Err(sql_error(
        "55000",
        format!("could not draw from sequence \"{name}\": it kept changing"),
    ))
}

/// The value `steps` increments after `last`, wrapping around if the sequence cycles.
fn next_value(row: &Row, name: &str, last: i64, steps: i64) -> Result<i64, ProxyError> {
    let next = last
        .checked_add(row.increment.saturating_mul(steps))
        .filter(|n| (row.min_value..=row.max_value).contains(n));
    match next {
        Some(next) => Ok(next),
        None if row.cycle => Ok(if row.increment > 0 {
            row.min_value
        } else {
            row.max_value
        }),
        None => {
            let (which, limit) = if row.increment > 0 {
                ("maximum", row.max_value)
            } else {
                ("minimum", row.min_value)
            };
            Err(sql_error(
                "2200H",
                format!("nextval: reached {which} value of sequence \"{name}\" ({limit})"),
            ))
        }
    }
}

async fn setval(
    session: &mut dyn mycelium_protocol::NodeSession,
    home: &CounterHome,
    name: &str,
    value: i64,
    is_called: bool,
) -> Result<(), ProxyError> {
    let row = read_row(session, name).await?;
    if !(row.min_value..=row.max_value).contains(&value) {
        return Err(sql_error(
            "22003",
            format!(
                "setval: value {value} is out of bounds for sequence \"{name}\" ({}..{})",
                row.min_value, row.max_value
            ),
        ));
    }
    let set = format!("last_value = {value}, is_called = {}", i64::from(is_called));
    update_row(session, home, name, &set).await
}

/// Sets `set` (and the home's stamp) on the row of sequence `name`.
async fn update_row(
    session: &mut dyn mycelium_protocol::NodeSession,
    home: &CounterHome,
    name: &str,
    set: &str,
) -> Result<(), ProxyError> {
    let update = format!(
        "UPDATE __mycelium_named_sequences SET {set}, stamp = $2 WHERE name = $1 RETURNING name"
    );
    if run(session, text_params(&update, &[name, home.stamp.as_str()]))
        .await?
        .is_empty()
    {
        return Err(missing(name));
    }
    Ok(())
}

/// Applies an ALTER SEQUENCE to `row`, with Postgres's checks.
async fn alter(
    session: &mut dyn mycelium_protocol::NodeSession,
    home: &CounterHome,
    name: &str,
    row: &Row,
    changes: &SequenceChanges,
) -> Result<(), ProxyError> {
    let invalid = |message: String| sql_error("22023", message);
    let increment = changes.increment.unwrap_or(row.increment);
    let ascending = increment > 0;
    let min_value = match changes.min_value {
        None => row.min_value,
        Some(Some(min)) => min,
        Some(None) if ascending => 1,
        Some(None) => i64::MIN,
    };
    let max_value = match changes.max_value {
        None => row.max_value,
        Some(Some(max)) => max,
        Some(None) if ascending => i64::MAX,
        Some(None) => -1,
    };
    if min_value >= max_value {
        return Err(invalid(format!(
            "MINVALUE ({min_value}) must be less than MAXVALUE ({max_value})"
        )));
    }
    let start_value = changes.start.unwrap_or(row.start_value);
    let (last_value, is_called) = match changes.restart {
        None => (row.last_value, row.is_called),
        Some(restart) => (restart.unwrap_or(start_value), false),
    };
    for (what, value) in [("START", start_value), ("RESTART", last_value)] {
        if value < min_value {
            return Err(invalid(format!(
                "{what} value ({value}) cannot be less than MINVALUE ({min_value})"
            )));
        }
        if value > max_value {
            return Err(invalid(format!(
                "{what} value ({value}) cannot be greater than MAXVALUE ({max_value})"
            )));
        }
    }
    let set = format!(
        "increment = {increment}, min_value = {min_value}, max_value = {max_value}, \
         cycle = {}, start_value = {start_value}, last_value = {last_value}, is_called = {}",
        i64::from(changes.cycle.unwrap_or(row.cycle)),
        i64::from(is_called)
    );
    update_row(session, home, name, &set).await
}

fn int8_column(name: &str) -> Column {
    Column {
        name: name.to_owned(),
        table_oid: 0,
        column_id: 0,
        type_oid: oid::INT8,
        type_size: 8,
        type_modifier: -1,
    }
}

/// The columns of an answered SELECT: every function returns bigint.
pub(crate) fn answer_columns(columns: &[SequenceColumn]) -> Vec<Column> {
    columns.iter().map(|c| int8_column(&c.name)).collect()
}

/// The parameter types of an answered SELECT: the client's, and for those it left to the
/// server, text for names (Postgres's `regclass` input), bigint for values and boolean for
/// `is_called`.
pub(crate) fn answer_param_types(columns: &[SequenceColumn], given: &[u32]) -> Vec<u32> {
    let mut types = given.to_vec();
    for column in columns {
        let args: Vec<(&SequenceArg, u32)> = match &column.call {
            SequenceCall::Nextval(arg) | SequenceCall::Currval(arg) => vec![(arg, oid::TEXT)],
            SequenceCall::Setval {
                sequence,
                value,
                is_called,
            } => vec![
                (sequence, oid::TEXT),
                (value, oid::INT8),
                (is_called, oid::BOOL),
            ],
            SequenceCall::Lastval => Vec::new(),
        };
        for (arg, ty) in args {
            if let SequenceArg::Param(n) = *arg {
                default_param_type(&mut types, n, ty);
            }
        }
    }
    types
}

fn text(arg: &SequenceArg, request: &Execute) -> Result<Option<String>, ProxyError> {
    match arg {
        SequenceArg::Text(text) => Ok(Some(text.clone())),
        SequenceArg::Int(i) => Ok(Some(i.to_string())),
        SequenceArg::Bool(b) => Ok(Some(b.to_string())),
        SequenceArg::Param(n) => Ok(param(request, *n)?
            .0
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())),
    }
}

fn int(arg: &SequenceArg, request: &Execute) -> Result<Option<i64>, ProxyError> {
    match arg {
        SequenceArg::Int(i) => Ok(Some(*i)),
        SequenceArg::Param(n) => int_param(request, *n),
        SequenceArg::Text(text) => text.trim().parse().map(Some).map_err(|_| {
            sql_error(
                "22P02",
                format!("invalid input syntax for type bigint: \"{text}\""),
            )
        }),
        SequenceArg::Bool(b) => Err(sql_error(
            "22P02",
            format!("invalid input syntax for type bigint: \"{b}\""),
        )),
    }
}

fn boolean(arg: &SequenceArg, request: &Execute) -> Result<Option<bool>, ProxyError> {
    let text = match arg {
        SequenceArg::Bool(b) => return Ok(Some(*b)),
        SequenceArg::Param(n) => match param(request, *n)? {
            (None, _, _) => return Ok(None),
            (Some(bytes), Format::Binary, _) => return Ok(bytes.first().map(|b| *b != 0)),
            (Some(bytes), Format::Text, _) => String::from_utf8_lossy(bytes).into_owned(),
        },
        SequenceArg::Text(text) => text.clone(),
        SequenceArg::Int(i) => i.to_string(),
    };
    mycelium_router::parse_bool(&text).map(Some).ok_or_else(|| {
        sql_error(
            "22P02",
            format!("invalid input syntax for type boolean: \"{text}\""),
        )
    })
}
