//! The primary side of one shard: ships its log to each secondary, tracks what they
//! acknowledged, and holds commits until enough of them have (`synchronous_replicas`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::watch;

use crate::Error;
use crate::clock::HlcClock;
use crate::conflict::ConflictPolicy;
use crate::entry::{ShardId, WalEntry};
use crate::link::MessageLink;
use crate::log::{ReadResult, ShardLog};
use crate::message::{ReplicationMessage, Role};
use crate::order::ApplyQueue;
use crate::version::{NodeId, VersionVector};

/// Commit times kept for lag in seconds; older unacknowledged commits count from the oldest.
const COMMIT_TIMES_KEPT: usize = 100_000;

#[derive(Debug, Clone)]
pub struct PrimaryOptions {
    /// Entries read from the log per batch.
    pub batch_entries: usize,
    /// A batch is sent once its entries reach this many encoded bytes (frames are capped at
    /// 64 MiB by the network layer).
    pub batch_bytes: usize,
    pub heartbeat_interval: Duration,
    pub snapshot_rows_per_chunk: usize,
    /// How entries taken from a rejoining node are resolved against this node's rows.
    pub policy: ConflictPolicy,
    /// Entries from a rejoining node held while waiting for an earlier one.
    pub max_pending: usize,
}

impl Default for PrimaryOptions {
    fn default() -> Self {
        PrimaryOptions {
            batch_entries: 256,
            batch_bytes: 1024 * 1024,
            heartbeat_interval: Duration::from_secs(1),
            snapshot_rows_per_chunk: 1000,
            policy: ConflictPolicy::LastWriterWins,
            max_pending: 10_000,
        }
    }
}

/// How far one secondary is behind the primary.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerLag {
    pub peer: NodeId,
    pub acked: VersionVector,
    /// Entries the primary holds that the secondary has not acknowledged.
    pub entries: u64,
    /// Age of the oldest local commit the secondary has not acknowledged.
    pub seconds: f64,
}

/// The primary of one shard on this node, for one epoch. Promotion makes a new one.
pub struct Primary<L> {
    shard: ShardId,
    node: NodeId,
    epoch: u64,
    log: Arc<L>,
    clock: Arc<HlcClock>,
    options: PrimaryOptions,
    /// Bumped whenever the log grows (a local commit, or entries taken from a rejoining
    /// node); shipping tasks wake on it.
    log_grew: watch::Sender<u64>,
    /// What each secondary acknowledged, by authenticated peer name.
    acks: watch::Sender<BTreeMap<NodeId, VersionVector>>,
    commit_times: Mutex<VecDeque<(u64, Instant)>>,
    /// A newer epoch some peer reported: this node is no longer the shard's primary.
    fenced_by: AtomicU64,
}

impl<L> std::fmt::Debug for Primary<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Primary")
            .field("shard", &self.shard)
            .field("node", &self.node)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl<L: ShardLog> Primary<L> {
    pub fn new(
        shard: ShardId,
        epoch: u64,
        log: Arc<L>,
        clock: Arc<HlcClock>,
        options: PrimaryOptions,
    ) -> Primary<L> {
        Primary {
            shard,
            node: clock.node().clone(),
            epoch,
            log,
            clock,
            options,
            log_grew: watch::Sender::new(0),
            acks: watch::Sender::new(BTreeMap::new()),
            commit_times: Mutex::new(VecDeque::new()),
            fenced_by: AtomicU64::new(0),
        }
    }

    pub fn shard(&self) -> &ShardId {
        &self.shard
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Tells the shipping tasks that local entry `sequence` is committed (call it right after
    /// the backend transaction that wrote it commits).
    pub fn committed(&self, sequence: u64) {
        {
            let mut times = self
                .commit_times
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if times.len() == COMMIT_TIMES_KEPT {
                times.pop_front();
            }
            times.push_back((sequence, Instant::now()));
        }
        self.log_grew.send_modify(|n| *n += 1);
    }

    /// The newer epoch a peer reported, if any: this node must stop taking writes for the
    /// shard and rejoin as a secondary.
    pub fn fenced(&self) -> Option<u64> {
        match self.fenced_by.load(Ordering::Acquire) {
            0 => None,
            epoch => Some(epoch),
        }
    }

    fn fence(&self, epoch: u64) -> Error {
        self.fenced_by.fetch_max(epoch, Ordering::AcqRel);
        tracing::warn!(shard = %self.shard, ours = self.epoch, newer = epoch,
            "a peer reports a newer primary epoch: this node is fenced for the shard");
        Error::Fenced {
            shard: self.shard.clone(),
            epoch: self.epoch,
            newer: epoch,
        }
    }

    /// Waits until `replicas` secondaries have acknowledged local entry `sequence`; `0`
    /// returns at once (asynchronous replication).
    pub async fn wait_replicated(
        &self,
        sequence: u64,
        replicas: usize,
        timeout: Duration,
    ) -> Result<(), Error> {
        if replicas == 0 {
            return Ok(());
        }
        let node = self.node.clone();
        let count = move |acks: &BTreeMap<NodeId, VersionVector>| {
            acks.values().filter(|vv| vv.get(&node) >= sequence).count()
        };
        let mut rx = self.acks.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|acks| count(acks) >= replicas))
            .await
            .map(|r| r.is_ok());
        match reached {
            Ok(true) => Ok(()),
            // The sender lives in `self`, so the channel cannot close while we wait.
            Ok(false) => Err(Error::Closed),
            Err(_) => Err(Error::SyncTimeout {
                shard: self.shard.clone(),
                sequence,
                wanted: replicas,
                acked: count(&self.acks.borrow()),
                after: timeout,
            }),
        }
    }

    /// What each secondary has acknowledged, by peer.
    pub fn acked(&self) -> BTreeMap<NodeId, VersionVector> {
        self.acks.borrow().clone()
    }

    /// The position every known secondary has acknowledged (component-wise minimum): the
    /// log may be truncated through it without sending anyone to the snapshot path.
    pub fn acked_by_all(&self) -> VersionVector {
        let acks = self.acks.borrow();
        let mut peers = acks.values();
        let Some(first) = peers.next() else {
            return VersionVector::new();
        };
        let mut min = first.clone();
        for vv in peers {
            min = min
                .iter()
                .map(|(node, seq)| (node.clone(), seq.min(vv.get(node))))
                .collect();
        }
        min
    }

    /// Lag of every secondary that ever connected.
    pub async fn lag(&self) -> Result<Vec<PeerLag>, Error> {
        let applied = self.log.applied().await?;
        let now = Instant::now();
        let times = self
            .commit_times
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let acks = self.acked();
        Ok(acks
            .into_iter()
            .map(|(peer, acked)| {
                let own = acked.get(&self.node);
                let oldest_unacked = times.iter().find(|(seq, _)| *seq > own);
                let seconds = oldest_unacked
                    .map(|(_, at)| now.duration_since(*at).as_secs_f64())
                    .unwrap_or(0.0);
                PeerLag {
                    entries: acked.missing_from(&applied),
                    peer,
                    acked,
                    seconds,
                }
            })
            .collect())
    }

    async fn own_status(&self) -> Result<ReplicationMessage, Error> {
        Ok(ReplicationMessage::Status {
            shard: self.shard.clone(),
            role: Role::Primary,
            epoch: self.epoch,
            applied: self.log.applied().await?,
        })
    }

    fn record_ack(&self, peer: &NodeId, applied: &VersionVector) {
        self.acks.send_modify(|acks| {
            acks.entry(peer.clone()).or_default().merge(applied);
        });
    }

    /// Serves one secondary over `link` until it disconnects: the secondary's `Status` first,
    /// ours in answer, then its missing entries (or a snapshot when the log was truncated past
    /// its position) and every new commit as it happens, while taking its acknowledgements
    /// and requests. Returns `Ok` when the secondary closes the link.
    pub async fn serve<K: MessageLink>(&self, link: &mut K) -> Result<(), Error> {
        match link.recv().await? {
            Some(first) => self.serve_from(link, first).await,
            None => Ok(()),
        }
    }

    /// As [`Primary::serve`], when the caller already read the secondary's first message (a
    /// node's server reads it to find which shard's primary the connection is for).
    pub async fn serve_from<K: MessageLink>(
        &self,
        link: &mut K,
        first: ReplicationMessage,
    ) -> Result<(), Error> {
        let peer = NodeId::new(link.peer());
        let mut sent = match first {
            ReplicationMessage::Status {
                shard,
                role: Role::Secondary,
                epoch,
                applied,
            } if shard == self.shard => {
                if epoch > self.epoch {
                    // Our status tells the secondary why nothing will come; then we stop.
                    link.send(&self.own_status().await?).await?;
                    return Err(self.fence(epoch));
                }
                applied
            }
            other => {
                return Err(Error::Protocol(format!(
                    "expected a secondary's status for {}, got {other:?}",
                    self.shard
                )));
            }
        };
        link.send(&self.own_status().await?).await?;
        self.record_ack(&peer, &sent);
        tracing::info!(shard = %self.shard, %peer, from = ?sent, "shipping to secondary");

        // A node rejoining after a partition or a failover may hold entries this one lacks
        // (its writes as the old primary): take them, so they are merged as conflicts and
        // shipped on rather than lost.
        let primary_applied = self.log.applied().await?;
        let mut taken = ApplyQueue::new(primary_applied.clone(), self.options.max_pending);
        if !primary_applied.dominates(&sent) {
            tracing::info!(shard = %self.shard, %peer, theirs = ?sent, ours = ?primary_applied,
                "secondary holds entries this primary lacks: asking for them");
            link.send(&ReplicationMessage::RequestEntries {
                shard: self.shard.clone(),
                after: primary_applied,
            })
            .await?;
        }
        let mut committed = self.log_grew.subscribe();
        let mut heartbeat = tokio::time::interval(self.options.heartbeat_interval);
        // The log is read when it grew, when the secondary asked again, and once a heartbeat;
        // not after every acknowledgement (that read found nothing: a second read per commit).
        let mut behind = true;
        loop {
            if behind {
                // Marked seen before reading the log, so a commit landing during the read
                // wakes the wait below instead of being lost.
                committed.mark_unchanged();
                self.ship(link, &mut sent).await?;
                behind = false;
            }
            tokio::select! {
                changed = committed.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    behind = true;
                }
                message = link.recv() => match message? {
                    None => return Ok(()),
                    Some(ReplicationMessage::Ack { shard, applied }) if shard == self.shard => {
                        self.record_ack(&peer, &applied);
                    }
                    Some(ReplicationMessage::RequestEntries { shard, after })
                        if shard == self.shard =>
                    {
                        tracing::debug!(shard = %self.shard, %peer, ?after, "secondary asks again");
                        sent = after;
                        behind = true;
                    }
                    Some(ReplicationMessage::ResponseEntries { shard, entries })
                        if shard == self.shard =>
                    {
                        self.take_from_secondary(&mut taken, entries).await?;
                    }
                    Some(ReplicationMessage::Status { epoch, .. }) if epoch > self.epoch => {
                        return Err(self.fence(epoch));
                    }
                    Some(other) => {
                        return Err(Error::Protocol(format!(
                            "unexpected message from secondary {peer}: {other:?}"
                        )));
                    }
                },
                _ = heartbeat.tick() => {
                    link.send(&ReplicationMessage::Heartbeat {
                        applied: vec![(self.shard.clone(), self.log.applied().await?)],
                        hlc: self.clock.last(),
                    })
                    .await?;
                    // Once a heartbeat, the log is read whatever was announced: a commit
                    // whose announcement went astray still ships within the interval.
                    behind = true;
                }
            }
        }
    }

    /// Applies entries a rejoining secondary sent, in causal order, as a secondary would.
    async fn take_from_secondary(
        &self,
        queue: &mut ApplyQueue,
        entries: Vec<WalEntry>,
    ) -> Result<(), Error> {
        // Local commits since the last call count as applied too.
        queue.reset(self.log.applied().await?);
        for entry in entries {
            if entry.shard != self.shard {
                return Err(Error::Protocol(format!(
                    "entry of shard {} on the replication link of {}",
                    entry.shard, self.shard
                )));
            }
            queue.offer(entry);
        }
        let mut grew = false;
        while let Some(entry) = queue.pop_ready() {
            let outcome = self.log.apply(&entry, self.options.policy).await?;
            self.clock.update(&entry.hlc);
            queue.mark_applied(&entry);
            grew |= !outcome.duplicate;
        }
        if queue.has_gap() {
            tracing::warn!(shard = %self.shard, pending = queue.pending(),
                "entries from a rejoining secondary still wait for earlier ones");
        }
        if grew {
            self.log_grew.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    /// Sends everything the log holds beyond `sent`, advancing it.
    async fn ship<K: MessageLink>(
        &self,
        link: &mut K,
        sent: &mut VersionVector,
    ) -> Result<(), Error> {
        loop {
            match self
                .log
                .read_after(sent, self.options.batch_entries)
                .await?
            {
                ReadResult::Entries(entries) if entries.is_empty() => return Ok(()),
                ReadResult::Entries(entries) => {
                    // A short read took everything the log held: what commits after it wakes
                    // the caller (`log_grew`), so reading again to find nothing is not needed
                    // (it was half the primary's reads of its own log, one per commit).
                    let caught_up = entries.len() < self.options.batch_entries;
                    for batch in self.batches(entries) {
                        for e in &batch {
                            sent.observe(&e.origin, e.sequence);
                        }
                        let message = match <[WalEntry; 1]>::try_from(batch) {
                            Ok([entry]) => ReplicationMessage::WalEntry(entry),
                            Err(entries) => ReplicationMessage::ResponseEntries {
                                shard: self.shard.clone(),
                                entries,
                            },
                        };
                        link.send(&message).await?;
                    }
                    if caught_up {
                        return Ok(());
                    }
                }
                ReadResult::Truncated => {
                    *sent = self.send_snapshot(link).await?;
                }
            }
        }
    }

    /// Splits entries into batches of at most `batch_bytes` encoded bytes (an entry larger
    /// than that goes alone).
    fn batches(&self, entries: Vec<WalEntry>) -> Vec<Vec<WalEntry>> {
        let mut batches = Vec::new();
        let mut current = Vec::new();
        let mut bytes = 0;
        for entry in entries {
            let size = crate::codec::encoded_len_hint(&entry);
            if !current.is_empty() && bytes + size > self.options.batch_bytes {
                batches.push(std::mem::take(&mut current));
                bytes = 0;
            }
            bytes += size;
            current.push(entry);
        }
        if !current.is_empty() {
            batches.push(current);
        }
        batches
    }

    async fn send_snapshot<K: MessageLink>(&self, link: &mut K) -> Result<VersionVector, Error> {
        tracing::info!(shard = %self.shard, peer = link.peer(),
            "log truncated past the secondary's position: sending a snapshot");
        let mut chunks = self
            .log
            .snapshot(self.options.snapshot_rows_per_chunk)
            .await?;
        let mut applied = None;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            applied = Some(chunk.applied.clone());
            link.send(&ReplicationMessage::Snapshot(chunk)).await?;
        }
        applied.ok_or_else(|| Error::Protocol(format!("empty snapshot of {}", self.shard)))
    }
}
