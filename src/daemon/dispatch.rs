//! From due fires to runs: on time they run; late ones follow the job's
//! catch-up policy, and every fire not run is recorded as `missed`.
//!
//! In a cluster each fire is first claimed (`Shared::claim`): only the
//! host that got it runs or records it, and a job's fires are claimed
//! only by the hosts its `hosts:` and `tags:` admit. Fires the database
//! could not be asked about are claimed again, late, once it answers.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use log::{error, info};

use super::Shared;
use super::flows::FlowStart;
use crate::config::flow::Flow;
use crate::config::{Config, Job};
use crate::flow::progress::FlowStatus;
use crate::report::Trigger;
use crate::report::{Status, human_time};
use crate::runner::{Fire, NotStarted, Outcome, Unrun};
use crate::schedule::catchup::{self, MissReason, fires_between};
use crate::store::StoreError;
use crate::zone::Zone;

/// Runs or records one job's due fires, those this host claims.
pub async fn dispatch(
    shared: &Arc<Shared>,
    job: &Arc<Job>,
    fires: &[DateTime<Utc>],
    late: bool,
    more: bool,
    now: DateTime<Utc>,
) {
    if !job.placement.admits(&shared.config().cluster) {
        return; // another host's to run
    }
    match shared.claim(&job.name, fires).await {
        Ok(claimed) => run_claimed(shared, job, claimed, late, more, now).await,
        Err(e) => claim_later(shared, Due::Job(Arc::clone(job)), fires, more, e),
    }
}

/// Runs or records the fires of `job` this host claimed, under `epoch`.
async fn run_claimed(
    shared: &Arc<Shared>,
    job: &Arc<Job>,
    (fires, epoch): (Vec<DateTime<Utc>>, Option<i64>),
    late: bool,
    more: bool,
    now: DateTime<Utc>,
) {
    let fire = |at| Fire { at, epoch };
    if !late {
        for at in fires {
            launch_claimed(shared, job, Trigger::Schedule, fire(at));
        }
        return;
    }
    let mut plan = catchup::plan(&fires, now, job.catch_up, job.starting_deadline);
    // One `missed` row stands for them all: their claims are done first,
    // and only those this host still holds are recorded.
    let missed: Vec<DateTime<Utc>> = plan.missed.iter().map(|(at, _)| *at).collect();
    let settled = shared.settle(&job.name, &missed, epoch).await;
    plan.missed.retain(|(at, _)| settled.contains(at));
    if let Err(e) = record_missed(shared, job, &plan.missed, more).await {
        error!(target: "overnight::daemon", "missed fires of `{}` not recorded: {e}", job.name);
    }
    if !plan.run.is_empty() || !plan.missed.is_empty() {
        info!(
            target: "overnight::daemon",
            "`{}`: {} late fire(s): running {}, {} missed{}",
            job.name,
            fires.len(),
            plan.run.len(),
            plan.missed.len(),
            if more { " (and more not listed)" } else { "" }
        );
    }
    for at in plan.run {
        launch_claimed(shared, job, Trigger::CatchUp, fire(at));
    }
}

/// Starts the claimed `fire` of `job`. In a cluster, a start the database
/// could not be asked for (its run id) or did not confirm in time ran
/// nothing: the fire is claimed again once the database answers, and
/// dealt with as a late fire.
fn launch_claimed(shared: &Arc<Shared>, job: &Arc<Job>, trigger: Trigger, fire: Fire) {
    let run = shared.launch(Arc::clone(job), trigger, Some(fire));
    if fire.epoch.is_none() {
        return;
    }
    let (shared, job) = (Arc::clone(shared), Arc::clone(job));
    tokio::spawn(async move {
        let unstarted = match run.await {
            Ok(Ok(Outcome::NotRun {
                why: NotStarted::Unconfirmed(e),
                ..
            })) => e,
            Ok(Err(e)) if e.is_unreachable() => e,
            _ => return,
        };
        claim_later(&shared, Due::Job(job), &[fire.at], false, unstarted);
    });
}

/// What a fire is of.
enum Due {
    Job(Arc<Job>),
    Flow(Arc<Flow>),
}

/// How often fires whose claim failed are claimed again.
const CLAIM_AGAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The database could not be asked for `fires`: claims them again every
/// second until it answers, then deals with them as late fires (the
/// job's `catch_up` decides), so that a restart of PostgreSQL loses no
/// fire.
fn claim_later(shared: &Arc<Shared>, due: Due, fires: &[DateTime<Utc>], more: bool, e: StoreError) {
    let name = match &due {
        Due::Job(job) => job.name.clone(),
        Due::Flow(flow) => format!("flow `{}`", flow.name),
    };
    error!(target: "overnight::daemon", "{} fire(s) of `{name}` not claimed yet: {e}; trying again every {}", fires.len(), humantime::format_duration(CLAIM_AGAIN));
    let shared = Arc::clone(shared);
    let fires = fires.to_vec();
    let key = match &due {
        Due::Job(job) => job.name.clone(),
        Due::Flow(flow) => flow_key(&flow.name),
    };
    tokio::spawn(async move {
        let claimed = loop {
            tokio::time::sleep(CLAIM_AGAIN).await;
            match shared.claim(&key, &fires).await {
                Ok(claimed) => break claimed,
                Err(e) => {
                    log::debug!(target: "overnight::daemon", "fires of `{key}` still not claimed: {e}")
                }
            }
        };
        info!(target: "overnight::daemon", "{} fire(s) of `{name}` claimed now that the database answers", claimed.0.len());
        let now = Utc::now();
        match due {
            Due::Job(job) => run_claimed(&shared, &job, claimed, true, more, now).await,
            Due::Flow(flow) => start_claimed_flows(&shared, &flow, claimed, true, now).await,
        }
    });
}

/// Records the fires that were not run as one `missed` run: the first
/// one's time, and a reason that says how many, from when to when, and
/// why — a weekend of a five-minute job down is one row, one status
/// record, one trigger delivery.
async fn record_missed(
    shared: &Shared,
    job: &Job,
    missed: &[(DateTime<Utc>, MissReason)],
    more: bool,
) -> Result<(), StoreError> {
    let Some((first, _)) = missed.first() else {
        return Ok(());
    };
    shared
        .runner
        .record_not_run(
            job,
            Unrun {
                trigger: Trigger::Schedule,
                scheduled_at: Some(*first),
                status: Status::Missed,
                why: &missed_reason(missed, more, &job.timezone),
            },
        )
        .await?;
    Ok(())
}

/// "missed 576 fires, 2026-03-06 18:05:00 +00:00 to 2026-03-08 17:55:00
/// +00:00: the daemon was not running then (catch_up: last runs only the
/// latest)"; each distinct reason with its count when they differ.
fn missed_reason(missed: &[(DateTime<Utc>, MissReason)], more: bool, zone: &Zone) -> String {
    let mut reasons: Vec<(MissReason, usize)> = Vec::new();
    for (_, why) in missed {
        match reasons.iter_mut().find(|(r, _)| r == why) {
            Some((_, n)) => *n += 1,
            None => reasons.push((*why, 1)),
        }
    }
    let why = match reasons.as_slice() {
        [(only, _)] => only.to_string(),
        many => many
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect::<Vec<_>>()
            .join("; "),
    };
    let (first, last) = (missed[0].0, missed[missed.len() - 1].0);
    let count = missed.len();
    match (count, more) {
        (1, false) => format!("missed: {why}"),
        _ => format!(
            "missed {}{count} fires, {} to {}: {why}{}",
            if more { "at least " } else { "" },
            human_time(first, zone),
            human_time(last, zone),
            if more {
                " (later ones not counted)"
            } else {
                ""
            }
        ),
    }
}

/// Starts a flow's due fires: on time, each; late, as its `catch_up`
/// says (the others are recorded as one `missed` flow run). The fires are
/// marked handled first, so a daemon that dies meanwhile neither starts
/// nor records them again at its next start.
pub async fn flow_fires(
    shared: &Arc<Shared>,
    flow: &Arc<Flow>,
    fires: &[DateTime<Utc>],
    late: bool,
    now: DateTime<Utc>,
) {
    if !flow.placement.admits(&shared.config().cluster) {
        return; // another host's to drive
    }
    match shared.claim(&flow_key(&flow.name), fires).await {
        Ok(claimed) => start_claimed_flows(shared, flow, claimed, late, now).await,
        Err(e) => claim_later(shared, Due::Flow(Arc::clone(flow)), fires, false, e),
    }
}

/// Starts (or records as missed) the fires of `flow` this host claimed,
/// under `epoch`.
async fn start_claimed_flows(
    shared: &Arc<Shared>,
    flow: &Flow,
    (fires, epoch): (Vec<DateTime<Utc>>, Option<i64>),
    late: bool,
    now: DateTime<Utc>,
) {
    // A flow run's row is not a run's: its claims are done first, and
    // only those this host still holds are started or recorded.
    let key = flow_key(&flow.name);
    let fires = shared.settle(&key, &fires, epoch).await;
    let (run, missed) = if late {
        let plan = catchup::plan(&fires, now, flow.catch_up, None);
        (plan.run, plan.missed)
    } else {
        (fires.clone(), Vec::new())
    };
    if let Some(last) = fires.last()
        && let Err(e) = shared
            .store
            .mark_handled(&[key.as_str()], *last, false)
            .await
    {
        error!(target: "overnight::daemon", "fires of flow `{}` not marked handled: {e}", flow.name);
    }
    if let Some(&(first, _)) = missed.first() {
        let why = missed_reason(&missed, false, &flow.timezone);
        let recorded = shared
            .record_flow_not_run(flow, Trigger::Schedule, first, FlowStatus::Missed, why)
            .await;
        if let Err(e) = recorded {
            error!(target: "overnight::daemon", "missed fires of flow `{}` not recorded: {e}", flow.name);
        }
    }
    let trigger = if late {
        Trigger::CatchUp
    } else {
        Trigger::Schedule
    };
    for at in run {
        match shared.start_flow(flow, trigger, Some(at)).await {
            Ok(FlowStart::Started(_)) => {}
            Ok(FlowStart::Busy(other)) => {
                let why = format!(
                    "the fire of {} was skipped: flow run #{other} was still going (concurrency: skip)",
                    human_time(at, &flow.timezone)
                );
                let recorded = shared
                    .record_flow_not_run(flow, trigger, at, FlowStatus::Skipped, why)
                    .await;
                if let Err(e) = recorded {
                    error!(target: "overnight::daemon", "a skipped fire of flow `{}` not recorded: {e}", flow.name);
                }
            }
            Err(e) => error!(target: "overnight::daemon", "flow `{}` not started: {e}", flow.name),
        }
    }
}

/// The name a flow's schedule state is kept under, apart from the jobs'.
pub(super) fn flow_key(flow: &str) -> String {
    format!("flow:{flow}")
}

/// At start: deal with every fire missed since each job's last handled
/// one, then mark all scheduled jobs handled up to now.
pub async fn catch_up_at_start(
    shared: &Arc<Shared>,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let store = &shared.store;
    let handled = store.last_handled().await?;
    for job in &config.jobs {
        let Some(timing) = job.timing() else { continue };
        // A job seen for the first time has missed nothing.
        let Some(since) = handled.get(&job.name) else {
            continue;
        };
        let (fires, more) = fires_between(&timing.schedule, *since, now);
        if !fires.is_empty() {
            dispatch(shared, job, &fires, true, more, now).await;
        }
    }
    for flow in config.flows.iter() {
        let Some(timing) = flow.timing() else {
            continue;
        };
        let Some(since) = handled.get(&flow_key(&flow.name)) else {
            continue;
        };
        let (fires, _) = fires_between(&timing.schedule, *since, now);
        if !fires.is_empty() {
            flow_fires(shared, flow, &fires, true, now).await;
        }
    }
    store
        .mark_handled(&scheduled_here(config), now, false)
        .await
}

/// The keys of the schedule state of the jobs and flows with a clock
/// schedule that this host may run: in a cluster, a job pinned to
/// another host is not marked handled here, so that its host catches up
/// on what it missed.
pub(super) fn scheduled_here(config: &Config) -> Vec<String> {
    let here = &config.cluster;
    let jobs = config
        .jobs
        .iter()
        .filter(|j| j.timing().is_some() && j.placement.admits(here))
        .map(|j| j.name.clone());
    let flows = config
        .flows
        .iter()
        .filter(|f| f.timing().is_some() && f.placement.admits(here))
        .map(|f| flow_key(&f.name));
    jobs.chain(flows).collect()
}

/// Starts each `@reboot` job and flow once.
pub async fn reboot_jobs(shared: &Arc<Shared>, config: &Config) {
    for job in config
        .jobs
        .iter()
        .filter(|j| j.schedule.as_ref().is_some_and(|s| s.is_reboot()))
    {
        shared.launch(Arc::clone(job), Trigger::Reboot, None);
    }
    for flow in config
        .flows
        .iter()
        .filter(|f| f.schedule.as_ref().is_some_and(|s| s.is_reboot()))
    {
        if let Err(e) = shared.start_flow(flow, Trigger::Reboot, None).await {
            error!(target: "overnight::daemon", "flow `{}` not started: {e}", flow.name);
        }
    }
}
