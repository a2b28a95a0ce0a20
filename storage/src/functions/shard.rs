//! `__mycelium_shard(shards, ranges, key...)`: the shard of a row, which scoped statements
//! from the proxy compare with the shards a node was picked for.
//!
//! Storage does not know the shard hash (the router owns it); the node hands its function in
//! through [`crate::SqliteOptions::shard_function`], and it is registered on every connection.

use std::cell::RefCell;
use std::sync::Arc;

use mycelium_protocol::DbError;
use mycelium_replication::SqlValue;
use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::{DET, fail};

/// The SQL name of the shard function.
pub const SHARD_FUNCTION: &str = "__mycelium_shard";

/// Computes a row's shard from the call's arguments (the shard count, the range split points,
/// then the key values), or says why the arguments are wrong.
pub type ShardFunction = Arc<dyn Fn(&[SqlValue]) -> Result<i64, String> + Send + Sync>;

/// Registers `shard` as the deterministic, variadic `__mycelium_shard`.
pub(crate) fn register(conn: &Connection, shard: ShardFunction) -> rusqlite::Result<()> {
    // Called once per row a scoped scan reads: the argument list is reused between calls.
    let args = RefCell::new(Vec::<SqlValue>::new());
    conn.create_scalar_function(SHARD_FUNCTION, -1, DET, move |ctx| {
        let mut fresh = Vec::new();
        let mut reused = args.try_borrow_mut();
        let args = reused.as_deref_mut().unwrap_or(&mut fresh);
        args.clear();
        args.extend((0..ctx.len()).map(|i| value(ctx.get_raw(i))));
        shard(args).map_err(|message| fail(DbError::new("22023", message)))
    })
}

/// A SQLite value as the function takes it; text that is not UTF-8 (never written through
/// the Postgres front end) is a blob.
fn value(v: ValueRef<'_>) -> SqlValue {
    match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Integer(i),
        ValueRef::Real(f) => SqlValue::Real(f),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => SqlValue::Text(s.to_owned()),
            Err(_) => SqlValue::Blob(t.to_vec()),
        },
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}
