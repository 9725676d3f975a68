//! What a scenario measures and how it is shown: `Row`s printed as JSON lines and a
//! Markdown table, and the small statistics they are made of.

use serde_json::json;

/// One measured figure.
pub(crate) struct Row {
    pub(crate) scenario: &'static str,
    pub(crate) target: String,
    pub(crate) metric: &'static str,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
}

impl Row {
    /// confer's figure as a ratio of a peer's.
    pub(crate) fn ratio(
        scenario: &'static str,
        target: String,
        metric: &'static str,
        confer: f64,
        peer: f64,
    ) -> Row {
        Row {
            scenario,
            target,
            metric,
            value: confer / peer.max(1.0),
            unit: "",
        }
    }
}

pub(crate) fn print_rows(rows: &[Row]) {
    for r in rows {
        println!(
            "{}",
            json!({"scenario": r.scenario, "target": r.target, "metric": r.metric, "value": r.value, "unit": r.unit})
        );
    }
    println!("\n| scenario | target | metric | value |\n|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.3} {} |",
            r.scenario, r.target, r.metric, r.value, r.unit
        );
    }
}

pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Latency percentiles (ms) of sorted microsecond samples.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// The value of one metric in a scenario's rows.
pub(crate) fn metric(rows: &[Row], name: &str) -> f64 {
    rows.iter()
        .find(|r| r.metric == name)
        .map_or(0.0, |r| r.value)
}
