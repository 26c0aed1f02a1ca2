//! `overnight import-crontab [FILE] [--system]`: a crontab as a jobs file.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::CliError;
use crate::config::ConfigError;
use crate::config::crontab;
use crate::exit::Outcome;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The crontab to read; `-` or nothing reads standard input (`crontab -l | overnight import-crontab`).
    file: Option<PathBuf>,
    /// The `/etc/crontab` format, with a user field before the command.
    #[arg(long)]
    system: bool,
}

pub(super) fn run(args: Args) -> Result<Outcome, CliError> {
    let (name, text) = match args.file.as_deref().filter(|f| *f != Path::new("-")) {
        Some(path) => (
            path.to_path_buf(),
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?,
        ),
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| {
                CliError::Usage(format!("cannot read the crontab from standard input: {e}"))
            })?;
            (PathBuf::from("<stdin>"), text)
        }
    };
    let jobs = crontab::parse(&name, &text, args.system)?;
    let source = name.display().to_string();
    if jobs.is_empty() {
        eprintln!(
            "note: `{source}` has no job line (all comments or variables); the jobs file has no jobs"
        );
        print!("{}", crontab::empty_yaml(&text, &source));
        return Ok(Outcome::Success);
    }
    for job in jobs.iter().filter(|j| !j.hidden_output.is_empty()) {
        eprintln!(
            "warning: {source}:{}: `{}` keeps the output of `{}` from overnight (its capture, log and report); remove it to have overnight see the output",
            job.line,
            job.hidden_output.join(" "),
            job.name
        );
    }
    print!("{}", crontab::to_yaml(&jobs, &source));
    Ok(Outcome::Success)
}
