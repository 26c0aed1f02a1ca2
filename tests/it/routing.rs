//! Each shipped log4rs file routes a real run; the files are read back.

use crate::helper::{Sandbox, repo, text};

/// Runs a script under a shipped log4rs file copied into the sandbox, so
/// that its relative paths land there.
fn exec_with(sb: &Sandbox, config: &str, name: &str, script: &str) -> std::process::Output {
    let shipped = std::fs::read_to_string(repo().join("log4rs-configs").join(config)).unwrap();
    let config = sb.write(config, &shipped);
    sb.run(&[
        "exec",
        "--name",
        name,
        "--log-config",
        config.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        script,
    ])
}

#[test]
fn per_job_files_are_named_after_jobs_the_file_never_names() {
    let sb = Sandbox::new();
    exec_with(
        &sb,
        "per-job-files.yaml",
        "alpha",
        "echo from-alpha; echo ::error::alpha broke",
    );
    exec_with(&sb, "per-job-files.yaml", "beta", "echo from-beta");
    let alpha = sb.read("logs/jobs/alpha.log");
    let beta = sb.read("logs/jobs/beta.log");
    assert!(alpha.contains("jobs::log::alpha from-alpha"), "{alpha}");
    assert!(
        alpha.contains("ERROR #1 jobs::errors::alpha alpha broke"),
        "{alpha}"
    );
    assert!(
        alpha.contains("jobs::status::alpha finished status=failed"),
        "{alpha}"
    );
    assert!(
        beta.contains("from-beta") && !beta.contains("alpha"),
        "{beta}"
    );
    let config = std::fs::read_to_string(repo().join("log4rs-configs/per-job-files.yaml")).unwrap();
    assert!(!config.contains("alpha") && !config.contains("beta"));
}

#[test]
fn json_lines_carry_job_run_and_attempt() {
    let sb = Sandbox::new();
    exec_with(
        &sb,
        "json-lines.yaml",
        "shipper",
        "echo payload; echo ::progress::50% half",
    );
    let text = sb.read("logs/overnight.jsonl");
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let line = records
        .iter()
        .find(|r| r["message"] == "payload")
        .expect("the output line");
    assert_eq!(line["target"], "jobs::log::shipper");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["attributes"]["job"], "shipper");
    assert_eq!(line["attributes"]["run_id"], "1");
    assert_eq!(line["mdc"]["attempt"], "1");
    assert!(
        records
            .iter()
            .any(|r| r["target"] == "jobs::progress::shipper" && r["message"] == "50% half")
    );
    let details = records
        .iter()
        .find(|r| r["target"] == "jobs::details::shipper")
        .expect("a details record");
    let report: serde_json::Value =
        serde_json::from_str(details["message"].as_str().unwrap()).unwrap();
    assert_eq!(report["status"], "success");
    assert_eq!(report["progress"]["percent"], 50.0);
}

#[test]
fn console_config_prints_every_section_to_stderr() {
    let sb = Sandbox::new();
    let out = exec_with(
        &sb,
        "console.yaml",
        "loud",
        "echo visible; echo ::warning::careful",
    );
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("jobs::log::loud [loud#1] visible"),
        "{stderr}"
    );
    assert!(
        stderr.contains("WARN  jobs::warnings::loud [loud#1] careful"),
        "{stderr}"
    );
    assert!(!stderr.contains("jobs::details"), "{stderr}");
}

#[test]
fn split_streams_sends_errors_to_their_own_file() {
    let sb = Sandbox::new();
    let out = exec_with(
        &sb,
        "split-streams.yaml",
        "broken",
        "echo ::error code=E42::no input file; exit 1",
    );
    assert_eq!(out.status.code(), Some(1));
    let errors = sb.read("logs/errors.log");
    assert!(
        errors.contains("ERROR broken#1 [E42] no input file"),
        "{errors}"
    );
    assert!(sb.read("logs/warnings.log").is_empty());
}

/// Without a log config, `exec` says nothing on stderr (cron would mail
/// it); a failed run's report goes to stdout, and `--verbose` shows the
/// status, errors and warnings on the console as they happen.
#[test]
fn without_a_log_config_exec_prints_the_report_of_a_failure_only() {
    let sb = Sandbox::new();
    let args = |verbose: bool| {
        let mut args = vec!["exec", "--name", "plain"];
        args.extend(verbose.then_some("--verbose"));
        args.extend(["--", "sh", "-c", "echo quiet; echo ::error::loud"]);
        sb.run(&args)
    };
    let (stdout, stderr) = text(&args(false));
    assert!(stderr.is_empty(), "{stderr}");
    assert!(
        stdout.starts_with("plain #1: failed (exit 0, 1 error: loud"),
        "{stdout}"
    );
    assert!(stdout.contains("  error: loud\n"), "{stdout}");
    assert!(
        !stdout.contains("quiet"),
        "output lines stay in the capture file: {stdout}"
    );

    let (_, stderr) = text(&args(true));
    assert!(stderr.contains("jobs::errors::plain loud"), "{stderr}");
    assert!(
        stderr.contains("jobs::status::plain finished status=failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("quiet"), "{stderr}");
}

/// log4rs's own `rolling_file` kind, as shipped in split-streams.yaml, is
/// written through a buffer now: a record still reaches its file within a
/// second of the job writing it, while the job runs on.
#[test]
fn a_buffered_record_reaches_its_file_within_a_second_while_the_job_runs() {
    let sb = Sandbox::new();
    let shipped =
        std::fs::read_to_string(repo().join("log4rs-configs/split-streams.yaml")).unwrap();
    let config = sb.write("split-streams.yaml", &shipped);
    let said = sb.path().join("said");
    let mut exec = sb
        .command(&[
            "exec",
            "--name",
            "slow",
            "--log-config",
            config.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &format!(
                "echo '::error::early trouble'; touch {}; sleep 5",
                said.display()
            ),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !said.exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the job never wrote"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let written = std::time::Instant::now();
    let errors = sb.path().join("logs/errors.log");
    loop {
        let text = std::fs::read_to_string(&errors).unwrap_or_default();
        if text.contains("early trouble") {
            break;
        }
        assert!(
            written.elapsed() < std::time::Duration::from_secs(1),
            "not in errors.log a second after the job wrote it: {text:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(exec.try_wait().unwrap().is_none(), "the job still runs");
    // SAFETY: sends a signal to the wrapper, which ends its job and exits.
    unsafe { libc::kill(exec.id() as i32, libc::SIGTERM) };
    let _ = exec.wait();
}

/// A job that floods hands its sinks to a thread of their own mid-run
/// (past 8192 lines): every line still reaches the log file once, in
/// order, and the console of `overnight run` (buffered now) gets the
/// same, with the status records around them.
#[test]
fn a_flood_reaches_files_and_console_whole_and_in_order() {
    let sb = Sandbox::new();
    let shipped = std::fs::read_to_string(repo().join("log4rs-configs/console.yaml")).unwrap();
    sb.write("console.yaml", &shipped);
    sb.write(
        "overnight.yaml",
        "log_config: console.yaml\njobs:\n  flood:\n    command: [sh, -c, 'seq 1 30000']\n",
    );
    // stdout and stderr to one file, as `>> log 2>&1` in a crontab: the
    // console's records come before the summary printed after them.
    let both = std::fs::File::create(sb.path().join("both")).unwrap();
    let status = sb
        .command(&["run", "flood", "-c", "overnight.yaml"])
        .stdout(both.try_clone().unwrap())
        .stderr(both)
        .status()
        .unwrap();
    assert!(status.success());
    let both = std::fs::read_to_string(sb.path().join("both")).unwrap();
    let summary = both.find("flood #1: success").expect("the summary");
    let (console, summary) = both.split_at(summary);
    assert!(
        !summary.contains("jobs::"),
        "a console record after the summary"
    );
    let numbers: Vec<u32> = console
        .lines()
        .filter(|l| l.contains("jobs::log::flood"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers, (1..=30000).collect::<Vec<_>>());
    let first = console.lines().next().unwrap_or_default();
    let last = console.lines().last().unwrap_or_default();
    assert!(first.contains("started job=flood"), "{first}");
    assert!(last.contains("finished status=success"), "{last}");

    let shipped =
        std::fs::read_to_string(repo().join("log4rs-configs/split-streams.yaml")).unwrap();
    let config = sb.write("split-streams.yaml", &shipped);
    let out = sb.run(&[
        "exec",
        "--name",
        "flood",
        "--log-config",
        config.to_str().unwrap(),
        "--",
        "seq",
        "1",
        "30000",
    ]);
    assert!(out.status.success(), "{out:?}");
    let jobs = std::fs::read_to_string(sb.path().join("logs/jobs.log")).unwrap();
    let numbers: Vec<u32> = jobs
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers, (1..=30000).collect::<Vec<_>>());
}

/// Two console appenders on one stream keep log4rs's order, record by
/// record, where each writing through its own buffer would group them.
#[test]
fn two_consoles_on_one_stream_keep_the_records_in_order() {
    let sb = Sandbox::new();
    sb.write(
        "log4rs.yaml",
        "appenders:\n  a: { kind: console, target: stderr, encoder: { pattern: 'a {m}{n}' } }\n  b: { kind: console, target: stderr, encoder: { pattern: 'b {m}{n}' } }\nloggers:\n  jobs::log: { level: info, appenders: [a, b], additive: false }\nroot: { level: off }\n",
    );
    sb.write(
        "overnight.yaml",
        "log_config: log4rs.yaml\njobs:\n  count:\n    command: [seq, 1, 3]\n",
    );
    let out = sb.run(&["run", "count", "-c", "overnight.yaml"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "a 1\nb 1\na 2\nb 2\na 3\nb 3\n"
    );
}
