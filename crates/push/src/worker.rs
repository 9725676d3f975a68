//! The push worker: one task that drains the core's outbox.
//!
//! Each round it has the core turn new outbox entries into deliveries, takes the
//! deliveries that are due, and starts a request for each while its provider has fewer
//! than `concurrency` in flight (the rest wait for a later round). An answer is recorded
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
/// The longest the worker sleeps without looking at the queue (a retry time is read, but
/// another process could not have queued anything: this is a backstop).
const IDLE: Duration = Duration::from_secs(5);

/// The providers, and which one each token type goes to.
pub struct Worker {
    core: Arc<Core>,
    providers: Vec<Arc<dyn Provider>>,
    /// Token type → index in `providers`.
    routes: HashMap<u8, usize>,
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
        Ok(Some(Worker {
            core,
            providers,
            routes,
            concurrency: config.concurrency.max(1),
            max_age_us: i64::try_from(config.max_age.as_micros()).unwrap_or(i64::MAX),
        }))
    }

    /// Run until `shutdown`; what is queued stays queued for the next start.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(u64, usize)>();
        let mut in_flight: HashSet<u64> = HashSet::new();
        let mut per_provider = vec![0usize; this.providers.len()];
        loop {
            if let Err(e) = this.prepare().await {
                tracing::warn!(error = %e, "push: reading the outbox");
            }
            let busy_all = per_provider.iter().all(|n| *n >= this.concurrency);
            if !busy_all {
                let limit = in_flight.len() + this.concurrency * this.providers.len();
                match this.core.due_pushes(now_us(), limit).await {
                    Ok(due) => {
                        for d in due {
                            if in_flight.contains(&d.id) {
                                continue;
                            }
                            let Some(&p) = this.routes.get(&d.token_type) else {
                                this.finish(&d, "none", "failed").await;
                                continue;
                            };
                            if per_provider[p] >= this.concurrency {
                                continue;
                            }
                            if now_us().saturating_sub(d.created_at_us) > this.max_age_us {
                                this.finish(&d, this.providers[p].name(), "expired").await;
                                continue;
                            }
                            in_flight.insert(d.id);
                            per_provider[p] += 1;
                            let worker = this.clone();
                            let done = done_tx.clone();
                            tokio::spawn(async move {
                                worker.attempt(p, d.clone()).await;
                                let _ = done.send((d.id, p));
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "push: reading due deliveries"),
                }
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
