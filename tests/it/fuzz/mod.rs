//! No input makes a parser panic (issue 12, item 10).
//!
//! Every parser a user or a job can reach is fed arbitrary text and
//! mutations of the repository's own examples: the jobs file, the log4rs
//! file and its `fast_pattern` encoder, cron expressions, crontab import,
//! protocol lines, JSON and XML report bodies, and HTTP answers from a real
//! server on loopback. A property asserts only that the parser returns, `Ok`
//! or `Err`; a panic fails it, and proptest shrinks the input.
//!
//! The seeds are read from the shipped files at run time (examples,
//! `log4rs-configs/`, the fenced blocks and backticked snippets of the
//! docs), so a new example is fuzzed without touching this file. A mutation
//! deletes a range, inserts characters that mean something to one of the
//! formats, repeats or swaps lines, or cuts the text short.
//!
//! `PROPTEST_CASES` overrides every property's case count (see
//! [`config`]). A panic found here becomes a named regression test in the
//! module it broke, with the shrunk input written out.

mod answers;
mod inputs;

use self::answers::*;
use self::inputs::*;
use std::path::Path;

use chrono::{DateTime, Utc};
use log4rs::encode::Encode;
use log4rs::encode::writer::simple::SimpleWriter;
use overnight::config::{Config, crontab};
use overnight::exec::lines::LineSplitter;
use overnight::exec::protocol;
use overnight::report::body;
use overnight::route::fast_pattern::FastPattern;
use overnight::route::load;
use overnight::schedule::Schedule;
use overnight::zone::Zone;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// A property's configuration: `cases` cases, or `PROPTEST_CASES` when it
/// is set. Some proptest versions let an explicit count replace the
/// variable; read here, the variable wins in all of them.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig::with_cases(cases)
}

/// The moment every parsed event is stamped with.
const WHEN: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn cron_expression(text in prop_oneof![inputs(schedules()), cron_grammar()]) {
        if let Err(e) = Schedule::parse(&text, Zone::utc()) {
            let _ = e.to_string();
        }
    }

    /// A job's output, in whatever pieces the pipe hands over, split into
    /// lines and read as the protocol.
    #[test]
    fn protocol_lines(output in outputs(), cuts in vec(any::<Index>(), 0..8)) {
        let mut events = Vec::new();
        let mut on_line = |line: &[u8], _cut: u64| {
            protocol::parse(&String::from_utf8_lossy(line), WHEN, &mut events);
        };
        let mut splitter = LineSplitter::default();
        for chunk in chunks(&output, &cuts) {
            splitter.push(chunk, &mut on_line);
        }
        splitter.finish(&mut on_line);
    }

    #[test]
    fn json_report_body(text in inputs(json_bodies())) {
        if let Err(e) = body::parse_json(&text, WHEN) {
            let _ = e.to_string();
        }
    }

    #[test]
    fn xml_report_body(text in inputs(xml_bodies())) {
        if let Err(e) = body::parse_xml(&text, WHEN) {
            let _ = e.to_string();
        }
    }

    /// An encoder's pattern is read when the log4rs file is loaded; one
    /// record is written with it, as every record of a run will be.
    #[test]
    fn fast_pattern(pattern in inputs(patterns())) {
        match FastPattern::new(&pattern) {
            // A padding width of 10000 or more is that many spaces in every
            // record: writing one would only measure memory.
            Ok(encoder) if !has_long_number(&pattern) => write_record(&encoder),
            Ok(_) => {}
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn jobs_file(text in inputs(jobs_files())) {
        load_jobs_file(&text);
    }

    /// What `import-crontab` prints is a jobs file: it is loaded too.
    #[test]
    fn crontab_import(text in inputs(crontabs()), system in any::<bool>()) {
        match crontab::parse(Path::new("crontab"), &text, system) {
            Ok(jobs) if !jobs.is_empty() => load_jobs_file(&crontab::to_yaml(&jobs, "crontab")),
            Ok(_) => {}
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    #[test]
    fn log4rs_file(
        text in inputs(log4rs_files())
            .prop_filter("the file names only files in its own folder", |text| stays_in_its_folder(text))
    ) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("log4rs.yaml");
        std::fs::write(&path, text.as_bytes()).expect("the log4rs file is written");
        if let Err(e) = load::load(&path) {
            let _ = e.to_string();
        }
    }
}

proptest! {
    // Each case is a real exchange on loopback, with its own client.
    #![proptest_config(config(300))]

    #[test]
    fn http_answer(answer in answers()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(exchange(&answer));
    }
}

// What the properties do with an input.

/// Writes `text` as a jobs file in a folder of its own and loads it; a
/// problem is rendered as `check` prints it.
fn load_jobs_file(text: &str) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("overnight.yaml");
    std::fs::write(&path, text).expect("the jobs file is written");
    if let Err(e) = Config::load(&path) {
        let _ = e.to_string();
    }
}

/// Whether every file a log4rs text can name stays in the folder it is
/// written to: loading makes the files its appenders name, and the tests
/// run as root. A `/` only after a name character (so no path is absolute),
/// no `../` or `/..`, no `$ENV{…}`, and no YAML escape (`\/`) or tag that
/// could spell a `/`.
fn stays_in_its_folder(text: &str) -> bool {
    let mut previous: Option<char> = None;
    for c in text.chars() {
        if c == '/' && !previous.is_some_and(|p| p.is_alphanumeric() || "._-}".contains(p)) {
            return false;
        }
        previous = Some(c);
    }
    !text.contains("../")
        && !text.contains("/..")
        && !text.contains("$ENV")
        && !text.contains(['\\', '!'])
}

/// Whether `text` holds a run of five digits or more.
fn has_long_number(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_digit())
        .any(|digits| digits.len() >= 5)
}

/// One record through `encoder`, with the fields a run's records carry.
fn write_record(encoder: &FastPattern) {
    let fields = [("job", "fuzz"), ("run_id", "7")];
    let mut out = SimpleWriter(Vec::new());
    let _ = encoder.encode(
        &mut out,
        &log::Record::builder()
            .args(format_args!("a record"))
            .level(log::Level::Warn)
            .target("jobs::log::fuzz")
            .key_values(&fields)
            .build(),
    );
}
