//! The node side: serves a [`NodeLink`]'s sessions to proxies, one session per connection.
//! Connections of another protocol sharing the port (replication between nodes) are handed
//! over by their first frame to a [`Handoff`].

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use mycelium_protocol::{CommitPosition, DbError, NodeLink, NodeSession, Reply};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::codec::{self, kind};
use super::metrics;
use crate::{
    Connection, Frame, Listener, NetworkError, PeerInfo, Server, ServerOptions, TlsIdentity,
};

/// Rows are sent as soon as this much is queued, so a large result streams.
const FLUSH_BYTES: usize = 256 * 1024;

/// Takes the connections whose first frame is of a kind it claims (the replication
/// protocol's `0x40..=0x4f`), so nodes reach each other on the port proxies use.
#[async_trait]
pub trait Handoff: Send + Sync {
    /// Whether a connection opening with a frame of `kind` is this protocol's.
    fn claims(&self, kind: u8) -> bool;

    /// Serves the connection from its first frame on. An error is sent to the peer as an
    /// `ERROR` frame (best effort; [`refusal`] reads it) before the connection closes: a
    /// refusal when nothing else was sent, the reason the stream stopped otherwise.
    async fn serve(&self, conn: &mut Connection, first: Frame) -> Result<(), DbError>;
}

/// The error in an `ERROR` frame: what a [`Handoff`] answered when it refused a connection or
/// stopped serving it.
pub fn refusal(frame: &Frame) -> Option<DbError> {
    if frame.kind != kind::ERROR {
        return None;
    }
    codec::decode_error(frame.payload.clone())
        .ok()
        .map(|(error, _)| error)
}

/// Serves `node` on `listener` until `shutdown` fires; connections `handoff` claims go to it.
pub async fn serve_node(
    listener: impl Into<Listener>,
    identity: TlsIdentity,
    options: ServerOptions,
    node: Arc<dyn NodeLink>,
    handoff: Option<Arc<dyn Handoff>>,
    shutdown: CancellationToken,
) -> Result<(), NetworkError> {
    let handler = move |conn: Connection, peer: PeerInfo| {
        let node = node.clone();
        let handoff = handoff.clone();
        async move {
            let span = tracing::info_span!("node_link", peer = %peer.name, addr = %peer.addr);
            serve_connection(conn, node, handoff).instrument(span).await
        }
    };
    Server::new(identity, options)
        .serve(listener, handler, shutdown)
        .await
}

async fn serve_connection(
    mut conn: Connection,
    node: Arc<dyn NodeLink>,
    handoff: Option<Arc<dyn Handoff>>,
) -> Result<(), NetworkError> {
    let Some(first) = conn.recv().await? else {
        return Ok(());
    };
    if let Some(handoff) = handoff.filter(|h| h.claims(first.kind)) {
        if let Err(error) = handoff.serve(&mut conn, first).await {
            tracing::debug!(code = %error.code, error = %error.message, "handed-off connection ended");
            let _ = conn
                .send(kind::ERROR, codec::encode_error(&error, false))
                .await;
        }
        return Ok(());
    }
    let mut session = match node.open_session().await {
        Ok(session) => session,
        Err(error) => {
            conn.send(kind::ERROR, codec::encode_error(&error, false))
                .await?;
            return Ok(());
        }
    };
    let node_id = node.node_id().to_owned();
    let mut next = Some(first);
    loop {
        let frame = match next.take() {
            Some(frame) => frame,
            None => match conn.recv().await? {
                Some(frame) => frame,
                None => break,
            },
        };
        let kind_label = match frame.kind {
            kind::DESCRIBE => "describe",
            kind::EXECUTE => "execute",
            kind::COPY_IN => "copy_in",
            kind::PREPARE => "prepare",
            kind::COMMIT_DECISION => "commit_decision",
            kind::FINISH_PREPARED => "finish_prepared",
            kind::LIST_PREPARED => "list_prepared",
            kind::TXN_OUTCOME => "txn_outcome",
            kind::FORGET_TXN => "forget_txn",
            kind::STATUS => "status",
            kind::MAP => "map",
            kind::REPLICATION => "replication",
            _ => "other",
        };
        let started = std::time::Instant::now();
        match frame.kind {
            kind::DESCRIBE => {
                let (sql, types) = codec::decode_describe(frame.payload)?;
                let result = session.describe(&sql, &types).await;
                let in_transaction = session.in_transaction();
                let (kind, payload) = answer(result, in_transaction, |d| {
                    (kind::DESCRIPTION, codec::encode_description(&d))
                });
                conn.send(kind, payload).await?;
            }
            kind::EXECUTE => {
                let (request, context) = codec::decode_execute(frame.payload)?;
                if let Some(user) = context.user {
                    session.set_user(&user);
                }
                // The connection serves sessions in any zone: none said is UTC.
                session.set_time_zone(context.time_zone.as_deref().unwrap_or("UTC"));
                session.set_lock_order(context.lock_order);
                session.set_read_fence(context.fence);
                match node.check_statement_epoch(context.epoch, session.in_transaction()) {
                    Ok(()) => execute(&mut conn, session.as_mut(), request, &node_id).await?,
                    Err(error) => {
                        let payload = codec::encode_error(&error, session.in_transaction());
                        conn.send(kind::ERROR, payload).await?;
                    }
                }
            }
            kind::COPY_IN => {
                let (batch, context) = codec::decode_copy_in(frame.payload)?;
                session.set_time_zone(context.time_zone.as_deref().unwrap_or("UTC"));
                session.set_lock_order(context.lock_order);
                let result = session.copy_in(batch).await;
                let in_transaction = session.in_transaction();
                let (kind, payload) = answer(result, in_transaction, |rows| {
                    (kind::COPIED, codec::encode_copied(rows, in_transaction))
                });
                conn.send(kind, payload).await?;
            }
            kind::PREPARE => {
                let (gid, decider) = codec::decode_prepare(frame.payload)?;
                let result = session.prepare(&gid, &decider).await;
                send_done(
                    &mut conn,
                    session.in_transaction(),
                    result.map(|()| Vec::new()),
                )
                .await?;
            }
            kind::COMMIT_DECISION => {
                let (gid, participants) = codec::decode_commit_decision(frame.payload)?;
                let result = session
                    .commit_decision(&gid, &participants)
                    .await
                    .map(|()| session.take_commit_positions());
                send_done(&mut conn, session.in_transaction(), result).await?;
            }
            kind::FINISH_PREPARED => {
                let (gid, commit) = codec::decode_finish_prepared(frame.payload)?;
                let result = node.finish_prepared(&gid, commit).await;
                send_done(&mut conn, session.in_transaction(), result).await?;
            }
            kind::LIST_PREPARED => {
                let result = node.prepared().await;
                let (kind, payload) = answer(result, session.in_transaction(), |list| {
                    (kind::PREPARED_LIST, codec::encode_prepared_list(&list))
                });
                conn.send(kind, payload).await?;
            }
            kind::TXN_OUTCOME => {
                let gid = codec::decode_gid(frame.payload)?;
                let result = node.txn_outcome(&gid).await;
                let (kind, payload) = answer(result, session.in_transaction(), |outcome| {
                    (kind::OUTCOME, codec::encode_outcome(outcome))
                });
                conn.send(kind, payload).await?;
            }
            kind::FORGET_TXN => {
                let gid = codec::decode_gid(frame.payload)?;
                let result = node.forget_txn(&gid).await.map(|()| Vec::new());
                send_done(&mut conn, session.in_transaction(), result).await?;
            }
            kind::STATUS => {
                let result = node.status().await;
                let (kind, payload) = answer(result, session.in_transaction(), |status| {
                    (kind::STATUS_REPORT, codec::encode_status(&status))
                });
                conn.send(kind, payload).await?;
            }
            kind::MAP => {
                let offer = codec::decode_map(frame.payload)?;
                let result = node.exchange_map(offer).await;
                let (kind, payload) = answer(result, session.in_transaction(), |map| {
                    (kind::MAP_REPORT, codec::encode_map(map.as_ref()))
                });
                conn.send(kind, payload).await?;
            }
            kind::REPLICATION => {
                let result = node.replication().await;
                let (kind, payload) = answer(result, session.in_transaction(), |rows| {
                    (kind::REPLICATION_REPORT, codec::encode_replication(&rows))
                });
                conn.send(kind, payload).await?;
            }
            // A cancel that arrives after its statement finished has nothing to stop.
            kind::CANCEL => {}
            other => {
                return Err(NetworkError::Protocol(format!(
                    "unknown node protocol frame kind {other:#04x}"
                )));
            }
        }
        metrics::request_served(kind_label, started);
    }
    Ok(())
}

/// The frame answering a request: the encoded result, or `ERROR` (counted by SQLSTATE) with
/// the session's transaction state.
fn answer<T>(
    result: Result<T, DbError>,
    in_transaction: bool,
    encode: impl FnOnce(T) -> (u8, Bytes),
) -> (u8, Bytes) {
    match result {
        Ok(value) => encode(value),
        Err(error) => {
            metrics::request_failed(&error);
            (kind::ERROR, codec::encode_error(&error, in_transaction))
        }
    }
}

/// Answers a request that returns only success, the session's transaction state and where
/// its commits landed.
async fn send_done(
    conn: &mut Connection,
    in_transaction: bool,
    result: Result<Vec<CommitPosition>, DbError>,
) -> Result<(), NetworkError> {
    let (kind, payload) = answer(result, in_transaction, |positions| {
        (kind::DONE, codec::encode_done(in_transaction, &positions))
    });
    conn.send(kind, payload).await
}

/// Runs one statement, streaming its replies; a CANCEL frame from the proxy stops it.
async fn execute(
    conn: &mut Connection,
    session: &mut dyn NodeSession,
    request: mycelium_protocol::Execute,
    node_id: &str,
) -> Result<(), NetworkError> {
    let mut stream = match session.execute(request).await {
        Ok(stream) => stream,
        Err(error) => {
            metrics::request_failed(&error);
            return conn
                .send(
                    kind::ERROR,
                    codec::encode_error(&error, session.in_transaction()),
                )
                .await;
        }
    };
    let mut queued = 0usize;
    loop {
        let reply = tokio::select! {
            reply = stream.recv() => reply,
            frame = conn.recv() => match frame? {
                Some(frame) if frame.kind == kind::CANCEL => {
                    drop(stream);
                    let error = DbError::new("57014", "canceling statement due to user request");
                    return conn.send(kind::ERROR, codec::encode_error(&error, session.in_transaction())).await;
                }
                Some(frame) => {
                    return Err(NetworkError::Protocol(format!(
                        "frame of kind {:#04x} arrived while a statement was running",
                        frame.kind
                    )));
                }
                None => return Err(NetworkError::Closed),
            },
        };
        match reply {
            Some(Ok(Reply::Columns(columns))) => {
                conn.feed(kind::COLUMNS, codec::encode_columns(&columns))
                    .await?;
            }
            Some(Ok(Reply::Rows(rows))) => {
                metrics::rows_sent(node_id, rows.len());
                queued += rows.bytes().len();
                conn.feed(kind::ROWS, codec::encode_rows(&rows)).await?;
                if queued >= FLUSH_BYTES {
                    conn.flush().await?;
                    queued = 0;
                }
            }
            Some(Ok(Reply::Complete { tag })) => {
                conn.feed(
                    kind::COMPLETE,
                    codec::encode_complete(
                        &tag,
                        session.in_transaction(),
                        &session.take_commit_positions(),
                    ),
                )
                .await?;
                return conn.flush().await;
            }
            Some(Err(error)) => {
                metrics::request_failed(&error);
                conn.feed(
                    kind::ERROR,
                    codec::encode_error(&error, session.in_transaction()),
                )
                .await?;
                return conn.flush().await;
            }
            None => {
                let error = DbError::new("XX000", "the node's backend stopped answering");
                conn.feed(
                    kind::ERROR,
                    codec::encode_error(&error, session.in_transaction()),
                )
                .await?;
                return conn.flush().await;
            }
        }
    }
}
