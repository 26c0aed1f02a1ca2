//! Overlap policies, shared locks, timeouts, retries and process hygiene,
//! with real processes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use overnight::store::RunRecord;

use crate::helper::{FastClock, Sandbox, TestDaemon, runs, text, wait_for_runs};

/// No living process left in the group (killed ones may linger as zombies
/// until their new parent reaps them: they are dead).
fn group_gone(pgid: i64) -> bool {
    overnight::process::living_in_group(pgid as u32).is_empty()
}

fn report(sb: &Sandbox, id: i64) -> serde_json::Value {
    serde_json::from_slice(&sb.run(&["report", &id.to_string(), "--json"]).stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_leaving_a_background_child_ends_within_its_grace_and_leaves_no_process() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n  forker:\n    command: sleep 300 & echo forked\n    kill_grace: 1s\n",
    );
    let started = std::time::Instant::now();
    let out = sb.run(&["run", "forker"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out).0);
    // Not waiting for the background child's 300 s: a bound no loaded
    // machine comes near; the warning below says the grace was used.
    assert!(
        took < Duration::from_secs(120),
        "did not wait for the background child, took {took:?}"
    );
    let run = &runs(&sb.path().join(".overnight")).await[0];
    assert!(
        group_gone(run.job_pid.unwrap()),
        "no process of the job's group survives"
    );
    let report = report(&sb, run.id);
    assert!(
        report["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("kept its output open"),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_ends_the_whole_tree_and_is_recorded() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n  slow:\n    command: sh -c 'sleep 100 & sleep 100 & wait'\n    timeout: 1s\n    kill_grace: 1s\n",
    );
    let out = sb.run(&["run", "slow"]);
    assert_eq!(out.status.code(), Some(1));
    let run = &runs(&sb.path().join(".overnight")).await[0];
    assert!(group_gone(run.job_pid.unwrap()), "no survivor");
    let report = report(&sb, run.id);
    assert_eq!(report["exit"]["reason"], "timeout after 1s");
    assert_eq!(report["status"], "failed");
}

/// Two jobs sharing an exclusive lock, each fired 50 times and more on a
/// clock 25 times faster than real: no two runs overlap.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_sharing_a_lock_never_overlap_across_fifty_fires_each() {
    let jobs = "listen: 127.0.0.1:0\njobs:\n  load:\n    command: sleep 0.01\n    schedule: '* * * * * *'\n    locks: [warehouse]\n    lock_wait: 1h\n  report:\n    command: sleep 0.01\n    schedule: '* * * * * *'\n    locks: [warehouse]\n    lock_wait: 1h\n";
    let clock = Arc::new(FastClock::new("2026-03-01T00:00:00Z".parse().unwrap(), 25));
    let daemon = TestDaemon::start_in(Sandbox::new(), jobs, clock).await;
    let done = |runs: &[RunRecord], job: &str| {
        runs.iter()
            .filter(|r| r.job == job && r.status == "success")
            .count()
    };
    let all = wait_for_runs(&daemon.state_dir, "50 runs of each", |runs| {
        (done(&runs, "load") >= 50 && done(&runs, "report") >= 50).then_some(runs)
    })
    .await;
    daemon.stop().await;
    let time = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>, &str)> = all
        .iter()
        .filter(|r| r.status == "success")
        .map(|r| {
            (
                time(&r.started_at),
                time(r.finished_at.as_deref().unwrap()),
                r.job.as_str(),
            )
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlap: {pair:?}");
    }
    let both = spans.windows(2).filter(|p| p[0].2 != p[1].2).count();
    assert!(both > 10, "the two jobs took turns, not one then the other");
}

#[tokio::test(flavor = "multi_thread")]
async fn skip_records_skipped_fires_and_replace_ends_the_old_run() {
    let jobs = "listen: 127.0.0.1:0\nshutdown: terminate\njobs:\n  slow:\n    command: sleep 2.5\n    schedule: '* * * * * *'\n  newest:\n    command: sleep 300\n    schedule: '* * * * * *'\n    concurrency: replace\n    kill_grace: 1s\n";
    let daemon = TestDaemon::start(jobs).await;
    let all = wait_for_runs(&daemon.state_dir, "skips and a replacement", |runs| {
        let skipped = runs
            .iter()
            .any(|r| r.job == "slow" && r.status == "skipped");
        let replaced = runs.iter().any(|r| {
            r.job == "newest"
                && r.summary
                    .as_deref()
                    .is_some_and(|s| s.starts_with("replaced"))
        });
        (skipped && replaced).then_some(runs)
    })
    .await;
    let skipped = all
        .iter()
        .find(|r| r.job == "slow" && r.status == "skipped")
        .unwrap();
    assert!(
        skipped
            .summary
            .as_deref()
            .unwrap()
            .contains("still running"),
        "{skipped:?}"
    );
    let replaced = all
        .iter()
        .find(|r| r.job == "newest" && r.status != "running")
        .unwrap();
    assert_eq!(replaced.status, "failed");
    // A newer run of `newest` took over.
    let later = wait_for_runs(&daemon.state_dir, "the replacing run", |runs| {
        runs.into_iter()
            .find(|r| r.job == "newest" && r.id > replaced.id && r.status == "running")
    })
    .await;
    assert!(later.id > replaced.id);
    let state = daemon.state_dir.clone();
    let started = std::time::Instant::now();
    daemon.stop().await;
    // Far below the job's 300 s, however loaded the machine.
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "shutdown: terminate ends the jobs at once"
    );
    let all = runs(&state).await;
    assert!(all.iter().all(|r| r.status != "running"), "{all:#?}");
}

#[test]
fn retries_are_attempts_of_one_run_and_the_last_decides() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n  flaky:\n    command: |\n      n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count\n      echo attempt $OVERNIGHT_ATTEMPT\n      [ $n -ge 3 ]\n    retries: {count: 3, delay: 100ms}\n",
    );
    let out = sb.run(&["run", "flaky"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).0);
    let history = sb.run(&["history", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "one run");
    assert_eq!(runs[0]["attempt"], 3);
    assert_eq!(runs[0]["status"], "success");
    let (logs, _) = text(&sb.run(&["logs", "flaky"]));
    assert_eq!(
        logs,
        "attempt 1\n--- attempt 2 ---\nattempt 2\n--- attempt 3 ---\nattempt 3\n"
    );
}

#[test]
fn bare_environment_and_limits() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n  bare:\n    command: echo \"secret=${INHERITED:-none} path=$PATH files=$(ulimit -n)\"\n    env_inherit: false\n    limits: {open_files: 77}\n",
    );
    let out = sb
        .command(&["run", "bare"])
        .env("INHERITED", "leaked")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let (logs, _) = text(&sb.run(&["logs", "bare"]));
    assert_eq!(logs, "secret=none path=/usr/bin:/bin files=77\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_runs_the_waiting_fire_after_the_running_one_and_skips_beyond_the_limit() {
    let jobs = "listen: 127.0.0.1:0\nshutdown: terminate\njobs:\n  queued:\n    command: sleep 1.5\n    schedule: '* * * * * *'\n    concurrency: queue\n    queue_limit: 1\n";
    let daemon = TestDaemon::start(jobs).await;
    let all = wait_for_runs(
        &daemon.state_dir,
        "two runs back to back and a skip",
        |runs| {
            let done: Vec<_> = runs
                .iter()
                .filter(|r| r.status == "success")
                .cloned()
                .collect();
            let skipped = runs.iter().any(|r| r.status == "skipped");
            (done.len() >= 2 && skipped).then_some(runs)
        },
    )
    .await;
    daemon.stop().await;
    let time = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
    let done: Vec<_> = all.iter().filter(|r| r.status == "success").collect();
    let gap = time(&done[1].started_at) - time(done[0].finished_at.as_deref().unwrap());
    assert!(
        gap >= chrono::Duration::zero() && gap < chrono::Duration::milliseconds(500),
        "the queued fire ran right after: {gap}"
    );
    let skipped = all.iter().find(|r| r.status == "skipped").unwrap();
    assert!(
        skipped
            .summary
            .as_deref()
            .unwrap()
            .contains("1 fire(s) already wait (queue_limit: 1)"),
        "{skipped:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_who_holds_which_lock() {
    let sb = Sandbox::new();
    let gate = sb.path().join("gate");
    sb.write(
        "overnight.yaml",
        &format!(
            "jobs:\n  holder:\n    command: while [ ! -e {} ]; do sleep 0.05; done\n    locks: [warehouse, {{name: catalog, mode: shared}}]\n",
            gate.display()
        ),
    );
    let mut job = sb
        .command(&["run", "holder"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_runs(
        &sb.path().join(".overnight"),
        "the holder running",
        |runs| {
            runs.first()
                .is_some_and(|r| r.job_pid.is_some())
                .then_some(())
        },
    )
    .await;
    let status: serde_json::Value =
        serde_json::from_slice(&sb.run(&["status", "--json"]).stdout).unwrap();
    let locks: Vec<String> = status["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{} {} {}",
                l["name"].as_str().unwrap(),
                l["mode"].as_str().unwrap(),
                l["job"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        locks,
        [
            "catalog shared holder",
            "job.holder exclusive holder",
            "warehouse exclusive holder"
        ]
    );
    std::fs::write(&gate, "").unwrap();
    assert_eq!(job.wait().unwrap().code(), Some(0));
    let status: serde_json::Value =
        serde_json::from_slice(&sb.run(&["status", "--json"]).stdout).unwrap();
    assert!(
        status["locks"].as_array().unwrap().is_empty(),
        "released with the run"
    );
}
