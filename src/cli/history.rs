//! `overnight history [JOB] [--limit N] [--json]`: past runs, newest first.

use super::table::{self, Column, Screen};
use super::times::{Zones, duration};
use super::{CliError, ConfigArg, open_store};
use crate::exit::Outcome;
use crate::status::Status;
use crate::store::HistoryQuery;
use crate::store::RunRecord;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Only this job's runs.
    #[arg(add = super::completions::jobs())]
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
    let (store, config) = open_store(&args.config).await?;
    let runs = store
        .history(&HistoryQuery::latest(args.job.as_deref(), args.limit))
        .await?;
    if let Some(job) = args.job.as_deref().filter(|_| runs.is_empty()) {
        // No run: a job that exists but has not run, or a typo.
        let recorded = store.last_finished().await?;
        let mut names: Vec<&str> = recorded.iter().map(|r| r.job.as_str()).collect();
        names.extend(config.iter().flat_map(|c| &c.jobs).map(|j| j.name.as_str()));
        if !names.contains(&job) {
            return Err(CliError::NotFound(format!(
                "no job named `{job}` in the jobs file or the history{}",
                super::did_you_mean(job, &names)
            )));
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs).expect("runs serialise")
        );
    } else {
        print_table(&runs, &Zones::new(config.as_ref()));
    }
    Ok(Outcome::Success)
}

/// The runs as aligned columns: when each started (a missed or skipped
/// fire: when it was due) in its job's zone, how long it took, what
/// started it; and when they ran on more than one host (a cluster), where.
pub(super) fn print_table(runs: &[RunRecord], zones: &Zones<'_>) {
    if runs.is_empty() {
        println!("no runs yet");
        return;
    }
    let mut columns = COLUMNS.to_vec();
    let mut rows: Vec<Vec<String>> = runs.iter().map(|run| row(run, zones)).collect();
    if runs.iter().any(|r| r.host != runs[0].host) {
        columns.insert(HOST_AT, HOST);
        for (row, run) in rows.iter_mut().zip(runs) {
            row.insert(HOST_AT, run.host.clone());
        }
    }
    print!("{}", table::render(&columns, &rows, Screen::stdout()));
}

/// Where the host's column goes, when shown: after the status. It is
/// left out after the duration, before the job's name is cut.
const HOST_AT: usize = 3;
const HOST: Column = Column::left("HOST").drops(3);

/// A narrow terminal cuts the summary first, then leaves out the trigger,
/// then the duration, and last cuts the job's name.
const COLUMNS: [Column; 7] = [
    Column::right("ID"),
    Column::names("JOB").shrinks(8, 3),
    Column::status("STATUS"),
    Column::left("TRIGGER").drops(1),
    Column::left("WHEN"),
    Column::right("DURATION").drops(2),
    Column::left("SUMMARY").shrinks(7, 0),
];

fn row(run: &RunRecord, zones: &Zones<'_>) -> Vec<String> {
    let never_ran = matches!(run.status, Status::Missed | Status::Skipped);
    let when = match (&run.scheduled_at, never_ran) {
        (Some(due), true) => zones.show(&run.job, due),
        _ => zones.show(&run.job, &run.started_at),
    };
    let took = if never_ran {
        String::new()
    } else {
        duration(&run.started_at, run.finished_at.as_deref())
    };
    vec![
        run.id.to_string(),
        run.job.clone(),
        run.status.to_string(),
        run.trigger.to_string(),
        when,
        took,
        run.summary.clone().unwrap_or_default(),
    ]
}
