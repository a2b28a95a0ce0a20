//! Crash points for tests of crash recovery.
//!
//! `MYCELIUM_FAILPOINTS=name[,name...]` makes the process abort (as abruptly as a SIGKILL: no
//! destructors, no flush) the first time it reaches a named point. Names are
//! `<component>.<moment>`, e.g. `coordinator.after_decision`; every point is listed in
//! ARCHITECTURE.md. Unset, a check costs one atomic load.

use std::sync::OnceLock;

static ARMED: OnceLock<Vec<String>> = OnceLock::new();

fn armed() -> &'static [String] {
    ARMED.get_or_init(|| {
        std::env::var("MYCELIUM_FAILPOINTS")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Aborts the process if the point `name` is armed.
pub fn hit(name: &str) {
    let armed = armed();
    if !armed.is_empty() && armed.iter().any(|a| a == name) {
        tracing::error!(failpoint = name, "failpoint reached: aborting the process");
        std::process::abort();
    }
}
