//! Ten thousand jobs at rest, and the history under load.

use super::*;

/// 10,000 scheduled jobs: start to first deadline armed, idle RSS, and CPU
/// over an idle stretch.
pub(super) struct Idle {
    daemon: std::process::Child,
    armed: Duration,
    rss_kib: u64,
    cpu_start: u64,
    started: Instant,
}

pub(super) fn scale_start(b: &Bench) -> Idle {
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

pub(super) fn scale_finish(b: &mut Bench, mut idle: Idle) {
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

pub(super) fn status_field(pid: u32, field: &str) -> u64 {
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

pub(super) fn cpu_ticks(pid: u32) -> u64 {
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
pub(super) async fn history(b: &mut Bench) {
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
                let id = recorder.next_run_id().await.unwrap();
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
                    flow_step: None,
                    epoch: None,
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
    let recorded = store
        .history(&overnight::store::HistoryQuery::latest(
            Some("bench"),
            2 * WRITES,
        ))
        .await
        .unwrap();
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
