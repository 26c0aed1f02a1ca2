//! Reading a configuration tree: each problem collected at its
//! `FILE:LINE:COL`, none fatal until the end. The jobs file's reader
//! (`validate`) and the log4rs loader (`route::load`) share it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::node::{Node, Pos, Value};
use super::trigger::PlacedRules;
use super::{ConfigError, Problem};

/// Collects the problems of one file while its tree is read.
pub(crate) struct Check<'a> {
    pub(crate) file: &'a Path,
    pub(crate) problems: Vec<Problem>,
    /// Each job's own trigger rules, until all jobs are read.
    pub(super) pending_rules: Vec<(String, PlacedRules)>,
}

impl<'a> Check<'a> {
    /// A reader of the file at `file`, with no problem yet.
    pub(crate) fn new(file: &'a Path) -> Check<'a> {
        Check {
            file,
            problems: Vec::new(),
            pending_rules: Vec::new(),
        }
    }

    /// `value` when nothing was wrong, else every problem, in order.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError::invalid(self.problems))
        }
    }

    pub(crate) fn problem(&mut self, pos: Pos, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            pos,
            message: message.into(),
        });
    }

    /// The entries of a mapping, with each unknown key reported.
    pub(crate) fn mapping<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        known: &[&str],
    ) -> Vec<(&'n str, &'n Node)> {
        let Value::Map(entries) = &node.value else {
            if !matches!(node.value, Value::Null) {
                self.problem(
                    node.pos,
                    format!("{what} must be a mapping, not {}", node.kind()),
                );
            }
            return Vec::new();
        };
        let mut out: Vec<(&'n str, &'n Node)> = Vec::new();
        let mut seen: Vec<(&str, Pos)> = Vec::new();
        for (key, value) in entries {
            let Some(name) = key.as_str() else {
                self.problem(key.pos, format!("{what}: keys must be strings"));
                continue;
            };
            if let Some((_, first)) = seen.iter().find(|(seen, _)| *seen == name) {
                let line = first.line;
                self.problem(
                    key.pos,
                    format!("duplicate key `{name}` in {what} (first at line {line}); write each key once"),
                );
                continue;
            }
            seen.push((name, key.pos));
            if known.contains(&name) {
                out.push((name, value));
            } else {
                let hint = closest(name, known).map_or_else(
                    || format!("; expected one of: {}", known.join(", ")),
                    |k| format!("; did you mean `{k}`?"),
                );
                self.problem(key.pos, format!("unknown key `{name}` in {what}{hint}"));
            }
        }
        out
    }

    pub(crate) fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.problem(
                    node.pos,
                    format!("{what} must be a string, not {}", node.kind()),
                );
                None
            }
        }
    }

    pub(crate) fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let parsed = match &node.value {
            Value::Int(secs) if *secs >= 0 => Ok(Duration::from_secs(*secs as u64)),
            Value::Str(text) => humantime::parse_duration(text).map_err(|e| e.to_string()),
            _ => Err(format!("expected a duration, not {}", node.kind())),
        };
        match parsed {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.problem(node.pos, format!("{what} must be longer than zero"));
                None
            }
            Err(why) => {
                let text = node.scalar().unwrap_or_default();
                self.problem(
                    node.pos,
                    format!("bad duration `{text}` for {what} ({why}); write it like `90s`, `5m` or `1h 30m`"),
                );
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.problem(
                    node.pos,
                    format!("{what} must be true or false, not {}", node.kind()),
                );
                None
            }
        }
    }

    /// A mapping of names to single values (numbers and booleans as text).
    pub(crate) fn string_map(&mut self, node: &Node, what: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Value::Map(entries) = &node.value else {
            self.problem(
                node.pos,
                format!(
                    "{what} must be a mapping of names to values, not {}",
                    node.kind()
                ),
            );
            return out;
        };
        for (key, value) in entries {
            match (key.as_str(), value.scalar()) {
                (Some(k), Some(_)) if out.contains_key(k) => self.problem(
                    key.pos,
                    format!("{what}: duplicate name `{k}`; write each name once"),
                ),
                (Some(k), Some(v)) if !k.is_empty() => {
                    out.insert(k.to_string(), v);
                }
                (Some(k), None) => {
                    self.problem(value.pos, format!("{what}: `{k}` must be a single value"))
                }
                _ => self.problem(key.pos, format!("{what}: names must be non-empty strings")),
            }
        }
        out
    }
}

/// The known key nearest to a misspelt one, if it is near enough.
pub(crate) fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}
