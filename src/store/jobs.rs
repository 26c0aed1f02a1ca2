//! The job definitions as last loaded, for SQL that joins runs with them.

use chrono::Utc;

use super::{BeginWrite, Store, StoreError, on_db, time_text};
use crate::config::Job;

impl Store {
    /// Mirrors the job definitions, so SQL can join runs with them.
    pub async fn sync_jobs(&self, jobs: &[std::sync::Arc<Job>]) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            let now = time_text(Utc::now());
            let key = self.definition_key()?;
            let mut tx = pool.begin_write().await?;
            let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
            let known: Vec<String> = sqlx::query_scalar("SELECT name FROM jobs")
                .fetch_all(&mut *tx)
                .await?;
            for gone in known.iter().filter(|n| !names.contains(&n.as_str())) {
                sqlx::query("DELETE FROM jobs WHERE name = $1")
                    .bind(gone)
                    .execute(&mut *tx)
                    .await?;
            }
            for job in jobs {
                let definition = job.definition(&key);
                let hash = format!("{:016x}", fnv1a(definition.as_bytes()));
                sqlx::query(
                    "INSERT INTO jobs (name, schedule, kind, definition, definition_hash, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule, kind = excluded.kind, \
                     definition = excluded.definition, definition_hash = excluded.definition_hash, \
                     updated_at = excluded.updated_at WHERE jobs.definition_hash <> excluded.definition_hash",
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
        })
    }
}

impl Store {
    /// The state directory's key for digests of job environments
    /// (`definition-key`, 32 random bytes, 0600), made on first use.
    fn definition_key(&self) -> Result<[u8; 32], StoreError> {
        use std::io::{Read, Write};
        let path = self.state_dir.join("definition-key");
        let mut key = [0u8; 32];
        let made = crate::state::random_bytes(&mut key).and_then(|()| {
            // The first process to make it wins; the others read its key.
            let mut file = crate::state::create_new(&path)?;
            file.write_all(&key)
        });
        match made {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut file = crate::state::open_read(&path).map_err(StoreError::file(&path))?;
                file.read_exact(&mut key).map_err(StoreError::file(&path))?;
                Ok(key)
            }
            Err(e) => Err(StoreError::file(&path)(e)),
        }
    }
}

/// FNV-1a, 64 bits: a stable hash for "has this definition changed".
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
