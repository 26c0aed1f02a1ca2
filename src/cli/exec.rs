//! `overnight exec [--name NAME] [--log-config FILE] -- CMD ARGS…`: wrap a
//! command from an existing crontab line, with no jobs file needed.
//!
//! It behaves like chronic: silent when the run succeeds, the report on
//! stdout when it fails or warns, so cron mails only what matters. A jobs
//! file or log4rs file it cannot use never keeps the command from running:
//! the run goes on with the console routing, and the problem is a warning
//! of the run.

use std::path::PathBuf;

use super::{CliError, ConfigArg};
use crate::config::{self, Config, Job};
use crate::exit::Outcome;
use crate::report::{Status, Trigger};
use crate::route::held::HeldOutput;
use crate::route::{self, Purpose};
use crate::runner::Outcome as RunOutcome;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The job's name in logs and history [default: the command's file name]
    #[arg(long)]
    name: Option<String>,
    /// A log4rs file routing the report sections [default: the jobs file's, else none]
    #[arg(long, value_name = "FILE")]
    log_config: Option<PathBuf>,
    /// Print the run's start and end, and the console appenders' records,
    /// also when it succeeds
    #[arg(long, short)]
    verbose: bool,
    #[command(flatten)]
    config: ConfigArg,
    /// The command and its arguments, after `--`.
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<std::ffi::OsString>,
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    let name = match &args.name {
        Some(name) => name.clone(),
        None => config::name_from_program(&args.command[0].to_string_lossy())
            .unwrap_or_else(|| "exec".to_string()),
    };
    if !config::valid_name(&name) {
        return Err(CliError::Usage(format!(
            "bad job name `{name}`: use only letters, digits, `.`, `_` and `-` (set it with `--name`)"
        )));
    }
    // What could not be used is said on stderr now and in the run's report.
    let mut notes = Vec::new();
    let config = args.config.load_optional().unwrap_or_else(|e| {
        notes.push(format!(
            "jobs file not used, the command ran without it (its lines went to the console, its run to `{}`): {e}",
            config::default_state_dir().display()
        ));
        None
    });
    let held = HeldOutput::default();
    let routing = match routing(&args, config.as_ref(), &held) {
        // The file that would have routed the lines is the broken one.
        Ok(_) if !notes.is_empty() && args.log_config.is_none() => route::fallback_config(),
        Ok(routing) => routing,
        Err(e) => {
            notes.push(format!(
                "log config not used, the run's lines went to the console: {e}"
            ));
            route::fallback_config()
        }
    };
    for note in &notes {
        eprintln!("overnight exec: warning: {note}");
    }
    route::install(routing);
    // The file's triggers watch wrapped commands too.
    let place = config::Place::of(config.as_ref());
    let job = match &config {
        Some(config) => config.adhoc_job(name, args.command),
        // The history's database is not the wrapped command's to read.
        None => Job {
            withheld: config::store_variables(place.url()).into(),
            ..Job::adhoc(name, args.command)
        },
    };
    let ran = super::run::locally(&place, None, &job, Trigger::Exec, notes).await;
    let (outcome, signalled) = match ran {
        Ok(ran) => ran,
        Err(e) => {
            held.release(true);
            return Err(e);
        }
    };
    let quiet = outcome.status() == Status::Success && !args.verbose;
    held.release(!quiet);
    match &outcome {
        RunOutcome::Ran(report) if !quiet && report.status != Status::Success => {
            super::say(&report.to_text());
        }
        RunOutcome::NotRun { id, why } => super::say(&format!("{} #{id}: {why}\n", job.name)),
        RunOutcome::Ran(_) => {}
    }
    Ok(signalled.map_or_else(|| Outcome::of(outcome.status()), Outcome::Signalled))
}

/// The routing of the run: `--log-config`, else the jobs file's, else
/// none but the runner's own warnings (`--verbose`: the console's).
fn routing(
    args: &Args,
    config: Option<&Config>,
    held: &HeldOutput,
) -> Result<route::Routing, CliError> {
    let file = args
        .log_config
        .as_ref()
        .or(config.and_then(|c| c.log_config.as_ref()));
    Ok(match file {
        Some(path) => route::load_for(path, Purpose::Exec(held.clone()))?,
        None if args.verbose => route::console_config(),
        None => route::quiet_config(),
    })
}
