//! Triggers: acting on runs (issue 6).
//!
//! After each attempt, after the run, when a run is late, and for a fire
//! that never ran, the job's rules are asked which conditions they act on.
//! Each matching rule's actions — a program, an email, a webhook, a log
//! record — are delivered in the background, retried where that makes
//! sense, and recorded with the run (`notifications`); a failed delivery is
//! logged and never changes or delays the run itself. `notify: changes`
//! speaks only when the job's outcome changes (the first failure, then the
//! recovery); `max_per_hour` caps a rule.

mod email;
mod program;
mod webhook;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use log::Level;

use crate::config::Job;
use crate::config::trigger::{AfterRetries, Condition, Delivery, Mail, NotifyMode, TriggerRule};
use crate::inflight::Inflight;
use crate::report::{Report, Status};
use crate::store::{DeliveryStatus, Notification, Recorder, time_text};

/// When the rules are asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    /// An attempt failed and another will follow.
    Retrying,
    /// The run (or the fire that did not run) is over.
    Final,
    /// The run is still going after its `max_duration`.
    Late,
}

/// Delivers a job's triggers.
#[derive(Clone, Debug)]
pub struct Notifier {
    recorder: Recorder,
    state_dir: Arc<PathBuf>,
    pending: Arc<Inflight>,
}

impl Notifier {
    /// A notifier recording into `recorder`; report files for programs go
    /// to the runs' folders in `state_dir`.
    pub fn new(recorder: Recorder, state_dir: Arc<PathBuf>) -> Notifier {
        Notifier {
            recorder,
            state_dir,
            pending: Arc::default(),
        }
    }

    /// Asks the job's rules about `report` at `moment`; deliveries go on in
    /// the background (see [`settled`](Notifier::settled)).
    pub fn moment(&self, job: &Job, report: &Report, moment: Moment) {
        if job.triggers.is_empty() {
            return;
        }
        let guard = self.pending.enter();
        let this = self.clone();
        let rules = job.triggers.clone();
        let mail = Arc::clone(&job.mail);
        let withheld = Arc::clone(&job.withheld);
        let report = report.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let previous = match this.previous_outcome(&report).await {
                Ok(previous) => previous,
                Err(e) => {
                    log::error!(target: "overnight::notify", "triggers of run #{} not evaluated: {e}", report.run_id);
                    return;
                }
            };
            for rule in rules {
                for condition in fires(&rule, &report, moment, previous) {
                    this.deliver(&rule, &mail, &withheld, &report, condition)
                        .await;
                }
            }
        });
    }

    /// How the job's run before `report`'s ended, for `notify: changes`.
    async fn previous_outcome(
        &self,
        report: &Report,
    ) -> Result<Option<Status>, crate::store::StoreError> {
        let store = self.recorder.store().await?;
        store.previous_outcome(&report.job, report.run_id).await
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
        report: &Report,
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
                    report,
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
                    log_record(report, condition);
                    Ok("logged".to_string())
                }
                Delivery::Run(argv) => {
                    program::run(
                        argv,
                        withheld,
                        &self.report_file(report),
                        report,
                        condition,
                        &rule.name,
                    )
                    .await
                }
                Delivery::Email(email) => email::send(mail, email, report, condition).await,
                Delivery::Webhook(hook) => webhook::post(hook, report, condition, &rule.name).await,
            };
            match result {
                Ok(detail) => {
                    self.record(
                        rule,
                        action.kind(),
                        report,
                        condition,
                        DeliveryStatus::Sent,
                        Some(detail),
                    )
                    .await
                }
                Err(why) => {
                    log::error!(
                        target: "overnight::notify",
                        "trigger `{}` could not {} about run #{} of `{}`: {why}",
                        rule.name,
                        action.kind(),
                        report.run_id,
                        report.job
                    );
                    self.record(
                        rule,
                        action.kind(),
                        report,
                        condition,
                        DeliveryStatus::Failed,
                        Some(why),
                    )
                    .await;
                }
            }
        }
    }

    async fn record(
        &self,
        rule: &TriggerRule,
        action: &str,
        report: &Report,
        condition: Condition,
        status: DeliveryStatus,
        detail: Option<String>,
    ) {
        let notification = Notification {
            run_id: report.run_id,
            job: report.job.clone(),
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

    fn report_file(&self, report: &Report) -> PathBuf {
        crate::capture::path_for(&self.state_dir, &report.job, report.run_id)
            .with_extension("trigger.json")
    }
}

/// The conditions `rule` acts on for `report` at `moment`.
fn fires(
    rule: &TriggerRule,
    report: &Report,
    moment: Moment,
    previous: Option<Status>,
) -> Vec<Condition> {
    let happened: Vec<Condition> = match moment {
        Moment::Late => vec![Condition::Late],
        Moment::Retrying => {
            let mut c = vec![Condition::Retrying];
            if rule.after_retries == AfterRetries::Each {
                c.push(Condition::Failed);
            }
            c
        }
        Moment::Final => {
            let mut c: Vec<Condition> = condition_of(report.status).into_iter().collect();
            let was_bad = matches!(
                previous,
                Some(Status::Failed | Status::Lost | Status::Orphaned)
            );
            if report.status == Status::Success && was_bad {
                c.push(Condition::Recovered);
            }
            c
        }
    };
    happened
        .into_iter()
        .filter(|c| rule.on.contains(c))
        .filter(|c| {
            rule.notify == NotifyMode::Every || changed(*c, report.status, previous, moment)
        })
        .collect()
}

/// With `notify: changes`: whether this condition marks a change of the
/// job's outcome.
fn changed(condition: Condition, status: Status, previous: Option<Status>, moment: Moment) -> bool {
    match condition {
        Condition::Recovered => true,
        Condition::Success | Condition::Warning | Condition::Failed | Condition::Lost
            if moment == Moment::Final =>
        {
            match previous {
                Some(previous) => previous != status,
                // A job's first outcome is news unless all is well.
                None => status != Status::Success,
            }
        }
        _ => true,
    }
}

fn condition_of(status: Status) -> Option<Condition> {
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

/// `log: true`: a record on `jobs::notify::<job>`.
fn log_record(report: &Report, condition: Condition) {
    let level = match condition {
        Condition::Failed | Condition::Lost => Level::Error,
        Condition::Success | Condition::Recovered => Level::Info,
        _ => Level::Warn,
    };
    let target = format!("jobs::notify::{}", report.job);
    let (run_id, attempt) = (report.run_id.to_string(), report.attempt.to_string());
    let kvs: [(&str, &str); 4] = [
        ("job", &report.job),
        ("run_id", &run_id),
        ("attempt", &attempt),
        ("condition", condition.as_str()),
    ];
    log::logger().log(
        &log::Record::builder()
            .target(&target)
            .level(level)
            .args(format_args!(
                "{}: {} #{} {} ({})",
                condition.as_str(),
                report.job,
                report.run_id,
                report.status,
                report.summary
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
            notify,
            after_retries: after,
            max_per_hour: None,
            actions: vec![Delivery::Log],
        }
    }

    fn report(status: Status) -> Report {
        let header = crate::report::RunHeader::now(1, "j", crate::report::Trigger::Manual);
        Report::synthetic(&header, status, "x")
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
                Some(Status::Failed)
            )
            .is_empty()
        );
        assert_eq!(
            fires(
                &r,
                &report(Status::Success),
                Moment::Final,
                Some(Status::Failed)
            ),
            [Condition::Recovered]
        );
        assert!(
            fires(
                &r,
                &report(Status::Success),
                Moment::Final,
                Some(Status::Success)
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
