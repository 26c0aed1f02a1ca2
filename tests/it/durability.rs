//! No run lost: hundreds of `overnight exec` racing readers that fold the
//! journal, wrappers ended by a signal or killed with -9.

use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helper::{Sandbox, runs, terminate, text, wait_for};

/// How a stress run's job ends, by its index: (the command, its status).
fn job_of(i: usize) -> (&'static [&'static str], &'static str) {
    match i % 3 {
        // Jobs that last a moment: a fold reads their file while they run
        // and they end before it is done, the race that lost runs.
        0 => (&["sleep", "0.1"], "success"),
        1 => (&["false"], "failed"),
        _ => (
            &["sh", "-c", "echo '::warning::half done'; sleep 0.1"],
            "warning",
        ),
    }
}

/// The stress test: 20 batches of 500 parallel `exec` runs, each
/// batch on a fresh state directory (so the wrappers themselves open the
/// history and fold each other's journals), with processes folding beside
/// them all along (`history`, `status`, `report`); every run is recorded
/// with the status its job ended with, none left `running`.
#[test]
fn five_hundred_parallel_execs_racing_folds_lose_no_run_twenty_times_over() {
    const BATCHES: usize = 20;
    const PARALLEL: usize = 500;
    let sb = Arc::new(Sandbox::new());
    let state = Arc::new(Mutex::new(sb.state_dir()));
    let done = Arc::new(AtomicBool::new(false));
    let folders: Vec<_> = [
        &["history", "--json", "--limit", "5"][..],
        &["status"],
        &["report", "1"],
    ]
    .into_iter()
    .map(|args| {
        let (sb, state, done) = (Arc::clone(&sb), Arc::clone(&state), Arc::clone(&done));
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        std::thread::spawn(move || {
            let mut folds = 0;
            while !done.load(Ordering::Relaxed) {
                let dir = state.lock().unwrap().clone();
                // Before a batch's first run there is nothing to read.
                if overnight::store::has_history(&dir) {
                    let out = sb
                        .command(&[])
                        .args(&args)
                        .env("OVERNIGHT_STATE_DIR", &dir)
                        .output()
                        .unwrap();
                    assert!(out.status.code().is_some(), "{args:?}: {:?}", text(&out));
                    folds += 1;
                }
            }
            folds
        })
    })
    .collect();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for batch in 0..BATCHES {
        let dir = sb.path().join(format!("state-{batch}"));
        *state.lock().unwrap() = dir.clone();
        let children: Vec<(usize, Child)> = (0..PARALLEL)
            .map(|i| {
                let name = format!("j{i}");
                let mut args = vec!["exec", "--name", &name, "--"];
                args.extend_from_slice(job_of(i).0);
                let child = sb
                    .command(&args)
                    .env("OVERNIGHT_STATE_DIR", &dir)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                (i, child)
            })
            .collect();
        for (i, child) in children {
            let out = child.wait_with_output().unwrap();
            let code = out.status.code();
            let want = match job_of(i).1 {
                "success" => 0,
                "failed" => 1,
                _ => 3,
            };
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(code, Some(want), "batch {batch}, j{i}: {stderr}");
            assert!(
                !stderr.contains("not in the history"),
                "batch {batch}, j{i}: {stderr}"
            );
        }
        let recorded = runtime.block_on(runs(&dir));
        let wrong: Vec<String> = recorded
            .iter()
            .filter(|run| {
                let i: usize = run.job[1..].parse().unwrap();
                run.status != job_of(i).1
            })
            .map(|run| format!("#{} {}: {}", run.id, run.job, run.status))
            .collect();
        assert!(
            wrong.is_empty(),
            "batch {batch}: {} run(s) misrecorded: {wrong:#?}",
            wrong.len()
        );
        assert_eq!(
            recorded.len(),
            PARALLEL,
            "batch {batch}: every run recorded, once"
        );
    }
    done.store(true, Ordering::Relaxed);
    for folder in folders {
        assert!(folder.join().unwrap() > 0, "each folder folded");
    }
}

/// `timeout 2 overnight exec --name t -- sleep 37`: SIGTERM to the
/// wrapper ends the job's group, the run is recorded as ended by it, and
/// the wrapper exits 128 + 15 like a shell.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrapper_ended_by_sigterm_records_its_run_and_leaves_no_job_behind() {
    let sb = Sandbox::new();
    // `sleep 37`, with a fraction that names this test's job alone.
    let marker = format!("sleep 37.{}", std::process::id());
    let out = std::process::Command::new("timeout")
        .args([
            "--preserve-status",
            "2",
            env!("CARGO_BIN_EXE_overnight"),
            "exec",
            "--name",
            "t",
            "--",
        ])
        .args(["sh", "-c", &marker])
        .current_dir(sb.path())
        .env("OVERNIGHT_STATE_DIR", sb.state_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(143), "{:?}", text(&out));
    let left: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.trim_end() == marker)
        .collect();
    assert!(left.is_empty(), "the job is gone: {left:?}");

    let runs = runs(&sb.state_dir()).await;
    let t = runs
        .iter()
        .find(|r| r.job == "t")
        .expect("the run is recorded");
    assert_eq!(t.status, "failed");
    let summary = t.summary.as_deref().unwrap_or_default();
    assert!(summary.contains("terminated by SIGTERM"), "{summary}");
}

/// A wrapper killed with -9 records nothing more; the next command that
/// reads the history finds its process gone and closes the run as `lost`,
/// and the job's lock is free: `status` shows no dead holder and the next
/// `exec` runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrapper_killed_with_9_leaves_a_lost_run_and_a_free_lock() {
    let sb = Sandbox::new();
    let mut wrapper = sb
        .command(&[
            "exec",
            "--name",
            "t",
            "--",
            "sh",
            "-c",
            "while :; do echo tick; sleep 0.05; done",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = sb.state_dir();
    let run = wait_for(
        Duration::from_secs(20),
        "the run with its job's pid",
        || {
            let state = state.clone();
            async move {
                runs(&state)
                    .await
                    .into_iter()
                    .find(|r| r.job == "t" && r.job_pid.is_some())
            }
        },
    )
    .await;
    // SAFETY: sends a signal; no memory is involved.
    unsafe { libc::kill(wrapper.id() as i32, libc::SIGKILL) };
    wrapper.wait().unwrap();
    // The job dies at its next write into the wrapper's closed pipe.
    let job = run.job_pid.unwrap() as i32;
    wait_for(Duration::from_secs(10), "the job to die", || async move {
        // SAFETY: signal 0 only checks.
        (unsafe { libc::kill(job, 0) } != 0).then_some(())
    })
    .await;

    let status = sb.run(&["status"]);
    let (stdout, stderr) = text(&status);
    assert!(status.status.success(), "{stderr}");
    assert!(
        !stdout.contains("running"),
        "no dead holder shows: {stdout}"
    );
    let report = sb.run(&["report", &run.id.to_string(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["status"], "lost", "{report:#}");
    let again = sb.run(&["exec", "--name", "t", "--", "true"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "the lock is free: {:?}",
        text(&again)
    );
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts `size` of tmpfs at `at` (the tests run as root, as CI does).
    fn mount(at: std::path::PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&at).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs (needs root): {:?}",
            text(&out)
        );
        Tmpfs(at)
    }

    /// Fills it to the last byte; returns the filler's path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            if let Err(e) = file.write_all(&chunk) {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
                break;
            }
        }
        // Whatever sub-page room is left, too.
        while file.write(&[0u8]).is_ok_and(|n| n == 1) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The full disk: a daemon job firing every second keeps its
/// history complete while the state directory's disk is full and after
/// space comes back, with no restart; `exec` runs its command while the
/// disk is full, and says the run could not be recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_loses_no_daemon_run_and_stops_no_exec() {
    let sb = Sandbox::new();
    let disk = Tmpfs::mount(sb.path().join("disk"), "2m");
    let fires = sb.path().join("fires");
    let state = disk.0.join("state");
    sb.write(
        "overnight.yaml",
        &format!(
            "listen: 127.0.0.1:0\nstate_dir: {}\njobs:\n  tick:\n    schedule: '* * * * * *'\n    command: echo $OVERNIGHT_RUN_ID >> {}\n",
            state.display(),
            fires.display()
        ),
    );
    let mut daemon = sb.daemon().spawn().unwrap();
    let fired = || -> Vec<i64> {
        std::fs::read_to_string(&fires)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    let fires_past = |n: usize| {
        wait_for(Duration::from_secs(30), "more fires", move || {
            let now = fired().len();
            async move { (now >= n).then_some(()) }
        })
    };
    fires_past(2).await;

    let filler = disk.fill();
    let before = fired().len();
    fires_past(before + 3).await;
    let ran = sb.path().join("exec-ran");
    let exec = sb
        .command(&["exec", "--name", "while-full", "--", "sh", "-c"])
        .arg(format!("echo ran > {}", ran.display()))
        .output()
        .unwrap();
    let (_, stderr) = text(&exec);
    assert_eq!(exec.status.code(), Some(0), "{stderr}");
    assert!(ran.exists(), "the command ran with the disk full");
    assert!(
        stderr.contains("is not in the history") && stderr.contains("No space left on device"),
        "{stderr}"
    );

    std::fs::remove_file(filler).unwrap();
    let after = fired().len();
    fires_past(after + 2).await;
    let want = fired();
    let recorded = wait_for(Duration::from_secs(30), "every fire in the history", || {
        let (state, want) = (state.clone(), want.clone());
        async move {
            let runs = runs(&state).await;
            let ended = |id: &i64| runs.iter().any(|r| r.id == *id && r.status == "success");
            want.iter().all(ended).then_some(runs)
        }
    })
    .await;
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon ran on without a restart: {}",
        sb.read("daemon.err")
    );
    let tick: Vec<_> = recorded.iter().filter(|r| r.job == "tick").collect();
    assert!(tick.len() >= want.len(), "{tick:#?}");
    sb.daemon_said("runs not recorded in the history yet").await;
    sb.daemon_said("caught up").await;
    terminate(daemon);
}

/// A log file on a full disk: no flood of `log4rs:` lines on stderr, and
/// the run's report carries one warning for the appender, with the count
/// of records lost and the OS's error; the other appenders go on.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_appender_on_a_full_disk_is_one_warning_in_the_report() {
    let sb = Sandbox::new();
    let disk = Tmpfs::mount(sb.path().join("logdisk"), "256k");
    sb.write(
        "log4rs.yaml",
        &format!(
            "appenders:\n  full:\n    kind: file\n    path: {}/jobs.log\n    encoder: {{pattern: \"{{m}}{{n}}\"}}\n  \
             kept:\n    kind: file\n    path: kept.log\n    encoder: {{pattern: \"{{l}} {{m}}{{n}}\"}}\n\
             root:\n  level: info\n  appenders: [full, kept]\n",
            disk.0.display()
        ),
    );
    disk.fill();
    let out = sb.run(&[
        "exec",
        "--name",
        "loud",
        "--log-config",
        "log4rs.yaml",
        "--",
        "seq",
        "10000",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "a warning run: {stderr}");
    assert!(
        stderr.lines().filter(|l| l.contains("log4rs")).count() <= 1,
        "{stderr}"
    );
    let run = runs(&sb.state_dir()).await.pop().unwrap();
    let report = sb.run(&["report", &run.id.to_string(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{report:#}");
    let warning = warnings[0]["message"].as_str().unwrap();
    assert!(
        warning.starts_with("log appender `full` could not write"),
        "{warning}"
    );
    assert!(warning.contains("No space left on device"), "{warning}");
    let kept = sb.read("kept.log");
    assert!(
        kept.contains("INFO 10000") && kept.contains("log appender `full`"),
        "{kept}"
    );
}
