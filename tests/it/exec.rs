//! `overnight exec`: a crontab line wrapped, captured, routed and recorded.

use crate::helper::{Sandbox, repo, text};

/// The issue's scenario: stdout, stderr and a protocol warning from a
/// command that exits 0 make a `warning` run, each stream in its place.
#[test]
fn exec_warning_routes_each_section_and_records_the_run() {
    let sb = Sandbox::new();
    let shipped =
        std::fs::read_to_string(repo().join("log4rs-configs/split-streams.yaml")).unwrap();
    let config = sb.write("conf/log4rs.yaml", &shipped);
    let out = sb.run(&[
        "exec",
        "--name",
        "demo",
        "--log-config",
        config.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        r#"echo hello; echo oops >&2; echo "::warning::disk 91% full"; exit 0"#,
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a warning run exits 3; stderr: {stderr}"
    );

    let warnings = sb.read("conf/logs/warnings.log");
    assert!(
        warnings.contains("WARN  demo#1 disk 91% full"),
        "warnings file: {warnings:?}"
    );
    let log = sb.read("conf/logs/jobs.log");
    assert!(log.contains("INFO  demo#1 hello"), "log file: {log:?}");
    assert!(log.contains("WARN  demo#1 oops"), "log file: {log:?}");
    assert!(
        !log.contains("disk 91%"),
        "protocol lines are not output lines: {log:?}"
    );
    assert!(sb.read("conf/logs/errors.log").is_empty());
    // The status records go to the console; the closing one is at WARN.
    let closing = stderr
        .lines()
        .find(|l| l.contains("finished status=warning"))
        .expect("a closing status record");
    assert!(closing.contains("WARN  demo#1"), "{closing}");

    let history = sb.run(&["history", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(runs[0]["job"], "demo");
    assert_eq!(runs[0]["status"], "warning");
    let id = runs[0]["id"].as_i64().unwrap().to_string();

    let report = sb.run(&["report", &id, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["warnings"][0]["message"], "disk 91% full");
    assert_eq!(report["status"], "warning");
    assert_eq!(report["exit"]["code"], 0);

    let logs = sb.run(&["logs", &id]);
    let (printed, _) = text(&logs);
    assert!(printed.lines().any(|l| l == "hello"), "{printed}");
    assert!(printed.lines().any(|l| l == "oops"), "{printed}");
}

#[test]
fn exec_exit_codes_follow_the_run_status() {
    let sb = Sandbox::new();
    assert_eq!(sb.run(&["exec", "--", "true"]).status.code(), Some(0));
    assert_eq!(
        sb.run(&["exec", "--", "sh", "-c", "exit 4"]).status.code(),
        Some(1)
    );
    assert_eq!(
        sb.run(&["exec", "--", "sh", "-c", "echo ::error::bad"])
            .status
            .code(),
        Some(1)
    );
    let missing = sb.run(&["exec", "--name", "ghost", "--", "/nonexistent/program"]);
    assert_eq!(missing.status.code(), Some(1));
    let report = sb.run(&["report", "4", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let error = report["errors"][0]["message"].as_str().unwrap();
    assert!(
        error.contains("cannot start `/nonexistent/program`"),
        "{error}"
    );
}

#[test]
fn exec_refuses_a_bad_name_with_usage_exit() {
    let sb = Sandbox::new();
    let out = sb.run(&["exec", "--name", "no spaces", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("error: bad job name `no spaces`"));
}

#[test]
fn logs_of_a_job_name_shows_its_latest_run_with_timestamps() {
    let sb = Sandbox::new();
    sb.run(&["exec", "--name", "twice", "--", "echo", "first"]);
    sb.run(&["exec", "--name", "twice", "--", "echo", "second"]);
    let (out, _) = text(&sb.run(&["logs", "twice", "--timestamps"]));
    let line = out.lines().next().unwrap();
    assert!(line.ends_with(" out second"), "{line}");
    assert!(
        line.starts_with("20"),
        "starts with an RFC 3339 time: {line}"
    );
}

/// `logs -f` shows lines while the job still runs, and ends with the run.
#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_shows_lines_as_they_come_and_stops_at_the_end() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::Duration;

    let sb = Sandbox::new();
    let gate = sb.path().join("gate");
    let script = format!(
        "echo one; while [ ! -e {} ]; do sleep 0.05; done; echo two",
        gate.display()
    );
    let mut job = sb
        .command(&["exec", "--name", "follow", "--", "sh", "-c", &script])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = sb.state_dir();
    crate::helper::wait_for(Duration::from_secs(10), "the run to start", || {
        let state = state.clone();
        async move {
            crate::helper::runs(&state)
                .await
                .first()
                .map(|r| r.status == "running")
                .filter(|r| *r)
        }
    })
    .await;

    let mut follower = sb
        .command(&["logs", "follow", "-f"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    let first = tokio::task::spawn_blocking(move || (lines.next(), lines))
        .await
        .unwrap();
    let (first, mut lines) = first;
    assert_eq!(first.unwrap().unwrap(), "one");
    assert!(
        job.try_wait().unwrap().is_none(),
        "the job is still running while its line is shown"
    );

    std::fs::write(&gate, "").unwrap();
    assert_eq!(job.wait().unwrap().code(), Some(0));
    let rest = tokio::task::spawn_blocking(move || lines.next())
        .await
        .unwrap();
    assert_eq!(rest.unwrap().unwrap(), "two");
    let ended = tokio::task::spawn_blocking(move || follower.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ended.code(),
        Some(0),
        "the follower stops when the run ends"
    );
}

/// A wrapped command records its run in the journal, never opening the
/// database; the next command that reads the history folds it in.
#[test]
fn exec_leaves_the_database_alone_and_the_history_still_has_the_run() {
    let sb = Sandbox::new();
    assert!(sb.run(&["exec", "--", "true"]).status.success());
    // The first run opened the store (to start the run-id sequence); the
    // history folds that run in.
    assert!(sb.run(&["history"]).status.success());
    let state = sb.state_dir();
    // The database's files: their sizes and times.
    let stamps = || -> Vec<_> {
        ["overnight.db", "overnight.db-wal"]
            .iter()
            .map(|f| {
                std::fs::metadata(state.join(f))
                    .map(|m| (m.len(), m.modified().unwrap()))
                    .ok()
            })
            .collect()
    };
    let before = stamps();

    let out = sb.run(&[
        "exec",
        "--name",
        "quiet",
        "--",
        "sh",
        "-c",
        "echo run $OVERNIGHT_RUN_ID",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(before, stamps(), "exec wrote to the database");
    let journal: Vec<_> = std::fs::read_dir(state.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert!(
        journal[0].ends_with("-0.jsonl"),
        "the file of the process that ran it: {journal:?}"
    );

    let history = sb.run(&["history", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(
        (runs[0]["id"].as_i64(), runs[0]["job"].as_str()),
        (Some(2), Some("quiet"))
    );
    assert_eq!(runs[0]["status"], "success");
    let (printed, _) = text(&sb.run(&["logs", "2"]));
    assert_eq!(printed.trim(), "run 2");
    assert!(
        std::fs::read_dir(state.join("journal"))
            .unwrap()
            .next()
            .is_none(),
        "a folded file whose writer has exited is removed"
    );
}

/// A run that prints nothing leaves no capture file; `logs` says so.
#[test]
fn a_silent_run_leaves_no_capture_file() {
    let sb = Sandbox::new();
    assert!(
        sb.run(&["exec", "--name", "silent", "--", "true"])
            .status
            .success()
    );
    assert!(
        sb.run(&["exec", "--name", "talks", "--", "echo", "hi"])
            .status
            .success()
    );
    let runs = sb.state_dir().join("runs");
    assert!(!runs.join("silent/1.log").exists());
    assert!(runs.join("talks/2.log").exists());
    let out = sb.run(&["logs", "1"]);
    let (printed, said) = text(&out);
    assert!(out.status.success(), "{said}");
    assert_eq!(printed, "");
    assert!(
        said.contains("run #1 of `silent` has printed nothing"),
        "{said}"
    );
}

/// ASLR covers the binary itself: it is linked position-independent
/// (`ET_DYN`), not at a fixed address (`ET_EXEC`).
#[cfg(target_os = "linux")]
#[test]
fn the_binary_is_position_independent() {
    let elf = std::fs::read(env!("CARGO_BIN_EXE_overnight")).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    let e_type = u16::from_le_bytes([elf[16], elf[17]]);
    assert_eq!(
        e_type, 3,
        "ELF type {e_type}: 2 is a position-dependent executable"
    );
}
