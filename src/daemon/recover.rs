//! At start: the runs a dead daemon left `running`.
//!
//! If the job's own process still lives (same pid *and* start time, so a
//! reused pid is not mistaken for it), the job outlived its daemon: it keeps
//! its locks (the kernel's flock is held by its descriptors), so no second
//! copy starts; it is watched through a pidfd and its run is closed as
//! `orphaned` when it ends. Otherwise the run is `lost`: failed, with an
//! error entry saying so. Either way nothing is left `running`.

use std::sync::Arc;

use log::warn;

use super::Shared;
use crate::process;
use crate::report::Status;
use crate::route::Router;
use crate::store::StoreError;

/// Closes or watches every run a dead daemon left `running`.
pub async fn abandoned_runs(shared: &Arc<Shared>) -> Result<(), StoreError> {
    let store = &shared.store;
    for report in store.close_lost(shared.runner.host(), true).await? {
        warn!(target: "overnight::daemon", "run #{} of `{}` closed as lost", report.run_id, report.job);
        notify(shared, Some(report));
    }
    for run in store.abandoned(shared.runner.host(), true).await? {
        // Its job ended between the two looks: the next reader closes it.
        if let Some((pid, _)) = run.process.filter(|_| run.job_lives()) {
            warn!(
                target: "overnight::daemon",
                "run #{} of `{}` outlived the daemon that started it: pid {pid} still runs; watching it",
                run.id, run.job
            );
            let store = store.clone();
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                process::exited(pid).await;
                let why = format!(
                    "orphaned: the daemon that started it died; the job (pid {pid}) ran on and has ended, its exit status unknown"
                );
                match store.close_abandoned(run.id, Status::Orphaned, &why).await {
                    Ok(report) => notify(&shared, report),
                    Err(e) => {
                        log::error!(target: "overnight::daemon", "run #{} not closed: {e}", run.id)
                    }
                }
                Router::new(&run.job, run.id, 1, log::Level::Warn).not_run(
                    Status::Orphaned,
                    None,
                    &why,
                );
            });
        }
    }
    Ok(())
}

/// The job's triggers about a closed run, if the job is still in the file.
pub(crate) fn notify(shared: &Shared, report: Option<crate::report::Report>) {
    let Some(report) = report else { return };
    if let Some(job) = shared.config().job(&report.job) {
        shared
            .runner
            .notifier()
            .moment(job, &report, crate::notify::Moment::Final);
    }
}
