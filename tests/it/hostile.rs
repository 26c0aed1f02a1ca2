//! What a hostile tester found, each shown fixed: duplicate keys, forged
//! log lines, absurd rollers, unset variables, non-UTF-8 arguments, a
//! stale run-id file, a lock file that cannot be opened, foreign `Host`s,
//! and a daemon asked twice to stop.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;

use crate::helper::{Sandbox, TestDaemon, repo, runs, terminate, text, wait_for_daemon_runs};

/// `command:` twice in a job is an error at the second, not "last wins".
#[test]
fn a_key_written_twice_is_an_error_at_its_place() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n  a:\n    command: echo one\n    command: echo two\n    env: {X: 1, X: 2}\n",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("overnight.yaml:4:5: duplicate key `command` in job `a` (first at line 3)"),
        "{stderr}"
    );
    assert!(stderr.contains("duplicate name `X`"), "{stderr}");
}

/// A job printing a bare CR and an escape sequence cannot forge another
/// job's ERROR line in a shared text log: both arrive escaped there, and
/// raw in the job's own capture file.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_are_escaped_in_text_logs_and_kept_in_the_capture() {
    let sb = Sandbox::new();
    let shipped =
        std::fs::read_to_string(repo().join("log4rs-configs/split-streams.yaml")).unwrap();
    let config = sb.write("conf/log4rs.yaml", &shipped);
    let forged = "ok\r2026-11-30T03:00:00.000+00:00 ERROR backup#9 \u{1b}[31mdisk gone";
    let out = sb.run(&[
        "exec",
        "--name",
        "sneaky",
        "--log-config",
        config.to_str().unwrap(),
        "--",
        "printf",
        "%s\\n",
        forged,
    ]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let log = sb.read("conf/logs/jobs.log");
    assert!(
        log.contains("ok\\r2026-11-30T03:00:00.000+00:00 ERROR backup#9 \\x1b[31mdisk gone"),
        "{log:?}"
    );
    assert!(!log.contains('\r') && !log.contains('\u{1b}'), "{log:?}");
    let run = runs(&sb.state_dir()).await.pop().unwrap();
    let capture = std::fs::read_to_string(run.capture_path.unwrap()).unwrap();
    assert!(capture.contains(forged), "raw in the capture: {capture:?}");
}

/// A log4rs file whose roller keeps a hundred million files, whose size
/// limit is zero, or whose path names an unset `$ENV{…}` is refused at
/// `check`, each with the appender's name.
#[test]
fn absurd_rollers_zero_limits_and_unset_variables_are_errors_at_check() {
    let sb = Sandbox::new();
    sb.write(
        "log4rs.yaml",
        "appenders:\n  many:\n    kind: rolling_file\n    path: logs/a.log\n    policy:\n      trigger: { kind: size, limit: 1 mb }\n      roller: { kind: fixed_window, pattern: 'logs/a.{}.log', count: 100000000 }\n  \
         zero:\n    kind: per_job_file\n    path: logs/{job}.log\n    policy:\n      trigger: { kind: size, limit: 0 }\n      roller: { kind: delete }\n  \
         unset:\n    kind: file\n    path: $ENV{OVERNIGHT_TEST_SURELY_UNSET}/x.log\n\
         root:\n  level: info\n  appenders: [many, zero, unset]\n",
    );
    sb.write(
        "overnight.yaml",
        "log_config: log4rs.yaml\njobs:\n  a:\n    command: 'true'\n",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("appender `many`: the roller's `count: 100000000` is too many"),
        "{stderr}"
    );
    assert!(
        stderr.contains("appender `zero`: the size trigger's `limit` must be more than 0 bytes"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "appender `unset`: `$ENV{OVERNIGHT_TEST_SURELY_UNSET}` in its path is not set"
        ),
        "{stderr}"
    );
    assert!(!sb.path().join("$ENV{OVERNIGHT_TEST_SURELY_UNSET}").exists());
}

/// Arguments that are not UTF-8 reach the wrapped command byte for byte.
#[test]
fn non_utf8_arguments_pass_through_as_bytes() {
    let sb = Sandbox::new();
    let seen = sb.path().join("seen");
    let arg = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let out = sb
        .command(&[
            "exec",
            "--name",
            "bytes",
            "--",
            "sh",
            "-c",
            "printf '%s' \"$1\" > \"$2\"",
            "sh",
        ])
        .arg(arg)
        .arg(&seen)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(std::fs::read(&seen).unwrap(), b"caf\xe9");
}

/// A `last-run-id` restored from an old backup hands out an id again: the
/// old run's capture file is not overwritten, and both runs are kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_stale_run_id_file_overwrites_no_capture_file() {
    let sb = Sandbox::new();
    assert!(
        sb.run(&["exec", "--name", "t", "--", "echo", "first"])
            .status
            .success()
    );
    let first = runs(&sb.state_dir()).await.pop().unwrap();
    let capture = first.capture_path.clone().unwrap();
    std::fs::write(sb.state_dir().join("last-run-id"), "0\n").unwrap();
    assert!(
        sb.run(&["exec", "--name", "t", "--", "echo", "second"])
            .status
            .success()
    );
    assert!(std::fs::read_to_string(&capture).unwrap().contains("first"));
    let all = runs(&sb.state_dir()).await;
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all.iter().all(|r| r.status == "success"));
}

/// A lock file that cannot be opened is said as such, never as "the job
/// is still running": a wrapped crontab line runs all the same, with a
/// warning saying so; a job of the jobs file is skipped, saying why.
#[test]
fn a_lock_file_that_cannot_be_opened_is_not_reported_as_running() {
    let sb = Sandbox::new();
    let ran = sb.path().join("ran");
    sb.write(
        "overnight.yaml",
        &format!("jobs:\n  t:\n    command: touch {}\n", ran.display()),
    );
    let state = sb.path().join(".overnight");
    std::fs::create_dir_all(&state).unwrap();
    // A file where the locks folder goes.
    std::fs::write(state.join("locks"), "").unwrap();

    let out = sb
        .command(&["exec", "--name", "wrapped", "--", "touch"])
        .arg(&ran)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "a warning run: {stderr}");
    assert!(ran.exists(), "the wrapped command ran");
    assert!(
        stdout.contains("warning: ran without its lock: cannot open the lock file"),
        "{stdout}"
    );

    std::fs::remove_file(&ran).unwrap();
    let out = sb.run(&["run", "t"]);
    let (stdout, stderr) = text(&out);
    assert!(!ran.exists(), "a job of the file keeps its exclusivity");
    assert!(
        stdout.contains("t #2: skipped: cannot open the lock file"),
        "{stdout}{stderr}"
    );
    assert!(!stdout.contains("still running"), "{stdout}");
}

/// One request on a raw connection; the status line.
fn request(addr: std::net::SocketAddr, host: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /api/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_string()
}

/// DNS rebinding: a page elsewhere makes the browser send its own name as
/// `Host`; the daemon on loopback answers loopback names only.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_loopback_host_names_only() {
    let daemon = TestDaemon::start("jobs:\n  a:\n    command: 'true'\n").await;
    let card: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(daemon.state_dir.join("daemon.json")).unwrap(),
    )
    .unwrap();
    let addr: std::net::SocketAddr = card["addr"].as_str().unwrap().parse().unwrap();
    let answers = tokio::task::spawn_blocking(move || {
        [
            format!("127.0.0.1:{}", addr.port()),
            format!("localhost:{}", addr.port()),
            "evil.example".to_string(),
            format!("attacker.example:{}", addr.port()),
        ]
        .map(|host| request(addr, &host))
    })
    .await
    .unwrap();
    assert!(
        answers[0].contains("200") && answers[1].contains("200"),
        "{answers:?}"
    );
    assert!(
        answers[2].contains("421") && answers[3].contains("421"),
        "{answers:?}"
    );
    daemon.stop().await;
}

/// Ctrl-C gives running jobs their grace; a second one ends them now and
/// says so; the run is recorded and the daemon exits.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_interrupt_ends_the_running_jobs_and_says_so() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "listen: 127.0.0.1:0\nshutdown_grace: 10m\njobs:\n  long:\n    schedule: '* * * * * *'\n    command: echo started; sleep 600\n",
    );
    let mut daemon = sb.daemon().spawn().unwrap();
    let state = sb.path().join(".overnight");
    wait_for_daemon_runs(&sb, &state, "a running job", |runs| {
        runs.into_iter()
            .find(|r| r.status == "running" && r.job_pid.is_some())
    })
    .await;
    let pid = daemon.id() as i32;
    // SAFETY: sends a signal; no memory is involved.
    unsafe { libc::kill(pid, libc::SIGINT) };
    sb.daemon_said("a second Ctrl-C or SIGTERM ends them now")
        .await;
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGINT) };
    sb.daemon_said("SIGINT again (signal 2): 1 running job(s): sending them TERM now")
        .await;
    let status = daemon.wait().unwrap();
    assert!(status.success(), "{}", sb.read("daemon.err"));
    let all = runs(&state).await;
    assert!(all.iter().all(|r| r.status != "running"), "{all:#?}");
}

/// A daemon started with few descriptors says so, with how to raise them.
#[tokio::test(flavor = "multi_thread")]
async fn a_low_descriptor_limit_is_warned_about_at_start() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "listen: 127.0.0.1:0\njobs:\n  a:\n    command: 'true'\n",
    );
    let mut command = sb.daemon();
    // SAFETY: setrlimit is async-signal-safe and touches only the struct.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            Ok(())
        })
    };
    let daemon = command.spawn().unwrap();
    sb.daemon_said("only 256 open files allowed").await;
    terminate(daemon);
}

/// `overnight history --json | head -1`: the reader goes away, and the
/// command ends without a panic or a backtrace.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_output_pipe_ends_a_printing_command_quietly() {
    let sb = Sandbox::new();
    // More than a pipe holds (64 KiB): the writer meets the closed end.
    for _ in 0..300 {
        assert!(
            sb.run(&["exec", "--name", "t", "--", "true"])
                .status
                .success()
        );
    }
    let mut history = sb
        .command(&["history", "--json", "--limit", "300"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one byte, then close the pipe, as `head -c 1` would.
    let mut stdout = history.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = history.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(runs(&sb.state_dir()).await.len(), 300);
}

/// `overnight exec backup.sh` without `--` says where the command goes.
#[test]
fn exec_without_the_double_dash_says_where_the_command_goes() {
    let sb = Sandbox::new();
    let out = sb.run(&["exec", "--name", "x", "ls", "-l"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tip: the wrapped command goes after `--`"),
        "{stderr}"
    );
}

/// A job that makes `$OVERNIGHT_REPORT` a FIFO no one writes, or a
/// folder, does not hang its run or the runner: the run ends, its report
/// saying the file was not read.
#[test]
fn a_report_file_that_is_not_a_file_is_said_and_does_not_hang_the_run() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n  fifo:\n    command: mkfifo \"$OVERNIGHT_REPORT\"\n  folder:\n    command: mkdir \"$OVERNIGHT_REPORT\"\n",
    );
    for (job, id) in [("fifo", "1"), ("folder", "2")] {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut run = sb.command(&["run", job]);
        std::thread::spawn(move || {
            let _ = tx.send(run.output());
        });
        let out = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("`{job}`'s run did not end"))
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{job}: {out:?}");
        let errors = sb.run(&["report", id, "--section", "errors"]);
        assert!(
            text(&errors)
                .0
                .contains("is not a regular file and was not read"),
            "{job}: {:?}",
            text(&errors)
        );
    }
}
