//! Table tests: Debian cron's daylight-saving rules in three zones, across
//! both transitions of 2026, for fixed-time and wildcard jobs. Each row was
//! worked out by hand from the zone's transition:
//!
//! - Europe/London: 29 Mar 01:00 GMT → 02:00 BST; 25 Oct 02:00 BST → 01:00 GMT.
//! - America/New_York: 8 Mar 02:00 EST → 03:00 EDT; 1 Nov 02:00 EDT → 01:00 EST.
//! - Australia/Lord_Howe (30 minutes): 5 Apr 02:00 (+11) → 01:30 (+10:30);
//!   4 Oct 02:00 (+10:30) → 02:30 (+11).

use super::*;

fn fires(zone: &str, expr: &str, from: &str, count: usize) -> Vec<String> {
    let zone: Zone = zone.parse().unwrap();
    let schedule = Schedule::parse(expr, zone.clone()).unwrap();
    let mut at: DateTime<Utc> = DateTime::parse_from_rfc3339(from)
        .unwrap()
        .with_timezone(&Utc);
    (0..count)
        .map(|_| {
            at = schedule.next_after(at).unwrap();
            at.with_timezone(&zone).to_rfc3339()
        })
        .collect()
}

#[test]
fn day_of_month_or_day_of_week_when_both_are_restricted() {
    assert_eq!(
        fires("UTC", "0 0 13 * FRI", "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-02T00:00:00+00:00",
            "2026-01-09T00:00:00+00:00",
            "2026-01-13T00:00:00+00:00"
        ]
    );
    // `*/2` starts with `*`: both must match (odd days that are Mondays).
    assert_eq!(
        fires("UTC", "0 0 */2 * MON", "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-05T00:00:00+00:00",
            "2026-01-19T00:00:00+00:00",
            "2026-02-09T00:00:00+00:00"
        ]
    );
}

#[test]
fn fixed_time_jobs_across_transitions() {
    let table: &[(&str, &str, &str, &[&str])] = &[
        // Gap: runs at the first minute after it.
        (
            "Europe/London",
            "30 1 * * *",
            "2026-03-28T12:00:00Z",
            &["2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00"],
        ),
        (
            "America/New_York",
            "30 2 * * *",
            "2026-03-07T12:00:00Z",
            &["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
        ),
        (
            "Australia/Lord_Howe",
            "15 2 * * *",
            "2026-10-03T00:00:00Z",
            &["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"],
        ),
        // Two times in one gap both run once, after it.
        (
            "Europe/London",
            "0,30 1 * * *",
            "2026-03-28T12:00:00Z",
            &["2026-03-29T02:00:00+01:00", "2026-03-30T01:00:00+01:00"],
        ),
        // Fold: runs once, in the first occurrence.
        (
            "Europe/London",
            "30 1 * * *",
            "2026-10-24T12:00:00Z",
            &["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"],
        ),
        (
            "America/New_York",
            "30 1 * * *",
            "2026-10-31T12:00:00Z",
            &["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        ),
        (
            "Australia/Lord_Howe",
            "45 1 * * *",
            "2026-04-04T00:00:00Z",
            &["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"],
        ),
        // Macros are fixed-time too.
        (
            "Europe/London",
            "@daily",
            "2026-10-24T12:00:00Z",
            &["2026-10-25T00:00:00+01:00", "2026-10-26T00:00:00+00:00"],
        ),
    ];
    for (zone, expr, from, want) in table {
        assert_eq!(
            fires(zone, expr, from, want.len()),
            *want,
            "{zone} {expr} from {from}"
        );
    }
}

#[test]
fn wildcard_jobs_across_transitions() {
    let table: &[(&str, &str, &str, &[&str])] = &[
        // Gap: the missing times are skipped.
        (
            "Europe/London",
            "30 * * * *",
            "2026-03-28T23:00:00Z",
            &[
                "2026-03-28T23:30:00+00:00",
                "2026-03-29T00:30:00+00:00",
                "2026-03-29T02:30:00+01:00",
                "2026-03-29T03:30:00+01:00",
            ],
        ),
        (
            "Australia/Lord_Howe",
            "*/15 * * * *",
            "2026-10-03T15:00:00Z",
            &[
                "2026-10-04T01:45:00+10:30",
                "2026-10-04T02:30:00+11:00",
                "2026-10-04T02:45:00+11:00",
            ],
        ),
        // Six fields always follow the wildcard rule: the gap day is skipped.
        (
            "Europe/London",
            "0 30 1 * * *",
            "2026-03-28T12:00:00Z",
            &["2026-03-30T01:30:00+01:00"],
        ),
        // Fold: every matching time fires in both occurrences, in time order.
        (
            "Europe/London",
            "30 * * * *",
            "2026-10-24T23:00:00Z",
            &[
                "2026-10-25T00:30:00+01:00",
                "2026-10-25T01:30:00+01:00",
                "2026-10-25T01:30:00+00:00",
                "2026-10-25T02:30:00+00:00",
            ],
        ),
        (
            "Europe/London",
            "*/20 1 * * *",
            "2026-10-25T00:00:00Z",
            &[
                "2026-10-25T01:20:00+01:00",
                "2026-10-25T01:40:00+01:00",
                "2026-10-25T01:00:00+00:00",
                "2026-10-25T01:20:00+00:00",
                "2026-10-25T01:40:00+00:00",
                "2026-10-26T01:00:00+00:00",
            ],
        ),
        (
            "America/New_York",
            "*/30 * * * *",
            "2026-11-01T04:45:00Z",
            &[
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T01:30:00-05:00",
                "2026-11-01T02:00:00-05:00",
            ],
        ),
        (
            "Australia/Lord_Howe",
            "*/15 * * * *",
            "2026-04-04T14:00:00Z",
            &[
                "2026-04-05T01:15:00+11:00",
                "2026-04-05T01:30:00+11:00",
                "2026-04-05T01:45:00+11:00",
                "2026-04-05T01:30:00+10:30",
                "2026-04-05T01:45:00+10:30",
                "2026-04-05T02:00:00+10:30",
            ],
        ),
        (
            "Europe/London",
            "0 30 1 * * *",
            "2026-10-24T12:00:00Z",
            &[
                "2026-10-25T01:30:00+01:00",
                "2026-10-25T01:30:00+00:00",
                "2026-10-26T01:30:00+00:00",
            ],
        ),
        // @hourly is not fixed-time: both 01:00s fire.
        (
            "Europe/London",
            "@hourly",
            "2026-10-24T23:30:00Z",
            &[
                "2026-10-25T01:00:00+01:00",
                "2026-10-25T01:00:00+00:00",
                "2026-10-25T02:00:00+00:00",
            ],
        ),
    ];
    for (zone, expr, from, want) in table {
        assert_eq!(
            fires(zone, expr, from, want.len()),
            *want,
            "{zone} {expr} from {from}"
        );
    }
}

#[test]
fn fires_are_strictly_increasing_through_a_whole_year() {
    for zone in ["Europe/London", "America/New_York", "Australia/Lord_Howe"] {
        for expr in ["*/7 * * * *", "30 1,2 * * *", "0 */3 * * *", "15 2 * * *"] {
            let all = fires(zone, expr, "2026-01-01T00:00:00Z", 3000);
            let instants: Vec<DateTime<Utc>> = all.iter().map(|t| t.parse().unwrap()).collect();
            assert!(instants.windows(2).all(|w| w[0] < w[1]), "{zone} {expr}");
        }
    }
}

#[test]
fn dst_shifts_of_fixed_time_jobs_are_found_for_warnings() {
    let london = Schedule::parse("30 1 * * *", Zone::named("Europe/London")).unwrap();
    let from = "2026-01-01T00:00:00Z".parse().unwrap();
    let to = "2027-01-01T00:00:00Z".parse().unwrap();
    let shifts = london.dst_shifts(from, to);
    assert_eq!(shifts.len(), 2, "{shifts:?}");
    assert!(shifts[0].gap && shifts[0].runs_at.to_rfc3339() == "2026-03-29T02:00:00+01:00");
    assert!(!shifts[1].gap && shifts[1].runs_at.to_rfc3339() == "2026-10-25T01:30:00+01:00");
    let noon = Schedule::parse("0 12 * * *", Zone::named("Europe/London")).unwrap();
    assert!(noon.dst_shifts(from, to).is_empty());
    let wildcard = Schedule::parse("30 * * * *", Zone::named("Europe/London")).unwrap();
    assert!(
        wildcard.dst_shifts(from, to).is_empty(),
        "only fixed-time jobs are moved"
    );
}

#[test]
fn extensions_last_weekday_and_nth() {
    let table: &[(&str, &[&str])] = &[
        (
            "0 0 L * *",
            &["2026-01-31T00:00:00+00:00", "2026-02-28T00:00:00+00:00"],
        ),
        (
            "0 0 LW * *",
            &["2026-01-30T00:00:00+00:00", "2026-02-27T00:00:00+00:00"],
        ),
        (
            "0 0 15W * *",
            &["2026-01-15T00:00:00+00:00", "2026-02-16T00:00:00+00:00"],
        ),
        (
            "0 0 * * 5L",
            &["2026-01-30T00:00:00+00:00", "2026-02-27T00:00:00+00:00"],
        ),
        (
            "0 0 * * FRI#2",
            &["2026-01-09T00:00:00+00:00", "2026-02-13T00:00:00+00:00"],
        ),
        (
            "0 0 * * 7",
            &["2026-01-04T00:00:00+00:00", "2026-01-11T00:00:00+00:00"],
        ),
        (
            "0 12 * * *",
            &["2026-01-01T12:00:00+00:00", "2026-01-02T12:00:00+00:00"],
        ),
        (
            "@monthly",
            &["2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"],
        ),
    ];
    for (expr, want) in table {
        assert_eq!(
            fires("UTC", expr, "2026-01-01T00:00:00Z", want.len()),
            *want,
            "{expr}"
        );
    }
}

#[test]
fn reboot_never_fires_by_the_clock() {
    let s = Schedule::parse("@reboot", Zone::utc()).unwrap();
    assert!(s.is_reboot());
    assert_eq!(s.next_after(Utc::now()), None);
}
