//! `overnight report RUN_ID [--json]`: a run's completion report.

use super::times::Zones;
use super::{CliError, ConfigArg, open_store};
use crate::exit::Outcome;
use crate::status::Status;

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
    let (store, config) = open_store(&args.config).await?;
    let Some(run) = store.run(args.run_id).await? else {
        return Err(CliError::NotFound(format!(
            "no run #{}; `overnight history` lists the runs",
            args.run_id
        )));
    };
    let Some(report) = store.report(args.run_id).await? else {
        if run.status == Status::Running {
            return Err(CliError::NotFound(format!(
                "run #{} of `{}` has no report yet: it is still running; follow it with `overnight logs {} -f`",
                run.id, run.job, run.id
            )));
        }
        if !matches!(run.status, Status::Missed | Status::Skipped) {
            return Err(CliError::NotFound(format!(
                "run #{} of `{}` ({}) has no readable report in the history",
                run.id, run.job, run.status
            )));
        }
        // A fire that never started (missed, skipped) has only its record.
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&run).expect("runs serialise")
            );
        } else {
            let zones = Zones::new(config.as_ref());
            let due = run
                .scheduled_at
                .as_deref()
                .map(|t| format!(", due {}", zones.show(&run.job, t)))
                .unwrap_or_default();
            println!(
                "{} #{}: {}{due} — it never started, so there is no output or report\n  {}",
                run.job,
                run.id,
                run.status,
                run.summary.as_deref().unwrap_or("")
            );
        }
        return Ok(Outcome::Success);
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
            println!("{}", delivery_line(n));
        }
    }
    Ok(Outcome::Success)
}

/// One trigger delivery, as `report` and `flow status` list them.
pub(super) fn delivery_line(n: &crate::store::Notification) -> String {
    let detail = n.detail.as_deref().unwrap_or("");
    format!(
        "  trigger {} ({}, {}): {} {detail}",
        n.rule, n.action, n.condition, n.status
    )
    .trim_end()
    .to_string()
}
