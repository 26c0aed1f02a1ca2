//! The API's reading side: jobs and flows with their last status, the
//! history a page at a time, a run's report, flow runs, locks. Everything
//! `overnight status`, `history`, `report` and `flow` show.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiError, JobStatus, LockHolder, StatusBody};
use crate::config::Action;
use crate::daemon::Shared;
use crate::flow::progress::FlowStatus;
use crate::live::ProgressNow;
use crate::report::Report;
use crate::status::Status;
use crate::store::{FlowRecord, HistoryQuery, Notification, RunRecord};

/// The most runs one page of history holds.
const PAGE_MAX: u32 = 500;

/// One job as `GET /api/jobs` shows it.
#[derive(Debug, Serialize)]
pub struct JobView {
    /// Its name, schedule and next fire.
    #[serde(flatten)]
    pub job: JobStatus,
    /// The zone its schedule is read in.
    pub timezone: String,
    /// `command` or `http`.
    pub kind: &'static str,
    /// Its latest ended run.
    pub last: Option<RunRecord>,
    /// Its runs going now.
    pub running: Vec<RunningRun>,
}

/// A run going now, with how far it says it has come.
#[derive(Debug, Serialize)]
pub struct RunningRun {
    /// The run.
    #[serde(flatten)]
    pub run: RunRecord,
    /// What it last said of its progress (in this daemon).
    pub progress: Option<ProgressNow>,
    /// In a cluster, the host it runs on, when another than this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elsewhere: Option<String>,
}

/// The daemon, its jobs, running runs and locks (`overnight status`).
pub async fn status(State(shared): State<Arc<Shared>>) -> Result<Json<StatusBody>, ApiError> {
    let config = shared.config();
    let now = Utc::now();
    let jobs = config
        .jobs
        .iter()
        .map(|job| JobStatus::of(job, now))
        .collect();
    let running = running_now(&shared).await?;
    let locks = LockHolder::from_rows(shared.store.held_locks().await?);
    Ok(Json(StatusBody {
        pid: std::process::id(),
        jobs,
        running,
        locks,
    }))
}

/// The runs going now, once the history has [`caught_up`].
async fn running_now(shared: &Shared) -> Result<Vec<RunRecord>, ApiError> {
    caught_up(shared).await;
    Ok(shared.store.running().await?)
}

/// Folds the journal into the history (this daemon's latest moves, runs
/// of `overnight exec`), and closes the runs whose wrapper was killed.
/// Neither keeps the history from being read (a full disk): the
/// background fold catches up later.
pub(super) async fn caught_up(shared: &Shared) {
    let store = &shared.store;
    let caught_up = match store.fold_journal().await {
        Ok(()) => store.close_lost(shared.runner.host(), false).await,
        Err(e) => Err(e),
    };
    match caught_up {
        Ok(closed) => closed
            .into_iter()
            .for_each(|report| crate::daemon::recover::notify(shared, Some(report))),
        Err(e) => {
            log::warn!(target: "overnight::api", "the API shows the history without the latest runs: {e}")
        }
    }
}

/// Every job, with its next fire, latest ended run and running runs.
pub async fn jobs(State(shared): State<Arc<Shared>>) -> Result<Json<Vec<JobView>>, ApiError> {
    let config = shared.config();
    let now = Utc::now();
    let last = shared.store.last_finished().await?;
    let running = running_now(&shared).await?;
    let live = shared.runner.live();
    let cluster = shared.store.is_server();
    let views = config
        .jobs
        .iter()
        .map(|job| JobView {
            job: JobStatus::of(job, now),
            timezone: job.timezone.to_string(),
            kind: match job.action {
                Action::Command(_) => "command",
                Action::Http(_) => "http",
            },
            last: last.iter().find(|r| r.job == job.name).cloned(),
            running: running
                .iter()
                .filter(|r| r.job == job.name)
                .map(|run| RunningRun {
                    progress: live.progress_now(run.id),
                    elsewhere: (cluster && run.host != config.cluster.host)
                        .then(|| run.host.clone()),
                    run: run.clone(),
                })
                .collect(),
        })
        .collect();
    Ok(Json(views))
}

/// One flow as `GET /api/flows` shows it.
#[derive(Debug, Serialize)]
pub struct FlowView {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Its schedule, if any.
    pub schedule: Option<String>,
    /// Its next fire, in its zone.
    pub next: Option<String>,
    /// The zone its schedule is read in.
    pub timezone: String,
    /// Its steps, as the jobs file says them now.
    pub plan: serde_json::Value,
    /// Its latest run.
    pub last: Option<serde_json::Value>,
}

/// Every flow, with its next fire and latest run.
pub async fn flows(State(shared): State<Arc<Shared>>) -> Result<Json<Vec<FlowView>>, ApiError> {
    let config = shared.config();
    let now = Utc::now();
    let mut views = Vec::with_capacity(config.flows.len());
    caught_up(&shared).await;
    for flow in &config.flows {
        let latest = HistoryQuery::latest(Some(&flow.name), 1);
        let last = shared.store.flow_history(&latest).await?.pop();
        views.push(FlowView {
            name: flow.name.clone(),
            description: flow.description.clone(),
            schedule: flow.schedule.as_ref().map(ToString::to_string),
            next: super::next_fire(flow.schedule.as_ref(), &flow.timezone, now),
            timezone: flow.timezone.to_string(),
            plan: serde_json::to_value(&*flow.plan).expect("a plan serialises"),
            last: last.as_ref().map(flow_run_view),
        });
    }
    Ok(Json(views))
}

/// A page of history, as `?job=&status=&since=&until=&before=&limit=`
/// (`flow=` for flow runs) ask.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Only this job's runs.
    pub job: Option<String>,
    /// Only this flow's runs.
    pub flow: Option<String>,
    /// Only runs with this status.
    pub status: Option<String>,
    /// Only runs started at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only runs started before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Only runs older than this id: the `next` of the page before.
    pub before: Option<i64>,
    /// At most this many (50 unless said, 500 at most).
    pub limit: Option<u32>,
}

/// What a page of history lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    /// Runs, picked by `job`.
    Runs,
    /// Flow runs, picked by `flow`.
    FlowRuns,
}

impl Page {
    /// The store's query for a page of `listed`, or why the page cannot be
    /// read (a filter of the other list, a status there is not).
    fn query(self, listed: Listed) -> Result<HistoryQuery, ApiError> {
        let (name, statuses): (_, Vec<&str>) = match listed {
            Listed::Runs if self.flow.is_some() => {
                return Err(ApiError::BadRequest(
                    "runs are picked by `job`; `/api/flow-runs?flow=` lists a flow's runs".into(),
                ));
            }
            Listed::FlowRuns if self.job.is_some() => {
                return Err(ApiError::BadRequest(
                    "flow runs are picked by `flow`; `/api/runs?job=` lists a job's runs".into(),
                ));
            }
            Listed::Runs => (self.job, Status::ALL.map(Status::as_str).to_vec()),
            Listed::FlowRuns => (self.flow, FlowStatus::ALL.map(FlowStatus::as_str).to_vec()),
        };
        if let Some(status) = self.status.as_deref().filter(|s| !statuses.contains(s)) {
            return Err(ApiError::BadRequest(format!(
                "no status `{status}`; use one of {}",
                statuses.join(", ")
            )));
        }
        let limit = self.limit.unwrap_or(50);
        if !(1..=PAGE_MAX).contains(&limit) {
            return Err(ApiError::BadRequest(format!(
                "`limit` must be from 1 to {PAGE_MAX}"
            )));
        }
        Ok(HistoryQuery {
            name,
            status: self.status,
            since: self.since,
            until: self.until,
            before: self.before,
            limit,
        })
    }
}

/// A page of runs, newest first, and where the next page starts.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunsPage {
    /// The runs.
    pub runs: Vec<RunRecord>,
    /// The `before` of the next page; `None` on the last.
    pub next: Option<i64>,
}

/// Where the page after one of `len` rows ending at id `last` starts.
fn next_page(len: usize, limit: u32, last: Option<i64>) -> Option<i64> {
    (len == limit as usize).then_some(last).flatten()
}

/// Past and running runs, newest first, a page at a time.
pub async fn runs(
    State(shared): State<Arc<Shared>>,
    Query(page): Query<Page>,
) -> Result<Json<RunsPage>, ApiError> {
    let query = page.query(Listed::Runs)?;
    caught_up(&shared).await;
    let runs = shared.store.history(&query).await?;
    let next = next_page(runs.len(), query.limit, runs.last().map(|r| r.id));
    Ok(Json(RunsPage { runs, next }))
}

/// One run: its row, its report once it has ended, its attempts and
/// trigger deliveries, and its progress while it runs.
#[derive(Debug, Serialize)]
pub struct RunView {
    /// The run's row.
    pub run: RunRecord,
    /// Its report, once it has ended.
    pub report: Option<Report>,
    /// Its attempts before the last, when it was retried.
    pub attempts: Vec<AttemptView>,
    /// Its trigger deliveries.
    pub notifications: Vec<Notification>,
    /// What it last said of its progress, while it runs here.
    pub progress: Option<ProgressNow>,
}

/// An attempt of a retried run.
#[derive(Debug, Serialize)]
pub struct AttemptView {
    /// Its number, from 1.
    pub attempt: i64,
    /// How it ended.
    pub status: String,
    /// Its summary.
    pub summary: Option<String>,
}

/// One run with its report.
pub async fn run(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<i64>,
) -> Result<Json<RunView>, ApiError> {
    caught_up(&shared).await;
    let store = &shared.store;
    let run = store.run(id).await?.ok_or(ApiError::UnknownRun(id))?;
    let attempts = store
        .attempts(id)
        .await?
        .into_iter()
        .map(|(attempt, status, summary)| AttemptView {
            attempt,
            status,
            summary,
        })
        .collect();
    Ok(Json(RunView {
        report: store.report(id).await?,
        attempts,
        notifications: store.notifications(id).await?,
        progress: shared.runner.live().progress_now(id),
        run,
    }))
}

/// A page of flow runs, newest first.
#[derive(Debug, Serialize)]
pub struct FlowRunsPage {
    /// The flow runs, as [`flow_run_view`] shows each.
    pub flow_runs: Vec<serde_json::Value>,
    /// The `before` of the next page; `None` on the last.
    pub next: Option<i64>,
}

/// Flow runs, newest first, a page at a time.
pub async fn flow_runs(
    State(shared): State<Arc<Shared>>,
    Query(page): Query<Page>,
) -> Result<Json<FlowRunsPage>, ApiError> {
    let query = page.query(Listed::FlowRuns)?;
    caught_up(&shared).await;
    let runs = shared.store.flow_history(&query).await?;
    let next = next_page(runs.len(), query.limit, runs.last().map(|r| r.id));
    Ok(Json(FlowRunsPage {
        flow_runs: runs.iter().map(flow_run_view).collect(),
        next,
    }))
}

/// One flow run: its report (each step's status, runs and times, the
/// operators' actions), its plan (to draw it) and where it is held.
pub async fn flow_run(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caught_up(&shared).await;
    let run = shared
        .store
        .flow_run(id)
        .await?
        .ok_or(ApiError::UnknownFlowRun(id))?;
    let mut view = flow_run_view(&run);
    // A critical job step holds with no message of its own: say how its
    // run ended, and what each button does.
    let held = view["held_at"]["step"].as_str().map(str::to_string);
    let silent = view["held_at"]["message"].is_null();
    if let Some(step) = held.filter(|_| silent) {
        let index = run.plan.step(&step);
        let last_run = index.and_then(|i| run.state.steps.get(i)?.runs.last().copied());
        let ended = match last_run {
            Some(run_id) => match shared.store.run(run_id).await? {
                Some(r) => format!(
                    "ended {} (run #{run_id}: {})",
                    r.status,
                    r.summary.unwrap_or_default()
                ),
                None => format!("ended (run #{run_id})"),
            },
            None => "ended".to_string(),
        };
        view["held_at"]["message"] = format!(
            "Step `{step}` {ended}, and it is critical. Resume goes on down the routes for how it ended; Retry runs it again; Skip counts it a success; Abort ends the flow."
        )
        .into();
    }
    Ok(Json(view))
}

/// A flow run as the API shows it: its report, with its plan, since when
/// it is held, and the message of the step it is held at.
pub fn flow_run_view(run: &FlowRecord) -> serde_json::Value {
    let mut view = run.report();
    let progress = &run.state.progress;
    let holding = progress
        .steps
        .iter()
        .position(|state| matches!(state, crate::flow::StepState::Holding))
        .or_else(|| progress.stopped_at.first().copied());
    let held_at = match holding.and_then(|i| run.plan.steps.get(i)) {
        Some(step) => {
            let message = match &step.action {
                crate::flow::Action::Hold(message) => Some(message.clone()),
                crate::flow::Action::Job(_) => None,
            };
            serde_json::json!({"step": step.name, "message": message})
        }
        None if progress.paused && run.finished_at.is_none() => serde_json::json!({
            "step": null,
            "message": "Paused by an operator: no step starts until it is resumed.",
        }),
        None => serde_json::Value::Null,
    };
    view["plan"] = serde_json::to_value(&run.plan).expect("a plan serialises");
    view["held_since"] = serde_json::to_value(run.state.held_since).expect("a time serialises");
    view["held_at"] = held_at;
    view
}

/// What this daemon did and what the history says now, for Prometheus.
pub async fn metrics(State(shared): State<Arc<Shared>>) -> Result<Response, ApiError> {
    caught_up(&shared).await;
    let store = &shared.store;
    let (flow_last_success, flows_held) = store.flow_gauges().await?;
    let now = crate::metrics::Now {
        running: shared.runner.running(),
        last_success: store.last_successes().await?,
        flow_last_success,
        flows_held,
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&now),
    )
        .into_response())
}

/// Every lock held now, and by which run.
pub async fn locks(State(shared): State<Arc<Shared>>) -> Result<Json<Vec<LockHolder>>, ApiError> {
    caught_up(&shared).await;
    Ok(Json(LockHolder::from_rows(
        shared.store.held_locks().await?,
    )))
}
