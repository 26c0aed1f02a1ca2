//! `overnight import-crontab`: a crontab turned into a jobs file.
//!
//! Cron's rules are kept: an environment line (`NAME=value`) applies to the
//! job lines after it; `SHELL` runs the command, `CRON_TZ` sets the zone,
//! `MAILTO` is kept as the job's mail recipient, anything else goes into the
//! job's environment (what all jobs share, into `defaults`). Comment lines
//! right above a job line become its description. In a command, an
//! unescaped `%` starts cron's standard input and further `%`s are
//! newlines; that input is handed over as a quoted heredoc, byte for byte.
//! The YAML is written with every string double-quoted in JSON style, which
//! YAML reads as-is.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use super::node::Pos;
use super::{ConfigError, Problem, name_from_program};
use crate::schedule::Schedule;
use crate::zone::Zone;

/// One job read from a crontab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronJob {
    /// A unique name made from the command.
    pub name: String,
    /// The comment lines above it.
    pub description: Option<String>,
    /// The five fields or the macro, as written.
    pub schedule: String,
    /// `CRON_TZ` in force, if any.
    pub timezone: Option<String>,
    /// The command for the jobs file.
    pub command: Command,
    /// Variables in force (without `SHELL`, `CRON_TZ`, `MAILTO`).
    pub env: BTreeMap<String, String>,
    /// `MAILTO` in force, if any (empty: no mail).
    pub mailto: Option<String>,
    /// Whom cron ran it as: the user field of a system crontab, or the
    /// owner of a user's crontab; the job's `user`.
    pub user: Option<String>,
    /// The file it came from, when a jobs file gathers several.
    pub source: Option<String>,
    /// The line it came from.
    pub line: usize,
    /// Redirections in the command that hide its output from overnight
    /// (`> /dev/null`, `2>&1`, `>> file`), as written.
    pub hidden_output: Vec<String>,
}

/// How the command is written in the jobs file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run by `/bin/sh -c`.
    Shell(String),
    /// Run by another shell: `[SHELL, -c, text]`.
    Argv(Vec<String>),
}

/// Reads a crontab; `system` expects the user field of `/etc/crontab`.
pub fn parse(path: &Path, text: &str, system: bool) -> Result<Vec<CronJob>, ConfigError> {
    let mut problems = Vec::new();
    let mut problem = |line: usize, col: usize, message: String| {
        problems.push(Problem {
            file: path.to_path_buf(),
            pos: Pos {
                line: line as u64,
                col: col as u64,
            },
            message,
        })
    };
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut comments: Vec<String> = Vec::new();
    let mut names = HashSet::new();
    let mut jobs = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim_start();
        let indent = raw.len() - line.len() + 1;
        if line.trim().is_empty() {
            comments.clear();
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            comments.push(comment.trim().to_string());
            continue;
        }
        if let Some((name, value)) = assignment(line) {
            env.insert(name, value);
            continue;
        }
        let description = (!comments.is_empty()).then(|| comments.join("\n"));
        comments.clear();
        let (schedule, rest) = match split_schedule(line) {
            Some(parts) => parts,
            None => {
                problem(number, indent, "not a job line (five time fields or a macro, then a command), an environment line (NAME=value) or a comment".into());
                continue;
            }
        };
        let (user, command) = if system {
            match rest.split_once(char::is_whitespace) {
                Some((user, command)) => (Some(user.to_string()), command.trim_start()),
                None => {
                    problem(
                        number,
                        indent,
                        "a system crontab line needs a user before the command".into(),
                    );
                    continue;
                }
            }
        } else {
            (None, rest)
        };
        if command.is_empty() {
            problem(
                number,
                indent,
                "the line has a schedule but no command".into(),
            );
            continue;
        }
        let zone = env.get("CRON_TZ").cloned();
        let tz = match zone.as_deref().map(str::parse::<Zone>) {
            Some(Err(_)) => {
                problem(
                    number,
                    indent,
                    format!(
                        "unknown time zone `{}` in CRON_TZ",
                        zone.clone().unwrap_or_default()
                    ),
                );
                continue;
            }
            Some(Ok(tz)) => tz,
            None => Zone::utc(),
        };
        if let Err(e) = Schedule::parse(&schedule, tz) {
            problem(number, indent, format!("bad schedule: {e}"));
            continue;
        }
        let script = match cron_percent(command) {
            Ok(script) => script,
            Err(why) => {
                problem(number, indent, why);
                continue;
            }
        };
        // Cron's standard input (a heredoc after the first line) is text.
        let hidden_output = redirections(script.lines().next().unwrap_or_default());
        let command = match env.get("SHELL").map(String::as_str) {
            None | Some("/bin/sh") | Some("sh") => Command::Shell(script),
            Some(shell) => Command::Argv(vec![shell.to_string(), "-c".into(), script]),
        };
        let mut job_env = env.clone();
        for special in ["SHELL", "CRON_TZ", "MAILTO"] {
            job_env.remove(special);
        }
        jobs.push(CronJob {
            name: unique_name(&name_for(rest_command(&command)), &mut names),
            description,
            schedule,
            timezone: zone,
            command,
            env: job_env,
            mailto: env.get("MAILTO").cloned(),
            user,
            source: None,
            line: number,
            hidden_output,
        });
    }
    if problems.is_empty() {
        Ok(jobs)
    } else {
        Err(ConfigError::invalid(problems))
    }
}

/// The output redirections of a shell command, outside quotes: `>`,
/// `>>`, `2>`, `&>`, `2>&1`, each with its target (`> /dev/null`).
pub fn redirections(command: &str) -> Vec<String> {
    let bytes = command.as_bytes();
    let mut found = Vec::new();
    let mut quote = None;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(b'"') if c == b'\\' => i += 1,
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if c == b'\\' => i += 1,
            None if c == b'>' => {
                // The file descriptor or `&` just before belongs to it.
                let mut start = i;
                while start > 0 && (bytes[start - 1].is_ascii_digit() || bytes[start - 1] == b'&') {
                    start -= 1;
                }
                let mut end = i + 1;
                if bytes.get(end) == Some(&b'>') {
                    end += 1;
                }
                if bytes.get(end) == Some(&b'&') {
                    end += 1;
                }
                while bytes.get(end) == Some(&b' ') {
                    end += 1;
                }
                while end < bytes.len() && !b" \t;|&<>".contains(&bytes[end]) {
                    end += 1;
                }
                found.push(command[start..end].trim_end().to_string());
                i = end;
                continue;
            }
            None => {}
        }
        i += 1;
    }
    found
}

fn rest_command(command: &Command) -> &str {
    match command {
        Command::Shell(s) => s,
        Command::Argv(argv) => &argv[2],
    }
}

/// `NAME=value`, `NAME = "value"`: cron's environment lines.
fn assignment(line: &str) -> Option<(String, String)> {
    let (name, value) = line.split_once('=')?;
    let name = name.trim();
    let starts_like_a_field =
        name.starts_with(|c: char| c.is_ascii_digit() || c == '*' || c == '@');
    if name.is_empty()
        || starts_like_a_field
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return None;
    }
    let value = value.trim();
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
        .unwrap_or(value);
    Some((name.to_string(), unquoted.to_string()))
}

/// The schedule (five fields or a macro) and the rest of the line.
fn split_schedule(line: &str) -> Option<(String, &str)> {
    let fields = if line.starts_with('@') { 1 } else { 5 };
    let mut rest = line;
    let mut taken = Vec::new();
    for _ in 0..fields {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        taken.push(&rest[..end]);
        rest = &rest[end..];
    }
    Some((taken.join(" "), rest.trim_start()))
}

/// Cron's `%`: the first unescaped one ends the command and starts its
/// standard input, later ones are newlines; `\%` is a plain `%`.
fn cron_percent(command: &str) -> Result<String, String> {
    let mut parts = vec![String::new()];
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'%') => {
                parts.last_mut().expect("never empty").push('%');
                chars.next();
            }
            '%' => parts.push(String::new()),
            c => parts.last_mut().expect("never empty").push(c),
        }
    }
    let command = parts.remove(0).trim_end().to_string();
    if parts.is_empty() {
        return Ok(command);
    }
    const END: &str = "OVERNIGHT_STDIN";
    let input = parts.join("\n");
    if input.lines().any(|l| l == END) {
        return Err(format!(
            "the standard input after `%` contains a line `{END}`, which cannot be passed on; move the input into a file"
        ));
    }
    Ok(format!("{command} <<'{END}'\n{input}\n{END}"))
}

/// Words that say how a program runs, not which: skipped when naming.
const WRAPPERS: &[&str] = &[
    "cd",
    "test",
    "[",
    "nice",
    "ionice",
    "env",
    "sudo",
    "exec",
    "timeout",
    "flock",
    "chronic",
    "if",
    "then",
    "(",
    "sh",
    "bash",
    "/bin/sh",
    "/bin/bash",
    "true",
    "false",
    "overnight",
];

/// A job name from a command: the file name of its first real program.
fn name_for(command: &str) -> String {
    let first_line = command.lines().next().unwrap_or_default();
    let mut words = first_line
        .split(|c: char| c.is_whitespace() || "&|;()".contains(c))
        .filter(|w| !w.is_empty());
    let mut program = "job";
    while let Some(word) = words.next() {
        if word == "cd" {
            words.next(); // its folder
        } else if !word.starts_with('-')
            && !word.contains('=')
            && !WRAPPERS.contains(&word)
            && !word.chars().all(|c| c.is_ascii_digit())
        {
            program = word;
            break;
        }
    }
    name_from_program(program).unwrap_or_else(|| "job".to_string())
}

/// The jobs of several crontabs as those of one file: each name made
/// unique among them all (`backup`, `backup-2`), in the order given.
pub fn merged(sets: Vec<Vec<CronJob>>) -> Vec<CronJob> {
    let mut taken = HashSet::new();
    let mut jobs: Vec<CronJob> = sets.into_iter().flatten().collect();
    for job in &mut jobs {
        job.name = unique_name(&job.name, &mut taken);
    }
    jobs
}

fn unique_name(base: &str, taken: &mut HashSet<String>) -> String {
    let mut name = base.to_string();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// The jobs file of a crontab with no job line: valid and empty, its
/// comment lines kept as comments.
pub fn empty_yaml(text: &str, source: &str) -> String {
    let mut out =
        format!("# Imported from {source} by `overnight import-crontab`: it has no job line.\n");
    for line in text.lines().map(str::trim).filter(|l| l.starts_with('#')) {
        let _ = writeln!(out, "{line}");
    }
    out.push_str("jobs: {}\n");
    out
}

/// The jobs file for these jobs, as YAML text.
pub fn to_yaml(jobs: &[CronJob], source: &str) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("strings serialise");
    let mut out = format!("# Imported from {source} by `overnight import-crontab`.\n");
    // Variables every job has, with the same value, go to `defaults`.
    let shared: BTreeMap<&String, &String> = jobs
        .first()
        .map(|first| {
            first
                .env
                .iter()
                .filter(|(k, v)| jobs.iter().all(|j| j.env.get(*k) == Some(*v)))
                .collect()
        })
        .unwrap_or_default();
    if !shared.is_empty() {
        out.push_str("defaults:\n  env:\n");
        for (k, v) in &shared {
            let _ = writeln!(out, "    {}: {}", q(k), q(v));
        }
    }
    out.push_str("jobs:\n");
    for job in jobs {
        out.push('\n');
        let at = match &job.source {
            Some(file) => format!("{file}:{}", job.line),
            None => format!("line {}", job.line),
        };
        if job.source.is_some() {
            let _ = writeln!(out, "  # from {at}");
        }
        if !job.hidden_output.is_empty() {
            let _ = writeln!(
                out,
                "  # {at}: {} keeps the output from overnight (capture, log, report); remove it to have overnight see it",
                job.hidden_output.join(" ")
            );
        }
        let _ = writeln!(out, "  {}:", q(&job.name));
        if let Some(d) = &job.description {
            let _ = writeln!(out, "    description: {}", q(d));
        }
        let _ = writeln!(out, "    schedule: {}", q(&job.schedule));
        if let Some(user) = &job.user {
            let _ = writeln!(out, "    user: {}", q(user));
        }
        if let Some(tz) = &job.timezone {
            let _ = writeln!(out, "    timezone: {}", q(tz));
        }
        match &job.command {
            Command::Shell(s) => {
                let _ = writeln!(out, "    command: {}", q(s));
            }
            Command::Argv(argv) => {
                let words: Vec<String> = argv.iter().map(|w| q(w)).collect();
                let _ = writeln!(out, "    command: [{}]", words.join(", "));
            }
        }
        let own: Vec<_> = job
            .env
            .iter()
            .filter(|(k, _)| !shared.contains_key(k))
            .collect();
        if !own.is_empty() {
            out.push_str("    env:\n");
            for (k, v) in own {
                let _ = writeln!(out, "      {}: {}", q(k), q(v));
            }
        }
        if let Some(to) = &job.mailto {
            let _ = writeln!(out, "    mailto: {}", q(to));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_becomes_a_heredoc_and_escapes_stay() {
        assert_eq!(cron_percent("date +\\%F").unwrap(), "date +%F");
        assert_eq!(
            cron_percent("mail -s hi bob%Dear Bob,%bye").unwrap(),
            "mail -s hi bob <<'OVERNIGHT_STDIN'\nDear Bob,\nbye\nOVERNIGHT_STDIN"
        );
    }

    #[test]
    fn names_come_from_the_program() {
        assert_eq!(name_for("/usr/local/bin/backup.sh --full"), "backup.sh");
        assert_eq!(
            name_for("cd /srv/app && ./bin/rake reports:nightly"),
            "rake"
        );
        assert_eq!(
            name_for("test -x /usr/sbin/anacron || run-parts /etc/cron.daily"),
            "anacron"
        );
        assert_eq!(name_for("FOO=1 python3 job.py"), "python3");
        let mut taken = HashSet::new();
        assert_eq!(unique_name("a", &mut taken), "a");
        assert_eq!(unique_name("a", &mut taken), "a-2");
    }

    #[test]
    fn environment_lines() {
        assert_eq!(
            assignment("PATH=/usr/bin:/bin"),
            Some(("PATH".into(), "/usr/bin:/bin".into()))
        );
        assert_eq!(
            assignment("MAILTO = \"ops@example.com\""),
            Some(("MAILTO".into(), "ops@example.com".into()))
        );
        assert_eq!(assignment("*/5 * * * * FOO=1 cmd"), None);
        assert_eq!(assignment("0 1 * * * a=b"), None);
    }
}
