//! Flows: what driving 1,000 steps costs over running the same jobs
//! without a flow (issue 13).

use std::sync::Arc;

use super::*;

const STEPS: usize = 1000;
const PARALLEL: usize = 16;

/// Every record to one file, as an operator's log4rs file might: the
/// flow's status records and the jobs' status records cost their share.
const ONE_FILE: &str = "appenders:\n  all:\n    kind: file\n    path: logs/all.log\n    encoder: { kind: fast_pattern, pattern: \"{d(%Y-%m-%dT%H:%M:%S%.3f)} {l} {t} {m}{n}\" }\nloggers:\n  jobs::status: { level: info, appenders: [all], additive: false }\n  flows::status: { level: info, appenders: [all], additive: false }\nroot: { level: off }\n";

/// A chain of 1,000 `/bin/true` steps and 1,000 side by side (16 at a
/// time), each through a daemon, against the same 1,000 jobs run one by
/// one and 16 at a time through the same run path without a flow.
pub(super) async fn flows(b: &mut Bench) {
    // On tmpfs where there is one: on this ext4, creating a run's files
    // slows from ~1.6 to ~3 ms as the disk fills and frees, within one
    // case, which drowns the fraction of a millisecond measured here.
    let shm = Path::new("/dev/shm");
    let _tmp = shm
        .is_dir()
        .then(|| tempfile::tempdir_in(shm).ok())
        .flatten();
    let dir = match &_tmp {
        Some(tmp) => tmp.path().to_path_buf(),
        None => b.path("flows"),
    };
    std::fs::write(dir.join("log4rs.yaml"), ONE_FILE).unwrap();
    let mut file = String::from("listen: 127.0.0.1:0\nlog_config: log4rs.yaml\njobs:\n");
    for i in 0..STEPS {
        file += &format!("  s{i}: {{command: [/bin/true]}}\n");
    }
    file += "flows:\n  chain:\n    steps:\n";
    for i in 0..STEPS {
        match i {
            0 => file += "      s0: {job: s0}\n",
            _ => file += &format!("      s{i}: {{job: s{i}, after: s{}}}\n", i - 1),
        }
    }
    file += &format!("  wide:\n    max_parallel: {PARALLEL}\n    steps:\n");
    for i in 0..STEPS {
        file += &format!("      s{i}: {{job: s{i}}}\n");
    }
    // Each contender in a state directory of its own; the jobs without a
    // flow before and after the flows, and the mean taken: creating files
    // slows as a file system fills, and neither side gets the emptier one.
    let config = |name: &str| {
        let path = dir.join(format!("{name}.yaml"));
        let state = format!("state_dir: {name}-state\n");
        std::fs::write(&path, state + &file).unwrap();
        overnight::config::Config::load(&path).unwrap()
    };
    // The daemon is up for all of it (idle while the jobs run without a
    // flow): a daemon's process runs its jobs a little differently (it
    // reaps orphans, say), and both sides pay that alike.
    let (chain, wide, before, after) = with_flows(
        config("flows"),
        || async { without_flow(&config("before")).await },
        || async { without_flow(&config("after")).await },
    )
    .await;
    let one_by_one = (before.0 + after.0) / 2;
    let side_by_side = (before.1 + after.1) / 2;
    let note = |base: Duration, flow: Duration| {
        format!(
            "{:.2} ms/step against {:.2} ms/step without",
            flow.as_secs_f64() * 1000.0 / STEPS as f64,
            base.as_secs_f64() * 1000.0 / STEPS as f64
        )
    };
    b.row(
        "flows: chain of 1,000, wall time",
        chain.as_secs_f64(),
        one_by_one.as_secs_f64(),
        "s",
        "<= 1.10 of one by one",
        |r| r <= 1.10,
        note(one_by_one, chain),
    );
    b.row(
        "flows: 1,000 side by side (16), wall time",
        wide.as_secs_f64(),
        side_by_side.as_secs_f64(),
        "s",
        "<= 1.10 of 16 at a time",
        |r| r <= 1.10,
        note(side_by_side, wide),
    );
}

/// The jobs through the daemon's run path (a runner recording into the
/// journal), one by one, then 16 at a time.
async fn without_flow(config: &overnight::config::Config) -> (Duration, Duration) {
    let state = config.state_dir.clone();
    overnight::route::install(overnight::daemon::routing(config).unwrap());
    let store = overnight::store::Store::open(&state).await.unwrap();
    let (recorder, journal) = overnight::store::Recorder::journal_of(&store).unwrap();
    let folding = store.fold_in_background(journal);
    let runner = overnight::runner::Runner::new(recorder, state, None);
    let manual = overnight::report::Trigger::Manual;
    let start = Instant::now();
    for job in &config.jobs {
        runner.run(job, manual, None).await.unwrap();
    }
    let one_by_one = start.elapsed();
    let places = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let start = Instant::now();
    let mut runs = tokio::task::JoinSet::new();
    for job in &config.jobs {
        let place = Arc::clone(&places).acquire_owned().await.unwrap();
        let (runner, job) = (runner.clone(), Arc::clone(job));
        runs.spawn(async move {
            let _place = place;
            runner.run(&job, manual, None).await.unwrap();
        });
    }
    runs.join_all().await;
    let side_by_side = start.elapsed();
    folding.abort();
    store.fold_journal().await.unwrap();
    store.close().await;
    (one_by_one, side_by_side)
}

/// Both flows through a daemon in this process, each timed by its own
/// record, with `before` and `after` run while that daemon is up.
async fn with_flows<B, A, FB, FA>(
    config: overnight::config::Config,
    before: B,
    after: A,
) -> (
    Duration,
    Duration,
    (Duration, Duration),
    (Duration, Duration),
)
where
    B: FnOnce() -> FB,
    A: FnOnce() -> FA,
    FB: Future<Output = (Duration, Duration)>,
    FA: Future<Output = (Duration, Duration)>,
{
    let state = config.state_dir.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(overnight::daemon::run(config, listener, async {
        let _ = stopped.await;
    }));
    let client = loop {
        if let Some(client) = overnight::client::Client::find(&state) {
            break client;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let store = overnight::store::Store::open(&state).await.unwrap();
    let before = before().await;
    let mut took = Vec::new();
    for flow in ["chain", "wide"] {
        let id = client.start_flow(flow).await.unwrap();
        // Read as the daemon folds its journal in; timed by the run's own
        // record, from its start to its end. Looked at seldom: reading a
        // thousand steps' rows takes a core from the flow being timed.
        let run = loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Some(run) = store.flow_run(id).await.unwrap()
                && run.finished_at.is_some()
            {
                break run;
            }
        };
        let end = run.finished_at.unwrap();
        took.push((end - run.started_at).to_std().unwrap());
        assert_eq!(
            run.status,
            overnight::flow::progress::FlowStatus::Success,
            "every step of `{flow}` a success"
        );
    }
    let after = after().await;
    let _ = stop.send(());
    daemon.await.unwrap().unwrap();
    (took[0], took[1], before, after)
}
