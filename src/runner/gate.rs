//! The run's gate: what a fire must pass before it starts.
//!
//! In order: the job's own lock, as its `concurrency` policy takes it
//! (`skip`, `queue`, `replace`, `allow`); a place among `max_parallel`; its
//! named locks within `lock_wait`. A fire that cannot pass is not run, for
//! a [`SkipReason`]. A wrapped crontab line (`exec`) whose lock file cannot
//! even be opened runs without it, as cron would have run it, with a note.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{Concurrency, Job};
use crate::lock::{self, Held, LockError, LockSpec};
use crate::report::Trigger;

/// Why a fire did not run.
#[derive(Debug)]
pub enum SkipReason {
    /// Another run of the job holds its lock.
    StillRunning(LockError),
    /// `concurrency: queue`, and the queue is full.
    QueueFull {
        /// Fires already waiting.
        waiting: usize,
        /// The job's `queue_limit`.
        limit: usize,
    },
    /// The job's own lock file cannot be opened (an unwritable state
    /// directory, say): not a run still going.
    LockUnopenable(LockError),
    /// Its named locks were not free within `lock_wait`.
    Locks(LockError),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::StillRunning(e) => write!(f, "the job is still running ({e})"),
            SkipReason::QueueFull { waiting, limit } => write!(
                f,
                "the job is still running and {waiting} fire(s) already wait (queue_limit: {limit})"
            ),
            SkipReason::LockUnopenable(e) | SkipReason::Locks(e) => write!(f, "{e}"),
        }
    }
}

/// What a fire holds once it passed: released when dropped.
pub(super) struct Admission {
    /// The job's own lock, and its named locks.
    pub held: Vec<Held>,
    /// Its place among `max_parallel`.
    _place: Option<OwnedSemaphorePermit>,
    /// What the gate has to say in the run's report.
    pub notes: Vec<String>,
}

impl Admission {
    /// The locks held, for the run's record.
    pub fn specs(&self) -> Vec<LockSpec> {
        self.held.iter().flat_map(|h| h.specs().cloned()).collect()
    }

    /// The lock descriptors, handed to the job's process.
    pub fn fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        self.held.iter().flat_map(|h| h.fds()).collect()
    }
}

/// Waits "forever" for a queued fire's turn (a hundred years).
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The gate of one runner: its places and its queues.
#[derive(Debug, Default)]
pub(super) struct Gate {
    /// Fires waiting for their job (`concurrency: queue`), by job.
    /// Never held across an await.
    queued: Mutex<HashMap<String, usize>>,
    /// At most this many runs at once, when set.
    places: Option<Arc<Semaphore>>,
    /// In a cluster, where locks are taken across hosts.
    cluster: Option<lock::ClusterLocks>,
}

impl Gate {
    pub fn new(max_parallel: Option<usize>) -> Gate {
        Gate {
            queued: Mutex::default(),
            places: max_parallel.map(|n| Arc::new(Semaphore::new(n))),
            cluster: None,
        }
    }

    /// The same gate, its locks taken across a cluster's hosts too.
    pub fn across(&self, cluster: lock::ClusterLocks) -> Gate {
        Gate {
            queued: Mutex::default(),
            places: self.places.clone(),
            cluster: Some(cluster),
        }
    }

    /// Lets the fire through, or says why not. `replace` is called to end
    /// the job's running attempts when its policy is `replace`.
    pub async fn admit(
        &self,
        state_dir: &Path,
        job: &Job,
        trigger: Trigger,
        replace: impl FnOnce(),
    ) -> Result<Admission, SkipReason> {
        let mut notes = Vec::new();
        let own = match self.own_lock(state_dir, job, replace).await {
            Ok(own) => own,
            // A wrapped crontab line runs as cron would have run it, even
            // when its state directory cannot be written.
            Err(SkipReason::LockUnopenable(e)) if trigger == Trigger::Exec => {
                notes.push(format!("ran without its lock: {e}"));
                None
            }
            Err(why) => return Err(why),
        };
        let place = match &self.places {
            Some(places) => Some(
                Arc::clone(places)
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed"),
            ),
            None => None,
        };
        let named = lock::acquire(state_dir, &job.locks, job.lock_wait, self.cluster.as_ref())
            .await
            .map_err(SkipReason::Locks)?;
        Ok(Admission {
            held: own.into_iter().chain(std::iter::once(named)).collect(),
            _place: place,
            notes,
        })
    }

    /// The job's own lock, as its concurrency policy takes it.
    async fn own_lock(
        &self,
        state_dir: &Path,
        job: &Job,
        replace: impl FnOnce(),
    ) -> Result<Option<Held>, SkipReason> {
        let own = [LockSpec::job(&job.name)];
        let refused = |e: LockError| match e {
            LockError::Busy { .. } => SkipReason::StillRunning(e),
            // Not a run still going: the lock could not even be tried.
            LockError::Io { .. } | LockError::Cluster(_) | LockError::Fenced => {
                SkipReason::LockUnopenable(e)
            }
        };
        let cluster = self.cluster.as_ref();
        let now = || lock::acquire(state_dir, &own, Duration::ZERO, cluster);
        match job.concurrency {
            Concurrency::Allow => Ok(None),
            Concurrency::Skip => now().await.map(Some).map_err(refused),
            Concurrency::Replace => {
                // Only a run that holds the lock is replaced; a lock that
                // cannot even be tried ends nothing.
                match now().await {
                    Ok(held) => return Ok(Some(held)),
                    Err(e @ (LockError::Io { .. } | LockError::Cluster(_) | LockError::Fenced)) => {
                        return Err(refused(e));
                    }
                    Err(LockError::Busy { .. }) => replace(),
                }
                lock::acquire(state_dir, &own, FOREVER, cluster)
                    .await
                    .map(Some)
                    .map_err(refused)
            }
            Concurrency::Queue => {
                match now().await {
                    Ok(held) => return Ok(Some(held)),
                    Err(e @ (LockError::Io { .. } | LockError::Cluster(_) | LockError::Fenced)) => {
                        return Err(refused(e));
                    }
                    Err(LockError::Busy { .. }) => {}
                }
                {
                    let mut queued = self.queued.lock().expect("queued fires");
                    let waiting = queued.entry(job.name.clone()).or_default();
                    if *waiting >= job.queue_limit {
                        return Err(SkipReason::QueueFull {
                            waiting: *waiting,
                            limit: job.queue_limit,
                        });
                    }
                    *waiting += 1;
                }
                let held = lock::acquire(state_dir, &own, FOREVER, cluster).await;
                *self
                    .queued
                    .lock()
                    .expect("queued fires")
                    .entry(job.name.clone())
                    .or_default() -= 1;
                held.map(Some).map_err(refused)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(concurrency: Concurrency) -> Job {
        let mut job = Job::adhoc("gated".into(), Vec::new());
        job.concurrency = concurrency;
        job
    }

    #[tokio::test]
    async fn skip_refuses_a_second_fire_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Gate::new(None);
        let job = job(Concurrency::Skip);
        let first = gate.admit(dir.path(), &job, Trigger::Manual, || {}).await;
        let second = gate.admit(dir.path(), &job, Trigger::Manual, || {}).await;
        assert!(first.is_ok());
        assert!(matches!(second, Err(SkipReason::StillRunning(_))));
        drop(first);
        let third = gate.admit(dir.path(), &job, Trigger::Manual, || {}).await;
        assert!(third.is_ok(), "the lock goes with the admission");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_with_its_count() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Arc::new(Gate::new(None));
        let job = job(Concurrency::Queue);
        let first = gate.admit(dir.path(), &job, Trigger::Manual, || {}).await;
        assert!(first.is_ok());
        // One waits (queue_limit 1)...
        let waiting = {
            let (gate, dir, job) = (Arc::clone(&gate), dir.path().to_path_buf(), job.clone());
            tokio::spawn(async move {
                gate.admit(&dir, &job, Trigger::Manual, || {})
                    .await
                    .map(|_| ())
            })
        };
        while *gate.queued.lock().unwrap().get("gated").unwrap_or(&0) == 0 {
            tokio::task::yield_now().await;
        }
        // ...the next is refused.
        let refused = gate.admit(dir.path(), &job, Trigger::Manual, || {}).await;
        match refused {
            Err(SkipReason::QueueFull { waiting, limit }) => assert_eq!((waiting, limit), (1, 1)),
            other => panic!("{:?}", other.map(|_| ())),
        }
        drop(first);
        assert!(waiting.await.unwrap().is_ok(), "the queued fire runs next");
    }

    #[tokio::test]
    async fn replace_ends_the_running_one() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Arc::new(Gate::new(None));
        let job = job(Concurrency::Replace);
        let first = gate
            .admit(dir.path(), &job, Trigger::Manual, || {})
            .await
            .ok();
        let (told, heard) = tokio::sync::oneshot::channel();
        let second = {
            let (gate, dir, job) = (Arc::clone(&gate), dir.path().to_path_buf(), job.clone());
            tokio::spawn(async move {
                gate.admit(&dir, &job, Trigger::Manual, move || {
                    let _ = told.send(());
                })
                .await
                .map(|_| ())
            })
        };
        heard.await.expect("asked to end the running attempt");
        drop(first);
        assert!(second.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn an_unopenable_lock_is_not_a_run_still_going() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the locks folder goes.
        std::fs::write(dir.path().join("locks"), "").unwrap();
        let gate = Gate::new(None);
        let skipping = job(Concurrency::Skip);
        let refused = gate
            .admit(dir.path(), &skipping, Trigger::Schedule, || {})
            .await;
        assert!(matches!(refused, Err(SkipReason::LockUnopenable(_))));
        let wrapped = gate
            .admit(dir.path(), &skipping, Trigger::Exec, || {})
            .await
            .expect("a wrapped crontab line runs");
        assert!(wrapped.notes[0].starts_with("ran without its lock: "));
        // `replace` and `queue` end or wait for nothing they cannot see.
        for concurrency in [Concurrency::Replace, Concurrency::Queue] {
            let ended = std::cell::Cell::new(false);
            let refused = gate
                .admit(dir.path(), &job(concurrency), Trigger::Schedule, || {
                    ended.set(true)
                })
                .await;
            assert!(matches!(refused, Err(SkipReason::LockUnopenable(_))));
            assert!(!ended.get(), "no running attempt is ended");
        }
    }
}
