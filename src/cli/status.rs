//! `overnight status [--json]`: every job's last run and next fire, and the
//! runs going now.

use chrono::Utc;
use serde::Serialize;

use super::times::Zones;
use super::{CliError, ConfigArg};
use crate::daemon::api::{JobStatus, LockHolder};
use crate::exit::Outcome;
use crate::store::{RunRecord, Store};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// One JSON document.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Debug, Serialize)]
struct JobLine {
    #[serde(flatten)]
    job: JobStatus,
    last: Option<RunRecord>,
}

#[derive(Debug, Serialize)]
struct StatusDoc {
    jobs: Vec<JobLine>,
    running: Vec<RunRecord>,
    locks: Vec<LockHolder>,
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    let config = args.config.load_optional()?;
    let state_dir = config
        .as_ref()
        .map_or_else(crate::config::default_state_dir, |c| c.state_dir.clone());
    let (mut last, running, locks) = if crate::store::has_history(&state_dir) {
        let store =
            super::opened(Store::open(&state_dir).await?, &state_dir, config.as_ref()).await?;
        let locks = LockHolder::from_rows(store.held_locks().await?);
        (store.last_finished().await?, store.running().await?, locks)
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    let now = Utc::now();
    let mut jobs: Vec<JobLine> = config
        .iter()
        .flat_map(|c| &c.jobs)
        .map(|job| JobLine {
            job: JobStatus::of(job, now),
            last: last
                .iter()
                .position(|r| r.job == job.name)
                .map(|i| last.swap_remove(i)),
        })
        .collect();
    // Jobs that ran (through `exec`, or before a rename) but are not in the file.
    jobs.extend(last.into_iter().map(|r| JobLine {
        job: JobStatus {
            name: r.job.clone(),
            schedule: None,
            next: None,
            at_start: false,
        },
        last: Some(r),
    }));
    let doc = StatusDoc {
        jobs,
        running,
        locks,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("status serialises")
        );
    } else {
        print_text(&doc, &Zones::new(config.as_ref()));
    }
    Ok(Outcome::Success)
}

fn print_text(doc: &StatusDoc, zones: &Zones<'_>) {
    let width = doc
        .jobs
        .iter()
        .map(|j| j.job.name.len())
        .max()
        .unwrap_or(3)
        .max(3);
    println!(
        "{:width$}  {:8}  {:>6}  {:26}  NEXT",
        "JOB", "LAST", "RUN", "FINISHED"
    );
    for job in &doc.jobs {
        let name = &job.job.name;
        let (status, id, finished) =
            job.last
                .as_ref()
                .map_or(("-", String::from("-"), String::from("-")), |r| {
                    (
                        r.status.as_str(),
                        r.id.to_string(),
                        r.finished_at
                            .as_deref()
                            .map_or_else(|| "-".to_string(), |t| zones.show(name, t)),
                    )
                });
        let next = match (&job.job.next, &job.job.schedule) {
            (Some(next), _) => zones.show(name, next),
            (None, Some(_)) if job.job.at_start => "at daemon start".to_string(),
            (None, Some(_)) => "never".to_string(),
            (None, None) => "on demand".to_string(),
        };
        println!("{name:width$}  {status:8}  {id:>6}  {finished:26}  {next}");
    }
    if !doc.running.is_empty() {
        println!("\nrunning:");
        for run in &doc.running {
            let progress = run
                .capture_path
                .as_deref()
                .and_then(last_progress)
                .map(|p| format!("  {p}"))
                .unwrap_or_default();
            println!(
                "  #{} {} since {}{progress}",
                run.id,
                run.job,
                zones.show(&run.job, &run.started_at)
            );
        }
    }
    if !doc.locks.is_empty() {
        println!("\nlocks:");
        for lock in &doc.locks {
            println!(
                "  {} ({}) held by #{} {}",
                lock.name, lock.mode, lock.run_id, lock.job
            );
        }
    }
}

/// The last `::progress::` line in the tail of a capture file.
fn last_progress(path: &str) -> Option<String> {
    crate::capture::tail(std::path::Path::new(path))
        .into_iter()
        .rev()
        .find_map(|text| text.strip_prefix("::progress::").map(str::to_string))
}
