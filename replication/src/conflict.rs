//! Per-row conflict detection and deterministic resolution.
//!
//! Every replicated row carries a [`RowClock`]: for each origin that wrote the row, the stamp
//! of its latest write (a deleted row keeps its clock as a tombstone, so an older concurrent
//! insert cannot bring it back). An incoming write from origin `o` with version vector `vv`:
//!
//! - is a **duplicate** when the row's head for `o` is at or past its sequence;
//! - is **concurrent** with the head of another origin `p` when that head's sequence is above
//!   `vv[p]`: the writer had not seen it. Entries are applied in causal order (see
//!   [`crate::order`]), so such a head cannot have seen the incoming write either;
//! - otherwise it causally follows every write the row has seen.
//!
//! The row's content is always the version of highest rank: HLC then node id
//! ([`ConflictPolicy::LastWriterWins`]), or epoch first ([`ConflictPolicy::PrimaryWins`]).
//! Both ranks grow along causality (a node's clock and epoch only move forward and take in
//! what it applied), so "higher rank wins" never lets an old write undo a newer one that saw
//! it, and the final row is the same on every replica whatever the delivery order.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::clock::Hlc;
use crate::entry::{RowChange, SqlValue, WalEntry};
use crate::version::NodeId;

/// Which of two concurrent writes of a row survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    /// The highest hybrid timestamp, then the highest node id.
    #[default]
    LastWriterWins,
    /// The write made under the highest primary epoch (the current primary's), then as
    /// last-writer-wins.
    PrimaryWins,
}

/// Who wrote one version of a row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowStamp {
    pub origin: NodeId,
    pub sequence: u64,
    pub epoch: u64,
    pub hlc: Hlc,
}

impl RowStamp {
    pub fn of(entry: &WalEntry) -> RowStamp {
        RowStamp {
            origin: entry.origin.clone(),
            sequence: entry.sequence,
            epoch: entry.epoch,
            hlc: entry.hlc.clone(),
        }
    }

    /// Total order of versions under `policy`; never `Equal` for two different writes, since
    /// the HLC includes the node and one node never issues the same timestamp twice.
    pub fn rank_cmp(&self, other: &RowStamp, policy: ConflictPolicy) -> Ordering {
        match policy {
            ConflictPolicy::LastWriterWins => self.hlc.cmp(&other.hlc),
            ConflictPolicy::PrimaryWins => self
                .epoch
                .cmp(&other.epoch)
                .then_with(|| self.hlc.cmp(&other.hlc)),
        }
    }
}

/// Replication metadata of one row: the latest write of each origin that wrote it, by origin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RowClock {
    heads: Vec<RowStamp>,
}

impl RowClock {
    /// A clock from stored heads (any order; one per origin, the latest kept).
    pub fn from_heads(heads: impl IntoIterator<Item = RowStamp>) -> RowClock {
        let mut clock = RowClock::default();
        for head in heads {
            clock.advance(head);
        }
        clock
    }

    pub fn heads(&self) -> &[RowStamp] {
        &self.heads
    }

    pub fn head(&self, origin: &NodeId) -> Option<&RowStamp> {
        self.heads.iter().find(|h| &h.origin == origin)
    }

    /// The version whose content the row holds: the head of highest rank.
    pub fn winner(&self, policy: ConflictPolicy) -> Option<&RowStamp> {
        self.heads.iter().max_by(|a, b| a.rank_cmp(b, policy))
    }

    /// Makes `stamp` the head of its origin unless that head is already newer.
    pub fn advance(&mut self, stamp: RowStamp) {
        match self.heads.binary_search_by(|h| h.origin.cmp(&stamp.origin)) {
            Ok(i) if self.heads[i].sequence < stamp.sequence => self.heads[i] = stamp,
            Ok(_) => {}
            Err(i) => self.heads.insert(i, stamp),
        }
    }
}

/// Two origins wrote one row concurrently: the record a backend keeps in its conflicts table.
///
/// A backend keeps one record per `(table, key, first.origin, second.origin)` and folds every
/// new detection into it with [`Conflict::merge`]. The record then holds, for each side, the
/// latest write of that origin that was concurrent with a write of the other, which is the
/// same on every replica whatever order the entries arrived in. The values of both versions
/// are in the WAL entries `(origin, sequence)` the stamps name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Conflict {
    pub table: Arc<str>,
    pub key: Vec<SqlValue>,
    /// The side whose origin sorts first.
    pub first: RowStamp,
    pub second: RowStamp,
    /// The origin whose version won.
    pub winner: NodeId,
}

impl Conflict {
    pub fn new(
        table: Arc<str>,
        key: Vec<SqlValue>,
        a: RowStamp,
        b: RowStamp,
        policy: ConflictPolicy,
    ) -> Conflict {
        let (first, second) = if a.origin <= b.origin { (a, b) } else { (b, a) };
        let winner = Conflict::pick(&first, &second, policy);
        Conflict {
            table,
            key,
            first,
            second,
            winner,
        }
    }

    fn pick(first: &RowStamp, second: &RowStamp, policy: ConflictPolicy) -> NodeId {
        match first.rank_cmp(second, policy) {
            Ordering::Greater => first.origin.clone(),
            _ => second.origin.clone(),
        }
    }

    /// Folds a later detection for the same row and pair of origins into this record: each
    /// side keeps the later of the two writes.
    pub fn merge(&mut self, other: &Conflict, policy: ConflictPolicy) {
        if other.first.sequence > self.first.sequence {
            self.first = other.first.clone();
        }
        if other.second.sequence > self.second.sequence {
            self.second = other.second.clone();
        }
        self.winner = Conflict::pick(&self.first, &self.second, policy);
    }
}

/// What to do with one incoming row change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowDecision {
    /// This origin's write (or a later one) was applied to the row already.
    Duplicate,
    /// Write the change (its `new` image, or delete the row) and store `clock`.
    Apply {
        clock: RowClock,
        conflicts: Vec<Conflict>,
    },
    /// A concurrent write of higher rank holds the row: keep the content, store `clock`.
    Keep {
        clock: RowClock,
        conflicts: Vec<Conflict>,
    },
}

/// Decides an incoming row change of `entry` against the row's stored clock (`None` when the
/// row was never written). Entries must arrive in causal order ([`crate::order::ApplyQueue`]).
pub fn resolve_row(
    current: Option<&RowClock>,
    entry: &WalEntry,
    change: &RowChange,
    policy: ConflictPolicy,
) -> RowDecision {
    let stamp = RowStamp::of(entry);
    let Some(current) = current else {
        return RowDecision::Apply {
            clock: RowClock::from_heads([stamp]),
            conflicts: Vec::new(),
        };
    };
    if current
        .head(&entry.origin)
        .is_some_and(|h| h.sequence >= entry.sequence)
    {
        return RowDecision::Duplicate;
    }
    let conflicts: Vec<Conflict> = current
        .heads()
        .iter()
        .filter(|h| h.origin != entry.origin && h.sequence > entry.version.get(&h.origin))
        .map(|h| {
            Conflict::new(
                change.table.clone(),
                change.key.clone(),
                stamp.clone(),
                h.clone(),
                policy,
            )
        })
        .collect();
    let wins = current
        .winner(policy)
        .is_none_or(|w| stamp.rank_cmp(w, policy) == Ordering::Greater);
    let mut clock = current.clone();
    clock.advance(stamp);
    if wins {
        RowDecision::Apply { clock, conflicts }
    } else {
        RowDecision::Keep { clock, conflicts }
    }
}
