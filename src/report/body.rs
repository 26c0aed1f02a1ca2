//! Report bodies: what an application answers, or a job writes to
//! `$OVERNIGHT_REPORT`, as JSON or XML (docs/report-format.md).
//!
//! A body becomes the same run events a command's protocol lines do, so the
//! report, the routing and the capture file never know where a warning came
//! from. A body that does not parse is an error with its line and column.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use quick_xml::events::{BytesStart, Event};
use serde::Deserialize;

use super::Status;
use crate::event::{Entry, EntryKind, Line, Progress, RunEvent, Stream};

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBody {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    errors: Vec<JsonEntry>,
    #[serde(default)]
    warnings: Vec<JsonEntry>,
    #[serde(default)]
    notices: Vec<JsonEntry>,
    #[serde(default)]
    log: Vec<JsonLine>,
    #[serde(default)]
    details: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    progress: Option<JsonProgress>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonEntry {
    Text(String),
    Full {
        message: String,
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        time: Option<DateTime<Utc>>,
        #[serde(default)]
        fields: BTreeMap<String, serde_json::Value>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonLine {
    Text(String),
    Full {
        message: String,
        #[serde(default)]
        stream: Option<Stream>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonProgress {
    Percent(f64),
    Full {
        #[serde(default)]
        percent: Option<f64>,
        #[serde(default)]
        message: String,
    },
}

/// Reads a JSON report body.
pub fn parse_json(text: &str, at: DateTime<Utc>) -> Result<Vec<RunEvent>, BodyError> {
    let body: JsonBody = serde_json::from_str(text).map_err(|e| BodyError {
        format: "JSON",
        line: e.line(),
        column: e.column(),
        message: e
            .to_string()
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_string(),
    })?;
    let status_error = |message: String| BodyError {
        format: "JSON",
        line: 1,
        column: 1,
        message,
    };
    let mut out = Vec::new();
    if let Some(status) = body.status {
        out.push(RunEvent::Status(
            status.parse::<Status>().map_err(status_error)?,
        ));
    }
    if let Some(summary) = body.summary {
        out.push(RunEvent::Summary(summary));
    }
    for (kind, entries) in [
        (EntryKind::Error, body.errors),
        (EntryKind::Warning, body.warnings),
        (EntryKind::Notice, body.notices),
    ] {
        for entry in entries {
            out.push(RunEvent::Entry(kind, json_entry(entry, at)));
        }
    }
    for line in body.log {
        let (text, stream) = match line {
            JsonLine::Text(text) => (text, Stream::Stdout),
            JsonLine::Full { message, stream } => (message, stream.unwrap_or(Stream::Stdout)),
        };
        out.push(log_line(text, stream, at));
    }
    for (key, value) in body.details {
        out.push(RunEvent::Detail(key, value));
    }
    if let Some(progress) = body.progress {
        let (percent, message) = match progress {
            JsonProgress::Percent(p) => (Some(p), String::new()),
            JsonProgress::Full { percent, message } => (percent, message),
        };
        out.push(RunEvent::Progress(Progress {
            at,
            percent,
            message,
        }));
    }
    Ok(out)
}

fn json_entry(entry: JsonEntry, at: DateTime<Utc>) -> Entry {
    match entry {
        JsonEntry::Text(message) => Entry {
            message,
            code: None,
            at,
            fields: BTreeMap::new(),
        },
        JsonEntry::Full {
            message,
            code,
            time,
            fields,
        } => Entry {
            message,
            code,
            at: time.unwrap_or(at),
            fields: fields
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect(),
        },
    }
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

/// Reads an XML report body (the DTD is `docs/report.dtd`).
pub fn parse_xml(text: &str, at: DateTime<Utc>) -> Result<Vec<RunEvent>, BodyError> {
    let mut reader = quick_xml::Reader::from_str(text);
    let fail = |offset: u64, message: String| {
        let (line, column) = line_column(text, offset as usize);
        BodyError {
            format: "XML",
            line,
            column,
            message,
        }
    };
    let mut out = Vec::new();
    // The element being read, its attributes, and its text so far.
    let mut open: Option<(String, BTreeMap<String, String>, String)> = None;
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut field: Option<(String, String)> = None;
    let mut seen_root = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| fail(reader.error_position(), e.to_string()))?;
        let position = reader.buffer_position();
        match event {
            Event::Start(e) | Event::Empty(e) if !seen_root => {
                if e.name().as_ref() != "report" {
                    return Err(fail(position, "the root element must be <report>".into()));
                }
                seen_root = true;
                let attrs = attributes(&e).map_err(|m| fail(position, m))?;
                if let Some(status) = attrs.get("status") {
                    out.push(RunEvent::Status(
                        status.parse().map_err(|m| fail(position, m))?,
                    ));
                }
            }
            Event::Start(e) if e.name().as_ref() == "field" && open.is_some() => {
                let attrs = attributes(&e).map_err(|m| fail(position, m))?;
                let name = attrs
                    .get("name")
                    .cloned()
                    .ok_or_else(|| fail(position, "<field> needs a name".into()))?;
                field = Some((name, String::new()));
            }
            Event::Start(e) => {
                let name = e.name().as_ref().to_string();
                if ![
                    "summary", "error", "warning", "notice", "log", "detail", "progress",
                ]
                .contains(&name.as_str())
                {
                    return Err(fail(position, format!("unknown element <{name}>")));
                }
                open = Some((
                    name,
                    attributes(&e).map_err(|m| fail(position, m))?,
                    String::new(),
                ));
            }
            Event::Text(t) => push_text(&mut open, &mut field, &t.xml10_content()),
            Event::CData(t) => push_text(&mut open, &mut field, &t.xml10_content()),
            Event::GeneralRef(r) => {
                let name = r.xml10_content();
                let resolved = quick_xml::escape::unescape(&format!("&{name};"))
                    .map_err(|e| fail(position, e.to_string()))?
                    .into_owned();
                push_text(&mut open, &mut field, &resolved);
            }
            Event::End(e) if e.name().as_ref() == "field" => {
                if let Some((name, value)) = field.take() {
                    fields.insert(name, value);
                }
            }
            Event::End(e) if e.name().as_ref() == "report" => break,
            Event::End(_) => {
                if let Some((name, attrs, text)) = open.take() {
                    out.push(xml_event(
                        &name,
                        attrs,
                        text.trim().to_string(),
                        std::mem::take(&mut fields),
                        at,
                    ));
                }
            }
            Event::Eof => {
                if !seen_root {
                    return Err(fail(position, "no <report> element".into()));
                }
                break;
            }
            _ => {}
        }
    }
    Ok(out)
}

fn push_text(
    open: &mut Option<(String, BTreeMap<String, String>, String)>,
    field: &mut Option<(String, String)>,
    text: &str,
) {
    if let Some((_, value)) = field {
        value.push_str(text);
    } else if let Some((_, _, body)) = open {
        body.push_str(text);
    }
}

fn attributes(e: &BytesStart<'_>) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| e.to_string())?;
        out.insert(attr.key.as_ref().to_string(), value.into_owned());
    }
    Ok(out)
}

fn xml_event(
    name: &str,
    mut attrs: BTreeMap<String, String>,
    text: String,
    fields: BTreeMap<String, String>,
    at: DateTime<Utc>,
) -> RunEvent {
    let entry = |attrs: &mut BTreeMap<String, String>| Entry {
        message: text.clone(),
        code: attrs.remove("code"),
        at: attrs
            .get("time")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or(at, |t| t.with_timezone(&Utc)),
        fields: fields.clone(),
    };
    match name {
        "summary" => RunEvent::Summary(text),
        "error" => RunEvent::Entry(EntryKind::Error, entry(&mut attrs)),
        "warning" => RunEvent::Entry(EntryKind::Warning, entry(&mut attrs)),
        "notice" => RunEvent::Entry(EntryKind::Notice, entry(&mut attrs)),
        "detail" => RunEvent::Detail(
            attrs.remove("name").unwrap_or_default(),
            serde_json::Value::String(text),
        ),
        "progress" => RunEvent::Progress(Progress {
            at,
            percent: attrs.get("percent").and_then(|p| p.parse().ok()),
            message: text,
        }),
        _ => {
            let stream = match attrs.get("stream").map(String::as_str) {
                Some("stderr") => Stream::Stderr,
                _ => Stream::Stdout,
            };
            log_line(text, stream, at)
        }
    }
}

/// The 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, column)
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

    fn describe(events: &[RunEvent]) -> Vec<String> {
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
