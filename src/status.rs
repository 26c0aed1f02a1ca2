//! A run's status: the one word every part of overnight agrees on — the
//! store, the CLI, the API, triggers and flows.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A run's status; the order is from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Still going.
    Running,
    /// Done, nothing to report.
    Success,
    /// Done, with warnings.
    Warning,
    /// Did not do its work.
    Failed,
    /// Left `running` by a daemon that died; closed at the next start.
    Lost,
    /// A scheduled fire that was not run (the daemon was down, or its
    /// catch-up policy or starting deadline said no).
    Missed,
    /// A fire that did not run because the job was still running or its
    /// locks were held (the reason says which).
    Skipped,
    /// Left by a daemon that died while the job ran on; closed when the
    /// job's process ended (its exit status is unknown).
    Orphaned,
}

impl Status {
    /// Every status, in the order they are listed.
    pub const ALL: [Status; 8] = [
        Status::Running,
        Status::Success,
        Status::Warning,
        Status::Failed,
        Status::Lost,
        Status::Missed,
        Status::Skipped,
        Status::Orphaned,
    ];

    /// The name used in the store, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Success => "success",
            Status::Warning => "warning",
            Status::Failed => "failed",
            Status::Lost => "lost",
            Status::Missed => "missed",
            Status::Skipped => "skipped",
            Status::Orphaned => "orphaned",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    /// Reads a status as jobs declare it, leniently: `fail`, `error`,
    /// `success-with-warning` and any case are accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "running" => Ok(Status::Running),
            "success" | "ok" => Ok(Status::Success),
            "warning" | "warn" | "success-with-warning" | "success-with-warnings" => {
                Ok(Status::Warning)
            }
            "failed" | "fail" | "failure" | "error" => Ok(Status::Failed),
            "lost" => Ok(Status::Lost),
            "missed" => Ok(Status::Missed),
            "skipped" => Ok(Status::Skipped),
            "orphaned" => Ok(Status::Orphaned),
            other => Err(format!(
                "unknown status `{other}`; use success, warning or failed"
            )),
        }
    }
}

/// A status compares with its name, as the store and the CLI spell it.
impl PartialEq<&str> for Status {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}
