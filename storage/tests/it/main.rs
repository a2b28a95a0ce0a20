//! Integration tests of the SQLite backend: real files in temporary directories, driven
//! through the `NodeSession` API as the node crate drives it.
#![allow(clippy::unwrap_used)]

mod aggregates;
mod alter_column;
mod arrays;
mod basic;
mod cancel;
mod catalog;
mod catalog_keys;
mod datetime;
mod errors;
mod pg_replication;
mod pgbench;
mod postgres;
mod postgres_results;
mod postgres_statements;
mod queries;
mod replication;
mod scripts;
mod session_zone;
mod shard_scope;
mod srf;
mod text_functions;
mod two_phase;
mod txn;
mod txn_records;
mod types;
mod util;
