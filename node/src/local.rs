//! A node reached from a proxy in the same process (`mycelium up`), without the node protocol.
//!
//! The link does what the node's server does between a proxy's frames and a node session
//! (`network::rpc::server`): it checks the map epoch of a statement that starts work, and it
//! hands errors back inside the reply stream, where a remote statement's errors arrive too.
//! It counts its requests in the node protocol's metrics, as the server would. What it saves
//! is the loopback connection: two TLS records, two socket crossings and the wake-ups of the
//! tasks on either side of each, per request.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use mycelium_protocol::{
    ClusterMap, CommitPosition, CopyIn, DbError, Execute, LockOrder, NodeLink, NodeSession,
    NodeStatus, PreparedTxn, ReplicationRow, Reply, ReplySource, ReplyStream, StatementDescription,
    TxnOutcome,
};

use mycelium_network::rpc::metrics;

use crate::Node;

/// Runs one request of `kind` and counts it, as the node's server counts the requests it
/// reads off a connection.
async fn metered<T>(
    kind: &str,
    request: impl Future<Output = Result<T, DbError>>,
) -> Result<T, DbError> {
    let started = Instant::now();
    let result = request.await;
    if let Err(error) = &result {
        metrics::request_failed(error);
    }
    metrics::request_served(kind, started);
    result
}

/// A [`Node`] as the proxy of its own process sees it.
pub struct LocalLink {
    node: Arc<Node>,
}

impl LocalLink {
    pub fn new(node: Arc<Node>) -> LocalLink {
        LocalLink { node }
    }
}

#[async_trait]
impl NodeLink for LocalLink {
    fn node_id(&self) -> &str {
        self.node.node_id()
    }

    async fn open_session(&self) -> Result<Box<dyn NodeSession>, DbError> {
        Ok(Box::new(LocalSession {
            node: self.node.clone(),
            id: Arc::from(self.node.node_id()),
            inner: self.node.open_session().await?,
            map_epoch: 0,
        }))
    }

    async fn finish_prepared(
        &self,
        gid: &str,
        commit: bool,
    ) -> Result<Vec<CommitPosition>, DbError> {
        metered("finish_prepared", self.node.finish_prepared(gid, commit)).await
    }

    async fn prepared(&self) -> Result<Vec<PreparedTxn>, DbError> {
        metered("list_prepared", self.node.prepared()).await
    }

    async fn txn_outcome(&self, gid: &str) -> Result<TxnOutcome, DbError> {
        metered("txn_outcome", self.node.txn_outcome(gid)).await
    }

    async fn forget_txn(&self, gid: &str) -> Result<(), DbError> {
        metered("forget_txn", self.node.forget_txn(gid)).await
    }

    async fn status(&self) -> Result<NodeStatus, DbError> {
        metered("status", self.node.status()).await
    }

    async fn exchange_map(&self, offer: Option<ClusterMap>) -> Result<Option<ClusterMap>, DbError> {
        metered("map", self.node.exchange_map(offer)).await
    }

    fn check_epoch(&self, epoch: u64) -> Result<(), DbError> {
        self.node.check_epoch(epoch)
    }

    async fn replication(&self) -> Result<Vec<ReplicationRow>, DbError> {
        metered("replication", self.node.replication()).await
    }
}

/// A node session and the map epoch its statements are routed by.
struct LocalSession {
    node: Arc<Node>,
    /// The node's id, shared with each statement's replies for their row counts.
    id: Arc<str>,
    inner: Box<dyn NodeSession>,
    map_epoch: u64,
}

#[async_trait]
impl NodeSession for LocalSession {
    async fn describe(
        &mut self,
        sql: &str,
        param_types: &[u32],
    ) -> Result<StatementDescription, DbError> {
        metered("describe", self.inner.describe(sql, param_types)).await
    }

    async fn execute(&mut self, request: Execute) -> Result<ReplyStream, DbError> {
        let started = Instant::now();
        let checked = self
            .node
            .check_statement_epoch(self.map_epoch, self.inner.in_transaction());
        let stream = match checked {
            Ok(()) => self.inner.execute(request).await,
            Err(error) => Err(error),
        };
        let replies = match stream {
            Ok(stream) => Replies::Streaming(stream),
            Err(error) => Replies::Failed(Some(error)),
        };
        Ok(ReplyStream::from_source(Box::new(MeteredReplies {
            replies,
            node: self.id.clone(),
            started: Some(started),
        })))
    }

    async fn copy_in(&mut self, batch: CopyIn) -> Result<u64, DbError> {
        metered("copy_in", self.inner.copy_in(batch)).await
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

    fn set_map_epoch(&mut self, epoch: u64) {
        self.map_epoch = epoch;
    }

    fn set_read_fence(&mut self, fence: Vec<CommitPosition>) {
        self.inner.set_read_fence(fence);
    }

    fn take_commit_positions(&mut self) -> Vec<CommitPosition> {
        self.inner.take_commit_positions()
    }

    fn in_transaction(&self) -> bool {
        self.inner.in_transaction()
    }

    async fn prepare(&mut self, gid: &str, decider: &str) -> Result<(), DbError> {
        metered("prepare", self.inner.prepare(gid, decider)).await
    }

    async fn commit_decision(&mut self, gid: &str, participants: &[String]) -> Result<(), DbError> {
        metered(
            "commit_decision",
            self.inner.commit_decision(gid, participants),
        )
        .await
    }
}

/// A statement's replies, counted in the node protocol's metrics as the server counts those
/// it sends: rows, an error, and the request's duration once the last reply is out (or the
/// proxy stopped listening). A statement that failed before it produced anything has its
/// error as its only reply, as it would arrive from a remote node.
struct MeteredReplies {
    replies: Replies,
    node: Arc<str>,
    /// Taken when the request is counted.
    started: Option<Instant>,
}

enum Replies {
    Streaming(ReplyStream),
    Failed(Option<DbError>),
}

impl MeteredReplies {
    fn served(&mut self) {
        if let Some(started) = self.started.take() {
            metrics::request_served("execute", started);
        }
    }
}

#[async_trait]
impl ReplySource for MeteredReplies {
    async fn next(&mut self) -> Option<Result<Reply, DbError>> {
        let reply = match &mut self.replies {
            Replies::Streaming(stream) => stream.recv().await,
            Replies::Failed(error) => error.take().map(Err),
        };
        match &reply {
            Some(Ok(Reply::Rows(rows))) => metrics::rows_sent(&self.node, rows.len()),
            Some(Ok(Reply::Columns(_))) => {}
            Some(Ok(Reply::Complete { .. })) | None => self.served(),
            Some(Err(error)) => {
                metrics::request_failed(error);
                self.served();
            }
        }
        reply
    }
}

impl Drop for MeteredReplies {
    fn drop(&mut self) {
        self.served();
    }
}
