//! The mirror of who holds which lock (the kernel's flock is the truth).

use chrono::Utc;
use sqlx::Row;

use super::{Store, StoreError, time_text};

impl Store {
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
}
