//! The timer queue: which job fires next, and when.
//!
//! Deadlines are kept ordered in a `BTreeSet<(DateTime, JobId)>`, so the
//! scheduler sleeps exactly until the first one and never polls. Deadlines
//! are wall-clock instants; the sleeper converts the nearest one into a
//! monotonic sleep and re-reads the clock when it wakes.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

/// A job's index in `Config::jobs`.
pub type JobId = usize;

/// Pending fire times, earliest first.
#[derive(Debug, Default)]
pub struct TimerQueue {
    deadlines: BTreeSet<(DateTime<Utc>, JobId)>,
}

impl TimerQueue {
    /// Adds a deadline.
    pub fn push(&mut self, at: DateTime<Utc>, job: JobId) {
        self.deadlines.insert((at, job));
    }

    /// The earliest deadline, if any.
    pub fn next(&self) -> Option<DateTime<Utc>> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Removes and returns every deadline at or before `now`, earliest first.
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Vec<(DateTime<Utc>, JobId)> {
        let mut due = Vec::new();
        while let Some(first) = self.deadlines.first() {
            if first.0 > now {
                break;
            }
            due.extend(self.deadlines.pop_first());
        }
        due
    }

    /// Forgets every deadline (on reload).
    pub fn clear(&mut self) {
        self.deadlines.clear();
    }

    /// How many deadlines are pending.
    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_only_what_is_due_in_order() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let mut q = TimerQueue::default();
        q.push(t("2026-01-01T00:02:00Z"), 1);
        q.push(t("2026-01-01T00:01:00Z"), 0);
        q.push(t("2026-01-01T00:03:00Z"), 2);
        assert_eq!(q.next(), Some(t("2026-01-01T00:01:00Z")));
        let due = q.pop_due(t("2026-01-01T00:02:00Z"));
        assert_eq!(due.iter().map(|d| d.1).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(q.len(), 1);
    }
}
