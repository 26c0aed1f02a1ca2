//! What this process did, counted for Prometheus (`GET /metrics`,
//! DESIGN §9): runs by job and status, their durations, fires not run,
//! trigger deliveries, output lines routed; flow runs likewise.
//!
//! Counters live in this process and start at zero with it, as
//! Prometheus expects of counters; what must survive a restart (the last
//! success of each job, which the "no success in 25 hours" alert reads)
//! comes from the history when scraped. Counting costs a lock per ended
//! run and an atomic add per batch of lines.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The upper bounds of the duration histograms, in seconds: a second to
/// eight hours, the span of a night's batch.
const BUCKETS: [f64; 11] = [
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
];

/// Runs (or flow runs) ended, by name and status, with their durations.
#[derive(Debug)]
struct Ended {
    /// (name, status) → count.
    counts: BTreeMap<(String, &'static str), u64>,
    /// name → histogram.
    durations: BTreeMap<String, Histogram>,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Ended {
    const fn new() -> Ended {
        Ended {
            counts: BTreeMap::new(),
            durations: BTreeMap::new(),
        }
    }

    fn add(&mut self, name: &str, status: &'static str, seconds: Option<f64>) {
        *self.counts.entry((name.to_string(), status)).or_default() += 1;
        if let Some(seconds) = seconds {
            let histogram = self.durations.entry(name.to_string()).or_default();
            for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            histogram.count += 1;
            histogram.sum += seconds;
        }
    }
}

#[derive(Debug)]
struct Counts {
    runs: Ended,
    flows: Ended,
    /// (job, missed|skipped) → count.
    not_run: BTreeMap<(String, &'static str), u64>,
    /// (action, outcome) → count.
    deliveries: BTreeMap<(String, &'static str), u64>,
}

static COUNTS: Mutex<Counts> = Mutex::new(Counts {
    runs: Ended::new(),
    flows: Ended::new(),
    not_run: BTreeMap::new(),
    deliveries: BTreeMap::new(),
});
static LINES: AtomicU64 = AtomicU64::new(0);

fn counts<T>(f: impl FnOnce(&mut Counts) -> T) -> T {
    f(&mut COUNTS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A run ended (its last attempt), after `seconds`.
pub fn run_ended(job: &str, status: &'static str, seconds: f64) {
    counts(|c| c.runs.add(job, status, Some(seconds)));
}

/// A fire of `job` did not run (`missed`, `skipped`).
pub fn not_run(job: &str, status: &'static str) {
    counts(|c| *c.not_run.entry((job.to_string(), status)).or_default() += 1);
}

/// A trigger's `action` was delivered with `outcome`.
pub fn delivery(action: &str, outcome: &'static str) {
    counts(|c| {
        *c.deliveries
            .entry((action.to_string(), outcome))
            .or_default() += 1
    });
}

/// A flow run ended; `seconds` when it ran at all.
pub fn flow_ended(flow: &str, status: &'static str, seconds: Option<f64>) {
    counts(|c| c.flows.add(flow, status, seconds));
}

/// `n` lines of output were routed.
pub fn lines(n: u64) {
    LINES.fetch_add(n, Ordering::Relaxed);
}

/// What the history and the daemon know now, beside the counters.
#[derive(Debug, Default)]
pub struct Now {
    /// Runs going in this process.
    pub running: usize,
    /// Each job's latest run that ended `success` or `warning`: when.
    pub last_success: Vec<(String, f64)>,
    /// Each flow's latest run that ended `success` or `warning`: when.
    pub flow_last_success: Vec<(String, f64)>,
    /// Flow runs waiting for an operator.
    pub flows_held: usize,
}

/// Everything, in Prometheus' text format (version 0.0.4).
pub fn render(now: &Now) -> String {
    let mut out = String::with_capacity(4096);
    counts(|c| {
        ended(
            &mut out,
            "overnight_runs",
            "Runs ended (their last attempt), by job and status.",
            "job",
            &c.runs,
        );
        pairs(
            &mut out,
            "overnight_fires_not_run_total",
            "Scheduled fires not run, by job and why (missed, skipped).",
            ("job", "status"),
            &c.not_run,
        );
        pairs(
            &mut out,
            "overnight_trigger_deliveries_total",
            "Trigger deliveries, by action and outcome.",
            ("action", "outcome"),
            &c.deliveries,
        );
        ended(
            &mut out,
            "overnight_flow_runs",
            "Flow runs ended, by flow and status.",
            "flow",
            &c.flows,
        );
    });
    family(
        &mut out,
        "overnight_output_lines_total",
        "counter",
        "Lines of output routed to the log targets.",
    );
    let _ = writeln!(
        out,
        "overnight_output_lines_total {}",
        LINES.load(Ordering::Relaxed)
    );
    family(
        &mut out,
        "overnight_running_runs",
        "gauge",
        "Runs going now in this daemon.",
    );
    let _ = writeln!(out, "overnight_running_runs {}", now.running);
    family(
        &mut out,
        "overnight_flow_runs_held",
        "gauge",
        "Flow runs waiting for an operator.",
    );
    let _ = writeln!(out, "overnight_flow_runs_held {}", now.flows_held);
    family(
        &mut out,
        "overnight_job_last_success_timestamp_seconds",
        "gauge",
        "When each job's latest run that ended success or warning ended (Unix time).",
    );
    for (job, at) in &now.last_success {
        let _ = writeln!(
            out,
            "overnight_job_last_success_timestamp_seconds{{job=\"{}\"}} {at}",
            escape(job)
        );
    }
    family(
        &mut out,
        "overnight_flow_last_success_timestamp_seconds",
        "gauge",
        "When each flow's latest run that ended success or warning ended (Unix time).",
    );
    for (flow, at) in &now.flow_last_success {
        let _ = writeln!(
            out,
            "overnight_flow_last_success_timestamp_seconds{{flow=\"{}\"}} {at}",
            escape(flow)
        );
    }
    out
}

/// A counter by two labels: a name (escaped) and a word of ours.
fn pairs(
    out: &mut String,
    name: &str,
    help: &str,
    (first, second): (&str, &str),
    counts: &BTreeMap<(String, &'static str), u64>,
) {
    family(out, name, "counter", help);
    for ((value, word), n) in counts {
        let _ = writeln!(
            out,
            "{name}{{{first}=\"{}\",{second}=\"{word}\"}} {n}",
            escape(value)
        );
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `<prefix>_total{<label>,status}` and `<prefix>_duration_seconds`.
fn ended(out: &mut String, prefix: &str, help: &str, label: &str, ended: &Ended) {
    family(out, &format!("{prefix}_total"), "counter", help);
    for ((name, status), n) in &ended.counts {
        let _ = writeln!(
            out,
            "{prefix}_total{{{label}=\"{}\",status=\"{status}\"}} {n}",
            escape(name)
        );
    }
    let histogram = format!("{prefix}_duration_seconds");
    family(
        out,
        &histogram,
        "histogram",
        "How long they took, in seconds.",
    );
    for (name, h) in &ended.durations {
        let name = escape(name);
        for (bound, n) in BUCKETS.iter().zip(h.buckets) {
            let _ = writeln!(
                out,
                "{histogram}_bucket{{{label}=\"{name}\",le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "{histogram}_bucket{{{label}=\"{name}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "{histogram}_sum{{{label}=\"{name}\"}} {}", h.sum);
        let _ = writeln!(out, "{histogram}_count{{{label}=\"{name}\"}} {}", h.count);
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A histogram's buckets are cumulative; label values are escaped.
    #[test]
    fn buckets_add_up_and_labels_are_escaped() {
        let mut ended = Ended::new();
        ended.add("a\"b", "success", Some(3.0));
        ended.add("a\"b", "failed", Some(100.0));
        let mut out = String::new();
        super::ended(&mut out, "t", "help", "job", &ended);
        assert!(
            out.contains("t_total{job=\"a\\\"b\",status=\"success\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("t_duration_seconds_bucket{job=\"a\\\"b\",le=\"1\"} 0"),
            "{out}"
        );
        assert!(
            out.contains("t_duration_seconds_bucket{job=\"a\\\"b\",le=\"5\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("t_duration_seconds_bucket{job=\"a\\\"b\",le=\"300\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("t_duration_seconds_bucket{job=\"a\\\"b\",le=\"+Inf\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("t_duration_seconds_sum{job=\"a\\\"b\"} 103"),
            "{out}"
        );
    }
}
