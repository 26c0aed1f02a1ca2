//! How a job shares the machine: overlap, locks, retries, process limits.

use std::time::Duration;

use serde::Serialize;

use super::CatchUp;
use super::check::Check;
use super::node::{Node, Value};
use super::validate::valid_name;
use crate::lock::{LockSpec, Mode};

/// What a fire does when the job is still running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// Record the fire as `skipped` and do nothing.
    #[default]
    Skip,
    /// Wait for the running one (at most `queue_limit` fires wait).
    Queue,
    /// End the running one, then start.
    Replace,
    /// Run side by side.
    Allow,
}

/// Retries of a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Retries {
    /// How many more attempts after the first.
    pub count: u32,
    /// The wait before the first retry.
    #[serde(serialize_with = "super::duration")]
    pub delay: Duration,
    /// How the wait grows.
    pub backoff: Backoff,
    /// The longest wait.
    #[serde(serialize_with = "super::duration_opt")]
    pub max_delay: Option<Duration>,
}

/// How the wait between attempts grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// The same each time.
    #[default]
    Fixed,
    /// Doubling each time.
    Exponential,
}

impl Retries {
    /// The wait before attempt `next` (2 for the first retry).
    pub fn delay_before(&self, next: u32) -> Duration {
        let wait = match self.backoff {
            Backoff::Fixed => self.delay,
            Backoff::Exponential => self
                .delay
                .saturating_mul(1u32 << (next.saturating_sub(2)).min(20)),
        };
        self.max_delay.map_or(wait, |max| wait.min(max))
    }
}

/// Resource limits set on the job's process before it starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// RLIMIT_NOFILE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    /// RLIMIT_NPROC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
    /// RLIMIT_AS, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_space: Option<u64>,
}

/// What a stopping daemon does with running jobs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shutdown {
    /// Let them finish within `shutdown_grace`, then end them.
    #[default]
    Wait,
    /// End them at once (TERM, then KILL after each job's `kill_grace`).
    Terminate,
}

impl Check<'_> {
    /// A keyword among `options`.
    pub(super) fn keyword<T: Copy>(
        &mut self,
        node: &Node,
        what: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let text = self.string(node, what)?;
        let found = options
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, v)| *v);
        if found.is_none() {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            self.problem(
                node.pos,
                format!("unknown {what} `{text}`; use {}", names.join(", ")),
            );
        }
        found
    }

    /// `catch_up: none | last | all`.
    pub(super) fn catch_up(&mut self, node: &Node) -> CatchUp {
        let options = [
            ("none", CatchUp::None),
            ("last", CatchUp::Last),
            ("all", CatchUp::All),
        ];
        self.keyword(node, "catch_up", &options).unwrap_or_default()
    }

    /// `locks: [warehouse, {name: catalog, mode: shared}]`.
    pub(super) fn locks(&mut self, node: &Node) -> Vec<LockSpec> {
        let Value::Seq(items) = &node.value else {
            self.problem(
                node.pos,
                "`locks` must be a list of lock names, like `[warehouse]`",
            );
            return Vec::new();
        };
        let mut locks = Vec::new();
        for item in items {
            let (name, mode) = match &item.value {
                Value::Str(name) => (Some((name.clone(), item.pos)), Mode::Exclusive),
                Value::Map(_) => {
                    let mut name = None;
                    let mut mode = Mode::Exclusive;
                    for (key, value) in self.mapping(item, "a lock", &["name", "mode"]) {
                        match key {
                            "name" => {
                                name = self
                                    .string(value, "a lock's `name`")
                                    .map(|n| (n, value.pos))
                            }
                            _ => {
                                mode = self
                                    .keyword(
                                        value,
                                        "lock mode",
                                        &[("exclusive", Mode::Exclusive), ("shared", Mode::Shared)],
                                    )
                                    .unwrap_or(mode)
                            }
                        }
                    }
                    (name, mode)
                }
                _ => {
                    self.problem(item.pos, "a lock is a name, or `{name: …, mode: shared}`");
                    (None, Mode::Exclusive)
                }
            };
            match name {
                Some((name, pos)) if !valid_name(&name) || name.starts_with("job.") => self.problem(
                    pos,
                    format!("bad lock name `{name}`: use letters, digits, `.`, `_` and `-`, not starting with `job.`"),
                ),
                Some((name, _)) => locks.push(LockSpec { name, mode }),
                None if matches!(item.value, Value::Map(_)) => self.problem(item.pos, "a lock needs a `name`"),
                None => {}
            }
        }
        locks
    }

    /// `retries: 3` or `retries: {count, delay, backoff, max_delay}`.
    pub(super) fn retries(&mut self, node: &Node) -> Option<Retries> {
        let mut retries = Retries {
            count: 0,
            delay: Duration::from_secs(30),
            backoff: Backoff::Fixed,
            max_delay: None,
        };
        match &node.value {
            Value::Int(n @ 0..=100) => retries.count = *n as u32,
            Value::Map(_) => {
                for (key, value) in self.mapping(
                    node,
                    "`retries`",
                    &["count", "delay", "backoff", "max_delay"],
                ) {
                    match key {
                        "count" => match value.value {
                            Value::Int(n @ 0..=100) => retries.count = n as u32,
                            _ => self.problem(
                                value.pos,
                                "`retries.count` must be a number from 0 to 100",
                            ),
                        },
                        "delay" => {
                            retries.delay = self
                                .duration(value, "`retries.delay`")
                                .unwrap_or(retries.delay)
                        }
                        "backoff" => {
                            retries.backoff = self
                                .keyword(
                                    value,
                                    "backoff",
                                    &[
                                        ("fixed", Backoff::Fixed),
                                        ("exponential", Backoff::Exponential),
                                    ],
                                )
                                .unwrap_or_default()
                        }
                        _ => retries.max_delay = self.duration(value, "`retries.max_delay`"),
                    }
                }
            }
            _ => {
                self.problem(
                    node.pos,
                    "`retries` is a count, or `{count, delay, backoff, max_delay}`",
                );
                return None;
            }
        }
        (retries.count > 0).then_some(retries)
    }

    /// `limits: {open_files, processes, address_space}`.
    pub(super) fn limits(&mut self, node: &Node) -> Limits {
        let mut limits = Limits::default();
        for (key, value) in self.mapping(
            node,
            "`limits`",
            &["open_files", "processes", "address_space"],
        ) {
            let n = match value.value {
                Value::Int(n) if n > 0 => Some(n as u64),
                _ => {
                    self.problem(
                        value.pos,
                        format!("`limits.{key}` must be a positive number"),
                    );
                    None
                }
            };
            match key {
                "open_files" => limits.open_files = n,
                "processes" => limits.processes = n,
                _ => limits.address_space = n,
            }
        }
        limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff() {
        let r = Retries {
            count: 5,
            delay: Duration::from_secs(10),
            backoff: Backoff::Exponential,
            max_delay: Some(Duration::from_secs(60)),
        };
        let waits: Vec<u64> = (2..=6).map(|n| r.delay_before(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 60, 60]);
    }
}
