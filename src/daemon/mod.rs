//! The daemon: the scheduler, the dispatcher, reload and shutdown.
//!
//! [`run`] takes everything a test needs to inject: the validated config,
//! a bound listener (port 0 in tests, no races), and the future that asks it
//! to stop. Deadlines sit in a [`TimerQueue`]; the loop sleeps until the
//! first one, a reload, or shutdown — it never polls. Due jobs run
//! concurrently as tracked tasks. SIGHUP (or `POST /api/reload`) reloads the
//! jobs file and the log4rs file together, keeping both old ones when either
//! new one is invalid. At shutdown scheduling stops, running jobs get the
//! grace period, then their process groups are ended and every run's end is
//! recorded before `run` returns.

pub mod api;
mod cluster;
mod dispatch;
pub mod flows;
pub mod info;
pub(crate) mod recover;
mod relay;
pub mod systemd;

use std::future::Future;
use std::sync::{Arc, RwLock};

use chrono::Utc;
use log::{error, info, warn};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};

use crate::config::{Config, ConfigError, Job};
use crate::inflight::Inflight;
use crate::lock::DaemonLock;
use crate::report::Trigger;
use crate::route;
use crate::runner::{Outcome, Runner, StopReason};
use crate::schedule::clock::{Clock, SystemClock};
use crate::schedule::scheduler::{Scheduler, Timing};
use crate::store::{Recorder, Store, StoreError};
use info::DaemonInfo;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The jobs file or the log4rs file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The run history could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The API may not be served as the jobs file says (beyond loopback
    /// without a token or TLS, a token's variable unset).
    #[error("{0}")]
    Refused(String),
    /// Another daemon holds the state directory.
    #[error("{0}")]
    AlreadyRunning(String),
    /// The state directory could not be written.
    #[error("cannot write the daemon's state in `{}`: {source}", dir.display())]
    State {
        /// The state directory.
        dir: std::path::PathBuf,
        /// The reason.
        source: std::io::Error,
    },
}

/// What the scheduler, the API and the runs share.
#[derive(Debug)]
pub struct Shared {
    /// The configuration in force; never held across an await.
    config: RwLock<Arc<Config>>,
    /// Runs jobs and records them.
    pub runner: Runner,
    /// The run history the runner records into.
    pub store: Store,
    inflight: Arc<Inflight>,
    /// Asks the scheduler to reload.
    reload: Notify,
    /// The token state-changing API calls must present.
    pub token: String,
    /// The flow runs this daemon drives.
    driving: flows::Driving,
    /// In a cluster, this host's epoch: fires are claimed under it.
    /// 0 with SQLite (one host, no claims).
    epoch: std::sync::atomic::AtomicI64,
}

impl Shared {
    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().expect("config lock"))
    }

    /// Where the store, the capture files and the flows' files are.
    pub fn state_dir(&self) -> &std::path::Path {
        self.runner.state_dir()
    }

    /// Starts a run of `job` as a tracked task; the run goes on to its end
    /// even if the caller stops waiting.
    pub fn launch(
        self: &Arc<Self>,
        job: Arc<Job>,
        trigger: Trigger,
        fire: Option<crate::runner::Fire>,
    ) -> tokio::task::JoinHandle<Result<Outcome, StoreError>> {
        self.track(job, move |runner, job| async move {
            runner.run(&job, trigger, fire).await
        })
    }

    /// Starts a run of `job` under `run_id`, taken with
    /// [`Runner::fresh_run_id`], as a tracked task.
    pub fn launch_numbered(
        self: &Arc<Self>,
        job: Arc<Job>,
        trigger: Trigger,
        run_id: i64,
    ) -> tokio::task::JoinHandle<Result<Outcome, StoreError>> {
        self.track(job, move |runner, job| async move {
            runner.run_numbered(&job, trigger, run_id).await
        })
    }

    /// Starts step `place` of a flow run: `job` as run `run_id`, tracked
    /// like any run.
    pub fn launch_step(
        self: &Arc<Self>,
        job: Arc<Job>,
        run_id: i64,
        place: Arc<crate::flow::Place>,
        epoch: Option<i64>,
    ) -> tokio::task::JoinHandle<Result<Outcome, StoreError>> {
        self.track(job, move |runner, job| async move {
            runner.run_step(&job, run_id, place, epoch).await
        })
    }

    /// In a cluster, this host's epoch now; `None` without one.
    pub fn epoch(&self) -> Option<i64> {
        Some(self.epoch.load(std::sync::atomic::Ordering::SeqCst)).filter(|&e| e != 0)
    }

    /// Runs `run` for `job` as a tracked task.
    fn track<F>(
        self: &Arc<Self>,
        job: Arc<Job>,
        run: impl FnOnce(Runner, Arc<Job>) -> F + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<Outcome, StoreError>>
    where
        F: Future<Output = Result<Outcome, StoreError>> + Send + 'static,
    {
        let guard = self.inflight.enter();
        let runner = self.runner.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let name = job.name.clone();
            let result = run(runner, job).await;
            if let Err(e) = &result {
                error!(target: "overnight::daemon", "run of `{name}` not recorded: {e}");
            }
            result
        })
    }

    /// Claims `fires` of `key` (a job's name, a flow's key) for this host;
    /// the ones it got, and the epoch to start them under. Without a
    /// cluster every fire is this host's. When the database cannot be
    /// reached nothing is got, and the fires are claimed again, late,
    /// once it can (by the dispatcher).
    pub async fn claim(
        &self,
        key: &str,
        fires: &[chrono::DateTime<Utc>],
    ) -> Result<(Vec<chrono::DateTime<Utc>>, Option<i64>), StoreError> {
        let Some(epoch) = self.epoch() else {
            return Ok((fires.to_vec(), None));
        };
        let host = self.runner.host();
        let got = self.store.claim_fires(key, fires, host, epoch).await?;
        Ok((got, Some(epoch)))
    }

    /// Marks done the claims of `fires` of `key` that no run row will
    /// mark, as [`Store::settle_fires`]; those this host still holds
    /// under `epoch`, to be recorded or started. Without a cluster, all.
    pub async fn settle(
        &self,
        key: &str,
        fires: &[chrono::DateTime<Utc>],
        epoch: Option<i64>,
    ) -> Vec<chrono::DateTime<Utc>> {
        let Some(epoch) = epoch else {
            return fires.to_vec();
        };
        match self
            .store
            .settle_fires(key, fires, self.runner.host(), epoch)
            .await
        {
            Ok(settled) => settled,
            Err(e) => {
                error!(target: "overnight::daemon", "{} fire(s) of `{key}` neither started nor recorded: the database did not confirm this host's claim: {e}", fires.len());
                Vec::new()
            }
        }
    }

    /// Asks the scheduler to reload the jobs and log4rs files.
    pub fn request_reload(&self) {
        self.reload.notify_one();
    }
}

/// Loads the routing a config names, or the console routing.
pub fn routing(config: &Config) -> Result<route::Routing, ConfigError> {
    match &config.log_config {
        Some(path) => route::load(path),
        None => Ok(route::console_config()),
    }
}

/// Runs the daemon on the machine's clock until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    run_with_clock(Arc::new(SystemClock), config, listener, shutdown).await
}

/// Runs the daemon on `clock` until `shutdown` completes.
pub async fn run_with_clock(
    clock: Arc<dyn Clock>,
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let state_error = |source| DaemonError::State {
        dir: config.state_dir.clone(),
        source,
    };
    let addr = listener.local_addr().map_err(state_error)?;
    let api = &config.api;
    if let Some(why) = api.refusal(addr).or_else(|| api.unusable_token()) {
        return Err(DaemonError::Refused(why));
    }
    let tls =
        api::tls_acceptor(api).map_err(|e| DaemonError::Refused(format!("`api.tls`: {e}")))?;
    crate::state::prepare(&config.state_dir).map_err(state_error)?;
    let daemon_lock = {
        let dir = config.state_dir.clone();
        tokio::task::spawn_blocking(move || DaemonLock::take(&dir))
            .await
            .expect("taking the daemon lock does not panic")
            .map_err(DaemonError::AlreadyRunning)?
    };
    route::install(routing(&config)?);
    let store = Store::open_at(&config.place()).await?;
    let membership = store
        .join(crate::store::HostCard {
            name: config.cluster.host.clone(),
            tags: config.cluster.tags.clone(),
            api: config.cluster.api_url(addr, tls.is_some()),
            timeout: config.cluster.host_timeout,
        })
        .await
        .map_err(|e| match e {
            StoreError::Server(why) => DaemonError::AlreadyRunning(why),
            e => DaemonError::Store(e),
        })?;
    // Armed first: the deadlines do not wait for the bookkeeping below.
    let scheduler = Scheduler::new(Arc::clone(&clock), timings(&config));
    info!(target: "overnight::daemon", "scheduler armed: {} job(s) on a clock", scheduler.armed());

    let card = DaemonInfo::new(addr).map_err(state_error)?;
    card.write(&config.state_dir).map_err(state_error)?;

    let state_dir = config.state_dir.clone();
    let grace = config.shutdown_grace;
    // With SQLite, runs are journaled and folded in the background: a job
    // never waits on the database to start or to end (crate::store::journal).
    let (recorder, folding) = Recorder::for_daemon(&store)?;
    let mut runner = Runner::new(recorder, config.state_dir.clone(), config.max_parallel)
        .on_host(&config.cluster);
    // In a cluster, locks are taken across hosts on the membership's
    // session, and the jobs holding them are guarded by the fence.
    let cluster = match membership {
        Some(membership) => {
            let fence = crate::fence::Fence::start(config.cluster.host_timeout / 2)
                .map(Arc::new)
                .map_err(|e| {
                    DaemonError::Refused(format!(
                        "cluster: the fence process cannot be started: {e}"
                    ))
                })?;
            let (requests, served) = tokio::sync::mpsc::unbounded_channel();
            runner = runner.across(crate::lock::ClusterLocks::new(requests, Arc::clone(&fence)));
            Some((membership, fence, served))
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        runner,
        store: store.clone(),
        config: RwLock::new(Arc::new(config)),
        inflight: Arc::default(),
        reload: Notify::new(),
        token: card.token.clone(),
        driving: Default::default(),
        epoch: cluster.as_ref().map_or(0, |(m, ..)| m.epoch()).into(),
    });
    let (cluster_stop_tx, cluster_stop_rx) = watch::channel(false);
    let relays = match cluster {
        Some(_) => relay::start(
            &store,
            shared.runner.live(),
            &shared.config().cluster.host,
            &cluster_stop_rx,
        ),
        None => Vec::new(),
    };
    let heartbeat = cluster.map(|(membership, fence, served)| {
        tokio::spawn(cluster::keep_alive(
            Arc::clone(&shared),
            membership,
            fence,
            served,
            cluster_stop_rx,
        ))
    });

    shared
        .runner
        .notifier()
        .starts_flows_with(Arc::new(flows::Starter(Arc::downgrade(&shared))));
    if shared.store.is_server() {
        let weak = Arc::downgrade(&shared);
        shared.runner.ends_elsewhere_with(move |job| {
            if let Some(shared) = weak.upgrade() {
                let job = job.to_string();
                tokio::spawn(async move { api::end_elsewhere(&shared, &job).await });
            }
        });
    }
    // Before the API answers: a run it started now would be this daemon's
    // own, and must not be taken for an earlier daemon's.
    recover::abandoned_runs(&shared).await?;
    shared.resume_open_flows(false).await?;
    let (server_stop_tx, server_stop_rx) = watch::channel(false);
    let server = api::Api::start(listener, Arc::clone(&shared), tls, server_stop_rx);
    info!(target: "overnight::daemon", "started: pid {}, API on http://{addr}, {} job(s)", card.pid, shared.config().jobs.len());

    warn_if_few_descriptors();
    crate::process::adopt_and_reap_orphans();
    let config = shared.config();
    store
        .sync_definitions(&config.cluster.host, &config.jobs, &config.flows)
        .await?;
    dispatch::catch_up_at_start(&shared, &config, clock.now()).await?;
    dispatch::reboot_jobs(&shared, &config).await;
    drop(config);
    let pruning = tokio::spawn(prune_daily(Arc::clone(&shared)));
    let watchdog = systemd::watchdog_every().map(|every| {
        tokio::spawn(async move {
            loop {
                systemd::notify("WATCHDOG=1");
                tokio::time::sleep(every).await;
            }
        })
    });
    crate::process::release_free_memory();
    systemd::notify(&format!("READY=1\nMAINPID={}", std::process::id()));
    schedule(&shared, scheduler, shutdown).await;
    systemd::notify("STOPPING=1");
    // Flows decide nothing more: a step's end during the grace period is
    // in the history, where the next daemon takes it up.
    shared.driving.stop();

    let running = shared.inflight.count();
    if running > 0 && shared.config().shutdown == crate::config::Shutdown::Terminate {
        info!(target: "overnight::daemon", "stopping: ending {running} running job(s) (shutdown: terminate)");
        shared.runner.stop_all(StopReason::Shutdown);
    } else if running > 0 {
        info!(target: "overnight::daemon", "stopping: waiting up to {} for {running} running job(s); a second Ctrl-C or SIGTERM ends them now", humantime::format_duration(grace));
        if tokio::time::timeout(grace, shared.inflight.idle())
            .await
            .is_err()
        {
            warn!(target: "overnight::daemon", "grace period over: ending {} running job(s)", shared.inflight.count());
            shared.runner.stop_all(StopReason::Shutdown);
        }
    }
    shared.inflight.idle().await;
    shared.runner.notifier().settled().await;
    // Its runs all recorded: the others may take its unstarted fires over.
    let _ = cluster_stop_tx.send(true);
    for relay in relays {
        let _ = relay.await;
    }
    if let Some(heartbeat) = heartbeat
        && let Ok(membership) = heartbeat.await
    {
        membership.leave().await;
    }
    let _ = server_stop_tx.send(true);
    server.stopped().await;
    DaemonInfo::remove(&state_dir);
    if let Some(folding) = folding {
        folding.abort();
    }
    pruning.abort();
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    if let Err(e) = shared.runner.recorder().flush() {
        error!(target: "overnight::daemon", "runs not recorded at shutdown (they were waiting for the disk): {e}");
    }
    if let Err(e) = store.fold_journal().await {
        error!(target: "overnight::daemon", "journal not folded into the history at shutdown: {e}");
    }
    store.close().await;
    drop(daemon_lock);
    info!(target: "overnight::daemon", "stopped");
    route::flush();
    Ok(())
}

/// Each job's timing, by job id, then each flow's: the scheduler's id of
/// flow `i` is the number of jobs plus `i`.
fn timings(config: &Config) -> Vec<Option<Timing>> {
    config
        .jobs
        .iter()
        .map(|job| job.timing())
        .chain(config.flows.iter().map(|flow| flow.timing()))
        .collect()
}

/// The scheduler loop: fire due jobs, reload on request, until shutdown.
async fn schedule(
    shared: &Arc<Shared>,
    mut scheduler: Scheduler,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut hangup = signal(SignalKind::hangup()).ok();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(()) = recv_hangup(&mut hangup) => reload(shared, &mut scheduler).await,
            () = shared.reload.notified() => reload(shared, &mut scheduler).await,
            dues = scheduler.due() => {
                let config = shared.config();
                let now = scheduler.clock().now();
                for due in dues {
                    match config.jobs.get(due.job) {
                        Some(job) => dispatch::dispatch(shared, job, &due.fires, due.late, due.more, now).await,
                        None => {
                            let flow = &config.flows[due.job - config.jobs.len()];
                            dispatch::flow_fires(shared, flow, &due.fires, due.late, now).await;
                        }
                    }
                }
            }
        }
    }
}

async fn reload(shared: &Arc<Shared>, scheduler: &mut Scheduler) {
    let current = shared.config();
    let loaded =
        Config::load(&current.path).and_then(|new| routing(&new).map(|routing| (new, routing)));
    match loaded {
        Ok((mut new, routing)) => {
            if new.state_dir != current.state_dir {
                warn!(target: "overnight::daemon", "reload: `state_dir` changes only at restart; keeping `{}`", current.state_dir.display());
            }
            if new.store != current.store {
                warn!(target: "overnight::daemon", "reload: `store` changes only at restart; the history stays where it is");
            }
            if new.cluster != current.cluster {
                warn!(target: "overnight::daemon", "reload: `host`, `tags` and `cluster` change only at restart; this host goes on as `{}`", current.cluster.host);
                new.cluster = current.cluster.clone();
            }
            if new.listen != current.listen || new.api.tls != current.api.tls {
                warn!(target: "overnight::daemon", "reload: `listen` and `api.tls` change only at restart; the API goes on as it was");
            }
            if let Some(why) = new.api.unusable_token() {
                warn!(target: "overnight::daemon", "reload: {why}; that token opens nothing until it is set and the daemon restarted");
            }
            route::install(routing);
            let store = &shared.store;
            let scheduled = dispatch::scheduled_here(&new);
            let stored = store
                .sync_definitions(&new.cluster.host, &new.jobs, &new.flows)
                .await;
            let marked = store
                .mark_handled(&scheduled, scheduler.clock().now(), true)
                .await;
            if let Err(e) = stored.and(marked) {
                error!(target: "overnight::daemon", "reload: {e}");
            }
            info!(target: "overnight::daemon", "reloaded `{}`: {} job(s), {} flow(s)", new.path.display(), new.jobs.len(), new.flows.len());
            let new = Config {
                state_dir: current.state_dir.clone(),
                ..new
            };
            scheduler.rearm(timings(&new));
            *shared.config.write().expect("config lock") = Arc::new(new);
        }
        Err(e) => {
            error!(target: "overnight::daemon", "reload refused, keeping the running configuration:\n{e}");
        }
    }
}

async fn recv_hangup(hangup: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hangup {
        Some(h) => h.recv().await,
        None => std::future::pending().await,
    }
}

/// Applies the jobs file's `retention:` at start and every day after.
async fn prune_daily(shared: Arc<Shared>) {
    loop {
        let retention = shared.config().retention;
        match shared.store.prune(&retention).await {
            Ok(pruned) if pruned != crate::store::Pruned::default() => info!(
                target: "overnight::daemon",
                "pruned: {} capture file(s) ({} bytes), {} run(s) from the history",
                pruned.files, pruned.bytes, pruned.runs
            ),
            Ok(_) => {}
            Err(e) => warn!(target: "overnight::daemon", "retention not applied: {e}"),
        }
        tokio::time::sleep(crate::store::PRUNE_EVERY).await;
    }
}

/// Descriptors below this make a busy daemon run out: the API's
/// connections, and each running job's pipes, locks and capture file.
const FEW_DESCRIPTORS: u64 = 1024;

/// Says so at start when the open-file limit is low, with how to raise it.
fn warn_if_few_descriptors() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0
        && limit.rlim_cur < FEW_DESCRIPTORS
    {
        warn!(
            target: "overnight::daemon",
            "only {} open files allowed (`ulimit -n`): the API alone may hold up to {} connections, and each running job a few more; raise it to {FEW_DESCRIPTORS} or more (`LimitNOFILE=` in a systemd unit, `ulimit -n` in a shell)",
            limit.rlim_cur,
            api::MAX_CONNECTIONS
        );
    }
}
