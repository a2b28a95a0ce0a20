//! One client session: the simple and extended query protocols over a node session, with the
//! transaction state Postgres clients expect (`I`/`T`/`E`, 25P02 after an error in a block).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use mycelium_protocol::{Column, Execute, Format, StatementDescription};
use mycelium_router::{
    Plan, SessionCommand, SetValue, SettingsPlan, TxnControl, create_table_as, split_statements,
    statement_kind,
};
use pgwire::messages::PgWireFrontendMessage;
use pgwire::messages::extendedquery::{Bind, Close, Describe, Parse};
use tokio_util::sync::CancellationToken;

use crate::Proxy;
use crate::backend::{self, Report, TxnStatus};
use crate::cancel::SessionCancel;
use crate::conn::ClientConn;
use crate::error::{ProxyError, sql_error};
use crate::execute::{Finished, NodeConn, Output, PolicyChange, Suspended, Target};
use crate::metrics;
use crate::params::SessionParams;
use crate::startup::{self, AuthFailure, StartupRequest};

/// A statement prepared with Parse.
pub(crate) struct Prepared {
    sql: Arc<str>,
    plan: Arc<Plan>,
    /// Parameter types as the client gave them (0 = infer).
    param_types: Vec<u32>,
    /// Shared with every Describe of the statement (each Bind/Describe/Execute of a
    /// prepared statement would otherwise copy it).
    description: Option<Arc<StatementDescription>>,
    /// The parameter types every Bind sends: the description's once there is one, else the
    /// client's; shared by the portals.
    bound_types: Arc<[u32]>,
}

/// A bound statement, ready to execute, possibly suspended part-way by a row limit.
pub(crate) struct Portal {
    statement: String,
    plan: Arc<Plan>,
    request: Execute,
    pub(crate) suspended: Option<Suspended>,
    /// Ran to completion: executing it again returns no rows.
    done: bool,
}

pub(crate) struct Session {
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) conn: ClientConn,
    pub(crate) status: TxnStatus,
    /// Sessions on the nodes this client used, by node index.
    pub(crate) nodes: Vec<Option<NodeConn>>,
    /// The BEGIN text of the open transaction, sent to each node on its first use.
    pub(crate) begin_sql: Option<String>,
    /// The open transaction, as the coordinator knows it.
    pub(crate) tx: Option<mycelium_txn::TxId>,
    /// The open transaction's priority in the nodes' wait-die (`lock_order`).
    pub(crate) lock_priority: u64,
    /// Policy removals of the open transaction, taken up when it commits.
    pub(crate) pending_policies: Vec<PolicyChange>,
    /// Policies the open transaction set, with what they replaced, for a rollback.
    pub(crate) policy_undo: Vec<(String, Option<mycelium_router::TablePolicy>)>,
    /// The open transaction ran DDL: what the proxy learned of tables' columns inside it (from
    /// the schema as the transaction saw it, or as others saw it before) is forgotten at its end.
    pub(crate) ran_ddl: bool,
    /// The running statement opened the transaction it runs in (an autocommit statement
    /// over several nodes), and ends it.
    pub(crate) statement_transaction: bool,
    pub(crate) params: SessionParams,
    pub(crate) cancel: Arc<SessionCancel>,
    /// `statement_timeout` and `idle_in_transaction_session_timeout`, parsed.
    statement_timeout: Option<std::time::Duration>,
    idle_in_transaction_timeout: Option<std::time::Duration>,
    /// Who is connected (for the audit log, and what `current_user` answers on the nodes).
    pub(crate) user: String,
    peer: std::net::SocketAddr,
    statements: HashMap<String, Prepared>,
    pub(crate) portals: HashMap<String, Portal>,
    /// After an error in the extended protocol, messages are skipped until Sync.
    skipping_until_sync: bool,
    /// What the client was told the executing prepared statement returns (Describe); a node
    /// answering with other columns (the table changed since) fails the statement.
    pub(crate) described: Option<Arc<StatementDescription>>,
    /// The open transaction is the extended protocol's implicit one: it began at an Execute
    /// outside a transaction block and ends at the next Sync (see [`Session::open_implicit_block`]).
    pub(crate) implicit_block: bool,
    /// Role and owner changes this session made (see `users`).
    pub(crate) access: crate::users::SessionAccess,
    /// Where this session's writes landed, so its reads see them (`replicas`).
    pub(crate) own_writes: crate::replicas::OwnWrites,
    /// The process id the client was given, which also names the session's advisory locks.
    pub(crate) pid: i32,
    /// The values this session drew from sequences (`currval`, `lastval`).
    pub(crate) drawn: crate::named_sequences::Drawn,
}

impl Drop for Session {
    fn drop(&mut self) {
        // A client that leaves inside a transaction: the coordinator forgets it; dropping the
        // node sessions rolls it back on the nodes.
        if let Some(tx) = self.tx.take() {
            self.proxy.coordinator.abandon(&tx);
        }
        self.proxy.advisory.session_ended(self.pid);
    }
}

pub async fn run(
    request: StartupRequest,
    peer: std::net::SocketAddr,
    pid: i32,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
) {
    let user = request.user().to_owned();
    tracing::Span::current().record("user", user.as_str());
    let mut conn = ClientConn::new(
        request.stream,
        bytes::BytesMut::new(),
        proxy.config.max_message_size,
    );
    if let Some((minor, unsupported)) = &request.unsupported_minor {
        backend::negotiate_protocol_version(&mut conn.out, *minor, unsupported);
    }
    let users = proxy.users();
    match startup::authenticate(&mut conn, &users, &user).await {
        Ok(()) => {
            tracing::info!(tls = request.is_tls, "authenticated");
            proxy.audit.authenticated(&user, peer, request.is_tls);
            proxy.auth_backoff.succeeded(peer.ip());
        }
        Err(AuthFailure::Rejected) => {
            tracing::warn!("password authentication failed");
            proxy.audit.authentication_failed(&user, peer);
            metrics::CONNECTIONS_REFUSED
                .with_label_values(&["authentication"])
                .inc();
            // Repeated failures from one address wait longer and longer for their answer.
            tokio::time::sleep(proxy.auth_backoff.failed(peer.ip())).await;
            fatal(
                &mut conn,
                "28P01",
                &format!("password authentication failed for user \"{user}\""),
            )
            .await;
            return;
        }
        Err(AuthFailure::Error(e)) => {
            tracing::info!(error = %e, "authentication aborted");
            fatal(&mut conn, "08P01", &e.to_string()).await;
            return;
        }
    }
    let _slot = match proxy.limits.open_session(&user) {
        Ok(slot) => slot,
        Err(e) => {
            metrics::CONNECTIONS_REFUSED
                .with_label_values(&["max_connections_per_user"])
                .inc();
            let client = e.to_client();
            fatal(&mut conn, &client.code, &client.message).await;
            return;
        }
    };
    let params = match SessionParams::new(&user, &request.params) {
        Ok(params) => params,
        Err(e) => {
            fatal(&mut conn, &e.to_client().code, &e.to_client().message).await;
            return;
        }
    };
    for (name, value) in params.reported() {
        backend::parameter_status(&mut conn.out, name, value);
    }
    let secret: i32 = rand::random();
    backend::backend_key_data(&mut conn.out, pid, secret);
    backend::ready_for_query(&mut conn.out, TxnStatus::Idle);
    let cancel = proxy.cancels.register(pid, secret);
    let mut session = Session {
        proxy: proxy.clone(),
        conn,
        status: TxnStatus::Idle,
        nodes: Vec::new(),
        begin_sql: None,
        tx: None,
        lock_priority: 0,
        pending_policies: Vec::new(),
        policy_undo: Vec::new(),
        ran_ddl: false,
        statement_transaction: false,
        statement_timeout: None,
        idle_in_transaction_timeout: None,
        user: user.clone(),
        peer,
        params,
        cancel,
        statements: HashMap::new(),
        portals: HashMap::new(),
        skipping_until_sync: false,
        implicit_block: false,
        described: None,
        access: Default::default(),
        own_writes: Default::default(),
        pid,
        drawn: Default::default(),
    };
    session.refresh_timeouts();
    metrics::CONNECTIONS.inc();
    metrics::CONNECTIONS_TOTAL.inc();
    session.serve(&shutdown).await;
    // A client gone mid-transaction: the nodes roll back when its sessions close; policies
    // the transaction set go back too.
    let undo = std::mem::take(&mut session.policy_undo);
    session.undo_policies(undo);
    metrics::CONNECTIONS.dec();
    proxy.cancels.unregister(pid);
    session.conn.shutdown().await;
}

async fn fatal(conn: &mut ClientConn, code: &str, message: &str) {
    backend::fatal_response(&mut conn.out, code, message);
    conn.shutdown().await;
}

impl Session {
    async fn serve(&mut self, shutdown: &CancellationToken) {
        loop {
            // Inside the extended protocol's implicit transaction the client has not been told
            // of a transaction (no ReadyForQuery yet), so it is not idle in one.
            let idle_limit = if self.status == TxnStatus::Idle || self.implicit_block {
                None
            } else {
                self.idle_in_transaction_timeout
            };
            let idle_expired = async {
                match idle_limit {
                    Some(limit) => tokio::time::sleep(limit).await,
                    None => std::future::pending().await,
                }
            };
            let message = tokio::select! {
                message = self.conn.read_message() => message,
                () = idle_expired => {
                    self.report(&sql_error("25P03", "terminating connection due to idle-in-transaction timeout"), "FATAL");
                    return;
                }
                () = shutdown.cancelled() => {
                    self.report(&sql_error("57P01", "terminating connection due to administrator command"), "FATAL");
                    return;
                }
            };
            let message = match message {
                Ok(Some(message)) => message,
                Ok(None) => return,
                Err(e) => {
                    tracing::info!(error = %e, "closing connection");
                    if !matches!(e, ProxyError::Io(_)) {
                        self.report(&e, "FATAL");
                    }
                    return;
                }
            };
            // Boxed: the state of a running statement is several KiB, and an idle session,
            // which only waits for its next message above, would otherwise carry that much
            // room all the time.
            if let Err(e) = Box::pin(self.dispatch(message)).await {
                if e.is_fatal() {
                    tracing::info!(error = %e, "closing connection");
                    if !matches!(e, ProxyError::Io(_)) {
                        self.report(&e, "FATAL");
                    }
                    return;
                }
                self.fail(&e);
            }
            self.refresh_access().await;
        }
    }

    async fn dispatch(&mut self, message: PgWireFrontendMessage) -> Result<(), ProxyError> {
        if self.skipping_until_sync && message.is_extended_query() {
            if matches!(message, PgWireFrontendMessage::Sync(_)) {
                self.skipping_until_sync = false;
                self.sync().await;
            }
            return Ok(());
        }
        match message {
            PgWireFrontendMessage::Query(query) => {
                // A Query before the Sync that ends an implicit transaction ends it first.
                self.end_implicit_block().await;
                self.simple_query(&query.query).await;
                self.portals.clear();
                backend::ready_for_query(&mut self.conn.out, self.status);
                Ok(())
            }
            PgWireFrontendMessage::Parse(parse) => self.parse(parse),
            PgWireFrontendMessage::Bind(bind) => self.bind(bind),
            PgWireFrontendMessage::Describe(describe) => self.describe(describe).await,
            PgWireFrontendMessage::Execute(execute) => {
                let portal = execute.name.unwrap_or_default();
                let max_rows = usize::try_from(execute.max_rows).unwrap_or(0);
                self.execute(&portal, max_rows).await
            }
            PgWireFrontendMessage::Close(close) => {
                self.close(close);
                Ok(())
            }
            PgWireFrontendMessage::Sync(_) => {
                self.sync().await;
                Ok(())
            }
            PgWireFrontendMessage::Flush(_) => self.conn.flush().await,
            PgWireFrontendMessage::Terminate(_) => Err(ProxyError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "client terminated the session",
            ))),
            // Stray COPY messages outside a COPY are ignored, as Postgres does.
            PgWireFrontendMessage::CopyData(_)
            | PgWireFrontendMessage::CopyDone(_)
            | PgWireFrontendMessage::CopyFail(_) => Ok(()),
            other => Err(ProxyError::Protocol(format!(
                "unexpected message during a session: {}",
                message_name(&other)
            ))),
        }
    }

    /// Reports a statement error: the transaction block (if any) fails, and the extended
    /// protocol skips to the next Sync.
    fn fail(&mut self, error: &ProxyError) {
        self.report(error, "ERROR");
        if self.status == TxnStatus::InTransaction {
            self.status = TxnStatus::Failed;
        }
        self.skipping_until_sync = true;
    }

    fn report(&mut self, error: &ProxyError, severity: &str) {
        let client = error.to_client();
        metrics::ERRORS
            .with_label_values(&[client.code.as_str()])
            .inc();
        tracing::debug!(code = %client.code, message = %client.message, "statement failed");
        backend::error_response(
            &mut self.conn.out,
            &Report {
                severity,
                code: &client.code,
                message: &client.message,
                detail: client.detail.as_deref(),
                hint: client.hint.as_deref(),
            },
        );
    }

    pub(crate) fn notice(&mut self, code: &str, message: &str) {
        backend::notice_response(
            &mut self.conn.out,
            &Report {
                severity: "WARNING",
                code,
                message,
                detail: None,
                hint: None,
            },
        );
    }

    // ---- simple query protocol ----

    async fn simple_query(&mut self, text: &str) {
        let statements = split_statements(text);
        if statements.is_empty() {
            backend::empty_query_response(&mut self.conn.out);
            return;
        }
        // Several statements in one message run as one implicit transaction, as in Postgres,
        // unless they manage transactions themselves.
        let implicit = statements.len() > 1
            && self.status == TxnStatus::Idle
            && !statements
                .iter()
                .any(|sql| matches!(self.proxy.plans.plan(sql).0.as_deref(), Ok(Plan::Txn(_))));
        if implicit && let Err(e) = self.begin_transaction("BEGIN") {
            self.fail(&e);
            return;
        }
        let mut failed = false;
        for sql in statements {
            let timer = StatementTimer::start(sql);
            let result = self.simple_statement(sql).await;
            timer.finish();
            self.audit(sql, &result);
            if let Err(e) = result {
                self.fail(&e);
                self.skipping_until_sync = false;
                failed = true;
                break;
            }
        }
        if implicit {
            let end = if failed { "ROLLBACK" } else { "COMMIT" };
            if let Err(e) = self.finish_transaction(end).await
                && !failed
            {
                self.fail(&e);
                self.skipping_until_sync = false;
                self.status = TxnStatus::Idle;
            }
        }
    }

    async fn simple_statement(&mut self, sql: &str) -> Result<(), ProxyError> {
        self.proxy.limits.statement(&self.user)?;
        let plan = self.plan(sql)?;
        self.check_failed_transaction(&plan)?;
        let follow_up = self.authorize(sql, &plan).await?;
        match &*plan {
            Plan::Empty => backend::empty_query_response(&mut self.conn.out),
            Plan::Txn(op) => self.transaction_control(*op, sql).await?,
            Plan::Session(command) => self.session_command(command, Output::Simple).await?,
            Plan::Copy(copy) => self.copy(copy).await?,
            Plan::Role(command) => self.role_command(command).await?,
            Plan::Forward { ddl: true } if let Some(ctas) = create_table_as(sql)? => {
                self.create_table_as(&ctas).await?;
            }
            Plan::Forward { ddl } => {
                let request = Execute::simple(sql);
                self.run_forward(request, Output::Simple, *ddl).await?;
            }
            Plan::Settings(SettingsPlan::Answer(columns)) => {
                self.answer_settings(columns, &Execute::simple(sql), Output::Simple)?;
            }
            Plan::Advisory(columns) => {
                self.answer_advisory(columns, &Execute::simple(sql), Output::Simple)
                    .await?;
            }
            Plan::Sequence(command) => {
                let request = Execute::simple(sql);
                if !self
                    .sequence_command(command, &request, Output::Simple)
                    .await?
                {
                    self.run_forward(request, Output::Simple, false).await?;
                }
            }
            Plan::Settings(SettingsPlan::Substitute(substitution)) => {
                let request = Execute::simple(self.substitute_settings(substitution, sql)?);
                self.run_forward(request, Output::Simple, false).await?;
            }
        }
        self.after_ddl(follow_up).await
    }

    fn plan(&self, sql: &str) -> Result<Arc<Plan>, ProxyError> {
        let (plan, hit) = self.proxy.plans.plan(sql);
        metrics::PLAN_CACHE
            .with_label_values(&[if hit { "hit" } else { "miss" }])
            .inc();
        Ok(plan?)
    }

    /// In a failed transaction block only ROLLBACK (to a savepoint or entirely) and COMMIT
    /// (which rolls back) are accepted, as in Postgres.
    fn check_failed_transaction(&self, plan: &Plan) -> Result<(), ProxyError> {
        if self.status != TxnStatus::Failed {
            return Ok(());
        }
        match plan {
            Plan::Txn(TxnControl::Commit | TxnControl::Rollback | TxnControl::RollbackTo) => Ok(()),
            _ => Err(sql_error(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            )),
        }
    }

    // ---- session commands ----

    async fn session_command(
        &mut self,
        command: &SessionCommand,
        output: Output,
    ) -> Result<(), ProxyError> {
        match command {
            SessionCommand::Set { name, value, local } => {
                if *local && self.status == TxnStatus::Idle {
                    self.notice("25P01", "SET LOCAL can only be used in transaction blocks");
                }
                self.set_parameter(name, value, *local)?;
                self.end_statement_parameters();
                backend::command_complete(&mut self.conn.out, "SET");
            }
            SessionCommand::SetTransaction {
                session_default,
                isolation,
                read_only,
            } => {
                self.set_transaction(*session_default, isolation.as_deref(), *read_only)?;
                backend::command_complete(&mut self.conn.out, "SET");
            }
            SessionCommand::Reset { name } => {
                let reported = self.params.reset(name.as_deref())?;
                self.refresh_timeouts();
                for (name, value) in reported {
                    backend::parameter_status(&mut self.conn.out, &name, &value);
                }
                backend::command_complete(&mut self.conn.out, "RESET");
            }
            SessionCommand::Show { name } if name.starts_with("mycelium_") => {
                let admin = match name.as_str() {
                    "mycelium_transactions" => self.proxy.transaction_rows().await,
                    "mycelium_nodes" => self.proxy.node_rows().await?,
                    "mycelium_conflicts" => self.proxy.conflict_rows().await?,
                    "mycelium_replication" => self.proxy.replication_rows().await?,
                    _ => self.proxy.admin_rows(name)?,
                };
                if matches!(output, Output::Simple) {
                    backend::row_description(&mut self.conn.out, &admin.columns, |_| Format::Text);
                }
                for row in &admin.rows {
                    let values: Vec<Option<&str>> = row.iter().map(Option::as_deref).collect();
                    backend::text_data_row(&mut self.conn.out, &values);
                }
                backend::command_complete(
                    &mut self.conn.out,
                    &format!("SHOW {}", admin.rows.len()),
                );
            }
            SessionCommand::Show { name } => {
                let rows: Vec<(String, String)> = if name == "all" {
                    self.params
                        .all()
                        .map(|(n, v)| (n.to_owned(), v.to_owned()))
                        .collect()
                } else {
                    vec![(name.clone(), self.show_value(name)?)]
                };
                if matches!(output, Output::Simple) {
                    let columns = show_columns(command);
                    backend::row_description(&mut self.conn.out, &columns, |_| Format::Text);
                }
                for (param, value) in &rows {
                    if name == "all" {
                        backend::text_data_row(
                            &mut self.conn.out,
                            &[Some(param), Some(value), Some("")],
                        );
                    } else {
                        backend::text_data_row(&mut self.conn.out, &[Some(value)]);
                    }
                }
                backend::command_complete(&mut self.conn.out, "SHOW");
            }
            SessionCommand::DiscardAll => {
                if self.status != TxnStatus::Idle {
                    return Err(sql_error(
                        "25001",
                        "DISCARD ALL cannot run inside a transaction block",
                    ));
                }
                let reported = self.params.reset(None)?;
                self.refresh_timeouts();
                for (name, value) in reported {
                    backend::parameter_status(&mut self.conn.out, &name, &value);
                }
                self.statements.clear();
                self.portals.clear();
                backend::command_complete(&mut self.conn.out, "DISCARD ALL");
            }
            SessionCommand::Promote { node, table, shard } => {
                if self.status != TxnStatus::Idle {
                    return Err(sql_error(
                        "25001",
                        "PROMOTE MYCELIUM NODE cannot run inside a transaction block",
                    ));
                }
                let done = self.proxy.promote(&self.user, node, table, *shard).await?;
                self.notice("00000", &done);
                backend::command_complete(&mut self.conn.out, "PROMOTE");
            }
            SessionCommand::Deallocate { name: None } => {
                self.statements.clear();
                backend::command_complete(&mut self.conn.out, "DEALLOCATE ALL");
            }
            SessionCommand::Deallocate { name: Some(name) } => {
                if self.statements.remove(name).is_none() {
                    return Err(sql_error(
                        "26000",
                        format!("prepared statement \"{name}\" does not exist"),
                    ));
                }
                backend::command_complete(&mut self.conn.out, "DEALLOCATE");
            }
        }
        Ok(())
    }

    // ---- extended query protocol ----

    fn parse(&mut self, parse: Parse) -> Result<(), ProxyError> {
        let name = parse.name.unwrap_or_default();
        if !name.is_empty() && self.statements.contains_key(&name) {
            return Err(sql_error(
                "42P05",
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        if split_statements(&parse.query).len() > 1 {
            return Err(sql_error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let plan = self.plan(&parse.query)?;
        self.statements.insert(
            name,
            Prepared {
                sql: Arc::from(parse.query.trim()),
                plan,
                bound_types: Arc::from(parse.type_oids.as_slice()),
                param_types: parse.type_oids,
                description: None,
            },
        );
        backend::parse_complete(&mut self.conn.out);
        Ok(())
    }

    fn bind(&mut self, bind: Bind) -> Result<(), ProxyError> {
        let statement_name = bind.statement_name.unwrap_or_default();
        let portal_name = bind.portal_name.unwrap_or_default();
        let statement = self
            .statements
            .get(&statement_name)
            .ok_or_else(|| missing_statement(&statement_name))?;
        if !portal_name.is_empty() && self.portals.contains_key(&portal_name) {
            return Err(sql_error(
                "42P03",
                format!("portal \"{portal_name}\" already exists"),
            ));
        }
        let count = bind.parameters.len();
        let expected = match &statement.description {
            Some(d) => Some(d.params.len()),
            None if !statement.param_types.is_empty() => Some(statement.param_types.len()),
            None => None,
        };
        if let Some(expected) = expected
            && expected != count
        {
            return Err(ProxyError::Protocol(format!(
                "bind message supplies {count} parameters, but prepared statement \"{statement_name}\" requires {expected}"
            )));
        }
        let param_formats = expand_formats(&bind.parameter_format_codes, count, "parameter")?;
        let result_formats: Vec<Format> = bind
            .result_column_format_codes
            .iter()
            .map(|&code| Format::from_code(code).ok_or_else(|| bad_format(code)))
            .collect::<Result<_, _>>()?;
        let portal = Portal {
            statement: statement_name,
            plan: statement.plan.clone(),
            request: Execute {
                sql: statement.sql.clone(),
                param_types: statement.bound_types.clone(),
                params: bind.parameters,
                param_formats,
                result_formats: Arc::from(result_formats),
            },
            suspended: None,
            done: false,
        };
        self.portals.insert(portal_name, portal);
        backend::bind_complete(&mut self.conn.out);
        Ok(())
    }

    async fn describe(&mut self, describe: Describe) -> Result<(), ProxyError> {
        let name = describe.name.unwrap_or_default();
        if describe.target_type == b'S' {
            let description = self.statement_description(&name).await?;
            backend::parameter_description(&mut self.conn.out, &description.params);
            if description.columns.is_empty() {
                backend::no_data(&mut self.conn.out);
            } else {
                backend::row_description(&mut self.conn.out, &description.columns, |_| {
                    Format::Text
                });
            }
            return Ok(());
        }
        let statement = match self.portals.get(&name) {
            Some(portal) => portal.statement.clone(),
            None => {
                return Err(sql_error(
                    "34000",
                    format!("portal \"{name}\" does not exist"),
                ));
            }
        };
        let description = self.statement_description(&statement).await?;
        let Some(portal) = self.portals.get(&name) else {
            return Err(sql_error(
                "34000",
                format!("portal \"{name}\" does not exist"),
            ));
        };
        if description.columns.is_empty() {
            backend::no_data(&mut self.conn.out);
        } else {
            backend::row_description(&mut self.conn.out, &description.columns, |i| {
                portal.request.result_format(i)
            });
        }
        Ok(())
    }

    /// The description of a prepared statement, asked of the node once per text.
    async fn statement_description(
        &mut self,
        name: &str,
    ) -> Result<Arc<StatementDescription>, ProxyError> {
        let statement = self
            .statements
            .get(name)
            .ok_or_else(|| missing_statement(name))?;
        if let Some(description) = &statement.description {
            return Ok(description.clone());
        }
        let (sql, plan, param_types) = (
            statement.sql.clone(),
            statement.plan.clone(),
            statement.param_types.clone(),
        );
        let description = match &*plan {
            // Returns no rows; the proxy runs it (nodes would refuse to describe it).
            Plan::Forward { ddl: true } if create_table_as(&sql)?.is_some() => {
                StatementDescription {
                    params: param_types,
                    columns: Vec::new(),
                }
            }
            Plan::Forward { .. } => match self.proxy.descriptions.get(&sql, &param_types) {
                Some(description) => description,
                None => {
                    let node = self.describe_node(&sql, &param_types);
                    let text = crate::named_sequences::described_text(&self.proxy.cluster, &sql);
                    let description = self.node(node).await?.describe(&text, &param_types).await?;
                    self.proxy
                        .descriptions
                        .insert(sql, param_types, description.clone());
                    description
                }
            },
            Plan::Session(command @ SessionCommand::Show { .. }) => StatementDescription {
                params: param_types,
                columns: show_columns(command),
            },
            Plan::Settings(SettingsPlan::Answer(columns)) => StatementDescription {
                params: crate::settings::answer_param_types(columns, &param_types),
                columns: crate::settings::answer_columns(columns),
            },
            Plan::Advisory(columns) => StatementDescription {
                params: crate::advisory::answer_param_types(columns, &param_types),
                columns: crate::advisory::answer_columns(columns),
            },
            Plan::Sequence(mycelium_router::SequenceCommand::Calls(columns)) => {
                StatementDescription {
                    params: crate::named_sequences::answer_param_types(columns, &param_types),
                    columns: crate::named_sequences::answer_columns(columns),
                }
            }
            Plan::Sequence(_) => StatementDescription {
                params: param_types,
                columns: Vec::new(),
            },
            // Described with NULLs for the values: the result's types do not depend on them.
            Plan::Settings(SettingsPlan::Substitute(substitution)) => {
                match self.proxy.descriptions.get(&sql, &param_types) {
                    Some(description) => description,
                    None => {
                        let text: Arc<str> = Arc::from(substitution.placeholder(&sql));
                        let node = self.describe_node(&text, &param_types);
                        let description =
                            self.node(node).await?.describe(&text, &param_types).await?;
                        self.proxy
                            .descriptions
                            .insert(sql, param_types, description.clone());
                        description
                    }
                }
            }
            _ => StatementDescription {
                params: param_types,
                columns: Vec::new(),
            },
        };
        let description = Arc::new(description);
        if let Some(statement) = self.statements.get_mut(name) {
            statement.bound_types = Arc::from(description.params.as_slice());
            statement.description = Some(description.clone());
        }
        Ok(description)
    }

    async fn execute(&mut self, name: &str, max_rows: usize) -> Result<(), ProxyError> {
        let sql = self.portals.get(name).map(|p| p.request.sql.clone());
        let timer = StatementTimer::start(sql.as_deref().unwrap_or(""));
        let result = self.execute_portal(name, max_rows).await;
        timer.finish();
        if let Some(sql) = sql {
            self.audit(&sql, &result);
        }
        result
    }

    /// DDL and role changes that succeeded, and statements refused as unsupported or not
    /// permitted, go to the audit log.
    fn audit(&self, sql: &str, result: &Result<(), ProxyError>) {
        match result {
            Ok(()) => {
                let kind = statement_kind(sql);
                if (kind == "ddl" || kind == "other") && mycelium_router::is_role_statement(sql) {
                    self.proxy.audit.access(&self.user, self.peer, sql);
                } else if kind == "ddl" {
                    self.proxy.audit.ddl(&self.user, self.peer, sql);
                }
            }
            Err(e) => {
                let client = e.to_client();
                if client.code == "0A000" || client.code == "42501" {
                    self.proxy.audit.refused(
                        &self.user,
                        self.peer,
                        &client.code,
                        &client.message,
                        sql,
                    );
                }
            }
        }
    }

    async fn execute_portal(&mut self, name: &str, max_rows: usize) -> Result<(), ProxyError> {
        self.proxy.limits.statement(&self.user)?;
        let Some(portal) = self.portals.get_mut(name) else {
            return Err(sql_error(
                "34000",
                format!("portal \"{name}\" does not exist"),
            ));
        };
        let output = Output::Extended { max_rows };
        if portal.done {
            backend::command_complete(&mut self.conn.out, "SELECT 0");
            return Ok(());
        }
        if let Some(suspended) = portal.suspended.take() {
            let request = portal.request.clone();
            let finished = self.resume(suspended, &request, output).await?;
            return self.keep_suspended(name, finished);
        }
        // The bound values go to the node; the portal keeps what a later Describe of it (the
        // result formats) or a resumed row limit needs. Executing it again after it completed
        // sends nothing to a node (`done` above).
        let request = Execute {
            sql: portal.request.sql.clone(),
            param_types: portal.request.param_types.clone(),
            params: std::mem::take(&mut portal.request.params),
            param_formats: std::mem::take(&mut portal.request.param_formats),
            result_formats: portal.request.result_formats.clone(),
        };
        let plan = portal.plan.clone();
        let described = self
            .statements
            .get(&portal.statement)
            .and_then(|s| s.description.clone());
        self.check_failed_transaction(&plan)?;
        let follow_up = self.authorize(&request.sql, &plan).await?;
        match &*plan {
            Plan::Empty => backend::empty_query_response(&mut self.conn.out),
            Plan::Txn(op) => {
                let sql = request.sql.clone();
                self.transaction_control(*op, &sql).await?;
            }
            Plan::Session(command) => self.session_command(command, output).await?,
            Plan::Copy(copy) => self.copy(copy).await?,
            Plan::Role(command) => self.role_command(command).await?,
            Plan::Forward { ddl: true } if let Some(ctas) = create_table_as(&request.sql)? => {
                self.open_implicit_block()?;
                self.create_table_as(&ctas).await?;
            }
            Plan::Forward { ddl } => {
                self.open_implicit_block()?;
                self.described = described;
                let finished = self.run_forward(request, output, *ddl).await;
                self.described = None;
                let finished = finished?;
                self.after_ddl(follow_up).await?;
                return self.keep_suspended(name, finished);
            }
            Plan::Settings(SettingsPlan::Answer(columns)) => {
                self.answer_settings(columns, &request, output)?;
            }
            Plan::Advisory(columns) => {
                self.answer_advisory(columns, &request, output).await?;
            }
            Plan::Sequence(command) => {
                if !self.sequence_command(command, &request, output).await? {
                    self.open_implicit_block()?;
                    self.described = described;
                    let finished = self.run_forward(request, output, false).await;
                    self.described = None;
                    return self.keep_suspended(name, finished?);
                }
            }
            Plan::Settings(SettingsPlan::Substitute(substitution)) => {
                let request = Execute {
                    sql: Arc::from(self.substitute_settings(substitution, &request.sql)?),
                    ..request
                };
                self.open_implicit_block()?;
                self.described = described;
                let finished = self.run_forward(request, output, false).await;
                self.described = None;
                return self.keep_suspended(name, finished?);
            }
        }
        self.after_ddl(follow_up).await
    }

    fn keep_suspended(&mut self, name: &str, finished: Finished) -> Result<(), ProxyError> {
        if let Some(portal) = self.portals.get_mut(name) {
            match finished {
                Finished::Suspended(suspended) => portal.suspended = Some(suspended),
                Finished::Complete => portal.done = true,
            }
        }
        Ok(())
    }

    fn close(&mut self, close: Close) {
        let name = close.name.unwrap_or_default();
        if close.target_type == b'S' {
            self.statements.remove(&name);
        } else {
            self.portals.remove(&name);
        }
        backend::close_complete(&mut self.conn.out);
    }

    /// Statements executed between two Syncs outside a transaction block form one implicit
    /// transaction, as in Postgres: a pipeline of inserts whose second fails keeps none of
    /// them. The usual Bind/Execute/Sync of one statement needs no block (its Sync is already
    /// in the input buffer), and runs as a single statement on its node, without the BEGIN and
    /// COMMIT.
    fn open_implicit_block(&mut self) -> Result<(), ProxyError> {
        if self.status == TxnStatus::Idle && !self.conn.sync_is_next() {
            self.begin_transaction("BEGIN")?;
            self.implicit_block = true;
        }
        Ok(())
    }

    /// Commits the implicit transaction (rolls it back after an error), reporting a failed
    /// commit to the client.
    async fn end_implicit_block(&mut self) {
        if !self.implicit_block {
            return;
        }
        let failed = self.status == TxnStatus::Failed;
        let end = if failed { "ROLLBACK" } else { "COMMIT" };
        if let Err(e) = self.finish_transaction(end).await
            && !failed
        {
            self.report(&e, "ERROR");
        }
    }

    async fn sync(&mut self) {
        self.end_implicit_block().await;
        if self.status == TxnStatus::Idle {
            // Portals live until the end of their transaction; outside a block that is now.
            self.portals.clear();
        }
        backend::ready_for_query(&mut self.conn.out, self.status);
    }
}

/// SHOW answers in text, whatever the parameter.
const TEXT_OID: u32 = 25;

/// Counts a statement by kind and records how long it took.
struct StatementTimer {
    kind: &'static str,
    started: Instant,
}

impl StatementTimer {
    fn start(sql: &str) -> StatementTimer {
        StatementTimer {
            kind: statement_kind(sql),
            started: Instant::now(),
        }
    }

    fn finish(self) {
        metrics::QUERIES.with_label_values(&[self.kind]).inc();
        metrics::QUERY_DURATION
            .with_label_values(&[self.kind])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Session {
    /// Starts the cancellation of a statement, with the session's `statement_timeout`.
    pub(crate) fn start_statement(&self) -> crate::cancel::Statement {
        self.cancel.start_statement(self.statement_timeout)
    }

    /// A time setting in force, `None` when unset or 0.
    fn timeout_setting(&self, name: &str) -> Option<std::time::Duration> {
        self.params
            .get(name)
            .ok()
            .and_then(crate::params::parse_duration)
            .filter(|d| !d.is_zero())
    }

    /// Re-reads the timeouts after the parameters changed (not on every statement).
    pub(crate) fn refresh_timeouts(&mut self) {
        self.statement_timeout = self.timeout_setting("statement_timeout");
        self.idle_in_transaction_timeout =
            self.timeout_setting("idle_in_transaction_session_timeout");
    }

    /// SET TRANSACTION (for the open transaction, before its first query) or SET SESSION
    /// CHARACTERISTICS AS TRANSACTION (the session's defaults), as Postgres takes them.
    fn set_transaction(
        &mut self,
        session_default: bool,
        isolation: Option<&str>,
        read_only: Option<bool>,
    ) -> Result<(), ProxyError> {
        if session_default {
            if let Some(level) = isolation {
                self.params.set(
                    "default_transaction_isolation",
                    &SetValue::Value(level.to_owned()),
                )?;
            }
            if let Some(read_only) = read_only {
                let value = if read_only { "on" } else { "off" };
                self.params.set(
                    "default_transaction_read_only",
                    &SetValue::Value(value.to_owned()),
                )?;
            }
            return Ok(());
        }
        if self.status == TxnStatus::Idle {
            self.notice(
                "25P01",
                "SET TRANSACTION can only be used in transaction blocks",
            );
            return Ok(());
        }
        let started = self.nodes.iter().flatten().any(|conn| conn.in_txn);
        if started && isolation.is_some() {
            return Err(sql_error(
                "25001",
                "SET TRANSACTION ISOLATION LEVEL must be called before any query",
            ));
        }
        let (current_level, current_read_only) =
            mycelium_router::transaction_modes(self.begin_sql.as_deref().unwrap_or("BEGIN"));
        let mut begin = "BEGIN".to_owned();
        if let Some(level) = isolation.map(str::to_owned).or(current_level) {
            begin.push_str(" ISOLATION LEVEL ");
            begin.push_str(&level.to_ascii_uppercase());
        }
        match read_only.or(current_read_only) {
            Some(true) => begin.push_str(" READ ONLY"),
            Some(false) => begin.push_str(" READ WRITE"),
            None => {}
        }
        self.begin_sql = Some(begin);
        Ok(())
    }

    /// SHOW of one parameter; the transaction's isolation and access mode are the open
    /// transaction's, or the session's defaults outside one.
    pub(crate) fn show_value(&self, name: &str) -> Result<String, ProxyError> {
        let modes = match &self.begin_sql {
            Some(begin) if self.status != TxnStatus::Idle => {
                mycelium_router::transaction_modes(begin)
            }
            _ => (None, None),
        };
        match name.to_ascii_lowercase().as_str() {
            "transaction_isolation" => Ok(match modes.0 {
                Some(level) => level,
                None => self.params.get("default_transaction_isolation")?.to_owned(),
            }),
            "transaction_read_only" => Ok(match modes.1 {
                Some(true) => "on".to_owned(),
                Some(false) => "off".to_owned(),
                None => self.params.get("default_transaction_read_only")?.to_owned(),
            }),
            _ => Ok(self.params.get(name)?.to_owned()),
        }
    }

    /// A node that can describe `sql`: every node has every table's schema, so the one the
    /// statement would run on (or the first, when parameters decide) will do.
    pub(crate) fn describe_node(&self, sql: &Arc<str>, param_types: &[u32]) -> usize {
        let probe = Execute {
            sql: sql.clone(),
            param_types: Arc::from(param_types),
            params: Vec::new(),
            param_formats: Vec::new(),
            result_formats: Arc::from(Vec::new()),
        };
        match self.target(&probe) {
            Ok((Target::One(node), _)) => node,
            Ok((Target::Scatter { assignment, .. }, _)) => {
                assignment.keys().next().copied().unwrap_or(0)
            }
            _ => 0,
        }
    }
}

fn show_columns(command: &SessionCommand) -> Vec<Column> {
    let text = |name: &str| Column {
        name: name.to_owned(),
        table_oid: 0,
        column_id: 0,
        type_oid: TEXT_OID,
        type_size: -1,
        type_modifier: -1,
    };
    match command {
        SessionCommand::Show { name } if name == "all" => {
            vec![text("name"), text("setting"), text("description")]
        }
        SessionCommand::Show { name } => {
            crate::admin::admin_columns(name).unwrap_or_else(|| vec![text(name)])
        }
        _ => Vec::new(),
    }
}

fn expand_formats(codes: &[i16], count: usize, what: &str) -> Result<Vec<Format>, ProxyError> {
    let formats: Vec<Format> = codes
        .iter()
        .map(|&code| Format::from_code(code).ok_or_else(|| bad_format(code)))
        .collect::<Result<_, _>>()?;
    match formats.len() {
        0 => Ok(vec![Format::Text; count]),
        1 => Ok(vec![formats[0]; count]),
        n if n == count => Ok(formats),
        n => Err(ProxyError::Protocol(format!(
            "bind message has {n} {what} formats but {count} {what}s"
        ))),
    }
}

fn bad_format(code: i16) -> ProxyError {
    ProxyError::Protocol(format!("unsupported format code: {code}"))
}

fn missing_statement(name: &str) -> ProxyError {
    if name.is_empty() {
        sql_error("26000", "unnamed prepared statement does not exist")
    } else {
        sql_error(
            "26000",
            format!("prepared statement \"{name}\" does not exist"),
        )
    }
}

fn message_name(message: &PgWireFrontendMessage) -> &'static str {
    match message {
        PgWireFrontendMessage::SslNegotiation(_) => "SSLRequest",
        PgWireFrontendMessage::Startup(_) => "StartupMessage",
        PgWireFrontendMessage::CancelRequest(_) => "CancelRequest",
        PgWireFrontendMessage::PasswordMessageFamily(_) => "PasswordMessage",
        PgWireFrontendMessage::PortalSuspended(_) => "PortalSuspended",
        _ => "message",
    }
}
