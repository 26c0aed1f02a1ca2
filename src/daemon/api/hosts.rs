//! The other hosts of a cluster, as this daemon's API reaches them: a run
//! this host may not run is handed on to one that may; a run another host
//! ran has its output there, and it is passed through from there. The
//! hosts share the jobs file, and with it the first of `api.tokens`,
//! shown to the other's API.

use super::ApiError;
use crate::config::cluster::Placement;
use crate::daemon::Shared;
use crate::store::HostRecord;

/// The header of a request one host makes of another for a client of its
/// own: never passed on again.
pub(super) const HANDED_ON: &str = "x-overnight-handed-on";

/// The header naming who a handed-on request acts for, on the host that
/// handed it on (`alice on host a`): recorded with the token's name.
pub(super) const ACTING_FOR: &str = "x-overnight-for";

/// Ends the runs of `job` going on the other hosts (a run of it with
/// `concurrency: replace` starts here), through their APIs; what cannot
/// be ended is said in the daemon's log, and the new run waits for it.
pub(crate) async fn end_elsewhere(shared: &Shared, job: &str) {
    let here = shared.config().cluster.host.clone();
    let running = match shared.store.running().await {
        Ok(running) => running,
        Err(e) => {
            log::warn!(target: "overnight::daemon", "`{job}` (concurrency: replace): its runs on other hosts not looked for: {e}");
            return;
        }
    };
    let who = format!("a newer run of `{job}` (concurrency: replace)");
    for run in running.iter().filter(|r| r.job == job && r.host != here) {
        let what = format!("run #{} of `{job}` runs on", run.id);
        let ended = match OtherHost::named(shared, &run.host, &what, "").await {
            Ok(host) => {
                let path = format!("/api/runs/{}/stop", run.id);
                host.post::<serde_json::Value>(&path, None::<&()>, &who)
                    .await
            }
            Err(e) => Err(e),
        };
        match ended {
            Ok(_) => {
                log::info!(target: "overnight::daemon", "`{job}` (concurrency: replace): run #{} on host `{}` is being stopped", run.id, run.host)
            }
            Err(e) => {
                log::warn!(target: "overnight::daemon", "`{job}` (concurrency: replace): run #{} on host `{}` not stopped: {e}; the new run waits for it", run.id, run.host)
            }
        }
    }
}

/// How long a host that does not take the connection is waited for.
const CONNECT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// The one client this daemon calls the other hosts with: their
/// connections are kept between requests.
fn client() -> Result<&'static reqwest::Client, reqwest::Error> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    let built = crate::exec::http::client_builder()
        .connect_timeout(CONNECT_PATIENCE)
        .build()?;
    Ok(CLIENT.get_or_init(|| built))
}

/// A live host of the cluster other than this one, whose API answers.
#[derive(Debug)]
pub(super) struct OtherHost {
    /// Its name.
    pub(super) name: String,
    /// Where its API answers (`http://batch1:7411`).
    base: String,
    /// The token shown to it.
    token: Option<String>,
}

impl OtherHost {
    /// The first live host other than this one that `fits`.
    pub(super) async fn find(
        shared: &Shared,
        fits: impl Fn(&HostRecord) -> bool,
    ) -> Result<Option<OtherHost>, ApiError> {
        let config = shared.config();
        let hosts = shared.store.hosts().await?;
        Ok(hosts
            .into_iter()
            .filter(|h| h.name != config.cluster.host && fits(h))
            .find_map(|h| {
                Some(OtherHost {
                    base: h.api_url()?,
                    name: h.name,
                    token: config.api.tokens.iter().find_map(|t| t.value.clone()),
                })
            }))
    }

    /// The live host `name`; an error saying `what` is on it (`run #3
    /// ran on`), that it is not up, and `then` what to do.
    pub(super) async fn named(
        shared: &Shared,
        name: &str,
        what: &str,
        then: &str,
    ) -> Result<OtherHost, ApiError> {
        OtherHost::find(shared, |h| h.name == name)
            .await?
            .ok_or_else(|| {
                ApiError::OtherHost(format!(
                    "{what} host `{name}`, which is not up (or registered no address others can reach){then}"
                ))
            })
    }

    /// A live host that `placement` admits, to hand on to it `what` (a
    /// job, a flow) that this host may not run; why there is none.
    pub(super) async fn admitting(
        shared: &Shared,
        placement: &Placement,
        what: &str,
    ) -> Result<OtherHost, ApiError> {
        let found = OtherHost::find(shared, |h| placement.admits_host(&h.name, &h.tags)).await?;
        match found {
            None => Err(ApiError::BadRequest(format!(
                "{what} runs on {}, and no live host of the cluster is one; start one, or run it where it may run",
                placement.describe()
            ))),
            Some(host) if host.token.is_none() => Err(ApiError::BadRequest(format!(
                "{what} runs on {} (host `{}` is up), not here; to hand runs on, give the hosts a shared token in `api.tokens`",
                placement.describe(),
                host.name
            ))),
            Some(host) => Ok(host),
        }
    }

    /// Posts `body` to `path` of its API for `who` and answers with its
    /// answer.
    pub(super) async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&impl serde::Serialize>,
        who: &str,
    ) -> Result<T, ApiError> {
        let mut request = self.request(reqwest::Method::POST, path)?;
        let here = crate::process::hostname();
        if let Ok(acting) = reqwest::header::HeaderValue::from_str(&format!("{who} on host {here}"))
        {
            request = request.header(ACTING_FOR, acting);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request)
            .await?
            .json()
            .await
            .map_err(|e| self.failed(e))
    }

    /// Sends `request` (made by [`OtherHost::request`]); its answer if a
    /// success, else its error as this API's.
    pub(super) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let answer = request.send().await.map_err(|e| self.failed(e))?;
        if !answer.status().is_success() {
            return Err(self.refused(answer).await);
        }
        Ok(answer)
    }

    /// A request of `method` for `path` (and query) of its API.
    pub(super) fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, ApiError> {
        let request = client()
            .map_err(|e| self.failed(e))?
            .request(method, format!("{}{path}", self.base))
            .header(HANDED_ON, "1");
        Ok(match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        })
    }

    /// `e`, said of this host.
    fn failed(&self, e: reqwest::Error) -> ApiError {
        ApiError::OtherHost(format!("host `{}` did not answer: {e}", self.name))
    }

    /// Its answer `answer`, not a success, as an error of this API.
    async fn refused(&self, answer: reqwest::Response) -> ApiError {
        let status = answer.status();
        match answer.json::<super::ErrorBody>().await {
            Ok(super::ErrorBody {
                error,
                run_id: Some(id),
            }) => ApiError::NotRun {
                id,
                why: format!("on host `{}`: {error}", self.name),
            },
            Ok(body) => ApiError::OtherHost(format!("host `{}`: {}", self.name, body.error)),
            Err(_) => ApiError::OtherHost(format!("host `{}`: {status}", self.name)),
        }
    }
}
