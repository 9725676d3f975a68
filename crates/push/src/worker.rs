//! The push worker: one task that drains the core's outbox.
//!
//! Each round it has the core turn new outbox entries into deliveries, then claims, for
//! each provider with fewer than `concurrency` requests in flight, as many due deliveries
//! of its token types as it has room for, and starts a request for each. A claim is a
//! lease ([`CLAIM_LEASE`], longer than any request may take): several nodes may drain one
//! outbox, and none takes a delivery another has claimed until the lease runs out (its
//! node died) or an outcome ends it; at start a node takes back what it claimed before it
//! restarted. An answer is recorded
//! through the core: sent (removed), retried at a later time (the provider's
//! `Retry-After`, else 5 s doubling to at most an hour, with jitter), dead token
//! (removed with what was queued for it), refused for good or too old (removed). The
//! worker sleeps until the core says something was queued, a request ends, or the next
//! retry is due. Every outcome is counted on `/metrics` (`confer_push_total`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use confer_core::model::{now_us, PushDelivery};
use confer_core::Core;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Outcome, Provider, PushConfig, PushError};
use crate::{TOKEN_APNS, TOKEN_FCM, TOKEN_PUSHKIT, TOKEN_WEB};

/// Outbox entries turned into deliveries per store read.
const ENTRY_BATCH: usize = 64;
/// The first retry comes within this long; each further one waits twice as long.
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// The longest the worker sleeps without looking at the queue: a retry time is read, but
/// another node may have queued something, or its lease have run out.
const IDLE: Duration = Duration::from_secs(5);
/// How long a claimed delivery is this node's: twice the longest request (the providers'
/// HTTP client times out after 30 s), so a slow answer is still recorded within it. A
/// node that dies holding claims delays those deliveries by at most this.
pub const CLAIM_LEASE: Duration = Duration::from_secs(60);
/// Deliveries of token types no provider takes, finished as failed per round.
const UNROUTED_BATCH: usize = 16;

/// The providers, and which one each token type goes to.
pub struct Worker {
    core: Arc<Core>,
    providers: Vec<Arc<dyn Provider>>,
    /// Each provider's token types, and the types no provider takes.
    types: Vec<Vec<u8>>,
    unrouted: Vec<u8>,
    /// The name this node claims deliveries under.
    node: String,
    concurrency: usize,
    max_age_us: i64,
}

impl Worker {
    /// Build the configured providers (reading their keys); `None` when none is.
    pub fn new(core: Arc<Core>, config: &PushConfig) -> Result<Option<Self>, PushError> {
        let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
        let mut routes = HashMap::new();
        if let Some(c) = &config.webhook {
            providers.push(Arc::new(crate::webhook::Webhook::new(c)?));
            for t in [TOKEN_FCM, TOKEN_APNS, TOKEN_WEB, TOKEN_PUSHKIT] {
                routes.insert(t, providers.len() - 1);
            }
        }
        if let Some(c) = &config.fcm {
            providers.push(Arc::new(crate::fcm::Fcm::new(c)?));
            routes.insert(TOKEN_FCM, providers.len() - 1);
        }
        if let Some(c) = &config.apns {
            providers.push(Arc::new(crate::apns::Apns::new(c)?));
            routes.insert(TOKEN_APNS, providers.len() - 1);
            routes.insert(TOKEN_PUSHKIT, providers.len() - 1);
        }
        if let Some(c) = &config.webpush {
            providers.push(Arc::new(crate::webpush::WebPush::new(c)?));
            routes.insert(TOKEN_WEB, providers.len() - 1);
        }
        if providers.is_empty() {
            return Ok(None);
        }
        let mut types = vec![Vec::new(); providers.len()];
        for (t, p) in &routes {
            types[*p].push(*t);
        }
        for list in &mut types {
            list.sort_unstable();
        }
        let unrouted = (0..=u8::MAX).filter(|t| !routes.contains_key(t)).collect();
        Ok(Some(Worker {
            core,
            providers,
            types,
            unrouted,
            node: config.node.clone(),
            concurrency: config.concurrency.max(1),
            max_age_us: i64::try_from(config.max_age.as_micros()).unwrap_or(i64::MAX),
        }))
    }

    /// Run until `shutdown`; what is queued stays queued for the next start.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        if let Err(e) = this.core.release_push_claims(&this.node).await {
            tracing::warn!(error = %e, "push: taking back this node's earlier claims");
        }
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(u64, usize)>();
        let mut in_flight: HashSet<u64> = HashSet::new();
        let mut per_provider = vec![0usize; this.providers.len()];
        loop {
            if let Err(e) = this.prepare().await {
                tracing::warn!(error = %e, "push: reading the outbox");
            }
            let lease = i64::try_from(CLAIM_LEASE.as_micros()).unwrap_or(i64::MAX);
            for (p, running) in per_provider.iter_mut().enumerate() {
                let room = this.concurrency.saturating_sub(*running);
                if room == 0 {
                    continue;
                }
                let now = now_us();
                let claimed = this
                    .core
                    .claim_pushes(
                        &this.node,
                        &this.types[p],
                        now,
                        now.saturating_add(lease),
                        room,
                    )
                    .await;
                let claimed = match claimed {
                    Ok(claimed) => claimed,
                    Err(e) => {
                        tracing::warn!(error = %e, "push: claiming due deliveries");
                        break;
                    }
                };
                for d in claimed {
                    // Within the lease a delivery is not due again: this is a backstop.
                    if in_flight.contains(&d.id) {
                        continue;
                    }
                    if now_us().saturating_sub(d.created_at_us) > this.max_age_us {
                        this.finish(&d, this.providers[p].name(), "expired").await;
                        continue;
                    }
                    in_flight.insert(d.id);
                    *running += 1;
                    let worker = this.clone();
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        worker.attempt(p, d.clone()).await;
                        let _ = done.send((d.id, p));
                    });
                }
            }
            let now = now_us();
            match this
                .core
                .claim_pushes(
                    &this.node,
                    &this.unrouted,
                    now,
                    now.saturating_add(lease),
                    UNROUTED_BATCH,
                )
                .await
            {
                Ok(unrouted) => {
                    for d in unrouted {
                        this.finish(&d, "none", "failed").await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "push: claiming due deliveries"),
            }
            let sleep = match this.core.next_push_at().await {
                Ok(Some(at)) => {
                    let wait = at.saturating_sub(now_us()).max(0) as u64;
                    Duration::from_micros(wait).min(IDLE)
                }
                _ => IDLE,
            };
            // Nothing due now while requests run: wait for them or the alarm.
            let sleep = if sleep.is_zero() && !in_flight.is_empty() {
                IDLE
            } else {
                sleep
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = this.core.pushes_waiting() => {}
                Some((id, p)) = done_rx.recv() => {
                    in_flight.remove(&id);
                    per_provider[p] = per_provider[p].saturating_sub(1);
                    while let Ok((id, p)) = done_rx.try_recv() {
                        in_flight.remove(&id);
                        per_provider[p] = per_provider[p].saturating_sub(1);
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    async fn prepare(&self) -> confer_core::CoreResult<()> {
        while self.core.prepare_pushes(ENTRY_BATCH).await? == ENTRY_BATCH {}
        Ok(())
    }

    async fn finish(&self, d: &PushDelivery, provider: &'static str, outcome: &'static str) {
        self.core.metrics().push(provider, outcome);
        if let Err(e) = self.core.push_done(d.id).await {
            tracing::warn!(error = %e, "push: recording a finished delivery");
        }
    }

    /// One request, and its outcome recorded.
    async fn attempt(&self, p: usize, d: PushDelivery) {
        let provider = &self.providers[p];
        let name = provider.name();
        let outcome = provider.send(&d).await;
        let recorded = match outcome {
            Outcome::Delivered => {
                self.core.metrics().push(name, "delivered");
                self.core.push_done(d.id).await
            }
            Outcome::DeadToken => {
                self.core.metrics().push(name, "dead_token");
                tracing::info!(provider = name, uin = %d.uin, "push: token dead, removed");
                self.core.push_token_dead(&d.token).await
            }
            Outcome::Failed(why) => {
                self.core.metrics().push(name, "failed");
                tracing::warn!(provider = name, uin = %d.uin, reason = %why, "push: refused");
                self.core.push_done(d.id).await
            }
            Outcome::Retry(after) => {
                let wait = after.unwrap_or_else(|| backoff(d.attempts));
                let wait_us = i64::try_from(wait.as_micros()).unwrap_or(i64::MAX);
                let next = now_us().saturating_add(wait_us);
                if next.saturating_sub(d.created_at_us) > self.max_age_us {
                    self.core.metrics().push(name, "expired");
                    self.core.push_done(d.id).await
                } else {
                    self.core.metrics().push(name, "retried");
                    self.core
                        .push_retry(d.id, d.attempts.saturating_add(1), next)
                        .await
                }
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, provider = name, "push: recording an outcome");
        }
    }
}

/// The wait before attempt `attempts + 1`: `FIRST_RETRY` doubling per attempt up to
/// `MAX_RETRY`, a random half to all of it (so retries of many spread out).
pub fn backoff(attempts: u32) -> Duration {
    let full = FIRST_RETRY
        .saturating_mul(1u32 << attempts.min(16))
        .min(MAX_RETRY);
    let factor = rand::thread_rng().gen_range(0.5..=1.0);
    full.mul_f64(factor)
}

/// Start the worker for `core` if any provider is configured; it stops with `shutdown`.
pub fn start(
    core: Arc<Core>,
    config: &PushConfig,
    shutdown: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, PushError> {
    let Some(worker) = Worker::new(core, config)? else {
        return Ok(None);
    };
    Ok(Some(tokio::spawn(worker.run(shutdown))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_within_five_seconds_and_doubles_to_an_hour() {
        for _ in 0..100 {
            let first = backoff(0);
            assert!(first >= Duration::from_millis(2500) && first <= FIRST_RETRY);
            let third = backoff(2);
            assert!(third >= Duration::from_secs(10) && third <= Duration::from_secs(20));
            assert!(backoff(40) <= MAX_RETRY);
        }
    }
}
