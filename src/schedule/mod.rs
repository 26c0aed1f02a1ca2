//! Cron expressions and the instants they fire at.
//!
//! [`Schedule`] wraps croner behind our own type, so the rest of the program
//! asks one question — "when after this instant?" — and never sees the
//! parser. The queue that sleeps until those instants is [`queue`].

pub mod queue;

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed cron expression, read in one time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    source: String,
    cron: Cron,
    zone: Tz,
}

/// Why an expression was refused.
#[derive(Debug, thiserror::Error)]
#[error("{message} in \"{expr}\"")]
pub struct ScheduleError {
    expr: String,
    message: String,
}

impl Schedule {
    /// Parses five fields (`minute hour day-of-month month day-of-week`),
    /// six with seconds first, or a macro such as `@daily`.
    pub fn parse(expr: &str, zone: Tz) -> Result<Schedule, ScheduleError> {
        let source = expr.trim().to_string();
        let fail = |message: String| ScheduleError {
            expr: source.clone(),
            message,
        };
        let fields = source.split_whitespace().count();
        if !source.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(fail(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found {fields}"
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(&source)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Schedule { source, cron, zone })
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The zone the expression is read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_after_the_given_instant() {
        let s = Schedule::parse("*/15 * * * *", Tz::UTC).unwrap();
        let t: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            s.next_after(t).unwrap().to_rfc3339(),
            "2026-01-01T00:15:00+00:00"
        );
    }

    #[test]
    fn refuses_wrong_field_count() {
        let e = Schedule::parse("* * *", Tz::UTC).unwrap_err();
        assert!(e.to_string().contains("expected 5 fields"), "{e}");
    }
}
