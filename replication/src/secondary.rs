//! The secondary side of one shard: applies the primary's entries in causal order,
//! idempotently, asks for what is missing, installs a snapshot when the primary's log no longer
//! reaches back to its position, and acknowledges what it applied.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::Error;
use crate::clock::{Hlc, HlcClock};
use crate::conflict::ConflictPolicy;
use crate::entry::{ShardId, WalEntry};
use crate::link::MessageLink;
use crate::log::{ReadResult, ShardLog};
use crate::message::{ReplicationMessage, Role, SnapshotChunk};
use crate::order::{ApplyQueue, Offer};
use crate::version::VersionVector;

/// Entries per `ResponseEntries` when a primary asks this node for entries.
const BATCH_FOR_PRIMARY: usize = 256;

#[derive(Debug, Clone)]
pub struct SecondaryOptions {
    pub policy: ConflictPolicy,
    /// Entries held while waiting for an earlier one; more are dropped and asked for again.
    pub max_pending: usize,
}

impl Default for SecondaryOptions {
    fn default() -> Self {
        SecondaryOptions {
            policy: ConflictPolicy::LastWriterWins,
            max_pending: 10_000,
        }
    }
}

/// Where a secondary stands, for `SHOW MYCELIUM REPLICATION`, metrics and read-your-writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecondaryStatus {
    pub applied: VersionVector,
    /// The primary's position from its last status or heartbeat.
    pub primary_applied: VersionVector,
    /// Entries the primary reported that this node has not applied.
    pub lag_entries: u64,
    /// Primary's clock at its last report minus the timestamp of the last entry applied here,
    /// when behind; 0 when caught up.
    pub lag_seconds: f64,
    pub entries_applied: u64,
    pub conflicts: u64,
    pub snapshots_loaded: u64,
}

/// A secondary of one shard on this node.
pub struct Secondary<L> {
    shard: ShardId,
    log: Arc<L>,
    clock: Arc<HlcClock>,
    options: SecondaryOptions,
    /// The highest primary epoch seen; an older primary is refused.
    epoch: AtomicU64,
    status: watch::Sender<SecondaryStatus>,
}

impl<L> std::fmt::Debug for Secondary<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secondary")
            .field("shard", &self.shard)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// What one session with a primary knows besides the queue.
struct Session {
    queue: ApplyQueue,
    /// A `RequestEntries` is out and nothing was applied since.
    requested: bool,
    last_applied_hlc: Option<Hlc>,
    primary_hlc: Option<Hlc>,
}

impl<L: ShardLog> Secondary<L> {
    pub fn new(
        shard: ShardId,
        epoch: u64,
        log: Arc<L>,
        clock: Arc<HlcClock>,
        options: SecondaryOptions,
    ) -> Secondary<L> {
        Secondary {
            shard,
            log,
            clock,
            options,
            epoch: AtomicU64::new(epoch),
            status: watch::Sender::new(SecondaryStatus::default()),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn status(&self) -> SecondaryStatus {
        self.status.borrow().clone()
    }

    /// Waits until this replica has applied everything in `version` (a session's last commit,
    /// for read-your-writes); `false` after `timeout`, when the read should go to the primary.
    pub async fn wait_applied(&self, version: &VersionVector, timeout: Duration) -> bool {
        let mut rx = self.status.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| s.applied.dominates(version)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// One session with the shard's primary over `link` (this side opened it): statuses are
    /// exchanged, then entries are applied as they arrive until the primary closes the link.
    /// A primary with an older epoch than this node knows is told so and refused.
    pub async fn run<K: MessageLink>(&self, link: &mut K) -> Result<(), Error> {
        let applied = self.log.applied().await?;
        self.status.send_modify(|s| s.applied = applied.clone());
        link.send(&self.own_status(applied.clone())).await?;
        match link.recv().await? {
            Some(ReplicationMessage::Status {
                shard,
                role: Role::Primary,
                epoch,
                applied: primary_applied,
            }) if shard == self.shard => {
                let ours = self.epoch.fetch_max(epoch, Ordering::AcqRel);
                if epoch < ours {
                    tracing::warn!(shard = %self.shard, peer = link.peer(), epoch, ours,
                        "refusing a primary with a stale epoch");
                    return Err(Error::StalePrimary {
                        shard: self.shard.clone(),
                        epoch,
                        ours,
                    });
                }
                self.report_primary(&applied, primary_applied, None, None);
            }
            Some(other) => {
                return Err(Error::Protocol(format!(
                    "expected the primary's status for {}, got {other:?}",
                    self.shard
                )));
            }
            None => return Ok(()),
        }
        let mut session = Session {
            queue: ApplyQueue::new(applied, self.options.max_pending),
            requested: false,
            last_applied_hlc: None,
            primary_hlc: None,
        };
        while let Some(message) = link.recv().await? {
            match message {
                ReplicationMessage::WalEntry(entry) => {
                    self.take(link, &mut session, vec![entry]).await?;
                }
                ReplicationMessage::ResponseEntries { shard, entries } if shard == self.shard => {
                    session.requested = false;
                    self.take(link, &mut session, entries).await?;
                }
                ReplicationMessage::Snapshot(chunk) if chunk.shard == self.shard => {
                    self.load_chunk(link, &mut session, chunk).await?;
                    // Entries that waited for the snapshot may be ready now.
                    self.take(link, &mut session, Vec::new()).await?;
                }
                ReplicationMessage::Heartbeat { applied, hlc } => {
                    if let Some((_, primary_applied)) =
                        applied.into_iter().find(|(shard, _)| shard == &self.shard)
                    {
                        session.primary_hlc = Some(hlc);
                        self.report_primary(
                            session.queue.applied(),
                            primary_applied,
                            session.last_applied_hlc.as_ref(),
                            session.primary_hlc.as_ref(),
                        );
                    }
                }
                ReplicationMessage::Status { epoch, .. } => {
                    self.epoch.fetch_max(epoch, Ordering::AcqRel);
                }
                ReplicationMessage::RequestEntries { shard, after } if shard == self.shard => {
                    self.send_own_entries(link, after).await?;
                }
                other => {
                    return Err(Error::Protocol(format!(
                        "unexpected message from primary {}: {other:?}",
                        link.peer()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Answers a primary that asks for entries this node holds and it lacks (this node's
    /// writes from before it was fenced, or entries only it received).
    async fn send_own_entries<K: MessageLink>(
        &self,
        link: &mut K,
        mut after: VersionVector,
    ) -> Result<(), Error> {
        loop {
            let entries = match self.log.read_after(&after, BATCH_FOR_PRIMARY).await? {
                ReadResult::Entries(entries) if entries.is_empty() => return Ok(()),
                ReadResult::Entries(entries) => entries,
                ReadResult::Truncated => {
                    return Err(Error::Protocol(format!(
                        "shard {}: the primary asks for entries after {after:?}, but this node \
                         truncated them; its unshipped writes are lost",
                        self.shard
                    )));
                }
            };
            for e in &entries {
                after.observe(&e.origin, e.sequence);
            }
            tracing::info!(shard = %self.shard, count = entries.len(),
                "sending the primary entries it lacks");
            link.send(&ReplicationMessage::ResponseEntries {
                shard: self.shard.clone(),
                entries,
            })
            .await?;
        }
    }

    fn own_status(&self, applied: VersionVector) -> ReplicationMessage {
        ReplicationMessage::Status {
            shard: self.shard.clone(),
            role: Role::Secondary,
            epoch: self.epoch(),
            applied,
        }
    }

    fn report_primary(
        &self,
        applied: &VersionVector,
        primary_applied: VersionVector,
        last_applied: Option<&Hlc>,
        primary_hlc: Option<&Hlc>,
    ) {
        self.status.send_modify(|s| {
            s.lag_entries = applied.missing_from(&primary_applied);
            s.lag_seconds = match (s.lag_entries, last_applied, primary_hlc) {
                (0, _, _) | (_, _, None) => 0.0,
                (_, None, Some(_)) => s.lag_seconds,
                (_, Some(ours), Some(theirs)) => {
                    theirs.physical_ms.saturating_sub(ours.physical_ms) as f64 / 1000.0
                }
            };
            s.primary_applied = primary_applied;
        });
    }

    /// Queues entries, applies every one that became ready, acknowledges, and asks for the
    /// missing ones when a gap remains.
    async fn take<K: MessageLink>(
        &self,
        link: &mut K,
        session: &mut Session,
        entries: Vec<WalEntry>,
    ) -> Result<(), Error> {
        for entry in entries {
            if entry.shard != self.shard {
                return Err(Error::Protocol(format!(
                    "entry of shard {} on the replication link of {}",
                    entry.shard, self.shard
                )));
            }
            if session.queue.offer(entry) == Offer::Dropped {
                tracing::debug!(shard = %self.shard, "apply queue full; the entry will be asked for again");
            }
        }
        let mut applied_any = false;
        while let Some(entry) = session.queue.pop_ready() {
            let outcome = self.log.apply(&entry, self.options.policy).await?;
            self.clock.update(&entry.hlc);
            session.queue.mark_applied(&entry);
            session.last_applied_hlc = Some(entry.hlc.clone());
            applied_any = true;
            let conflicts = outcome.conflicts.len() as u64;
            let applied = session.queue.applied().clone();
            self.status.send_modify(|s| {
                s.applied = applied;
                s.entries_applied += u64::from(!outcome.duplicate);
                s.conflicts += conflicts;
                s.lag_entries = s.applied.missing_from(&s.primary_applied);
            });
        }
        if applied_any {
            session.requested = false;
            link.send(&ReplicationMessage::Ack {
                shard: self.shard.clone(),
                applied: session.queue.applied().clone(),
            })
            .await?;
        }
        if session.queue.has_gap() && !session.requested {
            tracing::debug!(shard = %self.shard, after = ?session.queue.applied(),
                "gap in the entries received: asking for the missing ones");
            session.requested = true;
            link.send(&ReplicationMessage::RequestEntries {
                shard: self.shard.clone(),
                after: session.queue.applied().clone(),
            })
            .await?;
        }
        Ok(())
    }

    async fn load_chunk<K: MessageLink>(
        &self,
        link: &mut K,
        session: &mut Session,
        chunk: SnapshotChunk,
    ) -> Result<(), Error> {
        let last = chunk.last;
        let applied = chunk.applied.clone();
        let hlc = chunk.hlc.clone();
        if chunk.index == 0 {
            tracing::info!(shard = %self.shard, ?applied, "loading a snapshot from the primary");
        }
        self.log.load_snapshot_chunk(chunk).await?;
        if !last {
            return Ok(());
        }
        self.clock.update(&hlc);
        session.queue.reset(applied.clone());
        session.requested = false;
        session.last_applied_hlc = Some(hlc);
        self.status.send_modify(|s| {
            s.applied = applied.clone();
            s.snapshots_loaded += 1;
            s.lag_entries = s.applied.missing_from(&s.primary_applied);
        });
        link.send(&ReplicationMessage::Ack {
            shard: self.shard.clone(),
            applied,
        })
        .await
    }
}
