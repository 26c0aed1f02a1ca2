//! The shipped examples work as the README says.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::helper::{Sandbox, repo, text};

#[test]
fn the_quickstart_jobs_file_passes_check() {
    let sb = Sandbox::new();
    let file = repo().join("examples/quickstart/overnight.yaml");
    let out = sb.run(&["check", "-c", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert_eq!(
        text(&out)
            .0
            .lines()
            .filter(|l| l.contains("next: "))
            .count(),
        6
    );
}

/// The HTTP example: the Python application on a free port, each job run
/// against it.
#[test]
fn the_http_example_jobs_run_against_the_example_application() {
    let mut app = Command::new("python3")
        .arg(repo().join("examples/http-app/app.py"))
        .arg("0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let mut first = String::new();
    BufReader::new(app.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port = first
        .trim()
        .strip_prefix("listening on ")
        .expect("the app says its port")
        .to_string();

    let sb = Sandbox::new();
    let jobs = std::fs::read_to_string(repo().join("examples/http-app/overnight.yaml")).unwrap();
    sb.write(
        "overnight.yaml",
        &jobs
            .replace("127.0.0.1:8087", &format!("127.0.0.1:{port}"))
            .replace("log_config: ../quickstart/log4rs.yaml\n", ""),
    );
    let results: Vec<(String, Option<i32>, String)> =
        ["import-orders", "export-feeds", "rebuild-index", "sync-crm"]
            .iter()
            .map(|job| {
                let out = sb.run(&["run", job]);
                (job.to_string(), out.status.code(), text(&out).0)
            })
            .collect();
    let _ = app.kill();
    let _ = app.wait();

    let [
        (_, import, import_out),
        (_, export, _),
        (_, rebuild, rebuild_out),
        (_, sync, sync_out),
    ] = &results[..]
    else {
        panic!()
    };
    assert!(matches!(import, Some(0 | 3)), "{import_out}");
    assert!(import_out.contains("imported"), "{import_out}");
    assert_eq!(*export, Some(0));
    assert_eq!(*rebuild, Some(0), "{rebuild_out}");
    assert!(rebuild_out.contains("index rebuilt"), "{rebuild_out}");
    assert_eq!(*sync, Some(1));
    assert!(sync_out.contains("HTTP 502 Bad Gateway"), "{sync_out}");
    let (logs, _) = text(&sb.run(&["logs", "rebuild-index"]));
    assert_eq!(logs.matches("::progress::").count(), 5, "{logs}");
}
