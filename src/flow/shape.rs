//! What `check` finds wrong with a flow's graph once every name is known:
//! a cycle, a condition that can never be true, a step no path reaches.
//!
//! Reachability follows the ways each step can end, in the graph's order:
//! a step with no `after` always runs (so it is never skipped), a `hold:`
//! step can only succeed (resumed) or be skipped, a step whose condition
//! cannot be true is always skipped. Steps are taken to end independently
//! of each other, which allows more than a real run can do: what is found
//! unreachable so is unreachable indeed.

use super::{Known, Step};

/// A flaw in a flow's graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// These steps wait for each other, in this order (the first again at
    /// the end): `load -> verify -> load`.
    Cycle(Vec<usize>),
    /// The step's condition is false however its steps end.
    Impossible(usize),
    /// The step's condition could be true, but not with the ways its
    /// steps can end; the steps that cannot end every way, with how they
    /// can.
    Unreachable(usize, Vec<(usize, Vec<Known>)>),
}

/// The flaws of `steps`, whose conditions name only steps among them.
pub fn flaws(steps: &[Step]) -> Vec<Flaw> {
    let names = |i: usize| waits_for(steps, i);
    let free = |_: &str| Known::ENDS.to_vec();
    let impossible: Vec<bool> = steps
        .iter()
        .map(|s| {
            s.after
                .as_ref()
                .is_some_and(|c| c.satisfiable(&free) == Some(false))
        })
        .collect();
    let mut flaws: Vec<Flaw> = (0..steps.len())
        .filter(|&i| impossible[i])
        .map(Flaw::Impossible)
        .collect();
    if let Some(cycle) = cycle(steps.len(), &names) {
        // Without an order there are no paths to follow.
        flaws.insert(0, Flaw::Cycle(cycle));
        return flaws;
    }
    let mut ends: Vec<Option<Vec<Known>>> = vec![None; steps.len()];
    for i in order(steps.len(), &names) {
        let step = &steps[i];
        let runs = if step.is_hold() {
            vec![Known::Success]
        } else {
            vec![Known::Success, Known::Warning, Known::Failed]
        };
        let Some(cond) = &step.after else {
            ends[i] = Some(runs);
            continue;
        };
        let possible = |name: &str| {
            steps
                .iter()
                .position(|s| s.name == name)
                .and_then(|j| ends[j].clone())
                .unwrap_or_else(|| Known::ENDS.to_vec())
        };
        let mut can = runs;
        if impossible[i] {
            can = Vec::new();
        } else if cond.satisfiable(&possible) == Some(false) {
            let narrow = names(i)
                .into_iter()
                .filter_map(|j| ends[j].clone().map(|e| (j, e)))
                .filter(|(_, e)| e.len() < Known::ENDS.len())
                .collect();
            flaws.push(Flaw::Unreachable(i, narrow));
            can = Vec::new();
        }
        if cond.refutable(&possible) != Some(false) {
            can.push(Known::Skipped);
        }
        ends[i] = Some(can);
    }
    flaws
}

/// The steps as a tree is drawn: each after the steps it waits for, with
/// its depth (one more than the deepest of them; 0 for a step that starts
/// with the flow).
pub fn layout(steps: &[Step]) -> Vec<(usize, usize)> {
    let names: Vec<Vec<usize>> = (0..steps.len()).map(|i| waits_for(steps, i)).collect();
    let mut depth = vec![0usize; steps.len()];
    let mut placed = vec![false; steps.len()];
    let mut out = Vec::with_capacity(steps.len());
    // Depth first: a step's followers come right under it.
    let mut ready: Vec<usize> = (0..steps.len())
        .rev()
        .filter(|&i| names[i].is_empty())
        .collect();
    while let Some(i) = ready.pop() {
        if placed[i] {
            continue;
        }
        placed[i] = true;
        depth[i] = names[i].iter().map(|&j| depth[j] + 1).max().unwrap_or(0);
        out.push((i, depth[i]));
        for j in (0..steps.len()).rev() {
            if !placed[j] && names[j].contains(&i) && names[j].iter().all(|&k| placed[k]) {
                ready.push(j);
            }
        }
    }
    out
}

/// The steps step `i`'s condition names, by index.
fn waits_for(steps: &[Step], i: usize) -> Vec<usize> {
    steps[i]
        .after
        .as_ref()
        .map(|c| {
            c.steps()
                .iter()
                .filter_map(|n| steps.iter().position(|s| s.name == *n))
                .collect()
        })
        .unwrap_or_default()
}

/// A cycle among `n` steps where `names(i)` are the steps `i` waits for.
fn cycle(n: usize, names: &impl Fn(usize) -> Vec<usize>) -> Option<Vec<usize>> {
    // 0: not seen, 1: on the path, 2: done.
    let mut mark = vec![0u8; n];
    let mut path = Vec::new();
    fn visit(
        i: usize,
        names: &impl Fn(usize) -> Vec<usize>,
        mark: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        mark[i] = 1;
        path.push(i);
        for j in names(i) {
            if mark[j] == 1 {
                let from = path.iter().position(|&p| p == j).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(j);
                return Some(cycle);
            }
            if mark[j] == 0
                && let Some(cycle) = visit(j, names, mark, path)
            {
                return Some(cycle);
            }
        }
        path.pop();
        mark[i] = 2;
        None
    }
    (0..n).find_map(|i| {
        if mark[i] == 0 {
            visit(i, names, &mut mark, &mut path)
        } else {
            None
        }
    })
}

/// The steps in an order where each comes after those it waits for (the
/// graph has no cycle).
fn order(n: usize, names: &impl Fn(usize) -> Vec<usize>) -> Vec<usize> {
    let mut placed = vec![false; n];
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let before = out.len();
        for i in 0..n {
            if !placed[i] && names(i).iter().all(|&j| placed[j]) {
                placed[i] = true;
                out.push(i);
            }
        }
        if out.len() == before {
            break; // a cycle: not reached, `flaws` looks for one first
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Action, Cond};

    fn steps(spec: &[(&str, Option<&str>, bool)]) -> Vec<Step> {
        spec.iter()
            .map(|(name, after, hold)| Step {
                name: name.to_string(),
                action: if *hold {
                    Action::Hold("look".into())
                } else {
                    Action::Job("j".into())
                },
                after: after.map(|a| Cond::parse(a).unwrap()),
                hold_on: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn a_tree_puts_each_step_under_what_it_waits_for() {
        let s = steps(&[
            ("a", None, false),
            ("c", None, false),
            ("b", Some("a"), false),
            ("d", Some("c and b"), false),
        ]);
        assert_eq!(layout(&s), [(0, 0), (2, 1), (1, 0), (3, 2)]);
    }

    #[test]
    fn a_cycle_is_given_in_order() {
        let s = steps(&[
            ("export", None, false),
            ("load", Some("verify"), false),
            ("verify", Some("export and load"), false),
        ]);
        assert_eq!(flaws(&s), [Flaw::Cycle(vec![1, 2, 1])]);
    }

    #[test]
    fn impossible_and_unreachable_steps_are_found_and_sound_ones_pass() {
        let s = steps(&[
            ("a", None, false),
            ("b", Some("success(a) and failed(a)"), false),
            ("c", Some("skipped(a)"), false),
            ("d", Some("b"), false),
            ("h", Some("a"), true),
            ("e", Some("warning(h)"), false),
            ("f", Some("failed(a) or skipped(h)"), false),
        ]);
        assert_eq!(
            flaws(&s),
            [
                Flaw::Impossible(1),
                Flaw::Unreachable(
                    2,
                    vec![(0, vec![Known::Success, Known::Warning, Known::Failed])]
                ),
                Flaw::Unreachable(3, vec![(1, vec![Known::Skipped])]),
                Flaw::Unreachable(5, vec![(4, vec![Known::Success, Known::Skipped])]),
            ]
        );
    }
}
