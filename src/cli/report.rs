//! `overnight report RUN_ID [--json]`: a run's completion report.

use super::{CliError, ConfigArg, open_store};
use crate::exit::Outcome;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The run's id (see `overnight history`).
    run_id: i64,
    /// The report as one JSON document.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigArg,
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    let store = open_store(&args.config.state_dir()?).await?;
    let Some(run) = store.run(args.run_id).await? else {
        return Err(CliError::NotFound(format!(
            "no run #{}; `overnight history` lists the runs",
            args.run_id
        )));
    };
    let Some(report) = store.report(args.run_id).await? else {
        return Err(CliError::NotFound(format!(
            "run #{} of `{}` has no report: it is {}; follow it with `overnight logs {} -f`",
            run.id, run.job, run.status, run.id
        )));
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("reports serialise")
        );
    } else {
        print!("{}", report.to_text());
    }
    Ok(Outcome::Success)
}
