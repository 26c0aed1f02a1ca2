//! `overnight check [-c FILE]`: validate, and show what will fire when.

use chrono::Utc;

use super::{CliError, ConfigArg};
use crate::config::{self, Config, ConfigError, Problem};
use crate::exit::Outcome;
use crate::route::{self, Purpose};

/// How many fire times to show per job.
const SHOWN: usize = 3;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    config: ConfigArg,
}

pub(super) fn run(args: Args) -> Result<Outcome, CliError> {
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
        "{}: ok, {} job(s); routing: {routing}; state: {}",
        config.path.display(),
        config.jobs.len(),
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
        if let Some(why) = &job.unmailable {
            eprintln!(
                "warning: job `{}`: its failures and warnings are {why}",
                job.name
            );
        }
        let Some(schedule) = &job.schedule else {
            println!("  {:width$}  on demand", job.name);
            continue;
        };
        let mut fires = Vec::new();
        let mut at = now;
        while fires.len() < SHOWN {
            let Some(next) = schedule.next_after(at) else {
                break;
            };
            fires.push(crate::report::human_time(next, &job.timezone));
            at = next;
        }
        println!(
            "  {:width$}  {:schedule_width$}  ({})  next: {}",
            job.name,
            schedule.to_string(),
            job.timezone,
            if schedule.is_reboot() {
                "at daemon start".to_string()
            } else if fires.is_empty() {
                "never".to_string()
            } else {
                fires.join(", ")
            }
        );
        warn_dst_shifts(job, schedule, now);
    }
    Ok(Outcome::Success)
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
