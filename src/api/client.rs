//! The CLI's side of the API: reaching a running daemon.

use std::path::Path;

use crate::daemon::info::DaemonInfo;
use crate::report::Report;

use super::ErrorBody;

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

    /// Runs `job` through the daemon and waits for its report.
    pub async fn run(&self, job: &str) -> Result<Report, ClientError> {
        let url = format!("http://{}/api/jobs/{job}/run", self.info.addr);
        let answer = self
            .http
            .post(url)
            .bearer_auth(&self.info.token)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if answer.status().is_success() {
            answer.json().await.map_err(|e| self.unreachable(e))
        } else {
            let status = answer.status();
            let body: Option<ErrorBody> = answer.json().await.ok();
            Err(ClientError::Refused(
                body.map_or_else(|| status.to_string(), |b| b.error),
            ))
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
