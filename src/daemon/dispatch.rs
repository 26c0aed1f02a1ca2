//! From due fires to runs: on time they run; late ones follow the job's
//! catch-up policy, and every fire not run is recorded as `missed`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use log::{error, info};

use super::Shared;
use crate::config::{Config, Job};
use crate::report::Status;
use crate::report::Trigger;
use crate::schedule::catchup::{self, fires_between};
use crate::store::StoreError;

/// Runs or records one job's due fires.
pub async fn dispatch(
    shared: &Arc<Shared>,
    job: &Job,
    fires: &[DateTime<Utc>],
    late: bool,
    more: bool,
    now: DateTime<Utc>,
) {
    if !late {
        for at in fires {
            shared.launch(job.clone(), Trigger::Schedule, Some(*at));
        }
        return;
    }
    let plan = catchup::plan(fires, now, job.catch_up, job.starting_deadline);
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
        shared.launch(job.clone(), Trigger::CatchUp, Some(at));
    }
}

async fn record_missed(
    shared: &Shared,
    job: &Job,
    missed: &[(DateTime<Utc>, String)],
    more: bool,
) -> Result<(), StoreError> {
    for (i, (at, why)) in missed.iter().enumerate() {
        let why = if more && i + 1 == missed.len() {
            format!("{why}; more fires after this one were missed and are not listed")
        } else {
            why.clone()
        };
        shared
            .runner
            .record_not_run(job, Trigger::Schedule, Some(*at), Status::Missed, &why)
            .await?;
    }
    Ok(())
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
    let mut scheduled = Vec::new();
    for job in &config.jobs {
        let Some(timing) = job.timing() else { continue };
        scheduled.push(job.name.as_str());
        // A job seen for the first time has missed nothing.
        let Some(since) = handled.get(&job.name) else {
            continue;
        };
        let (fires, more) = fires_between(&timing.schedule, *since, now);
        if !fires.is_empty() {
            dispatch(shared, job, &fires, true, more, now).await;
        }
    }
    store.mark_handled(&scheduled, now, false).await
}

/// Starts each `@reboot` job once.
pub fn reboot_jobs(shared: &Arc<Shared>, config: &Config) {
    for job in config
        .jobs
        .iter()
        .filter(|j| j.schedule.as_ref().is_some_and(|s| s.is_reboot()))
    {
        shared.launch(job.clone(), Trigger::Reboot, None);
    }
}
