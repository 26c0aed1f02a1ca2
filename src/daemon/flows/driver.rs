//! One flow run being driven: its moves recorded, then made; its steps'
//! ends and the operators' commands taken in turn.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use log::Level;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Command, StepDone};
use crate::daemon::Shared;
use crate::flow::{Action, Known, Move, Place, Plan};
use crate::live::LiveEvent;
use crate::notify::Moment;
use crate::report::Trigger;
use crate::route::{Escaped, FlowLog};
use crate::runner::{Outcome, Unrun};
use crate::status::Status;
use crate::store::{FlowAction, FlowRecord, FlowSave, StoreError};

/// One flow run being driven.
pub(super) struct Driver<'s> {
    shared: &'s Arc<Shared>,
    /// In a cluster, the host's epoch when the run was last saved as
    /// this host's: its steps start only while it is current (a host
    /// declared dead meanwhile may have had the run taken over).
    epoch: Option<i64>,
    run: FlowRecord,
    /// The run's plan, shared with what it hands out (`run.plan` is the
    /// same, as recorded).
    plan: Arc<Plan>,
    log: FlowLog,
    /// Each ended step's `details`, for the steps that start after it.
    details: BTreeMap<String, BTreeMap<String, Value>>,
    done_tx: mpsc::UnboundedSender<StepDone>,
    done: mpsc::UnboundedReceiver<StepDone>,
    /// Whether the shared empty details file is written.
    none_written: bool,
    /// Steps changed since the last record (ended), recorded with the
    /// next moves.
    changed: Vec<usize>,
}

impl<'s> Driver<'s> {
    pub(super) fn new(shared: &'s Arc<Shared>, run: FlowRecord) -> Driver<'s> {
        let (done_tx, done) = mpsc::unbounded_channel();
        Driver {
            epoch: shared.epoch(),
            shared,
            plan: Arc::new(run.plan.clone()),
            log: FlowLog::new(&run.flow, run.id),
            run,
            details: BTreeMap::new(),
            done_tx,
            done,
            none_written: false,
            changed: Vec::new(),
        }
    }

    /// Says a move on `flows::status` and to live watchers, with the
    /// step it concerns.
    fn say(&self, level: Level, step: Option<&str>, what: std::fmt::Arguments<'_>) {
        self.log.status(level, what);
        self.tell_live(step, what);
    }

    /// Tells live watchers of a move, with the step it concerns.
    fn tell_live(&self, step: Option<&str>, what: std::fmt::Arguments<'_>) {
        let live = self.shared.runner.live();
        if live.watched() {
            live.publish(LiveEvent::Flow {
                flow_run_id: self.run.id,
                flow: self.run.flow.clone(),
                status: self.run.status,
                step: step.map(str::to_string),
                what: what.to_string(),
                at: Utc::now(),
            });
        }
    }

    fn steps(&self) -> &[crate::flow::Step] {
        &self.plan.steps
    }

    pub(super) async fn go(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        self.take_up().await?;
        loop {
            if *stopping.borrow() {
                return Ok(());
            }
            self.advance().await?;
            if self.run.state.progress.is_over() {
                return self.finish().await;
            }
            let hold_timeout = self.hold_deadline();
            tokio::select! {
                Some(done) = self.done.recv() => {
                    self.step_ended(done);
                    // Every end that is in already, then one move.
                    while let Ok(done) = self.done.try_recv() {
                        self.step_ended(done);
                    }
                }
                Some(command) = commands.recv() => self.command(command).await?,
                _ = stopping.changed() => {}
                () = sleep_until(hold_timeout) => self.hold_timed_out().await?,
            }
        }
    }

    /// For a run taken up again: the steps whose run was going wait for
    /// it to end (it is closed as lost or orphaned if its daemon died with
    /// it); the details of the steps that ended are read back. In a
    /// cluster, a step whose run was given out but never recorded (its
    /// driver's host was declared dead first) is started again: its start
    /// under the old epoch cannot be recorded any more, so it never runs.
    async fn take_up(&mut self) -> Result<(), StoreError> {
        let store = &self.shared.store;
        for i in 0..self.steps().len() {
            let Some(&run_id) = self.run.state.steps[i].runs.last() else {
                continue;
            };
            let report = store.report(run_id).await?;
            let name = self.steps()[i].name.clone();
            let running = self.run.state.progress.steps[i] == crate::flow::StepState::Running;
            if running && store.is_server() && store.run(run_id).await?.is_none() {
                self.run.state.progress.steps[i] = crate::flow::StepState::Waiting;
                self.changed.push(i);
                self.say(
                    Level::Warn,
                    Some(&name),
                    format_args!(
                        "step `{name}`: its run #{run_id} never started (its host was declared dead first); started again"
                    ),
                );
                continue;
            }
            match self.run.state.progress.steps[i] {
                crate::flow::StepState::Running => {
                    let store = store.clone();
                    let done = self.done_tx.clone();
                    tokio::spawn(async move {
                        let known = wait_for_run(&store, run_id).await;
                        let details = match store.report(run_id).await {
                            Ok(Some(report)) => report.details,
                            _ => BTreeMap::new(),
                        };
                        let _ = done.send(StepDone {
                            step: i,
                            known,
                            details,
                        });
                    });
                }
                crate::flow::StepState::Ended(_) => {
                    if let Some(report) = report {
                        self.details.insert(name, report.details);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Makes every move that can be made now: records them, then starts
    /// the steps.
    async fn advance(&mut self) -> Result<(), StoreError> {
        let plan = Arc::clone(&self.plan);
        let progress = &mut self.run.state.progress;
        let free = plan
            .max_parallel
            .map_or(usize::MAX, |max| max.saturating_sub(progress.running()));
        let moves = progress.advance(&plan.steps, free);
        let mut changed = std::mem::take(&mut self.changed);
        if moves.is_empty() && changed.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let mut starts = Vec::new();
        for m in &moves {
            let i = match m {
                Move::Start(i) | Move::Hold(i) | Move::Skip(i, _) => *i,
            };
            changed.push(i);
            self.run.state.steps[i].started_at = Some(now);
            if let Move::Start(i) = m {
                let run_id = self.shared.runner.recorder().next_run_id().await?;
                self.run.state.steps[*i].runs.push(run_id);
                starts.push((*i, run_id));
            }
        }
        self.save(&changed).await?;
        for m in &moves {
            self.say_move(&plan, m);
        }
        for (i, run_id) in starts {
            self.start_step(i, run_id)?;
        }
        Ok(())
    }

    fn say_move(&self, plan: &Plan, m: &Move) {
        let id = self.run.id;
        match m {
            Move::Start(i) => {
                let run = self.run.state.steps[*i].runs.last().copied().unwrap_or(0);
                let job = match &plan.steps[*i].action {
                    Action::Job(job) => job.as_str(),
                    Action::Hold(_) => "",
                };
                self.say(
                    Level::Info,
                    Some(&plan.steps[*i].name),
                    format_args!(
                        "step `{}` started: run #{run} of job `{job}`",
                        plan.steps[*i].name
                    ),
                );
            }
            Move::Skip(i, why) => self.say(
                Level::Info,
                Some(&plan.steps[*i].name),
                format_args!("step `{}` skipped: {why}", plan.steps[*i].name),
            ),
            Move::Hold(i) => {
                let text = match &plan.steps[*i].action {
                    Action::Hold(text) => text.as_str(),
                    Action::Job(_) => "",
                };
                self.say(
                    Level::Warn,
                    Some(&plan.steps[*i].name),
                    format_args!(
                        "held at step `{}`: {}; go on with `overnight flow resume {id}`",
                        plan.steps[*i].name,
                        Escaped(text)
                    ),
                );
            }
        }
    }

    /// Starts step `i`'s job as run `run_id`; a job no longer in the jobs
    /// file ends the step failed.
    fn start_step(&mut self, i: usize, run_id: i64) -> Result<(), StoreError> {
        let plan = Arc::clone(&self.plan);
        let step = &plan.steps[i];
        let Action::Job(job_name) = &step.action else {
            return Ok(());
        };
        let details = self.write_details(&step.name)?;
        let place = Arc::new(Place {
            flow: self.run.flow.clone(),
            flow_run_id: self.run.id,
            step: step.name.clone(),
            details,
        });
        let done = self.done_tx.clone();
        let config = self.shared.config();
        let Some(job) = config.job(job_name).cloned() else {
            // The run the step was given is recorded, failed, saying why:
            // the flow's report names it.
            let why = format!(
                "step `{}` of flow `{}`: job `{job_name}` is no longer in the jobs file",
                step.name, self.run.flow
            );
            self.say(
                Level::Error,
                Some(&step.name),
                format_args!("{}", Escaped(&why)),
            );
            let job = config.adhoc_job(job_name.clone(), Vec::new());
            let shared = Arc::clone(self.shared);
            tokio::spawn(async move {
                shared
                    .runner
                    .record_not_run_as(
                        run_id,
                        &job,
                        Unrun {
                            trigger: Trigger::Flow,
                            scheduled_at: None,
                            status: Status::Failed,
                            why: &why,
                        },
                    )
                    .await;
                let _ = done.send(StepDone {
                    step: i,
                    known: Known::Failed,
                    details: BTreeMap::new(),
                });
            });
            return Ok(());
        };
        let run = self.shared.launch_step(job, run_id, place, self.epoch);
        tokio::spawn(async move {
            let (known, details) = match run.await {
                Ok(Ok(Outcome::Ran(report))) => (Known::of_status(report.status), report.details),
                _ => (Known::Failed, BTreeMap::new()),
            };
            let _ = done.send(StepDone {
                step: i,
                known,
                details,
            });
        });
        Ok(())
    }

    /// `OVERNIGHT_FLOW_DETAILS` for step `step`: the details of every step
    /// ended so far that reported any, by step name. While none has, every
    /// step shares one file of `{}`.
    fn write_details(&mut self, step: &str) -> Result<std::path::PathBuf, StoreError> {
        let dir = self
            .shared
            .state_dir()
            .join("flows")
            .join(self.run.id.to_string());
        let reported: BTreeMap<&String, &BTreeMap<String, Value>> = self
            .details
            .iter()
            .filter(|(_, details)| !details.is_empty())
            .collect();
        let name = match reported.is_empty() {
            true if self.none_written => return Ok(dir.join("none.json")),
            true => "none.json".to_string(),
            false => format!("{step}.details.json"),
        };
        self.none_written |= reported.is_empty();
        let path = dir.join(name);
        let json = serde_json::to_vec_pretty(&reported).expect("details serialise");
        crate::state::create_dir(dir.parent().expect("flows"))
            .and_then(|()| crate::state::create_dir(&dir))
            .and_then(|()| crate::state::replace(&path, &json))
            .map_err(|source| StoreError::File {
                path: path.clone(),
                source,
            })?;
        Ok(path)
    }

    /// Takes a step's end in; it is recorded with the moves it leads to
    /// (a crash before then finds the step's run ended in the history).
    fn step_ended(&mut self, done: StepDone) {
        let plan = Arc::clone(&self.plan);
        let steps = &plan.steps;
        let name = steps[done.step].name.clone();
        self.run.state.steps[done.step].ended_at = Some(Utc::now());
        self.details.insert(name.clone(), done.details);
        let stops = self.run.state.progress.ended(steps, done.step, done.known);
        let run = self.run.state.steps[done.step]
            .runs
            .last()
            .copied()
            .unwrap_or(0);
        let level = match done.known {
            Known::Failed => Level::Error,
            Known::Warning => Level::Warn,
            _ => Level::Info,
        };
        self.say(
            level,
            Some(&name),
            format_args!("step `{name}` ended {} (run #{run})", done.known.word()),
        );
        if stops {
            self.say(
                Level::Warn,
                Some(&name),
                format_args!(
                    "held at step `{name}`: it ended {}; go on with `overnight flow resume {id}`, `retry {id} {name}`, `skip {id} {name}` or `abort {id}`",
                    done.known.word(),
                    id = self.run.id
                ),
            );
        }
        self.changed.push(done.step);
    }

    /// An operator's command: applied and recorded, or refused; a retried
    /// step starts with the next moves.
    async fn command(&mut self, command: Command) -> Result<(), StoreError> {
        let Command { op, who, answer } = command;
        let changed = match self.run.operate(&op, &who, Utc::now()) {
            Ok(changed) => changed,
            Err(why) => {
                let _ = answer.send(Err(why));
                return Ok(());
            }
        };
        self.save(&changed).await?;
        self.say(
            Level::Info,
            op.step(),
            format_args!("{} by {}", op.done(), Escaped(&who)),
        );
        let _ = answer.send(Ok(self.run.clone()));
        Ok(())
    }

    /// When a hold left alone ends the run, if the flow has a
    /// `hold_timeout` and is held.
    fn hold_deadline(&self) -> Option<tokio::time::Instant> {
        let timeout = self.plan.hold_timeout?;
        let since = self.run.state.held_since?;
        let left = (since + chrono::Duration::from_std(timeout).ok()?) - Utc::now();
        Some(tokio::time::Instant::now() + left.to_std().unwrap_or(Duration::ZERO))
    }

    async fn hold_timed_out(&mut self) -> Result<(), StoreError> {
        let timeout = self.plan.hold_timeout.unwrap_or_default();
        let why = format!(
            "the flow run was held longer than its hold_timeout ({})",
            humantime::format_duration(timeout)
        );
        let _ = self.run.state.progress.abort(&why);
        self.run.state.actions.push(FlowAction {
            at: Utc::now(),
            action: crate::flow::progress::Acted::HoldTimeout,
            step: None,
            who: "overnight".into(),
        });
        self.say(Level::Error, None, format_args!("{why}; aborted"));
        let all: Vec<usize> = (0..self.plan.steps.len()).collect();
        self.save(&all).await
    }

    /// Writes where the run stands, its status first brought up to date,
    /// with the rows of the steps in `changed`.
    ///
    /// In a cluster the save applies only while the run is this host's
    /// and the host alive under its epoch now; then the steps started
    /// next start under that epoch (a host registered again after a
    /// freeze drives on the runs no other host took over). A save that
    /// does not apply is [`StoreError::NotDriving`]: the driver lets go.
    async fn save(&mut self, changed: &[usize]) -> Result<(), StoreError> {
        let newly_held = self.run.settle();
        loop {
            let epoch = self.shared.epoch();
            let save = FlowSave::of(&self.run, changed).under(epoch);
            match self.shared.runner.recorder().save_flow(&save).await {
                Ok(true) => self.epoch = epoch,
                // The host registered again meanwhile: saved under the new epoch.
                Ok(false) if self.shared.epoch() != epoch => continue,
                Ok(false) => return Err(StoreError::NotDriving(self.run.id)),
                Err(e) => recorded(Err(e))?,
            }
            break;
        }
        if newly_held {
            self.tell(Moment::Held).await;
        }
        Ok(())
    }

    /// Asks the trigger rules watching the flow about the run at `moment`.
    async fn tell(&self, moment: Moment) {
        let config = self.shared.config();
        let notifier = self.shared.runner.notifier();
        notifier.flow_run(&config, self.run.clone(), moment).await;
    }

    async fn finish(mut self) -> Result<(), StoreError> {
        let finished = Utc::now();
        self.run.finished_at = Some(finished);
        self.save(&[]).await?;
        self.log.ended(&self.run);
        let took = (finished - self.run.started_at).num_milliseconds() as f64 / 1000.0;
        crate::metrics::flow_ended(&self.run.flow, self.run.status.as_str(), Some(took));
        self.tell_live(
            None,
            format_args!("flow run #{} ended {}", self.run.id, self.run.status),
        );
        self.tell(Moment::Final).await;
        let dir = self
            .shared
            .state_dir()
            .join("flows")
            .join(self.run.id.to_string());
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }
}

/// A record that waits in memory for the disk (a full disk) is recorded
/// as far as the flow goes: the journal writes it, before any later one,
/// once it can; the flow goes on meanwhile, as its jobs' runs do.
pub(super) fn recorded(result: Result<(), StoreError>) -> Result<(), StoreError> {
    match result {
        Err(e @ StoreError::Waiting { .. }) => {
            log::warn!(target: "overnight::daemon", "flow state waits for the disk: {e}");
            Ok(())
        }
        other => other,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How run `run_id` ended, once it has: it was going when its daemon
/// died, and is closed as lost or orphaned by this one.
async fn wait_for_run(store: &crate::store::Store, run_id: i64) -> Known {
    loop {
        match store.run(run_id).await {
            Ok(Some(run)) if run.status != Status::Running => {
                return Known::of_status(run.status);
            }
            // Never recorded: it did not start, and is not started again.
            Ok(None) => return Known::Failed,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
