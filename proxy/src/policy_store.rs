//! Table policies set by SQL are stored in every node, in `__mycelium_policies`, so every proxy
//! finds them after a restart. Policies from the config file win over stored ones.

use std::sync::Arc;

use bytes::Bytes;
use mycelium_protocol::{DbError, Execute, Format, NodeSession, Reply, types::oid};
use mycelium_router::{TablePolicy, apply_options, policy_to_options};

/// A policy in its stored form: one `key=value` line per option.
pub(crate) fn stored_options(policy: &TablePolicy) -> String {
    policy_to_options(policy)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect()
}

use crate::Proxy;

pub(crate) const CREATE: &str = "CREATE TABLE IF NOT EXISTS __mycelium_policies \
     (table_name text PRIMARY KEY, options text NOT NULL)";
const SELECT: &str = "SELECT table_name, options FROM __mycelium_policies";
pub(crate) const UPSERT: &str = "INSERT INTO __mycelium_policies (table_name, options) VALUES ($1, $2) \
     ON CONFLICT (table_name) DO UPDATE SET options = excluded.options";
pub(crate) const DELETE: &str = "DELETE FROM __mycelium_policies WHERE table_name = $1";

impl Proxy {
    /// Reads the stored policies from the nodes and installs those the config file does not set.
    pub async fn load_policies(&self) -> Result<(), DbError> {
        let configured: Vec<String> = self.cluster.policies().into_keys().collect();
        for node in &self.cluster.nodes {
            let mut session = node.link.open_session().await?;
            run(session.as_mut(), Execute::simple(CREATE)).await?;
            for row in run(session.as_mut(), Execute::simple(SELECT)).await? {
                let [Some(table), Some(options)] = row.as_slice() else {
                    continue;
                };
                if configured.contains(table) || self.cluster.has_policy(table) {
                    continue;
                }
                let options: Vec<(String, String)> = options
                    .lines()
                    .filter_map(|line| line.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                let base = TablePolicy::default_for(table, self.cluster.defaults());
                match apply_options(base, &options) {
                    Ok(policy) => self.cluster.set_policy(policy),
                    Err(e) => {
                        tracing::warn!(table = %table, error = %e, "ignoring a stored policy")
                    }
                }
            }
        }
        Ok(())
    }
}

/// A statement with text parameters: values are always bound, never spliced into SQL.
pub(crate) fn text_params(sql: &str, values: &[&str]) -> Execute {
    Execute {
        sql: Arc::from(sql),
        param_types: Arc::from(vec![oid::TEXT; values.len()]),
        params: values
            .iter()
            .map(|v| Some(Bytes::copy_from_slice(v.as_bytes())))
            .collect(),
        param_formats: vec![Format::Text; values.len()],
        result_formats: Arc::from(Vec::new()),
    }
}

/// Runs a statement and returns its rows as text.
pub(crate) async fn run(
    session: &mut dyn NodeSession,
    request: Execute,
) -> Result<Vec<Vec<Option<String>>>, DbError> {
    let mut stream = session.execute(request).await?;
    let mut rows = Vec::new();
    loop {
        match stream.recv().await {
            Some(Ok(Reply::Rows(batch))) => {
                for row in batch.iter() {
                    rows.push(
                        row.iter()
                            .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                            .collect(),
                    );
                }
            }
            Some(Ok(Reply::Complete { .. })) => return Ok(rows),
            Some(Ok(Reply::Columns(_))) => {}
            Some(Err(e)) => return Err(e),
            None => return Err(DbError::new("08006", "a node stopped answering")),
        }
    }
}
