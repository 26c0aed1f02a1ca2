//! A flow run as triggers tell of it: where it holds and why, what an
//! operator can do about it, and the run drawn as a tree.

use std::fmt::Write as _;

use crate::config::trigger::Condition;
use crate::flow::progress::{Acted, FlowStatus};
use crate::flow::{Action, StepState};
use crate::store::{FlowRecord, Store};
use crate::zone::Zone;

/// A flow run, as triggers tell of it.
#[derive(Clone, Debug)]
pub struct FlowNews {
    /// The run as it stands.
    pub run: FlowRecord,
    /// Where it holds and why (`step `load` is critical and ended failed:
    /// …`); empty unless it holds.
    pub holds: Vec<String>,
    /// The zone its times are shown in (the flow's).
    pub zone: Zone,
}

impl FlowNews {
    /// The news of `run`, its times shown in `zone`: where it holds and
    /// why, with the summaries of its stop points' runs read from `store`.
    pub async fn of(run: FlowRecord, zone: Zone, store: Option<&Store>) -> FlowNews {
        let mut holds = Vec::new();
        if run.status == FlowStatus::Held {
            let progress = &run.state.progress;
            for (i, step) in run.plan.steps.iter().enumerate() {
                if let (StepState::Holding, Action::Hold(text)) = (&progress.steps[i], &step.action)
                {
                    holds.push(format!("step `{}`: {text}", step.name));
                }
                if !progress.stopped_at.contains(&i) {
                    continue;
                }
                let known = progress.steps[i].known();
                let mut why = format!("step `{}` ended {}", step.name, known.word());
                if let Some(&run_id) = run.state.steps[i].runs.last() {
                    why += &format!(" (run #{run_id}");
                    if let Some(store) = store
                        && let Ok(Some(report)) = store.report(run_id).await
                    {
                        why += &format!(": {}", report.summary);
                    }
                    why.push(')');
                }
                why += ", and it is a stop point (`critical` or `hold_on`)";
                holds.push(why);
            }
            if progress.paused {
                let by = run
                    .state
                    .actions
                    .iter()
                    .rev()
                    .find(|a| a.action == Acted::Hold);
                holds.push(match by {
                    Some(action) => format!("paused by {}", action.who),
                    None => "paused by an operator".into(),
                });
            }
        }
        FlowNews { run, holds, zone }
    }

    /// What happened, in a line: where it holds, or how its steps went.
    pub fn summary(&self) -> String {
        match self.run.status {
            FlowStatus::Held if !self.holds.is_empty() => self.holds.join("; "),
            _ => self.run.step_counts(),
        }
    }

    /// What an operator can do about a held run: each command, and what
    /// it does.
    pub fn commands(&self) -> Vec<(String, String)> {
        let id = self.run.id;
        let mut commands = vec![(
            format!("overnight flow resume {id}"),
            "go on along the routes the flow has".to_string(),
        )];
        for &i in &self.run.state.progress.stopped_at {
            let step = &self.run.plan.steps[i].name;
            commands.push((
                format!("overnight flow retry {id} {step}"),
                format!("run `{step}` again"),
            ));
            commands.push((
                format!("overnight flow skip {id} {step}"),
                format!("count `{step}` as success"),
            ));
        }
        commands.push((
            format!("overnight flow abort {id}"),
            "end the run; nothing more starts".to_string(),
        ));
        commands
    }

    /// The text of a message about it: what happened, where it holds and
    /// what to do, then the run as a tree.
    pub fn body(&self, condition: Condition) -> String {
        let run = &self.run;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Flow {} run #{} on {}: {} ({}).",
            run.flow,
            run.id,
            run.host,
            run.status.as_str().to_uppercase(),
            condition.as_str()
        );
        if run.status == FlowStatus::Held {
            let _ = writeln!(out, "\nIt holds:");
            for hold in &self.holds {
                let _ = writeln!(out, "  - {hold}");
            }
            let _ = writeln!(out, "\nNothing new starts until an operator decides:");
            let commands = self.commands();
            let width = commands.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
            for (command, does) in commands {
                let _ = writeln!(out, "  {command:width$}   {does}");
            }
        } else {
            let _ = writeln!(out, "{}", run.step_counts());
        }
        let _ = writeln!(out, "\n{}", run.tree(&self.zone));
        let _ = writeln!(out, "\nThe flow report is attached as report.json.");
        out
    }
}
