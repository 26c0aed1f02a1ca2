//! The API (DESIGN §9): the routes match the OpenAPI document, the JSON
//! endpoints show what the CLI shows, and every refusal of the guard —
//! no token 401, a foreign `Origin` 403, a foreign `Host` 421, a
//! cross-site form POST that does nothing — against a real daemon.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use overnight::schedule::clock::SystemClock;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helper::{Sandbox, TestDaemon, wait_for};

/// A daemon's address (on loopback whatever it is bound to) and token.
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    fn of(daemon: &TestDaemon) -> Api {
        let card = daemon.card();
        Api {
            base: format!("http://127.0.0.1:{}", card.addr.port()),
            token: card.token,
            http: overnight::exec::http::client_builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base))
    }

    /// A GET with no token: its status and JSON body.
    async fn read(&self, path: &str) -> (StatusCode, Value) {
        answer(self.get(path)).await
    }

    /// A POST with the daemon's token.
    async fn act(&self, path: &str) -> (StatusCode, Value) {
        answer(self.post(path).bearer_auth(&self.token)).await
    }
}

/// Sends `request`; its status and JSON body (`null` when none).
async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The routes the OpenAPI document describes, as `METHOD /path`.
fn documented() -> BTreeSet<String> {
    let doc: Value = serde_json::from_str(overnight::daemon::api::OPENAPI).unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes
}

/// The document names every route the router serves and no other; each
/// one it names is answered by its handler (a 404 of "no such route"
/// would be the router's fallback), its errors in JSON.
#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_and_the_router_name_the_same_routes() {
    let served: BTreeSet<String> = overnight::daemon::api::ROUTES
        .iter()
        .map(|r| {
            let (method, path) = r.split_once(' ').unwrap();
            format!("{} {path}", method.to_uppercase())
        })
        .collect();
    assert_eq!(documented(), served);

    let daemon = TestDaemon::start("jobs:\n  a:\n    command: 'true'\n").await;
    let api = &Api::of(&daemon);
    for route in documented() {
        let (method, path) = route.split_once(' ').unwrap();
        if path == "/api/events" {
            continue; // a stream that does not end; tests/it/live.rs reads it
        }
        let path = path
            .replace("{id}", "999999")
            .replace("{name}", "no-such")
            .replace("{action}", "resume");
        let request = match method {
            "GET" => api.get(&path),
            _ => api.post(&path).bearer_auth(&api.token),
        };
        let (status, body) = answer(request).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{route}");
        assert!(
            status.is_success() || status.is_redirection() || body["error"].is_string(),
            "{route}: {status} {body}"
        );
        assert_ne!(body["error"], "not found", "{route}: the router's fallback");
    }
    // And what no route serves is a JSON 404 too.
    let (status, body) = api.read("/api/no-such-thing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string(), "{body}");
    daemon.stop().await;
}

/// Jobs with their last run and progress, the history a page at a time
/// by id, a run's report, a run started at once and stopped by an
/// operator, locks, flows and flow runs.
#[tokio::test(flavor = "multi_thread")]
async fn the_json_endpoints_show_what_the_cli_shows() {
    let daemon = TestDaemon::start(
        "jobs:\n  quick:\n    command: 'echo hi'\n    concurrency: allow\n  slow:\n    command: 'echo \"::progress::10% warming up\"; sleep 30'\n    locks: [db]\n\
         flows:\n  nightly:\n    steps:\n      first: {job: quick}\n      gate: {hold: 'look first', after: first}\n",
    )
    .await;
    let api = &Api::of(&daemon);

    // Three runs of `quick`, started at once: each answers with its id.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, body) = api.act("/api/jobs/quick/start").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push(body["run_id"].as_i64().unwrap());
    }
    for &id in &ids {
        wait_for(Duration::from_secs(20), "the run's end", || async move {
            let (_, run) = api.read(&format!("/api/runs/{id}")).await;
            (run["run"]["status"] == "success").then_some(())
        })
        .await;
    }
    let (_, run) = api.read(&format!("/api/runs/{}", ids[0])).await;
    assert_eq!(run["report"]["status"], "success", "{run}");
    assert_eq!(run["report"]["job"], "quick", "{run}");

    // Paging by id: two, then the last one, then no further page.
    let (_, first) = api.read("/api/runs?job=quick&limit=2").await;
    let page: Vec<i64> = first["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(page, [ids[2], ids[1]], "{first}");
    let next = first["next"].as_i64().expect("a next page");
    let (_, second) = api
        .read(&format!("/api/runs?job=quick&limit=2&before={next}"))
        .await;
    assert_eq!(second["runs"][0]["id"], ids[0], "{second}");
    assert!(second["next"].is_null(), "{second}");
    let (status, bad) = api.read("/api/runs?status=fine").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        bad["error"].as_str().unwrap().contains("no status `fine`"),
        "{bad}"
    );
    let (status, bad) = api.read("/api/runs?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert!(
        bad["error"].is_string(),
        "axum's own refusals are JSON too: {bad}"
    );

    // A long run: its progress and lock show while it runs; an operator
    // stops it, and its report says who.
    let (_, started) = api.act("/api/jobs/slow/start").await;
    let slow = started["run_id"].as_i64().unwrap();
    let jobs = wait_for(
        Duration::from_secs(20),
        "the slow run's progress",
        move || async move {
            let (_, jobs) = api.read("/api/jobs").await;
            let running = &jobs
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["name"] == "slow")?["running"];
            (running[0]["progress"]["percent"] == 10.0).then_some(jobs)
        },
    )
    .await;
    let quick = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "quick")
        .unwrap();
    // The run that ended last, of the three that ran side by side.
    let last = quick["last"]["id"].as_i64().unwrap();
    assert!(ids.contains(&last), "{quick}");
    assert_eq!(quick["kind"], "command");
    let (_, locks) = api.read("/api/locks").await;
    let db = locks.as_array().unwrap().iter().find(|l| l["name"] == "db");
    assert_eq!(db.expect("the lock `db`")["run_id"], slow, "{locks}");

    let (status, _) = api.act(&format!("/api/runs/{slow}/stop")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let report = wait_for(
        Duration::from_secs(20),
        "the stopped run's end",
        move || async move {
            let (_, run) = api.read(&format!("/api/runs/{slow}")).await;
            (run["run"]["status"] != "running").then(|| run["report"].clone())
        },
    )
    .await;
    assert_eq!(report["status"], "failed", "{report}");
    assert!(
        report["summary"]
            .as_str()
            .unwrap()
            .contains("stopped by local"),
        "{report}"
    );
    let (status, body) = api.act(&format!("/api/runs/{slow}/stop")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // A flow run held at its gate: its view says where and why.
    let (_, started) = api.act("/api/flows/nightly/start").await;
    let flow_run = started["flow_run_id"].as_i64().unwrap();
    let view = wait_for(Duration::from_secs(20), "the flow held", || async move {
        let (_, view) = api.read(&format!("/api/flow-runs/{flow_run}")).await;
        (view["status"] == "held").then_some(view)
    })
    .await;
    assert_eq!(view["held_at"]["step"], "gate", "{view}");
    assert_eq!(view["held_at"]["message"], "look first", "{view}");
    assert_eq!(view["plan"]["steps"][1]["after"], "ok(first)", "{view}");
    let (_, flows) = api.read("/api/flows").await;
    assert_eq!(flows[0]["last"]["flow_run_id"], flow_run, "{flows}");
    let (_, page) = api.read("/api/flow-runs?flow=nightly&status=held").await;
    assert_eq!(page["flow_runs"][0]["flow_run_id"], flow_run, "{page}");
    let (_, aborted) = api.act(&format!("/api/flow-runs/{flow_run}/abort")).await;
    assert_eq!(aborted["status"], "aborted", "{aborted}");
    daemon.stop().await;
}

/// Writes need a token, even on loopback; reads there do not.
#[tokio::test(flavor = "multi_thread")]
async fn no_token_is_401_for_writes() {
    let daemon = TestDaemon::start("jobs:\n  a:\n    command: 'true'\n").await;
    let api = &Api::of(&daemon);
    let (status, body) = answer(api.post("/api/jobs/a/start")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = answer(api.post("/api/jobs/a/start").bearer_auth("not-the-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.read("/api/jobs").await;
    assert_eq!(status, StatusCode::OK);
    let (_, runs) = api.read("/api/runs").await;
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        0,
        "nothing ran: {runs}"
    );
    daemon.stop().await;
}

/// `Host` must name this API: an address, `localhost`, the machine's
/// name (the other hosts of a cluster call it so), or `api.hosts` (a
/// proxy's name: whoever comes through it shows a token, even to read).
#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_host_is_421_and_api_hosts_are_answered() {
    let daemon =
        TestDaemon::start("api:\n  hosts: [batch.example.com]\njobs:\n  a:\n    command: 'true'\n")
            .await;
    let api = &Api::of(&daemon);
    let port = daemon.card().addr.port();
    for (host, expected) in [
        (
            format!("batch.example.com:{port}"),
            StatusCode::UNAUTHORIZED,
        ),
        ("batch.example.com".to_string(), StatusCode::UNAUTHORIZED),
        (format!("localhost:{port}"), StatusCode::OK),
        (format!("[::1]:{port}"), StatusCode::OK),
        (format!("127.0.0.1:{port}"), StatusCode::OK),
        (
            format!("{}:{port}", overnight::process::hostname()),
            StatusCode::OK,
        ),
        (
            "[::1].attacker.example".to_string(),
            StatusCode::MISDIRECTED_REQUEST,
        ),
        (
            "127.0.0.1:80@attacker.example".to_string(),
            StatusCode::MISDIRECTED_REQUEST,
        ),
        ("localhost:abc".to_string(), StatusCode::MISDIRECTED_REQUEST),
        (
            format!("attacker.example:{port}"),
            StatusCode::MISDIRECTED_REQUEST,
        ),
        (
            "batch.example.com.attacker.example".to_string(),
            StatusCode::MISDIRECTED_REQUEST,
        ),
    ] {
        let (status, body) = answer(api.get("/api/status").header("host", &host)).await;
        assert_eq!(status, expected, "{host}: {body}");
    }
    let (status, _) = answer(
        api.get("/api/status")
            .header("host", "batch.example.com")
            .bearer_auth(&api.token),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "through the proxy, with a token");
    daemon.stop().await;
}

/// A write from another site's page is 403 whatever it holds, and starts
/// nothing; the API's own page, and scripts, pass.
#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_origin_is_403_and_a_cross_site_form_post_does_nothing() {
    let daemon = TestDaemon::start("jobs:\n  a:\n    command: 'true'\n").await;
    let api = &Api::of(&daemon);
    let (status, body) = answer(
        api.post("/api/jobs/a/start")
            .bearer_auth(&api.token)
            .header("origin", "http://evil.example"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Log in as a browser does, from the page.
    let (status, _) = answer(
        api.post("/api/login")
            .header("origin", &api.base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("token=wrong"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let login = api
        .post("/api/login")
        .header("origin", &api.base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", api.token))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_string();

    // Another site's form, even if the browser sent the cookie along.
    for with_cookie in [false, true] {
        let mut form = api
            .post("/api/jobs/a/start")
            .header("origin", "http://evil.example")
            .header("sec-fetch-site", "cross-site")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("x=1");
        if with_cookie {
            form = form.header("cookie", &session);
        }
        let (status, _) = answer(form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "cookie: {with_cookie}");
    }
    // A session's write without an Origin is refused too.
    let (status, _) = answer(api.post("/api/jobs/a/start").header("cookie", &session)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, runs) = api.read("/api/runs").await;
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        0,
        "nothing ran: {runs}"
    );

    // The page itself, with its session: the run starts.
    let (status, body) = answer(
        api.post("/api/jobs/a/start")
            .header("origin", &api.base)
            .header("sec-fetch-site", "same-origin")
            .header("cookie", &session),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // Logged out, the session is gone.
    answer(
        api.post("/api/logout")
            .header("origin", &api.base)
            .header("cookie", &session),
    )
    .await;
    let (status, _) = answer(
        api.post("/api/jobs/a/start")
            .header("origin", &api.base)
            .header("cookie", &session),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    daemon.stop().await;
}

/// Beyond loopback, reading needs a token too; a named token's actions
/// are recorded under its name.
#[tokio::test(flavor = "multi_thread")]
async fn beyond_loopback_everything_needs_a_token() {
    let token = "0123456789abcdef-ops-token";
    // SAFETY: set before the daemon reads it; tests of this binary read
    // no other variable of this name.
    unsafe { std::env::set_var("OVERNIGHT_TEST_OPS_TOKEN", token) };
    let daemon = TestDaemon::start_on(
        Sandbox::new(),
        "listen: 0.0.0.0:0\napi:\n  tokens: {ops: '${OVERNIGHT_TEST_OPS_TOKEN}'}\n  insecure_http: true\n\
         jobs:\n  slow:\n    command: 'sleep 30'\n",
        Arc::new(SystemClock),
        "0.0.0.0:0",
    )
    .await;
    let api = &Api::of(&daemon);
    let (status, body) = api.read("/api/status").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = api.read("/metrics").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = answer(api.get("/api/status").bearer_auth(token)).await;
    assert_eq!(status, StatusCode::OK);

    let (_, started) = answer(api.post("/api/jobs/slow/start").bearer_auth(token)).await;
    let id = started["run_id"].as_i64().unwrap();
    wait_for(
        Duration::from_secs(20),
        "the run to start",
        move || async move {
            let (_, run) = answer(api.get(&format!("/api/runs/{id}")).bearer_auth(token)).await;
            (run["run"]["status"] == "running").then_some(())
        },
    )
    .await;
    let (status, _) = answer(api.post(&format!("/api/runs/{id}/stop")).bearer_auth(token)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let summary = wait_for(
        Duration::from_secs(20),
        "the run to end",
        move || async move {
            let (_, run) = answer(api.get(&format!("/api/runs/{id}")).bearer_auth(token)).await;
            run["report"]["summary"].as_str().map(str::to_string)
        },
    )
    .await;
    assert!(summary.contains("stopped by ops"), "{summary}");
    daemon.stop().await;
}

/// The jobs file may not open the API beyond loopback without a token and
/// TLS; `check` says so, naming what to add.
#[test]
fn beyond_loopback_without_a_token_or_tls_is_refused_at_check() {
    let sb = Sandbox::new();
    let jobs = "jobs:\n  a:\n    command: 'true'\n";
    for (head, said) in [
        ("listen: 0.0.0.0:7411\n", "with no token"),
        (
            "listen: 0.0.0.0:7411\napi:\n  tokens: {ops: '${OPS_TOKEN}'}\n",
            "in clear",
        ),
        (
            "api:\n  tokens: {ops: plain-secret}\n",
            "must name a variable",
        ),
    ] {
        sb.write("overnight.yaml", &format!("{head}{jobs}"));
        let out = sb.run(&["check"]);
        let (stdout, stderr) = crate::helper::text(&out);
        assert!(!out.status.success(), "{head}");
        assert!(
            stderr.contains(said) || stdout.contains(said),
            "{head}: {stdout}{stderr}"
        );
    }
}

/// A token whose variable is unset stops the daemon at its start, naming
/// the variable.
#[test]
fn a_token_whose_variable_is_unset_stops_the_daemon() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "listen: 127.0.0.1:0\napi:\n  tokens: {ops: '${OVERNIGHT_TEST_UNSET_TOKEN}'}\njobs:\n  a:\n    command: 'true'\n",
    );
    let out = sb.run(&["daemon"]);
    let (stdout, stderr) = crate::helper::text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("`OVERNIGHT_TEST_UNSET_TOKEN` is not set"),
        "{stdout}{stderr}"
    );
}

/// With `api.tls`, the API speaks HTTPS with the given certificate.
#[tokio::test(flavor = "multi_thread")]
async fn api_tls_serves_https() {
    let sb = Sandbox::new();
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=overnight-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(sb.path())
        .output()
        .expect("openssl (Debian's openssl package)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let token = "fedcba9876543210-tls-token";
    // SAFETY: set before the daemon reads it; no other test reads it.
    unsafe { std::env::set_var("OVERNIGHT_TEST_TLS_TOKEN", token) };
    let daemon = TestDaemon::start_on(
        sb,
        "listen: 0.0.0.0:0\napi:\n  tokens: {ops: '${OVERNIGHT_TEST_TLS_TOKEN}'}\n  tls: {cert: cert.pem, key: key.pem}\n\
         jobs:\n  a:\n    command: 'true'\n",
        Arc::new(SystemClock),
        "0.0.0.0:0",
    )
    .await;
    let port = daemon.card().addr.port();
    let pem = std::fs::read(daemon.sandbox.path().join("cert.pem")).unwrap();
    let http = overnight::exec::http::client_builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let (status, body) = answer(
        http.get(format!("https://127.0.0.1:{port}/api/status"))
            .bearer_auth(token),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["jobs"].is_array(), "{body}");
    // Plain HTTP gets no answer.
    let plain = overnight::exec::http::client_builder()
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/api/status"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    daemon.stop().await;
}

/// Schemathesis (from PyPI; `.ci/run` installs it) generates requests from
/// the OpenAPI document against a live daemon, the token in hand: no
/// answer is a 500, none strays from its schema.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let daemon = TestDaemon::start(
        "jobs:\n  hello:\n    command: echo hello\nflows:\n  nightly:\n    steps:\n      first: {job: hello}\n",
    )
    .await;
    let card = daemon.card();
    let url = format!("http://{}/api/openapi.json", card.addr);
    let report = daemon.sandbox.path().join("schemathesis");
    let dir = daemon.sandbox.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("st")
            // Its cache of cases goes with the sandbox, not into the repo.
            .current_dir(&dir)
            .args([
                "run",
                &url,
                "--checks",
                "not_a_server_error,response_schema_conformance",
            ])
            // Streams that last as long as they are read.
            .args([
                "--exclude-path",
                "/api/events",
                "--exclude-path",
                "/api/runs/{id}/output",
            ])
            .args(["--header", &format!("Authorization: Bearer {}", card.token)])
            .args(["--max-examples", "20", "--seed", "1", "--no-color"])
            .arg("--report-dir")
            .arg(report)
            .output()
    })
    .await
    .unwrap()
    .expect("schemathesis' `st` (`pip install schemathesis==4.32.5`; .ci/run installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("passed") && !said.contains("failed"),
        "{said}"
    );
    daemon.stop().await;
}

/// The served document is what `tools/openapi.py` writes.
#[test]
fn the_openapi_document_is_its_generators_output() {
    let out = std::process::Command::new("python3")
        .arg(crate::helper::repo().join("tools/openapi.py"))
        .output()
        .expect("python3");
    assert!(out.status.success());
    let written: Value = serde_json::from_slice(&out.stdout).unwrap();
    let served: Value = serde_json::from_str(overnight::daemon::api::OPENAPI).unwrap();
    assert!(
        written == served,
        "run `python3 tools/openapi.py > src/daemon/api/openapi.json`"
    );
}

/// `/metrics` counts what the daemon did, in Prometheus' text format:
/// runs by job and status with durations, deliveries by outcome, lines,
/// and each job's last success from the history.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_runs_deliveries_and_last_successes() {
    let daemon = TestDaemon::start(
        "triggers:\n  - name: page\n    on: [failed]\n    run: ['true']\njobs:\n  metric-ok:\n    command: echo fine\n  metric-bad:\n    command: echo broken; exit 1\n",
    )
    .await;
    let api = &Api::of(&daemon);
    for job in ["metric-ok", "metric-bad", "metric-ok"] {
        api.act(&format!("/api/jobs/{job}/run")).await;
    }
    let text = wait_for(
        Duration::from_secs(20),
        "the delivery counted",
        move || async move {
            let text = api
                .get("/metrics")
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.contains("overnight_trigger_deliveries_total{action=\"run\",outcome=\"sent\"}")
                .then_some(text)
        },
    )
    .await;
    for line in [
        "overnight_runs_total{job=\"metric-ok\",status=\"success\"} 2",
        "overnight_runs_total{job=\"metric-bad\",status=\"failed\"} 1",
        "overnight_runs_duration_seconds_count{job=\"metric-ok\"} 2",
        "overnight_runs_duration_seconds_bucket{job=\"metric-ok\",le=\"+Inf\"} 2",
        "overnight_running_runs 0",
        "# TYPE overnight_job_last_success_timestamp_seconds gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    let last = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("overnight_job_last_success_timestamp_seconds{job=\"metric-ok\"} ")
        })
        .expect("metric-ok's last success");
    let age = chrono::Utc::now().timestamp_micros() as f64 / 1e6 - last.parse::<f64>().unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    assert!(
        !text.contains("last_success_timestamp_seconds{job=\"metric-bad\"}"),
        "{text}"
    );
    // Every sample line is `name{labels} number`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    daemon.stop().await;
}

/// The statuses the document lists are the program's own.
#[test]
fn the_documented_statuses_are_the_programs() {
    let doc: Value = serde_json::from_str(overnight::daemon::api::OPENAPI).unwrap();
    let listed = |schema: &str| -> Vec<String> {
        let status = &doc["components"]["schemas"][schema]["properties"]["status"]["enum"];
        serde_json::from_value(status.clone()).unwrap()
    };
    let runs: Vec<&str> = overnight::status::Status::ALL.map(|s| s.as_str()).to_vec();
    let flows: Vec<&str> = overnight::flow::progress::FlowStatus::ALL
        .map(|s| s.as_str())
        .to_vec();
    assert_eq!(listed("RunRecord"), runs);
    assert_eq!(listed("FlowRun"), flows);
}

/// Streams held open by the hundred get a 503 past their cap, and never
/// keep ordinary requests out.
#[tokio::test(flavor = "multi_thread")]
async fn streams_past_their_cap_are_503_and_requests_still_pass() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let daemon = TestDaemon::start("jobs:\n  a:\n    command: 'true'\n").await;
    let api = &Api::of(&daemon);
    let addr = format!("127.0.0.1:{}", daemon.card().addr.port());
    let open = || async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut head = vec![0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        (stream, String::from_utf8_lossy(&head).to_string())
    };
    let mut held = Vec::new();
    for _ in 0..overnight::daemon::api::MAX_STREAMS {
        let (stream, head) = open().await;
        assert_eq!(head, "HTTP/1.1 200", "within the cap");
        held.push(stream);
    }
    let (_, head) = open().await;
    assert_eq!(head, "HTTP/1.1 503", "past the cap");
    let (status, body) = api.read("/api/status").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    drop(held);
    daemon.stop().await;
}
