//! The replication state machines' links over a node's mutual-TLS connections: the primary's
//! end counts what it ships, the secondary's end notices a silent primary and reads a
//! refusal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use mycelium_network::Connection;
use mycelium_network::rpc::refusal;
use mycelium_protocol::DbError;
use mycelium_replication::{Error, MessageLink, ReplicationMessage, kind};

use super::metrics;

/// What one primary shard counts of its shipping, over all its connections.
#[derive(Debug, Default)]
pub(crate) struct ShipCounters {
    pub entries: AtomicU64,
    pub snapshots: AtomicU64,
}

/// One secondary's connection as its primary serves it.
#[derive(Debug, Default)]
pub(crate) struct ServedPeer {
    /// A snapshot is being sent.
    pub snapshot: AtomicBool,
}

/// The primary's end of one secondary's connection.
pub(crate) struct ServingLink<'a> {
    pub conn: &'a mut Connection,
    pub node: &'a str,
    pub counters: &'a ShipCounters,
    pub served: &'a ServedPeer,
}

#[async_trait]
impl MessageLink for ServingLink<'_> {
    fn peer(&self) -> &str {
        &self.conn.peer().name
    }

    async fn send(&mut self, message: &ReplicationMessage) -> Result<(), Error> {
        MessageLink::send(&mut *self.conn, message).await?;
        let entries = match message {
            ReplicationMessage::WalEntry(_) => 1,
            ReplicationMessage::ResponseEntries { entries, .. } => entries.len() as u64,
            ReplicationMessage::Snapshot(chunk) => {
                self.served.snapshot.store(!chunk.last, Ordering::Release);
                if chunk.last {
                    self.counters.snapshots.fetch_add(1, Ordering::Relaxed);
                    metrics::SNAPSHOTS
                        .with_label_values(&[self.node, "sent"])
                        .inc();
                }
                0
            }
            _ => 0,
        };
        if entries > 0 {
            self.counters.entries.fetch_add(entries, Ordering::Relaxed);
            metrics::ENTRIES_SHIPPED
                .with_label_values(&[self.node])
                .inc_by(entries);
        }
        Ok(())
    }

    async fn recv(&mut self) -> Result<Option<ReplicationMessage>, Error> {
        MessageLink::recv(&mut *self.conn).await
    }
}

/// The secondary's end of its connection to the primary.
pub(crate) struct FollowerLink {
    conn: Connection,
    /// A primary heartbeats; silence this long means it is gone (or frozen).
    silence: Duration,
    /// Set while a snapshot is arriving.
    pub snapshot: Arc<AtomicBool>,
    /// The primary refused the connection (or stopped serving it) with this error.
    pub refused: Option<DbError>,
    /// Some message arrived from the primary.
    pub heard: bool,
}

impl FollowerLink {
    pub fn new(conn: Connection, silence: Duration, snapshot: Arc<AtomicBool>) -> FollowerLink {
        FollowerLink {
            conn,
            silence,
            snapshot,
            refused: None,
            heard: false,
        }
    }
}

#[async_trait]
impl MessageLink for FollowerLink {
    fn peer(&self) -> &str {
        &self.conn.peer().name
    }

    async fn send(&mut self, message: &ReplicationMessage) -> Result<(), Error> {
        MessageLink::send(&mut self.conn, message).await
    }

    async fn recv(&mut self) -> Result<Option<ReplicationMessage>, Error> {
        let frame = match tokio::time::timeout(self.silence, self.conn.recv()).await {
            Ok(frame) => frame?,
            Err(_) => {
                return Err(Error::Protocol(format!(
                    "the primary sent nothing for {:?}",
                    self.silence
                )));
            }
        };
        let Some(frame) = frame else {
            return Ok(None);
        };
        if !kind::is_replication(frame.kind) {
            return Err(match refusal(&frame) {
                Some(error) => {
                    let message = format!("the primary answered {}: {}", error.code, error.message);
                    self.refused = Some(error);
                    Error::Protocol(message)
                }
                None => Error::Protocol(format!(
                    "frame of kind {:#04x} on a replication connection",
                    frame.kind
                )),
            });
        }
        let message = ReplicationMessage::from_frame(&frame)?;
        self.heard = true;
        if let ReplicationMessage::Snapshot(chunk) = &message {
            self.snapshot.store(!chunk.last, Ordering::Release);
        }
        Ok(Some(message))
    }
}
