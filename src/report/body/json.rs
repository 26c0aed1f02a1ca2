//! JSON report bodies (`docs/report.schema.json`).
//!
//! Read leniently in two ways, both through serde so that every refusal
//! keeps serde_json's line and column: a single item stands for a list of
//! one (`"errors": "disk full"`), and an entry's or log line's `message` may
//! be spelled `msg` or `text`. Unknown top-level keys are refused.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer, StrDeserializer};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{BodyError, log_line};
use crate::event::{Entry, EntryKind, Progress, RunEvent, Stream};
use crate::report::Status;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBody {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    errors: OneOrMany<TextOr<JsonEntry>>,
    #[serde(default)]
    warnings: OneOrMany<TextOr<JsonEntry>>,
    #[serde(default)]
    notices: OneOrMany<TextOr<JsonEntry>>,
    #[serde(default)]
    log: OneOrMany<TextOr<JsonLine>>,
    #[serde(default)]
    details: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    progress: Option<JsonProgress>,
}

#[derive(Debug, Deserialize)]
struct JsonEntry {
    #[serde(alias = "msg", alias = "text")]
    message: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    time: Option<DateTime<Utc>>,
    #[serde(default)]
    fields: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct JsonLine {
    #[serde(alias = "msg", alias = "text")]
    message: String,
    #[serde(default)]
    stream: Option<Stream>,
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

/// A list, where one item may also stand alone: `"errors": "disk full"`
/// reads as `"errors": ["disk full"]`.
#[derive(Debug)]
struct OneOrMany<T>(Vec<T>);

// Not derived: the derive would ask `T: Default`.
impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = OneOrMany<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list, a string or an object")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(SeqAccessDeserializer::new(seq)).map(OneOrMany)
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                T::deserialize(StrDeserializer::<E>::new(text)).map(|item| OneOrMany(vec![item]))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|item| OneOrMany(vec![item]))
            }
        }

        deserializer.deserialize_any(ListVisitor(PhantomData))
    }
}

/// An object, or a bare string standing for its message alone.
#[derive(Debug)]
enum TextOr<T> {
    Text(String),
    Full(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for TextOr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ItemVisitor<T> {
            type Value = TextOr<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an object")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(TextOr::Text(text.to_string()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(TextOr::Full)
            }
        }

        deserializer.deserialize_any(ItemVisitor(PhantomData))
    }
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
        for entry in entries.0 {
            out.push(RunEvent::Entry(kind, json_entry(entry, at)));
        }
    }
    for line in body.log.0 {
        let (text, stream) = match line {
            TextOr::Text(text) => (text, Stream::Stdout),
            TextOr::Full(line) => (line.message, line.stream.unwrap_or(Stream::Stdout)),
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

fn json_entry(entry: TextOr<JsonEntry>, at: DateTime<Utc>) -> Entry {
    match entry {
        TextOr::Text(message) => Entry {
            message,
            code: None,
            at,
            fields: BTreeMap::new(),
        },
        TextOr::Full(JsonEntry {
            message,
            code,
            time,
            fields,
        }) => Entry {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::body::tests::describe;

    fn json(text: &str) -> Vec<String> {
        describe(&parse_json(text, Utc::now()).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn a_single_entry_stands_for_a_list_of_one() {
        assert_eq!(
            json(
                r#"{"errors": "disk full", "warnings": {"message": "slow", "code": "W1"},
                    "notices": "fyi", "log": "one line"}"#
            ),
            [
                "Error disk full None {}",
                "Warning slow Some(\"W1\") {}",
                "Notice fyi None {}",
                "line Stdout one line",
            ]
        );
    }

    #[test]
    fn a_message_may_be_spelled_msg_or_text() {
        assert_eq!(
            json(
                r#"{"errors": [{"msg": "disk full", "code": "E1"}, {"text": "no route"}],
                    "log": [{"text": "oops", "stream": "stderr"}, {"msg": "fine"}]}"#
            ),
            [
                "Error disk full Some(\"E1\") {}",
                "Error no route None {}",
                "line Stderr oops",
                "line Stdout fine",
            ]
        );
    }

    #[test]
    fn a_message_given_twice_is_refused_with_its_position() {
        let e = parse_json(
            "{\n  \"errors\": [\n    {\"message\": \"a\", \"msg\": \"b\"}\n  ]\n}",
            Utc::now(),
        )
        .unwrap_err();
        assert!(e.message.contains("duplicate field `message`"), "{e}");
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn an_entry_without_a_message_says_so_with_its_position() {
        let e = parse_json(
            "{\n  \"warnings\": [\n    {\"code\": \"W1\"}\n  ]\n}",
            Utc::now(),
        )
        .unwrap_err();
        assert!(e.message.contains("missing field `message`"), "{e}");
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn neither_a_list_nor_an_item_is_refused_with_its_position() {
        let e = parse_json("{\n  \"errors\": 5\n}", Utc::now()).unwrap_err();
        assert!(
            e.message.contains("expected a list, a string or an object"),
            "{e}"
        );
        assert_eq!(e.line, 2, "{e}");
        let e = parse_json("{\n  \"errors\": [\"a\"],\n  \"eror\": []\n}", Utc::now()).unwrap_err();
        assert!(e.message.contains("unknown field `eror`"), "{e}");
        assert_eq!(e.line, 3, "{e}");
    }
}
