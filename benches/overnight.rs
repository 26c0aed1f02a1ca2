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

/// 2,000 runs of /bin/true through the daemon's run path (history and log
/// routing on) against spawning `sh -c true` from a tight loop.
async fn dispatch(b: &mut Bench) {
    const RUNS: u32 = 2000;
    let dir = b.path("dispatch");
    let raw = time(|| (0..RUNS).for_each(|_| ok(sh("true"))));
    std::fs::write(dir.join("log4rs.yaml"), PER_JOB_FILES).unwrap();
    overnight::route::install(overnight::route::load(&dir.join("log4rs.yaml")).unwrap());
    let store = overnight::store::Store::open(&dir.join("state"))
        .await
        .unwrap();
    // The daemon's recorder: the journal, folded into the store in the
    // background; the last fold is inside the time.
    let (recorder, journal) = overnight::store::Recorder::journal_of(&store).unwrap();
    let folding = store.fold_in_background(journal);
    let runner = overnight::runner::Runner::new(recorder, dir.join("state"), None);
    let job = overnight::config::Job::adhoc("true".into(), vec!["/bin/true".into()]);
    let start = Instant::now();
    for _ in 0..RUNS {
        runner
            .run(&job, overnight::report::Trigger::Manual, None)
            .await
            .unwrap();
    }
    folding.abort();
    store.fold_journal().await.unwrap();
    let ours = start.elapsed();
    let recorded = store.history(Some("true"), RUNS).await.unwrap();
    assert!(
        recorded.len() == RUNS as usize && recorded.iter().all(|r| r.status == "success"),
        "every run recorded as a success"
    );
    let rate = |d: Duration| f64::from(RUNS) / d.as_secs_f64();
    b.row(
        "dispatch: /bin/true runs/s",
        rate(ours),
        rate(raw),
        "runs/s",
        ">= 0.70 of sh -c true",
        |r| r >= 0.70,
        String::new(),
    );
}

/// `overnight exec -- /bin/true` against the bare command, and chronic.
fn wrapper(b: &mut Bench) {
    let n = 200;
    let dir = b.path("wrapper");
    let bare = time(|| (0..n).for_each(|_| ok(Command::new("/bin/true"))));
    let ours = time(|| (0..n).for_each(|_| ok(overnight(&dir, &["exec", "--", "/bin/true"]))));
    let added = |d: Duration| (d.as_secs_f64() - bare.as_secs_f64()) * 1000.0 / f64::from(n);
    let our_added = added(ours);
    let per_bare = bare.as_secs_f64() * 1000.0 / f64::from(n);
    b.row(
        "wrapper: exec -- /bin/true, ms added",
        our_added,
        5.0,
        "ms",
        "<= 5 ms added",
        |r| r <= 1.0,
        format!("bare /bin/true {per_bare:.2} ms"),
    );
    match which("chronic") {
        Some(chronic) => {
            let theirs = time(|| {
                (0..n).for_each(|_| {
                    let mut c = Command::new(&chronic);
                    c.arg("/bin/true").stdout(Stdio::null());
                    ok(c)
                })
            });
            b.row(
                "wrapper: chronic overhead / ours",
                added(theirs),
                our_added,
                "ms",
                ">= 10x",
                |r| r >= 10.0,
                String::new(),
            );
        }
        None => b.skipped(
            "wrapper: chronic overhead / ours",
            "chronic not installed (apt-get install moreutils)",
        ),
    }
}

const PER_JOB_FILES: &str = "appenders:\n  per_job:\n    kind: per_job_file\n    path: logs/{job}.log\n    encoder: { kind: fast_pattern, pattern: \"{d(%Y-%m-%dT%H:%M:%S%.3f)} {l} {m}{n}\" }\n    policy:\n      trigger: { kind: size, limit: 1 gb }\n      roller: { kind: fixed_window, pattern: \"logs/{job}.{}.log\", count: 3 }\nloggers:\n  jobs::log: { level: info, appenders: [per_job], additive: false }\nroot: { level: off }\n";

/// 2 million 100-byte lines routed to a per-job rolling file (plus the
/// capture file), against `job > file`, multilog and svlogd.
fn output(b: &mut Bench) {
    const LINES: u64 = 2_000_000;
    let dir = b.path("output");
    std::fs::write(dir.join("log4rs.yaml"), PER_JOB_FILES).unwrap();
    let job = format!("yes '{}' | head -n {LINES}", "x".repeat(99));
    let rate = |d: Duration| LINES as f64 / d.as_secs_f64();
    settle_disk();
    let plain = time(|| ok(sh(&format!("{job} > {}", dir.join("plain.out").display()))));
    settle_disk();
    let log_config = dir.join("log4rs.yaml");
    let ours = time(|| {
        ok(overnight(
            &dir,
            &[
                "exec",
                "--name",
                "flood",
                "--log-config",
                log_config.to_str().unwrap(),
                "--",
                "sh",
                "-c",
                &job,
            ],
        ))
    });
    let routed = count_lines(&dir.join("logs/flood.log"));
    let captured = count_lines(&dir.join("state/runs/flood/1.log"));
    let complete = routed == LINES && captured == LINES;
    let ours_rate = rate(ours);
    b.row(
        "output: lines/s to a per-job file",
        ours_rate,
        rate(plain),
        "lines/s",
        ">= 1.5M lines/s",
        |_| ours_rate >= 1.5e6 && complete,
        format!(
            "job > file {:.2}M lines/s; {routed} routed, {captured} captured",
            rate(plain) / 1e6
        ),
    );
    for (peer, package, script, factor) in [
        (
            "multilog",
            "daemontools",
            format!("{job} | multilog t {}", dir.join("multilog").display()),
            2.5,
        ),
        (
            "svlogd",
            "runit",
            format!(
                "mkdir -p {d} && {job} | svlogd -tt {d}",
                d = dir.join("svlogd").display()
            ),
            4.0,
        ),
    ] {
        let case = format!("output: ours / {peer}");
        if which(peer).is_none() {
            b.skipped(
                &case,
                &format!("{peer} not installed (apt-get install {package})"),
            );
            continue;
        }
        settle_disk();
        let theirs = time(|| ok(sh(&script)));
        b.row(
            &case,
            ours_rate,
            rate(theirs),
            "lines/s",
            &format!(">= {factor}x"),
            move |r| r >= factor,
            String::new(),
        );
    }
}

/// Writes back what earlier cases (or a build) left dirty, so that each
/// contender of the output case starts from the same quiet disk instead of
/// paying for another's writeback.
fn settle_disk() {
    ok(Command::new("sync"));
}

fn count_lines(path: &Path) -> u64 {
    std::fs::File::open(path).map_or(0, |f| BufReader::new(f).split(b'\n').count() as u64)
}

/// Fires of a per-second schedule: start lateness against the scheduled
/// instant, p50 and p99.
fn precision(b: &mut Bench) {
    let fires = if b.quick { 20 } else { 200 };
    let dir = b.path("precision");
    std::fs::write(dir.join("overnight.yaml"), "listen: 127.0.0.1:0\njobs:\n  tick:\n    command: [/bin/true]\n    schedule: '* * * * * *'\n").unwrap();
    let mut daemon = overnight(&dir, &["daemon"]).spawn().unwrap();
    let state = dir.join(".overnight");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lateness: Vec<f64> = loop {
        std::thread::sleep(Duration::from_secs(1));
        if !state.join("overnight.db").exists() {
            continue;
        }
        let runs = runtime.block_on(async {
            let store = overnight::store::Store::open(&state).await.unwrap();
            let runs = store.history(Some("tick"), 100_000).await.unwrap();
            store.close().await;
            runs
        });
        let late: Vec<f64> = runs
            .iter()
            .filter(|r| r.status == "success")
            .filter_map(|r| {
                let at = r
                    .scheduled_at
                    .as_deref()?
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .ok()?;
                let started = r.started_at.parse::<chrono::DateTime<chrono::Utc>>().ok()?;
                Some((started - at).num_microseconds()? as f64 / 1000.0)
            })
            .collect();
        if late.len() >= fires {
            break late;
        }
    };
    let _ = daemon.kill();
    let _ = daemon.wait();
    let mut sorted = lateness;
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    let (p50, p99) = (pct(0.50), pct(0.99));
    b.row(
        "precision: start lateness p50",
        p50,
        5.0,
        "ms",
        "(p99 <= 5 ms)",
        |_| true,
        format!("{} fires", sorted.len()),
    );
    b.row(
        "precision: start lateness p99",
        p99,
        5.0,
        "ms",
        "<= 5 ms",
        |r| r <= 1.0,
        "Debian's cron: ~1.85 s after the minute (DESIGN §7)".into(),
    );
}

/// 10,000 scheduled jobs: start to first deadline armed, idle RSS, and CPU
/// over an idle stretch.
struct Idle {
    daemon: std::process::Child,
    armed: Duration,
    rss_kib: u64,
    cpu_start: u64,
    started: Instant,
}

fn scale_start(b: &Bench) -> Idle {
    const JOBS: usize = 10_000;
    let dir = b.path("scale");
    let mut file = String::from("listen: 127.0.0.1:0\ntimezone: UTC\njobs:\n");
    for i in 0..JOBS {
        // Yearly, on the first of January: none fires while measured.
        file.push_str(&format!(
            "  job-{i}:\n    command: [/bin/true]\n    schedule: '{} {} 1 1 *'\n",
            i % 60,
            (i / 60) % 24
        ));
    }
    std::fs::write(dir.join("overnight.yaml"), file).unwrap();
    let start = Instant::now();
    let mut daemon = overnight(&dir, &["daemon"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(daemon.stderr.take().unwrap()).lines();
    let armed = loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("scheduler armed") => break start.elapsed(),
            Some(_) => {}
            None => panic!("the daemon ended before arming"),
        }
    };
    // Keep draining stderr so the daemon never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    std::thread::sleep(Duration::from_secs(2));
    let pid = daemon.id();
    Idle {
        rss_kib: status_field(pid, "VmRSS:"),
        cpu_start: cpu_ticks(pid),
        started: Instant::now(),
        armed,
        daemon,
    }
}

fn scale_finish(b: &mut Bench, mut idle: Idle) {
    let span = Duration::from_secs(if b.quick { 10 } else { 60 });
    if let Some(rest) = span.checked_sub(idle.started.elapsed()) {
        std::thread::sleep(rest);
    }
    let ticks = cpu_ticks(idle.daemon.id()) - idle.cpu_start;
    let over = idle.started.elapsed().as_secs_f64();
    let _ = idle.daemon.kill();
    let _ = idle.daemon.wait();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let per_minute_ms = ticks as f64 / hz * 1000.0 * 60.0 / over;
    b.row(
        "scale: 10k jobs, start to armed",
        idle.armed.as_secs_f64() * 1000.0,
        300.0,
        "ms",
        "<= 300 ms",
        |r| r <= 1.0,
        String::new(),
    );
    b.row(
        "scale: 10k jobs, idle RSS",
        idle.rss_kib as f64 / 1024.0,
        40.0,
        "MiB",
        "<= 40 MiB",
        |r| r <= 1.0,
        String::new(),
    );
    b.row(
        "scale: CPU per idle minute",
        per_minute_ms,
        50.0,
        "ms",
        "< 50 ms",
        |r| r < 1.0,
        format!("measured over {over:.0} s"),
    );
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap_or(0) + 1..]
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// A million recorded runs: `history JOB --limit 50`; and the store's
/// write rate against raw SQLite insert-then-update pairs.
async fn history(b: &mut Bench) {
    let dir = b.path("history");
    let state = dir.join("state");
    overnight::store::Store::open(&state)
        .await
        .unwrap()
        .close()
        .await;
    let url = format!("sqlite://{}", state.join("overnight.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::raw_sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) \
         INSERT INTO runs (job, trigger, started_at, finished_at, status, summary, host) \
         SELECT 'job-' || (i % 100), 'schedule', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:01.000000Z', 'success', 'exit 0', 'bench' FROM n",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let median = |dir: &Path| {
        let mut times: Vec<f64> = (0..15)
            .map(|_| {
                time(|| ok(overnight(dir, &["history", "job-7", "--limit", "50"]))).as_secs_f64()
                    * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let with_million = median(&dir);
    let empty_dir = b.path("history-empty");
    overnight::store::Store::open(&empty_dir.join("state"))
        .await
        .unwrap()
        .close()
        .await;
    let baseline = median(&empty_dir);
    b.row(
        "history: JOB --limit 50 of 1M runs",
        with_million,
        baseline,
        "ms",
        "<= 50 ms",
        |_| with_million <= 50.0,
        "baseline: the same on an empty store".into(),
    );

    const WRITES: u32 = 5000;
    let start = Instant::now();
    for i in 0..WRITES {
        let id = sqlx::query("INSERT INTO runs (job, trigger, started_at, status, host) VALUES ('raw', 'manual', ?, 'running', 'bench')")
            .bind(i.to_string())
            .execute(&mut conn)
            .await
            .unwrap()
            .last_insert_rowid();
        sqlx::query("UPDATE runs SET status = 'success', finished_at = ? WHERE id = ?")
            .bind(i.to_string())
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let raw = start.elapsed();
    let store = overnight::store::Store::open(&state).await.unwrap();
    let record = |recorder: overnight::store::Recorder| {
        let state = state.clone();
        async move {
            let start = Instant::now();
            for _ in 0..WRITES {
                let id = recorder.next_run_id().unwrap();
                let run = overnight::store::NewRun {
                    id,
                    job: "bench".into(),
                    trigger: overnight::report::Trigger::Manual,
                    scheduled_at: None,
                    started_at: chrono::Utc::now(),
                    host: "bench".into(),
                    pid: std::process::id(),
                    runner_started: None,
                    locks: Vec::new(),
                    capture: state.join(format!("{id}.log")),
                };
                recorder.start_run(&run).await.unwrap();
                let header = overnight::report::RunHeader::now(
                    id,
                    "bench",
                    overnight::report::Trigger::Manual,
                );
                let report = overnight::report::Report::synthetic(
                    &header,
                    overnight::report::Status::Success,
                    "ok",
                );
                recorder.finish_run(&report).await.unwrap();
            }
            // Folded in: the history has every run.
            recorder.store().await.unwrap();
            start.elapsed()
        }
    };
    let direct = record(overnight::store::Recorder::Store(store.clone())).await;
    let journaled = record(overnight::store::Recorder::journal_of(&store).unwrap().0).await;
    let recorded = store.history(Some("bench"), 2 * WRITES).await.unwrap();
    assert_eq!(recorded.len(), 2 * WRITES as usize, "every run recorded");
    assert!(recorded.iter().all(|r| r.status == "success"));
    let rate = |d: Duration| f64::from(WRITES) / d.as_secs_f64();
    let ours_rate = rate(journaled);
    b.row(
        "history: runs recorded/s",
        ours_rate,
        rate(raw),
        "runs/s",
        ">= 5000 runs/s",
        |_| ours_rate >= 5000.0,
        "the daemon's way: journal, then one fold; baseline: raw insert+update pairs".into(),
    );
    let direct_rate = rate(direct);
    b.row(
        "history: runs recorded/s, one by one",
        direct_rate,
        rate(raw),
        "runs/s",
        "(for comparison)",
        |_| true,
        "each start and end its own SQLite statement".into(),
    );
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
