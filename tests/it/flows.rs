//! Flows (DESIGN §8): checked at `check`, run by the daemon, steered by
//! an operator.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use overnight::flow::progress::FlowStatus;
use overnight::flow::{Known, StepState};
use overnight::schedule::clock::SystemClock;
use overnight::store::{FlowRecord, HistoryQuery, Store};

use crate::helper::{Sandbox, TestDaemon, text, wait_for};

/// The jobs of the legacy-sync flow, each a real command: `verify` checks
/// the row count `export` reported reached it, `load` fails while the
/// sandbox holds `fail-load`.
const LEGACY_JOBS: &str = "\
jobs:
  export-legacy: {command: 'echo exported; echo ::detail::rows=1204'}
  verify-counts: {command: 'test \"$OVERNIGHT_STEP\" = verify && grep -q 1204 \"$OVERNIGHT_FLOW_DETAILS\"'}
  load-new: {command: 'test ! -e fail-load', workdir: .}
  reconcile: {command: 'echo reconciled'}
  rollback-new: {command: 'echo rolled back'}
  publish: {command: 'echo published'}
";

const LEGACY_FLOW: &str = "\
flows:
  legacy-sync:
    concurrency: skip
    steps:
      export:    { job: export-legacy }
      verify:    { job: verify-counts, after: export }
      load:      { job: load-new, after: verify, critical: true }
      reconcile: { job: reconcile, after: \"success(load)\" }
      rollback:  { job: rollback-new, after: \"failed(load) or failed(verify)\" }
      approve:   { hold: \"Compare the counts in the report, then resume\",
                   after: \"done(reconcile)\" }
      publish:   { job: publish, after: approve }
";

#[test]
fn check_draws_each_flow_as_a_tree_with_its_conditions() {
    let sb = Sandbox::new();
    sb.write("overnight.yaml", &format!("{LEGACY_JOBS}{LEGACY_FLOW}"));
    let out = sb.run(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("6 job(s), 1 flow(s)"), "{stdout}");
    let tree: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("flow legacy-sync"))
        .collect();
    assert!(tree[0].contains("on demand"), "{stdout}");
    let expect = [
        ("  export ", "job export-legacy", ""),
        ("    verify ", "job verify-counts", "after ok(export)"),
        (
            "      load ",
            "job load-new",
            "after ok(verify)  (holds the flow if failed)",
        ),
        ("        reconcile ", "job reconcile", "after success(load)"),
        (
            "          approve ",
            "hold: Compare the counts",
            "after done(reconcile)",
        ),
        ("            publish ", "job publish", "after ok(approve)"),
        (
            "        rollback ",
            "job rollback-new",
            "after failed(load) or failed(verify)",
        ),
    ];
    assert_eq!(tree.len(), expect.len() + 1, "{stdout}");
    for (line, (name, does, after)) in tree[1..].iter().zip(expect) {
        assert!(line.starts_with(name), "{line:?} is not {name:?}");
        assert!(line.contains(does) && line.ends_with(after), "{line}");
    }
}

#[test]
fn check_reports_a_cycle_an_unknown_step_and_an_impossible_condition_at_once() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "\
jobs:
  a: {command: 'true'}
flows:
  f:
    steps:
      load:   { job: a, after: verify }
      verify: { job: a, after: load }
      report: { job: a, after: \"done(lod)\" }
      undo:   { job: a, after: \"success(load) and failed(load)\" }
",
    );
    assert_eq!(
        refused(&sb),
        [
            "overnight.yaml:6:7: steps of flow `f` wait for each other: load -> verify -> load; break the cycle",
            "overnight.yaml:8:32: step `report` of flow `f` names step `lod`, which is not in the flow; did you mean `load`?",
            "overnight.yaml:9:32: step `undo` of flow `f` can never start: `success(load) and failed(load)` is false however its steps end",
        ]
    );
}

#[test]
fn check_finds_steps_no_path_reaches() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "\
jobs:
  a: {command: 'true'}
flows:
  f:
    steps:
      first: { job: a }
      never: { job: a, after: \"skipped(first)\" }
      gate:  { hold: \"look\", after: first }
      odd:   { job: a, after: \"failed(gate)\" }
",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("overnight.yaml:7:31: step `never` of flow `f` can never start: no path makes `skipped(first)` true (`first` can only end success, warning or failed)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("step `odd` of flow `f` can never start: no path makes `failed(gate)` true (`gate` can only end success or skipped)"),
        "{stderr}"
    );
}

#[test]
fn check_refuses_trigger_rules_that_cannot_apply_to_what_they_watch() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "\
triggers:
  - name: late-flow
    flows: [f]
    on: [late]
    log: true
  - name: held-job
    jobs: [a]
    on: [held]
    log: true
  - name: ghost
    flows: [nope]
    on: [failed]
    start_flow: nope
  - name: loop
    on: [failed]
    start_flow: f
  - name: there
    flows: [f]
    on: [success]
    start_flow: g
  - name: and-back
    flows: [g]
    on: [success]
    start_flow: f
jobs:
  a: {command: 'true'}
  b: {command: 'true'}
flows:
  f:
    steps:
      one: { job: a }
  g:
    steps:
      two: { job: b }
",
    );
    assert_eq!(
        refused(&sb),
        [
            "overnight.yaml:2:5: trigger `late-flow` watches only flows, which never come to `late`; a flow run comes to success, warning, failed, aborted, held, recovered, missed, skipped",
            "overnight.yaml:6:5: trigger `held-job` watches only jobs, and `held` is a condition of flow runs; name the flows it watches with `flows:`",
            "overnight.yaml:10:5: trigger `ghost` names flow `nope`, which is not in the file",
            "overnight.yaml:10:5: trigger `ghost` starts flow `nope`, which is not in the file",
            "overnight.yaml:14:5: trigger `loop` starts flow `f`, and the starts go round (f -> f): each run would start the next; narrow what the rule watches with `jobs:`/`flows:`",
            "overnight.yaml:17:5: trigger `there` starts flow `g`, and the starts go round (f -> g -> f): each run would start the next; narrow what the rule watches with `jobs:`/`flows:`",
            "overnight.yaml:21:5: trigger `and-back` starts flow `f`, and the starts go round (g -> f -> g): each run would start the next; narrow what the rule watches with `jobs:`/`flows:`",
        ]
    );
}

/// A job's failure starts a flow (`start_flow:`) in the daemon; with no
/// daemon, the delivery fails and says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_rule_starts_a_flow_when_a_job_fails() {
    let rule = "\
triggers:
  - name: clean-up
    jobs: [nightly]
    on: [failed]
    start_flow: legacy-sync
";
    let nightly = "  nightly: {command: 'exit 3'}\n";
    let daemon = legacy_daemon_with(false, rule, nightly).await;
    let sb = &daemon.sandbox;
    let out = sb.run(&["run", "nightly"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let started = wait_for(Duration::from_secs(30), "the flow run", || async {
        let store = Store::open(&daemon.state_dir).await.unwrap();
        let runs = store
            .flow_history(&HistoryQuery::latest(Some("legacy-sync"), 10))
            .await
            .unwrap();
        store.close().await;
        runs.into_iter().next()
    })
    .await;
    assert_eq!(started.trigger.as_str(), "rule");
    let nightly_run = crate::helper::runs(&daemon.state_dir).await[0].id;
    let sent = delivered(&daemon.state_dir, nightly_run).await;
    assert_eq!(sent.action, "start_flow");
    assert_eq!(
        sent.detail.as_deref(),
        Some(format!("started flow run #{} of `legacy-sync`", started.id).as_str())
    );
    operate(sb, &["abort", &started.id.to_string()]);
    let state_dir = daemon.state_dir.clone();
    let sb = daemon.stop().await;

    // No daemon: `overnight run` has no flow to start them in.
    let out = sb.run(&["run", "nightly"]);
    assert_eq!(out.status.code(), Some(1));
    let runs = crate::helper::runs(&state_dir).await;
    let last = runs.iter().map(|r| r.id).max().unwrap();
    let sent = delivered(&state_dir, last).await;
    assert_eq!(sent.status.as_str(), "failed");
    assert!(
        sent.detail
            .as_deref()
            .unwrap()
            .contains("flows run in the daemon, and none is running"),
        "{sent:?}"
    );
}

/// `trigger test` on a rule that watches flows sends a sample held run of
/// the flow, and starts no flow for real.
#[test]
fn trigger_test_sends_a_held_flow_run_through_a_flow_rule() {
    let sb = Sandbox::new();
    let file = format!(
        "\
triggers:
  - name: on-hold
    flows: [legacy-sync]
    on: [held]
    run: [/bin/sh, -c, 'cat > \"$0/sample.json\"', '{dir}']
    start_flow: other
{LEGACY_JOBS}{LEGACY_FLOW}  other:
    steps:
      one: {{ job: publish }}
",
        dir = sb.path().display()
    );
    sb.write("overnight.yaml", &file);
    let out = sb.run(&["trigger", "test", "on-hold"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "on-hold via start_flow: not done: a test does not start flow `other` for real"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("on-hold via run: sent"), "{stdout}");
    let sample: serde_json::Value = serde_json::from_str(&sb.read("sample.json")).unwrap();
    assert_eq!(sample["flow"], "legacy-sync");
    assert_eq!(sample["status"], "held");
    assert_eq!(sample["steps"][0]["status"], "failed");
    // The state folder beside the jobs file.
    let flows = sb.path().join(".overnight/flows");
    assert!(
        flows.is_dir(),
        "the program's report file was in the state folder"
    );
    assert_eq!(
        std::fs::read_dir(flows).unwrap().count(),
        0,
        "and is not left behind"
    );
}

/// The one delivery about run `id`, once it is recorded.
async fn delivered(state_dir: &Path, id: i64) -> overnight::store::Notification {
    wait_for(Duration::from_secs(30), "the delivery", || async {
        let store = Store::open(state_dir).await.unwrap();
        let sent = store.notifications(id).await.unwrap();
        store.close().await;
        sent.into_iter().next()
    })
    .await
}

/// What `check` says about the sandbox's jobs file, which it refuses.
fn refused(sb: &Sandbox) -> Vec<String> {
    let out = sb.run(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    stderr.lines().map(str::to_string).collect()
}

/// A daemon on the legacy-sync flow; `load` fails while `fail-load` is in
/// the sandbox.
async fn legacy_daemon(load_fails: bool) -> TestDaemon {
    legacy_daemon_with(load_fails, "", "").await
}

/// The same, with more of the jobs file before the jobs and more jobs
/// (`SANDBOX` in either names the sandbox's folder).
async fn legacy_daemon_with(load_fails: bool, more: &str, jobs: &str) -> TestDaemon {
    let sb = Sandbox::new();
    if load_fails {
        sb.write("fail-load", "");
    }
    let legacy = LEGACY_JOBS.replacen("jobs:\n", &format!("jobs:\n{jobs}"), 1);
    let file = format!("{more}{legacy}{LEGACY_FLOW}")
        .replace("workdir: .", "workdir: SANDBOX")
        .replace("SANDBOX", &format!("'{}'", sb.path().display()));
    TestDaemon::start_in(sb, &file, Arc::new(SystemClock)).await
}

/// `overnight flow start legacy-sync`: the run's id.
fn start(sb: &Sandbox) -> i64 {
    let out = sb.run(&["flow", "start", "legacy-sync"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let id = stdout
        .split_once('#')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    id.unwrap_or_else(|| panic!("no run id in {stdout:?}"))
}

/// The flow run once `ready` says so.
async fn flow_run_when(
    state_dir: &Path,
    id: i64,
    what: &str,
    ready: impl Fn(&FlowRecord) -> bool,
) -> FlowRecord {
    wait_for(Duration::from_secs(30), what, || async {
        let store = Store::open(state_dir).await.unwrap();
        let run = store.flow_run(id).await.unwrap();
        store.close().await;
        run.filter(|r| ready(r))
    })
    .await
}

fn state<'r>(run: &'r FlowRecord, step: &str) -> &'r StepState {
    let i = run.plan.step(step).unwrap();
    &run.state.progress.steps[i]
}

fn skipped_because(run: &FlowRecord, step: &str) -> String {
    match state(run, step) {
        StepState::Skipped(why) => why.clone(),
        other => panic!("`{step}` is {other:?}, not skipped"),
    }
}

/// `overnight flow ACTION RUN [STEP]`, which must go through.
fn operate(sb: &Sandbox, args: &[&str]) -> String {
    let mut all = vec!["flow"];
    all.extend_from_slice(args);
    let out = sb.run(&all);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}{stderr}");
    stdout
}

fn held(run: &FlowRecord) -> bool {
    run.status == FlowStatus::Held
}

fn over(run: &FlowRecord) -> bool {
    run.finished_at.is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn all_steps_succeed_then_approve_holds_and_resume_publishes() {
    let daemon = legacy_daemon(false).await;
    let sb = &daemon.sandbox;
    let id = start(sb);
    let run = flow_run_when(&daemon.state_dir, id, "the hold at approve", held).await;
    assert_eq!(*state(&run, "approve"), StepState::Holding);
    assert_eq!(
        *state(&run, "verify"),
        StepState::Ended(Known::Success),
        "the details reached verify"
    );
    assert_eq!(
        skipped_because(&run, "rollback"),
        "failed(load) is false: load ended success; failed(verify) is false: verify ended success"
    );
    assert_eq!(*state(&run, "publish"), StepState::Waiting);
    let shown = operate(sb, &["status", &id.to_string()]);
    assert!(
        shown.contains("HOLDING") && shown.contains("Compare the counts"),
        "{shown}"
    );

    let resumed = operate(sb, &["resume", &id.to_string()]);
    assert!(resumed.contains(&format!("flow run #{id}")), "{resumed}");
    let run = flow_run_when(&daemon.state_dir, id, "the end", over).await;
    assert_eq!(run.status, FlowStatus::Success);
    assert_eq!(*state(&run, "publish"), StepState::Ended(Known::Success));
    assert_eq!(run.state.actions[0].action.as_str(), "resume");
    let approve = &run.state.steps[run.plan.step("approve").unwrap()];
    assert!(
        approve.ended_at.is_some(),
        "how long the hold lasted is kept"
    );
    // Every job step ran once, as an ordinary run in the history.
    let runs = crate::helper::runs(&daemon.state_dir).await;
    let jobs: Vec<&str> = runs.iter().map(|r| r.job.as_str()).collect();
    assert_eq!(
        jobs,
        [
            "export-legacy",
            "verify-counts",
            "load-new",
            "reconcile",
            "publish"
        ]
    );
    assert!(runs.iter().all(|r| r.trigger == "flow"));
    // A resume now makes no sense, and says why.
    let out = sb.run(&["flow", "resume", &id.to_string()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("has ended (success)"), "{stderr}");
    let out = sb.run(&["flow", "resume", "999999"]);
    assert!(
        text(&out).1.contains("there is no flow run #999999"),
        "{:?}",
        text(&out)
    );
    daemon.stop().await;
}

/// A rule on the legacy-sync flow's holds and warnings: a program keeps
/// each report it is given, and an email goes to the operators.
fn flow_rules(smtp_port: u16) -> String {
    format!(
        "\
smtp: {{host: 127.0.0.1, port: {smtp_port}, tls: none, from: overnight@test.example}}
triggers:
  - name: flow-held
    flows: [legacy-sync]
    on: [held, warning]
    run: [/bin/sh, -c, 'cat > \"$0/$OVERNIGHT_CONDITION-$OVERNIGHT_FLOW_RUN_ID.json\"', SANDBOX]
    email: {{to: [ops@example.com]}}
"
    )
}

/// The report a trigger's program was given, once it is there.
async fn kept_report(sb: &Sandbox, name: &str) -> serde_json::Value {
    let path = sb.path().join(name);
    wait_for(Duration::from_secs(30), name, || async {
        let text = std::fs::read_to_string(&path).ok()?;
        serde_json::from_str(&text).ok()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_critical_step_holds_and_resume_takes_the_rollback_route() {
    let sink = crate::helper::smtp::SmtpSink::start().await;
    let daemon = legacy_daemon_with(true, &flow_rules(sink.addr.port()), "").await;
    let sb = &daemon.sandbox;
    let id = start(sb);
    let run = flow_run_when(&daemon.state_dir, id, "the hold at load", held).await;
    assert_eq!(*state(&run, "load"), StepState::Ended(Known::Failed));
    // The `held` trigger: a record of the held run, and a message saying
    // where it holds, why, and how to go on.
    let record = kept_report(sb, &format!("held-{id}.json")).await;
    assert_eq!(record["flow"], "legacy-sync");
    assert_eq!(record["flow_run_id"], id);
    assert_eq!(record["status"], "held");
    assert_eq!(record["steps"][2]["step"], "load");
    assert_eq!(record["steps"][2]["status"], "failed");
    let mail = wait_for(Duration::from_secs(30), "the held message", || async {
        sink.messages().into_iter().next()
    })
    .await;
    let subject = mail.header("Subject").unwrap();
    assert!(
        subject.contains("flow legacy-sync held") && subject.contains("step `load` ended failed"),
        "{subject}"
    );
    let body = crate::triggers::plain_text(&mail.data);
    for said in [
        "step `load` ended failed (run #",
        "it is a stop point",
        &format!("overnight flow resume {id}"),
        &format!("overnight flow retry {id} load "),
    ] {
        assert!(body.contains(said), "`{said}` in {body}");
    }
    assert!(body.contains("<- held here: it ended failed"), "{body}");
    assert_eq!(
        run.state.progress.stopped_at,
        [run.plan.step("load").unwrap()]
    );
    assert_eq!(
        *state(&run, "rollback"),
        StepState::Waiting,
        "nothing decided while held"
    );
    let refused = sb.run(&["flow", "retry", &id.to_string(), "export"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused)
            .1
            .contains("`export` ended success: there is nothing to retry")
    );

    operate(sb, &["resume", &id.to_string()]);
    let run = flow_run_when(&daemon.state_dir, id, "the end", over).await;
    assert_eq!(*state(&run, "rollback"), StepState::Ended(Known::Success));
    assert_eq!(
        skipped_because(&run, "reconcile"),
        "success(load) is false: load ended failed"
    );
    assert_eq!(
        skipped_because(&run, "approve"),
        "done(reconcile) is false: reconcile was skipped"
    );
    assert_eq!(
        skipped_because(&run, "publish"),
        "ok(approve) is false: approve was skipped"
    );
    assert_eq!(
        run.status,
        FlowStatus::Warning,
        "a failure handled by its route"
    );
    let ended = kept_report(sb, &format!("warning-{id}.json")).await;
    assert_eq!(ended["status"], "warning");
    assert_eq!(ended["actions"][0]["action"], "resume");
    let sent = wait_for(Duration::from_secs(30), "four deliveries", || async {
        let store = Store::open(&daemon.state_dir).await.unwrap();
        let sent = store.notifications(id).await.unwrap();
        store.close().await;
        (sent.len() == 4).then_some(sent)
    })
    .await;
    let kinds: Vec<(&str, &str, &str)> = sent
        .iter()
        .map(|n| (n.condition.as_str(), n.action.as_str(), n.status.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("held", "run", "sent"),
            ("held", "email", "sent"),
            ("warning", "run", "sent"),
            ("warning", "email", "sent")
        ]
    );
    let shown = operate(sb, &["status", &id.to_string()]);
    assert!(
        shown.contains("trigger flow-held (email, held): sent"),
        "{shown}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_of_the_failed_step_takes_the_success_path() {
    let daemon = legacy_daemon(true).await;
    let sb = &daemon.sandbox;
    let id = start(sb);
    flow_run_when(&daemon.state_dir, id, "the hold at load", held).await;
    std::fs::remove_file(sb.path().join("fail-load")).unwrap();
    operate(sb, &["retry", &id.to_string(), "load"]);
    let run = flow_run_when(&daemon.state_dir, id, "the hold at approve", |r| {
        held(r) && *state(r, "approve") == StepState::Holding
    })
    .await;
    assert_eq!(*state(&run, "load"), StepState::Ended(Known::Success));
    assert_eq!(
        run.state.steps[run.plan.step("load").unwrap()].runs.len(),
        2
    );
    operate(sb, &["resume", &id.to_string()]);
    let run = flow_run_when(&daemon.state_dir, id, "the end", over).await;
    assert_eq!(run.status, FlowStatus::Success);
    assert!(skipped_because(&run, "rollback").contains("load ended success"));
    let actions: Vec<(&str, Option<&str>)> = run
        .state
        .actions
        .iter()
        .map(|a| (a.action.as_str(), a.step.as_deref()))
        .collect();
    assert_eq!(actions, [("retry", Some("load")), ("resume", None)]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn abort_ends_the_run_and_nothing_else_starts() {
    let daemon = legacy_daemon(true).await;
    let sb = &daemon.sandbox;
    let id = start(sb);
    flow_run_when(&daemon.state_dir, id, "the hold at load", held).await;
    operate(sb, &["abort", &id.to_string()]);
    let run = flow_run_when(&daemon.state_dir, id, "the end", over).await;
    assert_eq!(run.status, FlowStatus::Aborted);
    for step in ["reconcile", "rollback", "approve", "publish"] {
        assert!(
            skipped_because(&run, step).starts_with("the flow run was aborted by "),
            "{step}"
        );
    }
    let runs = crate::helper::runs(&daemon.state_dir).await;
    assert_eq!(runs.len(), 3, "export, verify and load ran; nothing after");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn skip_counts_a_failed_step_as_success_and_says_who_waived_it() {
    let daemon = legacy_daemon(true).await;
    let sb = &daemon.sandbox;
    let id = start(sb);
    flow_run_when(&daemon.state_dir, id, "the hold at load", held).await;
    let shown = operate(sb, &["skip", &id.to_string(), "load"]);
    let load = shown
        .lines()
        .find(|l| l.trim_start().starts_with("load"))
        .unwrap();
    assert!(
        load.contains("waived") && load.contains("(skipped by "),
        "{shown}"
    );
    let run = flow_run_when(&daemon.state_dir, id, "the hold at approve", |r| {
        held(r) && *state(r, "approve") == StepState::Holding
    })
    .await;
    assert_eq!(*state(&run, "reconcile"), StepState::Ended(Known::Success));
    assert!(skipped_because(&run, "rollback").contains("load ended success"));
    let refused = sb.run(&["flow", "skip", &id.to_string(), "export"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused).1.contains("`export` ended success"),
        "{:?}",
        text(&refused)
    );
    daemon.stop().await;
}

/// Four starts at once of a flow with `concurrency: skip`, from four
/// processes: one run, and the others told which run goes.
#[tokio::test(flavor = "multi_thread")]
async fn starts_at_once_make_one_run_under_concurrency_skip() {
    let daemon = legacy_daemon(false).await;
    let sb = &daemon.sandbox;
    let children: Vec<_> = (0..4)
        .map(|_| {
            sb.command(&["flow", "start", "legacy-sync"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let started = outs.iter().filter(|o| o.status.success()).count();
    let busy = outs
        .iter()
        .filter(|o| text(o).1.contains("is not over yet"))
        .count();
    assert_eq!((started, busy), (1, 3), "{outs:?}");
    daemon.stop().await;
}
