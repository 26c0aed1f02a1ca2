//! Flows with a real daemon process: killed with -9 (the run is taken up
//! from the store by the next daemon, no step that ran is run again, and
//! the flow ends by its rules on what the store says of each step), on a
//! schedule, and through a reload.

use std::process::Child;
use std::time::Duration;

use overnight::flow::progress::FlowStatus;
use overnight::flow::{Known, StepState};
use overnight::store::{FlowRecord, HistoryQuery, Store};

use crate::helper::{Sandbox, runs, text, wait_for};

/// legacy-sync with `load` waiting for the file `gate` (so the daemon can
/// be killed while it runs).
fn jobs_file(sb: &Sandbox) -> String {
    let gate = sb.path().join("gate");
    format!(
        "\
listen: 127.0.0.1:0
jobs:
  export-legacy: {{command: 'echo exported'}}
  verify-counts: {{command: 'echo verified'}}
  load-new: {{command: 'echo loading; while [ ! -e {gate} ]; do sleep 0.05; done'}}
  reconcile: {{command: 'echo reconciled'}}
  rollback-new: {{command: 'echo rolled back'}}
  publish: {{command: 'echo published'}}
flows:
  legacy-sync:
    steps:
      export:    {{ job: export-legacy }}
      verify:    {{ job: verify-counts, after: export }}
      load:      {{ job: load-new, after: verify, critical: true }}
      reconcile: {{ job: reconcile, after: \"success(load)\" }}
      rollback:  {{ job: rollback-new, after: \"failed(load) or failed(verify)\" }}
      approve:   {{ hold: \"Compare the counts, then resume\", after: \"done(reconcile)\" }}
      publish:   {{ job: publish, after: approve }}
",
        gate = gate.display()
    )
}

fn kill9(child: &mut Child) {
    crate::helper::kill9(child.id() as i32);
    child.wait().unwrap();
}

/// Starts the flow through the daemon once its API answers.
async fn start(sb: &Sandbox) -> i64 {
    wait_for(Duration::from_secs(30), "the flow to start", || {
        let out = sb.run(&["flow", "start", "legacy-sync"]);
        let (stdout, _) = text(&out);
        let id = stdout
            .split_once('#')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse::<i64>().ok());
        async move { id }
    })
    .await
}

async fn flow_run_when(
    sb: &Sandbox,
    id: i64,
    what: &str,
    ready: impl Fn(&FlowRecord) -> bool,
) -> FlowRecord {
    let state = sb.path().join(".overnight");
    wait_for(Duration::from_secs(30), what, || async {
        let store = Store::open(&state).await.unwrap();
        let run = store.flow_run(id).await.unwrap();
        store.close().await;
        run.filter(|r| ready(r))
    })
    .await
}

fn state<'r>(run: &'r FlowRecord, step: &str) -> &'r StepState {
    &run.state.progress.steps[run.plan.step(step).unwrap()]
}

/// Each job's runs, by job name, in the history.
async fn runs_per_job(sb: &Sandbox) -> std::collections::BTreeMap<String, usize> {
    let mut count = std::collections::BTreeMap::new();
    for run in runs(&sb.path().join(".overnight")).await {
        *count.entry(run.job).or_insert(0) += 1;
    }
    count
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_while_a_step_runs_leaves_a_flow_the_next_one_finishes() {
    let sb = Sandbox::new();
    sb.write("overnight.yaml", &jobs_file(&sb));
    let mut first = sb.spawn_daemon();
    let id = start(&sb).await;
    let run = flow_run_when(&sb, id, "load running", |r| {
        *state(r, "load") == StepState::Running
    })
    .await;
    assert_eq!(*state(&run, "verify"), StepState::Ended(Known::Success));
    // The load's run is recorded with its process before the kill.
    wait_for(
        Duration::from_secs(30),
        "load's process recorded",
        || async {
            runs(&sb.path().join(".overnight"))
                .await
                .into_iter()
                .find(|r| r.job == "load-new" && r.job_pid.is_some())
        },
    )
    .await;
    kill9(&mut first);

    let mut second = sb.spawn_daemon();
    sb.daemon_said("outlived the daemon that started it").await;
    // The load outlived its daemon; it ends now, its exit unknown: the
    // step failed, the critical stop holds the flow.
    std::fs::write(sb.path().join("gate"), "").unwrap();
    let run = flow_run_when(&sb, id, "the hold at load", |r| {
        r.status == FlowStatus::Held
    })
    .await;
    assert_eq!(*state(&run, "load"), StepState::Ended(Known::Failed));
    let ran = runs_per_job(&sb).await;
    assert!(ran.values().all(|&n| n == 1), "a step ran twice: {ran:?}");
    assert_eq!(ran.len(), 3, "export, verify, load: {ran:?}");
    let history = runs(&sb.path().join(".overnight")).await;
    let load = history.iter().find(|r| r.job == "load-new").unwrap();
    assert_eq!(load.status, "orphaned");

    // From here it goes as a held failure goes: the rollback route.
    let out = sb.run(&["flow", "resume", &id.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let run = flow_run_when(&sb, id, "the end", |r| r.finished_at.is_some()).await;
    assert_eq!(run.status, FlowStatus::Warning);
    assert_eq!(*state(&run, "rollback"), StepState::Ended(Known::Success));
    let ran = runs_per_job(&sb).await;
    assert!(ran.values().all(|&n| n == 1), "a step ran twice: {ran:?}");
    kill9(&mut second);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_flow_survives_a_killed_daemon_and_resumes_where_it_stood() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("gate"), "").unwrap();
    sb.write("overnight.yaml", &jobs_file(&sb));
    let mut first = sb.spawn_daemon();
    let id = start(&sb).await;
    flow_run_when(&sb, id, "the hold at approve", |r| {
        *state(r, "approve") == StepState::Holding
    })
    .await;
    kill9(&mut first);
    let mut second = sb.spawn_daemon();
    sb.daemon_said("taken up again").await;
    let out = sb.run(&["flow", "resume", &id.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let run = flow_run_when(&sb, id, "the end", |r| r.finished_at.is_some()).await;
    assert_eq!(run.status, FlowStatus::Success);
    let ran = runs_per_job(&sb).await;
    assert_eq!(ran.len(), 5, "{ran:?}");
    assert!(ran.values().all(|&n| n == 1), "a step ran twice: {ran:?}");
    kill9(&mut second);
}

/// The flow runs of a state directory, newest first, the journal folded in.
async fn flow_runs(sb: &Sandbox) -> Vec<FlowRecord> {
    let store = Store::open(&sb.path().join(".overnight")).await.unwrap();
    let runs = store
        .flow_history(&HistoryQuery::latest(None, 100))
        .await
        .unwrap();
    store.close().await;
    runs
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_flow_fires_and_a_reload_leaves_a_going_run_on_its_plan() {
    let sb = Sandbox::new();
    let file = |last_step: &str, last_job: &str| {
        format!(
            "\
listen: 127.0.0.1:0
jobs:
  ja: {{command: 'true'}}
  jb: {{command: 'true'}}
  jc: {{command: 'true'}}
flows:
  tick:
    schedule: '* * * * * *'
    steps:
      one: {{ job: ja }}
  gated:
    steps:
      first: {{ job: ja }}
      gate:  {{ hold: \"look first\", after: first }}
      {last_step}: {{ job: {last_job}, after: gate }}
"
        )
    };
    sb.write("overnight.yaml", &file("second", "jb"));
    let mut daemon = sb.spawn_daemon();
    wait_for(
        Duration::from_secs(30),
        "two scheduled flow runs",
        || async {
            let runs = flow_runs(&sb).await;
            let scheduled = runs
                .iter()
                .filter(|r| {
                    r.flow == "tick"
                        && r.trigger.as_str() == "schedule"
                        && r.status == FlowStatus::Success
                })
                .count();
            (scheduled >= 2).then_some(())
        },
    )
    .await;

    let out = sb.run(&["flow", "start", "gated"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let id = flow_runs(&sb)
        .await
        .into_iter()
        .find(|r| r.flow == "gated")
        .unwrap()
        .id;
    flow_run_when(&sb, id, "the hold", |r| r.status == FlowStatus::Held).await;
    sb.write("overnight.yaml", &file("third", "jc"));
    // SAFETY: sends a signal; no memory is involved.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGHUP) };
    sb.daemon_said("reloaded").await;
    let out = sb.run(&["flow", "resume", &id.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let run = flow_run_when(&sb, id, "the end", |r| r.finished_at.is_some()).await;
    assert_eq!(run.status, FlowStatus::Success);
    assert!(run.plan.step("second").is_some() && run.plan.step("third").is_none());
    let ran = runs_per_job(&sb).await;
    assert_eq!(
        ran.get("jb"),
        Some(&1),
        "the step of the plan it started with: {ran:?}"
    );
    assert_eq!(ran.get("jc"), None, "{ran:?}");
    kill9(&mut daemon);
}

/// A step whose job a reload took out of the file fails, with a run in
/// the history that says why (the run the step was given is not left
/// without a row).
#[tokio::test(flavor = "multi_thread")]
async fn a_step_whose_job_is_gone_fails_with_a_recorded_run() {
    let sb = Sandbox::new();
    let file = |last_job: &str, more: &str| {
        format!(
            "\
listen: 127.0.0.1:0
jobs:
  ja: {{command: 'true'}}
{more}flows:
  gated:
    steps:
      first: {{ job: ja }}
      gate:  {{ hold: \"look first\", after: first }}
      last:  {{ job: {last_job}, after: gate }}
"
        )
    };
    sb.write("overnight.yaml", &file("jd", "  jd: {command: 'true'}\n"));
    let mut daemon = sb.spawn_daemon();
    let out = wait_for(Duration::from_secs(30), "the daemon's API", || async {
        let out = sb.run(&["flow", "start", "gated"]);
        out.status.success().then_some(out)
    })
    .await;
    let id: i64 = text(&out)
        .0
        .split('#')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    flow_run_when(&sb, id, "the hold", |r| r.status == FlowStatus::Held).await;
    sb.write("overnight.yaml", &file("ja", ""));
    // SAFETY: sends a signal; no memory is involved.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGHUP) };
    sb.daemon_said("reloaded").await;
    let out = sb.run(&["flow", "resume", &id.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let run = flow_run_when(&sb, id, "the end", |r| r.finished_at.is_some()).await;
    assert_eq!(run.status, FlowStatus::Failed);
    assert_eq!(*state(&run, "last"), StepState::Ended(Known::Failed));
    let given = run.state.steps[run.plan.step("last").unwrap()].runs[0];
    let recorded = wait_for(Duration::from_secs(30), "the step's run", || async {
        runs(&sb.path().join(".overnight"))
            .await
            .into_iter()
            .find(|r| r.id == given)
    })
    .await;
    assert_eq!(
        (recorded.job.as_str(), recorded.status.as_str()),
        ("jd", "failed")
    );
    assert!(
        recorded
            .summary
            .as_deref()
            .unwrap_or_default()
            .contains("job `jd` is no longer in the jobs file"),
        "{recorded:?}"
    );
    kill9(&mut daemon);
}

/// `overnight flow ACTION RUN [STEP]` as `alice`.
fn as_alice(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    let mut all = vec!["flow"];
    all.extend_from_slice(args);
    sb.command(&all).env("USER", "alice").output().unwrap()
}

/// With no daemon running, operators' commands are applied to the store,
/// recorded with who and when, and the next daemon goes on from there; a
/// command that ends the run closes it, with its triggers.
#[tokio::test(flavor = "multi_thread")]
async fn with_no_daemon_operators_steer_the_run_in_the_store() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("gate"), "").unwrap();
    let rule = format!(
        "\
triggers:
  - name: kept
    flows: [legacy-sync]
    on: [aborted]
    run: [/bin/sh, -c, 'cat > \"$0/$OVERNIGHT_CONDITION-$OVERNIGHT_FLOW_RUN_ID.json\"', '{}']
",
        sb.path().display()
    );
    sb.write("overnight.yaml", &format!("{rule}{}", jobs_file(&sb)));
    let mut first = sb.spawn_daemon();
    let id = start(&sb).await;
    flow_run_when(&sb, id, "the hold at approve", |r| {
        *state(r, "approve") == StepState::Holding
    })
    .await;
    kill9(&mut first);

    let id_text = id.to_string();
    let refused = as_alice(&sb, &["hold", &id_text]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused).1.contains("held already"),
        "{:?}",
        text(&refused)
    );
    let out = as_alice(&sb, &["skip", &id_text, "approve"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("no daemon is running: the run goes on from here"),
        "{stdout}"
    );
    assert!(
        stderr.contains("skipped `approve` (counted as success) by alice (no daemon was running)"),
        "{stderr}"
    );
    let run = flow_run_when(&sb, id, "the skip recorded", |r| {
        !r.state.actions.is_empty()
    })
    .await;
    assert_eq!(run.state.actions[0].who, "alice");
    assert_eq!(run.state.actions[0].action.as_str(), "skip");
    assert_eq!(*state(&run, "approve"), StepState::Ended(Known::Success));
    assert_eq!(
        *state(&run, "publish"),
        StepState::Waiting,
        "nothing starts without a daemon"
    );

    let mut second = sb.spawn_daemon();
    let run = flow_run_when(&sb, id, "the end", |r| r.finished_at.is_some()).await;
    assert_eq!(run.status, FlowStatus::Success);
    let ran = runs_per_job(&sb).await;
    assert_eq!(ran.get("publish"), Some(&1), "{ran:?}");

    // Aborted with no daemon: nothing runs, so the run ends there.
    let id = start(&sb).await;
    flow_run_when(&sb, id, "the hold at approve", |r| {
        *state(r, "approve") == StepState::Holding
    })
    .await;
    kill9(&mut second);
    let out = as_alice(&sb, &["abort", &id.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let run = flow_run_when(&sb, id, "the end", |r| r.finished_at.is_some()).await;
    assert_eq!(run.status, FlowStatus::Aborted);
    assert_eq!(
        *state(&run, "publish"),
        StepState::Skipped("the flow run was aborted by alice".into())
    );
    let kept = sb.read(&format!("aborted-{id}.json"));
    assert!(kept.contains("\"status\":\"aborted\""), "{kept}");
    let again = as_alice(&sb, &["resume", &id.to_string()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again).1.contains("has ended (aborted)"),
        "{:?}",
        text(&again)
    );
}
