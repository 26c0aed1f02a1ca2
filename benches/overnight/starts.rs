//! Starting runs: the daemon's run path (dispatch) and a crontab line's
//! wrapper (`exec`).

use super::*;
use crate::output::PER_JOB_FILES;

/// 2,000 runs of /bin/true through the daemon's run path (history and log
/// routing on) against spawning `sh -c true` from a tight loop.
pub(super) async fn dispatch(b: &mut Bench) {
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
    let recorded = store
        .history(&overnight::store::HistoryQuery::latest(Some("true"), RUNS))
        .await
        .unwrap();
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
pub(super) fn wrapper(b: &mut Bench) {
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
