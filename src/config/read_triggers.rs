//! Reading the trigger rules of a jobs file (the types are in
//! [`super::trigger`]): each rule's keys, its actions' settings, the
//! `smtp:` block, and which rules watch which job.

use std::sync::Arc;
use std::time::Duration;

use super::Config;
use super::check::Check;
use super::node::{Node, Pos, Value};
use super::trigger::{
    AfterRetries, CONDITIONS, Condition, Delivery, EmailAction, FLOW_CONDITIONS, Mail, NotifyMode,
    PlacedRules, SENDMAIL, Smtp, SmtpTls, TriggerRule, WebhookAction,
};
use crate::flow::Action;

impl Check<'_> {
    /// `triggers: [...]`; `job` is set for a job's own rules.
    pub(super) fn triggers(
        &mut self,
        node: &Node,
        job: Option<&str>,
    ) -> Vec<(Arc<TriggerRule>, Pos)> {
        let Value::Seq(items) = &node.value else {
            self.problem(node.pos, "`triggers` must be a list of rules");
            return Vec::new();
        };
        let mut rules = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let default_name = match job {
                Some(job) => format!("{job}.trigger-{}", i + 1),
                None => format!("trigger-{}", i + 1),
            };
            if let Some(rule) = self.trigger(item, default_name, job.is_none()) {
                rules.push((Arc::new(rule), item.pos));
            }
        }
        rules
    }

    fn trigger(
        &mut self,
        node: &Node,
        default_name: String,
        top_level: bool,
    ) -> Option<TriggerRule> {
        let before = self.problems.len();
        let mut keys = vec![
            "name",
            "on",
            "notify",
            "after_retries",
            "max_per_hour",
            "run",
            "email",
            "webhook",
            "log",
            "start_flow",
        ];
        if top_level {
            keys.extend(["jobs", "flows"]);
        }
        let mut rule = TriggerRule {
            name: default_name,
            on: Vec::new(),
            jobs: Vec::new(),
            flows: Vec::new(),
            notify: NotifyMode::Every,
            after_retries: AfterRetries::Final,
            max_per_hour: None,
            actions: Vec::new(),
        };
        // Keys whose value was refused: their absence is not said again.
        let mut refused = Vec::new();
        for (key, value) in self.mapping(node, "a trigger", &keys) {
            let said = self.problems.len();
            match key {
                "name" => {
                    rule.name = self
                        .string(value, "a trigger's `name`")
                        .unwrap_or(rule.name)
                }
                "on" => {
                    rule.on =
                        self.list_of(value, "`on`", |c, n| c.keyword(n, "condition", CONDITIONS))
                }
                "jobs" => {
                    rule.jobs =
                        self.list_of(value, "`jobs`", |c, n| c.string(n, "a job name or glob"))
                }
                "flows" => {
                    rule.flows =
                        self.list_of(value, "`flows`", |c, n| c.string(n, "a flow name or glob"))
                }
                "start_flow" => {
                    if let Some(flow) = self.string(value, "`start_flow` (a flow's name)") {
                        rule.actions.push(Delivery::StartFlow(flow));
                    }
                }
                "notify" => {
                    rule.notify = self
                        .keyword(
                            value,
                            "notify",
                            &[
                                ("every", NotifyMode::Every),
                                ("changes", NotifyMode::Changes),
                            ],
                        )
                        .unwrap_or_default()
                }
                "after_retries" => {
                    rule.after_retries = self
                        .keyword(
                            value,
                            "after_retries",
                            &[("final", AfterRetries::Final), ("each", AfterRetries::Each)],
                        )
                        .unwrap_or_default()
                }
                "max_per_hour" => match value.value {
                    Value::Int(n @ 1..=100_000) => rule.max_per_hour = Some(n as u32),
                    _ => self.problem(
                        value.pos,
                        "`max_per_hour` must be a number from 1 to 100000",
                    ),
                },
                "run" => {
                    let argv = self.list_of(value, "`run`", |c, n| {
                        n.scalar().or_else(|| c.string(n, "a word of `run`"))
                    });
                    if argv.first().is_none_or(|p| p.is_empty()) {
                        self.problem(value.pos, "`run` is a program and its arguments, like `[/usr/local/bin/page, ops]` (no shell)");
                    } else {
                        rule.actions.push(Delivery::Run(argv));
                    }
                }
                "email" => {
                    if let Some(email) = self.email(value) {
                        rule.actions.push(Delivery::Email(email));
                    }
                }
                "webhook" => {
                    if let Some(hook) = self.webhook(value) {
                        rule.actions.push(Delivery::Webhook(hook));
                    }
                }
                _ => {
                    if self.boolean(value, "`log`") == Some(true) {
                        rule.actions.push(Delivery::Log);
                    }
                }
            }
            if self.problems.len() > said {
                refused.push(key);
            }
        }
        if rule.on.is_empty() && !refused.contains(&"on") {
            self.problem(
                node.pos,
                format!("trigger `{}` has no `on:` conditions", rule.name),
            );
        }
        let actions = ["run", "email", "webhook", "log", "start_flow"];
        if rule.actions.is_empty() && !refused.iter().any(|k| actions.contains(k)) {
            self.problem(
                node.pos,
                format!(
                    "trigger `{}` has no action: add `run`, `email`, `webhook`, `log` or `start_flow`",
                    rule.name
                ),
            );
        }
        (self.problems.len() == before).then_some(rule)
    }

    /// A list, each item read by `item`; a single value counts as a list of one.
    pub(super) fn list_of<T>(
        &mut self,
        node: &Node,
        what: &str,
        mut item: impl FnMut(&mut Self, &Node) -> Option<T>,
    ) -> Vec<T> {
        match &node.value {
            Value::Seq(items) => items.iter().filter_map(|n| item(self, n)).collect(),
            Value::Map(_) | Value::Null => {
                self.problem(node.pos, format!("{what} must be a list"));
                Vec::new()
            }
            _ => item(self, node).into_iter().collect(),
        }
    }

    fn email(&mut self, node: &Node) -> Option<EmailAction> {
        let mut email = EmailAction {
            to: Vec::new(),
            cc: Vec::new(),
            subject: None,
        };
        for (key, value) in self.mapping(node, "`email`", &["to", "cc", "subject"]) {
            match key {
                "to" => {
                    email.to = self.list_of(value, "`email.to`", |c, n| c.string(n, "an address"))
                }
                "cc" => {
                    email.cc = self.list_of(value, "`email.cc`", |c, n| c.string(n, "an address"))
                }
                _ => email.subject = self.string(value, "`email.subject`"),
            }
        }
        for address in email.to.iter().chain(&email.cc) {
            if address.parse::<lettre::Address>().is_err() {
                self.problem(node.pos, format!("`{address}` is not an email address"));
            }
        }
        if email.to.is_empty() {
            self.problem(node.pos, "`email` needs `to:`");
            return None;
        }
        Some(email)
    }

    fn webhook(&mut self, node: &Node) -> Option<WebhookAction> {
        let mut hook = WebhookAction {
            url: String::new(),
            headers: Default::default(),
            secret: None,
            timeout: Duration::from_secs(10),
        };
        for (key, value) in
            self.mapping(node, "`webhook`", &["url", "headers", "secret", "timeout"])
        {
            match key {
                "url" => hook.url = self.string(value, "`webhook.url`").unwrap_or_default(),
                "headers" => hook.headers = self.string_map(value, "`webhook.headers`"),
                "secret" => {
                    let secret = self.string(value, "`webhook.secret`").unwrap_or_default();
                    if !(secret.starts_with("${") && secret.ends_with('}')) {
                        self.problem(value.pos, "`webhook.secret` must name a variable, like `${WEBHOOK_SECRET}`: secrets are not written in the file");
                    }
                    hook.secret = Some(secret);
                }
                _ => {
                    hook.timeout = self
                        .duration(value, "`webhook.timeout`")
                        .unwrap_or(hook.timeout)
                }
            }
        }
        if !(hook.url.starts_with("http://")
            || hook.url.starts_with("https://")
            || hook.url.starts_with("${"))
        {
            self.problem(
                node.pos,
                "`webhook` needs a `url` starting with http:// or https://",
            );
            return None;
        }
        Some(hook)
    }

    /// The `smtp:` block.
    pub(super) fn smtp(&mut self, node: &Node) -> Option<Smtp> {
        let before = self.problems.len();
        let mut smtp = Smtp {
            host: String::new(),
            port: 587,
            tls: SmtpTls::Starttls,
            from: String::new(),
            username_env: None,
            password_env: None,
            timeout: Duration::from_secs(30),
        };
        let mut port = None;
        let keys = [
            "host",
            "port",
            "tls",
            "from",
            "username_env",
            "password_env",
            "timeout",
        ];
        for (key, value) in self.mapping(node, "`smtp`", &keys) {
            match key {
                "host" => smtp.host = self.string(value, "`smtp.host`").unwrap_or_default(),
                "port" => match value.value {
                    Value::Int(p @ 1..=65535) => port = Some(p as u16),
                    _ => self.problem(value.pos, "`smtp.port` must be a port number"),
                },
                "tls" => {
                    let options = [
                        ("none", SmtpTls::None),
                        ("starttls", SmtpTls::Starttls),
                        ("implicit", SmtpTls::Implicit),
                    ];
                    smtp.tls = self
                        .keyword(value, "smtp.tls", &options)
                        .unwrap_or_default();
                }
                "from" => smtp.from = self.string(value, "`smtp.from`").unwrap_or_default(),
                "username_env" => smtp.username_env = self.string(value, "`smtp.username_env`"),
                "password_env" => smtp.password_env = self.string(value, "`smtp.password_env`"),
                _ => {
                    smtp.timeout = self
                        .duration(value, "`smtp.timeout`")
                        .unwrap_or(smtp.timeout)
                }
            }
        }
        smtp.port = port.unwrap_or(match smtp.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
        });
        if smtp.host.is_empty() {
            self.problem(node.pos, "`smtp` needs a `host`");
        }
        if smtp.from.parse::<lettre::Address>().is_err() {
            self.problem(node.pos, "`smtp` needs a `from:` address");
        }
        (self.problems.len() == before).then_some(smtp)
    }
}

impl Check<'_> {
    /// Gives each job the rules that watch it, checking what rules name:
    /// jobs that exist, and a way to send the email they ask for. A
    /// crontab's `MAILTO` becomes a rule on failures and warnings.
    pub(super) fn resolve_triggers(
        &mut self,
        config: &mut Config,
        rules: Vec<(Arc<TriggerRule>, Pos)>,
        mail: Mail,
    ) {
        let can_mail = mail.smtp.is_some() || mail.sendmail.is_some();
        let mail = Arc::new(mail);
        for (rule, pos) in &rules {
            self.rule_names(config, rule, *pos);
        }
        let own: std::collections::BTreeMap<String, PlacedRules> =
            std::mem::take(&mut self.pending_rules)
                .into_iter()
                .collect();
        let placed: Vec<(&TriggerRule, Pos, Option<&str>)> = rules
            .iter()
            .map(|(r, pos)| (&**r, *pos, None))
            .chain(own.iter().flat_map(|(job, rules)| {
                rules
                    .iter()
                    .map(move |(r, pos)| (&**r, *pos, Some(job.as_str())))
            }))
            .collect();
        for &(rule, pos, job) in &placed {
            if !can_mail && rule.actions.iter().any(|a| matches!(a, Delivery::Email(_))) {
                self.problem(
                    pos,
                    format!("trigger `{}` sends email, but there is no `smtp:` block and no sendmail at {SENDMAIL}; add one", rule.name),
                );
            }
            if job.is_some() {
                self.rule_conditions(rule, pos, true, false);
            }
            self.rule_starts(config, rule, pos);
        }
        self.start_loops(config, &placed);
        // Each job is its Arc's only holder yet: nothing is copied.
        for job in config.jobs.iter_mut().map(Arc::make_mut) {
            let mut watching: Vec<Arc<TriggerRule>> = rules
                .iter()
                .filter(|(r, _)| r.watches(&job.name))
                .map(|(r, _)| r.clone())
                .collect();
            watching.extend(
                own.get(&job.name)
                    .into_iter()
                    .flatten()
                    .map(|(r, _)| r.clone()),
            );
            let mailto = job.mailto.as_ref().filter(|t| !t.is_empty());
            if let Some(to) = mailto.filter(|_| !can_mail) {
                job.unmailable = Some(format!(
                    "not mailed to {to}: there is no `smtp:` block and no sendmail at {SENDMAIL}; add one, or remove `mailto`"
                ));
            }
            if let Some(to) = mailto.filter(|_| can_mail) {
                watching.push(Arc::new(TriggerRule {
                    name: format!("{}.mailto", job.name),
                    on: vec![Condition::Failed, Condition::Warning],
                    jobs: Vec::new(),
                    flows: Vec::new(),
                    notify: NotifyMode::Every,
                    after_retries: AfterRetries::Final,
                    max_per_hour: None,
                    actions: vec![Delivery::Email(EmailAction {
                        to: to.split(',').map(|a| a.trim().to_string()).collect(),
                        cc: Vec::new(),
                        subject: None,
                    })],
                }));
            }
            job.triggers = watching;
            job.mail = Arc::clone(&mail);
        }
        config.triggers = rules.into_iter().map(|(r, _)| r).collect();
        config.mail = mail;
    }
}

impl Check<'_> {
    /// The jobs and flows a top-level rule names are in the file, and its
    /// conditions are ones what it watches can come to.
    fn rule_names(&mut self, config: &Config, rule: &TriggerRule, pos: Pos) {
        let plain = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .filter(|n| !n.contains(['*', '?']))
                .cloned()
                .collect()
        };
        for name in plain(&rule.jobs) {
            if config.job(&name).is_none() {
                self.problem(
                    pos,
                    format!(
                        "trigger `{}` names job `{name}`, which is not in the file",
                        rule.name
                    ),
                );
            }
        }
        for name in plain(&rule.flows) {
            if config.flow(&name).is_none() {
                self.problem(
                    pos,
                    format!(
                        "trigger `{}` names flow `{name}`, which is not in the file",
                        rule.name
                    ),
                );
            }
        }
        let jobs_only = rule.flows.is_empty();
        let flows_only = rule.jobs.is_empty() && !rule.flows.is_empty();
        self.rule_conditions(rule, pos, jobs_only, flows_only);
    }

    /// A rule that watches only jobs (or only flows) acts on conditions
    /// they can come to.
    fn rule_conditions(&mut self, rule: &TriggerRule, pos: Pos, jobs_only: bool, flows_only: bool) {
        for condition in &rule.on {
            if jobs_only && !condition.of_jobs() {
                self.problem(
                    pos,
                    format!(
                        "trigger `{}` watches only jobs, and `{}` is a condition of flow runs; name the flows it watches with `flows:`",
                        rule.name,
                        condition.as_str()
                    ),
                );
            }
            if flows_only && !condition.of_flows() {
                let words: Vec<&str> = FLOW_CONDITIONS.iter().map(|c| c.as_str()).collect();
                self.problem(
                    pos,
                    format!(
                        "trigger `{}` watches only flows, which never come to `{}`; a flow run comes to {}",
                        rule.name,
                        condition.as_str(),
                        words.join(", ")
                    ),
                );
            }
        }
    }

    /// The flows a rule starts are in the file.
    fn rule_starts(&mut self, config: &Config, rule: &TriggerRule, pos: Pos) {
        for action in &rule.actions {
            if let Delivery::StartFlow(flow) = action
                && config.flow(flow).is_none()
            {
                self.problem(
                    pos,
                    format!(
                        "trigger `{}` starts flow `{flow}`, which is not in the file",
                        rule.name
                    ),
                );
            }
        }
    }

    /// Refuses rules whose `start_flow:` goes round: a flow whose end, or
    /// whose steps' runs, set off a rule that starts a flow that leads
    /// back to it would start itself again and again. Each rule is given
    /// with the job it belongs to, for a job's own rules.
    fn start_loops(&mut self, config: &Config, placed: &[(&TriggerRule, Pos, Option<&str>)]) {
        let flows = &config.flows;
        // From each flow: (the flow started, the rule starting it).
        let mut edges: Vec<Vec<(usize, usize)>> = vec![Vec::new(); flows.len()];
        for (k, (rule, _, own)) in placed.iter().enumerate() {
            let starts = rule.actions.iter().filter_map(|a| match a {
                Delivery::StartFlow(name) => flows.iter().position(|f| &f.name == name),
                _ => None,
            });
            for to in starts {
                for (from, flow) in flows.iter().enumerate() {
                    let steps_jobs = flow.plan.steps.iter().filter_map(|s| match &s.action {
                        Action::Job(job) => Some(job.as_str()),
                        Action::Hold(_) => None,
                    });
                    let set_off = match own {
                        Some(job) => steps_jobs.clone().any(|j| j == *job),
                        None => {
                            rule.watches_flow(&flow.name)
                                || steps_jobs.clone().any(|j| rule.watches(j))
                        }
                    };
                    if set_off {
                        edges[from].push((to, k));
                    }
                }
            }
        }
        let mut said = vec![false; placed.len()];
        for from in 0..flows.len() {
            for &(to, k) in &edges[from] {
                let Some(mut path) = path_between(&edges, to, from) else {
                    continue;
                };
                if std::mem::replace(&mut said[k], true) {
                    continue;
                }
                path.insert(0, from);
                let names: Vec<&str> = path.iter().map(|&i| flows[i].name.as_str()).collect();
                let (rule, pos, _) = placed[k];
                self.problem(
                    pos,
                    format!(
                        "trigger `{}` starts flow `{}`, and the starts go round ({}): each run would start the next; narrow what the rule watches with `jobs:`/`flows:`",
                        rule.name,
                        flows[to].name,
                        names.join(" -> ")
                    ),
                );
            }
        }
    }
}

/// The flows from `from` to `to` along `edges` (both ends included), if
/// `to` can be reached.
fn path_between(edges: &[Vec<(usize, usize)>], from: usize, to: usize) -> Option<Vec<usize>> {
    let mut came_from: Vec<Option<usize>> = vec![None; edges.len()];
    let mut seen = vec![false; edges.len()];
    let mut queue = std::collections::VecDeque::from([from]);
    seen[from] = true;
    while let Some(at) = queue.pop_front() {
        if at == to {
            let mut path = vec![to];
            while let Some(before) = came_from[*path.last().expect("not empty")] {
                path.push(before);
            }
            path.reverse();
            return Some(path);
        }
        for &(next, _) in &edges[at] {
            if !std::mem::replace(&mut seen[next], true) {
                came_from[next] = Some(at);
                queue.push_back(next);
            }
        }
    }
    None
}
