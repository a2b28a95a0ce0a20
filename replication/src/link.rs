//! A duplex channel of replication messages: a `network::Connection` in production, an
//! in-memory pair in tests.

use async_trait::async_trait;
use mycelium_network::Connection;

use crate::Error;
use crate::message::{ReplicationMessage, kind};

/// Sends and receives replication messages with one peer.
#[async_trait]
pub trait MessageLink: Send {
    /// The authenticated name of the peer (what acknowledgements are counted under).
    fn peer(&self) -> &str;

    async fn send(&mut self, message: &ReplicationMessage) -> Result<(), Error>;

    /// The next message; `None` when the peer closed the link. Must be cancel-safe: the state
    /// machines wait on it and on their own events at once.
    async fn recv(&mut self) -> Result<Option<ReplicationMessage>, Error>;
}

#[async_trait]
impl MessageLink for Connection {
    fn peer(&self) -> &str {
        &Connection::peer(self).name
    }

    async fn send(&mut self, message: &ReplicationMessage) -> Result<(), Error> {
        Connection::send(self, message.kind(), message.encode_payload()).await?;
        Ok(())
    }

    async fn recv(&mut self) -> Result<Option<ReplicationMessage>, Error> {
        let Some(frame) = Connection::recv(self).await? else {
            return Ok(None);
        };
        if !kind::is_replication(frame.kind) {
            return Err(Error::Protocol(format!(
                "frame of kind {:#04x} on a replication connection",
                frame.kind
            )));
        }
        Ok(Some(ReplicationMessage::from_frame(&frame)?))
    }
}
