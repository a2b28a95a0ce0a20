//! End-to-end tests: the real `mycelium` binary driven by real clients.

mod clients;
mod cluster;
mod harness;
mod wire;
