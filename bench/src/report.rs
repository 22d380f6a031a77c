//! Per-client statistics, merged into one report at the end.
//!
//! Each client records into its own HDR histogram (microseconds, 3 significant digits), so
//! recording costs no synchronisation; histograms are merged once the run is over.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Error messages kept per report (the rest are only counted).
const MAX_ERROR_KINDS: usize = 8;

/// What one client (or one watch stream) measured.
pub struct Stats {
    pub hist: Histogram<u64>,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
}

impl Stats {
    pub fn new() -> Self {
        // 1 µs .. 1 h, auto-resizing beyond that.
        let mut hist = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds");
        hist.auto(true);
        Stats { hist, errors: 0, error_kinds: BTreeMap::new() }
    }

    pub fn ok(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self.hist.record(us);
    }

    pub fn error(&mut self, message: impl Into<String>) {
        self.errors_n(message, 1);
    }

    pub fn errors_n(&mut self, message: impl Into<String>, n: u64) {
        self.errors += n;
        let message = message.into();
        if self.error_kinds.len() < MAX_ERROR_KINDS || self.error_kinds.contains_key(&message) {
            *self.error_kinds.entry(message).or_default() += n;
        }
    }

    pub fn merge(&mut self, other: Stats) {
        let _ = self.hist.add(&other.hist);
        self.errors += other.errors;
        for (k, n) in other.error_kinds {
            if self.error_kinds.len() < MAX_ERROR_KINDS || self.error_kinds.contains_key(&k) {
                *self.error_kinds.entry(k).or_default() += n;
            }
        }
    }
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

/// The result of one benchmark run.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Report {
    pub workload: String,
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub conns: usize,
    pub key_size: usize,
    pub val_size: usize,
    pub sequential_keys: bool,
    /// Successful requests (for watch-latency: events received, one per watcher per put).
    pub requests: u64,
    pub errors: u64,
    /// Up to 8 distinct error messages with their counts.
    pub error_kinds: BTreeMap<String, u64>,
    pub elapsed_secs: f64,
    /// Successful requests per second.
    pub throughput: f64,
    pub latency_ms: Latency,
}

impl Report {
    pub(crate) fn build(
        workload: String,
        args: &crate::BenchArgs,
        stats: Stats,
        elapsed: Duration,
    ) -> Report {
        let h = &stats.hist;
        let ms = |us: u64| us as f64 / 1000.0;
        let requests = h.len();
        let latency_ms = if requests == 0 {
            Latency { min: 0.0, mean: 0.0, p50: 0.0, p90: 0.0, p99: 0.0, p99_9: 0.0, max: 0.0 }
        } else {
            Latency {
                min: ms(h.min()),
                mean: h.mean() / 1000.0,
                p50: ms(h.value_at_quantile(0.50)),
                p90: ms(h.value_at_quantile(0.90)),
                p99: ms(h.value_at_quantile(0.99)),
                p99_9: ms(h.value_at_quantile(0.999)),
                max: ms(h.max()),
            }
        };
        let secs = elapsed.as_secs_f64();
        Report {
            workload,
            endpoints: args.endpoints.clone(),
            clients: args.clients,
            conns: args.conns,
            key_size: args.key_size,
            val_size: args.val_size,
            sequential_keys: args.sequential_keys,
            requests,
            errors: stats.errors,
            error_kinds: stats.error_kinds,
            elapsed_secs: secs,
            throughput: if secs > 0.0 { requests as f64 / secs } else { 0.0 },
            latency_ms,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn to_text(&self) -> String {
        let l = &self.latency_ms;
        let mut s = format!(
            "workload    {}\nendpoints   {}\nclients     {} over {} connection(s); keys {} B ({}), values {} B\n\
             requests    {} ok, {} errors in {:.2} s\nthroughput  {:.1} req/s\n\
             latency ms  min {:.3}  mean {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n",
            self.workload,
            self.endpoints.join(","),
            self.clients,
            self.conns,
            self.key_size,
            if self.sequential_keys { "sequential" } else { "random" },
            self.val_size,
            self.requests,
            self.errors,
            self.elapsed_secs,
            self.throughput,
            l.min,
            l.mean,
            l.p50,
            l.p90,
            l.p99,
            l.p99_9,
            l.max,
        );
        for (msg, n) in &self.error_kinds {
            s.push_str(&format!("error       {n} x {msg}\n"));
        }
        s
    }
}
