//! The state directory is ours alone: private modes whatever the umask, no
//! symlink followed, a directory others could write refused.

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use crate::helper::{Sandbox, runs, terminate, text, umask_000, wait_for};

/// Every folder and file under `dir`, with its mode.
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.is_dir() {
                todo.push(entry.path());
            }
            out.push((entry.path().display().to_string(), meta.mode() & 0o7777));
        }
    }
    out
}

/// With umask 000, everything the daemon and `exec` make in the state
/// directory is 0700 (folders) or 0600 (files): history, journal, ids,
/// capture files, locks, the daemon's card.
#[tokio::test(flavor = "multi_thread")]
async fn everything_made_in_the_state_directory_is_private_whatever_the_umask() {
    let sb = Sandbox::new();
    let state = sb.path().join("state");
    sb.write(
        "overnight.yaml",
        &format!(
            "listen: 127.0.0.1:0\nstate_dir: {}\njobs:\n  tick:\n    schedule: '* * * * * *'\n    command: echo tock\n    locks: [db]\n",
            state.display()
        ),
    );
    let daemon = umask_000(&mut sb.daemon()).spawn().unwrap();
    wait_for(Duration::from_secs(20), "a run with output", || {
        let state = state.clone();
        async move {
            let runs = runs(&state).await;
            runs.iter()
                .any(|r| r.status == "success" && r.capture_path.is_some())
                .then_some(())
        }
    })
    .await;
    assert!(state.join("daemon.json").exists());
    let mut exec = sb.command(&["exec", "--name", "wrapped", "--", "echo", "hi"]);
    assert!(umask_000(&mut exec).output().unwrap().status.success());
    let all = modes(&state);
    terminate(daemon);

    let names: Vec<&str> = all.iter().map(|(p, _)| p.as_str()).collect();
    for made in [
        "overnight.db",
        "last-run-id",
        "daemon.json",
        "journal",
        "runs/tick",
        "locks",
    ] {
        assert!(
            names.iter().any(|n| n.contains(made)),
            "{made} in {names:#?}"
        );
    }
    assert_eq!(std::fs::metadata(&state).unwrap().mode() & 0o7777, 0o700);
    let loose: Vec<_> = all
        .iter()
        .filter(|(path, mode)| {
            let dir = Path::new(path).is_dir();
            *mode != if dir { 0o700 } else { 0o600 }
        })
        .collect();
    assert!(loose.is_empty(), "not private: {loose:#?}");
}

/// Symlinks planted where the runner writes are not followed: one where
/// the run's capture file goes (pointing at a file yet to be made, so the
/// run takes that very id) and one where the run-id counter lives. The
/// targets are neither made nor written, and the job still runs.
#[test]
fn a_symlink_planted_in_the_state_directory_is_not_followed() {
    let sb = Sandbox::new();
    let state = sb.state_dir();
    std::fs::create_dir_all(state.join("runs/backup")).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let planted = sb.path().join("planted-capture");
    symlink(&planted, state.join("runs/backup/1.log")).unwrap();
    let out = sb.run(&[
        "exec",
        "--verbose",
        "--name",
        "backup",
        "--",
        "echo",
        "overwritten",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!planted.exists(), "the capture went through the link");
    assert!(
        stderr.contains("run=1"),
        "the run took the planted id: {stderr}"
    );

    let victim = sb.write("victim", "precious\n");
    std::fs::remove_file(state.join("last-run-id")).unwrap();
    symlink(&victim, state.join("last-run-id")).unwrap();
    let out = sb.run(&["exec", "--name", "other", "--", "true"]);
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious\n",
        "{:?}",
        text(&out)
    );
}

/// A state directory another user owns, or that others may write, is
/// refused with the path and the fix; nothing is run or written there.
#[test]
fn a_state_directory_others_could_write_is_refused() {
    let sb = Sandbox::new();
    let state = sb.state_dir();
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ran = sb.path().join("ran");
    let run = |sb: &Sandbox| {
        sb.command(&["exec", "--name", "t", "--", "touch"])
            .arg(&ran)
            .output()
            .unwrap()
    };
    let out = run(&sb);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("state directory `{}`", state.display())),
        "{stderr}"
    );
    assert!(stderr.contains("chmod 700"), "{stderr}");
    assert!(!ran.exists() && std::fs::read_dir(&state).unwrap().next().is_none());

    // Owned by someone else (as root: nobody; otherwise the test's user
    // cannot own it, and `/` stands in, owned by root).
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    // SAFETY: geteuid has no preconditions.
    let foreign = if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
        state.clone()
    } else {
        "/".into()
    };
    let out = sb
        .command(&["exec", "--name", "t", "--", "touch"])
        .arg(&ran)
        .env("OVERNIGHT_STATE_DIR", &foreign)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not to you"), "{stderr}");
    assert!(!ran.exists());
}

/// A job named `..` would write its capture files outside `runs/`: refused.
#[test]
fn a_job_name_that_climbs_out_of_its_folder_is_refused() {
    let sb = Sandbox::new();
    for name in ["..", "."] {
        let out = sb.run(&["exec", "--name", name, "--", "echo", "hi"]);
        assert_eq!(out.status.code(), Some(2), "{name}: {:?}", text(&out));
    }
    sb.write("overnight.yaml", "jobs:\n  '..':\n    command: echo hi\n");
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad job name `..`"), "{stderr}");
}

/// Log files the log4rs file names are the operator's, but made 0640
/// whatever the umask, or with the appender's `mode:`.
#[test]
fn log_files_are_made_0640_or_with_their_mode() {
    let sb = Sandbox::new();
    sb.write(
        "log4rs.yaml",
        "appenders:\n  shared:\n    kind: file\n    path: logs/all.log\n  \
         private:\n    kind: per_job_file\n    path: logs/jobs/{job}.log\n    mode: \"0600\"\n\
         root:\n  level: info\n  appenders: [shared, private]\n",
    );
    let mut exec = sb.command(&[
        "exec",
        "--name",
        "t",
        "--log-config",
        "log4rs.yaml",
        "--",
        "echo",
        "hi",
    ]);
    assert!(umask_000(&mut exec).output().unwrap().status.success());
    let mode = |p: &str| std::fs::metadata(sb.path().join(p)).unwrap().mode() & 0o777;
    assert_eq!(mode("logs/all.log"), 0o640);
    assert_eq!(mode("logs/jobs/t.log"), 0o600);
}
