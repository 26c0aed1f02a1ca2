//! `overnight logs (RUN_ID|JOB) [-f]`: a run's captured output.
//!
//! Reads the run's capture file; with `-f`, follows it like `tail -f` while
//! the run is `running`, and stops when it ends: through the daemon's
//! stream of the run's output when a daemon runs (woken as the job
//! writes), else by looking at the file and the store.
//!
//! `--errors` and `--warnings` print those sections of the reports
//! instead: of the run, or of a job's recent runs, oldest first.

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use super::times::Zones;
use super::{CliError, ConfigArg, open_store};
use crate::capture;
use crate::client::Client;
use crate::exit::Outcome;
use crate::status::Status;
use crate::store::HistoryQuery;
use crate::store::{RunRecord, Store};

/// How often a follower looks for new lines and for the run's end.
const FOLLOW_TICK: Duration = Duration::from_millis(100);

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("sections").args(["errors", "warnings"]).multiple(true))]
pub(super) struct Args {
    /// A run id, or a job name for its latest run.
    #[arg(add = super::completions::jobs())]
    run: String,
    /// Follow the output while the run goes on.
    #[arg(short, long)]
    follow: bool,
    /// Show each line's time and stream.
    #[arg(short, long)]
    timestamps: bool,
    /// Only the errors of the reports (a failed run's end with why it
    /// failed and its last stderr lines, as in the errors log).
    #[arg(long, conflicts_with_all = ["follow", "timestamps"])]
    errors: bool,
    /// Only the warnings of the reports.
    #[arg(long, conflicts_with_all = ["follow", "timestamps"])]
    warnings: bool,
    /// With `--errors` or `--warnings` and a job: how many of its latest
    /// runs to look through.
    #[arg(long, default_value_t = 10, requires = "sections")]
    limit: u32,
    #[command(flatten)]
    config: ConfigArg,
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    if args.errors || args.warnings {
        return sections(&args).await;
    }
    let state_dir = args.config.state_dir()?;
    let waits = args.follow && args.run.parse::<i64>().is_err();
    let (store, run) = if waits {
        first_run(&args.config, &state_dir, &args.run).await?
    } else {
        let (store, _) = open_store(&args.config).await?;
        let run = find_run(&store, &args.run).await?;
        (store, run)
    };
    print(&store, &run, &state_dir, args.follow, args.timestamps).await?;
    Ok(Outcome::Success)
}

/// A run's output, as `overnight logs RUN` prints it.
pub(super) async fn print_output(
    store: &Store,
    run: &RunRecord,
    config: &ConfigArg,
) -> Result<(), CliError> {
    print(store, run, &config.state_dir()?, false, false).await
}

/// A run's output; with `follow`, until the run ends.
async fn print(
    store: &Store,
    run: &RunRecord,
    state_dir: &std::path::Path,
    follow: bool,
    timestamps: bool,
) -> Result<(), CliError> {
    // A recorded name with U+FFFD was not UTF-8: the file is the run's.
    let path = match &run.capture_path {
        Some(p) if !p.contains('\u{fffd}') => PathBuf::from(p),
        _ => capture::path_for(state_dir, &run.job, run.id),
    };
    let mut from = 0;
    // Another host's run: its output is in that host's state directory,
    // read through that host's API.
    if !path.exists()
        && let Ok(hosts) = store.hosts().await
        && let Some(daemon) = Client::of_cluster_host(&hosts, &run.host, state_dir)
    {
        let query = if follow { "?follow=1" } else { "" };
        return match through_daemon(&daemon, run.id, query, timestamps).await {
            Ok(()) => Ok(()),
            Err(_) => Err(CliError::NotFound(format!(
                "run #{} ran on host `{}`, whose API did not give its output; read it there (`overnight logs {}` on that host)",
                run.id, run.host, run.id
            ))),
        };
    }
    if follow
        && run.status == Status::Running
        && let Some(daemon) = Client::find(state_dir)
    {
        match through_daemon(&daemon, run.id, "?follow=1", timestamps).await {
            Ok(()) => return Ok(()),
            Err(offset) => from = offset,
        }
    }
    let Some(mut file) = wait_for_file(&path, store, run.id, follow).await? else {
        // The file is made at the first line.
        eprintln!("run #{} of `{}` has printed nothing", run.id, run.job);
        return Ok(());
    };
    file.seek(SeekFrom::Start(from))
        .map_err(|e| read_error(&path, e))?;
    let mut reader = BufReader::new(file);
    let mut out = std::io::stdout().lock();
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| read_error(&path, e))?;
        if read > 0 && line.ends_with('\n') {
            print_line(&mut out, line.trim_end_matches('\n'), timestamps);
            continue;
        }
        // A partial line: wait for the rest of it.
        if read > 0 {
            let back = -(read as i64);
            reader
                .seek(SeekFrom::Current(back))
                .map_err(|e| read_error(&path, e))?;
        }
        if !follow || !still_running(store, run.id).await? {
            // One more pass: the end of the run may have added lines.
            if follow {
                let mut rest = String::new();
                std::io::Read::read_to_string(&mut reader, &mut rest)
                    .map_err(|e| read_error(&path, e))?;
                rest.lines()
                    .for_each(|l| print_line(&mut out, l, timestamps));
            }
            break;
        }
        let _ = out.flush();
        tokio::time::sleep(FOLLOW_TICK).await;
    }
    Ok(())
}

/// `--errors`, `--warnings`: those sections of a run's report, or of the
/// latest `--limit` reports of a job, oldest first, each run under a line
/// that names it.
async fn sections(args: &Args) -> Result<Outcome, CliError> {
    let (store, config) = open_store(&args.config).await?;
    let runs = match args.run.parse::<i64>() {
        Ok(_) => vec![find_run(&store, &args.run).await?],
        Err(_) => {
            let runs = store
                .history(&HistoryQuery::latest(Some(&args.run), args.limit))
                .await?;
            if runs.is_empty() {
                // The same message as for a name that never ran.
                find_run(&store, &args.run).await?;
            }
            runs
        }
    };
    let zones = Zones::new(config.as_ref());
    let mut shown = String::new();
    for run in runs.iter().rev() {
        let Some(report) = store.report(run.id).await? else {
            continue;
        };
        let mut lines = Vec::new();
        if args.errors {
            lines.extend(super::report::error_lines(&report));
        }
        if args.warnings {
            let warnings = report.warnings.iter().map(super::report::entry_line);
            lines.extend(warnings.map(|w| format!("warning: {w}")));
        }
        if lines.is_empty() {
            continue;
        }
        shown += &format!(
            "#{} {} {} {}: {}\n",
            run.id,
            run.job,
            zones.show(&run.job, &run.started_at),
            report.status,
            report.summary
        );
        for line in lines {
            shown += &format!("  {line}\n");
        }
    }
    if shown.is_empty() {
        let what = match (args.errors, args.warnings) {
            (true, true) => "errors or warnings",
            (true, false) => "errors",
            _ => "warnings",
        };
        match args.run.parse::<i64>() {
            Ok(id) => eprintln!("no {what} in run #{id}"),
            Err(_) => eprintln!(
                "no {what} in the last {} run(s) of `{}`",
                runs.len(),
                args.run
            ),
        }
    }
    super::say(&shown);
    Ok(Outcome::Success)
}

async fn find_run(store: &Store, what: &str) -> Result<RunRecord, CliError> {
    let found = match what.parse::<i64>() {
        Ok(id) => store.run(id).await?,
        Err(_) => store
            .history(&HistoryQuery::latest(Some(what), 1))
            .await?
            .into_iter()
            .next(),
    };
    found.ok_or_else(|| {
        CliError::NotFound(format!(
            "no run `{what}`: give a run id or a job name that has run (see `overnight history`)"
        ))
    })
}

/// The latest run of `job`, waiting for its first when it has none yet
/// (`overnight logs backup -f` typed before the run starts); a job the
/// jobs file does not have is refused, not waited for.
async fn first_run(
    arg: &ConfigArg,
    state_dir: &std::path::Path,
    job: &str,
) -> Result<(Store, RunRecord), CliError> {
    // Read once: the loop below only looks at the history.
    let config = arg.load_optional()?;
    let unknown = config.as_ref().filter(|c| c.job(job).is_none());
    let place = crate::config::Place::of(config.as_ref());
    let mut store = None;
    let mut said = false;
    loop {
        if store.is_none() && crate::store::may_have_history(&place) {
            let opened = Store::open_at(&place).await?;
            store = Some(super::opened(opened, state_dir, config.as_ref()).await?);
        }
        if let Some(store) = &store {
            // A wrapped crontab line's run is in the journal first.
            store.fold_journal().await?;
            if let Some(run) = store
                .history(&HistoryQuery::latest(Some(job), 1))
                .await?
                .pop()
            {
                return Ok((store.clone(), run));
            }
        }
        // A name the jobs file lacks, with no run of it: a typo.
        if let Some(config) = unknown {
            let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
            return Err(CliError::NotFound(format!(
                "no job named `{job}` in `{}`{}",
                config.path.display(),
                super::did_you_mean(job, &names)
            )));
        }
        if !said {
            eprintln!("waiting for the first run of `{job}`…");
            said = true;
        }
        tokio::time::sleep(FOLLOW_TICK).await;
    }
}

async fn still_running(store: &Store, id: i64) -> Result<bool, CliError> {
    // A run of `overnight exec` ends in the journal.
    store.fold_journal().await?;
    Ok(store
        .run(id)
        .await?
        .is_some_and(|r| r.status == Status::Running))
}

/// Opens the capture file, `None` when the run has printed nothing; a
/// follower waits for the first line of a run still going.
async fn wait_for_file(
    path: &PathBuf,
    store: &Store,
    id: i64,
    follow: bool,
) -> Result<Option<std::fs::File>, CliError> {
    loop {
        match std::fs::File::open(path) {
            Ok(file) => return Ok(Some(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !follow || !still_running(store, id).await? {
                    return Ok(None);
                }
                tokio::time::sleep(FOLLOW_TICK).await;
            }
            Err(e) => return Err(read_error(path, e)),
        }
    }
}

fn read_error(path: &std::path::Path, e: std::io::Error) -> CliError {
    CliError::NotFound(format!(
        "cannot read the capture file `{}`: {e}",
        path.display()
    ))
}

fn print_line(out: &mut impl Write, raw: &str, timestamps: bool) {
    print_parts(out, &capture::parse_line(raw), timestamps);
}

fn print_parts(out: &mut impl Write, line: &capture::CapturedLine<'_>, timestamps: bool) {
    let _ = if timestamps {
        writeln!(out, "{} {} {}", line.at, line.stream, line.text)
    } else {
        writeln!(out, "{}", line.text)
    };
}

/// Follows run `id` through the daemon's stream of its output until the
/// run ends; if the daemon stops answering first, the offset read to, for
/// the file to go on from.
async fn through_daemon(
    daemon: &Client,
    id: i64,
    query: &str,
    timestamps: bool,
) -> Result<(), u64> {
    let path = format!("/api/runs/{id}/output{query}");
    let mut stream = daemon.stream(&path, None).await.map_err(|_| 0u64)?;
    let mut offset = 0;
    loop {
        let event = match stream.next().await {
            Ok(Some(event)) => event,
            Ok(None) | Err(_) => {
                eprintln!("the daemon stopped answering; following the file");
                return Err(offset);
            }
        };
        match event.event.as_str() {
            "lines" => {
                let Ok(lines) = serde_json::from_str::<Vec<capture::CapturedLine>>(&event.data)
                else {
                    continue;
                };
                let mut out = std::io::stdout().lock();
                for line in &lines {
                    print_parts(&mut out, line, timestamps);
                }
                let _ = out.flush();
                if let Some(after) = event.id.and_then(|i| i.parse().ok()) {
                    offset = after;
                }
            }
            "end" => return Ok(()),
            _ => {}
        }
    }
}
