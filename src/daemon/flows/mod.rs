//! Driving flow runs: each run is a task that makes the moves
//! [`crate::flow::Progress`] decides, records each in the store before it
//! acts on it, starts the steps' jobs as ordinary runs, and takes the
//! operators' commands.
//!
//! A run's task holds no process of its own: a held flow is a row in the
//! store and a task waiting on a channel. At shutdown the tasks are simply
//! dropped; the next daemon picks every open run up from the store
//! ([`resume_open_runs`]), waiting for a step's run where it still goes and
//! never starting a step again that has a run.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use log::{Level, error, warn};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

mod driver;

use super::Shared;
use crate::config::Concurrency;
use crate::config::flow::Flow;
pub use crate::flow::Op;
use crate::flow::progress::{FlowStatus, Refused};
use crate::flow::{Known, Plan, Progress};
use crate::report::Trigger;
use crate::route::FlowLog;
use crate::store::{FlowRecord, FlowState, StepRuns, StoreError};

/// An operator's command, with who gave it and where the answer goes.
struct Command {
    op: Op,
    who: String,
    answer: oneshot::Sender<Result<FlowRecord, Refused>>,
}

/// The flow runs this daemon drives, by id: their flow, and where their
/// commands go (never held across an await); and whether the daemon is
/// stopping.
#[derive(Debug)]
pub struct Driving {
    runs: Mutex<HashMap<i64, (String, mpsc::Sender<Command>)>>,
    stopping: tokio::sync::watch::Sender<bool>,
}

impl Default for Driving {
    fn default() -> Driving {
        Driving {
            runs: Mutex::default(),
            stopping: tokio::sync::watch::Sender::new(false),
        }
    }
}

/// Counts a run out of [`Driving`] when its task ends, whichever way.
struct Enlisted<'d>(&'d Driving, i64);

impl Drop for Enlisted<'_> {
    fn drop(&mut self) {
        self.0.runs.lock().expect("driving").remove(&self.1);
    }
}

impl Driving {
    /// The daemon stops: every driver leaves its run as the store has it,
    /// for the next daemon, and starts nothing more.
    pub(super) fn stop(&self) {
        self.stopping.send_replace(true);
    }
    /// Counts run `id` of `flow` in, and gives where its commands arrive;
    /// not when it is driven here already (its id back), and with
    /// `alone`, only when no other run of the flow goes (else that run's
    /// id). One look and one entry under one lock: two starts at once
    /// cannot both pass, nor two drivers take up one run.
    fn enlist(&self, id: i64, flow: &str, alone: bool) -> Result<mpsc::Receiver<Command>, i64> {
        let mut driving = self.runs.lock().expect("driving");
        if driving.contains_key(&id) {
            return Err(id);
        }
        if alone && let Some((&other, _)) = driving.iter().find(|(_, (f, _))| f == flow) {
            return Err(other);
        }
        let (commands_tx, commands) = mpsc::channel(8);
        driving.insert(id, (flow.to_string(), commands_tx));
        Ok(commands)
    }
}

/// Why an operator's command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No flow run has that id.
    #[error("there is no flow run #{0}; `overnight flow history` lists them")]
    NoSuchRun(i64),
    /// The run is over.
    #[error(
        "flow run #{id} of `{flow}` has ended ({status}); start a new one with `overnight flow start {flow}`"
    )]
    Ended {
        /// The run.
        id: i64,
        /// Its flow.
        flow: String,
        /// How it ended.
        status: FlowStatus,
    },
    /// The run is open in the store, but this daemon does not drive it
    /// (its driver stopped on an error).
    #[error(
        "flow run #{id} of `{flow}` is {status}, but this daemon no longer drives it (see its log); restart the daemon to take it up"
    )]
    NotDriven {
        /// The run.
        id: i64,
        /// Its flow.
        flow: String,
        /// Where the store has it.
        status: FlowStatus,
    },
    /// The command makes no sense for the run as it stands.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a request to start a flow went.
#[derive(Debug)]
pub enum FlowStart {
    /// It started: the run's id.
    Started(i64),
    /// A run of it goes on and its `concurrency` is `skip`: that run's id.
    Busy(i64),
}

/// A step's run has ended.
struct StepDone {
    step: usize,
    known: Known,
    details: BTreeMap<String, Value>,
}

impl Shared {
    /// Starts a run of `flow`, recorded before any of its steps starts.
    pub async fn start_flow(
        self: &Arc<Self>,
        flow: &Flow,
        trigger: Trigger,
        scheduled_at: Option<DateTime<Utc>>,
    ) -> Result<FlowStart, StoreError> {
        let id = self.runner.recorder().next_run_id().await?;
        let alone = flow.concurrency == Concurrency::Skip;
        let commands = match self.driving.enlist(id, &flow.name, alone) {
            Ok(commands) => commands,
            Err(other) => return Ok(FlowStart::Busy(other)),
        };
        let plan = Plan::clone(&flow.plan);
        let run = FlowRecord {
            id,
            flow: flow.name.clone(),
            trigger,
            scheduled_at,
            started_at: Utc::now(),
            finished_at: None,
            status: FlowStatus::Running,
            state: FlowState {
                progress: Progress::new(plan.steps.len()),
                steps: vec![StepRuns::default(); plan.steps.len()],
                ..FlowState::default()
            },
            plan,
            host: self.runner.host().to_string(),
            driver: driver(),
        };
        if let Err(e) = driver::recorded(self.runner.recorder().start_flow(&run).await) {
            self.driving.runs.lock().expect("driving").remove(&id);
            return Err(e);
        }
        FlowLog::new(&run.flow, id).status(
            Level::Info,
            format_args!("flow run #{id} started ({})", trigger.as_str()),
        );
        self.runner.live().publish(crate::live::LiveEvent::Flow {
            flow_run_id: id,
            flow: run.flow.clone(),
            status: run.status,
            step: None,
            what: format!("flow run #{id} started ({})", trigger.as_str()),
            at: run.started_at,
        });
        self.drive(run, commands);
        Ok(FlowStart::Started(id))
    }

    /// Records scheduled fires of `flow` that do not run (`missed` while
    /// the daemon was down, `skipped` while a run of it went) as a flow
    /// run of that status whose steps are all skipped for `why`; says so
    /// on `flows::status` and to its triggers.
    pub async fn record_flow_not_run(
        &self,
        flow: &Flow,
        trigger: Trigger,
        scheduled_at: DateTime<Utc>,
        status: FlowStatus,
        why: String,
    ) -> Result<i64, StoreError> {
        let id = self.runner.recorder().next_run_id().await?;
        let plan = Plan::clone(&flow.plan);
        let mut progress = Progress::new(plan.steps.len());
        for state in &mut progress.steps {
            *state = crate::flow::StepState::Skipped(why.clone());
        }
        let now = Utc::now();
        let run = FlowRecord {
            id,
            flow: flow.name.clone(),
            trigger,
            scheduled_at: Some(scheduled_at),
            started_at: now,
            finished_at: Some(now),
            status,
            state: FlowState {
                progress,
                steps: vec![StepRuns::default(); plan.steps.len()],
                ..FlowState::default()
            },
            plan,
            host: self.runner.host().to_string(),
            driver: None,
        };
        driver::recorded(self.runner.recorder().start_flow(&run).await)?;
        let log = FlowLog::new(&run.flow, id);
        log.status(
            Level::Warn,
            format_args!("flow run #{id}: {}", crate::route::Escaped(&why)),
        );
        log.report(&run);
        let notifier = self.runner.notifier();
        notifier
            .flow_run(&self.config(), run, crate::notify::Moment::Final)
            .await;
        Ok(id)
    }

    /// Gives an operator's command to the flow run `id` this daemon
    /// drives; its state after, or why the command was refused.
    pub async fn flow_command(
        &self,
        id: i64,
        op: Op,
        who: String,
    ) -> Result<FlowRecord, CommandError> {
        let to = self
            .driving
            .runs
            .lock()
            .expect("driving")
            .get(&id)
            .map(|(_, to)| to.clone());
        let Some(to) = to else {
            return Err(self.not_driven(id).await);
        };
        let (answer, answered) = oneshot::channel();
        let command = Command { op, who, answer };
        if to.send(command).await.is_err() {
            return Err(self.not_driven(id).await);
        }
        match answered.await {
            Ok(answer) => Ok(answer?),
            // Its driver ended meanwhile: the store says how it stands.
            Err(_) => Err(self.not_driven(id).await),
        }
    }

    /// Why run `id` takes no command here, as the store has it.
    async fn not_driven(&self, id: i64) -> CommandError {
        let run = match self.runner.recorder().store().await {
            Ok(store) => store.flow_run(id).await,
            Err(e) => Err(e),
        };
        match run {
            Err(e) => CommandError::Store(e),
            Ok(None) => CommandError::NoSuchRun(id),
            Ok(Some(run)) if run.finished_at.is_some() => CommandError::Ended {
                id,
                flow: run.flow,
                status: run.status,
            },
            Ok(Some(run)) => CommandError::NotDriven {
                id,
                flow: run.flow,
                status: run.status,
            },
        }
    }

    /// Takes up every flow run of this host a dead daemon left open; with
    /// `rejoined` (this host registered again after it was declared
    /// dead), also those of this daemon that its drivers let go.
    pub(super) async fn resume_open_flows(
        self: &Arc<Self>,
        rejoined: bool,
    ) -> Result<(), StoreError> {
        for mut run in self.store.open_flow_runs().await? {
            // Another host's runs are its own, or taken over by a survivor.
            if run.host != self.runner.host() || !(rejoined || run.driver_gone()) {
                continue;
            }
            run.driver = driver();
            let Ok(commands) = self.driving.enlist(run.id, &run.flow, false) else {
                continue;
            };
            let why = if rejoined {
                "this host was declared dead and registered again"
            } else {
                "the daemon driving it stopped"
            };
            FlowLog::new(&run.flow, run.id).status(
                Level::Warn,
                format_args!("flow run #{} taken up again after {why}", run.id),
            );
            self.drive(run, commands);
        }
        Ok(())
    }

    /// Takes over the open flow runs host `dead` (declared dead) was
    /// driving, of the flows this host may drive, and drives them: their
    /// steps that were running there are closed as `lost` already, and
    /// the flows go on from there.
    pub(super) async fn take_over_flows(self: &Arc<Self>, dead: &str) -> Result<(), StoreError> {
        let config = self.config();
        let mine: Vec<String> = config
            .flows
            .iter()
            .filter(|f| f.placement.admits(&config.cluster))
            .map(|f| f.name.clone())
            .collect();
        let taken = self
            .store
            .take_flow_runs(dead, self.runner.host(), driver(), &mine)
            .await?;
        for run in taken {
            let Ok(commands) = self.driving.enlist(run.id, &run.flow, false) else {
                continue;
            };
            FlowLog::new(&run.flow, run.id).status(
                Level::Warn,
                format_args!(
                    "flow run #{} taken over from host `{dead}`, declared dead",
                    run.id
                ),
            );
            self.drive(run, commands);
        }
        Ok(())
    }

    /// Drives `run` in a task of its own until it is over.
    fn drive(self: &Arc<Self>, run: FlowRecord, commands: mpsc::Receiver<Command>) {
        let shared = Arc::clone(self);
        let stopping = self.driving.stopping.subscribe();
        tokio::spawn(async move {
            let id = run.id;
            let _enlisted = Enlisted(&shared.driving, id);
            let flow = run.flow.clone();
            match driver::Driver::new(&shared, run)
                .go(commands, stopping)
                .await
            {
                Ok(()) => {}
                Err(e @ StoreError::NotDriving(_)) => {
                    warn!(target: "overnight::daemon", "flow run #{id} of `{flow}`: {e}")
                }
                Err(e) => {
                    error!(target: "overnight::daemon", "flow run #{id} of `{flow}` stopped: {e}; the next daemon start takes it up")
                }
            }
        });
    }
}

/// Starts the flows trigger rules name (`start_flow:`), in this daemon.
#[derive(Debug)]
pub(super) struct Starter(pub(super) std::sync::Weak<Shared>);

impl crate::notify::StartsFlows for Starter {
    fn start_flow(
        &self,
        flow: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>> {
        let shared = self.0.upgrade();
        Box::pin(async move {
            let shared = shared.ok_or("the daemon is stopping")?;
            let Some(found) = shared.config().flow(&flow).cloned() else {
                return Err(format!("flow `{flow}` is no longer in the jobs file"));
            };
            match shared.start_flow(&found, Trigger::Rule, None).await {
                Ok(FlowStart::Started(id)) => Ok(format!("started flow run #{id} of `{flow}`")),
                Ok(FlowStart::Busy(other)) => Err(format!(
                    "flow `{flow}` not started: its run #{other} is going and its concurrency is skip"
                )),
                Err(e) => Err(format!("flow `{flow}` not started: {e}")),
            }
        })
    }
}

/// This process, as the driver of a flow run.
fn driver() -> Option<(u32, u64)> {
    let pid = std::process::id();
    crate::process::start_time(pid).map(|started| (pid, started))
}
