//! Times as the commands print them: one format for people — the job's
//! zone, to the second, with its offset — and RFC 3339 in `--json`.

use crate::zone::Zone;
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::report::{human_time, span};

/// Each job's zone: its own in the jobs file, else the file's `timezone`
/// (a job only in the history, like a wrapped crontab line), else the
/// machine's.
pub(super) struct Zones<'a> {
    config: Option<&'a Config>,
    local: Zone,
}

impl<'a> Zones<'a> {
    pub(super) fn new(config: Option<&'a Config>) -> Zones<'a> {
        Zones {
            config,
            local: config.map_or_else(Zone::local, |c| c.timezone.clone()),
        }
    }

    /// A stored time (RFC 3339) in `job`'s zone; the text as it is when it
    /// does not parse.
    pub(super) fn show(&self, job: &str, stored: &str) -> String {
        match parse(stored) {
            Some(at) => human_time(at, self.zone(job)),
            None => stored.to_string(),
        }
    }

    fn zone(&self, job: &str) -> &Zone {
        self.config
            .and_then(|c| c.job(job))
            .map_or(&self.local, |j| &j.timezone)
    }
}

fn parse(stored: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(stored)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// How long a run took: `0.4s`, `12.0s`, `3m 04s`, `2h 05m`; empty when it
/// has not ended.
pub(super) fn duration(started: &str, finished: Option<&str>) -> String {
    let (Some(start), Some(end)) = (parse(started), finished.and_then(parse)) else {
        return String::new();
    };
    span(start, end)
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_at_a_glance() {
        let at = |s: &str| format!("2026-11-30T02:{s}Z");
        assert_eq!(duration(&at("00:00.000"), Some(&at("00:00.400"))), "0.4s");
        assert_eq!(duration(&at("00:00"), Some(&at("03:04"))), "3m 04s");
        assert_eq!(
            duration("2026-11-30T00:00:00Z", Some("2026-11-30T02:05:59Z")),
            "2h 05m"
        );
        assert_eq!(duration(&at("00:00"), None), "");
    }
}
