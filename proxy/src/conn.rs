//! A client connection after startup: whole frontend messages in, buffered backend bytes out.

use bytes::{Buf, BytesMut};
use pgwire::messages::{DecodeContext, PgWireFrontendMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::ProxyError;

/// Anything a client session runs over: a TCP stream or a TLS stream on it.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientStream for T {}

/// Output is flushed once this much is buffered, so large results stream instead of piling up.
const FLUSH_THRESHOLD: usize = 64 * 1024;

/// Every read offers the socket at least this much room, so a client's pipelined messages
/// (pgbench's Bind, Execute and Sync) arrive in one `recv` rather than one per message part.
const READ_ROOM: usize = 4 * 1024;

pub struct ClientConn {
    stream: Box<dyn ClientStream>,
    read: BytesMut,
    /// Bytes waiting to be written to the client.
    pub out: BytesMut,
    /// How many times `out` was written out: a buffered answer may still be taken back only
    /// while this has not moved.
    pub flushes: u64,
    max_message: usize,
    ctx: DecodeContext,
}

impl ClientConn {
    pub fn new(
        stream: Box<dyn ClientStream>,
        leftover: BytesMut,
        max_message: usize,
    ) -> ClientConn {
        let mut ctx = DecodeContext::default();
        ctx.awaiting_frontend_ssl = false;
        ctx.awaiting_frontend_startup = false;
        ClientConn {
            stream,
            read: leftover,
            out: BytesMut::with_capacity(8 * 1024),
            flushes: 0,
            max_message,
            ctx,
        }
    }

    /// The next whole message, or `None` when the client closed the connection.
    pub async fn read_message(&mut self) -> Result<Option<PgWireFrontendMessage>, ProxyError> {
        loop {
            if self.read.len() >= 5 {
                let len =
                    u32::from_be_bytes([self.read[1], self.read[2], self.read[3], self.read[4]])
                        as usize;
                if len < 4 {
                    return Err(ProxyError::Protocol(format!(
                        "invalid message length {len}"
                    )));
                }
                if len > self.max_message {
                    return Err(ProxyError::Protocol(format!(
                        "message of {len} bytes exceeds the limit of {} bytes",
                        self.max_message
                    )));
                }
                if self.read.len() > len {
                    let kind = self.read[0];
                    return match PgWireFrontendMessage::decode(&mut self.read, &self.ctx) {
                        Ok(Some(message)) => Ok(Some(message)),
                        Ok(None) => Err(ProxyError::Protocol(format!(
                            "incomplete message of type '{}'",
                            char::from(kind)
                        ))),
                        Err(e) => Err(ProxyError::Protocol(format!(
                            "invalid message of type '{}': {e}",
                            char::from(kind).escape_default()
                        ))),
                    };
                }
                self.read.reserve(len + 1 - self.read.len());
            }
            self.flush().await?;
            if self.read.capacity() - self.read.len() < READ_ROOM {
                self.read.reserve(READ_ROOM);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                if self.read.has_remaining() {
                    return Err(ProxyError::Protocol(
                        "connection closed mid-message".to_owned(),
                    ));
                }
                return Ok(None);
            }
        }
    }

    /// Whether the next message already received is a Sync (past any Flush).
    pub fn sync_is_next(&self) -> bool {
        let mut rest = &self.read[..];
        while let [kind, a, b, c, d, ..] = rest {
            let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            match kind {
                b'S' => return true,
                b'H' if len == 4 => rest = &rest[5..],
                _ => return false,
            }
        }
        false
    }

    /// Writes the output buffer when it has grown past the threshold.
    pub async fn flush_if_full(&mut self) -> Result<(), ProxyError> {
        if self.out.len() >= FLUSH_THRESHOLD {
            self.flush().await?;
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<(), ProxyError> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
            self.flushes += 1;
            self.stream.flush().await?;
        }
        Ok(())
    }

    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests;
