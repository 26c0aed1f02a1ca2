//! The CLI's side of the API: reaching a running daemon.

use std::path::Path;

use crate::daemon::info::DaemonInfo;
use crate::runner::{NotStarted, Outcome};

use crate::daemon::api::ErrorBody;

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

    fn unreachable(&self, source: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            addr: self.info.addr,
            pid: self.info.pid,
            source,
        }
    }
}
