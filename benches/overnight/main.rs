//! `cargo bench`: overnight against the raw limits and the tools it
//! replaces, every figure a ratio against a baseline measured in the same
//! run on the same machine (issue 7, docs/benchmarks.md).
//!
//! Prints a table — case, value, baseline, ratio, target, pass — and writes
//! it as JSON to `target/bench/overnight.json`. Peers from Debian's packages
//! (chronic, multilog, svlogd) are used when installed, skipped otherwise.
//! Where the target is an absolute figure, the baseline column holds it.
//! `OVERNIGHT_BENCH_QUICK=1` shortens the cases that take minutes
//! (precision: 20 fires instead of 200; the idle stretch: 10 s, not 60).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod flows;
mod live;
mod output;
mod scale;
mod starts;

use output::{output, precision};
use scale::{history, scale_finish, scale_start};
use starts::{claims_postgres, dispatch, dispatch_postgres, wrapper};

const BIN: &str = env!("CARGO_BIN_EXE_overnight");

#[derive(Debug, serde::Serialize)]
struct Row {
    case: String,
    value: f64,
    baseline: f64,
    unit: String,
    ratio: f64,
    target: String,
    pass: Option<bool>,
    note: String,
}

struct Bench {
    rows: Vec<Row>,
    dir: tempfile::TempDir,
    quick: bool,
}

impl Bench {
    /// A row whose ratio is `value / baseline`, passing when `ok(ratio)`.
    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        case: &str,
        value: f64,
        baseline: f64,
        unit: &str,
        target: &str,
        ok: impl Fn(f64) -> bool,
        note: String,
    ) {
        let ratio = value / baseline;
        self.rows.push(Row {
            case: case.into(),
            value,
            baseline,
            unit: unit.into(),
            ratio,
            target: target.into(),
            pass: Some(ok(ratio)),
            note,
        });
    }

    fn skipped(&mut self, case: &str, why: &str) {
        self.rows.push(Row {
            case: case.into(),
            value: f64::NAN,
            baseline: f64::NAN,
            unit: String::new(),
            ratio: f64::NAN,
            target: String::new(),
            pass: None,
            note: format!("skipped: {why}"),
        });
    }

    fn path(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }
}

/// `overnight ARGS…` in `dir`, with its own state.
fn overnight(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env("OVERNIGHT_STATE_DIR", dir.join("state"))
        .env_remove("OVERNIGHT_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn main() {
    let quick = std::env::var_os("OVERNIGHT_BENCH_QUICK").is_some();
    let mut b = Bench {
        rows: Vec::new(),
        dir: tempfile::tempdir().expect("a temp dir"),
        quick,
    };
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |case: &str| only.as_deref().is_none_or(|o| case.contains(o));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The idle stretch of the scale case runs beside the precision case.
    let idle = wanted("scale").then(|| scale_start(&b));
    if wanted("dispatch") {
        runtime.block_on(dispatch(&mut b));
    }
    if wanted("dispatch-postgres") {
        runtime.block_on(dispatch_postgres(&mut b));
    }
    if wanted("claims-postgres") {
        runtime.block_on(claims_postgres(&mut b));
    }
    if wanted("wrapper") {
        wrapper(&mut b);
    }
    if wanted("output") {
        output(&mut b);
    }
    if wanted("precision") {
        precision(&mut b);
    }
    if let Some(idle) = idle {
        scale_finish(&mut b, idle);
    }
    if wanted("history") {
        runtime.block_on(history(&mut b));
    }
    if wanted("flows") {
        runtime.block_on(flows::flows(&mut b));
    }
    if wanted("live") {
        runtime.block_on(live::live(&mut b));
    }
    report(&b);
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn ok(mut cmd: Command) {
    let status = cmd.status().expect("the command starts");
    assert!(status.code().is_some(), "{cmd:?} was killed");
}

fn report(b: &Bench) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\n{:38} {:>12} {:>12} {:>8} {:7} {:22} {:5} note",
        "case", "value", "baseline", "ratio", "unit", "target", "pass"
    );
    for r in &b.rows {
        let pass = match r.pass {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "skip",
        };
        let _ = writeln!(
            out,
            "{:38} {:>12.2} {:>12.2} {:>8.3} {:7} {:22} {:5} {}",
            r.case, r.value, r.baseline, r.ratio, r.unit, r.target, pass, r.note
        );
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let doc = serde_json::json!({
        "date": chrono::Utc::now().to_rfc3339(),
        "machine": machine(),
        "quick": b.quick,
        "rows": b.rows,
    });
    let path = dir.join("overnight.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let _ = writeln!(out, "\nwritten to {}", path.display());
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split(':')
                .nth(1)
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}
