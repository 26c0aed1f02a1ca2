//! Report sections to log4rs targets (DESIGN §2).
//!
//! Every run emits its report section by section, each to its own target
//! `jobs::<section>::<job>`; a log4rs file decides where each goes. Every
//! record carries the job, run id and attempt both as key-values (`{K(job)}`
//! in a pattern, `attributes` in JSON) and in the MDC (`{X(job)}`, `mdc`).
//! The daemon's own messages use `overnight::…` targets, never `jobs::…`.

mod buffered;
mod dispatch;
mod encode;
mod escape;
pub mod fast_pattern;
mod flow_log;
mod guard;
pub mod held;
mod json;
pub mod load;
pub mod per_job;
mod settings;

use std::cell::RefCell;
use std::fmt;
use std::time::SystemTime;

use log::{Level, LevelFilter, Record};
use log4rs::append::console::{ConsoleAppender, Target};

pub use self::dispatch::Routing;
use self::dispatch::{LoggerRule, Message, Origin, Out, Sink};
pub use self::escape::Escaped;
use self::fast_pattern::StockPattern;
pub use self::guard::{FailureKind, WriteFailure, take_failures};
use crate::event::{EntryKind, RunEvent, Stream};
use crate::report::{Report, Status, Trigger};

pub use flow_log::FlowLog;
pub use load::{Purpose, load, load_for};

/// Makes `routing` the process's logging configuration, replacing any
/// earlier one (a reload keeps records flowing through the switch).
pub fn install(routing: Routing) {
    dispatch::install(routing);
}

/// Flushes every appender; called when a run ends and before exit.
pub fn flush() {
    if let Some(routing) = dispatch::current() {
        routing.flush();
    }
}

/// The routing used without a log4rs file: status, errors and warnings of
/// every job, and the daemon's own messages, to stderr.
pub fn console_config() -> Routing {
    console_of(
        &[
            "jobs::status",
            "jobs::errors",
            "jobs::warnings",
            "flows::status",
            "overnight",
        ],
        LevelFilter::Info,
    )
}

/// `overnight exec` without a log4rs file: only the runner's own warnings
/// (the report is printed when the run fails or warns).
pub fn quiet_config() -> Routing {
    console_of(&["overnight"], LevelFilter::Warn)
}

/// The routing of a run whose log4rs file is broken: every section but the
/// JSON details, the output lines too, to stderr, so that nothing is lost.
pub fn fallback_config() -> Routing {
    console_of(
        &[
            "jobs::status",
            "jobs::errors",
            "jobs::warnings",
            "jobs::log",
            "overnight",
        ],
        LevelFilter::Info,
    )
}

/// `targets` at `level` and above to stderr, nothing else.
fn console_of(targets: &[&str], level: LevelFilter) -> Routing {
    let encoder = StockPattern::new("{d(%Y-%m-%dT%H:%M:%S%.3f%:z)} {l:<5} {t} {m}{n}");
    let console = ConsoleAppender::builder()
        .target(Target::Stderr)
        .encoder(Box::new(encoder))
        .build();
    let console = Sink {
        name: "console".to_string(),
        filters: Vec::new(),
        out: Out::Appender(Box::new(console)),
    };
    let to_console = |name: &&str| LoggerRule {
        name: name.to_string(),
        level,
        appenders: vec!["console".to_string()],
        additive: false,
    };
    let root = LoggerRule {
        name: String::new(),
        level: LevelFilter::Off,
        appenders: Vec::new(),
        additive: true,
    };
    Routing::new(
        vec![console],
        targets.iter().map(to_console).collect(),
        root,
    )
}

/// The report sections, each a target `jobs::<section>::<job>`.
#[derive(Clone, Copy, Debug)]
enum Section {
    Status,
    Errors,
    Warnings,
    Log,
    Progress,
    Details,
}

impl Section {
    const ALL: [Section; 6] = [
        Section::Status,
        Section::Errors,
        Section::Warnings,
        Section::Log,
        Section::Progress,
        Section::Details,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::Status => "status",
            Section::Errors => "errors",
            Section::Warnings => "warnings",
            Section::Log => "log",
            Section::Progress => "progress",
            Section::Details => "details",
        }
    }
}

/// The exit as `key=value` fields: `exit=0`, `signal=9`, `reason="…"`.
fn exit_fields(exit: &crate::report::Exit) -> String {
    match (&exit.reason, exit.signal, exit.http_status, exit.code) {
        (Some(reason), ..) => format!("reason={reason:?}"),
        (None, Some(signal), ..) => format!("signal={signal}"),
        (None, None, Some(http), _) => format!("http={http}"),
        (None, None, None, Some(code)) => format!("exit={code}"),
        (None, None, None, None) => "exit=none".to_string(),
    }
}

thread_local! {
    /// The run whose MDC this thread holds, so it is set once per run.
    static MDC_RUN: RefCell<Option<(i64, u32)>> = const { RefCell::new(None) };
}

/// The sink that sends one run's sections to their targets.
#[derive(Debug)]
pub struct Router {
    targets: [String; 6],
    job: String,
    run_id: i64,
    run_id_text: String,
    attempt: u32,
    attempt_text: String,
    stderr_level: Level,
}

impl Router {
    /// A router for one attempt of one run.
    pub fn new(job: &str, run_id: i64, attempt: u32, stderr_level: Level) -> Router {
        Router {
            targets: Section::ALL.map(|s| format!("jobs::{}::{job}", s.name())),
            job: job.to_string(),
            run_id,
            run_id_text: run_id.to_string(),
            attempt,
            attempt_text: attempt.to_string(),
            stderr_level,
        }
    }

    /// The status record that opens the run.
    pub fn started(&self, trigger: Trigger) {
        self.emit(
            Section::Status,
            Level::Info,
            format_args!(
                "started job={} run={} attempt={} trigger={}",
                self.job,
                self.run_id,
                self.attempt,
                trigger.as_str()
            ),
        );
    }

    /// The status record of a fire that did not run (`missed`, `skipped`).
    pub fn not_run(
        &self,
        status: Status,
        scheduled_at: Option<chrono::DateTime<chrono::Utc>>,
        why: &str,
    ) {
        let at = scheduled_at
            .map(|t| format!(" scheduled_at={}", t.to_rfc3339()))
            .unwrap_or_default();
        self.emit(
            Section::Status,
            Level::Warn,
            format_args!("{status} job={} run={}{at} {why}", self.job, self.run_id),
        );
        flush();
    }

    /// Sends one event to its section.
    pub fn event(&self, event: &RunEvent) {
        match event {
            RunEvent::Line(line) if !line.protocol => {
                let (level, stream) = match line.stream {
                    Stream::Stdout => (Level::Info, "stdout"),
                    Stream::Stderr => (self.stderr_level, "stderr"),
                };
                // Stamped when it was read, however long it waited here.
                let stream = Some((stream, SystemTime::from(line.at)));
                if line.cut > 0 {
                    let text = format_args!("{} [cut: {} bytes]", Escaped(&line.text), line.cut);
                    self.emit_with(Section::Log, level, Message::Args(text), stream);
                } else if escape::is_plain(&line.text) {
                    self.emit_with(Section::Log, level, Message::Text(&line.text), stream);
                } else {
                    let text = format_args!("{}", Escaped(&line.text));
                    self.emit_with(Section::Log, level, Message::Args(text), stream);
                }
            }
            RunEvent::Line(_) => {}
            RunEvent::Entry(kind, entry) => {
                let (section, level) = match kind {
                    EntryKind::Error => (Section::Errors, Level::Error),
                    EntryKind::Warning => (Section::Warnings, Level::Warn),
                    EntryKind::Notice => (Section::Log, Level::Info),
                    EntryKind::Debug => (Section::Log, Level::Debug),
                };
                match &entry.code {
                    Some(code) => self.emit(
                        section,
                        level,
                        format_args!("[{}] {}", Escaped(code), Escaped(&entry.message)),
                    ),
                    None => self.emit(section, level, format_args!("{}", Escaped(&entry.message))),
                }
            }
            RunEvent::Progress(p) => match p.percent {
                Some(pct) => self.emit(
                    Section::Progress,
                    Level::Info,
                    format_args!("{pct}% {}", p.message),
                ),
                None => self.emit(
                    Section::Progress,
                    Level::Info,
                    format_args!("{}", p.message),
                ),
            },
            RunEvent::Status(_) | RunEvent::Summary(_) | RunEvent::Detail(..) => {}
        }
    }

    /// The status record that closes the run, and the whole report as one
    /// JSON record on `details`. A failed run says why on `errors` first.
    pub fn finished(&self, report: &Report) {
        if report.status == Status::Failed {
            self.failure(report);
        }
        let level = match report.status {
            Status::Success | Status::Running => Level::Info,
            Status::Warning | Status::Skipped | Status::Orphaned => Level::Warn,
            Status::Failed | Status::Lost | Status::Missed => Level::Error,
        };
        self.emit(
            Section::Status,
            level,
            format_args!(
                "finished status={} {} duration={:.3}s errors={} warnings={}",
                report.status,
                exit_fields(&report.exit),
                report.duration_ms as f64 / 1000.0,
                report.error_count,
                report.warning_count
            ),
        );
        if self.enabled(Section::Details, Level::Info) {
            let json = serde_json::to_string(report).unwrap_or_default();
            self.emit(Section::Details, Level::Info, format_args!("{json}"));
        }
        flush();
    }

    /// Why a failed run failed, then its last stderr lines, each a record
    /// on `errors`: `grep` on an errors file finds every failed run, also
    /// of jobs that never report an error of their own.
    fn failure(&self, report: &Report) {
        self.emit(
            Section::Errors,
            Level::Error,
            format_args!("failed: {}", Escaped(&report.why_failed())),
        );
        for line in &report.log.last_stderr {
            self.emit(
                Section::Errors,
                Level::Error,
                format_args!("stderr: {}", Escaped(line)),
            );
        }
    }

    fn enabled(&self, section: Section, level: Level) -> bool {
        level <= log::max_level()
            && dispatch::current().is_some_and(|routing| {
                routing.wants(
                    &self.targets[section as usize],
                    Some(section as usize),
                    level,
                )
            })
    }

    fn emit(&self, section: Section, level: Level, args: fmt::Arguments<'_>) {
        self.emit_with(section, level, Message::Args(args), None);
    }

    /// A record with the run's key-values; for an output line, its
    /// `stream` after them and the time it was read. Formatted only if an
    /// appender wants it.
    fn emit_with(
        &self,
        section: Section,
        level: Level,
        message: Message<'_>,
        line: Option<(&str, SystemTime)>,
    ) {
        if level > log::max_level() {
            return;
        }
        let Some(routing) = dispatch::current() else {
            return;
        };
        self.enter();
        let kvs: [(&str, &str); 4] = [
            ("job", &self.job),
            ("run_id", &self.run_id_text),
            ("attempt", &self.attempt_text),
            ("stream", line.map_or("", |(stream, _)| stream)),
        ];
        let kvs = if line.is_some() { &kvs[..] } else { &kvs[..3] };
        routing.deliver(
            Some(section as usize),
            &Record::builder()
                .target(&self.targets[section as usize])
                .level(level)
                .args(format_args!(""))
                .key_values(&kvs)
                .build(),
            message,
            Origin {
                run: Some(self.run_id),
                at: line.map(|(_, at)| at),
            },
        );
    }

    /// Puts this run into the thread's MDC, once per thread and run.
    fn enter(&self) {
        MDC_RUN.with(|current| {
            let me = Some((self.run_id, self.attempt));
            if *current.borrow() != me {
                log_mdc::insert("job", &self.job);
                log_mdc::insert("run_id", &self.run_id_text);
                log_mdc::insert("attempt", &self.attempt_text);
                *current.borrow_mut() = me;
            }
        });
    }
}
