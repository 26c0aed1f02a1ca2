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
    let store = open_store(&args.config).await?;
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
    let notifications = store.notifications(args.run_id).await?;
    if args.json {
        let mut doc = serde_json::to_value(&report).expect("reports serialise");
        doc["notifications"] =
            serde_json::to_value(&notifications).expect("notifications serialise");
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("values serialise")
        );
    } else {
        print!("{}", report.to_text());
        for n in &notifications {
            let detail = n.detail.as_deref().unwrap_or("");
            println!(
                "  trigger {} ({}, {}): {} {detail}",
                n.rule, n.action, n.condition, n.status
            );
        }
    }
    Ok(Outcome::Success)
}
