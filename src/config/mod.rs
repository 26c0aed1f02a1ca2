//! The jobs file: its model, its defaults, and where it is found.
//!
//! A file is read in two stages: [`node::Node`] holds the raw YAML with
//! positions, and [`validate`] turns it into a [`Config`] or into every
//! [`Problem`] it has. Everything after loading takes `&Config` and never
//! checks again.

pub mod api;
pub(crate) mod check;
pub mod cluster;
pub mod crontab;
pub mod error;
pub mod flow;
pub mod http;
pub mod node;
pub mod policy;
mod read_flows;
mod read_triggers;
pub mod retention;
pub mod trigger;
mod validate;

pub use validate::{name_from_program, valid_name};

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::zone::Zone;
use serde::Serialize;

pub use error::{ConfigError, Problem};
pub use http::{HttpBody, HttpSpec};
pub use policy::{Backoff, Concurrency, Limits, Retries, Shutdown};
pub use trigger::{Condition, Delivery, Mail, TriggerRule};

use crate::lock::LockSpec;
use crate::schedule::Schedule;
pub use crate::schedule::catchup::CatchUp;
use crate::schedule::scheduler::{Timing, jitter};

/// The address the API listens on when the jobs file names none.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7411";

/// A validated jobs file.
#[derive(Clone, Debug)]
pub struct Config {
    /// The jobs file itself, as given.
    pub path: PathBuf,
    /// The machine-wide default zone for schedules.
    pub timezone: Zone,
    /// Where the store, the capture files and the daemon's lock live.
    pub state_dir: PathBuf,
    /// The log4rs file that routes the report sections, if any.
    pub log_config: Option<PathBuf>,
    /// The API's address; `None`: [`DEFAULT_LISTEN`], or a free port
    /// when another daemon has it (the address is on the daemon's card).
    pub listen: Option<SocketAddr>,
    /// Who may use the API, and by which names it is reached.
    pub api: api::ApiSettings,
    /// The PostgreSQL database the history is in (`store:`, else
    /// `$OVERNIGHT_STORE`), as written: `${VAR}`s are read when it is
    /// opened. `None`: SQLite in the state directory.
    pub store: Option<String>,
    /// How long a stopping daemon lets running jobs finish before ending them.
    pub shutdown_grace: Duration,
    /// At most this many runs at once, daemon-wide.
    pub max_parallel: Option<usize>,
    /// What a stopping daemon does with running jobs.
    pub shutdown: Shutdown,
    /// How email leaves the machine.
    pub mail: Arc<Mail>,
    /// The file's trigger rules (each job also holds those watching it).
    pub triggers: Vec<Arc<TriggerRule>>,
    /// The jobs, in file order; a job's index is its id in the scheduler.
    pub jobs: Vec<Arc<Job>>,
    /// The flows, in file order.
    pub flows: Vec<Arc<flow::Flow>>,
    /// How long runs' files and rows are kept.
    pub retention: retention::Retention,
    /// This host's name and tags, and the cluster's timings.
    pub cluster: cluster::Cluster,
}

/// What systemd tells the daemon (daemon/systemd.rs), and no job
/// should hear: withheld from jobs and trigger programs.
pub const SYSTEMD_VARIABLES: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

impl Config {
    /// Reads and validates a jobs file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        validate::config(path, &text)
    }

    /// Reads a jobs file for `check`: what of it is valid, and every
    /// problem (a file that is not YAML at all is an error).
    pub fn load_partial(path: &Path) -> Result<(Config, Vec<Problem>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        validate::partial(path, &text)
    }

    /// The job with this name.
    pub fn job(&self, name: &str) -> Option<&Arc<Job>> {
        self.jobs.iter().find(|job| job.name == name)
    }

    /// A job made on the spot (`overnight exec`) under this file: the
    /// file's rules that watch its name, its mail, and the variables it
    /// keeps secrets in withheld, as for the file's own jobs.
    pub fn adhoc_job(&self, name: String, argv: Vec<OsString>) -> Job {
        let mut job = Job::adhoc(name, argv);
        job.triggers = self
            .triggers
            .iter()
            .filter(|r| r.watches(&job.name))
            .cloned()
            .collect();
        job.mail = Arc::clone(&self.mail);
        job.withheld = self.secret_vars().into();
        job
    }

    /// The flow with this name.
    pub fn flow(&self, name: &str) -> Option<&Arc<flow::Flow>> {
        self.flows.iter().find(|flow| flow.name == name)
    }

    /// The zone a flow's times are shown in: its own, else the file's
    /// (a flow no longer in the file).
    pub fn flow_zone(&self, name: &str) -> crate::zone::Zone {
        self.flow(name)
            .map_or_else(|| self.timezone.clone(), |f| f.timezone.clone())
    }

    /// The file's rules that watch the flow `name`.
    pub fn watching_flow<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Arc<TriggerRule>> {
        self.triggers.iter().filter(move |r| r.watches_flow(name))
    }

    /// A rule by name, the file's or a job's.
    pub fn trigger(&self, name: &str) -> Option<Arc<TriggerRule>> {
        self.triggers
            .iter()
            .chain(self.jobs.iter().flat_map(|j| &j.triggers))
            .find(|r| r.name == name)
            .cloned()
    }
}

/// One job of the jobs file, its defaults applied.
#[derive(Clone, Debug, Serialize)]
pub struct Job {
    /// The job's name: `[A-Za-z0-9._-]+`, unique in the file.
    pub name: String,
    /// What the job is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When it fires; `None` runs it only on demand.
    #[serde(
        serialize_with = "display_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub schedule: Option<Schedule>,
    /// The zone its schedule is read in.
    #[serde(serialize_with = "display")]
    pub timezone: Zone,
    /// What runs: a command or an HTTP request.
    #[serde(flatten)]
    pub action: Action,
    /// The working directory; the daemon's own when unset (the user's
    /// home for a job with a `user`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<PathBuf>,
    /// Whom it runs as (`user:`), a name the user database knew when the
    /// file was read; the daemon's user when unset. Such a job gets cron's
    /// environment for that user, not the daemon's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Variables added to the job's environment. Serialised with their
    /// values hidden: a value may be a password.
    #[serde(serialize_with = "hidden")]
    pub env: BTreeMap<String, String>,
    /// Variables of the runner's environment that the jobs file uses for
    /// secrets (`${VAR}` in HTTP jobs and webhooks, SMTP logins): never
    /// inherited by the job or its trigger programs, unless its `env`
    /// sets them.
    #[serde(skip)]
    pub withheld: Arc<[String]>,
    /// How long an attempt may take before its process group is ended.
    #[serde(
        serialize_with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// How long TERM is given before KILL.
    #[serde(serialize_with = "duration")]
    pub kill_grace: Duration,
    /// The level of the job's stderr lines on `jobs::log::<job>`.
    #[serde(serialize_with = "display")]
    pub stderr_level: log::Level,
    /// Exit codes that make the run a warning instead of a failure.
    pub warning_exit_codes: Vec<i32>,
    /// What to do with fires missed while the daemon was down.
    pub catch_up: CatchUp,
    /// A missed fire older than this is never run.
    #[serde(
        serialize_with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub starting_deadline: Option<Duration>,
    /// A stable delay within this window after each fire.
    #[serde(
        serialize_with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub jitter: Option<Duration>,
    /// Where mail about this job goes (a crontab's `MAILTO`); empty: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailto: Option<String>,
    /// What a fire does while the job still runs.
    pub concurrency: Concurrency,
    /// With `queue`: how many fires may wait.
    pub queue_limit: usize,
    /// Named locks held while it runs.
    pub locks: Vec<LockSpec>,
    /// Which hosts of a cluster may run it.
    pub placement: cluster::Placement,
    /// How long to wait for the named locks before the fire is skipped.
    #[serde(serialize_with = "duration")]
    pub lock_wait: Duration,
    /// Retries of a failed attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// Pass the daemon's environment on (`false`: cron's bare one).
    pub env_inherit: bool,
    /// Resource limits of the job's process.
    pub limits: Limits,
    /// A run still going after this is `late` (for triggers).
    #[serde(
        serialize_with = "duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_duration: Option<Duration>,
    /// At most this many bytes of a run's output are kept in its capture
    /// file (the log targets get every line).
    pub capture_max: u64,
    /// How many of a failed run's last stderr lines follow its failure on
    /// `jobs::errors::<job>` and in its report.
    pub error_lines: usize,
    /// The trigger rules watching this job (the file's and its own).
    #[serde(serialize_with = "rule_names")]
    pub triggers: Vec<Arc<TriggerRule>>,
    /// How its email leaves the machine.
    #[serde(skip)]
    pub mail: Arc<Mail>,
    /// Why its `mailto` cannot be served (no SMTP, no sendmail): said by
    /// `check` and as a warning of each run that would have mailed.
    #[serde(skip)]
    pub unmailable: Option<String>,
}

/// The default `capture_max`: 64 MiB a run.
pub const DEFAULT_CAPTURE_MAX: u64 = 64 << 20;

/// The default `error_lines`.
pub const DEFAULT_ERROR_LINES: usize = 10;

impl Job {
    /// A job made on the spot, as `overnight exec` does for a crontab line.
    pub fn adhoc(name: String, argv: Vec<OsString>) -> Job {
        Job {
            name,
            description: None,
            schedule: None,
            timezone: Zone::utc(),
            action: Action::Command(CommandSpec::Raw(argv)),
            workdir: None,
            user: None,
            env: BTreeMap::new(),
            withheld: Arc::default(),
            timeout: None,
            kill_grace: DEFAULT_KILL_GRACE,
            stderr_level: log::Level::Warn,
            warning_exit_codes: Vec::new(),
            catch_up: CatchUp::default(),
            starting_deadline: None,
            jitter: None,
            mailto: None,
            concurrency: Concurrency::default(),
            queue_limit: 1,
            locks: Vec::new(),
            placement: Default::default(),
            lock_wait: Duration::ZERO,
            retries: None,
            env_inherit: true,
            limits: Limits::default(),
            max_duration: None,
            capture_max: DEFAULT_CAPTURE_MAX,
            error_lines: DEFAULT_ERROR_LINES,
            triggers: Vec::new(),
            mail: Arc::default(),
            unmailable: None,
        }
    }

    /// What the scheduler needs, for a job with a clock schedule.
    pub fn timing(&self) -> Option<Timing> {
        let schedule = self.schedule.as_ref().filter(|s| !s.is_reboot())?;
        Some(Timing {
            schedule: schedule.clone(),
            delay: self
                .jitter
                .map_or(Duration::ZERO, |w| jitter(&self.name, w)),
        })
    }

    /// The kind of job, as the store's job table records it.
    pub fn kind(&self) -> &'static str {
        match self.action {
            Action::Command(_) => "command",
            Action::Http(_) => "http",
        }
    }

    /// The locks a run of this job takes: its own (unless it may overlap
    /// itself) and the named ones.
    pub fn lock_specs(&self) -> Vec<LockSpec> {
        let own = (self.concurrency != Concurrency::Allow).then(|| LockSpec::job(&self.name));
        own.into_iter().chain(self.locks.iter().cloned()).collect()
    }

    /// The definition as JSON text, for the store's job table: each `env`
    /// value replaced by an HMAC-SHA256 under `key` (the state directory's
    /// own), so a change shows and the value does not, nor can it be
    /// guessed from the database alone.
    pub fn definition(&self, key: &[u8]) -> String {
        let mut definition = serde_json::to_value(self).expect("a job always serialises");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        let env: serde_json::Map<String, serde_json::Value> = self
            .env
            .iter()
            .map(|(name, value)| {
                let tag = ring::hmac::sign(&key, value.as_bytes());
                let hex: String = tag.as_ref()[..16]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                (name.clone(), format!("hmac:{hex}").into())
            })
            .collect();
        definition["env"] = env.into();
        definition.to_string()
    }
}

/// How long TERM is given before KILL when a job says nothing.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

/// What a job does.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Runs a command.
    Command(CommandSpec),
    /// Sends a request to an application, which answers with the report.
    Http(HttpSpec),
}

/// What a command job runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CommandSpec {
    /// A string run by `/bin/sh -c`.
    Shell(String),
    /// A program and its arguments, run directly.
    Argv(Vec<String>),
    /// A program and its arguments as a wrapping command line gave them
    /// (`overnight exec`): bytes, not always UTF-8, passed on unchanged.
    Raw(Vec<OsString>),
}

impl CommandSpec {
    /// The program and arguments to execute.
    pub fn argv(&self) -> Vec<OsString> {
        match self {
            CommandSpec::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.into()],
            CommandSpec::Argv(argv) => argv.iter().map(OsString::from).collect(),
            CommandSpec::Raw(argv) => argv.clone(),
        }
    }
}

fn display<T: std::fmt::Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn display_opt<T: std::fmt::Display, S: serde::Serializer>(
    value: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

impl Config {
    /// The variables jobs and trigger programs do not inherit: those the
    /// file takes secrets from (`${VAR}` in HTTP jobs' URLs and headers, in
    /// webhooks' URLs, headers and secrets, the SMTP login's, the API's
    /// tokens) and systemd's messages to the daemon.
    pub fn secret_vars(&self) -> Vec<String> {
        let mut texts: Vec<&str> = Vec::new();
        for job in &self.jobs {
            if let Action::Http(http) = &job.action {
                texts.push(&http.url);
                texts.extend(http.headers.values().map(String::as_str));
            }
        }
        let rules = self
            .triggers
            .iter()
            .chain(self.jobs.iter().flat_map(|j| &j.triggers));
        for delivery in rules.flat_map(|r| &r.actions) {
            if let Delivery::Webhook(hook) = delivery {
                texts.push(&hook.url);
                texts.extend(hook.headers.values().map(String::as_str));
                texts.extend(hook.secret.as_deref());
            }
        }
        let mut names: Vec<String> = texts
            .into_iter()
            .flat_map(var_names)
            .map(str::to_string)
            .collect();
        names.extend(self.api.tokens.iter().map(|t| t.var.clone()));
        // The database's password, and its whole URL from the environment.
        names.extend(store_variables(self.store.as_deref()));
        // Not secrets, but the daemon's alone: systemd's messages to it.
        names.extend(SYSTEMD_VARIABLES.map(str::to_string));
        if let Some(smtp) = &self.mail.smtp {
            names.extend(smtp.username_env.iter().chain(&smtp.password_env).cloned());
        }
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// The variables a `store` URL reads, and `$OVERNIGHT_STORE` itself:
/// withheld from jobs, also from a wrapped crontab line with no jobs file.
/// With a store, `$PGPASSWORD` too: the PostgreSQL client reads the
/// password from it when the URL has none.
pub fn store_variables(store: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = store
        .into_iter()
        .flat_map(var_names)
        .map(str::to_string)
        .collect();
    if store.is_some() {
        names.push("PGPASSWORD".to_string());
    }
    names.push(STORE_VARIABLE.to_string());
    names
}

/// Where a history is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// SQLite, in the state directory.
    Local(PathBuf),
    /// A PostgreSQL database (its URL as written, `${VAR}`s unread), and
    /// the state directory for what stays this host's.
    Server { url: String, state_dir: PathBuf },
}

impl Place {
    /// Where the history is: the jobs file's, or without one (a wrapped
    /// crontab line) `$OVERNIGHT_STORE`, else SQLite in the default state
    /// directory.
    pub fn of(config: Option<&Config>) -> Place {
        match (config, store_from_environment()) {
            (Some(config), _) => config.place(),
            (None, Some(url)) => Place::Server {
                url,
                state_dir: default_state_dir(),
            },
            (None, None) => Place::Local(default_state_dir()),
        }
    }

    /// The PostgreSQL URL, as written, when the history is on a server.
    pub fn url(&self) -> Option<&str> {
        match self {
            Place::Server { url, .. } => Some(url),
            Place::Local(_) => None,
        }
    }

    /// The state directory, whichever database the history is in.
    pub fn state_dir(&self) -> &Path {
        match self {
            Place::Local(dir) | Place::Server { state_dir: dir, .. } => dir,
        }
    }
}

impl Config {
    /// Where this file's history is.
    pub fn place(&self) -> Place {
        match &self.store {
            Some(url) => Place::Server {
                url: url.clone(),
                state_dir: self.state_dir.clone(),
            },
            None => Place::Local(self.state_dir.clone()),
        }
    }
}

/// The variable that names the PostgreSQL database when no jobs file
/// says `store:`.
pub const STORE_VARIABLE: &str = "OVERNIGHT_STORE";

/// `$OVERNIGHT_STORE`, when set and a PostgreSQL URL.
pub(crate) fn store_from_environment() -> Option<String> {
    std::env::var(STORE_VARIABLE)
        .ok()
        .filter(|url| !url.is_empty())
}

/// Whether `url` names a PostgreSQL database.
pub(crate) fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// What is wrong with `url` as a `store:`, if anything.
pub(crate) fn store_problem(url: &str) -> Option<String> {
    if !is_postgres_url(url) {
        return Some(format!(
            "`store` is a PostgreSQL URL (`postgres://USER:${{PASSWORD_VAR}}@HOST/DB`), not `{url}`; without `store`, the history is SQLite in the state directory"
        ));
    }
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .and_then(|(credentials, _)| credentials.split_once(':'))
        .map(|(_, password)| password);
    // sqlx also takes `?password=…`.
    let in_query = url
        .split_once('?')
        .into_iter()
        .flat_map(|(_, query)| query.split('&'))
        .filter_map(|pair| pair.strip_prefix("password="));
    let written = password
        .into_iter()
        .chain(in_query)
        .any(|p| !p.starts_with("${"));
    written.then(|| {
        "the password in `store` is written out: name a variable instead (`postgres://USER:${PASSWORD_VAR}@HOST/DB`); secrets are not written in the file".to_string()
    })
}

/// `${NAME}` in `text` replaced from `lookup`, each value shown to
/// `seen` (to keep it out of messages); the first name `lookup` has no
/// value for, on failure.
pub(crate) fn expand_vars(
    text: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    mut seen: impl FnMut(&str),
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + 2 + len];
        let value = lookup(name).ok_or_else(|| name.to_string())?;
        seen(&value);
        out.push_str(&rest[..start]);
        out.push_str(&value);
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The names in `${NAME}` references of `text`.
fn var_names(text: &str) -> impl Iterator<Item = &str> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .filter(|name| !name.is_empty())
}

/// Each name, its value hidden (a value may be a password); the stored
/// definition puts a keyed digest there instead ([`Job::definition`]).
fn hidden<S: serde::Serializer>(env: &BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(env.keys().map(|name| (name, "(hidden)")))
}

fn rule_names<S: serde::Serializer>(rules: &[Arc<TriggerRule>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(rules.iter().map(|r| &r.name))
}

pub(crate) fn duration<S: serde::Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*value))
}

pub(crate) fn duration_opt<S: serde::Serializer>(
    value: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => duration(d, s),
        None => s.serialize_none(),
    }
}

/// Where the jobs file is: `-c`, then `$OVERNIGHT_CONFIG`, then
/// `./overnight.yaml` if it exists.
pub fn find(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("OVERNIGHT_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let local = PathBuf::from("overnight.yaml");
    local.exists().then_some(local)
}

/// The state directory used when there is no jobs file (`overnight exec`
/// from a crontab line): `$OVERNIGHT_STATE_DIR`, else
/// `$XDG_STATE_HOME/overnight`, else `~/.local/state/overnight`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OVERNIGHT_STATE_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(dir).join("overnight");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
    PathBuf::from(home).join(".local/state/overnight")
}
