//! Triggers: what to do about a finished run or flow run (issues 6, 13).
//!
//! A rule names conditions (`on:`), the jobs and flows it watches (names or
//! globs; with neither, every job), how often to speak (`notify: every |
//! changes`), when retries count (`after_retries`), a rate cap
//! (`max_per_hour`) and its actions: run a program, send an email, call a
//! webhook, log a record, start a flow. Each job's rules are resolved when
//! the file is loaded: the top-level rules whose `jobs` match it, and its
//! own; a flow's are the top-level rules whose `flows` match it.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::node::Pos;

/// Rules as read, each with where it stands in the file.
pub type PlacedRules = Vec<(Arc<TriggerRule>, Pos)>;

/// What happened to a run, as a rule's `on:` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// The run succeeded.
    Success,
    /// It ended with warnings.
    Warning,
    /// It failed.
    Failed,
    /// A fire was missed.
    Missed,
    /// A fire was skipped.
    Skipped,
    /// The run was lost with a dead daemon.
    Lost,
    /// It is still going after its `max_duration`.
    Late,
    /// An attempt failed and another will follow.
    Retrying,
    /// It succeeded after a failure.
    Recovered,
    /// A flow run was aborted (by an operator or its `hold_timeout`).
    Aborted,
    /// A flow run holds for an operator.
    Held,
}

pub(super) const CONDITIONS: &[(&str, Condition)] = &[
    ("success", Condition::Success),
    ("warning", Condition::Warning),
    ("failed", Condition::Failed),
    ("missed", Condition::Missed),
    ("skipped", Condition::Skipped),
    ("lost", Condition::Lost),
    ("late", Condition::Late),
    ("retrying", Condition::Retrying),
    ("recovered", Condition::Recovered),
    ("aborted", Condition::Aborted),
    ("held", Condition::Held),
];

/// The conditions of flow runs.
pub const FLOW_CONDITIONS: &[Condition] = &[
    Condition::Success,
    Condition::Warning,
    Condition::Failed,
    Condition::Aborted,
    Condition::Held,
    Condition::Recovered,
    Condition::Missed,
    Condition::Skipped,
];

impl Condition {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        CONDITIONS
            .iter()
            .find(|(_, c)| *c == self)
            .map_or("?", |(n, _)| n)
    }

    /// Whether a job's run can come to it.
    pub fn of_jobs(self) -> bool {
        !matches!(self, Condition::Aborted | Condition::Held)
    }

    /// Whether a flow run can come to it.
    pub fn of_flows(self) -> bool {
        FLOW_CONDITIONS.contains(&self)
    }
}

/// When a rule speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyMode {
    /// Every matching run.
    #[default]
    Every,
    /// Only when the job's outcome changes: the first failure, then the
    /// recovery.
    Changes,
}

/// How a rule treats attempts that will be retried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterRetries {
    /// Only the last attempt counts.
    #[default]
    Final,
    /// Every attempt counts.
    Each,
}

/// One rule.
#[derive(Clone, Debug, Serialize)]
pub struct TriggerRule {
    /// Its name (`overnight trigger test NAME`).
    pub name: String,
    /// The conditions it acts on.
    pub on: Vec<Condition>,
    /// The jobs it watches (names or globs).
    pub jobs: Vec<String>,
    /// The flows it watches (names or globs); with no `jobs`, it watches
    /// no job.
    pub flows: Vec<String>,
    /// When it speaks.
    pub notify: NotifyMode,
    /// How it treats retried attempts.
    pub after_retries: AfterRetries,
    /// At most this many messages an hour.
    pub max_per_hour: Option<u32>,
    /// What it does.
    pub actions: Vec<Delivery>,
}

impl TriggerRule {
    /// Whether the rule watches `job`: every job when it names neither
    /// jobs nor flows.
    pub fn watches(&self, job: &str) -> bool {
        (self.jobs.is_empty() && self.flows.is_empty())
            || self.jobs.iter().any(|pattern| glob(pattern, job))
    }

    /// Whether the rule watches `flow`: only the flows it names (`"*"`
    /// for all), so that a rule written for jobs does not speak twice
    /// about a flow's failed step.
    pub fn watches_flow(&self, flow: &str) -> bool {
        self.flows.iter().any(|pattern| glob(pattern, flow))
    }
}

/// An action of a rule.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// A program and its arguments; the report comes on its stdin.
    Run(Vec<String>),
    /// A message over SMTP or sendmail.
    Email(EmailAction),
    /// A signed POST of the report.
    Webhook(WebhookAction),
    /// A record on `jobs::notify::<job>` (`flows::notify::<flow>`).
    Log,
    /// A run of this flow.
    StartFlow(String),
}

impl Delivery {
    /// Its kind, for records.
    pub fn kind(&self) -> &'static str {
        match self {
            Delivery::Run(_) => "run",
            Delivery::Email(_) => "email",
            Delivery::Webhook(_) => "webhook",
            Delivery::Log => "log",
            Delivery::StartFlow(_) => "start_flow",
        }
    }
}

/// `email: {to, cc, subject}`.
#[derive(Clone, Debug, Serialize)]
pub struct EmailAction {
    /// Recipients.
    pub to: Vec<String>,
    /// Copies.
    pub cc: Vec<String>,
    /// The subject; the default names the job, the status and the host.
    pub subject: Option<String>,
}

/// `webhook: {url, headers, secret}`.
#[derive(Clone, Debug, Serialize)]
pub struct WebhookAction {
    /// Where to POST; `${VAR}` from the environment.
    pub url: String,
    /// Extra headers; `${VAR}` from the environment.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The HMAC-SHA256 key (`${VAR}`, never written in the file).
    #[serde(skip)]
    pub secret: Option<String>,
    /// How long one delivery may take.
    #[serde(serialize_with = "super::duration")]
    pub timeout: Duration,
}

/// How email leaves the machine.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Mail {
    /// An SMTP server, when given.
    pub smtp: Option<Smtp>,
    /// The sendmail program, when no SMTP server is given.
    pub sendmail: Option<std::path::PathBuf>,
}

/// The `smtp:` block.
#[derive(Clone, Debug, Serialize)]
pub struct Smtp {
    /// The server.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// How the connection is protected.
    pub tls: SmtpTls,
    /// The sender.
    pub from: String,
    /// The variable holding the user name, if the server wants a login.
    pub username_env: Option<String>,
    /// The variable holding the password.
    pub password_env: Option<String>,
    /// How long a delivery may take.
    #[serde(serialize_with = "super::duration")]
    pub timeout: Duration,
}

/// `smtp.tls`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a local relay).
    None,
    /// STARTTLS on the plain port.
    #[default]
    Starttls,
    /// TLS from the start (port 465).
    Implicit,
}

/// Where sendmail usually is.
pub const SENDMAIL: &str = "/usr/sbin/sendmail";

/// A shell-style glob with `*` and `?`.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("backup*", "backup-db"));
        assert!(glob("*", "anything"));
        assert!(glob("job?", "job1"));
        assert!(!glob("job?", "job12"));
        assert!(!glob("backup", "backup-db"));
    }
}
