//! The sinks of one attempt — the report fold, the log4rs router, the
//! capture file, the live watchers — fed every batch of events in order.
//!
//! They run on a thread of their own, named after the run, so file writes
//! never block the async workers, the MDC is set once, and a run that
//! lasts hours holds no thread of tokio's blocking pool. (A one-shot
//! command, on a one-thread runtime with one job to run, feeds them from a
//! task of its only thread instead, sparing a thread's start, until the
//! job floods: then they move to a thread of their own.)

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use crate::capture::Capture;
use crate::event::RunEvent;
use crate::live::{Live, OutputTap};
use crate::report::fold::RunHeader;
use crate::report::{Exit, Report, ReportBuilder, Status};
use crate::route::Router;

/// What the sinks take from the job.
pub(super) struct SinkPolicy {
    /// Exit codes that make a run at most a warning.
    pub warning_codes: Vec<i32>,
    /// The capture file's cap.
    pub capture_max: u64,
    /// How many last stderr lines a failed run's report keeps.
    pub error_lines: usize,
    /// Why a run that fails or warns cannot be mailed as `mailto` asks.
    pub unmailable: Option<String>,
    /// Where its start, progress and end are told to watchers.
    pub live: Live,
}

/// The sinks of one attempt: the report fold, the log4rs router, the
/// capture file.
pub(super) struct Sinks {
    router: Router,
    header: RunHeader,
    capture: Capture,
    fold: ReportBuilder,
    warning_codes: Vec<i32>,
    unmailable: Option<String>,
    live: Live,
    tap: OutputTap,
}

impl Sinks {
    fn open(router: Router, header: RunHeader, policy: SinkPolicy) -> Sinks {
        router.started(header.trigger);
        policy.live.run_started(&header);
        Sinks {
            tap: policy.live.output_tap(header.run_id),
            live: policy.live,
            capture: Capture::open(&header.capture, header.attempt, policy.capture_max),
            router,
            header,
            fold: ReportBuilder::keeping_stderr(policy.error_lines),
            warning_codes: policy.warning_codes,
            unmailable: policy.unmailable,
        }
    }

    /// Every event of `batch` to every sink.
    fn batch(&mut self, batch: &[RunEvent]) {
        for event in batch {
            self.fold.apply(event);
            self.router.event(event);
            if let RunEvent::Progress(progress) = event {
                self.live.progress(&self.header, progress);
            }
        }
        self.capture.batch(batch);
        let lines = batch
            .iter()
            .filter(|e| matches!(e, RunEvent::Line(_)))
            .count();
        if lines > 0 {
            crate::metrics::lines(lines as u64);
            self.tap.grew();
        }
    }

    /// The report, once the executor has ended with `exit`.
    fn finish(mut self, exit: Exit) -> Report {
        // A log file the run's lines could not reach is a warning of the
        // run, once per appender, with the count and the OS's words; what
        // waits in appenders' buffers is written first, to know.
        crate::route::flush();
        for failure in crate::route::take_failures(self.header.run_id) {
            let text = match failure.kind {
                crate::route::FailureKind::Roll => {
                    format!("log appender `{}`: {}", failure.appender, failure.first)
                }
                crate::route::FailureKind::Lost => format!(
                    "log appender `{}` could not write {} record(s) of this run: {}",
                    failure.appender, failure.records, failure.first
                ),
            };
            let warning = RunEvent::entry(crate::event::EntryKind::Warning, text);
            self.batch(std::slice::from_ref(&warning));
        }
        let capture_cut = self.capture.finish();
        let capture_error = self
            .capture
            .error()
            .map(|e| format!("capture file not kept: {e}"));
        let mut report = self
            .fold
            .finish(self.header, exit, &self.warning_codes, Utc::now());
        if let Some(note) = capture_error {
            report.details.insert("capture_error".into(), note.into());
        }
        if let Some(note) = capture_cut {
            report.details.insert("capture_cut".into(), note.into());
        }
        if let Some(why) = self
            .unmailable
            .as_ref()
            .filter(|_| matches!(report.status, Status::Failed | Status::Warning))
        {
            // Said after the status was decided: it changes nothing of it.
            let warning = RunEvent::entry(crate::event::EntryKind::Warning, why.clone());
            self.router.event(&warning);
            if let RunEvent::Entry(_, entry) = warning {
                report.warning_count += 1;
                report.warnings.push(entry);
            }
        }
        let run_id = report.run_id;
        self.router.finished(&report);
        self.live.run_ended(&report);
        // What failed since (saying the failures, the closing records) is
        // not counted anywhere: dropped, so nothing builds up.
        crate::route::take_failures(run_id);
        report
    }

    /// Opens the sinks and feeds them every batch, then folds the report
    /// once the executor has ended with `exit`.
    pub(super) fn feed(
        router: Router,
        header: RunHeader,
        policy: SinkPolicy,
        batches: mpsc::Receiver<Vec<RunEvent>>,
        exit: oneshot::Receiver<Exit>,
    ) -> Feeding {
        let name = format!("sinks-{}", header.run_id);
        let open = move || Feed {
            sinks: Sinks::open(router, header, policy),
            batches,
            exit,
        };
        if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::CurrentThread
        {
            return Feeding::Task(tokio::spawn(async move { open().on_task(name).await }));
        }
        let report = match Feed::on_thread(&name, Box::new(open)) {
            Ok(report) => report,
            // Out of threads (a `limits:` of the daemon's own, say): the pool.
            Err(open) => {
                let (done, report) = oneshot::channel();
                tokio::task::spawn_blocking(move || {
                    let _ = done.send(open().run());
                });
                report
            }
        };
        Feeding::Thread(report)
    }
}

/// Events past which a one-shot command's sinks move to a thread of their
/// own: reading the job's output and routing it then overlap, 10–20 % more
/// lines a second, for a thread's start (50 µs) that a quiet job never pays.
const FLOOD: usize = 8192;

/// The sinks, and what feeds them.
struct Feed {
    sinks: Sinks,
    batches: mpsc::Receiver<Vec<RunEvent>>,
    exit: oneshot::Receiver<Exit>,
}

/// Makes the feed where it is to run.
type Open = Box<dyn FnOnce() -> Feed + Send>;

impl Feed {
    /// Feeds the sinks from a task; a flood moves them to a thread.
    async fn on_task(mut self, name: String) -> Result<Report, String> {
        let mut until_flood = FLOOD;
        while let Some(batch) = self.batches.recv().await {
            self.sinks.batch(&batch);
            until_flood = until_flood.saturating_sub(batch.len());
            if until_flood == 0 {
                // Named as the thread it leaves: `{T}` in a pattern (the
                // thread's name) stays the same through the run.
                let name = std::thread::current()
                    .name()
                    .map_or(name.clone(), str::to_string);
                match Feed::on_thread(&name, Box::new(move || self)) {
                    Ok(report) => return report.await.map_err(|_| Feeding::LOST.to_string()),
                    // No thread to be had: on as before, for good.
                    Err(open) => {
                        self = open();
                        until_flood = usize::MAX;
                    }
                }
            }
        }
        Ok(self.sinks.finish(self.exit.await.unwrap_or_default()))
    }

    /// Feeds the sinks until the last batch, blocking.
    fn run(mut self) -> Report {
        while let Some(batch) = self.batches.blocking_recv() {
            self.sinks.batch(&batch);
        }
        self.sinks
            .finish(self.exit.blocking_recv().unwrap_or_default())
    }

    /// Runs the feed `open` makes on a thread named `name`; gives `open`
    /// back when no thread can start.
    fn on_thread(name: &str, open: Open) -> Result<oneshot::Receiver<Report>, Open> {
        let (done, report) = oneshot::channel();
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(open)));
        let theirs = std::sync::Arc::clone(&slot);
        let started = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                if let Some(open) = theirs.lock().expect("the feed").take() {
                    let _ = done.send(open().run());
                }
            });
        match started {
            Ok(_) => Ok(report),
            Err(_) => Err(slot
                .lock()
                .expect("the feed")
                .take()
                .expect("a thread that did not start took nothing")),
        }
    }
}

/// Where the sinks of an attempt run, and how their report comes back.
pub(super) enum Feeding {
    /// A task of a one-thread runtime (which may hand a flood to a thread).
    Task(tokio::task::JoinHandle<Result<Report, String>>),
    /// A thread of its own.
    Thread(oneshot::Receiver<Report>),
}

impl Feeding {
    const LOST: &str = "the sinks' thread ended without a report";

    /// The attempt's report; `Err` says why the sinks gave none (an
    /// appender that panicked).
    pub async fn report(self) -> Result<Report, String> {
        match self {
            Feeding::Task(task) => task.await.map_err(|e| e.to_string())?,
            Feeding::Thread(report) => report.await.map_err(|_| Feeding::LOST.to_string()),
        }
    }
}
