//! A secondary's connection to its shard's primary, kept up for as long as the map says so.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mycelium_network::{ConnectOptions, RetryPolicy, TlsIdentity, connect};
use mycelium_protocol::DbError;

use super::SecondaryShard;
use super::link::FollowerLink;

/// How one session with the primary ended.
enum Ended {
    /// Linked, then the link closed or failed; `heard` when the primary sent something.
    Dropped { error: Option<String>, heard: bool },
    /// The primary answered with an error instead of replicating.
    Refused(DbError),
    /// No connection.
    Unreachable(String),
}

async fn session(shard: &SecondaryShard, tls: &TlsIdentity, silence: Duration) -> Ended {
    let conn = match connect(
        shard.addr.as_str(),
        &shard.primary,
        tls,
        &ConnectOptions::default(),
    )
    .await
    {
        Ok(conn) => conn,
        Err(e) => return Ended::Unreachable(e.to_string()),
    };
    let mut link = FollowerLink::new(conn, silence, shard.snapshot.clone());
    shard.connected.store(true, Ordering::Release);
    let result = shard.secondary.run(&mut link).await;
    shard.connected.store(false, Ordering::Release);
    shard.snapshot.store(false, Ordering::Release);
    match (result, link.refused) {
        (_, Some(refusal)) if !link.heard => Ended::Refused(refusal),
        (Ok(()), _) => Ended::Dropped {
            error: None,
            heard: link.heard,
        },
        (Err(e), _) => Ended::Dropped {
            error: Some(e.to_string()),
            heard: link.heard,
        },
    }
}

/// Follows the shard's primary until the shard's `stop` fires: one session after another,
/// with exponential backoff and jitter between them (reset once a session got going).
pub(super) async fn follow(shard: Arc<SecondaryShard>, tls: TlsIdentity, silence: Duration) {
    let backoff = RetryPolicy {
        base: Duration::from_millis(50),
        max: Duration::from_secs(5),
        attempts: u32::MAX,
    };
    let mut attempt = 0u32;
    let mut quiet = false;
    let name = shard.log.shard().to_string();
    loop {
        let ended = tokio::select! {
            ended = session(&shard, &tls, silence) => ended,
            () = shard.stop.cancelled() => return,
        };
        let delay = match ended {
            Ended::Dropped { error, heard } => {
                if heard {
                    attempt = 0;
                    quiet = false;
                }
                match error {
                    Some(error) if !quiet => {
                        tracing::warn!(shard = %name, primary = %shard.primary, %error,
                            "replication link to the primary dropped; reconnecting");
                        quiet = true;
                    }
                    error => {
                        tracing::debug!(shard = %name, primary = %shard.primary, ?error,
                            "replication link to the primary ended; reconnecting");
                    }
                }
                backoff.delay(attempt)
            }
            Ended::Refused(refusal) => {
                tracing::debug!(shard = %name, primary = %shard.primary,
                    code = %refusal.code, error = %refusal.message,
                    "the primary refused the replication connection; retrying");
                backoff.delay(attempt)
            }
            Ended::Unreachable(error) => {
                if !quiet {
                    tracing::warn!(shard = %name, primary = %shard.primary, %error,
                        "cannot reach the shard's primary; retrying with backoff");
                    quiet = true;
                }
                backoff.delay(attempt)
            }
        };
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shard.stop.cancelled() => return,
        }
    }
}
