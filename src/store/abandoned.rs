//! Runs a dead runner left `running`: finding and closing them.

use chrono::{DateTime, Utc};
use sqlx::Row;
use std::path::PathBuf;

use super::{Store, StoreError, time_text};
use crate::report::{Report, Status, Trigger};

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

impl Store {
    /// Runs left `running` on this host by a runner that is gone.
    pub async fn abandoned(&self, host: &str) -> Result<Vec<Abandoned>, StoreError> {
        let rows = sqlx::query("SELECT id, job, pid, job_pid, job_started FROM runs WHERE status = 'running' AND host = ?")
            .bind(host)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let pid: Option<i64> = row.try_get("pid")?;
            if pid.is_some_and(|p| {
                p != i64::from(std::process::id())
                    && u32::try_from(p).is_ok_and(crate::process::exists)
            }) {
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
    }

    /// Closes an abandoned run with `status` (`lost`, `orphaned`), a
    /// summary, and a report holding one error entry that says what
    /// happened; its lock records go. Returns that report.
    pub async fn close_abandoned(
        &self,
        id: i64,
        status: Status,
        why: &str,
    ) -> Result<Option<Report>, StoreError> {
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
        let scheduled_at = run.scheduled_at.as_deref().and_then(parse_time);
        let mut report = Report::synthetic(
            id,
            &run.job,
            trigger,
            scheduled_at,
            status,
            why,
            &run.host,
            capture,
        );
        report.started_at = parse_time(&run.started_at).unwrap_or(report.finished_at);
        report.duration_ms = (report.finished_at - report.started_at)
            .num_milliseconds()
            .max(0) as u64;
        report.attempt = run.attempt as u32;
        let now = report.finished_at;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE runs SET status = ?, finished_at = ?, summary = ?, error_count = 1, report = ? \
             WHERE id = ? AND status = 'running'",
        )
        .bind(status.as_str())
        .bind(time_text(now))
        .bind(why)
        .bind(serde_json::to_string(&report).expect("a report always serialises"))
        .bind(id)
        .execute(&mut *tx)
        .await?;

        tx.commit().await?;
        Ok(Some(report))
    }
}
