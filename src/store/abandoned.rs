//! Runs a dead runner left `running`: finding and closing them.
//!
//! A runner (the daemon, `overnight exec`, `overnight run`) is known by its
//! pid and start time, recorded with each run. Once it is gone, its run can
//! end no other way: whoever reads the history closes it — the daemon at
//! start (watching a job that outlived it), every reading command and the
//! API for the rest ([`Store::close_lost`]).

use chrono::{DateTime, Utc};
use sqlx::Row;
use std::path::PathBuf;

use super::{Store, StoreError, on_db, time_text};
use crate::report::{Report, RunHeader, Status, Trigger};

/// A run left `running` by a runner that is gone.
#[derive(Debug, Clone)]
pub struct Abandoned {
    /// The run.
    pub id: i64,
    /// Its job.
    pub job: String,
    /// The job's own process, if it was started: pid and start time.
    pub process: Option<(u32, u64)>,
}

impl Abandoned {
    /// Whether the job's own process still runs.
    pub fn job_lives(&self) -> bool {
        self.process
            .is_some_and(|(pid, started)| crate::process::alive(pid, started))
    }
}

impl Store {
    /// Runs left `running` on this host by a runner that is gone; with
    /// `mine`, also this process's (a daemon starting runs none yet: those
    /// are an earlier daemon's of the same process, as in tests).
    pub async fn abandoned(&self, host: &str, mine: bool) -> Result<Vec<Abandoned>, StoreError> {
        on_db!(&self.db, pool => {
            let rows = sqlx::query("SELECT id, job, pid, runner_started, job_pid, job_started FROM runs WHERE status = 'running' AND host = $1")
                .bind(host)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::new();
            for row in rows {
                let pid: Option<i64> = row.try_get("pid")?;
                let started: Option<i64> = row.try_get("runner_started")?;
                let runner_lives = |pid: u32| match started {
                    _ if pid == std::process::id() => !mine,
                    Some(started) => crate::process::alive(pid, started as u64),
                    None => crate::process::exists(pid),
                };
                if pid.is_some_and(|p| u32::try_from(p).is_ok_and(runner_lives)) {
                    continue; // its runner (an `overnight exec`, say) still runs it
                }
                let job_pid: Option<i64> = row.try_get("job_pid")?;
                let job_started: Option<i64> = row.try_get("job_started")?;
                out.push(Abandoned {
                    id: row.try_get("id")?,
                    job: row.try_get("job")?,
                    process: job_pid.zip(job_started).map(|(p, s)| (p as u32, s as u64)),
                });
            }
            Ok(out)
        })
    }

    /// Closes the runs whose runner is gone and whose job is gone too, as
    /// `lost` (`mine` as for [`Store::abandoned`]); returns their reports. A run whose job still lives stays
    /// `running` (it holds its locks for real) until the daemon watches it
    /// to its end or it ends.
    pub async fn close_lost(&self, host: &str, mine: bool) -> Result<Vec<Report>, StoreError> {
        let lost: Vec<Abandoned> = self
            .abandoned(host, mine)
            .await?
            .into_iter()
            .filter(|run| !run.job_lives())
            .collect();
        let mut closed = Vec::new();
        if lost.is_empty() {
            return Ok(closed);
        }
        // The runner may have written its run's end after the fold that
        // showed the run `running`; now that it is known gone, a fold reads
        // its journal to the end. Without that fold (a full disk) nothing
        // is closed: its end may be in the journal still.
        if let Err(e) = self.fold_journal().await {
            log::warn!(target: "overnight::store", "runs whose runner is gone are left open until the journal can be folded: {e}");
            return Ok(closed);
        }
        for run in lost {
            let why = "lost: the overnight process that ran it ended without recording its end \
                       (killed, or its machine stopped), and the job is gone too; its outcome is unknown";
            closed.extend(self.close_abandoned(run.id, Status::Lost, why).await?);
        }
        Ok(closed)
    }

    /// Closes an abandoned run with `status` (`lost`, `orphaned`), a
    /// summary, and a report holding one error entry that says what
    /// happened; its lock records go. Returns that report, or `None` when
    /// the run is not `running` (any more).
    pub async fn close_abandoned(
        &self,
        id: i64,
        status: Status,
        why: &str,
    ) -> Result<Option<Report>, StoreError> {
        on_db!(&self.db, pool => {
            let Some(run) = self.run(id).await? else {
                return Ok(None);
            };
            let parse_time = |t: &str| {
                DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&Utc))
                    .ok()
            };
            let trigger = serde_json::from_value(serde_json::Value::String(run.trigger.clone()))
                .unwrap_or(Trigger::Schedule);
            let capture = run
                .capture_path
                .clone()
                .map(PathBuf::from)
                .unwrap_or_default();
            let header = RunHeader {
                run_id: id,
                job: run.job.clone(),
                attempt: run.attempt as u32,
                trigger,
                scheduled_at: run.scheduled_at.as_deref().and_then(parse_time),
                started_at: parse_time(&run.started_at).unwrap_or_else(Utc::now),
                host: run.host.clone(),
                capture,
                flow: None,
            };
            let report = Report::synthetic(&header, status, why);
            let now = report.finished_at;
            let closed = sqlx::query(
                "UPDATE runs SET status = $1, finished_at = $2, summary = $3, error_count = 1, report = $4 \
                 WHERE id = $5 AND status = 'running'",
            )
            .bind(status.as_str())
            .bind(time_text(now))
            .bind(crate::store::text_of(why))
            .bind(serde_json::to_string(&report).expect("a report always serialises"))
            .bind(id)
            .execute(pool)
            .await?;
            Ok((closed.rows_affected() == 1).then_some(report))
        })
    }
}
