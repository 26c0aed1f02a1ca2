//! Flows (DESIGN §8): checked at `check`, run by the daemon, steered by
//! an operator.

use crate::helper::{Sandbox, text};

/// The jobs of the legacy-sync flow, each a real command.
const LEGACY_JOBS: &str = "\
jobs:
  export-legacy: {command: 'echo exported; echo ::detail::rows=1204'}
  verify-counts: {command: 'echo verified'}
  load-new: {command: 'test ! -e fail-load'}
  reconcile: {command: 'echo reconciled'}
  rollback-new: {command: 'echo rolled back'}
  publish: {command: 'echo published'}
";

const LEGACY_FLOW: &str = "\
flows:
  legacy-sync:
    concurrency: skip
    steps:
      export:    { job: export-legacy }
      verify:    { job: verify-counts, after: export }
      load:      { job: load-new, after: verify, critical: true }
      reconcile: { job: reconcile, after: \"success(load)\" }
      rollback:  { job: rollback-new, after: \"failed(load) or failed(verify)\" }
      approve:   { hold: \"Compare the counts in the report, then resume\",
                   after: \"done(reconcile)\" }
      publish:   { job: publish, after: approve }
";

#[test]
fn check_draws_each_flow_as_a_tree_with_its_conditions() {
    let sb = Sandbox::new();
    sb.write("overnight.yaml", &format!("{LEGACY_JOBS}{LEGACY_FLOW}"));
    let out = sb.run(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("6 job(s), 1 flow(s)"), "{stdout}");
    let tree: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("flow legacy-sync"))
        .collect();
    assert!(tree[0].contains("on demand"), "{stdout}");
    let expect = [
        ("  export ", "job export-legacy", ""),
        ("    verify ", "job verify-counts", "after ok(export)"),
        (
            "      load ",
            "job load-new",
            "after ok(verify)  (holds the flow if failed)",
        ),
        ("        reconcile ", "job reconcile", "after success(load)"),
        (
            "          approve ",
            "hold: Compare the counts",
            "after done(reconcile)",
        ),
        ("            publish ", "job publish", "after ok(approve)"),
        (
            "        rollback ",
            "job rollback-new",
            "after failed(load) or failed(verify)",
        ),
    ];
    assert_eq!(tree.len(), expect.len() + 1, "{stdout}");
    for (line, (name, does, after)) in tree[1..].iter().zip(expect) {
        assert!(line.starts_with(name), "{line:?} is not {name:?}");
        assert!(line.contains(does) && line.ends_with(after), "{line}");
    }
}

#[test]
fn check_reports_a_cycle_an_unknown_step_and_an_impossible_condition_at_once() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "\
jobs:
  a: {command: 'true'}
flows:
  f:
    steps:
      load:   { job: a, after: verify }
      verify: { job: a, after: load }
      report: { job: a, after: \"done(lod)\" }
      undo:   { job: a, after: \"success(load) and failed(load)\" }
",
    );
    let out = sb.run(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "overnight.yaml:6:7: steps of flow `f` wait for each other: load -> verify -> load; break the cycle",
            "overnight.yaml:8:32: step `report` of flow `f` names step `lod`, which is not in the flow; did you mean `load`?",
            "overnight.yaml:9:32: step `undo` of flow `f` can never start: `success(load) and failed(load)` is false however its steps end",
        ],
        "{stderr}"
    );
}

#[test]
fn check_finds_steps_no_path_reaches() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        "\
jobs:
  a: {command: 'true'}
flows:
  f:
    steps:
      first: { job: a }
      never: { job: a, after: \"skipped(first)\" }
      gate:  { hold: \"look\", after: first }
      odd:   { job: a, after: \"failed(gate)\" }
",
    );
    let out = sb.run(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("overnight.yaml:7:31: step `never` of flow `f` can never start: no path makes `skipped(first)` true (`first` can only end success, warning or failed)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("step `odd` of flow `f` can never start: no path makes `failed(gate)` true (`gate` can only end success or skipped)"),
        "{stderr}"
    );
}
