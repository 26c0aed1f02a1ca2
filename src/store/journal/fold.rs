//! The reading side of the journal: folding entries into the history,
//! each exactly once (the argument is in the module above and in
//! docs/jobs-file.md).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use sqlx::SqliteConnection;

use super::{DIR, Entry, FOLD_AFTER, Journal, JournalFile, RETRY_EVERY};
use crate::store::flows::move_step_run;
use crate::store::flows::on_sqlite::{insert_flow, update_flow};
use crate::store::notifications::on_sqlite::insert_notification;
use crate::store::runs::on_sqlite::{insert_attempt, insert_run, update_finished, update_process};
use crate::store::schedule::on_sqlite::insert_not_run;
use crate::store::{Store, StoreError};

/// What a store remembers of the files it has folded: their identity and
/// length then. A file unchanged since is not read again.
pub(in crate::store) type FoldedFiles = Mutex<HashMap<JournalFile, (u64, u64)>>;

/// Where a fold writes: its transaction, and the run-id sequence an id
/// found taken is replaced from.
struct FoldInto<'a> {
    tx: &'a mut SqliteConnection,
    ids: &'a crate::store::RunIds,
}

/// A file's bookkeeping in one fold.
#[derive(Debug, Default)]
struct Folded {
    /// Bytes folded.
    folded: i64,
    /// Whether its writer has closed it.
    closed: bool,
    /// Runs recorded under another id than the file gave them (that id
    /// was taken), as (file's id, recorded id).
    moved: HashMap<i64, i64>,
}

impl Folded {
    fn id(&self, id: i64) -> i64 {
        self.moved.get(&id).copied().unwrap_or(id)
    }
}

impl Store {
    /// Folds in what the journal holds that is not folded yet.
    pub async fn fold_journal(&self) -> Result<(), StoreError> {
        // PostgreSQL's runs are written straight away: no journal.
        let crate::store::Db::Sqlite { pool, ids } = &self.db else {
            return Ok(());
        };
        let dir = self.state_dir.join(DIR);
        // Every file with its identity and length, read off the async
        // workers, like every read and removal of the fold.
        let listed = {
            let dir = dir.clone();
            off_workers(move || list(&dir)).await
        };
        let listed = match listed {
            Ok(listed) => listed,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::file(dir)(e)),
        };
        // The files changed since this store last folded them, and those
        // whose writer has gone (to be removed).
        let mut changed: Vec<JournalFile> = {
            let seen = self.folded_files.lock().expect("folded files");
            listed
                .into_iter()
                .filter(|(file, now)| seen.get(file) != Some(now) || !file.writer_lives())
                .map(|(file, _)| file)
                .collect()
        };
        if changed.is_empty() {
            return Ok(());
        }
        changed.sort_unstable();

        // IMMEDIATE: two folders take turns, each reading under the write
        // lock how far the other got.
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<(String, i64, bool)> =
            sqlx::query_as("SELECT file, folded, closed FROM journal_folded")
                .fetch_all(&mut *tx)
                .await?;
        let mut known: HashMap<String, Folded> = rows
            .into_iter()
            .map(|(file, folded, closed)| {
                let state = Folded {
                    folded,
                    closed,
                    moved: HashMap::new(),
                };
                (file, state)
            })
            .collect();
        // Ids moved, by writer: a run (a flow run above all) outlives the
        // file it started in.
        let rows: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT file, from_id, to_id FROM journal_moved")
                .fetch_all(&mut *tx)
                .await?;
        let mut moved: HashMap<String, HashMap<i64, i64>> = HashMap::new();
        for (key, from, to) in rows {
            // Rows of before this was kept by writer name a file.
            let key = JournalFile::parse(&key).map_or(key, |f| f.writer_key());
            moved.entry(key).or_default().insert(from, to);
        }
        let mut done = Vec::new();
        for file in changed {
            let path = file.path(&dir);
            let mut state = known.remove(&file.name()).unwrap_or_default();
            state.moved = moved.remove(&file.writer_key()).unwrap_or_default();
            // Decided before reading: a writer gone now wrote its last
            // before this read, so what is read is all there is, and the
            // file may go. Decided after, a line written in between would
            // go unread with the file.
            let finished = !file.writer_lives();
            let bytes = {
                let (path, from) = (path.clone(), state.folded);
                off_workers(move || read_from(&path, from)).await
            };
            let bytes = match bytes {
                Ok(bytes) => bytes,
                // Folded and removed by another folder meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::file(path)(e)),
            };
            // Whole lines only: the writer may be halfway through one.
            let whole = memchr::memrchr(b'\n', &bytes).map_or(0, |end| end + 1);
            if whole > 0 {
                for line in bytes[..whole].split(|&b| b == b'\n') {
                    if line.is_empty() {
                        continue;
                    }
                    match serde_json::from_slice::<Entry<'_>>(line) {
                        Ok(entry) => {
                            let into = FoldInto { tx: &mut tx, ids };
                            self.apply(into, &file, entry, &mut state).await?
                        }
                        Err(e) => log::warn!(
                            target: "overnight::store",
                            "journal `{}`: an entry that cannot be read is left out: {e}",
                            path.display()
                        ),
                    }
                }
                state.folded += whole as i64;
                sqlx::query(
                    "INSERT INTO journal_folded (file, folded, closed) VALUES ($1, $2, $3) \
                     ON CONFLICT (file) DO UPDATE SET folded = excluded.folded, closed = excluded.closed",
                )
                .bind(file.name())
                .bind(state.folded)
                .bind(state.closed)
                .execute(&mut *tx)
                .await?;
            }
            done.push((file, state.folded, state.closed || finished));
            moved.insert(file.writer_key(), state.moved);
        }
        // Rows of files gone (removed after an earlier fold) are forgotten:
        // no file of that name is written again.
        for (name, _) in known {
            if !dir.join(&name).exists() {
                sqlx::query("DELETE FROM journal_folded WHERE file = $1")
                    .bind(&name)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        // A writer's moves are forgotten once none of its files is left.
        let listed = match moved.is_empty() {
            true => Ok(Vec::new()),
            false => {
                let dir = dir.clone();
                off_workers(move || list(&dir)).await
            }
        };
        // Kept while the folder cannot be listed.
        let left: std::collections::HashSet<String> = match listed {
            Ok(files) => files
                .into_iter()
                .map(|(file, _)| file.writer_key())
                .collect(),
            Err(_) => moved.keys().cloned().collect(),
        };
        for key in moved.keys().filter(|key| !left.contains(*key)) {
            sqlx::query("DELETE FROM journal_moved WHERE file = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;

        // Nothing more comes to a closed file, nor from a writer that had
        // exited before the read; the last line of a writer that died
        // halfway through it is dropped with the file.
        let kept = off_workers(move || {
            done.into_iter()
                .map(|(file, folded, finished)| {
                    let path = file.path(&dir);
                    if finished && std::fs::remove_file(&path).is_ok() {
                        (file, None)
                    } else {
                        let ino = std::fs::metadata(&path).ok().map(|m| m.ino());
                        (file, ino.map(|ino| (ino, folded as u64)))
                    }
                })
                .collect::<Vec<_>>()
        })
        .await;
        let mut seen = self.folded_files.lock().expect("folded files");
        for (file, now) in kept {
            match now {
                Some(now) => seen.insert(file, now),
                None => seen.remove(&file),
            };
        }
        Ok(())
    }

    /// Folds the journal in the background, shortly after each append of
    /// this process (the daemon's runs); sleeps while nothing is appended.
    /// While entries wait for the disk, or the fold fails, both are tried
    /// again every [`RETRY_EVERY`], so the history catches up by itself
    /// once the disk has room again. A failure is said once, and so is the
    /// recovery.
    pub fn fold_in_background(&self, journal: Journal) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                let retry = failing || journal.has_pending();
                tokio::select! {
                    () = journal.appended.notified() => tokio::time::sleep(FOLD_AFTER).await,
                    () = tokio::time::sleep(RETRY_EVERY), if retry => {}
                }
                let caught_up = match journal.retry() {
                    Ok(()) => store.fold_journal().await,
                    Err(e) => Err(e),
                };
                match caught_up {
                    Err(e) if !failing => {
                        failing = true;
                        log::error!(target: "overnight::store", "runs not recorded in the history yet, tried again every second: {e}");
                    }
                    Ok(()) if failing => {
                        failing = false;
                        log::info!(target: "overnight::store", "the history has caught up: every run is recorded");
                    }
                    _ => {}
                }
            }
        })
    }

    /// Applies one entry; a run whose id turns out taken (a run-id file
    /// older than the history) is recorded under a new one.
    async fn apply(
        &self,
        FoldInto { tx, ids }: FoldInto<'_>,
        file: &JournalFile,
        entry: Entry<'_>,
        state: &mut Folded,
    ) -> Result<(), StoreError> {
        match entry {
            Entry::Started(run) => {
                let mut run = run.into_owned();
                let given = run.id;
                if let Some((flow_run, _)) = &mut run.flow_step {
                    *flow_run = state.id(*flow_run);
                }
                while id_taken_by_flow(&mut *tx, run.id).await?
                    || !insert_run(&mut *tx, &run).await?
                {
                    run.id = self
                        .id_after_clash(FoldInto { tx, ids }, file, given, state)
                        .await?;
                }
                // Its step's row named it by the id it was given.
                if let Some((flow_run, step)) = run.flow_step.as_ref().filter(|_| run.id != given) {
                    move_step_run(&mut *tx, *flow_run, step, given, run.id).await?;
                }
            }
            Entry::NotRun(not_run) => {
                let mut not_run = not_run.into_owned();
                let given = not_run.id;
                while id_taken_by_flow(&mut *tx, not_run.id).await?
                    || !insert_not_run(&mut *tx, &not_run).await?
                {
                    not_run.id = self
                        .id_after_clash(FoldInto { tx, ids }, file, given, state)
                        .await?;
                }
            }
            Entry::Process { id, pid, started } => {
                update_process(&mut *tx, state.id(id), pid, started).await?;
            }
            Entry::Attempt(report) => {
                let mut report = report.into_owned();
                report.run_id = state.id(report.run_id);
                insert_attempt(&mut *tx, &report).await?;
            }
            Entry::Finished(report) => {
                let mut report = report.into_owned();
                report.run_id = state.id(report.run_id);
                // A run closed meanwhile (its wrapper taken for dead) keeps
                // that record, as the store's own finish would.
                update_finished(&mut *tx, &report).await?;
            }
            Entry::Notification(n) => {
                let mut n = n.into_owned();
                n.run_id = state.id(n.run_id);
                insert_notification(&mut *tx, &n).await?;
            }
            Entry::FlowStarted(run) => {
                let mut run = run.into_owned();
                let given = run.id;
                while id_taken(&mut *tx, run.id).await? {
                    run.id = self
                        .id_after_clash(FoldInto { tx, ids }, file, given, state)
                        .await?;
                }
                insert_flow(&mut *tx, &run).await?;
            }
            Entry::FlowSaved(save) => {
                let mut save = save.into_owned();
                save.map_ids(|id| state.id(id));
                update_flow(&mut *tx, &save).await?;
            }
            Entry::Closed => state.closed = true,
        }
        Ok(())
    }

    /// A new id for a run whose id `given` is taken (the run-id file was
    /// older than the history), kept for the file's later entries.
    async fn id_after_clash(
        &self,
        FoldInto { tx, ids }: FoldInto<'_>,
        file: &JournalFile,
        given: i64,
        state: &mut Folded,
    ) -> Result<i64, StoreError> {
        // Runs and flow runs take their ids from one sequence.
        let max: i64 = sqlx::query_scalar(
            "SELECT max(coalesce((SELECT max(id) FROM runs), 0), coalesce((SELECT max(id) FROM flow_runs), 0))",
        )
        .fetch_one(&mut *tx)
        .await?;
        let new = max + 1;
        ids.raise_to(new)
            .map_err(StoreError::file(self.state_dir.as_path()))?;
        sqlx::query(
            "INSERT OR REPLACE INTO journal_moved (file, from_id, to_id) VALUES ($1, $2, $3)",
        )
        .bind(file.writer_key())
        .bind(given)
        .bind(new)
        .execute(&mut *tx)
        .await?;
        state.moved.insert(given, new);
        log::warn!(
            target: "overnight::store",
            "journal: run id {given} was taken already (the run-id file was older than the history); the run is recorded as #{new}"
        );
        Ok(new)
    }
}

/// Whether a flow run has id `id`: runs and flow runs take their ids from
/// one sequence, and their notifications are kept by it.
async fn id_taken_by_flow(tx: &mut SqliteConnection, id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM flow_runs WHERE id = $1)")
        .bind(id)
        .fetch_one(&mut *tx)
        .await
}

/// Whether a run or a flow run has id `id` (a flow run's id is new to
/// both).
async fn id_taken(tx: &mut SqliteConnection, id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM flow_runs WHERE id = $1) OR EXISTS (SELECT 1 FROM runs WHERE id = $1)",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await
}

/// The file's bytes from `offset` on.
/// Runs `work` (file I/O) on tokio's blocking pool, not on an async
/// worker thread.
async fn off_workers<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("file I/O of the fold does not panic")
}

/// The journal files of `dir`, each with its inode and length.
fn list(dir: &Path) -> std::io::Result<Vec<(JournalFile, (u64, u64))>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let Some(file) = entry.file_name().to_str().and_then(JournalFile::parse) else {
            continue;
        };
        if let Ok(meta) = entry.metadata() {
            files.push((file, (meta.ino(), meta.len())));
        }
    }
    Ok(files)
}

fn read_from(path: &Path, offset: i64) -> std::io::Result<Vec<u8>> {
    let mut file = crate::state::open_read(path)?;
    file.seek(SeekFrom::Start(offset as u64))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}
