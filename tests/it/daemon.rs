//! The daemon: scheduling, `run` through it, reload on SIGHUP, SIGTERM.

use std::process::{Child, Stdio};
use std::time::Duration;

use overnight::store::RunRecord;

use crate::helper::{Sandbox, TestDaemon, runs, text, wait_for, wait_for_runs};

const EVERY_SECOND: &str = "'* * * * * *'";

fn successes(runs: Vec<RunRecord>) -> Vec<RunRecord> {
    runs.into_iter().filter(|r| r.status == "success").collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_jobs_fire_and_are_recorded() {
    let daemon = TestDaemon::start(&format!(
        "listen: 127.0.0.1:0\njobs:\n  tick:\n    command: echo tick $OVERNIGHT_RUN_ID\n    schedule: {EVERY_SECOND}\n"
    ))
    .await;
    let done = wait_for_runs(&daemon.state_dir, "two scheduled runs", |runs| {
        Some(successes(runs)).filter(|done| done.len() >= 2)
    })
    .await;
    assert_eq!(done[0].trigger, "schedule");
    assert!(
        done[0]
            .scheduled_at
            .as_deref()
            .unwrap()
            .ends_with(".000000Z"),
        "fires on the second"
    );
    let capture = std::fs::read_to_string(done[0].capture_path.as_ref().unwrap()).unwrap();
    assert!(
        capture.ends_with(&format!("\tout\ttick {}\n", done[0].id)),
        "{capture}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_due_at_the_same_time_run_concurrently() {
    let daemon = TestDaemon::start(&format!(
        "listen: 127.0.0.1:0\njobs:\n  left:\n    command: sleep 1\n    schedule: {EVERY_SECOND}\n  right:\n    command: sleep 1\n    schedule: {EVERY_SECOND}\n"
    ))
    .await;
    let (left, right) = wait_for_runs(&daemon.state_dir, "both jobs done once", |runs| {
        let done = successes(runs);
        let left = done.iter().find(|r| r.job == "left")?.clone();
        let right = done
            .into_iter()
            .find(|r| r.job == "right" && r.scheduled_at == left.scheduled_at)?;
        Some((left, right))
    })
    .await;
    // Each sleeps a second: one after the other, one would start after the other ended.
    assert!(
        left.started_at < right.finished_at.clone().unwrap(),
        "{left:?} {right:?}"
    );
    assert!(
        right.started_at < left.finished_at.clone().unwrap(),
        "{left:?} {right:?}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_goes_through_the_running_daemon() {
    let daemon = TestDaemon::start(
        "listen: 127.0.0.1:0\njobs:\n  manual:\n    command: echo by daemon $$; echo ::warning::w\n",
    )
    .await;
    let config = daemon.config_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        Sandbox::new().run(&["run", "manual", "-c", config.to_str().unwrap()])
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(stdout.starts_with("manual #1: warning"), "{stdout}");
    let run = &runs(&daemon.state_dir).await[0];
    assert_eq!(
        run.pid,
        Some(i64::from(std::process::id())),
        "recorded by the daemon, not the CLI"
    );
    assert_eq!(run.trigger, "manual");
    daemon.stop().await;
}

#[test]
fn run_without_a_daemon_runs_here_and_unknown_jobs_are_refused() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n  here:\n    command: [sh, -c, 'exit 2']\n",
    );
    let out = sb.run(&["run", "here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).0.starts_with("here #1: failed (exit 2"),
        "{}",
        text(&out).0
    );
    let out = sb.run(&["run", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("no job named `nope`"));
}

/// The real binary as a daemon, on a jobs file in a sandbox.
struct Daemon {
    sb: Sandbox,
    child: Child,
}

impl Daemon {
    fn start(jobs_file: &str) -> Daemon {
        let sb = Sandbox::new();
        sb.write("overnight.yaml", jobs_file);
        let child = sb
            .command(&["daemon"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(sb.path().join("daemon.err")).unwrap())
            .spawn()
            .unwrap();
        Daemon { sb, child }
    }

    fn state(&self) -> std::path::PathBuf {
        self.sb.path().join(".overnight")
    }

    fn signal(&self, signal: i32) {
        // SAFETY: sends a signal to our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A test that failed shows what the daemon said.
        if std::thread::panicking() {
            eprintln!(
                "the daemon's stderr:\n{}",
                std::fs::read_to_string(self.sb.path().join("daemon.err")).unwrap_or_default()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_a_broken_jobs_file_keeps_the_old_jobs_running() {
    let mut d = Daemon::start(&format!(
        "listen: 127.0.0.1:0\njobs:\n  keep:\n    command: echo kept\n    schedule: {EVERY_SECOND}\n"
    ));
    let state = d.state();
    wait_for_runs(&state, "a first run", |runs| {
        (!successes(runs).is_empty()).then_some(())
    })
    .await;

    d.sb.write(
        "overnight.yaml",
        "jobs:\n  keep:\n    command: echo\n    schedule: 'not cron'\n",
    );
    d.signal(libc::SIGHUP);
    let err = wait_for(
        Duration::from_secs(10),
        "the refusal in the daemon's log",
        || {
            let err = d.sb.read("daemon.err");
            async move { err.contains("reload refused").then_some(err) }
        },
    )
    .await;
    assert!(err.contains("overnight.yaml:4:15: bad schedule"), "{err}");

    let before = successes(runs(&state).await).len();
    wait_for_runs(&state, "runs after the refused reload", |runs| {
        (successes(runs).len() >= before + 2).then_some(())
    })
    .await;
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "the daemon is still running"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_a_job_runs_leaves_no_run_running() {
    let mut d = Daemon::start(&format!(
        "listen: 127.0.0.1:0\nshutdown_grace: 1s\njobs:\n  slow:\n    command: echo started; sleep 60\n    schedule: {EVERY_SECOND}\n    kill_grace: 1s\n"
    ));
    let state = d.state();
    wait_for_runs(&state, "a running run", |runs| {
        runs.iter().any(|r| r.status == "running").then_some(())
    })
    .await;
    d.signal(libc::SIGTERM);
    let (status, d) = tokio::task::spawn_blocking(move || (d.child.wait().unwrap(), d))
        .await
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "a clean stop: {}",
        d.sb.read("daemon.err")
    );
    let all = runs(&state).await;
    assert!(!all.is_empty());
    assert!(all.iter().all(|r| r.status != "running"), "{all:#?}");
    let cut = all
        .iter()
        .find(|r| r.summary.as_deref().unwrap_or("").contains("shutdown"))
        .expect("a run ended by the shutdown");
    assert_eq!(cut.status, "failed");
    assert!(!state.join("daemon.json").exists(), "the card is removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn reboot_jobs_run_once_at_each_start() {
    let jobs =
        "listen: 127.0.0.1:0\njobs:\n  boot:\n    command: echo booted\n    schedule: '@reboot'\n";
    let first = TestDaemon::start(jobs).await;
    let state = first.state_dir.clone();
    wait_for_runs(&state, "the reboot run", |runs| {
        (runs.len() == 1 && runs[0].status == "success").then_some(())
    })
    .await;
    let sandbox = first.stop().await;
    let second = TestDaemon::start_in(
        sandbox,
        jobs,
        std::sync::Arc::new(overnight::schedule::clock::SystemClock),
    )
    .await;
    let all = wait_for_runs(&state, "a second reboot run", |runs| {
        (runs.len() == 2).then_some(runs)
    })
    .await;
    assert!(all.iter().all(|r| r.trigger == "reboot"), "{all:#?}");
    second.stop().await;
}

/// Started as systemd starts a `Type=notify` unit: the daemon says
/// `READY=1` on `NOTIFY_SOCKET` once it serves, pings the watchdog at half
/// `WATCHDOG_USEC`, says `STOPPING=1` at SIGTERM; its jobs do not inherit
/// systemd's variables.
#[test]
fn systemd_is_told_ready_watchdog_and_stopping() {
    let sb = Sandbox::new();
    let socket = sb.path().join("notify.sock");
    let systemd = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    systemd
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    sb.write(
        "overnight.yaml",
        &format!("listen: 127.0.0.1:0\njobs:\n  env:\n    command: env > seen-env\n    schedule: {EVERY_SECOND}\n"),
    );
    let mut child = sb
        .command(&["daemon"])
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut said = Vec::new();
    let next = || {
        let mut buffer = [0; 512];
        let n = systemd.recv(&mut buffer).expect("a notification in time");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    // The watchdog may speak first; READY comes once the API answers.
    while !said.iter().any(|m: &String| m.starts_with("READY=1")) {
        said.push(next());
    }
    let ready = said.iter().find(|m| m.starts_with("READY=1")).unwrap();
    assert!(
        ready.contains(&format!("MAINPID={}", child.id())),
        "{ready}"
    );
    assert!(
        std::fs::read_to_string(sb.path().join(".overnight/daemon.json")).is_ok(),
        "ready before its card was written"
    );
    while said.iter().filter(|m| *m == "WATCHDOG=1").count() < 2 {
        said.push(next());
    }
    let env_file = sb.path().join("seen-env");
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&env_file).is_ok_and(|e| e.contains("OVERNIGHT_JOB=env")) {
        assert!(started.elapsed().as_secs() < 20, "the job never ran");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let seen = std::fs::read_to_string(&env_file).unwrap();
    assert!(
        !seen.contains("NOTIFY_SOCKET") && !seen.contains("WATCHDOG_USEC"),
        "{seen}"
    );
    // SAFETY: sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    while !said.iter().any(|m| m == "STOPPING=1") {
        said.push(next());
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
