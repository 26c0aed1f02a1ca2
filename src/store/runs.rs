//! Runs: started, ended, looked up; and their attempts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

use super::{
    Columns, Db, HistoryQuery, Store, StoreError, bind_history, for_each_db, history_where, on_db,
    time_text,
};
use crate::report::{Report, Status, Trigger};

/// A run as the store keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id.
    pub id: i64,
    /// The job's name.
    pub job: String,
    /// What started it.
    pub trigger: String,
    /// The attempt, from 1.
    pub attempt: i64,
    /// The fire time, for scheduled runs.
    pub scheduled_at: Option<String>,
    /// When it started.
    pub started_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Its status.
    pub status: Status,
    /// The exit code.
    pub exit_code: Option<i64>,
    /// The signal that ended it.
    pub signal: Option<i64>,
    /// How many errors it reported.
    pub error_count: i64,
    /// How many warnings.
    pub warning_count: i64,
    /// The one-line summary.
    pub summary: Option<String>,
    /// The capture file.
    pub capture_path: Option<String>,
    /// The host.
    pub host: String,
    /// The pid of the runner that ran it.
    pub pid: Option<i64>,
    /// The pid of the job's own process (its process group).
    pub job_pid: Option<i64>,
}

/// What became of a run's end, given to the store.
#[derive(Debug)]
pub enum Finished {
    /// It is the run's record.
    Recorded,
    /// The run was closed before (as `lost`, by a host that declared this
    /// one dead): that record stands.
    ClosedBefore(Box<RunRecord>),
}

/// A run about to start, as the store (or the journal) records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewRun {
    /// Its id, from [`Store::next_run_id`] or the journal's.
    pub id: i64,
    /// The job's name.
    pub job: String,
    /// What started it.
    pub trigger: Trigger,
    /// The fire time, for scheduled runs.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// When it starts.
    pub started_at: DateTime<Utc>,
    /// The host.
    pub host: String,
    /// The runner's pid.
    pub pid: u32,
    /// The runner's start time, to tell it from a later process with the
    /// same pid (`None` where `/proc` cannot tell).
    #[serde(default)]
    pub runner_started: Option<u64>,
    /// The locks it holds while it runs.
    pub locks: Vec<crate::lock::LockSpec>,
    /// Its capture file, known from the start so that a follower finds a
    /// running run's output.
    #[serde(serialize_with = "crate::report::lossy_path")]
    pub capture: std::path::PathBuf,
    /// The flow run and step it is a step's run of: a run the journal's
    /// fold records under another id is found in its step's row by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_step: Option<(i64, String)>,
    /// The host's epoch its fire was claimed under, in a cluster: the run
    /// is recorded, and its job started, only while that epoch is the
    /// host's (store/cluster.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
}

/// Locks as the `locks` column keeps them: `name mode`, one per line.
pub(crate) fn lock_text(locks: &[crate::lock::LockSpec]) -> Option<String> {
    let text: Vec<String> = locks
        .iter()
        .map(|l| {
            let mode = match l.mode {
                crate::lock::Mode::Exclusive => "exclusive",
                crate::lock::Mode::Shared => "shared",
            };
            format!("{} {mode}", l.name)
        })
        .collect();
    (!text.is_empty()).then(|| text.join("\n"))
}

/// `SELECT <columns> FROM runs <rest>`, as a static string (sqlx wants its
/// SQL static unless asserted safe).
macro_rules! select_runs {
    ($rest:literal) => {
        concat!(
            "SELECT id, job, trigger, attempt, scheduled_at, started_at, finished_at, status, exit_code, \
             signal, error_count, warning_count, summary, capture_path, host, pid, job_pid FROM runs ",
            $rest
        )
    };
}

/// Binds a [`NewRun`] to `$1`…`$10` of an insert into `runs`.
macro_rules! bind_new_run {
    ($query:expr, $run:expr) => {
        $query
            .bind($run.id)
            .bind(&$run.job)
            .bind($run.trigger.as_str())
            .bind($run.scheduled_at.map($crate::store::time_text))
            .bind($crate::store::time_text($run.started_at))
            .bind(&$run.host)
            .bind(i64::from($run.pid))
            .bind($run.runner_started.map(|t| t as i64))
            .bind($crate::store::runs::lock_text(&$run.locks))
            .bind($run.capture.to_string_lossy())
    };
}
pub(crate) use bind_new_run;

for_each_db! {
/// Inserts a started run; no row is written when its id is taken (the
/// journal's fold tells a replay from a clash by that). Returns whether it
/// was written.
pub(crate) async fn insert_run<'e>(
    db: impl sqlx::Executor<'e, Database = Db>,
    run: &NewRun,
) -> Result<bool, sqlx::Error> {
    // A trigger marks a scheduled fire handled (migration 0005).
    let done = bind_new_run!(sqlx::query(
        "INSERT INTO runs (id, job, trigger, scheduled_at, started_at, status, host, pid, runner_started, locks, capture_path) \
         VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
    ), run)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records how a run ended, with its report, if it is still `running`;
/// whether it was.
pub(crate) async fn update_finished<'e>(
    db: impl sqlx::Executor<'e, Database = Db>,
    report: &Report,
) -> Result<bool, sqlx::Error> {
    let json = serde_json::to_string(report).expect("a report always serialises");
    let updated = sqlx::query(
        "UPDATE runs SET finished_at = $1, status = $2, exit_code = $3, signal = $4, error_count = $5, \
         warning_count = $6, summary = $7, report = $8, capture_path = $9, attempt = $10 \
         WHERE id = $11 AND status = 'running'",
    )
    .bind(time_text(report.finished_at))
    .bind(report.status.as_str())
    .bind(report.exit.code)
    .bind(report.exit.signal)
    .bind(report.error_count as i64)
    .bind(report.warning_count as i64)
    .bind(crate::store::text_of(&report.summary))
    .bind(json)
    .bind(report.log.capture.to_string_lossy())
    .bind(i64::from(report.attempt))
    .bind(report.run_id)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Records the job's own process (pid and start time) of run `id`.
pub(crate) async fn update_process<'e>(
    db: impl sqlx::Executor<'e, Database = Db>,
    id: i64,
    pid: u32,
    started: Option<u64>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE runs SET job_pid = $1, job_started = $2 WHERE id = $3")
        .bind(i64::from(pid))
        .bind(started.map(|s| s as i64))
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Records one attempt of a run (an earlier one: the run's row is the last).
pub(crate) async fn insert_attempt<'e>(
    db: impl sqlx::Executor<'e, Database = Db>,
    report: &Report,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO attempts (run_id, attempt, started_at, finished_at, status, exit_code, signal, summary, report) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (run_id, attempt) DO UPDATE SET started_at = excluded.started_at, \
         finished_at = excluded.finished_at, status = excluded.status, exit_code = excluded.exit_code, \
         signal = excluded.signal, summary = excluded.summary, report = excluded.report",
    )
    .bind(report.run_id)
    .bind(i64::from(report.attempt))
    .bind(time_text(report.started_at))
    .bind(time_text(report.finished_at))
    .bind(report.status.as_str())
    .bind(report.exit.code)
    .bind(report.exit.signal)
    .bind(crate::store::text_of(&report.summary))
    .bind(serde_json::to_string(report).expect("a report always serialises"))
    .execute(db)
    .await?;
    Ok(())
}
}

impl Store {
    /// Records a run as started, under the id it was given.
    /// A run whose fire was claimed under an epoch no longer its host's
    /// is not: [`StoreError::Fenced`].
    pub async fn start_run(&self, run: &NewRun) -> Result<(), StoreError> {
        if let (Db::Postgres(pool), Some(epoch)) = (&self.db, run.epoch) {
            // Run ids come from the server's sequence: never taken twice;
            // a row of this id is this start's, its answer lost before.
            if super::cluster::insert_fenced_run(pool, run, epoch).await?
                || self.run(run.id).await?.is_some()
            {
                return Ok(());
            }
            return Err(StoreError::Fenced(run.host.clone()));
        }
        if !on_db!(&self.db, pool, q => q::insert_run(pool, run).await)? {
            return Err(StoreError::IdTaken(run.id));
        }
        Ok(())
    }

    /// Records how a run ended, with its report, unless the run was closed
    /// meanwhile: a cluster's survivors close the runs of a host they
    /// declared dead as `lost`, and a host that comes back from a freeze
    /// does not overwrite that (nor tell its triggers a second end).
    pub async fn finish_run(&self, report: &Report) -> Result<Finished, StoreError> {
        if on_db!(&self.db, pool, q => q::update_finished(pool, report).await)? {
            return Ok(Finished::Recorded);
        }
        // Not running: closed by another, or recorded by a try whose
        // answer was lost (then it ended at this very instant).
        let ended = time_text(report.finished_at);
        Ok(match self.run(report.run_id).await? {
            Some(run) if run.finished_at.as_deref() != Some(ended.as_str()) => {
                Finished::ClosedBefore(Box::new(run))
            }
            // A run whose start was not recorded: said when it started.
            _ => Finished::Recorded,
        })
    }

    /// Records the job's own process once it is started.
    pub async fn record_process(
        &self,
        id: i64,
        pid: u32,
        started: Option<u64>,
    ) -> Result<(), StoreError> {
        Ok(on_db!(&self.db, pool, q => q::update_process(pool, id, pid, started).await)?)
    }

    /// One run.
    pub async fn run(&self, id: i64) -> Result<Option<RunRecord>, StoreError> {
        on_db!(&self.db, pool => {
            let row = sqlx::query(select_runs!("WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.map(|r| record(&r)).transpose()
        })
    }

    /// One run's report, when it has ended.
    pub async fn report(&self, id: i64) -> Result<Option<Report>, StoreError> {
        let json: Option<Option<String>> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT report FROM runs WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(json.flatten().and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// The runs `filter` picks, newest first.
    pub async fn history(&self, filter: &HistoryQuery) -> Result<Vec<RunRecord>, StoreError> {
        on_db!(&self.db, pool => {
            let query = sqlx::query(concat!(select_runs!(""), history_where!("job")));
            let rows = bind_history!(query, filter).fetch_all(pool).await?;
            rows.iter().map(record).collect()
        })
    }

    /// Every run still `running`.
    pub async fn running(&self) -> Result<Vec<RunRecord>, StoreError> {
        on_db!(&self.db, pool => {
            let rows = sqlx::query(select_runs!("WHERE status = 'running' ORDER BY id"))
                .fetch_all(pool)
                .await?;
            rows.iter().map(record).collect()
        })
    }

    /// The run of each job that ended last (a run stopped after a later
    /// fire was skipped is the last, not the skipped fire).
    pub async fn last_finished(&self) -> Result<Vec<RunRecord>, StoreError> {
        on_db!(&self.db, pool => {
            let rows = sqlx::query(select_runs!(
                "WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER \
                 (PARTITION BY job ORDER BY finished_at DESC NULLS LAST, id DESC) AS n FROM runs WHERE status <> 'running') AS last \
                 WHERE n = 1) ORDER BY job"
            ))
            .fetch_all(pool)
            .await?;
            rows.iter().map(record).collect()
        })
    }

    /// Each job's latest end of a run that did its work (`success` or
    /// `warning`), as Unix seconds.
    pub async fn last_successes(&self) -> Result<Vec<(String, f64)>, StoreError> {
        on_db!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT job, MAX(finished_at) AS at FROM runs \
                 WHERE status IN ('success', 'warning') AND finished_at IS NOT NULL GROUP BY job ORDER BY job",
            )
            .fetch_all(pool)
            .await?;
            super::named_times(&rows, "job")
        })
    }

    /// Records one attempt of a run.
    pub async fn record_attempt(&self, report: &Report) -> Result<(), StoreError> {
        Ok(on_db!(&self.db, pool, q => q::insert_attempt(pool, report).await)?)
    }

    /// The attempts of a run, in order, as (attempt, status, summary).
    pub async fn attempts(
        &self,
        id: i64,
    ) -> Result<Vec<(i64, String, Option<String>)>, StoreError> {
        on_db!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT attempt, status, summary FROM attempts WHERE run_id = $1 ORDER BY attempt",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| Ok((r.int("attempt")?, r.text("status")?, r.maybe_text("summary")?)))
                .collect()
        })
    }
}

fn record(row: &impl Columns) -> Result<RunRecord, StoreError> {
    Ok(RunRecord {
        id: row.int("id")?,
        job: row.text("job")?,
        trigger: row.text("trigger")?,
        attempt: row.int("attempt")?,
        scheduled_at: row.maybe_text("scheduled_at")?,
        started_at: row.text("started_at")?,
        finished_at: row.maybe_text("finished_at")?,
        status: Status::from_str(&row.text("status")?)
            .map_err(|e| sqlx::Error::Decode(e.into()))?,
        exit_code: row.maybe_int("exit_code")?,
        signal: row.maybe_int("signal")?,
        error_count: row.int("error_count")?,
        warning_count: row.int("warning_count")?,
        summary: row.maybe_text("summary")?,
        capture_path: row.maybe_text("capture_path")?,
        host: row.text("host")?,
        pid: row.maybe_int("pid")?,
        job_pid: row.maybe_int("job_pid")?,
    })
}
