//! The report as a fold of the run's events.
//!
//! The builder keeps counts for everything and the entries themselves up to
//! [`MAX_ENTRIES`] per kind, so a job that prints millions of warnings cannot
//! grow the runner's memory.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};

use super::{Exit, LogSummary, Report, Status, Trigger, decide};
use crate::event::{Entry, EntryKind, Progress, RunEvent, Stream};

/// How many entries of each kind a report keeps; the counts go on.
pub const MAX_ENTRIES: usize = 1000;

/// Who the run is, for the report's header.
#[derive(Clone, Debug)]
pub struct RunHeader {
    /// The run's id.
    pub run_id: i64,
    /// The job's name.
    pub job: String,
    /// The attempt, from 1.
    pub attempt: u32,
    /// What started it.
    pub trigger: Trigger,
    /// The fire time, for scheduled runs.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// The host.
    pub host: String,
    /// The capture file.
    pub capture: std::path::PathBuf,
    /// The flow run it is a step of.
    pub flow: Option<std::sync::Arc<crate::flow::Place>>,
}

impl RunHeader {
    /// The header of attempt 1 of run `run_id` of `job`, starting now,
    /// with no host or capture file named yet.
    pub fn now(run_id: i64, job: &str, trigger: Trigger) -> RunHeader {
        RunHeader {
            run_id,
            job: job.to_string(),
            attempt: 1,
            trigger,
            scheduled_at: None,
            started_at: Utc::now(),
            host: String::new(),
            capture: std::path::PathBuf::new(),
            flow: None,
        }
    }
}

/// Accumulates a run's events into its [`Report`].
#[derive(Debug, Default)]
pub struct ReportBuilder {
    errors: Vec<Entry>,
    warnings: Vec<Entry>,
    notices: Vec<Entry>,
    error_count: u64,
    warning_count: u64,
    log: LogSummary,
    progress: Option<Progress>,
    declared: Option<Status>,
    summary: Option<String>,
    details: BTreeMap<String, serde_json::Value>,
    /// The last stderr lines, at most `tail_max`.
    tail: VecDeque<String>,
    tail_max: usize,
}

impl ReportBuilder {
    /// A builder keeping the last `lines` stderr lines, for the report of a
    /// run that fails or warns.
    pub fn keeping_stderr(lines: usize) -> ReportBuilder {
        ReportBuilder {
            tail_max: lines,
            ..ReportBuilder::default()
        }
    }

    /// Takes one event into account.
    pub fn apply(&mut self, event: &RunEvent) {
        match event {
            RunEvent::Line(line) => {
                match line.stream {
                    Stream::Stdout => self.log.stdout_lines += 1,
                    Stream::Stderr => self.log.stderr_lines += 1,
                }
                self.log.cut_lines += u64::from(line.cut > 0);
                if line.stream == Stream::Stderr && !line.protocol {
                    self.keep_stderr(&line.text);
                }
            }
            RunEvent::Entry(kind, entry) => {
                let (list, count) = match kind {
                    EntryKind::Error => (&mut self.errors, Some(&mut self.error_count)),
                    EntryKind::Warning => (&mut self.warnings, Some(&mut self.warning_count)),
                    EntryKind::Notice => (&mut self.notices, None),
                    EntryKind::Debug => return,
                };
                if let Some(count) = count {
                    *count += 1;
                }
                if list.len() < MAX_ENTRIES {
                    list.push(entry.clone());
                }
            }
            RunEvent::Progress(p) => self.progress = Some(p.clone()),
            RunEvent::Status(s) => self.declared = Some(*s),
            RunEvent::Summary(s) => self.summary = Some(s.clone()),
            RunEvent::Detail(k, v) => {
                if self.details.len() < MAX_ENTRIES || self.details.contains_key(k) {
                    self.details.insert(k.clone(), v.clone());
                }
            }
        }
    }

    /// Keeps `text` among the last stderr lines, reusing the oldest one's
    /// buffer once there are enough.
    fn keep_stderr(&mut self, text: &str) {
        if self.tail_max == 0 {
            return;
        }
        let mut kept = if self.tail.len() == self.tail_max {
            self.tail.pop_front().unwrap_or_default()
        } else {
            String::new()
        };
        kept.clear();
        kept.push_str(text);
        self.tail.push_back(kept);
    }

    /// The report, once the run has ended with `exit`.
    pub fn finish(
        self,
        header: RunHeader,
        exit: Exit,
        warning_codes: &[i32],
        finished_at: DateTime<Utc>,
    ) -> Report {
        let status = decide(
            &exit,
            warning_codes,
            self.declared,
            self.error_count,
            self.warning_count,
        );
        let summary = self.summary.clone().unwrap_or_else(|| {
            summary(
                &exit,
                self.error_count,
                self.warning_count,
                &self.errors,
                &self.warnings,
            )
        });
        let duration_ms = (finished_at - header.started_at).num_milliseconds().max(0) as u64;
        Report {
            run_id: header.run_id,
            job: header.job,
            attempt: header.attempt,
            trigger: header.trigger,
            status,
            summary,
            declared_status: self.declared,
            scheduled_at: header.scheduled_at,
            started_at: header.started_at,
            finished_at,
            duration_ms,
            exit,
            error_count: self.error_count,
            warning_count: self.warning_count,
            errors: self.errors,
            warnings: self.warnings,
            notices: self.notices,
            log: LogSummary {
                capture: header.capture,
                last_stderr: if matches!(status, Status::Failed | Status::Warning) {
                    self.tail.into()
                } else {
                    Vec::new()
                },
                ..self.log
            },
            progress: self.progress,
            details: self.details,
            host: header.host,
        }
    }
}

/// "exit 0, 1 warning: disk 91% full" — the exit, the counts, and the first
/// error (or warning) message.
fn summary(
    exit: &Exit,
    errors: u64,
    warnings: u64,
    error_list: &[Entry],
    warning_list: &[Entry],
) -> String {
    let mut out = exit.to_string();
    let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    if errors > 0 {
        out.push_str(&format!(", {}", plural(errors, "error")));
    }
    if warnings > 0 {
        out.push_str(&format!(", {}", plural(warnings, "warning")));
    }
    if let Some(first) = error_list.first().or(warning_list.first()) {
        out.push_str(": ");
        out.push_str(&first.message);
    }
    out
}
