//! Triggers: acting on runs and flow runs (issues 6, 13).
//!
//! After each attempt, after the run, when a run is late, and for a fire
//! that never ran, the job's rules are asked which conditions they act on;
//! when a flow run holds and when it ends, the rules watching the flow.
//! Each matching rule's actions — a program, an email, a webhook, a log
//! record, a flow to start — are delivered in the background, retried
//! where that makes sense, and recorded with the run (`notifications`); a
//! failed delivery is logged and never changes or delays the run itself.
//! `notify: changes` speaks only when the outcome changes (the first
//! failure, then the recovery); `max_per_hour` caps a rule.

mod email;
mod flow;
mod program;
mod subject;
mod webhook;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use chrono::Utc;
use log::Level;

pub use flow::FlowNews;
pub use subject::Subject;

use crate::config::trigger::{AfterRetries, Condition, Delivery, Mail, NotifyMode, TriggerRule};
use crate::config::{Config, Job};
use crate::flow::progress::FlowStatus;
use crate::inflight::Inflight;
use crate::report::{Report, Status};
use crate::store::{DeliveryStatus, FlowRecord, Notification, Recorder, StoreError, time_text};

/// When the rules are asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    /// An attempt failed and another will follow.
    Retrying,
    /// The run (or the fire that did not run, or the flow run) is over.
    Final,
    /// The run is still going after its `max_duration`.
    Late,
    /// The flow run holds for an operator.
    Held,
}

/// Starts the flows `start_flow:` actions name: the daemon, where the
/// notifier works inside one.
pub trait StartsFlows: Send + Sync + std::fmt::Debug {
    /// Starts a run of `flow`; which run started, or why none did.
    fn start_flow(
        &self,
        flow: String,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;
}

/// Delivers triggers.
#[derive(Clone, Debug)]
pub struct Notifier {
    recorder: Recorder,
    state_dir: Arc<PathBuf>,
    pending: Arc<Inflight>,
    starter: Arc<OnceLock<Arc<dyn StartsFlows>>>,
    /// The runtime deliveries run on: the one the notifier was made on,
    /// whichever runtime tells it (the daemon's API has threads of its
    /// own, below the jobs' priority).
    runtime: Option<tokio::runtime::Handle>,
}

impl Notifier {
    /// A notifier recording into `recorder`; report files for programs go
    /// to the runs' folders in `state_dir`.
    pub fn new(recorder: Recorder, state_dir: Arc<PathBuf>) -> Notifier {
        Notifier {
            recorder,
            state_dir,
            pending: Arc::default(),
            starter: Arc::default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Has `start_flow:` actions start flows with `starter`; without one
    /// they fail, saying that flows run in the daemon.
    pub fn starts_flows_with(&self, starter: Arc<dyn StartsFlows>) {
        let _ = self.starter.set(starter);
    }

    /// Asks the job's rules about `report` at `moment`; deliveries go on in
    /// the background (see [`settled`](Notifier::settled)).
    pub fn moment(&self, job: &Job, report: &Report, moment: Moment) {
        if job.triggers.is_empty() {
            return;
        }
        self.tell(
            job.triggers.clone(),
            Arc::clone(&job.mail),
            Arc::clone(&job.withheld),
            Subject::Run(Box::new(report.clone())),
            moment,
        );
    }

    /// Asks the file's rules that watch the run's flow about it at
    /// `moment` (it holds, or it ended). Nothing is read or made when no
    /// rule watches; a held run's stop points' summaries are read back
    /// from the history (the journal folded in).
    pub async fn flow_run(&self, config: &Config, run: FlowRecord, moment: Moment) {
        let rules: Vec<Arc<TriggerRule>> = config.watching_flow(&run.flow).cloned().collect();
        if rules.is_empty() {
            return;
        }
        let store = match run.status {
            FlowStatus::Held => self.recorder.store().await.ok(),
            _ => None,
        };
        let zone = config.flow_zone(&run.flow);
        let news = FlowNews::of(run, zone, store.as_ref()).await;
        self.tell(
            rules,
            Arc::clone(&config.mail),
            config.secret_vars().into(),
            Subject::Flow(Box::new(news)),
            moment,
        );
    }

    /// Asks `rules` about `subject` at `moment`, with `mail` to send
    /// email by and the variables in `withheld` kept from programs.
    pub fn tell(
        &self,
        rules: Vec<Arc<TriggerRule>>,
        mail: Arc<Mail>,
        withheld: Arc<[String]>,
        subject: Subject,
        moment: Moment,
    ) {
        let guard = self.pending.enter();
        let this = self.clone();
        let runtime = self
            .runtime
            .clone()
            .unwrap_or_else(tokio::runtime::Handle::current);
        runtime.spawn(async move {
            let _guard = guard;
            let previous = match this.previous_outcome(&subject).await {
                Ok(previous) => previous,
                Err(e) => {
                    log::error!(target: "overnight::notify", "triggers of {} not evaluated: {e}", subject.title());
                    return;
                }
            };
            for rule in rules {
                for condition in fires(&rule, &subject, moment, previous) {
                    this.deliver(&rule, &mail, &withheld, &subject, condition)
                        .await;
                }
            }
        });
    }

    /// How the run of the same job (or flow) before this one ended, for
    /// `notify: changes`.
    async fn previous_outcome(&self, subject: &Subject) -> Result<Option<Condition>, StoreError> {
        let store = self.recorder.store().await?;
        Ok(match subject {
            Subject::Run(report) => store
                .previous_outcome(&report.job, report.run_id)
                .await?
                .and_then(condition_of),
            Subject::Flow(news) => store
                .previous_flow_outcome(&news.run.flow, news.run.id)
                .await?
                .and_then(flow_condition_of),
        })
    }

    /// Returns once every delivery started so far is done.
    pub async fn settled(&self) {
        self.pending.idle().await;
    }

    async fn deliver(
        &self,
        rule: &TriggerRule,
        mail: &Mail,
        withheld: &[String],
        subject: &Subject,
        condition: Condition,
    ) {
        if let Some(max) = rule.max_per_hour {
            let since = Utc::now() - chrono::Duration::hours(1);
            let sent = match self.recorder.store().await {
                Ok(store) => store.sent_since(&rule.name, since).await.unwrap_or(0),
                Err(_) => 0,
            };
            if sent >= i64::from(max) {
                let why =
                    format!("not sent: {sent} message(s) in the last hour (max_per_hour: {max})");
                self.record(
                    rule,
                    "all",
                    subject,
                    condition,
                    DeliveryStatus::Suppressed,
                    Some(why),
                )
                .await;
                return;
            }
        }
        for action in &rule.actions {
            let result = match action {
                Delivery::Log => {
                    log_record(subject, condition);
                    Ok("logged".to_string())
                }
                Delivery::Run(argv) => {
                    let file = self.report_file(subject, condition);
                    let ran =
                        program::run(argv, withheld, &file, subject, condition, &rule.name).await;
                    // A flow run has no folder of its own to keep it in.
                    if let Subject::Flow(_) = subject {
                        let _ = std::fs::remove_file(&file);
                    }
                    ran
                }
                Delivery::Email(email) => email::send(mail, email, subject, condition).await,
                Delivery::Webhook(hook) => {
                    webhook::post(hook, subject, condition, &rule.name).await
                }
                Delivery::StartFlow(flow) => self.start_flow(flow).await,
            };
            let (status, detail) = match result {
                Ok(detail) => (DeliveryStatus::Sent, detail),
                Err(why) => {
                    log::error!(
                        target: "overnight::notify",
                        "trigger `{}` could not {} about {}: {why}",
                        rule.name,
                        action.kind(),
                        subject.title()
                    );
                    (DeliveryStatus::Failed, why)
                }
            };
            self.record(
                rule,
                action.kind(),
                subject,
                condition,
                status,
                Some(detail),
            )
            .await;
        }
    }

    /// `start_flow:` — by the starter this process has (its daemon, or
    /// the daemon running on the state folder).
    async fn start_flow(&self, flow: &str) -> Result<String, String> {
        match self.starter.get() {
            Some(starter) => starter.start_flow(flow.to_string()).await,
            None => Err(no_daemon(flow, &self.state_dir)),
        }
    }

    async fn record(
        &self,
        rule: &TriggerRule,
        action: &str,
        subject: &Subject,
        condition: Condition,
        status: DeliveryStatus,
        detail: Option<String>,
    ) {
        crate::metrics::delivery(action, status.as_str());
        let notification = Notification {
            run_id: subject.id(),
            job: subject.name().to_string(),
            rule: rule.name.clone(),
            action: action.to_string(),
            condition: condition.as_str().to_string(),
            status,
            detail,
            at: time_text(Utc::now()),
        };
        if let Err(e) = self.recorder.record_notification(&notification).await {
            log::error!(target: "overnight::notify", "delivery of `{}` not recorded: {e}", rule.name);
        }
    }

    /// The file a `run:` program finds the report in: in the run's folder,
    /// or, for a flow run, beside the flow runs' files.
    fn report_file(&self, subject: &Subject, condition: Condition) -> PathBuf {
        match subject {
            Subject::Run(report) => {
                crate::capture::path_for(&self.state_dir, &report.job, report.run_id)
                    .with_extension("trigger.json")
            }
            Subject::Flow(news) => self.state_dir.join("flows").join(format!(
                "{}.{}.trigger.json",
                news.run.id,
                condition.as_str()
            )),
        }
    }
}

/// Why `start_flow:` did not start `flow` with no daemon on `state_dir`.
pub fn no_daemon(flow: &str, state_dir: &std::path::Path) -> String {
    format!(
        "flow `{flow}` not started: flows run in the daemon, and none is running on {}; start it with `overnight daemon`",
        state_dir.display()
    )
}

/// The conditions `rule` acts on for `subject` at `moment`, given how the
/// one before it ended.
fn fires(
    rule: &TriggerRule,
    subject: &Subject,
    moment: Moment,
    previous: Option<Condition>,
) -> Vec<Condition> {
    let outcome = subject.outcome();
    let happened: Vec<Condition> = match moment {
        Moment::Late => vec![Condition::Late],
        Moment::Held => vec![Condition::Held],
        Moment::Retrying => {
            let mut c = vec![Condition::Retrying];
            if rule.after_retries == AfterRetries::Each {
                c.push(Condition::Failed);
            }
            c
        }
        Moment::Final => {
            let mut c: Vec<Condition> = outcome.into_iter().collect();
            let was_bad = matches!(
                previous,
                Some(Condition::Failed | Condition::Lost | Condition::Aborted)
            );
            if outcome == Some(Condition::Success) && was_bad {
                c.push(Condition::Recovered);
            }
            c
        }
    };
    happened
        .into_iter()
        .filter(|c| rule.on.contains(c))
        .filter(|c| rule.notify == NotifyMode::Every || changed(*c, outcome, previous, moment))
        .collect()
}

/// With `notify: changes`: whether this condition marks a change of the
/// outcome.
fn changed(
    condition: Condition,
    outcome: Option<Condition>,
    previous: Option<Condition>,
    moment: Moment,
) -> bool {
    match condition {
        Condition::Success
        | Condition::Warning
        | Condition::Failed
        | Condition::Lost
        | Condition::Aborted
            if moment == Moment::Final =>
        {
            match previous {
                Some(previous) => Some(previous) != outcome,
                // The first outcome is news unless all is well.
                None => outcome != Some(Condition::Success),
            }
        }
        _ => true,
    }
}

pub(super) fn condition_of(status: Status) -> Option<Condition> {
    Some(match status {
        Status::Success => Condition::Success,
        Status::Warning => Condition::Warning,
        Status::Failed | Status::Orphaned => Condition::Failed,
        Status::Lost => Condition::Lost,
        Status::Missed => Condition::Missed,
        Status::Skipped => Condition::Skipped,
        Status::Running => return None,
    })
}

pub(super) fn flow_condition_of(status: FlowStatus) -> Option<Condition> {
    Some(match status {
        FlowStatus::Success => Condition::Success,
        FlowStatus::Warning => Condition::Warning,
        FlowStatus::Failed => Condition::Failed,
        FlowStatus::Aborted => Condition::Aborted,
        FlowStatus::Missed => Condition::Missed,
        FlowStatus::Skipped => Condition::Skipped,
        FlowStatus::Running | FlowStatus::Held => return None,
    })
}

/// `log: true`: a record on `jobs::notify::<job>` or
/// `flows::notify::<flow>`, with the run's (flow run's) id and the
/// condition as key-values.
fn log_record(subject: &Subject, condition: Condition) {
    let level = match condition {
        Condition::Failed | Condition::Lost | Condition::Aborted => Level::Error,
        Condition::Success | Condition::Recovered => Level::Info,
        _ => Level::Warn,
    };
    let id = subject.id().to_string();
    let (target, id_key, extra) = match subject {
        Subject::Run(report) => (
            format!("jobs::notify::{}", report.job),
            "run_id",
            ("attempt", report.attempt.to_string()),
        ),
        Subject::Flow(news) => (
            format!("flows::notify::{}", news.run.flow),
            "flow_run_id",
            ("status", news.run.status.as_str().to_string()),
        ),
    };
    let kvs: [(&str, &str); 4] = [
        (subject.kind(), subject.name()),
        (id_key, &id),
        (extra.0, &extra.1),
        ("condition", condition.as_str()),
    ];
    let what = subject.what();
    log::logger().log(
        &log::Record::builder()
            .target(&target)
            .level(level)
            .args(format_args!(
                "{}: {what}{} #{id} {} ({})",
                condition.as_str(),
                subject.name(),
                subject.status(),
                crate::route::Escaped(&subject.summary())
            ))
            .key_values(&kvs)
            .build(),
    );
}

/// The last lines of a run's output, from its capture file.
pub fn last_lines(report: &Report, count: usize) -> Vec<String> {
    let lines = crate::capture::tail(&report.log.capture);
    lines[lines.len().saturating_sub(count)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::trigger::Delivery;

    fn rule(on: &[Condition], notify: NotifyMode, after: AfterRetries) -> TriggerRule {
        TriggerRule {
            name: "r".into(),
            on: on.to_vec(),
            jobs: Vec::new(),
            flows: Vec::new(),
            notify,
            after_retries: after,
            max_per_hour: None,
            actions: vec![Delivery::Log],
        }
    }

    fn report(status: Status) -> Subject {
        let header = crate::report::RunHeader::now(1, "j", crate::report::Trigger::Manual);
        Subject::Run(Box::new(Report::synthetic(&header, status, "x")))
    }

    #[test]
    fn changes_speak_at_the_first_failure_and_the_recovery() {
        let r = rule(
            &[Condition::Failed, Condition::Recovered],
            NotifyMode::Changes,
            AfterRetries::Final,
        );
        assert_eq!(
            fires(&r, &report(Status::Failed), Moment::Final, None),
            [Condition::Failed]
        );
        assert!(
            fires(
                &r,
                &report(Status::Failed),
                Moment::Final,
                Some(Condition::Failed)
            )
            .is_empty()
        );
        assert_eq!(
            fires(
                &r,
                &report(Status::Success),
                Moment::Final,
                Some(Condition::Failed)
            ),
            [Condition::Recovered]
        );
        assert!(
            fires(
                &r,
                &report(Status::Success),
                Moment::Final,
                Some(Condition::Success)
            )
            .is_empty()
        );
    }

    #[test]
    fn retries_count_only_at_the_end_unless_each() {
        let last = rule(&[Condition::Failed], NotifyMode::Every, AfterRetries::Final);
        let each = rule(&[Condition::Failed], NotifyMode::Every, AfterRetries::Each);
        assert!(fires(&last, &report(Status::Failed), Moment::Retrying, None).is_empty());
        assert_eq!(
            fires(&each, &report(Status::Failed), Moment::Retrying, None),
            [Condition::Failed]
        );
        let retrying = rule(
            &[Condition::Retrying],
            NotifyMode::Every,
            AfterRetries::Final,
        );
        assert_eq!(
            fires(&retrying, &report(Status::Failed), Moment::Retrying, None),
            [Condition::Retrying]
        );
    }
}
