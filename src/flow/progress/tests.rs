//! The legacy-sync flow of DESIGN §8 through its four routes, and a
//! property test racing random flows through random ends and operators.

use proptest::prelude::*;

use super::*;
use crate::flow::Action;

fn step(name: &str, after: Option<&str>, hold_on: &[Known]) -> Step {
    Step {
        name: name.into(),
        action: Action::Job(format!("{name}-job")),
        after: after.map(|a| Cond::parse(a).unwrap()),
        hold_on: hold_on.to_vec(),
    }
}

fn legacy_sync() -> Vec<Step> {
    let mut approve = step("approve", Some("done(reconcile)"), &[]);
    approve.action = Action::Hold("Compare the counts, then resume".into());
    vec![
        step("export", None, &[]),
        step("verify", Some("export"), &[]),
        step("load", Some("verify"), &[Known::Failed]),
        step("reconcile", Some("success(load)"), &[]),
        step("rollback", Some("failed(load) or failed(verify)"), &[]),
        approve,
        step("publish", Some("approve"), &[]),
    ]
}

fn index(steps: &[Step], name: &str) -> usize {
    steps.iter().position(|s| s.name == name).unwrap()
}

/// Runs every started step to the end `end` gives it, until the flow
/// holds or is over.
fn drive(p: &mut Progress, steps: &[Step], end: &dyn Fn(&str) -> Known) {
    loop {
        p.advance(steps, usize::MAX);
        let Some(i) = p.steps.iter().position(|s| *s == StepState::Running) else {
            return;
        };
        p.ended(steps, i, end(&steps[i].name));
    }
}

fn skipped_why(p: &Progress, steps: &[Step], name: &str) -> String {
    match &p.steps[index(steps, name)] {
        StepState::Skipped(why) => why.clone(),
        other => panic!("{name} is {other:?}"),
    }
}

#[test]
fn all_succeed_then_approve_holds_and_resume_publishes() {
    let steps = legacy_sync();
    let mut p = Progress::new(steps.len());
    drive(&mut p, &steps, &|_| Known::Success);
    assert_eq!(p.status(&steps, None), FlowStatus::Held);
    assert_eq!(p.steps[index(&steps, "approve")], StepState::Holding);
    assert_eq!(
        skipped_why(&p, &steps, "rollback"),
        "failed(load) is false: load ended success; failed(verify) is false: verify ended success"
    );
    p.resume().unwrap();
    drive(&mut p, &steps, &|_| Known::Success);
    assert_eq!(
        p.steps[index(&steps, "publish")],
        StepState::Ended(Known::Success)
    );
    assert_eq!(p.status(&steps, None), FlowStatus::Success);
    assert!(p.resume().is_err());
}

#[test]
fn a_critical_failure_holds_and_resume_takes_the_failure_route() {
    let steps = legacy_sync();
    let mut p = Progress::new(steps.len());
    let load_fails = |name: &str| match name {
        "load" => Known::Failed,
        _ => Known::Success,
    };
    drive(&mut p, &steps, &load_fails);
    assert_eq!(p.status(&steps, None), FlowStatus::Held);
    assert_eq!(p.stopped_at, [index(&steps, "load")]);
    // Nothing was decided while held.
    assert_eq!(
        p.steps[index(&steps, "rollback")],
        StepState::Waiting,
        "{p:?}"
    );
    p.resume().unwrap();
    drive(&mut p, &steps, &load_fails);
    assert_eq!(
        p.steps[index(&steps, "rollback")],
        StepState::Ended(Known::Success)
    );
    assert_eq!(
        skipped_why(&p, &steps, "reconcile"),
        "success(load) is false: load ended failed"
    );
    assert_eq!(
        skipped_why(&p, &steps, "approve"),
        "done(reconcile) is false: reconcile was skipped"
    );
    assert_eq!(
        skipped_why(&p, &steps, "publish"),
        "ok(approve) is false: approve was skipped"
    );
    assert_eq!(p.status(&steps, None), FlowStatus::Warning);
    // The same failure with no route that handles it fails the flow.
    let mut unhandled = Progress::new(steps.len());
    drive(&mut unhandled, &steps, &|name| match name {
        "load" | "rollback" => Known::Failed,
        _ => Known::Success,
    });
    unhandled.resume().unwrap();
    drive(&mut unhandled, &steps, &|name| match name {
        "rollback" => Known::Failed,
        _ => Known::Success,
    });
    assert_eq!(unhandled.status(&steps, None), FlowStatus::Failed);
}

#[test]
fn retry_after_a_critical_failure_takes_the_success_path() {
    let steps = legacy_sync();
    let mut p = Progress::new(steps.len());
    drive(&mut p, &steps, &|name| match name {
        "load" => Known::Failed,
        _ => Known::Success,
    });
    let load = index(&steps, "load");
    let export = index(&steps, "export");
    assert!(
        p.retry(&steps, export)
            .unwrap_err()
            .0
            .contains("ended success")
    );
    p.retry(&steps, load).unwrap();
    assert_eq!(p.steps[load], StepState::Waiting);
    assert!(!p.held());
    assert_eq!(p.advance(&steps, usize::MAX), [Move::Start(load)]);
    p.ended(&steps, load, Known::Success);
    drive(&mut p, &steps, &|_| Known::Success);
    p.resume().unwrap();
    drive(&mut p, &steps, &|_| Known::Success);
    assert_eq!(p.status(&steps, None), FlowStatus::Success);
    assert!(matches!(
        p.steps[index(&steps, "rollback")],
        StepState::Skipped(_)
    ));
}

#[test]
fn abort_skips_what_has_not_started_and_refuses_what_follows() {
    let steps = legacy_sync();
    let mut p = Progress::new(steps.len());
    drive(&mut p, &steps, &|name| match name {
        "load" => Known::Failed,
        _ => Known::Success,
    });
    p.abort("aborted by alice").unwrap();
    assert_eq!(p.status(&steps, None), FlowStatus::Aborted);
    assert!(p.advance(&steps, usize::MAX).is_empty());
    assert_eq!(skipped_why(&p, &steps, "rollback"), "aborted by alice");
    assert!(p.resume().is_err());
    assert!(p.abort("again").unwrap_err().0.contains("has ended"));
}

#[test]
fn retry_and_skip_are_refused_once_a_route_went_by_the_step() {
    // Not critical: the failure routes go on at once.
    let steps = vec![
        step("load", None, &[]),
        step("rollback", Some("failed(load)"), &[]),
        step("report", Some("done(load)"), &[]),
    ];
    let mut p = Progress::new(steps.len());
    p.advance(&steps, usize::MAX);
    p.ended(&steps, 0, Known::Failed);
    p.advance(&steps, usize::MAX);
    let refused = p.retry(&steps, 0).unwrap_err().0;
    assert!(
        refused.contains("`rollback` is running already"),
        "{refused}"
    );
    assert!(p.skip(&steps, 1).unwrap_err().0.contains("is running"));
}

#[test]
fn a_hold_reached_does_not_depend_on_where_the_file_lists_it() {
    let mut gate = step("gate", None, &[]);
    gate.action = Action::Hold("look".into());
    for steps in [
        vec![gate.clone(), step("side", None, &[])],
        vec![step("side", None, &[]), gate.clone()],
    ] {
        let mut p = Progress::new(steps.len());
        let moves = p.advance(&steps, usize::MAX);
        assert_eq!(moves.len(), 2, "both decided in one pass: {moves:?}");
        assert!(p.held());
    }
}

#[test]
fn only_a_route_that_needs_the_failure_handles_it() {
    let steps = vec![
        step("load", None, &[]),
        step("after", Some("not failed(load) or done(load)"), &[]),
    ];
    let mut p = Progress::new(steps.len());
    p.advance(&steps, usize::MAX);
    p.ended(&steps, 0, Known::Failed);
    p.advance(&steps, usize::MAX);
    p.ended(&steps, 1, Known::Success);
    assert_eq!(p.status(&steps, None), FlowStatus::Failed);
}

#[test]
fn max_parallel_bounds_the_starts() {
    let steps: Vec<Step> = (0..5).map(|i| step(&format!("s{i}"), None, &[])).collect();
    let mut p = Progress::new(steps.len());
    assert_eq!(p.advance(&steps, 2).len(), 2);
    assert_eq!(p.advance(&steps, 0).len(), 0);
    p.ended(&steps, 0, Known::Success);
    assert_eq!(p.advance(&steps, 1), [Move::Start(2)]);
}

/// A random flow: step `i` names only steps before it (no cycles), but the
/// steps are listed in a shuffled order.
fn flows() -> impl Strategy<Value = Vec<Step>> {
    (1usize..10)
        .prop_flat_map(|n| {
            let conds = proptest::collection::vec(any::<Option<(u8, u8, u8, u8, u8)>>(), n);
            let holds = proptest::collection::vec((any::<bool>(), 0u8..4), n);
            (Just(n), conds, holds, any::<u64>())
        })
        .prop_map(|(n, conds, holds, seed)| {
            let tests = [
                Test::Success,
                Test::Warning,
                Test::Failed,
                Test::Ok,
                Test::Done,
                Test::Skipped,
            ];
            let mut steps: Vec<Step> = (0..n)
                .map(|i| {
                    let after = conds[i].filter(|_| i > 0).map(|(t1, s1, t2, s2, join)| {
                        let a = Cond::Is(tests[t1 as usize % 6], format!("s{}", s1 as usize % i));
                        let b = Cond::Is(tests[t2 as usize % 6], format!("s{}", s2 as usize % i));
                        match join % 4 {
                            0 => a,
                            1 => Cond::All(vec![a, b]),
                            2 => Cond::Any(vec![a, b]),
                            _ => Cond::Not(Box::new(a)),
                        }
                    });
                    let (is_hold, stop) = holds[i];
                    Step {
                        name: format!("s{i}"),
                        action: if is_hold && i % 3 == 2 {
                            Action::Hold("look".into())
                        } else {
                            Action::Job("j".into())
                        },
                        after,
                        hold_on: match stop {
                            0 => vec![Known::Failed],
                            1 => vec![Known::Failed, Known::Warning],
                            _ => Vec::new(),
                        },
                    }
                })
                .collect();
            // A stable shuffle from the seed.
            let mut x = seed | 1;
            for i in (1..steps.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                steps.swap(i, (x % (i as u64 + 1)) as usize);
            }
            steps
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn every_flow_run_ends_no_step_runs_twice_and_none_starts_early(
        steps in flows(),
        choices in proptest::collection::vec(any::<u16>(), 200),
    ) {
        let mut p = Progress::new(steps.len());
        let mut starts = vec![0usize; steps.len()];
        let mut retries = vec![0usize; steps.len()];
        let mut choice = choices.iter().copied().cycle();
        let mut rounds = 0;
        while !p.is_over() {
            rounds += 1;
            prop_assert!(rounds < 500, "no end: {p:?}");
            let free = 1 + choice.next().unwrap() as usize % 3;
            let moves = p.advance(&steps, free);
            prop_assert!(moves.iter().filter(|m| matches!(m, Move::Start(_))).count() <= free);
            for m in &moves {
                match m {
                    Move::Start(i) => {
                        starts[*i] += 1;
                        let known = p.known(&steps);
                        let cond = steps[*i].after.as_ref().map(|c| c.eval(&known));
                        prop_assert!(matches!(cond, None | Some(Some(true))), "{} started on {cond:?}", steps[*i].name);
                    }
                    Move::Skip(i, _) => {
                        let known = p.known(&steps);
                        let cond = steps[*i].after.as_ref().and_then(|c| c.eval(&known));
                        prop_assert_eq!(cond, Some(false), "{} skipped", &steps[*i].name);
                    }
                    Move::Hold(_) => prop_assert!(p.held()),
                }
            }
            let running: Vec<usize> = (0..steps.len()).filter(|&i| p.steps[i] == StepState::Running).collect();
            let c = choice.next().unwrap() as usize;
            if !running.is_empty() && (!c.is_multiple_of(4) || !p.held()) {
                let i = running[c % running.len()];
                let end = [Known::Success, Known::Warning, Known::Failed][c / 4 % 3];
                p.ended(&steps, i, end);
            } else if p.held() {
                // An operator: mostly resume, sometimes retry, skip or abort.
                let target = c / 8 % steps.len();
                let done = match c % 8 {
                    0 => p.abort("aborted").is_ok(),
                    1 => {
                        let ok = p.retry(&steps, target).is_ok();
                        if ok {
                            retries[target] += 1;
                        }
                        ok
                    }
                    2 => p.skip(&steps, target).is_ok(),
                    _ => false,
                };
                if !done {
                    p.resume().unwrap();
                }
            } else {
                prop_assert!(p.is_over(), "stuck: nothing runs or holds, yet {p:?}");
            }
        }
        for (i, n) in starts.iter().enumerate() {
            prop_assert!(*n <= 1 + retries[i], "{} started {n} times", steps[i].name);
        }
        prop_assert!(p.running() == 0);
        let status = p.status(&steps, None);
        prop_assert!(!matches!(status, FlowStatus::Running | FlowStatus::Held));
    }
}
