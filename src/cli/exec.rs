//! `overnight exec [--name NAME] [--log-config FILE] -- CMD ARGS…`: wrap a
//! command from an existing crontab line, with no jobs file needed.

use std::path::PathBuf;

use super::{CliError, ConfigArg};
use crate::config::{self, Job};
use crate::exit::Outcome;
use crate::report::Trigger;
use crate::route;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The job's name in logs and history [default: the command's file name]
    #[arg(long)]
    name: Option<String>,
    /// A log4rs file routing the report sections [default: the jobs file's, else the console]
    #[arg(long, value_name = "FILE")]
    log_config: Option<PathBuf>,
    #[command(flatten)]
    config: ConfigArg,
    /// The command and its arguments, after `--`.
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<std::ffi::OsString>,
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    let config = args.config.load_optional()?;
    let routing = match (&args.log_config, &config) {
        (Some(path), _) => route::load(path)?,
        (None, Some(config)) => crate::daemon::routing(config)?,
        (None, None) => route::console_config(),
    };
    let name = match args.name {
        Some(name) => name,
        None => config::name_from_program(&args.command[0].to_string_lossy())
            .unwrap_or_else(|| "exec".to_string()),
    };
    if !config::valid_name(&name) {
        return Err(CliError::Usage(format!(
            "bad job name `{name}`: use only letters, digits, `.`, `_` and `-` (set it with `--name`)"
        )));
    }
    route::install(routing);
    // The file's triggers watch wrapped commands too.
    let job = match &config {
        Some(config) => config.adhoc_job(name, args.command),
        None => Job::adhoc(name, args.command),
    };
    let state_dir = config.map_or_else(config::default_state_dir, |c| c.state_dir);
    let (outcome, signalled) = super::run::locally(&state_dir, None, &job, Trigger::Exec).await?;
    if let crate::runner::Outcome::NotRun { id, why } = &outcome {
        eprintln!("{} #{id}: skipped ({why})", job.name);
    }
    Ok(signalled.map_or_else(|| Outcome::of(outcome.status()), Outcome::Signalled))
}
