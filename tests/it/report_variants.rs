//! Report bodies as handlers really write them, read through a real run.

use crate::helper::{Sandbox, text};

/// The status as a `<status>` element and the errors wrapped in
/// `<errors>`: the declared status decides (the error alone would make the
/// run failed), and the error keeps its code.
#[test]
fn a_hand_written_xml_report_with_a_status_element_and_wrapped_errors() {
    let sb = Sandbox::new();
    sb.write(
        "overnight.yaml",
        r#"jobs:
  handwritten:
    command: |
      cat > "$OVERNIGHT_REPORT" <<'EOF'
      <?xml version="1.0"?>
      <report>
        <status>warning</status>
        <errors>
          <error code="E1">disk full on /var</error>
        </errors>
      </report>
      EOF
"#,
    );
    let out = sb.run(&["run", "handwritten"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out).1);
    let report = sb.run(&["report", "1", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["status"], "warning", "{report:#}");
    assert_eq!(report["declared_status"], "warning", "{report:#}");
    assert_eq!(
        report["errors"][0]["message"], "disk full on /var",
        "{report:#}"
    );
    assert_eq!(report["errors"][0]["code"], "E1", "{report:#}");
}
