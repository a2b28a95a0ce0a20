//! Garbage collection of a decider's transaction records.
//!
//! A decider keeps one record per distributed transaction it decided (`committed`), and one
//! per transaction a participant asked about before any decision (`aborted`, presumed
//! abort). The coordinator deletes a committed record as soon as every participant
//! acknowledged COMMIT PREPARED ([`NodeLink::forget_txn`]); whatever that misses (a proxy
//! that died, a participant that did not answer, abort records) is left to this sweep.
//!
//! # Why deleting is safe
//!
//! A record is read by two requests only: a participant's `txn_outcome`, which it sends only
//! while it holds the transaction prepared, and the coordinator's `commit_decision`.
//!
//! - *Participants.* The sweep deletes a record only when every node answered its list of
//!   prepared transactions and none holds the gid (a SQLite node lists its redo store too,
//!   so a vote that outlives its finish still counts). No node can hold it again: a
//!   committed transaction had all its votes before the decision, and a participant that
//!   finished it never prepares the same gid again. A participant the sweep cannot reach,
//!   or does not know, keeps the record (for an abort record, which names no participants,
//!   any node unreachable keeps it). Without a record, a later question is answered
//!   "aborted", which is right for an abort record and never asked for a committed one.
//! - *Late decisions.* Deleting an abort record could let a slow `commit_decision` of the
//!   same gid commit after its participants rolled back. The deciding transaction began
//!   before the participants prepared, hence before the abort record was written, so the
//!   backend refuses the decision of every transaction that began before the newest abort
//!   record it deleted (see `Backend::delete_txn_records` in storage). Records are only
//!   swept after `record_retention_seconds`, so that fence only reaches transactions open
//!   at least that long.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use mycelium_config::TransactionConfig;
use mycelium_protocol::{DbError, NodeLink, TxnRecord};
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// Records one pass looks at, at most (the oldest first).
const BATCH: usize = 1_000;

/// The sweep never waits longer than this between passes.
const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// This node's own transaction records.
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Up to `limit` records written more than `older_than` ago, oldest first.
    async fn txn_records(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> Result<Vec<TxnRecord>, DbError>;

    /// Deletes `records`, fencing off late decisions of deleted abort records.
    async fn delete_txn_records(&self, records: &[TxnRecord]) -> Result<u64, DbError>;
}

/// Deletes this node's transaction records that no participant can ask about any more.
pub struct Sweeper {
    records: Arc<dyn RecordStore>,
    /// This node, as its own link (it may hold prepared transactions of its records' gids
    /// only as a participant of another decider, but it is asked like any other node).
    local: Arc<dyn NodeLink>,
    /// The other nodes, by id.
    peers: HashMap<String, Arc<dyn NodeLink>>,
    config: TransactionConfig,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub deleted: u64,
    /// Old enough, but kept: a node still holds the gid prepared, or could not be asked.
    pub kept: usize,
}

impl Sweeper {
    pub fn new(
        records: Arc<dyn RecordStore>,
        local: Arc<dyn NodeLink>,
        peers: HashMap<String, Arc<dyn NodeLink>>,
        config: TransactionConfig,
    ) -> Sweeper {
        Sweeper {
            records,
            local,
            peers,
            config,
        }
    }

    fn retention(&self) -> Duration {
        Duration::from_secs(self.config.record_retention_seconds)
    }

    /// A quarter of the retention, between `cleanup_interval_ms` and a minute.
    fn interval(&self) -> Duration {
        let floor = Duration::from_millis(self.config.cleanup_interval_ms);
        (self.retention() / 4).min(MAX_INTERVAL).max(floor)
    }

    /// Runs passes until `shutdown` fires.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    self.sweep_once().await;
                }
            }
        }
    }

    /// One pass: the oldest records past the retention that no node holds prepared go.
    pub async fn sweep_once(&self) -> Swept {
        let old = match self.records.txn_records(self.retention(), BATCH).await {
            Ok(old) => old,
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot list transaction records");
                return Swept::default();
            }
        };
        let (held, unreachable) = if old.is_empty() {
            (HashSet::new(), HashSet::new())
        } else {
            self.held_everywhere().await
        };
        let (deletable, kept): (Vec<TxnRecord>, Vec<TxnRecord>) = old
            .into_iter()
            .partition(|record| self.deletable(record, &held, &unreachable));
        for record in &kept {
            tracing::debug!(gid = %record.gid, committed = record.committed, "transaction record kept: a participant holds it prepared or cannot be asked");
        }
        // Called with nothing to delete too: the backend drops its other bookkeeping.
        let deleted = match self.records.delete_txn_records(&deletable).await {
            Ok(deleted) => deleted,
            Err(e) => {
                tracing::warn!(error = %e.message, records = deletable.len(), "cannot delete transaction records");
                0
            }
        };
        metrics::RECORDS_DELETED
            .with_label_values(&["sweep"])
            .inc_by(deleted);
        if deleted > 0 {
            tracing::debug!(deleted, kept = kept.len(), "swept transaction records");
        }
        Swept {
            deleted,
            kept: kept.len(),
        }
    }

    fn deletable(
        &self,
        record: &TxnRecord,
        held: &HashSet<String>,
        unreachable: &HashSet<String>,
    ) -> bool {
        if held.contains(&record.gid) {
            return false;
        }
        if !record.committed {
            return unreachable.is_empty();
        }
        record.participants.iter().all(|node| {
            !unreachable.contains(node)
                && (node == self.local.node_id() || self.peers.contains_key(node))
        })
    }

    /// The gids any node holds prepared, and the nodes that did not say.
    async fn held_everywhere(&self) -> (HashSet<String>, HashSet<String>) {
        let timeout = Duration::from_millis(self.config.commit_timeout_ms);
        let nodes = std::iter::once(&self.local).chain(self.peers.values());
        let answers = join_all(nodes.map(|link| async move {
            let answer = tokio::time::timeout(timeout, link.prepared()).await;
            (link.node_id().to_owned(), answer)
        }))
        .await;
        let mut held = HashSet::new();
        let mut unreachable = HashSet::new();
        for (node, answer) in answers {
            match answer {
                Ok(Ok(prepared)) => held.extend(prepared.into_iter().map(|p| p.gid)),
                Ok(Err(e)) => {
                    tracing::debug!(node = %node, error = %e.message, "cannot list a node's prepared transactions; its records stay");
                    unreachable.insert(node);
                }
                Err(_) => {
                    tracing::debug!(node = %node, "a node did not list its prepared transactions in time; its records stay");
                    unreachable.insert(node);
                }
            }
        }
        (held, unreachable)
    }
}
