//! An operator's command on a flow run's record, and the status it
//! leaves: the same whether the daemon driving the run applies it or,
//! with no daemon, `overnight flow` applies it to the store.

use chrono::{DateTime, Utc};

use super::{FlowAction, FlowRecord};
use crate::flow::progress::{FlowStatus, Refused};
use crate::flow::{Op, StepState};

impl FlowRecord {
    /// Applies `op`, given by `who` at `now`, and records it among the
    /// run's actions: the steps it changed, or why it makes no sense.
    /// A retried step waits to be started again.
    pub fn operate(
        &mut self,
        op: &Op,
        who: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<usize>, Refused> {
        let steps = &self.plan.steps;
        let index = |name: &str| {
            steps.iter().position(|s| s.name == name).ok_or_else(|| {
                let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
                Refused(format!(
                    "flow `{}` has no step `{name}`; its steps: {}",
                    self.flow,
                    names.join(", ")
                ))
            })
        };
        let step = op.step().map(index).transpose()?;
        // The holds a resume ends, for their end times.
        let holding: Vec<usize> = (0..steps.len())
            .filter(|&i| self.state.progress.steps[i] == StepState::Holding)
            .collect();
        let progress = &mut self.state.progress;
        match (op, step) {
            (Op::Resume, _) => progress.resume(),
            (Op::Hold, _) => progress.pause(),
            (Op::Abort, _) => progress.abort(&format!("the flow run was aborted by {who}")),
            (Op::Skip(_), Some(i)) => progress.skip(steps, i),
            (Op::Retry(_), Some(i)) => progress.retry(steps, i),
            (Op::Skip(_) | Op::Retry(_), None) => unreachable!("a step is named"),
        }?;
        self.state.actions.push(FlowAction {
            at: now,
            action: op.acted(),
            step: op.step().map(str::to_string),
            who: who.to_string(),
        });
        let times = &mut self.state.steps;
        Ok(match op {
            Op::Retry(_) | Op::Skip(_) => {
                let i = step.expect("a step is named");
                // A retried step's times are its next run's.
                times[i].ended_at = matches!(op, Op::Skip(_)).then_some(now);
                vec![i]
            }
            Op::Resume | Op::Abort => {
                for i in holding {
                    times[i].ended_at = Some(now);
                }
                (0..times.len()).collect()
            }
            Op::Hold => Vec::new(),
        })
    }

    /// Brings the status up to date, and since when the run holds:
    /// whether it has just come to a hold.
    pub fn settle(&mut self) -> bool {
        let status = self
            .state
            .progress
            .status(&self.plan.steps, self.plan.status_when.as_ref());
        let newly_held = status == FlowStatus::Held && self.state.held_since.is_none();
        match status {
            FlowStatus::Held => {
                self.state.held_since.get_or_insert_with(Utc::now);
            }
            _ => self.state.held_since = None,
        }
        self.status = status;
        newly_held
    }
}
