//! The live stream (`GET /api/events`, DESIGN §9): runs starting, moving
//! on and ending, and flow runs' moves, as a real client reads them from a
//! real daemon.

use std::sync::Arc;
use std::time::Duration;

use overnight::daemon::info::DaemonInfo;
use overnight::schedule::clock::SystemClock;

use crate::helper::{Sandbox, TestDaemon, text};

/// An SSE client of the daemon: each event as (name, JSON data).
struct Watcher {
    reader: overnight::client::SseReader,
}

impl Watcher {
    async fn connect(daemon: &TestDaemon) -> Watcher {
        Watcher::of(daemon, "/api/events", None).await
    }

    /// A client of the SSE stream at `path`, resuming after
    /// `last_event_id` if given.
    async fn of(daemon: &TestDaemon, path: &str, last_event_id: Option<&str>) -> Watcher {
        let client = overnight::client::Client::find(&daemon.state_dir).expect("the daemon");
        let reader = client.stream(path, last_event_id).await.unwrap();
        Watcher { reader }
    }

    /// The next event.
    async fn next(&mut self) -> (String, serde_json::Value) {
        let (event, _, data) = self.next_with_id().await;
        (event, data)
    }

    /// The next event with its id.
    async fn next_with_id(&mut self) -> (String, Option<String>, serde_json::Value) {
        let event = tokio::time::timeout(Duration::from_secs(30), self.reader.next())
            .await
            .expect("an event within 30 s")
            .unwrap()
            .expect("the stream goes on");
        let data = serde_json::from_str(&event.data).unwrap();
        (event.event, event.id, data)
    }

    /// Events until `last` says the end has come, all of them.
    async fn until(
        &mut self,
        last: impl Fn(&str, &serde_json::Value) -> bool,
    ) -> Vec<(String, serde_json::Value)> {
        let mut seen = Vec::new();
        loop {
            let (event, data) = self.next().await;
            let done = last(&event, &data);
            seen.push((event, data));
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_sees_runs_start_move_on_and_end_and_flows_move() {
    let file = "\
jobs:
  loader:
    command: 'echo loading; echo ::progress::50% halfway; sleep 0.2; echo ::progress::100% done'
  tidy: {command: 'true'}
flows:
  nightly:
    steps:
      load: { job: loader }
      tidy: { job: tidy, after: load }
";
    let daemon = TestDaemon::start_in(Sandbox::new(), file, Arc::new(SystemClock)).await;
    let mut watcher = Watcher::connect(&daemon).await;
    let out = daemon.sandbox.run(&["run", "loader"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let seen = watcher.until(|event, _| event == "run_ended").await;
    let kinds: Vec<&str> = seen.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(kinds, ["run_started", "progress", "progress", "run_ended"]);
    let run_id = &seen[0].1["run_id"];
    assert!(
        seen.iter()
            .all(|(_, d)| &d["run_id"] == run_id && d["job"] == "loader")
    );
    assert_eq!(seen[1].1["percent"], 50.0);
    assert_eq!(seen[1].1["message"], "halfway");
    assert_eq!(seen[3].1["status"], "success");

    let out = daemon.sandbox.run(&["flow", "start", "nightly"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let seen = watcher
        .until(|event, data| {
            event == "flow"
                && data["what"].as_str().unwrap_or("").contains(" ended ")
                && data["step"].is_null()
        })
        .await;
    let flow: Vec<String> = seen
        .iter()
        .filter(|(e, _)| e == "flow")
        .map(|(_, d)| d["what"].as_str().unwrap().to_string())
        .collect();
    assert!(flow[0].ends_with("started (manual)"), "{flow:?}");
    assert!(
        flow.iter()
            .any(|w| w.starts_with("step `load` started: run #")),
        "{flow:?}"
    );
    assert!(
        flow.iter()
            .any(|w| w.starts_with("step `tidy` ended success")),
        "{flow:?}"
    );
    assert!(flow.last().unwrap().ends_with("ended success"), "{flow:?}");
    let last = &seen.last().unwrap().1;
    assert_eq!(last["status"], "success");
    assert_eq!(last["flow"], "nightly");
    // The daemon stops with a watcher still connected.
    tokio::time::timeout(Duration::from_secs(20), daemon.stop())
        .await
        .expect("the daemon stops while a watcher follows");
}

/// A run's output through `/api/runs/{id}/output`: from the start, live
/// as the job writes, to an `end` with its status; again from where a
/// client left off (`Last-Event-ID`), nothing missed and nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_reads_a_runs_output_live_and_resumes_where_it_left_off() {
    let sb = Sandbox::new();
    let gate = sb.path().join("gate");
    let file = format!(
        "jobs:\n  slow:\n    command: 'echo one; echo two >&2; echo three; while [ ! -e {} ]; do sleep 0.05; done; echo four; echo five'\n",
        gate.display()
    );
    let daemon = TestDaemon::start_in(sb, &file, Arc::new(SystemClock)).await;
    let (mut run, id) = run_through(&daemon, "slow").await;
    let path = format!("/api/runs/{id}/output?follow=1");
    let mut follower = Watcher::of(&daemon, &path, None).await;
    // Batches of lines, each with the offset after its last line.
    let mut batches: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    while batches.iter().map(|(_, b)| b.len()).sum::<usize>() < 3 {
        let (event, offset, data) = follower.next_with_id().await;
        assert_eq!(event, "lines");
        batches.push((offset.unwrap(), data.as_array().unwrap().clone()));
    }
    let lines: Vec<&serde_json::Value> = batches.iter().flat_map(|(_, b)| b).collect();
    // Two pipes read side by side: `two` may come in any place.
    let mut texts: Vec<&str> = lines.iter().map(|d| d["text"].as_str().unwrap()).collect();
    texts.sort_unstable();
    assert_eq!(texts, ["one", "three", "two"]);
    let two = lines.iter().find(|d| d["text"] == "two").unwrap();
    assert_eq!(two["stream"], "err");
    std::fs::write(&gate, "").unwrap();
    let rest = follower.until(|event, _| event == "end").await;
    assert_eq!(texts_and_end(&rest), ["four", "five", "end: \"success\""]);
    assert!(run.wait().unwrap().success());

    // Left off after the first batch: the rest, once each, then the end.
    let path = format!("/api/runs/{id}/output");
    let mut again = Watcher::of(&daemon, &path, Some(&batches[0].0)).await;
    let seen = again.until(|event, _| event == "end").await;
    let mut expected: Vec<String> = batches[1..]
        .iter()
        .flat_map(|(_, b)| b)
        .map(|d| d["text"].as_str().unwrap().to_string())
        .collect();
    expected.extend(["four", "five", "end: \"success\""].map(String::from));
    assert_eq!(texts_and_end(&seen), expected);

    let card = DaemonInfo::read(&daemon.state_dir).unwrap();
    let client = overnight::exec::http::client_builder().build().unwrap();
    let missing = client
        .get(format!("http://{}/api/runs/999999/output", card.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    daemon.stop().await;
}

/// The texts of `lines` events, then `end: STATUS`.
fn texts_and_end(events: &[(String, serde_json::Value)]) -> Vec<String> {
    events
        .iter()
        .flat_map(|(e, d)| match e.as_str() {
            "lines" => d
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["text"].as_str().unwrap().to_string())
                .collect(),
            _ => vec![format!("{e}: {}", d["status"])],
        })
        .collect()
}

/// `overnight logs -f` while a daemon runs the job: every line, in order,
/// once, and it ends with the run.
#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_goes_through_the_daemons_stream() {
    let sb = Sandbox::new();
    let gate = sb.path().join("gate");
    let file = format!(
        "jobs:\n  slow:\n    command: 'for i in 1 2 3; do echo line $i; done; while [ ! -e {} ]; do sleep 0.05; done; echo line 4'\n",
        gate.display()
    );
    let daemon = TestDaemon::start_in(sb, &file, Arc::new(SystemClock)).await;
    let (mut run, id) = run_through(&daemon, "slow").await;
    let follower = daemon
        .sandbox
        .command(&["logs", "-f", &id.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&gate, "").unwrap();
    assert!(run.wait().unwrap().success());
    let out = tokio::task::spawn_blocking(move || follower.wait_with_output().unwrap())
        .await
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "line 1\nline 2\nline 3\nline 4\n", "{stderr}");
    assert!(!stderr.contains("stopped answering"), "{stderr}");
    daemon.stop().await;
}

/// `overnight run JOB` through the daemon, and the run's id once it is
/// recorded.
async fn run_through(daemon: &TestDaemon, job: &str) -> (std::process::Child, i64) {
    let run = daemon.sandbox.command(&["run", job]).spawn().unwrap();
    let id = crate::helper::wait_for(Duration::from_secs(30), "the run", || async {
        crate::helper::runs(&daemon.state_dir)
            .await
            .into_iter()
            .find(|r| r.job == job)
            .map(|r| r.id)
    })
    .await;
    (run, id)
}

/// `overnight status --watch` shows the table again when a run ends,
/// told by the daemon's stream.
#[tokio::test(flavor = "multi_thread")]
async fn status_watch_shows_a_run_as_it_ends() {
    use std::io::BufRead;
    let file = "jobs:\n  quick: {command: 'echo done'}\n";
    let daemon = TestDaemon::start_in(Sandbox::new(), file, Arc::new(SystemClock)).await;
    let mut watcher = daemon
        .sandbox
        .command(&["status", "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let shown = Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let shown = Arc::clone(&shown);
        let stdout = watcher.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let mut shown = shown.lock().unwrap();
                shown.push_str(&line);
                shown.push('\n');
            }
        })
    };
    let text_now = || shown.lock().unwrap().clone();
    crate::helper::wait_for(Duration::from_secs(30), "the first table", || {
        let now = text_now();
        async move { now.contains("quick").then_some(()) }
    })
    .await;
    let first = text_now();
    assert!(!first.contains("success"), "{first}");
    let out = daemon.sandbox.run(&["run", "quick"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let again = crate::helper::wait_for(Duration::from_secs(30), "the table again", || {
        let now = text_now();
        async move {
            let (_, after) = now.rsplit_once("---\n")?;
            after.contains("success").then(|| after.to_string())
        }
    })
    .await;
    let line = again.lines().find(|l| l.starts_with("quick")).unwrap();
    assert!(line.contains("success"), "{again}");
    crate::helper::kill9(watcher.id() as i32);
    let _ = watcher.wait();
    reader.join().unwrap();
    daemon.stop().await;
}
