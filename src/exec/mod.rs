//! One attempt of a job: start it, read what it says, end it.
//!
//! An executor turns a job into [`RunEvent`] batches on a channel and
//! returns how the work ended as an [`Exit`]. The channel is bounded: when
//! the sinks fall behind, the executor stops reading and the job waits on
//! its pipe or socket, so memory stays bounded whatever the job sends.
//! Both executors — a command, an HTTP request — produce the same events.

pub mod command;
pub mod http;
pub mod lines;
pub mod protocol;
pub(crate) mod redact;

use std::fmt;
use std::path::Path;

use chrono::Utc;
use tokio::sync::{mpsc, watch};

use crate::config::{Action, Job};
use crate::event::{EntryKind, RunEvent};
use crate::report::Exit;
use crate::report::body;

/// Where an executor sends its events, a batch at a time.
pub type EventSender = mpsc::Sender<Vec<RunEvent>>;

/// Carries the reason once a running attempt must be ended (the daemon
/// stops, a newer run replaces it).
pub type StopSignal = watch::Receiver<Option<StopReason>>;

/// Why a running attempt is ended before its job is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `concurrency: replace`: a newer fire of the job takes its place.
    Replaced,
    /// The daemon is stopping and does not wait for the job.
    Shutdown,
    /// The one-shot command running it got this signal.
    Signal(i32),
    /// An operator stopped it (the name of the API token used).
    Operator(String),
    /// The cluster declared this host dead (silent past
    /// `cluster.host_timeout`): its runs are another host's now.
    Fenced,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Replaced => f.write_str("replaced: a newer run of the job started"),
            StopReason::Shutdown => f.write_str("shutdown: ended by the daemon stopping"),
            StopReason::Signal(number) => {
                write!(f, "terminated by {}", crate::process::signal_name(*number))
            }
            StopReason::Operator(who) => write!(f, "stopped by {who}"),
            StopReason::Fenced => f.write_str(
                "fenced: the cluster declared this host dead (silent past `cluster.host_timeout`), so its fires and locks are another host's; the job was ended",
            ),
        }
    }
}

/// How many batches may wait for the sinks.
pub const EVENT_BACKLOG: usize = 4;

/// The largest `$OVERNIGHT_REPORT` file read.
const MAX_REPORT_FILE: u64 = 10 * 1000 * 1000;

/// One attempt of a job, as the runner hands it to an executor.
#[derive(Debug)]
pub struct Attempt<'a> {
    /// The job.
    pub job: &'a Job,
    /// The `OVERNIGHT_*` variables of this attempt.
    pub env: &'a [(String, String)],
    /// Where the job may write its report (`$OVERNIGHT_REPORT`).
    pub report_file: &'a Path,
    /// The run's lock descriptors, handed to the job's process.
    pub lock_fds: &'a [std::os::fd::BorrowedFd<'a>],
    /// Ends the attempt early when it carries a reason.
    pub stop: StopSignal,
    /// Told the pid of the job's process once it is started.
    pub spawned: Option<tokio::sync::oneshot::Sender<u32>>,
}

impl Attempt<'_> {
    /// One of the attempt's `OVERNIGHT_*` variables, when it has a value.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// Runs one attempt to its end, whatever the job's kind.
pub async fn run(mut attempt: Attempt<'_>, events: EventSender) -> Exit {
    let exit = match &attempt.job.action {
        Action::Command(spec) => command::run(&mut attempt, spec, events.clone()).await,
        Action::Http(spec) => http::run(&attempt, spec, events.clone()).await,
    };
    read_report_file(attempt.report_file, &events).await;
    exit
}

/// The job's `$OVERNIGHT_REPORT` file, if it wrote one, as events. Read
/// through one descriptor (never a symlink), at most `MAX_REPORT_FILE`
/// bytes of it: a process the job left behind may still be writing.
async fn read_report_file(path: &Path, events: &EventSender) {
    // Usually there is no file: one failed open, no hop to the blocking
    // pool. Opened without waiting (a FIFO the job made would block the
    // open until a writer came), and read only when a regular file.
    let Ok(file) = crate::state::open_read_nonblocking(path) else {
        return;
    };
    if !file.metadata().is_ok_and(|meta| meta.is_file()) {
        let message = format!(
            "the report file `{}` is not a regular file and was not read",
            path.display()
        );
        let _ = events
            .send(vec![RunEvent::entry(EntryKind::Error, message)])
            .await;
        return;
    }
    let now = Utc::now();
    let read = tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_REPORT_FILE + 1),
            &mut bytes,
        )
        .map(|_| bytes)
    })
    .await
    .expect("a read does not panic");
    let batch = match read {
        Ok(bytes) if bytes.len() as u64 > MAX_REPORT_FILE => vec![RunEvent::entry(
            EntryKind::Error,
            format!(
                "the report file `{}` is over {MAX_REPORT_FILE} bytes and was not read",
                path.display()
            ),
        )],
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) if text.trim().is_empty() => return,
            Ok(text) => {
                let parsed = if text.trim_start().starts_with('<') {
                    body::parse_xml(&text, now)
                } else {
                    body::parse_json(&text, now)
                };
                parsed.unwrap_or_else(|e| {
                    vec![RunEvent::entry(
                        EntryKind::Error,
                        format!("$OVERNIGHT_REPORT ({}): {e}", path.display()),
                    )]
                })
            }
            Err(_) => vec![RunEvent::entry(
                EntryKind::Error,
                format!(
                    "the report file `{}` is not UTF-8 text and was not read",
                    path.display()
                ),
            )],
        },
        Err(e) => vec![RunEvent::entry(
            EntryKind::Error,
            format!("cannot read the report file `{}`: {e}", path.display()),
        )],
    };
    let _ = events.send(batch).await;
}
