//! Output lines to log files, and how late the scheduler starts a fire.

use super::*;

pub(super) const PER_JOB_FILES: &str = "appenders:\n  per_job:\n    kind: per_job_file\n    path: logs/{job}.log\n    encoder: { kind: fast_pattern, pattern: \"{d(%Y-%m-%dT%H:%M:%S%.3f)} {l} {m}{n}\" }\n    policy:\n      trigger: { kind: size, limit: 1 gb }\n      roller: { kind: fixed_window, pattern: \"logs/{job}.{}.log\", count: 3 }\nloggers:\n  jobs::log: { level: info, appenders: [per_job], additive: false }\nroot: { level: off }\n";

/// 2 million 100-byte lines routed to a per-job rolling file (plus the
/// capture file), against `job > file`, multilog and svlogd; then through
/// each log4rs file shipped in `log4rs-configs/`, unchanged, against the
/// same peers measured in the same run.
pub(super) fn output(b: &mut Bench) {
    const LINES: u64 = 2_000_000;
    let dir = b.path("output");
    std::fs::write(dir.join("log4rs.yaml"), PER_JOB_FILES).unwrap();
    let line = "x".repeat(99);
    let job = format!("yes '{line}' | head -n {LINES}");
    let rate = |d: Duration| LINES as f64 / d.as_secs_f64();
    settle_disk();
    let plain = time(|| ok(sh(&format!("{job} > {}", dir.join("plain.out").display()))));
    let _ = std::fs::remove_file(dir.join("plain.out"));
    // The peers, each once: (name, lines/s, the factor we must reach).
    let mut peers = Vec::new();
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
        if which(peer).is_none() {
            b.skipped(
                &format!("output: ours / {peer}"),
                &format!("{peer} not installed (apt-get install {package})"),
            );
            continue;
        }
        settle_disk();
        peers.push((peer, rate(time(|| ok(sh(&script)))), factor));
        let _ = std::fs::remove_dir_all(dir.join(peer));
    }
    settle_disk();
    let log_config = dir.join("log4rs.yaml");
    let ours = time(|| ok(exec_flood(&dir, &log_config, &job)));
    let routed = count_lines(&dir.join("logs/flood.log"));
    let capture = dir.join("state/runs/flood/1.log");
    let captured = count_lines(&capture);
    // Every line routed; the capture keeps all of them, or its
    // `capture_max` (64 MiB) and a last line saying how many it left out.
    let cut_said = std::fs::read_to_string(&capture)
        .ok()
        .and_then(|text| text.lines().last().map(|l| l.contains("capture_max")))
        .unwrap_or(false);
    let complete = routed == LINES && (captured == LINES || cut_said);
    let _ = std::fs::remove_dir_all(dir.join("logs"));
    let _ = std::fs::remove_dir_all(dir.join("state"));
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
    for &(peer, theirs, factor) in &peers {
        b.row(
            &format!("output: ours / {peer}"),
            ours_rate,
            theirs,
            "lines/s",
            &format!(">= {factor}x"),
            move |r| r >= factor,
            String::new(),
        );
    }
    // The shipped files as a user drops them in: where the job's lines go,
    // counted back. The console (held back under `exec`, as chronic does)
    // is measured under `overnight run`, to a file, to count it.
    for (config, routed_to) in [
        ("console.yaml", "stderr"),
        ("split-streams.yaml", "logs/jobs.log"),
        ("per-job-files.yaml", "logs/jobs/flood.log"),
        ("json-lines.yaml", "logs/overnight.jsonl"),
    ] {
        let dir = b.path(&format!("shipped-{}", config.trim_end_matches(".yaml")));
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("log4rs-configs")
            .join(config);
        // One change: no line rolls away (a 10 MB limit keeps 60 MB of
        // 300), so that every line can be counted back.
        let text = std::fs::read_to_string(&shipped)
            .unwrap()
            .replace("limit: 10 mb", "limit: 100 gb")
            .replace("limit: 50 mb", "limit: 100 gb");
        std::fs::write(dir.join(config), text).unwrap();
        let stderr = std::fs::File::create(dir.join("stderr")).unwrap();
        let mut command = if routed_to == "stderr" {
            std::fs::write(
                dir.join("overnight.yaml"),
                format!("log_config: {config}\njobs:\n  flood:\n    command: [sh, -c, {job:?}]\n"),
            )
            .unwrap();
            overnight(&dir, &["run", "flood", "-c", "overnight.yaml"])
        } else {
            exec_flood(&dir, &dir.join(config), &job)
        };
        command.stderr(stderr);
        settle_disk();
        let took = time(|| ok(command));
        let present = count_matching(&dir.join(routed_to), &line);
        let expected = LINES;
        let _ = std::fs::remove_dir_all(&dir);
        let ours = rate(took);
        let mut note = format!("{present} of {expected} lines in {routed_to}");
        let mut beats = Vec::new();
        for &(peer, theirs, factor) in &peers {
            note.push_str(&format!("; {:.2}x {peer}", ours / theirs));
            beats.push(ours / theirs >= factor);
        }
        let beats_all = beats.iter().all(|b| *b) && !peers.is_empty();
        let (baseline, target) = match peers.first() {
            Some(&(_, multilog, _)) => (multilog, ">= 2.5x multilog, >= 4x svlogd"),
            None => (rate(plain), "peers not installed"),
        };
        let floor = if config == "per-job-files.yaml" {
            2.5e6
        } else {
            0.0
        };
        b.row(
            &format!("output: {config} as shipped"),
            ours,
            baseline,
            "lines/s",
            target,
            move |_| beats_all && present == expected && ours >= floor,
            note,
        );
    }
}

/// `overnight exec --name flood` of `job` under the log4rs file `config`.
fn exec_flood(dir: &Path, config: &Path, job: &str) -> Command {
    overnight(
        dir,
        &[
            "exec",
            "--name",
            "flood",
            "--log-config",
            config.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            job,
        ],
    )
}

/// The lines of `path` that hold `text`.
fn count_matching(path: &Path, text: &str) -> u64 {
    let Ok(file) = std::fs::File::open(path) else {
        return 0;
    };
    BufReader::new(file)
        .split(b'\n')
        .filter_map(Result::ok)
        .filter(|l| memchr::memmem::find(l, text.as_bytes()).is_some())
        .count() as u64
}

/// Writes back what earlier cases (or a build) left dirty, so that each
/// contender of the output case starts from the same quiet disk instead of
/// paying for another's writeback. (Each case's files are also removed
/// once counted: on this VM, page cache that grows into memory never
/// touched before costs every writer dearly — a fifth run of the same
/// case, its predecessors' gigabytes kept, went at a third of the speed.)
pub(super) fn settle_disk() {
    ok(Command::new("sync"));
}

pub(super) fn count_lines(path: &Path) -> u64 {
    std::fs::File::open(path).map_or(0, |f| BufReader::new(f).split(b'\n').count() as u64)
}

/// Fires of a per-second schedule: start lateness against the scheduled
/// instant, p50 and p99.
pub(super) fn precision(b: &mut Bench) {
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
            let runs = store
                .history(&overnight::store::HistoryQuery::latest(
                    Some("tick"),
                    100_000,
                ))
                .await
                .unwrap();
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
