//! A miner node refuses statements on tables that are `validator_only`, whatever the proxy
//! asks: placement never puts their rows on a miner, and the node checks it itself rather
//! than trusting every proxy. DDL still reaches it (every node knows every table's schema).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use mycelium_protocol::{
    CopyIn, DbError, Execute, LockOrder, NodeSession, Reply, ReplyStream, StatementDescription,
};

const POLICY_TABLE: &str = "__mycelium_policies";

/// The validator-only tables, read from the policies the proxies store on the node; `None`
/// until read, and again after a policy was written.
#[derive(Default)]
pub struct ValidatorOnlyTables {
    tables: RwLock<Option<HashSet<String>>>,
}

impl ValidatorOnlyTables {
    fn forget(&self) {
        if let Ok(mut tables) = self.tables.write() {
            *tables = None;
        }
    }

    fn get(&self) -> Option<HashSet<String>> {
        self.tables.read().ok().and_then(|t| t.clone())
    }

    fn set(&self, tables: HashSet<String>) {
        if let Ok(mut current) = self.tables.write() {
            *current = Some(tables);
        }
    }
}

/// A session on a miner node.
pub struct MinerSession {
    pub inner: Box<dyn NodeSession>,
    pub node: String,
    pub guard: Arc<ValidatorOnlyTables>,
}

impl MinerSession {
    async fn check(&mut self, sql: &str) -> Result<(), DbError> {
        if sql.contains(POLICY_TABLE) {
            self.guard.forget();
            return Ok(());
        }
        let Some((tables, ddl)) = mycelium_router::statement_tables(sql) else {
            return Ok(());
        };
        if ddl || tables.is_empty() {
            return Ok(());
        }
        let refused = self.validator_only().await?;
        match tables.iter().find(|t| refused.contains(*t)) {
            Some(table) => Err(DbError::new(
                "42501",
                format!(
                    "node {} is a miner and holds no rows of validator-only table \"{table}\"",
                    self.node
                ),
            )
            .with_hint("validator_only tables are read and written on validator nodes")),
            None => Ok(()),
        }
    }

    async fn validator_only(&mut self) -> Result<HashSet<String>, DbError> {
        if let Some(tables) = self.guard.get() {
            return Ok(tables);
        }
        let mut tables = HashSet::new();
        let query = Execute::simple(format!("SELECT table_name, options FROM {POLICY_TABLE}"));
        let mut stream = self.inner.execute(query).await?;
        while let Some(reply) = stream.recv().await {
            match reply {
                Ok(Reply::Rows(rows)) => {
                    for row in rows.iter() {
                        let (Some(Some(table)), Some(Some(options))) = (row.first(), row.get(1))
                        else {
                            continue;
                        };
                        if String::from_utf8_lossy(options)
                            .lines()
                            .any(|l| l == "validator_only=true")
                        {
                            tables.insert(String::from_utf8_lossy(table).into_owned());
                        }
                    }
                }
                Ok(Reply::Complete { .. }) => break,
                Ok(Reply::Columns(_)) => {}
                // No policy table yet: no policies, nothing to refuse.
                Err(e) if e.code == "42P01" => break,
                Err(e) => return Err(e),
            }
        }
        self.guard.set(tables.clone());
        Ok(tables)
    }
}

#[async_trait]
impl NodeSession for MinerSession {
    async fn describe(
        &mut self,
        sql: &str,
        param_types: &[u32],
    ) -> Result<StatementDescription, DbError> {
        self.check(sql).await?;
        self.inner.describe(sql, param_types).await
    }

    async fn execute(&mut self, request: Execute) -> Result<ReplyStream, DbError> {
        self.check(&request.sql).await?;
        self.inner.execute(request).await
    }

    async fn copy_in(&mut self, batch: CopyIn) -> Result<u64, DbError> {
        if self
            .validator_only()
            .await?
            .contains(&batch.table.to_ascii_lowercase())
        {
            return Err(DbError::new(
                "42501",
                format!(
                    "node {} is a miner and holds no rows of validator-only table \"{}\"",
                    self.node, batch.table
                ),
            ));
        }
        self.inner.copy_in(batch).await
    }

    fn set_user(&mut self, user: &str) {
        self.inner.set_user(user);
    }

    fn set_time_zone(&mut self, zone: &str) {
        self.inner.set_time_zone(zone);
    }

    fn set_lock_order(&mut self, order: Option<LockOrder>) {
        self.inner.set_lock_order(order);
    }

    fn in_transaction(&self) -> bool {
        self.inner.in_transaction()
    }

    async fn prepare(&mut self, gid: &str, decider: &str) -> Result<(), DbError> {
        self.inner.prepare(gid, decider).await
    }

    async fn commit_decision(&mut self, gid: &str, participants: &[String]) -> Result<(), DbError> {
        self.inner.commit_decision(gid, participants).await
    }
}
