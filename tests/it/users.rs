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
    if !crate::helper::is_root() {
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

/// A user that does not exist, and a `user` an HTTP job sets itself, are
/// mistakes `check` names where they are written; a `user` from the
/// defaults does not apply to HTTP jobs.
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
        stderr.contains(
            "overnight.yaml:6:11: job `b` is an HTTP job: overnight makes its request itself"
        ),
        "{stderr}"
    );
    sb.write(
        "overnight.yaml",
        "defaults: {user: nobody}\njobs:\n  a: {command: \"true\"}\n  b: {http: {url: \"http://127.0.0.1:9/\"}}\n",
    );
    let out = sb.run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("as nobody"), "{:?}", text(&out));
}

/// Run by root, a job as nobody: cannot enter a folder nobody cannot
/// (the run says so), gets `USER`, and holds its lock through a
/// descriptor it cannot write the daemon's lock file with.
#[test]
fn another_users_job_gets_nothing_of_roots() {
    if !crate::helper::is_root() {
        eprintln!("not root: the refusal is tested by a_job_runs_as_its_user_or_fails_saying_why");
        return;
    }
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n  in-root:\n    user: nobody\n    workdir: /root\n    command: \"true\"\n  locked:\n    user: nobody\n    locks: [db]\n    command: |\n      echo \"user=$USER\"\n      for f in /proc/self/fd/*; do\n        case $(readlink \"$f\") in *locks*) n=${f##*/}; if (echo hacked >&\"$n\") 2>/dev/null; then echo 'lock written'; else echo 'lock read-only'; fi;; esac\n      done\n",
    );
    let run = sb.run(&["run", "in-root"]);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let report = sb.run(&["report", "1", "--section", "errors"]);
    assert!(
        text(&report).0.contains(
            "error: cannot start `/bin/sh` as user `nobody` in `/root`: Permission denied"
        ),
        "{:?}",
        text(&report)
    );

    let run = sb.run(&["run", "locked"]);
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let (logs, _) = text(&sb.run(&["logs", "2"]));
    assert!(logs.contains("user=nobody"), "{logs}");
    assert!(
        logs.contains("lock read-only"),
        "the job holds its lock: {logs}"
    );
    assert!(!logs.contains("lock written"), "{logs}");
    assert!(!sb.read(".overnight/locks/db.lock").contains("hacked"));
}

/// A flow step run as another user reads the details of the steps before
/// it (`$OVERNIGHT_FLOW_DETAILS`, handed open), though the flow's folder is
/// the daemon's alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_flow_step_as_another_user_reads_the_flows_details() {
    let root = crate::helper::is_root();
    let daemon = crate::helper::TestDaemon::start_in(
        Sandbox::new(),
        "jobs:\n  export: {command: 'echo ::detail::rows=1204'}\n  verify: {user: nobody, command: 'grep -q 1204 \"$OVERNIGHT_FLOW_DETAILS\" && echo \"read as $(id -un)\"'}\nflows:\n  nightly:\n    steps:\n      export: {job: export}\n      verify: {job: verify, after: export}\n",
        std::sync::Arc::new(overnight::schedule::clock::SystemClock),
    )
    .await;
    let sb = &daemon.sandbox;
    let out = sb.run(&["flow", "start", "nightly"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let state = daemon.state_dir.clone();
    let run = crate::helper::wait_for(
        std::time::Duration::from_secs(30),
        "the flow run's end",
        || {
            let state = state.clone();
            async move {
                let store = overnight::store::Store::open(&state).await.unwrap();
                let run = store.flow_run(1).await.unwrap();
                store.close().await;
                run.filter(|r| r.status != overnight::flow::progress::FlowStatus::Running)
            }
        },
    )
    .await;
    let expected = match root {
        true => overnight::flow::progress::FlowStatus::Success,
        false => overnight::flow::progress::FlowStatus::Failed,
    };
    assert_eq!(run.status, expected, "{run:?}");
    if root {
        let (logs, _) = text(&sb.run(&["logs", "verify"]));
        assert!(logs.contains("read as nobody"), "{logs}");
    }
    daemon.stop().await;
}
