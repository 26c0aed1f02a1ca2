//! Where a runner records its runs: into the journal (the daemon and the
//! one-shot commands: no run waits on SQLite, and `exec` never opens it
//! unless a trigger must read the history), or straight into the store
//! (`overnight trigger test`, and tests that want each write at once).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::OnceCell;

use super::{
    Finished, FlowRecord, FlowSave, Journal, NewRun, NotRun, Notification, RunIds, Store,
    StoreError,
};
use crate::config::Place;
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
    /// Nowhere: the state directory cannot be used (unwritable, say). The
    /// job still runs (`exec`), each record failing with this reason.
    Nowhere(Arc<str>),
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
        crate::state::prepare(state_dir).map_err(StoreError::file(state_dir))?;
        let journal = match Journal::open(state_dir)? {
            Some(journal) => journal,
            // No history at all yet: nothing for an id to clash with, and
            // no need for hundreds of first wrappers to race to make it.
            None if !state_dir.join("overnight.db").exists() => {
                RunIds::open(state_dir)
                    .and_then(|ids| ids.raise_to(0))
                    .map_err(StoreError::file(state_dir))?;
                Journal::open(state_dir)?.expect("the sequence was just started")
            }
            None => {
                Store::connect(state_dir).await?.close().await;
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
    /// (the daemon's: it folds in the background as well), and that
    /// journal.
    pub fn journal_of(store: &Store) -> Result<(Recorder, Journal), StoreError> {
        let journal =
            Journal::open(&store.state_dir)?.expect("the store opening starts the run ids");
        let recorder = Recorder::Journal {
            journal: journal.clone(),
            state_dir: Arc::clone(&store.state_dir),
            store: Arc::new(OnceCell::new_with(Some(store.clone()))),
        };
        Ok((recorder, journal))
    }

    /// A one-shot command's recorder for `place`: SQLite's journal
    /// ([`Recorder::journal`]), or the PostgreSQL store itself.
    pub async fn at(place: &Place) -> Result<Recorder, StoreError> {
        match place {
            Place::Local(state_dir) => Recorder::journal(state_dir).await,
            Place::Server { .. } => Ok(Recorder::Store(Store::connect_at(place).await?)),
        }
    }

    /// A daemon's recorder for `store`: its journal, folded into it in
    /// the background (SQLite), or the store itself (PostgreSQL: one round
    /// trip a record); and the folding task, to stop at the end.
    pub fn for_daemon(
        store: &Store,
    ) -> Result<(Recorder, Option<tokio::task::JoinHandle<()>>), StoreError> {
        match &store.db {
            crate::store::Db::Sqlite { .. } => {
                let (recorder, journal) = Recorder::journal_of(store)?;
                Ok((recorder, Some(store.fold_in_background(journal))))
            }
            crate::store::Db::Postgres(_) => Ok((Recorder::Store(store.clone()), None)),
        }
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
            Recorder::Nowhere(why) => Err(StoreError::Unusable(why.to_string())),
        }
    }

    /// Writes what waits for the disk (the journal's entries that could not
    /// be written yet); `Ok` once nothing waits.
    pub fn flush(&self) -> Result<(), StoreError> {
        match self {
            Recorder::Store(_) => Ok(()),
            Recorder::Journal { journal, .. } => journal.retry(),
            Recorder::Nowhere(why) => Err(StoreError::Unusable(why.to_string())),
        }
    }

    /// The id of the next run (or fire not run) to record.
    pub async fn next_run_id(&self) -> Result<i64, StoreError> {
        match self {
            Recorder::Store(store) => store.next_run_id().await,
            Recorder::Journal { journal, .. } => journal.next_run_id(),
            // No sequence to take from: the run is numbered 0, and recorded nowhere.
            Recorder::Nowhere(_) => Ok(0),
        }
    }

    /// Records a flow run as it starts, with all its steps.
    pub async fn start_flow(&self, run: &FlowRecord) -> Result<(), StoreError> {
        match self {
            Recorder::Store(store) => store.insert_flow_run(run).await,
            Recorder::Journal { journal, .. } => journal.start_flow(run),
            Recorder::Nowhere(why) => Err(StoreError::Unusable(why.to_string())),
        }
    }

    /// Records what a move of a flow run changed.
    pub async fn save_flow(&self, save: &FlowSave) -> Result<bool, StoreError> {
        match self {
            Recorder::Store(store) => store.save_flow_run(save).await,
            Recorder::Journal { journal, .. } => journal.save_flow(save).map(|()| true),
            Recorder::Nowhere(why) => Err(StoreError::Unusable(why.to_string())),
        }
    }

    /// Records a run as started.
    pub async fn start_run(&self, run: &NewRun) -> Result<(), StoreError> {
        match self {
            Recorder::Store(store) => store.start_run(run).await,
            Recorder::Journal { journal, .. } => journal.start_run(run),
            Recorder::Nowhere(why) => Err(StoreError::Unusable(why.to_string())),
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
            Recorder::Nowhere(why) => Err(StoreError::Unusable(why.to_string())),
        }
    }

    /// Records an earlier attempt of a run.
    pub async fn record_attempt(&self, report: &Report) -> Result<(), StoreError> {
        match self {
            Recorder::Store(store) => store.record_attempt(report).await,
            Recorder::Journal { journal, .. } => journal.record_attempt(report),
            Recorder::Nowhere(why) => Err(StoreError::Unusable(why.to_string())),
        }
    }

    /// Records how a run ended (a run closed meanwhile keeps that record).
    pub async fn finish_run(&self, report: &Report) -> Result<Finished, StoreError> {
        match self {
            Recorder::Store(store) => patiently(store, || store.finish_run(report)).await,
            Recorder::Journal { journal, .. } => {
                journal.finish_run(report).map(|()| Finished::Recorded)
            }
            Recorder::Nowhere(why) => Err(StoreError::Unusable(why.to_string())),
        }
    }

    /// Records a fire that did not run.
    pub async fn record_not_run(&self, not_run: &NotRun) -> Result<(), StoreError> {
        match self {
            Recorder::Store(store) => patiently(store, || store.record_not_run(not_run)).await,
            Recorder::Journal { journal, .. } => journal.record_not_run(not_run),
            Recorder::Nowhere(why) => Err(StoreError::Unusable(why.to_string())),
        }
    }

    /// Records a trigger's delivery.
    pub async fn record_notification(&self, n: &Notification) -> Result<(), StoreError> {
        match self {
            Recorder::Store(store) => store.record_notification(n).await,
            Recorder::Journal { journal, .. } => journal.record_notification(n),
            Recorder::Nowhere(why) => Err(StoreError::Unusable(why.to_string())),
        }
    }
}

/// How long a record waits for a database server that does not answer
/// (restarting, or out of reach) before it is given up.
const SERVER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// `write` into `store`, tried again each second while its server cannot
/// be reached (restarting), for up to [`SERVER_PATIENCE`]: the end of a
/// run is not lost to a restart of PostgreSQL. Other failures, and
/// SQLite's, are said at once.
async fn patiently<T, F, Fut>(store: &Store, mut write: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = tokio::time::Instant::now() + SERVER_PATIENCE;
    loop {
        match write().await {
            Err(StoreError::Query(e))
                if store.is_server()
                    && unreachable(&e)
                    && tokio::time::Instant::now() < deadline =>
            {
                log::debug!(target: "overnight::store", "waiting for the database: {e}");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            done => return done,
        }
    }
}

/// Whether `e` says the server could not be reached or went away, rather
/// than refusing the statement.
pub(super) fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
        // class 08: connection exceptions.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}
