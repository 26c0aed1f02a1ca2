//! The API's operator side: run a job now, start a flow, move a flow
//! run, stop a running run, reload, log in and out. The guard has checked
//! the token before any of these runs; each records who acted.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::guard::{COOKIE, Caller, Guard, session_id};
use super::hosts::{ACTING_FOR, HANDED_ON, OtherHost};
use crate::config::cluster::Placement;
use crate::daemon::Shared;
use crate::daemon::flows::{CommandError, FlowStart, Op};
use crate::report::{Report, Trigger};
use crate::runner::{Outcome, StopReason};
use crate::store::FlowRecord;

/// Runs a job now and answers with its report when it ends. In a
/// cluster, a job this host may not run is handed on to a live host that
/// may, and that host's answer given.
pub async fn run_job(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Report>, ApiError> {
    let job = job_named(&shared, name)?;
    let who = acting(&caller, &headers, None)?;
    let config = shared.config();
    if !job.placement.admits(&config.cluster) {
        let (what, path) = (
            format!("job `{}`", job.name),
            format!("/api/jobs/{}/run", job.name),
        );
        return hand_on(&shared, &headers, &job.placement, &what, &path, &who)
            .await
            .map(Json);
    }
    log::info!(target: "overnight::api", "`{}` run now by {who}", job.name);
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

/// Hands `what` (``job `x` ``), which this host may not run, on to a
/// live host `placement` admits: posts to `path` of its API (with one of
/// `api.tokens`: the hosts share the file) for `who`, and answers with its
/// answer. A request handed on here already is not handed on again: the
/// hosts' jobs files differ.
async fn hand_on<T: serde::de::DeserializeOwned>(
    shared: &Shared,
    headers: &HeaderMap,
    placement: &Placement,
    what: &str,
    path: &str,
    who: &str,
) -> Result<T, ApiError> {
    if headers.contains_key(HANDED_ON) {
        return Err(ApiError::BadRequest(format!(
            "{what} runs on {}, and host `{}` is not one: the jobs files of the hosts differ (`overnight check --cluster`)",
            placement.describe(),
            shared.config().cluster.host
        )));
    }
    let target = OtherHost::admitting(shared, placement, what).await?;
    log::info!(target: "overnight::api", "{what}: `POST {path}` by {who}, handed on to host `{}`", target.name);
    target.post(path, None::<&()>, who).await
}

/// Who acts, as recorded: the caller's name (with the daemon card's
/// token, the `said` name); for a request another host handed on, whom
/// it acted for there, through the token it showed.
fn acting(caller: &Caller, headers: &HeaderMap, said: Option<String>) -> Result<String, ApiError> {
    let name = caller.who(said)?;
    let acting_for = headers
        .get(HANDED_ON)
        .and(headers.get(ACTING_FOR))
        .and_then(|v| v.to_str().ok());
    Ok(match acting_for {
        Some(whom) => format!("{whom} (through `{name}`)"),
        None => name,
    })
}

/// The job `name` of the jobs file in force.
fn job_named(shared: &Shared, name: String) -> Result<Arc<crate::config::Job>, ApiError> {
    shared
        .config()
        .job(&name)
        .cloned()
        .ok_or(ApiError::UnknownJob(name))
}

/// The answer of `POST /api/jobs/{name}/start` and `/api/runs/{id}/stop`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunStarted {
    /// The run's id.
    pub run_id: i64,
}

/// Starts a run of a job now; answers with its id at once (the run goes
/// on to its end; a skipped start is recorded under that id too).
pub async fn start_job(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<RunStarted>), ApiError> {
    let job = job_named(&shared, name)?;
    let who = acting(&caller, &headers, None)?;
    if !job.placement.admits(&shared.config().cluster) {
        let what = format!("job `{}`", job.name);
        let path = format!("/api/jobs/{}/start", job.name);
        let started = hand_on(&shared, &headers, &job.placement, &what, &path, &who).await?;
        return Ok((StatusCode::ACCEPTED, Json(started)));
    }
    let run_id = shared.runner.fresh_run_id(&job).await?;
    log::info!(target: "overnight::api", "`{}` started as run #{run_id} by {who}", job.name);
    drop(shared.launch_numbered(job, Trigger::Manual, run_id));
    Ok((StatusCode::ACCEPTED, Json(RunStarted { run_id })))
}

/// Ends a running run: its process group gets TERM, then KILL after the
/// job's `kill_grace`. Its retries are not tried.
pub async fn stop_run(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<RunStarted>), ApiError> {
    let who = acting(&caller, &headers, None)?;
    if shared
        .runner
        .stop_run(id, StopReason::Operator(who.clone()))
    {
        log::info!(target: "overnight::api", "run #{id} stopped by {who}");
        return Ok((StatusCode::ACCEPTED, Json(RunStarted { run_id: id })));
    }
    super::read::caught_up(&shared).await;
    let why = match shared.store.run(id).await? {
        None => return Err(ApiError::UnknownRun(id)),
        // In a cluster, stopped by the host that runs it.
        Some(run)
            if run.status == crate::status::Status::Running
                && shared.store.is_server()
                && run.host != shared.config().cluster.host =>
        {
            if headers.contains_key(HANDED_ON) {
                return Err(ApiError::BadRequest(format!(
                    "run #{id} runs on host `{}`, not here: the hosts disagree on where it runs",
                    run.host
                )));
            }
            let what = format!("run #{id} of `{}` runs on", run.job);
            let host = OtherHost::named(&shared, &run.host, &what, ": stop it there").await?;
            log::info!(target: "overnight::api", "run #{id} stopped by {who}, handed on to host `{}`", host.name);
            let path = format!("/api/runs/{id}/stop");
            let stopping = host.post(&path, None::<&()>, &who).await?;
            return Ok((StatusCode::ACCEPTED, Json(stopping)));
        }
        Some(run) if run.status == crate::status::Status::Running => format!(
            "run #{id} of `{}` runs in another process (pid {}, `overnight exec` or another daemon): stop it there",
            run.job,
            run.pid.unwrap_or_default()
        ),
        Some(run) => format!(
            "run #{id} has ended already ({}): nothing to stop",
            run.status
        ),
    };
    Err(ApiError::Refused {
        why,
        run_id: Some(id),
    })
}

/// The answer of `POST /api/flows/{name}/start`.
#[derive(Debug, Serialize, Deserialize)]
pub struct FlowStarted {
    /// The new flow run's id.
    pub flow_run_id: i64,
}

/// Starts a run of a flow; answers with its id at once.
pub async fn start_flow(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<FlowStarted>, ApiError> {
    let flow = shared
        .config()
        .flow(&name)
        .cloned()
        .ok_or(ApiError::UnknownFlow(name))?;
    let who = acting(&caller, &headers, None)?;
    if !flow.placement.admits(&shared.config().cluster) {
        let what = format!("flow `{}`", flow.name);
        let path = format!("/api/flows/{}/start", flow.name);
        return hand_on(&shared, &headers, &flow.placement, &what, &path, &who)
            .await
            .map(Json);
    }
    log::info!(target: "overnight::api", "flow `{}` started by {who}", flow.name);
    match shared.start_flow(&flow, Trigger::Manual, None).await? {
        FlowStart::Started(id) => Ok(Json(FlowStarted { flow_run_id: id })),
        FlowStart::Busy(id) => Err(ApiError::Refused {
            why: format!(
                "a run of flow `{}` is not over yet (flow run #{id}: `overnight flow status {id}`) and its concurrency is `skip`",
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
    /// Who gives the command, as recorded, when the daemon card's token
    /// is used (the CLI sends the OS user); a named token's name is
    /// recorded otherwise.
    #[serde(default)]
    pub who: Option<String>,
}

/// `resume`, `retry`, `skip`, `abort` or `hold` on a flow run; answers with
/// the run as it stands after.
pub async fn flow_command(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path((id, action)): Path<(i64, String)>,
    headers: HeaderMap,
    body: Option<Json<FlowCommand>>,
) -> Result<Json<FlowRecord>, ApiError> {
    let Json(body) = body.unwrap_or_default();
    let refused = |why: String| ApiError::Refused {
        why,
        run_id: Some(id),
    };
    let step = || {
        body.step.clone().ok_or_else(|| {
            ApiError::BadRequest(format!("`{action}` needs the step: {{\"step\": \"NAME\"}}"))
        })
    };
    let op = match action.as_str() {
        "resume" => Op::Resume,
        "retry" => Op::Retry(step()?),
        "skip" => Op::Skip(step()?),
        "abort" => Op::Abort,
        "hold" => Op::Hold,
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown action `{other}`; use resume, retry, skip, abort or hold"
            )));
        }
    };
    let who = acting(&caller, &headers, body.who.clone())?;
    if let Some(host) = driven_elsewhere(&shared, id).await? {
        if headers.contains_key(HANDED_ON) {
            return Err(ApiError::BadRequest(format!(
                "flow run #{id} is driven by host `{}`, not here: the hosts disagree on who drives it",
                host.name
            )));
        }
        return command_on(&host, id, &action, &body, &who).await;
    }
    match shared.flow_command(id, op, who).await {
        Ok(run) => Ok(Json(run)),
        Err(CommandError::NoSuchRun(id)) => Err(ApiError::UnknownFlowRun(id)),
        Err(CommandError::Store(e)) => Err(ApiError::Store(e)),
        Err(other) => Err(refused(other.to_string())),
    }
}

/// The host driving open flow run `id`, in a cluster, when it is another
/// than this one; an error if its API cannot be reached.
async fn driven_elsewhere(shared: &Shared, id: i64) -> Result<Option<OtherHost>, ApiError> {
    if !shared.store.is_server() {
        return Ok(None);
    }
    let Some(run) = shared.store.flow_run(id).await? else {
        return Ok(None);
    };
    if run.finished_at.is_some() || run.host == shared.config().cluster.host {
        return Ok(None);
    }
    let what = format!("flow run #{id} of `{}` is driven by", run.flow);
    let then = "; once it is declared dead, a host that may drive the flow takes it over";
    OtherHost::named(shared, &run.host, &what, then)
        .await
        .map(Some)
}

/// Gives an operator's command on flow run `id` to `host`, which drives
/// it, as `who` gave it here; answers with that host's answer.
async fn command_on(
    host: &OtherHost,
    id: i64,
    action: &str,
    body: &FlowCommand,
    who: &str,
) -> Result<Json<FlowRecord>, ApiError> {
    log::info!(target: "overnight::api", "`{action}` of flow run #{id} by {who}, handed on to host `{}`", host.name);
    let body = FlowCommand {
        step: body.step.clone(),
        who: Some(who.to_string()),
    };
    let path = format!("/api/flow-runs/{id}/{action}");
    host.post(&path, Some(&body), who).await.map(Json)
}

/// Rereads the jobs file (as SIGHUP does), once it is known to load: a
/// file that does not is refused here, with its problems.
pub async fn reload(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
) -> Result<StatusCode, ApiError> {
    let path = shared.config().path.clone();
    let loaded = tokio::task::spawn_blocking(move || crate::config::Config::load(&path))
        .await
        .map_err(|e| ApiError::Internal(format!("the jobs file was not read: {e}")))?;
    if let Err(e) = loaded {
        return Err(ApiError::Refused {
            why: format!("the jobs file does not load; nothing changed:\n{e}"),
            run_id: None,
        });
    }
    log::info!(target: "overnight::api", "reload asked by {}", caller.who(None)?);
    shared.request_reload();
    Ok(StatusCode::ACCEPTED)
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct Login {
    /// A token: the daemon card's or one of `api.tokens`.
    pub token: String,
}

/// Trades a token for a session cookie (HttpOnly, SameSite=Strict) and
/// sends the browser back to the page; a wrong token is 401, after a
/// pause that makes guessing slow.
pub async fn login(
    Extension(guard): Extension<Guard>,
    Extension(secure): Extension<Secure>,
    headers: HeaderMap,
    Form(login): Form<Login>,
) -> Result<Response, ApiError> {
    let Some(name) = guard.token_name(login.token.trim()) else {
        tokio::time::sleep(super::guard::WRONG_TOKEN_PAUSE).await;
        return Err(ApiError::WrongToken);
    };
    let id = guard
        .sessions
        .open(&name)
        .map_err(|e| ApiError::Internal(format!("no session could be made: {e}")))?;
    log::info!(target: "overnight::api", "{name} logged in to the web page");
    // Over TLS, here or at a proxy in front, the cookie never goes in clear.
    let behind_tls = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    let attributes = if secure.0 || behind_tls {
        "; Secure"
    } else {
        ""
    };
    Ok(back_to_the_page(format!("{id}{attributes}")))
}

/// Ends the browser's session.
pub async fn logout(Extension(guard): Extension<Guard>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        guard.sessions.close(id);
    }
    back_to_the_page("; Max-Age=0".to_string())
}

/// Sends the browser to the page with the session cookie set to `value`
/// (its id, and attributes of its own).
fn back_to_the_page(value: String) -> Response {
    let cookie = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict");
    (
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie), (header::LOCATION, "/".into())],
    )
        .into_response()
}

/// The answer of `GET /api/session`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Session {
    /// The name of the token the caller showed or logged in with.
    pub name: Option<String>,
}

/// Who the caller is (the page shows "log in" or the name).
pub async fn session(Extension(caller): Extension<Caller>) -> Json<Session> {
    Json(Session { name: caller.name })
}

/// Whether the API is served over TLS (its cookie is then `Secure`).
#[derive(Clone, Copy, Debug)]
pub struct Secure(pub bool);
