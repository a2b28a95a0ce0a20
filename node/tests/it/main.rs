//! Integration tests of a node over a real SQLite file.
#![allow(clippy::unwrap_used)]

mod local;
mod map;
mod scope;
