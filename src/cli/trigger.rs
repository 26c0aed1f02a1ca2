//! `overnight trigger test RULE [-c FILE]`: send a sample notification
//! through a rule, so an operator sees what will arrive.

use std::collections::BTreeMap;

use chrono::Utc;

use super::{CliError, ConfigArg};
use crate::config::flow::Flow;
use crate::config::trigger::{Condition, Delivery};
use crate::event::{Entry, Progress};
use crate::exit::Outcome;
use crate::flow::progress::FlowStatus;
use crate::flow::{Action, Known, Progress as StepsProgress, StepState};
use crate::notify::{FlowNews, Moment, Subject};
use crate::report::{Report, RunHeader, Status, Trigger};
use crate::store::{FlowRecord, FlowState, StepRuns};

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
        #[arg(add = super::completions::triggers())]
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
    let store = crate::store::Store::open_at(&config.place()).await?;
    let notifier = crate::notify::Notifier::new(
        store.clone().into(),
        std::sync::Arc::new(config.state_dir.clone()),
    );
    // The sample is a failed run (a held flow run, for a rule that watches
    // only flows), sent whatever the rule's conditions, without its rate
    // cap or change filter. A flow is not started for a test.
    let mut rule = (*found).clone();
    rule.notify = crate::config::trigger::NotifyMode::Every;
    rule.max_per_hour = None;
    rule.actions.retain(|action| match action {
        Delivery::StartFlow(flow) => {
            println!(
                "{} via start_flow: not done: a test does not start flow `{flow}` for real",
                rule.name
            );
            false
        }
        _ => true,
    });
    let flow = config
        .flows
        .iter()
        .find(|f| rule.jobs.is_empty() && !rule.flows.is_empty() && rule.watches_flow(&f.name));
    let (subject, moment) = match flow {
        Some(flow) => {
            rule.on = vec![Condition::Held];
            (
                Subject::Flow(Box::new(sample_flow(flow).await)),
                Moment::Held,
            )
        }
        None => {
            rule.on = vec![Condition::Failed];
            (Subject::Run(Box::new(sample(&config))), Moment::Final)
        }
    };
    if rule.actions.is_empty() {
        return Ok(Outcome::Success);
    }
    let id = subject.id();
    let withheld: std::sync::Arc<[String]> = config.secret_vars().into();
    notifier.tell(
        vec![std::sync::Arc::new(rule)],
        std::sync::Arc::clone(&config.mail),
        withheld,
        subject,
        moment,
    );
    notifier.settled().await;
    let sent = store.notifications(id).await?;
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
        host: crate::process::hostname(),
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

/// A sample run of `flow`, held at its first job step, which failed.
async fn sample_flow(flow: &Flow) -> FlowNews {
    let plan = (*flow.plan).clone();
    let first = plan
        .steps
        .iter()
        .position(|s| matches!(s.action, Action::Job(_)))
        .unwrap_or(0);
    let mut progress = StepsProgress::new(plan.steps.len());
    let mut steps = vec![StepRuns::default(); plan.steps.len()];
    let now = Utc::now();
    if let Some(state) = progress.steps.get_mut(first) {
        *state = StepState::Ended(Known::Failed);
        progress.stopped_at.push(first);
        steps[first] = StepRuns {
            runs: vec![0],
            started_at: Some(now),
            ended_at: Some(now),
        };
    }
    let run = FlowRecord {
        id: 0,
        flow: flow.name.clone(),
        trigger: Trigger::Manual,
        scheduled_at: None,
        started_at: now,
        finished_at: None,
        status: FlowStatus::Held,
        state: FlowState {
            progress,
            steps,
            actions: Vec::new(),
            held_since: Some(now),
        },
        plan,
        host: crate::process::hostname(),
        driver: None,
    };
    FlowNews::of(run, flow.timezone.clone(), None).await
}
