//! Reading the `flows:` of a jobs file (the type is [`super::flow::Flow`]):
//! each flow's keys and steps, every name a condition or a step uses, and
//! the graph's own flaws ([`crate::flow::shape`]) — all reported at once.

use std::collections::HashSet;
use std::sync::Arc;

use super::check::{Check, closest};
use super::flow::Flow;
use super::node::{Node, Pos, Value};
use super::{CatchUp, Concurrency, Job, valid_name};
use crate::flow::condition::RESERVED;
use crate::flow::shape::{self, Flaw};
use crate::flow::{Action, Cond, Known, Plan, Step};
use crate::schedule::Schedule;
use crate::zone::Zone;

const FLOW_KEYS: &[&str] = &[
    "description",
    "schedule",
    "timezone",
    "catch_up",
    "concurrency",
    "hosts",
    "tags",
    "max_parallel",
    "hold_timeout",
    "status_when",
    "steps",
];
const STEP_KEYS: &[&str] = &["job", "hold", "after", "critical", "hold_on"];

/// Where a flow's parts stand in the file, for its problems.
struct Places {
    steps: Vec<Pos>,
    after: Vec<Option<Pos>>,
}

impl Check<'_> {
    /// `flows:`, with the file's jobs and zone read already.
    pub(super) fn flows(&mut self, node: &Node, jobs: &[Arc<Job>], zone: &Zone) -> Vec<Arc<Flow>> {
        let Value::Map(entries) = &node.value else {
            self.problem(
                node.pos,
                format!(
                    "`flows` must be a mapping of flow names to flows, not {}",
                    node.kind()
                ),
            );
            return Vec::new();
        };
        let mut seen = HashSet::new();
        let mut flows = Vec::new();
        for (key, value) in entries {
            let Some(name) = key.as_str() else {
                self.problem(key.pos, "flow names must be strings");
                continue;
            };
            if !seen.insert(name) {
                self.problem(key.pos, format!("duplicate flow name `{name}`"));
                continue;
            }
            if !valid_name(name) {
                self.problem(
                    key.pos,
                    format!("bad flow name `{name}`: use only letters, digits, `.`, `_` and `-`"),
                );
            }
            if let Some(flow) = self.flow(name, key.pos, value, jobs, zone) {
                flows.push(Arc::new(flow));
            }
        }
        flows
    }

    fn flow(
        &mut self,
        name: &str,
        at: Pos,
        node: &Node,
        jobs: &[Arc<Job>],
        zone: &Zone,
    ) -> Option<Flow> {
        let before = self.problems.len();
        let mut flow = Flow {
            name: name.to_string(),
            description: None,
            schedule: None,
            timezone: zone.clone(),
            catch_up: CatchUp::default(),
            concurrency: Concurrency::Skip,
            placement: Default::default(),
            plan: Arc::new(Plan {
                steps: Vec::new(),
                max_parallel: None,
                hold_timeout: None,
                status_when: None,
            }),
        };
        let mut plan = Plan::clone(&flow.plan);
        let mut schedule = None;
        let mut steps = None;
        let mut status_when = None;
        for (key, value) in self.mapping(node, &format!("flow `{name}`"), FLOW_KEYS) {
            match key {
                "description" => flow.description = self.string(value, "`description`"),
                "schedule" => schedule = Some(value),
                "timezone" => flow.timezone = self.zone(value).unwrap_or(flow.timezone),
                "catch_up" => flow.catch_up = self.catch_up(value),
                "concurrency" => {
                    let options = [("skip", Concurrency::Skip), ("allow", Concurrency::Allow)];
                    flow.concurrency = self
                        .keyword(value, "flow concurrency", &options)
                        .unwrap_or_default();
                }
                "max_parallel" => match value.value {
                    Value::Int(n @ 1..=10_000) => plan.max_parallel = Some(n as usize),
                    _ => self.problem(
                        value.pos,
                        "a flow's `max_parallel` must be a number from 1 to 10000",
                    ),
                },
                "hosts" => flow.placement.hosts = self.names(value, "`hosts`"),
                "tags" => flow.placement.tags = self.names(value, "`tags`"),
                "hold_timeout" => plan.hold_timeout = self.duration(value, "`hold_timeout`"),
                "status_when" => status_when = Some(value),
                "steps" => steps = Some(value),
                _ => unreachable!("mapping() returns known keys only"),
            }
        }
        if let Some(node) = schedule
            && let Some(expr) = self.string(node, "`schedule`")
        {
            match Schedule::parse(&expr, flow.timezone.clone()) {
                Ok(s) => flow.schedule = Some(s),
                Err(e) => self.problem(node.pos, format!("bad schedule: {e}")),
            }
        }
        let Some(steps) = steps else {
            self.problem(
                at,
                format!("flow `{name}` has no `steps:`; add the steps it runs"),
            );
            return None;
        };
        let (read, places) = self.steps(name, steps, jobs);
        plan.steps = read;
        plan.status_when = status_when.and_then(|node| self.condition(name, None, node));
        let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        for (i, step) in plan.steps.iter().enumerate() {
            let at = places.after[i].unwrap_or(places.steps[i]);
            self.names_known(name, Some(&step.name), step.after.as_ref(), &names, at);
        }
        if let Some(node) = status_when {
            self.names_known(name, None, plan.status_when.as_ref(), &names, node.pos);
        }
        // A name not in the flow is taken to end any way: no flaw is
        // found that is not there.
        self.flaws(name, &plan.steps, &places);
        self.place(&mut flow, &plan.steps, jobs, at);
        flow.plan = Arc::new(plan);
        (self.problems.len() == before).then_some(flow)
    }

    /// Narrows `flow`'s placement to the hosts each of its steps' jobs
    /// admits too: its steps run on the host that drives it, and a job
    /// pinned to its data's host must not run elsewhere as a step.
    fn place(&mut self, flow: &mut Flow, steps: &[Step], jobs: &[Arc<Job>], at: Pos) {
        for step in steps {
            let Action::Job(job) = &step.action else {
                continue;
            };
            let Some(job) = jobs.iter().find(|j| &j.name == job) else {
                continue;
            };
            match flow.placement.within(&job.placement) {
                Some(narrowed) => flow.placement = narrowed,
                None => {
                    self.problem(
                        at,
                        format!(
                            "flow `{}` can be driven by no host: its step `{}` runs job `{}` on {}, and the flow (with its steps before) on {}; a flow's steps run on the host that drives it, so give their jobs a host in common",
                            flow.name,
                            step.name,
                            job.name,
                            job.placement.describe(),
                            flow.placement.describe()
                        ),
                    );
                    return;
                }
            }
        }
    }

    fn steps(&mut self, flow: &str, node: &Node, jobs: &[Arc<Job>]) -> (Vec<Step>, Places) {
        let mut steps = Vec::new();
        let mut places = Places {
            steps: Vec::new(),
            after: Vec::new(),
        };
        let Value::Map(entries) = &node.value else {
            self.problem(
                node.pos,
                format!("`steps` of flow `{flow}` must be a mapping of step names to steps"),
            );
            return (steps, places);
        };
        if entries.is_empty() {
            self.problem(node.pos, format!("flow `{flow}` has no steps"));
        }
        let job_names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        for (key, value) in entries {
            let Some(name) = key.as_str() else {
                self.problem(key.pos, "step names must be strings");
                continue;
            };
            if steps.iter().any(|s: &Step| s.name == name) {
                self.problem(key.pos, format!("duplicate step `{name}` in flow `{flow}`"));
                continue;
            }
            if !valid_name(name) || RESERVED.contains(&name) {
                self.problem(
                    key.pos,
                    format!("bad step name `{name}`: use letters, digits, `.`, `_` and `-`, and not `and`, `or` or `not`"),
                );
                continue;
            }
            let mut step = Step {
                name: name.to_string(),
                action: Action::Hold(String::new()),
                after: None,
                hold_on: Vec::new(),
            };
            let mut action = None;
            let mut after_at = None;
            let mut critical = None;
            for (key, value) in self.mapping(value, &format!("step `{name}`"), STEP_KEYS) {
                match key {
                    "job" | "hold" if action.is_some() => self.problem(
                        value.pos,
                        format!("step `{name}` has both `job` and `hold`; give it one of them"),
                    ),
                    "job" => {
                        let job = self.string(value, "`job`");
                        if let Some(job) = &job
                            && !job_names.contains(&job.as_str())
                        {
                            let hint = closest(job, &job_names)
                                .map_or_else(String::new, |n| format!("; did you mean `{n}`?"));
                            self.problem(
                                value.pos,
                                format!("step `{name}` of flow `{flow}` runs job `{job}`, which is not in the file{hint}"),
                            );
                        }
                        action = job.map(Action::Job);
                    }
                    "hold" => {
                        let text = self.string(value, "`hold`").unwrap_or_default();
                        if text.trim().is_empty() {
                            self.problem(
                                value.pos,
                                format!("hold step `{name}` needs a message for the operator, like `hold: \"Compare the counts, then resume\"`"),
                            );
                        }
                        action = Some(Action::Hold(text));
                    }
                    "after" => {
                        after_at = Some(value.pos);
                        step.after = self.condition(flow, Some(name), value);
                    }
                    "critical" => critical = self.boolean(value, "`critical`"),
                    "hold_on" => {
                        step.hold_on = self.list_of(value, "`hold_on`", |c, n| {
                            c.keyword(
                                n,
                                "end for `hold_on`",
                                &[("failed", Known::Failed), ("warning", Known::Warning)],
                            )
                        })
                    }
                    _ => unreachable!("mapping() returns known keys only"),
                }
            }
            if critical == Some(true) && !step.hold_on.contains(&Known::Failed) {
                step.hold_on.push(Known::Failed);
            }
            match action {
                Some(action) => step.action = action,
                None => self.problem(
                    key.pos,
                    format!("step `{name}` of flow `{flow}` needs `job:` (the job it runs) or `hold:` (a message for the operator)"),
                ),
            }
            if step.is_hold() && !step.hold_on.is_empty() {
                self.problem(
                    key.pos,
                    format!("hold step `{name}` always holds; `critical` and `hold_on` are for job steps"),
                );
            }
            steps.push(step);
            places.steps.push(key.pos);
            places.after.push(after_at);
        }
        (steps, places)
    }

    /// An `after:` (a condition, or a list of them, all needed) or a
    /// `status_when:`.
    fn condition(&mut self, flow: &str, step: Option<&str>, node: &Node) -> Option<Cond> {
        let whose = match step {
            Some(step) => format!("step `{step}` of flow `{flow}`"),
            None => format!("`status_when` of flow `{flow}`"),
        };
        let texts: Vec<&Node> = match &node.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        let mut conds = Vec::new();
        for item in texts {
            let Some(text) = item.scalar() else {
                self.problem(
                    item.pos,
                    format!("the condition of {whose} must be text, like `success(load)`"),
                );
                continue;
            };
            match Cond::parse(&text) {
                Ok(cond) => conds.push(cond),
                Err(e) => self.problem(item.pos, format!("{whose}: bad condition `{text}`: {e}")),
            }
        }
        (!conds.is_empty()).then(|| Cond::all(conds))
    }

    /// Says each step `cond` names that is not in the flow.
    fn names_known(
        &mut self,
        flow: &str,
        step: Option<&str>,
        cond: Option<&Cond>,
        names: &[&str],
        at: Pos,
    ) {
        for named in cond.map(Cond::steps).unwrap_or_default() {
            if names.contains(&named) && step != Some(named) {
                continue;
            }
            let whose = step.map_or_else(|| "`status_when`".to_string(), |s| format!("step `{s}`"));
            let message = if step == Some(named) {
                format!("{whose} of flow `{flow}` waits for itself; name the steps it comes after")
            } else {
                let hint = closest(named, names)
                    .map_or_else(String::new, |n| format!("; did you mean `{n}`?"));
                format!(
                    "{whose} of flow `{flow}` names step `{named}`, which is not in the flow{hint}"
                )
            };
            self.problem(at, message);
        }
    }

    fn flaws(&mut self, flow: &str, steps: &[Step], places: &Places) {
        for flaw in shape::flaws(steps) {
            let (at, message) = match flaw {
                Flaw::Cycle(cycle) => {
                    let path: Vec<&str> = cycle.iter().map(|&i| steps[i].name.as_str()).collect();
                    (
                        places.steps[cycle[0]],
                        format!(
                            "steps of flow `{flow}` wait for each other: {}; break the cycle",
                            path.join(" -> ")
                        ),
                    )
                }
                Flaw::Impossible(i) => (
                    places.after[i].unwrap_or(places.steps[i]),
                    format!(
                        "step `{}` of flow `{flow}` can never start: `{}` is false however its steps end",
                        steps[i].name,
                        steps[i]
                            .after
                            .as_ref()
                            .map(Cond::to_string)
                            .unwrap_or_default()
                    ),
                ),
                Flaw::Unreachable(i, narrow) => {
                    let because: Vec<String> = narrow
                        .iter()
                        .map(|(j, ends)| {
                            let ends: Vec<&str> = ends.iter().map(|k| k.word()).collect();
                            let ends = match ends.split_last() {
                                Some((last, [])) => last.to_string(),
                                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                                None => String::new(),
                            };
                            format!("`{}` can only end {ends}", steps[*j].name)
                        })
                        .collect();
                    (
                        places.after[i].unwrap_or(places.steps[i]),
                        format!(
                            "step `{}` of flow `{flow}` can never start: no path makes `{}` true ({})",
                            steps[i].name,
                            steps[i]
                                .after
                                .as_ref()
                                .map(Cond::to_string)
                                .unwrap_or_default(),
                            because.join("; ")
                        ),
                    )
                }
            };
            self.problem(at, message);
        }
    }
}
