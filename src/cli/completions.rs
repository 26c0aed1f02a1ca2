//! `overnight completions bash|zsh|fish`: a script that has the shell ask
//! overnight itself what may come next, so that job, flow and trigger
//! names are the jobs file's as it is now, not as it was when the script
//! was written.
//!
//! The script calls `overnight` back with `OVERNIGHT_COMPLETE=SHELL` and
//! the words typed so far; [`answer_if_asked`], first thing in `main`,
//! answers and exits.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use clap_complete::env::{CompleteEnv, Shells};

use super::{Cli, CliError};
use crate::config::{self, Config};
use crate::exit::Outcome;

/// The variable that makes a run of `overnight` a completion request.
const VAR: &str = "OVERNIGHT_COMPLETE";

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The shell: `source <(overnight completions bash)` in ~/.bashrc,
    /// `source <(overnight completions zsh)` in ~/.zshrc,
    /// `overnight completions fish | source` in config.fish.
    shell: Shell,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub(super) fn run(args: Args) -> Result<Outcome, CliError> {
    let name = match args.shell {
        Shell::Bash => "bash",
        Shell::Zsh => "zsh",
        Shell::Fish => "fish",
    };
    let shells = Shells::builtins();
    let shell = shells
        .completer(name)
        .expect("bash, zsh and fish are built in");
    let mut script = Vec::new();
    shell
        .write_registration(VAR, "overnight", "overnight", &completer(), &mut script)
        .and_then(|()| std::io::stdout().write_all(&script))
        .map_err(|e| CliError::Usage(format!("cannot write the script: {e}")))?;
    Ok(Outcome::Success)
}

/// Answers a completion request and exits; returns at once otherwise.
pub(super) fn answer_if_asked() {
    CompleteEnv::with_factory(Cli::command).var(VAR).complete();
}

/// The program the script calls back: as this one was called, made
/// absolute when it was a relative path (`./target/release/overnight`).
fn completer() -> String {
    let called = PathBuf::from(
        std::env::args_os()
            .next()
            .unwrap_or_else(|| "overnight".into()),
    );
    let path = if called.components().count() > 1 && called.is_relative() {
        std::env::current_dir().map_or(called.clone(), |dir| dir.join(&called))
    } else {
        called
    };
    path.to_string_lossy().into_owned()
}

/// The names of the jobs in the jobs file, each with its description.
pub(super) fn jobs() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        named(|config| {
            config
                .jobs
                .iter()
                .map(|job| candidate(&job.name, job.description.as_deref()))
                .collect()
        })
    })
}

/// The names of the flows in the jobs file, each with its description.
pub(super) fn flows() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        named(|config| {
            config
                .flows
                .iter()
                .map(|flow| candidate(&flow.name, flow.description.as_deref()))
                .collect()
        })
    })
}

/// The names of the trigger rules in the jobs file, the jobs' own too.
pub(super) fn triggers() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        named(|config| {
            config
                .triggers
                .iter()
                .chain(config.jobs.iter().flat_map(|job| &job.triggers))
                .map(|rule| candidate(&rule.name, None))
                .collect()
        })
    })
}

fn candidate(name: &str, help: Option<&str>) -> CompletionCandidate {
    CompletionCandidate::new(name).help(help.map(|h| h.to_string().into()))
}

/// What `pick` takes from the jobs file the command line being completed
/// names (`-c FILE`), else the usual one; nothing when there is none or it
/// does not load: a completion has nowhere to say why.
fn named(pick: impl Fn(&Config) -> Vec<CompletionCandidate>) -> Vec<CompletionCandidate> {
    let explicit = config_in(std::env::args_os());
    // What of the file could be read: one mistake in it (a user this
    // workstation does not have) does not hide every name.
    config::find(explicit.as_deref())
        .and_then(|path| Config::load_partial(&path).ok())
        .map_or_else(Vec::new, |(config, _)| pick(&config))
}

/// The `-c FILE` / `--config FILE` / `--config=FILE` among the words typed
/// (those after `--` in the call back), `~/` read as the home folder, as
/// the shell will when the command runs.
fn config_in(args: impl Iterator<Item = OsString>) -> Option<PathBuf> {
    let words: Vec<String> = args
        .skip_while(|a| a != "--")
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let value = words
        .iter()
        .enumerate()
        .find_map(|(i, word)| match word.as_str() {
            "-c" | "--config" => words.get(i + 1).cloned(),
            _ => word
                .strip_prefix("--config=")
                .or_else(|| word.strip_prefix("-c").filter(|v| !v.is_empty()))
                .map(str::to_string),
        })?;
    Some(match value.strip_prefix("~/") {
        Some(rest) => PathBuf::from(std::env::var_os("HOME")?).join(rest),
        None => PathBuf::from(value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(line: &str) -> Option<PathBuf> {
        let words = format!("overnight -- {line}");
        config_in(words.split(' ').map(OsString::from))
    }

    #[test]
    fn the_jobs_file_of_the_line_being_completed() {
        assert_eq!(config("overnight run -c a.yaml x"), Some("a.yaml".into()));
        assert_eq!(
            config("overnight run --config b.yaml x"),
            Some("b.yaml".into())
        );
        assert_eq!(
            config("overnight run --config=c.yaml x"),
            Some("c.yaml".into())
        );
        assert_eq!(config("overnight run -cd.yaml x"), Some("d.yaml".into()));
        assert_eq!(config("overnight run x"), None);
        assert_eq!(config("overnight run x -c"), None, "no file named yet");
    }
}
