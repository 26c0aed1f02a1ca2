//! `overnight next EXPR [--tz ZONE] [--from RFC3339] [--count N]`.

use crate::zone::Zone;
use chrono::{DateTime, Utc};

use super::CliError;
use crate::exit::Outcome;
use crate::schedule::Schedule;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// A cron expression: five fields, six with seconds first, or a macro like `@daily`.
    expr: String,
    /// The IANA zone to read it in [default: the machine's]
    #[arg(long, value_name = "ZONE")]
    tz: Option<String>,
    /// Start after this instant (exclusive), RFC 3339 [default: now]
    #[arg(long, value_name = "RFC3339")]
    from: Option<String>,
    /// How many fire times to print.
    #[arg(long, default_value_t = 5)]
    count: usize,
}

pub(super) fn run(args: Args) -> Result<Outcome, CliError> {
    let zone = match &args.tz {
        Some(name) => name.parse::<Zone>().map_err(|_| {
            CliError::Usage(format!(
                "unknown time zone `{name}`; use an IANA name such as `Europe/London`"
            ))
        })?,
        None => Zone::local(),
    };
    let mut at = match &args.from {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                CliError::Usage(format!(
                    "bad `--from` `{text}`: {e}; write it like `2026-01-01T00:00:00Z`"
                ))
            })?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let schedule =
        Schedule::parse(&args.expr, zone.clone()).map_err(|e| CliError::Usage(e.to_string()))?;
    for _ in 0..args.count {
        let Some(next) = schedule.next_after(at) else {
            break;
        };
        println!("{}", next.with_timezone(&zone).to_rfc3339());
        at = next;
    }
    Ok(Outcome::Success)
}
