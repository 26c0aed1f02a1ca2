//! `GET /api/runs/{id}/output[?from=OFFSET|?tail=LINES][&follow=1]`: a run's output
//! from its capture file, as Server-Sent Events (DESIGN §9).
//!
//! Lines come in batches: a `lines` event, its data a JSON array of
//! `{"at", "stream", "text"}`, its id the byte offset just after its last
//! line: a client that reconnects with `Last-Event-ID` (or `?from=`) goes
//! on from there, missing nothing and seeing nothing twice. (A batch, not
//! an event per line: a million lines cost a follower a few hundred
//! events, not a million.) Without `follow` the stream ends at the end of
//! the file; with it, lines keep coming as the run writes them, and an
//! `end` event (`{"status", "offset"}`) closes the stream once the run has
//! ended. The file is read at the client's pace, in pieces: a slow client
//! holds no more than one piece, and never slows the job.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::watch;

use super::ApiError;
use super::events::Stopping;
use super::hosts::{HANDED_ON, OtherHost};
use crate::capture::parse_line;
use crate::daemon::Shared;
use crate::report::Status;
use crate::store::RunRecord;

/// How much of the file one event carries, at most: a slow client holds
/// a few of them in the API's buffers.
const FRAME: usize = 32 * 1024;

/// How much of the file is read when a line is longer than a frame: more
/// than the longest line a capture file holds (a cut line, its time and
/// its note); a longer one (a report body's log line) comes in pieces.
const PIECE: usize = 2 * crate::exec::lines::MAX_LINE;

/// How often a run of another process (with no tap here) is looked at.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// While the run goes, a follower gets at most a frame this often: a job
/// printing faster than that is not slowed by a hundred followers reading
/// behind it (they catch up at full speed once it has ended), and a page
/// redraws ten times a second at most.
const PACE: Duration = Duration::from_millis(100);

/// A stream with nothing to say this long says a comment, so that neither
/// the API's idle timeout nor a proxy's closes it.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How many formatted pieces are kept for other followers.
const KEPT: usize = 32;

/// The pieces of output last formatted, for every follower that reaches
/// them: a hundred followers of one run read and format each piece once
/// between them. A capture file only grows, so the piece at an offset is
/// the same for whoever reads it.
#[derive(Debug, Default)]
pub(super) struct Pieces(Mutex<VecDeque<Piece>>);

#[derive(Debug)]
struct Piece {
    path: Arc<std::path::Path>,
    from: u64,
    to: u64,
    frame: Bytes,
}

impl Pieces {
    /// The piece of `path` from `from`, if kept: where it ends, its frame.
    fn get(&self, path: &std::path::Path, from: u64) -> Option<(u64, Bytes)> {
        let kept = self.0.lock().expect("pieces");
        kept.iter()
            .find(|p| p.from == from && *p.path == *path)
            .map(|p| (p.to, p.frame.clone()))
    }

    fn keep(&self, piece: Piece) {
        let mut kept = self.0.lock().expect("pieces");
        if kept
            .iter()
            .any(|p| p.from == piece.from && p.path == piece.path)
        {
            return;
        }
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(piece);
    }
}

/// The query of the request.
#[derive(Debug, Default, Deserialize)]
pub(super) struct OutputQuery {
    /// The byte offset to start at.
    from: Option<u64>,
    /// `1` or `true`: keep following while the run goes.
    follow: Option<String>,
    /// Start this many lines before the end (a page opening a long run's
    /// output), unless `from` or `Last-Event-ID` say where.
    tail: Option<u64>,
}

impl OutputQuery {
    /// Whether it asks to follow the run.
    fn follows(&self) -> bool {
        matches!(self.follow.as_deref(), Some("1" | "true" | "yes"))
    }

    /// It as a query string again, for another host's API.
    fn text(&self) -> String {
        let from = self.from.map(|n| format!("from={n}"));
        let tail = self.tail.map(|n| format!("tail={n}"));
        let follow = self.follows().then(|| "follow=1".to_string());
        [from, tail, follow]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// The longest stretch read back from the end to find `tail` lines.
const TAIL_MAX: u64 = 4 * 1024 * 1024;

/// Whether byte `offset` of the capture file at `path` starts a line
/// (or is its end).
fn starts_a_line(path: &std::path::Path, offset: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut before = [0u8];
    file.metadata().is_ok_and(|m| offset <= m.len())
        && file.read_exact_at(&mut before, offset - 1).is_ok()
        && before[0] == b'\n'
}

// An axum handler: each argument is what one extractor gives.
#[allow(clippy::too_many_arguments)]
pub(super) async fn output(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<super::guard::Caller>,
    Path(id): Path<i64>,
    Query(query): Query<OutputQuery>,
    headers: HeaderMap,
    Extension(Stopping(stop)): Extension<Stopping>,
    Extension(pieces): Extension<Arc<Pieces>>,
    Extension(places): Extension<super::events::StreamPlaces>,
) -> Result<Response, ApiError> {
    let place = places.take()?;
    super::read::caught_up(&shared).await;
    let run = shared
        .store
        .run(id)
        .await?
        .ok_or(ApiError::UnknownRun(id))?;
    if shared.store.is_server() && run.host != shared.config().cluster.host {
        // Read there with this host's token: not for a caller who showed
        // none (a loopback reader), nor passed on again.
        if caller.name.is_none() || headers.contains_key(HANDED_ON) {
            return Err(ApiError::Unauthorized);
        }
        return from_its_host(&run, &query, &headers, &shared, stop, place).await;
    }
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let path: Option<Arc<std::path::Path>> = run.capture_path.map(|p| Arc::from(PathBuf::from(p)));
    if let (Some(from @ 1..), Some(path)) = (resumed.or(query.from), &path) {
        let path = Arc::clone(path);
        let starts = tokio::task::spawn_blocking(move || starts_a_line(&path, from))
            .await
            .unwrap_or(false);
        if !starts {
            return Err(ApiError::BadRequest(format!(
                "byte {from} of run #{id}'s output is not where a line starts: give the `id` of a `lines` event, or 0"
            )));
        }
    }
    let tail = match (resumed.or(query.from), query.tail, &path) {
        (None, Some(lines), Some(path)) => {
            let path = Arc::clone(path);
            tokio::task::spawn_blocking(move || {
                crate::capture::tail_start(&std::fs::File::open(&path)?, lines, TAIL_MAX)
            })
            .await
            .ok()
            .and_then(Result::ok)
        }
        _ => None,
    };
    let follower = Follower {
        shared,
        id,
        path,
        pieces,
        offset: resumed.or(query.from).or(tail).unwrap_or(0),
        follow: query.follows(),
        tap: None,
        sent: None,
        stop,
        over: false,
        _place: place,
    };
    let stream = futures_util::stream::unfold(follower, |mut f| async move {
        let frame = f.next().await?;
        Some((Ok::<_, Infallible>(frame), f))
    });
    Ok(event_stream(Body::from_stream(stream)))
}

/// The output of `run`, which another host of the cluster ran (its
/// capture file is there), as that host's API streams it: the client's
/// `query` and `Last-Event-ID` passed on, its frames passed back as they
/// come, until it ends or this daemon stops.
async fn from_its_host(
    run: &RunRecord,
    query: &OutputQuery,
    headers: &HeaderMap,
    shared: &Shared,
    stop: watch::Receiver<bool>,
    place: tokio::sync::OwnedSemaphorePermit,
) -> Result<Response, ApiError> {
    let what = format!("run #{} ran on", run.id);
    let then = format!(
        "; its output is there: `overnight logs {}` on that host",
        run.id
    );
    let host = OtherHost::named(shared, &run.host, &what, &then).await?;
    let query = query.text();
    let mut request = host.request(
        reqwest::Method::GET,
        &format!("/api/runs/{}/output?{query}", run.id),
    )?;
    if let Some(resumed) = headers.get("last-event-id") {
        request = request.header("last-event-id", resumed);
    }
    let answer = host.send(request).await?;
    let stream = futures_util::stream::unfold(
        (answer, stop, place),
        |(mut answer, mut stop, place)| async move {
            let frame = tokio::select! {
                frame = answer.chunk() => frame.ok()??,
                _ = stop.wait_for(|s| *s) => return None,
            };
            Some((Ok::<_, Infallible>(frame), (answer, stop, place)))
        },
    );
    Ok(event_stream(Body::from_stream(stream)))
}

/// `body` as a stream of Server-Sent Events: not cached, not held back by
/// a proxy (nginx buffers answers unless told).
pub(super) fn event_stream(body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

/// One client following one run's output.
struct Follower {
    shared: Arc<Shared>,
    id: i64,
    path: Option<Arc<std::path::Path>>,
    pieces: Arc<Pieces>,
    /// Where the next line starts.
    offset: u64,
    follow: bool,
    /// The run's output growing, while it runs in this daemon.
    tap: Option<watch::Receiver<u64>>,
    /// When the last frame went while the run was going.
    sent: Option<Instant>,
    stop: watch::Receiver<bool>,
    over: bool,
    /// Its place among the streams served.
    _place: tokio::sync::OwnedSemaphorePermit,
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
    /// The next event (or a comment, to keep the stream open), or `None`
    /// once the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            // A stopping daemon waits for no client to catch up.
            if self.over || *self.stop.borrow() {
                return None;
            }
            // Listening before reading: a batch written after the read
            // wakes the wait below.
            self.listen();
            if self.running_here() {
                if !self.paced().await {
                    return None;
                }
                if let Some(lines) = self.read().await {
                    self.sent = Some(Instant::now());
                    return Some(lines);
                }
            } else if let Some(lines) = self.read().await {
                return Some(lines);
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
                if let Some(lines) = self.read().await {
                    return Some(lines);
                }
                self.over = true;
                let status = status.map_or("unknown", Status::as_str);
                let data = serde_json::json!({"status": status, "offset": self.offset});
                return Some(Bytes::from(format!("event: end\ndata: {data}\n\n")));
            }
            match self.wait().await {
                Waited::Grew => {}
                Waited::Quiet => return Some(Bytes::from_static(b":\n\n")),
                Waited::Stopping => return None,
            }
        }
    }

    /// Whether an attempt of the run is going in this daemon.
    fn running_here(&self) -> bool {
        self.tap
            .as_ref()
            .is_some_and(|tap| tap.has_changed().is_ok())
    }

    /// Waits until a [`PACE`] has passed since the last frame; false if
    /// the daemon stops meanwhile.
    async fn paced(&mut self) -> bool {
        let Some(sent) = self.sent else { return true };
        let left = PACE.saturating_sub(sent.elapsed());
        if left.is_zero() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(left) => true,
            _ = self.stop.wait_for(|s| *s) => false,
        }
    }

    /// Takes the run's tap while an attempt of it runs in this daemon.
    fn listen(&mut self) {
        if self.tap.is_none() {
            self.tap = self.shared.runner.live().output(self.id);
        }
    }

    /// The next piece of whole lines as one event, if any is written:
    /// the one another follower formatted, or read now. A line longer
    /// than a piece (a report body's log line is not cut) comes a piece
    /// at a time.
    async fn read(&mut self) -> Option<Bytes> {
        let path = self.path.clone()?;
        if let Some((to, frame)) = self.pieces.get(&path, self.offset) {
            self.offset = to;
            return Some(frame);
        }
        let bytes = whole_lines(Arc::clone(&path), self.offset).await?;
        let from = self.offset;
        self.offset += bytes.len() as u64;
        let frame = lines_frame(self.offset, &bytes);
        self.pieces.keep(Piece {
            path,
            from,
            to: self.offset,
            frame: frame.clone(),
        });
        Some(frame)
    }

    /// Where the run stands: going while this daemon's tap on it is open,
    /// else as recorded (the journal folded in, runs whose wrapper died
    /// closed as lost first).
    async fn seen(&mut self) -> Seen {
        if self.running_here() {
            return Seen::Running;
        }
        super::read::caught_up(&self.shared).await;
        match self.shared.store.run(self.id).await {
            Ok(Some(run)) if run.status == Status::Running => Seen::Running,
            Ok(run) => Seen::Ended(run.map(|r| r.status)),
            Err(_) => Seen::Unknown,
        }
    }

    /// Waits for more output, or the run's end, or the daemon's stop, at
    /// most [`KEEP_ALIVE`].
    async fn wait(&mut self) -> Waited {
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
            () = grew => Waited::Grew,
            () = tokio::time::sleep(KEEP_ALIVE) => Waited::Quiet,
            _ = self.stop.wait_for(|s| *s) => Waited::Stopping,
        }
    }
}

/// How a follower's wait ended.
enum Waited {
    /// More output, or the attempt ended: looked at again.
    Grew,
    /// Nothing for [`KEEP_ALIVE`].
    Quiet,
    /// The daemon stops.
    Stopping,
}

/// The whole lines of `path` from `offset`, up to a [`FRAME`] of them
/// (one line longer than that: up to a [`PIECE`]); `None` if none is
/// written yet. The run may be halfway through writing the last line: it
/// is left for later.
async fn whole_lines(path: Arc<std::path::Path>, offset: u64) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let read = move || {
        let file = std::fs::File::open(&path).ok()?;
        let mut bytes = vec![0; FRAME];
        let mut read = file.read_at(&mut bytes, offset).ok()?;
        if read == FRAME && memchr::memchr(b'\n', &bytes).is_none() {
            bytes.resize(PIECE, 0);
            read += file
                .read_at(&mut bytes[FRAME..], offset + FRAME as u64)
                .ok()?;
        }
        let end = match memchr::memrchr(b'\n', &bytes[..read]) {
            Some(end) => end + 1,
            None if read == PIECE => PIECE,
            None => return None,
        };
        bytes.truncate(end);
        Some(bytes)
    };
    tokio::task::spawn_blocking(read).await.ok().flatten()
}

/// The `lines` event of `whole` (lines, each ending in a newline but
/// perhaps the last), as sent: its id `after`, the offset past them.
fn lines_frame(after: u64, whole: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(whole);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    // The keys and quotes of each line: room enough unless texts need
    // escapes.
    let lines = memchr::memchr_iter(b'\n', whole).count() + 1;
    let mut frame = Vec::with_capacity(64 + whole.len() + 32 * lines);
    let _ = write!(frame, "event: lines\nid: {after}\ndata: [");
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            frame.push(b',');
        }
        serde_json::to_writer(&mut frame, &parse_line(line)).expect("a line serialises");
    }
    // JSON says a newline as `\n`: the data is one line.
    frame.extend_from_slice(b"]\n\n");
    Bytes::from(frame)
}
