//! Micro-benchmarks of the proxy's per-statement work: planning a statement (cold, and from
//! the plan cache), routing by shard key, and encoding result rows.
//! Run with `cargo bench -p mycelium-bench --bench hot_paths`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mycelium_protocol::DataRowsBuilder;
use mycelium_router::{
    KeyValue, PlanCache, PolicyDefaults, PolicySource, TablePolicy, classify, key_hash, route,
};

const SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
const UPDATE: &str = "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2";

struct Sharded;

impl PolicySource for Sharded {
    fn policy(&self, table: &str) -> TablePolicy {
        let mut policy = TablePolicy::default_for(table, &PolicyDefaults::default());
        policy.shard_keys = vec!["aid".to_owned()];
        policy.shards = 16;
        policy
    }

    fn has_policy(&self, _: &str) -> bool {
        true
    }
}

fn planning(c: &mut Criterion) {
    c.bench_function("classify (cold)", |b| {
        b.iter(|| classify(black_box(SELECT)))
    });
    let cache = PlanCache::new(1000);
    let _ = cache.plan(SELECT);
    c.bench_function("plan cache hit", |b| {
        b.iter(|| cache.plan(black_box(SELECT)))
    });
    c.bench_function("route by shard key (parse + analyse)", |b| {
        b.iter(|| route(black_box(UPDATE), &Sharded))
    });
    c.bench_function("shard key hash", |b| {
        b.iter(|| key_hash(black_box(&[KeyValue::Int(123_456)])))
    });
}

fn row_encoding(c: &mut Criterion) {
    let values: [&[u8]; 4] = [b"42", b"1", b"-1234", b"filler text of a typical width"];
    let mut builder = DataRowsBuilder::with_capacity(64 * 1024);
    c.bench_function("encode one DataRow (4 fields)", |b| {
        b.iter(|| {
            builder.begin_row();
            for value in values {
                builder.push_value(black_box(value));
            }
            builder.end_row();
            if builder.byte_len() > 60 * 1024 {
                black_box(builder.take());
            }
        })
    });
}

criterion_group!(benches, planning, row_encoding);
criterion_main!(benches);
