//! Bounded disk: a capture file stops at `capture_max` and says so;
//! `retention:` removes old capture files, and history rows only when asked.

use std::time::{Duration, SystemTime};

use sqlx::Connection;

use crate::helper::{Sandbox, runs, text};

/// 2,000 lines of 100 bytes into a 10 kB capture: the file stops short,
/// its last line says how much was not kept, the report says it too, and
/// the run is still a success.
#[tokio::test(flavor = "multi_thread")]
async fn a_capture_file_stops_at_capture_max_and_says_what_it_left_out() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n  chatty:\n    command: for i in $(seq 2000); do printf '%099d\\n' $i; done\n    capture_max: 10kb\n",
    );
    let out = sb.run(&["run", "chatty"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let state = sb.path().join(".overnight");
    let run = runs(&state).await.pop().unwrap();
    let capture = std::fs::metadata(run.capture_path.as_ref().unwrap()).unwrap();
    assert!(capture.len() < 10_000 + 300, "{} bytes", capture.len());

    let logs = sb.run(&["logs", &run.id.to_string()]);
    let (stdout, _) = text(&logs);
    let last = stdout.lines().last().unwrap();
    assert!(last.contains("capture_max (10000 bytes) reached"), "{last}");
    let kept = stdout.lines().count() - 1;
    assert!(
        last.contains(&format!("{} later line(s)", 2000 - kept)),
        "{last}"
    );
    let report = sb.run(&["report", &run.id.to_string(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert!(
        report["details"]["capture_cut"]
            .as_str()
            .unwrap()
            .contains("later line(s)")
    );
    assert_eq!(report["status"], "success");
}

/// `overnight prune`: capture files older than `retention.captures` go,
/// newer ones stay, and history rows stay — until `retention.history`
/// names a span, when rows older than that go too.
#[tokio::test(flavor = "multi_thread")]
async fn prune_removes_old_capture_files_and_history_rows_only_when_asked() {
    let sb = Sandbox::new();
    let file = |history: &str| {
        format!("retention: {{captures: 30d{history}}}\njobs:\n  talk:\n    command: echo hello\n")
    };
    sb.write("overnight.yaml", &file(""));
    for _ in 0..2 {
        assert!(sb.run(&["run", "talk"]).status.success());
    }
    let state = sb.path().join(".overnight");
    let [old, new] = <[_; 2]>::try_from(runs(&state).await).unwrap();
    let old_capture = old.capture_path.clone().unwrap();
    let long_ago = SystemTime::now() - Duration::from_secs(40 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&old_capture)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();

    let out = sb.run(&["prune"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("removed 1 capture file(s)"), "{stdout}");
    assert!(!std::path::Path::new(&old_capture).exists());
    assert!(std::path::Path::new(new.capture_path.as_ref().unwrap()).exists());
    assert_eq!(runs(&state).await.len(), 2, "the rows stay");

    // The old run ended 40 days ago; history kept 30 days.
    let db = state.join("overnight.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE runs SET finished_at = '2000-01-01T00:00:00.000000Z' WHERE id = ?")
        .bind(old.id)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    sb.write("overnight.yaml", &file(", history: 30d"));
    let out = sb.run(&["prune"]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("and 1 run(s) from the history"), "{stdout}");
    let left: Vec<i64> = runs(&state).await.iter().map(|r| r.id).collect();
    assert_eq!(left, [new.id]);
}

/// A retention span that is not one is a `check` error at its place.
#[test]
fn a_bad_retention_is_an_error_at_check() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "retention: {captures: soon, logs: 1d}\njobs:\n  a:\n    command: 'true'\n",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("overnight.yaml:1:23: bad duration `soon` for `retention.captures`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown key `logs` in `retention`"),
        "{stderr}"
    );
}
