//! Retention: what runs leave on disk, removed once old enough.
//!
//! Capture and report files go by their age on disk (their last write is
//! their run's end), read from the `runs/` folder itself, so a prune costs
//! a walk of the files that are there, whatever the history's size; a
//! running run's files stay whatever their age. History rows go only when
//! `retention.history` says so.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use chrono::Utc;

use super::{Store, StoreError, on_db, time_text};
use crate::config::retention::Retention;

/// What one prune removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Capture and report files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// History rows of runs.
    pub runs: u64,
}

impl Store {
    /// Removes what `retention` keeps no longer.
    pub async fn prune(&self, retention: &Retention) -> Result<Pruned, StoreError> {
        on_db!(&self.db, pool => {
            let mut pruned = Pruned::default();
            // Runs still only in the journal are known as running only after a
            // fold; without one (a full disk), captures wait for the next prune.
            if let Err(e) = self.fold_journal().await {
                log::warn!(target: "overnight::store", "retention not applied until the journal can be folded: {e}");
                return Ok(pruned);
            }
            if let Some(keep) = retention.captures {
                let running: HashSet<i64> = self.running().await?.iter().map(|r| r.id).collect();
                let runs = self.state_dir.join("runs");
                let cutoff = SystemTime::now() - keep;
                let (files, bytes) =
                    tokio::task::spawn_blocking(move || old_files(&runs, cutoff, &running))
                        .await
                        .expect("the walk does not panic");
                pruned.files = files;
                pruned.bytes = bytes;
            }
            // A span reaching before any representable time keeps everything.
            let cutoff = retention
                .history
                .and_then(|keep| Utc::now().checked_sub_signed(chrono::Duration::from_std(keep).ok()?));
            if let Some(cutoff) = cutoff {
                let cutoff = time_text(cutoff);
                let mut tx = pool.begin().await?;
                for table in ["attempts", "notifications"] {
                    let sql = format!(
                        "DELETE FROM {table} WHERE run_id IN (SELECT id FROM runs WHERE status <> 'running' AND coalesce(finished_at, started_at) < $1)"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&cutoff)
                        .execute(&mut *tx)
                        .await?;
                }
                let gone = sqlx::query("DELETE FROM runs WHERE status <> 'running' AND coalesce(finished_at, started_at) < $1")
                    .bind(&cutoff)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                pruned.runs = gone.rows_affected();
            }
            self.prune_fires().await?;
            Ok(pruned)
        })
    }

    /// In a cluster, forgets the claims of fires done over a week ago:
    /// every host's schedule state has long moved past them, so no host
    /// dispatches them again (a row a fire per job).
    async fn prune_fires(&self) -> Result<(), StoreError> {
        let super::Db::Postgres(pool) = &self.db else {
            return Ok(());
        };
        let cutoff = time_text(Utc::now() - chrono::Duration::days(CLAIMS_KEPT_DAYS));
        sqlx::query("DELETE FROM fires WHERE done AND scheduled_at < $1")
            .bind(cutoff)
            .execute(pool)
            .await?;
        Ok(())
    }
}

/// How long a done fire's claim is kept.
const CLAIMS_KEPT_DAYS: i64 = 7;

/// Removes the files under `runs/<job>/` last written before `cutoff`,
/// except those of `running` runs (named `<id>.…`); returns how many files
/// and bytes went. The job folders stay: a run starting now may be about to
/// write in its own.
fn old_files(runs: &Path, cutoff: SystemTime, running: &HashSet<i64>) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let Ok(jobs) = std::fs::read_dir(runs) else {
        return (0, 0);
    };
    for job in jobs.flatten() {
        let Ok(entries) = std::fs::read_dir(job.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let id = name
                .to_str()
                .and_then(|n| n.split('.').next()?.parse::<i64>().ok());
            if id.is_some_and(|id| running.contains(&id)) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let old = meta.modified().is_ok_and(|t| t < cutoff);
            if meta.is_file() && old && std::fs::remove_file(entry.path()).is_ok() {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}

/// How often the daemon prunes.
pub const PRUNE_EVERY: Duration = Duration::from_secs(24 * 3600);
