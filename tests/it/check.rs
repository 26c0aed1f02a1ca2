//! `overnight check`: every mistake at once, each at FILE:LINE:COL.

use crate::helper::{Sandbox, repo, text};

/// A jobs file of one job, routed by `log4rs.yaml` beside it.
fn routed_by_log4rs_yaml(sb: &Sandbox) {
    sb.write(
        "overnight.yaml",
        "log_config: log4rs.yaml\njobs:\n  a:\n    command: echo\n",
    );
}

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
    assert_eq!(nightly.matches(" 02:30:00 +09:00").count(), 3, "{nightly}");
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
    routed_by_log4rs_yaml(&sb);
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
        "flows.yaml",
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

/// `check` builds every encoder and checks every log file, and makes
/// nothing: no log file, no folder, no state directory.
#[test]
fn check_validates_appenders_without_side_effects() {
    let sb = Sandbox::new();
    let shipped =
        std::fs::read_to_string(repo().join("log4rs-configs/split-streams.yaml")).unwrap();
    sb.write("log4rs.yaml", &shipped);
    routed_by_log4rs_yaml(&sb);
    let out = sb.run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let mut left: Vec<String> = std::fs::read_dir(sb.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["log4rs.yaml", "overnight.yaml"]);

    // A pattern log4rs would print as `{ERROR: …}` in every record, an
    // unknown formatter, a file and a per-job folder that cannot be made.
    sb.write("blocker", "a file where a folder should be\n");
    sb.write(
        "log4rs.yaml",
        "\
appenders:
  broken:
    kind: console
    encoder:
      pattern: \"{d} {K(job} {m}{n}\"
  user:
    kind: console
    encoder:
      pattern: \"$ENV{USER} {m}{n}\"
  errors:
    kind: file
    path: blocker/errors.log
  per_job:
    kind: per_job_file
    path: blocker/{job}.log
root:
  appenders: [broken, user, errors, per_job]
",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert_eq!(
        lines[0], "log4rs.yaml:2:3: appender `broken`: encoder pattern: expected '}'",
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(
            "log4rs.yaml:6:3: appender `user`: encoder pattern: unknown formatter `USER`"
        ),
        "{stderr}"
    );
    assert_eq!(
        lines[2],
        "log4rs.yaml:10:3: appender `errors`: cannot create blocker/errors.log: blocker is not a directory",
        "{stderr}"
    );
    assert!(
        lines[3].starts_with("log4rs.yaml:13:3: appender `per_job`: cannot make files in blocker"),
        "{stderr}"
    );
    assert!(!sb.path().join("logs").exists());
}

/// Every mistake of both files in one pass, each once, in file, line and
/// column order: a bad level does not hide the appender errors, a bad
/// default is reported at the default and not at each job.
#[test]
fn check_reports_every_mistake_of_both_files_once_in_order() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "\
log_config: log4rs.yaml
defaults:
  timeout: soon
jobs:
  a:
    command: echo
  b:
    command: echo
    retries: lots
",
    );
    sb.write(
        "log4rs.yaml",
        "\
loggers:
  jobs::log:
    level: loud
    appenders: [consle]
appenders:
  console:
    kind: consol
root:
  level: info
  appenders: [console]
",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let places: Vec<&str> = lines
        .iter()
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        places,
        [
            "log4rs.yaml:3:12",
            "log4rs.yaml:4:17",
            "log4rs.yaml:6:3",
            "overnight.yaml:3:12",
            "overnight.yaml:9:14",
        ],
        "{stderr}"
    );
    assert!(lines[0].contains("bad level `loud`"), "{stderr}");
    assert!(
        lines[1].contains("no appender named `consle` in the file; did you mean `console`?"),
        "{stderr}"
    );
    assert!(lines[2].contains("unknown kind `consol`"), "{stderr}");
}

/// A bad trigger condition is said once, and does not hide the other
/// triggers' mistakes.
#[test]
fn each_trigger_mistake_is_said_once() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "\
triggers:
  - name: one
    on: [explode]
    log: true
  - name: two
    on: [failed]
    webhook: {urll: http://x}
jobs:
  a:
    command: echo
",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "overnight.yaml:3:10: unknown condition `explode`; use success, warning, failed, missed, skipped, lost, late, retrying, recovered, aborted, held",
            "overnight.yaml:7:14: `webhook` needs a `url` starting with http:// or https://",
            "overnight.yaml:7:15: unknown key `urll` in `webhook`; did you mean `url`?",
        ],
        "{stderr}"
    );
}

/// Found by the fuzz tests: a date format chrono cannot follow made log4rs
/// panic at every record, and a huge padding would write gigabytes per
/// record. Both are errors at `check` now.
#[test]
fn a_pattern_that_would_panic_or_flood_is_an_error() {
    let sb = Sandbox::new();
    routed_by_log4rs_yaml(&sb);
    sb.write(
        "log4rs.yaml",
        "\
appenders:
  dates:
    kind: console
    encoder:
      pattern: \"{d(%Y-%m-%dT%H:%M:%S%K(run_id)} {m}{n}\"
  wide:
    kind: console
    encoder:
      pattern: \"{m:<1000000000000}{n}\"
  fast:
    kind: console
    encoder:
      kind: fast_pattern
      pattern: \"{d(%Q)} {m}{n}\"
  braced:
    kind: console
    encoder:
      pattern: \"{d(%Y-%m-%d}T%}H:%M)} {m}{n}\"
root:
  appenders: [dates, wide, fast, braced]
",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert!(
        lines[0].starts_with(
            "log4rs.yaml:2:3: appender `dates`: bad date format `%Y-%m-%dT%H:%M:%S%K(run_id`"
        ),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(
            "log4rs.yaml:6:3: appender `wide`: padding `:<1000000000000` is wider than 1000"
        ),
        "{stderr}"
    );
    assert!(
        lines[2].contains("appender `fast`") && lines[2].contains("bad date format `%Q`"),
        "{stderr}"
    );
    // A brace in the format does not end it (found by the fuzz tests in CI).
    assert!(
        lines[3].contains("appender `braced`") && lines[3].contains("bad date format"),
        "{stderr}"
    );
}

/// `check` refuses what the daemon would refuse in a file appender it does
/// not build — a key log4rs does not know, a roller pattern without `{}` —
/// and a logger without a level, still making nothing.
#[test]
fn check_refuses_what_the_daemon_would_refuse_without_making_files() {
    let sb = Sandbox::new();
    routed_by_log4rs_yaml(&sb);
    sb.write(
        "log4rs.yaml",
        "appenders:\n  f:\n    kind: file\n    path: logs/x.log\n    apend: true\n  r:\n    kind: rolling_file\n    path: logs/r.log\n    policy:\n      trigger: {kind: size, limit: 1 mb}\n      roller: {kind: fixed_window, pattern: \"logs/r.log.gz\", count: 3}\nloggers:\n  jobs::log:\n    appenders: [f, r]\n",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        lines[0].starts_with("log4rs.yaml:2:3: appender `f`: ") && lines[0].contains("apend"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("log4rs.yaml:6:3: appender `r`: policy: ") && lines[1].contains("{}"),
        "{stderr}"
    );
    assert_eq!(
        lines[2],
        "log4rs.yaml:14:5: logger `jobs::log` has no `level`; give it one, like `level: info`"
    );
    assert!(!sb.path().join("logs").exists());
    let daemon = sb.run(&["run", "a"]);
    assert_eq!(daemon.status.code(), Some(2), "the daemon's loading agrees");
}

/// `--version` says the version, the commit and the build's date, as an
/// operator reporting a problem needs them.
#[test]
fn version_names_the_commit_and_the_build_date() {
    let sb = Sandbox::new();
    let out = sb.run(&["--version"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let (name, rest) = text.trim().split_once(' ').unwrap();
    assert_eq!(name, "overnight");
    let (version, details) = rest.split_once(" (").unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let (commit, date) = details
        .trim_end_matches(')')
        .split_once(", built ")
        .unwrap();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{text}"
    );
    assert!(
        chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(),
        "{text}"
    );
}

/// The cluster's keys: a host name that could not be a name, a heartbeat
/// too slow for its timeout, a job's tag list that is a mapping; each at
/// its line.
#[test]
fn check_reports_the_cluster_keys_mistakes() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "host: 'db 1'\ncluster:\n  heartbeat: 5s\n  host_timeout: 10s\njobs:\n  pinned:\n    command: echo\n    hosts: [db1, db2]\n    tags: {gpu: true}\n",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("overnight.yaml:1:7: bad name `db 1` in `host`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("overnight.yaml:3:3: `cluster.heartbeat` (5s) must be above zero and at most a quarter of `cluster.host_timeout` (10s)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("overnight.yaml:9:11: `tags` must be a list"),
        "{stderr}"
    );
}

/// A job whose `hosts:` leave out this host, on SQLite: `check` says its
/// fires never run here, and that there is no other host to run them.
#[test]
fn check_warns_of_a_job_pinned_to_another_host_without_a_cluster() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "host: here\njobs:\n  pinned:\n    schedule: '0 2 * * *'\n    hosts: [there]\n    command: 'true'\n  free:\n    command: 'true'\n",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: job `pinned` runs on hosts there, and this host is `here` (tags: none): its fires never run: with the history in SQLite, this is the only host"),
        "{stderr}"
    );
    assert!(!stderr.contains("`free`"), "{stderr}");
}
