//! `overnight next`.

use crate::helper::{Sandbox, text};

#[test]
fn next_prints_rfc3339_times_with_the_zone_offset() {
    let sb = Sandbox::new();
    let out = sb.run(&[
        "next",
        "30 2 * * *",
        "--tz",
        "Europe/London",
        "--from",
        "2026-06-01T00:00:00Z",
        "--count",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out).0,
        "2026-06-01T02:30:00+01:00\n2026-06-02T02:30:00+01:00\n"
    );
}

#[test]
fn next_refuses_bad_input_with_exit_2() {
    let sb = Sandbox::new();
    let bad_zone = sb.run(&["next", "* * * * *", "--tz", "Mars/Base"]);
    assert_eq!(bad_zone.status.code(), Some(2));
    assert!(
        text(&bad_zone)
            .1
            .starts_with("error: unknown time zone `Mars/Base`")
    );
    let bad_expr = sb.run(&["next", "* * *"]);
    assert_eq!(bad_expr.status.code(), Some(2));
}

#[test]
fn next_applies_the_day_of_month_or_day_of_week_rule() {
    let sb = Sandbox::new();
    let out = sb.run(&[
        "next",
        "0 0 13 * FRI",
        "--tz",
        "UTC",
        "--from",
        "2026-01-01T00:00:00Z",
        "--count",
        "3",
    ]);
    assert_eq!(
        text(&out).0,
        "2026-01-02T00:00:00+00:00\n2026-01-09T00:00:00+00:00\n2026-01-13T00:00:00+00:00\n"
    );
}

#[test]
fn next_names_the_field_and_the_bad_part() {
    let sb = Sandbox::new();
    let out = sb.run(&["next", "0 0 32 * *"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out).1,
        "error: day-of-month: 32 is out of range 1-31 in \"0 0 32 * *\"\n"
    );
}
