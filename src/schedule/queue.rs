//! The timer queue: which job fires next, and when.
//!
//! Deadlines sit ordered in a `BTreeSet`, so the scheduler sleeps exactly
//! until the first one and never polls. A deadline is a wall-clock instant:
//! the fire time plus the job's jitter; the nominal fire time rides along
//! so the next one is computed from it, not from the clock.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

/// A job's index in `Config::jobs`.
pub type JobId = usize;

/// One pending fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline {
    /// When to wake for it.
    pub at: DateTime<Utc>,
    /// Whose fire it is.
    pub job: JobId,
    /// The fire time the schedule gave (before jitter).
    pub nominal: DateTime<Utc>,
}

/// Pending fires, earliest deadline first.
#[derive(Debug, Default)]
pub struct TimerQueue {
    deadlines: BTreeSet<Deadline>,
}

impl TimerQueue {
    /// Adds a deadline.
    pub fn push(&mut self, deadline: Deadline) {
        self.deadlines.insert(deadline);
    }

    /// The earliest deadline, if any.
    pub fn next(&self) -> Option<DateTime<Utc>> {
        self.deadlines.first().map(|d| d.at)
    }

    /// Removes and returns every deadline at or before `now`, earliest first.
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Vec<Deadline> {
        let mut due = Vec::new();
        while self.deadlines.first().is_some_and(|d| d.at <= now) {
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
        let d = |at: &str, job| Deadline {
            at: t(at),
            job,
            nominal: t(at),
        };
        let mut q = TimerQueue::default();
        q.push(d("2026-01-01T00:02:00Z", 1));
        q.push(d("2026-01-01T00:01:00Z", 0));
        q.push(d("2026-01-01T00:03:00Z", 2));
        assert_eq!(q.next(), Some(t("2026-01-01T00:01:00Z")));
        let due = q.pop_due(t("2026-01-01T00:02:00Z"));
        assert_eq!(due.iter().map(|d| d.job).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(q.len(), 1);
    }
}
