//! End-to-end tests: the real `mycelium` binary driven by real clients.

mod cli;
mod clients;
mod cluster;
mod create_as;
mod harness;
mod map;
mod metrics_lint;
mod pg_replication;
mod postgres;
mod privileges;
mod processes;
mod relay;
mod replicas;
mod replication;
mod settings;
mod time_zone;
mod two_phase;
mod wire;
