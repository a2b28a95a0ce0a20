//! The node protocol over the network: what a proxy sends a node and what comes back, as
//! frames. The messages are [`mycelium_protocol`]'s; this module only serializes them.
//!
//! One connection carries one node session. Requests and their answers, by frame kind:
//!
//! | request (proxy → node) | answer (node → proxy)                                     |
//! |------------------------|-----------------------------------------------------------|
//! | `DESCRIBE` 0x10        | `DESCRIPTION` 0x20 or `ERROR` 0x24                        |
//! | `EXECUTE` 0x11         | [`COLUMNS` 0x21], `ROWS` 0x22 ..., then `COMPLETE` 0x23 or `ERROR` |
//! | `COPY_IN` 0x12         | `COPIED` 0x25 or `ERROR`                                  |
//! | `CANCEL` 0x13          | (while an EXECUTE runs) it ends with `ERROR` 57014        |
//! | `PREPARE` 0x14         | `DONE` 0x26 or `ERROR` (two-phase commit, phase one)      |
//! | `COMMIT_DECISION` 0x15 | `DONE` or `ERROR` (commit with the transaction record)    |
//! | `FINISH_PREPARED` 0x16 | `DONE` or `ERROR` (phase two, on any connection)          |
//! | `LIST_PREPARED` 0x17   | `PREPARED_LIST` 0x27 or `ERROR`                           |
//! | `TXN_OUTCOME` 0x18     | `OUTCOME` 0x28 or `ERROR` (asked of a decider)            |
//! | `STATUS` 0x19          | `STATUS_REPORT` 0x29 or `ERROR` (backend, health, prepared, map epoch, shards held) |
//! | `MAP` 0x1A             | `MAP_REPORT` 0x2A or `ERROR` (offer a cluster map, get the node's) |
//! | `REPLICATION` 0x1B     | `REPLICATION_REPORT` 0x2B or `ERROR` (per shard copy and peer) |
//! | `FORGET_TXN` 0x1C      | `DONE` or `ERROR` (a decider deletes a finished commit record) |
//!
//! A connection whose first frame is of a kind the node's [`Handoff`] claims (replication,
//! `0x40..=0x4f`) is served by it instead; an error it ends with goes to the peer as `ERROR`.
//!
//! `COMPLETE`, `ERROR`, `COPIED` and `DONE` carry whether the node session is inside a
//! transaction afterwards, so the proxy knows when the connection may go back to its pool.
//! `EXECUTE` carries the statement's read fence, and `COMPLETE` and the `DONE` of
//! `COMMIT_DECISION` and `FINISH_PREPARED` the positions of their commits in replication
//! (read-your-writes on copies). `EXECUTE` and `COPY_IN` carry the transaction's lock order
//! (wait-die on SQLite nodes). Payload layouts are in `codec.rs`.

mod client;
mod codec;
pub mod metrics;
mod server;

pub use client::RemoteNode;
pub use server::{Handoff, refusal, serve_node};
