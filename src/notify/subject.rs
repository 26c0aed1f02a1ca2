//! What trigger rules are asked about: a job's run, or a flow run.

use super::{FlowNews, condition_of, flow_condition_of};
use crate::config::trigger::Condition;
use crate::report::Report;

/// What the rules are asked about.
#[derive(Clone, Debug)]
pub enum Subject {
    /// A job's run, or a fire that did not run.
    Run(Box<Report>),
    /// A flow run.
    Flow(Box<FlowNews>),
}

impl Subject {
    /// The run's (or flow run's) id.
    pub fn id(&self) -> i64 {
        match self {
            Subject::Run(report) => report.run_id,
            Subject::Flow(news) => news.run.id,
        }
    }

    /// Its job's (or flow's) name.
    pub fn name(&self) -> &str {
        match self {
            Subject::Run(report) => &report.job,
            Subject::Flow(news) => &news.run.flow,
        }
    }

    /// `job` or `flow`: what the name names.
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Run(_) => "job",
            Subject::Flow(_) => "flow",
        }
    }

    /// Its status word.
    pub fn status(&self) -> &'static str {
        match self {
            Subject::Run(report) => report.status.as_str(),
            Subject::Flow(news) => news.run.status.as_str(),
        }
    }

    /// Where it ran.
    pub fn host(&self) -> &str {
        match self {
            Subject::Run(report) => &report.host,
            Subject::Flow(news) => &news.run.host,
        }
    }

    /// What happened, in a line.
    pub fn summary(&self) -> String {
        match self {
            Subject::Run(report) => report.summary.clone(),
            Subject::Flow(news) => news.summary(),
        }
    }

    /// The report as JSON: the run's, or the flow's.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Subject::Run(report) => serde_json::to_value(report).expect("a report serialises"),
            Subject::Flow(news) => news.run.report(),
        }
    }

    /// `""` or `"flow "`: what goes before the name in a sentence.
    pub fn what(&self) -> &'static str {
        match self {
            Subject::Run(_) => "",
            Subject::Flow(_) => "flow ",
        }
    }

    /// `run #12 of `nightly`` or `flow run #14 of `legacy-sync``.
    pub fn title(&self) -> String {
        format!("{}run #{} of `{}`", self.what(), self.id(), self.name())
    }

    /// The condition its end is, if it has ended.
    pub(super) fn outcome(&self) -> Option<Condition> {
        match self {
            Subject::Run(report) => condition_of(report.status),
            Subject::Flow(news) => flow_condition_of(news.run.status),
        }
    }
}
