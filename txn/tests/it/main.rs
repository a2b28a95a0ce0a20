//! The coordinator and the resolver against real SQLite nodes (in process, no network):
//! outcomes on the nodes, the events subscribers see, and the limits.
#![allow(clippy::unwrap_used)]

mod coordinator;
mod records;
