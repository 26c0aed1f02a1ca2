//! The line protocol a job speaks on its output (DESIGN §4).
//!
//! `::error::MESSAGE`, `::warning::`, `::notice::`, `::debug::`, each with
//! optional `key=value,…` parameters before the second `::`;
//! `::progress::45% MESSAGE`, `::status::warning`, `::detail::KEY=VALUE`.
//! Anything else is an ordinary line.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::event::{Entry, EntryKind, Progress, RunEvent};

/// The meaning of a protocol line, or `None` for an ordinary line.
pub fn parse(line: &str, at: DateTime<Utc>) -> Option<RunEvent> {
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
        "detail" => {
            let (key, value) = message.split_once('=')?;
            RunEvent::Detail(
                key.trim().to_string(),
                serde_json::Value::String(value.to_string()),
            )
        }
        _ => return None,
    })
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
    use crate::report::Status;

    fn at() -> DateTime<Utc> {
        DateTime::UNIX_EPOCH
    }

    #[test]
    fn entries_with_parameters() {
        let Some(RunEvent::Entry(EntryKind::Warning, e)) =
            parse("::warning code=W7,file=a.csv::disk 91% full", at())
        else {
            panic!()
        };
        assert_eq!(e.message, "disk 91% full");
        assert_eq!(e.code.as_deref(), Some("W7"));
        assert_eq!(e.fields["file"], "a.csv");
    }

    #[test]
    fn progress_status_detail() {
        let Some(RunEvent::Progress(p)) = parse("::progress::45% copying", at()) else {
            panic!()
        };
        assert_eq!((p.percent, p.message.as_str()), (Some(45.0), "copying"));
        assert!(matches!(
            parse("::status::Warning", at()),
            Some(RunEvent::Status(Status::Warning))
        ));
        assert!(
            matches!(parse("::detail::rows=12", at()), Some(RunEvent::Detail(k, _)) if k == "rows")
        );
    }

    #[test]
    fn ordinary_lines() {
        assert!(parse("hello", at()).is_none());
        assert!(parse("::unknown::x", at()).is_none());
        assert!(parse("::error", at()).is_none());
        assert!(parse("::status::sideways", at()).is_none());
    }
}
