//! One flow run's state and the moves it makes: which steps start, which
//! are skipped and why, where the flow holds, what an operator may do, and
//! how the run ends.
//!
//! Invariants (the property test below races random flows through them):
//! every run ends once no step runs or holds; no step starts twice but by
//! an operator's `retry`; a step starts only while its condition is true
//! and is skipped only once it is false; while the flow is held nothing is
//! decided.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Cond, Known, Step, Test};

/// Where one step of a flow run stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    /// Its condition is not known yet.
    Waiting,
    /// Its job's run is going.
    Running,
    /// A `hold:` step reached: the flow waits for an operator.
    Holding,
    /// It ended so (success, warning or failed).
    Ended(Known),
    /// It will not run, and why.
    Skipped(String),
}

impl StepState {
    /// What a condition sees of it.
    pub fn known(&self) -> Known {
        match self {
            StepState::Waiting | StepState::Running | StepState::Holding => Known::Open,
            StepState::Ended(known) => *known,
            StepState::Skipped(_) => Known::Skipped,
        }
    }
}

/// What a flow run does next; each is recorded before it is acted on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Move {
    /// Start this (job) step's run.
    Start(usize),
    /// A `hold:` step is reached: the flow holds there.
    Hold(usize),
    /// This step will not run, for this reason.
    Skip(usize, String),
}

/// What an operator asks of a flow run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Go on from the holds.
    Resume,
    /// Run this step again.
    Retry(String),
    /// Count this step as success.
    Skip(String),
    /// End the run.
    Abort,
    /// Start nothing new until resumed.
    Hold,
}

impl Op {
    /// What was done, for the flow's status records: "resumed",
    /// "retried `load`".
    pub fn done(&self) -> String {
        match self {
            Op::Resume => "resumed".into(),
            Op::Retry(step) => format!("retried `{step}`"),
            Op::Skip(step) => format!("skipped `{step}` (counted as success)"),
            Op::Abort => "aborted".into(),
            Op::Hold => "held".into(),
        }
    }

    /// What it does, as the record of actions keeps it.
    pub fn acted(&self) -> Acted {
        match self {
            Op::Resume => Acted::Resume,
            Op::Retry(_) => Acted::Retry,
            Op::Skip(_) => Acted::Skip,
            Op::Abort => Acted::Abort,
            Op::Hold => Acted::Hold,
        }
    }

    /// Its word, in the API's paths and the record of actions.
    pub fn word(&self) -> &'static str {
        self.acted().as_str()
    }

    /// The step it names, for `retry` and `skip`.
    pub fn step(&self) -> Option<&str> {
        match self {
            Op::Retry(step) | Op::Skip(step) => Some(step),
            _ => None,
        }
    }
}

/// What was done to a flow run, as its record of actions keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acted {
    /// `flow resume`.
    Resume,
    /// `flow retry`.
    Retry,
    /// `flow skip`.
    Skip,
    /// `flow abort`.
    Abort,
    /// `flow hold`.
    Hold,
    /// Its `hold_timeout` passed: the run was aborted.
    HoldTimeout,
}

impl Acted {
    /// Its word.
    pub fn as_str(self) -> &'static str {
        match self {
            Acted::Resume => "resume",
            Acted::Retry => "retry",
            Acted::Skip => "skip",
            Acted::Abort => "abort",
            Acted::Hold => "hold",
            Acted::HoldTimeout => "hold_timeout",
        }
    }
}

/// A flow run's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowStatus {
    /// Steps are running or may still start.
    Running,
    /// Waiting for an operator.
    Held,
    /// Every step that ran ended ok, none with warnings.
    Success,
    /// A failure was handled by a route, or a step warned.
    Warning,
    /// A step failed and no route handled it.
    Failed,
    /// An operator ended it.
    Aborted,
    /// Scheduled fires that did not run while the daemon was down (and
    /// its `catch_up` did not run them); no step ran.
    Missed,
    /// A scheduled fire not run: a run of the flow still went
    /// (`concurrency: skip`); no step ran.
    Skipped,
}

impl FlowStatus {
    /// Every status, in the order they are listed.
    pub const ALL: [FlowStatus; 8] = [
        FlowStatus::Running,
        FlowStatus::Held,
        FlowStatus::Success,
        FlowStatus::Warning,
        FlowStatus::Failed,
        FlowStatus::Aborted,
        FlowStatus::Missed,
        FlowStatus::Skipped,
    ];

    /// The word for it in the store, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowStatus::Running => "running",
            FlowStatus::Held => "held",
            FlowStatus::Success => "success",
            FlowStatus::Warning => "warning",
            FlowStatus::Failed => "failed",
            FlowStatus::Aborted => "aborted",
            FlowStatus::Missed => "missed",
            FlowStatus::Skipped => "skipped",
        }
    }
}

impl fmt::Display for FlowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An operator action that makes no sense now, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The state of one flow run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Each step's state, in the flow's order.
    pub steps: Vec<StepState>,
    /// Steps whose end holds the flow (a `critical` step that failed)
    /// until an operator decides.
    pub stopped_at: Vec<usize>,
    /// An operator paused it (`flow hold`).
    pub paused: bool,
    /// An operator ended it (`flow abort`).
    pub aborted: bool,
}

impl Progress {
    /// A run of a flow of `steps`, nothing decided yet.
    pub fn new(steps: usize) -> Progress {
        Progress {
            steps: vec![StepState::Waiting; steps],
            ..Progress::default()
        }
    }

    /// What the conditions see of the step named `name`.
    fn known<'a>(&'a self, steps: &'a [Step]) -> impl Fn(&str) -> Known + 'a {
        let index = indices(steps);
        move |name| {
            index
                .get(name)
                .map_or(Known::Skipped, |&i| self.steps[i].known())
        }
    }

    /// Whether it waits for an operator.
    pub fn held(&self) -> bool {
        self.paused || !self.stopped_at.is_empty() || self.steps.contains(&StepState::Holding)
    }

    /// How many steps' runs are going.
    pub fn running(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| **s == StepState::Running)
            .count()
    }

    /// Whether the run is over: nothing runs, holds or waits.
    pub fn is_over(&self) -> bool {
        !self.held()
            && self
                .steps
                .iter()
                .all(|s| matches!(s, StepState::Ended(_) | StepState::Skipped(_)))
    }

    /// Decides every step that can be decided now: starts at most `free`
    /// job steps whose condition is true, reaches `hold:` steps, skips the
    /// steps whose condition is false (and those that follow from it).
    /// Nothing is decided while the flow is held.
    pub fn advance(&mut self, steps: &[Step], free: usize) -> Vec<Move> {
        let mut moves = Vec::new();
        let mut free = free;
        // Made once per call, and only for a condition to read: a flow of
        // a thousand steps is decided in a thousand calls.
        let index = std::cell::OnceCell::new();
        let mut held = self.held();
        loop {
            // A skip changes what conditions see (a start does not: running
            // is as open as waiting): only then is another pass needed.
            let mut skipped = false;
            for (i, step) in steps.iter().enumerate() {
                if held || self.steps[i] != StepState::Waiting {
                    continue;
                }
                let known = |name: &str| {
                    index
                        .get_or_init(|| indices(steps))
                        .get(name)
                        .map_or(Known::Skipped, |&j| self.steps[j].known())
                };
                let value = match &step.after {
                    None => Some(true),
                    Some(cond) => cond.eval(&known),
                };
                match value {
                    // Every step true in this pass is decided alike, whatever
                    // its place in the file; the hold counts from the next.
                    Some(true) if step.is_hold() => {
                        self.steps[i] = StepState::Holding;
                        moves.push(Move::Hold(i));
                    }
                    Some(true) if free > 0 => {
                        free -= 1;
                        self.steps[i] = StepState::Running;
                        moves.push(Move::Start(i));
                    }
                    Some(false) => {
                        let why = step
                            .after
                            .as_ref()
                            .map_or_else(String::new, |c| c.explain(&known));
                        self.steps[i] = StepState::Skipped(why.clone());
                        moves.push(Move::Skip(i, why));
                        skipped = true;
                    }
                    Some(true) | None => {}
                }
            }
            held = self.held();
            if !skipped || held {
                return moves;
            }
        }
    }

    /// Step `i`'s run ended `known`. Returns whether that holds the flow
    /// (the step's `hold_on` names that end).
    pub fn ended(&mut self, steps: &[Step], i: usize, known: Known) -> bool {
        self.steps[i] = StepState::Ended(known);
        let stops = steps[i].hold_on.contains(&known) && !self.aborted;
        if stops {
            self.stopped_at.push(i);
        }
        stops
    }

    /// `flow resume`: reached `hold:` steps count as success, the steps the
    /// flow stopped at stay as they ended and their routes go on.
    pub fn resume(&mut self) -> Result<(), Refused> {
        if !self.held() {
            return Err(Refused(
                "the flow run is not held: there is nothing to resume".into(),
            ));
        }
        for state in &mut self.steps {
            if *state == StepState::Holding {
                *state = StepState::Ended(Known::Success);
            }
        }
        self.stopped_at.clear();
        self.paused = false;
        Ok(())
    }

    /// `flow hold`: nothing new starts until `resume`.
    pub fn pause(&mut self) -> Result<(), Refused> {
        self.still_going()?;
        if self.held() {
            return Err(Refused("the flow run is held already".into()));
        }
        self.paused = true;
        Ok(())
    }

    /// `flow abort`: nothing else starts; the steps not started are
    /// skipped, running ones finish.
    pub fn abort(&mut self, why: &str) -> Result<(), Refused> {
        self.still_going()?;
        for state in &mut self.steps {
            if matches!(state, StepState::Waiting | StepState::Holding) {
                *state = StepState::Skipped(why.to_string());
            }
        }
        self.aborted = true;
        self.stopped_at.clear();
        self.paused = false;
        Ok(())
    }

    /// `flow retry STEP`: a step that ended failed or warning runs again,
    /// as long as no step has gone by how it ended. The step waits on
    /// return: the next [`advance`](Progress::advance) starts it (within
    /// `max_parallel`, once the flow no longer holds).
    pub fn retry(&mut self, steps: &[Step], i: usize) -> Result<(), Refused> {
        self.still_going()?;
        let name = &steps[i].name;
        match &self.steps[i] {
            StepState::Ended(Known::Failed | Known::Warning) => {}
            StepState::Ended(_) => {
                return Err(Refused(format!(
                    "`{name}` ended success: there is nothing to retry"
                )));
            }
            other => {
                return Err(Refused(format!(
                    "`{name}` {}: only a step that ended failed or warning can be retried",
                    describe(other)
                )));
            }
        }
        self.undecided_after(steps, i)?;
        self.steps[i] = StepState::Waiting;
        self.stopped_at.retain(|&s| s != i);
        Ok(())
    }

    /// `flow skip STEP`: the step counts as success without running (one
    /// not started yet, a reached `hold:`, or one that ended failed or
    /// warning that no step has gone by yet).
    pub fn skip(&mut self, steps: &[Step], i: usize) -> Result<(), Refused> {
        self.still_going()?;
        let name = &steps[i].name;
        match &self.steps[i] {
            StepState::Waiting | StepState::Holding => {}
            StepState::Ended(Known::Failed | Known::Warning) => self.undecided_after(steps, i)?,
            other => {
                return Err(Refused(format!(
                    "`{name}` {}: only a step not started, a reached hold or a step that ended failed or warning can be skipped",
                    describe(other)
                )));
            }
        }
        self.steps[i] = StepState::Ended(Known::Success);
        self.stopped_at.retain(|&s| s != i);
        Ok(())
    }

    fn still_going(&self) -> Result<(), Refused> {
        if self.aborted || self.is_over() {
            Err(Refused(
                "the flow run has ended; start a new one with `overnight flow start`".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// Refuses when a step whose condition names step `i` was decided.
    fn undecided_after(&self, steps: &[Step], i: usize) -> Result<(), Refused> {
        let name = &steps[i].name;
        let decided = steps.iter().zip(&self.steps).find(|(step, state)| {
            **state != StepState::Waiting
                && step
                    .after
                    .as_ref()
                    .is_some_and(|c| c.steps().contains(&name.as_str()))
        });
        match decided {
            Some((step, state)) => Err(Refused(format!(
                "`{}` {} already, going by how `{name}` ended; start a new flow run instead",
                step.name,
                describe(state)
            ))),
            None => Ok(()),
        }
    }

    /// The run's status now; at its end, `status_when` (true: success,
    /// false: failed) decides in place of the usual rule.
    pub fn status(&self, steps: &[Step], status_when: Option<&Cond>) -> FlowStatus {
        if self.aborted {
            return FlowStatus::Aborted;
        }
        if self.held() {
            return FlowStatus::Held;
        }
        if !self.is_over() {
            return FlowStatus::Running;
        }
        if let Some(cond) = status_when {
            return match cond.eval(&self.known(steps)) {
                Some(true) => FlowStatus::Success,
                _ => FlowStatus::Failed,
            };
        }
        let mut handled = false;
        for (i, step) in steps.iter().enumerate() {
            if self.steps[i] != StepState::Ended(Known::Failed) {
                continue;
            }
            // Handled: a step whose condition names `failed(step)` ran and
            // ended ok.
            let route_ok = steps.iter().zip(&self.steps).any(|(route, state)| {
                matches!(state, StepState::Ended(Known::Success | Known::Warning))
                    && route.after.as_ref().is_some_and(|c| {
                        c.positive_tests()
                            .contains(&(Test::Failed, step.name.as_str()))
                    })
            });
            if !route_ok {
                return FlowStatus::Failed;
            }
            handled = true;
        }
        if handled || self.steps.contains(&StepState::Ended(Known::Warning)) {
            FlowStatus::Warning
        } else {
            FlowStatus::Success
        }
    }
}

/// Each step's index by its name.
fn indices(steps: &[Step]) -> std::collections::HashMap<&str, usize> {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect()
}

/// A step's state as the tail of a sentence: "`load` is running".
pub fn describe(state: &StepState) -> String {
    match state {
        StepState::Waiting => "has not started".into(),
        StepState::Running => "is running".into(),
        StepState::Holding => "is holding the flow".into(),
        StepState::Ended(known) => known.to_string(),
        StepState::Skipped(_) => "was skipped".into(),
    }
}

#[cfg(test)]
mod tests;
