//! The CLI's side of the API: reaching a running daemon.

use std::path::Path;

use crate::daemon::info::DaemonInfo;
use crate::runner::{NotStarted, Outcome};

use crate::daemon::api::{ErrorBody, FlowCommand, FlowStarted};
use crate::store::FlowRecord;

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon could not be reached.
    #[error("cannot reach the daemon at {addr} (pid {pid}): {source}; is it still running?")]
    Unreachable {
        /// Its address.
        addr: std::net::SocketAddr,
        /// Its pid.
        pid: u32,
        /// The reason.
        source: reqwest::Error,
    },
    /// The daemon answered with an error.
    #[error("the daemon said: {0}")]
    Refused(String),
}

/// A connection to the daemon of one state directory.
#[derive(Debug)]
pub struct Client {
    info: DaemonInfo,
    http: reqwest::Client,
}

impl Client {
    /// The daemon of `state_dir`, if one is running.
    pub fn find(state_dir: &Path) -> Option<Client> {
        let info = DaemonInfo::read(state_dir)?;
        let http = crate::exec::http::client_builder().build().ok()?;
        Some(Client { info, http })
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.info.pid
    }

    /// Runs `job` through the daemon and waits for its end.
    pub async fn run(&self, job: &str) -> Result<Outcome, ClientError> {
        let url = format!("http://{}/api/jobs/{job}/run", self.info.addr);
        let answer = self
            .http
            .post(url)
            .bearer_auth(&self.info.token)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if answer.status().is_success() {
            return answer
                .json()
                .await
                .map(Outcome::Ran)
                .map_err(|e| self.unreachable(e));
        }
        let status = answer.status();
        match answer.json::<ErrorBody>().await {
            Ok(ErrorBody {
                error,
                run_id: Some(id),
            }) => Ok(Outcome::NotRun {
                id,
                why: NotStarted::Daemon(error),
            }),
            Ok(body) => Err(ClientError::Refused(body.error)),
            Err(_) => Err(ClientError::Refused(status.to_string())),
        }
    }

    /// Starts a run of `flow` through the daemon; its id.
    pub async fn start_flow(&self, flow: &str) -> Result<i64, ClientError> {
        let url = format!("http://{}/api/flows/{flow}/start", self.info.addr);
        let started: FlowStarted = self.post(url, None).await?;
        Ok(started.flow_run_id)
    }

    /// Gives an operator's command (`resume`, `retry`, …) to flow run `id`;
    /// the run as it stands after.
    pub async fn flow_command(
        &self,
        id: i64,
        action: &str,
        command: &FlowCommand,
    ) -> Result<FlowRecord, ClientError> {
        let url = format!("http://{}/api/flow-runs/{id}/{action}", self.info.addr);
        self.post(url, Some(command)).await
    }

    /// A state-changing call with the token; its answer, or the daemon's
    /// error as `Refused`.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        url: String,
        body: Option<&FlowCommand>,
    ) -> Result<T, ClientError> {
        let mut request = self.http.post(url).bearer_auth(&self.info.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = answer.status();
        if status.is_success() {
            return answer.json().await.map_err(|e| self.unreachable(e));
        }
        match answer.json::<ErrorBody>().await {
            Ok(body) => Err(ClientError::Refused(body.error)),
            Err(_) => Err(ClientError::Refused(status.to_string())),
        }
    }

    fn unreachable(&self, source: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            addr: self.info.addr,
            pid: self.info.pid,
            source,
        }
    }
}
