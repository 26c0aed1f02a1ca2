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

/// Where a crontab is, which decides what cron makes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin<'a> {
    /// `/etc/crontab`: lines with a user field.
    System,
    /// `/etc/cron.d/NAME`: lines with a user field; jobs named NAME.
    CronD(&'a str),
    /// `/var/spool/cron/crontabs/USER`: USER's; jobs named USER-….
    User(&'a str),
}

/// What cron reads under `root`, in its order: `/etc/crontab`, the files
/// of `/etc/cron.d` and the users' crontabs, each as cron would take it or
/// leave it (a file left is said on stderr). The jobs, and the files they
/// came from.
fn machine(root: &Path) -> Result<(Vec<CronJob>, Vec<String>), CliError> {
    let mut sets = Vec::new();
    let mut sources = Vec::new();
    let mut take = |path: &Path, origin: Origin<'_>| -> Result<(), CliError> {
        if let Some(why) = left_by_cron(path, origin) {
            eprintln!("note: `{}` not imported: {why}", path.display());
            return Ok(());
        }
        sets.push(jobs_of(path, origin)?);
        sources.push(path.display().to_string());
        Ok(())
    };
    let name = |path: &Path| {
        path.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let system = root.join("etc/crontab");
    if system.exists() {
        take(&system, Origin::System)?;
    }
    for path in listed(&root.join("etc/cron.d"))? {
        take(&path, Origin::CronD(&name(&path)))?;
    }
    for path in listed(&root.join("var/spool/cron/crontabs"))? {
        take(&path, Origin::User(&name(&path)))?;
    }
    Ok((crontab::merged(sets), sources))
}

/// The jobs of one crontab of the machine, named and owned as `origin`
/// says.
fn jobs_of(path: &Path, origin: Origin<'_>) -> Result<Vec<CronJob>, CliError> {
    let text = read_file(path)?;
    let system = !matches!(origin, Origin::User(_));
    let mut jobs = crontab::parse(path, &without_spool_header(&text), system)?;
    for job in &mut jobs {
        job.source = Some(path.display().to_string());
        match origin {
            Origin::System => {}
            // A package's name says more than its command's.
            Origin::CronD(file) => job.name = file.to_string(),
            Origin::User(user) => {
                job.name = format!("{user}-{}", job.name);
                job.user = Some(user.to_string());
            }
        }
    }
    Ok(jobs)
}

/// Why cron (Debian's) would not read this crontab, if it would not: a
/// `cron.d` name outside `[A-Za-z0-9_-]` (`x.dpkg-old`), a file not
/// root's or writable by others; a user's crontab whose user is gone, or
/// that is not the user's own and private.
fn left_by_cron(path: &Path, origin: Origin<'_>) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => return Some("not a regular file".into()),
        Err(e) => return Some(format!("cannot read it: {e}")),
    };
    let writable_by_others = meta.mode() & 0o022 != 0;
    match origin {
        Origin::CronD(name)
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
        {
            Some(
                "cron skips `cron.d` names with characters other than letters, digits, `_` and `-`"
                    .into(),
            )
        }
        Origin::System | Origin::CronD(_) if meta.uid() != 0 || writable_by_others => {
            Some(format!(
                "cron reads it only when root owns it and no one else may write it (owner uid {}, mode {:o})",
                meta.uid(),
                meta.mode() & 0o7777
            ))
        }
        Origin::User(name) if name.starts_with('.') || name.starts_with("tmp.") => {
            Some("a hidden or temporary file, which cron skips".into())
        }
        Origin::User(name) => match crate::account::Account::lookup(name) {
            Err(e) => Some(format!("{e}; cron skips it too")),
            Ok(account) if account.uid != meta.uid() || writable_by_others => Some(format!(
                "cron reads a user's crontab only when the user owns it and no one else may write it (owner uid {}, mode {:o})",
                meta.uid(),
                meta.mode() & 0o7777
            )),
            Ok(_) => None,
        },
        _ => None,
    }
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

/// The entries of `dir` by name (symlinks included: cron follows them);
/// none when there is no `dir`.
fn listed(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
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
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    Ok(paths)
}
