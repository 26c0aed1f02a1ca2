//! `overnight import-crontab [FILE] [--system] [--user NAME]`, or
//! `--machine`: crontabs as a jobs file, each job run as the user cron ran
//! it as.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::CliError;
use crate::config::ConfigError;
use crate::config::crontab::{self, CronJob};
use crate::exit::Outcome;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The crontab to read; `-` or nothing reads standard input (`crontab -l | overnight import-crontab`).
    #[arg(conflicts_with = "machine")]
    file: Option<PathBuf>,
    /// The `/etc/crontab` format, with a user field before the command:
    /// each job runs as its line's user.
    #[arg(long, conflicts_with = "machine")]
    system: bool,
    /// Whose crontab it is (`crontab -l -u alice | overnight import-crontab
    /// --user alice`): each job runs as that user.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["system", "machine"])]
    user: Option<String>,
    /// Every crontab cron reads on this machine, as one jobs file for a
    /// daemon running as root: `/etc/crontab`, `/etc/cron.d/*` and each
    /// user's (`/var/spool/cron/crontabs/USER`, its jobs named `USER-…`),
    /// each job run as the user cron ran it as.
    #[arg(long)]
    machine: bool,
    /// With `--machine`: the folder that holds `etc/` and `var/` (a copy
    /// of another machine's, or a mounted disk).
    #[arg(long, value_name = "DIR", default_value = "/", requires = "machine")]
    root: PathBuf,
}

pub(super) fn run(args: Args) -> Result<Outcome, CliError> {
    let (jobs, source, text) = if args.machine {
        let (jobs, sources) = machine(&args.root)?;
        (jobs, sources.join(", "), String::new())
    } else {
        let (name, text) = read(args.file.as_deref())?;
        let mut jobs = crontab::parse(&name, &text, args.system)?;
        if let Some(user) = &args.user {
            jobs.iter_mut()
                .for_each(|job| job.user = Some(user.clone()));
        }
        (jobs, name.display().to_string(), text)
    };
    if jobs.is_empty() {
        eprintln!(
            "note: `{source}` has no job line (all comments or variables); the jobs file has no jobs"
        );
        print!("{}", crontab::empty_yaml(&text, &source));
        return Ok(Outcome::Success);
    }
    for job in jobs.iter().filter(|j| !j.hidden_output.is_empty()) {
        eprintln!(
            "warning: {}:{}: `{}` keeps the output of `{}` from overnight (its capture, log and report); remove it to have overnight see the output",
            job.source.as_deref().unwrap_or(&source),
            job.line,
            job.hidden_output.join(" "),
            job.name
        );
    }
    print!("{}", crontab::to_yaml(&jobs, &source));
    Ok(Outcome::Success)
}

/// The crontab at `file`, or on standard input.
fn read(file: Option<&Path>) -> Result<(PathBuf, String), CliError> {
    match file.filter(|f| *f != Path::new("-")) {
        Some(path) => Ok((path.to_path_buf(), read_file(path)?)),
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| {
                CliError::Usage(format!("cannot read the crontab from standard input: {e}"))
            })?;
            Ok((PathBuf::from("<stdin>"), text))
        }
    }
}

fn read_file(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| {
        CliError::from(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// What cron reads under `root`, in its order: `/etc/crontab`, the files
/// of `/etc/cron.d` and the users' crontabs (a name cron would skip, such
/// as `x.dpkg-old` or a `crontab -e` temporary, is skipped too). The jobs,
/// and the files they came from.
fn machine(root: &Path) -> Result<(Vec<CronJob>, Vec<String>), CliError> {
    let mut sets = Vec::new();
    let mut sources = Vec::new();
    // A job of `/etc/cron.d/NAME` is named NAME (a package's name says more
    // than its command's); a user's, USER-COMMAND.
    let mut take = |path: &Path, system: bool, user: Option<&str>| -> Result<(), CliError> {
        let text = read_file(path)?;
        let mut jobs = crontab::parse(path, &without_spool_header(&text), system)?;
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        for job in &mut jobs {
            job.source = Some(path.display().to_string());
            match user {
                Some(user) => {
                    job.name = format!("{user}-{}", job.name);
                    job.user = Some(user.to_string());
                }
                None if path.parent().is_some_and(|dir| dir.ends_with("cron.d")) => {
                    job.name = file.to_string();
                }
                None => {}
            }
        }
        sources.push(path.display().to_string());
        sets.push(jobs);
        Ok(())
    };
    let system = root.join("etc/crontab");
    if system.exists() {
        take(&system, true, None)?;
    }
    for path in cron_files(&root.join("etc/cron.d"))? {
        take(&path, true, None)?;
    }
    for path in cron_files(&root.join("var/spool/cron/crontabs"))? {
        let user = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        take(&path, false, Some(&user))?;
    }
    Ok((crontab::merged(sets), sources))
}

/// A user's crontab with the lines `crontab` puts above it in the spool
/// ("# DO NOT EDIT THIS FILE…", "# (…installed on…)") blanked: they are
/// not the first job's description. Blanked, not removed, so that line
/// numbers stay the file's.
fn without_spool_header(text: &str) -> String {
    let mut header = text.starts_with("# DO NOT EDIT THIS FILE");
    text.lines()
        .map(|line| {
            header &= line.starts_with("# DO NOT EDIT") || line.starts_with("# (");
            if header { "" } else { line }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The files of `dir` cron reads, by name; none when there is no `dir`.
fn cron_files(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(CliError::Usage(format!(
                "cannot read `{}`: {e}",
                dir.display()
            )));
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
        })
        .collect();
    files.sort();
    Ok(files)
}
