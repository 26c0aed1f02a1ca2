//! What to do with fires the daemon could not run on time: it was down,
//! the machine was suspended, the clock was stepped forward.
//!
//! Per job, `catch_up: none | last | all` (default `last`) and an optional
//! `starting_deadline`: a fire older than the deadline is never run. The
//! fires that are not run are recorded as one `missed` run per job and
//! stretch, with their count, so nothing is lost silently and nothing
//! floods.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Schedule;

/// How many missed fires of one job are listed; beyond, they are counted
/// as "more" (a per-second job down for a week would otherwise flood the
/// history).
pub const MAX_LISTED: usize = 1000;

/// A fire this late after its deadline counts as missed, not on time.
pub const LATE_AFTER: Duration = Duration::from_secs(60);

/// The catch-up policy of a job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Run nothing that was missed.
    None,
    /// Run the latest missed fire once.
    #[default]
    Last,
    /// Run every missed fire.
    All,
}

/// The decision for a list of late fires.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Fires to run now, oldest first.
    pub run: Vec<DateTime<Utc>>,
    /// Fires recorded as `missed`, with the reason.
    pub missed: Vec<(DateTime<Utc>, MissReason)>,
}

/// Why a late fire is not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissReason {
    /// Older than the job's `starting_deadline`.
    TooOld(Duration),
    /// `catch_up: none`.
    NoCatchUp,
    /// `catch_up: last`, and a later fire runs instead.
    NotLatest,
}

impl std::fmt::Display for MissReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MissReason::TooOld(deadline) => write!(
                f,
                "older than its starting_deadline of {}",
                humantime::format_duration(*deadline)
            ),
            MissReason::NoCatchUp => {
                f.write_str("the daemon was not running then (catch_up: none)")
            }
            MissReason::NotLatest => {
                f.write_str("the daemon was not running then (catch_up: last runs only the latest)")
            }
        }
    }
}

/// Decides which of `fires` (late, oldest first) run.
pub fn plan(
    fires: &[DateTime<Utc>],
    now: DateTime<Utc>,
    policy: CatchUp,
    deadline: Option<Duration>,
) -> Plan {
    let too_old =
        |t: &DateTime<Utc>| deadline.is_some_and(|d| (now - *t).to_std().unwrap_or_default() > d);
    let mut plan = Plan::default();
    for (i, fire) in fires.iter().enumerate() {
        let last = i + 1 == fires.len();
        let why = if too_old(fire) {
            Some(MissReason::TooOld(deadline.unwrap_or_default()))
        } else {
            match policy {
                CatchUp::None => Some(MissReason::NoCatchUp),
                CatchUp::Last if !last => Some(MissReason::NotLatest),
                CatchUp::Last | CatchUp::All => None,
            }
        };
        match why {
            Some(why) => plan.missed.push((*fire, why)),
            None => plan.run.push(*fire),
        }
    }
    plan
}

/// The fires of `schedule` in `(after, now]`, at most [`MAX_LISTED`]; the
/// flag says whether there were more.
pub fn fires_between(
    schedule: &Schedule,
    after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Vec<DateTime<Utc>>, bool) {
    let mut fires = Vec::new();
    let mut at = after;
    while let Some(next) = schedule.next_after(at).filter(|t| *t <= now) {
        if fires.len() == MAX_LISTED {
            return (fires, true);
        }
        fires.push(next);
        at = next;
    }
    (fires, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::Zone;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn policies() {
        let fires = [
            t("2026-01-01T02:00:00Z"),
            t("2026-01-02T02:00:00Z"),
            t("2026-01-03T02:00:00Z"),
        ];
        let now = t("2026-01-03T03:00:00Z");
        let last = plan(&fires, now, CatchUp::Last, None);
        assert_eq!(last.run, [fires[2]]);
        assert_eq!(last.missed.len(), 2);
        let none = plan(&fires, now, CatchUp::None, None);
        assert!(none.run.is_empty());
        assert_eq!(none.missed.len(), 3);
        assert_eq!(plan(&fires, now, CatchUp::All, None).run, fires);
        let fresh = plan(&fires, now, CatchUp::All, Some(Duration::from_secs(7200)));
        assert_eq!(fresh.run, [fires[2]]);
        assert!(
            fresh.missed[0]
                .1
                .to_string()
                .contains("starting_deadline of 2h")
        );
    }

    #[test]
    fn fires_between_is_capped() {
        let every_second = Schedule::parse("* * * * * *", Zone::utc()).unwrap();
        let (fires, more) = fires_between(
            &every_second,
            t("2026-01-01T00:00:00Z"),
            t("2026-01-02T00:00:00Z"),
        );
        assert_eq!(fires.len(), MAX_LISTED);
        assert!(more);
        let daily = Schedule::parse("0 2 * * *", Zone::utc()).unwrap();
        let (fires, more) =
            fires_between(&daily, t("2026-01-01T03:00:00Z"), t("2026-01-04T03:00:00Z"));
        assert_eq!((fires.len(), more), (3, false));
    }
}
