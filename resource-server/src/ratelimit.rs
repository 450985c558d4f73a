//! Per-client throttling: one token bucket per authenticated `client_id`, applied after
//! the access token is verified (so an unauthenticated caller cannot spend another
//! client's allowance). A refused call gets 429 with `Retry-After` in the OB error
//! schema. Per instance: N instances allow N times the rate, which the platform's
//! configuration accounts for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Sustained rate and burst of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second refilled.
    pub per_second: u32,
    /// Bucket size: requests allowed at once after a quiet period.
    pub burst: u32,
}

/// Bound on tracked clients before the table is flushed (clients are registered, so
/// this is never reached in practice).
const MAX_CLIENTS: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets, shared by every clone of the application state.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Takes one request from `client_id`'s bucket. `Err(seconds)` when it is empty:
    /// the whole seconds until a request is allowed again (at least 1).
    pub fn check(&self, limit: RateLimit, client_id: &str) -> Result<(), u64> {
        self.check_at(limit, client_id, Instant::now())
    }

    fn check_at(&self, limit: RateLimit, client_id: &str, now: Instant) -> Result<(), u64> {
        let rate = f64::from(limit.per_second.max(1));
        let burst = f64::from(limit.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(client_id) {
            buckets.clear();
        }
        let b = buckets.entry(client_id.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / rate;
            // Float to integer: `wait` is finite and small (at most 1 s at rate >= 1).
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let secs = wait.ceil() as u64;
            Err(secs.max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_at_the_rate_and_keys_are_separate() {
        let l = RateLimiter::default();
        let lim = RateLimit {
            per_second: 2,
            burst: 3,
        };
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check_at(lim, "a", t0), Ok(()));
        }
        assert_eq!(l.check_at(lim, "a", t0), Err(1));
        assert_eq!(l.check_at(lim, "b", t0), Ok(()));
        // Half a second refills one request at 2/s.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.check_at(lim, "a", t1), Ok(()));
        assert!(l.check_at(lim, "a", t1).is_err());
        // Never more than the burst after a long pause.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(l.check_at(lim, "a", t2), Ok(()));
        }
        assert!(l.check_at(lim, "a", t2).is_err());
    }
}
