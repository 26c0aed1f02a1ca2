//! `overnight run JOB [-c FILE]`: one job now, through the daemon when one
//! is running (so its locks and history are the daemon's), else here.

use std::path::Path;

use tokio::sync::watch;

use super::{CliError, ConfigArg};
use crate::api::client::Client;
use crate::config::Job;
use crate::exit::Outcome;
use crate::report::{Report, Trigger};
use crate::runner::Runner;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The job's name in the jobs file.
    job: String,
    #[command(flatten)]
    config: ConfigArg,
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    let config = args.config.load()?;
    let Some(job) = config.job(&args.job) else {
        return Err(CliError::NotFound(format!(
            "no job named `{}` in `{}`; `overnight check` lists the jobs",
            args.job,
            config.path.display()
        )));
    };
    let report = match Client::find(&config.state_dir) {
        Some(daemon) => daemon.run(&job.name).await?,
        None => {
            crate::route::install(crate::daemon::routing(&config)?);
            locally(&config.state_dir, job, Trigger::Manual).await?
        }
    };
    print!("{}", report.to_text());
    Ok(Outcome::of(report.status))
}

/// Runs `job` in this process; Ctrl-C ends the job's process group and the
/// run is still recorded.
pub(super) async fn locally(
    state_dir: &Path,
    job: &Job,
    trigger: Trigger,
) -> Result<Report, CliError> {
    let store = Store::open(state_dir).await?;
    let runner = Runner::new(store.clone(), state_dir.to_path_buf());
    let (stop_tx, stop) = watch::channel(false);
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
    });
    let report = runner.run(job, trigger, None, stop).await;
    interrupt.abort();
    store.close().await;
    Ok(report?)
}
