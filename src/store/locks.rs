//! Who holds which lock: the `locks` of the runs still `running` (the
//! kernel's flock is the truth; this mirrors it for `status` and the API).

use sqlx::Row;

use super::{Store, StoreError, on_db};

impl Store {
    /// Every lock held, as (name, mode, run id, job), by name.
    pub async fn held_locks(&self) -> Result<Vec<(String, String, i64, String)>, StoreError> {
        on_db!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT id, job, locks FROM runs WHERE status = 'running' AND locks IS NOT NULL",
            )
            .fetch_all(pool)
            .await?;
            let mut held = Vec::new();
            for row in rows {
                let id: i64 = row.try_get("id")?;
                let job: String = row.try_get("job")?;
                let locks: String = row.try_get("locks")?;
                for line in locks.lines() {
                    if let Some((name, mode)) = line.split_once(' ') {
                        held.push((name.to_string(), mode.to_string(), id, job.clone()));
                    }
                }
            }
            held.sort();
            Ok(held)
        })
    }
}
