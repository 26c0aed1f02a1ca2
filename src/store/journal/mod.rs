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
//!
//! `writer.rs` holds the writing side (whole lines, kept in memory while
//! the disk refuses them), `fold.rs` the reading side.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::flows::{FlowRecord, FlowSave};
use super::notifications::Notification;
use super::runs::NewRun;
use super::schedule::NotRun;
use super::{RunIds, StoreError};
use crate::report::Report;

mod fold;
mod writer;

pub(super) use fold::FoldedFiles;
use writer::{PENDING_MAX, Writer};

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
    FlowStarted(Cow<'a, FlowRecord>),
    FlowSaved(Cow<'a, FlowSave>),
    /// The writer writes no more to this file.
    Closed,
}

/// This process's open journal file, by journal folder: every `Journal` of
/// one state directory appends to the same file.
static WRITERS: Mutex<Option<HashMap<PathBuf, Writer>>> = Mutex::new(None);

/// Records runs into the journal of a state directory.
#[derive(Clone, Debug)]
pub struct Journal {
    dir: Arc<PathBuf>,
    ids: Arc<RunIds>,
    /// Rung by every append through this journal (and its clones): the
    /// daemon's background fold waits on it.
    appended: Arc<Notify>,
}

impl Journal {
    /// The journal of `state_dir`; `None` until a store opening has started
    /// the run-id sequence there (before that, an id could clash with the
    /// history's): open the store once first. The state directory has
    /// been checked already (`state::prepare`, by the store or the
    /// recorder).
    pub fn open(state_dir: &Path) -> Result<Option<Journal>, StoreError> {
        let dir = state_dir.join(DIR);
        crate::state::create_dir(&dir).map_err(StoreError::file(&dir))?;
        let ids = RunIds::open(state_dir).map_err(StoreError::file(state_dir))?;
        if !ids.started().map_err(StoreError::file(state_dir))? {
            return Ok(None);
        }
        Ok(Some(Journal {
            dir: Arc::new(dir),
            ids: Arc::new(ids),
            appended: Arc::default(),
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

    /// Records a flow run as it starts, with all its steps.
    pub fn start_flow(&self, run: &FlowRecord) -> Result<(), StoreError> {
        self.append(&Entry::FlowStarted(Cow::Borrowed(run)))
    }

    /// Records what a move of a flow run changed.
    pub fn save_flow(&self, save: &FlowSave) -> Result<(), StoreError> {
        self.append(&Entry::FlowSaved(Cow::Borrowed(save)))
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
        self.appended.notify_one();
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
            self.appended.notify_one();
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

    /// Its writer, for what holds across the writer's files.
    fn writer_key(&self) -> String {
        format!("{}-{}", self.writer, self.started)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Status, Trigger};
    use crate::store::{HistoryQuery, Store};
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
            flow_step: None,
            epoch: None,
        }
    }

    fn ended(id: i64, status: Status) -> Report {
        Report::synthetic(
            &crate::report::RunHeader::now(id, "nightly", Trigger::Exec),
            status,
            "done",
        )
    }

    fn delivery(run_id: i64) -> Notification {
        Notification {
            run_id,
            job: "nightly".into(),
            rule: "on-failure".into(),
            action: "log".into(),
            condition: "failure".into(),
            status: crate::store::DeliveryStatus::Sent,
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
            store
                .history(&HistoryQuery::latest(None, 10))
                .await
                .unwrap()
                .len(),
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
        let first = store.next_run_id().await.unwrap();
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

        let runs = store
            .history(&HistoryQuery::latest(Some("nightly"), 10))
            .await
            .unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[1].id, runs[1].status.as_str()), (first, "running"));
        let moved = runs[0].id;
        assert!(moved > first);
        assert_eq!(runs[0].status, "success");
        assert_eq!(store.report(moved).await.unwrap().unwrap().run_id, moved);
        assert_eq!(store.notifications(moved).await.unwrap().len(), 1);
        assert!(
            store.next_run_id().await.unwrap() > moved,
            "the sequence is mended"
        );
    }

    /// A flow run of one step, `load`, of job `nightly`.
    fn flow_run(id: i64, flow: &str) -> crate::store::FlowRecord {
        use crate::flow::{Action, Plan, Progress, Step};
        let plan = Plan {
            steps: vec![Step {
                name: "load".into(),
                action: Action::Job("nightly".into()),
                after: None,
                hold_on: Vec::new(),
            }],
            max_parallel: None,
            hold_timeout: None,
            status_when: None,
        };
        crate::store::FlowRecord {
            id,
            flow: flow.into(),
            trigger: crate::report::Trigger::Manual,
            scheduled_at: None,
            started_at: Utc::now(),
            finished_at: None,
            status: crate::flow::progress::FlowStatus::Running,
            state: crate::store::FlowState {
                progress: Progress::new(1),
                steps: vec![crate::store::StepRuns::default()],
                ..Default::default()
            },
            plan,
            host: "h".into(),
            driver: None,
        }
    }

    #[tokio::test]
    async fn a_flow_run_and_its_steps_run_whose_ids_are_taken_move_together() {
        let (dir, store, journal) = opened().await;
        let old_flow = store.next_run_id().await.unwrap();
        store
            .insert_flow_run(&flow_run(old_flow, "old"))
            .await
            .unwrap();
        let old_run = store.next_run_id().await.unwrap();
        store
            .start_run(&started(old_run, std::process::id(), dir.path()))
            .await
            .unwrap();
        std::fs::write(dir.path().join("last-run-id"), "0\n").unwrap();

        // A daemon with the stale id file: its flow run and the step's run
        // get the ids the history holds already.
        let flow_id = journal.next_run_id().unwrap();
        assert_eq!(flow_id, old_flow);
        let mut run = flow_run(flow_id, "new");
        journal.start_flow(&run).unwrap();
        let step_run = journal.next_run_id().unwrap();
        assert_eq!(step_run, old_run);
        run.state.progress.steps[0] = crate::flow::StepState::Running;
        run.state.steps[0].runs.push(step_run);
        journal
            .save_flow(&crate::store::FlowSave::of(&run, &[0]))
            .unwrap();
        let mut step = started(step_run, std::process::id(), dir.path());
        step.flow_step = Some((flow_id, "load".into()));
        journal.start_run(&step).unwrap();
        store.fold_journal().await.unwrap();
        let going = store
            .flow_history(&HistoryQuery::latest(Some("new"), 1))
            .await
            .unwrap();
        let named = going[0].state.steps[0].runs[0];
        assert!(
            named > going[0].id,
            "the step's row follows its run: {going:?}"
        );
        assert_eq!(store.run(named).await.unwrap().unwrap().job, "nightly");
        // The writer goes on in its next file; the step ends there: its
        // row is written again, under the ids the fold gave.
        let first = file_of(dir.path(), std::process::id());
        while first.exists() && std::fs::metadata(&first).unwrap().len() < ROTATE_AT {
            journal.record_notification(&delivery(step_run)).unwrap();
        }
        run.state.progress.steps[0] = crate::flow::StepState::Ended(crate::flow::Known::Success);
        journal
            .save_flow(&crate::store::FlowSave::of(&run, &[0]))
            .unwrap();
        store.fold_journal().await.unwrap();

        assert!(!first.exists(), "the first file is folded and gone");
        let old = store.flow_run(old_flow).await.unwrap().unwrap();
        assert_eq!(old.flow, "old", "the flow run already there is kept");
        assert_eq!(
            old.state.progress.steps[0],
            crate::flow::StepState::Waiting,
            "and nothing of the new one lands on it"
        );
        let new = store
            .flow_history(&HistoryQuery::latest(Some("new"), 1))
            .await
            .unwrap();
        let new = &new[0];
        assert!(new.id > old_run);
        let moved_run = new.state.steps[0].runs[0];
        assert!(moved_run > new.id, "{new:?}");
        let recorded = store.run(moved_run).await.unwrap().unwrap();
        assert_eq!(recorded.job, "nightly");
        assert_eq!(
            new.state.progress.steps[0],
            crate::flow::StepState::Ended(crate::flow::Known::Success)
        );
        assert_eq!(store.run(old_run).await.unwrap().unwrap().status, "running");
    }
}
