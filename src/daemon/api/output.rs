//! `GET /api/runs/{id}/output[?from=OFFSET][&follow=1]`: a run's output
//! from its capture file, as Server-Sent Events (DESIGN §9).
//!
//! Each line is a `line` event, its data `{"at", "stream", "text"}`, its
//! id the byte offset just after it: a client that reconnects with
//! `Last-Event-ID` (or `?from=`) goes on from there, missing nothing and
//! seeing nothing twice. Without `follow` the stream ends at the end of
//! the file; with it, lines keep coming as the run writes them, and an
//! `end` event (`{"status", "offset"}`) closes the stream once the run has
//! ended. The file is read at the client's pace, in pieces: a slow client
//! holds no more than one piece, and never slows the job.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use super::ApiError;
use super::events::Stopping;
use crate::capture::parse_line;
use crate::daemon::Shared;
use crate::report::Status;

/// How much of the file is read at once: more than the longest line a
/// capture file holds (a cut line, its time and its note).
const PIECE: usize = 2 * crate::exec::lines::MAX_LINE;

/// How often a run of another process (with no tap here) is looked at.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// The query of the request.
#[derive(Debug, Default, Deserialize)]
pub(super) struct OutputQuery {
    /// The byte offset to start at.
    from: Option<u64>,
    /// `1` or `true`: keep following while the run goes.
    follow: Option<String>,
}

pub(super) async fn output(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<i64>,
    Query(query): Query<OutputQuery>,
    headers: HeaderMap,
    Extension(Stopping(stop)): Extension<Stopping>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let store = shared.runner.recorder().store().await?;
    let run = store.run(id).await?.ok_or(ApiError::UnknownRun(id))?;
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let follower = Follower {
        shared,
        id,
        path: run.capture_path.map(PathBuf::from),
        offset: resumed.or(query.from).unwrap_or(0),
        follow: matches!(query.follow.as_deref(), Some("1" | "true" | "yes")),
        lines: VecDeque::new(),
        tap: None,
        stop,
        over: false,
    };
    let stream = futures_util::stream::unfold(follower, |mut f| async move {
        let event = f.next().await?;
        Some((Ok(event), f))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One client following one run's output.
struct Follower {
    shared: Arc<Shared>,
    id: i64,
    path: Option<PathBuf>,
    /// Where the next line starts.
    offset: u64,
    follow: bool,
    /// Lines read and not sent yet, each with the offset after it.
    lines: VecDeque<(u64, String)>,
    /// The run's output growing, while it runs in this daemon.
    tap: Option<watch::Receiver<u64>>,
    stop: watch::Receiver<bool>,
    over: bool,
}

/// Where the run stands, as the follower sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Seen {
    /// Going: more may come.
    Running,
    /// Ended so (`None`: no such run in the history).
    Ended(Option<Status>),
    /// The history could not be read just now: looked at again.
    Unknown,
}

impl Follower {
    /// The next event, or `None` once the stream is over.
    async fn next(&mut self) -> Option<Event> {
        loop {
            // A stopping daemon waits for no client to catch up.
            if self.over || *self.stop.borrow() {
                return None;
            }
            if let Some((after, line)) = self.lines.pop_front() {
                return Some(line_event(after, &line));
            }
            // Listening before reading: a batch written after the read
            // wakes the wait below.
            self.listen();
            if self.read().await > 0 {
                continue;
            }
            // At the end of what is written.
            let seen = self.seen().await;
            let ended = match seen {
                Seen::Ended(status) => Some(status),
                _ if !self.follow => Some(None),
                _ => None,
            };
            if let Some(status) = ended {
                // One more look: the last lines may have come with the end.
                if self.read().await > 0 {
                    continue;
                }
                self.over = true;
                let status = status.map_or("unknown", Status::as_str);
                let data = serde_json::json!({"status": status, "offset": self.offset});
                return Some(Event::default().event("end").data(data.to_string()));
            }
            if !self.wait().await {
                return None;
            }
        }
    }

    /// Takes the run's tap while an attempt of it runs in this daemon.
    fn listen(&mut self) {
        if self.tap.is_none() {
            self.tap = self.shared.runner.live().output(self.id);
        }
    }

    /// Reads the next piece of whole lines; how many. A line longer than a
    /// piece (a report body's log line is not cut) comes a piece at a time.
    async fn read(&mut self) -> usize {
        let Some(path) = &self.path else { return 0 };
        let Ok(mut file) = tokio::fs::File::open(path).await else {
            return 0;
        };
        let mut bytes = vec![0; PIECE];
        let read = match file.seek(SeekFrom::Start(self.offset)).await {
            Ok(_) => file.read(&mut bytes).await.unwrap_or(0),
            Err(_) => 0,
        };
        bytes.truncate(read);
        // Whole lines only: the run may be halfway through writing one.
        let end = match memchr::memrchr(b'\n', &bytes) {
            Some(end) => end,
            None if read == PIECE => {
                self.offset += read as u64;
                let piece = String::from_utf8_lossy(&bytes).into_owned();
                self.lines.push_back((self.offset, piece));
                return 1;
            }
            None => return 0,
        };
        let mut count = 0;
        for line in bytes[..end].split(|&b| b == b'\n') {
            self.offset += line.len() as u64 + 1;
            self.lines
                .push_back((self.offset, String::from_utf8_lossy(line).into_owned()));
            count += 1;
        }
        count
    }

    /// Where the run stands: going while this daemon's tap on it is open,
    /// else as recorded (the journal folded in, runs whose wrapper died
    /// closed as lost first).
    async fn seen(&mut self) -> Seen {
        if self
            .tap
            .as_ref()
            .is_some_and(|tap| tap.has_changed().is_ok())
        {
            return Seen::Running;
        }
        let Ok(store) = self.shared.runner.recorder().store().await else {
            return Seen::Unknown;
        };
        match store.close_lost(self.shared.runner.host(), false).await {
            Ok(closed) => closed
                .into_iter()
                .for_each(|report| crate::daemon::recover::notify(&self.shared, Some(report))),
            Err(_) => return Seen::Unknown,
        }
        match store.run(self.id).await {
            Ok(Some(run)) if run.status == Status::Running => Seen::Running,
            Ok(run) => Seen::Ended(run.map(|r| r.status)),
            Err(_) => Seen::Unknown,
        }
    }

    /// Waits for more output, or the run's end; false when the daemon
    /// stops.
    async fn wait(&mut self) -> bool {
        let grew = async {
            match &mut self.tap {
                Some(tap) => {
                    if tap.changed().await.is_err() {
                        // The attempt ended: looked at again from the top.
                        self.tap = None;
                    }
                }
                None => tokio::time::sleep(LOOK_EVERY).await,
            }
        };
        tokio::select! {
            () = grew => true,
            _ = self.stop.wait_for(|s| *s) => false,
        }
    }
}

/// A `line` event: its id the offset after it.
fn line_event(after: u64, line: &str) -> Event {
    let parsed = parse_line(line);
    let data = serde_json::json!({
        "at": parsed.at,
        "stream": parsed.stream,
        "text": parsed.text,
    });
    Event::default()
        .id(after.to_string())
        .event("line")
        .data(data.to_string())
}
