//! `overnight report RUN_ID [--json] [--section NAME]`: a run's completion
//! report, or one section of it for a script.

use super::times::Zones;
use super::{CliError, ConfigArg, open_store};
use crate::event::Entry;
use crate::exit::Outcome;
use crate::report::Report;
use crate::status::Status;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The run's id (see `overnight history`).
    run_id: i64,
    /// The report as one JSON document (with `--section`, the section's
    /// JSON value).
    #[arg(long)]
    json: bool,
    /// Only this section, for scripts: warnings and notices one a line;
    /// errors one a line, a failed run's ending with why it failed and its
    /// last stderr lines, as in the errors log (`error: …`, `failed: exit
    /// 3`, `stderr: …`); details as JSON; log the run's output. With
    /// `--json`, the section as the report holds it.
    #[arg(long, value_name = "NAME")]
    section: Option<Section>,
    #[command(flatten)]
    config: ConfigArg,
}

/// A section of a report, on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Section {
    Status,
    Summary,
    Errors,
    Warnings,
    Notices,
    Details,
    Progress,
    Log,
}

pub(super) async fn run(args: Args) -> Result<Outcome, CliError> {
    let (store, config) = open_store(&args.config).await?;
    let Some(run) = store.run(args.run_id).await? else {
        return Err(CliError::NotFound(format!(
            "no run #{}; `overnight history` lists the runs",
            args.run_id
        )));
    };
    let Some(report) = store.report(args.run_id).await? else {
        if run.status == Status::Running {
            return Err(CliError::NotFound(format!(
                "run #{} of `{}` has no report yet: it is still running; follow it with `overnight logs {} -f`",
                run.id, run.job, run.id
            )));
        }
        if !matches!(run.status, Status::Missed | Status::Skipped) {
            return Err(CliError::NotFound(format!(
                "run #{} of `{}` ({}) has no readable report in the history",
                run.id, run.job, run.status
            )));
        }
        // A fire that never started (missed, skipped) has only its record.
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&run).expect("runs serialise")
            );
        } else {
            let zones = Zones::new(config.as_ref());
            let due = run
                .scheduled_at
                .as_deref()
                .map(|t| format!(", due {}", zones.show(&run.job, t)))
                .unwrap_or_default();
            println!(
                "{} #{}: {}{due} — it never started, so there is no output or report\n  {}",
                run.job,
                run.id,
                run.status,
                run.summary.as_deref().unwrap_or("")
            );
        }
        return Ok(Outcome::Success);
    };
    if let Some(section) = args.section {
        match section_text(&report, section, args.json) {
            Some(text) => super::say(&text),
            None => super::logs::print_output(&store, &run, &args.config).await?,
        }
        return Ok(Outcome::Success);
    }
    let notifications = store.notifications(args.run_id).await?;
    if args.json {
        let mut doc = serde_json::to_value(&report).expect("reports serialise");
        doc["notifications"] =
            serde_json::to_value(&notifications).expect("notifications serialise");
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("values serialise")
        );
    } else {
        print!("{}", report.to_text());
        for n in &notifications {
            println!("{}", delivery_line(n));
        }
    }
    Ok(Outcome::Success)
}

/// One section of `report` as text to print, its JSON value with `json`;
/// `None` for the log, which is the run's capture file, not the report.
fn section_text(report: &Report, section: Section, json: bool) -> Option<String> {
    let value = |v: serde_json::Value| format!("{v:#}\n");
    let lines = |lines: Vec<String>| lines.iter().map(|l| format!("{l}\n")).collect();
    let entries = |entries: &[Entry]| match json {
        true => value(serde_json::to_value(entries).expect("entries serialise")),
        false => lines(entries.iter().map(entry_line).collect()),
    };
    Some(match section {
        Section::Status if json => value(report.status.as_str().into()),
        Section::Status => format!("{}\n", report.status),
        Section::Summary if json => value(report.summary.clone().into()),
        Section::Summary => format!("{}\n", report.summary),
        Section::Errors if json => entries(&report.errors),
        Section::Errors => lines(error_lines(report)),
        Section::Warnings => entries(&report.warnings),
        Section::Notices => entries(&report.notices),
        Section::Details => {
            value(serde_json::to_value(&report.details).expect("details serialise"))
        }
        Section::Progress => match (&report.progress, json) {
            (None, true) => value(serde_json::Value::Null),
            (None, false) => String::new(),
            (Some(p), true) => value(serde_json::to_value(p).expect("progress serialises")),
            (Some(p), false) => match p.percent {
                Some(percent) => format!("{percent}% {}\n", p.message).replace(" \n", "\n"),
                None => format!("{}\n", p.message),
            },
        },
        Section::Log => return None,
    })
}

/// One error, warning or notice on a line: `[CODE] message (key=value, …)`.
pub(super) fn entry_line(entry: &Entry) -> String {
    let mut line = match &entry.code {
        Some(code) => format!("[{code}] {}", entry.message),
        None => entry.message.clone(),
    };
    if !entry.fields.is_empty() {
        let fields: Vec<String> = entry
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        line.push_str(&format!(" ({})", fields.join(", ")));
    }
    line
}

/// A run's errors in the order its errors log has them, each line saying
/// what it is: each error (`error: [CODE] …`), then, for a failed run, why
/// it failed (`failed: exit 3`, `failed: exit 0, 1 error: …`) and its last
/// stderr lines (`stderr: …`).
pub(super) fn error_lines(report: &Report) -> Vec<String> {
    let failed = report.status == Status::Failed;
    let errors = report
        .errors
        .iter()
        .map(|e| format!("error: {}", entry_line(e)));
    let why = failed.then(|| format!("failed: {}", report.why_failed()));
    let stderr = report
        .log
        .last_stderr
        .iter()
        .filter(|_| failed)
        .map(|line| format!("stderr: {line}"));
    errors.chain(why).chain(stderr).collect()
}

/// One trigger delivery, as `report` and `flow status` list them.
pub(super) fn delivery_line(n: &crate::store::Notification) -> String {
    let detail = n.detail.as_deref().unwrap_or("");
    format!(
        "  trigger {} ({}, {}): {} {detail}",
        n.rule, n.action, n.condition, n.status
    )
    .trim_end()
    .to_string()
}
