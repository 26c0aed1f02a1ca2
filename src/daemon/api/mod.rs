//! The daemon's HTTP API, on loopback by default (DESIGN §9).
//!
//! Every route is listed once, in [`routes!`], which also makes
//! [`ROUTES`]: the OpenAPI document (`openapi.json`, served at
//! `/api/openapi.json`) must name exactly those. Who may call what is
//! the [`guard`]'s to say, before any handler runs. Errors map to HTTP in
//! one place, [`ApiError`]'s `IntoResponse`.

pub mod act;
mod events;
pub mod guard;
mod hosts;

pub(crate) use hosts::end_elsewhere;
mod listener;
mod output;
mod page;
pub mod read;

pub use listener::{MAX_CONNECTIONS, MAX_STREAMS};

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::Shared;
use crate::config::Job;
use crate::config::api::ApiSettings;
use crate::store::{RunRecord, StoreError};

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or a wrong token.
    #[error(
        "this call needs a token: `Authorization: Bearer …` with the daemon's (`daemon.json` in the state directory) or one of `api.tokens`; in a browser, log in"
    )]
    Unauthorized,
    /// A login with a token that is none of this daemon's.
    #[error(
        "that token is not one of this daemon's: use the daemon's own (`token` in `daemon.json` in the state directory) or one of `api.tokens`"
    )]
    WrongToken,
    /// The request's parameters make no sense.
    #[error("{0}")]
    BadRequest(String),
    /// A state-changing request from another site's page.
    #[error("{0}")]
    Forbidden(String),
    /// Too many of something at once (live streams).
    #[error("{0}")]
    Busy(String),
    /// `Host` names something else than this API (DNS rebinding).
    #[error("{0}")]
    ForeignHost(String),
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
    /// The daemon could not do what was asked (no randomness for a
    /// session, a handler that panicked).
    #[error("{0}")]
    Internal(String),
    /// No flow run of that id.
    #[error("there is no flow run #{0}; `overnight flow history` lists them")]
    UnknownFlowRun(i64),
    /// No run of that id.
    #[error("there is no run #{0}; `overnight history` lists them")]
    UnknownRun(i64),
    /// Another host of the cluster, asked on the client's behalf, did not
    /// answer, or failed.
    #[error("{0}")]
    OtherHost(String),
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
            ApiError::Unauthorized | ApiError::WrongToken => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::ForeignHost(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::OtherHost(_) => StatusCode::BAD_GATEWAY,
            ApiError::UnknownJob(_)
            | ApiError::UnknownFlow(_)
            | ApiError::UnknownFlowRun(_)
            | ApiError::UnknownRun(_) => StatusCode::NOT_FOUND,
            ApiError::NotRun { .. } | ApiError::Refused { .. } => StatusCode::CONFLICT,
            ApiError::Store(_) | ApiError::Run(_) | ApiError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
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
            next: next_fire(job.schedule.as_ref(), &job.timezone, now),
            at_start: job.schedule.as_ref().is_some_and(|s| s.is_reboot()),
        }
    }
}

/// The next fire of `schedule` after `now`, in `zone`, as RFC 3339.
pub fn next_fire(
    schedule: Option<&crate::schedule::Schedule>,
    zone: &crate::zone::Zone,
    now: DateTime<Utc>,
) -> Option<String> {
    schedule
        .and_then(|s| s.next_after(now))
        .map(|t| t.with_timezone(zone).to_rfc3339())
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
    pub fn start(
        listener: TcpListener,
        shared: Arc<Shared>,
        tls: Option<TlsAcceptor>,
        stop: watch::Receiver<bool>,
    ) -> Api {
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
                    serving: tokio::spawn(serve(listener, shared, tls, stop, daemons)),
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
                Ok(listener) => serve(listener, shared, tls, stop, daemons).await,
                Err(e) => log::error!(target: "overnight::api", "the API did not start: {e}"),
            }
        });
        Api {
            serving,
            runtime: Some(own),
        }
    }

    /// Returns once the API has stopped serving.
    pub async fn stopped(mut self) {
        let _ = (&mut self.serving).await;
    }
}

impl Drop for Api {
    /// Its threads are let go without waiting for them (a runtime may
    /// not be dropped where a task runs, as the daemon's future may be).
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
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

/// Declares every route once: builds the router and [`ROUTES`].
macro_rules! routes {
    ($($method:ident $path:literal => $handler:expr,)*) => {
        /// Every route, as `METHOD /path`: what the OpenAPI document must
        /// describe, no more and no less.
        pub const ROUTES: &[&str] = &[$(concat!(stringify!($method), " ", $path)),*];

        fn routes() -> Router<Arc<Shared>> {
            Router::new()$(.route($path, axum::routing::$method($handler)))*
        }
    };
}

routes! {
    get "/api/status" => read::status,
    get "/api/jobs" => read::jobs,
    get "/api/flows" => read::flows,
    get "/api/runs" => read::runs,
    get "/api/runs/{id}" => read::run,
    get "/api/runs/{id}/output" => output::output,
    get "/api/flow-runs" => read::flow_runs,
    get "/api/flow-runs/{id}" => read::flow_run,
    get "/api/locks" => read::locks,
    get "/api/events" => events::events,
    get "/api/openapi.json" => openapi,
    get "/metrics" => read::metrics,
    post "/api/jobs/{name}/run" => act::run_job,
    post "/api/jobs/{name}/start" => act::start_job,
    post "/api/runs/{id}/stop" => act::stop_run,
    post "/api/flows/{name}/start" => act::start_flow,
    post "/api/flow-runs/{id}/{action}" => act::flow_command,
    post "/api/reload" => act::reload,
    get "/api/session" => act::session,
    post "/api/login" => act::login,
    post "/api/logout" => act::logout,
}

/// The OpenAPI 3 document of every route.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Serves the API on `listener` until `stop` turns true; each request's
/// handler runs on `daemons`.
async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
    daemons: Handle,
) {
    let loopback = listener
        .local_addr()
        .is_ok_and(|addr| addr.ip().is_loopback());
    let guard = guard::Guard {
        shared: Arc::clone(&shared),
        sessions: Arc::default(),
        loopback,
    };
    let app = routes()
        .merge(page::routes())
        .layer(axum::Extension(events::Stopping(stop.clone())))
        .layer(axum::Extension(events::StreamPlaces::new()))
        .layer(axum::Extension(Arc::new(output::Pieces::default())))
        .layer(axum::Extension(guard.clone()))
        .layer(axum::Extension(act::Secure(tls.is_some())))
        .with_state(shared)
        .layer(axum::middleware::from_fn_with_state(
            daemons,
            on_the_daemons_runtime,
        ))
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
        .layer(axum::middleware::from_fn(json_errors));
    let listener =
        listener::Limited::new(listener, listener::MAX_CONNECTIONS, listener::IDLE_TIMEOUT);
    listener.serve(app, tls, stop).await;
}

/// The TLS acceptor `api.tls` asks for, if it does; why its files cannot
/// be used, if they cannot.
pub fn tls_acceptor(api: &ApiSettings) -> Result<Option<TlsAcceptor>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let Some(tls) = &api.tls else {
        return Ok(None);
    };
    let cert_file = |e: rustls::pki_types::pem::Error| format!("`{}`: {e}", tls.cert.display());
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(cert_file)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| format!("`{}`: {e}", tls.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("`{}` and `{}`: {e}", tls.cert.display(), tls.key.display()))?;
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// Says every refusal as an [`ErrorBody`] (the ones axum makes itself —
/// a path or query that does not parse, a method not served, no such
/// route — are plain text otherwise), and forbids every answer to be
/// sniffed as something else or framed.
async fn json_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !response.status().is_client_error() || json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let error = match String::from_utf8_lossy(&text).trim() {
        "" => parts
            .status
            .canonical_reason()
            .unwrap_or("refused")
            .to_lowercase(),
        said => said.to_string(),
    };
    let mut answer = Json(ErrorBody {
        error,
        run_id: None,
    })
    .into_response();
    *answer.status_mut() = parts.status;
    answer
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
        Err(e) => ApiError::Internal(format!("the request's handler failed: {e}")).into_response(),
    }
}
