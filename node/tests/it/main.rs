//! Integration tests of a node over a real SQLite file.
#![allow(clippy::unwrap_used)]

mod map;
mod scope;
