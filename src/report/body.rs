//! Report bodies: what an application answers, or a job writes to
//! `$OVERNIGHT_REPORT`, as JSON or XML (docs/report-format.md).
//!
//! A body becomes the same run events a command's protocol lines do, so the
//! report, the routing and the capture file never know where a warning came
//! from. Each format accepts the variants handlers naturally write (`json`,
//! `xml`); a body that does not parse is an error with its line and column.

mod json;
mod xml;

use chrono::{DateTime, Utc};

pub use json::parse_json;
pub use xml::parse_xml;

use crate::event::{Line, RunEvent, Stream};

/// Why a body could not be read as a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {format} report does not parse at line {line}, column {column}: {message}")]
pub struct BodyError {
    /// `JSON` or `XML`.
    pub format: &'static str,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

fn log_line(text: String, stream: Stream, at: DateTime<Utc>) -> RunEvent {
    RunEvent::Line(Line {
        at,
        stream,
        text,
        cut: 0,
        protocol: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{
  "status": "warning",
  "summary": "imported 1204 rows",
  "warnings": ["2 rows skipped", {"message": "slow disk", "code": "W7", "fields": {"disk": "sdb"}}],
  "details": {"rows": 1204},
  "log": ["started", {"message": "oops", "stream": "stderr"}],
  "progress": {"percent": 100, "message": "done"}
}"#;

    const XML: &str = r#"<?xml version="1.0"?>
<!DOCTYPE report SYSTEM "report.dtd">
<report status="warning">
  <summary>imported 1204 rows</summary>
  <warning>2 rows skipped</warning>
  <warning code="W7">slow disk<field name="disk">sdb</field></warning>
  <detail name="rows">1204</detail>
  <log>started</log>
  <log stream="stderr">oops</log>
  <progress percent="100">done</progress>
</report>"#;

    /// One line per event, for comparing what bodies say.
    pub(super) fn describe(events: &[RunEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                RunEvent::Status(s) => format!("status {s}"),
                RunEvent::Summary(s) => format!("summary {s}"),
                RunEvent::Entry(k, e) => format!("{k:?} {} {:?} {:?}", e.message, e.code, e.fields),
                RunEvent::Line(l) => format!("line {:?} {}", l.stream, l.text),
                RunEvent::Detail(k, v) => format!(
                    "detail {k}={}",
                    v.as_str().map_or(v.to_string(), String::from)
                ),
                RunEvent::Progress(p) => format!("progress {:?} {}", p.percent, p.message),
            })
            .collect()
    }

    #[test]
    fn json_and_xml_say_the_same() {
        let now = Utc::now();
        let mut json = describe(&parse_json(JSON, now).unwrap());
        let mut xml = describe(&parse_xml(XML, now).unwrap());
        json.sort();
        xml.sort();
        assert_eq!(json, xml);
        assert!(
            json.contains(&"Warning slow disk Some(\"W7\") {\"disk\": \"sdb\"}".to_string()),
            "{json:?}"
        );
    }

    #[test]
    fn errors_have_line_and_column() {
        let e = parse_json(
            "{\n  \"status\": \"warning\",\n  \"warnings\": [oops]\n}",
            Utc::now(),
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (3, 16));
        assert!(
            e.to_string()
                .starts_with("the JSON report does not parse at line 3, column 16: expected value"),
            "{e}"
        );
        let e = parse_xml("<report>\n  <warning>a</warnin>\n</report>", Utc::now()).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse_json("{\"status\": \"sideways\"}", Utc::now()).unwrap_err();
        assert!(e.message.contains("unknown status `sideways`"));
        let e = parse_json("{\"stauts\": \"ok\"}", Utc::now()).unwrap_err();
        assert!(e.message.contains("unknown field `stauts`"), "{e}");
    }

    #[test]
    fn entities_and_cdata() {
        let events = parse_xml(
            "<report><error>a &amp; b &#65; <![CDATA[<raw>]]></error></report>",
            Utc::now(),
        )
        .unwrap();
        let RunEvent::Entry(_, e) = &events[0] else {
            panic!()
        };
        assert_eq!(e.message, "a & b A <raw>");
    }
}
