//! Run history in SQLite.
//!
//! One file, `<state_dir>/overnight.db`, in WAL mode so that the CLI reads
//! while the daemon writes. The schema's migrations are compiled into the
//! binary and applied in order, tracked by SQLite's `user_version`. A run is
//! recorded as `running` before its job starts and completed when it ends,
//! so no started run can be missing from the history: straight into the
//! database, or (the daemon, `exec`) into the journal that every reader
//! folds in first (`journal.rs`). Run ids come from a counter file beside
//! the database (`ids.rs`), so both ways share one sequence.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::config::Place;
use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

mod abandoned;
mod cluster;
mod db;
mod events;
mod flow_ops;
mod flow_view;
mod flows;
mod ids;
mod jobs;
mod journal;
mod locks;
mod notifications;
pub mod postgres;
mod prune;
mod recorder;
mod runs;
mod schedule;

pub use abandoned::Abandoned;
pub use cluster::{Beat, HostCard, HostRecord, Membership};
pub(crate) use db::{BeginWrite, Columns, Db, for_each_db, on_db, text_of};
pub use events::Hearing;
pub use flows::{FlowAction, FlowRecord, FlowSave, FlowState, StepRuns};
pub use ids::RunIds;
pub use jobs::Definition;
pub use journal::Journal;
pub use notifications::{DeliveryStatus, Notification};
pub use prune::{PRUNE_EVERY, Pruned};
pub use recorder::Recorder;
pub use runs::{Finished, NewRun, RunRecord};

pub use schedule::NotRun;

/// The schema, one step per entry; never edit a released step, add one.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_schedule_state.sql"),
    include_str!("migrations/0003_processes_attempts_locks.sql"),
    include_str!("migrations/0004_notifications.sql"),
    include_str!("migrations/0005_fewer_writes.sql"),
    include_str!("migrations/0006_journal.sql"),
    include_str!("migrations/0007_runner_start.sql"),
    include_str!("migrations/0008_flows.sql"),
    include_str!("migrations/0009_definitions_by_host.sql"),
];

/// Which past runs (or flow runs) to list: newest first, a page at a
/// time. Paging is by id (`before`), not by offset, so a page reads the
/// same rows however many runs were added since the one before.
#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    /// Only this job's runs (this flow's flow runs).
    pub name: Option<String>,
    /// Only runs with this status word (`failed`, `held`…).
    pub status: Option<String>,
    /// Only runs started at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only runs started before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only runs older than this id: the `next` of the page before.
    pub before: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

impl HistoryQuery {
    /// The newest `limit` runs of `name`, or of all.
    pub fn latest(name: Option<&str>, limit: u32) -> HistoryQuery {
        HistoryQuery {
            name: name.map(str::to_string),
            limit,
            ..HistoryQuery::default()
        }
    }
}

/// The `WHERE … ORDER BY … LIMIT` of a [`HistoryQuery`] over a table with
/// `id` and `started_at`, whose name column is `$name`; bind with
/// [`bind_history`].
macro_rules! history_where {
    ($name:literal) => {
        concat!(
            "WHERE ($1 IS NULL OR ",
            $name,
            " = $1) AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR started_at >= $3) \
             AND ($4 IS NULL OR started_at < $4) AND ($5 IS NULL OR id < $5) ORDER BY id DESC LIMIT $6"
        )
    };
}
pub(crate) use history_where;

/// Binds a [`HistoryQuery`] to the parameters of [`history_where!`], on
/// a query of either database.
macro_rules! bind_history {
    ($query:expr, $filter:expr) => {
        $query
            .bind($filter.name.as_deref())
            .bind($filter.status.as_deref())
            .bind($filter.since.map($crate::store::time_text))
            .bind($filter.until.map($crate::store::time_text))
            .bind($filter.before)
            .bind(i64::from($filter.limit))
    };
}
pub(crate) use bind_history;

/// Rows of (`name` column, `at` time text) as (name, Unix seconds); a
/// time that does not parse is left out.
fn named_times(rows: &[impl Columns], name: &str) -> Result<Vec<(String, f64)>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if let Ok(at) = DateTime::parse_from_rfc3339(&row.text("at")?) {
            out.push((row.text(name)?, at.timestamp_micros() as f64 / 1e6));
        }
    }
    Ok(out)
}

/// Moves a job's "last handled" fire forward, never back.
pub(crate) const MARK_HANDLED: &str = "INSERT INTO schedule_state (job, last_handled) VALUES ($1, $2) \
     ON CONFLICT (job) DO UPDATE SET last_handled = CASE WHEN excluded.last_handled > schedule_state.last_handled \
     THEN excluded.last_handled ELSE schedule_state.last_handled END";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or prepared.
    #[error("cannot open the run history `{}`: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// The reason.
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("run history: {0}")]
    Query(#[from] sqlx::Error),
    /// A file beside the database (the run ids, the journal) failed.
    #[error("run history: `{}`: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The journal could not be written (a full disk, say): the entries
    /// wait in this process's memory and are written once it can.
    #[error(
        "run history: cannot write `{}`: {source}; free space there (the daemon writes what waits once it can)",
        path.display()
    )]
    Waiting {
        /// The journal file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The PostgreSQL store cannot be used as the jobs file says.
    #[error("run history: {0}")]
    Server(String),
    /// The state directory cannot be used at all: nothing is recorded.
    #[error("run history: not recorded: {0}; the job ran all the same")]
    Unusable(String),
    /// A run's fire was claimed under an epoch of its host that is no
    /// longer current: the host was declared dead meanwhile (a pause, a
    /// partition), and the fire is another host's to take over.
    #[error(
        "run history: host `{0}` was declared dead by the cluster since it claimed this fire; not started here (another host takes it over)"
    )]
    Fenced(String),
    /// A run id was handed out twice (the run-id file was older than the
    /// history); the run was not recorded.
    #[error(
        "run history: run id {0} is taken already; run `overnight history` once to mend the id sequence"
    )]
    IdTaken(i64),
    /// A flow run's move was not saved: another host drives the run now,
    /// or this host was declared dead since (a pause, a partition).
    #[error(
        "run history: flow run #{0} is not this host's to drive now (another host took it over, or this host was declared dead); its driver here lets it go"
    )]
    NotDriving(i64),
    /// A claimed fire's start was not confirmed in time: the database
    /// could not be reached. Nothing ran; the fire is claimed again once
    /// it answers.
    #[error(
        "run history: the database did not confirm host `{host}`'s claim of this fire in time ({why}); not started yet, claimed again once it answers"
    )]
    Unconfirmed {
        /// This host.
        host: String,
        /// Why the database did not answer.
        why: String,
    },
}

impl StoreError {
    /// Whether it says the database server could not be reached (or went
    /// away), rather than refusing what was asked.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Query(e) if recorder::unreachable(e))
    }

    /// Whether the state directory (or a file in it) was refused as not
    /// this user's alone, rather than failing.
    pub fn is_refused(&self) -> bool {
        matches!(self, StoreError::File { source, .. } if crate::state::is_refused(source))
    }

    fn file(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::File { path, source }
    }
}

/// The run history.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    state_dir: Arc<PathBuf>,
    folded_files: Arc<journal::FoldedFiles>,
    /// The state directory, held open while its name is not UTF-8.
    _held_dir: Option<Arc<std::fs::File>>,
}

/// Whether anything was ever recorded in `state_dir`: the database, or a
/// run-id sequence (the first wrappers on a new directory journal their
/// runs before any database exists; the first reader makes it).
pub fn has_history(state_dir: &Path) -> bool {
    state_dir.join("overnight.db").exists() || state_dir.join(ids::FILE).exists()
}

/// Whether there may be a history at `place`: a server always may.
pub fn may_have_history(place: &Place) -> bool {
    match place {
        Place::Local(state_dir) => has_history(state_dir),
        Place::Server { .. } => true,
    }
}

/// How long an opening waits for a database another process is creating.
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// Whether SQLite said "database is locked" (SQLITE_BUSY, any variant).
fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

/// Times are stored as RFC 3339 UTC text, which sorts like time.
pub fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Store {
    /// Opens (creating if need be) the history in `state_dir`, folding in
    /// what the journal holds and raising the run-id sequence past every
    /// run recorded.
    pub async fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let store = Store::connect(state_dir).await?;
        // The history is read even when the journal cannot be folded in
        // now (a full disk): the entries wait in their files.
        if let Err(e) = store.fold_journal().await {
            log::warn!(target: "overnight::store", "the journal's latest entries are not in the history yet: {e}");
        }
        Ok(store)
    }

    /// Opens (creating if need be) the history in `state_dir` and raises
    /// the run-id sequence past every run it holds, without folding the
    /// journal: enough to start recording (a first `exec` on a new state
    /// directory), with no write lock taken once the schema is there.
    pub async fn connect(state_dir: &Path) -> Result<Store, StoreError> {
        let path = state_dir.join("overnight.db");
        let fail = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        crate::state::prepare(state_dir).map_err(StoreError::file(state_dir))?;
        // Made here, 0600: SQLite gives its -wal and -shm files the
        // database's mode.
        crate::state::open_rw(&path).map_err(StoreError::file(&path))?;
        // SQLite takes UTF-8 file names only: a state directory whose name
        // is not is reached through a descriptor held open on it.
        let (name, held_dir) = match path.to_str() {
            Some(_) => (path.clone(), None),
            None => {
                let dir = std::fs::File::open(state_dir).map_err(StoreError::file(state_dir))?;
                let via = format!("/proc/self/fd/{}/overnight.db", dir.as_raw_fd());
                (PathBuf::from(via), Some(Arc::new(dir)))
            }
        };
        let options = SqliteConnectOptions::new()
            .filename(&name)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool_options = SqlitePoolOptions::new()
            .max_connections(4)
            // A local file does not go stale: no ping before every query.
            .test_before_acquire(false)
            // A transaction whose ROLLBACK failed (SQLite had already rolled
            // it back itself, as it does on a full disk) leaves sqlx
            // counting it open, and every later BEGIN on that connection
            // would fail: such a connection is closed, a fresh one opened.
            .before_acquire(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }));
        // Setting WAL mode on a new file takes a lock that SQLite does not
        // wait for: hundreds of first openers meeting there are let through
        // one by one, for up to the busy timeout.
        let mut waited = Duration::ZERO;
        let pool = loop {
            match pool_options.clone().connect_with(options.clone()).await {
                Err(e) if is_busy(&e) && waited < BUSY_WAIT => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    waited += Duration::from_millis(20);
                }
                connected => break connected.map_err(fail)?,
            }
        };
        let ids = Arc::new(RunIds::open(state_dir).map_err(StoreError::file(state_dir))?);
        migrate_sqlite(&pool).await.map_err(fail)?;
        // Entries folded later carry ids from this sequence, or are given
        // new ones past it (journal.rs): raising once here is enough.
        raise_run_ids(&pool, &ids, state_dir).await?;
        Ok(Store {
            db: Db::Sqlite { pool, ids },
            state_dir: Arc::new(state_dir.to_path_buf()),
            folded_files: Arc::default(),
            _held_dir: held_dir,
        })
    }

    /// Opens the history where `place` says, folding in what SQLite's
    /// journal holds.
    pub async fn open_at(place: &Place) -> Result<Store, StoreError> {
        match place {
            Place::Local(state_dir) => Store::open(state_dir).await,
            Place::Server { url, state_dir } => Store::connect_server(url, state_dir).await,
        }
    }

    /// Opens the history where `place` says, without folding SQLite's
    /// journal in ([`Store::connect`]).
    pub async fn connect_at(place: &Place) -> Result<Store, StoreError> {
        match place {
            Place::Local(state_dir) => Store::connect(state_dir).await,
            Place::Server { url, state_dir } => Store::connect_server(url, state_dir).await,
        }
    }

    /// The PostgreSQL database at `url` as the jobs file writes it: its
    /// `${VAR}`s read from the environment.
    async fn connect_server(url: &str, state_dir: &Path) -> Result<Store, StoreError> {
        let resolved = postgres::resolved(url).map_err(|name| {
            StoreError::Server(format!(
                "`store` names ${{{name}}}, which is not set in overnight's environment; set it where overnight runs (the daemon's unit, the crontab)"
            ))
        })?;
        Store::connect_postgres(&resolved, state_dir).await
    }

    /// Opens the history in the PostgreSQL database at `url`, bringing its
    /// schema up to date; `state_dir` keeps what stays this host's (the
    /// key of job definitions' digests).
    pub async fn connect_postgres(url: &str, state_dir: &Path) -> Result<Store, StoreError> {
        crate::state::prepare(state_dir).map_err(StoreError::file(state_dir))?;
        let pool = postgres::connect(url)
            .await
            .map_err(|source| StoreError::Open {
                path: PathBuf::from(postgres::without_password(url)),
                source,
            })?;
        Ok(Store {
            db: Db::Postgres(pool),
            state_dir: Arc::new(state_dir.to_path_buf()),
            folded_files: Arc::default(),
            _held_dir: None,
        })
    }

    /// Whether the history is on a server (PostgreSQL), shared by hosts.
    pub fn is_server(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    /// The id of the next run (or fire not run) to record.
    pub async fn next_run_id(&self) -> Result<i64, StoreError> {
        match &self.db {
            Db::Postgres(pool) => Ok(sqlx::query_scalar("SELECT nextval('run_ids')")
                .fetch_one(pool)
                .await?),
            Db::Sqlite { ids, .. } => ids
                .next()
                .map_err(StoreError::file(self.state_dir.as_path())),
        }
    }

    /// Closes the pool, finishing pending writes.
    pub async fn close(&self) {
        on_db!(&self.db, pool => pool.close().await);
    }
}

/// Raises the run-id sequence past every run the history holds.
async fn raise_run_ids(
    pool: &SqlitePool,
    ids: &RunIds,
    state_dir: &Path,
) -> Result<(), StoreError> {
    let max: Option<i64> = sqlx::query_scalar(
        "SELECT max(coalesce((SELECT max(id) FROM runs), 0), \
                    coalesce((SELECT max(id) FROM flow_runs), 0), \
                    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'runs'), 0))",
    )
    .fetch_one(pool)
    .await?;
    ids.raise_to(max.unwrap_or(0))
        .map_err(StoreError::file(state_dir))
}

/// Applies SQLite's migrations not applied yet.
async fn migrate_sqlite(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let version = "PRAGMA user_version";
    let done: i64 = sqlx::query_scalar(version).fetch_one(&mut *conn).await?;
    if done as usize >= MIGRATIONS.len() {
        return Ok(()); // the usual case: no write lock taken
    }
    // IMMEDIATE: two processes opening a new file migrate one at a time;
    // the version is read again under the lock.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let done: i64 = sqlx::query_scalar(version).fetch_one(&mut *tx).await?;
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "PRAGMA user_version = {}",
            step + 1
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

#[cfg(test)]
impl Store {
    /// The SQLite pool, for tests that write rows directly.
    fn test_pool(&self) -> &SqlitePool {
        match &self.db {
            Db::Sqlite { pool, .. } => pool,
            Db::Postgres(_) => panic!("a SQLite store"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Status, Trigger};

    #[tokio::test]
    async fn runs_are_recorded_and_abandoned_ones_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let id = store.next_run_id().await.unwrap();
        store
            .start_run(&NewRun {
                id,
                job: "a".into(),
                trigger: Trigger::Manual,
                scheduled_at: None,
                started_at: Utc::now(),
                host: "h".into(),
                pid: std::process::id(),
                runner_started: None,
                locks: Vec::new(),
                capture: dir.path().join("1.log"),
                flow_step: None,
                epoch: None,
            })
            .await
            .unwrap();
        assert_eq!(store.running().await.unwrap().len(), 1);
        // Reopening runs no migration twice.
        let again = Store::open(dir.path()).await.unwrap();
        assert_eq!(
            again
                .history(&HistoryQuery::latest(Some("a"), 10))
                .await
                .unwrap()[0]
                .id,
            id
        );
        // Its runner (pid 1 here) lives: not abandoned.
        sqlx::query("UPDATE runs SET pid = 1")
            .execute(store.test_pool())
            .await
            .unwrap();
        assert!(store.abandoned("h", true).await.unwrap().is_empty());
        sqlx::query("UPDATE runs SET pid = 999999999")
            .execute(store.test_pool())
            .await
            .unwrap();
        let abandoned = store.abandoned("h", true).await.unwrap();
        assert_eq!(abandoned.len(), 1);
        store
            .close_abandoned(abandoned[0].id, Status::Lost, "lost: test")
            .await
            .unwrap();
        let report = store.report(id).await.unwrap().expect("a full report");
        assert_eq!(report.status, Status::Lost);
        assert_eq!(report.errors[0].message, "lost: test");
        assert_eq!(store.run(id).await.unwrap().unwrap().status, "lost");
    }

    /// A job's last run is the one that ended last: a run stopped after a
    /// later fire of it was skipped is not hidden by that fire.
    #[tokio::test]
    async fn the_last_run_is_the_one_that_ended_last() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        for (id, status, finished) in [
            (1, "failed", "2026-12-01T10:20:02.000000Z"),
            (2, "skipped", "2026-12-01T10:19:50.000000Z"),
        ] {
            sqlx::query(
                "INSERT INTO runs (id, job, trigger, started_at, finished_at, status, host) \
                 VALUES ($1, 'slow', 'manual', '2026-12-01T10:19:00.000000Z', $2, $3, 'h')",
            )
            .bind(id)
            .bind(finished)
            .bind(status)
            .execute(store.test_pool())
            .await
            .unwrap();
        }
        let last = store.last_finished().await.unwrap();
        assert_eq!((last.len(), last[0].id), (1, 1));
    }
}
