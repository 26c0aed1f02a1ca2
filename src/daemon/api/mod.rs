//! The daemon's HTTP API, on loopback by default.
//!
//! Reading is open; anything that changes state (starting a run, reloading)
//! needs the bearer token from the daemon's card in the state directory.
//! Errors map to HTTP in one place, [`ApiError`]'s `IntoResponse`.

mod events;
mod listener;
mod output;

pub use listener::MAX_CONNECTIONS;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::watch;

use super::Shared;
use super::flows::{CommandError, FlowStart, Op};
use crate::config::Job;
use crate::report::{Report, Trigger};
use crate::runner::Outcome;
use crate::store::{FlowRecord, RunRecord, StoreError};

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or a wrong token on a state-changing call.
    #[error(
        "this call needs the daemon's token (`Authorization: Bearer …`, from `daemon.json` in the state directory)"
    )]
    Unauthorized,
    /// No job of that name.
    #[error("no job named `{0}` in the jobs file")]
    UnknownJob(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The fire did not run (skipped): the record's id and why.
    #[error("{why}")]
    NotRun {
        /// The skipped run's id.
        id: i64,
        /// Why.
        why: String,
    },
    /// The run task ended without a result.
    #[error("the run ended without a report: {0}")]
    Run(String),
    /// No flow run of that id.
    #[error("there is no flow run #{0}; `overnight flow history` lists them")]
    UnknownFlowRun(i64),
    /// No run of that id.
    #[error("there is no run #{0}; `overnight history` lists them")]
    UnknownRun(i64),
    /// No flow of that name.
    #[error("no flow named `{0}` in the jobs file")]
    UnknownFlow(String),
    /// The request makes no sense now (resume a flow that is not held…).
    #[error("{why}")]
    Refused {
        /// Why.
        why: String,
        /// The flow run it concerns, if any.
        run_id: Option<i64>,
    },
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::UnknownJob(_)
            | ApiError::UnknownFlow(_)
            | ApiError::UnknownFlowRun(_)
            | ApiError::UnknownRun(_) => StatusCode::NOT_FOUND,
            ApiError::NotRun { .. } | ApiError::Refused { .. } => StatusCode::CONFLICT,
            ApiError::Store(_) | ApiError::Run(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let run_id = match self {
            ApiError::NotRun { id, .. } => Some(id),
            ApiError::Refused { run_id, .. } => run_id,
            _ => None,
        };
        (
            status,
            Json(ErrorBody {
                error: self.to_string(),
                run_id,
            }),
        )
            .into_response()
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// The run recorded for it, if any (a skipped fire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<i64>,
}

/// One job as `GET /api/status` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job's name.
    pub name: String,
    /// Its schedule, if any.
    pub schedule: Option<String>,
    /// Its next fire time, in its zone.
    pub next: Option<String>,
    /// It fires once at each daemon start (`@reboot`), not on a clock.
    #[serde(default)]
    pub at_start: bool,
}

impl JobStatus {
    /// A job's line as of `now`.
    pub fn of(job: &Job, now: DateTime<Utc>) -> JobStatus {
        JobStatus {
            name: job.name.clone(),
            schedule: job.schedule.as_ref().map(ToString::to_string),
            next: job
                .schedule
                .as_ref()
                .and_then(|s| s.next_after(now))
                .map(|t| t.with_timezone(&job.timezone).to_rfc3339()),
            at_start: job.schedule.as_ref().is_some_and(|s| s.is_reboot()),
        }
    }
}

/// The answer of `GET /api/status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusBody {
    /// The daemon's pid.
    pub pid: u32,
    /// Every job.
    pub jobs: Vec<JobStatus>,
    /// Runs going now.
    pub running: Vec<RunRecord>,
    /// Locks held now.
    pub locks: Vec<LockHolder>,
}

/// A lock and the run that holds it.
#[derive(Debug, Serialize, Deserialize)]
pub struct LockHolder {
    /// The lock (`job.<name>` for a job's own).
    pub name: String,
    /// `exclusive` or `shared`.
    pub mode: String,
    /// The holding run.
    pub run_id: i64,
    /// Its job.
    pub job: String,
}

impl LockHolder {
    /// The store's rows as holders.
    pub fn from_rows(rows: Vec<(String, String, i64, String)>) -> Vec<LockHolder> {
        rows.into_iter()
            .map(|(name, mode, run_id, job)| LockHolder {
                name,
                mode,
                run_id,
                job,
            })
            .collect()
    }
}

/// How far below the jobs the API's threads run (`nice`): a hundred
/// browsers following a run that prints a million lines take what the
/// machine has left, not the job's share (docs/benchmarks.md).
const API_NICENESS: libc::c_int = 19;

/// The API being served; [`stopped`](Api::stopped) once its `stop` has
/// turned true.
pub struct Api {
    serving: tokio::task::JoinHandle<()>,
    /// Its own runtime, if it got one.
    runtime: Option<Runtime>,
}

impl Api {
    /// Serves the API on `listener` until `stop` turns true, on threads
    /// of its own at a lower priority than the jobs. What a request
    /// starts or changes (a run, a flow's move, a trigger) still runs on
    /// the daemon's runtime: only reading requests and writing answers and
    /// streams happen on the API's threads. Out of threads, it serves from
    /// the daemon's runtime.
    pub fn start(listener: TcpListener, shared: Arc<Shared>, stop: watch::Receiver<bool>) -> Api {
        let daemons = Handle::current();
        let own = tokio::runtime::Builder::new_multi_thread()
            .thread_name("api")
            // Streams read capture files on these; more would only hold
            // more buffers (and allocator arenas) at once.
            .max_blocking_threads(4)
            .on_thread_start(lower_priority)
            .enable_all()
            .build();
        let own = match own {
            Ok(own) => own,
            Err(e) => {
                log::warn!(target: "overnight::api", "the API serves at the jobs' priority: no threads of its own ({e})");
                return Api {
                    serving: tokio::spawn(serve(listener, shared, stop, daemons)),
                    runtime: None,
                };
            }
        };
        // Its sockets are watched by its own threads.
        let listener = listener.into_std().and_then(|std| {
            let _inside = own.enter();
            TcpListener::from_std(std)
        });
        let serving = own.spawn(async move {
            match listener {
                Ok(listener) => serve(listener, shared, stop, daemons).await,
                Err(e) => log::error!(target: "overnight::api", "the API did not start: {e}"),
            }
        });
        Api {
            serving,
            runtime: Some(own),
        }
    }

    /// Returns once the API has stopped serving.
    pub async fn stopped(self) {
        let _ = self.serving.await;
        if let Some(runtime) = self.runtime {
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's priority by [`API_NICENESS`] (on Linux a
/// thread's nice value is its own).
fn lower_priority() {
    // SAFETY: reads and sets this thread's nice value; no memory involved.
    unsafe {
        let now = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, 0, (now + API_NICENESS).min(19));
    }
}

/// Serves the API on `listener` until `stop` turns true; each request's
/// handler runs on `daemons`.
async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    daemons: Handle,
) {
    let app = Router::new()
        .route("/api/status", get(status))
        .route("/api/jobs/{name}/run", post(run_job))
        .route("/api/reload", post(reload))
        .route("/api/flows/{name}/start", post(start_flow))
        .route("/api/flow-runs/{id}/{action}", post(flow_command))
        .route("/api/events", get(events::events))
        .route("/api/runs/{id}/output", get(output::output))
        .layer(axum::Extension(events::Stopping(stop.clone())))
        .layer(axum::Extension(Arc::new(output::Pieces::default())))
        .with_state(shared)
        .layer(axum::middleware::from_fn_with_state(
            daemons,
            on_the_daemons_runtime,
        ));
    // On loopback (the default), only loopback names are answered.
    let app = match listener.local_addr() {
        Ok(addr) if addr.ip().is_loopback() => app.layer(axum::middleware::from_fn(check_host)),
        _ => app,
    };
    let listener =
        listener::Limited::new(listener, listener::MAX_CONNECTIONS, listener::IDLE_TIMEOUT);
    listener.serve(app, stop).await;
}

/// Runs a request's handler on the daemon's runtime: a run it starts, a
/// flow it moves, a trigger it sets off runs at the jobs' priority. (The
/// answer's body — a stream — is still written from the API's threads.)
async fn on_the_daemons_runtime(
    State(daemons): State<Handle>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match daemons.spawn(next.run(request)).await {
        Ok(response) => response,
        Err(e) => ApiError::Run(format!("the request's handler failed: {e}")).into_response(),
    }
}

/// On a loopback listener, answers only requests addressed by a loopback
/// name or address: a web page elsewhere that makes a browser resolve its own name
/// to 127.0.0.1 (DNS rebinding) sends its own name as `Host`, and is
/// refused before it can read anything.
async fn check_host(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if loopback_host(host) {
        next.run(request).await
    } else {
        let why = format!(
            "refused: `Host: {host}` does not name this machine's loopback; use http://127.0.0.1:PORT/"
        );
        (StatusCode::MISDIRECTED_REQUEST, why).into_response()
    }
}

/// Whether a `Host` header names the loopback: `localhost`, `127.x.y.z` or
/// `[::1]`, with or without a port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(addr, _)| addr),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if same_secret(token.as_bytes(), shared.token.as_bytes()) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

/// Compares in a time that does not depend on where the two first differ,
/// so a caller cannot find the token a byte at a time.
fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    given.len() == secret.len()
        && given
            .iter()
            .zip(secret)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

async fn status(State(shared): State<Arc<Shared>>) -> Result<Json<StatusBody>, ApiError> {
    let config = shared.config();
    let now = Utc::now();
    let jobs = config
        .jobs
        .iter()
        .map(|job| JobStatus::of(job, now))
        .collect();
    let store = &shared.store;
    // Runs of `overnight exec` are in the journal until folded; one whose
    // runner was killed is closed. Neither keeps the status from being
    // read (a full disk): the background fold catches up later.
    let caught_up = match store.fold_journal().await {
        Ok(()) => store.close_lost(shared.runner.host(), false).await,
        Err(e) => Err(e),
    };
    match caught_up {
        Ok(closed) => closed
            .into_iter()
            .for_each(|report| crate::daemon::recover::notify(&shared, Some(report))),
        Err(e) => {
            log::warn!(target: "overnight::api", "status shows the history without the latest runs: {e}")
        }
    }
    let running = store.running().await?;
    let locks = LockHolder::from_rows(store.held_locks().await?);
    Ok(Json(StatusBody {
        pid: std::process::id(),
        jobs,
        running,
        locks,
    }))
}

/// Runs a job now and answers with its report when it ends.
async fn run_job(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Report>, ApiError> {
    authorize(&shared, &headers)?;
    let job = shared
        .config()
        .job(&name)
        .cloned()
        .ok_or(ApiError::UnknownJob(name))?;
    let report = shared
        .launch(job, Trigger::Manual, None)
        .await
        .map_err(|e| ApiError::Run(e.to_string()))??;
    match report {
        Outcome::Ran(report) => Ok(Json(*report)),
        Outcome::NotRun { id, why } => Err(ApiError::NotRun {
            id,
            why: why.to_string(),
        }),
    }
}

/// The answer of `POST /api/flows/{name}/start`.
#[derive(Debug, Serialize, Deserialize)]
pub struct FlowStarted {
    /// The new flow run's id.
    pub flow_run_id: i64,
}

/// Starts a run of a flow; answers with its id at once.
async fn start_flow(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<FlowStarted>, ApiError> {
    authorize(&shared, &headers)?;
    let flow = shared
        .config()
        .flow(&name)
        .cloned()
        .ok_or(ApiError::UnknownFlow(name))?;
    match shared.start_flow(&flow, Trigger::Manual, None).await? {
        FlowStart::Started(id) => Ok(Json(FlowStarted { flow_run_id: id })),
        FlowStart::Busy(id) => Err(ApiError::Refused {
            why: format!(
                "flow `{}` is running already (flow run #{id}) and its concurrency is `skip`",
                flow.name
            ),
            run_id: Some(id),
        }),
    }
}

/// The body of an operator's command on a flow run.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FlowCommand {
    /// The step, for `retry` and `skip`.
    #[serde(default)]
    pub step: Option<String>,
    /// Who gives the command, as recorded (the CLI sends the OS user).
    #[serde(default)]
    pub who: Option<String>,
}

/// `resume`, `retry`, `skip`, `abort` or `hold` on a flow run; answers with
/// the run as it stands after.
async fn flow_command(
    State(shared): State<Arc<Shared>>,
    Path((id, action)): Path<(i64, String)>,
    headers: HeaderMap,
    body: Option<Json<FlowCommand>>,
) -> Result<Json<FlowRecord>, ApiError> {
    authorize(&shared, &headers)?;
    let Json(body) = body.unwrap_or_default();
    let refused = |why: String| ApiError::Refused {
        why,
        run_id: Some(id),
    };
    let step = || {
        body.step
            .clone()
            .ok_or_else(|| refused(format!("`{action}` needs the step: {{\"step\": \"NAME\"}}")))
    };
    let op = match action.as_str() {
        "resume" => Op::Resume,
        "retry" => Op::Retry(step()?),
        "skip" => Op::Skip(step()?),
        "abort" => Op::Abort,
        "hold" => Op::Hold,
        other => {
            return Err(refused(format!(
                "unknown action `{other}`; use resume, retry, skip, abort or hold"
            )));
        }
    };
    let who = body.who.clone().unwrap_or_else(|| "api".to_string());
    match shared.flow_command(id, op, who).await {
        Ok(run) => Ok(Json(run)),
        Err(CommandError::NoSuchRun(id)) => Err(ApiError::UnknownFlowRun(id)),
        Err(CommandError::Store(e)) => Err(ApiError::Store(e)),
        Err(other) => Err(refused(other.to_string())),
    }
}

async fn reload(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    authorize(&shared, &headers)?;
    shared.request_reload();
    Ok(StatusCode::ACCEPTED)
}
