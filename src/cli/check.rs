//! `overnight check [-c FILE]`: validate, and show what will fire when.

use chrono::{DateTime, Utc};

use super::{CliError, ConfigArg};
use crate::config::flow::Flow;
use crate::config::{self, Config, ConfigError, Problem};
use crate::exit::Outcome;
use crate::flow::{Action, Step, shape};
use crate::route::{self, Purpose};
use crate::schedule::Schedule;
use crate::zone::Zone;

/// How many fire times to show per job.
const SHOWN: usize = 3;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Also compare the job and flow definitions the live hosts of the
    /// cluster (`store:` PostgreSQL) run, with each other and this file
    #[arg(long)]
    cluster: bool,
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    // Every problem of both files at once, in file, line and column order.
    let path = config::find(args.config.config.as_deref()).ok_or(ConfigError::NotFound)?;
    let (config, mut problems) = Config::load_partial(&path)?;
    if let Some(log_config) = &config.log_config
        && let Err(e) = route::load_for(log_config, Purpose::Check)
    {
        match e {
            ConfigError::Invalid(more) => problems.extend(more),
            other => problems.push(Problem {
                file: config.path.clone(),
                pos: Default::default(),
                message: format!("`log_config`: {other}"),
            }),
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError::invalid(problems).into());
    }
    let routing = config.log_config.as_ref().map_or_else(
        || "console (no `log_config`)".to_string(),
        |p| p.display().to_string(),
    );
    println!(
        "{}: ok, {} job(s){}; routing: {routing}; state: {}",
        config.path.display(),
        config.jobs.len(),
        match config.flows.len() {
            0 => String::new(),
            n => format!(", {n} flow(s)"),
        },
        config.state_dir.display()
    );
    let width = config.jobs.iter().map(|j| j.name.len()).max().unwrap_or(0);
    let schedule_width = config
        .jobs
        .iter()
        .filter_map(|j| j.schedule.as_ref().map(|s| s.to_string().len()))
        .max()
        .unwrap_or(0);
    let now = Utc::now();
    for job in &config.jobs {
        if let Some(why) = job
            .workdir
            .as_deref()
            .filter(|dir| dir.is_absolute())
            .and_then(crate::exec::command::missing_dir)
        {
            eprintln!("warning: job `{}`: {why}; its runs will fail", job.name);
        }
        if let Some(name) = &job.user
            && let Err(e) = crate::account::Account::lookup(name).and_then(|a| a.may_become())
        {
            eprintln!(
                "warning: job `{}`: {e}; its daemon must run as root",
                job.name
            );
        }
        if !job.placement.admits(&config.cluster) {
            let elsewhere = match config.store {
                Some(_) => "its fires are left to the hosts that may run it",
                None => "its fires never run: with the history in SQLite, this is the only host",
            };
            eprintln!(
                "warning: job `{}` runs on {}, and this host is `{}` (tags: {}): {elsewhere}",
                job.name,
                job.placement.describe(),
                config.cluster.host,
                match config.cluster.tags.is_empty() {
                    true => "none".to_string(),
                    false => config.cluster.tags.join(", "),
                }
            );
        }
        if let Some(why) = &job.unmailable {
            eprintln!(
                "warning: job `{}`: its failures and warnings are {why}",
                job.name
            );
        }
        let user = job
            .user
            .as_ref()
            .map(|name| format!("as {name}  "))
            .unwrap_or_default();
        let Some(schedule) = &job.schedule else {
            println!("  {:width$}  {user}on demand", job.name);
            continue;
        };
        println!(
            "  {:width$}  {:schedule_width$}  ({})  {user}next: {}",
            job.name,
            schedule.to_string(),
            job.timezone,
            next_fires(schedule, &job.timezone, now)
        );
        warn_dst_shifts(job, schedule, now);
    }
    for flow in &config.flows {
        print_flow(flow, now);
    }
    if args.cluster {
        compare_cluster(&config).await?;
    }
    Ok(Outcome::Success)
}

/// `--cluster`: a warning for each job or flow whose definition differs
/// between the live hosts, or from this file's; then a summary line.
async fn compare_cluster(config: &Config) -> Result<(), CliError> {
    use std::collections::BTreeMap;
    if config.store.is_none() {
        return Err(CliError::Usage(
            "`--cluster` compares the hosts sharing a PostgreSQL `store`; this jobs file keeps its history in SQLite (set `store:` or `$OVERNIGHT_STORE`)".into(),
        ));
    }
    let store = crate::store::Store::connect_at(&config.place()).await?;
    let hosts = store.hosts().await?;
    let running = store.cluster_definitions().await?;
    let here = "this file";
    let mine = store
        .definitions_of(here, &config.jobs, &config.flows)
        .await?;
    let mut by_name: BTreeMap<(&str, &str), BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    for d in running.iter().chain(&mine) {
        by_name
            .entry((d.kind, &d.name))
            .or_default()
            .entry(&d.hash)
            .or_default()
            .push(&d.host);
    }
    let mut differ = 0;
    for ((kind, name), versions) in &by_name {
        if versions.len() < 2 {
            continue;
        }
        differ += 1;
        let said: Vec<String> = versions.values().map(|hosts| hosts.join(", ")).collect();
        eprintln!(
            "warning: {kind} `{name}`: different definitions: {}; a fire runs as the host that claims it loaded it",
            said.join(" | ")
        );
    }
    let alive = hosts.iter().filter(|h| h.alive).count();
    println!(
        "cluster: {alive} live host(s) of {}; {} job(s) and flow(s) compared, {differ} with different definitions",
        hosts.len(),
        by_name.len()
    );
    Ok(())
}

/// The next few fires, in the zone: "at daemon start", "never", or times.
fn next_fires(schedule: &Schedule, zone: &Zone, now: DateTime<Utc>) -> String {
    if schedule.is_reboot() {
        return "at daemon start".to_string();
    }
    let mut fires = Vec::new();
    let mut at = now;
    while fires.len() < SHOWN {
        let Some(next) = schedule.next_after(at) else {
            break;
        };
        fires.push(crate::report::human_time(next, zone));
        at = next;
    }
    if fires.is_empty() {
        "never".to_string()
    } else {
        fires.join(", ")
    }
}

/// A flow as a tree: each step under the steps it waits for, with what it
/// does and its condition.
fn print_flow(flow: &Flow, now: DateTime<Utc>) {
    let when = match &flow.schedule {
        Some(s) => format!(
            "{s}  ({})  next: {}",
            flow.timezone,
            next_fires(s, &flow.timezone, now)
        ),
        None => "on demand".to_string(),
    };
    println!("flow {}  {when}", flow.name);
    let steps = &flow.plan.steps;
    let rows: Vec<(String, &Step)> = shape::layout(steps)
        .into_iter()
        .map(|(i, depth)| {
            (
                format!("{}{}", "  ".repeat(depth + 1), steps[i].name),
                &steps[i],
            )
        })
        .collect();
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let does = |step: &Step| match &step.action {
        Action::Job(job) => format!("job {job}"),
        Action::Hold(text) => format!("hold: {text}"),
    };
    let does_width = steps.iter().map(|s| does(s).len()).max().unwrap_or(0);
    for (name, step) in rows {
        let mut line = format!("{name:width$}  {:does_width$}", does(step));
        if let Some(after) = &step.after {
            line += &format!("  after {after}");
        }
        if !step.hold_on.is_empty() {
            let ends: Vec<&str> = step.hold_on.iter().map(|k| k.word()).collect();
            line += &format!("  (holds the flow if {})", ends.join(" or "));
        }
        println!("{}", line.trim_end());
    }
}

/// Warns of the coming year's fires of a fixed-time job that daylight
/// saving moves (a gap) or merges (a fold).
fn warn_dst_shifts(
    job: &crate::config::Job,
    schedule: &crate::schedule::Schedule,
    now: chrono::DateTime<Utc>,
) {
    for shift in schedule.dst_shifts(now, now + chrono::Duration::days(366)) {
        let what = if shift.gap {
            "falls in a daylight-saving gap; it runs at the first minute after it"
        } else {
            "occurs twice when the clocks go back; it runs once, in the first occurrence"
        };
        eprintln!(
            "warning: job `{}`: {} {} {what}, at {}",
            job.name,
            shift.wall.format("%Y-%m-%d %H:%M"),
            job.timezone,
            crate::report::human_time(shift.runs_at.to_utc(), &job.timezone)
        );
    }
}
