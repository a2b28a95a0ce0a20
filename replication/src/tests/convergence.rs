//! Random interleavings of concurrent writes on random replicas, delivered in random orders
//! with duplicates and losses, converge to the same rows and the same conflict records on
//! every replica, and those are the ones the whole history defines.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::executor::block_on;
use proptest::prelude::*;

use super::mem::{ConflictKey, MemLog, put};
use crate::order::ApplyQueue;
use crate::{
    Change, ConflictPolicy, HlcClock, NodeId, ReadResult, RowStamp, ShardId, ShardLog, SqlValue,
    WalEntry,
};

struct Replica {
    log: MemLog,
    clock: HlcClock,
    wall: Arc<AtomicU64>,
    queue: ApplyQueue,
    /// The node's own promotion epoch, raised to the highest it applied (a node that saw a
    /// newer primary's writes never writes under an older epoch).
    epoch: u64,
    inbox: Vec<WalEntry>,
}

impl Replica {
    fn receive(&mut self, entry: WalEntry, policy: ConflictPolicy) {
        self.queue.offer(entry);
        while let Some(e) = self.queue.pop_ready() {
            let applied = block_on(self.log.apply(&e, policy));
            assert!(applied.is_ok(), "in-memory apply failed: {applied:?}");
            self.clock.update(&e.hlc);
            self.epoch = self.epoch.max(e.epoch);
            self.queue.mark_applied(&e);
        }
    }
}

#[derive(Debug, Clone)]
enum Action {
    /// Node writes these keys (`None` deletes) in one transaction.
    Write {
        node: usize,
        keys: Vec<(i64, Option<u8>)>,
    },
    Deliver {
        node: usize,
        pick: usize,
        duplicate: bool,
    },
    Lose {
        node: usize,
        pick: usize,
    },
    /// Wall clock of a node jumps, backwards too.
    Tick {
        node: usize,
        delta: i64,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (any::<usize>(), prop::collection::vec((0i64..3, prop::option::weighted(0.8, any::<u8>())), 1..3))
            .prop_map(|(node, keys)| Action::Write { node, keys }),
        4 => (any::<usize>(), any::<usize>(), prop::bool::weighted(0.2))
            .prop_map(|(node, pick, duplicate)| Action::Deliver { node, pick, duplicate }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(node, pick)| Action::Lose { node, pick }),
        1 => (any::<usize>(), -50i64..50).prop_map(|(node, delta)| Action::Tick { node, delta }),
    ]
}

fn concurrent(a: &WalEntry, b: &WalEntry) -> bool {
    b.version.get(&a.origin) < a.sequence && a.version.get(&b.origin) < b.sequence
}

fn rows_of(entry: &WalEntry) -> impl Iterator<Item = (&Vec<SqlValue>, &Option<Vec<SqlValue>>)> {
    entry.changes.iter().filter_map(|c| match c {
        Change::Row(row) => Some((&row.key, &row.new)),
        Change::Ddl(_) => None,
    })
}

/// Key to content (`None`: deleted).
type Rows = HashMap<Vec<SqlValue>, Option<Vec<SqlValue>>>;
/// `(key, first origin, second origin)` to `(first sequence, second sequence, winner)`.
type ConflictTable = BTreeMap<(i64, String, String), (u64, u64, String)>;
type Write<'a> = (&'a WalEntry, &'a Option<Vec<SqlValue>>);

/// What the whole history says a replica must end with: per key the content of the
/// highest-ranked write, and per key and pair of origins the latest write of each side that
/// was concurrent with a write of the other.
fn oracle(history: &[WalEntry], policy: ConflictPolicy) -> (Rows, ConflictTable) {
    let mut writes: HashMap<Vec<SqlValue>, Vec<Write<'_>>> = HashMap::new();
    for e in history {
        for (key, new) in rows_of(e) {
            writes.entry(key.clone()).or_default().push((e, new));
        }
    }
    let mut rows = HashMap::new();
    let mut conflicts = BTreeMap::new();
    for (key, ws) in &writes {
        let best = ws
            .iter()
            .max_by(|a, b| RowStamp::of(a.0).rank_cmp(&RowStamp::of(b.0), policy));
        if let Some((_, new)) = best {
            rows.insert(key.clone(), (*new).clone());
        }
        let SqlValue::Integer(k) = key[0] else {
            unreachable!("test keys are integers")
        };
        for (a, _) in ws {
            for (b, _) in ws {
                if a.origin < b.origin && concurrent(a, b) {
                    let slot = conflicts
                        .entry((k, a.origin.to_string(), b.origin.to_string()))
                        .or_insert((0, 0, String::new()));
                    slot.0 = slot.0.max(a.sequence);
                    slot.1 = slot.1.max(b.sequence);
                }
            }
        }
    }
    for ((k, first, second), slot) in conflicts.iter_mut() {
        let side = |origin: &str, seq: u64| {
            history
                .iter()
                .find(|e| e.origin.as_str() == origin && e.sequence == seq)
                .map(RowStamp::of)
        };
        let (Some(a), Some(b)) = (side(first, slot.0), side(second, slot.1)) else {
            unreachable!("conflict sides come from the history (key {k})")
        };
        slot.2 = if a.rank_cmp(&b, policy).is_gt() {
            first.clone()
        } else {
            second.clone()
        };
    }
    (rows, conflicts)
}

fn conflict_table(log: &MemLog) -> ConflictTable {
    let conflicts: HashMap<ConflictKey, crate::Conflict> = log.data().conflicts;
    conflicts
        .values()
        .map(|c| {
            let SqlValue::Integer(k) = c.key[0] else {
                unreachable!("test keys are integers")
            };
            (
                (k, c.first.origin.to_string(), c.second.origin.to_string()),
                (c.first.sequence, c.second.sequence, c.winner.to_string()),
            )
        })
        .collect()
}

fn run(
    nodes: usize,
    epochs: &[u64],
    policy: ConflictPolicy,
    actions: Vec<Action>,
) -> Result<(), TestCaseError> {
    let shard = ShardId::new("t", 0);
    let mut replicas: Vec<Replica> = (0..nodes)
        .map(|i| {
            let name = format!("n{}", i + 1);
            let wall = Arc::new(AtomicU64::new(1_000));
            let read = wall.clone();
            Replica {
                log: MemLog::new(shard.clone(), &name),
                clock: HlcClock::with_wall_clock(NodeId::new(&name), move || {
                    read.load(Ordering::SeqCst)
                }),
                wall,
                queue: ApplyQueue::new(Default::default(), 64),
                epoch: epochs[i % epochs.len()],
                inbox: Vec::new(),
            }
        })
        .collect();
    let mut history: Vec<WalEntry> = Vec::new();

    for action in actions {
        match action {
            Action::Write { node, keys } => {
                let i = node % nodes;
                // One change per row per entry, as a changeset consolidates them.
                let keys: BTreeMap<i64, Option<u8>> = keys.into_iter().collect();
                let changes = keys
                    .into_iter()
                    .map(|(k, v)| put(k, v.map(|v| format!("n{}:{v}", i + 1)).as_deref()))
                    .collect();
                let r = &mut replicas[i];
                let entry = r.log.commit_local(&r.clock, r.epoch, changes);
                r.queue.mark_applied(&entry);
                for (j, other) in replicas.iter_mut().enumerate() {
                    if j != i {
                        other.inbox.push(entry.clone());
                    }
                }
                history.push(entry);
            }
            Action::Deliver {
                node,
                pick,
                duplicate,
            } => {
                let r = &mut replicas[node % nodes];
                if !r.inbox.is_empty() {
                    let at = pick % r.inbox.len();
                    let e = if duplicate {
                        r.inbox[at].clone()
                    } else {
                        r.inbox.remove(at)
                    };
                    r.receive(e, policy);
                }
            }
            Action::Lose { node, pick } => {
                let r = &mut replicas[node % nodes];
                if !r.inbox.is_empty() {
                    let at = pick % r.inbox.len();
                    r.inbox.remove(at);
                }
            }
            Action::Tick { node, delta } => {
                let r = &replicas[node % nodes];
                let now = r.wall.load(Ordering::SeqCst);
                r.wall
                    .store(now.saturating_add_signed(delta), Ordering::SeqCst);
            }
        }
    }

    // Heal: deliver what is in flight, then catch up as RequestEntries would, from every peer.
    for r in &mut replicas {
        for e in std::mem::take(&mut r.inbox) {
            r.receive(e, policy);
        }
    }
    for _round in 0..nodes {
        for src in 0..nodes {
            for dst in 0..nodes {
                if src == dst {
                    continue;
                }
                let after = replicas[dst].queue.applied().clone();
                let read = block_on(replicas[src].log.read_after(&after, usize::MAX));
                let Ok(ReadResult::Entries(entries)) = read else {
                    return Err(TestCaseError::fail(format!("read_after failed: {read:?}")));
                };
                for e in entries {
                    replicas[dst].receive(e, policy);
                }
            }
        }
    }

    let (rows, conflicts) = oracle(&history, policy);
    let reference = replicas[0].log.data();
    for r in &replicas {
        let data = r.log.data();
        prop_assert_eq!(
            data.applied.len(),
            nodes.min(
                history
                    .iter()
                    .map(|e| e.origin.clone())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
            )
        );
        prop_assert_eq!(&data.applied, &reference.applied, "applied vectors differ");
        prop_assert_eq!(
            &data.rows,
            &reference.rows,
            "rows or row clocks differ on {}",
            r.log.node
        );
        prop_assert_eq!(
            &data.conflicts,
            &reference.conflicts,
            "conflicts differ on {}",
            r.log.node
        );
        let content: Rows = data
            .rows
            .iter()
            .map(|((_, key), row)| (key.clone(), row.values.clone()))
            .collect();
        prop_assert_eq!(&content, &rows, "rows are not the highest-ranked writes");
        prop_assert_eq!(
            conflict_table(&r.log),
            conflicts.clone(),
            "conflict records are not the history's"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn replicas_converge_and_record_the_same_conflicts(
        nodes in 2usize..=4,
        epochs in prop::collection::vec(1u64..4, 1..4),
        primary_wins in any::<bool>(),
        actions in prop::collection::vec(action(), 1..80),
    ) {
        let policy = if primary_wins { ConflictPolicy::PrimaryWins } else { ConflictPolicy::LastWriterWins };
        run(nodes, &epochs, policy, actions)?;
    }
}

#[test]
fn a_partition_with_several_writes_per_side_records_one_conflict_per_row() {
    let actions = vec![
        // n1 and n2 each write key 0 three times without hearing from each other.
        Action::Write {
            node: 0,
            keys: vec![(0, Some(1))],
        },
        Action::Write {
            node: 0,
            keys: vec![(0, Some(2))],
        },
        Action::Write {
            node: 0,
            keys: vec![(0, Some(3))],
        },
        Action::Tick { node: 1, delta: 10 },
        Action::Write {
            node: 1,
            keys: vec![(0, Some(4))],
        },
        Action::Write {
            node: 1,
            keys: vec![(0, Some(5))],
        },
        Action::Write {
            node: 1,
            keys: vec![(0, Some(6))],
        },
    ];
    let outcome = run(2, &[1], ConflictPolicy::LastWriterWins, actions);
    assert!(outcome.is_ok(), "{outcome:?}");
}
