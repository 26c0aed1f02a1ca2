//! `overnight history [JOB] [--limit N] [--json]`: past runs, newest first.

use super::{CliError, ConfigArg, open_store};
use crate::exit::Outcome;
use crate::store::RunRecord;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Only this job's runs.
    job: Option<String>,
    /// How many runs to show.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// One JSON document: an array of runs.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigArg,
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    let store = open_store(&args.config).await?;
    let runs = store.history(args.job.as_deref(), args.limit).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs).expect("runs serialise")
        );
    } else {
        print_table(&runs);
    }
    Ok(Outcome::Success)
}

/// The runs as aligned columns.
pub(super) fn print_table(runs: &[RunRecord]) {
    if runs.is_empty() {
        println!("no runs yet");
        return;
    }
    let width = runs.iter().map(|r| r.job.len()).max().unwrap_or(3).max(3);
    println!(
        "{:>6}  {:width$}  {:8}  {:27}  SUMMARY",
        "ID", "JOB", "STATUS", "STARTED"
    );
    for run in runs {
        println!(
            "{:>6}  {:width$}  {:8}  {:27}  {}",
            run.id,
            run.job,
            run.status,
            run.started_at,
            run.summary.as_deref().unwrap_or("")
        );
    }
}
