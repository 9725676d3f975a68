//! [`RateBucket`]: the token bucket every door limits a session's commands with.
//!
//! One definition for every door (Chat API `chat_rate_*`, External API `extapi_rate_*`,
//! the doors to come): a connection keeps one bucket and takes a token per command; a
//! command over the rate is answered with the door's own "rate limited" error, so a
//! client that floods is throttled, and what it sends never reaches anybody else.

use std::time::Instant;

/// Tokens refill at `per_sec` up to `burst`; each command takes one.
#[derive(Clone, Debug)]
pub struct RateBucket {
    tokens: f64,
    at: Instant,
}

impl RateBucket {
    /// A full bucket: a new connection may start with a burst.
    pub fn full(burst: u32) -> Self {
        RateBucket {
            tokens: f64::from(burst),
            at: Instant::now(),
        }
    }

    /// Take one command from the bucket; `false` when the connection is over its rate.
    pub fn allow(&mut self, per_sec: u32, burst: u32) -> bool {
        self.allow_at(Instant::now(), per_sec, burst)
    }

    fn allow_at(&mut self, now: Instant, per_sec: u32, burst: u32) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * f64::from(per_sec);
        self.tokens = (self.tokens + refill).min(f64::from(burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = RateBucket {
            tokens: 3.0,
            at: start,
        };
        assert!((0..3).all(|_| bucket.allow_at(start, 10, 3)));
        assert!(!bucket.allow_at(start, 10, 3));
        // 100 ms at 10/s gives back one token, no more.
        let later = start + Duration::from_millis(100);
        assert!(bucket.allow_at(later, 10, 3));
        assert!(!bucket.allow_at(later, 10, 3));
        // A long pause refills to the burst, not beyond.
        let much_later = later + Duration::from_secs(60);
        assert!((0..3).all(|_| bucket.allow_at(much_later, 10, 3)));
        assert!(!bucket.allow_at(much_later, 10, 3));
    }
}
