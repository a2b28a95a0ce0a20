//! Running statements on nodes: which node(s) a statement goes to, the transaction each
//! touched node is in, streaming results back, and the transaction control that spans them.
//!
//! A transaction may read and write on any number of nodes: the coordinator
//! (`mycelium_txn`) commits it in one phase when it wrote on one node, in two otherwise. A
//! statement that writes on several nodes outside a transaction runs in an implicit one, as
//! does DDL, which goes to every node so every node knows every table. Reads over several
//! nodes are merged (see `scatter`).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use mycelium_protocol::types::{PgType, oid};
use mycelium_protocol::{
    DataRows, DbError, Execute, Format, LockOrder, NodeLink, NodeSession, Reply, ReplyStream,
};
use mycelium_router::{
    KeyExpr, KeyValue, PolicySource, Route, RouterError, ShardChoice, TablePlacement, TablePolicy,
    TxnControl, apply_options, policy_options,
};
use mycelium_txn::Participant;

use crate::backend::{self, TxnStatus};
use crate::cancel::Statement;
use crate::error::{ProxyError, sql_error};
use crate::policy_store::{CREATE, DELETE, UPSERT, stored_options, text_params};
use crate::replicas::Assignment;
use crate::session::Session;

/// A node session and whether the client's transaction is open on it.
pub(crate) struct NodeConn {
    pub session: Box<dyn NodeSession>,
    pub in_txn: bool,
    /// The client's transaction wrote here (it must be prepared if others wrote too).
    pub wrote: bool,
}

/// Where a statement's replies come from: the node, or a buffer they were drained into when
/// another statement needed the node while this portal sat suspended.
pub(crate) enum Source {
    Live(ReplyStream),
    Buffered(VecDeque<Result<Reply, DbError>>),
}

impl Source {
    async fn next(&mut self) -> Option<Result<Reply, DbError>> {
        match self {
            Source::Live(stream) => stream.recv().await,
            Source::Buffered(replies) => replies.pop_front(),
        }
    }
}

/// Rows of a portal not yet sent because Execute asked for fewer.
pub(crate) struct Suspended {
    source: Source,
    pending: DataRows,
    node: usize,
}

/// How results go back: the simple protocol describes its rows itself, the extended one
/// leaves that to Describe and may stop after `max_rows`.
#[derive(Clone, Copy)]
pub(crate) enum Output {
    Simple,
    Extended { max_rows: usize },
}

/// How a statement ended.
pub(crate) enum Finished {
    Complete,
    Suspended(Suspended),
}

/// What a DDL statement does to table policies.
pub(crate) enum PolicyChange {
    /// CREATE TABLE with `mycelium.*` options.
    Create(TablePolicy),
    /// ALTER TABLE ... SET with only `mycelium.*` options: the proxy's business alone.
    Alter(TablePolicy),
    /// DROP TABLE: the policies of these tables go too.
    Drop(Vec<String>),
}

/// Where a statement runs.
pub(crate) enum Target {
    One(usize),
    /// A read over several nodes, merged by the proxy; each node sees only its shards of
    /// the table.
    Scatter {
        placement: Arc<TablePlacement>,
        assignment: Assignment,
    },
    /// A write over several nodes, each with its own statement: an UPDATE or DELETE runs as
    /// it is on every node (each has its rows), a multi-row INSERT is split by shard.
    Many(Vec<(usize, Execute)>),
    /// DDL: every node.
    All,
    /// `INSERT INTO sharded SELECT ...`: the proxy runs the query, then sends each row to
    /// its shard (`copy.rs`).
    InsertSelect {
        table: String,
        columns: Vec<String>,
        select: String,
    },
}

impl Session {
    // ---- transactions ----

    pub(crate) async fn transaction_control(
        &mut self,
        op: TxnControl,
        sql: &str,
    ) -> Result<(), ProxyError> {
        match op {
            TxnControl::Begin => {
                if self.status == TxnStatus::Idle {
                    self.begin_transaction(sql)?;
                } else if self.implicit_block {
                    // As in Postgres, BEGIN turns the implicit transaction into a block that
                    // lasts past the Sync.
                    self.implicit_block = false;
                } else {
                    self.notice("25001", "there is already a transaction in progress");
                }
                let start = sql
                    .trim_start()
                    .get(..5)
                    .is_some_and(|w| w.eq_ignore_ascii_case("start"));
                let tag = if start { "START TRANSACTION" } else { "BEGIN" };
                backend::command_complete(&mut self.conn.out, tag);
            }
            TxnControl::Commit => {
                let tag = match self.status {
                    TxnStatus::Idle => {
                        self.notice("25P01", "there is no transaction in progress");
                        "COMMIT"
                    }
                    TxnStatus::InTransaction => {
                        self.finish_transaction("COMMIT").await?;
                        "COMMIT"
                    }
                    TxnStatus::Failed => {
                        self.finish_transaction("ROLLBACK").await?;
                        "ROLLBACK"
                    }
                };
                backend::command_complete(&mut self.conn.out, tag);
            }
            TxnControl::Rollback => {
                if self.status == TxnStatus::Idle {
                    self.notice("25P01", "there is no transaction in progress");
                } else {
                    self.finish_transaction("ROLLBACK").await?;
                }
                backend::command_complete(&mut self.conn.out, "ROLLBACK");
            }
            TxnControl::Savepoint | TxnControl::Release | TxnControl::RollbackTo => {
                if self.status == TxnStatus::Idle {
                    let what = match op {
                        TxnControl::Savepoint => "SAVEPOINT",
                        TxnControl::Release => "RELEASE SAVEPOINT",
                        _ => "ROLLBACK TO SAVEPOINT",
                    };
                    return Err(sql_error(
                        "25P01",
                        format!("{what} can only be used in transaction blocks"),
                    ));
                }
                // Savepoints live on every node of the transaction; a node the transaction
                // reaches later starts after the savepoint, which is what rolling back to it
                // would leave there anyway.
                let touched = self.touched_nodes();
                let nodes = if touched.is_empty() { vec![0] } else { touched };
                let mut tag = String::new();
                for node in nodes {
                    self.ensure_node_transaction(node).await?;
                    tag = self.node_command(node, sql).await?;
                }
                if op == TxnControl::RollbackTo {
                    self.status = TxnStatus::InTransaction;
                }
                backend::command_complete(&mut self.conn.out, &tag);
            }
        }
        Ok(())
    }

    fn touched_nodes(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.as_ref().is_some_and(|n| n.in_txn))
            .map(|(i, _)| i)
            .collect()
    }

    /// Starts a client transaction (BEGIN, or an implicit one); nodes join it lazily.
    pub(crate) fn begin_transaction(&mut self, begin_sql: &str) -> Result<(), ProxyError> {
        self.tx = Some(self.proxy.coordinator.begin()?);
        self.lock_priority = self.proxy.lock_clock.next();
        self.params.begin_transaction();
        self.status = TxnStatus::InTransaction;
        self.begin_sql = Some(begin_sql.to_owned());
        Ok(())
    }

    /// Records that the transaction runs a statement on `node`, writing rows or not.
    pub(crate) fn track(&mut self, node: usize, writes: bool) -> Result<(), ProxyError> {
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        self.proxy
            .coordinator
            .add_operation(tx, self.node_name(node), writes)?;
        if writes && let Some(conn) = self.nodes.get_mut(node).and_then(Option::as_mut) {
            conn.wrote = true;
        }
        Ok(())
    }

    /// Ends the transaction on every node it reached (the coordinator commits in one or two
    /// phases), and locally whatever the nodes answer: after a failed COMMIT the transaction
    /// is gone either way.
    pub(crate) async fn finish_transaction(&mut self, command: &str) -> Result<(), ProxyError> {
        self.status = TxnStatus::Idle;
        self.implicit_block = false;
        self.begin_sql = None;
        self.portals.clear();
        let pending = std::mem::take(&mut self.pending_policies);
        let undo = std::mem::take(&mut self.policy_undo);
        let ran_ddl = std::mem::take(&mut self.ran_ddl);
        let tx = self.tx.take();
        let proxy = self.proxy.clone();
        let mut touched = Vec::new();
        let mut participants = Vec::new();
        for (index, slot) in self.nodes.iter_mut().enumerate() {
            let Some(conn) = slot.as_mut().filter(|c| c.in_txn) else {
                continue;
            };
            conn.in_txn = false;
            let writes = std::mem::take(&mut conn.wrote);
            let Some(node) = proxy.cluster.nodes.get(index) else {
                continue;
            };
            touched.push(index);
            participants.push(Participant {
                node: node.info.id.clone(),
                link: node.link.clone(),
                session: conn.session.as_mut(),
                writes,
            });
        }
        let result = match tx {
            Some(tx) if command == "COMMIT" => proxy
                .coordinator
                .commit(&tx, participants)
                .await
                .map(|committed| {
                    self.own_writes.committed(committed.positions);
                }),
            Some(tx) => proxy.coordinator.rollback(&tx, participants).await,
            None => Ok(()),
        };
        if ran_ddl {
            proxy.cluster.sequences.forget_shapes();
        }
        let committed = result.is_ok() && command == "COMMIT";
        self.end_transaction_parameters(committed);
        self.release_transaction_advisory_locks();
        if committed {
            for change in pending {
                self.apply_policy(change);
            }
        } else {
            self.undo_policies(undo);
        }
        if result.is_err() {
            // A failed commit may leave a node session mid-protocol: start afresh.
            for index in touched {
                if let Some(slot) = self.nodes.get_mut(index) {
                    *slot = None;
                }
            }
        }
        result.map_err(ProxyError::from)
    }

    /// The BEGIN a node's part of the transaction starts with: the client's, with the
    /// session's `default_transaction_isolation` when it names no level (PostgreSQL nodes run
    /// the level; SQLite nodes run every transaction serializable, which satisfies any).
    fn node_begin(&self) -> String {
        let begin = self.begin_sql.clone().unwrap_or_else(|| "BEGIN".to_owned());
        let default = self
            .params
            .get("default_transaction_isolation")
            .unwrap_or("read committed");
        if default == "read committed" || mycelium_router::transaction_modes(&begin).0.is_some() {
            return begin;
        }
        format!(
            "{} ISOLATION LEVEL {}",
            begin.trim_end().trim_end_matches(';'),
            default.to_ascii_uppercase()
        )
    }

    /// Opens the client's transaction on `node` before its first statement there.
    pub(crate) async fn ensure_node_transaction(&mut self, node: usize) -> Result<(), ProxyError> {
        if self.status == TxnStatus::Idle {
            return Ok(());
        }
        if self
            .nodes
            .get(node)
            .is_some_and(|n| n.as_ref().is_some_and(|n| n.in_txn))
        {
            return Ok(());
        }
        let begin = self.node_begin();
        self.node_command(node, &begin).await?;
        if let Some(conn) = self.nodes.get_mut(node).and_then(Option::as_mut) {
            conn.in_txn = true;
        }
        Ok(())
    }

    /// Runs a statement whose rows (if any) are not for the client; returns its tag.
    pub(crate) async fn node_command(
        &mut self,
        node: usize,
        sql: &str,
    ) -> Result<String, ProxyError> {
        let mut stream = self.node(node).await?.execute(Execute::simple(sql)).await?;
        loop {
            match stream.recv().await {
                Some(Ok(Reply::Complete { tag })) => return Ok(tag),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(self.node_gone(node)),
            }
        }
    }

    /// The link to node number `node`.
    pub(crate) fn node_link(&self, node: usize) -> Result<Arc<dyn NodeLink>, ProxyError> {
        self.proxy
            .cluster
            .nodes
            .get(node)
            .map(|n| n.link.clone())
            .ok_or_else(|| sql_error("XX000", format!("no node number {node}")))
    }

    /// The session on `node`, opened on first use. A suspended portal on that node is drained
    /// into memory first, since a node session runs one statement at a time.
    pub(crate) async fn node(
        &mut self,
        node: usize,
    ) -> Result<&mut Box<dyn NodeSession>, ProxyError> {
        self.park_suspended(node).await;
        if node >= self.nodes.len() {
            self.nodes.resize_with(node + 1, || None);
        }
        if self.nodes[node].is_none() {
            let link = self.node_link(node)?;
            let mut session = link.open_session().await?;
            session.set_user(&self.user);
            self.nodes[node] = Some(NodeConn {
                session,
                in_txn: false,
                wrote: false,
            });
        }
        let epoch = self.proxy.cluster.map_epoch();
        let fence = self.own_writes.take_fence(node);
        let time_zone = self.params.get("timezone").unwrap_or("UTC");
        let lock_order = self.tx.is_some().then(|| LockOrder {
            priority: self.lock_priority,
            holds_elsewhere: self
                .nodes
                .iter()
                .enumerate()
                .any(|(i, n)| i != node && n.as_ref().is_some_and(|n| n.in_txn)),
        });
        // The session was opened above; the error (formatted only if ever needed) cannot
        // borrow `self` here, so it names the node by number.
        match self.nodes[node].as_mut() {
            Some(conn) => {
                conn.session.set_map_epoch(epoch);
                conn.session.set_read_fence(fence);
                conn.session.set_time_zone(time_zone);
                conn.session.set_lock_order(lock_order);
                Ok(&mut conn.session)
            }
            None => Err(sql_error(
                "08006",
                format!("lost connection to node number {node}"),
            )),
        }
    }

    async fn park_suspended(&mut self, node: usize) {
        for portal in self.portals.values_mut() {
            let Some(suspended) = portal.suspended.as_mut() else {
                continue;
            };
            if suspended.node != node {
                continue;
            }
            if let Source::Live(stream) = &mut suspended.source {
                let mut replies = VecDeque::new();
                while let Some(reply) = stream.recv().await {
                    let end = !matches!(reply, Ok(Reply::Rows(_)) | Ok(Reply::Columns(_)));
                    replies.push_back(reply);
                    if end {
                        break;
                    }
                }
                suspended.source = Source::Buffered(replies);
            }
        }
    }

    /// The id of node number `node`, for messages.
    pub(crate) fn node_name(&self, node: usize) -> &str {
        self.proxy
            .cluster
            .nodes
            .get(node)
            .map(|n| n.info.id.as_str())
            .unwrap_or("?")
    }

    pub(crate) fn node_gone(&self, node: usize) -> ProxyError {
        sql_error(
            "08006",
            format!("lost connection to node {}", self.node_name(node)),
        )
    }

    // ---- choosing nodes ----

    /// The node(s) a forwarded statement runs on, and whether it writes rows.
    pub(crate) fn target(&self, request: &Execute) -> Result<(Target, bool), ProxyError> {
        let cluster = &self.proxy.cluster;
        if cluster.nodes.len() == 1 {
            return Ok((Target::One(0), false));
        }
        let route = cluster.route(&request.sql);
        let route = match route.as_ref() {
            Ok(route) => route,
            Err(RouterError::Syntax(_)) => {
                // Statements the router's parser does not know (VACUUM, ANALYZE, ...) are
                // maintenance: every node runs them. Anything else gets the node's own
                // syntax error from one node.
                return Ok(match mycelium_router::statement_kind(&request.sql) {
                    "other" => (Target::All, false),
                    _ => (Target::One(0), false),
                });
            }
            Err(e) => return Err(e.clone().into()),
        };
        match route {
            Route::AnyNode => Ok((Target::One(self.any_node()), false)),
            Route::Ddl { .. } => Ok((Target::All, true)),
            Route::InsertSelect {
                table,
                columns,
                select,
            } => Ok((
                Target::InsertSelect {
                    table: table.clone(),
                    columns: columns.clone(),
                    select: select.clone(),
                },
                true,
            )),
            Route::Read {
                table,
                shards,
                references,
            } => {
                let placement = cluster.placement(table)?;
                let chosen = self.chosen_shards(&placement, shards, request);
                let assignment = self.read_assignment(&placement, &chosen)?;
                self.check_references(table, references, &assignment)?;
                Ok(match assignment.len() {
                    0 => (Target::One(0), false),
                    1 => (Target::One(only_node(&assignment)), false),
                    _ => (
                        Target::Scatter {
                            placement,
                            assignment,
                        },
                        false,
                    ),
                })
            }
            Route::Write { table, shards } => {
                let placement = cluster.placement(table)?;
                let chosen = self.chosen_shards(&placement, shards, request);
                let assignment = self.write_assignment(&placement, &chosen);
                match assignment.len() {
                    0 => Ok((Target::One(0), true)),
                    1 => Ok((Target::One(only_node(&assignment)), true)),
                    _ if mycelium_router::statement_kind(&request.sql) == "insert" => {
                        self.split_insert(table, shards, request)
                    }
                    _ => Ok((
                        Target::Many(
                            assignment
                                .iter()
                                .map(|(&node, keep)| {
                                    Ok((node, self.scoped(node, &placement, keep, request)?))
                                })
                                .collect::<Result<_, ProxyError>>()?,
                        ),
                        true,
                    )),
                }
            }
        }
    }

    /// A node for statements that touch no table: one already in the transaction if any.
    fn any_node(&self) -> usize {
        self.touched_nodes().first().copied().unwrap_or(0)
    }

    /// A multi-row INSERT whose rows belong to several nodes: one INSERT per node with its
    /// rows (parameters renumbered). A key not known yet (Describe, before Bind) counts as
    /// shard 0, as for single-row statements.
    fn split_insert(
        &self,
        table: &str,
        shards: &ShardChoice,
        request: &Execute,
    ) -> Result<(Target, bool), ProxyError> {
        let cluster = &self.proxy.cluster;
        let placement = cluster.placement(table)?;
        let ShardChoice::Keys(keys) = shards else {
            return Err(sql_error(
                "XX000",
                "an INSERT is routed by the keys of its rows",
            ));
        };
        let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (row, key) in keys.iter().enumerate() {
            let shard = resolve_key(key, request)
                .map(|values| placement.policy.shard_of(&values))
                .unwrap_or(0);
            let node = placement
                .shards
                .get(shard as usize)
                .and_then(|shard| cluster.node_index(shard.primary()))
                .unwrap_or(0);
            groups.entry(node).or_default().push(row);
        }
        if groups.len() == 1 {
            let node = groups.keys().next().copied().unwrap_or(0);
            return Ok((Target::One(node), true));
        }
        let (nodes, rows): (Vec<usize>, Vec<Vec<usize>>) = groups.into_iter().unzip();
        let parts = mycelium_router::split_insert(&request.sql, &rows)?;
        let pick = |params: &[usize]| -> Execute {
            let types = params
                .iter()
                .map(|&i| request.param_types.get(i).copied().unwrap_or(0))
                .collect::<Vec<u32>>();
            Execute {
                sql: Arc::from(""),
                param_types: Arc::from(types),
                params: params
                    .iter()
                    .map(|&i| request.params.get(i).cloned().flatten())
                    .collect(),
                param_formats: params
                    .iter()
                    .map(|&i| request.param_formats.get(i).copied().unwrap_or_default())
                    .collect(),
                result_formats: request.result_formats.clone(),
            }
        };
        let targets = nodes
            .into_iter()
            .zip(parts)
            .map(|(node, part)| {
                let mut execute = pick(&part.params);
                execute.sql = Arc::from(part.sql.as_str());
                (node, execute)
            })
            .collect();
        Ok((Target::Many(targets), true))
    }

    /// The shards a route picks, in order, without repeats. A key not known yet (a
    /// parameter before Bind, at Describe) counts as shard 0: any node holding the table can
    /// describe it.
    fn chosen_shards(
        &self,
        placement: &TablePlacement,
        shards: &ShardChoice,
        request: &Execute,
    ) -> Vec<u32> {
        let mut chosen: Vec<u32> = match shards {
            ShardChoice::All => (0..placement.policy.shards).collect(),
            ShardChoice::Keys(keys) => keys
                .iter()
                .map(|key| {
                    resolve_key(key, request)
                        .map(|values| placement.policy.shard_of(&values))
                        .unwrap_or(0)
                })
                .collect(),
        };
        chosen.sort_unstable();
        chosen.dedup();
        chosen
    }

    /// `table/shard[,shard...]` of a statement routed by key, for error messages.
    fn shard_context(&self, request: &Execute) -> Option<String> {
        let route = self.proxy.cluster.route(&request.sql);
        let (Route::Read { table, shards, .. } | Route::Write { table, shards }) =
            route.as_ref().as_ref().ok()?
        else {
            return None;
        };
        let ShardChoice::Keys(keys) = shards else {
            return Some(format!("{table}/*"));
        };
        let policy = self.proxy.cluster.placement(table).ok()?.policy.clone();
        let mut numbers: Vec<u32> = keys
            .iter()
            .filter_map(|key| resolve_key(key, request))
            .map(|values| policy.shard_of(&values))
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        let list: Vec<String> = numbers.iter().map(u32::to_string).collect();
        Some(format!("{table}/{}", list.join(",")))
    }

    // ---- policies ----

    /// The policy change a DDL statement makes, validated against the cluster.
    /// Writes and DDL are refused in a READ ONLY transaction, and outside one when
    /// `default_transaction_read_only` is on, as Postgres does (SQLite nodes would not).
    pub(crate) fn check_writable(&self, sql: &str) -> Result<(), ProxyError> {
        let kind = mycelium_router::statement_kind(sql);
        if kind == "explain" {
            return match mycelium_router::analyzed_statement(sql) {
                Some(analyzed) => self.check_writable(&analyzed),
                None => Ok(()),
            };
        }
        if !matches!(kind, "insert" | "update" | "delete" | "ddl") {
            return Ok(());
        }
        let command: Vec<String> = sql
            .split_whitespace()
            .take(if kind == "ddl" { 2 } else { 1 })
            .map(str::to_ascii_uppercase)
            .collect();
        self.check_read_only(&command.join(" "))
    }

    /// Refuses `command` (25006) when the transaction, or the session's default, is READ ONLY.
    pub(crate) fn check_read_only(&self, command: &str) -> Result<(), ProxyError> {
        let by_default = self
            .params
            .get("default_transaction_read_only")
            .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "on" | "true" | "1" | "yes"));
        let read_only = match &self.begin_sql {
            Some(begin) => {
                let begin = begin.to_ascii_lowercase();
                let words: Vec<&str> = begin
                    .split(|c: char| !c.is_ascii_alphabetic())
                    .filter(|w| !w.is_empty())
                    .collect();
                let says = |a: &str, b: &str| words.windows(2).any(|w| w[0] == a && w[1] == b);
                says("read", "only") || (by_default && !says("read", "write"))
            }
            None => by_default,
        };
        if read_only {
            return Err(sql_error(
                "25006",
                format!("cannot execute {command} in a read-only transaction"),
            ));
        }
        Ok(())
    }

    /// A PRIMARY KEY or UNIQUE constraint of a table spread over shards must include its
    /// shard key: a node checks uniqueness among its own rows only, so `PRIMARY KEY (email)`
    /// on a table sharded by tenant would let two tenants' nodes take the same email. A table
    /// with a policy keeps its name, and a sharded one its key columns (`unique.rs`).
    fn check_unique_keys(
        &self,
        sql: &str,
        change: Option<&PolicyChange>,
    ) -> Result<(), ProxyError> {
        let cluster = &self.proxy.cluster;
        if let Some(renames) = mycelium_router::renames(sql)
            && cluster.has_policy(&renames.table)
        {
            let policy = cluster.policy(&renames.table);
            if renames.renames_table {
                return Err(sql_error(
                    "0A000",
                    format!(
                        "renaming {}, which has a Mycelium policy, is not supported: its shards \
                         are known by its name; create the new table and INSERT ... SELECT",
                        renames.table
                    ),
                ));
            }
            if let Some(key) = renames
                .columns
                .iter()
                .find(|c| policy.shard_keys.contains(c))
            {
                return Err(sql_error(
                    "0A000",
                    format!(
                        "renaming or dropping {key}, the shard key of {}, is not supported: \
                         rows are placed by it",
                        renames.table
                    ),
                ));
            }
        }
        self.check_foreign_keys(sql, change)?;
        let Some(keys) = mycelium_router::unique_keys(sql) else {
            return Ok(());
        };
        let policy = match change {
            Some(PolicyChange::Create(policy)) => policy.clone(),
            _ if cluster.has_policy(&keys.table) => cluster.policy(&keys.table),
            _ => return Ok(()),
        };
        if policy.is_reference() || policy.shards <= 1 {
            return Ok(());
        }
        match keys.without(&policy.shard_keys) {
            Some(constraint) => Err(sql_error(
                "0A000",
                format!(
                    "{constraint} of {} does not include its shard key ({}): each node could \
                     check only its own rows; add the shard key to the constraint",
                    keys.table,
                    policy.shard_keys.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    /// A node checks a foreign key against its own rows: it holds only when the referenced
    /// rows are always on the same node, which is so between tables without a policy (they
    /// live together) and between tables sharded alike by the key (equal keys meet on one
    /// shard, as in Citus). Anything else would reject valid rows, or accept dangling ones.
    fn check_foreign_keys(
        &self,
        sql: &str,
        change: Option<&PolicyChange>,
    ) -> Result<(), ProxyError> {
        let Some((table, keys)) = mycelium_router::foreign_keys(sql) else {
            return Ok(());
        };
        let cluster = &self.proxy.cluster;
        let policy_of = |name: &str| -> Option<TablePolicy> {
            match change {
                Some(PolicyChange::Create(policy)) if policy.table == name => Some(policy.clone()),
                _ if cluster.has_policy(name) => Some(cluster.policy(name)),
                _ => None,
            }
        };
        let child = policy_of(&table);
        for key in keys {
            let parent = policy_of(&key.table);
            let together = match (&child, &parent) {
                (None, None) => true,
                (Some(child), Some(parent)) if !child.is_reference() && !parent.is_reference() => {
                    mycelium_router::placement_group(child)
                        == mycelium_router::placement_group(parent)
                        && key.columns == child.shard_keys
                        && (key.referred.is_empty() || key.referred == parent.shard_keys)
                }
                _ => false,
            };
            if !together {
                return Err(sql_error(
                    "0A000",
                    format!(
                        "a foreign key from {table} ({}) to {} cannot be checked: the referenced \
                         rows may live on another node. Foreign keys work between tables without \
                         a policy, and between tables sharded alike from shard key to shard key",
                        key.columns.join(", "),
                        key.table
                    ),
                ));
            }
        }
        Ok(())
    }

    fn policy_change(&self, sql: &str) -> Result<Option<PolicyChange>, ProxyError> {
        let cluster = &self.proxy.cluster;
        if let Some(found) = policy_options(sql)? {
            let invalid = |e: mycelium_router::PolicyError| sql_error("22023", e.to_string());
            let policy = if found.alter {
                if found.other_options {
                    return Err(sql_error(
                        "0A000",
                        "ALTER TABLE ... SET mixing mycelium.* and other options is not supported; \
                         set them in two statements",
                    ));
                }
                let current = if cluster.has_policy(&found.table) {
                    cluster.policy(&found.table)
                } else {
                    TablePolicy::default_for(&found.table, cluster.defaults())
                };
                apply_options(current, &found.options).map_err(invalid)?
            } else {
                apply_options(
                    TablePolicy::default_for(&found.table, cluster.defaults()),
                    &found.options,
                )
                .map_err(invalid)?
            };
            cluster.check_policy(&policy)?;
            return Ok(Some(if found.alter {
                PolicyChange::Alter(policy)
            } else {
                PolicyChange::Create(policy)
            }));
        }
        let words: Vec<String> = sql
            .split_whitespace()
            .take(2)
            .map(str::to_ascii_lowercase)
            .collect();
        if words.first().map(String::as_str) == Some("drop")
            && words.get(1).map(String::as_str) == Some("table")
            && let Ok(Route::Ddl { tables }) = cluster.route(&Arc::from(sql)).as_ref()
        {
            return Ok(Some(PolicyChange::Drop(tables.clone())));
        }
        Ok(None)
    }

    /// Writes a policy change on every node inside the client's transaction (so it commits or
    /// rolls back with the DDL, and never waits on the transaction's own locks); the proxy
    /// takes it up when that transaction commits.
    async fn store_policy(&mut self, change: PolicyChange) -> Result<(), ProxyError> {
        let writes: Vec<Execute> = match &change {
            PolicyChange::Create(policy) | PolicyChange::Alter(policy) => vec![text_params(
                UPSERT,
                &[&policy.table, &stored_options(policy)],
            )],
            PolicyChange::Drop(tables) => tables
                .iter()
                .filter(|t| self.proxy.cluster.has_policy(t))
                .map(|t| text_params(DELETE, &[t]))
                .collect(),
        };
        if writes.is_empty() {
            return Ok(());
        }
        for node in 0..self.proxy.cluster.nodes.len() {
            self.ensure_node_transaction(node).await?;
            self.track(node, true)?;
            self.node_command(node, CREATE).await?;
            for write in &writes {
                let mut stream = self.node(node).await?.execute(write.clone()).await?;
                loop {
                    match stream.recv().await {
                        Some(Ok(Reply::Complete { .. })) => break,
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(e.into()),
                        None => return Err(self.node_gone(node)),
                    }
                }
            }
        }
        match change {
            // Statements later in the transaction must already route by the new policy; a
            // rollback puts the old one back.
            PolicyChange::Create(policy) | PolicyChange::Alter(policy) => {
                let cluster = &self.proxy.cluster;
                let previous = cluster
                    .has_policy(&policy.table)
                    .then(|| cluster.policy(&policy.table));
                if self.status != TxnStatus::Idle {
                    self.policy_undo.push((policy.table.clone(), previous));
                }
                // A table dropped earlier in this transaction and created again keeps the
                // new policy when the transaction commits.
                for pending in &mut self.pending_policies {
                    if let PolicyChange::Drop(tables) = pending {
                        tables.retain(|t| *t != policy.table);
                    }
                }
                let table = policy.table.clone();
                cluster.set_policy(policy);
                // The nodes must know the policy before rows of the table commit (they file
                // each captured row under its shard), also rows written later in this very
                // transaction: the map goes out now, to every node, not at the next round. A
                // node that did not take it would file them under the wrong shard (the policy
                // rows written above are not visible to it before the commit), so the
                // statement fails instead and its transaction rolls back.
                let missed = self.proxy.sync_map_to_all().await;
                if !missed.is_empty() {
                    return Err(sql_error(
                        "08006",
                        format!(
                            "the placement of {table} could not be given to node {}; try again",
                            missed.join(", ")
                        ),
                    ));
                }
            }
            drop @ PolicyChange::Drop(_) if self.status == TxnStatus::Idle => {
                self.apply_policy(drop)
            }
            drop @ PolicyChange::Drop(_) => self.pending_policies.push(drop),
        }
        Ok(())
    }

    /// Puts back the policies a transaction replaced, newest first.
    pub(crate) fn undo_policies(&self, undo: Vec<(String, Option<TablePolicy>)>) {
        for (table, previous) in undo.into_iter().rev() {
            match previous {
                Some(policy) => self.proxy.cluster.set_policy(policy),
                None => self.proxy.cluster.remove_policy(&table),
            }
        }
    }

    pub(crate) fn apply_policy(&self, change: PolicyChange) {
        let cluster = &self.proxy.cluster;
        match change {
            PolicyChange::Create(policy) | PolicyChange::Alter(policy) => {
                cluster.set_policy(policy)
            }
            PolicyChange::Drop(tables) => {
                for table in tables {
                    cluster.remove_policy(&table);
                }
            }
        }
    }

    /// Changing how a table is sharded would leave its rows on the wrong nodes: refused unless
    /// the table is empty.
    async fn check_resharding(&mut self, policy: &TablePolicy) -> Result<(), ProxyError> {
        let cluster = &self.proxy.cluster;
        let current = cluster.policy(&policy.table);
        let same_layout = cluster.has_policy(&policy.table)
            && current.shard_keys == policy.shard_keys
            && current.shards == policy.shards
            && current.range_sharding == policy.range_sharding
            && current.ranges == policy.ranges;
        if same_layout {
            return Ok(());
        }
        let probe = format!("SELECT 1 FROM {} LIMIT 1", quote_ident(&policy.table));
        for node in 0..self.proxy.cluster.nodes.len() {
            let mut stream = self
                .node(node)
                .await?
                .execute(Execute::simple(probe.as_str()))
                .await?;
            while let Some(reply) = stream.recv().await {
                match reply {
                    Ok(Reply::Rows(rows)) if !rows.is_empty() => {
                        return Err(sql_error(
                            "0A000",
                            format!(
                                "table {} has rows: changing its shard keys, shard count or \
                                 ranges would leave them on the wrong nodes; create the table \
                                 with its policy before loading it",
                                policy.table
                            ),
                        ));
                    }
                    Ok(Reply::Complete { .. }) => break,
                    Ok(_) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    // ---- running statements ----

    /// Runs a forwarded statement where it belongs and streams its results to the client.
    pub(crate) async fn run_forward(
        &mut self,
        request: Execute,
        output: Output,
        ddl: bool,
    ) -> Result<Finished, ProxyError> {
        self.check_writable(&request.sql)?;
        let request = self.with_insert_columns(request).await?;
        let request = self.with_generated_values(request).await?;
        self.collect_commit_positions();
        let (target, writes) = match self.filled_insert_select(&request).await? {
            Some(target) => (target, true),
            None => self.target(&request)?,
        };
        // Writes on several nodes, and DDL (every node), are atomic even in autocommit.
        let implicit = self.status == TxnStatus::Idle
            && (matches!(target, Target::Many(_) | Target::InsertSelect { .. })
                || (ddl && matches!(target, Target::All)));
        if implicit {
            self.begin_transaction("BEGIN")?;
        }
        let answer_mark = (self.conn.flushes, self.conn.out.len());
        if writes
            && let Ok(Route::Write { table, .. } | Route::InsertSelect { table, .. }) =
                self.proxy.cluster.route(&request.sql).as_ref()
        {
            self.wrote(table);
        }
        self.statement_transaction = implicit;
        let stand_ins = if ddl {
            self.stand_in_sequences(&request.sql).await
        } else {
            Ok(())
        };
        let mut result = match stand_ins {
            Ok(()) => self.run_target(target, writes, request, output, ddl).await,
            Err(e) => Err(e),
        };
        self.statement_transaction = false;
        if implicit {
            let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
            let finished = self.finish_transaction(end).await;
            if let (Ok(_), Err(e)) = (&result, finished) {
                // Take back the statement's answer if it is still ours to take.
                if self.conn.flushes == answer_mark.0 {
                    self.conn.out.truncate(answer_mark.1);
                }
                result = Err(e);
            }
        }
        if ddl && self.status != TxnStatus::Idle {
            self.ran_ddl = true;
        }
        if ddl && result.is_ok() {
            self.proxy.descriptions.clear();
            self.proxy.cluster.named_inserts.clear();
            self.proxy.cluster.sequences.forget_shapes();
        }
        result
    }

    /// An `INSERT INTO t VALUES ...` naming no columns cannot be routed when `t` is sharded
    /// (the router does not know where the key is): it gets the table's columns named, as a
    /// node describes the table (the rewrite is kept per statement text until the next DDL).
    async fn with_insert_columns(&mut self, request: Execute) -> Result<Execute, ProxyError> {
        if mycelium_router::statement_kind(&request.sql) != "insert"
            || self.proxy.cluster.route(&request.sql).is_ok()
        {
            return Ok(request);
        }
        let cluster = &self.proxy.cluster;
        if let Some(named) = cluster.named_inserts.get(&request.sql) {
            return Ok(Execute {
                sql: named.clone(),
                ..request
            });
        }
        let Some(table) = mycelium_router::insert_without_columns(&request.sql) else {
            return Ok(request);
        };
        let node = self.any_node();
        self.ensure_node_transaction(node).await?;
        let description = self
            .node(node)
            .await?
            .describe(&format!("SELECT * FROM {}", quote_ident(&table)), &[])
            .await?;
        let columns: Vec<String> = description.columns.into_iter().map(|c| c.name).collect();
        let named: Arc<str> = Arc::from(mycelium_router::name_insert_columns(
            &request.sql,
            &columns,
        )?);
        let named_inserts = &self.proxy.cluster.named_inserts;
        if named_inserts.len() > 10_000 {
            named_inserts.clear();
        }
        named_inserts.insert(request.sql.clone(), named.clone());
        Ok(Execute {
            sql: named,
            ..request
        })
    }

    /// An INSERT into a sharded table that leaves a serial or identity column to its default
    /// gets values from the cluster's counter instead of each node's sequence, and one that
    /// leaves a column drawing from a sequence the proxies keep gets values from it (see
    /// `sequences`), written into the statement; so do its VALUES calling `nextval` or
    /// `currval` of such a sequence.
    async fn with_generated_values(&mut self, request: Execute) -> Result<Execute, ProxyError> {
        use crate::sequences::{need_of, numbered_insert_table};
        let proxy = self.proxy.clone();
        let cluster = &proxy.cluster;
        if mycelium_router::statement_kind(&request.sql) != "insert" {
            return Ok(request);
        }
        let known = if self.ran_ddl {
            None
        } else {
            cluster.sequences.known_need(&request.sql)
        };
        let need = match known {
            Some(need) => need,
            None => {
                let (need, known) = match numbered_insert_table(cluster, &request.sql) {
                    None => (None, true),
                    Some(table) => match self.generated_columns(&table).await? {
                        Some(generated) => (need_of(&request.sql, &table, &generated)?, true),
                        // The node lacks the table: the statement fails there or finds it
                        // later; nothing learned.
                        None => (None, false),
                    },
                };
                if known && !self.ran_ddl {
                    cluster.sequences.remember(&request.sql, need.clone());
                }
                need
            }
        };
        let sql = match need {
            Some(need) => {
                let fills = self.draw_fills(&need).await?;
                Arc::from(mycelium_router::fill_defaults(&request.sql, &fills)?)
            }
            None => request.sql.clone(),
        };
        let sql = self.with_sequence_values(sql).await?;
        Ok(Execute { sql, ..request })
    }

    /// Values for `need` from the cluster's counters and sequences: inside the client's
    /// transaction when it already wrote on the counters' node (see `Sequences::fills`).
    pub(crate) async fn draw_fills(
        &mut self,
        need: &crate::sequences::Need,
    ) -> Result<Vec<mycelium_router::ColumnFill>, ProxyError> {
        let drawn = self.draw_values(need).await?;
        for (sequence, value) in drawn.sequences {
            self.drawn.record(sequence, value);
        }
        Ok(drawn.fills)
    }

    async fn draw_values(
        &mut self,
        need: &crate::sequences::Need,
    ) -> Result<crate::sequences::Drawn, ProxyError> {
        let proxy = self.proxy.clone();
        let cluster = &proxy.cluster;
        let home = crate::sequences::counter_home(cluster)?;
        // Only a transaction that wrote there holds the node's write lock; one that only
        // read would have to upgrade its snapshot, which SQLite refuses once others wrote.
        if !self.wrote_in_transaction(home.node) {
            return cluster.sequences.fills(cluster, &home, need, None).await;
        }
        self.track(home.node, true)?;
        let session = self.node(home.node).await?;
        cluster
            .sequences
            .fills(cluster, &home, need, Some(session.as_mut()))
            .await
    }

    /// Whether the client's open transaction wrote on `node` (and so holds a SQLite node's
    /// write lock).
    pub(crate) fn wrote_in_transaction(&self, node: usize) -> bool {
        self.status != TxnStatus::Idle
            && self
                .nodes
                .get(node)
                .and_then(Option::as_ref)
                .is_some_and(|conn| conn.in_txn && conn.wrote)
    }

    /// The generated columns of `table` the proxy fills (see `sequences::resolve`): as the
    /// client's transaction sees them when it changed the schema (the table may be new in it);
    /// `None` when the node asked does not have the table.
    pub(crate) async fn generated_columns(
        &mut self,
        table: &str,
    ) -> Result<Option<Arc<Vec<crate::sequences::Generated>>>, ProxyError> {
        use crate::sequences::{columns_query, describing_node, resolve};
        let proxy = self.proxy.clone();
        let cluster = &proxy.cluster;
        if !self.ran_ddl {
            return cluster.sequences.generated_columns(cluster, table).await;
        }
        let node = describing_node(cluster, table)?;
        self.ensure_node_transaction(node).await?;
        let session = self.node(node).await?;
        let rows = crate::policy_store::run(session.as_mut(), columns_query(table)).await?;
        let mut home = self.home_session().await?;
        let resolved = resolve(cluster, table, rows, Some(home.session())).await;
        self.give_back(home);
        Ok(resolved?.map(Arc::new))
    }

    async fn run_target(
        &mut self,
        target: Target,
        writes: bool,
        request: Execute,
        output: Output,
        ddl: bool,
    ) -> Result<Finished, ProxyError> {
        match target {
            Target::One(node) => {
                let answer_mark = (self.conn.flushes, self.conn.out.len());
                let mut result = self.run_on(node, &request, output, writes).await;
                // A read outside a transaction that found its node gone, before anything went
                // to the client, is tried once more on the copy chosen now.
                if let Err(ProxyError::Db(db)) = &result
                    && db.code == "08006"
                    && !writes
                    && self.status == TxnStatus::Idle
                    && self.conn.flushes == answer_mark.0
                    && let Ok((Target::One(other), false)) = self.target(&request)
                    && other != node
                {
                    tracing::info!(from = %self.node_name(node), to = %self.node_name(other), "read failed over");
                    self.conn.out.truncate(answer_mark.1);
                    result = self.run_on(other, &request, output, writes).await;
                }
                // A copy still behind this session's own writes: read the primary.
                if let Err(error) = &result
                    && crate::replicas::replica_behind(error)
                    && self.conn.flushes == answer_mark.0
                {
                    self.own_writes.primaries_only = true;
                    let primary = self.target(&request);
                    self.own_writes.primaries_only = false;
                    if let Ok((Target::One(primary), false)) = primary {
                        self.conn.out.truncate(answer_mark.1);
                        result = self.run_on(primary, &request, output, writes).await;
                    }
                }
                // Routed by a map older than the node's: catch up and route again, once,
                // outside a transaction (inside one the client retries on the 40001).
                if let Err(ProxyError::Db(db)) = &result
                    && db.code == "40001"
                    && db.message.starts_with(mycelium_protocol::STALE_MAP)
                    && self.status == TxnStatus::Idle
                    && self.conn.flushes == answer_mark.0
                {
                    self.proxy.sync_map().await;
                    if let Ok((Target::One(again), again_writes)) = self.target(&request) {
                        self.conn.out.truncate(answer_mark.1);
                        result = self.run_on(again, &request, output, again_writes).await;
                    }
                }
                match result {
                    // Only a lost node is worth the work of naming its shards.
                    Err(ProxyError::Db(mut db)) if db.code == "08006" => {
                        if let Some(shards) = self.shard_context(&request) {
                            db.message = format!("shard {shards} is unavailable: {}", db.message);
                        }
                        Err(ProxyError::Db(db))
                    }
                    other => other,
                }
            }
            Target::All => {
                let change = self.policy_change(&request.sql)?;
                self.check_unique_keys(&request.sql, change.as_ref())?;
                if let Some(PolicyChange::Alter(policy)) = change {
                    self.check_resharding(&policy).await?;
                    self.store_policy(PolicyChange::Alter(policy)).await?;
                    backend::command_complete(&mut self.conn.out, "ALTER TABLE");
                    return Ok(Finished::Complete);
                }
                let finished = self.run_everywhere(request, output, ddl).await?;
                if let Some(change) = change {
                    self.store_policy(change).await?;
                }
                Ok(finished)
            }
            Target::Scatter {
                placement,
                assignment,
            } if mycelium_router::statement_kind(&request.sql) == "explain" => {
                let nodes = assignment
                    .iter()
                    .map(|(&node, keep)| Ok((node, self.scoped(node, &placement, keep, &request)?)))
                    .collect::<Result<_, ProxyError>>()?;
                self.run_explain_many(nodes, false, output).await
            }
            Target::Many(nodes) if mycelium_router::statement_kind(&request.sql) == "explain" => {
                self.run_explain_many(nodes, true, output).await
            }
            Target::Scatter {
                placement,
                assignment,
            } => {
                let answer_mark = (self.conn.flushes, self.conn.out.len());
                let result = self
                    .run_scatter(&placement, assignment, request.clone(), output)
                    .await;
                match result {
                    Err(error)
                        if crate::replicas::replica_behind(&error)
                            && self.conn.flushes == answer_mark.0 =>
                    {
                        self.own_writes.primaries_only = true;
                        let primaries = self.target(&request);
                        self.own_writes.primaries_only = false;
                        self.conn.out.truncate(answer_mark.1);
                        match primaries? {
                            (
                                Target::Scatter {
                                    placement,
                                    assignment,
                                },
                                _,
                            ) => {
                                self.run_scatter(&placement, assignment, request, output)
                                    .await
                            }
                            (Target::One(node), _) => {
                                self.run_on(node, &request, output, false).await
                            }
                            _ => Err(error),
                        }
                    }
                    other => other,
                }
            }
            Target::Many(nodes) => self.run_write_many(nodes, output).await,
            Target::InsertSelect {
                table,
                columns,
                select,
            } => {
                self.run_insert_select(&table, columns, &select, &request)
                    .await
            }
        }
    }

    async fn run_on(
        &mut self,
        node: usize,
        request: &Execute,
        output: Output,
        writes: bool,
    ) -> Result<Finished, ProxyError> {
        self.ensure_node_transaction(node).await?;
        self.track(node, writes)?;
        let statement = self.start_statement();
        let result = async {
            let stream = self.node(node).await?.execute(request.clone()).await?;
            self.stream_results(
                Source::Live(stream),
                node,
                request,
                output,
                DataRows::default(),
                &statement,
            )
            .await
        }
        .await;
        self.cancel.end_statement();
        result
    }

    /// DDL and maintenance: every node runs it; the client sees the first node's answer.
    async fn run_everywhere(
        &mut self,
        request: Execute,
        output: Output,
        writes: bool,
    ) -> Result<Finished, ProxyError> {
        let finished = self.run_on(0, &request, output, writes).await?;
        for node in 1..self.proxy.cluster.nodes.len() {
            self.ensure_node_transaction(node).await?;
            self.track(node, writes)?;
            let mut stream = self.node(node).await?.execute(request.clone()).await?;
            loop {
                match stream.recv().await {
                    Some(Ok(Reply::Complete { .. })) => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(self.node_gone(node)),
                }
            }
        }
        Ok(finished)
    }

    /// A write on several nodes, inside the client's (or an implicit) transaction. The answer
    /// (RETURNING rows, grouped by node, and the summed tag) is buffered until every node has
    /// answered, so a node's error never follows another node's rows.
    async fn run_write_many(
        &mut self,
        nodes: Vec<(usize, Execute)>,
        output: Output,
    ) -> Result<Finished, ProxyError> {
        let statement = self.start_statement();
        let result = async {
            let mut answer = BytesMut::new();
            let mut described = false;
            let mut verb = String::new();
            let mut count = 0u64;
            for (node, request) in nodes {
                self.ensure_node_transaction(node).await?;
                self.track(node, true)?;
                let mut stream = self.node(node).await?.execute(request.clone()).await?;
                loop {
                    let reply = tokio::select! {
                        reply = stream.recv() => reply,
                        () = statement.token.cancelled() => return Err(statement.cancel_error()),
                    };
                    match reply {
                        Some(Ok(Reply::Columns(columns))) => {
                            self.check_result_shape(columns.len())?;
                            if !described && matches!(output, Output::Simple) {
                                backend::row_description(&mut answer, &columns, |i| {
                                    request.result_format(i)
                                });
                            }
                            described = true;
                        }
                        Some(Ok(Reply::Rows(rows))) => answer.extend_from_slice(rows.bytes()),
                        Some(Ok(Reply::Complete { tag })) => {
                            let (head, n) = tag.rsplit_once(' ').unwrap_or((tag.as_str(), "0"));
                            verb = head.to_owned();
                            count += n.parse::<u64>().unwrap_or(0);
                            break;
                        }
                        Some(Err(e)) => return Err(e.into()),
                        None => return Err(self.node_gone(node)),
                    }
                }
            }
            backend::command_complete(&mut answer, &format!("{verb} {count}"));
            self.conn.out.extend_from_slice(&answer);
            Ok(Finished::Complete)
        }
        .await;
        self.cancel.end_statement();
        result
    }

    /// Resumes a suspended portal.
    pub(crate) async fn resume(
        &mut self,
        suspended: Suspended,
        request: &Execute,
        output: Output,
    ) -> Result<Finished, ProxyError> {
        let statement = self.start_statement();
        let result = self
            .stream_results(
                suspended.source,
                suspended.node,
                request,
                output,
                suspended.pending,
                &statement,
            )
            .await;
        self.cancel.end_statement();
        result
    }

    /// A prepared statement's rows must have the columns the client was told of: after the
    /// table changed, Postgres refuses to run it ("cached plan must not change result type")
    /// rather than send rows that do not match their description. Column counts are compared,
    /// not types, which a SQLite node may infer differently when it describes and when it runs.
    pub(crate) fn check_result_shape(&self, columns: usize) -> Result<(), ProxyError> {
        match &self.described {
            Some(described) if described.columns.len() != columns => Err(sql_error(
                "0A000",
                "cached plan must not change result type",
            )),
            _ => Ok(()),
        }
    }

    /// Sends replies to the client until the statement completes or `max_rows` is reached.
    async fn stream_results(
        &mut self,
        mut source: Source,
        node: usize,
        request: &Execute,
        output: Output,
        mut pending: DataRows,
        statement: &Statement,
    ) -> Result<Finished, ProxyError> {
        let limit = match output {
            Output::Extended { max_rows } if max_rows > 0 => Some(max_rows),
            _ => None,
        };
        let mut sent = 0usize;
        loop {
            if !pending.is_empty() {
                let room = limit.map_or(usize::MAX, |l| l - sent);
                let batch = pending.split_first(room);
                sent += batch.len();
                self.conn.out.extend_from_slice(batch.bytes());
                self.conn.flush_if_full().await?;
                if limit == Some(sent) {
                    backend::portal_suspended(&mut self.conn.out);
                    return Ok(Finished::Suspended(Suspended {
                        source,
                        pending,
                        node,
                    }));
                }
            }
            let reply = tokio::select! {
                reply = source.next() => reply,
                () = statement.token.cancelled() => {
                    drop(source);
                    return Err(statement.cancel_error());
                }
            };
            match reply {
                Some(Ok(Reply::Columns(columns))) => {
                    self.check_result_shape(columns.len())?;
                    if matches!(output, Output::Simple) {
                        backend::row_description(&mut self.conn.out, &columns, |i| {
                            request.result_format(i)
                        });
                    }
                }
                Some(Ok(Reply::Rows(rows))) => pending = rows,
                Some(Ok(Reply::Complete { tag })) => {
                    backend::command_complete(&mut self.conn.out, &tag);
                    return Ok(Finished::Complete);
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(self.node_gone(node)),
            }
        }
    }
}

/// The key values of one key, with parameters taken from the bound values.
fn only_node(assignment: &Assignment) -> usize {
    assignment.keys().next().copied().unwrap_or(0)
}

fn resolve_key(key: &[KeyExpr], request: &Execute) -> Option<Vec<KeyValue>> {
    key.iter()
        .map(|part| match part {
            KeyExpr::Value(value) => Some(value.clone()),
            KeyExpr::Param(n) => param_key(request, *n),
        })
        .collect()
}

/// A bound parameter as a key value, following the canonical rules of the shard hash.
fn param_key(request: &Execute, n: usize) -> Option<KeyValue> {
    let index = n.checked_sub(1)?;
    let Some(value) = request.params.get(index)? else {
        // A NULL key matches no row; any shard answers that correctly.
        return Some(KeyValue::Text(String::new()));
    };
    let format = request
        .param_formats
        .get(index)
        .copied()
        .unwrap_or_default();
    if format == Format::Text {
        return std::str::from_utf8(value).ok().map(KeyValue::from_text);
    }
    let type_oid = request.param_types.get(index).copied().unwrap_or(0);
    match PgType::from_oid(type_oid) {
        Some(PgType::Int2) if value.len() == 2 => {
            Some(KeyValue::Int(i64::from(i16::from_be_bytes([
                value[0], value[1],
            ]))))
        }
        Some(PgType::Int4) if value.len() == 4 => {
            Some(KeyValue::Int(i64::from(i32::from_be_bytes([
                value[0], value[1], value[2], value[3],
            ]))))
        }
        Some(PgType::Int8) if value.len() == 8 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(value);
            Some(KeyValue::Int(i64::from_be_bytes(bytes)))
        }
        Some(PgType::Uuid) if value.len() == 16 => {
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(value);
            Some(KeyValue::Uuid(bytes))
        }
        _ if type_oid == oid::TEXT
            || type_oid == oid::VARCHAR
            || type_oid == oid::BPCHAR
            || type_oid == oid::NAME =>
        {
            std::str::from_utf8(value).ok().map(KeyValue::from_text)
        }
        _ => None,
    }
}

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
