//! The completion report of a run, and the rule that decides its status.
//!
//! A [`Report`] is built by [`ReportBuilder`] folding the run's events; the
//! status follows DESIGN §4: a failed exit is failed whatever the job says,
//! a declared status decides otherwise, and without one errors make the run
//! failed and warnings make it a warning.

pub mod body;
pub mod fold;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use fold::{MAX_ENTRIES, ReportBuilder, RunHeader};

use crate::event::{Entry, Progress};
pub use crate::status::Status;
use crate::zone::Zone;

/// How a run's work ended, as seen from outside the job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The exit code, when the process exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Why the runner ended it or could not start it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For an HTTP job, the response's status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// For an HTTP job, the status its response code gives (its class, or
    /// the job's `status_map`); it plays the part of the exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Status>,
}

impl Exit {
    /// Whether the exit alone makes the run failed (`warning_codes` only
    /// soften it to a warning).
    pub fn failed(&self, warning_codes: &[i32]) -> bool {
        self.reason.is_some()
            || self.signal.is_some()
            || self.base == Some(Status::Failed)
            || self
                .code
                .is_some_and(|c| c != 0 && !warning_codes.contains(&c))
    }

    fn softened(&self, warning_codes: &[i32]) -> bool {
        self.base == Some(Status::Warning) || self.code.is_some_and(|c| warning_codes.contains(&c))
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.reason, self.signal, self.http_status, self.code) {
            (Some(reason), ..) => f.write_str(reason),
            (None, Some(sig), ..) => {
                write!(f, "killed by {}", crate::process::signal_name(sig))
            }
            (None, None, Some(http), _) => write!(f, "HTTP {http}"),
            (None, None, None, Some(code)) => write!(f, "exit {code}"),
            (None, None, None, None) => f.write_str("no exit"),
        }
    }
}

/// The status rule of DESIGN §4.
pub fn decide(
    exit: &Exit,
    warning_codes: &[i32],
    declared: Option<Status>,
    errors: u64,
    warnings: u64,
) -> Status {
    if exit.failed(warning_codes) {
        return Status::Failed;
    }
    let own = declared.unwrap_or(if errors > 0 {
        Status::Failed
    } else if warnings > 0 {
        Status::Warning
    } else {
        Status::Success
    });
    if exit.softened(warning_codes) {
        own.max(Status::Warning)
    } else {
        own
    }
}

/// A time as people read it: in the job's zone, to the second, with its
/// offset (`2026-03-29 02:30:00 +01:00`). `--json` output is RFC 3339.
pub fn human_time(at: DateTime<Utc>, zone: &Zone) -> String {
    at.with_timezone(zone)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// How long from `start` to `end`, as people read it: `0.4s`, `12.0s`, `3m 04s`, `2h 05m`.
pub fn span(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let ms = (end - start).num_milliseconds().max(0);
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{:.1}s", ms as f64 / 1000.0),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Its schedule fired.
    Schedule,
    /// `overnight run` or the API.
    Manual,
    /// `overnight exec` wrapped a command.
    Exec,
    /// A fire missed while the daemon was down, run by its catch-up policy.
    CatchUp,
    /// `@reboot`: the daemon started.
    Reboot,
    /// A step of a flow run.
    Flow,
    /// A trigger rule's `start_flow:` (flow runs only).
    Rule,
}

impl Trigger {
    /// The name used in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Exec => "exec",
            Trigger::CatchUp => "catch-up",
            Trigger::Reboot => "reboot",
            Trigger::Flow => "flow",
            Trigger::Rule => "rule",
        }
    }
}

/// The output side of a report: how much there was and where it is kept.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogSummary {
    /// Lines read from stdout.
    pub stdout_lines: u64,
    /// Lines read from stderr.
    pub stderr_lines: u64,
    /// Lines cut at the line-length cap.
    pub cut_lines: u64,
    /// The capture file holding every line with its time and stream.
    #[serde(serialize_with = "lossy_path")]
    pub capture: PathBuf,
    /// The last stderr lines of a run that failed or warned (the job's
    /// `error_lines` of them), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_stderr: Vec<String>,
}

/// A path as text, any bytes that are not UTF-8 shown as U+FFFD: reports
/// and records are JSON, and a readable name matters more there than one
/// that can be opened (the capture file is found by the run's id).
pub fn lossy_path<S: serde::Serializer>(path: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&path.display())
}

/// The completion report of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The run's id in the store.
    pub run_id: i64,
    /// The job's name.
    pub job: String,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// What started it.
    pub trigger: Trigger,
    /// The overall status.
    pub status: Status,
    /// One line for lists and subjects.
    pub summary: String,
    /// The status the job declared, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_status: Option<Status>,
    /// The fire time it ran for, for scheduled runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// How the process ended.
    pub exit: Exit,
    /// How many errors were reported (the list may be shorter, see
    /// [`MAX_ENTRIES`]).
    pub error_count: u64,
    /// How many warnings were reported.
    pub warning_count: u64,
    /// Error details.
    pub errors: Vec<Entry>,
    /// Warning details.
    pub warnings: Vec<Entry>,
    /// Notices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<Entry>,
    /// The output.
    pub log: LogSummary,
    /// The last progress update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Free details the job reported.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, serde_json::Value>,
    /// The host it ran on.
    pub host: String,
}

impl Report {
    /// The report of a run the runner could not observe — a fire that did
    /// not run, a run lost with its daemon — with `why` as its summary (and
    /// as its error entry when the status is a failure).
    pub fn synthetic(header: &RunHeader, status: Status, why: &str) -> Report {
        let now = Utc::now().max(header.started_at);
        let failure = matches!(status, Status::Failed | Status::Lost | Status::Orphaned);
        let errors = if failure {
            vec![Entry {
                message: why.to_string(),
                code: None,
                at: now,
                fields: BTreeMap::new(),
            }]
        } else {
            Vec::new()
        };
        Report {
            run_id: header.run_id,
            job: header.job.clone(),
            attempt: header.attempt,
            trigger: header.trigger,
            status,
            summary: why.to_string(),
            declared_status: None,
            scheduled_at: header.scheduled_at,
            started_at: header.started_at,
            finished_at: now,
            duration_ms: (now - header.started_at).num_milliseconds().max(0) as u64,
            exit: Exit {
                reason: Some(why.to_string()),
                ..Exit::default()
            },
            error_count: errors.len() as u64,
            warning_count: 0,
            errors,
            warnings: Vec::new(),
            notices: Vec::new(),
            log: LogSummary {
                capture: header.capture.clone(),
                ..LogSummary::default()
            },
            progress: None,
            details: BTreeMap::new(),
            host: header.host.clone(),
        }
    }

    /// A multi-line text for the terminal: the summary, then each error and
    /// warning.
    /// Why a failed run failed, from the exit and the error entries, not
    /// the summary (a job may write its own): `exit 1`, `timeout after
    /// 2s`, `exit 0, 2 errors: disk full`.
    pub fn why_failed(&self) -> String {
        let exit = self.exit.to_string();
        let first = self
            .errors
            .first()
            .map(|e| e.message.as_str())
            .filter(|message| Some(*message) != self.exit.reason.as_deref());
        match (self.error_count, first) {
            (0, _) | (_, None) => exit,
            (count, Some(message)) => format!(
                "{exit}, {count} error{}: {message}",
                if count == 1 { "" } else { "s" }
            ),
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{} #{}: {} ({}, {:.3}s)\n",
            self.job,
            self.run_id,
            self.status,
            self.summary,
            self.duration_ms as f64 / 1000.0
        );
        for (label, entries) in [("error", &self.errors), ("warning", &self.warnings)] {
            for e in entries {
                out.push_str(&format!("  {label}: {}\n", e.message));
            }
        }
        if !self.log.last_stderr.is_empty() {
            out.push_str("  last stderr lines:\n");
            for line in &self.log.last_stderr {
                out.push_str(&format!("    {line}\n"));
            }
        }
        out.push_str(&format!("  log: {}\n", self.log.capture.display()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i32) -> Exit {
        Exit {
            code: Some(code),
            ..Exit::default()
        }
    }

    #[test]
    fn status_rule() {
        use Status::*;
        assert_eq!(decide(&exit(0), &[], None, 0, 0), Success);
        assert_eq!(decide(&exit(0), &[], None, 0, 2), Warning);
        assert_eq!(decide(&exit(0), &[], None, 1, 2), Failed);
        assert_eq!(decide(&exit(0), &[], Some(Success), 1, 0), Success);
        assert_eq!(decide(&exit(1), &[], Some(Success), 0, 0), Failed);
        assert_eq!(decide(&exit(75), &[75], None, 0, 0), Warning);
        assert_eq!(decide(&exit(75), &[75], Some(Failed), 0, 0), Failed);
        let killed = Exit {
            signal: Some(9),
            ..Exit::default()
        };
        assert_eq!(decide(&killed, &[], Some(Success), 0, 0), Failed);
    }

    #[test]
    fn lenient_status_names() {
        assert_eq!(
            "Success-With-Warning".parse::<Status>(),
            Ok(Status::Warning)
        );
        assert_eq!("FAIL".parse::<Status>(), Ok(Status::Failed));
        assert!("meh".parse::<Status>().is_err());
    }
}
