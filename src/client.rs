//! The CLI's side of the API: reaching a running daemon.

use std::path::Path;

use crate::daemon::info::DaemonInfo;
use crate::runner::{NotStarted, Outcome};

use crate::daemon::api::ErrorBody;
use crate::daemon::api::act::{FlowCommand, FlowStarted};
use crate::store::FlowRecord;

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon could not be reached.
    #[error("cannot reach the daemon at {at}: {source}; is it still running?")]
    Unreachable {
        /// Where it was looked for (with its pid, on this machine).
        at: String,
        /// The reason.
        source: reqwest::Error,
    },
    /// The daemon answered with an error.
    #[error("the daemon said: {0}")]
    Refused(String),
}

/// The variable holding an API token for reading another host's API.
pub const TOKEN_VARIABLE: &str = "OVERNIGHT_API_TOKEN";

/// A connection to a daemon: the one of a state directory, or another
/// host's of a cluster.
#[derive(Clone, Debug)]
pub struct Client {
    /// Where its API answers (`http://127.0.0.1:7411`).
    base: String,
    /// Its pid, on this machine; 0 for another host's.
    pid: u32,
    /// The token shown to it; empty: none.
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// The daemon of `state_dir`, if one is running.
    pub fn find(state_dir: &Path) -> Option<Client> {
        let DaemonInfo { pid, addr, token } = DaemonInfo::read(state_dir)?;
        let http = crate::exec::http::client_builder().build().ok()?;
        Some(Client {
            base: format!("http://{addr}"),
            pid,
            token,
            http,
        })
    }

    /// The daemon of another host of a cluster, whose API answers at
    /// `base` (as its `hosts` row says), shown `token` (empty: none).
    pub fn of_host(base: String, token: String) -> Option<Client> {
        let http = crate::exec::http::client_builder().build().ok()?;
        Some(Client {
            base,
            pid: 0,
            token,
            http,
        })
    }

    /// The API of live host `host` among a cluster's `hosts`, shown the
    /// token of `$OVERNIGHT_API_TOKEN`, when it is not the daemon of
    /// `state_dir` and says where it answers.
    pub fn of_cluster_host(
        hosts: &[crate::store::HostRecord],
        host: &str,
        state_dir: &Path,
    ) -> Option<Client> {
        let ours = Client::find(state_dir).map(|c| c.base);
        let (_, found) = Client::in_cluster(hosts, |h| h.name == host)?;
        (ours.as_deref() != Some(found.base.as_str())).then_some(found)
    }

    /// The API of the first live host among a cluster's `hosts` that
    /// `fits` and says where it answers, with its name; shown the token
    /// of `$OVERNIGHT_API_TOKEN`.
    pub fn in_cluster(
        hosts: &[crate::store::HostRecord],
        fits: impl Fn(&crate::store::HostRecord) -> bool,
    ) -> Option<(String, Client)> {
        let (name, url) = hosts
            .iter()
            .filter(|h| fits(h))
            .find_map(|h| Some((h.name.clone(), h.api_url()?)))?;
        let token = std::env::var(TOKEN_VARIABLE).unwrap_or_default();
        Some((name, Client::of_host(url, token)?))
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Runs `job` through the daemon and waits for its end.
    pub async fn run(&self, job: &str) -> Result<Outcome, ClientError> {
        let url = format!("{}/api/jobs/{job}/run", self.base);
        let answer = self
            .http
            .post(url)
            .bearer_auth(&self.token)
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
        let url = format!("{}/api/flows/{flow}/start", self.base);
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
        let url = format!("{}/api/flow-runs/{id}/{action}", self.base);
        self.post(url, Some(command)).await
    }

    /// A state-changing call with the token; its answer, or the daemon's
    /// error as `Refused`.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        url: String,
        body: Option<&FlowCommand>,
    ) -> Result<T, ClientError> {
        let mut request = self.http.post(url).bearer_auth(&self.token);
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
        let mut request = self.http.get(format!("{}{path}", self.base));
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
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
            buffer: SseBuffer::default(),
        })
    }

    fn unreachable(&self, source: reqwest::Error) -> ClientError {
        let at = match self.pid {
            0 => self.base.clone(),
            pid => format!("{} (pid {pid})", self.base),
        };
        ClientError::Unreachable { at, source }
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
    buffer: SseBuffer,
}

impl SseReader {
    /// The next event (comments and keep-alives aside); `None` when the
    /// stream has ended.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, reqwest::Error> {
        loop {
            if let Some(event) = self.buffer.event() {
                return Ok(Some(event));
            }
            match self.response.chunk().await? {
                Some(chunk) => self.buffer.push(&chunk),
                None => return Ok(None),
            }
        }
    }
}

/// The bytes of an SSE stream not yet made into events.
#[derive(Debug, Default)]
struct SseBuffer {
    /// Carriage returns taken out: the three line ends SSE allows are one.
    pending: Vec<u8>,
    /// The last byte was a carriage return (a `\r\n` split across chunks
    /// is one line end).
    last_cr: bool,
}

impl SseBuffer {
    fn push(&mut self, chunk: &[u8]) {
        for &b in chunk {
            match b {
                b'\r' => self.pending.push(b'\n'),
                b'\n' if self.last_cr => {}
                _ => self.pending.push(b),
            }
            self.last_cr = b == b'\r';
        }
    }

    /// The next whole event, comments and keep-alives aside. Decoded as a
    /// whole: a character split across chunks is whole again here.
    fn event(&mut self) -> Option<SseEvent> {
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.pending.drain(..end + 2).collect();
            if let Some(event) = parse_event(&String::from_utf8_lossy(&block)) {
                return Some(event);
            }
        }
        None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_come_whole_whatever_the_line_ends_and_the_chunks() {
        let mut buffer = SseBuffer::default();
        let text = "event: line\r\nid: 12\r\ndata: {\"text\": \"caf\u{e9}\"}\r\n\r\n: keep-alive\n\ndata: a\rdata: b\r\r";
        let bytes = text.as_bytes();
        // In pieces that split the CRLF and the two bytes of `é`.
        let cut = bytes.iter().position(|&b| b == 0xc3).unwrap() + 1;
        buffer.push(&bytes[..cut]);
        assert_eq!(buffer.event(), None);
        buffer.push(&bytes[cut..cut + 10]);
        buffer.push(&bytes[cut + 10..]);
        assert_eq!(
            buffer.event(),
            Some(SseEvent {
                event: "line".into(),
                id: Some("12".into()),
                data: "{\"text\": \"caf\u{e9}\"}".into(),
            })
        );
        let next = buffer.event().unwrap();
        assert_eq!(
            (next.event.as_str(), next.data.as_str()),
            ("message", "a\nb")
        );
        assert_eq!(buffer.event(), None);
    }
}
