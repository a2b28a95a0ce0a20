//! CancelRequest: a client opens a new connection, names a session by its process id and
//! secret key, and the statement that session is running stops.

use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct CancelRegistry {
    sessions: DashMap<i32, Arc<SessionCancel>>,
}

/// The cancellation state of one session.
pub struct SessionCancel {
    secret: i32,
    running: Mutex<Option<CancellationToken>>,
}

impl SessionCancel {
    /// A token for the statement about to run; a CancelRequest fires it.
    pub fn start_statement(&self) -> CancellationToken {
        let token = CancellationToken::new();
        if let Ok(mut running) = self.running.lock() {
            *running = Some(token.clone());
        }
        token
    }

    pub fn end_statement(&self) {
        if let Ok(mut running) = self.running.lock() {
            *running = None;
        }
    }
}

impl CancelRegistry {
    pub fn register(&self, pid: i32, secret: i32) -> Arc<SessionCancel> {
        let entry = Arc::new(SessionCancel {
            secret,
            running: Mutex::new(None),
        });
        self.sessions.insert(pid, entry.clone());
        entry
    }

    pub fn unregister(&self, pid: i32) {
        self.sessions.remove(&pid);
    }

    /// Cancels the running statement of `pid` if the secret matches. A wrong secret is
    /// ignored silently, as Postgres does, so it reveals nothing.
    pub fn cancel(&self, pid: i32, secret: i32) -> bool {
        let Some(session) = self.sessions.get(&pid).map(|s| s.clone()) else {
            return false;
        };
        if session.secret != secret {
            return false;
        }
        match session.running.lock() {
            Ok(running) => match running.as_ref() {
                Some(token) => {
                    token.cancel();
                    true
                }
                None => false,
            },
            Err(_) => false,
        }
    }
}
