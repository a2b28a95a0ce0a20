//! Encoding and decoding WAL entries: a typical one-row insert of ten columns, and a
//! 100-row insert. Run with `cargo bench -p mycelium-replication --bench wal_codec`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mycelium_replication::{
    Change, Hlc, NodeId, RowChange, RowOp, ShardId, SqlValue, VersionVector, WalEntry,
    decode_entry, encode_entry,
};

/// An `orders` row: ids, amounts, a status, a timestamp, a note and a small blob.
fn row(id: i64) -> Vec<SqlValue> {
    vec![
        SqlValue::Integer(id),
        SqlValue::Integer(id % 1000),
        SqlValue::Integer(42),
        SqlValue::Real(19.99),
        SqlValue::Real(0.2),
        SqlValue::Text("shipped".to_owned()),
        SqlValue::Text("2026-11-26 10:15:00+00".to_owned()),
        SqlValue::Text(format!("order {id} for customer {}", id % 1000)),
        SqlValue::Null,
        SqlValue::Blob(vec![0xab; 16]),
    ]
}

fn entry(rows: i64) -> WalEntry {
    let columns: Arc<[String]> = [
        "id",
        "customer_id",
        "item_id",
        "price",
        "tax",
        "status",
        "created_at",
        "note",
        "coupon",
        "checksum",
    ]
    .iter()
    .map(|c| (*c).to_owned())
    .collect();
    let table: Arc<str> = Arc::from("orders");
    let applied: VersionVector = [(NodeId::new("n1"), 41), (NodeId::new("n2"), 7)]
        .into_iter()
        .collect();
    WalEntry::next_local(
        ShardId::new("orders", 3),
        &applied,
        2,
        Hlc::new(1_795_000_000_000, 3, NodeId::new("n1")),
        "4f1c2a9e-txn".to_owned(),
        (0..rows)
            .map(|id| {
                Change::Row(RowChange {
                    table: table.clone(),
                    columns: columns.clone(),
                    key: vec![SqlValue::Integer(id)],
                    op: RowOp::Insert,
                    old: None,
                    new: Some(row(id)),
                })
            })
            .collect(),
    )
}

fn codec(c: &mut Criterion) {
    for (name, rows) in [("1 row x 10 columns", 1), ("100 rows x 10 columns", 100)] {
        let entry = entry(rows);
        let bytes = encode_entry(&entry);
        let mut group = c.benchmark_group(format!("wal entry, {name} ({} bytes)", bytes.len()));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("encode", |b| b.iter(|| encode_entry(black_box(&entry))));
        group.bench_function("decode", |b| b.iter(|| decode_entry(black_box(&bytes))));
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
