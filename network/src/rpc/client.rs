//! The proxy side: a node reached over the network, as a [`NodeLink`].
//!
//! A session borrows a pooled connection for each statement and gives it back when the
//! statement ends outside a transaction; inside one, it keeps the connection (and so the node's
//! session and its transaction) until the transaction ends. A session dropped mid-transaction
//! discards its connection, and the node rolls the transaction back when the connection closes.

use async_trait::async_trait;
use bytes::Bytes;
use std::sync::{Arc, Mutex, PoisonError};

use mycelium_protocol::{
    ClusterMap, CommitPosition, CopyIn, DbError, Execute, LockOrder, NodeLink, NodeSession,
    NodeStatus, PreparedTxn, ReplicationRow, Reply, ReplySource, ReplyStream, StatementDescription,
    TxnOutcome,
};
use tokio::sync::oneshot;

use super::codec::{self, kind};
use crate::{Frame, NetworkError, Pool, PooledConnection};

/// A node reached through a connection pool.
pub struct RemoteNode {
    id: String,
    pool: Pool,
}

impl RemoteNode {
    /// `pool` must know the peer `id` (see [`Pool::add_peer`]).
    pub fn new(id: &str, pool: Pool) -> RemoteNode {
        RemoteNode {
            id: id.to_owned(),
            pool,
        }
    }
}

#[async_trait]
impl NodeLink for RemoteNode {
    fn node_id(&self) -> &str {
        &self.id
    }

    fn is_up(&self) -> bool {
        self.pool.is_up(&self.id)
    }

    async fn open_session(&self) -> Result<Box<dyn NodeSession>, DbError> {
        Ok(Box::new(RemoteSession {
            node: Arc::from(self.id.as_str()),
            pool: self.pool.clone(),
            pinned: None,
            in_flight: None,
            in_transaction: false,
            user: None,
            time_zone: None,
            lock_order: None,
            map_epoch: 0,
            fence: Vec::new(),
            positions: Arc::default(),
        }))
    }

    async fn finish_prepared(
        &self,
        gid: &str,
        commit: bool,
    ) -> Result<Vec<CommitPosition>, DbError> {
        let frame = self
            .link_request(
                kind::FINISH_PREPARED,
                codec::encode_finish_prepared(gid, commit),
            )
            .await?;
        match frame.kind {
            kind::DONE => codec::decode_done(frame.payload)
                .map(|(_, positions)| positions)
                .map_err(|e| lost(&self.id, e)),
            _ => Err(self.unexpected(frame, "FINISH_PREPARED")),
        }
    }

    async fn prepared(&self) -> Result<Vec<PreparedTxn>, DbError> {
        let frame = self.link_request(kind::LIST_PREPARED, Bytes::new()).await?;
        match frame.kind {
            kind::PREPARED_LIST => {
                codec::decode_prepared_list(frame.payload).map_err(|e| lost(&self.id, e))
            }
            _ => Err(self.unexpected(frame, "LIST_PREPARED")),
        }
    }

    async fn txn_outcome(&self, gid: &str) -> Result<TxnOutcome, DbError> {
        let frame = self
            .link_request(kind::TXN_OUTCOME, codec::encode_gid(gid))
            .await?;
        match frame.kind {
            kind::OUTCOME => codec::decode_outcome(frame.payload).map_err(|e| lost(&self.id, e)),
            _ => Err(self.unexpected(frame, "TXN_OUTCOME")),
        }
    }

    async fn forget_txn(&self, gid: &str) -> Result<(), DbError> {
        let frame = self
            .link_request(kind::FORGET_TXN, codec::encode_gid(gid))
            .await?;
        match frame.kind {
            kind::DONE => Ok(()),
            _ => Err(self.unexpected(frame, "FORGET_TXN")),
        }
    }

    async fn status(&self) -> Result<NodeStatus, DbError> {
        let frame = self.link_request(kind::STATUS, Bytes::new()).await?;
        match frame.kind {
            kind::STATUS_REPORT => {
                codec::decode_status(frame.payload).map_err(|e| lost(&self.id, e))
            }
            _ => Err(self.unexpected(frame, "STATUS")),
        }
    }

    async fn exchange_map(&self, offer: Option<ClusterMap>) -> Result<Option<ClusterMap>, DbError> {
        let frame = self
            .link_request(kind::MAP, codec::encode_map(offer.as_ref()))
            .await?;
        match frame.kind {
            kind::MAP_REPORT => codec::decode_map(frame.payload).map_err(|e| lost(&self.id, e)),
            _ => Err(self.unexpected(frame, "MAP")),
        }
    }

    async fn replication(&self) -> Result<Vec<ReplicationRow>, DbError> {
        let frame = self.link_request(kind::REPLICATION, Bytes::new()).await?;
        match frame.kind {
            kind::REPLICATION_REPORT => {
                codec::decode_replication(frame.payload).map_err(|e| lost(&self.id, e))
            }
            _ => Err(self.unexpected(frame, "REPLICATION")),
        }
    }
}

fn lost(node: &str, error: impl std::fmt::Display) -> DbError {
    DbError::new("08006", format!("lost connection to node {node}: {error}"))
}

impl RemoteNode {
    /// A request that needs no session of its own, on any pooled connection.
    async fn link_request(&self, kind: u8, payload: Bytes) -> Result<Frame, DbError> {
        let mut conn =
            self.pool.get(&self.id).await.map_err(|e| {
                DbError::new("08006", format!("node {} is unreachable: {e}", self.id))
            })?;
        match conn.request(kind, payload).await {
            Ok(frame) => Ok(frame),
            Err(e) => {
                conn.discard();
                Err(lost(&self.id, e))
            }
        }
    }

    /// An ERROR frame becomes its error; anything else is a protocol violation.
    fn unexpected(&self, frame: Frame, request: &str) -> DbError {
        match frame.kind {
            kind::ERROR => match codec::decode_error(frame.payload) {
                Ok((error, _)) => error,
                Err(e) => lost(&self.id, e),
            },
            other => lost(
                &self.id,
                format!("unexpected answer {other:#04x} to {request}"),
            ),
        }
    }
}

/// A connection handed back by the task that streamed a statement's replies, with the
/// transaction state the node reported at the end (`None` when the connection broke).
type Handback = oneshot::Receiver<Option<(PooledConnection, bool)>>;

struct RemoteSession {
    /// Shared with each statement's replies (one per statement: no copy of the name each).
    node: Arc<str>,
    pool: Pool,
    /// The connection held while a transaction is open.
    pinned: Option<PooledConnection>,
    /// A statement still streaming; its connection comes back through here.
    in_flight: Option<Handback>,
    in_transaction: bool,
    /// The client user, sent with every statement (connections are shared between users).
    user: Option<String>,
    /// The client's `TimeZone`, sent with every statement and COPY batch (likewise); `None`
    /// for UTC, which costs nothing on the wire.
    time_zone: Option<String>,
    /// The client transaction's lock order, sent with every statement and COPY batch.
    lock_order: Option<LockOrder>,
    /// The cluster map epoch statements are routed by (sent with each; 0 = unchecked).
    map_epoch: u64,
    /// The read fence of the next statement only.
    fence: Vec<CommitPosition>,
    /// Where the last statement's commits landed, as its COMPLETE said (written by the
    /// statement's reply stream, which outlives the `execute` call).
    positions: Arc<Mutex<Vec<CommitPosition>>>,
}

impl RemoteSession {
    fn lost(&self, error: impl std::fmt::Display) -> DbError {
        lost(&self.node, error)
    }

    /// Sends a request answered by DONE or ERROR, keeping or releasing the connection as the
    /// node's transaction state says; answers where the request's commits landed.
    async fn request_done(
        &mut self,
        kind: u8,
        payload: Bytes,
        what: &str,
    ) -> Result<Vec<CommitPosition>, DbError> {
        let (conn, frame) = self.request(kind, payload).await?;
        match frame.kind {
            kind::DONE => {
                let (in_transaction, positions) =
                    codec::decode_done(frame.payload).map_err(|e| self.lost(e))?;
                self.release(conn, in_transaction);
                Ok(positions)
            }
            kind::ERROR => {
                let (error, in_transaction) =
                    codec::decode_error(frame.payload).map_err(|e| self.lost(e))?;
                self.release(conn, in_transaction);
                Err(error)
            }
            other => Err(self.lost(format!("unexpected answer {other:#04x} to {what}"))),
        }
    }

    async fn connection(&mut self) -> Result<PooledConnection, DbError> {
        if let Some(handback) = self.in_flight.take() {
            match handback.await {
                Ok(Some((conn, in_transaction))) => {
                    self.in_transaction = in_transaction;
                    if in_transaction {
                        return Ok(conn);
                    }
                }
                _ if self.in_transaction => {
                    self.in_transaction = false;
                    return Err(self.lost("the connection broke during a transaction"));
                }
                _ => {}
            }
        }
        if let Some(conn) = self.pinned.take() {
            return Ok(conn);
        }
        self.pool
            .get(&self.node)
            .await
            .map_err(|e| DbError::new("08006", format!("node {} is unreachable: {e}", self.node)))
    }

    /// Keeps the connection while a transaction is open, else returns it to the pool.
    fn release(&mut self, conn: PooledConnection, in_transaction: bool) {
        self.in_transaction = in_transaction;
        if in_transaction {
            self.pinned = Some(conn);
        }
    }

    async fn request(
        &mut self,
        kind: u8,
        payload: Bytes,
    ) -> Result<(PooledConnection, Frame), DbError> {
        let mut conn = self.connection().await?;
        match conn.request(kind, payload).await {
            Ok(frame) => Ok((conn, frame)),
            Err(e) => {
                self.in_transaction = false;
                conn.discard();
                Err(self.lost(e))
            }
        }
    }
}

#[async_trait]
impl NodeSession for RemoteSession {
    async fn describe(
        &mut self,
        sql: &str,
        param_types: &[u32],
    ) -> Result<StatementDescription, DbError> {
        let (conn, frame) = self
            .request(kind::DESCRIBE, codec::encode_describe(sql, param_types))
            .await?;
        match frame.kind {
            kind::DESCRIPTION => {
                let in_transaction = self.in_transaction;
                self.release(conn, in_transaction);
                codec::decode_description(frame.payload).map_err(|e| self.lost(e))
            }
            kind::ERROR => {
                let (error, in_transaction) =
                    codec::decode_error(frame.payload).map_err(|e| self.lost(e))?;
                self.release(conn, in_transaction);
                Err(error)
            }
            other => Err(self.lost(format!("unexpected answer {other:#04x} to DESCRIBE"))),
        }
    }

    async fn execute(&mut self, request: Execute) -> Result<ReplyStream, DbError> {
        let mut conn = self.connection().await?;
        if let Err(e) = conn
            .send(
                kind::EXECUTE,
                codec::encode_execute(
                    &request,
                    self.user.as_deref(),
                    self.time_zone.as_deref(),
                    self.map_epoch,
                    &std::mem::take(&mut self.fence),
                    self.lock_order,
                ),
            )
            .await
        {
            self.in_transaction = false;
            conn.discard();
            return Err(self.lost(e));
        }
        let (handback, in_flight) = oneshot::channel();
        self.in_flight = Some(in_flight);
        Ok(ReplyStream::from_source(Box::new(RemoteReplies {
            conn: Some(conn),
            handback: Some(handback),
            node: self.node.clone(),
            positions: self.positions.clone(),
        })))
    }

    async fn copy_in(&mut self, batch: CopyIn) -> Result<u64, DbError> {
        let (conn, frame) = self
            .request(
                kind::COPY_IN,
                codec::encode_copy_in(&batch, self.time_zone.as_deref(), self.lock_order),
            )
            .await?;
        match frame.kind {
            kind::COPIED => {
                let (rows, in_transaction) =
                    codec::decode_copied(frame.payload).map_err(|e| self.lost(e))?;
                self.release(conn, in_transaction);
                Ok(rows)
            }
            kind::ERROR => {
                let (error, in_transaction) =
                    codec::decode_error(frame.payload).map_err(|e| self.lost(e))?;
                self.release(conn, in_transaction);
                Err(error)
            }
            other => Err(self.lost(format!("unexpected answer {other:#04x} to COPY"))),
        }
    }

    fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    fn set_user(&mut self, user: &str) {
        self.user = Some(user.to_owned());
    }

    fn set_time_zone(&mut self, zone: &str) {
        if zone == "UTC" {
            self.time_zone = None;
        } else if self.time_zone.as_deref() != Some(zone) {
            self.time_zone = Some(zone.to_owned());
        }
    }

    fn set_lock_order(&mut self, order: Option<LockOrder>) {
        self.lock_order = order;
    }

    fn set_map_epoch(&mut self, epoch: u64) {
        self.map_epoch = epoch;
    }

    fn set_read_fence(&mut self, fence: Vec<CommitPosition>) {
        self.fence = fence;
    }

    fn take_commit_positions(&mut self) -> Vec<CommitPosition> {
        std::mem::take(
            &mut *self
                .positions
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    async fn prepare(&mut self, gid: &str, decider: &str) -> Result<(), DbError> {
        self.request_done(
            kind::PREPARE,
            codec::encode_prepare(gid, decider),
            "PREPARE",
        )
        .await
        .map(|_| ())
    }

    async fn commit_decision(&mut self, gid: &str, participants: &[String]) -> Result<(), DbError> {
        let positions = self
            .request_done(
                kind::COMMIT_DECISION,
                codec::encode_commit_decision(gid, participants),
                "COMMIT_DECISION",
            )
            .await?;
        *self
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = positions;
        Ok(())
    }
}

impl Drop for RemoteSession {
    fn drop(&mut self) {
        // A pinned connection carries an open transaction: never let the pool reuse it.
        if let Some(conn) = self.pinned.take() {
            conn.discard();
        }
        // So may the connection of the last statement, still waiting to come back: closing
        // the channel first means it either is in it now, or `hand_back` sees the session
        // gone and discards it itself.
        if let Some(mut in_flight) = self.in_flight.take() {
            in_flight.close();
            if let Ok(Some((conn, true))) = in_flight.try_recv() {
                conn.discard();
            }
        }
    }
}

/// Returns a statement's connection to its session. When the session is gone, a connection
/// inside a transaction is closed (the node rolls the transaction back) rather than returned
/// to the pool, where the next session's COMMIT would commit it.
fn hand_back(
    handback: oneshot::Sender<Option<(PooledConnection, bool)>>,
    conn: PooledConnection,
    in_transaction: bool,
) {
    if let Err(Some((conn, true))) = handback.send(Some((conn, in_transaction))) {
        conn.discard();
    }
}

/// One statement's replies, read straight off the connection as the proxy asks for them. At
/// the end the connection goes back to its session (through `handback`); dropped early (a
/// cancel, a timeout), it tells the node to stop and drains the rest in the background so the
/// connection stays usable.
struct RemoteReplies {
    conn: Option<PooledConnection>,
    handback: Option<oneshot::Sender<Option<(PooledConnection, bool)>>>,
    node: Arc<str>,
    positions: Arc<Mutex<Vec<CommitPosition>>>,
}

impl RemoteReplies {
    /// The statement ended: the connection returns to the session with the node's
    /// transaction state.
    fn finish(&mut self, in_transaction: bool) {
        if let (Some(conn), Some(handback)) = (self.conn.take(), self.handback.take()) {
            hand_back(handback, conn, in_transaction);
        }
    }

    /// The connection broke: nobody may reuse it.
    fn fail(&mut self, error: DbError) -> Option<Result<Reply, DbError>> {
        if let Some(conn) = self.conn.take() {
            conn.discard();
        }
        if let Some(handback) = self.handback.take() {
            let _ = handback.send(None);
        }
        Some(Err(error))
    }
}

#[async_trait]
impl ReplySource for RemoteReplies {
    async fn next(&mut self) -> Option<Result<Reply, DbError>> {
        let conn = self.conn.as_mut()?;
        let frame = match conn.recv().await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => {
                let error = DbError::new("08006", format!("lost connection to node {}", self.node));
                return self.fail(error);
            }
        };
        match decode_reply(frame) {
            Ok((reply, end)) => {
                if let Some((in_transaction, positions)) = end {
                    *self
                        .positions
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = positions;
                    self.finish(in_transaction);
                }
                Some(reply)
            }
            Err(e) => {
                let error =
                    DbError::new("08006", format!("node {} sent a bad frame: {e}", self.node));
                self.fail(error)
            }
        }
    }
}

impl Drop for RemoteReplies {
    fn drop(&mut self) {
        let (Some(conn), Some(handback)) = (self.conn.take(), self.handback.take()) else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(cancel_and_drain(conn, handback));
            }
            Err(_) => conn.discard(),
        }
    }
}

/// Stops a statement nobody listens to any more and reads its remaining frames, so the
/// connection can serve the session's next statement.
async fn cancel_and_drain(
    mut conn: PooledConnection,
    handback: oneshot::Sender<Option<(PooledConnection, bool)>>,
) {
    if conn.send(kind::CANCEL, Bytes::new()).await.is_err() {
        conn.discard();
        let _ = handback.send(None);
        return;
    }
    loop {
        let frame = match conn.recv().await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => break,
        };
        match decode_reply(frame) {
            Ok((_, Some((in_transaction, _)))) => {
                hand_back(handback, conn, in_transaction);
                return;
            }
            Ok((_, None)) => {}
            Err(_) => break,
        }
    }
    conn.discard();
    let _ = handback.send(None);
}

/// The node's transaction state and the statement's commit positions, from its last frame.
type End = (bool, Vec<CommitPosition>);

/// A reply, and for the last frame of a statement how it ended.
fn decode_reply(frame: Frame) -> Result<(Result<Reply, DbError>, Option<End>), NetworkError> {
    Ok(match frame.kind {
        kind::COLUMNS => (
            Ok(Reply::Columns(codec::decode_columns(frame.payload)?.into())),
            None,
        ),
        kind::ROWS => (Ok(Reply::Rows(codec::decode_rows(frame.payload)?)), None),
        kind::COMPLETE => {
            let (tag, in_transaction, positions) = codec::decode_complete(frame.payload)?;
            (
                Ok(Reply::Complete { tag }),
                Some((in_transaction, positions)),
            )
        }
        kind::ERROR => {
            let (error, in_transaction) = codec::decode_error(frame.payload)?;
            (Err(error), Some((in_transaction, Vec::new())))
        }
        other => {
            return Err(NetworkError::Protocol(format!(
                "unexpected node protocol frame {other:#04x}"
            )));
        }
    })
}
