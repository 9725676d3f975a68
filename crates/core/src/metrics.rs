//! Process metrics, rendered in the Prometheus text format by `GET /metrics`.
//!
//! Counters are atomics on the hot path; labelled counters take a short std `Mutex` (no
//! `.await` is ever held across it) around a small map.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the storage commit latency histogram buckets.
const COMMIT_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0];

#[derive(Default)]
pub struct Metrics {
    /// Open connections per door.
    connections: Mutex<BTreeMap<&'static str, i64>>,
    /// Commands per (door, command, result).
    commands: Mutex<BTreeMap<(&'static str, String, &'static str), u64>>,
    events_delivered: AtomicU64,
    messages_stored: AtomicU64,
    commit_buckets: [AtomicU64; COMMIT_BUCKETS.len()],
    commit_count: AtomicU64,
    commit_sum_us: AtomicU64,
    commit_batch_ops: AtomicU64,
    /// Messages dropped or sessions cut because a client did not read.
    slow_consumers_cut: AtomicI64,
    /// Deliveries refused by a full session queue (the session is cut at the first).
    deliveries_dropped: AtomicU64,
    /// Argon2 runs started (hashes and verifications, dummy ones included).
    password_hashes: AtomicU64,
    /// Password work refused because the hasher's queue was full or too slow.
    password_hashes_refused: AtomicU64,
    /// Password logins refused by the per-account or per-address limit.
    logins_throttled: AtomicU64,
    /// UDP datagrams the media endpoint dropped: malformed, unknown sender, failed checks.
    media_datagrams_dropped: AtomicU64,
    /// Media frames (audio or video) the media endpoint forwarded to a receiver.
    media_forwarded: AtomicU64,
    /// Media frames not forwarded because their sender was over its bitrate cap.
    media_over_cap: AtomicU64,
    /// Frames for other nodes (events, pushes, media signalling) dropped because the
    /// queue to Redis was full or Redis could not be reached.
    cluster_frames_dropped: AtomicU64,
    /// Chat connects and closes whose presence count (`crate::online`) failed or was late.
    presence_uncounted: AtomicU64,
    /// Push deliveries per (provider, outcome).
    pushes: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

/// Options structs that hold the metrics derive `Debug`; the counters are for `render`.
impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn connection_opened(&self, door: &'static str) {
        self.adjust_connections(door, 1);
    }

    pub fn connection_closed(&self, door: &'static str) {
        self.adjust_connections(door, -1);
    }

    fn adjust_connections(&self, door: &'static str, delta: i64) {
        if let Ok(mut map) = self.connections.lock() {
            *map.entry(door).or_insert(0) += delta;
        }
    }

    pub fn command(&self, door: &'static str, name: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        if let Ok(mut map) = self.commands.lock() {
            *map.entry((door, name.to_string(), result)).or_insert(0) += 1;
        }
    }

    pub fn events_delivered(&self, n: u64) {
        self.events_delivered.fetch_add(n, Ordering::Relaxed);
    }

    pub fn message_stored(&self) {
        self.messages_stored.fetch_add(1, Ordering::Relaxed);
    }

    pub fn password_hash_run(&self) {
        self.password_hashes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn password_hash_refused(&self) {
        self.password_hashes_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn login_throttled(&self) {
        self.logins_throttled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn media_datagram_dropped(&self) {
        self.media_datagrams_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn media_forwarded(&self, n: u64) {
        self.media_forwarded.fetch_add(n, Ordering::Relaxed);
    }

    pub fn media_over_cap(&self) {
        self.media_over_cap.fetch_add(1, Ordering::Relaxed);
    }

    /// Datagrams the media endpoint dropped so far (tests and the load generator read it).
    pub fn media_datagrams_dropped_total(&self) -> u64 {
        self.media_datagrams_dropped.load(Ordering::Relaxed)
    }

    /// Media frames forwarded so far.
    pub fn media_forwarded_total(&self) -> u64 {
        self.media_forwarded.load(Ordering::Relaxed)
    }

    /// One push delivery attempt's outcome: `delivered`, `retried`, `dead_token`,
    /// `failed` or `expired`, for a provider (`webhook`, `fcm`, `apns`, `webpush`).
    pub fn push(&self, provider: &'static str, outcome: &'static str) {
        if let Ok(mut map) = self.pushes.lock() {
            *map.entry((provider, outcome)).or_insert(0) += 1;
        }
    }

    /// `n` frames for other nodes were dropped (see the field).
    pub fn cluster_frames_dropped(&self, n: u64) {
        self.cluster_frames_dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// A presence count failed (see the field); the count so far, this one included.
    pub fn presence_uncounted(&self) -> u64 {
        self.presence_uncounted.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn deliveries_dropped(&self, n: u64) {
        self.deliveries_dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub fn slow_consumer_cut(&self) {
        self.slow_consumers_cut.fetch_add(1, Ordering::Relaxed);
    }

    /// One storage commit of `ops` operations that took `took`.
    pub fn commit(&self, took: Duration, ops: usize) {
        let secs = took.as_secs_f64();
        for (bound, bucket) in COMMIT_BUCKETS.iter().zip(&self.commit_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.commit_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.commit_sum_us.fetch_add(micros, Ordering::Relaxed);
        self.commit_batch_ops
            .fetch_add(ops as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP confer_connections Open connections per door.\n");
        out.push_str("# TYPE confer_connections gauge\n");
        if let Ok(map) = self.connections.lock() {
            for (door, n) in map.iter() {
                let _ = writeln!(out, "confer_connections{{door=\"{door}\"}} {n}");
            }
        }
        out.push_str("# HELP confer_commands_total Commands handled, by door, name and result.\n");
        out.push_str("# TYPE confer_commands_total counter\n");
        if let Ok(map) = self.commands.lock() {
            for ((door, cmd, result), n) in map.iter() {
                let cmd = escape_label(cmd);
                let _ = writeln!(
                    out,
                    "confer_commands_total{{door=\"{door}\",command=\"{cmd}\",result=\"{result}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP confer_push_total Push delivery attempts, by provider and outcome.\n");
        out.push_str("# TYPE confer_push_total counter\n");
        if let Ok(map) = self.pushes.lock() {
            for ((provider, outcome), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "confer_push_total{{provider=\"{provider}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let simple = [
            (
                "confer_events_delivered_total",
                "Events queued to sessions.",
                &self.events_delivered,
            ),
            (
                "confer_messages_stored_total",
                "Messages durably stored.",
                &self.messages_stored,
            ),
            (
                "confer_storage_commit_ops_total",
                "Write operations committed (group commit shares one transaction among many).",
                &self.commit_batch_ops,
            ),
            (
                "confer_password_hashes_total",
                "Argon2 hashes and verifications run (an unknown user's dummy one included).",
                &self.password_hashes,
            ),
            (
                "confer_password_hashes_refused_total",
                "Password work refused because the hasher's queue was full or too slow.",
                &self.password_hashes_refused,
            ),
            (
                "confer_deliveries_dropped_total",
                "Deliveries (events, forwarded commands) refused by a full session queue; the session is cut at the first.",
                &self.deliveries_dropped,
            ),
            (
                "confer_logins_throttled_total",
                "Password logins refused by the per-account or per-address limit.",
                &self.logins_throttled,
            ),
            (
                "confer_media_datagrams_dropped_total",
                "UDP datagrams the media endpoint dropped (malformed, unknown sender, failed STUN check).",
                &self.media_datagrams_dropped,
            ),
            (
                "confer_media_forwarded_total",
                "Audio and video frames the media endpoint forwarded to a receiver.",
                &self.media_forwarded,
            ),
            (
                "confer_media_over_cap_total",
                "Media frames not forwarded because their sender was over media_party_max_kbps.",
                &self.media_over_cap,
            ),
            (
                "confer_cluster_frames_dropped_total",
                "Frames for other nodes (events, pushes, media signalling) dropped: the queue to Redis was full or Redis unreachable.",
                &self.cluster_frames_dropped,
            ),
            (
                "confer_presence_uncounted_total",
                "Chat connects and closes whose presence count (Redis on a cluster) failed or took over 2 s: decided from the node's own view.",
                &self.presence_uncounted,
            ),
        ];
        for (name, help, value) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP confer_slow_consumers_cut_total Sessions disconnected because they did not read (outbound queue full or write timeout).\n# TYPE confer_slow_consumers_cut_total counter\nconfer_slow_consumers_cut_total {}",
            self.slow_consumers_cut.load(Ordering::Relaxed)
        );
        out.push_str("# HELP confer_storage_commit_seconds Storage transaction commit latency (including fsync).\n");
        out.push_str("# TYPE confer_storage_commit_seconds histogram\n");
        for (bound, bucket) in COMMIT_BUCKETS.iter().zip(&self.commit_buckets) {
            let _ = writeln!(
                out,
                "confer_storage_commit_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.commit_count.load(Ordering::Relaxed);
        let sum = self.commit_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "confer_storage_commit_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(out, "confer_storage_commit_seconds_sum {sum}");
        let _ = writeln!(out, "confer_storage_commit_seconds_count {count}");
        out
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.connection_opened("api_server");
        m.command("api_server", "core/user/login", true);
        m.command("api_server", "bad\"name", false);
        m.commit(Duration::from_micros(1500), 3);
        m.cluster_frames_dropped(2);
        assert_eq!((m.presence_uncounted(), m.presence_uncounted()), (1, 2));
        let text = m.render();
        assert!(text.contains("confer_connections{door=\"api_server\"} 1"));
        assert!(text.contains(
            "confer_commands_total{door=\"api_server\",command=\"core/user/login\",result=\"ok\"} 1"
        ));
        assert!(text.contains("command=\"bad\\\"name\""));
        assert!(text.contains("confer_storage_commit_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("confer_storage_commit_seconds_bucket{le=\"0.002\"} 1"));
        assert!(text.contains("confer_storage_commit_ops_total 3"));
        assert!(text.contains("confer_cluster_frames_dropped_total 2"));
        assert!(text.contains("confer_presence_uncounted_total 2"));
    }
}
