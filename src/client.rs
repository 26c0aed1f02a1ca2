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

    /// The daemon's SSE stream at `path` (`/api/events`, a run's output),
    /// resumed after the event `last_event_id` if given.
    pub async fn stream(
        &self,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<SseReader, ClientError> {
        let mut request = self.http.get(format!("http://{}{path}", self.info.addr));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let answer = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = answer.status();
        if !status.is_success() {
            return Err(match answer.json::<ErrorBody>().await {
                Ok(body) => ClientError::Refused(body.error),
                Err(_) => ClientError::Refused(status.to_string()),
            });
        }
        Ok(SseReader {
            response: answer,
            pending: String::new(),
        })
    }

    fn unreachable(&self, source: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            addr: self.info.addr,
            pid: self.info.pid,
            source,
        }
    }
}

/// One event of an SSE stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// Its name (`event:`), `message` when it gave none.
    pub event: String,
    /// Its id, if it gave one.
    pub id: Option<String>,
    /// Its data, its lines joined.
    pub data: String,
}

/// Reads a Server-Sent Events stream, event by event.
#[derive(Debug)]
pub struct SseReader {
    response: reqwest::Response,
    pending: String,
}

impl SseReader {
    /// The next event (comments and keep-alives aside); `None` when the
    /// stream has ended.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, reqwest::Error> {
        loop {
            while let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                if let Some(event) = parse_event(&block) {
                    return Ok(Some(event));
                }
            }
            match self.response.chunk().await? {
                Some(chunk) => self.pending.push_str(&String::from_utf8_lossy(&chunk)),
                None => return Ok(None),
            }
        }
    }
}

/// An event of its lines; `None` for a comment or keep-alive.
fn parse_event(block: &str) -> Option<SseEvent> {
    let mut event = SseEvent {
        event: "message".into(),
        id: None,
        data: String::new(),
    };
    let mut has_data = false;
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.event = value.to_string(),
            "id" => event.id = Some(value.to_string()),
            "data" => {
                if has_data {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    has_data.then_some(event)
}
