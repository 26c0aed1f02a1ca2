//! Where a runner records its runs: into the journal (the daemon and the
//! one-shot commands: no run waits on SQLite, and `exec` never opens it
//! unless a trigger must read the history), or straight into the store
//! (`overnight trigger test`, and tests that want each write at once).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::OnceCell;

use super::{Journal, NewRun, NotRun, Notification, Store, StoreError};
use crate::report::Report;

/// Where runs are recorded.
#[derive(Clone, Debug)]
pub enum Recorder {
    /// Into the store.
    Store(Store),
    /// Into the journal; the store is opened only if something must be read.
    Journal {
        /// The journal written.
        journal: Journal,
        /// The state directory, to open the store from.
        state_dir: Arc<PathBuf>,
        /// The store, once opened.
        store: Arc<OnceCell<Store>>,
    },
}

impl From<Store> for Recorder {
    fn from(store: Store) -> Recorder {
        Recorder::Store(store)
    }
}

impl Recorder {
    /// The journal of `state_dir`; the store itself the first time, when
    /// the run-id sequence has yet to be started.
    pub async fn journal(state_dir: &Path) -> Result<Recorder, StoreError> {
        let journal = match Journal::open(state_dir)? {
            Some(journal) => journal,
            None => {
                Store::open(state_dir).await?;
                Journal::open(state_dir)?.expect("the store opening starts the run ids")
            }
        };
        Ok(Recorder::Journal {
            journal,
            state_dir: Arc::new(state_dir.to_path_buf()),
            store: Arc::default(),
        })
    }

    /// The journal of `store`'s state directory, folded into `store`
    /// (the daemon's: it folds in the background as well).
    pub fn journal_of(store: &Store) -> Result<Recorder, StoreError> {
        let journal =
            Journal::open(&store.state_dir)?.expect("the store opening starts the run ids");
        Ok(Recorder::Journal {
            journal,
            state_dir: Arc::clone(&store.state_dir),
            store: Arc::new(OnceCell::new_with(Some(store.clone()))),
        })
    }

    /// The store, to read the history (opened on first use), with what the
    /// journal holds folded in.
    pub async fn store(&self) -> Result<Store, StoreError> {
        match self {
            Recorder::Store(store) => Ok(store.clone()),
            Recorder::Journal {
                state_dir, store, ..
            } => {
                let store = store.get_or_try_init(|| Store::open(state_dir)).await?;
                store.fold_journal().await?;
                Ok(store.clone())
            }
        }
    }

    /// The id of the next run (or fire not run) to record.
    pub fn next_run_id(&self) -> Result<i64, StoreError> {
        match self {
            Recorder::Store(store) => store.next_run_id(),
            Recorder::Journal { journal, .. } => journal.next_run_id(),
        }
    }

    /// Records a run as started.
    pub async fn start_run(&self, run: &NewRun) -> Result<(), StoreError> {
        match self {
            Recorder::Store(store) => store.start_run(run).await,
            Recorder::Journal { journal, .. } => journal.start_run(run),
        }
    }

    /// Records the job's own process of run `id`.
    pub async fn record_process(
        &self,
        id: i64,
        pid: u32,
        started: Option<u64>,
    ) -> Result<(), StoreError> {
        match self {
            Recorder::Store(store) => store.record_process(id, pid, started).await,
            Recorder::Journal { journal, .. } => journal.record_process(id, pid, started),
        }
    }

    /// Records an earlier attempt of a run.
    pub async fn record_attempt(&self, report: &Report) -> Result<(), StoreError> {
        match self {
            Recorder::Store(store) => store.record_attempt(report).await,
            Recorder::Journal { journal, .. } => journal.record_attempt(report),
        }
    }

    /// Records how a run ended.
    pub async fn finish_run(&self, report: &Report) -> Result<(), StoreError> {
        match self {
            Recorder::Store(store) => store.finish_run(report).await,
            Recorder::Journal { journal, .. } => journal.finish_run(report),
        }
    }

    /// Records a fire that did not run.
    pub async fn record_not_run(&self, not_run: &NotRun) -> Result<(), StoreError> {
        match self {
            Recorder::Store(store) => store.record_not_run(not_run).await,
            Recorder::Journal { journal, .. } => journal.record_not_run(not_run),
        }
    }

    /// Records a trigger's delivery.
    pub async fn record_notification(&self, n: &Notification) -> Result<(), StoreError> {
        match self {
            Recorder::Store(store) => store.record_notification(n).await,
            Recorder::Journal { journal, .. } => journal.record_notification(n),
        }
    }
}
