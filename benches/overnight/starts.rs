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
    let start = Instant::now();
    run_true(recorder, &dir.join("state"), RUNS).await;
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

/// `runs` runs of /bin/true through the daemon's run path, recorded by
/// `recorder`.
async fn run_true(recorder: overnight::store::Recorder, state_dir: &Path, runs: u32) {
    let runner = overnight::runner::Runner::new(recorder, state_dir.to_path_buf(), None);
    let job = overnight::config::Job::adhoc("true".into(), vec!["/bin/true".into()]);
    for _ in 0..runs {
        runner
            .run(&job, overnight::report::Trigger::Manual, None)
            .await
            .unwrap();
    }
}

/// The PostgreSQL server of the tests (`.ci/run` prepares it).
const POSTGRES: &str = "postgres://overnight_test:overnight_test@127.0.0.1:5432/postgres";

/// A database of its own for a case, dropped by [`BenchDb::drop_now`].
struct BenchDb {
    admin: sqlx::PgConnection,
    name: String,
    url: String,
}

impl BenchDb {
    /// A new database for `case` on the tests' server; without a server,
    /// `case`'s row (in `unit`) says so and there is none.
    async fn new(b: &mut Bench, case: &str, unit: &str) -> Option<BenchDb> {
        use sqlx::Connection;
        let server = std::env::var("OVERNIGHT_TEST_POSTGRES").unwrap_or_else(|_| POSTGRES.into());
        let Ok(mut admin) = sqlx::PgConnection::connect(&server).await else {
            b.row(
                case,
                0.0,
                1.0,
                unit,
                "measured",
                |_| false,
                format!("no PostgreSQL at {server}: run .ci/run, or set OVERNIGHT_TEST_POSTGRES"),
            );
            return None;
        };
        let name = format!(
            "overnight_bench_{}_{}",
            unit.replace('/', "_"),
            std::process::id()
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
        Some(BenchDb { admin, name, url })
    }

    async fn drop_now(mut self) {
        let drop = format!("DROP DATABASE {} WITH (FORCE)", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&mut self.admin)
            .await
            .unwrap();
    }
}

/// 2,000 runs of /bin/true through the daemon's run path with the history
/// in PostgreSQL (a round trip each for the id, the start and the end)
/// against the same with SQLite's journal, in the same run. Without a
/// server, the row says so.
pub(super) async fn dispatch_postgres(b: &mut Bench) {
    const RUNS: u32 = 2000;
    let case = "dispatch on PostgreSQL: /bin/true runs/s";
    let Some(db) = BenchDb::new(b, case, "runs/s").await else {
        return;
    };
    let url = db.url.clone();

    let dir = b.path("dispatch-postgres");
    std::fs::write(dir.join("log4rs.yaml"), PER_JOB_FILES).unwrap();
    overnight::route::install(overnight::route::load(&dir.join("log4rs.yaml")).unwrap());
    let sqlite_state = dir.join("sqlite");
    let store = overnight::store::Store::open(&sqlite_state).await.unwrap();
    let (recorder, folding) = overnight::store::Recorder::for_daemon(&store).unwrap();
    let start = Instant::now();
    run_true(recorder, &sqlite_state, RUNS).await;
    folding.into_iter().for_each(|f| f.abort());
    store.fold_journal().await.unwrap();
    let sqlite = start.elapsed();

    let pg_state = dir.join("postgres");
    let pg = overnight::store::Store::connect_postgres(&url, &pg_state)
        .await
        .unwrap();
    let start = Instant::now();
    run_true(pg.clone().into(), &pg_state, RUNS).await;
    let postgres = start.elapsed();
    let recorded = pg
        .history(&overnight::store::HistoryQuery::latest(Some("true"), RUNS))
        .await
        .unwrap();
    assert_eq!(recorded.len(), RUNS as usize, "every run recorded");
    pg.close().await;
    db.drop_now().await;

    // Two commits a run (its start, its end) and the id's round trip: a
    // sequence of single runs pays each in full, where SQLite's journal
    // appends to a file. The target is what a cluster needs: each daemon
    // starting a hundred runs a second is far beyond any schedule's fires.
    let rate = |d: Duration| f64::from(RUNS) / d.as_secs_f64();
    b.row(
        case,
        rate(postgres),
        100.0,
        "runs/s",
        ">= 100 runs/s",
        |r| r >= 1.0,
        format!(
            "SQLite's journal in the same run: {:.0} runs/s ({:.2}×)",
            rate(sqlite),
            rate(postgres) / rate(sqlite)
        ),
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

/// Fires claimed per second by three daemons racing for every fire of a
/// job due each second (each fire claimed by one, the others refused),
/// against one daemon claiming alone, in the same run.
pub(super) async fn claims_postgres(b: &mut Bench) {
    const FIRES: usize = 2000;
    let case = "claims on PostgreSQL: fires/s, three daemons racing";
    let Some(db) = BenchDb::new(b, case, "fires/s").await else {
        return;
    };
    let url = db.url.clone();
    let dir = b.path("claims-postgres");
    let origin = chrono::Utc::now();
    let fires: Vec<_> = (0..FIRES as i64)
        .map(|s| origin + chrono::Duration::seconds(s))
        .collect();
    // Each host a store of its own (its own pool), joined as a daemon is.
    let mut hosts = Vec::new();
    for host in ["a", "b", "c"] {
        let store = overnight::store::Store::connect_postgres(&url, &dir.join(host))
            .await
            .unwrap();
        let card = overnight::store::HostCard {
            name: host.into(),
            tags: Vec::new(),
            api: "127.0.0.1:0".into(),
            timeout: Duration::from_secs(15),
        };
        let membership = store.join(card).await.unwrap().expect("a cluster");
        hosts.push((store, membership, host));
    }
    let claim_all = |job: &'static str, racing: usize| {
        let claimers: Vec<_> = hosts[..racing]
            .iter()
            .map(|(store, membership, host)| {
                let (store, fires, epoch) = (store.clone(), fires.clone(), membership.epoch());
                let host = host.to_string();
                tokio::spawn(async move {
                    let mut got = 0;
                    for at in &fires {
                        got += store
                            .claim_fires(job, &[*at], &host, epoch)
                            .await
                            .unwrap()
                            .len();
                    }
                    got
                })
            })
            .collect();
        async move {
            let start = Instant::now();
            let mut got = 0;
            for claimer in claimers {
                got += claimer.await.unwrap();
            }
            (start.elapsed(), got)
        }
    };
    let (alone, got_alone) = claim_all("alone", 1).await;
    let (three, got_three) = claim_all("raced", 3).await;
    assert_eq!(
        (got_alone, got_three),
        (FIRES, FIRES),
        "each fire claimed once"
    );
    for (store, membership, _) in hosts {
        membership.leave().await;
        store.close().await;
    }
    db.drop_now().await;
    let rate = |d: Duration| FIRES as f64 / d.as_secs_f64();
    // A site's schedule rarely has more than a few fires a second; the
    // target leaves room for thousands of jobs on the same minute.
    b.row(
        case,
        rate(three),
        100.0,
        "fires/s",
        ">= 100 fires/s",
        |r| r >= 1.0,
        format!(
            "one daemon alone in the same run: {:.0} fires/s ({:.2}×)",
            rate(alone),
            rate(three) / rate(alone)
        ),
    );
}
