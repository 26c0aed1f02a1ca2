//! Every exit code of the program, in one place (DESIGN §1).

use std::process::ExitCode;

use crate::report::Status;

/// How the program ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 0: done; the job (if one was waited for) succeeded.
    Success,
    /// 1: a job failed.
    Failed,
    /// 2: usage or configuration error.
    Usage,
    /// 3: a job ended with warnings.
    Warning,
    /// 128 + N: the command was ended by signal N (as a shell reports it),
    /// after recording the run it waited for.
    Signalled(i32),
}

impl Outcome {
    /// The outcome of waiting for a run with this status.
    pub fn of(status: Status) -> Outcome {
        match status {
            Status::Success => Outcome::Success,
            Status::Warning => Outcome::Warning,
            Status::Running
            | Status::Failed
            | Status::Lost
            | Status::Missed
            | Status::Skipped
            | Status::Orphaned => Outcome::Failed,
        }
    }

    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failed => 1,
            Outcome::Usage => 2,
            Outcome::Warning => 3,
            Outcome::Signalled(number) => 128u8.saturating_add(number as u8),
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        ExitCode::from(outcome.code())
    }
}
