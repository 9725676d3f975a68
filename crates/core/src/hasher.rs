//! The bounded password hasher: every Argon2 hash and verification the server runs goes
//! through one [`PasswordHasher`], at most `concurrency` at once, each in one of as many
//! reused memory areas.
//!
//! Why a pool and not only a semaphore: Argon2 is memory-hard (19 MiB per run with the
//! default parameters). Hashing on demand, a burst of 300 logins took the server to
//! 4.9 GB RSS, because memory freed after each run stays with the allocator's arenas.
//! Here the memory is `concurrency` areas of `m_cost` KiB, each allocated on first use and
//! then reused for good, so hashing never holds more than `concurrency × m_cost` KiB.
//!
//! Callers beyond the running ones wait in a queue bounded in length (`queue`) and time
//! (`wait`); past either bound they are refused at once with [`CoreError::Busy`], before
//! any hashing, so a flood of guesses costs neither memory nor CPU.
//!
//! **Invariant:** an area is used by one run at a time: a run holds a semaphore permit for
//! its whole life, and there are as many permits as areas.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::constant_time_eq;
use crate::error::{CoreError, CoreResult};
use crate::metrics::Metrics;

/// How the hasher is bounded.
#[derive(Clone, Debug)]
pub struct HasherSettings {
    /// Argon2 runs at once, and memory areas kept (0: the number of CPU cores).
    pub concurrency: usize,
    /// Callers that may wait for a free slot; more are refused at once.
    pub queue: usize,
    /// How long a caller waits for a slot before it is refused.
    pub wait: Duration,
}

impl Default for HasherSettings {
    fn default() -> Self {
        HasherSettings {
            concurrency: 0,
            queue: 64,
            wait: Duration::from_secs(2),
        }
    }
}

/// One Argon2 memory area (`m_cost` blocks of 1 KiB).
type Area = Box<[Block]>;

/// Runs Argon2 for the whole process, bounded in concurrency, queue and memory.
pub struct PasswordHasher {
    /// The parameters of new hashes and of the dummy verification; the areas' size.
    params: Params,
    /// One permit per run at once (and per memory area).
    slots: Arc<Semaphore>,
    /// Areas not in use. A std `Mutex`: held only to push or pop, never across `.await`.
    free: Arc<Mutex<Vec<Area>>>,
    /// Callers waiting for a permit now.
    waiting: AtomicUsize,
    queue: usize,
    wait: Duration,
    /// The salt of the dummy verification run for unknown users (random per process).
    dummy_salt: [u8; 16],
    counts: Arc<Counts>,
    metrics: Arc<Metrics>,
}

/// What the hasher has done, for tests and the benchmark.
#[derive(Default)]
struct Counts {
    /// Argon2 runs finished.
    runs: AtomicU64,
    /// Runs in progress now.
    running: AtomicUsize,
    /// The most runs ever in progress at once.
    peak: AtomicUsize,
    /// Memory areas ever allocated.
    areas: AtomicUsize,
}

impl PasswordHasher {
    /// A hasher with Argon2id's default parameters (what every stored hash uses).
    pub fn new(settings: &HasherSettings, metrics: Arc<Metrics>) -> Self {
        Self::with_params(settings, Params::default(), metrics)
    }

    /// A hasher with other parameters (tests use small ones).
    pub fn with_params(settings: &HasherSettings, params: Params, metrics: Arc<Metrics>) -> Self {
        let concurrency = match settings.concurrency {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let mut dummy_salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut dummy_salt);
        PasswordHasher {
            params,
            slots: Arc::new(Semaphore::new(concurrency)),
            free: Arc::new(Mutex::new(Vec::with_capacity(concurrency))),
            waiting: AtomicUsize::new(0),
            queue: settings.queue,
            wait: settings.wait,
            dummy_salt,
            counts: Arc::default(),
            metrics,
        }
    }

    /// Hash a new password into a PHC string (Argon2id, random salt).
    pub async fn hash(&self, password: &str) -> CoreResult<String> {
        let password = password.as_bytes().to_vec();
        let params = self.params.clone();
        self.run(move |area| hash_in(&password, &params, area))
            .await?
    }

    /// Whether `password` matches the stored PHC string. `None` (an unknown user) or a
    /// malformed hash runs a dummy verification with the same parameters and answers
    /// `false`, so an unknown login costs what a wrong password does.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> CoreResult<bool> {
        let password = password.as_bytes().to_vec();
        let stored = stored.map(str::to_string);
        let params = self.params.clone();
        let dummy_salt = self.dummy_salt;
        self.run(move |area| {
            if let Some(found) = stored
                .as_deref()
                .and_then(|phc| verify_in(&password, phc, area))
            {
                return found;
            }
            let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
            let _ = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_into_with_memory(&password, &dummy_salt, &mut out, area);
            false
        })
        .await
    }

    /// Whether a stored hash can be verified here: an Argon2 PHC string whose memory fits
    /// this hasher's areas (an imported hash needing more would never verify).
    pub fn accepts(&self, phc: &str) -> bool {
        PasswordHash::new(phc)
            .ok()
            .and_then(|h| Params::try_from(&h).ok())
            .is_some_and(|p| p.block_count() <= self.params.block_count())
    }

    /// Argon2 runs finished so far.
    pub fn runs(&self) -> u64 {
        self.counts.runs.load(Ordering::Relaxed)
    }

    /// The most runs that were ever in progress at once.
    pub fn peak(&self) -> usize {
        self.counts.peak.load(Ordering::Relaxed)
    }

    /// Memory areas allocated so far (never more than the concurrency).
    pub fn areas(&self) -> usize {
        self.counts.areas.load(Ordering::Relaxed)
    }

    /// Run `work` on a blocking thread with a memory area, once a slot is free.
    async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut [Block]) -> R + Send + 'static,
    ) -> CoreResult<R> {
        let permit = self.slot().await?;
        let free = self.free.clone();
        let counts = self.counts.clone();
        let mut area = lock(&free).pop().unwrap_or_else(|| {
            counts.areas.fetch_add(1, Ordering::Relaxed);
            vec![Block::default(); self.params.block_count()].into_boxed_slice()
        });
        self.metrics.password_hash_run();
        tokio::task::spawn_blocking(move || {
            let running = counts.running.fetch_add(1, Ordering::SeqCst) + 1;
            counts.peak.fetch_max(running, Ordering::SeqCst);
            let result = work(&mut area);
            counts.running.fetch_sub(1, Ordering::SeqCst);
            counts.runs.fetch_add(1, Ordering::SeqCst);
            // The area goes back before the permit is released (dropped last).
            lock(&free).push(area);
            drop(permit);
            result
        })
        .await
        .map_err(|e| CoreError::Internal(format!("password hashing: {e}")))
    }

    /// A permit to run: at once, or after waiting in the bounded queue.
    async fn slot(&self) -> CoreResult<OwnedSemaphorePermit> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let busy = || {
            self.metrics.password_hash_refused();
            CoreError::Busy {
                retry_after: self.wait.max(Duration::from_secs(1)),
            }
        };
        let _waiting = Waiting::join(&self.waiting, self.queue).ok_or_else(busy)?;
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(busy()),
        }
    }
}

/// A place in the queue, given back when the caller stops waiting (also when its future
/// is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn join(waiting: &'a AtomicUsize, queue: usize) -> Option<Self> {
        let before = waiting.fetch_add(1, Ordering::SeqCst);
        let place = Waiting(waiting);
        (before < queue).then_some(place)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock(free: &Mutex<Vec<Area>>) -> MutexGuard<'_, Vec<Area>> {
    // A panic while holding it cannot leave the list half-changed (push or pop only).
    free.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Hash `password` with a random salt into a PHC string, in `area`.
pub(crate) fn hash_in(password: &[u8], params: &Params, area: &mut [Block]) -> CoreResult<String> {
    let argon = |e: String| CoreError::Internal(format!("argon2: {e}"));
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| argon(e.to_string()))?;
    let mut out = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, salt_bytes, &mut out, area)
        .map_err(|e| argon(e.to_string()))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| argon(e.to_string()))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| argon(e.to_string()))?),
    };
    Ok(phc.to_string())
}

/// Verify `password` against a PHC string in `area`: `None` when the string is not an
/// Argon2 hash this area can verify (malformed, or needing more memory).
fn verify_in(password: &[u8], phc: &str, area: &mut [Block]) -> Option<bool> {
    let parsed = PasswordHash::new(phc).ok()?;
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).ok()?;
    let expected = parsed.hash?;
    let mut salt = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
    if params.block_count() > area.len() {
        tracing::warn!(
            m_cost = params.m_cost(),
            "a stored password hash needs more memory than the hasher's areas: set a new password"
        );
        return None;
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut out, area)
        .ok()?;
    Some(constant_time_eq(&out, expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small parameters: the tests are about the pool, not Argon2's cost.
    fn small() -> Params {
        Params::new(64, 1, 1, None).unwrap()
    }

    fn hasher(concurrency: usize, queue: usize, wait: Duration) -> PasswordHasher {
        let settings = HasherSettings {
            concurrency,
            queue,
            wait,
        };
        PasswordHasher::with_params(&settings, small(), Arc::default())
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = hasher(1, 8, Duration::from_secs(10));
        let phc = h.hash("s3cret").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(h.verify("s3cret", Some(&phc)).await.unwrap());
        assert!(!h.verify("s3cret!", Some(&phc)).await.unwrap());
        assert!(!h.verify("s3cret", Some("not a phc string")).await.unwrap());
        // A hash made the usual way (argon2's own PHC code) verifies too.
        let usual = crate::auth::hash_password_with("pw", small()).unwrap();
        assert!(h.verify("pw", Some(&usual)).await.unwrap());
    }

    #[tokio::test]
    async fn an_unknown_user_costs_a_verification_too() {
        let h = hasher(1, 8, Duration::from_secs(10));
        assert!(!h.verify("guess", None).await.unwrap());
        assert_eq!(h.runs(), 1, "the unknown-user path ran Argon2");
        assert!(!h.verify("guess", Some("$argon2id$garbage")).await.unwrap());
        assert_eq!(h.runs(), 2, "so did a malformed stored hash");
    }

    #[tokio::test]
    async fn a_hash_needing_more_memory_than_the_areas_is_not_accepted() {
        let h = hasher(1, 8, Duration::from_secs(10));
        let big =
            crate::auth::hash_password_with("pw", Params::new(128, 1, 1, None).unwrap()).unwrap();
        let fits = crate::auth::hash_password_with("pw", small()).unwrap();
        assert!(!h.accepts(&big));
        assert!(h.accepts(&fits));
        assert!(!h.accepts("plain text"));
        assert!(!h.verify("pw", Some(&big)).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_pool_never_runs_more_than_its_concurrency() {
        let h = Arc::new(hasher(2, 64, Duration::from_secs(60)));
        // Each run takes 20 ms, so without the bound the twelve would overlap.
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move {
                    h.run(|area| {
                        std::thread::sleep(Duration::from_millis(20));
                        area.len()
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), 64);
        }
        assert_eq!(h.runs(), 12);
        assert!(h.peak() <= 2, "{} runs at once", h.peak());
        assert!(h.areas() <= 2, "{} memory areas", h.areas());
    }

    #[tokio::test]
    async fn past_the_queue_callers_are_refused_before_hashing() {
        let h = Arc::new(hasher(1, 1, Duration::from_secs(60)));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = {
            let h = h.clone();
            tokio::spawn(async move {
                h.run(move |_| {
                    let _ = started_tx.send(());
                    let _ = release_rx.recv();
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .unwrap()
            .unwrap();
        // One caller may wait …
        let queued = {
            let h = h.clone();
            tokio::spawn(async move { h.verify("pw", None).await })
        };
        while h.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // … the next is refused at once, without running Argon2.
        assert!(matches!(
            h.verify("pw", None).await,
            Err(CoreError::Busy { .. })
        ));
        release_tx.send(()).unwrap();
        holder.await.unwrap().unwrap();
        assert!(!queued.await.unwrap().unwrap());
        assert_eq!(h.runs(), 2, "the refused caller never hashed");
    }

    #[tokio::test]
    async fn a_caller_waiting_too_long_is_refused() {
        let h = hasher(1, 8, Duration::from_millis(50));
        let permit = h.slots.clone().try_acquire_owned().unwrap();
        assert!(matches!(
            h.verify("pw", None).await,
            Err(CoreError::Busy { .. })
        ));
        drop(permit);
        assert!(!h.verify("pw", None).await.unwrap());
        assert_eq!(h.runs(), 1);
    }
}
