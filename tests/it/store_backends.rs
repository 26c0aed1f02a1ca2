//! The store behind one interface: the same calls give the same answers
//! on SQLite and on PostgreSQL (a real server, a database of its own).

use std::path::Path;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use overnight::config::Job;
use overnight::flow::progress::FlowStatus;
use overnight::flow::{Known, StepState};
use overnight::report::{Status, Trigger};
use overnight::runner::{Outcome, Runner};
use overnight::store::{
    DeliveryStatus, FlowRecord, FlowSave, FlowState, HistoryQuery, NewRun, NotRun, Notification,
    Recorder, StepRuns, Store,
};

use crate::helper::postgres::TestDb;

#[tokio::test(flavor = "multi_thread")]
async fn the_store_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    exercise(store, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_on_postgres() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect_postgres(&db.url, dir.path()).await.unwrap();
    exercise(store, dir.path()).await;
}

fn job(name: &str, script: &str) -> Job {
    Job::adhoc(
        name.into(),
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    )
}

/// Every call the daemon and the commands make of a store, and what each
/// must answer.
async fn exercise(store: Store, state_dir: &Path) {
    // Real runs, recorded straight into the store.
    let runner = Runner::new(Recorder::from(store.clone()), state_dir.to_path_buf(), None);
    let ok = job("ok", "echo fine");
    let bad = job(
        "bad",
        "echo '::warning code=W1::slow'; printf '::summary::nul\\0byte, é\\n'; echo oops >&2; exit 3",
    );
    for job in [&ok, &bad, &ok] {
        let outcome = runner.run(job, Trigger::Manual, None).await.unwrap();
        assert!(matches!(outcome, Outcome::Ran(_)));
    }
    let ids =
        |runs: Vec<overnight::store::RunRecord>| runs.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .history(&HistoryQuery::latest(None, 10))
            .await
            .unwrap()),
        [3, 2, 1]
    );
    assert_eq!(
        ids(store
            .history(&HistoryQuery::latest(Some("ok"), 10))
            .await
            .unwrap()),
        [3, 1]
    );
    let failed = HistoryQuery {
        status: Some("failed".into()),
        limit: 10,
        ..HistoryQuery::default()
    };
    assert_eq!(ids(store.history(&failed).await.unwrap()), [2]);
    let page = HistoryQuery {
        before: Some(3),
        limit: 1,
        ..HistoryQuery::default()
    };
    assert_eq!(ids(store.history(&page).await.unwrap()), [2]);

    let run = store.run(2).await.unwrap().unwrap();
    assert_eq!(
        (run.job.as_str(), run.status, run.exit_code),
        ("bad", Status::Failed, Some(3))
    );
    assert_eq!(run.warning_count, 1);
    assert_eq!(
        run.summary.as_deref(),
        Some("nul\u{fffd}byte, é"),
        "a NUL does not stop the run's end being written"
    );
    let report = store.report(2).await.unwrap().unwrap();
    assert_eq!(report.log.last_stderr, ["oops"]);
    assert_eq!(report.warnings[0].code.as_deref(), Some("W1"));
    assert!(store.report(99).await.unwrap().is_none());

    let last: Vec<(String, i64)> = store
        .last_finished()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.job, r.id))
        .collect();
    assert_eq!(last, [("bad".to_string(), 2), ("ok".to_string(), 3)]);
    let successes = store.last_successes().await.unwrap();
    assert_eq!(successes.len(), 1);
    assert_eq!(successes[0].0, "ok");
    assert_eq!(
        store.previous_outcome("ok", 3).await.unwrap(),
        Some(Status::Success)
    );
    assert_eq!(store.previous_outcome("bad", 2).await.unwrap(), None);
    assert!(store.running().await.unwrap().is_empty());

    // Attempts: an earlier attempt kept beside the run's last.
    let mut first = report.clone();
    first.attempt = 1;
    first.summary = "first try".into();
    store.record_attempt(&first).await.unwrap();
    first.summary = "first try, again".into();
    store.record_attempt(&first).await.unwrap();
    let attempts = store.attempts(2).await.unwrap();
    assert_eq!(
        attempts,
        [(
            1,
            "failed".to_string(),
            Some("first try, again".to_string())
        )]
    );

    // Fires not run, and the fires handled.
    let due = Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap();
    let id = store.next_run_id().await.unwrap();
    assert_eq!(id, 4, "one sequence, past the runs");
    store
        .record_not_run(&NotRun {
            id,
            job: "nightly".into(),
            trigger: Trigger::Schedule,
            scheduled_at: Some(due),
            at: due,
            status: Status::Missed,
            why: "the daemon was down".into(),
            host: "a".into(),
            pid: 1,
        })
        .await
        .unwrap();
    assert_eq!(store.last_handled().await.unwrap()["nightly"], due);
    store
        .mark_handled(&["nightly"], due - Duration::days(1), false)
        .await
        .unwrap();
    assert_eq!(
        store.last_handled().await.unwrap()["nightly"],
        due,
        "never back"
    );
    store
        .mark_handled(&["nightly", "new"], due + Duration::days(1), true)
        .await
        .unwrap();
    let handled = store.last_handled().await.unwrap();
    assert_eq!(
        (handled["nightly"], handled["new"]),
        (due, due + Duration::days(1))
    );

    // Trigger deliveries.
    for (condition, status) in [
        ("failure", DeliveryStatus::Sent),
        ("failure", DeliveryStatus::Failed),
    ] {
        store
            .record_notification(&Notification {
                run_id: 2,
                job: "bad".into(),
                rule: "pager".into(),
                action: "webhook".into(),
                condition: condition.into(),
                status,
                detail: Some("HTTP 200".into()),
                at: overnight::store::time_text(Utc::now()),
            })
            .await
            .unwrap();
    }
    assert_eq!(store.notifications(2).await.unwrap().len(), 2);
    let hour_ago = Utc::now() - Duration::hours(1);
    assert_eq!(store.sent_since("pager", hour_ago).await.unwrap(), 1);

    // A run whose runner is gone is closed as lost, naming why.
    store
        .start_run(&NewRun {
            id: store.next_run_id().await.unwrap(),
            job: "orphan".into(),
            trigger: Trigger::Manual,
            scheduled_at: None,
            started_at: Utc::now(),
            host: "gone-host".into(),
            pid: 999_999_999,
            runner_started: None,
            locks: vec![overnight::lock::LockSpec {
                name: "db".into(),
                mode: overnight::lock::Mode::Exclusive,
            }],
            capture: state_dir.join("orphan.log"),
            flow_step: None,
            epoch: None,
        })
        .await
        .unwrap();
    let held = store.held_locks().await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].0.as_str(), held[0].3.as_str()), ("db", "orphan"));
    assert_eq!(store.abandoned("gone-host", true).await.unwrap().len(), 1);
    let closed = store.close_lost("gone-host", true).await.unwrap();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].status, Status::Lost);
    assert!(store.held_locks().await.unwrap().is_empty());

    // Job definitions mirrored.
    store
        .sync_definitions("h", &[Arc::new(ok.clone()), Arc::new(bad.clone())], &[])
        .await
        .unwrap();
    store
        .sync_definitions("h", &[Arc::new(ok.clone())], &[])
        .await
        .unwrap();
    let digests = store
        .definitions_of("h", &[Arc::new(ok.clone()), Arc::new(ok)], &[])
        .await
        .unwrap();
    assert_eq!(
        digests[0].hash, digests[1].hash,
        "one definition, one digest"
    );

    // Flow runs: started with their steps, moved, read back.
    let jobs_file = state_dir.join("flows.yaml");
    std::fs::write(
        &jobs_file,
        "jobs:\n  a: {command: 'true'}\n  b: {command: 'true'}\nflows:\n  nightly:\n    steps:\n      first: {job: a}\n      second: {job: b, after: first}\n",
    )
    .unwrap();
    let config = overnight::config::Config::load(&jobs_file).unwrap();
    let plan = (*config.flows[0].plan).clone();
    let flow_id = store.next_run_id().await.unwrap();
    let mut flow = FlowRecord {
        id: flow_id,
        flow: "nightly".into(),
        trigger: Trigger::Manual,
        scheduled_at: None,
        started_at: Utc::now(),
        finished_at: None,
        status: FlowStatus::Running,
        state: FlowState {
            progress: overnight::flow::Progress::new(plan.steps.len()),
            steps: vec![StepRuns::default(); plan.steps.len()],
            ..FlowState::default()
        },
        plan,
        host: "a".into(),
        driver: Some((std::process::id(), 1)),
    };
    store.insert_flow_run(&flow).await.unwrap();
    assert_eq!(store.open_flow_runs().await.unwrap().len(), 1);
    let read = store.flow_run(flow_id).await.unwrap().unwrap();
    assert_eq!(
        (read.status, read.state.steps.len()),
        (FlowStatus::Running, 2)
    );
    flow.state.progress.steps[0] = StepState::Ended(Known::Success);
    flow.state.steps[0].runs = vec![1];
    flow.status = FlowStatus::Success;
    flow.finished_at = Some(Utc::now());
    store
        .save_flow_run(&FlowSave::of(&flow, &[0]))
        .await
        .unwrap();
    let read = store.flow_run(flow_id).await.unwrap().unwrap();
    assert_eq!(read.status, FlowStatus::Success);
    assert_eq!(
        read.state.progress.steps[0],
        StepState::Ended(Known::Success)
    );
    assert_eq!(read.state.steps[0].runs, [1]);
    assert!(store.open_flow_runs().await.unwrap().is_empty());
    let history = store
        .flow_history(&HistoryQuery::latest(Some("nightly"), 5))
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    let (ended, held) = store.flow_gauges().await.unwrap();
    assert_eq!((ended.len(), held), (1, 0));
    assert_eq!(
        store
            .previous_flow_outcome("nightly", flow_id + 1)
            .await
            .unwrap(),
        Some(FlowStatus::Success)
    );

    // Pruning: nothing is older than a day yet; everything ended is
    // older than no time at all.
    let keep = |history| overnight::config::retention::Retention {
        captures: None,
        history,
    };
    let pruned = store
        .prune(&keep(Some(std::time::Duration::from_secs(86_400))))
        .await
        .unwrap();
    assert_eq!(pruned.runs, 0);
    let pruned = store
        .prune(&keep(Some(std::time::Duration::ZERO)))
        .await
        .unwrap();
    assert_eq!(
        pruned.runs, 5,
        "the three runs, the missed fire and the lost run"
    );
    assert!(store.notifications(2).await.unwrap().is_empty());
    store.close().await;
}
