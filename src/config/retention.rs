//! `retention:`: how long what runs leave on disk is kept.
//!
//! Capture files (and the report files jobs write beside them) of runs
//! that ended longer ago than `captures` are removed; the history's rows,
//! small, stay unless `history` says how long. Journal files need no
//! retention: each goes once folded and its writer is done with it.

use std::time::Duration;

use serde::Serialize;

use super::check::Check;
use super::node::{Node, Value};

/// How long things are kept; `None` keeps them for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Capture and report files of ended runs.
    #[serde(serialize_with = "super::duration_opt")]
    pub captures: Option<Duration>,
    /// History rows (runs, their attempts and trigger deliveries).
    #[serde(serialize_with = "super::duration_opt")]
    pub history: Option<Duration>,
}

/// 90 days.
const NINETY_DAYS: Duration = Duration::from_secs(90 * 24 * 3600);

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            captures: Some(NINETY_DAYS),
            history: None,
        }
    }
}

impl Check<'_> {
    /// `retention: {captures: 90d, history: 2y}`; `forever` keeps.
    pub(super) fn retention(&mut self, node: &Node) -> Retention {
        let mut retention = Retention::default();
        for (key, value) in self.mapping(node, "`retention`", &["captures", "history"]) {
            let kept = match &value.value {
                Value::Str(s) if s == "forever" => None,
                _ => match self.duration(value, &format!("`retention.{key}`")) {
                    Some(d) => Some(d),
                    None => continue,
                },
            };
            match key {
                "captures" => retention.captures = kept,
                _ => retention.history = kept,
            }
        }
        retention
    }
}
