//! Per-user limits: sessions open at once, and statements per second (a token bucket per user,
//! shared by its sessions).

use std::sync::Mutex;
use std::time::Instant;

use dashmap::DashMap;
use mycelium_protocol::DbError;

use crate::error::{ProxyError, sql_error};

pub struct UserLimits {
    max_sessions: usize,
    rate: u32,
    sessions: DashMap<String, usize>,
    buckets: DashMap<String, Mutex<Bucket>>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// A user's open session; dropping it frees the slot.
pub struct SessionSlot<'a> {
    limits: &'a UserLimits,
    user: String,
}

impl Drop for SessionSlot<'_> {
    fn drop(&mut self) {
        if let Some(mut count) = self.limits.sessions.get_mut(&self.user) {
            *count = count.saturating_sub(1);
        }
    }
}

impl UserLimits {
    pub fn new(max_sessions: usize, rate: u32) -> UserLimits {
        UserLimits {
            max_sessions,
            rate,
            sessions: DashMap::new(),
            buckets: DashMap::new(),
        }
    }

    /// Takes a session slot for `user`, or refuses with 53300.
    pub fn open_session(&self, user: &str) -> Result<SessionSlot<'_>, ProxyError> {
        let mut count = self.sessions.entry(user.to_owned()).or_insert(0);
        if self.max_sessions > 0 && *count >= self.max_sessions {
            return Err(sql_error(
                "53300",
                format!("too many connections for role \"{user}\""),
            ));
        }
        *count += 1;
        Ok(SessionSlot {
            limits: self,
            user: user.to_owned(),
        })
    }

    /// Spends one statement of `user`'s rate, or refuses with 53400.
    pub fn statement(&self, user: &str) -> Result<(), ProxyError> {
        if self.rate == 0 {
            return Ok(());
        }
        let rate = f64::from(self.rate);
        let bucket = self.buckets.entry(user.to_owned()).or_insert_with(|| {
            Mutex::new(Bucket {
                tokens: rate,
                refilled: Instant::now(),
            })
        });
        let Ok(mut bucket) = bucket.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.refilled = now;
        if bucket.tokens < 1.0 {
            return Err(ProxyError::Db(
                DbError::new(
                    "53400",
                    format!(
                        "rate limit exceeded for role \"{user}\": at most {} statements per second",
                        self.rate
                    ),
                )
                .with_hint("slow down, or raise proxy.rate_limit_per_user"),
            ));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

/// Slows down password guessing: after a failed login from an address, the next refusal to
/// that address waits twice as long (100 ms, 200 ms, ... up to 5 s). A success, or a minute
/// without failures, forgets the address.
#[derive(Default)]
pub struct AuthBackoff {
    failures: DashMap<std::net::IpAddr, (u32, Instant)>,
}

const BACKOFF_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
const BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(5);
const BACKOFF_FORGET: std::time::Duration = std::time::Duration::from_secs(60);

impl AuthBackoff {
    /// Records a failure from `ip`; returns how long to wait before refusing it.
    pub fn failed(&self, ip: std::net::IpAddr) -> std::time::Duration {
        let now = Instant::now();
        // Forget addresses that stopped failing, so the map does not grow without bound.
        if self.failures.len() > 10_000 {
            self.failures
                .retain(|_, (_, last)| now.duration_since(*last) < BACKOFF_FORGET);
        }
        let mut entry = self.failures.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= BACKOFF_FORGET {
            entry.0 = 0;
        }
        let earlier = entry.0;
        entry.0 = earlier.saturating_add(1);
        entry.1 = now;
        if earlier == 0 {
            return std::time::Duration::ZERO;
        }
        BACKOFF_FIRST
            .saturating_mul(1u32 << (earlier - 1).min(6))
            .min(BACKOFF_MAX)
    }

    pub fn succeeded(&self, ip: std::net::IpAddr) {
        self.failures.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_slots_are_counted_and_freed() {
        let limits = UserLimits::new(2, 0);
        let a = limits.open_session("u").expect("first");
        let _b = limits.open_session("u").expect("second");
        let third = limits.open_session("u").err().map(|e| e.to_client().code);
        assert_eq!(third.as_deref(), Some("53300"));
        assert!(limits.open_session("other").is_ok());
        drop(a);
        assert!(limits.open_session("u").is_ok());
    }

    #[test]
    fn the_rate_is_a_budget_per_second() {
        let limits = UserLimits::new(0, 5);
        for _ in 0..5 {
            assert!(limits.statement("u").is_ok());
        }
        let refused = limits.statement("u").err().map(|e| e.to_client().code);
        assert_eq!(refused.as_deref(), Some("53400"));
        assert!(limits.statement("v").is_ok());
    }

    #[test]
    fn refusals_slow_down_per_address_and_reset_on_success() {
        let backoff = AuthBackoff::default();
        let ip: std::net::IpAddr = [10, 0, 0, 1].into();
        let other: std::net::IpAddr = [10, 0, 0, 2].into();
        let delays: Vec<u128> = (0..9).map(|_| backoff.failed(ip).as_millis()).collect();
        assert_eq!(delays, vec![0, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff.failed(other).as_millis(), 0);
        backoff.succeeded(ip);
        assert_eq!(backoff.failed(ip).as_millis(), 0);
    }
}
