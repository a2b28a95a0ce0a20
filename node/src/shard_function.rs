//! The `__mycelium_shard` function of SQLite nodes: the router's shard function over the
//! values SQLite holds, so that statements the proxy scoped to some shards
//! (`mycelium_router::scope_statement`) see exactly those shards' rows.

use std::sync::Arc;

use mycelium_replication::SqlValue;
use mycelium_router::{KeyValue, shard_function};
use mycelium_storage::ShardFunction;

/// `__mycelium_shard(shards, ranges, key...)` for [`mycelium_storage::SqliteOptions`].
///
/// Key values become the router's [`KeyValue`]s: integers as integers, text by the router's
/// rules for literals (decimal integers and UUIDs recognized), reals by
/// [`KeyValue::from_real`], blobs by [`KeyValue::from_bytes`] (16 bytes are a UUID) and NULL
/// by [`KeyValue::null`] (the shard a NULL key parameter is routed to).
pub fn sqlite_shard_function() -> ShardFunction {
    Arc::new(|args: &[SqlValue]| {
        let [shards, ranges, key @ ..] = args else {
            return Err(format!(
                "{}(shards, ranges, key...) needs at least 2 arguments, got {}",
                mycelium_router::SHARD_FUNCTION,
                args.len()
            ));
        };
        let SqlValue::Integer(shards) = shards else {
            return Err(format!(
                "{}: the shard count must be an integer",
                mycelium_router::SHARD_FUNCTION
            ));
        };
        let ranges = match ranges {
            SqlValue::Text(ranges) => ranges.as_str(),
            SqlValue::Null => "",
            _ => {
                return Err(format!(
                    "{}: the range split points must be text",
                    mycelium_router::SHARD_FUNCTION
                ));
            }
        };
        // Nearly every shard key is one column: no allocation per row for it.
        let shard = match key {
            [one] => shard_function(*shards, ranges, std::slice::from_ref(&key_value(one))),
            _ => shard_function(
                *shards,
                ranges,
                &key.iter().map(key_value).collect::<Vec<_>>(),
            ),
        };
        shard.map(i64::from).map_err(|e| e.to_string())
    })
}

pub(crate) fn key_value(value: &SqlValue) -> KeyValue {
    match value {
        SqlValue::Null => KeyValue::null(),
        SqlValue::Integer(i) => KeyValue::Int(*i),
        SqlValue::Real(r) => KeyValue::from_real(*r),
        SqlValue::Text(text) => KeyValue::from_text(text),
        SqlValue::Blob(bytes) => KeyValue::from_bytes(bytes),
    }
}
