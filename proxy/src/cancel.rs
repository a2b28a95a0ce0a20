//! CancelRequest: a client opens a new connection, names a session by its process id and
//! secret key, and the statement that session is running stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::error::{ProxyError, sql_error};

/// The cancellation of one running statement: a CancelRequest or `statement_timeout` fires
/// `token`; the error says which.
pub struct Statement {
    pub token: CancellationToken,
    timed_out: Arc<AtomicBool>,
    timer: Option<tokio::task::JoinHandle<()>>,
}

impl Statement {
    pub fn cancel_error(&self) -> ProxyError {
        if self.timed_out.load(Ordering::Acquire) {
            sql_error("57014", "canceling statement due to statement timeout")
        } else {
            sql_error("57014", "canceling statement due to user request")
        }
    }
}

impl Drop for Statement {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }
}

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
    /// The cancellation of the statement about to run: a CancelRequest fires it, and so does
    /// `timeout` running out.
    pub fn start_statement(&self, timeout: Option<Duration>) -> Statement {
        let token = CancellationToken::new();
        if let Ok(mut running) = self.running.lock() {
            *running = Some(token.clone());
        }
        let timed_out = Arc::new(AtomicBool::new(false));
        let timer = timeout.map(|after| {
            let (token, timed_out) = (token.clone(), timed_out.clone());
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                timed_out.store(true, Ordering::Release);
                token.cancel();
            })
        });
        Statement {
            token,
            timed_out,
            timer,
        }
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
