//! One run, from start to record: the path of DESIGN §3 in one place.
//!
//! The run is inserted in the store as `running`; the executor produces
//! event batches; one thread per run feeds each batch to the sinks — the
//! report fold, the log4rs router, the capture file — in order; when the
//! executor ends, the same thread folds the report and closes the sections;
//! the store records the end. That thread owns every synchronous sink, so
//! file writes never block the async workers and the MDC is set once.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::capture::{self, Capture};
use crate::config::Job;
use crate::event::RunEvent;
use crate::exec::{self, Attempt, EVENT_BACKLOG, StopSignal};
use crate::report::fold::RunHeader;
use crate::report::{Exit, Report, ReportBuilder, Trigger};
use crate::route::Router;
use crate::store::{NewRun, Store, StoreError};

/// Runs jobs and records them.
#[derive(Clone, Debug)]
pub struct Runner {
    store: Store,
    state_dir: Arc<PathBuf>,
    host: Arc<str>,
}

impl Runner {
    /// A runner recording into `store`, keeping capture files in `state_dir`.
    pub fn new(store: Store, state_dir: PathBuf) -> Runner {
        Runner {
            store,
            state_dir: Arc::new(state_dir),
            host: crate::store::hostname().into(),
        }
    }

    /// The store it records into.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The host name it records.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Runs `job` once, to its end, and returns its report.
    pub async fn run(
        &self,
        job: &Job,
        trigger: Trigger,
        scheduled_at: Option<DateTime<Utc>>,
        stop: StopSignal,
    ) -> Result<Report, StoreError> {
        let started_at = Utc::now();
        let run_id = self
            .store
            .start_run(
                &NewRun {
                    job: &job.name,
                    trigger,
                    scheduled_at,
                    started_at,
                    host: &self.host,
                },
                |id| capture::path_for(&self.state_dir, &job.name, id),
            )
            .await?;
        let attempt = 1;
        let header = RunHeader {
            run_id,
            job: job.name.clone(),
            attempt,
            trigger,
            scheduled_at,
            started_at,
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

        let (events, batches) = mpsc::channel(EVENT_BACKLOG);
        let (exit_tx, exit_rx) = oneshot::channel();
        let router = Router::new(&job.name, run_id, attempt, job.stderr_level);
        let warning_codes = job.warning_exit_codes.clone();
        let fallback = header.clone();
        let report_file = header.capture.with_extension("report.json");
        // The job may write its report before the sinks have opened the
        // capture file: the run's folder must exist first.
        if let Some(dir) = header.capture.parent() {
            let _ = tokio::fs::create_dir_all(dir).await;
        }
        let sinks = tokio::task::spawn_blocking(move || {
            feed_sinks(router, header, batches, exit_rx, &warning_codes)
        });
        let attempt = Attempt {
            job,
            env: &env,
            report_file: &report_file,
            stop,
        };
        let exit = exec::run(attempt, events).await;
        let _ = exit_tx.send(exit.clone());
        let report = match sinks.await {
            Ok(report) => report,
            // A sink that panicked (an appender, say) must not lose the run.
            Err(e) => {
                let mut report = ReportBuilder::default().finish(
                    fallback,
                    exit,
                    &job.warning_exit_codes,
                    Utc::now(),
                );
                report.status = crate::report::Status::Failed;
                report.summary = format!("internal error while reporting the run: {e}");
                report
            }
        };
        self.store.finish_run(&report).await?;
        Ok(report)
    }
}

/// The per-run sink thread: every batch to every sink, then the report.
fn feed_sinks(
    router: Router,
    header: RunHeader,
    mut batches: mpsc::Receiver<Vec<RunEvent>>,
    exit: oneshot::Receiver<Exit>,
    warning_codes: &[i32],
) -> Report {
    router.started(header.trigger);
    let mut capture = Capture::create(&header.capture);
    let mut fold = ReportBuilder::default();
    while let Some(batch) = batches.blocking_recv() {
        for event in &batch {
            fold.apply(event);
            router.event(event);
        }
        capture.batch(&batch);
    }
    let exit = exit.blocking_recv().unwrap_or_default();
    let capture_error = capture
        .error()
        .map(|e| format!("capture file not kept: {e}"));
    let mut report = fold.finish(header, exit, warning_codes, Utc::now());
    if let Some(note) = capture_error {
        report.details.insert("capture_error".into(), note.into());
    }
    router.finished(&report);
    report
}
