//! HTTP jobs against a real server on loopback, run by the real binary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::Notify;

use crate::helper::{Sandbox, text, wait_for};

const REPORT_JSON: &str = r#"{
  "summary": "imported 1204 rows",
  "warnings": ["2 rows skipped", {"message": "slow disk", "code": "W7"}],
  "details": {"rows": 1204}
}"#;

const REPORT_XML: &str = r#"<?xml version="1.0"?>
<report>
  <summary>imported 1204 rows</summary>
  <warning>2 rows skipped</warning>
  <warning code="W7">slow disk</warning>
  <detail name="rows">1204</detail>
</report>"#;

const ROUTING: &str = "\
appenders:
  warnings:
    kind: file
    path: logs/warnings.log
    encoder: { pattern: \"{l} {t} {m}{n}\" }
  status:
    kind: file
    path: logs/status.log
    encoder: { pattern: \"{l} {t} {m}{n}\" }
  progress:
    kind: file
    path: logs/progress.log
    encoder: { pattern: \"{l} {t} {m}{n}\" }
  errors:
    kind: file
    path: logs/errors.log
    encoder: { pattern: \"{l} {t} {m}{n}\" }
loggers:
  jobs::warnings: { level: info, appenders: [warnings], additive: false }
  jobs::status: { level: info, appenders: [status], additive: false }
  jobs::progress: { level: info, appenders: [progress], additive: false }
  jobs::errors: { level: info, appenders: [errors], additive: false }
root: { level: off }
";

/// The application under test.
async fn app(stream_gate: Arc<Notify>) -> SocketAddr {
    let router = Router::new()
        .route(
            "/warning-json",
            post(|| async { ([("X-Batch-Complete-Status", "warning"), ("Content-Type", "application/json")], REPORT_JSON) }),
        )
        .route(
            "/warning-xml",
            post(|| async { ([("x-batch-complete-status", "Warning"), ("Content-Type", "application/xml")], REPORT_XML) }),
        )
        .route(
            "/broken",
            post(|| async {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, "text/html")],
                    "<html><body><h1>Internal Server Error</h1>\n<p>database is down</p></body></html>",
                )
            }),
        )
        .route(
            "/malformed",
            post(|| async { ([(header::CONTENT_TYPE, "application/json")], "{\n  \"status\": \"success\",\n  \"warnings\": [oops]\n}") }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "too late"
            }),
        )
        .route(
            "/echo",
            get(|headers: HeaderMap| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                (StatusCode::FORBIDDEN, format!("refused: {auth}"))
            }),
        )
        .route(
            "/stream",
            post(move || {
                let gate = Arc::clone(&stream_gate);
                async move {
                    let lines = futures_util::stream::unfold(0u32, move |step| {
                        let gate = Arc::clone(&gate);
                        async move {
                            match step {
                                0..=4 => {
                                    if step > 0 {
                                        gate.notified().await;
                                    }
                                    let pct = (step + 1) * 20;
                                    let line = format!("::progress::{pct}% step {}\n", step + 1);
                                    Some((Ok::<_, std::io::Error>(line), step + 1))
                                }
                                5 => {
                                    gate.notified().await;
                                    Some((Ok("{\"complete\":1,\"code\":0,\"description\":\"streamed\"}\n".to_string()), 6))
                                }
                                _ => None,
                            }
                        }
                    });
                    ([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response()
                }
            }),
        );
    let router = router
        .route("/accepted", post(|| async { (StatusCode::ACCEPTED, "queued for later\n") }))
        .route(
            "/events",
            post(|| async {
                let body = "event: progress\ndata: ::progress::50% half way\n\n: a comment\ndata: ::warning::one shard was slow\n\ndata: done\n\n";
                ([(header::CONTENT_TYPE, "text/event-stream")], body)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A sandbox with the routing file and one HTTP job per (name, settings).
fn sandbox(jobs: &[(&str, String)]) -> Sandbox {
    let sb = Sandbox::new();
    sb.write("log4rs.yaml", ROUTING);
    let mut file = String::from("log_config: log4rs.yaml\njobs:\n");
    for (name, settings) in jobs {
        file.push_str(&format!("  {name}:\n{settings}"));
    }
    sb.write("overnight.yaml", &file);
    sb
}

fn http_job(url: String, extra: &str) -> String {
    format!("    http:\n      url: {url}\n{extra}")
}

async fn run(sb: &Sandbox, job: &str) -> (i32, serde_json::Value) {
    let path = sb.path().to_path_buf();
    let job = job.to_string();
    tokio::task::spawn_blocking(move || {
        let sb = Sandbox::at(path);
        let out = sb.run(&["run", &job]);
        let history = sb.run(&["history", &job, "--json", "--limit", "1"]);
        let runs: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
        let id = runs[0]["id"].to_string();
        let report = sb.run(&["report", &id, "--json"]);
        (
            out.status.code().unwrap(),
            serde_json::from_slice(&report.stdout).unwrap(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warning_header_and_json_report_make_a_warning_run() {
    let addr = app(Arc::default()).await;
    let sb = sandbox(&[(
        "import",
        http_job(format!("http://{addr}/warning-json"), ""),
    )]);
    let (code, report) = run(&sb, "import").await;
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(report["status"], "warning");
    assert_eq!(report["warnings"].as_array().unwrap().len(), 2);
    assert_eq!(report["details"]["rows"], 1204);
    assert_eq!(report["summary"], "imported 1204 rows");
    assert_eq!(report["exit"]["http_status"], 200);
    let warnings = sb.read("logs/warnings.log");
    assert_eq!(
        warnings.matches("WARN jobs::warnings::import").count(),
        2,
        "{warnings}"
    );
    assert!(warnings.contains("[W7] slow disk"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_report_in_xml_gives_the_same_result() {
    let addr = app(Arc::default()).await;
    let sb = sandbox(&[("import", http_job(format!("http://{addr}/warning-xml"), ""))]);
    let (code, report) = run(&sb, "import").await;
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(report["status"], "warning");
    assert_eq!(report["warnings"][1]["code"], "W7");
    assert_eq!(report["details"]["rows"], "1204");
    assert_eq!(
        sb.read("logs/warnings.log")
            .matches("WARN jobs::warnings::import")
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_500_with_html_fails_naming_the_code_and_quoting_the_body() {
    let addr = app(Arc::default()).await;
    let sb = sandbox(&[("nightly", http_job(format!("http://{addr}/broken"), ""))]);
    let (code, report) = run(&sb, "nightly").await;
    assert_eq!(code, 1);
    assert_eq!(report["status"], "failed");
    let error = report["errors"][0]["message"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "HTTP 500 Internal Server Error from POST http://{addr}/broken without a report"
        )),
        "{error}"
    );
    assert!(
        error.contains(
            "the body begins: <html><body><h1>Internal Server Error</h1> | <p>database is down</p>"
        ),
        "{error}"
    );
    let status = sb.read("logs/status.log");
    assert!(
        status.contains("ERROR jobs::status::nightly finished status=failed http=500"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_timeout_and_malformed_each_fail_with_their_own_error() {
    let addr = app(Arc::default()).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let sb = sandbox(&[
        ("refused", http_job(format!("http://{closed}/"), "")),
        (
            "slow",
            http_job(format!("http://{addr}/slow"), "    timeout: 1s\n"),
        ),
        (
            "malformed",
            http_job(format!("http://{addr}/malformed"), ""),
        ),
        ("tls", http_job(format!("https://{addr}/warning-json"), "")),
        (
            "nohost",
            http_job("http://no-such-host.invalid/".into(), ""),
        ),
    ]);
    let mut seen = Vec::new();
    for (job, expect) in [
        (
            "refused",
            format!("cannot connect to POST http://{closed}/: connection refused"),
        ),
        (
            "slow",
            format!("no complete answer from POST http://{addr}/slow within 1s"),
        ),
        (
            "malformed",
            "the JSON report does not parse at line 3, column 16: expected value".to_string(),
        ),
        (
            "tls",
            format!("TLS with POST https://{addr}/warning-json failed"),
        ),
        (
            "nohost",
            "cannot resolve the host of POST http://no-such-host.invalid/".to_string(),
        ),
    ] {
        let (code, report) = run(&sb, job).await;
        assert_eq!(code, 1, "{job}: {report:#}");
        assert_eq!(report["status"], "failed");
        let errors = report["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{job}: exactly one error: {report:#}");
        let message = errors[0]["message"].as_str().unwrap().to_string();
        assert!(message.starts_with(&expect), "{job}: {message}");
        seen.push(message);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "distinct errors");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_ndjson_answer_shows_progress_while_the_request_is_open() {
    let gate = Arc::new(Notify::new());
    let addr = app(Arc::clone(&gate)).await;
    let sb = sandbox(&[("stream", http_job(format!("http://{addr}/stream"), ""))]);
    let mut child = sb.command(&["run", "stream"]).spawn().unwrap();
    let capture = sb.path().join(".overnight/runs/stream/1.log");
    let progress = sb.path().join("logs/progress.log");
    for step in 1..=5 {
        let line = format!("::progress::{}% step {step}", step * 20);
        let record = format!("INFO jobs::progress::stream {}% step {step}", step * 20);
        wait_for(Duration::from_secs(10), &line, || {
            let seen = std::fs::read_to_string(&capture)
                .unwrap_or_default()
                .contains(&line)
                && std::fs::read_to_string(&progress)
                    .unwrap_or_default()
                    .contains(&record);
            async move { seen.then_some(()) }
        })
        .await;
        assert!(
            child.try_wait().unwrap().is_none(),
            "the request is still open at step {step}"
        );
        gate.notify_one();
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let report = sb.run(&["report", "1", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["status"], "success");
    assert_eq!(report["summary"], "streamed");
    assert_eq!(report["progress"]["percent"], 100.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_from_the_environment_never_reach_logs_reports_or_errors() {
    let addr = app(Arc::default()).await;
    let sb = sandbox(&[(
        "secret",
        http_job(
            format!("\"http://{addr}/echo?key=${{API_TOKEN}}\""),
            "      method: GET\n      headers:\n        Authorization: Bearer ${API_TOKEN}\n",
        ),
    )]);
    let path = sb.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Sandbox::at(path)
            .command(&["run", "secret"])
            .env("API_TOKEN", "tok-9f8e7d6c5b")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = sb.run(&["report", "1", "--json"]);
    let report_text = String::from_utf8_lossy(&report.stdout).into_owned();
    assert!(
        report_text.contains("refused: Bearer ***"),
        "the body is quoted, redacted: {report_text}"
    );
    let mut everything = report_text + &text(&out).0 + &text(&out).1;
    for entry in walk(sb.path()) {
        everything.push_str(&std::fs::read_to_string(entry).unwrap_or_default());
    }
    assert!(!everything.contains("tok-9f8e7d6c5b"), "the token leaked");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path
            .extension()
            .is_none_or(|e| e != "db" && e != "db-wal" && e != "db-shm")
        {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_command_job_reports_through_its_report_file_and_status_line() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        r#"jobs:
  reporter:
    command: |
      cat > "$OVERNIGHT_REPORT" <<'EOF'
      {"summary": "wrote the report", "warnings": ["from the file"], "details": {"job": "reporter"}}
      EOF
      echo "::status::warning"
      echo "run $OVERNIGHT_RUN_ID of $OVERNIGHT_JOB, attempt $OVERNIGHT_ATTEMPT"
"#,
    );
    let out = sb.run(&["run", "reporter"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out).0);
    let report = sb.run(&["report", "1", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["declared_status"], "warning");
    assert_eq!(report["warnings"][0]["message"], "from the file");
    assert_eq!(report["details"]["job"], "reporter");
    assert_eq!(report["summary"], "wrote the report");
    assert_eq!(
        text(&sb.run(&["logs", "1"])).0,
        "::status::warning\nrun 1 of reporter, attempt 1\n"
    );
}

#[test]
fn a_malformed_report_file_is_an_error_with_its_position() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "jobs:\n  bad:\n    command: |\n      printf '{\\n  \"warnings\": [x]\\n}' > \"$OVERNIGHT_REPORT\"\n",
    );
    let out = sb.run(&["run", "bad"]);
    assert_eq!(out.status.code(), Some(1));
    let report = sb.run(&["report", "1", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let error = report["errors"][0]["message"].as_str().unwrap();
    assert!(
        error.contains("does not parse at line 2, column 16"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_map_event_streams_and_the_body_cap() {
    let addr = app(Arc::default()).await;
    let sb = sandbox(&[
        (
            "accepted",
            http_job(
                format!("http://{addr}/accepted"),
                "      status_map: {202: warning}\n",
            ),
        ),
        ("events", http_job(format!("http://{addr}/events"), "")),
        (
            "capped",
            http_job(
                format!("http://{addr}/warning-json"),
                "      max_body: 40\n",
            ),
        ),
    ]);
    let (code, report) = run(&sb, "accepted").await;
    assert_eq!(
        (code, report["status"].as_str()),
        (3, Some("warning")),
        "{report:#}"
    );

    let (code, report) = run(&sb, "events").await;
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(report["progress"]["percent"], 50.0);
    assert_eq!(report["warnings"][0]["message"], "one shard was slow");
    let (logs, _) = text(&sb.run(&["logs", "events"]));
    assert_eq!(
        logs, "::progress::50% half way\n::warning::one shard was slow\ndone\n",
        "only the data lines"
    );

    let (code, report) = run(&sb, "capped").await;
    assert_eq!(code, 1);
    let error = report["errors"][0]["message"].as_str().unwrap();
    assert!(
        error.contains("is over the 40 byte cap (`http.max_body`)"),
        "{error}"
    );
}
