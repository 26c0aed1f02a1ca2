//! Schedules end to end: catch-up after downtime on an injected clock, and
//! the scheduler's fires against what `overnight next` prints.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use overnight::schedule::Schedule;
use overnight::schedule::clock::{Clock, ShiftedClock};
use overnight::schedule::scheduler::{Scheduler, Timing};
use overnight::zone::Zone;

use crate::helper::{Sandbox, TestDaemon, runs, text, wait_for_runs};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn nightly(catch_up: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\ntimezone: UTC\njobs:\n  nightly:\n    command: echo ran for $OVERNIGHT_SCHEDULED_AT\n    schedule: '0 2 * * *'\n    catch_up: {catch_up}\n"
    )
}

/// Runs a daemon at 03:00 on 1 March, stops it, and starts it again at
/// 03:00 on 4 March: the fires of 2, 3 and 4 March at 02:00 were missed.
async fn down_across_three_fires(catch_up: &str) -> Vec<overnight::store::RunRecord> {
    let clock = |t: &str| -> Arc<dyn Clock> { Arc::new(ShiftedClock::starting_at(at(t))) };
    let first = TestDaemon::start_in(
        Sandbox::new(),
        &nightly(catch_up),
        clock("2026-03-01T03:00:00Z"),
    )
    .await;
    assert!(runs(&first.state_dir).await.is_empty());
    let sandbox = first.stop().await;
    let second =
        TestDaemon::start_in(sandbox, &nightly(catch_up), clock("2026-03-04T03:00:00Z")).await;
    let state = second.state_dir.clone();
    let all = wait_for_runs(&state, "the missed fires dealt with", |runs| {
        let missed = runs.iter().any(|r| r.status == "missed");
        let settled = runs.iter().all(|r| r.status != "running");
        let ran_if_asked = catch_up == "none" || runs.len() == 2;
        (missed && settled && ran_if_asked).then_some(runs)
    })
    .await;
    second.stop().await;
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn catch_up_last_runs_the_latest_missed_fire_once() {
    let all = down_across_three_fires("last").await;
    let missed: Vec<_> = all.iter().filter(|r| r.status == "missed").collect();
    let ran: Vec<_> = all.iter().filter(|r| r.status == "success").collect();
    assert_eq!(missed.len(), 1, "one record for the stretch: {all:#?}");
    assert_eq!(ran.len(), 1, "{all:#?}");
    assert_eq!(ran[0].trigger, "catch-up");
    assert_eq!(
        ran[0].scheduled_at.as_deref(),
        Some("2026-03-04T02:00:00.000000Z")
    );
    assert_eq!(
        missed[0].scheduled_at.as_deref(),
        Some("2026-03-02T02:00:00.000000Z"),
        "the first missed fire"
    );
    assert_eq!(
        missed[0].summary.as_deref(),
        Some(
            "missed 2 fires, 2026-03-02 02:00:00 +00:00 to 2026-03-03 02:00:00 +00:00: the daemon was not running then (catch_up: last runs only the latest)"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn catch_up_none_records_one_missed_run_and_runs_nothing() {
    let all = down_across_three_fires("none").await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].status, "missed");
    assert!(
        all[0].summary.as_deref().unwrap().starts_with(
            "missed 3 fires, 2026-03-02 02:00:00 +00:00 to 2026-03-04 02:00:00 +00:00"
        ),
        "{all:#?}"
    );
}

/// A weekend of a five-minute job down is one `missed` row, one WARN
/// status record, one trigger delivery — not 576 of each.
#[tokio::test(flavor = "multi_thread")]
async fn a_weekend_of_downtime_is_one_missed_record() {
    let jobs = |sb: &Sandbox| {
        format!(
            "listen: 127.0.0.1:0\ntimezone: UTC\njobs:\n  poll:\n    command: \"true\"\n    schedule: '*/5 * * * *'\n    catch_up: none\n    triggers:\n      - on: [missed]\n        run: [sh, -c, 'echo \"$OVERNIGHT_RUN_ID\" >> {}']\n",
            sb.path().join("deliveries").display()
        )
    };
    let clock = |t: &str| -> Arc<dyn Clock> { Arc::new(ShiftedClock::starting_at(at(t))) };
    let sb = Sandbox::new();
    let file = jobs(&sb);
    let first = TestDaemon::start_in(sb, &file, clock("2026-03-06T18:00:30Z")).await;
    let sb = first.stop().await;
    let second = TestDaemon::start_in(sb, &file, clock("2026-03-09T06:00:30Z")).await;
    let state = second.state_dir.clone();
    let all = wait_for_runs(&state, "the missed record", |runs| {
        (!runs.is_empty()).then_some(runs)
    })
    .await;
    let sb = second.stop().await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(
        all[0].summary.as_deref().unwrap().starts_with(
            "missed 720 fires, 2026-03-06 18:05:00 +00:00 to 2026-03-09 06:00:00 +00:00"
        ),
        "{all:#?}"
    );
    let deliveries = delivered(&sb).await;
    assert_eq!(deliveries.lines().count(), 1, "{deliveries}");

    // `history` shows a missed run at the time it was due, in the job's
    // zone; `report` says it never started.
    let history = sb.run(&["history"]);
    let (table, _) = text(&history);
    let line = table.lines().nth(1).unwrap_or_default();
    assert!(
        line.contains("missed  schedule  2026-03-06 18:05:00 +00:00"),
        "{table}"
    );
    let report = sb.run(&["report", &all[0].id.to_string()]);
    assert_eq!(report.status.code(), Some(0), "{:?}", text(&report));
    assert!(
        text(&report).0.starts_with(&format!(
            "poll #{}: missed, due 2026-03-06 18:05:00 +00:00 — it never started",
            all[0].id
        )),
        "{:?}",
        text(&report)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_without_downtime_misses_nothing() {
    let clock: Arc<dyn Clock> = Arc::new(ShiftedClock::starting_at(at("2026-03-01T03:00:00Z")));
    let first = TestDaemon::start_in(Sandbox::new(), &nightly("all"), clock.clone()).await;
    let sandbox = first.stop().await;
    let second = TestDaemon::start_in(sandbox, &nightly("all"), clock).await;
    let state = second.state_dir.clone();
    second.stop().await;
    assert!(runs(&state).await.is_empty());
}

/// A small deterministic generator (xorshift), so failures replay.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n)) as u32
    }

    fn field(&mut self, min: u32, max: u32) -> String {
        let span = max - min + 1;
        let a = min + self.below(span);
        let b = a + self.below(max - a + 1);
        match self.below(7) {
            0 | 1 => "*".into(),
            2 => format!("*/{}", 1 + self.below(span.min(12))),
            3 => a.to_string(),
            4 => format!("{a}-{b}"),
            5 => format!("{a},{b}"),
            _ => format!("{a}-{b}/{}", 1 + self.below(4)),
        }
    }

    fn expression(&mut self) -> String {
        let mut fields = vec![
            self.field(0, 59),
            self.field(0, 23),
            self.field(1, 28),
            self.field(1, 12),
            self.field(0, 6),
        ];
        if self.below(3) == 0 {
            fields.insert(0, self.field(0, 59));
        }
        fields.join(" ")
    }
}

/// For many random expressions and zones, the scheduler (sleeping on
/// tokio's paused clock) fires at exactly the instants `overnight next`
/// prints.
#[tokio::test(start_paused = true)]
async fn the_scheduler_fires_exactly_when_next_says() {
    const FIRES: usize = 12;
    let zones = [
        "UTC",
        "Europe/London",
        "America/New_York",
        "Australia/Lord_Howe",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Just before London's 2026 fall-back, so folds and gaps are crossed.
    let origin = at("2026-10-24T22:59:30Z");
    let sandbox = Sandbox::new();
    for case in 0..40 {
        let expr = rng.expression();
        let zone = zones[case % zones.len()];
        let tz: Zone = zone.parse().unwrap();
        let out = sandbox.run(&[
            "next",
            &expr,
            "--tz",
            zone,
            "--from",
            &origin.to_rfc3339(),
            "--count",
            &FIRES.to_string(),
        ]);
        let (listed, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{expr}: {stderr}");
        let listed: Vec<&str> = listed.lines().collect();
        assert_eq!(
            listed.len(),
            FIRES,
            "{expr}: every generated expression fires within a year"
        );

        let schedule = Schedule::parse(&expr, tz.clone()).unwrap();
        let timing = Timing {
            schedule,
            delay: std::time::Duration::ZERO,
        };
        let mut scheduler = Scheduler::new(
            Arc::new(ShiftedClock::starting_at(origin)),
            vec![Some(timing)],
        );
        let mut fired = Vec::new();
        while fired.len() < listed.len() {
            for due in scheduler.due().await {
                assert!(!due.late, "{expr}: a fire on paused time is never late");
                fired.extend(due.fires.iter().map(|t| t.with_timezone(&tz).to_rfc3339()));
            }
        }
        assert_eq!(fired, listed, "case {case}: `{expr}` in {zone}");
    }
}

/// A scheduled flow down across three fires with `catch_up: none`: one
/// `missed` flow run whose steps say why none ran, and one delivery to the
/// rules watching the flow.
#[tokio::test(flavor = "multi_thread")]
async fn a_flow_down_across_fires_records_one_missed_flow_run() {
    let clock = |t: &str| -> Arc<dyn Clock> { Arc::new(ShiftedClock::starting_at(at(t))) };
    let sb = Sandbox::new();
    let file = format!(
        "\
listen: 127.0.0.1:0
timezone: UTC
triggers:
  - flows: [nightly-sync]
    on: [missed]
    run: [sh, -c, 'echo \"$OVERNIGHT_FLOW_RUN_ID $OVERNIGHT_STATUS\" >> {}']
jobs:
  copy: {{command: 'true'}}
flows:
  nightly-sync:
    schedule: '0 2 * * *'
    catch_up: none
    steps:
      copy: {{ job: copy }}
",
        sb.path().join("deliveries").display()
    );
    let first = TestDaemon::start_in(sb, &file, clock("2026-03-01T12:00:00Z")).await;
    let sb = first.stop().await;
    let second = TestDaemon::start_in(sb, &file, clock("2026-03-04T12:00:00Z")).await;
    let state = second.state_dir.clone();
    let runs = crate::helper::wait_for(
        std::time::Duration::from_secs(10),
        "the missed flow run",
        || async {
            let store = overnight::store::Store::open(&state).await.unwrap();
            let runs = store
                .flow_history(&overnight::store::HistoryQuery::latest(None, 10))
                .await
                .unwrap();
            store.close().await;
            (!runs.is_empty()).then_some(runs)
        },
    )
    .await;
    let sb = second.stop().await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let missed = &runs[0];
    assert_eq!(missed.status.as_str(), "missed");
    assert_eq!(missed.scheduled_at, Some(at("2026-03-02T02:00:00Z")));
    assert!(missed.finished_at.is_some());
    let why = match &missed.state.progress.steps[0] {
        overnight::flow::StepState::Skipped(why) => why.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        why.starts_with("missed 3 fires, 2026-03-02 02:00:00 +00:00 to 2026-03-04 02:00:00 +00:00"),
        "{why}"
    );
    let deliveries = delivered(&sb).await;
    assert_eq!(deliveries.trim(), format!("{} missed", missed.id));
    let history = sb.run(&["flow", "history"]);
    assert!(text(&history).0.contains("missed"), "{:?}", text(&history));
}

/// What the trigger's program wrote, once it has.
async fn delivered(sb: &Sandbox) -> String {
    crate::helper::wait_for(
        std::time::Duration::from_secs(10),
        "the trigger's delivery",
        || {
            let text = sb.read("deliveries");
            async move { (!text.is_empty()).then_some(text) }
        },
    )
    .await
}
