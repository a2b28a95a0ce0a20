//! `EXPLAIN` of a statement that runs on several nodes: each node's own plan (PostgreSQL's or
//! SQLite's, scoped to the shards the node answers for), under a line naming the node, in the
//! one `QUERY PLAN` column a client expects. On one node the node's answer goes out as is.

use mycelium_protocol::{Column, Execute, Reply};

use crate::backend;
use crate::error::{ProxyError, sql_error};
use crate::execute::{Finished, Output};
use crate::session::Session;

/// Where each node's plan lines start, under its `->  Node` line.
const NODE_PLAN_INDENT: &str = "        ";

impl Session {
    /// Runs each node's `EXPLAIN` (`writes`: an `EXPLAIN ANALYZE` of a write, which runs it)
    /// and answers with the plans one after the other.
    pub(crate) async fn run_explain_many(
        &mut self,
        nodes: Vec<(usize, Execute)>,
        writes: bool,
        output: Output,
    ) -> Result<Finished, ProxyError> {
        let statement = self.start_statement();
        let result = async {
            let mut columns: Option<Column> = None;
            let mut lines = vec![format!("Mycelium Append  ({} nodes)", nodes.len())];
            for (node, request) in &nodes {
                self.ensure_node_transaction(*node).await?;
                self.track(*node, writes)?;
                lines.push(format!("  ->  Node {}", self.node_name(*node)));
                let mut stream = self.node(*node).await?.execute(request.clone()).await?;
                loop {
                    let reply = tokio::select! {
                        reply = stream.recv() => reply,
                        () = statement.token.cancelled() => return Err(statement.cancel_error()),
                    };
                    match reply {
                        Some(Ok(Reply::Columns(described))) => {
                            columns = columns.or_else(|| described.first().cloned());
                        }
                        Some(Ok(Reply::Rows(rows))) => {
                            for row in rows.iter() {
                                if let Some(Some(line)) = row.into_iter().next() {
                                    lines.push(format!(
                                        "{NODE_PLAN_INDENT}{}",
                                        String::from_utf8_lossy(line)
                                    ));
                                }
                            }
                        }
                        Some(Ok(Reply::Complete { .. })) => break,
                        Some(Err(e)) => return Err(e.into()),
                        None => return Err(self.node_gone(*node)),
                    }
                }
            }
            let Some(column) = columns else {
                return Err(sql_error(
                    "XX000",
                    "the nodes answered EXPLAIN without a plan",
                ));
            };
            if matches!(output, Output::Simple) {
                backend::row_description(&mut self.conn.out, std::slice::from_ref(&column), |_| {
                    mycelium_protocol::Format::Text
                });
            }
            for line in &lines {
                backend::text_data_row(&mut self.conn.out, &[Some(line.as_str())]);
            }
            backend::command_complete(&mut self.conn.out, "EXPLAIN");
            Ok(Finished::Complete)
        }
        .await;
        self.cancel.end_statement();
        result
    }
}
