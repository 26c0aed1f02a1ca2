//! What happens during a run, as one stream of events.
//!
//! Every executor produces [`RunEvent`]s and every sink consumes them; the
//! report is a fold of them. Nothing downstream knows which executor ran.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::status::Status;

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of a job's output, as printed.
#[derive(Clone, Debug)]
pub struct Line {
    /// When the runner read it.
    pub at: DateTime<Utc>,
    /// Which pipe.
    pub stream: Stream,
    /// The text, lossily decoded, without its newline.
    pub text: String,
    /// Bytes dropped from the end of an over-long line; 0 for a whole line.
    pub cut: u64,
    /// The line was a protocol command (`::warning::…`): its meaning follows
    /// as its own event, and it is not an ordinary log line.
    pub protocol: bool,
}

/// A message the job reported: an error, a warning, a notice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// What happened.
    pub message: String,
    /// The job's own code for it, if it gave one (`code=` parameter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When it was reported.
    pub at: DateTime<Utc>,
    /// Other `key=value` parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

/// How far a long run has come.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// When it was reported.
    pub at: DateTime<Utc>,
    /// Percent done, 0 to 100, when the job said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// What it is doing.
    pub message: String,
}

/// The kinds of [`Entry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Makes the run failed unless it declares otherwise.
    Error,
    /// Makes the run a warning unless it declares otherwise.
    Warning,
    /// Informational.
    Notice,
    /// Diagnostic, logged at DEBUG.
    Debug,
}

/// One thing that happened during a run.
#[derive(Clone, Debug)]
pub enum RunEvent {
    /// A line of output.
    Line(Line),
    /// An error, warning, notice or debug message.
    Entry(EntryKind, Entry),
    /// A progress update.
    Progress(Progress),
    /// The status the job declares for itself.
    Status(Status),
    /// The job's own one-line summary of the run.
    Summary(String),
    /// A `key=value` detail for the report.
    Detail(String, serde_json::Value),
}

impl RunEvent {
    /// An entry of `kind` saying `message`, stamped now: what the runner
    /// itself reports about a run (a start failure, a cut body, …).
    pub fn entry(kind: EntryKind, message: String) -> RunEvent {
        RunEvent::Entry(
            kind,
            Entry {
                message,
                code: None,
                at: chrono::Utc::now(),
                fields: BTreeMap::new(),
            },
        )
    }
}
