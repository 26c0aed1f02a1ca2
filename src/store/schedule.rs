//! What the scheduler has dealt with: fires handled, fires not run.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::HashMap;

use super::{MARK_HANDLED, Store, StoreError, for_each_db, on_db, time_text};
use crate::report::{Status, Trigger};

/// A fire that did not run, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NotRun {
    /// Its id, from [`Store::next_run_id`] or the journal's.
    pub id: i64,
    /// The job's name.
    pub job: String,
    /// What would have started it.
    pub trigger: Trigger,
    /// The fire time, for scheduled fires.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// `missed` or `skipped`.
    pub status: Status,
    /// The reason, in words.
    pub why: String,
    /// The host.
    pub host: String,
    /// The runner's pid.
    pub pid: u32,
}

for_each_db! {
/// Inserts a fire that did not run; as [`insert_run`](super::runs::insert_run),
/// nothing is written when its id is taken. Returns whether it was written.
pub(crate) async fn insert_not_run<'e>(
    db: impl sqlx::Executor<'e, Database = Db>,
    not_run: &NotRun,
) -> Result<bool, sqlx::Error> {
    let at = time_text(not_run.at);
    // A trigger marks a scheduled fire handled (migration 0005).
    let done = sqlx::query(
        "INSERT INTO runs (id, job, trigger, scheduled_at, started_at, finished_at, status, summary, host, pid) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
    )
    .bind(not_run.id)
    .bind(&not_run.job)
    .bind(not_run.trigger.as_str())
    .bind(not_run.scheduled_at.map(time_text))
    .bind(&at)
    .bind(&at)
    .bind(not_run.status.as_str())
    .bind(crate::store::text_of(&not_run.why))
    .bind(&not_run.host)
    .bind(i64::from(not_run.pid))
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
}

impl Store {
    /// Records a fire that was not run (`missed`, `skipped`).
    pub async fn record_not_run(&self, not_run: &NotRun) -> Result<(), StoreError> {
        if !on_db!(&self.db, pool, q => q::insert_not_run(pool, not_run).await)? {
            return Err(StoreError::IdTaken(not_run.id));
        }
        Ok(())
    }

    /// The latest fire handled, per job.
    pub async fn last_handled(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        on_db!(&self.db, pool => {
            let rows = sqlx::query("SELECT job, last_handled FROM schedule_state")
                .fetch_all(pool)
                .await?;
            let mut out = HashMap::new();
            for row in rows {
                let at: String = row.try_get("last_handled")?;
                if let Ok(at) = DateTime::parse_from_rfc3339(&at) {
                    out.insert(row.try_get("job")?, at.with_timezone(&Utc));
                }
            }
            Ok(out)
        })
    }

    /// Marks every fire of these jobs up to `at` as handled. With
    /// `only_new`, jobs that already have a state keep it.
    pub async fn mark_handled(
        &self,
        jobs: &[impl AsRef<str>],
        at: DateTime<Utc>,
        only_new: bool,
    ) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            let sql = if only_new {
                "INSERT INTO schedule_state (job, last_handled) VALUES ($1, $2) ON CONFLICT (job) DO NOTHING"
            } else {
                MARK_HANDLED
            };
            let mut tx = pool.begin().await?;
            for job in jobs {
                sqlx::query(sql)
                    .bind(job.as_ref())
                    .bind(time_text(at))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}
