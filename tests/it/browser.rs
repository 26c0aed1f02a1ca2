//! The web page in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `.ci/run` installs), driven over WebDriver:
//! the dashboard lists the example jobs; a job's progress bar and lines
//! move while it runs, without a reload; after logging in, "Run now"
//! starts a run; a flow held at a critical step says why, and "Resume"
//! takes it down the failure route while the graph's colours follow.
//! Screenshots land in `target/screenshots/` for a human to look at.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use overnight::schedule::clock::SystemClock;
use serde_json::{Value, json};

use crate::helper::{Sandbox, TestDaemon, repo};

/// A Chromium session, through its chromedriver.
struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; .ci/run installs it)");
        let http = overnight::exec::http::client_builder().build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        // A first start on a busy machine (CI builds beside it) can take
        // tens of seconds: waited for up to a minute, unless it exits.
        for _ in 0..600 {
            let ready = http.get(format!("{base}/status")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if let Ok(Some(exit)) = driver.try_wait() {
                panic!("chromedriver exited before it answered: {exit}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"],
            },
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_string();
        Browser {
            driver,
            http,
            session: format!("{base}/session/{session}"),
        }
    }

    /// A WebDriver command; its `value`.
    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.attempt(method, path, body)
            .await
            .unwrap_or_else(|answer| panic!("WebDriver {path}: {answer}"))
    }

    /// A WebDriver command: its `value`, or the whole answer if it failed.
    async fn attempt(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        match answer["value"]["error"].is_string() {
            true => Err(answer),
            false => Ok(answer["value"].clone()),
        }
    }

    async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    async fn js(&self, script: &str, args: Value) -> Value {
        let args = match args {
            Value::Array(list) => Value::Array(list),
            one => Value::Array(vec![one]),
        };
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Waits until `script` returns something truthy; that.
    async fn until(&self, what: &str, script: &str, args: Value) -> Value {
        for _ in 0..300 {
            let value = self.js(script, args.clone()).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = self
            .js(
                "return document.getElementById('main').innerText",
                json!([]),
            )
            .await;
        panic!("timed out waiting for {what}; the page says:\n{page}");
    }

    /// Does `action` (`click`, `value`) to the element `css` finds, as a
    /// user does.
    /// The page redraws as events come: an element found may be replaced
    /// before it is acted on, and is then found again.
    async fn on(&self, css: &str, action: &str, body: Value) {
        let find = json!({"using": "css selector", "value": css});
        let mut last = Value::Null;
        for _ in 0..50 {
            let found = self
                .attempt(reqwest::Method::POST, "/element", find.clone())
                .await;
            let id = found.map(|f| {
                f.as_object()
                    .and_then(|o| o.values().next())
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            let done = match id {
                Ok(Some(id)) => {
                    let path = format!("/element/{id}/{action}");
                    self.attempt(reqwest::Method::POST, &path, body.clone())
                        .await
                }
                Ok(None) => Err(json!("no element id")),
                Err(answer) => Err(answer),
            };
            match done {
                Ok(_) => return,
                Err(answer) => last = answer,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot {action} {css}: {last}");
    }

    async fn click(&self, css: &str) {
        self.on(css, "click", json!({})).await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.on(css, "value", json!({"text": text})).await;
    }

    /// Saves what the browser shows as `target/screenshots/NAME.png`.
    async fn screenshot(&self, name: &str) {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let dir = repo().join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{name}.png")),
            base64_decode(png.as_str().unwrap()),
        )
        .unwrap();
    }

    async fn resize(&self, width: u32, height: u32) {
        self.command(
            reqwest::Method::POST,
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// Standard base64, as WebDriver sends screenshots.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !matches!(c, b'=' | b'\n' | b'\r'))
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | (u32::from(value(c)) << (18 - 6 * i)));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    out
}

/// The jobs the test adds to the quickstart example's.
const MORE_JOBS: &str = r#"
  ticker:
    description: A line and a progress step every 100 ms.
    command: 'for i in $(seq 1 90); do echo "line $i"; echo "::progress::$i% step $i"; if [ $i = 5 ]; then echo "::error::row 5 rejected"; fi; sleep 0.1; done'
  load:
    command: 'echo loading; echo "::error::warehouse down"; exit 1'
  publish:
    command: echo published
  tidy-up:
    command: echo tidied
flows:
  nightly:
    description: Load, then publish; tidy up when the load fails.
    steps:
      load: {job: load, critical: true}
      publish: {job: publish, after: load}
      tidy: {job: tidy-up, after: failed(load)}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_runs_live_and_its_buttons_act() {
    let sb = Sandbox::new();
    let example = repo().join("examples/quickstart");
    sb.write(
        "log4rs.yaml",
        &std::fs::read_to_string(example.join("log4rs.yaml")).unwrap(),
    );
    let jobs_file = std::fs::read_to_string(example.join("overnight.yaml")).unwrap() + MORE_JOBS;
    let daemon = TestDaemon::start_in(sb, &jobs_file, Arc::new(SystemClock)).await;
    let card = daemon.card();
    let base = format!("http://127.0.0.1:{}", card.addr.port());
    let config = overnight::config::Config::load(&daemon.config_path).unwrap();
    let browser = Browser::start().await;

    // The dashboard lists every job of the example.
    browser.goto(&format!("{base}/")).await;
    browser
        .until(
            "the jobs listed",
            "return document.querySelectorAll('#jobs tbody tr[data-name]').length === arguments[0]",
            json!(config.jobs.len()),
        )
        .await;
    for job in &config.jobs {
        let listed = browser
            .js(
                "return !!document.getElementById('job-' + arguments[0])",
                json!(job.name),
            )
            .await;
        assert_eq!(listed, true, "{} on the dashboard", job.name);
    }
    browser.screenshot("dashboard").await;
    // Nothing below reloads the page: this mark would be gone.
    browser.js("window.stillHere = true", json!([])).await;

    // A run started elsewhere: its progress bar moves on the dashboard.
    let http = overnight::exec::http::client_builder().build().unwrap();
    let started: Value = http
        .post(format!("{base}/api/jobs/ticker/start"))
        .bearer_auth(&card.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run = started["run_id"].as_i64().unwrap();
    let bar = "const p = document.querySelector(`.progress[data-run=\"${arguments[0]}\"] progress`); return p && p.value";
    let first = browser
        .until("a progress bar", bar, json!(run))
        .await
        .as_f64()
        .unwrap();
    let later = format!("{bar} > {}", first + 5.0);
    browser.until("the bar to move", &later, json!(run)).await;

    // Its page: lines arrive while it runs, the error line marked.
    browser
        .click(&format!("#job-ticker a[href='#/run/{run}']"))
        .await;
    let count = "const n = document.querySelectorAll('#output .line').length;";
    let lines = browser
        .until("lines", &format!("{count} return n >= 10 && n"), json!([]))
        .await
        .as_i64()
        .unwrap();
    let status = browser
        .js(
            "return document.querySelector('h1 .badge').textContent",
            json!([]),
        )
        .await;
    assert_eq!(status, "running", "lines arrive while it runs");
    browser
        .until(
            "more lines",
            &format!("{count} return n > {}", lines + 5),
            json!([]),
        )
        .await;
    let marked = browser
        .until(
            "the error line marked",
            "const e = document.querySelector('#output .line.error'); return e && e.textContent",
            json!([]),
        )
        .await;
    assert!(
        marked.as_str().unwrap().contains("row 5 rejected"),
        "{marked}"
    );
    browser.screenshot("live-run").await;
    browser
        .until("the run's end", "return document.querySelector('h1 .badge').textContent === 'failed' || document.querySelector('h1 .badge').textContent === 'success'", json!([]))
        .await;
    assert_eq!(
        browser.js("return window.stillHere", json!([])).await,
        true,
        "no reload"
    );

    // Run now, once logged in.
    browser.goto(&format!("{base}/#/login")).await;
    browser.type_into("#token", &card.token).await;
    browser.click(".login button[type=submit]").await;
    browser
        .until(
            "the login",
            "return document.getElementById('who').textContent.includes('local')",
            json!([]),
        )
        .await;
    browser
        .until(
            "the dashboard",
            "return !!document.getElementById('job-publish')",
            json!([]),
        )
        .await;
    browser.click("#job-publish button.primary").await;
    let heading = browser
        .until("the new run's page", "const h = document.querySelector('main h1'); return h && h.textContent.startsWith('publish #') && h.textContent", json!([]))
        .await;
    let new_run: i64 = heading.as_str().unwrap()["publish #".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap();
    let recorded: Value = http
        .get(format!("{base}/api/runs/{new_run}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(recorded["run"]["job"], "publish", "{recorded}");
    assert_eq!(recorded["run"]["trigger"], "manual", "{recorded}");

    // A flow held at its critical step: the message, then Resume.
    browser.click("a[data-nav=dashboard]").await;
    browser
        .until(
            "the flows",
            "return !!document.getElementById('flow-nightly')",
            json!([]),
        )
        .await;
    browser.click("#flow-nightly button.primary").await;
    let said = browser
        .until(
            "the hold",
            "const m = document.querySelector('#held .held-message'); return m && m.textContent",
            json!([]),
        )
        .await;
    let said = said.as_str().unwrap();
    assert!(
        said.contains("load") && said.contains("failed") && said.contains("critical"),
        "{said}"
    );
    let node = "const n = document.querySelector(`#graph [data-step=\"${arguments[0]}\"]`); return n && n.dataset.status";
    assert_eq!(browser.js(node, json!("load")).await, "failed");
    let held_at = browser
        .js(
            "return document.querySelector('#held strong').textContent",
            json!([]),
        )
        .await;
    assert!(
        held_at.as_str().unwrap().starts_with("Held at load"),
        "{held_at}"
    );
    assert_eq!(browser.js(node, json!("tidy")).await, "waiting");
    browser.screenshot("flow-held").await;
    browser.click("#held button.primary").await;
    browser
        .until(
            "the failure route taken",
            &format!("{node} === 'success'"),
            json!("tidy"),
        )
        .await;
    assert_eq!(browser.js(node, json!("publish")).await, "skipped");
    let taken = browser
        .js("return document.querySelector('#graph path[data-from=load][data-to=tidy]').classList.contains('taken')", json!([]))
        .await;
    assert_eq!(taken, true, "the route taken is drawn bold");
    let not_taken = browser
        .js("return document.querySelector('#graph path[data-from=load][data-to=publish]').classList.contains('taken')", json!([]))
        .await;
    assert_eq!(not_taken, false);
    browser
        .until(
            "the held box gone",
            "return !document.getElementById('held')",
            json!([]),
        )
        .await;
    browser.screenshot("flow-graph").await;

    // On a phone.
    browser.resize(390, 844).await;
    browser.click("a[data-nav=dashboard]").await;
    browser
        .until(
            "the dashboard",
            "return !!document.getElementById('job-ticker')",
            json!([]),
        )
        .await;
    browser.screenshot("dashboard-phone").await;
    browser.quit().await;
    daemon.stop().await;
}
