//! The journal: runs recorded without waiting for the database.
//!
//! Each process appends its runs' bookkeeping to a journal file of its own,
//! `<state_dir>/journal/<pid>-<start>-<n>.jsonl` (its pid, its start time,
//! a sequence): one JSON entry a line — a run started, its process, an
//! earlier attempt, its end, a trigger's delivery — each in one write, no
//! SQLite on the way. `overnight exec` starts as often as a crontab says,
//! and opening SQLite costs more than all the rest of its bookkeeping; the
//! daemon's runs never wait on a database lock to start or to end
//! (docs/benchmarks.md).
//!
//! Whoever reads the history folds the entries in first: every store
//! opening, the daemon's status, `logs -f`, a trigger reading earlier runs,
//! and the daemon in the background shortly after each append. A fold is
//! one transaction that also records how far each file is folded, so an
//! entry is applied once — never twice, never lost — even when the folder
//! dies halfway. A file goes once folded and done with: its writer has
//! exited, or has closed it to start the next (past [`ROTATE_AT`] bytes).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;
use tokio::sync::Notify;

use super::notifications::{Notification, insert_notification};
use super::runs::{NewRun, insert_attempt, insert_run, update_finished, update_process};
use super::schedule::{NotRun, insert_not_run};
use super::{RunIds, Store, StoreError};
use crate::report::Report;

/// The journal's folder in the state directory.
const DIR: &str = "journal";

/// How often entries waiting for the disk, or a fold that failed, are
/// tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// A writer closes its file and starts another past this size.
pub const ROTATE_AT: u64 = 4 << 20;

/// How long the daemon's background fold waits after an append, gathering
/// more before it takes the write lock.
const FOLD_AFTER: Duration = Duration::from_millis(50);

/// One line of a journal file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
enum Entry<'a> {
    Started(Cow<'a, NewRun>),
    Process {
        id: i64,
        pid: u32,
        started: Option<u64>,
    },
    Attempt(Cow<'a, Report>),
    Finished(Cow<'a, Report>),
    NotRun(Cow<'a, NotRun>),
    Notification(Cow<'a, Notification>),
    /// The writer writes no more to this file.
    Closed,
}

/// Rung by every append; the daemon's background fold waits on it.
static APPENDED: Notify = Notify::const_new();

/// This process's open journal file, by journal folder: every `Journal` of
/// one state directory appends to the same file.
static WRITERS: Mutex<Option<HashMap<PathBuf, Writer>>> = Mutex::new(None);

#[derive(Debug)]
struct Writer {
    name: JournalFile,
    file: Option<File>,
    /// The file's length: whole lines only.
    written: u64,
    /// Entries not written yet (the disk was full), oldest first.
    pending: Vec<u8>,
    /// A failed write left part of a line that could not be cut off.
    torn: bool,
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
        crate::state::prepare(state_dir).map_err(StoreError::file(state_dir))?;
        let dir = state_dir.join(DIR);
        crate::state::create_dir(&dir).map_err(StoreError::file(&dir))?;
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
        self.append(&Entry::Started(Cow::Borrowed(run)))
    }

    /// Records the job's own process of run `id`.
    pub fn record_process(
        &self,
        id: i64,
        pid: u32,
        started: Option<u64>,
    ) -> Result<(), StoreError> {
        self.append(&Entry::Process { id, pid, started })
    }

    /// Records an earlier attempt of a run.
    pub fn record_attempt(&self, report: &Report) -> Result<(), StoreError> {
        self.append(&Entry::Attempt(Cow::Borrowed(report)))
    }

    /// Records how a run ended.
    pub fn finish_run(&self, report: &Report) -> Result<(), StoreError> {
        self.append(&Entry::Finished(Cow::Borrowed(report)))
    }

    /// Records a fire that did not run.
    pub fn record_not_run(&self, not_run: &NotRun) -> Result<(), StoreError> {
        self.append(&Entry::NotRun(Cow::Borrowed(not_run)))
    }

    /// Records a trigger's delivery.
    pub fn record_notification(&self, n: &Notification) -> Result<(), StoreError> {
        self.append(&Entry::Notification(Cow::Borrowed(n)))
    }

    /// Appends one entry. An entry that cannot be written now (the disk is
    /// full, say) waits in memory, before any newer one, and is written by
    /// the next append or by [`Journal::retry`]; the error says so. Returns
    /// once the entry is in the file, or waiting.
    fn append(&self, entry: &Entry<'_>) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(entry).expect("an entry always serialises");
        line.push(b'\n');
        let mut writers = WRITERS.lock().expect("journal writers");
        let writer = Writer::of(&mut writers, &self.dir);
        if writer.pending.len() + line.len() > PENDING_MAX {
            let why = format!("{PENDING_MAX} bytes of entries already wait for the disk");
            return Err(StoreError::File {
                path: writer.name.path(&self.dir),
                source: std::io::Error::other(why),
            });
        }
        writer.pending.extend_from_slice(&line);
        let written = writer.write_pending(&self.dir);
        drop(writers);
        // Also on a failure: the background fold then retries every second.
        APPENDED.notify_one();
        written
    }

    /// Writes what waits to be written, if anything does; `Ok` once
    /// nothing waits.
    pub fn retry(&self) -> Result<(), StoreError> {
        let mut writers = WRITERS.lock().expect("journal writers");
        let writer = Writer::of(&mut writers, &self.dir);
        if writer.pending.is_empty() {
            return Ok(());
        }
        let written = writer.write_pending(&self.dir);
        drop(writers);
        if written.is_ok() {
            APPENDED.notify_one();
        }
        written
    }

    /// Whether entries wait to be written.
    pub fn has_pending(&self) -> bool {
        WRITERS
            .lock()
            .expect("journal writers")
            .as_ref()
            .and_then(|by_dir| by_dir.get(self.dir.as_path()))
            .is_some_and(|w| !w.pending.is_empty())
    }
}

/// Cuts a part-written line back off `file`, whose whole lines end at
/// `written`. If the file cannot be cut, the part stays: `written` follows
/// the file's real length, and `torn` has the next write start a fresh line.
fn cut_back(file: &File, written: &mut u64, torn: &mut bool) {
    if file.set_len(*written).is_err() {
        *written = file.metadata().map_or(*written, |m| m.len());
        *torn = true;
    }
}

/// At most this much waits in memory for a full disk to take it: hours of
/// a busy daemon's runs. Past it an entry is refused, and says so.
const PENDING_MAX: usize = 64 << 20;

impl Writer {
    /// This process's writer for the journal in `dir`.
    fn of<'w>(writers: &'w mut Option<HashMap<PathBuf, Writer>>, dir: &Path) -> &'w mut Writer {
        // Per append: no path built unless
        // the file is opened or a write fails.
        let by_dir = writers.get_or_insert_with(HashMap::new);
        if !by_dir.contains_key(dir) {
            let writer = Writer {
                name: JournalFile::of_this_process(),
                file: None,
                written: 0,
                pending: Vec::new(),
                torn: false,
            };
            by_dir.insert(dir.to_path_buf(), writer);
        }
        by_dir.get_mut(dir).expect("just made if missing")
    }

    /// Writes the waiting entries in one write of whole lines. A write cut
    /// short (a full disk) is cut back off the file, so no torn line stays
    /// for the next entry to be glued onto; if even that fails, the next
    /// write starts on a fresh line, and a folder skips the torn one.
    fn write_pending(&mut self, dir: &Path) -> Result<(), StoreError> {
        let name = self.name;
        let fail = |source| StoreError::Waiting {
            path: name.path(dir),
            source,
        };
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let file = crate::state::open_append(&name.path(dir)).map_err(fail)?;
                self.written = file.metadata().map_err(fail)?.len();
                self.file.insert(file)
            }
        };
        if std::mem::take(&mut self.torn) {
            self.pending.insert(0, b'\n');
        }
        let mut done = 0;
        let result = loop {
            if done == self.pending.len() {
                break Ok(());
            }
            match file.write(&self.pending[done..]) {
                Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        // The whole lines that went in are written; part of one is taken
        // back out (a folder reads whole lines only, so none has read it).
        let whole = memchr::memrchr(b'\n', &self.pending[..done]).map_or(0, |end| end + 1);
        self.written += whole as u64;
        self.pending.drain(..whole);
        if let Err(e) = result {
            if done > whole {
                cut_back(file, &mut self.written, &mut self.torn);
            }
            return Err(fail(e));
        }
        if self.written >= ROTATE_AT {
            // Done with once `closed` is in; if the disk refuses even that,
            // the next write tries again.
            let closed = b"{\"entry\":\"closed\"}\n";
            if file.write_all(closed).is_ok() {
                self.file = None;
                self.written = 0;
                self.name.seq += 1;
            } else {
                cut_back(file, &mut self.written, &mut self.torn);
            }
        }
        Ok(())
    }
}

/// A file of the journal: `<pid>-<start>-<n>.jsonl`, its writer's pid and
/// start time (so that a later process with the same pid is not taken for
/// it), and the writer's sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct JournalFile {
    writer: u32,
    started: u64,
    seq: u32,
}

impl JournalFile {
    fn of_this_process() -> JournalFile {
        let writer = std::process::id();
        JournalFile {
            writer,
            started: crate::process::start_time(writer).unwrap_or(0),
            seq: 0,
        }
    }

    fn name(&self) -> String {
        format!("{}-{}-{}.jsonl", self.writer, self.started, self.seq)
    }

    fn parse(name: &str) -> Option<JournalFile> {
        let mut parts = name.strip_suffix(".jsonl")?.split('-');
        let file = JournalFile {
            writer: parts.next()?.parse().ok()?,
            started: parts.next()?.parse().ok()?,
            seq: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(file)
    }

    fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.name())
    }

    /// Whether its writer may still write to it.
    fn writer_lives(&self) -> bool {
        match self.started {
            _ if self.writer == std::process::id() => true,
            // Its start time could not be read (no /proc): by pid alone.
            0 => crate::process::exists(self.writer),
            started => crate::process::alive(self.writer, started),
        }
    }
}

/// What a store remembers of the files it has folded: their identity and
/// length then. A file unchanged since is not read again.
pub(super) type FoldedFiles = Mutex<HashMap<JournalFile, (u64, u64)>>;

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
        let dir = self.state_dir.join(DIR);
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::file(dir)(e)),
        };
        // The files changed since this store last folded them, and those
        // whose writer has gone (to be removed).
        let mut changed = Vec::new();
        {
            let seen = self.folded_files.lock().expect("folded files");
            for entry in listing.flatten() {
                let Some(file) = entry.file_name().to_str().and_then(JournalFile::parse) else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else { continue };
                let now = (meta.ino(), meta.len());
                if seen.get(&file) != Some(&now) || !file.writer_lives() {
                    changed.push(file);
                }
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        changed.sort_unstable();

        // IMMEDIATE: two folders take turns, each reading under the write
        // lock how far the other got.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
        let moved: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT file, from_id, to_id FROM journal_moved")
                .fetch_all(&mut *tx)
                .await?;
        for (file, from, to) in moved {
            known.entry(file).or_default().moved.insert(from, to);
        }
        let mut done = Vec::new();
        for file in changed {
            let path = file.path(&dir);
            let mut state = known.remove(&file.name()).unwrap_or_default();
            // Decided before reading: a writer gone now wrote its last
            // before this read, so what is read is all there is, and the
            // file may go. Decided after, a line written in between would
            // go unread with the file.
            let finished = !file.writer_lives();
            let bytes = match read_from(&path, state.folded) {
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
                        Ok(entry) => self.apply(&mut tx, &file, entry, &mut state).await?,
                        Err(e) => log::warn!(
                            target: "overnight::store",
                            "journal `{}`: an entry that cannot be read is left out: {e}",
                            path.display()
                        ),
                    }
                }
                state.folded += whole as i64;
                sqlx::query(
                    "INSERT INTO journal_folded (file, folded, closed) VALUES (?, ?, ?) \
                     ON CONFLICT (file) DO UPDATE SET folded = excluded.folded, closed = excluded.closed",
                )
                .bind(file.name())
                .bind(state.folded)
                .bind(state.closed)
                .execute(&mut *tx)
                .await?;
            }
            done.push((file, state.folded, state.closed || finished));
        }
        // Rows of files gone (removed after an earlier fold) are forgotten:
        // no file of that name is written again.
        for (name, _) in known {
            if !dir.join(&name).exists() {
                sqlx::query("DELETE FROM journal_folded WHERE file = ?")
                    .bind(&name)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM journal_moved WHERE file = ?")
                    .bind(&name)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;

        let mut seen = self.folded_files.lock().expect("folded files");
        for (file, folded, finished) in done {
            let path = file.path(&dir);
            // Nothing more comes to a closed file, nor from a writer that
            // had exited before the read; the last line of a writer that
            // died halfway through it is dropped with the file.
            if finished && std::fs::remove_file(&path).is_ok() {
                seen.remove(&file);
            } else if let Ok(meta) = std::fs::metadata(&path) {
                seen.insert(file, (meta.ino(), folded as u64));
            }
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
                    () = APPENDED.notified() => tokio::time::sleep(FOLD_AFTER).await,
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
        tx: &mut SqliteConnection,
        file: &JournalFile,
        entry: Entry<'_>,
        state: &mut Folded,
    ) -> Result<(), StoreError> {
        match entry {
            Entry::Started(run) => {
                let mut run = run.into_owned();
                let given = run.id;
                while !insert_run(&mut *tx, &run).await? {
                    run.id = self.id_after_clash(tx, file, given, state).await?;
                }
            }
            Entry::NotRun(not_run) => {
                let mut not_run = not_run.into_owned();
                let given = not_run.id;
                while !insert_not_run(&mut *tx, &not_run).await? {
                    not_run.id = self.id_after_clash(tx, file, given, state).await?;
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
                update_finished(&mut *tx, &report).await?;
            }
            Entry::Notification(n) => {
                let mut n = n.into_owned();
                n.run_id = state.id(n.run_id);
                insert_notification(&mut *tx, &n).await?;
            }
            Entry::Closed => state.closed = true,
        }
        Ok(())
    }

    /// A new id for a run whose id `given` is taken (the run-id file was
    /// older than the history), kept for the file's later entries.
    async fn id_after_clash(
        &self,
        tx: &mut SqliteConnection,
        file: &JournalFile,
        given: i64,
        state: &mut Folded,
    ) -> Result<i64, StoreError> {
        let max: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM runs")
            .fetch_one(&mut *tx)
            .await?;
        let new = max + 1;
        self.ids
            .raise_to(new)
            .map_err(StoreError::file(self.state_dir.as_path()))?;
        sqlx::query("INSERT OR REPLACE INTO journal_moved (file, from_id, to_id) VALUES (?, ?, ?)")
            .bind(file.name())
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
/// The file's bytes from `offset` on.
fn read_from(path: &Path, offset: i64) -> std::io::Result<Vec<u8>> {
    let mut file = crate::state::open_read(path)?;
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
            runner_started: None,
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

    /// A state directory with its store and its journal.
    async fn opened() -> (tempfile::TempDir, Store, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let journal = Journal::open(dir.path()).unwrap().unwrap();
        (dir, store, journal)
    }

    /// The journal file a process writes.
    fn file_of(dir: &Path, pid: u32) -> PathBuf {
        let file = JournalFile {
            writer: pid,
            started: crate::process::start_time(pid).unwrap_or(0),
            seq: 0,
        };
        file.path(&dir.join(DIR))
    }

    fn line(entry: &Entry<'_>) -> Vec<u8> {
        let mut line = serde_json::to_vec(entry).unwrap();
        line.push(b'\n');
        line
    }

    #[tokio::test]
    async fn entries_are_folded_once_each_as_the_run_goes() {
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
        let file = file_of(dir.path(), std::process::id());
        journal.record_process(id, 4242, Some(7)).unwrap();
        journal.finish_run(&ended(id, Status::Failed)).unwrap();
        let whole = std::fs::read(&file).unwrap();
        std::fs::write(&file, &whole[..whole.len() - 10]).unwrap();
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
        assert!(file.exists(), "its writer (this test) may write more");
        // A second store (another process) folds nothing twice either.
        let other = Store::open(dir.path()).await.unwrap();
        other.fold_journal().await.unwrap();
        assert_eq!(other.notifications(id).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn another_writers_file_goes_once_closed_or_once_that_writer_has_exited() {
        let (dir, store, journal) = opened().await;
        let mut writers: Vec<_> = (0..2)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut ids = Vec::new();
        for writer in &writers {
            let id = journal.next_run_id().unwrap();
            let run = started(id, writer.id(), dir.path());
            let report = ended(id, Status::Success);
            let mut text = line(&Entry::Started(Cow::Borrowed(&run)));
            text.extend(line(&Entry::Finished(Cow::Borrowed(&report))));
            std::fs::write(file_of(dir.path(), writer.id()), &text).unwrap();
            ids.push(id);
        }
        // The second writer closes its file (as past ROTATE_AT).
        let closed = file_of(dir.path(), writers[1].id());
        let mut text = std::fs::read(&closed).unwrap();
        text.extend(line(&Entry::Closed));
        std::fs::write(&closed, &text).unwrap();

        store.fold_journal().await.unwrap();
        for id in &ids {
            assert_eq!(store.run(*id).await.unwrap().unwrap().status, "success");
        }
        let open = file_of(dir.path(), writers[0].id());
        assert!(open.exists(), "its writer lives and may add deliveries");
        assert!(!closed.exists(), "a closed file goes once folded");
        // A writer that has exited writes no more: its file goes.
        for writer in &mut writers {
            writer.kill().unwrap();
            writer.wait().unwrap();
        }
        store.fold_journal().await.unwrap();
        assert!(!open.exists());
        assert_eq!(
            store.history(None, 10).await.unwrap().len(),
            2,
            "folded once"
        );
    }

    #[tokio::test]
    async fn a_writer_closes_a_full_file_and_goes_on_in_the_next() {
        let (dir, store, journal) = opened().await;
        let id = journal.next_run_id().unwrap();
        journal
            .start_run(&started(id, std::process::id(), dir.path()))
            .unwrap();
        let first = file_of(dir.path(), std::process::id());
        let mut sent = 0;
        while first.exists() && std::fs::metadata(&first).unwrap().len() < ROTATE_AT {
            journal.record_notification(&delivery(id)).unwrap();
            sent += 1;
        }
        journal.finish_run(&ended(id, Status::Success)).unwrap();
        let text = std::fs::read_to_string(&first).unwrap();
        assert!(
            text.ends_with("{\"entry\":\"closed\"}\n"),
            "closed at the end"
        );
        let next = first.to_string_lossy().replace("-0.jsonl", "-1.jsonl");
        assert!(
            std::fs::read_to_string(&next)
                .unwrap()
                .contains("\"finished\"")
        );

        store.fold_journal().await.unwrap();
        assert!(!first.exists(), "the closed file goes once folded");
        assert!(Path::new(&next).exists(), "the file in use stays");
        assert_eq!(store.notifications(id).await.unwrap().len(), sent);
        assert_eq!(store.run(id).await.unwrap().unwrap().status, "success");
    }

    #[tokio::test]
    async fn a_run_whose_id_is_taken_is_recorded_under_a_new_one() {
        let (dir, store, journal) = opened().await;
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
            .start_run(&started(id, std::process::id(), dir.path()))
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
