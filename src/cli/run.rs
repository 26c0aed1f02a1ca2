//! `overnight run JOB [-c FILE]`: one job now, through the daemon when one
//! is running (so its locks and history are the daemon's), else here.

use super::signals::Signals;
use super::{CliError, ConfigArg};
use crate::client::Client;
use crate::config::Job;
use crate::exit::Outcome;
use crate::report::Trigger;
use crate::runner::{NotStarted, Outcome as RunOutcome, Runner, StopReason};
use crate::store::Recorder;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The job's name in the jobs file.
    #[arg(add = super::completions::jobs())]
    job: String,
    #[command(flatten)]
    config: ConfigArg,
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    let config = args.config.load()?;
    let Some(job) = config.job(&args.job) else {
        let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
        return Err(CliError::NotFound(format!(
            "no job named `{}` in `{}`{}",
            args.job,
            config.path.display(),
            super::did_you_mean(&args.job, &names)
        )));
    };
    let daemon = match Client::find(&config.state_dir) {
        Some(daemon) => Some(daemon),
        None => cluster_host(&config, job).await?,
    };
    let outcome = match daemon {
        Some(daemon) => daemon.run(&job.name).await?,
        None => {
            crate::route::install(crate::daemon::routing(&config)?);
            let (outcome, signalled) = locally(
                &config.place(),
                config.max_parallel,
                job,
                Trigger::Manual,
                Vec::new(),
            )
            .await?;
            if let Some(number) = signalled {
                super::say(&outcome_text(&outcome, job));
                return Ok(Outcome::Signalled(number));
            }
            outcome
        }
    };
    super::say(&outcome_text(&outcome, job));
    Ok(Outcome::of(outcome.status()))
}

/// With no daemon here, in a cluster: a live host that may run `job`,
/// whose daemon runs it under the cluster's locks (a run here would take
/// none); `None` when no host is up, and the job runs here.
async fn cluster_host(
    config: &crate::config::Config,
    job: &Job,
) -> Result<Option<Client>, CliError> {
    let place = config.place();
    if !matches!(place, crate::config::Place::Server { .. }) {
        return Ok(None);
    }
    let store = crate::store::Store::connect_at(&place).await?;
    let hosts = store.hosts().await;
    store.close().await;
    let hosts = hosts?;
    let me = &config.cluster.host;
    let up = hosts.iter().any(|h| h.alive && &h.name != me);
    let found = Client::in_cluster(&hosts, |h| {
        &h.name != me && job.placement.admits_host(&h.name, &h.tags)
    });
    match found {
        Some((host, daemon)) => {
            eprintln!("no daemon runs here: `{}` runs on host `{host}`", job.name);
            Ok(Some(daemon))
        }
        None if up => Err(CliError::Usage(format!(
            "no daemon runs here, and no live host of the cluster that may run `{}` ({}) can be reached: start this host's daemon, or run it on a host of the cluster (a run here would take no lock across hosts)",
            job.name,
            job.placement.describe()
        ))),
        None => Ok(None),
    }
}

/// The report summary, or why the job did not run.
fn outcome_text(outcome: &RunOutcome, job: &Job) -> String {
    match outcome {
        RunOutcome::Ran(report) => report.to_text(),
        RunOutcome::NotRun { id, why } => format!("{} #{id}: {why}\n", job.name),
    }
}

/// Runs `job` in this process. SIGINT, SIGTERM or SIGHUP (Ctrl-C, `timeout`,
/// systemd, a closed terminal) ends the job's process group, the run is
/// recorded as ended by that signal, and the signal's number comes back
/// with the outcome, for the exit code 128 + N. `notes` are said as
/// warnings of the run.
pub(super) async fn locally(
    place: &crate::config::Place,
    max_parallel: Option<usize>,
    job: &Job,
    trigger: Trigger,
    notes: Vec<String>,
) -> Result<(RunOutcome, Option<i32>), CliError> {
    // The journal, not SQLite: the next command that reads the history
    // folds it in (crate::store::journal). A state directory that cannot
    // be written does not keep the job from running; one someone else
    // could write is not used at all, not even for its output or locks.
    let state_dir = place.state_dir();
    let recorder = match Recorder::at(place).await {
        Ok(recorder) => recorder,
        Err(e) if e.is_refused() => return Err(CliError::Usage(e.to_string())),
        Err(e) => Recorder::Nowhere(e.to_string().into()),
    };
    let runner = Runner::new(recorder, state_dir.to_path_buf(), max_parallel).noting(notes);
    super::through_daemon(runner.notifier(), state_dir);
    let mut signals = Signals::catch(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP])?;
    let run = runner.run(job, trigger, None);
    tokio::pin!(run);
    let mut signalled = None;
    let outcome = loop {
        tokio::select! {
            outcome = &mut run => break outcome,
            number = signals.next(), if signalled.is_none() => {
                signalled = Some(number);
                let reason = StopReason::Signal(number);
                // Still waiting for a lock or a place, nothing recorded
                // yet: it never starts.
                if runner.running() == 0 {
                    let why = NotStarted::Interrupted(reason);
                    break Ok(RunOutcome::NotRun { id: 0, why });
                }
                runner.stop_all(reason);
            }
        }
    };
    // The triggers speak before the process ends.
    runner.notifier().settled().await;
    // What could not be written during the run is tried once more: this
    // process keeps nothing after it ends.
    if let Err(e) = runner.recorder().flush() {
        match &outcome {
            Ok(RunOutcome::Ran(report)) => eprintln!(
                "warning: run #{} of `{}` is not in the history: {e}",
                report.run_id, report.job
            ),
            _ => eprintln!("warning: not all of it is in the history: {e}"),
        }
    }
    Ok((outcome?, signalled))
}
