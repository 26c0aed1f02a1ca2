//! One run, from start to record: the path of DESIGN §3 in one place.
//!
//! A fire first passes the run's [`gate`] (its own lock by its
//! `concurrency` policy, a place among `max_parallel`, its named locks
//! within `lock_wait`); one that cannot is recorded as `skipped` with the
//! [`SkipReason`]. Then the run is inserted as `running` and attempted
//! ([`attempt`]), again after a failure as its `retries` say; every attempt
//! is recorded, and the run ends with the last one's report. Each attempt's
//! events go to its [`sinks`].

mod attempt;
pub mod gate;
mod sinks;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

pub use self::gate::SkipReason;
use self::gate::{Admission, Gate};
use crate::capture;
use crate::config::Job;
pub use crate::exec::StopReason;
use crate::flow::Place;
use crate::live::Live;
use crate::notify::{Moment, Notifier};
use crate::report::{Report, RunHeader, Status, Trigger};
use crate::route::Router;
use crate::store::{Finished, NewRun, NotRun, Recorder, StoreError};

/// A scheduled fire to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fire {
    /// Its time.
    pub at: DateTime<Utc>,
    /// In a cluster, the host's epoch it was claimed under: the run
    /// starts only while it is still the host's.
    pub epoch: Option<i64>,
}

impl Fire {
    /// A fire of this host alone (no cluster).
    pub fn at(at: DateTime<Utc>) -> Fire {
        Fire { at, epoch: None }
    }
}

/// What asks for a run besides the job.
struct Request {
    trigger: Trigger,
    fire: Option<Fire>,
    /// The run's id, when the caller recorded it already (a flow step).
    run_id: Option<i64>,
    /// In a cluster, the host's epoch the run may start under (a fire's
    /// claim's, a flow driver's).
    fence: Option<i64>,
    /// The flow run it is a step of.
    flow: Option<Arc<Place>>,
}

/// How a request to run ended.
#[derive(Debug)]
pub enum Outcome {
    /// It ran; the report of its last attempt.
    Ran(Box<Report>),
    /// It did not run (`skipped`): the record's id and the reason.
    NotRun {
        /// The skipped run's id (0 when nothing was recorded).
        id: i64,
        /// Why.
        why: NotStarted,
    },
}

/// Why a request to run did not start a run.
#[derive(Debug)]
pub enum NotStarted {
    /// The gate refused the fire.
    Skipped(SkipReason),
    /// The command waiting for the gate was stopped first.
    Interrupted(StopReason),
    /// The daemon's answer, as its API gave it.
    Daemon(String),
    /// Its fire was claimed under an epoch its host no longer has: the
    /// cluster declared the host dead meanwhile, and another host takes
    /// the fire over. Nothing is recorded here.
    Fenced(StoreError),
    /// Its claimed fire's start was not confirmed in time: the database
    /// could not be reached. Nothing ran; the daemon claims the fire
    /// again once the database answers.
    Unconfirmed(StoreError),
}

impl fmt::Display for NotStarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotStarted::Skipped(why) => write!(f, "skipped: {why}"),
            NotStarted::Interrupted(why) => {
                write!(f, "not started: {why} while it waited to start")
            }
            NotStarted::Daemon(said) => f.write_str(said),
            NotStarted::Fenced(why) | NotStarted::Unconfirmed(why) => {
                write!(f, "not started: {why}")
            }
        }
    }
}

impl Outcome {
    /// The status it ended with.
    pub fn status(&self) -> Status {
        match self {
            Outcome::Ran(report) => report.status,
            Outcome::NotRun { .. } => Status::Skipped,
        }
    }
}

/// The runs going on, by run id: job name and the handle that stops it.
/// Never held across an await.
type Active = Mutex<HashMap<i64, ActiveRun>>;

/// A run going on.
#[derive(Debug)]
struct ActiveRun {
    job: String,
    /// Ends it when it carries a reason.
    stop: watch::Sender<Option<StopReason>>,
}

/// In a cluster, how a job's runs on the other hosts are ended (for
/// `concurrency: replace`): set by the daemon, which reaches their hosts.
#[derive(Clone, Default)]
struct EndsElsewhere(Arc<std::sync::OnceLock<Arc<EndElsewhere>>>);

/// Ends the runs of the job of this name on the other hosts.
type EndElsewhere = dyn Fn(&str) + Send + Sync;

impl std::fmt::Debug for EndsElsewhere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "EndsElsewhere(set)"
        } else {
            "EndsElsewhere"
        })
    }
}

/// Runs jobs and records them.
#[derive(Clone, Debug)]
pub struct Runner {
    recorder: Recorder,
    state_dir: Arc<PathBuf>,
    host: Arc<str>,
    /// This process's start time, recorded with its runs.
    started: Option<u64>,
    gate: Arc<Gate>,
    active: Arc<Active>,
    notifier: Notifier,
    /// Where runs' starts, progress and ends are told to watchers.
    live: Live,
    /// Said as warnings of every run (a configuration `exec` could not use).
    notes: Arc<[String]>,
    /// How long a cluster's fire waits for the database to confirm its
    /// claim before it is given up (half the host timeout).
    fence_patience: std::time::Duration,
    /// In a cluster, how a replaced job's runs on other hosts are ended.
    ends_elsewhere: EndsElsewhere,
}

impl Runner {
    /// A runner recording into `recorder` (a store, or a journal), keeping
    /// capture files and locks in `state_dir`, running at most
    /// `max_parallel` jobs at once.
    pub fn new(
        recorder: impl Into<Recorder>,
        state_dir: PathBuf,
        max_parallel: Option<usize>,
    ) -> Runner {
        let recorder = recorder.into();
        let state_dir = Arc::new(state_dir);
        Runner {
            notifier: Notifier::new(recorder.clone(), Arc::clone(&state_dir)),
            recorder,
            state_dir,
            host: crate::process::hostname().into(),
            started: crate::process::start_time(std::process::id()),
            gate: Arc::new(Gate::new(max_parallel)),
            active: Arc::default(),
            live: Live::default(),
            notes: Arc::default(),
            fence_patience: std::time::Duration::ZERO,
            ends_elsewhere: EndsElsewhere::default(),
        }
    }

    /// In a cluster: `end` ends the runs of a job on the other hosts, for
    /// a run of it with `concurrency: replace` (the first setting holds).
    pub fn ends_elsewhere_with(&self, end: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.ends_elsewhere.0.set(Arc::new(end));
    }

    /// The runner, saying `notes` as warnings of each of its runs.
    pub fn noting(self, notes: Vec<String>) -> Runner {
        Runner {
            notes: notes.into(),
            ..self
        }
    }

    /// Where it keeps capture files and locks.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// The host name it records.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// How many runs are going.
    pub fn running(&self) -> usize {
        self.active.lock().expect("active runs").len()
    }

    /// Ends every running attempt, for `reason`.
    pub fn stop_all(&self, reason: StopReason) {
        for run in self.active.lock().expect("active runs").values() {
            let _ = run.stop.send(Some(reason.clone()));
        }
    }

    /// Ends run `run_id`'s attempt (and its retries), for `reason`;
    /// whether it was running here.
    pub fn stop_run(&self, run_id: i64, reason: StopReason) -> bool {
        match self.active.lock().expect("active runs").get(&run_id) {
            Some(run) => run.stop.send(Some(reason)).is_ok(),
            None => false,
        }
    }

    /// Ends the running attempts of `job`, for `reason`.
    fn stop_job(&self, job: &str, reason: StopReason) {
        for run in self.active.lock().expect("active runs").values() {
            if run.job == job {
                let _ = run.stop.send(Some(reason.clone()));
            }
        }
    }

    /// Where it records runs.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Where its runs are told to watchers.
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// Delivers the triggers of its runs.
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// The runner, taking its locks across a cluster's hosts too.
    pub fn across(self, locks: crate::lock::ClusterLocks) -> Runner {
        Runner {
            gate: Arc::new(self.gate.across(locks)),
            ..self
        }
    }

    /// The runner of host `cluster.host`, recording its runs under that
    /// name.
    pub fn on_host(self, cluster: &crate::config::cluster::Cluster) -> Runner {
        Runner {
            host: cluster.host.as_str().into(),
            fence_patience: cluster.host_timeout / 2,
            ..self
        }
    }

    /// Runs `job` once (with its retries), to its end; `fire` for a
    /// scheduled fire.
    pub async fn run(
        &self,
        job: &Job,
        trigger: Trigger,
        fire: Option<Fire>,
    ) -> Result<Outcome, StoreError> {
        let request = Request {
            trigger,
            fire,
            run_id: None,
            fence: fire.and_then(|f| f.epoch),
            flow: None,
        };
        self.run_as(job, request).await
    }

    /// Runs `job` once under `run_id`, an id taken with
    /// [`fresh_run_id`](Runner::fresh_run_id) (the caller answers with it
    /// before the run ends).
    pub async fn run_numbered(
        &self,
        job: &Job,
        trigger: Trigger,
        run_id: i64,
    ) -> Result<Outcome, StoreError> {
        let request = Request {
            trigger,
            fire: None,
            run_id: Some(run_id),
            fence: None,
            flow: None,
        };
        self.run_as(job, request).await
    }

    /// Runs `job` as a step of a flow run, under the id the flow recorded
    /// for it before asking; in a cluster, only while `epoch` (the
    /// driver's) is its host's.
    pub async fn run_step(
        &self,
        job: &Job,
        run_id: i64,
        place: Arc<Place>,
        epoch: Option<i64>,
    ) -> Result<Outcome, StoreError> {
        let request = Request {
            trigger: Trigger::Flow,
            fire: None,
            run_id: Some(run_id),
            fence: epoch,
            flow: Some(place),
        };
        self.run_as(job, request).await
    }

    async fn run_as(&self, job: &Job, request: Request) -> Result<Outcome, StoreError> {
        let Request {
            trigger,
            fire,
            run_id,
            fence,
            flow,
        } = request;
        let scheduled_at = fire.map(|f| f.at);
        let replace = || {
            self.stop_job(&job.name, StopReason::Replaced);
            if let Some(end) = self.ends_elsewhere.0.get() {
                end(&job.name);
            }
        };
        let mut admission = match self
            .gate
            .admit(&self.state_dir, job, trigger, replace)
            .await
        {
            Ok(admission) => admission,
            Err(why) => {
                let why = NotStarted::Skipped(why);
                let said = why.to_string();
                let id = match run_id {
                    Some(id) => id,
                    None => self.recorder.next_run_id().await?,
                };
                let unrun = Unrun {
                    trigger,
                    scheduled_at,
                    status: Status::Skipped,
                    why: &said,
                };
                self.record_not_run_as(id, job, unrun).await;
                return Ok(Outcome::NotRun { id, why });
            }
        };
        // Said in the run's report as warnings of its own.
        admission.notes.splice(0..0, self.notes.iter().cloned());

        let run_id = match run_id {
            Some(id) => id,
            None => self.fresh_run_id(job).await?,
        };
        let header = RunHeader {
            run_id,
            job: job.name.clone(),
            attempt: 1,
            trigger,
            scheduled_at,
            started_at: Utc::now(),
            host: self.host.to_string(),
            capture: capture::path_for(&self.state_dir, &job.name, run_id),
            flow,
        };
        // The job runs even when its bookkeeping cannot be written (a full
        // disk): the first failure is kept and said in the report.
        let mut unrecorded = None;
        let mut new_run = self.new_run(&header, &admission);
        new_run.epoch = fence;
        match self.start_claimed(&new_run).await {
            // Another host runs this fire, or this one claims it again
            // later: nothing is recorded or run here now.
            Err(e @ (StoreError::Fenced(_) | StoreError::Unconfirmed { .. })) => {
                log::warn!(target: "overnight::runner", "fire of `{}` at {}: {e}", job.name, crate::store::time_text(header.scheduled_at.unwrap_or(header.started_at)));
                let why = match e {
                    StoreError::Fenced(_) => NotStarted::Fenced(e),
                    _ => NotStarted::Unconfirmed(e),
                };
                return Ok(Outcome::NotRun { id: 0, why });
            }
            started => note_unrecorded(&mut unrecorded, run_id, started),
        }
        let (stop_tx, stop) = watch::channel(None);
        let active = ActiveRun {
            job: job.name.clone(),
            stop: stop_tx,
        };
        self.active
            .lock()
            .expect("active runs")
            .insert(run_id, active);

        let mut attempt = 1;
        let mut report = loop {
            let report = self
                .attempt(job, &header, attempt, &admission, stop.clone())
                .await;
            let stopped = stop.borrow().is_some();
            let retry = job
                .retries
                .filter(|r| report.status == Status::Failed && attempt <= r.count && !stopped);
            let Some(retries) = retry else { break report };
            // Earlier attempts are kept apart; the run's row is the last.
            let recorded = self.recorder.record_attempt(&report).await;
            note_unrecorded(&mut unrecorded, run_id, recorded);
            self.notifier.moment(job, &report, Moment::Retrying);
            attempt += 1;
            let mut stop = stop.clone();
            tokio::select! {
                () = tokio::time::sleep(retries.delay_before(attempt)) => {}
                _ = async { stop.wait_for(Option::is_some).await.map(|_| ()) } => break report,
            }
        };
        // Out of the active runs whatever the store says: a run that could
        // not be recorded is closed as lost at the next start.
        self.active.lock().expect("active runs").remove(&run_id);
        let closed_before = match self.recorder.finish_run(&report).await {
            Ok(Finished::Recorded) => None,
            Ok(Finished::ClosedBefore(record)) => Some(record),
            Err(e) => {
                note_unrecorded(&mut unrecorded, run_id, Err(e));
                None
            }
        };
        if let Some(why) = unrecorded {
            report.details.insert(UNRECORDED.into(), why.into());
        }
        crate::metrics::run_ended(
            &report.job,
            report.status.as_str(),
            report.duration_ms as f64 / 1000.0,
        );
        match closed_before {
            // Its triggers were told of that end by whoever closed it.
            Some(record) => {
                let why = format!(
                    "the history keeps it as {}: {}",
                    record.status,
                    record
                        .summary
                        .as_deref()
                        .unwrap_or("closed by another host")
                );
                log::warn!(target: "overnight::runner", "run #{run_id} of `{}` ended here as {}, but was closed before; {why}", job.name, report.status);
                report.details.insert(UNRECORDED.into(), why.into());
                // What a flow (or `run`) goes on from is what the history says.
                report.status = record.status;
            }
            None => self.notifier.moment(job, &report, Moment::Final),
        }
        Ok(Outcome::Ran(Box::new(report)))
    }

    /// Records `run` as started. A cluster's fire (with an epoch) starts
    /// only once the database says its epoch is current: while the
    /// database cannot be reached, the start is tried again for up to
    /// half the cluster's host timeout, the time within which the others
    /// cannot have declared this host dead and taken the fire over; past
    /// it, the start is given up as [`StoreError::Unconfirmed`]: nothing
    /// runs, and the daemon claims the fire again once the database
    /// answers (the claim is fenced by the epoch too).
    async fn start_claimed(&self, run: &NewRun) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + self.fence_patience;
        loop {
            match self.recorder.start_run(run).await {
                Err(e) if run.epoch.is_some() && !matches!(e, StoreError::Fenced(_)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(StoreError::Unconfirmed {
                            host: run.host.clone(),
                            why: e.to_string(),
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                started => return started,
            }
        }
    }

    /// The next run id. A run-id file restored from a backup hands out ids
    /// again: the history mends that at its next opening, but a capture
    /// file of the same job and id must not be overwritten meanwhile.
    pub async fn fresh_run_id(&self, job: &Job) -> Result<i64, StoreError> {
        let mut run_id = self.recorder.next_run_id().await?;
        while run_id > 0 && capture::path_for(&self.state_dir, &job.name, run_id).exists() {
            log::warn!(target: "overnight::runner", "run id {run_id} of `{}` was used already (is `last-run-id` older than the history?); taking the next", job.name);
            run_id = self.recorder.next_run_id().await?;
        }
        Ok(run_id)
    }

    /// The run's row as it starts.
    fn new_run(&self, header: &RunHeader, admission: &Admission) -> NewRun {
        NewRun {
            id: header.run_id,
            job: header.job.clone(),
            trigger: header.trigger,
            scheduled_at: header.scheduled_at,
            started_at: header.started_at,
            host: header.host.clone(),
            pid: std::process::id(),
            runner_started: self.started,
            locks: admission.specs(),
            capture: header.capture.clone(),
            flow_step: header
                .flow
                .as_ref()
                .map(|place| (place.flow_run_id, place.step.clone())),
            epoch: None,
        }
    }

    /// Records a fire that did not run (`skipped`, `missed`): in the store,
    /// on the job's status target, and to its triggers. Returns its id.
    pub async fn record_not_run(&self, job: &Job, unrun: Unrun<'_>) -> Result<i64, StoreError> {
        let id = self.recorder.next_run_id().await?;
        self.record_not_run_as(id, job, unrun).await;
        Ok(id)
    }

    /// Records a fire that did not run under the id `id` (given out
    /// already: a flow step's whose job is gone).
    pub async fn record_not_run_as(&self, id: i64, job: &Job, unrun: Unrun<'_>) {
        let Unrun {
            trigger,
            scheduled_at,
            status,
            why,
        } = unrun;
        let recorded = self
            .recorder
            .record_not_run(&NotRun {
                id,
                job: job.name.clone(),
                trigger,
                scheduled_at,
                at: Utc::now(),
                status,
                why: why.to_string(),
                host: self.host.to_string(),
                pid: std::process::id(),
            })
            .await;
        note_unrecorded(&mut None, id, recorded);
        crate::metrics::not_run(&job.name, status.as_str());
        Router::new(&job.name, id, 1, job.stderr_level).not_run(status, scheduled_at, why);
        let header = RunHeader {
            scheduled_at,
            host: self.host.to_string(),
            capture: capture::path_for(&self.state_dir, &job.name, id),
            ..RunHeader::now(id, &job.name, trigger)
        };
        let report = Report::synthetic(&header, status, why);
        self.notifier.moment(job, &report, Moment::Final);
    }
}

/// A fire that did not run, as [`Runner::record_not_run`] records it.
#[derive(Clone, Copy, Debug)]
pub struct Unrun<'a> {
    /// What would have started it.
    pub trigger: Trigger,
    /// The fire time, for scheduled fires.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// `skipped`, `missed`, or `failed` (a flow step's job that is gone).
    pub status: Status,
    /// Why it did not run.
    pub why: &'a str,
}

/// The report detail that says why a run is not (yet) in the history.
const UNRECORDED: &str = "record_error";

/// Keeps the first failure to record run `id`, and says it in the daemon's
/// log.
fn note_unrecorded(first: &mut Option<String>, id: i64, recorded: Result<(), StoreError>) {
    if let Err(e) = recorded {
        log::error!(target: "overnight::runner", "run #{id}: {e}");
        first.get_or_insert_with(|| e.to_string());
    }
}
