use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

use super::*;

/// Feeds `bytes` to a connection and reads messages until it ends or errors.
fn read_all(bytes: Vec<u8>, max_message: usize) -> Vec<Result<&'static str, String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            let mut client = client;
            let _ = client.write_all(&bytes).await;
            let _ = client.shutdown().await;
        });
        let mut conn = ClientConn::new(Box::new(server), BytesMut::new(), max_message);
        let mut seen = Vec::new();
        loop {
            match conn.read_message().await {
                Ok(Some(message)) => seen.push(Ok(kind_name(&message))),
                Ok(None) => break,
                Err(e) => {
                    seen.push(Err(e.to_string()));
                    break;
                }
            }
        }
        let _ = writer.await;
        seen
    })
}

fn kind_name(message: &PgWireFrontendMessage) -> &'static str {
    match message {
        PgWireFrontendMessage::Query(_) => "Query",
        PgWireFrontendMessage::Sync(_) => "Sync",
        _ => "other",
    }
}

fn query(text: &str) -> Vec<u8> {
    let mut bytes = vec![b'Q'];
    bytes.extend_from_slice(&((text.len() + 5) as u32).to_be_bytes());
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
    bytes
}

#[test]
fn whole_messages_are_decoded_in_order() {
    let mut bytes = query("select 1");
    bytes.extend_from_slice(&[b'S', 0, 0, 0, 4]);
    assert_eq!(read_all(bytes, 1024), vec![Ok("Query"), Ok("Sync")]);
}

#[test]
fn oversized_and_invalid_lengths_are_protocol_errors() {
    let huge = vec![b'Q', 0x40, 0, 0, 0];
    let seen = read_all(huge, 1024 * 1024);
    assert!(
        matches!(&seen[..], [Err(e)] if e.contains("exceeds the limit")),
        "{seen:?}"
    );
    let tiny = vec![b'Q', 0, 0, 0, 2];
    let seen = read_all(tiny, 1024);
    assert!(
        matches!(&seen[..], [Err(e)] if e.contains("invalid message length")),
        "{seen:?}"
    );
    let unknown = vec![b'!', 0, 0, 0, 4];
    let seen = read_all(unknown, 1024);
    assert!(
        matches!(&seen[..], [Err(e)] if e.contains("invalid message")),
        "{seen:?}"
    );
}

#[test]
fn truncated_message_is_an_error_not_a_hang() {
    let mut bytes = query("select 1");
    bytes.truncate(6);
    let seen = read_all(bytes, 1024);
    assert!(
        matches!(&seen[..], [Err(e)] if e.contains("mid-message")),
        "{seen:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever a client sends, the decoder returns messages or one error; it never panics.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let seen = read_all(bytes, 4096);
        prop_assert!(seen.iter().filter(|r| r.is_err()).count() <= 1);
    }

    /// Valid messages with arbitrary bodies after a valid one keep the first intact.
    #[test]
    fn garbage_after_a_valid_message_does_not_corrupt_it(
        tail in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        let mut bytes = query("select 1");
        bytes.extend_from_slice(&tail);
        let seen = read_all(bytes, 4096);
        prop_assert_eq!(seen.first().cloned(), Some(Ok("Query")));
    }
}

#[test]
fn sync_is_next_looks_past_flushes_only() {
    let sync_after = |buffered: &[u8]| {
        let (_c, s) = tokio::io::duplex(64);
        ClientConn::new(Box::new(s), BytesMut::from(buffered), 1024).sync_is_next()
    };
    let sync = [b'S', 0, 0, 0, 4];
    let flush = [b'H', 0, 0, 0, 4];
    let execute = [b'E', 0, 0, 0, 9, 0, 0, 0, 0, 0];
    assert!(sync_after(&sync));
    assert!(sync_after(&[flush, flush, sync].concat()));
    assert!(!sync_after(&[]));
    assert!(!sync_after(&[execute.as_slice(), &sync].concat()));
    assert!(!sync_after(&flush));
    // A partial header says nothing yet.
    assert!(!sync_after(&[b'S', 0, 0]));
}

/// A stream that counts the reads that returned bytes.
struct CountedReads {
    inner: tokio::io::DuplexStream,
    reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl AsyncRead for CountedReads {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        poll
    }
}

impl AsyncWrite for CountedReads {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[test]
fn messages_sent_together_are_taken_in_one_read() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stream = CountedReads {
            inner: server,
            reads: reads.clone(),
        };
        let mut conn = ClientConn::new(Box::new(stream), BytesMut::new(), 1024 * 1024);
        let mut bytes = query(&format!("select '{}'", "x".repeat(300)));
        bytes.extend_from_slice(&[b'S', 0, 0, 0, 4]);
        client.write_all(&bytes).await.expect("write");
        for expected in ["Query", "Sync"] {
            let message = conn.read_message().await.expect("read").expect("message");
            assert_eq!(kind_name(&message), expected);
        }
        assert_eq!(reads.load(std::sync::atomic::Ordering::Relaxed), 1);
    });
}
