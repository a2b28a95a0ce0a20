//! Apply order on a replica.
//!
//! An entry `(origin o, sequence s, version vector vv)` is applied only when
//!
//! 1. `s == applied[o] + 1`: each origin's entries in sequence order, none skipped; and
//! 2. `applied[p] >= vv[p]` for every other origin `p`: everything its writer had seen is here.
//!
//! An entry with `s <= applied[o]` is a duplicate and is dropped. Any other entry waits in a
//! bounded buffer; while one waits and none can be applied there is a gap, which the replica
//! closes by asking for the entries after its applied vector (`RequestEntries`). Rule 2 makes
//! the apply order causal, which [`crate::conflict::resolve_row`] relies on to tell concurrent
//! writes from older ones.

use std::collections::BTreeMap;

use crate::entry::WalEntry;
use crate::version::{NodeId, VersionVector};

/// What happened to an offered entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Applied already (or already waiting): ignored.
    Duplicate,
    /// Waiting for its turn; [`ApplyQueue::pop_ready`] hands it out when it comes.
    Queued,
    /// The buffer is full; it will be asked for again once the gap closes.
    Dropped,
}

/// The entries a replica holds but cannot apply yet, and its applied vector.
#[derive(Debug, Clone)]
pub struct ApplyQueue {
    applied: VersionVector,
    pending: BTreeMap<(NodeId, u64), WalEntry>,
    max_pending: usize,
}

impl ApplyQueue {
    pub fn new(applied: VersionVector, max_pending: usize) -> ApplyQueue {
        ApplyQueue {
            applied,
            pending: BTreeMap::new(),
            max_pending,
        }
    }

    pub fn applied(&self) -> &VersionVector {
        &self.applied
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether entries wait while none can be applied: some entry before them is missing.
    pub fn has_gap(&self) -> bool {
        !self.pending.is_empty() && self.ready_key().is_none()
    }

    pub fn offer(&mut self, entry: WalEntry) -> Offer {
        if entry.sequence <= self.applied.get(&entry.origin) {
            return Offer::Duplicate;
        }
        let key = (entry.origin.clone(), entry.sequence);
        if self.pending.contains_key(&key) {
            return Offer::Duplicate;
        }
        if self.pending.len() >= self.max_pending {
            return Offer::Dropped;
        }
        self.pending.insert(key, entry);
        Offer::Queued
    }

    /// Whether `entry` may be applied now (rules 1 and 2).
    pub fn is_ready(&self, entry: &WalEntry) -> bool {
        entry.sequence == self.applied.get(&entry.origin) + 1
            && entry
                .version
                .iter()
                .all(|(node, seq)| node == &entry.origin || self.applied.get(node) >= seq)
    }

    fn ready_key(&self) -> Option<(NodeId, u64)> {
        let mut origin = self.pending.keys().next().map(|(o, _)| o.clone());
        while let Some(o) = origin {
            let next = (o.clone(), self.applied.get(&o) + 1);
            if let Some(entry) = self.pending.get(&next)
                && self.is_ready(entry)
            {
                return Some(next);
            }
            // On to the next origin that has entries waiting.
            origin = self
                .pending
                .range((o, u64::MAX)..)
                .find(|((node, _), _)| node != &next.0)
                .map(|((node, _), _)| node.clone());
        }
        None
    }

    /// Takes out an entry that may be applied now, if any. Apply it, then call
    /// [`ApplyQueue::mark_applied`] before asking for the next one.
    pub fn pop_ready(&mut self) -> Option<WalEntry> {
        let key = self.ready_key()?;
        self.pending.remove(&key)
    }

    /// Records that `entry` is applied and drops waiting entries it made duplicates.
    pub fn mark_applied(&mut self, entry: &WalEntry) {
        self.applied.observe(&entry.origin, entry.sequence);
        let applied = &self.applied;
        self.pending
            .retain(|(origin, seq), _| *seq > applied.get(origin));
    }

    /// Starts over from `applied` (after loading a snapshot); waiting entries it covers go.
    pub fn reset(&mut self, applied: VersionVector) {
        self.applied = applied;
        let applied = &self.applied;
        self.pending
            .retain(|(origin, seq), _| *seq > applied.get(origin));
    }
}
