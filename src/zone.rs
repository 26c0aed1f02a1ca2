//! IANA time zones: the zone a schedule is read in and a time is shown in.
//!
//! A [`Zone`] is a zone of the tz database bundled in the binary (jiff's
//! copy, kept as TZif bytes and parsed on first use) that is also a
//! `chrono::TimeZone`, so chrono's `DateTime` and croner's wall-clock search
//! work with it unchanged. The bundle being bytes matters at every start of
//! a position-independent binary: chrono-tz's tables held 35,000 pointers
//! the loader had to relocate first (build.rs, docs/benchmarks.md).
//!
//! Offsets are exact to the second; a zone's abbreviation is not kept, as
//! nothing overnight prints uses it (`+01:00`, never `CET`).

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, Timelike, Utc,
};
use jiff::tz::{AmbiguousOffset, TimeZone};

/// A named time zone.
#[derive(Clone, PartialEq, Eq)]
pub struct Zone(TimeZone);

/// A zone's offset at one instant, with the zone itself (what
/// `chrono::TimeZone::from_offset` gives back).
#[derive(Clone, Debug)]
pub struct ZoneOffset {
    zone: Zone,
    fixed: FixedOffset,
}

/// A name the database does not hold.
#[derive(Debug, thiserror::Error)]
#[error("unknown time zone `{0}`")]
pub struct UnknownZone(pub String);

impl Zone {
    /// Coordinated Universal Time.
    pub fn utc() -> Zone {
        Zone(TimeZone::UTC)
    }

    /// The zone named `name`, as in `Zone::named("Europe/London")`.
    ///
    /// # Panics
    /// When the name is not in the database: for names written in code.
    pub fn named(name: &str) -> Zone {
        name.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The machine's zone, UTC when it cannot be told.
    pub fn local() -> Zone {
        iana_time_zone::get_timezone()
            .ok()
            .and_then(|name| name.parse().ok())
            .unwrap_or_else(Zone::utc)
    }

    /// Its IANA name, as the database spells it.
    pub fn name(&self) -> &str {
        self.0.iana_name().unwrap_or("UTC")
    }

    /// Every name the database holds, for "did you mean".
    pub fn names() -> Vec<String> {
        jiff::tz::db()
            .available()
            .map(|name| name.as_str().to_string())
            .collect()
    }

    /// The offset from UTC at `at`.
    pub fn offset_at(&self, at: DateTime<Utc>) -> FixedOffset {
        fixed(self.0.to_offset(timestamp(at)))
    }
}

impl FromStr for Zone {
    type Err = UnknownZone;

    /// Looks the name up without regard to case (`europe/paris` is
    /// `Europe/Paris`).
    fn from_str(name: &str) -> Result<Zone, UnknownZone> {
        TimeZone::get(name)
            .map(Zone)
            .map_err(|_| UnknownZone(name.to_string()))
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name())
    }
}

impl chrono::TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Zone {
        offset.zone.clone()
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> LocalResult<ZoneOffset> {
        self.offset_from_local_datetime(&local.and_time(chrono::NaiveTime::MIN))
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> LocalResult<ZoneOffset> {
        let Some(wall) = civil(local) else {
            // Beyond the years the database speaks of (±9999): the offset
            // at the nearest instant it knows.
            return LocalResult::Single(self.offset_from_utc_datetime(local));
        };
        let at = |offset| ZoneOffset {
            zone: self.clone(),
            fixed: fixed(offset),
        };
        match self.0.to_ambiguous_timestamp(wall).offset() {
            AmbiguousOffset::Unambiguous { offset } => LocalResult::Single(at(offset)),
            AmbiguousOffset::Gap { .. } => LocalResult::None,
            AmbiguousOffset::Fold { before, after } => {
                LocalResult::Ambiguous(at(before), at(after))
            }
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        self.offset_from_utc_datetime(&utc.and_time(chrono::NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        ZoneOffset {
            zone: self.clone(),
            fixed: self.offset_at(utc.and_utc()),
        }
    }
}

impl chrono::Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        self.fixed
    }
}

impl fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fixed.fmt(f)
    }
}

/// `at` as jiff's instant, clamped to the years jiff knows.
fn timestamp(at: DateTime<Utc>) -> jiff::Timestamp {
    let nanos = at.timestamp_subsec_nanos().min(999_999_999) as i32;
    jiff::Timestamp::new(at.timestamp(), nanos).unwrap_or(if at.timestamp() < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    })
}

/// A wall-clock time as jiff's, `None` outside its years.
fn civil(local: &NaiveDateTime) -> Option<jiff::civil::DateTime> {
    jiff::civil::DateTime::new(
        i16::try_from(local.year()).ok()?,
        local.month() as i8,
        local.day() as i8,
        local.hour() as i8,
        local.minute() as i8,
        local.second() as i8,
        local.nanosecond().min(999_999_999) as i32,
    )
    .ok()
}

/// jiff's offset as chrono's. Both hold whole seconds; the database's
/// offsets all lie within chrono's ±24 hours.
fn fixed(offset: jiff::tz::Offset) -> FixedOffset {
    FixedOffset::east_opt(offset.seconds()).unwrap_or(FixedOffset::east_opt(0).expect("zero"))
}

#[cfg(test)]
mod tests {
    use chrono::{Offset, TimeZone};

    use super::*;

    fn wall(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn a_spring_gap_has_no_instant_and_an_autumn_fold_has_two() {
        let london = Zone::named("Europe/London");
        assert!(matches!(
            london.from_local_datetime(&wall("2026-03-29 01:30")),
            LocalResult::None
        ));
        let LocalResult::Ambiguous(first, second) =
            london.from_local_datetime(&wall("2026-10-25 01:30"))
        else {
            panic!("01:30 on 25 October is twice in London");
        };
        assert_eq!(first.offset().fix().local_minus_utc(), 3600);
        assert_eq!(second.offset().fix().local_minus_utc(), 0);
        assert_eq!((second - first).num_minutes(), 60);
    }

    #[test]
    fn offsets_follow_the_database_across_the_year() {
        let sydney = Zone::named("Australia/Sydney");
        let summer = Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap();
        let winter = Utc.with_ymd_and_hms(2026, 7, 15, 0, 0, 0).unwrap();
        assert_eq!(sydney.offset_at(summer).local_minus_utc(), 11 * 3600);
        assert_eq!(sydney.offset_at(winter).local_minus_utc(), 10 * 3600);
        let kolkata = Zone::named("Asia/Kolkata");
        assert_eq!(
            summer.with_timezone(&kolkata).to_rfc3339(),
            "2026-01-15T05:30:00+05:30"
        );
    }

    #[test]
    fn names_are_found_without_regard_to_case_and_spelled_as_the_database_does() {
        assert_eq!(Zone::named("europe/paris").name(), "Europe/Paris");
        assert_eq!(Zone::named("europe/paris"), Zone::named("Europe/Paris"));
        assert_eq!(Zone::utc().name(), "UTC");
        assert!("Mars/Olympus".parse::<Zone>().is_err());
        assert!(Zone::names().iter().any(|n| n == "America/New_York"));
    }

    #[test]
    fn times_beyond_the_database_years_do_not_panic() {
        let paris = Zone::named("Europe/Paris");
        let far = NaiveDate::from_ymd_opt(60000, 1, 1)
            .unwrap()
            .and_time(chrono::NaiveTime::MIN);
        assert!(matches!(
            paris.from_local_datetime(&far),
            LocalResult::Single(_)
        ));
        let _ = paris.from_utc_datetime(&far);
    }
}
