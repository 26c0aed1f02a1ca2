//! `overnight init [DIR] [--logging KIND]`: a commented jobs file and a
//! log4rs file, ready to `check` and to run as they are.
//!
//! The log4rs file is one of `log4rs-configs/`, as shipped. Nothing that is
//! there already is overwritten; the folder, when it is made, and the
//! files are the user's alone (0700, 0600), as everything overnight makes.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::CliError;
use crate::exit::Outcome;

/// The jobs file, with `ZONE` for the machine's zone.
const JOBS_FILE: &str = include_str!("overnight.yaml");

/// Where a run's report sections go.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Logging {
    /// Errors and warnings each to their own rolling file, all output to
    /// one, status to the console.
    SplitStreams,
    /// One rolling file per job, without naming any job.
    PerJob,
    /// Every record as one JSON object per line, for log shippers.
    Json,
    /// Everything on the console (stderr).
    Console,
}

impl Logging {
    /// The shipped log4rs file.
    fn file(self) -> &'static str {
        match self {
            Logging::SplitStreams => include_str!("../../../log4rs-configs/split-streams.yaml"),
            Logging::PerJob => include_str!("../../../log4rs-configs/per-job-files.yaml"),
            Logging::Json => include_str!("../../../log4rs-configs/json-lines.yaml"),
            Logging::Console => include_str!("../../../log4rs-configs/console.yaml"),
        }
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The folder to write `overnight.yaml` and `log4rs.yaml` in (made if
    /// missing).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Where the report sections go.
    #[arg(long, value_enum, default_value_t = Logging::SplitStreams)]
    logging: Logging,
}

pub(super) fn run(args: Args) -> Result<Outcome, CliError> {
    let jobs = args.dir.join("overnight.yaml");
    let logging = args.dir.join("log4rs.yaml");
    // Both or neither: a half-made pair would not say which half is whose.
    for path in [&jobs, &logging] {
        if path.exists() {
            return Err(CliError::Usage(format!(
                "`{}` is there already; init writes only new files: choose another folder, like `overnight init site`",
                path.display()
            )));
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.dir)
        .map_err(|e| written(&args.dir, e))?;
    let zone = iana_time_zone::get_timezone().unwrap_or_else(|_| "UTC".to_string());
    write_new(&jobs, &JOBS_FILE.replacen("ZONE", &zone, 1))?;
    write_new(&logging, args.logging.file())?;
    let shown = args.dir.display();
    super::say(&format!(
        "wrote {} and {}\nnext: overnight check -c {shown}/overnight.yaml\n      overnight daemon -c {shown}/overnight.yaml\n",
        jobs.display(),
        logging.display()
    ));
    Ok(Outcome::Success)
}

/// Writes `text` to a file that must not exist yet, private to its user.
fn write_new(path: &Path, text: &str) -> Result<(), CliError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| written(path, e))
}

fn written(path: &Path, e: std::io::Error) -> CliError {
    CliError::Usage(format!("cannot write `{}`: {e}", path.display()))
}
