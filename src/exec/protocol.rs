//! The line protocol a job speaks on its output (DESIGN §4).
//!
//! `::error::MESSAGE`, `::warning::`, `::notice::`, `::debug::`, each with
//! optional `key=value,…` parameters before the second `::`;
//! `::progress::45% MESSAGE`, `::status::warning`, `::detail::KEY=VALUE`,
//! `::summary::TEXT` (the last one said is the report's summary).
//! Cronicle's JSON lines are understood too (`{"progress":0.5}`,
//! `{"complete":1,"code":0,"description":"…"}`), so its jobs migrate as-is.
//! Anything else is an ordinary line.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::event::{Entry, EntryKind, Progress, RunEvent};
use crate::report::Status;

/// Appends the meaning of a protocol line to `out`; `false` for an
/// ordinary line.
pub fn parse(line: &str, at: DateTime<Utc>, out: &mut Vec<RunEvent>) -> bool {
    if line.starts_with("::") {
        return match command(line, at) {
            Some(event) => {
                out.push(event);
                true
            }
            None => false,
        };
    }
    line.starts_with('{') && cronicle(line, at, out)
}

fn command(line: &str, at: DateTime<Utc>) -> Option<RunEvent> {
    let rest = line.strip_prefix("::")?;
    let end = rest.find("::")?;
    let (head, message) = (&rest[..end], &rest[end + 2..]);
    let (name, params) = head.split_once(' ').unwrap_or((head, ""));
    let entry = |kind| {
        let mut fields = parameters(params);
        let code = fields.remove("code");
        RunEvent::Entry(
            kind,
            Entry {
                message: message.to_string(),
                code,
                at,
                fields,
            },
        )
    };
    Some(match name {
        "error" => entry(EntryKind::Error),
        "warning" => entry(EntryKind::Warning),
        "notice" => entry(EntryKind::Notice),
        "debug" => entry(EntryKind::Debug),
        "progress" => RunEvent::Progress(progress(message, at)),
        "status" => RunEvent::Status(message.parse().ok()?),
        "summary" => RunEvent::Summary(message.to_string()),
        "detail" => {
            let (key, value) = message.split_once('=')?;
            RunEvent::Detail(key.trim().to_string(), Value::String(value.to_string()))
        }
        _ => return None,
    })
}

/// Cronicle's JSON lines: `progress` from 0 to 1; `complete` with `code`
/// (0 is success) and `description`.
fn cronicle(line: &str, at: DateTime<Utc>, out: &mut Vec<RunEvent>) -> bool {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(line.trim_end()) else {
        return false;
    };
    let mut said = false;
    if let Some(fraction) = map.get("progress").and_then(Value::as_f64) {
        out.push(RunEvent::Progress(Progress {
            at,
            percent: Some((fraction * 100.0).clamp(0.0, 100.0)),
            message: String::new(),
        }));
        said = true;
    }
    let complete = map
        .get("complete")
        .is_some_and(|c| c.as_f64() == Some(1.0) || c.as_bool() == Some(true));
    if complete {
        let description = map
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string);
        let code = match map.get("code") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "0" || s.is_empty() => None,
            Some(Value::Number(n)) if n.as_f64() == Some(0.0) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        match code {
            None => {
                out.push(RunEvent::Status(Status::Success));
                out.extend(description.map(RunEvent::Summary));
            }
            Some(code) => {
                out.push(RunEvent::Status(Status::Failed));
                out.push(RunEvent::Entry(
                    EntryKind::Error,
                    Entry {
                        message: description
                            .unwrap_or_else(|| format!("the job reported code {code}")),
                        code: Some(code),
                        at,
                        fields: BTreeMap::new(),
                    },
                ));
            }
        }
        said = true;
    }
    said
}

/// `key=value,key2=value2`; a part without `=` is ignored.
fn parameters(params: &str) -> BTreeMap<String, String> {
    params
        .split(',')
        .filter_map(|part| part.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// `45% copying`, `45 copying`, or just a message.
fn progress(message: &str, at: DateTime<Utc>) -> Progress {
    let (first, rest) = message.split_once(' ').unwrap_or((message, ""));
    match first.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Progress {
            at,
            percent: Some(p),
            message: rest.trim().to_string(),
        },
        _ => Progress {
            at,
            percent: None,
            message: message.trim().to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::UNIX_EPOCH
    }

    fn said(line: &str) -> Vec<RunEvent> {
        let mut out = Vec::new();
        let protocol = parse(line, at(), &mut out);
        assert_eq!(protocol, !out.is_empty(), "{line}");
        out
    }

    #[test]
    fn entries_with_parameters() {
        let [RunEvent::Entry(EntryKind::Warning, e)] =
            &said("::warning code=W7,file=a.csv::disk 91% full")[..]
        else {
            panic!()
        };
        assert_eq!(e.message, "disk 91% full");
        assert_eq!(e.code.as_deref(), Some("W7"));
        assert_eq!(e.fields["file"], "a.csv");
        // A value ending in `:`, as the helpers write it: a space before
        // the `::`, trimmed.
        let [RunEvent::Entry(EntryKind::Error, e)] = &said("::error code=x: ::the message")[..]
        else {
            panic!()
        };
        assert_eq!(
            (e.code.as_deref(), e.message.as_str()),
            (Some("x:"), "the message")
        );
    }

    #[test]
    fn progress_status_detail() {
        let [RunEvent::Progress(p)] = &said("::progress::45% copying")[..] else {
            panic!()
        };
        assert_eq!((p.percent, p.message.as_str()), (Some(45.0), "copying"));
        assert!(matches!(
            said("::status::Warning")[..],
            [RunEvent::Status(Status::Warning)]
        ));
        assert!(matches!(&said("::detail::rows=12")[..], [RunEvent::Detail(k, _)] if k == "rows"));
        assert!(
            matches!(&said("::summary::imported 12 rows")[..], [RunEvent::Summary(s)] if s == "imported 12 rows")
        );
    }

    #[test]
    fn cronicle_lines() {
        let [RunEvent::Progress(p)] = &said(r#"{"progress":0.5}"#)[..] else {
            panic!()
        };
        assert_eq!(p.percent, Some(50.0));
        assert!(
            matches!(&said(r#"{"complete":1,"code":0,"description":"all good"}"#)[..],
            [RunEvent::Status(Status::Success), RunEvent::Summary(s)] if s == "all good")
        );
        let failed = said(r#"{"complete":1,"code":"E_DB","description":"db down"}"#);
        assert!(
            matches!(&failed[..], [RunEvent::Status(Status::Failed), RunEvent::Entry(EntryKind::Error, e)]
            if e.message == "db down" && e.code.as_deref() == Some("E_DB"))
        );
    }

    #[test]
    fn ordinary_lines() {
        for line in [
            "hello",
            "::unknown::x",
            "::error",
            "::status::sideways",
            "{not json",
            r#"{"other":1}"#,
        ] {
            assert!(said(line).is_empty(), "{line}");
        }
    }
}
