//! Crash safety with real processes: a daemon killed with -9, its job
//! outliving it or not, and a second daemon on the same state directory.

use std::process::Stdio;
use std::time::Duration;

use overnight::store::RunRecord;

use crate::helper::{Sandbox, kill9, runs, text, wait_for, wait_for_runs};

/// A job that runs until the file `gate` exists, printing nothing after its
/// first line (its output pipe dies with a killed daemon).
fn exclusive_job(sb: &Sandbox) -> String {
    let gate = sb.path().join("gate");
    format!(
        "listen: 127.0.0.1:0\njobs:\n  exclusive:\n    command: echo started; while [ ! -e {} ]; do sleep 0.05; done\n    schedule: '* * * * * *'\n",
        gate.display()
    )
}

fn alive(pid: i64) -> bool {
    // SAFETY: signal 0 only checks.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

async fn running_run(state: &std::path::Path) -> RunRecord {
    wait_for_runs(state, "a running run with its process", |runs| {
        runs.into_iter()
            .find(|r| r.status == "running" && r.job_pid.is_some())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_outliving_a_killed_daemon_keeps_its_lock_and_is_closed_as_orphaned() {
    let sb = Sandbox::new();
    sb.write("overnight.yaml", &exclusive_job(&sb));
    let state = sb.path().join(".overnight");
    let mut first = sb.spawn_daemon();
    let run = running_run(&state).await;
    let job_pid = run.job_pid.unwrap();
    kill9(first.id() as i32);
    first.wait().unwrap();
    assert!(alive(job_pid), "the job outlives its daemon");

    let mut second = sb.spawn_daemon();
    // New fires find the job's lock held by the orphan: skipped, never run.
    let skipped = wait_for_runs(&state, "fires skipped while the orphan lives", |runs| {
        let skipped: Vec<_> = runs.into_iter().filter(|r| r.status == "skipped").collect();
        (skipped.len() >= 2).then_some(skipped)
    })
    .await;
    assert!(
        skipped[0]
            .summary
            .as_deref()
            .unwrap()
            .contains(&format!("held by pid {job_pid}")),
        "{skipped:#?}"
    );
    let all = runs(&state).await;
    assert_eq!(
        all.iter().filter(|r| r.status == "running").count(),
        1,
        "only the orphan: {all:#?}"
    );
    assert!(alive(job_pid));

    std::fs::write(sb.path().join("gate"), "").unwrap();
    let all = wait_for_runs(
        &state,
        "the orphan closed and a normal run after it",
        |runs| {
            let closed = runs
                .iter()
                .any(|r| r.id == run.id && r.status == "orphaned");
            let normal = runs.iter().any(|r| r.id > run.id && r.status == "success");
            (closed && normal).then_some(runs)
        },
    )
    .await;
    let report = sb.run(&["report", &run.id.to_string(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert!(
        report["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("orphaned:"),
        "{report:#}"
    );
    assert!(all.iter().all(|r| r.status != "running" || r.id > run.id));
    kill9(second.id() as i32);
    second.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_daemon_and_job_leave_a_lost_run_and_a_free_lock() {
    let sb = Sandbox::new();
    sb.write("overnight.yaml", &exclusive_job(&sb));
    let state = sb.path().join(".overnight");
    let mut first = sb.spawn_daemon();
    let run = running_run(&state).await;
    kill9(first.id() as i32);
    first.wait().unwrap();
    // SAFETY: ends the job's whole process group.
    unsafe { libc::killpg(run.job_pid.unwrap() as i32, libc::SIGKILL) };

    std::fs::write(sb.path().join("gate"), "").unwrap();
    let mut second = sb.spawn_daemon();
    let all = wait_for_runs(&state, "the lost run and a run after it", |runs| {
        let lost = runs.iter().any(|r| r.id == run.id && r.status == "lost");
        let next = runs.iter().any(|r| r.id > run.id && r.status == "success");
        (lost && next).then_some(runs)
    })
    .await;
    assert!(
        all.iter().all(|r| r.status != "skipped"),
        "the lock was free at once: {all:#?}"
    );
    kill9(second.id() as i32);
    second.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_on_the_same_state_directory_refuses_naming_the_first() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "listen: 127.0.0.1:0\njobs:\n  idle:\n    command: 'true'\n",
    );
    let mut first = sb.spawn_daemon();
    let card = sb.path().join(".overnight/daemon.json");
    wait_for(Duration::from_secs(10), "the first daemon", || {
        let up = card.exists();
        async move { up.then_some(()) }
    })
    .await;
    let second = sb.run(&["daemon"]);
    let (_, stderr) = text(&second);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another overnight daemon by pid {} is running",
            first.id()
        )),
        "{stderr}"
    );
    kill9(first.id() as i32);
    first.wait().unwrap();
}

/// In a container overnight may be PID 1: the orphans its jobs leave are
/// re-parented to it and must be reaped, or they stay zombies for ever.
#[tokio::test(flavor = "multi_thread")]
async fn as_pid_1_the_daemon_reaps_the_orphans_its_jobs_leave() {
    let sb = Sandbox::new();
    let done = sb.path().join("orphan-done");
    sb.write(
        "overnight.yaml",
        &format!(
            // The orphan leaves the job's group (as a daemonizing program
            // does) and says so; the job waits for that, then exits.
            "listen: 127.0.0.1:0\njobs:\n  orphaner:\n    command: setsid sh -c 'touch {ready}; sleep 0.3; touch {done}' >/dev/null 2>&1 & while [ ! -e {ready} ]; do sleep 0.01; done; echo left an orphan\n",
            ready = sb.path().join("orphan-ready").display(),
            done = done.display()
        ),
    );
    let mut unshare = std::process::Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            env!("CARGO_BIN_EXE_overnight"),
            "daemon",
        ])
        .current_dir(sb.path())
        .env_remove("OVERNIGHT_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare runs");
    let card = sb.path().join(".overnight/daemon.json");
    wait_for(Duration::from_secs(10), "the daemon as PID 1", || {
        let up = card.exists();
        async move { up.then_some(()) }
    })
    .await;
    let daemon_pid = children_of(unshare.id())[0];

    let out = sb.run(&["run", "orphaner"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).0);
    wait_for(Duration::from_secs(10), "the orphan to finish", || {
        let finished = done.exists();
        async move { finished.then_some(()) }
    })
    .await;
    wait_for(
        Duration::from_secs(10),
        "the orphan reaped (no zombie left)",
        || {
            let left = children_of(daemon_pid);
            async move { left.is_empty().then_some(()) }
        },
    )
    .await;
    kill9(unshare.id() as i32);
    kill9(daemon_pid as i32);
    unshare.wait().unwrap();
}

/// The processes (zombies included) whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            stat.rfind(')')
                .and_then(|i| {
                    stat[i + 1..]
                        .split_whitespace()
                        .nth(1)
                        .map(|ppid| ppid == pid.to_string())
                })
                .unwrap_or(false)
        })
        .collect()
}
