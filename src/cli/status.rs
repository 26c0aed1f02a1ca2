//! `overnight status [--json] [--watch]`: every job's last run and next
//! fire, and the runs going now; with `--watch`, again each time something
//! happens (told by the daemon's live stream), or every few seconds with
//! no daemon.

use chrono::Utc;
use serde::Serialize;

use super::table::{self, Column, Screen};
use super::times::Zones;
use super::{CliError, ConfigArg};
use crate::client::Client;
use crate::daemon::api::{JobStatus, LockHolder};
use crate::exit::Outcome;
use crate::store::{HostRecord, RunRecord, Store};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// One JSON document (with `--watch`, one per line at each change).
    #[arg(long)]
    json: bool,
    /// Show it again each time a run starts, moves on or ends, until
    /// interrupted.
    #[arg(short, long)]
    watch: bool,
    #[command(flatten)]
    config: ConfigArg,
}

/// How often `--watch` looks, told of changes or not.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Changes that come this close together are shown once.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(250);

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
    /// In a cluster, its hosts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hosts: Vec<HostRecord>,
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    let config = args.config.load_optional()?;
    let state_dir = config
        .as_ref()
        .map_or_else(crate::config::default_state_dir, |c| c.state_dir.clone());
    let zones = Zones::new(config.as_ref());
    // Listening before the first look: a change in between is not missed.
    let mut events = match (args.watch, Client::find(&state_dir)) {
        (true, Some(daemon)) => daemon.stream("/api/events", None).await.ok(),
        _ => None,
    };
    let first = snapshot(config.as_ref(), &state_dir).await?;
    show(&first, &args, &zones, false);
    if !args.watch {
        return Ok(Outcome::Success);
    }
    loop {
        match &mut events {
            // What the stream does not tell of (runs of `overnight exec`,
            // fires that did not run) shows at the next look.
            Some(stream) => match tokio::time::timeout(LOOK_EVERY, stream.next()).await {
                Err(_) => {}
                Ok(Ok(Some(_))) => {
                    // What comes with it is shown with it.
                    let settle = async { while let Ok(Some(_)) = stream.next().await {} };
                    let _ = tokio::time::timeout(SETTLE, settle).await;
                }
                // The daemon went away: looked at every few seconds.
                Ok(_) => events = None,
            },
            None => tokio::time::sleep(LOOK_EVERY).await,
        }
        match snapshot(config.as_ref(), &state_dir).await {
            Ok(doc) => show(&doc, &args, &zones, true),
            Err(e) => eprintln!("status not read just now (tried again): {e}"),
        }
    }
}

/// Where every job stands now, and in a cluster, its hosts.
async fn snapshot(
    config: Option<&crate::config::Config>,
    state_dir: &std::path::Path,
) -> Result<StatusDoc, CliError> {
    let place = crate::config::Place::of(config);
    let (mut last, running, locks, hosts) = if crate::store::may_have_history(&place) {
        let store = super::opened(Store::open_at(&place).await?, state_dir, config).await?;
        let locks = LockHolder::from_rows(store.held_locks().await?);
        let found = (
            store.last_finished().await?,
            store.running().await?,
            locks,
            store.hosts().await?,
        );
        store.close().await;
        found
    } else {
        (Vec::new(), Vec::new(), Vec::new(), Vec::new())
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
    Ok(StatusDoc {
        jobs,
        running,
        locks,
        hosts,
    })
}

/// Prints `doc`; `again` when it replaces one shown before (the screen
/// cleared on a terminal, a line between them otherwise).
fn show(doc: &StatusDoc, args: &Args, zones: &Zones<'_>, again: bool) {
    use std::io::{IsTerminal, Write};
    if args.json {
        let json = match args.watch {
            true => serde_json::to_string(doc),
            false => serde_json::to_string_pretty(doc),
        };
        println!("{}", json.expect("status serialises"));
    } else {
        if again {
            match std::io::stdout().is_terminal() {
                true => print!("\x1b[2J\x1b[H"),
                false => println!("---"),
            }
        }
        print_text(doc, zones);
        print_hosts(&doc.hosts);
    }
    let _ = std::io::stdout().flush();
}

/// A narrow terminal leaves out the last run's id, then when it
/// finished, and last cuts the job's name.
const COLUMNS: [Column; 5] = [
    Column::names("JOB").shrinks(8, 2),
    Column::status("LAST"),
    Column::right("RUN").drops(0),
    Column::left("FINISHED").drops(1),
    Column::left("NEXT"),
];

fn print_text(doc: &StatusDoc, zones: &Zones<'_>) {
    let mut rows = Vec::with_capacity(doc.jobs.len());
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
        rows.push(vec![name.clone(), status.to_string(), id, finished, next]);
    }
    print!("{}", table::render(&COLUMNS, &rows, Screen::stdout()));
    if !doc.running.is_empty() {
        println!("\nrunning:");
        for run in &doc.running {
            let progress = run
                .capture_path
                .as_deref()
                .and_then(last_progress)
                .map(|p| format!("  {p}"))
                .unwrap_or_default();
            // In a cluster, where it runs.
            let host = match doc.hosts.is_empty() {
                true => String::new(),
                false => format!(" on {}", run.host),
            };
            println!(
                "  #{} {}{host} since {}{progress}",
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

/// A cluster's hosts: whether each is alive, its epoch, how long since
/// its last heartbeat, its tags; who declared a dead one dead.
fn print_hosts(hosts: &[HostRecord]) {
    if hosts.is_empty() {
        return;
    }
    println!("\nhosts:");
    for host in hosts {
        let state = match (&host.alive, &host.declared_by) {
            (true, _) => "alive".to_string(),
            (false, Some(by)) if by == &host.name => "left".to_string(),
            (false, Some(by)) => format!("dead (declared by {by})"),
            (false, None) => "dead".to_string(),
        };
        let tags = match host.tags.is_empty() {
            true => String::new(),
            false => format!("  tags {}", host.tags.join(", ")),
        };
        println!(
            "  {}  {state}  epoch {}  heard {:.1} s ago{tags}",
            host.name, host.epoch, host.silent_for
        );
    }
}

/// The last `::progress::` line in the tail of a capture file.
fn last_progress(path: &str) -> Option<String> {
    crate::capture::tail(std::path::Path::new(path))
        .into_iter()
        .rev()
        .find_map(|text| text.strip_prefix("::progress::").map(str::to_string))
}
