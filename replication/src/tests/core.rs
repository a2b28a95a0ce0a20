//! Clocks, version vectors, row resolution and apply order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;

use super::mem::put;
use crate::order::{ApplyQueue, Offer};
use crate::{
    Causality, Conflict, ConflictPolicy, Hlc, HlcClock, NodeId, RowClock, RowDecision, RowStamp,
    ShardId, VersionVector, WalEntry, resolve_row,
};

fn n(name: &str) -> NodeId {
    NodeId::new(name)
}

fn vv(items: &[(&str, u64)]) -> VersionVector {
    items.iter().map(|(node, seq)| (n(node), *seq)).collect()
}

/// A clock whose wall time the test sets.
fn manual_clock(node: &str) -> (HlcClock, Arc<AtomicU64>) {
    let wall = Arc::new(AtomicU64::new(1_000));
    let read = wall.clone();
    (
        HlcClock::with_wall_clock(n(node), move || read.load(Ordering::SeqCst)),
        wall,
    )
}

#[test]
fn hlc_stays_monotonic_when_the_wall_clock_goes_back() {
    let (clock, wall) = manual_clock("n1");
    let a = clock.now();
    wall.store(500, Ordering::SeqCst);
    let b = clock.now();
    let c = clock.now();
    assert!(a < b && b < c, "{a:?} {b:?} {c:?}");
    assert_eq!((b.physical_ms, b.logical), (1_000, 1));
    wall.store(2_000, Ordering::SeqCst);
    assert_eq!(clock.now(), Hlc::new(2_000, 0, n("n1")));
}

#[test]
fn hlc_update_moves_past_the_remote_timestamp() {
    let (clock, _wall) = manual_clock("n1");
    let remote = Hlc::new(5_000, 7, n("n2"));
    let after = clock.update(&remote);
    assert_eq!((after.physical_ms, after.logical), (5_000, 8));
    assert!(clock.now() > remote);
    // A remote counter at its maximum rolls over into the next millisecond.
    let at_max = clock.update(&Hlc::new(9_000, u32::MAX, n("n2")));
    assert_eq!((at_max.physical_ms, at_max.logical), (9_001, 0));
}

proptest! {
    #[test]
    fn hlc_is_strictly_increasing_under_any_wall_clock(
        events in prop::collection::vec((0u64..10_000, prop::option::of((0u64..20_000, 0u32..5))), 1..60)
    ) {
        let (clock, wall) = manual_clock("n1");
        let mut last = clock.last();
        for (time, remote) in events {
            wall.store(time, Ordering::SeqCst);
            let next = match remote {
                Some((p, l)) => {
                    let remote = Hlc::new(p, l, n("n2"));
                    let next = clock.update(&remote);
                    prop_assert!(next > remote);
                    next
                }
                None => clock.now(),
            };
            prop_assert!(next > last, "{:?} after {:?}", next, last);
            last = next;
        }
    }
}

#[test]
fn version_vectors_compare_merge_and_dominate() {
    let check = |a: &[(&str, u64)], b: &[(&str, u64)], expected: Causality| {
        assert_eq!(vv(a).compare(&vv(b)), expected, "{a:?} vs {b:?}");
    };
    check(&[], &[], Causality::Equal);
    check(&[("n1", 2)], &[("n1", 2), ("n2", 0)], Causality::Equal);
    check(&[("n1", 1)], &[("n1", 2)], Causality::Before);
    check(&[("n1", 2), ("n2", 1)], &[("n1", 2)], Causality::After);
    check(&[("n1", 2)], &[("n2", 1)], Causality::Concurrent);

    let mut merged = vv(&[("n1", 3), ("n2", 1)]);
    merged.merge(&vv(&[("n2", 4), ("n3", 1)]));
    assert_eq!(merged, vv(&[("n1", 3), ("n2", 4), ("n3", 1)]));
    assert!(merged.dominates(&vv(&[("n1", 3)])));
    assert!(!vv(&[("n1", 3)]).dominates(&merged));
    assert_eq!(vv(&[("n1", 1)]).missing_from(&merged), 2 + 4 + 1);
}

fn entry(
    origin: &str,
    sequence: u64,
    seen: &[(&str, u64)],
    hlc: (u64, u32),
    epoch: u64,
) -> WalEntry {
    let mut version = vv(seen);
    version.set(n(origin), sequence);
    WalEntry {
        shard: ShardId::new("t", 0),
        origin: n(origin),
        sequence,
        epoch,
        version,
        hlc: Hlc::new(hlc.0, hlc.1, n(origin)),
        txn_id: String::new(),
        changes: vec![put(1, Some("x"))],
    }
}

fn decide(clock: Option<&RowClock>, e: &WalEntry, policy: ConflictPolicy) -> RowDecision {
    let crate::Change::Row(row) = &e.changes[0] else {
        unreachable!("test entries hold one row change")
    };
    resolve_row(clock, e, row, policy)
}

fn clock_after(decision: &RowDecision) -> RowClock {
    match decision {
        RowDecision::Apply { clock, .. } | RowDecision::Keep { clock, .. } => clock.clone(),
        RowDecision::Duplicate => panic!("expected a new clock, got a duplicate"),
    }
}

#[test]
fn resolve_row_applies_skips_and_detects_conflicts() {
    let lww = ConflictPolicy::LastWriterWins;
    let a1 = entry("n1", 1, &[], (100, 0), 1);
    let first = decide(None, &a1, lww);
    assert!(matches!(&first, RowDecision::Apply { conflicts, .. } if conflicts.is_empty()));
    let clock = clock_after(&first);

    // The same entry again, or an older one of the same origin: nothing to do.
    assert_eq!(decide(Some(&clock), &a1, lww), RowDecision::Duplicate);

    // n2 saw n1's write: it simply follows.
    let b1 = entry("n2", 1, &[("n1", 1)], (200, 0), 1);
    let follows = decide(Some(&clock), &b1, lww);
    assert!(matches!(&follows, RowDecision::Apply { conflicts, .. } if conflicts.is_empty()));

    // n3 did not see n1's write and has an older clock: concurrent, and it loses.
    let c1 = entry("n3", 1, &[], (50, 0), 1);
    match decide(Some(&clock), &c1, lww) {
        RowDecision::Keep { conflicts, clock } => {
            assert_eq!(conflicts.len(), 1);
            assert_eq!(conflicts[0].winner, n("n1"));
            assert_eq!(
                (&conflicts[0].first.origin, &conflicts[0].second.origin),
                (&n("n1"), &n("n3"))
            );
            assert_eq!(clock.heads().len(), 2);
            assert_eq!(clock.winner(lww).map(|w| w.origin.clone()), Some(n("n1")));
        }
        other => panic!("expected Keep, got {other:?}"),
    }

    // Under primary-wins the higher epoch beats the later clock.
    let c2 = entry("n3", 1, &[], (50, 0), 2);
    match decide(Some(&clock), &c2, ConflictPolicy::PrimaryWins) {
        RowDecision::Apply { conflicts, .. } => assert_eq!(conflicts[0].winner, n("n3")),
        other => panic!("expected Apply, got {other:?}"),
    }
}

#[test]
fn conflict_records_merge_to_the_latest_write_of_each_side() {
    let lww = ConflictPolicy::LastWriterWins;
    let stamp = |origin: &str, sequence: u64, t: u64| RowStamp {
        origin: n(origin),
        sequence,
        epoch: 1,
        hlc: Hlc::new(t, 0, n(origin)),
    };
    let key = vec![crate::SqlValue::Integer(1)];
    let mut record = Conflict::new(
        Arc::from("t"),
        key.clone(),
        stamp("n2", 1, 300),
        stamp("n1", 1, 100),
        lww,
    );
    assert_eq!(
        (record.first.origin.as_str(), record.winner.as_str()),
        ("n1", "n2")
    );
    record.merge(
        &Conflict::new(
            Arc::from("t"),
            key,
            stamp("n1", 4, 400),
            stamp("n2", 1, 300),
            lww,
        ),
        lww,
    );
    assert_eq!((record.first.sequence, record.second.sequence), (4, 1));
    assert_eq!(record.winner, n("n1"));
}

#[test]
fn apply_queue_orders_by_origin_sequence_and_dependencies() {
    let mut queue = ApplyQueue::new(VersionVector::new(), 3);
    let a1 = entry("n1", 1, &[], (1, 0), 1);
    let a2 = entry("n1", 2, &[], (2, 0), 1);
    let b1 = entry("n2", 1, &[("n1", 2)], (3, 0), 1);

    // n2's entry depends on n1's second: it waits.
    assert_eq!(queue.offer(b1.clone()), Offer::Queued);
    assert!(queue.has_gap());
    assert_eq!(queue.offer(a2.clone()), Offer::Queued);
    assert_eq!(queue.offer(a2.clone()), Offer::Duplicate);
    assert!(queue.pop_ready().is_none());
    assert_eq!(queue.offer(a1.clone()), Offer::Queued);
    // Full: a fourth entry is dropped, to be asked for again.
    assert_eq!(queue.offer(entry("n3", 1, &[], (4, 0), 1)), Offer::Dropped);

    let mut order = Vec::new();
    while let Some(e) = queue.pop_ready() {
        queue.mark_applied(&e);
        order.push((e.origin.to_string(), e.sequence));
    }
    assert_eq!(
        order,
        [
            ("n1".to_owned(), 1),
            ("n1".to_owned(), 2),
            ("n2".to_owned(), 1)
        ]
    );
    assert!(!queue.has_gap());
    assert_eq!(queue.offer(a1), Offer::Duplicate);
    assert_eq!(queue.applied(), &vv(&[("n1", 2), ("n2", 1)]));
}
