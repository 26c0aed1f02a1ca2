//! `cargo bench`: the cost of running a job through overnight, as ratios
//! against a baseline measured in the same run on the same machine.
//!
//! - output: a job printing N lines through `overnight exec` (capture file,
//!   protocol parsing, routing) against the same job redirected to a file;
//! - wrapper: `overnight exec -- true` against `true`, per invocation;
//! - memory: peak RSS of `overnight exec` on floods of output.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_overnight");
const LINES: u64 = 2_000_000;

fn main() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let state = dir.path().join("state");
    let overnight = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(dir.path())
            .env("OVERNIGHT_STATE_DIR", &state)
            .env_remove("OVERNIGHT_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    };
    let mut rows = Vec::new();

    // Output throughput.
    let job = format!("seq {LINES} | sed 's/$/ some payload to make a longer line/'");
    let base = best_of(3, || {
        let file = dir.path().join("plain.out");
        sh(&format!("{job} > {}", file.display()));
    });
    let ours = best_of(3, || {
        run(overnight(&[
            "exec", "--name", "flood", "--", "sh", "-c", &job,
        ]));
    });
    let rate = |d: Duration| LINES as f64 / d.as_secs_f64();
    rows.push(Row::new(
        "output lines/s",
        rate(ours),
        rate(base),
        "lines/s",
        "higher is better",
    ));

    // Wrapper overhead per invocation.
    let n = 50;
    let base = best_of(3, || (0..n).for_each(|_| run(quiet(Command::new("true")))));
    let ours = best_of(3, || {
        (0..n).for_each(|_| run(overnight(&["exec", "--", "true"])))
    });
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / f64::from(n);
    rows.push(Row::new(
        "exec -- true, ms each",
        per(ours),
        per(base),
        "ms",
        "lower is better",
    ));

    // Peak memory.
    for (case, script) in [
        ("peak RSS, 5M short lines", "seq 5000000"),
        ("peak RSS, 500 MB no newline", "head -c 500000000 /dev/zero"),
    ] {
        let kib = peak_rss_kib(overnight(&[
            "exec", "--name", "rss", "--", "sh", "-c", script,
        ]));
        rows.push(Row::new(
            case,
            kib as f64 / 1024.0,
            64.0,
            "MiB",
            "limit 64 MiB",
        ));
    }

    println!(
        "{:32} {:>14} {:>14} {:>8}  {:8} note",
        "case", "overnight", "baseline", "ratio", "unit"
    );
    for r in &rows {
        println!(
            "{:32} {:>14.2} {:>14.2} {:>8.3}  {:8} {}",
            r.case,
            r.value,
            r.baseline,
            r.value / r.baseline,
            r.unit,
            r.note
        );
    }
}

struct Row {
    case: &'static str,
    value: f64,
    baseline: f64,
    unit: &'static str,
    note: &'static str,
}

impl Row {
    fn new(
        case: &'static str,
        value: f64,
        baseline: f64,
        unit: &'static str,
        note: &'static str,
    ) -> Row {
        Row {
            case,
            value,
            baseline,
            unit,
            note,
        }
    }
}

fn quiet(mut cmd: Command) -> Command {
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    cmd
}

fn run(mut cmd: Command) {
    let status = cmd.status().expect("the command starts");
    assert!(status.code().is_some(), "{cmd:?} was killed");
}

fn sh(script: &str) {
    run(quiet({
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }));
}

fn best_of(times: u32, mut f: impl FnMut()) -> Duration {
    (0..times)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .expect("at least one run")
}

#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also reports its rusage"
)]
fn peak_rss_kib(mut cmd: Command) -> i64 {
    let child = cmd.spawn().expect("the command starts");
    let mut status = 0;
    // SAFETY: rusage is plain data, filled in by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the two locals.
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    usage.ru_maxrss
}
