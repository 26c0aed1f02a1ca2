//! Appenders that fail are reported, not shouted.
//!
//! log4rs prints `log4rs: <error>` on stderr for every record an appender
//! fails to write: a full log disk made 185,000 such lines for one run, and
//! the run's report said nothing. Here, through the router: a failure is
//! counted by appender and run, the run's report gets one warning per
//! failing appender naming the error ([`take_failures`]), and a record of
//! no run (the daemon's own) says the first failure of each appender once.

use std::collections::HashMap;
use std::sync::Mutex;

use log::Record;

/// How one appender failed for one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteFailure {
    /// The appender's name in the log4rs file.
    pub appender: String,
    /// What went wrong.
    pub kind: FailureKind,
    /// Records it could not write (none for a roll that failed).
    pub records: u64,
    /// The first error, as the OS said it.
    pub first: String,
}

/// What went wrong with an appender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Records were not written.
    Lost,
    /// Its file could not be rolled: every record is in it, and it grows
    /// past its limit.
    Roll,
}

/// Failures so far, by run (`None`: records of no run). Never held across
/// an await: appenders are synchronous.
static FAILURES: Mutex<Option<HashMap<Option<i64>, Vec<WriteFailure>>>> = Mutex::new(None);

/// Takes the failures counted for run `run_id`.
pub fn take_failures(run_id: i64) -> Vec<WriteFailure> {
    FAILURES
        .lock()
        .expect("write failures")
        .as_mut()
        .and_then(|by_run| by_run.remove(&Some(run_id)))
        .unwrap_or_default()
}

/// The run a record is of, by its `run_id`.
pub fn run_of(record: &Record) -> Option<i64> {
    let value = record.key_values().get(log::kv::Key::from_str("run_id"))?;
    value
        .to_i64()
        .or_else(|| value.to_borrowed_str()?.parse().ok())
}

/// Counts `records` of run `run` (`None`: of no run) that `appender`
/// could not write, for `error`.
pub fn lost(appender: &str, run: Option<i64>, records: u64, error: &str) {
    failed(appender, run, FailureKind::Lost, records, error);
}

/// Says that `appender` could not roll its file, during run `run`.
pub fn roll_failed(appender: &str, run: Option<i64>, error: &str) {
    failed(appender, run, FailureKind::Roll, 0, error);
}

fn failed(appender: &str, run: Option<i64>, kind: FailureKind, records: u64, error: &str) {
    let mut failures = FAILURES.lock().expect("write failures");
    let list = failures
        .get_or_insert_with(HashMap::new)
        .entry(run)
        .or_default();
    match list
        .iter_mut()
        .find(|f| f.appender == appender && f.kind == kind)
    {
        Some(failure) => failure.records += records,
        None => {
            if run.is_none() {
                eprintln!(
                    "overnight: log appender `{appender}` cannot write: {error} (said once; later failures are counted in the runs' reports)"
                );
            }
            list.push(WriteFailure {
                appender: appender.to_string(),
                kind,
                records,
                first: error.to_string(),
            });
        }
    }
}
