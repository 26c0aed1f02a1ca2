//! XML report bodies (`docs/report.dtd`), read in three steps: the text
//! becomes a tree of elements as written; one normalising pass brings every
//! variant a handler may write to a single form; that form becomes events.
//!
//! The variants follow from two rules. A property of an element (the
//! report's `status`, an entry's `message`, `code` and `time`, …) may be an
//! attribute or a child element of that name, and an element's text is its
//! `message` (its `value` for `<detail>` and `<field>`). And `<errors>`,
//! `<warnings>`, `<notices>` and `<details>` may wrap their entries. Any
//! other element is refused with its line and column; attributes that are
//! no property are ignored, as they always were.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use quick_xml::events::{BytesStart, Event};

use super::{BodyError, log_line};
use crate::event::{Entry, EntryKind, Progress, RunEvent, Stream};
use crate::report::Status;

/// Reads an XML report body (the DTD is `docs/report.dtd`).
pub fn parse_xml(text: &str, at: DateTime<Utc>) -> Result<Vec<RunEvent>, BodyError> {
    read_tree(text)
        .and_then(|root| {
            if root.name != "report" {
                return Err(Fault::new(root.offset, "the root element must be <report>"));
            }
            normalise(root, &Shape::of("report"))
        })
        .and_then(|report| events(report, at))
        .map_err(|fault| {
            let (line, column) = line_column(text, fault.offset as usize);
            BodyError {
                format: "XML",
                line,
                column,
                message: fault.message,
            }
        })
}

/// What is wrong, and where: a byte offset in the body.
#[derive(Debug)]
struct Fault {
    offset: u64,
    message: String,
}

impl Fault {
    fn new(offset: u64, message: impl Into<String>) -> Fault {
        Fault {
            offset,
            message: message.into(),
        }
    }
}

/// An element as written; once normalised, every property is in `props`,
/// `text` is empty and `children` holds only elements of the report.
#[derive(Debug)]
struct Node {
    name: String,
    /// Its attributes as read; once normalised, its properties.
    props: BTreeMap<String, String>,
    /// Its own text, the pieces joined.
    text: String,
    children: Vec<Node>,
    /// Where its `<` is.
    offset: u64,
}

impl Node {
    fn take(&mut self, prop: &str) -> Option<String> {
        self.props.remove(prop)
    }
}

/// What an element may hold.
struct Shape {
    /// Its properties, each an attribute or a child element of that name.
    props: &'static [&'static str],
    /// The property its text stands for, if it takes text.
    text: Option<&'static str>,
    /// The elements it may hold besides its properties.
    children: &'static [&'static str],
    /// It only wraps entries, which take its place (`<errors>`).
    wraps: bool,
}

impl Shape {
    /// The shape of an element its parent may hold.
    fn of(name: &str) -> Shape {
        match name {
            "report" => Shape {
                props: &["status"],
                text: None,
                children: &[
                    "summary", "error", "warning", "notice", "log", "detail", "progress", "errors",
                    "warnings", "notices", "details",
                ],
                wraps: false,
            },
            "errors" => Shape::wrapper(&["error"]),
            "warnings" => Shape::wrapper(&["warning"]),
            "notices" => Shape::wrapper(&["notice"]),
            "details" => Shape::wrapper(&["detail"]),
            "error" | "warning" | "notice" => {
                Shape::with_text(&["message", "code", "time"], "message", &["field"])
            }
            "detail" | "field" => Shape::with_text(&["name", "value"], "value", &[]),
            "log" => Shape::with_text(&["message", "stream"], "message", &[]),
            "progress" => Shape::with_text(&["message", "percent"], "message", &[]),
            // `summary`: the parents' lists name no other element.
            _ => Shape::with_text(&["message"], "message", &[]),
        }
    }

    /// An element that takes text.
    const fn with_text(
        props: &'static [&'static str],
        text: &'static str,
        children: &'static [&'static str],
    ) -> Shape {
        Shape {
            props,
            text: Some(text),
            children,
            wraps: false,
        }
    }

    /// `<errors>` and its like.
    const fn wrapper(entries: &'static [&'static str]) -> Shape {
        Shape {
            props: &[],
            text: None,
            children: entries,
            wraps: true,
        }
    }
}

/// Reads the body into the tree of its root element.
fn read_tree(text: &str) -> Result<Node, Fault> {
    let mut reader = quick_xml::Reader::from_str(text);
    // The elements open around the reader, innermost last.
    let mut open: Vec<Node> = Vec::new();
    loop {
        // Text is an event of its own, so an element starts right here.
        let offset = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| Fault::new(reader.error_position(), e.to_string()))?;
        let closed = match event {
            Event::Start(e) => {
                open.push(element(&e, offset)?);
                continue;
            }
            Event::Empty(e) => element(&e, offset)?,
            // quick-xml checks that end tags match, so one is open.
            Event::End(_) => match open.pop() {
                Some(node) => node,
                None => continue,
            },
            Event::Text(t) => {
                add_text(&mut open, &t.xml10_content());
                continue;
            }
            Event::CData(t) => {
                add_text(&mut open, &t.xml10_content());
                continue;
            }
            Event::GeneralRef(r) => {
                let resolved = quick_xml::escape::unescape(&format!("&{};", r.xml10_content()))
                    .map_err(|e| Fault::new(offset, e.to_string()))?
                    .into_owned();
                add_text(&mut open, &resolved);
                continue;
            }
            Event::Eof => {
                return Err(match open.pop() {
                    Some(node) => Fault::new(node.offset, format!("<{}> is not closed", node.name)),
                    None => Fault::new(offset, "no <report> element"),
                });
            }
            _ => continue,
        };
        match open.last_mut() {
            Some(parent) => parent.children.push(closed),
            None => return Ok(closed),
        }
    }
}

fn element(e: &BytesStart<'_>, offset: u64) -> Result<Node, Fault> {
    Ok(Node {
        name: e.name().as_ref().to_string(),
        props: attributes(e).map_err(|m| Fault::new(offset, m))?,
        text: String::new(),
        children: Vec::new(),
        offset,
    })
}

/// Adds text to the innermost open element; text outside the root is
/// ignored.
fn add_text(open: &mut [Node], text: &str) {
    if let Some(node) = open.last_mut() {
        node.text.push_str(text);
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

/// Brings an element written in any variant to its one form: its
/// properties gathered from attributes, child elements and text, and its
/// other elements with their wrappers opened.
fn normalise(node: Node, shape: &Shape) -> Result<Node, Fault> {
    let Node {
        name,
        props: attributes,
        text,
        children,
        offset,
    } = node;
    let mut props: BTreeMap<String, String> = attributes
        .into_iter()
        .filter(|(key, _)| shape.props.contains(&key.as_str()))
        .collect();
    let mut set = |prop: &str, value: &str, offset: u64| {
        if props.insert(prop.to_string(), value.to_string()).is_some() {
            return Err(Fault::new(
                offset,
                format!("<{name}> gives its `{prop}` twice (as attribute, element or text)"),
            ));
        }
        Ok(())
    };
    if let Some(prop) = shape.text.filter(|_| !text.trim().is_empty()) {
        set(prop, text.trim(), offset)?;
    }
    let mut elements = Vec::new();
    for child in children {
        if shape.props.contains(&child.name.as_str()) {
            // A property's element holds its value as text, nothing else.
            if let Some(inner) = child.children.first() {
                return Err(unknown(inner, &child.name));
            }
            set(&child.name, child.text.trim(), child.offset)?;
        } else if shape.children.contains(&child.name.as_str()) {
            let child_shape = Shape::of(&child.name);
            let child = normalise(child, &child_shape)?;
            if child_shape.wraps {
                elements.extend(child.children);
            } else {
                elements.push(child);
            }
        } else {
            return Err(unknown(&child, &name));
        }
    }
    Ok(Node {
        name,
        props,
        text: String::new(),
        children: elements,
        offset,
    })
}

fn unknown(node: &Node, parent: &str) -> Fault {
    Fault::new(
        node.offset,
        format!("unknown element <{}> in <{parent}>", node.name),
    )
}

/// The events a normalised `<report>` stands for, in its order.
fn events(mut report: Node, at: DateTime<Utc>) -> Result<Vec<RunEvent>, Fault> {
    let mut out = Vec::new();
    if let Some(status) = report.take("status") {
        let status = status
            .parse::<Status>()
            .map_err(|m| Fault::new(report.offset, m))?;
        out.push(RunEvent::Status(status));
    }
    for element in report.children {
        out.push(event(element, at)?);
    }
    Ok(out)
}

fn event(mut element: Node, at: DateTime<Utc>) -> Result<RunEvent, Fault> {
    let name = std::mem::take(&mut element.name);
    let message = element.take("message").unwrap_or_default();
    Ok(match name.as_str() {
        "summary" => RunEvent::Summary(message),
        "error" => RunEvent::Entry(EntryKind::Error, entry(element, message, at)?),
        "warning" => RunEvent::Entry(EntryKind::Warning, entry(element, message, at)?),
        "notice" => RunEvent::Entry(EntryKind::Notice, entry(element, message, at)?),
        "detail" => RunEvent::Detail(
            element.take("name").unwrap_or_default(),
            serde_json::Value::String(element.take("value").unwrap_or_default()),
        ),
        "progress" => RunEvent::Progress(Progress {
            at,
            percent: element.take("percent").and_then(|p| p.trim().parse().ok()),
            message,
        }),
        _ => {
            let stream = match element.take("stream").as_deref().map(str::trim) {
                Some("stderr") => Stream::Stderr,
                _ => Stream::Stdout,
            };
            log_line(message, stream, at)
        }
    })
}

fn entry(mut element: Node, message: String, at: DateTime<Utc>) -> Result<Entry, Fault> {
    let code = element.take("code");
    let at = element
        .take("time")
        .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
        .map_or(at, |t| t.with_timezone(&Utc));
    let mut fields = BTreeMap::new();
    for mut field in element.children {
        let name = field
            .take("name")
            .ok_or_else(|| Fault::new(field.offset, "<field> needs a name"))?;
        fields.insert(name, field.take("value").unwrap_or_default());
    }
    Ok(Entry {
        message,
        code,
        at,
        fields,
    })
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
    use crate::report::body::tests::describe;

    fn xml(text: &str) -> Vec<String> {
        describe(&parse_xml(text, Utc::now()).unwrap_or_else(|e| panic!("{e}")))
    }

    /// The refusal of `text`: line, column, and what is wrong.
    fn refusal(text: &str) -> (usize, usize, String) {
        let e = parse_xml(text, Utc::now()).expect_err(text);
        (e.line, e.column, e.message)
    }

    /// What every spelling of one failed run with error E1 says.
    const FAILED_E1: [&str; 2] = ["status failed", "Error disk full Some(\"E1\") {}"];

    #[test]
    fn the_status_may_be_an_element() {
        assert_eq!(
            xml(
                "<report>\n  <status>failed</status>\n  <error code=\"E1\">disk full</error>\n</report>"
            ),
            FAILED_E1
        );
    }

    #[test]
    fn entries_may_be_wrapped_in_plural_containers() {
        assert_eq!(
            xml(r#"<report>
  <errors><error code="E1">disk full</error></errors>
  <warnings>
    <warning>slow</warning>
    <warning code="W2">slower</warning>
  </warnings>
  <notices><notice>fyi</notice></notices>
  <details><detail name="rows">12</detail></details>
</report>"#),
            [
                "Error disk full Some(\"E1\") {}",
                "Warning slow None {}",
                "Warning slower Some(\"W2\") {}",
                "Notice fyi None {}",
                "detail rows=12",
            ]
        );
    }

    #[test]
    fn message_and_code_may_be_attributes() {
        assert_eq!(
            xml(r#"<report status="failed"><error message="disk full" code="E1"/></report>"#),
            FAILED_E1
        );
        assert_eq!(
            xml(
                r#"<report status="failed"><error message="disk full" code="E1"></error></report>"#
            ),
            FAILED_E1
        );
    }

    #[test]
    fn message_and_code_may_be_child_elements() {
        assert_eq!(
            xml(r#"<report status="failed">
  <error>
    <message>disk full</message>
    <code>E1</code>
  </error>
</report>"#),
            FAILED_E1
        );
        assert_eq!(
            xml(r#"<report status="failed"><error>disk full<code>E1</code></error></report>"#),
            FAILED_E1
        );
    }

    #[test]
    fn every_property_may_be_an_attribute_or_an_element() {
        let elements = xml(r#"<report>
  <status>warning</status>
  <summary>imported</summary>
  <warning>
    <message>slow disk</message><code>W7</code>
    <field><name>disk</name><value>sdb</value></field>
  </warning>
  <details><detail><name>rows</name><value>1204</value></detail></details>
  <log message="oops"><stream>stderr</stream></log>
  <progress message="done"><percent>100</percent></progress>
</report>"#);
        let attributes = xml(r#"<report status="warning">
  <summary>imported</summary>
  <warning code="W7">slow disk<field name="disk">sdb</field></warning>
  <detail name="rows">1204</detail>
  <log stream="stderr">oops</log>
  <progress percent="100">done</progress>
</report>"#);
        assert_eq!(elements, attributes);
    }

    #[test]
    fn a_property_given_twice_is_refused_with_its_position() {
        let (line, column, message) =
            refusal("<report>\n  <error message=\"a\">b</error>\n</report>");
        assert_eq!((line, column), (2, 3), "{message}");
        assert!(
            message.contains("<error> gives its `message` twice"),
            "{message}"
        );
        let (line, column, message) =
            refusal("<report status=\"ok\">\n  <status>failed</status>\n</report>");
        assert_eq!((line, column), (2, 3), "{message}");
        assert!(
            message.contains("<report> gives its `status` twice"),
            "{message}"
        );
    }

    #[test]
    fn unknown_elements_are_refused_with_their_position() {
        for (body, at, message) in [
            (
                "<report>\n  <errors>\n    <warning>x</warning>\n  </errors>\n</report>",
                (3, 5),
                "unknown element <warning> in <errors>",
            ),
            (
                "<report>\n  <bogus/>\n</report>",
                (2, 3),
                "unknown element <bogus> in <report>",
            ),
            (
                "<report>\n  <error><msg>x</msg></error>\n</report>",
                (2, 10),
                "unknown element <msg> in <error>",
            ),
            (
                "<report>\n  <error><code><b>E1</b></code></error>\n</report>",
                (2, 16),
                "unknown element <b> in <code>",
            ),
        ] {
            let (line, column, said) = refusal(body);
            assert_eq!(((line, column), said.as_str()), (at, message), "{body}");
        }
    }

    #[test]
    fn a_truncated_body_is_refused_at_the_open_element() {
        let (line, column, message) = refusal("<report>\n  <error>disk full\n");
        assert_eq!((line, column), (2, 3), "{message}");
        assert_eq!(message, "<error> is not closed");
    }
}
