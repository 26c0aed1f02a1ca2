//! `overnight run JOB [-c FILE]`: one job now, through the daemon when one
//! is running (so its locks and history are the daemon's), else here.

use std::path::Path;

use super::{CliError, ConfigArg};
use crate::api::client::Client;
use crate::config::Job;
use crate::exit::Outcome;
use crate::report::Trigger;
use crate::runner::{Outcome as RunOutcome, Runner};
use crate::store::Recorder;

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
    let outcome = match Client::find(&config.state_dir) {
        Some(daemon) => daemon.run(&job.name).await?,
        None => {
            crate::route::install(crate::daemon::routing(&config)?);
            locally(&config.state_dir, config.max_parallel, job, Trigger::Manual).await?
        }
    };
    match &outcome {
        RunOutcome::Ran(report) => print!("{}", report.to_text()),
        RunOutcome::NotRun { id, why } => println!("{} #{id}: skipped ({why})", job.name),
    }
    Ok(Outcome::of(outcome.status()))
}

/// Runs `job` in this process; Ctrl-C ends the job's process group and the
/// run is still recorded.
pub(super) async fn locally(
    state_dir: &Path,
    max_parallel: Option<usize>,
    job: &Job,
    trigger: Trigger,
) -> Result<RunOutcome, CliError> {
    // The journal, not SQLite: the next command that reads the history
    // folds it in (crate::store::journal).
    let recorder = Recorder::journal(state_dir).await?;
    let runner = Runner::new(recorder, state_dir.to_path_buf(), max_parallel);
    let interrupt = {
        let runner = runner.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                runner.stop_all("interrupted: Ctrl-C");
            }
        })
    };
    let outcome = runner.run(job, trigger, None).await;
    // The triggers speak before the process ends.
    runner.notifier().settled().await;
    interrupt.abort();
    Ok(outcome?)
}
