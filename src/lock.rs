//! Locks that the kernel releases when their holder dies.
//!
//! A lock is `flock(2)` on a file under `<state_dir>/locks/`. The daemon
//! opens and locks it (close-on-exec, so no other child inherits it); the
//! job's process receives a copy of the descriptor when it is spawned
//! (`process::spawn_tracked`). The lock then lasts while
//! *either* the daemon's copy or any process of the job is open: a job that
//! outlives a crashed daemon keeps its lock until it exits, and a holder that
//! dies never keeps one — there is nothing to clean up after a crash.
//!
//! Waiting is event-driven between runs of this process (a release wakes
//! the waiters); a lock held by another process (an orphaned job, an
//! `overnight exec`) is retried each second until the wait runs out.
//!
//! In a cluster (DESIGN §10) each lock is also taken across hosts, once
//! the local one is held ([`ClusterLocks`]): a row in the database that
//! holds while the host is alive (store/cluster.rs). The job's process
//! group is guarded by the [`Fence`](crate::fence::Fence) meanwhile, so
//! that it is gone before the others may declare the host dead and take
//! the lock.

use std::fs::File;
use std::fs::TryLockError;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::fence::Fence;

/// How a lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One holder at a time.
    Exclusive,
    /// Any number of shared holders, but no exclusive one.
    Shared,
}

/// One lock a run needs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LockSpec {
    /// The lock's name (`[A-Za-z0-9._-]+`); jobs naming it share it.
    pub name: String,
    /// How it is held.
    pub mode: Mode,
}

impl LockSpec {
    /// The lock every non-`allow` job holds on itself while it runs.
    pub fn job(job: &str) -> LockSpec {
        LockSpec {
            name: format!("job.{job}"),
            mode: Mode::Exclusive,
        }
    }
}

/// Locks taken for one run; released when dropped (by this process —
/// copies passed to the job's processes live as long as they do).
#[derive(Debug)]
pub struct Held {
    /// Each lock, its file open read-only (the descriptor a job inherits:
    /// enough to hold the lock, not to write the daemon's file), and the
    /// file's path.
    files: Vec<(LockSpec, File, PathBuf)>,
    /// The same locks across the cluster's hosts, when in one.
    remote: Option<Remote>,
}

/// A request to the session that holds the cluster's locks for this
/// daemon (store/cluster.rs), served in the order sent: a release sent
/// before a take is done before it.
#[derive(Debug)]
pub enum ClusterRequest {
    /// Take all of these or none; answers how that went, or why the
    /// database could not be asked.
    Take(Vec<LockSpec>, oneshot::Sender<Result<Taken, String>>),
    /// Release these, taken before.
    Release(Vec<LockSpec>),
}

/// How a take of locks across hosts went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// All of them are this host's.
    All,
    /// Another live host holds one of them.
    HeldElsewhere,
    /// This host is no longer alive under its epoch: declared dead while
    /// it was silent, it takes nothing until it has registered again.
    Fenced,
}

/// Where a cluster daemon's locks are taken across hosts, and the fence
/// that guards the jobs holding them.
#[derive(Clone, Debug)]
pub struct ClusterLocks {
    requests: mpsc::UnboundedSender<ClusterRequest>,
    fence: Arc<Fence>,
}

impl ClusterLocks {
    /// Locks asked of the session that reads `requests`, their jobs
    /// guarded by `fence`.
    pub fn new(requests: mpsc::UnboundedSender<ClusterRequest>, fence: Arc<Fence>) -> ClusterLocks {
        ClusterLocks { requests, fence }
    }

    /// Takes `specs` across hosts, all or none.
    async fn take(&self, specs: &[LockSpec]) -> Result<Taken, String> {
        let (answer, answered) = oneshot::channel();
        self.requests
            .send(ClusterRequest::Take(specs.to_vec(), answer))
            .map_err(|_| "the daemon's cluster session has ended".to_string())?;
        answered
            .await
            .map_err(|_| "the daemon's cluster session has ended".to_string())?
    }
}

/// Locks held across hosts for one run, and the process groups guarded
/// while they are: released (in that order) when dropped.
#[derive(Debug)]
struct Remote {
    specs: Vec<LockSpec>,
    locks: ClusterLocks,
    guarded: Mutex<Vec<u32>>,
}

impl Drop for Remote {
    fn drop(&mut self) {
        for pgid in self.guarded.get_mut().expect("guarded groups").drain(..) {
            self.locks.fence.release(pgid);
        }
        let specs = std::mem::take(&mut self.specs);
        let _ = self.locks.requests.send(ClusterRequest::Release(specs));
    }
}

/// Why locks were not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Still held by someone else when the wait ran out.
    #[error("lock `{name}` is held{holder} (waited {waited})")]
    Busy {
        /// The lock.
        name: String,
        /// ", by pid N" when a pid is recorded in the lock file.
        holder: String,
        /// How long was waited.
        waited: String,
    },
    /// The lock file could not be opened.
    #[error("cannot open the lock file `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The cluster's locks could not be asked for (the database does not
    /// answer).
    #[error("the cluster's locks cannot be taken: {0}")]
    Cluster(String),
    /// This host was declared dead by the others while it was silent (a
    /// pause, a partition): it takes no lock until it has registered
    /// again, at its next heartbeat.
    #[error(
        "this host was declared dead by the cluster while it was silent, and takes no lock across hosts until it has registered again (at its next heartbeat)"
    )]
    Fenced,
}

fn released() -> &'static Notify {
    static RELEASED: OnceLock<Notify> = OnceLock::new();
    RELEASED.get_or_init(Notify::new)
}

/// The lock file of `name`.
pub fn path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("locks").join(format!("{name}.lock"))
}

/// Takes every lock of `specs`, waiting up to `wait` for them; all or
/// none; across the hosts of `cluster` too, when in one.
pub async fn acquire(
    state_dir: &Path,
    specs: &[LockSpec],
    wait: Duration,
    cluster: Option<&ClusterLocks>,
) -> Result<Held, LockError> {
    let mut specs = specs.to_vec();
    specs.sort();
    specs.dedup_by(|a, b| a.name == b.name);
    let deadline = Instant::now() + wait;
    loop {
        // Register for a release before trying, so none is missed.
        let notified = released().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let busy = match try_all(state_dir, &specs)? {
            Ok(held) => match cluster.filter(|_| !specs.is_empty()) {
                None => return Ok(held),
                Some(cluster) => match cluster.take(&specs).await {
                    Ok(Taken::All) => return Ok(held.across(&specs, cluster)),
                    Ok(Taken::Fenced) => return Err(LockError::Fenced),
                    // Held on another host: the local ones go again, no
                    // release said (this very wait would hear it, and
                    // try again at once).
                    Ok(Taken::HeldElsewhere) => {
                        let mut held = held;
                        drop(std::mem::take(&mut held.files));
                        (specs[0].name.clone(), " on another host".to_string())
                    }
                    Err(e) => return Err(LockError::Cluster(e)),
                },
            },
            Err(busy) => {
                let holder = holder_of(&path(state_dir, &busy.name));
                (busy.name, holder)
            }
        };
        let now = Instant::now();
        if now >= deadline {
            let (name, holder) = busy;
            return Err(LockError::Busy {
                holder,
                name,
                waited: humantime::format_duration(wait).to_string(),
            });
        }
        let retry = (deadline - now).min(Duration::from_secs(1));
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(retry) => {}
        }
    }
}

/// One attempt at all locks: `Ok(Err(spec))` names the first busy one.
fn try_all(state_dir: &Path, specs: &[LockSpec]) -> Result<Result<Held, LockSpec>, LockError> {
    // Not a `Held` until complete: dropping a partial set must not wake
    // the waiters (this one among them) as a release would.
    let mut files = Vec::new();
    for spec in specs {
        let path = path(state_dir, &spec.name);
        let file = open_held(&path).map_err(|source| LockError::Io {
            path: path.clone(),
            source,
        })?;
        let taken = match spec.mode {
            Mode::Exclusive => file.try_lock(),
            Mode::Shared => file.try_lock_shared(),
        };
        match taken {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(Err(spec.clone())),
            Err(TryLockError::Error(source)) => return Err(LockError::Io { path, source }),
        }
        files.push((spec.clone(), file, path));
    }
    Ok(Ok(Held {
        files,
        remote: None,
    }))
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        crate::state::create_dir(dir)?;
    }
    // std opens with O_CLOEXEC: no child inherits the lock by accident.
    crate::state::open_rw(path)
}

/// A run's lock file, open read-only (the descriptor its job inherits can
/// hold the lock, not write the file); made first when it is not there.
/// One open when it is, as it is from a job's second run on.
fn open_held(path: &Path) -> std::io::Result<File> {
    match crate::state::open_read_own(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            open(path)?;
            crate::state::open_read_own(path)
        }
        opened => opened,
    }
}

/// Replaces the file's content with `pid` (at offset 0, whatever the
/// descriptor's position).
fn write_pid(file: &File, pid: u32) {
    use std::os::unix::fs::FileExt;
    let _ = file.set_len(0);
    let _ = file.write_all_at(pid.to_string().as_bytes(), 0);
}

fn holder_of(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .map(|pid| format!(" by pid {pid}"))
        .unwrap_or_default()
}

impl Held {
    /// These locks, held across the cluster's hosts too.
    fn across(mut self, specs: &[LockSpec], locks: &ClusterLocks) -> Held {
        self.remote = Some(Remote {
            specs: specs.to_vec(),
            locks: locks.clone(),
            guarded: Mutex::default(),
        });
        self
    }

    /// Has the fence guard the job's process group `pgid` while the
    /// locks are held across hosts: killed if this daemon can no longer
    /// vouch for them (crate::fence).
    pub fn guard(&self, pgid: u32) {
        if let Some(remote) = &self.remote {
            remote.locks.fence.guard(pgid);
            remote.guarded.lock().expect("guarded groups").push(pgid);
        }
    }

    /// Guards the groups of ended attempts no more: their ids may be
    /// taken by other processes.
    pub fn unguard_all(&self) {
        if let Some(remote) = &self.remote {
            for pgid in remote.guarded.lock().expect("guarded groups").drain(..) {
                remote.locks.fence.release(pgid);
            }
        }
    }

    /// The locks held.
    pub fn specs(&self) -> impl Iterator<Item = &LockSpec> {
        self.files.iter().map(|(s, _, _)| s)
    }

    /// The descriptors, handed to the job's process.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.files.iter().map(|(_, f, _)| f.as_fd()).collect()
    }

    /// Records the job's pid in its exclusive lock files, so a message can
    /// name the process that holds them (the daemon's is not written when a
    /// lock is taken: a run that ends within moments needs no name, and a
    /// file write costs more than the lock).
    pub fn record_holder(&self, pid: u32) {
        for (spec, _, path) in &self.files {
            if spec.mode == Mode::Exclusive
                && let Ok(file) = crate::state::open_rw(path)
            {
                write_pid(&file, pid);
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Across hosts first: the next local holder's take comes after
        // this release in the session's order.
        self.remote.take();
        if !self.files.is_empty() {
            self.files.clear();
            released().notify_waiters();
        }
    }
}

/// The daemon's own lock on its state directory: one daemon per directory.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
}

impl DaemonLock {
    /// Takes the lock, or names the process that holds it. An operator's
    /// command holds it for a moment ([`for_operator`](Self::for_operator)):
    /// that is waited for, a few seconds at most. Blocks: call it off the
    /// async workers.
    pub fn take(state_dir: &Path) -> Result<DaemonLock, String> {
        let path = state_dir.join("daemon.lock");
        let file = open(&path).map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while file.try_lock().is_err() {
            let holder = Holder::of(&path);
            if !holder.waits() || std::time::Instant::now() >= deadline {
                return Err(format!(
                    "{holder} is running on the state directory `{}`; stop it first, or give this one its own `state_dir`",
                    state_dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        write_pid(&file, std::process::id());
        Ok(DaemonLock { _file: file })
    }

    /// The lock for an operator's command on the store while no daemon
    /// runs (a daemon starting meanwhile waits): none when a daemon or
    /// another such command holds it. The file says who holds it.
    pub fn for_operator(state_dir: &Path) -> Option<DaemonLock> {
        let file = open(&state_dir.join("daemon.lock")).ok()?;
        file.try_lock().ok()?;
        use std::os::unix::fs::FileExt;
        let _ = file.set_len(0);
        let _ = file.write_all_at(format!("{} {OPERATOR}", std::process::id()).as_bytes(), 0);
        Some(DaemonLock { _file: file })
    }
}

/// What the daemon lock file says of an operator's command holding it.
const OPERATOR: &str = "operator";

/// Who holds the daemon lock, as its file says.
enum Holder {
    /// A daemon, by pid, if it wrote one.
    Daemon(Option<u32>),
    /// An operator's command, by pid.
    Operator(u32),
}

impl Holder {
    fn of(path: &Path) -> Holder {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut words = text.split_whitespace();
        let pid = words.next().and_then(|w| w.parse().ok());
        match (pid, words.next()) {
            (Some(pid), Some(OPERATOR)) => Holder::Operator(pid),
            _ => Holder::Daemon(pid),
        }
    }

    /// Whether to wait for it: an operator's command lets go in a moment.
    fn waits(&self) -> bool {
        matches!(self, Holder::Operator(_))
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Daemon(Some(pid)) => write!(f, "another overnight daemon by pid {pid}"),
            Holder::Daemon(None) => write!(f, "another overnight daemon"),
            Holder::Operator(pid) => write!(f, "an `overnight flow` command by pid {pid}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, mode: Mode) -> LockSpec {
        LockSpec {
            name: name.into(),
            mode,
        }
    }

    #[tokio::test]
    async fn exclusive_excludes_and_shared_shares() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = acquire(d, &[spec("w", Mode::Shared)], Duration::ZERO, None)
            .await
            .unwrap();
        let b = acquire(d, &[spec("w", Mode::Shared)], Duration::ZERO, None)
            .await
            .unwrap();
        let busy = acquire(
            d,
            &[spec("w", Mode::Exclusive)],
            Duration::from_millis(50),
            None,
        )
        .await
        .unwrap_err();
        assert!(busy.to_string().starts_with("lock `w` is held"), "{busy}");
        drop((a, b));
        let x = acquire(
            d,
            &[spec("w", Mode::Exclusive), spec("v", Mode::Exclusive)],
            Duration::ZERO,
            None,
        )
        .await
        .unwrap();
        assert_eq!(x.specs().count(), 2);
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_holder_releases() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let held = acquire(&d, &[spec("w", Mode::Exclusive)], Duration::ZERO, None)
            .await
            .unwrap();
        let waiter = tokio::spawn(async move {
            acquire(
                &d,
                &[spec("w", Mode::Exclusive)],
                Duration::from_secs(30),
                None,
            )
            .await
        });
        tokio::task::yield_now().await;
        let started = std::time::Instant::now();
        drop(held);
        waiter.await.unwrap().unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "woken by the release, not the retry timer"
        );
    }

    #[test]
    fn a_starting_daemon_waits_for_an_operators_moment() {
        let dir = tempfile::tempdir().unwrap();
        let operator = DaemonLock::for_operator(dir.path()).expect("no daemon runs");
        let path = dir.path().to_path_buf();
        let starting = std::thread::spawn(move || DaemonLock::take(&path));
        std::thread::sleep(Duration::from_millis(200));
        drop(operator);
        let daemon = starting.join().unwrap();
        assert!(daemon.is_ok(), "taken once the operator let go: {daemon:?}");
        assert!(
            DaemonLock::for_operator(dir.path()).is_none(),
            "no operator's command on the store while a daemon runs"
        );
    }

    #[test]
    fn one_daemon_per_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = DaemonLock::take(dir.path()).unwrap();
        let err = DaemonLock::take(dir.path()).unwrap_err();
        assert!(
            err.contains(&format!("daemon by pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        DaemonLock::take(dir.path()).unwrap();
    }
}
