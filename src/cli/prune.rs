//! `overnight prune [-c FILE]`: apply `retention:` now (the daemon does it
//! daily): capture files of old runs, and history rows if it says so.

use super::{CliError, ConfigArg, open_store};
use crate::config::retention::Retention;
use crate::exit::Outcome;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    config: ConfigArg,
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    let config = args.config.load_optional()?;
    let retention = config.as_ref().map(|c| c.retention).unwrap_or_default();
    let (store, _) = open_store(&args.config).await?;
    let pruned = store.prune(&retention).await?;
    println!(
        "removed {} capture file(s), {} byte(s){}; kept {}",
        pruned.files,
        pruned.bytes,
        match retention.history {
            Some(_) => format!(", and {} run(s) from the history", pruned.runs),
            None => String::new(),
        },
        kept(&retention)
    );
    Ok(Outcome::Success)
}

/// What `retention` keeps, in words.
fn kept(retention: &Retention) -> String {
    let span = |d: Option<std::time::Duration>| {
        d.map_or_else(
            || "forever".to_string(),
            |d| format!("for {}", humantime::format_duration(d)),
        )
    };
    format!(
        "capture files {}, the history {}",
        span(retention.captures),
        span(retention.history)
    )
}
