//! Reading a cron expression the way Debian's cron does, before croner
//! sees it.
//!
//! Each field is checked here so an error names the field and the bad part
//! (`day-of-month: 32 is out of range 1-31`). What croner reads differently
//! from Vixie cron is translated: `a/n` (from a to the field's end) becomes
//! `a-max/n`, macros become their five fields. Two facts croner cannot tell
//! us are decided here: the day rule (day-of-month and day-of-week are ORed
//! only when neither field starts with `*`) and whether a job is a
//! fixed-time job for daylight saving (five fields, minute and hour both
//! not starting with `*`).

/// An expression, checked and translated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    /// The pattern handed to croner.
    pub pattern: String,
    /// Day-of-month and day-of-week must both match (one starts with `*`).
    pub days_and: bool,
    /// Debian's fixed-time job: runs once per day-time, moved out of a DST
    /// gap and not repeated in a DST fold.
    pub fixed_time: bool,
    /// `@reboot`: once at each daemon start, never on a clock.
    pub reboot: bool,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Checks and translates an expression; the error says which field and
/// which part are wrong.
pub fn parse(source: &str) -> Result<Expr, String> {
    let source = source.trim();
    if let Some(name) = source.strip_prefix('@') {
        let fields = match name.to_ascii_lowercase().as_str() {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            "reboot" => {
                return Ok(Expr {
                    pattern: String::new(),
                    days_and: false,
                    fixed_time: false,
                    reboot: true,
                });
            }
            _ => {
                return Err(format!(
                    "unknown macro `@{name}`; use @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually or @reboot"
                ));
            }
        };
        return parse(fields);
    }
    let fields: Vec<&str> = source.split_whitespace().collect();
    let layout: &[&Field] = match fields.len() {
        5 => &[&MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK],
        6 => &[&SECOND, &MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK],
        n => {
            return Err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found {n}"
            ));
        }
    };
    let mut translated = Vec::with_capacity(fields.len());
    for (text, field) in fields.iter().zip(layout) {
        translated.push(check_field(text, field).map_err(|why| format!("{}: {why}", field.name))?);
    }
    let starred = |i: usize| fields[fields.len() - 5 + i].starts_with(['*', '?']);
    Ok(Expr {
        pattern: translated.join(" "),
        days_and: starred(2) || starred(4),
        fixed_time: fields.len() == 5 && !starred(0) && !starred(1),
        reboot: false,
    })
}

/// Checks one field; returns it translated for croner.
fn check_field(text: &str, field: &Field) -> Result<String, String> {
    let mut parts = Vec::new();
    for part in text.split(',') {
        if part.is_empty() {
            return Err(format!("empty list item in `{text}`"));
        }
        parts.push(check_part(part, field)?);
    }
    Ok(parts.join(","))
}

fn check_part(part: &str, field: &Field) -> Result<String, String> {
    let lower = part.to_ascii_lowercase();
    if let Some(special) = special(&lower, field)? {
        return Ok(special);
    }
    let (base, step) = match lower.split_once('/') {
        Some((base, step)) => {
            let n: u32 = step
                .parse()
                .map_err(|_| format!("step `{step}` in `{part}` is not a number"))?;
            if n == 0 || n > field.max - field.min + 1 {
                return Err(format!(
                    "step {n} in `{part}` is out of range 1-{}",
                    field.max - field.min + 1
                ));
            }
            (base, Some(n))
        }
        None => (lower.as_str(), None),
    };
    let range = if base == "*" || base == "?" {
        None
    } else if let Some((a, b)) = base.split_once('-') {
        let (a, b) = (value(a, field)?, value(b, field)?);
        if a > b {
            return Err(format!("range `{part}` goes backwards; write it low-high"));
        }
        Some((a, b))
    } else {
        let a = value(base, field)?;
        // `a/n` runs from a to the field's end, as in Vixie cron.
        Some((a, if step.is_some() { field.max } else { a }))
    };
    Ok(match (range, step) {
        (None, None) => "*".to_string(),
        (None, Some(n)) => format!("*/{n}"),
        (Some((a, b)), None) if a == b => a.to_string(),
        (Some((a, b)), None) => format!("{a}-{b}"),
        (Some((a, b)), Some(n)) => format!("{a}-{b}/{n}"),
    })
}

/// The extensions cron-like schedulers accept: `L`, `LW`, `15W` in
/// day-of-month; `5L`, `FRIL`, `FRI#2`, `5#2` in day-of-week.
fn special(part: &str, field: &Field) -> Result<Option<String>, String> {
    if field.name == DAY_OF_MONTH.name {
        if part == "l" || part == "lw" {
            return Ok(Some(part.to_ascii_uppercase()));
        }
        if let Some(day) = part.strip_suffix('w') {
            return Ok(Some(format!("{}W", value(day, field)?)));
        }
    }
    if field.name == DAY_OF_WEEK.name {
        if let Some(day) = part.strip_suffix('l').filter(|d| !d.is_empty()) {
            return Ok(Some(format!("{}L", weekday(day)?)));
        }
        if let Some((day, nth)) = part.split_once('#') {
            let nth: u32 = nth
                .parse()
                .ok()
                .filter(|n| (1..=5).contains(n))
                .ok_or_else(|| format!("`#{nth}` in `{part}` must be 1 to 5"))?;
            return Ok(Some(format!("{}#{nth}", weekday(day)?)));
        }
    }
    Ok(None)
}

fn weekday(text: &str) -> Result<u32, String> {
    value(text, &DAY_OF_WEEK).map(|d| d % 7)
}

/// A number or a name, in the field's range.
fn value(text: &str, field: &Field) -> Result<u32, String> {
    if let Some(i) = field.names.iter().position(|n| *n == text) {
        return Ok(i as u32 + u32::from(field.min == 1));
    }
    let n: u32 = text.parse().map_err(|_| {
        if field.names.is_empty() {
            format!("`{text}` is not a number")
        } else {
            format!(
                "`{text}` is not a number or a name ({}…)",
                field.names[..3].join(", ")
            )
        }
    })?;
    if n < field.min || n > field.max {
        return Err(format!("{n} is out of range {}-{}", field.min, field.max));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_and_the_part() {
        let err = |e: &str| parse(e).unwrap_err();
        assert_eq!(err("0 0 32 * *"), "day-of-month: 32 is out of range 1-31");
        assert_eq!(err("60 * * * *"), "minute: 60 is out of range 0-59");
        assert_eq!(
            err("* 5-2 * * *"),
            "hour: range `5-2` goes backwards; write it low-high"
        );
        assert_eq!(
            err("* * * foo *"),
            "month: `foo` is not a number or a name (jan, feb, mar…)"
        );
        assert_eq!(
            err("*/0 * * * *"),
            "minute: step 0 in `*/0` is out of range 1-60"
        );
        assert_eq!(err("* * * * 8"), "day-of-week: 8 is out of range 0-7");
        assert_eq!(err("1,,2 * * * *"), "minute: empty list item in `1,,2`");
        assert!(err("@fortnightly").starts_with("unknown macro `@fortnightly`"));
        assert!(err("* * * *").starts_with("expected 5 fields"));
    }

    #[test]
    fn translations_for_croner() {
        assert_eq!(parse("5/20 * * * *").unwrap().pattern, "5-59/20 * * * *");
        assert_eq!(
            parse("0 0 * JAN-mar/2 Sun,7").unwrap().pattern,
            "0 0 * 1-3/2 0,7"
        );
        assert_eq!(parse("@midnight").unwrap().pattern, "0 0 * * *");
        assert_eq!(parse("0 0 LW * FRI#2").unwrap().pattern, "0 0 LW * 5#2");
        assert_eq!(parse("0 0 15w * fril").unwrap().pattern, "0 0 15W * 5L");
        assert!(parse("@reboot").unwrap().reboot);
    }

    #[test]
    fn day_rule_and_fixed_time() {
        let e = parse("0 0 13 * FRI").unwrap();
        assert!(!e.days_and && e.fixed_time);
        assert!(parse("0 0 */2 * MON").unwrap().days_and);
        assert!(parse("0 0 1 * *").unwrap().days_and);
        assert!(!parse("*/5 2 * * *").unwrap().fixed_time);
        assert!(!parse("30 * * * *").unwrap().fixed_time);
        assert!(
            !parse("0 30 2 * * *").unwrap().fixed_time,
            "six fields never are"
        );
        assert!(parse("@daily").unwrap().fixed_time);
        assert!(!parse("@hourly").unwrap().fixed_time);
    }
}
