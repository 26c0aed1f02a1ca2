//! A flow run for people: drawn as a tree with its route, for
//! `overnight flow status` and the messages triggers send about it.

use super::FlowRecord;
use crate::flow::progress::{Acted, FlowStatus, describe};
use crate::flow::{Action, StepState, shape};
use crate::report::{human_time, span};
use crate::zone::Zone;

impl FlowRecord {
    /// "5 ran, 2 skipped" (with how many failed and are still open).
    pub fn step_counts(&self) -> String {
        let mut ran = 0;
        let mut failed = 0;
        let mut skipped = 0;
        let mut open = 0;
        for state in &self.state.progress.steps {
            match state {
                StepState::Ended(known) => {
                    ran += 1;
                    failed += usize::from(*known == crate::flow::Known::Failed);
                }
                StepState::Skipped(_) => skipped += 1,
                _ => open += 1,
            }
        }
        let mut parts = vec![format!("{ran} ran")];
        if failed > 0 {
            parts.push(format!("{failed} failed"));
        }
        parts.push(format!("{skipped} skipped"));
        if open > 0 {
            parts.push(format!("{open} open"));
        }
        parts.join(", ")
    }

    /// A flow run as a tree: each step under those it waits for, with its
    /// status, run and time, why it was skipped, where the run holds; then
    /// the operators' actions.
    pub fn tree(&self, zone: &Zone) -> String {
        let mut out = format!(
            "flow run #{} of `{}`: {}, started {} ({})",
            self.id,
            self.flow,
            self.status,
            human_time(self.started_at, zone),
            self.trigger.as_str()
        );
        if let Some(end) = self.finished_at {
            out += &format!(", took {}", span(self.started_at, end));
        }
        out.push('\n');
        let steps = &self.plan.steps;
        let rows: Vec<(String, usize)> = shape::layout(steps)
            .into_iter()
            .map(|(i, depth)| (format!("{}{}", "  ".repeat(depth + 1), steps[i].name), i))
            .collect();
        let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        for (name, i) in rows {
            let state = &self.state.progress.steps[i];
            let runs = &self.state.steps[i];
            // An operator's skip or resume made it a success: said so, not
            // passed off as a run that succeeded.
            let by = self.state.actions.iter().rev().find(|a| {
                a.step.as_deref() == Some(steps[i].name.as_str()) && a.action == Acted::Skip
            });
            let word = match (state, by, &steps[i].action) {
                (StepState::Waiting, ..) => "waiting".to_string(),
                (StepState::Running, ..) => "running".to_string(),
                (StepState::Holding, ..) => "HOLDING".to_string(),
                (StepState::Ended(crate::flow::Known::Success), Some(_), _) => "waived".to_string(),
                (StepState::Ended(crate::flow::Known::Success), None, Action::Hold(_)) => {
                    "resumed".to_string()
                }
                (StepState::Ended(known), ..) => known.word().to_string(),
                (StepState::Skipped(_), ..) => "skipped".to_string(),
            };
            let mut line = format!("{name:width$}  {word:8}");
            if let Some(id) = runs.runs.last() {
                line += &format!("  run #{id}");
                if runs.runs.len() > 1 {
                    line += &format!(" ({} tries)", runs.runs.len());
                }
            }
            if let (Some(a), Some(b)) = (runs.started_at, runs.ended_at) {
                line += &format!("  {}", span(a, b));
            }
            match (state, &steps[i].action) {
                (StepState::Skipped(why), _) => line += &format!("  ({why})"),
                _ if by.is_some() => {
                    let by = by.expect("checked");
                    line += &format!(
                        "  (skipped by {} at {}, counted as success)",
                        by.who,
                        human_time(by.at, zone)
                    );
                }
                (StepState::Holding, Action::Hold(text)) => line += &format!("  <- {text}"),
                _ if self.state.progress.stopped_at.contains(&i) => {
                    line += &format!("  <- held here: it {}", describe(state));
                }
                _ => {}
            }
            out += line.trim_end();
            out.push('\n');
        }
        if self.status == FlowStatus::Held {
            out += &format!(
                "held: `overnight flow resume {id}` goes on; `retry {id} STEP`, `skip {id} STEP` or `abort {id}` decide otherwise\n",
                id = self.id
            );
        }
        for action in &self.state.actions {
            out += &format!(
                "{} {}{} by {}\n",
                human_time(action.at, zone),
                action.action.as_str(),
                action
                    .step
                    .as_deref()
                    .map(|s| format!(" `{s}`"))
                    .unwrap_or_default(),
                action.who
            );
        }
        out.trim_end().to_string()
    }
}
