//! One attempt of a run: the executor, its sinks, its report.
//!
//! The executor produces event batches; the sinks ([`super::sinks`]) take
//! them in order and fold the report when the executor ends. Meanwhile the
//! job's process is recorded for crash recovery once it has run a moment,
//! and a first attempt still going after the job's `max_duration` is
//! reported late to the triggers.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use super::Runner;
use super::gate::Admission;
use super::sinks::{SinkPolicy, Sinks};
use crate::config::Job;
use crate::event::{EntryKind, RunEvent};
use crate::exec::{self, Attempt, EVENT_BACKLOG};
use crate::lock::Held;
use crate::notify::Moment;
use crate::report::{Report, ReportBuilder, RunHeader, Status};
use crate::route::Router;

/// How long a job runs before its process is recorded for crash recovery.
const RECORD_PROCESS_AFTER: Duration = Duration::from_millis(20);

impl Runner {
    /// Attempt number `attempt` of the run `run` (its first attempt's
    /// header), to its report.
    pub(super) async fn attempt(
        &self,
        job: &Job,
        run: &RunHeader,
        attempt: u32,
        admission: &Admission,
        stop: exec::StopSignal,
    ) -> Report {
        let header = RunHeader {
            attempt,
            started_at: if attempt == 1 {
                run.started_at
            } else {
                Utc::now()
            },
            ..run.clone()
        };
        let run_id = header.run_id;
        let env = [
            ("OVERNIGHT_JOB", job.name.clone()),
            ("OVERNIGHT_RUN_ID", run_id.to_string()),
            ("OVERNIGHT_ATTEMPT", attempt.to_string()),
            (
                "OVERNIGHT_SCHEDULED_AT",
                header
                    .scheduled_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v));
        let flow = header.flow.as_deref();
        let env: Vec<(String, String)> = env
            .into_iter()
            .chain(
                [
                    ("OVERNIGHT_FLOW", flow.map(|f| f.flow.clone())),
                    (
                        "OVERNIGHT_FLOW_RUN_ID",
                        flow.map(|f| f.flow_run_id.to_string()),
                    ),
                    ("OVERNIGHT_STEP", flow.map(|f| f.step.clone())),
                    (
                        "OVERNIGHT_FLOW_DETAILS",
                        flow.map(|f| f.details.to_string_lossy().into_owned()),
                    ),
                ]
                // Set, empty, outside a flow: a job can rely on them.
                .map(|(k, v)| (k.to_string(), v.unwrap_or_default())),
            )
            .collect();
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
        if !admission.notes.is_empty() {
            let warnings = admission
                .notes
                .iter()
                .map(|note| RunEvent::entry(EntryKind::Warning, note.clone()))
                .collect();
            let _ = events.try_send(warnings);
        }
        let (exit_tx, exit_rx) = oneshot::channel();
        let (spawned_tx, spawned_rx) = oneshot::channel();
        let router = Router::new(&job.name, run_id, attempt, job.stderr_level);
        let fallback = header.clone();
        let sinks = Sinks::feed(
            router,
            header.clone(),
            SinkPolicy {
                warning_codes: job.warning_exit_codes.clone(),
                capture_max: job.capture_max,
                error_lines: job.error_lines,
                unmailable: job.unmailable.clone(),
                live: self.live.clone(),
            },
            batches,
            exit_rx,
        );
        let fds = admission.fds();
        let run = exec::run(
            Attempt {
                job,
                env: &env,
                report_file: &report_file,
                lock_fds: &fds,
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
            // Its own process group: guarded at once while it holds locks
            // across a cluster's hosts.
            admission.held.iter().for_each(|h| h.guard(pid));
            tokio::time::sleep(RECORD_PROCESS_AFTER).await;
            admission.held.iter().for_each(|h| h.record_holder(pid));
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
                    let report = Report::synthetic(&header, Status::Running, &why);
                    self.notifier.moment(job, &report, Moment::Late);
                }
                None => std::future::pending().await,
            }
        };
        let exit = tokio::select! {
            done = &mut work => done,
            () = late => work.await,
        };
        admission.held.iter().for_each(Held::unguard_all);
        let _ = exit_tx.send(exit.clone());
        match sinks.report().await {
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
