//! `user:`: a job runs as the user cron would have run it as, with that
//! user's environment and nothing of the daemon's.

use crate::helper::{Sandbox, text};

/// Run by root, a job with `user: nobody` is nobody, in nobody's groups,
/// with nobody's `HOME` and cron's `PATH`, without the daemon's variables,
/// unable to read the state directory, and still writes its report; run
/// by anyone else, it fails at once saying why.
#[test]
fn a_job_runs_as_its_user_or_fails_saying_why() {
    let sb = Sandbox::new();
    let state = sb.path().join(".overnight");
    sb.write(
        "overnight.yaml",
        &format!(
            "jobs:\n  as-nobody:\n    user: nobody\n    command: |\n      echo \"who=$(id -un) groups=$(id -G) home=$HOME path=$PATH secret=${{DAEMON_SECRET:-none}} pwd=$(pwd)\"\n      ls '{}' 2>&1 || echo 'state: denied'\n      printf '{{\"status\":\"warning\",\"summary\":\"written by %s\"}}' \"$(id -un)\" > \"$OVERNIGHT_REPORT\"\n",
            state.display()
        ),
    );
    let run = sb
        .command(&["run", "as-nobody"])
        .env("DAEMON_SECRET", "s3cr3t")
        .output()
        .unwrap();
    let report = sb.run(&["report", "--json", "1"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        assert_eq!(run.status.code(), Some(1), "{run:?}");
        let message = report["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.starts_with("cannot run as user `nobody`"),
            "{report}"
        );
        return;
    }
    assert_eq!(run.status.code(), Some(3), "a warning: {:?}", text(&run));
    assert_eq!(report["summary"], "written by nobody", "{report}");
    let logs = sb.run(&["logs", "1"]);
    let (logs, _) = text(&logs);
    let nogroup = crate::helper::group_id("nogroup");
    assert!(
        logs.contains(&format!(
            "who=nobody groups={nogroup} home=/nonexistent path=/usr/bin:/bin secret=none pwd=/"
        )),
        "{logs}"
    );
    assert!(logs.contains("Permission denied"), "{logs}");
    assert!(logs.contains("state: denied"), "{logs}");
}

/// A user that does not exist, and a `user` on an HTTP job, are mistakes
/// `check` names.
#[test]
fn check_names_an_unknown_user_and_a_user_on_an_http_job() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n  a:\n    user: no-such-user-here\n    command: \"true\"\n  b:\n    user: nobody\n    http: {url: \"http://127.0.0.1:9/\"}\n",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("overnight.yaml:3:11: no user `no-such-user-here` on this machine"),
        "{stderr}"
    );
    assert!(
        stderr.contains("job `b` is an HTTP job with `user: nobody`"),
        "{stderr}"
    );
}
