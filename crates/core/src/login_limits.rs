//! Login rate limits: a token bucket per account and one per client address, and the count
//! of recent failures behind the doubling delay, kept by the core so that every door
//! shares them and a new connection starts where the last one stopped.
//!
//! A password login takes a token from both buckets before any hashing, and gives both
//! back when it succeeds: only failed guesses use up a limit. An empty bucket refuses the
//! attempt with the time until its next token ([`CoreError::LoginThrottled`]), so a flood
//! of guesses at one account, or from one address, costs no Argon2 work at all; other
//! accounts and other addresses are not affected. Each failure also counts against both
//! keys, and the answer to a failed login waits [`failed_login_delay`] of the larger count;
//! a success clears both counts, and a bucket that has refilled forgets its failures.
//!
//! IPv6 addresses are limited by their /64, the block one host is usually given. Each table
//! holds at most `max_tracked` keys; when full, keys whose bucket has refilled (they carry
//! no state) are dropped, and if none can be, new keys are refused until some refill.
//!
//! [`CoreError::LoginThrottled`]: crate::CoreError::LoginThrottled
//! [`failed_login_delay`]: crate::service::failed_login_delay

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How many logins may fail, and how fast the allowance comes back.
#[derive(Clone, Debug)]
pub struct LoginLimitSettings {
    /// Failed logins one account may take in a burst (0: no per-account limit).
    pub account_burst: u32,
    /// Failed logins per minute one account gets back (at least 1).
    pub account_per_minute: u32,
    /// Failed logins one client address may make in a burst (0: no per-address limit).
    pub address_burst: u32,
    /// Failed logins per minute one client address gets back (at least 1).
    pub address_per_minute: u32,
    /// Accounts, and separately addresses, tracked at once.
    pub max_tracked: usize,
}

impl Default for LoginLimitSettings {
    fn default() -> Self {
        LoginLimitSettings {
            account_burst: 10,
            account_per_minute: 6,
            address_burst: 30,
            address_per_minute: 30,
            max_tracked: 100_000,
        }
    }
}

/// The limits of every login key. Std `Mutex`es: held for a map update, never across
/// `.await`.
pub struct LoginLimits {
    accounts: Mutex<Buckets<String>>,
    addresses: Mutex<Buckets<IpAddr>>,
}

/// An admitted attempt: the keys it took tokens from.
#[derive(Debug)]
pub struct Attempt {
    account: String,
    address: IpAddr,
}

impl LoginLimits {
    pub fn new(settings: &LoginLimitSettings) -> Self {
        LoginLimits {
            accounts: Mutex::new(Buckets::new(
                settings.account_burst,
                settings.account_per_minute,
                settings.max_tracked,
            )),
            addresses: Mutex::new(Buckets::new(
                settings.address_burst,
                settings.address_per_minute,
                settings.max_tracked,
            )),
        }
    }

    /// Take a token for an attempt at `login` from `from`, or say how long to wait.
    pub fn admit(&self, login: &str, from: IpAddr, now: Instant) -> Result<Attempt, Duration> {
        let address = address_key(from);
        let mut accounts = lock(&self.accounts);
        let mut addresses = lock(&self.addresses);
        let waits = [
            accounts.wait(&login.to_string(), now),
            addresses.wait(&address, now),
        ];
        if let Some(wait) = waits.into_iter().flatten().max() {
            return Err(wait);
        }
        accounts.take(login.to_string(), now);
        addresses.take(address, now);
        Ok(Attempt {
            account: login.to_string(),
            address,
        })
    }

    /// The attempt succeeded: its tokens come back and both failure counts are cleared.
    pub fn succeeded(&self, attempt: &Attempt, now: Instant) {
        lock(&self.accounts).give_back(&attempt.account, now, true);
        lock(&self.addresses).give_back(&attempt.address, now, true);
    }

    /// The attempt did not run (the hasher was busy): its tokens come back.
    pub fn not_tried(&self, attempt: &Attempt, now: Instant) {
        lock(&self.accounts).give_back(&attempt.account, now, false);
        lock(&self.addresses).give_back(&attempt.address, now, false);
    }

    /// The attempt failed: the larger of the account's and the address's failure counts,
    /// this one included.
    pub fn failed(&self, attempt: &Attempt) -> u32 {
        let account = lock(&self.accounts).fail(&attempt.account);
        let address = lock(&self.addresses).fail(&attempt.address);
        account.max(address)
    }
}

/// What an address is limited by: itself (IPv4), or its /64 (IPv6).
fn address_key(from: IpAddr) -> IpAddr {
    match from.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves a bucket whole, so a panic elsewhere cannot corrupt the table.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One table of token buckets.
struct Buckets<K> {
    map: HashMap<K, Bucket>,
    /// Tokens a bucket holds when full; 0 turns the limit off.
    burst: f64,
    /// Tokens a bucket gets back per second.
    per_sec: f64,
    max: usize,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    failures: u32,
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    fn new(burst: u32, per_minute: u32, max: usize) -> Self {
        Buckets {
            map: HashMap::new(),
            burst: f64::from(burst),
            // At least one a minute: a limit that never refills would lock a key out.
            per_sec: f64::from(per_minute.max(1)) / 60.0,
            max: max.max(1),
        }
    }

    fn off(&self) -> bool {
        self.burst == 0.0
    }

    /// How long until `key` may try again; `None` if it may now.
    fn wait(&mut self, key: &K, now: Instant) -> Option<Duration> {
        if self.off() {
            return None;
        }
        let (burst, per_sec) = (self.burst, self.per_sec);
        let until_one = |tokens: f64| {
            Duration::try_from_secs_f64(((1.0 - tokens) / per_sec).max(0.0))
                .unwrap_or(Duration::MAX)
        };
        if let Some(bucket) = self.map.get_mut(key) {
            refill(bucket, burst, per_sec, now);
            return (bucket.tokens < 1.0).then(|| until_one(bucket.tokens));
        }
        if self.map.len() >= self.max {
            self.forget_rested(now);
        }
        // Still full: nobody new until a bucket refills.
        (self.map.len() >= self.max).then(|| until_one(0.0))
    }

    fn take(&mut self, key: K, now: Instant) {
        if self.off() {
            return;
        }
        let burst = self.burst;
        let bucket = self.map.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
            failures: 0,
        });
        bucket.tokens -= 1.0;
    }

    /// Return an attempt's token; a bucket left full and without failures is dropped.
    fn give_back(&mut self, key: &K, now: Instant, clear_failures: bool) {
        let (burst, per_sec) = (self.burst, self.per_sec);
        let Some(bucket) = self.map.get_mut(key) else {
            return;
        };
        refill(bucket, burst, per_sec, now);
        bucket.tokens = (bucket.tokens + 1.0).min(burst);
        if clear_failures {
            bucket.failures = 0;
        }
        if bucket.tokens >= burst && bucket.failures == 0 {
            self.map.remove(key);
        }
    }

    fn fail(&mut self, key: &K) -> u32 {
        match self.map.get_mut(key) {
            Some(bucket) => {
                bucket.failures = bucket.failures.saturating_add(1);
                bucket.failures
            }
            None => 1,
        }
    }

    /// Drop the buckets that have refilled: they limit nothing and count no failures.
    fn forget_rested(&mut self, now: Instant) {
        let (burst, per_sec) = (self.burst, self.per_sec);
        self.map.retain(|_, b| {
            refill(b, burst, per_sec, now);
            b.tokens < burst
        });
    }
}

/// Bring a bucket's tokens up to `now`; a bucket that is full again forgets its failures.
fn refill(bucket: &mut Bucket, burst: f64, per_sec: f64, now: Instant) {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * per_sec).min(burst);
    bucket.at = now;
    if bucket.tokens >= burst {
        bucket.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(account_burst: u32, address_burst: u32) -> LoginLimits {
        LoginLimits::new(&LoginLimitSettings {
            account_burst,
            account_per_minute: 60,
            address_burst,
            address_per_minute: 60,
            max_tracked: 100,
        })
    }

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn an_account_is_refused_after_its_burst_of_failures_from_anywhere() {
        let l = limits(3, 100);
        let now = Instant::now();
        for (i, from) in [HOME, AWAY, HOME].into_iter().enumerate() {
            let attempt = l.admit("alice", from, now).unwrap();
            assert_eq!(l.failed(&attempt), i as u32 + 1, "failures keep counting");
        }
        let wait = l.admit("alice", AWAY, now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1), "one token a second");
        assert!(
            l.admit("bob", HOME, now).is_ok(),
            "other accounts are not limited"
        );
        assert!(l.admit("alice", AWAY, now + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn an_address_is_refused_after_its_burst_whatever_the_account() {
        let l = limits(100, 2);
        let now = Instant::now();
        for login in ["a", "b"] {
            let attempt = l.admit(login, HOME, now).unwrap();
            l.failed(&attempt);
        }
        assert!(l.admit("c", HOME, now).is_err());
        assert!(
            l.admit("c", AWAY, now).is_ok(),
            "other addresses are not limited"
        );
    }

    #[test]
    fn successes_use_up_nothing_and_clear_the_failures() {
        let l = limits(2, 2);
        let now = Instant::now();
        for _ in 0..10 {
            let attempt = l.admit("alice", HOME, now).unwrap();
            l.succeeded(&attempt, now);
        }
        let attempt = l.admit("alice", HOME, now).unwrap();
        assert_eq!(l.failed(&attempt), 1);
        let attempt = l.admit("alice", HOME, now).unwrap();
        l.succeeded(&attempt, now);
        let attempt = l.admit("alice", HOME, now).unwrap();
        assert_eq!(l.failed(&attempt), 1, "the success cleared the count");
    }

    #[test]
    fn a_refilled_bucket_forgets_its_failures() {
        let l = limits(5, 5);
        let now = Instant::now();
        for _ in 0..3 {
            let attempt = l.admit("alice", HOME, now).unwrap();
            l.failed(&attempt);
        }
        let later = now + Duration::from_secs(10);
        let attempt = l.admit("alice", HOME, later).unwrap();
        assert_eq!(l.failed(&attempt), 1);
    }

    #[test]
    fn ipv6_hosts_are_limited_by_their_64() {
        let l = limits(100, 1);
        let now = Instant::now();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let attempt = l.admit("a", one, now).unwrap();
        l.failed(&attempt);
        assert!(l.admit("a", same_64, now).is_err());
        assert!(l.admit("a", other_64, now).is_ok());
    }

    #[test]
    fn a_full_table_drops_rested_keys_and_otherwise_refuses_new_ones() {
        let l = LoginLimits::new(&LoginLimitSettings {
            max_tracked: 2,
            account_per_minute: 60,
            ..LoginLimitSettings::default()
        });
        let now = Instant::now();
        for login in ["a", "b"] {
            let attempt = l.admit(login, HOME, now).unwrap();
            l.failed(&attempt);
        }
        assert!(
            l.admit("c", HOME, now).is_err(),
            "table full of live buckets"
        );
        let later = now + Duration::from_secs(60);
        assert!(l.admit("c", HOME, later).is_ok(), "rested keys made room");
    }

    #[test]
    fn a_zero_burst_turns_a_limit_off() {
        let l = limits(0, 0);
        let now = Instant::now();
        for _ in 0..1000 {
            let attempt = l.admit("alice", HOME, now).unwrap();
            l.failed(&attempt);
        }
    }
}
