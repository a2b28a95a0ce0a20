//! The participant side of recovery: every node resolves its own prepared transactions whose
//! coordinator went quiet, from the decider's record. No proxy needs to survive for a
//! transaction to end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mycelium_config::TransactionConfig;
use mycelium_protocol::{NodeLink, TxnOutcome};
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// Resolves this node's transactions in doubt, every `cleanup_interval`.
pub struct Resolver {
    /// This node, as its own link (its prepared list, its records when it decided).
    local: Arc<dyn NodeLink>,
    /// The other nodes, by id.
    peers: HashMap<String, Arc<dyn NodeLink>>,
    config: TransactionConfig,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub committed: usize,
    pub aborted: usize,
    /// Still in doubt: the decider is unreachable or its transaction still runs.
    pub waiting: usize,
}

impl Resolver {
    pub fn new(
        local: Arc<dyn NodeLink>,
        peers: HashMap<String, Arc<dyn NodeLink>>,
        config: TransactionConfig,
    ) -> Resolver {
        Resolver {
            local,
            peers,
            config,
        }
    }

    /// Runs passes until `shutdown` fires.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.config.cleanup_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    self.resolve_once().await;
                }
            }
        }
    }

    /// One pass over the prepared transactions older than the recovery timeout.
    pub async fn resolve_once(&self) -> Resolved {
        let mut resolved = Resolved::default();
        let prepared = match self.local.prepared().await {
            Ok(prepared) => prepared,
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot list prepared transactions");
                return resolved;
            }
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let recovery_ms = self.config.recovery_timeout_ms as i64;
        let in_doubt: Vec<_> = prepared
            .into_iter()
            .filter(|p| now_ms.saturating_sub(p.prepared_at_ms) >= recovery_ms)
            .collect();
        metrics::IN_DOUBT.set(in_doubt.len() as i64);
        for txn in in_doubt {
            let decider = if txn.decider == self.local.node_id() {
                Some(&self.local)
            } else {
                self.peers.get(&txn.decider)
            };
            let Some(decider) = decider else {
                tracing::error!(gid = %txn.gid, decider = %txn.decider, "the decider of a prepared transaction is not a known node; it stays in doubt");
                resolved.waiting += 1;
                continue;
            };
            let outcome = match decider.txn_outcome(&txn.gid).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    tracing::warn!(gid = %txn.gid, decider = %txn.decider, error = %e.message, "cannot learn the outcome of a prepared transaction yet");
                    resolved.waiting += 1;
                    continue;
                }
            };
            let commit = match outcome {
                TxnOutcome::Committed => true,
                TxnOutcome::Aborted => false,
                TxnOutcome::Pending => {
                    resolved.waiting += 1;
                    continue;
                }
            };
            match self.local.finish_prepared(&txn.gid, commit).await {
                Ok(_) => {
                    let label = if commit { "committed" } else { "aborted" };
                    metrics::RECOVERED.with_label_values(&[label]).inc();
                    tracing::info!(gid = %txn.gid, decider = %txn.decider, outcome = label, "resolved a transaction in doubt");
                    if commit {
                        resolved.committed += 1;
                    } else {
                        resolved.aborted += 1;
                    }
                }
                Err(e) => {
                    tracing::error!(gid = %txn.gid, error = %e.message, "cannot finish a prepared transaction");
                    resolved.waiting += 1;
                }
            }
        }
        resolved
    }
}
