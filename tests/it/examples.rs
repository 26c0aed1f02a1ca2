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

/// The container's jobs file passes `check`, and the Dockerfile starts
/// the daemon on it where the documented `docker run` mounts it.
#[test]
fn the_container_jobs_file_passes_check_where_the_dockerfile_reads_it() {
    let sb = Sandbox::new();
    let file = repo().join("examples/container/overnight.yaml");
    let out = sb
        .command(&["check", "-c", file.to_str().unwrap()])
        .env("OPS_TOKEN", "a-token-of-24-characters")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let dockerfile = std::fs::read_to_string(repo().join("examples/container/Dockerfile")).unwrap();
    assert!(dockerfile.contains(r#"CMD ["daemon", "-c", "/etc/overnight/overnight.yaml"]"#));
    assert!(dockerfile.contains(r#"-v "$PWD/examples/container:/etc/overnight:ro""#));
    assert!(dockerfile.contains("VOLUME /var/lib/overnight"));
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("state_dir: /var/lib/overnight")
    );
}

/// The HTTP example: the Python application on a free port, each job run
/// against it.
#[test]
fn the_http_example_jobs_run_against_the_example_application() {
    let (mut app, port) = listening_app("python3", &repo().join("examples/http-app/app.py"));

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

/// The legacy-sync example checks, and runs to its hold with the shipped
/// flows routing: the flow's records in their own file, its report as
/// JSON lines.
#[tokio::test(flavor = "multi_thread")]
async fn the_legacy_sync_example_runs_to_its_hold_with_the_flows_routing() {
    let sb = Sandbox::new();
    let example =
        std::fs::read_to_string(repo().join("examples/legacy-sync/overnight.yaml")).unwrap();
    let flows_yaml = std::fs::read_to_string(repo().join("log4rs-configs/flows.yaml")).unwrap();
    sb.write("log4rs.yaml", &flows_yaml);
    let file = example.replace("../../log4rs-configs/flows.yaml", "log4rs.yaml");
    let out = {
        sb.write("overnight.yaml", &file);
        sb.run(&["check"])
    };
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert!(
        text(&out).0.contains("flow legacy-sync  0 1 * * *"),
        "{}",
        text(&out).0
    );
    let daemon = crate::helper::TestDaemon::start_in(
        sb,
        &file,
        std::sync::Arc::new(overnight::schedule::clock::SystemClock),
    )
    .await;
    let sb = &daemon.sandbox;
    let out = sb.run(&["flow", "start", "legacy-sync"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let log = crate::helper::wait_for(
        std::time::Duration::from_secs(30),
        "the hold in flows.log",
        || {
            let log = sb.read("logs/flows.log");
            async move { log.contains("held at step `approve`").then_some(log) }
        },
    )
    .await;
    assert!(
        log.contains("step `verify` ended success"),
        "the details reached verify: {log}"
    );
    let told = crate::helper::wait_for(
        std::time::Duration::from_secs(30),
        "the held trigger's record",
        || {
            let log = sb.read("logs/flows.log");
            async move {
                log.lines()
                    .find(|l| l.contains("held: flow legacy-sync #"))
                    .map(str::to_string)
            }
        },
    )
    .await;
    assert!(
        told.contains("WARN") && told.contains("step `approve`: Compare the counts"),
        "{told}"
    );
    assert!(
        log.contains("step `rollback` skipped: failed(load) is false: load ended success"),
        "{log}"
    );
    let id = log
        .split("legacy-sync#")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let out = sb.run(&["flow", "resume", &id]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let report = crate::helper::wait_for(
        std::time::Duration::from_secs(30),
        "the flow's report",
        || {
            let lines = sb.read("logs/flow-reports.jsonl");
            async move { (!lines.is_empty()).then_some(lines) }
        },
    )
    .await;
    let report: serde_json::Value = serde_json::from_str(report.lines().next().unwrap()).unwrap();
    assert_eq!(report["status"], "success");
    assert_eq!(report["steps"].as_array().unwrap().len(), 7);
    assert_eq!(report["actions"][0]["action"], "resume");
    daemon.stop().await;
}

/// The Python helper, end to end: a command job and an HTTP handler that
/// use only `overnight_report` each give a report with a warning, an
/// error, a detail and progress, read back with `overnight report --json`.
#[test]
fn the_python_helper_reports_from_a_job_and_from_a_handler() {
    let helpers = repo().join("examples/handlers/python");
    let (mut app, port) = listening_app("python3", &helpers.join("http_handler.py"));
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        &format!(
            "jobs:\n  command-job:\n    command: [python3, {}]\n  http-job:\n    http: {{url: \"http://127.0.0.1:{port}/batch/import\"}}\n",
            helpers.join("nightly_import.py").display()
        ),
    );
    for (job, id) in [("command-job", "1"), ("http-job", "2")] {
        let report = helper_report(&sb, job, id);
        assert_eq!(report["details"]["rows"], 1204, "{report}");
    }
    let _ = app.kill();
    let _ = app.wait();
}

/// Runs a job whose helper said progress, a warning (`SKIP`), an error
/// (`E_CONN` on host wh1) and its summary, and reads its report back.
fn helper_report(sb: &Sandbox, job: &str, id: &str) -> serde_json::Value {
    let run = sb.run(&["run", job]);
    assert_eq!(run.status.code(), Some(1), "{job}: {run:?}");
    let out = sb.run(&["report", "--json", id]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["job"], job);
    assert_eq!(report["status"], "failed", "{report}");
    assert_eq!(report["summary"], "imported 1204 rows", "{report}");
    assert_eq!(report["errors"][0]["code"], "E_CONN", "{report}");
    assert_eq!(report["errors"][0]["fields"]["host"], "wh1", "{report}");
    assert_eq!(report["warnings"][0]["code"], "SKIP", "{report}");
    assert_eq!(
        report["warnings"][0]["message"], "2 rows skipped",
        "{report}"
    );
    assert_eq!(report["progress"]["percent"], 100.0, "{report}");
    assert_eq!(
        report["error_count"], 1,
        "{job}: said once, not twice: {report}"
    );
    report
}

/// The Node helper, end to end: a command job, a handler that answers at
/// the end and a handler that streams NDJSON, each using only
/// `overnight-report.mjs`, give the same report.
#[test]
fn the_node_helper_reports_from_a_job_and_from_a_handler_buffered_or_streamed() {
    let helpers = repo().join("examples/handlers/node");
    let (mut app, port) = listening_app("node", &helpers.join("http-handler.mjs"));
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        &format!(
            "jobs:\n  command-job:\n    command: [node, {}]\n  http-job:\n    http: {{url: \"http://127.0.0.1:{port}/batch/import\"}}\n  stream-job:\n    http: {{url: \"http://127.0.0.1:{port}/batch/rebuild\"}}\n",
            helpers.join("nightly-import.mjs").display()
        ),
    );
    let command = helper_report(&sb, "command-job", "1");
    assert_eq!(command["details"]["source"]["bucket"], "exports");
    assert_eq!(command["notices"][0]["message"], "cache warmed");
    let buffered = helper_report(&sb, "http-job", "2");
    assert_eq!(buffered["details"]["rows"], 1204, "{buffered}");
    let streamed = helper_report(&sb, "stream-job", "3");
    assert_eq!(
        streamed["details"]["rows"], "1204",
        "a streamed detail is text: {streamed}"
    );
    let _ = app.kill();
    let _ = app.wait();
}

/// An application on a free port, and the port it says it took.
fn listening_app(interpreter: &str, script: &std::path::Path) -> (std::process::Child, String) {
    let mut app = Command::new(interpreter)
        .arg(script)
        .arg("0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{interpreter} runs: {e}"));
    let mut first = String::new();
    BufReader::new(app.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port = first
        .trim()
        .strip_prefix("listening on ")
        .expect("the app says its port")
        .to_string();
    (app, port)
}

/// The shell helper, end to end: a job that sources `overnight.sh` and
/// calls only its functions gives a report with progress, a warning, an
/// error, a notice, a detail and its summary, quotes and all.
#[test]
fn the_shell_helper_reports_from_a_job() {
    let sb = Sandbox::new();
    let helper = repo().join("examples/handlers/shell/overnight.sh");
    sb.write(
        "overnight.yaml",
        &format!(
            "jobs:\n  shell-job:\n    command: |\n      . {}\n      on_progress 50 'loading orders'\n      on_warning '2 rows skipped' SKIP\n      on_error 'warehouse \"wh1\" refused' E_CONN\n      on_notice 'cache warmed'\n      on_detail rows 1204\n      on_finish 'imported 1204 rows, \"all\" \\ good'\n",
            helper.display()
        ),
    );
    let run = sb.run(&["run", "shell-job"]);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let out = sb.run(&["report", "--json", "1"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(
        report["summary"], r#"imported 1204 rows, "all" \ good"#,
        "{report}"
    );
    assert_eq!(
        report["errors"][0]["message"], r#"warehouse "wh1" refused"#,
        "{report}"
    );
    assert_eq!(report["errors"][0]["code"], "E_CONN", "{report}");
    assert_eq!(report["warnings"][0]["code"], "SKIP", "{report}");
    assert_eq!(report["notices"][0]["message"], "cache warmed", "{report}");
    assert_eq!(report["details"]["rows"], "1204", "{report}");
    assert_eq!(report["progress"]["percent"], 50.0, "{report}");
}

/// The Perl helper, end to end: a command job that uses only
/// `Overnight::Report` gives a report with a warning, an error, a notice,
/// details and progress; for an HTTP handler it makes the answer.
#[test]
fn the_perl_helper_reports_from_a_job_and_answers_for_a_handler() {
    let sb = Sandbox::new();
    let lib = repo().join("examples/handlers/perl");
    sb.write(
        "overnight.yaml",
        &format!(
            "jobs:\n  perl-job:\n    command: [perl, -I{lib}, {lib}/nightly_import.pl]\n",
            lib = lib.display()
        ),
    );
    let run = sb.run(&["run", "perl-job"]);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let out = sb.run(&["report", "--json", "1"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["summary"], "imported 1204 rows", "{report}");
    assert_eq!(report["errors"][0]["fields"]["host"], "wh1", "{report}");
    assert_eq!(report["error_count"], 1, "{report}");
    assert_eq!(report["warnings"][0]["code"], "SKIP", "{report}");
    assert_eq!(report["notices"][0]["message"], "cache warmed", "{report}");
    assert_eq!(report["details"]["source"]["bucket"], "exports", "{report}");
    assert_eq!(report["progress"]["percent"], 100.0, "{report}");

    let answer = Command::new("perl")
        .arg(format!("-I{}", lib.display()))
        .arg("-MOvernight::Report")
        .arg("-e")
        .arg("my $r = Overnight::Report->new(live => 0); $r->warning('late'); $r->detail(rows => 3); my ($code, $headers, $body) = $r->http_response(summary => 'done'); print qq($code $headers->{'X-Batch-Complete-Status'} $body)")
        .output()
        .expect("perl runs");
    let answer = String::from_utf8_lossy(&answer.stdout);
    let (head, body) = answer.split_at(answer.find('{').expect("a body"));
    assert_eq!(head, "200 warning ");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["warnings"][0]["message"], "late");
    assert_eq!(body["details"]["rows"], 3);
    assert_eq!(body["summary"], "done");
}
