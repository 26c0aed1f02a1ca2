//! From the raw tree to a [`Config`]: every check of the jobs file, every
//! problem collected, none fatal until the end.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::zone::Zone;

use super::check::Check;
use super::node::{Node, Pos, Value};
use super::trigger::{Mail, SENDMAIL};
use super::{
    Action, CommandSpec, Concurrency, Config, ConfigError, DEFAULT_KILL_GRACE, Job, Problem,
    Shutdown,
};
use crate::schedule::Schedule;

const TOP_KEYS: &[&str] = &[
    "timezone",
    "state_dir",
    "log_config",
    "listen",
    "store",
    "host",
    "tags",
    "cluster",
    "api",
    "shutdown_grace",
    "shutdown",
    "max_parallel",
    "retention",
    "smtp",
    "sendmail",
    "triggers",
    "defaults",
    "jobs",
    "flows",
];
/// Keys a job may take from `defaults`.
const DEFAULT_KEYS: &[&str] = &[
    "timezone",
    "workdir",
    "user",
    "env",
    "timeout",
    "kill_grace",
    "stderr_level",
    "warning_exit_codes",
    "catch_up",
    "starting_deadline",
    "jitter",
    "mailto",
    "concurrency",
    "queue_limit",
    "locks",
    "hosts",
    "tags",
    "lock_wait",
    "retries",
    "env_inherit",
    "limits",
    "max_duration",
    "capture_max",
    "error_lines",
];
const JOB_ONLY_KEYS: &[&str] = &["description", "schedule", "command", "http", "triggers"];

/// Validates the text of the jobs file at `path`.
pub(super) fn config(path: &Path, text: &str) -> Result<Config, ConfigError> {
    match partial(path, text)? {
        (config, problems) if problems.is_empty() => Ok(config),
        (_, problems) => Err(ConfigError::invalid(problems)),
    }
}

/// What of the jobs file at `path` could be read, and every problem in it;
/// `Err` when it is not YAML at all.
pub(super) fn partial(path: &Path, text: &str) -> Result<(Config, Vec<Problem>), ConfigError> {
    let mut check = Check::new(path);
    let root = match Node::parse(text) {
        Ok(node) => node,
        Err((pos, message)) => {
            check.problem(pos, message);
            return Err(ConfigError::invalid(check.problems));
        }
    };
    let config = check.config(&root);
    Ok((config, check.problems))
}

impl Check<'_> {
    pub(super) fn zone(&mut self, node: &Node) -> Option<Zone> {
        let name = self.string(node, "`timezone`")?;
        match name.parse::<Zone>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                let names = Zone::names();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let hint = match super::check::closest(&name, &names) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => "use an IANA name such as `Europe/London` or `UTC`".into(),
                };
                self.problem(node.pos, format!("unknown time zone `{name}`; {hint}"));
                None
            }
        }
    }

    fn config(&mut self, root: &Node) -> Config {
        // Absolute, so the state directory (and `$OVERNIGHT_REPORT`) mean the
        // same to a job with its own `workdir`.
        let file = std::path::absolute(self.file).unwrap_or_else(|_| self.file.to_path_buf());
        let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        let mut config = Config {
            path: self.file.to_path_buf(),
            timezone: Zone::local(),
            state_dir: dir.join(".overnight"),
            log_config: None,
            listen: None,
            api: Default::default(),
            shutdown_grace: Duration::from_secs(30),
            max_parallel: None,
            shutdown: Shutdown::default(),
            mail: Default::default(),
            triggers: Vec::new(),
            jobs: Vec::new(),
            flows: Vec::new(),
            retention: Default::default(),
            store: None,
            cluster: Default::default(),
        };
        let mut defaults = Vec::new();
        let mut jobs_node = None;
        let mut flows_node = None;
        let mut rules = Vec::new();
        let mut mail = Mail::default();
        let mut explicit_sendmail = false;
        let mut listen_pos = None;
        for (key, value) in self.mapping(root, "the jobs file", TOP_KEYS) {
            match key {
                "timezone" => config.timezone = self.zone(value).unwrap_or(config.timezone),
                "state_dir" => {
                    if let Some(s) = self.string(value, "`state_dir`") {
                        config.state_dir = dir.join(s);
                    }
                }
                // Beside the jobs file as it was named, so that problems in
                // it and its log files read as the operator wrote them.
                "log_config" => {
                    let beside = self.file.parent().unwrap_or(Path::new(""));
                    config.log_config = self.string(value, "`log_config`").map(|s| beside.join(s))
                }
                "store" => config.store = self.store(value),
                "host" => {
                    if let Some(host) = self.host(value) {
                        config.cluster.host = host;
                    }
                }
                "tags" => config.cluster.tags = self.names(value, "`tags`"),
                "cluster" => self.cluster(value, &mut config.cluster),
                "listen" => {
                    if let Some(s) = self.string(value, "`listen`") {
                        match s.parse::<SocketAddr>() {
                            Ok(addr) => {
                                config.listen = Some(addr);
                                listen_pos = Some(value.pos);
                            }
                            Err(_) => self.problem(
                                value.pos,
                                format!(
                                    "bad address `{s}` for `listen`; write it like `127.0.0.1:7411`"
                                ),
                            ),
                        }
                    }
                }
                "api" => config.api = self.api(value),
                "shutdown_grace" => {
                    config.shutdown_grace = self
                        .duration(value, "`shutdown_grace`")
                        .unwrap_or(config.shutdown_grace)
                }
                "shutdown" => {
                    let options = [("wait", Shutdown::Wait), ("terminate", Shutdown::Terminate)];
                    config.shutdown = self
                        .keyword(value, "shutdown", &options)
                        .unwrap_or_default();
                }
                "max_parallel" => match value.value {
                    Value::Int(n @ 1..=100_000) => config.max_parallel = Some(n as usize),
                    _ => self.problem(
                        value.pos,
                        "`max_parallel` must be a number from 1 to 100000",
                    ),
                },
                "retention" => config.retention = self.retention(value),
                "smtp" => mail.smtp = self.smtp(value),
                "sendmail" => {
                    explicit_sendmail = true;
                    if let Some(path) = self.string(value, "`sendmail`").map(|p| dir.join(p)) {
                        if path.is_file() {
                            mail.sendmail = Some(path);
                        } else {
                            self.problem(
                                value.pos,
                                format!("no sendmail at `{}`; fix `sendmail:` or send with an `smtp:` block", path.display()),
                            );
                        }
                    }
                }
                "triggers" => rules = self.triggers(value, None),
                "defaults" => defaults = self.mapping(value, "`defaults`", DEFAULT_KEYS),
                "jobs" => jobs_node = Some(value),
                "flows" => flows_node = Some(value),
                _ => unreachable!("mapping() returns known keys only"),
            }
        }
        let listen = config.listen.zip(listen_pos);
        if let Some((why, pos)) =
            listen.and_then(|(addr, pos)| Some((config.api.refusal(addr)?, pos)))
        {
            self.problem(pos, why);
        }
        // The defaults are read once, in the file's zone: a mistake in one
        // is reported at it, not again at every job.
        let mut template = Job::adhoc(String::new(), Vec::new());
        template.timezone = config.timezone.clone();
        for (key, value) in defaults {
            self.setting(&mut template, key, value);
        }
        let Some(jobs_node) = jobs_node else {
            self.problem(
                root.pos,
                "the jobs file has no `jobs:` mapping; add one with at least one job",
            );
            return config;
        };
        let Value::Map(entries) = &jobs_node.value else {
            self.problem(
                jobs_node.pos,
                format!(
                    "`jobs` must be a mapping of job names to jobs, not {}",
                    jobs_node.kind()
                ),
            );
            return config;
        };
        let mut seen: HashSet<&str> = HashSet::new();
        for (key, value) in entries {
            let Some(name) = key.as_str() else {
                self.problem(key.pos, "job names must be strings");
                continue;
            };
            if !seen.insert(name) {
                self.problem(
                    key.pos,
                    format!("duplicate job name `{name}`; job names must be unique"),
                );
                continue;
            }
            if !valid_name(name) {
                self.problem(
                    key.pos,
                    format!("bad job name `{name}`: use only letters, digits, `.`, `_` and `-`"),
                );
            }
            if let Some(job) = self.job(name, key.pos, value, &template) {
                config.jobs.push(Arc::new(job));
            }
        }
        if mail.smtp.is_none() && !explicit_sendmail && Path::new(SENDMAIL).exists() {
            mail.sendmail = Some(SENDMAIL.into());
        }
        if let Some(node) = flows_node {
            config.flows = self.flows(node, &config.jobs, &config.timezone);
        }
        if config.store.is_none()
            && let Some(url) = super::store_from_environment()
        {
            match super::is_postgres_url(&url) {
                true => config.store = Some(url),
                false => self.problem(
                    root.pos,
                    format!(
                        "`${}` is not a PostgreSQL URL (`postgres://…`); unset it for SQLite in the state directory",
                        super::STORE_VARIABLE
                    ),
                ),
            }
        }
        self.resolve_triggers(&mut config, rules, mail);
        let withheld: Arc<[String]> = config.secret_vars().into();
        for job in config.jobs.iter_mut().map(Arc::make_mut) {
            job.withheld = Arc::clone(&withheld);
        }
        config
    }

    fn job(&mut self, name: &str, at: Pos, node: &Node, template: &Job) -> Option<Job> {
        let known: Vec<&str> = DEFAULT_KEYS.iter().chain(JOB_ONLY_KEYS).copied().collect();
        let own = self.mapping(node, &format!("job `{name}`"), &known);
        let mut job = template.clone();
        job.name = name.to_string();
        let mut command = None;
        let mut http = None;
        let mut own_rules = Vec::new();
        let mut schedule = None;
        let mut own_user = None;
        let mut ok = true;
        // Over the defaults; `env` merges key by key.
        for (key, value) in own {
            let before = self.problems.len();
            if key == "user" {
                own_user = Some(value);
            }
            match key {
                "description" => job.description = self.string(value, "`description`"),
                "schedule" => schedule = Some(value),
                "command" => command = Some(value),
                "http" => http = Some(value),
                "triggers" => own_rules = self.triggers(value, Some(name)),
                _ => self.setting(&mut job, key, value),
            }
            ok &= self.problems.len() == before;
        }
        // The schedule is read last, in the job's final zone.
        if let Some(node) = schedule
            && let Some(expr) = self.string(node, "`schedule`")
        {
            match Schedule::parse(&expr, job.timezone.clone()) {
                Ok(s) => job.schedule = Some(s),
                Err(e) => {
                    ok = false;
                    self.problem(node.pos, format!("bad schedule: {e}"));
                }
            }
        }
        let action = match (command, http) {
            (Some(node), None) => self.command(node).map(Action::Command),
            (None, Some(node)) => self.http(node, name).map(Action::Http),
            (Some(_), Some(node)) => {
                self.problem(
                    node.pos,
                    format!("job `{name}` has both `command` and `http`; give it one of them"),
                );
                None
            }
            (None, None) => {
                self.problem(
                    at,
                    format!("job `{name}` has no `command` (or `http`); add what it runs"),
                );
                None
            }
        };
        // overnight makes an HTTP job's request itself: a `user` from the
        // defaults does not apply, and its own is a mistake.
        if let Some(Action::Http(_)) = &action {
            if let Some(node) = own_user {
                self.problem(
                    node.pos,
                    format!("job `{name}` is an HTTP job: overnight makes its request itself, so only command jobs take a `user`"),
                );
                ok = false;
            }
            job.user = None;
        }
        match action {
            Some(action) => job.action = action,
            None => ok = false,
        }
        self.pending_rules.push((name.to_string(), own_rules));
        ok.then_some(job)
    }

    /// One setting a job may take from `defaults`, onto `job`.
    fn setting(&mut self, job: &mut Job, key: &str, value: &Node) {
        match key {
            "timezone" => job.timezone = self.zone(value).unwrap_or_else(|| job.timezone.clone()),
            "workdir" => job.workdir = self.string(value, "`workdir`").map(PathBuf::from),
            "user" => job.user = self.user(value),
            "env" => self.env(value, &mut job.env),
            "timeout" => job.timeout = self.duration(value, "`timeout`"),
            "kill_grace" => {
                job.kill_grace = self
                    .duration(value, "`kill_grace`")
                    .unwrap_or(DEFAULT_KILL_GRACE)
            }
            "stderr_level" => job.stderr_level = self.level(value).unwrap_or(job.stderr_level),
            "warning_exit_codes" => job.warning_exit_codes = self.exit_codes(value),
            "catch_up" => job.catch_up = self.catch_up(value),
            "starting_deadline" => {
                job.starting_deadline = self.duration(value, "`starting_deadline`")
            }
            "jitter" => job.jitter = self.duration(value, "`jitter`"),
            "mailto" => job.mailto = self.string(value, "`mailto`"),
            "concurrency" => {
                let options = [
                    ("skip", Concurrency::Skip),
                    ("queue", Concurrency::Queue),
                    ("replace", Concurrency::Replace),
                    ("allow", Concurrency::Allow),
                ];
                job.concurrency = self
                    .keyword(value, "concurrency", &options)
                    .unwrap_or_default();
            }
            "queue_limit" => match value.value {
                Value::Int(n @ 1..=10_000) => job.queue_limit = n as usize,
                _ => self.problem(value.pos, "`queue_limit` must be a number from 1 to 10000"),
            },
            "locks" => job.locks = self.locks(value),
            "hosts" => job.placement.hosts = self.names(value, "`hosts`"),
            "tags" => job.placement.tags = self.names(value, "`tags`"),
            "lock_wait" => job.lock_wait = self.duration(value, "`lock_wait`").unwrap_or_default(),
            "retries" => job.retries = self.retries(value),
            "env_inherit" => job.env_inherit = self.boolean(value, "`env_inherit`").unwrap_or(true),
            "limits" => job.limits = self.limits(value),
            "max_duration" => job.max_duration = self.duration(value, "`max_duration`"),
            "capture_max" => {
                job.capture_max = self
                    .size(value, "`capture_max`")
                    .unwrap_or(super::DEFAULT_CAPTURE_MAX)
            }
            "error_lines" => match value.value {
                Value::Int(n @ 0..=1000) => job.error_lines = n as usize,
                _ => self.problem(value.pos, "`error_lines` must be a number from 0 to 1000"),
            },
            _ => unreachable!("mapping() returns known keys only"),
        }
    }

    /// `store:`, a PostgreSQL URL whose secrets are `${VAR}`s.
    fn store(&mut self, node: &Node) -> Option<String> {
        let url = self.string(node, "`store`")?;
        match super::store_problem(&url) {
            Some(why) => {
                self.problem(node.pos, why);
                None
            }
            None => Some(url),
        }
    }

    /// `user:`, a name the user database knows. When the database does
    /// not answer (an LDAP server away at boot), the name is taken as it
    /// is: the run looks it up again, and fails then, saying why.
    fn user(&mut self, node: &Node) -> Option<String> {
        let name = self.string(node, "`user`")?;
        match crate::account::Account::lookup(&name) {
            Err(e @ crate::account::AccountError::NotFound(_)) => {
                self.problem(
                    node.pos,
                    format!("{e}; `user` names the account a job runs as"),
                );
                None
            }
            _ => Some(name),
        }
    }

    fn command(&mut self, node: &Node) -> Option<CommandSpec> {
        let spec = match &node.value {
            Value::Str(s) => CommandSpec::Shell(s.clone()),
            Value::Seq(items) => {
                let mut argv = Vec::new();
                for item in items {
                    match item.scalar() {
                        Some(arg) => argv.push(arg),
                        None => {
                            self.problem(
                                item.pos,
                                "each word of a `command` list must be a string",
                            );
                            return None;
                        }
                    }
                }
                CommandSpec::Argv(argv)
            }
            _ => {
                self.problem(
                    node.pos,
                    format!("`command` must be a string or a list, not {}", node.kind()),
                );
                return None;
            }
        };
        let empty = match &spec {
            CommandSpec::Shell(s) => s.trim().is_empty(),
            CommandSpec::Argv(argv) => argv.first().is_none_or(|p| p.is_empty()),
            CommandSpec::Raw(argv) => argv.first().is_none_or(|p| p.is_empty()),
        };
        if empty {
            self.problem(node.pos, "empty `command`; give the command the job runs");
            return None;
        }
        Some(spec)
    }

    fn env(&mut self, node: &Node, env: &mut BTreeMap<String, String>) {
        for (name, value) in self.string_map(node, "`env`") {
            if name.contains('=') {
                self.problem(
                    node.pos,
                    format!("`env`: the name `{name}` must not contain `=`"),
                );
            } else {
                env.insert(name, value);
            }
        }
    }

    fn level(&mut self, node: &Node) -> Option<log::Level> {
        let text = self.string(node, "`stderr_level`")?;
        let level = text.parse::<log::Level>().ok();
        if level.is_none() {
            self.problem(
                node.pos,
                format!("bad level `{text}`; use error, warn, info, debug or trace"),
            );
        }
        level
    }

    fn exit_codes(&mut self, node: &Node) -> Vec<i32> {
        let Value::Seq(items) = &node.value else {
            self.problem(
                node.pos,
                "`warning_exit_codes` must be a list of exit codes, like `[1, 75]`",
            );
            return Vec::new();
        };
        let mut codes = Vec::new();
        for item in items {
            match item.value {
                Value::Int(code @ 1..=255) => codes.push(code as i32),
                _ => self.problem(
                    item.pos,
                    "an exit code in `warning_exit_codes` must be a number from 1 to 255",
                ),
            }
        }
        codes
    }
}

/// Whether a job name is `[A-Za-z0-9._-]+`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        // `.` and `..` would name a folder above the job's own.
        && !name.bytes().all(|b| b == b'.')
}

/// A job name from a program's path: `/usr/local/bin/backup.sh` →
/// `backup.sh`, anything outside the name alphabet replaced by `-`; `None`
/// when nothing usable is left.
pub fn name_from_program(program: &str) -> Option<String> {
    let base = program
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(program);
    let name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches(|c| c == '-' || c == '.').to_string();
    valid_name(&name).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match config(Path::new("f.yaml"), text) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn every_mistake_is_reported_at_once() {
        let text = "\
jobs:
  a:
    comand: x
  b:
    command: ''
  b:
    command: x
  c d:
    command: x
  e:
    command: x
    schedule: '61 * * * *'
  f:
    command: x
    timezone: Mars/Olympus
  g:
    command: x
    timeout: soon
";
        let got = problems(text);
        assert_eq!(got.len(), 8, "{got:#?}");
        // In line order: the job without a command, then the key that
        // should have been its command.
        assert!(got[0].starts_with("f.yaml:2:3: job `a` has no `command`"));
        assert!(
            got[1].starts_with("f.yaml:3:5: unknown key `comand`"),
            "{}",
            got[1]
        );
        assert!(got[1].contains("did you mean `command`"));
        assert!(
            got.iter()
                .any(|p| p.starts_with("f.yaml:6:3: duplicate job name `b`"))
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("f.yaml:8:3: bad job name `c d`"))
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("f.yaml:12:15: bad schedule"))
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("f.yaml:15:15: unknown time zone"))
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("f.yaml:18:14: bad duration `soon`"))
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("f.yaml:5:14: empty `command`"))
        );
    }

    #[test]
    fn defaults_apply_and_env_merges() {
        let text = "\
timezone: Europe/Paris
defaults:
  timeout: 5m
  env: {A: '1', B: '2'}
jobs:
  j:
    command: [echo, hi]
    env: {B: three}
";
        let cfg = config(Path::new("/x/f.yaml"), text).unwrap();
        let job = &cfg.jobs[0];
        assert_eq!(job.timeout, Some(Duration::from_secs(300)));
        assert_eq!(job.env["A"], "1");
        assert_eq!(job.env["B"], "three");
        assert_eq!(job.timezone, Zone::named("Europe/Paris"));
        assert_eq!(cfg.state_dir, Path::new("/x/.overnight"));
    }

    #[test]
    fn a_flow_runs_only_where_each_of_its_steps_jobs_may() {
        let text = "\
jobs:
  load: {command: x, hosts: [db1, db2]}
  render: {command: x, tags: [gpu]}
  other: {command: x, hosts: [web]}
flows:
  nightly:
    steps:
      load: {job: load}
      render: {job: render, after: load}
  split:
    hosts: [db2, web]
    steps:
      load: {job: load}
      other: {job: other, after: load}
";
        let got = problems(text);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].contains("flow `split` can be driven by no host: its step `other` runs job `other` on hosts web, and the flow (with its steps before) on hosts db2"),
            "{}",
            got[0]
        );
        let fine = text.split("  split:").next().unwrap();
        let config = config(Path::new("f.yaml"), fine).unwrap();
        let placement = &config.flows[0].placement;
        assert_eq!(placement.describe(), "hosts db1, db2; tags gpu");
    }

    #[test]
    fn the_other_hosts_reach_this_ones_api_where_it_says() {
        let listen: SocketAddr = "127.0.0.1:7411".parse().unwrap();
        let anywhere: SocketAddr = "0.0.0.0:7411".parse().unwrap();
        let unset = crate::config::cluster::Cluster::default();
        assert_eq!(unset.api_url(listen, false), "http://127.0.0.1:7411");
        assert_eq!(unset.api_url(listen, true), "https://127.0.0.1:7411");
        let named = format!("http://{}:7411", crate::process::hostname());
        assert_eq!(unset.api_url(anywhere, false), named);
        let text = "cluster: {api: 'https://batch1.internal:7411/'}\njobs:\n  a: {command: x}\n";
        let config = config(Path::new("f.yaml"), text).unwrap();
        assert_eq!(
            config.cluster.api_url(anywhere, false),
            "https://batch1.internal:7411"
        );
        for wrong in [
            "batch1:7411",
            "http://b:1/api",
            "ftp://b:1",
            "http://u:p@b:1",
        ] {
            let got = problems(&format!(
                "cluster: {{api: '{wrong}'}}\njobs:\n  a: {{command: x}}\n"
            ));
            assert!(
                got.len() == 1 && got[0].contains("is not where an API answers"),
                "{wrong}: {got:?}"
            );
        }
    }
}
