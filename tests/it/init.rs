//! `overnight init`: files that pass `check` and run as they are.

use std::os::unix::fs::PermissionsExt;

use crate::helper::Sandbox;

/// Each logging choice gives a pair that `check` accepts and whose job
/// runs, in a folder and files private to the user; nothing is written
/// over.
#[test]
fn init_writes_files_that_check_and_run() {
    let sb = Sandbox::new();
    for logging in ["split-streams", "per-job", "json", "console"] {
        let site = format!("site-{logging}");
        let out = sb.run(&["init", &site, "--logging", logging]);
        assert!(out.status.success(), "{out:?}");
        let jobs = format!("{site}/overnight.yaml");
        let check = sb.run(&["check", "-c", &jobs]);
        assert!(check.status.success(), "{logging}: {check:?}");
        assert!(String::from_utf8_lossy(&check.stdout).contains("hello"));
        let run = sb.run(&["run", "hello", "-c", &jobs]);
        assert!(run.status.success(), "{logging}: {run:?}");
        let mode = |path: &str| {
            std::fs::metadata(sb.path().join(path))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(&site), 0o700);
        assert_eq!(mode(&jobs), 0o600);
        assert_eq!(mode(&format!("{site}/log4rs.yaml")), 0o600);
    }
    // The split-streams pair routes the run where its comments say.
    let jobs_log = std::fs::read_to_string(sb.path().join("site-split-streams/logs/jobs.log"));
    assert!(jobs_log.unwrap().contains("hello from hello, run 1"));

    let again = sb.run(&["init", "site-json"]);
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("is there already"), "{said}");
}

/// The examples in the jobs file's comments are valid once uncommented:
/// every commented line after `jobs:` that is a YAML key.
#[test]
fn the_commented_examples_check_once_uncommented() {
    let sb = Sandbox::new();
    assert!(sb.run(&["init", "site"]).status.success());
    let text = std::fs::read_to_string(sb.path().join("site/overnight.yaml")).unwrap();
    let mut after_jobs = false;
    let uncommented: Vec<String> = text
        .lines()
        .map(|line| {
            after_jobs |= line == "jobs:";
            let (indent, rest) = line.split_at(line.len() - line.trim_start().len());
            let body = rest.strip_prefix("# ").unwrap_or("");
            let key = body.trim_start().split_once(':').map_or("", |(k, _)| k);
            let is_key = !key.is_empty()
                && key
                    .trim_start_matches("- ")
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-');
            match after_jobs && is_key {
                true => format!("{indent}{body}"),
                false => line.to_string(),
            }
        })
        .collect();
    let uncommented = uncommented.join("\n");
    assert!(uncommented.contains("\n  backup:"), "{uncommented}");
    assert!(uncommented.contains("\ntriggers:"), "{uncommented}");
    sb.write("site/full.yaml", &uncommented);
    let check = sb.run(&["check", "-c", "site/full.yaml"]);
    assert!(check.status.success(), "{check:?}\n{uncommented}");
    let listed = String::from_utf8_lossy(&check.stdout);
    assert!(
        listed.contains("backup") && listed.contains("nightly-import"),
        "{listed}"
    );
}
