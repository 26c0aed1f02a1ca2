//! A flow run's records: `flows::status::<flow>` (it started, each step
//! started, skipped, held or resumed, it ended) and `flows::details::<flow>`
//! (the flow's report as one JSON record at the end), each with the flow
//! and the flow run's id as key-values (DESIGN §2, §8).

use std::fmt;

use std::time::Duration;

use log::{Level, Record};

use super::escape::Escaped;
use crate::flow::progress::FlowStatus;
use crate::store::FlowRecord;

/// Emits one flow run's records.
#[derive(Debug)]
pub struct FlowLog {
    flow: String,
    flow_run_id: String,
    status: String,
    details: String,
}

impl FlowLog {
    /// The records of run `flow_run_id` of `flow`.
    pub fn new(flow: &str, flow_run_id: i64) -> FlowLog {
        FlowLog {
            flow: flow.to_string(),
            flow_run_id: flow_run_id.to_string(),
            status: format!("flows::status::{flow}"),
            details: format!("flows::details::{flow}"),
        }
    }

    /// A record on `status`; text from jobs and operators is escaped.
    pub fn status(&self, level: Level, args: fmt::Arguments<'_>) {
        self.emit(&self.status, level, args);
    }

    /// The flow's report, as JSON, on `details`.
    pub fn details(&self, json: &str) {
        self.emit(
            &self.details,
            Level::Info,
            format_args!("{}", Escaped(json)),
        );
    }

    /// The run's end on `status` (INFO success, WARN warning, ERROR
    /// failed or aborted), and its report on `details`.
    pub fn ended(&self, run: &FlowRecord) {
        let took = run.finished_at.unwrap_or_default() - run.started_at;
        let level = match run.status {
            FlowStatus::Success => Level::Info,
            FlowStatus::Warning => Level::Warn,
            _ => Level::Error,
        };
        self.status(
            level,
            format_args!(
                "flow run #{} ended {} in {}",
                run.id,
                run.status,
                humantime::format_duration(Duration::from_millis(
                    took.num_milliseconds().max(0) as u64
                ))
            ),
        );
        self.report(run);
    }

    /// The run's report, as JSON, on `details`.
    pub fn report(&self, run: &FlowRecord) {
        self.details(&serde_json::to_string(&run.report()).expect("a flow report serialises"));
    }

    fn emit(&self, target: &str, level: Level, args: fmt::Arguments<'_>) {
        if level > log::max_level() {
            return;
        }
        let kvs: [(&str, &str); 2] = [("flow", &self.flow), ("flow_run_id", &self.flow_run_id)];
        log::logger().log(
            &Record::builder()
                .target(target)
                .level(level)
                .args(args)
                .key_values(&kvs)
                .build(),
        );
    }
}
