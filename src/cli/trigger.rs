//! `overnight trigger test RULE [-c FILE]`: send a sample notification
//! through a rule, so an operator sees what will arrive.

use std::collections::BTreeMap;

use chrono::Utc;

use super::{CliError, ConfigArg};
use crate::config::trigger::Condition;
use crate::event::{Entry, Progress};
use crate::exit::Outcome;
use crate::report::{Report, RunHeader, Status, Trigger};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Send a sample failed-run report through every action of a rule.
    Test {
        /// The rule's `name` (or `trigger-N` for the N-th unnamed one).
        rule: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    let Command::Test { rule, config } = args.command;
    let config = config.load()?;
    let Some(found) = config.trigger(&rule) else {
        return Err(CliError::NotFound(format!(
            "no trigger named `{rule}` in `{}`; give rules a `name:`",
            config.path.display()
        )));
    };
    let report = sample(&config);
    let mut job = crate::config::Job::adhoc("example-job".into(), vec!["true".into()]);
    job.mail = config.mail.clone();
    let store = crate::store::Store::open(&config.state_dir).await?;
    let notifier = crate::notify::Notifier::new(
        store.clone().into(),
        std::sync::Arc::new(config.state_dir.clone()),
    );
    // The sample is a failed run, sent whatever the rule's conditions,
    // without its rate cap or change filter.
    let mut rule = (*found).clone();
    rule.notify = crate::config::trigger::NotifyMode::Every;
    rule.max_per_hour = None;
    rule.on = vec![Condition::Failed];
    job.triggers = vec![std::sync::Arc::new(rule)];
    notifier.moment(&job, &report, crate::notify::Moment::Final);
    notifier.settled().await;
    let sent = store.notifications(report.run_id).await?;
    let mut ok = !sent.is_empty();
    for n in &sent {
        println!(
            "{} via {}: {} {}",
            n.rule,
            n.action,
            n.status,
            n.detail.as_deref().unwrap_or("")
        );
        ok &= n.status == crate::store::DeliveryStatus::Sent;
    }
    Ok(if ok {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

fn sample(config: &crate::config::Config) -> Report {
    let now = Utc::now();
    let entry = |message: &str, code: &str| Entry {
        message: message.into(),
        code: Some(code.into()),
        at: now,
        fields: BTreeMap::new(),
    };
    let header = RunHeader {
        host: crate::store::hostname(),
        capture: config.state_dir.join("runs/example-job/0.log"),
        ..RunHeader::now(0, "example-job", Trigger::Manual)
    };
    let mut report = Report::synthetic(
        &header,
        Status::Failed,
        "a sample report from `overnight trigger test`",
    );
    report.errors = vec![entry("the warehouse refused the connection", "E_CONN")];
    report.warnings = vec![entry("2 rows skipped", "SKIP")];
    report.error_count = 1;
    report.warning_count = 1;
    report.progress = Some(Progress {
        at: now,
        percent: Some(40.0),
        message: "loading orders".into(),
    });
    report
}
