//! Flows: named graphs of steps, each step a job of the jobs file (or a
//! `hold:` for the operator), started by conditions on how earlier steps
//! ended (DESIGN §8).
//!
//! This module is the flow's logic alone, with no I/O: the [`condition`]
//! language, the shape of a flow ([`Step`], [`shape`]: cycles, conditions
//! that can never hold, steps nothing can reach) and [`progress`], the
//! state of one flow run and every move it may make. The daemon runs the
//! moves and records each before it acts on it.

pub mod condition;
pub mod progress;
pub mod shape;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use condition::{Cond, Known, Test};
pub use progress::{Move, Op, Progress, StepState};

/// A flow's steps and the rules of a run of it: what a run keeps from the
/// jobs file when it starts, so that a reload does not change it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The steps, in the file's order.
    pub steps: Vec<Step>,
    /// At most this many of its steps' runs at once.
    pub max_parallel: Option<usize>,
    /// A hold left this long ends the run as `aborted`.
    pub hold_timeout: Option<Duration>,
    /// Decides the status at the end in place of the usual rule: true is
    /// `success`, false `failed`.
    #[serde(with = "cond_text")]
    pub status_when: Option<Cond>,
}

impl Plan {
    /// The step of this name, by index.
    pub fn step(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }
}

/// A run's place in a flow run, said to its job in its environment
/// (`OVERNIGHT_FLOW`, `OVERNIGHT_FLOW_RUN_ID`, `OVERNIGHT_STEP`,
/// `OVERNIGHT_FLOW_DETAILS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The flow's name.
    pub flow: String,
    /// The flow run's id.
    pub flow_run_id: i64,
    /// The step's name.
    pub step: String,
    /// A JSON file of the `details` of every step that ended before this
    /// one started, by step name.
    pub details: std::path::PathBuf,
}

/// One step of a flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Its name, unique in the flow.
    pub name: String,
    /// What it does.
    pub action: Action,
    /// When it starts; `None`: with the flow.
    #[serde(with = "cond_text")]
    pub after: Option<Cond>,
    /// The ends that hold the flow at it (`critical: true` is `[failed]`).
    pub hold_on: Vec<Known>,
}

/// What a step does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Runs the job of this name, as an ordinary run.
    Job(String),
    /// Stops the flow with this message until an operator resumes it.
    Hold(String),
}

impl Step {
    /// Whether it is a `hold:` step.
    pub fn is_hold(&self) -> bool {
        matches!(self.action, Action::Hold(_))
    }
}

/// A condition kept as its text: a flow's definition is stored with each
/// of its runs, and read back by the same parser.
mod cond_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Cond;

    pub fn serialize<S: Serializer>(cond: &Option<Cond>, s: S) -> Result<S::Ok, S::Error> {
        match cond {
            Some(c) => s.serialize_some(&c.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cond>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| Cond::parse(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl Serialize for Known {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.word())
    }
}

impl<'de> Deserialize<'de> for Known {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Known, D::Error> {
        let word = String::deserialize(d)?;
        Known::from_word(&word).ok_or_else(|| serde::de::Error::custom(format!("`{word}`")))
    }
}
