//! What the tools say is true (issue "Nothing misleading"): a failure
//! always reaches the errors stream with its reason and last stderr lines,
//! and the crontab wrapper behaves like chronic.

use crate::helper::{Sandbox, repo, runs, text};

/// Every failed run of the quickstart example, a plain `exit 1` and a
/// timeout included, has a line in `errors.log` under split-streams.yaml.
#[tokio::test(flavor = "multi_thread")]
async fn every_failed_run_of_the_quickstart_reaches_errors_log() {
    let sb = Sandbox::new();
    let jobs = std::fs::read_to_string(repo().join("examples/quickstart/overnight.yaml")).unwrap();
    let routing =
        std::fs::read_to_string(repo().join("log4rs-configs/split-streams.yaml")).unwrap();
    let config = sb.write("overnight.yaml", &jobs);
    sb.write("log4rs.yaml", &routing);
    let config = config.to_str().unwrap();
    for job in ["heartbeat", "flaky-export", "stale-check", "slow-sync"] {
        let out = sb.run(&["run", job, "-c", config]);
        assert!(out.status.code().is_some(), "{job}: {:?}", text(&out));
    }
    let errors = sb.read("logs/errors.log");
    let failed: Vec<_> = runs(&sb.path().join(".overnight"))
        .await
        .into_iter()
        .filter(|r| r.status == "failed")
        .collect();
    let names: Vec<&str> = failed.iter().map(|r| r.job.as_str()).collect();
    assert_eq!(names, ["flaky-export", "stale-check", "slow-sync"]);
    for run in &failed {
        let tag = format!("{}#{} failed: ", run.job, run.id);
        assert!(errors.contains(&tag), "no `{tag}` in:\n{errors}");
    }
    assert!(
        errors.contains("stale-check#3 failed: exit 1\n"),
        "{errors}"
    );
    assert!(
        errors.contains("stale-check#3 stderr: checking for stale files\n"),
        "{errors}"
    );
    assert!(
        errors.contains("slow-sync#4 failed: timeout after 2s"),
        "{errors}"
    );
    assert!(!errors.contains("heartbeat"), "{errors}");
}

/// The reason names what went wrong: a signal by name, a missing workdir
/// as such (not "cannot start /bin/sh"); `report` shows the last stderr
/// lines, as many as `error_lines` says.
#[tokio::test(flavor = "multi_thread")]
async fn a_failure_says_why_and_shows_its_last_stderr_lines() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n\
         \x20 killed:\n    command: kill -9 $$\n\
         \x20 nowhere:\n    workdir: /no/such/dir\n    command: echo hi\n\
         \x20 chatty:\n    error_lines: 3\n    command: for i in 1 2 3 4 5; do echo \"line $i\" >&2; done; exit 4\n",
    );
    let check = sb.run(&["check"]);
    assert!(
        text(&check)
            .1
            .contains("job `nowhere`: workdir /no/such/dir does not exist"),
        "{:?}",
        text(&check)
    );
    let killed = sb.run(&["run", "killed"]);
    assert_eq!(killed.status.code(), Some(1));
    assert!(
        text(&killed).0.contains("failed (killed by SIGKILL"),
        "{:?}",
        text(&killed)
    );
    let nowhere = sb.run(&["run", "nowhere"]);
    assert!(
        text(&nowhere)
            .0
            .contains("cannot start: workdir /no/such/dir does not exist"),
        "{:?}",
        text(&nowhere)
    );
    let chatty = sb.run(&["run", "chatty"]);
    let (shown, _) = text(&chatty);
    assert!(
        shown.contains("last stderr lines:\n    line 3\n    line 4\n    line 5\n"),
        "{shown}"
    );
    let report = sb.run(&["report", "3"]);
    assert_eq!(text(&report).0, shown, "report and run say the same");
    let json = sb.run(&["report", "3", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        doc["log"]["last_stderr"],
        serde_json::json!(["line 3", "line 4", "line 5"])
    );
}

/// The shipped log4rs files, for `--log-config`, written beside a
/// `logs/` folder of the sandbox.
fn shipped_configs(sb: &Sandbox) -> Vec<String> {
    let mut paths = vec![String::new()];
    for entry in std::fs::read_dir(repo().join("log4rs-configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let written = sb.write(&name, &std::fs::read_to_string(&path).unwrap());
            paths.push(written.to_str().unwrap().to_string());
        }
    }
    assert!(paths.len() >= 5, "{paths:?}");
    paths
}

/// `overnight exec` prints nothing when the command succeeds, with no log
/// config and with each shipped one, and the report (with the command's
/// stderr) on stdout when it fails.
#[test]
fn exec_is_silent_on_success_and_speaks_on_failure() {
    let sb = Sandbox::new();
    for config in shipped_configs(&sb) {
        let mut args = vec!["exec"];
        if !config.is_empty() {
            args.extend(["--log-config", &config]);
        }
        let ok = sb.run(&[&args[..], &["--", "sh", "-c", "echo fine; echo note >&2"]].concat());
        assert_eq!(ok.status.code(), Some(0), "{config}: {:?}", text(&ok));
        assert_eq!(text(&ok), (String::new(), String::new()), "{config}");

        let bad = sb.run(&[&args[..], &["--", "sh", "-c", "echo boom >&2; exit 1"]].concat());
        assert_eq!(bad.status.code(), Some(1), "{config}: {:?}", text(&bad));
        let (stdout, _) = text(&bad);
        assert!(stdout.contains("failed (exit 1,"), "{config}: {stdout}");
        assert!(stdout.contains("    boom\n"), "{config}: {stdout}");
    }
    let verbose = sb.run(&["exec", "--verbose", "--", "true"]);
    let (_, stderr) = text(&verbose);
    assert!(stderr.contains("started job=true"), "{stderr}");
    assert!(stderr.contains("finished status=success"), "{stderr}");
}

/// A broken `./overnight.yaml` or `--log-config` never stops the wrapped
/// command: it runs, its lines reach the console, and the problem is said
/// and recorded as a warning of the run.
#[tokio::test(flavor = "multi_thread")]
async fn exec_runs_the_command_whatever_its_configuration() {
    let sb = Sandbox::new();
    sb.write("overnight.yaml", "jobs: [this is not a mapping\n");
    let out = sb.run(&["exec", "--", "sh", "-c", "echo boom >&2; exit 1"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("boom"), "{stdout}");
    assert!(stderr.contains("jobs file not used"), "{stderr}");
    assert!(stdout.contains("warning: jobs file not used"), "{stdout}");
    // Its lines reached the console, as the warning says.
    assert!(stderr.contains("jobs::log::sh boom"), "{stderr}");

    let ok = sb.run(&["exec", "--", "true"]);
    assert_eq!(ok.status.code(), Some(3), "a warning: {:?}", text(&ok));

    std::fs::remove_file(sb.path().join("overnight.yaml")).unwrap();
    let routing = sb.write(
        "bad-log4rs.yaml",
        "appenders:\n  out:\n    kind: file\n    path: /proc/no/such/out.log\n    encoder:\n      pattern: \"{m}{n}\"\nroot:\n  appenders: [out]\n",
    );
    let out = sb.run(&[
        "exec",
        "--name",
        "nightly",
        "--log-config",
        routing.to_str().unwrap(),
        "--",
        "echo",
        "a line that must not vanish",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(stderr.contains("a line that must not vanish"), "{stderr}");
    assert!(stdout.contains("warning: log config not used"), "{stdout}");
    let run = runs(&sb.state_dir()).await.pop().unwrap();
    assert_eq!(run.job, "nightly");
    let capture = std::fs::read_to_string(run.capture_path.unwrap()).unwrap();
    assert!(capture.contains("a line that must not vanish"), "{capture}");
}

/// `mailto` with no way to send mail is a `check` warning, and a warning
/// of each run that would have mailed.
#[test]
fn mailto_without_a_mailer_is_said_not_dropped() {
    if std::path::Path::new("/usr/sbin/sendmail").exists() {
        eprintln!("skipped: this machine has a sendmail");
        return;
    }
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n  nightly:\n    mailto: ops@example.com\n    command: exit 1\n  fine:\n    mailto: ops@example.com\n    command: \"true\"\n",
    );
    let check = sb.run(&["check"]);
    assert_eq!(check.status.code(), Some(0));
    assert!(
        text(&check)
            .1
            .contains("job `nightly`: its failures and warnings are not mailed to ops@example.com"),
        "{:?}",
        text(&check)
    );
    let failed = sb.run(&["run", "nightly"]);
    assert!(
        text(&failed)
            .0
            .contains("warning: not mailed to ops@example.com"),
        "{:?}",
        text(&failed)
    );
    let fine = sb.run(&["run", "fine"]);
    assert_eq!(fine.status.code(), Some(0), "{:?}", text(&fine));
}

/// A job that alternates stdout and stderr lines, each written once the
/// runner has read the one before, finds them in that order in its capture
/// file and its log, each record carrying its stream — also in the
/// daemon, whose worker threads once raced the two pipes' readers.
#[tokio::test(flavor = "multi_thread")]
async fn output_order_across_stdout_and_stderr_is_kept() {
    let sb = Sandbox::new();
    let script = sb.write(
        "alternate.py",
        r#"import fcntl, struct, sys, termios
def unread(fd):
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
import os
for i in range(200):
    for fd, name in ((1, "out"), (2, "err")):
        os.write(fd, f"{name} {i}\n".encode())
        while unread(fd):
            pass
"#,
    );
    sb.write(
        "log4rs.yaml",
        "appenders:\n  json:\n    kind: file\n    path: jobs.jsonl\n    encoder:\n      kind: json\nloggers:\n  jobs::log:\n    level: info\n    appenders: [json]\n    additive: false\nroot:\n  level: off\n",
    );
    let daemon = crate::helper::TestDaemon::start_in(
        sb,
        &format!(
            "log_config: log4rs.yaml\njobs:\n  alternate:\n    schedule: \"@reboot\"\n    command: python3 {}\n",
            script.display()
        ),
        std::sync::Arc::new(overnight::schedule::clock::SystemClock),
    )
    .await;
    let state = daemon.state_dir.clone();
    let run = crate::helper::wait_for_runs(&state, "the run's end", |runs| {
        runs.into_iter().find(|r| r.status != "running")
    })
    .await;
    let sb = daemon.stop().await;
    assert_eq!(run.status, "success");
    let expected: Vec<String> = (0..200)
        .flat_map(|i| [format!("out\tout {i}"), format!("err\terr {i}")])
        .collect();
    let capture = std::fs::read_to_string(run.capture_path.unwrap()).unwrap();
    let seen: Vec<String> = capture
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(_, rest)| rest.to_string()))
        .collect();
    assert_eq!(seen, expected, "capture file order");
    let logged: Vec<String> = sb
        .read("jobs.jsonl")
        .lines()
        .map(|l| {
            let record: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{}\t{}",
                &record["attributes"]["stream"].as_str().unwrap()[3..],
                record["message"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(logged, expected, "log order and stream");
}

/// Human output reads times in the job's zone, to the second, with the
/// offset; `--json` keeps RFC 3339. `history` shows the trigger and how
/// long each run took; a misspelt job name gets a "did you mean".
#[test]
fn times_read_in_the_jobs_zone_and_names_get_a_did_you_mean() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "timezone: Asia/Tokyo\njobs:\n  backup:\n    command: sleep 0.3\n  boot:\n    schedule: '@reboot'\n    command: \"true\"\n",
    );
    assert_eq!(sb.run(&["run", "backup"]).status.code(), Some(0));
    let (table, _) = text(&sb.run(&["history"]));
    let row = table.lines().nth(1).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..4], ["1", "backup", "success", "manual"], "{table}");
    assert_eq!(cells[6], "+09:00", "{table}");
    assert!(cells[7].ends_with('s') && cells[7] >= "0.3s", "{table}");
    let (json, _) = text(&sb.run(&["history", "--json"]));
    let runs: serde_json::Value = serde_json::from_str(&json).unwrap();
    let started = runs[0]["started_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(started).is_ok(),
        "{started}"
    );

    let (status, _) = text(&sb.run(&["status"]));
    assert!(status.contains("at daemon start"), "{status}");
    let (check, _) = text(&sb.run(&["check"]));
    assert!(check.contains("next: at daemon start"), "{check}");

    let typo = sb.run(&["run", "bakup"]);
    assert_eq!(typo.status.code(), Some(1));
    assert!(
        text(&typo).1.contains("no job named `bakup`")
            && text(&typo).1.contains("did you mean `backup`?"),
        "{:?}",
        text(&typo)
    );
    let typo = sb.run(&["history", "bakup"]);
    assert!(
        text(&typo).1.contains("did you mean `backup`?"),
        "{:?}",
        text(&typo)
    );
    let (empty, _) = text(&sb.run(&["history", "boot"]));
    assert_eq!(empty.trim(), "no runs yet");
}

/// A trigger's `log: true` record carries the run id and attempt, like
/// every other record of the run.
#[test]
fn a_trigger_log_record_names_its_run_and_attempt() {
    let sb = Sandbox::new();
    sb.write(
        "log4rs.yaml",
        "appenders:\n  json:\n    kind: file\n    path: notify.jsonl\n    encoder:\n      kind: json\nloggers:\n  jobs::notify:\n    level: info\n    appenders: [json]\n    additive: false\nroot:\n  level: off\n",
    );
    sb.write(
        "overnight.yaml",
        "log_config: log4rs.yaml\ntriggers:\n  - on: [failed]\n    log: true\njobs:\n  flaky:\n    command: exit 1\n    retries: {count: 1, delay: 1s}\n",
    );
    assert_eq!(sb.run(&["run", "flaky"]).status.code(), Some(1));
    let record: serde_json::Value =
        serde_json::from_str(sb.read("notify.jsonl").lines().last().unwrap()).unwrap();
    let attributes = &record["attributes"];
    assert_eq!(attributes["job"], "flaky", "{record}");
    assert_eq!(attributes["run_id"], "1", "{record}");
    assert_eq!(attributes["attempt"], "2", "{record}");
}

/// `logs JOB -f` typed before the job's first run waits for it and follows
/// it to its end; a name the jobs file does not have is refused at once.
#[test]
fn logs_follow_waits_for_the_first_run() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n  nightly:\n    command: echo first; sleep 0.5; echo second\n",
    );
    let mut follower = sb
        .command(&["logs", "nightly", "-f"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It says it waits before the run starts.
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(follower.stderr.take().unwrap()),
        &mut said,
    )
    .unwrap();
    assert_eq!(said, "waiting for the first run of `nightly`…\n");
    assert_eq!(sb.run(&["run", "nightly"]).status.code(), Some(0));
    let out = follower.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out).0, "first\nsecond\n");

    let typo = sb.run(&["logs", "nightyl", "-f"]);
    assert_eq!(typo.status.code(), Some(1));
    assert!(
        text(&typo).1.contains("did you mean `nightly`?"),
        "{:?}",
        text(&typo)
    );
}

/// A second daemon on the same state directory names the first one's pid,
/// also when both ask for the same port; daemons of two jobs files with no
/// `listen:` both start, on different ports, each written on its card.
#[tokio::test(flavor = "multi_thread")]
async fn daemons_name_each_other_and_do_not_fight_over_the_default_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        &format!("listen: 127.0.0.1:{port}\njobs:\n  a:\n    command: \"true\"\n"),
    );
    let first = sb.daemon().spawn().unwrap();
    let card = sb.path().join(".overnight/daemon.json");
    crate::helper::wait_for(std::time::Duration::from_secs(30), "the card", || {
        let ready = card.exists();
        async move { ready.then_some(()) }
    })
    .await;
    let second = sb.run(&["daemon"]);
    let (_, stderr) = text(&second);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("another overnight daemon by pid {}", first.id())),
        "{stderr}"
    );
    crate::helper::terminate(first);

    // Two jobs files, no `listen:`: the second is not refused.
    let (one, two) = (Sandbox::new(), Sandbox::new());
    let mut daemons = Vec::new();
    for sb in [&one, &two] {
        sb.write("overnight.yaml", "jobs:\n  a:\n    command: \"true\"\n");
        daemons.push(sb.daemon().spawn().unwrap());
    }
    let mut ports = Vec::new();
    for sb in [&one, &two] {
        let card = sb.path().join(".overnight/daemon.json");
        let doc: serde_json::Value = crate::helper::wait_for(
            std::time::Duration::from_secs(30),
            "each daemon's card",
            || {
                let text = std::fs::read_to_string(&card).unwrap_or_default();
                async move { serde_json::from_str(&text).ok() }
            },
        )
        .await;
        ports.push(doc["addr"].as_str().unwrap().to_string());
        // Each answers on its own address.
        assert_eq!(sb.run(&["run", "a"]).status.code(), Some(0));
    }
    assert_ne!(ports[0], ports[1]);
    for daemon in daemons {
        crate::helper::terminate(daemon);
    }
}
