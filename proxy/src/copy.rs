//! COPY between the client and a table: `FROM STDIN` parses text, CSV or binary rows and writes
//! them in batches inside one transaction, each row to the node of its shard (two-phase commit
//! when several nodes wrote); `TO STDOUT` formats the rows of a query, or of a table node by
//! node.

use std::collections::BTreeMap;
use std::sync::Arc;

use mycelium_protocol::{CopyIn, Execute, Format, Reply};
use mycelium_router::{
    CopyDirection, CopyFormat, CopyPlan, CopySourceKind, KeyValue, TablePlacement,
};
use pgwire::messages::PgWireFrontendMessage;

use crate::backend::{self, TxnStatus};
use crate::cluster::Cluster;
use crate::copy_binary::{self, BinaryCopyParser};
use crate::error::{ProxyError, sql_error};
use crate::execute::{Finished, Target};
use crate::sequences::{Generated, Need, may_number, numbered_by_proxy};
use crate::session::Session;

/// Rows sent to the node per batch.
const BATCH_ROWS: usize = 1000;

impl Session {
    pub(crate) async fn copy(&mut self, plan: &CopyPlan) -> Result<(), ProxyError> {
        match plan.direction {
            CopyDirection::FromStdin => self.copy_from_stdin(plan).await,
            CopyDirection::ToStdout => self.copy_to_stdout(plan).await,
        }
    }

    async fn copy_from_stdin(&mut self, plan: &CopyPlan) -> Result<(), ProxyError> {
        let CopySourceKind::Table(table) = &plan.source else {
            return Err(sql_error("42601", "COPY FROM takes a table"));
        };
        self.check_read_only("COPY FROM")?;
        let routing = self.copy_routing(table)?;
        // Like any write: the session's next reads of the table must see the copied rows.
        self.wrote(table);
        // Describing the target first reports a missing table or column before any data moves.
        let probe = format!("SELECT {} FROM {table}", column_list(&plan.columns));
        let description = self
            .node(routing.any_node())
            .await?
            .describe(&probe, &[])
            .await?;
        let missing = self.missing_generated(table, &plan.columns).await?;
        let mut columns = plan.columns.clone();
        columns.extend(missing.iter().map(|g| g.column.clone()));
        let mut rows = match routing {
            CopyRouting::One(node) => RoutedRows::One(node, Vec::new()),
            CopyRouting::Sharded { placement, .. } => {
                let names: Vec<&str> = if columns.is_empty() {
                    description
                        .columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect()
                } else {
                    columns.iter().map(String::as_str).collect()
                };
                let key_columns = key_columns(&placement, &names)?;
                RoutedRows::Sharded {
                    placement,
                    key_columns,
                    batches: BTreeMap::new(),
                    joined: Vec::new(),
                }
            }
        };
        // Outside a transaction the COPY is its own: on one node a plain one, over several
        // the session's (committed in two phases when more than one node wrote).
        let own_transaction = self.status == TxnStatus::Idle;
        match &rows {
            RoutedRows::One(node, _) if own_transaction => {
                self.node_command(*node, "BEGIN").await?;
            }
            RoutedRows::One(node, _) => {
                self.ensure_node_transaction(*node).await?;
                self.track(*node, true)?;
            }
            RoutedRows::Sharded { .. } if own_transaction => self.begin_transaction("BEGIN")?,
            RoutedRows::Sharded { .. } => {}
        }
        backend::copy_in_response(
            &mut self.conn.out,
            description.columns.len(),
            wire_format(plan),
        );
        self.conn.flush().await?;

        let mut parser = if plan.format == CopyFormat::Binary {
            RowParser::Binary(BinaryCopyParser::new(description.columns.clone()))
        } else {
            RowParser::Text(CopyParser::new(plan))
        };
        let mut written = 0u64;
        let mut failure: Option<ProxyError> = None;
        loop {
            let message = self.conn.read_message().await?;
            match message {
                Some(PgWireFrontendMessage::CopyData(data)) => {
                    if failure.is_some() {
                        continue;
                    }
                    parser.feed(&data.data);
                    let target = CopyTarget {
                        table,
                        columns: &columns,
                        missing: &missing,
                    };
                    if let Err(e) = self
                        .send_batches(&mut rows, &target, &mut parser, false, &mut written)
                        .await
                    {
                        failure = Some(e);
                    }
                }
                Some(PgWireFrontendMessage::CopyDone(_)) => {
                    if failure.is_none() {
                        parser.finish();
                        let target = CopyTarget {
                            table,
                            columns: &columns,
                            missing: &missing,
                        };
                        if let Err(e) = self
                            .send_batches(&mut rows, &target, &mut parser, true, &mut written)
                            .await
                        {
                            failure = Some(e);
                        }
                    }
                    break;
                }
                Some(PgWireFrontendMessage::CopyFail(fail)) => {
                    failure = Some(sql_error(
                        "57014",
                        format!("COPY from stdin failed: {}", fail.message),
                    ));
                    break;
                }
                Some(PgWireFrontendMessage::Flush(_) | PgWireFrontendMessage::Sync(_)) => {}
                Some(_) => {
                    return Err(ProxyError::Protocol(
                        "unexpected message type during COPY FROM STDIN".to_owned(),
                    ));
                }
                None => {
                    return Err(ProxyError::Protocol(
                        "client closed the connection during COPY".to_owned(),
                    ));
                }
            }
        }
        let ended = match (&rows, &failure, own_transaction) {
            (_, _, false) => Ok(()),
            (RoutedRows::One(node, _), None, true) => {
                self.node_command(*node, "COMMIT").await.map(drop)
            }
            (RoutedRows::Sharded { .. }, None, true) => self.finish_transaction("COMMIT").await,
            // The error the client sees is the COPY's; a failed rollback adds nothing.
            (RoutedRows::One(node, _), Some(_), true) => {
                let _ = self.node_command(*node, "ROLLBACK").await;
                Ok(())
            }
            (RoutedRows::Sharded { .. }, Some(_), true) => {
                let _ = self.finish_transaction("ROLLBACK").await;
                Ok(())
            }
        };
        match failure {
            Some(error) => Err(error),
            None => {
                ended?;
                backend::command_complete(&mut self.conn.out, &format!("COPY {written}"));
                Ok(())
            }
        }
    }

    /// Sends the parsed rows in batches of [`BATCH_ROWS`] per node; with `all`, also the last
    /// partial batches.
    async fn send_batches(
        &mut self,
        rows: &mut RoutedRows,
        target: &CopyTarget<'_>,
        parser: &mut RowParser,
        all: bool,
        written: &mut u64,
    ) -> Result<(), ProxyError> {
        if let Some(error) = parser.take_error() {
            return Err(error);
        }
        self.add_generated(target.table, target.missing, parser.rows())
            .await?;
        rows.route(parser.rows(), &self.proxy.cluster)?;
        self.send_routed(rows, target.table, target.columns, all, written)
            .await
    }

    /// Where an INSERT ... SELECT that leaves out a column drawing from a sequence the proxies
    /// keep runs: as the proxy's own INSERT ... SELECT, which fills that column, whatever
    /// the table's placement (the router already sends sharded tables there). `None` for
    /// any other statement.
    pub(crate) async fn filled_insert_select(
        &mut self,
        request: &Execute,
    ) -> Result<Option<Target>, ProxyError> {
        // Most INSERTs are VALUES: they skip the parse.
        let selects = request
            .sql
            .as_bytes()
            .windows(6)
            .any(|w| w.eq_ignore_ascii_case(b"select"));
        if !selects || mycelium_router::statement_kind(&request.sql) != "insert" {
            return Ok(None);
        }
        let Some(parts) = mycelium_router::insert_select_parts(&request.sql) else {
            return Ok(None);
        };
        let cluster = &self.proxy.cluster;
        if numbered_by_proxy(cluster, &parts.table) || !may_number(cluster, &parts.table) {
            return Ok(None);
        }
        let missing = self.missing_generated(&parts.table, &parts.columns).await?;
        if !missing.iter().any(Generated::draws_from_sequence) {
            return Ok(None);
        }
        if parts.on_conflict_or_returning {
            return Err(sql_error(
                "0A000",
                format!(
                    "INSERT INTO {} ... SELECT with ON CONFLICT or RETURNING is not supported \
                     when it leaves a column to a sequence the proxies keep: insert the rows \
                     with VALUES",
                    parts.table
                ),
            ));
        }
        Ok(Some(Target::InsertSelect {
            table: parts.table,
            columns: parts.columns,
            select: parts.select,
        }))
    }

    /// The generated columns of `table` the proxy fills (see `sequences::resolve`) that a
    /// COPY or INSERT ... SELECT naming `columns` leaves out (none when it names none: it
    /// gives them all). The proxy adds their values, as for INSERT ... VALUES.
    async fn missing_generated(
        &mut self,
        table: &str,
        columns: &[String],
    ) -> Result<Vec<Generated>, ProxyError> {
        let table = table.to_ascii_lowercase();
        if columns.is_empty() || !may_number(&self.proxy.cluster, &table) {
            return Ok(Vec::new());
        }
        Ok(self
            .generated_columns(&table)
            .await?
            .map(|generated| {
                generated
                    .iter()
                    .filter(|g| !columns.contains(&g.column))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Appends to each row the values of the `missing` generated columns.
    async fn add_generated(
        &mut self,
        table: &str,
        missing: &[Generated],
        rows: &mut [Row],
    ) -> Result<(), ProxyError> {
        if missing.is_empty() || rows.is_empty() {
            return Ok(());
        }
        let need = Need::every_row(&table.to_ascii_lowercase(), missing, rows.len());
        for fill in self.draw_fills(&need).await? {
            for (row, value) in fill.values {
                if let Some(row) = rows.get_mut(row) {
                    row.push(Some(value.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Sends routed rows to their nodes, each joining the transaction at its first batch.
    async fn send_routed(
        &mut self,
        rows: &mut RoutedRows,
        table: &str,
        columns: &[String],
        all: bool,
        written: &mut u64,
    ) -> Result<(), ProxyError> {
        while let Some((node, batch)) = rows.next_batch(all) {
            if let RoutedRows::Sharded { joined, .. } = rows
                && !joined.contains(&node)
            {
                joined.push(node);
                self.ensure_node_transaction(node).await?;
                self.track(node, true)?;
            }
            let batch = CopyIn {
                table: table.to_owned(),
                columns: columns.to_vec(),
                rows: batch,
            };
            *written += self.node(node).await?.copy_in(batch).await?;
        }
        Ok(())
    }

    async fn copy_to_stdout(&mut self, plan: &CopyPlan) -> Result<(), ProxyError> {
        let query = match &plan.source {
            CopySourceKind::Table(table) => {
                format!("SELECT {} FROM {table}", column_list(&plan.columns))
            }
            CopySourceKind::Query(query) => query.clone(),
        };
        let format = wire_format(plan);
        let mut request = Execute::simple(query);
        request.result_formats = Arc::from(vec![format]);
        // A table spread over nodes is copied node by node, each node sending only its shards;
        // a query over several nodes would need the proxy's merge, which COPY does not run.
        let parts = match self.target(&request)?.0 {
            Target::One(node) => vec![(node, request)],
            Target::Scatter {
                placement,
                assignment,
            } if matches!(plan.source, CopySourceKind::Table(_)) => assignment
                .iter()
                .map(|(&node, keep)| Ok((node, self.scoped(node, &placement, keep, &request)?)))
                .collect::<Result<Vec<_>, ProxyError>>()?,
            _ => {
                return Err(sql_error(
                    "0A000",
                    "COPY (query) TO STDOUT over rows on several nodes is not supported yet; \
                     filter the query on the shard key, or COPY the table",
                ));
            }
        };
        let mut line = Vec::with_capacity(256);
        let mut count = 0u64;
        let mut started = false;
        for (node, request) in parts {
            self.ensure_node_transaction(node).await?;
            let mut stream = self.node(node).await?.execute(request).await?;
            loop {
                match stream.recv().await {
                    Some(Ok(Reply::Columns(columns))) => {
                        if started {
                            continue;
                        }
                        started = true;
                        backend::copy_out_response(&mut self.conn.out, columns.len(), format);
                        if plan.header && plan.format == CopyFormat::Csv {
                            line.clear();
                            let names: Vec<Option<&[u8]>> =
                                columns.iter().map(|c| Some(c.name.as_bytes())).collect();
                            format_row(plan, &names, &mut line);
                            backend::copy_data(&mut self.conn.out, &line);
                        }
                    }
                    Some(Ok(Reply::Rows(mut rows))) if format == Format::Binary => {
                        // A binary DataRow's body (field count, then length-prefixed values) is
                        // exactly a binary COPY tuple.
                        // The header travels with the first row, as Postgres sends it (clients
                        // parse each CopyData as whole rows).
                        while !rows.is_empty() {
                            let row = rows.split_first(1);
                            if count == 0 {
                                let mut first = copy_binary::header();
                                first.extend_from_slice(&row.bytes()[5..]);
                                backend::copy_data(&mut self.conn.out, &first);
                            } else {
                                backend::copy_data(&mut self.conn.out, &row.bytes()[5..]);
                            }
                            count += 1;
                        }
                        self.conn.flush_if_full().await?;
                    }
                    Some(Ok(Reply::Rows(rows))) => {
                        for row in rows.iter() {
                            line.clear();
                            format_row(plan, &row, &mut line);
                            backend::copy_data(&mut self.conn.out, &line);
                            count += 1;
                        }
                        self.conn.flush_if_full().await?;
                    }
                    Some(Ok(Reply::Complete { .. })) => break,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(self.node_gone(node)),
                }
            }
        }
        if format == Format::Binary {
            if count == 0 {
                let mut only = copy_binary::header();
                only.extend_from_slice(&copy_binary::TRAILER);
                backend::copy_data(&mut self.conn.out, &only);
            } else {
                backend::copy_data(&mut self.conn.out, &copy_binary::TRAILER);
            }
        }
        backend::copy_done(&mut self.conn.out);
        backend::command_complete(&mut self.conn.out, &format!("COPY {count}"));
        Ok(())
    }
}

impl Session {
    /// `INSERT INTO sharded [(columns)] SELECT ...`, inside the session's transaction (or the
    /// implicit one `run_forward` opened): the query runs where it would run alone — on one
    /// node, or on several when its rows need no merging (no ORDER BY, LIMIT, DISTINCT or
    /// aggregate) — and its rows, as text, go to their shards' primaries as a COPY's do. The
    /// rows pass through the proxy's memory.
    pub(crate) async fn run_insert_select(
        &mut self,
        table: &str,
        columns: Vec<String>,
        select: &str,
        request: &Execute,
    ) -> Result<Finished, ProxyError> {
        let query = Execute {
            sql: Arc::from(select),
            result_formats: Arc::from(Vec::new()),
            ..request.clone()
        };
        let missing = self.missing_generated(table, &columns).await?;
        if !missing.is_empty() {
            let cluster = &self.proxy.cluster;
            let home = crate::sequences::counter_home(cluster)?;
            cluster
                .sequences
                .prime(cluster, &home, &table.to_ascii_lowercase(), &missing)
                .await?;
        }
        // As its own transaction, the statement reads on primaries, each part in a node
        // statement of its own, before it writes: a SQLite node that applied anything between
        // a transaction's read and its write there refuses the write (40001).
        let separate_reads = self.statement_transaction;
        self.own_writes.primaries_only = separate_reads;
        let target = self.target(&query);
        self.own_writes.primaries_only = false;
        let parts = match target?.0 {
            Target::One(node) => vec![(node, query)],
            Target::Scatter {
                placement,
                assignment,
            } => {
                let spec = mycelium_router::merge_spec(select)?;
                let plain = spec.node_sql.is_none()
                    && spec.order_by.is_empty()
                    && spec.limit.is_none()
                    && spec.offset == 0
                    && spec.aggregates.is_none()
                    && !spec.distinct
                    && spec.having.is_none();
                if !plain {
                    return Err(sql_error(
                        "0A000",
                        format!(
                            "INSERT INTO {table} ... SELECT from rows on several nodes must not \
                             need merging (ORDER BY, LIMIT, OFFSET, DISTINCT, aggregates); \
                             insert the query's rows with VALUES instead"
                        ),
                    ));
                }
                assignment
                    .iter()
                    .map(|(&node, keep)| Ok((node, self.scoped(node, &placement, keep, &query)?)))
                    .collect::<Result<Vec<_>, ProxyError>>()?
            }
            _ => {
                return Err(sql_error(
                    "0A000",
                    format!("the query of INSERT INTO {table} ... SELECT must read rows"),
                ));
            }
        };
        let mut selected: Vec<Row> = Vec::new();
        for (node, part) in parts {
            let mut separate = None;
            let session: &mut Box<dyn mycelium_protocol::NodeSession> = if separate_reads {
                // A session of its own, outside the client's transaction.
                let link = self.node_link(node)?;
                let mut session = link.open_session().await?;
                session.set_user(&self.user);
                session.set_map_epoch(self.proxy.cluster.map_epoch());
                session.set_time_zone(self.params.get("timezone").unwrap_or("UTC"));
                separate.insert(session)
            } else {
                self.ensure_node_transaction(node).await?;
                self.track(node, false)?;
                self.node(node).await?
            };
            let mut stream = session.execute(part).await?;
            loop {
                match stream.recv().await {
                    Some(Ok(Reply::Columns(_))) => {}
                    Some(Ok(Reply::Rows(rows))) => selected.extend(rows.iter().map(|row| {
                        row.iter()
                            .map(|field| field.map(|v| String::from_utf8_lossy(v).into_owned()))
                            .collect()
                    })),
                    Some(Ok(Reply::Complete { .. })) => break,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(self.node_gone(node)),
                }
            }
        }
        let routing = self.copy_routing(table)?;
        let names: Vec<String> = if columns.is_empty() {
            let probe = format!("SELECT * FROM {table}");
            let description = self
                .node(routing.any_node())
                .await?
                .describe(&probe, &[])
                .await?;
            description.columns.iter().map(|c| c.name.clone()).collect()
        } else {
            columns.clone()
        };
        let mut columns = columns;
        columns.extend(missing.iter().map(|g| g.column.clone()));
        let names: Vec<String> = if missing.is_empty() {
            names
        } else {
            columns.clone()
        };
        let mut rows = match routing {
            CopyRouting::One(node) => RoutedRows::One(node, Vec::new()),
            CopyRouting::Sharded { placement, .. } => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                RoutedRows::Sharded {
                    key_columns: key_columns(&placement, &names)?,
                    placement,
                    batches: BTreeMap::new(),
                    joined: Vec::new(),
                }
            }
        };
        if let RoutedRows::One(node, _) = &rows {
            let node = *node;
            self.ensure_node_transaction(node).await?;
            self.track(node, true)?;
        }
        self.add_generated(table, &missing, &mut selected).await?;
        rows.route(&mut selected, &self.proxy.cluster)?;
        let mut written = 0u64;
        self.send_routed(&mut rows, table, &columns, true, &mut written)
            .await?;
        backend::command_complete(&mut self.conn.out, &format!("INSERT 0 {written}"));
        Ok(Finished::Complete)
    }

    /// Where a COPY FROM writes: the one node holding every shard's primary, or each row to
    /// the primary of its shard.
    fn copy_routing(&self, table: &str) -> Result<CopyRouting, ProxyError> {
        let cluster = &self.proxy.cluster;
        if cluster.nodes.len() == 1 {
            return Ok(CopyRouting::One(0));
        }
        let placement = cluster.placement(&table.to_ascii_lowercase())?;
        let mut nodes: Vec<usize> = placement
            .shards
            .iter()
            .filter_map(|s| cluster.node_index(s.primary()))
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        match nodes.as_slice() {
            [node] => Ok(CopyRouting::One(*node)),
            _ => Ok(CopyRouting::Sharded {
                describe: nodes.first().copied().unwrap_or(0),
                placement,
            }),
        }
    }
}

/// Where COPY rows go and what is added to them.
struct CopyTarget<'a> {
    table: &'a str,
    /// The COPY's columns and the generated ones the proxy adds.
    columns: &'a [String],
    missing: &'a [Generated],
}

enum CopyRouting {
    One(usize),
    /// Rows go to the primaries of their shards; `describe` is one of them.
    Sharded {
        placement: Arc<TablePlacement>,
        describe: usize,
    },
}

impl CopyRouting {
    /// A node that holds the table, to describe it.
    fn any_node(&self) -> usize {
        match self {
            CopyRouting::One(node) | CopyRouting::Sharded { describe: node, .. } => *node,
        }
    }
}

type Row = Vec<Option<String>>;

/// COPY rows waiting to be sent, by the node they go to.
enum RoutedRows {
    One(usize, Vec<Row>),
    Sharded {
        placement: Arc<TablePlacement>,
        /// Positions of the shard key's columns in each row.
        key_columns: Vec<usize>,
        batches: BTreeMap<usize, Vec<Row>>,
        /// Nodes that joined the transaction.
        joined: Vec<usize>,
    },
}

impl RoutedRows {
    /// Takes the parsed rows, each to its node's batch.
    fn route(&mut self, parsed: &mut Vec<Row>, cluster: &Cluster) -> Result<(), ProxyError> {
        match self {
            RoutedRows::One(_, batch) => batch.append(parsed),
            RoutedRows::Sharded {
                placement,
                key_columns,
                batches,
                ..
            } => {
                for row in parsed.drain(..) {
                    let key = key_columns
                        .iter()
                        .map(|&i| match row.get(i) {
                            Some(Some(value)) => Ok(KeyValue::from_text(value)),
                            // A NULL key is refused by the node (the key is the primary key
                            // or part of it), wherever the row goes.
                            Some(None) => Ok(KeyValue::Text(String::new())),
                            None => Err(sql_error(
                                "22P04",
                                format!("missing data for column {}", i + 1),
                            )),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let shard = placement.policy.shard_of(&key);
                    let node = placement
                        .shards
                        .get(shard as usize)
                        .and_then(|s| cluster.node_index(s.primary()))
                        .ok_or_else(|| {
                            sql_error(
                                "08006",
                                format!(
                                    "shard {}/{shard} has no reachable primary",
                                    placement.policy.table
                                ),
                            )
                        })?;
                    batches.entry(node).or_default().push(row);
                }
            }
        }
        Ok(())
    }

    /// A full batch for some node, or with `all` any non-empty one.
    fn next_batch(&mut self, all: bool) -> Option<(usize, Vec<Row>)> {
        let take = |batch: &mut Vec<Row>| {
            let n = batch.len().min(BATCH_ROWS);
            batch.drain(..n).collect()
        };
        match self {
            RoutedRows::One(node, batch) => (batch.len() >= BATCH_ROWS
                || (all && !batch.is_empty()))
            .then(|| (*node, take(batch))),
            RoutedRows::Sharded { batches, .. } => batches
                .iter_mut()
                .find(|(_, batch)| batch.len() >= BATCH_ROWS || (all && !batch.is_empty()))
                .map(|(&node, batch)| (node, take(batch))),
        }
    }
}

/// Where the shard key's columns are among a COPY's columns.
fn key_columns(placement: &TablePlacement, names: &[&str]) -> Result<Vec<usize>, ProxyError> {
    placement
        .policy
        .shard_keys
        .iter()
        .map(|key| {
            names
                .iter()
                .position(|name| name.eq_ignore_ascii_case(key))
                .ok_or_else(|| {
                    sql_error(
                        "0A000",
                        format!(
                            "COPY into {} must include its shard key column {key}: the proxy \
                             sends each row to the node of its shard",
                            placement.policy.table
                        ),
                    )
                })
        })
        .collect()
}

/// The wire format of a COPY: text for text and CSV, binary for binary.
fn wire_format(plan: &CopyPlan) -> Format {
    if plan.format == CopyFormat::Binary {
        Format::Binary
    } else {
        Format::Text
    }
}

/// The parser of COPY input, by format.
enum RowParser {
    Text(CopyParser),
    Binary(BinaryCopyParser),
}

impl RowParser {
    fn feed(&mut self, data: &[u8]) {
        match self {
            RowParser::Text(p) => p.feed(data),
            RowParser::Binary(p) => p.feed(data),
        }
    }

    fn finish(&mut self) {
        match self {
            RowParser::Text(p) => p.finish(),
            RowParser::Binary(p) => p.finish(),
        }
    }

    fn rows(&mut self) -> &mut Vec<Vec<Option<String>>> {
        match self {
            RowParser::Text(p) => &mut p.rows,
            RowParser::Binary(p) => &mut p.rows,
        }
    }

    fn take_error(&mut self) -> Option<ProxyError> {
        match self {
            RowParser::Text(p) => p.error.take(),
            RowParser::Binary(p) => p.error.take(),
        }
    }
}

fn column_list(columns: &[String]) -> String {
    if columns.is_empty() {
        "*".to_owned()
    } else {
        columns
            .iter()
            .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Appends one row in COPY output format, with its newline.
fn format_row(plan: &CopyPlan, fields: &[Option<&[u8]>], out: &mut Vec<u8>) {
    let mut delimiter = [0u8; 4];
    let delimiter = plan.delimiter.encode_utf8(&mut delimiter).as_bytes();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(delimiter);
        }
        match (field, plan.format) {
            (None, _) => out.extend_from_slice(plan.null.as_bytes()),
            (Some(value), CopyFormat::Text) => escape_text(value, delimiter, out),
            (Some(value), CopyFormat::Csv) => quote_csv(value, plan, delimiter, out),
            (Some(value), CopyFormat::Binary) => out.extend_from_slice(value),
        }
    }
    out.push(b'\n');
}

fn escape_text(value: &[u8], delimiter: &[u8], out: &mut Vec<u8>) {
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ if delimiter.len() == 1 && b == delimiter[0] => {
                out.push(b'\\');
                out.push(b);
            }
            _ => out.push(b),
        }
    }
}

fn quote_csv(value: &[u8], plan: &CopyPlan, delimiter: &[u8], out: &mut Vec<u8>) {
    let quote = plan.quote as u8;
    let escape = plan.escape as u8;
    let needs_quotes = value.is_empty()
        || value == plan.null.as_bytes()
        || value
            .iter()
            .any(|&b| b == quote || b == b'\n' || b == b'\r')
        || value.windows(delimiter.len()).any(|w| w == delimiter);
    if !needs_quotes {
        out.extend_from_slice(value);
        return;
    }
    out.push(quote);
    for &b in value {
        if b == quote || b == escape {
            out.push(escape);
        }
        out.push(b);
    }
    out.push(quote);
}

/// Incremental parser of COPY input: CopyData messages may split rows anywhere.
struct CopyParser {
    format: CopyFormat,
    delimiter: char,
    null: String,
    quote: char,
    escape: char,
    skip_header: bool,
    buffer: Vec<u8>,
    /// Parsed rows not yet sent.
    rows: Vec<Vec<Option<String>>>,
    /// The end-of-data marker `\.` was seen; later data is ignored.
    ended: bool,
    error: Option<ProxyError>,
    line_number: u64,
}

impl CopyParser {
    fn new(plan: &CopyPlan) -> CopyParser {
        CopyParser {
            format: plan.format,
            delimiter: plan.delimiter,
            null: plan.null.clone(),
            quote: plan.quote,
            escape: plan.escape,
            skip_header: plan.header,
            buffer: Vec::new(),
            rows: Vec::new(),
            ended: false,
            error: None,
            line_number: 0,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        if self.ended || self.error.is_some() {
            return;
        }
        self.buffer.extend_from_slice(data);
        self.drain_records(false);
    }

    fn finish(&mut self) {
        if !self.ended && self.error.is_none() {
            self.drain_records(true);
        }
    }

    /// Parses every complete record in the buffer (and a final unterminated one when `last`).
    fn drain_records(&mut self, last: bool) {
        let mut start = 0;
        let mut in_quotes = false;
        let mut i = 0;
        let quote = self.quote as u8;
        while i < self.buffer.len() {
            let b = self.buffer[i];
            if self.format == CopyFormat::Csv && b == quote {
                in_quotes = !in_quotes;
            } else if self.format == CopyFormat::Text && b == b'\\' {
                i += 1;
            } else if b == b'\n' && !in_quotes {
                let record = self.buffer[start..i].to_vec();
                start = i + 1;
                if !self.record(&record) {
                    break;
                }
            }
            i += 1;
        }
        if last && start < self.buffer.len() && !self.ended && self.error.is_none() {
            let record = self.buffer[start..].to_vec();
            start = self.buffer.len();
            self.record(&record);
        }
        self.buffer.drain(..start.min(self.buffer.len()));
    }

    /// Handles one record; returns false once parsing should stop.
    fn record(&mut self, raw: &[u8]) -> bool {
        self.line_number += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw == b"\\." {
            self.ended = true;
            return false;
        }
        if self.skip_header {
            self.skip_header = false;
            return true;
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            self.error = Some(sql_error(
                "22021",
                format!(
                    "invalid byte sequence for encoding \"UTF8\" in COPY line {}",
                    self.line_number
                ),
            ));
            return false;
        };
        let parsed = match self.format {
            // Binary input has its own parser; the text parser never sees it.
            CopyFormat::Text | CopyFormat::Binary => {
                parse_text_record(text, self.delimiter, &self.null)
            }
            CopyFormat::Csv => {
                parse_csv_record(text, self.delimiter, self.quote, self.escape, &self.null)
            }
        };
        match parsed {
            Ok(row) => {
                self.rows.push(row);
                true
            }
            Err(message) => {
                self.error = Some(sql_error(
                    "22P04",
                    format!("{message} (COPY line {})", self.line_number),
                ));
                false
            }
        }
    }
}

fn parse_text_record(
    line: &str,
    delimiter: char,
    null: &str,
) -> Result<Vec<Option<String>>, String> {
    let mut fields = Vec::new();
    let mut raw_field = String::new();
    let mut value = String::new();
    let mut chars = line.chars().peekable();
    let push = |raw: &mut String, value: &mut String, fields: &mut Vec<Option<String>>| {
        if raw == null {
            fields.push(None);
        } else {
            fields.push(Some(std::mem::take(value)));
        }
        raw.clear();
        value.clear();
    };
    while let Some(c) = chars.next() {
        if c == delimiter {
            push(&mut raw_field, &mut value, &mut fields);
            continue;
        }
        raw_field.push(c);
        if c != '\\' {
            value.push(c);
            continue;
        }
        let Some(escaped) = chars.next() else {
            return Err("end-of-copy marker corrupt".to_owned());
        };
        raw_field.push(escaped);
        match escaped {
            'n' => value.push('\n'),
            'r' => value.push('\r'),
            't' => value.push('\t'),
            'b' => value.push('\u{8}'),
            'f' => value.push('\u{c}'),
            'v' => value.push('\u{b}'),
            'x' => {
                let mut code = 0u32;
                let mut digits = 0;
                while digits < 2 {
                    match chars.peek().and_then(|c| c.to_digit(16)) {
                        Some(d) => {
                            code = code * 16 + d;
                            digits += 1;
                            if let Some(c) = chars.next() {
                                raw_field.push(c);
                            }
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    value.push('x');
                } else {
                    value.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
            }
            '0'..='7' => {
                let mut code = escaped.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            code = code * 8 + d;
                            if let Some(c) = chars.next() {
                                raw_field.push(c);
                            }
                        }
                        None => break,
                    }
                }
                value.push(char::from_u32(code).unwrap_or('\u{fffd}'));
            }
            other => value.push(other),
        }
    }
    push(&mut raw_field, &mut value, &mut fields);
    Ok(fields)
}

fn parse_csv_record(
    line: &str,
    delimiter: char,
    quote: char,
    escape: char,
    null: &str,
) -> Result<Vec<Option<String>>, String> {
    let mut fields = Vec::new();
    let mut value = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            let next = chars.peek().copied();
            if c == escape && (next == Some(quote) || (escape != quote && next == Some(escape))) {
                // An escaped quote (a doubled one, by default) is part of the value.
                chars.next();
                value.extend(next);
            } else if c == quote {
                in_quotes = false;
            } else {
                value.push(c);
            }
        } else if c == quote {
            in_quotes = true;
            quoted = true;
        } else if c == delimiter {
            fields.push(csv_field(std::mem::take(&mut value), quoted, null));
            quoted = false;
        } else {
            value.push(c);
        }
    }
    if in_quotes {
        return Err("unterminated CSV quoted field".to_owned());
    }
    fields.push(csv_field(value, quoted, null));
    Ok(fields)
}

/// In CSV an unquoted field equal to the NULL string is NULL; a quoted one is that text.
fn csv_field(value: String, quoted: bool, null: &str) -> Option<String> {
    if !quoted && value == null {
        None
    } else {
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn text_records_unescape() {
        assert_eq!(
            parse_text_record("1\ta\\tb\t\\N\tx\\\\y\t\\101", '\t', "\\N"),
            Ok(vec![s("1"), s("a\tb"), None, s("x\\y"), s("A")])
        );
        assert_eq!(parse_text_record("", '\t', "\\N"), Ok(vec![s("")]));
    }

    #[test]
    fn csv_records_quote() {
        assert_eq!(
            parse_csv_record("1,\"a,b\",,\"\",\"say \"\"hi\"\"\"", ',', '"', '"', ""),
            Ok(vec![s("1"), s("a,b"), None, s(""), s("say \"hi\"")])
        );
        assert!(parse_csv_record("\"open", ',', '"', '"', "").is_err());
    }

    fn plan(format: CopyFormat) -> CopyPlan {
        CopyPlan {
            direction: CopyDirection::FromStdin,
            source: CopySourceKind::Table("t".to_owned()),
            columns: Vec::new(),
            format,
            delimiter: if format == CopyFormat::Csv { ',' } else { '\t' },
            null: if format == CopyFormat::Csv {
                String::new()
            } else {
                "\\N".to_owned()
            },
            header: false,
            quote: '"',
            escape: '"',
        }
    }

    #[test]
    fn parser_handles_split_messages_and_end_marker() {
        let mut parser = CopyParser::new(&plan(CopyFormat::Text));
        parser.feed(b"1\tone\n2\tt");
        parser.feed(b"wo\n\\.\n3\tignored\n");
        parser.finish();
        assert_eq!(
            parser.rows,
            vec![vec![s("1"), s("one")], vec![s("2"), s("two")]]
        );
    }

    #[test]
    fn csv_parser_keeps_newlines_in_quotes() {
        let mut parser = CopyParser::new(&plan(CopyFormat::Csv));
        parser.feed(b"1,\"line\nbreak\"\n2,x");
        parser.finish();
        assert_eq!(
            parser.rows,
            vec![vec![s("1"), s("line\nbreak")], vec![s("2"), s("x")]]
        );
    }

    #[test]
    fn output_round_trips_through_the_parser() {
        let text_plan = plan(CopyFormat::Text);
        let mut line = Vec::new();
        format_row(&text_plan, &[Some(b"a\tb\\c\nd"), None], &mut line);
        let parsed = parse_text_record(
            std::str::from_utf8(&line[..line.len() - 1]).unwrap_or(""),
            '\t',
            "\\N",
        );
        assert_eq!(parsed, Ok(vec![s("a\tb\\c\nd"), None]));

        let csv_plan = plan(CopyFormat::Csv);
        let mut line = Vec::new();
        format_row(&csv_plan, &[Some(b"x,\"y\""), Some(b""), None], &mut line);
        assert_eq!(line, b"\"x,\"\"y\"\"\",\"\",\n");
    }
}
