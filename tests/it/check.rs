//! `overnight check`: every mistake at once, each at FILE:LINE:COL.

use crate::helper::{Sandbox, repo, text};

#[test]
fn check_reports_one_positioned_line_per_mistake() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "\
jobs:
  unknown-key:
    command: echo
    shedule: '* * * * *'
  dup:
    command: echo 1
  dup:
    command: echo 2
  bad-cron:
    command: echo
    schedule: '0 0 32 * *'
  bad-zone:
    command: echo
    timezone: Europe/Londn
  empty:
    command: ''
  bad-duration:
    command: echo
    timeout: 5 fortnights
  'bad name!':
    command: echo
",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 7, "one line per mistake: {stderr}");
    let expect = [
        ("overnight.yaml:4:5: ", "unknown key `shedule`"),
        ("overnight.yaml:7:3: ", "duplicate job name `dup`"),
        ("overnight.yaml:11:15: ", "bad schedule"),
        ("overnight.yaml:14:15: ", "unknown time zone `Europe/Londn`"),
        ("overnight.yaml:16:14: ", "empty `command`"),
        ("overnight.yaml:19:14: ", "bad duration `5 fortnights`"),
        ("overnight.yaml:20:3: ", "bad job name `bad name!`"),
    ];
    for (prefix, message) in expect {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(prefix) && l.contains(message)),
            "no `{prefix}{message}` in:\n{stderr}"
        );
    }
}

#[test]
fn check_lists_jobs_with_their_next_fire_times() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n  nightly:\n    command: echo\n    schedule: '30 2 * * *'\n    timezone: Asia/Tokyo\n  adhoc:\n    command: [echo, hi]\n",
    );
    let out = sb.run(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let nightly = stdout.lines().find(|l| l.contains("nightly")).unwrap();
    assert_eq!(nightly.matches("T02:30:00+09:00").count(), 3, "{nightly}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("adhoc") && l.contains("on demand")),
        "{stdout}"
    );
}

#[test]
fn a_misspelled_appender_kind_fails_check_and_daemon_start() {
    let sb = Sandbox::new();
    sb.write(
        "log4rs.yaml",
        "appenders:\n  out:\n    kind: rolling_fle\n    path: x.log\nroot:\n  level: info\n  appenders: [out]\n",
    );
    sb.write(
        "overnight.yaml",
        "log_config: log4rs.yaml\nlisten: 127.0.0.1:0\njobs:\n  a:\n    command: echo\n",
    );
    for args in [&["check"][..], &["daemon"][..]] {
        let out = sb.run(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("log4rs.yaml:2:3: appender `out`: unknown kind `rolling_fle`"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn an_appender_that_cannot_be_built_is_an_error_not_a_silent_drop() {
    let sb = Sandbox::new();
    sb.write(
        "log4rs.yaml",
        "appenders:\n  out:\n    kind: per_job_file\n    path: logs/all.log\nroot:\n  appenders: [out, missing]\n",
    );
    sb.write(
        "overnight.yaml",
        "log_config: log4rs.yaml\njobs:\n  a:\n    command: echo\n",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains(
            "log4rs.yaml:2:3: appender `out`: the `path` of a `per_job_file` must contain `{job}`"
        ),
        "{stderr}"
    );
}

#[test]
fn every_shipped_log4rs_file_passes_check() {
    for name in [
        "console.yaml",
        "split-streams.yaml",
        "per-job-files.yaml",
        "json-lines.yaml",
    ] {
        let sb = Sandbox::new();
        let path = repo().join("log4rs-configs").join(name);
        sb.write(
            "overnight.yaml",
            &format!(
                "log_config: {}\njobs:\n  a:\n    command: echo\n",
                path.display()
            ),
        );
        let out = sb.run(&["check"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out).1);
    }
}

#[test]
fn no_jobs_file_says_where_one_is_looked_for() {
    let sb = Sandbox::new();
    let out = sb.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out)
            .1
            .contains("pass `-c FILE`, set `OVERNIGHT_CONFIG`, or create `./overnight.yaml`")
    );
}

#[test]
fn check_warns_when_a_fixed_time_job_meets_daylight_saving() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n  early:\n    command: echo\n    schedule: '30 1 * * *'\n    timezone: Europe/London\n  hourly:\n    command: echo\n    schedule: '30 * * * *'\n    timezone: Europe/London\n",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "warnings do not fail the check");
    assert!(
        stderr.contains("warning: job `early`:")
            && stderr.contains("falls in a daylight-saving gap"),
        "{stderr}"
    );
    assert!(
        stderr.contains("occurs twice when the clocks go back; it runs once"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("`hourly`"),
        "wildcard jobs are not moved: {stderr}"
    );
}
