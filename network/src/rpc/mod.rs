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
//!
//! `COMPLETE`, `ERROR` and `COPIED` carry whether the node session is inside a transaction
//! afterwards, so the proxy knows when the connection may go back to its pool. Payload layouts
//! are in `codec.rs`.

mod client;
mod codec;
mod metrics;
mod server;

pub use client::RemoteNode;
pub use server::serve_node;
