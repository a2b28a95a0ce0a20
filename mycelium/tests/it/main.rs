//! End-to-end tests: the real `mycelium` binary driven by real clients.

mod clients;
mod harness;
mod wire;
