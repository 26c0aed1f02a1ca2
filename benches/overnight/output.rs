//! Output lines to log files, and how late the scheduler starts a fire.

use super::*;

pub(super) const PER_JOB_FILES: &str = "appenders:\n  per_job:\n    kind: per_job_file\n    path: logs/{job}.log\n    encoder: { kind: fast_pattern, pattern: \"{d(%Y-%m-%dT%H:%M:%S%.3f)} {l} {m}{n}\" }\n    policy:\n      trigger: { kind: size, limit: 1 gb }\n      roller: { kind: fixed_window, pattern: \"logs/{job}.{}.log\", count: 3 }\nloggers:\n  jobs::log: { level: info, appenders: [per_job], additive: false }\nroot: { level: off }\n";

/// 2 million 100-byte lines routed to a per-job rolling file (plus the
/// capture file), against `job > file`, multilog and svlogd.
pub(super) fn output(b: &mut Bench) {
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
    let capture = dir.join("state/runs/flood/1.log");
    let captured = count_lines(&capture);
    // Every line routed; the capture keeps all of them, or its
    // `capture_max` (64 MiB) and a last line saying how many it left out.
    let cut_said = std::fs::read_to_string(&capture)
        .ok()
        .and_then(|text| text.lines().last().map(|l| l.contains("capture_max")))
        .unwrap_or(false);
    let complete = routed == LINES && (captured == LINES || cut_said);
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
