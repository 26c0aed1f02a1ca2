//! Cron schedules with Debian cron's semantics, in any time zone.
//!
//! croner finds the next matching *wall-clock* time (a naive local time);
//! this module turns wall-clock times into instants with Debian's rules for
//! daylight saving:
//!
//! - a fixed-time job (five fields, minute and hour not starting with `*`)
//!   whose time falls into a gap runs at the first minute after the gap,
//!   and one whose time occurs twice runs once, in the first occurrence;
//! - every other expression fires at each matching wall-clock time that
//!   exists: twice in a repeated hour, never in a gap.
//!
//! Because a repeated hour maps later wall-clock times to earlier instants,
//! near a transition the search starts a few hours back and keeps the
//! earliest instant found; away from transitions it is a single croner step.

pub mod catchup;
pub mod clock;
pub mod expr;
pub mod queue;
pub mod scheduler;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use crate::zone::Zone;
use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// More than any zone's daylight-saving shift: wall-clock times this far
/// apart are in the same order as their instants.
const SHIFT_BOUND: Duration = Duration::hours(3);

/// A parsed cron expression, read in one time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    source: String,
    /// Shared: a parsed croner pattern holds several KiB, and jobs with the
    /// same expression (and every clone) use one.
    cron: Option<Arc<Cron>>,
    fixed_time: bool,
    zone: Zone,
}

/// Why an expression was refused: the field, the bad part, the expression.
#[derive(Debug, thiserror::Error)]
#[error("{message} in \"{expr}\"")]
pub struct ScheduleError {
    expr: String,
    message: String,
}

/// A fixed-time job's fire that daylight saving moves or merges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DstShift {
    /// The wall-clock time the job names.
    pub wall: NaiveDateTime,
    /// When it runs instead (the first minute after a gap, or the first of
    /// two occurrences).
    pub runs_at: DateTime<Zone>,
    /// `true` for a gap (spring forward), `false` for a fold (fall back).
    pub gap: bool,
}

impl Schedule {
    /// Parses five fields (`minute hour day-of-month month day-of-week`),
    /// six with seconds first, or a macro such as `@daily` or `@reboot`.
    pub fn parse(source: &str, zone: Zone) -> Result<Schedule, ScheduleError> {
        let source = source.trim().to_string();
        let fail = |message: String| ScheduleError {
            expr: source.clone(),
            message,
        };
        let expr = expr::parse(&source).map_err(fail)?;
        let cron = if expr.reboot {
            None
        } else {
            Some(interned(&expr.pattern, expr.days_and).map_err(fail)?)
        };
        Ok(Schedule {
            source,
            cron,
            fixed_time: expr.fixed_time,
            zone,
        })
    }

    /// `@reboot`: runs once when the daemon starts, never by the clock.
    pub fn is_reboot(&self) -> bool {
        self.cron.is_none()
    }

    /// A Debian fixed-time job (see the module's notes).
    pub fn is_fixed_time(&self) -> bool {
        self.fixed_time
    }

    /// The zone the expression is read in.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let cron = self.cron.as_ref()?;
        let near = !self.offset_steady(after);
        let local = after.with_timezone(&self.zone).naive_local();
        let mut cursor = if near { local - SHIFT_BOUND } else { local };
        let mut inclusive = near;
        let mut best: Option<DateTime<Utc>> = None;
        let mut horizon: Option<NaiveDateTime> = None;
        loop {
            let wall = cron.find_next_occurrence(&cursor, inclusive).ok()?;
            inclusive = false;
            if horizon.is_some_and(|h| wall > h) {
                return best;
            }
            for at in self.instants(wall) {
                if at > after && best.is_none_or(|b| at < b) {
                    best = Some(at);
                }
            }
            if let (None, Some(found)) = (horizon, best) {
                if self.offset_steady(found) {
                    return best;
                }
                // A later wall-clock time may still come first in a fold.
                horizon = Some(wall + SHIFT_BOUND);
            }
            cursor = wall;
        }
    }

    /// The instants a matching wall-clock time fires at, by the rules above.
    fn instants(&self, wall: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.zone.from_local_datetime(&wall) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, second) if self.fixed_time => {
                vec![first.min(second).with_timezone(&Utc)]
            }
            LocalResult::Ambiguous(first, second) => {
                vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
            }
            LocalResult::None if self.fixed_time => self
                .after_gap(wall)
                .map(|t| t.with_timezone(&Utc))
                .into_iter()
                .collect(),
            LocalResult::None => Vec::new(),
        }
    }

    /// The first whole minute after the gap that swallowed `wall`.
    fn after_gap(&self, wall: NaiveDateTime) -> Option<DateTime<Zone>> {
        let minute = wall.with_second(0)?;
        (1..=SHIFT_BOUND.num_minutes())
            .map(|m| minute + Duration::minutes(m))
            .find_map(|t| self.zone.from_local_datetime(&t).earliest())
    }

    /// Whether the zone's offset is the same from three hours before `at`
    /// to three hours after (no transition near).
    fn offset_steady(&self, at: DateTime<Utc>) -> bool {
        let offset = |t: DateTime<Utc>| self.zone.offset_from_utc_datetime(&t.naive_utc()).fix();
        offset(at - SHIFT_BOUND) == offset(at + SHIFT_BOUND)
    }

    /// For a fixed-time job, the fires between `from` and `to` that daylight
    /// saving moves (gap) or merges (fold), for `overnight check` to warn.
    pub fn dst_shifts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DstShift> {
        let Some(cron) = self.cron.as_ref().filter(|_| self.fixed_time) else {
            return Vec::new();
        };
        let mut shifts = Vec::new();
        // Walk day by day; look closely only around a change of offset.
        let mut day = from;
        while day < to {
            let next = day + Duration::days(1);
            if self.zone.offset_from_utc_datetime(&day.naive_utc()).fix()
                != self.zone.offset_from_utc_datetime(&next.naive_utc()).fix()
            {
                let mut cursor = day.with_timezone(&self.zone).naive_local() - SHIFT_BOUND;
                let end = next.with_timezone(&self.zone).naive_local() + SHIFT_BOUND;
                while let Ok(wall) = cron.find_next_occurrence(&cursor, false) {
                    if wall > end {
                        break;
                    }
                    match self.zone.from_local_datetime(&wall) {
                        LocalResult::None => {
                            shifts.extend(self.after_gap(wall).map(|runs_at| DstShift {
                                wall,
                                runs_at,
                                gap: true,
                            }))
                        }
                        LocalResult::Ambiguous(first, second) => shifts.push(DstShift {
                            wall,
                            runs_at: first.min(second),
                            gap: false,
                        }),
                        LocalResult::Single(_) => {}
                    }
                    cursor = wall;
                }
            }
            day = next;
        }
        shifts.dedup();
        shifts
    }
}

/// The parsed pattern for `(pattern, days_and)`, shared with every other
/// schedule of the same expression that is still alive.
fn interned(pattern: &str, days_and: bool) -> Result<Arc<Cron>, String> {
    type Patterns = HashMap<(String, bool), Weak<Cron>>;
    static CACHE: Mutex<Option<Patterns>> = Mutex::new(None);
    let mut cache = CACHE.lock().expect("pattern cache");
    let cache = cache.get_or_insert_with(HashMap::new);
    let key = (pattern.to_string(), days_and);
    if let Some(cron) = cache.get(&key).and_then(Weak::upgrade) {
        return Ok(cron);
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .dom_and_dow(days_and)
        .build();
    let cron = Arc::new(parser.parse(pattern).map_err(|e| e.to_string())?);
    if cache.len() > 4096 {
        cache.retain(|_, weak| weak.strong_count() > 0);
    }
    cache.insert(key, Arc::downgrade(&cron));
    Ok(cron)
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests;
