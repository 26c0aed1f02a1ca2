//! Run history in SQLite.
//!
//! One file, `<state_dir>/overnight.db`, in WAL mode so that the CLI reads
//! while the daemon writes. The schema's migrations are compiled into the
//! binary and applied in order, tracked by SQLite's `user_version`. A run is
//! inserted as `running` before its job starts and completed when it ends,
//! so no started run can be missing from the history.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};

use crate::config::Job;
use crate::report::{Report, Status, Trigger};

/// The schema, one step per entry; never edit a released step, add one.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_schedule_state.sql"),
    include_str!("migrations/0003_processes_attempts_locks.sql"),
    include_str!("migrations/0004_notifications.sql"),
];

/// Moves a job's "last handled" fire forward, never back.
const MARK_HANDLED: &str = "INSERT INTO schedule_state (job, last_handled) VALUES (?, ?) \
     ON CONFLICT (job) DO UPDATE SET last_handled = max(last_handled, excluded.last_handled)";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or prepared.
    #[error("cannot open the run history `{}`: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// The reason.
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("run history: {0}")]
    Query(#[from] sqlx::Error),
}

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
    pub status: String,
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

/// A run about to start.
#[derive(Debug)]
pub struct NewRun<'a> {
    /// The job's name.
    pub job: &'a str,
    /// What started it.
    pub trigger: Trigger,
    /// The fire time, for scheduled runs.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// When it starts.
    pub started_at: DateTime<Utc>,
    /// The host.
    pub host: &'a str,
}

/// One delivery of a trigger, as recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Notification {
    /// The run it was about.
    pub run_id: i64,
    /// Its job.
    pub job: String,
    /// The rule.
    pub rule: String,
    /// `run`, `email`, `webhook` or `log`.
    pub action: String,
    /// The condition it answered.
    pub condition: String,
    /// `sent`, `failed` or `suppressed`.
    pub status: String,
    /// What happened (the error of a failed delivery).
    pub detail: Option<String>,
    /// When.
    pub at: String,
}

/// A fire that did not run, and why.
#[derive(Debug)]
pub struct NotRun<'a> {
    /// The job's name.
    pub job: &'a str,
    /// What would have started it.
    pub trigger: Trigger,
    /// The fire time, for scheduled fires.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// `missed` or `skipped`.
    pub status: Status,
    /// The reason, in words.
    pub why: &'a str,
    /// The host.
    pub host: &'a str,
}

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

/// The run history.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
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

/// Times are stored as RFC 3339 UTC text, which sorts like time.
pub fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Store {
    /// Opens (creating if need be) the history in `state_dir`.
    pub async fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let path = state_dir.join("overnight.db");
        let fail = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(|e| fail(sqlx::Error::Io(e)))?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(fail)?;
        let store = Store { pool };
        store.migrate().await.map_err(fail)?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        // IMMEDIATE: two processes opening a new file migrate one at a time.
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let done: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *conn)
            .await?;
        for (step, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
            sqlx::raw_sql(*sql).execute(&mut *conn).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "PRAGMA user_version = {}",
                step + 1
            )))
            .execute(&mut *conn)
            .await?;
        }
        sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
        conn.ping().await
    }

    /// Records a run as started; returns its id. The capture path is known
    /// once the id is: `capture(id)` gives it, and it is stored at once so
    /// that a follower can find a running run's output.
    pub async fn start_run(
        &self,
        run: &NewRun<'_>,
        capture: impl Fn(i64) -> PathBuf,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id = sqlx::query(
            "INSERT INTO runs (job, trigger, scheduled_at, started_at, status, host, pid) \
             VALUES (?, ?, ?, ?, 'running', ?, ?)",
        )
        .bind(run.job)
        .bind(run.trigger.as_str())
        .bind(run.scheduled_at.map(time_text))
        .bind(time_text(run.started_at))
        .bind(run.host)
        .bind(i64::from(std::process::id()))
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        sqlx::query("UPDATE runs SET capture_path = ? WHERE id = ?")
            .bind(capture(id).to_string_lossy())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // A scheduled fire is handled once its run exists: same transaction.
        if let Some(at) = run.scheduled_at {
            sqlx::query(MARK_HANDLED)
                .bind(run.job)
                .bind(time_text(at))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Records how a run ended, with its report.
    pub async fn finish_run(&self, report: &Report) -> Result<(), StoreError> {
        let json = serde_json::to_string(report).expect("a report always serialises");
        sqlx::query(
            "UPDATE runs SET finished_at = ?, status = ?, exit_code = ?, signal = ?, error_count = ?, \
             warning_count = ?, summary = ?, report = ?, capture_path = ?, attempt = ? WHERE id = ?",
        )
        .bind(time_text(report.finished_at))
        .bind(report.status.as_str())
        .bind(report.exit.code)
        .bind(report.exit.signal)
        .bind(report.error_count as i64)
        .bind(report.warning_count as i64)
        .bind(&report.summary)
        .bind(json)
        .bind(report.log.capture.to_string_lossy())
        .bind(i64::from(report.attempt))
        .bind(report.run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a fire that was not run as a `missed` run; returns its id.
    pub async fn record_not_run(&self, not_run: &NotRun<'_>) -> Result<i64, StoreError> {
        let now = time_text(Utc::now());
        let mut tx = self.pool.begin().await?;
        let id = sqlx::query(
            "INSERT INTO runs (job, trigger, scheduled_at, started_at, finished_at, status, summary, host, pid) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(not_run.job)
        .bind(not_run.trigger.as_str())
        .bind(not_run.scheduled_at.map(time_text))
        .bind(&now)
        .bind(&now)
        .bind(not_run.status.as_str())
        .bind(not_run.why)
        .bind(not_run.host)
        .bind(i64::from(std::process::id()))
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        if let Some(at) = not_run.scheduled_at {
            sqlx::query(MARK_HANDLED)
                .bind(not_run.job)
                .bind(time_text(at))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// The latest fire handled, per job.
    pub async fn last_handled(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let rows = sqlx::query("SELECT job, last_handled FROM schedule_state")
            .fetch_all(&self.pool)
            .await?;
        let mut out = HashMap::new();
        for row in rows {
            let at: String = row.try_get("last_handled")?;
            if let Ok(at) = DateTime::parse_from_rfc3339(&at) {
                out.insert(row.try_get("job")?, at.with_timezone(&Utc));
            }
        }
        Ok(out)
    }

    /// Marks every fire of these jobs up to `at` as handled. With
    /// `only_new`, jobs that already have a state keep it.
    pub async fn mark_handled(
        &self,
        jobs: &[&str],
        at: DateTime<Utc>,
        only_new: bool,
    ) -> Result<(), StoreError> {
        let sql = if only_new {
            "INSERT OR IGNORE INTO schedule_state (job, last_handled) VALUES (?, ?)"
        } else {
            MARK_HANDLED
        };
        let mut tx = self.pool.begin().await?;
        for job in jobs {
            sqlx::query(sql)
                .bind(*job)
                .bind(time_text(at))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Runs left `running` on this host by a runner that is gone.
    pub async fn abandoned(&self, host: &str) -> Result<Vec<Abandoned>, StoreError> {
        let rows = sqlx::query("SELECT id, job, pid, job_pid, job_started FROM runs WHERE status = 'running' AND host = ?")
            .bind(host)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let pid: Option<i64> = row.try_get("pid")?;
            if pid.is_some_and(|p| p != i64::from(std::process::id()) && process_alive(p)) {
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
        sqlx::query("DELETE FROM held_locks WHERE run_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(report))
    }

    /// Records the job's own process once it is started.
    pub async fn record_process(
        &self,
        id: i64,
        pid: u32,
        started: Option<u64>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET job_pid = ?, job_started = ? WHERE id = ?")
            .bind(i64::from(pid))
            .bind(started.map(|s| s as i64))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records one attempt of a run.
    pub async fn record_attempt(&self, report: &Report) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT OR REPLACE INTO attempts (run_id, attempt, started_at, finished_at, status, exit_code, signal, summary, report) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(report.run_id)
        .bind(i64::from(report.attempt))
        .bind(time_text(report.started_at))
        .bind(time_text(report.finished_at))
        .bind(report.status.as_str())
        .bind(report.exit.code)
        .bind(report.exit.signal)
        .bind(&report.summary)
        .bind(serde_json::to_string(report).expect("a report always serialises"))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The attempts of a run, in order, as (attempt, status, summary).
    pub async fn attempts(
        &self,
        id: i64,
    ) -> Result<Vec<(i64, String, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT attempt, status, summary FROM attempts WHERE run_id = ? ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("attempt")?,
                    r.try_get("status")?,
                    r.try_get("summary")?,
                ))
            })
            .collect()
    }

    /// Mirrors the locks a run holds.
    pub async fn record_locks(
        &self,
        id: i64,
        job: &str,
        locks: &[crate::lock::LockSpec],
    ) -> Result<(), StoreError> {
        let now = time_text(Utc::now());
        let mut tx = self.pool.begin().await?;
        for lock in locks {
            sqlx::query("INSERT OR REPLACE INTO held_locks (name, mode, run_id, job, acquired_at) VALUES (?, ?, ?, ?, ?)")
                .bind(&lock.name)
                .bind(match lock.mode {
                    crate::lock::Mode::Exclusive => "exclusive",
                    crate::lock::Mode::Shared => "shared",
                })
                .bind(id)
                .bind(job)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets the locks of a run (it ended).
    pub async fn release_locks(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM held_locks WHERE run_id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every lock held, as (name, mode, run id, job).
    pub async fn held_locks(&self) -> Result<Vec<(String, String, i64, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT name, mode, run_id, job FROM held_locks ORDER BY name, run_id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("name")?,
                    r.try_get("mode")?,
                    r.try_get("run_id")?,
                    r.try_get("job")?,
                ))
            })
            .collect()
    }

    /// Mirrors the job definitions, so SQL can join runs with them.
    pub async fn sync_jobs(&self, jobs: &[Job]) -> Result<(), StoreError> {
        let now = time_text(Utc::now());
        let mut tx = self.pool.begin().await?;
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        let known: Vec<String> = sqlx::query_scalar("SELECT name FROM jobs")
            .fetch_all(&mut *tx)
            .await?;
        for gone in known.iter().filter(|n| !names.contains(&n.as_str())) {
            sqlx::query("DELETE FROM jobs WHERE name = ?")
                .bind(gone)
                .execute(&mut *tx)
                .await?;
        }
        for job in jobs {
            let definition = job.definition();
            let hash = format!("{:016x}", fnv1a(definition.as_bytes()));
            sqlx::query(
                "INSERT INTO jobs (name, schedule, kind, definition, definition_hash, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule, kind = excluded.kind, \
                 definition = excluded.definition, definition_hash = excluded.definition_hash, \
                 updated_at = excluded.updated_at WHERE definition_hash <> excluded.definition_hash",
            )
            .bind(&job.name)
            .bind(job.schedule.as_ref().map(ToString::to_string))
            .bind(job.kind())
            .bind(&definition)
            .bind(hash)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One run.
    pub async fn run(&self, id: i64) -> Result<Option<RunRecord>, StoreError> {
        let row = sqlx::query(select_runs!("WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| record(&r)).transpose()
    }

    /// One run's report, when it has ended.
    pub async fn report(&self, id: i64) -> Result<Option<Report>, StoreError> {
        let json: Option<Option<String>> =
            sqlx::query_scalar("SELECT report FROM runs WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(json.flatten().and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// The newest runs first, of one job or of all.
    pub async fn history(
        &self,
        job: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let rows = match job {
            Some(job) => {
                sqlx::query(select_runs!("WHERE job = ? ORDER BY id DESC LIMIT ?"))
                    .bind(job)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(select_runs!("ORDER BY id DESC LIMIT ?"))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(record).collect()
    }

    /// Every run still `running`.
    pub async fn running(&self) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(select_runs!("WHERE status = 'running' ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record).collect()
    }

    /// The newest finished run of each job.
    pub async fn last_finished(&self) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(select_runs!(
            "WHERE id IN (SELECT MAX(id) FROM runs WHERE status <> 'running' GROUP BY job) ORDER BY job"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    /// Records one delivery of a trigger (or why it was not made).
    pub async fn record_notification(&self, n: &Notification) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO notifications (run_id, job, rule, action, condition, status, detail, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(n.run_id)
        .bind(&n.job)
        .bind(&n.rule)
        .bind(&n.action)
        .bind(&n.condition)
        .bind(&n.status)
        .bind(&n.detail)
        .bind(&n.at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The deliveries about a run, in order.
    pub async fn notifications(&self, run_id: i64) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query(
            "SELECT run_id, job, rule, action, condition, status, detail, at FROM notifications WHERE run_id = ? ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Notification {
                    run_id: r.try_get("run_id")?,
                    job: r.try_get("job")?,
                    rule: r.try_get("rule")?,
                    action: r.try_get("action")?,
                    condition: r.try_get("condition")?,
                    status: r.try_get("status")?,
                    detail: r.try_get("detail")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    /// How many messages a rule sent since `since`.
    pub async fn sent_since(&self, rule: &str, since: DateTime<Utc>) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(DISTINCT run_id || ':' || condition) FROM notifications WHERE rule = ? AND status = 'sent' AND at > ?",
        )
        .bind(rule)
        .bind(time_text(since))
        .fetch_one(&self.pool)
        .await?)
    }

    /// The outcome of the job's latest run before `run_id` that ran to an
    /// end (not skipped or missed).
    pub async fn previous_outcome(
        &self,
        job: &str,
        run_id: i64,
    ) -> Result<Option<Status>, StoreError> {
        let status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM runs WHERE job = ? AND id < ? \
             AND status IN ('success', 'warning', 'failed', 'lost', 'orphaned') ORDER BY id DESC LIMIT 1",
        )
        .bind(job)
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(status.and_then(|s| s.parse().ok()))
    }

    /// Closes the pool, finishing pending writes.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn record(row: &SqliteRow) -> Result<RunRecord, StoreError> {
    Ok(RunRecord {
        id: row.try_get("id")?,
        job: row.try_get("job")?,
        trigger: row.try_get("trigger")?,
        attempt: row.try_get("attempt")?,
        scheduled_at: row.try_get("scheduled_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        status: row.try_get("status")?,
        exit_code: row.try_get("exit_code")?,
        signal: row.try_get("signal")?,
        error_count: row.try_get("error_count")?,
        warning_count: row.try_get("warning_count")?,
        summary: row.try_get("summary")?,
        capture_path: row.try_get("capture_path")?,
        host: row.try_get("host")?,
        pid: row.try_get("pid")?,
        job_pid: row.try_get("job_pid")?,
    })
}

impl RunRecord {
    /// The status, parsed.
    pub fn status(&self) -> Option<Status> {
        Status::from_str(&self.status).ok()
    }
}

/// Whether a process with this pid exists.
pub fn process_alive(pid: i64) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// FNV-1a, 64 bits: a stable hash for "has this definition changed".
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// This machine's name, for the `host` column.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_are_recorded_and_abandoned_ones_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let id = store
            .start_run(
                &NewRun {
                    job: "a",
                    trigger: Trigger::Manual,
                    scheduled_at: None,
                    started_at: Utc::now(),
                    host: "h",
                },
                |id| PathBuf::from(format!("{id}.log")),
            )
            .await
            .unwrap();
        assert_eq!(store.running().await.unwrap().len(), 1);
        // Reopening runs no migration twice.
        let again = Store::open(dir.path()).await.unwrap();
        assert_eq!(again.history(Some("a"), 10).await.unwrap()[0].id, id);
        // Its runner (pid 1 here) lives: not abandoned.
        sqlx::query("UPDATE runs SET pid = 1")
            .execute(&store.pool)
            .await
            .unwrap();
        assert!(store.abandoned("h").await.unwrap().is_empty());
        sqlx::query("UPDATE runs SET pid = 999999999")
            .execute(&store.pool)
            .await
            .unwrap();
        let abandoned = store.abandoned("h").await.unwrap();
        assert_eq!(abandoned.len(), 1);
        store
            .close_abandoned(abandoned[0].id, Status::Lost, "lost: test")
            .await
            .unwrap();
        let report = store.report(id).await.unwrap().expect("a full report");
        assert_eq!(report.status, Status::Lost);
        assert_eq!(report.errors[0].message, "lost: test");
        assert_eq!(store.run(id).await.unwrap().unwrap().status, "lost");
    }
}
