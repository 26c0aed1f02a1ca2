//! One run, from start to record: the path of DESIGN §3 in one place.
//!
//! Before anything starts, the run's gate: the job's own lock by its
//! `concurrency` policy, a place among `max_parallel`, then its named locks
//! within `lock_wait`; a fire that cannot pass is recorded as `skipped` with
//! the reason. Then the run is inserted as `running` and attempted, again
//! after a failure as its `retries` say; every attempt is recorded, and the
//! run ends with the last one's report.
//!
//! For each attempt the executor produces event batches; one thread feeds
//! each batch to the sinks — the report fold, the log4rs router, the
//! capture file — in order, and folds the report when the executor ends.
//! That thread owns every synchronous sink, so file writes never block the
//! async workers and the MDC is set once. (A one-shot command, on a
//! one-thread runtime with one job to run, feeds them from a task of its
//! only thread instead.)

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::capture::{self, Capture};
use crate::config::{Concurrency, Job};
use crate::event::RunEvent;
use crate::exec::{self, Attempt, EVENT_BACKLOG};
use crate::lock::{self, Held, LockSpec};
use crate::notify::{Moment, Notifier};
use crate::report::fold::RunHeader;
use crate::report::{Exit, Report, ReportBuilder, Status, Trigger};
use crate::route::Router;
use crate::store::{NewRun, NotRun, Recorder, StoreError};

/// How a request to run ended.
#[derive(Debug)]
pub enum Outcome {
    /// It ran; the report of its last attempt.
    Ran(Box<Report>),
    /// It did not run (`skipped`): the record's id and the reason.
    NotRun {
        /// The skipped run's id.
        id: i64,
        /// Why.
        why: String,
    },
}

impl Outcome {
    /// The status it ended with.
    pub fn status(&self) -> Status {
        match self {
            Outcome::Ran(report) => report.status,
            Outcome::NotRun { .. } => Status::Skipped,
        }
    }
}

/// The runs going on, by run id: job name and the handle that stops it.
/// Never held across an await.
type Active = Mutex<HashMap<i64, (String, watch::Sender<Option<String>>)>>;

/// Runs jobs and records them.
#[derive(Clone, Debug)]
pub struct Runner {
    recorder: Recorder,
    state_dir: Arc<PathBuf>,
    host: Arc<str>,
    /// This process's start time, recorded with its runs.
    started: Option<u64>,
    parallel: Option<Arc<Semaphore>>,
    active: Arc<Active>,
    notifier: Notifier,
    /// Fires waiting for their job (`concurrency: queue`), by job.
    /// Never held across an await.
    queued: Arc<Mutex<HashMap<String, usize>>>,
    /// Said as warnings of every run (a configuration `exec` could not use).
    notes: Arc<[String]>,
}

/// Why a fire does not take its job's own lock.
enum Refusal {
    /// Another run holds it (or enough fires already wait for it).
    Busy(String),
    /// Its file cannot be opened: the state directory is unwritable, say.
    Unopenable(lock::LockError),
}

/// How long a job runs before its process is recorded for crash recovery.
const RECORD_PROCESS_AFTER: Duration = Duration::from_millis(20);

/// Waits "forever" for a queued fire's turn (a hundred years).
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Runner {
    /// A runner recording into `recorder` (a store, or a journal), keeping
    /// capture files and locks in `state_dir`, running at most
    /// `max_parallel` jobs at once.
    pub fn new(
        recorder: impl Into<Recorder>,
        state_dir: PathBuf,
        max_parallel: Option<usize>,
    ) -> Runner {
        let recorder = recorder.into();
        let state_dir = Arc::new(state_dir);
        Runner {
            notifier: Notifier::new(recorder.clone(), Arc::clone(&state_dir)),
            recorder,
            state_dir,
            host: crate::store::hostname().into(),
            started: crate::process::start_time(std::process::id()),
            parallel: max_parallel.map(|n| Arc::new(Semaphore::new(n))),
            active: Arc::default(),
            queued: Arc::default(),
            notes: Arc::default(),
        }
    }

    /// The runner, saying `notes` as warnings of each of its runs.
    pub fn noting(self, notes: Vec<String>) -> Runner {
        Runner {
            notes: notes.into(),
            ..self
        }
    }

    /// The host name it records.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// How many runs are going.
    pub fn running(&self) -> usize {
        self.active.lock().expect("active runs").len()
    }

    /// Ends every running attempt, with `reason`.
    pub fn stop_all(&self, reason: &str) {
        for (_, stop) in self.active.lock().expect("active runs").values() {
            let _ = stop.send(Some(reason.to_string()));
        }
    }

    /// Ends the running attempts of `job`, with `reason`.
    fn stop_job(&self, job: &str, reason: &str) {
        for (name, stop) in self.active.lock().expect("active runs").values() {
            if name == job {
                let _ = stop.send(Some(reason.to_string()));
            }
        }
    }

    /// Runs `job` once (with its retries), to its end.
    pub async fn run(
        &self,
        job: &Job,
        trigger: Trigger,
        scheduled_at: Option<DateTime<Utc>>,
    ) -> Result<Outcome, StoreError> {
        // Said in the run's report as warnings of its own.
        let mut notes = self.notes.to_vec();
        let own = match self.own_lock(job).await {
            Ok(own) => own,
            // A wrapped crontab line runs as cron would have run it, even
            // when its state directory cannot be written.
            Err(Refusal::Unopenable(e)) if trigger == Trigger::Exec => {
                notes.push(format!("ran without its lock: {e}"));
                None
            }
            Err(Refusal::Busy(why)) => {
                let why = format!("skipped: {why}");
                return self.not_run(job, trigger, scheduled_at, why).await;
            }
            Err(Refusal::Unopenable(e)) => {
                let why = format!("skipped: {e}");
                return self.not_run(job, trigger, scheduled_at, why).await;
            }
        };
        let _permit = match &self.parallel {
            Some(places) => Some(
                Arc::clone(places)
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed"),
            ),
            None => None,
        };
        let named = match lock::acquire(&self.state_dir, &job.locks, job.lock_wait).await {
            Ok(named) => named,
            Err(e) => {
                return self
                    .not_run(job, trigger, scheduled_at, format!("skipped: {e}"))
                    .await;
            }
        };
        let held: Vec<&Held> = own.iter().chain(std::iter::once(&named)).collect();
        let specs: Vec<LockSpec> = held.iter().flat_map(|h| h.specs().cloned()).collect();
        let fds: Vec<_> = held.iter().flat_map(|h| h.fds()).collect();

        let mut run_id = self.recorder.next_run_id()?;
        // A run-id file restored from a backup hands out ids again: the
        // history mends that at its next opening, but a capture file of
        // the same job and id must not be overwritten meanwhile.
        while run_id > 0 && capture::path_for(&self.state_dir, &job.name, run_id).exists() {
            log::warn!(target: "overnight::runner", "run id {run_id} of `{}` was used already (is `last-run-id` older than the history?); taking the next", job.name);
            run_id = self.recorder.next_run_id()?;
        }
        let started_at = Utc::now();
        // The job runs even when its bookkeeping cannot be written (a full
        // disk): the first failure is kept and said in the report.
        let mut unrecorded = None;
        let started = self
            .recorder
            .start_run(&NewRun {
                id: run_id,
                job: job.name.clone(),
                trigger,
                scheduled_at,
                started_at,
                host: self.host.to_string(),
                pid: std::process::id(),
                runner_started: self.started,
                locks: specs,
                capture: capture::path_for(&self.state_dir, &job.name, run_id),
            })
            .await;
        note_unrecorded(&mut unrecorded, run_id, started);
        let (stop_tx, stop) = watch::channel(None);
        self.active
            .lock()
            .expect("active runs")
            .insert(run_id, (job.name.clone(), stop_tx));

        let mut attempt = 1;
        let report = loop {
            let report = self
                .attempt(
                    job,
                    trigger,
                    scheduled_at,
                    run_id,
                    attempt,
                    started_at,
                    &fds,
                    &held,
                    &notes,
                    stop.clone(),
                )
                .await;
            let stopped = stop.borrow().is_some();
            let retry = job
                .retries
                .filter(|r| report.status == Status::Failed && attempt <= r.count && !stopped);
            let Some(retries) = retry else { break report };
            // Earlier attempts are kept apart; the run's row is the last.
            let recorded = self.recorder.record_attempt(&report).await;
            note_unrecorded(&mut unrecorded, run_id, recorded);
            self.notifier.moment(job, &report, Moment::Retrying);
            attempt += 1;
            let mut stop = stop.clone();
            tokio::select! {
                () = tokio::time::sleep(retries.delay_before(attempt)) => {}
                _ = async { stop.wait_for(Option::is_some).await.map(|_| ()) } => break report,
            }
        };
        // Out of the active runs whatever the store says: a run that could
        // not be recorded is closed as lost at the next start.
        self.active.lock().expect("active runs").remove(&run_id);
        let mut report = report;
        let recorded = self.recorder.finish_run(&report).await;
        note_unrecorded(&mut unrecorded, run_id, recorded);
        if let Some(why) = unrecorded {
            report.details.insert(UNRECORDED.into(), why.into());
        }
        self.notifier.moment(job, &report, Moment::Final);
        Ok(Outcome::Ran(Box::new(report)))
    }

    /// Where it records runs.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The triggers' deliverer.
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// The job's own lock, as its concurrency policy takes it; `Err` is
    /// the reason the fire is skipped.
    async fn own_lock(&self, job: &Job) -> Result<Option<Held>, Refusal> {
        let own = [LockSpec::job(&job.name)];
        let busy = |e: lock::LockError| match e {
            lock::LockError::Busy { .. } => {
                Refusal::Busy(format!("the job is still running ({e})"))
            }
            // Not a run still going: the lock could not even be tried.
            lock::LockError::Io { .. } => Refusal::Unopenable(e),
        };
        match job.concurrency {
            Concurrency::Allow => Ok(None),
            Concurrency::Skip => lock::acquire(&self.state_dir, &own, Duration::ZERO)
                .await
                .map(Some)
                .map_err(busy),
            Concurrency::Replace => {
                if let Ok(held) = lock::acquire(&self.state_dir, &own, Duration::ZERO).await {
                    return Ok(Some(held));
                }
                self.stop_job(&job.name, "replaced: a newer run of the job started");
                lock::acquire(&self.state_dir, &own, FOREVER)
                    .await
                    .map(Some)
                    .map_err(busy)
            }
            Concurrency::Queue => {
                if let Ok(held) = lock::acquire(&self.state_dir, &own, Duration::ZERO).await {
                    return Ok(Some(held));
                }
                {
                    let mut queued = self.queued.lock().expect("queued fires");
                    let waiting = queued.entry(job.name.clone()).or_default();
                    if *waiting >= job.queue_limit {
                        return Err(Refusal::Busy(format!(
                            "the job is still running and {waiting} fire(s) already wait (queue_limit: {})",
                            job.queue_limit
                        )));
                    }
                    *waiting += 1;
                }
                let held = lock::acquire(&self.state_dir, &own, FOREVER).await;
                *self
                    .queued
                    .lock()
                    .expect("queued fires")
                    .entry(job.name.clone())
                    .or_default() -= 1;
                held.map(Some).map_err(busy)
            }
        }
    }

    async fn not_run(
        &self,
        job: &Job,
        trigger: Trigger,
        scheduled_at: Option<DateTime<Utc>>,
        why: String,
    ) -> Result<Outcome, StoreError> {
        let id = self
            .record_not_run(job, trigger, scheduled_at, Status::Skipped, &why)
            .await?;
        Ok(Outcome::NotRun { id, why })
    }

    /// Records a fire that did not run (`skipped`, `missed`): in the store,
    /// on the job's status target, and to its triggers. Returns its id.
    pub async fn record_not_run(
        &self,
        job: &Job,
        trigger: Trigger,
        scheduled_at: Option<DateTime<Utc>>,
        status: Status,
        why: &str,
    ) -> Result<i64, StoreError> {
        let id = self.recorder.next_run_id()?;
        let recorded = self
            .recorder
            .record_not_run(&NotRun {
                id,
                job: job.name.clone(),
                trigger,
                scheduled_at,
                at: Utc::now(),
                status,
                why: why.to_string(),
                host: self.host.to_string(),
                pid: std::process::id(),
            })
            .await;
        note_unrecorded(&mut None, id, recorded);
        Router::new(&job.name, id, 1, job.stderr_level).not_run(status, scheduled_at, why);
        let capture = capture::path_for(&self.state_dir, &job.name, id);
        let report = Report::synthetic(
            id,
            &job.name,
            trigger,
            scheduled_at,
            status,
            why,
            &self.host,
            capture,
        );
        self.notifier.moment(job, &report, Moment::Final);
        Ok(id)
    }

    /// One attempt: the executor, the sinks, the report.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        job: &Job,
        trigger: Trigger,
        scheduled_at: Option<DateTime<Utc>>,
        run_id: i64,
        attempt: u32,
        run_started: DateTime<Utc>,
        fds: &[std::os::fd::RawFd],
        held: &[&Held],
        notes: &[String],
        stop: exec::StopSignal,
    ) -> Report {
        let header = RunHeader {
            run_id,
            job: job.name.clone(),
            attempt,
            trigger,
            scheduled_at,
            started_at: if attempt == 1 {
                run_started
            } else {
                Utc::now()
            },
            host: self.host.to_string(),
            capture: capture::path_for(&self.state_dir, &job.name, run_id),
        };
        let env = [
            ("OVERNIGHT_JOB", job.name.clone()),
            ("OVERNIGHT_RUN_ID", run_id.to_string()),
            ("OVERNIGHT_ATTEMPT", attempt.to_string()),
            (
                "OVERNIGHT_SCHEDULED_AT",
                scheduled_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            ),
            // Flows come later; the variable is there so jobs can rely on it.
            ("OVERNIGHT_FLOW_RUN_ID", String::new()),
        ]
        .map(|(k, v)| (k.to_string(), v));
        let report_file = header.capture.with_extension("report.json");
        // The job may write its report before the sinks have opened the
        // capture file: the run's folder must exist first.
        if let Some(dir) = header.capture.parent() {
            // A few fast syscalls: no hop to the blocking pool.
            let _ = crate::state::create_dir(dir);
        }
        let _ = std::fs::remove_file(&report_file);

        let (events, batches) = mpsc::channel(EVENT_BACKLOG);
        // What the runner itself has to say about the run comes first.
        if !notes.is_empty() {
            let warnings = notes
                .iter()
                .map(|note| RunEvent::entry(crate::event::EntryKind::Warning, note.clone()))
                .collect();
            let _ = events.try_send(warnings);
        }
        let (exit_tx, exit_rx) = oneshot::channel();
        let (spawned_tx, spawned_rx) = oneshot::channel();
        let router = Router::new(&job.name, run_id, attempt, job.stderr_level);
        let fallback = header.clone();
        let sinks = Sinks::feed(
            router,
            header,
            SinkPolicy {
                warning_codes: job.warning_exit_codes.clone(),
                capture_max: job.capture_max,
                error_lines: job.error_lines,
                unmailable: job.unmailable.clone(),
            },
            batches,
            exit_rx,
        );
        let run = exec::run(
            Attempt {
                job,
                env: &env,
                report_file: &report_file,
                lock_fds: fds,
                stop,
                spawned: Some(spawned_tx),
            },
            events,
        );
        // The job's process is recorded (for crash recovery) and named in
        // its lock files once it has run a moment: a job done sooner cannot
        // outlive a crashed daemon by much, and most runs are short.
        let record_process = async {
            let Ok(pid) = spawned_rx.await else { return };
            tokio::time::sleep(RECORD_PROCESS_AFTER).await;
            held.iter().for_each(|h| h.record_holder(pid));
            let _ = self
                .recorder
                .record_process(run_id, pid, crate::process::start_time(pid))
                .await;
        };
        let work = async {
            tokio::pin!(record_process);
            tokio::pin!(run);
            let mut recorded = false;
            loop {
                tokio::select! {
                    exit = &mut run => break exit,
                    () = &mut record_process, if !recorded => recorded = true,
                }
            }
        };
        tokio::pin!(work);
        // Once, for the first attempt: a run still going after its
        // `max_duration` is late.
        let late = async {
            match job.max_duration.filter(|_| attempt == 1) {
                Some(max) => {
                    tokio::time::sleep(max).await;
                    let why = format!("still running after {}", humantime::format_duration(max));
                    let capture = capture::path_for(&self.state_dir, &job.name, run_id);
                    let report = Report::synthetic(
                        run_id,
                        &job.name,
                        trigger,
                        scheduled_at,
                        Status::Running,
                        &why,
                        &self.host,
                        capture,
                    );
                    self.notifier.moment(job, &report, Moment::Late);
                }
                None => std::future::pending().await,
            }
        };
        let exit = tokio::select! {
            done = &mut work => done,
            () = late => work.await,
        };
        let _ = exit_tx.send(exit.clone());
        match sinks.await {
            Ok(report) => report,
            // A sink that panicked (an appender, say) must not lose the run.
            Err(e) => {
                let mut report = ReportBuilder::default().finish(
                    fallback,
                    exit,
                    &job.warning_exit_codes,
                    Utc::now(),
                );
                report.status = Status::Failed;
                report.summary = format!("internal error while reporting the run: {e}");
                report
            }
        }
    }
}

/// The report detail that says why a run is not (yet) in the history.
const UNRECORDED: &str = "record_error";

/// Keeps the first failure to record run `id`, and says it in the daemon's
/// log.
fn note_unrecorded(first: &mut Option<String>, id: i64, recorded: Result<(), StoreError>) {
    if let Err(e) = recorded {
        log::error!(target: "overnight::runner", "run #{id}: {e}");
        first.get_or_insert_with(|| e.to_string());
    }
}

/// What the sinks take from the job.
struct SinkPolicy {
    /// Exit codes that make a run at most a warning.
    warning_codes: Vec<i32>,
    /// The capture file's cap.
    capture_max: u64,
    /// How many last stderr lines a failed run's report keeps.
    error_lines: usize,
    /// Why a run that fails or warns cannot be mailed as `mailto` asks.
    unmailable: Option<String>,
}

/// The sinks of one attempt: the report fold, the log4rs router, the
/// capture file.
struct Sinks {
    router: Router,
    header: RunHeader,
    capture: Capture,
    fold: ReportBuilder,
    warning_codes: Vec<i32>,
    unmailable: Option<String>,
}

impl Sinks {
    fn open(router: Router, header: RunHeader, policy: SinkPolicy) -> Sinks {
        router.started(header.trigger);
        Sinks {
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
        }
        self.capture.batch(batch);
    }

    /// The report, once the executor has ended with `exit`.
    fn finish(mut self, exit: Exit) -> Report {
        // A log file the run's lines could not reach is a warning of the
        // run, once per appender, with the count and the OS's words.
        for failure in crate::route::take_failures(self.header.run_id) {
            let warning = RunEvent::entry(
                crate::event::EntryKind::Warning,
                format!(
                    "log appender `{}` could not write {} record(s) of this run: {}",
                    failure.appender, failure.records, failure.first
                ),
            );
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
        // What failed since (saying the failures, the closing records) is
        // not counted anywhere: dropped, so nothing builds up.
        crate::route::take_failures(run_id);
        report
    }

    /// Opens the sinks and feeds them every batch on a thread of their own,
    /// so that file writes never block the async workers; on a one-thread
    /// runtime (a one-shot command running one job) as a task of that
    /// thread, sparing a thread's start.
    fn feed(
        router: Router,
        header: RunHeader,
        policy: SinkPolicy,
        mut batches: mpsc::Receiver<Vec<RunEvent>>,
        exit: oneshot::Receiver<Exit>,
    ) -> tokio::task::JoinHandle<Report> {
        let open = move || Sinks::open(router, header, policy);
        match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::CurrentThread => tokio::spawn(async move {
                let mut sinks = open();
                while let Some(batch) = batches.recv().await {
                    sinks.batch(&batch);
                }
                sinks.finish(exit.await.unwrap_or_default())
            }),
            _ => tokio::task::spawn_blocking(move || {
                let mut sinks = open();
                while let Some(batch) = batches.blocking_recv() {
                    sinks.batch(&batch);
                }
                sinks.finish(exit.blocking_recv().unwrap_or_default())
            }),
        }
    }
}
