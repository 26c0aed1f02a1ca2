//! The journal: runs recorded without opening the database.
//!
//! `overnight exec` and `overnight run` without a daemon start as often as
//! a crontab says, and opening SQLite costs more than all the rest of such
//! a run's bookkeeping (docs/benchmarks.md). They write their runs to
//! `<state_dir>/journal/<id>.jsonl` instead: one JSON entry a line,
//! appended as the run goes — started, its process, earlier attempts, the
//! end, trigger deliveries. Whoever opens the store next (any command that
//! reads the history; the daemon at start and before it answers for
//! status) folds the entries in: one transaction per file, together with
//! how far that file is folded, so that no entry is applied twice or lost
//! even when the folder dies halfway. A file goes once it is folded and its
//! writer has exited.

use std::borrow::Cow;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;

use super::notifications::{Notification, insert_notification};
use super::runs::{NewRun, insert_attempt, insert_run, update_finished, update_process};
use super::schedule::{NotRun, insert_not_run};
use super::{RunIds, Store, StoreError};
use crate::report::Report;

/// The journal's folder in the state directory.
const DIR: &str = "journal";

/// One line of a journal file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
enum Entry<'a> {
    Started(Cow<'a, NewRun>),
    Process { pid: u32, started: Option<u64> },
    Attempt(Cow<'a, Report>),
    Finished(Cow<'a, Report>),
    NotRun(Cow<'a, NotRun>),
    Notification(Cow<'a, Notification>),
}

/// Records runs into the journal of a state directory.
#[derive(Clone, Debug)]
pub struct Journal {
    dir: Arc<PathBuf>,
    ids: Arc<RunIds>,
}

impl Journal {
    /// The journal of `state_dir`; `None` until a store opening has started
    /// the run-id sequence there (before that, an id could clash with the
    /// history's): open the store once first.
    pub fn open(state_dir: &Path) -> Result<Option<Journal>, StoreError> {
        let dir = state_dir.join(DIR);
        std::fs::create_dir_all(&dir).map_err(StoreError::file(&dir))?;
        let ids = RunIds::open(state_dir).map_err(StoreError::file(state_dir))?;
        if !ids.started().map_err(StoreError::file(state_dir))? {
            return Ok(None);
        }
        Ok(Some(Journal {
            dir: Arc::new(dir),
            ids: Arc::new(ids),
        }))
    }

    /// The id of the next run (or fire not run) to record.
    pub fn next_run_id(&self) -> Result<i64, StoreError> {
        self.ids
            .next()
            .map_err(StoreError::file(self.dir.as_path()))
    }

    /// Records a run as started.
    pub fn start_run(&self, run: &NewRun) -> Result<(), StoreError> {
        self.append(run.id, &Entry::Started(Cow::Borrowed(run)))
    }

    /// Records the job's own process of run `id`.
    pub fn record_process(
        &self,
        id: i64,
        pid: u32,
        started: Option<u64>,
    ) -> Result<(), StoreError> {
        self.append(id, &Entry::Process { pid, started })
    }

    /// Records an earlier attempt of a run.
    pub fn record_attempt(&self, report: &Report) -> Result<(), StoreError> {
        self.append(report.run_id, &Entry::Attempt(Cow::Borrowed(report)))
    }

    /// Records how a run ended.
    pub fn finish_run(&self, report: &Report) -> Result<(), StoreError> {
        self.append(report.run_id, &Entry::Finished(Cow::Borrowed(report)))
    }

    /// Records a fire that did not run.
    pub fn record_not_run(&self, not_run: &NotRun) -> Result<(), StoreError> {
        self.append(not_run.id, &Entry::NotRun(Cow::Borrowed(not_run)))
    }

    /// Records a trigger's delivery.
    pub fn record_notification(&self, n: &Notification) -> Result<(), StoreError> {
        self.append(n.run_id, &Entry::Notification(Cow::Borrowed(n)))
    }

    /// Appends one entry to run `id`'s file, in one write: a folder reading
    /// at the same time sees the whole line or none of it.
    fn append(&self, id: i64, entry: &Entry<'_>) -> Result<(), StoreError> {
        let path = file_of(&self.dir, id);
        let mut line = serde_json::to_vec(entry).expect("an entry always serialises");
        line.push(b'\n');
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&line))
            .map_err(StoreError::file(path))
    }
}

fn file_of(dir: &Path, id: i64) -> PathBuf {
    dir.join(format!("{id}.jsonl"))
}

/// A journal file's bookkeeping: how far it is folded, the run its
/// entries go to, and the process writing it.
#[derive(Clone, Copy, Debug)]
struct Folded {
    folded: i64,
    run_id: i64,
    writer: Option<i64>,
}

impl Store {
    /// Folds what the journal holds into the history.
    pub async fn fold_journal(&self) -> Result<(), StoreError> {
        let dir = self.state_dir.join(DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::file(dir)(e)),
        };
        let mut files: Vec<i64> = entries
            .filter_map(|e| {
                let name = e.ok()?.file_name();
                name.to_str()?.strip_suffix(".jsonl")?.parse().ok()
            })
            .collect();
        files.sort_unstable();
        for &file in &files {
            self.fold_file(&dir, file).await?;
        }
        // Rows of files gone (removed just before a crash) are forgotten.
        let known: Vec<i64> = sqlx::query_scalar("SELECT file FROM journal_folded")
            .fetch_all(&self.pool)
            .await?;
        for file in known
            .into_iter()
            .filter(|f| files.binary_search(f).is_err())
        {
            sqlx::query("DELETE FROM journal_folded WHERE file = ?")
                .bind(file)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn fold_file(&self, dir: &Path, file: i64) -> Result<(), StoreError> {
        let path = file_of(dir, file);
        // IMMEDIATE: two folders take turns, each reading how far the
        // other got under the write lock.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row: Option<(i64, i64, Option<i64>)> =
            sqlx::query_as("SELECT folded, run_id, writer FROM journal_folded WHERE file = ?")
                .bind(file)
                .fetch_optional(&mut *tx)
                .await?;
        let mut state = row.map_or(
            Folded {
                folded: 0,
                run_id: file,
                writer: None,
            },
            |(folded, run_id, writer)| Folded {
                folded,
                run_id,
                writer,
            },
        );
        let bytes = match read_from(&path, state.folded) {
            Ok(bytes) => bytes,
            // Folded and removed by another folder meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::file(path)(e)),
        };
        // Whole lines only: the writer may be halfway through one.
        let whole = memchr::memrchr(b'\n', &bytes).map_or(0, |end| end + 1);
        for line in bytes[..whole].split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Entry<'_>>(line) {
                Ok(entry) => self.apply(&mut tx, entry, &mut state).await?,
                Err(e) => log::warn!(
                    target: "overnight::store",
                    "journal `{}`: an entry that cannot be read is left out: {e}",
                    path.display()
                ),
            }
        }
        state.folded += whole as i64;
        sqlx::query(
            "INSERT INTO journal_folded (file, folded, run_id, writer) VALUES (?, ?, ?, ?) \
             ON CONFLICT (file) DO UPDATE SET folded = excluded.folded, run_id = excluded.run_id, \
             writer = excluded.writer",
        )
        .bind(file)
        .bind(state.folded)
        .bind(state.run_id)
        .bind(state.writer)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // Its writer gone, nothing more can come: the file has served.
        let gone = state
            .writer
            .and_then(|p| u32::try_from(p).ok())
            .is_some_and(|p| !crate::process::exists(p));
        if gone {
            std::fs::remove_file(&path).map_err(StoreError::file(&path))?;
            sqlx::query("DELETE FROM journal_folded WHERE file = ?")
                .bind(file)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Applies one entry; a run whose id turns out taken (a run-id file
    /// older than the history) is recorded under a new one.
    async fn apply(
        &self,
        tx: &mut SqliteConnection,
        entry: Entry<'_>,
        state: &mut Folded,
    ) -> Result<(), StoreError> {
        match entry {
            Entry::Started(run) => {
                let mut run = run.into_owned();
                state.writer = Some(i64::from(run.pid));
                while !insert_run(&mut *tx, &run).await? {
                    run.id = self.id_after_clash(tx, run.id).await?;
                }
                state.run_id = run.id;
            }
            Entry::NotRun(not_run) => {
                let mut not_run = not_run.into_owned();
                state.writer = Some(i64::from(not_run.pid));
                while !insert_not_run(&mut *tx, &not_run).await? {
                    not_run.id = self.id_after_clash(tx, not_run.id).await?;
                }
                state.run_id = not_run.id;
            }
            Entry::Process { pid, started } => {
                update_process(&mut *tx, state.run_id, pid, started).await?;
            }
            Entry::Attempt(report) => {
                let mut report = report.into_owned();
                report.run_id = state.run_id;
                insert_attempt(&mut *tx, &report).await?;
            }
            Entry::Finished(report) => {
                let mut report = report.into_owned();
                report.run_id = state.run_id;
                update_finished(&mut *tx, &report).await?;
            }
            Entry::Notification(n) => {
                let mut n = n.into_owned();
                n.run_id = state.run_id;
                insert_notification(&mut *tx, &n).await?;
            }
        }
        Ok(())
    }

    async fn id_after_clash(&self, tx: &mut SqliteConnection, id: i64) -> Result<i64, StoreError> {
        let max: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM runs")
            .fetch_one(&mut *tx)
            .await?;
        let new = max + 1;
        self.ids
            .raise_to(new)
            .map_err(StoreError::file(self.state_dir.as_path()))?;
        log::warn!(
            target: "overnight::store",
            "journal: run id {id} was taken already (the run-id file was older than the history); the run is recorded as #{new}"
        );
        Ok(new)
    }
}

/// The file's bytes from `offset` on.
fn read_from(path: &Path, offset: i64) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset as u64))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Status, Trigger};
    use chrono::Utc;

    fn started(id: i64, pid: u32, dir: &Path) -> NewRun {
        NewRun {
            id,
            job: "nightly".into(),
            trigger: Trigger::Exec,
            scheduled_at: None,
            started_at: Utc::now(),
            host: "h".into(),
            pid,
            locks: Vec::new(),
            capture: dir.join(format!("{id}.log")),
        }
    }

    fn ended(id: i64, status: Status) -> Report {
        Report::synthetic(
            id,
            "nightly",
            Trigger::Exec,
            None,
            status,
            "done",
            "h",
            PathBuf::new(),
        )
    }

    fn delivery(run_id: i64) -> Notification {
        Notification {
            run_id,
            job: "nightly".into(),
            rule: "on-failure".into(),
            action: "log".into(),
            condition: "failure".into(),
            status: "sent".into(),
            detail: None,
            at: crate::store::time_text(Utc::now()),
        }
    }

    /// A pid no process has: one of a child that has been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    }

    #[tokio::test]
    async fn entries_are_folded_once_each_as_the_run_goes_and_the_file_goes_with_its_writer() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Journal::open(dir.path()).unwrap().is_none(),
            "no id before a store opening"
        );
        let store = Store::open(dir.path()).await.unwrap();
        let journal = Journal::open(dir.path()).unwrap().unwrap();
        let id = journal.next_run_id().unwrap();
        journal
            .start_run(&started(id, std::process::id(), dir.path()))
            .unwrap();
        store.fold_journal().await.unwrap();
        assert_eq!(store.run(id).await.unwrap().unwrap().status, "running");

        // Half a line (a writer in the middle of its write) waits.
        let file = dir.path().join(DIR).join(format!("{id}.jsonl"));
        journal.record_process(id, 4242, Some(7)).unwrap();
        journal.finish_run(&ended(id, Status::Failed)).unwrap();
        let whole = std::fs::read(&file).unwrap();
        let cut = whole.len() - 10;
        std::fs::write(&file, &whole[..cut]).unwrap();
        store.fold_journal().await.unwrap();
        let run = store.run(id).await.unwrap().unwrap();
        assert_eq!((run.status.as_str(), run.job_pid), ("running", Some(4242)));
        std::fs::write(&file, &whole).unwrap();

        journal.record_notification(&delivery(id)).unwrap();
        for _ in 0..3 {
            store.fold_journal().await.unwrap();
        }
        assert_eq!(store.run(id).await.unwrap().unwrap().status, "failed");
        assert_eq!(
            store.notifications(id).await.unwrap().len(),
            1,
            "folded once"
        );
        assert!(file.exists(), "its writer (this test) still runs");

        // A file whose writer has exited is removed once folded.
        let gone = journal.next_run_id().unwrap();
        journal
            .start_run(&started(gone, dead_pid(), dir.path()))
            .unwrap();
        journal.finish_run(&ended(gone, Status::Success)).unwrap();
        store.fold_journal().await.unwrap();
        assert_eq!(store.run(gone).await.unwrap().unwrap().status, "success");
        assert!(!dir.path().join(DIR).join(format!("{gone}.jsonl")).exists());
    }

    #[tokio::test]
    async fn a_run_whose_id_is_taken_is_recorded_under_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let journal = Journal::open(dir.path()).unwrap().unwrap();
        let first = store.next_run_id().unwrap();
        store
            .start_run(&started(first, std::process::id(), dir.path()))
            .await
            .unwrap();
        // The id file lost its last write (a power cut, say).
        std::fs::write(dir.path().join("last-run-id"), "0\n").unwrap();
        let id = journal.next_run_id().unwrap();
        assert_eq!(id, first, "the stale file hands the id out again");
        journal
            .start_run(&started(id, dead_pid(), dir.path()))
            .unwrap();
        journal.finish_run(&ended(id, Status::Success)).unwrap();
        journal.record_notification(&delivery(id)).unwrap();
        store.fold_journal().await.unwrap();

        let runs = store.history(Some("nightly"), 10).await.unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[1].id, runs[1].status.as_str()), (first, "running"));
        let moved = runs[0].id;
        assert!(moved > first);
        assert_eq!(runs[0].status, "success");
        assert_eq!(store.report(moved).await.unwrap().unwrap().run_id, moved);
        assert_eq!(store.notifications(moved).await.unwrap().len(), 1);
        assert!(
            store.next_run_id().unwrap() > moved,
            "the sequence is mended"
        );
    }
}
