//! `/metrics` over a minimal HTTP/1.1 server: Prometheus text format from the process-wide
//! registry. Anything else gets 404; a request that does not fit in 8 KiB is dropped.

use std::sync::LazyLock;

use prometheus::{Encoder, IntGauge, TextEncoder, register_int_gauge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const MAX_REQUEST: usize = 8 * 1024;

/// Worker threads of the process's async runtime (`--worker-threads`), read at each scrape.
static WORKER_THREADS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "mycelium_runtime_worker_threads",
        "Worker threads of the process's async runtime"
    )
    .expect("metric registers once")
});

pub async fn serve(listener: TcpListener, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream));
            }
            Err(e) => tracing::warn!(error = %e, "metrics endpoint: accept failed"),
        }
    }
}

async fn answer(mut stream: TcpStream) {
    let mut request = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
        if request.len() > MAX_REQUEST {
            return;
        }
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, content_type, body) =
        if line.starts_with(b"GET /metrics ") || line == b"GET /metrics" {
            let workers = tokio::runtime::Handle::current().metrics().num_workers();
            WORKER_THREADS.set(i64::try_from(workers).unwrap_or(i64::MAX));
            let mut body = Vec::new();
            match TextEncoder::new().encode(&prometheus::gather(), &mut body) {
                Ok(()) => ("200 OK", "text/plain; version=0.0.4", body),
                Err(e) => (
                    "500 Internal Server Error",
                    "text/plain",
                    e.to_string().into_bytes(),
                ),
            }
        } else {
            ("404 Not Found", "text/plain", b"try /metrics\n".to_vec())
        };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}
