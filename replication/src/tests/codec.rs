use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;

use crate::{
    Change, Conflict, ConflictPolicy, DecodeError, Hlc, NodeId, ReplicationMessage, Role,
    RowChange, RowClock, RowOp, RowStamp, ShardId, SnapshotChunk, SnapshotItem, SnapshotRow,
    SqlValue, VersionVector, WalEntry, decode_entry, encode_entry, kind,
};

fn node() -> impl Strategy<Value = NodeId> {
    prop_oneof![
        prop::sample::select(vec!["n1", "n2", "n3"]).prop_map(NodeId::new),
        "[a-zé0-9-]{1,12}".prop_map(|s| NodeId::new(&s)),
    ]
}

fn vv() -> impl Strategy<Value = VersionVector> {
    vec((node(), 1..u64::MAX), 0..4).prop_map(|items| items.into_iter().collect())
}

fn hlc_of(node: NodeId) -> impl Strategy<Value = Hlc> {
    (any::<u64>(), any::<u32>()).prop_map(move |(p, l)| Hlc::new(p, l, node.clone()))
}

fn hlc() -> impl Strategy<Value = Hlc> {
    node().prop_flat_map(hlc_of)
}

fn shard() -> impl Strategy<Value = ShardId> {
    ("[a-z_]{1,10}", any::<u32>()).prop_map(|(t, s)| ShardId { table: t, shard: s })
}

fn value() -> impl Strategy<Value = SqlValue> {
    prop_oneof![
        Just(SqlValue::Null),
        any::<i64>().prop_map(SqlValue::Integer),
        any::<f64>().prop_map(SqlValue::Real),
        ".{0,20}".prop_map(SqlValue::Text),
        vec(any::<u8>(), 0..20).prop_map(SqlValue::Blob),
    ]
}

fn row_change() -> impl Strategy<Value = RowChange> {
    (prop::sample::select(vec!["users", "orders"]), 1..4usize).prop_flat_map(|(table, width)| {
        let columns: Arc<[String]> = (0..width).map(|i| format!("c{i}")).collect();
        (
            vec(value(), 1..3),
            prop::sample::select(vec![RowOp::Insert, RowOp::Update, RowOp::Delete]),
            prop::option::of(vec(value(), width)),
            vec(value(), width),
        )
            .prop_map(move |(key, op, old, new)| RowChange {
                table: Arc::from(table),
                columns: columns.clone(),
                key,
                op,
                old,
                new: (op != RowOp::Delete).then_some(new),
            })
    })
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        1 => ".{0,30}".prop_map(Change::Ddl),
        4 => row_change().prop_map(Change::Row),
    ]
}

fn entry() -> impl Strategy<Value = WalEntry> {
    (
        node(),
        1..u64::MAX,
        any::<u64>(),
        vv(),
        shard(),
        ".{0,12}",
        vec(change(), 0..6),
    )
        .prop_flat_map(
            |(origin, sequence, epoch, mut version, shard, txn_id, changes)| {
                version.set(origin.clone(), sequence);
                hlc_of(origin.clone()).prop_map(move |hlc| WalEntry {
                    shard: shard.clone(),
                    origin: origin.clone(),
                    sequence,
                    epoch,
                    version: version.clone(),
                    hlc,
                    txn_id: txn_id.clone(),
                    changes: changes.clone(),
                })
            },
        )
}

fn stamp() -> impl Strategy<Value = RowStamp> {
    (node(), any::<u64>(), any::<u64>(), hlc()).prop_map(|(origin, sequence, epoch, hlc)| {
        RowStamp {
            origin,
            sequence,
            epoch,
            hlc,
        }
    })
}

fn conflict() -> impl Strategy<Value = Conflict> {
    (stamp(), stamp(), vec(value(), 1..3))
        .prop_filter("two origins", |(a, b, _)| a.origin != b.origin)
        .prop_map(|(a, b, key)| {
            Conflict::new(
                Arc::from("users"),
                key,
                a,
                b,
                ConflictPolicy::LastWriterWins,
            )
        })
}

fn snapshot_item() -> impl Strategy<Value = SnapshotItem> {
    prop_oneof![
        ".{0,20}".prop_map(SnapshotItem::Ddl),
        (row_change(), vec(stamp(), 0..3)).prop_map(|(row, heads)| {
            SnapshotItem::Row(SnapshotRow {
                table: row.table,
                columns: row.columns,
                key: row.key,
                values: row.new,
                clock: RowClock::from_heads(heads),
            })
        }),
        conflict().prop_map(SnapshotItem::Conflict),
    ]
}

fn message() -> impl Strategy<Value = ReplicationMessage> {
    prop_oneof![
        entry().prop_map(ReplicationMessage::WalEntry),
        (shard(), vv())
            .prop_map(|(shard, after)| ReplicationMessage::RequestEntries { shard, after }),
        (shard(), vec(entry(), 0..3))
            .prop_map(|(shard, entries)| ReplicationMessage::ResponseEntries { shard, entries }),
        (
            shard(),
            any::<u32>(),
            any::<bool>(),
            vv(),
            hlc(),
            vec(snapshot_item(), 0..4)
        )
            .prop_map(|(shard, index, last, applied, hlc, items)| {
                ReplicationMessage::Snapshot(SnapshotChunk {
                    shard,
                    index,
                    last,
                    applied,
                    hlc,
                    items,
                })
            }),
        (shard(), vv()).prop_map(|(shard, applied)| ReplicationMessage::Ack { shard, applied }),
        (shard(), any::<bool>(), any::<u64>(), vv()).prop_map(|(shard, p, epoch, applied)| {
            ReplicationMessage::Status {
                shard,
                role: if p { Role::Primary } else { Role::Secondary },
                epoch,
                applied,
            }
        }),
        (vec((shard(), vv()), 0..3), hlc())
            .prop_map(|(applied, hlc)| ReplicationMessage::Heartbeat { applied, hlc }),
    ]
}

proptest! {
    #[test]
    fn entries_round_trip(entry in entry()) {
        let bytes = encode_entry(&entry);
        prop_assert_eq!(decode_entry(&bytes), Ok(entry));
    }

    #[test]
    fn messages_round_trip(message in message()) {
        let frame = message.to_frame();
        prop_assert!(kind::is_replication(frame.kind));
        prop_assert_eq!(ReplicationMessage::from_frame(&frame), Ok(message));
    }

    #[test]
    fn random_bytes_never_panic(kind in 0x40u8..=0x47, bytes in vec(any::<u8>(), 0..512)) {
        // Errors are the expected outcome; the property is that decoding returns at all.
        let _ = ReplicationMessage::decode_payload(kind, &bytes);
        let _ = decode_entry(&bytes);
    }

    #[test]
    fn every_truncation_of_a_valid_message_is_an_error(message in message()) {
        let payload = message.encode_payload();
        for len in 0..payload.len() {
            prop_assert!(ReplicationMessage::decode_payload(message.kind(), &payload[..len]).is_err());
        }
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        message in message(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut payload = message.encode_payload().to_vec();
        if !payload.is_empty() {
            for (at, byte) in flips {
                let i = at.index(payload.len());
                payload[i] = byte;
            }
        }
        let _ = ReplicationMessage::decode_payload(message.kind(), &payload);
    }
}

fn sample_entry() -> WalEntry {
    let origin = NodeId::new("n1");
    WalEntry::next_local(
        ShardId::new("users", 3),
        &VersionVector::new(),
        1,
        Hlc::new(1000, 0, origin),
        "t1".into(),
        vec![Change::Row(RowChange {
            table: Arc::from("users"),
            columns: Arc::from(vec!["id".to_owned()]),
            key: vec![SqlValue::Integer(7)],
            op: RowOp::Insert,
            old: None,
            new: Some(vec![SqlValue::Integer(7)]),
        })],
    )
}

#[test]
fn hostile_counts_are_refused_before_allocating() {
    // A shard, then a version vector claiming four billion components.
    let mut payload = Vec::new();
    payload.extend_from_slice(&1u32.to_be_bytes());
    payload.push(b't');
    payload.extend_from_slice(&0u32.to_be_bytes());
    payload.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        ReplicationMessage::decode_payload(kind::ACK, &payload),
        Err(DecodeError::Truncated("version vector"))
    );
}

#[test]
fn inconsistent_entries_are_refused() {
    let good = sample_entry();
    let check = |entry: WalEntry, expect_ok: bool| {
        let decoded = decode_entry(&encode_entry(&entry));
        assert_eq!(decoded.is_ok(), expect_ok, "{entry:?} -> {decoded:?}");
    };
    check(good.clone(), true);

    let mut wrong_vv = good.clone();
    wrong_vv.version.set(NodeId::new("n1"), 5);
    check(wrong_vv, false);

    let mut wrong_clock = good.clone();
    wrong_clock.hlc.node = NodeId::new("n2");
    check(wrong_clock, false);

    let mut delete_with_image = good.clone();
    if let Some(Change::Row(row)) = delete_with_image.changes.first_mut() {
        row.op = RowOp::Delete;
    }
    check(delete_with_image, false);

    let mut wide_image = good;
    if let Some(Change::Row(row)) = wide_image.changes.first_mut() {
        row.new = Some(vec![SqlValue::Null, SqlValue::Null]);
    }
    check(wide_image, false);
}

#[test]
fn trailing_bytes_and_unknown_kinds_are_errors() {
    let mut bytes = encode_entry(&sample_entry());
    bytes.push(0);
    assert_eq!(decode_entry(&bytes), Err(DecodeError::Trailing(1)));
    assert_eq!(
        ReplicationMessage::decode_payload(0x4f, &[]),
        Err(DecodeError::UnknownKind(0x4f))
    );
}

#[test]
fn column_names_are_written_once_per_entry() {
    let one = sample_entry();
    let mut many = one.clone();
    let row = one.changes[0].clone();
    many.changes = vec![row; 100];
    let per_row = (encode_entry(&many).len() - encode_entry(&one).len()) / 99;
    // shape index (4) + tag and op (2) + key (4 + 9) + no old (1) + new (1 + 4 + 9)
    assert_eq!(per_row, 34);
}
